"""The tokenizer goldens' corpus and cases, and how a case is run and recorded (a reference or our
tokenizer alike); used by scripts/golden_tokenizers.py, golden_tokenizers_extra.py and
golden_seq2seq_tokenizers.py. Imports no tokenizer library itself.
"""

from __future__ import annotations

import hashlib
import json
import random
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


def write_json(path: Path, obj) -> None:
    path.write_text(json.dumps(obj, indent=2, ensure_ascii=False, sort_keys=True) + "\n", encoding="utf-8")


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
