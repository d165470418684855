"""Parity with the reference library on tiny checkpoints it saved (goldens from
scripts/make_goldens.py), and save/load round trips."""

from __future__ import annotations

import json
from pathlib import Path

import pytest
import torch
from safetensors.torch import load_file

import pretrained
from pretrained import auto

FIX = Path(__file__).parent / "fixtures"
META = json.loads((FIX / "goldens" / "models.json").read_text())["models"]

AUTO_FOR = {
    "BertModel": "AutoModel",
    "GPT2Model": "AutoModel",
    "GPT2LMHeadModel": "AutoModelForCausalLM",
    "BertForMaskedLM": "AutoModelForMaskedLM",
    "BertForSequenceClassification": "AutoModelForSequenceClassification",
    "GPT2ForSequenceClassification": "AutoModelForSequenceClassification",
    "BertForTokenClassification": "AutoModelForTokenClassification",
    "BertForQuestionAnswering": "AutoModelForQuestionAnswering",
}


def golden(name: str) -> tuple[dict, dict, dict, dict]:
    g = load_file(str(FIX / "goldens" / f"{name}.safetensors"))
    pick = lambda p: {k[len(p):]: v for k, v in g.items() if k.startswith(p)}  # noqa: E731
    return pick("input."), pick("output."), pick("label."), pick("bf16.")


def load(name: str, **kw):
    cls = getattr(pretrained, AUTO_FOR[META[name]["class"]])
    return cls.from_pretrained(FIX / "models" / name, **kw)


def compare(out, expected: dict, tol: float) -> None:
    assert expected, "golden has no outputs"
    for key, want in expected.items():
        got = getattr(out, key).float()
        assert got.shape == want.shape, key
        # Padding positions included: they match the reference too (SDPA zeroes rows that
        # may attend to nothing, as the reference does).
        diff = (got - want).abs().max().item()
        assert diff <= tol, f"{key}: max abs diff {diff:.2e} > {tol}"


@pytest.mark.parametrize("name", sorted(META))
def test_unpadded_rows_equal_one_by_one(name):
    """A padded batch gives each sequence the same result as running it alone."""
    inputs, _, _, _ = golden(name)
    model = load(name)
    extra = {}
    if META[name]["arch"] == "gpt2":  # left padding: positions count real tokens only
        extra["position_ids"] = (inputs["attention_mask"].cumsum(-1) - 1).clamp(min=0)
    with torch.no_grad():
        batch = model(**inputs, **extra)
        for i in range(inputs["input_ids"].shape[0]):
            keep = inputs["attention_mask"][i].bool()
            one = {k: v[i:i + 1, keep] for k, v in inputs.items()}
            alone = model(**one)
            for field in ("logits", "last_hidden_state", "start_logits"):
                a = getattr(alone, field, None)
                if a is None:
                    continue
                b = getattr(batch, field)[i]
                if b.dim() >= 1 and b.shape[0] == keep.shape[0]:
                    b = b[keep]
                assert (a[0] - b).abs().max() <= 1e-4, (field, i)


@pytest.mark.parametrize("name", [n for n in sorted(META) if "loss" in META[n]])
def test_loss_equals_reference(name):
    inputs, _, labels, _ = golden(name)
    model = load(name)
    with torch.no_grad():
        loss = model(**inputs, **labels).loss
    assert abs(loss.item() - META[name]["loss"]) <= 1e-4


@pytest.mark.parametrize("name", ["bert-tiny-seqcls", "bert-small-mlm", "gpt2-small"])
def test_bfloat16_close_to_reference_bfloat16(name):
    inputs, expected, _, bf16 = golden(name)
    model = load(name, torch_dtype=torch.bfloat16)
    assert model.dtype == torch.bfloat16
    with torch.no_grad():
        out = model(**inputs)
    # bf16 has ~3 significant digits: compare to the reference's bf16 run and to float32.
    scale = max(v.abs().max().item() for v in expected.values())
    compare(out, bf16, 0.05 * scale)


@pytest.mark.parametrize("name", ["bert-tiny-mlm", "gpt2-small", "bert-tiny-tokcls"])
@pytest.mark.parametrize("safe", [True, False])
def test_save_load_round_trip_is_exact(name, safe, tmp_path):
    inputs, expected, _, _ = golden(name)
    model = load(name)
    model.save_pretrained(tmp_path, safe_serialization=safe, max_shard_size="40KB")
    back = getattr(pretrained, AUTO_FOR[META[name]["class"]]).from_pretrained(tmp_path)
    for (k, a), (k2, b) in zip(model.state_dict().items(), back.state_dict().items()):
        assert k == k2 and torch.equal(a, b), k
    saved = json.loads((tmp_path / "config.json").read_text())
    assert saved["architectures"] == [META[name]["class"]]
    assert saved["dtype"] == "float32"
    with torch.no_grad():
        compare(back(**inputs), expected, 1e-4)


def test_tied_weights_share_storage_and_are_saved_once(tmp_path):
    model = load("gpt2-tiny")
    assert model.lm_head.weight is model.transformer.wte.weight
    model.save_pretrained(tmp_path)
    from safetensors import safe_open

    keys = set(safe_open(str(tmp_path / "model.safetensors"), "pt").keys())
    assert "lm_head.weight" not in keys and "transformer.wte.weight" in keys
    mlm = load("bert-tiny-mlm")
    assert mlm.cls.predictions.decoder.weight is mlm.bert.embeddings.word_embeddings.weight
    assert mlm.cls.predictions.decoder.bias is mlm.cls.predictions.bias


def test_head_model_loads_from_base_checkpoint_and_reports_new_weights(caplog):
    with caplog.at_level("WARNING", logger="pretrained"):
        model, info = pretrained.AutoModelForSequenceClassification.from_pretrained(
            FIX / "models" / "bert-tiny", num_labels=2, output_loading_info=True)
    assert sorted(info["missing_keys"]) == ["classifier.bias", "classifier.weight"]
    assert info["unexpected_keys"] == []
    assert "classifier.weight" in caplog.text
    # The encoder weights came from the checkpoint: same hidden states as the bare model.
    inputs, expected, _, _ = golden("bert-tiny")
    with torch.no_grad():
        h = model.bert(**inputs).last_hidden_state
    assert (h - expected["last_hidden_state"]).abs().max() <= 1e-4
    assert model.classifier.weight.std() > 0  # initialised, not left empty


def test_base_model_loads_from_head_checkpoint():
    model, info = pretrained.AutoModel.from_pretrained(FIX / "models" / "bert-tiny-mlm",
                                                       output_loading_info=True)
    assert type(model).__name__ == "BertModel"
    assert all(k.startswith("cls.") for k in info["unexpected_keys"]) and info["unexpected_keys"]
    assert info["missing_keys"] == ["pooler.dense.weight", "pooler.dense.bias"]


def test_torch_dtype_auto_follows_checkpoint(tmp_path):
    model = load("bert-tiny").to(torch.bfloat16)
    model.save_pretrained(tmp_path)
    assert pretrained.AutoModel.from_pretrained(tmp_path).dtype == torch.bfloat16
    assert pretrained.AutoModel.from_pretrained(tmp_path, torch_dtype="auto").dtype == torch.bfloat16
    assert pretrained.AutoModel.from_pretrained(tmp_path, torch_dtype=torch.float32).dtype == torch.float32
    assert pretrained.AutoModel.from_pretrained(tmp_path, torch_dtype="float16").dtype == torch.float16


def test_outputs_index_like_tuples():
    inputs, _, labels, _ = golden("bert-tiny-seqcls")
    out = load("bert-tiny-seqcls")(**inputs, **labels)
    loss, logits = out[:2]
    assert loss is out.loss and logits is out["logits"] and len(out) == 2
    assert list(out.keys()) == ["loss", "logits"]


def test_auto_config_reads_typed_fields():
    cfg = pretrained.AutoConfig.from_pretrained(FIX / "models" / "bert-tiny-tokcls")
    assert type(cfg).__name__ == "BertConfig"
    assert cfg.hidden_size == 32 and cfg.num_labels == 5
    assert cfg.id2label[3] == "B-LOC" and cfg.label2id["B-LOC"] == 3
    gcfg = pretrained.AutoConfig.from_pretrained(FIX / "models" / "gpt2-small")
    assert gcfg.hidden_size == gcfg.n_embd == 48 and gcfg.num_hidden_layers == 3


def test_registry_lists_types():
    assert {"bert", "gpt2"} <= set(auto.supported_model_types())


def test_masked_lm_from_base_checkpoint_initialises_bare_bias():
    model, info = pretrained.AutoModelForMaskedLM.from_pretrained(FIX / "models" / "bert-tiny",
                                                                  output_loading_info=True)
    assert "cls.predictions.bias" in info["missing_keys"]
    assert torch.count_nonzero(model.cls.predictions.bias) == 0  # zero, not uninitialised memory


def test_outputs_have_the_mapping_views():
    from pretrained.outputs import CausalLMOutput

    logits = torch.zeros(1, 2, 3)
    out = CausalLMOutput(logits=logits)
    assert out.keys() == ["logits"] and out.values()[0] is logits
    assert out.items() == [("logits", logits)] and out.to_tuple() == (logits,)
    assert dict(out.items())["logits"] is logits
