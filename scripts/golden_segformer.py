"""Goldens for SegFormer (``model_type: "segformer"``), from the reference (transformers 5.25):

    /work/refvenv/bin/python scripts/golden_segformer.py

For every fixture the reference builds a tiny random model -- 2 stages (widths [8, 16], depths
[1, 2], sequence reduction [2, 1], patches 7/3 with strides 4/2, heads [1, 2]), or 4 tiny stages
(widths [8, 8, 16, 16], one channel, gelu_new, sr [4, 2, 1, 1]) -- moves its weights away from
their init values (the decode head's BatchNorm running mean / variance too, and its
num_batches_tracked), saves it to tests/fixtures/models/<name>/ (with the reference's
SegformerImageProcessor at 32 x 32), loads it back and records in
tests/fixtures/goldens/segformer/<name>.safetensors:
  input.pixel_values     (B=3, C, 32, 32) random pixels
  output.*               last_hidden_state (bare models) or logits (heads), hidden.<i> per stage
  other.*                the same for pixels of another, non-square size (input.pixel_values_other);
                         not for the decode head with reshape_last_stage=False, where the reference
                         takes the last map for a square of sqrt(channels) a side (right only when
                         that holds, as it does at 32 x 32 here)
  bf16.*                 the reference's bfloat16 run (not the hidden states)
  case.<c>.labels        labels of loss case <c>
and in segformer.json (the index tests/models/tester.py reads): the class, the losses (semantic
segmentation: cross-entropy with and without ignored pixels, labels at the input's size and at
another, another semantic_loss_ignore_index, one label's binary cross-entropy; classification:
single-label, multi-label, regression), and the round trip: our save_pretrained read back by the
reference (max abs diff of its outputs against the goldens).
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
OUT = FIX / "goldens" / "segformer"
sys.path.insert(0, str(ROOT))  # for the round trip through our own save_pretrained

from golden_common import ref_load  # noqa: E402

B = 3
SIZE = 32
OTHER = (40, 24)   # (height, width)
TINY = dict(num_encoder_blocks=2, depths=[1, 2], sr_ratios=[2, 1], hidden_sizes=[8, 16], patch_sizes=[7, 3],
            strides=[4, 2], num_attention_heads=[1, 2], mlp_ratios=[4, 4], decoder_hidden_size=16)
FOUR = dict(num_encoder_blocks=4, depths=[1, 1, 2, 1], sr_ratios=[4, 2, 1, 1], hidden_sizes=[8, 8, 16, 16],
            patch_sizes=[7, 3, 3, 3], strides=[4, 2, 2, 2], num_attention_heads=[1, 2, 2, 4], mlp_ratios=[2, 4, 2, 4],
            decoder_hidden_size=12, num_channels=1, hidden_act="gelu_new")
LABELS = ["background", "square", "circle"]
NAMED = dict(id2label=dict(enumerate(LABELS)), label2id={n: i for i, n in enumerate(LABELS)})

# name -> (reference class, config kwargs, head)
FIXTURES = {
    "segformer-tiny-model": ("SegformerModel", TINY, "model"),
    "segformer-flat-model": ("SegformerModel", dict(TINY, reshape_last_stage=False), "model"),
    "segformer-tiny-semseg": ("SegformerForSemanticSegmentation", dict(TINY, **NAMED), "semseg"),
    "segformer-four-semseg": ("SegformerForSemanticSegmentation", dict(FOUR, num_labels=5), "semseg"),
    "segformer-onelabel-semseg": ("SegformerForSemanticSegmentation", dict(TINY, num_labels=1), "semseg"),
    "segformer-flat-semseg": ("SegformerForSemanticSegmentation", dict(TINY, reshape_last_stage=False, num_labels=4),
                              "semseg"),
    "segformer-tiny-imgcls": ("SegformerForImageClassification", dict(TINY, **NAMED), "imgcls"),
    "segformer-flat-imgcls": ("SegformerForImageClassification", dict(FOUR, reshape_last_stage=False, num_labels=4),
                              "imgcls"),
}
AUTO = {"model": "AutoModel", "imgcls": "AutoModelForImageClassification",
        "semseg": "AutoModelForSemanticSegmentation"}
OUTPUT_KEYS = ("last_hidden_state", "logits")


def pixels(config, seed: int, size=(SIZE, SIZE)) -> torch.Tensor:
    g = torch.Generator().manual_seed(seed)
    return torch.randn(B, config.num_channels, *size, generator=g)


def outputs_of(model, pixel_values) -> dict[str, torch.Tensor]:
    with torch.no_grad():
        out = model(pixel_values=pixel_values, output_hidden_states=True)
    got = {k: getattr(out, k).detach().clone() for k in OUTPUT_KEYS if getattr(out, k, None) is not None}
    got.update({f"hidden.{i}": h.detach().clone() for i, h in enumerate(out.hidden_states)})
    return got


def semseg_cases(config, seed: int) -> dict[str, dict]:
    g = torch.Generator().manual_seed(seed + 1)
    n = config.num_labels
    if n == 1:
        labels = torch.randint(0, 2, (B, SIZE, SIZE), generator=g)
        labels[torch.rand(B, SIZE, SIZE, generator=g) < 0.2] = 255
        return {"bce_ignore": {"labels": labels}}
    plain = torch.randint(0, n, (B, SIZE, SIZE), generator=g)
    ignored = plain.clone()
    ignored[torch.rand(B, SIZE, SIZE, generator=g) < 0.25] = 255
    other = torch.randint(0, n, (B, 20, 28), generator=g)
    other[torch.rand(B, 20, 28, generator=g) < 0.25] = 255
    minus = plain.clone()
    minus[torch.rand(B, SIZE, SIZE, generator=g) < 0.3] = -1
    return {
        "ce": {"labels": plain},
        "ce_ignore": {"labels": ignored},
        "ce_other_size": {"labels": other},
        "ce_ignore_minus_one": {"labels": minus, "config": {"semantic_loss_ignore_index": -1}},
    }


def imgcls_cases(config, seed: int) -> dict[str, dict]:
    g = torch.Generator().manual_seed(seed + 1)
    n = config.num_labels
    multi = (torch.rand(B, n, generator=g) < 0.5).float()
    return {
        "single": {"labels": torch.randint(0, n, (B,), generator=g)},
        "multi_label": {"labels": multi, "config": {"problem_type": "multi_label_classification"}},
        "multi_label_inferred": {"labels": multi},
        "regression": {"labels": torch.randn(B, n, generator=g), "config": {"problem_type": "regression"}},
    }



def perturb(model) -> None:
    """Weights away from their init values; BatchNorm statistics as after training."""
    with torch.no_grad():
        for p in model.parameters():
            p.add_(torch.randn_like(p) * 0.15)
        for name, buf in model.named_buffers():
            if name.endswith("running_mean"):
                buf.copy_(torch.randn_like(buf) * 0.3)
            elif name.endswith("running_var"):
                buf.copy_(torch.rand_like(buf) + 0.5)
            elif name.endswith("num_batches_tracked"):
                buf.fill_(17)


def other_ok(cls_name: str, kwargs: dict) -> bool:
    return not (cls_name == "SegformerForSemanticSegmentation" and kwargs.get("reshape_last_stage") is False)


def build(name: str) -> dict:
    cls_name, kwargs, head = FIXTURES[name]
    cls = getattr(transformers, cls_name)
    config = transformers.SegformerConfig(**kwargs)
    seed = sum(map(ord, name))
    torch.manual_seed(seed)
    model = cls(config).eval()
    perturb(model)
    folder = FIX / "models" / name
    shutil.rmtree(folder, ignore_errors=True)
    model.save_pretrained(folder)
    mean = [0.5] * config.num_channels
    transformers.SegformerImageProcessorPil(size={"height": SIZE, "width": SIZE}, image_mean=mean,
                                            image_std=mean).save_pretrained(folder)

    loaded = ref_load(cls, folder)
    x = pixels(config, seed)
    tensors = {"input.pixel_values": x}
    expected = outputs_of(loaded, x)
    tensors.update({f"output.{k}": v for k, v in expected.items()})
    if other_ok(cls_name, kwargs):
        xo = pixels(config, seed + 7, OTHER)
        tensors["input.pixel_values_other"] = xo
        tensors.update({f"other.{k}": v for k, v in outputs_of(loaded, xo).items()})
    bf = ref_load(cls, folder, dtype=torch.bfloat16)
    bf_out = outputs_of(bf, x.to(torch.bfloat16))
    tensors.update({f"bf16.{k}": v.float() for k, v in bf_out.items() if not k.startswith("hidden.")})
    meta = {"class": cls_name, "head": head, "files": sorted(p.name for p in folder.iterdir()),
            "losses": {}, "hidden_states": sum(k.startswith("hidden.") for k in expected),
            "other": other_ok(cls_name, kwargs)}
    cases = semseg_cases(loaded.config, seed) if head == "semseg" else \
        imgcls_cases(loaded.config, seed) if head == "imgcls" else {}
    for case, spec in cases.items():
        fresh = ref_load(cls, folder, **spec.get("config", {}))
        with torch.no_grad():
            loss = fresh(pixel_values=x, labels=spec["labels"]).loss
        meta["losses"][case] = {"loss": float(loss), "config": spec.get("config", {}),
                                "problem_type": getattr(fresh.config, "problem_type", None)}
        tensors[f"case.{case}.labels"] = spec["labels"].clone()
    OUT.mkdir(parents=True, exist_ok=True)
    save_file({k: v.contiguous() for k, v in tensors.items()}, str(OUT / f"{name}.safetensors"))
    meta["roundtrip_max_abs_diff"] = roundtrip(name, head, folder, x, expected)
    return meta


def roundtrip(name: str, head: str, folder: Path, x, expected) -> float:
    """Load with OUR library, save with OUR save_pretrained, read back with the reference's Auto
    class for the head (our config.json's model_type picks the class)."""
    import pretrained.auto as ours

    cls_name = FIXTURES[name][0]
    module = ours.model_module("segformer")
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
    (OUT / "segformer.json").write_text(json.dumps(meta, indent=2, sort_keys=True) + "\n")


if __name__ == "__main__":
    main()
