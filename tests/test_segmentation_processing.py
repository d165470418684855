"""SegformerImageProcessor against the reference's SegformerImageProcessorPil
(scripts/golden_image_segmentation.py) on the real pictures of tests/fixtures/images and label maps
made from them (tests/fixtures/images/segmaps: mode L and P, with 0 and 255): pixel values
(<= 1e-5), labels (equal; label reduction, nearest resize, int64), lists when sizes differ,
post_process_semantic_segmentation, the saved config; and the named errors."""

from __future__ import annotations

import json
from pathlib import Path

import numpy as np
import pytest

torch = pytest.importorskip("torch")
from PIL import Image  # noqa: E402

from pretrained.errors import InvalidInputError, UnsupportedOptionError  # noqa: E402
from pretrained.outputs import SemanticSegmenterOutput  # noqa: E402
from pretrained.processing import AutoImageProcessor, SegformerImageProcessor  # noqa: E402
from pretrained.processing.segmentation import reduce_labels, semantic_segmentation_maps  # noqa: E402

FIX = Path(__file__).parent / "fixtures"
IMAGES = FIX / "images"
MAPS = IMAGES / "segmaps"
GOLDENS = FIX / "goldens" / "segmentation"
META = json.loads((GOLDENS / "processing.json").read_text())


@pytest.fixture(scope="module")
def goldens():
    with np.load(GOLDENS / "processing.npz") as data:
        return {k: data[k] for k in data.files}


def open_input(spec: str):
    """The golden script's reading of an input spec."""
    kind, name = spec.split(":", 1)
    if kind == "batch":
        return np.stack([np.asarray(Image.open(MAPS / n)).astype(np.int64) for n in name.split("+")])
    if kind in ("map", "i64"):
        image = Image.open(MAPS / name)
        return image if kind == "map" else np.asarray(image).astype(np.int64)
    image = Image.open(IMAGES / name)
    return {"pil": image, "rgb": image.convert("RGB"), "hwc": np.asarray(image.convert("RGB"))}[kind]


def _compare(got, want, key: str) -> None:
    got = np.asarray(got)
    assert got.shape == want.shape, (key, got.shape, want.shape)
    assert got.dtype == want.dtype, (key, got.dtype, want.dtype)
    if key.startswith("labels") or "labels." in key:
        assert np.array_equal(got, want), key
    else:
        assert np.abs(got - want).max() <= 1e-5, key


@pytest.mark.parametrize("name", sorted(META["cases"]))
def test_the_references_pixels_and_labels(name, goldens):
    case = META["cases"][name]
    proc = SegformerImageProcessor(**case["init"])
    call = dict(case["call"])
    tensors = call.pop("return_tensors", "pt")
    images = [open_input(s) for s in case["images"]]
    maps = case["maps"]
    maps = None if maps is None else open_input(maps) if isinstance(maps, str) else [open_input(s) for s in maps]
    out = proc(images, segmentation_maps=maps, return_tensors=tensors, **call)
    assert sorted(out) == case["keys"]
    for key in case["keys"]:
        if case["stacked"]:
            assert isinstance(out[key], torch.Tensor)
            _compare(out[key].numpy(), goldens[f"{name}.{key}"], key)
        else:
            assert isinstance(out[key], list) and len(out[key]) == len(images)
            for i, value in enumerate(out[key]):
                _compare(value, goldens[f"{name}.{key}.{i}"], f"{key}.{i}")
    if "labels" in out:
        assert str(np.asarray(out["labels"][0]).dtype) == case["dtypes"]["labels"] == "int64"


def test_the_maps_have_background_and_ignored_pixels(goldens):
    horse = np.asarray(Image.open(MAPS / "horse_l.png"))
    assert {0, 1, 2, 255} <= set(np.unique(horse))
    assert Image.open(MAPS / "chelsea_p.png").mode == "P"
    plain, reduced = goldens["maps.labels"], goldens["maps_reduced.labels"]
    assert (plain == 0).any() and (reduced == 255).sum() > (plain == 255).sum()   # 0 -> 255 when reduced


def test_label_reduction_by_hand():
    got = reduce_labels(np.array([[0, 1, 2], [255, 3, 0]], np.uint8))
    assert got.tolist() == [[255, 0, 1], [255, 2, 255]]
    wide = np.array([[0, 1], [255, 7]], np.int64)
    assert reduce_labels(wide).tolist() == [[255, 0], [255, 6]] and wide[0, 0] == 0   # not changed in place


@pytest.mark.parametrize("tag", ["none", "sizes"])
def test_post_processing_equals_the_references(tag, goldens):
    logits = torch.from_numpy(goldens["post.logits"])
    sizes = META["post_sizes"].get(tag)
    proc = SegformerImageProcessor()
    maps = proc.post_process_semantic_segmentation(SemanticSegmenterOutput(logits=logits), target_sizes=sizes)
    scored = proc.post_process_semantic_segmentation({"logits": logits}, target_sizes=sizes,
                                                     return_segmentation_scores=True)
    for i, m in enumerate(maps):
        want = goldens[f"post.{tag}.{i}"]
        assert m.dtype == torch.int64 and np.array_equal(m.numpy(), want)
        assert torch.equal(scored[i]["segmentation"], m) and torch.equal(scored[i].segmentation, m)
        assert np.abs(scored[i].segmentation_scores.numpy() - goldens[f"post.{tag}.scores.{i}"]).max() <= 1e-6
    if sizes:   # a tensor of sizes gives the same (the reference 5.25 fails on one)
        again = proc.post_process_semantic_segmentation(SemanticSegmenterOutput(logits=logits),
                                                        target_sizes=torch.tensor(sizes))
        assert all(torch.equal(a, b) for a, b in zip(again, maps))


def test_post_processing_by_hand():
    logits = torch.zeros(1, 3, 2, 2)
    logits[0, 2, 0, 0] = 1.0
    logits[0, 1, 1, 1] = 1.0
    assert semantic_segmentation_maps(logits)[0].tolist() == [[2, 0], [0, 1]]
    big = semantic_segmentation_maps(logits, [(4, 4)])[0]
    assert big.shape == (4, 4) and big[0, 0] == 2 and big[3, 3] == 1


def test_the_saved_config_is_the_references(tmp_path):
    for sub, kwargs in (("", {}), ("custom", dict(size={"height": 64, "width": 32}, do_reduce_labels=True, resample=0))):
        want = json.loads((GOLDENS / "configs" / "SegformerImageProcessor" / sub / "preprocessor_config.json").read_text())
        SegformerImageProcessor(**kwargs).save_pretrained(tmp_path / sub)
        got = json.loads((tmp_path / sub / "preprocessor_config.json").read_text())
        assert got == want
        back = AutoImageProcessor.from_pretrained(tmp_path / sub)
        assert type(back) is SegformerImageProcessor and back == SegformerImageProcessor(**kwargs)


def test_auto_reads_the_old_feature_extractor_config(tmp_path):
    (tmp_path / "preprocessor_config.json").write_text(json.dumps({
        "feature_extractor_type": "SegformerFeatureExtractor", "reduce_labels": True, "size": 512, "resample": 2,
        "do_normalize": True, "do_resize": True}))
    proc = AutoImageProcessor.from_pretrained(tmp_path)
    assert type(proc) is SegformerImageProcessor and proc.size == {"height": 512, "width": 512}
    # as the reference 5.x: the legacy key is kept (written back) but does not switch label reduction on
    assert proc.do_reduce_labels is False and proc.to_dict()["reduce_labels"] is True


def test_named_errors():
    proc = SegformerImageProcessor(size={"height": 8, "width": 8})
    picture = np.zeros((10, 12, 3), np.uint8)
    with pytest.raises(InvalidInputError, match="one map per image"):
        proc([picture, picture], segmentation_maps=np.zeros((10, 12), np.uint8))
    with pytest.raises(InvalidInputError, match="one .height, width. channel"):
        proc(picture, segmentation_maps=Image.new("RGB", (12, 10)))
    with pytest.raises(InvalidInputError, match="not whole class ids"):
        proc(picture, segmentation_maps=np.full((10, 12), 0.5))
    with pytest.raises(InvalidInputError, match="outside \\[0, 255\\]"):
        proc(picture, segmentation_maps=np.full((10, 12), 300))
    with pytest.raises(InvalidInputError, match="unexpected keyword"):
        proc(picture, segmentation_maps=np.zeros((10, 12), np.uint8), reduce_labels=True)
    with pytest.raises(UnsupportedOptionError, match="no center crop"):
        proc(picture, do_center_crop=True, crop_size=4)
    uneven = [np.zeros((10, 12), np.uint8), np.zeros((5, 5), np.uint8)]
    assert [m.shape for m in proc.preprocess_segmentation_maps(uneven, do_resize=False)] == [(10, 12), (5, 5)]
    with pytest.raises(InvalidInputError, match="different shapes"):
        proc.preprocess_segmentation_maps(uneven, do_resize=False, return_tensors="pt")
    with pytest.raises(InvalidInputError, match="target_sizes has 1 entries"):
        proc.post_process_semantic_segmentation({"logits": torch.zeros(2, 3, 4, 4)}, target_sizes=[(4, 4)])
    with pytest.raises(InvalidInputError, match=".logits"):
        proc.post_process_semantic_segmentation(torch.zeros(2, 3, 4, 4))


def test_maps_without_resize_keep_their_ids():
    proc = SegformerImageProcessor(do_resize=False)
    label_map = np.array([[0, 3], [255, 1]], np.uint8)
    out = proc(np.zeros((2, 2, 3), np.uint8), segmentation_maps=label_map, return_tensors="pt")
    assert out["labels"].tolist() == [[[0, 3], [255, 1]]]
    out = proc(np.zeros((2, 2, 3), np.uint8), segmentation_maps=label_map, do_reduce_labels=True, return_tensors="np")
    assert out["labels"].tolist() == [[[255, 2], [255, 0]]] and out["pixel_values"].shape == (1, 3, 2, 2)
