"""python -m search.run keeps run folders safe: one driver per folder, judged before written, outputs checked first.

Every refusal here happens before Ray starts, so those cases call main() in
this process on a finished run folder built without Ray (the smoke study's
four trials, written through runfolder and Optuna as the runner writes them).
One slow test runs a real driver: its Ray listens on 127.0.0.1 only, a second
driver is refused while it runs, and after kill -9 the next --resume stops
what it left running.
"""

from __future__ import annotations

import contextlib
import ipaddress
import itertools
import json
import os
import signal
import socket
import subprocess
import sys
import time
from pathlib import Path
from typing import Callable

import optuna
import pandas as pd
import pytest

import runfolder
import space
from commands import ROOT, SMOKE, CliResult, call_main, module_env
from search import run as search_run
from search import train as search_train
from search._resume import RunError, check_run_dir, requeue_lost

FINISHED_AT = "2026-11-24T16:00:00+00:00"


def _main(capsys: pytest.CaptureFixture[str], *args: str) -> CliResult:
    """search.run.main(ARGS) in this process; Ray must not have started."""
    result = call_main(search_run.main, list(args), capsys)
    ray = sys.modules.get("ray")
    assert ray is None or not ray.is_initialized(), "bad input must be refused before Ray starts"
    return result


@pytest.fixture
def finished_run(tmp_path: Path) -> Path:
    """A finished run of the smoke study: study.yaml, run.json, study.db, trials.jsonl and tables agreeing."""
    optuna.logging.set_verbosity(optuna.logging.WARNING)
    study = space.load_study(SMOKE)
    run_dir = tmp_path / "smoke"
    run_dir.mkdir()
    folder = runfolder.RunFolder(run_dir)
    runfolder.atomic_write_text(folder.study_yaml, study.to_yaml())
    runfolder.write_run_json(run_dir, {"study": study.name, "started": FINISHED_AT, "finished": FINISHED_AT,
                                       "attempts": 1, "wall_s": 10.0, "device_hours": 0.0})
    storage = optuna.create_study(study_name=study.name, storage=folder.storage_url(), direction="maximize")
    seeds = optuna.distributions.CategoricalDistribution(list(study.search.seeds))
    tables = runfolder.ResultsTables(run_dir)
    for number, (point, seed) in enumerate(itertools.product(space.grid_points(study), study.search.seeds)):
        plan = space.resolve(study, {"point": point.label, "seed": seed})
        storage.add_trial(optuna.trial.create_trial(params={"seed": seed}, distributions={"seed": seeds}, value=0.5))
        row = runfolder.trial_row(number=number, status="complete", seed=seed, factors=plan.factors,
                                  spec=plan.spec, train=plan.train.to_dict(),
                                  metrics={"val_acc_best": 0.5, "val_acc_final": 0.5, "test_acc": 0.5})
        tables.add_trial(row, [{"epoch": 1, "train_loss": 1.0, "val_acc": 0.5}])
    tables.close()
    return run_dir


def _resume(capsys: pytest.CaptureFixture[str], run_dir: Path) -> str:
    """--resume on `run_dir`: exit 2 with one line, run.json not rewritten; the line."""
    before = runfolder.RunFolder(run_dir).run_json.read_bytes() if runfolder.RunFolder(run_dir).run_json.is_file() \
        else None
    line = _main(capsys, str(SMOKE), "--out", str(run_dir), "--resume").bad_input_line()
    after = runfolder.RunFolder(run_dir).run_json.read_bytes() if runfolder.RunFolder(run_dir).run_json.is_file() \
        else None
    assert after == before, "a refused resume must not rewrite run.json"
    assert not runfolder.RunFolder(run_dir).lock.exists()
    return line


# ------------------------------------------------------------------ one driver per folder
def test_a_second_driver_is_refused_while_the_folder_is_locked(finished_run: Path,
                                                                capsys: pytest.CaptureFixture[str]) -> None:
    with runfolder.RunFolderLock(finished_run, command="python -m search.run"):
        line = _main(capsys, str(SMOKE), "--out", str(finished_run), "--resume").bad_input_line()
        assert f"{finished_run} is in use by PID {os.getpid()} on {socket.gethostname()} since " in line
        assert runfolder.read_lock(finished_run)["pid"] == os.getpid()  # the holder's lock is untouched
    fresh = finished_run.parent / "fresh"
    with runfolder.RunFolderLock(fresh):  # a driver that has just made a new folder
        assert "is in use by PID" in _main(capsys, str(SMOKE), "--out", str(fresh)).bad_input_line()


def test_retrain_is_refused_while_a_driver_holds_the_folder(finished_run: Path,
                                                            capsys: pytest.CaptureFixture[str]) -> None:
    from search import retrain as search_retrain

    with runfolder.RunFolderLock(finished_run, command="python -m search.run"):
        result = call_main(search_retrain.main, [str(finished_run), "--top", "1", "--seeds", "1", "--no-report"],
                           capsys)
        assert f"{finished_run} is in use by PID {os.getpid()}" in result.bad_input_line()
    assert not (finished_run / runfolder.RETRAIN_PARQUET).exists()


def test_a_refused_new_run_leaves_no_folder_behind(tmp_path: Path, capsys: pytest.CaptureFixture[str]) -> None:
    # The lock makes the folder; a run refused before writing (here: no cluster answers) takes it away again.
    out = tmp_path / "new"
    result = _main(capsys, str(SMOKE), "--out", str(out), "--address", "127.0.0.1:1", "--connect-timeout", "0.5")
    assert "no Ray cluster answered" in result.bad_input_line()
    assert not out.exists()


# ------------------------------------------------------------------ resume: judged before written
DAMAGE: dict[str, tuple[Callable[[runfolder.RunFolder], None], str]] = {
    "results.parquet truncated, no log": (
        lambda f: (f.trials_log.unlink(), _truncate(f.results)), "results.parquet: not a readable parquet file"),
    "curves.parquet truncated, no log": (
        lambda f: (f.trials_log.unlink(), _truncate(f.curves)), "curves.parquet: not a readable parquet file"),
    "no trial_id column, no log": (
        lambda f: (f.trials_log.unlink(), _drop_trial_id(f)), "missing column(s) trial_id"),
    "study.db is not SQLite": (lambda f: f.study_db.write_text("not a database"), "study.db: not an SQLite database"),
    "study.db truncated": (lambda f: _truncate(f.study_db, 4096), "study.db: a damaged SQLite database"),
    "study.db of another program": (lambda f: _other_sqlite(f.study_db), "study.db: an SQLite database without "
                                                                         "Optuna's tables"),
    "run.json invalid": (lambda f: f.run_json.write_text("{\"study\": "), "run.json: not readable JSON"),
    "run.json a list": (lambda f: f.run_json.write_text("[1, 2]"), "expected a JSON object at the top level, got list"),
    "a corrupt log line": (lambda f: _corrupt_first_line(f.trials_log), "trials.jsonl:1: not a trial-log line"),
    "log and tables gone": (lambda f: [p.unlink() for p in (f.trials_log, f.results, f.results_csv, f.curves,
                                                            f.curves_csv)],
                            "holds 4 finished trial(s) (trial_0000, trial_0001, trial_0002, trial_0003) but the "
                            "folder has no record of them"),
    "study.db gone": (lambda f: f.study_db.unlink(), "records 4 trial(s) but"),
    "study.db of another run": (lambda f: _storage_of_another_run(f),
                                "does not hold (trial_0001, trial_0002, trial_0003)"),
    "study.yaml gone": (lambda f: f.study_yaml.unlink(), "study.yaml: missing"),
}


def _truncate(path: Path, size: int = 100) -> None:
    with path.open("r+b") as handle:
        handle.truncate(size)


def _drop_trial_id(folder: runfolder.RunFolder) -> None:
    frame = pd.read_parquet(folder.results).drop(columns=["trial_id"])
    frame.to_parquet(folder.results, index=False)
    frame.to_csv(folder.results_csv, index=False)


def _other_sqlite(path: Path) -> None:
    import sqlite3

    path.unlink()
    with sqlite3.connect(path) as connection:
        connection.execute("CREATE TABLE notes (text TEXT)")


def _corrupt_first_line(path: Path) -> None:
    lines = path.read_bytes().split(b"\n")
    path.write_bytes(b"\n".join([b"{not json", *lines[1:]]))


def _storage_of_another_run(folder: runfolder.RunFolder) -> None:
    folder.study_db.unlink()
    other = optuna.create_study(study_name="smoke", storage=folder.storage_url())
    other.add_trial(optuna.trial.create_trial(params={}, distributions={}, value=0.1))


@pytest.mark.parametrize("damage", list(DAMAGE))
def test_resume_on_a_damaged_or_disagreeing_folder_is_one_line_before_any_write(
        damage: str, finished_run: Path, capsys: pytest.CaptureFixture[str]) -> None:
    make, expected = DAMAGE[damage]
    make(runfolder.RunFolder(finished_run))
    line = _resume(capsys, finished_run)
    assert expected in line
    assert "restore" in line or "; fix or delete that line" in line  # how to recover


def test_results_deleted_but_log_present_resumes_from_the_log(finished_run: Path) -> None:
    folder = runfolder.RunFolder(finished_run)
    for path in (folder.results, folder.results_csv, folder.curves, folder.curves_csv):
        path.unlink()
    saved = check_run_dir(space.load_study(SMOKE), finished_run, resume=True)
    assert saved is not None and saved.finished == FINISHED_AT


def test_a_new_run_refuses_an_existing_folder_even_with_only_a_stale_lock_beside_it(finished_run: Path) -> None:
    with pytest.raises(RunError, match="the run folder exists"):
        check_run_dir(space.load_study(SMOKE), finished_run, resume=False)
    empty = finished_run.parent / "empty"
    with runfolder.RunFolderLock(empty):  # the lock file alone does not make a folder "existing"
        assert check_run_dir(space.load_study(SMOKE), empty, resume=False) is None


def test_a_folder_left_before_run_json_is_started_afresh_not_resumed(finished_run: Path, tmp_path: Path,
                                                                      capsys: pytest.CaptureFixture[str]) -> None:
    """A driver killed after writing study.yaml (and a fixed run's plans.json) but before run.json computed nothing:
    a new start takes the folder, and --resume says to start without it (each used to send the user to the other)."""
    left = tmp_path / "left"
    left.mkdir()
    (left / runfolder.STUDY_YAML).write_bytes((finished_run / runfolder.STUDY_YAML).read_bytes())
    runfolder.write_plans(left, [])
    with runfolder.RunFolderLock(left):
        assert check_run_dir(space.load_study(SMOKE), left, resume=False) is None
    line = _resume(capsys, left)
    assert "nothing to resume (no run.json: no run began there); start the study without --resume" in line
    # Anything a run computes makes the folder a run's: a log line without run.json is refused, as before.
    (left / runfolder.TRIALS_LOG).write_text("")
    with pytest.raises(RunError, match="the run folder exists"):
        check_run_dir(space.load_study(SMOKE), left, resume=False)


def test_trials_the_log_lost_are_trained_again_not_skipped(finished_run: Path, capsys) -> None:
    # A driver killed between Optuna's write and the log's: the storage finished trial_0003, the log lacks it.
    folder = runfolder.RunFolder(finished_run)
    lines = folder.trials_log.read_bytes().splitlines(keepends=True)
    folder.trials_log.write_bytes(b"".join(line for line in lines if b'"trial_0003"' not in line))
    for path in (folder.results, folder.results_csv, folder.curves, folder.curves_csv):
        path.unlink()
    study = space.load_study(SMOKE)
    check_run_dir(study, finished_run, resume=True)  # allowed: exact, since the trial trains again
    existing = optuna.load_study(study_name=study.name, storage=folder.storage_url())
    recorded = set(runfolder.replay_log(folder.trials_log)[0])
    assert requeue_lost(existing, recorded, out=sys.stdout) == [3]
    assert "1 finished trial(s) that the run folder does not record (trial_0003" in capsys.readouterr().out
    waiting = existing.get_trials(states=(optuna.trial.TrialState.WAITING,))
    assert [(t.system_attrs["fixed_params"], t.user_attrs["rerun_of"]) for t in waiting] == [({"seed": 1}, 3)]
    assert requeue_lost(existing, recorded, out=sys.stdout) == []  # queued once, not again on the next resume
    check_run_dir(study, finished_run, resume=True)


# ------------------------------------------------------------------ outputs checked before any work
def test_out_that_is_a_file_is_refused_before_ray(tmp_path: Path, capsys: pytest.CaptureFixture[str]) -> None:
    (tmp_path / "file").write_text("precious")
    for out in (tmp_path / "file", tmp_path / "file" / "run"):
        line = _main(capsys, str(SMOKE), "--out", str(out)).bad_input_line()
        assert f"{tmp_path / 'file'} is a file, not a folder" in line
    assert (tmp_path / "file").read_text() == "precious"


def test_out_under_a_read_only_folder_is_refused_before_ray(read_only_folder: Path,
                                                            capsys: pytest.CaptureFixture[str]) -> None:
    line = _main(capsys, str(SMOKE), "--out", str(read_only_folder / "run")).bad_input_line()
    assert "cannot create the run folder (Permission denied)" in line


def test_train_save_to_a_bad_path_is_refused_before_training(tmp_path: Path, capsys: pytest.CaptureFixture[str],
                                                             monkeypatch: pytest.MonkeyPatch) -> None:
    def never(*args, **kwargs):
        raise AssertionError("training started before --save was checked")

    monkeypatch.setattr(search_train, "fit", never)
    (tmp_path / "file").write_text("x")
    args = ["cifar_resnet20", "--epochs", "1", "--save", str(tmp_path / "file" / "ckpt")]
    result = call_main(search_train.main, args, capsys)
    assert f"--save {tmp_path / 'file' / 'ckpt'}: {tmp_path / 'file'} is a file" in result.bad_input_line()


def test_checkpoint_folders_are_written_whole_with_the_umask(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    import models

    model = models.build(models.preset("cifar_resnet20"))
    previous = os.umask(0o027)
    try:
        folder = models.save_checkpoint(tmp_path / "checkpoints" / "trial_0000", model, metrics={"test_acc": 0.5})
    finally:
        os.umask(previous)
    assert sorted(p.name for p in folder.iterdir()) == ["arch.yaml", "meta.json", "model.safetensors"]
    assert (folder.stat().st_mode & 0o777) == 0o750
    assert all((p.stat().st_mode & 0o777) == 0o640 for p in folder.iterdir())

    import safetensors.torch

    def disk_full(*args, **kwargs):
        raise OSError("disk full")

    monkeypatch.setattr(safetensors.torch, "save_file", disk_full)
    with pytest.raises(OSError, match="disk full"):
        models.save_checkpoint(tmp_path / "checkpoints" / "trial_0001", model)
    assert [p.name for p in (tmp_path / "checkpoints").iterdir()] == ["trial_0000"]  # no half folder


# ------------------------------------------------------------------ search.storage
@pytest.mark.parametrize("storage, expected", [
    ("notaurl", "not a database URL"),
    ("nosuchdb://host/db", "SQLAlchemy has no database type 'nosuchdb'"),
    ("sqlite://", "an in-memory database keeps nothing"),
])
def test_a_storage_optuna_cannot_open_is_refused_in_the_dry_run(storage: str, expected: str,
                                                                capsys: pytest.CaptureFixture[str]) -> None:
    line = _main(capsys, str(SMOKE), "--dry-run", "--set", f"search.storage={storage}").bad_input_line()
    assert "search.storage" in line and expected in line


def test_a_storage_without_its_driver_is_refused_before_ray(tmp_path: Path, capsys: pytest.CaptureFixture[str]) -> None:
    pytest.importorskip("sqlalchemy")
    try:
        import psycopg  # noqa: F401
        pytest.skip("psycopg is installed here")
    except ImportError:
        pass
    url = "postgresql://runner:secret@db.example/studies"
    for extra in (["--dry-run"], ["--out", str(tmp_path / "run")]):
        line = _main(capsys, str(SMOKE), *extra, "--set", f"search.storage={url}").bad_input_line()
        assert "its database driver is not installed (No module named 'psycopg')" in line
        assert "postgresql://runner:***@db.example/studies" in line
    assert not (tmp_path / "run").exists()


def test_a_study_file_storage_error_names_the_file_and_line(tmp_path: Path, capsys: pytest.CaptureFixture[str]) -> None:
    study = tmp_path / "study.yaml"
    study.write_text(SMOKE.read_text() + "  storage: notaurl\n")
    line = _main(capsys, str(study), "--dry-run").bad_input_line()
    assert f"{study}:{len(SMOKE.read_text().splitlines()) + 1}: search.storage: not a database URL" in line


# ------------------------------------------------------------------ joining a cluster
def test_an_address_nobody_answers_gives_up_after_the_connect_timeout(tmp_path: Path,
                                                                      capsys: pytest.CaptureFixture[str]) -> None:
    started = time.monotonic()
    line = _main(capsys, str(SMOKE), "--out", str(tmp_path / "run"), "--address", "127.0.0.1:1",
                 "--connect-timeout", "1").bad_input_line()
    assert 1 <= time.monotonic() - started < 30
    assert "--address 127.0.0.1:1: no Ray cluster answered within 1 s (Connection refused)" in line
    assert not (tmp_path / "run").exists()


@pytest.mark.parametrize("args, expected", [
    (["--address", "nonsense"], "expected HOST:PORT"),
    (["--connect-timeout", "0"], "--connect-timeout: got 0"),
    (["--connect-timeout", "nan"], "--connect-timeout: got nan"),
])
def test_bad_cluster_flags_are_one_line(args: list[str], expected: str, tmp_path: Path,
                                        capsys: pytest.CaptureFixture[str]) -> None:
    assert expected in _main(capsys, str(SMOKE), "--out", str(tmp_path / "run"), *args).bad_input_line()


# ------------------------------------------------------------------ what a killed driver left
SLEEP = "import time; time.sleep(120)"
# A sleeper that starts a child sleeper and prints its PID: a Ray program and the worker it started.
SLEEP_WITH_CHILD = ("import subprocess, sys, time; child = subprocess.Popen([sys.executable, '-c', 'import time; "
                    "time.sleep(120)']); print(child.pid, flush=True); time.sleep(120)")


def _start_time(pid: int) -> int:
    """Field 22 of /proc/PID/stat (clock ticks from boot to the process's start), read here, not by search._ray."""
    return int(Path(f"/proc/{pid}/stat").read_text().rsplit(")", 1)[1].split()[19])


def _ray_record(session: str, driver: int, *processes: int, node: str = "ab" * 28) -> dict:
    """A lock body's `ray` as a driver writes it, naming `processes` by PID and start time."""
    return {"session_dir": session, "node_id": node, "uid": os.getuid(),
            "boot_id": Path("/proc/sys/kernel/random/boot_id").read_text().strip(),
            "driver": [driver, 4242], "processes": [[pid, _start_time(pid)] for pid in processes]}


def _running(pid: int) -> bool:
    try:
        return Path(f"/proc/{pid}/stat").read_text().rsplit(")", 1)[1].split()[0] != "Z"
    except OSError:
        return False


def _sleeper(*args: str, node_id: str | None = None, code: str = SLEEP) -> subprocess.Popen:
    env = {**os.environ, **({"RAY_NODE_ID": node_id} if node_id else {})}
    return subprocess.Popen([sys.executable, "-c", code, *args], env=env, stdout=subprocess.PIPE, text=True)



def _kill(processes: tuple[subprocess.Popen, ...], *grandchildren: int) -> None:
    """Stop what a test started: its sleepers, and the PIDs of those their children started."""
    for process in processes:
        process.kill()
        process.wait()
    for pid in grandchildren:
        with contextlib.suppress(ProcessLookupError):
            os.kill(pid, signal.SIGKILL)

@pytest.mark.skipif(not Path("/proc").is_dir(), reason="finds processes through Linux /proc")
def test_only_the_recorded_rays_processes_are_stopped(tmp_path: Path) -> None:
    import ray

    from search._ray import stop_ray_left_by

    driver = _dead_pid()
    session = str(tmp_path / f"session_2026-11-25_14-52-09_877410_{driver}")
    node = "ab" * 28
    ray_program = str(Path(ray.__file__).parent / "_private" / "log_monitor.py")
    agent = _sleeper(node_id=node)  # an agent: its command line rewritten, its node in the environment
    monitor = _sleeper(ray_program, f"--session-dir={session}", code=SLEEP_WITH_CHILD)  # a Ray program of that session
    worker = int(monitor.stdout.readline())  # the monitor's child, started after it: stopped with it
    reader = _sleeper(f"{session}/logs/raylet.out")  # the user's `tail -f` of its logs: not Ray's, though recorded
    other = _sleeper(ray_program, f"--session-dir={session}", node_id=node)  # a Ray program the record does not name
    everyone = (agent, monitor, reader, other)
    try:
        holder = {"pid": driver, "host": socket.gethostname(),
                  "ray": _ray_record(session, driver, agent.pid, monitor.pid, reader.pid)}
        assert stop_ray_left_by({**holder, "host": "another-host"}) == 0
        assert all(process.poll() is None for process in everyone)
        assert stop_ray_left_by(holder) == 3
        agent.wait(timeout=10)
        monitor.wait(timeout=10)
        deadline = time.monotonic() + 10
        while _running(worker) and time.monotonic() < deadline:
            time.sleep(0.1)
        assert not _running(worker)
        assert reader.poll() is None and other.poll() is None
        assert stop_ray_left_by({"pid": 1, "host": socket.gethostname()}) == 0  # a holder that recorded no Ray
    finally:
        _kill(everyone, worker)


def _titled(title: str, node_id: str, code: str = SLEEP) -> subprocess.Popen:
    """A sleeper whose command line starts with `title` (as setproctitle leaves Ray's agents), its node in the
    environment and no RAY_RAYLET_PID: an agent whose title was written over the start of its environment."""
    env = {key: value for key, value in os.environ.items() if key != "RAY_RAYLET_PID"} | {"RAY_NODE_ID": node_id}
    return subprocess.Popen(["bash", "-c", f'exec -a "{title}" "$0" -c "$1"', sys.executable, code], env=env,
                            stdout=subprocess.PIPE, text=True)


@pytest.mark.skipif(not Path("/proc").is_dir(), reason="finds processes through Linux /proc")
def test_an_agent_whose_raylet_died_is_stopped_by_its_node_and_title(tmp_path: Path) -> None:
    """CI left ray::DashboardAgent and ray::RuntimeEnvAgent running after a kill -9: orphans, with the node id but
    no RAY_RAYLET_PID readable. Such a process is stopped; one of that node whose parent is a live raylet is not,
    nor one of that node without Ray's title."""
    from search._ray import stop_ray_left_by

    driver = _dead_pid()
    session = str(tmp_path / f"session_2026-11-25_14-52-09_877410_{driver}")
    node = "cd" * 28
    # (This Python's path, not sys.executable there: Python takes its own from argv[0], which `exec -a` rewrote.)
    spawn_agent = (f"import subprocess, time; child = subprocess.Popen(['bash', '-c', 'exec -a ray::Agent "
                   f"\"$0\" -c \"import time; time.sleep(120)\"', {sys.executable!r}]); print(child.pid, flush=True); "
                   f"time.sleep(120)")
    orphan = _titled("ray::DashboardAgent", node)          # its parent, this test, is no raylet
    raylet = _titled("/opt/ray/core/src/ray/raylet/raylet", node, code=spawn_agent)  # a live raylet not recorded
    agent_of_live_raylet = int(raylet.stdout.readline())
    untitled = _sleeper(node_id=node)                       # of that node, but no Ray program by its title
    everyone = (orphan, raylet, untitled)
    try:
        holder = {"pid": driver, "host": socket.gethostname(), "ray": _ray_record(session, driver, node=node)}
        assert stop_ray_left_by(holder) == 1
        orphan.wait(timeout=10)
        assert _running(agent_of_live_raylet) and raylet.poll() is None and untitled.poll() is None
    finally:
        _kill(everyone, agent_of_live_raylet)


def _forgeries(decoy: int, driver: int, session: str, marker: str) -> dict[str, tuple[dict, int | None]]:
    """Lock bodies (and the lock file's owner) that name the decoy but are not what a dead driver of ours left."""
    host = socket.gethostname()
    genuine = {"pid": driver, "host": host, "ray": _ray_record(session, driver, decoy)}
    ray = genuine["ray"]
    other_session = str(Path(session).with_name(f"session_2026-11-25_14-52-09_877410_{os.getpid()}"))
    return {
        "a marker path for a session (issue 25)": ({**genuine, "ray": {"session_dir": marker, "node_id": "ab" * 28}},
                                                   None),
        "a short string for a session": ({**genuine, "ray": {**ray, "session_dir": "/tmp"}}, None),
        "a relative session folder": ({**genuine, "ray": {**ray, "session_dir": Path(session).name}}, None),
        "the session of a running driver": ({**genuine, "pid": os.getpid(), "ray": {
            **ray, "session_dir": other_session, "driver": [os.getpid(), _start_time(os.getpid())]}}, None),
        "a session another driver started": ({**genuine, "ray": {**ray, "session_dir": other_session}}, None),
        "a PID that started at another time": ({**genuine, "ray": {**ray, "processes": [[decoy, 1]]}}, None),
        "another boot": ({**genuine, "ray": {**ray, "boot_id": "00000000-0000-4000-8000-000000000000"}}, None),
        "another user's record": ({**genuine, "ray": {**ray, "uid": os.getuid() + 1}}, None),
        "a lock file of another user": (genuine, os.getuid() + 1),
        "another host": ({**genuine, "host": "another-host"}, None),
    }


@pytest.mark.skipif(not Path("/proc").is_dir(), reason="finds processes through Linux /proc")
def test_a_forged_lock_stops_nothing(tmp_path: Path) -> None:
    """A lock names a sleeping decoy whose command line holds Ray's folder and a marker path: a takeover of that
    lock leaves it alive, whatever the lock claims, unless every claim checks out."""
    import io

    import ray

    from search._ray import stop_ray_left_by
    from search._resume import take_run_lock

    driver = _dead_pid()
    session = str(tmp_path / f"session_2026-11-25_14-52-09_877410_{driver}")
    marker = str(tmp_path / "marker")
    decoy = _sleeper(str(Path(ray.__file__).parent / "_private" / "log_monitor.py"), f"--session-dir={session}",
                     marker, node_id="ab" * 28)
    try:
        forged = _forgeries(decoy.pid, driver, session, marker)
        run_dir = tmp_path / "run"
        run_dir.mkdir()
        # The way --resume meets it: a folder whose stale lock names the marker.
        (run_dir / runfolder.LOCK).write_text(json.dumps(forged["a marker path for a session (issue 25)"][0]))
        out = io.StringIO()
        take_run_lock(run_dir, out).release()
        assert "taking the lock over" in out.getvalue() and "stopped" not in out.getvalue()
        for name, (body, owner) in forged.items():
            assert stop_ray_left_by(body, written_by=owner) == 0, name
            assert decoy.poll() is None, name
        # The same lock with every claim true stops it: it is that Ray's.
        genuine = {"pid": driver, "host": socket.gethostname(), "ray": _ray_record(session, driver, decoy.pid)}
        assert stop_ray_left_by(genuine, written_by=os.getuid()) == 1
        decoy.wait(timeout=10)
    finally:
        decoy.kill()
        decoy.wait()


def _describe(pids: list[int]) -> list[str]:
    """Each process as its command line, parent and Ray environment, for a failure message."""
    described = []
    for pid in pids:
        try:
            command = Path(f"/proc/{pid}/cmdline").read_bytes().replace(b"\0", b" ")[:120].decode(errors="replace")
            parent = Path(f"/proc/{pid}/stat").read_text().rsplit(")", 1)[1].split()[1]
            ray_env = sorted(v.decode(errors="replace") for v in Path(f"/proc/{pid}/environ").read_bytes().split(b"\0")
                             if v.startswith((b"RAY_NODE_ID", b"RAY_RAYLET_PID")))
            described.append(f"{pid} (parent {parent}) {command!r} {ray_env}")
        except OSError as error:
            described.append(f"{pid}: {error}")
    return described


def _dead_pid() -> int:
    child = subprocess.Popen([sys.executable, "-c", "pass"])
    child.wait()
    return child.pid


# ------------------------------------------------------------------ a real driver: loopback, lock, kill -9
# The programs of a local Ray that listen on TCP besides the driver, each by what its command line names (the
# agents rename themselves "ray::..." a while after they start).
RAY_LISTENERS = {"gcs_server": (b"gcs_server",), "raylet": (b"raylet",),
                 "dashboard agent": (b"dashboard/agent.py", b"ray::DashboardAgent"),
                 "runtime env agent": (b"runtime_env/agent", b"ray::RuntimeEnvAgent")}
SLOW_TRIALS = ["--no-report", "--set", "data.synthetic_train=4096", "--set", "train.epochs=4", "--max-concurrent", "1"]


def _ray_processes(record: dict) -> set[int]:
    """This user's processes that belong to the Ray a lock body records (by session folder or node id)."""
    found = set()
    for entry in Path("/proc").iterdir():
        if not entry.name.isdigit():
            continue
        try:
            if (record["session_dir"].encode() in (entry / "cmdline").read_bytes()
                    or f"RAY_NODE_ID={record['node_id']}".encode() in (entry / "environ").read_bytes().split(b"\0")):
                found.add(int(entry.name))
        except OSError:
            continue
    return found


def _workers_of(ray_pids: set[int], name: bytes) -> set[int]:
    """The Ray workers started by one of `ray_pids` (a raylet) whose command line names `name`."""
    found = set()
    for entry in Path("/proc").iterdir():
        try:
            if entry.name.isdigit() and int((entry / "stat").read_text().rsplit(")", 1)[1].split()[1]) in ray_pids \
                    and _program_is(int(entry.name), name):
                found.add(int(entry.name))
        except (OSError, ValueError):  # gone meanwhile
            continue
    return found


def _listening(pids: set[int]) -> list[tuple[int, str]]:
    """(pid, address) of each TCP socket the processes listen on, from /proc/net/tcp and tcp6."""
    inodes: dict[str, int] = {}
    for pid in pids:
        try:
            for fd in Path(f"/proc/{pid}/fd").iterdir():
                target = os.readlink(fd)
                if target.startswith("socket:["):
                    inodes[target[8:-1]] = pid
        except OSError:
            continue
    found = []
    for table, family in (("tcp", socket.AF_INET), ("tcp6", socket.AF_INET6)):
        for line in Path(f"/proc/net/{table}").read_text().splitlines()[1:]:
            fields = line.split()
            if fields[3] != "0A" or fields[9] not in inodes:  # 0A: LISTEN
                continue
            raw = bytes.fromhex(fields[1].split(":")[0])
            # The kernel prints each 32-bit word of the address in host (little-endian) order.
            packed = b"".join(raw[i:i + 4][::-1] for i in range(0, len(raw), 4))
            found.append((inodes[fields[9]], socket.inet_ntop(family, packed)))
    return found


def _program_is(pid: int, *names: bytes) -> bool:
    """True while `pid` runs a program whose command line names one of `names`."""
    try:
        command = Path(f"/proc/{pid}/cmdline").read_bytes()
    except OSError:
        return False
    return any(name in command for name in names)


def _is_loopback(address: str) -> bool:
    ip = ipaddress.ip_address(address)
    return ip.is_loopback or (ip.version == 6 and ip.ipv4_mapped is not None and ip.ipv4_mapped.is_loopback)


@pytest.mark.slow
@pytest.mark.skipif(not Path("/proc/net/tcp").is_file(), reason="reads listening sockets from Linux /proc")
def test_a_local_run_listens_on_loopback_is_locked_and_cleaned_up_after_kill_9(
        tmp_path: Path, capsys: pytest.CaptureFixture[str]) -> None:
    run_dir = tmp_path / "smoke"
    command = [sys.executable, "-m", "search.run", str(SMOKE), "--out", str(run_dir), *SLOW_TRIALS]
    environment = module_env(PYTHONPATH=str(ROOT))
    driver = subprocess.Popen(command, cwd=ROOT, env=environment, stdout=subprocess.PIPE, stderr=subprocess.STDOUT,
                              text=True)
    try:
        deadline = time.monotonic() + 300
        record: dict = {}
        while not record.get("ray") and time.monotonic() < deadline and driver.poll() is None:
            time.sleep(0.2)  # as the waits below: reading the lock costs next to nothing
            record = runfolder.read_lock(run_dir) or {}
        assert record.get("ray"), f"the driver recorded no Ray in its lock: {record}"
        assert record["pid"] == driver.pid
        # Listening sockets of the driver and of every Ray process it started: loopback only. The agents may
        # come up after ray.init returns: wait until every program that listens does, and until a trial trains
        # (Tune's actor renames its worker "ray::TrialTrainable..."), so that the kill lands mid-trial.
        def missing(sockets: list[tuple[int, str]]) -> list[str]:
            return [program for program, names in RAY_LISTENERS.items()
                    if not any(_program_is(pid, *names) for pid, _ in sockets)]

        sockets: list[tuple[int, str]] = []
        while time.monotonic() < deadline and driver.poll() is None:
            ray_pids = _ray_processes(record["ray"])
            sockets = _listening(ray_pids | {driver.pid})
            if not missing(sockets) and _workers_of(ray_pids, b"ray::TrialTrainable"):
                break
            time.sleep(0.2)
        assert missing(sockets) == [] and any(pid == driver.pid for pid, _ in sockets), sockets
        assert [s for s in sockets if not _is_loopback(s[1])] == []
        # A second driver is refused while this one runs.
        line = _main(capsys, str(SMOKE), "--out", str(run_dir), "--resume", *SLOW_TRIALS).bad_input_line()
        assert f"is in use by PID {driver.pid} on {socket.gethostname()} since {record['started']}" in line
        driver.send_signal(signal.SIGKILL)
        driver.wait()
        # Ray's workers may exit by themselves once the driver is gone. gcs_server and the raylet sometimes
        # follow within seconds, and sometimes stay up for minutes (what issue 10 found): those are what the
        # resume must find and stop. Wait until they are gone or have outlived the driver by 5 s, so that the
        # ones counted here are still there when the resume looks.
        settle = time.monotonic() + 5
        while (left := {pid for pid in _ray_processes(record["ray"]) if _program_is(pid, b"gcs_server", b"raylet")}) \
                and time.monotonic() < settle:
            time.sleep(0.2)
        resume = subprocess.Popen(command + ["--resume"], cwd=ROOT, env=environment, stdout=subprocess.PIPE,
                                  stderr=subprocess.STDOUT, text=True)
        note = resume.stdout.readline()
        assert f"was left locked by PID {driver.pid}" in note and "taking the lock over" in note, note
        if left:
            assert "process(es) of the local Ray it left running" in note, note
        alive = [pid for pid in _ray_processes(record["ray"])
                 if Path(f"/proc/{pid}/stat").is_file()
                 and Path(f"/proc/{pid}/stat").read_text().rsplit(")", 1)[1].split()[0] != "Z"]
        assert alive == [], f"left running after the resume took over: {_describe(alive)}"
        # The resume holds the lock for itself. SIGTERM ends it like Ctrl-C: the tables and run.json are
        # written, the user is told how to continue, and the lock is let go.
        output = note
        while "Ray dashboard:" not in output and resume.poll() is None:  # printed as the trials start
            output += resume.stdout.readline()
        assert runfolder.read_lock(run_dir)["pid"] == resume.pid, output
        resume.send_signal(signal.SIGTERM)
        output += resume.communicate(timeout=300)[0]
        assert resume.returncode == 130, output  # four trials of 4 epochs cannot all have finished
        assert "the study is not finished; continue with:" in output and "--resume" in output, output
        run = json.loads((run_dir / "run.json").read_text())
        assert run["attempts"] == 2 and run["finished"] is None
        recorded = sum(run["trial_counts"].values())  # by the killed driver, and by this one before the signal
        assert recorded == 0 or len(runfolder.read_results(run_dir)) == recorded
        assert not runfolder.RunFolder(run_dir).lock.exists()
    finally:
        for process in (driver, locals().get("resume")):
            if process is not None and process.poll() is None:
                process.kill()
                process.wait()


# ------------------------------------------------------------------ SIGTERM, wherever it lands
def _run_with_tune(tune: Callable[..., None], run_dir: Path, monkeypatch: pytest.MonkeyPatch) -> dict:
    """run_study on the smoke study in this process, with Ray left out and `tune` standing in for Ray Tune."""
    import io

    from search import _runner

    monkeypatch.setattr(_runner, "_start_ray", lambda options, lock: None)
    monkeypatch.setattr(_runner, "shutdown_ray", lambda: None)
    monkeypatch.setattr(_runner, "_tune", tune)
    options = _runner.RunOptions(run_dir=run_dir, dashboard=False, report=False)
    return _runner.run_study(space.load_study(SMOKE), options, out=io.StringIO())


def _sigterm_turned_into(error: Exception) -> Callable[..., None]:
    def tune(*args: object, **kwargs: object) -> None:
        try:
            signal.raise_signal(signal.SIGTERM)  # the runner's handler raises KeyboardInterrupt here
        except KeyboardInterrupt as interrupt:
            raise error from interrupt  # as pydantic did, imported by Ray's serializer while the signal landed
    return tune


def test_a_sigterm_that_library_code_turns_into_another_error_still_ends_the_run_cleanly(
        tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    before = signal.getsignal(signal.SIGTERM)
    document = _run_with_tune(_sigterm_turned_into(TypeError("expected a message argument")), tmp_path / "run",
                              monkeypatch)
    assert document["finished"] is None and document["attempts"] == 1
    assert json.loads((tmp_path / "run" / "run.json").read_text())["finished"] is None
    assert not runfolder.RunFolder(tmp_path / "run").lock.exists()
    assert signal.getsignal(signal.SIGTERM) is before  # the caller's handler again


def test_the_same_error_without_a_sigterm_is_not_taken_for_one(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    def tune(*args: object, **kwargs: object) -> None:
        raise TypeError("a bug")

    with pytest.raises(TypeError, match="a bug"):
        _run_with_tune(tune, tmp_path / "run", monkeypatch)
    assert not runfolder.RunFolder(tmp_path / "run").lock.exists()
