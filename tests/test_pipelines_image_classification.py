"""The image-classification pipeline against the reference 5.x's outputs on a tiny ViT classifier
with named labels, over real pictures (scripts/golden_image_classification.py), and its errors."""

from __future__ import annotations

import json
from pathlib import Path

import pytest

from pretrained import pipeline
from pretrained.errors import InvalidInputError

FIX = Path(__file__).resolve().parent / "fixtures"
GOLDEN = json.loads((FIX / "goldens" / "image_classification.json").read_text())
MODEL = FIX / "models" / "vit-imgcls-pipeline"
IMAGES = [str(FIX / "images" / f) for f in GOLDEN["images"]]


@pytest.fixture(scope="module")
def clf():
    return pipeline("image-classification", model=str(MODEL))


def _same(got, want):
    assert [g["label"] for g in got] == [w["label"] for w in want]
    assert [g["score"] for g in got] == pytest.approx([w["score"] for w in want], abs=1e-4)


@pytest.mark.parametrize("case", sorted(GOLDEN["cases"]))
def test_labels_and_scores_equal_the_references_on_real_pictures(clf, case):
    spec = GOLDEN["cases"][case]
    for path, want in zip(IMAGES, spec["output"]):
        _same(clf(path, **spec["kwargs"]), want)


def test_a_pil_image_and_a_batch(clf):
    from PIL import Image

    _same(clf(Image.open(IMAGES[0])), GOLDEN["pil_chelsea"])
    got = clf(IMAGES, batch_size=2, top_k=1)
    assert len(got) == len(GOLDEN["batch"])
    for g, w in zip(got, GOLDEN["batch"]):
        _same(g, w)


def test_the_task_is_read_from_the_checkpoint():
    assert pipeline(model=str(MODEL)).task == "image-classification"


def test_errors_name_the_fix(clf, tmp_path):
    with pytest.raises(InvalidInputError, match="top_k"):
        clf(IMAGES[0], top_k=0)
    with pytest.raises(InvalidInputError, match="function_to_apply"):
        clf(IMAGES[0], function_to_apply="relu")
    bad = tmp_path / "not_a_picture.png"
    bad.write_bytes(b"hello")
    with pytest.raises(InvalidInputError):
        clf(str(bad))
    with pytest.raises(InvalidInputError):
        clf("https://example.com/cat.png")
