"""Assemble report.html and its CSV tables from a run folder.

`summarize` computes every table (no figures); `build_report` adds the
figures, renders the page and writes it with the tables beside it. Each
section says, in the page, what it could not compute and why.
"""

from __future__ import annotations

import os
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any, Callable

import numpy as np
import pandas as pd

from reports import _html as h
from reports._html import Cell
from reports._importance import Importances, param_importances
from reports._load import Factor, ReportError, RunData, load_run
from reports._stats import (BOOTSTRAP_RESAMPLES, BOOTSTRAP_SEED, VERDICTS, ablation_table, accuracy_values,
                            failed_trials, failure_messages, metric_name, pareto_table, retrained_summary,
                            status_counts, top_trials)

DEFAULT_TOP_K = 5
# The page lists at most this many failed/pruned trials; the CSV has all of them.
MAX_FAILED_ROWS = 200
TABLES_DIR = "report_tables"
COST_COLUMNS = ("macs", "params")


@dataclass
class ReportTables:
    """Every table of a report, computed from one run folder without drawing anything."""

    run: RunData
    status_counts: pd.DataFrame
    ablation: pd.DataFrame
    pareto: dict[str, pd.DataFrame]
    top_k: pd.DataFrame
    failed: pd.DataFrame
    failure_messages: pd.DataFrame
    retrained: pd.DataFrame | None
    importances: Importances | None
    notes: list[str] = field(default_factory=list)

    def csv_tables(self) -> dict[str, pd.DataFrame]:
        """The tables the page shows, by the CSV name they are written under."""
        tables = {"status_counts": self.status_counts, "ablation": self.ablation, "top_k": self.top_k,
                  "failed": self.failed, "failure_messages": self.failure_messages}
        tables.update({f"pareto_{cost}": front for cost, front in self.pareto.items()})
        if self.retrained is not None:
            tables["retrained"] = self.retrained
        if self.importances is not None and self.importances.table is not None:
            tables["importances"] = self.importances.table
        return tables


def _is_searched(run: RunData) -> bool:
    return run.info.get("strategy") == "optuna"


def _sample_size_notes(run: RunData) -> list[str]:
    n = len(accuracy_values(run, run.headline_metric))
    if n == 1:
        return ["Only one trial completed: it is shown, but a spread, a confidence interval or a test needs at "
                "least two trials per level, so none is computed."]
    return []


def summarize(run: RunData, top_k: int = DEFAULT_TOP_K) -> ReportTables:
    """Compute every table of the report from a loaded run (the statistics without figures or HTML)."""
    failed = failed_trials(run)
    return ReportTables(
        run=run,
        status_counts=status_counts(run.results),
        ablation=ablation_table(run),
        pareto={cost: pareto_table(run, cost) for cost in COST_COLUMNS if cost in run.results.columns},
        top_k=top_trials(run, top_k) if run.ranking_metric in run.results.columns else pd.DataFrame(),
        failed=failed,
        failure_messages=failure_messages(failed),
        retrained=retrained_summary(run.retrain) if run.retrain is not None else None,
        importances=param_importances(run) if _is_searched(run) else None,
        notes=_sample_size_notes(run),
    )


def _figures():
    """The figure module, imported on first use: seaborn and matplotlib take seconds to import,
    and neither `summarize` nor the CLI's error paths need them."""
    from reports import _figures as figures

    return figures


# ---------------------------------------------------------------- formatting


def _duration(seconds: Any) -> str:
    try:
        seconds = float(seconds)
    except (TypeError, ValueError):
        return "unknown"
    if np.isnan(seconds):
        return "unknown"
    hours, rest = divmod(int(round(seconds)), 3600)
    minutes, secs = divmod(rest, 60)
    return f"{hours} h {minutes:02d} min {secs:02d} s" if hours else f"{minutes} min {secs:02d} s"


def _value(mapping: Any, *path: str, default: str = "unknown") -> Any:
    for key in path:
        if not isinstance(mapping, dict) or key not in mapping or mapping[key] is None:
            return default
        mapping = mapping[key]
    return mapping


def _seeds_text(seeds: Any) -> str:
    if not isinstance(seeds, list):
        return "unknown"
    if len(seeds) > 8:
        return f"{', '.join(map(str, seeds[:3]))}, …, {seeds[-1]} ({len(seeds)} seeds)"
    return ", ".join(map(str, seeds))


def _load_path(run: RunData) -> str:
    """How a reader names the run folder in `models.load`: runs/<name> when it lives in a runs/ folder."""
    directory = run.run_dir.resolve()
    return f"runs/{directory.name}" if directory.parent.name == "runs" else str(directory)


# ---------------------------------------------------------------- header


def _banners(run: RunData, tables: ReportTables) -> list[str]:
    info, banners = run.info, []
    dataset = info.get("dataset") if isinstance(info.get("dataset"), dict) else {}
    if dataset.get("embedded_sample"):
        banners.append(h.banner(
            f"EMBEDDED SAMPLE, NOT THE FULL DATASET: trained on the {dataset.get('n_train', '?')}-image sample of "
            f"{dataset.get('name', 'the dataset')} bundled with resnas. Accuracies are far below full-data results; "
            "use them only to compare levels with each other."
            + (f" Why: {dataset['fallback_reason']}" if dataset.get("fallback_reason") else ""), "danger"))
    if dataset.get("name") == "synthetic":
        banners.append(h.banner("SYNTHETIC DATA: these accuracies say nothing about real images.", "danger"))
    if info and not info.get("finished"):
        banners.append(h.banner("The study has not finished (run.json has no finish time): "
                                "the tables cover the trials recorded so far."))
    n_complete = int((run.results["status"] == "complete").sum())
    if len(run.results) == 0:
        banners.append(h.banner("results.parquet holds no trial: there is nothing to report yet.", "danger"))
    elif len(accuracy_values(run, run.headline_metric)) == 0:
        banners.append(h.banner(
            f"No trial completed with an accuracy ({n_complete} complete, {len(run.results) - n_complete} failed or "
            "pruned): no statistic, figure or ranking can be computed. See the failed and pruned trials below.",
            "danger"))
    if run.headline_metric != "test_acc":
        banners.append(h.banner(f"No test accuracy was recorded: figures and the findings use "
                                f"{metric_name(run.headline_metric)} instead."))
    return banners


def _metadata(run: RunData, tables: ReportTables) -> str:
    info = run.info
    dataset = _value(info, "dataset", default={})
    budget = _value(info, "budget", default={})
    hardware = _value(info, "hardware", default={})
    versions = _value(info, "versions", default={})
    sizes = ", ".join(f"{_value(dataset, key)} {key[2:]}" for key in ("n_train", "n_val", "n_test"))
    sample = " — EMBEDDED SAMPLE" if _value(dataset, "embedded_sample", default=False) else " — full dataset"
    seeds = _value(budget, "seeds", default=None)
    gpus = _value(hardware, "gpus", default=[])
    rows = [
        ("Strategy", _value(info, "strategy")),
        ("Dataset", f"{_value(dataset, 'name')}{sample if dataset else ''} ({sizes})" if dataset else "unknown"),
        ("Budget", f"epochs: {_value(budget, 'epochs')}; trials planned: {_value(budget, 'trials')}, recorded: "
                   f"{len(run.results)}; seeds: {_seeds_text(seeds)}"),
        ("Hardware", f"{_value(hardware, 'cpu')} ({_value(hardware, 'cpus')} CPUs); GPUs: "
                     f"{', '.join(map(str, gpus)) if gpus else 'none'}; host {_value(hardware, 'hostname')}"),
        ("Versions", ", ".join(f"{package} {_value(versions, package)}"
                               for package in ("torch", "ray", "optuna", "python", "resnas"))),
        ("Started / finished", f"{_value(info, 'started')} / {_value(info, 'finished', default='not finished')}"),
        ("Wall time", _duration(info.get("wall_s"))),
        ("Device-hours", (f"{float(info['device_hours']):.3f} {info.get('device_hours_unit', '')}".rstrip()
                          if isinstance(info.get("device_hours"), (int, float)) else "unknown")),
        ("Ranking objective", f"{run.ranking_metric} ({'max' if run.ranking_maximize else 'min'})"),
    ]
    items = "".join(f"<dt>{h.escape(label)}</dt><dd>{h.escape(text)}</dd>" for label, text in rows)
    counts = tables.status_counts
    count_rows = [[row.status, Cell(h.count(row.trials), key=f"counts.{row.status}", value=int(row.trials), numeric=True)]
                  for row in counts.itertuples()]
    return (f'<dl class="meta">{items}</dl><h3>Trials by status</h3>'
            f'<div style="max-width:360px">{h.table(["status", "trials"], count_rows, testid="status-counts")}</div>')


def _findings(run: RunData, tables: ReportTables) -> str:
    """The study's answer at a glance: each level against its reference, in words."""
    lines = []
    metric = run.headline_metric
    ablation = tables.ablation
    if len(accuracy_values(run, metric)) == 0:
        return ('<div class="findings"><b>At a glance</b><ul><li>No trial completed with an accuracy: '
                "there is no answer to the study question yet.</li></ul></div>")
    compared = ablation[(ablation["metric"] == metric) & ~ablation["is_reference"]]
    for row in compared.head(12).itertuples():
        factor = next(f for f in run.factors if f.name == row.factor)
        if row.verdict in ("higher", "lower", "within noise"):
            lines.append(
                f"<b>{h.escape(row.factor)} = {h.escape(row.level)}</b> vs {h.escape(factor.reference)}: "
                f"{h.signed_points(row.diff)} pp {h.escape(metric_name(metric))} (95% CI {h.signed_points(row.diff_ci_low)} "
                f"to {h.signed_points(row.diff_ci_high)}; Welch p = {h.p_value_text(row.p_value)}; n = {row.n} vs "
                f"{_reference_n(ablation, row)}) — {_verdict_html(row.verdict)}.")
        else:
            lines.append(f"<b>{h.escape(row.factor)} = {h.escape(row.level)}</b> vs {h.escape(factor.reference)}: "
                         f"{_verdict_html(row.verdict)} "
                         f"(n = {row.n} vs {_reference_n(ablation, row)}); no comparison is possible.")
    for factor in run.categorical_factors:
        if len(factor.levels) == 1:
            lines.append(f"<b>{h.escape(factor.name)}</b> has a single level ({h.escape(factor.levels[0])}): "
                         "there is nothing to compare it with.")
    if len(compared) > 12:
        lines.append(f"… and {len(compared) - 12} more comparisons in the ablation table.")
    if not tables.top_k.empty:
        best = tables.top_k.iloc[0]
        extra = f", {metric_name('test_acc')} {h.percent(best['test_acc'])}%" if "test_acc" in best and run.ranking_metric != "test_acc" else ""
        cost = f", {h.engineering(best['params'])} params" if "params" in best else ""
        lines.append(f"Best trial by {h.escape(run.ranking_metric)}: <code>{h.escape(best['trial_id'])}</code> — "
                     f"{h.percent(best[run.ranking_metric])}%{extra}{cost}.")
    if not lines:
        reason = ("the study has no categorical factor with two or more levels" if not run.categorical_factors
                  else "no level could be compared with its reference")
        lines.append(f"No comparison to report: {h.escape(reason)}.")
    return '<div class="findings"><b>At a glance</b><ul>' + "".join(f"<li>{line}</li>" for line in lines) + "</ul></div>"


def _verdict_html(verdict: str) -> str:
    return f'<span class="verdict {_verdict_class(verdict)}">{h.escape(verdict)}</span>'


def _verdict_class(verdict: str) -> str:
    return "verdict-" + verdict.replace(" ", "-")


def _reference_n(ablation: pd.DataFrame, row: Any) -> int:
    reference = ablation[(ablation["factor"] == row.factor) & (ablation["metric"] == row.metric) & ablation["is_reference"]]
    return int(reference["n"].iloc[0]) if len(reference) else 0


def _header(run: RunData, tables: ReportTables, sections: list[tuple[str, str]]) -> str:
    question = run.info.get("question")
    nav = "".join(f'<a href="#{h.escape(anchor)}">{h.escape(title)}</a>' for anchor, title in sections)
    notes = "".join(h.note(text) for text in run.notes + tables.notes)
    question_html = (f'<p class="question">{h.escape(question)}</p>' if question
                     else '<p class="question muted">(no study question recorded in run.json)</p>')
    return (f"<header><h1>Study: {h.escape(run.name)}</h1>{question_html}<nav>{nav}</nav></header>"
            + "".join(_banners(run, tables)) + _findings(run, tables) + _metadata(run, tables) + notes)


# ---------------------------------------------------------------- sections


def _colour_factor(run: RunData) -> Factor | None:
    """The first categorical factor, else the first numeric one, else none."""
    return (run.categorical_factors or run.factors or [None])[0]


def _scatter_section(run: RunData, tables: ReportTables) -> str:
    metric = run.headline_metric
    scored = accuracy_values(run, metric)
    if scored.empty:
        return h.note("No complete trial with an accuracy: nothing to plot.")
    colour = _colour_factor(run)
    parts, details = [], []
    for cost in COST_COLUMNS:
        if cost not in scored.columns:
            parts.append(h.note(f"results.parquet has no {cost} column: no accuracy-vs-{cost} figure."))
            continue
        positive = int((pd.to_numeric(scored[cost], errors="coerce") > 0).sum())
        if positive == 0:
            parts.append(h.note(f"No complete trial has both {metric} and a positive {cost}: no figure."))
            continue
        parts.append(h.figure(_figures().accuracy_vs_cost(run, cost, colour), f"{metric} against {cost}"))
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
    return f'<div class="grid">{"".join(parts)}</div><p class="muted">{h.escape(caption)}</p>' + "".join(details)


def _ablation_legend() -> str:
    verdicts = "".join(f"<li>{_verdict_html(name)}: {h.escape(meaning)}</li>" for name, meaning in VERDICTS.items())
    return (f'<p class="muted">Accuracies in %. Δ = level mean − reference mean, in percentage points. 95% CIs are '
            f"percentile bootstrap intervals ({BOOTSTRAP_RESAMPLES} resamples, seed {BOOTSTRAP_SEED}) of the mean and of the "
            "difference of means (each level resampled on its own). p: Welch's two-sided t-test, not corrected for "
            "multiple comparisons. Each factor pools the trials of every level of the other factors (marginal means). "
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
        parts.append(h.note("results.parquet has neither test_acc nor val_acc_best: there is no ablation table."))
        return "".join(parts)
    if (ablation["n"] == 0).all():
        parts.append(h.note("No complete trial has an accuracy: there is no statistic to show for any level."))
        return "".join(parts)
    parts.append(_ablation_legend())
    headers = ["level", "accuracy", "n", "mean", "std", "95% CI", "Δ vs ref (pp)", "95% CI of Δ", "p (Welch)", "verdict"]
    for factor in run.categorical_factors:
        rows_of_factor = ablation[ablation["factor"] == factor.name]
        parts.append(f"<h3>{h.escape(factor.name)} <span class=\"muted\">(reference: {h.escape(factor.reference)}; "
                     f"levels from {h.escape(factor.source)})</span></h3>")
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
        number("p_value", h.p_value_text(row.p_value)),
        Cell(row.verdict, key=f"{key}.verdict", css=f"verdict {_verdict_class(row.verdict)}"),
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
    return _per_factor_figures(run, _figures().error_edf, "error EDF") + f'<p class="muted">{h.escape(caption + single)}</p>'


def _curves_section(run: RunData, tables: ReportTables) -> str:
    if run.curves is None:
        return h.note("curves.parquet is missing: no learning curves.")
    complete_ids = set(run.complete["trial_id"])
    if not run.curves["trial_id"].isin(complete_ids).any():
        return h.note("curves.parquet has no epoch of a complete trial: no learning curves.")
    caption = ("Mean validation accuracy per epoch over the complete trials of each level; the band is ±1 standard "
               "deviation across trials (none with a single trial). Failed and pruned trials are left out, since "
               "their curves stop early and would bias the later epochs.")
    return _per_factor_figures(run, _figures().learning_curve_figure, "learning curves") + f'<p class="muted">{h.escape(caption)}</p>'


def _importance_section(run: RunData, tables: ReportTables) -> str:
    result = tables.importances
    if result is None:
        strategy = run.info.get("strategy")
        known = f"This is a {strategy} study" if strategy else "run.json gives no strategy, so this is not known to be"
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
            return h.note(f"results.parquet has no {run.ranking_metric} column: trials cannot be ranked.")
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
    return ('<p class="muted">Top architectures retrained from scratch with several seeds (retrain.parquet): test '
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
    ("error-edf", "Error EDFs", _edf_section, lambda run, t: True),
    ("learning-curves", "Learning curves", _curves_section, lambda run, t: True),
    ("importances", "Parameter importances", _importance_section, lambda run, t: True),
    ("top", "Top architectures", _top_section, lambda run, t: True),
    ("retrained", "Retrained", _retrained_section, lambda run, t: t.retrained is not None),
    ("failed", "Failed and pruned trials", _failed_section, lambda run, t: True),
]


def render_page(tables: ReportTables) -> str:
    """The full HTML document of a report, figures included."""
    run = tables.run
    shown = [(anchor, title, render) for anchor, title, render, when in SECTIONS if when(run, tables)]
    body = [_header(run, tables, [(anchor, title) for anchor, title, _ in shown])]
    body += [h.section(anchor, title, render(run, tables)) for anchor, title, render in shown]
    body.append(f'<footer class="muted"><p>Built by <code>python -m reports.build</code> from '
                f"{h.escape(run.run_dir.resolve())}. Every table is also in {TABLES_DIR}/*.csv beside this file "
                "(accuracies there are fractions, not percentages).</p></footer>")
    return h.page(f"resnas report — {run.name}", "".join(body))


def _write_atomically(path: Path, text: str) -> None:
    temporary = path.with_name(f".{path.name}.tmp")
    temporary.write_text(text, encoding="utf-8")
    os.replace(temporary, path)


def write_tables(tables: ReportTables, directory: Path) -> None:
    """Write each table the page shows as <name>.csv, removing CSVs of an earlier build."""
    directory.mkdir(exist_ok=True)
    for stale in directory.glob("*.csv"):
        stale.unlink()
    for name, frame in tables.csv_tables().items():
        frame.to_csv(directory / f"{name}.csv", index=False)


def build_report(run_dir: str | Path, top_k: int = DEFAULT_TOP_K) -> Path:
    """Write run_dir/report.html and run_dir/report_tables/*.csv; return the path of report.html."""
    if not isinstance(top_k, int) or top_k < 1:
        raise ReportError(f"top_k: got {top_k!r}; allowed: an integer >= 1")
    run = load_run(run_dir)
    tables = summarize(run, top_k)
    html_text = render_page(tables)
    report_path = run.run_dir / "report.html"
    try:
        write_tables(tables, run.run_dir / TABLES_DIR)
        _write_atomically(report_path, html_text)
    except OSError as error:
        raise ReportError(f"{error.filename or report_path}: cannot write the report ({error.strerror or error})") from None
    return report_path
