"""python -m search.run: the smoke study end to end through real Ray Tune + Optuna, and bad input.

The end-to-end test reads the session's real smoke run (tests/conftest.py);
runs with ASHA, a diverging trial, kill -9, SIGTERM and --resume share one
real two-node cluster (test_cluster.py). Bad input is refused before Ray
starts, so those cases call main() in this process.
"""

from __future__ import annotations

import json
import sys
from pathlib import Path

import optuna
import pandas as pd
import pytest

import runfolder
from commands import SMOKE, CliResult, SmokeRun, call_main
from search import run as search_run

SMOKE_TRIALS = 4  # shortcut {A, B} x seeds {0, 1}


def _results(run_dir: Path) -> pd.DataFrame:
    return pd.read_parquet(run_dir / "results.parquet")


@pytest.mark.slow
def test_smoke_study_end_to_end(smoke_run: SmokeRun) -> None:
    run_dir = smoke_run.run_dir
    for name in ("study.yaml", "run.json", "study.db", "results.parquet", "results.csv",
                 "curves.parquet", "curves.csv", "report.html"):
        assert (run_dir / name).is_file(), name
    results = _results(run_dir)
    assert len(results) == SMOKE_TRIALS
    assert set(results["status"]) == {"complete"}
    assert sorted(zip(results["factor.shortcut"], results["seed"])) == [("A", 0), ("A", 1), ("B", 0), ("B", 1)]
    assert results["trial_id"].is_unique
    assert (results["arch.shortcut"].isin(["A", "B"])).all()
    assert results["test_acc"].between(0, 1).all() and results["val_acc_best"].between(0, 1).all()
    assert (results["flops"] == 2 * results["macs"]).all()
    curves = pd.read_parquet(run_dir / "curves.parquet")
    epochs = int(results["train.epochs"].iloc[0])
    assert len(curves) == SMOKE_TRIALS * epochs
    assert set(curves["trial_id"]) == set(results["trial_id"])
    # One record of trials: the Optuna storage agrees with the table.
    run = json.loads((run_dir / "run.json").read_text())
    study = optuna.load_study(study_name=run["study"], storage=f"sqlite:///{run_dir / 'study.db'}")
    complete = study.get_trials(states=(optuna.trial.TrialState.COMPLETE,))
    assert sorted(f"trial_{t.number:04d}" for t in complete) == sorted(results["trial_id"])
    assert all({"val_acc_per_epoch", "test_acc"} <= set(t.user_attrs["result"]) for t in complete)
    # Each epoch's validation accuracy is an intermediate value (optuna-dashboard's learning curve).
    assert all(list(t.intermediate_values.values()) == pytest.approx(t.user_attrs["result"]["val_acc_per_epoch"], abs=1e-5)
               for t in complete)
    assert run["finished"] and run["trial_counts"] == {"complete": 4, "failed": 0, "pruned": 0}
    assert run["versions"]["torch"] and run["hardware"]["cpus"] >= 1
    # The local dashboard listens on loopback only.
    assert "Ray dashboard: http://127.0.0.1:" in smoke_run.stdout
    # One line per finished trial, not a flood.
    assert sum("] trial_" in line for line in smoke_run.stdout.splitlines()) == SMOKE_TRIALS
    # Top-k weights are kept (keep_checkpoints defaults to 3).
    kept = results[results["checkpoint"] != ""]
    assert len(kept) == 3
    assert all((run_dir / c / "model.safetensors").is_file() for c in kept["checkpoint"])
    assert kept["val_acc_best"].min() >= runfolder.ranked_frame(results)["val_acc_best"].head(3).min()
    assert len(list((run_dir / "checkpoints").iterdir())) == 3
    # The report at the end is of this run: its question and its best trial.
    page = (run_dir / "report.html").read_text()
    assert run["question"] in page and runfolder.ranked_frame(results)["trial_id"].iloc[0] in page


# ------------------------------------------------------- bad input: before Ray starts
def _main(capsys: pytest.CaptureFixture[str], *args: str) -> CliResult:
    """search.run.main(ARGS) in this process; Ray must not have started."""
    result = call_main(search_run.main, list(args), capsys)
    ray = sys.modules.get("ray")
    assert ray is None or not ray.is_initialized(), "bad input must be refused before Ray starts"
    return result


def test_existing_run_folder_is_refused_without_resume(tmp_path: Path, capsys: pytest.CaptureFixture[str]) -> None:
    run_dir = tmp_path / "exists"
    run_dir.mkdir()
    (run_dir / "results.parquet").write_text("precious")
    line = _main(capsys, str(SMOKE), "--out", str(run_dir)).bad_input_line()
    assert "the run folder exists; continue it with --resume" in line
    assert (run_dir / "results.parquet").read_text() == "precious"
    nothing = _main(capsys, str(SMOKE), "--out", str(tmp_path / "new"), "--resume")
    assert "nothing to resume" in nothing.bad_input_line()


@pytest.mark.parametrize("args, expected", [
    (["--dry-run", "--bogus"], "unrecognized arguments: --bogus"),
    (["--dry-run", "--set", "train.epochz=3"], "did you mean 'epochs'"),
    (["--dry-run", "--set", "train.epochs=0"], "train.epochs"),
    (["--dry-run", "--set", "noequals"], "noequals"),
    (["--max-concurrent", "0"], "--max-concurrent"),
])
def test_bad_flags_are_one_line_and_status_2(args: list[str], expected: str, tmp_path: Path,
                                             capsys: pytest.CaptureFixture[str]) -> None:
    line = _main(capsys, str(SMOKE), "--out", str(tmp_path / "run"), *args).bad_input_line()
    assert expected in line
    assert not (tmp_path / "run").exists()


def test_missing_study_file_is_status_2(tmp_path: Path, capsys: pytest.CaptureFixture[str]) -> None:
    assert "absent.yaml" in _main(capsys, str(tmp_path / "absent.yaml")).bad_input_line()


def test_missing_data_root_is_status_2_before_ray_starts(tmp_path: Path, capsys: pytest.CaptureFixture[str]) -> None:
    result = _main(capsys, str(SMOKE), "--out", str(tmp_path / "run"), "--set", "data.dataset=cifar10",
                   "--set", f"data.root={tmp_path / 'nowhere'}")
    assert "nowhere" in result.bad_input_line()
    assert "Ray dashboard" not in result.stdout
    assert not (tmp_path / "run").exists()
