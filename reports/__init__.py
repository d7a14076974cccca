"""Study reports: `build_report(run_dir)` turns a run folder into a self-contained report.html.

The CLIs are `python -m reports.build runs/<study>` and, for how many seeds a
question needs, `python -m reports.plan runs/<study>`. The statistics are
public too, so a notebook can recompute any number the page shows.
"""

from reports._answer import answer_lines
from reports._edf import complexity_weights
from reports._factorial import Factorial, factorial_tables
from reports._fidelity import Fidelity, budget_fidelity, rank_stability
from reports._kendall import kendall_tau_ci
from reports._load import Factor, ReportError, RunData, load_run
from reports._power import SeedPlan, minimum_detectable_effect, seed_plan, seeds_needed
from reports._report import build_report
from reports._stats import (Comparison, ablation_table, bootstrap_mean_ci, compare, holm, pareto_front,
                            welch_p_value)
from reports._tables import ReportTables, summarize

__all__ = [
    "answer_lines",
    "Comparison",
    "Factor",
    "Factorial",
    "Fidelity",
    "ReportError",
    "ReportTables",
    "RunData",
    "SeedPlan",
    "ablation_table",
    "bootstrap_mean_ci",
    "budget_fidelity",
    "build_report",
    "compare",
    "complexity_weights",
    "factorial_tables",
    "holm",
    "kendall_tau_ci",
    "load_run",
    "minimum_detectable_effect",
    "pareto_front",
    "rank_stability",
    "seed_plan",
    "seeds_needed",
    "summarize",
    "welch_p_value",
]
