"""StudyError and the one-line message format every study check uses.

A message reads ``<file>:<line>: <field.path>: <what is wrong>; got <value>; allowed: <...>``
so a person can open the file at that line and fix it without reading code.
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import Any, Sequence

FieldPath = tuple[str | int, ...]


def dotted(path: Sequence[str | int]) -> str:
    """`("space", "stages", 1, "depth")` -> `"space.stages[1].depth"`."""
    text = ""
    for part in path:
        if isinstance(part, int):
            text += f"[{part}]"
        else:
            text += f".{part}" if text else str(part)
    return text


def show(value: Any, limit: int = 80) -> str:
    """A value as the message shows it after `got`: repr, cut short when long."""
    text = repr(value)
    return text if len(text) <= limit else text[: limit - 3] + "..."


@dataclass(frozen=True)
class Problem:
    """One thing wrong with a study, with where it is and what would be accepted."""

    where: str                 # the file, "<dict>", or "--set train.epochs=x"
    line: int | None
    field: str                 # dotted field path; "" for the file as a whole
    what: str
    got: str | None = None     # already rendered with `show`
    allowed: str | None = None

    def text(self) -> str:
        """The one-line message."""
        location = self.where if self.line is None else f"{self.where}:{self.line}"
        detail = self.what
        if self.got is not None:
            detail += f"; got {self.got}"
        if self.allowed:
            detail += f"; allowed: {self.allowed}"
        return ": ".join(part for part in (location, self.field, detail) if part)


class StudyError(ValueError):
    """A study that cannot run: the first problem as one line, every problem in `errors`."""

    def __init__(self, problems: Sequence[Problem], path: str | None = None) -> None:
        if not problems:
            raise ValueError("StudyError needs at least one problem")
        self.problems = tuple(problems)
        self.errors = [problem.text() for problem in problems]
        first = problems[0]
        self.path = path
        self.field = first.field
        self.line = first.line
        more = f" (and {len(problems) - 1} more)" if len(problems) > 1 else ""
        super().__init__(self.errors[0] + more)


class FieldProblem(ValueError):
    """A problem at a field path whose file and line are not known here; the loader adds them."""

    def __init__(self, path: FieldPath, what: str, got: str | None = None,
                 allowed: str | None = None) -> None:
        super().__init__(Problem("", None, dotted(path), what, got, allowed).text())
        self.path = tuple(path)
        self.what = what
        self.got = got
        self.allowed = allowed
