"""Mask2Former's training loss (Cheng et al. 2022), as the reference computes it when
``mask_labels`` and ``class_labels`` are given.

1. Match (no gradient): per image, the cost of giving target mask ``j`` to query ``i`` is
   ``class_weight * -p_i(class_j) + mask_weight * BCE(i, j) + dice_weight * dice(i, j)``, the two
   mask terms on ``train_num_points`` points drawn uniformly (the same points for every query and
   target of the image); the one-to-one assignment of least cost is :func:`linear_sum_assignment`
   (ours, in :mod:`.detection`).
2. ``loss_mask`` (sigmoid BCE) and ``loss_dice`` over the matched pairs, on ``train_num_points``
   points per pair: ``importance_sample_ratio`` of them the most uncertain (|logit| smallest) among
   ``oversample_ratio`` times as many random ones, the rest random; summed over pairs and divided by
   the number of target masks in the batch (at least 1; the mean over processes under
   ``torch.distributed``).
3. ``loss_cross_entropy``: every query's class logits against its matched class, the unmatched ones
   against "no object" (the last logit, weighted ``no_object_weight``).
4. The same for every intermediate prediction (keys suffixed ``_<layer>``); each term times its
   weight; ``loss`` the sum.

The points are drawn from torch's global generator in the reference's order (per image for the
matcher, then the uncertain and the random points), so a seeded run gives the reference's numbers.

Example::

    >>> import torch
    >>> from types import SimpleNamespace
    >>> cfg = SimpleNamespace(num_labels=3, no_object_weight=0.1, class_weight=2.0, mask_weight=5.0, dice_weight=5.0,
    ...                       train_num_points=16, oversample_ratio=3.0, importance_sample_ratio=0.75)
    >>> _ = torch.manual_seed(0)
    >>> losses = mask2former_losses(torch.randn(1, 4, 8, 8), torch.randn(1, 4, 4), [torch.ones(1, 8, 8)],
    ...                             [torch.tensor([2])], [], cfg)
    >>> sorted(losses)
    ['loss_cross_entropy', 'loss_dice', 'loss_mask']
"""

from __future__ import annotations

from typing import Any

import torch
from torch.nn import functional as F

from ..errors import InvalidInputError
from .detection import linear_sum_assignment

__all__ = ["mask2former_losses", "weighted_loss", "sample_point", "check_mask_labels", "LOSS_WEIGHTS"]

# loss term -> the config field weighing it
LOSS_WEIGHTS = {"loss_cross_entropy": "class_weight", "loss_mask": "mask_weight", "loss_dice": "dice_weight"}


def sample_point(features: torch.Tensor, points: torch.Tensor) -> torch.Tensor:
    """Bilinear values of (N, C, H, W) ``features`` at (N, P, 2) points x, y in [0, 1] (zeros
    outside): (N, C, P). The points are drawn in float32 (the reference's numbers) and cast."""
    grid = (2.0 * points.unsqueeze(2) - 1.0).to(features.dtype)
    return F.grid_sample(features, grid, align_corners=False).squeeze(3)


def _dice(logits: torch.Tensor, labels: torch.Tensor, num_masks: float) -> torch.Tensor:
    probs = logits.sigmoid().flatten(1)
    loss = 1 - (2 * (probs * labels).sum(-1) + 1) / (probs.sum(-1) + labels.sum(-1) + 1)
    return loss.sum() / num_masks


def _sigmoid_ce(logits: torch.Tensor, labels: torch.Tensor, num_masks: float) -> torch.Tensor:
    return F.binary_cross_entropy_with_logits(logits, labels, reduction="none").mean(1).sum() / num_masks


def _pairwise_dice(logits: torch.Tensor, labels: torch.Tensor) -> torch.Tensor:
    probs = logits.sigmoid().flatten(1)
    numerator = 2 * probs @ labels.T
    denominator = probs.sum(-1)[:, None] + labels.sum(-1)[None, :]
    return 1 - (numerator + 1) / (denominator + 1)


def _pairwise_sigmoid_ce(logits: torch.Tensor, labels: torch.Tensor) -> torch.Tensor:
    points = logits.shape[1]
    pos = F.binary_cross_entropy_with_logits(logits, torch.ones_like(logits), reduction="none")
    neg = F.binary_cross_entropy_with_logits(logits, torch.zeros_like(logits), reduction="none")
    return (pos / points) @ labels.T + (neg / points) @ (1 - labels).T


@torch.no_grad()
def match(masks: torch.Tensor, classes: torch.Tensor, mask_labels: list[torch.Tensor],
          class_labels: list[torch.Tensor], config: Any) -> list[tuple[torch.Tensor, torch.Tensor]]:
    """Per image (query indices, target indices) of the least-cost assignment (see the module
    docstring)."""
    out = []
    for i in range(masks.shape[0]):
        probs = classes[i].softmax(-1)
        cost_class = -probs[:, class_labels[i]]
        target = mask_labels[i].to(masks)[:, None]
        pred = masks[i][:, None]
        points = torch.rand(1, config.train_num_points, 2, device=pred.device)
        target = sample_point(target, points.repeat(target.shape[0], 1, 1)).squeeze(1)
        pred = sample_point(pred, points.repeat(pred.shape[0], 1, 1)).squeeze(1)
        cost = (config.mask_weight * _pairwise_sigmoid_ce(pred, target) + config.class_weight * cost_class
                + config.dice_weight * _pairwise_dice(pred, target))
        big = torch.finfo(cost.dtype).max   # invalid costs are taken only when nothing else is left
        rows, cols = linear_sum_assignment(torch.nan_to_num(cost, nan=big, posinf=big, neginf=big).cpu())
        out.append((torch.as_tensor(rows, dtype=torch.int64), torch.as_tensor(cols, dtype=torch.int64)))
    return out


def _uncertain_points(logits: torch.Tensor, config: Any) -> torch.Tensor:
    """(N, train_num_points, 2): the most uncertain of oversampled random points, then random ones."""
    n, num_points = logits.shape[0], config.train_num_points
    drawn = int(num_points * config.oversample_ratio)
    points = torch.rand(n, drawn, 2, device=logits.device)
    uncertainty = -sample_point(logits, points).abs()
    uncertain = int(config.importance_sample_ratio * num_points)
    top = torch.topk(uncertainty[:, 0, :], k=uncertain, dim=1)[1]
    top = top + drawn * torch.arange(n, dtype=torch.long, device=logits.device)[:, None]
    points = points.view(-1, 2)[top.view(-1), :].view(n, uncertain, 2)
    if num_points - uncertain > 0:
        points = torch.cat([points, torch.rand(n, num_points - uncertain, 2, device=logits.device)], dim=1)
    return points


def _num_masks(class_labels: list[torch.Tensor], device: torch.device) -> torch.Tensor:
    total = torch.as_tensor(float(sum(len(c) for c in class_labels)), device=device)
    world = 1
    if torch.distributed.is_available() and torch.distributed.is_initialized():
        torch.distributed.all_reduce(total)
        world = torch.distributed.get_world_size()
    return torch.clamp(total / world, min=1)


def _one_level(masks: torch.Tensor, classes: torch.Tensor, mask_labels: list[torch.Tensor],
               class_labels: list[torch.Tensor], num_masks: torch.Tensor, config: Any,
               weight: torch.Tensor) -> dict[str, torch.Tensor]:
    indices = match(masks, classes, mask_labels, class_labels, config)
    batch_idx = torch.cat([torch.full_like(src, i) for i, (src, _) in enumerate(indices)])
    src_idx = torch.cat([src for src, _ in indices])
    tgt_batch = torch.cat([torch.full_like(tgt, i) for i, (_, tgt) in enumerate(indices)])
    tgt_idx = torch.cat([tgt for _, tgt in indices])
    # targets padded to the batch's largest count (the reference's nested-tensor padding)
    most = max(m.shape[0] for m in mask_labels)
    height = max(m.shape[1] for m in mask_labels)
    width = max(m.shape[2] for m in mask_labels)
    targets = masks.new_zeros((len(mask_labels), most, height, width))
    for i, m in enumerate(mask_labels):
        targets[i, :m.shape[0], :m.shape[1], :m.shape[2]] = m
    pred = masks[batch_idx, src_idx][:, None]
    target = targets[tgt_batch, tgt_idx][:, None]
    with torch.no_grad():
        points = _uncertain_points(pred, config)
        point_labels = sample_point(target, points).squeeze(1)
    point_logits = sample_point(pred, points).squeeze(1)
    # classes: unmatched queries are "no object"
    wanted = torch.full(classes.shape[:2], config.num_labels, dtype=torch.int64, device=classes.device)
    wanted[batch_idx, src_idx] = torch.cat([c[j] for c, (_, j) in zip(class_labels, indices)])
    return {"loss_mask": _sigmoid_ce(point_logits, point_labels, num_masks),
            "loss_dice": _dice(point_logits, point_labels, num_masks),
            "loss_cross_entropy": F.cross_entropy(classes.transpose(1, 2), wanted, weight=weight.to(classes))}


def mask2former_losses(masks: torch.Tensor, classes: torch.Tensor, mask_labels: list[torch.Tensor],
                       class_labels: list[torch.Tensor], auxiliary: list[tuple[torch.Tensor, torch.Tensor]],
                       config: Any, class_weight: torch.Tensor | None = None) -> dict[str, torch.Tensor]:
    """The unweighted terms for the final prediction (``masks`` (B, Q, h, w) logits, ``classes``
    (B, Q, num_labels + 1)) and, suffixed ``_<i>``, for each ``auxiliary`` (masks, classes) pair.
    ``class_weight``: the cross-entropy's weights per class (default: 1, ``no_object_weight`` for
    "no object")."""
    if class_weight is None:
        class_weight = torch.ones(config.num_labels + 1)
        class_weight[-1] = config.no_object_weight
    num_masks = _num_masks(class_labels, class_labels[0].device)
    losses = _one_level(masks, classes, mask_labels, class_labels, num_masks, config, class_weight)
    for i, (aux_masks, aux_classes) in enumerate(auxiliary):
        aux_num = _num_masks(class_labels, class_labels[0].device)
        losses.update({f"{k}_{i}": v for k, v in _one_level(aux_masks, aux_classes, mask_labels, class_labels,
                                                             aux_num, config, class_weight).items()})
    return losses


def weighted_loss(losses: dict[str, torch.Tensor], config: Any) -> torch.Tensor:
    """Each term times its weight (``class_weight``, ``mask_weight``, ``dice_weight``; the
    suffixed auxiliary terms too), in place in ``losses``; returns their sum."""
    for key, field in LOSS_WEIGHTS.items():
        for name in losses:
            if name == key or name.startswith(key + "_"):
                losses[name] = losses[name] * getattr(config, field)
    return sum(losses.values())


def check_mask_labels(mask_labels: Any, class_labels: Any, batch: int, num_labels: int, device: torch.device,
                      dtype: torch.dtype) -> tuple[list[torch.Tensor], list[torch.Tensor]]:
    """``mask_labels`` (per image (n, H, W) binary masks) and ``class_labels`` (per image (n,) ids)
    as the loss reads them, or a named error saying what they look like."""
    hint = ("mask_labels must be a list with one (n, height, width) tensor of binary masks per image and "
            "class_labels one (n,) tensor of class ids per image, as Mask2FormerImageProcessor returns them "
            "for segmentation_maps")
    if mask_labels is None or class_labels is None:
        raise InvalidInputError(f"the loss needs both mask_labels and class_labels; {hint}")
    if not isinstance(mask_labels, (list, tuple)) or not isinstance(class_labels, (list, tuple)):
        raise InvalidInputError(f"{hint}; got {type(mask_labels).__name__} and {type(class_labels).__name__}")
    if len(mask_labels) != batch or len(class_labels) != batch:
        raise InvalidInputError(f"got {len(mask_labels)} mask_labels and {len(class_labels)} class_labels for "
                                f"{batch} images; {hint}")
    masks_out, classes_out = [], []
    for i, (m, c) in enumerate(zip(mask_labels, class_labels)):
        m = torch.as_tensor(m, device=device)
        c = torch.as_tensor(c, device=device)
        if m.dim() != 3 or c.dim() != 1 or c.is_floating_point() or m.shape[0] != c.shape[0]:
            raise InvalidInputError(f"image {i}: mask_labels of shape {tuple(m.shape)} and class_labels of shape "
                                    f"{tuple(c.shape)} ({c.dtype}) do not pair up; {hint}")
        if c.numel() and (int(c.min()) < 0 or int(c.max()) >= num_labels):
            raise InvalidInputError(f"image {i}: class id {int(c.max()) if int(c.max()) >= num_labels else int(c.min())}"
                                    f" is outside [0, {num_labels}) (num_labels of the config)")
        masks_out.append(m.to(dtype))
        classes_out.append(c.long())
    if sum(len(c) for c in classes_out) == 0:
        raise InvalidInputError(f"the batch has no target mask at all (nothing to match the queries to); {hint}")
    return masks_out, classes_out
