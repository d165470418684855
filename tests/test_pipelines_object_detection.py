"""The object-detection pipeline against the reference 5.x's outputs on tiny random detectors over
real pictures (scripts/golden_detection.py): labels, scores to 1e-4, boxes in pixels; lists,
batches, PIL images, arrays, and its errors."""

from __future__ import annotations

import json
from pathlib import Path

import numpy as np
import pytest

from pretrained import pipeline
from pretrained.errors import InvalidInputError

FIX = Path(__file__).resolve().parent / "fixtures"
GOLDEN = json.loads((FIX / "goldens" / "object_detection.json").read_text())
IMAGES = [str(FIX / "images" / f) for f in GOLDEN["images"]]
MODELS = sorted(GOLDEN["models"])


@pytest.fixture(scope="module", params=MODELS)
def det(request):
    return request.param, pipeline("object-detection", model=str(FIX / "models" / request.param))


def _same(got: list[dict], want: list[dict]) -> None:
    assert [g["label"] for g in got] == [w["label"] for w in want]
    assert [g["score"] for g in got] == pytest.approx([w["score"] for w in want], abs=1e-4)
    for g, w in zip(got, want):
        assert set(g["box"]) == {"xmin", "ymin", "xmax", "ymax"} and all(isinstance(v, int) for v in g["box"].values())
        assert all(abs(g["box"][k] - w["box"][k]) <= 0.5 for k in w["box"]), (g["box"], w["box"])


def test_the_goldens_hold_boxes():
    for name in MODELS:
        assert sum(len(found) for found in GOLDEN["models"][name]["0.3"]) >= 5


@pytest.mark.parametrize("threshold", ["0.3", "0.5"])
def test_boxes_labels_and_scores_equal_the_references_on_real_pictures(det, threshold):
    name, pipe = det
    for path, want in zip(IMAGES, GOLDEN["models"][name][threshold]):
        _same(pipe(path, threshold=float(threshold)), want)


def test_a_pil_image_an_array_the_default_threshold_and_batches(det):
    from PIL import Image

    name, pipe = det
    cases = GOLDEN["models"][name]
    _same(pipe(Image.open(IMAGES[0]), threshold=0.3), cases["pil_chelsea"])
    _same(pipe(np.asarray(Image.open(IMAGES[0]).convert("RGB")), threshold=0.3), cases["pil_chelsea"])
    _same(pipe(IMAGES[0]), cases["default_threshold"])
    for batch_size in (1, 2, 5):
        got = pipe(IMAGES, threshold=0.3, batch_size=batch_size)
        assert len(got) == len(IMAGES)
        for g, w in zip(got, cases["0.3"]):
            _same(g, w)


def test_same_sized_pictures_share_a_batch(det):
    from PIL import Image

    _, pipe = det
    calls = []
    forward = pipe.model.forward

    def counting(*args, **kwargs):
        calls.append(kwargs["pixel_values"].shape[0])
        return forward(*args, **kwargs)

    pictures = [IMAGES[0], IMAGES[0], IMAGES[1], IMAGES[3], IMAGES[3]]
    shapes = [tuple(pipe.image_processor(Image.open(p).convert("RGB"), return_tensors="pt")["pixel_values"].shape)
              for p in pictures]
    runs = [1]
    for before, now in zip(shapes, shapes[1:]):
        if now == before:
            runs[-1] += 1
        else:
            runs.append(1)
    assert len(runs) >= 2 and max(runs) >= 2
    pipe.model.forward = counting
    try:
        got = pipe(pictures, batch_size=4, threshold=0.3)
    finally:
        del pipe.model.forward
    assert calls == runs
    assert got[0] == got[1]


def test_the_task_is_read_from_the_checkpoint():
    assert pipeline(model=str(FIX / "models" / MODELS[0])).task == "object-detection"


def test_errors_name_the_fix(det, tmp_path):
    _, pipe = det
    with pytest.raises(InvalidInputError, match="threshold"):
        pipe(IMAGES[0], threshold=1.5)
    with pytest.raises(InvalidInputError, match="threshold"):
        pipe(IMAGES[0], threshold="high")
    bad = tmp_path / "not_a_picture.png"
    bad.write_bytes(b"hello")
    with pytest.raises(InvalidInputError):
        pipe(str(bad))
    with pytest.raises(InvalidInputError, match="URL"):
        pipe("https://example.com/cat.png")
    with pytest.raises(InvalidInputError, match="object-detection"):
        pipeline("object-detection", model=str(FIX / "models" / "vit-imgcls-pipeline"))
