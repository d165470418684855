"""Goldens for ViT (``model_type: "vit"``) and DeiT (``"deit"``), from the reference
(transformers 5.25):

    /work/refvenv/bin/python scripts/golden_vit.py

For every fixture the reference builds a tiny random model (hidden 32, 2 layers, 4 heads, 32 x 32
images in 8 x 8 patches; one variant with a 32 x 24 image of one channel, no q/k/v bias, gelu_new,
eps 1e-6 and a relu pooler of width 24), moves its weights away from their init values, saves it
to tests/fixtures/models/<name>/ (with the reference's ViTImageProcessor sized to match), loads it
back and records in tests/fixtures/goldens/vit/<name>.safetensors:
  input.pixel_values     (B=3, C, H, W) random pixels
  output.*               last_hidden_state + pooler_output (bare models), logits (heads; the
                         distilled head also cls_logits, distillation_logits), hidden.<i>
  interp.* / interp_sq.* the same for 48 x 40 / 48 x 48 pixels (input.pixel_values_interp,
                         input.pixel_values_interp_sq) with interpolate_pos_encoding=True (square
                         image_size only: the reference's resize assumes a square grid)
  bf16.*                 the reference's bfloat16 run (not the hidden states)
  case.<c>.labels        labels of loss case <c>
and in vit.json (the index tests/models/tester.py reads): the class, the losses (single-label,
multi-label by problem_type and by float labels, regression by problem_type and by num_labels=1),
and the round trip: our save_pretrained read back by the reference (max abs diff of its outputs
against the goldens).
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
OUT = FIX / "goldens" / "vit"
sys.path.insert(0, str(ROOT))  # for the round trip through our own save_pretrained

from golden_common import classification_loss_cases, ref_load  # noqa: E402

B = 3
TINY = dict(hidden_size=32, num_hidden_layers=2, num_attention_heads=4, intermediate_size=37,
            image_size=32, patch_size=8)
VARIANT = dict(TINY, image_size=[32, 24], num_channels=1, qkv_bias=False, hidden_act="gelu_new",
               layer_norm_eps=1e-6, pooler_output_size=24, pooler_act="relu")
LABELS = ["cat", "dog", "bird"]
NAMED = dict(id2label=dict(enumerate(LABELS)), label2id={n: i for i, n in enumerate(LABELS)})

# name -> (model_type, reference class, config kwargs, head)
FIXTURES = {
    "vit-tiny-model": ("vit", "ViTModel", TINY, "model"),
    "vit-variant-model": ("vit", "ViTModel", VARIANT, "model"),
    "vit-tiny-imgcls": ("vit", "ViTForImageClassification", dict(TINY, **NAMED), "imgcls"),
    "vit-variant-imgcls": ("vit", "ViTForImageClassification", dict(VARIANT, num_labels=4), "imgcls"),
    "vit-tiny-regression": ("vit", "ViTForImageClassification", dict(TINY, num_labels=1), "imgcls"),
    "deit-tiny-model": ("deit", "DeiTModel", TINY, "model"),
    "deit-tiny-imgcls": ("deit", "DeiTForImageClassification", dict(TINY, **NAMED), "imgcls"),
    "deit-tiny-teacher": ("deit", "DeiTForImageClassificationWithTeacher", dict(TINY, **NAMED), "teacher"),
}
AUTO = {"model": "AutoModel", "imgcls": "AutoModelForImageClassification",
        "teacher": "DeiTForImageClassificationWithTeacher"}
OUTPUT_KEYS = ("last_hidden_state", "pooler_output", "logits", "cls_logits", "distillation_logits")
SIZES = {"interp": (48, 40), "interp_sq": (48, 48)}


def pixels(config, seed: int, size=None) -> torch.Tensor:
    g = torch.Generator().manual_seed(seed)
    size = size or (tuple(config.image_size) if isinstance(config.image_size, list) else (config.image_size,) * 2)
    return torch.randn(B, config.num_channels, *size, generator=g)


def outputs_of(model, pixel_values, **kw) -> dict[str, torch.Tensor]:
    with torch.no_grad():
        out = model(pixel_values=pixel_values, output_hidden_states=True, **kw)
    got = {k: getattr(out, k).detach().clone() for k in OUTPUT_KEYS if getattr(out, k, None) is not None}
    got.update({f"hidden.{i}": h.detach().clone() for i, h in enumerate(out.hidden_states)})
    return got


def loss_cases(config, seed: int) -> dict[str, dict]:
    return classification_loss_cases(config, seed, B)



def build(name: str) -> dict:
    model_type, cls_name, kwargs, head = FIXTURES[name]
    cls = getattr(transformers, cls_name)
    config = (transformers.ViTConfig if model_type == "vit" else transformers.DeiTConfig)(**kwargs)
    seed = sum(map(ord, name))
    torch.manual_seed(seed)
    model = cls(config).eval()
    with torch.no_grad():   # away from init values (norms = 1/0, zero tokens, biases)
        for p in model.parameters():
            p.add_(torch.randn_like(p) * 0.15)
    folder = FIX / "models" / name
    shutil.rmtree(folder, ignore_errors=True)
    model.save_pretrained(folder)
    h, w = config.image_size if isinstance(config.image_size, list) else (config.image_size,) * 2
    mean = [0.5] * config.num_channels
    transformers.ViTImageProcessor(size={"height": h, "width": w}, image_mean=mean, image_std=mean
                                   ).save_pretrained(folder)

    loaded = ref_load(cls, folder)
    x = pixels(config, seed)
    tensors = {"input.pixel_values": x}
    expected = outputs_of(loaded, x)
    tensors.update({f"output.{k}": v for k, v in expected.items()})
    for tag, size in SIZES.items() if isinstance(config.image_size, int) else ():   # the reference
        xi = pixels(config, seed + 7, size)
        tensors[f"input.pixel_values_{tag}"] = xi
        tensors.update({f"{tag}.{k}": v for k, v in outputs_of(loaded, xi, interpolate_pos_encoding=True).items()})
    bf = ref_load(cls, folder, dtype=torch.bfloat16)
    bf_out = outputs_of(bf, x.to(torch.bfloat16))
    tensors.update({f"bf16.{k}": v.float() for k, v in bf_out.items() if not k.startswith("hidden.")})
    meta = {"class": cls_name, "head": head, "files": sorted(p.name for p in folder.iterdir()),
            "losses": {}, "hidden_states": sum(k.startswith("hidden.") for k in expected)}
    if head == "imgcls":
        for case, spec in loss_cases(loaded.config, seed).items():
            fresh = ref_load(cls, folder, **spec.get("config", {}))
            with torch.no_grad():
                loss = fresh(pixel_values=x, labels=spec["labels"]).loss
            meta["losses"][case] = {"loss": float(loss), "config": spec.get("config", {}),
                                    "problem_type": fresh.config.problem_type}
            tensors[f"case.{case}.labels"] = spec["labels"].clone()
    OUT.mkdir(parents=True, exist_ok=True)
    save_file({k: v.contiguous() for k, v in tensors.items()}, str(OUT / f"{name}.safetensors"))
    meta["roundtrip_max_abs_diff"] = roundtrip(name, head, folder, x, expected)
    return meta


def roundtrip(name: str, head: str, folder: Path, x, expected) -> float:
    """Load with OUR library, save with OUR save_pretrained, read back with the reference's Auto
    class for the head (our config.json's model_type picks the class)."""
    import pretrained.auto as ours

    model_type, cls_name = FIXTURES[name][:2]
    module = ours.model_module(model_type)
    our_cls = next(c for c in module.MODEL_CLASSES.values() if c.__name__ == cls_name)
    model = our_cls.from_pretrained(folder, strict=True)
    with tempfile.TemporaryDirectory() as tmp:
        model.save_pretrained(tmp)
        back = ref_load(getattr(transformers, AUTO[head]), tmp)
        if type(back).__name__ != cls_name:
            raise SystemExit(f"{name}: the reference read our save as {type(back).__name__}")
        if sorted(load_file(str(Path(tmp) / "model.safetensors"))) != sorted(load_file(str(folder / "model.safetensors"))):
            raise SystemExit(f"{name}: our save has other tensor names than the reference's")
        out = outputs_of(back, x)
    if set(out) != set(expected):
        raise SystemExit(f"{name}: outputs differ in kind: {sorted(out)} vs {sorted(expected)}")
    return max(float((out[k] - expected[k]).abs().max()) for k in out)


def main() -> None:
    transformers.utils.logging.disable_progress_bar()
    meta = {"transformers_version": transformers.__version__, "torch_version": torch.__version__,
            "models": {}}
    for name in FIXTURES:
        meta["models"][name] = build(name)
        print(f"{name:22s} round trip max abs diff {meta['models'][name]['roundtrip_max_abs_diff']:.2e}")
    (OUT / "vit.json").write_text(json.dumps(meta, indent=2, sort_keys=True) + "\n")


if __name__ == "__main__":
    main()
