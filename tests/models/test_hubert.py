"""HuBERT ('hubert'): the speech tests (speech_tester.py) on its fixtures, and its own switches."""

import torch
from speech_tester import example, speech_model_tests
from tester import load

from pretrained.models.hubert import HubertConfig, HubertForCTC

globals().update(speech_model_tests("hubert"))


def test_config_defaults_are_the_reference_base_shape():
    cfg = HubertConfig()
    assert cfg.feat_proj_layer_norm and not cfg.conv_pos_batch_norm
    assert cfg.inputs_to_logits_ratio == 320 and cfg.conv_kernel == [10, 3, 3, 3, 3, 2, 2]
    assert "codevector_dim" not in cfg.to_dict()


def test_the_bare_model_reports_no_extract_features():
    out = load("hubert-tiny-model")(**example(1))
    assert "extract_features" not in out.keys()


def test_batch_normed_positions_and_no_projection_norm():
    model = load("hubert-bn-ctc")
    pos = model.hubert.encoder.pos_conv_embed
    assert isinstance(pos.batch_norm, torch.nn.BatchNorm1d) and type(pos.conv) is torch.nn.Conv1d
    assert not hasattr(model.hubert.feature_projection, "layer_norm")
    assert pos.batch_norm.running_var.min() > 0.5   # the checkpoint's statistics, not the init's


def test_freeze_feature_encoder():
    model = load("hubert-tiny-ctc")
    model.freeze_feature_encoder()
    assert not any(p.requires_grad for p in model.hubert.feature_extractor.parameters())
    assert isinstance(model, HubertForCTC)
