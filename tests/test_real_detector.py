"""The shapes detector trained here (examples/train_detector.py: a small DETR (its ResNet pretrained here first) trained on
scikit-image's random shapes; cached under ~/.cache/pretrained/trained/shapes-detr, not committed),
run as a user would through ``pipeline("object-detection")`` on the held-out pictures saved as PNG
files next to it and on the whole held-out set rebuilt from its seeds: mAP@0.5 at least what its
training run recorded (results.json) less a small margin. Where it has not been trained on this
machine the tests say how to make it. The mAP function itself is checked on a case worked by hand.
"""

from __future__ import annotations

import importlib.util
import json
from pathlib import Path

import pytest

from pretrained.io.paths import cache_home

FOLDER = cache_home() / "pretrained" / "trained" / "shapes-detr"
EXAMPLE = Path(__file__).resolve().parent.parent / "examples" / "train_detector.py"


def example():
    spec = importlib.util.spec_from_file_location("train_detector", EXAMPLE)
    module = importlib.util.module_from_spec(spec)
    spec.loader.exec_module(module)
    return module


def test_the_map_function_on_a_case_worked_by_hand():
    ex = example()
    truths = [[(0, [0, 0, 10, 10]), (0, [20, 20, 30, 30])], [(0, [0, 0, 10, 10]), (1, [5, 5, 15, 15])]]
    detections = [
        [{"label": 0, "score": 0.9, "box": [0, 0, 10, 10]},      # hit (IoU 1)
         {"label": 0, "score": 0.8, "box": [0, 0, 10, 10]},      # the same box again: a false positive
         {"label": 0, "score": 0.3, "box": [20, 20, 30, 32]}],   # IoU 100/120: a hit
        [{"label": 0, "score": 0.6, "box": [0, 0, 10, 20]},      # IoU 0.5 exactly: a hit
         {"label": 1, "score": 0.7, "box": [10, 10, 20, 20]}],   # IoU 25/175: a miss
    ]
    value, per_class = ex.mean_average_precision(detections, truths, classes=3)
    # class 0, ranked 0.9 hit, 0.8 miss, 0.6 hit, 0.3 hit of 3 boxes: recall 1/3, 1/3, 2/3, 1;
    # precision 1, 1/2, 2/3, 3/4 -> monotone 1, 3/4, 3/4, 3/4: AP = 1/3 * 1 + 1/3 * 3/4 + 1/3 * 3/4 = 5/6
    assert per_class[0] == pytest.approx(5 / 6)
    assert per_class[1] == 0.0 and per_class[2] == 0.0   # class 2 has no boxes: left out of the mean
    assert value == pytest.approx((5 / 6 + 0.0) / 2)
    assert ex.box_iou([0, 0, 10, 10], [5, 0, 15, 10]) == pytest.approx(50 / 150)
    assert ex.average_precision([], [], 0) == 0.0 and ex.average_precision([0.5], [False], 2) == 0.0


@pytest.fixture(scope="module")
def trained():
    needed = ("results.json", "model.safetensors", "preprocessor_config.json", "held_out/boxes.json")
    if not all((FOLDER / n).is_file() for n in needed):
        pytest.skip(f"no trained shapes detector in {FOLDER}: run `python examples/train_detector.py` (about 25 "
                    "minutes; needs scikit-image) to train and cache it")
    return json.loads((FOLDER / "results.json").read_text())


@pytest.mark.slow
def test_the_pipeline_finds_the_shapes_in_the_held_out_files(trained):
    ex = example()
    from PIL import Image

    boxes = json.loads((FOLDER / "held_out" / "boxes.json").read_text())
    files = sorted(boxes)
    test = [(__import__("numpy").asarray(Image.open(FOLDER / "held_out" / f)),
             [(ex.SHAPES.index(b["label"]), [b["box"][0], b["box"][1], b["box"][2] - b["box"][0],
                                             b["box"][3] - b["box"][1]]) for b in boxes[f]]) for f in files]
    got = ex.evaluate(FOLDER, test)
    assert got["map50"] >= trained["files_map50"] - 0.02


@pytest.mark.slow
def test_held_out_map_is_what_training_recorded(trained):
    ex = example()
    test = ex.dataset(ex.TEST_SEED0, trained["pictures"])
    got = ex.evaluate(FOLDER, test)
    assert got["map50"] >= trained["map50"] - 0.01 and got["map50"] >= 0.5
