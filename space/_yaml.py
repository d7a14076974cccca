"""Reading YAML safely while remembering the line of every key, so errors can point at it."""

from __future__ import annotations

import re
from typing import Any

import yaml

from ._errors import FieldPath, Problem, StudyError, dotted


class LineRecordingLoader(yaml.SafeLoader):
    """`yaml.safe_load` (SafeConstructor: plain data only, never code) that keeps the node tree."""


# YAML 1.2 floats such as 1e6 and 2.0e6: PyYAML follows YAML 1.1, where they are
# text, and `max_macs: 3e8` would then fail as "not a number".
LineRecordingLoader.add_implicit_resolver(
    "tag:yaml.org,2002:float",
    re.compile(r"^[-+]?(?:[0-9][0-9_]*(?:\.[0-9_]*)?|\.[0-9_]+)[eE][-+]?[0-9]+$"),
    list("-+0123456789."),
)

_CORE_TAG = "tag:yaml.org,2002:"


def _tag_problem(error: yaml.constructor.ConstructorError, where: str) -> Problem:
    mark = error.problem_mark or error.context_mark
    line = mark.line + 1 if mark is not None else None
    found = re.search(r"tag '([^']+)'", error.problem or "")
    if found is None:
        return Problem(where, line, "", f"not valid YAML: {error.problem}")
    tag = found.group(1).replace(_CORE_TAG, "!!")
    return Problem(where, line, "", f"YAML tag {tag!r} is not allowed",
                   allowed="plain mappings, lists, text, numbers, true/false and null "
                           "(study files are read with yaml.safe_load, which never runs code)")


def _record_lines(node: yaml.Node, path: FieldPath, lines: dict[FieldPath, int], where: str,
                  on_stack: set[int]) -> None:
    """Line of each key and list item, keyed by field path; duplicate keys are an error."""
    if id(node) in on_stack:  # a recursive alias (&a [*a]) would loop forever
        return
    on_stack.add(id(node))
    if isinstance(node, yaml.MappingNode):
        for key_node, value_node in node.value:
            if not isinstance(key_node, yaml.ScalarNode) or key_node.value == "<<":
                continue
            child = (*path, key_node.value)
            line = key_node.start_mark.line + 1
            if child in lines:
                raise StudyError([Problem(where, line, dotted(child),
                                          f"duplicate key {key_node.value!r} (first at line {lines[child]})",
                                          allowed="each key once per mapping")], where)
            lines[child] = line
            _record_lines(value_node, child, lines, where, on_stack)
    elif isinstance(node, yaml.SequenceNode):
        for index, item in enumerate(node.value):
            child = (*path, index)
            lines[child] = item.start_mark.line + 1
            _record_lines(item, child, lines, where, on_stack)
    on_stack.discard(id(node))


def parse_yaml(text: str, where: str) -> tuple[Any, dict[FieldPath, int]]:
    """The data of one YAML document and the line of each field path; StudyError if unreadable."""
    loader = LineRecordingLoader(text)
    try:
        node = loader.get_single_node()
        if node is None:
            return None, {}
        data = loader.construct_document(node)
    except yaml.constructor.ConstructorError as error:
        raise StudyError([_tag_problem(error, where)], where) from None
    except yaml.MarkedYAMLError as error:
        mark = error.problem_mark or error.context_mark
        line = mark.line + 1 if mark is not None else None
        raise StudyError([Problem(where, line, "", f"not valid YAML: {error.problem or error.context}")],
                         where) from None
    except yaml.YAMLError as error:
        raise StudyError([Problem(where, None, "", f"not valid YAML: {error}")], where) from None
    finally:
        loader.dispose()
    lines: dict[FieldPath, int] = {(): node.start_mark.line + 1}
    _record_lines(node, (), lines, where, set())
    return data, lines
