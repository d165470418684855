"""ConvNeXt V2 ('convnextv2') against the goldens scripts/golden_convnext.py recorded from the
reference: ConvNeXt's tests (test_convnext.convnext_tests: parity at two sizes, losses, round trip,
bfloat16, backend seam, LoRA, torch.compile, stochastic depth, pixel and config errors) on V2's
fixtures, and what is V2's own: GRN in every block, no layer scale."""

from __future__ import annotations

from test_convnext import convnext_tests
from tester import load

from pretrained.models.convnextv2 import ConvNextV2Config, ConvNextV2ForImageClassification, ConvNextV2Model

globals().update(convnext_tests("convnextv2", "convnextv2-tiny-imgcls"))


def test_config_defaults_are_the_reference_tiny_shape():
    cfg = ConvNextV2Config()
    assert (cfg.num_stages, cfg.hidden_sizes, cfg.depths) == (4, [96, 192, 384, 768], [3, 3, 9, 3])
    assert (cfg.patch_size, cfg.image_size, cfg.layer_norm_eps, cfg.hidden_act) == (4, 224, 1e-12, "gelu")


def test_the_checkpoint_names():
    names = dict(load("convnextv2-tiny-imgcls").named_parameters())
    for key in ("convnextv2.embeddings.patch_embeddings.weight", "convnextv2.encoder.stages.1.layers.1.grn.weight",
                "convnextv2.encoder.stages.0.layers.0.grn.bias", "convnextv2.encoder.stages.1.layers.0.pwconv1.weight",
                "convnextv2.encoder.stages.1.downsampling_layer.1.weight", "convnextv2.layernorm.weight",
                "classifier.weight"):
        assert key in names, key
    assert not any("layer_scale" in k for k in names)
    assert names["convnextv2.encoder.stages.0.layers.0.grn.weight"].shape == (1, 1, 1, 32)
    assert isinstance(load("convnextv2-tiny-model"), ConvNextV2Model)
    assert isinstance(load("convnextv2-tiny-imgcls"), ConvNextV2ForImageClassification)
