"""search.screen in the driver: of every ceil(1 / keep) samples the searcher draws, only the best by the proxy trains.

The searcher is driven as Ray Tune drives it (`suggest` per trial), with the
runner's recorder writing the rejected rows, so no Ray is needed. The proxy is
params, whose best candidate a test can name from the specs alone.
"""

from __future__ import annotations

import time
from pathlib import Path

import optuna
import pytest
import yaml
from optuna.trial import TrialState

import models
import runfolder
import space
from commands import SMOKE
from screens import ProxyScreen
from search._recorder import Recorder
from search._searcher import ScreeningOptunaSearch
from search._trial import PLAN, SCREEN, TRIAL_NUMBER


def _study(keep: float) -> space.Study:
    """The smoke study as an optuna search over depths and shortcuts, screened by params."""
    raw = yaml.safe_load(SMOKE.read_text())
    raw["space"]["stages"] = [{"depth": {"int": [1, 3]}, "width": 8, "stride": 1},
                              {"depth": {"int": [1, 3]}, "width": 16, "stride": 2}]
    raw["search"] = {"strategy": "optuna", "sampler": "random", "trials": 3, "seeds": [0],
                     "screen": {"proxy": "params", "keep": keep}}
    return space.study_from_dict(raw)


def _searcher(study: space.Study, recorder: Recorder, budget: int, screened: bool = True) -> ScreeningOptunaSearch:
    screen = study.search.screen
    # The screen of the runner (search._runner._proxy_screen), on no images: params needs none.
    proxy_screen = ProxyScreen(screen.proxy, screen.keep, (), 32) if screened else None

    def resolve(params: dict) -> tuple[dict, None]:
        return space.resolve(study, params).to_dict(), None

    optuna.logging.set_verbosity(optuna.logging.WARNING)
    return ScreeningOptunaSearch(
        space=space.define_by_run(study), metric="objective.val_acc", mode="max",
        sampler=optuna.samplers.RandomSampler(seed=0), study_name=study.name, screen=resolve,
        on_rejected=recorder.trial_rejected, objective_metrics=["objective.val_acc"], budget=budget,
        proxy_screen=proxy_screen)


def _params(plan: dict) -> int:
    return models.complexity(models.ArchSpec.from_dict(plan["spec"]), 32).params


@pytest.mark.parametrize("keep, drawn", [(0.25, 4), (0.5, 2)])
def test_each_trial_trains_the_best_of_its_candidates(tmp_path: Path, keep: float, drawn: int):
    study = _study(keep)
    tables = runfolder.ResultsTables(tmp_path)
    recorder = Recorder(tables, total=3, started=time.time(), keep_checkpoints=0)
    searcher = _searcher(study, recorder, budget=3)
    trained = []
    for trial in ("a", "b", "c"):
        before = set(tables.rows)
        config = searcher.suggest(trial)
        rejected = [tables.rows[t] for t in sorted(set(tables.rows) - before)]
        # ceil(1 / keep) candidates: the one handed to Tune and the others, recorded as rejected with their scores.
        assert len(rejected) == drawn - 1
        kept = _params(config[PLAN])
        assert config[SCREEN] == {"params": kept}
        for row in rejected:
            assert row["status"] == "pruned"
            assert row["error"].startswith(runfolder.REJECTED_PREFIX + "screened out by params")
            assert row[runfolder.screen_column("params")] <= kept
            assert row["params"] is None  # never trained: no metrics, only its score
        trained.append(config)
    assert searcher.suggest("d") == "FINISHED"  # the budget counts trained trials only
    stored = searcher.optuna_study.get_trials()
    assert len(stored) == 3 * drawn
    pruned = [t for t in stored if t.state == TrialState.PRUNED]
    assert len(pruned) == 3 * (drawn - 1)
    assert all(t.user_attrs["rejected"].startswith("screened out by params") and "params" in t.user_attrs["screen"]
               for t in pruned)
    running = {t.number for t in stored if t.state == TrialState.RUNNING}
    assert running == {config[TRIAL_NUMBER] for config in trained}

    # The trained trial's row carries its score in the same column.
    config = trained[0]
    recorder.trial_finished("a", config, {"final": True, "status": "complete", "val_acc_best": 0.5, "test_acc": 0.4,
                                          "params": _params(config[PLAN])})
    row = tables.rows[runfolder.trial_id(config[TRIAL_NUMBER])]
    assert row[runfolder.screen_column("params")] == _params(config[PLAN]) and row["status"] == "complete"


def test_a_run_without_a_screen_trains_every_sample(tmp_path: Path):
    study = _study(0.25)
    recorder = Recorder(runfolder.ResultsTables(tmp_path), total=3, started=time.time(), keep_checkpoints=0)
    searcher = _searcher(study, recorder, budget=3, screened=False)
    configs = [searcher.suggest(trial) for trial in ("a", "b", "c")]
    assert [SCREEN in config for config in configs] == [False] * 3
    assert not recorder.tables.rows and len(searcher.optuna_study.get_trials()) == 3
