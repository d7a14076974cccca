"""What a figure draws of a large run: every point up to a limit, and beyond it a thinned set that looks the same.

A figure of 10^6 trials is no clearer than one of 10^4 and takes minutes to
draw (issue 25). Each helper here leaves a small input as it is, so a report of
a small run draws exactly what it did, and says how many points it keeps:

- `scatter_rows`: the trials of an accuracy-vs-cost scatter, the Pareto front
  always (so the front drawn is the front of every trial), plus a uniform
  seeded sample of the rest;
- `edf_points`: an error EDF per level at evenly spaced quantiles (weighted
  quantiles for the complexity-normalised EDF), within 1/EDF_POINTS of the EDF
  of every trial everywhere;
- `mean_sd_points`: learning curves as two points per level and epoch whose
  mean and sample sd are those of every trial, so seaborn's mean ± sd band is
  the exact one.
"""

from __future__ import annotations

import numpy as np
import pandas as pd

from reports._stats import pareto_front

# A scatter draws at most this many trials (the Pareto front comes on top).
MAX_SCATTER_POINTS = 20_000
# A level's EDF with more trials than EDF_THIN_ABOVE is drawn at EDF_POINTS quantiles.
EDF_THIN_ABOVE = 10_000
EDF_POINTS = 2_000
# Learning curves of more rows (trial x epoch) than this are drawn from per-epoch means and sds.
MAX_CURVE_ROWS = 200_000
DRAW_SEED = 0


def scatter_rows(scored: pd.DataFrame, cost: str, metric: str) -> pd.DataFrame:
    """`scored` when it is small; else its Pareto front (by `cost` and `metric`) and a uniform sample, in row order."""
    if len(scored) <= MAX_SCATTER_POINTS:
        return scored
    on_front = pareto_front(pd.to_numeric(scored[cost], errors="coerce").to_numpy(dtype=float),
                            scored[metric].to_numpy(dtype=float))
    rest = np.flatnonzero(~on_front)
    sample = np.random.default_rng(DRAW_SEED).choice(rest, size=min(MAX_SCATTER_POINTS, rest.size), replace=False)
    keep = np.zeros(len(scored), dtype=bool)
    keep[sample] = True
    return scored[keep | on_front]


def _quantile_positions(n: int) -> np.ndarray:
    return np.unique(np.linspace(0, n - 1, EDF_POINTS).round().astype(np.int64))


def edf_points(frame: pd.DataFrame, value: str = "error", level: str = "level", weight: str | None = None) -> pd.DataFrame:
    """Each level of more than EDF_THIN_ABOVE rows thinned to EDF_POINTS of its quantiles (by `weight` when given)."""
    sizes = frame[level].value_counts()
    if not (sizes > EDF_THIN_ABOVE).any():
        return frame
    parts = []
    for name, rows in frame.groupby(level, sort=False):
        if len(rows) <= EDF_THIN_ABOVE:
            parts.append(rows)
            continue
        rows = rows.sort_values(value, kind="stable")
        if weight is None:
            parts.append(rows.iloc[_quantile_positions(len(rows))])
            continue
        # Weighted: the rows where the cumulative weight crosses (j + 1/2) / EDF_POINTS, each with an equal share.
        cumulative = rows[weight].to_numpy(dtype=float).cumsum()
        targets = (np.arange(EDF_POINTS) + 0.5) / EDF_POINTS * cumulative[-1]
        at, shares = np.unique(np.searchsorted(cumulative, targets), return_counts=True)
        parts.append(rows.iloc[at].assign(**{weight: shares * cumulative[-1] / EDF_POINTS}))
    return pd.concat(parts, ignore_index=True)


def mean_sd_points(frame: pd.DataFrame, x: str = "epoch", y: str = "val_acc", level: str = "level") -> pd.DataFrame:
    """`frame` when small; else per level and x two rows, mean ± sd/√2, whose mean and sample sd are the group's."""
    if len(frame) <= MAX_CURVE_ROWS:
        return frame
    groups = frame.groupby([level, x], sort=False, observed=True)[y].agg(["mean", "std", "size"]).reset_index()
    single = groups[groups["size"] < 2]
    several = groups[groups["size"] >= 2]
    half = several["std"].to_numpy() / np.sqrt(2.0)
    rows = [single.assign(**{y: single["mean"]}),
            several.assign(**{y: several["mean"] + half}), several.assign(**{y: several["mean"] - half})]
    return pd.concat(rows, ignore_index=True)[[x, y, level]]
