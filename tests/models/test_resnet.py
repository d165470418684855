"""ResNet ('resnet') against the goldens scripts/golden_resnet.py recorded from the reference
(tests/fixtures/goldens/resnet/): float32 parity on batched pixels (every output and hidden state,
the (B, C, 1, 1) pooler too; at 32 x 32 and at another, non-square size) for bottleneck and basic
layers, downsample_in_first_stage / downsample_in_bottleneck, relu / gelu / silu, with non-trivial
batch-norm running statistics; the losses; the backbone's feature maps, out_features /
out_indices as the reference aligns them, loading it from a classifier's checkpoint, building it
from a backbone_config; the image processor AutoImageProcessor picks (microsoft/resnet-50's
legacy preprocessor file, and none named) and the image-classification pipeline against the
reference's; the shared image-model tests (round trip, bfloat16, backend seam, LoRA, compile);
batch norm in training; named errors.
"""

from __future__ import annotations

import math

import pytest
import torch
from image_tester import Goldens, example, image_model_tests, recorded
from PIL import Image
from tester import FIX, load, names_for

from pretrained import AutoBackbone, AutoConfig, AutoImageProcessor, AutoModel, AutoModelForImageClassification, pipeline
from pretrained.config import PretrainedConfig
from pretrained.errors import ConfigError, InvalidInputError
from pretrained.layers.backbone import (
    BACKBONES,
    FrozenBatchNorm2d,
    align_out_features,
    backbone_class,
    freeze_batch_norms,
    load_backbone,
)
from pretrained.models.resnet import ResNetBackbone, ResNetConfig, ResNetForImageClassification, ResNetModel
from pretrained.processing import ConvNextImageProcessor

GOLDENS = Goldens("resnet")
meta, golden, index = GOLDENS.meta, GOLDENS.golden, GOLDENS.index
NAMES = names_for("resnet")
CLASSIFIER = "resnet-tiny-imgcls"
BACKBONE = "resnet-tiny-backbone"
LOSSY = [(n, c) for n in NAMES for c in meta(n)["losses"]]


def got_of(out, key: str) -> torch.Tensor:
    if key.startswith("hidden."):
        return out.hidden_states[int(key[7:])]
    if key.startswith("feature_maps."):
        return out.feature_maps[int(key[13:])]
    return getattr(out, key)


def test_the_fixtures_are_found():
    assert NAMES == sorted(index()["models"]) and len(NAMES) == 7
    assert len(LOSSY) >= 13
    kinds = {spec["problem_type"] for n in NAMES for spec in meta(n)["losses"].values()}
    assert kinds == {"single_label_classification", "multi_label_classification", "regression"}


# the shared tests: the backbone's outputs are feature maps (its own tests are below)
globals().update(image_model_tests(GOLDENS, [n for n in NAMES if n != BACKBONE], CLASSIFIER, min_trainable=2))


@pytest.mark.parametrize("name", NAMES)
@pytest.mark.parametrize("tag", ["output", "other"])
def test_float32_parity_with_the_reference(name, tag):
    g = golden(name)
    model = load(name)
    assert type(model).__name__ == meta(name)["class"]
    assert model.dtype == torch.float32 and not model.training
    want = recorded(g, f"{tag}.")
    n_hidden = len(model.config.depths) + 1
    assert sum(k.startswith("hidden.") for k in want) == meta(name)["hidden_states"] == n_hidden
    assert {"pooler_output", "logits", "feature_maps.0"} & set(want)
    x = g["input.pixel_values" if tag == "output" else "input.pixel_values_other"]
    with torch.no_grad():
        out = model(pixel_values=x, output_hidden_states=True)
    assert len(out.hidden_states) == n_hidden
    for key, w in want.items():
        got = got_of(out, key)
        assert got.shape == w.shape, (key, got.shape, w.shape)
        assert (got - w).abs().max() <= 1e-4, key


def test_the_running_statistics_matter():
    """The fixtures' batch norms have non-trivial running statistics: resetting them changes the
    output (so parity above really checks eval-mode batch norm)."""
    g = golden(CLASSIFIER)
    model = load(CLASSIFIER)
    bn = model.resnet.encoder.stages[1].layers[1].layer[1].normalization
    assert bn.running_var.min() < 0.9 and bn.running_mean.abs().max() > 0.1
    for m in model.modules():
        if isinstance(m, torch.nn.BatchNorm2d):
            m.reset_running_stats()
    with torch.no_grad():
        logits = model(pixel_values=g["input.pixel_values"]).logits
    assert (logits - g["output.logits"]).abs().max() > 1e-2


@pytest.mark.parametrize("name, case", LOSSY)
def test_losses_match_the_reference(name, case):
    spec = meta(name)["losses"][case]
    g = golden(name)
    model = load(name, **spec["config"])
    with torch.no_grad():
        loss = model(pixel_values=g["input.pixel_values"], labels=g[f"case.{case}.labels"]).loss
    assert model.config.problem_type == spec["problem_type"]
    want = spec["loss"]
    assert math.isfinite(want) and abs(loss.item() - want) <= 1e-4 * max(1.0, abs(want)), (loss.item(), want)


def test_training_updates_batch_norm_statistics_and_moves_every_weight():
    torch.manual_seed(0)
    model = load(CLASSIFIER)
    bn = model.resnet.embedder.embedder.normalization
    before, tracked = bn.running_mean.clone(), int(bn.num_batches_tracked)
    model.train()
    model(**example(2), labels=torch.tensor([2, 0])).loss.backward()
    assert int(bn.num_batches_tracked) == tracked + 1 and not torch.equal(bn.running_mean, before)
    missing = [n for n, p in model.named_parameters() if p.grad is None or not bool(p.grad.abs().sum() > 0)]
    assert not missing


def test_the_checkpoint_names():
    names = dict(load(CLASSIFIER).state_dict())
    for key in ("resnet.embedder.embedder.convolution.weight", "resnet.embedder.embedder.normalization.running_var",
                "resnet.embedder.embedder.normalization.num_batches_tracked",
                "resnet.encoder.stages.0.layers.0.shortcut.convolution.weight",
                "resnet.encoder.stages.0.layers.0.shortcut.normalization.running_mean",
                "resnet.encoder.stages.1.layers.1.layer.2.normalization.weight",
                "resnet.encoder.stages.1.layers.0.layer.1.convolution.weight", "classifier.1.weight", "classifier.1.bias"):
        assert key in names, key
    assert not any("stages.1.layers.1.shortcut" in k for k in names)   # identity shortcut
    basic = dict(load("resnet-basic-imgcls").state_dict())
    assert not any("stages.0.layers.0.shortcut" in k for k in basic)   # 8 -> 8, stride 1: identity
    assert "resnet.encoder.stages.1.layers.0.layer.1.convolution.weight" in basic
    assert not any(".layer.2." in k for k in basic)
    assert not any(k.startswith("resnet.") for k in load(BACKBONE).state_dict())
    assert isinstance(load("resnet-tiny-model"), ResNetModel)
    assert isinstance(load(CLASSIFIER), ResNetForImageClassification)


def test_the_strides_of_the_variants():
    """downsample_in_bottleneck puts the stride on the first 1 x 1; downsample_in_first_stage
    strides the first stage; inner activations stay ReLU whatever hidden_act is."""
    m = load("resnet-variant-imgcls").resnet.encoder.stages[0].layers[0]
    assert m.layer[0].convolution.stride == (2, 2) and m.layer[1].convolution.stride == (1, 1)
    assert m.shortcut.convolution.stride == (2, 2)
    t = load(CLASSIFIER).resnet.encoder.stages[1].layers[0]
    assert t.layer[0].convolution.stride == (1, 1) and t.layer[1].convolution.stride == (2, 2)
    assert load(CLASSIFIER).resnet.encoder.stages[0].layers[0].shortcut.convolution.stride == (1, 1)


def test_config_defaults_are_the_reference_resnet50_shape():
    cfg = ResNetConfig()
    assert (cfg.embedding_size, cfg.hidden_sizes, cfg.depths) == (64, [256, 512, 1024, 2048], [3, 4, 6, 3])
    assert (cfg.layer_type, cfg.hidden_act, cfg.num_channels) == ("bottleneck", "relu", 3)
    assert not cfg.downsample_in_first_stage and not cfg.downsample_in_bottleneck
    assert cfg.stage_names == ["stem", "stage1", "stage2", "stage3", "stage4"]
    assert (cfg.out_features, cfg.out_indices) == (["stage4"], [4])


# --- the backbone -------------------------------------------------------------------------------
def test_the_backbone_fields_are_the_reference():
    want = meta(BACKBONE)["backbone"]
    bb = load(BACKBONE)
    assert (bb.stage_names, bb.out_features, bb.out_indices, bb.channels) == (
        want["stage_names"], want["out_features"], want["out_indices"], want["channels"])
    assert bb.out_feature_channels == {"stem": 8, "stage1": 16, "stage2": 24}
    with torch.no_grad():
        out = bb(golden(BACKBONE)["input.pixel_values"])
    assert out.hidden_states is None and len(out.feature_maps) == 2   # hidden states only when asked


@pytest.mark.parametrize("picks", [dict(out_features=["stage1"]), dict(out_indices=[0, -1]),
                                   dict(out_features=["stem", "stage1", "stage2"])])
def test_a_backbone_from_a_classifier_checkpoint_gives_its_hidden_states(picks):
    """The classifier's checkpoint (keys under ``resnet.``) loads into the backbone; its maps are
    the reference classifier's hidden states of those stages."""
    g = golden(CLASSIFIER)
    bb = ResNetBackbone.from_pretrained(FIX / "models" / CLASSIFIER, strict=False, **picks)
    again = AutoBackbone.from_pretrained(FIX / "models" / CLASSIFIER, **picks)
    assert type(again) is ResNetBackbone
    with torch.no_grad():
        maps = bb(g["input.pixel_values"]).feature_maps
        assert torch.equal(again(g["input.pixel_values"]).feature_maps[0], maps[0])
    stages = [bb.stage_names.index(f) for f in bb.out_features]
    assert len(maps) == len(stages) == len(picks.get("out_features", picks.get("out_indices")))
    for m, i in zip(maps, stages):
        assert (m - g[f"output.hidden.{i}"]).abs().max() <= 1e-4


def test_load_backbone_from_a_backbone_config():
    """What DETR / Mask2Former do: a parent config's backbone_config (a dict or a config)."""
    spec = {"model_type": "resnet", "embedding_size": 8, "hidden_sizes": [16, 24], "depths": [1, 2],
            "out_features": ["stage1", "stage2"]}
    bb = load_backbone(spec)
    assert isinstance(bb, ResNetBackbone) and bb.channels == [16, 24]
    assert load_backbone(ResNetConfig(**spec), out_indices=[2]).out_features == ["stage2"]
    parent = PretrainedConfig(backbone_config=spec)   # any config carrying a backbone_config
    assert load_backbone(parent).channels == [16, 24]
    assert backbone_class("resnet") is ResNetBackbone and BACKBONES["resnet"] == "pretrained.models.resnet:ResNetBackbone"
    with pytest.raises(ConfigError, match="no backbone for model_type 'bert'"):
        backbone_class("bert")
    with pytest.raises(ConfigError, match="model_type"):
        load_backbone({"embedding_size": 8})


def test_frozen_batch_norms_give_eval_batch_norm():
    bb = load(BACKBONE)
    x = golden(BACKBONE)["input.pixel_values"]
    with torch.no_grad():
        want = bb(x).feature_maps
    n = freeze_batch_norms(bb)
    assert n == sum(1 for k in bb.state_dict() if k.endswith("running_mean")) and n > 5
    assert not any(isinstance(m, torch.nn.BatchNorm2d) for m in bb.modules())
    assert isinstance(bb.embedder.embedder.normalization, FrozenBatchNorm2d)
    bb.train()   # frozen: training mode changes nothing
    with torch.no_grad():
        got = bb(x).feature_maps
    assert all((a - b).abs().max() <= 1e-5 for a, b in zip(got, want))


@pytest.mark.parametrize("features, indices, want", [
    (None, None, (["stage2"], [2])),
    (["stem", "stage2"], None, (["stem", "stage2"], [0, 2])),
    (None, [-1], (["stage2"], [-1])),   # the reference keeps negative indices as given
    (["stage1"], [1], (["stage1"], [1])),
])
def test_out_features_align_as_the_reference(features, indices, want):
    assert align_out_features(["stem", "stage1", "stage2"], features, indices) == want


@pytest.mark.parametrize("features, indices, words", [
    (["stage9"], None, "not stages"),
    (["stage2", "stem"], None, "order"),
    (["stage1", "stage1"], None, "duplicates"),
    (None, [3], "out of range"),
    (None, [0, -3], "duplicates"),
    (["stage1"], [2], "disagree"),
    ("stage1", None, "list"),
])
def test_bad_out_features_are_named_errors(features, indices, words):
    with pytest.raises(ConfigError, match=words):
        ResNetConfig(depths=[1, 1], hidden_sizes=[8, 8], out_features=features, out_indices=indices)


def test_set_out_features_realigns():
    cfg = ResNetConfig(depths=[1, 1], hidden_sizes=[8, 8])
    cfg.set_out_features(out_indices=(0, 1))
    assert (cfg.out_features, cfg.out_indices) == (["stem", "stage1"], [0, 1])
    assert cfg.to_dict()["out_features"] == ["stem", "stage1"]


# --- processor, Auto classes, pipeline ----------------------------------------------------------
@pytest.mark.parametrize("name", ["resnet-tiny-imgcls", "resnet-tiny-model"])
def test_auto_image_processor_is_the_reference_s(name):
    """resnet-tiny-imgcls has microsoft/resnet-50's legacy file (ConvNextFeatureExtractor, size
    an int, crop_pct); resnet-tiny-model's names no type, so model_type picks."""
    proc = AutoImageProcessor.from_pretrained(FIX / "models" / name)
    assert type(proc) is ConvNextImageProcessor and meta(name)["processor_class"] == "ConvNextImageProcessorPil"
    g = golden(name)
    for picture in ("chelsea.png", "rocket.jpg", "coins.png"):
        got = proc(Image.open(FIX / "images" / picture).convert("RGB"), return_tensors="pt")["pixel_values"]
        want = g[f"processor.{picture}"]
        assert got.shape == want.shape == (1, 3, 32, 32)
        assert (got - want).abs().max() <= 1e-5, picture


def test_the_pipeline_matches_the_reference():
    want = index()["pipeline"]
    clf = pipeline("image-classification", model=str(FIX / "models" / want["fixture"]))
    paths = [str(FIX / "images" / p) for p in want["pictures"]]
    for kw, key in (({}, "default"), (dict(top_k=2, function_to_apply="sigmoid"), "top_k_2_sigmoid")):
        got = clf(paths, **kw)
        for g, w in zip(got, want[key]):
            assert [d["label"] for d in g] == [d["label"] for d in w]
            assert all(abs(a["score"] - b["score"]) <= 1e-4 for a, b in zip(g, w))


def test_the_auto_classes_pick_the_heads():
    clf = AutoModelForImageClassification.from_pretrained(FIX / "models" / CLASSIFIER)
    assert type(clf) is ResNetForImageClassification and clf.config.id2label[1] == "dog"
    assert type(AutoModel.from_pretrained(FIX / "models" / "resnet-tiny-model")) is ResNetModel
    assert type(AutoBackbone.from_pretrained(FIX / "models" / BACKBONE)) is ResNetBackbone
    assert AutoConfig.from_pretrained(FIX / "models" / CLASSIFIER).model_type == "resnet"


# --- errors -------------------------------------------------------------------------------------
@pytest.mark.parametrize("bad, words", [
    (dict(pixel_values=torch.zeros(2, 32, 32, 3)), "channels-last.*permute"),
    (dict(pixel_values=torch.zeros(2, 1, 32, 32)), "1 channels.*image processor"),
    (dict(pixel_values=torch.zeros(2, 3, 32, 32, dtype=torch.uint8)), "float pixels"),
    (dict(pixel_values=torch.zeros(0, 3, 32, 32)), "shape"),
    (dict(pixel_values=torch.zeros(32, 32)), "shape"),
    (dict(pixel_values=[[0.0] * 32] * 32), "torch.Tensor"),
])
def test_bad_pixels_are_named_errors(bad, words):
    for name in (CLASSIFIER, BACKBONE):
        with pytest.raises(InvalidInputError, match=words):
            load(name)(**bad)


def test_one_image_is_a_batch_of_one():
    model = load(CLASSIFIER)
    x = example(1)["pixel_values"]
    with torch.no_grad():
        assert torch.equal(model(pixel_values=x[0]).logits, model(pixel_values=x).logits)


@pytest.mark.parametrize("bad, words", [
    (dict(hidden_sizes=[8]), "hidden_sizes has 1 entries, depths 2"),
    (dict(depths=[1, 0]), "depths"),
    (dict(layer_type="wide"), "layer_type must be one of basic, bottleneck"),
    (dict(hidden_sizes=[2, 8]), "bottleneck layers need hidden_sizes >= 4"),
    (dict(hidden_act="nope"), "nope"),
    (dict(num_channels=0), "num_channels"),
    (dict(embedding_size=0), "embedding_size"),
])
def test_bad_configs_are_named_errors(bad, words):
    with pytest.raises(ConfigError, match=words):
        ResNetConfig(**{**dict(hidden_sizes=[8, 16], depths=[1, 2]), **bad})
