"""Peak CUDA memory of real training steps against `models.training_memory`'s estimate, per model.

For each model, in fp32 and under bf16 autocast: build it on the GPU
(channels_last, as `fit` does), take a few SGD steps (`space.OPTIMIZERS`,
momentum state included) on a batch of random images made on the device, and
read `torch.cuda.max_memory_allocated` from a reset before the model was
built. The estimate is `models.training_memory(spec, image_size, batch,
"sgd", activation_bytes=2 under bf16 else 4)`, the figure the runner's memory
budget (`Study.memory_budget`, `search.train.memory_refusal`) refuses trials
by. Prints measured / estimate per row (1.0 = exact; above 1 the budget lets
through trials that may not fit). The batch of images itself is counted in
the measurement, not in the estimate.

torch tracks peak allocations on CUDA only: without a CUDA device this says
so in one line and exits 0.

    .venv/bin/python bench/gpu_memory.py [--models cifar_resnet20 resnet50] [--steps 3]
"""

from __future__ import annotations

import argparse
import gc

import torch
import torch.nn.functional as F

import models
from search.train import _autocast, pick_device
from space import OPTIMIZERS, TrainSettings

MODELS = ("cifar_resnet20", "cifar_resnet110", "cifar_plain20", "resnet18", "resnet50", "resnext50_32x4d")
CIFAR_BATCH, IMAGENET_BATCH = 128, 64
MIB = 2**20


def measured_peak(spec: models.ArchSpec, image_size: int, batch: int, amp: str, steps: int,
                  device: torch.device) -> int:
    """Bytes torch allocated at the peak of `steps` SGD steps of `spec`, counted from before it was built."""
    gc.collect()
    torch.cuda.empty_cache()
    torch.cuda.reset_peak_memory_stats(device)
    before = torch.cuda.memory_allocated(device)
    model = models.build(spec).to(device=device, memory_format=torch.channels_last)
    optimizer = OPTIMIZERS["sgd"](list(model.parameters()), TrainSettings())
    generator = torch.Generator(device=device).manual_seed(0)
    x = torch.randn(batch, 3, image_size, image_size, device=device, generator=generator)
    x = x.contiguous(memory_format=torch.channels_last)
    y = torch.randint(0, spec.num_classes, (batch,), device=device, generator=generator)
    for _ in range(steps):
        with _autocast(device, amp):
            loss = F.cross_entropy(model(x), y)
        optimizer.zero_grad(set_to_none=True)
        loss.backward()
        optimizer.step()
    torch.cuda.synchronize(device)
    peak = torch.cuda.max_memory_allocated(device) - before
    del model, optimizer, x, y, loss
    return peak


def main() -> int:
    """One row per model and precision: estimate, measured peak, their ratio."""
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--models", nargs="+", default=list(MODELS), help=f"presets (default: {' '.join(MODELS)})")
    parser.add_argument("--steps", type=int, default=3, help="SGD steps per measurement (default 3)")
    parser.add_argument("--device", default="cuda")
    args = parser.parse_args()
    if not torch.cuda.is_available():
        print("gpu_memory: torch sees no CUDA device here (it tracks peak allocations on CUDA only); nothing measured")
        return 0
    device = pick_device(args.device, "--device")
    print(f"device: {device} ({torch.cuda.get_device_name(device)}), torch {torch.__version__}, {args.steps} SGD "
          f"steps, channels_last")
    print(f"{'model':18s} {'image':>5s} {'batch':>5s} {'amp':>4s} {'estimate MiB':>12s} {'measured MiB':>12s} "
          f"{'measured/estimate':>17s}")
    for name in args.models:
        spec = models.preset(name)
        image_size = models.natural_image_size(spec)
        batch = CIFAR_BATCH if spec.stem == "cifar" else IMAGENET_BATCH
        for amp in ("off", "bf16"):
            estimate = models.training_memory(spec, image_size, batch, "sgd",
                                              activation_bytes=2 if amp == "bf16" else 4).total
            try:
                peak = measured_peak(spec, image_size, batch, amp, args.steps, device)
                measured, ratio = f"{peak / MIB:12.1f}", f"{peak / estimate:17.3f}"
            except torch.OutOfMemoryError:
                measured, ratio = f"{'out of memory':>12s}", f"{'-':>17s}"
            print(f"{name:18s} {image_size:5d} {batch:5d} {amp:>4s} {estimate / MIB:12.1f} {measured} {ratio}")
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
