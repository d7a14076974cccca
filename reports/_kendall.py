"""Kendall's rank correlation (tau-b, scipy.stats.kendalltau) with a seeded percentile bootstrap CI.

The bootstrap is written here rather than through scipy.stats.bootstrap: that
calls kendalltau once per resample (about 0.4 ms each, so 2000 resamples of 10
epochs take 8 s), while a resample is a vector of multinomial counts over the
trials, and tau-b of every resample follows from one matrix product with the
pairwise concordance matrix (`bootstrap_kendall_taus`). A test checks every
resample against scipy.stats.kendalltau on the same draws.
"""

from __future__ import annotations

import warnings
from dataclasses import dataclass
from typing import Any

import numpy as np

from reports._stats import BOOTSTRAP_RESAMPLES, BOOTSTRAP_SEED, CONFIDENCE, percentile_interval

# Kendall's tau needs 3 values to say more than the sign of one pair.
MIN_TAU_N = 3


def kendall_tau(x: np.ndarray, y: np.ndarray) -> tuple[float, float]:
    """(tau-b, two-sided p) of scipy.stats.kendalltau; (nan, nan) with fewer than MIN_TAU_N pairs."""
    x, y = np.asarray(x, dtype=float), np.asarray(y, dtype=float)
    if x.size < MIN_TAU_N:
        return float("nan"), float("nan")
    from scipy import stats  # imported here: only runs with curves or retrains pay for scipy

    with warnings.catch_warnings():
        # A constant column has no ranking; scipy warns and returns nan, which we keep.
        warnings.simplefilter("ignore", RuntimeWarning)
        result = stats.kendalltau(x, y)
    return float(result.statistic), float(result.pvalue)


def _row_sums_by_value(values: np.ndarray, counts: np.ndarray) -> np.ndarray:
    """For each resample (row of `counts`), the draws of each distinct value of `values` (one bincount)."""
    codes = np.unique(values, return_inverse=True)[1].ravel()
    distinct = int(codes.max()) + 1
    flat = (codes[None, :] + distinct * np.arange(len(counts))[:, None]).ravel()
    return np.bincount(flat, weights=counts.ravel(), minlength=distinct * len(counts)).reshape(len(counts), distinct)


def _tied_pairs(values: np.ndarray, counts: np.ndarray) -> np.ndarray:
    """Pairs of draws tied on `values` in each resample (row of `counts`), copies of one trial included."""
    per_value = counts if np.unique(values).size == values.size else _row_sums_by_value(values, counts)
    return ((per_value ** 2).sum(axis=1) - counts.sum(axis=1)) / 2.0


def bootstrap_kendall_taus(x: np.ndarray, y: np.ndarray, counts: np.ndarray) -> np.ndarray:
    """tau-b of each resample, given as a row of `counts` (how often each of the n trials was drawn).

    Concordant minus discordant pairs of a resample c is c'Mc / 2, with M the
    n x n matrix of sign(x_i - x_j) * sign(y_i - y_j) (copies of one trial are
    tied, so they add nothing); the pairs tied on x are (sum over each distinct
    x of its draws squared - n) / 2; tau-b = S / sqrt((n0 - tied x)(n0 - tied y)),
    as in scipy.stats.kendalltau. nan where a resample has one distinct value.
    """
    x, y = np.asarray(x, dtype=float), np.asarray(y, dtype=float)
    counts = np.asarray(counts, dtype=float)
    concordance = np.sign(x[:, None] - x[None, :]) * np.sign(y[:, None] - y[None, :])
    # float32 halves the product's time and stays exact: every partial sum is an integer below n^2 < 2^24.
    exact32 = counts.shape[1] ** 2 < 2 ** 24
    dtype = np.float32 if exact32 else np.float64
    weighted = counts.astype(dtype) @ concordance.astype(dtype)
    score = (weighted.astype(float) * counts).sum(axis=1) / 2.0
    draws = counts.sum(axis=1)
    pairs = draws * (draws - 1) / 2.0
    denominator = np.sqrt((pairs - _tied_pairs(x, counts)) * (pairs - _tied_pairs(y, counts)))
    with np.errstate(invalid="ignore", divide="ignore"):
        taus = np.where(denominator > 0, score / np.where(denominator > 0, denominator, 1.0), np.nan)
    return np.clip(taus, -1.0, 1.0)


def resample_indices(n: int, seed: Any, n_resamples: int = BOOTSTRAP_RESAMPLES) -> np.ndarray:
    """`n_resamples` bootstrap resamples of n items (drawn with replacement) as rows of indices, seeded."""
    return np.random.default_rng(seed).integers(0, n, size=(n_resamples, n))


def resample_counts(indices: np.ndarray, n: int) -> np.ndarray:
    """Resamples given as rows of indices, as counts: how often each of the n items was drawn."""
    rows = len(indices)
    flat = (indices + n * np.arange(rows)[:, None]).ravel()
    return np.bincount(flat, minlength=rows * n).reshape(rows, n)


@dataclass(frozen=True)
class RankCorrelation:
    """Kendall's tau-b between two scores of the same items, its p and its bootstrap CI."""

    n: int
    tau: float
    p_value: float
    ci_low: float
    ci_high: float


def kendall_tau_ci(x: np.ndarray, y: np.ndarray, seed: Any = BOOTSTRAP_SEED,
                   n_resamples: int = BOOTSTRAP_RESAMPLES, confidence: float = CONFIDENCE) -> RankCorrelation:
    """tau-b with its percentile bootstrap CI over items (resampled with replacement, seeded); nan below MIN_TAU_N."""
    x, y = np.asarray(x, dtype=float), np.asarray(y, dtype=float)
    tau, p_value = kendall_tau(x, y)
    if x.size < MIN_TAU_N:
        return RankCorrelation(int(x.size), tau, p_value, float("nan"), float("nan"))
    taus = bootstrap_kendall_taus(x, y, resample_counts(resample_indices(x.size, seed, n_resamples), x.size))
    taus = taus[np.isfinite(taus)]
    low, high = percentile_interval(taus, confidence) if taus.size else (float("nan"), float("nan"))
    return RankCorrelation(int(x.size), tau, p_value, low, high)
