"""Figures of a comparison page: every run's error EDF on one axis, and every run's Pareto front on another.

Drawn with the report's own figure helpers (reports._figures: the style, the
palette, the cost axis, PNG data URIs), so a comparison looks like a report.
"""

from __future__ import annotations

import numpy as np
import pandas as pd
import seaborn as sns

from reports._compare import ComparedRun
from reports._figures import COST_LABELS, WIDE, _cost_axis, _marker_size, _new_figure, _style, palette, to_data_uri
from reports._stats import accuracy_values, metric_name, pareto_front


def _legend_below(ax, title: str | None = None) -> None:
    if ax.get_legend() is not None:
        sns.move_legend(ax, "upper center", bbox_to_anchor=(0.5, -0.16), ncol=1, frameon=False, title=title,
                        fontsize=9)


def overlaid_error_edf(runs: list[ComparedRun], metric: str) -> str:
    """One error EDF per run (Radosavovic et al. 2020, "Designing Network Design Spaces", Sec. 3.1)."""
    parts, order = [], []
    for compared in runs:
        error = 1.0 - accuracy_values(compared.run, metric)[metric].to_numpy(dtype=float)
        name = (f"{compared.label}  (n={error.size}, min {error.min() * 100:.2f}%, mean {error.mean() * 100:.2f}%)"
                if error.size else f"{compared.label}  (no trial)")
        order.append(name)
        parts.append(pd.DataFrame({"error": error * 100.0, "run": name}))
    frame = pd.concat(parts, ignore_index=True)
    with _style():
        figure = _new_figure((WIDE[0], WIDE[1] + 0.2 * len(order)))
        ax = figure.add_subplot()
        sns.ecdfplot(data=frame, x="error", hue="run", hue_order=order, palette=palette(len(order)), linewidth=1.8,
                     ax=ax)
        _legend_below(ax, "run")
        ax.set_xlabel(f"error e = 1 − {metric_name(metric)} (%)")
        ax.set_ylabel("fraction of models with error < e")
        ax.set_ylim(0, 1.02)
        ax.set_title("Error EDF of each run", fontsize=11)
        return to_data_uri(figure)


def overlaid_pareto(runs: list[ComparedRun], metric: str, cost: str) -> str:
    """Every run's trials (faint) and Pareto front (a step line) of accuracy against `cost`."""
    colours = palette(len(runs))
    frames = []
    for compared in runs:
        scored = accuracy_values(compared.run, metric)
        scored = scored[pd.to_numeric(scored[cost], errors="coerce") > 0]
        frames.append(pd.DataFrame({"cost": scored[cost].to_numpy(dtype=float),
                                    "accuracy": scored[metric].to_numpy(dtype=float) * 100.0}))
    size, alpha = _marker_size(sum(len(frame) for frame in frames))
    with _style():
        figure = _new_figure((WIDE[0], WIDE[1] + 0.2 * len(runs)))
        ax = figure.add_subplot()
        for compared, frame, colour in zip(runs, frames, colours):
            ax.scatter(frame["cost"], frame["accuracy"], s=size, alpha=alpha * 0.5, color=colour, linewidths=0)
            front = frame[pareto_front(frame["cost"].to_numpy(), frame["accuracy"].to_numpy())].sort_values("cost")
            ax.step(front["cost"], front["accuracy"], where="post", color=colour, linewidth=1.6,
                    label=f"{compared.label}  (front of {len(front)} of {len(frame)} trials)")
            ax.scatter(front["cost"], front["accuracy"], s=max(size, 20) * 1.4, facecolors="none", edgecolors=colour,
                       linewidths=1.2)
        ax.legend(loc="upper center", bbox_to_anchor=(0.5, -0.16), ncol=1, frameon=False, fontsize=9, title="run")
        costs = np.concatenate([frame["cost"].to_numpy() for frame in frames]) if frames else np.array([])
        _cost_axis(ax, costs, cost)
        ax.set_ylabel(f"{metric_name(metric)} (%)")
        ax.set_title(f"Pareto fronts: {metric_name(metric)} vs {COST_LABELS.get(cost, cost)}", fontsize=11)
        return to_data_uri(figure)
