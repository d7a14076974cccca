"""The page section "Replaying search strategies": the replay table of reports._replay and its ranking-fidelity plot."""

from __future__ import annotations

import numpy as np

from . import _html as h
from ._html import Cell
from ._load import RunData
from ._replay import STRATEGIES, Replay
from ._stats import BOOTSTRAP_RESAMPLES
from ._tables import TABLES_DIR, ReportTables


def _points(value: float) -> str:
    return f"{value:+.2f}" if np.isfinite(value) else "—"


def _interval(low: float, high: float) -> str:
    return f"[{_points(low)}, {_points(high)}]" if np.isfinite(low) else "—"


def replay_fidelity_figure(replay: Replay) -> str:
    """Kendall's tau and Spearman's rho of each epoch against the final ranking, each with its CI as a band."""
    from matplotlib.ticker import MaxNLocator

    from ._figures import _new_figure, _style, to_data_uri  # seconds of import: only when drawn

    table = replay.fidelity
    with _style():
        figure = _new_figure()
        ax = figure.add_subplot()
        for name, column, low, high in (("Kendall τ", "kendall_tau", "kendall_ci_low", "kendall_ci_high"),
                                        ("Spearman ρ", "spearman_rho", "spearman_ci_low", "spearman_ci_high")):
            line, = ax.plot(table["epoch"], table[column], marker="o" if len(table) <= 30 else None, markersize=4,
                            linewidth=1.6, label=name)
            ax.fill_between(table["epoch"], table[low], table[high], alpha=0.2, linewidth=0, color=line.get_color(),
                            label=f"{name}: 95% bootstrap CI")
        ax.xaxis.set_major_locator(MaxNLocator(integer=True))
        lowest = np.nanmin(table[["kendall_ci_low", "spearman_ci_low"]].to_numpy(dtype=float)) \
            if table[["kendall_ci_low", "spearman_ci_low"]].notna().any().any() else 0.0
        ax.set_ylim(min(-0.1, float(lowest) - 0.05), 1.05)
        ax.set_xlabel("epoch")
        ax.set_ylabel("rank correlation with the final ranking")
        ax.set_title(f"Each epoch's val_acc against the ranking by val_acc_best (n = {replay.n_trials})", fontsize=11)
        ax.legend(loc="lower right", fontsize=8.5)
        return to_data_uri(figure)


def _strategy_rows(replay: Replay) -> list[list]:
    cheapest = replay.cheapest
    rows = []
    for row in replay.table.to_dict("records"):
        key = f"replay.{row['label']}"
        mark = " (cheapest)" if cheapest is not None and row["label"] == cheapest["label"] else ""
        rows.append([
            Cell(row["label"] + mark, key=f"{key}.label"),
            Cell(f"{row['epochs_fraction']:.3f}", key=f"{key}.epochs_fraction", value=float(row["epochs_fraction"]),
                 numeric=True),
            Cell(_points(row["regret_pp"]), key=f"{key}.regret_pp", value=float(row["regret_pp"]), numeric=True),
            Cell(_interval(row["regret_ci_low_pp"], row["regret_ci_high_pp"]), key=f"{key}.regret_ci_high_pp",
                 value=float(row["regret_ci_high_pp"]), numeric=True),
            Cell(_points(row["test_regret_pp"]), numeric=True),
            Cell(_interval(row["test_regret_ci_low_pp"], row["test_regret_ci_high_pp"]), numeric=True),
            row["chosen_trial"],
            "yes" if row["within_tolerance"] else "no",
        ])
    return rows


def _fidelity_rows(replay: Replay) -> list[list]:
    return [[Cell(str(row["epoch"]), numeric=True), Cell(str(row["n"]), numeric=True),
             Cell(f"{row['kendall_tau']:.2f}" if np.isfinite(row["kendall_tau"]) else "—",
                  key=f"replay_fidelity.{row['epoch']}.kendall_tau", value=float(row["kendall_tau"]), numeric=True),
             Cell(_interval(row["kendall_ci_low"], row["kendall_ci_high"]), numeric=True),
             Cell(f"{row['spearman_rho']:.2f}" if np.isfinite(row["spearman_rho"]) else "—",
                  key=f"replay_fidelity.{row['epoch']}.spearman_rho", value=float(row["spearman_rho"]), numeric=True),
             Cell(_interval(row["spearman_ci_low"], row["spearman_ci_high"]), numeric=True)]
            for row in replay.fidelity.to_dict("records")]


def replay_section(run: RunData, tables: ReportTables) -> str:
    """The replay table, the cheapest strategy within the tolerance, and the ranking fidelity per epoch."""
    replay = tables.replay
    if isinstance(replay, str):
        return h.note(f"No replay: {replay}.")
    families = "".join(f"<li><b>{h.escape(name)}</b>: {h.escape(family.description)}</li>"
                       for name, family in STRATEGIES.items())
    parts = [f'<p class="muted">Each strategy replayed on this run\'s recorded curves, training nothing: it reads a '
             "trial's validation accuracy only up to the epochs it spends on it, and chooses, among the trials it "
             "trains to the end, the best by val_acc_best. Epochs: its epochs over the full run's. Regret: the full "
             "run's best val_acc_best minus that of its choice, in pp; the test regret compares the two choices' "
             "test accuracies (reported, never used to choose). Point values replay the run in its order; 95% CIs: "
             f"percentile bootstrap over {replay.replicates} draws of the {replay.n_trials} trials with replacement, "
             f"in random order (seed {replay.seed}). Successive halving (Jamieson &amp; Talwalkar 2016), ASHA as Ray "
             "Tune decides (Li et al. 2018), Hyperband (Li et al. 2017), top-k after e epochs (Egele et al. 2023), "
             "zero-cost screens (Abdelfattah et al. 2021). Also: <code>python -m reports.replay RUN</code>; "
             f"{TABLES_DIR}/replay.csv and replay_fidelity.csv have the tables.</p>"
             f'<details><summary>The strategies</summary><ul class="muted">{families}</ul></details>']
    parts += [h.note(text) for text in replay.notes]
    parts.append(f"<p><b>{h.escape(replay.cheapest_text())}</b></p>")
    parts.append(h.table(["strategy", "epochs (fraction)", "val regret (pp)", "95% CI", "test regret (pp)", "95% CI",
                          "chosen trial", f"CI within {replay.tolerance * 100:g} pp"], _strategy_rows(replay),
                         testid="replay"))
    parts.append("<h4>Ranking fidelity per epoch</h4>")
    parts.append(f'<p class="muted">Kendall τ-b (scipy.stats.kendalltau) and Spearman ρ (scipy.stats.spearmanr) '
                 "between each epoch's validation accuracy and the final ranking by val_acc_best, over the replayed "
                 f"trials; 95% CIs: percentile bootstrap over trials ({BOOTSTRAP_RESAMPLES} resamples, the same at "
                 "every epoch). A strategy that cuts at an epoch keeps the right trials only as far as this ranking "
                 "already holds there.</p>")
    parts.append(h.figure(replay_fidelity_figure(replay), "Kendall tau and Spearman rho of each epoch against the "
                                                          "final ranking"))
    table = h.table(["epoch", "n trials", "Kendall τ", "95% CI", "Spearman ρ", "95% CI"], _fidelity_rows(replay),
                    testid="replay-fidelity")
    parts.append(f"<details><summary>τ and ρ at each of {len(replay.fidelity)} epochs</summary>{table}</details>"
                 if len(replay.fidelity) > 12 else table)
    return "".join(parts)
