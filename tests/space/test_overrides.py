"""`--set dotted.path=value` overrides: applied before validation, errors name the override."""

from __future__ import annotations

import pytest

from space import StudyError, load_study, study_from_dict

STAGED = """\
name: staged
question: "q"
space:
  base: cifar_resnet20
  stages:
    - {depth: 3}
    - {depth: {choice: [3, 5]}}
    - {depth: 3}
"""


def test_values_are_yaml(write_study, minimal_study):
    study = load_study(write_study(minimal_study), [
        "train.epochs=7", "search.seeds=[0, 1]", "space.shortcut={choice: [A, B, C]}",
        "data.root=null", "train.lr=1e-2", "data.flip=false"])
    assert study.model.train.epochs == 7 and study.model.train.lr == 0.01
    assert study.search.seeds == [0, 1]
    assert [point.label for point in study.grid.points] == ["shortcut=A", "shortcut=B", "shortcut=C"]
    assert study.search.trials == 6
    assert study.data.root is None and study.data.flip is False


def test_overrides_are_in_raw_and_to_yaml(write_study, minimal_study):
    study = load_study(write_study(minimal_study), ["train.epochs=2", "search.repeats=2"])
    assert study.raw["train"]["epochs"] == 2 and study.raw["search"] == {"repeats": 2}
    assert "repeats: 2" in study.to_yaml()


@pytest.mark.parametrize("override", ["space.stages[1].depth=5", "space.stages.1.depth=5"])
def test_list_indices_both_spellings(write_study, override):
    study = load_study(write_study(STAGED), [override])
    assert [point.spec.stages[1].depth for point in study.grid.points] == [5]


def test_later_override_wins(write_study, minimal_study):
    study = load_study(write_study(minimal_study), ["train.epochs=2", "train.epochs=4"])
    assert study.model.train.epochs == 4


def test_file_on_disk_is_untouched(write_study, minimal_study):
    path = write_study(minimal_study)
    load_study(path, ["train.epochs=9"])
    assert path.read_text() == minimal_study


def test_study_from_dict_takes_overrides(minimal_study_dict):
    study = study_from_dict(minimal_study_dict, overrides=["train.epochs=2"])
    assert study.model.train.epochs == 2 and minimal_study_dict["train"]["epochs"] == 3



def test_seeds_set_to_null_gives_way_to_repeats(minimal_study_dict):
    """`--set search.seeds=null --set search.repeats=N` (what a seed count needs) loads: it raised TypeError."""
    study_dict = {**minimal_study_dict, "search": {"seeds": [0, 1]}}
    study = study_from_dict(study_dict, overrides=["search.seeds=null", "search.repeats=3"])
    assert study.search.seeds == [0, 1, 2]

BAD_OVERRIDES = [
    ("train.epoch=3", "--set train.epoch=3: unknown field 'epoch' (did you mean 'epochs'?)"),
    ("trian.epochs=3", "--set trian.epochs=3: trian: unknown field 'trian' (did you mean 'train'?)"),
    ("train.epochs=0", "--set train.epochs=0: out of range; got 0; allowed: an integer in [1, 10000]"),
    ("train.epochs=three", "--set train.epochs=three: wrong type; got 'three'; allowed: an integer"),
    ("space.shortcut={choice: [A, E]}",
     "--set space.shortcut={choice: [A, E]}: space.shortcut.choice[1]: not an allowed value; got 'E'"),
    ("train.epochs", "--set train.epochs: expected dotted.path=value"),
    ("train..epochs=3", "--set train..epochs=3: cannot read the field path 'train..epochs'"),
    ("space.stages[1].depth=5", "space.stages: is not in the study, so [1] has nothing to index"),
    ("train.epochs.max=3", "train.epochs: is 3, so it has no field 'max'"),
    ("data.root=!!python/object/apply:os.system [ls]",
     "--set data.root=!!python/object/apply:os.system [ls]: YAML tag '!!python/object/apply:os.system' "
     "is not allowed"),
    ("search.seeds=[0, 0]", "--set search.seeds=[0, 0]: seeds repeat"),
]


@pytest.mark.parametrize("override, message", BAD_OVERRIDES, ids=[case[0] for case in BAD_OVERRIDES])
def test_bad_override_names_itself(write_study, minimal_study, override, message):
    with pytest.raises(StudyError) as caught:
        load_study(write_study(minimal_study), [override])
    assert message in str(caught.value)


def test_index_out_of_range(write_study):
    with pytest.raises(StudyError, match=r"space\.stages: has 3 items, so there is no \[7\]"):
        load_study(write_study(STAGED), ["space.stages[7].depth=2"])


def test_override_error_and_file_error_together(write_study):
    path = write_study('name: t\nquestion: "q"\nspace: {base: cifar_resnet20, shortcut: E}\n')
    with pytest.raises(StudyError) as caught:
        load_study(path, ["train.epochs=0"])
    # The override comes first; the file's own error is kept in `errors`.
    assert caught.value.errors[0].startswith("--set train.epochs=0:")
    assert caught.value.errors[1].startswith(f"{path}:3: space.shortcut")
