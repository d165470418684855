"""Goldens for pretrained.vision and pretrained.processing: the reference's image loading and its ViT / DeiT / ConvNeXt image
processors on the real pictures of tests/fixtures/images/ and mode variants made from them.

Run with the reference venv (transformers 5.x, Pillow, no torchvision)::

    /work/refvenv/bin/python scripts/golden_image_processing.py

The processors used are the reference's *slow* PIL/numpy classes, named explicitly:
``ViTImageProcessorPil``, ``DeiTImageProcessorPil`` and ``ConvNextImageProcessorPil`` (5.x names;
their saved ``image_processor_type`` drops the ``Pil`` suffix). ``AutoImageProcessor`` would pick
the torchvision ("fast") classes, which are not the reference we match (no torchvision here).

Writes (all small):
  tests/fixtures/images/variants/*        64x64 crops in modes RGBA, LA, P (+transparency), CMYK,
                                           I;16, L, and a JPEG with EXIF orientation 6
  tests/fixtures/goldens/vision/cases.json        each case: processor, init/call kwargs, inputs
  tests/fixtures/goldens/vision/processors.npz    pixel_values per case (stacked or per image)
  tests/fixtures/goldens/vision/load_image.npz    reference load_image() of each picture, uint8 HWC
  tests/fixtures/goldens/vision/configs/<Class>/preprocessor_config.json  the reference's save_pretrained
"""

from __future__ import annotations

import json
from pathlib import Path

import numpy as np
import PIL
import transformers
from PIL import Image
from transformers import ConvNextImageProcessorPil, DeiTImageProcessorPil, ViTImageProcessorPil
from transformers.image_utils import load_image

ROOT = Path(__file__).resolve().parents[1]
IMAGES = ROOT / "tests" / "fixtures" / "images"
VARIANTS = IMAGES / "variants"
OUT = ROOT / "tests" / "fixtures" / "goldens" / "vision"

CLASSES = {"ViTImageProcessor": ViTImageProcessorPil, "DeiTImageProcessor": DeiTImageProcessorPil,
           "ConvNextImageProcessor": ConvNextImageProcessorPil}


def make_variants() -> None:
    VARIANTS.mkdir(parents=True, exist_ok=True)
    cat = Image.open(IMAGES / "chelsea.png").convert("RGB").crop((150, 60, 214, 124))  # 64x64 face
    rocket = Image.open(IMAGES / "rocket.jpg").convert("RGB").crop((300, 100, 348, 164))  # 48 wide x 64 high
    coins = Image.open(IMAGES / "coins.png").crop((0, 0, 64, 48))  # L, 64 wide x 48 high
    alpha = Image.open(IMAGES / "horse.png").getchannel("A").resize((64, 64), Image.NEAREST)
    rgba = cat.copy()
    rgba.putalpha(alpha.point(lambda v: 40 if v else 255))  # half see-through, so compositing matters
    rgba.save(VARIANTS / "cat_rgba.png")
    la = cat.convert("L")
    la.putalpha(alpha)
    la.save(VARIANTS / "cat_la.png")
    p = cat.convert("P", palette=Image.ADAPTIVE, colors=32)
    p.save(VARIANTS / "cat_p_transparency.png", transparency=0)
    cat.convert("CMYK").save(VARIANTS / "cat_cmyk.jpg", quality=95)
    i16 = Image.fromarray((np.asarray(coins, dtype=np.uint16) * 257).astype(np.uint16))  # mode I;16
    assert i16.mode == "I;16", i16.mode
    i16.save(VARIANTS / "coins_i16.png")
    coins.save(VARIANTS / "coins_l.png")
    exif = Image.Exif()
    exif[0x0112] = 6  # orientation: rotate 90 degrees clockwise to display
    rocket.save(VARIANTS / "rocket_exif6.jpg", exif=exif, quality=95)
    cat.save(VARIANTS / "cat_rgb.png")


def open_input(spec: str):
    """The same interpretation as tests/test_image_processing.py: ``pil:<file>`` an opened PIL image,
    ``hwc:`` / ``chw:`` a uint8 numpy array of the RGB pixels, ``float:`` HWC float32 in [0, 1],
    ``rgba_hwc:`` uint8 HWC RGBA array, ``pt:`` a CHW uint8 torch-free array (tested as a tensor there)."""
    kind, name = spec.split(":", 1)
    image = Image.open(IMAGES / name)
    if kind == "pil":
        return image
    if kind == "hwc":
        return np.asarray(image.convert("RGB"))
    if kind in ("chw", "pt"):
        return np.ascontiguousarray(np.asarray(image.convert("RGB")).transpose(2, 0, 1))
    if kind == "float":
        return np.asarray(image.convert("RGB")).astype(np.float32) / 255.0
    if kind == "rgba_hwc":
        return np.asarray(image.convert("RGBA"))
    if kind == "gray_hw1":
        return np.asarray(image.convert("L"))[:, :, None]
    raise ValueError(spec)


REAL = ["chelsea.png", "rocket.jpg", "camera.png", "horse.png", "coins.png", "chessboard_GRAY.png"]
VARS = ["variants/cat_rgba.png", "variants/cat_la.png", "variants/cat_p_transparency.png", "variants/cat_cmyk.jpg",
        "variants/coins_i16.png", "variants/coins_l.png", "variants/rocket_exif6.jpg", "variants/cat_rgb.png"]
MEAN, STD = [0.485, 0.456, 0.406], [0.229, 0.224, 0.225]

CASES = {
    # ViT: 224x224 bilinear, 1/255, mean/std 0.5
    "vit_default_rgb": ("ViTImageProcessor", {}, {"return_tensors": "np"}, ["pil:chelsea.png", "pil:rocket.jpg"]),
    "vit_default_convert_all": ("ViTImageProcessor", {"do_convert_rgb": True}, {"return_tensors": "np"},
                                ["pil:camera.png", "pil:horse.png"]),
    "vit_small_variants": ("ViTImageProcessor", {"size": {"height": 24, "width": 40}, "do_convert_rgb": True},
                           {"return_tensors": "pt"}, [f"pil:{n}" for n in VARS]),
    "vit_imagenet_stats_int_size": ("ViTImageProcessor", {"size": 30, "image_mean": MEAN, "image_std": STD},
                                    {"return_tensors": "np", "do_convert_rgb": True}, [f"pil:{n}" for n in REAL]),
    "vit_no_resize": ("ViTImageProcessor", {"do_resize": False}, {"return_tensors": "np"},
                      ["pil:variants/cat_rgb.png", "hwc:variants/cat_cmyk.jpg"]),
    "vit_no_resize_mixed_list": ("ViTImageProcessor", {"do_resize": False, "do_convert_rgb": True}, {},
                                 ["pil:variants/cat_rgb.png", "pil:variants/coins_l.png", "pil:variants/rocket_exif6.jpg"]),
    "vit_no_normalize": ("ViTImageProcessor", {"do_normalize": False, "size": {"height": 20, "width": 20}},
                         {"return_tensors": "np"}, ["pil:chelsea.png"]),
    "vit_no_rescale_no_normalize": ("ViTImageProcessor", {}, {"do_rescale": False, "do_normalize": False,
                                                              "size": {"height": 16, "width": 12},
                                                              "return_tensors": "np"}, ["pil:rocket.jpg"]),
    "vit_call_overrides": ("ViTImageProcessor", {}, {"size": {"height": 36, "width": 28}, "resample": 3,
                                                     "rescale_factor": 0.5 / 255, "image_mean": 0.25,
                                                     "image_std": [0.3, 0.4, 0.5], "return_tensors": "pt"},
                           ["pil:chelsea.png", "pil:rocket.jpg"]),
    "vit_mixed_batch_pt": ("ViTImageProcessor", {"size": {"height": 32, "width": 32}, "do_convert_rgb": True},
                           {"return_tensors": "pt"}, ["pil:chelsea.png", "pil:variants/cat_rgba.png",
                                                      "pil:coins.png", "pil:variants/coins_i16.png"]),
    "vit_numpy_inputs": ("ViTImageProcessor", {"size": {"height": 32, "width": 48}}, {"return_tensors": "np"},
                         ["hwc:variants/cat_rgb.png", "chw:variants/rocket_exif6.jpg", "pt:variants/cat_cmyk.jpg"]),
    "vit_float_input": ("ViTImageProcessor", {"size": {"height": 32, "width": 48}}, {"return_tensors": "np"},
                        ["float:variants/cat_rgb.png"]),
    "vit_numpy_rgba_and_gray_convert": ("ViTImageProcessor", {"size": {"height": 40, "width": 40},
                                                              "do_convert_rgb": True},
                                        {"return_tensors": "np"}, ["rgba_hwc:variants/cat_rgba.png",
                                                                   "gray_hw1:variants/coins_l.png"]),
    "vit_nearest_bicubic_lanczos": ("ViTImageProcessor", {"resample": 0, "size": {"height": 50, "width": 30}},
                                    {"return_tensors": "np"}, ["pil:rocket.jpg"]),
    "vit_bicubic": ("ViTImageProcessor", {"resample": 3, "size": {"height": 50, "width": 30}},
                    {"return_tensors": "np"}, ["pil:rocket.jpg"]),
    "vit_lanczos_upscale": ("ViTImageProcessor", {"resample": 1, "size": {"height": 100, "width": 90}},
                            {"return_tensors": "np"}, ["pil:variants/cat_rgb.png"]),
    # DeiT: 256x256 bicubic, center crop 224
    "deit_default": ("DeiTImageProcessor", {}, {"return_tensors": "np"}, ["pil:chelsea.png"]),
    "deit_small_crop": ("DeiTImageProcessor", {"size": {"height": 40, "width": 36}, "crop_size": {"height": 31,
                                                                                                   "width": 27},
                                               "do_convert_rgb": True},
                        {"return_tensors": "pt"}, [f"pil:{n}" for n in VARS]),
    "deit_crop_larger_pads": ("DeiTImageProcessor", {"do_resize": False, "crop_size": 80}, {"return_tensors": "np"},
                              ["pil:variants/rocket_exif6.jpg", "pil:variants/cat_rgb.png"]),
    "deit_no_crop": ("DeiTImageProcessor", {"do_center_crop": False, "size": 20}, {"return_tensors": "np"},
                     ["pil:chelsea.png"]),
    # ConvNeXt: shortest_edge < 384 -> resize shortest to int(s / crop_pct), crop s; >= 384 -> warp s x s
    "convnext_default_384": ("ConvNextImageProcessor", {}, {"return_tensors": "np"}, ["pil:variants/cat_rgb.png"]),
    "convnext_224_crop_pct": ("ConvNextImageProcessor", {"size": {"shortest_edge": 224}}, {"return_tensors": "np"},
                              ["pil:chelsea.png", "pil:rocket.jpg"]),
    "convnext_small_crop_pct_0_9": ("ConvNextImageProcessor", {"size": 32, "crop_pct": 0.9, "do_convert_rgb": True},
                                    {"return_tensors": "pt"}, [f"pil:{n}" for n in REAL]),
    "convnext_call_crop_pct": ("ConvNextImageProcessor", {"size": {"shortest_edge": 40}}, {"crop_pct": 0.5,
                                                                                          "return_tensors": "np"},
                               ["pil:variants/rocket_exif6.jpg"]),
}


def main() -> None:
    make_variants()
    OUT.mkdir(parents=True, exist_ok=True)
    goldens: dict[str, np.ndarray] = {}
    for name, (cls_name, init, call, inputs) in CASES.items():
        proc = CLASSES[cls_name](**init)
        images = [open_input(s) for s in inputs]
        out = proc(images, **call)["pixel_values"]
        if isinstance(out, list):
            for i, arr in enumerate(out):
                goldens[f"{name}/{i}"] = np.asarray(arr)
        else:
            goldens[name] = np.asarray(out)
    np.savez_compressed(OUT / "processors.npz", **goldens)
    (OUT / "cases.json").write_text(json.dumps(
        {"_reference": f"transformers {transformers.__version__} *ImageProcessorPil classes, Pillow {PIL.__version__}",
         **{n: {"processor": c, "init": i, "call": k, "inputs": s} for n, (c, i, k, s) in CASES.items()}},
        indent=1) + "\n")
    loaded = {}
    for name in ["horse.png", "chessboard_GRAY.png", *VARS]:
        loaded[name] = np.asarray(load_image(str(IMAGES / name)))
    np.savez_compressed(OUT / "load_image.npz", **loaded)
    for cls_name, cls in CLASSES.items():
        target = OUT / "configs" / cls_name
        cls(do_convert_rgb=True).save_pretrained(target) if cls_name == "DeiTImageProcessor" else cls().save_pretrained(
            target)
    print(f"{len(goldens)} arrays; load_image {len(loaded)}")


if __name__ == "__main__":
    main()
