"""A CTranslate2 Whisper folder -> an HF-layout Whisper folder (what ``openai/whisper-*`` holds).

Why: the real Whisper checkpoints reachable here ship as CTranslate2 folders (``model.bin`` in
float16, ``config.json`` with the suppress/alignment lists, ``tokenizer.json``,
``vocabulary.txt``). Converting once, at fetch time, gives a folder that both the reference and
our own Whisper load with ``from_pretrained`` and that round-trips through ``save_pretrained``.

What changes on the way (and why each is safe):

- names: ``encoder/layer_3/self_attention/linear_0/weight`` -> ``model.encoder.layers.3.self_attn.
  {q,k,v}_proj.weight`` ... (:func:`whisper_state_dict` lists every rule);
- the fused self-attention q/k/v rows are split in that order; CTranslate2 filled the bias slot of
  the bias-free k projection with zeros, so that slot is checked to be all zeros and dropped
  (:class:`NonZeroKeyBiasError` otherwise: dropping it would change the model);
- the fused cross-attention k/v rows are split the same way;
- ``decoder/projection/weight`` is an alias of the token embeddings: the output projection stays
  tied (``proj_out`` is not stored, as the reference saves it);
- float16 values are upcast exactly to float32 (or cast to the dtype asked);
- every variable of the file is accounted for: one that no rule maps is an error, never dropped.

The config, generation config, tokenizer files and preprocessor config are derived from tensor
shapes, the CTranslate2 config and the tokenizer's special tokens (ids are looked up, not assumed),
checked against ``vocabulary.txt``.
"""

from __future__ import annotations

import json
import os
import re
import stat
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import torch

from ..errors import ConversionError, NonZeroKeyBiasError
from .ctranslate2 import CT2Model, read_model_bin

__all__ = [
    "WhisperDims", "whisper_dims", "whisper_state_dict", "whisper_special_tokens",
    "whisper_configs", "whisper_tokenizer_files", "preprocessor_config", "convert_whisper_ct2",
]  # fmt: skip

SAMPLING_RATE, HOP_LENGTH, CHUNK_LENGTH, N_FFT = 16000, 160, 30, 400   # Whisper's audio constants
TIME_PRECISION = 0.02                                                 # seconds per timestamp token
_FLOATS = ("float16", "float32", "bfloat16")
_OUT_DTYPES = {"float32": torch.float32, "float16": torch.float16, "bfloat16": torch.bfloat16}
_CONTROL = ("<|endoftext|>", "<|startoftranscript|>", "<|translate|>", "<|transcribe|>",
            "<|startoflm|>", "<|startofprev|>", "<|nocaptions|>", "<|notimestamps|>")  # fmt: skip
# Flags of the spec and what a Whisper must hold there (anything else is another model).
_EXPECTED_FLAGS = {
    "decoder/activation": 3,                 # CTranslate2's Activation.GELU (erf): "gelu"
    "decoder/alibi": 0,
    "decoder/pre_norm": 1,
    "decoder/scale_embeddings": 0,           # Whisper's scale_embedding is false
    "decoder/start_from_zero_embedding": 0,
}
_INFO_FLAGS = ("decoder/alignment_heads", "decoder/alignment_layer", "decoder/num_heads",
               "encoder/num_heads")  # fmt: skip


@dataclass(frozen=True)
class WhisperDims:
    """The sizes of a Whisper, read from tensor shapes and the spec's head counts."""

    d_model: int
    vocab_size: int
    num_mel_bins: int
    encoder_layers: int
    decoder_layers: int
    encoder_attention_heads: int
    decoder_attention_heads: int
    encoder_ffn_dim: int
    decoder_ffn_dim: int
    max_source_positions: int
    max_target_positions: int


def _shape(model: CT2Model, name: str) -> tuple[int, ...]:
    if name not in model:
        raise ConversionError(f"{model.path}: no variable {name!r}; is this a Whisper model.bin?")
    return model.resolve(name).shape


def _count_layers(model: CT2Model, stack: str) -> int:
    found = {int(m.group(1)) for n in model.variables if (m := re.match(rf"{stack}/layer_(\d+)/", n))}
    if not found or found != set(range(len(found))):
        raise ConversionError(f"{model.path}: {stack} layers {sorted(found)} are not 0..N-1")
    return len(found)


def whisper_dims(model: CT2Model) -> WhisperDims:
    """Sizes from shapes; refuses another spec, other flags, or shapes that do not agree."""
    if model.spec != "WhisperSpec":
        raise ConversionError(f"{model.path} holds a {model.spec!r}, not a 'WhisperSpec'")
    for name, want in _EXPECTED_FLAGS.items():
        if name in model and model.scalar(name) != want:
            raise ConversionError(
                f"{model.path}: {name} is {model.scalar(name)}, a Whisper has {want}"
            )
    vocab, d = _shape(model, "decoder/embeddings/weight")
    conv1 = _shape(model, "encoder/conv1/weight")
    dims = WhisperDims(
        d_model=d,
        vocab_size=vocab,
        num_mel_bins=conv1[1],
        encoder_layers=_count_layers(model, "encoder"),
        decoder_layers=_count_layers(model, "decoder"),
        encoder_attention_heads=int(model.scalar("encoder/num_heads")),
        decoder_attention_heads=int(model.scalar("decoder/num_heads")),
        encoder_ffn_dim=_shape(model, "encoder/layer_0/ffn/linear_0/weight")[0],
        decoder_ffn_dim=_shape(model, "decoder/layer_0/ffn/linear_0/weight")[0],
        max_source_positions=_shape(model, "encoder/position_encodings/encodings")[0],
        max_target_positions=_shape(model, "decoder/position_encodings/encodings")[0],
    )
    for heads in (dims.encoder_attention_heads, dims.decoder_attention_heads):
        if heads <= 0 or d % heads:
            raise ConversionError(f"{model.path}: {heads} heads do not divide d_model {d}")
    if conv1 != (d, dims.num_mel_bins, 3):
        raise ConversionError(f"{model.path}: encoder/conv1/weight has shape {conv1}")
    return dims


def _linear(prefix: str) -> list[tuple[str, str]]:
    return [(f"{prefix}/weight", "weight"), (f"{prefix}/bias", "bias")]


def _rules(dims: WhisperDims) -> dict[str, str]:
    """CT2 name -> HF name for every variable copied as is (the fused ones are split apart)."""
    rules: dict[str, str] = {}

    def norm(ct2: str, hf: str) -> None:
        rules[f"{ct2}/gamma"], rules[f"{ct2}/beta"] = f"{hf}.weight", f"{hf}.bias"

    def linear(ct2: str, hf: str) -> None:
        for c, h in _linear(ct2):
            rules[c] = f"{hf}.{h}"

    for conv in ("conv1", "conv2"):
        linear(f"encoder/{conv}", f"model.encoder.{conv}")
    for stack, n in (("encoder", dims.encoder_layers), ("decoder", dims.decoder_layers)):
        hf = f"model.{stack}"
        rules[f"{stack}/position_encodings/encodings"] = f"{hf}.embed_positions.weight"
        norm(f"{stack}/layer_norm", f"{hf}.layer_norm")
        for i in range(n):
            c, h = f"{stack}/layer_{i}", f"{hf}.layers.{i}"
            norm(f"{c}/self_attention/layer_norm", f"{h}.self_attn_layer_norm")
            linear(f"{c}/self_attention/linear_1", f"{h}.self_attn.out_proj")
            norm(f"{c}/ffn/layer_norm", f"{h}.final_layer_norm")
            linear(f"{c}/ffn/linear_0", f"{h}.fc1")
            linear(f"{c}/ffn/linear_1", f"{h}.fc2")
            if stack == "decoder":
                norm(f"{c}/attention/layer_norm", f"{h}.encoder_attn_layer_norm")
                linear(f"{c}/attention/linear_0", f"{h}.encoder_attn.q_proj")
                linear(f"{c}/attention/linear_2", f"{h}.encoder_attn.out_proj")
    rules["decoder/embeddings/weight"] = "model.decoder.embed_tokens.weight"
    return rules


def _split(model: CT2Model, fused: str, hf_names: list[str], d: int,
           out: dict[str, torch.Tensor], cast: Any) -> None:
    """Split the fused rows of ``fused`` into ``hf_names`` (one of them "k": no bias kept)."""
    w, b = model.tensor(f"{fused}/weight"), model.tensor(f"{fused}/bias")
    if w.shape != (d * len(hf_names), d) or b.shape != (d * len(hf_names),):
        raise ConversionError(
            f"{model.path}: {fused} has weight {tuple(w.shape)} and bias {tuple(b.shape)}, "
            f"expected ({d * len(hf_names)}, {d}) and ({d * len(hf_names)},)"
        )
    for i, name in enumerate(hf_names):
        out[f"{name}.weight"] = cast(w[i * d:(i + 1) * d])
        bias = b[i * d:(i + 1) * d]
        if name.endswith(".k_proj"):
            if torch.count_nonzero(bias):
                raise NonZeroKeyBiasError(
                    f"{model.path}: {fused}/bias has {int(torch.count_nonzero(bias))} non-zero "
                    f"values in its key slot (rows {i * d}..{(i + 1) * d - 1}, max |value| "
                    f"{bias.abs().max().item():.3g}); Whisper's k_proj has no bias, so it cannot "
                    "be converted without changing the model"
                )
        else:
            out[f"{name}.bias"] = cast(bias)


def whisper_state_dict(model: CT2Model, *, dtype: torch.dtype = torch.float32
                       ) -> dict[str, torch.Tensor]:
    """The HF ``WhisperForConditionalGeneration`` state dict (``proj_out`` tied, so absent).

    Rules: conv1/conv2 -> ``model.encoder.convN``; ``position_encodings/encodings`` ->
    ``embed_positions.weight``; ``layer_norm/{gamma,beta}`` -> ``layer_norm.{weight,bias}``; per
    layer ``self_attention/layer_norm`` -> ``self_attn_layer_norm``, ``self_attention/linear_0``
    (fused q|k|v rows) -> ``self_attn.{q,k,v}_proj``, ``self_attention/linear_1`` ->
    ``self_attn.out_proj``, ``ffn/layer_norm`` -> ``final_layer_norm``, ``ffn/linear_{0,1}`` ->
    ``fc{1,2}``; decoder ``attention/layer_norm`` -> ``encoder_attn_layer_norm``,
    ``attention/linear_0`` -> ``encoder_attn.q_proj``, ``attention/linear_1`` (fused k|v) ->
    ``encoder_attn.{k,v}_proj``, ``attention/linear_2`` -> ``encoder_attn.out_proj``;
    ``decoder/embeddings/weight`` -> ``model.decoder.embed_tokens.weight``.
    """
    if dtype not in _OUT_DTYPES.values():
        raise ConversionError(f"dtype {dtype} is not one of {sorted(_OUT_DTYPES)}")
    dims = whisper_dims(model)
    d = dims.d_model
    for name, var in model.variables.items():
        if var.shape != () and var.dtype not in _FLOATS:
            raise ConversionError(
                f"{model.path}: {name} is {var.dtype} (a quantized model.bin); convert from a "
                "float16/float32 one"
            )

    def cast(t: torch.Tensor) -> torch.Tensor:
        return t.to(dtype).contiguous().clone()

    out: dict[str, torch.Tensor] = {}
    used: set[str] = set(_EXPECTED_FLAGS) | set(_INFO_FLAGS)
    rules = _rules(dims)
    for ct2, hf in rules.items():
        if ct2 not in model.variables:
            raise ConversionError(f"{model.path}: no variable {ct2!r} (for {hf})")
        out[hf] = cast(model.tensor(ct2))
        used.add(ct2)
    for stack, n in (("encoder", dims.encoder_layers), ("decoder", dims.decoder_layers)):
        for i in range(n):
            c, h = f"{stack}/layer_{i}", f"model.{stack}.layers.{i}"
            _split(model, f"{c}/self_attention/linear_0",
                   [f"{h}.self_attn.{p}_proj" for p in "qkv"], d, out, cast)  # fmt: skip
            used |= {f"{c}/self_attention/linear_0/weight", f"{c}/self_attention/linear_0/bias"}
            if stack == "decoder":
                _split(model, f"{c}/attention/linear_1",
                       [f"{h}.encoder_attn.{p}_proj" for p in "kv"], d, out, cast)  # fmt: skip
                used |= {f"{c}/attention/linear_1/weight", f"{c}/attention/linear_1/bias"}
    _check_projection(model, out, dtype)
    used.add("decoder/projection/weight")
    left = sorted(n for n in model.names() if n not in used)
    if left:
        raise ConversionError(f"{model.path}: variables no rule maps (not dropped silently): {left}")
    _check_shapes(dims, out)
    return out


def _check_projection(model: CT2Model, out: dict[str, torch.Tensor], dtype: torch.dtype) -> None:
    """The output projection must be the token embeddings (an alias, or equal values)."""
    name = "decoder/projection/weight"
    if name not in model:
        return  # nothing to tie: the reference ties proj_out to embed_tokens anyway
    if model.aliases.get(name) == "decoder/embeddings/weight":
        return
    if not torch.equal(model.tensor(name).to(dtype), out["model.decoder.embed_tokens.weight"]):
        raise ConversionError(
            f"{model.path}: {name} differs from decoder/embeddings/weight; an HF Whisper ties them"
        )


def _check_shapes(dims: WhisperDims, out: dict[str, torch.Tensor]) -> None:
    d = dims.d_model
    want = {
        "model.encoder.conv2.weight": (d, d, 3),
        "model.encoder.embed_positions.weight": (dims.max_source_positions, d),
        "model.decoder.embed_positions.weight": (dims.max_target_positions, d),
    }
    for stack, n, ffn in (("encoder", dims.encoder_layers, dims.encoder_ffn_dim),
                          ("decoder", dims.decoder_layers, dims.decoder_ffn_dim)):  # fmt: skip
        for i in range(n):
            h = f"model.{stack}.layers.{i}"
            want[f"{h}.fc1.weight"], want[f"{h}.fc2.weight"] = (ffn, d), (d, ffn)
            want[f"{h}.self_attn.out_proj.weight"] = (d, d)
    for key, shape in want.items():
        if tuple(out[key].shape) != shape:
            raise ConversionError(f"{key} has shape {tuple(out[key].shape)}, expected {shape}")


# --- tokens, configs, tokenizer files -----------------------------------------------------------
def _timestamp(i: int) -> str:
    return "<|%.2f|>" % (i * TIME_PRECISION)


def whisper_special_tokens(tokenizer: dict) -> dict[str, int]:
    """content -> id of the tokenizer's added tokens; the control tokens must all be there."""
    ids = {t["content"]: int(t["id"]) for t in tokenizer.get("added_tokens", [])}
    missing = [c for c in _CONTROL if c not in ids]
    if missing:
        raise ConversionError(f"tokenizer.json lacks the Whisper control tokens {missing}")
    return ids


def whisper_configs(dims: WhisperDims, ct2_config: dict, tokens: dict[str, int],
                    dtype: str = "float32") -> tuple[dict, dict]:
    """``config.json`` and ``generation_config.json`` as the hub's ``openai/whisper-*`` hold them.

    English-only models (vocab 51864) force ``<|notimestamps|>`` at position 1; multilingual ones
    leave the language open and force ``<|transcribe|>`` at 2 and carry ``lang_to_id`` and
    ``task_to_id``. ``bos_token_id`` is 50257 in both hub configs (the start-of-transcript of an
    English-only vocabulary, the end-of-text of a multilingual one); Whisper's generation never
    uses it, and it is reproduced for byte-level parity with the hub.
    """
    eot, sot = tokens["<|endoftext|>"], tokens["<|startoftranscript|>"]
    multilingual = dims.vocab_size >= 51865  # OpenAI's own rule (n_vocab >= 51865)
    bos = eot if multilingual else sot
    suppress = [int(i) for i in ct2_config.get("suppress_ids") or []]
    begin = [int(i) for i in ct2_config.get("suppress_ids_begin") or [220, eot]]
    if any(not 0 <= i < dims.vocab_size for i in suppress + begin):
        raise ConversionError("config.json suppress ids fall outside the vocabulary")
    config = {
        "activation_dropout": 0.0, "activation_function": "gelu", "apply_spec_augment": False,
        "architectures": ["WhisperForConditionalGeneration"], "attention_dropout": 0.0,
        "begin_suppress_tokens": begin, "bos_token_id": bos, "classifier_proj_size": 256,
        "d_model": dims.d_model, "decoder_attention_heads": dims.decoder_attention_heads,
        "decoder_ffn_dim": dims.decoder_ffn_dim, "decoder_layerdrop": 0.0,
        "decoder_layers": dims.decoder_layers, "decoder_start_token_id": sot, "dropout": 0.0,
        "encoder_attention_heads": dims.encoder_attention_heads,
        "encoder_ffn_dim": dims.encoder_ffn_dim, "encoder_layerdrop": 0.0,
        "encoder_layers": dims.encoder_layers, "eos_token_id": eot, "init_std": 0.02,
        "is_encoder_decoder": True, "mask_feature_length": 10, "mask_feature_min_masks": 0,
        "mask_feature_prob": 0.0, "mask_time_length": 10, "mask_time_min_masks": 2,
        "mask_time_prob": 0.05, "max_source_positions": dims.max_source_positions,
        "max_target_positions": dims.max_target_positions, "median_filter_width": 7,
        "model_type": "whisper", "num_hidden_layers": dims.encoder_layers,
        "num_mel_bins": dims.num_mel_bins, "pad_token_id": eot, "scale_embedding": False,
        "suppress_tokens": suppress, "tie_word_embeddings": True, "torch_dtype": dtype,
        "use_cache": True, "use_weighted_layer_sum": False, "vocab_size": dims.vocab_size,
    }  # fmt: skip
    no_ts = tokens["<|notimestamps|>"]
    generation: dict[str, Any] = {
        "begin_suppress_tokens": begin, "bos_token_id": bos, "decoder_start_token_id": sot,
        "eos_token_id": eot, "is_multilingual": multilingual, "max_initial_timestamp_index": 50,
        "max_length": dims.max_target_positions, "no_timestamps_token_id": no_ts,
        "pad_token_id": eot, "prev_sot_token_id": tokens["<|startofprev|>"],
        "return_timestamps": False, "suppress_tokens": suppress,
    }  # fmt: skip
    if ct2_config.get("alignment_heads"):
        generation["alignment_heads"] = [[int(a), int(b)] for a, b in ct2_config["alignment_heads"]]
    if multilingual:
        by_id = {i: c for c, i in tokens.items()}
        lang_ids = ct2_config.get("lang_ids") or []
        if not lang_ids or any(i not in by_id for i in lang_ids):
            raise ConversionError("config.json lang_ids are missing or not added tokens")
        generation["lang_to_id"] = {by_id[i]: int(i) for i in sorted(lang_ids)}
        generation["task_to_id"] = {
            "transcribe": tokens["<|transcribe|>"], "translate": tokens["<|translate|>"],
        }
        generation["forced_decoder_ids"] = [[1, None], [2, tokens["<|transcribe|>"]]]
    else:
        generation["forced_decoder_ids"] = [[1, no_ts]]
    return config, generation


def _added(token_id: int, content: str, special: bool) -> dict:
    return {"id": token_id, "content": content, "single_word": False, "lstrip": False,
            "rstrip": False, "normalized": not special, "special": special}  # fmt: skip


def whisper_tokenizer_files(tokenizer: dict, vocab_size: int,
                            vocabulary: list[str] | None = None) -> dict[str, str]:
    """``tokenizer.json`` (with the timestamp tokens the newer hub files add), its config,
    ``special_tokens_map.json``, and ``vocab.json`` + ``merges.txt`` for the reference's slow
    tokenizer (``added_tokens.json`` is not written: ``added_tokens_decoder`` in the config
    carries the same, and both reference versions load without it). Ids are checked against
    ``vocabulary`` (CTranslate2's ``vocabulary.txt``: one token per id) when given."""
    tokenizer = json.loads(json.dumps(tokenizer))  # a deep copy: the caller's dict stays as is
    model = tokenizer.get("model") or {}
    if model.get("type") != "BPE" or not isinstance(model.get("vocab"), dict):
        raise ConversionError("tokenizer.json is not a byte-level BPE tokenizer")
    tokens = whisper_special_tokens(tokenizer)
    added = tokenizer["added_tokens"]
    first_ts = tokens["<|notimestamps|>"] + 1
    n_ts = vocab_size - first_ts
    if n_ts != round(CHUNK_LENGTH / TIME_PRECISION) + 1:
        raise ConversionError(
            f"vocab_size {vocab_size} leaves {n_ts} ids after <|notimestamps|>, not the 1501 "
            "timestamp tokens <|0.00|>..<|30.00|>"
        )
    for i in range(n_ts):
        content, tid = _timestamp(i), first_ts + i
        if content in tokens:
            if tokens[content] != tid:
                raise ConversionError(f"tokenizer.json has {content} at {tokens[content]}, not {tid}")
            continue
        added.append(_added(tid, content, special=False))
        tokens[content] = tid
    by_id = {i: t for t, i in model["vocab"].items()}
    clash = [(i, by_id[i], c) for c, i in tokens.items() if by_id.get(i, c) != c]
    if clash:
        raise ConversionError(f"tokenizer.json gives one id two tokens: {clash[:3]}")
    by_id |= {i: c for c, i in tokens.items()}
    if sorted(by_id) != list(range(vocab_size)):
        raise ConversionError(f"tokenizer ids are not exactly 0..{vocab_size - 1}")
    if vocabulary is not None:
        if len(vocabulary) != vocab_size:
            raise ConversionError(f"vocabulary.txt has {len(vocabulary)} tokens, the model {vocab_size}")
        bad = [i for i in range(vocab_size) if vocabulary[i] != by_id[i]]
        if bad:
            raise ConversionError(
                f"tokenizer.json and vocabulary.txt disagree at {len(bad)} ids (first {bad[0]}: "
                f"{by_id[bad[0]]!r} vs {vocabulary[bad[0]]!r})"
            )
    specials = [t["content"] for t in sorted(added, key=lambda t: t["id"]) if t["special"]]
    eot = "<|endoftext|>"
    decoder = {str(t["id"]): {k: t[k] for k in ("content", "lstrip", "normalized", "rstrip",
                                                 "single_word", "special")}
               for t in sorted(added, key=lambda t: t["id"])}  # fmt: skip
    tokenizer_config = {
        "add_bos_token": False, "add_prefix_space": False, "added_tokens_decoder": decoder,
        "additional_special_tokens": specials, "bos_token": eot, "clean_up_tokenization_spaces": True,
        "eos_token": eot, "errors": "replace", "model_max_length": 1024, "pad_token": eot,
        "processor_class": "WhisperProcessor", "return_attention_mask": False,
        "tokenizer_class": "WhisperTokenizer", "unk_token": eot,
    }  # fmt: skip
    special_map = {"additional_special_tokens": specials, "bos_token": eot, "eos_token": eot,
                   "pad_token": eot, "unk_token": eot}  # fmt: skip
    merges = [m if isinstance(m, str) else " ".join(m) for m in model.get("merges", [])]
    return {
        "tokenizer.json": json.dumps(tokenizer, ensure_ascii=False, indent=2),
        "tokenizer_config.json": _dump(tokenizer_config),
        "special_tokens_map.json": _dump(special_map),
        "vocab.json": json.dumps(model["vocab"], ensure_ascii=False),
        "merges.txt": "#version: 0.2\n" + "".join(m + "\n" for m in merges),
    }


def preprocessor_config(num_mel_bins: int) -> dict:
    """WhisperFeatureExtractor's settings: 16 kHz, 10 ms hop, 25 ms window, 30-s windows."""
    n_samples = CHUNK_LENGTH * SAMPLING_RATE
    return {
        "chunk_length": CHUNK_LENGTH, "feature_extractor_type": "WhisperFeatureExtractor",
        "feature_size": num_mel_bins, "hop_length": HOP_LENGTH, "n_fft": N_FFT,
        "n_samples": n_samples, "nb_max_frames": n_samples // HOP_LENGTH,
        "padding_side": "right", "padding_value": 0.0, "processor_class": "WhisperProcessor",
        "return_attention_mask": False, "sampling_rate": SAMPLING_RATE,
    }  # fmt: skip


def _dump(obj: Any) -> str:
    return json.dumps(obj, ensure_ascii=False, indent=2, sort_keys=True) + "\n"


def _read_json(path: Path) -> dict:
    try:
        return json.loads(path.read_text(encoding="utf-8"))
    except (OSError, ValueError) as e:
        raise ConversionError(f"cannot read {path}: {e}") from None


def convert_whisper_ct2(source: str | os.PathLike, dest: str | os.PathLike, *,
                        dtype: torch.dtype | str = torch.float32, upstream: str = "",
                        origin: str = "", license: str = "MIT") -> Path:
    """Write an HF Whisper folder into ``dest`` (created; must be empty) from the CTranslate2
    folder ``source``. ``upstream`` (``openai/whisper-tiny.en``) and ``origin`` (where the
    ``model.bin`` came from) go into the folder's README. Returns ``dest``.

    Everything is computed and checked before the first file is written, so a refused
    conversion leaves ``dest`` empty.
    """
    from safetensors.torch import save_file

    src, out = Path(source), Path(dest)
    if isinstance(dtype, str):
        if dtype not in _OUT_DTYPES:
            raise ConversionError(f"dtype {dtype!r} is not one of {sorted(_OUT_DTYPES)}")
        dtype = _OUT_DTYPES[dtype]
    dtype_name = next((n for n, t in _OUT_DTYPES.items() if t == dtype), str(dtype))
    model = read_model_bin(src / "model.bin")
    dims = whisper_dims(model)
    state = whisper_state_dict(model, dtype=dtype)
    ct2_config = _read_json(src / "config.json") if (src / "config.json").is_file() else {}
    tokenizer = _read_json(src / "tokenizer.json")
    vocab_txt = src / "vocabulary.txt"
    vocabulary = vocab_txt.read_text(encoding="utf-8").split("\n") if vocab_txt.is_file() else None
    if vocabulary and vocabulary[-1] == "":
        vocabulary.pop()
    files = whisper_tokenizer_files(tokenizer, dims.vocab_size, vocabulary)
    tokens = whisper_special_tokens(json.loads(files["tokenizer.json"]))
    config, generation = whisper_configs(dims, ct2_config, tokens, dtype_name)
    files["config.json"] = _dump(config)
    files["generation_config.json"] = _dump(generation)
    files["preprocessor_config.json"] = _dump(preprocessor_config(dims.num_mel_bins))
    files["README.md"] = _readme(src, upstream, origin, license, dtype_name, dims)

    out.mkdir(parents=True, exist_ok=True)
    if any(out.iterdir()):
        raise ConversionError(f"{out} is not empty; convert into a new folder")
    for name, text in files.items():
        (out / name).write_text(text, encoding="utf-8")
    weights = out / "model.safetensors"
    save_file(state, str(weights), metadata={"format": "pt"})
    # safetensors creates the file private (0600); give it the mode the other files got
    os.chmod(weights, stat.S_IMODE((out / "config.json").stat().st_mode))
    return out


def _readme(src: Path, upstream: str, origin: str, license: str, dtype: str,
            dims: WhisperDims) -> str:
    name = upstream.split("/")[-1] or src.name
    lines = [
        f"# {name} (converted)",
        "",
        f"Upstream: `{upstream or 'unknown'}` (OpenAI Whisper), license {license}.",
        "",
        f"Converted from the CTranslate2 float16 `model.bin`{' in ' + origin if origin else ''}",
        f"by `pretrained.convert.whisper_ct2` into the HF layout: {dtype} weights (the float16",
        "values cast, exactly when upcast), the output projection tied to the token embeddings.",
        "",
        f"Shapes: d_model {dims.d_model}, {dims.encoder_layers} encoder and {dims.decoder_layers}"
        f" decoder layers, vocabulary {dims.vocab_size}, {dims.num_mel_bins} mel bins.",
        "",
    ]
    return "\n".join(lines)
