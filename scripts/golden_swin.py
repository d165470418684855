"""Goldens for the Swin Transformer (``model_type: "swin"``), from the reference (transformers 5.25):

    /work/refvenv/bin/python scripts/golden_swin.py

For every fixture the reference builds a tiny random model, moves its weights away from their
init values (the bias tables and norms included), saves it to tests/fixtures/models/<name>/
(with the reference's ViTImageProcessor, what swin checkpoints use), loads it back and records
in tests/fixtures/goldens/swin/<name>.safetensors:
  input.pixel_values     (B=3, C, H, W) random pixels at image_size
  output.*               last_hidden_state + pooler_output (bare models), logits (heads),
                         feature.<i> (backbones), hidden.<i> / reshaped.<i> (hidden states)
  other.*                the same for pixels of another, non-square size that is not a multiple
                         of the patch or the window (input.pixel_values_other): padding of the
                         pixels, of the windows and odd patch merging all run
  bf16.*                 the reference's bfloat16 run (not the hidden states)
  case.<c>.labels        labels of loss case <c>
and in swin.json (the index tests/models/tester.py reads): the class, the losses, the round trip
(our save_pretrained read back by the reference: max abs diff of its outputs against the
goldens), and where the reference fails (a map smaller than a window in the bare model).

Shapes: "tiny" has 32 x 32 images, 4 x 4 patches, windows of 4 and stages of 8 x 8 (shifted
windows) and 4 x 4 tokens (one unshifted window in the bare model, shifted in the backbone);
"variant" has one channel, 2 x 2 patches, windows of 3, three stages (12, 6, 3), absolute
position embeddings (the other size through interpolate_pos_encoding), no qkv bias, mlp_ratio 2,
gelu_new and layer_norm_eps 1e-6 (the blocks' and final norms; the others keep 1e-5).

The reference's layers keep the window and shift they clamped to in their first call (a map no
larger than the window), so a reference model is loaded afresh for every input here: what a
user's first call gets, and what this library gives on every call.
"""

from __future__ import annotations

import json
import shutil
import sys
import tempfile
from pathlib import Path

import torch
import transformers
from safetensors.torch import load_file, save_file

ROOT = Path(__file__).resolve().parent.parent
FIX = ROOT / "tests" / "fixtures"
OUT = FIX / "goldens" / "swin"
sys.path.insert(0, str(ROOT))  # for the round trip through our own save_pretrained

from golden_common import classification_loss_cases  # noqa: E402

B = 3
TINY = dict(image_size=32, patch_size=4, embed_dim=8, depths=[1, 2], num_heads=[2, 4], window_size=4)
VARIANT = dict(image_size=24, patch_size=2, num_channels=1, embed_dim=6, depths=[2, 2, 1], num_heads=[1, 2, 3],
               window_size=3, use_absolute_embeddings=True, qkv_bias=False, mlp_ratio=2.0, hidden_act="gelu_new",
               layer_norm_eps=1e-6)
LABELS = ["cat", "dog", "bird"]
NAMED = dict(id2label=dict(enumerate(LABELS)), label2id={n: i for i, n in enumerate(LABELS)})
NO_ABS = {k: v for k, v in VARIANT.items() if k != "use_absolute_embeddings"}

# name -> (reference class, config kwargs, head, other size, forward kwargs of the other size)
FIXTURES = {
    "swin-tiny-model": ("SwinModel", TINY, "model", (42, 34), {}),
    "swin-tiny-imgcls": ("SwinForImageClassification", dict(TINY, **NAMED), "imgcls", (42, 34), {}),
    "swin-tiny-regression": ("SwinForImageClassification", dict(TINY, num_labels=1), "imgcls", (42, 34), {}),
    "swin-variant-imgcls": ("SwinForImageClassification", dict(VARIANT, num_labels=4), "imgcls", (30, 22),
                            {"interpolate_pos_encoding": True}),
    "swin-tiny-backbone": ("SwinBackbone", dict(TINY, out_features=["stem", "stage1", "stage2"]), "backbone",
                           (42, 34), {}),
    # maps smaller than a window (10 x 10 pixels: stages of 5, 3, 2 tokens) are padded in a backbone
    "swin-variant-backbone": ("SwinBackbone", dict(NO_ABS, out_indices=[2, 3]), "backbone", (10, 10), {}),
}
AUTO = {"model": "AutoModel", "imgcls": "AutoModelForImageClassification", "backbone": "AutoBackbone"}
OUTPUT_KEYS = ("last_hidden_state", "pooler_output", "logits")
PIPELINE = {"swin-tiny-imgcls": ["chelsea.png", "rocket.jpg", "camera.png"]}
# the bare model on images whose last stage is smaller than a window: the reference fails
TOO_SMALL = {"swin-tiny-model": (24, 24), "swin-tiny-imgcls": (20, 28)}
SMALLEST = {"swin-tiny-model": (25, 25)}


def pixels(config, seed: int, size=None) -> torch.Tensor:
    g = torch.Generator().manual_seed(seed)
    return torch.randn(B, config.num_channels, *(size or (config.image_size,) * 2), generator=g)


def outputs_of(model, pixel_values, **kw) -> dict[str, torch.Tensor]:
    with torch.no_grad():
        out = model(pixel_values=pixel_values, output_hidden_states=True, **kw)
    got = {k: getattr(out, k).detach().clone() for k in OUTPUT_KEYS if getattr(out, k, None) is not None}
    if getattr(out, "feature_maps", None) is not None:
        got.update({f"feature.{i}": m.detach().clone() for i, m in enumerate(out.feature_maps)})
        got.update({f"hidden.{i}": h.detach().clone() for i, h in enumerate(out.hidden_states)})
    else:
        got.update({f"hidden.{i}": h.detach().clone() for i, h in enumerate(out.hidden_states)})
        got.update({f"reshaped.{i}": h.detach().clone() for i, h in enumerate(out.reshaped_hidden_states)})
    return got


def loss_cases(config, seed: int) -> dict[str, dict]:
    return classification_loss_cases(config, seed, B)


def ref_load(cls, folder, **kw):
    model, info = cls.from_pretrained(folder, output_loading_info=True, **kw)
    missing = [k for k in info["missing_keys"] if not k.startswith("swin.layernorm.")]   # a backbone has none
    if missing or info["mismatched_keys"] or info["unexpected_keys"]:
        raise SystemExit(f"{folder}: the reference did not load cleanly: {info}")
    return model.eval()


def build(name: str) -> dict:
    cls_name, kwargs, head, other, other_kw = FIXTURES[name]
    cls = getattr(transformers, cls_name)
    config = transformers.SwinConfig(**kwargs)
    seed = sum(map(ord, name))
    torch.manual_seed(seed)
    model = cls(config).eval()
    with torch.no_grad():   # away from init values (bias tables 0, norms 1/0, biases 0)
        for p in model.parameters():
            p.add_(torch.randn_like(p) * 0.15)
    folder = FIX / "models" / name
    shutil.rmtree(folder, ignore_errors=True)
    model.save_pretrained(folder)
    mean = [0.5] * config.num_channels
    transformers.ViTImageProcessor(size={"height": config.image_size, "width": config.image_size},
                                   image_mean=mean, image_std=mean).save_pretrained(folder)

    fresh = lambda **kw: ref_load(cls, folder, **kw)   # noqa: E731 (see the module doc)
    x = pixels(config, seed)
    tensors = {"input.pixel_values": x}
    expected = outputs_of(fresh(), x)
    tensors.update({f"output.{k}": v for k, v in expected.items()})
    xo = pixels(config, seed + 7, other)
    tensors["input.pixel_values_other"] = xo
    tensors.update({f"other.{k}": v for k, v in outputs_of(fresh(), xo, **other_kw).items()})
    bf_out = outputs_of(fresh(dtype=torch.bfloat16), x.to(torch.bfloat16))
    tensors.update({f"bf16.{k}": v.float() for k, v in bf_out.items() if not k.startswith(("hidden.", "reshaped."))})
    meta = {"class": cls_name, "head": head, "files": sorted(p.name for p in folder.iterdir()), "losses": {},
            "other_kwargs": other_kw, "other_size": list(other),
            "hidden_states": sum(k.startswith("hidden.") for k in expected),
            "features": sum(k.startswith("feature.") for k in expected)}
    if head == "backbone":
        meta["out_features"] = list(config.out_features)
        meta["channels"] = list(fresh().channels)
    if head == "imgcls":
        for case, spec in loss_cases(config, seed).items():
            model = fresh(**spec.get("config", {}))
            with torch.no_grad():
                loss = model(pixel_values=x, labels=spec["labels"]).loss
            meta["losses"][case] = {"loss": float(loss), "config": spec.get("config", {}),
                                    "problem_type": model.config.problem_type}
            tensors[f"case.{case}.labels"] = spec["labels"].clone()
    if name in PIPELINE:   # the whole image-classification pipeline on real pictures (its processor too)
        clf = transformers.pipeline("image-classification", model=str(folder))
        meta["pipeline"] = {p: clf(str(FIX / "images" / p), top_k=3) for p in PIPELINE[name]}
    if name in TOO_SMALL:
        size = TOO_SMALL[name]
        try:
            fresh()(pixel_values=pixels(config, seed, size))
            raise SystemExit(f"{name}: the reference ran on {size}; pick a smaller size")
        except RuntimeError as e:
            meta["reference_fails"] = {"size": list(size), "error": f"{type(e).__name__}: {e}"}
    if name in SMALLEST:   # one pixel more than TOO_SMALL: the last stage is one window
        xs = pixels(config, seed + 3, SMALLEST[name])
        tensors["input.pixel_values_smallest"] = xs
        tensors.update({f"smallest.{k}": v for k, v in outputs_of(fresh(), xs).items() if "." not in k})
    OUT.mkdir(parents=True, exist_ok=True)
    save_file({k: v.contiguous() for k, v in tensors.items()}, str(OUT / f"{name}.safetensors"))
    meta["roundtrip_max_abs_diff"] = roundtrip(name, head, folder, x, expected)
    return meta


def roundtrip(name: str, head: str, folder: Path, x, expected) -> float:
    """Load with OUR library, save with OUR save_pretrained, read back with the reference's Auto
    class for the head (our config.json's model_type picks the class)."""
    import pretrained.auto as ours

    cls_name = FIXTURES[name][0]
    our_cls = next(c for c in ours.model_module("swin").MODEL_CLASSES.values() if c.__name__ == cls_name)
    model = our_cls.from_pretrained(folder, strict=True)
    with tempfile.TemporaryDirectory() as tmp:
        model.save_pretrained(tmp)
        auto = getattr(transformers, AUTO[head])
        if head == "backbone":   # AutoBackbone.from_pretrained asks the hub about a local folder: its mapping
            auto = transformers.MODEL_FOR_BACKBONE_MAPPING[type(transformers.AutoConfig.from_pretrained(tmp))]
        back = ref_load(auto, tmp)
        if type(back).__name__ != cls_name:
            raise SystemExit(f"{name}: the reference read our save as {type(back).__name__}")
        theirs = {k for k in load_file(str(folder / "model.safetensors")) if not k.startswith("swin.layernorm.")
                  or head != "backbone"}   # a backbone's unused final norm: the reference writes it
        if sorted(load_file(str(Path(tmp) / "model.safetensors"))) != sorted(theirs):
            raise SystemExit(f"{name}: our save has other tensor names than the reference's")
        out = outputs_of(back, x)
    if set(out) != set(expected):
        raise SystemExit(f"{name}: outputs differ in kind: {sorted(out)} vs {sorted(expected)}")
    return max(float((out[k] - expected[k]).abs().max()) for k in out)


def main() -> None:
    transformers.utils.logging.disable_progress_bar()
    transformers.utils.logging.set_verbosity_error()
    meta = {"transformers_version": transformers.__version__, "torch_version": torch.__version__,
            "models": {}}
    for name in FIXTURES:
        meta["models"][name] = build(name)
        print(f"{name:24s} hidden {meta['models'][name]['hidden_states']}  round trip max abs diff "
              f"{meta['models'][name]['roundtrip_max_abs_diff']:.2e}")
    (OUT / "swin.json").write_text(json.dumps(meta, indent=2, sort_keys=True) + "\n")


if __name__ == "__main__":
    main()
