"""The CTC tokenizer (pretrained/tokenization/ctc.py) against the reference's Wav2Vec2CTCTokenizer:
decode / batch_decode of frame ids (repeats, blanks, delimiters, specials, char and word
offsets) and encoding, recorded by scripts/golden_speech_encoders.py from transformers 5.25 on
the tokenizers it saved (tests/fixtures/tokenizers/wav2vec2_ctc{,_lower})."""

from __future__ import annotations

import copy
import json
import pickle
from pathlib import Path

import pytest
import torch

from pretrained.errors import TokenizerLoadError, TokenizerNotFoundError
from pretrained.tokenization import AutoTokenizer, Wav2Vec2CTCTokenizer, Wav2Vec2CTCTokenizerOutput

FIX = Path(__file__).parent / "fixtures"
GOLDEN = json.loads((FIX / "goldens" / "speech" / "ctc_tokenizer.json").read_text())
FOLDERS = sorted(GOLDEN["tokenizers"])


def tok_of(folder: str) -> Wav2Vec2CTCTokenizer:
    return AutoTokenizer.from_pretrained(FIX / "tokenizers" / folder)


def as_dict(out) -> dict:
    if isinstance(out, (str, list)):
        return {"text": out}
    assert isinstance(out, Wav2Vec2CTCTokenizerOutput)
    return {"text": out.text, "char_offsets": out.char_offsets, "word_offsets": out.word_offsets}


def cases(kind: str):
    return [pytest.param(folder, i, id=f"{folder}-{i}")
            for folder in FOLDERS for i in range(len(GOLDEN["tokenizers"][folder][kind]))]


@pytest.mark.parametrize("folder, i", cases("decode"))
def test_decode_equals_the_reference(folder, i):
    case = GOLDEN["tokenizers"][folder]["decode"][i]
    want = {k: case[k] for k in ("text", "char_offsets", "word_offsets") if k in case}
    assert as_dict(tok_of(folder).decode(case["ids"], **case["options"])) == want


@pytest.mark.parametrize("folder, i", cases("batch_decode"))
def test_batch_decode_equals_the_reference(folder, i):
    case = GOLDEN["tokenizers"][folder]["batch_decode"][i]
    want = {k: case[k] for k in ("text", "char_offsets", "word_offsets") if k in case}
    got = tok_of(folder).batch_decode(case["ids"], **case["options"])
    assert as_dict(got) == want


@pytest.mark.parametrize("folder, i", cases("encode"))
def test_encoding_equals_the_reference(folder, i):
    case = GOLDEN["tokenizers"][folder]["encode"][i]
    tok = tok_of(folder)
    assert tok(case["text"])["input_ids"] == case["input_ids"]
    assert tok.tokenize(case["text"]) == case["tokens"]


@pytest.mark.parametrize("folder", FOLDERS)
def test_vocabulary_and_special_tokens(folder):
    tok, want = tok_of(folder), GOLDEN["tokenizers"][folder]
    assert type(tok) is Wav2Vec2CTCTokenizer
    assert (tok.vocab_size, len(tok), tok.word_delimiter_token_id) == (want["vocab_size"], want["len"],
                                                                       want["word_delimiter_token_id"])
    assert sorted(tok.all_special_ids) == want["special_ids"]
    assert tok.do_lower_case is want["do_lower_case"]


def test_the_reference_reads_our_save():
    recorded = GOLDEN.get("roundtrip")
    assert recorded, "run scripts/golden_speech_encoders.py: it records the reference reading our save"
    assert all(r == {"class": "Wav2Vec2CTCTokenizer", "same_outputs": True} for r in recorded.values())


@pytest.mark.parametrize("folder", FOLDERS)
def test_our_save_loads_back(folder, tmp_path):
    tok = tok_of(folder)
    tok.save_pretrained(tmp_path)
    assert sorted(p.name for p in tmp_path.iterdir()) == ["special_tokens_map.json", "tokenizer_config.json",
                                                          "vocab.json"]
    back = AutoTokenizer.from_pretrained(tmp_path)
    assert type(back) is Wav2Vec2CTCTokenizer and back.do_lower_case == tok.do_lower_case
    ids = [11, 11, 0, 5, 4, 4, 18, 0, 18, 1]
    assert back.decode(ids, output_word_offsets=True) == tok.decode(ids, output_word_offsets=True)
    assert back("hello there").input_ids == tok("hello there").input_ids


def test_tensors_numpy_and_copies_decode_alike():
    tok = tok_of("wav2vec2_ctc")
    ids = [11, 11, 0, 5, 4, 18]
    want = tok.decode(ids)
    assert want == "HE W"
    assert tok.decode(torch.tensor(ids)) == tok.decode(torch.tensor(ids).numpy()) == want
    assert tok.decode([ids, ids]) == [want, want]
    assert copy.deepcopy(tok).decode(ids) == pickle.loads(pickle.dumps(tok)).decode(ids) == want
    padded = tok(["HI", "HELLO"], padding=True, return_tensors="pt")
    assert padded.input_ids[0, 2:].tolist() == [0, 0, 0] and padded.attention_mask[0].sum() == 2


def test_multilingual_vocabularies_need_a_target_language(tmp_path):
    vocab = {"eng": {"<pad>": 0, "<unk>": 1, "|": 2, "a": 3, "b": 4},
             "fra": {"<pad>": 0, "<unk>": 1, "|": 2, "é": 3, "b": 4, "c": 5}}
    (tmp_path / "vocab.json").write_text(json.dumps(vocab))
    (tmp_path / "tokenizer_config.json").write_text(json.dumps({"tokenizer_class": "Wav2Vec2CTCTokenizer"}))
    with pytest.raises(TokenizerLoadError, match="target_lang"):
        AutoTokenizer.from_pretrained(tmp_path)
    tok = AutoTokenizer.from_pretrained(tmp_path, target_lang="fra")
    assert tok.decode([3, 3, 0, 4, 2, 5]) == "éb c" and tok("é c").input_ids == [3, 2, 5]
    tok.set_target_lang("eng")
    assert tok.decode([3, 3, 0, 4, 2, 1]) == "ab <unk>" and tok.vocab_size == 5
    tok.save_pretrained(tmp_path / "saved")
    assert json.loads((tmp_path / "saved" / "vocab.json").read_text()) == vocab


def test_a_folder_without_vocab_json_is_a_named_error(tmp_path):
    (tmp_path / "tokenizer_config.json").write_text(json.dumps({"tokenizer_class": "Wav2Vec2CTCTokenizer"}))
    with pytest.raises(TokenizerNotFoundError, match="vocab.json"):
        AutoTokenizer.from_pretrained(tmp_path)


def test_from_vocab():
    tok = Wav2Vec2CTCTokenizer.from_vocab({"<pad>": 0, "<unk>": 1, "|": 2, "A": 3, "B": 4}, do_lower_case=True)
    assert tok.decode([3, 0, 3, 3, 2, 2, 4]) == "aa b"
    assert tok("ab a").input_ids == [3, 4, 2, 3]


def test_a_checkpoint_without_tokenizer_class_is_picked_by_its_model_type(tmp_path):
    """As facebook/wav2vec2-base-960h: tokenizer_config.json names no class; config.json's
    model_type does (the reference's rule)."""
    source = FIX / "tokenizers" / "wav2vec2_ctc"
    (tmp_path / "vocab.json").write_text((source / "vocab.json").read_text())
    config = json.loads((source / "tokenizer_config.json").read_text())
    del config["tokenizer_class"]
    (tmp_path / "tokenizer_config.json").write_text(json.dumps(config))
    with pytest.raises(TokenizerNotFoundError):
        AutoTokenizer.from_pretrained(tmp_path)   # no model type: nothing says what vocab.json is
    (tmp_path / "config.json").write_text(json.dumps({"model_type": "hubert"}))
    tok = AutoTokenizer.from_pretrained(tmp_path)
    assert type(tok) is Wav2Vec2CTCTokenizer and tok.decode([11, 11, 0, 10]) == "HI"
