"""The Audio Spectrogram Transformer ('audio-spectrogram-transformer') against the goldens
scripts/golden_ast.py recorded from the reference (tests/fixtures/goldens/ast/).

tester.py's and speech_tester.py's shared tests feed token ids or raw samples; AST takes fbank
frames (B, max_length, num_mel_bins), so its tests are written here: float32 parity on batched
inputs (every output and hidden state; with a token attention_mask too), the losses (single-label,
multi-label by problem_type and inferred, regression by problem_type and by num_labels=1), the
round trip (the reference reads our save: recorded), bfloat16, the backend seam, LoRA all-linear,
torch.compile, the audio-classification pipeline end to end, and what is AST's own: config
checks, input errors, initialisation.
"""

from __future__ import annotations

import copy
import json
import math
import pickle
from functools import lru_cache

import numpy as np
import pytest
import torch
from safetensors.torch import load_file
from tester import FIX, fixtures, load, names_for

from pretrained import AutoConfig, AutoModel, AutoModelForAudioClassification, pipeline
from pretrained.backends import plain
from pretrained.errors import ConfigError, InvalidInputError
from pretrained.models.audio_spectrogram_transformer import ASTConfig, ASTForAudioClassification, ASTModel
from pretrained.peft import LoraConfig, PeftModel, get_peft_model

AST = FIX / "goldens" / "ast"
NAMES = names_for("audio-spectrogram-transformer")
CLASSIFIER = "ast-tiny-audiocls"
TINY = dict(hidden_size=32, num_hidden_layers=2, num_attention_heads=4, intermediate_size=37,
            num_mel_bins=26, max_length=64)


@lru_cache(maxsize=None)
def index() -> dict:
    return json.loads((AST / "ast.json").read_text())


def meta(name: str) -> dict:
    return index()["models"][name]


def golden(name: str) -> dict[str, torch.Tensor]:
    return load_file(str(AST / f"{name}.safetensors"))


def recorded(g: dict, prefix: str) -> dict[str, torch.Tensor]:
    return {k[len(prefix):]: v for k, v in g.items() if k.startswith(prefix)}


def got_of(out, key: str) -> torch.Tensor:
    return out.hidden_states[int(key[7:])] if key.startswith("hidden.") else getattr(out, key)


def main_output(out) -> torch.Tensor:
    return out.logits if getattr(out, "logits", None) is not None else out.last_hidden_state


def example(rows: int, seed: int = 0) -> dict[str, torch.Tensor]:
    g = torch.Generator().manual_seed(rows + seed)
    return {"input_values": torch.randn(rows, 64, 26, generator=g)}


def run(model, batch: dict) -> torch.Tensor:
    with torch.no_grad():
        return main_output(model(**batch))


def test_the_fixtures_are_found():
    assert NAMES == sorted(index()["models"])
    assert {fixtures()[n]["class"] for n in NAMES} == {"ASTModel", "ASTForAudioClassification"}


# --- parity with the reference ------------------------------------------------------------------
@pytest.mark.parametrize("name", NAMES)
def test_float32_parity_with_the_reference(name):
    g = golden(name)
    model = load(name)
    assert type(model).__name__ == meta(name)["class"]
    assert model.dtype == torch.float32 and not model.training
    want = recorded(g, "output.")
    assert sum(k.startswith("hidden.") for k in want) == meta(name)["hidden_states"] == 3
    with torch.no_grad():
        out = model(input_values=g["input.input_values"], output_hidden_states=True)
    assert len(out.hidden_states) == 3
    for key, w in want.items():
        got = got_of(out, key)
        assert got.shape == w.shape, (key, got.shape, w.shape)
        assert (got - w).abs().max() <= 1e-4, key


@pytest.mark.parametrize("name", NAMES)
def test_a_token_attention_mask_matches_the_reference(name):
    g = golden(name)
    model = load(name)
    mask = g["input.token_mask"]
    assert not bool(mask.all())
    with torch.no_grad():
        out = model(input_values=g["input.input_values"], attention_mask=mask, output_hidden_states=True)
    for key, w in recorded(g, "masked.").items():
        assert (got_of(out, key) - w).abs().max() <= 1e-4, key
    key = "logits" if "output.logits" in g else "last_hidden_state"   # the mask changes the numbers
    assert (g[f"masked.{key}"] - g[f"output.{key}"])[1:].abs().max() > 1e-3


LOSSY = [(n, c) for n in NAMES for c in meta(n)["losses"]]


@pytest.mark.parametrize("name, case", LOSSY)
def test_losses_match_the_reference(name, case):
    spec = meta(name)["losses"][case]
    g = golden(name)
    model = load(name, **spec["config"])
    with torch.no_grad():
        loss = model(input_values=g["input.input_values"], labels=g[f"case.{case}.labels"]).loss
    assert model.config.problem_type == spec["problem_type"]
    want = spec["loss"]
    assert math.isfinite(want) and abs(loss.item() - want) <= 1e-4 * max(1.0, abs(want)), (loss.item(), want)


def test_every_loss_kind_is_covered():
    kinds = {spec["problem_type"] for n in NAMES for spec in meta(n)["losses"].values()}
    assert kinds == {"single_label_classification", "multi_label_classification", "regression"}
    assert meta("ast-tiny-regression")["losses"]["regression"]["config"] == {}   # num_labels=1


@pytest.mark.parametrize("name", NAMES)
def test_the_reference_reads_our_save(name):
    assert meta(name)["roundtrip_max_abs_diff"] <= 1e-4


def test_our_save_loads_back_bit_for_bit_under_the_reference_names(tmp_path):
    model = load(CLASSIFIER)
    model.save_pretrained(tmp_path)
    saved = load_file(str(tmp_path / "model.safetensors"))
    assert sorted(saved) == sorted(load_file(str(FIX / "models" / CLASSIFIER / "model.safetensors")))
    back = type(model).from_pretrained(tmp_path)
    assert model.state_dict().keys() == back.state_dict().keys()
    assert all(torch.equal(a, back.state_dict()[k]) for k, a in model.state_dict().items())
    assert back.config.id2label == model.config.id2label and back.config.num_mel_bins == 26


@pytest.mark.parametrize("name", NAMES)
def test_bfloat16_within_its_rounding(name):
    g = golden(name)
    model = load(name, torch_dtype=torch.bfloat16)
    assert model.dtype == torch.bfloat16
    with torch.no_grad():
        out = model(input_values=g["input.input_values"])   # float32 frames: cast by the model
    for key, ref_bf16 in recorded(g, "bf16.").items():
        want = g[f"output.{key}"]
        got = getattr(out, key).float()
        tolerance = 0.06 * want.abs().max().item() + 0.02
        assert (got - want).abs().max() <= tolerance, key
        assert (got - ref_bf16).abs().max() <= tolerance, key


# --- backends, adapters, copies, compile -------------------------------------------------------
def test_fast_paths_give_the_plain_modules_numbers():
    model = load(CLASSIFIER)
    kinds = {type(m).__name__ for m in model.modules()}
    assert "CpuLinear" in kinds and "Linear" not in kinds
    reference = copy.deepcopy(model)
    assert plain(reference) > 0
    assert "Linear" in {type(m).__name__ for m in reference.modules()}
    for rows in (1, 2, 1):   # the third call runs the sibling groups learnt in the first two
        batch = example(rows)
        assert (run(model, batch) - run(reference, batch)).abs().max() <= 1e-5


def test_lora_all_linear_trains_saves_reloads_and_merges(tmp_path):
    torch.manual_seed(0)
    model = load(CLASSIFIER)
    peft = get_peft_model(model, LoraConfig(r=4, lora_alpha=8, target_modules="all-linear"))
    peft.train()
    peft(**example(2), labels=torch.tensor([1, 0])).loss.backward()
    trainable = [p for p in peft.parameters() if p.requires_grad]
    assert len(trainable) >= 2 * 2 * 6 and all(p.grad is not None for p in trainable)
    with torch.no_grad():
        for p in trainable:
            p.add_(torch.randn_like(p) * 0.05)   # a non-zero adapter: skipping it would show
    peft.eval()
    base = run(load(CLASSIFIER), example(2))
    for rows in (1, 2):
        batch = example(rows)
        got = run(peft, batch)
        reference = copy.deepcopy(peft)
        plain(reference)
        assert (got - run(reference, batch)).abs().max() <= 1e-5
    assert (got - base).abs().max() > 1e-3
    peft.save_pretrained(tmp_path / "adapter")
    again = PeftModel.from_pretrained(load(CLASSIFIER), tmp_path / "adapter")
    assert (run(again, batch) - got).abs().max() <= 1e-5
    merged = again.merge_and_unload()
    assert (run(merged, batch) - got).abs().max() <= 1e-4


def test_copies_pickling_and_a_dtype_round_trip():
    model = load(CLASSIFIER)
    batch = example(2)
    want = run(model, batch)
    for twin in (copy.deepcopy(model), pickle.loads(pickle.dumps(model))):
        assert (run(twin, batch) - want).abs().max() <= 1e-6
    model.to(torch.bfloat16).to(torch.float32)   # weights rounded to bfloat16 once
    assert model.dtype == torch.float32
    assert (run(model, batch) - want).abs().max() <= 1e-2 * want.abs().max() + 1e-2


def test_torch_compile_gives_the_same_outputs():
    torch._dynamo.reset()
    model = load(CLASSIFIER)
    batch = example(2)
    want = run(model, batch)
    assert (run(torch.compile(model), batch) - want).abs().max() <= 1e-5


def test_training_a_step_moves_every_weight():
    torch.manual_seed(0)
    model = load(CLASSIFIER)
    model.train()
    model(**example(2), labels=torch.tensor([4, 0])).loss.backward()
    missing = [n for n, p in model.named_parameters() if p.grad is None or not bool(p.grad.abs().sum() > 0)]
    assert not missing


# --- the pipeline, end to end -------------------------------------------------------------------
def signal(seconds: float, seed: int, rate: int = 16000) -> np.ndarray:
    """scripts/golden_ast.py's signal: a tone and a little noise from a fixed seed."""
    rng = np.random.default_rng(seed)
    t = np.arange(int(seconds * rate)) / rate
    return (0.3 * np.sin(2 * np.pi * (300 + 70 * seed) * t) + 0.05 * rng.standard_normal(t.size)).astype(np.float32)


@pytest.mark.parametrize("case", sorted(index()["pipeline"]["cases"]))
def test_the_audio_classification_pipeline_gives_the_reference_labels_and_scores(case):
    want = index()["pipeline"]["cases"][case]
    clf = pipeline("audio-classification", model=str(FIX / "models" / index()["pipeline"]["model"]))
    assert type(clf.model) is ASTForAudioClassification
    assert type(clf.feature_extractor).__name__ == index()["pipeline"]["feature_extractor"]
    got = clf({"raw": signal(want["seconds"], want["seed"]), "sampling_rate": 16000}, **want["kwargs"])
    assert want["min_score_gap"] > 1e-3   # an order rounding could not flip
    assert [r["label"] for r in got] == [r["label"] for r in want["output"]]
    for g, w in zip(got, want["output"]):
        assert abs(g["score"] - w["score"]) <= 1e-4, (g, w)


def test_the_feature_extractor_of_the_fixture_feeds_the_model():
    from pretrained.processing import AutoFeatureExtractor

    folder = FIX / "models" / CLASSIFIER
    fe = AutoFeatureExtractor.from_pretrained(folder)
    feats = fe([signal(0.3, 1), signal(1.2, 2)], sampling_rate=16000, return_tensors="pt")
    assert feats.input_values.shape == (2, 64, 26)
    model = AutoModelForAudioClassification.from_pretrained(folder)
    with torch.no_grad():
        assert model(**feats).logits.shape == (2, 5)


# --- AST's own -----------------------------------------------------------------------------------
def test_config_defaults_are_the_reference_audioset_shape():
    cfg = ASTConfig()
    assert (cfg.hidden_size, cfg.num_hidden_layers, cfg.num_attention_heads, cfg.intermediate_size) == \
        (768, 12, 12, 3072)
    assert (cfg.patch_size, cfg.frequency_stride, cfg.time_stride, cfg.max_length, cfg.num_mel_bins) == \
        (16, 10, 10, 1024, 128)
    assert cfg.layer_norm_eps == 1e-12 and cfg.qkv_bias is True and cfg.hidden_act == "gelu"
    assert cfg.hidden_dropout_prob == 0.0 and cfg.attention_probs_dropout_prob == 0.0
    assert cfg.patch_grid == (12, 101) and cfg.num_patches == 1212   # AudioSet: 1214 positions
    assert ASTConfig(patch_size=[16, 16]).patch_size == 16


@pytest.mark.parametrize("bad, words", [
    (dict(num_attention_heads=5), "multiple of num_attention_heads"),
    (dict(hidden_act="nope"), "nope"),
    (dict(num_mel_bins=8), "no patch fits along frequency"),
    (dict(max_length=10), "no patch fits along time"),
    (dict(time_stride=0), "time_stride must be > 0"),
    (dict(frequency_stride=-1), "frequency_stride must be > 0"),
    (dict(hidden_dropout_prob=1.5), "hidden_dropout_prob"),
    (dict(max_length=10**7, num_mel_bins=10**4, patch_size=1, frequency_stride=1, time_stride=1),
     "more than this library takes"),
    (dict(patch_size=[16, 8]), "patch_size"),
    (dict(layer_norm_eps=0.0), "layer_norm_eps"),
])
def test_bad_configs_are_named_errors(bad, words):
    with pytest.raises(ConfigError, match=words):
        ASTConfig(**{**TINY, **bad})


@pytest.mark.parametrize("bad, words", [
    (dict(input_values=torch.zeros(2, 26, 64)), "transposed"),
    (dict(input_values=torch.zeros(2, 60, 26)), r"shape \(2, 60, 26\).*ASTFeatureExtractor"),
    (dict(input_values=torch.zeros(2, 16000)), "raw audio"),
    (dict(input_values=torch.zeros(2, 64, 26, dtype=torch.long)), "float frames"),
    (dict(input_values=torch.zeros(0, 64, 26)), "shape"),
    (dict(input_values=[[0.0] * 26] * 64), "torch.Tensor"),
    (dict(input_values=torch.zeros(2, 64, 26), attention_mask=torch.ones(2, 64)), r"\(2, 12\)"),
])
def test_bad_inputs_are_named_errors(bad, words):
    model = load(CLASSIFIER)
    with pytest.raises(InvalidInputError, match=words):
        model(**bad)


def test_one_spectrogram_is_a_batch_of_one():
    model = load(CLASSIFIER)
    x = example(1)["input_values"]
    assert torch.equal(run(model, {"input_values": x[0]}), run(model, {"input_values": x}))


def test_auto_classes_pick_the_heads():
    clf = AutoModelForAudioClassification.from_pretrained(FIX / "models" / CLASSIFIER)
    assert type(clf) is ASTForAudioClassification and clf.config.id2label[3] == "speech"
    assert type(AutoModel.from_pretrained(FIX / "models" / "ast-tiny-model")) is ASTModel
    cfg = AutoConfig.from_pretrained(FIX / "models" / "ast-strided-model")
    assert type(cfg) is ASTConfig and cfg.patch_grid == (4, 5) and cfg.qkv_bias is False


def test_the_head_reads_the_backbone_under_the_checkpoint_names():
    names = dict(load(CLASSIFIER).named_parameters())
    for key in ("audio_spectrogram_transformer.embeddings.patch_embeddings.projection.weight",
                "audio_spectrogram_transformer.embeddings.distillation_token",
                "audio_spectrogram_transformer.encoder.layer.1.attention.attention.query.weight",
                "audio_spectrogram_transformer.encoder.layer.0.attention.output.dense.bias",
                "audio_spectrogram_transformer.encoder.layer.0.intermediate.dense.weight",
                "audio_spectrogram_transformer.encoder.layer.0.layernorm_before.weight",
                "classifier.layernorm.weight", "classifier.dense.bias"):
        assert key in names, key
    assert "audio_spectrogram_transformer.encoder.layer.0.attention.attention.key.bias" not in \
        dict(load("ast-strided-audiocls").named_parameters())   # qkv_bias=False


def test_from_config_initialises_like_the_reference():
    torch.manual_seed(0)
    model = ASTForAudioClassification.from_config(ASTConfig(**TINY, num_labels=4, initializer_range=0.05))
    emb = model.audio_spectrogram_transformer.embeddings
    for p in (emb.cls_token, emb.distillation_token, emb.position_embeddings):
        assert not bool(p.any())
    conv = emb.patch_embeddings.projection
    assert abs(conv.weight.std().item() - 0.05) < 0.01 and not bool(conv.bias.any())
    assert bool((model.classifier.layernorm.weight == 1).all())
    assert emb.position_embeddings.shape == (1, 12, 32)


def test_hidden_states_only_when_asked():
    model = load(CLASSIFIER)
    assert model(**example(2)).hidden_states is None
    out = model(**example(2), output_hidden_states=True)
    assert len(out.hidden_states) == 3 and out.hidden_states[0].shape == (2, 12, 32)


def test_dropout_runs_only_in_training():
    cfg = ASTConfig(**TINY, hidden_dropout_prob=0.3, attention_probs_dropout_prob=0.3)
    torch.manual_seed(0)
    model = ASTModel.from_config(cfg)
    batch = example(2)
    model.eval()
    assert torch.equal(run(model, batch), run(model, batch))
    model.train()
    assert (run(model, batch) - run(model, batch)).abs().max() > 1e-3
