"""Budget-true ASHA rungs (search.asha.schedule budget_true): the rung epochs, the compressed schedule, and what a
continued or restarted trial trains, reports and records."""

from __future__ import annotations

import io
import math

import pytest

import runfolder
from models import ArchSpec, StageSpec
from search._recorder import Recorder
from search.train import BudgetRungs, Leg, fit, lr_factor, training_legs
from space import SCHEDULES, DataSettings, TrainSettings
from tune_events import epoch_result, trial_config

TINY = ArchSpec(stages=(StageSpec(1, 8, 1), StageSpec(1, 8, 2)), stem="cifar", stem_width=8,
                shortcut="B", num_classes=10)
# Two optimiser steps per epoch: enough for a schedule to move, little enough for a few seconds of training.
SMALL = DataSettings(dataset="synthetic", synthetic_train=80, synthetic_test=16)


# ------------------------------------------------------------------ rung epochs
@pytest.mark.parametrize("grace_period, reduction_factor, max_epochs, rungs", [
    (1, 4, 8, (1, 4, 8)),
    (1, 3, 8, (1, 3, 8)),
    (1, 2, 8, (1, 2, 4, 8)),        # a milestone at max_t is the end of training, not a rung of its own
    (2, 1.5, 8, (2, 3, 5, 7, 8)),   # 2, 3, 4.5 -> 5, 6.75 -> 7: whole epochs, rounded up as Tune compares
    (8, 3, 8, (8,)),
])
def test_rung_epochs_are_the_milestones_ray_tune_compares_at(grace_period, reduction_factor, max_epochs, rungs):
    from ray.tune.schedulers.async_hyperband import _Bracket

    assert runfolder.asha_rung_epochs(grace_period, reduction_factor, max_epochs) == rungs
    bracket = _Bracket(min_t=grace_period, max_t=max_epochs, reduction_factor=reduction_factor, s=0)
    # Tune's milestones (largest first), each reached at the first whole epoch at or past it.
    tune_rungs = sorted({math.ceil(milestone) for milestone, _ in bracket._rungs} | {max_epochs})
    assert tuple(tune_rungs) == rungs


# ------------------------------------------------------------------- schedules
@pytest.mark.parametrize("schedule", ["cosine", "step"])
def test_compressed_schedule_decays_to_its_end_value_exactly_at_each_rung(schedule):
    train = TrainSettings(epochs=8, schedule=schedule, warmup_epochs=2)
    steps = 10
    end_value = SCHEDULES[schedule](1.0, train)
    for promotion in ("continue", "restart"):
        for leg in training_legs(8, BudgetRungs((1, 4, 8), promotion)):
            # The step count at the leg's last epoch: the schedule has run its whole course there.
            assert lr_factor(leg.epochs * steps, steps, train, leg) == pytest.approx(end_value)
            # ... and not before: half-way through the leg (warm-up included) the rate is still well above it.
            assert lr_factor(leg.epochs * steps // 2 - 1, steps, train, leg) > end_value + 0.05
    # Truncated, the full-length schedule is far from its end at the first rungs: what ASHA used to rank on.
    for rung in (1, 4):
        assert lr_factor(rung * steps, steps, train) > end_value + 0.05


def test_a_continued_leg_restarts_the_rate_without_warm_up_and_a_fresh_leg_warms_up_compressed():
    train = TrainSettings(epochs=8, schedule="cosine", warmup_epochs=2)
    first, second, last = training_legs(8, BudgetRungs((1, 4, 8), "continue"))
    # 2 of 8 epochs of warm-up, compressed into a 1-epoch rung: a quarter of it, 25 of 100 steps.
    assert lr_factor(24, 100, train, first) == pytest.approx(25 / 26) and lr_factor(25, 100, train, first) == 1.0
    assert lr_factor(0, 100, train, second) == 1.0 == lr_factor(0, 100, train, last)  # SGDR's warm restart
    # Without a leg, the whole training is one leg: today's schedule, unchanged.
    whole = Leg(0, 8, True, 0)
    assert all(lr_factor(step, 10, train) == lr_factor(step, 10, train, whole) for step in range(81))


def test_epoch_accounting_of_continue_and_restart():
    rungs = (1, 4, 8)
    continued = training_legs(8, BudgetRungs(rungs, "continue"))
    restarted = training_legs(8, BudgetRungs(rungs, "restart"))
    assert [(leg.start, leg.end, leg.from_scratch) for leg in continued] == [(0, 1, True), (1, 4, False),
                                                                            (4, 8, False)]
    assert sum(leg.epochs for leg in continued) == 8
    assert [(leg.start, leg.end, leg.reported_after) for leg in restarted] == [(0, 1, 0), (0, 4, 1), (0, 8, 4)]
    assert sum(leg.epochs for leg in restarted) == 1 + 4 + 8  # every rung's budget again from scratch
    # A trial shorter than the study's longest (a searched train.epochs) ends at its own budget.
    assert [leg.end for leg in training_legs(5, BudgetRungs(rungs, "restart"))] == [1, 4, 5]
    assert training_legs(8) == [Leg(0, 8, True, 0)]


# ------------------------------------------------------------------------ fit
def test_fit_with_continued_rungs_anneals_at_every_rung_and_trains_each_epoch_once():
    train = TrainSettings(epochs=3, batch_size=32, lr=0.1, schedule="cosine")
    epochs: list[dict] = []
    result = fit(TINY, train, SMALL, report=epochs.append, rungs=BudgetRungs((1, 3), "continue"))
    assert result["status"] == "complete" and result["epochs_run"] == 3
    assert [(e["epoch"], e["epochs_run"]) for e in epochs] == [(1, 1), (2, 2), (3, 3)]
    # Cosine ends at 0: the rate has decayed fully at rung 1 and at the end; epoch 2 is half-way through its leg.
    assert [e["lr"] for e in epochs] == pytest.approx([0.0, 0.05, 0.0], abs=1e-12)


def test_fit_with_restarted_rungs_trains_each_rung_from_scratch_and_counts_every_epoch():
    train = TrainSettings(epochs=2, batch_size=32, lr=0.1, schedule="cosine")
    restarted: list[dict] = []
    result = fit(TINY, train, SMALL, report=restarted.append, rungs=BudgetRungs((1, 2), "restart"))
    # Rung 1 (1 epoch), then both epochs from scratch; budget epoch 1 is reported once, from the 1-epoch leg.
    assert result["epochs_run"] == 1 + 2
    assert [(e["epoch"], e["epochs_run"]) for e in restarted] == [(1, 1), (2, 3)]
    # The last leg is a fresh trial of the whole budget: same initial weights and batches as plain training.
    plain: list[dict] = []
    whole = fit(TINY, train, SMALL, report=plain.append)
    assert restarted[1]["train_loss"] == plain[1]["train_loss"]
    assert result["val_acc_final"] == whole["val_acc_final"] and result["test_acc"] == whole["test_acc"]
    # The 1-epoch rung annealed fully; plain training was half-way down its cosine there.
    assert restarted[0]["lr"] == pytest.approx(0.0, abs=1e-12) and plain[0]["lr"] == pytest.approx(0.05)


# ------------------------------------------------------------------- recorder
def test_a_pruned_restarted_trial_records_the_epochs_it_trained_not_the_budget_epoch(tmp_path):
    tables = runfolder.ResultsTables(tmp_path)
    recorder = Recorder(tables, total=1, started=0.0, keep_checkpoints=0, out=io.StringIO())
    config = trial_config(0, "A", 0)
    for epoch, trained in ((1, 1), (2, 3)):  # rungs (1, 2): stopped at rung 2 after training 1 + 2 epochs
        recorder.trial_result("t0", {**epoch_result(config, epoch), "epochs_run": trained})
    recorder.trial_finished("t0", config, {**epoch_result(config, 2), "epochs_run": 3})
    row = tables.rows[runfolder.trial_id(0)]
    assert row["status"] == "pruned" and row["epochs_run"] == 3
    assert [point["epoch"] for point in tables.curves[runfolder.trial_id(0)]] == [1, 2]  # the budget epochs
    tables.close()
