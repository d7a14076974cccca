"""The tables of a comparison of runs: what differs, paired trials (reports._compare_pairs), and the verdicts side by side.

A researcher runs a study, changes one thing, and runs again. Comparing the
two asks three questions, each answered by one table here:

- What differs between the runs? Every field of study.yaml (as run, after
  --set overrides) flattened to a dotted path, the training settings the
  trials actually ran with (defaults included), the data (run.json
  `dataset`), the budget, the versions and the hardware.
- Did the change move the accuracy? Trials are joined on architecture key,
  factor levels and seed: the same network, in the same cell of the design,
  on the same seed's data order and augmentation, trained once in each run.
  Each run is compared with the first (the reference run) by a paired t-test
  over the seeds of each shared cell, Holm-adjusted over the cells of that
  pair of runs, with the verdict rule of the report (reports._stats): higher
  or lower exactly when the Holm p is below 0.05. One more paired t-test over
  every shared pair, pooled over the cells, gives the answer at a glance.
- Did the study's answer change? Each run's ablation (each level against its
  reference, pooled over the other factors) and simple effects (within each
  combination of the other factors), side by side, with the comparisons
  whose verdict differs between runs marked.

Runs that share none of these (no joined trial, no factor level compared in
both, different data) are not comparable: `compare_runs` raises instead of
returning empty tables.
"""

from __future__ import annotations

import json
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any, Iterable

import numpy as np
import pandas as pd

import runfolder
from reports._factorial import simple_effects_table
from reports._load import ReportError, RunData, load_run
from reports._stats import accuracy_values, ablation_table, metric_name, pareto_front
from reports._compare_pairs import join_columns, paired_cells_table, pairs_table, pooled_table, shared_metric

# Sections of the "what differs" table, in the order shown.
STUDY_SECTION = runfolder.STUDY_YAML
TRAINED_SECTION = "train (as trained)"
RUN_JSON_SECTIONS = (("data", "dataset"), ("budget", "budget"), ("versions", "versions"), ("hardware", "hardware"))
# study.yaml leaves a field out when the study keeps its default.
NOT_SET = "(not set: default)"
ABSENT = "—"
# Per-trial settings that differ between the trials of one run by design: not a difference between runs.
PER_TRIAL_SETTINGS = (runfolder.TRAIN_PREFIX + "seed",)
# The label of the row that pools every shared pair of trials.
ALL_PAIRS = "all shared trials"
# Verdict comparison of one ablation row across runs.
CHANGED, SAME, NOT_IN_EVERY_RUN = "changed", "same", "not in every run"
COST_COLUMNS = ("macs", "params")


class CompareError(ReportError):
    """Runs that cannot be compared; the message says why, in one line."""


@dataclass(frozen=True)
class ComparedRun:
    """One run of a comparison: its short label, its loaded data and its study.yaml as a dict."""

    label: str
    run: RunData
    study: dict[str, Any] | None

    @property
    def path(self) -> Path:
        return self.run.run_dir


@dataclass
class Comparison:
    """Every table of a comparison page (each is also written as CSV)."""

    runs: list[ComparedRun]
    metric: str                      # the accuracy every run has: test_acc, else val_acc_best
    differences: pd.DataFrame        # section, field, one column per run label, differs
    pairs: pd.DataFrame              # one row per joined pair of trials (run against the reference run)
    paired_cells: pd.DataFrame       # per run and shared cell: n pairs, means, diff, paired t CI, p, Holm p, verdict
    pooled: pd.DataFrame             # per run: the paired t over every shared pair, pooled over cells
    join_columns: list[str]          # what trials were joined on
    ablation: pd.DataFrame           # pooled verdicts side by side
    simple_effects: pd.DataFrame     # simple-effect verdicts side by side
    pareto: dict[str, pd.DataFrame]  # per cost column: every run's front, with a `run` column
    notes: list[str] = field(default_factory=list)

    @property
    def reference(self) -> ComparedRun:
        return self.runs[0]

    def csv_tables(self) -> dict[str, pd.DataFrame]:
        """The tables the page shows, by the CSV name they are written under."""
        tables = {"runs": runs_table(self.runs), "differences": self.differences, "pairs": self.pairs,
                  "paired_cells": self.paired_cells, "paired_all": self.pooled,
                  "ablation_verdicts": self.ablation, "simple_effect_verdicts": self.simple_effects}
        tables.update({f"pareto_{cost}": front for cost, front in self.pareto.items()})
        return tables


# ------------------------------------------------------------------ loading


def _labels(paths: list[Path]) -> list[str]:
    """Short unique names of the runs: the folder name, with its parent where two share one."""
    names = [path.resolve().name for path in paths]
    labels = []
    for path, name in zip(paths, names):
        resolved = path.resolve()
        labels.append(f"{resolved.parent.name}/{name}" if names.count(name) > 1 else name)
    seen: dict[str, int] = {}
    unique = []
    for label in labels:  # still equal (a/x/run and b/x/run): number them
        seen[label] = seen.get(label, 0) + 1
        unique.append(label if labels.count(label) == 1 else f"{label} ({seen[label]})")
    return unique


def _read_study(run_dir: Path, notes: list[str]) -> dict[str, Any] | None:
    """The study as run (runfolder.StudyRecord) as plain data, to compare field by field; None without a study.yaml."""
    try:
        study = runfolder.read_study_record(run_dir)
    except runfolder.RunFolderError as error:
        raise CompareError(str(error)) from None
    if study is None:
        notes.append(f"{runfolder.RunFolder(run_dir).study_yaml} is missing: the study's fields are not compared "
                     "for this run.")
        return None
    return study.as_dict()


def load_runs(paths: Iterable[str | Path], notes: list[str]) -> list[ComparedRun]:
    """Load every run folder (at least two, all different); ReportError names the first that cannot be read."""
    paths = [Path(path) for path in paths]
    if len(paths) < 2:
        raise CompareError(f"give at least two run folders to compare; got {len(paths)}")
    resolved = [path.resolve() for path in paths]
    for index, path in enumerate(resolved):
        if path in resolved[:index]:
            raise CompareError(f"{paths[index]}: given twice; compare different run folders")
    runs = [load_run(path) for path in paths]
    return [ComparedRun(label, run, _read_study(run.run_dir, notes)) for label, run in zip(_labels(paths), runs)]


def runs_table(runs: list[ComparedRun]) -> pd.DataFrame:
    """One row per run: label, folder, study, trials by status, finished."""
    rows = []
    for compared in runs:
        run, results = compared.run, compared.run.results
        counts = results["status"].value_counts()
        rows.append({"run": compared.label, "folder": str(compared.path.resolve()), "study": run.name,
                     "question": run.info.get("question", ""), "trials": len(results),
                     **{status: int(counts.get(status, 0)) for status in runfolder.STATUSES},
                     "planned": (run.info.get("budget") or {}).get("trials"),
                     "finished": run.info.get("finished") or ""})
    return pd.DataFrame(rows)


# ------------------------------------------------------------------ what differs


def flatten(value: Any, prefix: str = "") -> dict[str, Any]:
    """A nested mapping as {dotted.path: leaf}; lists of mappings index as path[i], other lists are leaves."""
    if isinstance(value, dict):
        flat: dict[str, Any] = {}
        for key, inner in value.items():
            flat.update(flatten(inner, f"{prefix}.{key}" if prefix else str(key)))
        return flat if flat or not prefix else {prefix: {}}
    if isinstance(value, list) and value and all(isinstance(item, dict) for item in value):
        flat = {}
        for index, item in enumerate(value):
            flat.update(flatten(item, f"{prefix}[{index}]"))
        return flat
    return {prefix: value}


def value_text(value: Any) -> str:
    """A field's value as one line of text, the same for equal values (0.1 and 0.10, [A, B] and ['A', 'B'])."""
    if isinstance(value, np.generic):
        value = value.item()
    if isinstance(value, str):
        return value
    if isinstance(value, float) and value.is_integer():
        value = int(value)
    return json.dumps(value, sort_keys=True, default=str)


def _trained_settings(run: RunData) -> dict[str, Any]:
    """train.<field> -> the values the run's trials trained with (one value, or the sorted distinct values)."""
    settings = {}
    for column in run.results.columns:
        if not column.startswith(runfolder.TRAIN_PREFIX) or column in PER_TRIAL_SETTINGS:
            continue
        values = sorted({value_text(v) for v in run.results[column] if not runfolder.is_missing(v)})
        if values:
            settings[column] = values[0] if len(values) == 1 else "; ".join(values)
    return settings


def differences_table(runs: list[ComparedRun]) -> pd.DataFrame:
    """Every field of every section with each run's value, and whether the runs differ on it."""
    labels = [compared.label for compared in runs]
    sections: list[tuple[str, list[dict[str, Any]], str]] = [
        (STUDY_SECTION, [flatten(compared.study) if compared.study is not None else {} for compared in runs],
         NOT_SET),
        (TRAINED_SECTION, [_trained_settings(compared.run) for compared in runs], ABSENT),
    ]
    for section, key in RUN_JSON_SECTIONS:
        sections.append((section, [flatten(compared.run.info.get(key), key)
                                   if isinstance(compared.run.info.get(key), dict) else {} for compared in runs], ABSENT))
    rows = []
    for section, flats, missing in sections:
        fields = list(dict.fromkeys(name for flat in flats for name in flat))
        for name in fields:
            texts = [value_text(flat[name]) if name in flat else missing for flat in flats]
            rows.append({"section": section, "field": name, **dict(zip(labels, texts)), "differs": len(set(texts)) > 1})
    return pd.DataFrame(rows, columns=["section", "field", *labels, "differs"])


# ------------------------------------------------------------------ verdicts side by side


def _side_by_side(tables: list[pd.DataFrame], runs: list[ComparedRun], keys: list[str],
                  values: tuple[str, ...]) -> pd.DataFrame:
    """One row per comparison (keys) with each run's `values` as `<label>: <value>` columns and the change status."""
    merged = None
    for compared, table in zip(runs, tables):
        part = table[keys + list(values)].rename(columns={v: f"{compared.label}: {v}" for v in values})
        merged = part if merged is None else merged.merge(part, on=keys, how="outer", sort=False)
    verdicts = merged[[f"{compared.label}: verdict" for compared in runs]]
    present = verdicts.notna()
    merged["change"] = np.where(~present.all(axis=1), NOT_IN_EVERY_RUN,
                                np.where(verdicts.nunique(axis=1, dropna=True) > 1, CHANGED, SAME))
    return merged.reset_index(drop=True)


def ablation_verdicts(runs: list[ComparedRun], metric: str) -> pd.DataFrame:
    """Each level against its reference, pooled over the other factors (the report's ablation), in every run."""
    values = ("n", "diff", "diff_ci_low", "diff_ci_high", "p_adjusted", "test", "verdict")
    tables = []
    for compared in runs:
        table = ablation_table(compared.run)
        tables.append(table[(table["metric"] == metric) & ~table["is_reference"].astype(bool)])
    if all(table.empty for table in tables):
        return pd.DataFrame(columns=["factor", "level", "change"])
    return _side_by_side(tables, runs, ["factor", "level"], values)


def simple_effect_verdicts(runs: list[ComparedRun], metric: str) -> pd.DataFrame:
    """Each level against its reference within each combination of the other factors, in every run."""
    values = ("n", "diff", "p_adjusted", "test", "verdict")
    tables = []
    for compared in runs:
        table, _ = simple_effects_table(compared.run)
        tables.append(table[table["metric"] == metric])
    if all(table.empty for table in tables):
        return pd.DataFrame(columns=["factor", "level", "reference", "within", "change"])
    return _side_by_side(tables, runs, ["factor", "level", "reference", "within"], values)


# ------------------------------------------------------------------ Pareto fronts


def pareto_fronts(runs: list[ComparedRun], metric: str) -> dict[str, pd.DataFrame]:
    """Per cost column every run has: each run's Pareto-optimal complete trials, cheapest first."""
    fronts = {}
    for cost in COST_COLUMNS:
        if not all(cost in compared.run.results.columns for compared in runs):
            continue
        parts = []
        for compared in runs:
            scored = accuracy_values(compared.run, metric)
            scored = scored[pd.to_numeric(scored[cost], errors="coerce") > 0]
            mask = pareto_front(scored[cost].to_numpy(dtype=float), scored[metric].to_numpy(dtype=float))
            front = scored.loc[mask, ["trial_id", cost, metric]].sort_values(cost, kind="stable")
            parts.append(front.assign(run=compared.label)[["run", "trial_id", cost, metric]])
        fronts[cost] = pd.concat(parts, ignore_index=True)
    return fronts


# ------------------------------------------------------------------ the whole comparison


def _dataset_name(compared: ComparedRun) -> str | None:
    dataset = compared.run.info.get("dataset")
    return dataset.get("name") if isinstance(dataset, dict) else None


def _check_comparable(comparison: Comparison) -> None:
    """Raise CompareError, in one line, when some run shares nothing comparable with the reference run."""
    metric, reference = comparison.metric, comparison.reference
    for compared in comparison.runs:
        if len(accuracy_values(compared.run, metric)) == 0:
            raise CompareError(f"{compared.path}: no complete trial with a {metric_name(metric)} "
                               f"({len(compared.run.results)} trial(s) recorded): there is nothing to compare")
    shared_verdicts = pd.concat([comparison.ablation, comparison.simple_effects])
    for compared in comparison.runs[1:]:
        pooled = comparison.pooled[comparison.pooled["run"] == compared.label]
        paired = int(pooled["n"].iloc[0]) if len(pooled) else 0
        verdict_columns = [f"{reference.label}: verdict", f"{compared.label}: verdict"]
        in_both = (int(shared_verdicts[verdict_columns].notna().all(axis=1).sum())
                   if all(column in shared_verdicts.columns for column in verdict_columns) else 0)
        data = (_dataset_name(reference), _dataset_name(compared))
        if paired == 0 and in_both == 0 and (data[0] is None or data[0] != data[1]):
            raise CompareError(
                f"{reference.path} and {compared.path} share nothing comparable: no complete trial with the same "
                f"architecture, factor levels and seed in both, no factor level compared with its reference in "
                f"both, and different data ({data[0] or 'unknown'} vs {data[1] or 'unknown'})")


def compare_runs(paths: Iterable[str | Path]) -> Comparison:
    """Load the runs and compute every table of the comparison; CompareError when they share nothing comparable."""
    notes: list[str] = []
    runs = load_runs(paths, notes)
    metric = shared_metric(runs)
    keys = join_columns(runs, notes)
    pairs = pairs_table(runs, keys, metric, notes)
    cells = paired_cells_table(pairs, runs, keys, metric)
    comparison = Comparison(
        runs=runs, metric=metric, differences=differences_table(runs), pairs=pairs,
        paired_cells=cells, pooled=pooled_table(pairs, cells, runs, metric),
        join_columns=keys, ablation=ablation_verdicts(runs, metric), simple_effects=simple_effect_verdicts(runs, metric),
        pareto=pareto_fronts(runs, metric), notes=notes)
    _check_comparable(comparison)
    names = {_dataset_name(compared) for compared in runs} - {None}
    if len(names) > 1:
        notes.append(f"The runs trained on different data ({', '.join(sorted(names))}): their accuracies "
                     "are not on one scale.")
    return comparison


__all__ = ["CompareError", "ComparedRun", "Comparison", "compare_runs", "differences_table", "flatten"]
