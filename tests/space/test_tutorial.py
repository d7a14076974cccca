"""docs/WRITING_STUDIES.md cannot rot: its commands run here, in order, in a copy of studies/.

tests/tutorial.py reads the tutorial into steps (what each kind of block means).
The commands that train nothing run in the quick suite, in this process; the one
that trains starts Ray, and is the session's real run (`smoke_run` in
tests/conftest.py), run as the reader runs it: the test marked slow checks what it printed.
"""

from __future__ import annotations

import contextlib
import importlib
import shlex
import subprocess
from pathlib import Path

import jsonschema
import pytest

import space
from commands import SmokeRun, call_main
from space._yaml import parse_yaml
from tutorial import TUTORIAL, Command, FileStep, apply_step, check_output, checkout_copy, shell_environment, \
    tutorial_steps

def run_command(command: Command, workdir: Path, capsys: pytest.CaptureFixture[str]) -> str:
    """Run one tutorial command in `workdir` and check its exit status; return what it printed.

    `python -m MODULE ARGS` runs as MODULE.main(ARGS) in this process (milliseconds, where a new
    interpreter takes seconds), except a real run, which starts Ray; anything else runs in bash.
    """
    words = shlex.split(command.text)
    if words[:2] == ["python", "-m"] and not command.trains:
        with contextlib.chdir(workdir):
            result = call_main(importlib.import_module(words[2]).main, words[3:], capsys)
        returncode, output = result.returncode, result.stdout + result.stderr
    else:
        done = subprocess.run(["bash", "-c", command.text], cwd=workdir, text=True, capture_output=True,
                              timeout=600, env=shell_environment())
        returncode, output = done.returncode, done.stdout + done.stderr
    expected = 2 if command.fails else 0
    assert returncode == expected, f"`{command.text}` exited {returncode}, not {expected}:\n{output}"
    return output


@pytest.fixture
def workdir(tmp_path: Path) -> Path:
    """A folder with a copy of studies/ and the schema they name, as in a checkout."""
    return checkout_copy(tmp_path)


def test_tutorial_has_commands_files_and_one_real_run():
    steps = tutorial_steps(TUTORIAL.read_text(encoding="utf-8"))
    commands = [step for step in steps if isinstance(step, Command)]
    assert len(commands) >= 8 and all(command.shown for command in commands if "python" in command.text)
    assert sum(command.trains for command in commands) == 1
    assert any(isinstance(step, FileStep) and step.old is None for step in steps)
    assert any(isinstance(step, FileStep) and step.old is not None for step in steps)


def test_tutorial_commands_print_what_it_shows(workdir: Path, capsys: pytest.CaptureFixture[str]):
    written = set()
    for step in tutorial_steps(TUTORIAL.read_text(encoding="utf-8")):
        if isinstance(step, FileStep):
            apply_step(step, workdir)
            written.add(step.path)
        elif not step.trains:
            check_output(step, run_command(step, workdir, capsys))
    # What an editor shows the reader: the files the tutorial writes pass the JSON Schema too.
    validator = jsonschema.Draft202012Validator(space.study_json_schema())
    for path in sorted(written):
        data, _ = parse_yaml((workdir / path).read_text(encoding="utf-8"), path)
        assert [error.message for error in validator.iter_errors(data)] == [], path


@pytest.mark.slow
def test_tutorial_real_run_prints_what_it_shows(smoke_run: SmokeRun):
    """The session's real run is the tutorial's: in a copy of the checkout, after the tutorial's steps."""
    (run,) = [step for step in tutorial_steps(TUTORIAL.read_text(encoding="utf-8"))
              if isinstance(step, Command) and step.trains]
    assert smoke_run.command == run.text
    check_output(run, smoke_run.stdout)
