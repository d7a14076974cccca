"""`--log mlflow` and `--log wandb`: each trial's epochs, settings and final metrics reach the tracker.

The recorder is driven here as Tune's callback drives it in the driver (epoch
results with the trial's config, then the final result), so no Ray is
needed. MLflow is checked for real, read back from the SQLite store in the run
folder with MlflowClient; W&B writes offline runs, checked on disk. A tracker
whose package is missing is one line naming the extra, exit 2, before
anything starts (search.run and search.retrain alike). TensorBoard has its
own file (test_tensorboard.py).
"""

from __future__ import annotations

import importlib.util
import io
from pathlib import Path

import pytest

import runfolder
import space
from commands import SMOKE, call_main
from search import retrain as search_retrain
from search import run as search_run
from search._recorder import Recorder, TrialListener
from search._resume import RunError
from search._trackers import check_trackers, make_trackers
from search._trial import PLAN
from tune_events import EPOCHS, epoch_result, final_result, trial_config

HAS_MLFLOW = importlib.util.find_spec("mlflow") is not None
HAS_WANDB = importlib.util.find_spec("wandb") is not None


def _run_folder(path: Path) -> Path:
    """A run folder as the runner has it when the trackers start: the study as run."""
    path.mkdir(parents=True)
    (path / "study.yaml").write_text(space.load_study(SMOKE).to_yaml())
    return path


def _recorder(run_dir: Path, tracker: TrialListener) -> Recorder:
    recorder = Recorder(runfolder.ResultsTables(run_dir), total=2, started=0.0, keep_checkpoints=0, out=io.StringIO())
    recorder.listeners.append(tracker)
    return recorder


def _train(recorder: Recorder, number: int, shortcut: str, seed: int, finish: bool = True) -> None:
    config = trial_config(number, shortcut, seed)
    tune_id = f"tune_{number}"
    for epoch in range(1, EPOCHS):
        recorder.trial_result(tune_id, epoch_result(config, epoch))
    if finish:
        recorder.trial_result(tune_id, final_result(config))  # the last epoch arrives with the final report
        recorder.trial_finished(tune_id, config, final_result(config))


# ------------------------------------------------------------------ MLflow
@pytest.fixture(scope="module")
def mlflow_run(tmp_path_factory: pytest.TempPathFactory) -> Path:
    """Two trials logged to the run folder's own MLflow store (created once: seconds of schema set-up)."""
    if not HAS_MLFLOW:
        pytest.skip("the mlflow extra: pip install 'resnas[mlflow]'")
    from search._mlflow import MlflowTracker

    run_dir = _run_folder(tmp_path_factory.mktemp("mlflow") / "smoke")
    with pytest.MonkeyPatch.context() as patch:
        patch.delenv("MLFLOW_TRACKING_URI", raising=False)
        recorder = _recorder(run_dir, MlflowTracker(run_dir))
    _train(recorder, 0, "A", 0)
    _train(recorder, 1, "B", 1)
    recorder.tell("close")
    assert "Tracker." not in recorder.out.getvalue(), recorder.out.getvalue()  # no listener failed
    return run_dir


def _client(run_dir: Path):
    from mlflow.tracking import MlflowClient

    from search._mlflow import default_tracking_uri

    return MlflowClient(tracking_uri=default_tracking_uri(run_dir))


def _runs(run_dir: Path) -> dict:
    client = _client(run_dir)
    experiment = client.get_experiment_by_name("smoke")
    return {run.info.run_name: run for run in client.search_runs([experiment.experiment_id])}


def test_mlflow_has_one_run_per_trial_with_its_curve_settings_and_final_metrics(mlflow_run: Path) -> None:
    assert (mlflow_run / "mlruns" / "mlflow.db").is_file()
    runs = _runs(mlflow_run)
    assert sorted(runs) == ["trial_0000", "trial_0001"]
    run = runs["trial_0001"]
    assert run.info.status == "FINISHED" and run.data.tags["resnas.trial_id"] == "trial_0001"
    assert run.data.tags["resnas.run_dir"] == str(mlflow_run.resolve()) and run.data.tags["resnas.status"] == "complete"
    history = _client(mlflow_run).get_metric_history(run.info.run_id, "val_acc")
    assert sorted((m.step, round(m.value, 4)) for m in history) == [(1, 0.3), (2, 0.4), (3, 0.5)]  # each epoch once
    assert run.data.metrics["final.test_acc"] == pytest.approx(0.45)
    assert run.data.metrics["final.val_acc_best"] == pytest.approx(0.5)
    params = run.data.params
    assert params["factor.shortcut"] == "B" and params["seed"] == "1" and params["arch.shortcut"] == "B"
    assert float(params["train.lr"]) == pytest.approx(0.1) and params["train.epochs"] == str(EPOCHS)


def test_mlflow_runs_a_killed_driver_left_running_are_marked_killed(mlflow_run: Path) -> None:
    from search._mlflow import MlflowTracker

    killed = MlflowTracker(mlflow_run)
    _train(_recorder(mlflow_run, killed), 2, "A", 1, finish=False)  # the driver dies mid-trial: no close()
    assert _runs(mlflow_run)["trial_0002"].info.status == "RUNNING"
    MlflowTracker(mlflow_run)  # the next attempt's tracker
    assert _runs(mlflow_run)["trial_0002"].info.status == "KILLED"
    assert _runs(mlflow_run)["trial_0000"].info.status == "FINISHED"


def test_mlflow_goes_where_the_tracking_uri_says(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    from search._mlflow import tracking_uri

    monkeypatch.delenv("MLFLOW_TRACKING_URI", raising=False)
    assert tracking_uri(tmp_path) == f"sqlite:///{tmp_path.resolve() / 'mlruns' / 'mlflow.db'}"
    monkeypatch.setenv("MLFLOW_TRACKING_URI", "http://127.0.0.1:5000")
    assert tracking_uri(tmp_path) == "http://127.0.0.1:5000"
    from search._trackers import TRACKERS

    assert "http://127.0.0.1:5000 (MLFLOW_TRACKING_URI)" in TRACKERS["mlflow"].where(tmp_path)


# ------------------------------------------------------------------ W&B
@pytest.mark.skipif(not HAS_WANDB, reason="the wandb extra: pip install 'resnas[wandb]'")
def test_wandb_writes_one_offline_run_per_trial_in_the_run_folder(tmp_path: Path,
                                                                   monkeypatch: pytest.MonkeyPatch) -> None:
    from search._wandb import WandbTracker

    monkeypatch.delenv("WANDB_MODE", raising=False)  # no network: offline unless the user says otherwise
    monkeypatch.setenv("WANDB_DISABLE_GIT", "true")
    run_dir = _run_folder(tmp_path / "smoke")
    ((where, tracker),) = make_trackers(["wandb"], run_dir)
    assert f"offline run per trial in {run_dir / 'wandb'}/" in where
    recorder = _recorder(run_dir, tracker)
    _train(recorder, 0, "A", 0)
    _train(recorder, 1, "B", 1)
    recorder.tell("close")
    assert "Tracker." not in recorder.out.getvalue(), recorder.out.getvalue()  # no listener failed
    records = sorted((run_dir / "wandb").glob("offline-run-*/run-*.wandb"))
    assert len(records) == 2
    contents = [path.read_bytes() for path in records]
    # The run's name, its per-epoch metrics and its settings are in each record (protobuf keeps text as is).
    assert sorted(name for name in (b"trial_0000", b"trial_0001") for data in contents if name in data) == [
        b"trial_0000", b"trial_0001"]
    assert all(b"val_acc" in data and b"factor.shortcut" in data and b"final.test_acc" in data for data in contents)
    assert isinstance(tracker, WandbTracker) and tracker.mode == "offline"


def test_wandb_mode_is_the_users_when_set(monkeypatch: pytest.MonkeyPatch) -> None:
    from search._wandb import wandb_mode

    monkeypatch.delenv("WANDB_MODE", raising=False)
    assert wandb_mode() == "offline"
    monkeypatch.setenv("WANDB_MODE", "online")
    assert wandb_mode() == "online"


# ------------------------------------------------------------------ a missing package
def _without(monkeypatch: pytest.MonkeyPatch, module: str) -> None:
    real = importlib.util.find_spec
    monkeypatch.setattr(importlib.util, "find_spec", lambda name, *a: None if name == module else real(name, *a))


@pytest.mark.parametrize("tracker, module", [("mlflow", "mlflow"), ("wandb", "wandb")])
def test_a_missing_package_names_the_extra(tracker: str, module: str, monkeypatch: pytest.MonkeyPatch) -> None:
    _without(monkeypatch, module)
    with pytest.raises(RunError, match=rf"--log {tracker} needs the {module} package.*pip install 'resnas\[{tracker}\]'"):
        check_trackers(["tensorboard", tracker])


def test_the_flag_without_the_package_is_one_line_and_status_2_before_anything_starts(
        tmp_path: Path, monkeypatch: pytest.MonkeyPatch, capsys: pytest.CaptureFixture[str]) -> None:
    _without(monkeypatch, "mlflow")
    out = tmp_path / "smoke"
    line = call_main(search_run.main, [str(SMOKE), "--out", str(out), "--log", "mlflow"], capsys).bad_input_line()
    assert "--log mlflow" in line and "resnas[mlflow]" in line
    assert not out.exists()
    # search.retrain takes the same flag, and refuses the same way before it locks or writes the folder.
    _without(monkeypatch, "wandb")
    run_dir = tmp_path / "run"
    run_dir.mkdir()
    (run_dir / "study.yaml").write_text(SMOKE.read_text())
    tables = runfolder.ResultsTables(run_dir)
    config = trial_config(0, "A", 0)
    plan = space.TrialPlan.from_dict(config[PLAN])
    tables.add_trial(runfolder.trial_row(number=0, status="complete", seed=0, factors=plan.factors, spec=plan.spec,
                                         train=plan.train.to_dict(), metrics={"val_acc_best": 0.5}))
    tables.close()
    line = call_main(search_retrain.main, [str(run_dir), "--top", "1", "--seeds", "1", "--log", "wandb"],
                     capsys).bad_input_line()
    assert "--log wandb" in line and "resnas[wandb]" in line
    assert not (run_dir / "retrain").exists() and not (run_dir / "run.lock").exists()
