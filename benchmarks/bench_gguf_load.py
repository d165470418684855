"""Load time of a GGUF checkpoint, this project beside the reference, on the same file.

    python benchmarks/bench_gguf_load.py [--ref-python /work/refvenv/bin/python] [--runs 3]

The file is the real SmolLM2-135M-Instruct Q4_1 GGUF (``pretrained.io.fetch``, cached). Each run is
a fresh subprocess, ours and the reference's alternating so that load on the machine hits both
alike. Timed: ``AutoModelForCausalLM.from_pretrained(folder, gguf_file=name)`` (dequantized to
float32), after ``import torch`` and the library's import; the whole process time (imports
included) is printed too, and, separately, ``AutoTokenizer.from_pretrained(..., gguf_file=)``.
Medians of ``--runs``; the ratio is reference / ours.
"""

from __future__ import annotations

import argparse
import json
import os
import statistics
import subprocess
import sys
import time
from pathlib import Path

from reference import reference_python  # benchmarks/reference.py

ROOT = Path(__file__).resolve().parent.parent

SNIPPET = """
import json, time
t_start = time.perf_counter()
import torch

{imp}
t0 = time.perf_counter()
model = AutoModelForCausalLM.from_pretrained({folder!r}, gguf_file={name!r}, dtype=torch.float32)
t1 = time.perf_counter()
tok = AutoTokenizer.from_pretrained({folder!r}, gguf_file={name!r})
t2 = time.perf_counter()
assert tok("Paris")["input_ids"] and model.config.num_hidden_layers == 30
print(json.dumps({{"model": t1 - t0, "tokenizer": t2 - t1, "imports": t0 - t_start}}))
"""
OURS = "from pretrained import AutoModelForCausalLM, AutoTokenizer"
REF = ("import transformers; transformers.logging.set_verbosity_error()\n"
       "from transformers import AutoModelForCausalLM, AutoTokenizer")


def run(python: str, imp: str, folder: str, name: str) -> dict:
    env = dict(os.environ, PYTHONPATH=str(ROOT), HF_HUB_OFFLINE="1", TRANSFORMERS_VERBOSITY="error",
               TQDM_DISABLE="1")
    t = time.perf_counter()
    out = subprocess.run([python, "-c", SNIPPET.format(imp=imp, folder=folder, name=name)],
                         capture_output=True, text=True, env=env, cwd=ROOT)
    wall = time.perf_counter() - t
    if out.returncode:
        raise SystemExit(out.stderr[-3000:])
    result = json.loads(out.stdout.strip().splitlines()[-1])
    result["process"] = wall
    return result


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--ref-python", help="python of a venv with transformers (default: this one, if it has it)")
    ap.add_argument("--runs", type=int, default=3)
    args = ap.parse_args()
    args.ref_python = reference_python(args.ref_python)
    sys.path.insert(0, str(ROOT))
    from pretrained.io.fetch import fetch

    path = Path(fetch("SmolLM2-135M-Instruct-Q4_1-gguf", quiet=True))
    folder, name = str(path.parent), path.name
    ours, ref = [], []
    for i in range(args.runs):
        ours.append(run(sys.executable, OURS, folder, name))
        ref.append(run(args.ref_python, REF, folder, name))
        print(f"run {i + 1}: ours model {ours[-1]['model']:.2f} s, reference model "
              f"{ref[-1]['model']:.2f} s", flush=True)

    def med(rows: list[dict], key: str) -> float:
        return statistics.median(r[key] for r in rows)

    print(f"\nSmolLM2-135M-Instruct Q4_1 GGUF ({path.stat().st_size / 2**20:.0f} MiB), float32, "
          f"median of {args.runs} fresh processes (CPUs: {os.cpu_count()})")
    print(f"{'':22}{'ours':>9}{'reference':>11}{'ratio':>8}")
    for key, label in (("model", "model from_pretrained"), ("tokenizer", "tokenizer"),
                       ("imports", "imports"), ("process", "whole process")):
        o, r = med(ours, key), med(ref, key)
        print(f"{label:22}{o:8.2f}s{r:10.2f}s{r / o:7.1f}x")


if __name__ == "__main__":
    main()
