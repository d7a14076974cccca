"""Analytic parameter and MAC counting, mirrored by every module that `models.build` makes.

Counting by formula instead of by tracing keeps `complexity()` in the tens of
microseconds, so a study can screen thousands of sampled specs against its
params/MACs constraints before training any. The tests hold it equal to
`torch.utils.flop_counter` and to `sum(p.numel())` on every preset and on random
specs.

Like torchvision's published "GFLOPS" and the paper's "FLOPs", MACs count the
multiply-accumulates of convolutions and linear layers only; BN, ReLU, pooling
and additions are not counted.
"""

from __future__ import annotations

import math
from dataclasses import dataclass


@dataclass(frozen=True)
class Complexity:
    """Parameters, multiply-accumulates and FLOPs (2 per MAC) of one network at one input size."""

    params: int
    macs: int
    image_size: int

    @property
    def flops(self) -> int:
        """Two FLOPs per multiply-accumulate, as `torch.utils.flop_counter` counts them."""
        return 2 * self.macs

    def to_dict(self) -> dict[str, int]:
        """Plain dict with params, macs, flops and image_size."""
        return {"params": self.params, "macs": self.macs, "flops": self.flops,
                "image_size": self.image_size}


class Counter:
    """A running tally of params and MACs; modules call it with the shapes they see."""

    def __init__(self) -> None:
        self.params = 0
        self.macs = 0

    def conv(self, size: int, c_in: int, c_out: int, kernel: int, stride: int = 1,
             groups: int = 1, bias: bool = False) -> int:
        """Count one square conv with 'same'-style padding (kernel // 2); return the output size."""
        padding = kernel // 2
        out = (size + 2 * padding - kernel) // stride + 1
        weights = kernel * kernel * (c_in // groups) * c_out
        self.params += weights + (c_out if bias else 0)
        self.macs += weights * out * out
        return out

    def bn(self, channels: int) -> None:
        """BatchNorm: a scale and a shift per channel (running stats are buffers, not params)."""
        self.params += 2 * channels

    def linear(self, c_in: int, c_out: int) -> None:
        """A fully connected layer with bias."""
        self.params += c_in * c_out + c_out
        self.macs += c_in * c_out

    @staticmethod
    def max_pool(size: int, kernel: int = 3, stride: int = 2, padding: int = 1) -> int:
        """Output size of a max pool (no params, no MACs)."""
        return (size + 2 * padding - kernel) // stride + 1

    @staticmethod
    def avg_pool_2x2_ceil(size: int) -> int:
        """Output size of ResNet-D's 2x2 stride-2 average pool with ceil_mode."""
        return math.ceil(size / 2)
