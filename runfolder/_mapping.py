"""The run folder's small mapping documents: run.json, study.yaml and plans.json, and the error every reader raises."""

from __future__ import annotations

import json
from pathlib import Path
from typing import Any, Iterable, Mapping

from ._atomic import atomic_write_text
from ._layout import RunFolder


class RunFolderError(ValueError):
    """A run folder's file is missing, unreadable or lacks what the reader needs; the message names it."""


def _first_line(error: BaseException) -> str:
    text = " ".join(str(error).split())
    return f"{type(error).__name__}: {text}" if text else type(error).__name__


def _read_mapping(path: Path, expected: str, kind: str = "JSON") -> dict[str, Any] | None:
    """The mapping a JSON (or YAML, read safely) file holds; None when there is no such file; RunFolderError
    (saying `expected`) when it is unreadable or not a mapping."""
    if not path.is_file():
        return None
    if kind == "YAML":
        import yaml

        parse, malformed = yaml.safe_load, yaml.YAMLError
    else:
        parse, malformed = json.loads, json.JSONDecodeError
    try:
        document = parse(path.read_text(encoding="utf-8"))
    except (OSError, UnicodeDecodeError, malformed) as error:
        raise RunFolderError(f"{path}: not readable {kind}: {_first_line(error)}") from None
    if not isinstance(document, dict):
        raise RunFolderError(f"{path}: {expected}, got {type(document).__name__}")
    return document


# ------------------------------------------------------------------ run.json
def read_run_json(run_dir: str | Path) -> dict[str, Any] | None:
    """run.json as a dict; None when the folder has none."""
    return _read_mapping(RunFolder(run_dir).run_json, "expected a JSON object at the top level")


def read_study_yaml(run_dir: str | Path) -> dict[str, Any] | None:
    """study.yaml (the study as run) as a plain dict of sections; None when the folder has none."""
    return _read_mapping(RunFolder(run_dir).study_yaml, "expected a mapping of study sections", kind="YAML")


def write_run_json(run_dir: str | Path, document: Mapping[str, Any]) -> None:
    """Write run.json atomically."""
    atomic_write_text(RunFolder(run_dir).run_json, json.dumps(document, indent=2, default=str) + "\n")


# ------------------------------------------------------------------ plans.json
def write_plans(run_dir: str | Path, plans: Iterable[Mapping[str, Any]]) -> None:
    """Write plans.json atomically: the trials of a run that samples none, each as `TrialPlan.to_dict()`, in order."""
    atomic_write_text(RunFolder(run_dir).plans, json.dumps({"plans": list(plans)}, indent=1) + "\n")


def read_plans(run_dir: str | Path) -> list[dict[str, Any]] | None:
    """The plans plans.json holds, in order; None when the folder has none."""
    path = RunFolder(run_dir).plans
    shape = 'expected {"plans": [one object per trial, ...]}'
    document = _read_mapping(path, shape)
    if document is None:
        return None
    plans = document.get("plans")
    if not isinstance(plans, list) or not all(isinstance(plan, dict) for plan in plans):
        raise RunFolderError(f"{path}: {shape}")
    return plans
