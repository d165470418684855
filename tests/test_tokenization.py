"""Tokenizers: goldens from the reference library, round trip, loading (bad inputs and the API are
tests/test_tokenization_inputs.py's, the chat-template sandbox tests/test_tokenization_chat_templates.py's).

The goldens (tests/fixtures/tokenizers/goldens.json) come from scripts/golden_tokenizers.py, run
with the reference library; nothing here imports it.
"""

from __future__ import annotations

import functools
import json
import shutil
from pathlib import Path

import pytest

from pretrained.errors import (
    InvalidInputError,
    PretrainedError,
    RemoteCodeError,
    TokenizerLoadError,
    TokenizerNotFoundError,
)
from pretrained.tokenization import AutoTokenizer, PreTrainedTokenizerFast, Tokenizer

FIX = Path(__file__).resolve().parent / "fixtures" / "tokenizers"
GOLDENS = json.loads((FIX / "goldens.json").read_text(encoding="utf-8"))
LONG_TEXT = GOLDENS["long_text"]
MSGS = [{"role": "user", "content": "hi"}]  # the chat-template tests' messages


def _resolve(obj):
    if obj == "$LONG_TEXT":
        return LONG_TEXT
    if isinstance(obj, list):
        return [_resolve(x) for x in obj]
    if isinstance(obj, dict):
        return {k: _resolve(v) for k, v in obj.items()}
    return obj


def _cases():
    out = []
    by_name = {f: {c["name"]: c for c in e["cases"]} for f, e in GOLDENS["fixtures"].items()}
    for fixture, entry in GOLDENS["fixtures"].items():
        for case in entry["cases"]:
            case = _resolve(case)
            if isinstance(case["expected"], dict) and "$same_as" in case["expected"]:
                case["expected"] = _resolve(by_name[case["expected"]["$same_as"]][case["name"]]["expected"])
            out.append(pytest.param(fixture, case, id=f"{fixture}:{case['name']}"))
    return out


CASES = _cases()


@functools.cache
def load(fixture: str, load_kwargs: str = "{}") -> Tokenizer:
    return AutoTokenizer.from_pretrained(FIX / fixture, **json.loads(load_kwargs))


def fresh(fixture: str, **kwargs) -> Tokenizer:
    return AutoTokenizer.from_pretrained(FIX / fixture, **kwargs)


def norm(v):
    """Same normal form as the goldens script: tensors -> dicts, tuples -> lists."""
    mod = type(v).__module__
    if mod.startswith("torch") and hasattr(v, "tolist"):
        return {"__tensor__": "pt", "dtype": str(v.dtype), "shape": list(v.shape), "value": v.tolist()}
    if mod.startswith("numpy") and hasattr(v, "tolist") and hasattr(v, "shape"):
        return {"__tensor__": "np", "dtype": str(v.dtype), "shape": list(v.shape), "value": v.tolist()}
    if isinstance(v, dict):
        return {k: norm(x) for k, x in v.items()}
    if isinstance(v, (list, tuple)):
        return [norm(x) for x in v]
    return v


def replay(tok, case, expected):
    try:
        if case["method"] == "__call__":
            enc = tok(**case["args"], **case["kwargs"])
            out = {"data": norm(dict(enc))}
            if isinstance(expected, dict) and "tokens" in expected:
                out["tokens"] = [enc.tokens(i) for i in range(len(enc.encodings))]
                out["word_ids"] = [enc.word_ids(i) for i in range(len(enc.encodings))]
            return out
        out = getattr(tok, case["method"])(*case["args"], **case["kwargs"])
        if case["method"] == "apply_chat_template" and isinstance(out, dict):
            return {"batch": norm(dict(out))}
        return norm(out)
    except Exception as e:
        return {
            "__raises__": type(e).__name__,
            "value_error": isinstance(e, ValueError),
            "ours": isinstance(e, PretrainedError),
        }


# --- goldens ---------------------------------------------------------------------------------------
@pytest.mark.parametrize("fixture,case", CASES)
def test_matches_reference(fixture, case):
    tok = load(fixture, json.dumps(case["load_kwargs"], sort_keys=True))
    expected = case["expected"]
    got = json.loads(json.dumps(replay(tok, case, expected), ensure_ascii=False))
    if isinstance(expected, dict) and "__raises__" in expected:
        assert isinstance(got, dict) and "__raises__" in got, (
            f"the reference raised {expected['__raises__']}, we returned {got}"
        )
        # we raise one of our errors, a ValueError wherever the reference's was one (tokenizers'
        # plain Exceptions, e.g. truncation errors, become InvalidInputError, a ValueError)
        assert got["ours"], got
        assert got["value_error"] or not expected["value_error"]
        return
    assert got == expected
    if case["method"] == "__call__":
        assert list(got["data"]) == list(expected["data"]), "output keys in a different order"


@pytest.mark.parametrize("fixture", sorted(GOLDENS["fixtures"]))
def test_attributes_match_reference(fixture):
    import hashlib

    tok = load(fixture)
    want = GOLDENS["fixtures"][fixture]["attributes"]
    vocab = tok.get_vocab()
    got = {
        "vocab_size": tok.vocab_size,
        "len": len(tok),
        "vocab_sha256": hashlib.sha256(
            json.dumps(sorted(vocab.items()), ensure_ascii=False).encode()
        ).hexdigest(),
        "special": {n: getattr(tok, n) for n in want["special"]},
        "special_ids": {n: getattr(tok, n) for n in want["special_ids"]},
        "all_special_tokens": tok.all_special_tokens,
        "all_special_ids": tok.all_special_ids,
        "model_input_names": tok.model_input_names,
        "padding_side": tok.padding_side,
        "truncation_side": tok.truncation_side,
        "model_max_length": tok.model_max_length,
        "added_vocab": dict(sorted(tok.get_added_vocab().items(), key=lambda kv: kv[1])),
    }
    assert json.loads(json.dumps(got, ensure_ascii=False)) == want


def test_goldens_cover_every_fixture():
    assert set(GOLDENS["fixtures"]) == {"bert_wordpiece", "bert_vocab_only", "gpt2_bpe", "gpt2_vocab_merges"}
    assert len(CASES) > 350


@pytest.mark.parametrize("fixture", sorted(GOLDENS["round_trip"]))
def test_reference_reads_our_save_pretrained(fixture):
    """Recorded by the goldens script: our save_pretrained, read back by the reference, same outputs."""
    result = GOLDENS["round_trip"][fixture]
    assert result["cases"] >= 70
    assert result["mismatches"] == []
    assert result["passed"] is True
    assert {"tokenizer.json", "tokenizer_config.json", "special_tokens_map.json"} <= set(result["files"])


@pytest.mark.parametrize("name", sorted(GOLDENS["extra_checks"]))
def test_reference_agrees_on_more_folders(name):
    """Recorded by the goldens script: more folders (RoBERTa vocab/merges, cased BERT vocab.txt,
    add_bos/eos_token, legacy added_tokens_decoder / special_tokens_map.json, padding baked into
    tokenizer.json, LlamaTokenizer class on a byte-level tokenizer.json, no config at all), loaded
    by us and by the reference and compared case by case."""
    result = GOLDENS["extra_checks"][name]
    assert result["cases"] >= 50
    assert result["mismatches"] == []
    assert result["passed"] is True


def test_extra_checks_cover_the_conversions():
    assert {"roberta_vocab_merges", "bert_cased_vocab", "gpt2_bos_eos", "bert_vocab_added_tokens"} <= set(
        GOLDENS["extra_checks"]
    )


@pytest.mark.parametrize("fixture", sorted(GOLDENS["fixtures"]))
def test_our_round_trip(fixture, tmp_path):
    tok = load(fixture)
    tok.save_pretrained(tmp_path)
    config = json.loads((tmp_path / "tokenizer_config.json").read_text())
    assert config["tokenizer_class"] in ("BertTokenizer", "GPT2Tokenizer")
    assert config["model_input_names"] == tok.model_input_names
    again = AutoTokenizer.from_pretrained(tmp_path)
    for param in CASES:
        fx, case = param.values
        if fx != fixture or case["load_kwargs"]:
            continue
        assert replay(again, case, case["expected"]) == replay(tok, case, case["expected"]), case["name"]
    assert again.chat_template == tok.chat_template
    assert again.special_tokens_map == tok.special_tokens_map
    assert again.extra_special_tokens == tok.extra_special_tokens


# --- loading ---------------------------------------------------------------------------------------
def test_conversion_builds_the_expected_pipelines():
    bert = load("bert_vocab_only")
    assert type(bert.backend_tokenizer.model).__name__ == "WordPiece"
    assert bert("Hello")["input_ids"][0] == bert.cls_token_id
    gpt = load("gpt2_vocab_merges")
    assert type(gpt.backend_tokenizer.model).__name__ == "BPE"
    assert gpt.backend_tokenizer.pre_tokenizer.add_prefix_space is True
    assert gpt.tokenize("hello")[0].startswith("Ġ")


def test_no_tokenizer_files(tmp_path):
    (tmp_path / "config.json").write_text("{}")
    with pytest.raises(TokenizerNotFoundError) as e:
        AutoTokenizer.from_pretrained(tmp_path)
    msg = str(e.value)
    for name in ("tokenizer.json", "vocab.txt", "vocab.json", "merges.txt"):
        assert name in msg
    assert isinstance(e.value, FileNotFoundError)


def test_trust_remote_code_is_refused():
    with pytest.raises(RemoteCodeError, match="never"):
        AutoTokenizer.from_pretrained(FIX / "gpt2_bpe", trust_remote_code=True)
    with pytest.raises(RemoteCodeError):
        Tokenizer.from_pretrained(FIX / "gpt2_bpe", trust_remote_code=True)


def _good_json() -> dict:
    return json.loads((FIX / "gpt2_bpe" / "tokenizer.json").read_text(encoding="utf-8"))


def _crafted_merges() -> str:
    tj = _good_json()
    tj["model"]["vocab"] = {"a": 0, "b": 1}
    tj["model"]["merges"] = ["a b"]  # "ab" is not in the vocabulary
    tj["added_tokens"] = []
    return json.dumps(tj)


def _unknown_model() -> str:
    tj = _good_json()
    tj["model"]["type"] = "NotAModel"
    return json.dumps(tj)


def _merge_of_missing_token() -> str:
    tj = _good_json()
    tj["model"]["merges"] = tj["model"]["merges"][:3] + ["zzqq xxyy"]
    return json.dumps(tj)


@pytest.mark.parametrize(
    "content",
    [
        "",
        "   \n",
        lambda: (FIX / "gpt2_bpe" / "tokenizer.json").read_text(encoding="utf-8")[:500],
        "[1, 2, 3]",
        '{"model": {"type": "BPE"}}',
        _unknown_model,
        _crafted_merges,
        _merge_of_missing_token,
    ],
    ids=[
        "empty",
        "blank",
        "truncated",
        "not-an-object",
        "incomplete",
        "unknown-model",
        "crafted-merges",
        "missing-merge-token",
    ],
)
def test_malformed_tokenizer_json(tmp_path, content):
    text = content() if callable(content) else content
    (tmp_path / "tokenizer.json").write_text(text, encoding="utf-8")
    with pytest.raises(TokenizerLoadError) as e:
        AutoTokenizer.from_pretrained(tmp_path)
    assert "tokenizer.json" in str(e.value)


def test_binary_tokenizer_json(tmp_path):
    (tmp_path / "tokenizer.json").write_bytes(b"\xff\xfe\x00garbage\x80")
    with pytest.raises(TokenizerLoadError, match="UTF-8"):
        AutoTokenizer.from_pretrained(tmp_path)


def test_legacy_added_tokens_json(tmp_path):
    shutil.copy(FIX / "bert_vocab_only" / "vocab.txt", tmp_path / "vocab.txt")
    (tmp_path / "added_tokens.json").write_text(json.dumps({"<ent>": 500}))
    tok = AutoTokenizer.from_pretrained(tmp_path)
    assert len(tok) == 501 and tok.convert_tokens_to_ids("<ent>") == 500
    assert "<ent>" in tok.tokenize("a <ent> b")
    (tmp_path / "added_tokens.json").write_text(json.dumps({"<ent>": "x"}))
    with pytest.raises(TokenizerLoadError, match="added_tokens.json"):
        AutoTokenizer.from_pretrained(tmp_path)


def test_malformed_config(tmp_path):
    shutil.copy(FIX / "gpt2_bpe" / "tokenizer.json", tmp_path / "tokenizer.json")
    (tmp_path / "tokenizer_config.json").write_text("{not json", encoding="utf-8")
    with pytest.raises(TokenizerLoadError, match=r"tokenizer_config\.json"):
        AutoTokenizer.from_pretrained(tmp_path)
    (tmp_path / "tokenizer_config.json").write_text('{"pad_token": 5}', encoding="utf-8")
    with pytest.raises(TokenizerLoadError, match="pad_token"):
        AutoTokenizer.from_pretrained(tmp_path)


def test_hub_id_from_the_cache(tmp_path, monkeypatch):
    commit = "0123456789abcdef0123456789abcdef01234567"
    repo = tmp_path / "models--org--tiny-tok"
    snapshot = repo / "snapshots" / commit
    snapshot.mkdir(parents=True)
    (repo / "refs").mkdir()
    (repo / "refs" / "main").write_text(commit)
    for f in (FIX / "gpt2_bpe").iterdir():
        shutil.copy(f, snapshot / f.name)
    (snapshot / "chat_templates").mkdir()
    (snapshot / "chat_templates" / "short.jinja").write_text("{{ messages | length }}")
    monkeypatch.setenv("HF_HUB_CACHE", str(tmp_path))
    monkeypatch.setenv("HF_HUB_OFFLINE", "1")
    tok = AutoTokenizer.from_pretrained("org/tiny-tok")
    assert tok("hello world").input_ids == load("gpt2_bpe")("hello world").input_ids
    assert tok.name_or_path == "org/tiny-tok"
    # like the reference, template files replace the config's template
    assert tok.apply_chat_template(MSGS, chat_template="short", tokenize=False) == "1"


def test_legacy_special_tokens_map_and_chat_template_file(tmp_path):
    shutil.copy(FIX / "gpt2_bpe" / "tokenizer.json", tmp_path / "tokenizer.json")
    (tmp_path / "tokenizer_config.json").write_text(json.dumps({"tokenizer_class": "GPT2Tokenizer"}))
    (tmp_path / "special_tokens_map.json").write_text(
        json.dumps(
            {
                "pad_token": {
                    "content": "<|pad|>",
                    "lstrip": False,
                    "rstrip": False,
                    "normalized": False,
                    "single_word": False,
                },
                "eos_token": "<|im_end|>",
                "additional_special_tokens": [{"content": "<|im_start|>"}],
            }
        )
    )
    (tmp_path / "chat_template.jinja").write_text("{% for m in messages %}{{ m.content }}|{% endfor %}")
    tok = AutoTokenizer.from_pretrained(tmp_path)
    assert tok.pad_token == "<|pad|>"
    assert tok.pad_token_id == len(tok) - 1  # new special token appended
    assert tok.eos_token == "<|im_end|>"
    assert tok.extra_special_tokens == ["<|im_start|>"]
    assert tok.apply_chat_template([{"role": "user", "content": "a"}], tokenize=False) == "a|"
    assert tok.tokenize("x<|pad|>y") == ["x", "<|pad|>", "y"]


def test_model_input_names_and_padding_side_by_class(tmp_path):
    shutil.copy(FIX / "gpt2_bpe" / "tokenizer.json", tmp_path / "tokenizer.json")
    cfg = tmp_path / "tokenizer_config.json"
    expect = {
        "LlamaTokenizerFast": (["input_ids", "attention_mask"], "right"),  # byte-level tokenizer.json
        "GemmaTokenizer": (["input_ids", "attention_mask"], "left"),
        "DebertaV2Tokenizer": (["input_ids", "attention_mask", "token_type_ids"], "right"),
        "ElectraTokenizer": (["input_ids", "token_type_ids", "attention_mask"], "right"),
        "DistilBertTokenizer": (["input_ids", "attention_mask"], "right"),
        "Qwen2Tokenizer": (["input_ids", "attention_mask"], "right"),
        None: (["input_ids", "attention_mask"], "right"),
    }
    for cls, (names, side) in expect.items():
        cfg.write_text(json.dumps({"tokenizer_class": cls} if cls else {}))
        tok = AutoTokenizer.from_pretrained(tmp_path)
        assert (tok.model_input_names, tok.padding_side) == (names, side), cls
    cfg.write_text(json.dumps({"tokenizer_class": "BertTokenizer", "model_input_names": ["input_ids"]}))
    tok = AutoTokenizer.from_pretrained(tmp_path, padding_side="left")
    assert tok.model_input_names == ["input_ids"] and tok.padding_side == "left"
    assert list(tok("hi")) == ["input_ids"]
    with pytest.raises(InvalidInputError, match="padding_side"):
        AutoTokenizer.from_pretrained(tmp_path, padding_side="middle")


def test_overrides_and_chat_template_list(tmp_path):
    shutil.copy(FIX / "gpt2_bpe" / "tokenizer.json", tmp_path / "tokenizer.json")
    (tmp_path / "tokenizer_config.json").write_text(
        json.dumps(
            {"chat_template": [{"name": "default", "template": "D"}, {"name": "tool_use", "template": "T"}]}
        )
    )
    tok = AutoTokenizer.from_pretrained(tmp_path, pad_token="<|im_start|>", model_max_length=7)
    assert tok.pad_token == "<|im_start|>" and tok.model_max_length == 7
    msgs = [{"role": "user", "content": "x"}]
    assert tok.apply_chat_template(msgs, tokenize=False) == "D"
    assert tok.apply_chat_template(msgs, tokenize=False, tools=[{"name": "f"}]) == "T"
    assert tok.apply_chat_template(msgs, tokenize=False, chat_template="tool_use") == "T"
    tok.save_pretrained(tmp_path / "saved")
    assert AutoTokenizer.from_pretrained(tmp_path / "saved").chat_template == {
        "default": "D",
        "tool_use": "T",
    }


def test_tokenizer_object_constructor():
    backend = load("bert_wordpiece").backend_tokenizer
    tok = PreTrainedTokenizerFast(tokenizer_object=backend, pad_token="[PAD]", cls_token="[CLS]")
    assert tok is not None and isinstance(tok, Tokenizer)
    assert tok("hello").input_ids == load("bert_wordpiece")("hello").input_ids
    assert tok.pad_token_id == 0
    with pytest.raises(InvalidInputError):
        Tokenizer()
