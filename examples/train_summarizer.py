"""Train a small T5-shaped summarizer from scratch on Debian's package descriptions (long
description -> one-line synopsis) with this library's Seq2SeqTrainer, and compare its held-out
ROUGE-L with the lead-sentence baseline (the description's first sentence as the summary).

Data: examples/debian_text.py (English descriptions; split by package name). Tokenizer: a
Unigram vocabulary trained here on the training split (examples/seq2seq_common.py), with T5's
special ids (pad 0 = decoder start, </s> 1, <unk> 2). Model: T5 v1.0's architecture (relative
position buckets, pre-RMSNorm blocks, ReLU, tied head), d_model 256, 3 + 3 layers, trained with
Adafactor as T5 was (``--optim adamw`` for the Trainer's default). Training runs
for ``--minutes`` of wall time (19 by default, so the whole run fits 25 minutes on 2 CPU cores):
the learning rate decays over that time and training stops at its end.

Usage::

    nice -n 10 python examples/train_summarizer.py                     # ~22 min on 2 cores
    python examples/train_summarizer.py --minutes 1 --eval-n 64 --out /tmp/sum   # smoke run

Prints a JSON record (ROUGE-L of the model before/after training and of the lead sentence, with
rouge-score, sizes, steps, wall time), writes it to ``<out>/results.json`` and saves the model
and tokenizer to ``<out>/model``.
"""

from __future__ import annotations

import argparse
import json
import re
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

# A synopsis is ~8 words; descriptions are cut at 64 tokens (about their first two sentences,
# where a synopsis's content usually is): twice the training examples of 128 in the same time,
# which mattered more (ROUGE-L 4.7 after 14 minutes at 128 tokens, lr 1e-3, dropout 0.1)
MAX_SOURCE, MAX_TARGET = 64, 32


def build_model(vocab_size: int, d_model: int, layers: int, tok, dropout: float):
    from pretrained.models.t5 import T5Config, T5ForConditionalGeneration

    config = T5Config(vocab_size=vocab_size, d_model=d_model, d_kv=d_model // 8, num_heads=8,
                      d_ff=4 * d_model, num_layers=layers, num_decoder_layers=layers,
                      feed_forward_proj="relu", dropout_rate=dropout, pad_token_id=tok.pad_token_id,
                      eos_token_id=tok.eos_token_id, decoder_start_token_id=tok.pad_token_id)
    return T5ForConditionalGeneration.from_config(config)


def rouge_l(hyps: list[str], refs: list[str]) -> float:
    """Mean ROUGE-L F1 (x100), Porter stemming, as the reference summarization scripts report."""
    from rouge_score import rouge_scorer

    scorer = rouge_scorer.RougeScorer(["rougeL"], use_stemmer=True)
    return 100 * sum(scorer.score(r, h)["rougeL"].fmeasure for h, r in zip(hyps, refs)) / max(len(refs), 1)


def lead_sentence(document: str) -> str:
    """The first sentence of the first paragraph: the classic extractive baseline."""
    first = document.split("\n", 1)[0]
    return re.split(r"(?<=[.!?])\s+(?=[A-Z0-9])", first, maxsplit=1)[0]


def rouge_metric(tok):
    def compute(pred) -> dict[str, float]:
        return {"rougeL": rouge_l(decode(tok, pred.predictions), decode(tok, pred.label_ids))}
    return compute


def main() -> None:
    sys.stdout.reconfigure(line_buffering=True)
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--out", default=str(Path.home() / ".cache" / "pretrained" / "trained" / "debian-summarizer"))
    parser.add_argument("--vocab-size", type=int, default=8000)
    parser.add_argument("--d-model", type=int, default=256)
    parser.add_argument("--layers", type=int, default=3)
    parser.add_argument("--dropout", type=float, default=0.0, help="none: a run sees < 1 epoch")
    parser.add_argument("--batch-size", type=int, default=32)
    parser.add_argument("--optim", choices=["adafactor", "adamw"], default="adafactor")
    parser.add_argument("--lr", type=float, default=None, help="default: 1e-2 (adafactor), 2e-3 (adamw)")
    parser.add_argument("--max-steps", type=int, default=100_000, help="also stops training")
    parser.add_argument("--minutes", type=float, default=19.0,
                        help="training wall time: the learning rate decays over it, then training stops")
    parser.add_argument("--eval-n", type=int, default=400, help="held-out pairs scored (test split)")
    parser.add_argument("--threads", type=int, default=2)
    a = parser.parse_args()
    torch.set_num_threads(a.threads)
    torch.manual_seed(0)
    start = time.time()
    out = Path(a.out)
    data = debian_text.load("summarization")
    train_rows, test_rows = data["train"], data["test"][: a.eval_n]
    print(f"data: {len(data['train'])} train / {len(data['validation'])} validation / {len(data['test'])} "
          f"test pairs; scoring {len(test_rows)} test pairs")
    refs = [r["summary"] for r in test_rows]
    lead = rouge_l([lead_sentence(r["document"]) for r in test_rows], refs)
    print(f"lead-sentence baseline: ROUGE-L {lead:.2f}")
    # the vocabulary from a sample of the documents: as good a vocabulary, in a fraction of the
    # time on a busy 2-core machine
    sample = train_rows[:: max(1, len(train_rows) // 15000)]
    tok = train_tokenizer([r["document"] for r in sample] + [r["summary"] for r in train_rows],
                          a.vocab_size, out / "tokenizer", max_length=512)
    train = encode_pairs(tok, [r["document"] for r in train_rows], [r["summary"] for r in train_rows],
                         MAX_SOURCE, MAX_TARGET)
    test = encode_pairs(tok, [r["document"] for r in test_rows], refs, MAX_SOURCE, MAX_TARGET)
    model = build_model(len(tok), a.d_model, a.layers, tok, a.dropout)
    print(f"model: {type(model).__name__}, {count_parameters(model) / 1e6:.2f}M parameters, vocab {len(tok)}")
    args = Seq2SeqTrainingArguments(
        output_dir=str(out / "run"), max_steps=a.max_steps, per_device_train_batch_size=a.batch_size,
        per_device_eval_batch_size=64, learning_rate=a.lr or (1e-2 if a.optim == "adafactor" else 2e-3),
        weight_decay=0.01, save_strategy="no",
        logging_steps=50, seed=0, predict_with_generate=True, generation_max_length=MAX_TARGET,
        generation_num_beams=1, disable_tqdm=not sys.stderr.isatty())
    budget = TimeBudget(a.minutes)
    # T5 was made for Adafactor: its embeddings start at std 1.0, and Adafactor's steps are
    # relative to each parameter's scale, where AdamW's absolute steps of ~lr barely move them in
    # a short run (the loss after 150 steps: 6.5 with Adafactor at 1e-2, 7.0 with AdamW at 2e-3;
    # a 19-minute AdamW run ended with a model that gave every document the same synopsis)
    if a.optim == "adafactor":
        optimizer = torch.optim.Adafactor(model.parameters(), lr=args.learning_rate)
    else:
        optimizer = create_optimizer(model, args)  # the Trainer's AdamW (no decay on biases, norms)
    trainer = Seq2SeqTrainer(model=model, args=args, train_dataset=train, eval_dataset=test,
                             processing_class=tok, compute_metrics=rouge_metric(tok), callbacks=[budget],
                             optimizers=(optimizer, WallClockCosine(optimizer, 100, a.minutes)))
    prep_minutes = (time.time() - start) / 60
    before = trainer.evaluate()
    t0 = time.time()
    result = trainer.train()
    train_minutes = (time.time() - t0) / 60
    after = trainer.evaluate()
    # the usual summarization decoding: 4 beams, no repeated trigram (generate() keywords
    # passed through evaluate())
    beams = trainer.evaluate(num_beams=4, no_repeat_ngram_size=3, metric_key_prefix="beam4")
    pred = trainer.predict(test[:5], num_beams=4, no_repeat_ngram_size=3)
    from pretrained.generation import GenerationConfig

    model.generation_config = GenerationConfig(
        decoder_start_token_id=tok.pad_token_id, pad_token_id=tok.pad_token_id, eos_token_id=tok.eos_token_id,
        max_length=MAX_TARGET, num_beams=4, no_repeat_ngram_size=3)
    trainer.save_model(str(out / "model"))
    record = {
        "task": "Debian long description -> synopsis", "model": type(model).__name__,
        "params_m": round(count_parameters(model) / 1e6, 2), "d_model": a.d_model, "layers": f"{a.layers}+{a.layers}",
        "vocab": len(tok), "train_pairs": len(train), "test_pairs_scored": len(test),
        "steps": result.global_step, "batch_size": a.batch_size, "epochs": round(result.global_step * a.batch_size / len(train), 2),
        "stopped_by_time_budget": budget.stopped_at is not None,
        "rougeL_lead_sentence": round(lead, 2), "rougeL_before": round(before["eval_rougeL"], 2),
        "rougeL_after_greedy": round(after["eval_rougeL"], 2),
        "rougeL_after_beam4_no_repeat_3gram": round(beams["beam4_rougeL"], 2),
        "eval_loss_before": round(before["eval_loss"], 3), "eval_loss_after": round(after["eval_loss"], 3),
        "prep_minutes": round(prep_minutes, 1), "train_minutes": round(train_minutes, 1), "total_minutes": round((time.time() - start) / 60, 1),
        "threads": a.threads, "optimizer": a.optim, "learning_rate": args.learning_rate,
        "examples": [{"document": r["document"][:160], "model": h, "synopsis": r["summary"]}
                     for r, h in zip(test_rows, decode(tok, pred.predictions))],
    }
    (out / "results.json").write_text(json.dumps(record, indent=2, ensure_ascii=False) + "\n")
    print(json.dumps(record, indent=2, ensure_ascii=False))


if __name__ == "__main__":
    main()
