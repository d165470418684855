"""The shapes segmenter trained here (examples/train_segmenter.py: a small SegFormer trained from
scratch on skimage.draw.random_shapes pictures; cached under
~/.cache/pretrained/trained/shapes-segformer, not committed), run as a user would through
``pipeline("image-segmentation")``: on the held-out pictures saved as PNG files next to it, and
on the whole held-out split rebuilt from its seeds, at least the mean IoU its training run
recorded (results.json) less a small margin. Where the model has not been trained on this
machine the tests say how to make it.
"""

from __future__ import annotations

import json
import sys
from pathlib import Path

import numpy as np
import pytest

from pretrained.io.paths import cache_home

FOLDER = cache_home() / "pretrained" / "trained" / "shapes-segformer"
EXAMPLES = Path(__file__).resolve().parent.parent / "examples"
LABELS = ["background", "rectangle", "circle", "triangle", "ellipse"]


@pytest.fixture(scope="module")
def example():
    pytest.importorskip("skimage")
    sys.path.insert(0, str(EXAMPLES))
    try:
        import train_segmenter
    finally:
        sys.path.remove(str(EXAMPLES))
    return train_segmenter


@pytest.fixture(scope="module")
def trained():
    needed = ("results.json", "model.safetensors", "preprocessor_config.json", "held_out/labels.json")
    if not all((FOLDER / n).is_file() for n in needed):
        pytest.skip(f"no trained shapes segmenter in {FOLDER}: run `python examples/train_segmenter.py` "
                    "(a few minutes; needs scikit-image) to train and cache it")
    from pretrained import pipeline

    return json.loads((FOLDER / "results.json").read_text()), pipeline("image-segmentation", model=str(FOLDER))


@pytest.mark.slow
def test_held_out_png_files_are_segmented_as_well_as_recorded(trained, example):
    from PIL import Image

    results, seg = trained
    files = json.loads((FOLDER / "held_out" / "labels.json").read_text())
    assert len(files) == results["held_out_files"] >= 12
    paths = [str(FOLDER / "held_out" / name) for name in files]
    truth = [np.asarray(Image.open(p.replace(".png", "_labels.png"))) for p in paths]
    assert all(set(LABELS[i] for i in np.unique(t)) == set(files[Path(p).name]) for t, p in zip(truth, paths))
    got = example.mean_iou(example.pipeline_maps(seg, paths, batch_size=4), truth, len(LABELS))
    assert got["mean_iou"] >= results["held_out_files_mean_iou"] - 0.02, (got, results["held_out_files_mean_iou"])
    one = seg(paths[0], subtask="semantic")
    assert all(a["score"] is None and a["mask"].mode == "L" and a["mask"].size == (64, 64) for a in one)
    assert {a["label"] for a in one} <= set(LABELS)


@pytest.mark.slow
def test_the_whole_held_out_split_is_segmented_as_well_as_recorded(trained, example):
    from PIL import Image

    results, seg = trained
    test = example.make_split("test", results["test_images"])
    assert test["seeds"] == results["test_seeds"]   # the pictures the model never trained on
    maps = example.pipeline_maps(seg, [Image.fromarray(im) for im in test["images"]])
    got = example.mean_iou(maps, test["maps"], len(LABELS))
    assert got["mean_iou"] >= results["test_mean_iou_pipeline"] - 0.01, (got, results["test_mean_iou_pipeline"])
    assert got["mean_iou"] >= 0.5 and got["per_class_iou"][0] >= 0.95   # before training: 0.03
    assert got["mean_iou"] > results["test_mean_iou_before"] + 0.3
