"""Read a run folder (docs/DESIGN.md, "Run folder") into one `RunData`, through `runfolder`.

Only the results table is required. Everything else is optional, and what is
missing becomes a note that the report prints, so a half-written run folder
still gives a report that says what it lacks.
"""

from __future__ import annotations

import math
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any, Callable

import numpy as np
import pandas as pd

import runfolder
from runfolder import FACTOR_PREFIX

ACCURACY_COLUMNS = ("test_acc", "val_acc_best", "val_acc_final")

# A factor found only as a `factor.*` column (no run.json) is treated as
# categorical when it has at most this many distinct values; more than that is
# a searched numeric range, and binning it would invent levels.
MAX_INFERRED_LEVELS = 12
# The source of a factor's levels when run.json declares none: the results table's own values.
INFERRED = f"{runfolder.RESULTS_PARQUET} (inferred)"

# Curves of more rows than this are read with trial_id as a categorical (small ones keep plain strings).
CATEGORICAL_CURVES_ABOVE = 100_000


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
    # run.json as plain data (`run_info.to_dict()`: every field, defaults filled); {} when the folder has none.
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
    # run.json, typed (runfolder.RunInfo); None when the folder has none.
    run_info: runfolder.RunInfo | None = None

    @property
    def complete(self) -> pd.DataFrame:
        """Rows with status `complete`; callers still drop NaN accuracies per metric."""
        # Kept while `results` is the same frame: sections ask for it dozens of times, a copy of 10^6 rows each.
        cached = self.__dict__.get("_complete")
        if cached is None or cached[0] is not self.results:
            cached = (self.results, self.results[self.results["status"] == "complete"])
            self.__dict__["_complete"] = cached
        return cached[1]

    @property
    def categorical_factors(self) -> list[Factor]:
        return [factor for factor in self.factors if factor.categorical]


# The label of a null factor value: a conditional factor where it does not exist. Never a level of the factor.
NULL_LABEL = "(none)"


def level_label(value: Any) -> str:
    """The text a factor value is shown and grouped under (20 and 20.0 are one level)."""
    if isinstance(value, np.generic):
        value = value.item()
    if value is None or (isinstance(value, float) and math.isnan(value)):
        return NULL_LABEL
    if isinstance(value, float) and value.is_integer():
        return str(int(value))
    return str(value)


def level_labels(column: pd.Series) -> pd.Series:
    """`level_label` of every value, computed once per distinct value (fast on 10k rows)."""
    codes, uniques = pd.factorize(column, use_na_sentinel=True)
    labels = np.array([level_label(value) for value in uniques] + [NULL_LABEL], dtype=object)
    # factorize marks missing values with -1, which indexes the trailing "(none)".
    return pd.Series(labels[codes], index=column.index, dtype=object)


def _factors_from_run_json(declared: dict[str, Any], results: pd.DataFrame, notes: list[str]) -> list[Factor]:
    factors = []
    for name, spec in declared.items():
        column = FACTOR_PREFIX + name
        if column not in results.columns:
            notes.append(f"Factor {name!r} is declared in {runfolder.RUN_JSON} but {runfolder.RESULTS_PARQUET} has no column {column!r}; it is left out.")
            continue
        spec = spec if isinstance(spec, dict) else {}
        levels = spec.get("levels")
        if levels is None:
            factors.append(Factor(name, column, None, None, runfolder.RUN_JSON))
            continue
        labels = [level_label(level) for level in levels]
        # Values the runner wrote that the study did not declare still deserve a row.
        observed = level_labels(results[column]).unique()
        # A null value is not a level: the factor does not exist for that trial (bottleneck_ratio of a basic
        # block), so those trials enter no comparison of this factor and no table shows a "(none)" level.
        extra = [label for label in observed if label not in labels and label != NULL_LABEL]
        if extra:
            notes.append(
                f"Factor {name!r}: {runfolder.RESULTS_PARQUET} holds level(s) {', '.join(map(repr, extra))} "
                f"that {runfolder.RUN_JSON} does not declare; they are shown after the declared ones."
            )
        reference = spec.get("reference")
        reference_label = level_label(reference) if reference is not None else (labels[0] if labels else None)
        if reference_label not in labels + extra:
            notes.append(f"Factor {name!r}: reference {reference_label!r} is not one of its levels; the first level is used.")
            reference_label = (labels + extra)[0] if labels + extra else None
        factors.append(Factor(name, column, tuple(labels + extra), reference_label, runfolder.RUN_JSON))
    return factors


def _inferred_factor(column: str, results: pd.DataFrame) -> Factor:
    values = results[column]
    numeric = pd.api.types.is_numeric_dtype(values) and not pd.api.types.is_bool_dtype(values)
    distinct = values.dropna().unique()
    name = column[len(FACTOR_PREFIX):]
    if numeric and len(distinct) > MAX_INFERRED_LEVELS:
        return Factor(name, column, None, None, INFERRED)
    labels = [level_label(value) for value in sorted(distinct, key=lambda v: (str(type(v)), v))]
    return Factor(name, column, tuple(labels), labels[0] if labels else None, INFERRED)


def _ranking(objectives: list[list[str]], notes: list[str]) -> tuple[str, bool]:
    """The run-folder ranking (as models.load and retrain rank), with a note where the study's objective differs."""
    try:
        metric = objectives[0][0]
    except (TypeError, IndexError, KeyError):
        notes.append(f"{runfolder.RUN_JSON}: objectives {objectives!r} is not [[metric, max|min], ...].")
        metric = "val_acc"
    if metric != "val_acc":
        notes.append(f"The study's first objective is {metric!r}, but trials are ranked as everywhere in resnas: "
                     f"{runfolder.RANKING_RULE}.")
    return runfolder.RANKING_COLUMN, True


def _headline_metric(results: pd.DataFrame) -> str:
    complete = results[results["status"] == "complete"]
    for column in ("test_acc", "val_acc_best"):
        if column in complete.columns and complete[column].notna().any():
            return column
    return "test_acc" if "test_acc" in results.columns else "val_acc_best"


def _read(reader: Any, run_dir: Path, *args: Any) -> Any:
    """A runfolder reader's result, its errors as ReportError."""
    try:
        return reader(run_dir, *args)
    except runfolder.RunFolderError as error:
        raise ReportError(str(error)) from None


# The results columns a report reads (`report_columns`); the rest (arch.*, train.*, train_json: each trial's
# spec and settings) is for retrain and compare, and at 10^6 trials is most of the table.
REPORT_RESULT_COLUMNS = ("trial_id", "status", "number", "seed", *ACCURACY_COLUMNS, "params", "macs", "flops",
                         "epochs_run", "wall_s", "packed_seeds", "error", "checkpoint", "arch_key", "arch_yaml",
                         runfolder.REUSED_FROM)
REPORT_RESULT_PREFIXES = (FACTOR_PREFIX, "match.", runfolder.SCREEN_PREFIX)  # screen.<proxy>: the replay screens on them


def report_columns(name: str) -> bool:
    """Whether a report reads this results column (`load_run(..., columns=report_columns)`)."""
    return name in REPORT_RESULT_COLUMNS or name.startswith(REPORT_RESULT_PREFIXES)


def load_run(run_dir: str | Path, columns: Callable[[str], bool] | None = None) -> RunData:
    """Read results (required), run.json, curves and retrain tables from a run folder.

    `columns`: which results columns to read (a report passes `report_columns`); every column when None.
    """
    run_dir = Path(run_dir)
    if not run_dir.exists():
        raise ReportError(f"{run_dir}: no such run folder")
    if not run_dir.is_dir():
        raise ReportError(f"{run_dir}: not a directory; expected a run folder such as runs/<study>")
    results = _read(runfolder.read_results, run_dir, runfolder.REPORT_COLUMNS, columns)
    results = results.reset_index(drop=True)
    results["trial_id"] = results["trial_id"].astype(str)
    results["status"] = results["status"].astype(str)
    for column in ACCURACY_COLUMNS:
        if column in results.columns:
            results[column] = pd.to_numeric(results[column], errors="coerce").astype(float)

    notes: list[str] = []
    run_info = _read(runfolder.read_run_info, run_dir)
    if run_info is None:
        notes.append(f"{runfolder.RUN_JSON} is missing: the study question, dataset, budget, hardware and versions "
                     f"are unknown, and factors are inferred from the factor.* columns of the results.")

    declared_factors = run_info.factors if run_info is not None else {}
    factors = _factors_from_run_json(declared_factors, results, notes)
    declared = {factor.column for factor in factors}
    declared_names = set(declared_factors)
    for column in results.columns:
        if column.startswith(FACTOR_PREFIX) and column not in declared and column[len(FACTOR_PREFIX):] not in declared_names:
            factors.append(_inferred_factor(column, results))

    # A report reads trial_id, epoch and val_acc of the curves (10^7 rows at 10^6 trials of 10 epochs).
    curves = _read(runfolder.read_curves, run_dir, None if columns is None else (lambda name: False))
    if curves is not None:
        # Categorical (sorted, as strings sort): 10^7 rows hold codes into 10^6 ids, and lookups hash each id once.
        trial_ids = curves["trial_id"].astype(str)
        if len(curves) > CATEGORICAL_CURVES_ABOVE:
            codes, ids = pd.factorize(trial_ids, sort=True)
            trial_ids = pd.Categorical.from_codes(codes, categories=ids.astype(str))
        curves = curves.assign(trial_id=trial_ids)
    else:
        notes.append(f"{runfolder.CURVES_PARQUET} is missing: no learning curves.")
    retrain = _read(runfolder.read_retrain, run_dir)

    objectives = (run_info.objectives if run_info is not None else None) or [["val_acc", "max"]]
    ranking_metric, ranking_maximize = _ranking(objectives, notes)
    return RunData(
        run_dir=run_dir,
        name=(run_info.study if run_info is not None else "") or run_dir.resolve().name,
        info=run_info.to_dict() if run_info is not None else {},
        results=results,
        curves=curves,
        retrain=retrain,
        factors=factors,
        ranking_metric=ranking_metric,
        ranking_maximize=ranking_maximize,
        headline_metric=_headline_metric(results),
        notes=notes,
        run_info=run_info,
    )
