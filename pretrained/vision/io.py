"""Images in any of the forms users have them -> one RGB ``PIL.Image``, as the reference's
``load_image`` gives it to its pipelines: EXIF orientation applied, then ``convert("RGB")``.

Note the reference's two RGB rules, kept apart here as there: :func:`load_image` (the pipelines'
path) converts with Pillow's ``convert("RGB")``, which *drops* an alpha channel, whereas an image
processor called with ``do_convert_rgb=True`` (:func:`convert_to_rgb`) composites transparency onto
a white background first.

Pillow lives in the ``vision`` extra and is imported on first use. Its decompression-bomb limit is
kept as Pillow sets it (``PIL.Image.MAX_IMAGE_PIXELS``, 89,478,485 pixels by default: above it
Pillow warns, above twice it refuses, and the refusal is raised as :class:`ImageTooLargeError`).

Example::

    >>> import numpy as np
    >>> from pretrained.vision import load_image
    >>> load_image(np.zeros((4, 6, 3), np.uint8)).size       # (width, height), as PIL says it
    (6, 4)
"""

from __future__ import annotations

import io
import os
import warnings
from typing import Any, Union

import numpy as np

from ..errors import (ImageDecodeError, ImageFileNotFoundError, ImageTooLargeError, InvalidInputError,
                      MissingDependencyError)

__all__ = ["load_image", "convert_to_rgb", "array_to_pil", "check_pixel_numbers", "pil", "ImageSource"]

ImageSource = Union[str, os.PathLike, bytes, bytearray, memoryview, np.ndarray, Any]

_INSTALL_HINT = "pip install 'pretrained[vision]'"


def pil():
    """The ``PIL.Image`` module, or :class:`MissingDependencyError` with the install hint."""
    try:
        import PIL.Image
        import PIL.ImageOps  # noqa: F401  (exif_transpose)
    except ImportError as e:
        raise MissingDependencyError(f"reading and resizing images needs Pillow: {_INSTALL_HINT}") from e
    return PIL.Image


def _is_pil(image: Any) -> bool:
    return type(image).__module__.startswith("PIL.") and hasattr(image, "getbands")


def _is_torch(value: Any) -> bool:
    return type(value).__module__.startswith("torch")


def _bomb_message(what: str, e: Exception) -> str:
    Image = pil()
    return (f"{what} is too large to decode safely ({e}); Pillow's limit is PIL.Image.MAX_IMAGE_PIXELS = "
            f"{Image.MAX_IMAGE_PIXELS} pixels (refused above twice that). Raise that limit yourself if you trust "
            "the file")


def _open(data: Any, what: str):
    """Open and fully decode (``load()``), so corrupt or truncated data fails here, named."""
    Image = pil()
    try:
        image = Image.open(data)
        image.load()
    except Image.DecompressionBombError as e:
        raise ImageTooLargeError(_bomb_message(what, e)) from None
    except Image.UnidentifiedImageError:
        raise ImageDecodeError(
            f"{what} is not an image Pillow can read (formats: PNG, JPEG, GIF, BMP, TIFF, WebP, ...)") from None
    except (OSError, SyntaxError, ValueError, EOFError) as e:
        raise ImageDecodeError(f"{what} is corrupt or truncated: {e}") from None
    return image


def _check_size(image: Any, what: str) -> None:
    width, height = image.size
    if width == 0 or height == 0:
        raise ImageDecodeError(f"{what} has no pixels ({width}x{height})")


def array_to_pil(array: Any, what: str = "the array"):
    """A numpy array / torch tensor image (HW, HWC or CHW with 1, 3 or 4 channels; uint8, or
    floats/ints the reference's ``to_pil_image`` accepts: whole numbers in [0, 255] as they are,
    floats in [0, 1] scaled by 255 then truncated) -> a ``PIL.Image`` (L, RGB or RGBA)."""
    if _is_torch(array):
        array = array.detach().cpu().numpy()
    array = np.asarray(array)
    check_pixel_numbers(array, what)
    if array.ndim == 3 and array.shape[0] in (1, 3, 4) and array.shape[-1] not in (1, 3, 4):
        array = np.moveaxis(array, 0, -1)  # CHW -> HWC
    elif array.ndim == 3 and array.shape[0] in (1, 3, 4) and array.shape[-1] in (1, 3, 4):
        array = np.moveaxis(array, 0, -1)  # ambiguous: channels first, as the reference assumes
    if array.ndim == 3 and array.shape[-1] == 1:
        array = array[..., 0]
    if array.ndim not in (2, 3) or (array.ndim == 3 and array.shape[-1] not in (3, 4)):
        raise InvalidInputError(
            f"{what} has shape {tuple(array.shape)}: an image is (height, width), (height, width, C) or "
            "(C, height, width) with C = 1, 3 or 4 channels")
    if array.shape[0] == 0 or array.shape[1] == 0:
        raise ImageDecodeError(f"{what} has no pixels (shape {tuple(array.shape)})")
    if array.dtype != np.uint8:
        array = to_uint8(array, what)
    return pil().fromarray(np.ascontiguousarray(array))


def check_pixel_numbers(array: np.ndarray, what: str) -> None:
    """Real numbers, all finite: a complex array or a NaN / infinite value would otherwise be cast
    to some pixel value silently (with only a NumPy warning)."""
    if array.dtype.kind not in "uifb":
        raise InvalidInputError(f"{what} has dtype {array.dtype}; an image array holds real numbers "
                                "(uint8 levels, or floats in [0, 1])")
    if array.dtype.kind == "f" and not np.isfinite(array).all():
        raise InvalidInputError(f"{what} holds NaN or infinite values; an image array holds finite pixel values")


def to_uint8(array: np.ndarray, what: str) -> np.ndarray:
    """The reference's rule before PIL: uint8 as is; whole numbers in [0, 255] cast; floats in [0, 1]
    times 255 (in float64, then float32) then truncated; anything else refused."""
    if array.dtype == np.uint8:
        return array
    check_pixel_numbers(array, what)
    if array.dtype == np.bool_:
        array = array.astype(np.uint8)
    if np.allclose(array, array.astype(int)):
        if array.size and (array.min() < 0 or array.max() > 255):
            raise InvalidInputError(f"{what} has values in [{array.min()}, {array.max()}], outside [0, 255]")
        return array.astype(np.uint8)
    if array.min() >= 0 and array.max() <= 1:
        return (array.astype(np.float64) * 255).astype(np.float32).astype(np.uint8)
    raise InvalidInputError(
        f"{what} has float values in [{array.min()}, {array.max()}]: image floats must be in [0, 1]")


def load_image(source: ImageSource):
    """One RGB ``PIL.Image`` from a path (str / ``PathLike``), encoded bytes, a ``PIL.Image``, or a
    numpy array / torch tensor image (see :func:`array_to_pil`).

    EXIF orientation is applied, then ``convert("RGB")`` (alpha dropped, as the reference's
    ``load_image`` does). Errors: :class:`ImageFileNotFoundError` (no such file),
    :class:`ImageDecodeError` (not an image, corrupt, truncated, 0x0), :class:`ImageTooLargeError`
    (over Pillow's decompression-bomb limit), :class:`InvalidInputError` (a URL: nothing is
    downloaded; wrong array shape or channel count; another type)."""
    pil()
    if isinstance(source, str) and source.startswith(("http://", "https://")):
        raise InvalidInputError(
            f"{source!r} is a URL: pretrained does not download images; download it first and pass the file "
            "path (or its bytes, or a PIL.Image)")
    if isinstance(source, (str, os.PathLike)):
        path = os.fspath(source)
        if not os.path.exists(path):
            raise ImageFileNotFoundError(f"no such image file: {path!r}")
        if os.path.isdir(path):
            raise InvalidInputError(f"{path!r} is a directory, not an image file")
        if os.path.getsize(path) == 0:
            raise ImageDecodeError(f"image file {path!r} is empty (0 bytes)")
        image = _open(path, f"image file {path!r}")
        what = f"image file {path!r}"
    elif isinstance(source, (bytes, bytearray, memoryview)):
        if len(source) == 0:
            raise ImageDecodeError("the image bytes are empty")
        what = f"the image bytes ({len(source)} bytes)"
        image = _open(io.BytesIO(bytes(source)), what)
    elif _is_pil(source):
        image, what = source, "the PIL image"
    elif isinstance(source, np.ndarray) or _is_torch(source):
        image, what = array_to_pil(source, "the image array"), "the image array"
    else:
        raise InvalidInputError(
            f"load_image takes a file path, encoded bytes, a PIL.Image, or a numpy array / torch tensor image, "
            f"not {type(source).__name__}")
    _check_size(image, what)
    try:
        with warnings.catch_warnings():
            warnings.simplefilter("ignore", UserWarning)  # exif_transpose on odd EXIF data
            image = pil_ops().exif_transpose(image)
        return image.convert("RGB")
    except (OSError, ValueError, SyntaxError) as e:
        raise ImageDecodeError(f"{what} cannot be converted to RGB: {e}") from None


def pil_ops():
    pil()
    import PIL.ImageOps

    return PIL.ImageOps


def convert_to_rgb(image: Any) -> np.ndarray:
    """The image processors' ``do_convert_rgb`` rule (the reference's): a ``PIL.Image`` with an alpha
    band or a ``transparency`` entry is composited onto opaque white, others ``convert("RGB")``;
    returns HWC uint8. Arrays (HWC or CHW): 1 channel repeated, 4 channels alpha-blended onto white
    (rounded for integers), 3 as they are; the layout is kept."""
    Image = pil()
    if _is_pil(image):
        if "A" in image.getbands() or image.info.get("transparency") is not None:
            rgba = image.convert("RGBA")
            white = Image.new("RGBA", rgba.size, (255, 255, 255, 255))
            return np.array(Image.alpha_composite(white, rgba).convert("RGB"))
        return np.array(image.convert("RGB"))
    array = np.asarray(image)
    axis = channel_axis(array)
    array = np.moveaxis(array, axis, -1)
    channels = array.shape[-1]
    if channels == 1:
        out = np.repeat(array, 3, axis=-1)
    elif channels == 4:
        floating = np.issubdtype(array.dtype, np.floating)
        if floating and (array.min() < 0.0 or array.max() > 1.0):
            raise InvalidInputError(
                f"an RGBA float image must be in [0, 1] to be composited onto white, got [{array.min()}, {array.max()}]")
        white = 1.0 if floating else 255
        alpha = array[..., 3:4] / white
        blend = alpha * array[..., :3] + (1 - alpha) * white
        out = blend.astype(array.dtype) if floating else np.round(blend).astype(array.dtype)
    else:
        out = array
    return np.moveaxis(out, -1, axis)


def channel_axis(array: np.ndarray, channels: tuple[int, ...] = (1, 3, 4)) -> int:
    """0 (CHW) or 2 (HWC) for a 3-D image array, channels first when both could be (as the
    reference); :class:`InvalidInputError` when neither axis has 1, 3 or 4 entries."""
    if array.ndim != 3:
        raise InvalidInputError(f"an image array must have 3 dimensions here, got shape {tuple(array.shape)}")
    if array.shape[0] in channels:
        return 0
    if array.shape[2] in channels:
        return 2
    raise InvalidInputError(
        f"cannot tell the channels of an image of shape {tuple(array.shape)}: neither the first nor the last "
        f"axis has {' or '.join(map(str, channels))} entries (an RGB image has 3)")
