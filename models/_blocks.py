"""Residual blocks, shortcuts and bottleneck stride placements, each chosen by name from a table.

The tables (`BLOCK_TYPES`, `SHORTCUT_MODULES`, `STRIDE_PLACEMENTS`) are the
only place these names are written: `ArchSpec` takes its allowed values from
their keys, so adding a block touches its class and one table row.

Module names follow torchvision's `resnet.py` (conv1/bn1/conv2/bn2/conv3/bn3,
downsample.0/.1) so that its checkpoints load into the matching preset with
`strict=True`. Each class can also count its own params and MACs
(`count(...)`), mirroring its `__init__` exactly.

Every class takes its options as named keyword arguments (no `**kwargs`, so
a misspelt one raises `TypeError`) and a `norm_layer`, as torchvision's blocks
do: `norm_layer(channels)` builds each normalisation, `nn.BatchNorm2d` unless
told otherwise. The counts assume an affine norm with a scale and a shift per
channel, which BatchNorm, SyncBatchNorm and GroupNorm all are.
"""

from __future__ import annotations

from typing import Callable

import torch
import torch.nn.functional as F
from torch import nn

from ._complexity import Counter

# channels -> normalisation module, as torchvision's `norm_layer` argument.
NormLayer = Callable[[int], nn.Module]


def conv3x3(c_in: int, c_out: int, stride: int = 1, groups: int = 1) -> nn.Conv2d:
    """3x3 conv with padding 1 and no bias (a norm follows every conv)."""
    return nn.Conv2d(c_in, c_out, 3, stride=stride, padding=1, groups=groups, bias=False)


def conv1x1(c_in: int, c_out: int, stride: int = 1) -> nn.Conv2d:
    """1x1 conv with no bias."""
    return nn.Conv2d(c_in, c_out, 1, stride=stride, bias=False)


# ------------------------------------------------------ bottleneck strides
def _stride_on_3x3(stride: int) -> tuple[int, int]:
    # torchvision ("ResNet v1.5"): the 3x3 conv sees every input pixel before striding.
    return 1, stride


def _stride_on_1x1(stride: int) -> tuple[int, int]:
    # The paper (He et al. 2015): the first 1x1 conv strides, dropping 3/4 of its input.
    return stride, 1


# bottleneck_stride name -> block stride -> (stride of the first 1x1 conv, stride of the 3x3 conv).
STRIDE_PLACEMENTS: dict[str, Callable[[int], tuple[int, int]]] = {
    "3x3": _stride_on_3x3,
    "1x1": _stride_on_1x1,
}


# ---------------------------------------------------------------- shortcuts
class ZeroPadShortcut(nn.Module):
    """Option A: subsample by striding, then zero-pad the new channels half before, half after.

    Parameter-free, as in the paper's CIFAR experiments; the split of the padding
    follows the common CIFAR reproductions so that their weights load unchanged.
    """

    def __init__(self, c_in: int, c_out: int, stride: int, *, norm_layer: NormLayer | None = None) -> None:
        # norm_layer: taken so every shortcut has one signature; option A has no norm.
        super().__init__()
        self.stride = stride
        self.pad_before = (c_out - c_in) // 2
        self.pad_after = c_out - c_in - self.pad_before

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        if self.stride > 1:
            x = x[:, :, :: self.stride, :: self.stride]
        if self.pad_before or self.pad_after:
            x = F.pad(x, (0, 0, 0, 0, self.pad_before, self.pad_after))
        return x

    @staticmethod
    def count(counter: Counter, size: int, c_in: int, c_out: int, stride: int) -> None:
        """No params and no MACs."""


class Projection(nn.Sequential):
    """Options B and C: a strided 1x1 conv and a norm (`downsample.0`, `downsample.1`)."""

    def __init__(self, c_in: int, c_out: int, stride: int, *, norm_layer: NormLayer = nn.BatchNorm2d) -> None:
        super().__init__(conv1x1(c_in, c_out, stride), norm_layer(c_out))

    @staticmethod
    def count(counter: Counter, size: int, c_in: int, c_out: int, stride: int) -> None:
        """A 1x1 conv and a BN."""
        counter.conv(size, c_in, c_out, 1, stride)
        counter.bn(c_out)


class AvgPoolProjection(nn.Sequential):
    """Option D (ResNet-D, He et al. 2019 "Bag of Tricks"): average-pool, then an unstrided 1x1 conv.

    A strided 1x1 conv ignores three quarters of its input; pooling first keeps it.
    """

    def __init__(self, c_in: int, c_out: int, stride: int, *, norm_layer: NormLayer = nn.BatchNorm2d) -> None:
        pool: nn.Module = (
            nn.AvgPool2d(2, stride=2, ceil_mode=True, count_include_pad=False)
            if stride > 1 else nn.Identity()
        )
        super().__init__(pool, conv1x1(c_in, c_out), norm_layer(c_out))

    @staticmethod
    def count(counter: Counter, size: int, c_in: int, c_out: int, stride: int) -> None:
        """Pool (free), then a 1x1 conv and a BN at the pooled size."""
        if stride > 1:
            size = Counter.avg_pool_2x2_ceil(size)
        counter.conv(size, c_in, c_out, 1)
        counter.bn(c_out)


# shortcut name -> (module where dimensions change, module where they do not).
# None means the identity; "none" (plain nets) has no addition at all.
# A factory is called as factory(c_in, c_out, stride, norm_layer=...).
ShortcutFactory = Callable[..., nn.Module]
SHORTCUT_MODULES: dict[str, tuple[ShortcutFactory | None, ShortcutFactory | None]] = {
    "A": (ZeroPadShortcut, None),
    "B": (Projection, None),
    "C": (Projection, Projection),
    "D": (AvgPoolProjection, None),
    "none": (None, None),
}


def make_shortcut(option: str, c_in: int, c_out: int, stride: int, *,
                  norm_layer: NormLayer = nn.BatchNorm2d) -> nn.Module | None:
    """The `downsample` module of one block, or None for the identity (or no shortcut)."""
    changes = stride != 1 or c_in != c_out
    factory = SHORTCUT_MODULES[option][0 if changes else 1]
    return factory(c_in, c_out, stride, norm_layer=norm_layer) if factory is not None else None


def count_shortcut(counter: Counter, option: str, size: int, c_in: int, c_out: int, stride: int) -> None:
    """Count the params and MACs of the module `make_shortcut` would return."""
    changes = stride != 1 or c_in != c_out
    factory = SHORTCUT_MODULES[option][0 if changes else 1]
    if factory is not None:
        factory.count(counter, size, c_in, c_out, stride)


# ------------------------------------------------------------------- blocks
class _Residual(nn.Module):
    """Shared forward: branch plus shortcut, where the block has a shortcut at all."""

    # What ArchSpec asks of a block type: 1x1-3x3-1x1 (inner width, groups,
    # stride placement apply) and pre-activation (no BN after the addition).
    is_bottleneck = False
    is_preact = False

    def __init__(self, shortcut: str) -> None:
        super().__init__()
        self.has_shortcut = shortcut != "none"
        self.relu = nn.ReLU(inplace=True)

    def _add_shortcut(self, shortcut: str, c_in: int, c_out: int, stride: int, norm_layer: NormLayer) -> None:
        # Called after the branch's layers: torchvision registers `downsample`
        # last, and state_dict order follows registration order.
        self.downsample = make_shortcut(shortcut, c_in, c_out, stride, norm_layer=norm_layer)

    def shortcut(self, x: torch.Tensor) -> torch.Tensor:
        return x if self.downsample is None else self.downsample(x)


class BasicBlock(_Residual):
    """Two 3x3 convs (He et al. 2015, Fig. 2 left); post-activation."""

    last_bn = "bn2"

    def __init__(self, c_in: int, c_out: int, stride: int = 1, shortcut: str = "B", *,
                 norm_layer: NormLayer = nn.BatchNorm2d) -> None:
        super().__init__(shortcut)
        self.conv1 = conv3x3(c_in, c_out, stride)
        self.bn1 = norm_layer(c_out)
        self.conv2 = conv3x3(c_out, c_out)
        self.bn2 = norm_layer(c_out)
        self._add_shortcut(shortcut, c_in, c_out, stride, norm_layer)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        out = self.relu(self.bn1(self.conv1(x)))
        out = self.bn2(self.conv2(out))
        if self.has_shortcut:
            out = out + self.shortcut(x)
        return self.relu(out)

    @staticmethod
    def count(counter: Counter, size: int, c_in: int, c_out: int, stride: int, shortcut: str) -> int:
        """Count the block; return its output size."""
        out = counter.conv(size, c_in, c_out, 3, stride)
        counter.bn(c_out)
        counter.conv(out, c_out, c_out, 3)
        counter.bn(c_out)
        count_shortcut(counter, shortcut, size, c_in, c_out, stride)
        return out


class Bottleneck(_Residual):
    """1x1 reduce, 3x3 (grouped for ResNeXt), 1x1 expand (He et al. 2015, Fig. 5 right)."""

    last_bn = "bn3"
    is_bottleneck = True

    def __init__(self, c_in: int, c_out: int, stride: int = 1, shortcut: str = "B", *, inner: int,
                 groups: int = 1, stride_on: str = "3x3", norm_layer: NormLayer = nn.BatchNorm2d) -> None:
        super().__init__(shortcut)
        stride_1x1, stride_3x3 = STRIDE_PLACEMENTS[stride_on](stride)
        self.conv1 = conv1x1(c_in, inner, stride_1x1)
        self.bn1 = norm_layer(inner)
        self.conv2 = conv3x3(inner, inner, stride_3x3, groups)
        self.bn2 = norm_layer(inner)
        self.conv3 = conv1x1(inner, c_out)
        self.bn3 = norm_layer(c_out)
        self._add_shortcut(shortcut, c_in, c_out, stride, norm_layer)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        out = self.relu(self.bn1(self.conv1(x)))
        out = self.relu(self.bn2(self.conv2(out)))
        out = self.bn3(self.conv3(out))
        if self.has_shortcut:
            out = out + self.shortcut(x)
        return self.relu(out)

    @staticmethod
    def count(counter: Counter, size: int, c_in: int, c_out: int, stride: int, shortcut: str, *,
              inner: int, groups: int, stride_on: str) -> int:
        """Count the block; return its output size."""
        stride_1x1, stride_3x3 = STRIDE_PLACEMENTS[stride_on](stride)
        mid = counter.conv(size, c_in, inner, 1, stride_1x1)
        counter.bn(inner)
        out = counter.conv(mid, inner, inner, 3, stride_3x3, groups)
        counter.bn(inner)
        counter.conv(out, inner, c_out, 1)
        counter.bn(c_out)
        count_shortcut(counter, shortcut, size, c_in, c_out, stride)
        return out


class PreActBasicBlock(_Residual):
    """BN-ReLU-conv twice, with nothing after the addition (He et al. 2016, arXiv 1603.05027, Fig. 1b).

    A projection shortcut reads the pre-activated input, as in the authors' code,
    so the identity path stays clean from block to block.
    """

    last_bn = None
    is_preact = True

    def __init__(self, c_in: int, c_out: int, stride: int = 1, shortcut: str = "B", *,
                 norm_layer: NormLayer = nn.BatchNorm2d) -> None:
        super().__init__(shortcut)
        self.bn1 = norm_layer(c_in)
        self.conv1 = conv3x3(c_in, c_out, stride)
        self.bn2 = norm_layer(c_out)
        self.conv2 = conv3x3(c_out, c_out)
        self._add_shortcut(shortcut, c_in, c_out, stride, norm_layer)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        pre = self.relu(self.bn1(x))
        out = self.conv1(pre)
        out = self.conv2(self.relu(self.bn2(out)))
        if self.has_shortcut:
            out = out + (x if self.downsample is None else self.downsample(pre))
        return out

    @staticmethod
    def count(counter: Counter, size: int, c_in: int, c_out: int, stride: int, shortcut: str) -> int:
        """Count the block; return its output size."""
        counter.bn(c_in)
        out = counter.conv(size, c_in, c_out, 3, stride)
        counter.bn(c_out)
        counter.conv(out, c_out, c_out, 3)
        count_shortcut(counter, shortcut, size, c_in, c_out, stride)
        return out


class PreActBottleneck(_Residual):
    """Pre-activation bottleneck: (BN-ReLU-conv) x3 for 1x1, 3x3, 1x1 (He et al. 2016)."""

    last_bn = None
    is_bottleneck = True
    is_preact = True

    def __init__(self, c_in: int, c_out: int, stride: int = 1, shortcut: str = "B", *, inner: int,
                 groups: int = 1, stride_on: str = "3x3", norm_layer: NormLayer = nn.BatchNorm2d) -> None:
        super().__init__(shortcut)
        stride_1x1, stride_3x3 = STRIDE_PLACEMENTS[stride_on](stride)
        self.bn1 = norm_layer(c_in)
        self.conv1 = conv1x1(c_in, inner, stride_1x1)
        self.bn2 = norm_layer(inner)
        self.conv2 = conv3x3(inner, inner, stride_3x3, groups)
        self.bn3 = norm_layer(inner)
        self.conv3 = conv1x1(inner, c_out)
        self._add_shortcut(shortcut, c_in, c_out, stride, norm_layer)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        pre = self.relu(self.bn1(x))
        out = self.conv1(pre)
        out = self.conv2(self.relu(self.bn2(out)))
        out = self.conv3(self.relu(self.bn3(out)))
        if self.has_shortcut:
            out = out + (x if self.downsample is None else self.downsample(pre))
        return out

    @staticmethod
    def count(counter: Counter, size: int, c_in: int, c_out: int, stride: int, shortcut: str, *,
              inner: int, groups: int, stride_on: str) -> int:
        """Count the block; return its output size."""
        stride_1x1, stride_3x3 = STRIDE_PLACEMENTS[stride_on](stride)
        counter.bn(c_in)
        mid = counter.conv(size, c_in, inner, 1, stride_1x1)
        counter.bn(inner)
        out = counter.conv(mid, inner, inner, 3, stride_3x3, groups)
        counter.bn(inner)
        counter.conv(out, inner, c_out, 1)
        count_shortcut(counter, shortcut, size, c_in, c_out, stride)
        return out


# block name -> block class.
BLOCK_TYPES: dict[str, type[_Residual]] = {
    "basic": BasicBlock,
    "bottleneck": Bottleneck,
    "preact_basic": PreActBasicBlock,
    "preact_bottleneck": PreActBottleneck,
}
