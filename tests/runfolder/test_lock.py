"""The run folder's lock: one writer at a time, a dead writer's lock taken over, a new folder made atomically."""

from __future__ import annotations

import json
import os
import signal
import socket
import subprocess
import sys
import textwrap
from pathlib import Path

import pytest

import runfolder

ROOT = Path(__file__).resolve().parents[2]


def _python(code: str, *args: str) -> subprocess.Popen:
    """A child Python with the repository importable, its stdout piped."""
    env = {**os.environ, "PYTHONPATH": os.pathsep.join(filter(None, [str(ROOT), os.environ.get("PYTHONPATH")]))}
    return subprocess.Popen([sys.executable, "-c", textwrap.dedent(code), *args], stdout=subprocess.PIPE,
                            text=True, env=env)


HOLD = """
    import sys, time, runfolder
    lock = runfolder.RunFolderLock(sys.argv[1], command="holder")
    try:
        lock.acquire()
    except runfolder.RunFolderBusy:
        print("busy", flush=True)
        sys.exit(0)
    print("locked", flush=True)
    time.sleep(float(sys.argv[2]))
    lock.release()
"""


def _dead_pid() -> int:
    """The PID of a process that has exited."""
    child = subprocess.Popen([sys.executable, "-c", "pass"])
    child.wait()
    return child.pid


def test_second_writer_is_refused_with_the_holder(tmp_path: Path) -> None:
    run_dir = tmp_path / "runs" / "x"
    holder = _python(HOLD, str(run_dir), "30")
    try:
        assert holder.stdout.readline().strip() == "locked"
        with pytest.raises(runfolder.RunFolderBusy) as refused:
            runfolder.RunFolderLock(run_dir).acquire()
        message = str(refused.value)
        assert message.startswith(f"{run_dir} is in use by PID {holder.pid} on {socket.gethostname()} since ")
        body = runfolder.read_lock(run_dir)
        assert body["pid"] == holder.pid and body["command"] == "holder"
        assert body["started"] in message
    finally:
        holder.kill()
        holder.wait()


def test_a_second_lock_in_the_same_process_is_refused_too(tmp_path: Path) -> None:
    with runfolder.RunFolderLock(tmp_path / "x"):
        with pytest.raises(runfolder.RunFolderBusy, match=f"PID {os.getpid()} "):
            runfolder.RunFolderLock(tmp_path / "x").acquire()


def test_a_killed_writers_lock_is_taken_over_with_a_note(tmp_path: Path) -> None:
    run_dir = tmp_path / "x"
    holder = _python(HOLD, str(run_dir), "30")
    assert holder.stdout.readline().strip() == "locked"
    holder.send_signal(signal.SIGKILL)
    holder.wait()
    assert runfolder.read_lock(run_dir)["pid"] == holder.pid  # kill -9 leaves the file behind
    with runfolder.RunFolderLock(run_dir) as lock:
        assert lock.previous["pid"] == holder.pid
        assert f"left locked by PID {holder.pid} on {socket.gethostname()}" in lock.note
        assert "no longer running; taking the lock over" in lock.note
        assert runfolder.read_lock(run_dir)["pid"] == os.getpid()


def test_a_stale_lock_file_of_a_dead_pid_is_taken_over(tmp_path: Path) -> None:
    run_dir = tmp_path / "x"
    run_dir.mkdir()
    dead = {"pid": _dead_pid(), "host": socket.gethostname(), "started": "2026-01-01T00:00:00+00:00"}
    runfolder.RunFolder(run_dir).lock.write_text(json.dumps(dead))
    lock = runfolder.RunFolderLock(run_dir).acquire()
    try:
        assert lock.previous == dead and f"PID {dead['pid']}" in lock.note
    finally:
        lock.release()


def test_a_clean_release_leaves_no_lock_and_no_note(tmp_path: Path) -> None:
    run_dir = tmp_path / "x"
    run_dir.mkdir()
    with runfolder.RunFolderLock(run_dir) as lock:
        assert lock.held and runfolder.RunFolder(run_dir).lock.is_file()
    assert not runfolder.RunFolder(run_dir).lock.exists() and run_dir.is_dir()  # a folder it did not make stays
    with runfolder.RunFolderLock(run_dir) as again:
        assert again.previous is None and again.note is None


def test_a_folder_the_lock_made_goes_again_when_nothing_was_written(tmp_path: Path) -> None:
    made = tmp_path / "a" / "b"
    with runfolder.RunFolderLock(made) as lock:
        assert lock.created_folder and made.is_dir()
    assert not made.exists()
    kept = tmp_path / "kept"
    with runfolder.RunFolderLock(kept):
        (kept / "run.json").write_text("{}")
    assert (kept / "run.json").is_file() and not (kept / runfolder.LOCK).exists()


def test_record_rewrites_the_body_in_place(tmp_path: Path) -> None:
    with runfolder.RunFolderLock(tmp_path / "x") as lock:
        inode = os.stat(lock.path).st_ino
        lock.record(ray={"session_dir": "/tmp/ray/session_1", "pids": [1, 2]})
        body = runfolder.read_lock(tmp_path / "x")
        assert body["ray"]["pids"] == [1, 2] and body["pid"] == os.getpid()
        assert os.stat(lock.path).st_ino == inode  # a rename would have swapped the locked file


@pytest.mark.parametrize("session_dir, allowed", [
    ("/tmp/ray/session_2026-11-25_14-52-09_877410_4242", True),
    ("/tmp", False),  # a short string: would match any command line under /tmp
    ("tmp/ray/session_2026-11-25_14-52-09_877410_4242", False),  # relative
    ("/tmp/ray/../ray/session_2026-11-25_14-52-09_877410_4242", False),  # not normalised
    ("/tmp/ray/session_latest", False),  # Ray's link to the newest session: whichever that is
    ("/tmp/ray/session_2026-11-25_14-52-09_877410_4243", False),  # started by another PID than the driver
    ("/tmp/ray/session_2026-11-25_14-52-09_877410_4242/logs", False),
])
def test_a_ray_record_names_a_session_folder_of_rays_shape_started_by_its_driver(session_dir: str,
                                                                                 allowed: bool) -> None:
    document = {"session_dir": session_dir, "node_id": "ab" * 28, "uid": 1000,
                "boot_id": "0f1e2d3c-4b5a-4978-8695-a4b3c2d1e0f9", "driver": [4242, 100], "processes": [[4300, 120]]}
    if allowed:
        record = runfolder.RayRecord.from_dict(document)
        assert record.to_dict() == document and record.processes == (runfolder.RecordedProcess(4300, 120),)
    else:
        with pytest.raises(ValueError, match="session_dir"):
            runfolder.RayRecord.from_dict(document)


@pytest.mark.parametrize("field, value", [("processes", [[4300]]), ("processes", [[True, 120]]),
                                          ("processes", [[4300, 120]] * 257), ("driver", None),
                                          ("node_id", "ab"), ("boot_id", "x"), ("uid", -1), ("uid", "1000")])
def test_a_ray_record_of_another_shape_is_refused(field: str, value: object) -> None:
    document = {"session_dir": "/tmp/ray/session_2026-11-25_14-52-09_877410_4242", "node_id": "ab" * 28,
                "uid": 1000, "boot_id": "0f1e2d3c-4b5a-4978-8695-a4b3c2d1e0f9", "driver": [4242, 100],
                "processes": [[4300, 120]], field: value}
    with pytest.raises(ValueError):
        runfolder.RayRecord.from_dict(document)


def test_a_taken_over_lock_tells_who_owns_its_file(tmp_path: Path) -> None:
    (tmp_path / "x").mkdir()
    (tmp_path / "x" / runfolder.LOCK).write_text(json.dumps({"pid": 1 << 30, "host": "h"}))
    with runfolder.RunFolderLock(tmp_path / "x") as lock:
        assert lock.previous["pid"] == 1 << 30 and lock.previous_uid == os.getuid()


def test_two_writers_started_at_once_on_a_new_folder_never_both_get_it(tmp_path: Path) -> None:
    # Three new folders, four writers racing for each, all twelve at once (each winner holds for 3 s, so every
    # loser of its folder tries while the lock is held).
    racers = {attempt: [_python(HOLD, str(tmp_path / f"new{attempt}"), "3") for _ in range(4)] for attempt in range(3)}
    for attempt, children in racers.items():
        outcomes = sorted(child.communicate(timeout=120)[0].strip() for child in children)
        assert outcomes == ["busy", "busy", "busy", "locked"], (attempt, outcomes)


@pytest.mark.parametrize("below", ["", "run"])
def test_a_path_that_cannot_be_a_folder_is_refused(tmp_path: Path, below: str) -> None:
    (tmp_path / "file").write_text("precious")
    with pytest.raises(runfolder.RunFolderError, match=f"{tmp_path / 'file'} is a file, not a folder"):
        runfolder.RunFolderLock(tmp_path / "file" / below).acquire()
    assert (tmp_path / "file").read_text() == "precious"


def test_without_create_a_missing_folder_is_refused(tmp_path: Path) -> None:
    with pytest.raises(runfolder.RunFolderError, match="no such run folder"):
        runfolder.RunFolderLock(tmp_path / "absent", create=False).acquire()
    assert not (tmp_path / "absent").exists()


def test_holder_text_says_what_is_known() -> None:
    assert runfolder.holder_text({"pid": 7, "host": "h", "started": "T"}) == "PID 7 on h since T"
    assert "has not written" in runfolder.holder_text(None)
