"""The image-segmentation pipeline with DETR's segmentation head (DetrForSegmentation) against the
reference 5.x's answers on a tiny random checkpoint (ResNet backbone, four named labels) over the
bundled real pictures (scripts/golden_detr_segmentation.py, the json's "pipeline"): the semantic,
instance and panoptic subtasks, thresholds and the default (panoptic at 0.9): every answer's
label, score (1e-4) and mask (mode L, the picture's size, the same pixels: md5 of its bytes);
lists in batches give the same."""

from __future__ import annotations

import hashlib
import json
from pathlib import Path

import numpy as np
import pytest

from pretrained import pipeline
from pretrained.models.detr import DetrForSegmentation
from pretrained.pipelines.image_segmentation import ImageSegmentationPipeline
from pretrained.processing import DetrImageProcessor

FIX = Path(__file__).resolve().parent / "fixtures"
_KERNELS = __import__("pretrained.backends.build", fromlist=["available"]).available()
GOLDEN = json.loads((FIX / "goldens" / "detr_segmentation" / "detr_segmentation.json").read_text())["pipeline"]
IMAGES = [str(FIX / "images" / name) for name in GOLDEN["images"]]


@pytest.fixture(scope="module")
def seg():
    return pipeline("image-segmentation", model=str(FIX / "models" / GOLDEN["model"]))


def _same(got: list[dict], want: list[dict]) -> None:
    assert [a["label"] for a in got] == [w["label"] for w in want]
    for a, w in zip(got, want):
        if w["score"] is None:
            assert a["score"] is None
        else:
            assert abs(a["score"] - w["score"]) <= 1e-4
        array = np.asarray(a["mask"])
        assert a["mask"].mode == w["mask"]["mode"] == "L" and list(a["mask"].size) == w["mask"]["size"]
        if _KERNELS:
            assert int((array == 255).sum()) == w["mask"]["inside"]
            assert hashlib.md5(array.tobytes()).hexdigest() == w["mask"]["md5"]
        else:   # PRETRAINED_NO_KERNELS=1: float sums in another order; a pixel at the threshold may flip
            assert abs(int((array == 255).sum()) - w["mask"]["inside"]) <= array.size // 10000


def test_the_pipeline_runs_detr_segmentation(seg):
    assert isinstance(seg.model, DetrForSegmentation)
    assert isinstance(seg.image_processor, DetrImageProcessor)
    assert seg.available_subtasks() == ["panoptic", "instance", "semantic"]
    auto = pipeline(model=str(FIX / "models" / GOLDEN["model"]))   # the task read from the checkpoint
    assert isinstance(auto, ImageSegmentationPipeline) and isinstance(auto.model, DetrForSegmentation)


@pytest.mark.parametrize("case", sorted(GOLDEN["cases"]))
def test_answers_equal_the_references_on_real_pictures(seg, case):
    spec = GOLDEN["cases"][case]
    for path, want in zip(IMAGES, spec["answers"]):
        _same(seg(path, **spec["kwargs"]), want)


def test_the_goldens_are_not_trivial():
    cases = GOLDEN["cases"]
    assert sum(len(per) for per in cases["instance"]["answers"]) >= 8
    assert sum(len(per) for per in cases["panoptic"]["answers"]) >= 8
    assert len({a["label"] for per in cases["instance_all"]["answers"] for a in per}) >= 2
    assert all(a["score"] is None for per in cases["semantic"]["answers"] for a in per)


def test_a_batch_gives_the_same_answers(seg):
    spec = GOLDEN["cases"]["panoptic"]
    got = seg(IMAGES[:3], batch_size=2, **spec["kwargs"])
    assert len(got) == 3
    for answers, want in zip(got, spec["answers"]):
        _same(answers, want)
