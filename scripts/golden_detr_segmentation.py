"""Goldens for DETR's segmentation head (``DetrForSegmentation``, ResNet backbone,
``use_timm_backbone=False``), from the reference (transformers 5.25):

    /work/refvenv/bin/python scripts/golden_detr_segmentation.py              # all parts
    /work/refvenv/bin/python scripts/golden_detr_segmentation.py models       # some: models processor pipeline

models: for every fixture the reference builds a tiny random DetrForSegmentation (d_model 16, 8
attention heads in the encoder -- the mask head needs d_model + heads a multiple of 8 --, a ResNet
giving 3 or 4 feature maps), moves its weights and frozen batch-norm statistics away from their init
values, saves it to tests/fixtures/models/<name>/ (with a DetrImageProcessorPil config), loads it back
and records in tests/fixtures/goldens/detr_segmentation/<name>.safetensors:
  input.pixel_values / input.pixel_mask   (B=2, 3, 64, 64); the second picture padded (valid 48 x 24; uint8)
  output.*      logits, pred_boxes, pred_masks, last_hidden_state, encoder_last_hidden_state
  other.*       the same for unmasked pixels of another size (input.pixel_values_other: 48 x 80)
  bf16.*        the reference's bfloat16 run
  case.<c>.<i>.class_labels / .boxes / .masks   the labels of loss case <c>, image <i> (masks as uint8)
and in detr_segmentation.json: the class, per loss case the loss and its parts, the round trip (our
save_pretrained read back by the reference's AutoModelForImageSegmentation and
AutoModelForUniversalSegmentation: max abs diff of its outputs against the goldens).

processor: DetrImageProcessorPil's post_process_semantic/instance/panoptic_segmentation on
model-like outputs (confident queries with blob masks) and on the fixture's own outputs, every
option (target_sizes, thresholds, label_ids_to_fuse, return_segmentation_scores,
return_coco_annotation); maps in processor.safetensors, segments in the json's "processor".

pipeline: the reference's image-segmentation pipeline on detr-tiny-seg over the bundled real
pictures, every subtask and thresholds; labels, scores and masks (md5 of the bytes) in the json's
"pipeline".
"""

from __future__ import annotations

import hashlib
import json
import shutil
import sys
import tempfile
from pathlib import Path

import numpy as np
import torch
import transformers
from safetensors.torch import load_file, save_file

ROOT = Path(__file__).resolve().parent.parent
FIX = ROOT / "tests" / "fixtures"
OUT = FIX / "goldens" / "detr_segmentation"
sys.path.insert(0, str(ROOT))  # for the round trip through our own save_pretrained

from golden_common import ref_load  # noqa: E402

B = 2
BASIC4 = dict(model_type="resnet", embedding_size=8, hidden_sizes=[8, 16, 16, 24], depths=[1, 1, 1, 1],
              layer_type="basic", out_features=["stage1", "stage2", "stage3", "stage4"])
BOTTLENECK3 = dict(model_type="resnet", embedding_size=8, hidden_sizes=[8, 16, 32], depths=[1, 1, 1],
                   layer_type="bottleneck", out_features=["stage1", "stage2", "stage3"], hidden_act="gelu")
TINY = dict(use_timm_backbone=False, d_model=16, encoder_layers=1, decoder_layers=1, encoder_attention_heads=8,
            decoder_attention_heads=2, encoder_ffn_dim=24, decoder_ffn_dim=24, num_queries=6, backbone_config=BASIC4)
VARIANT = dict(TINY, backbone_config=BOTTLENECK3, decoder_layers=2, position_embedding_type="learned",
               auxiliary_loss=True, activation_function="gelu", eos_coefficient=0.25, mask_loss_coefficient=2,
               dice_loss_coefficient=3)
LABELS = ["sky", "cat", "rocket", "ground"]
NAMED = dict(id2label=dict(enumerate(LABELS)), label2id={n: i for i, n in enumerate(LABELS)})

# name -> config kwargs
FIXTURES = {
    "detr-tiny-seg": dict(TINY, **NAMED),
    "detr-learned-aux-seg": dict(VARIANT, num_labels=3),
}
PIPELINE_FIXTURE = "detr-tiny-seg"
OUTPUT_KEYS = ("logits", "pred_boxes", "pred_masks", "last_hidden_state", "encoder_last_hidden_state")
CLASS = "DetrForSegmentation"


def inputs(seed: int) -> dict[str, torch.Tensor]:
    g = torch.Generator().manual_seed(seed)
    x = torch.randn(B, 3, 64, 64, generator=g)
    mask = torch.ones(B, 64, 64, dtype=torch.long)
    mask[1, 48:] = 0
    mask[1, :, 24:] = 0   # the 2 x 2 last map (stride 32) loses its right column
    x[1] *= mask[1]   # padding is zeros, as the processor pads
    return {"pixel_values": x, "pixel_mask": mask}


def outputs_of(model, batch) -> dict[str, torch.Tensor]:
    with torch.no_grad():
        out = model(**batch)
    return {k: getattr(out, k).detach().clone() for k in OUTPUT_KEYS}


def loss_cases(config, seed: int) -> dict[str, list[dict]]:
    """Boxes with their masks (the box's rectangle with a random hole); 'sizes': the second
    picture's masks at its unpadded size (the loss pads them); 'one_empty': no object in one."""
    g = torch.Generator().manual_seed(seed + 1)

    def target(n: int, hw=(64, 64)) -> dict:
        centers = torch.rand(n, 2, generator=g) * 0.6 + 0.2
        sizes = torch.rand(n, 2, generator=g) * 0.3 + 0.1
        masks = torch.zeros(n, *hw)
        for j in range(n):
            cx, cy, w, h = (centers[j, 0] * hw[1], centers[j, 1] * hw[0], sizes[j, 0] * hw[1], sizes[j, 1] * hw[0])
            masks[j, int(cy - h / 2):int(cy + h / 2) + 1, int(cx - w / 2):int(cx + w / 2) + 1] = 1
        masks *= (torch.rand(n, *hw, generator=g) > 0.2).float()
        return {"class_labels": torch.randint(0, config.num_labels, (n,), generator=g),
                "boxes": torch.cat([centers, sizes], dim=1), "masks": masks}

    return {"masks": [target(3), target(2)], "sizes": [target(2), target(3, (48, 24))],
            "one_empty": [target(0), target(4)]}


def randomize(model, seed: int) -> None:
    torch.manual_seed(seed)
    with torch.no_grad():   # away from init values; frozen batch norms with non-trivial statistics
        for p in model.parameters():
            p.add_(torch.randn_like(p) * 0.15)
        for key, buf in model.named_buffers():
            if key.endswith("running_var"):
                buf.uniform_(0.5, 1.5)
            elif key.endswith(("running_mean", "weight", "bias")):
                buf.add_(torch.randn_like(buf) * 0.2)
        model.detr.class_labels_classifier.weight.mul_(4)   # confident classes: segments pass the thresholds
        # a random head's queries and masks come out nearly alike (zero queries into one decoder layer, the
        # FPN maps swamping the attention maps): pulled apart, so that segments differ per query
        model.detr.model.query_position_embeddings.weight.mul_(30)
        for layer in model.detr.model.decoder.layers:
            layer.encoder_attn.v_proj.weight.mul_(4)
        model.mask_head.conv1.conv.weight[:, model.config.d_model:].mul_(100)   # the attention maps' channels
        model.bbox_attention.q_proj.weight.mul_(4)
        for stage in model.mask_head.fpn_stages:
            stage.fpn_adapter.weight.mul_(0.1)


def build(name: str) -> dict:
    kwargs = dict(FIXTURES[name])
    backbone = dict(kwargs.pop("backbone_config"))
    backbone_cfg = transformers.ResNetConfig(**{k: v for k, v in backbone.items() if k != "model_type"})
    config = transformers.DetrConfig(backbone_config=backbone_cfg, **kwargs)
    seed = sum(map(ord, name))
    torch.manual_seed(seed)
    model = transformers.DetrForSegmentation(config).eval()
    randomize(model, seed)
    folder = FIX / "models" / name
    shutil.rmtree(folder, ignore_errors=True)
    model.save_pretrained(folder)
    transformers.DetrImageProcessorPil(size={"shortest_edge": 64, "longest_edge": 96}).save_pretrained(folder)

    loaded = ref_load(transformers.DetrForSegmentation, folder)
    batch = inputs(seed)
    tensors = {f"input.{k}": v for k, v in batch.items()}
    tensors["input.pixel_mask"] = batch["pixel_mask"].to(torch.uint8)   # 0 / 1 (int64 in the run)
    expected = outputs_of(loaded, batch)
    tensors.update({f"output.{k}": v for k, v in expected.items()})
    g = torch.Generator().manual_seed(seed + 7)
    xo = torch.randn(B, 3, 48, 80, generator=g)
    tensors["input.pixel_values_other"] = xo
    tensors.update({f"other.{k}": v for k, v in outputs_of(loaded, {"pixel_values": xo}).items()})
    bf = ref_load(transformers.DetrForSegmentation, folder, dtype=torch.bfloat16)
    bf_out = outputs_of(bf, {"pixel_values": batch["pixel_values"].to(torch.bfloat16), "pixel_mask": batch["pixel_mask"]})
    tensors.update({f"bf16.{k}": v.float() for k, v in bf_out.items()})
    meta = {"class": CLASS, "files": sorted(p.name for p in folder.iterdir()), "losses": {}}
    for case, labels in loss_cases(loaded.config, seed).items():
        with torch.no_grad():
            out = loaded(**batch, labels=labels)
        meta["losses"][case] = {"loss": float(out.loss), "parts": {k: float(v) for k, v in out.loss_dict.items()},
                                "auxiliary_outputs": len(out.auxiliary_outputs or [])}
        for i, t in enumerate(labels):
            for key, value in t.items():   # the 0 / 1 masks kept as uint8: 4 x smaller
                tensors[f"case.{case}.{i}.{key}"] = value.to(torch.uint8) if key == "masks" else value
    OUT.mkdir(parents=True, exist_ok=True)
    save_file({k: v.contiguous() for k, v in tensors.items()}, str(OUT / f"{name}.safetensors"))
    meta["roundtrip_max_abs_diff"] = roundtrip(name, folder, batch, expected)
    return meta


def roundtrip(name: str, folder: Path, batch, expected) -> float:
    """Load with OUR library, save with OUR save_pretrained, read back with the reference's Auto
    classes for the head."""
    import pretrained.auto as ours

    our_cls = ours.model_module("detr").MODEL_CLASSES["universal-segmentation"]
    model = our_cls.from_pretrained(folder, strict=True)
    worst = 0.0
    with tempfile.TemporaryDirectory() as tmp:
        model.save_pretrained(tmp)
        if sorted(load_file(str(Path(tmp) / "model.safetensors"))) != sorted(load_file(str(folder / "model.safetensors"))):
            raise SystemExit(f"{name}: our save has other tensor names than the reference's")
        for auto in ("AutoModelForImageSegmentation", "AutoModelForUniversalSegmentation"):
            back = ref_load(getattr(transformers, auto), tmp)
            if type(back).__name__ != CLASS:
                raise SystemExit(f"{name}: the reference's {auto} read our save as {type(back).__name__}")
            out = outputs_of(back, batch)
            worst = max(worst, max(float((out[k] - expected[k]).abs().max()) for k in out))
    return worst


# --- post-processing -------------------------------------------------------------------------------
def post_outputs(gen: torch.Generator, batch: int = 2, queries: int = 8, labels: int = 4):
    """Model-like outputs: six confident queries (classes 0, 2, 0, 1, 3, 0: class 0 three times, to
    fuse), two "no object" ones; each query's mask a blob on its own cell of a 3 x 4 grid, but
    query 3 shares query 1's cell (weaker: its segment is mostly taken)."""
    classes = torch.randn(batch, queries, labels + 1, generator=gen) * 1.5
    classes[:, :6, :labels] += 5 * torch.nn.functional.one_hot(torch.tensor([0, 2, 0, 1, 3, 0]), labels)
    classes[:, 6:, labels] += 5
    coarse = torch.randn(batch, queries, 12, generator=gen) * 1.5 - 4
    for b in range(batch):
        cells = torch.randperm(12, generator=gen)[:queries]
        cells[3] = cells[1]
        coarse[b, torch.arange(queries), cells] += torch.tensor([10.0, 10, 10, 7, 10, 10, 10, 10])
    masks = torch.nn.functional.interpolate(coarse.view(batch, queries, 3, 4), size=(12, 16), mode="bilinear",
                                            align_corners=False)
    return classes, masks


SIZES = [(20, 30), (17, 11)]
POST_CASES = {   # name -> (method, kwargs)
    "semantic": ("semantic", {}),
    "semantic_sizes": ("semantic", dict(target_sizes=SIZES)),
    "semantic_scores": ("semantic", dict(target_sizes=SIZES, return_segmentation_scores=True)),
    "instance": ("instance", {}),
    "instance_sizes": ("instance", dict(target_sizes=SIZES, threshold=0.3)),
    "instance_loose": ("instance", dict(target_sizes=SIZES, threshold=0.2, mask_threshold=0.3,
                                        overlap_mask_area_threshold=0.5)),
    "instance_coco": ("instance", dict(target_sizes=SIZES, threshold=0.2, return_coco_annotation=True)),
    "instance_none": ("instance", dict(target_sizes=SIZES, threshold=0.999)),
    "panoptic": ("panoptic", dict(label_ids_to_fuse={0})),
    "panoptic_sizes": ("panoptic", dict(target_sizes=SIZES, threshold=0.4, label_ids_to_fuse={0, 2})),
    "panoptic_loose": ("panoptic", dict(target_sizes=SIZES, threshold=0.2, mask_threshold=0.3,
                                        overlap_mask_area_threshold=0.5)),
    "panoptic_none": ("panoptic", dict(target_sizes=SIZES, threshold=0.999)),
}


def post_record(proc, outputs, prefix: str, t: dict, cases: dict) -> dict:
    record_all = {}
    for name, (method, kwargs) in cases.items():
        got = getattr(proc, f"post_process_{method}_segmentation")(outputs, **kwargs)
        record = []
        for i, item in enumerate(got):
            if method == "semantic":
                seg = item.segmentation if kwargs.get("return_segmentation_scores") else item
                if kwargs.get("return_segmentation_scores"):
                    t[f"{prefix}.{name}.{i}.scores"] = item.segmentation_scores
                entry = {"shape": list(seg.shape), "dtype": str(seg.dtype)}
            else:
                seg = item["segmentation"]
                entry = {"segments_info": item["segments_info"]}
                if isinstance(seg, list):   # run-length encodings
                    entry["rle"] = [[int(v) for v in r] for r in seg]
                    record.append(entry)
                    continue
                entry.update(shape=list(seg.shape), dtype=str(seg.dtype))
            t[f"{prefix}.{name}.{i}.segmentation"] = seg.clone()
            record.append(entry)
        record_all[name] = {"method": method, "kwargs": {k: sorted(v) if isinstance(v, set) else v
                                                         for k, v in kwargs.items()}, "results": record}
    return record_all


def processor() -> dict:
    from transformers.models.detr.modeling_detr import DetrSegmentationOutput

    t: dict[str, torch.Tensor] = {}
    proc = transformers.DetrImageProcessorPil()
    gen = torch.Generator().manual_seed(11)
    classes, masks = post_outputs(gen)
    t["post.logits"], t["post.pred_masks"] = classes, masks
    meta = {"post": post_record(proc, DetrSegmentationOutput(logits=classes, pred_masks=masks), "post", t, POST_CASES)}
    # the fixture's own outputs on its golden inputs (16 x 16 masks of 6 queries)
    g = load_file(str(OUT / f"{PIPELINE_FIXTURE}.safetensors"))
    own = DetrSegmentationOutput(logits=g["output.logits"], pred_masks=g["output.pred_masks"])
    own_cases = {k: v for k, v in POST_CASES.items() if not k.endswith("_none")}
    for name in ("instance", "panoptic"):   # the default threshold keeps few of a random model's queries
        own_cases[f"{name}_low"] = (name, dict(target_sizes=SIZES, threshold=0.1))
    meta["model"] = {"fixture": PIPELINE_FIXTURE, "results": post_record(proc, own, "model", t, own_cases)}
    save_file({k: v.contiguous() for k, v in t.items()}, str(OUT / "processor.safetensors"))
    return meta


# --- the image-segmentation pipeline -------------------------------------------------------------------
PIPE_IMAGES = ["chelsea.png", "rocket.jpg", "camera.png", "coins.png", "horse.png"]
PIPE_CASES = {   # name -> the pipeline's keyword arguments
    "semantic": dict(subtask="semantic"),
    "instance": dict(subtask="instance", threshold=0.3),
    "instance_all": dict(subtask="instance", threshold=0.0),
    "panoptic": dict(subtask="panoptic", threshold=0.3),
    "panoptic_loose": dict(subtask="panoptic", threshold=0.1, mask_threshold=0.3, overlap_mask_area_threshold=0.2),
    "default": {},
}


def mask_record(mask) -> dict:
    """A mask as the golden keeps it: mode, size, pixels inside, and the md5 of its bytes (exact)."""
    array = np.asarray(mask)
    return {"mode": mask.mode, "size": list(mask.size), "inside": int((array == 255).sum()),
            "values": sorted(int(v) for v in np.unique(array)), "md5": hashlib.md5(array.tobytes()).hexdigest()}


def pipeline_goldens() -> dict:
    folder = FIX / "models" / PIPELINE_FIXTURE
    seg = transformers.pipeline("image-segmentation", model=str(folder),
                                image_processor=transformers.DetrImageProcessorPil.from_pretrained(folder))
    if type(seg.model).__name__ != CLASS:
        raise SystemExit(f"the reference's pipeline loaded a {type(seg.model).__name__}")
    meta = {"model": PIPELINE_FIXTURE, "images": PIPE_IMAGES, "cases": {}}
    for case, kwargs in PIPE_CASES.items():
        answers = [seg(str(FIX / "images" / name), **kwargs) for name in PIPE_IMAGES]
        meta["cases"][case] = {"kwargs": kwargs, "answers": [
            [{"label": a["label"], "score": a["score"], "mask": mask_record(a["mask"])} for a in per_image]
            for per_image in answers]}
    return meta


def main(parts: list[str] | None = None) -> None:
    parts = parts or ["models", "processor", "pipeline"]
    transformers.utils.logging.disable_progress_bar()
    transformers.utils.logging.set_verbosity_error()
    path = OUT / "detr_segmentation.json"
    index = json.loads(path.read_text()) if path.exists() else {"models": {}}
    index.update(transformers_version=transformers.__version__, torch_version=torch.__version__)
    if "models" in parts:
        for name in FIXTURES:
            index["models"][name] = m = build(name)
            print(f"{name:22s} losses { {k: round(v['loss'], 4) for k, v in m['losses'].items()} }  "
                  f"round trip {m['roundtrip_max_abs_diff']:.2e}")
    if "processor" in parts:
        index["processor"] = processor()
        print("processor:", {k: [len(r.get("segments_info", [])) for r in v["results"]]
                             for k, v in index["processor"]["model"]["results"].items()})
    if "pipeline" in parts:
        index["pipeline"] = pipeline_goldens()
        print("pipeline:", {c: [len(a) for a in v["answers"]] for c, v in index["pipeline"]["cases"].items()})
    OUT.mkdir(parents=True, exist_ok=True)
    path.write_text(json.dumps(index, indent=2, sort_keys=True) + "\n")


if __name__ == "__main__":
    main(sys.argv[1:] or None)
