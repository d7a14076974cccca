"""docs/WRITING_STUDIES.md cannot rot: its commands run here, in order, in a copy of studies/.

The tutorial has three kinds of fenced block, applied in the order they appear:

- ```console: lines starting with `$ ` are commands (`python` being this interpreter); the
  lines after a command are what it should print. Each shown line must
  appear in the output, in that order; `...` in a line stands for any text, and a line that
  is only `...` for lines left out. A command whose shown output has an `error:` line must
  exit with status 2, every other one with 0.
- ```diff with a `+++ PATH` header: the `-` and context lines are replaced by the `+` and
  context lines in PATH.
- ```yaml file=PATH: the block is the whole of PATH.

A command that trains (search.run without --dry-run or --explain) starts Ray, so the
tutorial runs twice: without those commands in the quick suite, and with only those
(after the file steps) in a test marked slow.
"""

from __future__ import annotations

import contextlib
import importlib
import os
import re
import shlex
import shutil
import subprocess
import sys
from dataclasses import dataclass
from pathlib import Path

import jsonschema
import pytest

import space
from commands import ROOT, call_main, module_env
from space._yaml import parse_yaml

TUTORIAL = ROOT / "docs" / "WRITING_STUDIES.md"
_BLOCK = re.compile(r"^```(\w+)([^\n]*)\n(.*?)^```$", re.MULTILINE | re.DOTALL)


@dataclass(frozen=True)
class Command:
    """One `$ ` line of a console block and the output the tutorial shows for it."""

    text: str
    shown: tuple[str, ...]

    @property
    def trains(self) -> bool:
        """True when the command starts Ray (a real run of the runner)."""
        return "search.run" in self.text and "--dry-run" not in self.text and "--explain" not in self.text

    @property
    def fails(self) -> bool:
        """True when the tutorial shows it failing on purpose."""
        return any(line.startswith("error:") for line in self.shown)


@dataclass(frozen=True)
class FileStep:
    """A diff to apply to, or the whole text of, one file."""

    path: str
    old: str | None     # None: `new` is the whole file
    new: str


def _diff_step(body: str) -> FileStep:
    lines = body.splitlines()
    header = [line for line in lines if line.startswith("+++ ")]
    assert len(header) == 1, f"a diff block needs one `+++ PATH` line:\n{body}"
    old, new = [], []
    for line in lines:
        if line.startswith(("--- ", "+++ ")):
            continue
        kind, text = (line[:1], line[1:]) if line else (" ", "")  # an editor may strip a lone space
        assert kind in ("-", "+", " "), f"a diff line starts with -, + or a space: {line!r}"
        if kind != "+":
            old.append(text)
        if kind != "-":
            new.append(text)
    return FileStep(header[0][4:].strip(), "\n".join(old) + "\n", "\n".join(new) + "\n")


def _console_commands(body: str) -> list[Command]:
    commands: list[Command] = []
    text, shown = None, []
    for line in body.splitlines():
        if line.startswith("$ "):
            if text is not None:
                commands.append(Command(text, tuple(shown)))
            text, shown = line[2:], []
        else:
            assert text is not None, f"output before any command:\n{body}"
            shown.append(line)
    if text is not None:
        commands.append(Command(text, tuple(shown)))
    return commands


def tutorial_steps(markdown: str) -> list[Command | FileStep]:
    """The tutorial's commands and file steps, in order."""
    steps: list[Command | FileStep] = []
    for kind, info, body in _BLOCK.findall(markdown):
        if kind == "console":
            steps += _console_commands(body)
        elif kind == "diff":
            steps.append(_diff_step(body))
        elif kind == "yaml" and "file=" in info:
            steps.append(FileStep(info.split("file=", 1)[1].strip(), None, body))
    return steps


def _apply(step: FileStep, workdir: Path) -> None:
    target = workdir / step.path
    if step.old is None:
        target.write_text(step.new, encoding="utf-8")
        return
    text = target.read_text(encoding="utf-8")
    assert text.count(step.old) == 1, f"{step.path}: the diff's old lines are not in the file once:\n{step.old}"
    target.write_text(text.replace(step.old, step.new), encoding="utf-8")


def _matches(shown: str, actual: str) -> bool:
    """`shown` with `...` as a wildcard matches the whole of `actual`; runs of spaces count as one."""
    pattern = ".*".join(re.escape(" ".join(part.split())) for part in shown.split("..."))
    return re.fullmatch(pattern, " ".join(actual.split())) is not None


def check_output(command: Command, output: str) -> None:
    """Every shown line appears in `output`, in order (`...` matches anything)."""
    lines = output.splitlines()
    position = 0
    for shown in command.shown:
        if shown.strip() in ("", "..."):
            continue
        found = next((index for index in range(position, len(lines)) if _matches(shown, lines[index])), None)
        assert found is not None, (f"`{command.text}` should print a line like\n  {shown}\n"
                                   f"after line {position}; it printed:\n{output}")
        position = found + 1


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
        path = os.pathsep.join([str(Path(sys.executable).parent), os.environ.get("PATH", "")])
        python_path = os.pathsep.join(filter(None, [str(ROOT), os.environ.get("PYTHONPATH")]))
        done = subprocess.run(["bash", "-c", command.text], cwd=workdir, text=True, capture_output=True,
                              timeout=600, env=module_env(PATH=path, PYTHONPATH=python_path))
        returncode, output = done.returncode, done.stdout + done.stderr
    expected = 2 if command.fails else 0
    assert returncode == expected, f"`{command.text}` exited {returncode}, not {expected}:\n{output}"
    return output


@pytest.fixture
def workdir(tmp_path: Path) -> Path:
    """A folder with a copy of studies/ and the schema they name, as in a checkout."""
    shutil.copytree(ROOT / "studies", tmp_path / "studies")
    (tmp_path / "space").mkdir()
    shutil.copy(ROOT / "space" / "study.schema.json", tmp_path / "space")
    return tmp_path


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
            _apply(step, workdir)
            written.add(step.path)
        elif not step.trains:
            check_output(step, run_command(step, workdir, capsys))
    # What an editor shows the reader: the files the tutorial writes pass the JSON Schema too.
    validator = jsonschema.Draft202012Validator(space.study_json_schema())
    for path in sorted(written):
        data, _ = parse_yaml((workdir / path).read_text(encoding="utf-8"), path)
        assert [error.message for error in validator.iter_errors(data)] == [], path


@pytest.mark.slow
def test_tutorial_real_run_prints_what_it_shows(workdir: Path, capsys: pytest.CaptureFixture[str]):
    for step in tutorial_steps(TUTORIAL.read_text(encoding="utf-8")):
        if isinstance(step, FileStep):
            _apply(step, workdir)
        elif step.trains or "python" not in step.text:  # file commands, and the run
            check_output(step, run_command(step, workdir, capsys))
