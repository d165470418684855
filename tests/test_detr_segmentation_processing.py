"""DETR's segmentation post-processing (DetrImageProcessor.post_process_semantic / instance /
panoptic_segmentation) against the reference's DetrImageProcessorPil
(scripts/golden_detr_segmentation.py, tests/fixtures/goldens/detr_segmentation/: the json's
"processor", maps in processor.safetensors): on model-like outputs (confident queries with blob
masks: fused classes, a mostly covered query, none above a high threshold) and on the tiny
DetrForSegmentation fixture's own outputs, every option: target_sizes, threshold, mask_threshold,
overlap_mask_area_threshold, label_ids_to_fuse, return_segmentation_scores, return_coco_annotation.
Segment ids, labels, scores, fused flags and every map value equal; YOLOS's processor has none of
these methods (as the reference's)."""

from __future__ import annotations

import json
from functools import lru_cache
from pathlib import Path

import pytest
import torch
from safetensors.torch import load_file

from pretrained.errors import InvalidInputError
from pretrained.processing import AutoImageProcessor, DetrImageProcessor, YolosImageProcessor

FIX = Path(__file__).resolve().parent / "fixtures"
GOLDENS = FIX / "goldens" / "detr_segmentation"


@lru_cache(maxsize=None)
def meta() -> dict:
    return json.loads((GOLDENS / "detr_segmentation.json").read_text())["processor"]


@lru_cache(maxsize=None)
def golden() -> dict:
    return load_file(str(GOLDENS / "processor.safetensors"))


def outputs(source: str) -> dict:
    if source == "post":
        g = golden()
        return {"logits": g["post.logits"], "pred_masks": g["post.pred_masks"]}
    g = load_file(str(GOLDENS / f"{meta()['model']['fixture']}.safetensors"))
    return {"logits": g["output.logits"], "pred_masks": g["output.pred_masks"]}


CASES = [("post", n) for n in sorted(meta()["post"])] + [("model", n) for n in sorted(meta()["model"]["results"])]


@pytest.mark.parametrize("source, name", CASES)
def test_post_processing_equals_the_reference(source, name):
    spec = meta()["post"][name] if source == "post" else meta()["model"]["results"][name]
    kwargs = dict(spec["kwargs"])
    if "target_sizes" in kwargs:
        kwargs["target_sizes"] = [tuple(s) for s in kwargs["target_sizes"]]
    if "label_ids_to_fuse" in kwargs:
        kwargs["label_ids_to_fuse"] = set(kwargs["label_ids_to_fuse"])
    got = getattr(DetrImageProcessor(), f"post_process_{spec['method']}_segmentation")(outputs(source), **kwargs)
    assert len(got) == len(spec["results"]) == 2
    g = golden()
    for i, (item, want) in enumerate(zip(got, spec["results"])):
        if spec["method"] == "semantic":
            seg = item["segmentation"] if kwargs.get("return_segmentation_scores") else item
            if kwargs.get("return_segmentation_scores"):
                assert (item.segmentation_scores - g[f"{source}.{name}.{i}.scores"]).abs().max() <= 1e-6
        else:
            assert item["segments_info"] == want["segments_info"]
            seg = item["segmentation"]
            if "rle" in want:
                assert [[int(v) for v in r] for r in seg] == want["rle"]
                continue
        assert list(seg.shape) == want["shape"] and str(seg.dtype) == want["dtype"]
        assert torch.equal(seg, g[f"{source}.{name}.{i}.segmentation"])


def test_the_goldens_are_not_trivial():
    post = meta()["post"]
    assert any(s["was_fused"] for r in post["panoptic"]["results"] for s in r["segments_info"])
    assert all(len(r["segments_info"]) >= 3 for r in post["instance_sizes"]["results"])
    assert any(not r["segments_info"] for r in post["panoptic_none"]["results"])
    # a picture whose kept queries made no segment: its map of zeros is encoded (the reference's)
    assert meta()["model"]["results"]["instance_coco"]["results"][1] == {"rle": [[1, 187]], "segments_info": []}
    model = meta()["model"]["results"]
    assert sum(len(r["segments_info"]) for r in model["panoptic_loose"]["results"]) >= 2


def test_the_processor_from_a_segmentation_checkpoint_has_the_methods_and_yolos_has_none():
    proc = AutoImageProcessor.from_pretrained(FIX / "models" / meta()["model"]["fixture"])
    assert isinstance(proc, DetrImageProcessor)
    for kind in ("semantic", "instance", "panoptic"):
        assert callable(getattr(proc, f"post_process_{kind}_segmentation"))
        assert not hasattr(YolosImageProcessor(), f"post_process_{kind}_segmentation")
    assert callable(YolosImageProcessor().post_process_object_detection)


def test_attribute_outputs_and_named_errors():
    class Out:
        logits, pred_masks = outputs("post")["logits"], outputs("post")["pred_masks"]

    proc = DetrImageProcessor()
    want = proc.post_process_semantic_segmentation(outputs("post"))
    assert all(torch.equal(a, b) for a, b in zip(proc.post_process_semantic_segmentation(Out()), want))
    with pytest.raises(InvalidInputError, match="pred_masks"):
        proc.post_process_panoptic_segmentation({"logits": Out.logits, "pred_boxes": Out.logits})
    for kind in ("semantic", "instance", "panoptic"):
        with pytest.raises(InvalidInputError, match="target_sizes"):
            getattr(proc, f"post_process_{kind}_segmentation")(outputs("post"), target_sizes=[(4, 4)])
