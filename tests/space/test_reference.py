"""The generated study documentation: the JSON Schema, docs/STUDY_REFERENCE.md, the studies' schema line, --explain.

The schema and the reference are generated from the pydantic models; these
tests fail when a checked-in copy is stale, when the reference and the loader
disagree on which fields exist, and when the JSON Schema and the loader
disagree on a study (unknown keys, wrong types, values outside their rule).
"""

from __future__ import annotations

import copy
import re
import types
from pathlib import Path
from typing import Annotated, Any, Union, get_args, get_origin

import jsonschema
import pytest
from pydantic import BaseModel, Tag
from pydantic.json_schema import SkipJsonSchema

import search.run
import space
from commands import ROOT, call_main, run_module
from models import BLOCKS, SHORTCUTS, STEMS, presets
from space._reference import SCHEMA_FILE, SCHEMA_LINE
from space._schema import BOTTLENECK_ONLY, StudyModel
from space._yaml import parse_yaml

REFERENCE = ROOT / "docs" / "STUDY_REFERENCE.md"
STUDY_FILES = sorted((ROOT / "studies").glob("*.yaml"))
VALIDATOR = jsonschema.Draft202012Validator(space.study_json_schema())


def _read_study(path: Path) -> Any:
    data, _ = parse_yaml(path.read_text(encoding="utf-8"), str(path))
    return data


# ------------------------------------------------------------ stale files
def test_schema_file_is_current():
    assert SCHEMA_FILE.read_text(encoding="utf-8") == space.schema_text(), \
        "space/study.schema.json is stale: python -m space schema > space/study.schema.json"


def test_reference_file_is_current():
    assert REFERENCE.read_text(encoding="utf-8") == space.reference_markdown(), \
        "docs/STUDY_REFERENCE.md is stale: python -m space reference > docs/STUDY_REFERENCE.md"


def test_reference_says_what_each_dataset_kind_expects_at_its_root():
    from imagefeed import DATASET_KINDS

    kinds = space.reference_markdown().split("### Dataset kinds", 1)[1].split("\n## ", 1)[0]
    rows = {line.split("|")[1].strip(): line for line in kinds.splitlines()[2:] if line.startswith("| ")}
    del rows["data.dataset"], rows["---"]  # the table's header
    assert sorted(rows) == sorted(DATASET_KINDS)
    for name, kind in DATASET_KINDS.items():
        assert kind.layout.replace("|", r"\|") in rows[name]  # the layout its refusals quote, table-safe


@pytest.mark.parametrize("path", STUDY_FILES, ids=[path.stem for path in STUDY_FILES])
def test_study_names_the_schema_on_its_first_line(path: Path):
    first = path.read_text(encoding="utf-8").splitlines()[0]
    assert first == SCHEMA_LINE, f"{path.name}: make the first line {SCHEMA_LINE!r}"
    relative = first.partition("$schema=")[2]
    assert (path.parent / relative).resolve() == SCHEMA_FILE.resolve()  # editors resolve it from the file


def test_schema_command_prints_the_schema():
    result = run_module("space", "schema")
    assert result.returncode == 0, result.stderr
    assert result.stdout == SCHEMA_FILE.read_text(encoding="utf-8")


# -------------------------------------------------- reference vs. loader
def _model_in(annotation: Any) -> tuple[type[BaseModel] | None, bool]:
    """The section model a field holds and whether it holds a list of them; searched forms do not count."""
    origin = get_origin(annotation)
    if origin is Annotated:
        if any(isinstance(meta, Tag) for meta in get_args(annotation)[1:]):
            return None, False  # a member of a searched-value union
        return _model_in(get_args(annotation)[0])
    if origin in (Union, types.UnionType):
        found = [_model_in(arg) for arg in get_args(annotation)]
        return next(((model, listed) for model, listed in found if model is not None), (None, False))
    if origin is list:
        model, _ = _model_in(get_args(annotation)[0])
        return model, model is not None
    if isinstance(annotation, type) and issubclass(annotation, BaseModel):
        return annotation, False
    return None, False


def _loader_fields(model: type[BaseModel], prefix: str = "") -> dict[str, bool]:
    """Every field path of the pydantic models -> whether the JSON Schema leaves it out (it only explains itself)."""
    paths: dict[str, bool] = {}
    for name, info in model.model_fields.items():
        path = prefix + (info.alias or name)
        paths[path] = any(isinstance(meta, SkipJsonSchema) for meta in info.metadata)
        nested, listed = _model_in(info.annotation)
        if nested is not None:
            paths.update(_loader_fields(nested, path + ("[i]." if listed else ".")))
    return paths


def _reference_paths() -> set[str]:
    rows = re.findall(r"^\| `([^`]+)` \|", REFERENCE.read_text(encoding="utf-8"), flags=re.MULTILINE)
    return {row for row in rows if not row.startswith("{")}  # the searched-value forms table


def test_reference_names_every_field_the_loader_accepts():
    fields = _loader_fields(StudyModel)
    accepted = {path for path, hidden in fields.items() if not hidden}
    assert _reference_paths() == accepted
    assert {doc.path for doc in space.field_docs()} == accepted
    assert "space.stages[i].depth" in accepted and "search.asha.grace_period" in accepted  # the walk goes deep


def test_fields_left_out_of_the_reference_are_refused(minimal_study_dict):
    hidden = [path for path, hidden in _loader_fields(StudyModel).items() if hidden]
    assert hidden == ["train.seed"]
    for path in hidden:
        section, name = path.split(".")
        study = copy.deepcopy(minimal_study_dict)
        study.setdefault(section, {})[name] = 0
        with pytest.raises(space.StudyError, match=re.escape(path)):
            space.study_from_dict(study)
        assert not VALIDATOR.is_valid(study)


def test_every_field_has_a_meaning_and_a_type():
    for doc in space.field_docs():
        assert len(doc.meaning) > 20 and doc.meaning.endswith("."), doc.path
        assert doc.type and doc.default, doc.path


def test_allowed_values_come_from_the_registries():
    docs = {doc.path: doc for doc in space.field_docs()}
    assert docs["space.block"].allowed == ", ".join(BLOCKS)
    assert docs["space.shortcut"].allowed == ", ".join(SHORTCUTS)
    assert docs["space.stem"].allowed == ", ".join(STEMS)
    assert docs["space.base"].allowed == ", ".join(presets())
    assert docs["search.sampler"].allowed == ", ".join(space.SAMPLERS)
    assert docs["train.optimizer"].allowed == ", ".join(space.OPTIMIZERS)
    assert docs["train.epochs"].allowed == "[1, 10000]" and docs["data.val_fraction"].allowed == "(0, 1)"


def test_reference_says_what_can_be_searched_and_what_is_conditional():
    docs = {doc.path: doc for doc in space.field_docs()}
    assert docs["space.shortcut"].searched == "{choice: [...]}"
    assert docs["train.lr"].searched == "{choice: [...]} or {float: [low, high]}"
    assert docs["space.stages[i].depth"].searched == "{choice: [...]} or {int: [low, high]}"
    assert docs["data.dataset"].searched == "" and docs["search.seeds"].searched == ""
    for name in BOTTLENECK_ONLY:
        assert "Conditional: only bottleneck and preact_bottleneck blocks" in docs[f"space.{name}"].meaning
    assert "Conditional" not in docs["space.shortcut"].meaning
    assert "He et al. 2015, Sec. 3.3" in docs["space.shortcut"].meaning


# ------------------------------------------------ JSON Schema vs. loader
def test_schema_is_a_valid_draft_2020_12_schema():
    schema = space.study_json_schema()
    assert schema["$schema"] == "https://json-schema.org/draft/2020-12/schema"
    jsonschema.Draft202012Validator.check_schema(schema)


@pytest.mark.parametrize("path", STUDY_FILES, ids=[path.stem for path in STUDY_FILES])
def test_schema_accepts_every_shipped_study(path: Path):
    errors = [f"{'.'.join(map(str, error.absolute_path))}: {error.message}"
              for error in VALIDATOR.iter_errors(_read_study(path))]
    assert errors == []


def _minimal() -> dict[str, Any]:
    """The minimal study of conftest.py, as a dict."""
    return {"name": "tiny", "question": "Does B beat A?",
            "space": {"base": "cifar_resnet20", "shortcut": {"choice": ["A", "B"]}}, "train": {"epochs": 3}}


def _with(path: str, value: Any) -> dict[str, Any]:
    """The minimal study with one value set at a dotted path (`space.stages.0.depth`)."""
    study = _minimal()
    node: Any = study
    *parents, last = path.split(".")
    for part in parents:
        node = node[int(part)] if isinstance(node, list) else node.setdefault(part, {})
    if isinstance(node, list):
        node[int(last)] = value
    else:
        node[last] = value
    return study


def _without(name: str) -> dict[str, Any]:
    study = _minimal()
    del study[name]
    return study


STAGES = [{"depth": 1, "width": 16, "stride": 1}, {"depth": {"int": [1, 2]}, "width": 32, "stride": 2}]

# Studies both validators accept: every section and every searched form.
VALID = {
    "minimal": _minimal(),
    "data": _with("data", {"dataset": "cifar100", "root": "/data", "download": False, "val_fraction": 0.2,
                           "split_seed": 1, "crop_padding": 0, "flip": False, "normalize": "imagenet",
                           "train_limit": 1000}),
    "synthetic": _with("data", {"dataset": "synthetic", "synthetic_train": 64, "synthetic_test": 32}),
    "stages": _with("space", {"stem": "cifar", "stem_width": 16, "block": "basic", "stages": STAGES}),
    "bottleneck": _with("space", {"base": "cifar_resnet20", "block": {"choice": ["basic", "bottleneck"]},
                                  "bottleneck_ratio": {"choice": [0.25, 0.5]}, "groups": 1,
                                  "bottleneck_stride": "1x1"}),
    "conveniences": _with("space", {"base": "cifar_resnet20", "blocks_per_stage": {"int": [1, 3], "step": 2},
                                    "width_multiplier": {"float": [0.5, 1.0], "step": 0.5}}),
    "matched": _with("space", {"base": "cifar_resnet20", "shortcut": {"choice": ["A", "B"]},
                               "match_complexity": {"by": "macs", "adjust": "width_multiplier", "tolerance": 0.02},
                               "constraints": {"max_macs": 1.0e9, "min_params": 1}}),
    "train": _with("train", {"epochs": {"choice": [2, 3]}, "batch_size": 64, "optimizer": "sgd", "lr": 1,
                             "momentum": 0.9, "nesterov": True, "weight_decay": {"choice": [0.0, 1.0e-4]},
                             "schedule": "cosine", "milestones": [0.5], "gamma": 0.2, "warmup_epochs": 0.5,
                             "label_smoothing": 0.1, "channels_last": False, "amp": "off", "max_threads": 1}),
    "optuna": _with("search", {"strategy": "optuna", "sampler": "random", "objectives": "val_acc:max", "trials": 4,
                               "repeats": 2, "sampler_seed": 3, "scheduler": "asha",
                               "asha": {"grace_period": 1, "reduction_factor": 2},
                               "resources": {"cpus": 2, "gpus": 0.5}, "max_concurrent": 2, "keep_checkpoints": -1, "storage": "sqlite:///x.db"}),
    "objectives": _with("search", {"objectives": ["val_acc:max", "macs:min"], "seeds": [0, 1]}),
    "report": _with("report", {"target_effect": 0.02}),
}

# Studies both validators refuse: unknown keys at every level, wrong types, values outside their rule.
INVALID = {
    "unknown top-level key": _with("sapce", {}),
    "unknown data key": _with("data.roots", "/data"),
    "unknown space key": _with("space.shortcutt", "A"),
    "unknown stage key": _with("space", {"stages": [{"depth": 1, "width": 16, "strides": 1}]}),
    "unknown train key": _with("train.learning_rate", 0.1),
    "unknown search key": _with("search.seed", [0]),
    "unknown asha key": _with("search", {"scheduler": "asha", "asha": {"grace": 1}}),
    "unknown resources key": _with("search.resources", {"cpu": 1}),
    "unknown constraint": _with("space.constraints", {"max_flops": 1}),
    "unknown match key": _with("space.match_complexity", {"metric": "macs"}),
    "unknown report key": _with("report", {"effect": 0.1}),
    "unknown form key": _with("space.shortcut", {"choice": ["A", "B"], "step": 1}),
    "two forms at once": _with("train.epochs", {"choice": [1], "int": [1, 2]}),
    "range on a categorical field": _with("space.shortcut", {"int": [0, 1]}),
    "train.seed": _with("train.seed", 0),
    "text for an integer": _with("train.epochs", "5"),
    "text for a boolean": _with("data.flip", "yes"),
    "text for a number": _with("train.lr", "0.1"),
    "number for text": _with("space.shortcut", 1),
    "boolean for a stride": _with("space", {"base": "cifar_resnet20", "stages": [{"stride": True}]}),
    "mapping for stages": _with("space.stages", {"depth": 1}),
    "text in a range": _with("train.epochs", {"int": [1, "4"]}),
    "a range of three": _with("train.epochs", {"int": [1, 2, 3]}),
    "an empty choice": _with("space.shortcut", {"choice": []}),
    "a list for a section": _with("space", []),
    "a name that is a number": _with("name", 3),
    "text for seeds": _with("search.seeds", "0"),
    "unknown shortcut": _with("space.shortcut", "E"),
    "unknown level": _with("space.shortcut", {"choice": ["A", "E"]}),
    "unknown block": _with("space.block", "resnet"),
    "unknown optimizer": _with("train.optimizer", "adam"),
    "unknown preset": _with("space.base", "cifar_resnet21"),
    "unknown objective": _with("search.objectives", ["acc:max"]),
    "epochs below 1": _with("train.epochs", 0),
    "val_fraction of 1": _with("data.val_fraction", 1.0),
    "stride 3": _with("space", {"base": "cifar_resnet20", "stages": [{"stride": 3}]}),
    "lr of 0": _with("train.lr", 0),
    "missing name": _without("name"),
    "missing space": _without("space"),
}


def test_schema_accepts_the_minimal_study_of_the_space_tests(minimal_study, minimal_study_dict):
    data, _ = parse_yaml(minimal_study, "<minimal>")
    assert VALIDATOR.is_valid(data) and VALIDATOR.is_valid(minimal_study_dict) and data == _minimal()


@pytest.mark.parametrize("study", VALID.values(), ids=list(VALID))
def test_schema_and_loader_accept_the_same_valid_studies(study: dict[str, Any]):
    space.study_from_dict(study)
    assert [error.message for error in VALIDATOR.iter_errors(study)] == []


@pytest.mark.parametrize("study", INVALID.values(), ids=list(INVALID))
def test_schema_and_loader_refuse_the_same_mistakes(study: dict[str, Any]):
    with pytest.raises(space.StudyError):
        space.study_from_dict(study)
    assert not VALIDATOR.is_valid(study)


# ------------------------------------------------------------------ explain
def test_explain_prints_the_entry_and_the_value_after_overrides(capsys):
    result = call_main(search.run.main, [str(ROOT / "studies" / "smoke.yaml"), "--explain", "space.shortcut",
                                         "--set", "space.shortcut={choice: [B, C]}"], capsys)
    assert result.returncode == 0, result.stderr
    entry = next(doc for doc in space.field_docs() if doc.path == "space.shortcut").entry()
    assert result.stdout.startswith(entry + "\n")
    assert result.stdout.rstrip().endswith("{choice: [B, C]} (searched: 2 levels, reference B)")


def test_explain_tells_where_a_value_left_out_comes_from(capsys):
    study = space.load_study(ROOT / "studies" / "shortcut_ablation.yaml")
    assert space.explain(study, "space.stem").endswith("not set; every trial gets cifar (from space.base "
                                                       "cifar_resnet20)")
    assert space.explain(study, "train.gamma").endswith("not set; the default: 0.1")
    assert "stages[2]: not set; 64" in space.explain(study, "space.stages[i].width")
    assert space.explain(study, "space.stages[1].depth").endswith("space.blocks_per_stage gives every stage its depth")


@pytest.mark.parametrize("field, meant", [("spce.shortcut", "space.shortcut"), ("shortcut", "space.shortcut"),
                                          ("train.seed", "search.seeds"), ("train.learning_rate", None)])
def test_explain_an_unknown_field_is_one_line_with_exit_2(field, meant, capsys):
    line = call_main(search.run.main, [str(ROOT / "studies" / "smoke.yaml"), "--explain", field],
                     capsys).bad_input_line()
    assert line.startswith(f"error: --explain {field}: unknown field")
    if meant:
        assert line.endswith(f"(did you mean {meant!r}?)")
    else:
        assert "allowed: a field path of docs/STUDY_REFERENCE.md" in line
