"""Goldens for the decoder architectures (llama, mistral, qwen2, qwen3, gpt_neox): tiny random
checkpoints saved by the reference library and its outputs on them.

Run with the reference's venv (``/work/refvenv/bin/python scripts/make_goldens.py decoders``, or
this file directly). Writes:

  tests/fixtures/models/<name>/                 config.json + model.safetensors from the reference
  tests/fixtures/goldens/decoders/<name>.safetensors
      input.input_ids, input.attention_mask      (B=3, T=9; rows 1 and 2 left-padded)
      input.position_ids                          positions counting real tokens only (as generate)
      label.labels                                ids, -100 on padding
      output.logits                               forward(ids, mask)            (default positions)
      output.logits_pos                           forward(ids, mask, position_ids)
      output.hidden_states                        (layers + 1, B, T, hidden) stacked
      (the prefill, forward(ids, mask, position_ids, use_cache=True), gives output.logits_pos)
      decode.step{i}.input_ids / .logits          3 one-token steps on the returned cache
      bf16.logits                                 (some models) the reference in bfloat16
      packed.input_ids / position_ids / logits    (some models) 3 sequences packed in one row
      (gpt2-tiny / gpt2-small: the inputs and decode.* only, on make_goldens.py's checkpoints)
  tests/fixtures/goldens/decoders/decoders.json   per model: class, loss, round trip (our
                                                  save_pretrained read back by the reference)

Each recorded computation runs on a freshly loaded model: "dynamic" RoPE keeps state between
calls in the reference, so the tests replay the same sequence on fresh models too.
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
OUT = FIX / "goldens" / "decoders"
VOCAB = 128
B, T, STEPS = 3, 9, 3

LLAMA = dict(vocab_size=VOCAB, hidden_size=32, intermediate_size=48, num_hidden_layers=2,
             num_attention_heads=4, num_key_value_heads=2, max_position_embeddings=64,
             bos_token_id=1, eos_token_id=2, pad_token_id=0)
NEOX = dict(vocab_size=VOCAB, hidden_size=32, intermediate_size=48, num_hidden_layers=2,
            num_attention_heads=2, max_position_embeddings=64, bos_token_id=1, eos_token_id=2,
            pad_token_id=0)

# name -> (config class, model class, config kwargs, legacy config.json rewrite or None, bf16?)
MODELS = {
    "llama-gqa": ("LlamaConfig", "LlamaForCausalLM", dict(LLAMA), None, True),
    "llama-mha-tied": ("LlamaConfig", "LlamaForCausalLM",
                       dict(LLAMA, num_key_value_heads=4, tie_word_embeddings=True,
                            rope_parameters={"rope_type": "default", "rope_theta": 500000.0},
                            rms_norm_eps=1e-5), None, False),
    "llama-bias-headdim": ("LlamaConfig", "LlamaForCausalLM",
                           dict(LLAMA, num_key_value_heads=1, head_dim=16, attention_bias=True,
                                mlp_bias=True), None, False),
    "llama-linear": ("LlamaConfig", "LlamaForCausalLM",
                     dict(LLAMA, rope_parameters={"rope_type": "linear", "factor": 2.0,
                                                  "rope_theta": 10000.0}), None, False),
    # the same, saved the way transformers 4.x wrote it (rope_theta + rope_scaling {"type"})
    "llama-linear-legacy": ("LlamaConfig", "LlamaForCausalLM",
                            dict(LLAMA, rope_parameters={"rope_type": "linear", "factor": 2.0,
                                                         "rope_theta": 20000.0}),
                            {"rope_theta": 20000.0, "rope_scaling": {"type": "linear", "factor": 2.0}},
                            False),
    # max_position_embeddings 8 < 9 tokens: NTK rescaling happens in every call
    "llama-dynamic": ("LlamaConfig", "LlamaForCausalLM",
                      dict(LLAMA, max_position_embeddings=8,
                           rope_parameters={"rope_type": "dynamic", "factor": 2.0,
                                            "rope_theta": 10000.0}), None, False),
    "llama-llama3": ("LlamaConfig", "LlamaForCausalLM",
                     dict(LLAMA, num_attention_heads=2, num_key_value_heads=1,
                          rope_parameters={"rope_type": "llama3", "factor": 8.0, "low_freq_factor": 1.0,
                                           "high_freq_factor": 4.0, "rope_theta": 10000.0,
                                           "original_max_position_embeddings": 32}), None, False),
    "llama-yarn": ("LlamaConfig", "LlamaForCausalLM",
                   dict(LLAMA, rope_parameters={"rope_type": "yarn", "factor": 4.0, "rope_theta": 10000.0,
                                                "original_max_position_embeddings": 16}), None, False),
    "llama-seqcls": ("LlamaConfig", "LlamaForSequenceClassification", dict(LLAMA, num_labels=3),
                     None, False),
    "mistral-window": ("MistralConfig", "MistralForCausalLM", dict(LLAMA, sliding_window=4), None, True),
    "qwen2-tied": ("Qwen2Config", "Qwen2ForCausalLM", dict(LLAMA, tie_word_embeddings=True), None, False),
    "qwen2-window": ("Qwen2Config", "Qwen2ForCausalLM",
                     dict(LLAMA, use_sliding_window=True, sliding_window=4, max_window_layers=1),
                     None, False),
    "qwen3": ("Qwen3Config", "Qwen3ForCausalLM", dict(LLAMA, head_dim=16), None, True),
    "gpt_neox-parallel": ("GPTNeoXConfig", "GPTNeoXForCausalLM",
                          dict(NEOX, rope_parameters={"rope_type": "default", "rope_theta": 10000.0,
                                                      "partial_rotary_factor": 0.25}), None, True),
    # sequential residual, full rotary, and the config keys Pythia's files use
    "gpt_neox-sequential-legacy": ("GPTNeoXConfig", "GPTNeoXForCausalLM",
                                   dict(NEOX, use_parallel_residual=False, hidden_act="gelu_new",
                                        rope_parameters={"rope_type": "default", "rope_theta": 1000.0,
                                                         "partial_rotary_factor": 1.0}),
                                   {"rotary_pct": 1.0, "rotary_emb_base": 1000}, False),
}


# models that also get a packed-sequences golden (packed.*)
PACKED = {"llama-gqa", "mistral-window", "gpt_neox-parallel"}
# GPT-2 fixtures of scripts/make_goldens.py that get cached-decode goldens here
GPT2_DECODE = ["gpt2-tiny", "gpt2-small"]


def make_inputs(seed: int) -> dict[str, torch.Tensor]:
    g = torch.Generator().manual_seed(seed)
    ids = torch.randint(3, VOCAB, (B, T), generator=g)
    mask = torch.ones(B, T, dtype=torch.long)
    mask[1, :3] = 0
    mask[2, :1] = 0
    ids[mask == 0] = 0
    return {"input_ids": ids, "attention_mask": mask}


def positions(mask: torch.Tensor) -> torch.Tensor:
    """Position of each token counting real tokens only (padding gets 1, as generate does)."""
    pos = mask.long().cumsum(-1) - 1
    return pos.masked_fill(mask == 0, 1)


@torch.no_grad()
def decode(model, ids, mask, pos, seed: int) -> dict[str, torch.Tensor]:
    """Prefill the padded batch with a cache, then STEPS one-token steps on that cache."""
    t = {}
    out = model(input_ids=ids, attention_mask=mask, position_ids=pos, use_cache=True)
    t["decode.prefill.logits"] = out.logits  # (only kept for GPT-2: else it equals logits_pos)
    cache, step_mask, step_pos = out.cache, mask, pos[:, -1:]
    g = torch.Generator().manual_seed(seed + 7)
    for i in range(STEPS):
        new = torch.randint(3, VOCAB, (B, 1), generator=g)
        step_mask = torch.cat([step_mask, torch.ones(B, 1, dtype=step_mask.dtype)], 1)
        step_pos = step_pos + 1
        out = model(input_ids=new, attention_mask=step_mask, position_ids=step_pos, cache=cache,
                    use_cache=True)
        cache = out.cache
        t[f"decode.step{i}.input_ids"] = new
        t[f"decode.step{i}.logits"] = out.logits
    return t


def record_gpt2_decode(name: str) -> dict:
    """Cached decode on the GPT-2 fixtures that make_goldens.py saved (run it first)."""
    folder = FIX / "models" / name
    seed = sum(map(ord, name))
    inputs = make_inputs(seed)
    ids, mask = inputs["input_ids"], inputs["attention_mask"]
    pos = positions(mask)
    t = {"input.input_ids": ids, "input.attention_mask": mask, "input.position_ids": pos}
    t.update(decode(load("GPT2LMHeadModel", folder), ids, mask, pos, seed))
    OUT.mkdir(parents=True, exist_ok=True)
    save_file({k: v.contiguous() for k, v in t.items()}, str(OUT / f"{name}.safetensors"))
    return {"class": "GPT2LMHeadModel", "decode_only": True}


def load(cls_name: str, folder: Path, dtype=torch.float32):
    return getattr(transformers, cls_name).from_pretrained(folder, dtype=dtype).eval()


@torch.no_grad()
def record(name: str, spec) -> dict:
    cfg_name, cls_name, kwargs, legacy, bf16 = spec
    seed = sum(map(ord, name))
    torch.manual_seed(seed)
    config = getattr(transformers, cfg_name)(**kwargs)
    model = getattr(transformers, cls_name)(config).eval()
    for p in model.parameters():  # away from init (norm weights 1, biases 0)
        p.add_(torch.randn_like(p) * 0.1)
    folder = FIX / "models" / name
    shutil.rmtree(folder, ignore_errors=True)
    model.save_pretrained(folder)
    if legacy is not None:  # rewrite config.json the way older releases saved it
        data = json.loads((folder / "config.json").read_text())
        data.pop("rope_parameters", None)
        data.update(legacy)
        (folder / "config.json").write_text(json.dumps(data, indent=2, sort_keys=True) + "\n")

    inputs = make_inputs(seed)
    ids, mask = inputs["input_ids"], inputs["attention_mask"]
    pos = positions(mask)
    t = {"input.input_ids": ids, "input.attention_mask": mask, "input.position_ids": pos}
    meta = {"class": cls_name, "config_class": cfg_name, "legacy_config": legacy is not None}
    if cls_name.endswith("SequenceClassification"):
        labels = torch.tensor([0, 2, 1])
        out = load(cls_name, folder)(**inputs, labels=labels)
        t["label.labels"] = labels
        t["output.logits"] = out.logits
        meta["loss"] = float(out.loss)
    else:
        labels = ids.masked_fill(mask == 0, -100)
        t["label.labels"] = labels
        out = load(cls_name, folder)(**inputs, labels=labels, output_hidden_states=True)
        t["output.logits"] = out.logits
        t["output.hidden_states"] = torch.stack(out.hidden_states)
        meta["loss"] = float(out.loss)
        t["output.logits_pos"] = load(cls_name, folder)(**inputs, position_ids=pos).logits
        t.update(decode(load(cls_name, folder), ids, mask, pos, seed))
        assert torch.equal(t.pop("decode.prefill.logits"), t["output.logits_pos"])
        if name in PACKED:  # restarting positions, no mask, no cache: packed sequences
            packed_ids = ids[:1].repeat(1, 2)[:, :14]
            packed_pos = torch.tensor([[0, 1, 2, 3, 4, 5, 0, 1, 2, 3, 4, 0, 1, 2]])
            t["packed.input_ids"], t["packed.position_ids"] = packed_ids, packed_pos
            t["packed.logits"] = load(cls_name, folder)(input_ids=packed_ids, position_ids=packed_pos,
                                                        use_cache=False).logits
    if bf16:
        t["bf16.logits"] = load(cls_name, folder, torch.bfloat16)(**inputs).logits.float()
    OUT.mkdir(parents=True, exist_ok=True)
    save_file({k: v.contiguous() for k, v in t.items()}, str(OUT / f"{name}.safetensors"))
    meta["files"] = sorted(p.name for p in folder.iterdir())
    meta["roundtrip_max_abs_diff"] = roundtrip(cls_name, folder, inputs, t["output.logits"])
    return meta


def roundtrip(cls_name: str, folder: Path, inputs, expected: torch.Tensor) -> float:
    """Load with OUR library, save with OUR save_pretrained, read back with the reference."""
    sys.path.insert(0, str(ROOT))
    import pretrained

    auto = ("AutoModelForSequenceClassification" if cls_name.endswith("SequenceClassification")
            else "AutoModelForCausalLM")
    ours = getattr(pretrained, auto).from_pretrained(folder)
    with tempfile.TemporaryDirectory() as tmp:
        ours.save_pretrained(tmp)
        back = load(cls_name, Path(tmp))
        if type(back).__name__ != cls_name:
            raise SystemExit(f"{folder.name}: the reference read our save as {type(back).__name__}")
        got = back(**inputs).logits
    return float((got - expected).abs().max())


def main() -> None:
    meta = {"transformers_version": transformers.__version__, "torch_version": torch.__version__,
            "models": {}}
    for name, spec in MODELS.items():
        meta["models"][name] = record(name, spec)
        print(f"{name:28s} round trip max abs diff {meta['models'][name]['roundtrip_max_abs_diff']:.2e}")
    for name in GPT2_DECODE:
        meta["models"][name] = record_gpt2_decode(name)
    (OUT / "decoders.json").write_text(json.dumps(meta, indent=2, sort_keys=True) + "\n")


if __name__ == "__main__":
    main()
