"""Study reports: `build_report(run_dir)` turns a run folder into a self-contained report.html.

The CLI is `python -m reports.build runs/<study>`. The statistics are public
too, so a notebook can recompute any number the page shows.
"""

from reports._load import Factor, ReportError, RunData, load_run
from reports._report import ReportTables, build_report, summarize
from reports._stats import ablation_table, bootstrap_mean_ci, pareto_front, welch_p_value

__all__ = [
    "Factor",
    "ReportError",
    "ReportTables",
    "RunData",
    "ablation_table",
    "bootstrap_mean_ci",
    "build_report",
    "load_run",
    "pareto_front",
    "summarize",
    "welch_p_value",
]
