"""The DETR / YOLOS image processors, post-processing and our Hungarian assignment against the
reference (scripts/golden_detection.py: the reference's PIL processors on real pictures with COCO
annotations, its post_process_object_detection, scipy's linear_sum_assignment), and their errors."""

from __future__ import annotations

import json
from pathlib import Path

import numpy as np
import pytest
import torch
from PIL import Image

from pretrained.errors import ConfigError, InvalidInputError, UnsupportedOptionError
from pretrained.layers.detection import linear_sum_assignment
from pretrained.processing import AutoImageProcessor, DetrImageProcessor, YolosImageProcessor
from pretrained.processing.detection import detr_resize_size, post_process_object_detection, yolos_resize_size

FIX = Path(__file__).resolve().parent / "fixtures"
GOLD = FIX / "goldens" / "detection"
CASES = json.loads((GOLD / "processors.json").read_text())
ARRAYS = np.load(GOLD / "processors.npz")
CLASSES = {"DetrImageProcessor": DetrImageProcessor, "YolosImageProcessor": YolosImageProcessor}


def pictures(names):
    return [Image.open(FIX / "images" / n).convert("RGB") for n in names]


def as_array(value) -> np.ndarray:
    return value.numpy() if isinstance(value, torch.Tensor) else np.asarray(value)


@pytest.mark.parametrize("case", sorted(CASES))
def test_pixels_masks_and_labels_equal_the_references(case):
    spec = CASES[case]
    proc = CLASSES[spec["class"]](**spec["init"])
    out = proc(pictures(spec["pictures"]), annotations=spec["annotations"], **spec["call"])
    kind = spec["call"].get("return_tensors")
    for key in ("pixel_values", "pixel_mask"):
        if f"{case}.{key}" in ARRAYS:
            got = out[key]
            assert isinstance(got, torch.Tensor if kind == "pt" else np.ndarray), key
            want = ARRAYS[f"{case}.{key}"]
            assert got.shape == want.shape and as_array(got).dtype == want.dtype, key
            assert np.abs(as_array(got).astype(np.float64) - want).max() <= 1e-5, key
        elif f"{key}_shapes" in spec:
            assert isinstance(out[key], list) and [list(v.shape) for v in out[key]] == spec[f"{key}_shapes"]
            for i, v in enumerate(out[key]):
                assert np.abs(v.astype(np.float64) - ARRAYS[f"{case}.{key}.{i}"]).max() <= 1e-5
        else:
            assert key not in out
    if "labels" not in spec:
        assert "labels" not in out
        return
    assert len(out["labels"]) == len(spec["labels"])
    for got, want in zip(out["labels"], spec["labels"]):
        assert list(got) == list(want)   # the reference's keys, in its order
        for key, value in want.items():
            g = got[key]
            if kind == "pt":
                assert isinstance(g, torch.Tensor), key
            a = np.asarray(as_array(g) if not isinstance(g, tuple) else list(g), dtype=np.float64)
            b = np.asarray(value, dtype=np.float64)
            assert a.shape == b.shape and np.abs(a - b).max(initial=0) <= 1e-5, key


@pytest.mark.parametrize("cls", sorted(CLASSES))
def test_the_saved_config_is_the_references(cls, tmp_path):
    want = json.loads((GOLD / "configs" / cls / "preprocessor_config.json").read_text())
    CLASSES[cls](size={"shortest_edge": 40, "longest_edge": 64}).save_pretrained(tmp_path)
    assert json.loads((tmp_path / "preprocessor_config.json").read_text()) == want
    back = AutoImageProcessor.from_pretrained(GOLD / "configs" / cls)
    assert type(back) is CLASSES[cls] and back.size == {"shortest_edge": 40, "longest_edge": 64}


def test_older_configs_size_and_max_size():
    proc = DetrImageProcessor.from_dict({"size": 800, "max_size": 1333, "feature_extractor_type": "DetrFeatureExtractor",
                                         "pad_and_return_pixel_mask": False})
    assert proc.size == {"shortest_edge": 800, "longest_edge": 1333} and proc.do_pad is False
    assert "max_size" not in proc.to_dict()
    assert DetrImageProcessor(size=600).size == {"shortest_edge": 600, "longest_edge": 1333}
    assert DetrImageProcessor(do_normalize=False).do_convert_annotations is False


@pytest.mark.parametrize("hw, size, max_size, detr, yolos", [
    ((480, 640), 800, 1333, (800, 1066), (800, 1056)),
    ((640, 480), 800, 1333, (1066, 800), (1056, 800)),
    ((100, 1000), 800, 1333, (133, 1333), (128, 1328)),
    ((800, 1200), 800, 1333, (800, 1200), (800, 1200)),
    ((30, 50), 40, 64, (38, 64), (32, 64)),
])
def test_the_resize_rules(hw, size, max_size, detr, yolos):
    assert detr_resize_size(hw, size, max_size) == detr   # worked by hand from the rules in the docs
    assert yolos_resize_size(hw, size, max_size) == yolos


def test_post_processing_equals_the_references():
    spec = json.loads((GOLD / "postprocess.json").read_text())
    outputs = {"logits": torch.tensor(spec["logits"]), "pred_boxes": torch.tensor(spec["pred_boxes"])}
    for name, case in spec["cases"].items():
        kw = dict(case["kwargs"])
        if name == "tensor_sizes":
            kw["target_sizes"] = torch.tensor(kw["target_sizes"])
        elif "target_sizes" in kw:
            kw["target_sizes"] = [tuple(s) for s in kw["target_sizes"]]
        got = DetrImageProcessor().post_process_object_detection(outputs, **kw)
        assert len(got) == len(case["results"])
        for g, w in zip(got, case["results"]):
            assert g["labels"].tolist() == w["labels"]
            assert g["scores"].tolist() == pytest.approx(w["scores"], abs=1e-6)
            assert np.abs(g["boxes"].numpy() - np.asarray(w["boxes"]).reshape(-1, 4)).max(initial=0) <= 1e-4
    with pytest.raises(InvalidInputError, match="target sizes"):
        post_process_object_detection(outputs, target_sizes=[(1, 2)])


def test_our_assignment_is_scipys():
    for case in json.loads((GOLD / "assignment.json").read_text()):
        cost = np.asarray(case["cost"], dtype=np.float64).reshape(case["shape"])
        rows, cols = linear_sum_assignment(cost)
        assert rows.tolist() == case["rows"] and cols.tolist() == case["cols"], case["shape"]
        assert cost[rows, cols].sum() == pytest.approx(case["total"])


def test_the_assignment_by_hand():
    cost = np.array([[4.0, 1.0, 3.0], [2.0, 0.0, 5.0], [3.0, 2.0, 2.0]])
    rows, cols = linear_sum_assignment(cost)   # 1 + 2 + 2 = 5 is the least of the six permutations
    assert rows.tolist() == [0, 1, 2] and cols.tolist() == [1, 0, 2]
    rows, cols = linear_sum_assignment(np.array([[10.0, 1.0], [1.0, 10.0], [0.0, 0.5]]))   # 3 rows, 2 cols
    assert rows.tolist() == [0, 2] and cols.tolist() == [1, 0]   # 1 + 0 beats 1 + 0.5 and 1 + 1
    with pytest.raises(InvalidInputError, match="NaN"):
        linear_sum_assignment(np.array([[np.nan]]))


def test_errors_name_the_fix():
    proc = DetrImageProcessor(size={"shortest_edge": 32, "longest_edge": 48})
    img = np.zeros((40, 60, 3), np.uint8)
    with pytest.raises(UnsupportedOptionError, match="panoptic"):
        proc(img, annotations={"image_id": 1, "annotations": []}, format="coco_panoptic")
    with pytest.raises(UnsupportedOptionError, match="segmentation masks"):
        proc(img, annotations={"image_id": 1, "annotations": []}, return_segmentation_masks=True)
    with pytest.raises(UnsupportedOptionError, match="keypoints"):
        proc(img, annotations={"image_id": 1, "annotations": [{"bbox": [0, 0, 2, 2], "category_id": 1, "area": 4,
                                                              "keypoints": [1, 2, 2]}]})
    with pytest.raises(InvalidInputError, match="2 annotations for 1 pictures"):
        proc(img, annotations=[{"image_id": 1, "annotations": []}] * 2)
    with pytest.raises(InvalidInputError, match="needs 'bbox'"):
        proc(img, annotations={"image_id": 1, "annotations": [{"bbox": [0, 0, 1, 1]}]})
    with pytest.raises(InvalidInputError, match="not a COCO detection target"):
        proc(img, annotations={"annotations": []})
    with pytest.raises(InvalidInputError, match="shortest_edge and longest_edge"):
        proc(img, size={"shortest_edge": 32})
    with pytest.raises(InvalidInputError, match="different shapes"):
        proc([img, np.zeros((60, 40, 3), np.uint8)], do_pad=False, return_tensors="pt")
    with pytest.raises(InvalidInputError, match="larger than pad_size"):
        proc(img, pad_size={"height": 8, "width": 8})
    with pytest.raises(ConfigError, match="format"):
        DetrImageProcessor(format="voc")
    with pytest.raises(InvalidInputError, match="unexpected keyword"):
        proc(img, sizes=3)
