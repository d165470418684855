"""pretrained.vision's load_image and pretrained.processing's ViT / DeiT / ConvNeXt image processors against the
reference's outputs (scripts/golden_image_processing.py: transformers' *ImageProcessorPil classes
and load_image on the real pictures of tests/fixtures/images and their mode variants)."""

from __future__ import annotations

import io
import json
from pathlib import Path

import numpy as np
import pytest

PIL = pytest.importorskip("PIL")
torch = pytest.importorskip("torch")
from PIL import Image  # noqa: E402

from pretrained.errors import (ImageDecodeError, ImageFileNotFoundError, ImageTooLargeError,  # noqa: E402
                               InvalidInputError, UnknownModelTypeError)
from pretrained.processing import (AutoImageProcessor, ConvNextImageProcessor, DeiTImageProcessor,  # noqa: E402
                                   ViTImageProcessor)
from pretrained.vision import load_image  # noqa: E402

FIXTURES = Path(__file__).parent / "fixtures"
IMAGES = FIXTURES / "images"
GOLDENS = FIXTURES / "goldens" / "vision"
CASES = {k: v for k, v in json.loads((GOLDENS / "cases.json").read_text()).items() if not k.startswith("_")}
CLASSES = {"ViTImageProcessor": ViTImageProcessor, "DeiTImageProcessor": DeiTImageProcessor,
           "ConvNextImageProcessor": ConvNextImageProcessor}


@pytest.fixture(scope="module")
def goldens():
    with np.load(GOLDENS / "processors.npz") as data:
        return {k: data[k] for k in data.files}


def open_input(spec: str):
    """The golden script's interpretation of an input spec (``pt:`` becomes a torch tensor here)."""
    kind, name = spec.split(":", 1)
    image = Image.open(IMAGES / name)
    if kind == "pil":
        return image
    if kind == "hwc":
        return np.asarray(image.convert("RGB"))
    if kind == "chw":
        return np.ascontiguousarray(np.asarray(image.convert("RGB")).transpose(2, 0, 1))
    if kind == "pt":
        return torch.from_numpy(np.ascontiguousarray(np.asarray(image.convert("RGB")).transpose(2, 0, 1)))
    if kind == "float":
        return np.asarray(image.convert("RGB")).astype(np.float32) / 255.0
    if kind == "rgba_hwc":
        return np.asarray(image.convert("RGBA"))
    if kind == "gray_hw1":
        return np.asarray(image.convert("L"))[:, :, None]
    raise ValueError(spec)


@pytest.mark.parametrize("name", sorted(CASES))
def test_processor_matches_reference(name, goldens):
    case = CASES[name]
    proc = CLASSES[case["processor"]](**case["init"])
    out = proc([open_input(s) for s in case["inputs"]], **case["call"])["pixel_values"]
    kind = case["call"].get("return_tensors")
    if kind is None:
        assert isinstance(out, list)
        expected = [goldens[f"{name}/{i}"] for i in range(len(case["inputs"]))]
        assert len(out) == len(expected)
        pairs = list(zip(out, expected))
    else:
        assert isinstance(out, torch.Tensor if kind == "pt" else np.ndarray)
        out = out.numpy() if kind == "pt" else out
        pairs = [(out, goldens[name])]
    for ours, ref in pairs:
        assert ours.shape == ref.shape and ours.dtype == ref.dtype, (ours.shape, ref.shape, ours.dtype, ref.dtype)
        np.testing.assert_allclose(ours.astype(np.float64), ref.astype(np.float64), atol=1e-5, rtol=0)


@pytest.mark.parametrize("name", ["horse.png", "chessboard_GRAY.png", "variants/cat_rgba.png", "variants/cat_la.png",
                                  "variants/cat_p_transparency.png", "variants/cat_cmyk.jpg",
                                  "variants/coins_i16.png", "variants/coins_l.png", "variants/rocket_exif6.jpg",
                                  "variants/cat_rgb.png"])
def test_load_image_matches_reference(name):
    with np.load(GOLDENS / "load_image.npz") as data:
        expected = data[name]
    for source in (str(IMAGES / name), IMAGES / name, (IMAGES / name).read_bytes(), Image.open(IMAGES / name)):
        image = load_image(source)
        assert image.mode == "RGB"
        np.testing.assert_array_equal(np.asarray(image), expected)


def test_exif_orientation_is_applied():
    raw = Image.open(IMAGES / "variants" / "rocket_exif6.jpg")
    assert raw.size == (48, 64)
    assert load_image(IMAGES / "variants" / "rocket_exif6.jpg").size == (64, 48)


def test_load_image_arrays_and_tensors():
    rgb = np.asarray(Image.open(IMAGES / "variants" / "cat_rgb.png"))
    for arr in (rgb, rgb.transpose(2, 0, 1), torch.from_numpy(rgb.transpose(2, 0, 1).copy()),
                rgb.astype(np.float32), rgb.astype(np.float64) / 255.0 + 0.0):
        out = np.asarray(load_image(arr))
        # floats in [0, 1] are truncated after * 255, as the reference's to_pil_image: within 1 level
        assert np.abs(out.astype(int) - rgb.astype(int)).max() <= 1
    np.testing.assert_array_equal(np.asarray(load_image(rgb[..., 0])), np.repeat(rgb[..., :1], 3, axis=-1))


@pytest.mark.parametrize("shape", [(10, 10, 2), (5, 10, 10), (10, 10, 7), (2, 3, 4, 5)])
def test_load_image_wrong_channel_count(shape):
    with pytest.raises(InvalidInputError, match="channels"):
        load_image(np.zeros(shape, np.uint8))


def test_load_image_errors(tmp_path):
    with pytest.raises(ImageFileNotFoundError, match="no such image file"):
        load_image(tmp_path / "missing.png")
    with pytest.raises(FileNotFoundError):
        load_image(str(tmp_path / "missing.png"))
    text = tmp_path / "notes.png"
    text.write_text("not a picture")
    with pytest.raises(ImageDecodeError, match="not an image"):
        load_image(text)
    data = (IMAGES / "rocket.jpg").read_bytes()
    with pytest.raises(ImageDecodeError, match="corrupt or truncated"):
        load_image(data[: len(data) // 3])
    png = (IMAGES / "chelsea.png").read_bytes()
    with pytest.raises(ImageDecodeError):
        load_image(png[:2000])
    with pytest.raises(ImageDecodeError, match="empty"):
        load_image(b"")
    with pytest.raises(ImageDecodeError, match="no pixels"):
        load_image(np.zeros((0, 5, 3), np.uint8))
    with pytest.raises(ImageDecodeError, match="no pixels"):
        load_image(Image.new("RGB", (0, 0)))
    with pytest.raises(InvalidInputError, match="URL.*download it first"):
        load_image("https://example.com/cat.jpg")
    with pytest.raises(InvalidInputError, match="not int"):
        load_image(3)
    with pytest.raises(InvalidInputError, match="outside"):
        load_image(np.full((4, 4, 3), 300.0))


def test_decompression_bomb_keeps_pillows_limit(monkeypatch):
    buf = io.BytesIO()
    Image.new("L", (100, 100)).save(buf, format="PNG")
    monkeypatch.setattr(Image, "MAX_IMAGE_PIXELS", 1000)  # 10,000 pixels > 2 x 1000
    with pytest.raises(ImageTooLargeError, match="MAX_IMAGE_PIXELS = 1000"):
        load_image(buf.getvalue())


def test_decompression_bomb_warning_zone_is_pillows(monkeypatch):
    """Between the limit and twice it Pillow warns and decodes (as the reference): kept, not
    turned into an error or silenced."""
    buf = io.BytesIO()
    Image.new("L", (100, 100)).save(buf, format="PNG")
    monkeypatch.setattr(Image, "MAX_IMAGE_PIXELS", 6000)  # 6,000 < 10,000 pixels < 12,000
    with pytest.warns(Image.DecompressionBombWarning):
        assert load_image(buf.getvalue()).size == (100, 100)


def test_an_empty_file_is_named(tmp_path):
    (tmp_path / "empty.jpg").write_bytes(b"")
    with pytest.raises(ImageDecodeError, match=r"empty \(0 bytes\)"):
        load_image(tmp_path / "empty.jpg")


@pytest.mark.parametrize("shape", [(0, 0, 3), (3, 0, 5), (0, 5, 3), (5, 0)])
@pytest.mark.parametrize("cls_name", ["ViTImageProcessor", "ConvNextImageProcessor"])
def test_an_empty_array_is_a_named_error_not_a_resized_blank(cls_name, shape):
    # before: ViT resized it to a blank 224 x 224 picture, ConvNeXt divided by zero
    for dtype in (np.uint8, np.float32):
        with pytest.raises(ImageDecodeError, match="no pixels"):
            CLASSES[cls_name]()(np.zeros(shape, dtype), return_tensors="pt")


@pytest.mark.parametrize("array, words", [
    (np.full((8, 8, 3), np.nan, np.float32), "NaN or infinite"),
    (np.full((8, 8, 3), np.inf, np.float64), "NaN or infinite"),
    (np.zeros((8, 8, 3), complex), "dtype complex128"),
    (np.zeros((8, 8, 3), object), "dtype object"),
])
def test_arrays_that_are_not_finite_real_pixels_are_named_errors(array, words):
    import warnings

    with warnings.catch_warnings():
        warnings.simplefilter("error")   # named at once, not after a NumPy cast warning
        with pytest.raises(InvalidInputError, match=words):
            ViTImageProcessor()(array)
        with pytest.raises(InvalidInputError, match=words):
            load_image(array)


def test_without_convert_rgb_channel_mismatch_is_named():
    # the reference fails here too (1 channel vs 3 means); ours names the fix
    with pytest.raises(InvalidInputError, match="do_convert_rgb=True"):
        ViTImageProcessor()(Image.open(IMAGES / "camera.png"))
    with pytest.raises(InvalidInputError, match="do_convert_rgb=True"):
        ViTImageProcessor()(Image.open(IMAGES / "variants" / "cat_cmyk.jpg"))


def test_mixed_sizes_cannot_be_one_tensor():
    proc = ViTImageProcessor(do_resize=False)
    images = [Image.open(IMAGES / "variants" / "cat_rgb.png"), Image.open(IMAGES / "variants" / "rocket_exif6.jpg")]
    assert [p.shape for p in proc(images)["pixel_values"]] == [(3, 64, 64), (3, 64, 48)]
    with pytest.raises(InvalidInputError, match="different shapes"):
        proc(images, return_tensors="pt")


def test_paths_and_unknown_kwargs():
    proc = ViTImageProcessor(size=16)
    a = proc(str(IMAGES / "chelsea.png"), return_tensors="pt").pixel_values
    b = proc(load_image(IMAGES / "chelsea.png"), return_tensors="pt").pixel_values
    assert torch.equal(a, b) and a.shape == (1, 3, 16, 16)
    with pytest.raises(InvalidInputError, match="unexpected keyword"):
        proc(str(IMAGES / "chelsea.png"), sizes=3)


@pytest.mark.parametrize("cls_name", sorted(CLASSES))
def test_reads_reference_config_and_round_trips(cls_name, tmp_path):
    folder = GOLDENS / "configs" / cls_name
    written = json.loads((folder / "preprocessor_config.json").read_text())
    proc = AutoImageProcessor.from_pretrained(folder)
    assert type(proc).__name__ == cls_name
    assert proc.to_dict() == written
    proc.save_pretrained(tmp_path)
    assert json.loads((tmp_path / "preprocessor_config.json").read_text()) == written
    assert AutoImageProcessor.from_pretrained(tmp_path) == proc


def test_auto_falls_back_to_model_type(tmp_path):
    (tmp_path / "preprocessor_config.json").write_text(json.dumps({"crop_pct": 0.5, "size": {"shortest_edge": 64}}))
    (tmp_path / "config.json").write_text(json.dumps({"model_type": "convnext"}))
    proc = AutoImageProcessor.from_pretrained(tmp_path)
    assert isinstance(proc, ConvNextImageProcessor) and proc.crop_pct == 0.5
    (tmp_path / "config.json").write_text(json.dumps({"model_type": "bert"}))
    with pytest.raises(UnknownModelTypeError, match="ViTImageProcessor"):
        AutoImageProcessor.from_pretrained(tmp_path)
    (tmp_path / "preprocessor_config.json").write_text(json.dumps({"image_processor_type": "ViTImageProcessorFast"}))
    assert isinstance(AutoImageProcessor.from_pretrained(tmp_path), ViTImageProcessor)
