"""Goldens for DETR with a timm ResNet backbone (``use_timm_backbone=True``: the facebook/detr-*
checkpoints' layout), from the reference (transformers 5.25 + timm, run here only):

    /work/timmvenv/bin/python scripts/golden_detr_timm.py

That venv is the reference's plus timm 1.0.31 and torchvision 0.28.0 (a .pth file puts the reference
venv's site-packages behind its own), kept apart from the reference venv on purpose: with torchvision
importable, transformers switches its image processors to the torchvision ones, which round pixels
differently from the PIL processors every other golden and benchmark compares with.

timm's ResNets have fixed widths (a resnet18 backbone is 45 MB), so no weights are committed: per
fixture the reference builds the model (timm makes the backbone), its checkpoint's key names and
shapes are read from a save, and every tensor is replaced by seeded values
(tests/models/seeded_weights.py: the tests make the same ones); the reference loads that
checkpoint cleanly and its outputs are the goldens. Committed, per fixture:
  tests/fixtures/models/<name>/config.json             the reference's save, or (legacy) the hub's
                                                       form: backbone="resnet18", use_timm_backbone,
                                                       use_pretrained_backbone, no backbone_config
  tests/fixtures/models/<name>/preprocessor_config.json  DetrImageProcessorPil
  tests/fixtures/models/<name>/weights.json            the recipe: seed, key -> shape, scales, fingerprint
  tests/fixtures/goldens/detr_timm/<name>.safetensors  output.* (logits, pred_boxes, pred_masks,
      last/encoder hidden states, enc.<i> / dec.<i>), feature.<i>.mean (each backbone map's spatial
      mean per channel), other.* (unmasked pixels of another size), bf16.* (some fixtures)
The inputs are seeded too (input.pixel_values: seeded_tensor(seed, "pixel_values", ...)); the
second picture is padded (valid 48 x 40, zeros) with its pixel mask. detr_timm.json holds per
fixture the class, the backbone's trainable parameter names (the reference's initial freeze), the
round trip (our save_pretrained read back by the reference), and the object-detection pipeline's
outputs on the bundled pictures; "layouts": for resnet18/26/34/50/101/152 (and dilation) the
backbone's key -> shape and channels as the reference builds them.

timm's torchvision import fails on this torch build; the stub below lets timm import (its resnets
do not use torchvision).
"""

from __future__ import annotations

import json
import shutil
import sys
import tempfile
import types
from pathlib import Path

sys.modules.setdefault("torchvision._meta_registrations", types.ModuleType("torchvision._meta_registrations"))

import torch  # noqa: E402
import transformers  # noqa: E402
from safetensors.torch import load_file, save_file  # noqa: E402

ROOT = Path(__file__).resolve().parent.parent
FIX = ROOT / "tests" / "fixtures"
OUT = FIX / "goldens" / "detr_timm"
IMAGES = FIX / "images"
sys.path.insert(0, str(ROOT))  # for the round trip through our own save_pretrained
sys.path.insert(0, str(ROOT / "tests" / "models"))

from golden_common import ref_load  # noqa: E402
from seeded_weights import fingerprint, seeded_state_dict, seeded_tensor  # noqa: E402

B = 2
LABELS = ["cat", "rocket", "horse", "camera"]
NAMED = dict(num_labels=len(LABELS), id2label=dict(enumerate(LABELS)), label2id={n: i for i, n in enumerate(LABELS)})
TINY = dict(use_timm_backbone=True, d_model=16, encoder_layers=1, decoder_layers=1, encoder_attention_heads=2,
            decoder_attention_heads=2, encoder_ffn_dim=24, decoder_ffn_dim=24, num_queries=6)
# name -> (reference class, config kwargs, legacy config.json, scales, bf16 run)
FIXTURES = {
    "detr-timm-r18-det": ("DetrForObjectDetection", dict(TINY, backbone="resnet18", **NAMED), False,
                          # queries made distinct (cross-attention, query positions), scores spread
                          {"class_labels_classifier.": 8.0, "bbox_predictor.layers.2.weight": 2.0,
                           "model.query_position_embeddings.weight": 4.0,
                           "model.decoder.layers.0.encoder_attn.q_proj.weight": 4.0,
                           "model.decoder.layers.0.encoder_attn.k_proj.weight": 4.0}, True),
    "detr-timm-r18-dc5-det": ("DetrForObjectDetection",
                              dict(TINY, backbone="resnet18", dilation=True, decoder_layers=2, auxiliary_loss=True,
                                   position_embedding_type="learned", num_labels=3), True, {}, False),
    "detr-timm-r18-gray-model": ("DetrModel", dict(TINY, backbone="resnet18", num_channels=1), True, {}, False),
    "detr-timm-r50-dc5-model": ("DetrModel", dict(TINY, backbone="resnet50", dilation=True), False, {}, False),
    "detr-timm-r18-seg": ("DetrForSegmentation", dict(TINY, backbone="resnet18", encoder_attention_heads=8),
                          False, {"bbox_attention.": 10.0}, True),
}
LAYOUTS = {"resnet18": False, "resnet26": False, "resnet34": False, "resnet34-dc5": True, "resnet50": False,
           "resnet101": False, "resnet101-dc5": True, "resnet152": False}
OUTPUT_KEYS = ("last_hidden_state", "encoder_last_hidden_state", "logits", "pred_boxes", "pred_masks")
PIPELINE_FIXTURE = "detr-timm-r18-det"
PIPELINE_PICTURES = ["chelsea.png", "rocket.jpg", "camera.png", "horse.png", "coins.png"]
THRESHOLDS = (0.1, 0.25)   # a random head's scores are low (the "no object" class)


def inputs(seed: int, channels: int) -> dict[str, torch.Tensor]:
    x = seeded_tensor(seed, "pixel_values", [B, channels, 64, 64])
    mask = torch.ones(B, 64, 64, dtype=torch.long)
    mask[1, 48:] = 0
    mask[1, :, 40:] = 0
    x[1] *= mask[1]   # padding is zeros, as the processor pads
    return {"pixel_values": x, "pixel_mask": mask}


def other_pixels(seed: int, channels: int) -> torch.Tensor:
    return seeded_tensor(seed, "pixel_values_other", [B, channels, 64, 96])


def outputs_of(model, batch) -> dict[str, torch.Tensor]:
    with torch.no_grad():
        out = model(**batch, output_hidden_states=True)
        base = model if isinstance(model, transformers.DetrModel) else (
            model.model if hasattr(model, "model") else model.detr.model)
        mask = batch.get("pixel_mask", torch.ones(batch["pixel_values"].shape[0], *batch["pixel_values"].shape[-2:],
                                                  dtype=torch.long))
        maps = base.backbone(batch["pixel_values"], mask)
    got = {k: getattr(out, k).detach().clone() for k in OUTPUT_KEYS if getattr(out, k, None) is not None}
    got.update({f"enc.{i}": h.detach().clone() for i, h in enumerate(out.encoder_hidden_states or ())})
    got.update({f"dec.{i}": h.detach().clone() for i, h in enumerate(out.decoder_hidden_states or ())})
    got.update({f"feature.{i}.mean": f.mean(dim=(2, 3)).clone() for i, (f, _) in enumerate(maps)})
    return got


def legacy_config(folder: Path, kwargs: dict) -> None:
    """config.json in the hub's form (facebook/detr-resnet-50: transformers 4.x wrote it)."""
    data = json.loads((folder / "config.json").read_text())
    data.pop("backbone_config")
    data.update(backbone=kwargs["backbone"], use_timm_backbone=True, use_pretrained_backbone=True,
                backbone_kwargs=None)
    (folder / "config.json").write_text(json.dumps(data, indent=2, sort_keys=True) + "\n")


def build(name: str) -> dict:
    cls_name, kwargs, legacy, scales, bf16 = FIXTURES[name]
    cls = getattr(transformers, cls_name)
    config = transformers.DetrConfig(**kwargs)
    seed = sum(map(ord, name))
    torch.manual_seed(seed)
    model = cls(config).eval()
    folder = FIX / "models" / name
    shutil.rmtree(folder, ignore_errors=True)
    with tempfile.TemporaryDirectory() as tmp:
        tmp = Path(tmp)
        model.save_pretrained(tmp)
        saved = load_file(str(tmp / "model.safetensors"))
        shapes = {k: list(v.shape) for k, v in sorted(saved.items())}
        state = seeded_state_dict(shapes, seed, scales)
        save_file(state, str(tmp / "model.safetensors"), metadata={"format": "pt"})
        transformers.DetrImageProcessorPil(size={"shortest_edge": 64, "longest_edge": 96}).save_pretrained(tmp)
        if legacy:
            legacy_config(tmp, kwargs)
        folder.mkdir(parents=True)
        for f in ("config.json", "preprocessor_config.json"):
            shutil.copy(tmp / f, folder / f)
        (folder / "weights.json").write_text(json.dumps(
            {"seed": seed, "scales": scales, "fingerprint": fingerprint(state), "shapes": shapes}) + "\n")

        loaded = ref_load(cls, tmp)
        channels = loaded.config.num_channels
        batch = inputs(seed, channels)
        expected = outputs_of(loaded, batch)
        tensors = {f"output.{k}": v for k, v in expected.items()}
        tensors.update({f"other.{k}": v for k, v in outputs_of(loaded, {"pixel_values": other_pixels(seed, channels)}).items()})
        if bf16:
            bf = ref_load(cls, tmp, dtype=torch.bfloat16)
            with torch.no_grad():
                out = bf(pixel_values=batch["pixel_values"].to(torch.bfloat16), pixel_mask=batch["pixel_mask"])
            tensors.update({f"bf16.{k}": getattr(out, k).float() for k in OUTPUT_KEYS
                            if getattr(out, k, None) is not None})
        base = loaded if cls_name == "DetrModel" else (loaded.model if cls_name != "DetrForSegmentation" else loaded.detr.model)
        conv = base.backbone.model
        meta = {"class": cls_name, "seed": seed, "files": sorted(p.name for p in folder.iterdir()),
                "legacy_config": legacy, "backbone_config": loaded.config.backbone_config.to_dict(),
                "channels": list(base.backbone.intermediate_channel_sizes),
                "trainable_backbone": sorted(n for n, p in conv.named_parameters() if p.requires_grad),
                "frozen_backbone": sorted(n for n, p in conv.named_parameters() if not p.requires_grad),
                "encoder_states": sum(k.startswith("enc.") for k in expected),
                "decoder_states": sum(k.startswith("dec.") for k in expected),
                "max_abs": {k: float(v.abs().max()) for k, v in expected.items()}}
        meta["roundtrip_max_abs_diff"] = roundtrip(name, tmp, batch, expected)
        if name == PIPELINE_FIXTURE:
            meta["pipeline"] = pipeline(tmp)
    OUT.mkdir(parents=True, exist_ok=True)
    save_file({k: v.contiguous() for k, v in tensors.items()}, str(OUT / f"{name}.safetensors"))
    return meta


def roundtrip(name: str, folder: Path, batch, expected) -> float:
    """Load with OUR library, save with OUR save_pretrained, read back with the reference."""
    import pretrained.auto as ours

    cls_name = FIXTURES[name][0]
    our_cls = next(c for c in ours.model_module("detr").MODEL_CLASSES.values() if c.__name__ == cls_name)
    model = our_cls.from_pretrained(folder, strict=True)
    with tempfile.TemporaryDirectory() as tmp:
        model.save_pretrained(tmp)
        back = ref_load(getattr(transformers, cls_name), tmp)
        if sorted(load_file(str(Path(tmp) / "model.safetensors"))) != sorted(load_file(str(folder / "model.safetensors"))):
            raise SystemExit(f"{name}: our save has other tensor names than the reference's")
        out = outputs_of(back, batch)
    if set(out) != set(expected):
        raise SystemExit(f"{name}: outputs differ in kind: {sorted(out)} vs {sorted(expected)}")
    return max(float((out[k] - expected[k]).abs().max()) for k in out)


def pipeline(folder: Path) -> dict:
    processor = transformers.DetrImageProcessorPil.from_pretrained(folder)
    pipe = transformers.pipeline("object-detection", model=str(folder), image_processor=processor)
    paths = [str(IMAGES / f) for f in PIPELINE_PICTURES]
    return {"images": PIPELINE_PICTURES, **{str(t): [pipe(p, threshold=t) for p in paths] for t in THRESHOLDS}}


def layouts() -> dict:
    out = {}
    for name, dilation in LAYOUTS.items():
        config = transformers.DetrConfig(**dict(TINY, backbone=name.split("-")[0], dilation=dilation))
        model = transformers.DetrModel(config)
        conv = model.backbone.model
        out[name] = {"backbone": name.split("-")[0], "dilation": dilation,
                     "channels": list(model.backbone.intermediate_channel_sizes),
                     "shapes": {k: list(v.shape) for k, v in conv.state_dict().items()},
                     "dilations": {k: list(m.dilation) for k, m in conv.named_modules()
                                   if isinstance(m, torch.nn.Conv2d) and m.dilation != (1, 1)},
                     "strides": {k: list(m.stride) for k, m in conv.named_modules()
                                 if isinstance(m, torch.nn.Conv2d) and m.stride != (1, 1)}}
    return out


def main() -> None:
    transformers.utils.logging.disable_progress_bar()
    torch.set_num_threads(2)
    meta = {"transformers_version": transformers.__version__, "torch_version": torch.__version__, "models": {}}
    for name in FIXTURES:
        meta["models"][name] = m = build(name)
        print(f"{name:26s} round trip {m['roundtrip_max_abs_diff']:.2e}  max |out| "
              f"{ {k: round(v, 2) for k, v in m['max_abs'].items() if '.' not in k} }")
    meta["layouts"] = layouts()
    OUT.mkdir(parents=True, exist_ok=True)
    (OUT / "detr_timm.json").write_text(json.dumps(meta, indent=1, sort_keys=True) + "\n")


if __name__ == "__main__":
    main()
