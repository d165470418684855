"""What the set-prediction detectors (DETR, YOLOS) share: box arithmetic, the optimal assignment of
predictions to ground-truth objects, the set loss, the box / class MLP heads and their output.

The loss is DETR's (Carion et al. 2020), as the reference computes it when ``labels`` are given:

1. Match: for each image, the cost of giving target ``j`` to query ``i`` is
   ``bbox_cost * L1(box_i, box_j) - class_cost * p_i(class_j) - giou_cost * GIoU(box_i, box_j)``
   (boxes as normalised (cx, cy, w, h); GIoU on their corners); the one-to-one assignment of least
   total cost is found by :func:`linear_sum_assignment` (ours, numpy: no scipy at run time).
2. ``loss_ce``: cross-entropy of every query's logits against its matched class, unmatched queries
   against the "no object" class (the last logit), that class weighted ``eos_coefficient``.
3. ``loss_bbox`` (L1) and ``loss_giou`` (1 - GIoU) over the matched pairs, each summed and divided
   by the number of target boxes in the batch (at least 1; averaged over the processes when
   ``torch.distributed`` runs).
4. ``cardinality_error`` (logged, no gradient): |number of non-"no object" argmaxes - targets|.
5. With ``pred_masks`` (DETR's segmentation head): ``loss_mask`` (sigmoid focal loss, alpha 0.25,
   gamma 2, mean over pixels) and ``loss_dice`` (1 - (2|p t| + 1) / (|p| + |t| + 1)) of each
   matched query's mask logits, bilinearly resized to the targets' ``masks`` (zero-padded to the
   batch's largest), each summed and divided by the number of target boxes; the matching itself
   does not look at masks, and the auxiliary outputs get no mask terms (both as the reference).
6. ``loss = loss_ce + bbox_loss_coefficient * loss_bbox + giou_loss_coefficient * loss_giou``
   (``+ mask_loss_coefficient * loss_mask + dice_loss_coefficient * loss_dice``), plus the same
   box terms (suffixed ``_i``) for each auxiliary (intermediate decoder layer) output.

Labels: one dict per image with ``class_labels`` (n,) ints in [0, num_labels) and ``boxes`` (n, 4)
normalised (center_x, center_y, width, height), what the DETR / YOLOS image processors return as
``labels`` for COCO annotations; for the mask loss also ``masks`` (n, H, W) of 0 / 1.

Example::

    >>> import numpy as np
    >>> rows, cols = linear_sum_assignment(np.array([[4.0, 1.0, 3.0], [2.0, 0.0, 5.0], [3.0, 2.0, 2.0]]))
    >>> rows.tolist(), cols.tolist()
    ([0, 1, 2], [1, 0, 2])
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import Any, Sequence

import numpy as np
import torch
from torch import nn
from torch.nn import functional as F

from ..errors import InvalidInputError
from ..outputs import ModelOutput

__all__ = ["center_to_corners", "corners_to_center", "box_area", "box_iou", "generalized_box_iou",
           "linear_sum_assignment", "hungarian_match", "detection_loss", "check_detection_labels",
           "MLPPredictionHead", "ObjectDetectionOutput", "DETECTION_LOSS_FIELDS"]

# the config fields the loss reads (DETR's and YOLOS's names and defaults)
DETECTION_LOSS_FIELDS = dict(class_cost=1.0, bbox_cost=5.0, giou_cost=2.0, bbox_loss_coefficient=5.0,
                             giou_loss_coefficient=2.0, eos_coefficient=0.1)


# --- boxes --------------------------------------------------------------------------------------
def center_to_corners(boxes: torch.Tensor) -> torch.Tensor:
    """(..., 4) (center_x, center_y, width, height) -> (x0, y0, x1, y1)."""
    cx, cy, w, h = boxes.unbind(-1)
    return torch.stack([cx - 0.5 * w, cy - 0.5 * h, cx + 0.5 * w, cy + 0.5 * h], dim=-1)


def corners_to_center(boxes: torch.Tensor) -> torch.Tensor:
    """(..., 4) (x0, y0, x1, y1) -> (center_x, center_y, width, height)."""
    x0, y0, x1, y1 = boxes.unbind(-1)
    return torch.stack([(x0 + x1) / 2, (y0 + y1) / 2, x1 - x0, y1 - y0], dim=-1)


def box_area(boxes: torch.Tensor) -> torch.Tensor:
    """Areas of (N, 4) corner boxes."""
    return (boxes[..., 2] - boxes[..., 0]) * (boxes[..., 3] - boxes[..., 1])


def _pairwise(a: torch.Tensor, b: torch.Tensor, pairs: bool) -> tuple[torch.Tensor, torch.Tensor]:
    """(a, b) broadcast to every pair (N, M, 4), or row by row when ``pairs``."""
    return (a, b) if pairs else (a[:, None, :], b[None, :, :])


def box_iou(a: torch.Tensor, b: torch.Tensor, pairs: bool = False) -> tuple[torch.Tensor, torch.Tensor]:
    """IoU and union of corner boxes: every pair (N, M), or ``pairs`` row i with row i (N,)."""
    area_a, area_b = box_area(a), box_area(b)
    x, y = _pairwise(a, b, pairs)
    top_left = torch.max(x[..., :2], y[..., :2])
    bottom_right = torch.min(x[..., 2:], y[..., 2:])
    wh = (bottom_right - top_left).clamp(min=0)
    inter = wh[..., 0] * wh[..., 1]
    union = (area_a if pairs else area_a[:, None]) + area_b - inter
    return inter / union, union


def generalized_box_iou(a: torch.Tensor, b: torch.Tensor, pairs: bool = False) -> torch.Tensor:
    """GIoU (Rezatofighi et al. 2019) of corner boxes: IoU minus the part of the smallest
    enclosing box that the union does not cover. Every pair (N, M), or row by row (``pairs``)."""
    iou, union = box_iou(a, b, pairs)
    x, y = _pairwise(a, b, pairs)
    top_left = torch.min(x[..., :2], y[..., :2])
    bottom_right = torch.max(x[..., 2:], y[..., 2:])
    wh = (bottom_right - top_left).clamp(min=0)
    enclosing = wh[..., 0] * wh[..., 1]
    return iou - (enclosing - union) / enclosing


# --- assignment ---------------------------------------------------------------------------------
def linear_sum_assignment(cost: Any) -> tuple[np.ndarray, np.ndarray]:
    """The assignment of least total cost of a (rows, cols) matrix, as ``scipy.optimize.
    linear_sum_assignment`` returns it: ``min(rows, cols)`` pairs, row indices ascending.

    The Hungarian method with row / column potentials (shortest augmenting paths, O(n^2 m) for
    n <= m): each row in turn is added, the cheapest path in reduced costs to a free column found
    Dijkstra-style (vectorised over the columns), the potentials moved so reduced costs stay >= 0,
    and the path flipped. Costs must be finite (the detectors replace NaN / inf first)."""
    c = np.asarray(cost, dtype=np.float64)
    if c.ndim != 2:
        raise InvalidInputError(f"the cost matrix must be 2-D, got shape {c.shape}")
    if not np.isfinite(c).all():
        raise InvalidInputError("the cost matrix holds NaN or infinite values; replace them with a large finite cost")
    transposed = c.shape[0] > c.shape[1]
    if transposed:
        c = c.T
    n, m = c.shape
    if n == 0:
        return np.zeros(0, dtype=np.int64), np.zeros(0, dtype=np.int64)
    u = np.zeros(n + 1)              # row potentials (1-based; 0 is the virtual start)
    v = np.zeros(m + 1)              # column potentials
    owner = np.zeros(m + 1, dtype=np.int64)   # owner[j]: the row holding column j (0 = free)
    way = np.zeros(m + 1, dtype=np.int64)     # the previous column on the shortest path
    for row in range(1, n + 1):
        owner[0] = row
        j0 = 0
        minv = np.full(m + 1, np.inf)
        used = np.zeros(m + 1, dtype=bool)
        while True:
            used[j0] = True
            i0 = owner[j0]
            free = ~used[1:]
            reduced = c[i0 - 1] - u[i0] - v[1:]
            better = free & (reduced < minv[1:])
            minv[1:][better] = reduced[better]
            way[1:][better] = j0
            candidates = np.where(free, minv[1:], np.inf)
            j1 = int(np.argmin(candidates)) + 1
            delta = candidates[j1 - 1]
            u[owner[used]] += delta
            v[used] -= delta
            minv[1:][free] -= delta
            j0 = j1
            if owner[j0] == 0:
                break
        while j0:                     # flip the path: each column on it passes to the next row
            j1 = way[j0]
            owner[j0] = owner[j1]
            j0 = j1
    cols = np.nonzero(owner[1:])[0]
    rows = owner[1:][cols] - 1
    if transposed:
        rows, cols = cols, rows
    order = np.argsort(rows, kind="stable")
    return rows[order].astype(np.int64), cols[order].astype(np.int64)


# --- labels -------------------------------------------------------------------------------------
def check_detection_labels(labels: Any, batch: int, num_labels: int, device: torch.device,
                           dtype: torch.dtype, masks: bool = False) -> list[dict[str, torch.Tensor]]:
    """``labels`` as the loss reads them (``class_labels`` long, ``boxes`` float on ``device``;
    with ``masks`` also ``masks`` (n, H, W) float), or a named error saying what a detection
    target looks like."""
    hint = ("labels must be a list with one dict per image: {'class_labels': (n,) class ids, 'boxes': (n, 4) "
            "normalised (center_x, center_y, width, height)}, as the DETR / YOLOS image processors return "
            "them for COCO annotations")
    if not isinstance(labels, (list, tuple)):
        raise InvalidInputError(f"{hint}; got a {type(labels).__name__}")
    if len(labels) != batch:
        raise InvalidInputError(f"got {len(labels)} label dicts for {batch} images; {hint}")
    out = []
    for i, target in enumerate(labels):
        if not hasattr(target, "keys") or "class_labels" not in target or "boxes" not in target:
            raise InvalidInputError(f"labels[{i}] lacks 'class_labels' or 'boxes'; {hint}")
        classes = torch.as_tensor(target["class_labels"], device=device)
        boxes = torch.as_tensor(target["boxes"], device=device)
        if boxes.numel() == 0:
            boxes = boxes.reshape(0, 4)
        if classes.is_floating_point() or classes.dim() != 1:
            raise InvalidInputError(f"labels[{i}]['class_labels'] must be a 1-D tensor of class ids, got "
                                    f"{classes.dtype} of shape {tuple(classes.shape)}")
        if boxes.dim() != 2 or boxes.shape[-1] != 4 or boxes.shape[0] != classes.shape[0]:
            raise InvalidInputError(f"labels[{i}]['boxes'] has shape {tuple(boxes.shape)} for {classes.shape[0]} "
                                    f"class labels; {hint}")
        if classes.numel() and (int(classes.min()) < 0 or int(classes.max()) >= num_labels):
            raise InvalidInputError(f"labels[{i}] holds class id {int(classes.max())}, outside [0, {num_labels}) "
                                    "(num_labels of the config; the 'no object' class is added by the model)")
        boxes = boxes.to(dtype)
        if boxes.numel() and not bool((boxes[:, 2:] >= 0).all() and torch.isfinite(boxes).all()):
            raise InvalidInputError(f"labels[{i}]['boxes'] holds a negative width/height or a non-finite value; "
                                    f"{hint}")
        found = {"class_labels": classes.long(), "boxes": boxes}
        if masks:
            found["masks"] = _target_masks(target, i, classes.shape[0], device, dtype)
        out.append(found)
    if masks and len({tuple(t["masks"].shape[1:]) for t in out}) > 1:   # zero-padded to the largest, as the reference
        h = max(t["masks"].shape[1] for t in out)
        w = max(t["masks"].shape[2] for t in out)
        for t in out:
            t["masks"] = F.pad(t["masks"], (0, w - t["masks"].shape[2], 0, h - t["masks"].shape[1]))
    return out


def _target_masks(target: Any, i: int, count: int, device: torch.device, dtype: torch.dtype) -> torch.Tensor:
    if "masks" not in target:
        raise InvalidInputError(f"labels[{i}] lacks 'masks': the segmentation loss needs one (H, W) mask of 0 / 1 "
                                "per object, as 'masks' (n, H, W) beside 'class_labels' and 'boxes'")
    masks = torch.as_tensor(target["masks"], device=device)
    if masks.dim() != 3 or masks.shape[0] != count:
        raise InvalidInputError(f"labels[{i}]['masks'] has shape {tuple(masks.shape)} for {count} class labels; it "
                                "must be (n, H, W): one mask per object")
    return masks.to(dtype)


# --- matching and the set loss ------------------------------------------------------------------
@torch.no_grad()
def hungarian_match(logits: torch.Tensor, pred_boxes: torch.Tensor, targets: list[dict[str, torch.Tensor]],
                    config) -> list[tuple[torch.Tensor, torch.Tensor]]:
    """Per image, (query indices ascending, their target indices) of the least-cost assignment
    (see the module doc); NaN / inf costs become the largest float so they are matched last."""
    batch, queries = logits.shape[:2]
    prob = logits.flatten(0, 1).softmax(-1)
    boxes = pred_boxes.flatten(0, 1)
    target_ids = torch.cat([t["class_labels"] for t in targets])
    target_boxes = torch.cat([t["boxes"] for t in targets])
    cost_class = -prob[:, target_ids]
    cost_bbox = torch.cdist(boxes, target_boxes, p=1)
    cost_giou = -generalized_box_iou(center_to_corners(boxes), center_to_corners(target_boxes))
    cost = config.bbox_cost * cost_bbox + config.class_cost * cost_class + config.giou_cost * cost_giou
    big = torch.finfo(cost.dtype).max
    cost = torch.nan_to_num(cost, nan=big, posinf=big, neginf=big).view(batch, queries, -1).cpu()
    sizes = [len(t["boxes"]) for t in targets]
    found = [linear_sum_assignment(c[i].numpy()) for i, c in enumerate(cost.split(sizes, -1))]
    return [(torch.as_tensor(r, dtype=torch.int64), torch.as_tensor(c, dtype=torch.int64)) for r, c in found]


def _num_boxes(targets: list[dict[str, torch.Tensor]], device: torch.device) -> float:
    """Target boxes in the batch (the mean over processes under torch.distributed), at least 1."""
    total = torch.as_tensor([float(sum(len(t["class_labels"]) for t in targets))], device=device)
    world = 1
    if torch.distributed.is_available() and torch.distributed.is_initialized():
        torch.distributed.all_reduce(total)
        world = torch.distributed.get_world_size()
    return torch.clamp(total / world, min=1).item()


def _set_losses(logits: torch.Tensor, pred_boxes: torch.Tensor, targets: list[dict[str, torch.Tensor]],
                indices: list[tuple[torch.Tensor, torch.Tensor]], num_boxes: float,
                no_object_weight: torch.Tensor) -> dict[str, torch.Tensor]:
    batch_idx = torch.cat([torch.full_like(q, i) for i, (q, _) in enumerate(indices)]).to(logits.device)
    query_idx = torch.cat([q for q, _ in indices]).to(logits.device)
    matched_classes = torch.cat([t["class_labels"][j.to(logits.device)] for t, (_, j) in zip(targets, indices)])
    classes = torch.full(logits.shape[:2], logits.shape[-1] - 1, dtype=torch.int64, device=logits.device)
    classes[batch_idx, query_idx] = matched_classes
    out = {"loss_ce": F.cross_entropy(logits.transpose(1, 2), classes, no_object_weight)}
    src = pred_boxes[batch_idx, query_idx]
    tgt = torch.cat([t["boxes"][j.to(logits.device)] for t, (_, j) in zip(targets, indices)], dim=0)
    out["loss_bbox"] = F.l1_loss(src, tgt, reduction="none").sum() / num_boxes
    giou = generalized_box_iou(center_to_corners(src), center_to_corners(tgt), pairs=True)
    out["loss_giou"] = (1 - giou).sum() / num_boxes
    with torch.no_grad():
        lengths = torch.as_tensor([len(t["class_labels"]) for t in targets], device=logits.device)
        predicted = (logits.argmax(-1) != logits.shape[-1] - 1).sum(1)
        out["cardinality_error"] = F.l1_loss(predicted.float(), lengths.float())
    return out


def _mask_losses(pred_masks: torch.Tensor, targets: list[dict[str, torch.Tensor]],
                 indices: list[tuple[torch.Tensor, torch.Tensor]], num_boxes: float) -> dict[str, torch.Tensor]:
    """``loss_mask`` (sigmoid focal) and ``loss_dice`` of the matched queries' masks (step 5)."""
    device = pred_masks.device
    batch_idx = torch.cat([torch.full_like(q, i) for i, (q, _) in enumerate(indices)]).to(device)
    query_idx = torch.cat([q for q, _ in indices]).to(device)
    target = torch.cat([t["masks"][j.to(device)] for t, (_, j) in zip(targets, indices)]).to(pred_masks.dtype)
    logits = F.interpolate(pred_masks[batch_idx, query_idx][:, None], size=target.shape[-2:], mode="bilinear",
                           align_corners=False)[:, 0].flatten(1)
    target = target.flatten(1)
    prob = logits.sigmoid()
    ce = F.binary_cross_entropy_with_logits(logits, target, reduction="none")
    p_t = prob * target + (1 - prob) * (1 - target)
    alpha_t = 0.25 * target + 0.75 * (1 - target)
    focal = (alpha_t * ce * (1 - p_t) ** 2).mean(1).sum() / num_boxes
    dice = 1 - (2 * (prob * target).sum(1) + 1) / (prob.sum(-1) + target.sum(-1) + 1)
    return {"loss_mask": focal, "loss_dice": dice.sum() / num_boxes}


def detection_loss(logits: torch.Tensor, pred_boxes: torch.Tensor, labels: Any, config,
                   auxiliary: Sequence[tuple[torch.Tensor, torch.Tensor]] = (),
                   pred_masks: torch.Tensor | None = None) -> tuple[torch.Tensor, dict[str, torch.Tensor]]:
    """The total loss and its parts (``loss_ce``, ``loss_bbox``, ``loss_giou``,
    ``cardinality_error``, with ``pred_masks`` (B, queries, h, w) ``loss_mask`` and ``loss_dice``,
    then ``..._i`` for each auxiliary (logits, boxes) pair), from the config's ``class_cost`` /
    ``bbox_cost`` / ``giou_cost`` (matching), ``eos_coefficient``, ``bbox_loss_coefficient``,
    ``giou_loss_coefficient`` (and ``mask_loss_coefficient``, ``dice_loss_coefficient``)."""
    batch = logits.shape[0]
    targets = check_detection_labels(labels, batch, logits.shape[-1] - 1, logits.device, pred_boxes.dtype,
                                     masks=pred_masks is not None)
    weight = torch.ones(logits.shape[-1], device=logits.device, dtype=logits.dtype)
    weight[-1] = config.eos_coefficient
    num_boxes = _num_boxes(targets, logits.device)
    indices = hungarian_match(logits, pred_boxes, targets, config)
    parts = _set_losses(logits, pred_boxes, targets, indices, num_boxes, weight)
    if pred_masks is not None:
        parts.update(_mask_losses(pred_masks, targets, indices, num_boxes))
    for i, (aux_logits, aux_boxes) in enumerate(auxiliary):
        found = _set_losses(aux_logits, aux_boxes, targets, hungarian_match(aux_logits, aux_boxes, targets, config),
                            num_boxes, weight)
        parts.update({f"{k}_{i}": v for k, v in found.items()})
    scale = {"loss_ce": 1.0, "loss_bbox": config.bbox_loss_coefficient, "loss_giou": config.giou_loss_coefficient}
    if pred_masks is not None:
        scale.update(loss_mask=config.mask_loss_coefficient, loss_dice=config.dice_loss_coefficient)
    total = 0
    for key, value in parts.items():   # the reference's order: each output's ce, bbox, giou in turn
        base = key if key in scale else key.rpartition("_")[0]
        if base in scale:
            total = total + value * scale[base]
    return total, parts


# --- heads and output ---------------------------------------------------------------------------
class MLPPredictionHead(nn.Module):
    """``num_layers`` linears (``layers.N``) with ReLU between them: DETR's box head, YOLOS's box
    and class heads."""

    def __init__(self, input_dim: int, hidden_dim: int, output_dim: int, num_layers: int) -> None:
        super().__init__()
        dims = [input_dim] + [hidden_dim] * (num_layers - 1) + [output_dim]
        self.layers = nn.ModuleList(nn.Linear(a, b) for a, b in zip(dims[:-1], dims[1:]))

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        for i, layer in enumerate(self.layers):
            x = layer(x)
            if i < len(self.layers) - 1:
                x = F.relu(x)
        return x


@dataclass
class ObjectDetectionOutput(ModelOutput):
    """A detector's output: ``logits`` (B, queries, num_labels + 1; the last is "no object"),
    ``pred_boxes`` (B, queries, 4) normalised (center_x, center_y, width, height); with labels the
    ``loss``, its parts (``loss_dict``) and the auxiliary outputs (one dict of ``logits`` /
    ``pred_boxes`` per intermediate decoder layer). YOLOS fills ``hidden_states``; DETR the
    decoder's and encoder's fields."""

    loss: torch.Tensor | None = None
    loss_dict: dict | None = None
    logits: torch.Tensor | None = None
    pred_boxes: torch.Tensor | None = None
    auxiliary_outputs: list | None = None
    last_hidden_state: torch.Tensor | None = None
    hidden_states: tuple[torch.Tensor, ...] | None = None
    decoder_hidden_states: tuple[torch.Tensor, ...] | None = None
    encoder_last_hidden_state: torch.Tensor | None = None
    encoder_hidden_states: tuple[torch.Tensor, ...] | None = None
