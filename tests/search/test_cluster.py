"""The runner on the session's real two-node Ray cluster: spread over nodes, kill -9 and resume, ASHA, reuse, retrain,
and a trial as two data-parallel workers (search.resources.workers).

The cluster (tests/cluster.py) and its run (`cluster_run`: eight short trials
on the two nodes) are the session's, shared with other modules (tests/conftest.py).
Each test holds `exclusive(cluster)` while its drivers run.
"""

from __future__ import annotations

import json
import os
import select
import shutil
import signal
import subprocess
import sys
import time
from pathlib import Path
from typing import Callable

import optuna
import pandas as pd
import pytest
import torch

import models
import runfolder
from cluster import Cluster, exclusive
from commands import ROOT, SMOKE, CliResult, SmokeRun, drive_here, module_env
from search import retrain as retrain_module
from search import run as search_run
from models._checkpoint import WEIGHTS_FILE
from test_retrain import _durable_runs, _restore_torch_threads  # noqa: F401 (a fixture)

pytestmark = [pytest.mark.slow, pytest.mark.usefixtures("stop_cluster_after_module")]

QUIET = ["--no-report"]
# Trials of a second or two. One at a time where the nodes' spread is not what
# is tested: a signal sent as the first one is recorded lands while others
# remain, and one Ray worker serves every trial (a second costs seconds of
# start-up). --max-concurrent is a flag, not a study field, so a resume may leave it out.
LONGER_TRIALS = ["--set", "train.epochs=2", "--set", "data.synthetic_train=1024"]
ONE_AT_A_TIME = ["--max-concurrent", "1"]
OPTUNA_STATUS = {"COMPLETE": "complete", "FAIL": "failed", "PRUNED": "pruned"}


def _results(run_dir: Path) -> pd.DataFrame:
    """Every trial the run folder holds, materialised or still only in its trial log (a killed driver's last)."""
    return runfolder.read_results(run_dir)


def _storage_status(run_dir: Path) -> dict[str, str]:
    """Each trial of the run's Optuna storage as trial_id -> results-table status."""
    study = optuna.load_study(study_name="smoke", storage=f"sqlite:///{run_dir / 'study.db'}")
    return {f"trial_{t.number:04d}": OPTUNA_STATUS.get(t.state.name, t.state.name) for t in study.trials}


def _drive(cluster: Cluster, main: Callable[[list[str]], int], *args: str) -> CliResult:
    """A driver's `main(ARGS)` joining the cluster, to the end, in this process (the killed drivers are
    `python -m` children: _start_driver)."""
    return drive_here(main, [*args, "--address", cluster.address], env=cluster.env)


def _run(cluster: Cluster, *args: str) -> CliResult:
    """`python -m search.run ARGS` joining the cluster, to the end, in this process."""
    result = _drive(cluster, search_run.main, *args)
    assert result.returncode == 0, result.stdout + result.stderr
    return result


def _start_driver(cluster: Cluster, *args: str, module: str = "search.run") -> subprocess.Popen[str]:
    """`python -m MODULE ARGS` joining the cluster, stdout and stderr in one pipe."""
    return subprocess.Popen([sys.executable, "-m", module, *args, "--address", cluster.address], cwd=ROOT,
                            text=True, stdout=subprocess.PIPE, stderr=subprocess.STDOUT,
                            env=module_env(**cluster.env))


def _read_until_recorded(driver: subprocess.Popen[str], trials: int = 1, timeout: float = 300) -> str:
    """The driver's output up to its `trials`-th trial line (the runner writes a trial's row before its line)."""
    output, seen, deadline = [], 0, time.monotonic() + timeout
    while time.monotonic() < deadline:
        ready, _, _ = select.select([driver.stdout], [], [], 1.0)
        if not ready:
            continue
        line = driver.stdout.readline()
        if not line:
            pytest.fail(f"the run ended before {trials} trials were recorded:\n{''.join(output)}")
        output.append(line)
        seen += "] trial_" in line
        if seen == trials:
            return "".join(output)
    pytest.fail(f"{trials} trials were not recorded within {timeout:.0f} s:\n{''.join(output)}")


def _stop_after(driver: subprocess.Popen[str], signum: int, trials: int = 1) -> tuple[str, int]:
    """Send `signum` once the driver has recorded `trials` more trials; its output and exit status."""
    try:
        output = _read_until_recorded(driver, trials)
        driver.send_signal(signum)
        output += driver.communicate(timeout=120)[0]
    finally:
        if driver.poll() is None:
            driver.kill()
            driver.wait(timeout=30)
    return output, driver.returncode


# First in the module, which is first in the session: the session's cluster run is made here, as soon as the
# cluster is up, and the other workers' modules that read it (reports.compare, replay) wait for it no longer.
def test_study_runs_across_two_nodes(cluster_run: SmokeRun) -> None:
    results = _results(cluster_run.run_dir)
    assert len(results) == 8 and set(results["status"]) == {"complete"}
    # One CPU per node and one per trial: two trials in flight run on different nodes.
    assert results["node_id"].nunique() == 2


def test_kill_9_then_resume_lose_nothing(cluster: Cluster, tmp_path: Path) -> None:
    """A driver killed with -9 once a trial is recorded, resumed: every trial once, nothing recorded lost. One
    learning rate diverges, so a failed trial is kept and resumed past. (SIGTERM, which ends a run like
    Ctrl-C, is tested on a local run in test_run_folder_safety.)"""
    run_dir = tmp_path / "stopped"
    # Weight decay 1 makes lr 10 blow up (each step multiplies the weights by about 1 - lr * wd = -9) within
    # the 64 steps of two epochs; at lr 0.05 it only shrinks them.
    args = [str(SMOKE), "--out", str(run_dir), *QUIET, *LONGER_TRIALS, "--set", "data.synthetic_train=2048",
            "--set", "space.shortcut=B", "--set", "train.lr={choice: [0.05, 10.0]}", "--set", "train.weight_decay=1.0"]
    with exclusive(cluster):
        # kill -9: no clean shutdown (the cluster ends the dead driver's trials).
        output, status = _stop_after(_start_driver(cluster, *args, *ONE_AT_A_TIME), signal.SIGKILL)
        assert status == -signal.SIGKILL, output
        before = _results(run_dir)
        assert 1 <= len(before) < 4
        result = _run(cluster, *args, "--resume", *ONE_AT_A_TIME)
    assert "resuming smoke:" in result.stdout
    after = _results(run_dir)
    # Every (learning rate, seed) exactly once among the finished trials.
    assert sorted(zip(after["train.lr"], after["seed"])) == [(0.05, 0), (0.05, 1), (10.0, 0), (10.0, 1)]
    # Nothing finished before the kill was lost or rerun.
    columns = ["status", "wall_s", "test_acc", "node_id"]
    kept = after.set_index("trial_id").loc[before["trial_id"], columns]
    assert kept.equals(before.set_index("trial_id")[columns])
    # A diverging trial is recorded as failed, and the study goes on.
    failed, complete = after[after["status"] == "failed"], after[after["status"] == "complete"]
    assert len(failed) == len(complete) == 2
    assert (failed["train.lr"] == 10.0).all() and (complete["train.lr"] == 0.05).all()
    assert failed["error"].str.startswith("diverged: training loss became").all()
    # The Optuna storage agrees with the table on every trial in it.
    storage = _storage_status(run_dir)
    assert {trial: storage[trial] for trial in after["trial_id"]} == after.set_index("trial_id")["status"].to_dict()
    assert json.loads((run_dir / "run.json").read_text())["attempts"] == 2


def test_trials_that_do_not_match_train_and_the_others_are_reused(cluster: Cluster, cluster_run: SmokeRun,
                                                                   tmp_path: Path) -> None:
    # A fifth seed: its two trials match nothing and train through Ray Tune; the eight of seeds 0-3 do not.
    run_dir = tmp_path / "five_seeds"
    # The earlier run's study (as it ran: its --set values are in it) with a fifth seed.
    with exclusive(cluster):
        result = _run(cluster, str(cluster_run.run_dir / "study.yaml"), "--out", str(run_dir), *QUIET,
                      "--reuse", str(cluster_run.run_dir), "--set", "search.seeds=[0, 1, 2, 3, 4]", *ONE_AT_A_TIME)
    results = runfolder.read_results(run_dir)
    assert len(results) == 10 and set(results["status"]) == {"complete"}
    reused = results[results[runfolder.REUSED_FROM] != ""]
    trained = results[results[runfolder.REUSED_FROM] == ""]
    assert sorted(reused["seed"]) == [0, 0, 1, 1, 2, 2, 3, 3] and sorted(trained["seed"]) == [4, 4]
    assert (trained["node_id"] != "").all()  # trained by a Ray worker
    by_key = ["factor.shortcut", "seed"]
    before = runfolder.read_results(cluster_run.run_dir).set_index(by_key).sort_index()
    assert (reused.set_index(by_key).sort_index()["test_acc"] == before["test_acc"]).all()
    assert "trials: 10 complete (8 reused from earlier runs)" in result.stdout


def test_asha_prunes_on_val_acc_and_every_record_agrees(cluster: Cluster, tmp_path: Path) -> None:
    run_dir = tmp_path / "asha"
    # One trial at a time: each is judged at a rung against those before it, in the grid's order.
    with exclusive(cluster):
        _run(cluster, str(SMOKE), "--out", str(run_dir), *QUIET, *ONE_AT_A_TIME, "--set", "search.scheduler=asha",
             "--set", "train.epochs=4", "--set", "search.seeds=[0, 1, 2, 3]",
             "--set", "search.asha={grace_period: 1, reduction_factor: 2}")
    results = _results(run_dir).set_index("trial_id")
    assert len(results) == 8
    pruned, complete = results[results["status"] == "pruned"], results[results["status"] == "complete"]
    assert len(pruned) >= 1 and len(complete) >= 1
    assert (pruned["epochs_run"] < 4).all() and pruned["test_acc"].isna().all()
    assert pruned["error"].str.startswith("stopped early by the scheduler").all()
    assert (complete["epochs_run"] == 4).all() and complete["test_acc"].notna().all()
    curves = pd.read_parquet(run_dir / "curves.parquet").groupby("trial_id")["epoch"].max()
    assert (curves.loc[results.index] == results["epochs_run"]).all()
    assert _storage_status(run_dir) == results["status"].to_dict()


def test_retrain_on_the_cluster_survives_kill_9_and_resume(cluster: Cluster, cluster_run: SmokeRun, tmp_path: Path,
                                                           _restore_torch_threads: object) -> None:
    """Top 2 x 2 seeds through the cluster; SIGKILL once a run is durable; --resume finishes every run exactly once.
    (Two seeds, not three: one run at a time, the kill lands right after the first, and two seeds already give each
    architecture its mean ± sample std.)"""
    smoke_copy = Path(shutil.copytree(cluster_run.run_dir, tmp_path / "run"))
    args = [str(smoke_copy), "--top", "2", "--seeds", "2", "--set", "train.epochs=1", "--no-dashboard", "--no-report",
            *ONE_AT_A_TIME]
    with exclusive(cluster):
        driver = _start_driver(cluster, *args, module="search.retrain")
        try:
            deadline = time.monotonic() + 300
            durable: list[dict] = []
            while not durable and driver.poll() is None and time.monotonic() < deadline:
                time.sleep(0.1)
                durable = [row for log in smoke_copy.glob("retrain/*/trials.jsonl") for row in _durable_runs(log)]
            os.kill(driver.pid, signal.SIGKILL)  # no clean shutdown: the lock and the local Ray are left behind
            output = driver.communicate()[0]
        finally:
            if driver.poll() is None:
                driver.kill()
                driver.wait()
        assert durable, f"no retrain run became durable before the deadline:\n{output}"
        (job_dir,) = (smoke_copy / "retrain").iterdir()
        durable = _durable_runs(job_dir / "trials.jsonl")  # and those that finished while it was being killed
        assert len(durable) < 4, "every run finished before the kill; give them more epochs"
        resumed = _drive(cluster, retrain_module.main, *args, "--resume")
    assert resumed.returncode == 0, resumed.stdout + resumed.stderr
    assert "taking the lock over" in resumed.stdout and f"{len(durable)} finished before it was interrupted" \
        in resumed.stdout, resumed.stdout
    table = pd.read_parquet(smoke_copy / "retrain.parquet")
    # Every (architecture, seed) exactly once, each complete, and nothing that finished before the kill lost.
    assert len(table) == 4 and (table["status"] == "complete").all() and table["test_acc"].between(0, 1).all()
    assert sorted(table.groupby("arch_key")["seed"].apply(sorted)) == [[0, 1], [0, 1]]
    before = {row["trial_id"]: row["test_acc"] for row in durable}
    assert {t: a for t, a in zip(table["trial_id"], table["test_acc"]) if t in before} == before
    assert (table["epochs"] == 1).all() and set(table["job"]) == {job_dir.name}
    results = pd.read_parquet(smoke_copy / "results.parquet")
    assert set(table["source_trial_id"]) == set(runfolder.ranked_frame(results).drop_duplicates("arch_key")["trial_id"])
    # The summary line of each architecture: n = 2 seeds.
    assert sum(" ± " in line and line.split()[4] == "2" for line in resumed.stdout.splitlines()) == 2
    # Retrained weights load like any checkpoint and reproduce their recorded accuracy.
    first = table.iloc[0]
    model = models.load(smoke_copy / first["checkpoint"])
    assert model.spec.key() == first["arch_key"]
    assert model.checkpoint_meta["metrics"]["epochs_run"] == 1
    torch.set_num_threads(1)  # each run trained on one thread (cpus: 1)
    assert retrain_module.measure_test_acc(model) == first["test_acc"]
    assert not runfolder.RunFolder(smoke_copy).lock.exists() and not runfolder.RunFolder(job_dir).lock.exists()


def test_a_two_worker_trial_runs_through_search_run(cluster: Cluster, tmp_path: Path) -> None:
    """search.resources.workers: 2: one trial as two gloo workers (one per node); its row says how it ran."""
    run_dir = tmp_path / "run"
    with exclusive(cluster):
        _run(cluster, str(SMOKE), "--out", str(run_dir), *QUIET, "--set", "search.seeds=[0]",
             "--set", "space.shortcut=B", "--set", "search.resources.workers=2", "--set", "search.resources.cpus=1")
    [trial] = runfolder.read_results(run_dir).to_dict("records")
    assert trial["status"] == "complete", trial["error"]
    assert (trial["workers"], trial["global_batch"], trial["base_lr"], trial["batchnorm"]) == \
        (2, 64, 0.1, "BatchNorm2d")
    assert 0 <= trial["val_acc_best"] <= 1 and 0 <= trial["test_acc"] <= 1
    assert len(runfolder.read_curves(run_dir)) == 1  # the one epoch, reported by rank 0 through Tune
    assert (runfolder.RunFolder(run_dir).checkpoint_of(trial["trial_id"]) / WEIGHTS_FILE).is_file()  # rank 0's
