"""The recorder after a kill: a row that became durable before the note of its kept weights gets that note on resume."""

from __future__ import annotations

import io
import time
from pathlib import Path

import pytest

import runfolder
from search._recorder import Recorder


def _row(number: int, val: float) -> dict:
    return runfolder.trial_row(number=number, status="complete", seed=0, factors={"shortcut": "A"}, spec=None,
                               train=None, metrics={"val_acc_best": val, "val_acc_final": val, "test_acc": val})


def _killed_between_row_and_note(run_dir: Path, values: list[float]) -> None:
    """A run folder as a driver killed at that moment leaves it: every row durable, every weights folder written,
    no checkpoint cell noted."""
    tables = runfolder.ResultsTables(run_dir)
    for number, val in enumerate(values):
        tables.add_trial(_row(number, val), [{"epoch": 1, "val_acc": val}], flush=False)
        (runfolder.RunFolder(run_dir).checkpoint_of(runfolder.trial_id(number))).mkdir(parents=True)
    tables.close()


def _resumed(run_dir: Path, keep: int) -> Recorder:
    recorder = Recorder(runfolder.ResultsTables.load(run_dir), total=3, started=time.time(), keep_checkpoints=keep,
                        out=io.StringIO())
    recorder.reconcile_checkpoints()
    recorder.tables.close()
    return recorder


@pytest.mark.parametrize("keep, kept", [(-1, {"trial_0000", "trial_0001", "trial_0002"}), (1, {"trial_0001"})])
def test_a_resume_notes_the_weights_a_killed_driver_kept_but_did_not_note(tmp_path: Path, keep: int, kept: set):
    _killed_between_row_and_note(tmp_path, [0.2, 0.9, 0.5])
    assert set(runfolder.read_results(tmp_path)["checkpoint"]) == {""}
    _resumed(tmp_path, keep)
    results = runfolder.read_results(tmp_path).set_index("trial_id")
    assert {trial for trial, cell in results["checkpoint"].items() if cell} == kept
    for trial in kept:
        assert results.loc[trial, "checkpoint"] == runfolder.checkpoint_cell(trial)
    # With a top-k to keep, the folders outside it go, as after any finished trial.
    on_disk = {path.name for path in runfolder.RunFolder(tmp_path).checkpoints.iterdir()}
    assert on_disk == kept


@pytest.mark.parametrize("keep", [-1, 2])
def test_a_resume_removes_the_checkpoints_of_interrupted_trials(tmp_path: Path, keep: int):
    run_dir = tmp_path / "run"
    _killed_between_row_and_note(run_dir, [0.2, 0.9, 0.5])
    folder = runfolder.RunFolder(run_dir)
    tables = runfolder.ResultsTables.load(run_dir)
    failed = runfolder.trial_row(number=3, status="failed", seed=0, factors={"shortcut": "A"}, spec=None, train=None,
                                 metrics={}, error="RuntimeError: killed")
    tables.add_trial(failed)
    tables.close()
    for trial in ("trial_0003", "trial_0004", "trial_0005"):  # failed; in flight when killed (no row), twice
        (folder.checkpoint_of(trial)).mkdir()
        (folder.checkpoint_of(trial) / "model.safetensors").write_bytes(b"partial")
    # Never through a link: a trial's folder that is a link, and a link inside an orphan, lead to weights kept elsewhere.
    elsewhere = tmp_path / "elsewhere"
    (elsewhere / "inner").mkdir(parents=True)
    (elsewhere / "inner" / "model.safetensors").write_bytes(b"keep")
    folder.checkpoint_of("trial_0006").symlink_to(elsewhere, target_is_directory=True)
    (folder.checkpoint_of("trial_0005") / "link").symlink_to(elsewhere / "inner", target_is_directory=True)
    recorder = _resumed(run_dir, keep)
    on_disk = {path.name for path in folder.checkpoints.iterdir()}
    complete = {"trial_0000", "trial_0001", "trial_0002"} if keep < 0 else {"trial_0001", "trial_0002"}
    assert on_disk == complete | {"trial_0006"}
    assert (elsewhere / "inner" / "model.safetensors").read_bytes() == b"keep"
    assert "removed 3 checkpoint folder(s)" in recorder.out.getvalue()
