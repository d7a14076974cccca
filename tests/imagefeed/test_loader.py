"""imagefeed._loader: seeded shuffles, workers from the trial's CPUs, shards, and bad images skipped and counted."""

from __future__ import annotations


import numpy as np
import pytest
import torch

import imagefeed
from imagefeed import EpochOrder, StreamedSplit, eval_transform, loader_workers, make_loader, train_transform
from space import DataSettings
from tests.imagefeed import layouts


@pytest.fixture(scope="module")
def splits(tmp_path_factory) -> imagefeed.StreamedSplits:
    root = tmp_path_factory.mktemp("loader")
    layouts.imagefolder(root, classes=2, per_class=8, size=(64, 48))
    layouts.truncated_jpeg(root / "train" / "airplane" / "broken.jpg")
    return imagefeed.load(DataSettings(dataset="imagefolder", root=str(root), image_size=16, val_fraction=0.25))


def test_workers_follow_the_trials_cpus() -> None:
    assert [loader_workers(c) for c in (0.5, 1, 1.5, 2, 4)] == [0, 0, 0, 1, 3]
    with pytest.raises(ValueError, match="cpus: got 0"):
        loader_workers(0)


def test_epoch_order_is_seeded_by_seed_and_epoch() -> None:
    order = EpochOrder(50, seed=3, shuffle=True)
    order.set_epoch(1)
    first = list(order)
    again = EpochOrder(50, seed=3, shuffle=True)
    again.set_epoch(1)
    assert list(again) == first
    order.set_epoch(2)
    assert [p for _, p in order] != [p for _, p in first]
    assert sorted(p for _, p in first) == list(range(50))


def test_shards_are_disjoint_equal_and_cover_the_epoch() -> None:
    shards = [EpochOrder(10, seed=0, shuffle=True, shard=(rank, 3)) for rank in range(3)]
    parts = [[p for _, p in shard] for shard in shards]
    assert [len(part) for part in parts] == [3, 3, 3]
    assert len(set().union(*parts)) == 9
    evaluation = [[p for _, p in EpochOrder(10, 0, shuffle=False, shard=(r, 3), even=False)] for r in range(3)]
    assert sorted(sum(evaluation, [])) == list(range(10))
    with pytest.raises(ValueError, match=r"shard: got \(3, 3\)"):
        EpochOrder(10, 0, True, shard=(3, 3))


def test_training_batches_are_uint8_seeded_and_skip_the_bad_image(splits, caplog) -> None:
    def epoch_batches(workers: int) -> list[tuple[torch.Tensor, torch.Tensor]]:
        loader = make_loader(splits.train, train_transform(16), batch_size=4, seed=5, train=True, workers=workers)
        loader.set_epoch(1)
        try:
            return list(loader), loader
        finally:
            loader.close()

    in_process, loader = epoch_batches(0)
    with_worker, _ = epoch_batches(1)
    assert len(in_process) == len(loader) == len(splits.train) // 4
    for (a, la), (b, lb) in zip(in_process, with_worker):
        assert a.dtype == torch.uint8 and a.shape[1:] == (3, 16, 16)
        assert torch.equal(a, b) and torch.equal(la, lb)  # the same images and crops whatever the worker count
    shown = sum(len(labels) for _, labels in in_process)
    if any(path.endswith("broken.jpg") for path in loader.skipped):
        assert shown == 4 * len(loader) - 1
        assert "broken.jpg" in caplog.text
    else:  # the broken image fell in the validation split or the dropped remainder
        assert shown == 4 * len(loader)


def test_evaluation_reads_every_image_once_in_order_and_counts_bad_ones(splits) -> None:
    everything = StreamedSplit(splits.train.images, np.arange(len(splits.train.images)))
    loader = make_loader(everything, eval_transform(16, 18), batch_size=5, seed=0, train=False, workers=0)
    labels = torch.cat([labels for _, labels in loader])
    assert len(loader.skipped) == 1 and next(iter(loader.skipped)).endswith("broken.jpg")
    assert len(labels) == len(everything) - 1
    assert make_loader(everything, eval_transform(16, 18), batch_size=5, seed=0, train=False,
                       cpus=2).loader.num_workers == 1
