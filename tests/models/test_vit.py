"""ViT ('vit') against the goldens scripts/golden_vit.py recorded from the reference
(tests/fixtures/goldens/vit/); ``family_tests`` is also what test_deit.py runs on DeiT's fixtures.

tester.py's shared tests feed token ids; ViT takes pixel_values (B, C, H, W), so its tests are
written here: float32 parity on batched pixels (every output and hidden state, the pooler too;
at 48 x 40 and 48 x 48 with interpolate_pos_encoding), the losses (single-label, multi-label by
problem_type and inferred, regression by problem_type and by num_labels=1), the round trip (the
reference reads our save: recorded), bfloat16, the backend seam, LoRA all-linear, torch.compile,
and named errors for wrong pixels.
"""

from __future__ import annotations

import math

import pytest
import torch
from image_tester import Goldens, example, image_model_tests, recorded
from tester import FIX, fixtures, load, names_for

from pretrained import AutoConfig, AutoModel, AutoModelForImageClassification
from pretrained.errors import ConfigError, InvalidInputError
from pretrained.models.vit import ViTConfig, ViTForImageClassification, ViTModel

GOLDENS = Goldens("vit")
meta, golden, index = GOLDENS.meta, GOLDENS.golden, GOLDENS.index


def got_of(out, key: str) -> torch.Tensor:
    return out.hidden_states[int(key[7:])] if key.startswith("hidden.") else getattr(out, key)


def main_output(out) -> torch.Tensor:
    return out.logits if getattr(out, "logits", None) is not None else out.last_hidden_state


def run(model, batch: dict, **kw) -> torch.Tensor:
    with torch.no_grad():
        return main_output(model(**batch, **kw))


def family_tests(model_type: str, classifier: str) -> dict:
    """The tests ViT and DeiT share, over ``model_type``'s fixtures; ``classifier`` names a
    fixture with a trainable classification head (32 x 32 pixels, 3 channels, 3 labels)."""
    names = names_for(model_type)
    interpolated = [(n, tag) for n in names for tag in ("interp", "interp_sq")
                    if f"input.pixel_values_{tag}" in golden(n)]
    lossy = [(n, c) for n in names for c in meta(n)["losses"]]

    def test_the_fixtures_are_found():
        assert names and set(names) <= set(index()["models"])
        assert len(interpolated) >= 4 and len(lossy) >= 4

    @pytest.mark.parametrize("name", names)
    def test_float32_parity_with_the_reference(name):
        g = golden(name)
        model = load(name)
        assert type(model).__name__ == meta(name)["class"]
        assert model.dtype == torch.float32 and not model.training
        want = recorded(g, "output.")
        assert sum(k.startswith("hidden.") for k in want) == meta(name)["hidden_states"] == 3
        if meta(name)["head"] == "model":
            assert "pooler_output" in want
        with torch.no_grad():
            out = model(pixel_values=g["input.pixel_values"], output_hidden_states=True)
        assert len(out.hidden_states) == 3
        for key, w in want.items():
            got = got_of(out, key)
            assert got.shape == w.shape, (key, got.shape, w.shape)
            assert (got - w).abs().max() <= 1e-4, key

    @pytest.mark.parametrize("name, tag", interpolated)
    def test_interpolated_positions_match_the_reference(name, tag):
        g = golden(name)
        model = load(name)
        x = g[f"input.pixel_values_{tag}"]
        with torch.no_grad():
            out = model(pixel_values=x, interpolate_pos_encoding=True, output_hidden_states=True)
        want = recorded(g, f"{tag}.")
        assert want
        for key, w in want.items():
            got = got_of(out, key)
            assert got.shape == w.shape, (key, got.shape, w.shape)
            assert (got - w).abs().max() <= 1e-4, key
        with pytest.raises(InvalidInputError, match="interpolate_pos_encoding=True"):
            model(pixel_values=x)

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

    @pytest.mark.parametrize("bad, words", [
        (dict(pixel_values=torch.zeros(2, 32, 32, 3)), "channels-last.*permute"),
        (dict(pixel_values=torch.zeros(2, 1, 32, 32)), "1 channels.*image processor"),
        (dict(pixel_values=torch.zeros(2, 4, 32, 32)), "4 channels"),
        (dict(pixel_values=torch.zeros(2, 3, 40, 32)), r"40x32, the model takes 32x32.*image processor"),
        (dict(pixel_values=torch.zeros(2, 3, 4, 4), interpolate_pos_encoding=True), "smaller than one 8x8"),
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

    own = {k: v for k, v in locals().items() if k.startswith("test_")}
    return {**image_model_tests(GOLDENS, names, classifier, min_trainable=2 * 2 * 6), **own}


globals().update(family_tests("vit", "vit-tiny-imgcls"))


# --- ViT's own ------------------------------------------------------------------------------------
def test_the_vit_fixtures():
    assert names_for("vit") == sorted(n for n in index()["models"] if n.startswith("vit-"))
    assert {fixtures()[n]["class"] for n in names_for("vit")} == {"ViTModel", "ViTForImageClassification"}
    assert meta("vit-tiny-regression")["losses"]["regression"]["config"] == {}   # num_labels=1
    kinds = {spec["problem_type"] for n in names_for("vit") for spec in meta(n)["losses"].values()}
    assert kinds == {"single_label_classification", "multi_label_classification", "regression"}


def test_config_defaults_are_the_reference_base_shape():
    cfg = ViTConfig()
    assert (cfg.hidden_size, cfg.num_hidden_layers, cfg.num_attention_heads, cfg.intermediate_size) == \
        (768, 12, 12, 3072)
    assert (cfg.image_size, cfg.patch_size, cfg.num_channels, cfg.encoder_stride) == (224, 16, 3, 16)
    assert cfg.layer_norm_eps == 1e-12 and cfg.qkv_bias is True and cfg.hidden_act == "gelu"
    assert cfg.pooler_act == "tanh" and cfg.pooler_output_size == 768
    assert cfg.patch_grid == (14, 14) and cfg.num_patches == 196


def test_the_variant_reads_its_config():
    cfg = AutoConfig.from_pretrained(FIX / "models" / "vit-variant-model")
    assert type(cfg) is ViTConfig and cfg.image_size == [32, 24] and cfg.patch_grid == (4, 3)
    assert cfg.qkv_bias is False and cfg.num_channels == 1 and cfg.pooler_output_size == 24
    model = load("vit-variant-model")
    assert model.pooler.dense.weight.shape == (24, 32)
    assert "encoder.layer.0.attention.attention.key.bias" not in dict(model.named_parameters())


@pytest.mark.parametrize("bad, words", [
    (dict(num_attention_heads=5), "multiple of num_attention_heads"),
    (dict(hidden_act="nope"), "nope"),
    (dict(pooler_act="nope"), "nope"),
    (dict(image_size=4), "no patch fits"),
    (dict(patch_size=0), "patch_size"),
    (dict(image_size=[32]), "image_size"),
    (dict(num_channels=0), "num_channels"),
    (dict(image_size=10**5, patch_size=1), "more than this library takes"),
    (dict(layer_norm_eps=0.0), "layer_norm_eps"),
])
def test_bad_configs_are_named_errors(bad, words):
    with pytest.raises(ConfigError, match=words):
        ViTConfig(**{**dict(hidden_size=32, num_hidden_layers=2, num_attention_heads=4, intermediate_size=37,
                            image_size=32, patch_size=8), **bad})


def test_the_checkpoint_names():
    names = dict(load("vit-tiny-imgcls").named_parameters())
    for key in ("vit.embeddings.cls_token", "vit.embeddings.position_embeddings",
                "vit.embeddings.patch_embeddings.projection.weight",
                "vit.encoder.layer.1.attention.attention.query.weight",
                "vit.encoder.layer.0.attention.output.dense.bias", "vit.encoder.layer.0.intermediate.dense.weight",
                "vit.encoder.layer.0.layernorm_before.weight", "vit.layernorm.weight", "classifier.weight"):
        assert key in names, key
    assert not any("pooler" in k for k in names)   # the head has no pooler, as the reference
    assert "pooler.dense.weight" in dict(load("vit-tiny-model").named_parameters())
    assert isinstance(load("vit-tiny-model"), ViTModel)
    assert isinstance(load("vit-tiny-imgcls"), ViTForImageClassification)
