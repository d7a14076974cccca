"""`--set dotted.path=value` overrides, applied to the loaded data before validation.

Values are YAML (read like the study file, safely), so `--set train.epochs=3`,
`--set search.seeds=[0,1]` and `--set space.shortcut={choice: [A, B]}` all work.
A study is validated only after every override is in, so a bad override
rejects the whole study; its errors name the override rather than a line.
"""

from __future__ import annotations

import copy
import re
from dataclasses import dataclass, replace
from typing import Any, Mapping, Sequence

from ._errors import FieldPath, Problem, StudyError, dotted, show
from ._yaml import parse_yaml

_FIRST_NAME = re.compile(r"[A-Za-z_][A-Za-z0-9_-]*")
_NEXT_PART = re.compile(r"\.([A-Za-z_][A-Za-z0-9_-]*|\d+)|\[(\d+)\]")
_PATH_HELP = "dotted field names with list indices, e.g. train.epochs or space.stages[1].depth"


@dataclass(frozen=True)
class Override:
    """One parsed `--set`: the text as given, the field path, and the YAML value."""

    text: str
    path: FieldPath
    value: Any

    @property
    def where(self) -> str:
        """How messages name this override."""
        return f"--set {self.text}"

    def problem(self, field: str, what: str, allowed: str | None = None) -> StudyError:
        """A StudyError located at this override."""
        return StudyError([Problem(self.where, None, field, what, allowed=allowed)])


def _parse_path(text: str, where: str) -> FieldPath:
    first = _FIRST_NAME.match(text)
    if first is None:
        raise StudyError([Problem(where, None, "", f"cannot read the field path {text!r}", allowed=_PATH_HELP)])
    parts: list[str | int] = [first.group(0)]
    position = first.end()
    while position < len(text):
        match = _NEXT_PART.match(text, position)
        if match is None:
            raise StudyError([Problem(where, None, "", f"cannot read the field path {text!r}",
                                      allowed=_PATH_HELP)])
        name, index = match.group(1), match.group(2)
        if index is not None or name.isdigit():  # stages[1] and stages.1 are the same
            parts.append(int(index if index is not None else name))
        else:
            parts.append(name)
        position = match.end()
    return tuple(parts)


def parse_override(text: str) -> Override:
    """`"train.epochs=3"` -> Override(path=("train", "epochs"), value=3); StudyError if malformed."""
    where = f"--set {text}"
    if "=" not in text:
        raise StudyError([Problem(where, None, "", "expected dotted.path=value",
                                  allowed="e.g. --set train.epochs=3 or --set space.stages[1].depth=5")])
    path_text, value_text = text.split("=", 1)
    path = _parse_path(path_text.strip(), where)
    try:
        value, _ = parse_yaml(value_text, where)
    except StudyError as error:  # a line number inside a one-line value says nothing
        raise StudyError([replace(problem, line=None) for problem in error.problems]) from None
    return Override(text, path, value)


def _descend(container: Any, part: str | int, following: str | int, done: FieldPath,
             override: Override) -> tuple[Any, str | int]:
    """The child of `container` at `part`, created as a mapping if missing; and the key used."""
    here = dotted((*done, part))
    if isinstance(container, list):
        if not isinstance(part, int):
            raise override.problem(dotted(done), f"is a list, so it has no field {part!r}",
                                   allowed=f"an index 0..{len(container) - 1}, e.g. {dotted(done)}[0]")
        if not 0 <= part < len(container):
            raise override.problem(dotted(done), f"has {len(container)} items, so there is no [{part}]",
                                   allowed=f"an index 0..{len(container) - 1}")
        child = container[part]
        key: str | int = part
    else:
        key = str(part)  # mapping keys in a study are text
        child = container.get(key)
        if child is None:
            if isinstance(following, int):
                raise override.problem(here, f"is not in the study, so [{following}] has nothing to index",
                                       allowed=f"set the whole list, e.g. --set {here}=[...]")
            child = container[key] = {}
    if not isinstance(child, (dict, list)):
        raise override.problem(here, f"is {show(child)}, so it has no field {following!r}",
                               allowed=f"set the whole value, e.g. --set {here}={{choice: [...]}}")
    return child, key


def apply_overrides(data: Mapping[str, Any], overrides: Sequence[str]) -> tuple[dict[str, Any], tuple[Override, ...]]:
    """A deep copy of `data` with every override applied, and the parsed overrides."""
    parsed = [parse_override(text) for text in overrides]
    result = copy.deepcopy(dict(data))
    applied = []
    for override in parsed:
        node: Any = result
        done: FieldPath = ()
        for depth, part in enumerate(override.path[:-1]):
            node, key = _descend(node, part, override.path[depth + 1], done, override)
            done = (*done, key)
        last = override.path[-1]
        if isinstance(node, list):
            if not isinstance(last, int) or not 0 <= last < len(node):
                raise override.problem(dotted(done), f"is a list of {len(node)} items; got index {last!r}",
                                       allowed=f"an index 0..{len(node) - 1}")
            node[last] = override.value
        else:
            last = str(last) if isinstance(last, int) else last
            node[last] = override.value
        applied.append(replace(override, path=(*done, last)))
    return result, tuple(applied)
