"""Window attention helpers (Swin Transformer, Liu et al. 2021): cutting a (B, H, W, C) feature
map into non-overlapping ``window`` x ``window`` windows and back, the relative position index
that looks up a window's learned position bias, and the attention mask of shifted windows.

Why here: the windows are plain tensor reshapes that any windowed vision encoder shares (Swin,
the Swin backbone of Mask2Former); the model files keep only their modules.

Conventions (the reference's, so a checkpoint's ``relative_position_bias_table`` means the same):

- windows run row-major over the map, batch first: window ``b * n_windows + i``;
- a relative offset ``(dh, dw)`` between two positions of a ``wh`` x ``ww`` window has the
  table row ``(dh + wh - 1) * (2 * ww - 1) + (dw + ww - 1)``;
- after a cyclic shift by ``shift`` (``torch.roll`` by ``-shift`` on both axes), positions of
  a window that came from different regions of the unshifted map must not attend to each other:
  each axis has three regions (``[0, n - window)``, ``[n - window, n - shift)``,
  ``[n - shift, n)``), and the mask adds -100 (the reference's value, not -inf) to the scores
  between positions of different regions.

Example::

    >>> import torch
    >>> x = torch.arange(2 * 4 * 4 * 1.0).view(2, 4, 4, 1)
    >>> w = window_partition(x, 2)
    >>> w.shape, torch.equal(window_reverse(w, 2, 4, 4), x)
    (torch.Size([8, 4, 1]), True)
    >>> relative_position_index(2, 2).view(4, 4)[0].tolist()
    [4, 3, 1, 0]
    >>> shifted_window_mask(4, 4, 2, 1, torch.float32, None).shape
    torch.Size([4, 4, 4])
"""

from __future__ import annotations

import torch

__all__ = ["window_partition", "window_reverse", "relative_position_index", "shifted_window_mask"]

MASKED = -100.0   # what the reference adds between positions of different shifted regions


def window_partition(x: torch.Tensor, window: int) -> torch.Tensor:
    """(B, H, W, C), H and W multiples of ``window`` -> (B * n_windows, window * window, C)."""
    b, h, w, c = x.shape
    x = x.view(b, h // window, window, w // window, window, c).transpose(2, 3)
    return x.reshape(-1, window * window, c)


def window_reverse(windows: torch.Tensor, window: int, height: int, width: int) -> torch.Tensor:
    """The inverse of :func:`window_partition`: (B * n_windows, window * window, C) -> (B, H, W, C)."""
    c = windows.shape[-1]
    x = windows.reshape(-1, height // window, width // window, window, window, c).transpose(2, 3)
    return x.reshape(-1, height, width, c)


def relative_position_index(wh: int, ww: int, device: torch.device | None = None) -> torch.Tensor:
    """(wh * ww * wh * ww,) long: for each (query, key) pair of a window, row-major, the row of
    the relative position bias table (``(2 * wh - 1) * (2 * ww - 1)`` rows) of their offset.
    Computed, not stored: it depends on the window size alone (the reference keeps it as a
    non-persistent buffer; old checkpoints that hold it have the same values)."""
    rows = torch.arange(wh, device=device).repeat_interleave(ww)   # the row of each position
    cols = torch.arange(ww, device=device).repeat(wh)
    dh = rows[:, None] - rows[None, :] + (wh - 1)
    dw = cols[:, None] - cols[None, :] + (ww - 1)
    return (dh * (2 * ww - 1) + dw).reshape(-1)


def shifted_window_mask(height: int, width: int, window: int, shift: int, dtype: torch.dtype,
                        device: torch.device | None) -> torch.Tensor:
    """(n_windows, window * window, window * window) additive mask for the windows of a
    (height, width) map (multiples of ``window``) cyclically shifted by ``shift``: 0 within a
    region, -100 across regions (see the module doc)."""

    def regions(n: int) -> torch.Tensor:
        idx = torch.arange(n, device=device)
        return (idx >= n - window).long() + (idx >= n - shift).long()

    labels = (regions(height)[:, None] * 3 + regions(width)[None, :]).to(dtype)
    per_window = window_partition(labels.view(1, height, width, 1), window).squeeze(-1)   # (nW, N)
    differ = per_window[:, None, :] != per_window[:, :, None]
    return torch.zeros(differ.shape, dtype=dtype, device=device).masked_fill(differ, MASKED)
