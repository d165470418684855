"""GGUF fixtures and the reference library's outputs on them.

Imports the reference (`transformers`, which reads GGUF through the `gguf` package); run it in
the reference venv:

    /work/refvenv/bin/python scripts/golden_gguf.py            # everything
    /work/refvenv/bin/python scripts/golden_gguf.py quants tiny  # skip the real SmolLM2

(``scripts/make_goldens.py gguf`` also calls :func:`main`.)

Writes:
  tests/fixtures/goldens/gguf/quants.safetensors
      per ggml type T: ``T.raw`` (uint8 blocks) and ``T.expected`` (float32, what
      ``gguf.quants.dequantize`` gives). Blocks are random bytes with sane f16 scale fields (every
      type), plus, for the types ``gguf`` can quantize, ``T.q.raw``/``T.q.expected`` from
      quantizing normal random data.
  tests/fixtures/models/gguf-tiny/*.gguf
      tiny random models written with gguf's GGUFWriter the way llama.cpp's converter writes them
      (Q/K rows permuted for llama, Conv1D weights transposed for gpt2), in a mix of tensor types:
        llama-bpe.gguf   llama, GQA, untied, byte-level BPE tokenizer + chat template, every
                         quant type (Q8_0 Q4_0 Q4_1 Q5_0 Q5_1 Q4_K Q5_K Q6_K F16 BF16 F32)
        llama-spm.gguf   llama, MHA, tied, SentencePiece-BPE tokenizer without merges (rebuilt
                         from the scores), F32/F16
        gpt2.gguf        gpt2, tied, byte-level BPE, F32/F16/Q8_0
  tests/fixtures/goldens/gguf/tiny.json (+ tiny.safetensors)
      per file: the reference's config fields, tokenizer ids/decodes, special tokens, and logits
  tests/fixtures/goldens/gguf/smollm2.json (+ smollm2.safetensors)
      the real SmolLM2-135M-Instruct Q4_1 file: tokenizer ids, the chat prompt, logits slices, the
      greedy continuation, and the reference's load time
"""

from __future__ import annotations

import json
import sys
import time
from pathlib import Path

import numpy as np
import torch
from safetensors.torch import save_file

ROOT = Path(__file__).resolve().parent.parent
GOLD = ROOT / "tests" / "fixtures" / "goldens" / "gguf"
TINY = ROOT / "tests" / "fixtures" / "models" / "gguf-tiny"

# byte offsets of the f16 fields in each block type (random bytes there could be NaN/inf)
F16_FIELDS = {"Q8_0": (0,), "Q4_0": (0,), "Q4_1": (0, 2), "Q5_0": (0,), "Q5_1": (0, 2),
              "Q4_K": (0, 2), "Q5_K": (0, 2), "Q6_K": (208,)}
QUANTIZABLE = ("Q8_0", "Q4_0", "Q4_1", "Q5_0", "Q5_1", "F16", "BF16")

STRINGS = [
    "Hello world",
    "The capital of France is Paris.",
    " leading space and  two spaces",
    "line one\nline two\n\n\ttab",
    "naïve café, 日本語 and 🤗!",
    "<|im_start|>user\nhi<|im_end|>",
    "numbers 12345 and 3.14159",
    "",
]
SPM_STRINGS = ["Hello world", " the theme there", "hello\nthere", "über 日本 🤗", "<s>the</s>", ""]
CHAT = [{"role": "user", "content": "What is the capital of France?"}]
CHAT_TEMPLATE = (
    "{% for message in messages %}{% if loop.first and messages[0]['role'] != 'system' %}"
    "{{ '<|im_start|>system\\nYou are a tiny test model.<|im_end|>\\n' }}{% endif %}"
    "{{ '<|im_start|>' + message['role'] + '\\n' + message['content'] + '<|im_end|>\\n' }}"
    "{% endfor %}{% if add_generation_prompt %}{{ '<|im_start|>assistant\\n' }}{% endif %}"
)
CORPUS = ("the quick brown fox jumps over the lazy dog. hello world! the theme of there then. "
          "Paris is the capital of France; numbers 12345 3.14159 in the line\nline two\n") * 20


def _random_blocks(name: str, n_blocks: int, rng: np.random.Generator) -> np.ndarray:
    import gguf

    qtype = gguf.GGMLQuantizationType[name]
    _, type_size = gguf.GGML_QUANT_SIZES[qtype]
    raw = rng.integers(0, 256, size=(n_blocks, type_size), dtype=np.uint8)
    for off in F16_FIELDS[name]:
        scale = rng.uniform(-2e-3, 2e-3, size=n_blocks) if off == 2 else rng.uniform(1e-4, 4e-3, n_blocks)
        raw[:, off:off + 2] = scale.astype(np.float16).view(np.uint8).reshape(n_blocks, 2)
    return raw


def make_quants() -> None:
    import gguf
    from gguf import quants

    rng = np.random.default_rng(0)
    out: dict[str, torch.Tensor] = {}
    for name in F16_FIELDS:
        qtype = gguf.GGMLQuantizationType[name]
        block, _ = gguf.GGML_QUANT_SIZES[qtype]
        raw = _random_blocks(name, 4096 // block, rng)
        out[f"{name}.raw"] = torch.from_numpy(raw.reshape(-1).copy())
        out[f"{name}.expected"] = torch.from_numpy(quants.dequantize(raw, qtype).reshape(-1).copy())
    for name in QUANTIZABLE:
        qtype = gguf.GGMLQuantizationType[name]
        data = rng.standard_normal((8, 256)).astype(np.float32) * 0.05
        raw = quants.quantize(data, qtype)
        out[f"{name}.q.raw"] = torch.from_numpy(raw.view(np.uint8).reshape(-1).copy())
        out[f"{name}.q.expected"] = torch.from_numpy(
            np.asarray(quants.dequantize(raw, qtype), dtype=np.float32).reshape(-1).copy())
    GOLD.mkdir(parents=True, exist_ok=True)
    save_file(out, str(GOLD / "quants.safetensors"))
    print(f"quants: {len(out) // 2} cases")


# --- tiny GGUF files ----------------------------------------------------------------------------
def _byte_level_vocab() -> tuple[list[str], list[str]]:
    from tokenizers import Tokenizer, decoders, models, pre_tokenizers, trainers

    tok = Tokenizer(models.BPE())
    tok.pre_tokenizer = pre_tokenizers.ByteLevel(add_prefix_space=False)
    tok.decoder = decoders.ByteLevel()
    trainer = trainers.BpeTrainer(vocab_size=330, initial_alphabet=pre_tokenizers.ByteLevel.alphabet(),
                                  show_progress=False)
    tok.train_from_iterator([CORPUS], trainer)
    data = json.loads(tok.to_str())
    vocab = data["model"]["vocab"]
    tokens = [t for t, _ in sorted(vocab.items(), key=lambda kv: kv[1])]
    merges = [m if isinstance(m, str) else " ".join(m) for m in data["model"]["merges"]]
    return tokens, merges


def _spm_vocab() -> tuple[list[str], list[float], list[int]]:
    from tokenizers import Tokenizer, models, pre_tokenizers, trainers

    tok = Tokenizer(models.BPE())
    tok.pre_tokenizer = pre_tokenizers.Metaspace(replacement="▁", prepend_scheme="first", split=True)
    trainer = trainers.BpeTrainer(vocab_size=120, show_progress=False)
    tok.train_from_iterator([CORPUS], trainer)
    vocab = json.loads(tok.to_str())["model"]["vocab"]
    pieces = [t for t, _ in sorted(vocab.items(), key=lambda kv: kv[1])]
    tokens = ["<unk>", "<s>", "</s>"] + [f"<0x{b:02X}>" for b in range(256)] + pieces
    types = [2, 3, 3] + [6] * 256 + [1] * len(pieces)
    scores = [0.0, 0.0, 0.0] + [0.0] * 256 + [-float(i) for i in range(len(pieces))]
    return tokens, scores, types


def _permute(w: np.ndarray, heads: int) -> np.ndarray:
    """llama.cpp's converter: interleave each head's two halves of Q/K rows."""
    return w.reshape(heads, 2, w.shape[0] // heads // 2, *w.shape[1:]).swapaxes(1, 2).reshape(w.shape)


def _add(writer, name: str, w: np.ndarray, kind: str, rng: np.random.Generator) -> None:
    import gguf
    from gguf import quants

    w = np.ascontiguousarray(w, dtype=np.float32)
    if kind == "F32":
        writer.add_tensor(name, w)
    elif kind == "F16":
        writer.add_tensor(name, w.astype(np.float16))
    elif kind in QUANTIZABLE:
        qtype = gguf.GGMLQuantizationType[kind]
        writer.add_tensor(name, quants.quantize(w, qtype), raw_dtype=qtype)
    else:  # K-quants: gguf cannot quantize them, so the blocks are random (with sane scales)
        qtype = gguf.GGMLQuantizationType[kind]
        block, size = gguf.GGML_QUANT_SIZES[qtype]
        raw = _random_blocks(kind, w.size // block, rng).reshape(w.shape[0], -1)
        writer.add_tensor(name, raw, raw_dtype=qtype)


def _write_llama(path: Path, model, *, types: dict[str, str], tokenizer: dict, tied: bool,
                 rng: np.random.Generator) -> None:
    import gguf

    cfg = model.config
    sd = {k: v.detach().numpy() for k, v in model.state_dict().items()}
    w = gguf.GGUFWriter(str(path), "llama")
    w.add_name(path.stem)
    w.add_context_length(cfg.max_position_embeddings)
    w.add_block_count(cfg.num_hidden_layers)
    w.add_feed_forward_length(cfg.intermediate_size)
    w.add_embedding_length(cfg.hidden_size)
    w.add_rope_dimension_count(cfg.head_dim)
    w.add_rope_freq_base(float(cfg.rope_parameters["rope_theta"]))
    w.add_head_count(cfg.num_attention_heads)
    w.add_head_count_kv(cfg.num_key_value_heads)
    w.add_layer_norm_rms_eps(cfg.rms_norm_eps)
    w.add_vocab_size(cfg.vocab_size)
    _add_tokenizer(w, tokenizer)
    _add(w, "token_embd.weight", sd["model.embed_tokens.weight"], types.get("embd", "F32"), rng)
    _add(w, "output_norm.weight", sd["model.norm.weight"], "F32", rng)
    if not tied:
        _add(w, "output.weight", sd["lm_head.weight"], types.get("output", "F16"), rng)
    names = {"attn_q": "self_attn.q_proj", "attn_k": "self_attn.k_proj", "attn_v": "self_attn.v_proj",
             "attn_output": "self_attn.o_proj", "ffn_gate": "mlp.gate_proj", "ffn_up": "mlp.up_proj",
             "ffn_down": "mlp.down_proj"}
    for i in range(cfg.num_hidden_layers):
        p = f"model.layers.{i}."
        _add(w, f"blk.{i}.attn_norm.weight", sd[p + "input_layernorm.weight"], "F32", rng)
        _add(w, f"blk.{i}.ffn_norm.weight", sd[p + "post_attention_layernorm.weight"], "F32", rng)
        for g, h in names.items():
            t = sd[p + h + ".weight"]
            if g == "attn_q":
                t = _permute(t, cfg.num_attention_heads)
            elif g == "attn_k":
                t = _permute(t, cfg.num_key_value_heads)
            _add(w, f"blk.{i}.{g}.weight", t, types.get(f"{i}.{g}", types.get(g, "F32")), rng)
    w.write_header_to_file()
    w.write_kv_data_to_file()
    w.write_tensors_to_file()
    w.close()


def _write_gpt2(path: Path, model, *, tokenizer: dict, rng: np.random.Generator) -> None:
    import gguf

    cfg = model.config
    sd = {k: v.detach().numpy() for k, v in model.state_dict().items()}
    w = gguf.GGUFWriter(str(path), "gpt2")
    w.add_name(path.stem)
    w.add_context_length(cfg.n_positions)
    w.add_block_count(cfg.n_layer)
    w.add_embedding_length(cfg.n_embd)
    w.add_feed_forward_length(4 * cfg.n_embd)
    w.add_head_count(cfg.n_head)
    w.add_layer_norm_eps(cfg.layer_norm_epsilon)
    _add_tokenizer(w, tokenizer)
    _add(w, "token_embd.weight", sd["transformer.wte.weight"], "Q8_0", rng)
    _add(w, "position_embd.weight", sd["transformer.wpe.weight"], "F16", rng)
    _add(w, "output_norm.weight", sd["transformer.ln_f.weight"], "F32", rng)
    _add(w, "output_norm.bias", sd["transformer.ln_f.bias"], "F32", rng)
    names = {"attn_norm": "ln_1", "attn_qkv": "attn.c_attn", "attn_output": "attn.c_proj",
             "ffn_norm": "ln_2", "ffn_up": "mlp.c_fc", "ffn_down": "mlp.c_proj"}
    kinds = {"attn_qkv": "Q8_0", "attn_output": "F16", "ffn_up": "F16", "ffn_down": "Q8_0"}
    for i in range(cfg.n_layer):
        for g, h in names.items():
            for suffix in ("weight", "bias"):
                t = sd[f"transformer.h.{i}.{h}.{suffix}"]
                kind = "F32"
                if suffix == "weight" and g in kinds:
                    t, kind = t.T, kinds[g]  # Conv1D (in, out) -> Linear (out, in), as llama.cpp
                _add(w, f"blk.{i}.{g}.{suffix}", t, kind, rng)
    w.write_header_to_file()
    w.write_kv_data_to_file()
    w.write_tensors_to_file()
    w.close()


def _add_tokenizer(w, tok: dict) -> None:
    w.add_tokenizer_model(tok["model"])
    if "pre" in tok:
        w.add_tokenizer_pre(tok["pre"])
    w.add_token_list(tok["tokens"])
    w.add_token_types(tok["types"])
    if "scores" in tok:
        w.add_token_scores(tok["scores"])
    if "merges" in tok:
        w.add_token_merges(tok["merges"])
    for key, value in tok.get("ids", {}).items():
        getattr(w, f"add_{key}_token_id")(value)
    if "add_bos" in tok:
        w.add_add_bos_token(tok["add_bos"])
    if "chat_template" in tok:
        w.add_chat_template(tok["chat_template"])


def _reference_outputs(name: str, strings: list[str], logits_ids: list[list[int]],
                       tensors: dict[str, torch.Tensor]) -> dict:
    from transformers import AutoConfig, AutoModelForCausalLM, AutoTokenizer

    cfg = AutoConfig.from_pretrained(str(TINY), gguf_file=name)
    tok = AutoTokenizer.from_pretrained(str(TINY), gguf_file=name)
    model = AutoModelForCausalLM.from_pretrained(str(TINY), gguf_file=name)
    model.eval()
    keys = ("model_type", "vocab_size", "hidden_size", "num_hidden_layers", "num_attention_heads",
            "num_key_value_heads", "intermediate_size", "head_dim", "rms_norm_eps",
            "max_position_embeddings", "tie_word_embeddings", "n_embd", "n_layer", "n_head",
            "n_positions", "layer_norm_epsilon")
    d = cfg.to_dict()
    out = {"config": {k: d[k] for k in keys if k in d},
           "rope_theta": (d.get("rope_parameters") or {}).get("rope_theta"),
           "special": {k: getattr(tok, k) for k in ("bos_token", "eos_token", "unk_token", "pad_token")},
           "all_special_tokens": list(tok.all_special_tokens),
           "padding_side": tok.padding_side,
           "cases": []}
    for s in strings:
        ids = tok(s)["input_ids"]
        out["cases"].append({"text": s, "ids": ids, "decode": tok.decode(ids),
                             "decode_skip": tok.decode(ids, skip_special_tokens=True)})
    if tok.chat_template:
        prompt = tok.apply_chat_template(CHAT, tokenize=False, add_generation_prompt=True)
        out["chat"] = {"prompt": prompt, "ids": tok(prompt)["input_ids"]}
    with torch.no_grad():
        for i, ids in enumerate(logits_ids):
            x = torch.tensor([ids])
            tensors[f"{name}.input_ids.{i}"] = x
            tensors[f"{name}.logits.{i}"] = model(x).logits[0].float().contiguous()
    out["n_logits"] = len(logits_ids)
    return out


def make_tiny() -> None:
    from transformers import GPT2Config, GPT2LMHeadModel, LlamaConfig, LlamaForCausalLM

    rng = np.random.default_rng(1)
    torch.manual_seed(0)
    TINY.mkdir(parents=True, exist_ok=True)
    bl_tokens, bl_merges = _byte_level_vocab()
    specials = ["<|endoftext|>", "<|im_start|>", "<|im_end|>"]
    bpe_tok = {"model": "gpt2", "pre": "smollm", "tokens": bl_tokens + specials + ["<think>"],
               "types": [1] * len(bl_tokens) + [3, 3, 3, 4], "merges": bl_merges,
               "ids": {"bos": len(bl_tokens) + 1, "eos": len(bl_tokens) + 2,
                       "unk": len(bl_tokens), "pad": len(bl_tokens) + 2},
               "add_bos": False, "chat_template": CHAT_TEMPLATE}
    n_bpe = len(bpe_tok["tokens"])

    llama = LlamaForCausalLM(LlamaConfig(
        vocab_size=n_bpe, hidden_size=64, intermediate_size=256, num_hidden_layers=3,
        num_attention_heads=4, num_key_value_heads=2, max_position_embeddings=128,
        rope_theta=10000.0, rms_norm_eps=1e-5, tie_word_embeddings=False)).eval()
    types = {"embd": "Q8_0", "output": "F16", "attn_q": "Q4_0", "attn_k": "Q4_1", "attn_v": "Q5_0",
             "attn_output": "Q5_1", "0.ffn_gate": "F16", "1.ffn_gate": "BF16", "2.ffn_gate": "F32",
             "ffn_up": "Q8_0", "0.ffn_down": "Q4_K", "1.ffn_down": "Q5_K", "2.ffn_down": "Q6_K"}
    _write_llama(TINY / "llama-bpe.gguf", llama, types=types, tokenizer=bpe_tok, tied=False, rng=rng)

    sp_tokens, sp_scores, sp_types = _spm_vocab()
    spm_tok = {"model": "llama", "tokens": sp_tokens, "types": sp_types, "scores": sp_scores,
               "ids": {"bos": 1, "eos": 2, "unk": 0}}
    llama2 = LlamaForCausalLM(LlamaConfig(
        vocab_size=len(sp_tokens), hidden_size=32, intermediate_size=64, num_hidden_layers=2,
        num_attention_heads=4, num_key_value_heads=4, max_position_embeddings=64,
        rope_theta=500000.0, rms_norm_eps=1e-6, tie_word_embeddings=True)).eval()
    _write_llama(TINY / "llama-spm.gguf", llama2, types={"embd": "F16", "attn_v": "F16"},
                 tokenizer=spm_tok, tied=True, rng=rng)

    gpt2_tok = {"model": "gpt2", "tokens": bl_tokens + ["<|endoftext|>"],
                "types": [1] * len(bl_tokens) + [3], "merges": bl_merges,
                "ids": {"bos": len(bl_tokens), "eos": len(bl_tokens)}}
    gpt2 = GPT2LMHeadModel(GPT2Config(vocab_size=len(gpt2_tok["tokens"]), n_embd=32, n_layer=2,
                                      n_head=4, n_positions=1024)).eval()
    _write_gpt2(TINY / "gpt2.gguf", gpt2, tokenizer=gpt2_tok, rng=rng)

    tensors: dict[str, torch.Tensor] = {}
    goldens = {
        "llama-bpe.gguf": _reference_outputs("llama-bpe.gguf", STRINGS,
                                             [[5, 17, 42, 300, 7, 99], list(range(0, n_bpe, 13))], tensors),
        "llama-spm.gguf": _reference_outputs("llama-spm.gguf", SPM_STRINGS,
                                             [[1, 270, 300, 5, 9], [1, 2, 3]], tensors),
        "gpt2.gguf": _reference_outputs("gpt2.gguf", STRINGS[:5],
                                        [[0, 17, 42, 200, 7, 99, 3]], tensors),
    }
    (GOLD / "tiny.json").write_text(json.dumps(goldens, indent=1, ensure_ascii=False) + "\n")
    save_file(tensors, str(GOLD / "tiny.safetensors"))
    print("tiny:", {p.name: p.stat().st_size for p in sorted(TINY.glob("*.gguf"))})


# --- the real SmolLM2 ---------------------------------------------------------------------------
def make_smollm2() -> None:
    sys.path.insert(0, str(ROOT))
    from pretrained.io.fetch import fetch
    from transformers import AutoModelForCausalLM, AutoTokenizer

    path = Path(fetch("SmolLM2-135M-Instruct-Q4_1-gguf"))
    folder, name = str(path.parent), path.name
    t0 = time.perf_counter()
    tok = AutoTokenizer.from_pretrained(folder, gguf_file=name)
    t1 = time.perf_counter()
    model = AutoModelForCausalLM.from_pretrained(folder, gguf_file=name, dtype=torch.float32).eval()
    t2 = time.perf_counter()
    prompt = tok.apply_chat_template(CHAT, tokenize=False, add_generation_prompt=True)
    ids = tok(prompt, return_tensors="pt")["input_ids"]
    with torch.no_grad():
        logits = model(ids).logits[0].float()
        gen = model.generate(ids, max_new_tokens=20, do_sample=False)
    new = gen[0, ids.shape[1]:].tolist()
    out = {
        "file": name,
        "reference_load_seconds": {"tokenizer": round(t1 - t0, 2), "model": round(t2 - t1, 2)},
        "strings": [{"text": s, "ids": tok(s)["input_ids"]} for s in STRINGS],
        "special": {k: getattr(tok, k) for k in ("bos_token", "eos_token", "unk_token", "pad_token")},
        "chat": {"messages": CHAT, "prompt": prompt, "ids": ids[0].tolist()},
        "greedy": {"new_ids": new, "text": tok.decode(new, skip_special_tokens=True)},
        "logits_positions": [0, 5, 17, ids.shape[1] - 1],
    }
    tensors = {"logits_last": logits[-1].contiguous(),
               "logits_first64": logits[out["logits_positions"], :64].contiguous()}
    GOLD.mkdir(parents=True, exist_ok=True)
    (GOLD / "smollm2.json").write_text(json.dumps(out, indent=1, ensure_ascii=False) + "\n")
    save_file(tensors, str(GOLD / "smollm2.safetensors"))
    print("smollm2:", out["greedy"], out["reference_load_seconds"])


def main(argv: list[str] | None = None) -> None:
    what = argv or ["quants", "tiny", "smollm2"]
    GOLD.mkdir(parents=True, exist_ok=True)
    if "quants" in what:
        make_quants()
    if "tiny" in what:
        make_tiny()
    if "smollm2" in what:
        make_smollm2()


if __name__ == "__main__":
    main(sys.argv[1:])
