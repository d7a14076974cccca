"""Every table of a report, computed from one run folder without drawing anything.

`summarize` is the whole statistics side of a report: the page (reports._sections)
and the CSV files (reports._report) only present what it returns.
"""

from __future__ import annotations

from dataclasses import dataclass, field

import pandas as pd

import runfolder
from reports._factorial import Factorial, factorial_tables
from reports._fidelity import Fidelity, fidelity_tables
from reports._importance import Importances, param_importances
from reports._load import RunData
from reports._power import SeedPlan, seed_plan
from reports._stats import (accuracy_values, ablation_table, failed_trials, failure_messages, pareto_table,
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
    factorial = factorial_tables(run)
    ablation = ablation_table(run)
    return ReportTables(
        run=run,
        status_counts=status_counts(run.results),
        ablation=ablation,
        pareto={cost: pareto_table(run, cost) for cost in COST_COLUMNS if cost in run.results.columns},
        top_k=top_trials(run, top_k) if run.ranking_metric in run.results.columns else pd.DataFrame(),
        failed=failed,
        failure_messages=failure_messages(failed),
        retrained=retrained_summary(run.retrain) if run.retrain is not None else None,
        importances=param_importances(run) if _is_searched(run) else None,
        factorial=factorial,
        seed_plan=seed_plan(run, tested=factorial.tested),
        fidelity=fidelity_tables(run, ablation),
        notes=_sample_size_notes(run),
    )
