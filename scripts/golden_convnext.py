"""Goldens for ConvNeXt (``model_type: "convnext"``) and ConvNeXt V2 (``"convnextv2"``), from the
reference (transformers 5.25):

    /work/refvenv/bin/python scripts/golden_convnext.py

For every fixture the reference builds a tiny random model (2 stages of widths [8, 16], depths
[1, 2], 32 x 32 images in 4 x 4 patches; a variant with one channel, 2 x 2 patches, depths [2, 1],
no layer scale (layer_scale_init_value 0) for V1, gelu_new and eps 1e-6), moves its weights away
from their init values, saves it to tests/fixtures/models/<name>/ (with the reference's
ConvNextImageProcessor), loads it back and records in tests/fixtures/goldens/convnext/<name>.safetensors:
  input.pixel_values     (B=3, C, H, W) random pixels at image_size
  output.*               last_hidden_state + pooler_output (bare models), logits (heads), hidden.<i>
  other.*                the same for pixels of another, non-square size (input.pixel_values_other)
  bf16.*                 the reference's bfloat16 run (not the hidden states)
  case.<c>.labels        labels of loss case <c>
and in convnext.json (the index tests/models/tester.py reads): the class, the losses (single-label,
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
OUT = FIX / "goldens" / "convnext"
sys.path.insert(0, str(ROOT))  # for the round trip through our own save_pretrained

from golden_common import classification_loss_cases, ref_load  # noqa: E402

B = 3
TINY = dict(num_stages=2, hidden_sizes=[8, 16], depths=[1, 2], image_size=32, patch_size=4)
VARIANT = dict(num_stages=2, hidden_sizes=[8, 12], depths=[2, 1], image_size=24, patch_size=2, num_channels=1,
               hidden_act="gelu_new", layer_norm_eps=1e-6)
LABELS = ["cat", "dog", "bird"]
NAMED = dict(id2label=dict(enumerate(LABELS)), label2id={n: i for i, n in enumerate(LABELS)})

# name -> (model_type, reference class, config kwargs, head)
FIXTURES = {
    "convnext-tiny-model": ("convnext", "ConvNextModel", TINY, "model"),
    "convnext-tiny-imgcls": ("convnext", "ConvNextForImageClassification", dict(TINY, **NAMED), "imgcls"),
    "convnext-noscale-imgcls": ("convnext", "ConvNextForImageClassification",
                                dict(VARIANT, layer_scale_init_value=0.0, num_labels=4), "imgcls"),
    "convnext-tiny-regression": ("convnext", "ConvNextForImageClassification", dict(TINY, num_labels=1), "imgcls"),
    "convnextv2-tiny-model": ("convnextv2", "ConvNextV2Model", TINY, "model"),
    "convnextv2-tiny-imgcls": ("convnextv2", "ConvNextV2ForImageClassification", dict(TINY, **NAMED), "imgcls"),
    "convnextv2-variant-imgcls": ("convnextv2", "ConvNextV2ForImageClassification", dict(VARIANT, num_labels=4),
                                  "imgcls"),
    "convnextv2-tiny-regression": ("convnextv2", "ConvNextV2ForImageClassification", dict(TINY, num_labels=1),
                                   "imgcls"),
}
CONFIGS = {"convnext": "ConvNextConfig", "convnextv2": "ConvNextV2Config"}
AUTO = {"model": "AutoModel", "imgcls": "AutoModelForImageClassification"}
OUTPUT_KEYS = ("last_hidden_state", "pooler_output", "logits")


def pixels(config, seed: int, size=None) -> torch.Tensor:
    g = torch.Generator().manual_seed(seed)
    return torch.randn(B, config.num_channels, *(size or (config.image_size,) * 2), generator=g)


def outputs_of(model, pixel_values) -> dict[str, torch.Tensor]:
    with torch.no_grad():
        out = model(pixel_values=pixel_values, output_hidden_states=True)
    got = {k: getattr(out, k).detach().clone() for k in OUTPUT_KEYS if getattr(out, k, None) is not None}
    got.update({f"hidden.{i}": h.detach().clone() for i, h in enumerate(out.hidden_states)})
    return got


def loss_cases(config, seed: int) -> dict[str, dict]:
    return classification_loss_cases(config, seed, B)



def build(name: str) -> dict:
    model_type, cls_name, kwargs, head = FIXTURES[name]
    cls = getattr(transformers, cls_name)
    config = getattr(transformers, CONFIGS[model_type])(**kwargs)
    seed = sum(map(ord, name))
    torch.manual_seed(seed)
    model = cls(config).eval()
    with torch.no_grad():   # away from init values (norms = 1/0, GRN 0, layer scale 1e-6, biases)
        for p in model.parameters():
            p.add_(torch.randn_like(p) * 0.15)
    folder = FIX / "models" / name
    shutil.rmtree(folder, ignore_errors=True)
    model.save_pretrained(folder)
    mean = [0.5] * config.num_channels
    transformers.ConvNextImageProcessor(size={"shortest_edge": config.image_size}, image_mean=mean,
                                        image_std=mean).save_pretrained(folder)

    loaded = ref_load(cls, folder)
    x = pixels(config, seed)
    tensors = {"input.pixel_values": x}
    expected = outputs_of(loaded, x)
    tensors.update({f"output.{k}": v for k, v in expected.items()})
    xo = pixels(config, seed + 7, (config.image_size + 8, config.image_size - 8))
    tensors["input.pixel_values_other"] = xo
    tensors.update({f"other.{k}": v for k, v in outputs_of(loaded, xo).items()})
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
        print(f"{name:28s} hidden {meta['models'][name]['hidden_states']}  round trip max abs diff "
              f"{meta['models'][name]['roundtrip_max_abs_diff']:.2e}")
    (OUT / "convnext.json").write_text(json.dumps(meta, indent=2, sort_keys=True) + "\n")


if __name__ == "__main__":
    main()
