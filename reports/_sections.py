"""The body sections of a report page, one renderer per section, and the table that orders them.

Each renderer takes the run and its computed tables and returns HTML; it says,
in the page, what it could not draw or compute and why.
"""

from __future__ import annotations

from dataclasses import replace
from typing import Any, Callable

import numpy as np
import pandas as pd

import runfolder
from reports import _html as h
from reports._html import Cell, verdict_html
from reports._drawn import DRAW_SEED, EDF_POINTS, EDF_THIN_ABOVE, MAX_CURVE_ROWS, scatter_rows
from reports._edf import MAX_BINS, MIN_BINS, MIN_TRIALS_PER_BIN, normalized_edf_frame
from reports._factorial_sections import (DECISION_RULE, interaction_warning, seeds_section, simple_effects_section,
                                        verdict_cell)
from reports._fidelity_sections import fidelity_section
from reports._replay_sections import replay_section
from reports._load import Factor, RunData
from reports._stats import BOOTSTRAP_MAX_N, BOOTSTRAP_RESAMPLES, BOOTSTRAP_SEED, VERDICTS, accuracy_values, metric_name
from reports._tables import COST_COLUMNS, TABLES_DIR, ReportTables

# The page lists at most this many failed/pruned trials; the CSV has all of them.
MAX_FAILED_ROWS = 200


def _figures():
    """The figure module, imported on first use: seaborn and matplotlib take seconds to import,
    and neither `summarize` nor the CLI's error paths need them."""
    from reports import _figures as figures

    return figures


def _load_path(run: RunData) -> str:
    """How a reader names the run folder in `models.load`: runs/<name> when it lives in a runs/ folder."""
    directory = run.run_dir.resolve()
    return f"runs/{directory.name}" if directory.parent.name == "runs" else str(directory)


def _colour_factor(run: RunData) -> Factor | None:
    """The first categorical factor, else the first numeric one, else none."""
    return (run.categorical_factors or run.factors or [None])[0]


def _scatter_section(run: RunData, tables: ReportTables) -> str:
    metric = run.headline_metric
    scored = accuracy_values(run, metric)
    if scored.empty:
        return h.note("No complete trial with an accuracy: nothing to plot.")
    colour = _colour_factor(run)
    parts, details, thinned = [], [], []
    for cost in COST_COLUMNS:
        if cost not in scored.columns:
            parts.append(h.note(f"{runfolder.RESULTS_PARQUET} has no {cost} column: no accuracy-vs-{cost} figure."))
            continue
        positive = int((pd.to_numeric(scored[cost], errors="coerce") > 0).sum())
        if positive == 0:
            parts.append(h.note(f"No complete trial has both {metric} and a positive {cost}: no figure."))
            continue
        drawn = scatter_rows(scored[pd.to_numeric(scored[cost], errors="coerce") > 0], cost, metric)
        if len(drawn) < positive:
            thinned.append(f"{len(drawn):,} of {positive:,} by {cost}")
        # The figure draws what it is given: a copy of the run whose results are the drawn rows.
        parts.append(h.figure(_figures().accuracy_vs_cost(replace(run, results=drawn), cost, colour),
                              f"{metric} against {cost}"))
        front = tables.pareto[cost]
        rows = [[row["trial_id"], Cell(h.engineering(row[cost]), numeric=True),
                 Cell(h.percent(row[metric]), key=f"pareto.{cost}.{index + 1}.{metric}", value=float(row[metric]), numeric=True),
                 *[h.value_text(row[f.column]) for f in run.factors]]
                for index, row in front.iterrows()]
        details.append(
            f"<details><summary>Pareto-optimal trials by {h.escape(cost)} "
            f"({h.keyed_span(str(len(front)), f'pareto.{cost}.n', len(front))})</summary>"
            + h.table(["trial", cost, f"{metric} (%)", *[f.name for f in run.factors]], rows) + "</details>")
    if colour is None:
        colour_text = "a single colour (the study has no factor)"
    elif colour.categorical:
        colour_text = f"colour = {colour.name}"
    else:
        colour_text = f"colour = {colour.name} (numeric, see the colour bar)"
    caption = (f"One point per complete trial with a {metric_name(metric)} (n = {len(scored)}); {colour_text}. "
               "Black line and circles: the Pareto front — trials that no other trial beats on both lower cost and "
               f"higher {metric_name(metric)}.")
    if thinned:
        caption += (f" Drawn: {'; '.join(thinned)} trials — every Pareto-optimal trial and a uniform sample "
                    f"(seed {DRAW_SEED}) of the rest; the front is that of all trials.")
    return f'<div class="grid">{"".join(parts)}</div><p class="muted">{h.escape(caption)}</p>' + "".join(details)


def _t_interval_note(tables: ReportTables) -> str:
    """Said only where a level is large enough to get the t interval instead of the bootstrap (reports._stats)."""
    if not (tables.ablation.get("n", pd.Series(dtype=int)) > BOOTSTRAP_MAX_N).any():
        return ""
    return (f"; a level of more than {BOOTSTRAP_MAX_N:,} trials gets the Student-t interval instead, which the "
            "bootstrap has converged to at that n")


def _ablation_legend(tables: ReportTables) -> str:
    verdicts = "".join(f"<li>{verdict_html(name)}: {h.escape(meaning)}</li>" for name, meaning in VERDICTS.items())
    pooled = ("Each factor pools the trials of every level of the other factors (marginal means): a pooled comparison "
              "is unpaired, since trials that share a seed then differ in more than this factor; the simple effects "
              "below compare within each combination of the other factors. "
              if tables.factorial.crossed else "")
    return (f'<p class="muted">Accuracies in %. Δ = level mean − reference mean, in percentage points. {pooled}'
            f"The 95% CI of a level's mean is a percentile bootstrap ({BOOTSTRAP_RESAMPLES} resamples, seed "
            f"{BOOTSTRAP_SEED}){_t_interval_note(tables)}. {h.escape(DECISION_RULE)} "
            f"Only complete trials with a non-missing accuracy count.</p><ul class=\"muted\">{verdicts}</ul>")


def _ablation_section(run: RunData, tables: ReportTables) -> str:
    ablation = tables.ablation
    parts = []
    numeric = [factor.name for factor in run.factors if not factor.categorical]
    if numeric:
        parts.append(h.note(f"Numeric factor(s) {', '.join(numeric)} are searched ranges without levels; they are not "
                            "binned here (see the scatter colours and the parameter importances)."))
    if not run.categorical_factors:
        parts.append(h.note("The study has no categorical factor with declared levels: there is no ablation table."))
        return "".join(parts)
    if ablation.empty:
        parts.append(h.note(f"{runfolder.RESULTS_PARQUET} has neither test_acc nor val_acc_best: there is no ablation table."))
        return "".join(parts)
    if (ablation["n"] == 0).all():
        parts.append(h.note("No complete trial has an accuracy: there is no statistic to show for any level."))
        return "".join(parts)
    parts.append(_ablation_legend(tables))
    headers = ["level", "accuracy", "n", "mean", "std", "95% CI", "Δ vs ref (pp)", "95% CI of Δ", "d", "test", "p",
               "Holm p", "verdict"]
    for factor in run.categorical_factors:
        rows_of_factor = ablation[ablation["factor"] == factor.name]
        others = [other.name for other in tables.factorial.factors if other.name != factor.name]
        pooled = f"pooled over {', '.join(others)}; " if tables.factorial.crossed and others else ""
        parts.append(f"<h3>{h.escape(factor.name)} <span class=\"muted\">({h.escape(pooled)}reference: "
                     f"{h.escape(factor.reference)}; levels from {h.escape(factor.source)})</span></h3>")
        parts.append(interaction_warning(tables, factor.name))
        if len(factor.levels) == 1:
            parts.append(h.note(f"{factor.name} has a single level ({factor.levels[0]}): there is nothing to compare it "
                                "with, so no difference, CI of the difference or p-value."))
        rows, row_classes = [], []
        for level in factor.levels:
            for position, row in enumerate(rows_of_factor[rows_of_factor["level"] == level].itertuples()):
                rows.append(_ablation_cells(factor, row, show_level=position == 0))
                row_classes.append("group-start" if position == 0 else "")
        parts.append(h.table(headers, rows, row_classes, testid=f"ablation-{factor.name}"))
    return "".join(parts)


def _ablation_cells(factor: Factor, row: Any, show_level: bool) -> list:
    key = f"ablation.{factor.name}.{row.level}.{row.metric}"
    is_reference = bool(row.is_reference)

    def number(stat: str, text: str) -> Cell:
        return Cell(text, key=f"{key}.{stat}", value=getattr(row, stat), numeric=True)

    ci = (f"[{h.keyed_span(h.percent(row.ci_low), key + '.ci_low', row.ci_low)}, "
          f"{h.keyed_span(h.percent(row.ci_high), key + '.ci_high', row.ci_high)}]") if not np.isnan(row.ci_low) else "—"
    diff_ci = (f"[{h.keyed_span(h.signed_points(row.diff_ci_low), key + '.diff_ci_low', row.diff_ci_low)}, "
               f"{h.keyed_span(h.signed_points(row.diff_ci_high), key + '.diff_ci_high', row.diff_ci_high)}]"
               ) if not np.isnan(row.diff_ci_low) else "—"
    level_text = f"{row.level} (ref)" if is_reference else row.level
    return [
        Cell(level_text if show_level else "", css="verdict-reference" if is_reference and show_level else None),
        metric_name(row.metric),
        number("n", str(row.n)),
        number("mean", h.percent(row.mean)),
        number("std", h.percent(row.std)),
        Cell(ci, numeric=True, trusted_html=True),
        number("diff", h.signed_points(row.diff)),
        Cell(diff_ci, numeric=True, trusted_html=True),
        number("effect_size", f"{row.effect_size:+.2f}" if np.isfinite(row.effect_size) else "—"),
        Cell(row.test or "—", key=f"{key}.test"),
        number("p_value", h.p_value_text(row.p_value)),
        number("p_adjusted", h.p_value_text(row.p_adjusted)),
        verdict_cell(row, key),
    ]


def _per_factor_figures(run: RunData, draw: Callable[[RunData, Factor | None], str], alt: str) -> str:
    factors = run.categorical_factors or [None]
    images = [h.figure(draw(run, factor), f"{alt} by {factor.name}" if factor else alt) for factor in factors]
    return f'<div class="grid">{"".join(images)}</div>'


def _edf_section(run: RunData, tables: ReportTables) -> str:
    n = len(accuracy_values(run, run.headline_metric))
    if n == 0:
        return h.note("No complete trial with an accuracy: no error distribution to draw.")
    caption = (f"Error EDF: for each level, the fraction of models whose error (1 − {metric_name(run.headline_metric)}) is "
               "below e — the empirical distribution function of Radosavovic et al., 2020, \"Designing Network Design "
               "Spaces\" (arXiv 2003.13678). A curve further left and higher is a better design space. "
               "Legend: n, minimum and mean error per level.")
    single = " With a single trial each curve is one step." if n == 1 else ""
    if n > EDF_THIN_ABOVE:
        single += (f" A level of more than {EDF_THIN_ABOVE:,} trials is drawn at {EDF_POINTS:,} evenly spaced "
                   "quantiles of its errors (weighted quantiles when normalised): within "
                   f"{1 / EDF_POINTS:.2%} of its EDF everywhere; the legend counts every trial.")
    return (_per_factor_figures(run, _figures().error_edf, "error EDF") + f'<p class="muted">{h.escape(caption + single)}</p>'
            + _normalized_edf_html(run, tables))


def _normalized_edf_html(run: RunData, tables: ReportTables) -> str:
    """Complexity-normalised EDFs, one per factor with two or more levels, or why there are none."""
    factors = tables.factorial.factors
    if not factors:
        return ""
    if "macs" not in run.results.columns:
        return h.note(f"{runfolder.RESULTS_PARQUET} has no macs column: no complexity-normalised error EDF.")
    frames = {factor.name: normalized_edf_frame(run, factor) for factor in factors}  # once: the figures draw them
    drawable = [factor for factor in factors if frames[factor.name].groupby("level")["weight"].sum().gt(0).sum() >= 2]
    heading = "<h3>Normalised for complexity</h3>"
    if not drawable:
        return heading + h.note("No two levels have trials in a common range of MACs: the error EDFs cannot be "
                                "normalised for complexity.")
    images = [h.figure(_figures().normalized_error_edf(run, factor, frames[factor.name]),
                       f"complexity-normalised error EDF by {factor.name}") for factor in drawable]
    skipped = [factor.name for factor in factors if factor not in drawable]
    if skipped:
        heading += h.note(f"Not normalised: {', '.join(skipped)}, whose levels share no range of MACs (they differ in "
                          "complexity by design), so no reweighting can give them one complexity distribution.")
    caption = ("Complexity-normalised error EDF (Radosavovic et al. 2019, \"On Network Design Spaces for Visual "
               "Recognition\", arXiv 1905.13214, Sec. 3.2): each level's trials are reweighted so that its MACs "
               "distribution is the same as every other level's — uniform over the bins of log MACs (equal widths, "
               f"about {MIN_TRIALS_PER_BIN} trials per level per bin, {MIN_BINS} to {MAX_BINS}) that every level fills; "
               "trials in a bin some level lacks weigh 0, and the legend says how many count. A level that is better "
               "here is better at equal complexity, not by spending more MACs.")
    return heading + f'<div class="grid">{"".join(images)}</div><p class="muted">{h.escape(caption)}</p>'


def _curves_section(run: RunData, tables: ReportTables) -> str:
    if run.curves is None:
        return h.note(f"{runfolder.CURVES_PARQUET} is missing: no learning curves.")
    # Each distinct trial id once, not each of 10^7 epochs.
    if set(run.complete["trial_id"]).isdisjoint(run.curves["trial_id"].unique()):
        return h.note(f"{runfolder.CURVES_PARQUET} has no epoch of a complete trial: no learning curves.")
    caption = ("Mean validation accuracy per epoch over the complete trials of each level; the band is ±1 standard "
               "deviation across trials (none with a single trial). Failed and pruned trials are left out, since "
               "their curves stop early and would bias the later epochs.")
    if len(run.curves) > MAX_CURVE_ROWS:
        caption += (f" The {len(run.curves):,} epochs are drawn as each level's mean and sd per epoch, computed over "
                    "every complete trial.")
    return _per_factor_figures(run, _figures().learning_curve_figure, "learning curves") + f'<p class="muted">{h.escape(caption)}</p>'


def _importance_section(run: RunData, tables: ReportTables) -> str:
    result = tables.importances
    if result is None:
        strategy = run.info.get("strategy")
        known = f"This is a {strategy} study" if strategy else f"{runfolder.RUN_JSON} gives no strategy, so this is not known to be"
        return h.note(f"{known}, not a searched (optuna) one: importances apply only to searched studies; "
                      "the ablation table compares the levels directly.")
    if result.table is None:
        return h.note(f"Parameter importances cannot be computed: {result.reason}. Method tried: {result.method}.")
    rows = [[row.param, Cell(f"{row.importance:.4g}", numeric=True),
             Cell(f"{row.share * 100:.1f}", key=f"importance.{row.param}.share", value=float(row.share), numeric=True)]
            for row in result.table.itertuples()]
    return (f'<p class="muted">Method: {h.escape(result.method)}. Importance is how much a parameter\'s distribution among '
            f"the best trials differs from its distribution among all trials; shares sum to 100%.</p>"
            + h.figure(_figures().importance_figure(result.table), "parameter importances")
            + h.table(["parameter", "importance", "share (%)"], rows, testid="importances"))


def _top_section(run: RunData, tables: ReportTables) -> str:
    top = tables.top_k
    if top.empty:
        if run.ranking_metric not in run.results.columns:
            return h.note(f"{runfolder.RESULTS_PARQUET} has no {run.ranking_metric} column: trials cannot be ranked.")
        return h.note(f"No complete trial with {run.ranking_metric}: there is nothing to rank.")
    load_path = _load_path(run)
    metric = run.ranking_metric
    rows = []
    for row in top.to_dict("records"):
        rank = int(row["rank"])
        checkpoint = row.get("checkpoint")
        if isinstance(checkpoint, str) and checkpoint.strip():
            loads = [f'models.load("{load_path}", trial="{row["trial_id"]}")',
                     "# or, from its checkpoint folder:", f'models.load("{load_path}/{checkpoint.strip()}")']
        else:
            # Only the top-k trials keep weights; the spec always survives.
            loads = ["# weights not kept: build the spec (untrained), or retrain it",
                     f'models.build(models.load_spec("{load_path}", trial="{row["trial_id"]}"))']
        spec = row.get("arch_yaml")
        spec_html = (f"<details><summary>arch.yaml</summary><pre>{h.escape(spec)}</pre></details>"
                     if isinstance(spec, str) and spec.strip() else '<span class="muted">no spec recorded</span>')
        factors = "; ".join(f"{f.name}={h.value_text(row[f.column])}" for f in run.factors if f.column in row)
        rows.append([
            Cell(str(rank), numeric=True),
            Cell(f"<code>{h.escape(row['trial_id'])}</code>", key=f"top.{rank}.trial_id", value=row["trial_id"], trusted_html=True),
            Cell(h.percent(row[metric]), key=f"top.{rank}.{metric}", value=float(row[metric]), numeric=True),
            *([Cell(h.percent(row["test_acc"]), key=f"top.{rank}.test_acc", value=float(row["test_acc"]), numeric=True)]
              if "test_acc" in row and metric != "test_acc" else []),
            Cell(h.engineering(row.get("params")), numeric=True),
            Cell(h.engineering(row.get("macs")), numeric=True),
            factors,
            Cell(spec_html + f"<pre>{h.escape(chr(10).join(loads))}</pre>", trusted_html=True),
        ])
    headers = ["rank", "trial", f"{metric} (%)", *(["test_acc (%)"] if "test_acc" in top.columns and metric != "test_acc" else []),
               "params", "MACs", "factors", "spec and how to load it"]
    intro = (f'<p class="muted">The {len(top)} best complete trials by {h.escape(metric)} '
             f"({'higher' if run.ranking_maximize else 'lower'} is better), the study objective. Ranking by test accuracy "
             "would select on the test set, so the test accuracy is only reported. rank=0 is the best. "
             "Load one with <code>import models</code> and the line shown.</p>")
    return intro + h.table(headers, rows, testid="top-k")


def _retrained_section(run: RunData, tables: ReportTables) -> str:
    summary = tables.retrained
    rows = []
    for row in summary.to_dict("records"):
        key = f"retrained.{row['arch_key']}.test_acc"
        rows.append([
            Cell(f"<code>{h.escape(row['arch_key'])}</code>", trusted_html=True),
            row.get("source_trial_id", "—"),
            Cell(str(row["n"]), key=f"{key}.n", value=int(row["n"]), numeric=True),
            Cell(f"{h.keyed_span(h.percent(row['mean']), key + '.mean', float(row['mean']))} ± "
                 f"{h.keyed_span(h.percent(row['std']), key + '.std', float(row['std']))}", numeric=True, trusted_html=True),
        ])
    return (f'<p class="muted">Top architectures retrained from scratch with several seeds ({runfolder.RETRAIN_PARQUET}): test '
            "accuracy as mean ± std (sample std; — with a single seed) over n seeds.</p>"
            + h.table(["arch_key", "source trial", "n seeds", "test accuracy (%)"], rows, testid="retrained"))


def _message_html(message: Any) -> str:
    """The first line of a message, with the rest (a traceback) folded away."""
    text = message.strip() if isinstance(message, str) else ""
    if not text:
        return '<span class="muted">(no message)</span>'
    first, _, rest = text.partition("\n")
    if not rest.strip():
        return f"<code>{h.escape(first)}</code>"
    return f"<details><summary><code>{h.escape(first)}</code></summary><pre>{h.escape(rest)}</pre></details>"


def _failed_section(run: RunData, tables: ReportTables) -> str:
    failed = tables.failed
    if failed.empty:
        return h.note("No trial failed or was pruned.")
    message_rows = [[Cell(row.status, css=f"status-{row.status}"), row.message, Cell(h.count(row.trials), numeric=True)]
                    for row in tables.failure_messages.itertuples()]
    columns = list(failed.columns)
    shown = failed.head(MAX_FAILED_ROWS)
    rows = []
    for row in shown.to_dict("records"):
        cells = []
        for column in columns:
            value = row[column]
            if column == "status":
                cells.append(Cell(str(value), css=f"status-{value}"))
            elif column == "error":
                cells.append(Cell(_message_html(value), trusted_html=True))
            else:
                cells.append(h.value_text(value))
        rows.append(cells)
    more = (f'<p class="muted">Showing the first {MAX_FAILED_ROWS} of {len(failed)}; all are in '
            f"{TABLES_DIR}/failed.csv.</p>") if len(failed) > MAX_FAILED_ROWS else ""
    return ("<h3>Messages by frequency</h3>" + h.table(["status", "message (first line)", "trials"], message_rows,
                                                        testid="failure-messages")
            + f"<h3>Trials ({len(failed)})</h3>" + h.table(columns, rows, testid="failed") + more)


# Sections in page order: (anchor, title, renderer, shown-when).
SECTIONS: list[tuple[str, str, Callable[[RunData, ReportTables], str], Callable[[RunData, ReportTables], bool]]] = [
    ("accuracy-vs-cost", "Accuracy against MACs and params", _scatter_section, lambda run, t: True),
    ("ablation", "Ablation", _ablation_section, lambda run, t: True),
    ("simple-effects", "Simple effects and interactions", simple_effects_section, lambda run, t: t.factorial.crossed),
    ("seeds", "Seeds needed", seeds_section, lambda run, t: bool(t.factorial.factors)),
    ("error-edf", "Error EDFs", _edf_section, lambda run, t: True),
    ("learning-curves", "Learning curves", _curves_section, lambda run, t: True),
    ("budget-fidelity", "Does the cheap budget predict the expensive one?", fidelity_section, lambda run, t: True),
    ("replay", "Replaying search strategies on the recorded curves", replay_section, lambda run, t: True),
    ("importances", "Parameter importances", _importance_section, lambda run, t: True),
    ("top", "Top architectures", _top_section, lambda run, t: True),
    ("retrained", "Retrained", _retrained_section, lambda run, t: t.retrained is not None),
    ("failed", "Failed and pruned trials", _failed_section, lambda run, t: True),
]
