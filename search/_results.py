"""The results tables of a run folder, rewritten atomically after every finished trial.

`results.parquet` has one row per trial, `curves.parquet` one row per trial and
epoch (columns in docs/DESIGN.md). Both are also written as CSV for people and
spreadsheets. Every write goes to a temporary file that is then renamed over
the old one, so a crash mid-write leaves the previous table intact.
"""

from __future__ import annotations

import math
import os
import tempfile
from pathlib import Path
from typing import Any, Callable, Iterable, Mapping

import pandas as pd

from models import ArchSpec

RESULTS = "results"
CURVES = "curves"
CURVE_COLUMNS = ["trial_id", "epoch", "train_loss", "val_acc", "epoch_s", "images_per_s", "lr"]
STATUSES = ("complete", "failed", "pruned")


def trial_id(number: int) -> str:
    """The run-wide trial id: the Optuna trial number, zero-padded so ids sort."""
    return f"trial_{number:04d}"


def _atomic(path: Path, write: Callable[[str], None]) -> None:
    """Call `write(temporary_path)`, then rename the result over `path` in one step."""
    path.parent.mkdir(parents=True, exist_ok=True)
    handle, temporary = tempfile.mkstemp(dir=path.parent, prefix=f".{path.name}.", suffix=".tmp")
    os.close(handle)
    try:
        write(temporary)
        os.replace(temporary, path)
    finally:
        if os.path.exists(temporary):
            os.unlink(temporary)


def atomic_write(frame: pd.DataFrame, path: Path) -> None:
    """Write `frame` to `path` (.parquet or .csv) through a temporary file and a rename."""
    if path.suffix == ".parquet":
        _atomic(path, lambda temporary: frame.to_parquet(temporary, index=False))
    else:
        _atomic(path, lambda temporary: frame.to_csv(temporary, index=False))


def atomic_write_text(path: Path, text: str) -> None:
    """Write a text file through a temporary file and a rename."""
    _atomic(path, lambda temporary: Path(temporary).write_text(text))


def _finite_or_nan(value: Any) -> float:
    try:
        number = float(value)
    except (TypeError, ValueError):
        return math.nan
    return number


def trial_row(*, number: int, status: str, seed: int | None, factors: Mapping[str, Any],
              spec: ArchSpec | None, train: Mapping[str, Any] | None, metrics: Mapping[str, Any],
              error: str = "", checkpoint: str = "") -> dict[str, Any]:
    """One results row; `metrics` holds what `search.train.fit` returned (possibly partial)."""
    if status not in STATUSES:
        raise ValueError(f"status: got {status!r}; allowed: {', '.join(STATUSES)}")
    row: dict[str, Any] = {"trial_id": trial_id(number), "number": number, "status": status,
                           "seed": seed}
    for name, value in factors.items():
        row[f"factor.{name}"] = value
    if spec is not None:
        row.update({f"arch.{k}": v for k, v in spec.flat().items()})
        row["arch_key"] = spec.key()
        row["arch_yaml"] = spec.to_yaml()
    if train is not None:
        row.update({f"train.{k}": (str(v) if isinstance(v, (list, tuple)) else v)
                    for k, v in train.items()})
    for column in ("params", "macs", "flops", "epochs_run"):
        value = metrics.get(column)
        row[column] = int(value) if value is not None and not _isnan(value) else None
    for column in ("val_acc_best", "val_acc_final", "test_acc", "wall_s", "images_per_s"):
        row[column] = _finite_or_nan(metrics.get(column))
    row["node_id"] = str(metrics.get("node_id") or "")
    row["error"] = error or str(metrics.get("error") or "")
    row["checkpoint"] = checkpoint
    return row


def _isnan(value: Any) -> bool:
    return isinstance(value, float) and math.isnan(value)


class ResultsTables:
    """The in-memory copy of a run's tables, flushed to disk after every change."""

    def __init__(self, run_dir: Path) -> None:
        self.run_dir = run_dir
        self.rows: dict[str, dict[str, Any]] = {}
        self.curves: dict[str, list[dict[str, Any]]] = {}

    @classmethod
    def load(cls, run_dir: Path) -> "ResultsTables":
        """Read the tables an earlier (possibly interrupted) run left."""
        tables = cls(run_dir)
        results_path = run_dir / f"{RESULTS}.parquet"
        if results_path.exists():
            for row in pd.read_parquet(results_path).to_dict("records"):
                tables.rows[row["trial_id"]] = row
        curves_path = run_dir / f"{CURVES}.parquet"
        if curves_path.exists():
            for row in pd.read_parquet(curves_path).to_dict("records"):
                if row["trial_id"] in tables.rows:
                    tables.curves.setdefault(row["trial_id"], []).append(row)
        return tables

    def add_trial(self, row: Mapping[str, Any], curve: Iterable[Mapping[str, Any]] = ()) -> None:
        """Record one finished trial and flush both tables to disk."""
        self.rows[row["trial_id"]] = dict(row)
        self.curves[row["trial_id"]] = [
            {"trial_id": row["trial_id"], **{c: point.get(c) for c in CURVE_COLUMNS[1:]}}
            for point in curve
        ]
        self.flush()

    def set_checkpoints(self, kept: Mapping[str, str]) -> None:
        """Point each row at its kept checkpoint folder (empty where weights were dropped)."""
        for trial, row in self.rows.items():
            row["checkpoint"] = kept.get(trial, "")
        self.flush()

    def results_frame(self) -> pd.DataFrame:
        """Every trial, sorted by trial id."""
        frame = pd.DataFrame(list(self.rows.values()))
        return frame.sort_values("trial_id", kind="stable").reset_index(drop=True) if len(frame) else frame

    def curves_frame(self) -> pd.DataFrame:
        """Every epoch of every trial."""
        points = [p for trial in sorted(self.curves) for p in self.curves[trial]]
        return pd.DataFrame(points, columns=CURVE_COLUMNS)

    def flush(self) -> None:
        """Rewrite results and curves, parquet and CSV, atomically."""
        results = self.results_frame()
        curves = self.curves_frame()
        for frame, name in ((results, RESULTS), (curves, CURVES)):
            atomic_write(frame, self.run_dir / f"{name}.parquet")
            atomic_write(frame, self.run_dir / f"{name}.csv")

    def finished_ids(self) -> set[str]:
        """Trials with a final status: never rerun on resume."""
        return set(self.rows)
