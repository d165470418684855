"""Goldens for the Audio Spectrogram Transformer (``model_type: "audio-spectrogram-transformer"``),
from the reference (transformers 5.25):

    /work/refvenv/bin/python scripts/golden_ast.py

For every fixture the reference builds a tiny random model (hidden 32, 2 layers, 4 heads, fbank
inputs of 26 mel bins x 64 frames instead of 128 x 1024), moves its weights away from their init
values (LayerNorms 1/0, zero tokens and positions, zero biases), saves it to
tests/fixtures/models/<name>/ with a preprocessor_config.json (the reference's
ASTFeatureExtractor sized to match), loads it back and records in
tests/fixtures/goldens/ast/<name>.safetensors:
  input.input_values     (B=3, max_length, num_mel_bins) random frames
  output.*               last_hidden_state + pooler_output (bare models), logits (heads),
                         hidden.<i> (every hidden_states entry)
  masked.*               the same with a (B, tokens) attention_mask that masks some patches
                         (input.token_mask)
  bf16.*                 the same in bfloat16 (the reference's bfloat16 run)
  case.<c>.labels        labels of loss case <c>
and in ast.json (the index tests/models/tester.py reads): the class, the losses (single-label,
multi-label by problem_type and by float labels, regression by problem_type and by
num_labels=1), and the round trip: our save_pretrained read back by the reference's Auto class
(max abs diff of its outputs against the goldens).

End to end: the reference's ``pipeline("audio-classification", model=<folder>)`` on fixed-seed
signals {"raw": array, "sampling_rate": 16000} (one shorter than max_length frames, one longer),
recorded under "pipeline" with the smallest gap between two neighbouring scores (a label order
that rounding could flip would not be a test).
"""

from __future__ import annotations

import json
import shutil
import sys
import tempfile
from pathlib import Path

import numpy as np
import torch
import transformers
from safetensors.torch import load_file, save_file

ROOT = Path(__file__).resolve().parent.parent
FIX = ROOT / "tests" / "fixtures"
OUT = FIX / "goldens" / "ast"
sys.path.insert(0, str(ROOT))  # for the round trip through our own save_pretrained

from golden_common import classification_loss_cases, ref_load  # noqa: E402

B = 3
TINY = dict(hidden_size=32, num_hidden_layers=2, num_attention_heads=4, intermediate_size=37,
            num_mel_bins=26, max_length=64)   # 2 x 5 patches of 16 (strides 10)
# square 8-patches, unequal strides (frequency 5, time 12): 4 x 5 patches; no q/k/v bias
STRIDED = dict(TINY, patch_size=8, frequency_stride=5, time_stride=12, qkv_bias=False,
               hidden_act="gelu_new", layer_norm_eps=1e-6)
LABELS = ["dog", "rain", "siren", "speech", "engine"]

# name -> (reference class, config kwargs, head)
FIXTURES = {
    "ast-tiny-model": ("ASTModel", TINY, "model"),
    "ast-strided-model": ("ASTModel", STRIDED, "model"),
    "ast-tiny-audiocls": ("ASTForAudioClassification",
                          dict(TINY, id2label=dict(enumerate(LABELS)),
                               label2id={n: i for i, n in enumerate(LABELS)}), "audiocls"),
    "ast-strided-audiocls": ("ASTForAudioClassification", dict(STRIDED, num_labels=3), "audiocls"),
    "ast-tiny-regression": ("ASTForAudioClassification", dict(TINY, num_labels=1), "audiocls"),
}
AUTO = {"model": "AutoModel", "audiocls": "AutoModelForAudioClassification"}
OUTPUT_KEYS = ("last_hidden_state", "pooler_output", "logits")


def make_inputs(config, seed: int) -> dict[str, torch.Tensor]:
    g = torch.Generator().manual_seed(seed)
    return {"input_values": torch.randn(B, config.max_length, config.num_mel_bins, generator=g)}


def token_mask(config, seed: int) -> torch.Tensor:
    """(B, 2 + patches): row 0 all ones, rows 1 and 2 with some patches masked (never the tokens)."""
    f = (config.num_mel_bins - config.patch_size) // config.frequency_stride + 1
    t = (config.max_length - config.patch_size) // config.time_stride + 1
    g = torch.Generator().manual_seed(seed + 3)
    mask = torch.ones(B, 2 + f * t, dtype=torch.long)
    mask[1, -3:] = 0
    mask[2, 2:][torch.rand(f * t, generator=g) < 0.4] = 0
    return mask


def outputs_of(model, inputs, **kw) -> dict[str, torch.Tensor]:
    with torch.no_grad():
        out = model(**inputs, output_hidden_states=True, **kw)
    got = {k: getattr(out, k).detach().clone() for k in OUTPUT_KEYS if getattr(out, k, None) is not None}
    got.update({f"hidden.{i}": h.detach().clone() for i, h in enumerate(out.hidden_states)})
    return got


def loss_cases(config, seed: int) -> dict[str, dict]:
    return classification_loss_cases(config, seed, B)



def build(name: str) -> dict:
    cls_name, kwargs, head = FIXTURES[name]
    cls = getattr(transformers, cls_name)
    config = transformers.ASTConfig(**kwargs)
    seed = sum(map(ord, name))
    torch.manual_seed(seed)
    model = cls(config).eval()
    with torch.no_grad():   # away from init values (norms = 1/0, zero tokens, positions, biases)
        for p in model.parameters():
            p.add_(torch.randn_like(p) * 0.15)
    folder = FIX / "models" / name
    shutil.rmtree(folder, ignore_errors=True)
    model.save_pretrained(folder)
    transformers.ASTFeatureExtractor(num_mel_bins=config.num_mel_bins, max_length=config.max_length
                                     ).save_pretrained(folder)

    loaded = ref_load(cls, folder)
    inputs = make_inputs(config, seed)
    mask = token_mask(config, seed)
    tensors = {"input.input_values": inputs["input_values"], "input.token_mask": mask}
    expected = outputs_of(loaded, inputs)
    tensors.update({f"output.{k}": v for k, v in expected.items()})
    masked = outputs_of(loaded, inputs, attention_mask=mask)
    tensors.update({f"masked.{k}": v for k, v in masked.items()})
    bf = ref_load(cls, folder, dtype=torch.bfloat16)
    bf_out = outputs_of(bf, {"input_values": inputs["input_values"].to(torch.bfloat16)})
    tensors.update({f"bf16.{k}": v.float() for k, v in bf_out.items() if not k.startswith("hidden.")})
    meta = {"class": cls_name, "head": head, "files": sorted(p.name for p in folder.iterdir()),
            "losses": {}, "hidden_states": sum(k.startswith("hidden.") for k in expected)}
    if head == "audiocls":
        for case, spec in loss_cases(loaded.config, seed).items():
            fresh = ref_load(cls, folder, **spec.get("config", {}))
            with torch.no_grad():
                loss = fresh(**inputs, labels=spec["labels"]).loss
            meta["losses"][case] = {"loss": float(loss), "config": spec.get("config", {}),
                                    "problem_type": fresh.config.problem_type}
            tensors[f"case.{case}.labels"] = spec["labels"].clone()
    OUT.mkdir(parents=True, exist_ok=True)
    save_file({k: v.contiguous() for k, v in tensors.items()}, str(OUT / f"{name}.safetensors"))
    meta["roundtrip_max_abs_diff"] = roundtrip(name, head, folder, inputs, expected)
    return meta


def roundtrip(name: str, head: str, folder: Path, inputs, expected) -> float:
    """Load with OUR library, save with OUR save_pretrained, read back with the reference's Auto
    class for the head (our config.json's model_type picks the class)."""
    import pretrained.auto as ours

    cls_name = FIXTURES[name][0]
    module = ours.model_module("audio-spectrogram-transformer")
    our_cls = next(c for c in module.MODEL_CLASSES.values() if c.__name__ == cls_name)
    model = our_cls.from_pretrained(folder, strict=True)
    with tempfile.TemporaryDirectory() as tmp:
        model.save_pretrained(tmp)
        back = ref_load(getattr(transformers, AUTO[head]), tmp)
        if type(back).__name__ != cls_name:
            raise SystemExit(f"{name}: the reference read our save as {type(back).__name__}")
        if sorted(load_file(str(Path(tmp) / "model.safetensors"))) != sorted(load_file(str(folder / "model.safetensors"))):
            raise SystemExit(f"{name}: our save has other tensor names than the reference's")
        out = outputs_of(back, inputs)
    if set(out) != set(expected):
        raise SystemExit(f"{name}: outputs differ in kind: {sorted(out)} vs {sorted(expected)}")
    return max(float((out[k] - expected[k]).abs().max()) for k in out)


# --- the pipeline, end to end -----------------------------------------------------------------
def signal(seconds: float, seed: int, rate: int = 16000) -> np.ndarray:
    rng = np.random.default_rng(seed)
    t = np.arange(int(seconds * rate)) / rate
    return (0.3 * np.sin(2 * np.pi * (300 + 70 * seed) * t) + 0.05 * rng.standard_normal(t.size)).astype(np.float32)


PIPELINE_CASES = {   # seconds (64 frames need 0.655 s), seed, call options
    "short_padded": (0.4, 1, {}),
    "long_cut": (1.5, 2, {}),
    "top_k_2": (0.8, 3, {"top_k": 2}),
    "sigmoid": (0.5, 4, {"function_to_apply": "sigmoid"}),
}


def pipeline_goldens(name: str) -> dict:
    pipe = transformers.pipeline("audio-classification", model=str(FIX / "models" / name))
    out = {"model": name, "feature_extractor": type(pipe.feature_extractor).__name__, "cases": {}}
    for case, (seconds, seed, kw) in PIPELINE_CASES.items():
        result = pipe({"raw": signal(seconds, seed), "sampling_rate": 16000}, **kw)
        scores = [r["score"] for r in result]
        gap = min((a - b for a, b in zip(scores, scores[1:])), default=1.0)
        out["cases"][case] = {"seconds": seconds, "seed": seed, "kwargs": kw, "output": result,
                              "min_score_gap": gap}
        print(f"pipeline {case:14s} {result}  (min gap {gap:.2e})")
    return out


def main() -> None:
    transformers.utils.logging.disable_progress_bar()
    meta = {"transformers_version": transformers.__version__, "torch_version": torch.__version__,
            "models": {}}
    for name in FIXTURES:
        meta["models"][name] = build(name)
        print(f"{name:24s} round trip max abs diff {meta['models'][name]['roundtrip_max_abs_diff']:.2e}")
    meta["pipeline"] = pipeline_goldens("ast-tiny-audiocls")
    (OUT / "ast.json").write_text(json.dumps(meta, indent=2, sort_keys=True) + "\n")


if __name__ == "__main__":
    main()
