"""Named architectures, kept as data (timm's byobnet style), not one function per variant."""

from __future__ import annotations

from typing import Any

from ._spec import ArchSpec


def _imagenet(depths: tuple[int, ...], block: str, **extra: Any) -> dict[str, Any]:
    # torchvision widths: 64..512 for basic blocks, 4x that at the bottleneck output.
    expansion = 4 if block == "bottleneck" else 1
    widths = (64 * expansion, 128 * expansion, 256 * expansion, 512 * expansion)
    return {
        "stages": [{"depth": d, "width": w, "stride": s}
                   for d, w, s in zip(depths, widths, (1, 2, 2, 2))],
        "block": block, "shortcut": "B", "stem": "imagenet", "stem_width": 64,
        "num_classes": 1000, **extra,
    }


def _cifar(depth: int, shortcut: str) -> dict[str, Any]:
    # He et al. 2015, Sec. 4.2: 6n+2 layers, widths 16/32/64 on 32x32, option A.
    blocks_per_stage = (depth - 2) // 6
    return {
        "stages": [{"depth": blocks_per_stage, "width": w, "stride": s}
                   for w, s in ((16, 1), (32, 2), (64, 2))],
        "block": "basic", "shortcut": shortcut, "stem": "cifar", "stem_width": 16,
        "num_classes": 10,
    }


_PRESETS: dict[str, dict[str, Any]] = {
    "resnet18": _imagenet((2, 2, 2, 2), "basic"),
    "resnet34": _imagenet((3, 4, 6, 3), "basic"),
    "resnet50": _imagenet((3, 4, 6, 3), "bottleneck"),
    # The paper's original ResNet-50 strides the first 1x1 conv of a stage.
    "resnet50_stride_1x1": _imagenet((3, 4, 6, 3), "bottleneck", bottleneck_stride="1x1"),
    "resnet101": _imagenet((3, 4, 23, 3), "bottleneck"),
    "resnet152": _imagenet((3, 8, 36, 3), "bottleneck"),
    # 32 groups of 4 channels in the first stage: inner width 128 = 0.5 x 256.
    "resnext50_32x4d": _imagenet((3, 4, 6, 3), "bottleneck", bottleneck_ratio=0.5, groups=32),
    "resnext101_32x8d": _imagenet((3, 4, 23, 3), "bottleneck", bottleneck_ratio=1.0, groups=32),
    # Twice the inner width of ResNet-50, same outputs (Zagoruyko & Komodakis 2016).
    "wide_resnet50_2": _imagenet((3, 4, 6, 3), "bottleneck", bottleneck_ratio=0.5),
    "wide_resnet101_2": _imagenet((3, 4, 23, 3), "bottleneck", bottleneck_ratio=0.5),
    "resnet50_d": _imagenet((3, 4, 6, 3), "bottleneck", stem="deep", shortcut="D"),
    **{f"cifar_resnet{d}": _cifar(d, "A") for d in (20, 32, 44, 56, 110, 1202)},
    **{f"cifar_plain{d}": _cifar(d, "none") for d in (20, 32, 44, 56, 110)},
}


def presets() -> list[str]:
    """Names of every preset, sorted."""
    return sorted(_PRESETS)


def preset(name: str) -> ArchSpec:
    """The ArchSpec of a named preset; an unknown name lists the valid ones."""
    if name not in _PRESETS:
        raise ValueError(f"preset: got {name!r}; allowed: {', '.join(presets())}")
    return ArchSpec.from_dict(_PRESETS[name])
