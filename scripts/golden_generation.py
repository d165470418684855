"""Record the reference library's generate(), logits processors and text-generation pipeline.

Imports the reference (`transformers`); run it in the reference venv:

    /work/refvenv/bin/python scripts/golden_generation.py

(``scripts/make_goldens.py`` also calls :func:`main`.)

Reads the tiny causal-LM checkpoints under tests/fixtures/models/ (every folder whose config is a
GPT-2 / Llama / Mistral / Qwen2 / Qwen3 / GPT-NeoX causal LM), and writes:

  models/gpt2-tiny-chat/        a tiny GPT-2 sized to tests/fixtures/tokenizers/gpt2_bpe (502 ids),
                                with that tokenizer and its chat template copied next to it
  goldens/generation/generate.json     per model, per case: inputs, generate() kwargs, sequences
  goldens/generation/generate.safetensors   scores / sequences_scores of return_dict cases
  goldens/generation/logits.json + logits.safetensors   each processor and warper on fixed scores
  goldens/generation/pipeline.json     text-generation pipeline inputs, kwargs and outputs
"""

from __future__ import annotations

import json
import re
import shutil
import sys
from pathlib import Path

import torch
import transformers
from safetensors.torch import save_file
from transformers import (AutoModelForCausalLM, GenerationConfig, LogitsProcessorList, pipeline)
from transformers.generation import logits_process as lp

ROOT = Path(__file__).resolve().parent.parent
FIX = ROOT / "tests" / "fixtures"
OUT = FIX / "goldens" / "generation"
CAUSAL_TYPES = {"gpt2", "llama", "mistral", "qwen2", "qwen3", "gpt_neox"}
CHAT_MODEL = "gpt2-tiny-chat"
SCORE_MODELS = {"gpt2-tiny", CHAT_MODEL, "llama-gqa", "qwen3", "gpt_neox-parallel"}  # scores kept

transformers.logging.set_verbosity_error()


# --- the models ----------------------------------------------------------------------------------
def causal_models() -> list[str]:
    names = []
    for folder in sorted((FIX / "models").iterdir()):
        cfg = folder / "config.json"
        if not cfg.is_file():
            continue
        data = json.loads(cfg.read_text())
        arch = (data.get("architectures") or [""])[0]
        if data.get("model_type") in CAUSAL_TYPES and arch.endswith(("ForCausalLM", "LMHeadModel")):
            names.append(folder.name)
    return names


def make_chat_model() -> None:
    """A GPT-2 with the gpt2_bpe tokenizer's vocabulary, for the pipeline goldens."""
    tok_dir = FIX / "tokenizers" / "gpt2_bpe"
    tok = transformers.AutoTokenizer.from_pretrained(tok_dir)
    config = transformers.GPT2Config(
        vocab_size=len(tok), n_embd=32, n_layer=2, n_head=4, n_positions=128,
        bos_token_id=tok.bos_token_id, eos_token_id=tok.convert_tokens_to_ids("<|im_end|>"),
        pad_token_id=tok.pad_token_id)
    torch.manual_seed(1234)
    model = transformers.GPT2LMHeadModel(config).eval()
    with torch.no_grad():
        for p in model.parameters():
            p.add_(torch.randn_like(p) * 0.3)  # large enough for varied, non-repeating greedy text
    folder = FIX / "models" / CHAT_MODEL
    shutil.rmtree(folder, ignore_errors=True)
    model.generation_config = GenerationConfig(
        bos_token_id=config.bos_token_id, eos_token_id=config.eos_token_id,
        pad_token_id=config.pad_token_id, max_new_tokens=8)
    model.save_pretrained(folder)
    for name in ("tokenizer.json", "tokenizer_config.json"):
        shutil.copy(tok_dir / name, folder / name)
    for f in folder.iterdir():
        f.chmod(0o644)


# --- generate() ----------------------------------------------------------------------------------
def prompts(model, seed: int, lengths: list[int]) -> dict[str, torch.Tensor]:
    """Random prompts of the given lengths, left-padded (pad id: the model's, or 0)."""
    g = torch.Generator().manual_seed(seed)
    vocab = model.config.vocab_size
    pad = model.generation_config.pad_token_id or 0
    t = max(lengths)
    ids = torch.full((len(lengths), t), pad, dtype=torch.long)
    mask = torch.zeros(len(lengths), t, dtype=torch.long)
    for i, n in enumerate(lengths):
        ids[i, t - n:] = torch.randint(3, vocab, (n,), generator=g)
        mask[i, t - n:] = 1
    return {"input_ids": ids, "attention_mask": mask}


def late_token(row: torch.Tensor) -> int:
    """The token of ``row`` that first appears last (but not first), so an eos set to it stops
    that row part-way."""
    firsts = {}
    for i, t in enumerate(row.tolist()):
        firsts.setdefault(t, i)
    return max(firsts, key=lambda t: (0 < firsts[t] < len(row) - 1, firsts[t]))


def run(model, inputs, kwargs, seed=None):
    if seed is not None:
        torch.manual_seed(seed)
    with torch.no_grad():
        return model.generate(**inputs, **kwargs)


def generate_cases(name: str, tensors: dict) -> list[dict]:
    model = AutoModelForCausalLM.from_pretrained(FIX / "models" / name).eval()
    seed = sum(map(ord, name))
    one = prompts(model, seed, [6])
    batch = prompts(model, seed + 1, [7, 3, 5])
    rope = getattr(model.config, "rope_parameters", None) or {}
    dynamic = isinstance(rope, dict) and rope.get("rope_type") == "dynamic"  # no hard context
    ctx = 64 if dynamic else getattr(model.config, "max_position_embeddings", 64)
    n = min(10, ctx - 8)
    # Tokens the model actually produces, used as eos / banned ids so those paths trigger.
    free = run(model, batch, {"max_new_tokens": n, "do_sample": False, "eos_token_id": None})
    gen = free[:, batch["input_ids"].shape[1]:]
    eos_a, eos_b = late_token(gen[0]), late_token(gen[1])
    first = int(gen[2, 0])
    cases = [
        ("greedy_single", one, {"max_new_tokens": n, "do_sample": False}),
        ("greedy_batch", batch, {"max_new_tokens": n, "do_sample": False}),
        ("greedy_batch_no_cache", batch, {"max_new_tokens": n, "do_sample": False, "use_cache": False}),
        ("greedy_max_length", batch, {"max_length": 7 + 6, "do_sample": False}),
        ("greedy_two_eos", batch, {"max_new_tokens": n, "do_sample": False, "eos_token_id": [eos_a, eos_b]}),
        ("greedy_eos_pad", batch, {"max_new_tokens": n, "do_sample": False, "eos_token_id": eos_a,
                                   "pad_token_id": 0}),
        ("min_new_tokens", batch, {"max_new_tokens": n, "do_sample": False, "eos_token_id": first,
                                   "min_new_tokens": 4}),
        ("min_length", batch, {"max_new_tokens": n, "do_sample": False, "eos_token_id": first,
                               "min_length": 7 + 3}),
        ("no_repeat_ngram", batch, {"max_new_tokens": n, "do_sample": False, "no_repeat_ngram_size": 2}),
        ("repetition_penalty", batch, {"max_new_tokens": n, "do_sample": False, "repetition_penalty": 1.5}),
        ("repetition_reward", batch, {"max_new_tokens": n, "do_sample": False, "repetition_penalty": 0.6}),
        ("bad_words", batch, {"max_new_tokens": n, "do_sample": False,
                              "bad_words_ids": [[int(gen[0, 0])], [int(gen[1, 1]), int(gen[1, 2])]]}),
        ("greedy_scores", batch, {"max_new_tokens": 4, "do_sample": False, "return_dict_in_generate": True,
                                  "output_scores": True, "output_logits": True}),
        ("beam3", batch, {"max_new_tokens": n, "num_beams": 3, "do_sample": False}),
        ("beam4_ret2", batch, {"max_new_tokens": n, "num_beams": 4, "num_return_sequences": 2,
                               "do_sample": False, "length_penalty": 0.7, "eos_token_id": [eos_a, eos_b],
                               "return_dict_in_generate": True, "output_scores": True}),
        ("beam4_early_true", batch, {"max_new_tokens": n, "num_beams": 4, "do_sample": False,
                                     "early_stopping": True, "eos_token_id": [eos_a, eos_b],
                                     "num_return_sequences": 4}),
        ("beam3_never", batch, {"max_new_tokens": n, "num_beams": 3, "do_sample": False,
                                "early_stopping": "never", "length_penalty": 1.5, "eos_token_id": eos_a,
                                "num_return_sequences": 3, "return_dict_in_generate": True,
                                "output_scores": True}),
        ("beam3_lp_neg", batch, {"max_new_tokens": n, "num_beams": 3, "do_sample": False,
                                 "length_penalty": -0.5, "eos_token_id": [eos_b, first]}),
        ("beam3_penalties", batch, {"max_new_tokens": n, "num_beams": 3, "do_sample": False,
                                    "repetition_penalty": 1.3, "no_repeat_ngram_size": 2,
                                    "min_new_tokens": 3, "eos_token_id": first}),
        ("beam_single", one, {"max_new_tokens": n, "num_beams": 4, "num_return_sequences": 2,
                              "do_sample": False}),
    ]
    samples = [
        ("sample", batch, {"max_new_tokens": n, "do_sample": True}, 0),
        ("sample_warpers", batch, {"max_new_tokens": n, "do_sample": True, "temperature": 0.7,
                                   "top_k": 20, "top_p": 0.9}, 1),
        ("sample_min_p", batch, {"max_new_tokens": n, "do_sample": True, "min_p": 0.1, "top_k": 0,
                                 "temperature": 1.3}, 2),
        ("sample_ret3", one, {"max_new_tokens": n, "do_sample": True, "num_return_sequences": 3,
                              "top_p": 0.8}, 3),
        ("beam_sample", batch, {"max_new_tokens": n, "do_sample": True, "num_beams": 3, "top_k": 10}, 4),
    ]
    out = []
    for case, inputs, kwargs in cases:
        out.append(record(name, case, model, inputs, kwargs, None, tensors))
    for case, inputs, kwargs, s in samples:
        out.append(record(name, case, model, inputs, kwargs, s, tensors))
    return out


def record(name, case, model, inputs, kwargs, seed, tensors) -> dict:
    res = run(model, inputs, kwargs, seed)
    entry = {"case": case, "kwargs": kwargs, "seed": seed,
             "input_ids": inputs["input_ids"].tolist(), "attention_mask": inputs["attention_mask"].tolist()}
    if kwargs.get("return_dict_in_generate"):
        entry["sequences"] = res.sequences.tolist()
        key = f"{name}/{case}"
        # The first steps of a few models only, to keep the fixture small.
        if name in SCORE_MODELS:
            for field in ("scores", "logits"):
                if getattr(res, field, None) is not None:
                    tensors[f"{key}/{field}"] = torch.stack(getattr(res, field)[:3], 1).contiguous()
            if getattr(res, "sequences_scores", None) is not None:
                tensors[f"{key}/sequences_scores"] = res.sequences_scores.contiguous()
        if getattr(res, "beam_indices", None) is not None:
            entry["beam_indices"] = res.beam_indices.tolist()
    else:
        entry["sequences"] = res.tolist()
    return entry


# --- logits processors ---------------------------------------------------------------------------
def logits_goldens() -> None:
    g = torch.Generator().manual_seed(7)
    b, v, t = 5, 64, 10
    scores = torch.randn(b, v, generator=g) * 3
    scores[1] = (scores[1] * 2).round() / 2  # ties
    scores[2, :20] = -float("inf")  # already filtered
    scores[3] = torch.log_softmax(scores[3], -1)  # beam-search style log-probs
    ids = torch.randint(0, v, (b, t), generator=g)
    ids[0, -4:] = ids[0, :4]  # repeated n-grams
    ids[4, 5:] = ids[4, 3]
    eos = [3, 9]
    cases = {
        "temperature_0.7": [lp.TemperatureLogitsWarper(0.7)],
        "temperature_1.3": [lp.TemperatureLogitsWarper(1.3)],
        "top_k_5": [lp.TopKLogitsWarper(5)],
        "top_k_1": [lp.TopKLogitsWarper(1)],
        "top_k_1_keep3": [lp.TopKLogitsWarper(1, min_tokens_to_keep=3)],
        "top_k_200": [lp.TopKLogitsWarper(200)],
        "top_p_0.9": [lp.TopPLogitsWarper(0.9)],
        "top_p_0.3": [lp.TopPLogitsWarper(0.3)],
        "top_p_0.0_keep2": [lp.TopPLogitsWarper(0.0, min_tokens_to_keep=2)],
        "top_p_1.0": [lp.TopPLogitsWarper(1.0)],
        "min_p_0.1": [lp.MinPLogitsWarper(0.1)],
        "min_p_0.9_keep3": [lp.MinPLogitsWarper(0.9, min_tokens_to_keep=3)],
        "min_p_0": [lp.MinPLogitsWarper(0.0)],
        "repetition_1.5": [lp.RepetitionPenaltyLogitsProcessor(1.5)],
        "repetition_0.5": [lp.RepetitionPenaltyLogitsProcessor(0.5)],
        "repetition_ignore_prompt": [lp.RepetitionPenaltyLogitsProcessor(
            1.5, prompt_ignore_length=torch.tensor([0, 3, 10, 1, 5]))],
        "no_repeat_2": [lp.NoRepeatNGramLogitsProcessor(2)],
        "no_repeat_3": [lp.NoRepeatNGramLogitsProcessor(3)],
        "no_repeat_11": [lp.NoRepeatNGramLogitsProcessor(11)],
        "bad_words": [lp.NoBadWordsLogitsProcessor(
            [[5], [9], [int(ids[0, -1]), 7], [int(ids[1, -2]), int(ids[1, -1]), 8], [1, 2, 3]],
            eos_token_id=eos)],
        "min_length_15": [lp.MinLengthLogitsProcessor(15, eos)],
        "min_length_5": [lp.MinLengthLogitsProcessor(5, eos)],
        "min_new_tokens_6_5": [lp.MinNewTokensLengthLogitsProcessor(6, 5, eos)],
        "min_new_tokens_6_4": [lp.MinNewTokensLengthLogitsProcessor(6, 4, eos[0])],
        "chain": [lp.RepetitionPenaltyLogitsProcessor(1.2), lp.NoRepeatNGramLogitsProcessor(2),
                  lp.TemperatureLogitsWarper(0.8), lp.TopKLogitsWarper(30), lp.TopPLogitsWarper(0.85),
                  lp.MinPLogitsWarper(0.05)],
    }
    tensors = {"scores": scores, "input_ids": ids}
    meta = {"eos_token_id": eos, "cases": sorted(cases)}
    for name, procs in cases.items():
        tensors[f"out/{name}"] = LogitsProcessorList(procs)(ids, scores.clone()).contiguous()
    save_file(tensors, str(OUT / "logits.safetensors"))
    (OUT / "logits.safetensors").chmod(0o644)
    (OUT / "logits.json").write_text(json.dumps(meta, indent=2) + "\n")


# --- pipeline ------------------------------------------------------------------------------------
def pipeline_goldens() -> None:
    folder = FIX / "models" / CHAT_MODEL
    pipe = pipeline("text-generation", model=str(folder))
    chat = [{"role": "user", "content": "Hi there"}]
    chat2 = [{"role": "system", "content": "Be brief."}, {"role": "user", "content": "What is a dog?"}]
    greedy = {"do_sample": False, "max_new_tokens": 10}
    stop_prompt, stop = pick_stop(pipe, ["hello world", "the quick brown fox", "a"], greedy)
    cases = [
        ("string", "hello world", greedy, None),
        ("string_new_text", "hello world", {**greedy, "return_full_text": False}, None),
        ("strings_batched", ["hello world", "the quick brown fox", "a"], {**greedy, "batch_size": 2}, None),
        ("strings_unbatched", ["hello world", "the quick brown fox", "a"], greedy, None),
        ("chat", chat, greedy, None),
        ("chats_batched", [chat, chat2], {**greedy, "batch_size": 2}, None),
        ("chat_new_text", chat2, {**greedy, "return_full_text": False}, None),
        ("chat_continue", [*chat, {"role": "assistant", "content": "Sure, the"}], greedy, None),
        ("empty_prompt", "", {**greedy, "max_new_tokens": 5}, None),
        ("beams_ret2", "the dog", {**greedy, "num_beams": 3, "num_return_sequences": 2}, None),
        ("penalties", "hello hello hello", {**greedy, "repetition_penalty": 1.4, "no_repeat_ngram_size": 2,
                                            "min_new_tokens": 6}, None),
        ("defaults_sampled", "hello world", {}, 0),
        ("sample_ret2", "the dog", {"do_sample": True, "num_return_sequences": 2, "top_k": 10,
                                    "max_new_tokens": 6}, 5),
        ("return_tensors", "hello world", {**greedy, "return_tensors": True}, None),
    ]
    cases.append(("stop_sequence", stop_prompt, {**greedy, "stop_sequence": stop}, None))
    cases.append(("stop_strings", stop_prompt, {**greedy, "stop_strings": ["zzz", stop]}, None))
    cases.append(("stop_in_prompt", "hello world", {**greedy, "stop_strings": ["hello"]}, None))
    out = []
    for name, inputs, kwargs, seed in cases:
        if seed is not None:
            torch.manual_seed(seed)
        kw = dict(kwargs)
        if "stop_strings" in kw:
            kw["tokenizer"] = pipe.tokenizer
        res = pipe(inputs, **kw)
        out.append({"case": name, "inputs": inputs, "kwargs": kwargs, "seed": seed,
                    "output": _plain(res)})
    (OUT / "pipeline.json").write_text(json.dumps({"model": CHAT_MODEL, "cases": out}, indent=1,
                                                  ensure_ascii=False) + "\n")


def pick_stop(pipe, prompts, greedy) -> tuple[str, str]:
    """A prompt and a plain-ASCII 2-character piece of its greedy continuation (not at its very
    start), to stop generation part-way."""
    for prompt in prompts:
        free = pipe(prompt, **greedy, return_full_text=False)[0]["generated_text"]
        for i in range(2, len(free) - 1):
            piece = free[i:i + 2]
            if re.fullmatch(r"[A-Za-z0-9 ]{2}", piece) and piece.strip():
                return prompt, piece
    raise SystemExit("no plain stop string found in the chat model's greedy outputs")


def _plain(x):
    if isinstance(x, torch.Tensor):
        return x.tolist()
    if isinstance(x, dict):
        return {k: _plain(v) for k, v in x.items()}
    if isinstance(x, (list, tuple)):
        return [_plain(v) for v in x]
    return x


def main() -> None:
    OUT.mkdir(parents=True, exist_ok=True)
    make_chat_model()
    tensors: dict[str, torch.Tensor] = {}
    results = {"transformers_version": transformers.__version__, "models": {}}
    for name in causal_models():
        results["models"][name] = generate_cases(name, tensors)
        print(f"generation goldens: {name} ({len(results['models'][name])} cases)")
    # One case per line: compact, and still readable in a diff.
    lines = [f'{{"transformers_version": "{transformers.__version__}", "models": {{']
    for i, (name, cases) in enumerate(results["models"].items()):
        lines.append(f"{json.dumps(name)}: [")
        lines += [json.dumps(c) + ("," if j < len(cases) - 1 else "") for j, c in enumerate(cases)]
        lines.append("]" + ("," if i < len(results["models"]) - 1 else ""))
    lines.append("}}")
    (OUT / "generate.json").write_text("\n".join(lines) + "\n")
    save_file(tensors, str(OUT / "generate.safetensors"))
    for f in OUT.iterdir():
        f.chmod(0o644)
    logits_goldens()
    pipeline_goldens()
    print(f"wrote {OUT}")


if __name__ == "__main__":
    sys.exit(main())
