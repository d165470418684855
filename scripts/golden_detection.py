"""Goldens for object detection around the models: the reference's DETR / YOLOS image processors
(PIL classes, on the real pictures of tests/fixtures/images with COCO annotations), its
post_process_object_detection, scipy's linear_sum_assignment, and the object-detection pipeline on
tiny random detectors:

    /work/refvenv/bin/python scripts/golden_detection.py

The processors are the reference's slow ``DetrImageProcessorPil`` / ``YolosImageProcessorPil``
(its default "fast" ones need torchvision, which this torch build has none of); the pipeline is
given them too. Writes (all small):
  tests/fixtures/goldens/detection/processors.json    each case: class, init / call kwargs, pictures,
                                                      annotations, label dicts (lists), shapes
  tests/fixtures/goldens/detection/processors.npz     pixel_values / pixel_mask per case
  tests/fixtures/goldens/detection/configs/<Class>/preprocessor_config.json  the reference's save
  tests/fixtures/goldens/detection/postprocess.json   raw outputs and post-processed results
  tests/fixtures/goldens/detection/assignment.json    cost matrices and scipy's assignments
  tests/fixtures/models/<detector>-pipeline/          the pipelines' tiny detectors
  tests/fixtures/goldens/object_detection.json        the reference pipeline's outputs
"""

from __future__ import annotations

import json
import shutil
from pathlib import Path

import numpy as np
import torch
import transformers
from PIL import Image
from scipy.optimize import linear_sum_assignment
from transformers import DetrImageProcessorPil, YolosImageProcessorPil

ROOT = Path(__file__).resolve().parent.parent
FIX = ROOT / "tests" / "fixtures"
IMAGES = FIX / "images"
OUT = FIX / "goldens" / "detection"
CLASSES = {"DetrImageProcessor": DetrImageProcessorPil, "YolosImageProcessor": YolosImageProcessorPil}
PICTURES = ["chelsea.png", "rocket.jpg", "horse.png", "camera.png"]


def annotation(name: str, image_id: int) -> dict:
    """Boxes inside the picture, one partly outside (clipped), one crowd (dropped), one empty (dropped)."""
    w, h = Image.open(IMAGES / name).size
    return {"image_id": image_id, "annotations": [
        {"bbox": [0.1 * w, 0.2 * h, 0.3 * w, 0.25 * h], "category_id": 1, "area": 0.075 * w * h, "iscrowd": 0},
        {"bbox": [0.6 * w, 0.5 * h, 0.55 * w, 0.3 * h], "category_id": 3, "area": 0.1 * w * h},
        {"bbox": [0.2 * w, 0.1 * h, 0.2 * w, 0.2 * h], "category_id": 2, "area": 0.04 * w * h, "iscrowd": 1},
        {"bbox": [5.0, 5.0, 0.0, 10.0], "category_id": 0, "area": 0.0},
        {"bbox": [0.45 * w, 0.05 * h, 0.1 * w, 0.6 * h], "category_id": 0, "area": 0.06 * w * h, "iscrowd": 0},
    ]}


SMALL = {"shortest_edge": 32, "longest_edge": 48}
# name -> (class, init kwargs, call kwargs, pictures, with annotations)
CASES = {}
for cls in CLASSES:
    short = cls[:4].lower()
    CASES.update({
        f"{short}_batch_annotated": (cls, {"size": SMALL}, {"return_tensors": "pt"}, PICTURES[:3], True),
        f"{short}_wide_portrait": (cls, {"size": {"shortest_edge": 24, "longest_edge": 120}}, {"return_tensors": "np"},
                                   ["rocket.jpg", "horse.png"], True),
        f"{short}_height_width_nopad": (cls, {"size": {"height": 24, "width": 40}, "do_pad": False},
                                        {"return_tensors": "np"}, ["chelsea.png"], True),
        f"{short}_max_hw_pad_size": (cls, {"size": {"max_height": 30, "max_width": 40},
                                           "pad_size": {"height": 40, "width": 48}}, {"return_tensors": "pt"},
                                     PICTURES[:2], True),
        f"{short}_legacy_size_max_size": (cls, {"size": 24, "max_size": 40}, {"return_tensors": "pt"}, PICTURES[:2],
                                          False),
        f"{short}_pixel_boxes": (cls, {"size": SMALL, "do_convert_annotations": False}, {"return_tensors": "pt"},
                                 PICTURES[:2], True),
        f"{short}_no_normalize": (cls, {"size": SMALL, "do_normalize": False}, {"return_tensors": "pt"}, PICTURES[1:3],
                                  True),
        f"{short}_lists_bicubic": (cls, {"size": SMALL, "resample": 3}, {"return_tensors": None}, PICTURES[:2], True),
        f"{short}_call_overrides": (cls, {}, {"return_tensors": "pt", "size": {"shortest_edge": 20, "longest_edge": 50},
                                              "do_pad": True}, ["coins.png", "chelsea.png"], False),
    })


def to_list(value):
    if isinstance(value, torch.Tensor):
        return value.tolist()
    if isinstance(value, np.ndarray):
        return value.tolist()
    if isinstance(value, tuple):
        return list(value)
    return value


def processors() -> None:
    arrays, cases = {}, {}
    for name, (cls, init, call, pictures, annotated) in CASES.items():
        proc = CLASSES[cls](**init)
        images = [Image.open(IMAGES / p).convert("RGB") for p in pictures]
        anns = [annotation(p, i) for i, p in enumerate(pictures)] if annotated else None
        out = proc(images, annotations=anns, **call)
        spec = {"class": cls, "init": init, "call": call, "pictures": pictures, "annotations": anns}
        for key in ("pixel_values", "pixel_mask"):
            if key not in out:
                continue
            value = out[key]
            if isinstance(value, list):
                spec[f"{key}_shapes"] = [list(v.shape) for v in value]
                for i, v in enumerate(value):
                    arrays[f"{name}.{key}.{i}"] = np.asarray(v)
            else:
                arrays[f"{name}.{key}"] = np.asarray(value)
        if "labels" in out:
            spec["labels"] = [{k: to_list(v) for k, v in t.items()} for t in out["labels"]]
            spec["label_types"] = [{k: type(v).__name__ for k, v in t.items()} for t in out["labels"]]
        cases[name] = spec
    OUT.mkdir(parents=True, exist_ok=True)
    np.savez_compressed(OUT / "processors.npz", **arrays)
    (OUT / "processors.json").write_text(json.dumps(cases, indent=1) + "\n")
    for cls, klass in CLASSES.items():
        folder = OUT / "configs" / cls
        shutil.rmtree(folder, ignore_errors=True)
        klass(size={"shortest_edge": 40, "longest_edge": 64}).save_pretrained(folder)


def postprocess() -> None:
    g = torch.Generator().manual_seed(3)
    logits = torch.randn(2, 6, 4, generator=g) * 2
    boxes = torch.rand(2, 6, 4, generator=g) * 0.5 + 0.1
    proc = DetrImageProcessorPil()

    class Out:   # what the processor reads
        pass

    out = Out()
    out.logits, out.pred_boxes = logits, boxes
    results = {}
    for name, kw in {"tensor_sizes": {"threshold": 0.3, "target_sizes": torch.tensor([[300, 451], [427, 640]])},
                     "list_sizes": {"threshold": 0.5, "target_sizes": [(30, 40), (50, 20)]},
                     "relative": {"threshold": 0.2}}.items():
        got = proc.post_process_object_detection(out, **kw)
        results[name] = {"kwargs": {k: to_list(v) for k, v in kw.items()},
                         "results": [{k: to_list(v) for k, v in r.items()} for r in got]}
    (OUT / "postprocess.json").write_text(json.dumps({"logits": logits.tolist(), "pred_boxes": boxes.tolist(),
                                                      "cases": results}, indent=1) + "\n")


def assignment() -> None:
    rng = np.random.default_rng(0)
    cases = []
    for shape in [(1, 1), (3, 3), (5, 2), (2, 5), (8, 8), (20, 4), (4, 20), (6, 0), (12, 11)]:
        cost = rng.normal(size=shape) * rng.choice([1.0, 50.0])
        rows, cols = linear_sum_assignment(cost)
        cases.append({"cost": cost.tolist(), "shape": list(shape), "rows": rows.tolist(), "cols": cols.tolist(),
                      "total": float(cost[rows, cols].sum())})
    (OUT / "assignment.json").write_text(json.dumps(cases) + "\n")


# --- the pipeline ---------------------------------------------------------------------------------
DETECT_LABELS = ["cat", "rocket", "horse", "camera"]
PIPELINE_PICTURES = ["chelsea.png", "rocket.jpg", "camera.png", "horse.png", "coins.png"]


def yolos_detector(folder: Path):
    config = transformers.YolosConfig(hidden_size=32, num_hidden_layers=2, num_attention_heads=4, intermediate_size=48,
                                      image_size=[32, 48], patch_size=8, num_detection_tokens=6,
                                      num_labels=len(DETECT_LABELS), id2label=dict(enumerate(DETECT_LABELS)),
                                      label2id={n: i for i, n in enumerate(DETECT_LABELS)})
    model = transformers.YolosForObjectDetection(config).eval()
    with torch.no_grad():   # away from init (zero tokens); spread the heads: scores far apart, boxes of many sizes
        for p in model.parameters():
            p.add_(torch.randn_like(p) * 0.2)
        model.class_labels_classifier.layers[2].weight.normal_(std=1.5)
        model.bbox_predictor.layers[2].weight.normal_(std=0.5)
    model.save_pretrained(folder)
    processor = YolosImageProcessorPil(size={"shortest_edge": 48, "longest_edge": 80})
    processor.save_pretrained(folder)
    return processor


def detr_detector(folder: Path):
    backbone = transformers.ResNetConfig(embedding_size=8, hidden_sizes=[8, 16, 24], depths=[1, 1, 1], layer_type="basic",
                                         out_features=["stage3"])
    config = transformers.DetrConfig(use_timm_backbone=False, backbone_config=backbone, d_model=16, encoder_layers=1,
                                     decoder_layers=1, encoder_attention_heads=2, decoder_attention_heads=2,
                                     encoder_ffn_dim=24, decoder_ffn_dim=24, num_queries=6,
                                     num_labels=len(DETECT_LABELS), id2label=dict(enumerate(DETECT_LABELS)),
                                     label2id={n: i for i, n in enumerate(DETECT_LABELS)})
    model = transformers.DetrForObjectDetection(config).eval()
    with torch.no_grad():   # away from init; spread the heads: scores far apart, boxes of many sizes
        for p in model.parameters():
            p.add_(torch.randn_like(p) * 0.2)
        for key, buf in model.named_buffers():
            if key.endswith("running_var"):
                buf.uniform_(0.5, 1.5)
        model.model.query_position_embeddings.weight.normal_(std=1.0)
        model.class_labels_classifier.weight.normal_(std=0.8)
        model.bbox_predictor.layers[2].weight.normal_(std=0.5)
    model.save_pretrained(folder)
    processor = DetrImageProcessorPil(size={"shortest_edge": 48, "longest_edge": 80})
    processor.save_pretrained(folder)
    return processor


DETECTORS = {"yolos-det-pipeline": yolos_detector, "detr-det-pipeline": detr_detector}


def pipelines() -> None:
    torch.manual_seed(0)
    out = {"transformers": transformers.__version__, "images": PIPELINE_PICTURES, "models": {}}
    for name, make in DETECTORS.items():
        folder = FIX / "models" / name
        shutil.rmtree(folder, ignore_errors=True)
        processor = make(folder)
        pipe = transformers.pipeline("object-detection", model=str(folder), image_processor=processor)
        paths = [str(IMAGES / f) for f in PIPELINE_PICTURES]
        cases = {}
        for threshold in (0.3, 0.5):
            cases[str(threshold)] = [pipe(p, threshold=threshold) for p in paths]
        cases["pil_chelsea"] = pipe(Image.open(IMAGES / "chelsea.png"), threshold=0.3)
        cases["default_threshold"] = pipe(paths[0])
        out["models"][name] = cases
        print(name, json.dumps(cases["0.3"][0])[:300])
    (FIX / "goldens" / "object_detection.json").write_text(json.dumps(out, indent=1) + "\n")


def main() -> None:
    transformers.utils.logging.disable_progress_bar()
    processors()
    postprocess()
    assignment()
    pipelines()


if __name__ == "__main__":
    main()
