"""DETR ('detr', with this library's ResNet as its backbone) against the goldens
scripts/golden_detr.py recorded from the reference (tests/fixtures/goldens/detr/); the
segmentation head (DetrForSegmentation) against scripts/golden_detr_segmentation.py's
(tests/fixtures/goldens/detr_segmentation/): see the second half of this file.

Float32 parity (every output, the encoder's and decoder's hidden states; a padded picture with its
pixel mask, and unmasked pixels of another size; sine and learned positions), the set loss and its
parts with auxiliary losses, the round trip (the reference reads our save: recorded), bfloat16,
the backend seam, LoRA all-linear, torch.compile, the frozen backbone, and named errors for what
is not supported (dilation with this ResNet, a timm backbone not implemented, layer drop in training).
"""

from __future__ import annotations

import math

import pytest
import torch
from image_tester import Goldens, example, image_model_tests, recorded
from tester import FIX, load, names_for

from pretrained import AutoConfig, AutoModel, AutoModelForObjectDetection
from pretrained.errors import ConfigError, InvalidInputError, UnsupportedOptionError
from pretrained.layers.backbone import FrozenBatchNorm2d
from pretrained.models.detr import DetrConfig, DetrForObjectDetection, DetrForSegmentation, DetrModel

GOLDENS = Goldens("detr")
meta, golden, index = GOLDENS.meta, GOLDENS.golden, GOLDENS.index
NAMES = sorted(GOLDENS.index()["models"])   # the detector fixtures; the segmentation ones below
DETECTOR = "detr-tiny-det"
LOSSY = [(n, c) for n in NAMES for c in meta(n)["losses"]]
TWO_TARGETS = [{"class_labels": torch.tensor([1, 2]), "boxes": torch.tensor([[0.3, 0.4, 0.2, 0.3], [0.7, 0.6, 0.1, 0.2]])},
               {"class_labels": torch.tensor([0]), "boxes": torch.tensor([[0.5, 0.5, 0.4, 0.4]])}]
BACKBONE = {"model_type": "resnet", "embedding_size": 8, "hidden_sizes": [8, 16], "depths": [1, 1],
            "layer_type": "basic", "out_features": ["stage2"]}
SMALL = dict(use_timm_backbone=False, d_model=16, encoder_layers=1, decoder_layers=1, encoder_attention_heads=2,
             decoder_attention_heads=2, encoder_ffn_dim=20, decoder_ffn_dim=20, num_queries=4, backbone_config=BACKBONE)


def case_labels(g: dict, case: str) -> list[dict]:
    return [{"class_labels": g[f"case.{case}.{i}.class_labels"], "boxes": g[f"case.{case}.{i}.boxes"]}
            for i in range(2)]


def got_of(out, key: str) -> torch.Tensor:
    if key.startswith("enc."):
        return out.encoder_hidden_states[int(key[4:])]
    if key.startswith("dec."):
        return out.decoder_hidden_states[int(key[4:])]
    return getattr(out, key)


def masked(g: dict) -> dict:
    return {"pixel_values": g["input.pixel_values"], "pixel_mask": g["input.pixel_mask"]}


def test_the_fixtures_are_found():
    assert set(NAMES) | set(SEG_NAMES) == set(names_for("detr")) and len(NAMES) == 3 and len(LOSSY) == 4


@pytest.mark.parametrize("name", NAMES)
@pytest.mark.parametrize("tag", ["output", "other"])
def test_float32_parity_with_the_reference(name, tag):
    g = golden(name)
    model = load(name)
    assert type(model).__name__ == meta(name)["class"]
    want = recorded(g, f"{tag}.")
    cfg = model.config
    assert sum(k.startswith("enc.") for k in want) == meta(name)["encoder_states"] == cfg.encoder_layers + 1
    assert sum(k.startswith("dec.") for k in want) == meta(name)["decoder_states"] == cfg.decoder_layers + 1
    batch = masked(g) if tag == "output" else {"pixel_values": g["input.pixel_values_other"]}
    with torch.no_grad():
        out = model(**batch, output_hidden_states=True)
    for key, w in want.items():
        got = got_of(out, key)
        assert got.shape == w.shape, (key, got.shape, w.shape)
        assert (got - w).abs().max() <= 1e-4, key


def test_the_pixel_mask_is_read():
    g = golden(DETECTOR)
    model = load(DETECTOR)
    with torch.no_grad():
        with_mask = model(**masked(g)).logits
        without = model(pixel_values=g["input.pixel_values"]).logits
    assert torch.equal(with_mask[0], without[0])   # the first picture is not padded
    assert (with_mask[1] - without[1]).abs().max() > 1e-3


@pytest.mark.parametrize("name, case", LOSSY)
def test_the_set_loss_its_parts_and_the_auxiliary_outputs_match_the_reference(name, case):
    spec = meta(name)["losses"][case]
    g = golden(name)
    model = load(name)
    with torch.no_grad():
        out = model(**masked(g), labels=case_labels(g, case))
    assert math.isfinite(spec["loss"]) and abs(out.loss.item() - spec["loss"]) <= 1e-4 * max(1.0, spec["loss"])
    assert sorted(out.loss_dict) == sorted(spec["parts"])
    for key, want in spec["parts"].items():
        assert abs(out.loss_dict[key].item() - want) <= 1e-4 * max(1.0, abs(want)), key
    assert len(out.auxiliary_outputs or []) == spec["auxiliary_outputs"] == model.config.decoder_layers - 1
    for i, aux in enumerate(out.auxiliary_outputs or []):
        for key in ("logits", "pred_boxes"):
            assert (aux[key] - g[f"case.{case}.aux.{i}.{key}"]).abs().max() <= 1e-4


def test_the_backbone_is_frozen_as_the_references_and_can_be_unfrozen():
    model = load(DETECTOR)
    backbone = model.model.backbone.conv_encoder.model
    assert any(isinstance(m, FrozenBatchNorm2d) for m in backbone.modules())
    assert not any(isinstance(m, torch.nn.BatchNorm2d) for m in backbone.modules())
    assert not any(p.requires_grad for p in backbone.parameters())
    model.unfreeze_backbone()
    assert all(p.requires_grad for p in backbone.parameters())
    model.train()
    model(**example(2), labels=TWO_TARGETS).loss.backward()
    missing = [n for n, p in model.named_parameters() if p.grad is None or not bool(p.grad.abs().sum() > 0)]
    # the first decoder layer's values are projections of the zero queries: only the bias learns
    assert missing == ["model.decoder.layers.0.self_attn.v_proj.weight"]
    model.freeze_backbone()
    assert not any(p.requires_grad for p in backbone.parameters())


def test_bfloat16_within_its_rounding():
    g = golden(DETECTOR)
    model = load(DETECTOR, torch_dtype=torch.bfloat16)
    assert model.dtype == torch.bfloat16
    with torch.no_grad():
        out = model(**masked(g))
    for key, ref_bf16 in recorded(g, "bf16.").items():
        want, got = g[f"output.{key}"], getattr(out, key).float()
        # the backbone's convolutions, the encoder's LayerNorms: the reference's own bfloat16 run is
        # 0.15 from float32 on the encoder's output; ours equals that run to bfloat16 noise
        assert (got - want).abs().max() <= 0.08 * want.abs().max().item() + 0.02, key
        assert (got - ref_bf16).abs().max() <= 0.01 * want.abs().max().item() + 0.01, key


def test_a_fresh_model_from_a_config_object():
    from pretrained.models.resnet import ResNetConfig

    backbone = ResNetConfig(**{k: v for k, v in BACKBONE.items() if k != "model_type"})
    model = DetrForObjectDetection.from_config(DetrConfig(**{**SMALL, "backbone_config": backbone})).eval()
    assert model.config.backbone_config["model_type"] == "resnet"
    out = model(torch.randn(2, 3, 40, 56))
    assert out.logits.shape == (2, 4, 3) and out.pred_boxes.shape == (2, 4, 4)
    assert DetrConfig(use_timm_backbone=False).backbone_config == {"model_type": "resnet", "out_features": ["stage4"]}


@pytest.mark.parametrize("bad, error, words", [
    (dict(use_timm_backbone=True, backbone_config=None, backbone="convnext_tiny"), UnsupportedOptionError,
     "not implemented here"),
    (dict(dilation=True), UnsupportedOptionError, "dilation"),
    (dict(position_embedding_type="rope"), ConfigError, "position_embedding_type"),
    (dict(d_model=15), ConfigError, "multiple"),
    (dict(backbone_config={"embedding_size": 8}), ConfigError, "model_type"),
    (dict(num_channels=1), ConfigError, "num_channels"),
    (dict(class_cost=0, bbox_cost=0, giou_cost=0), ConfigError, "cannot all be 0"),
])
def test_bad_and_unsupported_configs_are_named_errors(bad, error, words):
    with pytest.raises(error, match=words):
        DetrConfig(**{**SMALL, **bad})


def test_a_timm_config_takes_the_timm_layout_resnet():
    # the timm backbones themselves: tests/test_detr_timm.py
    cfg = DetrConfig.from_dict({"model_type": "detr", "backbone": "resnet50", "use_timm_backbone": True})
    assert cfg.backbone_config["model_type"] == "timm_backbone" and cfg.backbone().out_indices == [1, 2, 3, 4]


def test_layer_drop_in_training_is_refused():
    model = load(DETECTOR, encoder_layerdrop=0.1)
    with torch.no_grad():
        model(**example(1))   # inference: no layer drop anyway
    model.train()
    with pytest.raises(UnsupportedOptionError, match="layerdrop"):
        model(**example(1))


@pytest.mark.parametrize("bad, words", [
    (dict(pixel_values=torch.zeros(2, 32, 32, 3)), "channels-last"),
    (dict(pixel_values=torch.zeros(2, 3, 32, 32), pixel_mask=torch.ones(2, 16, 32, dtype=torch.long)), "pixel_mask"),
    (dict(pixel_values=torch.zeros(2, 3, 32, 32, dtype=torch.uint8)), "float pixels"),
])
def test_bad_inputs_are_named_errors(bad, words):
    with pytest.raises(InvalidInputError, match=words):
        load(DETECTOR)(**bad)
    with pytest.raises(InvalidInputError, match="learned positions"):
        load("detr-learned-aux-det")(pixel_values=torch.zeros(1, 3, 16 * 51, 32))


def test_the_auto_classes_and_the_checkpoint_names():
    det = AutoModelForObjectDetection.from_pretrained(FIX / "models" / DETECTOR)
    assert isinstance(det, DetrForObjectDetection) and det.config.id2label[1] == "square"
    assert isinstance(AutoModel.from_pretrained(FIX / "models" / "detr-tiny-model"), DetrModel)
    assert AutoConfig.from_pretrained(FIX / "models" / DETECTOR).model_type == "detr"
    names = set(det.state_dict())
    for key in ("model.backbone.conv_encoder.model.embedder.embedder.convolution.weight",
                "model.backbone.conv_encoder.model.embedder.embedder.normalization.running_var",
                "model.encoder.layers.0.self_attn.out_proj.weight", "model.encoder.layers.0.fc1.weight",
                "model.decoder.layers.0.encoder_attn.q_proj.bias", "model.decoder.layernorm.weight",
                "model.query_position_embeddings.weight", "model.input_projection.weight",
                "class_labels_classifier.weight", "bbox_predictor.layers.2.bias"):
        assert key in names, key
    assert "model.position_embedding.row_embeddings.weight" in load("detr-learned-aux-det").state_dict()


_shared = image_model_tests(GOLDENS, NAMES, DETECTOR, min_trainable=2 * (6 + 10), labels=TWO_TARGETS)
globals().update({k: v for k, v in _shared.items() if k != "test_bfloat16_within_its_rounding"})


# --- DetrForSegmentation ---------------------------------------------------------------------------
SEG = Goldens("detr_segmentation")
SEG_NAMES = sorted(SEG.index()["models"])
SEGMENTER = "detr-tiny-seg"
SEG_OUTPUTS = ("logits", "pred_boxes", "pred_masks", "last_hidden_state", "encoder_last_hidden_state")
SEG_LOSSY = [(n, c) for n in SEG_NAMES for c in SEG.meta(n)["losses"]]


def with_masks(targets: list[dict], size=(32, 32)) -> list[dict]:
    """``targets`` with a mask per box: the box's rectangle at ``size``."""
    out = []
    for t in targets:
        masks = torch.zeros(len(t["boxes"]), *size)
        for j, (cx, cy, w, h) in enumerate(t["boxes"].tolist()):
            masks[j, int((cy - h / 2) * size[0]):int((cy + h / 2) * size[0]),
                  int((cx - w / 2) * size[1]):int((cx + w / 2) * size[1])] = 1
        out.append({**t, "masks": masks})
    return out


def seg_masked(g: dict) -> dict:
    return {"pixel_values": g["input.pixel_values"], "pixel_mask": g["input.pixel_mask"].long()}


def test_the_segmentation_fixtures_are_found():
    assert SEG_NAMES == ["detr-learned-aux-seg", "detr-tiny-seg"] and len(SEG_LOSSY) == 6
    assert all(SEG.meta(n)["class"] == "DetrForSegmentation" for n in SEG_NAMES)


@pytest.mark.parametrize("name", SEG_NAMES)
@pytest.mark.parametrize("tag", ["output", "other"])
def test_segmentation_float32_parity_with_the_reference(name, tag):
    g = SEG.golden(name)
    model = load(name)
    assert isinstance(model, DetrForSegmentation)
    batch = seg_masked(g) if tag == "output" else {"pixel_values": g["input.pixel_values_other"]}
    with torch.no_grad():
        out = model(**batch)
    want = recorded(g, f"{tag}.")
    assert sorted(want) == sorted(SEG_OUTPUTS)
    for key, w in want.items():
        got = getattr(out, key)
        assert got.shape == w.shape, (key, got.shape, w.shape)
        # pred_masks: the fixture's attention-map weights are scaled x100 (golden script), so 1e-5 in float32
        assert (got - w).abs().max() <= (5e-5 if key == "pred_masks" else 1e-5), key
    # the masks are a quarter of the pixels' size (the backbone's first map) and not constant
    assert out.pred_masks.shape[-2:] == tuple(s // 4 for s in batch["pixel_values"].shape[-2:])
    assert out.pred_masks.std() > 0.1


def test_the_padding_reaches_the_masks():
    g = SEG.golden(SEGMENTER)
    model = load(SEGMENTER)
    with torch.no_grad():
        with_mask = model(**seg_masked(g))
        without = model(pixel_values=g["input.pixel_values"])
    for key in ("logits", "pred_masks"):   # the first picture is not padded
        assert torch.equal(getattr(with_mask, key)[0], getattr(without, key)[0]), key
    assert (with_mask.logits[1] - without.logits[1]).abs().max() > 1e-2
    # the random head's masks hardly depend on the attention maps, yet they do
    assert (with_mask.pred_masks[1] - without.pred_masks[1]).abs().max() > 1e-6


@pytest.mark.parametrize("name, case", SEG_LOSSY)
def test_the_segmentation_loss_and_its_mask_parts_match_the_reference(name, case):
    spec = SEG.meta(name)["losses"][case]
    g = SEG.golden(name)
    model = load(name)
    labels = [{k: g[f"case.{case}.{i}.{k}"] for k in ("class_labels", "boxes", "masks")} for i in range(2)]
    with torch.no_grad():
        out = model(**seg_masked(g), labels=labels)   # uint8 masks: read as floats
    assert abs(out.loss.item() - spec["loss"]) <= 1e-4 * max(1.0, spec["loss"])
    assert sorted(out.loss_dict) == sorted(spec["parts"]) and {"loss_mask", "loss_dice"} <= set(spec["parts"])
    for key, want in spec["parts"].items():
        assert abs(out.loss_dict[key].item() - want) <= 1e-5 * max(1.0, abs(want)), key
    assert len(out.auxiliary_outputs or []) == spec["auxiliary_outputs"] == model.config.decoder_layers - 1


def test_the_segmentation_head_trains_and_the_backbone_stays_frozen():
    model = load(SEGMENTER)
    model.train()
    out = model(**example(2, size=(64, 64)), labels=with_masks(TWO_TARGETS, (64, 64)))
    out.loss.backward()
    grads = {n: p.grad for n, p in model.named_parameters() if p.requires_grad}
    assert not any(n.startswith("detr.model.backbone.") for n in grads)
    for prefix in ("mask_head.lay1.", "mask_head.adapter3.", "mask_head.out_lay.", "bbox_attention.q_linear.",
                   "bbox_attention.k_linear.weight", "detr.class_labels_classifier."):
        assert any(n.startswith(prefix) and g is not None and g.abs().sum() > 0 for n, g in grads.items()), prefix


def test_segmentation_bfloat16_within_its_rounding():
    g = SEG.golden(SEGMENTER)
    model = load(SEGMENTER, torch_dtype=torch.bfloat16)
    with torch.no_grad():
        out = model(**seg_masked(g))
    for key, ref_bf16 in recorded(g, "bf16.").items():
        want, got = g[f"output.{key}"], getattr(out, key).float()
        # the reference's own bfloat16 run is 0.31 from float32 on pred_masks (max 2.6: the mask head's
        # amplified weights); ours is as far, and near that run
        assert (got - want).abs().max() <= 0.15 * want.abs().max().item() + 0.02, key
        assert (got - ref_bf16).abs().max() <= 0.03 * want.abs().max().item() + 0.01, key


def test_the_segmentation_auto_classes_and_the_checkpoint_names():
    from pretrained import AutoModelForImageSegmentation, AutoModelForUniversalSegmentation

    folder = FIX / "models" / SEGMENTER
    for auto in (AutoModelForImageSegmentation, AutoModelForUniversalSegmentation):
        assert type(auto.from_pretrained(folder)) is DetrForSegmentation
    names = set(load(SEGMENTER).state_dict())
    for key in ("bbox_attention.q_linear.weight", "bbox_attention.k_linear.bias", "mask_head.lay1.weight",
                "mask_head.gn1.weight", "mask_head.lay5.bias", "mask_head.gn5.bias", "mask_head.adapter1.weight",
                "mask_head.adapter3.bias", "mask_head.out_lay.weight", "detr.class_labels_classifier.weight",
                "detr.model.backbone.conv_encoder.model.embedder.embedder.convolution.weight",
                "detr.model.encoder.layers.0.self_attn.out_proj.weight"):
        assert key in names, key


@pytest.mark.parametrize("bad, words", [
    (dict(backbone_config=BACKBONE), "at least 3 backbone feature maps"),
    (dict(backbone_config={**BACKBONE, "hidden_sizes": [8, 8, 8], "depths": [1, 1, 1],
                           "out_features": ["stage1", "stage2", "stage3"]}, encoder_attention_heads=2), "multiple of 8"),
    (dict(backbone_config={**BACKBONE, "hidden_sizes": [8, 8, 8], "depths": [1, 1, 1],
                           "out_features": ["stage1", "stage2", "stage3"]}, d_model=8, encoder_attention_heads=8,
          decoder_attention_heads=8), "mask-head widths"),
])
def test_a_config_the_mask_head_cannot_take_is_a_named_error(bad, words):
    with pytest.raises(ConfigError, match=words):
        DetrForSegmentation(DetrConfig(**{**SMALL, **bad}))


def test_the_mask_loss_needs_masks():
    model = load(SEGMENTER)
    with pytest.raises(InvalidInputError, match="lacks 'masks'"):
        model(**example(2), labels=TWO_TARGETS)
    bad = with_masks(TWO_TARGETS)
    bad[0]["masks"] = bad[0]["masks"][:1]
    with pytest.raises(InvalidInputError, match="one mask per object"):
        model(**example(2), labels=bad)


_seg_shared = image_model_tests(SEG, SEG_NAMES, SEGMENTER, min_trainable=2 * (6 + 10 + 2),
                                labels=with_masks(TWO_TARGETS))
globals().update({f"{k}_segmentation": v for k, v in _seg_shared.items() if k != "test_bfloat16_within_its_rounding"})
