"""Goldens for Mask2Former (``model_type: "mask2former"``), from the reference (transformers 5.25):

    /work/refvenv/bin/python scripts/golden_mask2former.py            # everything
    /work/refvenv/bin/python scripts/golden_mask2former.py blocks     # some parts: blocks models processor pipeline

Writes under tests/fixtures/goldens/mask2former/ (index: mask2former.json):

blocks.safetensors: parts on their own, on random inputs (the model fixtures cover the rest)
  msda.*     the reference's pure-PyTorch multi_scale_deformable_attention (3 levels, points
             partly outside the maps)
  tmb.*      Mask2FormerTransformerModule (weights ``tmb.w.<key>``) on random maps: every
             layer's hidden states, normalised queries and mask logits, the self-attention
             weights; pre-norm, GELU, no projection, spatially constant mask features (so a
             quarter of the queries' masks are empty: those attend everywhere)

models: tiny random checkpoints (ResNet and Swin backbones; weights moved away from their init
values) saved to tests/fixtures/models/<name>/ with the reference's processor; per fixture
``<name>.safetensors``: the pixels, the outputs (class/mask logits, the encoder, pixel decoder and
transformer decoder hidden states, auxiliary logits), the bfloat16 run, and the losses' inputs;
mask2former.json records the round trip (our save read back by the reference).

processor.safetensors + the json's "processor": Mask2FormerImageProcessorPil on the bundled
pictures (resize with shortest/longest edge, size_divisor, pad with pixel_mask, segmentation maps
to mask/class labels) and its three post-processing methods on recorded outputs.

the json's "pipeline": the image-segmentation pipeline on the mask2former-resnet fixture (whose
class head is made to tell the queries apart) over the bundled pictures, per case (semantic,
instance, panoptic, thresholds, the default): each answer's label, score and mask (mode, size,
pixels inside, md5 of its bytes).
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


TM_CASES = {   # (post-norm with projections: the model fixtures)
    "b": dict(config=dict(feature_size=16, pre_norm=True, activation_function="gelu", decoder_layers=3),
              constant_masks=True),
}


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


# --- models ---------------------------------------------------------------------------------------
B = 2
SIZE = (48, 64)   # (smaller maps make GroupNorm over a 1 x 2 map amplify rounding a thousandfold)
LABELS = ["cat", "rocket", "sky"]
NAMED = dict(id2label=dict(enumerate(LABELS)), label2id={n: i for i, n in enumerate(LABELS)})
FOUR = ["stage1", "stage2", "stage3", "stage4"]
RESNET = dict(model_type="resnet", embedding_size=4, hidden_sizes=[4, 8, 8, 16], depths=[1, 1, 1, 1],
              layer_type="basic", out_features=FOUR)
BOTTLENECK = dict(model_type="resnet", embedding_size=4, hidden_sizes=[8, 8, 16, 16], depths=[1, 1, 1, 1],
                  layer_type="bottleneck", out_features=FOUR)
SWIN = dict(model_type="swin", image_size=32, patch_size=4, embed_dim=4, depths=[1, 1, 1, 1], num_heads=[1, 1, 1, 2],
            window_size=4, mlp_ratio=2.0, out_features=FOUR)
SMALL = dict(feature_size=32, mask_feature_size=16, hidden_dim=16, encoder_feedforward_dim=32, encoder_layers=2,
             decoder_layers=4, num_attention_heads=2, dim_feedforward=32, num_queries=6, train_num_points=48)
# name -> (backbone, config kwargs)
FIXTURES = {
    "mask2former-resnet": (RESNET, dict(SMALL, **NAMED)),
    "mask2former-prenorm": (BOTTLENECK, dict(SMALL, hidden_dim=32, pre_norm=True, enforce_input_projection=True,
                                             activation_function="gelu", decoder_layers=3, num_queries=4, num_labels=5,
                                             encoder_layers=1,
                                             use_auxiliary_loss=False, no_object_weight=0.3)),
    "mask2former-swin": (SWIN, dict(SMALL, num_labels=4, class_weight=1.5, importance_sample_ratio=1.0,
                                    encoder_layers=1)),
}
PIPELINE_FIXTURE = "mask2former-resnet"
PROCESSOR = dict(size={"shortest_edge": 48, "longest_edge": 64}, size_divisor=32)


def normalized(picture: torch.Tensor) -> torch.Tensor:
    return (picture.float() / 255 - 0.5) / 0.25


def other_pixels(x: torch.Tensor) -> torch.Tensor:
    return x.flip(-1).transpose(-2, -1).contiguous()


def outputs_of(model, pixel_values, **kw) -> dict[str, torch.Tensor]:
    with torch.no_grad():
        out = model(pixel_values=pixel_values, output_hidden_states=True, output_attentions=True,
                    output_auxiliary_logits=True, **kw)
    got = {k: getattr(out, k).detach().clone() for k in (
        "class_queries_logits", "masks_queries_logits", "encoder_last_hidden_state", "pixel_decoder_last_hidden_state",
        "transformer_decoder_last_hidden_state")}
    for key in ("encoder_hidden_states", "pixel_decoder_hidden_states", "transformer_decoder_hidden_states",
                "attentions"):
        got.update({f"{key}.{i}": h.detach().clone() for i, h in enumerate(getattr(out, key))})
    for i, aux in enumerate(out.auxiliary_logits):
        got.update({f"aux.{i}.{k}": v.detach().clone() for k, v in aux.items()})
    return got


def targets(seed: int, config, size) -> tuple[list, list]:
    """Per image 2-3 binary masks (rectangles and noise) at pixel resolution, random classes."""
    g = torch.Generator().manual_seed(seed)
    masks, classes = [], []
    for n in (2, 3):
        m = (torch.rand(n, *size, generator=g) < 0.15).float()
        for j in range(n):
            top, left = int(torch.randint(0, size[0] // 2, (1,), generator=g)), int(torch.randint(0, size[1] // 2, (1,), generator=g))
            m[j, top:top + size[0] // 2, left:left + size[1] // 3] = 1.0
        masks.append(m)
        classes.append(torch.randint(0, config.num_labels, (n,), generator=g))
    return masks, classes


def ref_load(cls, folder, head_keys_unused: bool = False, **kw):
    model, info = cls.from_pretrained(folder, output_loading_info=True, **kw)
    unexpected = set(info["unexpected_keys"]) - ({"class_predictor.weight", "class_predictor.bias",
                                                  "criterion.empty_weight"} if head_keys_unused else set())
    # our Swin backbone has no final norm (no backbone uses it); the reference initialises it then
    missing = {k for k in info["missing_keys"] if ".swin.layernorm." not in k}
    if missing or info["mismatched_keys"] or unexpected:
        raise SystemExit(f"{folder}: the reference did not load cleanly: {info}")
    return model.eval()


def build(name: str) -> dict:
    import shutil

    backbone, kwargs = FIXTURES[name]
    config = transformers.Mask2FormerConfig(backbone_config=dict(backbone), **kwargs)
    seed = sum(map(ord, name))
    torch.manual_seed(seed)
    model = transformers.Mask2FormerForUniversalSegmentation(config).eval()
    with torch.no_grad():   # away from init values (norms 1/0, zero offsets and biases...)
        for p in model.parameters():
            p.add_(torch.randn_like(p) * 0.15)
        if name == PIPELINE_FIXTURE:
            # a random decoder's queries differ little (std 0.1 across queries against 1 across channels), so
            # its class head gives one class everywhere: take out of the head the direction all queries share
            # and scale it, so the labels follow what tells the queries apart
            probe = torch.randn(2, 3, 64, 96, generator=torch.Generator().manual_seed(5))
            out = model(pixel_values=probe, output_hidden_states=True)
            shared = model.model.transformer_module.decoder.layernorm(out.transformer_decoder_last_hidden_state)
            u = shared.mean((0, 1))
            weight = model.class_predictor.weight
            weight.sub_(torch.outer(weight @ u, u) / u.dot(u)).mul_(8.0)
            model.class_predictor.bias.zero_()
        for m in model.modules():
            if isinstance(m, torch.nn.BatchNorm2d):
                m.running_mean.copy_(torch.randn_like(m.running_mean) * 0.1)
                m.running_var.copy_(torch.rand_like(m.running_var) + 0.5)
    folder = FIX / "models" / name
    shutil.rmtree(folder, ignore_errors=True)
    model.save_pretrained(folder)
    transformers.Mask2FormerImageProcessorPil(**PROCESSOR).save_pretrained(folder)
    cls = transformers.Mask2FormerForUniversalSegmentation
    loaded = ref_load(cls, folder)
    g = torch.Generator().manual_seed(seed)
    # 8-bit pictures, normalised as a processor would (stored as bytes); the other size is the same
    # pixels mirrored and transposed (64 x 48)
    picture = torch.randint(0, 256, (B, 3, *SIZE), generator=g, dtype=torch.uint8)
    x, xo = normalized(picture), other_pixels(normalized(picture))
    t = {"input.picture": picture}
    expected = outputs_of(loaded, x)
    t.update({f"output.{k}": v for k, v in expected.items()})
    other = outputs_of(loaded, xo)
    t.update({f"other.{k}": other[k] for k in ("class_queries_logits", "masks_queries_logits")})
    bf = ref_load(cls, folder, dtype=torch.bfloat16)
    attention_masks = {}
    for run in (loaded, bf):   # the masked attention's masks: bfloat16 may flip pixels at p = 0.5
        keep = attention_masks.setdefault(id(run), [])
        hook = run.model.transformer_module.decoder.mask_predictor.register_forward_hook(
            lambda mod, inp, out, keep=keep: keep.append(out[1]))
        with torch.no_grad():
            bf_out = run(pixel_values=x.to(run.dtype), output_hidden_states=True)
        hook.remove()
    flips = sum(int((a != b).sum()) for a, b in zip(attention_masks[id(loaded)], attention_masks[id(bf)]))
    t["bf16.class_queries_logits"] = bf_out.class_queries_logits.float()
    t["bf16.masks_queries_logits"] = bf_out.masks_queries_logits.float()
    # the bare model: its outputs are the head's (the tests compare ours with output.*)
    bare = ref_load(transformers.Mask2FormerModel, folder, head_keys_unused=True)
    with torch.no_grad():
        bare_out = bare(pixel_values=x, output_hidden_states=True)
    assert torch.equal(bare_out.transformer_decoder_last_hidden_state, expected["transformer_decoder_last_hidden_state"])
    assert torch.equal(bare_out.masks_queries_logits[-1], expected["masks_queries_logits"])
    # losses: the point sampling draws from torch's global generator, so a seed fixes them
    masks, classes = targets(seed, loaded.config, SIZE)
    t.update({f"labels.mask.{i}": m.to(torch.uint8) for i, m in enumerate(masks)})
    t.update({f"labels.class.{i}": c for i, c in enumerate(classes)})
    losses = {}
    for case, overrides in (("default", {}), ("no_auxiliary", {"use_auxiliary_loss": False})):
        fresh = ref_load(cls, folder, **overrides)
        torch.manual_seed(1234)
        with torch.no_grad():
            # output_hidden_states: without it the reference's head fails when use_auxiliary_loss is off
            out = fresh(pixel_values=x, mask_labels=masks, class_labels=classes, output_hidden_states=True)
        losses[case] = {"loss": float(out.loss), "config": overrides, "seed": 1234}
    OUT.mkdir(parents=True, exist_ok=True)
    save_file({k: v.contiguous() for k, v in t.items()}, str(OUT / f"{name}.safetensors"))
    meta = {"class": "Mask2FormerForUniversalSegmentation", "files": sorted(p.name for p in folder.iterdir()),
            "losses": losses, "outputs": sorted(expected), "backbone": backbone["model_type"],
            "bf16_attention_mask_flips": flips}
    meta["roundtrip_max_abs_diff"], meta["roundtrip_model_max_abs_diff"] = roundtrip(folder, x, expected, bare_out)
    return meta


def roundtrip(folder: Path, x, expected, bare_out) -> tuple[float, float]:
    """Load with OUR library, save with OUR save_pretrained, read back with the reference's Auto
    classes (the head and the bare model)."""
    import tempfile

    from safetensors.torch import load_file

    from pretrained.models.mask2former import Mask2FormerForUniversalSegmentation, Mask2FormerModel

    diffs = []
    for ours, auto, want in ((Mask2FormerForUniversalSegmentation, "AutoModelForUniversalSegmentation", expected),
                             (Mask2FormerModel, "AutoModel", None)):
        model = ours.from_pretrained(folder, strict=ours is Mask2FormerForUniversalSegmentation)
        with tempfile.TemporaryDirectory() as tmp:
            model.save_pretrained(tmp)
            back = ref_load(getattr(transformers, auto), tmp)
            if type(back).__name__ != ours.__name__:
                raise SystemExit(f"the reference read our save as {type(back).__name__}")
            names = sorted(load_file(str(Path(tmp) / "model.safetensors")))
            if want is not None:
                theirs = sorted(k for k in load_file(str(folder / "model.safetensors")) if ".swin.layernorm." not in k)
                if names != theirs:   # (less the Swin bare model's final norm, which no backbone has)
                    raise SystemExit("our save has other tensor names than the reference's")
                got = outputs_of(back, x)
                diffs.append(max(float((got[k] - want[k]).abs().max()) for k in want))
            else:
                with torch.no_grad():
                    got = back(pixel_values=x, output_hidden_states=True)
                pairs = [(got.transformer_decoder_last_hidden_state, bare_out.transformer_decoder_last_hidden_state)]
                pairs += list(zip(got.masks_queries_logits, bare_out.masks_queries_logits))
                diffs.append(max(float((a - b).abs().max()) for a, b in pairs))
    return diffs[0], diffs[1]


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
    import hashlib

    import numpy as np

    array = np.asarray(mask)
    return {"mode": mask.mode, "size": list(mask.size), "inside": int((array == 255).sum()),
            "values": sorted(int(v) for v in np.unique(array)), "md5": hashlib.md5(array.tobytes()).hexdigest()}


def pipeline_goldens() -> dict:
    folder = FIX / "models" / PIPELINE_FIXTURE
    seg = transformers.pipeline("image-segmentation", model=str(folder),
                                image_processor=transformers.Mask2FormerImageProcessorPil.from_pretrained(folder))
    meta = {"model": PIPELINE_FIXTURE, "images": PIPE_IMAGES, "cases": {}}
    for case, kwargs in PIPE_CASES.items():
        answers = [seg(str(FIX / "images" / name), **kwargs) for name in PIPE_IMAGES]
        meta["cases"][case] = {"kwargs": kwargs, "answers": [
            [{"label": a["label"], "score": a["score"], "mask": mask_record(a["mask"])} for a in per_image]
            for per_image in answers]}
    return meta


def main(parts: list[str] | None = None) -> None:
    parts = parts or ["blocks", "models", "processor", "pipeline"]
    transformers.utils.logging.disable_progress_bar()
    index = json.loads(INDEX.read_text()) if INDEX.exists() else {}
    index.update({"transformers_version": transformers.__version__, "torch_version": torch.__version__})
    if "blocks" in parts:
        index["blocks"] = blocks()
        print("blocks: empty-mask fractions", {c: m["empty_mask_fraction"] for c, m in index["blocks"]["tm"].items()})
    if "models" in parts:
        index["models"] = {}
        for name in FIXTURES:
            index["models"][name] = build(name)
            m = index["models"][name]
            print(f"{name:22s} losses {m['losses']}  round trip {m['roundtrip_max_abs_diff']:.2e} / "
                  f"{m['roundtrip_model_max_abs_diff']:.2e}")
    if "pipeline" in parts:
        index["pipeline"] = pipeline_goldens()
        print("pipeline:", {c: [len(a) for a in v["answers"]] for c, v in index["pipeline"]["cases"].items()})
    if "processor" in parts:
        index["processor"] = processor()
        print("processor:", {n: [len(r.get("segments_info", [])) for r in c["results"]]
                             for n, c in index["processor"]["post"].items() if c["method"] != "semantic"})
    INDEX.write_text(json.dumps(index, indent=2, sort_keys=True) + "\n")


if __name__ == "__main__":
    main(sys.argv[1:])
