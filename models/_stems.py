"""Stems, chosen by name from one table: how each builds `conv1`, counts it, and what input it expects.

`ArchSpec` takes its allowed `stem` values from the keys of `STEM_TYPES`, and
`models.build` and `models.complexity` read everything else about a stem here.
A stem is given the two spec fields it reads (in_channels, stem_width), not the
spec: `_spec` imports this table, so this module does not import `_spec`.
Every builder takes the block's `norm_layer`; only the deep stem has a norm
inside `conv1` (the `bn1` after it is the network's).
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import Callable

from torch import nn

from ._blocks import NormLayer, conv3x3
from ._complexity import Counter


def _cifar_stem(c_in: int, width: int, norm_layer: NormLayer) -> nn.Module:
    # He et al. 2015, Sec. 4.2: one 3x3 conv, no pooling, on 32x32 inputs.
    return conv3x3(c_in, width)


def _imagenet_stem(c_in: int, width: int, norm_layer: NormLayer) -> nn.Module:
    return nn.Conv2d(c_in, width, 7, stride=2, padding=3, bias=False)


def _deep_stem(c_in: int, width: int, norm_layer: NormLayer) -> nn.Module:
    # ResNet-C (He et al. 2019, "Bag of Tricks"): three 3x3 convs cost about the
    # same as one 7x7 but see through more nonlinearities. `conv1` stays a single
    # name (a Sequential) so `bn1` and the torchvision layout survive.
    half = width // 2
    return nn.Sequential(
        conv3x3(c_in, half, stride=2), norm_layer(half), nn.ReLU(inplace=True),
        conv3x3(half, half), norm_layer(half), nn.ReLU(inplace=True),
        conv3x3(half, width),
    )


def _count_cifar_stem(counter: Counter, size: int, c_in: int, width: int) -> int:
    return counter.conv(size, c_in, width, 3)


def _count_imagenet_stem(counter: Counter, size: int, c_in: int, width: int) -> int:
    return counter.conv(size, c_in, width, 7, stride=2)


def _count_deep_stem(counter: Counter, size: int, c_in: int, width: int) -> int:
    half = width // 2
    size = counter.conv(size, c_in, half, 3, stride=2)
    counter.bn(half)
    size = counter.conv(size, half, half, 3)
    counter.bn(half)
    return counter.conv(size, half, width, 3)


@dataclass(frozen=True)
class Stem:
    """One stem: its `conv1` builder, that builder's counter, the pooling after it, and its input side."""

    build: Callable[[int, int, NormLayer], nn.Module]  # (in_channels, stem_width, norm_layer) -> conv1
    count: Callable[[Counter, int, int, int], int]     # (counter, side, in_channels, stem_width) -> output side
    max_pool: bool                                     # a 3x3/2 max pool follows conv1-bn1-relu
    natural_image_size: int                            # CIFAR nets see 32x32, ImageNet nets 224x224


# stem name -> Stem.
STEM_TYPES: dict[str, Stem] = {
    "cifar": Stem(_cifar_stem, _count_cifar_stem, max_pool=False, natural_image_size=32),
    "imagenet": Stem(_imagenet_stem, _count_imagenet_stem, max_pool=True, natural_image_size=224),
    "deep": Stem(_deep_stem, _count_deep_stem, max_pool=True, natural_image_size=224),
}
