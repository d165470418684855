"""Decode speed of causal LMs, this project beside the reference, on the same weights.

    python benchmarks/bench_generate.py [--ref-python /work/refvenv/bin/python] [--repeats 5]
        [--models gpt2,smollm2] [--dtypes float32,bfloat16] [--batches 1,8] [--rounds 1]
        [--threads N] [--compile]

Models: a GPT-2-small-sized model (124M parameters, random weights, seed 0) and the real
SmolLM2-135M-Instruct (its Q4_1 GGUF from ``pretrained.io.fetch``, dequantized to float32 once).
Both are saved once as safetensors folders by this library (``--workdir``, reused when present),
and both libraries load those folders, so neither side's GGUF reader is timed.

Variants (``--libs``): ``ours`` (default settings: plain weights, lean in memory),
``ours-packed`` (opt-in ``set_weight_packing(model)``: oneDNN-packed weights, fused q/k/v,
activations and residual sums inside the matmul kernels; a second copy of the weights) and
``reference``. Each (variant, model, dtype, batch) runs in a fresh subprocess, one after the
other (``--rounds`` times, median round reported): load with ``torch_dtype``, greedy decoding
of a fixed random prompt of ``--prompt`` tokens (batch rows differ, no padding), exactly
``--new`` new tokens (``min_new_tokens`` = ``max_new_tokens``, eos disabled), a first call of
each kind (its TTFT is reported: it includes one-time costs such as packing weights), then
``--repeats`` pairs of timed calls:
  * time to first token (TTFT): ``generate(max_new_tokens=1)``, prefill + one token;
  * decode tokens/s: (new - 1) steps over the full call minus TTFT, times the batch size
    (so batch 8 counts the tokens of all 8 rows).
Medians over repeats. Peak memory: the process's peak RSS (VmHWM, reset after the first calls)
during the timed calls: weights (and packed copies) + cache + activations.
``--compile`` adds the opt-in path: ours with ``model.forward = torch.compile(model.forward)``
and ``cache_implementation="static"`` (compilation is paid in the first calls).

Bounds, measured in our worker right after its timed calls, on the model's own weights:
  * matmul floor: every linear of one decode step (the model's shapes and dtype, lm_head
    included) as ``F.linear`` back to back, nothing else; tokens/s = batch / step time;
    "packed floor": the same products on weights pre-packed for oneDNN (what ``ours-packed``
    uses in bfloat16 and for several rows; one float32 row stays on MKL's plain kernel);
  * copy bound: memory traffic of a 512 MiB memcpy (bytes read + written per second) / bytes
    of weights read per step. Not a hard bound here: the 300 MiB L3 cache serves part of the
    weights, so the matmuls can beat it.
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
GGUF = "SmolLM2-135M-Instruct-Q4_1-gguf"

WORKER = r"""
import json, os, statistics, sys, time
import torch
lib, folder, dtype, batch, prompt, new, repeats, threads = {args!r}
if threads:
    torch.set_num_threads(threads)
dtype = getattr(torch, dtype)
extra = {{}}
if lib.startswith("ours"):
    sys.path.insert(0, {root!r})
    from pretrained import AutoModelForCausalLM
    model = AutoModelForCausalLM.from_pretrained(folder, torch_dtype=dtype)
    if lib == "ours-packed":  # opt-in: pre-packed oneDNN weights, fused projections
        from pretrained.backends import set_weight_packing
        set_weight_packing(model)
    if lib == "ours-compiled":  # opt-in: compiled forward over a static (fixed-shape) cache
        model.forward = torch.compile(model.forward, dynamic=False)
        extra["cache_implementation"] = "static"
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
                         do_sample=False, eos_token_id=None, pad_token_id=0, **extra)
    dt = time.perf_counter() - t
    assert out.shape == (batch, prompt + n), out.shape
    return dt, out

def rss(field):
    for line in open("/proc/self/status"):
        if line.startswith(field):
            return int(line.split()[1]) * 1024

first_ttft = run(1)[0]  # first call: kernel selection, weight packing, compilation
first_full = run(new)[0]
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
result = {{"ttft": ttft, "full": full, "first_ttft": first_ttft, "first_full": first_full,
          "decode_tps": batch * (new - 1) / max(full - ttft, 1e-9),
          "peak_rss": rss("VmHWM:"), "rss_after_warmup": loaded, "tokens": out[:, prompt:].tolist()}}
if lib == "ours":  # the bounds, right after the timed calls, on the same weights
    import torch.nn.functional as F
    from pretrained.layers import Conv1D
    ws = [(m.weight.t() if isinstance(m, Conv1D) else m.weight).detach().contiguous()
          for m in model.modules() if isinstance(m, (torch.nn.Linear, Conv1D))]
    result["weight_bytes"] = nbytes = sum(w.numel() * w.element_size() for w in ws)
    with torch.inference_mode():
        packed = [torch.ops.mkldnn._reorder_linear_weight(w, None) for w in ws]
        xs = {{n: torch.randn(batch, 1, n, dtype=dtype) for n in {{w.shape[1] for w in ws}}}}
        def plain():
            for w in ws:
                F.linear(xs[w.shape[1]], w)
        def pk():
            for w, p in zip(ws, packed):
                torch.ops.mkldnn._linear_pointwise(xs[w.shape[1]], p, None, "none", [], "")
        ts = {{"floor": [], "packed": []}}
        for _ in range(3):  # interleaved blocks: load on the machine hits both alike
            for name, f in (("floor", plain), ("packed", pk)):
                f()
                for _ in range(10):
                    t = time.perf_counter(); f(); ts[name].append(time.perf_counter() - t)
        for name, v in ts.items():
            result[name] = batch / statistics.median(v)
        del packed
        src = torch.empty(2 ** 27, dtype=torch.float32).fill_(1.0)  # 512 MiB, more than the L3 cache
        dst = torch.empty_like(src)
        dst.copy_(src)
        ts = []
        for _ in range(9):
            t = time.perf_counter(); dst.copy_(src); ts.append(time.perf_counter() - t)
    # memory traffic of a copy: every byte read once and written once
    result["copy_gbps"] = 2 * src.numel() * 4 / statistics.median(ts) / 1e9
    result["bound"] = result["copy_gbps"] * 1e9 / nbytes
print(json.dumps(result))
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
        from pretrained.io.fetch import fetch

        path = Path(fetch(GGUF, quiet=True))
        model = AutoModelForCausalLM.from_pretrained(path.parent, gguf_file=path.name,
                                                     torch_dtype=torch.float32)
        model.save_pretrained(folders["smollm2"])
    return folders


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--ref-python", help="python of a venv with transformers (default: this one, if it has it)")
    ap.add_argument("--workdir", default=str(Path.home() / ".cache/pretrained/bench-generate"))
    ap.add_argument("--models", default="gpt2,smollm2")
    ap.add_argument("--dtypes", default="float32,bfloat16")
    ap.add_argument("--batches", default="1,8")
    ap.add_argument("--libs", default="ours,ours-packed,reference",
                    help="ours (default settings), ours-packed (set_weight_packing), reference")
    ap.add_argument("--compile", action="store_true",
                    help="also time ours with torch.compile(model.forward) over a static cache "
                         "(opt-in path; compiling costs tens of seconds per process)")
    ap.add_argument("--threads", type=int, default=0, help="torch threads (0: torch's default)")
    ap.add_argument("--prompt", type=int, default=32)
    ap.add_argument("--new", type=int, default=64)
    ap.add_argument("--repeats", type=int, default=5)
    ap.add_argument("--rounds", type=int, default=1,
                    help="fresh subprocess pairs per setting; the median round is reported")
    args = ap.parse_args()
    if "reference" in args.libs.split(","):
        args.ref_python = reference_python(args.ref_python)
    cmd = "python " + " ".join([os.path.relpath(__file__, ROOT), *sys.argv[1:]])
    folders = make_checkpoints(Path(args.workdir))
    batches = [int(b) for b in args.batches.split(",")]
    libs = args.libs.split(",") + (["ours-compiled"] if args.compile else [])
    pythons = {"ours": sys.executable, "ours-packed": sys.executable,
               "ours-compiled": sys.executable, "reference": args.ref_python}
    rows = []
    for model in args.models.split(","):
        for dtype in args.dtypes.split(","):
            for batch in batches:
                res: dict = {lib: [] for lib in libs}
                for _ in range(args.rounds):
                    for lib in libs:
                        res[lib].append(subprocess_json(pythons[lib], WORKER.format(
                            root=str(ROOT), args=(lib, str(folders[model]), dtype, batch,
                                                  args.prompt, args.new, args.repeats,
                                                  args.threads))))
                row = {"model": model, "dtype": dtype, "batch": batch}
                for lib in libs:
                    runs = sorted(res[lib], key=lambda r: r["decode_tps"])
                    row[lib] = runs[len(runs) // 2]
                bounds = res.get("ours") or subprocess_json(sys.executable, WORKER.format(
                    root=str(ROOT), args=("ours", str(folders[model]), dtype, batch, args.prompt,
                                          2, 1, args.threads)))
                for key in ("floor", "packed", "bound", "copy_gbps"):
                    row[key] = statistics.median(r[key] for r in bounds) \
                        if isinstance(bounds, list) else bounds[key]
                if "reference" in libs:  # greedy tokens equal to the reference's, per variant
                    want = row["reference"]["tokens"]
                    row["same_tokens"] = {lib: sum(
                        x == y for ra, rb in zip(row[lib]["tokens"], want) for x, y in zip(ra, rb))
                        / sum(len(r) for r in want) for lib in libs if lib != "reference"}
                rows.append(row)
                print(json.dumps({k: v for k, v in row.items() if k not in libs} | {
                    lib: {k: v for k, v in row[lib].items() if k != "tokens"} for lib in libs}),
                    flush=True)
    report(rows, libs, args, cmd)


def report(rows: list[dict], libs: list[str], args, cmd: str) -> None:
    short = {"ours": "ours", "ours-packed": "packed", "reference": "ref",
             "ours-compiled": "compiled"}
    threads = args.threads or "default"
    print(f"\n`{cmd}`\n\nprompt {args.prompt} tokens, {args.new} new tokens, greedy; decode tok/s "
          f"= batch x (new - 1) / (full call - TTFT), medians of {args.repeats} repeats; torch "
          f"threads: {threads}; CPUs: {os.cpu_count()}; load average at the end: "
          f"{os.getloadavg()[0]:.2f}\n")
    head = ["model", "dtype", "batch"] + [f"{short[lib]} tok/s" for lib in libs]
    head += ["floor tok/s", "packed floor", "copy bound"]
    ratios = [lib for lib in libs if lib != "reference"]
    if "reference" in libs:
        head += [f"{short[lib]}/ref" for lib in ratios]
    head += [f"{short[lib]}/floor" for lib in ratios]
    head += [f"TTFT {short[lib]} ms" for lib in libs]
    head += [f"first TTFT {short[lib]} ms" for lib in ratios]
    head += [f"peak RSS {short[lib]} MiB" for lib in libs]
    if "reference" in libs:
        head += [f"{short[lib]} = ref tokens" for lib in ratios]
    print("| " + " | ".join(head) + " |")
    print("|" + "---|" * len(head))
    for r in rows:
        cells = [r["model"], r["dtype"], str(r["batch"])]
        cells += [f"{r[lib]['decode_tps']:.1f}" for lib in libs]
        cells += [f"{r['floor']:.1f}", f"{r['packed']:.1f}", f"{r['bound']:.1f}"]
        if "reference" in libs:
            cells += [f"{r[lib]['decode_tps'] / r['reference']['decode_tps']:.2f}x" for lib in ratios]
        cells += [f"{r[lib]['decode_tps'] / r['floor']:.0%}" for lib in ratios]
        cells += [f"{r[lib]['ttft'] * 1e3:.0f}" for lib in libs]
        cells += [f"{r[lib]['first_ttft'] * 1e3:.0f}" for lib in ratios]
        cells += [f"{r[lib]['peak_rss'] / 2**20:.0f}" for lib in libs]
        if "reference" in libs:
            cells += [f"{r['same_tokens'][lib]:.0%}" for lib in ratios]
        print("| " + " | ".join(cells) + " |")
    gb = sorted({f"{r['model']} {r['dtype']}: {r['copy_gbps']:.1f}" for r in rows})
    print("\nfloor: the step's linears alone (F.linear, plain weights); packed floor: the same on "
          "oneDNN-packed weights; copy bound: memcpy traffic (read + write, 512 MiB) / weight "
          "bytes per step. Measured memcpy traffic, GB/s: " + "; ".join(gb))


if __name__ == "__main__":
    main()
