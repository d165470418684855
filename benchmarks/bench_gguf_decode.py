"""Decode on a GGUF file's own blocks: this library (packed), the reference, llama.cpp.

    python benchmarks/bench_gguf_decode.py [--gguf PATH] [--libs ours,ours-int8,ours-dequantized,
        reference,llama.cpp] [--batches 1,8] [--new 128] [--repeats 3] [--threads 2] [--rounds 1]
    python benchmarks/bench_gguf_decode.py --check [--gguf PATH] [--text FILE] [--tokens 1024]

Timing run (the figures of benchmarks/RESULTS.md), on an otherwise idle machine (check with
``uptime``: nothing else running, load well under 1), alone, e.g.::

    .venv/bin/python benchmarks/bench_gguf_decode.py --libs ours,ours-int8,ours-dequantized,reference,llama.cpp \\
        --batches 1,8 --new 128 --repeats 3 --rounds 3 --threads 2 --ref-python /work/refvenv/bin/python

(about 10-15 minutes; batch 8 decode is in ``--batches``; llama.cpp is skipped when
llama-cpp-python is not importable (PyPI has only its source; built here with
``CFLAGS=CXXFLAGS='-mno-amx-tile -mno-amx-int8 -mno-amx-bf16' CMAKE_ARGS=-DGGML_NATIVE=ON pip wheel
llama-cpp-python==0.3.36``: with AMX compiled in, its matmul segfaulted on this Xeon); the reference's row reports an error when its python lacks
the ``gguf`` package its GGUF loader needs).

The file: the real SmolLM2-135M-Instruct Q4_1 (``pretrained.io.fetch``) unless ``--gguf`` names
another (a Q8_0 / Q4_0 file made by ``pretrained convert``). Each (variant, batch) runs in a
fresh subprocess, one after the other, ``--rounds`` times interleaved (median round reported):

* ``ours``: ``from_pretrained(folder, gguf_file=)`` (packed blocks, float32 activations);
* ``ours-int8``: the same with ``set_gguf_activations(model, "int8")`` (llama.cpp's way);
* ``ours-dequantized``: ``dequantize=True`` (float32 weights, today's reference behaviour);
* ``reference``: transformers in ``--ref-python`` (it dequantizes to float32 at load);
* ``llama.cpp``: llama-cpp-python when importable here (batch 1 only: its high-level API
  decodes one sequence).

Reported per variant: load (process-local: import excluded, ``from_pretrained`` / ``Llama()``
to a usable model), load to first token (load + prefill of the chat prompt + one token),
first-token time alone, decode tokens/s (greedy, exactly ``--new`` tokens, eos off; batch 8
counts all rows), peak resident memory (VmHWM) and the file size, and the greedy answer to the
chat example. The machine must be otherwise idle for the figures to mean anything; the timing
part is not run by the tests.

``--check`` (no timings; safe on a busy machine): the logits of the packed model, float32 and
int8 activations, against the dequantized float32 model (``dequantize=True``) over a held-out
text (default: the first ``--tokens`` tokens of /usr/share/common-licenses/Apache-2.0), fed in
chunks of ``--chunk`` tokens with the KV cache (at most 16 rows: the decode kernels' path, each
row's arithmetic the same as one decode step's): top-1 agreement (target >= 99%), max and median
relative error (per position: max |logit - float32 logit| / max |float32 logit|), and the
perplexity of each variant on the text; llama.cpp's on the same token ids when
llama-cpp-python is importable.
"""

from __future__ import annotations

import argparse
import importlib.util
import json
import math
import os
import statistics
import subprocess
import sys
from pathlib import Path

from reference import reference_python  # benchmarks/reference.py

ROOT = Path(__file__).resolve().parent.parent
QUESTION = "What is the capital of France?"

WORKER = r"""
import json, os, sys, time
t0 = time.perf_counter()
lib, path, batch, new, repeats, threads = {args!r}
if lib != "llama.cpp":   # llama.cpp runs as its users run it, without torch in the process
    import torch
    torch.set_num_threads(threads)
folder, name = os.path.dirname(path), os.path.basename(path)
def hwm():
    for line in open("/proc/self/status"):
        if line.startswith("VmHWM"):
            return int(line.split()[1]) * 1024
out = {{}}
if lib == "llama.cpp":
    import llama_cpp
    start = time.perf_counter()
    llm = llama_cpp.Llama(model_path=path, n_ctx=512, n_threads=threads, verbose=False)
    out["load_s"] = time.perf_counter() - start
    msgs = [{{"role": "user", "content": {question!r}}}]
    t = time.perf_counter()
    r = llm.create_chat_completion(msgs, max_tokens=1, temperature=0.0)
    out["first_token_s"] = time.perf_counter() - t
    out["load_to_first_token_s"] = out["load_s"] + out["first_token_s"]
    r = llm.create_chat_completion(msgs, max_tokens=32, temperature=0.0)
    out["answer"] = r["choices"][0]["message"]["content"]
    ids = llm.tokenize(b"The quick brown fox", add_bos=False)
    times = []
    for _ in range(repeats):
        llm.reset(); llm.eval(ids)
        t = time.perf_counter()
        for _ in range(new):
            tok = llm.sample(temp=0.0)
            llm.eval([tok])
        times.append(time.perf_counter() - t)
    out["decode_tok_s"] = new / sorted(times)[len(times) // 2]
else:
    if lib == "reference":
        from transformers import AutoModelForCausalLM, AutoTokenizer
    else:
        from pretrained import AutoModelForCausalLM, AutoTokenizer
    kw = {{"dequantize": True}} if lib == "ours-dequantized" else {{}}
    start = time.perf_counter()
    model = AutoModelForCausalLM.from_pretrained(folder, gguf_file=name, **kw)
    if lib == "ours-int8":
        from pretrained.backends.gguf_linear import set_gguf_activations
        set_gguf_activations(model, "int8")
    out["load_s"] = time.perf_counter() - start
    tok = AutoTokenizer.from_pretrained(folder, gguf_file=name)
    chat = tok.apply_chat_template([{{"role": "user", "content": {question!r}}}],
                                   add_generation_prompt=True, return_tensors="pt", return_dict=True)
    with torch.no_grad():
        t = time.perf_counter()
        model.generate(**chat, max_new_tokens=1, do_sample=False)
        out["first_token_s"] = time.perf_counter() - t
        out["load_to_first_token_s"] = out["load_s"] + out["first_token_s"]
        g = model.generate(**chat, max_new_tokens=32, do_sample=False)
        out["answer"] = tok.decode(g[0, chat["input_ids"].shape[1]:], skip_special_tokens=True)
        torch.manual_seed(0)
        ids = torch.randint(100, 10000, (batch, 16))
        kw = dict(max_new_tokens=new, min_new_tokens=new, do_sample=False)
        model.generate(ids, max_new_tokens=2, do_sample=False)
        times = []
        for _ in range(repeats):
            t = time.perf_counter(); model.generate(ids, max_new_tokens=1, do_sample=False)
            first = time.perf_counter() - t
            t = time.perf_counter(); model.generate(ids, **kw)
            times.append(time.perf_counter() - t - first)
    out["decode_tok_s"] = batch * (new - 1) / sorted(times)[len(times) // 2]
out["peak_rss_bytes"] = hwm()
print("RESULT", json.dumps(out))
"""


def run(python: str, lib: str, path: str, batch: int, new: int, repeats: int, threads: int) -> dict:
    code = WORKER.format(args=(lib, path, batch, new, repeats, threads), question=QUESTION)
    env = {**os.environ, "OMP_NUM_THREADS": str(threads)}
    proc = subprocess.run([python, "-c", code], capture_output=True, text=True, env=env,
                          cwd=ROOT, timeout=3600)
    for line in proc.stdout.splitlines():
        if line.startswith("RESULT "):
            return json.loads(line[7:])
    return {"error": (proc.stderr.strip().splitlines() or ["no output"])[-1]}


DEFAULT_TEXT = "/usr/share/common-licenses/Apache-2.0"


def _chunked(model, ids, chunk: int, mode: str | None = None):
    """The logits of ``ids`` (1, T) fed ``chunk`` tokens at a time through the KV cache, one
    (chunk, vocab) float32 block at a time; ``mode``: the packed layers' activations."""
    import torch

    from pretrained.backends.gguf_linear import set_gguf_activations

    cache = None
    with torch.no_grad():
        for start in range(0, ids.shape[1], chunk):
            if mode is not None:   # again each time: another stream may share the model
                set_gguf_activations(model, mode)
            out = model(ids[:, start:start + chunk], past_key_values=cache, use_cache=True)
            cache = out.past_key_values
            yield out.logits[0].float()


def logits_check(path: str, text_file: str, tokens: int, chunk: int) -> dict:
    """Top-1 agreement, relative error and perplexity of the packed variants against the
    dequantized float32 model on ``text_file`` (see the module doc). Returns the figures."""
    import torch

    from pretrained import AutoModelForCausalLM, AutoTokenizer

    folder, name = os.path.dirname(path) or ".", os.path.basename(path)
    tok = AutoTokenizer.from_pretrained(folder, gguf_file=name)
    text = Path(text_file).read_text(encoding="utf-8")
    ids = torch.tensor([tok(text)["input_ids"][:tokens]])
    n = ids.shape[1]
    ref = AutoModelForCausalLM.from_pretrained(folder, gguf_file=name, dequantize=True)
    packed = AutoModelForCausalLM.from_pretrained(folder, gguf_file=name)
    variants = {"packed float32 activations": "float", "packed int8 activations": "int8"}
    from pretrained.backends import build

    if not build.available():   # int8 activations exist only in the C kernels
        del variants["packed int8 activations"]
    streams = {"dequantized float32": _chunked(ref, ids, chunk)}
    # one model, two caches: the mode is set again before each of its chunks
    streams.update({v: _chunked(packed, ids, chunk, mode) for v, mode in variants.items()})
    nll = {v: 0.0 for v in streams}
    agree = {v: 0 for v in variants}
    rel: dict[str, list[float]] = {v: [] for v in variants}
    for start in range(0, n, chunk):
        blocks = {v: next(s) for v, s in streams.items()}
        target = ids[0, start + 1:start + chunk + 1]   # the next tokens (the last has none)
        for v, lg in blocks.items():
            nll[v] += -torch.log_softmax(lg[:len(target)], -1).gather(1, target[:, None]).sum().item()
        base = blocks["dequantized float32"]
        for v in variants:
            agree[v] += int((blocks[v].argmax(-1) == base.argmax(-1)).sum())
            rel[v] += ((blocks[v] - base).abs().amax(-1) / base.abs().amax(-1)).tolist()
    out = {"file": path, "text": text_file, "tokens": n, "chunk": chunk,
           "perplexity": {v: math.exp(nll[v] / (n - 1)) for v in nll}}
    for v in variants:
        out[v] = {"top1_agreement": agree[v] / n, "max_rel_error": max(rel[v]),
                  "median_rel_error": statistics.median(rel[v])}
    if importlib.util.find_spec("llama_cpp") is not None:   # optional: its perplexity on the same ids
        out["perplexity"]["llama.cpp"] = llama_cpp_perplexity(path, ids[0].tolist())
    return out


LLAMA_PPL = r"""
import json, math, sys
import numpy as np
import llama_cpp
path, ids = json.loads(sys.stdin.read())
llm = llama_cpp.Llama(model_path=path, n_ctx=len(ids) + 8, n_batch=512, logits_all=True, verbose=False)
llm.eval(ids)
s = np.asarray(llm.scores[:len(ids) - 1], dtype=np.float64)
m = s.max(-1, keepdims=True)
logp = s - m - np.log(np.exp(s - m).sum(-1, keepdims=True))
nll = -logp[np.arange(len(ids) - 1), ids[1:]].sum()
print("RESULT", math.exp(nll / (len(ids) - 1)))
"""


def llama_cpp_perplexity(path: str, ids: list[int]) -> float:
    """llama.cpp's perplexity of ``ids`` in a process of its own (without torch, as in WORKER)."""
    proc = subprocess.run([sys.executable, "-c", LLAMA_PPL], input=json.dumps([path, ids]),
                          capture_output=True, text=True, timeout=3600)
    for line in proc.stdout.splitlines():
        if line.startswith("RESULT "):
            return float(line.split()[1])
    raise RuntimeError(f"llama.cpp perplexity failed:\n{proc.stderr[-2000:]}")


def print_check(r: dict) -> None:
    print(f"logits check: {r['file']}, {r['tokens']} tokens of {r['text']}, chunks of {r['chunk']}")
    for v, ppl in r["perplexity"].items():
        line = f"  {v:28s} perplexity {ppl:.4f}"
        if v in r:
            line += (f"; against float32: top-1 agreement {100 * r[v]['top1_agreement']:.2f}%, "
                     f"max relative error {r[v]['max_rel_error']:.2e} "
                     f"(median {r[v]['median_rel_error']:.2e})")
        print(line)


def main() -> int:
    ap = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument("--gguf", help="a .gguf file (default: the fetched SmolLM2-135M-Instruct Q4_1)")
    ap.add_argument("--libs", default="ours,ours-int8,ours-dequantized,reference,llama.cpp")
    ap.add_argument("--batches", default="1,8")
    ap.add_argument("--new", type=int, default=128)
    ap.add_argument("--repeats", type=int, default=3)
    ap.add_argument("--rounds", type=int, default=1)
    ap.add_argument("--threads", type=int, default=2)
    ap.add_argument("--ref-python", default=None)
    ap.add_argument("--check", action="store_true",
                    help="the logits check instead of the timings (see above); no timing")
    ap.add_argument("--text", default=DEFAULT_TEXT, help="--check: the held-out text file")
    ap.add_argument("--tokens", type=int, default=1024, help="--check: tokens of the text")
    ap.add_argument("--chunk", type=int, default=16, help="--check: tokens per forward (<= 16)")
    ap.add_argument("--json", help="--check: also write the figures to this file")
    args = ap.parse_args()
    path = args.gguf
    if path is None:
        from pretrained.io.fetch import fetch

        path = str(fetch("SmolLM2-135M-Instruct-Q4_1-gguf", quiet=True))
    if args.check:
        import torch

        if not 1 <= args.chunk <= 16:   # above 16 rows the layers dequantize tiles instead
            ap.error("--chunk is 1..16 (the decode kernels' rows)")

        torch.set_num_threads(args.threads)
        r = logits_check(path, args.text, args.tokens, args.chunk)
        print_check(r)
        if args.json:
            Path(args.json).write_text(json.dumps(r, indent=1), encoding="utf-8")
        return 0
    libs = [x for x in args.libs.split(",") if x]
    if "llama.cpp" in libs and importlib.util.find_spec("llama_cpp") is None:
        print("llama.cpp: llama-cpp-python is not installed here; skipped")
        libs.remove("llama.cpp")
    ref = reference_python(args.ref_python) if "reference" in libs else None
    print(f"file: {path} ({Path(path).stat().st_size / 2**20:.1f} MiB), threads {args.threads}")
    results: dict[tuple, list] = {}
    for _ in range(args.rounds):
        for lib in libs:
            for batch in [int(b) for b in args.batches.split(",")]:
                if lib == "llama.cpp" and batch != 1:
                    continue
                python = ref if lib == "reference" else sys.executable
                results.setdefault((lib, batch), []).append(
                    run(python, lib, path, batch, args.new, args.repeats, args.threads))
    for (lib, batch), rounds in results.items():
        ok = [r for r in rounds if "error" not in r]
        if not ok:
            print(f"{lib:18s} batch {batch}: error: {rounds[0]['error']}")
            continue
        med = {k: statistics.median(r[k] for r in ok) for k in ok[0] if isinstance(ok[0][k], (int, float))}
        print(f"{lib:18s} batch {batch}: decode {med['decode_tok_s']:.1f} tok/s, first token "
              f"{med['first_token_s'] * 1e3:.0f} ms, load {med['load_s']:.2f} s, load to first token "
              f"{med['load_to_first_token_s']:.2f} s, peak RSS {med['peak_rss_bytes'] / 2**20:.0f} MiB; "
              f"answer {ok[0]['answer']!r}")
    return 0


if __name__ == "__main__":
    sys.exit(main())
