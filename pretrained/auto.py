"""Auto classes: pick the config and model class from ``config.json``'s ``model_type``.

Each model module registers itself by what it defines: ``MODEL_CLASSES`` (head name -> class)
and the ``PretrainedConfig`` subclasses whose ``model_type`` it serves. There is no list to keep:
the first lookup imports every module under :mod:`pretrained.models` (about 20 ms, once; never
at ``import pretrained``) and reads them, so a new architecture is one new file.

Example::

    >>> from pretrained import AutoConfig, AutoModelForCausalLM        # doctest: +SKIP
    >>> model = AutoModelForCausalLM.from_pretrained("path/to/gpt2")   # doctest: +SKIP
"""

from __future__ import annotations

import functools
import importlib
import inspect
import os
import pkgutil
from types import ModuleType
from typing import Any, ClassVar

from .config import PretrainedConfig, read_config_dict
from .errors import InvalidInputError, RemoteCodeError, UnknownModelTypeError

_HUB_KW = ("revision", "cache_dir", "local_files_only", "token")


@functools.lru_cache(maxsize=None)
def _registry() -> dict[str, str]:
    """model_type -> the module under pretrained.models whose config class serves it."""
    from . import models

    found: dict[str, str] = {}
    for info in pkgutil.iter_modules(models.__path__):
        module = importlib.import_module(f"{models.__name__}.{info.name}")
        if not hasattr(module, "MODEL_CLASSES"):
            continue   # shared pieces (heads.py), not an architecture
        for obj in vars(module).values():
            if isinstance(obj, type) and issubclass(obj, PretrainedConfig) \
                    and obj.__module__ == module.__name__ and obj.model_type:
                found[obj.model_type] = module.__name__
    return found


def supported_model_types() -> list[str]:
    """The model types whose implementation is present."""
    return sorted(_registry())


def model_module(model_type: str) -> ModuleType:
    """The module implementing ``model_type``."""
    name = _registry().get(model_type)
    if name is None:
        raise UnknownModelTypeError(
            f"model_type {model_type!r} is not supported by pretrained; supported types: "
            f"{', '.join(supported_model_types())}"
        )
    return importlib.import_module(name)


def config_class(model_type: str) -> type[PretrainedConfig]:
    module = model_module(model_type)
    for obj in vars(module).values():
        if isinstance(obj, type) and issubclass(obj, PretrainedConfig) and obj.model_type == model_type:
            return obj
    raise UnknownModelTypeError(f"{module.__name__} defines no config for {model_type!r}")


def _model_type_of(data: dict[str, Any], source: str) -> str:
    model_type = data.get("model_type")
    if isinstance(model_type, str) and model_type in supported_model_types():
        return model_type
    if "auto_map" in data:
        raise RemoteCodeError(
            f"{source!r} needs custom code from its repository (config.json has 'auto_map'"
            f"{', model_type ' + repr(model_type) if model_type else ''}); pretrained never "
            f"executes remote code. Supported model types: {', '.join(supported_model_types())}"
        )
    if model_type is None:
        for arch in data.get("architectures") or []:
            for mt in supported_model_types():
                if any(c.__name__ == arch for c in model_module(mt).MODEL_CLASSES.values()):
                    return mt
        raise UnknownModelTypeError(
            f"{source!r}: config.json has no 'model_type' (and no known 'architectures'); add "
            f"\"model_type\": one of {', '.join(supported_model_types())}"
        )
    raise UnknownModelTypeError(
        f"{source!r} has model_type {model_type!r}, which pretrained does not support; supported "
        f"types: {', '.join(supported_model_types())}"
    )


class AutoConfig:
    """Reads ``config.json`` into the right config class.

    Example::

        >>> from pretrained import AutoConfig
        >>> AutoConfig.for_model("bert", hidden_size=64, num_attention_heads=4).hidden_size
        64
    """

    def __init__(self) -> None:
        raise TypeError("use AutoConfig.from_pretrained(...) or AutoConfig.for_model(...)")

    @classmethod
    def from_pretrained(cls, name_or_path: str | os.PathLike, *, trust_remote_code: bool = False,
                        **kwargs: Any) -> PretrainedConfig:
        _refuse_remote_code(trust_remote_code)
        hub_kw = {k: kwargs.pop(k) for k in _HUB_KW if k in kwargs}
        gguf_file = kwargs.pop("gguf_file", None)
        data = _read_config(name_or_path, gguf_file, hub_kw)
        config = config_class(_model_type_of(data, str(name_or_path))).from_dict(data, **kwargs)
        config.name_or_path = str(name_or_path)
        return config

    @classmethod
    def for_model(cls, model_type: str, **kwargs: Any) -> PretrainedConfig:
        return config_class(model_type)(**kwargs)


def _read_config(name_or_path: str | os.PathLike, gguf_file: Any, hub_kw: dict) -> dict[str, Any]:
    """config.json, or with ``gguf_file`` the config in that GGUF file's metadata."""
    if gguf_file is None:
        return read_config_dict(name_or_path, **hub_kw)
    from .gguf import gguf_config_dict

    return gguf_config_dict(name_or_path, gguf_file, **hub_kw)


def _refuse_remote_code(trust_remote_code: bool) -> None:
    if trust_remote_code:
        raise RemoteCodeError(
            "trust_remote_code=True is not supported: pretrained never runs code from a model "
            "repository. Use a model whose architecture pretrained implements."
        )


def _load_kwargs() -> set[str]:
    from .modeling import PreTrainedModel

    return set(inspect.signature(PreTrainedModel.from_pretrained).parameters) - {"cls", "name_or_path"}


class _AutoModel:
    head: ClassVar[str] = "model"

    def __init__(self) -> None:
        raise TypeError(f"use {type(self).__name__}.from_pretrained(...) or .from_config(...)")

    @classmethod
    def _model_class(cls, model_type: str):
        classes = model_module(model_type).MODEL_CLASSES
        if cls.head not in classes:
            having = [name for name, c in _HEADS.items() if c.head in classes]
            raise InvalidInputError(
                f"model_type {model_type!r} has no {cls.head} head in pretrained, so "
                f"{cls.__name__} cannot load it; it can be loaded with: {', '.join(having)}"
            )
        return classes[cls.head]

    @classmethod
    def from_pretrained(cls, name_or_path: str | os.PathLike, **kwargs: Any):
        """Load the checkpoint with the class its ``model_type`` and this head call for.
        Keyword arguments are those of ``PreTrainedModel.from_pretrained``; any others
        override config fields (``num_labels=3``)."""
        _refuse_remote_code(kwargs.pop("trust_remote_code", False))
        config = kwargs.pop("config", None)
        load_kw = {k: kwargs.pop(k) for k in list(kwargs) if k in _load_kwargs()}
        from .modeling import check_load_options

        if config is None:
            hub_kw = {k: load_kw[k] for k in _HUB_KW if k in load_kw}
            data = _read_config(name_or_path, load_kw.get("gguf_file"), hub_kw)
            model_type = _model_type_of(data, str(name_or_path))
            check_load_options(config_class(model_type), kwargs)
            config = config_class(model_type).from_dict(data, **kwargs)
            config.name_or_path = str(name_or_path)
        else:
            check_load_options(type(config), kwargs)
            for key, value in kwargs.items():
                setattr(config, key, value)
        model_class = cls._model_class(config.model_type)
        return model_class.from_pretrained(name_or_path, config=config, **load_kw)

    @classmethod
    def from_config(cls, config: PretrainedConfig, *, torch_dtype: Any = None):
        """A randomly initialised model of the right class for ``config``."""
        return cls._model_class(config.model_type).from_config(config, torch_dtype=torch_dtype)


class AutoModel(_AutoModel):
    """The bare backbone (``last_hidden_state``)."""

    head = "model"


class AutoModelForCausalLM(_AutoModel):
    head = "causal-lm"


class AutoModelForMaskedLM(_AutoModel):
    head = "masked-lm"


class AutoModelForSequenceClassification(_AutoModel):
    head = "sequence-classification"


class AutoModelForTokenClassification(_AutoModel):
    head = "token-classification"


class AutoModelForQuestionAnswering(_AutoModel):
    head = "question-answering"


class AutoModelForSeq2SeqLM(_AutoModel):
    """Encoder-decoder models with a language-model head (T5, BART, Marian, ...): translation,
    summarization; ``model.generate(**batch)`` runs the encoder once."""

    head = "seq2seq-lm"


class AutoModelForSpeechSeq2Seq(_AutoModel):
    """Speech encoder-decoders with a language-model head (Whisper): ``model.generate(
    input_features=...)`` transcribes, the encoder run once."""

    head = "speech-seq2seq"


class AutoModelForCTC(_AutoModel):
    """Speech encoders with a CTC head over characters (Wav2Vec2, HuBERT): ``logits`` per frame."""

    head = "ctc"


class AutoModelForAudioClassification(_AutoModel):
    """Audio encoders with a classification head (Wav2Vec2, HuBERT, AST, Whisper's encoder)."""

    head = "audio-classification"


class AutoModelForImageClassification(_AutoModel):
    """Image classifiers (ViT, DeiT, ConvNeXt, ResNet, Swin): ``logits`` per image."""

    head = "image-classification"


class AutoModelForSemanticSegmentation(_AutoModel):
    """Semantic segmenters (SegFormer): per-pixel ``logits`` (B, num_labels, h, w); the image
    processor's ``post_process_semantic_segmentation`` turns them into a class map per picture."""

    head = "semantic-segmentation"


class AutoModelForUniversalSegmentation(_AutoModel):
    """Universal segmenters (Mask2Former: ``class_queries_logits`` and ``masks_queries_logits`` per
    query; DETR's segmentation head: ``logits`` and ``pred_masks``); the image processor's
    ``post_process_semantic/instance/panoptic_segmentation`` turn them into maps and segments."""

    head = "universal-segmentation"


class AutoModelForImageSegmentation(_AutoModel):
    """What the image-segmentation pipeline loads: the first head the model type has among
    ``heads`` (universal -- Mask2Former, DETR --, instance, image and semantic segmentation). A
    segmentation model registers its class under one of these names in its ``MODEL_CLASSES``."""

    head = None   # one of several: the pipeline checks which it got
    heads = ("universal-segmentation", "instance-segmentation", "image-segmentation", "semantic-segmentation")

    @classmethod
    def _model_class(cls, model_type: str):
        classes = model_module(model_type).MODEL_CLASSES
        for head in cls.heads:
            if head in classes:
                return classes[head]
        raise InvalidInputError(f"model_type {model_type!r} has no segmentation head in pretrained (one of "
                                f"{', '.join(cls.heads)}); it has: {', '.join(sorted(classes))}")


class AutoModelForObjectDetection(_AutoModel):
    """Object detectors (DETR, YOLOS): ``logits`` and normalised ``pred_boxes`` per query."""

    head = "object-detection"


class AutoBackbone(_AutoModel):
    """Feature maps per stage for detectors and segmenters (ResNet): ``out_features=[...]`` picks
    the stages (``model(pixel_values).feature_maps``); loads from a classifier's checkpoint too.
    A model's ``backbone_config`` builds one with :func:`pretrained.layers.backbone.load_backbone`."""

    head = "backbone"


class AutoModelForSpeechRecognition(_AutoModel):
    """What the speech-recognition pipeline loads: Whisper's generation head, else a CTC head."""

    head = None   # either of two: the pipeline checks which it got
    heads = ("speech-seq2seq", "ctc")

    @classmethod
    def _model_class(cls, model_type: str):
        classes = model_module(model_type).MODEL_CLASSES
        for head in cls.heads:
            if head in classes:
                return classes[head]
        raise InvalidInputError(f"model_type {model_type!r} has no speech-recognition head (Whisper's "
                                "generation or a CTC head) in pretrained")


_HEADS = {c.__name__: c for c in (AutoModel, AutoModelForCausalLM, AutoModelForMaskedLM,
                                  AutoModelForSequenceClassification,
                                  AutoModelForTokenClassification, AutoModelForQuestionAnswering,
                                  AutoModelForSeq2SeqLM, AutoModelForSpeechSeq2Seq, AutoModelForCTC,
                                  AutoModelForAudioClassification, AutoModelForImageClassification,
                                  AutoModelForObjectDetection, AutoBackbone)}
_HEADS[AutoModelForUniversalSegmentation.__name__] = AutoModelForUniversalSegmentation
_HEADS[AutoModelForSemanticSegmentation.__name__] = AutoModelForSemanticSegmentation
