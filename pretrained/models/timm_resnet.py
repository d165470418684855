"""ResNet in the timm / torchvision layout (``model_type: "timm_backbone"``, ``backbone:
"resnet50"``...): the backbone of the DETR checkpoints people have (facebook/detr-resnet-50,
-101, -dc5, -panoptic: ``use_timm_backbone=True``), written here as plain math; timm is never
imported and nothing is downloaded (the weights come from the checkpoint).

The network (He et al. 2016, "v1.5": the stride on the bottleneck's 3 x 3):

- stem: ``conv1`` (7 x 7, stride 2, padding 3, no bias) + ``bn1`` + ReLU (timm's ``act1``, the
  first feature map, stride 2), then a 3 x 3 stride-2 max pool (padding 1);
- ``layer1`` .. ``layer4``: ``depths[i]`` blocks to ``64, 128, 256, 512`` x expansion channels;
  the first block of ``layer2..4`` has stride 2 and every stage's first block a ``downsample``
  (1 x 1 conv with the stride, no bias, + batch norm: ``downsample.0`` / ``downsample.1``) when the
  size or width changes. A block is ``relu(branch(x) + shortcut(x))``:

  - basic (resnet18 / 34, expansion 1): ``conv1`` 3 x 3 (stride) + ``bn1`` + ReLU, ``conv2`` 3 x 3
    + ``bn2``;
  - bottleneck (resnet26 / 50 / 101 / 152, expansion 4): ``conv1`` 1 x 1 + ``bn1`` + ReLU,
    ``conv2`` 3 x 3 (stride) + ``bn2`` + ReLU, ``conv3`` 1 x 1 + ``bn3``.

``output_stride`` (16 or 8; 32 = none): once the network's stride reaches it, a stage's stride 2
becomes a dilation of 2 (timm's rule): that stage's first block keeps the previous dilation on its
first 3 x 3 and the others use the new one (padding = dilation). DETR's ``dilation=True`` (DC5) is
``output_stride=16``: ``layer4`` at stride 16 with dilation 2.

Not a model type of the Auto classes (no ``MODEL_CLASSES``: a timm backbone alone is not a
checkpoint people have); :mod:`pretrained.layers.backbone` maps ``"timm_backbone"`` to this
module's config and backbone, which is how DETR's ``backbone_config`` finds them.

Feature maps (timm's ``features_only``): ``stage_names`` ``["act1", "layer1", "layer2",
"layer3", "layer4"]`` (strides 2, 4, 8, 16, 32), picked by ``out_indices`` / ``out_features``
(DETR: ``[1, 2, 3, 4]``, all four stages). Batch norms are ``nn.BatchNorm2d`` (eps 1e-5; frozen
with ``freeze_batch_norm_2d``, and always inside DETR); module names are timm's, which are the
checkpoints' keys under ``model.backbone.conv_encoder.model.`` (``conv1.weight``,
``bn1.running_var``, ``layer1.0.conv1.weight``, ``layer2.0.downsample.0.weight``).

Example::

    >>> import torch
    >>> from pretrained.models.timm_resnet import TimmBackboneConfig, TimmResNetBackbone
    >>> bb = TimmResNetBackbone.from_config(TimmBackboneConfig(backbone="resnet18", out_indices=[1, 4])).eval()
    >>> [tuple(m.shape) for m in bb(torch.randn(1, 3, 64, 64)).feature_maps], bb.channels
    ([(1, 64, 16, 16), (1, 512, 2, 2)], [64, 512])
"""

from __future__ import annotations

from typing import Any

import torch
from torch import nn
from torch.nn import functional as F

from ..config import PretrainedConfig
from ..errors import UnsupportedOptionError
from ..layers.backbone import (BackboneConfigMixin, BackboneMixin, BackboneOutput, FrozenBatchNorm2d,
                               freeze_batch_norms)
from ..layers.pixels import check_image_pixels
from ..modeling import PreTrainedModel

# timm's torchvision-layout ResNets: name -> (block kind, blocks per stage)
ARCHITECTURES: dict[str, tuple[str, tuple[int, int, int, int]]] = {
    "resnet18": ("basic", (2, 2, 2, 2)),
    "resnet26": ("bottleneck", (2, 2, 2, 2)),
    "resnet34": ("basic", (3, 4, 6, 3)),
    "resnet50": ("bottleneck", (3, 4, 6, 3)),
    "resnet101": ("bottleneck", (3, 4, 23, 3)),
    "resnet152": ("bottleneck", (3, 8, 36, 3)),
}
_WIDTHS = (64, 128, 256, 512)   # per stage, before the block's expansion
_STEM = 64
_EXPANSION = {"basic": 1, "bottleneck": 4}
STAGE_NAMES = ["act1", "layer1", "layer2", "layer3", "layer4"]


def architecture(name: str | None) -> tuple[str, tuple[int, int, int, int]]:
    """(block kind, depths) of a timm model name (a pretrained tag such as ``resnet50.a1_in1k``
    names the same network), or a named error listing the ones implemented here."""
    arch = (name or "").split(".")[0]
    if arch not in ARCHITECTURES:
        raise UnsupportedOptionError(
            f"timm backbone {name!r} is not implemented here (timm is not used); supported: "
            f"{', '.join(ARCHITECTURES)} (the torchvision-layout ResNets), or a ResNet backbone_config "
            "with use_timm_backbone=False")
    return ARCHITECTURES[arch]


class TimmBackboneConfig(BackboneConfigMixin, PretrainedConfig):
    """The reference's ``TimmBackboneConfig`` fields (what DETR's config holds as its
    ``backbone_config`` for a timm backbone); ``backbone`` must name one of :data:`ARCHITECTURES`."""

    model_type = "timm_backbone"

    backbone: str | None = None
    num_channels: int = 3
    features_only: bool = True
    freeze_batch_norm_2d: bool = False
    output_stride: int | None = None
    use_pretrained_backbone: bool = False
    out_features: list | None = None
    out_indices: list | None = None
    stage_names: list | None = None

    def __init__(self, **kwargs: Any) -> None:
        for key in ("out_features", "out_indices", "stage_names"):
            if isinstance(kwargs.get(key), tuple):   # the reference takes tuples; JSON has lists
                kwargs[key] = list(kwargs[key])
        super().__init__(**kwargs)

    def validate(self) -> None:
        req = self._require
        architecture(self.backbone)
        req(self.num_channels > 0, f"num_channels must be > 0, got {self.num_channels}")
        if not self.features_only:
            raise UnsupportedOptionError("TimmBackboneConfig: features_only=False (timm's classifier output) is not "
                                         "implemented; a backbone returns feature maps: set features_only=True")
        req(self.output_stride in (None, 8, 16, 32), f"output_stride must be 8, 16 or 32, got {self.output_stride}")
        object.__setattr__(self, "stage_names", list(STAGE_NAMES))
        if self.out_features is None and self.out_indices is None:
            object.__setattr__(self, "out_indices", [-1])   # the reference's default: the last stage
        self.align_backbone_outputs()

    @property
    def block(self) -> str:
        return architecture(self.backbone)[0]

    @property
    def depths(self) -> tuple[int, int, int, int]:
        return architecture(self.backbone)[1]


def legacy_backbone_config(backbone: str | None, backbone_kwargs: dict | None, num_channels: int,
                           dilation: bool) -> dict[str, Any]:
    """The ``backbone_config`` dict the reference makes from a DETR config's legacy timm fields
    (``backbone``, default resnet50; ``backbone_kwargs``; ``num_channels``; ``dilation``: output
    stride 16), as in the facebook/detr-* config.json files."""
    kwargs = dict(backbone_kwargs or {})
    if "in_chans" in kwargs:   # timm's name, as transformers 4.x wrote it
        kwargs.setdefault("num_channels", kwargs.pop("in_chans"))
    known = {"out_indices", "num_channels", "output_stride", "features_only"}
    if set(kwargs) - known:
        raise UnsupportedOptionError(
            f"backbone_kwargs {sorted(set(kwargs) - known)} are not supported for a timm backbone "
            f"(supported: {', '.join(sorted(known | {'in_chans'}))})")
    out = {"model_type": "timm_backbone", "backbone": backbone or "resnet50",
           "num_channels": kwargs.get("num_channels", num_channels),
           "features_only": kwargs.get("features_only", True), "use_pretrained_backbone": False,
           "out_indices": list(kwargs.get("out_indices", [1, 2, 3, 4]))}
    # transformers 4.x (which wrote the hub checkpoints) applies dilation whatever backbone_kwargs say;
    # 5.x drops it when backbone_kwargs are given: 4.x's reading is kept
    if kwargs.get("output_stride") is not None or dilation:
        out["output_stride"] = kwargs.get("output_stride") or 16
    return out


def _conv(cin: int, cout: int, size: int, stride: int = 1, dilation: int = 1) -> nn.Conv2d:
    return nn.Conv2d(cin, cout, size, stride=stride, padding=dilation * (size // 2), dilation=dilation,
                     bias=False)


class BasicBlock(nn.Module):
    """Two 3 x 3 convolutions; the first carries the stride and the previous dilation."""

    def __init__(self, cin: int, width: int, stride: int, dilation: int, first_dilation: int,
                 downsample: nn.Module | None) -> None:
        super().__init__()
        self.conv1 = _conv(cin, width, 3, stride, first_dilation)
        self.bn1 = nn.BatchNorm2d(width)
        self.conv2 = _conv(width, width, 3, 1, dilation)
        self.bn2 = nn.BatchNorm2d(width)
        self.downsample = downsample

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        h = F.relu(self.bn1(self.conv1(x)))
        h = self.bn2(self.conv2(h))
        return F.relu(h + (x if self.downsample is None else self.downsample(x)))


class Bottleneck(nn.Module):
    """1 x 1 down to ``width``, 3 x 3 (the stride, the previous dilation), 1 x 1 up to 4 x width."""

    def __init__(self, cin: int, width: int, stride: int, dilation: int, first_dilation: int,
                 downsample: nn.Module | None) -> None:
        super().__init__()
        self.conv1 = _conv(cin, width, 1)
        self.bn1 = nn.BatchNorm2d(width)
        self.conv2 = _conv(width, width, 3, stride, first_dilation)
        self.bn2 = nn.BatchNorm2d(width)
        self.conv3 = _conv(width, width * 4, 1)
        self.bn3 = nn.BatchNorm2d(width * 4)
        self.downsample = downsample

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        h = F.relu(self.bn1(self.conv1(x)))
        h = F.relu(self.bn2(self.conv2(h)))
        h = self.bn3(self.conv3(h))
        return F.relu(h + (x if self.downsample is None else self.downsample(x)))


class TimmResNetBackbone(BackboneMixin, PreTrainedModel):
    """The feature maps of ``config.out_features`` (``forward(pixel_values).feature_maps``);
    ``channels`` their widths. Inside DETR its batch norms are frozen and its keys are the
    checkpoint's ``...conv_encoder.model.*``."""

    config_class = TimmBackboneConfig
    base_model_prefix = ""
    forward_inputs = frozenset({"pixel_values"})

    def __init__(self, config: TimmBackboneConfig) -> None:
        super().__init__(config)
        kind, depths = config.block, config.depths
        block = BasicBlock if kind == "basic" else Bottleneck
        expansion = _EXPANSION[kind]
        self.num_features = [_STEM] + [w * expansion for w in _WIDTHS]
        self.conv1 = nn.Conv2d(config.num_channels, _STEM, 7, stride=2, padding=3, bias=False)
        self.bn1 = nn.BatchNorm2d(_STEM)
        self.maxpool = nn.MaxPool2d(kernel_size=3, stride=2, padding=1)
        output_stride = config.output_stride or 32
        cin, net_stride, dilation, previous = _STEM, 4, 1, 1
        for i, (width, depth) in enumerate(zip(_WIDTHS, depths)):
            stride = 1 if i == 0 else 2
            if net_stride >= output_stride:   # timm: past the output stride, dilate instead of striding
                dilation *= stride
                stride = 1
            else:
                net_stride *= stride
            cout = width * expansion
            downsample = None
            if stride != 1 or cin != cout:
                downsample = nn.Sequential(nn.Conv2d(cin, cout, 1, stride=stride, bias=False), nn.BatchNorm2d(cout))
            blocks = []
            for j in range(depth):
                blocks.append(block(cin, width, stride if j == 0 else 1, dilation, previous,
                                    downsample if j == 0 else None))
                previous, cin = dilation, cout
            setattr(self, f"layer{i + 1}", nn.Sequential(*blocks))
        if config.freeze_batch_norm_2d:
            freeze_batch_norms(self)

    def _init_weights(self, module: nn.Module) -> None:
        # timm's: He-normal convolutions (fan out), unit batch norms, the last norm of each block at
        # zero (each residual branch starts as nothing)
        if isinstance(module, nn.Conv2d):
            nn.init.kaiming_normal_(module.weight, mode="fan_out", nonlinearity="relu")
        elif isinstance(module, (nn.BatchNorm2d, FrozenBatchNorm2d)):
            with torch.no_grad():
                module.weight.fill_(1.0)
                module.bias.zero_()
                module.running_mean.zero_()
                module.running_var.fill_(1.0)
        if isinstance(module, (BasicBlock, Bottleneck)):
            last = module.bn3 if isinstance(module, Bottleneck) else module.bn2
            with torch.no_grad():
                last.weight.zero_()

    def init_weights(self) -> None:
        for module in self.modules():   # blocks after their norms, so the zeroed norms stay zero
            if not isinstance(module, (BasicBlock, Bottleneck)):
                self._init_weights(module)
        for module in self.modules():
            if isinstance(module, (BasicBlock, Bottleneck)):
                self._init_weights(module)

    def get_input_embeddings(self) -> nn.Module:
        return self.conv1

    def forward(self, pixel_values: torch.Tensor, output_hidden_states: bool | None = None) -> BackboneOutput:
        keep = output_hidden_states if output_hidden_states is not None else self.config.output_hidden_states
        weight = self.conv1.weight
        x = check_image_pixels(pixel_values, self.config.num_channels, weight.dtype, "a timm ResNet backbone")
        x = F.relu(self.bn1(self.conv1(x.to(weight.device))))
        states = [x]
        x = self.maxpool(x)
        last = max(i % len(STAGE_NAMES) for i in self.config.out_indices)
        for i in range(1, 5):
            if i > last and not keep:   # as timm's features_only: the stages after the last map are not run
                break
            x = getattr(self, f"layer{i}")(x)
            states.append(x)
        return BackboneOutput(feature_maps=self.select_feature_maps(tuple(states)),
                              hidden_states=tuple(states) if keep else None)

