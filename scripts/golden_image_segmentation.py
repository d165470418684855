"""Goldens for semantic segmentation's processing and the image-segmentation pipeline, from the
reference 5.x, on the real pictures in tests/fixtures/images (scikit-image's, public domain):

    /work/refvenv/bin/python scripts/golden_image_segmentation.py

The processor is the reference's slow (PIL + numpy) ``SegformerImageProcessorPil``, named
explicitly (its default "fast" class needs torchvision, which this torch build has none of).

Writes (all small):
  tests/fixtures/images/segmaps/*.png   segmentation maps made from the pictures: mode L and P
                                        (palette indices), with 0 (background) and 255 (ignored)
  tests/fixtures/goldens/segmentation/processing.json + .npz
        per case: init / call kwargs, inputs; pixel_values and labels (or per-image lists);
        post_process_semantic_segmentation on recorded logits, with and without target sizes
        and scores; the reference's saved preprocessor_config.json of the default processor
  tests/fixtures/models/segformer-pipeline/   a tiny random SegFormer (4 named labels) + processor
  tests/fixtures/goldens/segmentation/pipeline.json + .npz
        the pipeline's answers (labels in order; each picture's masks as one map of the index
        of the answer each pixel belongs to) per case; the error for a subtask it lacks
"""

from __future__ import annotations

import json
import shutil
from pathlib import Path

import numpy as np
import torch
import transformers
from PIL import Image

ROOT = Path(__file__).resolve().parent.parent
FIX = ROOT / "tests" / "fixtures"
IMAGES = FIX / "images"
MAPS = IMAGES / "segmaps"
OUT = FIX / "goldens" / "segmentation"
DST = FIX / "models" / "segformer-pipeline"
Proc = transformers.SegformerImageProcessorPil

PIPE_IMAGES = ["chelsea.png", "rocket.jpg", "camera.png", "coins.png", "horse.png"]
PIPE_LABELS = ["background", "sky", "cat", "rocket"]


def make_maps() -> None:
    """Label maps at the pictures' sizes: class ids from grey levels and the horse's silhouette."""
    MAPS.mkdir(parents=True, exist_ok=True)
    cat = np.asarray(Image.open(IMAGES / "chelsea.png").convert("L"))
    p = Image.fromarray((cat // 52).astype(np.uint8), mode="L").convert("P")   # ids 0..4 as palette indices
    p.putpalette([v for i in range(256) for v in (i * 40 % 256, i * 90 % 256, i * 150 % 256)])
    p.save(MAPS / "chelsea_p.png")
    coins = np.asarray(Image.open(IMAGES / "coins.png"))
    Image.fromarray((coins // 64).astype(np.uint8), mode="L").save(MAPS / "coins_l.png")
    dark = np.asarray(Image.open(IMAGES / "horse.png").convert("L")) < 128   # the black silhouette
    horse = dark.astype(np.uint8) * 2                    # 0 background, 2 horse
    horse[:, :40] = 255                                  # an unlabelled band
    horse[200:, 300:] = 1
    Image.fromarray(horse, mode="L").save(MAPS / "horse_l.png")
    small = np.asarray(Image.open(IMAGES / "variants" / "cat_rgb.png").convert("L"))
    Image.fromarray((small // 64).astype(np.uint8), mode="L").save(MAPS / "cat_rgb_l.png")
    small = np.asarray(Image.open(IMAGES / "variants" / "coins_l.png"))
    Image.fromarray((small // 100).astype(np.uint8), mode="L").save(MAPS / "coins_small_l.png")


def open_input(spec: str):
    """As tests/test_segmentation_processing.py reads them: ``pil:`` a PIL image (``rgb:`` converted
    to RGB), ``hwc:`` a uint8 RGB array, ``map:`` a PIL map, ``i64:`` a map as an int64 array,
    ``batch:a+b`` an int64 (2, H, W) array of two maps."""
    kind, name = spec.split(":", 1)
    if kind == "batch":
        return np.stack([np.asarray(Image.open(MAPS / n)).astype(np.int64) for n in name.split("+")])
    if kind in ("map", "i64"):
        image = Image.open(MAPS / name)
        return image if kind == "map" else np.asarray(image).astype(np.int64)
    image = Image.open(IMAGES / name)
    if kind == "pil":
        return image
    if kind == "rgb":
        return image.convert("RGB")
    if kind == "hwc":
        return np.asarray(image.convert("RGB"))
    raise ValueError(spec)


CASES = {
    "maps": dict(init=dict(size={"height": 32, "width": 48}), call=dict(do_convert_rgb=True),
                 images=["pil:chelsea.png", "pil:coins.png", "pil:horse.png"],
                 maps=["map:chelsea_p.png", "map:coins_l.png", "map:horse_l.png"]),
    "maps_reduced": dict(init=dict(size={"height": 32, "width": 48}, do_reduce_labels=True),
                         call=dict(do_convert_rgb=True), images=["pil:chelsea.png", "pil:coins.png", "pil:horse.png"],
                         maps=["map:chelsea_p.png", "map:coins_l.png", "map:horse_l.png"]),
    "numpy_call_reduce": dict(init=dict(size={"height": 40, "width": 24}),
                              call=dict(do_reduce_labels=True, resample=3), images=["hwc:chelsea.png"],
                              maps=["i64:chelsea_p.png"]),
    "map_batch": dict(init=dict(size={"height": 20, "width": 30}, image_mean=[0.5, 0.4, 0.3], image_std=[0.2, 0.3, 0.4]),
                      call={}, images=["rgb:chelsea.png", "rgb:chelsea.png"], maps="batch:chelsea_p.png+chelsea_p.png"),
    "no_resize_lists": dict(init=dict(do_resize=False), call={"return_tensors": None},
                            images=["rgb:variants/cat_rgb.png", "rgb:variants/coins_l.png"],
                            maps=["map:cat_rgb_l.png", "map:coins_small_l.png"]),
    "images_only": dict(init=dict(size={"height": 16, "width": 16}), call={},
                        images=["rgb:rocket.jpg", "pil:variants/cat_rgb.png"], maps=None),
}


def processing() -> tuple[dict, dict]:
    meta, arrays = {"cases": {}}, {}
    for name, case in CASES.items():
        proc = Proc(**case["init"])
        call = dict(case["call"])
        tensors = call.pop("return_tensors", "pt")
        images = [open_input(s) for s in case["images"]]
        maps = case["maps"]
        maps = None if maps is None else open_input(maps) if isinstance(maps, str) else [open_input(s) for s in maps]
        out = proc(images, segmentation_maps=maps, return_tensors=tensors, **call)
        keys = sorted(out.keys())
        for key in keys:
            value = out[key]
            if tensors is None:
                for i, v in enumerate(value):
                    arrays[f"{name}.{key}.{i}"] = np.asarray(v)
            else:
                arrays[f"{name}.{key}"] = np.asarray(value)
        meta["cases"][name] = {**case, "keys": keys, "stacked": tensors is not None,
                               "dtypes": {k: str(np.asarray(out[k][0]).dtype) for k in keys}}
    # post-processing on recorded logits
    g = torch.Generator().manual_seed(0)
    logits = torch.randn(2, 4, 8, 12, generator=g) * 3
    arrays["post.logits"] = logits.numpy()
    proc = Proc()
    for tag, sizes in (("none", None), ("sizes", [(30, 45), (17, 9)])):   # (tensor sizes fail in 5.25)
        outputs = transformers.modeling_outputs.SemanticSegmenterOutput(logits=logits)
        maps = proc.post_process_semantic_segmentation(outputs, target_sizes=sizes)
        for i, m in enumerate(maps):
            arrays[f"post.{tag}.{i}"] = m.numpy()
        scored = proc.post_process_semantic_segmentation(outputs, target_sizes=sizes, return_segmentation_scores=True)
        for i, m in enumerate(scored):
            assert torch.equal(m.segmentation, maps[i])
            arrays[f"post.{tag}.scores.{i}"] = m.segmentation_scores.numpy()
    meta["post_sizes"] = {"sizes": [[30, 45], [17, 9]]}
    folder = OUT / "configs" / "SegformerImageProcessor"
    shutil.rmtree(folder, ignore_errors=True)
    Proc().save_pretrained(folder)
    Proc(size={"height": 64, "width": 32}, do_reduce_labels=True, resample=0).save_pretrained(folder / "custom")
    return meta, arrays


def masks_to_index(answers: list[dict]) -> np.ndarray:
    """Each pixel: the index of the answer whose mask holds it (the masks split the picture)."""
    stack = np.stack([np.asarray(a["mask"]) for a in answers])
    assert set(np.unique(stack)) <= {0, 255} and all(a["mask"].mode == "L" for a in answers)
    assert ((stack == 255).sum(0) == 1).all()
    return (stack == 255).argmax(0).astype(np.uint8)


def pipeline_goldens() -> tuple[dict, dict]:
    torch.manual_seed(0)
    config = transformers.SegformerConfig(
        num_encoder_blocks=2, depths=[1, 1], sr_ratios=[2, 1], hidden_sizes=[16, 32], patch_sizes=[7, 3],
        strides=[4, 2], num_attention_heads=[1, 2], mlp_ratios=[4, 4], decoder_hidden_size=16,
        num_labels=len(PIPE_LABELS), id2label=dict(enumerate(PIPE_LABELS)),
        label2id={n: i for i, n in enumerate(PIPE_LABELS)})
    model = transformers.SegformerForSemanticSegmentation(config).eval()
    with torch.no_grad():   # spread the classes so every picture has several
        for p in model.parameters():
            p.add_(torch.randn_like(p) * 0.2)
        model.decode_head.classifier.weight.normal_(std=1.0)
        model.decode_head.batch_norm.running_mean.normal_(std=0.2)
        model.decode_head.batch_norm.running_var.uniform_(0.5, 1.5)
    shutil.rmtree(DST, ignore_errors=True)
    model.save_pretrained(DST)
    processor = Proc(size={"height": 32, "width": 32})
    processor.save_pretrained(DST)
    pipe = transformers.pipeline("image-segmentation", model=str(DST), image_processor=processor)
    meta = {"images": PIPE_IMAGES, "cases": {}}
    arrays = {}

    def record(case: str, answers_per_image: list[list[dict]], kwargs: dict) -> None:
        meta["cases"][case] = {"kwargs": kwargs, "labels": [], "scores": [], "sizes": []}
        for i, answers in enumerate(answers_per_image):
            meta["cases"][case]["labels"].append([a["label"] for a in answers])
            meta["cases"][case]["scores"].append([a["score"] for a in answers])
            meta["cases"][case]["sizes"].append(list(answers[0]["mask"].size))
            arrays[f"{case}.{i}"] = masks_to_index(answers)

    paths = [str(IMAGES / f) for f in PIPE_IMAGES]
    for case, kwargs in (("semantic", {"subtask": "semantic"}), ("default", {}),
                         ("thresholds", {"subtask": "semantic", "threshold": 0.5, "mask_threshold": 0.3,
                                         "overlap_mask_area_threshold": 0.2})):
        record(case, [pipe(p, **kwargs) for p in paths], kwargs)
    record("batch", pipe(paths, batch_size=2), {"batch_size": 2})
    record("pil", [pipe(Image.open(IMAGES / "chelsea.png"))], {})
    try:
        pipe(paths[0], subtask="instance")
        raise SystemExit("the reference ran subtask='instance' on SegFormer")
    except ValueError as e:
        meta["instance_error"] = str(e)
    return meta, arrays


def main() -> None:
    transformers.utils.logging.disable_progress_bar()
    make_maps()
    OUT.mkdir(parents=True, exist_ok=True)
    meta, arrays = processing()
    meta["transformers"] = transformers.__version__
    (OUT / "processing.json").write_text(json.dumps(meta, indent=1) + "\n")
    np.savez_compressed(OUT / "processing.npz", **arrays)
    meta, arrays = pipeline_goldens()
    meta["transformers"] = transformers.__version__
    (OUT / "pipeline.json").write_text(json.dumps(meta, indent=1) + "\n")
    np.savez_compressed(OUT / "pipeline.npz", **arrays)
    print({c: v["labels"][0] for c, v in meta["cases"].items()})


if __name__ == "__main__":
    main()
