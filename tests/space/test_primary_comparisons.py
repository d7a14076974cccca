"""report.primary: the comparisons a study's question asks, checked against the space they compare in."""

from __future__ import annotations

import copy
from typing import Any

import pytest

from space import StudyError, load_study, study_from_dict

# A grid of shortcut x depth and a bottleneck ratio that only bottleneck blocks have: every kind of factor.
CROSSED = {
    "name": "crossed", "question": "Does B beat A?",
    "space": {"base": "cifar_resnet20", "shortcut": {"choice": ["A", "B", "none"]},
              "blocks_per_stage": {"choice": [3, 9]}, "block": {"choice": ["basic", "bottleneck"]},
              "bottleneck_ratio": {"choice": [0.25, 0.5]}},
    "train": {"epochs": 3},
}


def _with_primary(primary: Any, study: dict[str, Any] = CROSSED) -> dict[str, Any]:
    document = copy.deepcopy(study)
    document["report"] = {"primary": primary}
    return document


def test_a_study_names_its_comparisons_and_they_stay_as_written():
    primary = [{"factor": "shortcut", "level": "B", "reference": "A"},
               {"factor": "blocks_per_stage", "level": 9, "reference": 3},
               {"factor": "bottleneck_ratio", "level": 0.5, "reference": 0.25}]
    study = study_from_dict(_with_primary(primary))
    assert [comparison.model_dump() for comparison in study.model.report.primary] == primary
    assert study.raw["report"]["primary"] == primary  # study.yaml keeps it for the report
    assert study_from_dict(copy.deepcopy(CROSSED)).model.report.primary is None


@pytest.mark.parametrize(("primary", "expected"), [
    ([{"factor": "shortcutt", "level": "B", "reference": "A"}],
     "report.primary[0].factor: not a factor of this study (a field it searches); got 'shortcutt'; "
     "allowed: block, shortcut, bottleneck_ratio, blocks_per_stage"),
    ([{"factor": "shortcut", "level": "C", "reference": "A"}],
     "report.primary[0].level: not a level of shortcut; got 'C'; allowed: 'A', 'B', 'none'"),
    ([{"factor": "blocks_per_stage", "level": 9, "reference": "3"}],
     "report.primary[0].reference: not a level of blocks_per_stage; got '3'; allowed: 3, 9"),
    ([{"factor": "shortcut", "level": "B", "reference": "B"}],
     "report.primary[0].reference: the level compared with itself; got 'B'; allowed: a level of the factor other "
     "than report.primary's level"),
    ([{"factor": "shortcut", "level": "A", "reference": "B"}],
     "report.primary[0].reference: the report tests each level of shortcut against its reference level, the first "
     "of space.shortcut; got 'B'; allowed: 'A' (or list 'B' first)"),
    ([{"factor": "bottleneck_ratio", "level": "(none)", "reference": 0.25}],
     "report.primary[0].level: not a level of bottleneck_ratio (bottleneck_ratio exists only for bottleneck "
     "blocks: the trials without it, the report's '(none)', belong to none of its levels); got '(none)'; "
     "allowed: 0.25, 0.5"),
    ([{"factor": "shortcut", "level": None, "reference": "A"}],
     "report.primary[0].level: not a level; got None; allowed: a level as the study's choice writes it"),
    ([{"factor": "shortcut", "level": "B", "reference": "A", "within": "depth"}],
     "report.primary[0].within: unknown field 'within'; allowed: factor, level, reference"),
    ([{"factor": "shortcut", "level": "B"}], "report.primary[0].reference: missing"),
    ([], "report.primary: too few items; got []"),
    ([{"factor": "shortcut", "level": "B", "reference": "A"}] * 9, "report.primary: too many items"),
    ("B vs A", "report.primary: wrong type; got 'B vs A'; allowed: a list"),
])
def test_a_comparison_the_space_cannot_answer_is_one_line(primary, expected):
    with pytest.raises(StudyError) as caught:
        study_from_dict(_with_primary(primary))
    assert expected in str(caught.value)
    assert "\n" not in str(caught.value)


def test_a_numeric_range_that_optuna_samples_has_no_levels_to_compare():
    study = copy.deepcopy(CROSSED)
    study["train"] = {"epochs": 3, "lr": {"float": [0.01, 0.1], "log": True}}
    study["search"] = {"strategy": "optuna", "trials": 4}
    with pytest.raises(StudyError, match=r"report\.primary\[0\]\.factor: train\.lr is a numeric range that the optuna "
                                         r"search samples, so the report compares no levels of it; got 'train\.lr'"):
        study_from_dict(_with_primary([{"factor": "train.lr", "level": 0.1, "reference": 0.01}], study))
    # A grid enumerates a stepped range, so its values are levels like a choice's.
    study["train"]["lr"] = {"float": [0.05, 0.15], "step": 0.05}
    study["search"] = {"strategy": "grid"}
    grid = study_from_dict(_with_primary([{"factor": "train.lr", "level": 0.1, "reference": 0.05}], study))
    assert grid.model.report.primary[0].level == 0.1


def test_the_refusal_names_the_file_and_line(write_study, minimal_study):
    path = write_study(minimal_study + "report:\n  primary:\n    - {factor: shortcut, level: C, reference: A}\n")
    with pytest.raises(StudyError) as caught:
        load_study(path)
    assert str(caught.value) == f"{path}:10: report.primary[0].level: not a level of shortcut; got 'C'; allowed: 'A', 'B'"


def test_an_override_that_removes_the_factor_is_refused_and_one_that_drops_primary_is_not(write_study, minimal_study):
    path = write_study(minimal_study + "report:\n  primary:\n    - {factor: shortcut, level: B, reference: A}\n")
    with pytest.raises(StudyError, match=r"report\.primary\[0\]\.factor: not a factor of this study .*allowed: none"):
        load_study(path, ["space.shortcut=B"])
    assert load_study(path, ["space.shortcut=B", "report.primary=null"]).model.report.primary is None
