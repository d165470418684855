"""The image-classification pipeline against the reference 5.x's outputs on a tiny ViT classifier
with named labels, over real pictures (scripts/golden_image_classification.py), and its errors."""

from __future__ import annotations

import json
from pathlib import Path

import pytest

from pretrained import pipeline
from pretrained.errors import ImageDecodeError, ImageFileNotFoundError, ImageTooLargeError, InvalidInputError

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


def _bad_inputs(tmp_path):
    """The issue's bad pictures, as a user hands them to the pipeline."""
    import numpy as np
    import torch
    from PIL import Image

    rocket = Path(IMAGES[0]).read_bytes()
    (tmp_path / "truncated.png").write_bytes(rocket[: len(rocket) // 2])
    (tmp_path / "report.jpg").write_bytes(b"%PDF-1.4 not a picture")
    (tmp_path / "empty.png").write_bytes(b"")
    return {
        "truncated file": (str(tmp_path / "truncated.png"), ImageDecodeError, "corrupt or truncated"),
        "truncated bytes": (rocket[:3000], ImageDecodeError, "corrupt or truncated"),
        "non-image file": (str(tmp_path / "report.jpg"), ImageDecodeError, "not an image Pillow can read"),
        "empty file": (str(tmp_path / "empty.png"), ImageDecodeError, "empty"),
        "missing file": (str(tmp_path / "nope.png"), ImageFileNotFoundError, "no such image file"),
        "0x0 image": (Image.new("RGB", (0, 0)), ImageDecodeError, "no pixels"),
        "0x0 array": (np.zeros((0, 0, 3), np.uint8), ImageDecodeError, "no pixels"),
        "2 channels": (np.zeros((8, 8, 2), np.uint8), InvalidInputError, "channels"),
        "5 channels": (torch.zeros(5, 8, 8), InvalidInputError, "channels"),
        "NaN pixels": (np.full((8, 8, 3), np.nan, np.float32), InvalidInputError, "NaN"),
        "URL": ("https://example.com/cat.png", InvalidInputError, "URL.*download it first"),
    }


@pytest.mark.parametrize("case", ["truncated file", "truncated bytes", "non-image file", "empty file", "missing file",
                                  "0x0 image", "0x0 array", "2 channels", "5 channels", "NaN pixels", "URL"])
def test_bad_pictures_are_named_errors(clf, tmp_path, case):
    picture, error, words = _bad_inputs(tmp_path)[case]
    with pytest.raises(error, match=words):
        clf(picture)
    with pytest.raises(error, match=words):   # one bad picture in a batch: the batch fails, named
        clf([IMAGES[0], picture], batch_size=2)


def test_a_decompression_bomb_names_pillows_limit(clf, tmp_path, monkeypatch):
    from PIL import Image

    Image.new("L", (100, 100)).save(tmp_path / "bomb.png")
    monkeypatch.setattr(Image, "MAX_IMAGE_PIXELS", 1000)   # 10,000 pixels > 2 x 1000: refused
    with pytest.raises(ImageTooLargeError, match=r"PIL.Image.MAX_IMAGE_PIXELS = 1000"):
        clf(str(tmp_path / "bomb.png"))
