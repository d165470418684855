"""Mask2Former ('mask2former') against the goldens scripts/golden_mask2former.py recorded from the
reference (tests/fixtures/goldens/mask2former/).

Whole models (tiny ResNet basic / bottleneck and Swin backbones; post- and pre-norm, with and
without input projections): float32 parity of every output the reference returns (class and mask
logits, encoder / pixel decoder / transformer decoder hidden states, self-attentions, auxiliary
logits) at two image sizes, the bare model, the loss with the reference's seeded point sampling,
the round trip (the reference reads our save: recorded), bfloat16, the Auto classes, the backend
seam, LoRA, torch.compile, training, and named errors.

The parts on their own (blocks.safetensors): multi-scale deformable attention against the
reference's pure-PyTorch function (points partly outside the maps), the pixel decoder and the
masked-attention transformer module (pre-norm, GELU, no projection, empty masks) loaded from the
reference's state dict with strict names.
"""

from __future__ import annotations

import copy
import json
import math
from functools import lru_cache
from types import SimpleNamespace

import pytest
import torch
from image_tester import Goldens, image_model_tests, recorded
from safetensors.torch import load_file
from tester import FIX, load, names_for

from pretrained import AutoConfig, AutoModel, AutoModelForImageSegmentation, AutoModelForUniversalSegmentation
from pretrained.backends import plain
from pretrained.errors import ConfigError, InvalidInputError, UnsupportedOptionError
from pretrained.models.mask2former import (Mask2FormerConfig, Mask2FormerForUniversalSegmentation,
                                           Mask2FormerModel)
from pretrained.peft import LoraConfig, get_peft_model

from pretrained.layers.deformable_attention import (MultiscaleDeformableAttention, init_deformable_attention_,
                                                    multi_scale_deformable_attention, reference_grid)
from pretrained.layers.mask2former_decoder import Mask2FormerTransformerModule
from pretrained.layers.mask2former_pixel_decoder import sine_position_embedding

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


def test_deformable_attention_with_boxes_scales_the_offsets_by_the_box():
    # 4-value reference points (cx, cy, w, h): a point sits at centre + offset / n_points * size / 2
    torch.manual_seed(0)
    attn = MultiscaleDeformableAttention(embed_dim=4, num_heads=1, n_levels=1, n_points=2)
    shapes = [(5, 6)]
    x = torch.randn(1, 3, 4)
    memory = torch.randn(1, 30, 4)
    boxes = torch.tensor([[0.5, 0.5, 0.4, 0.2], [0.3, 0.6, 0.1, 0.5], [0.7, 0.2, 0.2, 0.2]]).view(1, 3, 1, 4)
    out, weights = attn(x, memory, boxes, shapes)
    offsets = attn.sampling_offsets(x).view(1, 3, 1, 1, 2, 2)
    where = boxes[:, :, None, :, None, :2] + offsets / 2 * boxes[:, :, None, :, None, 2:] * 0.5
    value = attn.value_proj(memory).view(1, 30, 1, 4)
    want = attn.output_proj(multi_scale_deformable_attention(value, shapes, where, weights))
    assert torch.allclose(out, want, atol=1e-6)
    with pytest.raises(InvalidInputError, match="end in 2"):
        attn(x, memory, boxes[..., :3], shapes)
    with pytest.raises(InvalidInputError, match="levels"):
        attn(x, memory, boxes, [(5, 5)])


def test_sine_positions_are_the_detr_table():
    pos = sine_position_embedding(torch.Size([1, 5, 2, 3]), torch.float32, "cpu", num_features=4)
    assert pos.shape == (1, 8, 2, 3)
    # y half first: channel 0 is sin(y * 2pi / H) at frequency 1 (y = 1..H normalised to (0, 2pi])
    y = torch.arange(1, 3, dtype=torch.float32) / (2 + 1e-6) * 2 * torch.pi
    assert torch.allclose(pos[0, 0, :, 0], y.sin(), atol=1e-6)
    x = torch.arange(1, 4, dtype=torch.float32) / (3 + 1e-6) * 2 * torch.pi
    assert torch.allclose(pos[0, 5, 0, :], x.cos(), atol=1e-6)


@pytest.mark.parametrize("case", ["b"])
def test_transformer_module_equals_the_reference(case):
    g = blocks()
    meta = index()["blocks"]["tm"][case]
    cfg = SimpleNamespace(**meta["config"])
    module = Mask2FormerTransformerModule(in_features=cfg.feature_size, config=cfg)
    module.load_state_dict(prefixed(g, f"tm{case}.w."), strict=True)
    module.eval()
    assert not list(module.input_projections.parameters())   # feature_size == hidden_dim: no projection
    assert max(meta["empty_mask_fraction"]) > 0   # some masks are empty: those queries attend everywhere
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


# --- whole models ---------------------------------------------------------------------------------------
GOLDEN = Goldens("mask2former")
NAMES = names_for("mask2former")
HEAD = "mask2former-resnet"
SHARED = ("test_the_reference_reads_our_save",)
globals().update({k: v for k, v in image_model_tests(GOLDEN, NAMES, HEAD, 0).items() if k in SHARED})
LAST = ("class_queries_logits", "masks_queries_logits", "encoder_last_hidden_state", "pixel_decoder_last_hidden_state",
        "transformer_decoder_last_hidden_state")
TUPLES = ("encoder_hidden_states", "pixel_decoder_hidden_states", "transformer_decoder_hidden_states", "attentions")


def pixels(name: str, tag: str = "output") -> torch.Tensor:
    """The golden's 8-bit pictures normalised as the script did; "other": mirrored and transposed."""
    x = (GOLDEN.golden(name)["input.picture"].float() / 255 - 0.5) / 0.25
    return x if tag == "output" else x.flip(-1).transpose(-2, -1).contiguous()


def labels(name: str) -> tuple[list[torch.Tensor], list[torch.Tensor]]:
    g = GOLDEN.golden(name)
    n = sum(k.startswith("labels.mask.") for k in g)
    return [g[f"labels.mask.{i}"].float() for i in range(n)], [g[f"labels.class.{i}"] for i in range(n)]


@pytest.mark.parametrize("name", NAMES)
def test_our_save_loads_back_bit_for_bit_under_the_reference_names(name, tmp_path):
    model = load(name)
    model.save_pretrained(tmp_path)
    saved = load_file(str(tmp_path / "model.safetensors"))
    theirs = load_file(str(FIX / "models" / name / "model.safetensors"))
    # the reference 5.x also writes the Swin bare model's final norm, which no backbone has (nor reads)
    extra = sorted(set(theirs) - set(saved))
    assert all(".swin.layernorm." in k for k in extra) and (bool(extra) == name.endswith("swin"))
    assert sorted(saved) == sorted(set(theirs) - set(extra))
    assert all(torch.equal(saved[k], theirs[k]) for k in saved)
    back = type(model).from_pretrained(tmp_path, strict=True)
    assert all(torch.equal(a, back.state_dict()[k]) for k, a in model.state_dict().items())
    assert back.config.id2label == model.config.id2label


@pytest.mark.parametrize("name", NAMES)
def test_bfloat16_within_its_rounding(name):
    # The masked attention thresholds each mask at p = 0.5: in bfloat16 some pixels near it flip (the
    # golden counts the reference's flips), and a flipped pixel moves the logits by more than rounding.
    # So ours must be near the reference's bfloat16 run or near float32, and near float32 wherever the
    # reference's own bfloat16 run is.
    g = GOLDEN.golden(name)
    model = load(name, torch_dtype=torch.bfloat16)
    assert model.dtype == torch.bfloat16
    with torch.no_grad():
        out = model(pixel_values=pixels(name))   # float32 pixels: cast by the model
    assert GOLDEN.meta(name)["bf16_attention_mask_flips"] >= 0
    for key in ("class_queries_logits", "masks_queries_logits"):
        got, want, ref_bf16 = getattr(out, key).float(), g[f"output.{key}"], g[f"bf16.{key}"]
        tolerance = 0.06 * want.abs().max().item() + 0.02
        near_float32 = (got - want).abs().max() <= tolerance
        assert near_float32 or (got - ref_bf16).abs().max() <= tolerance, key
        if (ref_bf16 - want).abs().max() <= tolerance:
            assert near_float32, key


def test_the_fixtures_are_found():
    assert NAMES == sorted(GOLDEN.index()["models"]) and len(NAMES) == 3
    assert {GOLDEN.meta(n)["backbone"] for n in NAMES} == {"resnet", "swin"}
    configs = [load(n).config for n in NAMES]
    assert {c.pre_norm for c in configs} == {True, False}
    assert {c.backbone_config.layer_type for c in configs if c.backbone_config.model_type == "resnet"} == {
        "basic", "bottleneck"}


@pytest.mark.parametrize("name", NAMES)
def test_float32_parity_with_the_reference(name):
    g = GOLDEN.golden(name)
    model = load(name, strict=True)
    assert type(model) is Mask2FormerForUniversalSegmentation and not model.training
    want = recorded(g, "output.")
    with torch.no_grad():
        out = model(pixel_values=pixels(name), output_hidden_states=True, output_attentions=True,
                    output_auxiliary_logits=True)
    got = {k: getattr(out, k) for k in LAST}
    for key in TUPLES:
        got.update({f"{key}.{i}": h for i, h in enumerate(getattr(out, key))})
    for i, aux in enumerate(out.auxiliary_logits):
        got.update({f"aux.{i}.{k}": v for k, v in aux.items()})
    assert sorted(got) == sorted(want) == GOLDEN.meta(name)["outputs"]
    assert len(out.auxiliary_logits) == model.config.decoder_layers - 1
    for key, w in want.items():
        assert got[key].shape == w.shape, key
        assert (got[key] - w).abs().max() <= 1e-4, key


@pytest.mark.parametrize("name", NAMES)
def test_another_image_size(name):
    g = GOLDEN.golden(name)
    with torch.no_grad():
        out = load(name)(pixel_values=pixels(name, "other"))
    for key, w in recorded(g, "other.").items():
        assert getattr(out, key).shape == w.shape and (getattr(out, key) - w).abs().max() <= 1e-4, key


@pytest.mark.parametrize("name", NAMES)
def test_the_bare_model_gives_the_heads_states(name):
    g = GOLDEN.golden(name)
    bare = AutoModel.from_pretrained(FIX / "models" / name)
    assert type(bare) is Mask2FormerModel
    with torch.no_grad():
        out = bare(pixel_values=pixels(name), output_hidden_states=True)
    assert (out.transformer_decoder_last_hidden_state - g["output.transformer_decoder_last_hidden_state"]).abs().max() <= 1e-4
    assert (out.masks_queries_logits[-1] - g["output.masks_queries_logits"]).abs().max() <= 1e-4
    assert len(out.masks_queries_logits) == len(out.transformer_decoder_intermediate_states) == bare.config.decoder_layers
    for i, h in enumerate(out.encoder_hidden_states):
        assert (h - g[f"output.encoder_hidden_states.{i}"]).abs().max() <= 1e-4
    # the intermediate queries (Q, B, C) through the head's class predictor give its class logits
    head = load(name)
    classes = head.class_predictor(out.transformer_decoder_intermediate_states[-1].transpose(0, 1))
    assert (classes - g["output.class_queries_logits"]).abs().max() <= 1e-4
    with torch.no_grad():
        plain_out = bare(pixel_values=pixels(name))
    assert plain_out.encoder_hidden_states is None and plain_out.transformer_decoder_intermediate_states is None


@pytest.mark.parametrize("name", NAMES)
def test_loss_equals_the_reference_with_its_seed(name):
    # the point sampling draws from torch's global generator in the reference's order: seeded, the
    # reference's loss (every layer's terms: it supervises them whatever use_auxiliary_loss says)
    masks, classes = labels(name)
    for case, spec in GOLDEN.meta(name)["losses"].items():
        model = load(name, **spec["config"])
        torch.manual_seed(spec["seed"])
        with torch.no_grad():
            loss = model(pixel_values=pixels(name), mask_labels=masks, class_labels=classes).loss
        want = spec["loss"]
        assert math.isfinite(want) and abs(loss.item() - want) <= 1e-4 * max(1.0, abs(want)), (case, loss.item(), want)
    torch.manual_seed(spec["seed"] + 1)   # other points: another loss (the sampling is live)
    with torch.no_grad():
        other = load(name)(pixel_values=pixels(name), mask_labels=masks, class_labels=classes).loss
    assert abs(other.item() - want) > 1e-6


def test_the_loss_prefers_the_right_answer():
    # independent of the reference: a model whose predictions are the targets scores a lower loss
    from pretrained.layers.mask2former_loss import mask2former_losses, weighted_loss

    cfg = load(HEAD).config
    targets = [torch.zeros(2, 16, 16), torch.zeros(1, 16, 16)]
    targets[0][0, :8], targets[0][1, 8:], targets[1][0, :, :5] = 1, 1, 1
    classes = [torch.tensor([0, 2]), torch.tensor([1])]
    good_masks = torch.full((2, 6, 16, 16), -8.0)
    good_classes = torch.full((2, 6, cfg.num_labels + 1), -8.0)
    good_classes[:, :, -1] = 8.0
    for b, (t, c) in enumerate(zip(targets, classes)):
        good_masks[b, : len(c)] = t * 16 - 8
        good_classes[b, torch.arange(len(c)), c] = 8.0
        good_classes[b, torch.arange(len(c)), -1] = -8.0
    torch.manual_seed(0)
    # uniform points only: the uncertain ones would sit on the masks' edges, where even a right answer is unsure
    cfg = SimpleNamespace(**{k: getattr(cfg, k) for k in ("num_labels", "no_object_weight", "class_weight", "mask_weight",
                                                          "dice_weight", "train_num_points", "oversample_ratio")},
                          importance_sample_ratio=0.0)
    good = weighted_loss(mask2former_losses(good_masks, good_classes, targets, classes, [], cfg), cfg)
    torch.manual_seed(0)
    bad = weighted_loss(mask2former_losses(-good_masks, good_classes.flip(-1), targets, classes, [], cfg), cfg)
    assert good.item() < 1.5 and bad.item() > 20 * good.item()   # (the floor: targets read half-valued at the borders)


def test_the_auto_classes_and_config():
    path = FIX / "models" / HEAD
    assert type(AutoModelForUniversalSegmentation.from_pretrained(path)) is Mask2FormerForUniversalSegmentation
    assert type(AutoModelForImageSegmentation.from_pretrained(path)) is Mask2FormerForUniversalSegmentation
    cfg = AutoConfig.from_pretrained(path)
    assert cfg.model_type == "mask2former" and cfg.backbone_config.model_type == "resnet"
    assert cfg.hidden_size == cfg.hidden_dim and cfg.num_hidden_layers == cfg.decoder_layers
    assert cfg.id2label[1] == "rocket"
    again = Mask2FormerConfig.from_dict(json.loads(cfg.to_json_string()))
    assert again.to_dict() == cfg.to_dict() and again.backbone_config.hidden_sizes == [4, 8, 8, 16]


def test_config_defaults_are_the_references():
    cfg = Mask2FormerConfig()
    assert (cfg.feature_size, cfg.mask_feature_size, cfg.hidden_dim, cfg.num_queries) == (256, 256, 256, 100)
    assert (cfg.encoder_layers, cfg.decoder_layers, cfg.num_attention_heads, cfg.dim_feedforward) == (6, 10, 8, 2048)
    assert (cfg.class_weight, cfg.mask_weight, cfg.dice_weight, cfg.no_object_weight) == (2.0, 5.0, 5.0, 0.1)
    assert cfg.train_num_points == 12544 and cfg.feature_strides == [4, 8, 16, 32]
    bb = cfg.backbone_config
    assert bb.model_type == "swin" and bb.depths == [2, 2, 18, 2] and bb.out_features == [f"stage{i}" for i in range(1, 5)]


@pytest.mark.parametrize("bad, error, words", [
    (dict(feature_size=48), ConfigError, "multiple of 32"),
    (dict(hidden_dim=30), ConfigError, "not divisible"),
    (dict(feature_strides=[4, 8]), ConfigError, "feature_strides"),
    (dict(backbone_config={"model_type": "resnet", "out_features": ["stage3", "stage4"]}), ConfigError, "returns 2 maps"),
    (dict(backbone_config={"depths": [1]}), ConfigError, "model_type"),
    (dict(backbone_config={"model_type": "bert"}), ConfigError, "backbone"),
    (dict(activation_function="nope"), ConfigError, "nope"),
    (dict(use_timm_backbone=True), UnsupportedOptionError, "timm"),
    (dict(backbone="resnet50"), UnsupportedOptionError, "backbone_config"),
])
def test_bad_configs_are_named_errors(bad, error, words):
    with pytest.raises(error, match=words):
        Mask2FormerConfig(**bad)


def test_swin_patterns_match_the_backbones():
    from pretrained.models.swin import SwinBackbone

    assert set(SwinBackbone.ignore_unexpected) <= set(Mask2FormerForUniversalSegmentation.ignore_unexpected)


@pytest.mark.parametrize("bad, words", [
    (dict(pixel_values=torch.zeros(1, 32, 40, 3)), "channels-last"),
    (dict(pixel_values=torch.zeros(1, 32, 40, dtype=torch.uint8)), "float"),
    (dict(pixel_values=torch.zeros(1, 3, 32, 40), mask_labels=[torch.zeros(1, 32, 40)]), "class_labels"),
    (dict(pixel_values=torch.zeros(2, 3, 32, 40), mask_labels=[torch.zeros(1, 32, 40)],
          class_labels=[torch.tensor([0])]), "for 2 images"),
    (dict(pixel_values=torch.zeros(1, 3, 32, 40), mask_labels=[torch.zeros(1, 32, 40)],
          class_labels=[torch.tensor([7])]), "outside"),
    (dict(pixel_values=torch.zeros(1, 3, 32, 40), mask_labels=[torch.zeros(0, 32, 40)],
          class_labels=[torch.tensor([], dtype=torch.long)]), "no target mask"),
])
def test_bad_inputs_are_named_errors(bad, words):
    with pytest.raises(InvalidInputError, match=words):
        load(HEAD)(**bad)


def test_unknown_arguments_are_refused():
    with pytest.raises(UnsupportedOptionError, match="nope"):
        load(HEAD)(pixel_values=pixels(HEAD), nope=1)


def test_pixel_mask_is_accepted_and_not_read():
    # as the reference: the padding is computed like any pixel
    model = load(HEAD)
    x = pixels(HEAD)
    with torch.no_grad():
        a = model(pixel_values=x).masks_queries_logits
        b = model(pixel_values=x, pixel_mask=torch.zeros(x.shape[0], *x.shape[2:], dtype=torch.long)).masks_queries_logits
    assert torch.equal(a, b)


def _run(model, x):
    with torch.no_grad():
        out = model(pixel_values=x)
    return torch.cat([out.class_queries_logits.flatten(), out.masks_queries_logits.flatten()])


def test_fast_paths_give_the_plain_modules_numbers():
    model = load(HEAD)
    kinds = {type(m).__name__ for m in model.modules()}
    assert "CpuLinear" in kinds and "Linear" not in kinds
    reference = copy.deepcopy(model)
    assert plain(reference) > 0
    for rows in (1, 2, 1):
        x = pixels(HEAD)[:rows]
        assert (_run(model, x) - _run(reference, x)).abs().max() <= 1e-5


def test_training_a_step_reaches_every_weight():
    torch.manual_seed(0)
    model = load(HEAD)
    model.train()
    masks, classes = labels(HEAD)
    out = model(pixel_values=pixels(HEAD), mask_labels=masks, class_labels=classes)
    out.loss.backward()
    missing = [n for n, p in model.named_parameters() if p.grad is None or not bool(p.grad.abs().sum() > 0)]
    assert not missing


def test_lora_all_linear_trains_and_merges(tmp_path):
    torch.manual_seed(0)
    peft = get_peft_model(load(HEAD), LoraConfig(r=4, lora_alpha=8, target_modules="all-linear"))
    peft.train()
    masks, classes = labels(HEAD)
    peft(pixel_values=pixels(HEAD), mask_labels=masks, class_labels=classes).loss.backward()
    trainable = [p for p in peft.parameters() if p.requires_grad]
    assert len(trainable) >= 2 * 20 and all(p.grad is not None for p in trainable)
    with torch.no_grad():
        for p in trainable:
            p.add_(torch.randn_like(p) * 0.05)
    peft.eval()
    x = pixels(HEAD)
    got = _run(peft, x)
    assert (got - _run(load(HEAD), x)).abs().max() > 1e-3
    merged = peft.merge_and_unload()
    assert (_run(merged, x) - got).abs().max() <= 1e-4


def test_torch_compile_gives_the_same_outputs():
    torch._dynamo.reset()
    model = load(HEAD)
    x = pixels(HEAD)
    assert (_run(torch.compile(model), x) - _run(model, x)).abs().max() <= 1e-5


def test_random_init_runs():
    cfg = load(HEAD).config
    model = Mask2FormerForUniversalSegmentation.from_config(cfg).eval()
    assert torch.equal(model.criterion.empty_weight, torch.tensor([1.0, 1.0, 1.0, cfg.no_object_weight]))
    attn = model.model.pixel_level_module.decoder.encoder.layers[0].self_attn
    assert torch.all(attn.sampling_offsets.weight == 0) and attn.sampling_offsets.bias.abs().max() > 0
    assert torch.isfinite(_run(model, pixels(HEAD))).all()
