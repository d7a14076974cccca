"""Sampling: define-by-run with real Optuna studies, grid points, resolve, constraints and factors."""

from __future__ import annotations

from collections import Counter

import optuna
import pytest

from models import ArchSpec
from space import (StudyError, TrainSettings, constraint_violation, define_by_run, dry_run_report, factors,
                   grid_points, grid_search_space, resolve, space_size, study_from_dict)

optuna.logging.set_verbosity(optuna.logging.WARNING)


def _study(space: dict, search: dict | None = None, train: dict | None = None):
    return study_from_dict({"name": "t", "question": "q", "space": space, "train": train or {"epochs": 3},
                            "search": search or {}})


# Every kind of searched value, a conditional one, and a constraint.
NAS_SPACE = {
    "base": "cifar_resnet20",
    "block": {"choice": ["basic", "bottleneck"]},
    "bottleneck_ratio": {"choice": [0.25, 0.5]},
    "groups": {"choice": [1, 2]},
    "shortcut": {"choice": ["A", "B"]},
    "width_multiplier": {"float": [1.0, 2.0], "step": 0.5},
    "stages": [{"depth": {"int": [1, 4]}}, {"depth": {"int": [1, 4]}}, {"depth": {"int": [1, 4]}}],
    "constraints": {"max_macs": 1.0e8},
}
NAS_SEARCH = {"strategy": "optuna", "trials": 20, "objectives": ["val_acc:max", "macs:min"]}


def _sample(study, count: int, seed: int) -> list[dict]:
    sampler_study = optuna.create_study(directions=["maximize", "minimize"],
                                        sampler=optuna.samplers.RandomSampler(seed=seed))
    suggest = define_by_run(study)
    params = []
    for _ in range(count):
        trial = sampler_study.ask()
        assert suggest(trial) is None  # Ray Tune merges a returned dict as constants; there are none
        params.append(dict(trial.params))
    return params


def test_define_by_run_gives_valid_specs_and_is_seeded():
    study = _study(NAS_SPACE, NAS_SEARCH, train={"epochs": 3, "lr": {"float": [0.01, 0.3], "log": True}})
    first, again, other = _sample(study, 40, seed=0), _sample(study, 40, seed=0), _sample(study, 40, seed=1)
    assert first == again and first != other
    for params in first:
        plan = resolve(study, params)
        assert isinstance(plan.spec, ArchSpec) and isinstance(plan.train, TrainSettings)
        assert 0.01 <= plan.train.lr <= 0.3 and plan.train.seed == 0
        assert ArchSpec.from_json(plan.spec.to_json()) == plan.spec  # serialisable
        assert TrainSettings.from_dict(plan.train.to_dict()) == plan.train
        assert set(plan.factors) == {"block", "shortcut", "bottleneck_ratio", "groups", "width_multiplier",
                                     "stages.0.depth", "stages.1.depth", "stages.2.depth", "train.lr"}


def test_bottleneck_only_parameters_appear_only_with_bottleneck_blocks():
    study = _study(NAS_SPACE, NAS_SEARCH)
    samples = _sample(study, 60, seed=3)
    blocks = Counter(params["block"] for params in samples)
    assert blocks["basic"] > 0 and blocks["bottleneck"] > 0
    for params in samples:
        conditional = {"bottleneck_ratio", "groups"} & set(params)
        plan = resolve(study, params)
        if params["block"] == "bottleneck":
            assert conditional == {"bottleneck_ratio", "groups"}
            assert plan.spec.bottleneck_ratio == params["bottleneck_ratio"]
            assert "bottleneck_ratio=" in plan.label
        else:
            assert conditional == set()
            assert plan.factors["bottleneck_ratio"] is None and plan.spec.groups == 1
            assert "bottleneck_ratio" not in plan.label


def test_several_seeds_make_seed_a_parameter_in_optuna():
    study = _study(NAS_SPACE, {**NAS_SEARCH, "seeds": [4, 5]})
    samples = _sample(study, 20, seed=0)
    assert {params["seed"] for params in samples} == {4, 5}
    assert all(resolve(study, params).train.seed == params["seed"] for params in samples)
    assert "seed" not in factors(study)
    assert all("seed" not in _sample(_study(NAS_SPACE, NAS_SEARCH), 3, 0)[i] for i in range(3))


def test_grid_deduplicates_by_spec_key():
    study = _study({"base": "cifar_resnet20", "shortcut": "B", "block": {"choice": ["basic", "bottleneck"]},
                    "bottleneck_ratio": {"choice": [0.25, 0.5]}})
    points = grid_points(study)
    assert [point.label for point in points] == [
        "block=basic", "block=bottleneck, bottleneck_ratio=0.25", "block=bottleneck, bottleneck_ratio=0.5"]
    assert len({point.spec.key() for point in points}) == 3
    assert study.search.trials == 3


def test_grid_merges_multipliers_that_round_to_the_same_widths():
    study = _study({"base": "cifar_resnet20", "width_multiplier": {"choice": [1.0, 1.005, 2.0]}})
    assert [point.label for point in grid_points(study)] == ["width_multiplier=1", "width_multiplier=2"]
    assert study.grid.merged_duplicates == 1
    assert grid_points(study)[1].spec.stem_width == 32


def test_grid_enumerates_stepped_ranges():
    study = _study({"base": "cifar_resnet20", "blocks_per_stage": {"int": [1, 5], "step": 2}},
                   train={"epochs": 3, "label_smoothing": {"float": [0.0, 0.2], "step": 0.1}})
    assert [(p.params["blocks_per_stage"], p.params["train.label_smoothing"]) for p in grid_points(study)] == [
        (b, s) for b in (1, 3, 5) for s in (0.0, 0.1, 0.2)]
    assert factors(study)["blocks_per_stage"] == {"levels": [1, 3, 5], "reference": 1}


def test_grid_drops_points_outside_the_constraints():
    study = _study({"base": "cifar_resnet20", "blocks_per_stage": {"choice": [3, 9]},
                    "constraints": {"max_macs": 1.0e8}}, {"seeds": [0, 1]})
    assert [point.label for point in grid_points(study)] == ["blocks_per_stage=3"]
    assert study.grid.dropped_by_constraints == 1
    assert space_size(study) == "1 architecture × 2 seeds = 2 trials (1 dropped by constraints)"


def test_grid_times_seeds_through_optuna_grid_sampler_visits_each_pair_once():
    study = _study({"base": "cifar_resnet20", "shortcut": {"choice": ["A", "B", "C", "none"]},
                    "blocks_per_stage": {"choice": [3, 9]}}, {"seeds": [0, 1, 2]})
    search_space = grid_search_space(study)
    assert search_space["seed"] == [0, 1, 2] and len(search_space["point"]) == 8
    sampler_study = optuna.create_study(sampler=optuna.samplers.GridSampler(search_space, seed=0))
    suggest = define_by_run(study)
    visited = []

    def objective(trial: optuna.Trial) -> float:
        suggest(trial)
        plan = resolve(study, trial.params)
        visited.append((trial.params["point"], trial.params["seed"]))
        assert plan.label == trial.params["point"] and plan.train.seed == trial.params["seed"]
        return 0.5

    # More trials than points x seeds: the GridSampler stops the study when the grid is done.
    sampler_study.optimize(objective, n_trials=study.search.trials + 5)
    assert sorted(visited) == sorted((label, seed) for label in search_space["point"] for seed in (0, 1, 2))
    assert study.search.trials == 24


def test_resolve_accepts_point_params_directly():
    study = _study({"base": "cifar_resnet20", "shortcut": {"choice": ["A", "B"]}})
    point = grid_points(study)[1]
    plan = resolve(study, point.params)
    assert plan.spec == point.spec and plan.factors == {"shortcut": "B"} and plan.label == "shortcut=B"
    assert plan.train.seed == 0 and plan.train.epochs == 3


@pytest.mark.parametrize("params, message", [
    ({"shortcutt": "A"}, "shortcutt: not a parameter of study 't'; allowed: shortcut, seed"),
    ({"point": "shortcut=Z"}, "point: got 'shortcut=Z'"),
    ({"point": "shortcut=A", "shortcut": "B"}, "given with a grid point"),
    ({"shortcut": "A", "seed": -1}, "seed: got -1"),
    ({}, "space.shortcut: no value for the searched parameter 'shortcut'"),
    ({"shortcut": "E"}, "space.shortcut: not a valid architecture; got 'E'"),
])
def test_resolve_rejects_bad_params_with_value_error(params, message):
    study = _study({"base": "cifar_resnet20", "shortcut": {"choice": ["A", "B"]}})
    with pytest.raises(ValueError) as caught:
        resolve(study, params)
    assert message in str(caught.value)


def test_constraint_violation_message():
    study = _study({"base": "cifar_resnet20", "blocks_per_stage": {"choice": [3, 9]},
                    "constraints": {"max_macs": 1.0e8, "min_params": 1.0e5}})
    big = resolve(study, {"blocks_per_stage": 9}).spec
    assert constraint_violation(study, big) == "macs 1.25e8 > max_macs 1e8"
    assert constraint_violation(study, grid_points(study)[0].spec) is None


def test_optuna_factors_have_levels_only_for_choices():
    study = _study(NAS_SPACE, NAS_SEARCH)
    table = factors(study)
    assert table["block"] == {"levels": ["basic", "bottleneck"], "reference": "basic"}
    assert table["width_multiplier"] == {"levels": None, "reference": None}
    assert list(table)[:3] == ["block", "shortcut", "bottleneck_ratio"]  # block is suggested first
    assert space_size(study).startswith("discrete, up to")


def test_space_size_of_continuous_optuna_space():
    study = _study({"base": "cifar_resnet20"}, {"strategy": "optuna", "trials": 5},
                   train={"epochs": 3, "lr": {"float": [0.01, 0.3], "log": True}})
    assert space_size(study) == "continuous: 1 searched parameter (1 numeric); 5 trials"


def test_grid_points_of_optuna_study_is_an_error():
    with pytest.raises(ValueError, match="uses strategy 'optuna'"):
        grid_points(_study(NAS_SPACE, NAS_SEARCH))


def test_invalid_random_sample_rejects_an_optuna_study():
    # groups 3 divides no inner width (4, 8, 16 at ratio 0.25): every bottleneck sample fails.
    space = {**NAS_SPACE, "groups": 3}
    with pytest.raises(StudyError, match=r"space\.groups: the .* is not a valid architecture; got 3"):
        _study(space, NAS_SEARCH)


def test_impossible_constraint_in_optuna_space_names_the_sample_size():
    with pytest.raises(StudyError, match=r"max_macs: no architecture in the space satisfies it "
                                         r"\(the smallest of 258 sampled has"):
        _study({**NAS_SPACE, "constraints": {"max_macs": 10}}, NAS_SEARCH)


def test_dry_run_report_lists_samples():
    report = dry_run_report(_study(NAS_SPACE, NAS_SEARCH), samples=4, seed=1)
    lines = report.splitlines()
    assert lines[0] == "study: t" and "optuna (tpe, seed 0)" in report and "4 random samples (seed 1):" in report
    rows = lines[lines.index("4 random samples (seed 1):") + 1:]
    assert len(rows) == 4 and all(" M MACs" in row and " layers" in row for row in rows)
    assert all(row.rstrip().endswith("ok") or "rejected: macs" in row for row in rows)
