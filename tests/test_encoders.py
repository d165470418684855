"""DistilBERT, RoBERTa, XLM-RoBERTa, ELECTRA and DeBERTa-v2: parity with the reference on tiny
checkpoints it saved (goldens from scripts/golden_encoders.py), losses for every problem_type,
padding, save/load round trips, base <-> head loading, and config errors."""

from __future__ import annotations

import json
from pathlib import Path

import pytest
import torch
from safetensors import safe_open
from safetensors.torch import load_file

import pretrained
from pretrained import auto
from pretrained.errors import ConfigError, InvalidInputError

FIX = Path(__file__).parent / "fixtures"
GOLD = FIX / "goldens" / "encoders"
META = json.loads((GOLD / "encoders.json").read_text())["models"]
NAMES = sorted(META)
WITH_LOSS = [(n, c) for n in NAMES for c in sorted(META[n]["losses"])]

AUTO_FOR_HEAD = {"model": "AutoModel", "seqcls": "AutoModelForSequenceClassification",
                 "regression": "AutoModelForSequenceClassification",
                 "tokcls": "AutoModelForTokenClassification",
                 "qa": "AutoModelForQuestionAnswering", "mlm": "AutoModelForMaskedLM"}
FIELDS = ("last_hidden_state", "pooler_output", "logits", "start_logits", "end_logits")


def golden(name: str, part: str | None = None):
    g = load_file(str(GOLD / f"{name}.safetensors"))
    pick = lambda p: {k[len(p):]: v for k, v in g.items() if k.startswith(p)}  # noqa: E731
    if part is not None:
        return pick(part + ".")
    return pick("input."), pick("output."), pick("case.")


def model_class(name: str):
    model_type = json.loads((FIX / "models" / name / "config.json").read_text())["model_type"]
    classes = auto.model_module(model_type).MODEL_CLASSES.values()
    return next(c for c in classes if c.__name__ == META[name]["class"])


def load(name: str, **kw):
    """Through the Auto class of the fixture's head (the concrete class where there is none)."""
    auto_name = AUTO_FOR_HEAD.get(META[name]["head"])
    cls = getattr(pretrained, auto_name) if auto_name else model_class(name)
    return cls.from_pretrained(FIX / "models" / name, **kw)


def compare(out, expected: dict, tol: float = 1e-4) -> float:
    assert expected, "golden has no outputs"
    worst = 0.0
    for key, want in expected.items():
        got = getattr(out, key).float()
        assert got.shape == want.shape, key
        diff = (got - want).abs().max().item()  # padding positions included
        assert diff <= tol, f"{key}: max abs diff {diff:.2e} > {tol}"
        worst = max(worst, diff)
    return worst


# --- parity -----------------------------------------------------------------------------------
@pytest.mark.parametrize("name", [n for n in NAMES if META[n]["head"] == "model"])
def test_bfloat16_close_to_reference_bfloat16(name):
    inputs, expected, _ = golden(name)
    model = load(name, torch_dtype=torch.bfloat16)
    assert model.dtype == torch.bfloat16
    with torch.no_grad():
        out = model(**inputs)
    # bf16 keeps ~3 significant digits; summation order differs by an ulp or so.
    scale = max(v.abs().max().item() for v in expected.values())
    compare(out, golden(name, "bf16"), 0.03 * scale)


@pytest.mark.parametrize("name,case", WITH_LOSS)
def test_loss_equals_reference(name, case):
    inputs, _, cases = golden(name)
    spec = META[name]["losses"][case]
    kw = {} if spec["problem_type"] is None else {"problem_type": spec["problem_type"]}
    model = load(name, **kw)
    labels = {k: cases[f"{case}.{k}"] for k in spec["labels"]}
    with torch.no_grad():
        loss = model(**inputs, **labels).loss
    assert loss.dim() == 0
    assert abs(loss.item() - spec["loss"]) <= 1e-4, (loss.item(), spec["loss"])


def test_every_architecture_and_head_has_goldens():
    have = {(m["arch"], m["head"]) for m in META.values()}
    for arch in ("distilbert", "roberta", "xlm-roberta", "electra", "deberta-v2"):
        for head in ("model", "seqcls", "mlm") + (("tokcls", "qa") if arch != "xlm-roberta" else ()):
            assert (arch, head) in have, (arch, head)
    seqcls = [m for m in META.values() if m["head"] == "seqcls"]
    for m in seqcls:  # all three problem types, plus the inferred ones
        assert {"single_label_classification", "multi_label_classification", "regression",
                "inferred_single", "inferred_float"} <= set(m["losses"]), m["class"]
    assert len({m["shape"] for m in META.values() if m["arch"] == "deberta-v2"}) >= 6


def test_inferred_problem_type_is_recorded_like_the_reference():
    """The reference sets config.problem_type from the first labels it sees -- except DeBERTa,
    whose own fallback losses leave it unset."""
    for name, after in (("roberta-mini-seqcls", "single_label_classification"),
                        ("deberta-v2-mini-seqcls", None)):
        inputs, _, cases = golden(name)
        model = load(name)
        assert model.config.problem_type is None
        with torch.no_grad():
            model(**inputs, labels=cases["inferred_single.labels"])
        assert model.config.problem_type == after


def _absolute_positions(name: str, model) -> bool:
    arch = META[name]["arch"]
    return arch in ("distilbert", "electra") or (arch == "deberta-v2" and
                                                 model.config.position_biased_input)


@pytest.mark.parametrize("name", NAMES)
def test_padded_rows_equal_one_by_one(name):
    """Each sequence of a padded batch gives what it gives alone. Rows 1-2 are right-padded;
    row 3 is left-padded, which keeps positions only where they are relative or counted from
    the ids (RoBERTa), not with absolute position embeddings."""
    inputs, _, _ = golden(name)
    model = load(name)
    rows = [0, 1, 2] if _absolute_positions(name, model) else [0, 1, 2, 3]
    checked = 0
    with torch.no_grad():
        batch = model(**inputs)
        for i in rows:
            keep = inputs["attention_mask"][i].bool()
            alone = model(**{k: v[i:i + 1, keep] for k, v in inputs.items()})
            for field in FIELDS:
                a = getattr(alone, field, None)
                if a is None:
                    continue
                b = getattr(batch, field)[i]
                if b.dim() >= 1 and b.shape[0] == keep.shape[0]:
                    b = b[keep]
                elif not keep[0]:  # a sentence output reads position 0, padding in this row
                    continue
                assert (a[0] - b).abs().max() <= 1e-4, (field, i)
                checked += 1
    assert checked >= 3


# --- saving -----------------------------------------------------------------------------------
def _file_keys(folder: Path) -> set[str]:
    with safe_open(str(folder / "model.safetensors"), "pt") as f:
        return set(f.keys())


@pytest.mark.parametrize("name", NAMES)
def test_save_load_round_trip_is_exact_and_writes_the_references_keys(name, tmp_path):
    inputs, expected, _ = golden(name)
    model = load(name)
    model.save_pretrained(tmp_path)
    # Same tensor names as the reference wrote (tied copies left out the same way).
    assert _file_keys(tmp_path) == _file_keys(FIX / "models" / name)
    back = type(model).from_pretrained(tmp_path)
    a, b = model.state_dict(), back.state_dict()
    assert list(a) == list(b)
    for k in a:
        assert torch.equal(a[k], b[k]), k
    saved = json.loads((tmp_path / "config.json").read_text())
    assert saved["architectures"] == [META[name]["class"]]
    original = json.loads((FIX / "models" / name / "config.json").read_text())
    assert saved["model_type"] == original["model_type"]
    with torch.no_grad():
        compare(back(**inputs), expected)


@pytest.mark.parametrize("name", ["roberta-mini-mlm", "deberta-v2-small-model", "electra-tiny-model"])
def test_pickle_and_sharded_round_trip(name, tmp_path):
    inputs, expected, _ = golden(name)
    model = load(name)
    model.save_pretrained(tmp_path, safe_serialization=False, max_shard_size="20KB")
    assert (tmp_path / "pytorch_model.bin.index.json").exists()
    with torch.no_grad():
        compare(type(model).from_pretrained(tmp_path)(**inputs), expected)


@pytest.mark.parametrize("name,decoder,embeddings", [
    ("roberta-mini-mlm", "lm_head.decoder", "roberta.embeddings.word_embeddings"),
    ("xlm-roberta-mini-mlm", "lm_head.decoder", "roberta.embeddings.word_embeddings"),
    ("distilbert-mini-mlm", "vocab_projector", "distilbert.embeddings.word_embeddings"),
    ("electra-mini-mlm", "generator_lm_head", "electra.embeddings.word_embeddings"),
    ("deberta-v2-mini-mlm", "cls.predictions.decoder", "deberta.embeddings.word_embeddings"),
])
def test_masked_lm_output_is_tied_to_the_input_embeddings(name, decoder, embeddings):
    model = load(name)
    assert model.get_submodule(decoder).weight is model.get_submodule(embeddings).weight
    assert model.get_output_embeddings() is model.get_submodule(decoder)
    if decoder.startswith("lm_head"):
        assert model.lm_head.bias is model.lm_head.decoder.bias
    if "cls.predictions" in decoder:
        assert model.cls.predictions.bias is model.cls.predictions.decoder.bias


# --- base <-> head loading (base_model_prefix) -------------------------------------------------
@pytest.mark.parametrize("base,prefix,head_keys", [
    ("distilbert-tiny-model", "distilbert",
     ["pre_classifier.weight", "pre_classifier.bias", "classifier.weight", "classifier.bias"]),
    ("roberta-tiny-model", "roberta", ["classifier.dense.weight", "classifier.dense.bias",
                                       "classifier.out_proj.weight", "classifier.out_proj.bias"]),
    ("xlm-roberta-tiny-model", "roberta", ["classifier.dense.weight", "classifier.dense.bias",
                                           "classifier.out_proj.weight", "classifier.out_proj.bias"]),
    ("electra-tiny-model", "electra", ["classifier.dense.weight", "classifier.dense.bias",
                                       "classifier.out_proj.weight", "classifier.out_proj.bias"]),
    ("deberta-v2-tiny-model", "deberta", ["pooler.dense.weight", "pooler.dense.bias",
                                          "classifier.weight", "classifier.bias"]),
])
def test_head_model_loads_a_base_checkpoint(base, prefix, head_keys, caplog):
    with caplog.at_level("WARNING", logger="pretrained"):
        model, info = pretrained.AutoModelForSequenceClassification.from_pretrained(
            FIX / "models" / base, num_labels=2, output_loading_info=True)
    assert sorted(info["missing_keys"]) == sorted(head_keys)
    # RoBERTa's pooler is in the base checkpoint but not in its classification model.
    assert all(k.startswith("pooler.") for k in info["unexpected_keys"])
    assert head_keys[0] in caplog.text
    inputs, expected, _ = golden(base)
    with torch.no_grad():
        h = getattr(model, prefix)(**inputs).last_hidden_state
    assert (h - expected["last_hidden_state"]).abs().max() <= 1e-4
    assert model.get_submodule(head_keys[0].rpartition(".")[0]).weight.std() > 0


@pytest.mark.parametrize("head,prefix,missing", [
    ("roberta-mini-mlm", "roberta", ["pooler.dense.weight", "pooler.dense.bias"]),
    ("distilbert-mini-qa", "distilbert", []),
    ("electra-mini-pretraining", "electra", []),
    ("deberta-v2-mini-seqcls", "deberta", []),
])
def test_base_model_loads_a_head_checkpoint(head, prefix, missing):
    folder = FIX / "models" / head
    model, info = pretrained.AutoModel.from_pretrained(folder, output_loading_info=True)
    assert type(model).__name__.endswith("Model")
    assert info["missing_keys"] == missing
    file = load_file(str(folder / "model.safetensors"))
    assert sorted(info["unexpected_keys"]) == sorted(k for k in file if not k.startswith(prefix + "."))
    state = model.state_dict()
    for key, value in file.items():  # every encoder tensor came from the file, prefix stripped
        if key.startswith(prefix + "."):
            assert torch.equal(state[key[len(prefix) + 1:]], value), key


def test_masked_lm_from_a_base_checkpoint_initialises_its_head_like_the_reference():
    model, info = pretrained.AutoModelForMaskedLM.from_pretrained(
        FIX / "models" / "roberta-tiny-model", output_loading_info=True)
    assert "lm_head.bias" in info["missing_keys"]
    assert torch.equal(model.lm_head.bias, torch.zeros_like(model.lm_head.bias))
    assert model.lm_head.decoder.weight is model.roberta.embeddings.word_embeddings.weight
    deb = pretrained.AutoModelForMaskedLM.from_pretrained(FIX / "models" / "deberta-v2-tiny-model")
    assert torch.equal(deb.cls.predictions.bias, torch.zeros_like(deb.cls.predictions.bias))


# --- configs and inputs -----------------------------------------------------------------------
@pytest.mark.parametrize("model_type,kwargs", [
    ("distilbert", dict(dim=30, n_heads=4)),
    ("distilbert", dict(activation="nope")),
    ("distilbert", dict(n_layers="6")),
    ("roberta", dict(pad_token_id=None)),
    ("roberta", dict(max_position_embeddings=2)),
    ("roberta", dict(is_decoder=True)),
    ("electra", dict(add_cross_attention=True, is_decoder=True)),
    ("xlm-roberta", dict(hidden_size=30, num_attention_heads=4)),
    ("electra", dict(embedding_size=0)),
    ("electra", dict(position_embedding_type="relative_key")),
    ("deberta-v2", dict(pos_att_type=["c2p", "p2p"])),
    ("deberta-v2", dict(pos_att_type="c2p|x2y")),
    ("deberta-v2", dict(norm_rel_ebd="batch_norm")),
    ("deberta-v2", dict(conv_kernel_size=4)),
    ("deberta-v2", dict(conv_kernel_size=3, conv_groups=5)),
    ("deberta-v2", dict(hidden_size=30, num_attention_heads=4)),
    ("deberta-v2", dict(attention_head_size=16, hidden_size=32, num_attention_heads=4)),
    ("deberta-v2", dict(pooler_hidden_size=64, hidden_size=32, num_attention_heads=4)),
    ("deberta-v2", dict(pooler_hidden_act="nope")),
])
def test_bad_config_is_a_config_error(model_type, kwargs):
    with pytest.raises(ConfigError):
        pretrained.AutoConfig.for_model(model_type, **kwargs)


def test_bad_config_json_names_the_key(tmp_path):
    data = json.loads((FIX / "models" / "deberta-v2-tiny-model" / "config.json").read_text())
    data["pos_att_type"] = ["c2p", "p2x"]
    (tmp_path / "config.json").write_text(json.dumps(data))
    with pytest.raises(ConfigError, match="pos_att_type"):
        pretrained.AutoModel.from_pretrained(tmp_path)


@pytest.mark.parametrize("model_type", ["distilbert", "roberta", "electra", "deberta-v2"])
def test_question_answering_needs_two_labels(model_type):
    cfg = pretrained.AutoConfig.for_model(model_type, vocab_size=64, hidden_size=16,
                                          num_attention_heads=2, num_hidden_layers=1,
                                          num_labels=3)
    with pytest.raises(ConfigError, match="num_labels=2"):
        pretrained.AutoModelForQuestionAnswering.from_config(cfg)


def test_deberta_v2_config_normalises_like_the_reference():
    cfg = pretrained.AutoConfig.from_pretrained(FIX / "models" / "deberta-v2-small-model")
    assert cfg.pos_att_type == ["c2p", "p2c"]  # saved by the reference as "c2p|p2c"
    assert cfg.embedding_size == cfg.pooler_hidden_size == cfg.hidden_size == 48
    assert cfg.relative_span == 5
    tiny = pretrained.AutoConfig.from_pretrained(FIX / "models" / "deberta-v2-tiny-model")
    assert tiny.relative_span == 8 and tiny.share_att_key and tiny.norm_rel_ebd == "layer_norm"


def test_xlm_roberta_is_its_own_type():
    cfg = pretrained.AutoConfig.from_pretrained(FIX / "models" / "xlm-roberta-tiny-model")
    assert type(cfg).__name__ == "XLMRobertaConfig" and cfg.model_type == "xlm-roberta"
    assert cfg.pad_token_id == 1
    assert {"distilbert", "roberta", "xlm-roberta", "electra", "deberta-v2"} <= set(
        auto.supported_model_types())


@pytest.mark.parametrize("name,limit", [
    ("roberta-tiny-model", 24 - 2),  # positions start at pad + 1 = 2
    ("distilbert-tiny-model", 24),
    ("electra-tiny-model", 24),
    ("deberta-v2-small-model", 20),
])
def test_too_long_input_is_a_clear_error(name, limit):
    model = load(name)
    ok = torch.full((1, limit), 5)
    with torch.no_grad():
        model(ok)
        with pytest.raises(InvalidInputError, match=f"at most {limit}"):
            model(torch.full((1, limit + 1), 5))


def test_deberta_v3_takes_inputs_longer_than_its_position_table():
    model = load("deberta-v2-tiny-model")  # relative positions only: no absolute table
    with torch.no_grad():
        out = model(torch.full((1, 40), 5)).last_hidden_state
    assert out.shape == (1, 40, 32) and torch.isfinite(out).all()


@pytest.mark.parametrize("name", ["distilbert-tiny-model", "roberta-tiny-model", "electra-tiny-model",
                                  "deberta-v2-tiny-model"])
def test_bad_inputs_are_clear_errors(name):
    model = load(name)
    with pytest.raises(InvalidInputError, match="attention_mask"):
        model(torch.tensor([[5, 6, 7]]), attention_mask=torch.ones(1, 4, dtype=torch.long))
    with pytest.raises(InvalidInputError, match="vocabulary"):
        model(torch.tensor([[5, 6, 500]]))


@pytest.mark.parametrize("name", ["distilbert-tiny-model", "roberta-tiny-model", "electra-tiny-model",
                                  "deberta-v2-tiny-model", "deberta-v2-c2p-model"])
def test_hidden_states_are_embeddings_then_each_layer(name):
    inputs, expected, _ = golden(name)
    model = load(name)
    with torch.no_grad():
        out = model(**inputs, output_hidden_states=True)
    n = model.config.num_hidden_layers
    assert len(out.hidden_states) == n + 1
    assert torch.equal(out.hidden_states[-1], out.last_hidden_state)
    assert (out.last_hidden_state - expected["last_hidden_state"]).abs().max() <= 1e-4


def test_distilbert_accepts_and_ignores_token_type_ids():
    inputs, expected, _ = golden("distilbert-tiny-model")
    model = load("distilbert-tiny-model")
    with torch.no_grad():
        out = model(**inputs, token_type_ids=torch.ones_like(inputs["input_ids"]))
    compare(out, expected)


@pytest.mark.parametrize("model_type", ["distilbert", "roberta", "xlm-roberta", "electra",
                                        "deberta-v2"])
def test_from_config_builds_every_head(model_type):
    kw = dict(vocab_size=64, hidden_size=16, num_attention_heads=2, num_hidden_layers=1)
    if model_type == "deberta-v2":
        kw.update(relative_attention=True, position_buckets=8, pos_att_type=["p2c", "c2p"],
                  share_att_key=True, norm_rel_ebd="layer_norm", conv_kernel_size=3)
    if model_type == "distilbert":
        kw.update(sinusoidal_pos_embds=True)
    cfg = pretrained.AutoConfig.for_model(model_type, **kw)
    ids = torch.tensor([[3, 5, 7, 9], [3, 5, 4, cfg.pad_token_id]])
    mask = torch.tensor([[1, 1, 1, 1], [1, 1, 1, 0]])
    for head, cls in auto.model_module(model_type).MODEL_CLASSES.items():
        model = cls.from_config(cfg).eval()
        with torch.no_grad():
            out = model(ids, attention_mask=mask)
        assert all(torch.isfinite(t).all() for t in out.to_tuple()), head
    if model_type == "distilbert":  # the fixed sin/cos table: row 1 = sin(1), cos(1), ...
        base = auto.model_module(model_type).DistilBertModel.from_config(cfg)
        w = base.embeddings.position_embeddings.weight
        assert abs(w[1, 0].item() - 0.8414709848) < 1e-6 and abs(w[1, 1].item() - 0.5403023059) < 1e-6
    if model_type in ("roberta", "xlm-roberta"):  # the padding row of the position table
        w = cls.from_config(cfg).roberta.embeddings.position_embeddings.weight
        assert torch.equal(w[cfg.pad_token_id], torch.zeros_like(w[0]))


@pytest.mark.parametrize("name", ["roberta-small-model", "electra-small-model",
                                  "deberta-v2-small-model"])
def test_segment_ids_outside_the_table_are_a_clear_error(name):
    inputs, _, _ = golden(name)
    model = load(name)
    n = model.config.type_vocab_size
    with pytest.raises(InvalidInputError, match="type_vocab_size"):
        model(inputs["input_ids"], token_type_ids=torch.full_like(inputs["input_ids"], n))
    with pytest.raises(InvalidInputError, match="token_type_ids has shape"):
        model(inputs["input_ids"], token_type_ids=inputs["input_ids"][:, :3])


def test_deberta_without_segment_embeddings_ignores_token_type_ids_like_the_reference():
    inputs, expected, _ = golden("deberta-v2-tiny-model")
    model = load("deberta-v2-tiny-model")
    assert model.config.type_vocab_size == 0
    with torch.no_grad():
        out = model(**inputs, token_type_ids=torch.ones_like(inputs["input_ids"]))
    compare(out, expected)
