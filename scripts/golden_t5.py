"""Goldens for T5 (v1.0: ReLU, tied head; v1.1 / flan-t5: gated GELU, untied head) and for
encoder-decoder generate().

Run by scripts/make_goldens.py (area "t5") with the reference installed:

    /work/refvenv/bin/python scripts/make_goldens.py t5

For each fixture the reference builds a tiny random T5, saves it to tests/fixtures/models/<name>/
and records, in tests/fixtures/goldens/t5/<name>.safetensors:
  input.*         input_ids + attention_mask (a padded row), decoder_input_ids, labels (-100s)
  output.*        logits, encoder_last_hidden_state, base model / encoder-only last_hidden_state
  bf16.logits     the same logits in bfloat16
  gen.<case>      sequences of generate() for each case of GENERATE (greedy, beams, options)
and in tests/fixtures/goldens/t5/t5.json the loss, the generate() cases' kwargs and the round
trip (our save_pretrained read back by the reference: max abs diff of its logits).
"""

from __future__ import annotations

import json
import shutil
import sys
import tempfile
from pathlib import Path

import torch
import transformers
from safetensors.torch import save_file

ROOT = Path(__file__).resolve().parent.parent
FIX = ROOT / "tests" / "fixtures"
OUT = FIX / "goldens" / "t5"
sys.path.insert(0, str(ROOT))

VOCAB = 96
# (the reference sizes its generate() cache by num_layers, so num_decoder_layers must not exceed it)
SHAPES = {
    "t5-tiny": dict(vocab_size=VOCAB, d_model=32, d_kv=8, d_ff=48, num_layers=2, num_heads=4,
                    relative_attention_num_buckets=8, relative_attention_max_distance=16,
                    decoder_start_token_id=0, pad_token_id=0, eos_token_id=1),
    "t5-v1_1-tiny": dict(vocab_size=VOCAB, d_model=32, d_kv=8, d_ff=40, num_layers=3,
                         num_decoder_layers=2, num_heads=2, feed_forward_proj="gated-gelu",
                         tie_word_embeddings=False, relative_attention_num_buckets=16,
                         relative_attention_max_distance=32, decoder_start_token_id=0,
                         pad_token_id=0, eos_token_id=1),
}

# generate() cases: name -> kwargs (max_new_tokens or max_length always given)
GENERATE = {
    "greedy": dict(max_new_tokens=10),
    "greedy_min": dict(max_new_tokens=10, min_length=6, no_repeat_ngram_size=2),
    "beam4": dict(max_new_tokens=10, num_beams=4),
    "beam4_opts": dict(max_length=12, num_beams=4, length_penalty=0.6, early_stopping=True,
                       no_repeat_ngram_size=3, num_return_sequences=2),
    "beam3_never": dict(max_new_tokens=9, num_beams=3, early_stopping="never", length_penalty=2.0),
    "forced": dict(max_new_tokens=8, forced_bos_token_id=7, forced_eos_token_id=1),
    "beam_forced": dict(max_new_tokens=8, num_beams=2, forced_bos_token_id=9, forced_eos_token_id=1),
    "enc_norepeat": dict(max_new_tokens=10, encoder_no_repeat_ngram_size=2),
    "beam_enc_norepeat": dict(max_new_tokens=10, num_beams=3, encoder_no_repeat_ngram_size=2,
                              repetition_penalty=1.3),
    "decoder_start": dict(max_new_tokens=6, decoder_start_token_id=5),
}


def make_inputs(seed: int) -> dict[str, torch.Tensor]:
    g = torch.Generator().manual_seed(seed)
    ids = torch.randint(2, VOCAB, (3, 9), generator=g)
    ids[:, -1] = 1  # eos closes each input, as the tokenizer writes it
    mask = torch.ones_like(ids)
    ids[1, 6:] = 0  # a shorter (right-padded) input
    ids[1, 5] = 1
    mask[1, 6:] = 0
    dec = torch.randint(2, VOCAB, (3, 5), generator=g)
    dec[:, 0] = 0
    labels = torch.randint(2, VOCAB, (3, 5), generator=g)
    labels[2, 3:] = -100
    return {"input_ids": ids, "attention_mask": mask, "decoder_input_ids": dec, "labels": labels}


def build(name: str, seed: int) -> dict:
    torch.manual_seed(seed)
    config = transformers.T5Config(**SHAPES[name])
    model = transformers.T5ForConditionalGeneration(config).eval()
    folder = FIX / "models" / name
    if folder.exists():
        shutil.rmtree(folder)
    model.save_pretrained(folder)
    model = transformers.T5ForConditionalGeneration.from_pretrained(folder).eval()
    inputs = make_inputs(seed)
    enc = {k: inputs[k] for k in ("input_ids", "attention_mask")}
    tensors = {f"input.{k}": v for k, v in inputs.items()}
    meta: dict = {"class": "T5ForConditionalGeneration", "generate": GENERATE}
    with torch.no_grad():
        out = model(**enc, decoder_input_ids=inputs["decoder_input_ids"])
        tensors["output.logits"] = out.logits
        tensors["output.encoder_last_hidden_state"] = out.encoder_last_hidden_state
        meta["loss"] = float(model(**enc, labels=inputs["labels"]).loss)
        base = transformers.T5Model.from_pretrained(folder).eval()
        tensors["output.base_last_hidden_state"] = base(
            **enc, decoder_input_ids=inputs["decoder_input_ids"]).last_hidden_state
        encoder = transformers.T5EncoderModel.from_pretrained(folder).eval()
        tensors["output.encoder_only_last_hidden_state"] = encoder(**enc).last_hidden_state
        bf = transformers.T5ForConditionalGeneration.from_pretrained(folder, dtype=torch.bfloat16).eval()
        tensors["bf16.logits"] = bf(**enc, decoder_input_ids=inputs["decoder_input_ids"]).logits.float()
        for case, kw in GENERATE.items():
            seq = model.generate(**enc, do_sample=False, **kw)
            tensors[f"gen.{case}"] = seq
    meta["roundtrip_max_abs_diff"] = roundtrip(folder, enc, inputs["decoder_input_ids"],
                                               tensors["output.logits"])
    save_file({k: v.contiguous() for k, v in tensors.items()}, str(OUT / f"{name}.safetensors"))
    return meta


def roundtrip(folder: Path, enc, dec, expected) -> float:
    """Our save_pretrained of the fixture, read back by the reference: max abs diff of logits."""
    from pretrained import AutoModelForSeq2SeqLM

    ours = AutoModelForSeq2SeqLM.from_pretrained(folder)
    with tempfile.TemporaryDirectory() as tmp:
        ours.save_pretrained(tmp)
        ref = transformers.AutoModelForSeq2SeqLM.from_pretrained(tmp).eval()
        with torch.no_grad():
            got = ref(**enc, decoder_input_ids=dec).logits
    return float((got - expected).abs().max())


# the task heads: fixture -> (reference class, config extras); built on t5-tiny's shape
HEADS = {
    "t5-tiny-seqcls": ("T5ForSequenceClassification", {"num_labels": 3}),
    "t5-tiny-tokcls": ("T5ForTokenClassification", {"num_labels": 4}),
    "t5-tiny-qa": ("T5ForQuestionAnswering", {}),
}


def build_head(name: str, seed: int) -> dict:
    cls_name, extra = HEADS[name]
    torch.manual_seed(seed)
    config = transformers.T5Config(**SHAPES["t5-tiny"], **extra)
    model = getattr(transformers, cls_name)(config).eval()
    folder = FIX / "models" / name
    if folder.exists():
        shutil.rmtree(folder)
    model.save_pretrained(folder)
    model = getattr(transformers, cls_name).from_pretrained(folder).eval()
    inputs = make_inputs(seed)
    enc = {k: inputs[k] for k in ("input_ids", "attention_mask")}
    tensors = {f"input.{k}": v for k, v in enc.items()}
    meta: dict = {"class": cls_name}
    with torch.no_grad():
        out = model(**enc)
        for key in ("logits", "start_logits", "end_logits"):
            if getattr(out, key, None) is not None:
                tensors[f"output.{key}"] = getattr(out, key)
        if cls_name == "T5ForSequenceClassification":
            labels = torch.tensor([0, 2, 1])
            meta["loss"] = float(model(**enc, labels=labels).loss)
        elif cls_name == "T5ForTokenClassification":
            labels = (enc["input_ids"] % 4).masked_fill(enc["attention_mask"] == 0, -100)
            meta["loss"] = float(model(**enc, labels=labels).loss)
        else:
            labels = torch.tensor([[1, 2], [0, 12], [3, 3]])   # 12: past the end, ignored
            meta["loss"] = float(model(**enc, start_positions=labels[:, 0],
                                       end_positions=labels[:, 1]).loss)
        tensors["input.labels"] = labels
    save_file({k: v.contiguous() for k, v in tensors.items()}, str(OUT / f"{name}.safetensors"))
    return meta


def main() -> None:
    OUT.mkdir(parents=True, exist_ok=True)
    meta = {"transformers": transformers.__version__, "models": {}, "heads": {}}
    for i, name in enumerate(SHAPES):
        meta["models"][name] = build(name, 1234 + i)
    for i, name in enumerate(HEADS):
        meta["heads"][name] = build_head(name, 4321 + i)
    (OUT / "t5.json").write_text(json.dumps(meta, indent=2, sort_keys=True) + "\n")


if __name__ == "__main__":
    main()
