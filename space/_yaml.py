"""Reading YAML safely while remembering the line of every key, so errors can point at it.

Study files and `--set` values come from people, and sometimes from people
who mean harm, so the reader caps what a document may cost before anything
walks it: its size, its nesting depth, and the number of nodes after aliases
are expanded (a 500-byte "billion laughs" file of nested aliases expands to
tens of millions of nodes and held the loader for minutes and gigabytes). Each breach
is one StudyError, raised before the data is built.
"""

from __future__ import annotations

import re
from typing import Any

import yaml

# The caps (size, depth, values after aliases) and their checks have one home, runfolder._untrusted, shared
# with the YAML documents of a run folder (study.yaml as run, a checkpoint's arch.yaml).
from runfolder import untrusted

from ._errors import FieldPath, Problem, StudyError, dotted

MAX_YAML_CHARS, MAX_YAML_DEPTH, MAX_YAML_NODES = untrusted.MAX_YAML_CHARS, untrusted.MAX_YAML_DEPTH, untrusted.MAX_YAML_NODES
CappedSafeLoader, YamlLimitError = untrusted.CappedSafeLoader, untrusted.YamlLimitError
_check_expansion = untrusted.check_yaml_expansion


class LineRecordingLoader(CappedSafeLoader):
    """`yaml.safe_load` (SafeConstructor: plain data only, never code) that keeps the node tree.

    Its composer stops at MAX_YAML_DEPTH (runfolder's CappedSafeLoader) before
    Python's recursion limit can.
    """


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


def _control_character_problem(error: yaml.reader.ReaderError, text: str, where: str) -> Problem:
    line = text.count("\n", 0, error.position) + 1 if isinstance(error.position, int) else None
    character = error.character
    code = ord(character) if isinstance(character, str) else int(character)
    return Problem(where, line, "", f"not valid YAML: the control character U+{code:04X} is not allowed in "
                                    "YAML text", allowed="printable text (tabs and line breaks are fine)")


def parse_yaml(text: str, where: str) -> tuple[Any, dict[FieldPath, int]]:
    """The data of one YAML document and the line of each field path; StudyError if unreadable or too costly."""
    if len(text) > MAX_YAML_CHARS:
        raise StudyError([Problem(where, None, "", f"too large to be a study ({len(text):,} characters)",
                                  allowed=f"at most {MAX_YAML_CHARS:,} characters")], where)
    loader = None
    try:
        # Inside the try: the reader checks every character as it is built.
        loader = LineRecordingLoader(text)
        node = loader.get_single_node()
        if node is None:
            return None, {}
        _check_expansion(node)
        data = loader.construct_document(node)
    except YamlLimitError as error:
        mark = error.problem_mark
        raise StudyError([Problem(where, mark.line + 1 if mark is not None else None, "",
                                  f"too costly to read: {error.problem}",
                                  allowed=f"at most {MAX_YAML_DEPTH} levels and {MAX_YAML_NODES:,} values "
                                          "after aliases, with no alias inside its own anchor")],
                         where) from None
    except yaml.reader.ReaderError as error:
        raise StudyError([_control_character_problem(error, text, where)], where) from None
    except yaml.constructor.ConstructorError as error:
        raise StudyError([_tag_problem(error, where)], where) from None
    except yaml.MarkedYAMLError as error:
        mark = error.problem_mark or error.context_mark
        line = mark.line + 1 if mark is not None else None
        raise StudyError([Problem(where, line, "", f"not valid YAML: {error.problem or error.context}")],
                         where) from None
    except yaml.YAMLError as error:
        raise StudyError([Problem(where, None, "", f"not valid YAML: {error}")], where) from None
    except ValueError as error:  # an integer of more digits than Python converts (4,300)
        raise StudyError([Problem(where, None, "", f"not valid YAML: {str(error).split(':')[0]}")],
                         where) from None
    finally:
        if loader is not None:
            loader.dispose()
    lines: dict[FieldPath, int] = {(): node.start_mark.line + 1}
    _record_lines(node, (), lines, where, set())
    return data, lines
