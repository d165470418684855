"""Goldens for DETR (``model_type: "detr"``) with the reference's own ResNet backbone
(``use_timm_backbone=False``), from the reference (transformers 5.25):

    /work/refvenv/bin/python scripts/golden_detr.py

For every fixture the reference builds a tiny random model (d_model 16, 48 x 48 pictures, a
3-stage ResNet whose last stage (stride 16) feeds the transformer; variants: learned positions with
auxiliary losses, 2 decoder layers, a bottleneck backbone and gelu), moves its weights and its
frozen batch norms' statistics away from their init values, saves it to
tests/fixtures/models/<name>/ (with the reference's DetrImageProcessorPil config), loads it back and
records in tests/fixtures/goldens/detr/<name>.safetensors:
  input.pixel_values / input.pixel_mask   (B=2, 3, 48, 48); the second picture padded (valid 32 x 40)
  output.*       last_hidden_state, encoder_last_hidden_state, logits + pred_boxes (detector),
                 enc.<i> / dec.<i> (the encoder's and decoder's hidden states)
  other.*        the same for unmasked pixels of another size (input.pixel_values_other: 32 x 64)
  bf16.*         the reference's bfloat16 run (not the hidden states)
  case.<c>.<i>.class_labels / .boxes      the labels of loss case <c>, image <i>
and in detr.json: the class, per loss case the loss and its parts, and the round trip (our
save_pretrained read back by the reference: max abs diff of its outputs against the goldens).
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
OUT = FIX / "goldens" / "detr"
sys.path.insert(0, str(ROOT))  # for the round trip through our own save_pretrained

from golden_common import ref_load  # noqa: E402

B = 2
BASIC = dict(model_type="resnet", embedding_size=8, hidden_sizes=[8, 16, 24], depths=[1, 1, 1], layer_type="basic",
             out_features=["stage3"])
BOTTLENECK = dict(model_type="resnet", embedding_size=8, hidden_sizes=[8, 16, 32], depths=[1, 2, 1],
                  layer_type="bottleneck", out_features=["stage2", "stage3"], hidden_act="gelu")
TINY = dict(use_timm_backbone=False, d_model=16, encoder_layers=1, decoder_layers=1, encoder_attention_heads=2,
            decoder_attention_heads=2, encoder_ffn_dim=24, decoder_ffn_dim=24, num_queries=6, backbone_config=BASIC)
VARIANT = dict(TINY, backbone_config=BOTTLENECK, decoder_layers=2, encoder_layers=2, position_embedding_type="learned",
               auxiliary_loss=True, activation_function="gelu", eos_coefficient=0.25, giou_cost=3)
LABELS = ["circle", "square", "triangle"]
NAMED = dict(id2label=dict(enumerate(LABELS)), label2id={n: i for i, n in enumerate(LABELS)})

# name -> (reference class, config kwargs, head)
FIXTURES = {
    "detr-tiny-model": ("DetrModel", TINY, "model"),
    "detr-tiny-det": ("DetrForObjectDetection", dict(TINY, **NAMED), "det"),
    "detr-learned-aux-det": ("DetrForObjectDetection", dict(VARIANT, num_labels=4), "det"),
}
AUTO = {"model": "AutoModel", "det": "AutoModelForObjectDetection"}
OUTPUT_KEYS = ("last_hidden_state", "encoder_last_hidden_state", "logits", "pred_boxes")


def inputs(seed: int) -> dict[str, torch.Tensor]:
    g = torch.Generator().manual_seed(seed)
    x = torch.randn(B, 3, 48, 48, generator=g)
    mask = torch.ones(B, 48, 48, dtype=torch.long)
    mask[1, 32:] = 0
    mask[1, :, 40:] = 0
    x[1] *= mask[1]   # padding is zeros, as the processor pads
    return {"pixel_values": x, "pixel_mask": mask}


def outputs_of(model, batch) -> dict[str, torch.Tensor]:
    with torch.no_grad():
        out = model(**batch, output_hidden_states=True)
    got = {k: getattr(out, k).detach().clone() for k in OUTPUT_KEYS if getattr(out, k, None) is not None}
    got.update({f"enc.{i}": h.detach().clone() for i, h in enumerate(out.encoder_hidden_states)})
    got.update({f"dec.{i}": h.detach().clone() for i, h in enumerate(out.decoder_hidden_states)})
    return got


def loss_cases(config, seed: int) -> dict[str, list[dict]]:
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
    kwargs = dict(kwargs)
    backbone = dict(kwargs.pop("backbone_config"))
    backbone_cfg = transformers.ResNetConfig(**{k: v for k, v in backbone.items() if k != "model_type"})
    config = transformers.DetrConfig(backbone_config=backbone_cfg, **kwargs)
    seed = sum(map(ord, name))
    torch.manual_seed(seed)
    model = cls(config).eval()
    with torch.no_grad():   # away from init values; frozen batch norms with non-trivial statistics
        for p in model.parameters():
            p.add_(torch.randn_like(p) * 0.15)
        for key, buf in model.named_buffers():
            if key.endswith("running_var"):
                buf.uniform_(0.5, 1.5)
            elif key.endswith(("running_mean", "weight", "bias")):
                buf.add_(torch.randn_like(buf) * 0.2)
    folder = FIX / "models" / name
    shutil.rmtree(folder, ignore_errors=True)
    model.save_pretrained(folder)
    transformers.DetrImageProcessorPil(size={"shortest_edge": 48, "longest_edge": 64}).save_pretrained(folder)

    loaded = ref_load(cls, folder)
    batch = inputs(seed)
    tensors = {f"input.{k}": v for k, v in batch.items()}
    expected = outputs_of(loaded, batch)
    tensors.update({f"output.{k}": v for k, v in expected.items()})
    g = torch.Generator().manual_seed(seed + 7)
    xo = torch.randn(B, 3, 32, 64, generator=g)
    tensors["input.pixel_values_other"] = xo
    tensors.update({f"other.{k}": v for k, v in outputs_of(loaded, {"pixel_values": xo}).items()})
    bf = ref_load(cls, folder, dtype=torch.bfloat16)
    bf_out = outputs_of(bf, {"pixel_values": batch["pixel_values"].to(torch.bfloat16), "pixel_mask": batch["pixel_mask"]})
    tensors.update({f"bf16.{k}": v.float() for k, v in bf_out.items() if "." not in k})
    meta = {"class": cls_name, "head": head, "files": sorted(p.name for p in folder.iterdir()), "losses": {},
            "encoder_states": sum(k.startswith("enc.") for k in expected),
            "decoder_states": sum(k.startswith("dec.") for k in expected)}
    if head == "det":
        for case, labels in loss_cases(loaded.config, seed).items():
            with torch.no_grad():
                out = loaded(**batch, labels=labels)
            meta["losses"][case] = {"loss": float(out.loss), "parts": {k: float(v) for k, v in out.loss_dict.items()},
                                    "auxiliary_outputs": len(out.auxiliary_outputs or [])}
            for i, t in enumerate(labels):
                tensors[f"case.{case}.{i}.class_labels"] = t["class_labels"]
                tensors[f"case.{case}.{i}.boxes"] = t["boxes"]
            if out.auxiliary_outputs:
                for i, aux in enumerate(out.auxiliary_outputs):
                    tensors[f"case.{case}.aux.{i}.logits"] = aux["logits"]
                    tensors[f"case.{case}.aux.{i}.pred_boxes"] = aux["pred_boxes"]
    OUT.mkdir(parents=True, exist_ok=True)
    save_file({k: v.contiguous() for k, v in tensors.items()}, str(OUT / f"{name}.safetensors"))
    meta["roundtrip_max_abs_diff"] = roundtrip(name, head, folder, batch, expected)
    return meta


def roundtrip(name: str, head: str, folder: Path, batch, expected) -> float:
    """Load with OUR library, save with OUR save_pretrained, read back with the reference's Auto
    class for the head."""
    import pretrained.auto as ours

    cls_name = FIXTURES[name][0]
    module = ours.model_module("detr")
    our_cls = next(c for c in module.MODEL_CLASSES.values() if c.__name__ == cls_name)
    model = our_cls.from_pretrained(folder, strict=True)
    with tempfile.TemporaryDirectory() as tmp:
        model.save_pretrained(tmp)
        back = ref_load(getattr(transformers, AUTO[head]), tmp)
        if type(back).__name__ != cls_name:
            raise SystemExit(f"{name}: the reference read our save as {type(back).__name__}")
        if sorted(load_file(str(Path(tmp) / "model.safetensors"))) != sorted(load_file(str(folder / "model.safetensors"))):
            raise SystemExit(f"{name}: our save has other tensor names than the reference's")
        out = outputs_of(back, batch)
    if set(out) != set(expected):
        raise SystemExit(f"{name}: outputs differ in kind: {sorted(out)} vs {sorted(expected)}")
    return max(float((out[k] - expected[k]).abs().max()) for k in out)


def main() -> None:
    transformers.utils.logging.disable_progress_bar()
    meta = {"transformers_version": transformers.__version__, "torch_version": torch.__version__, "models": {}}
    for name in FIXTURES:
        meta["models"][name] = build(name)
        m = meta["models"][name]
        print(f"{name:22s} enc {m['encoder_states']} dec {m['decoder_states']}  losses "
              f"{ {k: round(v['loss'], 4) for k, v in m['losses'].items()} }  round trip {m['roundtrip_max_abs_diff']:.2e}")
    (OUT / "detr.json").write_text(json.dumps(meta, indent=2, sort_keys=True) + "\n")


if __name__ == "__main__":
    main()
