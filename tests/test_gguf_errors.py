"""GGUF checkpoints: bad files and bad metadata give named errors that say the fix.

The files are the tiny GGUF fixtures (tests/fixtures/models/gguf-tiny, written by
scripts/golden_gguf.py) cut or patched here, or small files from the independent minimal writer
of tests/test_gguf.py.
"""

from __future__ import annotations

import struct

import pytest

from pretrained import AutoConfig, AutoModelForCausalLM, AutoTokenizer
from pretrained.errors import (CheckpointCorruptError, CheckpointError, ConfigError,
                               TokenizerLoadError, UnknownModelTypeError)
from pretrained.gguf import load_gguf
from tests.test_gguf import TINY, TYPE_IDS, _kv_of, _llama, _string, _tensors_of, _tokenizer_kv, write_gguf


# --- errors -------------------------------------------------------------------------------------
def _tiny_bytes() -> bytes:
    return (TINY / "gpt2.gguf").read_bytes()


def test_bad_magic(tmp_path):
    (tmp_path / "x.gguf").write_bytes(b"GGML" + _tiny_bytes()[4:])
    with pytest.raises(CheckpointCorruptError, match=r"not a GGUF file.*b'GGML'"):
        AutoModelForCausalLM.from_pretrained(tmp_path, gguf_file="x.gguf")


@pytest.mark.parametrize("cut", [0, 3, 10, 30, 2000, -100])
def test_truncated_file(tmp_path, cut):
    data = _tiny_bytes()
    (tmp_path / "x.gguf").write_bytes(data[:cut] if cut >= 0 else data[:cut])
    with pytest.raises(CheckpointCorruptError, match="truncated"):
        AutoConfig.from_pretrained(tmp_path, gguf_file="x.gguf")


@pytest.mark.parametrize("version, hint", [(1, "versions 2, 3"), (4, "versions 2, 3"),
                                           (0x03000000, "big-endian")])
def test_unsupported_version(tmp_path, version, hint):
    data = _tiny_bytes()
    (tmp_path / "x.gguf").write_bytes(data[:4] + struct.pack("<I", version) + data[8:])
    with pytest.raises(CheckpointError, match=f"version {version} is not supported.*{hint}"):
        AutoTokenizer.from_pretrained(tmp_path, gguf_file="x.gguf")


def test_unsupported_quant_type_is_named_before_loading(tmp_path):
    _, gg = _llama(tmp_path, tied=True)
    f = load_gguf(gg / "m.gguf")
    tensors = _tensors_of(f)
    # blk.0.ffn_up as Q2_K (84 bytes per 256 values): a type we do not dequantize
    tensors = [(n, 10, (64, 256), b"\0" * 64 * 84) if n == "blk.0.ffn_up.weight" else (n, t, s, d)
               for n, t, s, d in tensors]
    write_gguf(gg / "q2k.gguf", _kv_of(f), tensors)
    with pytest.raises(CheckpointError, match=r"'blk\.0\.ffn_up\.weight' is stored as Q2_K.*"
                                              r"supported types: F32, F16, BF16, .*Q4_1.*Q6_K"):
        AutoModelForCausalLM.from_pretrained(gg, gguf_file="q2k.gguf")


def test_unsupported_architecture(tmp_path):
    write_gguf(tmp_path / "x.gguf", {"general.architecture": (8, "phi3"), **_tokenizer_kv(8)}, [])
    with pytest.raises(UnknownModelTypeError, match=r"'phi3' is not supported.*llama, .*gpt2"):
        AutoModelForCausalLM.from_pretrained(tmp_path, gguf_file="x.gguf")
    assert issubclass(UnknownModelTypeError, ConfigError)


def test_tokenizer_model_we_cannot_build(tmp_path):
    kv = {"general.architecture": (8, "llama"), **_tokenizer_kv(8)}
    kv["tokenizer.ggml.model"] = (8, "bert")
    write_gguf(tmp_path / "x.gguf", kv, [])
    with pytest.raises(TokenizerLoadError, match=r"tokenizer model 'bert' is not supported.*'gpt2'.*'llama'"):
        AutoTokenizer.from_pretrained(tmp_path, gguf_file="x.gguf")
    del kv["tokenizer.ggml.tokens"]
    write_gguf(tmp_path / "y.gguf", kv, [])
    with pytest.raises(TokenizerLoadError, match="has no tokenizer"):
        AutoTokenizer.from_pretrained(tmp_path, gguf_file="y.gguf")


def test_tokenizer_overrides_win_and_absolute_paths_work():
    tok = AutoTokenizer.from_pretrained(TINY, gguf_file=str((TINY / "llama-spm.gguf").resolve()),
                                        padding_side="left", pad_token="</s>")
    assert tok.padding_side == "left" and tok.pad_token == "</s>"
    batch = tok(["the", "the theme there"], padding=True)["input_ids"]
    row = batch[0]
    k = row.index(tok.bos_token_id)  # left padding, then BOS (add_bos_token defaults on)
    assert k > 0 and set(row[:k]) == {tok.pad_token_id} and len(row) == len(batch[1])


def test_gguf_tokenizers_loaded_twice_are_independent():
    """The GGUF tokenizer adopts the backend built for it (no JSON copy, issue 14): each load
    still has its own, so adding a token to one leaves the other as it was; a deep copy too."""
    import copy

    a = AutoTokenizer.from_pretrained(TINY, gguf_file="llama-bpe.gguf")
    b = AutoTokenizer.from_pretrained(TINY, gguf_file="llama-bpe.gguf")
    c = copy.deepcopy(a)
    size = len(b)
    a.add_tokens(["zzqqxx"])
    assert len(a) == size + 1 and len(b) == size and len(c) == size
    assert b("zzqqxx")["input_ids"] == c("zzqqxx")["input_ids"] != a("zzqqxx")["input_ids"]


def test_missing_gguf_file_lists_what_is_there():
    with pytest.raises(CheckpointError, match=r"no file 'nope\.gguf'.*GGUF files there: gpt2\.gguf"):
        AutoModelForCausalLM.from_pretrained(TINY, gguf_file="nope.gguf")


def test_quantized_rows_that_do_not_fill_whole_blocks(tmp_path):
    kv = {"general.architecture": (8, "llama"), **_tokenizer_kv(8)}
    write_gguf(tmp_path / "x.gguf", kv, [("token_embd.weight", TYPE_IDS["Q8_0"], (2, 40), b"\0" * 68)])
    with pytest.raises(CheckpointCorruptError, match=r"rows of 40 values, not a multiple of the "
                                                     r"32-value blocks of its type Q8_0"):
        load_gguf(tmp_path / "x.gguf")


def test_tensor_past_the_end_of_the_file(tmp_path):
    data = _tiny_bytes()
    (tmp_path / "x.gguf").write_bytes(data[:-4096])
    with pytest.raises(CheckpointCorruptError, match=r"truncated GGUF file: tensor '.*' ends at"):
        load_gguf(tmp_path / "x.gguf")


def test_arrays_nested_thousands_deep_are_a_named_error(tmp_path):
    """An array of arrays of ... 5000 deep (RecursionError before) is refused by name."""
    from pretrained.errors import CheckpointCorruptError

    head = struct.pack("<IQ", 9, 1) * 5000 + struct.pack("<IQ", 4, 0)   # 5000 one-item array levels
    out = bytearray(b"GGUF" + struct.pack("<IQQ", 3, 0, 1))
    out += _string("deep") + struct.pack("<I", 9) + head
    path = tmp_path / "deep.gguf"
    path.write_bytes(bytes(out) + b"\0" * 64)
    with pytest.raises(CheckpointCorruptError, match="nests arrays more than"):
        load_gguf(path)


def test_a_merge_naming_a_token_the_vocabulary_lacks_is_a_named_error(tmp_path):
    kv = {"general.architecture": (8, "llama"), **_tokenizer_kv(8)}
    kv["tokenizer.ggml.merges"] = (9, (8, ["! zz"]))   # 'zz' is no token of the vocabulary
    write_gguf(tmp_path / "m.gguf", kv, [])
    with pytest.raises(TokenizerLoadError, match="merges do not fit its vocabulary"):
        AutoTokenizer.from_pretrained(tmp_path, gguf_file="m.gguf")


def test_a_gguf_claiming_a_million_blocks_is_refused_before_building(tmp_path):
    """block_count 1e6 in the metadata: a named error from the numbers, not gigabytes of modules."""
    from pretrained.errors import ConfigError

    kv = {"general.architecture": (8, "llama"), "llama.context_length": (4, 64),
          "llama.block_count": (4, 1_000_000), "llama.feed_forward_length": (4, 48),
          "llama.embedding_length": (4, 32), "llama.attention.head_count": (4, 4),
          "llama.attention.head_count_kv": (4, 4), "llama.rope.freq_base": (6, 10000.0),
          "llama.attention.layer_norm_rms_epsilon": (6, 1e-5), **_tokenizer_kv(40)}
    write_gguf(tmp_path / "m.gguf", kv, [])
    with pytest.raises(ConfigError, match="num_hidden_layers=1000000"):
        AutoModelForCausalLM.from_pretrained(tmp_path, gguf_file="m.gguf")
