"""One trial: train one architecture, report every epoch, test once at the end.

`fit` is the platform's unit of work. The runner calls it inside Ray workers;
`python -m search.train` calls it alone, for retraining a found architecture
and for debugging.

Images live as uint8 tensors on the training device; batches are cropped,
flipped and normalised there in one vectorised step, so no Python loop runs
per image and no DataLoader workers compete with the trials for cores.
"""

from __future__ import annotations

import contextlib
import math
import random
import time
from dataclasses import dataclass
from pathlib import Path
from typing import Any, Callable, Iterator

import torch
import torch.nn.functional as F
from torch import nn

import imagefeed
import models
import runfolder
from models import ArchSpec
from space import OPTIMIZERS, SCHEDULES, DataSettings, TrainSettings

from ._data_parallel import BATCHNORM, DataParallel
from ._streamed_input import StreamedInput

Report = Callable[[dict[str, Any]], None]

DEFAULT_EVAL_BATCH = 256


class TrialDiverged(RuntimeError):
    """The loss became NaN or infinite; the trial ends as failed, with this message."""

    @classmethod
    def at(cls, train_loss: float, epoch: int, train: TrainSettings) -> "TrialDiverged":
        """The error of a trial whose training loss became `train_loss` in `epoch` (fit's and the packed seeds')."""
        return cls(f"diverged: training loss became {train_loss} in epoch {epoch} (lr {train.lr}, {train.optimizer}); "
                   f"lower the learning rate or add warm-up")


# ------------------------------------------------------------ optimisation
@dataclass(frozen=True)
class BudgetRungs:
    """Budget-true ASHA rungs (search.asha.schedule budget_true), as plain data from the driver to the worker.

    `rungs` are the epochs that close ASHA's rungs, the last one the longest training
    (runfolder.asha_rung_epochs, their one home); `promotion` (runfolder.ASHA_PROMOTIONS) is how a trial
    goes on past a rung.
    """

    rungs: tuple[int, ...]
    promotion: str = "continue"

    def to_dict(self) -> dict[str, Any]:
        """Plain data for a Ray worker."""
        return {"rungs": list(self.rungs), "promotion": self.promotion}

    @classmethod
    def from_dict(cls, data: dict[str, Any]) -> "BudgetRungs":
        """Inverse of `to_dict`."""
        return cls(rungs=tuple(int(epoch) for epoch in data["rungs"]), promotion=str(data["promotion"]))


@dataclass(frozen=True)
class Leg:
    """One stretch of training under one learning-rate schedule, which has decayed fully after budget epoch `end`.

    It trains budget epochs `start` + 1 .. `end`, from fresh weights or from the previous leg's, and reports
    (validates) only those after `reported_after`: a restarted trial measured the earlier ones on a shorter leg.
    """

    start: int
    end: int
    from_scratch: bool
    reported_after: int

    @property
    def epochs(self) -> int:
        """The epochs this leg trains."""
        return self.end - self.start


def training_legs(epochs: int, rungs: BudgetRungs | None = None) -> list[Leg]:
    """The legs of a trial of `epochs` epochs: one full-length schedule, or one per rung under budget-true rungs.

    continue: each rung's stretch goes on from the previous weights on a schedule of its own (a warm restart,
    SGDR, Loshchilov & Hutter 2017, arXiv 1608.03983); restart: each rung trains from scratch on a schedule
    compressed into its whole budget (Li, Yumer & Ramanan, "Budgeted Training", ICLR 2020, arXiv 1905.04753).
    """
    if rungs is None:
        return [Leg(0, epochs, True, 0)]
    # A trial whose own train.epochs is below the study's longest (a searched budget) ends there.
    ends = [epoch for epoch in rungs.rungs if epoch < epochs] + [epochs]
    starts = [0, *ends[:-1]]
    if rungs.promotion == "restart":
        return [Leg(0, end, True, start) for start, end in zip(starts, ends)]
    return [Leg(start, end, start == 0, start) for start, end in zip(starts, ends)]


# OPTIMIZERS and SCHEDULES live in space, beside the TrainSettings fields that name them.
def lr_factor(step: int, steps_per_epoch: int, train: TrainSettings, leg: Leg | None = None) -> float:
    """Multiplier of `train.lr` at optimiser step `step` (0-based, counted from the start of `leg`, by default the
    whole training): linear warm-up, then the schedule, which reaches its end value after the leg's last step."""
    leg = leg or Leg(0, train.epochs, True, 0)
    # Budgeted training compresses the whole schedule, warm-up included, into the leg; a leg that goes on from
    # trained weights restarts the rate without one, as SGDR does.
    warmup_steps = round(train.warmup_epochs * leg.epochs / train.epochs * steps_per_epoch) if leg.from_scratch else 0
    if step < warmup_steps:
        # Start above zero so the first step already moves the weights.
        return (step + 1) / (warmup_steps + 1)
    total = leg.epochs * steps_per_epoch
    after = total - warmup_steps
    progress = (step - warmup_steps) / after if after > 0 else 1.0
    return SCHEDULES[train.schedule](min(progress, 1.0), train)


# ----------------------------------------------------------------- helpers
def seed_everything(seed: int) -> None:
    """Seed Python, NumPy (if present) and torch on every device."""
    random.seed(seed)
    torch.manual_seed(seed)
    with contextlib.suppress(ImportError):
        import numpy

        numpy.random.seed(seed % 2**32)


def usable_devices() -> list[str]:
    """The device names this torch can train on here: "cpu", then "cuda", "cuda:0".. and "mps" where present."""
    names = ["cpu"]
    if torch.cuda.is_available():
        names += ["cuda", *(f"cuda:{index}" for index in range(torch.cuda.device_count()))]
    if torch.backends.mps.is_available():
        names.append("mps")
    return names


def pick_device(device: str | torch.device | None = None, name: str = "device") -> torch.device:
    """The given device, else CUDA when present, else the CPU; ValueError naming the usable ones if it is not one.

    The one check of a device string for every command (`--device` of
    search.train and search.retrain) and for `fit`: "bogus", or "cuda" on a
    torch without CUDA, fail here, before any data is read.
    """
    if device is None:
        return torch.device("cuda" if torch.cuda.is_available() else "cpu")
    usable = usable_devices()
    allowed = ", ".join(usable)
    if torch.version.cuda is None:
        allowed += " (this torch is built without CUDA)"
    elif not torch.cuda.is_available():
        allowed += " (torch sees no CUDA device)"
    try:
        chosen = torch.device(device)
    except (RuntimeError, TypeError):
        raise ValueError(f"{name}: got {str(device)!r}, which is not a device name; allowed: {allowed}") from None
    if chosen.type != "cpu" and str(chosen) not in usable:
        raise ValueError(f"{name}: got {str(device)!r}, which this machine cannot train on; allowed: {allowed}")
    return chosen


def uses_bf16(device: torch.device, amp: str) -> bool:
    """Whether training on `device` with `TrainSettings.amp` autocasts to bf16 (auto: on CUDA only)."""
    return amp == "bf16" or (amp == "auto" and device.type == "cuda")


def _autocast(device: torch.device, amp: str) -> contextlib.AbstractContextManager:
    # bf16 keeps fp32's exponent range, so no loss scaling is needed.
    if not uses_bf16(device, amp):
        return contextlib.nullcontext()
    return torch.autocast(device_type=device.type, dtype=torch.bfloat16)


def memory_refusal(spec: ArchSpec, train: TrainSettings, image_size: int, device: torch.device) -> str | None:
    """Why training `spec` alone on `device` would not fit its memory ("needs about ..."); None if it fits."""
    estimate = models.training_memory(spec, image_size, train.batch_size, train.optimizer,
                                      activation_bytes=2 if uses_bf16(device, train.amp) else 4)
    return models.device_memory_budget(str(device)).refusal(estimate)


def _batches(n: int, batch_size: int, generator: torch.Generator, device: torch.device) -> Iterator[torch.Tensor]:
    order = torch.randperm(n, generator=generator, device=device)
    # Drop the ragged last batch: a batch of one breaks BatchNorm, and equal
    # batches keep the step count, and so the schedule, independent of order.
    full = n // batch_size if n >= batch_size else 1
    size = min(batch_size, n)
    for i in range(full):
        yield order[i * size:(i + 1) * size]


@torch.no_grad()
def evaluate(model: nn.Module, images: torch.Tensor, labels: torch.Tensor,
             augment: imagefeed.BatchAugment, amp: str = "auto",
             memory_format: torch.memory_format = torch.contiguous_format,
             batch_size: int = DEFAULT_EVAL_BATCH, distributed: DataParallel | None = None) -> float:
    """Top-1 accuracy (a fraction) of `model` on uint8 `images`; with `distributed`, each worker counts its share.

    Every batch has exactly `batch_size` images (the last one is padded and
    the padding ignored; eval-mode BN treats samples independently): each new
    input shape costs oneDNN and cuDNN a fresh kernel selection, seconds per
    trial on a CPU, so evaluation reuses the training batch shape.
    """
    total = len(images)
    if distributed is not None:
        distributed.share_buffers(model)
        images, labels = distributed.shard(images), distributed.shard(labels)
    if total == 0:
        return float("nan")
    was_training = model.training
    model.eval()
    correct = torch.zeros((), dtype=torch.int64, device=images.device)
    device = images.device
    for start in range(0, len(images), batch_size):
        batch = images[start:start + batch_size]
        real = len(batch)
        if real < batch_size:
            batch = torch.cat([batch, batch.new_zeros((batch_size - real, *batch.shape[1:]))])
        x = augment.normalize_only(batch, memory_format=memory_format)
        with _autocast(device, amp):
            logits = model(x)[:real]
        correct += (logits.argmax(1) == labels[start:start + real]).sum()
    model.train(was_training)
    return (correct.item() if distributed is None else distributed.sum(correct)[0]) / total


@torch.no_grad()
def evaluate_streamed(model: nn.Module, loader: imagefeed.ImageLoader, augment: imagefeed.BatchAugment,
                      amp: str = "auto", memory_format: torch.memory_format = torch.contiguous_format,
                      batch_size: int = DEFAULT_EVAL_BATCH, distributed: DataParallel | None = None) -> float:
    """Top-1 accuracy of `model` on the uint8 batches of a streamed `loader`; `evaluate`'s rules, images read as needed."""
    if distributed is not None:
        distributed.share_buffers(model)
    was_training = model.training
    model.eval()
    device = loader.device
    correct = torch.zeros((), dtype=torch.int64, device=device)
    total = 0
    for images, labels in loader:
        real = len(images)
        if real < batch_size:  # one input shape, as in `evaluate`
            images = torch.cat([images, images.new_zeros((batch_size - real, *images.shape[1:]))])
        x = augment.normalize_only(images, memory_format=memory_format)
        with _autocast(device, amp):
            logits = model(x)[:real]
        correct += (logits.argmax(1) == labels).sum()
        total += real
    model.train(was_training)
    counted, total = (correct.item(), total) if distributed is None else distributed.sum(correct, total)
    return counted / total if total else float("nan")


@dataclass
class _Throughput:
    images: int = 0
    seconds: float = 0.0

    @property
    def per_second(self) -> float:
        return self.images / self.seconds if self.seconds > 0 else float("nan")


def _sync(device: torch.device) -> None:
    if device.type == "cuda":
        torch.cuda.synchronize(device)


def check_classes(spec: ArchSpec, num_classes: int) -> None:
    """The spec's classifier must fit the dataset's label count."""
    if spec.num_classes != num_classes:
        raise ValueError(f"num_classes: the spec has {spec.num_classes} outputs but the dataset has "
                         f"{num_classes} classes; allowed: num_classes: {num_classes}")


# --------------------------------------------------------------------- fit
def fit(spec: ArchSpec, train: TrainSettings, data: DataSettings, report: Report | None = None,
        splits: imagefeed.DatasetSplits | None = None, device: str | torch.device | None = None,
        save_to: str | Path | None = None, final_eval_on_train_val: bool = False,
        distributed: DataParallel | None = None, cpus: float | None = None,
        rungs: BudgetRungs | None = None) -> dict[str, Any]:
    """Train `spec` with `train` on `data`; call `report` after every epoch; return the final metrics.

    A NaN or infinite loss, or running out of memory, ends the trial with
    `status: failed` and a message instead of an exception. `save_to` writes
    the final weights and the spec there as a checkpoint (`models.save_checkpoint`).
    With `final_eval_on_train_val`, the validation images join the training set
    (retraining a chosen architecture); val_acc is then not measured.
    `distributed` makes this process one of a trial's data-parallel workers
    (search._distributed): it trains on its share of each global batch of
    `train.batch_size` images, and every figure covers all the workers.
    `cpus` (the trial's share, search.resources.cpus; None: this process's
    affinity) sets a streamed dataset's loader workers (imagefeed.loader_workers).
    The result's `peak_host_mib` covers this process and its loader workers,
    `peak_device_mib` torch's allocations on a CUDA device (NaN elsewhere).
    `rungs` trains budget-true ASHA rungs (`training_legs`): each report's `epoch` is then the budget epoch,
    the one ASHA's rungs count, and `epochs_run` (in each report and the result) the epochs actually trained,
    which a restarted trial makes more.
    """
    device = pick_device(device)
    imagefeed.reset_peak_device(device)
    with imagefeed.PeakHostMemory() as host:
        result = _fit(spec, train, data, report, splits, device, save_to, final_eval_on_train_val, distributed, cpus,
                      rungs)
    result["peak_host_mib"] = host.mib
    result["peak_device_mib"] = imagefeed.peak_device_mib(device)
    return result


def _fit(spec: ArchSpec, train: TrainSettings, data: DataSettings, report: Report | None,
         splits: imagefeed.DatasetSplits | imagefeed.StreamedSplits | None, device: torch.device,
         save_to: str | Path | None, final_eval_on_train_val: bool, distributed: DataParallel | None,
         cpus: float | None, rungs: BudgetRungs | None = None) -> dict[str, Any]:
    started = time.perf_counter()
    if train.max_threads is not None and device.type == "cpu":
        torch.set_num_threads(train.max_threads)
    if device.type == "cuda":
        # Fixed input shapes: let cuDNN pick its fastest kernels once.
        torch.backends.cudnn.benchmark = True
    seed_everything(train.seed)
    splits = splits if splits is not None else imagefeed.load(data)
    check_classes(spec, splits.num_classes)
    figures = models.complexity(spec, splits.image_size)
    result: dict[str, Any] = {
        "status": "complete", "error": "", "params": figures.params, "macs": figures.macs,
        "flops": figures.flops, "val_acc_best": float("nan"), "val_acc_final": float("nan"),
        "test_acc": float("nan"), "epochs_run": 0, "wall_s": 0.0, "images_per_s": float("nan"),
        "device": str(device), "dataset": splits.source,
        # How the trial was parallelised: the global batch and the learning rate are the study's at any worker count.
        "workers": distributed.world_size if distributed is not None else 1, "global_batch": train.batch_size,
        "base_lr": train.lr, "batchnorm": distributed.batchnorm if distributed is not None else BATCHNORM,
    }

    if splits.streamed:
        stream = StreamedInput.open(splits, train, data.flip, device, cpus, distributed, final_eval_on_train_val)
    else:
        train_x, train_y = splits.train_x, splits.train_y
        if final_eval_on_train_val:
            train_x = torch.cat([train_x, splits.val_x])
            train_y = torch.cat([train_y, splits.val_y])
        train_x, train_y = train_x.to(device), train_y.to(device)
        val_x, val_y = splits.val_x.to(device), splits.val_y.to(device)
        test_x, test_y = splits.test_x.to(device), splits.test_y.to(device)
        if final_eval_on_train_val:
            val_x, val_y = val_x[:0], val_y[:0]

    memory_format = torch.channels_last if train.channels_last else torch.contiguous_format
    # A leg that trains from scratch (a restarted rung) starts from these very initial weights and batch order.
    initial_rng = torch.random.get_rng_state()
    augment = imagefeed.BatchAugment(crop_padding=data.crop_padding, flip=data.flip,
                                    mean=splits.mean, std=splits.std)
    steps_per_epoch = len(stream.train) if splits.streamed else max(1, len(train_x) // train.batch_size)
    throughput = _Throughput()

    def tensor_batches(epoch: int) -> Iterator[tuple[torch.Tensor, torch.Tensor]]:
        for index in _batches(len(train_x), train.batch_size, generator, device):
            index = index if distributed is None else distributed.shard(index)
            yield augment(train_x[index], crops, memory_format=memory_format), train_y[index]

    def streamed_batches(epoch: int) -> Iterator[tuple[torch.Tensor, torch.Tensor]]:
        stream.train.set_epoch(epoch)
        for images, labels in stream.train:
            yield augment.normalize_only(images, memory_format=memory_format), labels

    batches = streamed_batches if splits.streamed else tensor_batches

    def accuracy(split: str) -> float:
        if splits.streamed:
            loader = stream.loader(split)
            return float("nan") if loader is None else evaluate_streamed(
                net, loader, augment, train.amp, memory_format, stream.options["batch_size"], distributed)
        images, labels = (val_x, val_y) if split == "val" else (test_x, test_y)
        return evaluate(net, images, labels, augment, train.amp, memory_format, train.batch_size, distributed)

    try:
        for leg in training_legs(train.epochs, rungs):
            if leg.from_scratch:
                torch.random.set_rng_state(initial_rng)
                model = models.build(spec).to(device=device, memory_format=memory_format)
                net = model  # what is evaluated and saved: the network, never its DDP wrapper
                if distributed is not None:
                    model = distributed.wrap(model, device)
                    net = model.module
                params = [p for p in model.parameters() if p.requires_grad]
                optimizer = OPTIMIZERS[train.optimizer](params, train)
                generator = torch.Generator(device=device).manual_seed(train.seed)
                # Every worker draws the same batch order (so its shares of a batch are disjoint), but crops of its own.
                crops = generator if distributed is None else \
                    torch.Generator(device=device).manual_seed(distributed.augment_seed(train.seed))
            schedule = torch.optim.lr_scheduler.LambdaLR(
                optimizer, lambda step, leg=leg: lr_factor(step, steps_per_epoch, train, leg))
            for epoch in range(leg.start + 1, leg.end + 1):
                model.train()
                _sync(device)
                epoch_start = time.perf_counter()
                loss_sum = torch.zeros((), device=device)
                seen = 0
                for x, y in batches(epoch):
                    with _autocast(device, train.amp):
                        loss = F.cross_entropy(model(x), y, label_smoothing=train.label_smoothing)
                    optimizer.zero_grad(set_to_none=True)
                    loss.backward()
                    optimizer.step()
                    schedule.step()
                    loss_sum += loss.detach() * len(y)
                    seen += len(y)
                _sync(device)
                epoch_s = time.perf_counter() - epoch_start
                # One host sync per epoch: checking every step would stall the GPU.
                if distributed is None:
                    train_loss = (loss_sum / max(seen, 1)).item()
                else:  # over the global batch: every worker's share
                    loss_total, seen = distributed.sum(loss_sum, seen)
                    seen = int(seen)
                    train_loss = loss_total / max(seen, 1)
                throughput.images += seen
                throughput.seconds += epoch_s
                if not math.isfinite(train_loss):
                    raise TrialDiverged.at(train_loss, epoch, train)
                result["epochs_run"] += 1
                if epoch <= leg.reported_after:
                    continue  # a restarted trial: ASHA compared this budget epoch on the shorter leg already
                val_acc = accuracy("val")
                result["val_acc_final"] = val_acc
                if math.isnan(result["val_acc_best"]) or val_acc > result["val_acc_best"]:
                    result["val_acc_best"] = val_acc
                if report is not None:
                    report({"epoch": epoch, "epochs_run": result["epochs_run"], "train_loss": train_loss,
                            "val_acc": val_acc, "epoch_s": epoch_s,
                            "images_per_s": seen / epoch_s if epoch_s > 0 else float("nan"),
                            "lr": optimizer.param_groups[0]["lr"]})
        result["test_acc"] = accuracy("test")
    except TrialDiverged as error:
        result.update(status="failed", error=str(error))
    except torch.OutOfMemoryError as error:
        result.update(status="failed", error=f"out of memory: {str(error).splitlines()[0]}")
    finally:
        if splits.streamed:
            stream.close()
    if splits.streamed:
        result["images_skipped"] = len(stream.skipped)
    result["images_per_s"] = throughput.per_second
    result["wall_s"] = time.perf_counter() - started
    if save_to is not None and result["status"] == "complete":
        models.save_checkpoint(save_to, net, train_settings=train.to_dict(),
                               data_settings=data.to_dict(), metrics=_plain_metrics(result))
    return result


def _plain_metrics(result: dict[str, Any]) -> dict[str, Any]:
    return {k: v for k, v in result.items() if isinstance(v, (int, float, str, bool, dict)) or v is None}


# --------------------------------------------------------------------- CLI
def _parse_args(argv: list[str] | None) -> Any:
    from models.cli import OneLineParser

    parser = OneLineParser(prog="python -m search.train",
                           description="Train one architecture and print its metrics as JSON.")
    parser.add_argument("spec", help="a models preset name or an ArchSpec YAML/JSON file")
    parser.add_argument("--data-root", default=None,
                        help="folder with cifar-10-batches-py (default: the embedded sample)")
    parser.add_argument("--dataset", default="cifar10", help=", ".join(imagefeed.DATASET_KINDS))
    parser.add_argument("--epochs", type=int, required=True)
    parser.add_argument("--seed", type=int, default=0)
    parser.add_argument("--batch-size", type=int, default=TrainSettings.batch_size)
    parser.add_argument("--lr", type=float, default=TrainSettings.lr)
    parser.add_argument("--schedule", default="cosine", help=", ".join(SCHEDULES))
    parser.add_argument("--train-limit", type=int, default=None)
    parser.add_argument("--device", default=None, help="cpu, cuda, cuda:1 (default: cuda if present)")
    parser.add_argument("--save", default=None, help="write a checkpoint folder here")
    parser.add_argument("--quiet", action="store_true", help="no per-epoch lines on stderr")
    return parser.parse_args(argv)


def main(argv: list[str] | None = None) -> int:
    """`python -m search.train`: exit 0 on a complete trial, 1 on a failed one, 2 on bad input."""
    import json
    import sys

    args = _parse_args(argv)
    # Checked before training: a checkpoint that cannot be written must not cost the run and its metrics.
    unwritable = runfolder.unwritable_reason(Path(args.save)) if args.save else None
    if unwritable:
        print(f"error: --save {args.save}: {unwritable}; give a folder you can write", file=sys.stderr)
        return 2
    try:
        device = pick_device(args.device, "--device")
        spec = models.spec_from_name_or_file(args.spec)
        data = DataSettings(dataset=args.dataset, root=args.data_root, train_limit=args.train_limit)
        train = TrainSettings(epochs=args.epochs, seed=args.seed, batch_size=args.batch_size,
                              lr=args.lr, schedule=args.schedule)
        splits = imagefeed.load(data)
        if spec.num_classes != splits.num_classes:
            print(f"note: {args.spec} has {spec.num_classes} outputs; using {splits.num_classes} "
                  f"for {args.dataset}", file=sys.stderr)
            spec = spec.replace(num_classes=splits.num_classes)
        refusal = memory_refusal(spec, train, splits.image_size, device)
        if refusal is not None:
            raise ValueError(f"{args.spec}: {refusal}; allowed: a smaller --batch-size or a smaller network")
        if splits.source.get("embedded_sample"):
            print("note: training on the embedded CIFAR-10 sample, not the full dataset "
                  "(pass --data-root)", file=sys.stderr)
        report = None if args.quiet else (
            lambda m: print(json.dumps({k: round(v, 4) if isinstance(v, float) else v
                                        for k, v in m.items()}), file=sys.stderr))
        result = fit(spec, train, data, report=report, splits=splits, device=device,
                     save_to=args.save)
    except (ValueError, imagefeed.DatasetError) as error:
        print(f"error: {error}", file=sys.stderr)
        return 2
    result["spec"] = spec.to_dict()
    result["train"] = train.to_dict()
    print(json.dumps(result, indent=2, default=str))
    return 0 if result["status"] == "complete" else 1


if __name__ == "__main__":
    raise SystemExit(main())
