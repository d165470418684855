"""YOLOS ('yolos') against the goldens scripts/golden_yolos.py recorded from the reference
(tests/fixtures/goldens/yolos/).

Float32 parity on batched pixels (every output and hidden state; at image_size and at another
size, where the position tables are resized), the set loss and each of its parts (Hungarian
matching, an image without boxes), the round trip (the reference reads our save: recorded),
bfloat16, the backend seam, LoRA all-linear, torch.compile, and named errors.
"""

from __future__ import annotations

import math

import pytest
import torch
from image_tester import Goldens, example, image_model_tests, recorded
from tester import FIX, load, names_for

from pretrained import AutoConfig, AutoModel, AutoModelForObjectDetection
from pretrained.errors import ConfigError, InvalidInputError, UnsupportedOptionError
from pretrained.models.yolos import YolosConfig, YolosForObjectDetection, YolosModel

GOLDENS = Goldens("yolos")
meta, golden, index = GOLDENS.meta, GOLDENS.golden, GOLDENS.index
NAMES = names_for("yolos")
DETECTOR = "yolos-tiny-det"
LOSSY = [(n, c) for n in NAMES for c in meta(n)["losses"]]
TWO_TARGETS = [{"class_labels": torch.tensor([1, 2]), "boxes": torch.tensor([[0.3, 0.4, 0.2, 0.3], [0.7, 0.6, 0.1, 0.2]])},
               {"class_labels": torch.tensor([0]), "boxes": torch.tensor([[0.5, 0.5, 0.4, 0.4]])}]


def case_labels(g: dict, case: str) -> list[dict]:
    return [{"class_labels": g[f"case.{case}.{i}.class_labels"], "boxes": g[f"case.{case}.{i}.boxes"]}
            for i in range(2)]


def got_of(out, key: str) -> torch.Tensor:
    return out.hidden_states[int(key[7:])] if key.startswith("hidden.") else getattr(out, key)


def test_the_fixtures_are_found():
    assert NAMES == sorted(index()["models"]) and len(NAMES) == 3
    assert len(LOSSY) == 4


@pytest.mark.parametrize("name", NAMES)
@pytest.mark.parametrize("tag", ["output", "other"])
def test_float32_parity_with_the_reference(name, tag):
    g = golden(name)
    model = load(name)
    assert type(model).__name__ == meta(name)["class"]
    want = recorded(g, f"{tag}.")
    assert sum(k.startswith("hidden.") for k in want) == meta(name)["hidden_states"] == model.config.num_hidden_layers + 1
    x = g["input.pixel_values" if tag == "output" else "input.pixel_values_other"]
    with torch.no_grad():
        out = model(pixel_values=x, output_hidden_states=True)
    for key, w in want.items():
        got = got_of(out, key)
        assert got.shape == w.shape, (key, got.shape, w.shape)
        assert (got - w).abs().max() <= 1e-4, key


@pytest.mark.parametrize("name, case", LOSSY)
def test_the_set_loss_and_its_parts_match_the_reference(name, case):
    spec = meta(name)["losses"][case]
    g = golden(name)
    model = load(name)
    with torch.no_grad():
        out = model(pixel_values=g["input.pixel_values"], labels=case_labels(g, case))
    assert math.isfinite(spec["loss"]) and abs(out.loss.item() - spec["loss"]) <= 1e-4 * max(1.0, spec["loss"])
    assert list(out.loss_dict) == ["loss_ce", "loss_bbox", "loss_giou", "cardinality_error"]   # the reference's order
    assert sorted(out.loss_dict) == sorted(spec["parts"])
    for key, want in spec["parts"].items():
        assert abs(out.loss_dict[key].item() - want) <= 1e-4 * max(1.0, abs(want)), key


def test_training_a_step_moves_every_weight():
    torch.manual_seed(0)
    model = load(DETECTOR)
    model.train()
    model(**example(2), labels=TWO_TARGETS).loss.backward()
    missing = [n for n, p in model.named_parameters() if p.grad is None or not bool(p.grad.abs().sum() > 0)]
    assert not missing


def test_pixel_mask_is_accepted_and_not_read():
    model = load(DETECTOR)
    x = example(2)["pixel_values"]
    with torch.no_grad():
        a = model(pixel_values=x).logits
        b = model(pixel_values=x, pixel_mask=torch.zeros(2, 32, 32, dtype=torch.long)).logits
    assert torch.equal(a, b)


def test_auxiliary_loss_is_refused_with_labels():
    model = load(DETECTOR, auxiliary_loss=True)
    with torch.no_grad():
        assert model(**example(1)).logits.shape == (1, 5, 4)   # inference is unaffected
    with pytest.raises(UnsupportedOptionError, match="auxiliary_loss"):
        model(**example(2), labels=TWO_TARGETS)


@pytest.mark.parametrize("bad, words", [
    ({"class_labels": torch.tensor([0])}, "lacks 'class_labels' or 'boxes'"),
    ({"class_labels": torch.tensor([3]), "boxes": torch.tensor([[0.5, 0.5, 0.1, 0.1]])}, "class id 3, outside"),
    ({"class_labels": torch.tensor([0]), "boxes": torch.tensor([[0.5, 0.5, -0.1, 0.1]])}, "negative width"),
    ({"class_labels": torch.tensor([0, 1]), "boxes": torch.tensor([[0.5, 0.5, 0.1, 0.1]])}, "shape"),
    ({"class_labels": torch.tensor([0.0]), "boxes": torch.tensor([[0.5, 0.5, 0.1, 0.1]])}, "class ids"),
])
def test_bad_labels_are_named_errors(bad, words):
    model = load(DETECTOR)
    with pytest.raises(InvalidInputError, match=words):
        model(**example(2), labels=[TWO_TARGETS[0], bad])
    with pytest.raises(InvalidInputError, match="2 images"):
        model(**example(2), labels=TWO_TARGETS[:1])


@pytest.mark.parametrize("bad, words", [
    (dict(pixel_values=torch.zeros(2, 32, 32, 3)), "channels-last"),
    (dict(pixel_values=torch.zeros(2, 3, 4, 32)), "smaller than one 8x8"),
    (dict(pixel_values=torch.zeros(2, 3, 32, 32, dtype=torch.uint8)), "float pixels"),
])
def test_bad_pixels_are_named_errors(bad, words):
    with pytest.raises(InvalidInputError, match=words):
        load(DETECTOR)(**bad)


@pytest.mark.parametrize("bad, words", [
    (dict(image_size=32), "image_size"),
    (dict(image_size=[32, 0]), "image_size"),
    (dict(num_detection_tokens=0), "num_detection_tokens"),
    (dict(patch_size=64), "smaller than patch_size"),
    (dict(class_cost=0, bbox_cost=0, giou_cost=0), "cannot all be 0"),
    (dict(eos_coefficient=-1.0), "eos_coefficient"),
])
def test_bad_configs_are_named_errors(bad, words):
    with pytest.raises(ConfigError, match=words):
        YolosConfig(**{**dict(hidden_size=8, num_attention_heads=2, image_size=[32, 48], patch_size=8), **bad})


def test_the_auto_classes_and_the_checkpoint_names():
    det = AutoModelForObjectDetection.from_pretrained(FIX / "models" / DETECTOR)
    assert isinstance(det, YolosForObjectDetection) and det.config.id2label[2] == "triangle"
    assert isinstance(AutoModel.from_pretrained(FIX / "models" / "yolos-tiny-model"), YolosModel)
    assert AutoConfig.from_pretrained(FIX / "models" / DETECTOR).model_type == "yolos"
    names = dict(det.named_parameters())
    for key in ("vit.embeddings.cls_token", "vit.embeddings.detection_tokens", "vit.embeddings.position_embeddings",
                "vit.encoder.mid_position_embeddings", "vit.encoder.layer.1.attention.attention.query.weight",
                "class_labels_classifier.layers.2.weight", "bbox_predictor.layers.0.bias"):
        assert key in names, key
    assert not any("mid_position" in k for k, _ in load("yolos-nomid-det").named_parameters())


def test_a_fresh_model_detects_at_any_size():
    cfg = YolosConfig(hidden_size=16, num_hidden_layers=2, num_attention_heads=2, intermediate_size=20,
                      image_size=[32, 48], patch_size=8, num_detection_tokens=3, num_labels=2)
    model = YolosForObjectDetection.from_config(cfg).eval()
    out = model(torch.randn(1, 3, 56, 24))
    assert out.logits.shape == (1, 3, 3) and ((out.pred_boxes > 0) & (out.pred_boxes < 1)).all()


globals().update(image_model_tests(GOLDENS, NAMES, DETECTOR, min_trainable=2 * (2 * 6 + 6), labels=TWO_TARGETS))
