"""The schema: which fields take which searched forms, and the rules each form checks."""

from __future__ import annotations

import pytest

from space import StudyError, factors, study_from_dict


def _study(space: dict | None = None, train: dict | None = None, search: dict | None = None, data: dict | None = None):
    return study_from_dict({"name": "t", "question": "q", "space": {"base": "cifar_resnet20", **(space or {})},
                            "train": {"epochs": 4, **(train or {})}, "search": search or {}, "data": data or {}})


def _error(**sections) -> str:
    with pytest.raises(StudyError) as caught:
        _study(**sections)
    return str(caught.value)


CATEGORICAL = [
    ("space", "stem", ["cifar", "imagenet"]), ("space", "block", ["basic", "preact_basic"]),
    ("space", "shortcut", ["A", "none"]), ("space", "zero_init_residual", [False, True]),
    ("train", "optimizer", ["sgd", "adamw"]), ("train", "schedule", ["step", "cosine"]),
    ("train", "channels_last", [True, False]), ("train", "amp", ["auto", "off"]),
]


@pytest.mark.parametrize("section, field, levels", CATEGORICAL, ids=[f"{s}.{f}" for s, f, _ in CATEGORICAL])
def test_categorical_fields_take_a_choice_but_no_range(section, field, levels):
    study = _study(**{section: {field: {"choice": levels}}})
    name = field if section == "space" else f"train.{field}"
    assert factors(study)[name]["levels"] == levels
    message = _error(**{section: {field: {"int": [0, 1]}}})
    assert f"{section}.{field}: this field cannot be searched with {{int: [low, high]}}" in message
    assert "allowed: a fixed value or {choice: [...]}" in message


NUMERIC = [
    ("space", "stem_width", {"int": [8, 16], "step": 8}, "stem_width"),
    ("space", "blocks_per_stage", {"int": [1, 3], "step": 2}, "blocks_per_stage"),
    ("space", "width_multiplier", {"float": [0.5, 1.0], "step": 0.5}, "width_multiplier"),
    ("train", "batch_size", {"int": [64, 128], "step": 64}, "train.batch_size"),
    ("train", "lr", {"float": [0.05, 0.1], "step": 0.05}, "train.lr"),
    ("train", "weight_decay", {"choice": [0.0, 1.0e-4]}, "train.weight_decay"),
    ("train", "label_smoothing", {"float": [0.0, 0.1], "step": 0.1}, "train.label_smoothing"),
]


@pytest.mark.parametrize("section, field, searched, name", NUMERIC, ids=[f"{s}.{f}" for s, f, _, _ in NUMERIC])
def test_numeric_fields_take_ranges(section, field, searched, name):
    study = _study(**{section: {field: searched}})
    assert name in factors(study) and len(study.grid.points) == 2


def test_stage_parameters_are_named_by_index():
    study = _study({"stages": [{}, {"depth": {"choice": [1, 2]}, "width": {"choice": [32, 48]}}, {}]})
    assert list(factors(study)) == ["stages.1.depth", "stages.1.width"]
    assert [point.spec.stages[1].width for point in study.grid.points] == [32, 48, 32, 48]
    assert all(point.spec.stages[0].width == 16 for point in study.grid.points)  # from the base


def test_stride_is_one_or_two_and_never_a_bool():
    assert "space.stages[0].stride: not an allowed value; got 3; allowed: 1 or 2" in _error(space={"stages": [{"stride": 3}]})
    assert "got True" in _error(space={"stages": [{"stride": True}]})
    assert "got 2.0" in _error(space={"stages": [{"stride": 2.0}]})


def test_float_field_takes_an_integer_but_int_field_no_float():
    assert _study(train={"lr": 1}).search_space.train["lr"] == 1.0
    assert "train.batch_size: wrong type; got 64.0; allowed: an integer" in _error(train={"batch_size": 64.0})
    assert "space.blocks_per_stage.int[1]: wrong type; got 2.5" in _error(space={"blocks_per_stage": {"int": [1, 2.5]}})


def test_booleans_are_not_text():
    assert "data.flip: wrong type; got 'yes'; allowed: true or false" in _error(data={"flip": "yes"})


def test_not_a_number_is_rejected():
    assert "train.lr" in _error(train={"lr": float("nan")})


def test_range_step_must_divide_the_range():
    message = _error(space={"blocks_per_stage": {"int": [1, 4], "step": 2}})
    assert "`high - low` must be a multiple of step, but got (low=1, high=4, step=2)" in message


def test_searched_form_names_exactly_one_kind():
    message = _error(space={"blocks_per_stage": {"choice": [1], "int": [1, 2]}})
    assert "space.blocks_per_stage: a searched value names exactly one of choice, int, float" in message


def test_one_objective_may_be_written_as_text():
    assert _study(search={"objectives": "macs:min"}).search.objectives == [("macs", "min")]
    assert "metric 'macs' appears twice" in _error(search={"objectives": ["macs:min", "macs:max"]})


def test_width_multiplier_scales_stem_and_stages_and_rounds():
    spec = _study({"width_multiplier": 1.3}).grid.points[0].spec
    assert spec.stem_width == 21 and [stage.width for stage in spec.stages] == [21, 42, 83]


def test_num_classes_follows_the_dataset():
    study = _study(data={"dataset": "cifar100"})
    assert study.grid.points[0].spec.num_classes == 100  # even though the base preset says 10


def test_groups_are_neutral_for_basic_blocks_when_the_block_is_searched():
    study = _study({"block": {"choice": ["basic", "bottleneck"]}, "groups": 2, "bottleneck_ratio": 0.5,
                    "shortcut": "B"})
    groups = {point.spec.block: point.spec.groups for point in study.grid.points}
    assert groups == {"basic": 1, "bottleneck": 2}


def test_fixed_groups_with_a_fixed_basic_block_is_an_error():
    assert "space.groups: the grid point 'fixed' is not a valid architecture; got 2" in _error(space={"groups": 2})


def test_huge_grid_is_refused_without_listing_it():
    message = _error(train={"lr": {"float": [0.0001, 1.0], "step": 1.0e-9}})
    assert "space: the grid has up to 999,900,001 points; allowed: at most 20,000" in message


def test_report_target_effect_defaults_to_one_point_and_round_trips():
    import yaml

    assert _study().model.report.target_effect == 0.01
    study = _study(space={"shortcut": {"choice": ["A", "C"]},
                          "match_complexity": {"by": "macs", "to": 4.0e7, "adjust": "stem_width"}})
    study = study_from_dict({**yaml.safe_load(study.to_yaml()), "report": {"target_effect": 0.005}})
    again = study_from_dict(yaml.safe_load(study.to_yaml()))
    assert again.model.report.target_effect == 0.005 and again.raw["report"] == {"target_effect": 0.005}
    assert again.match_complexity == {"by": "macs", "adjust": "stem_width", "tolerance": 0.01, "to": 4.0e7}


@pytest.mark.parametrize("effect", [0, 1, 1.5, -0.01, 1e-300])
def test_report_target_effect_is_a_fraction(effect):
    with pytest.raises(StudyError, match=r"report\.target_effect: out of range; got .*; allowed: a fraction strictly "
                                         r"between 0 and 1, at least 0\.0001"):
        study_from_dict({"name": "t", "question": "q", "space": {"base": "cifar_resnet20"},
                         "report": {"target_effect": effect}})


def test_report_section_takes_no_unknown_field():
    with pytest.raises(StudyError, match=r"report\.target: unknown field 'target' \(did you mean 'target_effect'\?\)"):
        study_from_dict({"name": "t", "question": "q", "space": {"base": "cifar_resnet20"},
                         "report": {"target": 0.01}})
