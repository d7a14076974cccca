"""Fixtures every test package shares: a two-node Ray cluster and two real runs of the smoke study per session.

Starting Ray costs 15-20 s on 2 cores, so the runner trains the smoke study
for real twice, and every test that only reads a finished run folder reads
one of those, or a copy where it changes the folder:

- `smoke_run` is the real run of the tutorial (docs/WRITING_STUDIES.md, step 5):
  in a copy of the checkout, after the tutorial's steps before it,
  `python -m search.run studies/my_ablation.yaml`, the smoke study under a
  new name and question. Local Ray with its dashboard, the live report watched
  while it runs (each page that says "in progress" is kept), and the actors the
  dashboard lists (Ray's state API, once a second), the report at the end.
- `cluster_run` is the smoke study at `train.lr=0.05`, with longer trials and
  four seeds, `--log tensorboard`, on the session's two-node Ray cluster
  (tests/cluster.py, the `cluster` fixture): the earlier run that retrain and
  reuse build on in tests/search/test_cluster.py, and the second run of
  reports.compare's "two real runs that differ in train.lr".

Tests that use them must be marked `slow`, so that `-m "not slow"` never starts
Ray. `make test` runs the suite on pytest-xdist workers (`--dist
loadscope`: a module's tests stay on one worker). The workers share the
cluster and each run: the first to need one makes it under a file lock, and
the others read what it recorded. The cluster's module stops the cluster when
it ends (once its run is made, nothing else needs it), and the session's
controller stops it otherwise. The cluster's token is made before the workers
start, so that each has it before it imports Ray: the cluster's drivers that
are not killed run inside the worker (commands.drive_here), which saves the
seconds a driver's interpreter and imports cost.
"""

from __future__ import annotations

import atexit
import fcntl
import json
import os
import re
import shlex
import shutil
import subprocess
import sys
import tempfile
import threading
import time
from pathlib import Path
from typing import Callable, Iterator

import pytest
import yaml

import cluster as cluster_module
import tutorial
from commands import SMOKE, SmokeRun, drive_here

# Each pytest-xdist worker, and every program it starts, gets its share of the cores for torch's (OpenMP's)
# threads. Left alone, each of two workers runs one thread per core, four on two cores, and OpenMP threads
# spin while they wait: the models tests spent twice the CPU time, and took twice as long.
_WORKERS = int(os.environ.get("PYTEST_XDIST_WORKER_COUNT", "1"))
if _WORKERS > 1:
    os.environ.setdefault("OMP_NUM_THREADS", str(max(1, len(os.sched_getaffinity(0)) // _WORKERS)))
    if "torch" in sys.modules:  # read OMP_NUM_THREADS when it was imported: tell it
        sys.modules["torch"].set_num_threads(int(os.environ["OMP_NUM_THREADS"]))

# Eight trials of about a second: the runner lets Tune start a worker on each node at once (rather than one
# pending trial at a time, which short trials would keep on the head node's warm worker).
CLUSTER_RUN_ARGS = ("--set", "train.epochs=2", "--set", "data.synthetic_train=1024", "--set",
                    "search.seeds=[0, 1, 2, 3]", "--set", "train.lr=0.05", "--log", "tensorboard", "--no-report")


CLUSTER_MODULE = "tests/search/test_cluster.py"
# `_once` keeps what it made as <shared folder>/<name>/fixture.json; the cluster's is read again to stop it.
ONCE_RECORD = "fixture.json"
CLUSTER_RECORD = "cluster"
CLUSTER_RUN_RECORD = "cluster-run"


SHARED_RUNS = ("smoke_run", "cluster_run")


def pytest_collection_modifyitems(config: pytest.Config, items: list[pytest.Item]) -> None:
    """Modules in the order xdist should hand them out (`make test` passes --no-loadscope-reorder, which keeps it).

    The two-node cluster's module first (minutes, one test after another on one
    worker); then, for each shared run, a module that needs only that run, so
    that the runs train at once on different workers instead of one worker
    waiting for the other's; then the other modules that read the shared runs.
    Then the quick ones, most tests first, with the modules that start a Ray of
    their own spread among them (`_spread`). Within a module, the tests that
    start Ray come first.
    """
    def module(item: pytest.Item) -> str:
        return item.nodeid.split("::")[0]

    def slow(item: pytest.Item) -> bool:
        return item.get_closest_marker("slow") is not None

    def runs_read(item: pytest.Item) -> set[str]:
        """The shared runs a test reads: its fixtures, and those it looks up by a parameter's value (test_replay)."""
        callspec = getattr(item, "callspec", None)
        named = {value for value in callspec.params.values() if isinstance(value, str)} if callspec else set()
        return (set(item.fixturenames) | named) & set(SHARED_RUNS)

    runs_used: dict[str, set[str]] = {}
    tests: dict[str, int] = {}  # in the order collected
    for item in items:
        tests[module(item)] = tests.get(module(item), 0) + 1
        if slow(item):
            runs_used.setdefault(module(item), set()).update(runs_read(item))
    builders = [next((m for m, used in runs_used.items() if used == {run}), None) for run in SHARED_RUNS]
    readers = [name for name, used in runs_used.items() if used]
    own_ray = [name for name, used in runs_used.items() if not used]
    quick = sorted((name for name in tests if name not in runs_used), key=lambda name: -tests[name])
    sequence = list(dict.fromkeys(name for name in [CLUSTER_MODULE, *builders, *readers,
                                                    *_spread(own_ray, quick, tests)] if name in tests))
    position = {name: index for index, name in enumerate(sequence)}
    items.sort(key=lambda item: (position[module(item)], 0 if slow(item) else 1))  # stable: slow ones first


def _spread(own_ray: list[str], quick: list[str], tests: dict[str, int]) -> list[str]:
    """The quick modules in order, with the i-th of n modules that start their own Ray after (i + 1) / (n + 1)
    of the quick tests.

    A Ray start is mostly waiting (15-20 s of processes starting on 2
    cores), as the cluster's module is: handed out right after it, they ran
    side by side and the session used about one core of two for its first two
    minutes. Among the quick modules, each waits beside a worker that computes.
    """
    spread, pending, done, total = [], list(own_ray), 0, sum(tests[name] for name in quick)
    for name in quick:
        while pending and done >= total * (len(own_ray) - len(pending) + 1) / (len(own_ray) + 1):
            spread.append(pending.pop(0))
        spread.append(name)
        done += tests[name]
    return spread + pending


_TOKEN_FOLDER_ENV = "RESNAS_TEST_TOKEN_FOLDER"


def pytest_configure(config: pytest.Config) -> None:
    """In the process that runs the session, before its xdist workers start: the session cluster's token.

    Its settings go into this process's environment, which the workers
    inherit, so that every process has them before it imports Ray and can
    drive runs on the cluster in-process (commands.drive_here); module_env
    keeps them from the programs the tests start unless a test passes them.
    """
    if hasattr(config, "workerinput"):
        return
    folder = Path(tempfile.mkdtemp(prefix="rn-token-", dir="/tmp"))
    os.environ[_TOKEN_FOLDER_ENV] = str(folder)
    os.environ.update(cluster_module.make_token(folder))


def pytest_unconfigure(config: pytest.Config) -> None:
    if not hasattr(config, "workerinput") and os.environ.get(_TOKEN_FOLDER_ENV):
        shutil.rmtree(os.environ.pop(_TOKEN_FOLDER_ENV), ignore_errors=True)


def pytest_runtest_setup(item: pytest.Item) -> None:
    """Skip a test marked `gpu` where torch sees no CUDA device (bench/gpu_check.sh runs them on a GPU machine)."""
    if item.get_closest_marker("gpu") is not None:
        import torch

        if not torch.cuda.is_available():
            pytest.skip("needs a CUDA device (marked gpu); bench/gpu_check.sh runs it on a GPU machine")


def _session_token() -> dict[str, str]:
    """The session cluster's token settings (pytest_configure)."""
    return {name: os.environ[name] for name in cluster_module.TOKEN_ENV}


def _shared_root(tmp_path_factory: pytest.TempPathFactory) -> Path:
    """This session's temporary folder, or under xdist the one its workers share."""
    base = tmp_path_factory.getbasetemp()
    return base.parent if os.environ.get("PYTEST_XDIST_WORKER") else base


def _once(tmp_path_factory: pytest.TempPathFactory, name: str, make: Callable[[Path], dict]) -> dict:
    """`make(folder)` the first time any worker asks for `name`; every later ask reads what it recorded."""
    folder = _shared_root(tmp_path_factory) / name
    folder.mkdir(exist_ok=True)
    record = folder / ONCE_RECORD
    with open(folder / "fixture.lock", "w") as lock:
        fcntl.flock(lock, fcntl.LOCK_EX)  # the other workers wait here while it is made
        if not record.is_file():
            record.write_text(json.dumps(make(folder)))
    return json.loads(record.read_text())


# The driver's line naming its Ray dashboard and where Ray keeps the API token (search._ray.dashboard_line).
_DASHBOARD_LINE = re.compile(r"Ray dashboard: (\S+) \(API token in (.+)\)$")
# How often the watch asks the dashboard for the actors: often enough to see each trial's actor while it lives.
_ACTORS_EVERY_S = 1.0


class _ActorWatch:
    """The actors of a running driver's Ray, as the dashboard's Actors view lists them (Ray's state API).

    A thread of its own asks once a second, so that a slow answer never holds
    up the watch of the report. It finds the dashboard and its token in the
    driver's output; this process's own Ray token settings are the session
    cluster's (pytest_configure), so the run's token goes in the request's header.
    """

    def __init__(self, output: list[str]) -> None:
        self.seen: dict[str, tuple[str, str]] = {}  # actor id -> (class name, repr)
        self._output = output
        self._stop = threading.Event()
        self._thread = threading.Thread(target=self._watch, name="actor-watch", daemon=True)
        self._thread.start()

    def stop(self) -> tuple[tuple[str, str], ...]:
        """Stop asking; (class name, repr) of each actor seen."""
        self._stop.set()
        self._thread.join()
        return tuple(sorted(set(self.seen.values())))

    def _watch(self) -> None:
        client = None
        while not self._stop.wait(_ACTORS_EVERY_S):
            found = next((match for line in list(self._output)
                          if (match := _DASHBOARD_LINE.search(line.strip()))), None)
            if found is None:
                continue
            from ray.util.state import StateApiClient  # here: Ray's import costs only a run with a dashboard
            from ray.util.state.common import ListApiOptions, StateResource

            try:
                if client is None:
                    token = Path(found[2])
                    headers = {"Authorization": f"Bearer {token.read_text().strip()}"} if token.is_file() else None
                    client = StateApiClient(address=found[1], headers=headers)
                actors = client.list(StateResource.ACTORS, options=ListApiOptions(detail=True, timeout=5),
                                     raise_on_missing_output=False)
            except Exception:  # the dashboard is not up yet, or has gone with the run: ask again later
                continue
            for actor in actors:  # the repr is empty until the actor's __init__ has run
                if actor.repr_name or actor.actor_id not in self.seen:
                    self.seen[actor.actor_id] = (actor.class_name, actor.repr_name or "")


def _run_watching_the_report(command: list[str], cwd: Path,
                             report: Path) -> tuple[int, str, tuple[str, ...], tuple[tuple[str, str], ...]]:
    """Run `command` to its end; its exit status, output, each distinct report.html seen "in progress", and
    (class name, repr) of each actor its Ray's dashboard listed meanwhile."""
    process = subprocess.Popen(command, cwd=cwd, env=tutorial.shell_environment(),
                               stdout=subprocess.PIPE, stderr=subprocess.STDOUT, text=True)
    live: list[str] = []
    output: list[str] = []  # filled as the driver prints: the actor watch needs the dashboard's line meanwhile

    def read_output() -> None:
        for line in process.stdout:
            output.append(line)

    reader = threading.Thread(target=read_output, name="driver-output", daemon=True)
    reader.start()
    actors = _ActorWatch(output)
    try:
        while process.poll() is None:
            if report.is_file() and "IN PROGRESS" in (text := report.read_text()) and text not in live:
                live.append(text)
            time.sleep(0.05)
        reader.join()
    finally:
        seen = actors.stop()
        if process.poll() is None:
            process.kill()
            process.wait()
    return process.returncode, "".join(output), tuple(live), seen


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
    returncode, output, live, actors = _run_watching_the_report(["bash", "-c", run.text], checkout,
                                                                 run_dir / "report.html")
    assert returncode == 0, output
    return SmokeRun(run_dir, output, live, run.text, actors)


def _cluster_run(cluster: cluster_module.Cluster, folder: Path) -> SmokeRun:
    from search import run as search_run  # here: the session's controller never needs it

    run_dir = folder / "smoke_lr05"
    args = [str(SMOKE), "--out", str(run_dir), *CLUSTER_RUN_ARGS, "--address", cluster.address]
    with cluster_module.exclusive(cluster):  # two trials at once land on the two nodes
        done = drive_here(search_run.main, args, env=cluster.env)
    assert done.returncode == 0, done.stdout + done.stderr
    return SmokeRun(run_dir, done.stdout, (), shlex.join(["python", "-m", "search.run", *args]))


def _require_slow(request: pytest.FixtureRequest) -> None:
    if request.node.get_closest_marker("slow") is None:
        pytest.fail(f"{request.node.nodeid} reads a real run of the smoke study, which starts Ray: mark it slow")


@pytest.fixture(scope="session")
def _smoke_run_once(tmp_path_factory: pytest.TempPathFactory) -> SmokeRun:
    return SmokeRun.from_json(_once(tmp_path_factory, "smoke", lambda folder: _smoke_run(folder).to_json()))


@pytest.fixture(scope="session")
def _cluster_once(tmp_path_factory: pytest.TempPathFactory) -> cluster_module.Cluster:
    # Stopped when the cluster's module ends (stop_cluster_after_module), or else by pytest_sessionfinish of the
    # process that runs the session (xdist's controller), after every worker is done with it.
    return cluster_module.Cluster.from_json(_once(tmp_path_factory, CLUSTER_RECORD,
                                                  lambda folder: cluster_module.start(_session_token()).to_json()))


@pytest.fixture(scope="session")
def _cluster_run_once(tmp_path_factory: pytest.TempPathFactory, _cluster_once: cluster_module.Cluster) -> SmokeRun:
    return SmokeRun.from_json(_once(tmp_path_factory, CLUSTER_RUN_RECORD,
                                    lambda folder: _cluster_run(_cluster_once, folder).to_json()))


@pytest.fixture(scope="module")
def stop_cluster_after_module(tmp_path_factory: pytest.TempPathFactory) -> Iterator[None]:
    """For the module of the cluster's tests: stop the cluster when the module ends, if its run is made.

    Then nothing can need it any more (only that module's tests drive it, and
    the other modules only read the finished run), and its idle processes and
    its stop no longer take their seconds at the session's end.
    """
    yield
    if (_shared_root(tmp_path_factory) / CLUSTER_RUN_RECORD / ONCE_RECORD).is_file():
        _stop_the_cluster(_shared_root(tmp_path_factory))


def _stop_the_cluster(shared: Path) -> None:
    """Stop the session's cluster if one was started (its record is in the workers' shared folder `shared`)."""
    record = shared / CLUSTER_RECORD / ONCE_RECORD
    if record.is_file():
        cluster_module.stop(cluster_module.Cluster.from_json(json.loads(record.read_text())))


_WORKER_EXIT_STATUS: list[int] = []


def _exit_without_teardown() -> None:
    """An xdist worker's last act, once its session has finished: exit without the interpreter's teardown.

    Registered when this module is imported, so it runs after every exit
    handler registered later (pytest's, Ray's). A worker that has run half the
    suite holds a GB or more of objects, whose teardown took 2-5 s that the
    controller waited for at the end of every session; the OS frees them at once.
    """
    if _WORKER_EXIT_STATUS:
        sys.stdout.flush()
        sys.stderr.flush()
        os._exit(_WORKER_EXIT_STATUS[0])


if os.environ.get("PYTEST_XDIST_WORKER"):
    atexit.register(_exit_without_teardown)


def pytest_sessionfinish(session: pytest.Session, exitstatus: int) -> None:
    if hasattr(session.config, "workerinput"):  # an xdist worker: the controller stops the cluster after all
        _WORKER_EXIT_STATUS.append(int(exitstatus))
        return
    # pytest's own factory (xdist reads it too): here, in the controller, its folder is the workers' shared one.
    _stop_the_cluster(_shared_root(session.config._tmp_path_factory))


@pytest.fixture
def cluster(request: pytest.FixtureRequest) -> cluster_module.Cluster:
    """The session's two-node Ray cluster (tests/cluster.py); hold `exclusive(cluster)` while drivers run."""
    _require_slow(request)
    return request.getfixturevalue("_cluster_once")


@pytest.fixture
def cluster_run(request: pytest.FixtureRequest) -> SmokeRun:
    """The session's run on the two-node cluster, to read only: the smoke study at train.lr 0.05 with longer
    trials (two epochs of 1,024 images), seeds 0-3 (eight trials) and TensorBoard on."""
    _require_slow(request)
    return request.getfixturevalue("_cluster_run_once")


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
