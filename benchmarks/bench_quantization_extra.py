"""Two parts of ``benchmarks/bench_quantization.py`` (issue 13) kept here so that file stays small:
``--part qlora`` and ``--part ort``. Run them through that script (it makes the float folder):

    python benchmarks/bench_quantization.py --part qlora --ref-python /work/refvenv/bin/python \\
        [--steps 10] [--lr 2e-4] [--threads 2]
    python benchmarks/bench_quantization.py --part ort --ref-python /work/refvenv/bin/python \\
        [--rounds 9] [--calls 50] [--threads 2]

- ``qlora``: LoRA r=16 (alpha 32, no dropout) on every linear layer but the output head
  (``target_modules="all-linear"``) of the real SmolLM2-135M (``<workdir>/float32``), batch 4 x 256
  tokens of the calibration text (4 different batches, cycled; the same token ids for every
  variant, saved once as ``<workdir>/qlora_ids.pt``), AdamW. Variants, each in a fresh process:
  ``lora-bf16`` (base loaded in bfloat16) and ``qlora-nf4`` (``load_in_4bit``, nf4, double
  quantization, bfloat16 compute, then ``prepare_model_for_kbit_training``, then LoRA), for this
  library and for the reference (transformers + peft; its QLoRA through bitsandbytes' CPU 4-bit,
  when that imports and runs). Gradient checkpointing: as each side's
  ``prepare_model_for_kbit_training`` sets it (both turn it on by default for QLoRA; LoRA on
  bfloat16 runs without); the rows record whether it was on. Per variant: median step time
  (forward, backward, AdamW step) over ``--steps`` steps after 2 warm-up steps; peak resident
  memory (``ru_maxrss`` and ``VmHWM``; both with the imports, which the row's ``imports_MiB``
  gives); the loss of batch 0 before training and after all steps (to show it trains), measured
  in training mode under ``no_grad`` (no dropout here): an eval-mode call would make
  bitsandbytes 0.50's CPU Linear4bit repack its weights for its inference kernel, which has no
  backward, so the reference's QLoRA would then train only the adapters above the last 4-bit
  layer of each path (o_proj, down_proj); ``adapters_with_grad`` counts the adapter tensors
  whose first-step gradient is not zero (all of them in a sound run; lora_A's are zero at step
  one as lora_B starts at zero, so it counts the lora_B's).
- ``ort``: a BERT-base-shaped classifier (hidden 768, 12 layers, 12 heads, intermediate 3072,
  vocab 30522, 2 labels; random weights, seed 0, made with this library once as
  ``<workdir>/bert-base``) at 1 x 16 tokens. Ours: ``from_pretrained(folder, load_in_8bit=True)``
  plus ``set_llm_int8(model, False)`` (weight-only int8) and as loaded (LLM.int8(), the default:
  the algorithm bitsandbytes runs, int8 activations, as ORT's dynamic quantization has too).
  ONNX Runtime (in the reference python only; install it with ``<ref-python> -m pip install
  onnxruntime onnx``, else this part says so and is skipped): the reference's float32 model
  exported by ``torch.onnx.export`` (TorchScript exporter, opset 17), put through ORT's transformer
  optimizer for BERT when it runs (else used as exported; the row says which), quantized by
  ``onnxruntime.quantization.quantize_dynamic(weight_type=QuantType.QInt8)``, run with
  ``intra_op_num_threads=--threads``. Both in long-lived workers (torch threads = ``--threads``),
  same inputs; logits' max abs difference of each against the float32 model (ours, torch), latency
  median over ``--rounds`` rounds of ``--calls`` calls, interleaved, who goes first alternating;
  ratio ours / ORT (below 1: ours faster).

Timing-sensitive: run both alone on a quiet machine.
"""

from __future__ import annotations

import argparse
import json
import os
import resource
import statistics
import subprocess
import sys
import time
from pathlib import Path

HERE = Path(__file__).resolve().parent
ROOT = HERE.parent
BERT_SIZES = dict(vocab_size=30522, hidden_size=768, num_hidden_layers=12, num_attention_heads=12,
                  intermediate_size=3072, num_labels=2)
QLORA_KINDS = ("lora-bf16", "qlora-nf4")


def add_args(p: argparse.ArgumentParser) -> None:
    """This module's options on bench_quantization.py's parser."""
    p.add_argument("--steps", type=int, default=10, help="qlora: timed steps (after 2 warm-up steps)")
    p.add_argument("--lr", type=float, default=2e-4, help="qlora: AdamW learning rate")
    p.add_argument("--lora-r", type=int, default=16)
    p.add_argument("--rounds", type=int, default=9, help="ort: interleaved rounds")
    p.add_argument("--calls", type=int, default=50, help="ort: calls per round and side")


def memory_mib() -> dict:
    """Peak (ru_maxrss, VmHWM) and current (VmRSS) resident memory of this process, MiB."""
    out = {"ru_maxrss_MiB": resource.getrusage(resource.RUSAGE_SELF).ru_maxrss / 1024}   # KiB on Linux
    for line in Path("/proc/self/status").read_text().splitlines():
        key = line.split(":")[0]
        if key in ("VmHWM", "VmRSS"):
            out[f"{key}_MiB"] = int(line.split()[1]) / 1024
    return out


def hide_broken_torchvision() -> bool:
    """Reference side: a torchvision built for another torch fails at import and takes the
    transformers model imports down with it; hide it (these parts use no vision code). True if hidden."""
    import importlib

    try:
        importlib.import_module("torchvision")
        return False
    except Exception:               # noqa: BLE001 — any import failure of it
        for k in [k for k in sys.modules if k == "torchvision" or k.startswith("torchvision.")]:
            del sys.modules[k]
        sys.modules["torchvision"] = None   # find_spec -> None: transformers sees it absent
        return True


# --- qlora ------------------------------------------------------------------------------------
def qlora_worker(args: argparse.Namespace) -> None:
    """One variant (``impl:kind``), trained ``--steps`` + 2 steps; prints one JSON line."""
    import torch

    torch.set_num_threads(args.threads)
    torch.manual_seed(0)
    imports = memory_mib()
    impl, kind = args.variant.split(":")
    if impl == "ours":
        sys.path.insert(0, str(ROOT))
        from pretrained import AutoModelForCausalLM, BitsAndBytesConfig
        from pretrained.peft import LoraConfig, get_peft_model, prepare_model_for_kbit_training
        dtype_kw = "torch_dtype"
    else:
        hide_broken_torchvision()
        from peft import LoraConfig, get_peft_model, prepare_model_for_kbit_training
        from transformers import AutoModelForCausalLM, BitsAndBytesConfig
        dtype_kw = "dtype"
    imports = memory_mib()
    ids = torch.load(args.ids)          # (batches, 4, 256) long
    folder = Path(args.workdir) / "float32"
    kw = {dtype_kw: torch.bfloat16}
    if kind == "qlora-nf4":
        kw["quantization_config"] = BitsAndBytesConfig(
            load_in_4bit=True, bnb_4bit_quant_type="nf4", bnb_4bit_use_double_quant=True,
            bnb_4bit_compute_dtype=torch.bfloat16)
        if impl == "reference":
            kw["device_map"] = "cpu"
    model = AutoModelForCausalLM.from_pretrained(folder, **kw)
    if kind == "qlora-nf4":
        model = prepare_model_for_kbit_training(model)   # each side's default gradient checkpointing
    loaded = memory_mib()
    model = get_peft_model(model, LoraConfig(r=args.lora_r, lora_alpha=2 * args.lora_r, lora_dropout=0.0,
                                             target_modules="all-linear", task_type="CAUSAL_LM"))
    params = [p for p in model.parameters() if p.requires_grad]
    opt = torch.optim.AdamW(params, lr=args.lr)
    gc = bool(getattr(model, "is_gradient_checkpointing", False)
              or getattr(getattr(model, "base_model", None), "is_gradient_checkpointing", False))

    def batch_loss(i: int) -> float:
        x = ids[i % len(ids)]
        # training mode (lora_dropout is 0): eval() would repack bitsandbytes' CPU 4-bit weights
        # for a kernel without backward (see the module doc); no_grad skips checkpointing
        model.train()
        with torch.no_grad():
            return float(model(input_ids=x, labels=x).loss)

    before = batch_loss(0)
    model.train()
    times, losses = [], []
    for i in range(args.steps + 2):
        x = ids[i % len(ids)]
        t0 = time.perf_counter()
        loss = model(input_ids=x, labels=x).loss
        loss.backward()
        if i == 0:
            first = [p.grad is not None and bool(p.grad.abs().sum() > 0) for p in params]
        opt.step()
        opt.zero_grad(set_to_none=True)
        times.append(time.perf_counter() - t0)
        losses.append(float(loss))
    peak = memory_mib()
    print(json.dumps({
        "step_s": statistics.median(times[2:]), "steps": args.steps, "step_times_s": times[2:],
        "peak_ru_maxrss_MiB": peak["ru_maxrss_MiB"], "peak_VmHWM_MiB": peak["VmHWM_MiB"],
        "imports_MiB": imports["VmRSS_MiB"], "after_load_MiB": loaded["VmRSS_MiB"],
        "loss_batch0_before": before, "loss_batch0_after": batch_loss(0), "train_losses": losses,
        "gradient_checkpointing": gc, "adapters_with_grad": [sum(first), len(first)],
        "trainable": sum(p.numel() for p in params),
        "adapter_dtype": str(params[0].dtype), "torch": torch.__version__}))


def qlora_ids(work: Path) -> Path:
    """4 batches of 4 x 256 tokens from the calibration text (made once, read by every variant)."""
    import torch

    from bench_quantization import texts
    from pretrained import AutoTokenizer
    from pretrained.quantization.quantize import calibration_windows

    path = work / "qlora_ids.pt"
    if not path.exists():
        tok = AutoTokenizer.from_pretrained(work / "float32")
        calib_text = texts()[0][:400_000]     # plenty for 16 windows; tokenizing all of it is slow
        ids = calibration_windows(tok, calib_text, 16, 256, seed=1)
        torch.save(ids.view(4, 4, 256).clone(), path)
    return path


def run_json(cmd: list[str], ours: bool) -> dict:
    env = dict(os.environ, HF_HUB_OFFLINE="1", TRANSFORMERS_VERBOSITY="error", TOKENIZERS_PARALLELISM="false")
    if ours:
        env["PYTHONPATH"] = str(ROOT)
    else:
        env.pop("PYTHONPATH", None)
    done = subprocess.run(cmd, capture_output=True, text=True, env=env)
    if done.returncode != 0:
        raise RuntimeError(f"{' '.join(cmd)} failed:\n{done.stderr[-2000:]}")
    return json.loads(done.stdout.strip().splitlines()[-1])


def ref_can(python: str, modules: str) -> str | None:
    """None when ``python`` imports ``modules``; else the error's last line."""
    done = subprocess.run([python, "-c", f"import {modules}"], capture_output=True, text=True)
    return None if done.returncode == 0 else (done.stderr.strip().splitlines() or ["?"])[-1]


def part_qlora(work: Path, args: argparse.Namespace) -> dict:
    ids = qlora_ids(work)
    ref = args.ref_python or sys.executable
    rows: dict = {}
    missing = ref_can(ref, "transformers, peft")
    variants = [("ours", k) for k in QLORA_KINDS] + ([] if missing else [("reference", k) for k in QLORA_KINDS])
    if missing:
        rows["reference"] = {"skipped": f"{ref} lacks transformers/peft: {missing}"}
    for impl, kind in variants:
        python = sys.executable if impl == "ours" else ref
        if impl == "reference" and kind == "qlora-nf4" and (why := ref_can(ref, "bitsandbytes")):
            rows[f"{impl}:{kind}"] = {"skipped": f"no bitsandbytes: {why} (pip install bitsandbytes)"}
            continue
        cmd = [python, str(Path(__file__)), "--worker", "qlora", "--variant", f"{impl}:{kind}",
               "--workdir", str(work), "--ids", str(ids), "--threads", str(args.threads),
               "--steps", str(args.steps), "--lr", str(args.lr), "--lora-r", str(args.lora_r)]
        try:
            r = rows[f"{impl}:{kind}"] = run_json(cmd, impl == "ours")
        except RuntimeError as e:
            if impl == "ours":
                raise
            # the reference's CPU 4-bit may not run (bitsandbytes build, kernels): say so, go on
            rows[f"{impl}:{kind}"] = {"failed": str(e).splitlines()[-1]}
            print(f"{impl}:{kind} failed: {str(e)[-600:]}", flush=True)
            continue
        print(f"{impl:9s} {kind:9s} step {r['step_s'] * 1e3:.0f} ms (median of {r['steps']}), peak RSS "
              f"{r['peak_ru_maxrss_MiB']:.0f} MiB (VmHWM {r['peak_VmHWM_MiB']:.0f}; imports "
              f"{r['imports_MiB']:.0f}), loss of batch 0 {r['loss_batch0_before']:.3f} -> "
              f"{r['loss_batch0_after']:.3f}, gradient checkpointing "
              f"{'on' if r['gradient_checkpointing'] else 'off'}, adapters {r['adapter_dtype']}, "
              f"adapter tensors with a step-1 gradient {r['adapters_with_grad'][0]}/{r['adapters_with_grad'][1]}",
              flush=True)
    for impl in ("ours", "reference"):
        lo, q = rows.get(f"{impl}:lora-bf16", {}), rows.get(f"{impl}:qlora-nf4", {})
        if "step_s" in lo and "step_s" in q:
            q["step_vs_lora_bf16"] = q["step_s"] / lo["step_s"]
            q["peak_vs_lora_bf16"] = q["peak_ru_maxrss_MiB"] / lo["peak_ru_maxrss_MiB"]
            print(f"{impl}: QLoRA / LoRA-bf16: step {q['step_vs_lora_bf16']:.2f}x, peak RSS "
                  f"{q['peak_vs_lora_bf16']:.2f}x", flush=True)
    for kind in QLORA_KINDS:
        o, r = rows.get(f"ours:{kind}", {}), rows.get(f"reference:{kind}", {})
        if "step_s" in o and "step_s" in r:
            o["step_vs_reference"] = o["step_s"] / r["step_s"]
            o["peak_vs_reference"] = o["peak_ru_maxrss_MiB"] / r["peak_ru_maxrss_MiB"]
    return {"batch": [4, 256], "lora_r": args.lora_r, "lr": args.lr, "rows": rows}


# --- ort --------------------------------------------------------------------------------------
def bert_folder(work: Path) -> Path:
    """The BERT-base-shaped random classifier (this library's save_pretrained), made once."""
    import torch

    from pretrained.models.bert import BertConfig, BertForSequenceClassification

    folder = work / "bert-base"
    if not (folder / "config.json").exists():
        torch.manual_seed(0)
        BertForSequenceClassification.from_config(BertConfig(**BERT_SIZES)).save_pretrained(folder)
    return folder


def ort_session(folder: Path, threads: int) -> tuple:
    """(int8 session, how it was made): export, optimize (when ORT's optimizer runs), quantize."""
    import onnx
    import onnxruntime as ort
    import torch
    from onnxruntime.quantization import QuantType, quantize_dynamic
    from transformers import BertForSequenceClassification

    out = folder / "onnx"
    out.mkdir(exist_ok=True)
    fp32, opt, int8 = out / "model.onnx", out / "model.opt.onnx", out / "model.int8.onnx"
    how = out / "made.json"
    if not how.exists():
        model = BertForSequenceClassification.from_pretrained(folder, dtype=torch.float32,
                                                              attn_implementation="eager").eval()
        x = torch.ones(1, 16, dtype=torch.long)
        mask = x.clone()
        mask[0, -1] = 0     # one padded place: traced with all ones, the mask would be dropped as unused
        axes = {0: "batch", 1: "sequence"}
        torch.onnx.export(model, (x, mask, torch.zeros_like(x)), str(fp32), dynamo=False, opset_version=17,
                          input_names=["input_ids", "attention_mask", "token_type_ids"], output_names=["logits"],
                          dynamic_axes={"input_ids": axes, "attention_mask": axes, "token_type_ids": axes,
                                        "logits": {0: "batch"}})
        source, note = fp32, "exported (TorchScript exporter, opset 17)"
        try:
            from onnxruntime.transformers.optimizer import optimize_model

            optimize_model(str(fp32), model_type="bert", num_heads=12, hidden_size=768).save_model_to_file(str(opt))
            source, note = opt, note + ", ORT transformer optimizer (bert)"
        except Exception as e:          # noqa: BLE001 — any failure: quantize the plain export, say so
            note += f", ORT transformer optimizer failed ({type(e).__name__}: {str(e)[:200]})"
        # the optimizer's fused ops (com.microsoft) defeat ONNX shape inference: name the float type
        quantize_dynamic(str(source), str(int8), weight_type=QuantType.QInt8,
                         extra_options={"DefaultTensorType": onnx.TensorProto.FLOAT})
        how.write_text(json.dumps({"how": note + ", quantize_dynamic QInt8"}))
    so = ort.SessionOptions()
    so.intra_op_num_threads, so.inter_op_num_threads = threads, 1
    so.execution_mode = ort.ExecutionMode.ORT_SEQUENTIAL
    sess = ort.InferenceSession(str(int8), so, providers=["CPUExecutionProvider"])
    return sess, json.loads(how.read_text())["how"] + f", onnxruntime {ort.__version__}"


def ort_worker(args: argparse.Namespace) -> None:
    """Long-lived worker (``ours`` or ``ort``): JSON commands on stdin, one JSON answer a line."""
    import numpy as np
    import torch

    torch.set_num_threads(args.threads)
    folder = Path(args.workdir) / "bert-base"
    send = lambda obj: (sys.stdout.write(json.dumps(obj) + "\n"), sys.stdout.flush())  # noqa: E731
    if args.variant in ("ours", "ours-llm-int8"):
        sys.path.insert(0, str(ROOT))
        from pretrained import AutoModelForSequenceClassification
        from pretrained.quantization import set_llm_int8

        f32 = AutoModelForSequenceClassification.from_pretrained(folder, torch_dtype=torch.float32).eval()
        int8 = AutoModelForSequenceClassification.from_pretrained(folder, load_in_8bit=True).eval()
        info = "pretrained load_in_8bit"
        if args.variant == "ours-llm-int8":   # int8 activations: bitsandbytes' own algorithm (the default)
            info += " (LLM.int8(): activations quantized per row, as bitsandbytes)"
        else:
            set_llm_int8(int8, False)
            info += " + set_llm_int8(model, False) (weight-only int8)"

        def call(inputs: dict, model=int8) -> list:
            with torch.inference_mode():
                return model(**{k: torch.tensor(v) for k, v in inputs.items()}).logits.float().tolist()
    else:
        hidden = hide_broken_torchvision()
        sess, info = ort_session(folder, args.threads)
        info += ", (the reference python's broken torchvision hidden)" if hidden else ""

        def call(inputs: dict, model=None) -> list:
            feed = {k: np.asarray(v, dtype=np.int64) for k, v in inputs.items()}
            return sess.run(["logits"], feed)[0].tolist()
    send({"ready": args.variant, "how": info})
    for line in sys.stdin:
        cmd = json.loads(line)
        if cmd["op"] == "logits":
            out = {"int8": call(cmd["inputs"])}
            if args.variant.startswith("ours"):
                out["float32"] = call(cmd["inputs"], f32)
            send(out)
        elif cmd["op"] == "round":
            times = []
            for _ in range(cmd["calls"]):
                t0 = time.perf_counter()
                call(cmd["inputs"])
                times.append(time.perf_counter() - t0)
            send({"times": times})
        else:
            return


class Worker:
    def __init__(self, python: str, variant: str, work: Path, threads: int) -> None:
        env = dict(os.environ, HF_HUB_OFFLINE="1", TRANSFORMERS_VERBOSITY="error", OMP_NUM_THREADS=str(threads))
        env.pop("PYTHONPATH", None)
        self.proc = subprocess.Popen([python, str(Path(__file__)), "--worker", "ort", "--variant", variant,
                                      "--workdir", str(work), "--threads", str(threads)],
                                     stdin=subprocess.PIPE, stdout=subprocess.PIPE, text=True, env=env)
        self.info = self.read()

    def read(self) -> dict:
        line = self.proc.stdout.readline()
        if not line:
            raise RuntimeError(f"ort worker exited with code {self.proc.wait()}")
        return json.loads(line)

    def ask(self, **cmd) -> dict:
        self.proc.stdin.write(json.dumps(cmd) + "\n")
        self.proc.stdin.flush()
        return self.read()

    def close(self) -> None:
        self.proc.stdin.write('{"op": "quit"}\n')
        self.proc.stdin.close()
        self.proc.wait()


def part_ort(work: Path, args: argparse.Namespace) -> dict:
    import torch

    ref = args.ref_python or sys.executable
    if (why := ref_can(ref, "onnxruntime, onnx, transformers")):
        msg = (f"{ref} cannot import onnxruntime/onnx/transformers ({why}); install ONNX Runtime "
               f"into the reference python only: {ref} -m pip install onnxruntime onnx")
        print(f"ort part skipped: {msg}", flush=True)
        return {"skipped": msg}
    bert_folder(work)
    gen = torch.Generator().manual_seed(0)
    ids = [101] + torch.randint(1000, 30000, (14,), generator=gen).tolist() + [102]
    inputs = {"input_ids": [ids], "attention_mask": [[1] * 16], "token_type_ids": [[0] * 16]}
    sides = {"ours": Worker(sys.executable, "ours", work, args.threads),
             "ours-llm-int8": Worker(sys.executable, "ours-llm-int8", work, args.threads),
             "ort": Worker(ref, "ort", work, args.threads)}
    try:
        got = {k: w.ask(op="logits", inputs=inputs) for k, w in sides.items()}
        f32 = torch.tensor(got["ours"]["float32"])
        diff = {k: float((torch.tensor(g["int8"]) - f32).abs().max()) for k, g in got.items()}
        for w in sides.values():            # warm-up
            w.ask(op="round", inputs=inputs, calls=max(5, args.calls // 5))
        times: dict = {k: [] for k in sides}
        for r in range(args.rounds):
            for k in (list(sides) if r % 2 == 0 else list(sides)[::-1]):
                times[k] += sides[k].ask(op="round", inputs=inputs, calls=args.calls)["times"]
        how = {k: w.info["how"] for k, w in sides.items()}
    finally:
        for w in sides.values():
            w.close()
    rows = {k: {"latency_ms": statistics.median(t) * 1e3, "max_abs_diff_vs_float32": diff[k], "how": how[k]}
            for k, t in times.items()}
    ratio = rows["ours"]["latency_ms"] / rows["ort"]["latency_ms"]
    ratio8 = rows["ours-llm-int8"]["latency_ms"] / rows["ort"]["latency_ms"]
    for k, r in rows.items():
        print(f"{k:13s} int8 1x16: {r['latency_ms']:.2f} ms (median of {args.rounds}x{args.calls}), max |logit - "
              f"float32| {r['max_abs_diff_vs_float32']:.2e}  [{r['how']}]", flush=True)
    print(f"ours / ORT latency: weight-only {ratio:.2f}x, LLM.int8() {ratio8:.2f}x (below 1: ours faster); "
          f"float32 logits {f32.tolist()}", flush=True)
    return {"shape": [1, 16], "threads": args.threads, "float32_logits": f32.tolist(), "rows": rows,
            "ours_vs_ort_latency": ratio, "ours_llm_int8_vs_ort_latency": ratio8}


def main() -> None:
    p = argparse.ArgumentParser(description="worker of bench_quantization.py's qlora and ort parts")
    p.add_argument("--worker", choices=["qlora", "ort"], required=True)
    p.add_argument("--variant", required=True)
    p.add_argument("--workdir", required=True)
    p.add_argument("--ids")
    p.add_argument("--threads", type=int, default=2)
    add_args(p)
    args = p.parse_args()
    (qlora_worker if args.worker == "qlora" else ort_worker)(args)


if __name__ == "__main__":
    main()
