"""Training speed and memory: this library's Trainer against the reference Trainer (and PEFT for
LoRA), full fine-tuning and LoRA, on a BERT-base-sized classifier (random weights).

Each measurement runs in its own process (so peak memory is its own): ours with this venv's
python, the reference with ``--ref-python`` (a venv with transformers and peft). Reported: the
median time per optimizer step after warm-up steps, and the peak resident memory of the process
(``ru_maxrss``) and its growth during training. The configurations alternate over several
rounds and the fastest round of each is reported (on a shared machine, load only adds time).

    python benchmarks/bench_training.py --ref-python /work/refvenv/bin/python
    python benchmarks/bench_training.py --steps 4 --layers 2      # quick look
    /work/refvenv/bin/python benchmarks/bench_training.py --interleaved   # time only, one process
"""

from __future__ import annotations

import argparse
import json
import os
import resource
import statistics
import subprocess
import sys
import tempfile
import time
from pathlib import Path

REPO = Path(__file__).resolve().parent.parent


def rss_mb() -> float:
    with open("/proc/self/statm") as f:
        return int(f.read().split()[1]) * os.sysconf("SC_PAGE_SIZE") / 2**20


def one(impl: str, mode: str, steps: int, warmup: int, layers: int, batch: int, seq: int) -> dict:
    """Run inside the measuring process."""
    import torch

    torch.manual_seed(0)
    cfg = dict(vocab_size=30522, hidden_size=768, num_hidden_layers=layers, num_attention_heads=12,
               intermediate_size=3072, num_labels=2)
    g = torch.Generator().manual_seed(0)
    data = [{"input_ids": torch.randint(1000, 30000, (seq,), generator=g).tolist(), "label": i % 2}
            for i in range(batch * (steps + warmup))]
    if impl == "ours":
        sys.path.insert(0, str(REPO))
        from pretrained.models.bert import BertConfig, BertForSequenceClassification
        from pretrained.peft import LoraConfig, get_peft_model
        from pretrained.training import Trainer, TrainerCallback, TrainingArguments

        model = BertForSequenceClassification.from_config(BertConfig(**cfg))
    else:
        import transformers
        from peft import LoraConfig, get_peft_model
        from transformers import Trainer, TrainerCallback, TrainingArguments

        model = transformers.BertForSequenceClassification(transformers.BertConfig(**cfg))
    if mode == "lora":
        model = get_peft_model(model, LoraConfig(r=8, lora_alpha=16, target_modules=["query", "value"],
                                                 task_type="SEQ_CLS"))
    times: list[float] = []

    class Clock(TrainerCallback):
        def on_step_end(self, args, state, control, **kwargs):
            times.append(time.perf_counter())

    with tempfile.TemporaryDirectory() as tmp:
        kw = dict(output_dir=tmp, max_steps=steps + warmup, per_device_train_batch_size=batch, learning_rate=2e-5,
                  save_strategy="no", logging_steps=10_000, disable_tqdm=True, report_to="none")
        if impl != "ours":
            kw["use_cpu"] = True
        args = TrainingArguments(**kw)
        trainer = Trainer(model=model, args=args, train_dataset=data, callbacks=[Clock()])
        torch.optim.AdamW([torch.nn.Parameter(torch.zeros(1))])  # torch's one-time optimizer imports
        before = rss_mb()
        trainer.train()
    peak = resource.getrusage(resource.RUSAGE_SELF).ru_maxrss / 1024
    step_times = [b - a for a, b in zip(times[warmup - 1:], times[warmup:])]
    return {"impl": impl, "mode": mode, "step_s": statistics.median(step_times), "steps_timed": len(step_times),
            "peak_rss_mb": round(peak), "rss_before_train_mb": round(before), "train_growth_mb": round(peak - before),
            "trainable": sum(p.numel() for p in model.parameters() if p.requires_grad)}


def interleaved(rounds: int, steps: int, layers: int, batch: int, seq: int) -> dict:
    """Step times of both libraries in ONE process (run with the reference's python, which can
    import both), alternating short runs so that load on a shared machine hits both alike."""
    import torch
    import transformers
    from peft import LoraConfig as RefLora, get_peft_model as ref_peft

    sys.path.insert(0, str(REPO))
    from pretrained.models.bert import BertConfig, BertForSequenceClassification
    from pretrained.peft import LoraConfig, get_peft_model
    from pretrained.training import Trainer, TrainerCallback, TrainingArguments

    cfg = dict(vocab_size=30522, hidden_size=768, num_hidden_layers=layers, num_attention_heads=12,
               intermediate_size=3072, num_labels=2)
    g = torch.Generator().manual_seed(0)
    data = [{"input_ids": torch.randint(1000, 30000, (seq,), generator=g).tolist(), "label": i % 2}
            for i in range(batch * (steps + 1))]
    lora = dict(r=8, lora_alpha=16, target_modules=["query", "value"], task_type="SEQ_CLS")
    times: dict[str, list[float]] = {}

    def clock(key, base):
        class Clock(base):
            def on_step_end(self, args, state, control, **kwargs):
                times.setdefault(key, []).append(time.perf_counter())
        return Clock()

    setups = []
    for mode in ("full", "lora"):
        torch.manual_seed(0)
        ours = BertForSequenceClassification.from_config(BertConfig(**cfg))
        ref = transformers.BertForSequenceClassification(transformers.BertConfig(**cfg))
        if mode == "lora":
            ours, ref = get_peft_model(ours, LoraConfig(**lora)), ref_peft(ref, RefLora(**lora))
        setups.append((mode, ours, ref))
    result: dict[str, list[float]] = {}
    with tempfile.TemporaryDirectory() as tmp:
        kw = dict(output_dir=tmp, max_steps=steps + 1, per_device_train_batch_size=batch, learning_rate=2e-5,
                  save_strategy="no", logging_steps=10_000, disable_tqdm=True, report_to="none")
        for r in range(rounds):
            for mode, ours, ref in setups:
                # who goes first alternates: the second run of a pair finds warmer caches
                for impl in ("ours", "reference")[::1 if r % 2 == 0 else -1]:
                    key = f"{mode}/{impl}"
                    times[key] = []
                    if impl == "ours":
                        Trainer(model=ours, args=TrainingArguments(**kw), train_dataset=data,
                                callbacks=[clock(key, TrainerCallback)]).train()
                    else:
                        transformers.Trainer(model=ref, args=transformers.TrainingArguments(use_cpu=True, **kw),
                                             train_dataset=data,
                                             callbacks=[clock(key, transformers.TrainerCallback)]).train()
                    t = times[key]
                    result.setdefault(key, []).extend(b - a for a, b in zip(t, t[1:]))
    return {k: statistics.median(v) for k, v in result.items()}


def main() -> None:
    p = argparse.ArgumentParser()
    p.add_argument("--ref-python", default="/work/refvenv/bin/python")
    p.add_argument("--steps", type=int, default=6)
    p.add_argument("--warmup", type=int, default=2)
    p.add_argument("--layers", type=int, default=12)
    p.add_argument("--batch", type=int, default=8)
    p.add_argument("--seq", type=int, default=128)
    p.add_argument("--rounds", type=int, default=3)
    p.add_argument("--one", nargs=2, metavar=("IMPL", "MODE"), help=argparse.SUPPRESS)
    p.add_argument("--interleaved", action="store_true",
                   help="time both libraries in one process (needs a python with both importable)")
    a = p.parse_args()
    if a.interleaved:
        med = interleaved(a.rounds, a.steps, a.layers, a.batch, a.seq)
        for mode in ("full", "lora"):
            o, r = med[f"{mode}/ours"], med[f"{mode}/reference"]
            print(f"{mode}: median step ours {o:.2f} s, reference {r:.2f} s (ours/reference {o / r:.2f}x)")
        print(json.dumps({"interleaved_median_step_s": med, "rounds": a.rounds, "steps": a.steps}))
        return
    shape = dict(steps=a.steps, warmup=a.warmup, layers=a.layers, batch=a.batch, seq=a.seq)
    if a.one:
        print(json.dumps(one(a.one[0], a.one[1], **shape)))
        return
    import torch

    # Rounds alternate the four configurations so a burst of load on a shared machine does not
    # land on one of them; the fastest round of each counts (noise only ever adds time).
    runs: dict[tuple[str, str], list[dict]] = {}
    for rnd in range(a.rounds):
        for mode in ("full", "lora"):
            for impl, python in (("ours", sys.executable), ("reference", a.ref_python)):
                cmd = [python, __file__, "--one", impl, mode] + [f"--{k}={v}" for k, v in shape.items()]
                out = subprocess.run(cmd, capture_output=True, text=True)
                if out.returncode != 0:
                    raise SystemExit(f"{impl} {mode} failed:\n{out.stderr[-3000:]}")
                r = json.loads(out.stdout.strip().splitlines()[-1])
                runs.setdefault((mode, impl), []).append(r)
                print(f"round {rnd + 1} {mode:5s} {impl:10s} {r['step_s'] * 1000:8.0f} ms/step  "
                      f"peak {r['peak_rss_mb']:6d} MB  (+{r['train_growth_mb']} MB in training)  "
                      f"trainable {r['trainable']:,}", flush=True)
    best = {k: min(v, key=lambda r: r["step_s"]) for k, v in runs.items()}
    for mode in ("full", "lora"):
        ours, ref = best[mode, "ours"], best[mode, "reference"]
        print(f"{mode}: best step ours {ours['step_s']:.2f} s, reference {ref['step_s']:.2f} s "
              f"(ours/reference {ours['step_s'] / ref['step_s']:.2f}x); peak memory ours {ours['peak_rss_mb']} MB, "
              f"reference {ref['peak_rss_mb']} MB ({ours['peak_rss_mb'] / ref['peak_rss_mb']:.2f}x)")
    print(json.dumps({"shape": shape, "torch": torch.__version__, "threads": torch.get_num_threads(),
                      "runs": {f"{m}/{i}": v for (m, i), v in runs.items()}}))


if __name__ == "__main__":
    main()
