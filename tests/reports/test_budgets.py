"""Time budgets of the report's long computations: one past its budget is stopped, its section says so, the rest is built.

Before: the power analysis, the ANOVA, the bootstrap and the importances had no
budget, so a hostile target effect or a large study held the driver (and
run.lock) for minutes. A budget of 0 is spent at the first check, which makes
every budgeted computation stop without waiting on a clock.
"""

from __future__ import annotations

import pytest

from reports import build_report, load_run
from reports._budget import OverBudget, SectionBudget
from reports._report import SECTION_COMPUTATIONS
from reports._tables import BUDGETED, summarize
from reports.build import main


class _Clock:
    """A monotonic clock that moves only when told."""

    def __init__(self) -> None:
        self.now = 100.0

    def __call__(self) -> float:
        return self.now


def test_a_budget_is_spent_on_its_monotonic_clock():
    clock = _Clock()
    budget = SectionBudget("power analysis", 20.0, clock=clock)
    clock.now += 19.9
    budget.check()
    clock.now += 0.1
    with pytest.raises(OverBudget, match=r"The power analysis ran past its time budget of 20 s"):
        budget.check()


def test_a_spent_budget_leaves_each_section_out_and_says_so(grid_run, copy_run):
    run_dir = copy_run(grid_run)
    report = build_report(run_dir, section_budget_s=0)
    page = report.read_text()
    # Every budgeted computation the grid study runs (not the importances: it is not searched by optuna).
    for name in ("ablation", "factorial", "seed_plan", "replay"):
        assert f"The {BUDGETED[name][0]} ran past its time budget of 0 s" in page
        for csv in BUDGETED[name][1]:
            assert not (run_dir / "report_tables" / f"{csv}.csv").exists()
    # The rest of the report is there: the unbudgeted tables and sections.
    assert (run_dir / "report_tables" / "status_counts.csv").exists()
    assert 'id="top"' in page and 'id="failed"' in page


def test_the_importances_stop_at_their_budget(optuna_run):
    tables = summarize(load_run(optuna_run), section_budget_s=0)
    assert set(tables.over_budget) == {"ablation", "factorial", "seed_plan", "importances", "replay"}
    assert tables.importances.table is None and "ran past its time budget" in tables.importances.reason


def test_a_normal_budget_changes_nothing(grid_run):
    run = load_run(grid_run)
    budgeted, unbudgeted = summarize(run), summarize(run, section_budget_s=float("inf"))
    assert budgeted.over_budget == {}
    for name, table in unbudgeted.csv_tables().items():
        assert budgeted.csv_tables()[name].equals(table), name


def test_every_budgeted_computation_has_a_section():
    assert {name for names in SECTION_COMPUTATIONS.values() for name in names} == set(BUDGETED)


def test_build_takes_the_budget_on_the_command_line(grid_run, copy_run, capsys):
    run_dir = copy_run(grid_run)
    assert main([str(run_dir), "--section-budget-s", "0"]) == 0
    assert "ran past its time budget of 0 s" in (run_dir / "report.html").read_text()
    assert main([str(run_dir), "--section-budget-s", "-1"]) == 2
    assert "section_budget_s: got -1.0" in capsys.readouterr().err
