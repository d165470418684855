"""Decode on a GGUF file's own blocks: this library (packed), the reference, llama.cpp.

    python benchmarks/bench_gguf_decode.py [--gguf PATH] [--libs ours,ours-int8,ours-dequantized,
        reference,llama.cpp] [--batches 1,8] [--new 128] [--repeats 3] [--threads 2] [--rounds 1]

The file: the real SmolLM2-135M-Instruct Q4_1 (``pretrained.fetch``) unless ``--gguf`` names
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
chat example. The machine must be otherwise idle for the figures to mean anything; this script
is not run by the tests.
"""

from __future__ import annotations

import argparse
import importlib.util
import json
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
    args = ap.parse_args()
    path = args.gguf
    if path is None:
        from pretrained.fetch import fetch

        path = str(fetch("SmolLM2-135M-Instruct-Q4_1-gguf", quiet=True))
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
