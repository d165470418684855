"""Import time and peak memory while loading, this project beside the reference.

    python benchmarks/bench_load.py [--ref-python /path/to/venv-with-transformers/bin/python]

Each measurement runs in a fresh subprocess. Import time is the extra cost of `import pretrained`
(resp. `import transformers` + touching AutoModel) on top of `import torch`, median of 5 runs.
Load memory: a GPT-2-small-sized model (124M parameters, random weights, float32 safetensors,
498 MB) is loaded with AutoModelForCausalLM; we report the peak RSS growth (VmHWM after load minus
RSS before) next to the size of the weights file.
"""

from __future__ import annotations

import argparse
import json
import os
import statistics
import subprocess
import sys
import tempfile
from pathlib import Path

ROOT = Path(__file__).resolve().parent.parent

IMPORT_SNIPPET = """
import time, torch
t0 = time.perf_counter()
{stmt}
print(time.perf_counter() - t0)
"""

LOAD_SNIPPET = """
import sys, time, json, torch
sys.path.insert(0, {root!r})
def rss(field):
    for line in open('/proc/self/status'):
        if line.startswith(field):
            return int(line.split()[1]) * 1024
{imp}
before = rss('VmRSS:')
t0 = time.perf_counter()
model = AutoModelForCausalLM.from_pretrained({path!r}, torch_dtype=torch.float32)
dt = time.perf_counter() - t0
load_peak = rss('VmHWM:')
with torch.no_grad():  # touch every weight: memory-mapped pages count once they are read
    model(torch.ones(1, 8, dtype=torch.long))
print(json.dumps({{"seconds": dt, "load_peak_growth": load_peak - before,
                   "peak_growth": rss('VmHWM:') - before, "after": rss('VmRSS:') - before}}))
"""


def run(python: str, code: str) -> str:
    env = dict(os.environ, PYTHONPATH=str(ROOT), HF_HUB_OFFLINE="1", TRANSFORMERS_VERBOSITY="error")
    out = subprocess.run([python, "-c", code], capture_output=True, text=True, env=env, cwd=ROOT)
    if out.returncode:
        raise SystemExit(out.stderr)
    return out.stdout.strip().splitlines()[-1]


def import_time(python: str, stmt: str) -> float:
    return statistics.median(float(run(python, IMPORT_SNIPPET.format(stmt=stmt))) for _ in range(5))


def make_checkpoint(folder: Path) -> Path:
    sys.path.insert(0, str(ROOT))
    from pretrained.models.gpt2 import GPT2Config, GPT2LMHeadModel

    model = GPT2LMHeadModel.from_config(GPT2Config())  # GPT-2 small: 124M parameters
    model.save_pretrained(folder)
    return folder


def main() -> None:
    ap = argparse.ArgumentParser()
    ap.add_argument("--ref-python", help="python of a venv with transformers installed")
    args = ap.parse_args()
    py = sys.executable
    res: dict = {"import_s": {
        "pretrained": import_time(py, "import pretrained"),
        "pretrained_api": import_time(py, "from pretrained import AutoModel, AutoTokenizer"),
    }}
    if args.ref_python:
        res["import_s"]["reference"] = import_time(args.ref_python, "import transformers")
        res["import_s"]["reference_api"] = import_time(
            args.ref_python, "from transformers import AutoModel, AutoTokenizer")
    with tempfile.TemporaryDirectory() as tmp:
        folder = make_checkpoint(Path(tmp))
        size = (folder / "model.safetensors").stat().st_size
        res["weights_bytes"] = size
        ours = json.loads(run(py, LOAD_SNIPPET.format(
            root=str(ROOT), path=str(folder), imp="from pretrained import AutoModelForCausalLM")))
        res["load"] = {"pretrained": ours}
        if args.ref_python:
            ref = json.loads(run(args.ref_python, LOAD_SNIPPET.format(
                root="/nonexistent", path=str(folder),
                imp="from transformers import AutoModelForCausalLM")))
            res["load"]["reference"] = ref
    print(json.dumps(res, indent=2))
    mb = lambda b: f"{b / 2**20:.0f} MiB"  # noqa: E731
    print()
    for k, v in res["import_s"].items():
        print(f"import {k}: {v * 1000:.0f} ms on top of import torch")
    for who, r in res["load"].items():
        print(f"load {who}: {r['seconds']:.2f} s; peak RSS growth during load "
              f"{mb(r['load_peak_growth'])}, through the first forward {mb(r['peak_growth'])} "
              f"({r['peak_growth'] / size:.2f}x the {mb(size)} weights file)")


if __name__ == "__main__":
    main()
