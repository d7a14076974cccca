"""`python -m reports.build`: a report on success; one line on stderr and exit status 2 on bad input.

The success case runs the command as a user does; bad input calls main() in this process.
"""

from __future__ import annotations

import pytest

from commands import call_main, run_module
from reports.build import main as build_main


@pytest.fixture
def report_cli(capsys):
    """`python -m reports.build ARGS` in this process."""
    return lambda *args: call_main(build_main, list(args), capsys)


def _assert_one_line_error(result, *expected: str) -> None:
    line = result.bad_input_line()
    for part in expected:
        assert part in line


def test_cli_writes_the_report(single_level_run, copy_run):
    run_dir = copy_run(single_level_run)
    result = run_module("reports.build", str(run_dir))
    assert result.returncode == 0, result.stderr
    assert result.stdout.strip() == str(run_dir / "report.html")
    assert (run_dir / "report.html").stat().st_size > 0
    assert result.stderr == ""


def test_cli_bad_flag(report_cli):
    _assert_one_line_error(report_cli("runs/x", "--bogus"), "unrecognized arguments: --bogus")


def test_cli_missing_folder(tmp_path, report_cli):
    missing = tmp_path / "runs" / "nope"
    _assert_one_line_error(report_cli(str(missing)), str(missing), "no such run folder")


def test_cli_path_is_a_file(tmp_path, report_cli):
    file = tmp_path / "results.parquet"
    file.write_bytes(b"")
    _assert_one_line_error(report_cli(str(file)), str(file), "not a directory")


def test_cli_folder_without_results(tmp_path, report_cli):
    (tmp_path / "runs" / "empty").mkdir(parents=True)
    _assert_one_line_error(report_cli(str(tmp_path / "runs" / "empty")), "results.parquet", "missing")


@pytest.mark.parametrize("table", ["results.parquet", "curves.parquet"])
def test_cli_corrupt_parquet(grid_run, copy_run, table, report_cli):
    run_dir = copy_run(grid_run)
    (run_dir / table).write_bytes(b"PAR1 this is not a parquet file\nsecond line")
    _assert_one_line_error(report_cli(str(run_dir)), str(run_dir / table), "not a readable parquet file")


def test_cli_bad_status_value(grid_run, copy_run, report_cli):
    import pandas as pd

    run_dir = copy_run(grid_run)
    pd.read_parquet(run_dir / "results.parquet").assign(status="running").to_parquet(run_dir / "results.parquet")
    _assert_one_line_error(report_cli(str(run_dir)), "results.parquet", "status", "'running'", "complete, failed, pruned")
