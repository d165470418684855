"""Decode speed of causal LMs, this project beside the reference, on the same weights.

    python benchmarks/bench_generate.py [--ref-python /work/refvenv/bin/python] [--repeats 5]
        [--models gpt2,smollm2] [--dtypes float32,bfloat16] [--batches 1,8] [--rounds 1]

Models: a GPT-2-small-sized model (124M parameters, random weights, seed 0) and the real
SmolLM2-135M-Instruct (its Q4_1 GGUF from ``pretrained.fetch``, dequantized to float32 once).
Both are saved once as safetensors folders by this library (``--workdir``, reused when present),
and both libraries load those folders, so neither side's GGUF reader is timed.

Each (library, model, dtype, batch) runs in a fresh subprocess, ours and the reference's one
after the other: load with ``torch_dtype``, greedy decoding of a fixed random prompt of
``--prompt`` tokens (batch rows differ, no padding), exactly ``--new`` new tokens (eos disabled),
one warm-up call, then ``--repeats`` pairs of timed calls:
  * time to first token (TTFT): ``generate(max_new_tokens=1)``, prefill + one token;
  * decode tokens/s: (new - 1) steps over the full call minus TTFT, times the batch size
    (so batch 8 counts the tokens of all 8 rows).
Medians over repeats. Peak memory: the process's peak RSS (VmHWM, reset after loading) during
the timed calls, i.e. weights + cache + activations.

Two bounds, computed in eager torch in a separate subprocess from the same weights:
  * matmul floor: every linear of one decode step (the model's shapes and dtype, lm_head
    included) as ``F.linear`` back to back, nothing else; tokens/s = batch / step time. "packed"
    is the same with weights pre-packed for oneDNN (what this library uses where it is faster).
  * copy bound: measured memcpy bandwidth / bytes of weights read per step.
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

ROOT = Path(__file__).resolve().parent.parent
GGUF = "SmolLM2-135M-Instruct-Q4_1-gguf"

WORKER = r"""
import json, os, statistics, sys, time
import torch
lib, folder, dtype, batch, prompt, new, repeats = {args!r}
dtype = getattr(torch, dtype)
if lib == "ours":
    sys.path.insert(0, {root!r})
    from pretrained import AutoModelForCausalLM
    model = AutoModelForCausalLM.from_pretrained(folder, torch_dtype=dtype)
else:
    import transformers
    transformers.logging.set_verbosity_error()
    from transformers import AutoModelForCausalLM
    model = AutoModelForCausalLM.from_pretrained(folder, dtype=dtype)
model.eval()
vocab = model.config.vocab_size
ids = torch.randint(100, vocab - 100, (batch, prompt), generator=torch.Generator().manual_seed(0))
mask = torch.ones_like(ids)

def run(n):
    t = time.perf_counter()
    out = model.generate(input_ids=ids, attention_mask=mask, max_new_tokens=n, min_new_tokens=n,
                         do_sample=False, eos_token_id=None, pad_token_id=0)
    dt = time.perf_counter() - t
    assert out.shape == (batch, prompt + n), out.shape
    return dt, out

def rss(field):
    for line in open("/proc/self/status"):
        if line.startswith(field):
            return int(line.split()[1]) * 1024

run(new)  # warm-up: first-call costs (allocation, kernel selection, lazy packing)
loaded = rss("VmRSS:")
with open("/proc/self/clear_refs", "w") as f:
    f.write("5")  # reset the peak RSS (VmHWM) to the current RSS
firsts, fulls = [], []
for _ in range(repeats):
    firsts.append(run(1)[0])
    dt, out = run(new)
    fulls.append(dt)
ttft = statistics.median(firsts)
full = statistics.median(fulls)
print(json.dumps({{"ttft": ttft, "full": full,
                   "decode_tps": batch * (new - 1) / max(full - ttft, 1e-9),
                   "peak_rss": rss("VmHWM:"), "rss_after_warmup": loaded,
                   "tokens": out[:, prompt:].tolist()}}))
"""

FLOOR = r"""
import json, statistics, time
import torch, torch.nn.functional as F
from safetensors.torch import load_file
folder, kind, dtype, batches, steps = {args!r}
dtype = getattr(torch, dtype)
sd = load_file(folder + "/model.safetensors")
cfg = json.load(open(folder + "/config.json"))
ws = []
if kind == "gpt2":  # Conv1D weights are (in, out): use them as nn.Linear's (out, in)
    for i in range(cfg["n_layer"]):
        for name in ("attn.c_attn", "attn.c_proj", "mlp.c_fc", "mlp.c_proj"):
            ws.append(sd[f"transformer.h.{{i}}.{{name}}.weight"].t())
    ws.append(sd.get("lm_head.weight", sd["transformer.wte.weight"]))
else:
    for i in range(cfg["num_hidden_layers"]):
        for name in ("self_attn.q_proj", "self_attn.k_proj", "self_attn.v_proj", "self_attn.o_proj",
                     "mlp.gate_proj", "mlp.up_proj", "mlp.down_proj"):
            ws.append(sd[f"model.layers.{{i}}.{{name}}.weight"])
    ws.append(sd.get("lm_head.weight", sd["model.embed_tokens.weight"]))
ws = [w.to(dtype).contiguous() for w in ws]
nbytes = sum(w.numel() * w.element_size() for w in ws)
res = {{"weight_bytes": nbytes}}
with torch.inference_mode():
    packed = [torch.ops.mkldnn._reorder_linear_weight(w, None) for w in ws]
    for b in batches:
        xs = {{n: torch.randn(b, 1, n, dtype=dtype) for n in {{w.shape[1] for w in ws}}}}
        def plain():
            for w in ws:
                F.linear(xs[w.shape[1]], w)
        def pk():
            for w, p in zip(ws, packed):
                torch.ops.mkldnn._linear_pointwise(xs[w.shape[1]], p, None, "none", [], "")
        for name, f in (("floor", plain), ("packed", pk)):
            for _ in range(3):
                f()
            ts = []
            for _ in range(steps):
                t = time.perf_counter(); f(); ts.append(time.perf_counter() - t)
            res[f"{{name}}_{{b}}"] = b / statistics.median(ts)
    src = torch.empty(2 ** 27, dtype=torch.float32).fill_(1.0)  # 512 MiB
    dst = torch.empty_like(src)
    dst.copy_(src)
    ts = []
    for _ in range(7):
        t = time.perf_counter(); dst.copy_(src); ts.append(time.perf_counter() - t)
    res["copy_gbps"] = src.numel() * 4 / statistics.median(ts) / 1e9
res["bound"] = res["copy_gbps"] * 1e9 / nbytes
print(json.dumps(res))
"""


def subprocess_json(python: str, code: str) -> dict:
    env = dict(os.environ, HF_HUB_OFFLINE="1", TRANSFORMERS_VERBOSITY="error", TQDM_DISABLE="1",
               TOKENIZERS_PARALLELISM="false")
    out = subprocess.run([python, "-c", code], capture_output=True, text=True, env=env, cwd="/")
    if out.returncode:
        raise SystemExit(f"{python} failed:\n{out.stderr[-4000:]}")
    return json.loads(out.stdout.strip().splitlines()[-1])


def make_checkpoints(workdir: Path) -> dict[str, Path]:
    """The two weight folders, written once by this library."""
    sys.path.insert(0, str(ROOT))
    import torch

    from pretrained import AutoModelForCausalLM
    from pretrained.models.gpt2 import GPT2Config, GPT2LMHeadModel

    folders = {"gpt2": workdir / "gpt2-small-random", "smollm2": workdir / "smollm2-135m-f32"}
    if not (folders["gpt2"] / "model.safetensors").exists():
        torch.manual_seed(0)
        GPT2LMHeadModel.from_config(GPT2Config()).save_pretrained(folders["gpt2"])
    if not (folders["smollm2"] / "model.safetensors").exists():
        from pretrained.fetch import fetch

        path = Path(fetch(GGUF, quiet=True))
        model = AutoModelForCausalLM.from_pretrained(path.parent, gguf_file=path.name,
                                                     torch_dtype=torch.float32)
        model.save_pretrained(folders["smollm2"])
    return folders


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--ref-python", default="/work/refvenv/bin/python")
    ap.add_argument("--workdir", default=str(Path.home() / ".cache/pretrained/bench-generate"))
    ap.add_argument("--models", default="gpt2,smollm2")
    ap.add_argument("--dtypes", default="float32,bfloat16")
    ap.add_argument("--batches", default="1,8")
    ap.add_argument("--libs", default="ours,reference")
    ap.add_argument("--prompt", type=int, default=32)
    ap.add_argument("--new", type=int, default=64)
    ap.add_argument("--repeats", type=int, default=5)
    ap.add_argument("--rounds", type=int, default=1,
                    help="fresh subprocess pairs per setting; the median round is reported")
    args = ap.parse_args()
    cmd = "python " + " ".join([os.path.relpath(__file__, ROOT), *sys.argv[1:]])
    folders = make_checkpoints(Path(args.workdir))
    models = args.models.split(",")
    dtypes = args.dtypes.split(",")
    batches = [int(b) for b in args.batches.split(",")]
    libs = args.libs.split(",")
    pythons = {"ours": sys.executable, "reference": args.ref_python}
    rows = []
    for model in models:
        for dtype in dtypes:
            fl = subprocess_json(sys.executable, FLOOR.format(
                args=(str(folders[model]), model, dtype, batches, 30)))
            for batch in batches:
                res: dict = {lib: [] for lib in libs}
                for _ in range(args.rounds):
                    for lib in libs:
                        res[lib].append(subprocess_json(pythons[lib], WORKER.format(
                            root=str(ROOT), args=(lib, str(folders[model]), dtype, batch,
                                                  args.prompt, args.new, args.repeats))))
                row = {"model": model, "dtype": dtype, "batch": batch,
                       "floor": fl[f"floor_{batch}"], "packed": fl[f"packed_{batch}"],
                       "bound": fl["bound"], "copy_gbps": fl["copy_gbps"]}
                for lib in libs:
                    runs = sorted(res[lib], key=lambda r: r["decode_tps"])
                    row[lib] = runs[len(runs) // 2]
                if len(libs) == 2:
                    a, b = (row[lib]["tokens"] for lib in libs)
                    same = sum(x == y for ra, rb in zip(a, b) for x, y in zip(ra, rb))
                    row["same_tokens"] = same / sum(len(r) for r in a)
                rows.append(row)
                print(json.dumps({k: v for k, v in row.items() if k not in libs} | {
                    lib: {k: v for k, v in row[lib].items() if k != "tokens"} for lib in libs}),
                    flush=True)
    report(rows, libs, args, cmd)


def report(rows: list[dict], libs: list[str], args, cmd: str) -> None:
    mib = lambda b: f"{b / 2**20:.0f}"  # noqa: E731
    print(f"\n{cmd}\nprompt {args.prompt} tokens, {args.new} new tokens, greedy; decode tok/s = "
          f"batch x (new - 1) / (full call - TTFT); medians of {args.repeats} repeats; "
          f"load average {os.getloadavg()[0]:.2f}; CPUs {os.cpu_count()}\n")
    ours, ref = "ours" in libs, "reference" in libs
    head = ["model", "dtype", "batch"]
    if ours:
        head += ["ours tok/s"]
    if ref:
        head += ["ref tok/s"]
    head += ["floor tok/s", "packed floor", "copy bound"]
    if ours and ref:
        head += ["ours/ref"]
    if ours:
        head += ["ours/floor", "TTFT ours ms"]
    if ref:
        head += ["TTFT ref ms"]
    if ours:
        head += ["peak RSS ours MiB"]
    if ref:
        head += ["peak RSS ref MiB"]
    if ours and ref:
        head += ["same tokens"]
    print("| " + " | ".join(head) + " |")
    print("|" + "---|" * len(head))
    for r in rows:
        cells = [r["model"], r["dtype"], str(r["batch"])]
        if ours:
            cells.append(f"{r['ours']['decode_tps']:.1f}")
        if ref:
            cells.append(f"{r['reference']['decode_tps']:.1f}")
        cells += [f"{r['floor']:.1f}", f"{r['packed']:.1f}", f"{r['bound']:.1f}"]
        if ours and ref:
            cells.append(f"{r['ours']['decode_tps'] / r['reference']['decode_tps']:.2f}x")
        if ours:
            cells += [f"{r['ours']['decode_tps'] / r['floor']:.0%}", f"{r['ours']['ttft'] * 1e3:.0f}"]
        if ref:
            cells.append(f"{r['reference']['ttft'] * 1e3:.0f}")
        if ours:
            cells.append(mib(r["ours"]["peak_rss"]))
        if ref:
            cells.append(mib(r["reference"]["peak_rss"]))
        if ours and ref:
            cells.append(f"{r['same_tokens']:.0%}")
        print("| " + " | ".join(cells) + " |")
    print(f"\ncopy bandwidth (memcpy of 512 MiB, bytes copied / s): "
          + ", ".join(f"{r['copy_gbps']:.1f}" for r in rows[::len(set(x['batch'] for x in rows))])
          + " GB/s")


if __name__ == "__main__":
    main()
