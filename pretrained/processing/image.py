"""Image processors: pictures -> ``pixel_values``, step for step as the reference's PIL/numpy
("slow") processors: optional RGB conversion, resize through Pillow (the reference's resampling:
the numbers are Pillow's own), center crop (zero padding when the picture is smaller), rescale
(``x * factor`` in float64, stored float32), normalize (``(x - mean) / std`` in float32).

Resizing is per picture (Pillow); cropping is slicing; rescale and normalize run once on the whole
batch as torch tensors when the pictures share a shape (the same IEEE operations as the
reference's numpy, so the same bits).

Example::

    >>> import numpy as np
    >>> from pretrained.processing import ViTImageProcessor
    >>> proc = ViTImageProcessor(size={"height": 8, "width": 8})
    >>> proc(np.zeros((20, 30, 3), np.uint8), return_tensors="pt")["pixel_values"].shape
    torch.Size([1, 3, 8, 8])
"""

from __future__ import annotations

import copy
import math
import os
from collections.abc import Mapping
from typing import TYPE_CHECKING, Any, ClassVar

import numpy as np

from .base import BatchFeature, read_preprocessor_config, write_preprocessor_config
from ..errors import ConfigError, ImageDecodeError, InvalidInputError, UnsupportedOptionError
from ..vision.io import _is_pil, _is_torch, channel_axis, check_pixel_numbers, convert_to_rgb, load_image, pil, to_uint8

if TYPE_CHECKING:   # torch is imported at first use: importing a processor stays cheap
    import torch

__all__ = ["BaseImageProcessor", "ViTImageProcessor", "DeiTImageProcessor", "ConvNextImageProcessor",
           "IMAGENET_STANDARD_MEAN", "IMAGENET_STANDARD_STD", "IMAGENET_DEFAULT_MEAN", "IMAGENET_DEFAULT_STD"]

IMAGENET_STANDARD_MEAN = (0.5, 0.5, 0.5)
IMAGENET_STANDARD_STD = (0.5, 0.5, 0.5)
IMAGENET_DEFAULT_MEAN = (0.485, 0.456, 0.406)
IMAGENET_DEFAULT_STD = (0.229, 0.224, 0.225)

# Pillow's filter numbers (PIL.Image.Resampling): what configs store under "resample".
RESAMPLING = {0: "NEAREST", 1: "LANCZOS", 2: "BILINEAR", 3: "BICUBIC", 4: "BOX", 5: "HAMMING"}
_SIZE_KEYS = ({"height", "width"}, {"shortest_edge"}, {"shortest_edge", "longest_edge"}, {"longest_edge"},
              {"max_height", "max_width"})


def size_dict(size: Any, *, default_to_square: bool = True, name: str = "size") -> dict[str, int] | None:
    """The reference's size spellings -> a size dict: an int is ``height = width`` (or
    ``shortest_edge`` when not ``default_to_square``), a pair is (height, width), a dict is kept
    when its keys are one of the accepted sets."""
    if size is None:
        return None
    if isinstance(size, Mapping):
        out = dict(size)
    elif isinstance(size, (int, np.integer)) and not isinstance(size, bool):
        out = {"height": int(size), "width": int(size)} if default_to_square else {"shortest_edge": int(size)}
    elif isinstance(size, (tuple, list)) and len(size) == 2:
        out = {"height": size[0], "width": size[1]}
    else:
        raise ConfigError(f"{name}={size!r}: use an int, (height, width), or a dict with keys "
                          "height/width or shortest_edge")
    if set(out) not in _SIZE_KEYS:
        raise ConfigError(f"{name} must have one of the key sets {[sorted(k) for k in _SIZE_KEYS]}, got {sorted(out)}")
    for key, value in out.items():
        if isinstance(value, bool) or not isinstance(value, (int, np.integer)) or value <= 0:
            raise ConfigError(f"{name}[{key!r}] must be a positive integer, got {value!r}")
        out[key] = int(value)
    return out


def _stats(value: Any, name: str) -> Any:
    if value is None or isinstance(value, (int, float)) and not isinstance(value, bool):
        return None if value is None else float(value)
    try:
        values = tuple(float(v) for v in value)
    except (TypeError, ValueError):
        raise ConfigError(f"{name} must be a number or a list of numbers, got {value!r}") from None
    return values


def _resample(value: Any) -> int:
    number = getattr(value, "value", value)
    if isinstance(number, bool) or not isinstance(number, (int, np.integer)) or int(number) not in RESAMPLING:
        raise ConfigError(f"resample={value!r}: use a PIL.Image.Resampling filter number "
                          f"({', '.join(f'{k} {v}' for k, v in RESAMPLING.items())})")
    return int(number)


class BaseImageProcessor:
    """Base of the image processors: the ``preprocessor_config.json`` keys, ``from_pretrained`` /
    ``save_pretrained``, and the reference's preprocessing steps.

    Every key of ``config_keys`` is an ``__init__`` / call keyword; ``None`` means the class default
    (a class attribute of that name). Unknown config keys are kept and written back."""

    model_input_names: ClassVar[list[str]] = ["pixel_values"]
    config_keys: ClassVar[tuple[str, ...]] = (
        "do_resize", "size", "resample", "do_center_crop", "crop_size", "do_rescale", "rescale_factor",
        "do_normalize", "image_mean", "image_std", "do_convert_rgb", "default_to_square")
    do_resize: Any = None
    size: Any = None
    resample: Any = None
    do_center_crop: Any = None
    crop_size: Any = None
    do_rescale: Any = None
    rescale_factor: Any = 1 / 255
    do_normalize: Any = None
    image_mean: Any = None
    image_std: Any = None
    do_convert_rgb: Any = None
    default_to_square: Any = True

    def __init__(self, **kwargs: Any) -> None:
        kwargs.pop("image_processor_type", None)
        kwargs.pop("feature_extractor_type", None)
        options = {key: kwargs.pop(key, None) for key in self.config_keys}
        for key, value in self._standardize(
                {k: (v if v is not None else copy.deepcopy(getattr(type(self), k))) for k, v in options.items()}).items():
            setattr(self, key, value)
        self.extra_config: dict[str, Any] = kwargs

    # --- configuration ------------------------------------------------------------------------
    def _standardize(self, options: dict[str, Any]) -> dict[str, Any]:
        square = options.get("default_to_square")
        square = True if square is None else bool(square)
        options["size"] = size_dict(options.get("size"), default_to_square=square)
        options["crop_size"] = size_dict(options.get("crop_size"), name="crop_size")
        options["image_mean"] = _stats(options.get("image_mean"), "image_mean")
        options["image_std"] = _stats(options.get("image_std"), "image_std")
        if options.get("resample") is not None:
            options["resample"] = _resample(options["resample"])
        factor = options.get("rescale_factor")
        if factor is not None and (isinstance(factor, bool) or not isinstance(factor, (int, float))):
            raise ConfigError(f"rescale_factor must be a number, got {factor!r}")
        return options

    def to_dict(self) -> dict[str, Any]:
        """The ``preprocessor_config.json`` content, as the reference writes it: keys whose value is
        ``None`` and whose class default is ``None`` are left out; tuples are lists."""
        out = dict(self.extra_config)
        for key in self.config_keys:
            value = getattr(self, key)
            if value is None and getattr(type(self), key) is None:
                continue
            if key == "default_to_square" and value == type(self).default_to_square:
                continue  # a class constant, which the reference does not write
            out[key] = list(value) if isinstance(value, tuple) else copy.deepcopy(value)
        out["image_processor_type"] = type(self).__name__
        return dict(sorted(out.items()))

    def to_json_string(self) -> str:
        import json

        return json.dumps(self.to_dict(), indent=2, sort_keys=True) + "\n"

    def __repr__(self) -> str:
        return f"{type(self).__name__} {self.to_json_string()}"

    def __eq__(self, other: object) -> bool:
        return type(other) is type(self) and self.to_dict() == other.to_dict()  # type: ignore[union-attr]

    __hash__ = None  # type: ignore[assignment]

    @classmethod
    def from_dict(cls, config: Mapping[str, Any], **overrides: Any) -> "BaseImageProcessor":
        merged = {**config, **overrides}
        try:
            return cls(**merged)
        except TypeError as e:
            raise ConfigError(f"{cls.__name__}: {e}") from None

    @classmethod
    def from_pretrained(cls, name_or_path: str | os.PathLike, *, revision: str | None = None,
                        cache_dir: str | os.PathLike | None = None, local_files_only: bool = False,
                        token: str | bool | None = None, **overrides: Any) -> "BaseImageProcessor":
        """Load ``preprocessor_config.json`` from a folder (or that file), or a hub id (cache first);
        keyword arguments override its keys."""
        return cls.from_dict(read_preprocessor_config(name_or_path, revision=revision, cache_dir=cache_dir,
                                                      local_files_only=local_files_only, token=token), **overrides)

    def save_pretrained(self, save_directory: str | os.PathLike, **_: Any) -> list[str]:
        """Write ``preprocessor_config.json`` (atomically) into ``save_directory``."""
        return write_preprocessor_config(save_directory, self.to_json_string())

    # --- calling ------------------------------------------------------------------------------
    def __call__(self, images: Any, **kwargs: Any) -> BatchFeature:
        return self.preprocess(images, **kwargs)

    def preprocess(self, images: Any, *, return_tensors: str | None = None, **kwargs: Any) -> BatchFeature:
        """``images``: one picture or a list (PIL images, numpy arrays / torch tensors HWC or CHW, file
        paths), or a 4-D batch array. Keyword arguments override the config keys for this call.
        Returns ``{"pixel_values": ...}``: a list of CHW arrays (``return_tensors=None``), one
        array (``"np"``) or one tensor (``"pt"``)."""
        unknown = sorted(set(kwargs) - set(self.config_keys) - set(self.call_keys))
        if unknown:
            raise InvalidInputError(f"{type(self).__name__}() got unexpected keyword arguments {unknown}; "
                                    f"accepted: {sorted(set(self.config_keys) | set(self.call_keys))}")
        merged = {k: kwargs[k] if kwargs.get(k) is not None else getattr(self, k) for k in self.config_keys}
        opts = self._standardize(merged)
        opts.update({k: kwargs.get(k, getattr(self, k, None)) for k in self.call_keys})
        self._validate(opts)
        pictures = [self._to_chw(image, bool(opts["do_convert_rgb"]), i) for i, image in enumerate(_flatten(images))]
        return self._finish(self._geometry(pictures, opts), opts, return_tensors)

    call_keys: ClassVar[tuple[str, ...]] = ()

    def _validate(self, opts: dict[str, Any]) -> None:
        if opts["do_resize"] and opts["size"] is None:
            raise InvalidInputError("do_resize=True needs size=")
        if opts["do_center_crop"] and opts["crop_size"] is None:
            raise InvalidInputError("do_center_crop=True needs crop_size=")
        if opts["do_rescale"] and opts["rescale_factor"] is None:
            raise InvalidInputError("do_rescale=True needs rescale_factor=")
        if opts["do_normalize"] and (opts["image_mean"] is None or opts["image_std"] is None):
            raise InvalidInputError("do_normalize=True needs image_mean= and image_std=")

    def _to_chw(self, image: Any, do_convert_rgb: bool, index: int) -> np.ndarray:
        """One input -> a CHW numpy array, as the reference's ``process_image``."""
        if isinstance(image, (str, os.PathLike)):
            image = load_image(image)
        if _is_torch(image):
            image = image.detach().cpu().numpy()
        was_pil = _is_pil(image)
        if not was_pil and not isinstance(image, np.ndarray):
            raise InvalidInputError(
                f"image {index} is a {type(image).__name__}: pass PIL images, numpy arrays, torch tensors or file "
                "paths")
        if was_pil:
            width, height = image.size
            if width == 0 or height == 0:
                raise ImageDecodeError(f"image {index} has no pixels ({width}x{height})")
        if not was_pil:
            check_pixel_numbers(image, f"image {index}")
        if not was_pil and image.ndim == 2:
            image = image[None]
        if not was_pil and image.ndim != 3:
            raise InvalidInputError(f"image {index} has shape {tuple(image.shape)}: an image is HW, HWC or CHW")
        if do_convert_rgb:
            image = convert_to_rgb(image)
        elif was_pil:
            image = np.array(image)
        if image.ndim == 2:
            chw = image[None]
        elif was_pil:
            chw = np.moveaxis(image, -1, 0)
        else:
            chw = image if channel_axis(image) == 0 else np.moveaxis(image, -1, 0)
        if chw.shape[1] == 0 or chw.shape[2] == 0:   # an empty array would resize to zeros silently
            raise ImageDecodeError(f"image {index} has no pixels ({chw.shape[2]}x{chw.shape[1]}, "
                                   f"array shape {tuple(image.shape)})")
        return chw

    def _geometry(self, pictures: list[np.ndarray], opts: dict[str, Any]) -> list[np.ndarray]:
        out = []
        for image in pictures:
            if opts["do_resize"]:
                image = self.resize(image, opts["size"], opts["resample"], opts)
            if opts["do_center_crop"]:
                image = center_crop(image, opts["crop_size"]["height"], opts["crop_size"]["width"])
            out.append(image)
        return out

    def resize(self, image: np.ndarray, size: dict[str, int], resample: int | None,
               opts: dict[str, Any] | None = None) -> np.ndarray:
        """Resize a CHW image to ``size`` (height/width, or shortest_edge keeping the aspect ratio)."""
        if set(size) == {"height", "width"}:
            return resize(image, size["height"], size["width"], resample)
        if set(size) == {"shortest_edge"}:
            return resize(image, *shortest_edge_size(image.shape[-2:], size["shortest_edge"]), resample)
        raise UnsupportedOptionError(f"{type(self).__name__}: size keys {sorted(size)} are not supported here "
                                     "(height/width or shortest_edge)")

    def _finish(self, pictures: list[np.ndarray], opts: dict[str, Any], return_tensors: Any) -> BatchFeature:
        import torch

        kind = getattr(return_tensors, "value", return_tensors)
        if kind not in (None, "pt", "np"):
            raise UnsupportedOptionError(
                f"return_tensors={return_tensors!r}: only 'pt' (PyTorch), 'np' (NumPy) or None are supported")
        for i, p in enumerate(pictures):
            if opts["do_normalize"] and isinstance(opts["image_mean"], tuple) and len(opts["image_mean"]) != p.shape[0]:
                raise InvalidInputError(
                    f"image {i} has {p.shape[0]} channel(s) but image_mean has {len(opts['image_mean'])} values: "
                    "convert it to RGB first (do_convert_rgb=True, or pretrained.vision.load_image)")
            if opts["do_normalize"] and isinstance(opts["image_std"], tuple) and len(opts["image_std"]) != p.shape[0]:
                raise InvalidInputError(
                    f"image {i} has {p.shape[0]} channel(s) but image_std has {len(opts['image_std'])} values")
        same = len({p.shape for p in pictures}) == 1
        if kind is not None and not same:
            raise InvalidInputError(
                f"the processed images have different shapes ({sorted({p.shape for p in pictures})}), so they cannot "
                "be one batch: resize them (do_resize=True) or pass return_tensors=None")
        done: list = []
        table = _value_table(pictures, opts)
        if table is not None:   # uint8 pictures: one lookup per pixel, written straight into the batch
            done = [_looked_up(pictures, table)] if same else [_looked_up([p], table) for p in pictures]
            pictures = []
        groups = [] if table is not None else [np.stack(pictures)] if same else [p[None] for p in pictures]
        for batch in groups:
            done.append(_rescale_normalize(torch.from_numpy(batch), opts))
        if kind == "pt":
            return BatchFeature(pixel_values=done[0].contiguous())
        arrays = done[0].numpy() if same else None
        if kind == "np":
            return BatchFeature(pixel_values=arrays)
        return BatchFeature(pixel_values=list(arrays) if same else [x[0].numpy() for x in done])


def _flatten(images: Any) -> list[Any]:
    if isinstance(images, (list, tuple)):
        if len(images) == 0:
            raise InvalidInputError("got an empty list of images")
        out = []
        for item in images:
            out.extend(_flatten(item) if isinstance(item, (list, tuple)) else [item])
        return out
    if (isinstance(images, np.ndarray) or _is_torch(images)) and images.ndim == 4:
        return list(images)
    return [images]


def shortest_edge_size(hw: tuple[int, int], shortest: int) -> tuple[int, int]:
    """The reference's (height, width) when the shorter side becomes ``shortest`` (the longer one
    truncated: ``int(shortest * long / short)``)."""
    height, width = int(hw[0]), int(hw[1])
    short, long = (width, height) if width <= height else (height, width)
    new_long = int(shortest * long / short)
    return (new_long, shortest) if width <= height else (shortest, new_long)


def capped_short_side(height: int, width: int, size: int, max_size: int | None) -> tuple[int, float | None]:
    """The shorter side wanted, lowered so the longer side stays within ``max_size``; and the
    unrounded value when it was lowered (the reference sizes the longer side from it)."""
    if max_size is not None:
        short, long = float(min(height, width)), float(max(height, width))
        if long / short * size > max_size:
            raw = max_size * short / long
            return int(round(raw)), raw
    return size, None


def size_with_aspect_ratio(hw: tuple[int, int], size: int, max_size: int | None = None) -> tuple[int, int]:
    """The reference's (height, width) for ``shortest_edge`` / ``longest_edge`` (DETR's and
    Mask2Former's rule): the shorter side ``size`` (aspect kept, the other side truncated) unless
    the longer one would pass ``max_size`` (then the shorter is ``round(max_size * short / long)``);
    unchanged when the shorter side already is ``size``.

        >>> size_with_aspect_ratio((100, 400), 800, 1333)
        (333, 1333)
    """
    height, width = int(hw[0]), int(hw[1])
    size, raw = capped_short_side(height, width, size, max_size)
    if (height <= width and height == size) or (width <= height and width == size):
        return height, width
    if width < height:
        return int((raw if raw is not None else size) * height / width), size
    return size, int((raw if raw is not None else size) * width / height)


def _value_table(pictures: list[np.ndarray], opts: dict[str, Any]) -> np.ndarray | None:
    """For uint8 pictures, the float32 value each of the 256 levels of each channel becomes after
    rescale and normalize, computed with the same operations as the per-pixel path (float64
    rescale, float32 normalize), so a lookup gives the same bits without the picture-sized float64
    and float32 temporaries (which also fragment the heap: DETR's batch of 8 left ~160 MiB
    behind). None when the lookup does not apply."""
    import torch

    if not pictures or any(p.dtype != np.uint8 for p in pictures) or not (opts["do_rescale"] or opts["do_normalize"]):
        return None
    channels = {p.shape[0] for p in pictures}
    if len(channels) != 1:
        return None
    channels = channels.pop()
    levels = torch.arange(256, dtype=torch.uint8).expand(channels, 256).reshape(1, channels, 1, 256)
    return _rescale_normalize(levels, opts).reshape(channels, 256).numpy()


def _rescale_normalize(x: "torch.Tensor", opts: dict[str, Any]) -> "torch.Tensor":
    """(N, C, H, W) -> rescaled in float64 then float32 (the reference's rounding), normalized per
    channel in float32."""
    import torch

    if opts["do_rescale"]:
        x = (x.to(torch.float64) * float(opts["rescale_factor"])).to(torch.float32)
    if opts["do_normalize"]:
        if not x.is_floating_point():
            x = x.to(torch.float32)
        channels = x.shape[1]
        mean, std = opts["image_mean"], opts["image_std"]
        mean = torch.tensor(mean if isinstance(mean, tuple) else (mean,) * channels, dtype=x.dtype)
        std = torch.tensor(std if isinstance(std, tuple) else (std,) * channels, dtype=x.dtype)
        x = (x - mean.view(1, -1, 1, 1)) / std.view(1, -1, 1, 1)
    return x


def _looked_up(pictures: list[np.ndarray], table: np.ndarray) -> "torch.Tensor":
    """Same-shape uint8 CHW pictures -> one float32 (N, C, H, W) tensor through ``table``."""
    import torch

    out = np.empty((len(pictures),) + pictures[0].shape, dtype=np.float32)
    for i, picture in enumerate(pictures):
        for c in range(picture.shape[0]):
            np.take(table[c], picture[c], out=out[i, c], mode="clip")
    return torch.from_numpy(out)


def pad_batch(pictures: list[np.ndarray], opts: dict[str, Any], size: tuple[int, int]
              ) -> tuple["torch.Tensor", "torch.Tensor"]:
    """CHW pictures rescaled / normalized as :meth:`BaseImageProcessor._finish` does, each written at
    the top left of one zero-filled ``(N, C, *size)`` batch (no per-picture copies kept), and the
    ``(N, *size)`` int64 pixel mask (1 on the picture, 0 on the padding)."""
    import torch

    table = _value_table(pictures, opts)
    values = pixel_mask = None
    for i, p in enumerate(pictures):
        if table is not None:
            x = _looked_up([p], table)[0]
        else:
            x = _rescale_normalize(torch.from_numpy(np.ascontiguousarray(p))[None], opts)[0]
        if values is None:
            values = torch.zeros((len(pictures), x.shape[0], *size), dtype=x.dtype)
            pixel_mask = torch.zeros((len(pictures), *size), dtype=torch.int64)
        values[i, :, :x.shape[1], :x.shape[2]] = x
        pixel_mask[i, :x.shape[1], :x.shape[2]] = 1
    return values, pixel_mask


def padded_size(pictures: list[np.ndarray], pad_size: Mapping[str, int] | None) -> tuple[int, int]:
    """The (height, width) every CHW picture of a batch is padded to (bottom and right): ``pad_size``
    when given, else the batch's largest; a picture larger than ``pad_size`` is refused."""
    if pad_size is not None:
        size = (pad_size["height"], pad_size["width"])
    else:
        size = (max(p.shape[-2] for p in pictures), max(p.shape[-1] for p in pictures))
    for i, p in enumerate(pictures):
        h, w = p.shape[-2:]
        if h > size[0] or w > size[1]:
            raise InvalidInputError(f"image {i} is {h}x{w} after resizing, larger than pad_size {size[0]}x{size[1]}")
    return size


def resize(image: np.ndarray, height: int, width: int, resample: int | None) -> np.ndarray:
    """A CHW image resized by Pillow as the reference does: uint8 as is; whole-number arrays in
    [0, 255] cast to uint8; floats in [0, 1] scaled to uint8 and back (``/ 255`` as float32 after)."""
    Image = pil()
    back_to_unit = image.dtype != np.uint8 and not np.allclose(image, image.astype(int))
    hwc = np.moveaxis(image, 0, -1)
    hwc = hwc[..., 0] if hwc.shape[-1] == 1 else hwc
    picture = Image.fromarray(np.ascontiguousarray(to_uint8(hwc, "the image")))
    out = np.array(picture.resize((width, height), resample=2 if resample is None else resample))
    out = out[None] if out.ndim == 2 else np.moveaxis(out, -1, 0)
    if back_to_unit:
        out = (out.astype(np.float64) * (1 / 255)).astype(np.float32)
    return out


def center_crop(image: np.ndarray, height: int, width: int) -> np.ndarray:
    """The reference's center crop of a CHW image: top/left ``(size - crop) // 2``; a picture smaller
    than the crop is padded with zeros (``ceil`` of half the shortfall before)."""
    orig_h, orig_w = image.shape[-2:]
    top, left = (orig_h - height) // 2, (orig_w - width) // 2
    if top >= 0 and left >= 0:
        return image[..., top:top + height, left:left + width]
    new_h, new_w = max(height, orig_h), max(width, orig_w)
    padded = np.zeros(image.shape[:-2] + (new_h, new_w), dtype=image.dtype)
    pad_top, pad_left = math.ceil((new_h - orig_h) / 2), math.ceil((new_w - orig_w) / 2)
    padded[..., pad_top:pad_top + orig_h, pad_left:pad_left + orig_w] = image
    top, left = top + pad_top, left + pad_left
    return padded[..., max(0, top):min(new_h, top + height), max(0, left):min(new_w, left + width)]


class ViTImageProcessor(BaseImageProcessor):
    """ViT's: resize to 224x224 (bilinear), rescale 1/255, normalize with mean = std = 0.5."""

    do_resize = True
    size = {"height": 224, "width": 224}
    resample = 2
    do_rescale = True
    do_normalize = True
    image_mean = IMAGENET_STANDARD_MEAN
    image_std = IMAGENET_STANDARD_STD


class DeiTImageProcessor(BaseImageProcessor):
    """DeiT's: resize to 256x256 (bicubic), center crop 224x224, rescale, normalize (0.5)."""

    do_resize = True
    size = {"height": 256, "width": 256}
    resample = 3
    do_center_crop = True
    crop_size = {"height": 224, "width": 224}
    do_rescale = True
    do_normalize = True
    image_mean = IMAGENET_STANDARD_MEAN
    image_std = IMAGENET_STANDARD_STD


class ConvNextImageProcessor(BaseImageProcessor):
    """ConvNeXt's: ``size={"shortest_edge": s}``; below 384 the shorter side goes to
    ``int(s / crop_pct)`` (aspect kept) then a center crop s x s; from 384 on, a warp to s x s.
    Bicubic, rescale, normalize (0.5)."""

    config_keys = (*BaseImageProcessor.config_keys, "crop_pct")
    do_resize = True
    size = {"shortest_edge": 384}
    resample = 3
    do_rescale = True
    do_normalize = True
    image_mean = IMAGENET_STANDARD_MEAN
    image_std = IMAGENET_STANDARD_STD
    default_to_square = False
    crop_pct: Any = 224 / 256

    def resize(self, image: np.ndarray, size: dict[str, int], resample: int | None,
               opts: dict[str, Any] | None = None) -> np.ndarray:
        if "shortest_edge" not in size:
            raise InvalidInputError(f"ConvNextImageProcessor needs size={{'shortest_edge': n}}, got {size}")
        shortest = size["shortest_edge"]
        crop_pct = (opts or {}).get("crop_pct") or self.crop_pct
        if shortest < 384:
            target = shortest_edge_size(image.shape[-2:], int(shortest / crop_pct))
            return center_crop(resize(image, *target, resample), shortest, shortest)
        return resize(image, shortest, shortest, resample)
