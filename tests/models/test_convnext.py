"""ConvNeXt ('convnext') against the goldens scripts/golden_convnext.py recorded from the reference
(tests/fixtures/goldens/convnext/); ``convnext_tests`` is also what test_convnextv2.py runs on
ConvNeXt V2's fixtures.

Float32 parity on batched pixels (every output and hidden state, the pooler too; at image_size and
at another, non-square size), the losses (single-label, multi-label by problem_type and inferred,
regression by problem_type and by num_labels=1), the round trip (the reference reads our save:
recorded), bfloat16, the backend seam, LoRA all-linear, torch.compile, stochastic depth in training
only, and named errors for wrong pixels.
"""

from __future__ import annotations

import math

import pytest
import torch
from image_tester import Goldens, example, image_model_tests, recorded
from tester import FIX, load, names_for

from pretrained import AutoConfig, AutoModel, AutoModelForImageClassification
from pretrained.errors import ConfigError, InvalidInputError
from pretrained.models.convnext import ConvNextConfig, ConvNextForImageClassification, ConvNextModel

GOLDENS = Goldens("convnext")
meta, golden, index = GOLDENS.meta, GOLDENS.golden, GOLDENS.index


def got_of(out, key: str) -> torch.Tensor:
    return out.hidden_states[int(key[7:])] if key.startswith("hidden.") else getattr(out, key)


def run(model, batch: dict) -> torch.Tensor:
    with torch.no_grad():
        out = model(**batch)
    return out.logits if getattr(out, "logits", None) is not None else out.pooler_output


def convnext_tests(model_type: str, classifier: str) -> dict:
    """The tests ConvNeXt and V2 share, over ``model_type``'s fixtures; ``classifier`` names a
    fixture with a classification head (32 x 32 pixels, 3 channels, 3 labels, 3 blocks)."""
    names = names_for(model_type)
    lossy = [(n, c) for n in names for c in meta(n)["losses"]]

    def test_the_fixtures_are_found():
        assert names == sorted(n for n in index()["models"] if n.startswith(f"{model_type}-"))
        assert len(names) >= 4 and len(lossy) >= 9
        kinds = {spec["problem_type"] for n in names for spec in meta(n)["losses"].values()}
        assert kinds == {"single_label_classification", "multi_label_classification", "regression"}

    @pytest.mark.parametrize("name", names)
    @pytest.mark.parametrize("tag", ["output", "other"])
    def test_float32_parity_with_the_reference(name, tag):
        g = golden(name)
        model = load(name)
        assert type(model).__name__ == meta(name)["class"]
        assert model.dtype == torch.float32 and not model.training
        want = recorded(g, f"{tag}.")
        assert sum(k.startswith("hidden.") for k in want) == meta(name)["hidden_states"] == 3
        assert "pooler_output" in want or "logits" in want
        x = g["input.pixel_values" if tag == "output" else "input.pixel_values_other"]
        with torch.no_grad():
            out = model(pixel_values=x, output_hidden_states=True)
        assert len(out.hidden_states) == 3
        for key, w in want.items():
            got = got_of(out, key)
            assert got.shape == w.shape, (key, got.shape, w.shape)
            assert (got - w).abs().max() <= 1e-4, key

    @pytest.mark.parametrize("name, case", lossy)
    def test_losses_match_the_reference(name, case):
        spec = meta(name)["losses"][case]
        g = golden(name)
        model = load(name, **spec["config"])
        with torch.no_grad():
            loss = model(pixel_values=g["input.pixel_values"], labels=g[f"case.{case}.labels"]).loss
        assert model.config.problem_type == spec["problem_type"]
        want = spec["loss"]
        assert math.isfinite(want) and abs(loss.item() - want) <= 1e-4 * max(1.0, abs(want)), (loss.item(), want)

    def test_training_a_step_moves_every_weight():
        torch.manual_seed(0)
        model = load(classifier)
        model.train()
        model(**example(2), labels=torch.tensor([2, 0])).loss.backward()
        missing = [n for n, p in model.named_parameters() if p.grad is None or not bool(p.grad.abs().sum() > 0)]
        assert not missing

    def test_stochastic_depth_only_in_training():
        model = load(classifier, drop_path_rate=0.9)
        batch = example(4)
        eval_out = run(model, batch)
        assert torch.equal(eval_out, run(load(classifier), batch))   # no drop path in eval
        model.train()
        torch.manual_seed(1)
        with torch.no_grad():
            a = model(**batch).logits
        assert (a - eval_out).abs().max() > 1e-4

    @pytest.mark.parametrize("bad, words", [
        (dict(pixel_values=torch.zeros(2, 32, 32, 3)), "channels-last.*permute"),
        (dict(pixel_values=torch.zeros(2, 1, 32, 32)), "1 channels.*image processor"),
        (dict(pixel_values=torch.zeros(2, 4, 32, 32)), "4 channels"),
        (dict(pixel_values=torch.zeros(2, 3, 7, 32)), "7x32 is too small.*at least 8x8"),
        (dict(pixel_values=torch.zeros(2, 3, 2, 2)), "smaller than one 4x4"),
        (dict(pixel_values=torch.zeros(2, 3, 32, 32, dtype=torch.uint8)), "float pixels"),
        (dict(pixel_values=torch.zeros(0, 3, 32, 32)), "shape"),
        (dict(pixel_values=torch.zeros(32, 32)), "shape"),
        (dict(pixel_values=[[0.0] * 32] * 32), "torch.Tensor"),
    ])
    def test_bad_pixels_are_named_errors(bad, words):
        model = load(classifier)
        with pytest.raises(InvalidInputError, match=words):
            model(**bad)

    def test_one_image_is_a_batch_of_one():
        model = load(classifier)
        x = example(1)["pixel_values"]
        assert torch.equal(run(model, {"pixel_values": x[0]}), run(model, {"pixel_values": x}))

    def test_the_auto_classes_pick_the_heads():
        clf = AutoModelForImageClassification.from_pretrained(FIX / "models" / classifier)
        assert type(clf).__name__ == meta(classifier)["class"] and clf.config.id2label[1] == "dog"
        bare = AutoModel.from_pretrained(FIX / "models" / f"{model_type}-tiny-model")
        assert type(bare).__name__ == meta(f"{model_type}-tiny-model")["class"]
        assert AutoConfig.from_pretrained(FIX / "models" / classifier).model_type == model_type

    @pytest.mark.parametrize("bad, words", [
        (dict(hidden_sizes=[8]), "hidden_sizes has 1 entries"),
        (dict(depths=[1, 0]), "depths"),
        (dict(hidden_act="nope"), "nope"),
        (dict(num_channels=0), "num_channels"),
        (dict(patch_size=0), "patch_size"),
        (dict(layer_norm_eps=0.0), "layer_norm_eps"),
        (dict(drop_path_rate=1.0), "drop_path_rate"),
    ])
    def test_bad_configs_are_named_errors(bad, words):
        config_class = type(load(classifier).config)
        with pytest.raises(ConfigError, match=words):
            config_class(**{**dict(num_stages=2, hidden_sizes=[8, 16], depths=[1, 2]), **bad})

    own = {k: v for k, v in locals().items() if k.startswith("test_")}
    return {**image_model_tests(GOLDENS, names, classifier, min_trainable=2 * 2 * 3), **own}


globals().update(convnext_tests("convnext", "convnext-tiny-imgcls"))


# --- ConvNeXt's own ---------------------------------------------------------------------------------
def test_config_defaults_are_the_reference_tiny_shape():
    cfg = ConvNextConfig()
    assert (cfg.num_stages, cfg.hidden_sizes, cfg.depths) == (4, [96, 192, 384, 768], [3, 3, 9, 3])
    assert (cfg.patch_size, cfg.image_size, cfg.num_channels) == (4, 224, 3)
    assert cfg.layer_norm_eps == 1e-12 and cfg.layer_scale_init_value == 1e-6 and cfg.hidden_act == "gelu"
    assert cfg.drop_path_rate == 0.0


def test_the_checkpoint_names():
    names = dict(load("convnext-tiny-imgcls").named_parameters())
    for key in ("convnext.embeddings.patch_embeddings.weight", "convnext.embeddings.layernorm.weight",
                "convnext.encoder.stages.0.layers.0.dwconv.weight", "convnext.encoder.stages.0.layers.0.layernorm.bias",
                "convnext.encoder.stages.1.layers.1.pwconv1.weight", "convnext.encoder.stages.1.layers.1.pwconv2.bias",
                "convnext.encoder.stages.1.layers.0.layer_scale_parameter",
                "convnext.encoder.stages.1.downsampling_layer.0.weight",
                "convnext.encoder.stages.1.downsampling_layer.1.weight",
                "convnext.layernorm.weight", "classifier.weight"):
        assert key in names, key
    assert not any("stages.0.downsampling" in k for k in names)
    assert isinstance(load("convnext-tiny-model"), ConvNextModel)
    assert isinstance(load("convnext-tiny-imgcls"), ConvNextForImageClassification)


def test_no_layer_scale_when_its_init_value_is_zero():
    model = load("convnext-noscale-imgcls")
    assert model.config.layer_scale_init_value == 0.0 and model.config.num_channels == 1
    assert not any("layer_scale" in k for k, _ in model.named_parameters())
