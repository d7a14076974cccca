"""Reading study files: the bad-studies table, file:line in messages, safety, and round trips."""

from __future__ import annotations

from pathlib import Path

import pytest
import yaml

from space import StudyError, load_study, study_from_dict

HEADER = 'name: t\nquestion: "q"\n'

# (case, file text, fragments the one-line message must contain)
BAD_STUDIES = [
    ("unknown key", HEADER + "space:\n  base: cifar_resnet20\n  shortcutt: A\n",
     ["study.yaml:5:", "space.shortcutt", "unknown field 'shortcutt'", "did you mean 'shortcut'?"]),
    ("unknown section", HEADER + "space: {base: cifar_resnet20}\ntrian: {epochs: 3}\n",
     ["study.yaml:4:", "unknown field 'trian'", "did you mean 'train'?"]),
    ("unknown key, nothing close", HEADER + "space: {base: cifar_resnet20}\ntrain: {zzz: 3}\n",
     ["study.yaml:4:", "train.zzz", "unknown field 'zzz'", "allowed: epochs, batch_size"]),
    ("wrong type", HEADER + "space:\n  base: cifar_resnet20\ntrain:\n  epochs: five\n",
     ["study.yaml:6:", "train.epochs", "wrong type", "got 'five'", "allowed: an integer"]),
    ("text for a number is not coerced", HEADER + "space: {base: cifar_resnet20}\ntrain: {lr: '0.1'}\n",
     ["study.yaml:4:", "train.lr", "wrong type", "allowed: a number"]),
    ("bool is not a depth", HEADER + "space:\n  base: cifar_resnet20\n  blocks_per_stage: true\n",
     ["study.yaml:5:", "space.blocks_per_stage", "wrong type", "got True"]),
    ("out of range", HEADER + "space: {base: cifar_resnet20}\ndata:\n  val_fraction: 1.5\n",
     ["study.yaml:5:", "data.val_fraction", "out of range", "got 1.5", "allowed: a number in (0, 1)"]),
    ("bad categorical level", HEADER + "space:\n  base: cifar_resnet20\n  shortcut: {choice: [A, E]}\n",
     ["study.yaml:5:", "space.shortcut.choice[1]", "got 'E'", "'A', 'B', 'C', 'D' or 'none'"]),
    ("bad block name", HEADER + "space:\n  base: cifar_resnet20\n  block: {choice: [basic, resnext]}\n",
     ["space.block.choice[1]", "got 'resnext'", "'basic', 'bottleneck'"]),
    ("empty range", HEADER + "space:\n  base: cifar_resnet20\n  stages:\n    - {}\n    - {depth: {int: [3, 1]}}\n",
     ["study.yaml:7:", "space.stages[1].depth", "`low <= high` must hold, but got (low=3, high=1)"]),
    ("empty choice", HEADER + "space:\n  base: cifar_resnet20\n  shortcut: {choice: []}\n",
     ["space.shortcut.choice", "too few items", "at least 1"]),
    ("repeated level", HEADER + "space:\n  base: cifar_resnet20\n  shortcut: {choice: [A, A]}\n",
     ["space.shortcut", "level 'A' appears twice"]),
    ("range endpoint checked by the field rule", HEADER + "space:\n  base: cifar_resnet20\n"
     "  blocks_per_stage: {int: [0, 3]}\n",
     ["space.blocks_per_stage.int[0]", "out of range", "got 0", "an integer in [1, 1000]"]),
    ("log range needs low > 0", HEADER + "space: {base: cifar_resnet20}\n"
     "train: {weight_decay: {float: [0, 0.1], log: true}}\nsearch: {strategy: optuna, trials: 2}\n",
     ["train.weight_decay", "`low > 0` must hold"]),
    ("step and log together", HEADER + "space:\n  base: cifar_resnet20\n"
     "  blocks_per_stage: {int: [1, 8], step: 1, log: true}\nsearch: {strategy: optuna, trials: 2}\n",
     ["space.blocks_per_stage", "`step` and `log` cannot be used together"]),
    ("categorical field searched as a range", HEADER + "space:\n  base: cifar_resnet20\n  shortcut: {int: [1, 2]}\n",
     ["space.shortcut", "cannot be searched with {int: [low, high]}", "a fixed value or {choice: [...]}"]),
    ("misspelt searched form", HEADER + "space:\n  base: cifar_resnet20\n  shortcut: {choise: [A, B]}\n",
     ["space.shortcut.choise", "did you mean 'choice'?"]),
    ("impossible constraint", HEADER + "space:\n  base: cifar_resnet20\n  shortcut: {choice: [A, B]}\n"
     "  constraints: {max_params: 1000}\n",
     ["study.yaml:6:", "space.constraints.max_params",
      "no architecture in the space satisfies it (the smallest has 269,722 params)"]),
    ("impossible minimum", HEADER + "space:\n  base: cifar_resnet20\n  constraints: {min_macs: 1.0e12}\n",
     ["space.constraints.min_macs", "the largest has 40,551,040 MACs"]),
    ("min above max", HEADER + "space:\n  base: cifar_resnet20\n  constraints: {max_macs: 1.0e6, min_macs: 1.0e7}\n",
     ["space.constraints.min_macs", "`min_macs <= max_macs` must hold"]),
    ("python tag", HEADER.replace('"q"', "!!python/object/apply:os.system [echo hacked]") + "space: {}\n",
     ["study.yaml:2:", "YAML tag '!!python/object/apply:os.system' is not allowed", "yaml.safe_load"]),
    ("empty file", "# only a comment\n", ["study.yaml: is empty"]),
    ("not a mapping", "- name\n- question\n", ["study.yaml:1:", "not a mapping of sections", "got a list"]),
    ("text, not a mapping", "just some words\n", ["not a mapping of sections", "got text 'just some words'"]),
    ("not YAML", HEADER + "space: [unclosed\n", ["study.yaml:", "not valid YAML"]),
    ("duplicate key", HEADER + "space: {base: cifar_resnet20}\nspace: {}\n",
     ["study.yaml:4:", "duplicate key 'space' (first at line 3)"]),
    ("missing name", 'question: "q"\nspace: {base: cifar_resnet20}\n', ["name: missing"]),
    ("bad name", 'name: My Study\nquestion: "q"\nspace: {base: cifar_resnet20}\n',
     ["study.yaml:1:", "name: not a usable name", "got 'My Study'"]),
    ("unknown preset", HEADER + "space: {base: cifar_resnet21}\n",
     ["space.base", "unknown preset", "did you mean", "'cifar_resnet20'"]),
    ("no stages and no base", HEADER + "space: {block: basic}\n",
     ["space.stages", "without space.base the stages must be given"]),
    ("stage width missing", HEADER + "space:\n  stem: cifar\n  stages: [{depth: 1}]\n",
     ["space.stages[0].width", "missing"]),
    ("shortcut A cannot shrink channels", HEADER + "space:\n  base: cifar_resnet20\n"
     "  stages: [{width: 64}, {width: {choice: [32, 128]}}, {}]\n",
     ["space.shortcut", "the grid point 'stages.1.width=32' is not a valid architecture", "got 'A'",
      "shrinks channels 64 -> 32"]),
    ("blocks_per_stage and a stage depth", HEADER + "space:\n  base: cifar_resnet20\n  blocks_per_stage: 3\n"
     "  stages: [{depth: 2}]\n",
     ["space.stages[0].depth", "space.blocks_per_stage already sets the depth"]),
    ("bottleneck-only field without a bottleneck", HEADER + "space:\n  base: cifar_resnet20\n"
     "  bottleneck_ratio: {choice: [0.25, 0.5]}\n",
     ["space.bottleneck_ratio", "the block is never a bottleneck", "so it never applies"]),
    ("num_classes against the dataset", HEADER + "space: {base: cifar_resnet20, num_classes: 100}\n",
     ["space.num_classes", "dataset cifar10 has 10 classes", "got 100"]),
    ("train seed", HEADER + "space: {base: cifar_resnet20}\ntrain: {seed: 3}\n",
     ["train.seed", "set by search.seeds"]),
    ("searched epochs vs warm-up", HEADER + "space: {base: cifar_resnet20}\n"
     "train: {epochs: {choice: [1, 5]}, warmup_epochs: 2}\n",
     ["train.warmup_epochs", "the grid point 'train.epochs=1' is not valid training settings",
      "allowed: a number in [0, epochs=1)"]),
    ("grid needs a step", HEADER + "space: {base: cifar_resnet20}\ntrain:\n  lr: {float: [0.01, 0.1]}\n",
     ["study.yaml:5:", "train.lr", "grid needs a step or a choice"]),
    ("grid trials disagree", HEADER + "space:\n  base: cifar_resnet20\n  shortcut: {choice: [A, B]}\n"
     "search: {seeds: [0, 1], trials: 3}\n",
     ["search.trials", "2 points x 2 seeds = 4 trials", "got 3", "allowed: 4, or leave trials out"]),
    ("optuna needs trials", HEADER + "space: {base: cifar_resnet20}\nsearch: {strategy: optuna}\n",
     ["search.trials", "strategy optuna needs a trial budget"]),
    ("sampler with grid", HEADER + "space: {base: cifar_resnet20}\nsearch: {sampler: tpe}\n",
     ["search.sampler", "only applies to strategy optuna"]),
    ("seeds and repeats", HEADER + "space: {base: cifar_resnet20}\nsearch: {seeds: [0], repeats: 3}\n",
     ["search.repeats", "not both"]),
    ("unknown metric", HEADER + "space: {base: cifar_resnet20}\nsearch: {objectives: [val_loss:min]}\n",
     ["search.objectives[0]", "unknown metric 'val_loss'"]),
    ("asha settings without asha", HEADER + "space: {base: cifar_resnet20}\nsearch: {asha: {grace_period: 1}}\n",
     ["search.asha", "only apply with scheduler: asha"]),
    ("asha grace period beyond training", HEADER + "space: {base: cifar_resnet20}\ntrain: {epochs: 3}\n"
     "search: {scheduler: asha, asha: {grace_period: 5}}\n",
     ["search.asha.grace_period", "longest training (3 epochs)"]),
    ("fractional gpus above one", HEADER + "space: {base: cifar_resnet20}\nsearch: {resources: {gpus: 1.5}}\n",
     ["search.resources.gpus", "a fraction <= 1 or a whole number"]),
]


@pytest.mark.parametrize("text, fragments", [case[1:] for case in BAD_STUDIES],
                         ids=[case[0] for case in BAD_STUDIES])
def test_bad_study_is_rejected_with_its_message(write_study, text, fragments):
    path = write_study(text)
    with pytest.raises(StudyError) as caught:
        load_study(path)
    message = str(caught.value)
    for fragment in fragments:
        assert fragment in message, f"{fragment!r} not in {message!r}"
    assert "\n" not in message


def test_study_error_carries_path_field_line_and_all_errors(write_study):
    path = write_study(HEADER + "space:\n  base: cifar_resnet20\n  shortcut: E\ntrain:\n  epochs: 0\n")
    with pytest.raises(StudyError) as caught:
        load_study(path)
    error = caught.value
    assert isinstance(error, ValueError)
    assert (error.path, error.field, error.line) == (str(path), "space.shortcut", 5)
    assert len(error.errors) == 2 and "train.epochs" in error.errors[1] and ":7:" in error.errors[1]
    assert str(error).endswith("(and 1 more)")


def test_python_tag_is_never_executed(write_study, tmp_path):
    marker = tmp_path / "ran"
    path = write_study(HEADER + f"space: !!python/object/apply:os.system ['touch {marker}']\n")
    with pytest.raises(StudyError, match="is not allowed"):
        load_study(path)
    assert not marker.exists()


def test_missing_file_names_the_path(tmp_path):
    with pytest.raises(StudyError, match=r"nowhere\.yaml: no such study file") as caught:
        load_study(tmp_path / "nowhere.yaml")
    assert caught.value.path == str(tmp_path / "nowhere.yaml")


def test_yaml_1_2_floats_are_numbers(write_study):
    # PyYAML alone reads 3e8 and 2.0e6 as text; a constraint must take them.
    study = load_study(write_study(HEADER + "space:\n  base: cifar_resnet20\n"
                                   "  constraints: {max_macs: 3e8, max_params: 2.0e6}\n"))
    assert study.search_space.constraints.max_macs == 3e8
    assert study.search_space.constraints.max_params == 2e6


def test_defaults_fill_every_section(write_study, minimal_study):
    study = load_study(write_study(minimal_study))
    assert study.name == "tiny" and study.question == "Does B beat A?"
    assert study.data_settings().val_fraction == 0.1 and study.data_settings().crop_padding == 4
    search = study.search
    assert (search.strategy, search.sampler, search.objectives) == ("grid", None, [("val_acc", "max")])
    assert (search.seeds, search.trials, search.sampler_seed) == ([0], 2, 0)
    assert (search.scheduler, search.asha, search.max_concurrent) == ("none", None, None)
    assert (search.resources.cpus, search.resources.gpus, search.keep_checkpoints) == (1.0, 0.0, 3)


def test_search_section_normalises(write_study, minimal_study):
    study = load_study(write_study(minimal_study + "search:\n  strategy: optuna\n  sampler: nsga2\n"
                                   "  objectives: [val_acc:max, macs:min]\n  trials: 7\n  repeats: 3\n"
                                   "  scheduler: asha\n  resources: {cpus: 2, gpus: 0.25}\n"))
    search = study.search
    assert search.objectives == [("val_acc", "max"), ("macs", "min")]
    assert (search.seeds, search.trials, search.sampler) == ([0, 1, 2], 7, "nsga2")
    assert search.asha is not None and search.asha.grace_period == 1 and search.asha.reduction_factor == 3
    assert (search.resources.cpus, search.resources.gpus) == (2.0, 0.25)


def test_study_is_frozen_and_round_trips_through_yaml(write_study, minimal_study):
    study = load_study(write_study(minimal_study))
    with pytest.raises(AttributeError):
        study.name = "other"  # type: ignore[misc]
    again = study_from_dict(yaml.safe_load(study.to_yaml()))
    assert again.search == study.search and again.data == study.data
    assert [p.label for p in again.grid.points] == [p.label for p in study.grid.points]


def test_study_from_dict_names_its_source():
    with pytest.raises(StudyError, match=r"^<dict>: space\.shortcut: not an allowed value"):
        study_from_dict({"name": "t", "question": "q", "space": {"base": "cifar_resnet20", "shortcut": "E"}})


def test_study_from_dict_does_not_keep_the_callers_dict():
    data = {"name": "t", "question": "q", "space": {"base": "cifar_resnet20"}}
    study = study_from_dict(data)
    data["space"]["base"] = "resnet50"
    assert study.raw["space"]["base"] == "cifar_resnet20"


def test_directory_is_not_a_study(tmp_path: Path):
    with pytest.raises(StudyError, match="is a directory"):
        load_study(tmp_path)


def test_a_trial_plan_travels_as_plain_data(write_study, minimal_study):
    # Workers get the plan the driver resolved, never the study: it must survive JSON.
    import json

    from space import TrialPlan, grid_points, resolve

    study = load_study(write_study(minimal_study), ["train.epochs=2"])
    params = {"point": grid_points(study)[0].label, "seed": 0} if study.grid is not None else {}
    plan = resolve(study, params)
    again = TrialPlan.from_dict(json.loads(json.dumps(plan.to_dict())))
    assert again == plan and again.train.epochs == 2
