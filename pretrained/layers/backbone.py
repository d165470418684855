"""Backbones: the feature maps a detector or segmenter reads from a vision model (DETR's ResNet,
Mask2Former's Swin), as the reference's ``AutoBackbone`` / ``load_backbone`` give them.

A backbone config has ``stage_names`` (``["stem", "stage1", ...]``) and ``out_features`` /
``out_indices`` (which stages' maps to return; either one, or both if they agree; neither means
the last stage). :func:`align_out_features` is the reference's alignment of the two and
:class:`BackboneConfigMixin` applies it to a config. A backbone model mixes in
:class:`BackboneMixin` (``channels``, ``out_feature_channels``...) and returns a
:class:`BackboneOutput` (``feature_maps``: one (B, C, H, W) map per out feature).

:func:`load_backbone` builds a backbone from a config object, a ``config.json``-style dict or a
parent config with ``backbone_config``. Which class serves a model type is in :data:`BACKBONES`
as ``"module:Class"`` strings, imported only when asked for (so this module imports no model
file); a new backbone family adds one line here (or calls :func:`register_backbone`). A backbone
that is no model type of the Auto classes (``"timm_backbone"``: timm's ResNets, written out in
pretrained/models/timm_resnet.py) names its config class in :data:`BACKBONE_CONFIGS`.

:class:`FrozenBatchNorm2d` / :func:`freeze_batch_norms`: DETR's batch norm with fixed statistics
and affine parameters (eps 1e-5), which a detector puts in place of a ResNet's ``nn.BatchNorm2d``.

Example::

    >>> import torch
    >>> from pretrained.layers.backbone import load_backbone
    >>> bb = load_backbone({"model_type": "resnet", "embedding_size": 8, "hidden_sizes": [16, 32],
    ...                     "depths": [1, 1], "out_features": ["stage1", "stage2"]})
    >>> bb.channels
    [16, 32]
    >>> [tuple(m.shape) for m in bb(torch.randn(1, 3, 64, 64)).feature_maps]
    [(1, 16, 16, 16), (1, 32, 8, 8)]
"""

from __future__ import annotations

import importlib
from dataclasses import dataclass
from typing import Any

import torch
from torch import nn

from ..errors import ConfigError
from ..outputs import ModelOutput

# model_type -> "module:Class" of its backbone; imported on first use only
BACKBONES: dict[str, str] = {
    "resnet": "pretrained.models.resnet:ResNetBackbone",
    "swin": "pretrained.models.swin:SwinBackbone",
    "timm_backbone": "pretrained.models.timm_resnet:TimmResNetBackbone",   # timm's ResNets, without timm
}
# model_type -> "module:Class" of the config of a backbone that is no model type of the Auto
# classes (found there otherwise)
BACKBONE_CONFIGS: dict[str, str] = {
    "timm_backbone": "pretrained.models.timm_resnet:TimmBackboneConfig",
}


def register_backbone(model_type: str, target: str) -> None:
    """Declare that ``"module:Class"`` is ``model_type``'s backbone (imported when first built)."""
    if ":" not in target:
        raise ValueError(f"register_backbone wants 'module:Class', got {target!r}")
    BACKBONES[model_type] = target


def backbone_class(model_type: str) -> type:
    """The backbone class of ``model_type``, or a named error listing the ones there are."""
    target = BACKBONES.get(model_type)
    if target is None:
        raise ConfigError(f"no backbone for model_type {model_type!r}; backbones: {', '.join(sorted(BACKBONES))}")
    return _imported(model_type, target)


def _imported(model_type: str, target: str) -> type:
    module, _, name = target.partition(":")
    try:
        return getattr(importlib.import_module(module), name)
    except (ImportError, AttributeError) as e:
        raise ConfigError(f"the backbone of model_type {model_type!r} ({target}) is not available: {e}") from None


def backbone_config(value: Any, **overrides: Any):
    """A backbone config from a config object (returned as is, ``overrides`` set on a copy),
    a dict with ``model_type`` (``config.json`` / ``backbone_config`` style), or a parent config
    that has a ``backbone_config``."""
    from ..config import PretrainedConfig

    inner = getattr(value, "backbone_config", None) if isinstance(value, PretrainedConfig) else None
    if inner is not None:
        value = inner
    if isinstance(value, dict):
        from ..auto import config_class

        model_type = value.get("model_type")
        if not isinstance(model_type, str):
            raise ConfigError(f"a backbone_config needs a 'model_type' (e.g. 'resnet'), got keys {sorted(value)}")
        target = BACKBONE_CONFIGS.get(model_type)
        cls = _imported(model_type, target) if target else config_class(model_type)
        return cls.from_dict(value, **overrides)
    if isinstance(value, PretrainedConfig):
        if not overrides:
            return value
        return type(value).from_dict(value.to_dict(), **overrides)
    raise ConfigError(f"cannot build a backbone from {type(value).__name__}; pass a config, a dict with "
                      "'model_type', or a config with a backbone_config")


def load_backbone(config: Any, **overrides: Any) -> nn.Module:
    """A randomly initialised backbone for ``config`` (see :func:`backbone_config`); load weights
    into it afterwards (or use ``<Family>Backbone.from_pretrained``). ``overrides`` set config
    fields (``out_features=["stage1", "stage4"]``)."""
    cfg = backbone_config(config, **overrides)
    return backbone_class(cfg.model_type).from_config(cfg)


# --- config side ---------------------------------------------------------------------------------
def align_out_features(stage_names: list[str], out_features: list | None,
                       out_indices: list | None) -> tuple[list[str], list[int]]:
    """The reference's alignment: from either list the other (neither: the last stage); indices
    may be negative (kept as given, as the reference keeps them). Raises :class:`ConfigError` for
    unknown names, out-of-range indices, duplicates, wrong order, or lists that disagree."""
    n = len(stage_names)
    where = f"stage_names {stage_names}"
    if out_features is not None:
        if not isinstance(out_features, list) or not all(isinstance(f, str) for f in out_features):
            raise ConfigError(f"out_features must be a list of stage names, got {out_features!r}")
        unknown = [f for f in out_features if f not in stage_names]
        if unknown:
            raise ConfigError(f"out_features {unknown} are not stages: pick from {where}")
        if len(set(out_features)) != len(out_features):
            raise ConfigError(f"out_features has duplicates: {out_features}")
        if out_features != [s for s in stage_names if s in out_features]:
            raise ConfigError(f"out_features must follow the order of {where}, got {out_features}")
    if out_indices is not None:
        if not isinstance(out_indices, list) or not all(isinstance(i, int) and not isinstance(i, bool)
                                                        for i in out_indices):
            raise ConfigError(f"out_indices must be a list of ints, got {out_indices!r}")
        bad = [i for i in out_indices if not -n <= i < n]
        if bad:
            raise ConfigError(f"out_indices {bad} are out of range for {where}")
        positive = [i % n for i in out_indices]
        if len(set(positive)) != len(positive):
            raise ConfigError(f"out_indices has duplicates: {out_indices} (stages {positive})")
        if positive != sorted(positive):
            raise ConfigError(f"out_indices must follow the order of {where}, got {out_indices}")
    if out_features is None and out_indices is None:
        return [stage_names[-1]], [n - 1]
    if out_indices is None:
        return list(out_features), [stage_names.index(f) for f in out_features]
    named = [stage_names[i] for i in out_indices]
    if out_features is not None and out_features != named:
        raise ConfigError(f"out_features {out_features} and out_indices {out_indices} (stages {named}) "
                          "disagree; give one of them")
    return named, list(out_indices)


class BackboneConfigMixin:
    """For a config with ``out_features`` / ``out_indices`` / ``stage_names`` fields: call
    :meth:`align_backbone_outputs` in ``validate`` (after ``stage_names`` is set);
    :meth:`set_out_features` changes them later (both lists realigned)."""

    @classmethod
    def from_dict(cls, data: dict[str, Any], **overrides: Any):
        # a saved config holds both lists; overriding one (from_pretrained(path, out_features=...))
        # realigns the other, as the reference's setters do
        if isinstance(data, dict) and ("out_features" in overrides) != ("out_indices" in overrides):
            data = {k: v for k, v in data.items() if k not in ("out_features", "out_indices")}
        return super().from_dict(data, **overrides)

    def align_backbone_outputs(self) -> None:
        for key in ("out_features", "out_indices"):
            if isinstance(getattr(self, key), tuple):
                object.__setattr__(self, key, list(getattr(self, key)))
        features, indices = align_out_features(self.stage_names, self.out_features, self.out_indices)
        object.__setattr__(self, "out_features", features)
        object.__setattr__(self, "out_indices", indices)

    def set_out_features(self, out_features: list[str] | None = None, out_indices: list[int] | None = None) -> None:
        """Pick the stages a backbone returns (by name or by index)."""
        features, indices = align_out_features(self.stage_names, out_features,
                                               list(out_indices) if out_indices is not None else None)
        object.__setattr__(self, "out_features", features)
        object.__setattr__(self, "out_indices", indices)


# --- model side ----------------------------------------------------------------------------------
@dataclass
class BackboneOutput(ModelOutput):
    """``feature_maps``: one (B, C, H, W) map per ``config.out_features``, in stage order;
    ``hidden_states`` (every stage's, the stem first) with ``output_hidden_states``."""

    feature_maps: tuple[torch.Tensor, ...]
    hidden_states: tuple[torch.Tensor, ...] | None = None


class BackboneMixin:
    """For a backbone model whose ``config`` aligned its out features and that sets
    ``num_features`` (channels per stage, stem first)."""

    num_features: list[int]

    @property
    def stage_names(self) -> list[str]:
        return self.config.stage_names

    @property
    def out_features(self) -> list[str]:
        return self.config.out_features

    @property
    def out_indices(self) -> list[int]:
        return self.config.out_indices

    @property
    def out_feature_channels(self) -> dict[str, int]:
        """Channels of every stage (returned or not), by name."""
        return dict(zip(self.stage_names, self.num_features))

    @property
    def channels(self) -> list[int]:
        """Channels of each returned feature map, in order (what a detector's projection reads)."""
        return [self.out_feature_channels[name] for name in self.out_features]

    def select_feature_maps(self, states: tuple[torch.Tensor, ...]) -> tuple[torch.Tensor, ...]:
        """The maps of ``out_features`` among every stage's (stem first)."""
        return tuple(h for name, h in zip(self.stage_names, states) if name in self.out_features)


# --- frozen batch norm (DETR) --------------------------------------------------------------------
class FrozenBatchNorm2d(nn.Module):
    """``x * scale + shift`` with ``scale = weight / sqrt(running_var + 1e-5)`` and ``shift =
    bias - running_mean * scale``; all four are buffers (never trained), under BatchNorm2d's
    names so a checkpoint loads into either (``num_batches_tracked`` is not kept)."""

    def __init__(self, num_features: int, eps: float = 1e-5) -> None:
        super().__init__()
        self.eps = eps
        self.register_buffer("weight", torch.ones(num_features))
        self.register_buffer("bias", torch.zeros(num_features))
        self.register_buffer("running_mean", torch.zeros(num_features))
        self.register_buffer("running_var", torch.ones(num_features))

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        scale = self.weight * (self.running_var + self.eps).rsqrt()
        shift = self.bias - self.running_mean * scale
        return x * scale.reshape(1, -1, 1, 1) + shift.reshape(1, -1, 1, 1)


def freeze_batch_norms(module: nn.Module) -> int:
    """Put a :class:`FrozenBatchNorm2d` (same statistics) in place of every ``nn.BatchNorm2d``
    under ``module``; returns how many. Meta tensors (a model built before loading) stay
    unset: the checkpoint fills them."""
    count = 0
    for name, child in list(module.named_children()):
        if isinstance(child, nn.BatchNorm2d):
            frozen = FrozenBatchNorm2d(child.num_features)
            if child.weight is not None and child.weight.device.type != "meta":
                with torch.no_grad():
                    frozen.weight.copy_(child.weight)
                    frozen.bias.copy_(child.bias)
                    frozen.running_mean.copy_(child.running_mean)
                    frozen.running_var.copy_(child.running_var)
            setattr(module, name, frozen)
            count += 1
        else:
            count += freeze_batch_norms(child)
    return count
