"""`python -m reports.build`: a report on success; one line on stderr and exit status 2 on bad input."""

from __future__ import annotations

import os
import subprocess
import sys
from pathlib import Path

import pytest

REPOSITORY = Path(__file__).resolve().parents[2]


def _cli(*args: str) -> subprocess.CompletedProcess:
    env = {**os.environ, "PYTHONPATH": os.pathsep.join(filter(None, [str(REPOSITORY), os.environ.get("PYTHONPATH")]))}
    return subprocess.run([sys.executable, "-m", "reports.build", *args], capture_output=True, text=True,
                          cwd=REPOSITORY, env=env, timeout=120)


def _assert_one_line_error(result: subprocess.CompletedProcess, *expected: str) -> None:
    assert result.returncode == 2, result.stderr
    assert "Traceback" not in result.stderr
    lines = result.stderr.strip().splitlines()
    assert len(lines) == 1, result.stderr
    for part in expected:
        assert part in lines[0]


def test_cli_writes_the_report(single_level_run, copy_run):
    run_dir = copy_run(single_level_run)
    result = _cli(str(run_dir))
    assert result.returncode == 0, result.stderr
    assert result.stdout.strip() == str(run_dir / "report.html")
    assert (run_dir / "report.html").stat().st_size > 0
    assert result.stderr == ""


def test_cli_bad_flag():
    _assert_one_line_error(_cli("runs/x", "--bogus"), "unrecognized arguments: --bogus")


def test_cli_missing_folder(tmp_path):
    missing = tmp_path / "runs" / "nope"
    _assert_one_line_error(_cli(str(missing)), str(missing), "no such run folder")


def test_cli_path_is_a_file(tmp_path):
    file = tmp_path / "results.parquet"
    file.write_bytes(b"")
    _assert_one_line_error(_cli(str(file)), str(file), "not a directory")


def test_cli_folder_without_results(tmp_path):
    (tmp_path / "runs" / "empty").mkdir(parents=True)
    _assert_one_line_error(_cli(str(tmp_path / "runs" / "empty")), "results.parquet", "missing")


@pytest.mark.parametrize("table", ["results.parquet", "curves.parquet"])
def test_cli_corrupt_parquet(grid_run, copy_run, table):
    run_dir = copy_run(grid_run)
    (run_dir / table).write_bytes(b"PAR1 this is not a parquet file\nsecond line")
    _assert_one_line_error(_cli(str(run_dir)), str(run_dir / table), "not a readable parquet file")


def test_cli_bad_status_value(grid_run, copy_run):
    import pandas as pd

    run_dir = copy_run(grid_run)
    pd.read_parquet(run_dir / "results.parquet").assign(status="running").to_parquet(run_dir / "results.parquet")
    _assert_one_line_error(_cli(str(run_dir)), "results.parquet", "status", "'running'", "complete, failed, pruned")
