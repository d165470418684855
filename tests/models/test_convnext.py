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

import copy
import json
import math
from functools import lru_cache

import pytest
import torch
from safetensors.torch import load_file
from tester import FIX, fixtures, load, names_for

from pretrained import AutoConfig, AutoModel, AutoModelForImageClassification
from pretrained.backends import plain
from pretrained.errors import ConfigError, InvalidInputError
from pretrained.models.convnext import ConvNextConfig, ConvNextForImageClassification, ConvNextModel
from pretrained.peft import LoraConfig, PeftModel, get_peft_model

GOLD = FIX / "goldens" / "convnext"


@lru_cache(maxsize=None)
def index() -> dict:
    return json.loads((GOLD / "convnext.json").read_text())


def meta(name: str) -> dict:
    return index()["models"][name]


def golden(name: str) -> dict[str, torch.Tensor]:
    return load_file(str(GOLD / f"{name}.safetensors"))


def recorded(g: dict, prefix: str) -> dict[str, torch.Tensor]:
    return {k[len(prefix):]: v for k, v in g.items() if k.startswith(prefix)}


def got_of(out, key: str) -> torch.Tensor:
    return out.hidden_states[int(key[7:])] if key.startswith("hidden.") else getattr(out, key)


def example(rows: int, seed: int = 0, channels: int = 3, size=(32, 32)) -> dict[str, torch.Tensor]:
    g = torch.Generator().manual_seed(rows + seed)
    return {"pixel_values": torch.randn(rows, channels, *size, generator=g)}


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

    @pytest.mark.parametrize("name", names)
    def test_the_reference_reads_our_save(name):
        assert meta(name)["roundtrip_max_abs_diff"] <= 1e-4
        assert fixtures()[name]["roundtrip"] == meta(name)["roundtrip_max_abs_diff"]

    @pytest.mark.parametrize("name", names)
    def test_our_save_loads_back_bit_for_bit_under_the_reference_names(name, tmp_path):
        model = load(name)
        model.save_pretrained(tmp_path)
        saved = load_file(str(tmp_path / "model.safetensors"))
        assert sorted(saved) == sorted(load_file(str(FIX / "models" / name / "model.safetensors")))
        back = type(model).from_pretrained(tmp_path)
        assert all(torch.equal(a, back.state_dict()[k]) for k, a in model.state_dict().items())
        assert back.config.id2label == model.config.id2label

    @pytest.mark.parametrize("name", names)
    def test_bfloat16_within_its_rounding(name):
        g = golden(name)
        model = load(name, torch_dtype=torch.bfloat16)
        assert model.dtype == torch.bfloat16
        with torch.no_grad():
            out = model(pixel_values=g["input.pixel_values"])   # float32 pixels: cast by the model
        ref = recorded(g, "bf16.")
        assert ref
        for key, ref_bf16 in ref.items():
            want = g[f"output.{key}"]
            got = getattr(out, key).float()
            tolerance = 0.06 * want.abs().max().item() + 0.02
            assert (got - want).abs().max() <= tolerance, key
            assert (got - ref_bf16).abs().max() <= tolerance, key

    def test_fast_paths_give_the_plain_modules_numbers():
        model = load(classifier)
        kinds = {type(m).__name__ for m in model.modules()}
        assert "CpuLinear" in kinds and "Linear" not in kinds
        reference = copy.deepcopy(model)
        assert plain(reference) > 0
        assert "Linear" in {type(m).__name__ for m in reference.modules()}
        for rows in (1, 2, 1):
            batch = example(rows)
            assert (run(model, batch) - run(reference, batch)).abs().max() <= 1e-5

    def test_lora_all_linear_trains_saves_reloads_and_merges(tmp_path):
        torch.manual_seed(0)
        model = load(classifier)
        peft = get_peft_model(model, LoraConfig(r=4, lora_alpha=8, target_modules="all-linear"))
        peft.train()
        peft(**example(2), labels=torch.tensor([1, 0])).loss.backward()
        trainable = [p for p in peft.parameters() if p.requires_grad]
        assert len(trainable) >= 2 * 2 * 3 and all(p.grad is not None for p in trainable)   # 3 blocks x 2
        with torch.no_grad():
            for p in trainable:
                p.add_(torch.randn_like(p) * 0.05)   # a non-zero adapter: skipping it would show
        peft.eval()
        base = run(load(classifier), example(2))
        for rows in (1, 2):
            batch = example(rows)
            got = run(peft, batch)
            reference = copy.deepcopy(peft)
            plain(reference)
            assert (got - run(reference, batch)).abs().max() <= 1e-5
        assert (got - base).abs().max() > 1e-3
        peft.save_pretrained(tmp_path / "adapter")
        again = PeftModel.from_pretrained(load(classifier), tmp_path / "adapter")
        assert (run(again, batch) - got).abs().max() <= 1e-5
        merged = again.merge_and_unload()
        assert (run(merged, batch) - got).abs().max() <= 1e-4

    def test_torch_compile_gives_the_same_outputs():
        torch._dynamo.reset()
        model = load(classifier)
        batch = example(2)
        want = run(model, batch)
        assert (run(torch.compile(model), batch) - want).abs().max() <= 1e-5

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

    return {k: v for k, v in locals().items() if k.startswith("test_")}


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
