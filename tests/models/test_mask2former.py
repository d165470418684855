"""Mask2Former ('mask2former') against the goldens scripts/golden_mask2former.py recorded from the
reference (tests/fixtures/goldens/mask2former/).

The parts on their own (blocks.safetensors): multi-scale deformable attention against the
reference's pure-PyTorch function (points partly outside the maps), the pixel decoder and the
masked-attention transformer module (post-norm with input projections; pre-norm, GELU, no
projection and empty masks) loaded from the reference's state dicts with strict names.
"""

from __future__ import annotations

import json
from functools import lru_cache
from types import SimpleNamespace

import pytest
import torch
from safetensors.torch import load_file
from tester import FIX

from pretrained.layers.deformable_attention import (MultiscaleDeformableAttention, init_deformable_attention_,
                                                    multi_scale_deformable_attention, reference_grid)
from pretrained.layers.mask2former_decoder import Mask2FormerTransformerModule
from pretrained.layers.mask2former_pixel_decoder import Mask2FormerPixelDecoder, sine_position_embedding

GOLDENS = FIX / "goldens" / "mask2former"


@lru_cache(maxsize=None)
def index() -> dict:
    return json.loads((GOLDENS / "mask2former.json").read_text())


@lru_cache(maxsize=None)
def blocks() -> dict[str, torch.Tensor]:
    return load_file(str(GOLDENS / "blocks.safetensors"))


def prefixed(g: dict, prefix: str) -> dict[str, torch.Tensor]:
    return {k[len(prefix):]: v for k, v in g.items() if k.startswith(prefix)}


def numbered(g: dict, prefix: str) -> list[torch.Tensor]:
    found = prefixed(g, prefix)
    return [found[str(i)] for i in range(len(found))]


# --- the parts on their own ---------------------------------------------------------------------------
def test_deformable_attention_equals_the_reference_function():
    g = blocks()
    shapes = [tuple(s) for s in index()["blocks"]["msda_shapes"]]
    loc = g["msda.locations"]
    assert bool((loc < 0).any()) and bool((loc > 1).any())   # some points fall off the maps
    got = multi_scale_deformable_attention(g["msda.value"], shapes, loc, g["msda.weights"])
    assert got.shape == g["msda.output"].shape
    assert (got - g["msda.output"]).abs().max() <= 1e-6


def test_deformable_attention_reads_a_point_at_a_pixel_centre_exactly():
    # one level, one head, one point, weight 1: sampling a pixel centre returns that pixel's value
    value = torch.arange(12.0).view(1, 12, 1, 1)
    shapes = [(3, 4)]
    centre = reference_grid(shapes, torch.float32, "cpu")   # (1, 12, 1, 2)
    loc = centre.view(1, 12, 1, 1, 1, 2)
    out = multi_scale_deformable_attention(value, shapes, loc, torch.ones(1, 12, 1, 1, 1))
    assert (out.view(-1) - torch.arange(12.0)).abs().max() <= 1e-5


def test_deformable_attention_init_starts_points_on_a_ring():
    attn = MultiscaleDeformableAttention(embed_dim=8, num_heads=4, n_levels=2, n_points=3)
    init_deformable_attention_(attn)
    bias = attn.sampling_offsets.bias.view(4, 2, 3, 2)
    assert torch.equal(bias[0, 0, :, 0], torch.tensor([1.0, 2.0, 3.0])) and torch.all(bias[0, :, :, 1].abs() < 1e-6)
    assert torch.all(attn.attention_weights.weight == 0) and torch.all(attn.sampling_offsets.weight == 0)


def test_sine_positions_are_the_detr_table():
    pos = sine_position_embedding(torch.Size([1, 5, 2, 3]), torch.float32, "cpu", num_features=4)
    assert pos.shape == (1, 8, 2, 3)
    # y half first: channel 0 is sin(y * 2pi / H) at frequency 1 (y = 1..H normalised to (0, 2pi])
    y = torch.arange(1, 3, dtype=torch.float32) / (2 + 1e-6) * 2 * torch.pi
    assert torch.allclose(pos[0, 0, :, 0], y.sin(), atol=1e-6)
    x = torch.arange(1, 4, dtype=torch.float32) / (3 + 1e-6) * 2 * torch.pi
    assert torch.allclose(pos[0, 5, 0, :], x.cos(), atol=1e-6)


def test_pixel_decoder_equals_the_reference():
    g = blocks()
    meta = index()["blocks"]
    decoder = Mask2FormerPixelDecoder(SimpleNamespace(**meta["pd_config"]), feature_channels=meta["pd_channels"])
    decoder.load_state_dict(prefixed(g, "pd.w."), strict=True)
    decoder.eval()
    with torch.no_grad():
        mask_features, maps, attentions = decoder(numbered(g, "pd.feature."), output_attentions=True)
    assert (mask_features - g["pd.mask_features"]).abs().max() <= 1e-5
    want = numbered(g, "pd.multi_scale.")
    assert [m.shape for m in maps] == [w.shape for w in want]
    for got, w in zip(maps, want):
        assert (got - w).abs().max() <= 1e-5
    assert len(attentions) == meta["pd_config"]["encoder_layers"]


@pytest.mark.parametrize("case", ["a", "b"])
def test_transformer_module_equals_the_reference(case):
    g = blocks()
    meta = index()["blocks"]["tm"][case]
    cfg = SimpleNamespace(**meta["config"])
    module = Mask2FormerTransformerModule(in_features=cfg.feature_size, config=cfg)
    module.load_state_dict(prefixed(g, f"tm{case}.w."), strict=True)
    module.eval()
    assert (len(list(module.input_projections.parameters())) > 0) == (case == "a")
    if case == "b":   # a third of the first masks are empty: those queries must attend everywhere
        assert max(meta["empty_mask_fraction"]) > 0
    mask_features = g[f"tm{case}.mask_features"].expand(-1, -1, 8, 10)
    with torch.no_grad():
        out = module(numbered(g, f"tm{case}.map."), mask_features, output_hidden_states=True, output_attentions=True)
    assert (out.last_hidden_state - g[f"tm{case}.last_hidden_state"]).abs().max() <= 1e-5
    for key, got in (("hidden.", out.hidden_states), ("intermediate.", out.intermediate_hidden_states),
                     ("masks.", out.masks_queries_logits), ("attention.", out.attentions)):
        want = numbered(g, f"tm{case}.{key}")
        assert len(got) == len(want) == (cfg.decoder_layers if key != "attention." else cfg.decoder_layers - 1), key
        for i, (a, b) in enumerate(zip(got, want)):
            assert a.shape == b.shape, (key, i)
            assert (a - b).abs().max() <= 1e-5, (key, i)
