"""The name tables (optimizers, schedules, normalisations, samplers, blocks, stems) decide what a study may name."""

from __future__ import annotations

import re

import optuna
import pytest

import models
import space
from space import StudyError, TrainSettings, study_from_dict

# (section, field, the names its table implements)
NAMED_FIELDS = [
    ("train", "optimizer", tuple(space.OPTIMIZERS)), ("train", "schedule", tuple(space.SCHEDULES)),
    ("data", "normalize", tuple(space.NORMALIZATIONS)), ("search", "sampler", tuple(space.SAMPLERS)),
    ("space", "stem", models.STEMS), ("space", "block", models.BLOCKS), ("space", "shortcut", models.SHORTCUTS),
    ("space", "bottleneck_stride", models.BOTTLENECK_STRIDES),
]


def _study(section: str, values: dict):
    sections = {"space": {"base": "cifar_resnet20", "shortcut": {"choice": ["A", "B"]}},
                "train": {"epochs": 2}, "search": {}, "data": {}}
    if section == "search":
        sections["search"] = {"strategy": "optuna", "trials": 2}
    sections[section] = {**sections[section], **values}
    return study_from_dict({"name": "t", "question": "q", **sections})


@pytest.mark.parametrize("section, field, names", NAMED_FIELDS, ids=[f"{s}.{f}" for s, f, _ in NAMED_FIELDS])
def test_the_schema_allows_exactly_the_table_keys(section: str, field: str, names: tuple) -> None:
    with pytest.raises(StudyError) as caught:
        _study(section, {field: "nonesuch"})
    problem = caught.value.problems[0]
    assert problem.field == f"{section}.{field}"
    assert re.findall(r"'([^']*)'", problem.allowed) == list(names)


@pytest.mark.parametrize("section, field", [("train", "optimizer"), ("train", "schedule"),
                                            ("data", "normalize"), ("search", "sampler")])
def test_every_table_key_is_a_valid_setting(section: str, field: str) -> None:
    names = dict((f"{s}.{f}", n) for s, f, n in NAMED_FIELDS)[f"{section}.{field}"]
    for name in names:
        _study(section, {field: name})


def test_settings_name_the_table_keys() -> None:
    with pytest.raises(models.SpecError) as caught:
        TrainSettings(optimizer="lion")
    assert (caught.value.field, caught.value.got) == ("optimizer", "lion")
    assert caught.value.allowed.split(", ") == list(space.OPTIMIZERS)
    with pytest.raises(models.SpecError) as caught:
        TrainSettings(schedule="onecycle")
    assert caught.value.allowed.split(", ") == list(space.SCHEDULES)


def test_an_architecture_error_reaches_the_study_as_fields() -> None:
    # ArchSpec's SpecError becomes the study problem field by field, not by re-reading its text.
    with pytest.raises(StudyError) as caught:
        _study("space", {"groups": 2})
    problem = caught.value.problems[0]
    assert (problem.field, problem.got) == ("space.groups", "2")
    assert problem.allowed == "1 for basic blocks (grouped convs need a bottleneck block)"


@pytest.mark.parametrize("name, sampler_type", [("tpe", optuna.samplers.TPESampler),
                                                ("random", optuna.samplers.RandomSampler),
                                                ("nsga2", optuna.samplers.NSGAIISampler),
                                                ("qmc", optuna.samplers.QMCSampler)])
def test_make_sampler_builds_a_seeded_sampler(name: str, sampler_type: type) -> None:
    assert set(space.SAMPLERS) == {"tpe", "random", "nsga2", "qmc"}
    first, second = space.make_sampler(name, 7), space.make_sampler(name, 7)
    assert isinstance(first, sampler_type)
    draws = []
    for sampler in (first, second):
        study = optuna.create_study(sampler=sampler)
        study.optimize(lambda trial: trial.suggest_float("x", 0, 1), n_trials=3)
        draws.append([trial.params["x"] for trial in study.trials])
    assert draws[0] == draws[1]


def test_an_unknown_sampler_is_told_the_table_keys() -> None:
    with pytest.raises(ValueError, match="search.sampler: got 'cmaes'; allowed: tpe, random, nsga2, qmc$"):
        space.make_sampler("cmaes", 0)


def _draws(study: optuna.Study, sampler: optuna.samplers.BaseSampler, n: int) -> list[float]:
    study.sampler = sampler
    values = []
    for _ in range(n):
        trial = study.ask()
        values.append(trial.suggest_float("x", 0.0, 1.0))
        study.tell(trial, 0.0)
    return values


@pytest.mark.parametrize("name", ["random", "tpe"])
def test_a_resumed_sampler_draws_new_samples_reproducibly(name: str) -> None:
    """A --resume builds its sampler again in a new process: seeded as the first run was, it drew the first run's
    samples again (a resumed random search trained the same architectures twice)."""
    optuna.logging.set_verbosity(optuna.logging.WARNING)
    first = optuna.create_study()
    before = _draws(first, space.make_sampler(name, 7), 4)
    assert _draws(optuna.create_study(), space.make_sampler(name, 7), 4) == before  # the seed replays the run
    after = _draws(first, space.make_sampler(name, 7, trials_so_far=4), 4)
    assert not set(after) & set(before)
    again = optuna.create_study()
    _draws(again, space.make_sampler(name, 7), 4)
    assert _draws(again, space.make_sampler(name, 7, trials_so_far=4), 4) == after  # and so does the resume


def test_a_resumed_qmc_sampler_goes_on_along_its_sequence() -> None:
    """QMC indexes its points by trial number: the same seed continues the same scrambled sequence."""
    optuna.logging.set_verbosity(optuna.logging.WARNING)
    whole = _draws(optuna.create_study(), space.make_sampler("qmc", 3), 8)
    resumed = optuna.create_study()
    head = _draws(resumed, space.make_sampler("qmc", 3), 4)
    assert head + _draws(resumed, space.make_sampler("qmc", 3, trials_so_far=4), 4) == whole
