"""The page sections of the factorial statistics and the seed plan, and the interaction warnings of the others."""

from __future__ import annotations

from typing import Any

import numpy as np
import pandas as pd

from reports import _html as h
from reports._factorial import INTERACTION_TEST, INTERACTION_VERDICTS
from reports._html import Cell, verdict_class, verdict_html
from reports._load import RunData
from reports._power import plan_sentence
from reports._stats import ALPHA, metric_name
from reports._tables import TABLES_DIR, ReportTables

# The page lists at most this many sentences of the seed plan; power.csv has every comparison.
MAX_PLAN_SENTENCES = 20
# A cell-means table longer than this is folded away under a <details>.
MAX_OPEN_CELL_ROWS = 40

DECISION_RULE = (
    "Each row is one t-test: paired t on the seeds both groups ran when the two cells differ only in the compared "
    "factor (trials with one seed share data order and augmentation draws), Welch's t otherwise; the test column says "
    "which, and n counts pairs when paired. p is that test's two-sided p-value; Holm p adjusts it over the comparisons "
    f"of one factor and one metric (statsmodels multipletests, Holm). The verdict uses Holm p: higher or lower when "
    f"Holm p < {ALPHA:g}, else within noise. The 95% CI of Δ is the same test's own interval, unadjusted, so it "
    f"excludes 0 exactly when p < {ALPHA:g}: every higher or lower has its CI on that side of 0, and a CI that excludes 0 "
    "beside within noise (marked †) is a difference that does not survive Holm. Effect size d: Cohen's d_z (Δ / sd of "
    "the per-seed differences) when paired, Cohen's d (Δ / pooled sd) when not.")


def _points(value: Any) -> str:
    return h.signed_points(value)


def _ci_cell(row: Any, key: str) -> Cell:
    if not np.isfinite(row.diff_ci_low):
        return Cell("—", numeric=True)
    text = (f"[{h.keyed_span(_points(row.diff_ci_low), key + '.diff_ci_low', float(row.diff_ci_low))}, "
            f"{h.keyed_span(_points(row.diff_ci_high), key + '.diff_ci_high', float(row.diff_ci_high))}]")
    return Cell(text, numeric=True, trusted_html=True)


def verdict_cell(row: Any, key: str) -> Cell:
    """A verdict cell keyed `<key>.verdict`, with † where the unadjusted p alone would have called it."""
    verdict = h.escape(row.verdict)
    # † marks a CI that excludes 0 beside "within noise": p < ALPHA before Holm, not after.
    dagger = (f' <span title="p &lt; {ALPHA:g} before Holm, not after">†</span>'
              if row.verdict == "within noise" and np.isfinite(row.p_value) and row.p_value < ALPHA else "")
    return Cell(f'<span data-key="{h.escape(key)}.verdict">{verdict}</span>{dagger}',
                css=f"verdict {verdict_class(row.verdict)}", trusted_html=True)


def interaction_warning(tables: ReportTables, factor: str) -> str:
    """A warning banner when `factor` interacts with another on the headline metric; '' otherwise."""
    metric = tables.run.headline_metric
    found = tables.factorial.interacting(factor, metric)
    if found.empty:
        return ""
    partners = "; ".join(
        f"{row.factor_b if row.factor_a == factor else row.factor_a} (two-way ANOVA F = {row.statistic:.3g}, "
        f"p = {h.p_value_text(row.p_value)}, partial η² = {row.effect_size:.2f})" for row in found.itertuples())
    return h.banner(f"INTERACTION: the effect of {factor} on {metric_name(metric)} depends on {partners}. A comparison "
                    f"of {factor} pooled over these factors averages effects that differ; read the simple effects.")


def _interactions_html(tables: ReportTables) -> str:
    table = tables.factorial.interactions
    if table.empty:
        return h.note("Fewer than two factors with two or more levels: there is no pair to test for an interaction.")
    rows = []
    for row in table.itertuples():
        key = f"interaction.{row.factor_a}.{row.factor_b}.{row.metric}"
        testable = row.verdict != "not testable"
        rows.append([
            f"{row.factor_a} × {row.factor_b}", metric_name(row.metric),
            Cell(str(row.n), numeric=True),
            row.test,
            Cell(f"{row.statistic:.3g}" if testable else "—", key=f"{key}.statistic",
                 value=float(row.statistic), numeric=True),
            Cell(f"{row.df_num:g}, {row.df_den:g}" if testable else "—", numeric=True),
            Cell(h.p_value_text(row.p_value), key=f"{key}.p_value", value=float(row.p_value), numeric=True),
            Cell(f"{row.effect_size:.3f}" if testable else "—", key=f"{key}.effect_size",
                 value=float(row.effect_size), numeric=True),
            Cell(row.verdict, key=f"{key}.verdict", css=f"verdict {verdict_class(row.verdict)}"),
            row.reason or "",
        ])
    legend = "".join(f"<li>{verdict_html(name)}: {h.escape(meaning)}</li>" for name, meaning in INTERACTION_VERDICTS.items())
    return (f'<p class="muted">Test: {h.escape(INTERACTION_TEST)} of accuracy on both factors and their interaction, '
            "the other factors as main effects, and the seed as a block wherever every seed ran several cells (the "
            "test column says so); statsmodels ols + anova_lm, on the complete trials where both factors exist. "
            "Effect size: partial "
            "η² = SS(interaction) / (SS(interaction) + SS(residual)). The verdict uses this F-test's own p against "
            f"{ALPHA:g}, not adjusted: an interaction only sends the reader to the simple effects, and a missed one costs more "
            f'than an extra warning.</p><ul class="muted">{legend}</ul>'
            + h.table(["factors", "accuracy", "n", "test", "F", "df", "p", "partial η²", "verdict", "why not testable"], rows,
                      testid="interactions"))


def _simple_effects_html(run: RunData, tables: ReportTables, factor_name: str) -> str:
    metric = run.headline_metric
    simple = tables.factorial.simple_effects
    rows_of = simple[(simple["factor"] == factor_name) & (simple["metric"] == metric)]
    if rows_of.empty:
        return h.note(f"No simple effect of {factor_name} could be tested on {metric_name(metric)} (see the notes below).")
    rows, row_classes, previous = [], [], None
    for row in rows_of.itertuples():
        key = f"simple.{row.factor}.{row.level}.{row.within}.{row.metric}"
        rows.append([
            row.within if row.within != previous else "",
            f"{row.level} vs {row.reference}",
            Cell(row.test, key=f"{key}.test"),
            Cell(f"{row.n} vs {row.n_ref}" if not row.paired else f"{row.n} pairs", key=f"{key}.n", value=int(row.n),
                 numeric=True),
            Cell(_points(row.diff), key=f"{key}.diff", value=float(row.diff), numeric=True),
            _ci_cell(row, key),
            Cell(f"{row.effect_size:+.2f}" if np.isfinite(row.effect_size) else "—", key=f"{key}.effect_size",
                 value=float(row.effect_size), numeric=True),
            Cell(h.p_value_text(row.p_value), key=f"{key}.p_value", value=float(row.p_value), numeric=True),
            Cell(h.p_value_text(row.p_adjusted), key=f"{key}.p_adjusted", value=float(row.p_adjusted), numeric=True),
            verdict_cell(row, key),
        ])
        row_classes.append("group-start" if row.within != previous and previous is not None else "")
        previous = row.within
    headers = ["within", "comparison", "test", "n", "Δ (pp)", "95% CI of Δ", "d", "p", "Holm p", "verdict"]
    return h.table(headers, rows, row_classes, testid=f"simple-effects-{factor_name}")


def _cell_means_html(run: RunData, tables: ReportTables) -> str:
    metric = run.headline_metric
    cells = tables.factorial.cell_means
    cells = cells[cells["metric"] == metric]
    factors = tables.factorial.factors
    rows = []
    for row in cells.to_dict("records"):
        key = "cell." + ".".join(f"{factor.name}={row[factor.column]}" for factor in factors) + f".{metric}"
        ci = (f"[{h.percent(row['ci_low'])}, {h.percent(row['ci_high'])}]" if np.isfinite(row["ci_low"]) else "—")
        rows.append([*(str(row[factor.column]) for factor in factors),
                     Cell(str(row["n"]), key=f"{key}.n", value=int(row["n"]), numeric=True),
                     Cell(h.percent(row["mean"]), key=f"{key}.mean", value=float(row["mean"]), numeric=True),
                     Cell(h.percent(row["sd"]), numeric=True), Cell(ci, numeric=True)])
    table = h.table([*(factor.name for factor in factors), "n", "mean (%)", "sd (%)", "95% CI (%)"], rows,
                    testid="cell-means")
    intro = (f'<p class="muted">{h.escape(metric_name(metric).capitalize())} in every combination of levels that was '
             "run: complete trials only; 95% CI = mean ± t(0.975, n − 1) · sd / √n (none with fewer than 2 trials). "
             f"Both accuracies are in {TABLES_DIR}/cell_means.csv.</p>")
    if len(rows) > MAX_OPEN_CELL_ROWS:
        return intro + f"<details><summary>{len(rows)} cells</summary>{table}</details>"
    return intro + table


def simple_effects_section(run: RunData, tables: ReportTables) -> str:
    """Interactions, then each factor's simple effects within the other factors' levels, then the cell means."""
    factorial = tables.factorial
    metric = run.headline_metric
    parts = [f'<p class="muted">A pooled comparison averages a level\'s effect over the other factors\' levels. Here '
             "each level is compared with its reference within every combination of the other factors (a simple "
             f"effect), on {h.escape(metric_name(metric))}; {TABLES_DIR}/simple_effects.csv has both accuracies. "
             f"{h.escape(DECISION_RULE)}</p>",
             "<h3>Interactions</h3>", _interactions_html(tables)]
    for factor in factorial.factors:
        parts.append(f"<h3>{h.escape(factor.name)} within each combination of the other factors "
                     f'<span class="muted">(reference: {h.escape(factor.reference)})</span></h3>')
        parts.append(interaction_warning(tables, factor.name))
        parts.append(_simple_effects_html(run, tables, factor.name))
    parts += [h.note(text) for text in factorial.notes]
    parts += ["<h3>Cell means</h3>", _cell_means_html(run, tables)]
    return "".join(parts)


def _plan_rows(run: RunData, tables: ReportTables) -> pd.DataFrame:
    """The seed plan's rows on the headline metric, each with its simple effect's verdict."""
    plan = tables.seed_plan.table
    plan = plan[plan["metric"] == run.headline_metric]
    simple = tables.factorial.simple_effects
    keys = ["factor", "level", "reference", "within", "metric"]
    verdicts = simple[keys + ["verdict", "p_adjusted", "diff"]]
    return plan.merge(verdicts, on=keys, how="left")


def seeds_section(run: RunData, tables: ReportTables) -> str:
    """How many seeds each comparison needs to resolve the target effect, in words and as a table."""
    plan = tables.seed_plan
    if not tables.factorial.factors:
        return h.note("The study has no categorical factor with two or more levels: there is no comparison to plan.")
    rows = _plan_rows(run, tables)
    if rows.empty:
        return h.note("No comparison has 2 or more complete trials in both groups: the noise, and so the seeds "
                      "needed, cannot be estimated yet.")
    budget = (f"one trial holds {plan.devices_per_trial:g} device(s) (run.json budget.resources_per_trial)"
              if plan.device_unit != "trial-hours" else "run.json gives no resources per trial, so hours are trial-hours")
    intro = (f'<p class="muted">Target effect: {plan.target_effect * 100:.3g} pp, from {h.escape(plan.target_source)}. '
             f"Power {plan.power:.0%} at α = {ALPHA:g} (two-sided), from the same t-test as the verdict: statsmodels "
             "TTestPower on the sd of the per-seed differences when paired, TTestIndPower on the pooled sd (equal "
             "variances) when not. MDE: the smallest difference the current n detects with that power. Seeds needed: "
             "per level (pairs when paired) to detect the target effect. Device-hours: both compared cells at that many "
             f"seeds, at their trials' mean measured wall time; {h.escape(budget)}. The plan for a finished run: "
             "<code>python -m reports.plan RUN_DIR --effect 0.005</code>.</p>")
    sentences = [plan_sentence(row, row.verdict if isinstance(row.verdict, str) else None, plan)
                 for row in rows.itertuples()]
    more = (f"<li>… and {len(sentences) - MAX_PLAN_SENTENCES} more in the table below and in {TABLES_DIR}/power.csv."
            "</li>") if len(sentences) > MAX_PLAN_SENTENCES else ""
    words = "<ul>" + "".join(f"<li>{h.escape(text)}</li>" for text in sentences[:MAX_PLAN_SENTENCES]) + more + "</ul>"
    table_rows = []
    for row in rows.itertuples():
        key = f"power.{row.factor}.{row.level}.{row.within}.{row.metric}"
        table_rows.append([
            f"{row.factor}={row.level} vs {row.reference}", row.within or "—",
            "paired t" if row.paired else "Welch t",
            Cell(str(row.n), key=f"{key}.n", value=int(row.n), numeric=True),
            Cell(h.percent(row.sd_diff), key=f"{key}.sd_diff", value=float(row.sd_diff), numeric=True),
            Cell(h.percent(row.mde), key=f"{key}.mde", value=float(row.mde), numeric=True),
            Cell(h.count(row.seeds_needed), key=f"{key}.seeds_needed", value=float(row.seeds_needed), numeric=True),
            Cell(f"{row.device_hours:.3g}" if np.isfinite(row.device_hours) else "—", key=f"{key}.device_hours",
                 value=float(row.device_hours), numeric=True),
            Cell(row.verdict if isinstance(row.verdict, str) else "—",
                 css=f"verdict {verdict_class(row.verdict)}" if isinstance(row.verdict, str) else None),
        ])
    headers = ["comparison", "within", "test", "n", "sd (pp)", "MDE (pp)",
               f"seeds for {plan.target_effect * 100:.3g} pp", plan.device_unit, "verdict"]
    return intro + words + h.table(headers, table_rows, testid="power")

