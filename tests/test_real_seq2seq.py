"""The translator and the summarizer trained here on Debian's package descriptions
(examples/train_translator.py, examples/train_summarizer.py; ~30 MB each, so cached under
~/.cache/pretrained/trained/, not committed): run as a user would, through the pipelines and
generate(), they give back exactly what their training run recorded (results.json), on held-out
text. Where the models have not been trained on this machine the tests say how to make them.
"""

from __future__ import annotations

import json
import sys
from pathlib import Path

import pytest

from pretrained import AutoModelForSeq2SeqLM, AutoTokenizer, pipeline
from pretrained.io.paths import cache_home

TRAINED = cache_home() / "pretrained" / "trained"
EXAMPLES = Path(__file__).resolve().parent.parent / "examples"


def _trained(name: str, script: str) -> tuple[Path, dict]:
    folder = TRAINED / name
    if not (folder / "results.json").is_file() or not (folder / "model" / "model.safetensors").is_file():
        pytest.skip(f"no trained model in {folder}: run `python examples/{script}` (about 20 minutes) "
                    "to train and cache it")
    return folder, json.loads((folder / "results.json").read_text())


@pytest.mark.slow
def test_the_trained_translator_translates_held_out_synopses_as_recorded():
    folder, results = _trained("debian-en-fr", "train_translator.py")
    assert results["bleu_after_beam4"] > results["bleu_before"] + 3   # it learnt something
    examples = results["examples"]
    translate = pipeline("translation_en_to_fr", model=str(folder / "model"))
    got = translate([e["en"] for e in examples], num_beams=4)
    assert [g["translation_text"] for g in got] == [e["fr_model"] for e in examples]
    batched = translate([e["en"] for e in examples], num_beams=4, batch_size=8)
    assert [g["translation_text"] for g in batched] == [e["fr_model"] for e in examples]


@pytest.mark.slow
def test_the_trained_summarizer_summarizes_held_out_descriptions_as_recorded():
    folder, results = _trained("debian-summarizer", "train_summarizer.py")
    assert results["rougeL_after_beam4_no_repeat_3gram"] > results["rougeL_before"] + 10
    sys.path.insert(0, str(EXAMPLES))
    try:
        import debian_text
    finally:
        sys.path.remove(str(EXAMPLES))
    rows = debian_text.load("summarization")["test"][: len(results["examples"])]
    assert [r["document"][:160] for r in rows] == [e["document"] for e in results["examples"]]
    tok = AutoTokenizer.from_pretrained(folder / "model")
    model = AutoModelForSeq2SeqLM.from_pretrained(folder / "model")
    batch = tok([r["document"] for r in rows], truncation=True, max_length=64, padding=True,
                return_tensors="pt")
    out = model.generate(**batch)   # the saved generation config: 4 beams, no repeated trigram
    got = [t.strip() for t in tok.batch_decode(out, skip_special_tokens=True)]
    assert got == [e["model"] for e in results["examples"]]
    summarize = pipeline("summarization", model=str(folder / "model"))
    texts = [s["summary_text"] for s in summarize([r["document"] for r in rows], truncation=True)]
    assert all(t.strip() for t in texts)
