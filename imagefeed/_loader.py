"""The streaming loader: DataLoader workers read, decode and augment one image at a time; batches go to the device as uint8.

`make_loader` is the one place that decides workers, pinning, prefetch, the
shuffle and the shard, in the manner of timm's `create_loader`:

- workers follow the trial's CPUs (`loader_workers`): one core stays with the
  training process, so two trials sharing a machine do not oversubscribe it;
- pinned memory and non-blocking copies only on CUDA;
- the order of an epoch is a permutation seeded by (seed, epoch), and every
  image's augmentation by (seed, epoch, position), so a rerun or a resume
  sees the same batches whatever the worker count;
- `shard=(rank, world_size)` gives each data-parallel worker its own
  equal-sized part of that order (as `DistributedSampler` does);
- an image whose `read` raises `BadImage` is left out of its batch, warned
  about once by name and counted (`ImageLoader.skipped`); the trial goes on.

Images are never held whole: a worker holds at most `prefetch_factor` batches.
Normalisation is not done here but on the device, on the whole batch
(`imagefeed._tensors.BatchAugment.normalize_only`), as for the whole-tensor kinds.
"""

from __future__ import annotations

import logging
import math
import os
from dataclasses import dataclass
from typing import Any, Iterator

import numpy as np
import torch
from torch.utils.data import DataLoader, Dataset, Sampler

from ._errors import BadImage
from ._images import StreamedSplit
from ._transforms import EvalCrop, TrainCrop

log = logging.getLogger(__name__)

# Batches each worker keeps ready: torch's default; enough to hide decode jitter, small enough to stay bounded.
DEFAULT_PREFETCH = 2


def loader_workers(cpus: float | None) -> int:
    """DataLoader workers for a trial holding `cpus` CPUs: all but the one the training loop keeps (0: in-process)."""
    if cpus is None:
        cpus = len(os.sched_getaffinity(0))
    if not (isinstance(cpus, (int, float)) and cpus > 0):
        raise ValueError(f"cpus: got {cpus!r}; allowed: a number > 0 (search.resources.cpus)")
    return max(0, math.floor(cpus) - 1)


class EpochOrder(Sampler):
    """The (epoch, position) keys of one epoch: shuffled by (seed, epoch) or in order, then this shard's part.

    Lives in the training process, so `set_epoch` reaches persistent workers
    through the keys themselves rather than through a copy of the dataset.
    """

    def __init__(self, count: int, seed: int, shuffle: bool, shard: tuple[int, int] = (0, 1), even: bool = True):
        rank, world = shard
        if not (isinstance(world, int) and world >= 1 and isinstance(rank, int) and 0 <= rank < world):
            raise ValueError(f"shard: got {shard!r}; allowed: (rank, world_size) with 0 <= rank < world_size")
        self.count, self.seed, self.shuffle, self.rank, self.world, self.even = count, seed, shuffle, rank, world, even
        self.epoch = 0

    def set_epoch(self, epoch: int) -> None:
        """The epoch whose order and augmentation the next iteration gives."""
        self.epoch = epoch

    def positions(self) -> np.ndarray:
        """This shard's positions in the split for the current epoch."""
        if self.shuffle:
            order = np.random.default_rng((self.seed, self.epoch)).permutation(self.count)
        else:
            order = np.arange(self.count)
        if self.even:  # every shard the same length, so data-parallel workers step together
            order = order[:self.count // self.world * self.world]
        return order[self.rank::self.world]

    def __len__(self) -> int:
        return self.count // self.world if self.even else len(range(self.rank, self.count, self.world))

    def __iter__(self) -> Iterator[tuple[int, int]]:
        epoch = self.epoch
        return ((epoch, int(position)) for position in self.positions())


class StreamedImages(Dataset):
    """Images of a `StreamedSplit` through a transform, keyed by (epoch, position); a bad image comes back as None."""

    def __init__(self, split: StreamedSplit, transform: TrainCrop | EvalCrop, seed: int):
        self.split, self.transform, self.seed = split, transform, seed
        self.labels = np.asarray(split.labels, dtype=np.int64)

    def __len__(self) -> int:
        return len(self.split)

    def __getitem__(self, key: tuple[int, int]) -> tuple[torch.Tensor | None, int, str | None]:
        epoch, position = key
        # One generator per image: its crop and flip depend on (seed, epoch, position) only.
        rng = np.random.default_rng((self.seed, epoch, position))
        try:
            image = self.transform(self.split.images, int(self.split.indices[position]), rng)
        except BadImage as error:
            return None, int(self.labels[position]), f"{error.path}: {error.reason}"
        return image, int(self.labels[position]), None


    def __getitems__(self, keys: list[tuple[int, int]]) -> tuple[torch.Tensor, torch.Tensor, tuple[str, ...]]:
        """A whole batch (DataLoader asks for one list of keys at a time): the images written into one uint8 tensor.

        No per-image tensors to stack: each image's crop is copied once, into
        its row of the batch, which the worker then hands over whole.
        """
        side = self.transform.image_size
        images = torch.empty((len(keys), 3, side, side), dtype=torch.uint8)
        labels, bad, kept = [], [], 0
        for epoch, position in keys:
            rng = np.random.default_rng((self.seed, epoch, position))
            try:
                self.transform(self.split.images, int(self.split.indices[position]), rng, out=images[kept])
            except BadImage as error:
                bad.append(f"{error.path}: {error.reason}")
                continue
            labels.append(int(self.labels[position]))
            kept += 1
        return images[:kept], torch.tensor(labels, dtype=torch.int64), tuple(bad)


def collate_images(samples: Any) -> tuple[Any, ...]:
    """(uint8 images (N, 3, S, S), int64 labels (N,), the bad images left out) from one batch of samples."""
    if isinstance(samples, tuple):  # already a batch (StreamedImages.__getitems__)
        return samples
    kept = [(image, label) for image, label, _ in samples if image is not None]
    bad = tuple(reason for _, _, reason in samples if reason is not None)
    if not kept:
        return torch.empty((0, 0, 0, 0), dtype=torch.uint8), torch.empty(0, dtype=torch.int64), bad
    images = torch.stack([image for image, _ in kept])
    labels = torch.tensor([label for _, label in kept], dtype=torch.int64)
    return images, labels, bad


@dataclass
class ImageLoader:
    """Batches of one split on `device`: `for images, labels in loader` (uint8 NCHW, int64); `len()` batches an epoch."""

    loader: DataLoader
    order: EpochOrder
    device: torch.device
    skipped: dict[str, str]  # bad image -> why, over every epoch so far

    def set_epoch(self, epoch: int) -> None:
        """Shuffle and augment the next pass as epoch `epoch` (1-based in fit; any int)."""
        self.order.set_epoch(epoch)

    def __len__(self) -> int:
        return len(self.loader)

    def __iter__(self) -> Iterator[tuple[torch.Tensor, torch.Tensor]]:
        non_blocking = self.device.type == "cuda"
        for images, labels, bad in self.loader:
            for reason in bad:
                path = reason.split(": ", 1)[0]
                if path not in self.skipped:
                    log.warning("skipped a bad image: %s", reason)
                    self.skipped[path] = reason.split(": ", 1)[-1]
            if len(labels) == 0:
                continue
            yield images.to(self.device, non_blocking=non_blocking), labels.to(self.device, non_blocking=non_blocking)

    def close(self) -> None:
        """Stop the persistent workers now rather than when the loader is collected."""
        iterator = getattr(self.loader, "_iterator", None)
        if iterator is not None and hasattr(iterator, "_shutdown_workers"):
            iterator._shutdown_workers()
        self.loader._iterator = None


def make_loader(split: StreamedSplit, transform: TrainCrop | EvalCrop, *, batch_size: int, seed: int,
                train: bool, device: str | torch.device = "cpu", cpus: float | None = None,
                workers: int | None = None, shard: tuple[int, int] = (0, 1),
                prefetch_factor: int = DEFAULT_PREFETCH, persistent: bool = True) -> ImageLoader:
    """The loader of one split: shuffled and full batches only when `train`, in order and every image otherwise.

    `workers` overrides `loader_workers(cpus)`; `shard=(rank, world_size)`
    takes this data-parallel worker's part. A training epoch has
    `len(split) // world_size // batch_size` batches (at least one: a split
    smaller than the batch is one batch), the rule of the whole-tensor path.
    """
    if not (isinstance(batch_size, int) and batch_size >= 1):
        raise ValueError(f"batch_size: got {batch_size!r}; allowed: an integer >= 1")
    device = torch.device(device)
    order = EpochOrder(len(split), seed, shuffle=train, shard=shard, even=train)
    workers = loader_workers(cpus) if workers is None else workers
    if train:
        # Drop the ragged last batch (BatchNorm and a steady schedule, as in search.train._batches).
        batch_size = max(1, min(batch_size, len(order)))
    loader = DataLoader(
        StreamedImages(split, transform, seed), batch_size=batch_size, sampler=order, drop_last=train,
        num_workers=workers, collate_fn=collate_images, pin_memory=device.type == "cuda",
        persistent_workers=persistent and workers > 0, prefetch_factor=prefetch_factor if workers > 0 else None,
    )
    return ImageLoader(loader, order, device, {})
