"""The ``pixel_values`` checks every vision model shares, written once: a float tensor of
(batch, num_channels, height, width) (one (C, H, W) image is a batch of one), cast to the model's
dtype, or an :class:`~pretrained.errors.InvalidInputError` that says how to make it.

Why here: ViT, DeiT, YOLOS, ConvNeXt, Swin, SegFormer, ResNet, DETR and Mask2Former all take
pictures the same way; what differs is only the size rule a model adds after this check (a fixed
``image_size``, at least one patch, enough pixels for every downsampling step), so each model keeps
that rule and ends its errors with the same :func:`pixels_hint`.

Example::

    >>> import torch
    >>> check_image_pixels(torch.zeros(3, 8, 8), 3, torch.float32, "ViT").shape
    torch.Size([1, 3, 8, 8])
    >>> pixels_hint("ViT", 3, (224, 224))[:60]
    'ViT takes pixel_values (batch, num_channels=3, height=224, w'
"""

from __future__ import annotations

from typing import Any

import torch

from ..errors import InvalidInputError

__all__ = ["check_image_pixels", "pixels_hint"]


def pixels_hint(model: str, num_channels: int, size: tuple[int, int] | None = None) -> str:
    """What every pixel_values error ends with: the shape ``model`` takes (with the one
    ``size`` (height, width) when it takes one) and how to make it."""
    hw = "height, width" if size is None else f"height={size[0]}, width={size[1]}"
    return (f"{model} takes pixel_values (batch, num_channels={num_channels}, {hw}); make them from "
            "images with the model's image processor (AutoImageProcessor, return_tensors='pt')")


def check_image_pixels(pixel_values: Any, num_channels: int, dtype: torch.dtype, model: str,
                       size: tuple[int, int] | None = None) -> torch.Tensor:
    """(B, num_channels, H, W) float pixels in ``dtype`` (one (C, H, W) image is a batch of one),
    or an :class:`InvalidInputError` that says how to make them. The checks every vision model
    shares; a model adds its own size rule after (``size`` only words the hint)."""
    hint = pixels_hint(model, num_channels, size)
    if not isinstance(pixel_values, torch.Tensor):
        raise InvalidInputError(f"pixel_values must be a torch.Tensor, got {type(pixel_values).__name__}; {hint}")
    if not pixel_values.is_floating_point():
        raise InvalidInputError(f"pixel_values must hold float pixels (rescaled and normalised), got "
                                f"{pixel_values.dtype}; {hint}")
    if pixel_values.dim() == 3 and pixel_values.shape[0] == num_channels:
        pixel_values = pixel_values.unsqueeze(0)
    got = tuple(pixel_values.shape)
    if pixel_values.dim() != 4 or 0 in got:
        raise InvalidInputError(f"pixel_values has shape {got}; {hint}")
    if got[1] != num_channels:
        if got[-1] == num_channels:
            hint = f"the pixels look channels-last: pass pixel_values.permute(0, 3, 1, 2); {hint}"
        raise InvalidInputError(f"pixel_values has {got[1]} channels (shape {got}), the model {num_channels}; {hint}")
    return pixel_values.to(dtype)
