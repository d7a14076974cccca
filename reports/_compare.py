"""The tables of a comparison of runs: what differs, paired trials, and the ablation verdicts side by side.

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
from reports._load import ReportError, RunData, level_labels, load_run
from reports._stats import (PAIRED_T, accuracy_values, ablation_table, compare, holm, metric_name,
                            pareto_front, verdict)

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
    try:
        study = runfolder.read_study_yaml(run_dir)
    except runfolder.RunFolderError as error:
        raise CompareError(str(error)) from None
    if study is None:
        notes.append(f"{runfolder.RunFolder(run_dir).study_yaml} is missing: the study's fields are not compared "
                     "for this run.")
    return study


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


# ------------------------------------------------------------------ paired trials


def shared_metric(runs: list[ComparedRun]) -> str:
    """test_acc when every run has a complete trial with it, else val_acc_best."""
    if all(len(accuracy_values(compared.run, "test_acc")) for compared in runs):
        return "test_acc"
    return "val_acc_best"


def join_columns(runs: list[ComparedRun], notes: list[str]) -> list[str]:
    """arch_key, the factor columns every run has, and seed: what makes two trials the same trial."""
    columns = [compared.run.results.columns for compared in runs]
    factor_columns = [column for column in columns[0]
                      if column.startswith(runfolder.FACTOR_PREFIX) and all(column in other for other in columns[1:])]
    left_out = sorted({column for cols in columns for column in cols
                       if column.startswith(runfolder.FACTOR_PREFIX) and column not in factor_columns})
    if left_out:
        notes.append(f"Factor column(s) {', '.join(left_out)} exist in some runs only: trials are joined without them.")
    return ["arch_key", *factor_columns, "seed"]


def _keyed(run: RunData, keys: list[str], metric: str) -> tuple[pd.DataFrame, int]:
    """The run's trials with text join keys (one trial per key, the lowest number kept) and how many were dropped."""
    results = run.results
    if any(key not in results.columns for key in keys):
        return pd.DataFrame(columns=[*keys, "trial_id", "status", metric]), 0
    frame = pd.DataFrame({key: level_labels(results[key]) for key in keys})
    frame["trial_id"] = results["trial_id"].to_numpy()
    frame["status"] = results["status"].to_numpy()
    frame[metric] = pd.to_numeric(results[metric], errors="coerce").to_numpy(dtype=float) \
        if metric in results.columns else np.nan
    frame["number"] = pd.to_numeric(results["number"], errors="coerce").to_numpy() \
        if "number" in results.columns else np.arange(len(frame))
    # Rejected samples never trained: they hold no accuracy to pair.
    frame = frame[frame["arch_key"] != "(none)"]
    ordered = frame.sort_values(["number", "trial_id"], kind="stable")
    unique = ordered.drop_duplicates(keys, keep="first")
    return unique.drop(columns="number"), len(ordered) - len(unique)


def pairs_table(runs: list[ComparedRun], keys: list[str], metric: str, notes: list[str]) -> pd.DataFrame:
    """Every trial of each run joined to the reference run's trial with the same keys."""
    reference = runs[0]
    ref_frame, dropped = _keyed(reference.run, keys, metric)
    duplicates = {reference.label: dropped}
    frames = []
    for compared in runs[1:]:
        frame, dropped = _keyed(compared.run, keys, metric)
        duplicates[compared.label] = dropped
        joined = ref_frame.merge(frame, on=keys, suffixes=("_ref", "_run"))
        joined.insert(0, "run", compared.label)
        joined.insert(1, "reference", reference.label)
        joined["diff"] = joined[f"{metric}_run"] - joined[f"{metric}_ref"]
        frames.append(joined)
    for label, count in duplicates.items():
        if count:
            notes.append(f"Run {label}: {count} trial(s) repeat the architecture, factor levels and seed of an "
                         "earlier trial of the same run; only the first (lowest trial number) is paired.")
    columns = ["run", "reference", *keys, "trial_id_ref", "trial_id_run", "status_ref", "status_run",
               f"{metric}_ref", f"{metric}_run", "diff"]
    return pd.concat(frames, ignore_index=True)[columns] if frames else pd.DataFrame(columns=columns)


def _scored(pairs: pd.DataFrame, metric: str) -> pd.DataFrame:
    """Pairs whose trials both completed with the metric."""
    both = (pairs["status_ref"] == "complete") & (pairs["status_run"] == "complete")
    return pairs[both & pairs[f"{metric}_ref"].notna() & pairs[f"{metric}_run"].notna()]


def _paired_row(run_values: np.ndarray, ref_values: np.ndarray) -> dict[str, Any]:
    """n, means, mean difference and, from 2 pairs, the paired t CI, p and effect size."""
    nan = float("nan")
    n = len(run_values)
    row = {"n": n, "mean_ref": float(ref_values.mean()) if n else nan, "mean_run": float(run_values.mean()) if n else nan,
           "diff": float((run_values - ref_values).mean()) if n else nan, "diff_ci_low": nan, "diff_ci_high": nan,
           "p_value": nan, "effect_size": nan, "test": PAIRED_T}
    if n >= 2:
        # Each pair is its own block: the pair's index is its "seed" for the shared decision rule.
        result = compare(run_values, ref_values, np.arange(n), np.arange(n))
        row.update(diff=result.diff, diff_ci_low=result.ci_low, diff_ci_high=result.ci_high, p_value=result.p_value,
                   effect_size=result.effect_size, test=result.test)
    return row


def paired_cells_table(pairs: pd.DataFrame, runs: list[ComparedRun], keys: list[str], metric: str) -> pd.DataFrame:
    """Per run and shared cell (architecture and factor levels): the paired t over its seeds, Holm over the cells."""
    cell_keys = [key for key in keys if key != "seed"]
    scored = _scored(pairs, metric)
    rows = []
    for compared in runs[1:]:
        of_run = scored[scored["run"] == compared.label]
        family = []
        for cell, group in of_run.groupby(cell_keys, sort=False, dropna=False):
            cell = cell if isinstance(cell, tuple) else (cell,)
            row = {"run": compared.label, "reference": runs[0].label, **dict(zip(cell_keys, cell)),
                   "seeds": ", ".join(sorted(group["seed"], key=_natural)),
                   **_paired_row(group[f"{metric}_run"].to_numpy(float), group[f"{metric}_ref"].to_numpy(float))}
            family.append(row)
        for row, p_adjusted in zip(family, holm([row["p_value"] for row in family])):
            row["p_adjusted"] = p_adjusted
            row["verdict"] = "n too small" if row["n"] < 2 else verdict(row["diff"], p_adjusted)
        rows += family
    columns = ["run", "reference", *cell_keys, "seeds", "n", "mean_ref", "mean_run", "diff", "diff_ci_low",
               "diff_ci_high", "p_value", "p_adjusted", "verdict", "test", "effect_size"]
    return pd.DataFrame(rows, columns=columns)


def pooled_table(pairs: pd.DataFrame, cells: pd.DataFrame, runs: list[ComparedRun], metric: str) -> pd.DataFrame:
    """Per run: one paired t over every shared pair of trials, pooled over the cells (not in any Holm family)."""
    scored = _scored(pairs, metric)
    rows = []
    for compared in runs[1:]:
        of_run = scored[scored["run"] == compared.label]
        row = {"run": compared.label, "reference": runs[0].label, "cells": int((cells["run"] == compared.label).sum()),
               **_paired_row(of_run[f"{metric}_run"].to_numpy(float), of_run[f"{metric}_ref"].to_numpy(float))}
        row["joined"] = int((pairs["run"] == compared.label).sum())
        row["verdict"] = ("no trials" if row["n"] == 0 else "n too small" if row["n"] < 2
                          else verdict(row["diff"], row["p_value"]))
        rows.append(row)
    columns = ["run", "reference", "joined", "n", "cells", "mean_ref", "mean_run", "diff", "diff_ci_low",
               "diff_ci_high", "p_value", "verdict", "test", "effect_size"]
    return pd.DataFrame(rows, columns=columns)


def _natural(text: str) -> tuple:
    return (0, int(text)) if str(text).lstrip("-").isdigit() else (1, str(text))


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
