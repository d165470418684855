"""Build the tokenizer test fixtures and record the reference library's outputs on them.

Imports the reference (`transformers`); run it in the reference venv:

    /work/refvenv/bin/python scripts/golden_tokenizers.py

(``scripts/make_goldens.py`` also calls :func:`main`.)

Writes, under tests/fixtures/tokenizers/:
  bert_wordpiece/      tokenizer.json + tokenizer_config.json (BertTokenizer, uncased WordPiece)
  bert_vocab_only/     vocab.txt + tokenizer_config.json       (the reference converts it)
  gpt2_bpe/            tokenizer.json + tokenizer_config.json (GPT2Tokenizer, byte-level BPE,
                       ChatML special tokens and chat template)
  gpt2_vocab_merges/   vocab.json + merges.txt + tokenizer_config.json (add_prefix_space=true)
  goldens.json         per fixture: attributes; per case: the reference's output; and the round
                       trip (our save_pretrained read back by the reference, compared case by case)

The tokenizers are trained here with the `tokenizers` library on a deterministic generated corpus.
"""

from __future__ import annotations

import hashlib
import json
import random
import shutil
import sys
from collections import Counter
import tempfile
from pathlib import Path

REPO = Path(__file__).resolve().parent.parent
OUT = REPO / "tests" / "fixtures" / "tokenizers"

SPECIAL_NAMES = ("bos_token", "eos_token", "unk_token", "sep_token", "pad_token", "cls_token", "mask_token")

CHATML_TEMPLATE = (
    "{% if messages[0]['role'] != 'system' %}"
    "{{ '<|im_start|>system\\nYou are a helpful assistant.<|im_end|>\\n' }}"
    "{% endif %}"
    "{% if tools %}{{ '<|im_start|>tools\\n' + (tools | tojson) + '<|im_end|>\\n' }}{% endif %}"
    "{% for message in messages %}"
    "{{ '<|im_start|>' + message['role'] + '\\n' + message['content'] | trim + '<|im_end|>\\n' }}"
    "{% endfor %}"
    "{% if add_generation_prompt %}{{ '<|im_start|>assistant\\n' }}{% endif %}"
)


# --- corpus ---------------------------------------------------------------------------------------
WORDS = (
    "the quick brown fox jumps over lazy dog a an and or but if then else when while model token "
    "tokenizer transformer attention layer embedding vector matrix learning training data set test "
    "hello world python library function class method return value string number list dict error "
    "unbelievable unhappiness running runner walked talking international organization playing "
    "it's don't won't we're I'm they've she'll you'd café naïve façade résumé über straße garçon "
    "über Zürich München Ελληνικά Привет мир 日本 語 中文 漢字 한국어 مرحبا שלום 🤗 🚀 👍 ✨"
).split()
PUNCT = [".", ",", "!", "?", ";", ":", "-", "(", ")", '"', "'"]


def corpus(n_lines: int = 400) -> list[str]:
    rng = random.Random(1234)
    lines = []
    for i in range(n_lines):
        n = rng.randint(4, 18)
        words = []
        for _ in range(n):
            w = rng.choice(WORDS)
            if rng.random() < 0.15:
                w = w.capitalize()
            if rng.random() < 0.1:
                w = str(rng.randint(0, 9999))
            words.append(w)
            if rng.random() < 0.12:
                words.append(rng.choice(PUNCT))
        line = " ".join(words)
        if i % 7 == 0:
            line = line.upper()
        lines.append(line)
    return lines


LONG_TEXT = " ".join(corpus(12))[:400]  # a long-ish text (goldens store it once, as "$LONG_TEXT")


# --- fixtures -------------------------------------------------------------------------------------
def write_json(path: Path, obj) -> None:
    path.write_text(json.dumps(obj, indent=2, ensure_ascii=False, sort_keys=True) + "\n", encoding="utf-8")


def build_fixtures() -> None:
    from tokenizers import AddedToken, Tokenizer, decoders, normalizers, pre_tokenizers, processors, trainers
    from tokenizers.models import BPE, WordPiece

    # only this script's folders: the folder also holds golden_seq2seq_tokenizers.py's fixtures
    for name in FIXTURES:
        shutil.rmtree(OUT / name, ignore_errors=True)
    OUT.mkdir(parents=True, exist_ok=True)
    lines = corpus()

    # (1) BERT-style uncased WordPiece. The library's WordPieceTrainer is not deterministic (ties
    # between pairs are broken in hash order), so the merges are learned by its BPE trainer, which
    # is, and the WordPiece vocabulary is read off the BPE segmentation of the corpus.
    normalizer = normalizers.BertNormalizer(
        clean_text=True, handle_chinese_chars=True, strip_accents=None, lowercase=True
    )
    alphabet = sorted({c for line in lines for c in normalizer.normalize_str(line) if not c.isspace()})
    bpe = Tokenizer(BPE())
    bpe.normalizer = normalizer
    bpe.pre_tokenizer = pre_tokenizers.BertPreTokenizer()
    bpe.train_from_iterator(
        lines, trainers.BpeTrainer(vocab_size=600, initial_alphabet=alphabet, show_progress=False)
    )
    counts: Counter = Counter()
    for encoding in bpe.encode_batch(lines):
        previous = None
        for token, word in zip(encoding.tokens, encoding.word_ids, strict=True):
            counts[token if word != previous else "##" + token] += 1
            previous = word
    specials = ["[PAD]", "[UNK]", "[CLS]", "[SEP]", "[MASK]"]
    pieces = specials + alphabet + ["##" + c for c in alphabet]
    known = set(pieces)
    pieces += [t for t, _ in sorted(counts.items(), key=lambda kv: (-kv[1], kv[0])) if t not in known]
    bert = Tokenizer(
        WordPiece({t: i for i, t in enumerate(pieces[:500])}, unk_token="[UNK]", max_input_chars_per_word=100)
    )
    bert.normalizer = normalizer
    bert.pre_tokenizer = pre_tokenizers.BertPreTokenizer()
    bert.decoder = decoders.WordPiece(prefix="##")
    bert.add_special_tokens(specials)
    cls_id, sep_id = bert.token_to_id("[CLS]"), bert.token_to_id("[SEP]")
    bert.post_processor = processors.TemplateProcessing(
        single="[CLS]:0 $A:0 [SEP]:0",
        pair="[CLS]:0 $A:0 [SEP]:0 $B:1 [SEP]:1",
        special_tokens=[("[CLS]", cls_id), ("[SEP]", sep_id)],
    )
    d = OUT / "bert_wordpiece"
    d.mkdir()
    bert.save(str(d / "tokenizer.json"), pretty=False)
    write_json(
        d / "tokenizer_config.json",
        {
            "tokenizer_class": "BertTokenizer",
            "do_lower_case": True,
            "model_max_length": 64,
            "clean_up_tokenization_spaces": True,
            "unk_token": "[UNK]",
            "sep_token": "[SEP]",
            "pad_token": "[PAD]",
            "cls_token": "[CLS]",
            "mask_token": {
                "__type": "AddedToken",
                "content": "[MASK]",
                "lstrip": False,
                "normalized": False,
                "rstrip": False,
                "single_word": False,
                "special": True,
            },
        },
    )
    # the same vocabulary as a bare vocab.txt (the reference converts it)
    d = OUT / "bert_vocab_only"
    d.mkdir()
    vocab = bert.get_vocab(with_added_tokens=False)
    (d / "vocab.txt").write_text(
        "".join(t + "\n" for t, _ in sorted(vocab.items(), key=lambda kv: kv[1])), encoding="utf-8"
    )
    write_json(d / "tokenizer_config.json", {"tokenizer_class": "BertTokenizer", "do_lower_case": True})

    # (2) GPT-2-style byte-level BPE
    gpt = Tokenizer(BPE())
    gpt.pre_tokenizer = pre_tokenizers.ByteLevel(add_prefix_space=False)
    gpt.decoder = decoders.ByteLevel()
    gpt.train_from_iterator(
        lines,
        trainers.BpeTrainer(
            vocab_size=500,
            special_tokens=["<|endoftext|>"],
            initial_alphabet=pre_tokenizers.ByteLevel.alphabet(),
            show_progress=False,
        ),
    )
    gpt.post_processor = processors.ByteLevel(trim_offsets=False)
    d = OUT / "gpt2_vocab_merges"
    d.mkdir()
    gpt.model.save(str(d))
    write_json(d / "tokenizer_config.json", {"tokenizer_class": "GPT2Tokenizer", "add_prefix_space": True})

    gpt.add_special_tokens(
        [AddedToken("<|im_start|>", normalized=False), AddedToken("<|im_end|>", normalized=False)]
    )
    d = OUT / "gpt2_bpe"
    d.mkdir()
    gpt.save(str(d / "tokenizer.json"), pretty=False)
    write_json(
        d / "tokenizer_config.json",
        {
            "tokenizer_class": "GPT2Tokenizer",
            "add_prefix_space": False,
            "bos_token": "<|endoftext|>",
            "eos_token": "<|im_end|>",
            "unk_token": "<|endoftext|>",
            "pad_token": "<|endoftext|>",
            "additional_special_tokens": ["<|im_start|>", "<|im_end|>"],
            "model_max_length": 128,
            "chat_template": CHATML_TEMPLATE,
        },
    )


# --- cases ----------------------------------------------------------------------------------------
TEXTS = [
    "",
    "Hello world!",
    "The quick brown fox jumps over the lazy dog.",
    "Café naïve façade — Über straße, garçon!",
    "日本語のテキストと中文",
    "emoji 🤗🚀 test 👍🏽 and family 👨‍👩‍👧",
    "  leading and trailing spaces  ",
    "tabs\tand\nnewlines\r\nhere",
    "Numbers 12345 and 3.14159, dates 2024-01-31.",
    "don't won't it's we're I'm they've",
    "Ελληνικά Привет мир مرحبا שלום",
    "combining e\u0301 vs \u00e9 and ﬁ ligature",
    "[CLS] literal [SEP] tokens [MASK] [PAD]",
    "<|endoftext|> inside <|im_start|> text",
    "UNBELIEVABLE Unhappiness internationalization",
    LONG_TEXT,
]
BATCH = [TEXTS[1], TEXTS[2], TEXTS[3], TEXTS[0], TEXTS[5]]
PAIRS_A = [
    "What is the model?",
    "Where is München?",
    "short",
    "A much longer question about tokenizers and training data sets.",
]
PAIRS_B = [
    "The model is a transformer with attention.",
    "It is in Germany.",
    "The second sequence is much longer than the first one here.",
    "Yes.",
]
WORDS_INPUT = [["Hello", "world", "!"], ["unbelievable", "café", "🤗"]]

FIXTURES = ["bert_wordpiece", "bert_vocab_only", "gpt2_bpe", "gpt2_vocab_merges"]


def call_cases() -> list[tuple[str, dict, dict]]:
    """(name, args, kwargs) for tokenizer.__call__, run on every fixture."""
    cases: list[tuple[str, dict, dict]] = []
    for i, t in enumerate(TEXTS):
        cases.append((f"single_{i}", {"text": t}, {}))
    cases += [
        (
            "single_offsets_specials_len",
            {"text": TEXTS[3]},
            {"return_offsets_mapping": True, "return_special_tokens_mask": True, "return_length": True},
        ),
        ("single_emoji_offsets", {"text": TEXTS[5]}, {"return_offsets_mapping": True}),
        ("single_no_specials", {"text": TEXTS[2]}, {"add_special_tokens": False}),
        ("single_type_ids_on", {"text": TEXTS[1]}, {"return_token_type_ids": True}),
        ("single_mask_off", {"text": TEXTS[1]}, {"return_attention_mask": False}),
        ("single_pt", {"text": TEXTS[2]}, {"return_tensors": "pt"}),
        ("single_np", {"text": TEXTS[2]}, {"return_tensors": "np"}),
        ("single_max_length_only", {"text": LONG_TEXT}, {"max_length": 12}),
        ("single_trunc_model_max", {"text": LONG_TEXT}, {"truncation": True}),
        ("single_pad_max_len", {"text": TEXTS[1]}, {"padding": "max_length", "max_length": 16}),
        (
            "single_pad_max_len_left",
            {"text": TEXTS[1]},
            {"padding": "max_length", "max_length": 16, "padding_side": "left"},
        ),
        ("single_pad_multiple", {"text": TEXTS[2]}, {"padding": True, "pad_to_multiple_of": 8}),
        ("batch", {"text": BATCH}, {}),
        ("batch_pad", {"text": BATCH}, {"padding": True}),
        ("batch_pad_longest_pt", {"text": BATCH}, {"padding": "longest", "return_tensors": "pt"}),
        (
            "batch_pad_np_left",
            {"text": BATCH},
            {"padding": True, "padding_side": "left", "return_tensors": "np"},
        ),
        (
            "batch_pad_max_length_trunc",
            {"text": BATCH + [LONG_TEXT]},
            {"padding": "max_length", "max_length": 20, "truncation": True},
        ),
        (
            "batch_pad_multiple_trunc",
            {"text": BATCH + [LONG_TEXT]},
            {"padding": True, "truncation": True, "max_length": 24, "pad_to_multiple_of": 8},
        ),
        (
            "batch_offsets",
            {"text": BATCH},
            {
                "padding": True,
                "return_offsets_mapping": True,
                "return_special_tokens_mask": True,
                "return_length": True,
            },
        ),
        ("pair_single", {"text": PAIRS_A[0], "text_pair": PAIRS_B[0]}, {}),
        (
            "pair_single_offsets",
            {"text": PAIRS_A[1], "text_pair": PAIRS_B[1]},
            {"return_offsets_mapping": True, "return_token_type_ids": True},
        ),
        (
            "pair_batch_pad",
            {"text": PAIRS_A, "text_pair": PAIRS_B},
            {"padding": True, "return_token_type_ids": True},
        ),
        (
            "pair_trunc_longest_first",
            {"text": PAIRS_A, "text_pair": PAIRS_B},
            {"truncation": True, "max_length": 12, "padding": True},
        ),
        (
            "pair_trunc_only_second",
            {"text": PAIRS_A[:3], "text_pair": PAIRS_B[:3]},
            {"truncation": "only_second", "max_length": 18},
        ),
        (  # the first sequence alone does not fit: an error
            "pair_trunc_only_second_too_short",
            {"text": PAIRS_A[3:], "text_pair": PAIRS_B[3:]},
            {"truncation": "only_second", "max_length": 6},
        ),
        (
            "pair_trunc_only_first",
            {"text": PAIRS_A[3:], "text_pair": PAIRS_B[3:]},
            {"truncation": "only_first", "max_length": 10},
        ),
        (
            "overflow_single",
            {"text": TEXTS[2]},
            {"truncation": True, "max_length": 8, "stride": 2, "return_overflowing_tokens": True},
        ),
        (
            "overflow_batch_pad",
            {"text": [TEXTS[2], TEXTS[1], TEXTS[3]]},
            {
                "truncation": True,
                "max_length": 8,
                "stride": 3,
                "return_overflowing_tokens": True,
                "padding": True,
                "return_offsets_mapping": True,
            },
        ),
        (
            "overflow_pair_only_second",
            {"text": [PAIRS_A[0]], "text_pair": [PAIRS_B[2]]},
            {
                "truncation": "only_second",
                "max_length": 18,
                "stride": 2,
                "return_overflowing_tokens": True,
                "padding": "max_length",
            },
        ),
        (
            "overflow_pt",
            {"text": [TEXTS[2], TEXTS[8]]},
            {
                "truncation": True,
                "max_length": 10,
                "stride": 1,
                "return_overflowing_tokens": True,
                "padding": "max_length",
                "return_tensors": "pt",
            },
        ),
        ("split_words", {"text": WORDS_INPUT[0]}, {"is_split_into_words": True}),
        (
            "split_words_batch",
            {"text": WORDS_INPUT},
            {"is_split_into_words": True, "padding": True, "return_offsets_mapping": True},
        ),
        ("empty_string_pt", {"text": ""}, {"return_tensors": "pt"}),
    ]
    return cases


def other_cases(ref) -> list[tuple[str, str, list, dict]]:
    """(name, method, args, kwargs) for the other methods; decode inputs come from the reference."""
    out: list[tuple[str, str, list, dict]] = []
    for i, t in enumerate(TEXTS):
        ids = ref.encode(t)
        if i in (0, 1, 5, 12, 13):
            out.append((f"encode_{i}", "encode", [t], {}))
        if i in (5, 13):
            out.append((f"convert_ids_{i}", "convert_ids_to_tokens", [ids], {}))
        if i in (2, 5, 12):  # the single_* call cases record every text's tokens already
            out.append((f"tokenize_{i}", "tokenize", [t], {}))
        if i in (1, 3, 5, 7, 9, 12, 13):  # batch_decode_skip covers more
            out.append((f"decode_skip_{i}", "decode", [ids], {"skip_special_tokens": True}))
        out.append((f"decode_{i}", "decode", [ids], {}))
    out.append(("encode_pair", "encode", [PAIRS_A[0], PAIRS_B[0]], {}))
    out.append(("encode_no_specials", "encode", [TEXTS[9]], {"add_special_tokens": False}))
    out.append(("encode_trunc", "encode", [LONG_TEXT], {"truncation": True, "max_length": 9}))
    ids9 = ref.encode(TEXTS[9])
    out.append(("decode_cleanup_on", "decode", [ids9], {"clean_up_tokenization_spaces": True}))
    out.append(("decode_cleanup_off", "decode", [ids9], {"clean_up_tokenization_spaces": False}))
    out.append(("decode_int", "decode", [ids9[1]], {}))
    batch_ids = [ref.encode(t) for t in BATCH]  # ragged is fine for decoding
    out.append(("batch_decode", "batch_decode", [batch_ids], {}))
    out.append(("batch_decode_skip", "batch_decode", [batch_ids], {"skip_special_tokens": True}))
    out.append(("decode_batched_list", "decode", [batch_ids], {"skip_special_tokens": True}))
    out.append(
        (
            "convert_tokens",
            "convert_tokens_to_ids",
            [["hello", "world", "[CLS]", "<|endoftext|>", "not-a-token-xyz"]],
            {},
        )
    )
    out.append(("convert_one_token", "convert_tokens_to_ids", ["the"], {}))
    out.append(("convert_one_id", "convert_ids_to_tokens", [7], {}))
    rows = [{"input_ids": ref.encode(t)} for t in BATCH[:3]]
    out.append(("pad_rows", "pad", [rows], {}))
    out.append(("pad_rows_left_pt", "pad", [rows], {"padding_side": "left", "return_tensors": "pt"}))
    out.append(
        (
            "pad_max_length_multiple",
            "pad",
            [rows],
            {"padding": "max_length", "max_length": 20, "pad_to_multiple_of": 8},
        )
    )
    enc = ref(
        [PAIRS_A[0], PAIRS_A[2]],
        [PAIRS_B[0], PAIRS_B[2]],
        return_token_type_ids=True,
        return_special_tokens_mask=True,
    )
    out.append(("pad_dict_of_lists", "pad", [dict(enc)], {"pad_to_multiple_of": 4}))
    out.append(("pad_no_mask", "pad", [rows], {"return_attention_mask": False}))
    return out


CHAT = [
    {"role": "user", "content": "Hello, who are you?"},
    {"role": "assistant", "content": "I am a tiny test model. "},
    {"role": "user", "content": "Tell me about café and 🤗."},
]
CHAT_SYS = [{"role": "system", "content": "Be brief."}, {"role": "user", "content": "Hi!"}]
TOOLS = [
    {
        "type": "function",
        "function": {
            "name": "get_time",
            "description": "Current time — now",
            "parameters": {"type": "object", "properties": {}},
        },
    }
]


def chat_cases() -> list[tuple[str, list, dict]]:
    return [
        ("chat_text_gen", [CHAT], {"tokenize": False, "add_generation_prompt": True}),
        ("chat_text_nogen", [CHAT_SYS], {"tokenize": False}),
        ("chat_ids", [CHAT], {"add_generation_prompt": True, "return_dict": False}),
        ("chat_dict", [CHAT_SYS], {"add_generation_prompt": True}),
        ("chat_tools", [CHAT_SYS], {"tokenize": False, "tools": TOOLS, "add_generation_prompt": True}),
        ("chat_continue", [CHAT[:2]], {"tokenize": False, "continue_final_message": True}),
        (
            "chat_batch_pt",
            [[CHAT, CHAT_SYS]],
            {"add_generation_prompt": True, "padding": True, "return_tensors": "pt"},
        ),
        (
            "chat_custom_template",
            [CHAT_SYS],
            {
                "tokenize": False,
                "chat_template": "{% for m in messages %}[{{ m.role }}]{{ m.content }}{{ eos_token }}{% endfor %}",
            },
        ),
    ]


# --- running cases --------------------------------------------------------------------------------
def norm(v):
    """JSON-able form of an output: tensors -> {"__tensor__", dtype, shape, value}, tuples -> lists."""
    mod = type(v).__module__
    if mod.startswith("torch") and hasattr(v, "tolist"):
        return {"__tensor__": "pt", "dtype": str(v.dtype), "shape": list(v.shape), "value": v.tolist()}
    if mod.startswith("numpy") and hasattr(v, "tolist") and hasattr(v, "shape"):
        return {"__tensor__": "np", "dtype": str(v.dtype), "shape": list(v.shape), "value": v.tolist()}
    if isinstance(v, dict) or (hasattr(v, "keys") and hasattr(v, "items") and not isinstance(v, str)):
        return {k: norm(x) for k, x in v.items()}
    if isinstance(v, (list, tuple)):
        return [norm(x) for x in v]
    return v


def run_call(tok, args, kwargs, alignment: bool = True):
    """The outputs (and key order); with ``alignment``, also each row's tokens and word ids."""
    enc = tok(**args, **kwargs)
    out = {"data": norm(dict(enc))}  # JSON objects keep their key order: it is checked too
    if alignment:
        rows = enc.encodings or []
        out["tokens"] = [e.tokens for e in rows]
        out["word_ids"] = [list(e.word_ids) for e in rows]
    return out


ALIGNMENT_CASES = ("single_", "split_words", "pair_single", "overflow_single")


def run_method(tok, method, args, kwargs):
    out = getattr(tok, method)(*args, **kwargs)
    if method == "apply_chat_template" and hasattr(out, "keys"):
        return {"batch": norm(dict(out))}
    return norm(out)


def attributes(tok) -> dict:
    vocab = tok.get_vocab()
    return {
        "vocab_size": tok.vocab_size,
        "len": len(tok),
        "vocab_sha256": hashlib.sha256(
            json.dumps(sorted(vocab.items()), ensure_ascii=False).encode()
        ).hexdigest(),
        "special": {n: getattr(tok, n) for n in SPECIAL_NAMES},
        "special_ids": {n + "_id": getattr(tok, n + "_id") for n in SPECIAL_NAMES},
        "all_special_tokens": list(tok.all_special_tokens),
        "all_special_ids": list(tok.all_special_ids),
        "model_input_names": list(tok.model_input_names),
        "padding_side": tok.padding_side,
        "truncation_side": tok.truncation_side,
        "model_max_length": tok.model_max_length,
        "added_vocab": dict(sorted(tok.get_added_vocab().items(), key=lambda kv: kv[1])),
    }


CONVERTED = {"bert_vocab_only": "bert_wordpiece", "gpt2_vocab_merges": "gpt2_bpe"}
CONVERTED_CALL_CASES = (
    "single_",
    "pair_single",
    "pair_batch_pad",
    "batch_pad_max_length_trunc",
    "overflow_single",
    "split_words",
)

LOAD_VARIANTS = [
    ("default", {}),
    ("trunc_left", {"truncation_side": "left"}),
]
TRUNC_LEFT_CASES = {
    "single_max_length_only",
    "pair_trunc_longest_first",
    "overflow_batch_pad",
    "batch_pad_max_length_trunc",
}


def record_fixture(AutoTokenizer, folder: Path, fixture: str) -> dict:
    ref = AutoTokenizer.from_pretrained(str(folder))
    entry: dict = {"class": type(ref).__name__, "attributes": attributes(ref), "cases": []}
    for variant, load_kwargs in LOAD_VARIANTS:
        tok = AutoTokenizer.from_pretrained(str(folder), **load_kwargs)
        for name, args, kwargs in call_cases():
            if variant != "default" and name not in TRUNC_LEFT_CASES:
                continue
            if fixture in CONVERTED and (
                not name.startswith(CONVERTED_CALL_CASES)
                or args.get("text") is LONG_TEXT
                or variant != "default"
            ):
                continue  # the converted folders get the cases that exercise the pipeline
            case = {
                "name": f"{variant}/{name}",
                "load_kwargs": load_kwargs,
                "method": "__call__",
                "args": args,
                "kwargs": kwargs,
            }
            case["expected"] = replay(tok, case)
            entry["cases"].append(case)
    others = [(n, m, a, k) for n, m, a, k in other_cases(ref)]
    if getattr(ref, "chat_template", None):
        others += [(n, "apply_chat_template", a, k) for n, a, k in chat_cases()]
    if fixture in CONVERTED:
        others = [o for o in others if o[0] != "decode_15" and not o[0].startswith("pad_")]
    for name, method, args, kwargs in others:
        case = {"name": name, "load_kwargs": {}, "method": method, "args": args, "kwargs": kwargs}
        case["expected"] = replay(ref, case)
        entry["cases"].append(case)
    return entry


def replay(tok, case) -> object:
    """Run one case; an exception is recorded as {"__raises__": name, "value_error": bool}."""
    try:
        if case["method"] == "__call__":
            short = case["name"].split("/")[-1]
            alignment = short.startswith(ALIGNMENT_CASES) and short not in (
                "single_15",
                "single_trunc_model_max",
            )
            return run_call(tok, case["args"], case["kwargs"], alignment)
        return run_method(tok, case["method"], case["args"], case["kwargs"])
    except (KeyboardInterrupt, SystemExit):
        raise
    except BaseException as e:
        return {"__raises__": type(e).__name__, "value_error": isinstance(e, ValueError)}


def round_trip(AutoTokenizer, folder: Path, entry: dict) -> dict:
    """Load with OUR Tokenizer, save with OUR save_pretrained, read back with the REFERENCE."""
    sys.path.insert(0, str(REPO))
    from pretrained.tokenization import AutoTokenizer as OurAutoTokenizer

    result = {"passed": True, "cases": 0, "mismatches": []}
    by_variant: dict[str, list] = {}
    for case in entry["cases"]:
        by_variant.setdefault(json.dumps(case["load_kwargs"], sort_keys=True), []).append(case)
    for load_kwargs_json, cases in by_variant.items():
        load_kwargs = json.loads(load_kwargs_json)
        ours = OurAutoTokenizer.from_pretrained(str(folder), **load_kwargs)
        with tempfile.TemporaryDirectory() as tmp:
            ours.save_pretrained(tmp)
            result.setdefault("files", sorted(p.name for p in Path(tmp).iterdir()))
            ref = AutoTokenizer.from_pretrained(tmp)
            if not load_kwargs:
                got_attrs = attributes(ref)
                for key, want in entry["attributes"].items():
                    if got_attrs[key] != want:
                        result["passed"] = False
                        result["mismatches"].append(
                            {"case": f"attribute:{key}", "expected": want, "got": got_attrs[key]}
                        )
            for case in cases:
                result["cases"] += 1
                try:
                    got = json.loads(json.dumps(replay(ref, case), ensure_ascii=False))
                except Exception as e:
                    got = f"raised {type(e).__name__}: {e}"
                if got != case["expected"]:
                    result["passed"] = False
                    result["mismatches"].append(
                        {"case": case["name"], "expected": case["expected"], "got": got}
                    )
    return result


# --- extra oracle checks: more folders, compared live (only the verdict is stored) -----------------
def _extra_folders(root: Path) -> dict[str, Path]:
    """Variants that exercise more of the loading logic; built from the fixtures in ``root``."""
    from tokenizers import Tokenizer

    folders: dict[str, Path] = {}

    def make(name: str, files: dict[str, Path | str], config: dict | None) -> None:
        d = root / name
        d.mkdir()
        for target, source in files.items():
            if isinstance(source, Path):
                shutil.copy(source, d / target)
            else:
                (d / target).write_text(source, encoding="utf-8")
        if config is not None:
            write_json(d / "tokenizer_config.json", config)
        folders[name] = d

    vm = OUT / "gpt2_vocab_merges"
    bv = OUT / "bert_vocab_only"
    bpe_files = {"vocab.json": vm / "vocab.json", "merges.txt": vm / "merges.txt"}
    make("roberta_vocab_merges", bpe_files, {"tokenizer_class": "RobertaTokenizer"})
    make(
        "gpt2_bos_eos",
        bpe_files,
        {"tokenizer_class": "GPT2Tokenizer", "add_bos_token": True, "add_eos_token": True},
    )
    make(
        "bert_cased_vocab",
        {"vocab.txt": bv / "vocab.txt"},
        {
            "tokenizer_class": "BertTokenizer",
            "do_lower_case": False,
            "strip_accents": True,
            "tokenize_chinese_chars": False,
            "model_max_length": 20,
        },
    )
    make(
        "bert_vocab_added_tokens",
        {"vocab.txt": bv / "vocab.txt"},
        {
            "tokenizer_class": "BertTokenizer",
            "added_tokens_decoder": {
                "0": {
                    "content": "[PAD]",
                    "lstrip": False,
                    "normalized": False,
                    "rstrip": False,
                    "single_word": False,
                    "special": True,
                },
                "500": {
                    "content": "<ent>",
                    "lstrip": False,
                    "normalized": True,
                    "rstrip": False,
                    "single_word": False,
                    "special": False,
                },
                "501": {
                    "content": "[NEW]",
                    "lstrip": False,
                    "normalized": False,
                    "rstrip": False,
                    "single_word": False,
                    "special": True,
                },
            },
            "additional_special_tokens": ["[NEW]"],
        },
    )
    make(
        "bert_legacy_maps",
        {
            "vocab.txt": bv / "vocab.txt",
            "special_tokens_map.json": json.dumps(
                {
                    "mask_token": {
                        "content": "[MASK]",
                        "lstrip": True,
                        "normalized": False,
                        "rstrip": False,
                        "single_word": False,
                    }
                }
            ),
        },
        {"tokenizer_class": "BertTokenizer"},
    )
    # a tokenizer.json without a post-processor, with padding and truncation baked in
    tj = Tokenizer.from_file(str(OUT / "bert_wordpiece" / "tokenizer.json"))
    tj.post_processor = None
    tj.enable_padding(direction="left", pad_id=0, pad_token="[PAD]")
    tj.enable_truncation(max_length=16)
    make(
        "plain_fast_padding_baked",
        {"tokenizer.json": tj.to_str()},
        {"tokenizer_class": "PreTrainedTokenizerFast"},
    )
    make(
        "llama_class_byte_level",
        {"tokenizer.json": OUT / "gpt2_bpe" / "tokenizer.json"},
        {"tokenizer_class": "LlamaTokenizerFast", "pad_token": "<|endoftext|>", "eos_token": "<|im_end|>"},
    )
    make("no_config_json", {"tokenizer.json": OUT / "gpt2_bpe" / "tokenizer.json"}, None)
    # config settings that the reference's classes apply on top of a tokenizer.json
    make(
        "gpt2_json_config_prefix_space",
        {"tokenizer.json": OUT / "gpt2_bpe" / "tokenizer.json"},
        {"tokenizer_class": "GPT2Tokenizer", "add_prefix_space": True, "pad_token": "<|endoftext|>"},
    )
    make(
        "bert_json_config_cased",
        {"tokenizer.json": OUT / "bert_wordpiece" / "tokenizer.json"},
        {"tokenizer_class": "BertTokenizer", "do_lower_case": False, "strip_accents": True},
    )
    return folders


EXTRA_CALL_CASES = (
    "single_", "pair_single", "pair_batch_pad", "pair_trunc_longest_first", "batch_pad_np_left", "overflow_single",
    "split_words", "batch_pad_max_length_trunc",
)  # fmt: skip


def extra_checks(AutoTokenizer) -> dict:
    sys.path.insert(0, str(REPO))
    from pretrained.tokenization import AutoTokenizer as OurAutoTokenizer

    results = {}
    with tempfile.TemporaryDirectory() as tmp:
        for name, folder in _extra_folders(Path(tmp)).items():
            result = {"passed": True, "cases": 0, "mismatches": []}
            try:
                ref = AutoTokenizer.from_pretrained(str(folder))
            except Exception as e:
                results[name] = {"passed": False, "cases": 0, "mismatches": [f"reference cannot load: {e}"]}
                continue
            ours = OurAutoTokenizer.from_pretrained(folder)
            want, got = attributes(ref), attributes(ours)
            for key in want:
                if json.dumps(want[key]) != json.dumps(got[key]):
                    result["mismatches"].append(
                        {"case": f"attribute:{key}", "expected": want[key], "got": got[key]}
                    )
            cases = [
                {"name": n, "method": "__call__", "args": a, "kwargs": k}
                for n, a, k in call_cases()
                if n.startswith(EXTRA_CALL_CASES)
            ]
            cases += [{"name": n, "method": m, "args": a, "kwargs": k} for n, m, a, k in other_cases(ref)]
            for case in cases:
                result["cases"] += 1
                expected = json.loads(json.dumps(replay(ref, case), ensure_ascii=False))
                actual = json.loads(json.dumps(replay(ours, case), ensure_ascii=False))
                if isinstance(expected, dict) and "__raises__" in expected and isinstance(actual, dict):
                    # both raised; ours is a ValueError (InvalidInputError) wherever the reference's is,
                    # and also where the reference lets a plain Exception from `tokenizers` through
                    if "__raises__" in actual and (actual["value_error"] or not expected["value_error"]):
                        continue
                if expected != actual:
                    result["mismatches"].append({"case": case["name"], "expected": expected, "got": actual})
            result["passed"] = not result["mismatches"]
            result["mismatches"] = result["mismatches"][:5]
            results[name] = result
    return results


def main() -> None:
    import tokenizers
    import transformers
    from transformers import AutoTokenizer

    transformers.logging.set_verbosity_error()
    build_fixtures()
    goldens: dict = {
        "reference": {"transformers": transformers.__version__, "tokenizers": tokenizers.__version__},
        "fixtures": {},
        "round_trip": {},
    }
    for fixture in FIXTURES:
        folder = OUT / fixture
        entry = record_fixture(AutoTokenizer, folder, fixture)
        # make the JSON exact: run the cases through JSON once so tuples/lists are uniform
        entry = json.loads(json.dumps(entry, ensure_ascii=False))
        goldens["round_trip"][fixture] = round_trip(AutoTokenizer, folder, entry)
        if fixture in CONVERTED:  # store what equals the original fixture's output as a reference to it
            original = {c["name"]: c["expected"] for c in goldens["fixtures"][CONVERTED[fixture]]["cases"]}
            for case in entry["cases"]:
                if original.get(case["name"]) == case["expected"]:
                    case["expected"] = {"$same_as": CONVERTED[fixture]}
                elif isinstance(case["expected"], dict):  # keep the ids; tokens are checked on the originals
                    case["expected"].pop("tokens", None)
                    case["expected"].pop("word_ids", None)
        goldens["fixtures"][fixture] = entry
        status = "ok" if goldens["round_trip"][fixture]["passed"] else "MISMATCH"
        print(f"{fixture}: {len(entry['cases'])} cases, round trip {status}")
        for m in goldens["round_trip"][fixture]["mismatches"][:5]:
            print("   ", json.dumps(m, ensure_ascii=False)[:400])
    goldens["extra_checks"] = extra_checks(AutoTokenizer)
    for name, result in goldens["extra_checks"].items():
        print(f"extra check {name}: {result['cases']} cases, {'ok' if result['passed'] else 'MISMATCH'}")
        for m in result["mismatches"][:5]:
            print("   ", json.dumps(m, ensure_ascii=False)[:600])
    text = json.dumps(goldens, ensure_ascii=False, separators=(",", ":"))
    text = text.replace(json.dumps(LONG_TEXT, ensure_ascii=False), json.dumps("$LONG_TEXT"))
    goldens_path = OUT / "goldens.json"
    goldens_path.write_text(
        '{"long_text":' + json.dumps(LONG_TEXT, ensure_ascii=False) + "," + text[1:] + "\n", encoding="utf-8"
    )
    size = sum(p.stat().st_size for p in OUT.rglob("*") if p.is_file())
    print(f"wrote {OUT} ({size / 1024:.0f} KB)")


if __name__ == "__main__":
    main()
