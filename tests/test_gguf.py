"""GGUF checkpoints: the reader, the dequantizers, config/name mapping, tokenizer (the errors are
tests/test_gguf_errors.py's).

Goldens come from the reference (scripts/golden_gguf.py): ``gguf.quants.dequantize`` on random
blocks of every quant type; ``transformers`` on tiny GGUF files written the way llama.cpp writes
them (tests/fixtures/models/gguf-tiny); and on the real SmolLM2-135M-Instruct Q4_1 file (slow
tests). Other tests write small GGUF files here with an independent minimal writer and compare
what loads against the same weights loaded from safetensors.
"""

from __future__ import annotations

import json
import struct
from pathlib import Path

import pytest
import torch
from safetensors.torch import load_file

from pretrained import AutoConfig, AutoModel, AutoModelForCausalLM, AutoTokenizer
from pretrained.gguf import load_gguf
from pretrained.gguf.dequant import GGML_TYPES, SUPPORTED_TYPES, dequantize

FIX = Path(__file__).parent / "fixtures"
GOLD = FIX / "goldens" / "gguf"
TINY = FIX / "models" / "gguf-tiny"
TYPE_IDS = {name: i for i, (name, _, _) in GGML_TYPES.items()}


# --- dequantizers against gguf.quants.dequantize ------------------------------------------------
QUANTS = load_file(str(GOLD / "quants.safetensors"))
QUANT_CASES = sorted(k[: -len(".raw")] for k in QUANTS if k.endswith(".raw"))


@pytest.mark.parametrize("case", QUANT_CASES)
def test_dequantize_matches_reference_bit_for_bit(case):
    kind = case.split(".")[0]
    raw, expected = QUANTS[f"{case}.raw"], QUANTS[f"{case}.expected"]
    got = dequantize(raw, TYPE_IDS[kind], (expected.numel(),))
    assert got.dtype == torch.float32
    assert torch.equal(got, expected), (kind, (got - expected).abs().max())


def test_every_required_type_has_a_golden():
    required = {"F16", "BF16", "Q8_0", "Q4_0", "Q4_1", "Q4_K", "Q5_K", "Q6_K"}
    assert required <= {c.split(".")[0] for c in QUANT_CASES}
    assert required | {"F32"} <= set(SUPPORTED_TYPES)


@pytest.mark.parametrize("kind", ["Q4_1", "Q6_K"])
def test_dequantize_to_bfloat16_rounds_the_float32_values(kind):
    raw, expected = QUANTS[f"{kind}.raw"], QUANTS[f"{kind}.expected"]
    got = dequantize(raw, TYPE_IDS[kind], (4, expected.numel() // 4), torch.bfloat16)
    assert got.dtype == torch.bfloat16
    assert torch.equal(got, expected.view(4, -1).to(torch.bfloat16))


# --- a minimal, independent GGUF writer ---------------------------------------------------------
def _string(s: str) -> bytes:
    b = s.encode("utf-8")
    return struct.pack("<Q", len(b)) + b


_FMT = {0: "<B", 1: "<b", 2: "<H", 3: "<h", 4: "<I", 5: "<i", 6: "<f", 7: "<?", 10: "<Q",
        11: "<q", 12: "<d"}


def _value(vtype: int, value) -> bytes:
    if vtype == 8:
        return _string(value)
    if vtype == 9:
        etype, items = value
        return struct.pack("<IQ", etype, len(items)) + b"".join(_value(etype, v) for v in items)
    return struct.pack(_FMT[vtype], value)


def write_gguf(path: Path, kv: dict, tensors: list[tuple[str, int, tuple, bytes]], *,
               version: int = 3, alignment: int = 32) -> Path:
    """``kv``: key -> (value type, value); ``tensors``: (name, ggml type, torch shape, bytes)."""
    out = bytearray(b"GGUF" + struct.pack("<IQQ", version, len(tensors), len(kv)))
    for key, (vtype, value) in kv.items():
        out += _string(key) + struct.pack("<I", vtype) + _value(vtype, value)
    offset, blobs = 0, []
    for name, ggml_type, shape, data in tensors:
        out += _string(name) + struct.pack("<I", len(shape))
        out += b"".join(struct.pack("<Q", d) for d in reversed(shape))
        out += struct.pack("<IQ", ggml_type, offset)
        blobs.append(data + b"\0" * (-len(data) % alignment))
        offset += len(blobs[-1])
    out += b"\0" * (-len(out) % alignment)
    out += b"".join(blobs)
    path.write_bytes(bytes(out))
    return path


def _tokenizer_kv(vocab: int) -> dict:
    tokens = [chr(0x21 + i) for i in range(vocab - 1)] + ["<|end|>"]
    return {"tokenizer.ggml.model": (8, "gpt2"),
            "tokenizer.ggml.tokens": (9, (8, tokens)),
            "tokenizer.ggml.token_type": (9, (5, [1] * (vocab - 1) + [3])),
            "tokenizer.ggml.merges": (9, (8, ["! \""])),
            "tokenizer.ggml.bos_token_id": (4, vocab - 1),
            "tokenizer.ggml.eos_token_id": (4, vocab - 1)}


def _llama_cpp_permute(w: torch.Tensor, heads: int) -> torch.Tensor:
    """What llama.cpp's converter does to Q/K rows (written here independently of the loader)."""
    out = torch.empty_like(w)
    half = w.shape[0] // heads // 2
    for h in range(heads):
        for i in range(half):
            out[h * 2 * half + 2 * i] = w[h * 2 * half + i]
            out[h * 2 * half + 2 * i + 1] = w[h * 2 * half + half + i]
    return out


def _as(t: torch.Tensor, kind: str) -> tuple[int, bytes]:
    if kind == "F16":
        return 1, t.to(torch.float16).contiguous().numpy().tobytes()
    return 0, t.to(torch.float32).contiguous().numpy().tobytes()


LLAMA_NAMES = {"attn_q": "self_attn.q_proj", "attn_k": "self_attn.k_proj",
               "attn_v": "self_attn.v_proj", "attn_output": "self_attn.o_proj",
               "attn_norm": "input_layernorm", "ffn_norm": "post_attention_layernorm",
               "ffn_gate": "mlp.gate_proj", "ffn_up": "mlp.up_proj", "ffn_down": "mlp.down_proj"}


def _llama(tmp_path: Path, *, tied: bool, kind: str = "F32", kv_heads: int = 2):
    from pretrained.models.llama import LlamaConfig, LlamaForCausalLM

    torch.manual_seed(0)
    cfg = LlamaConfig(vocab_size=40, hidden_size=32, intermediate_size=48, num_hidden_layers=2,
                      num_attention_heads=4, num_key_value_heads=kv_heads,
                      max_position_embeddings=64, rms_norm_eps=1e-5, tie_word_embeddings=tied,
                      rope_parameters={"rope_type": "default", "rope_theta": 10000.0})
    model = LlamaForCausalLM.from_config(cfg)
    with torch.no_grad():  # norms away from 1 so a swapped norm would show
        for name, p in model.named_parameters():
            if "norm" in name:
                p.uniform_(0.5, 1.5)
    model.save_pretrained(tmp_path / "st")
    sd = model.state_dict()
    tensors = []

    def add(gname, t):
        t_kind = "F32" if t.dim() == 1 else kind
        tensors.append((gname, *_as(t, t_kind)[:1], tuple(t.shape), _as(t, t_kind)[1]))

    add("token_embd.weight", sd["model.embed_tokens.weight"])
    add("output_norm.weight", sd["model.norm.weight"])
    if not tied:
        add("output.weight", sd["lm_head.weight"])
    for i in range(2):
        for g, h in LLAMA_NAMES.items():
            t = sd[f"model.layers.{i}.{h}.weight"]
            if g == "attn_q":
                t = _llama_cpp_permute(t, 4)
            elif g == "attn_k":
                t = _llama_cpp_permute(t, kv_heads)
            add(f"blk.{i}.{g}.weight", t)
    kv = {"general.architecture": (8, "llama"), "llama.context_length": (4, 64),
          "llama.block_count": (4, 2), "llama.feed_forward_length": (4, 48),
          "llama.embedding_length": (4, 32), "llama.attention.head_count": (4, 4),
          "llama.attention.head_count_kv": (4, kv_heads), "llama.rope.freq_base": (6, 10000.0),
          "llama.attention.layer_norm_rms_epsilon": (6, 1e-5), "llama.rope.dimension_count": (4, 8),
          **_tokenizer_kv(40)}
    (tmp_path / "gg").mkdir()
    write_gguf(tmp_path / "gg" / "m.gguf", kv, tensors)
    return model, tmp_path / "gg"


@pytest.mark.parametrize("arch", ["qwen2", "qwen3"])
def test_qwen_gguf_keeps_rows_and_maps_biases_and_qk_norms(tmp_path, arch):
    """qwen2 (q/k/v biases) and qwen3 (q/k norms, head_dim from attention.key_length): llama.cpp
    keeps their Q/K rows in HF order."""
    import re

    from pretrained.auto import AutoConfig as AC

    torch.manual_seed(0)
    cfg = AC.for_model(arch, vocab_size=40, hidden_size=32, intermediate_size=48,
                       num_hidden_layers=2, num_attention_heads=4, num_key_value_heads=2,
                       head_dim=16, max_position_embeddings=64, rms_norm_eps=1e-6,
                       rope_parameters={"rope_type": "default", "rope_theta": 1e6})
    model = AutoModelForCausalLM.from_config(cfg)
    with torch.no_grad():
        for p in model.parameters():
            p.normal_()
    model.save_pretrained(tmp_path / "st")
    glob = {"model.embed_tokens": "token_embd", "model.norm": "output_norm", "lm_head": "output"}
    per_layer = {v: k for k, v in LLAMA_NAMES.items()}
    per_layer.update({"self_attn.q_norm": "attn_q_norm", "self_attn.k_norm": "attn_k_norm"})
    tensors = []
    for k, t in model.state_dict().items():
        base, suffix = k.rsplit(".", 1)
        m = re.fullmatch(r"model\.layers\.(\d+)\.(.+)", base)
        g = f"blk.{m[1]}.{per_layer[m[2]]}" if m else glob[base]
        tensors.append((f"{g}.{suffix}", 0, tuple(t.shape), t.contiguous().numpy().tobytes()))
    kv = {"general.architecture": (8, arch), f"{arch}.context_length": (4, 64),
          f"{arch}.block_count": (4, 2), f"{arch}.feed_forward_length": (4, 48),
          f"{arch}.embedding_length": (4, 32), f"{arch}.attention.head_count": (4, 4),
          f"{arch}.attention.head_count_kv": (4, 2), f"{arch}.attention.key_length": (4, 16),
          f"{arch}.rope.freq_base": (6, 1e6), f"{arch}.attention.layer_norm_rms_epsilon": (6, 1e-6),
          **_tokenizer_kv(40)}
    (tmp_path / "gg").mkdir()
    write_gguf(tmp_path / "gg" / "m.gguf", kv, tensors)
    ours = AutoModelForCausalLM.from_pretrained(tmp_path / "gg", gguf_file="m.gguf")
    ref = AutoModelForCausalLM.from_pretrained(tmp_path / "st")
    assert type(ours) is type(ref) and ours.config.head_dim == 16
    _same_state(ours, ref)
    x = torch.tensor([[3, 1, 4, 1, 5, 9, 2, 6]])
    with torch.no_grad():
        assert torch.equal(ours(x).logits, ref(x).logits)


GPT2_NAMES = {"attn_norm": "ln_1", "attn_qkv": "attn.c_attn", "attn_output": "attn.c_proj",
              "ffn_norm": "ln_2", "ffn_up": "mlp.c_fc", "ffn_down": "mlp.c_proj"}


def _gpt2(tmp_path: Path, *, tied: bool):
    from pretrained.models.gpt2 import GPT2Config, GPT2LMHeadModel

    torch.manual_seed(0)
    cfg = GPT2Config(vocab_size=40, n_embd=32, n_layer=2, n_head=4, n_positions=24,
                     tie_word_embeddings=tied)
    model = GPT2LMHeadModel.from_config(cfg)
    with torch.no_grad():
        for name, p in model.named_parameters():
            if p.dim() == 1:
                p.uniform_(-0.5, 1.5)
    model.save_pretrained(tmp_path / "st")
    sd = model.state_dict()
    tensors = []

    def add(gname, t):
        tensors.append((gname, 0, tuple(t.shape), t.contiguous().numpy().tobytes()))

    add("token_embd.weight", sd["transformer.wte.weight"])
    add("position_embd.weight", sd["transformer.wpe.weight"])
    add("output_norm.weight", sd["transformer.ln_f.weight"])
    add("output_norm.bias", sd["transformer.ln_f.bias"])
    if not tied:
        add("output.weight", sd["lm_head.weight"])
    for i in range(2):
        for g, h in GPT2_NAMES.items():
            w = sd[f"transformer.h.{i}.{h}.weight"]
            add(f"blk.{i}.{g}.weight", w.t() if w.dim() == 2 else w)  # Conv1D stored transposed
            add(f"blk.{i}.{g}.bias", sd[f"transformer.h.{i}.{h}.bias"])
    kv = {"general.architecture": (8, "gpt2"), "gpt2.context_length": (4, 24),
          "gpt2.block_count": (4, 2), "gpt2.embedding_length": (4, 32),
          "gpt2.feed_forward_length": (4, 128), "gpt2.attention.head_count": (4, 4),
          "gpt2.attention.layer_norm_epsilon": (6, 1e-5), **_tokenizer_kv(40)}
    (tmp_path / "gg").mkdir()
    write_gguf(tmp_path / "gg" / "m.gguf", kv, tensors)
    return model, tmp_path / "gg"


def _same_state(a: torch.nn.Module, b: torch.nn.Module, atol: float = 0.0) -> None:
    sa, sb = a.state_dict(), b.state_dict()
    assert sa.keys() == sb.keys()
    for k in sa:
        assert sa[k].shape == sb[k].shape, k
        assert torch.allclose(sa[k].float(), sb[k].float(), atol=atol, rtol=0), k


# --- tiny files against safetensors -------------------------------------------------------------
@pytest.mark.parametrize("tied", [False, True])
@pytest.mark.parametrize("kv_heads", [2, 4])
def test_llama_gguf_equals_the_safetensors_weights(tmp_path, tied, kv_heads):
    _, gg = _llama(tmp_path, tied=tied, kv_heads=kv_heads)
    ours = AutoModelForCausalLM.from_pretrained(gg, gguf_file="m.gguf")
    ref = AutoModelForCausalLM.from_pretrained(tmp_path / "st")
    assert ours.config.tie_word_embeddings is tied
    assert ours.config.num_key_value_heads == kv_heads
    _same_state(ours, ref)  # Q/K rows back in HF order, names mapped, F32 exact
    x = torch.tensor([[3, 1, 4, 1, 5, 9, 2, 6]])
    with torch.no_grad():
        assert torch.equal(ours(x).logits, ref(x).logits)


def test_llama_gguf_f16_weights_are_the_rounded_values(tmp_path):
    _, gg = _llama(tmp_path, tied=False, kind="F16")
    ours = AutoModelForCausalLM.from_pretrained(gg, gguf_file="m.gguf")
    ref = AutoModelForCausalLM.from_pretrained(tmp_path / "st")
    for k, v in ref.state_dict().items():
        want = v if v.dim() == 1 else v.half().float()
        assert torch.equal(ours.state_dict()[k], want), k


@pytest.mark.parametrize("tied", [False, True])
def test_gpt2_gguf_equals_the_safetensors_weights(tmp_path, tied):
    _, gg = _gpt2(tmp_path, tied=tied)
    ours = AutoModelForCausalLM.from_pretrained(gg, gguf_file="m.gguf")
    ref = AutoModelForCausalLM.from_pretrained(tmp_path / "st")
    assert ours.config.n_positions == 24 and ours.config.n_inner is None
    _same_state(ours, ref)  # Conv1D weights transposed back
    x = torch.tensor([[3, 1, 4, 1, 5, 9, 2, 6]])
    with torch.no_grad():
        assert torch.equal(ours(x).logits, ref(x).logits)


def test_bare_model_bfloat16_and_the_tensor_stream(tmp_path):
    ref, gg = _llama(tmp_path, tied=False)
    base = AutoModel.from_pretrained(gg, gguf_file="m.gguf", torch_dtype=torch.bfloat16)
    assert type(base).__name__ == "LlamaModel" and base.dtype == torch.bfloat16
    assert torch.equal(base.embed_tokens.weight, ref.model.embed_tokens.weight.bfloat16())
    f = load_gguf(gg / "m.gguf")
    stream = dict(f.tensors(torch.float16))
    assert set(stream) == set(ref.state_dict())
    for k, t in stream.items():
        assert t.dtype == torch.float16 and torch.equal(t, ref.state_dict()[k].half()), k
    assert f.config_dict()["model_type"] == "llama" and f.metadata["llama.block_count"] == 2
    assert f.tensor_infos["blk.0.attn_q.weight"].shape == (32, 32)


def test_rope_scaling_metadata_becomes_the_config(tmp_path):
    _, gg = _llama(tmp_path, tied=True)
    path = gg / "m.gguf"
    f = load_gguf(path)
    kv = {k: v for k, v in _kv_of(f).items()}
    kv["llama.rope.scaling.type"] = (8, "linear")
    kv["llama.rope.scaling.factor"] = (6, 4.0)
    write_gguf(gg / "scaled.gguf", kv, _tensors_of(f))
    cfg = AutoConfig.from_pretrained(gg, gguf_file="scaled.gguf")
    assert cfg.rope_parameters["rope_type"] == "linear" and cfg.rope_parameters["factor"] == 4.0


def _kv_of(f) -> dict:
    """Re-encode a parsed file's metadata for write_gguf (the types our writer needs)."""
    out = {}
    for k, v in f.metadata.items():
        if isinstance(v, str):
            out[k] = (8, v)
        elif isinstance(v, float):
            out[k] = (6, v)
        elif isinstance(v, int):
            out[k] = (4, v)
        elif isinstance(v, list) and v and isinstance(v[0], str):
            out[k] = (9, (8, v))
        else:
            out[k] = (9, (5, v))
    return out


def _tensors_of(f) -> list:
    return [(i.name, i.ggml_type, i.shape, f.raw(i.name).numpy().tobytes())
            for i in f.tensor_infos.values()]


# --- tiny files against the reference -----------------------------------------------------------
TINY_GOLD = json.loads((GOLD / "tiny.json").read_text(encoding="utf-8"))
TINY_LOGITS = load_file(str(GOLD / "tiny.safetensors"))


@pytest.mark.parametrize("name", sorted(TINY_GOLD))
def test_tiny_config_matches_reference(name):
    gold = TINY_GOLD[name]
    cfg = AutoConfig.from_pretrained(TINY, gguf_file=name).to_dict()
    for key, value in gold["config"].items():
        assert cfg[key] == value, key
    if gold["rope_theta"] is not None:
        assert cfg["rope_parameters"]["rope_theta"] == gold["rope_theta"]


@pytest.mark.parametrize("name", sorted(TINY_GOLD))
def test_tiny_logits_match_reference(name):
    model = AutoModelForCausalLM.from_pretrained(TINY, gguf_file=name)
    for i in range(TINY_GOLD[name]["n_logits"]):
        with torch.no_grad():
            got = model(TINY_LOGITS[f"{name}.input_ids.{i}"]).logits[0]
        want = TINY_LOGITS[f"{name}.logits.{i}"]
        assert (got - want).abs().max() <= 1e-4


@pytest.mark.parametrize("name", sorted(TINY_GOLD))
def test_tiny_tokenizer_matches_reference(name):
    gold = TINY_GOLD[name]
    tok = AutoTokenizer.from_pretrained(TINY, gguf_file=name)
    for case in gold["cases"]:
        ids = tok(case["text"])["input_ids"]
        assert ids == case["ids"], case["text"]
        assert tok.decode(ids) == case["decode"]
        assert tok.decode(ids, skip_special_tokens=True) == case["decode_skip"]
    assert {k: getattr(tok, k) for k in gold["special"]} == gold["special"]
    assert sorted(tok.all_special_tokens) == sorted(gold["all_special_tokens"])
    assert tok.padding_side == gold["padding_side"]
    if "chat" in gold:
        prompt = tok.apply_chat_template([{"role": "user", "content": "What is the capital of France?"}],
                                         tokenize=False, add_generation_prompt=True)
        assert prompt == gold["chat"]["prompt"]
        assert tok(prompt)["input_ids"] == gold["chat"]["ids"]


@pytest.mark.parametrize("name", ["llama-bpe.gguf", "gpt2.gguf"])
def test_gguf_model_and_tokenizer_save_as_a_plain_folder(tmp_path, name):
    # dequantized: the very float32 numbers the folder holds (packed layers sum in another order;
    # their save is tests/test_gguf_packed.py's)
    model = AutoModelForCausalLM.from_pretrained(TINY, gguf_file=name, dequantize=True)
    tok = AutoTokenizer.from_pretrained(TINY, gguf_file=name)
    model.save_pretrained(tmp_path)
    tok.save_pretrained(tmp_path)
    again, tok2 = AutoModelForCausalLM.from_pretrained(tmp_path), AutoTokenizer.from_pretrained(tmp_path)
    text = "Hello <|im_end|> world"
    assert tok2(text)["input_ids"] == tok(text)["input_ids"]
    x = torch.tensor([tok(text)["input_ids"]])
    with torch.no_grad():
        assert torch.equal(again(x).logits, model(x).logits)


def test_every_quant_type_is_in_the_tiny_llama_file():
    f = load_gguf(TINY / "llama-bpe.gguf")
    kinds = {i.type_name for i in f.tensor_infos.values()}
    assert {"F32", "F16", "BF16", "Q8_0", "Q4_0", "Q4_1", "Q4_K", "Q5_K", "Q6_K"} <= kinds


# --- the real SmolLM2-135M-Instruct (Q4_1) ------------------------------------------------------
SMOL = json.loads((GOLD / "smollm2.json").read_text(encoding="utf-8")) if (
    GOLD / "smollm2.json").is_file() else None


@pytest.fixture(scope="module")
def smollm2():
    from pretrained.io.fetch import fetch

    path = Path(fetch("SmolLM2-135M-Instruct-Q4_1-gguf", quiet=True))
    tok = AutoTokenizer.from_pretrained(path.parent, gguf_file=path.name)
    model = AutoModelForCausalLM.from_pretrained(path.parent, gguf_file=path.name)
    return tok, model


@pytest.mark.slow
def test_smollm2_tokenizer_matches_reference(smollm2):
    tok, _ = smollm2
    for case in SMOL["strings"]:
        assert tok(case["text"])["input_ids"] == case["ids"], case["text"]
    assert {k: getattr(tok, k) for k in SMOL["special"]} == SMOL["special"]
    prompt = tok.apply_chat_template(SMOL["chat"]["messages"], tokenize=False,
                                     add_generation_prompt=True)
    assert prompt == SMOL["chat"]["prompt"]
    assert tok(prompt)["input_ids"] == SMOL["chat"]["ids"]


@pytest.mark.slow
def test_smollm2_logits_match_reference(smollm2):
    _, model = smollm2
    gold = load_file(str(GOLD / "smollm2.safetensors"))
    with torch.no_grad():
        logits = model(torch.tensor([SMOL["chat"]["ids"]])).logits[0]
    assert (logits[-1] - gold["logits_last"]).abs().max() <= 1e-4
    got = logits[SMOL["logits_positions"], :64]
    assert (got - gold["logits_first64"]).abs().max() <= 1e-4


@pytest.mark.slow
def test_smollm2_answers_the_capital_of_france(smollm2):
    tok, model = smollm2
    ids = torch.tensor([SMOL["chat"]["ids"]])
    new = []
    with torch.no_grad():  # greedy, full forwards: independent of generate()
        for _ in range(len(SMOL["greedy"]["new_ids"])):
            nxt = int(model(ids).logits[0, -1].argmax())
            new.append(nxt)
            ids = torch.cat([ids, torch.tensor([[nxt]])], dim=1)
            if nxt == model.config.eos_token_id:
                break
    assert new == SMOL["greedy"]["new_ids"]
    assert tok.decode(new, skip_special_tokens=True) == "The capital of France is Paris."


@pytest.mark.slow
def test_smollm2_generate_gives_the_reference_continuation(smollm2):
    tok, model = smollm2
    ids = torch.tensor([SMOL["chat"]["ids"]])
    out = model.generate(ids, max_new_tokens=20, do_sample=False)
    assert out[0, ids.shape[1]:].tolist() == SMOL["greedy"]["new_ids"]
    assert tok.decode(out[0, ids.shape[1]:], skip_special_tokens=True) == SMOL["greedy"]["text"]


@pytest.mark.parametrize("name", ["llama-bpe.gguf", "llama-spm.gguf", "gpt2.gguf"])
def test_gguf_tokenizer_takes_the_models_context_length(name):
    """truncation=True cuts at the model's context length from the file's metadata (it used to
    be the reference's 'very large' default, so a long prompt went through uncut)."""
    from pretrained import AutoTokenizer
    from pretrained.gguf import load_gguf

    folder = Path(__file__).parent / "fixtures" / "models" / "gguf-tiny"
    md = load_gguf(folder / name).metadata
    context = md[f"{md['general.architecture']}.context_length"]
    tok = AutoTokenizer.from_pretrained(folder, gguf_file=name)
    assert tok.model_max_length == context
    assert len(tok("word " * (4 * context), truncation=True)["input_ids"]) == context
