"""Summarization and translation pipelines against the reference 4.57.6's outputs
(scripts/golden_seq2seq_pipelines.py), and their errors."""

from __future__ import annotations

import json
import shutil
from pathlib import Path

import pytest
import torch

from pretrained import pipeline
from pretrained.errors import InvalidInputError
from pretrained.pipelines.text2text import SummarizationPipeline, TranslationPipeline

FIX = Path(__file__).resolve().parent / "fixtures"
GOLDEN = json.loads((FIX / "goldens" / "seq2seq_pipelines.json").read_text())
CASES = [(name, i, case) for name, cases in GOLDEN["models"].items() for i, case in enumerate(cases)]


def _plain(x):
    if isinstance(x, torch.Tensor):
        return x.tolist()
    if isinstance(x, dict):
        return {k: _plain(v) for k, v in x.items()}
    if isinstance(x, list):
        return [_plain(v) for v in x]
    return x


@pytest.mark.parametrize("name,index,case", CASES, ids=[f"{n}-{i}-{c['task']}" for n, i, c in CASES])
def test_outputs_equal_the_reference(name, index, case):
    pipe = pipeline(case["task"], model=str(FIX / "models" / name))
    assert _plain(pipe(case["inputs"], **case["kwargs"])) == case["output"]


@pytest.fixture(scope="module")
def summarizer():
    return pipeline("summarization", model=str(FIX / "models" / "t5-pipeline-tiny"))


def test_task_names_and_the_model_settings(summarizer):
    assert isinstance(summarizer, SummarizationPipeline) and summarizer.prefix == "summarize: "
    cfg = summarizer.generation_config
    assert (cfg.num_beams, cfg.max_length, cfg.max_new_tokens, cfg.no_repeat_ngram_size) == (4, 24, None, 3)
    tr = pipeline("translation_en_to_fr", model=str(FIX / "models" / "t5-pipeline-tiny"))
    assert isinstance(tr, TranslationPipeline) and tr.task == "translation_en_to_fr"
    assert tr.prefix == "translate English to French: " and tr.generation_config.num_beams == 3
    assert pipeline("translation", model=str(FIX / "models" / "t5-pipeline-tiny")).task == "translation_en_to_fr"
    assert "summarization" in repr(summarizer)


def test_bad_input_gets_named_errors(summarizer):
    with pytest.raises(InvalidInputError, match="empty text"):
        summarizer("   ")
    with pytest.raises(InvalidInputError, match="below min_length"):
        summarizer("Some text to summarize here.", max_length=3, min_length=8)
    with pytest.raises(InvalidInputError, match="must be a string"):
        summarizer([3])
    with pytest.raises(InvalidInputError, match="translation only"):
        summarizer("text", src_lang="en")
    with pytest.raises(InvalidInputError, match="unknown task"):
        pipeline("translation_en_fr", model=str(FIX / "models" / "t5-pipeline-tiny"))
    with pytest.raises(InvalidInputError, match="encoder-decoder"):
        from pretrained.models.gpt2 import GPT2Config, GPT2LMHeadModel

        SummarizationPipeline(GPT2LMHeadModel.from_config(GPT2Config(n_layer=1, n_embd=8, n_head=2)),
                              summarizer.tokenizer)


def test_an_input_over_the_position_table_needs_truncation(summarizer):
    summarizer.model.config.max_position_embeddings = 16   # as BART/Marian have one
    try:
        with pytest.raises(InvalidInputError, match="truncation=True"):
            summarizer("word " * 40)
        assert summarizer("word " * 40, truncation=True, max_length=8, num_beams=1)
    finally:
        del summarizer.model.config.max_position_embeddings


@pytest.fixture(scope="module")
def mbart_translator():
    from pretrained import AutoConfig, AutoModelForSeq2SeqLM, AutoTokenizer

    tok = AutoTokenizer.from_pretrained(FIX / "tokenizers" / "mbart")
    cfg = AutoConfig.from_pretrained(FIX / "models" / "mbart-tiny-lm")
    cfg.vocab_size = len(tok)
    torch.manual_seed(0)
    model = AutoModelForSeq2SeqLM.from_config(cfg)
    return model, tok


def test_a_multilingual_model_takes_the_pair_and_forces_the_target_code(mbart_translator):
    model, tok = mbart_translator
    fr = tok.convert_tokens_to_ids("fr_XX")
    pipe = pipeline("translation", model=model, tokenizer=tok)
    out = pipe("A small text editor.", src_lang="en_XX", tgt_lang="fr_XX", return_tensors=True,
               num_beams=1, max_new_tokens=4)
    ids = out[0]["translation_token_ids"].tolist()
    assert ids[1] == fr                        # right after the decoder start token
    assert tok.src_lang == "en_XX"
    named = pipeline("translation_en_to_fr", model=model, tokenizer=tok)  # 'fr' -> its one code
    assert named("Hello.", return_tensors=True, num_beams=1, max_new_tokens=3)[0][
        "translation_token_ids"].tolist()[1] == fr
    with pytest.raises(InvalidInputError, match="src_lang= and tgt_lang="):
        pipe("A small text editor.")
    with pytest.raises(InvalidInputError, match="not a language code"):
        pipe("A small text editor.", src_lang="en_XX", tgt_lang="xx_YY")


def test_truncation_says_how_long_the_input_was(summarizer, caplog):
    with caplog.at_level("WARNING", logger="pretrained"):
        summarizer("word " * 100, truncation=True, max_length=8, num_beams=1)
    assert any("tokens was cut to its first 64" in r.getMessage() for r in caplog.records)


def test_the_default_length_stops_at_the_decoders_last_position():
    translate = pipeline("translation_en_to_fr", model=str(FIX / "models" / "marian-pipeline-tiny"))
    # as for a model whose generation_config.json sets no max_length: the pipeline's default only
    translate.generation_config.max_length = None
    translate.generation_config.max_new_tokens = 256
    ids = translate("A small text editor.", num_beams=1, min_new_tokens=70, return_tensors=True)
    assert len(ids[0]["translation_token_ids"]) == 64   # the start token + 63: all 64 positions
    with pytest.raises(InvalidInputError, match="maximum context length is 64"):
        translate("A small text editor.", num_beams=1, max_new_tokens=100)   # chosen: an error


def test_a_pair_the_model_does_not_declare_is_a_named_error(tmp_path, monkeypatch):
    """Issue 15: T5 names its pairs in task_specific_params, a one-target Marian in its tokenizer's
    source_lang/target_lang; another pair was silently translated into the declared target."""
    t5 = FIX / "models" / "t5-pipeline-tiny"
    with pytest.raises(InvalidInputError, match="translates en->fr, not en->de"):
        pipeline("translation_en_to_de", model=str(t5))
    translate = pipeline("translation", model=str(t5))
    with pytest.raises(InvalidInputError, match="translates en->fr, not en->de"):
        translate("Hello.", src_lang="en", tgt_lang="de")
    assert translate("Hello.", src_lang="en", tgt_lang="fr", num_beams=1, max_new_tokens=3)
    marian = tmp_path / "marian"
    shutil.copytree(FIX / "models" / "marian-pipeline-tiny", marian)
    config = json.loads((marian / "tokenizer_config.json").read_text())
    config.update(source_lang="en", target_lang="fr")
    (marian / "tokenizer_config.json").write_text(json.dumps(config))
    from pretrained.tokenization.seq2seq import MarianTokenizer

    # the fixture's vocabulary holds >>de<< and >>fr<< (a multi-target model picks its target by
    # that token, so its pair is not checked); a one-target opus-mt model has none
    monkeypatch.setattr(MarianTokenizer, "supported_language_codes", property(lambda self: []))
    translate = pipeline("translation_en_to_fr", model=str(marian))
    assert translate("A small text editor.", num_beams=1, max_new_tokens=3)
    with pytest.raises(InvalidInputError, match="translates en->fr, not de->fr"):
        translate("Ein kleiner Texteditor.", src_lang="de")
    with pytest.raises(InvalidInputError, match="translates en->fr, not en->es"):
        pipeline("translation_en_to_es", model=str(marian))
    assert pipeline("translation_eng_to_fra", model=str(marian))   # other code systems: trusted


def test_src_and_tgt_lang_pick_another_of_t5s_pairs():
    translate = pipeline("translation_en_to_fr", model=str(FIX / "models" / "t5-pipeline-tiny"))
    german = {"early_stopping": False, "num_beams": 2, "prefix": "translate English to German: "}
    translate.model.config.task_specific_params["translation_en_to_de"] = german
    try:
        pre, fwd, _ = translate._split_parameters({"src_lang": "en", "tgt_lang": "de"})
        assert pre["prefix"] == german["prefix"] and fwd["num_beams"] == 2
        ids = translate.preprocess("Hello.", **pre)[0]["input_ids"]
        assert ids == translate.tokenizer("translate English to German: Hello.")["input_ids"]
        assert translate.preprocess("Hello.")[0]["input_ids"] == \
            translate.tokenizer("translate English to French: Hello.")["input_ids"]
        assert translate("Hello.", src_lang="en", tgt_lang="de", max_new_tokens=3)
    finally:
        del translate.model.config.task_specific_params["translation_en_to_de"]
