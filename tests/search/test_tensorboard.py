"""`--log tensorboard`: each trial's epochs, settings and final metrics become TensorBoard event files.

The recorder is driven here as Tune's callback drives it in the driver (an
epoch result with the trial's config, then the final result), so no Ray is
needed; the files are read back with TensorBoard's own event reader. The
session's second real smoke run (tests/conftest.py) runs with the flag. A
missing `tensorboard` package is one line naming the extra, exit 2.
"""

from __future__ import annotations

import importlib.util
import io
import math
from pathlib import Path

import pytest

import runfolder
from commands import SMOKE, SmokeRun, call_main
from search import run as search_run
from search._recorder import Recorder, TrialListener
from search._resume import RunError
from search._tensorboard import TensorBoardTracker, trial_settings
from search._trackers import TRACKERS, check_trackers
from tune_events import EPOCHS, epoch_result, final_result, trial_config

pytest.importorskip("tensorboard", reason="the tensorboard extra: pip install 'resnas[tensorboard]'")
from tensorboard.backend.event_processing.event_accumulator import EventAccumulator  # noqa: E402
from tensorboard.plugins.hparams import plugin_data_pb2  # noqa: E402



def _recorder(run_dir: Path) -> Recorder:
    tables = runfolder.ResultsTables(run_dir)
    recorder = Recorder(tables, total=2, started=0.0, keep_checkpoints=0, out=io.StringIO())
    recorder.listeners.append(TensorBoardTracker(run_dir))
    return recorder


def _train(recorder: Recorder, number: int, shortcut: str, seed: int) -> None:
    config = trial_config(number, shortcut, seed)
    tune_id = f"tune_{number}"
    for epoch in range(1, EPOCHS):
        recorder.trial_result(tune_id, epoch_result(config, epoch))
    recorder.trial_result(tune_id, final_result(config))  # the last epoch arrives with the final report
    recorder.trial_finished(tune_id, config, final_result(config))


def _events(folder: Path) -> EventAccumulator:
    accumulator = EventAccumulator(str(folder))
    accumulator.Reload()
    return accumulator


def test_each_trial_gets_event_files_with_its_curve_and_final_metrics(tmp_path):
    recorder = _recorder(tmp_path)
    _train(recorder, 0, "A", 0)
    _train(recorder, 1, "B", 1)
    recorder.tell("close")
    folders = sorted(path.name for path in (tmp_path / "tensorboard").iterdir())
    assert folders == ["trial_0000", "trial_0001"]
    events = _events(tmp_path / "tensorboard" / "trial_0001")
    val_acc = [(event.step, round(event.value, 4)) for event in events.Scalars("curve/val_acc")]
    assert val_acc == [(1, 0.3), (2, 0.4), (3, 0.5)]  # each epoch once, the last one from the final report
    assert {"curve/train_loss", "curve/lr", "final/test_acc", "final/val_acc_best"} <= set(events.Tags()["scalars"])
    assert events.Scalars("final/test_acc")[0].value == pytest.approx(0.45)


def test_the_settings_reach_the_hparams_tab(tmp_path):
    recorder = _recorder(tmp_path)
    _train(recorder, 0, "B", 1)
    recorder.tell("close")
    events = _events(tmp_path / "tensorboard" / "trial_0000")
    content = events.PluginTagToContent("hparams")["_hparams_/session_start_info"]
    start = plugin_data_pb2.HParamsPluginData.FromString(content).session_start_info
    hparams = {name: value.WhichOneof("kind") and getattr(value, value.WhichOneof("kind"))
               for name, value in start.hparams.items()}
    assert hparams["factor.shortcut"] == "B" and hparams["seed"] == 1
    assert hparams["train.lr"] == pytest.approx(0.1) and hparams["train.epochs"] == EPOCHS
    assert hparams["arch.shortcut"] == "B" and hparams["status"] == "complete"


def test_settings_leave_out_missing_values_and_keep_plain_types():
    settings = trial_settings({"seed": 0, "factor.x": None, "train.lr": math.nan, "train.milestones": "(0.5, 0.75)",
                               "arch.depths": "1-1", "val_acc_best": 0.5, "train_json": "{}"})
    assert settings == {"seed": 0, "train.milestones": "(0.5, 0.75)", "arch.depths": "1-1"}


def test_a_trial_trained_again_replaces_its_old_events(tmp_path):
    stale = tmp_path / "tensorboard" / "trial_0000"
    stale.mkdir(parents=True)
    (stale / "events.out.tfevents.old").write_bytes(b"from an interrupted attempt")
    recorder = _recorder(tmp_path)
    _train(recorder, 0, "A", 0)
    recorder.tell("close")
    names = [path.name for path in stale.iterdir()]
    assert "events.out.tfevents.old" not in names and len(names) == 1


def test_a_failing_listener_never_loses_a_trial(tmp_path):
    class Broken(TrialListener):
        def trial(self, row, curve):
            raise OSError("disk full")

    recorder = _recorder(tmp_path)
    recorder.listeners.insert(0, Broken())
    _train(recorder, 0, "A", 0)
    assert "trial_0000" in recorder.tables.rows
    assert "Broken.trial failed (OSError: disk full); the study goes on" in recorder.out.getvalue()
    assert (tmp_path / "tensorboard" / "trial_0000").is_dir()  # the next listener still heard of it


def test_a_missing_package_names_the_extra(monkeypatch):
    real = importlib.util.find_spec
    monkeypatch.setattr(importlib.util, "find_spec", lambda name, *a: None if name == "tensorboard" else real(name, *a))
    with pytest.raises(RunError, match=r"pip install 'resnas\[tensorboard\]'"):
        check_trackers(["tensorboard"])


def test_the_flag_without_the_package_is_one_line_and_status_2_before_anything_starts(monkeypatch, tmp_path, capsys):
    real = importlib.util.find_spec
    monkeypatch.setattr(importlib.util, "find_spec", lambda name, *a: None if name == "tensorboard" else real(name, *a))
    out = tmp_path / "smoke"
    result = call_main(search_run.main, [str(SMOKE), "--out", str(out), "--log", "tensorboard"], capsys)
    line = result.bad_input_line()
    assert "--log tensorboard" in line and "resnas[tensorboard]" in line
    assert not out.exists()


def test_an_unknown_tracker_is_refused_with_the_choices(capsys, tmp_path):
    result = call_main(search_run.main, [str(SMOKE), "--out", str(tmp_path / "x"), "--log", "tensorbored"], capsys)
    line = result.bad_input_line()
    assert "tensorbored" in line and all(name in line for name in TRACKERS)


@pytest.mark.slow
def test_a_real_run_with_the_flag_writes_each_trial_s_events(cluster_run: SmokeRun):
    """A run on the two-node cluster: the events of trials trained on either node."""
    events = sorted((cluster_run.run_dir / "tensorboard").glob("trial_*/events.out.tfevents.*"))
    trials = set(runfolder.read_results(cluster_run.run_dir)["trial_id"])
    assert {path.parent.name for path in events} == trials and len(trials) == 8, cluster_run.stdout
    accumulator = EventAccumulator(str(events[0].parent))
    accumulator.Reload()
    assert accumulator.Tags()["scalars"], cluster_run.stdout  # the epochs' metrics reached the files
