"""Run resnas's command-line entry points from the tests: as a user does, or in this process.

`run_module` starts `python -m MODULE` (interpreter and imports: seconds on
2 cores); `call_main` calls the module's main(argv) here (milliseconds). Each
entry point keeps at least one subprocess test, so `python -m ...` itself
stays tested; bad-input cases use `call_main`.
"""

from __future__ import annotations

import os
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

    def to_json(self) -> dict:
        return {**self._asdict(), "run_dir": str(self.run_dir), "live_pages": list(self.live_pages)}

    @classmethod
    def from_json(cls, saved: dict) -> "SmokeRun":
        return cls(**{**saved, "run_dir": Path(saved["run_dir"]), "live_pages": tuple(saved["live_pages"])})


def module_env(**extra: str) -> dict[str, str]:
    """This environment for a child process: unbuffered output, no stray Ray cluster address."""
    environment = {**os.environ, "PYTHONUNBUFFERED": "1", **extra}
    environment.pop("RAY_ADDRESS", None)  # a cluster address left in the shell must not capture a test
    return environment


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

