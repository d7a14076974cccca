"""The generator: `build(spec)` turns an ArchSpec into a torchvision-compatible ResNet.

A network is a stem, then stages of blocks, then a head (the pycls AnyNet
layout). Only the first block of a stage gets the stride and the changing
shortcut, as in torchvision and the paper. `norm_layer` (default
`nn.BatchNorm2d`) builds every normalisation of the network, as torchvision's
`ResNet(norm_layer=...)` does; the module names stay the same (`bn1`, ...).
"""

from __future__ import annotations

from dataclasses import dataclass

import torch
from torch import nn

from ._blocks import BLOCK_TYPES, NormLayer
from ._complexity import Complexity, Counter
from ._spec import ArchSpec
from ._stems import STEM_TYPES


def natural_image_size(spec: ArchSpec) -> int:
    """The input side the spec's stem was designed for."""
    return STEM_TYPES[spec.stem].natural_image_size


def _stem_has_bn(spec: ArchSpec) -> bool:
    # A pre-activation CIFAR net goes straight from conv1 into the first block's
    # BN-ReLU (He et al. 2016, Sec. 4); every other stem ends in BN-ReLU.
    return not (spec.is_preact and spec.stem == "cifar")


def _block_kwargs(spec: ArchSpec, stage_index: int) -> dict[str, object]:
    # The keywords the spec's block type takes: only bottlenecks have an inner
    # width, groups and a stride placement (the spec rejects them elsewhere).
    if not spec.is_bottleneck:
        return {"shortcut": spec.shortcut}
    stage = spec.stages[stage_index]
    return {
        "shortcut": spec.shortcut,
        "inner": spec.inner_width(stage),
        "groups": spec.groups,
        "stride_on": spec.bottleneck_stride,
    }


# Norms whose scale and shift start as the identity (SyncBatchNorm is no BatchNorm2d).
_AFFINE_NORMS = (nn.BatchNorm2d, nn.SyncBatchNorm, nn.GroupNorm)


class ResNet(nn.Module):
    """A residual (or plain) network built from one ArchSpec; `self.spec` keeps it."""

    def __init__(self, spec: ArchSpec, *, norm_layer: NormLayer = nn.BatchNorm2d) -> None:
        super().__init__()
        self.spec = spec
        stem = STEM_TYPES[spec.stem]
        self.conv1 = stem.build(spec.in_channels, spec.stem_width, norm_layer)
        has_bn = _stem_has_bn(spec)
        self.bn1 = norm_layer(spec.stem_width) if has_bn else nn.Identity()
        self.relu = nn.ReLU(inplace=True) if has_bn else nn.Identity()
        self.maxpool = nn.MaxPool2d(3, stride=2, padding=1) if stem.max_pool else nn.Identity()

        block_type = BLOCK_TYPES[spec.block]
        channels = spec.stem_width
        for index, stage in enumerate(spec.stages):
            kwargs = _block_kwargs(spec, index)
            blocks = []
            for position in range(stage.depth):
                stride = stage.stride if position == 0 else 1
                blocks.append(block_type(channels, stage.width, stride, norm_layer=norm_layer, **kwargs))
                channels = stage.width
            self.add_module(f"layer{index + 1}", nn.Sequential(*blocks))
        self.num_stages = len(spec.stages)

        # Pre-activation nets end with the BN-ReLU their last block left out.
        self.final_bn = norm_layer(channels) if spec.is_preact else None
        self.avgpool = nn.AdaptiveAvgPool2d(1)
        self.fc = nn.Linear(channels, spec.num_classes)
        self._init_weights()

    def _init_weights(self) -> None:
        # torchvision's init: Kaiming normal with fan-out for convs (He et al. 2015,
        # "Delving Deep into Rectifiers"), every affine norm as the identity.
        for module in self.modules():
            if isinstance(module, nn.Conv2d):
                nn.init.kaiming_normal_(module.weight, mode="fan_out", nonlinearity="relu")
            elif isinstance(module, _AFFINE_NORMS) and getattr(module, "weight", None) is not None:
                nn.init.ones_(module.weight)
                nn.init.zeros_(module.bias)
        if self.spec.zero_init_residual:
            # Each residual branch starts at zero, so each block starts as the
            # identity (Goyal et al. 2017, arXiv 1706.02677).
            for module in self.modules():
                last_bn = getattr(type(module), "last_bn", None)
                if last_bn:
                    nn.init.zeros_(getattr(module, last_bn).weight)

    def stages(self) -> list[nn.Sequential]:
        """The stage modules layer1..layerN, in order."""
        return [getattr(self, f"layer{i + 1}") for i in range(self.num_stages)]

    def forward_features(self, x: torch.Tensor) -> torch.Tensor:
        """Stem and stages: the last feature map, before pooling."""
        x = self.maxpool(self.relu(self.bn1(self.conv1(x))))
        for stage in self.stages():
            x = stage(x)
        if self.final_bn is not None:
            x = torch.relu(self.final_bn(x))
        return x

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        x = self.forward_features(x)
        return self.fc(torch.flatten(self.avgpool(x), 1))


def build(spec: ArchSpec, *, norm_layer: NormLayer = nn.BatchNorm2d) -> ResNet:
    """Build the network a spec describes, each norm made by `norm_layer(channels)`; reads no global state."""
    if not isinstance(spec, ArchSpec):
        raise TypeError(f"build() takes an ArchSpec, got {type(spec).__name__}")
    return ResNet(spec, norm_layer=norm_layer)


@dataclass(frozen=True)
class PartCount:
    """Params and MACs of one part of a network (stem, a stage, or the head)."""

    name: str
    params: int
    macs: int
    output_size: int


def count_parts(spec: ArchSpec, image_size: int | None = None) -> list[PartCount]:
    """Params and MACs of the stem, each stage and the head, walked as `ResNet.__init__` builds them."""
    size = natural_image_size(spec) if image_size is None else image_size
    if not isinstance(size, int) or isinstance(size, bool) or size < 1:
        raise ValueError(f"image_size: got {image_size!r}; allowed: a positive integer")
    parts = []
    counter = Counter()
    stem = STEM_TYPES[spec.stem]
    current = stem.count(counter, size, spec.in_channels, spec.stem_width)
    if _stem_has_bn(spec):
        counter.bn(spec.stem_width)
    if stem.max_pool:
        current = Counter.max_pool(current)
    parts.append(PartCount(f"stem ({spec.stem})", counter.params, counter.macs, current))
    block_type = BLOCK_TYPES[spec.block]
    channels = spec.stem_width
    for index, stage in enumerate(spec.stages):
        counter = Counter()
        kwargs = _block_kwargs(spec, index)
        for position in range(stage.depth):
            stride = stage.stride if position == 0 else 1
            current = block_type.count(counter, current, channels, stage.width, stride, **kwargs)
            channels = stage.width
        parts.append(PartCount(f"layer{index + 1}", counter.params, counter.macs, current))
    counter = Counter()
    if spec.is_preact:
        counter.bn(channels)
    counter.linear(channels, spec.num_classes)
    parts.append(PartCount("head (pool, fc)", counter.params, counter.macs, 1))
    return parts


def complexity(spec: ArchSpec, image_size: int | None = None) -> Complexity:
    """Params, MACs and FLOPs of `build(spec)` at `image_size` (default: the stem's natural size)."""
    parts = count_parts(spec, image_size)
    return Complexity(params=sum(p.params for p in parts), macs=sum(p.macs for p in parts),
                      image_size=natural_image_size(spec) if image_size is None else image_size)
