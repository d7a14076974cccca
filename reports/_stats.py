"""The numbers in a report: ablation statistics, Pareto fronts, rankings and trial tables.

Everything here is a plain function from a `RunData` (or arrays) to a
DataFrame, with no plotting, so the bench can time it alone and tests can
check it against scipy.

One decision rule serves every comparison of a level with its reference, here
and in reports._factorial: a paired t-test when the trials can be paired by
seed, Welch's t-test otherwise (`compare`); Holm's adjustment over the
comparisons of one table (`holm`); and a verdict of higher or lower exactly
when the Holm-adjusted p-value is below ALPHA (`verdict`). The CI printed with
it is that same t-test's own 95% CI of the difference, unadjusted: it excludes
0 exactly when the unadjusted p is below ALPHA, so every "higher" or "lower"
has a CI on its side of 0, while a CI that excludes 0 beside "within noise"
marks a difference that does not survive the adjustment.
"""

from __future__ import annotations

import warnings
import zlib
from dataclasses import dataclass

import numpy as np
import pandas as pd

import runfolder
from runfolder import STATUSES
from reports import _budget as budgets
from reports._budget import SectionBudget
from reports._load import NULL_LABEL, Factor, RunData, level_labels

# Fixed so that a report built twice from one table prints the same intervals.
BOOTSTRAP_SEED = 0
BOOTSTRAP_RESAMPLES = 2000
CONFIDENCE = 0.95
# A level with more trials than this gets the Student-t CI of its mean instead of the bootstrap: at that n the
# percentile bootstrap of a mean has converged to it (its endpoints move less than their own Monte Carlo error with
# 2000 resamples), while resampling 10^6 trials 2000 times takes minutes (issue 25).
BOOTSTRAP_MAX_N = 20_000
# Upper bound on the resample-index matrix built at once (elements), so 10k
# trials in one level do not allocate 2000 x 10000 indices in one go.
_MAX_INDICES_PER_CHUNK = 4_000_000

# The label of a null factor value (a conditional factor where it does not exist); never a level.
NULL_LEVEL = NULL_LABEL

# The accuracies the ablation reports, in the order shown.
ABLATION_METRICS = ("test_acc", "val_acc_best")

METRIC_NAMES = {
    "test_acc": "test accuracy",
    "val_acc_best": "best validation accuracy",
    "val_acc_final": "final validation accuracy",
}

# The significance level of every verdict, and the confidence of every CI printed beside one.
ALPHA = 0.05
PAIRED_T = "paired t"
WELCH_T = "Welch t"

# Verdicts on a level's difference to the reference, and what each means; the
# page prints this table as the ablation legend.
VERDICTS = {
    "reference": "the level every other level is compared with",
    "higher": f"higher than the reference: Holm-adjusted p < {ALPHA:g}",
    "lower": f"lower than the reference: Holm-adjusted p < {ALPHA:g}",
    "within noise": f"Holm-adjusted p >= {ALPHA:g}: no evidence of a difference at this number of trials",
    "n too small": "this level or the reference has fewer than 2 complete trials: no std, CI or test",
    "no trials": "no complete trial with this accuracy at this level",
}


def metric_name(column: str) -> str:
    """The words for a metric column, e.g. 'test accuracy' for test_acc."""
    return METRIC_NAMES.get(column, column)


def bootstrap_means(values: np.ndarray, seed: int | str = BOOTSTRAP_SEED,
                    n_resamples: int = BOOTSTRAP_RESAMPLES, budget: SectionBudget | None = None) -> np.ndarray:
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
        budgets.check(budget)  # a chunk is at most _MAX_INDICES_PER_CHUNK draws, however many the values
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
                      confidence: float = CONFIDENCE, budget: SectionBudget | None = None) -> tuple[float, float]:
    """Percentile bootstrap CI of the mean; (nan, nan) with fewer than 2 values."""
    if np.asarray(values).size < 2:
        return float("nan"), float("nan")
    return percentile_interval(bootstrap_means(values, seed, budget=budget), confidence)


def welch_p_value(values: np.ndarray, reference_values: np.ndarray) -> float:
    """Two-sided p-value of Welch's t-test (unequal variances); nan when undefined."""
    if len(values) < 2 or len(reference_values) < 2:
        return float("nan")
    from scipy import stats  # imported here: a second of start-up that only comparisons need

    with warnings.catch_warnings():
        # Two constant groups have no variance; scipy warns and returns nan, which we keep.
        warnings.simplefilter("ignore", RuntimeWarning)
        return float(stats.ttest_ind(values, reference_values, equal_var=False).pvalue)


def t_mean_ci(values: np.ndarray, confidence: float = CONFIDENCE) -> tuple[float, float]:
    """Student-t CI of the mean (mean ± t·sd/√n); (nan, nan) with fewer than 2 values."""
    values = np.asarray(values, dtype=float)
    if values.size < 2:
        return float("nan"), float("nan")
    from scipy import stats

    mean, sem = float(values.mean()), float(values.std(ddof=1) / np.sqrt(values.size))
    if sem == 0.0:
        return mean, mean
    low, high = stats.t.interval(confidence, values.size - 1, loc=mean, scale=sem)
    return float(low), float(high)


@dataclass(frozen=True)
class Comparison:
    """A level against its reference by one t-test: every number a row of a comparison table prints."""

    test: str              # PAIRED_T or WELCH_T
    n: int                 # trials of the level (pairs, when paired)
    n_ref: int             # trials of the reference (pairs, when paired)
    diff: float            # mean of the level minus mean of the reference
    ci_low: float          # the test's own 95% CI of `diff`
    ci_high: float
    p_value: float         # the test's two-sided p, unadjusted
    effect_size: float     # Cohen's d_z (paired: diff / sd of the differences) or d (Welch: diff / pooled sd)
    sd: float              # the sd that standardises `diff`: of the per-seed differences, or pooled

    @property
    def paired(self) -> bool:
        return self.test == PAIRED_T


def seed_pairs(values: np.ndarray, seeds: np.ndarray, reference: np.ndarray,
               reference_seeds: np.ndarray) -> tuple[np.ndarray, np.ndarray] | None:
    """The (level, reference) values of the seeds both groups ran, in seed order; None when they cannot pair.

    Pairs need each seed at most once per group (two trials with one seed in
    one group have no single partner) and at least 2 shared seeds.
    """
    seeds, reference_seeds = np.asarray(seeds), np.asarray(reference_seeds)
    if seeds.dtype.kind in "iu" and reference_seeds.dtype.kind in "iu":
        # Integer seeds (every run folder's): the same pairs in the same (sorted) order, without a dict per call.
        if np.unique(seeds).size < seeds.size or np.unique(reference_seeds).size < reference_seeds.size:
            return None
        shared, at, reference_at = np.intersect1d(seeds, reference_seeds, assume_unique=True, return_indices=True)
        if shared.size < 2:
            return None
        return np.asarray(values, dtype=float)[at], np.asarray(reference, dtype=float)[reference_at]
    seeds, reference_seeds = pd.Series(seeds), pd.Series(reference_seeds)
    if seeds.isna().any() or reference_seeds.isna().any() or seeds.duplicated().any() or reference_seeds.duplicated().any():
        return None
    shared = sorted(set(seeds) & set(reference_seeds))
    if len(shared) < 2:
        return None
    level_of = dict(zip(seeds, np.asarray(values, dtype=float)))
    reference_of = dict(zip(reference_seeds, np.asarray(reference, dtype=float)))
    return np.array([level_of[seed] for seed in shared]), np.array([reference_of[seed] for seed in shared])


def compare(values: np.ndarray, reference: np.ndarray, seeds: np.ndarray | None = None,
            reference_seeds: np.ndarray | None = None, confidence: float = CONFIDENCE) -> Comparison:
    """Compare a level with its reference: a paired t-test on the seeds both ran when seeds are given and pair
    (trials that share a seed share data order and augmentation draws), else Welch's t-test.

    Both need at least 2 values per group; the caller checks.
    """
    from scipy import stats  # imported here: a second of start-up that only comparisons need

    pairs = None
    if seeds is not None and reference_seeds is not None:
        pairs = seed_pairs(values, seeds, reference, reference_seeds)
    with warnings.catch_warnings():
        # Constant groups have no variance; scipy warns and returns nan or inf, which we keep.
        warnings.simplefilter("ignore", RuntimeWarning)
        if pairs is not None:
            level, ref = pairs
            result = stats.ttest_rel(level, ref)
            differences = level - ref
            diff, sd = float(differences.mean()), float(differences.std(ddof=1))
            test, n, n_ref = PAIRED_T, len(level), len(ref)
        else:
            level, ref = np.asarray(values, dtype=float), np.asarray(reference, dtype=float)
            result = stats.ttest_ind(level, ref, equal_var=False)
            diff = float(level.mean() - ref.mean())
            n, n_ref = len(level), len(ref)
            sd = float(np.sqrt(((n - 1) * level.var(ddof=1) + (n_ref - 1) * ref.var(ddof=1)) / (n + n_ref - 2)))
            test = WELCH_T
        interval = result.confidence_interval(confidence)
    effect_size = diff / sd if sd > 0 else float("nan")
    return Comparison(test=test, n=n, n_ref=n_ref, diff=diff, ci_low=float(interval.low), ci_high=float(interval.high),
                      p_value=float(result.pvalue), effect_size=effect_size, sd=sd)


def holm(p_values) -> np.ndarray:
    """Holm-adjusted p-values over one table's comparisons; nan stays nan.

    The step-down procedure written out, not statsmodels' `multipletests`: that runs `gc.collect()` on every
    call, a third of a second in a process holding a study's tables, and a report makes one call per factor
    and metric. tests/reports checks it against `multipletests(method="holm")`.
    """
    p_values = np.asarray(p_values, dtype=float)
    adjusted = np.full(p_values.shape, np.nan)
    finite = np.flatnonzero(np.isfinite(p_values))
    if finite.size:
        order = finite[np.argsort(p_values[finite], kind="stable")]
        # The i-th smallest of m p-values is multiplied by m - i; a later one is never smaller than an earlier one.
        steps = (finite.size - np.arange(finite.size)) * p_values[order]
        adjusted[order] = np.minimum(1.0, np.maximum.accumulate(steps))
    return adjusted


def verdict(diff: float, p_adjusted: float) -> str:
    """The decision rule: higher or lower when the Holm-adjusted p is below ALPHA, else within noise."""
    if np.isfinite(p_adjusted) and p_adjusted < ALPHA:
        return "higher" if diff > 0 else "lower"
    return "within noise"


def pairable(run: RunData, factor: Factor, *groups: pd.DataFrame) -> bool:
    """True when the trials of `groups` (a level's and its reference's) differ only in `factor` and the seed.

    Only then does a shared seed make two trials a pair; a comparison pooled
    over another factor's levels, or over a searched numeric one, is unpaired.
    """
    if any("seed" not in group.columns for group in groups):
        return False
    for other in run.factors:
        if other.name == factor.name or other.column not in groups[0].columns:
            continue
        # Raw values, not labels: 20 and 20.0 hash alike, and null counts as a value of its own.
        if pd.concat([group[other.column] for group in groups]).nunique(dropna=False) > 1:
            return False
    return True


def conditional(run: RunData, factor: Factor) -> bool:
    """True when the factor exists only for some trials (e.g. bottleneck_ratio for basic blocks: null there)."""
    return factor.column in run.results.columns and bool(run.results[factor.column].isna().any())


def accuracy_values(run: RunData, metric: str) -> pd.DataFrame:
    """Complete trials with a non-NaN `metric`: the only rows that enter the statistics."""
    complete = run.complete
    # Kept per metric while `complete` is the same frame: a report asks dozens of times (10^6 rows each).
    cache = run.__dict__.setdefault("_accuracy_values", {})
    if metric in cache and cache[metric][0] is complete:
        return cache[metric][1]
    scored = complete.iloc[0:0] if metric not in complete.columns else complete[complete[metric].notna()]
    cache[metric] = (complete, scored)
    return scored


ABLATION_COLUMNS = ["factor", "level", "is_reference", "metric", "n", "mean", "std", "ci_low", "ci_high", "test",
                    "diff", "diff_ci_low", "diff_ci_high", "effect_size", "p_value", "p_adjusted", "verdict"]


def ablation_table(run: RunData, budget: SectionBudget | None = None) -> pd.DataFrame:
    """For each categorical factor, level and accuracy: n, mean, std, CI, and the level against the reference
    pooled over the other factors' levels (test, difference, its CI, p, Holm p over the factor, verdict)."""
    budgets.check(budget)
    rows = []
    metrics = [metric for metric in ABLATION_METRICS if metric in run.results.columns]
    for factor in run.categorical_factors:
        for metric in metrics:
            scored = accuracy_values(run, metric)
            labels = level_labels(scored[factor.column])
            groups = {level: scored[labels == level] for level in factor.levels}
            reference = groups[factor.reference] if factor.reference in groups else scored.iloc[0:0]
            paired_ok = pairable(run, factor, scored)
            # A conditional factor's null trials belong to no level (see reports._load.NULL_LABEL).
            family = [_ablation_row(factor, level, metric, groups[level], reference, paired_ok, budget)
                      for level in factor.levels]
            adjusted = holm([row["p_value"] for row in family])
            for row, p_adjusted in zip(family, adjusted):
                row["p_adjusted"] = p_adjusted
                if row["verdict"] is None:
                    row["verdict"] = verdict(row["diff"], p_adjusted)
            rows += family
    return pd.DataFrame(rows, columns=ABLATION_COLUMNS)


def _ablation_row(factor: Factor, level: str, metric: str, trials: pd.DataFrame, reference: pd.DataFrame,
                  paired_ok: bool, budget: SectionBudget | None = None) -> dict:
    values, reference_values = trials[metric].to_numpy(dtype=float), reference[metric].to_numpy(dtype=float)
    n, reference_n = len(values), len(reference_values)
    is_reference = level == factor.reference
    nan = float("nan")
    row = {
        "factor": factor.name, "level": level, "is_reference": is_reference, "metric": metric, "n": n,
        "mean": float(values.mean()) if n else nan, "std": float(values.std(ddof=1)) if n >= 2 else nan,
        # The CI of one level's mean is a percentile bootstrap; the CI of a difference is its test's own.
        "ci_low": nan, "ci_high": nan, "test": "", "diff": nan, "diff_ci_low": nan, "diff_ci_high": nan,
        "effect_size": nan, "p_value": nan, "verdict": None,
    }
    if n > BOOTSTRAP_MAX_N:
        row["ci_low"], row["ci_high"] = t_mean_ci(values)
    elif n >= 2:
        row["ci_low"], row["ci_high"] = bootstrap_mean_ci(values, seed=f"{factor.name}|{level}|{metric}",
                                                          budget=budget)
    if n == 0:
        row["verdict"] = "no trials"
    elif is_reference:
        row["verdict"] = "reference"
    elif reference_n == 0:
        row["verdict"] = "n too small"
    else:
        row["diff"] = row["mean"] - float(reference_values.mean())
        if n < 2 or reference_n < 2:
            row["verdict"] = "n too small"
        else:
            seeds = (trials["seed"].to_numpy(), reference["seed"].to_numpy()) if paired_ok else (None, None)
            result = compare(values, reference_values, *seeds)
            row.update(test=result.test, diff=result.diff, diff_ci_low=result.ci_low, diff_ci_high=result.ci_high,
                       effect_size=result.effect_size, p_value=result.p_value)
    return row


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
    """The k best trials in the run-folder ranking, `rank` 0 = best, as in models.load(run, rank=0)."""
    ranked = runfolder.ranked_frame(run.results).head(k)
    wanted = ["rank", "trial_id", "number", run.ranking_metric, "test_acc", "val_acc_best", "params", "macs", "seed",
              *[factor.column for factor in run.factors], "arch_key", "arch_yaml", "checkpoint"]
    columns = list(dict.fromkeys(column for column in wanted if column in ranked.columns))
    return ranked[columns].reset_index(drop=True)


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
    """Retrained architectures grouped by arch_key: n seeds, mean and std of test accuracy (as search.retrain prints)."""
    return runfolder.retrain_summary(retrain)


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
    trial_ids = curves["trial_id"]
    if isinstance(trial_ids.dtype, pd.CategoricalDtype):
        # Looked up once per distinct trial, not per epoch (10^7 rows at 10^6 trials of 10 epochs).
        position = level_of_trial.index.get_indexer(trial_ids.cat.categories)[trial_ids.cat.codes.to_numpy()]
        position[trial_ids.cat.codes.to_numpy() < 0] = -1
        keep = (position >= 0) & curves["val_acc"].notna().to_numpy()
        level_codes, level_names = pd.factorize(level_of_trial)
        return curves[keep].assign(level=pd.Categorical.from_codes(level_codes[position[keep]], level_names))
    curves = curves[curves["trial_id"].isin(level_of_trial.index) & curves["val_acc"].notna()]
    return curves.assign(level=curves["trial_id"].map(level_of_trial))
