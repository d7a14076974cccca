"""The Optuna side of --resume: trials a killed driver left RUNNING are rerun once, whatever state it left them in."""

from __future__ import annotations

import optuna
import pytest
from optuna.trial import TrialState

from search._searcher import AskTellGridSampler, prepare_resume

GRID = {"shortcut": ["A", "B", "C"], "depth": [20, 56], "seed": [0, 1]}


def _study() -> optuna.Study:
    optuna.logging.set_verbosity(optuna.logging.WARNING)
    return optuna.create_study(sampler=AskTellGridSampler(GRID, seed=0))


def _suggest_all(trial: optuna.Trial) -> dict:
    return {name: trial.suggest_categorical(name, values) for name, values in GRID.items()}


@pytest.mark.parametrize("left", ["suggested", "point only", "nothing"])
def test_every_grid_point_runs_once_after_a_kill_whatever_the_trial_held(left):
    """A kill can land after the parameters were suggested, after ask() gave the trial its point, or before."""
    study = _study()
    done = study.ask()
    _suggest_all(done)
    study.tell(done, 0.5)
    if left == "suggested":
        _suggest_all(study.ask())
    elif left == "point only":
        study.ask()  # GridSampler.before_trial has set grid_id; no parameter suggested yet
    else:
        study._storage.create_new_trial(study._study_id)  # created, not yet seen by the sampler
    assert len(study.get_trials(states=(TrialState.RUNNING,))) == 1

    assert prepare_resume(study) == [1]
    total = len(study.sampler._all_grids)
    while len(study.get_trials(states=(TrialState.COMPLETE,))) < total:
        trial = study.ask()
        _suggest_all(trial)
        study.tell(trial, 0.5)
    points = [tuple(t.params[name] for name in GRID) for t in study.get_trials(states=(TrialState.COMPLETE,))]
    assert len(points) == len(set(points)) == total
    assert [t.number for t in study.get_trials(states=(TrialState.FAIL,))] == [1]
