"""Goldens for ResNet (``model_type: "resnet"``), from the reference (transformers 5.25):

    /work/refvenv/bin/python scripts/golden_resnet.py

For every fixture the reference builds a tiny random model (bottleneck layers, an 8-wide stem,
stages [16, 24] of depths [1, 2], 32 x 32 images; a basic-layer one whose first layer keeps the
identity shortcut; a one-channel variant with gelu, downsample_in_first_stage and
downsample_in_bottleneck; a basic one with silu and downsample_in_first_stage; a backbone with
out_features), moves its weights away from their init values AND gives every batch norm
non-trivial running statistics (so eval-mode batch norm is really checked), saves it to
tests/fixtures/models/<name>/ (with a ConvNeXt image processor, as microsoft/resnet-50 has; the
classifier's in the legacy form microsoft/resnet-50 ships: ``feature_extractor_type:
ConvNextFeatureExtractor``, ``size: 32``), loads it back and records in
tests/fixtures/goldens/resnet/<name>.safetensors:
  input.pixel_values     (B=3, C, H, W) random pixels at 32 x 32
  output.*               last_hidden_state + pooler_output (bare models), logits (heads),
                         feature_maps.<i> (backbones), hidden.<i>
  other.*                the same for pixels of another, non-square size (input.pixel_values_other)
  bf16.*                 the reference's bfloat16 run (not the hidden states)
  case.<c>.labels        labels of loss case <c>
  processor.<picture>    the reference's AutoImageProcessor pixel values for a real picture (the
                         two fixtures of PROCESSED)
and in resnet.json (the index tests/models/tester.py reads): the class, the losses
(single-label, multi-label by problem_type and inferred from float labels, regression by
problem_type and by num_labels=1), the backbone's stage names / out features / channels, the
reference's image-classification pipeline on real pictures (resnet-tiny-imgcls), and the round
trip: our save_pretrained read back by the reference (max abs diff of its outputs against the
goldens).
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
from PIL import Image
from safetensors.torch import load_file, save_file

ROOT = Path(__file__).resolve().parent.parent
FIX = ROOT / "tests" / "fixtures"
OUT = FIX / "goldens" / "resnet"
sys.path.insert(0, str(ROOT))  # for the round trip through our own save_pretrained

from golden_common import classification_loss_cases, ref_load  # noqa: E402

B = 3
SIZE = 32
TINY = dict(embedding_size=8, hidden_sizes=[16, 24], depths=[1, 2])
BASIC = dict(layer_type="basic", embedding_size=8, hidden_sizes=[8, 16], depths=[1, 2])   # stage 1: identity
VARIANT = dict(embedding_size=8, hidden_sizes=[12, 16], depths=[2, 1], num_channels=1, hidden_act="gelu",
               downsample_in_first_stage=True, downsample_in_bottleneck=True)
BASIC_VARIANT = dict(layer_type="basic", embedding_size=6, hidden_sizes=[6, 10, 12], depths=[1, 1, 1],
                     hidden_act="silu", downsample_in_first_stage=True)
LABELS = ["cat", "dog", "bird"]
NAMED = dict(id2label=dict(enumerate(LABELS)), label2id={n: i for i, n in enumerate(LABELS)})
PICTURES = ["chelsea.png", "rocket.jpg", "coins.png"]
PROCESSED = ("resnet-tiny-imgcls", "resnet-tiny-model")   # legacy processor file; one with no type

# name -> (reference class, config kwargs, head)
FIXTURES = {
    "resnet-tiny-model": ("ResNetModel", TINY, "model"),
    "resnet-tiny-imgcls": ("ResNetForImageClassification", dict(TINY, **NAMED), "imgcls"),
    "resnet-basic-imgcls": ("ResNetForImageClassification", dict(BASIC, num_labels=4), "imgcls"),
    "resnet-variant-imgcls": ("ResNetForImageClassification", dict(VARIANT, num_labels=4), "imgcls"),
    "resnet-basicsilu-model": ("ResNetModel", BASIC_VARIANT, "model"),
    "resnet-tiny-regression": ("ResNetForImageClassification", dict(TINY, num_labels=1), "imgcls"),
    "resnet-tiny-backbone": ("ResNetBackbone", dict(TINY, out_features=["stem", "stage2"]), "backbone"),
}
# the reference's AutoBackbone.from_pretrained asks the hub whether a local folder is a repo (and
# fails offline), so a backbone is read back by its class
AUTO = {"model": "AutoModel", "imgcls": "AutoModelForImageClassification", "backbone": "ResNetBackbone"}
OUTPUT_KEYS = ("last_hidden_state", "pooler_output", "logits")


def pixels(config, seed: int, size=None) -> torch.Tensor:
    g = torch.Generator().manual_seed(seed)
    return torch.randn(B, config.num_channels, *(size or (SIZE, SIZE)), generator=g)


def outputs_of(model, pixel_values) -> dict[str, torch.Tensor]:
    with torch.no_grad():
        out = model(pixel_values=pixel_values, output_hidden_states=True)
    got = {k: getattr(out, k).detach().clone() for k in OUTPUT_KEYS if getattr(out, k, None) is not None}
    if getattr(out, "feature_maps", None) is not None:
        got.update({f"feature_maps.{i}": m.detach().clone() for i, m in enumerate(out.feature_maps)})
    got.update({f"hidden.{i}": h.detach().clone() for i, h in enumerate(out.hidden_states)})
    return got


def loss_cases(config, seed: int) -> dict[str, dict]:
    return classification_loss_cases(config, seed, B)



def perturb(model, seed: int) -> None:
    """Weights away from init (batch norms 1/0, He-normal convolutions) and running statistics
    away from 0/1, so that eval-mode batch norm's use of them shows in every output."""
    g = torch.Generator().manual_seed(seed)
    with torch.no_grad():
        for p in model.parameters():
            p.add_(torch.randn(p.shape, generator=g) * 0.15)
        for m in model.modules():
            if isinstance(m, torch.nn.BatchNorm2d):
                m.running_mean.copy_(torch.randn(m.num_features, generator=g) * 0.3)
                m.running_var.copy_(0.5 + 1.5 * torch.rand(m.num_features, generator=g))
                m.num_batches_tracked.fill_(7)


def save_processor(folder: Path, config, legacy: bool) -> None:
    mean = [0.5] * config.num_channels
    if legacy:   # microsoft/resnet-50's preprocessor_config.json, at 32 pixels
        data = {"crop_pct": 0.875, "do_normalize": True, "do_resize": True,
                "feature_extractor_type": "ConvNextFeatureExtractor", "image_mean": [0.485, 0.456, 0.406],
                "image_std": [0.229, 0.224, 0.225], "resample": 3, "size": SIZE}
        (folder / "preprocessor_config.json").write_text(json.dumps(data, indent=2) + "\n")
    else:
        transformers.ConvNextImageProcessorPil(size={"shortest_edge": SIZE}, image_mean=mean,
                                               image_std=mean).save_pretrained(folder)


def build(name: str) -> dict:
    cls_name, kwargs, head = FIXTURES[name]
    cls = getattr(transformers, cls_name)
    config = transformers.ResNetConfig(**kwargs)
    seed = sum(map(ord, name))
    torch.manual_seed(seed)
    model = cls(config).eval()
    perturb(model, seed)
    folder = FIX / "models" / name
    shutil.rmtree(folder, ignore_errors=True)
    model.save_pretrained(folder)
    save_processor(folder, config, legacy=name == "resnet-tiny-imgcls")
    if name == "resnet-tiny-model":   # no image_processor_type: the Auto class goes by model_type
        path = folder / "preprocessor_config.json"
        data = json.loads(path.read_text())
        del data["image_processor_type"]
        path.write_text(json.dumps(data, indent=2) + "\n")

    loaded = ref_load(cls, folder)
    x = pixels(config, seed)
    tensors = {"input.pixel_values": x}
    expected = outputs_of(loaded, x)
    tensors.update({f"output.{k}": v for k, v in expected.items()})
    xo = pixels(config, seed + 7, (SIZE + 8, SIZE - 8))
    tensors["input.pixel_values_other"] = xo
    tensors.update({f"other.{k}": v for k, v in outputs_of(loaded, xo).items()})
    bf = ref_load(cls, folder, dtype=torch.bfloat16)
    bf_out = outputs_of(bf, x.to(torch.bfloat16))
    tensors.update({f"bf16.{k}": v.float() for k, v in bf_out.items() if not k.startswith("hidden.")})
    meta = {"class": cls_name, "head": head, "files": sorted(p.name for p in folder.iterdir()),
            "losses": {}, "hidden_states": sum(k.startswith("hidden.") for k in expected)}
    if head == "backbone":
        meta["backbone"] = {"stage_names": loaded.stage_names, "out_features": loaded.out_features,
                            "out_indices": list(loaded.out_indices), "channels": loaded.channels}
    if head == "imgcls":
        for case, spec in loss_cases(loaded.config, seed).items():
            fresh = ref_load(cls, folder, **spec.get("config", {}))
            with torch.no_grad():
                loss = fresh(pixel_values=x, labels=spec["labels"]).loss
            meta["losses"][case] = {"loss": float(loss), "config": spec.get("config", {}),
                                    "problem_type": fresh.config.problem_type}
            tensors[f"case.{case}.labels"] = spec["labels"].clone()
    if name in PROCESSED:   # the processor the Auto class picks, on real pictures
        proc = transformers.AutoImageProcessor.from_pretrained(folder, backend="pil")
        meta["processor_class"] = type(proc).__name__
        for picture in PICTURES:
            image = Image.open(FIX / "images" / picture).convert("RGB")   # as load_image gives it
            tensors[f"processor.{picture}"] = torch.from_numpy(
                np.asarray(proc(image, return_tensors="np")["pixel_values"])).float()
    OUT.mkdir(parents=True, exist_ok=True)
    save_file({k: v.contiguous() for k, v in tensors.items()}, str(OUT / f"{name}.safetensors"))
    meta["roundtrip_max_abs_diff"] = roundtrip(name, head, folder, x, expected)
    return meta


def pipeline_goldens(name: str) -> dict:
    folder = FIX / "models" / name
    proc = transformers.AutoImageProcessor.from_pretrained(folder, backend="pil")
    pipe = transformers.pipeline("image-classification", model=str(folder), image_processor=proc)
    paths = [str(FIX / "images" / p) for p in PICTURES]
    return {"fixture": name, "pictures": PICTURES,
            "default": [pipe(p) for p in paths],
            "top_k_2_sigmoid": [pipe(p, top_k=2, function_to_apply="sigmoid") for p in paths]}


def roundtrip(name: str, head: str, folder: Path, x, expected) -> float:
    """Load with OUR library, save with OUR save_pretrained, read back with the reference's Auto
    class for the head (our config.json's model_type picks the class)."""
    import pretrained.auto as ours

    cls_name = FIXTURES[name][0]
    module = ours.model_module("resnet")
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
        print(f"{name:26s} hidden {meta['models'][name]['hidden_states']}  round trip max abs diff "
              f"{meta['models'][name]['roundtrip_max_abs_diff']:.2e}")
    meta["pipeline"] = pipeline_goldens("resnet-tiny-imgcls")
    (OUT / "resnet.json").write_text(json.dumps(meta, indent=2, sort_keys=True) + "\n")


if __name__ == "__main__":
    main()
