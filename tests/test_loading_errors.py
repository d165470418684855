"""Bad checkpoints and configs: each gives one clear error naming the file or key, never a deep
stack trace and never a half-loaded model."""

from __future__ import annotations

import json
import re
import os
import shutil
import struct
from pathlib import Path

import pytest
import torch

import pretrained
from pretrained import (
    AutoConfig,
    AutoModel,
    AutoModelForCausalLM,
    CheckpointCorruptError,
    CheckpointError,
    ConfigError,
    InvalidInputError,
    ModelNotFoundError,
    RemoteCodeError,
    ShapeMismatchError,
    UnknownModelTypeError,
    UnsafeCheckpointError,
)

FIX = Path(__file__).parent / "fixtures" / "models"


@pytest.fixture
def bert(tmp_path) -> Path:
    dst = tmp_path / "bert"
    shutil.copytree(FIX / "bert-tiny", dst)
    return dst


def _config(folder: Path) -> dict:
    return json.loads((folder / "config.json").read_text())


def _write_config(folder: Path, data) -> None:
    (folder / "config.json").write_text(json.dumps(data))


# --- weights files ----------------------------------------------------------------------------
@pytest.mark.parametrize("keep", ["half", 8, 7, 0])
def test_truncated_safetensors(bert, keep):
    path = bert / "model.safetensors"
    data = path.read_bytes()
    n = len(data) // 2 if keep == "half" else keep
    path.write_bytes(data[:n])
    with pytest.raises(CheckpointCorruptError, match="model.safetensors") as e:
        AutoModel.from_pretrained(bert)
    assert "truncated or corrupt" in str(e.value)
    assert isinstance(e.value, OSError)


@pytest.mark.parametrize("header", [b"not json at all!", b"[1, 2, 3]", b'{"w": {"dtype": "Q99", '
                                    b'"shape": [1], "data_offsets": [0, 4]}}'])
def test_malformed_safetensors_header(bert, header):
    (bert / "model.safetensors").write_bytes(struct.pack("<Q", len(header)) + header + b"\0" * 4)
    with pytest.raises(CheckpointCorruptError, match="model.safetensors"):
        AutoModel.from_pretrained(bert)


def test_huge_header_length(bert):
    (bert / "model.safetensors").write_bytes(struct.pack("<Q", 2**62) + b"{}")
    with pytest.raises(CheckpointCorruptError):
        AutoModel.from_pretrained(bert)


def test_missing_weights_file(bert):
    (bert / "model.safetensors").unlink()
    with pytest.raises(CheckpointError, match="no weights file: looked for model.safetensors"):
        AutoModel.from_pretrained(bert)


def test_shape_mismatch_names_key_and_shapes(bert):
    cfg = _config(bert)
    cfg["intermediate_size"] = 40  # the checkpoint has 37
    _write_config(bert, cfg)
    with pytest.raises(ShapeMismatchError) as e:
        AutoModel.from_pretrained(bert)
    msg = str(e.value)
    assert "intermediate.dense.weight" in msg and "[37, 32]" in msg and "[40, 32]" in msg
    assert "ignore_mismatched_sizes" in msg


def test_ignore_mismatched_sizes_reinitialises_and_reports(bert):
    cfg = _config(bert)
    cfg["intermediate_size"] = 40
    _write_config(bert, cfg)
    model, info = AutoModel.from_pretrained(bert, ignore_mismatched_sizes=True,
                                            output_loading_info=True)
    assert model.encoder.layer[0].intermediate.dense.weight.shape == (40, 32)
    assert any(k.endswith("intermediate.dense.weight") for k, *_ in info["mismatched_keys"])


def test_strict_raises_on_missing_keys(tmp_path):
    with pytest.raises(CheckpointError, match="strict=True"):
        pretrained.AutoModelForSequenceClassification.from_pretrained(
            FIX / "bert-tiny", strict=True)


def test_pickle_with_code_is_refused_and_never_runs(tmp_path):
    marker = tmp_path / "pwned"

    class Evil:
        def __reduce__(self):
            return (os.system, (f"touch {marker}",))

    folder = tmp_path / "evil"
    shutil.copytree(FIX / "gpt2-tiny-base", folder)
    torch.save({"wte.weight": Evil()}, folder / "pytorch_model.bin")
    with pytest.raises(UnsafeCheckpointError, match="pytorch_model.bin"):
        AutoModel.from_pretrained(folder)
    assert not marker.exists()


def test_pickle_with_non_tensor_payload_is_refused(tmp_path):
    folder = tmp_path / "m"
    shutil.copytree(FIX / "gpt2-tiny-base", folder)
    torch.save(["just", "a", "list"], folder / "pytorch_model.bin")
    with pytest.raises(UnsafeCheckpointError, match="not a model state dict"):
        AutoModel.from_pretrained(folder)


def test_truncated_pickle(tmp_path):
    folder = tmp_path / "m"
    shutil.copytree(FIX / "gpt2-tiny-base", folder)
    p = folder / "pytorch_model.bin"
    p.write_bytes(p.read_bytes()[:1000])
    with pytest.raises(CheckpointCorruptError, match="pytorch_model.bin"):
        AutoModel.from_pretrained(folder)


def test_use_safetensors_excludes_pickles(tmp_path):
    with pytest.raises(CheckpointError, match="use_safetensors=True"):
        AutoModel.from_pretrained(FIX / "gpt2-tiny-base", use_safetensors=True)


def _sharded(tmp_path) -> Path:
    dst = tmp_path / "sharded"
    shutil.copytree(FIX / "bert-small", dst)
    return dst


def test_shard_index_names_missing_shard(tmp_path):
    folder = _sharded(tmp_path)
    (folder / "model-00002-of-00005.safetensors").unlink()
    with pytest.raises(CheckpointCorruptError, match="model-00002-of-00005.safetensors"):
        AutoModel.from_pretrained(folder)


@pytest.mark.parametrize("shard", ["../../etc/passwd", "/etc/passwd"])
def test_shard_path_traversal_refused(tmp_path, shard):
    folder = _sharded(tmp_path)
    index = json.loads((folder / "model.safetensors.index.json").read_text())
    first = next(iter(index["weight_map"]))
    index["weight_map"][first] = shard
    (folder / "model.safetensors.index.json").write_text(json.dumps(index))
    with pytest.raises(CheckpointCorruptError, match="refusing shard name"):
        AutoModel.from_pretrained(folder)


def test_shard_index_key_not_in_its_shard(tmp_path):
    folder = _sharded(tmp_path)
    index = json.loads((folder / "model.safetensors.index.json").read_text())
    key = next(k for k, v in index["weight_map"].items() if v != "model-00001-of-00005.safetensors")
    index["weight_map"][key] = "model-00001-of-00005.safetensors"
    (folder / "model.safetensors.index.json").write_text(json.dumps(index))
    with pytest.raises(CheckpointCorruptError, match=key):
        AutoModel.from_pretrained(folder)


def test_legacy_gamma_beta_names_load(tmp_path):
    from safetensors.torch import load_file, save_file

    folder = tmp_path / "legacy"
    shutil.copytree(FIX / "bert-tiny", folder)
    sd = load_file(str(folder / "model.safetensors"))
    renamed = {k.replace("LayerNorm.weight", "LayerNorm.gamma").replace("LayerNorm.bias", "LayerNorm.beta"): v
               for k, v in sd.items()}
    assert renamed != sd
    save_file(renamed, str(folder / "model.safetensors"))
    model, info = AutoModel.from_pretrained(folder, output_loading_info=True)
    assert info["missing_keys"] == [] and info["unexpected_keys"] == []
    assert torch.equal(model.embeddings.LayerNorm.weight, sd["embeddings.LayerNorm.weight"])


def test_save_failure_keeps_previous_save(tmp_path, monkeypatch):
    model = AutoModel.from_pretrained(FIX / "bert-tiny")
    model.save_pretrained(tmp_path)
    before = {p.name: p.read_bytes() for p in tmp_path.iterdir() if p.is_file()}
    import safetensors.torch

    def boom(*a, **k):
        raise OSError("disk full")

    monkeypatch.setattr(safetensors.torch, "save_file", boom)
    with pytest.raises(OSError, match="disk full"):
        model.save_pretrained(tmp_path)
    after = {p.name: p.read_bytes() for p in tmp_path.iterdir()}
    assert after == before  # nothing replaced, no temp folder left behind


# --- configs ----------------------------------------------------------------------------------
@pytest.mark.parametrize("text,needle", [("{not json", "not valid JSON (line 1:2"),
                                         ("", "empty"), ("[1, 2]", "expected a JSON object")])
def test_bad_config_json(bert, text, needle):
    (bert / "config.json").write_text(text)
    with pytest.raises(ConfigError, match="config.json") as e:
        AutoModel.from_pretrained(bert)
    assert needle in str(e.value)


def test_unknown_model_type_lists_supported(bert):
    cfg = _config(bert)
    cfg["model_type"] = "flux-capacitor"
    _write_config(bert, cfg)
    with pytest.raises(UnknownModelTypeError) as e:
        AutoModel.from_pretrained(bert)
    assert "'flux-capacitor'" in str(e.value) and "bert" in str(e.value) and "gpt2" in str(e.value)


def test_missing_model_type_falls_back_to_architectures(bert):
    cfg = _config(bert)
    del cfg["model_type"]
    _write_config(bert, cfg)
    assert type(AutoConfig.from_pretrained(bert)).__name__ == "BertConfig"
    cfg.pop("architectures")
    _write_config(bert, cfg)
    with pytest.raises(UnknownModelTypeError, match="no 'model_type'"):
        AutoConfig.from_pretrained(bert)


def test_auto_map_needs_remote_code_and_is_refused(bert, tmp_path):
    marker = tmp_path / "ran"
    (bert / "modeling_evil.py").write_text(f"open({str(marker)!r}, 'w').write('x')\n")
    cfg = _config(bert)
    cfg["model_type"] = "evil"
    cfg["auto_map"] = {"AutoModel": "modeling_evil.EvilModel"}
    _write_config(bert, cfg)
    with pytest.raises(RemoteCodeError, match="never executes remote code"):
        AutoModel.from_pretrained(bert)
    with pytest.raises(RemoteCodeError):
        AutoModel.from_pretrained(bert, trust_remote_code=True)
    assert not marker.exists()


@pytest.mark.parametrize("key,value", [("hidden_size", "big"), ("hidden_size", None),
                                       ("hidden_size", 64.5), ("num_hidden_layers", True)])
def test_wrong_field_types(bert, key, value):
    cfg = _config(bert)
    cfg[key] = value
    _write_config(bert, cfg)
    with pytest.raises(ConfigError, match=f"BertConfig.{key}: expected int"):
        AutoConfig.from_pretrained(bert)


@pytest.mark.parametrize("changes,needle", [
    ({"num_hidden_layers": -2}, "num_hidden_layers must be > 0"),
    ({"hidden_size": 30}, "not a multiple of num_attention_heads"),
    ({"vocab_size": 0}, "vocab_size must be > 0"),
])
def test_impossible_sizes(bert, changes, needle):
    cfg = _config(bert)
    cfg.update(changes)
    _write_config(bert, cfg)
    with pytest.raises(ConfigError, match=needle):
        AutoModel.from_pretrained(bert)


def test_absurd_sizes_refused_before_allocating(bert):
    cfg = _config(bert)
    cfg["vocab_size"] = 10**10
    _write_config(bert, cfg)
    with pytest.raises(ConfigError, match="GiB of memory is available"):
        AutoModel.from_pretrained(bert)


def test_unknown_config_keys_round_trip(bert, tmp_path):
    cfg = _config(bert)
    cfg["my_custom_field"] = {"a": [1, 2]}
    _write_config(bert, cfg)
    model = AutoModel.from_pretrained(bert)
    assert model.config.my_custom_field == {"a": [1, 2]}
    model.save_pretrained(tmp_path / "out")
    assert _config(tmp_path / "out")["my_custom_field"] == {"a": [1, 2]}


def test_not_a_model_folder(tmp_path):
    with pytest.raises(ModelNotFoundError, match="config.json"):
        AutoModel.from_pretrained(tmp_path)


# --- inputs -----------------------------------------------------------------------------------
def test_bad_inputs_to_forward():
    model = AutoModelForCausalLM.from_pretrained(FIX / "gpt2-tiny")
    with pytest.raises(InvalidInputError, match="empty"):
        model(torch.zeros(1, 0, dtype=torch.long))
    with pytest.raises(InvalidInputError, match="token id 128"):
        model(torch.tensor([[1, 128]]))
    with pytest.raises(InvalidInputError, match="token id -1"):
        model(torch.tensor([[1, -1]]))
    with pytest.raises(InvalidInputError, match="attention_mask has shape"):
        model(torch.tensor([[1, 2]]), attention_mask=torch.ones(1, 3))
    with pytest.raises(InvalidInputError, match="at most|context is 64"):
        model(torch.ones(1, 65, dtype=torch.long))


@pytest.mark.parametrize("device_map,needle", [("cuda:7", "CUDA|CUDA device"), ("toaster", "not a device"),
                                               ({"layer.99": "cpu"}, "not a module")])
def test_bad_device_map(device_map, needle):
    with pytest.raises(InvalidInputError, match=needle):
        AutoModel.from_pretrained(FIX / "bert-tiny", device_map=device_map)


def test_bad_dtype():
    with pytest.raises(InvalidInputError, match="torch_dtype='int8'"):
        AutoModel.from_pretrained(FIX / "bert-tiny", torch_dtype="int8")


def test_wrong_head_for_model_type():
    with pytest.raises(InvalidInputError, match="no causal-lm head.*AutoModelForMaskedLM"):
        AutoModelForCausalLM.from_pretrained(FIX / "bert-tiny")


@pytest.mark.parametrize("kwargs,error,says", [
    (dict(load_in_8bit=True, load_in_4bit=True), "InvalidInputError", "choose one"),   # tests/test_quantization.py
    (dict(quantization_config={"load_in_4bit": True}), "UnsupportedOptionError", "quantization_config"),
    (dict(max_memory={"cpu": "1GB"}), "InvalidInputError", "device_map"),   # tests/test_device_map.py
    (dict(attn_implementation="flash_attention_2"), "UnsupportedOptionError", "sdpa"),
    (dict(hiden_size=64), "InvalidInputError", "did you mean 'hidden_size'"),
    (dict(torch_dtyp="auto"), "InvalidInputError", "did you mean 'torch_dtype'"),
    (dict(foo_bar=1), "InvalidInputError", "unknown argument 'foo_bar'"),
])
@pytest.mark.parametrize("through", ["auto", "class"])
def test_options_that_cannot_be_honoured_are_refused_not_stored(kwargs, error, says, through):
    """The reference stores unknown names in the config and ignores options it cannot use here;
    this library refuses them with what to do instead."""
    import pretrained
    from pretrained import errors
    from pretrained.models.llama import LlamaForCausalLM

    path = Path(__file__).parent / "fixtures" / "models" / "llama-gqa"
    load = pretrained.AutoModelForCausalLM.from_pretrained if through == "auto" \
        else LlamaForCausalLM.from_pretrained
    with pytest.raises(getattr(errors, error), match=re.escape(says)):
        load(path, **kwargs)


def test_options_the_library_always_honours_are_accepted():
    import pretrained

    path = Path(__file__).parent / "fixtures" / "models" / "llama-gqa"
    model = pretrained.AutoModelForCausalLM.from_pretrained(
        path, low_cpu_mem_usage=True, attn_implementation="sdpa", pad_token_id=0)
    assert model.config.pad_token_id == 0 and not hasattr(model.config, "low_cpu_mem_usage")


def test_a_typo_in_config_json_is_named_when_the_sizes_do_not_match(tmp_path):
    import pretrained
    from pretrained.errors import ShapeMismatchError

    src = Path(__file__).parent / "fixtures" / "models" / "bert-tiny"
    shutil.copytree(src, tmp_path / "m")
    cfg = json.loads((tmp_path / "m" / "config.json").read_text())
    cfg["hiden_size"] = cfg.pop("hidden_size")
    (tmp_path / "m" / "config.json").write_text(json.dumps(cfg))
    with pytest.raises(ShapeMismatchError, match="'hiden_size'.*did you mean 'hidden_size'"):
        pretrained.AutoModel.from_pretrained(tmp_path / "m")


@pytest.mark.parametrize("change,says", [
    ({"num_hidden_layers": 200000}, "num_hidden_layers=200000"),
    ({"num_labels": 10 ** 9, "id2label": None}, "num_labels=1000000000"),
    ({"hidden_size": 100000, "num_attention_heads": 1}, "GiB of memory is available"),
])
def test_untrusted_sizes_are_refused_before_anything_is_built(tmp_path, change, says):
    """From the config's numbers alone, before any module is built: building 200000 layers or a
    billion label names first would take gigabytes (and minutes)."""
    import pretrained
    from pretrained.errors import ConfigError

    src = Path(__file__).parent / "fixtures" / "models" / "bert-tiny"
    shutil.copytree(src, tmp_path / "m")
    cfg = json.loads((tmp_path / "m" / "config.json").read_text())
    cfg.update({k: v for k, v in change.items() if v is not None})
    for k in [k for k, v in change.items() if v is None]:
        cfg.pop(k, None)
    (tmp_path / "m" / "config.json").write_text(json.dumps(cfg))
    with pytest.raises(ConfigError, match=re.escape(says)):
        pretrained.AutoModelForSequenceClassification.from_pretrained(tmp_path / "m")


@pytest.mark.parametrize("name,auto", [("bert-tiny", "AutoModel"), ("llama-gqa", "AutoModelForCausalLM")])
def test_an_empty_batch_is_a_named_error(name, auto):
    import pretrained
    from pretrained.errors import InvalidInputError

    model = getattr(pretrained, auto).from_pretrained(Path(__file__).parent / "fixtures" / "models" / name)
    with pytest.raises(InvalidInputError, match="the input is empty"):
        model(torch.zeros(0, 4, dtype=torch.long))


def test_integer_values_for_float_weights_are_a_named_error(tmp_path):
    import pretrained
    from safetensors.torch import load_file, save_file

    from pretrained.errors import CheckpointCorruptError

    src = Path(__file__).parent / "fixtures" / "models" / "bert-tiny"
    shutil.copytree(src, tmp_path / "m")
    weights = load_file(str(tmp_path / "m" / "model.safetensors"))
    key = next(k for k in weights if k.endswith("query.weight"))
    weights[key] = weights[key].to(torch.int64)
    save_file(weights, str(tmp_path / "m" / "model.safetensors"))
    with pytest.raises(CheckpointCorruptError, match=re.escape(key) + ".*int64"):
        pretrained.AutoModel.from_pretrained(tmp_path / "m")


def test_json_nested_thousands_deep_is_a_config_error(tmp_path):
    from pretrained.config import load_json
    from pretrained.errors import ConfigError

    path = tmp_path / "config.json"
    path.write_text("[" * 100_000 + "]" * 100_000)
    with pytest.raises(ConfigError, match="nested too deeply"):
        load_json(path)


def _disk_full(*args, **kwargs):
    import safetensors

    raise safetensors.SafetensorError("Error while serializing: IoError(No space left on device)")


def test_a_full_disk_while_saving_is_named_and_leaves_the_earlier_save(tmp_path, monkeypatch):
    import safetensors.torch

    import pretrained
    from pretrained.errors import CheckpointError

    model = pretrained.AutoModel.from_pretrained(Path(__file__).parent / "fixtures" / "models" / "bert-tiny")
    model.save_pretrained(tmp_path / "out")
    before = (tmp_path / "out" / "model.safetensors").read_bytes()
    monkeypatch.setattr(safetensors.torch, "save_file", _disk_full)
    with pytest.raises(CheckpointError, match="No space left on device.*earlier save there is intact"):
        model.save_pretrained(tmp_path / "out")
    assert (tmp_path / "out" / "model.safetensors").read_bytes() == before
    assert not [p for p in (tmp_path / "out").iterdir() if p.name.startswith(".tmp-save")]


def test_a_full_disk_while_checkpointing_names_the_last_complete_checkpoint(tmp_path):
    from pretrained.errors import CheckpointError
    from pretrained.training.checkpoint import write_atomically

    write_atomically(tmp_path, 3, lambda folder: (folder / "model.safetensors").write_bytes(b"ok"))

    def full(folder):
        _disk_full()

    with pytest.raises(CheckpointError, match="checkpoint-6 failed.*checkpoint-3 is the last complete"):
        write_atomically(tmp_path, 6, full)
    assert sorted(p.name for p in tmp_path.iterdir()) == ["checkpoint-3"]
