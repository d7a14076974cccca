"""The analytic counter equals torch's FlopCounterMode and parameter numel on every model.

Its speed (screening thousands of specs) is measured by bench/complexity_speed.py, not asserted here.
"""

from __future__ import annotations

import pytest
import torch
from torch.utils.flop_counter import FlopCounterMode

from models import ArchSpec, build, complexity, natural_image_size, preset, presets


# Up to this image size the model runs on the CPU, above it on the meta device (shapes only, no arithmetic):
# at CIFAR sizes the CPU's kernels take a quarter of the time of the meta device's shape functions, which run
# in Python, and at ImageNet sizes the arithmetic would take longer than the shapes.
CPU_MAX_IMAGE_SIZE = 64


def _measured(spec: ArchSpec, image_size: int) -> tuple[int, int]:
    """(params, MACs) measured by torch's FlopCounterMode on one forward pass; it reports 2 FLOPs per MAC."""
    with torch.device("cpu" if image_size <= CPU_MAX_IMAGE_SIZE else "meta"):
        model = build(spec).eval()  # eval: BN accepts a 1x1 map at batch 1
        x = torch.zeros(1, spec.in_channels, image_size, image_size)
    with torch.no_grad(), FlopCounterMode(display=False) as counter:
        model(x)
    return sum(p.numel() for p in model.parameters()), counter.get_total_flops() // 2


@pytest.mark.parametrize("name", presets())
def test_analytic_equals_flop_counter_on_presets(name: str) -> None:
    spec = preset(name)
    figures = complexity(spec)
    assert (figures.params, figures.macs) == _measured(spec, natural_image_size(spec))


def test_analytic_equals_flop_counter_on_random_specs(sampled_specs: list[ArchSpec]) -> None:
    for spec in sampled_specs:
        for size in (32, 57):  # an odd size exercises ceil/floor in pools and strides
            figures = complexity(spec, size)
            assert (figures.params, figures.macs) == _measured(spec, size), spec


def test_image_size_changes_macs_not_params() -> None:
    spec = preset("resnet18")
    small, large = complexity(spec, 112), complexity(spec)
    assert small.params == large.params
    assert small.macs < large.macs


def test_bad_image_size_is_a_value_error() -> None:
    with pytest.raises(ValueError, match="image_size: got 0"):
        complexity(preset("resnet18"), 0)
