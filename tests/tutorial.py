"""docs/WRITING_STUDIES.md as steps: its commands (with the output it shows) and its file edits, in order.

The tutorial has three kinds of fenced block, applied in the order they appear:

- ```console: lines starting with `$ ` are commands (`python` being this interpreter); the
  lines after a command are what it should print. Each shown line must
  appear in the output, in that order; `...` in a line stands for any text, and a line that
  is only `...` for lines left out. A command whose shown output has an `error:` line must
  exit with status 2, every other one with 0.
- ```diff with a `+++ PATH` header: the `-` and context lines are replaced by the `+` and
  context lines in PATH.
- ```yaml file=PATH: the block is the whole of PATH.

tests/space/test_tutorial.py runs the commands that train nothing; the one that
trains is the session's real run (tests/conftest.py, `smoke_run`).
"""

from __future__ import annotations

import os
import re
import shutil
import subprocess
import sys
from dataclasses import dataclass
from pathlib import Path

from commands import ROOT, module_env

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


def apply_step(step: FileStep, workdir: Path) -> None:
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


def shell_environment() -> dict[str, str]:
    """What a reader's shell has after `source .venv/bin/activate`: this interpreter's `python` first on PATH."""
    path = os.pathsep.join([str(Path(sys.executable).parent), os.environ.get("PATH", "")])
    python_path = os.pathsep.join(filter(None, [str(ROOT), os.environ.get("PYTHONPATH")]))
    return module_env(PATH=path, PYTHONPATH=python_path)


def checkout_copy(folder: Path) -> Path:
    """`folder` with a copy of studies/ and the schema they name, as in a checkout."""
    shutil.copytree(ROOT / "studies", folder / "studies")
    (folder / "space").mkdir()
    shutil.copy(ROOT / "space" / "study.schema.json", folder / "space")
    return folder


def the_run(workdir: Path) -> Command:
    """Make the files the tutorial has made when it reaches its one command that trains, and return it.

    The file steps and shell commands (cp) before it are applied in `workdir`; the
    python commands before it only print (the quick suite checks them).
    """
    for step in tutorial_steps(TUTORIAL.read_text(encoding="utf-8")):
        if isinstance(step, FileStep):
            apply_step(step, workdir)
        elif step.trains:
            return step
        elif "python" not in step.text:
            done = subprocess.run(["bash", "-c", step.text], cwd=workdir, text=True, capture_output=True,
                                  timeout=60, env=shell_environment())
            assert done.returncode == 0, f"`{step.text}` exited {done.returncode}:\n{done.stdout}{done.stderr}"
    raise AssertionError(f"{TUTORIAL.name} has no command that trains")
