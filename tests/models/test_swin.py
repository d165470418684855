"""Swin Transformer ('swin') against the goldens scripts/golden_swin.py recorded from the reference
(tests/fixtures/goldens/swin/).

Float32 parity on batched pixels (every output, hidden state and reshaped hidden state; at
image_size and at a non-square size that is not a multiple of the patch or the window, so that
the pixel padding, the window padding, odd patch merging and the shifted windows' mask all run;
absolute position embeddings resized), the same model called at several sizes in turn (the
reference's layers remember a clamped window; ours do not), the losses, the backbone's feature
maps (stem and stages, per-stage norms, maps smaller than a window padded), the backbone loaded
from a classifier's checkpoint and from old checkpoints that store the index buffer, the
image-classification pipeline on real pictures, the round trip, bfloat16, the backend seam, LoRA
all-linear, torch.compile, stochastic depth in training only, and named errors.
"""

from __future__ import annotations

import math

import pytest
import torch
from image_tester import Goldens, example, image_model_tests, recorded
from safetensors.torch import load_file, save_file
from tester import FIX, load, names_for

from pretrained import AutoConfig, AutoModel, AutoModelForImageClassification
from pretrained.errors import ConfigError, InvalidInputError
from pretrained.layers.backbone import load_backbone
from pretrained.models.swin import SwinBackbone, SwinConfig, SwinForImageClassification, SwinModel

GOLDENS = Goldens("swin")
meta, golden, index = GOLDENS.meta, GOLDENS.golden, GOLDENS.index
NAMES = names_for("swin")
BACKBONES = [n for n in NAMES if meta(n)["head"] == "backbone"]
MODELS = [n for n in NAMES if n not in BACKBONES]
LOSSY = [(n, c) for n in MODELS for c in meta(n)["losses"]]
CLASSIFIER = "swin-tiny-imgcls"


def got_of(out, key: str) -> torch.Tensor:
    kind, _, i = key.partition(".")
    if kind == "hidden":
        return out.hidden_states[int(i)]
    if kind == "reshaped":
        return out.reshaped_hidden_states[int(i)]
    if kind == "feature":
        return out.feature_maps[int(i)]
    return getattr(out, key)


def check(out, want: dict) -> None:
    assert want
    for key, w in want.items():
        got = got_of(out, key)
        assert got.shape == w.shape, (key, got.shape, w.shape)
        assert (got - w).abs().max() <= 1e-4, key


def inputs(name: str, tag: str) -> tuple[torch.Tensor, dict]:
    g = golden(name)
    if tag == "output":
        return g["input.pixel_values"], {}
    return g["input.pixel_values_other"], meta(name)["other_kwargs"]


def test_the_fixtures_are_found():
    assert NAMES == sorted(index()["models"]) and len(MODELS) >= 4 and len(BACKBONES) >= 2
    assert len(LOSSY) >= 9
    kinds = {spec["problem_type"] for n in MODELS for spec in meta(n)["losses"].values()}
    assert kinds == {"single_label_classification", "multi_label_classification", "regression"}


@pytest.mark.parametrize("name", MODELS)
@pytest.mark.parametrize("tag", ["output", "other"])
def test_float32_parity_with_the_reference(name, tag):
    model = load(name)
    assert type(model).__name__ == meta(name)["class"]
    assert model.dtype == torch.float32 and not model.training
    want = recorded(golden(name), f"{tag}.")
    stages = len(model.config.depths)
    assert sum(k.startswith("hidden.") for k in want) == sum(k.startswith("reshaped.") for k in want) == stages + 1
    x, kw = inputs(name, tag)
    with torch.no_grad():
        out = model(pixel_values=x, output_hidden_states=True, **kw)
    assert len(out.hidden_states) == len(out.reshaped_hidden_states) == stages + 1
    check(out, want)


def test_one_model_at_several_sizes_in_turn():
    """The reference's layers keep the window they clamped to on a first call (its goldens come
    from a fresh model per input); ours decide per call."""
    for name in ("swin-tiny-model", "swin-variant-imgcls"):
        model = load(name)
        for tag in ("output", "other", "output", "other"):
            x, kw = inputs(name, tag)
            with torch.no_grad():
                out = model(pixel_values=x, **kw)
            check(out, {k: v for k, v in recorded(golden(name), f"{tag}.").items() if "." not in k})


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


globals().update(image_model_tests(GOLDENS, MODELS, CLASSIFIER, min_trainable=2 * 6 * 3))


# --- the backbone -------------------------------------------------------------------------------------
@pytest.mark.parametrize("name", BACKBONES)
@pytest.mark.parametrize("tag", ["output", "other"])
def test_backbone_feature_maps_equal_the_reference(name, tag):
    model = load(name)
    assert isinstance(model, SwinBackbone)
    assert model.out_features == meta(name)["out_features"] and model.channels == meta(name)["channels"]
    want = recorded(golden(name), f"{tag}.")
    assert sum(k.startswith("feature.") for k in want) == meta(name)["features"] == len(model.out_features)
    x, _ = inputs(name, tag)
    with torch.no_grad():
        out = model(x, output_hidden_states=True)
    assert [m.shape[1] for m in out.feature_maps] == model.channels
    check(out, want)
    with torch.no_grad():
        plain = model(x)
    assert plain.hidden_states is None and all(torch.equal(a, b) for a, b in zip(plain.feature_maps, out.feature_maps))


def test_backbone_pads_maps_smaller_than_a_window():
    name = "swin-variant-backbone"
    assert meta(name)["other_size"] == [10, 10]   # stages of 5, 3 and 2 tokens, windows of 3
    x, _ = inputs(name, "other")
    with torch.no_grad():
        maps = load(name)(x).feature_maps
    assert [tuple(m.shape[2:]) for m in maps] == [(3, 3), (2, 2)]


@pytest.mark.parametrize("name", BACKBONES)
def test_backbone_round_trip_and_names(name, tmp_path):
    assert meta(name)["roundtrip_max_abs_diff"] <= 1e-4
    model = load(name)
    model.save_pretrained(tmp_path)
    saved = sorted(load_file(str(tmp_path / "model.safetensors")))
    theirs = load_file(str(FIX / "models" / name / "model.safetensors"))
    # the reference also writes the bare model's final norm, which no backbone uses
    assert saved == sorted(k for k in theirs if not k.startswith("swin.layernorm."))
    assert any(k.startswith("swin.layernorm.") for k in theirs)
    assert not any(k.startswith("swin.") for k in saved) and any(k.startswith("hidden_states_norms.") for k in saved)
    back = SwinBackbone.from_pretrained(tmp_path, strict=True)
    assert all(torch.equal(a, back.state_dict()[k]) for k, a in model.state_dict().items())


def test_backbone_bfloat16_within_its_rounding():
    name = "swin-tiny-backbone"
    g = golden(name)
    model = load(name, torch_dtype=torch.bfloat16)
    with torch.no_grad():
        out = model(g["input.pixel_values"])
    for i, m in enumerate(out.feature_maps):
        want, ref = g[f"output.feature.{i}"], g[f"bf16.feature.{i}"]
        tolerance = 0.06 * want.abs().max().item() + 0.02
        assert m.dtype == torch.bfloat16
        assert (m.float() - want).abs().max() <= tolerance and (m.float() - ref).abs().max() <= tolerance


def test_backbone_from_a_classifier_checkpoint():
    """As the reference's AutoBackbone on microsoft/swin-tiny-...: the trunk's weights from
    ``swin.*``, the per-stage norms new (ones and zeros)."""
    clf = load(CLASSIFIER)
    bb = SwinBackbone.from_pretrained(FIX / "models" / CLASSIFIER, out_features=["stage1", "stage2"])
    trunk = dict(clf.swin.named_parameters())
    for key, value in bb.named_parameters():
        if key.startswith("hidden_states_norms."):
            assert torch.equal(value, torch.ones_like(value) if key.endswith("weight") else torch.zeros_like(value))
        else:
            assert torch.equal(value, trunk[key]), key
    assert bb.channels == [8, 16]


def test_old_checkpoints_with_the_index_buffer_load(tmp_path):
    """Checkpoints written before the index became a computed value hold
    ``attention.self.relative_position_index``: skipped (strict loading passes)."""
    src = FIX / "models" / CLASSIFIER
    weights = load_file(str(src / "model.safetensors"))
    n = 4 * 4   # tokens per window
    for key in [k for k in weights if k.endswith("relative_position_bias_table")]:
        weights[key.replace("relative_position_bias_table", "relative_position_index")] = torch.zeros(n, n,
                                                                                                      dtype=torch.long)
    save_file(weights, str(tmp_path / "model.safetensors"))
    (tmp_path / "config.json").write_text((src / "config.json").read_text())
    model = SwinForImageClassification.from_pretrained(tmp_path, strict=True)
    x = golden(CLASSIFIER)["input.pixel_values"]
    with torch.no_grad():
        assert (model(x).logits - golden(CLASSIFIER)["output.logits"]).abs().max() <= 1e-4


def test_load_backbone_builds_swin_from_a_backbone_config():
    config = dict(model_type="swin", embed_dim=8, depths=[1, 1, 1], num_heads=[1, 2, 2], window_size=2,
                  out_features=["stage1", "stage3"])
    bb = load_backbone(config)
    assert isinstance(bb, SwinBackbone) and bb.channels == [8, 32] and bb.num_features == [8, 8, 16, 32]
    maps = bb(torch.randn(2, 3, 40, 24)).feature_maps
    assert [tuple(m.shape) for m in maps] == [(2, 8, 10, 6), (2, 32, 3, 2)]


# --- the pipeline, the auto classes -----------------------------------------------------------------------
def test_the_image_classification_pipeline_equals_the_reference():
    from pretrained import pipeline

    clf = pipeline("image-classification", model=str(FIX / "models" / CLASSIFIER))
    assert type(clf.image_processor).__name__ == "ViTImageProcessor"
    for picture, want in meta(CLASSIFIER)["pipeline"].items():
        got = clf(str(FIX / "images" / picture), top_k=3)
        assert [g["label"] for g in got] == [w["label"] for w in want]
        assert all(abs(g["score"] - w["score"]) <= 1e-4 for g, w in zip(got, want))


def test_the_auto_classes_pick_the_heads():
    clf = AutoModelForImageClassification.from_pretrained(FIX / "models" / CLASSIFIER)
    assert type(clf).__name__ == "SwinForImageClassification" and clf.config.id2label[1] == "dog"
    assert type(AutoModel.from_pretrained(FIX / "models" / "swin-tiny-model")).__name__ == "SwinModel"
    assert AutoConfig.from_pretrained(FIX / "models" / CLASSIFIER).model_type == "swin"


def test_the_image_processor_of_a_swin_folder_without_its_type(tmp_path):
    from pretrained.processing import AutoImageProcessor

    (tmp_path / "config.json").write_text((FIX / "models" / CLASSIFIER / "config.json").read_text())
    (tmp_path / "preprocessor_config.json").write_text('{"size": {"height": 32, "width": 32}}')
    assert type(AutoImageProcessor.from_pretrained(tmp_path)).__name__ == "ViTImageProcessor"


# --- the model's own ---------------------------------------------------------------------------------
def test_config_defaults_are_the_reference_tiny_shape():
    cfg = SwinConfig()
    assert (cfg.embed_dim, cfg.depths, cfg.num_heads, cfg.window_size) == (96, [2, 2, 6, 2], [3, 6, 12, 24], 7)
    assert (cfg.patch_size, cfg.image_size, cfg.num_channels, cfg.mlp_ratio) == (4, 224, 3, 4.0)
    assert cfg.drop_path_rate == 0.1 and cfg.layer_norm_eps == 1e-5 and cfg.qkv_bias and not cfg.use_absolute_embeddings
    assert (cfg.num_layers, cfg.hidden_size, cfg.stage_names) == (4, 768, ["stem", "stage1", "stage2", "stage3",
                                                                            "stage4"])
    assert cfg.num_hidden_layers == 4 and cfg.num_attention_heads == [3, 6, 12, 24]
    assert (cfg.out_features, cfg.out_indices) == (["stage4"], [4])


def test_the_checkpoint_names():
    names = dict(load("swin-variant-imgcls").named_parameters())
    for key in ("swin.embeddings.patch_embeddings.projection.weight", "swin.embeddings.norm.weight",
                "swin.embeddings.position_embeddings",
                "swin.encoder.layers.0.blocks.1.attention.self.query.weight",
                "swin.encoder.layers.0.blocks.1.attention.self.relative_position_bias_table",
                "swin.encoder.layers.1.blocks.0.attention.output.dense.bias",
                "swin.encoder.layers.1.blocks.0.layernorm_before.weight",
                "swin.encoder.layers.1.blocks.0.intermediate.dense.weight",
                "swin.encoder.layers.2.blocks.0.output.dense.weight",
                "swin.encoder.layers.1.downsample.reduction.weight", "swin.encoder.layers.1.downsample.norm.bias",
                "swin.layernorm.weight", "classifier.weight"):
        assert key in names, key
    assert "swin.encoder.layers.0.blocks.0.attention.self.query.bias" not in names   # qkv_bias False
    assert not any("layers.2.downsample" in k for k in names)   # the last stage has none
    assert isinstance(load("swin-tiny-model"), SwinModel)


def test_training_a_step_moves_every_weight():
    torch.manual_seed(0)
    model = load(CLASSIFIER)
    model.train()
    model(**example(2), labels=torch.tensor([2, 0])).loss.backward()
    missing = [n for n, p in model.named_parameters() if p.grad is None or not bool(p.grad.abs().sum() > 0)]
    assert not missing


def test_stochastic_depth_only_in_training():
    model = load(CLASSIFIER, drop_path_rate=0.9)
    batch = example(4)
    with torch.no_grad():
        eval_out = model(**batch).logits
        assert torch.equal(eval_out, load(CLASSIFIER)(**batch).logits)   # no drop path in eval
        model.train()
        torch.manual_seed(1)
        assert (model(**batch).logits - eval_out).abs().max() > 1e-4


def test_a_map_smaller_than_a_window_is_a_named_error_as_the_reference_fails():
    for name, spec in ((n, meta(n).get("reference_fails")) for n in MODELS):
        if spec is None:
            continue
        assert "RuntimeError" in spec["error"]
        model = load(name)
        with pytest.raises(InvalidInputError, match=r"smaller than its 4x4 windows.*at least 25x25.*SwinBackbone"):
            model(torch.zeros(1, 3, *spec["size"]))
    g = golden("swin-tiny-model")   # one pixel more runs, as in the reference
    with torch.no_grad():
        check(load("swin-tiny-model")(g["input.pixel_values_smallest"]), recorded(g, "smallest."))


@pytest.mark.parametrize("size, kw, words", [
    ((30, 22), {}, r"give 165 patches.*cover 144 \(12x12 at image_size 24x24\).*interpolate_pos_encoding=True"),
    ((31, 22), {"interpolate_pos_encoding": True}, "multiples of the patch size"),
])
def test_absolute_positions_at_another_size_are_named_errors(size, kw, words):
    with pytest.raises(InvalidInputError, match=words):
        load("swin-variant-imgcls")(torch.zeros(1, 1, *size), **kw)


@pytest.mark.parametrize("bad, words", [
    (dict(pixel_values=torch.zeros(2, 32, 32, 3)), "channels-last.*permute"),
    (dict(pixel_values=torch.zeros(2, 1, 32, 32)), "1 channels.*image processor"),
    (dict(pixel_values=torch.zeros(2, 3, 2, 2)), "smaller than one 4x4"),
    (dict(pixel_values=torch.zeros(2, 3, 32, 32, dtype=torch.uint8)), "float pixels"),
    (dict(pixel_values=torch.zeros(0, 3, 32, 32)), "shape"),
    (dict(pixel_values=[[0.0] * 32] * 32), "torch.Tensor"),
])
@pytest.mark.parametrize("name", [CLASSIFIER, "swin-tiny-backbone"])
def test_bad_pixels_are_named_errors(name, bad, words):
    with pytest.raises(InvalidInputError, match=words):
        load(name)(**bad)


def test_one_image_is_a_batch_of_one():
    model = load(CLASSIFIER)
    x = example(1)["pixel_values"]
    with torch.no_grad():
        assert torch.equal(model(x[0]).logits, model(x).logits)


@pytest.mark.parametrize("bad, words", [
    (dict(num_heads=[2]), "num_heads has 1 entries"),
    (dict(depths=[1, 0], num_heads=[2, 4]), "depths"),
    (dict(num_heads=[3, 4]), "not a multiple of its 3 heads"),
    (dict(window_size=0), "window_size"),
    (dict(window_size=10 ** 6), "window_size"),
    (dict(patch_size=0), "patch_size"),
    (dict(hidden_act="nope"), "nope"),
    (dict(mlp_ratio=0.0), "mlp_ratio"),
    (dict(drop_path_rate=1.0), "drop_path_rate"),
    (dict(layer_norm_eps=0.0), "layer_norm_eps"),
    (dict(out_features=["stage9"]), "not stages"),
])
def test_bad_configs_are_named_errors(bad, words):
    with pytest.raises(ConfigError, match=words):
        SwinConfig(**{**dict(embed_dim=8, depths=[1, 2], num_heads=[2, 4]), **bad})
