"""Model configuration: read and write ``config.json``.

Each architecture declares its fields as annotated class attributes with the reference's
defaults; those keys are type-checked on load. Keys we do not know are kept and written back, so
a config survives a round trip through this library untouched.

Example::

    >>> from pretrained.models.bert import BertConfig
    >>> cfg = BertConfig(hidden_size=64, num_attention_heads=4, num_labels=3)
    >>> cfg.id2label[2], cfg.num_labels
    ('LABEL_2', 3)
"""

from __future__ import annotations

import copy
import json
import os
from pathlib import Path
from typing import Any, ClassVar

from ._version import __version__
from .errors import ConfigError


CONFIG_NAME = "config.json"

_DTYPE_NAMES = {"float32", "float16", "bfloat16", "float64", "auto"}

# Fields every config has, with the reference's defaults.
_COMMON: dict[str, tuple[str, Any]] = {
    "architectures": ("list|None", None),
    "problem_type": ("str|None", None),
    "pad_token_id": ("int|list|None", None),
    "bos_token_id": ("int|list|None", None),
    "eos_token_id": ("int|list|None", None),
    "tie_word_embeddings": ("bool", True),
    "is_decoder": ("bool", False),
    "is_encoder_decoder": ("bool", False),
    "add_cross_attention": ("bool", False),
    "use_cache": ("bool", True),
    "output_hidden_states": ("bool", False),
}

MAX_LABELS = 1_000_000   # a label table this size is already ~100 MB of names


def _check_num_labels(n: Any) -> int:
    """A positive int within :data:`MAX_LABELS` (an untrusted ``num_labels: 1e9`` would build a
    billion label names before any size check could run)."""
    if isinstance(n, bool) or not isinstance(n, int) or n < 1:
        raise ConfigError(f"num_labels must be a positive integer, got {n!r}")
    if n > MAX_LABELS:
        raise ConfigError(f"num_labels={n} is more than this library takes ({MAX_LABELS:,}); "
                          "check config.json")
    return n


_PY_TYPES = {"int": int, "float": (int, float), "bool": bool, "str": str, "list": list, "dict": dict}


def _check_type(cls_name: str, key: str, spec: str, value: Any) -> Any:
    allowed = spec.replace(" ", "").split("|")
    if value is None:
        if "None" in allowed:
            return None
    else:
        for name in allowed:
            t = _PY_TYPES.get(name)
            if t is None:
                continue
            if isinstance(value, bool) and name != "bool":
                continue  # True is an int in Python, never in a config
            if isinstance(value, t):
                return float(value) if name == "float" else value
            if name == "int" and isinstance(value, float) and value.is_integer():
                return int(value)
    raise ConfigError(
        f"{cls_name}.{key}: expected {spec.replace('|', ' or ')}, got {value!r} "
        f"({type(value).__name__}); fix the value in config.json"
    )


class PretrainedConfig:
    """Base configuration. Subclasses set ``model_type`` and annotate their fields."""

    model_type: ClassVar[str] = ""
    # key in config.json -> attribute name, for checkpoints that use the reference's aliases
    attribute_map: ClassVar[dict[str, str]] = {}

    def __init__(self, **kwargs: Any) -> None:
        fields = self.fields()
        for key, (spec, default) in fields.items():
            object.__setattr__(self, key, copy.deepcopy(default))
        self._extra: dict[str, Any] = {}
        id2label = kwargs.pop("id2label", None)
        label2id = kwargs.pop("label2id", None)
        num_labels = kwargs.pop("num_labels", None)
        dtype = kwargs.pop("dtype", None)
        torch_dtype = kwargs.pop("torch_dtype", None)
        kwargs.pop("model_type", None)
        kwargs.pop("transformers_version", None)
        kwargs.pop("pretrained_version", None)
        self.name_or_path: str = kwargs.pop("_name_or_path", "")
        for key, value in kwargs.items():
            key = self.attribute_map.get(key, key)
            if key in fields:
                value = _check_type(type(self).__name__, key, fields[key][0], value)
                object.__setattr__(self, key, value)
            else:
                self._extra[key] = value
                object.__setattr__(self, key, value)
        self.dtype = self._check_dtype(dtype if dtype is not None else torch_dtype)
        if id2label is not None:
            if not isinstance(id2label, dict):
                raise ConfigError(f"id2label must be a mapping of class index to name, got {id2label!r}")
            try:
                self.id2label = {int(k): str(v) for k, v in id2label.items()}
            except (TypeError, ValueError):
                raise ConfigError(f"id2label keys must be integers, got {list(id2label)!r}") from None
        else:
            n = 2 if num_labels is None else _check_num_labels(num_labels)
            self.id2label = {i: f"LABEL_{i}" for i in range(n)}
        if num_labels is not None and num_labels != len(self.id2label):
            self.num_labels = num_labels
        if label2id is not None and isinstance(label2id, dict):
            self.label2id = {str(k): int(v) for k, v in label2id.items()}
        else:
            self.label2id = {v: k for k, v in self.id2label.items()}
        self.validate()

    # --- fields -----------------------------------------------------------------------------
    @classmethod
    def fields(cls) -> dict[str, tuple[str, Any]]:
        """Known keys of this config: name -> (type spec, default)."""
        out = dict(_COMMON)
        for klass in reversed(cls.__mro__):
            ann = klass.__dict__.get("__annotations__", {})
            for name, spec in ann.items():
                if name.startswith("_") or "ClassVar" in str(spec):
                    continue
                out[name] = (str(spec), klass.__dict__.get(name))
        return out

    def validate(self) -> None:
        """Semantic checks; subclasses add theirs (sizes > 0, heads divide the width...)."""

    def _require(self, ok: bool, message: str) -> None:
        if not ok:
            raise ConfigError(f"{type(self).__name__}: {message}")

    @staticmethod
    def _check_dtype(dtype: Any) -> str | None:
        if dtype is None:
            return None
        name = str(dtype).replace("torch.", "")
        if name not in _DTYPE_NAMES:
            raise ConfigError(f"dtype {dtype!r} is not one of {sorted(_DTYPE_NAMES)}")
        return name

    @property
    def torch_dtype(self) -> str | None:
        return self.dtype

    @property
    def num_labels(self) -> int:
        return len(self.id2label)

    @num_labels.setter
    def num_labels(self, n: int) -> None:
        _check_num_labels(n)
        if n != len(getattr(self, "id2label", {})):
            self.id2label = {i: f"LABEL_{i}" for i in range(n)}
            self.label2id = {v: k for k, v in self.id2label.items()}

    def __getattr__(self, name: str) -> Any:
        # Only reached when normal lookup fails: the reference's aliases (hidden_size -> n_embd).
        real = type(self).attribute_map.get(name)
        if real is not None:
            return getattr(self, real)
        raise AttributeError(f"{type(self).__name__} has no field {name!r}")

    def __setattr__(self, name: str, value: Any) -> None:
        name = type(self).attribute_map.get(name, name)
        object.__setattr__(self, name, value)

    # --- dict / json ------------------------------------------------------------------------
    def to_dict(self) -> dict[str, Any]:
        out: dict[str, Any] = {"model_type": self.model_type}
        for key in self.fields():
            out[key] = copy.deepcopy(getattr(self, key))
        out["id2label"] = {str(k): v for k, v in self.id2label.items()}
        out["label2id"] = dict(self.label2id)
        if self.dtype is not None:
            out["dtype"] = self.dtype
        for key, value in self._extra.items():
            out.setdefault(key, copy.deepcopy(value))
        out["pretrained_version"] = __version__
        return dict(sorted(out.items()))

    @classmethod
    def from_dict(cls, data: dict[str, Any], **overrides: Any) -> "PretrainedConfig":
        if not isinstance(data, dict):
            raise ConfigError(f"a config must be a JSON object, got {type(data).__name__}")
        mt = data.get("model_type")
        if cls.model_type and mt is not None and mt != cls.model_type:
            raise ConfigError(
                f"config.json has model_type {mt!r}, but {cls.__name__} is for {cls.model_type!r}; "
                "use AutoConfig / the Auto model classes to pick the right class"
            )
        return cls(**{**data, **overrides})

    def to_json_string(self) -> str:
        return json.dumps(self.to_dict(), indent=2, sort_keys=True) + "\n"

    def save_pretrained(self, save_directory: str | os.PathLike) -> Path:
        """Write ``config.json`` into ``save_directory`` (created if needed)."""
        path = Path(save_directory)
        path.mkdir(parents=True, exist_ok=True)
        target = path / CONFIG_NAME
        tmp = target.with_suffix(".json.tmp")
        tmp.write_text(self.to_json_string())
        os.replace(tmp, target)
        return target

    @classmethod
    def from_pretrained(cls, name_or_path: str | os.PathLike, **kwargs: Any) -> "PretrainedConfig":
        """Read ``config.json`` from a folder or hub id; keyword arguments override fields."""
        hub_kw = {k: kwargs.pop(k) for k in ("revision", "cache_dir", "local_files_only", "token")
                  if k in kwargs}
        data = read_config_dict(name_or_path, **hub_kw)
        config = cls.from_dict(data, **kwargs)
        config.name_or_path = str(name_or_path)
        return config

    def __eq__(self, other: object) -> bool:
        return isinstance(other, PretrainedConfig) and self.to_dict() == other.to_dict()

    def __repr__(self) -> str:
        return f"{type(self).__name__} {self.to_json_string()}"


def read_config_dict(name_or_path: str | os.PathLike, **hub_kw: Any) -> dict[str, Any]:
    """The parsed ``config.json`` of a model folder or hub id, with clear errors."""
    from .io.hub import resolve

    files = resolve(name_or_path, **hub_kw)
    path = files.get(CONFIG_NAME)
    if path is None:
        from .errors import ModelNotFoundError

        raise ModelNotFoundError(f"{files.name!r} has no {CONFIG_NAME}; is it a model folder?")
    return load_json(path)


def load_json(path: str | os.PathLike) -> Any:
    """Parse a JSON file; errors name the file, line and column."""
    try:
        text = Path(path).read_text(encoding="utf-8")
    except UnicodeDecodeError as e:
        raise ConfigError(f"{path}: not UTF-8 text ({e.reason})") from None
    if not text.strip():
        raise ConfigError(f"{path}: the file is empty; expected a JSON object")
    try:
        data = json.loads(text)
    except json.JSONDecodeError as e:
        raise ConfigError(f"{path}: not valid JSON (line {e.lineno}:{e.colno}: {e.msg})") from None
    except RecursionError:   # arrays or objects nested thousands deep: no config is like that
        raise ConfigError(f"{path}: JSON nested too deeply to be a config; the file is damaged "
                          "or hostile") from None
    if Path(path).name == CONFIG_NAME and not isinstance(data, dict):
        raise ConfigError(f"{path}: expected a JSON object, got a {type(data).__name__}")
    return data
