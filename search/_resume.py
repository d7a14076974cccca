"""Whether a run folder may be started or continued: never overwrite a run, never resume another study."""

from __future__ import annotations

from pathlib import Path
from typing import Any

import runfolder
import space


class RunError(ValueError):
    """A run cannot start or continue as asked (existing folder, changed study, ...)."""


def check_run_dir(study: space.Study, run_dir: Path, resume: bool) -> dict[str, Any]:
    """Refuse to overwrite a run folder or to resume a different study; return the saved run.json (or {})."""
    folder = runfolder.RunFolder(run_dir)
    existing = run_dir.exists() and any(run_dir.iterdir())
    if existing and not resume:
        raise RunError(f"{run_dir}: the run folder exists; continue it with --resume, or give "
                       f"a new one with --out")
    if not resume:
        return {}
    try:
        saved_run = runfolder.read_run_json(run_dir)
    except runfolder.RunFolderError as error:
        raise RunError(str(error)) from None
    if saved_run is None:
        raise RunError(f"{run_dir}: nothing to resume (no {runfolder.RUN_JSON}); start the study without --resume")
    saved = space.load_study(folder.study_yaml)
    if saved.raw != study.raw:
        changed = first_difference(saved.raw, study.raw) or "?"
        raise RunError(f"{run_dir}: the study differs from the one this run started with "
                       f"(at {changed}); resume with the same file and --set flags, or use --out")
    return saved_run


def first_difference(a: Any, b: Any, path: str = "") -> str | None:
    """The dotted path of the first place two nested dicts differ, or None when equal."""
    if isinstance(a, dict) and isinstance(b, dict):
        for key in sorted(set(a) | set(b), key=str):
            found = first_difference(a.get(key), b.get(key), f"{path}.{key}" if path else str(key))
            if found:
                return found
        return None
    return None if a == b else (path or "<root>")
