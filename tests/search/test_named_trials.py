"""Trials a user can find in the Ray dashboard: each trial's actor named after it, its folder, its epoch lines.

The names are checked here without Ray; the session's real smoke run
(tests/conftest.py) is watched through Ray's state API while it trains, and
the slow test reads what the dashboard's Actors view listed then.
"""

from __future__ import annotations

import math
import re

import pytest
from ray.tune.experiment import Trial
from tune_events import trial_config

import runfolder
from commands import SmokeRun
from search._trial import TrialTrainable, describe_trial, epoch_line, trial_name

# An actor's repr in the smoke study: the trial id, its one factor, its seed.
_SMOKE_TRIAL_REPR = re.compile(r"(trial_\d{4}) shortcut=(A|B) seed=(\d+)")


def test_a_trial_actor_is_named_by_its_trial_id_factors_and_seed() -> None:
    trainable = TrialTrainable.__new__(TrialTrainable)  # no Ray: set the config as Trainable.__init__ does
    trainable.config = trial_config(3, "B", 1)
    assert repr(trainable) == "trial_0003 shortcut=B seed=1"
    # A reused actor (reuse_actors): Tune sets the next trial's config, and the repr follows it.
    trainable.config = trial_config(12, "A", 0)
    assert repr(trainable) == "trial_0012 shortcut=A seed=0"


def test_the_description_leaves_out_factors_that_do_not_apply_and_keeps_floats_short() -> None:
    config = trial_config(7, "A", 2)
    config["plan"]["factors"] = {"block": "basic", "bottleneck_ratio": None, "lr": 0.0123456789,
                                 "stages.0.depth": 3}
    assert describe_trial(config) == "trial_0007 block=basic lr=0.01235 stages.0.depth=3 seed=2"


def test_tune_names_a_trial_and_its_folder_by_the_trial_id() -> None:
    trial = Trial("TrialTrainable", config=trial_config(3, "B", 1), stub=True, trial_name_creator=trial_name,
                  trial_dirname_creator=trial_name)
    assert str(trial) == "trial_0003" == runfolder.trial_id(3)
    assert trial.custom_dirname == "trial_0003"


def test_the_epoch_line_shows_what_was_measured() -> None:
    metrics = {"epoch": 2, "train_loss": 1.23456, "val_acc": 0.4512, "images_per_s": 1834.4, "lr": 0.1}
    assert epoch_line("trial_0003", metrics, 10, peak_host_mib=812.3) == \
        "trial_0003 epoch 2/10  loss 1.2346  val_acc 0.4512  1834 img/s  peak host 812 MiB"
    # A retrain measures no validation accuracy, a CPU no device memory, a data-parallel trial no host here.
    line = epoch_line("trial_0003", {**metrics, "val_acc": math.nan}, 10, peak_device_mib=2048.0)
    assert line == "trial_0003 epoch 2/10  loss 1.2346  1834 img/s  peak device 2048 MiB"


@pytest.mark.slow
def test_the_dashboard_lists_each_trial_actor_by_its_trial(smoke_run: SmokeRun) -> None:
    results = runfolder.read_results(smoke_run.run_dir)
    trials = {row["trial_id"]: (row["factor.shortcut"], str(row["seed"])) for _, row in results.iterrows()}
    named = [_SMOKE_TRIAL_REPR.fullmatch(name) for cls, name in smoke_run.actors_seen if cls == "TrialTrainable"]
    assert named and all(named), smoke_run.actors_seen
    # Each actor names a trial of this run, with that trial's factor and seed.
    for match in named:
        assert trials[match[1]] == (match[2], match[3]), (match[0], trials)
    assert not any(cls == "ImplicitFunc" or name == "run_trial" for cls, name in smoke_run.actors_seen)
    # Tune's trial folders are the trial ids.
    attempt = runfolder.RunFolder(smoke_run.run_dir).ray_results / "attempt-1"
    assert {path.name for path in attempt.iterdir() if path.is_dir()} == set(trials)
    # The epoch lines go to the trials' actor logs (the dashboard's log view), not to the driver's console.
    assert not re.search(r"trial_\d{4} epoch \d", smoke_run.stdout), smoke_run.stdout
