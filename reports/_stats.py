"""The numbers in a report: ablation statistics, Pareto fronts, rankings and trial tables.

Everything here is a plain function from a `RunData` (or arrays) to a
DataFrame, with no plotting, so the bench can time it alone and tests can
check it against scipy.
"""

from __future__ import annotations

import warnings
import zlib

import numpy as np
import pandas as pd
from reports._load import STATUSES, Factor, RunData, level_labels

# Fixed so that a report built twice from one table prints the same intervals.
BOOTSTRAP_SEED = 0
BOOTSTRAP_RESAMPLES = 2000
CONFIDENCE = 0.95
# Upper bound on the resample-index matrix built at once (elements), so 10k
# trials in one level do not allocate 2000 x 10000 indices in one go.
_MAX_INDICES_PER_CHUNK = 4_000_000

# The accuracies the ablation reports, in the order shown.
ABLATION_METRICS = ("test_acc", "val_acc_best")

METRIC_NAMES = {
    "test_acc": "test accuracy",
    "val_acc_best": "best validation accuracy",
    "val_acc_final": "final validation accuracy",
}

# Verdicts on a level's difference to the reference, and what each means; the
# page prints this table as the ablation legend.
VERDICTS = {
    "reference": "the level every other level is compared with",
    "higher": "higher than the reference; the 95% bootstrap CI of the difference excludes 0",
    "lower": "lower than the reference; the 95% bootstrap CI of the difference excludes 0",
    "within noise": "the 95% bootstrap CI of the difference contains 0: no evidence of a difference",
    "n too small": "this level or the reference has fewer than 2 complete trials: no std, CI or test",
    "no trials": "no complete trial with this accuracy at this level",
}


def metric_name(column: str) -> str:
    """The words for a metric column, e.g. 'test accuracy' for test_acc."""
    return METRIC_NAMES.get(column, column)


def bootstrap_means(values: np.ndarray, seed: int | str = BOOTSTRAP_SEED,
                    n_resamples: int = BOOTSTRAP_RESAMPLES) -> np.ndarray:
    """Means of `n_resamples` resamples (with replacement) of `values`, from a seeded generator."""
    values = np.asarray(values, dtype=float)
    if values.size == 0:
        return np.full(n_resamples, np.nan)
    # A string seed (e.g. "shortcut|B|test_acc") gives every group its own
    # stream that does not depend on the order the table is computed in.
    if isinstance(seed, str):
        seed = [BOOTSTRAP_SEED, zlib.crc32(seed.encode("utf-8"))]
    rng = np.random.default_rng(seed)
    rows_per_chunk = max(1, _MAX_INDICES_PER_CHUNK // values.size)
    means = np.empty(n_resamples)
    for start in range(0, n_resamples, rows_per_chunk):
        stop = min(start + rows_per_chunk, n_resamples)
        indices = rng.integers(0, values.size, size=(stop - start, values.size))
        means[start:stop] = values[indices].mean(axis=1)
    return means


def percentile_interval(samples: np.ndarray, confidence: float = CONFIDENCE) -> tuple[float, float]:
    """The central `confidence` percentile interval of bootstrap samples."""
    tail = (1.0 - confidence) / 2.0 * 100.0
    low, high = np.percentile(samples, [tail, 100.0 - tail])
    return float(low), float(high)


def bootstrap_mean_ci(values: np.ndarray, seed: int | str = BOOTSTRAP_SEED,
                      confidence: float = CONFIDENCE) -> tuple[float, float]:
    """Percentile bootstrap CI of the mean; (nan, nan) with fewer than 2 values."""
    if np.asarray(values).size < 2:
        return float("nan"), float("nan")
    return percentile_interval(bootstrap_means(values, seed), confidence)


def welch_p_value(values: np.ndarray, reference_values: np.ndarray) -> float:
    """Two-sided p-value of Welch's t-test (unequal variances); nan when undefined."""
    if len(values) < 2 or len(reference_values) < 2:
        return float("nan")
    from scipy import stats  # imported here: a second of start-up that only comparisons need

    with warnings.catch_warnings():
        # Two constant groups have no variance; scipy warns and returns nan, which we keep.
        warnings.simplefilter("ignore", RuntimeWarning)
        return float(stats.ttest_ind(values, reference_values, equal_var=False).pvalue)


def verdict(n: int, reference_n: int, is_reference: bool, diff_ci: tuple[float, float], diff: float) -> str:
    """One of the VERDICTS keys for a level's difference to the reference."""
    if n == 0:
        return "no trials"
    if is_reference:
        return "reference"
    if n < 2 or reference_n < 2:
        return "n too small"
    low, high = diff_ci
    if low <= 0.0 <= high:
        return "within noise"
    return "higher" if diff > 0 else "lower"


def accuracy_values(run: RunData, metric: str) -> pd.DataFrame:
    """Complete trials with a non-NaN `metric`: the only rows that enter the statistics."""
    complete = run.complete
    if metric not in complete.columns:
        return complete.iloc[0:0]
    return complete[complete[metric].notna()]


def ablation_table(run: RunData) -> pd.DataFrame:
    """For each categorical factor, level and accuracy: n, mean, std, CI, difference to the reference, p, verdict."""
    rows = []
    metrics = [metric for metric in ABLATION_METRICS if metric in run.results.columns]
    for factor in run.categorical_factors:
        for metric in metrics:
            scored = accuracy_values(run, metric)
            groups = {level: values.to_numpy(dtype=float)
                      for level, values in scored[metric].groupby(level_labels(scored[factor.column]))}
            samples = {level: groups.get(level, np.array([])) for level in factor.levels}
            boot = {level: bootstrap_means(samples[level], seed=f"{factor.name}|{level}|{metric}")
                    for level in factor.levels}
            reference = samples.get(factor.reference, np.array([]))
            for level in factor.levels:
                rows.append(_ablation_row(factor, level, metric, samples[level], reference, boot))
    columns = ["factor", "level", "is_reference", "metric", "n", "mean", "std", "ci_low", "ci_high",
               "diff", "diff_ci_low", "diff_ci_high", "p_value", "verdict"]
    return pd.DataFrame(rows, columns=columns)


def _ablation_row(factor: Factor, level: str, metric: str, values: np.ndarray,
                  reference: np.ndarray, boot: dict[str, np.ndarray]) -> dict:
    n, reference_n = len(values), len(reference)
    is_reference = level == factor.reference
    nan = float("nan")
    mean = float(values.mean()) if n else nan
    std = float(values.std(ddof=1)) if n >= 2 else nan
    ci = percentile_interval(boot[level]) if n >= 2 else (nan, nan)
    diff, diff_ci, p_value = nan, (nan, nan), nan
    if not is_reference and n and reference_n:
        diff = mean - float(reference.mean())
        if n >= 2 and reference_n >= 2:
            # Each group is resampled on its own (independent samples), so the
            # difference of their bootstrap means is a bootstrap of the difference.
            diff_ci = percentile_interval(boot[level] - boot[factor.reference])
            p_value = welch_p_value(values, reference)
    return {
        "factor": factor.name, "level": level, "is_reference": is_reference, "metric": metric,
        "n": n, "mean": mean, "std": std, "ci_low": ci[0], "ci_high": ci[1],
        "diff": diff, "diff_ci_low": diff_ci[0], "diff_ci_high": diff_ci[1], "p_value": p_value,
        "verdict": verdict(n, reference_n, is_reference, diff_ci, diff),
    }


def pareto_front(cost: np.ndarray, accuracy: np.ndarray) -> np.ndarray:
    """Boolean mask of the points no other point beats on both lower cost and higher accuracy."""
    cost = np.asarray(cost, dtype=float)
    accuracy = np.asarray(accuracy, dtype=float)
    valid = np.isfinite(cost) & np.isfinite(accuracy)
    mask = np.zeros(cost.shape, dtype=bool)
    index = np.flatnonzero(valid)
    if index.size == 0:
        return mask
    # Cheapest first and, at equal cost, most accurate first: a point is on the
    # front when it is more accurate than everything cheaper (or equal and earlier).
    order = index[np.lexsort((-accuracy[index], cost[index]))]
    sorted_accuracy = accuracy[order]
    best_before = np.concatenate(([-np.inf], np.maximum.accumulate(sorted_accuracy)[:-1]))
    mask[order[sorted_accuracy > best_before]] = True
    return mask


def pareto_table(run: RunData, cost_column: str) -> pd.DataFrame:
    """The Pareto-optimal complete trials for `headline_metric` against `cost_column`, cheapest first."""
    metric = run.headline_metric
    scored = accuracy_values(run, metric)
    if cost_column not in scored.columns:
        return pd.DataFrame(columns=["trial_id", cost_column, metric])
    scored = scored[pd.to_numeric(scored[cost_column], errors="coerce") > 0]
    on_front = pareto_front(scored[cost_column].to_numpy(dtype=float), scored[metric].to_numpy(dtype=float))
    factor_columns = [factor.column for factor in run.factors]
    front = scored.loc[on_front, ["trial_id", cost_column, metric, *factor_columns]]
    return front.sort_values(cost_column, kind="stable").reset_index(drop=True)


def status_counts(results: pd.DataFrame) -> pd.DataFrame:
    """Number of trials per status (every status listed, zeros included) and the total."""
    counts = results["status"].value_counts()
    rows = [{"status": status, "trials": int(counts.get(status, 0))} for status in STATUSES]
    rows.append({"status": "total", "trials": len(results)})
    return pd.DataFrame(rows)


def top_trials(run: RunData, k: int) -> pd.DataFrame:
    """The k best complete trials by the study objective, ranked 1..k (ties: lower trial number first)."""
    metric = run.ranking_metric
    scored = accuracy_values(run, metric)
    tie_break = "number" if "number" in scored.columns else "trial_id"
    ranked = scored.sort_values([metric, tie_break], ascending=[not run.ranking_maximize, True], kind="stable")
    ranked = ranked.head(k).reset_index(drop=True)
    wanted = ["trial_id", "number", metric, "test_acc", "val_acc_best", "params", "macs", "seed",
              *[factor.column for factor in run.factors], "arch_key", "arch_yaml", "checkpoint"]
    columns = list(dict.fromkeys(column for column in wanted if column in ranked.columns))
    table = ranked[columns].copy()
    table.insert(0, "rank", np.arange(len(table)))  # 0 = best, as in models.load(run, rank=0)
    return table


def failed_trials(run: RunData) -> pd.DataFrame:
    """Failed and pruned trials with their messages, failed first."""
    results = run.results
    stopped = results[results["status"].isin(["failed", "pruned"])]
    wanted = ["trial_id", "number", "status", "seed", *[factor.column for factor in run.factors], "epochs_run", "error"]
    columns = [column for column in wanted if column in stopped.columns]
    order = [column for column in ("status", "number", "trial_id") if column in stopped.columns]
    return stopped.sort_values(order, kind="stable")[columns].reset_index(drop=True)


def failure_messages(failed: pd.DataFrame) -> pd.DataFrame:
    """Failed/pruned trials counted by status and the first line of their message, most frequent first."""
    if failed.empty:
        return pd.DataFrame(columns=["status", "message", "trials"])
    if "error" in failed.columns:
        first_lines = failed["error"].fillna("").astype(str).str.strip().str.split("\n").str[0].str.slice(0, 300)
    else:
        first_lines = pd.Series("", index=failed.index)
    first_lines = first_lines.replace("", "(no message)")
    counted = (pd.DataFrame({"status": failed["status"], "message": first_lines})
               .value_counts().rename("trials").reset_index())
    return counted.sort_values(["trials", "status", "message"], ascending=[False, True, True], kind="stable").reset_index(drop=True)


def retrained_summary(retrain: pd.DataFrame) -> pd.DataFrame:
    """Retrained architectures grouped by arch_key: n seeds, mean and std of test accuracy."""
    scored = retrain.assign(test_acc=pd.to_numeric(retrain["test_acc"], errors="coerce"))
    grouped = scored.groupby("arch_key", sort=False)
    summary = grouped["test_acc"].agg(n="count", mean="mean", std="std").reset_index()
    if "source_trial_id" in scored.columns:
        sources = grouped["source_trial_id"].agg(lambda ids: ", ".join(sorted({str(i) for i in ids})))
        summary.insert(1, "source_trial_id", summary["arch_key"].map(sources))
    return summary.sort_values("mean", ascending=False, kind="stable").reset_index(drop=True)


def level_frame(run: RunData, factor: Factor | None, metric: str) -> pd.DataFrame:
    """Scored complete trials with a `level` column for `factor` ('all trials' when None)."""
    scored = accuracy_values(run, metric)
    if factor is None:
        return scored.assign(level="all trials")
    return scored.assign(level=level_labels(scored[factor.column]))


def error_edf_summary(run: RunData, factor: Factor | None) -> pd.DataFrame:
    """Per level: n, min and mean error (1 - headline accuracy) — the legend of an error EDF."""
    frame = level_frame(run, factor, run.headline_metric)
    error = 1.0 - frame[run.headline_metric]
    summary = error.groupby(frame["level"]).agg(n="count", min="min", mean="mean")
    order = list(factor.levels) if factor is not None else ["all trials"]
    return summary.reindex([level for level in order if level in summary.index]).rename_axis("level").reset_index()


def learning_curves(run: RunData, factor: Factor | None) -> pd.DataFrame:
    """val_acc per epoch of complete trials, with each trial's `level` of `factor`."""
    if run.curves is None:
        return pd.DataFrame(columns=["trial_id", "epoch", "val_acc", "level"])
    complete = run.complete
    levels = (level_labels(complete[factor.column]) if factor is not None
              else pd.Series("all trials", index=complete.index))
    level_of_trial = pd.Series(levels.to_numpy(), index=complete["trial_id"].to_numpy())
    level_of_trial = level_of_trial[~level_of_trial.index.duplicated()]
    curves = run.curves[["trial_id", "epoch", "val_acc"]]
    curves = curves[curves["trial_id"].isin(level_of_trial.index) & curves["val_acc"].notna()]
    return curves.assign(level=curves["trial_id"].map(level_of_trial))
