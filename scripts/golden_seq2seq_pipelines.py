"""Goldens for the summarization and translation pipelines, from transformers 4.57.6 (the last
release with them; 5.x removed both).

    python -m venv /tmp/ref4 && /tmp/ref4/bin/pip install torch==2.13.0 transformers==4.57.6 sentencepiece
    /tmp/ref4/bin/python scripts/golden_seq2seq_pipelines.py

Builds tiny random encoder-decoders with a real tokenizer of tests/fixtures/tokenizers/ (T5 with
the ``task_specific_params`` t5-small ships: prefixes, beams, lengths; Marian and BART when the
reference and our fixtures have them), saves each with its tokenizer under
tests/fixtures/models/<name>/ and records in tests/fixtures/goldens/seq2seq_pipelines.json every
case of CASES: the task, the call's inputs and keyword arguments, and the reference's output.
"""

from __future__ import annotations

import json
import shutil
import sys
from pathlib import Path

import torch
import transformers

ROOT = Path(__file__).resolve().parent.parent
FIX = ROOT / "tests" / "fixtures"
OUT = FIX / "goldens" / "seq2seq_pipelines.json"

assert transformers.__version__.startswith("4.57"), "run under transformers 4.57.x (see the doc)"

TEXTS = [
    "The quick brown fox jumps over the lazy dog near the river bank.",
    "Debian is a free operating system, developed by thousands of volunteers.",
    "This package provides a small library for parsing configuration files.",
]
LONG = " ".join(TEXTS * 12)

T5_TASK_PARAMS = {  # as google-t5/t5-small's config.json has them (lengths shortened)
    "summarization": {"early_stopping": True, "length_penalty": 2.0, "max_length": 24,
                      "min_length": 6, "no_repeat_ngram_size": 3, "num_beams": 4,
                      "prefix": "summarize: "},
    "translation_en_to_fr": {"early_stopping": True, "max_length": 20, "num_beams": 3,
                             "prefix": "translate English to French: "},
}

# name -> (model maker, tokenizer folder under tests/fixtures/tokenizers)
CASES = {
    "t5": [
        ("summarization", TEXTS[0], {}),
        ("summarization", TEXTS[1], {"min_length": 4, "max_length": 12, "num_beams": 2,
                                     "no_repeat_ngram_size": 2}),
        ("summarization", TEXTS, {"batch_size": 2}),
        ("summarization", TEXTS[:2], {"return_tensors": True}),
        ("summarization", TEXTS[2], {"num_beams": 3, "num_return_sequences": 2, "max_new_tokens": 7}),
        ("summarization", LONG, {"truncation": True, "max_length": 10}),
        ("translation_en_to_fr", TEXTS[0], {}),
        ("translation_en_to_fr", TEXTS, {"batch_size": 8}),
        ("translation_en_to_fr", TEXTS[1], {"do_sample": False, "num_beams": 1, "max_length": 9,
                                            "clean_up_tokenization_spaces": True}),
        ("translation", TEXTS[2], {}),
    ],
    "marian": [
        ("translation_en_to_fr", TEXTS[0], {}),
        ("translation_en_to_fr", TEXTS, {"batch_size": 4, "max_length": 16}),
        ("translation_en_to_fr", TEXTS[1], {"num_beams": 2, "num_return_sequences": 2,
                                            "max_new_tokens": 6, "return_tensors": True}),
        ("translation_en_to_fr", LONG, {"truncation": True, "num_beams": 1, "max_new_tokens": 5}),
    ],
    "pegasus": [
        ("summarization", TEXTS[1], {}),
        ("summarization", TEXTS, {"batch_size": 3, "num_beams": 2, "max_length": 10}),
    ],
    "mbart": [
        ("translation_en_to_fr", TEXTS[0], {"src_lang": "en_XX", "tgt_lang": "fr_XX"}),
        ("translation", TEXTS, {"src_lang": "en_XX", "tgt_lang": "fr_XX", "batch_size": 2,
                                "max_new_tokens": 6}),
    ],
    "bart": [
        ("summarization", TEXTS[0], {}),
        ("summarization", TEXTS, {"batch_size": 2}),
        ("summarization", TEXTS[2], {"min_length": 3, "max_length": 9, "num_beams": 3,
                                     "no_repeat_ngram_size": 2, "encoder_no_repeat_ngram_size": 3}),
        ("summarization", LONG, {"truncation": True, "max_length": 8}),
    ],
}


def make_t5(folder: Path) -> None:
    tok = transformers.T5TokenizerFast(vocab_file=str(FIX / "tokenizers" / "t5_spm" / "spiece.model"),
                                      add_prefix_space=True)  # as t5-small's tokenizer.json
    torch.manual_seed(7)
    config = transformers.T5Config(vocab_size=len(tok), d_model=32, d_kv=8, d_ff=48, num_layers=2,
                                   num_heads=4, relative_attention_num_buckets=8,
                                   relative_attention_max_distance=16,
                                   task_specific_params=T5_TASK_PARAMS, n_positions=64,
                                   decoder_start_token_id=0)
    model = transformers.T5ForConditionalGeneration(config).eval()
    model.save_pretrained(folder)
    tok.model_max_length = 64
    tok.save_pretrained(folder)


def make_marian(folder: Path) -> None:
    src = FIX / "tokenizers" / "marian"
    tok = transformers.MarianTokenizer(str(src / "source.spm"), str(src / "target.spm"),
                                       str(src / "vocab.json"), model_max_length=64)
    torch.manual_seed(8)
    config = transformers.MarianConfig(
        vocab_size=len(tok), d_model=32, encoder_layers=2, decoder_layers=2,
        encoder_attention_heads=4, decoder_attention_heads=4, encoder_ffn_dim=48,
        decoder_ffn_dim=48, max_position_embeddings=64, pad_token_id=tok.pad_token_id,
        eos_token_id=tok.eos_token_id, decoder_start_token_id=tok.pad_token_id)
    transformers.MarianMTModel(config).eval().save_pretrained(folder)
    transformers.GenerationConfig(  # as Helsinki-NLP/opus-mt-en-fr ships it (lengths shortened)
        bad_words_ids=[[tok.pad_token_id]], decoder_start_token_id=tok.pad_token_id,
        eos_token_id=tok.eos_token_id, forced_eos_token_id=tok.eos_token_id, max_length=24,
        num_beams=3, pad_token_id=tok.pad_token_id).save_pretrained(folder)
    tok.save_pretrained(folder)


def make_bart(folder: Path) -> None:
    tok = transformers.BartTokenizerFast(tokenizer_file=str(FIX / "tokenizers" / "bart" / "tokenizer.json"),
                                         model_max_length=64)
    torch.manual_seed(9)
    config = transformers.BartConfig(
        vocab_size=len(tok), d_model=32, encoder_layers=2, decoder_layers=2,
        encoder_attention_heads=4, decoder_attention_heads=4, encoder_ffn_dim=48,
        decoder_ffn_dim=48, max_position_embeddings=64, pad_token_id=tok.pad_token_id,
        bos_token_id=tok.bos_token_id, eos_token_id=tok.eos_token_id,
        decoder_start_token_id=tok.eos_token_id, forced_eos_token_id=tok.eos_token_id)
    transformers.BartForConditionalGeneration(config).eval().save_pretrained(folder)
    transformers.GenerationConfig(  # as facebook/bart-large-cnn ships it (lengths shortened)
        bos_token_id=tok.bos_token_id, decoder_start_token_id=tok.eos_token_id,
        early_stopping=True, eos_token_id=tok.eos_token_id, forced_bos_token_id=tok.bos_token_id,
        forced_eos_token_id=tok.eos_token_id, length_penalty=2.0, max_length=22, min_length=5,
        no_repeat_ngram_size=3, num_beams=4, pad_token_id=tok.pad_token_id).save_pretrained(folder)
    tok.save_pretrained(folder)


def make_pegasus(folder: Path) -> None:
    tok = transformers.PegasusTokenizerFast(
        vocab_file=str(FIX / "tokenizers" / "pegasus_spm" / "spiece.model"), model_max_length=64)
    torch.manual_seed(10)
    config = transformers.PegasusConfig(
        vocab_size=len(tok), d_model=32, encoder_layers=2, decoder_layers=2,
        encoder_attention_heads=4, decoder_attention_heads=4, encoder_ffn_dim=48,
        decoder_ffn_dim=48, max_position_embeddings=64, pad_token_id=tok.pad_token_id,
        eos_token_id=tok.eos_token_id, decoder_start_token_id=tok.pad_token_id,
        forced_eos_token_id=tok.eos_token_id)
    transformers.PegasusForConditionalGeneration(config).eval().save_pretrained(folder)
    transformers.GenerationConfig(  # as google/pegasus-xsum ships it (lengths shortened)
        decoder_start_token_id=tok.pad_token_id, eos_token_id=tok.eos_token_id,
        forced_eos_token_id=tok.eos_token_id, length_penalty=0.6, max_length=16, num_beams=3,
        pad_token_id=tok.pad_token_id).save_pretrained(folder)
    tok.save_pretrained(folder)


def make_mbart(folder: Path) -> None:
    tok = transformers.MBartTokenizerFast(
        vocab_file=str(FIX / "tokenizers" / "mbart_spm" / "sentencepiece.bpe.model"),
        src_lang="en_XX", tgt_lang="fr_XX", model_max_length=64)
    torch.manual_seed(11)
    config = transformers.MBartConfig(
        vocab_size=len(tok), d_model=32, encoder_layers=2, decoder_layers=2,
        encoder_attention_heads=4, decoder_attention_heads=4, encoder_ffn_dim=48,
        decoder_ffn_dim=48, max_position_embeddings=64, pad_token_id=tok.pad_token_id,
        bos_token_id=0, eos_token_id=tok.eos_token_id, decoder_start_token_id=tok.eos_token_id)
    transformers.MBartForConditionalGeneration(config).eval().save_pretrained(folder)
    transformers.GenerationConfig(  # as facebook/mbart-large-en-ro ships it (lengths shortened)
        bos_token_id=0, decoder_start_token_id=tok.eos_token_id, eos_token_id=tok.eos_token_id,
        forced_eos_token_id=tok.eos_token_id, max_length=14, num_beams=2,
        pad_token_id=tok.pad_token_id).save_pretrained(folder)
    tok.save_pretrained(folder)


MAKERS = {"t5": ("t5-pipeline-tiny", make_t5), "pegasus": ("pegasus-pipeline-tiny", make_pegasus),
          "mbart": ("mbart-pipeline-tiny", make_mbart), "marian": ("marian-pipeline-tiny", make_marian),
          "bart": ("bart-pipeline-tiny", make_bart)}


def jsonable(x):
    if isinstance(x, torch.Tensor):
        return x.tolist()
    if isinstance(x, dict):
        return {k: jsonable(v) for k, v in x.items()}
    if isinstance(x, (list, tuple)):
        return [jsonable(v) for v in x]
    return x


def main() -> None:
    out = {"transformers": transformers.__version__, "models": {}}
    for key, (name, make) in MAKERS.items():
        folder = FIX / "models" / name
        if folder.exists():
            shutil.rmtree(folder)
        make(folder)
        records = []
        for task, inputs, kwargs in CASES[key]:
            pipe = transformers.pipeline(task, model=str(folder))
            # Ours obeys a max_length from the call or the task's parameters; the reference lets
            # its default max_new_tokens=256 win unless told max_new_tokens=None (see
            # pretrained/pipelines/text2text.py): that is what it is told here.
            ref_kwargs = dict(kwargs)
            params = pipe.model.config.task_specific_params or {}
            task_max = (params.get(pipe.task) or {}).get("max_length") is not None
            if "max_new_tokens" not in kwargs and ("max_length" in kwargs or task_max):
                ref_kwargs["max_new_tokens"] = None
            result = pipe(inputs, **ref_kwargs)
            records.append({"task": task, "inputs": inputs, "kwargs": kwargs,
                            "output": jsonable(result)})
            print(name, task, kwargs, str(jsonable(result))[:100], file=sys.stderr)
        out["models"][name] = records
    OUT.write_text(json.dumps(out, indent=1, ensure_ascii=False) + "\n")


if __name__ == "__main__":
    main()
