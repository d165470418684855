"""Extra oracle checks for scripts/golden_tokenizers.py: more tokenizer folders (built from the
fixtures), the reference and our tokenizer compared live on them; only the verdict is stored.

Imports the reference (`transformers`, `tokenizers`); run through scripts/golden_tokenizers.py.
"""

from __future__ import annotations

import json
import shutil
import sys
import tempfile
from pathlib import Path

from golden_tokenizers_cases import OUT, REPO, attributes, call_cases, other_cases, replay, write_json


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
