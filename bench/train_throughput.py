"""Images per second of `search.train.fit` against a minimal hand-written PyTorch loop.

Both train the same model on the same images with the same batch size,
threads, memory format and augmentation, in this one process, alternating
rounds so that machine noise hits both alike. Prints the ratio fit / baseline
(goal: >= 0.95).

    .venv/bin/python bench/train_throughput.py [--preset cifar_resnet20] [--device cpu|cuda]
        [--amp auto|bf16|off] [--no-channels-last]

`--amp` and `--channels-last` set both sides alike (`train.amp`,
`train.channels_last`), so bf16 and channels_last are each measured against
the same hand loop; bench/gpu_check.sh compares them with fp32 on CUDA.
"""

from __future__ import annotations

import argparse
import statistics
import time

import torch
import torch.nn.functional as F

import imagefeed
import models
from search.train import fit, uses_bf16
from space import DataSettings, TrainSettings


def hand_written_loop(spec: models.ArchSpec, splits: imagefeed.DatasetSplits, train: TrainSettings,
                      device: torch.device, epochs: int) -> float:
    """The baseline: build, SGD, shuffle, augment, step. Returns training images per second."""
    torch.manual_seed(train.seed)
    memory_format = torch.channels_last if train.channels_last else torch.contiguous_format
    model = models.build(spec).to(device=device, memory_format=memory_format)
    optimizer = torch.optim.SGD(model.parameters(), lr=train.lr, momentum=train.momentum,
                                weight_decay=train.weight_decay)
    augment = imagefeed.BatchAugment(4, True, mean=splits.mean, std=splits.std)
    x_all, y_all = splits.train_x.to(device), splits.train_y.to(device)
    generator = torch.Generator(device=device).manual_seed(0)
    use_bf16 = uses_bf16(device, train.amp)
    images, seconds = 0, 0.0
    for _ in range(epochs):
        if device.type == "cuda":
            torch.cuda.synchronize()
        start = time.perf_counter()
        order = torch.randperm(len(x_all), generator=generator, device=device)
        for i in range(len(x_all) // train.batch_size):
            index = order[i * train.batch_size:(i + 1) * train.batch_size]
            x = augment(x_all[index], generator, memory_format=memory_format)
            with torch.autocast(device.type, dtype=torch.bfloat16, enabled=use_bf16):
                loss = F.cross_entropy(model(x), y_all[index])
            optimizer.zero_grad(set_to_none=True)
            loss.backward()
            optimizer.step()
            images += len(index)
        if device.type == "cuda":
            torch.cuda.synchronize()
        seconds += time.perf_counter() - start
    return images / seconds


def main() -> None:
    """Measure both, alternating, and print the ratio."""
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--preset", default="cifar_resnet20")
    parser.add_argument("--device", default="cuda" if torch.cuda.is_available() else "cpu")
    parser.add_argument("--epochs", type=int, default=2)
    parser.add_argument("--rounds", type=int, default=3)
    parser.add_argument("--threads", type=int, default=torch.get_num_threads())
    parser.add_argument("--data-root", default=None, help="default: the embedded sample")
    parser.add_argument("--amp", default=TrainSettings.amp, help="auto (bf16 on CUDA only), bf16, off")
    parser.add_argument("--channels-last", action=argparse.BooleanOptionalAction, default=TrainSettings.channels_last,
                        help="channels_last (NHWC) inputs and weights (default: on, as train.channels_last)")
    args = parser.parse_args()
    torch.set_num_threads(args.threads)
    device = torch.device(args.device)
    spec = models.preset(args.preset)
    data = DataSettings(root=args.data_root)
    splits = imagefeed.load(data)
    train = TrainSettings(epochs=args.epochs, batch_size=128, lr=0.05, schedule="cosine", amp=args.amp,
                          channels_last=args.channels_last)
    fit_rates, loop_rates = [], []
    for _ in range(args.rounds):
        loop_rates.append(hand_written_loop(spec, splits, train, device, args.epochs))
        fit_rates.append(fit(spec, train, data, splits=splits, device=device)["images_per_s"])
    fit_rate, loop_rate = statistics.median(fit_rates), statistics.median(loop_rates)
    print(f"device: {device} ({torch.cuda.get_device_name(device) if device.type == 'cuda' else 'CPU'}), "
          f"threads: {args.threads}, model: {args.preset}, batch 128, {len(splits.train_x)} training images, "
          f"median of {args.rounds} rounds x {args.epochs} epochs, amp {args.amp} "
          f"(bf16: {uses_bf16(device, args.amp)}), channels_last {args.channels_last}")
    print(f"hand-written loop: {loop_rate:8.1f} images/s  (rounds: {', '.join(f'{r:.0f}' for r in loop_rates)})")
    print(f"search.train.fit:  {fit_rate:8.1f} images/s  (rounds: {', '.join(f'{r:.0f}' for r in fit_rates)})")
    print(f"ratio fit / loop: {fit_rate / loop_rate:.3f}  (goal >= 0.95)")


if __name__ == "__main__":
    main()
