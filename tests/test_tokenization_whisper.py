"""WhisperTokenizer against the reference's, on the real Whisper vocabularies.

Goldens: tests/fixtures/goldens/whisper_tokenizer/tokenizer.json, recorded by
scripts/golden_whisper_tokenizer.py from the reference's WhisperTokenizer on the multilingual
whisper-base tokenizer (tests/fixtures/tokenizers/whisper-base, copied from the converted model)
and the English-only whisper-tiny.en (in the fetch cache; those cases skip without it).
"""

from __future__ import annotations

import json
import pickle
from pathlib import Path

import numpy as np
import pytest
import torch

from pretrained.errors import InvalidInputError, UnknownLanguageCodeError, UnsupportedOptionError
from pretrained.tokenization import AutoTokenizer, WhisperTokenizer

ROOT = Path(__file__).resolve().parent
GOLDENS = json.loads((ROOT / "fixtures" / "goldens" / "whisper_tokenizer" / "tokenizer.json").read_text("utf-8"))
FOLDERS = {
    "whisper-base": ROOT / "fixtures" / "tokenizers" / "whisper-base",
    "whisper-tiny.en": Path.home() / ".cache" / "pretrained" / "models" / "whisper-tiny.en",
}
BASE = FOLDERS["whisper-base"]
# (the same texts as the golden script, in its order)
TEXTS = [
    "Hello world.",
    " The quick brown fox jumps over the lazy dog.",
    "Bonjour, je m'appelle Zoé et j'habite à Montréal depuis 2019.",
    "Ça coûte 12,50 € — très cher !",
    "Emoji 🎉🚀 and symbols ∑ ≠ ≤ © ™",
    "Numbers: 3.14159, 1,000,000 and 42nd; 1990s.",
    "Straße, naïve café, Ångström, Dvořák, Łódź.",
    "  leading and trailing spaces  ",
    "",
    "日本語のテキストと中文。",
    "<|en|> looks like a token",
]
PAIRS = [("Hello", "world"), ("Bonjour", " le monde")]
TARGETS = [("How are you?", "Comment allez-vous ?")]
MODELS = [pytest.param(name, marks=pytest.mark.skipif(not FOLDERS[name].is_dir(), reason=f"{FOLDERS[name]} missing"))
          for name in GOLDENS]  # fmt: skip


def _load(name: str, **kwargs) -> WhisperTokenizer:
    return AutoTokenizer.from_pretrained(FOLDERS[name], **kwargs)


def _plain(obj):
    return json.loads(json.dumps(obj))  # tuples -> lists, as the goldens store them


def test_goldens_cover_both_vocabularies():
    assert set(GOLDENS) == {"whisper-base", "whisper-tiny.en"}
    assert len(GOLDENS["whisper-base"]["settings"]) >= 10 and len(GOLDENS["whisper-base"]["decode"]) >= 12


@pytest.mark.parametrize("name", MODELS)
def test_auto_tokenizer_returns_the_whisper_class_with_the_reference_attributes(name):
    tok = _load(name)
    gold = GOLDENS[name]["attributes"]
    assert type(tok) is WhisperTokenizer and gold["class"] == "WhisperTokenizer"
    assert len(tok) == gold["len"]
    assert tok.all_special_ids == gold["all_special_ids"]
    assert (tok.eos_token_id, tok.pad_token_id, tok.model_max_length) == (
        gold["eos_token_id"], gold["pad_token_id"], gold["model_max_length"])
    assert tok.prefix_tokens == gold["prefix_tokens"]
    assert tok.timestamp_ids()[:3] == gold["timestamp_ids_first"]
    assert tok.timestamp_ids()[-1] == gold["timestamp_ids_last"]
    assert tok.timestamp_ids(0.04)[:4] == gold["timestamp_ids_004"]


@pytest.mark.parametrize("name", MODELS)
def test_encoding_under_each_prefix_setting_equals_the_reference(name):
    for case in GOLDENS[name]["settings"]:
        tok = _load(name, **case["load"])
        if case["set"] is not None:
            tok.set_prefix_tokens(**case["set"])
        where = f"{case['load']} then {case['set']}"
        assert tok.prefix_tokens == case["prefix_tokens"], where
        assert (tok.language, tok.task, tok.predict_timestamps) == (
            case["language"], case["task"], case["predict_timestamps"]), where
        assert [tok(t)["input_ids"] for t in TEXTS] == case["input_ids"], where
        assert [tok(t, add_special_tokens=False)["input_ids"] for t in TEXTS] == case["no_specials"], where
        assert tok(TEXTS[:4], padding=True, return_tensors="np")["input_ids"].tolist() == case["batch"], where
        assert [tok(a, b)["input_ids"] for a, b in PAIRS] == case["pairs"], where
        mask = tok(TEXTS[0], return_special_tokens_mask=True)["special_tokens_mask"]
        assert mask == case["special_tokens_mask"], where
        assert [tok(a, text_target=b)["labels"] for a, b in TARGETS] == case["targets"], where
        assert [tok(text_target=b)["input_ids"] for _, b in TARGETS] == case["target_only"], where


@pytest.mark.parametrize("name", MODELS)
def test_decoding_equals_the_reference(name):
    tok = _load(name)
    for seq, gold in GOLDENS[name]["decode"].items():
        ids = gold["ids"]
        for skip in (False, True):
            assert tok.decode(ids, skip_special_tokens=skip) == gold[f"decode_skip{int(skip)}"], (seq, skip)
            got = tok.decode(ids, skip_special_tokens=skip, decode_with_timestamps=True)
            assert got == gold[f"with_timestamps_skip{int(skip)}"], (seq, skip)
            got = tok.decode(ids, skip_special_tokens=skip, output_offsets=True)
            assert _plain(got) == gold[f"offsets_skip{int(skip)}"], (seq, skip)
        assert tok.decode(ids, decode_with_timestamps=True, time_precision=0.04) == gold["with_timestamps_004"], seq
        assert _plain(tok.decode(ids, output_offsets=True, time_precision=0.04)) == gold["offsets_004"], seq
        assert tok.decode(ids, skip_special_tokens=True, basic_normalize=True) == gold["basic_normalize"], seq
        got = tok.decode(ids, basic_normalize=True, remove_diacritics=True)
        assert got == gold["basic_normalize_diacritics"], seq


@pytest.mark.parametrize("name", MODELS)
def test_decoding_takes_tensors_and_arrays(name):
    tok = _load(name)
    gold = GOLDENS[name]["decode"]["timestamps"]
    for ids in (torch.tensor(gold["ids"]), np.array(gold["ids"])):
        assert tok.decode(ids, skip_special_tokens=True) == gold["decode_skip1"]
        assert tok.decode(ids, decode_with_timestamps=True) == gold["with_timestamps_skip0"]
        assert _plain(tok.decode(ids, output_offsets=True)) == gold["offsets_skip0"]


@pytest.mark.parametrize("name", MODELS)
def test_batch_decoding_equals_the_reference(name):
    tok = _load(name)
    gold = GOLDENS[name]["batch_decode"]
    batch = [GOLDENS[name]["decode"][n]["ids"] for n in gold["names"]]
    assert tok.batch_decode(batch) == gold["plain"]
    assert tok.batch_decode(batch, skip_special_tokens=True) == gold["skip"]
    assert tok.batch_decode(batch, decode_with_timestamps=True) == gold["with_timestamps"]
    assert tok.decode(batch, skip_special_tokens=True) == gold["decode_list_of_lists"]
    # offsets: one dict per sequence, each as decode() of that sequence gives it
    offsets = tok.batch_decode(batch, output_offsets=True)
    assert _plain(offsets) == [GOLDENS[name]["decode"][n]["offsets_skip0"] for n in gold["names"]]
    assert tok.batch_decode([]) == []


@pytest.mark.parametrize("name", MODELS)
def test_decoder_prompt_ids_and_prompt_ids_equal_the_reference(name):
    for case in GOLDENS[name]["decoder_prompt_ids"]:
        tok = _load(name)
        assert _plain(tok.get_decoder_prompt_ids(**case["kwargs"])) == case["ids"], case["kwargs"]
        assert tok.prefix_tokens == case["prefix_after"], case["kwargs"]  # it sets the prefix, as the reference
    tok = _load(name)
    for case in GOLDENS[name]["prompt_ids"]:
        got = tok.get_prompt_ids(case["text"])
        assert isinstance(got, np.ndarray) and got.tolist() == case["ids"], case["text"]
        assert tok.get_prompt_ids(case["text"], return_tensors="pt").tolist() == case["ids"]


def test_basic_normalize_equals_the_reference():
    for case in GOLDENS["whisper-base"]["basic_normalize"]:
        assert WhisperTokenizer.basic_normalize(case["text"]) == case["plain"], case["text"]
        assert WhisperTokenizer.basic_normalize(case["text"], remove_diacritics=True) == case["diacritics"]


def test_english_normalizer_is_refused_by_name():
    tok = _load("whisper-base")
    with pytest.raises(UnsupportedOptionError, match="basic_normalize"):
        tok.decode([2425], normalize=True)
    with pytest.raises(UnsupportedOptionError):
        tok.normalize("Hello")


def test_unknown_language_and_task_are_named_errors_and_change_nothing():
    tok = _load("whisper-base", language="fr")
    before = tok("Salut")["input_ids"]
    with pytest.raises(UnknownLanguageCodeError, match="klingon"):
        tok.set_prefix_tokens(language="klingon")
    with pytest.raises(InvalidInputError, match="transcribe"):
        tok.set_prefix_tokens(task="summarize")
    assert tok.language == "fr" and tok("Salut")["input_ids"] == before
    with pytest.raises(UnknownLanguageCodeError):
        _load("whisper-base", language="xx")


def test_a_language_newer_than_the_vocabulary_is_refused():
    # whisper-base has 99 languages; Cantonese came with large-v3. The reference would put the
    # token that follows the languages (<|translate|>) in its place.
    tok = _load("whisper-base")
    with pytest.raises(UnknownLanguageCodeError, match="yue"):
        tok.set_prefix_tokens(language="cantonese")
    assert tok.language_id("Hebrew") == tok.convert_tokens_to_ids("<|he|>")


def test_prompt_text_with_special_or_timestamp_tokens_is_refused():
    tok = _load("whisper-base")
    for text in ("hi <|en|>", "at <|1.00|> then"):
        with pytest.raises(InvalidInputError, match="not allowed"):
            tok.get_prompt_ids(text)


def test_output_offsets_of_a_batch_needs_batch_decode():
    tok = _load("whisper-base")
    with pytest.raises(InvalidInputError, match="batch_decode"):
        tok.decode([[50364, 2425, 50414], [50364, 2425, 50414]], output_offsets=True)


def test_prefix_survives_save_copy_and_pickle(tmp_path):
    import copy

    tok = _load("whisper-base", language="de", task="translate")
    want = tok("Hallo")["input_ids"]
    assert want[:4] == tok.convert_tokens_to_ids(["<|startoftranscript|>", "<|de|>", "<|translate|>",
                                                  "<|notimestamps|>"])  # fmt: skip
    tok.save_pretrained(tmp_path)
    again = AutoTokenizer.from_pretrained(tmp_path)
    assert type(again) is WhisperTokenizer and again("Hallo")["input_ids"] == want
    assert copy.deepcopy(tok)("Hallo")["input_ids"] == want
    assert pickle.loads(pickle.dumps(tok))("Hallo")["input_ids"] == want


def test_the_prefix_set_after_loading_is_saved(tmp_path):
    # the reference writes the current language/task/predict_timestamps to tokenizer_config.json
    tok = _load("whisper-base", language="es")
    tok.set_prefix_tokens(language="french", predict_timestamps=True)
    tok.save_pretrained(tmp_path)
    config = json.loads((tmp_path / "tokenizer_config.json").read_text("utf-8"))
    assert (config["language"], config["task"], config["predict_timestamps"]) == ("french", None, True)
    again = AutoTokenizer.from_pretrained(tmp_path)
    assert again.prefix_tokens == [50258, 50265] and again.language == "french"
