"""Read a run folder (docs/DESIGN.md, "Run folder") into one `RunData`.

Only `results.parquet` is required. Everything else is optional, and what is
missing becomes a note that the report prints, so a half-written run folder
still gives a report that says what it lacks.
"""

from __future__ import annotations

import json
import math
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import numpy as np
import pandas as pd

STATUSES = ("complete", "failed", "pruned")
REQUIRED_RESULT_COLUMNS = ("trial_id", "status")
ACCURACY_COLUMNS = ("test_acc", "val_acc_best", "val_acc_final")
FACTOR_PREFIX = "factor."

# A factor found only as a `factor.*` column (no run.json) is treated as
# categorical when it has at most this many distinct values; more than that is
# a searched numeric range, and binning it would invent levels.
MAX_INFERRED_LEVELS = 12

# run.json objectives name metrics as the trainer reports them per epoch
# ("val_acc"); the results table keeps the best and final value of each.
OBJECTIVE_COLUMNS = {"val_acc": "val_acc_best", "test_acc": "test_acc"}


class ReportError(ValueError):
    """A run folder that cannot be reported on; the message names the file and the problem."""


@dataclass(frozen=True)
class Factor:
    """One study factor: its `factor.<name>` column and, when categorical, its levels."""

    name: str
    column: str
    # Labels (strings) in the study's order; None for a searched numeric factor.
    levels: tuple[str, ...] | None
    reference: str | None
    # Where the levels came from: "run.json" or "results.parquet (inferred)".
    source: str

    @property
    def categorical(self) -> bool:
        return self.levels is not None


@dataclass
class RunData:
    """Everything a report reads from one run folder."""

    run_dir: Path
    name: str
    info: dict[str, Any]
    results: pd.DataFrame
    curves: pd.DataFrame | None
    retrain: pd.DataFrame | None
    factors: list[Factor]
    # The metric that ranks trials (the study objective) and its direction.
    ranking_metric: str
    ranking_maximize: bool
    # The accuracy that figures and the ablation lead with.
    headline_metric: str
    notes: list[str] = field(default_factory=list)

    @property
    def complete(self) -> pd.DataFrame:
        """Rows with status `complete`; callers still drop NaN accuracies per metric."""
        return self.results[self.results["status"] == "complete"]

    @property
    def categorical_factors(self) -> list[Factor]:
        return [factor for factor in self.factors if factor.categorical]


def level_label(value: Any) -> str:
    """The text a factor value is shown and grouped under (20 and 20.0 are one level)."""
    if isinstance(value, np.generic):
        value = value.item()
    if value is None or (isinstance(value, float) and math.isnan(value)):
        return "(none)"
    if isinstance(value, float) and value.is_integer():
        return str(int(value))
    return str(value)


def level_labels(column: pd.Series) -> pd.Series:
    """`level_label` of every value, computed once per distinct value (fast on 10k rows)."""
    codes, uniques = pd.factorize(column, use_na_sentinel=True)
    labels = np.array([level_label(value) for value in uniques] + ["(none)"], dtype=object)
    # factorize marks missing values with -1, which indexes the trailing "(none)".
    return pd.Series(labels[codes], index=column.index, dtype=object)


def _read_parquet(path: Path) -> pd.DataFrame:
    try:
        return pd.read_parquet(path)
    except Exception as error:  # pyarrow raises several unrelated types for a bad file
        reason = " ".join(str(error).split()) or type(error).__name__
        raise ReportError(f"{path}: not a readable parquet file: {type(error).__name__}: {reason}") from None


def _read_run_json(path: Path) -> dict[str, Any]:
    try:
        info = json.loads(path.read_text(encoding="utf-8"))
    except (OSError, UnicodeDecodeError, json.JSONDecodeError) as error:
        raise ReportError(f"{path}: not readable JSON: {' '.join(str(error).split())}") from None
    if not isinstance(info, dict):
        raise ReportError(f"{path}: expected a JSON object at the top level, got {type(info).__name__}")
    return info


def _check_results(results: pd.DataFrame, path: Path) -> None:
    missing = [column for column in REQUIRED_RESULT_COLUMNS if column not in results.columns]
    if missing:
        raise ReportError(
            f"{path}: missing column(s) {', '.join(missing)}; the run-folder contract (docs/DESIGN.md) requires "
            f"{', '.join(REQUIRED_RESULT_COLUMNS)}"
        )
    unknown = sorted({str(status) for status in results["status"].dropna().unique()} - set(STATUSES))
    if unknown or results["status"].isna().any():
        given = unknown[0] if unknown else "null"
        raise ReportError(f"{path}: field status: got {given!r}; allowed: {', '.join(STATUSES)}")


def _factors_from_run_json(info: dict[str, Any], results: pd.DataFrame, notes: list[str]) -> list[Factor]:
    declared = info.get("factors") or {}
    if not isinstance(declared, dict):
        raise ReportError(f"run.json: field factors: expected an object name -> {{levels, reference}}, got {declared!r}")
    factors = []
    for name, spec in declared.items():
        column = FACTOR_PREFIX + name
        if column not in results.columns:
            notes.append(f"Factor {name!r} is declared in run.json but results.parquet has no column {column!r}; it is left out.")
            continue
        spec = spec if isinstance(spec, dict) else {}
        levels = spec.get("levels")
        if levels is None:
            factors.append(Factor(name, column, None, None, "run.json"))
            continue
        labels = [level_label(level) for level in levels]
        # Values the runner wrote that the study did not declare still deserve a row.
        observed = level_labels(results[column]).unique()
        extra = [label for label in observed if label not in labels]
        if extra:
            notes.append(
                f"Factor {name!r}: results.parquet holds level(s) {', '.join(map(repr, extra))} "
                "that run.json does not declare; they are shown after the declared ones."
            )
        reference = spec.get("reference")
        reference_label = level_label(reference) if reference is not None else (labels[0] if labels else None)
        if reference_label not in labels + extra:
            notes.append(f"Factor {name!r}: reference {reference_label!r} is not one of its levels; the first level is used.")
            reference_label = (labels + extra)[0] if labels + extra else None
        factors.append(Factor(name, column, tuple(labels + extra), reference_label, "run.json"))
    return factors


def _inferred_factor(column: str, results: pd.DataFrame) -> Factor:
    values = results[column]
    numeric = pd.api.types.is_numeric_dtype(values) and not pd.api.types.is_bool_dtype(values)
    distinct = values.dropna().unique()
    name = column[len(FACTOR_PREFIX):]
    if numeric and len(distinct) > MAX_INFERRED_LEVELS:
        return Factor(name, column, None, None, "results.parquet (inferred)")
    labels = [level_label(value) for value in sorted(distinct, key=lambda v: (str(type(v)), v))]
    if values.isna().any():
        labels.append("(none)")
    return Factor(name, column, tuple(labels), labels[0] if labels else None, "results.parquet (inferred)")


def _objective(info: dict[str, Any], results: pd.DataFrame, notes: list[str]) -> tuple[str, bool]:
    objectives = info.get("objectives") or [["val_acc", "max"]]
    try:
        metric, direction = objectives[0][0], objectives[0][1]
    except (TypeError, IndexError, KeyError):
        notes.append(f"run.json: objectives {objectives!r} is not [[metric, max|min], ...]; trials are ranked by val_acc_best.")
        metric, direction = "val_acc", "max"
    column = metric if metric in results.columns else OBJECTIVE_COLUMNS.get(metric, metric)
    if column not in results.columns:
        notes.append(f"The objective {metric!r} has no column in results.parquet; trials are ranked by val_acc_best.")
        column, direction = "val_acc_best", "max"
    return column, direction != "min"


def _headline_metric(results: pd.DataFrame) -> str:
    complete = results[results["status"] == "complete"]
    for column in ("test_acc", "val_acc_best"):
        if column in complete.columns and complete[column].notna().any():
            return column
    return "test_acc" if "test_acc" in results.columns else "val_acc_best"


def load_run(run_dir: str | Path) -> RunData:
    """Read results.parquet (required), run.json, curves.parquet and retrain.parquet from a run folder."""
    run_dir = Path(run_dir)
    if not run_dir.exists():
        raise ReportError(f"{run_dir}: no such run folder")
    if not run_dir.is_dir():
        raise ReportError(f"{run_dir}: not a directory; expected a run folder such as runs/<study>")
    results_path = run_dir / "results.parquet"
    if not results_path.is_file():
        raise ReportError(f"{results_path}: missing; the runner writes it after the first trial, so there is nothing to report")
    results = _read_parquet(results_path)
    _check_results(results, results_path)
    results = results.reset_index(drop=True)
    results["trial_id"] = results["trial_id"].astype(str)
    results["status"] = results["status"].astype(str)
    for column in ACCURACY_COLUMNS:
        if column in results.columns:
            results[column] = pd.to_numeric(results[column], errors="coerce").astype(float)

    notes: list[str] = []
    run_json = run_dir / "run.json"
    if run_json.is_file():
        info = _read_run_json(run_json)
    else:
        info = {}
        notes.append("run.json is missing: the study question, dataset, budget, hardware and versions are unknown, "
                     "and factors are inferred from the factor.* columns of results.parquet.")

    factors = _factors_from_run_json(info, results, notes)
    declared = {factor.column for factor in factors}
    declared_names = set((info.get("factors") or {}).keys())
    for column in results.columns:
        if column.startswith(FACTOR_PREFIX) and column not in declared and column[len(FACTOR_PREFIX):] not in declared_names:
            factors.append(_inferred_factor(column, results))

    curves = None
    curves_path = run_dir / "curves.parquet"
    if curves_path.is_file():
        curves = _read_parquet(curves_path)
        missing = [column for column in ("trial_id", "epoch", "val_acc") if column not in curves.columns]
        if missing:
            raise ReportError(f"{curves_path}: missing column(s) {', '.join(missing)}; required: trial_id, epoch, val_acc")
        curves = curves.assign(trial_id=curves["trial_id"].astype(str))
    else:
        notes.append("curves.parquet is missing: no learning curves.")

    retrain = None
    retrain_path = run_dir / "retrain.parquet"
    if retrain_path.is_file():
        retrain = _read_parquet(retrain_path)
        missing = [column for column in ("arch_key", "test_acc") if column not in retrain.columns]
        if missing:
            raise ReportError(f"{retrain_path}: missing column(s) {', '.join(missing)}; required: arch_key, test_acc")

    ranking_metric, ranking_maximize = _objective(info, results, notes)
    return RunData(
        run_dir=run_dir,
        name=str(info.get("study") or run_dir.resolve().name),
        info=info,
        results=results,
        curves=curves,
        retrain=retrain,
        factors=factors,
        ranking_metric=ranking_metric,
        ranking_maximize=ranking_maximize,
        headline_metric=_headline_metric(results),
        notes=notes,
    )
