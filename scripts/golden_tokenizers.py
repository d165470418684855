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

import json
import shutil
import sys
from collections import Counter
import tempfile
from pathlib import Path

from golden_tokenizers_cases import (CHATML_TEMPLATE, FIXTURES, LONG_TEXT, OUT, REPO, attributes, call_cases,
                                    chat_cases, corpus, other_cases, replay, write_json)
from golden_tokenizers_extra import extra_checks


# --- fixtures -------------------------------------------------------------------------------------
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
