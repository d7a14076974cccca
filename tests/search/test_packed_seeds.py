"""search._packed_seeds: K seeds packed into one model train as K separate `fit` calls would, seed by seed.

Tolerance: the packed model runs each convolution as one grouped convolution
over the seeds (vmap's batching rule) and each BatchNorm over K x C channels,
so its fp32 sums run in another order than a separate run's. That rounding
(about 1e-7 relative) grows with training: measured on the CPU, the training
losses agreed to 3e-5 after one epoch at lr 0.1 and to 3e-4 after three,
and to 1e-6 at lr 0.01. Here (4 steps at lr 0.05) the losses must agree to
1e-3, the accuracies to within one image, and each seed's BatchNorm running
statistics to 1e-3, while two seeds differ from each other by far more than
that (checked too, so the comparison can tell seeds apart).
"""

from __future__ import annotations


import pytest
import torch

import models
from models import ArchSpec, StageSpec
from search._packed_seeds import fit_packed, same_but_seed
from search.train import fit
from space import DataSettings, TrainSettings

from cifar_sample import DATA, EVAL_IMAGES, exact_fp32, splits  # noqa: F401 (the fixtures)

# Shortcut A (zero-padded channels) and BatchNorm in every block: the layers packing must keep apart per seed.
TINY = ArchSpec(stages=(StageSpec(1, 8, 1), StageSpec(1, 16, 2)), stem="cifar", stem_width=8, shortcut="A",
                num_classes=10)
SETTINGS = TrainSettings(epochs=2, batch_size=64, lr=0.05, schedule="cosine", amp="off", channels_last=False)
SEEDS = (0, 1)
LOSS_TOLERANCE = 1e-3
BATCHNORM_TOLERANCE = 1e-3

DEVICES = ["cpu", pytest.param("cuda", marks=pytest.mark.gpu)]


def _running_stats(folder) -> dict[str, torch.Tensor]:
    net = models.load(folder)
    return {name: value for name, value in net.state_dict().items() if "running_" in name}


@pytest.mark.parametrize("device", DEVICES)
def test_packed_seeds_match_separate_runs_seed_by_seed(device: str, splits, tmp_path) -> None:
    trains = [SETTINGS.replace(seed=seed) for seed in SEEDS]
    separate = []
    for train in trains:
        curve: list[dict] = []
        result = fit(TINY, train, DATA, report=curve.append, splits=splits, device=device,
                     save_to=tmp_path / f"separate-{train.seed}")
        separate.append((curve, result))
    curves: list[list[dict]] = [[] for _ in trains]
    packed = fit_packed(TINY, trains, DATA, reports=[curve.append for curve in curves], splits=splits, device=device,
                        save_to=[tmp_path / f"packed-{train.seed}" for train in trains])

    one_image = 1.01 / EVAL_IMAGES
    for (curve, result), packed_curve, packed_result, train in zip(separate, curves, packed, trains):
        assert packed_result["status"] == "complete" and packed_result["packed_seeds"] == len(SEEDS)
        assert [e["epoch"] for e in packed_curve] == [e["epoch"] for e in curve] == [1, 2]
        assert [e["train_loss"] for e in packed_curve] == pytest.approx([e["train_loss"] for e in curve],
                                                                         abs=LOSS_TOLERANCE)
        assert [e["val_acc"] for e in packed_curve] == pytest.approx([e["val_acc"] for e in curve], abs=one_image)
        assert [e["lr"] for e in packed_curve] == pytest.approx([e["lr"] for e in curve])
        assert packed_result["test_acc"] == pytest.approx(result["test_acc"], abs=one_image)
        assert packed_result["val_acc_best"] == pytest.approx(result["val_acc_best"], abs=one_image)
        # Each seed's own checkpoint, with its own BatchNorm running statistics.
        ours, theirs = (_running_stats(tmp_path / f"{kind}-{train.seed}") for kind in ("packed", "separate"))
        assert ours.keys() == theirs.keys() and ours
        for name in ours:
            assert torch.allclose(ours[name], theirs[name], atol=BATCHNORM_TOLERANCE), name

    # The comparison can tell seeds apart: they differ far beyond the tolerances.
    first, second = (_running_stats(tmp_path / f"packed-{seed}") for seed in SEEDS)
    assert max((first[name] - second[name]).abs().max().item() for name in first) > 10 * BATCHNORM_TOLERANCE
    losses = [[e["train_loss"] for e in curve] for curve, _ in separate]
    assert max(abs(a - b) for a, b in zip(*losses)) > 3 * LOSS_TOLERANCE


def test_packed_seeds_must_differ_in_the_seed_only() -> None:
    assert same_but_seed([SETTINGS.replace(seed=s) for s in (0, 1, 2)]) is None
    assert "seeds repeat" in same_but_seed([SETTINGS, SETTINGS])
    assert "train.lr" in same_but_seed([SETTINGS, SETTINGS.replace(seed=1, lr=0.2)])
    with pytest.raises(ValueError, match=r"pack_seeds: seed 1 differs from seed 0 in train.epochs"):
        fit_packed(TINY, [SETTINGS, SETTINGS.replace(seed=1, epochs=3)], DATA)


def test_diverged_seeds_fail_as_in_fit() -> None:
    data = DataSettings(dataset="synthetic", synthetic_train=256, synthetic_test=64)
    diverging = TrainSettings(epochs=3, batch_size=32, lr=1e6, momentum=0.0)  # as tests/search/test_train.py's
    alone = fit(TINY, diverging, data)
    packed = fit_packed(TINY, [diverging.replace(seed=seed) for seed in SEEDS], data)
    assert alone["status"] == "failed" and alone["error"].startswith("diverged: training loss became")
    for result in packed:
        assert result["status"] == "failed" and result["error"].startswith("diverged: training loss became")
        assert result["epochs_run"] < diverging.epochs and result["test_acc"] != result["test_acc"]  # NaN: not tested
