"""Seaborn figures of a report, returned as PNG data URIs so the page needs no other file.

Figures are drawn on `matplotlib.figure.Figure` objects, never through
pyplot: this selects the Agg canvas explicitly for every figure without
switching the backend of the process that imports `reports` (a notebook or
the runner), and keeps no global figure registry to leak memory into.
"""

from __future__ import annotations

import base64
import io

import matplotlib
import numpy as np
import pandas as pd
import seaborn as sns
from matplotlib.backends.backend_agg import FigureCanvasAgg
from matplotlib.cm import ScalarMappable
from matplotlib.colors import Normalize
from matplotlib.figure import Figure
from matplotlib.lines import Line2D
from matplotlib.text import Text
from matplotlib.ticker import EngFormatter, MaxNLocator, NullFormatter

from reports._drawn import edf_points, mean_sd_points
from reports._edf import normalized_edf_frame
from reports._load import Factor, RunData, level_labels
from reports._stats import accuracy_values, error_edf_summary, learning_curves, level_frame, metric_name, pareto_front

# 100 dpi keeps a 6.4-inch figure at 640 px: sharp in a 1280-px page, and a
# 10,000-trial report still renders in seconds.
DPI = 100
WIDE = (6.4, 4.2)
COST_LABELS = {"macs": "MACs (multiply-accumulates)", "params": "parameters"}
# A cost axis spanning more than this ratio is drawn on a log scale.
LOG_SCALE_RATIO = 10.0


def _style():
    """Seaborn's whitegrid style as a context, so the caller's rcParams are left untouched."""
    # usetex off whatever the user's matplotlibrc says: LaTeX would read a label's dollar signs, backslashes,
    # % and _ (and needs a TeX install).
    return matplotlib.rc_context({**sns.axes_style("whitegrid"), **sns.plotting_context("notebook", font_scale=0.85),
                                  "legend.framealpha": 0.9, "text.usetex": False})


def literal(text) -> str:
    """`text` as a string matplotlib draws as written: each `$` escaped, so that no pair of them opens mathtext.

    For strings that end up in tick labels (categories), whose Text objects
    matplotlib makes anew at draw time; every other text of a figure is drawn
    with parse_math=False by `to_data_uri`. Outside mathtext matplotlib reads
    only `\\$` (as `$`), so a backslash needs no escape of its own: `a\\$b`
    becomes `a\\\\$b` and is drawn `a\\$b`.
    """
    return str(text).replace("$", r"\$")


def _draw_as_written(figure: Figure) -> None:
    """Turn mathtext off on every text of the figure but the tick labels: titles, axis labels, legends are user text.

    Labels, factor names and levels come from the study and the run folder, so
    a `$` in them must be a dollar sign, not a formula that can fail to parse.
    Tick labels keep mathtext because formatters write it (log axes draw
    `$\\mathdefault{10^{5}}$`); categorical tick labels are escaped by `literal`.
    """
    ticks = set()
    for ax in figure.axes:
        for axis in (ax.xaxis, ax.yaxis):
            ticks.add(axis.get_offset_text())
            for tick in axis.get_major_ticks() + axis.get_minor_ticks():
                ticks.update((tick.label1, tick.label2))
    for text in figure.findobj(Text):
        if text not in ticks:
            text.set_parse_math(False)


def _new_figure(size=WIDE) -> Figure:
    figure = Figure(figsize=size, dpi=DPI, layout="constrained")
    FigureCanvasAgg(figure)
    return figure


def to_data_uri(figure: Figure) -> str:
    """The figure as a base64 PNG data URI for an <img src>."""
    _draw_as_written(figure)
    buffer = io.BytesIO()
    figure.savefig(buffer, format="png", dpi=DPI)
    return "data:image/png;base64," + base64.b64encode(buffer.getvalue()).decode("ascii")


def palette(n: int) -> list:
    """Colour-blind-safe colours for up to 10 levels, evenly spaced hues beyond."""
    return sns.color_palette("colorblind", n) if n <= 10 else sns.color_palette("husl", n)


def _marker_size(n: int) -> tuple[float, float]:
    # Large markers for a handful of trials, small translucent ones for thousands.
    if n <= 200:
        return 40.0, 0.85
    if n <= 2000:
        return 14.0, 0.6
    return 6.0, 0.4


def _cost_axis(ax, cost: np.ndarray, column: str) -> None:
    positive = cost[cost > 0]
    if positive.size and positive.max() / positive.min() > LOG_SCALE_RATIO:
        ax.set_xscale("log")
        ax.xaxis.set_minor_formatter(NullFormatter())
    ax.xaxis.set_major_formatter(EngFormatter(sep=""))
    ax.set_xlabel(COST_LABELS.get(column, column) + (" — log scale" if ax.get_xscale() == "log" else ""))


def accuracy_vs_cost(run: RunData, cost_column: str, colour: Factor | None) -> str:
    """Scatter of headline accuracy against `cost_column`, one point per trial, coloured by `colour`, with the Pareto front."""
    metric = run.headline_metric
    scored = accuracy_values(run, metric)
    scored = scored[pd.to_numeric(scored[cost_column], errors="coerce") > 0]
    frame = pd.DataFrame({"cost": scored[cost_column].to_numpy(dtype=float),
                          "accuracy": scored[metric].to_numpy(dtype=float) * 100.0}, index=scored.index)
    # Points are drawn in row order; shuffling (seeded) keeps the last level from hiding the others.
    order = np.random.default_rng(0).permutation(len(frame))
    scored, frame = scored.iloc[order], frame.iloc[order]
    size, alpha = _marker_size(len(frame))
    with _style():
        figure = _new_figure()
        ax = figure.add_subplot()
        legend_title = None
        if colour is not None and colour.categorical:
            frame["level"] = level_labels(scored[colour.column]).to_numpy()
            order = [level for level in colour.levels if level in set(frame["level"])]
            sns.scatterplot(data=frame, x="cost", y="accuracy", hue="level", hue_order=order, palette=palette(len(order)),
                            s=size, alpha=alpha, linewidth=0, ax=ax)
            legend_title = colour.name
        elif colour is not None:
            values = pd.to_numeric(scored[colour.column], errors="coerce").to_numpy(dtype=float)
            frame["value"] = values
            norm = Normalize(np.nanmin(values), np.nanmax(values))
            sns.scatterplot(data=frame, x="cost", y="accuracy", hue="value", hue_norm=norm, palette="viridis",
                            s=size, alpha=alpha, linewidth=0, legend=False, ax=ax)
            figure.colorbar(ScalarMappable(norm=norm, cmap="viridis"), ax=ax, label=colour.name, pad=0.01)
        else:
            sns.scatterplot(data=frame, x="cost", y="accuracy", s=size, alpha=alpha, linewidth=0, ax=ax)

        front = frame[pareto_front(frame["cost"].to_numpy(), frame["accuracy"].to_numpy())].sort_values("cost")
        ax.step(front["cost"], front["accuracy"], where="post", color="black", linewidth=1.3, zorder=3)
        ax.scatter(front["cost"], front["accuracy"], s=max(size, 20) * 1.6, facecolors="none", edgecolors="black",
                   linewidths=1.1, zorder=4)
        front_handle = Line2D([], [], color="black", marker="o", markerfacecolor="none", linewidth=1.3,
                              label=f"Pareto front ({len(front)})")
        existing = ax.get_legend()
        if existing is not None:
            handles = list(existing.legend_handles) + [front_handle]
            labels = [text.get_text() for text in existing.get_texts()] + [front_handle.get_label()]
            existing.remove()
            for handle in handles:
                handle.set_alpha(1.0)  # legend markers opaque even when the points are not
            # Outside the axes: with thousands of points no corner is empty.
            ax.legend(handles, labels, title=legend_title, loc="upper left", bbox_to_anchor=(1.01, 1.0),
                      borderaxespad=0.0, markerscale=1.2 if size >= 14 else 2.0)
        else:
            ax.legend(handles=[front_handle], loc="lower right")
        _cost_axis(ax, frame["cost"].to_numpy(), cost_column)
        ax.set_ylabel(f"{metric_name(metric)} (%)")
        ax.set_title(f"{metric_name(metric).capitalize()} vs {COST_LABELS.get(cost_column, cost_column)}", fontsize=11)
        return to_data_uri(figure)


def error_edf(run: RunData, factor: Factor | None) -> str:
    """Error EDF per level (Radosavovic et al. 2020, "Designing Network Design Spaces", Sec. 3.1)."""
    metric = run.headline_metric
    frame = level_frame(run, factor, metric)
    summary = error_edf_summary(run, factor)
    legend_of = {row.level: f"{row.level}  (n={row.n}, min {row.min * 100:.2f}%, mean {row.mean * 100:.2f}%)"
                 for row in summary.itertuples()}
    plot_frame = pd.DataFrame({"error": (1.0 - frame[metric].to_numpy(dtype=float)) * 100.0,
                               "level": frame["level"].map(legend_of).to_numpy()})
    plot_frame = edf_points(plot_frame)  # large levels at quantiles (reports._drawn)
    order = list(legend_of.values())
    with _style():
        # Taller per level: the legend goes under the axes, where it can hide no curve.
        figure = _new_figure((WIDE[0], WIDE[1] + 0.2 * len(order)))
        ax = figure.add_subplot()
        sns.ecdfplot(data=plot_frame, x="error", hue="level", hue_order=order, palette=palette(len(order)),
                     linewidth=1.8, ax=ax)
        if ax.get_legend() is not None:
            sns.move_legend(ax, "upper center", bbox_to_anchor=(0.5, -0.16), ncol=1, frameon=False,
                            title=factor.name if factor is not None else None, fontsize=9)
        ax.set_xlabel(f"error e = 1 − {metric_name(metric)} (%)")
        ax.set_ylabel("fraction of models with error < e")
        ax.set_ylim(0, 1.02)
        ax.set_title("Error EDF" + (f" by {factor.name}" if factor is not None else ""), fontsize=11)
        return to_data_uri(figure)


def normalized_error_edf(run: RunData, factor: Factor, frame: pd.DataFrame | None = None) -> str:
    """Complexity-normalised error EDF per level (Radosavovic et al. 2019, arXiv 1905.13214, Sec. 3.2).

    `frame`: `normalized_edf_frame(run, factor)`, where the caller has it already.
    """
    frame = normalized_edf_frame(run, factor) if frame is None else frame
    legend_of = {}
    for level in factor.levels:
        of_level = frame[frame["level"] == level]
        kept = of_level[of_level["weight"] > 0]
        if len(kept):
            mean = float(np.average(kept["error"], weights=kept["weight"]))
            legend_of[level] = f"{level}  ({len(kept)} of {len(of_level)} trials, weighted mean {mean * 100:.2f}%)"
    kept = frame[frame["weight"] > 0]
    plot_frame = pd.DataFrame({"error": kept["error"].to_numpy() * 100.0, "weight": kept["weight"].to_numpy(),
                               "level": kept["level"].map(legend_of).to_numpy()})
    plot_frame = edf_points(plot_frame, weight="weight")  # large levels at weighted quantiles (reports._drawn)
    order = list(legend_of.values())
    with _style():
        figure = _new_figure((WIDE[0], WIDE[1] + 0.2 * len(order)))
        ax = figure.add_subplot()
        sns.ecdfplot(data=plot_frame, x="error", hue="level", weights="weight", hue_order=order,
                     palette=palette(len(order)), linewidth=1.8, ax=ax)
        if ax.get_legend() is not None:
            sns.move_legend(ax, "upper center", bbox_to_anchor=(0.5, -0.16), ncol=1, frameon=False,
                            title=factor.name, fontsize=9)
        ax.set_xlabel(f"error e = 1 − {metric_name(run.headline_metric)} (%)")
        ax.set_ylabel("weighted fraction of models with error < e")
        ax.set_ylim(0, 1.02)
        ax.set_title(f"Complexity-normalised error EDF by {factor.name} (MACs)", fontsize=11)
        return to_data_uri(figure)


def learning_curve_figure(run: RunData, factor: Factor | None) -> str:
    """Mean val_acc per epoch per level with a ±1 sd band, from complete trials."""
    curves = learning_curves(run, factor)
    trials_per_level = curves.groupby("level", observed=True)["trial_id"].nunique()
    levels = list(factor.levels) if factor is not None else ["all trials"]
    legend_of = {level: f"{level}  (n={trials_per_level[level]})" for level in levels if level in trials_per_level.index}
    # The level stays as it came (categorical for a large run) until the rows are reduced: 10^7 legend strings
    # cost more than the figure.
    plot_frame = pd.DataFrame({"epoch": curves["epoch"].to_numpy(), "val_acc": curves["val_acc"].to_numpy(dtype=float) * 100.0,
                               "level": curves["level"].array})
    order = list(legend_of.values())
    epochs = plot_frame["epoch"].nunique()
    plot_frame = mean_sd_points(plot_frame)  # many trials: two rows per epoch with their mean and sd (reports._drawn)
    plot_frame = plot_frame.assign(level=plot_frame["level"].astype(object).map(legend_of))
    with _style():
        figure = _new_figure()
        ax = figure.add_subplot()
        # errorbar="sd": a band of ±1 sd is cheap on 100k rows, unlike a bootstrap band.
        sns.lineplot(data=plot_frame, x="epoch", y="val_acc", hue="level", hue_order=order, palette=palette(len(order)),
                     errorbar="sd", marker="o" if epochs <= 30 else None, markersize=4, linewidth=1.6, ax=ax)
        if ax.get_legend() is not None:
            sns.move_legend(ax, "lower right", title=factor.name if factor is not None else None, fontsize=8.5)
        ax.xaxis.set_major_locator(MaxNLocator(integer=True))
        ax.set_xlabel("epoch")
        ax.set_ylabel("validation accuracy (%)")
        ax.set_title("Validation accuracy per epoch" + (f" by {factor.name}" if factor is not None else "")
                     + " (mean ± 1 sd)", fontsize=11)
        return to_data_uri(figure)


def importance_figure(table: pd.DataFrame) -> str:
    """Horizontal bars of each parameter's share of the total importance."""
    frame = table.assign(percent=table["share"] * 100.0)
    with _style():
        figure = _new_figure((6.4, 0.6 + 0.35 * max(len(frame), 2)))
        ax = figure.add_subplot()
        frame["param"] = frame["param"].map(literal)  # the tick labels: see `literal`
        sns.barplot(data=frame, x="percent", y="param", orient="h", color=sns.color_palette("colorblind")[0], ax=ax)
        ax.set_xlabel("share of total importance (%)")
        ax.set_ylabel("")
        return to_data_uri(figure)
