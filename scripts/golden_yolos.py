"""Goldens for YOLOS (``model_type: "yolos"``), from the reference (transformers 5.25):

    /work/refvenv/bin/python scripts/golden_yolos.py

For every fixture the reference builds a tiny random model (hidden 32, 2 layers, 32 x 48 images in
8 x 8 patches, 5 detection tokens; a variant without mid-position embeddings, 3 layers, gelu_new,
one channel, 4 labels), moves its weights away from their init values, saves it to
tests/fixtures/models/<name>/ (with the reference's YolosImageProcessorPil config), loads it back
and records in tests/fixtures/goldens/yolos/<name>.safetensors:
  input.pixel_values        (B=2, C, 32, 48) random pixels at image_size
  output.*                  last_hidden_state, pooler_output (bare), logits + pred_boxes (detector), hidden.<i>
  other.*                   the same for pixels of another size (input.pixel_values_other: 40 x 24,
                            the position tables resized)
  bf16.*                    the reference's bfloat16 run (not the hidden states)
  case.<c>.<i>.class_labels / .boxes   the labels of loss case <c>, image <i>
and in yolos.json (the index tests/models/tester.py reads): the class, per loss case the loss and
its parts (loss_dict), and the round trip: our save_pretrained read back by the reference (max
abs diff of its outputs against the goldens).
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
OUT = FIX / "goldens" / "yolos"
sys.path.insert(0, str(ROOT))  # for the round trip through our own save_pretrained

from golden_common import ref_load  # noqa: E402

B = 2
TINY = dict(hidden_size=32, num_hidden_layers=2, num_attention_heads=4, intermediate_size=37, image_size=[32, 48],
            patch_size=8, num_detection_tokens=5)
VARIANT = dict(hidden_size=24, num_hidden_layers=3, num_attention_heads=2, intermediate_size=30, image_size=[24, 40],
               patch_size=8, num_detection_tokens=4, num_channels=1, hidden_act="gelu_new",
               use_mid_position_embeddings=False, layer_norm_eps=1e-6, eos_coefficient=0.3, bbox_cost=3,
               giou_loss_coefficient=1)
LABELS = ["circle", "square", "triangle"]
NAMED = dict(id2label=dict(enumerate(LABELS)), label2id={n: i for i, n in enumerate(LABELS)})

# name -> (reference class, config kwargs, head)
FIXTURES = {
    "yolos-tiny-model": ("YolosModel", TINY, "model"),
    "yolos-tiny-det": ("YolosForObjectDetection", dict(TINY, **NAMED), "det"),
    "yolos-nomid-det": ("YolosForObjectDetection", dict(VARIANT, num_labels=4), "det"),
}
AUTO = {"model": "AutoModel", "det": "AutoModelForObjectDetection"}
OUTPUT_KEYS = ("last_hidden_state", "pooler_output", "logits", "pred_boxes")


def pixels(config, seed: int, size=None) -> torch.Tensor:
    g = torch.Generator().manual_seed(seed)
    return torch.randn(B, config.num_channels, *(size or config.image_size), generator=g)


def outputs_of(model, pixel_values) -> dict[str, torch.Tensor]:
    with torch.no_grad():
        out = model(pixel_values=pixel_values, output_hidden_states=True)
    got = {k: getattr(out, k).detach().clone() for k in OUTPUT_KEYS if getattr(out, k, None) is not None}
    got.update({f"hidden.{i}": h.detach().clone() for i, h in enumerate(out.hidden_states)})
    return got


def loss_cases(config, seed: int) -> dict[str, list[dict]]:
    """Targets: a few boxes per image (one image with none in the second case)."""
    g = torch.Generator().manual_seed(seed + 1)

    def target(n: int) -> dict:
        centers = torch.rand(n, 2, generator=g) * 0.6 + 0.2
        sizes = torch.rand(n, 2, generator=g) * 0.3 + 0.05
        return {"class_labels": torch.randint(0, config.num_labels, (n,), generator=g),
                "boxes": torch.cat([centers, sizes], dim=1)}

    return {"boxes": [target(3), target(2)], "one_empty": [target(0), target(4)]}



def build(name: str) -> dict:
    cls_name, kwargs, head = FIXTURES[name]
    cls = getattr(transformers, cls_name)
    config = transformers.YolosConfig(**kwargs)
    seed = sum(map(ord, name))
    torch.manual_seed(seed)
    model = cls(config).eval()
    with torch.no_grad():   # away from init values (zero tokens and positions, norms 1/0, zero biases)
        for p in model.parameters():
            p.add_(torch.randn_like(p) * 0.15)
    folder = FIX / "models" / name
    shutil.rmtree(folder, ignore_errors=True)
    model.save_pretrained(folder)
    mean = [0.5] * config.num_channels
    transformers.YolosImageProcessorPil(size={"shortest_edge": config.image_size[0], "longest_edge": 64},
                                        image_mean=mean, image_std=mean).save_pretrained(folder)

    loaded = ref_load(cls, folder)
    x = pixels(config, seed)
    tensors = {"input.pixel_values": x}
    expected = outputs_of(loaded, x)
    tensors.update({f"output.{k}": v for k, v in expected.items()})
    xo = pixels(config, seed + 7, (40, 24))
    tensors["input.pixel_values_other"] = xo
    tensors.update({f"other.{k}": v for k, v in outputs_of(loaded, xo).items()})
    bf = ref_load(cls, folder, dtype=torch.bfloat16)
    bf_out = outputs_of(bf, x.to(torch.bfloat16))
    tensors.update({f"bf16.{k}": v.float() for k, v in bf_out.items() if not k.startswith("hidden.")})
    meta = {"class": cls_name, "head": head, "files": sorted(p.name for p in folder.iterdir()),
            "losses": {}, "hidden_states": sum(k.startswith("hidden.") for k in expected)}
    if head == "det":
        for case, labels in loss_cases(loaded.config, seed).items():
            with torch.no_grad():
                out = loaded(pixel_values=x, labels=labels)
            meta["losses"][case] = {"loss": float(out.loss), "parts": {k: float(v) for k, v in out.loss_dict.items()}}
            for i, t in enumerate(labels):
                tensors[f"case.{case}.{i}.class_labels"] = t["class_labels"]
                tensors[f"case.{case}.{i}.boxes"] = t["boxes"]
    OUT.mkdir(parents=True, exist_ok=True)
    save_file({k: v.contiguous() for k, v in tensors.items()}, str(OUT / f"{name}.safetensors"))
    meta["roundtrip_max_abs_diff"] = roundtrip(name, head, folder, x, expected)
    return meta


def roundtrip(name: str, head: str, folder: Path, x, expected) -> float:
    """Load with OUR library, save with OUR save_pretrained, read back with the reference's Auto
    class for the head."""
    import pretrained.auto as ours

    cls_name = FIXTURES[name][0]
    module = ours.model_module("yolos")
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
        print(f"{name:20s} hidden {meta['models'][name]['hidden_states']}  losses "
              f"{ {k: round(v['loss'], 4) for k, v in meta['models'][name]['losses'].items()} }  round trip "
              f"{meta['models'][name]['roundtrip_max_abs_diff']:.2e}")
    (OUT / "yolos.json").write_text(json.dumps(meta, indent=2, sort_keys=True) + "\n")


if __name__ == "__main__":
    main()
