"""What `search.train.fit` asks of one data-parallel worker: its share of each batch, DDP, summed figures.

Kept apart from the Ray Train launcher (`search._distributed`), which imports
`fit`: `fit` imports only this.
"""

from __future__ import annotations

from dataclasses import dataclass

import torch
from torch import nn

BATCHNORM = "BatchNorm2d"
SYNC_BATCHNORM = "SyncBatchNorm"
# The results column `batchnorm` of a trial: which statistics its BatchNorm layers normalise with.
BATCHNORM_KINDS = (BATCHNORM, SYNC_BATCHNORM)


@dataclass(frozen=True)
class DataParallel:
    """This process's place among a trial's data-parallel workers; what `train.fit` asks of it.

    `fit` without one is a single process; with one, it wraps the model in
    DDP, trains on `shard` of each global batch, evaluates its share of the
    held-out images and sums the counts over the workers.
    """

    rank: int
    world_size: int
    sync_batchnorm: bool = False

    @property
    def batchnorm(self) -> str:
        """The results column `batchnorm`: BatchNorm2d (statistics per worker) or SyncBatchNorm (global batch)."""
        return SYNC_BATCHNORM if self.sync_batchnorm else BATCHNORM

    def wrap(self, model: nn.Module, device: torch.device) -> nn.Module:
        """`model` (SyncBatchNorm where asked) inside DistributedDataParallel, which averages the gradients."""
        from torch.nn.parallel import DistributedDataParallel

        if self.sync_batchnorm:
            model = nn.SyncBatchNorm.convert_sync_batchnorm(model)
        return DistributedDataParallel(model, device_ids=[device.index] if device.type == "cuda" else None)

    def shard(self, items: torch.Tensor) -> torch.Tensor:
        """This worker's contiguous share of `items` (the global batch's indices, or the held-out images).

        Every worker draws the same permutation from the same seed, so the
        shares of one global batch are disjoint and together cover it.
        """
        per_worker = -(-len(items) // self.world_size)  # ceil: a held-out set need not divide evenly
        return items[self.rank * per_worker:(self.rank + 1) * per_worker]

    def augment_seed(self, seed: int) -> int:
        """The seed of this worker's crops and flips: distinct per worker, so shares are not augmented alike."""
        return seed * self.world_size + self.rank + 1

    def sum(self, *values: torch.Tensor | float) -> list[float]:
        """Each value summed over the workers (one all-reduce), as Python floats."""
        import torch.distributed as dist

        device = next((v.device for v in values if isinstance(v, torch.Tensor)), torch.device("cpu"))
        stacked = torch.stack([torch.as_tensor(v, dtype=torch.float64, device=device).reshape(()) for v in values])
        dist.all_reduce(stacked)
        return stacked.tolist()

    def share_buffers(self, model: nn.Module) -> None:
        """Give every worker rank 0's BatchNorm running statistics, so that all evaluate the model rank 0 saves."""
        import torch.distributed as dist

        for buffer in model.buffers():
            dist.broadcast(buffer, src=0)
