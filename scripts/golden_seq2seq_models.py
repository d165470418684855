"""Goldens for the BART family of encoder-decoders: BART (and a distilbart shape), Marian (shared
and separate target vocabulary), mBART, Pegasus; BART's and mBART's classification and QA heads,
and each one's decoder alone as a causal LM (XForCausalLM).

Run by scripts/make_goldens.py (area "seq2seq_models") with the reference installed:

    /work/refvenv/bin/python scripts/make_goldens.py seq2seq_models

For every fixture the reference builds a tiny random model, moves its weights (and
``final_logits_bias``) away from their init values, rounds them to float16 and saves it to
tests/fixtures/models/<name>/ with the weights stored in float16 (config.json keeps float32, so
both libraries load float32: the files stay half the size, the numbers are exact). The fixed
sinusoidal position tables stay float32. It then loads the folder back and records, in
tests/fixtures/goldens/seq2seq/<name>.safetensors:
  input.*        input_ids / attention_mask (a right- and a left-padded row), decoder_input_ids
  output.*       logits (LM, classification), start/end_logits (QA), encoder_last_hidden_state
  base.last_hidden_state   the bare <X>Model's decoder output, loaded from the same folder
  decmask.*      decoder_attention_mask (a right-padded row) and the logits with it
  label.labels   labels (-100 in a padded row) for the losses in seq2seq.json
  bf16.*         the reference's bfloat16 outputs
(the decoder-only XForCausalLM fixtures record their own: see build_causal), and in seq2seq.json the class, the losses (labels only: decoder inputs made from them; labels
with decoder_input_ids), generate()'s tokens (greedy, 3 beams) and the round trip: our save_pretrained read back by the reference (max
abs diff of its outputs against the goldens). Goldens come from transformers 5.x.
"""

from __future__ import annotations

import json
import re
import shutil
import sys
import tempfile
from pathlib import Path

import torch
import transformers
from safetensors.torch import load_file, save_file

ROOT = Path(__file__).resolve().parent.parent
FIX = ROOT / "tests" / "fixtures"
OUT = FIX / "goldens" / "seq2seq"
sys.path.insert(0, str(ROOT))  # for the round trip through our own save_pretrained

VOCAB = 128
B, S, T = 3, 9, 6
_SHAPE = dict(vocab_size=VOCAB, d_model=32, encoder_layers=2, decoder_layers=2, encoder_attention_heads=4,
              decoder_attention_heads=4, encoder_ffn_dim=24, decoder_ffn_dim=24, max_position_embeddings=24)
_SMALL = dict(_SHAPE, encoder_layers=1, decoder_layers=1)

# name -> (reference class, config class, config)
FIXTURES = {
    "bart-tiny-lm": ("BartForConditionalGeneration", "BartConfig", dict(_SHAPE)),
    # distilbart: fewer decoder than encoder layers
    "bart-distil-lm": ("BartForConditionalGeneration", "BartConfig",
                       dict(_SHAPE, encoder_layers=3, decoder_layers=1, activation_function="gelu_new")),
    "bart-small-seqcls": ("BartForSequenceClassification", "BartConfig", dict(_SMALL, num_labels=3)),
    "bart-small-qa": ("BartForQuestionAnswering", "BartConfig", dict(_SMALL)),
    # opus-mt: swish, scaled embeddings, pad = decoder start, eos 0
    "marian-tiny-lm": ("MarianMTModel", "MarianConfig",
                       dict(_SHAPE, activation_function="swish", scale_embedding=True, pad_token_id=VOCAB - 1,
                            decoder_start_token_id=VOCAB - 1, eos_token_id=0, forced_eos_token_id=0)),
    # a target vocabulary of its own (untied encoder/decoder embeddings)
    "marian-sep-lm": ("MarianMTModel", "MarianConfig",
                      dict(_SHAPE, activation_function="swish", scale_embedding=True, pad_token_id=VOCAB - 1,
                           decoder_start_token_id=VOCAB - 1, eos_token_id=0, forced_eos_token_id=0,
                           share_encoder_decoder_embeddings=False, decoder_vocab_size=VOCAB + 16)),
    "mbart-tiny-lm": ("MBartForConditionalGeneration", "MBartConfig", dict(_SHAPE, scale_embedding=True)),
    "pegasus-tiny-lm": ("PegasusForConditionalGeneration", "PegasusConfig",
                        dict(_SHAPE, activation_function="relu", scale_embedding=True)),
    # mBART's copies of BART's heads (pre-LN, final norms)
    "mbart-small-seqcls": ("MBartForSequenceClassification", "MBartConfig", dict(_SMALL, num_labels=3)),
    "mbart-small-qa": ("MBartForQuestionAnswering", "MBartConfig", dict(_SMALL)),
    # the decoders alone as decoder-only LMs (XForCausalLM): see build_causal
    "bart-tiny-causal": ("BartForCausalLM", "BartConfig", dict(_SHAPE)),
    "marian-tiny-causal": ("MarianForCausalLM", "MarianConfig",
                           dict(_SHAPE, activation_function="swish", scale_embedding=True, pad_token_id=VOCAB - 1,
                                decoder_start_token_id=VOCAB - 1, eos_token_id=0, forced_eos_token_id=0)),
    "mbart-tiny-causal": ("MBartForCausalLM", "MBartConfig", dict(_SHAPE, scale_embedding=True)),
    "pegasus-tiny-causal": ("PegasusForCausalLM", "PegasusConfig",
                            dict(_SHAPE, activation_function="relu", scale_embedding=True)),
}
BASE = {"BartConfig": "BartModel", "MarianConfig": "MarianModel", "MBartConfig": "MBartModel",
        "PegasusConfig": "PegasusModel"}
AUTO = {"ForConditionalGeneration": "AutoModelForSeq2SeqLM", "MTModel": "AutoModelForSeq2SeqLM",
        "ForSequenceClassification": "AutoModelForSequenceClassification",
        "ForQuestionAnswering": "AutoModelForQuestionAnswering", "ForCausalLM": "AutoModelForCausalLM"}
GENERATE = {"greedy": {}, "beams": {"num_beams": 3}}   # generate() cases, 8 new tokens
OUTPUT_KEYS = ("logits", "start_logits", "end_logits", "encoder_last_hidden_state")
SINUSOIDAL = re.compile(r"embed_positions\.weight$")


def make_inputs(config, seed: int, decoder_vocab: int) -> dict[str, torch.Tensor]:
    """Encoder rows: full, right-padded by 3, left-padded by 2; each ends with eos (the
    classification head pools there). Decoder rows start with the decoder start token."""
    g = torch.Generator().manual_seed(seed)
    pad, eos = config.pad_token_id, config.eos_token_id
    low = 3
    ids = torch.randint(low, VOCAB - 1, (B, S), generator=g)
    mask = torch.ones(B, S, dtype=torch.long)
    mask[1, -3:] = 0
    mask[2, :2] = 0
    ids[0, -1], ids[1, -4], ids[2, -1] = eos, eos, eos
    ids[mask == 0] = pad
    start = config.decoder_start_token_id if config.decoder_start_token_id is not None else eos
    dec = torch.randint(low, min(decoder_vocab, VOCAB) - 1, (B, T), generator=g)
    dec[:, 0] = start
    return {"input_ids": ids, "attention_mask": mask, "decoder_input_ids": dec}


def outputs_of(model, inputs) -> dict[str, torch.Tensor]:
    with torch.no_grad():
        out = model(**inputs)
    return {k: getattr(out, k).detach().clone() for k in OUTPUT_KEYS if getattr(out, k, None) is not None}


def ref_load(cls, folder, allow_missing=None, **kw):
    model, info = cls.from_pretrained(folder, output_loading_info=True, **kw)
    missing = [k for k in info["missing_keys"] if not (allow_missing and allow_missing.search(k))]
    if missing or info["mismatched_keys"]:
        raise SystemExit(f"{folder}: the reference did not load cleanly: {info}")
    return model.eval()


def save_half(model, folder: Path) -> None:
    """Save, then store the weights in float16 (config.json keeps float32); the sinusoidal
    tables stay float32, as the real checkpoints hold them."""
    shutil.rmtree(folder, ignore_errors=True)
    model.save_pretrained(folder)
    path = folder / "model.safetensors"
    tensors = load_file(str(path))
    fixed = _sinusoidal_keys(model)
    tensors = {k: (v if k in fixed else v.half()).contiguous() for k, v in tensors.items()}
    save_file(tensors, str(path), metadata={"format": "pt"})


def _sinusoidal_keys(model) -> set[str]:
    return {f"{n}.weight" for n, m in model.named_modules() if "Sinusoidal" in type(m).__name__}


def make_model(name: str):
    """The reference's random model of fixture ``name``, moved away from init values, saved in
    float16; returns (class, seed, folder, allow-missing pattern)."""
    cls_name, config_name, shape = FIXTURES[name]
    cls = getattr(transformers, cls_name)
    config = getattr(transformers, config_name)(**shape)
    seed = sum(map(ord, name))
    torch.manual_seed(seed)
    model = cls(config).eval()
    fixed = _sinusoidal_keys(model)
    with torch.no_grad():   # away from init values; the sinusoidal tables are not trained
        for n, p in model.named_parameters():
            if n not in fixed:
                p.add_(torch.randn_like(p) * 0.15)
                p.copy_(p.half().float())
        if hasattr(model, "final_logits_bias"):
            model.final_logits_bias.add_(torch.randn_like(model.final_logits_bias) * 0.3)
            model.final_logits_bias.copy_(model.final_logits_bias.half().float())
    folder = FIX / "models" / name
    save_half(model, folder)
    return cls, seed, folder, (SINUSOIDAL if fixed else None)


def build(name: str) -> dict:
    cls_name, config_name, shape = FIXTURES[name]
    if cls_name.endswith("ForCausalLM"):
        return build_causal(name)
    cls, seed, folder, allow = make_model(name)
    loaded = ref_load(cls, folder, allow)
    assert loaded.dtype == torch.float32, loaded.dtype
    decoder_vocab = loaded.get_decoder().embed_tokens.num_embeddings
    inputs = make_inputs(loaded.config, seed, decoder_vocab)
    if not cls_name.endswith(("ForConditionalGeneration", "MTModel")):
        del inputs["decoder_input_ids"]   # the heads' default: input_ids shifted right
    tensors = {f"input.{k}": v for k, v in inputs.items()}
    expected = outputs_of(loaded, inputs)
    tensors.update({f"output.{k}": v for k, v in expected.items()})
    base = ref_load(getattr(transformers, BASE[config_name]), folder, allow)
    with torch.no_grad():
        tensors["base.last_hidden_state"] = base(**inputs).last_hidden_state
    bf = ref_load(cls, folder, allow, dtype=torch.bfloat16)
    tensors.update({f"bf16.{k}": v.float() for k, v in outputs_of(bf, inputs).items()})
    meta = {"class": cls_name, "config": shape, "files": sorted(p.name for p in folder.iterdir()),
            "losses": {}}
    if "decoder_input_ids" in inputs:
        dmask = torch.ones(B, T, dtype=torch.long)
        dmask[1, -2:] = 0
        tensors["decmask.decoder_attention_mask"] = dmask
        tensors["decmask.logits"] = outputs_of(loaded, {**inputs, "decoder_attention_mask": dmask})["logits"]
        labels = torch.randint(3, decoder_vocab - 1, (B, T), generator=torch.Generator().manual_seed(seed + 1))
        labels[1, -2:] = -100
        tensors["label.labels"] = labels
        enc = {k: inputs[k] for k in ("input_ids", "attention_mask")}
        with torch.no_grad():
            meta["losses"]["labels_only"] = float(loaded(**enc, labels=labels).loss)
            meta["losses"]["labels_with_decoder_input_ids"] = float(loaded(**inputs, labels=labels).loss)
            meta["decoder_input_ids_from_labels"] = loaded.prepare_decoder_input_ids_from_labels(labels).tolist()
            meta["generate"] = {case: loaded.generate(**enc, max_new_tokens=8, do_sample=False, **kw).tolist()
                                for case, kw in GENERATE.items()}
    elif cls_name.endswith("ForSequenceClassification"):
        labels = torch.tensor([0, 2, 1])
        tensors["label.labels"] = labels
        with torch.no_grad():
            meta["losses"]["single_label"] = float(loaded(**inputs, labels=labels).loss)
    else:
        spans = {"start_positions": torch.tensor([1, 2, 30]), "end_positions": torch.tensor([3, 2, 4])}
        tensors.update({f"label.{k}": v for k, v in spans.items()})
        with torch.no_grad():
            meta["losses"]["span"] = float(loaded(**inputs, **spans).loss)
    OUT.mkdir(parents=True, exist_ok=True)
    save_file({k: v.contiguous() for k, v in tensors.items()}, str(OUT / f"{name}.safetensors"))
    meta["roundtrip_max_abs_diff"] = roundtrip(name, cls_name, folder, inputs, expected, allow)
    return meta


def build_causal(name: str) -> dict:
    """XForCausalLM, the decoder alone: ``input.*`` (input_ids with a right- and a left-padded
    row, attention_mask), ``output.logits``, ``cross.*`` (encoder_hidden_states,
    encoder_attention_mask with padding, and the logits with them), ``label.labels`` (-100 at
    the padding; the reference 5.x does not shift them) and the losses without and with the
    encoder states; generate() from the left-padded prompt (greedy, 3 beams)."""
    cls_name, _, shape = FIXTURES[name]
    cls, seed, folder, allow = make_model(name)
    loaded = ref_load(cls, folder, allow)
    assert loaded.dtype == torch.float32 and not loaded.config.is_encoder_decoder
    g = torch.Generator().manual_seed(seed)
    pad = loaded.config.pad_token_id
    ids = torch.randint(3, VOCAB - 1, (B, T + 1), generator=g)
    mask = torch.ones_like(ids)
    mask[1, -2:] = 0
    mask[2, :3] = 0
    ids[mask == 0] = pad
    inputs = {"input_ids": ids, "attention_mask": mask}
    cross = {"encoder_hidden_states": torch.randn(B, S, shape["d_model"], generator=g),
             "encoder_attention_mask": torch.ones(B, S, dtype=torch.long)}
    cross["encoder_attention_mask"][1, -3:] = 0
    labels = torch.randint(3, VOCAB - 1, (B, T + 1), generator=g).masked_fill(mask == 0, -100)
    tensors = {f"input.{k}": v for k, v in inputs.items()}
    expected = outputs_of(loaded, inputs)
    tensors.update({f"output.{k}": v for k, v in expected.items()})
    tensors.update({f"cross.{k}": v for k, v in cross.items()})
    tensors["cross.logits"] = outputs_of(loaded, {**inputs, **cross})["logits"]
    tensors["label.labels"] = labels
    bf = ref_load(cls, folder, allow, dtype=torch.bfloat16)
    tensors.update({f"bf16.{k}": v.float() for k, v in outputs_of(bf, inputs).items()})
    meta = {"class": cls_name, "config": shape, "files": sorted(p.name for p in folder.iterdir()), "losses": {}}
    with torch.no_grad():
        meta["losses"]["labels"] = float(loaded(**inputs, labels=labels).loss)
        meta["losses"]["labels_cross"] = float(loaded(**inputs, **cross, labels=labels).loss)
        meta["generate"] = {case: loaded.generate(**inputs, max_new_tokens=8, do_sample=False, **kw).tolist()
                            for case, kw in GENERATE.items()}
    OUT.mkdir(parents=True, exist_ok=True)
    save_file({k: v.contiguous() for k, v in tensors.items()}, str(OUT / f"{name}.safetensors"))
    meta["roundtrip_max_abs_diff"] = roundtrip(name, cls_name, folder, inputs, expected, allow)
    return meta


def roundtrip(name, cls_name, folder, inputs, expected, allow) -> float:
    """Load with OUR library, save with OUR save_pretrained, read back with the reference's Auto
    class (so our config.json's model_type picks the class). The sinusoidal tables, which we do
    not store, the reference rebuilds."""
    import pretrained.auto as ours

    model_type = json.loads((folder / "config.json").read_text())["model_type"]
    our_cls = next(c for c in ours.model_module(model_type).MODEL_CLASSES.values() if c.__name__ == cls_name)
    model = our_cls.from_pretrained(folder)
    suffix = next(k for k in AUTO if cls_name.endswith(k))
    with tempfile.TemporaryDirectory() as tmp:
        model.save_pretrained(tmp)
        back = ref_load(getattr(transformers, AUTO[suffix]), tmp, allow)
        if type(back).__name__ != cls_name:
            raise SystemExit(f"{name}: the reference read our save as {type(back).__name__}")
        out = outputs_of(back, inputs)
    if set(out) != set(expected):
        raise SystemExit(f"{name}: outputs differ in kind: {sorted(out)} vs {sorted(expected)}")
    return max(float((out[k] - expected[k]).abs().max()) for k in out)


def main() -> None:
    transformers.utils.logging.disable_progress_bar()
    meta = {"transformers_version": transformers.__version__, "torch_version": torch.__version__,
            "models": {}}
    for name in FIXTURES:
        meta["models"][name] = build(name)
        print(f"{name:24s} round trip max abs diff {meta['models'][name]['roundtrip_max_abs_diff']:.2e}")
    (OUT / "seq2seq.json").write_text(json.dumps(meta, indent=2, sort_keys=True) + "\n")


if __name__ == "__main__":
    main()
