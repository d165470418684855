"""Build the encoder-decoder tokenizer fixtures (T5, Marian, mBART, mBART-50, Pegasus, BART) and
record the reference library's outputs on them.

Imports the reference (`transformers`) and `sentencepiece`; run it in the reference venv:

    /work/refvenv/bin/python scripts/golden_seq2seq_tokenizers.py

(``scripts/make_goldens.py seq2seq_tokenizers`` also calls :func:`main`.)

Writes, under tests/fixtures/tokenizers/:
  <name>_spm/        a SentencePiece model trained here + tokenizer_config.json: what the
                     reference converts (T5: spiece.model, Pegasus: spiece.model, mBART:
                     sentencepiece.bpe.model, a BPE-type model as the real one)
  <name>/            the reference's save_pretrained of the _spm folder (tokenizer.json ...)
  marian/            source.spm + target.spm + a shared vocab.json (saved by the reference)
  marian_separate/   separate_vocabs=True: vocab.json + target_vocab.json
  bart_vocab_merges/ vocab.json + merges.txt, tokenizer_class BartTokenizer
  seq2seq_goldens.json   per fixture: attributes and cases (ids, masks, labels, decoded text)

The SentencePiece models are trained with a small custom normalization rule table (full-width
letters, ligatures, no-break space...) so that their precompiled charsmap stays a few KB and the
`Precompiled` normalizer path is still exercised.
"""

from __future__ import annotations

import json
import shutil
import sys
import tempfile
from pathlib import Path

REPO = Path(__file__).resolve().parent.parent
OUT = REPO / "tests" / "fixtures" / "tokenizers"
sys.path.insert(0, str(REPO / "scripts"))

from golden_tokenizers_cases import LONG_TEXT, SPECIAL_NAMES, TEXTS, corpus, norm, write_json  # noqa: E402

LICENSES = ("Apache-2.0", "Artistic", "BSD", "GPL-2")
RULES = {0xFB01: [0x66, 0x69], 0xA0: [0x20], 0x2019: [0x27], 0x9: [0x20], 0xA: [0x20], 0xD: [0x20],
         0x3000: [0x20], 0x2026: [0x2E, 0x2E, 0x2E], **{c: [c - 0xFEE0] for c in range(0xFF01, 0xFF5F)}}

FIXTURES = ["t5_spm", "t5", "pegasus_spm", "pegasus", "mbart_spm", "mbart", "mbart50_spm", "mbart50",
            "marian", "marian_separate", "bart_vocab_merges", "bart"]


# --- fixtures -------------------------------------------------------------------------------------
def train_spm(work: Path, name: str, lines: list[str], **options) -> Path:
    import sentencepiece as spm

    text = work / f"{name}.txt"
    text.write_text("\n".join(lines) + "\n", encoding="utf-8")
    rules = work / "rules.tsv"
    rules.write_text("".join(f"{k:X}\t" + " ".join(f"{x:X}" for x in v) + "\n" for k, v in RULES.items()))
    spm.SentencePieceTrainer.train(
        input=str(text), model_prefix=str(work / name), num_threads=1, minloglevel=2,
        normalization_rule_tsv=str(rules), **options,
    )  # fmt: skip
    return work / f"{name}.model"


def license_lines() -> list[str]:
    lines = []
    for name in LICENSES:
        lines += Path("/usr/share/common-licenses", name).read_text(encoding="utf-8").splitlines()
    return [line for line in lines if line.strip()]


def spm_folder(name: str, model: Path, filename: str, config: dict) -> Path:
    d = OUT / name
    d.mkdir()
    shutil.copy(model, d / filename)
    write_json(d / "tokenizer_config.json", config)
    return d


def saved_folder(AutoTokenizer, source: Path, name: str, **kwargs) -> Path:
    d = OUT / name
    AutoTokenizer.from_pretrained(str(source), **kwargs).save_pretrained(str(d))
    return d


def build_fixtures(AutoTokenizer) -> None:
    for name in [*FIXTURES, "seq2seq_goldens.json"]:
        path = OUT / name
        if path.is_dir():
            shutil.rmtree(path)
        elif path.exists():
            path.unlink()
    OUT.mkdir(parents=True, exist_ok=True)
    english = license_lines()
    mixed = corpus(600)
    with tempfile.TemporaryDirectory() as tmp:
        work = Path(tmp)
        # T5 and Pegasus: <pad>=0, </s>=1, <unk>=2, no <s> (as the released models)
        t5 = train_spm(work, "t5", english + mixed[:200], vocab_size=600, model_type="unigram",
                       pad_id=0, eos_id=1, unk_id=2, bos_id=-1)
        src = spm_folder("t5_spm", t5, "spiece.model", {"tokenizer_class": "T5Tokenizer", "model_max_length": 64})
        saved_folder(AutoTokenizer, src, "t5")
        src = spm_folder("pegasus_spm", t5, "spiece.model", {"tokenizer_class": "PegasusTokenizer"})
        saved_folder(AutoTokenizer, src, "pegasus")
        # mBART: a BPE-type model, <unk>=0, <s>=1, </s>=2 (fairseq's spm)
        mb = train_spm(work, "mbart", english[:300] + mixed, vocab_size=700, model_type="bpe")
        src = spm_folder("mbart_spm", mb, "sentencepiece.bpe.model", {"tokenizer_class": "MBartTokenizer"})
        saved_folder(AutoTokenizer, src, "mbart")
        src = spm_folder("mbart50_spm", mb, "sentencepiece.bpe.model", {"tokenizer_class": "MBart50Tokenizer"})
        saved_folder(AutoTokenizer, src, "mbart50")
        # Marian: two models, one vocab.json over both (plus language codes), <pad> last
        source = train_spm(work, "source", english, vocab_size=500, model_type="unigram")
        target = train_spm(work, "target", mixed, vocab_size=500, model_type="unigram")
        build_marian(AutoTokenizer, work, source, target)
    d = OUT / "bart_vocab_merges"
    d.mkdir()
    for f in ("vocab.json", "merges.txt"):
        shutil.copy(OUT / "gpt2_vocab_merges" / f, d / f)
    write_json(d / "tokenizer_config.json", {"tokenizer_class": "BartTokenizer"})
    saved_folder(AutoTokenizer, d, "bart")


def build_marian(AutoTokenizer, work: Path, source: Path, target: Path) -> None:
    import sentencepiece as spm

    def pieces(model: Path) -> list[str]:
        sp = spm.SentencePieceProcessor(model_file=str(model))
        return [sp.id_to_piece(i) for i in range(sp.get_piece_size())]

    specials = ["</s>", "<unk>", ">>de<<", ">>fr<<"]
    shared = list(specials)
    for p in pieces(source) + pieces(target):
        if p not in shared and p != "<s>":
            shared.append(p)
    shared.append("<pad>")
    raw = work / "marian"
    raw.mkdir()
    shutil.copy(source, raw / "source.spm")
    shutil.copy(target, raw / "target.spm")
    write_json(raw / "vocab.json", {p: i for i, p in enumerate(shared)})
    write_json(raw / "tokenizer_config.json",
               {"tokenizer_class": "MarianTokenizer", "source_lang": "en", "target_lang": "de"})
    saved_folder(AutoTokenizer, raw, "marian")
    # separate vocabularies: each side's own pieces
    raw = work / "marian_separate"
    raw.mkdir()
    shutil.copy(source, raw / "source.spm")
    shutil.copy(target, raw / "target.spm")
    for side, model, filename in (("src", source, "vocab.json"), ("tgt", target, "target_vocab.json")):
        own = ["</s>", "<unk>"] + [p for p in pieces(model) if p not in ("</s>", "<unk>", "<s>")] + ["<pad>"]
        write_json(raw / filename, {p: i for i, p in enumerate(own)})
    write_json(raw / "tokenizer_config.json", {"tokenizer_class": "MarianTokenizer", "separate_vocabs": True})
    saved_folder(AutoTokenizer, raw, "marian_separate")


# --- cases ----------------------------------------------------------------------------------------
EXTRA_TEXTS = [
    ">>de<< Hello world, how are you?",
    "Fill <extra_id_0> the blanks <extra_id_1> here.",
    "en_XX and fr_XX inside the text",
    "<mask_1> A masked sentence. <mask_2> word",
    "  Multiple   spaces  and   trailing   ",
    "Ｆｕｌｌ ｗｉｄｔｈ ﬁne\u00a0text\u2026",
    "License: GNU General Public License, version 2 or (at your option) any later version.",
]
S2S_TEXTS = [t for t in TEXTS if t is not LONG_TEXT] + EXTRA_TEXTS + [LONG_TEXT]
SOURCES = ["Hello world!", "The quick brown fox jumps over the lazy dog.", "Café naïve — Über straße!", ""]
TARGETS = ["Hallo Welt!", "Der schnelle braune Fuchs springt über den faulen Hund.", "Ça va très bien.", "ok"]


def call_cases() -> list[tuple[str, dict, dict]]:
    cases = [(f"single_{i}", {"text": t}, {}) for i, t in enumerate(S2S_TEXTS)]
    cases += [
        ("no_specials", {"text": SOURCES[1]}, {"add_special_tokens": False}),
        ("pair", {"text": SOURCES[0], "text_pair": SOURCES[1]}, {}),
        ("batch_pad", {"text": SOURCES}, {"padding": True}),
        ("batch_pad_left_pt", {"text": SOURCES}, {"padding": True, "padding_side": "left", "return_tensors": "pt"}),
        ("batch_trunc_max_length", {"text": SOURCES + [LONG_TEXT]},
         {"padding": "max_length", "max_length": 12, "truncation": True}),
        ("target_only", {"text_target": TARGETS[1]}, {}),
        ("target_only_batch", {"text_target": TARGETS}, {"padding": True}),
        ("target_single", {"text": SOURCES[1], "text_target": TARGETS[1]}, {}),
        ("target_batch_pad", {"text": SOURCES, "text_target": TARGETS}, {"padding": True}),
        ("target_batch_pt", {"text": SOURCES, "text_target": TARGETS}, {"padding": True, "return_tensors": "pt"}),
        ("target_trunc", {"text": [LONG_TEXT, SOURCES[0]], "text_target": [TARGETS[0], LONG_TEXT]},
         {"max_length": 10, "truncation": True, "padding": "max_length"}),
        ("target_max_target_length", {"text": [LONG_TEXT, SOURCES[1]], "text_target": [LONG_TEXT, TARGETS[1]]},
         {"max_length": 16, "max_target_length": 6, "truncation": True, "padding": True}),
        ("target_no_specials", {"text": SOURCES[1], "text_target": TARGETS[1]}, {"add_special_tokens": False}),
        ("target_pair", {"text": SOURCES[0], "text_pair": SOURCES[1], "text_target": TARGETS[0],
                         "text_pair_target": TARGETS[1]}, {}),
        ("target_masks", {"text": SOURCES[:2], "text_target": TARGETS[:2]},
         {"return_special_tokens_mask": True, "return_length": True}),
    ]
    return cases


def other_cases(ref) -> list[tuple[str, str, list, dict]]:
    out = []
    for i, t in enumerate(S2S_TEXTS):
        ids = ref.encode(t)
        out.append((f"decode_{i}", "decode", [ids], {}))
        out.append((f"decode_skip_{i}", "decode", [ids], {"skip_special_tokens": True}))
        if i % 3 == 0:
            out.append((f"tokens_{i}", "convert_ids_to_tokens", [ids], {}))
        if i % 4 == 1:
            out.append((f"tokenize_{i}", "tokenize", [t], {}))
    labels = ref(text_target=TARGETS, padding=True)["input_ids"]
    out.append(("batch_decode_labels", "batch_decode", [labels], {"skip_special_tokens": True}))
    out.append(("batch_decode_labels_raw", "batch_decode", [labels], {}))
    out.append(("encode_pair", "encode", [SOURCES[0], SOURCES[1]], {}))
    out.append(("convert_specials", "convert_tokens_to_ids",
                [["</s>", "<pad>", "<unk>", "<s>", "<mask>", "<mask_1>", "<mask_2>", "<extra_id_0>",
                  "<extra_id_99>", "en_XX", "ro_RO", "sl_SI", ">>de<<", "not-a-token"]], {}))
    out.append(("convert_ids", "convert_ids_to_tokens", [list(range(0, 12)) + [len(ref) - 2, len(ref) - 1]], {}))
    return out


LANG_VARIANT = {"src_lang": "fr_XX", "tgt_lang": "de_DE"}
LANG_CASES = ("single_1", "single_3", "pair", "batch_pad", "target_", "no_specials")


def attributes(tok) -> dict:
    out = {
        "class": type(tok).__name__,
        "vocab_size": tok.vocab_size,
        "len": len(tok),
        "special": {n: getattr(tok, n) for n in SPECIAL_NAMES},
        "special_ids": {n + "_id": getattr(tok, n + "_id") for n in SPECIAL_NAMES},
        "all_special_tokens": sorted(tok.all_special_tokens),
        "all_special_ids": sorted(tok.all_special_ids),
        "model_input_names": list(tok.model_input_names),
        "padding_side": tok.padding_side,
        "model_max_length": tok.model_max_length,
        "vocab_head": sorted(tok.get_vocab().items(), key=lambda kv: kv[1])[:120],
        "vocab_tail": sorted(tok.get_vocab().items(), key=lambda kv: kv[1])[-120:],
    }
    if hasattr(tok, "lang_code_to_id"):
        out["lang_code_to_id"] = dict(tok.lang_code_to_id)
        out["src_lang"], out["tgt_lang"] = tok.src_lang, tok.tgt_lang
    if hasattr(tok, "get_sentinel_tokens"):
        try:  # 5.25.0 raises AttributeError here (it reads additional_special_tokens)
            out["sentinels"] = sorted(tok.get_sentinel_tokens())
        except AttributeError as e:
            out["sentinels"] = {"__raises__": type(e).__name__}
    if type(tok).__name__ == "MarianTokenizer":
        out["separate_vocabs"] = tok.separate_vocabs
        out["supported_language_codes"] = tok.supported_language_codes
    return out


def replay(tok, method: str, args: dict | list, kwargs: dict):
    try:
        if method == "__call__":
            return {"data": norm(dict(tok(**args, **kwargs)))}
        return norm(getattr(tok, method)(*args, **kwargs))
    except (KeyboardInterrupt, SystemExit):
        raise
    except BaseException as e:
        return {"__raises__": type(e).__name__, "value_error": isinstance(e, ValueError)}


def record(AutoTokenizer, fixture: str) -> dict:
    folder = OUT / fixture
    ref = AutoTokenizer.from_pretrained(str(folder))
    entry: dict = {"attributes": attributes(ref), "files": sorted(p.name for p in folder.iterdir()), "cases": []}
    variants = [({}, ref)]
    if hasattr(ref, "lang_code_to_id"):
        variants.append((LANG_VARIANT, AutoTokenizer.from_pretrained(str(folder), **LANG_VARIANT)))
    for load_kwargs, tok in variants:
        for name, args, kwargs in call_cases():
            if load_kwargs and not name.startswith(LANG_CASES):
                continue
            tag = "/".join(f"{k}={v}" for k, v in load_kwargs.items()) or "default"
            entry["cases"].append({"name": f"{tag}/{name}", "load_kwargs": load_kwargs, "method": "__call__",
                                   "args": args, "kwargs": kwargs,
                                   "expected": replay(tok, "__call__", args, kwargs)})
    for name, method, args, kwargs in other_cases(ref):
        entry["cases"].append({"name": name, "load_kwargs": {}, "method": method, "args": args,
                               "kwargs": kwargs, "expected": replay(ref, method, args, kwargs)})
    return entry


def main() -> None:
    import tokenizers
    import transformers
    from transformers import AutoTokenizer

    transformers.logging.set_verbosity_error()
    build_fixtures(AutoTokenizer)
    goldens: dict = {
        "reference": {"transformers": transformers.__version__, "tokenizers": tokenizers.__version__},
        "long_text": LONG_TEXT,
        "fixtures": {},
    }
    for fixture in FIXTURES:
        entry = json.loads(json.dumps(record(AutoTokenizer, fixture), ensure_ascii=False))
        goldens["fixtures"][fixture] = entry
        print(f"{fixture}: {entry['attributes']['class']}, {len(entry['cases'])} cases, files {entry['files']}")
    text = json.dumps(goldens, ensure_ascii=False, separators=(",", ":"))
    long_json = json.dumps(LONG_TEXT, ensure_ascii=False)
    text = text.replace(long_json, json.dumps("$LONG_TEXT")).replace('"$LONG_TEXT"', long_json, 1)
    (OUT / "seq2seq_goldens.json").write_text(text + "\n", encoding="utf-8")
    size = sum(p.stat().st_size for f in FIXTURES for p in (OUT / f).rglob("*") if p.is_file())
    print(f"wrote {len(FIXTURES)} fixtures ({size / 1024:.0f} KB) and seq2seq_goldens.json")


if __name__ == "__main__":
    main()
