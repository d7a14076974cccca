"""Seeds packed into one model (`search.pack_seeds`) against the same seeds trained one after another.

Both train K seeds of one architecture on the same images with the same
settings, in this one process, alternating rounds so that machine noise hits
both alike: K calls of `search.train.fit` against one call of
`search._packed_seeds.fit_packed`. Each side's time covers everything a trial
does (building, training, a validation pass per epoch, the test pass).
Prints the speed-up separate / packed (HFTA, MLSys 2021, reports up to 15x on
GPUs for small models) and the largest per-seed difference in the final
training loss, as a check that both trained the same thing.

    .venv/bin/python bench/packed_seeds.py [--preset cifar_resnet20] [--seeds 4] [--device cpu|cuda]
"""

from __future__ import annotations

import argparse
import statistics
import time

import torch

import imagefeed
import models
from search._packed_seeds import fit_packed
from search.train import fit, pick_device
from space import DataSettings, TrainSettings


def _separate(spec: models.ArchSpec, trains: list[TrainSettings], data: DataSettings,
              splits: imagefeed.DatasetSplits, device: torch.device) -> tuple[float, float, list[float]]:
    """Wall and CPU seconds for K fits one after another, and each seed's last training loss."""
    losses, start, cpu_start = [], time.perf_counter(), time.process_time()
    for train in trains:
        curve: list[dict] = []
        fit(spec, train, data, report=curve.append, splits=splits, device=device)
        losses.append(curve[-1]["train_loss"])
    return time.perf_counter() - start, time.process_time() - cpu_start, losses


def _packed(spec: models.ArchSpec, trains: list[TrainSettings], data: DataSettings,
            splits: imagefeed.DatasetSplits, device: torch.device) -> tuple[float, float, list[float]]:
    """Wall and CPU seconds for one packed fit of the K seeds, and each seed's last training loss."""
    curves: list[list[dict]] = [[] for _ in trains]
    start, cpu_start = time.perf_counter(), time.process_time()
    fit_packed(spec, trains, data, reports=[curve.append for curve in curves], splits=splits, device=device)
    return time.perf_counter() - start, time.process_time() - cpu_start, [curve[-1]["train_loss"] for curve in curves]


def main() -> None:
    """Measure both, alternating, and print the speed-up."""
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--preset", default="cifar_resnet20")
    parser.add_argument("--seeds", type=int, default=4, help="K, the seeds packed into one model")
    parser.add_argument("--device", default=None, help="cpu, cuda (default: cuda if present)")
    parser.add_argument("--epochs", type=int, default=1)
    parser.add_argument("--rounds", type=int, default=2, help="alternating rounds; the median is reported")
    parser.add_argument("--batch-size", type=int, default=128)
    parser.add_argument("--train-limit", type=int, default=1024, help="training images (default 1024)")
    parser.add_argument("--threads", type=int, default=torch.get_num_threads())
    parser.add_argument("--amp", default="auto", help="auto (bf16 on CUDA), bf16, off")
    parser.add_argument("--channels-last", action="store_true", help="channels_last inputs (default: contiguous)")
    parser.add_argument("--data-root", default=None, help="folder with cifar-10-batches-py (default: the "
                                                          "embedded sample)")
    args = parser.parse_args()
    torch.set_num_threads(args.threads)
    device = pick_device(args.device, "--device")
    spec = models.preset(args.preset)
    data = DataSettings(root=args.data_root, train_limit=args.train_limit)
    splits = imagefeed.load(data)
    trains = [TrainSettings(epochs=args.epochs, batch_size=args.batch_size, lr=0.05, schedule="cosine", seed=seed,
                            amp=args.amp, channels_last=args.channels_last) for seed in range(args.seeds)]
    separate_s, packed_s, separate_cpu, packed_cpu = [], [], [], []
    for _ in range(args.rounds):
        seconds, cpu_seconds, separate_losses = _separate(spec, trains, data, splits, device)
        separate_s.append(seconds)
        separate_cpu.append(cpu_seconds)
        seconds, cpu_seconds, packed_losses = _packed(spec, trains, data, splits, device)
        packed_s.append(seconds)
        packed_cpu.append(cpu_seconds)
    separate, packed = statistics.median(separate_s), statistics.median(packed_s)
    images = args.seeds * args.epochs * (len(splits.train_x) // args.batch_size) * args.batch_size
    name = torch.cuda.get_device_name(device) if device.type == "cuda" else "CPU"
    print(f"device: {device} ({name}), threads: {args.threads}, model: {args.preset}, K = {args.seeds} seeds, "
          f"batch {args.batch_size}, {len(splits.train_x)} training + {len(splits.val_x)} val + "
          f"{len(splits.test_x)} test images, {args.epochs} epoch(s), amp {args.amp}, "
          f"channels_last {args.channels_last}, median of {args.rounds} rounds")
    print(f"separate fits: {separate:8.2f} s  ({images / separate:8.1f} training images/s; rounds: "
          f"{', '.join(f'{s:.2f}' for s in separate_s)})")
    print(f"packed:        {packed:8.2f} s  ({images / packed:8.1f} training images/s; rounds: "
          f"{', '.join(f'{s:.2f}' for s in packed_s)})")
    gap = max(abs(a - b) for a, b in zip(separate_losses, packed_losses))
    print(f"largest difference in a seed's last training loss: {gap:.2e}")
    if device.type == "cpu":
        # Other jobs on a shared machine stretch the wall time; the CPU time this process spent moves less.
        print(f"CPU seconds: separate {statistics.median(separate_cpu):.2f} "
              f"({', '.join(f'{s:.2f}' for s in separate_cpu)}), packed {statistics.median(packed_cpu):.2f} "
              f"({', '.join(f'{s:.2f}' for s in packed_cpu)}); speed-up in CPU time "
              f"{statistics.median(separate_cpu) / statistics.median(packed_cpu):.3f}")
    print(f"speed-up separate / packed: {separate / packed:.3f}")


if __name__ == "__main__":
    main()
