"""DeiT ('deit') against the goldens scripts/golden_vit.py recorded from the reference: ViT's
tests (test_vit.family_tests: parity incl. interpolated positions, losses, round trip, bfloat16,
backend seam, LoRA, torch.compile, pixel errors) on DeiT's fixtures, and what is DeiT's own: the
distillation token and the distilled head (DeiTForImageClassificationWithTeacher)."""

from __future__ import annotations

import copy

import pytest
import torch
from test_vit import example, family_tests, golden, index, meta, run
from tester import FIX, fixtures, load, names_for

from pretrained import AutoConfig, AutoModelForImageClassification
from pretrained.backends import plain
from pretrained.models.deit import (DeiTConfig, DeiTForImageClassification,
                                    DeiTForImageClassificationWithTeacher, DeiTModel)
from pretrained.models.vit import ViTConfig

globals().update(family_tests("deit", "deit-tiny-imgcls"))

TEACHER = "deit-tiny-teacher"


def test_the_deit_fixtures():
    assert names_for("deit") == sorted(n for n in index()["models"] if n.startswith("deit-"))
    assert {fixtures()[n]["class"] for n in names_for("deit")} == {
        "DeiTModel", "DeiTForImageClassification", "DeiTForImageClassificationWithTeacher"}


def test_the_distilled_head_gives_the_reference_cls_and_distillation_logits():
    g = golden(TEACHER)
    model = load(TEACHER)
    assert type(model) is DeiTForImageClassificationWithTeacher
    with torch.no_grad():
        out = model(pixel_values=g["input.pixel_values"])
    for key in ("logits", "cls_logits", "distillation_logits"):
        assert (getattr(out, key) - g[f"output.{key}"]).abs().max() <= 1e-4, key
    assert (g["output.cls_logits"] - g["output.distillation_logits"]).abs().max() > 1e-2   # two heads
    assert out.to_tuple()[0] is out.logits and out["distillation_logits"] is out.distillation_logits


def test_the_distilled_head_on_the_fast_paths_and_compiled():
    model = load(TEACHER)
    reference = copy.deepcopy(model)
    assert plain(reference) > 0
    for rows in (1, 2, 1):
        batch = example(rows)
        assert (run(model, batch) - run(reference, batch)).abs().max() <= 1e-5
    torch._dynamo.reset()
    assert (run(torch.compile(model), example(2)) - run(reference, example(2))).abs().max() <= 1e-5


def test_the_distilled_head_takes_no_labels():
    with pytest.raises(TypeError):
        load(TEACHER)(**example(2), labels=torch.tensor([0, 1]))


def test_the_distillation_token_is_the_second_token():
    model = load("deit-tiny-model")
    assert type(model) is DeiTModel and type(model.config) is DeiTConfig
    with torch.no_grad():
        out = model(**example(2))
    assert out.last_hidden_state.shape == (2, 2 + 16, 32)
    assert model.embeddings.position_embeddings.shape == (1, 2 + 16, 32)
    names = dict(load(TEACHER).named_parameters())
    for key in ("deit.embeddings.cls_token", "deit.embeddings.distillation_token",
                "deit.embeddings.patch_embeddings.projection.weight",
                "deit.encoder.layer.1.attention.attention.query.weight", "deit.layernorm.weight",
                "cls_classifier.weight", "distillation_classifier.bias"):
        assert key in names, key
    assert "pooler.dense.weight" in dict(model.named_parameters())


def test_the_config_is_vits_under_its_own_type():
    cfg = AutoConfig.from_pretrained(FIX / "models" / TEACHER)
    assert type(cfg) is DeiTConfig and isinstance(cfg, ViTConfig) and cfg.model_type == "deit"
    assert DeiTConfig().pooler_output_size == 768 and DeiTConfig().image_size == 224


def test_the_auto_class_loads_the_plain_head_from_a_distilled_checkpoint():
    # the reference's AutoModelForImageClassification maps deit to DeiTForImageClassification too
    model = AutoModelForImageClassification.from_pretrained(FIX / "models" / "deit-tiny-imgcls")
    assert type(model) is DeiTForImageClassification
    assert meta(TEACHER)["head"] == "teacher"
