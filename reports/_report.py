"""Assemble report.html and its CSV tables from a run folder.

`summarize` (reports._tables) computes every table; `build_report` adds the
figures, renders the page (reports._header and reports._sections) and writes
it with the tables beside it.
"""

from __future__ import annotations

from pathlib import Path

import runfolder
from reports import _html as h
from reports._csv_folder import check_csv_folder, write_csv_folder
from reports._header import header
from reports._load import ReportError, load_run, report_columns
from reports._power import target_effect
from reports._sections import SECTIONS
from reports._budget import DEFAULT_SECTION_BUDGET_S
from reports._tables import DEFAULT_TOP_K, TABLES_DIR, ReportTables, summarize

__all__ = ["DEFAULT_TOP_K", "ReportTables", "build_report", "render_page", "summarize", "write_tables"]


# The budgeted computations (reports._tables.BUDGETED) each section shows: one stopped by its budget makes
# the section say so in place of its tables.
SECTION_COMPUTATIONS: dict[str, tuple[str, ...]] = {
    "ablation": ("ablation",), "simple-effects": ("factorial",), "seeds": ("factorial", "seed_plan"),
    "importances": ("importances",), "replay": ("replay",),
}


def _section_body(anchor: str, render, run, tables: ReportTables) -> str:
    stopped = [tables.over_budget[name] for name in SECTION_COMPUTATIONS.get(anchor, ()) if name in tables.over_budget]
    return "".join(h.note(message) for message in stopped) if stopped else render(run, tables)


def render_page(tables: ReportTables, live_refresh_s: int | None = None) -> str:
    """The full HTML document of a report, figures included; `live_refresh_s`: the page of a study still running."""
    run = tables.run
    shown = [(anchor, title, render) for anchor, title, render, when in SECTIONS if when(run, tables)]
    body = [header(run, tables, [(anchor, title) for anchor, title, _ in shown], live_refresh_s)]
    body += [h.section(anchor, title, _section_body(anchor, render, run, tables)) for anchor, title, render in shown]
    body.append(f'<footer class="muted"><p>Built by <code>python -m reports.build</code> from '
                f"{h.escape(run.run_dir.resolve())}. Every table is also in {TABLES_DIR}/*.csv beside this file "
                "(accuracies there are fractions, not percentages).</p></footer>")
    return h.page(f"resnas report — {run.name}", "".join(body), refresh_s=live_refresh_s)


def write_tables(tables: ReportTables, directory: Path) -> None:
    """Write each table the page shows as <name>.csv, removing CSVs of an earlier build (never through a link)."""
    write_csv_folder(directory, tables.csv_tables())


def build_report(run_dir: str | Path, top_k: int = DEFAULT_TOP_K, live_refresh_s: int | None = None,
                 section_budget_s: float = DEFAULT_SECTION_BUDGET_S) -> Path:
    """Write run_dir/report.html and run_dir/report_tables/*.csv; return the path of report.html.

    `live_refresh_s` marks the page of a study that is still running: it says "in progress: k of N trials"
    and reloads itself every that many seconds (search._live_report builds it so; the final build does not).
    `section_budget_s` bounds each long computation (reports._budget): one past it is left out, and said so.
    """
    if not isinstance(top_k, int) or top_k < 1:
        raise ReportError(f"top_k: got {top_k!r}; allowed: an integer >= 1")
    if isinstance(section_budget_s, bool) or not isinstance(section_budget_s, (int, float)) or not section_budget_s >= 0:
        raise ReportError(f"section_budget_s: got {section_budget_s!r}; allowed: a number of seconds >= 0")
    check_csv_folder(runfolder.RunFolder(run_dir).report_tables)  # before any work: refused, nothing written
    run = load_run(run_dir, columns=report_columns)  # only what the sections read (issue 25)
    target_effect(run)  # a bad report.target_effect in study.yaml is refused before any table is computed
    tables = summarize(run, top_k, section_budget_s)
    html_text = render_page(tables, live_refresh_s)
    folder = runfolder.RunFolder(run.run_dir)
    report_path = folder.report_html
    try:
        write_tables(tables, folder.report_tables)
        runfolder.atomic_write_text(report_path, html_text)
    except OSError as error:
        raise ReportError(f"{error.filename or report_path}: cannot write the report ({error.strerror or error})") from None
    return report_path
