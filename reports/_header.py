"""The top of a report page: the study question, loud banners, the answer at a glance, and what was run."""

from __future__ import annotations

from collections import Counter
from typing import Any

import numpy as np
import pandas as pd

import runfolder
from reports import _html as h
from reports._answer import matching_text
from reports._html import Cell, verdict_html
from reports._load import RunData
from reports._primary import command_lines, primary_answers, resolve_clause
from reports._stats import accuracy_values, metric_name
from reports._tables import ReportTables

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


# ---------------------------------------------------------------- header


def _live_banner(run: RunData, refresh_s: int) -> str:
    """"In progress: k of N trials", on the page the runner rebuilds while the study runs."""
    errors = run.results["error"].fillna("").astype(str) if "error" in run.results.columns else pd.Series(dtype=str)
    # Samples the searcher rejected before training do not count against the budget (search._runner).
    finished = int(len(run.results) - errors.str.startswith(runfolder.REJECTED_PREFIX).sum())
    total = _value(run.info, "budget", "trials", default="?")
    return ('<div class="banner warn" role="status" data-testid="live-banner">IN PROGRESS: '
            f'{h.keyed_span(str(finished), "live.finished", finished)} of {h.keyed_span(str(total), "live.total", total)} '
            f"trials finished. The study is still running: this page reloads itself every {int(refresh_s)} s, and the "
            "final report replaces it when the study ends. Numbers will change.</div>")


def _banners(run: RunData, tables: ReportTables, live_refresh_s: int | None = None) -> list[str]:
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
    if live_refresh_s:
        banners.append(_live_banner(run, live_refresh_s))
    elif info and not info.get("finished"):
        banners.append(h.banner(f"The study has not finished ({runfolder.RUN_JSON} has no finish time): "
                                "the tables cover the trials recorded so far."))
    n_complete = int((run.results["status"] == "complete").sum())
    if len(run.results) == 0:
        banners.append(h.banner(f"{runfolder.RESULTS_PARQUET} holds no trial: there is nothing to report yet.", "danger"))
    elif len(accuracy_values(run, run.headline_metric)) == 0:
        banners.append(h.banner(
            f"No trial completed with an accuracy ({n_complete} complete, {len(run.results) - n_complete} failed or "
            "pruned): no statistic, figure or ranking can be computed. See the failed and pruned trials below.",
            "danger"))
    if run.headline_metric != "test_acc":
        banners.append(h.banner(f"No test accuracy was recorded: figures and the findings use "
                                f"{metric_name(run.headline_metric)} instead."))
    return banners


def _reused_text(results: pd.DataFrame) -> str | None:
    """How many trials were taken from earlier runs (search.run --reuse) instead of trained here, and from which."""
    if runfolder.REUSED_FROM not in results.columns:  # run folders written before reuse existed
        return None
    sources = (runfolder.reused_source({runfolder.REUSED_FROM: cell}) for cell in results[runfolder.REUSED_FROM])
    folders = Counter(source[0] for source in sources if source is not None)
    if not folders:
        return None
    where = "; ".join(f"{count} from {folder}" for folder, count in folders.most_common())
    return (f"{sum(folders.values())} of {len(results)} trials were not trained in this run but taken from earlier "
            f"runs that trained the same architecture with the same settings, seed and data ({where}); the "
            f"{runfolder.REUSED_FROM} column names each one's source")


def _packed_text(budget: Any) -> str:
    """"; up to 4 seeds of a point trained as one model per trial (search.pack_seeds; ...)" where search.pack_seeds
    packed them; empty otherwise."""
    pack = budget.get("pack_seeds") if isinstance(budget, dict) else None
    if not isinstance(pack, int) or isinstance(pack, bool) or pack < 2:
        return ""
    return (f"; up to {pack} seeds of a point trained as one model per trial (search.pack_seeds; each seed its own "
            f"row, device time counted once per trial)")


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
                   f"{len(run.results)}; seeds: {_seeds_text(seeds)}{_packed_text(budget)}"),
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
    reused = _reused_text(run.results)
    if reused:
        rows.insert(3, ("Reused trials", reused))
    items = "".join(f"<dt>{h.escape(label)}</dt><dd>{h.escape(text)}</dd>" for label, text in rows)
    counts = tables.status_counts
    count_rows = [[row.status, Cell(h.count(row.trials), key=f"counts.{row.status}", value=int(row.trials), numeric=True)]
                  for row in counts.itertuples()]
    return (f'<dl class="meta">{items}</dl><h3>Trials by status</h3>'
            f'<div style="max-width:360px">{h.table(["status", "trials"], count_rows, testid="status-counts")}</div>')


# The answer at a glance lists at most this many pooled and this many simple-effect lines.
MAX_POOLED_LINES = 12
MAX_SIMPLE_LINES = 8


def _interactions_found(run: RunData, tables: ReportTables) -> pd.DataFrame:
    """The pairs of factors whose interaction the two-way ANOVA found on the headline accuracy."""
    interactions = tables.factorial.interactions
    return interactions[(interactions["metric"] == run.headline_metric) & (interactions["verdict"] == "interaction")]


def _interacting_factors(run: RunData, tables: ReportTables) -> set[str]:
    found = _interactions_found(run, tables)
    return set(found["factor_a"]) | set(found["factor_b"])


def _pooled_lines(run: RunData, tables: ReportTables, interacting: set[str] = frozenset()) -> list[str]:
    """Each level against its reference pooled over the other factors; a factor that interacts says so first."""
    metric, ablation, lines = run.headline_metric, tables.ablation, []
    compared = ablation[(ablation["metric"] == metric) & ~ablation["is_reference"]]
    for row in compared.head(MAX_POOLED_LINES).itertuples():
        factor = next(f for f in run.factors if f.name == row.factor)
        others = [other.name for other in tables.factorial.factors if other.name != factor.name]
        pooled = f" (pooled over {h.escape(', '.join(others))})" if tables.factorial.crossed and others else ""
        name = f"<b>{h.escape(row.factor)} = {h.escape(row.level)}</b> vs {h.escape(factor.reference)}{pooled}"
        if pooled and row.factor in interacting:
            name = "<i>Pooled across an interaction (read the simple effects above)</i>: " + name
        if row.verdict in ("higher", "lower", "within noise"):
            lines.append(
                f"{name}: {h.signed_points(row.diff)} pp {h.escape(metric_name(metric))} (95% CI "
                f"{h.signed_points(row.diff_ci_low)} to {h.signed_points(row.diff_ci_high)}; {h.escape(row.test)} "
                f"p = {h.p_value_text(row.p_value)}, Holm p = {h.p_value_text(row.p_adjusted)}; n = {row.n} vs "
                f"{_reference_n(ablation, row)}) — {verdict_html(row.verdict)}.")
        else:
            lines.append(f"{name}: {verdict_html(row.verdict)} (n = {row.n} vs {_reference_n(ablation, row)}); "
                         "no comparison is possible.")
    if len(compared) > MAX_POOLED_LINES:
        lines.append(f"… and {len(compared) - MAX_POOLED_LINES} more comparisons in the ablation table.")
    return lines


def _factorial_lines(run: RunData, tables: ReportTables) -> list[str]:
    """Interactions found, the simple effects with a verdict, and how many are within noise."""
    metric, factorial, lines = run.headline_metric, tables.factorial, []
    for row in _interactions_found(run, tables).itertuples():
        lines.append(f"<b>Interaction: {h.escape(row.factor_a)} × {h.escape(row.factor_b)}</b> on "
                     f"{h.escape(metric_name(metric))} (two-way ANOVA p = {h.p_value_text(row.p_value)}, partial η² = "
                     f"{row.effect_size:.2f}): the pooled lines of these factors average effects that differ; the "
                     "simple effects say where each holds.")
    if not factorial.crossed:
        return lines
    simple = factorial.simple_effects[factorial.simple_effects["metric"] == metric]
    decided = simple[simple["verdict"].isin(["higher", "lower"])]
    for row in decided.head(MAX_SIMPLE_LINES).itertuples():
        lines.append(f"Simple effect at {h.escape(row.within.replace('; ', ', '))}: <b>{h.escape(row.factor)} = "
                     f"{h.escape(row.level)}</b> vs {h.escape(row.reference)}: {h.signed_points(row.diff)} pp "
                     f"({h.escape(row.test)}, Holm p = {h.p_value_text(row.p_adjusted)}) — {verdict_html(row.verdict)}.")
    if len(decided) > MAX_SIMPLE_LINES:
        lines.append(f"… and {len(decided) - MAX_SIMPLE_LINES} more simple effects with a verdict.")
    noise = int((simple["verdict"] == "within noise").sum())
    if noise:
        lines.append(f"{noise} of {len(simple)} simple effects are within noise; the seeds each needs to resolve "
                     f"{tables.seed_plan.target_effect * 100:.3g} pp are under Seeds needed.")
    return lines


def _findings(run: RunData, tables: ReportTables) -> str:
    """The study's answer at a glance: each level against its reference, in words."""
    if len(accuracy_values(run, run.headline_metric)) == 0:
        return ('<div class="findings"><b>At a glance</b><ul><li>No trial completed with an accuracy: '
                "there is no answer to the study question yet.</li></ul></div>")
    matched = matching_text(run)
    interacting = _interacting_factors(run, tables)
    pooled, factorial = _pooled_lines(run, tables, interacting), _factorial_lines(run, tables)
    # Where factors interact, the pooled lines average effects that differ: the simple effects come first.
    lines = ([h.escape(matched)] if matched else []) + (factorial + pooled if interacting else pooled + factorial)
    for factor in run.categorical_factors:
        if len(factor.levels) == 1:
            lines.append(f"<b>{h.escape(factor.name)}</b> has a single level ({h.escape(factor.levels[0])}): "
                         "there is nothing to compare it with.")
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


def _primary_block(run: RunData, tables: ReportTables) -> str:
    """The answer to the study's question (report.primary) before everything else; '' where the study names none."""
    primary = primary_answers(run, tables.ablation, tables.factorial, lambda: tables.seed_plan)
    if primary is None:
        return ""
    metric, lines = run.headline_metric, []
    # The table the answer reads, stopped by its time budget, is empty: say so rather than "fewer than 2 trials".
    stopped = tables.over_budget.get("factorial" if tables.factorial.crossed else "ablation")
    for answer in primary.answers:
        name = f"<b>{h.escape(answer.factor)} = {h.escape(answer.level)}</b> vs {h.escape(answer.reference)}"
        if answer.problem:
            lines.append(f"{name}: {h.escape((stopped or answer.problem).rstrip('.'))}.")
            continue
        for row in answer.rows.itertuples():
            where = f" at {h.escape(row.within.replace('; ', ', '))}" if row.within else ""
            resolve = resolve_clause(row, primary.plan)
            lines.append(
                f"{name}{where}: {h.signed_points(row.diff)} pp {h.escape(metric_name(metric))} (95% CI "
                f"{h.signed_points(row.diff_ci_low)} to {h.signed_points(row.diff_ci_high)}; {h.escape(row.test)}, "
                f"Holm p = {h.p_value_text(row.p_adjusted)}; n = {row.n}) — {verdict_html(row.verdict)}"
                + (f"; {h.escape(resolve)}." if resolve else "."))
        if answer.scope:
            lines.append(f"<i>{h.escape(answer.scope[0].upper() + answer.scope[1:])}.</i>")
    if primary.more is not None:
        first, *command = command_lines(primary.more, primary.plan.target_effect)
        lines.append(h.escape(first[0].upper() + first[1:]) + "".join(f" <code>{h.escape(text)}</code>" for text in command))
    return ('<div class="findings" data-testid="primary-answer"><b>The study\'s question, answered</b><ul>'
            + "".join(f"<li>{line}</li>" for line in lines) + "</ul></div>")


def _reference_n(ablation: pd.DataFrame, row: Any) -> int:
    reference = ablation[(ablation["factor"] == row.factor) & (ablation["metric"] == row.metric) & ablation["is_reference"]]
    return int(reference["n"].iloc[0]) if len(reference) else 0


def header(run: RunData, tables: ReportTables, sections: list[tuple[str, str]],
           live_refresh_s: int | None = None) -> str:
    """The page header: title, question, navigation, banners, the question's answer (report.primary), findings,
    metadata and notes."""
    question = run.info.get("question")
    nav = "".join(f'<a href="#{h.escape(anchor)}">{h.escape(title)}</a>' for anchor, title in sections)
    notes = "".join(h.note(text) for text in run.notes + tables.notes)
    question_html = (f'<p class="question">{h.escape(question)}</p>' if question
                     else f'<p class="question muted">(no study question recorded in {runfolder.RUN_JSON})</p>')
    return (f"<header><h1>Study: {h.escape(run.name)}</h1>{question_html}<nav>{nav}</nav></header>"
            + "".join(_banners(run, tables, live_refresh_s)) + _primary_block(run, tables) + _findings(run, tables)
            + _metadata(run, tables) + notes)
