"""Decode speed, this project against the reference, both in ONE process, calls interleaved.

``bench_generate.py`` runs every variant in its own process (its peak memory is its own); on this
shared 2-core VM the speed of a process depends on where its memory landed and on the load of the
minute, and its ratios swung from 0.9x to 1.3x between identical runs. Here one process (the
reference's venv, with this repository on ``sys.path``) loads both libraries' models from the same
folder and alternates their calls round by round, so both see the same machine; it also times
the bound, the model's own matrix-vector products alone (``F.linear`` and ``torch.mv``), in the
same rounds.

    /work/refvenv/bin/python benchmarks/bench_generate_ab.py [--models smollm2,gpt2]
        [--dtypes float32,bfloat16] [--batches 1,8] [--rounds 7] [--new 64] [--packed]

The weight folders are the ones ``bench_generate.py`` writes (``--workdir``). Per round and
variant: ``generate(max_new_tokens=1)`` (TTFT), then a greedy call of ``--new`` tokens
(``min_new_tokens`` = ``max_new_tokens``, eos off); decode tok/s = batch x (new - 1) / (full -
TTFT). Reported: medians over rounds, and the median over rounds of the per-round ratio.
"""

from __future__ import annotations

import argparse
import statistics
import sys
import time
from pathlib import Path

ROOT = Path(__file__).resolve().parent.parent
sys.path.insert(0, str(ROOT))

import torch  # noqa: E402
import torch.nn.functional as F  # noqa: E402


def load(lib: str, folder: Path, dtype: torch.dtype):
    if lib.startswith("ours"):
        from pretrained import AutoModelForCausalLM

        model = AutoModelForCausalLM.from_pretrained(folder, torch_dtype=dtype)
        if lib == "ours-packed":
            from pretrained.backends import set_weight_packing

            set_weight_packing(model)
    else:
        import transformers

        transformers.logging.set_verbosity_error()
        model = transformers.AutoModelForCausalLM.from_pretrained(folder, dtype=dtype)
    return model.eval()


def matvec_floor(model, batch: int, dtype: torch.dtype):
    """Callables that run every linear of one decode step alone: F.linear, and (one row)
    torch.mv, on the model's own weights."""
    from pretrained.layers import Conv1D

    ws = [(m.weight.t() if isinstance(m, Conv1D) else m.weight).detach().contiguous()
          for m in model.modules() if isinstance(m, (torch.nn.Linear, Conv1D))]
    xs = {n: torch.randn(batch, 1, n, dtype=dtype) for n in {w.shape[1] for w in ws}}

    def linear():
        for w in ws:
            F.linear(xs[w.shape[1]], w)

    def mv():
        for w in ws:
            torch.mv(w, xs[w.shape[1]].view(-1))

    return {"floor F.linear": linear, "floor mv": mv} if batch == 1 else {"floor F.linear": linear}


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument("--workdir", default=str(Path.home() / ".cache/pretrained/bench-generate"))
    ap.add_argument("--models", default="smollm2,gpt2")
    ap.add_argument("--dtypes", default="float32,bfloat16")
    ap.add_argument("--batches", default="1,8")
    ap.add_argument("--rounds", type=int, default=7)
    ap.add_argument("--prompt", type=int, default=32)
    ap.add_argument("--new", type=int, default=64)
    ap.add_argument("--packed", action="store_true", help="also the opt-in packed-weight variant")
    args = ap.parse_args()
    folders = {"gpt2": Path(args.workdir) / "gpt2-small-random",
               "smollm2": Path(args.workdir) / "smollm2-135m-f32"}
    libs = ["ours", "reference"] + (["ours-packed"] if args.packed else [])
    rows = []
    for name in args.models.split(","):
        for dname in args.dtypes.split(","):
            dtype = getattr(torch, dname)
            models = {lib: load(lib, folders[name], dtype) for lib in libs}
            for batch in map(int, args.batches.split(",")):
                ids = torch.randint(100, models["ours"].config.vocab_size - 100, (batch, args.prompt),
                                    generator=torch.Generator().manual_seed(0))
                mask = torch.ones_like(ids)

                def gen(model, n):
                    t = time.perf_counter()
                    out = model.generate(input_ids=ids, attention_mask=mask, max_new_tokens=n,
                                         min_new_tokens=n, do_sample=False, eos_token_id=None,
                                         pad_token_id=0)
                    return time.perf_counter() - t, out

                floors = matvec_floor(models["ours"], batch, dtype)
                for model in models.values():  # warm-up: kernel selection, packing
                    gen(model, 1), gen(model, args.new)
                tokens = {lib: gen(m, args.new)[1][:, args.prompt:] for lib, m in models.items()}
                tps: dict[str, list[float]] = {k: [] for k in [*libs, *floors]}
                ttft: dict[str, list[float]] = {lib: [] for lib in libs}
                for r in range(args.rounds):
                    order = libs[r % len(libs):] + libs[:r % len(libs)]
                    for lib in order:
                        t1, _ = gen(models[lib], 1)
                        tf, _ = gen(models[lib], args.new)
                        ttft[lib].append(t1)
                        tps[lib].append(batch * (args.new - 1) / max(tf - t1, 1e-9))
                    with torch.inference_mode():
                        for key, f in floors.items():
                            f()
                            t = time.perf_counter(); f(); tps[key].append(batch / (time.perf_counter() - t))
                med = {k: statistics.median(v) for k, v in tps.items()}
                ratio = statistics.median(a / b for a, b in zip(tps["ours"], tps["reference"]))
                same = float((tokens["ours"] == tokens["reference"]).float().mean())
                row = (f"| {name} | {dname} | {batch} | {med['ours']:.1f} | {med['reference']:.1f} | "
                       f"**{ratio:.2f}x** | {med['floor F.linear']:.1f} | "
                       f"{med.get('floor mv', float('nan')):.1f} | "
                       f"{med['ours'] / max(med['floor F.linear'], med.get('floor mv', 0)):.0%} | "
                       f"{statistics.median(ttft['ours']) * 1e3:.0f} | "
                       f"{statistics.median(ttft['reference']) * 1e3:.0f} | {same:.0%} |")
                if args.packed:
                    pr = statistics.median(a / b for a, b in zip(tps["ours-packed"], tps["reference"]))
                    row += f" {med['ours-packed']:.1f} ({pr:.2f}x) |"
                rows.append(row)
                print(row, flush=True)
            del models
    head = ("| model | dtype | batch | ours tok/s | ref tok/s | ours/ref (median of rounds) | "
            "floor F.linear tok/s | floor mv tok/s | ours / best floor | TTFT ours ms | "
            "TTFT ref ms | same greedy tokens |" + (" packed tok/s (vs ref) |" if args.packed else ""))
    print()
    print(f"`{' '.join(['python', *sys.argv])}`  (torch {torch.__version__}, "
          f"{torch.get_num_threads()} threads, {args.rounds} rounds, prompt {args.prompt}, "
          f"{args.new} new tokens)")
    print()
    print(head)
    print("|" + "---|" * (head.count("|") - 1))
    print("\n".join(rows))


if __name__ == "__main__":
    main()
