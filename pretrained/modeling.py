"""PreTrainedModel: from_pretrained / save_pretrained / from_config for every architecture.

The path a checkpoint takes: resolve files (io/hub.py) -> read config (config.py) -> build the module
on the meta device (no memory) -> tie weights -> stream tensors into place (io/loading.py) ->
initialise what the checkpoint lacked -> eval mode.
"""

from __future__ import annotations

import difflib
import inspect
import logging
import os
import tempfile
from pathlib import Path
from typing import Any, ClassVar

import torch
from torch import nn

from .checkpointing import GradientCheckpointingMixin
from .config import PretrainedConfig
from .devices import resolve_device, resolve_dtype  # noqa: F401 (public here too: modeling.resolve_dtype)
from .dispatch import DevicePlacement
from .placement import parse_size as _parse_size
from .errors import (
    CheckpointError,
    ConfigError,
    InvalidInputError,
    RemoteCodeError,
    ShapeMismatchError,
    UnsupportedOptionError,
)
from .backends import accelerate
from .layers.gguf import dequantized_state, keep_packed
from .quantization.load import check_unquantized, plan_quantization
from .layers import init_normal_
from .io.loading import (
    PT_WEIGHTS,
    SAFE_INDEX,
    SAFE_WEIGHTS,
    PT_INDEX,
    LoadReport,
    load_checkpoint_into,
    materialize_missing,
    FolderWeights,
    _slots,
)

logger = logging.getLogger("pretrained")

_TORCH_INITS = ("normal_", "uniform_", "kaiming_uniform_", "kaiming_normal_", "xavier_uniform_",
                "xavier_normal_", "trunc_normal_", "zeros_", "ones_", "constant_")


class _skip_torch_init:
    """While a model is built on the meta device, make ``torch.nn.init`` functions no-ops: meta
    tensors hold no values, and torch's init on them imports ``torch._dynamo`` (1-3 s here)."""

    def __enter__(self) -> None:
        self._saved = {n: getattr(nn.init, n) for n in _TORCH_INITS}
        for n in _TORCH_INITS:
            setattr(nn.init, n, _return_tensor)

    def __exit__(self, *exc: Any) -> None:
        for n, fn in self._saved.items():
            setattr(nn.init, n, fn)


def _return_tensor(tensor: torch.Tensor, *args: Any, **kwargs: Any) -> torch.Tensor:
    return tensor


def _available_memory() -> int | None:
    try:
        with open("/proc/meminfo") as f:
            for line in f:
                if line.startswith("MemAvailable:"):
                    return int(line.split()[1]) * 1024
    except OSError:
        return None
    return None


# the reference's from_pretrained options this library does not implement, with what to do
_NOT_HERE: dict[str, str] = {}
# accepted: what they ask for is what this library always does
_ALWAYS = {"low_cpu_mem_usage", "_fast_init"}
_OTHER_NAMES = {"num_labels", "id2label", "label2id", "attn_implementation"}


MAX_LAYERS = 1000   # the deepest published transformers have a few hundred layers


def check_config_size(config: PretrainedConfig, dtype: torch.dtype, in_memory: bool = True) -> None:
    """Refuse a config whose sizes describe a model that cannot fit, from its numbers alone and
    before any module is built (an untrusted ``num_hidden_layers: 200000`` or ``num_labels: 1e9``
    would otherwise take gigabytes in the building). The estimate is the usual transformer's:
    embeddings, four attention and two (or three) MLP matrices per layer, a classifier head."""
    def size(name: str) -> int:
        v = getattr(config, name, None)
        return v if isinstance(v, int) and not isinstance(v, bool) and v > 0 else 0

    layers, hidden = size("num_hidden_layers"), size("hidden_size")
    if layers > MAX_LAYERS:
        raise ConfigError(f"config says num_hidden_layers={layers}; no published model has more "
                          f"than a few hundred layers (this library takes up to {MAX_LAYERS}); "
                          "check config.json")
    inter = size("intermediate_size") or size("n_inner") or size("hidden_dim") or 4 * hidden
    params = (size("vocab_size") + size("max_position_embeddings")) * hidden \
        + layers * (4 * hidden * hidden + 3 * hidden * inter) + config.num_labels * hidden
    need = params * torch.tensor([], dtype=dtype).element_size()
    have = _available_memory() if in_memory else None   # (not when a device_map may offload)
    if have is not None and need > have:
        raise ConfigError(
            f"this config describes a model of about {need / 2**30:.1f} GiB in {dtype} "
            f"({layers} layers of width {hidden}, {config.num_labels} labels), but only "
            f"{have / 2**30:.1f} GiB of memory is available; check the sizes in config.json or "
            "load in a smaller dtype")


def _config_typo(config: PretrainedConfig) -> str | None:
    """A key of config.json this library does not know that looks like one it does (``hiden_size``
    for ``hidden_size``): with it, a size-mismatch error names the likely cause."""
    fields = config.fields()
    for key in config._extra:
        close = difflib.get_close_matches(key, fields, n=1, cutoff=0.8)
        if close and close[0] not in config._extra:
            return (f"config.json has {key!r}, which {type(config).__name__} does not know: did you "
                    f"mean {close[0]!r}? ({close[0]} was left at {getattr(config, close[0])!r})")
    return None


def check_load_options(config_class: type[PretrainedConfig], options: dict[str, Any]) -> None:
    """Refuse options this library cannot honour and names it does not know, instead of storing
    them in the config unnoticed (the reference's habit); the rest are config fields."""
    known = set(config_class.fields()) | _OTHER_NAMES
    for name in list(options):
        if name in _NOT_HERE:
            raise UnsupportedOptionError(f"{name}=: {_NOT_HERE[name]}")
        if name in _ALWAYS:
            options.pop(name)
        elif name == "attn_implementation":
            impl = options.pop(name)
            if impl not in (None, "sdpa", "eager"):
                raise UnsupportedOptionError(
                    f"attn_implementation={impl!r} is not available here; pretrained runs "
                    "PyTorch's scaled_dot_product_attention (attn_implementation='sdpa')")
        elif name not in known:
            params = set(inspect.signature(PreTrainedModel.from_pretrained).parameters) - {"cls"}
            close = difflib.get_close_matches(name, sorted(known | params), n=1)
            hint = f"; did you mean {close[0]!r}?" if close else \
                f"; from_pretrained takes {', '.join(sorted(params - {'name_or_path', 'config_overrides'}))} " \
                f"and {config_class.__name__} fields"
            raise InvalidInputError(f"from_pretrained got an unknown argument {name!r}{hint}")


class PreTrainedModel(GradientCheckpointingMixin, nn.Module):
    """Base of every model. Subclasses set ``config_class`` and ``base_model_prefix``.

    ``tied_weights`` maps a parameter name to the one it shares storage with when
    ``config.tie_word_embeddings`` is true; ``shared_weights`` the same, always tied (an
    encoder-decoder's encoder and decoder embeddings are one matrix); ``ignore_unexpected`` lists regexes of checkpoint
    keys that are expected to be unused (old buffers). ``forward_inputs`` names the arguments
    ``forward`` takes, so that ``generate()`` knows what it may pass (``past_key_values``,
    ``use_cache``, ``position_ids``, ``logits_to_keep``) without inspecting signatures; a
    causal LM declares all of its own (tests check them against ``forward``).
    """

    config_class: ClassVar[type[PretrainedConfig]] = PretrainedConfig
    base_model_prefix: ClassVar[str] = ""
    tied_weights: ClassVar[dict[str, str]] = {}
    shared_weights: ClassVar[dict[str, str]] = {}
    ignore_unexpected: ClassVar[tuple[str, ...]] = ()
    forward_inputs: ClassVar[frozenset[str]] = frozenset({"input_ids", "attention_mask"})

    def __init__(self, config: PretrainedConfig) -> None:
        super().__init__()
        if not isinstance(config, self.config_class):
            raise ConfigError(
                f"{type(self).__name__} needs a {self.config_class.__name__}, got "
                f"{type(config).__name__}"
            )
        self.config = config

    # --- small helpers ----------------------------------------------------------------------
    @property
    def device(self) -> torch.device:
        return next(self.parameters()).device

    @property
    def dtype(self) -> torch.dtype:
        return next(p for p in self.parameters() if p.is_floating_point()).dtype

    def get_memory_footprint(self, return_buffers: bool = True) -> int:
        """Bytes held by the parameters (and buffers): quantized layers count their packed bytes
        and statistics, tied weights once."""
        tensors = [*self.parameters(), *(self.buffers() if return_buffers else ())]
        return sum(t.numel() * t.element_size() for t in tensors)

    def num_parameters(self, only_trainable: bool = False) -> int:
        return sum(p.numel() for p in self.parameters() if p.requires_grad or not only_trainable)

    def get_input_embeddings(self) -> nn.Embedding:
        base = getattr(self, self.base_model_prefix, None)
        if isinstance(base, PreTrainedModel):
            return base.get_input_embeddings()
        raise NotImplementedError(f"{type(self).__name__} has no input embeddings")

    def check_input_ids(self, input_ids: torch.Tensor) -> torch.Tensor:
        """(B, T) long ids within the vocabulary, or a clear error."""
        if not isinstance(input_ids, torch.Tensor):
            raise InvalidInputError(f"input_ids must be a torch.Tensor, got {type(input_ids).__name__}; "
                                    "tokenize with return_tensors='pt'")
        if input_ids.dim() == 1:
            input_ids = input_ids.unsqueeze(0)
        if input_ids.dim() != 2 or input_ids.shape[0] == 0 or input_ids.shape[1] == 0:
            raise InvalidInputError(f"input_ids must have shape (batch>0, length>0), got "
                                    f"{tuple(input_ids.shape)}; the input is empty")
        if input_ids.is_floating_point():
            raise InvalidInputError("input_ids must be integer token ids, got floats")
        vocab = getattr(self.config, "vocab_size", None)
        lo, hi = int(input_ids.min()), int(input_ids.max())
        if lo < 0 or (vocab is not None and hi >= vocab):
            bad = lo if lo < 0 else hi
            raise InvalidInputError(f"input_ids holds token id {bad}, outside this model's "
                                    f"vocabulary [0, {vocab}); was it made by another tokenizer?")
        return input_ids

    def tie_weights(self) -> None:
        """Share storage between tied parameters (output projection <-> input embeddings)."""
        pairs = dict(self.shared_weights)
        if getattr(self.config, "tie_word_embeddings", True):
            pairs.update(self.tied_weights)
        for target, source in pairs.items():
            owner_name, _, attr = target.rpartition(".")
            src = self.get_parameter(source)
            setattr(self.get_submodule(owner_name), attr, src)

    def _untie_stored_copies(self, checkpoint_keys: set[str]) -> None:
        """A checkpoint that stores both sides of a tie (an untied head saved under a config that
        says tied, as T5 v1.1 / flan-t5 saved by the reference 5.x) keeps both: each gets its
        own parameter, as the reference does, instead of one silently overwriting the other."""
        prefix = self.base_model_prefix + "." if self.base_model_prefix else ""

        def stored(name: str) -> bool:
            return name in checkpoint_keys or prefix + name in checkpoint_keys or (
                bool(prefix) and name.startswith(prefix) and name[len(prefix):] in checkpoint_keys)

        if not getattr(self.config, "tie_word_embeddings", True):
            return
        for target, source in self.tied_weights.items():
            if stored(target) and stored(source):
                owner_name, _, attr = target.rpartition(".")
                param = self.get_parameter(source)
                setattr(self.get_submodule(owner_name),
                        attr, nn.Parameter(torch.empty_like(param), requires_grad=param.requires_grad))

    def _retie_equal_copies(self) -> None:
        """Tie again what :meth:`_untie_stored_copies` split but the checkpoint holds equal (a
        ``.bin`` stores every name of a tied tensor; BART/Marian files hold ``shared``, both
        ``embed_tokens`` and ``lm_head`` alike): the reference ties those, so fine-tuning
        keeps them one matrix."""
        if not getattr(self.config, "tie_word_embeddings", True):
            return
        for target, source in self.tied_weights.items():
            src, tgt = self.get_parameter(source), self.get_parameter(target)
            if tgt is not src and tgt.device.type != "meta" and src.device.type != "meta" \
                    and tgt.shape == src.shape and torch.equal(tgt, src):
                owner_name, _, attr = target.rpartition(".")
                setattr(self.get_submodule(owner_name), attr, src)

    def _init_weights(self, module: nn.Module) -> None:
        init_normal_(module, getattr(self.config, "initializer_range", 0.02))

    def init_weights(self) -> None:
        """Initialise every weight as the reference does for a fresh model."""
        self.apply(self._init_weights)
        self.tie_weights()

    def generate(self, *args: Any, **kwargs: Any) -> Any:
        """Generate tokens with this model; see :func:`pretrained.generation.generate` (Whisper:
        :func:`pretrained.generation.whisper.whisper_generate`, which adds its own rules)."""
        if getattr(self, "generate_with", None) == "whisper":
            from .generation.whisper import whisper_generate

            return whisper_generate(self, *args, **kwargs)
        from .generation import generate

        return generate(self, *args, **kwargs)

    # --- construction -----------------------------------------------------------------------
    @classmethod
    def from_config(cls, config: PretrainedConfig, *, torch_dtype: Any = None) -> "PreTrainedModel":
        """A randomly initialised model with this config."""
        dtype = resolve_dtype(torch_dtype)
        check_config_size(config, dtype if isinstance(dtype, torch.dtype) else torch.float32)
        model = cls(config)
        model.init_weights()
        if isinstance(dtype, torch.dtype):
            model.to(dtype)
        if "past_key_values" in model.forward_inputs or getattr(config, "is_encoder_decoder", False):
            from .generation.config import GenerationConfig

            # a model that generates gets one, as from_pretrained gives it: the config's special
            # tokens and legacy generation fields (saved with the model, as the reference does)
            model.generation_config = GenerationConfig.from_model_config(config)
        accelerate(model)
        return model

    @classmethod
    def from_pretrained(
        cls,
        name_or_path: str | os.PathLike,
        *,
        config: PretrainedConfig | None = None,
        torch_dtype: Any = None,
        dtype: Any = None,
        device_map: Any = None,
        revision: str | None = None,
        cache_dir: str | os.PathLike | None = None,
        local_files_only: bool = False,
        token: str | bool | None = None,
        trust_remote_code: bool = False,
        use_safetensors: bool | None = None,
        strict: bool = False,
        ignore_mismatched_sizes: bool = False,
        output_loading_info: bool = False,
        gguf_file: str | os.PathLike | None = None,
        dequantize: bool = False,
        quantization_config: Any = None,
        load_in_8bit: bool = False,
        load_in_4bit: bool = False,
        max_memory: Any = None, offload_folder: Any = None, offload_state_dict: Any = None,
        **config_overrides: Any,
    ):
        """Load a model from a local folder or hub id in HF format.

        ``gguf_file``: load config and weights from this GGUF file of the folder instead
        (llama.cpp format, see :mod:`pretrained.gguf`). Its quantized linears and embeddings stay
        the file's blocks, memory-mapped (:mod:`pretrained.layers.gguf`; CPU only);
        ``dequantize=True`` turns them into float weights instead, as the reference does.

        ``torch_dtype`` (or ``dtype``): "auto" (the default, as the reference: the dtype the
        checkpoint was saved in), torch.float32, torch.bfloat16 or torch.float16.
        Extra keyword arguments override config fields (``num_labels=3``).
        ``load_in_8bit`` / ``load_in_4bit`` / ``quantization_config`` (a ``BitsAndBytesConfig``):
        quantized linear layers, see :mod:`pretrained.quantization`; a checkpoint saved quantized
        loads quantized from its config.json alone.
        ``device_map``: a device ("cpu", "cuda:0", 0), "auto" / "balanced" / "balanced_low_0" /
        "sequential" under ``max_memory`` ({0: "10GiB", "cpu": "30GB"}), or a dict of module ->
        device ("disk": memory-mapped, read per forward; ``offload_folder`` when the checkpoint
        cannot be mapped as stored); see :mod:`pretrained.placement`. Sets ``model.hf_device_map``.

        Example::

            >>> from pretrained import AutoModel                        # doctest: +SKIP
            >>> model = AutoModel.from_pretrained("path/to/bert")       # doctest: +SKIP
        """
        check_load_options(cls.config_class, config_overrides)
        if trust_remote_code:
            raise RemoteCodeError(
                "trust_remote_code=True is not supported: pretrained never runs code from a "
                "model repository. Use a model whose architecture pretrained implements."
            )
        from .io.hub import resolve

        files = resolve(name_or_path, revision=revision, cache_dir=cache_dir,
                        local_files_only=local_files_only, token=token)
        # the weight source: a GGUF file carries config and weights; a folder has config.json and
        # safetensors / .bin files. Both give config_dict() and checkpoint() to what follows.
        if gguf_file is not None:
            from .gguf import gguf_path, load_gguf

            source = load_gguf(gguf_path(files, gguf_file))
        else:
            source = FolderWeights(files, use_safetensors=use_safetensors)
        if config is None:
            config = cls.config_class.from_dict(source.config_dict(), **config_overrides)
            config.name_or_path = str(name_or_path)
        elif config_overrides:
            raise InvalidInputError(
                f"got both config= and config fields {sorted(config_overrides)}; set them on the "
                "config object instead"
            )
        place = DevicePlacement(device_map, max_memory, offload_folder, offload_state_dict)
        device = place.device
        quant = plan_quantization(config, quantization_config=quantization_config, device=device,
                                  load_in_8bit=load_in_8bit, load_in_4bit=load_in_4bit)
        ckpt = source.checkpoint()
        try:
            want = resolve_dtype(dtype if dtype is not None else torch_dtype)
            if want is None or want == "auto":
                want = resolve_dtype(config.dtype) if config.dtype not in (None, "auto") else None
                want = want or ckpt.first_float_dtype() or torch.float32
            check_config_size(config, want, not place.may_offload)   # before building: that can take GiBs
            with torch.device("meta"), _skip_torch_init():
                model = cls(config)
            model.tie_weights()
            model._untie_stored_copies(set(ckpt.keys()))
            place.plan(model, want, ckpt, cls.base_model_prefix, quant and quant.config.quantization_method(),
                       gguf_file is not None)   # refuses what cannot run, before any weight is read
            device = place.device
            if gguf_file is not None or dequantize:   # a GGUF file's blocks stay as stored (mapped)
                ckpt = keep_packed(model, ckpt, cls.base_model_prefix, device, dequantize, quant)
            if device.type == "cpu" and quant is None and place.strategy is None and not place.spread:
                cls._check_fits(model, want)
            if quant is None:
                check_unquantized(ckpt.keys(), files.name)
            try:   # a quantizing load hides the layers it quantizes itself, one at a time, below
                report = load_checkpoint_into(
                    model, ckpt if quant is None else quant.attach(model, ckpt, cls.base_model_prefix),
                    dtype=want, device=device, prefix=cls.base_model_prefix,
                    ignore_unexpected=cls.ignore_unexpected,
                    ignore_mismatched_sizes=ignore_mismatched_sizes, convert=place.converter(want, ckpt))
            except ShapeMismatchError as e:
                typo = _config_typo(config)
                if typo is None:
                    raise
                raise ShapeMismatchError(f"{typo}; that would explain this: {e}") from None
            if quant is not None:
                quant.finish(model, ckpt, report, want, device)
        finally:
            ckpt.close()
        model._retie_equal_copies()
        model._finish_loading(report, want, device, strict, files.name)
        config.dtype = str(want).replace("torch.", "")
        model.eval()
        accelerate(model)   # CPU fast paths by module swap; they step aside for training
        place.dispatch(model)   # blocks' hooks (several devices, disk) and hf_device_map
        from .generation.config import load_generation_config  # never raises: bad values warn

        model.generation_config = load_generation_config(files, config)
        if output_loading_info:
            return model, report.as_dict()
        return model

    @staticmethod
    def _check_fits(model: nn.Module, dtype: torch.dtype) -> None:
        need = sum(t.numel() for t in model.parameters()) * torch.tensor([], dtype=dtype).element_size()
        have = _available_memory()
        if have is not None and need > have:
            raise ConfigError(
                f"this config describes a model of {need / 2**30:.1f} GiB in {dtype}, but only "
                f"{have / 2**30:.1f} GiB of memory is available; check the sizes in config.json "
                "or load in a smaller dtype"
            )

    def _finish_loading(self, report: LoadReport, dtype: torch.dtype, device: torch.device,
                        strict: bool, name: str) -> None:
        tied = set(self.tied_weights) if getattr(self.config, "tie_word_embeddings", True) else set()
        tied |= set(self.shared_weights)
        report.missing_keys = [k for k in report.missing_keys if k not in tied]
        if strict and (report.missing_keys or report.unexpected_keys):
            raise CheckpointError(
                f"{name!r} does not match {type(self).__name__} exactly (strict=True): missing "
                f"{report.missing_keys}, unexpected {report.unexpected_keys}"
            )
        if report.missing_keys:
            # Initialise the modules that own missing weights, keeping what was loaded there.
            loaded = {n: t for n, t in self.state_dict(keep_vars=True).items() if t.device.type != "meta"}
            materialize_missing(self, device, dtype)
            owners = {k.rpartition(".")[0] for k in report.missing_keys}
            with torch.no_grad():
                for owner in owners:
                    module = self.get_submodule(owner)
                    self._init_weights(module)
                    for pname, t in module.named_parameters(prefix=owner, recurse=False):
                        if pname in loaded:
                            t.copy_(loaded[pname])
            logger.warning(
                "Some weights of %s were not in the checkpoint %r and are newly initialised: %s. "
                "Train the model before using it for predictions.",
                type(self).__name__, name, report.missing_keys,
            )
        if report.unexpected_keys:
            logger.warning("Some weights of the checkpoint %r were not used by %s: %s",
                           name, type(self).__name__, report.unexpected_keys)
        if report.mismatched_keys:
            logger.warning("Some weights of %s were re-initialised because their shapes differ "
                           "from the checkpoint: %s", type(self).__name__, report.mismatched_keys)
        still_meta = [n for n, t in self.state_dict(keep_vars=True).items() if t.device.type == "meta"]
        if still_meta:  # never let a forward run on meta tensors
            raise CheckpointError(f"weights left unloaded in {type(self).__name__}: {still_meta}")

    # --- saving -----------------------------------------------------------------------------
    def _unique_state_dict(self) -> dict[str, torch.Tensor]:
        """One entry per distinct tensor under its first name (tied copies dropped), contiguous."""
        every, slots = self.state_dict(keep_vars=True), _slots(self)
        out = {n[0]: every[n[0]].detach().contiguous() for n in slots if n[0] in every}
        named = {n for slot in slots for n in slot}   # + what modules write under their own names
        out.update({k: t.detach().contiguous() for k, t in every.items() if k not in named})  # (quantized)
        return out

    def save_pretrained(
        self,
        save_directory: str | os.PathLike,
        *,
        safe_serialization: bool = True,
        max_shard_size: int | str = "5GB",
        gguf: str | None = None,
    ) -> Path:
        """Write config.json and the weights (safetensors by default, sharded above
        ``max_shard_size``) so that this library and the reference both read them back.
        ``gguf="q8_0"`` (f32, f16, bf16, q4_0, q4_1): one GGUF file for llama.cpp instead, with
        the tokenizer (:func:`pretrained.convert.gguf.save_gguf`); returns the file's path.

        Files are written to a temporary folder first and moved into place one by one, so a
        failure part-way leaves the previous save intact.
        """
        target = Path(save_directory)
        if gguf is not None:   # (pretrained.convert is imported only when used)
            from .convert.gguf import save_gguf
            return save_gguf(self, target, gguf)
        target.mkdir(parents=True, exist_ok=True)
        config = self.config
        config.architectures = [type(self).__name__]
        config.dtype = str(self.dtype).replace("torch.", "")
        state = dequantized_state(self, self._unique_state_dict())   # GGUF blocks: as floats
        shards = _shard(state, _parse_size(max_shard_size))
        with tempfile.TemporaryDirectory(dir=target, prefix=".tmp-save-") as tmp:
            tmp_dir = Path(tmp)
            try:
                config.save_pretrained(tmp_dir)
                gen = getattr(self, "generation_config", None)
                # As the reference: a custom generation config survives a save.
                extra = [gen.save_pretrained(tmp_dir).name] if gen is not None else []
                names = _write_weights(tmp_dir, shards, safe_serialization)
            except Exception as e:  # noqa: BLE001 - a full disk: OSError, or safetensors' error
                if not isinstance(e, OSError) and type(e).__name__ != "SafetensorError":
                    raise
                raise CheckpointError(
                    f"saving to {target} failed ({str(e).splitlines()[0] if str(e) else type(e).__name__}); "
                    "nothing in it was changed, so an earlier save there is intact. Free disk "
                    "space and save again") from e
            # Remove weight files of an earlier save that this one does not overwrite.
            stale = [p for p in target.iterdir() if p.is_file() and _is_weight_file(p.name)
                     and p.name not in names]
            for name in ["config.json", *extra, *names]:
                os.replace(tmp_dir / name, target / name)
            for p in stale:
                p.unlink()
        return target


def _is_weight_file(name: str) -> bool:
    return name in (SAFE_WEIGHTS, SAFE_INDEX, PT_WEIGHTS, PT_INDEX) or (
        name.startswith(("model-", "pytorch_model-")) and name.endswith((".safetensors", ".bin"))
    )


def _shard(state: dict[str, torch.Tensor], limit: int) -> list[dict[str, torch.Tensor]]:
    shards: list[dict[str, torch.Tensor]] = [{}]
    size = 0
    for k, t in state.items():
        n = t.numel() * t.element_size()
        if shards[-1] and size + n > limit:
            shards.append({})
            size = 0
        shards[-1][k] = t
        size += n
    return shards


def _write_weights(folder: Path, shards: list[dict[str, torch.Tensor]], safe: bool) -> list[str]:
    import json

    single, index, ext, base = (SAFE_WEIGHTS, SAFE_INDEX, "safetensors", "model") if safe else (
        PT_WEIGHTS, PT_INDEX, "bin", "pytorch_model")

    def write(tensors: dict[str, torch.Tensor], path: Path) -> None:
        if safe:
            from safetensors.torch import save_file

            save_file(tensors, str(path), metadata={"format": "pt"})
        else:
            torch.save(tensors, str(path))

    if len(shards) == 1:
        write(shards[0], folder / single)
        return [single]
    names, weight_map, total = [], {}, 0
    for i, shard in enumerate(shards, 1):
        name = f"{base}-{i:05d}-of-{len(shards):05d}.{ext}"
        write(shard, folder / name)
        names.append(name)
        for k, t in shard.items():
            weight_map[k] = name
            total += t.numel() * t.element_size()
    (folder / index).write_text(json.dumps(
        {"metadata": {"total_size": total}, "weight_map": weight_map}, indent=2) + "\n")
    return [*names, index]


__all__ = ["PreTrainedModel", "resolve_dtype", "resolve_device"]
