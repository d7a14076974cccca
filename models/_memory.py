"""How much memory training a spec takes, from its shapes alone, and how much a trial may use.

`training_memory` walks the network as `complexity` does (each block's own
`count`, through a `Counter` that also adds up activations), so a study can
check thousands of sampled specs against a machine before training any. What
a training step holds at its peak:

- weights: the parameters and the BatchNorm running statistics (plus their
  bf16 copies, which autocast caches for the forward pass);
- gradients: one per parameter;
- optimizer state: `OPTIMIZER_STATE_COPIES` tensors per parameter;
- activations: what autograd saves for the backward pass, per image, times
  the batch size. Each conv's output (kept by the BatchNorm after it) and each
  BatchNorm's output (kept by the in-place ReLU and the next conv, or replaced
  by the residual sum) are counted once, except a projection shortcut's
  BatchNorm, whose output goes straight into the sum; a max pool keeps its
  int64 indices too, and ResNet-D's average pool its output. The backward pass adds the gradient flowing through the largest of
  them, counted twice (the one it reads and the one it writes).

It is an estimate, not a bound. tests/models/test_memory.py holds the
activations within 10% of what autograd saves (3% on the cases there), and
the total within a factor of two of the peak resident memory measured on CPU,
where the allocator and the backward pass's temporaries add up to 2x for
small networks. It leaves out what does not grow with the network: the CUDA
context, the Python process and the dataset.
"""

from __future__ import annotations

import dataclasses
import os
from dataclasses import dataclass
from pathlib import Path

from ._blocks import BLOCK_TYPES, SHORTCUT_MODULES, AvgPoolProjection, Projection
from ._complexity import Counter
from ._network import _block_kwargs, _stem_has_bn, natural_image_size
from ._spec import ArchSpec
from ._stems import STEM_TYPES

FP32_BYTES = 4
# State tensors per parameter: SGD keeps one momentum buffer (torch.optim.SGD,
# none at momentum 0, counted anyway); AdamW two moments, exp_avg and
# exp_avg_sq (Loshchilov & Hutter 2019, arXiv 1711.05101). A test holds these
# to what torch allocates for every optimizer in space.OPTIMIZERS.
OPTIMIZER_STATE_COPIES = {"sgd": 1, "adamw": 2}
# A max pool keeps the int64 index of each output's maximum for the backward pass.
_INDEX_BYTES = 8
# In eval mode, a residual block holds its input (for the shortcut) and at most
# two intermediate outputs at once.
_INFERENCE_LIVE_TENSORS = 3


def format_bytes(count: float) -> str:
    """Binary units: 512 KiB, 45.2 MiB, 11.7 GiB."""
    for scale, unit in ((2**40, "TiB"), (2**30, "GiB"), (2**20, "MiB"), (2**10, "KiB")):
        if abs(count) >= scale:
            return f"{count / scale:.3g} {unit}"
    return f"{count:.0f} B"


@dataclass(frozen=True)
class MemoryEstimate:
    """Bytes one network holds at its peak: weights, gradients, optimizer state and activations."""

    weights: int
    gradients: int
    optimizer_state: int
    activations: int
    batch_size: int
    training: bool = True   # False: a forward pass without gradients (export, evaluation)

    @property
    def total(self) -> int:
        """The sum of the four parts, in bytes."""
        return self.weights + self.gradients + self.optimizer_state + self.activations

    def times(self, copies: int) -> "MemoryEstimate":
        """`copies` networks at once, each part `copies` times (seeds packed into one model: search.pack_seeds)."""
        return dataclasses.replace(self, weights=self.weights * copies, gradients=self.gradients * copies,
                                   optimizer_state=self.optimizer_state * copies,
                                   activations=self.activations * copies)

    def short(self) -> str:
        """"1.2 GiB to train" (or "to run" without gradients)."""
        return f"{format_bytes(self.total)} to {'train' if self.training else 'run'}"

    def describe(self) -> str:
        """"1.2 GiB (weights 45 MiB, gradients 45 MiB, optimizer 45 MiB, activations 1.1 GiB at batch 128)"."""
        parts = [f"weights {format_bytes(self.weights)}"]
        if self.training:
            parts += [f"gradients {format_bytes(self.gradients)}", f"optimizer {format_bytes(self.optimizer_state)}"]
        parts.append(f"activations {format_bytes(self.activations)} at batch {self.batch_size}")
        return f"{format_bytes(self.total)} ({', '.join(parts)})"


class _ActivationCounter(Counter):
    """A Counter that also adds up, per image, the activations autograd keeps, and the BN buffers."""

    def __init__(self, side: int) -> None:
        super().__init__()
        self.buffers = 0        # BatchNorm running mean and variance (and its step counter)
        self.saved = 0          # activation elements per image
        self.index_bytes = 0    # max-pool indices per image
        self.largest = 0        # the largest single activation, elements per image
        self.side = side        # spatial side of the latest output
        self.last_bn = 0        # elements the latest BN counted

    def keep(self, elements: int) -> None:
        """One activation tensor that stays alive until the backward pass reaches it."""
        self.saved += elements
        self.largest = max(self.largest, elements)

    def conv(self, size: int, c_in: int, c_out: int, kernel: int, stride: int = 1,
             groups: int = 1, bias: bool = False) -> int:
        out = super().conv(size, c_in, c_out, kernel, stride, groups, bias)
        self.side = out
        self.keep(c_out * out * out)
        return out

    def bn(self, channels: int) -> None:
        super().bn(channels)
        self.buffers += 2 * channels + 1
        # Every BN here reads the latest conv output, or a block input of that same side.
        self.last_bn = channels * self.side * self.side
        self.keep(self.last_bn)

    def linear(self, c_in: int, c_out: int) -> None:
        super().linear(c_in, c_out)
        self.keep(c_in + 2 * c_out)  # the pooled features, the logits and the loss's log-softmax

    def shortcut(self, option: str, size: int, c_in: int, c_out: int, stride: int) -> None:
        """Correct for a block's projection shortcut, which its `count` counted last, as any conv and BN."""
        factory = SHORTCUT_MODULES[option][0 if stride != 1 or c_in != c_out else 1]
        if factory in (Projection, AvgPoolProjection):
            self.saved -= self.last_bn  # the BN output goes into the sum, which keeps nothing
        if factory is AvgPoolProjection and stride > 1:
            pooled = Counter.avg_pool_2x2_ceil(size)
            self.keep(c_in * pooled * pooled)  # the 1x1 conv keeps its pooled input

    def stem_max_pool(self, channels: int) -> None:
        """The stem's 3x3/2 max pool: its output and the index of each maximum."""
        self.side = Counter.max_pool(self.side)
        self.keep(channels * self.side * self.side)
        self.index_bytes += _INDEX_BYTES * channels * self.side * self.side


def _walk(spec: ArchSpec, image_size: int) -> _ActivationCounter:
    """Count the network in the order `ResNet.__init__` builds it (as `count_parts` does)."""
    if not isinstance(image_size, int) or isinstance(image_size, bool) or image_size < 1:
        raise ValueError(f"image_size: got {image_size!r}; allowed: a positive integer")
    counter = _ActivationCounter(image_size)
    counter.keep(spec.in_channels * image_size * image_size)  # the normalised input batch
    stem = STEM_TYPES[spec.stem]
    counter.side = stem.count(counter, image_size, spec.in_channels, spec.stem_width)
    if _stem_has_bn(spec):
        counter.bn(spec.stem_width)
    if stem.max_pool:
        counter.stem_max_pool(spec.stem_width)
    block_type = BLOCK_TYPES[spec.block]
    channels = spec.stem_width
    for index, stage in enumerate(spec.stages):
        kwargs = _block_kwargs(spec, index)
        for position in range(stage.depth):
            stride = stage.stride if position == 0 else 1
            size = counter.side
            counter.side = block_type.count(counter, size, channels, stage.width, stride, **kwargs)
            counter.shortcut(spec.shortcut, size, channels, stage.width, stride)
            channels = stage.width
    if spec.is_preact:
        counter.bn(channels)
    counter.linear(channels, spec.num_classes)
    return counter


def _image_size(spec: ArchSpec, image_size: int | None) -> int:
    return natural_image_size(spec) if image_size is None else image_size


def _check_batch(batch_size: int) -> None:
    if not isinstance(batch_size, int) or isinstance(batch_size, bool) or batch_size < 1:
        raise ValueError(f"batch_size: got {batch_size!r}; allowed: a positive integer")


def training_memory(spec: ArchSpec, image_size: int | None = None, batch_size: int = 128,
                    optimizer: str = "sgd", activation_bytes: int = FP32_BYTES) -> MemoryEstimate:
    """Estimated peak bytes of one training step of `spec` at `batch_size` (see the module docstring).

    `activation_bytes` is 4 for fp32 and 2 under bf16 autocast (weights,
    gradients and optimizer state stay fp32 either way).
    """
    if optimizer not in OPTIMIZER_STATE_COPIES:
        raise ValueError(f"optimizer: got {optimizer!r}; allowed: {', '.join(OPTIMIZER_STATE_COPIES)}")
    if activation_bytes not in (2, 4):
        raise ValueError(f"activation_bytes: got {activation_bytes!r}; allowed: 4 (fp32) or 2 (bf16)")
    _check_batch(batch_size)
    counter = _walk(spec, _image_size(spec, image_size))
    weights = FP32_BYTES * (counter.params + counter.buffers)
    if activation_bytes < FP32_BYTES:
        weights += activation_bytes * counter.params  # autocast's cached low-precision copies
    per_image = activation_bytes * (counter.saved + 2 * counter.largest) + counter.index_bytes
    return MemoryEstimate(
        weights=weights, gradients=FP32_BYTES * counter.params,
        optimizer_state=FP32_BYTES * counter.params * OPTIMIZER_STATE_COPIES[optimizer],
        activations=batch_size * per_image, batch_size=batch_size)


def inference_memory(spec: ArchSpec, image_size: int | None = None, batch_size: int = 1,
                     copies: int = 1) -> MemoryEstimate:
    """Estimated peak bytes of a forward pass without gradients, with `copies` copies of the weights."""
    _check_batch(batch_size)
    counter = _walk(spec, _image_size(spec, image_size))
    per_image = FP32_BYTES * _INFERENCE_LIVE_TENSORS * counter.largest
    return MemoryEstimate(weights=copies * FP32_BYTES * (counter.params + counter.buffers), gradients=0,
                          optimizer_state=0, activations=batch_size * per_image, batch_size=batch_size,
                          training=False)


# ------------------------------------------------------------------ budgets
@dataclass(frozen=True)
class MemoryBudget:
    """The bytes one trial may use, and where that number comes from; None where it cannot be known here."""

    bytes: int | None
    source: str   # "this machine's 23.4 GiB / 2 trials at once"

    def describe(self) -> str:
        """"11.7 GiB (this machine's 23.4 GiB / 2 trials at once)", or why it is unknown."""
        return self.source if self.bytes is None else f"{format_bytes(self.bytes)} ({self.source})"

    def refusal(self, estimate: MemoryEstimate) -> str | None:
        """Why `estimate` does not fit, as a phrase; None when it fits or the budget is unknown."""
        if self.bytes is None or estimate.total <= self.bytes:
            return None
        verb = "to train" if estimate.training else "to run"
        return f"needs about {estimate.describe()} {verb}, more than the {self.describe()} it may use"


def host_memory() -> int:
    """Bytes of memory of this machine, or of its container's limit (cgroup) where that is lower."""
    total = os.sysconf("SC_PAGE_SIZE") * os.sysconf("SC_PHYS_PAGES")
    for limit in ("/sys/fs/cgroup/memory.max", "/sys/fs/cgroup/memory/memory.limit_in_bytes"):
        try:
            text = Path(limit).read_text().strip()
        except OSError:
            continue
        if text.isdigit():
            total = min(total, int(text))
    return total


def host_cpus() -> int:
    """Cores this process may use (affinity-aware)."""
    try:
        return len(os.sched_getaffinity(0))
    except AttributeError:  # not Linux
        return os.cpu_count() or 1


def gpu_memory(index: int = 0) -> tuple[int, str] | None:
    """(bytes, name) of CUDA device `index`, or None where torch sees no such device."""
    import torch

    if not torch.cuda.is_available() or index >= torch.cuda.device_count():
        return None
    properties = torch.cuda.get_device_properties(index)
    return properties.total_memory, properties.name


def trial_memory_budget(gpus: float, cpus: float, max_concurrent: int | None = None) -> MemoryBudget:
    """The memory of one trial that holds `gpus` GPUs and `cpus` CPUs on this machine.

    A GPU trial trains on one device and gets `gpus` of it (a fraction shares
    it). A CPU trial gets this machine's memory divided by the trials that run
    at once: `max_concurrent`, or as many as the cores allow (cores // cpus).
    """
    if gpus > 0:
        device = gpu_memory()
        if device is None:
            return MemoryBudget(None, "unknown: the trials hold GPUs and this machine has none")
        share = min(gpus, 1.0)
        total, name = device
        portion = "all" if share == 1 else f"{share:g}"
        return MemoryBudget(int(total * share), f"{portion} of the {format_bytes(total)} of one {name}")
    at_once = max(1, int(host_cpus() // cpus))
    if max_concurrent is not None:
        at_once = min(at_once, max_concurrent)
    total = host_memory()
    trials = "1 trial" if at_once == 1 else f"{at_once} trials"
    return MemoryBudget(total // at_once, f"this machine's {format_bytes(total)} / {trials} at once")


def device_memory_budget(device: str) -> MemoryBudget:
    """The memory of one run alone on `device` ("cpu", "cuda", "cuda:1"): the whole device or machine."""
    kind, _, index = str(device).partition(":")
    if kind == "cuda":
        found = gpu_memory(int(index or 0))
        if found is None:
            return MemoryBudget(None, f"unknown: torch sees no {device}")
        total, name = found
        return MemoryBudget(total, f"all of the {format_bytes(total)} of {device} ({name})")
    total = host_memory()
    return MemoryBudget(total, f"this machine's {format_bytes(total)}")
