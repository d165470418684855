"""Fine-tune the real all-MiniLM-L6-v2 encoder as a text classifier, fully and with LoRA.

The task: predict a Debian package's section (games, science, sound, mail, ...) from its
one-line description, e.g. "simple paint program for kids" -> graphics. The labelled data comes
from the package index every Debian machine has (``apt-cache dumpavail``), so it is real,
recognisable and reachable offline. Recipe (deterministic, see ``build_dataset``): Debian
bookworm main amd64; the 12 topical sections below; one example per distinct description;
train/test split by a hash of the *source* package (binary packages built from one source never
straddle the split); at most 300 training and 60 test examples per section.

Usage::

    python examples/finetune_minilm.py                 # full fine-tune and LoRA, ~10 min on 2 cores
    python examples/finetune_minilm.py --mode lora --epochs 1 --out /tmp/minilm-debian
    python examples/finetune_minilm.py --export-fixture tests/fixtures/real/minilm-debian-sections-lora

Prints held-out accuracy before and after training and saves the models (full: a normal
``from_pretrained`` folder with its tokenizer; LoRA: the adapter, plus a merged copy).
``--export-fixture`` trains nothing: it copies the saved LoRA run (from ``--out``) into a small
folder for tests (adapter, label names, held-out split; the base comes from ``fetch``).
"""

from __future__ import annotations

import argparse
import hashlib
import json
import shutil
import subprocess
import sys
import time
from collections import Counter
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parent.parent))

import numpy as np  # noqa: E402
import torch  # noqa: E402

from pretrained import AutoModelForSequenceClassification, AutoTokenizer  # noqa: E402
from pretrained.io.fetch import fetch  # noqa: E402
from pretrained.peft import LoraConfig, get_peft_model  # noqa: E402
from pretrained.training import Trainer, TrainingArguments  # noqa: E402

SECTIONS = ["admin", "database", "editors", "games", "graphics", "mail", "math", "net", "science",
            "sound", "text", "video"]
MAX_TRAIN, MAX_TEST = 300, 60
# The package index this recipe was recorded with (apt's list file for bookworm main amd64).
PINNED_INDEX_SHA256 = "38163a87d0269f1af22bdddc092bf8e6c605f981642a09561e60565358f15e07"


def read_packages() -> list[dict[str, str]]:
    out = subprocess.run(["apt-cache", "dumpavail"], capture_output=True, text=True, check=True).stdout
    rows = []
    for stanza in out.split("\n\n"):
        fields = {}
        for line in stanza.splitlines():
            if line and not line[0].isspace() and ":" in line:
                key, _, value = line.partition(":")
                fields[key] = value.strip()
        if "Package" in fields and "Description" in fields:
            rows.append(fields)
    return rows


def index_sha256() -> str | None:
    lists = sorted(Path("/var/lib/apt/lists").glob("*bookworm_main_binary-amd64_Packages*"))
    return hashlib.sha256(lists[0].read_bytes()).hexdigest() if lists else None


def build_dataset() -> tuple[list[dict], list[dict]]:
    train, test = [], []
    seen: set[str] = set()
    per = Counter()
    rows = sorted(read_packages(), key=lambda r: hashlib.sha256(r["Package"].encode()).hexdigest())
    for row in rows:
        section = row.get("Section", "").split("/")[-1]  # "contrib/games" -> "games"
        text = row["Description"]
        if section not in SECTIONS or text.lower() in seen:
            continue
        seen.add(text.lower())
        source = row.get("Source", row["Package"]).split(" ")[0]
        bucket = int(hashlib.sha256(source.encode()).hexdigest(), 16) % 10
        split, cap = ("test", MAX_TEST) if bucket == 0 else ("train", MAX_TRAIN)
        if per[split, section] >= cap:
            continue
        per[split, section] += 1
        (test if split == "test" else train).append({"text": text, "label": SECTIONS.index(section),
                                                      "package": row["Package"]})
    return train, test


def tokenize(tok, rows: list[dict]) -> list[dict]:
    enc = tok([r["text"] for r in rows], truncation=True, max_length=64)
    return [{"input_ids": ids, "attention_mask": m, "label": r["label"]}
            for ids, m, r in zip(enc["input_ids"], enc["attention_mask"], rows)]


def accuracy(pred) -> dict[str, float]:
    return {"accuracy": float((np.argmax(pred.predictions, -1) == pred.label_ids).mean())}


def load_model(path: Path):
    id2label = dict(enumerate(SECTIONS))
    return AutoModelForSequenceClassification.from_pretrained(
        path, num_labels=len(SECTIONS), id2label=id2label, label2id={v: k for k, v in id2label.items()})


def run(mode: str, path: Path, tok, train: list[dict], test: list[dict], epochs: float, out: Path) -> dict:
    torch.manual_seed(0)
    model = load_model(path)
    lr = 5e-5 if mode == "full" else 1e-3
    if mode == "lora":
        model = get_peft_model(model, LoraConfig(r=8, lora_alpha=16, lora_dropout=0.1, task_type="SEQ_CLS",
                                                 target_modules=["query", "key", "value"]))
    args = TrainingArguments(output_dir=str(out / f"{mode}-run"), num_train_epochs=epochs,
                             per_device_train_batch_size=32, per_device_eval_batch_size=64, learning_rate=lr,
                             weight_decay=0.01, warmup_ratio=0.1, eval_strategy="epoch", save_strategy="epoch",
                             save_total_limit=1, logging_steps=20, seed=0, disable_tqdm=not sys.stderr.isatty())
    trainer = Trainer(model=model, args=args, train_dataset=train, eval_dataset=test, processing_class=tok,
                      compute_metrics=accuracy)
    trainable = sum(p.numel() for p in model.parameters() if p.requires_grad)
    before = trainer.evaluate()["eval_accuracy"]
    start = time.time()
    result = trainer.train()
    minutes = (time.time() - start) / 60
    after = trainer.evaluate()
    target = out / f"minilm-debian-sections-{mode}"
    trainer.save_model(str(target))
    if mode == "lora":  # also a plain model with the update merged in, for pipelines
        merged = model.merge_and_unload()
        merged.save_pretrained(out / "minilm-debian-sections-lora-merged")
        tok.save_pretrained(str(out / "minilm-debian-sections-lora-merged"))
    record = {"mode": mode, "accuracy_before": round(before, 4), "accuracy_after": round(after["eval_accuracy"], 4),
              "eval_loss": round(after["eval_loss"], 4), "train_loss": round(result.training_loss, 4),
              "steps": result.global_step, "epochs": epochs, "learning_rate": lr,
              "train_minutes": round(minutes, 2), "trainable_params": trainable, "saved_to": str(target)}
    print(json.dumps(record))
    return record


def export_fixture(out: Path, dest: Path) -> None:
    """Copy the LoRA run saved under ``out`` into ``dest``: adapter_config.json (its base named by
    hub id, not this machine's path), adapter_model.safetensors (LoRA + classifier head), and
    heldout.json (id2label, which PEFT's adapter files do not carry, and the test split)."""
    src = out / "minilm-debian-sections-lora"
    dest.mkdir(parents=True, exist_ok=True)
    config = json.loads((src / "adapter_config.json").read_text())
    config["base_model_name_or_path"] = "sentence-transformers/all-MiniLM-L6-v2"
    (dest / "adapter_config.json").write_text(json.dumps(config, indent=2) + "\n")
    shutil.copyfile(src / "adapter_model.safetensors", dest / "adapter_model.safetensors")
    results = json.loads((out / "results.json").read_text())
    lora = next(r for r in results["runs"] if r["mode"] == "lora")
    rows = json.loads((out / "debian-sections.json").read_text())["test"]
    head = {"data_sha256": results["data_sha256"], "accuracy": lora["accuracy_after"],
            "id2label": dict(enumerate(SECTIONS))}
    lines = [json.dumps({"text": r["text"], "label": SECTIONS[r["label"]]}, ensure_ascii=False) for r in rows]
    text = json.dumps(head, indent=1)[:-2] + ',\n "rows": [\n  ' + ",\n  ".join(lines) + "\n ]\n}\n"
    (dest / "heldout.json").write_text(text)  # one row per line: readable diffs
    print(f"exported {len(rows)} held-out rows and the adapter to {dest}")


def main() -> None:
    # into a log file (not a terminal): each line as it is printed, and the Trainer prints its
    # logs as lines (no progress bar there), so a run of ~10 minutes shows where it is
    sys.stdout.reconfigure(line_buffering=True)
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--mode", choices=["full", "lora", "both"], default="both")
    parser.add_argument("--epochs", type=float, default=3)
    parser.add_argument("--out", default=str(Path.home() / ".cache" / "pretrained" / "finetuned"))
    parser.add_argument("--export-fixture", metavar="DIR", help="copy the saved LoRA run to DIR; no training")
    a = parser.parse_args()
    out = Path(a.out)
    if a.export_fixture:
        return export_fixture(out, Path(a.export_fixture))
    out.mkdir(parents=True, exist_ok=True)
    sha = index_sha256()
    if sha != PINNED_INDEX_SHA256:
        print(f"note: the apt package index differs from the pinned one ({sha}); the data set may differ")
    train_rows, test_rows = build_dataset()
    data_sha = hashlib.sha256(json.dumps([train_rows, test_rows]).encode()).hexdigest()
    print(f"data: {len(train_rows)} train / {len(test_rows)} test examples, {len(SECTIONS)} sections, "
          f"sha256 {data_sha[:16]}")
    (out / "debian-sections.json").write_text(json.dumps({"train": train_rows, "test": test_rows}))
    path = fetch("all-MiniLM-L6-v2")
    tok = AutoTokenizer.from_pretrained(path)
    train, test = tokenize(tok, train_rows), tokenize(tok, test_rows)
    records = [run(m, path, tok, train, test, a.epochs, out) for m in (["full", "lora"] if a.mode == "both" else [a.mode])]
    (out / "results.json").write_text(json.dumps({"data_sha256": data_sha, "n_train": len(train),
                                                  "n_test": len(test), "index_sha256": sha, "runs": records},
                                                 indent=2) + "\n")


if __name__ == "__main__":
    main()
