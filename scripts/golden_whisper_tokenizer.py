"""Record the reference's Whisper tokenizer and its ASR output decoding (``_decode_asr``).

Imports the reference (`transformers`); run it in the reference venv:

    /work/refvenv/bin/python scripts/golden_whisper_tokenizer.py

Reads the tokenizer of tests/fixtures/tokenizers/whisper-base (multilingual; copied from the
converted whisper-base) and of ~/.cache/pretrained/models/whisper-tiny.en (English-only; left out
when that folder is missing). Writes tests/fixtures/goldens/whisper_tokenizer/:

  tokenizer.json   per model: encodings under each prefix setting (at load and by
                   set_prefix_tokens), labels, decoding of id lists (specials, prompts, timestamps,
                   offsets, long-form timestamps that start over, batches, basic normalizing),
                   get_decoder_prompt_ids, get_prompt_ids
  decode_asr.json  synthetic chunked transcriptions built from real token ids of real sentences
                   (windows cut as the pipeline cuts audio, timestamps where the words are) and
                   the reference's ``_decode_asr`` output for each
"""

from __future__ import annotations

import json
import sys
from pathlib import Path

import numpy as np

REPO = Path(__file__).resolve().parent.parent
BASE = REPO / "tests" / "fixtures" / "tokenizers" / "whisper-base"
TINY_EN = Path.home() / ".cache" / "pretrained" / "models" / "whisper-tiny.en"
OUT = REPO / "tests" / "fixtures" / "goldens" / "whisper_tokenizer"

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
# (load keywords, then set_prefix_tokens keywords or None)
SETTINGS = [
    ({}, None),
    ({"language": "fr", "task": "transcribe"}, None),
    ({"language": "English", "task": "translate", "predict_timestamps": True}, None),
    ({"language": "german"}, None),
    ({"task": "transcribe"}, None),
    ({"predict_timestamps": True}, None),
    ({"language": "castilian"}, None),
    ({"language": "es"}, {"language": "french"}),
    ({}, {"language": "ja", "task": "translate", "predict_timestamps": True}),
    ({"language": "de", "task": "transcribe"}, {"predict_timestamps": True}),
]
PAIRS = [("Hello", "world"), ("Bonjour", " le monde")]
TARGETS = [("How are you?", "Comment allez-vous ?")]
PROMPT_TEXTS = ["Hello", "  Mr. Quilter is the apostle  ", "Zoé à Montréal"]
DECODER_PROMPTS = [
    {}, {"task": "transcribe", "language": "en"}, {"task": "translate", "language": "french"},
    {"language": "de", "no_timestamps": False}, {"task": "transcribe"},
]  # fmt: skip
NORMALIZE_TEXTS = [
    "Ça va? [Music] (laughs) Très   bien!", "Straße, naïve café, Ångström, Łódź — Œuvre.",
    "<|0.00|> Hello, World! 3.5%", "Emoji 🎉 and ½ ﬁ ligature", "Tabs\tand\nnewlines",
]  # fmt: skip


def tolist(x):
    return x.tolist() if hasattr(x, "tolist") else x


def jsonable(x):
    if isinstance(x, dict):
        return {k: jsonable(v) for k, v in x.items()}
    if isinstance(x, (list, tuple)):
        return [jsonable(v) for v in x]
    if isinstance(x, (np.integer,)):
        return int(x)
    if isinstance(x, (np.floating,)):
        return float(x)
    return x


def load(folder: Path, **kwargs):
    from transformers import AutoTokenizer

    return AutoTokenizer.from_pretrained(str(folder), **kwargs)


def ids_of(tok, text: str) -> list[int]:
    return tok.encode(text, add_special_tokens=False)


def special(tok, token: str) -> int:
    return tok.convert_tokens_to_ids(token)


def decode_sequences(tok) -> dict[str, list[int] | list[list[int]]]:
    """Id lists that generation produces: prefixes, text, timestamps, prompts, long form."""
    sot, eot = special(tok, "<|startoftranscript|>"), special(tok, "<|endoftext|>")
    notime, prev = special(tok, "<|notimestamps|>"), special(tok, "<|startofprev|>")
    en, transcribe = special(tok, "<|en|>"), special(tok, "<|transcribe|>")
    ts = notime + 1

    def t(seconds: float) -> int:
        return ts + round(seconds / 0.02)

    a, b, c = ids_of(tok, " Hello world."), ids_of(tok, " Zoé à Montréal, 2019!"), ids_of(tok, " 🎉 Done.")
    head = [sot, en, transcribe]
    return {
        "text": head + [notime] + a + b + [eot],
        "text_only": a + b,
        "timestamps": head + [t(0), *a, t(1.5), t(1.5), *b, t(3.22), t(4), *c, t(5.6), eot],
        "timestamps_single_end": head + [t(0), *a, t(2), *b, t(3.5), eot],
        "prompt": [prev, *ids_of(tok, " Earlier words."), *head, notime, *a, eot],
        "prompt_without_start": [prev, *ids_of(tok, " Earlier words."), *a],
        "prompt_timestamps": [prev, *ids_of(tok, " Earlier."), *head, t(0), *a, t(1), eot],
        # long form: timestamps start over in the next 30-s segment, after a pair or a single end
        "longform_pair": head + [t(0), *a, t(10), t(10), *b, t(28), t(28), t(0), *c, t(3), eot],
        "longform_single": head + [t(0), *a, t(29), t(0.5), *b, t(4), eot],
        "longform_three": [t(0), *a, t(20), t(20), *b, t(29.5), t(2), *c, t(6), t(6), *a, t(12), t(0), *b, t(1)],
        "one_timestamp": head + [t(0), *a, eot],
        "timestamps_no_text": head + [t(0), t(1), eot],
        "empty": [],
    }


def tokenizer_goldens(folder: Path) -> dict:
    base = load(folder)
    out: dict = {
        "attributes": {
            "class": type(base).__name__, "len": len(base), "all_special_ids": base.all_special_ids,
            "eos_token_id": base.eos_token_id, "pad_token_id": base.pad_token_id,
            "model_max_length": base.model_max_length, "prefix_tokens": base.prefix_tokens,
            "timestamp_ids_first": base.timestamp_ids()[:3], "timestamp_ids_last": base.timestamp_ids()[-1],
            "timestamp_ids_004": base.timestamp_ids(0.04)[:4],
        },  # fmt: skip
        "settings": [],
    }
    for load_kwargs, set_kwargs in SETTINGS:
        tok = load(folder, **load_kwargs)
        if set_kwargs is not None:
            tok.set_prefix_tokens(**set_kwargs)
        case = {
            "load": load_kwargs, "set": set_kwargs, "prefix_tokens": tok.prefix_tokens,
            "language": tok.language, "task": tok.task, "predict_timestamps": tok.predict_timestamps,
            "input_ids": [tok(text)["input_ids"] for text in TEXTS],
            "no_specials": [tok(text, add_special_tokens=False)["input_ids"] for text in TEXTS],
            "batch": tolist(tok(TEXTS[:4], padding=True, return_tensors="np")["input_ids"]),
            "pairs": [tok(a, b)["input_ids"] for a, b in PAIRS],
            "special_tokens_mask": tok(TEXTS[0], return_special_tokens_mask=True)["special_tokens_mask"],
            "targets": [tok(a, text_target=b)["labels"] for a, b in TARGETS],
            "target_only": [tok(text_target=b)["input_ids"] for _, b in TARGETS],
        }  # fmt: skip
        out["settings"].append(case)

    seqs = decode_sequences(base)
    decoded = {}
    for name, ids in seqs.items():
        entry = {"ids": ids}
        for skip in (False, True):
            entry[f"decode_skip{int(skip)}"] = base.decode(ids, skip_special_tokens=skip)
            entry[f"with_timestamps_skip{int(skip)}"] = base.decode(ids, skip_special_tokens=skip,
                                                                   decode_with_timestamps=True)
            entry[f"offsets_skip{int(skip)}"] = jsonable(base.decode(ids, skip_special_tokens=skip, output_offsets=True))
        entry["with_timestamps_004"] = base.decode(ids, decode_with_timestamps=True, time_precision=0.04)
        entry["offsets_004"] = jsonable(base.decode(ids, output_offsets=True, time_precision=0.04))
        entry["basic_normalize"] = base.decode(ids, skip_special_tokens=True, basic_normalize=True)
        entry["basic_normalize_diacritics"] = base.decode(ids, basic_normalize=True, remove_diacritics=True)
        decoded[name] = entry
    out["decode"] = decoded
    names = ["text", "timestamps", "prompt", "longform_pair"]
    batch = [seqs[n] for n in names]
    out["batch_decode"] = {
        "names": names,
        "plain": base.batch_decode(batch),
        "skip": base.batch_decode(batch, skip_special_tokens=True),
        "with_timestamps": base.batch_decode(batch, decode_with_timestamps=True),
        "decode_list_of_lists": base.decode(batch, skip_special_tokens=True),
    }
    out["decoder_prompt_ids"] = []
    for kwargs in DECODER_PROMPTS:
        tok = load(folder)
        out["decoder_prompt_ids"].append({"kwargs": kwargs, "ids": tok.get_decoder_prompt_ids(**kwargs),
                                          "prefix_after": tok.prefix_tokens})
    out["prompt_ids"] = [{"text": t, "ids": tolist(base.get_prompt_ids(t))} for t in PROMPT_TEXTS]
    out["basic_normalize"] = [
        {"text": t, "plain": base.basic_normalize(t), "diacritics": base.basic_normalize(t, remove_diacritics=True)}
        for t in NORMALIZE_TEXTS
    ]
    return out


# --- decode_asr -------------------------------------------------------------------------------------
SENTENCES_EN = [
    " The sound of the wind in the trees was the first thing she heard that morning.",
    " A small package manager downloads, builds and installs software from source.",
    " He counted 1,250 boxes, 37 crates and 4 barrels before noon.",
    " Nobody expected the meeting to end so early, yet everyone left happy.",
    " Tools for reading and writing audio files in many formats are included.",
]
SENTENCES_FR = [
    " Le vent soufflait fort sur la côte et les bateaux restaient au port.",
    " Elle a acheté trois baguettes, un camembert et des pommes à 2,40 € le kilo.",
    " Personne ne savait où était passé le chat de la voisine.",
]
SEC_PER_TOKEN = 0.26  # each token takes this long in the imagined audio


def timeline(tok, sentences: list[str], language: str | None) -> list[dict]:
    """Segments (one a sentence): tokens, start and end time in the imagined recording."""
    segments, now = [], 0.0
    for s in sentences:
        ids = ids_of(tok, s)
        segments.append({"ids": ids, "start": now, "end": now + len(ids) * SEC_PER_TOKEN, "language": language})
        now += len(ids) * SEC_PER_TOKEN + 0.4  # a pause between sentences
    return segments


def window_tokens(tok, segments, start: float, length: float, timestamps: bool, multilingual: bool,
                  drop_last_end: bool, precision: float = 0.02) -> list[int]:
    """What Whisper would write for audio [start, start + length): the prefix (the language of
    the first words), each segment's tokens inside the window, with timestamps relative to the
    window around each piece; a segment cut by the window's end has no end timestamp when
    ``drop_last_end``."""
    sot, eot = special(tok, "<|startoftranscript|>"), special(tok, "<|endoftext|>")
    notime = special(tok, "<|notimestamps|>")
    begin = notime + 1
    end_time = start + length
    pieces = []  # (segment, first token, end token) inside the window
    for seg in segments:
        inside = [k for k in range(len(seg["ids"])) if start <= seg["start"] + k * SEC_PER_TOKEN < end_time]
        if inside:
            pieces.append((seg, inside[0], inside[-1] + 1))
    out = [sot]
    if multilingual:
        language = pieces[0][0]["language"] if pieces else "en"
        out += [special(tok, f"<|{language}|>"), special(tok, "<|transcribe|>")]
    if not timestamps:
        out.append(notime)
    for n, (seg, k0, k1) in enumerate(pieces):
        t0 = seg["start"] + k0 * SEC_PER_TOKEN - start
        t1 = min(seg["start"] + k1 * SEC_PER_TOKEN, end_time) - start
        if timestamps:
            out.append(begin + round(t0 / precision))
        out += seg["ids"][k0:k1]
        cut = k1 < len(seg["ids"])
        if timestamps and not (drop_last_end and cut and n == len(pieces) - 1):
            out.append(begin + round(t1 / precision))
    out.append(eot)
    return out


def windows(total: float, chunk: float, stride: float) -> list[tuple[float, float, float, float]]:
    """(start, length, left stride, right stride) per window, as the pipeline's chunk_iter cuts."""
    step = chunk - 2 * stride
    out, start = [], 0.0
    while True:
        length = min(chunk, total - start)
        last = start + length >= total
        out.append((start, length, 0.0 if start == 0 else stride, 0.0 if last else stride))
        if last:
            return out
        start += step


def asr_cases(tok, multilingual: bool) -> list[dict]:
    en = timeline(tok, SENTENCES_EN, "en" if multilingual else None)
    total = en[-1]["end"] + 0.5
    cases = []

    def outputs(segments, total, chunk, stride, timestamps, drop_last_end=True, silent=(), perturb=None,
                precision=0.02):
        outs = []
        cuts = windows(total, chunk, stride)
        for k, (start, length, left, right) in enumerate(cuts):
            segs = [] if (k in silent or k - len(cuts) in silent) else segments
            ids = window_tokens(tok, segs, start, length, timestamps, multilingual, drop_last_end, precision)
            if perturb is not None and k == perturb[0]:
                ids[perturb[1]] = perturb[2]
            outs.append({"tokens": [ids], "stride": [round(length, 6), left, right]})
        return outs

    def add(name, outs, **kwargs):
        cases.append({"name": name, "model_outputs": outs, "kwargs": {"time_precision": 0.02, **kwargs}})

    for ts in (False, True):
        add(f"strides_ts{int(ts)}", outputs(en, total, 10.0, 2.0, ts), return_timestamps=ts, return_language=False)
        add(f"strides_lang_ts{int(ts)}", outputs(en, total, 10.0, 2.0, ts), return_timestamps=ts,
            return_language=True)
        add(f"big_strides_ts{int(ts)}", outputs(en, total, 16.0, 4.0, ts), return_timestamps=ts,
            return_language=False)
        add(f"silent_window_ts{int(ts)}", outputs(en, total, 10.0, 2.0, ts, silent=(2,)), return_timestamps=ts,
            return_language=True)
        add(f"silent_first_last_ts{int(ts)}", outputs(en, total, 10.0, 2.0, ts, silent=(0, -1)),
            return_timestamps=ts, return_language=False)
        add(f"perturbed_overlap_ts{int(ts)}", outputs(en, total, 10.0, 2.0, ts, perturb=(1, 5, 1234)),
            return_timestamps=ts, return_language=False)
        add(f"with_end_timestamps_ts{int(ts)}", outputs(en, total, 10.0, 2.0, ts, drop_last_end=False),
            return_timestamps=ts, return_language=False)
        add(f"one_window_ts{int(ts)}", outputs(en[:1], en[0]["end"] + 0.3, 30.0, 5.0, ts), return_timestamps=ts,
            return_language=True)
        add(f"all_silent_ts{int(ts)}", outputs(en, total, 10.0, 2.0, ts, silent=tuple(range(99))),
            return_timestamps=ts, return_language=True)
    # no strides at all (the pipeline without chunking) and long-form output that starts over
    seqs = decode_sequences(tok)
    for name in ("timestamps", "longform_pair", "longform_single", "prompt_timestamps", "one_timestamp"):
        add(f"unstrided_{name}", [{"tokens": [seqs[name]]}], return_timestamps=True, return_language=True)
    add("unstrided_text", [{"tokens": [seqs["text"]]}], return_timestamps=False, return_language=False)
    add("unstrided_prompt", [{"tokens": [seqs["prompt"]]}], return_timestamps=False, return_language=True)
    add("precision_004", outputs(en, total, 10.0, 2.0, True, precision=0.04), return_timestamps=True,
        return_language=False, time_precision=0.04)
    if multilingual:
        fr = timeline(tok, SENTENCES_FR, "fr")
        # keep times increasing: French starts after the third English sentence
        offset = en[2]["end"] + 0.6
        mixed = en[:3] + [{**s, "start": s["start"] + offset, "end": s["end"] + offset} for s in fr]
        total_mixed = mixed[-1]["end"] + 0.5
        for ts in (False, True):
            for lang in (False, True):
                add(f"languages_ts{int(ts)}_lang{int(lang)}", outputs(mixed, total_mixed, 10.0, 2.0, ts),
                    return_timestamps=ts, return_language=lang)
    return cases


def run_decode_asr(tok, cases: list[dict]) -> list[dict]:
    from transformers.models.whisper.tokenization_whisper import _decode_asr

    for case in cases:
        outs = []
        for o in case["model_outputs"]:
            d = {"tokens": np.array(o["tokens"])}
            if "stride" in o:
                d["stride"] = tuple(o["stride"])
            outs.append(d)
        text, optional = _decode_asr(tok, outs, **case["kwargs"])
        case["expected"] = {"text": text, "optional": jsonable(optional)}
    return cases


def main() -> None:
    OUT.mkdir(parents=True, exist_ok=True)
    models = {"whisper-base": BASE}
    if TINY_EN.is_dir():
        models["whisper-tiny.en"] = TINY_EN
    else:
        print(f"{TINY_EN} is missing: the English-only goldens are left out", file=sys.stderr)
    tokenizers = {name: tokenizer_goldens(folder) for name, folder in models.items()}
    asr = {name: run_decode_asr(load(folder), asr_cases(load(folder), name == "whisper-base"))
           for name, folder in models.items()}
    for name, obj in (("tokenizer.json", tokenizers), ("decode_asr.json", asr)):
        (OUT / name).write_text(json.dumps(obj, ensure_ascii=False, sort_keys=True) + "\n", encoding="utf-8")
        print(f"wrote {OUT / name} ({(OUT / name).stat().st_size} bytes)")


if __name__ == "__main__":
    main()
