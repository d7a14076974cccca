"""Loading a study: file -> YAML -> `--set` overrides -> pydantic -> whole-study checks -> Study.

Every failure on the way is a StudyError whose message names the file and line
(or the override), the field path, what was given and what is allowed.
Nothing is half-applied: a study is returned whole or not at all.
"""

from __future__ import annotations

import copy
import difflib
import re
import types
from dataclasses import dataclass
from pathlib import Path
from typing import Annotated, Any, Mapping, Sequence, Union, get_args, get_origin

from pydantic import BaseModel, Tag, ValidationError

from ._errors import FieldPath, FieldProblem, Problem, StudyError, dotted, show
from ._forms import FORM_SYNTAX, FORM_TAGS, RULE_ERROR
from ._overrides import Override, apply_overrides
from ._schema import StudyModel
from ._study import Study, build_study
from ._yaml import MAX_YAML_CHARS, parse_yaml

# The most bytes MAX_YAML_CHARS characters of UTF-8 take.
MAX_YAML_BYTES = 4 * MAX_YAML_CHARS

_SECTIONS = "a mapping with name, question, space, and optionally data, train, search"

# What a missing required field should hold.
_MISSING_HINTS = {
    "name": "a name of lowercase letters, digits, '_' and '-' (it names the run folder)",
    "question": "the question the study answers, as text",
    "space": "a mapping with base (a models preset) and/or stages, and the fields to search",
}

# pydantic error type -> what the field accepts, for "wrong type" errors.
_TYPE_EXPECTED = {
    "int_type": "an integer", "float_type": "a number", "bool_type": "true or false",
    "string_type": "text", "list_type": "a list", "tuple_type": "a list", "dict_type": "a mapping",
    "model_type": "a mapping", "model_attributes_type": "a mapping", "none_required": "null",
}


@dataclass(frozen=True)
class _Locator:
    """Turns a field path into a place a person can look: an override, or a file and line."""

    source: str
    lines: Mapping[FieldPath, int]
    overrides: tuple[Override, ...] = ()

    def at(self, path: FieldPath, what: str, got: str | None = None, allowed: str | None = None) -> Problem:
        """A Problem at `path`, placed at the override that set it or the nearest line in the file."""
        for override in reversed(self.overrides):  # the last override of a field wins
            shorter = min(len(path), len(override.path))
            if path[:shorter] == override.path[:shorter]:
                field = "" if path == override.path else dotted(path)
                return Problem(override.where, None, field, what, got, allowed)
        for length in range(len(path), -1, -1):
            if path[:length] in self.lines:
                return Problem(self.source, self.lines[path[:length]], dotted(path), what, got, allowed)
        return Problem(self.source, None, dotted(path), what, got, allowed)

    def __call__(self, problem: FieldProblem) -> Problem:
        return self.at(problem.path, problem.what, problem.got, problem.allowed)


# ------------------------------------------------------- pydantic -> messages
def _tag_of(annotation: Any) -> str | None:
    if get_origin(annotation) is Annotated:
        return next((meta.tag for meta in get_args(annotation)[1:] if isinstance(meta, Tag)), None)
    return None


def _step(annotation: Any, part: str | int) -> Any:
    """The type found at `part` inside `annotation` (a field, a list item, or a tagged union member)."""
    while True:
        origin = get_origin(annotation)
        if origin is Annotated:
            annotation = get_args(annotation)[0]
        elif origin in (Union, types.UnionType):
            members = [arg for arg in get_args(annotation) if arg is not type(None)]
            tagged = {_tag_of(arg): arg for arg in members}
            if part in tagged:
                return tagged[part]
            if len(members) != 1:
                return None
            annotation = members[0]
        elif origin is list:
            return get_args(annotation)[0] if isinstance(part, int) else None
        elif isinstance(annotation, type) and issubclass(annotation, BaseModel):
            fields = {info.alias or name: info for name, info in annotation.model_fields.items()}
            return fields[part].annotation if part in fields else None
        else:
            return None


def _field_names_at(loc: tuple[Any, ...]) -> list[str]:
    """The keys the model at `loc` accepts, for "did you mean" on an unknown key."""
    annotation: Any = StudyModel
    for part in loc:
        annotation = _step(annotation, part)
        if annotation is None:
            return []
    while get_origin(annotation) in (Annotated, Union, types.UnionType):
        members = [arg for arg in get_args(annotation) if arg is not type(None)]
        annotation = members[0]
    if isinstance(annotation, type) and issubclass(annotation, BaseModel):
        return [info.alias or name for name, info in annotation.model_fields.items()
                if (info.alias or name) != "seed"]  # train.seed exists only to explain itself
    return []


def _from_pydantic(error: Mapping[str, Any], locate: _Locator) -> Problem:
    """One pydantic error as a study Problem (discriminator tags dropped from the path)."""
    path = tuple(part for part in error["loc"] if part not in FORM_TAGS)
    kind = error["type"]
    context = error.get("ctx") or {}
    given = error.get("input")
    if kind == RULE_ERROR:
        return locate.at(path, context["what"], show(given) if context.get("show_input", True) else None,
                         context.get("allowed") or None)
    if kind == "extra_forbidden":
        key = str(path[-1])
        names = _field_names_at(error["loc"][:-1])
        close = difflib.get_close_matches(key, names, n=1)
        if close:
            return locate.at(path, f"unknown field {key!r} (did you mean {close[0]!r}?)")
        return locate.at(path, f"unknown field {key!r}", allowed=", ".join(names) or None)
    if kind == "missing":
        return locate.at(path, "missing", allowed=_MISSING_HINTS.get(str(path[-1])))
    if kind == "union_tag_invalid":
        expected = [FORM_SYNTAX[tag] for tag in re.findall(r"'([^']+)'", context.get("expected_tags", ""))
                    if tag in FORM_SYNTAX]
        form = FORM_SYNTAX.get(context.get("tag", ""), "this form")
        return locate.at(path, f"this field cannot be searched with {form}", show(given), " or ".join(expected))
    if kind == "literal_error":
        return locate.at(path, "not an allowed value", show(given), context.get("expected"))
    if kind in ("too_short", "too_long"):
        if path and path[-1] in ("int", "float"):
            return locate.at(path, "a range is two numbers", show(given), "[low, high]")
        bound = (f"at least {context.get('min_length')}" if kind == "too_short"
                 else f"at most {context.get('max_length')}")
        return locate.at(path, "too few items" if kind == "too_short" else "too many items", show(given),
                         f"{bound} item(s)")
    if kind == "finite_number":
        return locate.at(path, "not a finite number", show(given), "a finite number")
    if kind in _TYPE_EXPECTED:
        return locate.at(path, "wrong type", show(given), _TYPE_EXPECTED[kind])
    return locate.at(path, error["msg"], show(given))


def _problem_order(problem: Problem) -> tuple[bool, int]:
    # Overrides first (the newest input), then top to bottom through the file.
    return (not problem.where.startswith("--set "), problem.line or 0)


# ------------------------------------------------------------------- public
_KINDS = {list: "a list", str: "text", int: "a number", float: "a number", bool: "a boolean"}


def _validate(data: Any, source: str, lines: Mapping[FieldPath, int], overrides: Sequence[str],
              path: str | None) -> Study:
    if data is None:
        raise StudyError([Problem(source, None, "", "is empty", allowed=_SECTIONS)], path)
    if not isinstance(data, dict):
        kind = _KINDS.get(type(data), type(data).__name__)
        raise StudyError([Problem(source, lines.get(()), "", "not a mapping of sections",
                                  got=f"{kind} {show(data, 40)}", allowed=_SECTIONS)], path)
    try:
        raw, applied = apply_overrides(data, overrides)
    except StudyError as error:
        raise StudyError(error.problems, path) from None
    locate = _Locator(source, lines, applied)
    try:
        model = StudyModel.model_validate(raw)
    except ValidationError as error:
        problems = sorted((_from_pydantic(each, locate) for each in error.errors()), key=_problem_order)
        raise StudyError(problems, path) from None
    return build_study(model, raw, path, locate)


def study_from_dict(data: Mapping[str, Any], source: str = "<dict>",
                    overrides: Sequence[str] = ()) -> Study:
    """Validate a study given as a dict (as `yaml.safe_load` would return it)."""
    return _validate(copy.deepcopy(data) if isinstance(data, Mapping) else data, source, {}, overrides, None)


def load_study(path: str | Path, overrides: Sequence[str] = ()) -> Study:
    """Read, override (`dotted.path=value`), and validate a study file; StudyError if anything is wrong."""
    source = str(path)
    try:
        # Never more than a study can hold: a huge file, or /dev/zero, is refused after a bounded read.
        with Path(path).open("rb") as handle:
            data = handle.read(MAX_YAML_BYTES + 1)
        if len(data) > MAX_YAML_BYTES:
            raise StudyError([Problem(source, None, "", f"too large to be a study (over {MAX_YAML_BYTES:,} bytes)",
                                      allowed=f"at most {MAX_YAML_CHARS:,} characters")], source)
        text = data.decode("utf-8")
    except FileNotFoundError:
        raise StudyError([Problem(source, None, "", "no such study file",
                                  allowed="a path to a YAML file, e.g. studies/smoke.yaml")], source) from None
    except IsADirectoryError:
        raise StudyError([Problem(source, None, "", "is a directory, not a study file")], source) from None
    except UnicodeDecodeError as error:
        raise StudyError([Problem(source, None, "", f"is not UTF-8 text ({error.reason})")], source) from None
    except OSError as error:
        raise StudyError([Problem(source, None, "", f"cannot be read ({error.strerror})")], source) from None
    try:
        data, lines = parse_yaml(text, source)
    except StudyError as error:
        raise StudyError(error.problems, source) from None
    return _validate(data, source, lines, overrides, source)
