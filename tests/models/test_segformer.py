"""SegFormer ('segformer') against the goldens scripts/golden_segformer.py recorded from the reference
(tests/fixtures/goldens/segformer/).

Float32 parity on batched pixels (the output and every stage's hidden state; at 32 x 32 and at a
non-square size), 2 and 4 stages, reshape_last_stage off; the losses (cross-entropy with ignored
pixels, labels at another size, another ignore index, one label's binary cross-entropy; the
classification head's single-label, multi-label and regression); the shared image-model tests
(round trip read back by the reference, bfloat16, backend seam, LoRA, torch.compile) on the
classifier; and SegFormer's own: the checkpoint names, BatchNorm statistics in eval and training,
stochastic depth in training only, a training step on the decode head, named errors.
"""

from __future__ import annotations

import copy
import math

import pytest
import torch
from image_tester import Goldens, example, image_model_tests, recorded
from tester import FIX, load, names_for

from pretrained import AutoConfig, AutoModel, AutoModelForImageClassification, AutoModelForSemanticSegmentation
from pretrained.backends import plain
from pretrained.errors import ConfigError, InvalidInputError
from pretrained.models.segformer import (SegformerConfig, SegformerForImageClassification,
                                         SegformerForSemanticSegmentation, SegformerModel, min_image_size)
from pretrained.peft import LoraConfig, get_peft_model

GOLDENS = Goldens("segformer")
meta, golden, index = GOLDENS.meta, GOLDENS.golden, GOLDENS.index
NAMES = names_for("segformer")
LOSSY = [(n, c) for n in NAMES for c in meta(n)["losses"]]
SEMSEG = "segformer-tiny-semseg"

globals().update(image_model_tests(GOLDENS, NAMES, "segformer-tiny-imgcls", min_trainable=2 * 3 * 6))


def got_of(out, key: str) -> torch.Tensor:
    return out.hidden_states[int(key[7:])] if key.startswith("hidden.") else getattr(out, key)


def seg_logits(model, x: torch.Tensor) -> torch.Tensor:
    with torch.no_grad():
        return model(pixel_values=x).logits


def test_the_fixtures_are_found():
    assert NAMES == sorted(index()["models"]) and len(NAMES) == 8
    classes = {meta(n)["class"] for n in NAMES}
    assert classes == {"SegformerModel", "SegformerForSemanticSegmentation", "SegformerForImageClassification"}
    assert len(LOSSY) >= 14
    cases = {c for _, c in LOSSY}
    assert {"ce_ignore", "ce_other_size", "ce_ignore_minus_one", "bce_ignore", "single", "regression"} <= cases


@pytest.mark.parametrize("name", NAMES)
@pytest.mark.parametrize("tag", ["output", "other"])
def test_float32_parity_with_the_reference(name, tag):
    if tag == "other" and not meta(name)["other"]:
        pytest.skip("the reference's decode head takes a flat last stage for a square: no golden off 32 x 32")
    g = golden(name)
    model = load(name)
    assert type(model).__name__ == meta(name)["class"]
    assert model.dtype == torch.float32 and not model.training
    want = recorded(g, f"{tag}.")
    stages = model.config.num_encoder_blocks
    assert sum(k.startswith("hidden.") for k in want) == meta(name)["hidden_states"] == stages
    assert "last_hidden_state" in want or "logits" in want
    x = g["input.pixel_values" if tag == "output" else "input.pixel_values_other"]
    with torch.no_grad():
        out = model(pixel_values=x, output_hidden_states=True)
    assert len(out.hidden_states) == stages
    for key, w in want.items():
        got = got_of(out, key)
        assert got.shape == w.shape, (key, got.shape, w.shape)
        assert (got - w).abs().max() <= 1e-4, key


def test_the_logits_are_at_a_quarter_of_the_input():
    g = golden(SEMSEG)
    assert g["output.logits"].shape == (3, 3, 8, 8)
    assert g["other.logits"].shape == (3, 3, 10, 6)


@pytest.mark.parametrize("name, case", LOSSY)
def test_losses_match_the_reference(name, case):
    spec = meta(name)["losses"][case]
    g = golden(name)
    model = load(name, **spec["config"])
    with torch.no_grad():
        loss = model(pixel_values=g["input.pixel_values"], labels=g[f"case.{case}.labels"]).loss
    if spec["problem_type"] is not None:
        assert model.config.problem_type == spec["problem_type"]
    want = spec["loss"]
    assert math.isfinite(want) and abs(loss.item() - want) <= 1e-4 * max(1.0, abs(want)), (loss.item(), want)


def test_ignored_pixels_change_the_loss():
    g = golden(SEMSEG)
    model = load(SEMSEG)
    x = g["input.pixel_values"]
    with torch.no_grad():
        full = model(pixel_values=x, labels=g["case.ce.labels"]).loss
        some = model(pixel_values=x, labels=g["case.ce_ignore.labels"]).loss
    assert abs(full.item() - some.item()) > 1e-4   # the ignored pixels are left out of the mean


def test_hidden_states_only_when_asked():
    model = load(SEMSEG)
    x = golden(SEMSEG)["input.pixel_values"]
    with torch.no_grad():
        out = model(pixel_values=x)
    assert out.hidden_states is None and out.loss is None
    assert torch.equal(out.logits, seg_logits(load(SEMSEG), x))
    assert len(out) == 1


def test_the_checkpoint_names():
    names = set(load(SEMSEG).state_dict())
    for key in ("segformer.encoder.patch_embeddings.0.proj.weight", "segformer.encoder.patch_embeddings.1.layer_norm.bias",
                "segformer.encoder.block.0.0.attention.self.query.weight",
                "segformer.encoder.block.0.0.attention.self.sr.weight",
                "segformer.encoder.block.0.0.attention.self.layer_norm.weight",
                "segformer.encoder.block.1.1.attention.output.dense.bias",
                "segformer.encoder.block.1.1.mlp.dense1.weight", "segformer.encoder.block.1.1.mlp.dwconv.dwconv.weight",
                "segformer.encoder.block.1.0.layer_norm_1.weight", "segformer.encoder.block.1.0.layer_norm_2.bias",
                "segformer.encoder.layer_norm.1.weight", "decode_head.linear_c.0.proj.weight",
                "decode_head.linear_c.1.proj.bias", "decode_head.linear_fuse.weight", "decode_head.batch_norm.running_mean",
                "decode_head.batch_norm.running_var", "decode_head.batch_norm.num_batches_tracked",
                "decode_head.classifier.weight"):
        assert key in names, key
    assert not any("block.1.0.attention.self.sr" in k for k in names)   # sr_ratio 1: no reduction
    assert "decode_head.linear_fuse.bias" not in names
    assert isinstance(load("segformer-tiny-model"), SegformerModel)
    assert any(k.startswith("encoder.block.0.0") for k in load("segformer-tiny-model").state_dict())
    assert isinstance(load("segformer-tiny-imgcls"), SegformerForImageClassification)


def test_batch_norm_statistics_are_loaded_and_used_in_eval():
    model = load(SEMSEG)
    bn = model.decode_head.batch_norm
    assert int(bn.num_batches_tracked) == 17 and bn.running_var.min() >= 0.5 and bn.running_mean.abs().sum() > 0
    x = golden(SEMSEG)["input.pixel_values"]
    want = seg_logits(model, x)
    with torch.no_grad():
        bn.running_mean.zero_()
        bn.running_var.fill_(1.0)
    assert (seg_logits(model, x) - want).abs().max() > 1e-3


def test_training_uses_batch_statistics_and_updates_them():
    torch.manual_seed(0)
    model = load(SEMSEG, drop_path_rate=0.0, classifier_dropout_prob=0.0)
    x = golden(SEMSEG)["input.pixel_values"]
    before = model.decode_head.batch_norm.running_mean.clone()
    model.train()
    with torch.no_grad():
        train_logits = model(pixel_values=x).logits
    assert not torch.equal(model.decode_head.batch_norm.running_mean, before)
    assert int(model.decode_head.batch_norm.num_batches_tracked) == 18
    model.eval()
    assert (seg_logits(model, x) - train_logits).abs().max() > 1e-3


def test_training_a_step_moves_every_weight():
    torch.manual_seed(0)
    model = load(SEMSEG)
    model.train()
    g = golden(SEMSEG)
    model(pixel_values=g["input.pixel_values"][:2], labels=g["case.ce_ignore.labels"][:2]).loss.backward()
    missing = [n for n, p in model.named_parameters() if p.grad is None or not bool(p.grad.abs().sum() > 0)]
    assert not missing


def test_stochastic_depth_and_dropout_only_in_training():
    model = load(SEMSEG, drop_path_rate=0.9)
    x = golden(SEMSEG)["input.pixel_values"]
    eval_out = seg_logits(model, x)
    assert torch.equal(eval_out, seg_logits(load(SEMSEG), x))
    model.train()
    torch.manual_seed(1)
    with torch.no_grad():
        a = model(pixel_values=x).logits
    assert (a - eval_out).abs().max() > 1e-4
    assert model.segformer.encoder.block[1][1].drop_path.p == pytest.approx(0.9)   # rising to the rate
    assert model.segformer.encoder.block[0][0].drop_path.p == 0.0


def test_fast_paths_on_the_decode_head_give_the_plain_numbers():
    model = load("segformer-four-semseg")
    reference = copy.deepcopy(model)
    assert plain(reference) > 0
    for rows in (1, 2, 1):
        x = example(rows, channels=1, size=(32, 40))["pixel_values"]
        assert (seg_logits(model, x) - seg_logits(reference, x)).abs().max() <= 1e-5


def test_lora_on_the_segmenter_trains_the_decode_head_projections():
    torch.manual_seed(0)
    peft = get_peft_model(load(SEMSEG), LoraConfig(r=2, lora_alpha=4, target_modules="all-linear"))
    peft.train()
    g = golden(SEMSEG)
    peft(pixel_values=g["input.pixel_values"][:2], labels=g["case.ce.labels"][:2]).loss.backward()
    trainable = {n for n, p in peft.named_parameters() if p.requires_grad}
    assert any("linear_c.0.proj.lora_A" in n for n in trainable)
    assert all(p.grad is not None for n, p in peft.named_parameters() if p.requires_grad)


def test_one_image_is_a_batch_of_one():
    model = load(SEMSEG)
    x = golden(SEMSEG)["input.pixel_values"][:1]
    assert torch.equal(seg_logits(model, x[0]), seg_logits(model, x))


def test_the_auto_classes_pick_the_heads():
    seg = AutoModelForSemanticSegmentation.from_pretrained(FIX / "models" / SEMSEG)
    assert isinstance(seg, SegformerForSemanticSegmentation) and seg.config.id2label[2] == "circle"
    clf = AutoModelForImageClassification.from_pretrained(FIX / "models" / "segformer-tiny-imgcls")
    assert isinstance(clf, SegformerForImageClassification)
    assert isinstance(AutoModel.from_pretrained(FIX / "models" / "segformer-tiny-model"), SegformerModel)
    assert AutoConfig.from_pretrained(FIX / "models" / SEMSEG).model_type == "segformer"


def test_config_defaults_are_the_reference_b0_shape():
    cfg = SegformerConfig()
    assert (cfg.num_encoder_blocks, cfg.depths, cfg.hidden_sizes) == (4, [2, 2, 2, 2], [32, 64, 160, 256])
    assert (cfg.sr_ratios, cfg.patch_sizes, cfg.strides) == ([8, 4, 2, 1], [7, 3, 3, 3], [4, 2, 2, 2])
    assert (cfg.num_attention_heads, cfg.mlp_ratios, cfg.decoder_hidden_size) == ([1, 2, 5, 8], [4, 4, 4, 4], 256)
    assert cfg.semantic_loss_ignore_index == 255 and cfg.reshape_last_stage and cfg.drop_path_rate == 0.1
    assert cfg.classifier_dropout_prob == 0.1 and cfg.num_hidden_layers == 4
    assert min_image_size(cfg) == 29   # stage 1 at 1/4 must be >= its sr_ratio 8


@pytest.mark.parametrize("bad, words", [
    (dict(pixel_values=torch.zeros(2, 32, 32, 3)), "channels-last.*permute"),
    (dict(pixel_values=torch.zeros(2, 1, 32, 32)), "1 channels.*image processor"),
    (dict(pixel_values=torch.zeros(2, 3, 4, 32)), "4x32 is too small.*at least 5x5"),
    (dict(pixel_values=torch.zeros(2, 3, 32, 32, dtype=torch.uint8)), "float pixels"),
    (dict(pixel_values=torch.zeros(0, 3, 32, 32)), "shape"),
    (dict(pixel_values=[[0.0] * 32] * 32), "torch.Tensor"),
    (dict(pixel_values=torch.zeros(2, 3, 32, 32), labels=torch.zeros(3, 32, 32, dtype=torch.long)), "batch=2"),
    (dict(pixel_values=torch.zeros(2, 3, 32, 32), labels=torch.zeros(2, 32, 32)), "integer class ids"),
    (dict(pixel_values=torch.zeros(2, 3, 32, 32), labels=torch.full((2, 32, 32), 7)), r"\[7\] outside 0..2"),
    (dict(pixel_values=torch.zeros(2, 3, 32, 32), labels=[[0]]), "torch.Tensor"),
])
def test_bad_inputs_are_named_errors(bad, words):
    model = load(SEMSEG)
    with pytest.raises(InvalidInputError, match=words):
        model(**bad)


@pytest.mark.parametrize("bad, words", [
    (dict(hidden_sizes=[8]), "hidden_sizes has 1 entries"),
    (dict(depths=[1, 0]), "depths"),
    (dict(num_attention_heads=[3, 2]), "not a multiple"),
    (dict(hidden_act="nope"), "nope"),
    (dict(num_channels=0), "num_channels"),
    (dict(decoder_hidden_size=0), "decoder_hidden_size"),
    (dict(drop_path_rate=1.0), "drop_path_rate"),
    (dict(classifier_dropout_prob=1.5), "classifier_dropout_prob"),
])
def test_bad_configs_are_named_errors(bad, words):
    base = dict(num_encoder_blocks=2, depths=[1, 2], sr_ratios=[2, 1], hidden_sizes=[8, 16], patch_sizes=[7, 3],
                strides=[4, 2], num_attention_heads=[1, 2], mlp_ratios=[4, 4])
    with pytest.raises(ConfigError, match=words):
        SegformerConfig(**{**base, **bad})
