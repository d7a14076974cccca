"""search._plans: the two plan sources answer every question the runner asks of a run's trials."""

from __future__ import annotations

from pathlib import Path

import optuna
import pytest

import space
from search._plans import FixedPlans, PlanSource, SampledPlans
from search._runner import RunOptions, _plan_source

STUDIES = Path(__file__).resolve().parents[2] / "studies"


def test_a_grid_study_samples_every_point_times_every_seed() -> None:
    study = space.load_study(STUDIES / "smoke.yaml")
    plans: PlanSource = SampledPlans(study)
    assert plans.target_trials() == 2 * 2  # shortcut A or B, seeds 0 and 1
    assert plans.objectives == [("val_acc", "max")]
    assert not plans.train_on_val and plans.takes_earlier_runs
    assert isinstance(plans.sampler(0), optuna.samplers.GridSampler)
    params = space.grid_search_space(study)
    plan, reason = plans.screen({name: values[0] for name, values in params.items()})
    assert reason is None and plan == space.resolve(study, {n: v[0] for n, v in params.items()}).to_dict()


def test_an_optuna_study_samples_its_trials_with_its_sampler() -> None:
    study = space.load_study(STUDIES / "nas_pareto.yaml")
    plans = SampledPlans(study)
    assert plans.target_trials() == study.search.trials
    assert plans.objectives == [("val_acc", "max"), ("macs", "min")]
    assert isinstance(plans.sampler(0), type(space.make_sampler(study.search.sampler, 0)))
    assert plans.screen({"block": "no_such_block"})[0] is None  # an unresolvable sample is rejected, not raised


def test_fixed_plans_run_each_plan_once_on_their_own_terms(tmp_path: Path) -> None:
    study = space.load_study(STUDIES / "smoke.yaml")
    given = tuple(space.resolve(study, {"point": point, "seed": 0}).to_dict()
                  for point in space.grid_search_space(study)["point"])
    plans: PlanSource = FixedPlans(given, train_on_val=True)
    assert plans.target_trials() == len(given)
    assert plans.objectives == [("test_acc", "max")]
    assert plans.train_on_val and not plans.takes_earlier_runs
    assert isinstance(plans.sampler(0), optuna.samplers.GridSampler)
    assert plans.screen({"plan": 1}) == (given[1], None)
    SampledPlans(study).check_resume(tmp_path, resume=True)  # nothing of its own to check
    SampledPlans(study).write(tmp_path)
    assert not list(tmp_path.iterdir())  # nothing of its own to write


@pytest.mark.parametrize("fixed", [None, FixedPlans(())])
def test_the_runner_takes_fixed_plans_where_given_else_the_studys(fixed: FixedPlans | None, tmp_path: Path) -> None:
    study = space.load_study(STUDIES / "smoke.yaml")
    source = _plan_source(study, RunOptions(run_dir=tmp_path, fixed=fixed))
    assert source is fixed if fixed is not None else source == SampledPlans(study)
