"""Train a small Marian-shaped English -> French translator from scratch on Debian's package
synopses, with this library's Seq2SeqTrainer, and report held-out BLEU before and after.

Data: examples/debian_text.py (English synopses and their French translations, matched by
Description-md5; split by package name). Tokenizer: one Unigram vocabulary shared by both
languages, trained here on the training split (examples/seq2seq_common.py). Model: Marian's
architecture (sinusoidal positions, post-norm blocks, tied embeddings), d_model 256, 3 encoder +
3 decoder layers. Training runs for ``--minutes`` of wall time (16 by default, so the whole run
fits 25 minutes on 2 CPU cores): the learning rate decays over that time and training stops at
its end, so a busy machine gets fewer steps but the same finished schedule.

Usage::

    nice -n 10 python examples/train_translator.py                     # ~25 min on 2 cores
    python examples/train_translator.py --max-steps 50 --eval-n 64 --out /tmp/tr   # smoke run

Prints a JSON record (BLEU before/after with sacrebleu, sizes, steps, wall time), writes it to
``<out>/results.json``, saves the model and tokenizer to ``<out>/model`` and translates a few
held-out synopses with ``pipeline("translation_en_to_fr", model=<out>/model)``.
"""

from __future__ import annotations

import argparse
import json
import sys
import time
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parent))
sys.path.insert(0, str(Path(__file__).resolve().parent.parent))

import torch  # noqa: E402

import debian_text  # noqa: E402
from seq2seq_common import (TimeBudget, WallClockCosine, count_parameters, decode, encode_pairs,  # noqa: E402
                            train_tokenizer)
from pretrained.training import Seq2SeqTrainer, Seq2SeqTrainingArguments  # noqa: E402
from pretrained.training.schedules import create_optimizer  # noqa: E402

MAX_SOURCE, MAX_TARGET = 48, 64  # synopses are short: 99% fit in these (French is longer)


def build_model(vocab_size: int, d_model: int, layers: int, tok, dropout: float):
    """A Marian-shaped model with the tokenizer's special ids (pad is also the decoder start,
    as in Marian)."""
    from pretrained.models.marian import MarianConfig, MarianMTModel

    config = MarianConfig(
        vocab_size=vocab_size, decoder_vocab_size=vocab_size, d_model=d_model,
        encoder_layers=layers, decoder_layers=layers, encoder_attention_heads=4,
        decoder_attention_heads=4, encoder_ffn_dim=4 * d_model, decoder_ffn_dim=4 * d_model,
        max_position_embeddings=128, dropout=dropout, attention_dropout=0.0, activation_function="swish",
        scale_embedding=True, share_encoder_decoder_embeddings=True, tie_word_embeddings=True,
        pad_token_id=tok.pad_token_id, eos_token_id=tok.eos_token_id,
        decoder_start_token_id=tok.pad_token_id, forced_eos_token_id=tok.eos_token_id)
    return MarianMTModel.from_config(config)


def bleu_metric(tok):
    import sacrebleu

    def compute(pred) -> dict[str, float]:
        hyps, refs = decode(tok, pred.predictions), decode(tok, pred.label_ids)
        return {"bleu": sacrebleu.corpus_bleu(hyps, [refs]).score,
                "chrf": sacrebleu.corpus_chrf(hyps, [refs]).score}
    return compute


def translate_examples(folder: Path, texts: list[str], model_class) -> tuple[list[str], str]:
    """Translations of ``texts`` by the saved model: through ``pipeline`` when the task is
    there, else ``model.generate`` directly (and say so)."""
    from pretrained import AutoTokenizer, pipeline

    try:
        translator = pipeline("translation_en_to_fr", model=str(folder))
    except Exception as e:  # the translation pipeline may not exist yet in this checkout
        tok = AutoTokenizer.from_pretrained(str(folder))
        model = model_class.from_pretrained(str(folder))
        enc = tok(texts, padding=True, return_tensors="pt")
        out = model.generate(enc["input_ids"], attention_mask=enc["attention_mask"], max_new_tokens=MAX_TARGET,
                             num_beams=4)
        return decode(tok, out.numpy()), f"model.generate (pipeline unavailable: {type(e).__name__}: {e})"
    return [r["translation_text"] for r in translator(texts, num_beams=4)], "pipeline"


def main() -> None:
    sys.stdout.reconfigure(line_buffering=True)
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--out", default=str(Path.home() / ".cache" / "pretrained" / "trained" / "debian-en-fr"))
    parser.add_argument("--vocab-size", type=int, default=8000)
    parser.add_argument("--d-model", type=int, default=256)
    parser.add_argument("--layers", type=int, default=3)
    parser.add_argument("--dropout", type=float, default=0.1)
    parser.add_argument("--batch-size", type=int, default=48)
    parser.add_argument("--lr", type=float, default=1e-3)
    parser.add_argument("--max-steps", type=int, default=100_000, help="also stops training")
    parser.add_argument("--minutes", type=float, default=16.0,
                        help="training wall time: the learning rate decays over it, then training stops")
    parser.add_argument("--eval-n", type=int, default=400, help="held-out pairs scored (test split)")
    parser.add_argument("--threads", type=int, default=2)
    a = parser.parse_args()
    torch.set_num_threads(a.threads)
    torch.manual_seed(0)
    start = time.time()
    out = Path(a.out)
    data = debian_text.load("translation")
    train_rows, test_rows = data["train"], data["test"][: a.eval_n]
    print(f"data: {len(data['train'])} train / {len(data['validation'])} validation / {len(data['test'])} "
          f"test pairs; scoring {len(test_rows)} test pairs")
    tok = train_tokenizer([r["en"] for r in train_rows] + [r["fr"] for r in train_rows], a.vocab_size,
                          out / "tokenizer", max_length=128)
    train = encode_pairs(tok, [r["en"] for r in train_rows], [r["fr"] for r in train_rows], MAX_SOURCE, MAX_TARGET)
    test = encode_pairs(tok, [r["en"] for r in test_rows], [r["fr"] for r in test_rows], MAX_SOURCE, MAX_TARGET)
    model = build_model(len(tok), a.d_model, a.layers, tok, a.dropout)
    print(f"model: {type(model).__name__}, {count_parameters(model) / 1e6:.2f}M parameters, vocab {len(tok)}")
    args = Seq2SeqTrainingArguments(
        output_dir=str(out / "run"), max_steps=a.max_steps, per_device_train_batch_size=a.batch_size,
        per_device_eval_batch_size=64, learning_rate=a.lr, weight_decay=0.01, save_strategy="no", logging_steps=50, seed=0, predict_with_generate=True,
        generation_max_length=MAX_TARGET, generation_num_beams=1, disable_tqdm=not sys.stderr.isatty())
    budget = TimeBudget(a.minutes)
    optimizer = create_optimizer(model, args)  # the Trainer's AdamW (no decay on biases, norms)
    trainer = Seq2SeqTrainer(model=model, args=args, train_dataset=train, eval_dataset=test,
                             processing_class=tok, compute_metrics=bleu_metric(tok), callbacks=[budget],
                             optimizers=(optimizer, WallClockCosine(optimizer, 200, a.minutes)))
    prep_minutes = (time.time() - start) / 60
    before = trainer.evaluate()
    t0 = time.time()
    result = trainer.train()
    train_minutes = (time.time() - t0) / 60
    after = trainer.evaluate()
    beams = trainer.evaluate(num_beams=4, metric_key_prefix="beam4")
    # saved with its generation settings, which pipeline() and generate() then use: Marian's
    # beam search of 4, and a length limit within the 128 positions the model has
    from pretrained.generation import GenerationConfig

    model.generation_config = GenerationConfig(
        decoder_start_token_id=tok.pad_token_id, pad_token_id=tok.pad_token_id, eos_token_id=tok.eos_token_id,
        forced_eos_token_id=tok.eos_token_id, max_length=MAX_TARGET, num_beams=4)
    trainer.save_model(str(out / "model"))
    samples = [r["en"] for r in test_rows[:5]]
    translations, how = translate_examples(out / "model", samples, type(model))
    record = {
        "task": "en->fr Debian synopses", "model": type(model).__name__,
        "params_m": round(count_parameters(model) / 1e6, 2), "d_model": a.d_model, "layers": f"{a.layers}+{a.layers}",
        "vocab": len(tok), "train_pairs": len(train), "test_pairs_scored": len(test),
        "steps": result.global_step, "batch_size": a.batch_size, "epochs": round(result.global_step * a.batch_size / len(train), 2),
        "stopped_by_time_budget": budget.stopped_at is not None,
        "bleu_before": round(before["eval_bleu"], 2), "bleu_after_greedy": round(after["eval_bleu"], 2),
        "bleu_after_beam4": round(beams["beam4_bleu"], 2), "chrf_after_greedy": round(after["eval_chrf"], 2),
        "eval_loss_before": round(before["eval_loss"], 3), "eval_loss_after": round(after["eval_loss"], 3),
        "prep_minutes": round(prep_minutes, 1), "train_minutes": round(train_minutes, 1), "total_minutes": round((time.time() - start) / 60, 1),
        "threads": a.threads, "examples_via": how,
        "examples": [{"en": s, "fr_model": t, "fr_debian": r["fr"]} for s, t, r in zip(samples, translations, test_rows)],
    }
    (out / "results.json").write_text(json.dumps(record, indent=2, ensure_ascii=False) + "\n")
    print(json.dumps(record, indent=2, ensure_ascii=False))


if __name__ == "__main__":
    main()
