"""`python -m reports.plan`: the seed plan of a finished run; one line on stderr and exit status 2 on bad input.

One test runs the command as a user does; the others call main() in this process.
"""

from __future__ import annotations

import pandas as pd
import pytest

from commands import call_main, run_module
from reports import build_report
from reports.plan import main


def test_plan_prints_the_power_table_of_the_report(grid_run, copy_run, capsys):
    run_dir = copy_run(grid_run)
    build_report(run_dir)
    power = pd.read_csv(run_dir / "report_tables" / "power.csv", keep_default_na=False)
    assert main([str(run_dir)]) == 0
    printed = capsys.readouterr().out
    assert "target effect 1 pp (the default (study.yaml is missing)), power 80%" in printed
    headline = power[power["metric"] == "test_acc"]
    assert len(headline) > 0
    for row in headline.itertuples():
        # The same numbers as power.csv: each comparison's line holds its n, MDE and seeds needed.
        within = row.within or "-"
        line = next(line for line in printed.splitlines()
                    if line.split()[:2] == [f"{row.factor}={row.level}", "vs"] and within in line.split())
        assert f" {row.n} " in line
        assert f"{row.mde * 100:.2f}" in line
        assert f" {int(row.seeds_needed)} " in line
    assert "needs about" in printed or "already resolve" in printed


def test_plan_with_a_smaller_effect_needs_more_seeds(grid_run, capsys):
    from reports import load_run
    from reports._factorial import simple_effects_table
    from reports._power import seed_plan
    from reports.plan import plan_table

    assert main([str(grid_run), "--effect", "0.001", "--power", "0.9"]) == 0
    assert "target effect 0.1 pp (given on the command line), power 90%" in capsys.readouterr().out
    run = load_run(grid_run)
    simple, _ = simple_effects_table(run)
    coarse = plan_table(run, seed_plan(run, 0.02), simple)[1]["seeds_needed"]
    fine = plan_table(run, seed_plan(run, 0.001, 0.9), simple)[1]["seeds_needed"]
    assert len(fine) and (fine > coarse).all()


def test_plan_cli_runs_as_a_module(grid_run):
    result = run_module("reports.plan", str(grid_run), "--effect", "0.005")
    assert result.returncode == 0, result.stderr
    assert "resolving 0.5 pp" in result.stdout or "already resolve 0.5 pp" in result.stdout


@pytest.mark.parametrize("args,expected", [
    (["--effect", "2"], ["--effect: got 2.0", "strictly between 0 and 1"]),
    (["--effect", "1e-12"], ["--effect: got 1e-12", "at least 0.0001"]),  # searched for minutes before
    (["--power", "abc"], ["--power", "invalid float value"]),
    (["--power", "1"], ["--power: got 1.0"]),
])
def test_plan_bad_flags(grid_run, args, expected, capsys):
    line = call_main(main, [str(grid_run), *args], capsys).bad_input_line()
    for part in expected:
        assert part in line


def test_plan_missing_folder(tmp_path, capsys):
    missing = tmp_path / "runs" / "nope"
    assert main([str(missing)]) == 2
    error = capsys.readouterr().err
    assert error.count("\n") == 1 and "no such run folder" in error and str(missing) in error
