"""Quantization on the CPU (issue 13): perplexity, resident memory and decode speed of the real
SmolLM2-135M-Instruct in float32, bfloat16, int8, nf4, round-to-nearest 4-bit, GPTQ-4 and AWQ-4.

    python benchmarks/bench_quantization.py [--part perplexity|memory|speed|qlora|ort|all]
        [--workdir ~/.cache/pretrained/bench-quantization] [--group-size 64] [--eval-tokens 8192]
        [--window 512] [--calib-samples 32] [--calib-len 256] [--threads 2]
        [--ref-python /work/refvenv/bin/python] [--json out.json]

Weights: the Q4_1 GGUF that ``pretrained.io.fetch`` ships, dequantized to float32 once and saved as a
safetensors folder (``<workdir>/float32``); every variant starts from that folder:

- float32, bfloat16: the folder as it is;
- int8 (``load_in_8bit``: LLM.int8(), bitsandbytes' numbers), int8-wo (the same + ``set_llm_int8(model,
  False)``: weight-only int8 per row) and nf4 (``load_in_4bit``, blocks of 64, computed in the model's
  dtype): quantized while loading;
- rtn4: round-to-nearest 4-bit with a zero point in groups of ``--group-size`` input columns
  (the float model rounded in place; the baseline GPTQ and AWQ exist to beat);
- gptq4, awq4: made once by ``quantize_model`` (``<workdir>/gptq4``, ``<workdir>/awq4``; GPTQ
  asymmetric, no act-order, damp 0.01, true-sequential only with ``--true-sequential``; AWQ with
  its clipping search), on the same groups, then loaded as checkpoints (the backend runs them
  through the int4 op).

Texts: calibration windows (``--calib-samples`` x ``--calib-len`` tokens) from the train split of
Debian's package descriptions (examples/debian_text.py, downloaded once), perplexity on the first
``--eval-tokens`` tokens of its test split (other packages: held out), in non-overlapping windows
of ``--window`` tokens. Without the Debian files: calibration on the licence texts of
/usr/share/common-licenses except GPL-3, perplexity on GPL-3.

Parts:

- ``perplexity``: exp(mean next-token loss), each variant computed in float32 except bfloat16;
- ``memory``: each variant in a fresh process, its float parts (embeddings, norms, the head) in
  bfloat16: resident memory (VmRSS) after loading and after one forward of 128 tokens, less the
  process's RSS before loading (torch imported; with ``--warm-up`` also after a tiny model was
  loaded and run, so the kernel library and thread pools are not counted); ratio to bfloat16;
- ``speed``: decode tokens/s (greedy, 32-token prompt, 64 new tokens, eos off, median of
  ``--repeats``) at batch 1 and 8, each variant computed in bfloat16, in a fresh process each,
  beside the reference (transformers) in bfloat16 on the same float folder.
  Timing-sensitive: run it alone on a quiet machine.
- ``qlora``: QLoRA (nf4, double quantization, bfloat16 compute) step time, peak memory and loss
  against LoRA on the bfloat16 model, ours and the reference's; ``ort``: int8 BERT-base at 1 x 16
  tokens against ONNX Runtime's dynamic int8 (skipped when the reference python lacks
  onnxruntime). Both in benchmarks/bench_quantization_extra.py (its docstring has the details;
  ``--steps``, ``--lr``, ``--lora-r``, ``--rounds``, ``--calls``); timing-sensitive too.
"""

from __future__ import annotations

import argparse
import json
import math
import os
import statistics
import subprocess
import sys
import time
from pathlib import Path

from bench_quantization_extra import add_args, part_ort, part_qlora  # benchmarks/, stdlib-only imports

HERE = Path(__file__).resolve().parent
VARIANTS = ("float32", "bfloat16", "int8", "int8-wo", "nf4", "rtn4", "gptq4", "awq4")
GGUF_NAME = "SmolLM2-135M-Instruct-Q4_1-gguf"


# --- texts ----------------------------------------------------------------------------------
def texts() -> tuple[str, str, str]:
    """(calibration text, evaluation text, where they come from)."""
    try:
        sys.path.insert(0, str(HERE.parent / "examples"))
        from debian_text import data_dir, parse_stanzas, read_text, split_of

        path = data_dir() / "Translation-en.xz"
        if path.exists():
            stanzas = list(parse_stanzas(read_text(path), "en"))
            by = {"train": [], "test": []}
            for d in stanzas:
                if d.long and split_of(d.package) in by:
                    by[split_of(d.package)].append(d.long)
            return "\n\n".join(by["train"]), "\n\n".join(by["test"]), \
                "Debian package descriptions (bookworm, en): calibration train split, perplexity test split"
    except ImportError:
        pass
    lic = Path("/usr/share/common-licenses")
    calib = "\n\n".join(p.read_text() for p in sorted(lic.glob("*")) if p.is_file() and p.name not in ("GPL", "GPL-3"))
    return calib, (lic / "GPL-3").read_text(), "licence texts: calibration all but GPL-3, perplexity GPL-3"


# --- the weights ----------------------------------------------------------------------------
def prepare(work: Path, args: argparse.Namespace) -> dict:
    """The float32 folder and the GPTQ / AWQ folders (made once; their making timed)."""
    import torch

    from pretrained import AutoModelForCausalLM, AutoTokenizer
    from pretrained.io.fetch import fetch
    from pretrained.quantization.quantize import calibration_windows, quantize_model

    info: dict = {}
    float_dir = work / "float32"
    if not (float_dir / "config.json").exists():
        gguf = Path(fetch(GGUF_NAME, quiet=True))
        folder, name = (gguf.parent, gguf.name) if gguf.suffix == ".gguf" else (gguf, None)
        if name is None:
            name = next(p.name for p in folder.glob("*.gguf"))
        tok = AutoTokenizer.from_pretrained(folder, gguf_file=name)
        model = AutoModelForCausalLM.from_pretrained(folder, gguf_file=name, dequantize=True, torch_dtype=torch.float32)
        model.save_pretrained(float_dir)
        tok.save_pretrained(float_dir)
    tok = AutoTokenizer.from_pretrained(float_dir)
    calib_text, _, source = texts()
    info["texts"] = source
    for method in ("gptq", "awq") if args.part not in ("qlora", "ort") else ():
        out = work / f"{method}4"
        stamp = out / "made.json"
        if not stamp.exists():
            model = AutoModelForCausalLM.from_pretrained(float_dir, torch_dtype=torch.float32)
            ids = calibration_windows(tok, calib_text, args.calib_samples, args.calib_len)
            start = time.perf_counter()
            quantize_model(model, ids, method=method, bits=4, group_size=args.group_size,
                           true_sequential=args.true_sequential)
            seconds = time.perf_counter() - start
            model.save_pretrained(out)
            tok.save_pretrained(out)
            stamp.write_text(json.dumps({"seconds": seconds, "calibration": list(ids.shape),
                                         "group_size": args.group_size, "true_sequential": args.true_sequential}))
        info[f"{method}4_made"] = json.loads(stamp.read_text())
    return info


def load(variant: str, work: Path, group_size: int, compute: str = "float32"):
    """The model of ``variant``; ``compute``: the dtype of its float parts (activations)."""
    import torch

    from pretrained import AutoModelForCausalLM, BitsAndBytesConfig
    from pretrained.quantization.quantize import quantize_model

    dtype = {"float32": torch.float32, "bfloat16": torch.bfloat16}[compute]
    folder = work / "float32"
    if variant in ("float32", "bfloat16"):
        return AutoModelForCausalLM.from_pretrained(folder, torch_dtype=torch.float32 if variant == "float32"
                                                    else torch.bfloat16)
    if variant == "int8":   # the load's default: LLM.int8(), bitsandbytes' numbers
        return AutoModelForCausalLM.from_pretrained(folder, torch_dtype=dtype, load_in_8bit=True)
    if variant == "int8-wo":   # weight-only (RESULTS.md's int8 rows before 2026-12-07's third session)
        from pretrained.quantization import set_llm_int8

        model = AutoModelForCausalLM.from_pretrained(folder, torch_dtype=dtype, load_in_8bit=True)
        set_llm_int8(model, False)
        return model
    if variant == "nf4":
        q = BitsAndBytesConfig(load_in_4bit=True, bnb_4bit_quant_type="nf4", bnb_4bit_compute_dtype=dtype)
        return AutoModelForCausalLM.from_pretrained(folder, torch_dtype=dtype, quantization_config=q)
    if variant == "rtn4":
        model = AutoModelForCausalLM.from_pretrained(folder, torch_dtype=torch.float32)
        quantize_model(model, torch.zeros(1, 2, dtype=torch.long), method="rtn", bits=4, group_size=group_size)
        return model.to(dtype)
    return AutoModelForCausalLM.from_pretrained(work / variant, torch_dtype=dtype)


# --- perplexity -----------------------------------------------------------------------------
def perplexity(model, ids, window: int) -> float:
    import torch

    total, count = 0.0, 0
    with torch.no_grad():
        for start in range(0, ids.numel() - 1, window):
            chunk = ids[start:start + window].unsqueeze(0)
            if chunk.shape[1] < 2:
                break
            logits = model(chunk).logits.float()
            loss = torch.nn.functional.cross_entropy(logits[0, :-1], chunk[0, 1:], reduction="sum")
            total, count = total + float(loss), count + chunk.shape[1] - 1
    return math.exp(total / count)


def part_perplexity(work: Path, args: argparse.Namespace) -> dict:
    import torch

    from pretrained import AutoTokenizer

    tok = AutoTokenizer.from_pretrained(work / "float32")
    _, eval_text, _ = texts()
    ids = torch.tensor(tok(eval_text)["input_ids"][: args.eval_tokens])
    rows = {}
    wanted = set(args.variants.split(",")) | {"float32"} if args.variants else set(VARIANTS)
    for variant in (v for v in VARIANTS if v in wanted):
        start = time.perf_counter()
        model = load(variant, work, args.group_size)
        rows[variant] = {"perplexity": perplexity(model, ids, args.window),
                         "footprint_MiB": model.get_memory_footprint() / 2 ** 20,
                         "seconds": time.perf_counter() - start}
        print(f"{variant:9s} perplexity {rows[variant]['perplexity']:.4f}  footprint "
              f"{rows[variant]['footprint_MiB']:.1f} MiB  ({rows[variant]['seconds']:.0f} s)", flush=True)
        del model
    base = rows["float32"]["perplexity"]
    for r in rows.values():
        r["vs_float32"] = r["perplexity"] / base - 1
    return {"tokens": int(ids.numel()), "window": args.window, "rows": rows}


# --- memory and speed: one fresh process per measurement ----------------------------------------
def rss_mib() -> float:
    for line in Path("/proc/self/status").read_text().splitlines():
        if line.startswith("VmRSS:"):
            return int(line.split()[1]) / 1024
    return float("nan")


def worker(args: argparse.Namespace) -> None:
    import torch

    torch.set_num_threads(args.threads)
    work = Path(args.workdir)
    if args.worker == "memory":
        if args.warm_up:   # the process's one-time costs (kernel library, thread pools) are not the model's
            import gc

            from pretrained import AutoModelForCausalLM

            tiny = AutoModelForCausalLM.from_pretrained(HERE.parent / "tests" / "fixtures" / "models" / "llama-gqa",
                                                        torch_dtype=torch.bfloat16)
            with torch.no_grad():
                tiny(torch.arange(16).unsqueeze(0))
            del tiny
            gc.collect()
        before = rss_mib()
        # float parts in bfloat16 (the model the targets compare with), quantized layers as they are
        model = load(args.variant, work, args.group_size, compute="bfloat16")
        loaded = rss_mib()
        with torch.no_grad():
            model(torch.arange(128).unsqueeze(0) % 1000 + 10)
        print(json.dumps({"load_MiB": loaded - before, "forward_MiB": rss_mib() - before}))
        return
    prompt = torch.randint(10, 1000, (args.batch, 32), generator=torch.Generator().manual_seed(0))
    if args.variant == "reference":
        import transformers

        model = transformers.AutoModelForCausalLM.from_pretrained(work / "float32", dtype=torch.bfloat16)
    else:
        model = load(args.variant, work, args.group_size, compute="bfloat16")
    kw = dict(max_new_tokens=args.new, min_new_tokens=args.new, do_sample=False, eos_token_id=None,
              pad_token_id=0)
    model.generate(prompt, **kw)   # first call: conversions, caches
    times = []
    for _ in range(args.repeats):
        t0 = time.perf_counter()
        model.generate(prompt, **{**kw, "max_new_tokens": 1, "min_new_tokens": 1})
        t1 = time.perf_counter()
        model.generate(prompt, **kw)
        t2 = time.perf_counter()
        times.append((t2 - t1) - (t1 - t0))
    print(json.dumps({"tok_s": args.batch * (args.new - 1) / statistics.median(times)}))


def run_worker(python: str, args: argparse.Namespace, **extra) -> dict:
    cmd = [python, str(Path(__file__)), "--workdir", args.workdir, "--group-size", str(args.group_size),
           "--threads", str(args.threads), "--repeats", str(args.repeats), "--new", str(args.new)]
    for k, v in extra.items():
        cmd += [f"--{k.replace('_', '-')}"] + ([] if v is True else [str(v)])
    env = {**os.environ, "PYTHONPATH": str(HERE.parent)}
    done = subprocess.run(cmd, capture_output=True, text=True, env=env)
    if done.returncode != 0:
        raise RuntimeError(f"{' '.join(cmd)} failed:\n{done.stderr[-2000:]}")
    return json.loads(done.stdout.strip().splitlines()[-1])


def part_memory(args: argparse.Namespace) -> dict:
    extra = {"warm_up": True} if args.warm_up else {}
    rows = {v: run_worker(sys.executable, args, worker="memory", variant=v, **extra) for v in VARIANTS}
    for v, r in rows.items():
        r["load_vs_bf16"] = r["load_MiB"] / rows["bfloat16"]["load_MiB"]
        r["forward_vs_bf16"] = r["forward_MiB"] / rows["bfloat16"]["forward_MiB"]
        print(f"{v:9s} after load {r['load_MiB']:.0f} MiB ({r['load_vs_bf16']:.2f}x bf16), after a forward "
              f"{r['forward_MiB']:.0f} MiB ({r['forward_vs_bf16']:.2f}x)", flush=True)
    return rows


def part_speed(args: argparse.Namespace) -> dict:
    from reference import reference_python

    ref = reference_python(args.ref_python)
    rows: dict = {}
    for batch in (1, 8):
        wanted = args.variants.split(",") if args.variants else VARIANTS[1:]
        for v in (*(w for w in VARIANTS[1:] if w in wanted), "reference"):
            python = ref if v == "reference" else sys.executable
            rows.setdefault(v, {})[f"batch{batch}_tok_s"] = run_worker(python, args, worker="speed", variant=v,
                                                                       batch=batch)["tok_s"]
        for v in rows:
            rows[v][f"batch{batch}_vs_ref"] = rows[v][f"batch{batch}_tok_s"] / rows["reference"][f"batch{batch}_tok_s"]
            print(f"batch {batch} {v:9s} {rows[v][f'batch{batch}_tok_s']:.1f} tok/s "
                  f"({rows[v][f'batch{batch}_vs_ref']:.2f}x the reference in bfloat16)", flush=True)
    return rows


def main() -> None:
    p = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    p.add_argument("--part", default="perplexity", choices=["perplexity", "memory", "speed", "qlora", "ort", "all"])
    p.add_argument("--workdir", default=str(Path.home() / ".cache" / "pretrained" / "bench-quantization"))
    p.add_argument("--group-size", type=int, default=64, help="4-bit groups (SmolLM2's 576 columns: 64 divides)")
    p.add_argument("--eval-tokens", type=int, default=4096)
    p.add_argument("--window", type=int, default=512)
    p.add_argument("--calib-samples", type=int, default=16)
    p.add_argument("--calib-len", type=int, default=256)
    p.add_argument("--true-sequential", action="store_true",
                   help="GPTQ: gather each layer group's Hessian after the earlier groups are rounded "
                        "(5 passes a block instead of 2)")
    p.add_argument("--threads", type=int, default=2)
    p.add_argument("--repeats", type=int, default=5)
    p.add_argument("--new", type=int, default=64)
    p.add_argument("--ref-python", default=None)
    p.add_argument("--json", default=None)
    p.add_argument("--variants", default=None, help="perplexity / speed: only these (comma list; beside float32 / the reference)")
    p.add_argument("--warm-up", action="store_true",
                   help="memory: load and run a tiny model first, so one-time costs are not counted as the model's")
    p.add_argument("--worker", choices=["memory", "speed"], help=argparse.SUPPRESS)
    p.add_argument("--variant", help=argparse.SUPPRESS)
    p.add_argument("--batch", type=int, default=1, help=argparse.SUPPRESS)
    add_args(p)
    args = p.parse_args()
    sys.path.insert(0, str(HERE.parent))
    if args.worker:
        worker(args)
        return
    import logging

    import torch

    logging.basicConfig(format="%(asctime)s %(message)s")
    logging.getLogger("pretrained").setLevel(logging.INFO)   # progress of the quantizers
    torch.set_num_threads(args.threads)
    work = Path(args.workdir)
    work.mkdir(parents=True, exist_ok=True)
    result = {"torch": torch.__version__, "threads": args.threads, "group_size": args.group_size,
              "prepare": prepare(work, args)}
    if args.part in ("perplexity", "all"):
        result["perplexity"] = part_perplexity(work, args)
    if args.part in ("memory", "all"):
        result["memory"] = part_memory(args)
    if args.part in ("speed", "all"):
        result["speed"] = part_speed(args)
    if args.part in ("qlora", "all"):
        result["qlora"] = part_qlora(work, args)
    if args.part in ("ort", "all"):
        result["ort"] = part_ort(work, args)
    text = json.dumps(result, indent=2)
    print(text)
    if args.json:
        Path(args.json).write_text(text + "\n")


if __name__ == "__main__":
    main()
