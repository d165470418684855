"""Goldens for Mask2Former (``model_type: "mask2former"``), from the reference (transformers 5.25):

    /work/refvenv/bin/python scripts/golden_mask2former.py            # everything
    /work/refvenv/bin/python scripts/golden_mask2former.py blocks     # some parts: blocks models processor

Writes under tests/fixtures/goldens/mask2former/ (index: mask2former.json):

blocks.safetensors: the parts on their own, on random inputs (no backbone needed)
  msda.*     the reference's pure-PyTorch multi_scale_deformable_attention (3 levels, points
             partly outside the maps)
  pd.*       Mask2FormerPixelDecoder (random weights ``pd.w.<key>``) on four random feature maps:
             mask features, the three multi-scale maps
  tm<c>.*    Mask2FormerTransformerModule (weights ``tm<c>.w.<key>``) on random maps: every
             layer's hidden states, normalised queries and mask logits, the self-attention
             weights; case a: post-norm, a 1x1 input projection, random mask features; case b:
             pre-norm, GELU, no projection, spatially constant mask features (so half the
             queries' masks are empty: those attend everywhere)

models: tiny random checkpoints (ResNet and Swin backbones; weights moved away from their init
values) saved to tests/fixtures/models/<name>/ with the reference's processor; per fixture
``<name>.safetensors``: the pixels, the outputs (class/mask logits, the encoder, pixel decoder and
transformer decoder hidden states, auxiliary logits), the bfloat16 run, and the losses' inputs;
mask2former.json records the round trip (our save read back by the reference).

processor.safetensors + the json's "processor": Mask2FormerImageProcessorPil on the bundled
pictures (resize with shortest/longest edge, size_divisor, pad with pixel_mask, segmentation maps
to mask/class labels) and its three post-processing methods on recorded outputs.
"""

from __future__ import annotations

import json
import sys
from pathlib import Path

import torch
import transformers
from safetensors.torch import save_file
from transformers.models.mask2former import modeling_mask2former as ref

ROOT = Path(__file__).resolve().parent.parent
FIX = ROOT / "tests" / "fixtures"
OUT = FIX / "goldens" / "mask2former"
sys.path.insert(0, str(ROOT))  # for the round trip through our own save_pretrained
INDEX = OUT / "mask2former.json"


def randomize(module: torch.nn.Module, gen: torch.Generator) -> None:
    """Every weight random (norms near 1, biases small), so that no part is an identity."""
    with torch.no_grad():
        for mod in module.modules():
            for name, p in mod.named_parameters(recurse=False):
                if isinstance(mod, (torch.nn.LayerNorm, torch.nn.GroupNorm)) and name == "weight":
                    p.copy_(1 + 0.2 * torch.randn(p.shape, generator=gen))
                elif p.dim() >= 2:
                    p.copy_(torch.randn(p.shape, generator=gen) / p[0].numel() ** 0.5)
                else:
                    p.copy_(0.2 * torch.randn(p.shape, generator=gen))


def block_config(**kw) -> transformers.Mask2FormerConfig:
    base = dict(feature_size=32, mask_feature_size=8, hidden_dim=16, encoder_feedforward_dim=32, encoder_layers=2,
                decoder_layers=4, num_attention_heads=2, dim_feedforward=32, num_queries=6)
    return transformers.Mask2FormerConfig(**{**base, **kw})


TM_CASES = {
    "a": dict(config=dict(), constant_masks=False),
    "b": dict(config=dict(feature_size=16, pre_norm=True, activation_function="gelu", decoder_layers=3),
              constant_masks=True),
}
PD_SHAPES = [(10, 14), (5, 7), (3, 4), (2, 2)]
PD_CHANNELS = [8, 16, 24, 32]


def blocks() -> dict:
    gen = torch.Generator().manual_seed(16)
    t: dict[str, torch.Tensor] = {}
    meta: dict = {}
    # 1. the deformable attention function
    shapes = [(4, 5), (2, 3), (1, 2)]
    batch, heads, dim, queries, points = 2, 2, 4, 7, 3
    value = torch.randn(batch, sum(h * w for h, w in shapes), heads, dim, generator=gen)
    locations = torch.rand(batch, queries, heads, len(shapes), points, 2, generator=gen) * 1.2 - 0.1
    weights = torch.randn(batch, queries, heads, len(shapes) * points, generator=gen).softmax(-1).view(
        batch, queries, heads, len(shapes), points)
    t.update({"msda.value": value, "msda.locations": locations, "msda.weights": weights,
              "msda.output": ref.multi_scale_deformable_attention(value, shapes, locations, weights)})
    meta["msda_shapes"] = shapes
    # 2. the pixel decoder
    config = block_config()
    pd = ref.Mask2FormerPixelDecoder(config, feature_channels=PD_CHANNELS).eval()
    randomize(pd, gen)
    with torch.no_grad():
        for layer in pd.encoder.layers:   # offsets of a few pixels, some points off the maps
            layer.self_attn.sampling_offsets.weight.mul_(4.0)
    features = [torch.randn(2, c, h, w, generator=gen) for c, (h, w) in zip(PD_CHANNELS, PD_SHAPES)]
    with torch.no_grad():
        out = pd(features, output_attentions=True)
    t.update({f"pd.w.{k}": v.clone() for k, v in pd.state_dict().items()})
    t.update({f"pd.feature.{i}": f for i, f in enumerate(features)})
    t["pd.mask_features"] = out.mask_features
    t.update({f"pd.multi_scale.{i}": m for i, m in enumerate(out.multi_scale_features)})
    meta["pd_config"] = {k: getattr(config, k) for k in ("feature_size", "mask_feature_size", "encoder_layers",
                                                        "num_attention_heads", "encoder_feedforward_dim",
                                                        "common_stride", "dropout")}
    meta["pd_config"]["feature_strides"] = list(config.feature_strides)
    meta["pd_channels"] = PD_CHANNELS
    # 3. the transformer module
    meta["tm"] = {}
    for case, spec in TM_CASES.items():
        config = block_config(**spec["config"])
        tm = ref.Mask2FormerTransformerModule(in_features=config.feature_size, config=config).eval()
        randomize(tm, gen)
        maps = [torch.randn(2, config.feature_size, h, w, generator=gen) for h, w in [(1, 2), (2, 3), (4, 5)]]
        if spec["constant_masks"]:   # stored (2, C, 1, 1): the test expands it
            mask_features = torch.randn(2, config.mask_feature_size, 1, 1, generator=gen)
        else:
            mask_features = torch.randn(2, config.mask_feature_size, 8, 10, generator=gen)
        with torch.no_grad():
            out = tm(maps, mask_features.expand(-1, -1, 8, 10), output_hidden_states=True, output_attentions=True)
        p = f"tm{case}."
        t.update({f"{p}w.{k}": v.clone() for k, v in tm.state_dict().items()})
        t.update({f"{p}map.{i}": m for i, m in enumerate(maps)})
        t[f"{p}mask_features"] = mask_features
        t[f"{p}last_hidden_state"] = out.last_hidden_state
        t.update({f"{p}hidden.{i}": h for i, h in enumerate(out.hidden_states)})
        t.update({f"{p}intermediate.{i}": h for i, h in enumerate(out.intermediate_hidden_states)})
        t.update({f"{p}masks.{i}": m for i, m in enumerate(out.masks_queries_logits)})
        t.update({f"{p}attention.{i}": a for i, a in enumerate(out.attentions)})
        empty = [float((m < 0).flatten(2).all(-1).float().mean()) for m in out.masks_queries_logits]
        meta["tm"][case] = {"config": {k: getattr(config, k) for k in (
            "hidden_dim", "feature_size", "mask_feature_size", "num_attention_heads", "dim_feedforward",
            "activation_function", "pre_norm", "decoder_layers", "num_queries", "enforce_input_projection",
            "dropout")}, "empty_mask_fraction": empty}
    OUT.mkdir(parents=True, exist_ok=True)
    save_file({k: v.contiguous() for k, v in t.items()}, str(OUT / "blocks.safetensors"))
    return meta


def main(parts: list[str]) -> None:
    transformers.utils.logging.disable_progress_bar()
    index = json.loads(INDEX.read_text()) if INDEX.exists() else {}
    index.update({"transformers_version": transformers.__version__, "torch_version": torch.__version__})
    if "blocks" in parts:
        index["blocks"] = blocks()
        print("blocks: empty-mask fractions", {c: m["empty_mask_fraction"] for c, m in index["blocks"]["tm"].items()})
    INDEX.write_text(json.dumps(index, indent=2, sort_keys=True) + "\n")


if __name__ == "__main__":
    main(sys.argv[1:] or ["blocks", "models", "processor"])
