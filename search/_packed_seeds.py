"""K seeds of one architecture trained as one model: `search.pack_seeds`.

An ablation trains one architecture under many seeds, and a small ResNet
leaves most of a GPU idle. HFTA (Wang et al., MLSys 2021) fuses models of the
same shape into one and reports up to 15x the throughput on one GPU. Here the
K seeds' parameters and BatchNorm buffers are stacked along a new first
dimension (`torch.func.stack_module_state`) and one network runs all of them
through `torch.vmap` over `torch.func.functional_call`. vmap's batching rules
fold the seed dimension into the channels: a convolution becomes one grouped
convolution of K groups and a BatchNorm one BatchNorm of K x C channels, so
each seed keeps its own batch statistics and running statistics. (That is the
grouped-convolution packing, done by torch for every layer type the network
has, shortcut A's zero padding included.)

Each seed is trained exactly as `search.train.fit` would train it alone:
its weights initialised after `seed_everything(seed)`, its batch order and
crops drawn from its own generator seeded with its seed, the same optimiser
and schedule (elementwise, so one optimiser over the stacked tensors is K
optimisers), its own divergence check. The losses of the K seeds are summed
before `backward`; a seed's parameters appear in its own loss only, so each
gets its own gradient. The results agree with separate runs up to float
rounding (a grouped convolution sums in another order); the test states the
tolerance.

Only whole-tensor datasets on one device (no streamed data, no data-parallel
workers).

Where it pays: on a GPU, where one small ResNet's kernels are too small to
fill the device. Not on a CPU: there oneDNN's grouped convolution is slower
than the K convolutions it replaces (bench/RESULTS.md, "Seeds packed into one
model"), and a hand-built grouped-convolution network would run that same
kernel, so vmap, which packs every layer without rewriting the networks, is
the one implementation.
"""

from __future__ import annotations

import copy
import dataclasses
import math
import time
from pathlib import Path
from typing import Any, Callable, Sequence

import torch
import torch.nn.functional as F
from torch import nn
from torch.func import functional_call, stack_module_state

import imagefeed
import models
from models import ArchSpec
from space import OPTIMIZERS, DataSettings, TrainSettings

from ._data_parallel import BATCHNORM
from .train import (Report, TrialDiverged, _autocast, _batches, _plain_metrics, _sync, _Throughput, check_classes,
                    evaluate, lr_factor, pick_device, seed_everything)

__all__ = ["fit_packed", "same_but_seed"]


def same_but_seed(trains: Sequence[TrainSettings]) -> str | None:
    """Why `trains` cannot be packed into one model (they may differ in the seed only); None if they can."""
    first = trains[0]
    seeds = [t.seed for t in trains]
    if len(set(seeds)) != len(seeds):
        return f"the seeds repeat ({seeds}); packed seeds must be distinct"
    for other in trains[1:]:
        if dataclasses.replace(other, seed=first.seed) != first:
            differing = [f.name for f in dataclasses.fields(first)
                         if f.name != "seed" and getattr(first, f.name) != getattr(other, f.name)]
            return f"seed {other.seed} differs from seed {first.seed} in train.{', train.'.join(differing)}"
    return None


class _SeedView(nn.Module):
    """Seed `index` of the packed model as an ordinary module, for `evaluate`: its slices of the stacked tensors."""

    def __init__(self, skeleton: nn.Module, state: dict[str, torch.Tensor], index: int) -> None:
        super().__init__()
        self.skeleton = skeleton  # shared by every view; train()/eval() reach it through this one
        self._state = state
        self.index = index

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return functional_call(self.skeleton, {name: t[self.index] for name, t in self._state.items()}, (x,))


def _unpacked(skeleton: nn.Module, state: dict[str, torch.Tensor], index: int) -> nn.Module:
    """Seed `index` as a network of its own, for its checkpoint (the names, keys and `.spec` of `models.build`'s)."""
    net = copy.deepcopy(skeleton)
    keys = net.state_dict().keys()
    net.load_state_dict({key: state[key][index].detach() for key in keys}, assign=True)
    return net


def fit_packed(spec: ArchSpec, trains: Sequence[TrainSettings], data: DataSettings,
               reports: Sequence[Report | None] | None = None, splits: imagefeed.DatasetSplits | None = None,
               device: str | torch.device | None = None,
               save_to: Sequence[str | Path | None] | None = None,
               after_epoch: Callable[[int], None] | None = None) -> list[dict[str, Any]]:
    """Train `spec` once per settings in `trains` (equal but for the seed) as one packed model; one result each.

    `reports[k]` hears seed k's epochs (a seed that diverged is heard no
    more), `after_epoch(epoch)` is called once each epoch's reports are all
    made (a trial reports the K seeds' epoch together), and the k-th result is what
    `search.train.fit(spec, trains[k], data, ...)` returns, plus
    `packed_seeds` (K). A seed's `epoch_s`, `wall_s` and `images_per_s` are
    the packed model's times: the K seeds share them, so device time summed
    over the K rows counts the device K times (divide by `packed_seeds`).
    """
    reason = same_but_seed(trains) if trains else "no training settings given"
    if reason is not None:
        raise ValueError(f"pack_seeds: {reason}")
    device = pick_device(device)
    count = len(trains)
    reports = list(reports) if reports is not None else [None] * count
    save_to = list(save_to) if save_to is not None else [None] * count
    if len(reports) != count or len(save_to) != count:
        raise ValueError(f"pack_seeds: {count} seeds but {len(reports)} reports and {len(save_to)} checkpoint "
                         f"folders; give one of each per seed")
    imagefeed.reset_peak_device(device)
    with imagefeed.PeakHostMemory() as host:
        results = _fit_packed(spec, list(trains), data, reports, splits, device, save_to, after_epoch)
    for result in results:
        result.update(peak_host_mib=host.mib, peak_device_mib=imagefeed.peak_device_mib(device))
    return results


def _fit_packed(spec: ArchSpec, trains: list[TrainSettings], data: DataSettings, reports: list[Report | None],
                splits: imagefeed.DatasetSplits | None, device: torch.device,
                save_to: list[str | Path | None], after_epoch: Callable[[int], None] | None) -> list[dict[str, Any]]:
    started = time.perf_counter()
    train = trains[0]  # every field but the seed is theirs too
    count = len(trains)
    if train.max_threads is not None and device.type == "cpu":
        torch.set_num_threads(train.max_threads)
    if device.type == "cuda":
        torch.backends.cudnn.benchmark = True  # fixed shapes, as in fit
    splits = splits if splits is not None else imagefeed.load(data)
    if splits.streamed:
        raise ValueError(f"pack_seeds: data.dataset {data.dataset!r} is streamed; packed seeds need a "
                         f"whole-tensor dataset ({', '.join(imagefeed.whole_tensor_kinds())})")
    check_classes(spec, splits.num_classes)
    figures = models.complexity(spec, splits.image_size)
    results = [{
        "status": "complete", "error": "", "params": figures.params, "macs": figures.macs, "flops": figures.flops,
        "val_acc_best": math.nan, "val_acc_final": math.nan, "test_acc": math.nan, "epochs_run": 0,
        "wall_s": 0.0, "images_per_s": math.nan, "device": str(device), "dataset": splits.source,
        "workers": 1, "global_batch": train.batch_size, "base_lr": train.lr, "batchnorm": BATCHNORM,
        "packed_seeds": count,
    } for _ in trains]

    train_x, train_y = splits.train_x.to(device), splits.train_y.to(device)
    val_x, val_y = splits.val_x.to(device), splits.val_y.to(device)
    test_x, test_y = splits.test_x.to(device), splits.test_y.to(device)
    memory_format = torch.channels_last if train.channels_last else torch.contiguous_format

    # Each seed's initial weights as fit draws them: seeded, then built.
    nets = []
    for settings in trains:
        seed_everything(settings.seed)
        nets.append(models.build(spec))
    params, buffers = stack_module_state(nets)
    params = {name: p.detach().to(device).requires_grad_() for name, p in params.items()}
    buffers = {name: b.to(device) for name, b in buffers.items()}
    state = {**params, **buffers}
    # The structure only; every tensor comes from `state`. (Moved to meta, not built there: initialising on the meta
    # device imports torch._dynamo, seconds on a CPU.)
    skeleton = copy.deepcopy(nets[0]).to("meta")
    del nets
    views = [_SeedView(skeleton, state, index) for index in range(count)]

    optimizer = OPTIMIZERS[train.optimizer](list(params.values()), train)
    augment = imagefeed.BatchAugment(crop_padding=data.crop_padding, flip=data.flip, mean=splits.mean, std=splits.std)
    generators = [torch.Generator(device=device).manual_seed(settings.seed) for settings in trains]
    steps_per_epoch = max(1, len(train_x) // train.batch_size)
    schedule = torch.optim.lr_scheduler.LambdaLR(optimizer, lambda step: lr_factor(step, steps_per_epoch, train))
    throughput = _Throughput()

    def seed_loss(seed_params: dict[str, torch.Tensor], seed_buffers: dict[str, torch.Tensor], x: torch.Tensor,
                  y: torch.Tensor) -> torch.Tensor:
        logits = functional_call(skeleton, (seed_params, seed_buffers), (x,))
        return F.cross_entropy(logits, y, label_smoothing=train.label_smoothing)

    packed_loss = torch.vmap(seed_loss)

    def packed_batches() -> Any:
        # Each seed's batch order and crops from its own generator, drawn in fit's order: the order, then each crop.
        orders = [_batches(len(train_x), train.batch_size, g, device) for g in generators]
        for indices in zip(*orders):
            images = [augment(train_x[index], g, memory_format=memory_format) for index, g in zip(indices, generators)]
            yield torch.stack(images), torch.stack([train_y[index] for index in indices])

    alive = list(range(count))  # seeds not yet diverged
    try:
        for epoch in range(1, train.epochs + 1):
            skeleton.train()
            _sync(device)
            epoch_start = time.perf_counter()
            loss_sums = torch.zeros(count, device=device)
            seen = 0
            for x, y in packed_batches():
                with _autocast(device, train.amp):
                    losses = packed_loss(params, buffers, x, y)
                optimizer.zero_grad(set_to_none=True)
                losses.sum().backward()  # seed k's parameters are in loss k only: each its own gradient
                optimizer.step()
                schedule.step()
                loss_sums += losses.detach() * y.shape[1]
                seen += y.shape[1]
            _sync(device)
            epoch_s = time.perf_counter() - epoch_start
            throughput.images += seen
            throughput.seconds += epoch_s
            train_losses = (loss_sums / max(seen, 1)).tolist()  # one host sync per epoch, as in fit
            for index in list(alive):
                result, settings = results[index], trains[index]
                if not math.isfinite(train_losses[index]):
                    # The others train on: a seed's NaN stays in its own slices of the stacked tensors.
                    error = TrialDiverged.at(train_losses[index], epoch, settings)
                    result.update(status="failed", error=str(error))
                    alive.remove(index)
                    continue
                val_acc = evaluate(views[index], val_x, val_y, augment, train.amp, memory_format, train.batch_size)
                result["epochs_run"] = epoch
                result["val_acc_final"] = val_acc
                if math.isnan(result["val_acc_best"]) or val_acc > result["val_acc_best"]:
                    result["val_acc_best"] = val_acc
                if reports[index] is not None:
                    reports[index]({"epoch": epoch, "epochs_run": epoch, "train_loss": train_losses[index],
                                    "val_acc": val_acc,
                                    "epoch_s": epoch_s,
                                    "images_per_s": seen / epoch_s if epoch_s > 0 else math.nan,
                                    "lr": optimizer.param_groups[0]["lr"]})
            if after_epoch is not None:
                after_epoch(epoch)
            if not alive:
                break
        for index in alive:
            results[index]["test_acc"] = evaluate(views[index], test_x, test_y, augment, train.amp, memory_format,
                                                  train.batch_size)
    except torch.OutOfMemoryError as error:
        for index in alive:
            results[index].update(status="failed", error=f"out of memory: {str(error).splitlines()[0]}")
    wall_s = time.perf_counter() - started
    for index, result in enumerate(results):
        result["images_per_s"] = throughput.per_second
        result["wall_s"] = wall_s
        if save_to[index] is not None and result["status"] == "complete":
            models.save_checkpoint(save_to[index], _unpacked(skeleton, state, index),
                                   train_settings=trains[index].to_dict(), data_settings=data.to_dict(),
                                   metrics=_plain_metrics(result))
    return results
