"""The page section "Does the cheap budget predict the expensive one?": rank stability and search against retrain."""

from __future__ import annotations

import numpy as np

from . import _html as h
from ._fidelity import (ARCHITECTURE_UNIT, FIDELITY_READINGS, MIN_ARCHITECTURES, RETRAIN_TEST, RUN_UNIT,
                        BudgetFidelity, RankStability)
from ._html import Cell, verdict_class
from ._load import RunData
from ._stats import ALPHA, BOOTSTRAP_RESAMPLES, BOOTSTRAP_SEED, metric_name
from ._tables import TABLES_DIR, ReportTables

SEARCH_METRICS = {"val_acc_best": "best validation accuracy", "test_acc": "test accuracy"}


def _tau_text(value: float) -> str:
    return f"{value:.2f}" if np.isfinite(value) else "—"


def _tau_with_ci(row) -> str:
    if not np.isfinite(row["kendall_tau"]):
        return "τ undefined (a column without two distinct values)"
    ci = (f" [{_tau_text(row['ci_low'])}, {_tau_text(row['ci_high'])}]" if np.isfinite(row["ci_low"]) else "")
    return f"τ = {_tau_text(row['kendall_tau'])}{ci}"


def _epochs_text(epochs: float) -> str:
    return f"{epochs:g} epochs" if np.isfinite(epochs) else "an unstated number of epochs"


def rank_stability_figure(stability: RankStability) -> str:
    """Kendall's tau of each epoch against the final one, its bootstrap CI as a band, the threshold and ASHA's cut."""
    from matplotlib.ticker import MaxNLocator

    from ._figures import _new_figure, _style, to_data_uri  # seconds of import: only when drawn

    table = stability.table
    with _style():
        figure = _new_figure()
        ax = figure.add_subplot()
        ax.fill_between(table["epoch"], table["ci_low"], table["ci_high"], alpha=0.25, linewidth=0,
                        label="95% bootstrap CI")
        ax.plot(table["epoch"], table["kendall_tau"], marker="o" if len(table) <= 30 else None, markersize=4,
                linewidth=1.6, label="Kendall τ with the final epoch")
        ax.axhline(stability.threshold, color="black", linestyle="--", linewidth=1.0,
                   label=f"stable: CI above τ = {stability.threshold:g}")
        if stability.stable_epoch is not None:
            ax.axvline(stability.stable_epoch, color="#1b7a2e", linewidth=1.2,
                       label=f"stable from epoch {stability.stable_epoch}")
        if stability.asha.grace_period is not None:
            ax.axvline(stability.asha.grace_period, color="#b3261e", linestyle=":", linewidth=1.4,
                       label=f"ASHA grace period ({stability.asha.grace_period})")
        ax.xaxis.set_major_locator(MaxNLocator(integer=True))
        ax.set_ylim(min(-0.1, float(np.nanmin(table["ci_low"])) - 0.05) if table["ci_low"].notna().any() else -0.1,
                    1.05)
        ax.set_xlabel("epoch")
        ax.set_ylabel("Kendall τ (rank correlation)")
        ax.set_title(f"Rank of each epoch's validation accuracy against the final one (n = {stability.n_used})",
                     fontsize=11)
        ax.legend(loc="lower right", fontsize=8.5)
        return to_data_uri(figure)


def _stability_sentences(stability: RankStability) -> list[str]:
    """What the table says: from which epoch the ranking holds, and whether ASHA's grace period is safe."""
    final = stability.final_epoch
    threshold = f"the 95% CI of τ is above {stability.threshold:g}"
    if stability.stable_epoch is not None:
        row = stability.at(stability.stable_epoch)
        found = (f"The ranking is stable from epoch {stability.stable_epoch} of {final}: from there on, "
                 f"{threshold} at every epoch ({_tau_with_ci(row)} at epoch {stability.stable_epoch}).")
    else:
        early = stability.table[stability.table["epoch"] < final]
        reached = early[early["kendall_tau"] > stability.threshold]
        found = (f"The ranking is not shown stable before the final epoch ({final}): there is no epoch from which "
                 f"{threshold} through to the end.")
        if len(reached):
            epochs = ", ".join(str(int(epoch)) for epoch in reached["epoch"].head(5))
            more = f" and {len(reached) - 5} more" if len(reached) > 5 else ""
            found += (f" τ itself is above {stability.threshold:g} at epoch(s) {epochs}{more}, but its CI over "
                      f"{stability.n_used} trials is too wide to show it; more trials would tell.")
    sentences = [found]
    asha = stability.asha
    if asha.scheduler == "asha":
        row = stability.at(asha.grace_period)
        at_cut = f" ({_tau_with_ci(row)} at epoch {asha.grace_period})" if row is not None else ""
        if stability.grace_period_safe:
            sentences.append(f"ASHA's first cut, at its grace period of {asha.grace_period} epoch(s), is safe for "
                             f"this study: the ranking is already stable there{at_cut}.")
        else:
            advice = (f"; set search.asha.grace_period to {stability.stable_epoch} or more"
                      if stability.stable_epoch is not None else
                      "; at this budget no grace period short of the full training is shown safe")
            sentences.append(f"ASHA's first cut, at its grace period of {asha.grace_period} epoch(s), is NOT shown "
                             f"safe: the ranking there is not yet the final one{at_cut}{advice}.")
    elif asha.scheduler == "none":
        sentences.append("This study ran without ASHA. " + (
            f"A grace period of {stability.stable_epoch} epoch(s) or more would be safe at this budget."
            if stability.stable_epoch is not None else
            "At this budget no early cut is shown safe."))
    else:
        sentences.append(f"Whether the study used ASHA is unknown ({asha.source}).")
    return sentences


def _stability_html(stability: RankStability) -> str:
    parts = [f'<p class="muted">Kendall τ-b (scipy.stats.kendalltau) between each epoch\'s validation accuracy '
             f"and the final epoch's, across the complete trials with a learning curve "
             f"({stability.n_used} of {stability.n_complete} used); 95% CI: percentile bootstrap over trials "
             f"({BOOTSTRAP_RESAMPLES} resamples, seeded {BOOTSTRAP_SEED} and the epoch). τ = 1: the epoch already "
             f"orders the trials as they end; τ = {stability.threshold:g}: {(1 + stability.threshold) / 2:.0%} of "
             "the pairs of trials are ordered as they end. The final epoch's τ is 1 by definition. "
             f"{TABLES_DIR}/rank_stability.csv has the table.</p>"]
    parts += [h.note(text) for text in stability.notes]
    table = stability.table
    if table.empty:
        return "".join(parts)
    stable = stability.stable_epoch
    shown = str(stable) if stable is not None else "not before the final epoch"
    parts.append(f"<p><b>Ranking stable from epoch:</b> "
                 f"{h.keyed_span(shown, 'stability.stable_epoch', stable if stable is not None else 'none')} "
                 f"(of {stability.final_epoch})</p>")
    parts.append("<ul>" + "".join(
        f"<li>{h.escape(text)}</li>" for text in _stability_sentences(stability)) + "</ul>")
    parts.append(h.figure(rank_stability_figure(stability), "Kendall tau of each epoch against the final epoch"))
    rows = []
    for row in table.itertuples():
        key = f"stability.{row.epoch}"
        above = np.isfinite(row.ci_low) and row.ci_low > stability.threshold
        ci = f"[{_tau_text(row.ci_low)}, {_tau_text(row.ci_high)}]" if np.isfinite(row.ci_low) else "—"
        rows.append([Cell(str(row.epoch), numeric=True), Cell(str(row.n), key=f"{key}.n", value=int(row.n), numeric=True),
                     Cell(_tau_text(row.kendall_tau), key=f"{key}.kendall_tau", value=float(row.kendall_tau),
                          numeric=True),
                     Cell(ci, key=f"{key}.ci_low", value=float(row.ci_low), numeric=True),
                     "yes" if above else "no"])
    table_html = h.table(["epoch", "n trials", "Kendall τ", "95% CI", f"CI above {stability.threshold:g}"], rows,
                         testid="rank-stability")
    parts.append(f"<details><summary>τ at each of {len(rows)} epochs</summary>{table_html}</details>"
                 if len(rows) > 12 else table_html)
    return "".join(parts)


def _ranking_html(budget: BudgetFidelity) -> str:
    rows = []
    for row in budget.ranking.to_dict("records"):
        key = f"fidelity.{row['retrain_epochs']:g}.{row['search_metric']}"
        ci = f"[{_tau_text(row['ci_low'])}, {_tau_text(row['ci_high'])}]" if np.isfinite(row["ci_low"]) else "—"
        rows.append([_epochs_text(row["search_epochs"]), _epochs_text(row["retrain_epochs"]),
                     SEARCH_METRICS.get(row["search_metric"], row["search_metric"]),
                     Cell(str(row["n"]), key=f"{key}.n", value=int(row["n"]), numeric=True),
                     Cell(_tau_text(row["kendall_tau"]), key=f"{key}.kendall_tau", value=float(row["kendall_tau"]),
                          numeric=True),
                     Cell(ci, numeric=True), Cell(h.p_value_text(row["p_value"]), numeric=True),
                     Cell(row["reading"], key=f"{key}.reading")])
    return h.table(["search budget", "retrain budget", "search score", "architectures", "Kendall τ", "95% CI",
                    "p (τ = 0)", "reading"], rows, testid="budget-fidelity")


def _verdict_sentence(row: dict) -> str:
    name = f"{row['factor']}={row['level']} vs {row['reference']}"
    searched = (f"{row['search_verdict']} ({h.signed_points(row['search_diff'])} pp) at "
                f"{_epochs_text(row['search_epochs'])}")
    if not row["unit"]:
        return (f"{name}: {searched}; too few retrained architectures to tell at {_epochs_text(row['retrain_epochs'])} "
                f"({row['n_architectures']} of {row['level']} and {row['n_architectures_ref']} of {row['reference']} "
                "retrained).")
    if not np.isfinite(row["p_adjusted"]):
        return (f"{name}: {searched}; retrained means differ by {h.signed_points(row['retrain_diff'])} pp at "
                f"{_epochs_text(row['retrain_epochs'])}, with too few to test ({row['n']} vs {row['n_ref']} "
                f"{row['unit']}): {row['fidelity']}.")
    return (f"{name}: {searched}; {row['retrain_verdict']} ({h.signed_points(row['retrain_diff'])} pp, Holm p "
            f"{h.p_value_text(row['p_adjusted'])}) at {_epochs_text(row['retrain_epochs'])}: {row['fidelity']}.")


def _verdicts_html(budget: BudgetFidelity) -> str:
    verdicts = budget.verdicts
    if verdicts.empty:
        return h.note("No categorical factor with a verdict at the search budget: there is no verdict to re-check.")
    rows = []
    for row in verdicts.to_dict("records"):
        key = f"budget_verdict.{row['factor']}.{row['level']}.{row['retrain_epochs']:g}"
        ci = (f"[{h.signed_points(row['retrain_ci_low'])}, {h.signed_points(row['retrain_ci_high'])}]"
              if np.isfinite(row["retrain_ci_low"]) else "—")
        rows.append([
            f"{row['factor']}={row['level']} vs {row['reference']}", _epochs_text(row["retrain_epochs"]),
            Cell(h.signed_points(row["search_diff"]), numeric=True),
            Cell(row["search_verdict"], css=f"verdict {verdict_class(row['search_verdict'])}"),
            Cell(f"{row['n_architectures']} / {row['n_architectures_ref']}", numeric=True),
            Cell(f"{row['n']} / {row['n_ref']} {row['unit']}" if row["unit"] else "—", numeric=True),
            Cell(h.signed_points(row["search_diff_retrained"]), numeric=True),
            Cell(h.signed_points(row["retrain_diff"]), key=f"{key}.retrain_diff", value=float(row["retrain_diff"]),
                 numeric=True),
            Cell(ci, numeric=True),
            Cell(h.p_value_text(row["p_adjusted"]), numeric=True),
            Cell(row["retrain_verdict"], css=f"verdict {verdict_class(row['retrain_verdict'])}"),
            Cell(row["fidelity"], key=f"{key}.fidelity"),
        ])
    legend = "".join(f"<li><b>{h.escape(name)}</b>: {h.escape(meaning)}</li>" for name, meaning in FIDELITY_READINGS.items())
    intro = (f'<p class="muted">Each level of the pooled ablation against its reference, on '
             f"{metric_name(verdicts['metric'].iloc[0])}: the search verdict (the ablation table) beside the same "
             f"comparison among the retrained architectures, by the report's decision rule: {RETRAIN_TEST}, Holm "
             f"over the levels of a factor, higher or lower when Holm p &lt; {ALPHA:g}. The unit is each "
             f"architecture's mean over its seeds where both sides hold 2 or more architectures ({ARCHITECTURE_UNIT}), "
             f"else each run ({RUN_UNIT}), which then compares those few architectures rather than the levels in "
             "general. Only the top architectures are retrained, so a level among them is compared with the "
             "reference among them: the comparison is confounded with whatever else sets those architectures "
             "apart. \"Δ search, same archs\" is the difference among the same architectures at the search budget: "
             "where it already disagrees with the search verdict, the selection, not the budget, moved it. "
             f"{TABLES_DIR}/budget_verdicts.csv has the table.</p>"
             f'<details><summary>What the fidelity column says</summary><ul class="muted">{legend}</ul></details>')
    sentences = "<ul>" + "".join(f"<li>{h.escape(_verdict_sentence(row))}</li>"
                                 for row in verdicts.to_dict("records")) + "</ul>"
    table = h.table(["comparison", "retrain budget", "Δ search (pp)", "search verdict", "archs (level / ref)",
                     "n (level / ref)", "Δ search, same archs (pp)", "Δ retrained (pp)", "95% CI",
                     "Holm p", "retrained verdict", "fidelity"], rows, testid="budget-verdicts")
    return intro + sentences + table


def _budget_html(budget: BudgetFidelity | None) -> str:
    if budget is None:
        return h.note("No retrain.parquet: to measure whether the search ranking holds at a longer budget, run "
                      "python -m search.retrain RUN_DIR --top 10 --seeds 2 --set train.epochs=E and rebuild the "
                      "report.")
    parts = [f'<p class="muted">Kendall τ-b between each retrained architecture\'s score at the search budget (its '
             f"trial's best validation accuracy, the score that ranked it, or its test accuracy) and its mean "
             f"retrained test accuracy; 95% CI: percentile bootstrap over architectures ({BOOTSTRAP_RESAMPLES} "
             f"resamples); p: scipy's test of τ = 0. Reading: ranking holds when the CI is above the rank-stability "
             f"threshold, changes when below it, too few architectures under {MIN_ARCHITECTURES}. "
             f"{TABLES_DIR}/budget_fidelity.csv has the table.</p>"]
    parts += [h.note(text) for text in budget.notes]
    if not budget.ranking.empty:
        parts.append(_ranking_html(budget))
    parts.append("<h4>Do the ablation verdicts hold at the retrain budget?</h4>")
    parts.append(_verdicts_html(budget))
    return "".join(parts)


def fidelity_section(run: RunData, tables: ReportTables) -> str:
    """Rank stability over epochs (and ASHA's grace period), then the search ranking against the retrained one."""
    fidelity = tables.fidelity
    return ("<h3>Within the run: from which epoch does the ranking hold?</h3>" + _stability_html(fidelity.stability)
            + "<h3>Across budgets: does the retrained ranking match the search?</h3>"
            + _budget_html(fidelity.budget))

