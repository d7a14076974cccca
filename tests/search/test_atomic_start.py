"""A start that fails half-way leaves nothing stuck, and a full or read-only disk is one line, at any point.

Ray is left out: each failure happens before Ray would start or where a stub
stands in for Ray Tune, so these run the runner in this process. Writes fail by
fault injection (os.write, which runfolder's atomic text writer uses, and the
Optuna storage's opening), not on a real full disk.
"""

from __future__ import annotations

import errno
import json
import os
import signal
import sqlite3
from pathlib import Path
from typing import Any, Callable, Iterator

import pytest
import yaml

import runfolder
import space
from commands import SMOKE, call_main
from search import _runner
from search import run as search_run
from test_reuse import OPTUNA_STUDY as REUSE_STUDY

# test_reuse's warm-start study, with two trials of two seeds.
OPTUNA_STUDY = REUSE_STUDY.replace("trials: 4, seeds: [0]", "trials: 2, seeds: [0, 1]")
assert OPTUNA_STUDY != REUSE_STUDY


@pytest.fixture(autouse=True)
def _without_ray(monkeypatch: pytest.MonkeyPatch) -> Iterator[None]:
    """Ray left out: nothing starts it, and Tune trains nothing; pytest keeps its SIGTERM handler."""
    handler = signal.getsignal(signal.SIGTERM)
    monkeypatch.setattr(_runner, "_start_ray", lambda options, lock: None)
    monkeypatch.setattr(_runner, "shutdown_ray", lambda: None)
    monkeypatch.setattr(_runner, "_tune", lambda *args, **kwargs: None)
    yield
    signal.signal(signal.SIGTERM, handler)


def _run(capsys: pytest.CaptureFixture[str], run_dir: Path, *args: str, study: Path = SMOKE):
    return call_main(search_run.main, [str(study), "--out", str(run_dir), "--no-report", *args], capsys)


def _refuse_writes(monkeypatch: pytest.MonkeyPatch, code: int = errno.ENOSPC,
                   when: Callable[[str], bool] = lambda target: True) -> None:
    """os.write raises OSError(code) for files whose path `when` accepts, as a full (or read-only) disk does."""
    write = os.write

    def refusing(fd: int, data: Any) -> int:
        try:
            target = os.readlink(f"/proc/self/fd/{fd}")
        except OSError:
            target = ""
        if when(target):
            raise OSError(code, os.strerror(code))
        return write(fd, data)

    monkeypatch.setattr(os, "write", refusing)


def test_a_full_disk_at_start_is_one_line_and_leaves_no_folder(tmp_path: Path, capsys: pytest.CaptureFixture[str],
                                                              monkeypatch: pytest.MonkeyPatch) -> None:
    _refuse_writes(monkeypatch)
    line = _run(capsys, tmp_path / "run").bad_input_line()
    assert f"{tmp_path / 'run' / runfolder.STUDY_YAML}: cannot write there: no space left on the device" in line
    assert "free, " in line and "bytes needed" in line and "--resume" in line
    assert not (tmp_path / "run").exists()


def test_a_read_only_disk_mid_start_is_one_line(tmp_path: Path, capsys: pytest.CaptureFixture[str],
                                               monkeypatch: pytest.MonkeyPatch) -> None:
    _refuse_writes(monkeypatch, errno.EROFS)
    line = _run(capsys, tmp_path / "run").bad_input_line()
    assert "study.yaml: cannot write there: a read-only file system" in line


def test_a_start_stopped_before_run_json_is_explained_then_taken_by_the_next(
        tmp_path: Path, capsys: pytest.CaptureFixture[str], monkeypatch: pytest.MonkeyPatch) -> None:
    """run.json is the folder's birth marker, written last: a start the disk stopped there left study.yaml and a
    whole study.db; --resume says no run began, and the next start takes the folder."""
    run_dir = tmp_path / "run"
    with monkeypatch.context() as patch:
        _refuse_writes(patch, when=lambda target: f"/.{runfolder.RUN_JSON}." in target)
        line = _run(capsys, run_dir).bad_input_line()
    assert f"{run_dir / runfolder.RUN_JSON}: cannot write there: no space left on the device" in line
    assert (run_dir / runfolder.STUDY_DB).is_file() and not (run_dir / runfolder.RUN_JSON).exists()
    resumed = _run(capsys, run_dir, "--resume").bad_input_line()
    assert "nothing to resume (no run.json: no run began there); start the study without --resume" in resumed
    again = _run(capsys, run_dir)
    assert again.returncode == 130, again.stderr  # started; the stub trained nothing, so it is not finished
    assert "an earlier start stopped before run.json (no trial ran); starting it afresh" in again.stdout
    assert json.loads((run_dir / runfolder.RUN_JSON).read_text())["attempts"] == 1


def test_a_full_disk_while_sqlite_makes_study_db_is_one_line_and_the_next_start_takes_the_folder(
        tmp_path: Path, capsys: pytest.CaptureFixture[str], monkeypatch: pytest.MonkeyPatch) -> None:
    """It used to leave a half-made study.db and a message about another Optuna version."""
    import sqlalchemy.exc

    run_dir = tmp_path / "run"

    def full_disk(url: str) -> None:
        (run_dir / runfolder.STUDY_DB).write_bytes(b"SQLite format 3\x00" + bytes(100))  # SQLite's first page, cut
        raise sqlalchemy.exc.OperationalError("CREATE TABLE studies", {},
                                              sqlite3.OperationalError("database or disk is full"))

    with monkeypatch.context() as patch:
        patch.setattr(_runner, "open_storage", full_disk)
        line = _run(capsys, run_dir).bad_input_line()
    assert f"{run_dir / runfolder.STUDY_DB}: cannot write there: no space left on the device" in line
    assert "Optuna version" not in line
    again = _run(capsys, run_dir)
    assert again.returncode == 130 and "Optuna version" not in again.stderr, again.stderr
    assert "starting it afresh" in again.stdout


def test_a_full_disk_mid_run_is_one_line_and_the_run_is_closed(tmp_path: Path, capsys: pytest.CaptureFixture[str],
                                                              monkeypatch: pytest.MonkeyPatch) -> None:
    run_dir = tmp_path / "run"
    log = run_dir / runfolder.TRIALS_LOG

    def tune(*args: object, **kwargs: object) -> None:  # a trial's record meets a full disk
        raise OSError(errno.ENOSPC, os.strerror(errno.ENOSPC), str(log))

    monkeypatch.setattr(_runner, "_tune", tune)
    line = _run(capsys, run_dir).bad_input_line()
    assert line.startswith(f"error: {log}: cannot write there: no space left on the device")
    assert json.loads((run_dir / runfolder.RUN_JSON).read_text())["attempts"] == 1  # written as the run ended
    assert not (run_dir / runfolder.LOCK).exists()


def test_a_warm_start_from_a_folder_with_a_bad_seed_names_it_before_anything_is_written(
        tmp_path: Path, capsys: pytest.CaptureFixture[str]) -> None:
    """A seed that is not one of this space's is a trial left out, named; it used to crash the start after the new
    folder was written, and the folder was then stuck."""
    study_file = tmp_path / "earlier.yaml"
    study_file.write_text(OPTUNA_STUDY)
    study = space.load_study(study_file)
    earlier = tmp_path / "earlier"
    earlier.mkdir()
    runfolder.atomic_write_text(runfolder.RunFolder(earlier).study_yaml, study.to_yaml())
    import imagefeed

    runfolder.write_run_json(earlier, {"study": study.name, "dataset": imagefeed.load(study.data_settings()).source})
    tables = runfolder.ResultsTables(earlier)
    row = runfolder.trial_row(number=0, status="complete", seed="x", factors={"shortcut": "B", "train.lr": 0.1},
                              spec=None, train=None, metrics={"val_acc_best": 0.9, "val_acc_final": 0.9})
    tables.add_trial(row, [{"epoch": 1, "train_loss": 2.0, "val_acc": 0.9}], flush=False)
    tables.close()
    raw = yaml.safe_load(OPTUNA_STUDY)
    raw["search"]["warm_start"] = {"from": str(earlier), "top": 2}
    warm_file = tmp_path / "warm.yaml"
    warm_file.write_text(yaml.safe_dump(raw))

    dry = call_main(search_run.main, [str(warm_file), "--out", str(tmp_path / "new"), "--dry-run"], capsys)
    assert dry.returncode == 0, dry.stderr
    result = _run(capsys, tmp_path / "new", study=warm_file)
    assert result.returncode == 130 and "Traceback" not in result.stderr, result.stderr
    assert "#trial_0000 not added: seed='x' is outside this space (one of 0, 1)" in result.stdout


def test_the_half_made_folder_rule_is_the_resume_checks_own() -> None:
    """What a start writes before run.json is what check_run_dir lets a new start take (one list, in _resume)."""
    from search._resume import _WRITTEN_BEFORE_RUN_JSON

    assert {runfolder.STUDY_YAML, runfolder.PLANS_JSON, runfolder.STUDY_DB, runfolder.LOCK} <= _WRITTEN_BEFORE_RUN_JSON
    assert runfolder.RUN_JSON not in _WRITTEN_BEFORE_RUN_JSON


@pytest.mark.skipif(os.geteuid() != 0 or not Path("/proc/mounts").is_file(), reason="mounting a tmpfs needs root")
def test_a_small_tmpfs_fills_up_and_gives_one_line(tmp_path: Path, capsys: pytest.CaptureFixture[str]) -> None:
    import subprocess

    mount = tmp_path / "small"
    mount.mkdir()
    if subprocess.run(["mount", "-t", "tmpfs", "-o", "size=64k", "tmpfs", str(mount)]).returncode != 0:
        pytest.skip("mounting a tmpfs is not permitted here")
    try:
        (mount / "filler").write_bytes(bytes(60 * 1024))
        line = _run(capsys, mount / "run").bad_input_line()
        assert "cannot write there: no space left on the device" in line
    finally:
        subprocess.run(["umount", str(mount)])
