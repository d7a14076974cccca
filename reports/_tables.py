"""Every table of a report, computed from one run folder without drawing anything.

`summarize` is the whole statistics side of a report: the page (reports._sections)
and the CSV files (reports._report) only present what it returns.
"""

from __future__ import annotations

from dataclasses import dataclass, field
from typing import Callable, TypeVar

import pandas as pd

import runfolder
from reports._budget import DEFAULT_SECTION_BUDGET_S, OverBudget, SectionBudget
from reports._factorial import Factorial, empty_factorial, factorial_tables
from reports._fidelity import Fidelity, fidelity_tables
from reports._importance import Importances, param_importances
from reports._load import RunData
from reports._power import SeedPlan, seed_plan
from reports._replay import Replay, replay_or_note
from reports._stats import (ABLATION_COLUMNS, accuracy_values, ablation_table, failed_trials, failure_messages, pareto_table,
                            retrained_summary, status_counts, top_trials)

DEFAULT_TOP_K = 5
# The folder beside report.html that holds every table as <name>.csv.
TABLES_DIR = runfolder.REPORT_TABLES
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
    # Cell means, simple effects and interactions of the categorical factors.
    factorial: Factorial
    # power.csv: the seeds each comparison needs to resolve the study's target effect.
    seed_plan: SeedPlan
    # rank_stability.csv, and budget_fidelity.csv / budget_verdicts.csv after a retrain.
    fidelity: Fidelity
    notes: list[str] = field(default_factory=list)
    # The budgeted computations (BUDGETED) that ran past their time budget: name -> what the page says instead.
    over_budget: dict[str, str] = field(default_factory=dict)
    # replay.csv and replay_fidelity.csv (reports._replay), or why the run cannot be replayed; None past its budget.
    replay: Replay | str | None = None

    def csv_tables(self) -> dict[str, pd.DataFrame]:
        """The tables the page shows, by the CSV name they are written under."""
        tables = {"status_counts": self.status_counts, "ablation": self.ablation, "top_k": self.top_k,
                  "failed": self.failed, "failure_messages": self.failure_messages}
        tables.update({f"pareto_{cost}": front for cost, front in self.pareto.items()})
        tables.update({"cell_means": self.factorial.cell_means, "simple_effects": self.factorial.simple_effects,
                       "interactions": self.factorial.interactions, "power": self.seed_plan.table})
        tables.update(self.fidelity.csv_tables())
        if self.retrained is not None:
            tables["retrained"] = self.retrained
        if isinstance(self.replay, Replay):
            tables.update(self.replay.csv_tables())
        if self.importances is not None and self.importances.table is not None:
            tables["importances"] = self.importances.table
        # A computation stopped by its budget leaves no CSV rather than an empty one that reads as "nothing found".
        return {name: table for name, table in tables.items()
                if not any(name in BUDGETED[computation][1] for computation in self.over_budget)}


def _is_searched(run: RunData) -> bool:
    return run.info.get("strategy") == "optuna"


def _sample_size_notes(run: RunData) -> list[str]:
    n = len(accuracy_values(run, run.headline_metric))
    if n == 1:
        return ["Only one trial completed: it is shown, but a spread, a confidence interval or a test needs at "
                "least two trials per level, so none is computed."]
    return []


# The computations of a report that get a time budget (reports._budget): name -> (what the page calls it, the CSVs
# it makes). Each checks its budget between units of work; the rest of summarize is a pass or two over the table.
BUDGETED: dict[str, tuple[str, tuple[str, ...]]] = {
    "ablation": ("bootstrap CIs and tests of the ablation table", ("ablation",)),
    "factorial": ("t-tests of the simple effects and the two-way ANOVAs", ("cell_means", "simple_effects", "interactions")),
    "seed_plan": ("power analysis", ("power",)),
    "importances": ("parameter importances", ("importances",)),
    "replay": ("replay of search strategies", ("replay", "replay_fidelity")),
}

_Table = TypeVar("_Table")


def summarize(run: RunData, top_k: int = DEFAULT_TOP_K,
              section_budget_s: float = DEFAULT_SECTION_BUDGET_S) -> ReportTables:
    """Compute every table of the report from a loaded run (the statistics without figures or HTML).

    Each computation in BUDGETED may take `section_budget_s` seconds (monotonic clock); one that takes longer is
    stopped, its tables are left empty and `over_budget` says so, and the rest of the report is computed.
    """
    over_budget: dict[str, str] = {}

    def budgeted(name: str, compute: Callable[[SectionBudget], _Table], instead: Callable[[], _Table]) -> _Table:
        budget = SectionBudget(BUDGETED[name][0], section_budget_s)
        try:
            return compute(budget)
        except OverBudget as stopped:
            over_budget[name] = str(stopped)
            return instead()

    failed = failed_trials(run)
    factorial = budgeted("factorial", lambda budget: factorial_tables(run, budget), lambda: empty_factorial(run))
    ablation = budgeted("ablation", lambda budget: ablation_table(run, budget),
                        lambda: pd.DataFrame(columns=ABLATION_COLUMNS))
    importances = (budgeted("importances", lambda budget: param_importances(run, budget),
                            lambda: Importances(None, "PED-ANOVA (optuna.importance)", over_budget["importances"]))
                   if _is_searched(run) else None)
    replay = budgeted("replay", lambda budget: replay_or_note(run, budget), lambda: None)
    plan = budgeted("seed_plan", lambda budget: seed_plan(run, tested=factorial.tested, budget=budget),
                    lambda: seed_plan(run, tested=[]))
    return ReportTables(
        run=run,
        status_counts=status_counts(run.results),
        ablation=ablation,
        pareto={cost: pareto_table(run, cost) for cost in COST_COLUMNS if cost in run.results.columns},
        top_k=top_trials(run, top_k) if run.ranking_metric in run.results.columns else pd.DataFrame(),
        failed=failed,
        failure_messages=failure_messages(failed),
        retrained=retrained_summary(run.retrain) if run.retrain is not None else None,
        importances=importances,
        factorial=factorial,
        seed_plan=plan,
        fidelity=fidelity_tables(run, ablation),
        replay=replay,
        notes=_sample_size_notes(run) + [f"The {BUDGETED[name][0]} ran past the {section_budget_s:g} s budget and "
                                         "is left out (see its section)." for name in over_budget],
        over_budget=over_budget,
    )
