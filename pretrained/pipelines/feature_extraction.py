"""Sentence embeddings: a transformer's token states pooled into one vector per text.

:func:`sentence_embeddings` works with any encoder and tokenizer; :func:`load_sentence_embedder`
reads a sentence-transformers folder (``modules.json``, ``1_Pooling/config.json``, optional
``Dense`` and ``Normalize`` modules, ``sentence_bert_config.json``) and returns a callable
:class:`SentenceEmbedder` set up the way that folder says.

Pooling always uses the attention mask: padding never changes a text's embedding.

Example::

    >>> from pretrained.pipelines.feature_extraction import load_sentence_embedder
    >>> embed = load_sentence_embedder("path/to/all-MiniLM-L6-v2")          # doctest: +SKIP
    >>> e = embed(["A man is eating food.", "A man is eating a piece of bread."])  # doctest: +SKIP
    >>> round(float(e[0] @ e[1]), 4)                                        # doctest: +SKIP
    0.7553
"""

from __future__ import annotations

import json
import os
from collections.abc import Callable, Sequence
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import torch
import torch.nn.functional as F
from torch import nn

from ..errors import CheckpointError, ConfigError, InvalidInputError
from .base import Pipeline

__all__ = [
    "POOLING_MODES",
    "pool",
    "sentence_embeddings",
    "SentenceEmbedder",
    "SentenceConfig",
    "read_sentence_config",
    "load_sentence_embedder",
    "FeatureExtractionPipeline",
]

# sentence-transformers' Pooling config keys, in the order it concatenates them.
_CONFIG_KEYS = {
    "cls": "pooling_mode_cls_token",
    "max": "pooling_mode_max_tokens",
    "mean": "pooling_mode_mean_tokens",
    "mean_sqrt_len_tokens": "pooling_mode_mean_sqrt_len_tokens",
    "weightedmean": "pooling_mode_weightedmean_tokens",
    "lasttoken": "pooling_mode_lasttoken",
}
POOLING_MODES = tuple(_CONFIG_KEYS)
_ALIASES = {
    "cls_token": "cls", "mean_tokens": "mean", "max_tokens": "max",
    "mean_sqrt_len": "mean_sqrt_len_tokens", "weightedmean_tokens": "weightedmean",
    "last": "lasttoken", "last_token": "lasttoken",
}  # fmt: skip


def _modes(pooling: str | Sequence[str] | None) -> list[str]:
    names = ["mean"] if pooling is None else [pooling] if isinstance(pooling, str) else list(pooling)
    modes = [_ALIASES.get(n, n) for n in names]
    bad = [n for n, m in zip(names, modes) if m not in _CONFIG_KEYS]
    if bad or not modes:
        raise InvalidInputError(
            f"unknown pooling {bad or names!r}; choose from {', '.join(POOLING_MODES)} "
            "(or a list of them, concatenated)"
        )
    return modes


def pool(
    hidden: torch.Tensor,
    attention_mask: torch.Tensor | None,
    pooling: str | Sequence[str] = "mean",
) -> torch.Tensor:
    """Pool token states ``(B, T, H)`` into ``(B, H)`` (``(B, k*H)`` for ``k`` modes).

    Positions where ``attention_mask`` is 0 are ignored by every mode except ``cls``, which
    takes position 0 as sentence-transformers does.
    """
    if hidden.dim() != 3:
        raise InvalidInputError(f"hidden states must be (batch, tokens, hidden), got shape {tuple(hidden.shape)}")
    b, t, _ = hidden.shape
    if attention_mask is None:
        attention_mask = torch.ones(b, t, dtype=torch.long, device=hidden.device)
    if tuple(attention_mask.shape) != (b, t):
        raise InvalidInputError(
            f"attention_mask has shape {tuple(attention_mask.shape)}, expected {(b, t)} to match the hidden states"
        )
    keep = attention_mask.to(hidden.device) != 0  # (B, T)
    m = keep.unsqueeze(-1).to(hidden.dtype)  # (B, T, 1)
    count = m.sum(dim=1).clamp(min=1e-9)  # (B, 1)
    out = []
    for mode in _modes(pooling):
        if mode == "cls":
            out.append(hidden[:, 0])
        elif mode == "max":
            filled = hidden.masked_fill(~keep.unsqueeze(-1), torch.finfo(hidden.dtype).min)
            out.append(filled.max(dim=1).values)
        elif mode == "mean":
            out.append((hidden * m).sum(dim=1) / count)
        elif mode == "mean_sqrt_len_tokens":
            out.append((hidden * m).sum(dim=1) / count.sqrt())
        elif mode == "weightedmean":  # later tokens weigh more (position 1..T)
            w = m * torch.arange(1, t + 1, device=hidden.device, dtype=hidden.dtype).view(1, t, 1)
            out.append((hidden * w).sum(dim=1) / w.sum(dim=1).clamp(min=1e-9))
        else:  # lasttoken: the last kept position, whichever side the padding is on
            pos = torch.arange(t, device=hidden.device).expand(b, t)
            last = torch.where(keep, pos, torch.zeros_like(pos)).argmax(dim=1)
            out.append(hidden[torch.arange(b, device=hidden.device), last])
    return out[0] if len(out) == 1 else torch.cat(out, dim=-1)


def _check_texts(texts: str | Sequence[str]) -> list[str]:
    if isinstance(texts, str):
        return [texts]
    if not isinstance(texts, Sequence):
        raise InvalidInputError(f"texts must be a string or a list of strings, not {type(texts).__name__}")
    for i, text in enumerate(texts):
        if not isinstance(text, str):
            raise InvalidInputError(f"texts[{i}] is a {type(text).__name__}, expected a string")
    return list(texts)


def _device_of(model: nn.Module) -> torch.device:
    for p in model.parameters():
        return p.device
    return torch.device("cpu")


@torch.no_grad()
def sentence_embeddings(
    model: nn.Module,
    tokenizer: Callable[..., Any],
    texts: str | Sequence[str],
    *,
    pooling: str | Sequence[str] | None = None,
    normalize: bool | None = None,
    batch_size: int = 32,
    max_length: int | None = None,
    dense: Sequence[nn.Module] = (),
) -> torch.Tensor:
    """Embed ``texts`` with ``model`` (an encoder returning ``last_hidden_state``).

    ``pooling`` defaults to ``"mean"``; ``normalize`` (L2, default off) is applied last, after
    the optional ``dense`` layers. Texts are batched by length and returned in input order:
    ``(N, H)`` float32 for a list, ``(H,)`` for a single string.
    """
    single = isinstance(texts, str)
    texts = _check_texts(texts)
    if not isinstance(batch_size, int) or isinstance(batch_size, bool) or batch_size < 1:
        raise InvalidInputError(f"batch_size must be a positive integer, got {batch_size!r}")
    modes = _modes(pooling)
    if not texts:
        width = getattr(getattr(model, "config", None), "hidden_size", 0) * len(modes)
        return torch.empty(0, width)
    was_training = model.training
    model.eval()
    device = _device_of(model)
    order = sorted(range(len(texts)), key=lambda i: -len(texts[i]))  # similar lengths together
    chunks = []
    try:
        for start in range(0, len(order), batch_size):
            batch = [texts[i] for i in order[start : start + batch_size]]
            kw: dict[str, Any] = {"padding": True, "truncation": True, "return_tensors": "pt"}
            if max_length is not None:
                kw["max_length"] = max_length
            enc = tokenizer(batch, **kw)
            inputs = {
                k: enc[k].to(device)
                for k in ("input_ids", "attention_mask", "token_type_ids")
                if k in enc and enc[k] is not None
            }
            out = model(**inputs)
            hidden = out.last_hidden_state if hasattr(out, "last_hidden_state") else out[0]
            emb = pool(hidden, inputs.get("attention_mask"), modes)
            for layer in dense:
                emb = layer(emb)
            chunks.append(emb.float())
    finally:
        model.train(was_training)
    emb = torch.cat(chunks)[torch.argsort(torch.tensor(order))]
    if normalize:
        emb = F.normalize(emb, p=2, dim=-1)
    return emb[0] if single else emb


class SentenceEmbedder:
    """A model, its tokenizer and its pooling: ``embedder(texts) -> (N, H)`` tensor."""

    def __init__(
        self,
        model: nn.Module,
        tokenizer: Callable[..., Any],
        *,
        pooling: str | Sequence[str] = "mean",
        normalize: bool = False,
        dense: Sequence[nn.Module] = (),
        max_length: int | None = None,
        lowercase: bool = False,
        batch_size: int = 32,
    ) -> None:
        self.model = model
        self.tokenizer = tokenizer
        self.pooling = _modes(pooling)
        self.normalize = normalize
        self.dense = list(dense)
        self.max_length = max_length
        self.lowercase = lowercase
        self.batch_size = batch_size

    def __repr__(self) -> str:
        return (
            f"SentenceEmbedder(pooling={self.pooling}, normalize={self.normalize}, "
            f"dense={len(self.dense)}, max_length={self.max_length})"
        )

    def __call__(self, texts: str | Sequence[str], *, batch_size: int | None = None) -> torch.Tensor:
        if self.lowercase:
            texts = texts.lower() if isinstance(texts, str) else [t.lower() for t in _check_texts(texts)]
        return sentence_embeddings(
            self.model, self.tokenizer, texts, pooling=self.pooling, normalize=self.normalize,
            batch_size=batch_size or self.batch_size, max_length=self.max_length, dense=self.dense,
        )  # fmt: skip

    encode = __call__

    def similarity(self, texts: Sequence[str], others: Sequence[str] | None = None) -> torch.Tensor:
        """Cosine similarity matrix ``(len(texts), len(others or texts))``."""
        a = F.normalize(self(list(_check_texts(texts))), dim=-1)
        b = a if others is None else F.normalize(self(list(_check_texts(others))), dim=-1)
        return a @ b.T


# --- reading a sentence-transformers folder ---------------------------------------------------
def _read_json(files, name: str) -> Any:
    path = files.get(name)
    if path is None:
        return None
    try:
        return json.loads(Path(path).read_text(encoding="utf-8"))
    except (OSError, ValueError) as e:
        raise ConfigError(f"{path}: not readable JSON ({e})") from None


_ACTIVATIONS: dict[str, Callable[[], nn.Module]] = {
    "torch.nn.modules.linear.Identity": nn.Identity,
    "torch.nn.modules.activation.Tanh": nn.Tanh,
    "torch.nn.modules.activation.ReLU": nn.ReLU,
    "torch.nn.modules.activation.GELU": nn.GELU,
    "torch.nn.modules.activation.Sigmoid": nn.Sigmoid,
}


def _load_dense(files, path: str) -> nn.Module:
    cfg = _read_json(files, f"{path}/config.json")
    if not isinstance(cfg, dict) or "in_features" not in cfg or "out_features" not in cfg:
        raise ConfigError(f"Dense module {path!r}: config.json with in_features/out_features is missing")
    act_name = cfg.get("activation_function", "torch.nn.modules.linear.Identity")
    if act_name not in _ACTIVATIONS:
        raise ConfigError(
            f"Dense module {path!r}: activation {act_name!r} is not supported "
            f"(supported: {', '.join(sorted(_ACTIVATIONS))})"
        )
    linear = nn.Linear(int(cfg["in_features"]), int(cfg["out_features"]), bias=bool(cfg.get("bias", True)))
    weights = files.get(f"{path}/model.safetensors")
    if weights is not None:
        from safetensors.torch import load_file

        state = load_file(str(weights))
    elif (weights := files.get(f"{path}/pytorch_model.bin")) is not None:
        state = torch.load(weights, map_location="cpu", weights_only=True)
    else:
        raise CheckpointError(f"Dense module {path!r}: no model.safetensors or pytorch_model.bin")
    state = {k.removeprefix("linear."): v for k, v in state.items()}
    try:
        linear.load_state_dict(state)
    except RuntimeError as e:
        raise CheckpointError(f"Dense module {path!r}: weights do not fit: {e}") from None
    return nn.Sequential(linear, _ACTIVATIONS[act_name]()).eval()


@dataclass
class SentenceConfig:
    """How a sentence-transformers folder turns token states into a sentence vector."""

    pooling: list[str] = field(default_factory=lambda: ["mean"])
    normalize: bool = False
    dense: list[nn.Module] = field(default_factory=list)
    max_length: int | None = None
    lowercase: bool = False


def read_sentence_config(name_or_path: str | os.PathLike, **hub_kw: Any) -> SentenceConfig:
    """Read ``modules.json``, ``1_Pooling/config.json``, Dense/Normalize modules and
    ``sentence_bert_config.json`` of a folder or hub id. Without ``modules.json`` the folder is
    taken as a plain encoder with mean pooling, as sentence-transformers does."""
    from ..io.hub import check_relative_filename, resolve

    files = resolve(name_or_path, **hub_kw)
    modules = _read_json(files, "modules.json")
    if modules is None:
        modules = [
            {"type": "sentence_transformers.models.Transformer", "path": ""},
            {"type": "sentence_transformers.models.Pooling", "path": None},
        ]
    if not isinstance(modules, list):
        raise ConfigError(f"{name_or_path}: modules.json must be a list of modules")
    out = SentenceConfig()
    for module in sorted(modules, key=lambda m: m.get("idx", 0)):
        kind = str(module.get("type", "")).rsplit(".", 1)[-1]
        path = (module.get("path") or "").strip("/")
        if path:
            check_relative_filename(path)
        if kind == "Transformer":
            if path:
                raise ConfigError(
                    f"{name_or_path}: the transformer lives in sub-folder {path!r}; load that "
                    "folder's model directly, then use sentence_embeddings()"
                )
        elif kind == "Pooling":
            cfg = _read_json(files, f"{path}/config.json") if path else None
            if cfg is not None:
                out.pooling = [mode for mode, key in _CONFIG_KEYS.items() if cfg.get(key)]
                if not out.pooling:
                    raise ConfigError(f"{name_or_path}: {path}/config.json enables no pooling mode")
        elif kind == "Dense":
            out.dense.append(_load_dense(files, path))
        elif kind == "Normalize":
            out.normalize = True
        else:
            raise ConfigError(
                f"{name_or_path}: modules.json has a {module.get('type')!r} module, which is not "
                "supported (supported: Transformer, Pooling, Dense, Normalize)"
            )
    st_config = _read_json(files, "sentence_bert_config.json") or {}
    out.max_length = st_config.get("max_seq_length")
    out.lowercase = bool(st_config.get("do_lower_case"))
    return out


def load_sentence_embedder(
    name_or_path: str | os.PathLike,
    *,
    revision: str | None = None,
    local_files_only: bool = False,
    token: str | bool | None = None,
    device: str | torch.device | None = None,
    batch_size: int = 32,
) -> SentenceEmbedder:
    """Load a sentence-transformers model (folder or hub id) as a :class:`SentenceEmbedder`.

    Without ``modules.json`` the folder is taken as a plain encoder with mean pooling."""
    from ..auto import AutoModel
    from ..tokenization import AutoTokenizer

    hub_kw: dict[str, Any] = {}
    if revision is not None:
        hub_kw["revision"] = revision
    if local_files_only:
        hub_kw["local_files_only"] = True
    if token is not None:
        hub_kw["token"] = token
    st = read_sentence_config(name_or_path, **hub_kw)
    model = AutoModel.from_pretrained(name_or_path, **hub_kw)
    tokenizer = AutoTokenizer.from_pretrained(name_or_path, **hub_kw)
    dense = st.dense
    if device is not None:
        model.to(device)
        dense = [d.to(device) for d in dense]
    model.eval()
    return SentenceEmbedder(
        model, tokenizer, pooling=st.pooling, normalize=st.normalize, dense=dense,
        max_length=st.max_length, lowercase=st.lowercase, batch_size=batch_size,
    )  # fmt: skip


# --- the pipeline ------------------------------------------------------------------------------
class FeatureExtractionPipeline(Pipeline):
    """Token embeddings (``"feature-extraction"``) or sentence embeddings (``"sentence-embeddings"``).

    Without ``pooling`` (the reference's feature-extraction): the encoder's last hidden states,
    a nested list ``[1][T][H]`` per input (a ``(1, T, H)`` tensor with ``return_tensors=True``).
    Unlike the reference, a batched call gives each input its own length, not the batch's
    padded one.

    With ``pooling`` ("mean", "cls", "max", ... or a list; "auto" reads the model folder's
    sentence-transformers config, as the "sentence-embeddings" task does by default): one vector
    ``[H]`` per input (a tensor with ``return_tensors=True``), after the folder's Dense layers,
    L2-normalised when ``normalize`` (default: as the folder says). Sentence mode truncates inputs
    to the folder's ``max_seq_length`` (else the model's length), as sentence-transformers does.

    Example::

        >>> from pretrained import pipeline                                        # doctest: +SKIP
        >>> emb = pipeline("sentence-embeddings")      # all-MiniLM-L6-v2, fetched once  # doctest: +SKIP
        >>> emb.similarity(["A man is eating food.", "A man is eating a piece of bread."])[0, 1]  # doctest: +SKIP
        tensor(0.7553)
    """

    task = "feature-extraction"
    token_outputs = ("last_hidden_state",)

    def __init__(self, model: nn.Module, tokenizer: Any, **kwargs: Any) -> None:
        self._sentence: SentenceConfig | None = None
        super().__init__(model, tokenizer, **kwargs)
        prefix = getattr(model, "base_model_prefix", "")
        inner = getattr(model, prefix, None) if prefix else None
        self._encoder = inner if isinstance(inner, nn.Module) else model  # a head's encoder

    def _sentence_config(self) -> SentenceConfig:
        if self._sentence is None:
            source = getattr(getattr(self.model, "config", None), "name_or_path", "")
            self._sentence = read_sentence_config(source) if source else SentenceConfig()
            for layer in self._sentence.dense:
                layer.to(self.device)
        return self._sentence

    def _sanitize_parameters(self, *, truncation: bool | str | None = None, tokenize_kwargs: dict | None = None,
                             return_tensors: bool | None = None, pooling: str | Sequence[str] | None = None,
                             normalize: bool | None = None) -> tuple[dict, dict, dict]:
        pre: dict[str, Any] = dict(tokenize_kwargs or {})
        if truncation is not None:
            if "truncation" in pre:
                raise InvalidInputError("truncation is given twice (as a parameter and in tokenize_kwargs)")
            pre["truncation"] = truncation
        post: dict[str, Any] = {}
        if return_tensors is not None:
            post["return_tensors"] = bool(return_tensors)
        if pooling is not None:
            if pooling == "auto":
                st = self._sentence_config()
                post.update(pooling=st.pooling, normalize=st.normalize, dense=st.dense)
                pre.setdefault("truncation", True)
                pre.setdefault("max_length", st.max_length or self.max_length)
                pre["lowercase"] = st.lowercase
            else:
                post["pooling"] = _modes(pooling)
                pre.setdefault("truncation", True)
        if normalize is not None:
            post["normalize"] = bool(normalize)
        return pre, {}, post

    def _is_single(self, inputs: Any) -> bool:
        return isinstance(inputs, str)

    def preprocess(self, item: Any, lowercase: bool = False, **tokenize_kwargs: Any) -> list[dict[str, Any]]:
        if not isinstance(item, str):
            raise InvalidInputError(f"a feature-extraction input must be a string, got {type(item).__name__}")
        enc = self.tokenizer(item.lower() if lowercase else item, **tokenize_kwargs)
        self._check_length(len(enc["input_ids"]), "pass truncation=True to cut it to the model's length")
        return [dict(enc)]

    def _forward(self, batch: dict[str, torch.Tensor]) -> dict[str, torch.Tensor]:
        out = self._encoder(**batch)
        return {"last_hidden_state": out.last_hidden_state if hasattr(out, "last_hidden_state") else out[0]}

    def postprocess(self, output: dict[str, Any], return_tensors: bool = False,
                    pooling: list[str] | None = None, normalize: bool = False,
                    dense: Sequence[nn.Module] = ()) -> Any:
        hidden = output["last_hidden_state"][None]  # (1, T, H)
        if pooling is None:
            if normalize:
                raise InvalidInputError("normalize=True needs pooling= (one vector per input to normalise)")
            x = hidden
        else:
            with torch.inference_mode():
                x = pool(hidden, None, pooling)
                for layer in dense:
                    x = layer(x.to(next(layer.parameters()).device)).float().cpu()
            x = (F.normalize(x, p=2, dim=-1) if normalize else x)[0]
        return x if return_tensors else x.tolist()

    def similarity(self, texts: Sequence[str], others: Sequence[str] | None = None) -> torch.Tensor:
        """Cosine similarity matrix ``(len(texts), len(others or texts))`` of sentence embeddings
        (needs ``pooling``, as the "sentence-embeddings" task sets)."""
        if "pooling" not in self._params[2]:
            raise InvalidInputError("similarity() needs sentence embeddings: build the pipeline with "
                                    "pooling='auto' (or use the 'sentence-embeddings' task)")
        a = F.normalize(torch.stack(self(list(_check_texts(texts)), return_tensors=True)), dim=-1)
        if others is None:
            return a @ a.T
        return a @ F.normalize(torch.stack(self(list(_check_texts(others)), return_tensors=True)), dim=-1).T
