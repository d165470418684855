"""Goldens for Mask2Former (``model_type: "mask2former"``), from the reference (transformers 5.25):

    /work/refvenv/bin/python scripts/golden_mask2former.py            # everything
    /work/refvenv/bin/python scripts/golden_mask2former.py blocks     # some parts: blocks models processor

Writes under tests/fixtures/goldens/mask2former/ (index: mask2former.json):

blocks.safetensors: the parts on their own, on random inputs (no backbone needed)
  msda.*     the reference's pure-PyTorch multi_scale_deformable_attention (3 levels, points
             partly outside the maps)
  pd.*       Mask2FormerPixelDecoder (random weights ``pd.w.<key>``) on four random feature maps:
             mask features, the three multi-scale maps
  tm<c>.*    Mask2FormerTransformerModule (weights ``tm<c>.w.<key>``) on random maps: every
             layer's hidden states, normalised queries and mask logits, the self-attention
             weights; case a: post-norm, a 1x1 input projection, random mask features; case b:
             pre-norm, GELU, no projection, spatially constant mask features (so half the
             queries' masks are empty: those attend everywhere)

models: tiny random checkpoints (ResNet and Swin backbones; weights moved away from their init
values) saved to tests/fixtures/models/<name>/ with the reference's processor; per fixture
``<name>.safetensors``: the pixels, the outputs (class/mask logits, the encoder, pixel decoder and
transformer decoder hidden states, auxiliary logits), the bfloat16 run, and the losses' inputs;
mask2former.json records the round trip (our save read back by the reference).

processor.safetensors + the json's "processor": Mask2FormerImageProcessorPil on the bundled
pictures (resize with shortest/longest edge, size_divisor, pad with pixel_mask, segmentation maps
to mask/class labels) and its three post-processing methods on recorded outputs.
"""

from __future__ import annotations

import json
import sys
from pathlib import Path

import torch
import transformers
from safetensors.torch import save_file
from transformers.models.mask2former import modeling_mask2former as ref

ROOT = Path(__file__).resolve().parent.parent
FIX = ROOT / "tests" / "fixtures"
OUT = FIX / "goldens" / "mask2former"
sys.path.insert(0, str(ROOT))  # for the round trip through our own save_pretrained
INDEX = OUT / "mask2former.json"


def randomize(module: torch.nn.Module, gen: torch.Generator) -> None:
    """Every weight random (norms near 1, biases small), so that no part is an identity."""
    with torch.no_grad():
        for mod in module.modules():
            for name, p in mod.named_parameters(recurse=False):
                if isinstance(mod, (torch.nn.LayerNorm, torch.nn.GroupNorm)) and name == "weight":
                    p.copy_(1 + 0.2 * torch.randn(p.shape, generator=gen))
                elif p.dim() >= 2:
                    p.copy_(torch.randn(p.shape, generator=gen) / p[0].numel() ** 0.5)
                else:
                    p.copy_(0.2 * torch.randn(p.shape, generator=gen))


def block_config(**kw) -> transformers.Mask2FormerConfig:
    base = dict(feature_size=32, mask_feature_size=8, hidden_dim=16, encoder_feedforward_dim=32, encoder_layers=2,
                decoder_layers=4, num_attention_heads=2, dim_feedforward=32, num_queries=6)
    return transformers.Mask2FormerConfig(**{**base, **kw})


TM_CASES = {
    "a": dict(config=dict(), constant_masks=False),
    "b": dict(config=dict(feature_size=16, pre_norm=True, activation_function="gelu", decoder_layers=3),
              constant_masks=True),
}
PD_SHAPES = [(10, 14), (5, 7), (3, 4), (2, 2)]
PD_CHANNELS = [8, 16, 24, 32]


def blocks() -> dict:
    gen = torch.Generator().manual_seed(16)
    t: dict[str, torch.Tensor] = {}
    meta: dict = {}
    # 1. the deformable attention function
    shapes = [(4, 5), (2, 3), (1, 2)]
    batch, heads, dim, queries, points = 2, 2, 4, 7, 3
    value = torch.randn(batch, sum(h * w for h, w in shapes), heads, dim, generator=gen)
    locations = torch.rand(batch, queries, heads, len(shapes), points, 2, generator=gen) * 1.2 - 0.1
    weights = torch.randn(batch, queries, heads, len(shapes) * points, generator=gen).softmax(-1).view(
        batch, queries, heads, len(shapes), points)
    t.update({"msda.value": value, "msda.locations": locations, "msda.weights": weights,
              "msda.output": ref.multi_scale_deformable_attention(value, shapes, locations, weights)})
    meta["msda_shapes"] = shapes
    # 2. the pixel decoder
    config = block_config()
    pd = ref.Mask2FormerPixelDecoder(config, feature_channels=PD_CHANNELS).eval()
    randomize(pd, gen)
    with torch.no_grad():
        for layer in pd.encoder.layers:   # offsets of a few pixels, some points off the maps
            layer.self_attn.sampling_offsets.weight.mul_(4.0)
    features = [torch.randn(2, c, h, w, generator=gen) for c, (h, w) in zip(PD_CHANNELS, PD_SHAPES)]
    with torch.no_grad():
        out = pd(features, output_attentions=True)
    t.update({f"pd.w.{k}": v.clone() for k, v in pd.state_dict().items()})
    t.update({f"pd.feature.{i}": f for i, f in enumerate(features)})
    t["pd.mask_features"] = out.mask_features
    t.update({f"pd.multi_scale.{i}": m for i, m in enumerate(out.multi_scale_features)})
    meta["pd_config"] = {k: getattr(config, k) for k in ("feature_size", "mask_feature_size", "encoder_layers",
                                                        "num_attention_heads", "encoder_feedforward_dim",
                                                        "common_stride", "dropout")}
    meta["pd_config"]["feature_strides"] = list(config.feature_strides)
    meta["pd_channels"] = PD_CHANNELS
    # 3. the transformer module
    meta["tm"] = {}
    for case, spec in TM_CASES.items():
        config = block_config(**spec["config"])
        tm = ref.Mask2FormerTransformerModule(in_features=config.feature_size, config=config).eval()
        randomize(tm, gen)
        maps = [torch.randn(2, config.feature_size, h, w, generator=gen) for h, w in [(1, 2), (2, 3), (4, 5)]]
        if spec["constant_masks"]:   # stored (2, C, 1, 1): the test expands it
            mask_features = torch.randn(2, config.mask_feature_size, 1, 1, generator=gen)
        else:
            mask_features = torch.randn(2, config.mask_feature_size, 8, 10, generator=gen)
        with torch.no_grad():
            out = tm(maps, mask_features.expand(-1, -1, 8, 10), output_hidden_states=True, output_attentions=True)
        p = f"tm{case}."
        t.update({f"{p}w.{k}": v.clone() for k, v in tm.state_dict().items()})
        t.update({f"{p}map.{i}": m for i, m in enumerate(maps)})
        t[f"{p}mask_features"] = mask_features
        t[f"{p}last_hidden_state"] = out.last_hidden_state
        t.update({f"{p}hidden.{i}": h for i, h in enumerate(out.hidden_states)})
        t.update({f"{p}intermediate.{i}": h for i, h in enumerate(out.intermediate_hidden_states)})
        t.update({f"{p}masks.{i}": m for i, m in enumerate(out.masks_queries_logits)})
        t.update({f"{p}attention.{i}": a for i, a in enumerate(out.attentions)})
        empty = [float((m < 0).flatten(2).all(-1).float().mean()) for m in out.masks_queries_logits]
        meta["tm"][case] = {"config": {k: getattr(config, k) for k in (
            "hidden_dim", "feature_size", "mask_feature_size", "num_attention_heads", "dim_feedforward",
            "activation_function", "pre_norm", "decoder_layers", "num_queries", "enforce_input_projection",
            "dropout")}, "empty_mask_fraction": empty}
    OUT.mkdir(parents=True, exist_ok=True)
    save_file({k: v.contiguous() for k, v in t.items()}, str(OUT / "blocks.safetensors"))
    return meta


# --- the image processor --------------------------------------------------------------------------
PICTURES = ["chelsea.png", "rocket.jpg", "camera.png"]   # rocket turned a quarter: a portrait
PROC_CASES = {   # name -> (processor kwargs, call kwargs, which pictures, segmentation maps?)
    "edges": (dict(size={"shortest_edge": 16, "longest_edge": 26}, size_divisor=4), {}, [0, 1, 2], None),
    "divisor32": (dict(size={"shortest_edge": 14, "longest_edge": 22}), {}, [1, 2], None),
    "max_size": (dict(size=12, max_size=20, size_divisor=0, image_mean=[0.5, 0.4, 0.3], image_std=[0.2, 0.3, 0.4]),
                 {}, [0, 1], None),
    "height_width": (dict(size={"height": 14, "width": 18}, size_divisor=0, do_normalize=False), {}, [0], None),
    "max_height_width": (dict(size={"max_height": 20, "max_width": 15}, size_divisor=0), {}, [0, 1], None),
    "pad_size": (dict(size={"shortest_edge": 12, "longest_edge": 18}, size_divisor=0, pad_size={"height": 21, "width": 23}),
                 {}, [1, 2], None),
    "semantic_maps": (dict(size={"shortest_edge": 16, "longest_edge": 26}, size_divisor=4), dict(ignore_index=255),
                      [0, 1], "semantic"),
    "reduce_labels": (dict(size={"shortest_edge": 16, "longest_edge": 26}, size_divisor=4, do_reduce_labels=True,
                           ignore_index=255), {}, [1, 2], "semantic"),
    "instances": (dict(size={"shortest_edge": 16, "longest_edge": 26}, size_divisor=4, ignore_index=0), {}, [0, 1],
                  "instance"),
}
INSTANCE_TO_CLASS = {1: 7, 2: 3, 3: 7, 4: 1, 5: 2}


def pictures():
    from PIL import Image

    pics = [Image.open(FIX / "images" / name).convert("RGB") for name in PICTURES]
    pics[1] = pics[1].transpose(Image.Transpose.ROTATE_90)
    return pics


def segmentation_map(picture, kind: str):
    """Labels from the picture's own grey levels (4 bands; 'instance': ids 1-5), (H, W) uint8."""
    import numpy as np

    grey = np.asarray(picture.convert("L"), dtype=np.int64)
    bands = np.digitize(grey, [60, 110, 170]).astype(np.uint8)
    if kind == "instance":
        bands = bands + 1
        bands[: grey.shape[0] // 5, : grey.shape[1] // 5] = 5
    return bands


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


def digest(t) -> str:
    import hashlib

    return hashlib.md5(t.to(torch.int64).contiguous().numpy().tobytes()).hexdigest()


POST_CASES = {   # name -> (method, kwargs)
    "semantic": ("semantic", {}),
    "semantic_sizes": ("semantic", dict(target_sizes=[(20, 30), (17, 11)])),
    "semantic_scores": ("semantic", dict(target_sizes=[(20, 30), (17, 11)], return_segmentation_scores=True)),
    "instance": ("instance", {}),
    "instance_sizes": ("instance", dict(target_sizes=[(20, 30), (17, 11)], threshold=0.3)),
    "instance_binary": ("instance", dict(target_sizes=[(20, 30), (17, 11)], threshold=0.2, return_binary_maps=True)),
    "instance_coco": ("instance", dict(target_sizes=[(20, 30), (17, 11)], threshold=0.2, return_coco_annotation=True)),
    "instance_none": ("instance", dict(target_sizes=[(20, 30), (17, 11)], threshold=0.999)),
    "panoptic": ("panoptic", dict(label_ids_to_fuse={0})),
    "panoptic_sizes": ("panoptic", dict(target_sizes=[(20, 30), (17, 11)], threshold=0.4, label_ids_to_fuse={0, 2})),
    "panoptic_loose": ("panoptic", dict(target_sizes=[(20, 30), (17, 11)], threshold=0.2, mask_threshold=0.3,
                                        overlap_mask_area_threshold=0.5)),
    "panoptic_none": ("panoptic", dict(target_sizes=[(20, 30), (17, 11)], threshold=0.999)),
}


def processor() -> dict:
    t: dict[str, torch.Tensor] = {}
    meta: dict = {"pictures": PICTURES, "cases": {}, "post": {}, "instance_to_class": INSTANCE_TO_CLASS}
    pics = pictures()
    for name, (init, call, which, maps) in PROC_CASES.items():
        proc = transformers.Mask2FormerImageProcessorPil(**init)
        kw = dict(call)
        if maps is not None:
            kw["segmentation_maps"] = [segmentation_map(pics[i], maps) for i in which]
            if maps == "instance":
                kw["instance_id_to_semantic_id"] = INSTANCE_TO_CLASS
        out = proc([pics[i] for i in which], return_tensors="pt", **kw)
        t[f"{name}.pixel_values"] = out["pixel_values"]
        assert out["pixel_mask"].dtype == torch.int64
        t[f"{name}.pixel_mask"] = out["pixel_mask"].to(torch.uint8)   # 0/1 (int64 in the reference)
        for i, (m, c) in enumerate(zip(out.get("mask_labels", []), out.get("class_labels", []))):
            assert m.dtype == torch.float32 and bool(((m == 0) | (m == 1) | (m == 255)).all())
            t[f"{name}.mask_labels.{i}"] = m.to(torch.uint8)   # 0/1 and the padding's ignore_index
            t[f"{name}.class_labels.{i}"] = c
        meta["cases"][name] = {"init": init, "call": call, "pictures": which, "maps": maps,
                               "config": json.loads(proc.to_json_string())}
    # post-processing on model-like outputs
    gen = torch.Generator().manual_seed(7)
    classes, masks = post_outputs(gen)
    t["post.class_queries_logits"], t["post.masks_queries_logits"] = classes, masks
    proc = transformers.Mask2FormerImageProcessorPil()
    outputs = ref.Mask2FormerForUniversalSegmentationOutput(class_queries_logits=classes, masks_queries_logits=masks)
    for name, (method, kwargs) in POST_CASES.items():
        got = getattr(proc, f"post_process_{method}_segmentation")(outputs, **kwargs)
        record = []
        for i, item in enumerate(got):
            if method == "semantic":
                seg = item.segmentation if kwargs.get("return_segmentation_scores") else item
                if kwargs.get("return_segmentation_scores"):
                    t[f"post.{name}.{i}.scores"] = item.segmentation_scores
                entry = {"shape": list(seg.shape), "dtype": str(seg.dtype)}
            else:
                seg = item["segmentation"]
                entry = {"segments_info": item["segments_info"]}
                if isinstance(seg, list):   # run-length encodings
                    entry["rle"] = [[int(v) for v in r] for r in seg]
                    record.append(entry)
                    continue
                entry.update(shape=list(seg.shape), dtype=str(seg.dtype))
            if seg.numel() <= 5000:
                t[f"post.{name}.{i}.segmentation"] = seg.clone()
            else:   # 384 x 384: its digest, and the count of each value
                values, counts = torch.unique(seg, return_counts=True)
                entry.update(md5=digest(seg), values=values.tolist(), counts=counts.tolist())
            record.append(entry)
        meta["post"][name] = {"method": method, "kwargs": {k: sorted(v) if isinstance(v, set) else v
                                                           for k, v in kwargs.items()}, "results": record}
    save_file({k: v.contiguous() for k, v in t.items()}, str(OUT / "processor.safetensors"))
    return meta


def main(parts: list[str]) -> None:
    transformers.utils.logging.disable_progress_bar()
    index = json.loads(INDEX.read_text()) if INDEX.exists() else {}
    index.update({"transformers_version": transformers.__version__, "torch_version": torch.__version__})
    if "blocks" in parts:
        index["blocks"] = blocks()
        print("blocks: empty-mask fractions", {c: m["empty_mask_fraction"] for c, m in index["blocks"]["tm"].items()})
    if "processor" in parts:
        index["processor"] = processor()
        print("processor:", {n: [len(r.get("segments_info", [])) for r in c["results"]]
                             for n, c in index["processor"]["post"].items() if c["method"] != "semantic"})
    INDEX.write_text(json.dumps(index, indent=2, sort_keys=True) + "\n")


if __name__ == "__main__":
    main(sys.argv[1:] or ["blocks", "models", "processor"])
