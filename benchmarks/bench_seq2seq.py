"""Summarization and translation pipeline throughput and peak memory, this project against the
reference transformers 4.57.6 (the last release with these pipelines), in ONE process, calls
interleaved with the order alternating each round.

    /work/ref4venv/bin/python benchmarks/bench_seq2seq.py [--rounds 5] [--new 32]
        [--models t5,marian] [--dtypes float32,bfloat16] [--batches 1,8] [--beams 1,4]
    /work/ref4venv/bin/python benchmarks/bench_seq2seq.py --memory     # peak RSS, one process each

(the reference's venv, with this repository on ``sys.path``). Models, built once under
~/.cache/pretrained/bench-seq2seq with random weights by the reference: a t5-small-shaped T5
(6+6 layers, d_model 512, d_ff 2048, 8 heads, vocab 32128) and an opus-mt-shaped Marian (6+6,
512, 2048, 8 heads; shared vocabulary of 32k pieces) with a SentencePiece tokenizer trained on
Debian's package descriptions (examples/debian_text.py). Inputs: real held-out English long
descriptions (summarization) and synopses (translation). Every call generates exactly ``--new``
tokens (min_new_tokens = max_new_tokens) so both libraries do the same work; throughput is
texts per second, the ratio ours / reference per round, median over rounds.
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

ROOT = Path(__file__).resolve().parent.parent
sys.path.insert(0, str(ROOT))
sys.path.insert(0, str(ROOT / "examples"))

import torch  # noqa: E402

WORK = Path(os.environ.get("XDG_CACHE_HOME", Path.home() / ".cache")) / "pretrained" / "bench-seq2seq"
VOCAB = 32000
TASKS = {"t5": "summarization", "marian": "translation_en_to_fr"}


def texts() -> dict[str, list[str]]:
    from debian_text import load

    summ = load("summarization")["test"]
    trans = load("translation")["test"]
    return {"summarization": [p["document"] for p in summ][:64],
            "translation_en_to_fr": [p["en"] for p in trans][:64]}


def build() -> None:
    """Tokenizer and the two random-weight models, once."""
    import sentencepiece as spm
    import transformers
    from debian_text import load

    WORK.mkdir(parents=True, exist_ok=True)
    model_file = WORK / "spm.model"
    if not model_file.exists():
        corpus = WORK / "corpus.txt"
        summ, trans = load("summarization"), load("translation")
        lines = [p["document"] for p in summ["train"]] + \
            [p[lang] for p in trans["train"] for lang in ("en", "fr")]
        corpus.write_text("\n".join(line.replace("\n", " ") for line in lines if line))
        spm.SentencePieceTrainer.train(input=str(corpus), model_prefix=str(WORK / "spm"),
                                       vocab_size=VOCAB, model_type="unigram",
                                       character_coverage=1.0, pad_id=-1, bos_id=-1,
                                       eos_id=1, unk_id=2, num_threads=2)
    torch.manual_seed(0)
    t5 = WORK / "t5"
    if not (t5 / "config.json").exists():
        tok = transformers.T5TokenizerFast(vocab_file=str(model_file), add_prefix_space=True)
        tok.save_pretrained(t5)
        cfg = transformers.T5Config(vocab_size=32128, d_model=512, d_kv=64, d_ff=2048, num_layers=6,
                                    num_heads=8, decoder_start_token_id=0, pad_token_id=0,
                                    eos_token_id=1)
        transformers.T5ForConditionalGeneration(cfg).save_pretrained(t5)
    marian = WORK / "marian"
    if not (marian / "config.json").exists():
        marian.mkdir(parents=True, exist_ok=True)
        sp = spm.SentencePieceProcessor(model_file=str(model_file))
        vocab = {sp.id_to_piece(i): i for i in range(sp.get_piece_size())}
        vocab["<pad>"] = len(vocab)
        (marian / "vocab.json").write_text(json.dumps(vocab, ensure_ascii=False))
        for name in ("source.spm", "target.spm"):
            (marian / name).write_bytes(model_file.read_bytes())
        tok = transformers.MarianTokenizer(str(marian / "source.spm"), str(marian / "target.spm"),
                                           str(marian / "vocab.json"), source_lang="en",
                                           target_lang="fr")
        tok.save_pretrained(marian)
        cfg = transformers.MarianConfig(vocab_size=len(vocab), d_model=512, encoder_layers=6,
                                        decoder_layers=6, encoder_attention_heads=8,
                                        decoder_attention_heads=8, encoder_ffn_dim=2048,
                                        decoder_ffn_dim=2048, max_position_embeddings=512,
                                        pad_token_id=vocab["<pad>"], eos_token_id=vocab["</s>"],
                                        decoder_start_token_id=vocab["<pad>"])
        transformers.MarianMTModel(cfg).save_pretrained(marian)


def pipelines(model: str, dtype: torch.dtype):
    import transformers
    from pretrained import pipeline

    transformers.logging.set_verbosity_error()
    folder = str(WORK / model)
    ours = pipeline(TASKS[model], model=folder, torch_dtype=dtype)
    ref = transformers.pipeline(TASKS[model], model=folder, dtype=dtype)
    return {"ours": ours, "ref": ref}


def run(pipe, items: list[str], batch: int, beams: int, new: int) -> float:
    start = time.perf_counter()
    pipe(items, batch_size=batch, num_beams=beams, min_new_tokens=new, max_new_tokens=new,
         do_sample=False, truncation=True)
    return time.perf_counter() - start


def speed(args) -> None:
    data = texts()
    print(f"# torch {torch.__version__}, threads {torch.get_num_threads()}, new tokens {args.new}")
    print("| model | task | dtype | batch | beams | ours texts/s | reference texts/s | ratio |")
    print("|---|---|---|---|---|---|---|---|")
    for model in args.models.split(","):
        for dname in args.dtypes.split(","):
            dtype = getattr(torch, dname)
            pipes = pipelines(model, dtype)
            items_all = data[TASKS[model]]
            for batch in (int(b) for b in args.batches.split(",")):
                for beams in (int(b) for b in args.beams.split(",")):
                    items = items_all[:max(batch, 4) if batch == 1 else batch]
                    for p in pipes.values():   # warm-up (first-call costs, kernel builds)
                        run(p, items[:batch], batch, beams, 4)
                    times = {"ours": [], "ref": []}
                    ratios = []
                    for r in range(args.rounds):
                        order = ("ours", "ref") if r % 2 == 0 else ("ref", "ours")
                        got = {lib: run(pipes[lib], items, batch, beams, args.new) for lib in order}
                        for lib in got:
                            times[lib].append(got[lib])
                        ratios.append(got["ref"] / got["ours"])
                    n = len(items)
                    ours = n / statistics.median(times["ours"])
                    ref = n / statistics.median(times["ref"])
                    print(f"| {model} | {TASKS[model]} | {dname} | {batch} | {beams} | {ours:.2f} | "
                          f"{ref:.2f} | {statistics.median(ratios):.2f}x |", flush=True)


def memory(args) -> None:
    rows = []
    for model in args.models.split(","):
        for lib in ("ours", "ref"):
            out = subprocess.run([sys.executable, __file__, "--child", lib, "--models", model,
                                  "--new", str(args.new)], capture_output=True, text=True, check=True)
            rows.append((model, lib, out.stdout.strip().splitlines()[-1]))
    print("| model | library | peak RSS (MiB), float32, batch 8, 4 beams |")
    print("|---|---|---|")
    for model, lib, mib in rows:
        print(f"| {model} | {lib} | {mib} |")


def child(args) -> None:
    import transformers

    transformers.logging.set_verbosity_error()
    model = args.models
    folder = str(WORK / model)
    if args.child == "ours":
        from pretrained import pipeline

        pipe = pipeline(TASKS[model], model=folder)
    else:
        pipe = transformers.pipeline(TASKS[model], model=folder)
    run(pipe, texts()[TASKS[model]][:8], 8, 4, args.new)
    print(f"{resource.getrusage(resource.RUSAGE_SELF).ru_maxrss / 1024:.0f}")


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    ap.add_argument("--rounds", type=int, default=5)
    ap.add_argument("--new", type=int, default=32)
    ap.add_argument("--models", default="t5,marian")
    ap.add_argument("--dtypes", default="float32,bfloat16")
    ap.add_argument("--batches", default="1,8")
    ap.add_argument("--beams", default="1,4")
    ap.add_argument("--memory", action="store_true")
    ap.add_argument("--child", choices=("ours", "ref"))
    args = ap.parse_args()
    build()
    if args.child:
        child(args)
    elif args.memory:
        memory(args)
    else:
        speed(args)


if __name__ == "__main__":
    main()
