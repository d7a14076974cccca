"""A streamed dataset's loaders for one `search.train.fit`: training, validation and test, opened as needed."""

from __future__ import annotations

from dataclasses import dataclass
from typing import Any

import numpy as np
import torch

import imagefeed
from space import TrainSettings

from ._data_parallel import DataParallel


@dataclass
class StreamedInput:
    """A streamed dataset's loaders for one fit: training (persistent workers), validation, and test when asked for."""

    train: imagefeed.ImageLoader
    splits: imagefeed.StreamedSplits
    options: dict[str, Any]
    val_split: imagefeed.StreamedSplit | None
    opened: dict[str, imagefeed.ImageLoader]

    @classmethod
    def open(cls, splits: imagefeed.StreamedSplits, train: TrainSettings, flip: bool, device: torch.device,
             cpus: float | None, distributed: DataParallel | None, train_on_val: bool) -> StreamedInput:
        shard = (0, 1) if distributed is None else (distributed.rank, distributed.world_size)
        # Each data-parallel worker loads its share of the global batch (ceil, as DataParallel.shard).
        batch = -(-train.batch_size // shard[1])
        options = {"batch_size": batch, "seed": train.seed, "device": device, "cpus": cpus, "shard": shard}
        train_split, val_split = splits.train, splits.val
        if train_on_val:
            train_split = imagefeed.StreamedSplit(splits.train.images,
                                                  np.concatenate([splits.train.indices, splits.val.indices]))
            val_split = None
        loader = imagefeed.make_loader(train_split, imagefeed.train_transform(splits.image_size, flip),
                                       train=True, **options)
        return cls(loader, splits, options, val_split, {})

    def loader(self, split: str) -> imagefeed.ImageLoader | None:
        """The evaluation loader of "val" or "test"; None when there is no validation split (train_on_val)."""
        if split not in self.opened:
            source = self.val_split if split == "val" else self.splits.test
            if source is None:
                return None
            transform = imagefeed.eval_transform(self.splits.image_size, self.splits.eval_resize)
            # Test is read once, at the end: its workers need not outlive that pass.
            self.opened[split] = imagefeed.make_loader(source, transform, train=False, persistent=split == "val",
                                                       **self.options)
        return self.opened[split]

    @property
    def skipped(self) -> dict[str, str]:
        """Every bad image any of the loaders left out: path -> why."""
        merged = dict(self.train.skipped)
        for loader in self.opened.values():
            merged.update(loader.skipped)
        return merged

    def close(self) -> None:
        """Stop every loader's workers."""
        for loader in (self.train, *self.opened.values()):
            loader.close()
