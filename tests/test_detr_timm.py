"""DETR with a timm ResNet backbone (``use_timm_backbone=True``, the facebook/detr-* layout; our
own timm-layout ResNet in pretrained/models/timm_resnet.py) against the goldens
scripts/golden_detr_timm.py recorded from the reference with timm (tests/fixtures/goldens/detr_timm/).

No weights are committed: each fixture folder holds the configs and a recipe (weights.json), and
:func:`folder` makes the checkpoint from it (tests/models/seeded_weights.py; the same tensors the
reference was given, fingerprint checked). Checked: float32 parity (outputs, hidden states, each
backbone map's channel means) on a padded batch and on unmasked pixels of another size, for
resnet18, resnet18 DC5 (dilation, learned positions, 2 decoder layers), a 1-channel resnet18,
resnet50 DC5 and a segmentation head; the hub's legacy config.json form (backbone="resnet18",
use_timm_backbone, use_pretrained_backbone, no backbone_config); the layouts of resnet18..152 with
and without dilation (key names, shapes, strides, dilations, channels) as the reference builds
them; the reference's initial freeze; the round trip; bfloat16; the backend seam, LoRA and
torch.compile (the shared image-model tests); the object-detection pipeline on the bundled pictures;
named errors for what is not implemented.
"""

from __future__ import annotations

import json
import logging
import sys
import tempfile
from functools import lru_cache
from pathlib import Path

import pytest
import torch

# the shared helpers of tests/models (this file sits outside it: timm_backbone is no model type
# of its own, and tests/models holds one test file per model type)
sys.path.insert(0, str(Path(__file__).parent / "models"))

from image_tester import Goldens, image_model_tests, recorded  # noqa: E402
from seeded_weights import materialize, recipe_state_dict, seeded_tensor  # noqa: E402
from tester import FIX  # noqa: E402

from pretrained import AutoModel, AutoModelForObjectDetection, pipeline  # noqa: E402
from pretrained.errors import ConfigError, UnsupportedOptionError  # noqa: E402
from pretrained.layers.backbone import FrozenBatchNorm2d  # noqa: E402
from pretrained.models.detr import DetrConfig, DetrForSegmentation, DetrModel  # noqa: E402
from pretrained.models.timm_resnet import ARCHITECTURES, TimmBackboneConfig, TimmResNetBackbone  # noqa: E402

GOLDENS = Goldens("detr_timm")
NAMES = sorted(GOLDENS.index()["models"])
DETECTOR = "detr-timm-r18-det"
LAYOUTS = GOLDENS.index()["layouts"]
_TMP = tempfile.TemporaryDirectory(prefix="detr-timm-")
TINY = dict(use_timm_backbone=True, d_model=16, encoder_layers=1, decoder_layers=1, encoder_attention_heads=2,
            decoder_attention_heads=2, encoder_ffn_dim=24, decoder_ffn_dim=24, num_queries=6)


@lru_cache(maxsize=None)
def folder(name: str) -> Path:
    """The fixture as a loadable checkpoint folder (weights made from its recipe)."""
    return materialize(FIX / "models" / name, Path(_TMP.name) / name)


def load(name: str, **kw) -> torch.nn.Module:
    from pretrained import auto

    cls = next(c for c in auto.model_module("detr").MODEL_CLASSES.values()
               if c.__name__ == GOLDENS.meta(name)["class"])
    return cls.from_pretrained(folder(name), strict=True, **kw).eval()


def seeded_inputs(name: str, channels: int) -> tuple[dict, torch.Tensor]:
    seed = GOLDENS.meta(name)["seed"]
    x = seeded_tensor(seed, "pixel_values", [2, channels, 64, 64])
    mask = torch.ones(2, 64, 64, dtype=torch.long)
    mask[1, 48:] = 0
    mask[1, :, 40:] = 0
    x[1] *= mask[1]
    return {"pixel_values": x, "pixel_mask": mask}, seeded_tensor(seed, "pixel_values_other", [2, channels, 64, 96])


def got_of(model, out, batch: dict, key: str) -> torch.Tensor:
    if key.startswith("enc."):
        return out.encoder_hidden_states[int(key[4:])]
    if key.startswith("dec."):
        return out.decoder_hidden_states[int(key[4:])]
    if key.startswith("feature."):
        maps = model._conv_encoder().model(batch["pixel_values"]).feature_maps
        return maps[int(key.split(".")[1])].mean(dim=(2, 3))
    return getattr(out, key)


def test_the_fixtures_are_recipes_not_weights():
    assert len(NAMES) == 5
    for name in NAMES:
        files = sorted(p.name for p in (FIX / "models" / name).iterdir())
        assert files == ["config.json", "preprocessor_config.json", "weights.json"], files
    recipe = json.loads((FIX / "models" / DETECTOR / "weights.json").read_text())
    state = recipe_state_dict(recipe)
    assert "model.backbone.conv_encoder.model.layer4.1.conv2.weight" in state
    assert sum(t.numel() for t in state.values()) > 11_000_000   # a real resnet18


@pytest.mark.parametrize("name", NAMES)
@pytest.mark.parametrize("tag", ["output", "other"])
def test_float32_parity_with_the_reference(name, tag):
    g = GOLDENS.golden(name)
    model = load(name)
    meta = GOLDENS.meta(name)
    assert type(model).__name__ == meta["class"]
    masked, other = seeded_inputs(name, model.config.num_channels)
    batch = masked if tag == "output" else {"pixel_values": other}
    want = recorded(g, f"{tag}.")
    assert sum(k.startswith("feature.") for k in want) == 4 and sum(k.startswith("enc.") for k in want) >= 2
    with torch.no_grad():
        out = model(**batch, output_hidden_states=True)
        for key, w in want.items():
            got = got_of(model, out, batch, key)
            assert got.shape == w.shape, (key, got.shape, w.shape)
            # the backbone's maps reach ~10 (random full-width ResNets): 1e-4 relative there
            tolerance = 1e-4 * max(1.0, w.abs().max().item()) if key.startswith("feature.") else 1e-4
            assert (got - w).abs().max() <= tolerance, (key, (got - w).abs().max())


def test_the_legacy_hub_config_gives_the_references_backbone_config():
    for name in NAMES:
        meta = GOLDENS.meta(name)
        config = json.loads((FIX / "models" / name / "config.json").read_text())
        assert ("backbone_config" not in config) == meta["legacy_config"]
        ours = load(name).config
        want = {k: meta["backbone_config"][k] for k in ("backbone", "num_channels", "out_indices", "output_stride",
                                                        "features_only")}
        assert {k: ours.backbone_config.get(k) for k in want} == want, name
        assert ours.backbone().out_features == meta["backbone_config"]["out_features"]


def test_hub_configs_of_transformers_4_with_backbone_kwargs():
    plain = DetrConfig(**TINY, backbone="resnet50", dilation=True)
    four = DetrConfig(**TINY, backbone="resnet50", dilation=True,
                      backbone_kwargs={"in_chans": 3, "out_indices": [1, 2, 3, 4], "output_stride": 16})
    assert plain.backbone_config == four.backbone_config
    assert plain.backbone_config["output_stride"] == 16 and plain.backbone_config["backbone"] == "resnet50"
    assert DetrConfig(**TINY).backbone_config["backbone"] == "resnet50"   # the reference's default
    saved = plain.to_dict()
    assert "backbone" not in saved and "backbone_kwargs" not in saved and saved["dilation"] is True
    assert DetrConfig.from_dict(saved).backbone_config == plain.backbone_config


@pytest.mark.parametrize("layout", sorted(LAYOUTS))
def test_the_layouts_are_the_references(layout):
    spec = LAYOUTS[layout]
    config = DetrConfig(**TINY, backbone=spec["backbone"], dilation=spec["dilation"])
    with torch.device("meta"):
        model = DetrModel(config)
    encoder = model.backbone.conv_encoder
    assert encoder.channels == spec["channels"]
    shapes = {k: list(v.shape) for k, v in encoder.model.state_dict().items()}
    assert shapes == spec["shapes"]
    convs = {k: m for k, m in encoder.model.named_modules() if isinstance(m, torch.nn.Conv2d)}
    assert {k: list(m.dilation) for k, m in convs.items() if m.dilation != (1, 1)} == spec["dilations"]
    assert {k: list(m.stride) for k, m in convs.items() if m.stride != (1, 1)} == spec["strides"]
    assert all(m.padding == tuple(d * (m.kernel_size[0] // 2) for d in m.dilation) for m in convs.values())
    assert not any(isinstance(m, torch.nn.BatchNorm2d) for m in encoder.modules())
    assert any(isinstance(m, FrozenBatchNorm2d) for m in encoder.modules())


def test_the_backbone_freeze_is_the_references():
    for name in NAMES:
        meta = GOLDENS.meta(name)
        backbone = load(name)._conv_encoder().model
        assert sorted(n for n, p in backbone.named_parameters() if p.requires_grad) == meta["trainable_backbone"]
        assert sorted(n for n, p in backbone.named_parameters() if not p.requires_grad) == meta["frozen_backbone"]
    model = load(DETECTOR)
    model.freeze_backbone()
    assert not any(p.requires_grad for p in model._conv_encoder().model.parameters())


def test_a_training_step_reaches_the_backbone():
    model = load(DETECTOR)
    model.train()
    labels = [{"class_labels": torch.tensor([1]), "boxes": torch.tensor([[0.5, 0.5, 0.3, 0.4]])},
              {"class_labels": torch.tensor([0, 2]), "boxes": torch.tensor([[0.3, 0.3, 0.2, 0.2], [0.6, 0.7, 0.3, 0.2]])}]
    out = model(**seeded_inputs(DETECTOR, 3)[0], labels=labels)
    out.loss.backward()
    backbone = model._conv_encoder().model
    assert backbone.conv1.weight.grad is not None and backbone.layer4[1].conv2.weight.grad.abs().sum() > 0
    assert backbone.bn1.running_mean.grad is None   # frozen batch norms: buffers


def test_the_segmentation_head_reads_the_four_maps():
    model = load("detr-timm-r18-seg")
    assert isinstance(model, DetrForSegmentation)
    assert model.mask_head.adapter1.in_channels == 256 and model.mask_head.adapter3.in_channels == 64
    masked, _ = seeded_inputs("detr-timm-r18-seg", 3)
    with torch.no_grad():
        out = model(**masked)
    assert out.pred_masks.shape == (2, 6, 16, 16)   # the stride-4 map (layer1)


def test_bfloat16_within_its_rounding():
    for name in ("detr-timm-r18-det", "detr-timm-r18-seg"):
        g = GOLDENS.golden(name)
        model = load(name, torch_dtype=torch.bfloat16)
        masked, _ = seeded_inputs(name, 3)
        with torch.no_grad():
            out = model(**masked)
        ref = recorded(g, "bf16.")
        assert ref
        for key, ref_bf16 in ref.items():
            want, got = g[f"output.{key}"], getattr(out, key).float()
            scale = want.abs().max().item()
            assert (got - want).abs().max() <= 0.1 * scale + 0.02, (name, key)
            assert (got - ref_bf16).abs().max() <= 0.05 * scale + 0.02, (name, key)


def test_the_object_detection_pipeline_equals_the_references():
    spec = GOLDENS.meta(DETECTOR)["pipeline"]
    pipe = pipeline("object-detection", model=str(folder(DETECTOR)))
    paths = [str(FIX / "images" / f) for f in spec["images"]]
    found = 0
    thresholds = [k for k in spec if k != "images"]
    assert len(thresholds) == 2
    for threshold in thresholds:
        for path, want in zip(paths, spec[threshold]):
            got = pipe(path, threshold=float(threshold))
            assert [d["label"] for d in got] == [d["label"] for d in want], (path, threshold)
            for a, b in zip(got, want):
                assert abs(a["score"] - b["score"]) <= 1e-4
                assert all(abs(a["box"][k] - b["box"][k]) <= 1 for k in b["box"])
            found += len(want)
    assert found >= 5


def test_the_auto_classes():
    assert isinstance(AutoModelForObjectDetection.from_pretrained(folder(DETECTOR)).model.backbone.conv_encoder.model,
                      TimmResNetBackbone)
    assert isinstance(AutoModel.from_pretrained(folder("detr-timm-r50-dc5-model")), DetrModel)


def test_a_config_asking_for_pretrained_backbone_weights_warns_that_they_are_random(caplog):
    config = DetrConfig(**TINY, backbone="resnet18", use_pretrained_backbone=True)
    with caplog.at_level(logging.WARNING, logger="pretrained"):
        type(load(DETECTOR)).from_pretrained(folder("detr-timm-r18-dc5-det"))   # a checkpoint: no warning
    assert "random" not in caplog.text
    with caplog.at_level(logging.WARNING, logger="pretrained"):
        DetrModel.from_config(config)
    assert "weights are random" in caplog.text and "use_pretrained_backbone" in caplog.text


@pytest.mark.parametrize("bad, words", [
    (dict(backbone="resnet50d"), "resnet18, resnet26, resnet34, resnet50, resnet101, resnet152"),
    (dict(backbone="efficientnet_b0"), "not implemented here"),
    (dict(backbone="resnet50", backbone_kwargs={"drop_path_rate": 0.1}), "drop_path_rate"),
    (dict(use_timm_backbone=False, dilation=True,
          backbone_config={"model_type": "resnet", "out_features": ["stage4"]}), "dilation"),
])
def test_what_is_not_implemented_is_a_named_error(bad, words):
    with pytest.raises(UnsupportedOptionError, match=words):
        DetrConfig(**{**TINY, **bad})


def test_the_timm_backbone_alone():
    assert sorted(ARCHITECTURES) == ["resnet101", "resnet152", "resnet18", "resnet26", "resnet34", "resnet50"]
    cfg = TimmBackboneConfig(backbone="resnet18.a1_in1k", out_indices=[0, 2])
    assert cfg.out_features == ["act1", "layer2"]
    bb = TimmResNetBackbone.from_config(cfg).eval()
    maps = bb(torch.randn(1, 3, 64, 64), output_hidden_states=True)
    assert [tuple(m.shape) for m in maps.feature_maps] == [(1, 64, 32, 32), (1, 128, 8, 8)]
    assert len(maps.hidden_states) == 5 and bb.channels == [64, 128]
    eight = TimmResNetBackbone.from_config(TimmBackboneConfig(backbone="resnet18", output_stride=8)).eval()
    assert eight(torch.randn(1, 3, 64, 64)).feature_maps[-1].shape == (1, 512, 8, 8)
    with pytest.raises(UnsupportedOptionError, match="features_only"):
        TimmBackboneConfig(backbone="resnet18", features_only=False)


def _shared_load(name: str, **kw) -> torch.nn.Module:
    return load(name, **kw)


_shared = image_model_tests(GOLDENS, ["detr-timm-r18-det", "detr-timm-r18-seg"], DETECTOR, min_trainable=2 * (6 + 10),
                            labels=[{"class_labels": torch.tensor([1]), "boxes": torch.tensor([[0.5, 0.5, 0.3, 0.4]])},
                                    {"class_labels": torch.tensor([0]), "boxes": torch.tensor([[0.4, 0.4, 0.2, 0.2]])}],
                            load_fn=_shared_load, folder_fn=folder)
globals().update({k: v for k, v in _shared.items() if k != "test_bfloat16_within_its_rounding"})


def test_a_segmenter_on_fewer_timm_maps_is_a_named_error():
    config = DetrConfig(**{**TINY, "encoder_attention_heads": 8},
                        backbone_config={"model_type": "timm_backbone", "backbone": "resnet18", "out_indices": [3, 4]})
    with pytest.raises(ConfigError, match=r"out_indices \[1, 2, 3, 4\]"):
        DetrForSegmentation(config)
