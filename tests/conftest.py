"""Fixtures every test package shares: two real runs of the smoke study per session.

Starting Ray costs 15-20 s on 2 cores, so the runner trains the smoke study
for real once, as a user runs it, and every test that only reads a finished
run folder reads that one, or a copy where it changes the folder:

- `smoke_run` is the real run of the tutorial (docs/WRITING_STUDIES.md, step 5):
  in a copy of the checkout, after the tutorial's steps before it,
  `python -m search.run studies/my_ablation.yaml`, the smoke study under a
  new name and question. Local Ray with its dashboard, the live report watched
  while it runs (each page that says "in progress" is kept), the report at the end.
- `smoke_lr_run` is the same study with `--set train.lr=0.05` and
  `--log tensorboard`: the second run of reports.compare's "two runs that
  differ in train.lr".

Tests that use them must be marked `slow`, so that `-m "not slow"` never starts
Ray. `make test` runs the suite on two pytest-xdist workers (`--dist
loadscope`: a module's tests stay on one worker, so the two-node cluster of
tests/search/test_cluster.py starts once). The two workers share each run: the
first to need it trains it under a file lock, and the other reads it.
"""

from __future__ import annotations

import fcntl
import json
import os
import shlex
import shutil
import subprocess
import sys
import time
from pathlib import Path
from typing import Callable, Iterator

import pytest
import yaml

import tutorial
from commands import ROOT, SMOKE, SmokeRun

# Each pytest-xdist worker, and every program it starts, gets its share of the cores for torch's (OpenMP's)
# threads. Left alone, each of two workers runs one thread per core, four on two cores, and OpenMP threads
# spin while they wait: the models tests spent twice the CPU time, and took twice as long.
_WORKERS = int(os.environ.get("PYTEST_XDIST_WORKER_COUNT", "1"))
if _WORKERS > 1:
    os.environ.setdefault("OMP_NUM_THREADS", str(max(1, len(os.sched_getaffinity(0)) // _WORKERS)))
    if "torch" in sys.modules:  # read OMP_NUM_THREADS when it was imported: tell it
        sys.modules["torch"].set_num_threads(int(os.environ["OMP_NUM_THREADS"]))

LR_RUN_ARGS = ("--set", "train.lr=0.05", "--log", "tensorboard", "--no-dashboard")


CLUSTER_MODULE = "tests/search/test_cluster.py"


def pytest_collection_modifyitems(config: pytest.Config, items: list[pytest.Item]) -> None:
    """The longest modules first: the two-node cluster's (minutes, one after another on one worker), then those
    that start a local Ray; xdist hands modules out in this order, so the quick ones fill in beside them."""
    slow_modules = {item.nodeid.split("::")[0] for item in items if item.get_closest_marker("slow") is not None}

    def order(item: pytest.Item) -> int:
        module = item.nodeid.split("::")[0]
        return 0 if module == CLUSTER_MODULE else 1 if module in slow_modules else 2

    items.sort(key=order)  # stable: the order within each module stays


def _shared_root(tmp_path_factory: pytest.TempPathFactory) -> Path:
    """This session's temporary folder, or under xdist the one its workers share."""
    base = tmp_path_factory.getbasetemp()
    return base.parent if os.environ.get("PYTEST_XDIST_WORKER") else base


def _once(tmp_path_factory: pytest.TempPathFactory, name: str, make: Callable[[Path], SmokeRun]) -> SmokeRun:
    """`make(folder)` the first time any worker asks for `name`; every later ask reads what it recorded."""
    folder = _shared_root(tmp_path_factory) / name
    folder.mkdir(exist_ok=True)
    record = folder / "fixture.json"
    with open(folder / "fixture.lock", "w") as lock:
        fcntl.flock(lock, fcntl.LOCK_EX)  # the other worker waits here while the run trains
        if not record.is_file():
            made = make(folder)
            record.write_text(json.dumps({"run_dir": str(made.run_dir), "stdout": made.stdout,
                                          "live_pages": list(made.live_pages), "command": made.command}))
    saved = json.loads(record.read_text())
    return SmokeRun(Path(saved["run_dir"]), saved["stdout"], tuple(saved["live_pages"]), saved["command"])


def _run_watching_the_report(command: list[str], cwd: Path, report: Path) -> tuple[int, str, tuple[str, ...]]:
    """Run `command` to its end; its exit status, output, and each distinct report.html seen "in progress"."""
    process = subprocess.Popen(command, cwd=cwd, env=tutorial.shell_environment(),
                               stdout=subprocess.PIPE, stderr=subprocess.STDOUT, text=True)
    live: list[str] = []
    try:
        while process.poll() is None:
            if report.is_file() and "IN PROGRESS" in (text := report.read_text()) and text not in live:
                live.append(text)
            time.sleep(0.05)
        output = process.stdout.read()
    finally:
        if process.poll() is None:
            process.kill()
            process.wait()
    return process.returncode, output, tuple(live)


def _smoke_run(folder: Path) -> SmokeRun:
    checkout = tutorial.checkout_copy(folder / "checkout")
    run = tutorial.the_run(checkout)
    study_file = checkout / shlex.split(run.text)[3]
    # The tests that read this run count on the smoke study's trials; the tutorial has renamed it and asked
    # its own question, and changed nothing else.
    study, smoke = yaml.safe_load(study_file.read_text()), yaml.safe_load(SMOKE.read_text())
    assert {**study, "name": smoke["name"], "question": smoke["question"]} == smoke, \
        f"the tutorial's real run ({run.text}) is no longer the smoke study under another name"
    run_dir = checkout / "runs" / study["name"]
    returncode, output, live = _run_watching_the_report(["bash", "-c", run.text], checkout, run_dir / "report.html")
    assert returncode == 0, output
    return SmokeRun(run_dir, output, live, run.text)


def _lr_run(folder: Path) -> SmokeRun:
    run_dir = folder / "smoke_lr05"
    command = [sys.executable, "-m", "search.run", str(SMOKE), "--out", str(run_dir), *LR_RUN_ARGS]
    returncode, output, live = _run_watching_the_report(command, ROOT, run_dir / "report.html")
    assert returncode == 0, output
    return SmokeRun(run_dir, output, live, shlex.join(command))


def _require_slow(request: pytest.FixtureRequest) -> None:
    if request.node.get_closest_marker("slow") is None:
        pytest.fail(f"{request.node.nodeid} reads a real run of the smoke study, which starts Ray: mark it slow")


@pytest.fixture(scope="session")
def _smoke_run_once(tmp_path_factory: pytest.TempPathFactory) -> SmokeRun:
    return _once(tmp_path_factory, "smoke", _smoke_run)


@pytest.fixture(scope="session")
def _smoke_lr_run_once(tmp_path_factory: pytest.TempPathFactory) -> SmokeRun:
    return _once(tmp_path_factory, "smoke-lr", _lr_run)


@pytest.fixture
def smoke_lr_run(request: pytest.FixtureRequest) -> SmokeRun:
    """The session's second real smoke run (train.lr 0.05, TensorBoard on), to read only."""
    _require_slow(request)
    return request.getfixturevalue("_smoke_lr_run_once")


@pytest.fixture
def smoke_run(request: pytest.FixtureRequest) -> SmokeRun:
    """The session's real smoke run, to read only (smoke_copy gives a folder to change)."""
    _require_slow(request)
    return request.getfixturevalue("_smoke_run_once")


@pytest.fixture
def smoke_copy(smoke_run: SmokeRun, tmp_path: Path) -> Path:
    """A copy of the real smoke run's folder, which the test may change."""
    return Path(shutil.copytree(smoke_run.run_dir, tmp_path / "smoke"))


@pytest.fixture
def read_only_folder(tmp_path: Path) -> Iterator[Path]:
    """A folder this user cannot write (skipped where it can: root writes anywhere); writable again after."""
    locked = tmp_path / "read_only"
    locked.mkdir()
    locked.chmod(0o555)
    try:
        if os.access(locked, os.W_OK):
            pytest.skip("this user (root) may write a read-only folder")
        yield locked
    finally:
        locked.chmod(0o755)
