"""Run resnas's command-line entry points from the tests: as a user does, or in this process.

`run_module` starts `python -m MODULE` (interpreter and imports: seconds on
2 cores); `call_main` calls the module's main(argv) here (milliseconds). Each
entry point keeps at least one subprocess test, so `python -m ...` itself
stays tested; bad-input cases use `call_main`. `drive_here` runs a Ray driver
(search.run, search.retrain) to its end in this process: a driver in a child
process costs about 4 CPU-seconds of start-up and imports before it does anything.
"""

from __future__ import annotations

import contextlib
import io
import os
import signal
import subprocess
import sys
from pathlib import Path
from typing import Callable, NamedTuple

import pytest

ROOT = Path(__file__).resolve().parents[1]
SMOKE = ROOT / "studies" / "smoke.yaml"


class CliResult(NamedTuple):
    """A command's exit status and output, named as subprocess.CompletedProcess names them."""

    returncode: int
    stdout: str
    stderr: str

    def bad_input_line(self) -> str:
        """Assert the CLI's contract for bad input (exit status 2, one line on stderr) and return that line."""
        assert self.returncode == 2, self.stdout + self.stderr
        assert "Traceback" not in self.stderr, self.stderr
        lines = self.stderr.strip().splitlines()
        assert len(lines) == 1, self.stderr
        return lines[0]


class SmokeRun(NamedTuple):
    """The finished run folder of a real run of the smoke study, and what its command printed."""

    run_dir: Path
    stdout: str
    live_pages: tuple[str, ...] = ()  # each distinct report.html seen "in progress" while it ran
    command: str = ""  # as the user typed it, in the folder above run_dir's runs/ (or with --out run_dir)
    # (class name, repr) of each actor Ray's state API listed while it ran (ray.util.state), where watched
    actors_seen: tuple[tuple[str, str], ...] = ()

    def to_json(self) -> dict:
        return {**self._asdict(), "run_dir": str(self.run_dir), "live_pages": list(self.live_pages),
                "actors_seen": [list(actor) for actor in self.actors_seen]}

    @classmethod
    def from_json(cls, saved: dict) -> "SmokeRun":
        return cls(**{**saved, "run_dir": Path(saved["run_dir"]), "live_pages": tuple(saved["live_pages"]),
                      "actors_seen": tuple(tuple(actor) for actor in saved.get("actors_seen", ()))})


# Where Ray finds a cluster and its token. A child gets them only where `extra` gives them: a cluster address
# or token left in the shell, or the session cluster's token (tests/cluster.py), must not change a local run.
RAY_CLUSTER_ENV = ("RAY_ADDRESS", "RAY_AUTH_MODE", "RAY_AUTH_TOKEN", "RAY_AUTH_TOKEN_PATH")


def module_env(**extra: str) -> dict[str, str]:
    """This environment for a child process: unbuffered output, no stray Ray cluster address or token."""
    environment = {name: value for name, value in os.environ.items() if name not in RAY_CLUSTER_ENV}
    return {**environment, "PYTHONUNBUFFERED": "1", **extra}


def run_module(module: str, *args: str, cwd: Path = ROOT, env: dict[str, str] | None = None,
               python_options: tuple[str, ...] = (), timeout: int = 600) -> CliResult:
    """`python [OPTIONS] -m MODULE ARGS` in a child process, with the repository importable from any `cwd`."""
    path = os.pathsep.join(filter(None, [str(ROOT), os.environ.get("PYTHONPATH")]))
    done = subprocess.run([sys.executable, *python_options, "-m", module, *args], cwd=cwd, text=True,
                          capture_output=True, timeout=timeout, env=module_env(PYTHONPATH=path, **(env or {})))
    return CliResult(done.returncode, done.stdout, done.stderr)


def call_main(main: Callable[[list[str]], int], args: list[str], capsys: pytest.CaptureFixture[str]) -> CliResult:
    """`main(args)` in this process, output captured; argparse's SystemExit counts as the exit status."""
    capsys.readouterr()
    try:
        status = main(list(args))
    except SystemExit as stop:
        status = stop.code
    captured = capsys.readouterr()
    return CliResult(status, captured.out, captured.err)


def drive_here(main: Callable[[list[str]], int], args: list[str], env: dict[str, str] | None = None) -> CliResult:
    """`main(args)` of a Ray driver in this process, with `env` set while it runs; its exit status and output.

    Asserts what a program that runs studies in-process counts on: afterwards
    Ray is shut down, and the signal handlers are this process's own again.
    Ray reads its token settings once per process: to join the session's
    cluster, they must be in this process's environment from its start
    (tests/conftest.py puts them there), and `env` can only repeat them.
    """
    handlers = {signum: signal.getsignal(signum) for signum in (signal.SIGTERM, signal.SIGINT, signal.SIGUSR1)}
    saved = dict(os.environ)
    assert all(os.environ.get(name) == value for name, value in (env or {}).items() if name.startswith("RAY_AUTH")), \
        "Ray read its token settings when this process imported it: set them before (tests/conftest.py)"
    os.environ.update(env or {})
    os.environ.pop("RAY_ADDRESS", None)  # as module_env: a cluster address left in the shell must not capture it
    out, err = io.StringIO(), io.StringIO()
    try:
        with contextlib.redirect_stdout(out), contextlib.redirect_stderr(err):
            try:
                status = main(list(args))
            except SystemExit as stop:  # argparse
                status = stop.code
    finally:
        os.environ.clear()
        os.environ.update(saved)  # what ray.init and Tune set in os.environ goes too
    ray = sys.modules.get("ray")
    assert ray is None or not ray.is_initialized(), "the driver left Ray running in this process"
    assert {signum: signal.getsignal(signum) for signum in handlers} == handlers, "the driver left signal handlers"
    return CliResult(status, out.getvalue(), err.getvalue())
