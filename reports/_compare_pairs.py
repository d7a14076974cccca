"""Paired trials of a comparison of runs: trials joined on architecture, factor levels and seed, and paired t-tests.

Each run is compared with the first (the reference run): per shared cell a
paired t-test over its seeds, Holm-adjusted over the cells of that pair of
runs, and one paired t-test pooled over every shared pair (reports._compare
puts these tables together with the rest of the comparison).
"""

from __future__ import annotations

from typing import Any, Protocol

import numpy as np
import pandas as pd

import runfolder
from reports._load import RunData, level_labels
from reports._stats import PAIRED_T, accuracy_values, compare, holm, verdict


class ComparedRun(Protocol):
    """What pairing needs of a compared run (reports._compare.ComparedRun): its label and its loaded data."""

    label: str
    run: RunData


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
