"""The image-segmentation pipeline against the reference 5.x's answers on a tiny SegFormer with named
labels over real pictures (scripts/golden_image_segmentation.py): labels in order, every mask equal
(mode L, 0/255, the picture's size), scores None; subtask/threshold parameters, lists in batches;
the dispatch on the processor's post-processing (a processor with instance / panoptic methods is
used for those subtasks) and the named errors."""

from __future__ import annotations

import json
from pathlib import Path

import numpy as np
import pytest
import torch
from PIL import Image

from pretrained import AutoModelForImageClassification, AutoModelForSemanticSegmentation, pipeline
from pretrained.errors import InvalidInputError, UnsupportedOptionError
from pretrained.pipelines.image_segmentation import ImageSegmentationPipeline

FIX = Path(__file__).resolve().parent / "fixtures"
GOLDEN = json.loads((FIX / "goldens" / "segmentation" / "pipeline.json").read_text())
MODEL = FIX / "models" / "segformer-pipeline"
IMAGES = [str(FIX / "images" / f) for f in GOLDEN["images"]]


@pytest.fixture(scope="module")
def seg():
    return pipeline("image-segmentation", model=str(MODEL))


@pytest.fixture(scope="module")
def masks():
    with np.load(FIX / "goldens" / "segmentation" / "pipeline.npz") as data:
        return {k: data[k] for k in data.files}


def _same(got: list[dict], case: str, i: int, masks: dict) -> None:
    spec = GOLDEN["cases"][case]
    assert [a["label"] for a in got] == spec["labels"][i]
    assert [a["score"] for a in got] == spec["scores"][i]
    stack = []
    for a in got:
        assert isinstance(a["mask"], Image.Image) and a["mask"].mode == "L"
        assert list(a["mask"].size) == spec["sizes"][i]
        stack.append(np.asarray(a["mask"]))
    stack = np.stack(stack)
    assert set(np.unique(stack)) <= {0, 255} and ((stack == 255).sum(0) == 1).all()
    assert np.array_equal((stack == 255).argmax(0), masks[f"{case}.{i}"])   # every pixel in the same mask


@pytest.mark.parametrize("case", ["semantic", "default", "thresholds"])
def test_labels_and_masks_equal_the_references_on_real_pictures(seg, masks, case):
    kwargs = GOLDEN["cases"][case]["kwargs"]
    for i, path in enumerate(IMAGES):
        _same(seg(path, **kwargs), case, i, masks)


def test_a_batch_and_a_pil_image(seg, masks):
    got = seg(IMAGES, batch_size=2)
    assert len(got) == len(IMAGES)
    for i, answers in enumerate(got):
        _same(answers, "batch", i, masks)
    _same(seg(Image.open(IMAGES[0])), "pil", 0, masks)


def test_several_classes_per_picture(seg):
    counts = [len(labels) for labels in GOLDEN["cases"]["semantic"]["labels"]]
    assert min(counts) >= 3   # the masks split each picture: not one class everywhere


def test_arrays_and_bytes_give_the_same_answers(seg):
    want = seg(IMAGES[0])
    picture = Image.open(IMAGES[0]).convert("RGB")
    for item in (np.asarray(picture), Path(IMAGES[0]).read_bytes()):
        got = seg(item)
        assert [a["label"] for a in got] == [a["label"] for a in want]
        assert all(np.array_equal(np.asarray(a["mask"]), np.asarray(b["mask"])) for a, b in zip(got, want))
    chw = np.ascontiguousarray(np.asarray(picture).transpose(2, 0, 1))
    assert seg(chw)[0]["mask"].size == picture.size


def test_the_task_and_the_loader_are_read_from_the_checkpoint():
    pipe = pipeline(model=str(MODEL))
    assert pipe.task == "image-segmentation" and isinstance(pipe, ImageSegmentationPipeline)
    assert pipe.available_subtasks() == ["semantic"]


def test_a_subtask_the_processor_lacks_is_refused_by_name(seg):
    assert "instance is not supported" in GOLDEN["instance_error"]   # the reference refuses it too
    for subtask in ("instance", "panoptic"):
        with pytest.raises(UnsupportedOptionError, match=f"subtask='{subtask}' is not available.*'semantic'"):
            seg(IMAGES[0], subtask=subtask)
    with pytest.raises(UnsupportedOptionError, match="instance"):
        pipeline("image-segmentation", model=str(MODEL), subtask="instance")


class _FakeUniversalProcessor:
    """A processor offering instance and panoptic post-processing over SegFormer's logits, as a
    Mask2Former processor would: segment 1 = pixels of class 1, segment 2 = the rest."""

    def __init__(self, real):
        self.real = real
        self.calls = []

    def __call__(self, *args, **kwargs):
        return self.real(*args, **kwargs)

    def _segments(self, kind, outputs, **kwargs):
        self.calls.append((kind, kwargs))
        assert set(kwargs) == {"threshold", "mask_threshold", "overlap_mask_area_threshold", "target_sizes"}
        classes = self.real.post_process_semantic_segmentation(outputs, target_sizes=kwargs["target_sizes"])[0]
        segmentation = torch.where(classes == 1, 1, 2)
        return [{"segmentation": segmentation,
                 "segments_info": [{"id": 1, "label_id": 1, "score": 0.75}, {"id": 2, "label_id": 3, "score": 0.5}]}]

    def post_process_instance_segmentation(self, outputs, **kwargs):
        return self._segments("instance", outputs, **kwargs)

    def post_process_panoptic_segmentation(self, outputs, **kwargs):
        return self._segments("panoptic", outputs, **kwargs)


def test_instance_and_panoptic_go_through_the_processors_methods(seg):
    fake = _FakeUniversalProcessor(seg.image_processor)
    pipe = pipeline("image-segmentation", model=seg.model, image_processor=fake)
    assert pipe.available_subtasks() == ["panoptic", "instance"]
    got = pipe(IMAGES[0], threshold=0.3, overlap_mask_area_threshold=0.7)   # no subtask: panoptic first
    assert fake.calls[-1][0] == "panoptic"
    assert fake.calls[-1][1]["threshold"] == 0.3 and fake.calls[-1][1]["mask_threshold"] == 0.5
    assert fake.calls[-1][1]["overlap_mask_area_threshold"] == 0.7 and fake.calls[-1][1]["target_sizes"] == [(300, 451)]
    assert [(a["label"], a["score"]) for a in got] == [("sky", 0.75), ("rocket", 0.5)]
    semantic = {a["label"]: np.asarray(a["mask"]) for a in seg(IMAGES[0])}
    assert np.array_equal(np.asarray(got[0]["mask"]), semantic["sky"])
    assert np.array_equal(np.asarray(got[1]["mask"]), 255 - semantic["sky"])
    pipe(IMAGES[0], subtask="instance")
    assert fake.calls[-1][0] == "instance" and fake.calls[-1][1]["threshold"] == 0.9
    with pytest.raises(UnsupportedOptionError, match="semantic"):
        pipe(IMAGES[0], subtask="semantic")


def test_a_loaded_model_and_the_wrong_heads():
    model = AutoModelForSemanticSegmentation.from_pretrained(MODEL)
    assert pipeline("image-segmentation", model=model)(IMAGES[1])[0]["label"] == "background"
    clf = AutoModelForImageClassification.from_pretrained(FIX / "models" / "segformer-tiny-imgcls")
    with pytest.raises(InvalidInputError, match="needs a segmentation model.*SegformerForSemanticSegmentation"):
        pipeline("image-segmentation", model=clf, image_processor=str(MODEL))
    with pytest.raises(InvalidInputError, match="lacks the image-segmentation head"):
        pipeline("image-segmentation", model=str(FIX / "models" / "segformer-tiny-imgcls"))


@pytest.mark.parametrize("kwargs, words", [
    ({"subtask": "everything"}, "subtask must be one of"),
    ({"threshold": 1.5}, "threshold must be a number in"),
    ({"mask_threshold": "high"}, "mask_threshold"),
    ({"overlap_mask_area_threshold": True}, "overlap_mask_area_threshold"),
    ({"top_k": 3}, "unknown parameter"),
])
def test_bad_parameters_are_named_errors(seg, kwargs, words):
    with pytest.raises(InvalidInputError, match=words):
        seg(IMAGES[0], **kwargs)


def test_bad_pictures_are_named_errors(seg, tmp_path):
    bad = tmp_path / "not_a_picture.png"
    bad.write_bytes(b"hello")
    with pytest.raises(InvalidInputError):
        seg(str(bad))
    with pytest.raises(InvalidInputError, match="URL"):
        seg("https://example.com/cat.png")
    with pytest.raises(InvalidInputError):
        seg(42)
