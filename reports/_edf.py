"""Complexity-normalised error EDFs: compare levels at equal complexity, not at whatever MACs each level spends.

Radosavovic et al. 2019, "On Network Design Spaces for Visual Recognition"
(arXiv 1905.13214, Sec. 3.2): an error EDF rewards a design space whose models
are simply bigger. The normalised EDF gives each model a weight so that every
design space has the same complexity distribution, uniform over k bins of the
complexity range: each of the m_j models of a space in bin j weighs 1/(k m_j).

Two choices here, for studies of tens of trials rather than the paper's
thousands: the bins split the log-complexity range into equal widths, as many
as give about MIN_TRIALS_PER_BIN trials per level per bin (MIN_BINS to MAX_BINS);
and the common distribution is uniform over the bins that every level fills,
since a level with no model in a bin cannot be reweighted to have mass there. Trials in the other bins get weight 0, and the figure's
legend says how many of each level's trials count.
"""

from __future__ import annotations

import numpy as np
import pandas as pd

MAX_BINS = 10
# At least this many, so that levels far apart in complexity by design (ResNet-20
# against ResNet-56, 3x the MACs) never share a bin, however few the trials.
MIN_BINS = 3
MIN_TRIALS_PER_BIN = 5


def complexity_bins(cost: np.ndarray, n_levels: int) -> np.ndarray:
    """Edges of k equal-width bins of log(cost) over its range, k giving about MIN_TRIALS_PER_BIN per level per bin."""
    cost = np.asarray(cost, dtype=float)
    log_cost = np.log(cost[cost > 0])
    if log_cost.size == 0:
        return np.array([])
    k = int(np.clip(log_cost.size // (MIN_TRIALS_PER_BIN * max(n_levels, 1)), MIN_BINS, MAX_BINS))
    return np.linspace(log_cost.min(), log_cost.max(), k + 1)


def complexity_weights(cost, level) -> np.ndarray:
    """Per-trial weights that give every level the same complexity distribution: uniform over the shared bins.

    Each level's weights sum to 1 (or are all 0 when it shares no bin with
    the others); a trial with a missing or non-positive cost weighs 0.
    """
    cost = pd.to_numeric(pd.Series(np.asarray(cost)), errors="coerce").to_numpy(dtype=float)
    level = pd.Series(np.asarray(level, dtype=object))
    valid = np.isfinite(cost) & (cost > 0)
    weights = np.zeros(cost.size)
    if not valid.any():
        return weights
    levels = level[valid].unique()
    edges = complexity_bins(cost[valid], len(levels))
    # Interior edges only: the lowest and highest costs fall in the first and last bin.
    bin_of = np.searchsorted(edges[1:-1], np.log(np.where(valid, cost, 1.0)), side="right")
    counts = pd.crosstab(level[valid].to_numpy(), bin_of[valid])
    shared = counts.columns[(counts > 0).all(axis=0)]
    if len(shared) == 0:
        return weights
    # Each trial's count of its (level, bin), looked up for all trials at once (a loop took 24 s at 10^6 trials).
    index = np.flatnonzero(valid)
    count = counts.to_numpy()[counts.index.get_indexer(level[valid].to_numpy()), counts.columns.get_indexer(bin_of[valid])]
    in_shared = np.isin(bin_of[valid], np.asarray(shared))
    weights[index[in_shared]] = 1.0 / (len(shared) * count[in_shared].astype(np.int64))
    return weights


def normalized_edf_frame(run, factor) -> pd.DataFrame:
    """Complete trials of `factor`'s levels with `error` (1 - headline accuracy), `level` and complexity `weight`."""
    from reports._stats import level_frame

    frame = level_frame(run, factor, run.headline_metric)
    cost = frame["macs"] if "macs" in frame.columns else pd.Series(np.nan, index=frame.index)
    return pd.DataFrame({"error": 1.0 - frame[run.headline_metric].to_numpy(dtype=float),
                         "level": frame["level"].to_numpy(), "weight": complexity_weights(cost, frame["level"])})
