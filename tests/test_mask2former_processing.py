"""Mask2FormerImageProcessor against the reference's Mask2FormerImageProcessorPil (goldens from
scripts/golden_mask2former.py, tests/fixtures/goldens/mask2former/processor.safetensors):
preprocessing of real pictures (shortest/longest edge, max_size, height/width, max_height/width,
size_divisor, padding to the batch or to pad_size with pixel_mask; segmentation maps to binary
mask labels and class labels, reduce_labels, instance ids), the saved config, and the three
post-processing methods on recorded model-like outputs (semantic maps and scores, instances with
their scores, binary maps and run-length encodings, panoptic segments with fusion and the
reference's segment ids).
"""

from __future__ import annotations

import hashlib
import json
from functools import lru_cache
from pathlib import Path

import numpy as np
import pytest
import torch
from PIL import Image
from safetensors.torch import load_file

from pretrained.errors import InvalidInputError, UnsupportedOptionError
from pretrained.processing import AutoImageProcessor
from pretrained.processing.mask2former import Mask2FormerImageProcessor, mask_to_rle, size_with_aspect_ratio

FIX = Path(__file__).resolve().parent / "fixtures"
GOLDENS = FIX / "goldens" / "mask2former"


@lru_cache(maxsize=None)
def meta() -> dict:
    return json.loads((GOLDENS / "mask2former.json").read_text())["processor"]


@lru_cache(maxsize=None)
def golden() -> dict[str, torch.Tensor]:
    return load_file(str(GOLDENS / "processor.safetensors"))


def pictures() -> list:
    pics = [Image.open(FIX / "images" / name).convert("RGB") for name in meta()["pictures"]]
    pics[1] = pics[1].transpose(Image.Transpose.ROTATE_90)
    return pics


def segmentation_map(picture, kind: str) -> np.ndarray:
    grey = np.asarray(picture.convert("L"), dtype=np.int64)
    bands = np.digitize(grey, [60, 110, 170]).astype(np.uint8)
    if kind == "instance":
        bands = bands + 1
        bands[: grey.shape[0] // 5, : grey.shape[1] // 5] = 5
    return bands


@pytest.mark.parametrize("name", sorted(meta()["cases"]))
def test_preprocessing_equals_the_reference(name):
    case, g = meta()["cases"][name], golden()
    proc = Mask2FormerImageProcessor(**case["init"])
    pics = pictures()
    kw = dict(case["call"])
    if case["maps"] is not None:
        kw["segmentation_maps"] = [segmentation_map(pics[i], case["maps"]) for i in case["pictures"]]
        if case["maps"] == "instance":
            kw["instance_id_to_semantic_id"] = {int(k): v for k, v in meta()["instance_to_class"].items()}
    out = proc([pics[i] for i in case["pictures"]], return_tensors="pt", **kw)
    want = g[f"{name}.pixel_values"]
    assert out["pixel_values"].shape == want.shape and out["pixel_values"].dtype == torch.float32
    assert (out["pixel_values"] - want).abs().max() <= 1e-5
    assert out["pixel_mask"].dtype == torch.int64
    assert torch.equal(out["pixel_mask"], g[f"{name}.pixel_mask"].to(torch.int64))
    if case["maps"] is None:
        assert "mask_labels" not in out
        return
    assert len(out["mask_labels"]) == len(out["class_labels"]) == len(case["pictures"])
    for i, (masks, classes) in enumerate(zip(out["mask_labels"], out["class_labels"])):
        assert masks.dtype == torch.float32 and classes.dtype == torch.int64
        assert torch.equal(masks, g[f"{name}.mask_labels.{i}"].float())
        assert torch.equal(classes, g[f"{name}.class_labels.{i}"])


@pytest.mark.parametrize("name", sorted(meta()["cases"]))
def test_saved_config_is_the_reference_json(name, tmp_path):
    case = meta()["cases"][name]
    proc = Mask2FormerImageProcessor(**case["init"])
    assert proc.to_dict() == case["config"]
    proc.save_pretrained(tmp_path)
    again = AutoImageProcessor.from_pretrained(tmp_path)
    assert type(again) is Mask2FormerImageProcessor and again.to_dict() == case["config"]


def test_the_padding_is_zero_and_the_mask_says_where():
    case = meta()["cases"]["edges"]
    out = Mask2FormerImageProcessor(**case["init"])(pictures(), return_tensors="pt")
    values, mask = out["pixel_values"], out["pixel_mask"]
    assert not bool(mask.all())   # a portrait and landscapes: some padding
    assert bool((values * (1 - mask[:, None])).eq(0).all())


def test_return_tensors_none_and_np():
    proc = Mask2FormerImageProcessor(size={"shortest_edge": 16, "longest_edge": 26}, size_divisor=4)
    pics = pictures()[:2]
    maps = [segmentation_map(p, "semantic") for p in pics]
    lists = proc(pics, segmentation_maps=maps, ignore_index=255)
    assert isinstance(lists["pixel_values"], list) and lists["pixel_values"][0].dtype == np.float32
    assert lists["pixel_mask"][0].dtype == np.int64 and isinstance(lists["mask_labels"][0], np.ndarray)
    arrays = proc(pics, return_tensors="np")
    assert isinstance(arrays["pixel_values"], np.ndarray) and arrays["pixel_values"].shape[0] == 2
    tensors = proc(pics, return_tensors="pt")
    assert np.array_equal(arrays["pixel_values"], tensors["pixel_values"].numpy())
    assert np.array_equal(np.stack(lists["pixel_values"]), arrays["pixel_values"])


def test_segmentation_maps_can_be_positional():
    proc = Mask2FormerImageProcessor(size={"shortest_edge": 16, "longest_edge": 26}, ignore_index=255)
    pics = pictures()[:1]
    maps = [segmentation_map(pics[0], "semantic")]
    a = proc(pics, maps, return_tensors="pt")
    b = proc(pics, segmentation_maps=maps, return_tensors="pt")
    assert all(torch.equal(x, y) for x, y in zip(a["mask_labels"], b["mask_labels"]))


def test_size_rules():
    assert size_with_aspect_ratio((300, 451), 800, 1333) == (800, 1202)
    assert size_with_aspect_ratio((100, 400), 800, 1333) == (333, 1333)   # the long side capped
    assert size_with_aspect_ratio((800, 600), 600, None) == (800, 600)     # already there
    proc = Mask2FormerImageProcessor()
    assert proc.target_size((300, 451), proc.size, 32) == (800, 1216)      # then up to a multiple of 32


@pytest.mark.parametrize("bad, error, words", [
    (dict(return_tensors="tf"), UnsupportedOptionError, "return_tensors"),
    (dict(size={"shortest_edge": 10}), UnsupportedOptionError, "shortest_edge with longest_edge"),
    (dict(do_reduce_labels=True, segmentation_maps=[np.zeros((8, 8), np.uint8)]), InvalidInputError, "ignore_index"),
    (dict(segmentation_maps=[np.zeros((8, 8), np.uint8)] * 2), InvalidInputError, "one map per image"),
    (dict(segmentation_maps=[np.zeros((8, 8), np.float32)]), InvalidInputError, "integer labels"),
    (dict(segmentation_maps=[np.full((8, 8), 300)]), InvalidInputError, r"\[0, 255\]"),
    (dict(pad_size={"height": 4, "width": 4}), InvalidInputError, "larger than pad_size"),
    (dict(nope=1), InvalidInputError, "unexpected keyword"),
])
def test_bad_input_is_a_named_error(bad, error, words):
    proc = Mask2FormerImageProcessor(size={"shortest_edge": 16, "longest_edge": 26})
    with pytest.raises(error, match=words):
        proc(np.zeros((8, 8, 3), np.uint8), **bad)


def test_instance_ids_missing_from_the_mapping_are_named():
    proc = Mask2FormerImageProcessor(size={"shortest_edge": 16, "longest_edge": 26})
    with pytest.raises(InvalidInputError, match="instance id 2"):
        proc(np.zeros((8, 8, 3), np.uint8), segmentation_maps=[np.full((8, 8), 2, np.uint8)],
             instance_id_to_semantic_id={1: 1})


# --- post-processing ----------------------------------------------------------------------------------
class _Outputs:
    def __init__(self, g):
        self.class_queries_logits = g["post.class_queries_logits"]
        self.masks_queries_logits = g["post.masks_queries_logits"]


def _digest(t: torch.Tensor) -> str:
    return hashlib.md5(t.to(torch.int64).contiguous().numpy().tobytes()).hexdigest()


@pytest.mark.parametrize("name", sorted(meta()["post"]))
def test_post_processing_equals_the_reference(name):
    spec, g = meta()["post"][name], golden()
    kwargs = dict(spec["kwargs"])
    if "target_sizes" in kwargs:
        kwargs["target_sizes"] = [tuple(s) for s in kwargs["target_sizes"]]
    if "label_ids_to_fuse" in kwargs:
        kwargs["label_ids_to_fuse"] = set(kwargs["label_ids_to_fuse"])
    proc = Mask2FormerImageProcessor()
    got = getattr(proc, f"post_process_{spec['method']}_segmentation")(_Outputs(g), **kwargs)
    assert len(got) == len(spec["results"]) == 2
    for i, (item, want) in enumerate(zip(got, spec["results"])):
        if spec["method"] == "semantic":
            seg = item["segmentation"] if kwargs.get("return_segmentation_scores") else item
            if kwargs.get("return_segmentation_scores"):
                assert (item.segmentation_scores - g[f"post.{name}.{i}.scores"]).abs().max() <= 1e-6
        else:
            assert item["segments_info"] == want["segments_info"]
            seg = item["segmentation"]
            if "rle" in want:
                assert [[int(v) for v in r] for r in seg] == want["rle"]
                continue
        assert list(seg.shape) == want["shape"] and str(seg.dtype) == want["dtype"]
        if "md5" in want:
            values, counts = torch.unique(seg, return_counts=True)
            assert (values.tolist(), counts.tolist()) == (want["values"], want["counts"])
            assert _digest(seg) == want["md5"]
        else:
            assert torch.equal(seg, g[f"post.{name}.{i}.segmentation"])


def test_post_processing_takes_a_dict_and_names_missing_logits():
    g = golden()
    proc = Mask2FormerImageProcessor()
    outputs = {"class_queries_logits": g["post.class_queries_logits"],
               "masks_queries_logits": g["post.masks_queries_logits"]}
    assert len(proc.post_process_semantic_segmentation(outputs)) == 2
    with pytest.raises(InvalidInputError, match="class_queries_logits"):
        proc.post_process_instance_segmentation({"logits": torch.zeros(1)})
    with pytest.raises(InvalidInputError, match="target_sizes"):
        proc.post_process_panoptic_segmentation(outputs, target_sizes=[(4, 4)])


def test_run_length_encoding():
    mask = torch.tensor([[0, 1, 1], [0, 0, 1]])   # row-major: 0 1 1 0 0 1
    assert [int(v) for v in mask_to_rle(mask)] == [2, 2, 6, 1]   # 1-based start, length
