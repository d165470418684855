"""Record the reference's text-classification pipeline on a real fine-tuned head.

Imports the reference (`transformers`, `peft`); run it in the reference venv:

    /work/refvenv/bin/python scripts/golden_finetuned.py

(``scripts/make_goldens.py finetuned`` calls :func:`main` too.) The base checkpoint is the real
all-MiniLM-L6-v2, obtained with this library's ``pretrained.io.fetch`` (pinned, hash-checked); the
head is the LoRA adapter in tests/fixtures/real/minilm-debian-sections-lora/ (a Debian package
section classifier made by examples/finetune_minilm.py, see the README there).

Writes tests/fixtures/real/minilm-debian-sections-lora/golden.json: for one held-out text per
section, the reference pipeline's output with ``top_k=None`` (every label and score, as a
user sees it) and the raw logits, plus the versions that produced them.
"""

from __future__ import annotations

import json
import sys
from pathlib import Path

import peft
import torch
import transformers
from safetensors.torch import load_file

REPO = Path(__file__).resolve().parent.parent
FIXTURE = REPO / "tests" / "fixtures" / "real" / "minilm-debian-sections-lora"
sys.path.insert(0, str(REPO))  # for pretrained.io.fetch only


def golden_texts(heldout: dict) -> list[str]:
    """The first held-out text of each section, in label-id order (12 texts)."""
    first: dict[str, str] = {}
    for row in heldout["rows"]:
        first.setdefault(row["label"], row["text"])
    return [first[name] for name in heldout["id2label"].values()]


def main() -> None:
    from pretrained.io.fetch import fetch

    heldout = json.loads((FIXTURE / "heldout.json").read_text())
    id2label = {int(k): v for k, v in heldout["id2label"].items()}
    base_path = fetch("all-MiniLM-L6-v2", quiet=True)
    base = transformers.AutoModelForSequenceClassification.from_pretrained(
        base_path, num_labels=len(id2label), id2label=id2label, label2id={v: k for k, v in id2label.items()})
    model = peft.PeftModel.from_pretrained(base, FIXTURE).eval()
    model = model.merge_and_unload()
    # guard: the trained head (modules_to_save) must have replaced the random one
    head = load_file(str(FIXTURE / "adapter_model.safetensors"))["base_model.model.classifier.weight"]
    if not torch.equal(model.classifier.weight, head):
        raise SystemExit("the reference did not load the classifier head from the adapter")
    tok = transformers.AutoTokenizer.from_pretrained(base_path)
    clf = transformers.pipeline("text-classification", model=model, tokenizer=tok)
    texts = golden_texts(heldout)
    outputs = [clf(t, top_k=None) for t in texts]
    with torch.no_grad():
        logits = model(**tok(texts, padding=True, return_tensors="pt")).logits
    record = {
        "versions": {"transformers": transformers.__version__, "peft": peft.__version__,
                     "torch": torch.__version__},
        "base": "all-MiniLM-L6-v2 (pretrained.io.fetch)",
        "call": {"task": "text-classification", "kwargs": {"top_k": None}},
        "cases": [{"text": t, "expected": heldout_label(heldout, t), "output": o, "logits": row}
                  for t, o, row in zip(texts, outputs, logits.tolist())],
    }
    (FIXTURE / "golden.json").write_text(json.dumps(record, indent=1, ensure_ascii=False) + "\n")
    right = sum(c["output"][0]["label"] == c["expected"] for c in record["cases"])
    print(f"finetuned: {len(texts)} texts, top label right on {right}")


def heldout_label(heldout: dict, text: str) -> str:
    return next(r["label"] for r in heldout["rows"] if r["text"] == text)


if __name__ == "__main__":
    main()
