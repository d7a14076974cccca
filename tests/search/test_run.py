"""python -m search.run: real Ray Tune + Optuna runs of the smoke study, end to end.

These start Ray for real (no mocks), so each takes tens of seconds on 2 cores.
"""

from __future__ import annotations

import json
import os
import signal
import subprocess
import sys
import time
from pathlib import Path

import optuna
import pandas as pd
import pytest

from search_cli import ROOT, SMOKE, run_cli

pytestmark = pytest.mark.slow

SMOKE_TRIALS = 4  # shortcut {A, B} x seeds {0, 1}


def _results(run_dir: Path) -> pd.DataFrame:
    return pd.read_parquet(run_dir / "results.parquet")


def test_smoke_study_end_to_end(tmp_path: Path) -> None:
    run_dir = tmp_path / "smoke"
    result = run_cli(str(SMOKE), "--out", str(run_dir))
    assert result.returncode == 0, result.stdout + result.stderr
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
    assert all("val_acc_per_epoch" in t.user_attrs and "test_acc" in t.user_attrs for t in complete)
    assert run["finished"] and run["trial_counts"] == {"complete": 4, "failed": 0, "pruned": 0}
    assert run["versions"]["torch"] and run["hardware"]["cpus"] >= 1
    # The local dashboard listens on loopback only.
    assert "Ray dashboard: http://127.0.0.1:" in result.stdout
    # One line per finished trial, not a flood.
    assert sum("] trial_" in line for line in result.stdout.splitlines()) == SMOKE_TRIALS
    # Top-k weights are kept (keep_checkpoints defaults to 3).
    kept = results[results["checkpoint"] != ""]
    assert len(kept) == 3
    assert all((run_dir / c / "model.safetensors").is_file() for c in kept["checkpoint"])
    assert kept["val_acc_best"].min() >= results["val_acc_best"].nlargest(3).min()
    assert len(list((run_dir / "checkpoints").iterdir())) == 3


def test_a_failing_trial_is_recorded_and_the_study_goes_on(tmp_path: Path) -> None:
    run_dir = tmp_path / "failing"
    result = run_cli(str(SMOKE), "--out", str(run_dir), "--no-dashboard", "--no-report",
                     "--set", "train.lr={choice: [0.05, 1.0e+30]}", "--set", "train.momentum=0.0",
                     "--set", "space.shortcut=B", "--set", "search.seeds=[0]")
    assert result.returncode == 0, result.stdout + result.stderr
    results = _results(run_dir)
    assert len(results) == 2
    failed = results[results["status"] == "failed"]
    assert len(failed) == 1 and failed["train.lr"].iloc[0] == 1e30
    assert failed["error"].iloc[0].startswith("diverged: training loss became")
    assert (results[results["status"] == "complete"]["train.lr"] == 0.05).all()
    study = optuna.load_study(study_name="smoke", storage=f"sqlite:///{run_dir / 'study.db'}")
    assert len(study.get_trials(states=(optuna.trial.TrialState.FAIL,))) == 1


def test_asha_prunes_on_val_acc_and_every_record_agrees(tmp_path: Path) -> None:
    run_dir = tmp_path / "asha"
    result = run_cli(str(SMOKE), "--out", str(run_dir), "--no-dashboard", "--no-report",
                     "--set", "search.scheduler=asha", "--set", "train.epochs=4",
                     "--set", "search.seeds=[0, 1, 2, 3]",
                     "--set", "search.asha={grace_period: 1, reduction_factor: 2}")
    assert result.returncode == 0, result.stdout + result.stderr
    results = _results(run_dir).set_index("trial_id")
    assert len(results) == 8
    pruned, complete = results[results["status"] == "pruned"], results[results["status"] == "complete"]
    assert len(pruned) >= 1 and len(complete) >= 1
    assert (pruned["epochs_run"] < 4).all() and pruned["test_acc"].isna().all()
    assert pruned["error"].str.startswith("stopped early by the scheduler").all()
    assert (complete["epochs_run"] == 4).all() and complete["test_acc"].notna().all()
    curves = pd.read_parquet(run_dir / "curves.parquet").groupby("trial_id")["epoch"].max()
    assert (curves.loc[results.index] == results["epochs_run"]).all()
    study = optuna.load_study(study_name="smoke", storage=f"sqlite:///{run_dir / 'study.db'}")
    states = {f"trial_{t.number:04d}": t.state.name.lower() for t in study.trials}
    assert states == results["status"].to_dict()


def test_resume_after_the_driver_is_killed(tmp_path: Path) -> None:
    run_dir = tmp_path / "killed"
    args = [str(SMOKE), "--out", str(run_dir), "--no-dashboard", "--no-report",
            "--set", "train.epochs=3", "--set", "search.max_concurrent=1",
            "--set", "data.synthetic_train=1024"]
    environment = {**os.environ, "PYTHONUNBUFFERED": "1"}
    environment.pop("RAY_ADDRESS", None)
    driver = subprocess.Popen([sys.executable, "-m", "search.run", *args], cwd=ROOT,
                              stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL,
                              env=environment, start_new_session=True)
    try:
        deadline = time.time() + 300
        while time.time() < deadline:
            if (run_dir / "results.parquet").exists() and len(_results(run_dir)) >= 1:
                break
            time.sleep(0.5)
        else:
            pytest.fail("no trial finished within 300 s")
        os.kill(driver.pid, signal.SIGKILL)  # the driver only: no clean shutdown
        driver.wait(timeout=30)
    finally:
        try:  # then clear the orphaned Ray processes of that session
            os.killpg(driver.pid, signal.SIGKILL)
        except ProcessLookupError:
            pass
    before = _results(run_dir)
    assert 1 <= len(before) < SMOKE_TRIALS
    result = run_cli(*args, "--resume")
    assert result.returncode == 0, result.stdout + result.stderr
    assert "resuming smoke:" in result.stdout
    after = _results(run_dir)
    assert len(after) == SMOKE_TRIALS
    assert set(after["status"]) == {"complete"}
    # Nothing completed before the kill was lost or rerun.
    kept = after.set_index("trial_id").loc[before["trial_id"]]
    assert list(kept["wall_s"]) == list(before["wall_s"])
    assert list(kept["test_acc"]) == list(before["test_acc"])
    # Every (point, seed) exactly once among the finished trials.
    assert not after.duplicated(["factor.shortcut", "seed"]).any()


def test_sigterm_ends_the_run_like_ctrl_c(tmp_path: Path) -> None:
    run_dir = tmp_path / "terminated"
    environment = {**os.environ, "PYTHONUNBUFFERED": "1"}
    environment.pop("RAY_ADDRESS", None)
    driver = subprocess.Popen([sys.executable, "-m", "search.run", str(SMOKE), "--out", str(run_dir),
                               "--no-dashboard", "--no-report", "--set", "train.epochs=3",
                               "--set", "search.max_concurrent=1", "--set", "data.synthetic_train=1024"],
                              cwd=ROOT, stdout=subprocess.PIPE, stderr=subprocess.STDOUT, text=True,
                              env=environment, start_new_session=True)
    try:
        deadline = time.time() + 300
        while not (run_dir / "results.parquet").exists() and time.time() < deadline:
            time.sleep(0.5)
        driver.send_signal(signal.SIGTERM)
        output, _ = driver.communicate(timeout=120)
    finally:
        try:
            os.killpg(driver.pid, signal.SIGKILL)
        except ProcessLookupError:
            pass
    assert driver.returncode == 130, output
    assert "the study is not finished; continue with:" in output and "--resume" in output
    run = json.loads((run_dir / "run.json").read_text())
    assert run["finished"] is None and run["trial_counts"]["complete"] >= 1
    assert len(_results(run_dir)) == run["trial_counts"]["complete"]


def test_existing_run_folder_is_refused_without_resume(tmp_path: Path) -> None:
    run_dir = tmp_path / "exists"
    run_dir.mkdir()
    (run_dir / "results.parquet").write_text("precious")
    result = run_cli(str(SMOKE), "--out", str(run_dir))
    assert result.returncode == 2
    assert "the run folder exists; continue it with --resume" in result.stderr
    assert (run_dir / "results.parquet").read_text() == "precious"
    nothing = run_cli(str(SMOKE), "--out", str(tmp_path / "new"), "--resume")
    assert nothing.returncode == 2 and "nothing to resume" in nothing.stderr


@pytest.mark.parametrize("args, expected", [
    (["--bogus"], "unrecognized arguments: --bogus"),
    (["--set", "train.epochz=3"], "did you mean 'epochs'"),
    (["--set", "train.epochs=0"], "train.epochs"),
    (["--set", "noequals"], "noequals"),
    (["--max-concurrent", "0"], "--max-concurrent"),
])
def test_bad_flags_are_one_line_and_status_2(args: list[str], expected: str) -> None:
    result = run_cli(str(SMOKE), "--dry-run", *args) if "--max-concurrent" not in args else \
        run_cli(str(SMOKE), *args)
    assert result.returncode == 2, result.stdout + result.stderr
    assert expected in result.stderr
    assert "Traceback" not in result.stderr
    assert len(result.stderr.strip().splitlines()) == 1


def test_missing_study_file_is_status_2(tmp_path: Path) -> None:
    result = run_cli(str(tmp_path / "absent.yaml"))
    assert result.returncode == 2 and "absent.yaml" in result.stderr and "Traceback" not in result.stderr


def test_missing_data_root_is_status_2_before_ray_starts(tmp_path: Path) -> None:
    result = run_cli(str(SMOKE), "--out", str(tmp_path / "run"), "--set", "data.dataset=cifar10",
                     "--set", f"data.root={tmp_path / 'nowhere'}")
    assert result.returncode == 2, result.stdout + result.stderr
    assert "nowhere" in result.stderr and "Traceback" not in result.stderr
    assert "Ray dashboard" not in result.stdout
