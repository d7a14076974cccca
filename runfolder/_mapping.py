"""The run folder's small mapping documents: run.json, study.yaml and plans.json (RunFolderError: runfolder._untrusted)."""

from __future__ import annotations

import json
import os
from pathlib import Path
from typing import Any, Iterable, Mapping

from ._atomic import atomic_write_text
from ._layout import PLANS_JSON, RunFolder
from ._untrusted import MAX_PLANS_JSON_BYTES, MAX_RUN_JSON_BYTES, RunFolderError, read_json, read_yaml


# A file of the folder that may be larger than the JSON default (MAX_RUN_JSON_BYTES), by name.
_JSON_LIMITS = {PLANS_JSON: MAX_PLANS_JSON_BYTES}


def _read_mapping(path: Path, expected: str, kind: str = "JSON", *, limit: int | None = None) -> dict[str, Any] | None:
    """The mapping a JSON (or YAML, read safely) file holds; None when there is no such file; RunFolderError
    (saying `expected`) when it is unreadable or not a mapping.

    Read as untrusted input (runfolder._untrusted): a regular file of at most
    `limit` bytes (by default the cap of its kind and name), UTF-8, nested no
    deeper than the caps, YAML aliases counted as a study file's are.
    """
    if not os.path.lexists(path):
        return None
    if kind == "YAML":
        document = read_yaml(path)
    else:
        document = read_json(path, limit if limit is not None else _JSON_LIMITS.get(path.name, MAX_RUN_JSON_BYTES))
    if not isinstance(document, dict):
        raise RunFolderError(f"{path}: {expected}, got {type(document).__name__}")
    return document


# run.json and study.yaml: runfolder._run_info (RunInfo) and runfolder._study_record (StudyRecord).


# ------------------------------------------------------------------ plans.json
def write_plans(run_dir: str | Path, plans: Iterable[Mapping[str, Any]]) -> None:
    """Write plans.json atomically: the trials of a run that samples none, each as `TrialPlan.to_dict()`, in order."""
    atomic_write_text(RunFolder(run_dir).plans, json.dumps({"plans": list(plans)}, indent=1) + "\n")


def read_plans(run_dir: str | Path) -> list[dict[str, Any]] | None:
    """The plans plans.json holds, in order; None when the folder has none."""
    path = RunFolder(run_dir).checked().plans
    shape = 'expected {"plans": [one object per trial, ...]}'
    document = _read_mapping(path, shape)
    if document is None:
        return None
    plans = document.get("plans")
    if not isinstance(plans, list) or not all(isinstance(plan, dict) for plan in plans):
        raise RunFolderError(f"{path}: {shape}")
    return plans
