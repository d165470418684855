"""Train a small DETR from scratch on scikit-image's random shapes with this library's Trainer, and
report its detection mAP@0.5 on pictures it never saw.

Data: ``skimage.draw.random_shapes`` pictures, 64x64 RGB: one to three non-overlapping shapes
(rectangle, circle, triangle, ellipse; 12 to 32 px, each of one random colour) on white, with the
bounding box ``random_shapes`` reports for each (clipped to the picture). Fixed seeds: ``--train``
(2,000) pictures for training, 300 held out as the test set (seeds that never overlap). Training
pictures are flipped left-right at random on the fly (boxes flipped with them).

Model: ``DetrForObjectDetection`` from a config: this library's ResNet as the backbone (basic
blocks, widths 16, 32, 64; its stride-8 map, 8x8 for a 64-pixel picture), ``--d-model`` (128) wide,
3 encoder and 3 decoder layers, ``--queries`` (10) object queries, sine positions, auxiliary losses;
``id2label`` the shape names. Two things DETR needs that a from-scratch run otherwise lacks, both as
the DETR paper's recipe has them:

- a pretrained backbone: the same ResNet is first trained here (``ResNetForImageClassification``,
  multi-label: which shapes a picture holds) for ``--backbone-steps``, and DETR starts from its
  weights and batch-norm statistics (DETR freezes the backbone's batch norms, so without this they
  stay at mean 0 / variance 1);
- object queries that differ: the reference initialises ``query_position_embeddings`` with std
  0.02 (its ``init_std``), which leaves the ten queries nearly identical, and they separate only
  slowly (a 2+2-layer run of 756 steps reached mAP@0.5 0.002 that way); the paper's code draws them
  from N(0, 1), as done here.

Inputs: :class:`pretrained.processing.DetrImageProcessor` (64x64 kept: shortest edge 64, ImageNet
mean/std) on the pictures and their COCO-style annotations, which gives the ``labels`` (normalised
center boxes) the set loss reads. AdamW with a cosine schedule for ``--steps`` (stopped after
``--minutes`` of wall time at the latest). Two torch threads by default (a shared 2-core machine).

The figure is the mean average precision at IoU 0.5 (:func:`mean_average_precision`: per class,
the detections of all held-out pictures ranked by score, each a true positive when it overlaps an
unclaimed box of its class by IoU >= 0.5; the area under the precision-recall curve with
precision made monotone (all points, as VOC 2010+); the mean over the classes), measured through
``pipeline("object-detection", model=<out>, threshold=0.05)`` on every held-out picture. Twenty of
them are also written as PNG files to ``<out>/held_out/`` with their boxes (``boxes.json``).

Usage::

    python examples/train_detector.py                    # ~20 min on 2 quiet cores
    python examples/train_detector.py --steps 4 --backbone-steps 4 --train 64 --test 16 --out /tmp/shapes-detr  # smoke

Writes ``<out>/`` (default ``~/.cache/pretrained/trained/shapes-detr``): ``config.json``,
``model.safetensors``, ``preprocessor_config.json``, ``results.json``, ``held_out/``.
"""

from __future__ import annotations

import argparse
import json
import sys
import time
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parent.parent))

import numpy as np  # noqa: E402
import torch  # noqa: E402

SIZE = 64
SHAPES = ["rectangle", "circle", "triangle", "ellipse"]
TEST_SEED0 = 1_000_000   # test pictures come from seeds far from the training ones
HELD_OUT_FILES = 20


def picture(seed: int) -> tuple[np.ndarray, list[tuple[int, list[float]]]]:
    """One random_shapes picture (64, 64, 3) uint8 and its objects: (class id, [x, y, w, h] in px)."""
    from skimage.draw import random_shapes

    image, shapes = random_shapes((SIZE, SIZE), max_shapes=3, min_shapes=1, min_size=12, max_size=32,
                                  num_trials=100, rng=seed)
    objects = []
    for name, ((r0, r1), (c0, c1)) in shapes:
        r0, c0, r1, c1 = max(r0, 0), max(c0, 0), min(r1, SIZE), min(c1, SIZE)
        if r1 > r0 and c1 > c0:
            objects.append((SHAPES.index(name), [float(c0), float(r0), float(c1 - c0), float(r1 - r0)]))
    return image, objects


def dataset(first_seed: int, count: int) -> list[tuple[np.ndarray, list]]:
    return [picture(first_seed + i) for i in range(count)]


def annotation(objects: list, image_id: int) -> dict:
    return {"image_id": image_id, "annotations": [{"bbox": box, "category_id": c, "area": box[2] * box[3]}
                                                  for c, box in objects]}


# --- the metric ---------------------------------------------------------------------------------
def box_iou(a: list[float], b: list[float]) -> float:
    """IoU of two (x0, y0, x1, y1) boxes."""
    w = max(0.0, min(a[2], b[2]) - max(a[0], b[0]))
    h = max(0.0, min(a[3], b[3]) - max(a[1], b[1]))
    inter = w * h
    union = (a[2] - a[0]) * (a[3] - a[1]) + (b[2] - b[0]) * (b[3] - b[1]) - inter
    return inter / union if union > 0 else 0.0


def average_precision(scores: list[float], hits: list[bool], positives: int) -> float:
    """Area under the precision-recall curve of detections ranked by score (``hits``: true
    positive or not), precision made monotone from the right; 0 when there is nothing to find."""
    if positives == 0:
        return 0.0
    order = sorted(range(len(scores)), key=lambda i: -scores[i])
    tp = np.cumsum([1.0 if hits[i] else 0.0 for i in order])
    fp = np.cumsum([0.0 if hits[i] else 1.0 for i in order])
    recall = np.concatenate([[0.0], tp / positives, [1.0]]) if len(order) else np.array([0.0, 1.0])
    precision = np.concatenate([[1.0], tp / np.maximum(tp + fp, 1e-12), [0.0]]) if len(order) else np.array([1.0, 0.0])
    precision = np.maximum.accumulate(precision[::-1])[::-1]
    steps = np.nonzero(recall[1:] != recall[:-1])[0]
    return float(np.sum((recall[steps + 1] - recall[steps]) * precision[steps + 1]))


def mean_average_precision(detections: list[list[dict]], truths: list[list[tuple[int, list[float]]]],
                           classes: int, iou: float = 0.5) -> tuple[float, list[float]]:
    """mAP over ``classes`` (those with ground truth) and the per-class APs. ``detections``: per
    picture ``[{"label": id, "score": s, "box": [x0, y0, x1, y1]}]``; ``truths``: per picture
    ``[(class id, [x0, y0, x1, y1])]``. A detection is a true positive when its best-overlapping
    unclaimed ground-truth box of its class has IoU >= ``iou`` (higher scores claim first)."""
    aps, present = [], []
    for c in range(classes):
        positives = sum(1 for t in truths for k, _ in t if k == c)
        ranked = sorted(((d["score"], p, d["box"]) for p, ds in enumerate(detections) for d in ds if d["label"] == c),
                        key=lambda x: -x[0])
        claimed: set[tuple[int, int]] = set()
        scores, hits = [], []
        for score, p, box in ranked:
            best, best_j = 0.0, None
            for j, (k, gt) in enumerate(truths[p]):
                if k == c and (p, j) not in claimed:
                    overlap = box_iou(box, gt)
                    if overlap > best:
                        best, best_j = overlap, j
            hit = best_j is not None and best >= iou
            if hit:
                claimed.add((p, best_j))
            scores.append(score)
            hits.append(hit)
        aps.append(average_precision(scores, hits, positives))
        present.append(positives > 0)
    kept = [a for a, p in zip(aps, present) if p]
    return (float(np.mean(kept)) if kept else 0.0), aps


def corners(objects: list) -> list[tuple[int, list[float]]]:
    return [(c, [x, y, x + w, y + h]) for c, (x, y, w, h) in objects]


# --- training -----------------------------------------------------------------------------------
class Shapes(torch.utils.data.Dataset):
    """The processor's features per picture; training pictures flipped left-right at random."""

    def __init__(self, pictures: list, processor, flip: bool) -> None:
        self.pictures, self.processor, self.flip = pictures, processor, flip

    def __len__(self) -> int:
        return len(self.pictures)

    def __getitem__(self, i: int) -> dict:
        image, objects = self.pictures[i]
        if self.flip and np.random.random() < 0.5:
            image = image[:, ::-1].copy()
            objects = [(c, [SIZE - x - w, y, w, h]) for c, (x, y, w, h) in objects]
        out = self.processor(image, annotations=annotation(objects, i), return_tensors="pt")
        return {"pixel_values": out["pixel_values"][0], "pixel_mask": out["pixel_mask"][0], "labels": out["labels"][0]}


def collate(features: list[dict]) -> dict:
    return {"pixel_values": torch.stack([f["pixel_values"] for f in features]),
            "pixel_mask": torch.stack([f["pixel_mask"] for f in features]),
            "labels": [{"class_labels": f["labels"]["class_labels"], "boxes": f["labels"]["boxes"]} for f in features]}


BACKBONE = {"model_type": "resnet", "embedding_size": 16, "hidden_sizes": [16, 32, 64], "depths": [1, 1, 1],
            "layer_type": "basic"}


class Presence(torch.utils.data.Dataset):
    """The backbone's pretraining task: which of the shapes a picture holds (multi-hot labels)."""

    def __init__(self, pictures: list, processor) -> None:
        self.pictures, self.processor = pictures, processor

    def __len__(self) -> int:
        return len(self.pictures)

    def __getitem__(self, i: int) -> dict:
        image, objects = self.pictures[i]
        if np.random.random() < 0.5:
            image = image[:, ::-1].copy()
        labels = torch.zeros(len(SHAPES))
        labels[[c for c, _ in objects]] = 1.0
        return {"pixel_values": self.processor(image, return_tensors="pt")["pixel_values"][0], "labels": labels}


def pretrain_backbone(args, train: list, processor, out: Path) -> dict:
    """Train the ResNet on shape presence; returns its weights (``resnet.*`` keys) and the held-in
    accuracy of its per-shape answers on the last batch it saw."""
    from pretrained.models.resnet import ResNetConfig, ResNetForImageClassification
    from pretrained.training import Trainer, TrainingArguments

    config = ResNetConfig(**{k: v for k, v in BACKBONE.items() if k != "model_type"}, num_labels=len(SHAPES),
                          problem_type="multi_label_classification")
    torch.manual_seed(args.seed)
    model = ResNetForImageClassification.from_config(config)
    training = TrainingArguments(output_dir=str(out / "backbone-checkpoints"), max_steps=args.backbone_steps,
                                 per_device_train_batch_size=64, learning_rate=2e-3, weight_decay=1e-4,
                                 lr_scheduler_type="cosine", warmup_ratio=0.05, logging_steps=100, save_strategy="no",
                                 report_to=[], seed=args.seed, dataloader_num_workers=0, remove_unused_columns=False)
    Trainer(model=model, args=training, train_dataset=Presence(train, processor)).train()
    return {k[len("resnet."):]: v for k, v in model.state_dict().items() if k.startswith("resnet.")}


def build_model(args, backbone_weights: dict | None = None):
    from pretrained.models.detr import DetrConfig, DetrForObjectDetection

    config = DetrConfig(use_timm_backbone=False, backbone_config={**BACKBONE, "out_features": ["stage2"]},
                        d_model=args.d_model, encoder_layers=3, decoder_layers=3, encoder_attention_heads=4,
                        decoder_attention_heads=4, encoder_ffn_dim=2 * args.d_model, decoder_ffn_dim=2 * args.d_model,
                        num_queries=args.queries, dropout=0.0, auxiliary_loss=True, num_labels=len(SHAPES),
                        id2label=dict(enumerate(SHAPES)), label2id={n: i for i, n in enumerate(SHAPES)})
    torch.manual_seed(args.seed)
    model = DetrForObjectDetection.from_config(config)
    # distinct object queries from the start, as the DETR paper's code (see the module docstring)
    torch.nn.init.normal_(model.model.query_position_embeddings.weight, std=1.0)
    if backbone_weights is not None:
        encoder = model.model.backbone.conv_encoder.model
        own = encoder.state_dict()
        missing = [k for k in own if k not in backbone_weights]
        if missing:
            raise RuntimeError(f"the pretrained backbone lacks {missing[:3]}")
        with torch.no_grad():
            for k, v in own.items():
                v.copy_(backbone_weights[k])
    model.unfreeze_backbone()
    return model


def evaluate(folder: Path, test: list, threshold: float = 0.05) -> dict:
    """mAP@0.5 through the pipeline on the held-out pictures."""
    from pretrained import pipeline

    det = pipeline("object-detection", model=str(folder), threshold=threshold)
    found = det([image for image, _ in test], batch_size=16)
    detections = [[{"label": SHAPES.index(d["label"]), "score": d["score"],
                    "box": [d["box"]["xmin"], d["box"]["ymin"], d["box"]["xmax"], d["box"]["ymax"]]} for d in ds]
                  for ds in found]
    value, per_class = mean_average_precision(detections, [corners(o) for _, o in test], len(SHAPES))
    return {"map50": value, "ap50_per_class": dict(zip(SHAPES, per_class)), "pictures": len(test)}


def main(argv: list[str] | None = None) -> dict:
    from pretrained.io.paths import cache_home

    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--train", type=int, default=2000)
    parser.add_argument("--test", type=int, default=300)
    parser.add_argument("--steps", type=int, default=4000)
    parser.add_argument("--backbone-steps", type=int, default=600)
    parser.add_argument("--minutes", type=float, default=40.0)
    parser.add_argument("--lr", type=float, default=2e-4)
    parser.add_argument("--batch", type=int, default=32)
    parser.add_argument("--d-model", type=int, default=128)
    parser.add_argument("--queries", type=int, default=10)
    parser.add_argument("--threads", type=int, default=2)
    parser.add_argument("--seed", type=int, default=0)
    parser.add_argument("--out", type=Path, default=cache_home() / "pretrained" / "trained" / "shapes-detr")
    args = parser.parse_args(argv)
    torch.set_num_threads(args.threads)

    from pretrained.training import Trainer, TrainerCallback, TrainingArguments
    from pretrained.processing import DetrImageProcessor

    start = time.time()
    train = dataset(0, args.train)
    test = dataset(TEST_SEED0, args.test)
    processor = DetrImageProcessor(size={"shortest_edge": SIZE, "longest_edge": SIZE})
    out = args.out
    out.mkdir(parents=True, exist_ok=True)
    model = build_model(args, pretrain_backbone(args, train, processor, out) if args.backbone_steps else None)
    deadline = start + args.minutes * 60

    class Deadline(TrainerCallback):
        def on_step_end(self, args_, state, control, **kw):
            if time.time() > deadline:
                control.should_training_stop = True
            return control

    training = TrainingArguments(output_dir=str(out / "checkpoints"), max_steps=args.steps,
                                 per_device_train_batch_size=args.batch, learning_rate=args.lr, weight_decay=1e-4,
                                 lr_scheduler_type="cosine", warmup_ratio=0.02, max_grad_norm=0.1, logging_steps=200,
                                 save_strategy="no", report_to=[], seed=args.seed, dataloader_num_workers=0,
                                 remove_unused_columns=False)
    trainer = Trainer(model=model, args=training, train_dataset=Shapes(train, processor, flip=True),
                      data_collator=collate, callbacks=[Deadline()])
    result = trainer.train()
    model.save_pretrained(out)
    processor.save_pretrained(out)
    minutes = (time.time() - start) / 60
    metrics = evaluate(out, test)
    held = out / "held_out"
    held.mkdir(exist_ok=True)
    from PIL import Image

    boxes = {}
    for i, (image, objects) in enumerate(test[:HELD_OUT_FILES]):
        name = f"shapes_{i:02d}.png"
        Image.fromarray(image).save(held / name)
        boxes[name] = [{"label": SHAPES[c], "box": b} for c, b in corners(objects)]
    (held / "boxes.json").write_text(json.dumps(boxes, indent=1) + "\n")
    results = {"model": type(model).__name__, "parameters": sum(p.numel() for p in model.parameters()),
               "train_pictures": len(train), "backbone_steps": args.backbone_steps, "steps": result.global_step, "minutes": round(minutes, 2),
               "threads": args.threads, "final_train_loss": result.training_loss, **metrics,
               "files_map50": evaluate(out, test[:HELD_OUT_FILES])["map50"]}
    (out / "results.json").write_text(json.dumps(results, indent=1) + "\n")
    print(json.dumps(results, indent=1))
    return results


if __name__ == "__main__":
    main()
