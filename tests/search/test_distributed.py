"""search._distributed: a trial as N data-parallel Ray Train workers (search.resources.workers).

The numerical check runs `fit` as two gloo workers in two processes of its
own (no Ray: a Ray Train launch costs 20 s here); the launch through Ray Train
inside a Tune trial is checked end to end on the session's two-node cluster
(tests/search/test_cluster.py). The strong check is numerical: DDP averages the workers' gradients, so where each
worker's BatchNorm statistics equal the global batch's, two workers' steps
are the one-worker steps to rounding. A training set of one image repeated
makes that so (the statistics of any share of identical images are those of
all of them) while the labels, random, still differ between the shares: a
worker that skipped the averaging, took the wrong share or scaled the rate
would end with other weights.
"""

from __future__ import annotations

import os
from pathlib import Path

import pytest
import torch
import yaml
from safetensors.torch import load_file

import imagefeed
import space
from commands import SMOKE
from models import ArchSpec, StageSpec
from models._checkpoint import WEIGHTS_FILE
from search._data_parallel import DataParallel
from search.train import fit
from space import DataSettings, TrainSettings

TINY = ArchSpec(stages=(StageSpec(1, 8, 1), StageSpec(1, 16, 2)), stem="cifar", stem_width=8,
                shortcut="B", num_classes=10)


# ----------------------------------------------------------------- fast
@pytest.mark.parametrize("world_size", [2, 3, 4])
def test_shares_of_a_batch_are_disjoint_and_cover_it(world_size: int) -> None:
    batch = torch.randperm(24)
    shares = [DataParallel(rank, world_size).shard(batch) for rank in range(world_size)]
    assert torch.equal(torch.cat(shares), batch)
    assert len({len(share) for share in shares}) == 1


def test_held_out_shares_cover_a_set_that_does_not_divide() -> None:
    images = torch.arange(10)
    shares = [DataParallel(rank, 4).shard(images) for rank in range(4)]
    assert torch.equal(torch.cat(shares), images)


def _study_with(tmp_path: Path, resources: dict, batch_size: object = 64) -> Path:
    raw = yaml.safe_load(SMOKE.read_text())
    raw["search"]["resources"] = resources
    raw["train"]["batch_size"] = batch_size
    path = tmp_path / "study.yaml"
    path.write_text(yaml.safe_dump(raw))
    return path


@pytest.mark.parametrize(("resources", "batch_size", "expected"), [
    ({"cpus": 1, "workers": 2}, 63, "train.batch_size: the global batch is split evenly over "
                                    "search.resources.workers (2), and 63 is not a multiple of 2"),
    ({"cpus": 1, "workers": 4}, {"choice": [64, 96, 30]}, "30 is not a multiple of 4"),
    ({"cpus": 1, "workers": 2}, {"int": [32, 128], "step": 3}, "3 is not a multiple of 2"),
    ({"cpus": 1, "workers": 2, "sync_batchnorm": True}, 64,
     "search.resources.sync_batchnorm: SyncBatchNorm runs on GPUs only"),
    ({"cpus": 1, "gpus": 1, "sync_batchnorm": True}, 64, "allowed: sync_batchnorm: false, or workers: 2 or more"),
    ({"cpus": 1, "gpus": 0.5, "workers": 2}, 64, "each of 2 workers drives one GPU of its own (NCCL)"),
    ({"cpus": 1, "workers": 0}, 64, "search.resources.workers"),
])
def test_bad_worker_settings_are_refused_with_the_rule(tmp_path: Path, resources: dict, batch_size: object,
                                                      expected: str) -> None:
    with pytest.raises(space.StudyError) as refused:
        space.load_study(str(_study_with(tmp_path, resources, batch_size)))
    assert expected in str(refused.value)


def test_even_batches_and_worker_settings_load(tmp_path: Path) -> None:
    study = space.load_study(str(_study_with(tmp_path, {"cpus": 1, "workers": 2}, {"choice": [64, 32]})))
    assert (study.search.resources.workers, study.search.resources.sync_batchnorm) == (2, False)
    gpus = space.load_study(str(_study_with(tmp_path, {"cpus": 1, "gpus": 1, "workers": 8, "sync_batchnorm": True})))
    assert gpus.search.resources.sync_batchnorm is True


# ----------------------------------------------------------------- slow
def _one_image_repeated(n_train: int = 32, n_held_out: int = 40, size: int = 16) -> imagefeed.DatasetSplits:
    generator = torch.Generator().manual_seed(0)
    image = torch.randint(0, 256, (1, 3, size, size), dtype=torch.uint8, generator=generator)
    held_out = torch.randint(0, 256, (n_held_out, 3, size, size), dtype=torch.uint8, generator=generator)
    return imagefeed.DatasetSplits(
        train_x=image.expand(n_train, -1, -1, -1).contiguous(),
        train_y=torch.randint(0, 10, (n_train,), generator=generator),
        val_x=held_out, val_y=torch.randint(0, 10, (n_held_out,), generator=generator),
        test_x=held_out.flip(0), test_y=torch.randint(0, 10, (n_held_out,), generator=generator),
        num_classes=10, image_size=size, mean=(0.5, 0.5, 0.5), std=(0.25, 0.25, 0.25), source={"name": "test"})


def _worker(rank: int, rendezvous: str, out: str) -> None:
    """One of two data-parallel workers of `fit`, as Ray Train's would run it (gloo, rank 0 saves)."""
    import torch.distributed as dist

    torch.set_num_threads(1)
    dist.init_process_group("gloo", init_method=f"file://{rendezvous}", rank=rank, world_size=2)
    try:
        epochs: list[dict] = []
        result = fit(TINY, STEP_TRAIN, STEP_DATA, report=epochs.append, splits=_one_image_repeated(), device="cpu",
                     save_to=Path(out) / "two" if rank == 0 else None, distributed=DataParallel(rank, 2))
        torch.save({"result": {k: v for k, v in result.items() if isinstance(v, (int, float, str))},
                    "epochs": epochs, "pid": os.getpid()}, Path(out) / f"rank{rank}.pt")
    finally:
        dist.destroy_process_group()


STEP_TRAIN = TrainSettings(epochs=2, batch_size=16, lr=0.1, momentum=0.9, weight_decay=1e-4, schedule="constant")
STEP_DATA = DataSettings(dataset="synthetic", crop_padding=0, flip=False)


def test_two_gloo_workers_take_the_one_worker_steps(tmp_path: Path) -> None:
    """Two data-parallel workers end where one process ends, to rounding (the module's docstring says why)."""
    import torch.multiprocessing as mp

    one_epochs: list[dict] = []
    one = fit(TINY, STEP_TRAIN, STEP_DATA, report=one_epochs.append, splits=_one_image_repeated(), device="cpu",
              save_to=tmp_path / "one")
    mp.start_processes(_worker, args=(str(tmp_path / "rendezvous"), str(tmp_path)), nprocs=2, start_method="spawn")
    ranks = [torch.load(tmp_path / f"rank{rank}.pt", weights_only=True) for rank in (0, 1)]
    two, two_epochs = ranks[0]["result"], ranks[0]["epochs"]

    assert two["status"] == "complete", two["error"]
    assert len({rank["pid"] for rank in ranks}) == 2 and os.getpid() not in {rank["pid"] for rank in ranks}
    assert (one["workers"], two["workers"]) == (1, 2)
    assert one["global_batch"] == two["global_batch"] == 16 and one["base_lr"] == two["base_lr"] == 0.1
    # Each epoch covers the global batch once: 32 images, not 32 per worker.
    assert [round(e["images_per_s"] * e["epoch_s"]) for e in two_epochs] == [32, 32]
    assert [e["train_loss"] for e in two_epochs] == pytest.approx([e["train_loss"] for e in one_epochs], abs=1e-5)
    weights_one = load_file(str(tmp_path / "one" / WEIGHTS_FILE))
    weights_two = load_file(str(tmp_path / "two" / WEIGHTS_FILE))
    assert weights_one.keys() == weights_two.keys()
    for name, tensor in weights_one.items():
        if name.endswith("running_var"):
            # Running variances are unbiased by n / (n - 1), n the pixels a worker sees: a share's differ from
            # the whole batch's by that factor alone, which is BatchNorm2d's rule, not an error of the step.
            continue
        torch.testing.assert_close(weights_two[name], tensor, atol=1e-5, rtol=1e-4, msg=name)
    assert two["val_acc_final"] == one["val_acc_final"] and two["test_acc"] == one["test_acc"]
