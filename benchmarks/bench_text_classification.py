"""Text-classification pipeline speed: this library beside the reference, same files, same run.

    python benchmarks/bench_text_classification.py --ref-python /work/refvenv/bin/python
    python benchmarks/bench_text_classification.py --ref-python ... --quick     # a short look

A BERT-base-sized classifier (hidden 768, 12 layers, 12 heads, intermediate 3072, vocab 30522,
random weights) is built with this library and saved once as safetensors, next to a real
WordPiece tokenizer (all-MiniLM-L6-v2's, from ``pretrained.io.fetch``). Both pipelines read that one
folder. Each side runs in its own long-lived worker process (ours: this python; the reference:
``--ref-python``), both with ``torch.set_num_threads(--threads)``; the parent tells them in turn
to run a round of calls, so their measurements interleave in time and share the machine's
drifting load alike. Each worker warms up first; per-call times are pooled over the rounds and
the median is reported (sequences/s = batch / median call time).

Configurations: batch 1 x 16 tokens, batch 1 x 128 and batch 32 x 128 (texts built to tokenize to
exactly those lengths, [CLS] and [SEP] included), float32 and bfloat16.

The matmul peak is measured in the same run (in our worker, between the rounds): GFLOP/s of
``torch.matmul`` on the encoder's linear shapes (M x 768 @ 768 x 768, M x 768 @ 768 x 3072 and
M x 3072 @ 3072 x 768) for M = 16, 128 and 4096 tokens; the peak is the best of them per dtype.
"share" = the model forward's FLOPs per sequence x sequences/s / that peak. The FLOPs are those of
the full forward on both sides (this library runs the last layer for [CLS] only, about 7% less
work at length 128, and gets no credit for the skipped part).

On a busy machine wall times swing widely (other processes take the cores, and OpenMP threads
that spin at barriers suffer most); ``--threads 1 --cpu-time`` gives a steadier comparison.
"""

from __future__ import annotations

import argparse
import json
import os
import random
import shutil
import statistics
import subprocess
import sys
import tempfile
import time
from pathlib import Path

from reference import reference_python  # benchmarks/reference.py


ROOT = Path(__file__).resolve().parent.parent
SIZES = dict(vocab_size=30522, hidden_size=768, num_hidden_layers=12, num_attention_heads=12,
             intermediate_size=3072, num_labels=2)
CONFIGS = [(1, 16), (1, 128), (32, 128)]
DTYPES = ["float32", "bfloat16"]
TOKENIZER_FILES = ("tokenizer.json", "tokenizer_config.json", "vocab.txt", "special_tokens_map.json")
# Words that are one WordPiece token each in the uncased BERT vocabulary.
WORDS = ("the quick brown fox jumps over lazy dog and a cat sat on mat while it was very good "
         "movie film great bad day night house river city people time world music book water "
         "light story small old new long short happy sad red green blue white black").split()


# --- worker side (runs under either python) ---------------------------------------------------
def worker(impl: str, path: str, threads: int) -> None:
    import torch

    torch.set_num_threads(threads)
    if impl == "ours":
        sys.path.insert(0, str(ROOT))
        from pretrained import pipeline
    else:
        os.environ.setdefault("TRANSFORMERS_VERBOSITY", "error")
        from transformers import pipeline
        from transformers.utils import logging as hf_logging

        hf_logging.set_verbosity_error()
        hf_logging.disable_progress_bar()
    clf = None
    dtypes = {"float32": torch.float32, "bfloat16": torch.bfloat16}
    send = lambda obj: (sys.stdout.write(json.dumps(obj) + "\n"), sys.stdout.flush())  # noqa: E731
    send({"ready": impl, "torch": torch.__version__, "threads": torch.get_num_threads()})
    for line in sys.stdin:
        cmd = json.loads(line)
        op = cmd["op"]
        if op == "load":
            clf = None
            dtype = dtypes[cmd["dtype"]]
            kw = {"torch_dtype": dtype} if impl == "ours" else {"dtype": dtype}
            if impl == "ours" and os.environ.get("BENCH_PACK_WEIGHTS") == "1":
                kw["pack_weights"] = True
            clf = pipeline("text-classification", model=path, device=-1, **kw)
            send({"dtype": str(next(clf.model.parameters()).dtype)})
        elif op == "lengths":
            send({"lengths": [len(clf.tokenizer(t)["input_ids"]) for t in cmd["texts"]]})
        elif op == "scores":
            send({"out": clf(cmd["texts"], top_k=None, batch_size=len(cmd["texts"]))})
        elif op == "run":
            texts, n = cmd["texts"], cmd["calls"]
            arg = texts[0] if len(texts) == 1 else texts
            clock = time.process_time if cmd.get("cpu_time") else time.perf_counter
            times = []
            for _ in range(n):
                t0 = clock()
                clf(arg, batch_size=len(texts))
                times.append(clock() - t0)
            send({"times": times})
        elif op == "matmul":
            dtype = dtypes[cmd["dtype"]]
            clock = time.process_time if cmd.get("cpu_time") else time.perf_counter
            out = {}
            for m, k, n in cmd["shapes"]:
                a, b = torch.randn(m, k, dtype=dtype), torch.randn(k, n, dtype=dtype)
                reps = max(1, int(2e9 / (2 * m * k * n)))  # about 2 GFLOP per timing
                for _ in range(1):
                    torch.matmul(a, b)
                ts = []
                for _ in range(5):
                    t0 = clock()
                    for _ in range(reps):
                        torch.matmul(a, b)
                    ts.append((clock() - t0) / reps)
                out[f"{m}x{k}x{n}"] = min(ts)
            send({"seconds": out})
        elif op == "quit":
            return


# --- parent side ------------------------------------------------------------------------------
class Worker:
    def __init__(self, python: str, impl: str, path: Path, threads: int) -> None:
        env = dict(os.environ, HF_HUB_OFFLINE="1", TRANSFORMERS_VERBOSITY="error",
                   TOKENIZERS_PARALLELISM="false", OMP_NUM_THREADS=str(threads))
        env.pop("PYTHONPATH", None)
        self.proc = subprocess.Popen(
            [python, str(Path(__file__).resolve()), "--worker", impl, "--path", str(path),
             "--threads", str(threads)],
            stdin=subprocess.PIPE, stdout=subprocess.PIPE, text=True, env=env, cwd="/")
        self.info = self._read()

    def _read(self) -> dict:
        line = self.proc.stdout.readline()
        if not line:
            raise SystemExit(f"worker exited with code {self.proc.wait()}")
        return json.loads(line)

    def ask(self, **cmd) -> dict:
        self.proc.stdin.write(json.dumps(cmd) + "\n")
        self.proc.stdin.flush()
        return self._read()

    def close(self) -> None:
        self.proc.stdin.write('{"op": "quit"}\n')
        self.proc.stdin.close()
        self.proc.wait()


def make_folder(folder: Path) -> Path:
    sys.path.insert(0, str(ROOT))
    import torch

    from pretrained.io.fetch import fetch
    from pretrained.models.bert import BertConfig, BertForSequenceClassification

    torch.manual_seed(0)
    model = BertForSequenceClassification.from_config(BertConfig(**SIZES))
    model.save_pretrained(folder)
    source = Path(fetch("all-MiniLM-L6-v2"))
    for name in TOKENIZER_FILES:
        shutil.copy(source / name, folder / name)
    return folder


def make_texts(batch: int, length: int, seed: int) -> list[str]:
    rng = random.Random(seed)
    return [" ".join(rng.choice(WORDS) for _ in range(length - 2)) for _ in range(batch)]


def flops_per_sequence(t: int) -> float:
    """Multiply-adds x 2 of one forward at length t: the linear layers, attention scores and
    weighted sum, the pooler and the classifier (embeddings, norms, softmax not counted)."""
    h, i, n = SIZES["hidden_size"], SIZES["intermediate_size"], SIZES["num_hidden_layers"]
    linear = 2 * t * (4 * h * h + 2 * h * i)
    attn = 2 * 2 * t * t * h
    return n * (linear + attn) + 2 * h * h + 2 * h * SIZES["num_labels"]


def matmul_shapes(m: int) -> list[list[int]]:
    h, i = SIZES["hidden_size"], SIZES["intermediate_size"]
    return [[m, h, h], [m, h, i], [m, i, h]]


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument("--worker", choices=["ours", "ref"], help=argparse.SUPPRESS)
    ap.add_argument("--path", help=argparse.SUPPRESS)
    ap.add_argument("--ref-python", help="python of a venv with transformers (the reference)")
    ap.add_argument("--threads", type=int, default=2, help="torch threads on both sides (default 2)")
    ap.add_argument("--rounds", type=int, default=5, help="interleaved rounds per configuration")
    ap.add_argument("--quick", action="store_true", help="fewer calls: a rough look")
    ap.add_argument("--only", choices=["ours"], help="skip the reference")
    ap.add_argument("--pack-weights", action="store_true",
                    help="ours with pipeline(..., pack_weights=True): pre-packed weights (a 2nd copy)")
    ap.add_argument("--cpu-time", action="store_true",
                    help="time calls by process CPU time instead of wall time (a steadier measure "
                         "on a busy machine, meaningful with --threads 1)")
    ap.add_argument("--dtypes", default=",".join(DTYPES))
    ap.add_argument("--configs", default=",".join(f"{b}x{t}" for b, t in CONFIGS))
    args = ap.parse_args()
    if args.pack_weights:  # read by our worker process
        os.environ["BENCH_PACK_WEIGHTS"] = "1"
    if args.worker:
        return worker(args.worker, args.path, args.threads)
    if not args.only:
        args.ref_python = reference_python(args.ref_python)
    configs = [tuple(int(x) for x in c.split("x")) for c in args.configs.split(",")]
    dtypes = args.dtypes.split(",")
    rounds = 2 if args.quick else args.rounds
    calls = {16: 10, 128: 3} if args.quick else {16: 20, 128: 6}
    print("command:", " ".join([Path(sys.executable).name, *sys.argv]))

    results: dict = {}
    with tempfile.TemporaryDirectory() as tmp:
        folder = make_folder(Path(tmp))
        sides = {"ours": Worker(sys.executable, "ours", folder, args.threads)}
        if not args.only:
            sides["ref"] = Worker(args.ref_python, "ref", folder, args.threads)
        print("workers:", {k: w.info for k, w in sides.items()})
        try:
            for dtype in dtypes:
                for w in sides.values():
                    w.ask(op="load", dtype=dtype)
                probe = make_texts(3, 24, seed=1)
                outs = {k: w.ask(op="scores", texts=probe)["out"] for k, w in sides.items()}
                if "ref" in outs:  # same files -> same predictions
                    diff = max(abs(a["score"] - b["score"]) for ra, rb in zip(outs["ours"], outs["ref"])
                               for a, b in zip(sorted(ra, key=lambda d: d["label"]),
                                               sorted(rb, key=lambda d: d["label"])))
                    print(f"{dtype}: max score difference ours vs reference on 3 texts: {diff:.2e}")
                peak_times: dict[str, list[float]] = {}
                for b, t in configs:
                    texts = make_texts(b, t, seed=b * 1000 + t)
                    for k, w in sides.items():
                        got = set(w.ask(op="lengths", texts=texts)["lengths"])
                        if got != {t}:
                            raise SystemExit(f"{k}: texts tokenize to {got}, not {t}")
                    n = calls[t] if b == 1 else 1
                    for w in sides.values():  # warm-up
                        w.ask(op="run", texts=texts, calls=max(2, n // 2))
                    times = {k: [] for k in sides}
                    per_round = []  # ours / reference, each round's medians
                    for _ in range(rounds):
                        got = {k: w.ask(op="run", texts=texts, calls=n, cpu_time=args.cpu_time)["times"]
                               for k, w in sides.items()}
                        for k in sides:
                            times[k] += got[k]
                        if "ref" in got:
                            per_round.append(statistics.median(got["ref"]) / statistics.median(got["ours"]))
                        shapes = matmul_shapes(b * t) + (matmul_shapes(4096) if b * t != 4096 else [])
                        for name, s in sides["ours"].ask(op="matmul", dtype=dtype, shapes=shapes,
                                                         cpu_time=args.cpu_time)["seconds"].items():
                            peak_times.setdefault(name, []).append(s)
                    for k in sides:
                        med = statistics.median(times[k])
                        results.setdefault((dtype, b, t), {})[k] = {
                            "seconds": med, "seq_s": b / med, "calls": len(times[k]),
                            "spread": (min(times[k]), max(times[k]))}
                    spread = (f"; ours/ref by round {min(per_round):.2f}-{max(per_round):.2f}"
                              if per_round else "")
                    print(f"{dtype} {b}x{t}: " + ", ".join(
                        f"{k} {r['seq_s']:.2f} seq/s" for k, r in results[(dtype, b, t)].items())
                        + spread, flush=True)
                # GFLOP/s per shape: best of the rounds; per M: the three shapes together
                per_m: dict[int, float] = {}
                for m in sorted({int(n.split("x")[0]) for n in peak_times}):
                    names = [f"{a}x{k}x{n}" for a, k, n in matmul_shapes(m)]
                    flop = sum(2 * a * k * n for a, k, n in matmul_shapes(m))
                    per_m[m] = flop / sum(min(peak_times[n]) for n in names) / 1e9
                best = max(2 * int(a) * int(k) * int(n) / min(v) / 1e9 for (a, k, n), v in
                           ((name.split("x"), v) for name, v in peak_times.items()))
                results[(dtype, "matmul")] = {"per_m": per_m, "peak": best}
                print(f"{dtype} matmul GFLOP/s by M (tokens): "
                      + ", ".join(f"M={m}: {g:.0f}" for m, g in per_m.items()) + f"; peak {best:.0f}")
        finally:
            for w in sides.values():
                w.close()

    print()
    print(f"threads: {args.threads}; {'CPU' if args.cpu_time else 'wall'} time; medians over "
          f"{rounds} interleaved rounds; "
          "share = model FLOPs/seq x seq/s / measured matmul peak of that dtype")
    print()
    print("| dtype | batch x length | ours seq/s | reference seq/s | ours / reference "
          "| GFLOP/seq | ours GFLOP/s (share of peak) | reference GFLOP/s (share) | matmul GFLOP/s at M=B·T |")
    print("|---|---|---|---|---|---|---|---|---|")
    for dtype in dtypes:
        mm = results[(dtype, "matmul")]
        for b, t in configs:
            r = results[(dtype, b, t)]
            f = flops_per_sequence(t)
            cells = []
            for k in ("ours", "ref"):
                if k in r:
                    g = f * r[k]["seq_s"] / 1e9
                    cells.append((f"{r[k]['seq_s']:.2f}", f"{g:.0f} ({100 * g / mm['peak']:.0f}%)"))
                else:
                    cells.append(("-", "-"))
            ratio = f"{r['ours']['seq_s'] / r['ref']['seq_s']:.2f}×" if "ref" in r else "-"
            print(f"| {dtype} | {b} x {t} | {cells[0][0]} | {cells[1][0]} | {ratio} | {f / 1e9:.2f} "
                  f"| {cells[0][1]} | {cells[1][1]} | {mm['per_m'].get(b * t, float('nan')):.0f} |")
    for dtype in dtypes:
        mm = results[(dtype, "matmul")]
        print(f"\n{dtype} matmul peak (best measured shape): {mm['peak']:.0f} GFLOP/s; by M: "
              + ", ".join(f"M={m}: {g:.0f}" for m, g in mm["per_m"].items()))


if __name__ == "__main__":
    main()
