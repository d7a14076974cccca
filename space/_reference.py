"""The study language documented from its one source: the JSON Schema, the reference page and `--explain`.

Everything here is derived from the pydantic models in `_schema` (a field's
meaning is its docstring there), the searched-value forms in `_forms`, and
the registries whose keys are the allowed names; nothing is written twice.

    study_json_schema()                 the JSON Schema (draft 2020-12), shipped as space/study.schema.json
    field_docs()                        one FieldDoc per field path, read back from that schema
    reference_markdown()                docs/STUDY_REFERENCE.md
    explain(study, "space.shortcut")    one field's entry and its value in a study

`python -m space schema` and `python -m space reference` print the two files;
tests/space/test_reference.py fails when either is stale.
"""

from __future__ import annotations

import dataclasses
import difflib
import json
import textwrap
from dataclasses import dataclass
from pathlib import Path
from typing import Any, Iterator

import yaml
from pydantic.json_schema import GenerateJsonSchema

from imagefeed import AUGMENTATIONS, DATASET_KINDS
from models import BOTTLENECK_BLOCKS, ArchSpec, StageSpec

from ._errors import FieldPath, Problem, StudyError, dotted
from ._forms import (CHOICE, FLOAT_RANGE, FORM_SYNTAX, INT_RANGE, UNKNOWN_FORM, Choice, FloatRange, IntRange,
                     attribute_docstrings)
from ._overrides import _parse_path
from ._schema import BOTTLENECK_ONLY, StudyModel
from ._settings import DATASET_CLASSES
from ._study import Study

DIALECT = "https://json-schema.org/draft/2020-12/schema"
SCHEMA_FILE = Path(__file__).with_name("study.schema.json")
# The first line of every file in studies/: the YAML language server (VS Code, JetBrains, vim, ...)
# reads the schema from it, relative to the file, and completes and checks fields as one types.
SCHEMA_LINE = "# yaml-language-server: $schema=../space/study.schema.json"

# A searched form's one required key -> how the reference writes the form.
_FORM_KEYS = {"choice": FORM_SYNTAX[CHOICE], "int": FORM_SYNTAX[INT_RANGE], "float": FORM_SYNTAX[FLOAT_RANGE]}
_ARCH_DEFAULTS = {f.name: f.default for f in dataclasses.fields(ArchSpec) if f.default is not dataclasses.MISSING}
_STAGE_DEFAULTS = {f.name: f.default for f in dataclasses.fields(StageSpec) if f.default is not dataclasses.MISSING}


# ------------------------------------------------------------ JSON Schema
class _StudySchemaGenerator(GenerateJsonSchema):
    """pydantic's JSON Schema, without titles and without the form that exists only to explain a mistake."""

    def tagged_union_schema(self, schema: Any) -> dict[str, Any]:
        choices = {tag: choice for tag, choice in schema["choices"].items() if tag != UNKNOWN_FORM}
        return super().tagged_union_schema({**schema, "choices": choices})

    def field_title_should_be_set(self, schema: Any) -> bool:
        return False

    def model_schema(self, schema: Any) -> dict[str, Any]:
        """Each field's docstring is its description, unless the field gives one itself."""
        json_schema = super().model_schema(schema)
        model = schema["cls"]
        docstrings = attribute_docstrings(model)
        properties = json_schema.get("properties", {})
        for name, field in model.model_fields.items():
            shown = properties.get(field.alias or name)
            if shown is not None and name in docstrings and field.description is None:
                shown["description"] = docstrings[name]
        return json_schema


def _form_key(node: Any) -> str | None:
    """"choice", "int" or "float" for the schema of a searched form; None for anything else."""
    if isinstance(node, dict) and node.get("type") == "object" and len(node.get("required", ())) == 1:
        key = node["required"][0]
        return key if key in _FORM_KEYS else None
    return None


def _tidy(node: Any, defs: dict[str, Any], forms: set[str]) -> Any:
    """Inline the searched forms, drop titles and section defaults, and put each description on one line."""
    if isinstance(node, list):
        return [_tidy(item, defs, forms) for item in node]
    if not isinstance(node, dict):
        return node
    name = node.get("$ref", "").rpartition("/")[2]
    if name in forms:  # a form is a few lines: inline, every field reads on its own
        return _tidy({**defs[name], **{k: v for k, v in node.items() if k != "$ref"}}, defs, forms)
    tidy: dict[str, Any] = {}
    for key, value in node.items():
        if key == "title" or (key == "default" and "$ref" in node):  # a section's fields give its defaults
            continue
        if key == "properties":
            tidy[key] = {field: _tidy(schema, defs, forms) for field, schema in value.items()}
        elif key == "description":
            tidy[key] = " ".join(value.split())
        else:
            tidy[key] = _tidy(value, defs, forms)
    return tidy


def study_json_schema() -> dict[str, Any]:
    """The JSON Schema (draft 2020-12) of a study file, generated from the pydantic models and the registries."""
    generated = StudyModel.model_json_schema(mode="validation", schema_generator=_StudySchemaGenerator)
    defs = generated.pop("$defs")
    forms = {name for name, schema in defs.items() if _form_key(schema)}
    body = _tidy(generated, defs, forms)
    sections = {name: _tidy(schema, defs, forms) for name, schema in defs.items() if name not in forms}
    return {"$schema": DIALECT, "title": "resnas study file",
            "description": "A study: the question, the data, the architecture space, the training and the search. "
                           "Reference: docs/STUDY_REFERENCE.md; tutorial: docs/WRITING_STUDIES.md.",
            **{key: value for key, value in body.items() if key != "description"}, "$defs": sections}


def schema_text() -> str:
    """The JSON Schema as the text of space/study.schema.json."""
    return json.dumps(study_json_schema(), indent=2, ensure_ascii=False) + "\n"


# ---------------------------------------------------------- field entries
@dataclass(frozen=True)
class FieldDoc:
    """One field of the study language, as the reference lists it."""

    path: str           # "space.stages[i].depth"
    type: str           # "integer", "text or null", "mapping"
    default: str        # "164", "required", "space.base's, else B"
    allowed: str        # "A, B, C, D, none", "[1, 10000]"; "" where the type says it all
    searched: str       # "{choice: [...]} or {int: [low, high]}"; "" for a field that is always fixed
    meaning: str
    section: bool       # a mapping (or a list of mappings) of further fields

    def entry(self) -> str:
        """The entry as plain text: the path, its meaning, then one line per fact."""
        facts = [("type", self.type), ("default", self.default), ("allowed", self.allowed),
                 ("searched", "" if self.section else self.searched or "no (always a fixed value)")]
        meaning = textwrap.wrap(self.meaning, width=100, initial_indent="  ", subsequent_indent="  ")
        return "\n".join([self.path, *meaning, *(f"  {name}: {value}" for name, value in facts if value)])


def _resolve(node: dict[str, Any], defs: dict[str, Any]) -> dict[str, Any]:
    ref = node.get("$ref")
    return defs[ref.rpartition("/")[2]] if ref else node


def _members(node: dict[str, Any], defs: dict[str, Any]) -> list[dict[str, Any]]:
    """The alternatives a value may take: the members of anyOf/oneOf, flattened and resolved."""
    node = _resolve(node, defs)
    alternatives = node.get("anyOf") or node.get("oneOf")
    if alternatives is None:
        return [node]
    return [member for alternative in alternatives for member in _members(alternative, defs)]


def _yaml(value: Any) -> str:
    """A value as a study file writes it: `B`, `0.25`, `[0.5, 0.75]`, `null`, `{choice: [A, B]}`."""
    if isinstance(value, float) and value == int(value) and abs(value) < 1e16:
        return repr(value)  # 1.0 stays a float
    text = yaml.safe_dump(value, default_flow_style=True, sort_keys=False, width=1_000_000)
    return text.removesuffix("\n...\n").strip()


_TYPE_NAMES = {"integer": "integer", "number": "number", "boolean": "true or false", "string": "text",
               "object": "mapping", "null": "null"}


def _type_name(node: dict[str, Any], defs: dict[str, Any]) -> str:
    if node.get("type") == "array":
        return "list of " + " or ".join(dict.fromkeys(_type_name(m, defs) for m in _members(node["items"], defs)))
    if "properties" in node:
        return "mapping"
    return _TYPE_NAMES.get(node.get("type", ""), "any")


def _number(value: float) -> str:
    return str(value) if isinstance(value, int) else f"{value:g}"


def _allowed(node: dict[str, Any], defs: dict[str, Any]) -> list[str]:
    """What a fixed value of this schema may be, in words; [] where its type says it all."""
    if "enum" in node:
        return [", ".join(_yaml(level) for level in node["enum"])]
    if node.get("type") == "array":
        parts = [text for member in _members(node["items"], defs) for text in _allowed(member, defs)]
        low, high = node.get("minItems"), node.get("maxItems")
        if low is not None and high is not None:
            parts.append(f"{low} to {high} items")
        elif low is not None:
            parts.append(f"at least {low} item{'s' if low != 1 else ''}")
        return parts
    low = node.get("minimum", node.get("exclusiveMinimum"))
    high = node.get("maximum", node.get("exclusiveMaximum"))
    if low is not None and high is not None:
        opening = "(" if "exclusiveMinimum" in node else "["
        closing = ")" if "exclusiveMaximum" in node else "]"
        return [f"{opening}{_number(low)}, {_number(high)}{closing}"]
    if low is not None:
        return [f"{'>' if 'exclusiveMinimum' in node else '>='} {_number(low)}"]
    if high is not None:
        return [f"{'<' if 'exclusiveMaximum' in node else '<='} {_number(high)}"]
    return []


def _derived_default(path: str) -> str | None:
    """Where a space field left out (null) gets its value: the base preset, the dataset, or ArchSpec."""
    section, _, name = path.partition(".")
    if section != "space":
        return None
    if name == "num_classes":
        return "the dataset's (" + ", ".join(f"{data}: {count if count is not None else 'set it'}"
                                             for data, count in DATASET_CLASSES.items()) + ")"
    if name in _ARCH_DEFAULTS:
        return f"space.base's, else {_yaml(_ARCH_DEFAULTS[name])}"
    stage_field = name.removeprefix("stages[i].")
    if stage_field != name:
        default = _STAGE_DEFAULTS.get(stage_field)
        return "the stage of space.base" + (f", else {_yaml(default)}" if default is not None else "")
    return None


def _conditional(path: str) -> str:
    """The sentence that marks a field only some blocks have."""
    section, _, name = path.partition(".")
    if section == "space" and name in BOTTLENECK_ONLY:
        return (f" Conditional: only {' and '.join(BOTTLENECK_BLOCKS)} blocks have it; where space.block is "
                "searched, trials with other blocks neither sample nor use it.")
    return ""


def _walk(model: dict[str, Any], defs: dict[str, Any], prefix: str) -> Iterator[FieldDoc]:
    required = set(model.get("required", ()))
    for name, node in model["properties"].items():
        path = prefix + name
        members = _members(node, defs)
        nullable = any(member.get("type") == "null" for member in members)
        values = [member for member in members if member.get("type") != "null"]
        forms = [key for key in map(_form_key, values) if key]
        fixed = [member for member in values if not _form_key(member)]
        if name in required:
            default = "required"
        else:
            default = _yaml(node.get("default"))
            if node.get("default") is None:
                default = _derived_default(path) or default
        section = next((member for member in fixed if "properties" in member), None)
        listed = next((_resolve(member["items"], defs) for member in fixed if member.get("type") == "array"
                       and "properties" in _resolve(member["items"], defs)), None)
        meaning = node.get("description") or (section or listed or {}).get("description", "")
        or_null = " or null" if nullable else ""
        if section is not None:
            yield FieldDoc(path, "mapping" + or_null, "each field's default" if not nullable else default,
                           "", "", meaning, True)
            yield from _walk(section, defs, path + ".")
        elif listed is not None:
            yield FieldDoc(path, "list of mappings" + or_null, default, "; ".join(_allowed(fixed[0], defs)),
                           "", meaning, True)
            yield from _walk(listed, defs, path + "[i].")
        else:
            types = " or ".join(dict.fromkeys(_type_name(member, defs) for member in fixed))
            allowed = "; ".join(dict.fromkeys(text for member in fixed for text in _allowed(member, defs)))
            yield FieldDoc(path, types + or_null, default, allowed, " or ".join(_FORM_KEYS[key] for key in forms),
                           meaning + _conditional(path), False)


def field_docs() -> list[FieldDoc]:
    """Every field a study file may give, in file order, read from the JSON Schema."""
    schema = study_json_schema()
    return list(_walk(schema, schema["$defs"], ""))


# ---------------------------------------------------------------- markdown
def _cell(text: str) -> str:
    return text.replace("|", "\\|")


def _forms_table() -> list[str]:
    rows = ["| form | keys | meaning |", "| --- | --- | --- |"]
    for form in (Choice, IntRange, FloatRange):
        schema = form.model_json_schema(schema_generator=_StudySchemaGenerator)
        keys = " ".join(f"`{key}`: {' '.join(field.get('description', '').split())}"
                         for key, field in schema["properties"].items())
        syntax = _FORM_KEYS[schema["required"][0]]
        rows.append(f"| `{syntax}` | {_cell(keys)} | {_cell(' '.join((form.__doc__ or '').split()))} |")
    return rows


def _table(docs: list[FieldDoc]) -> list[str]:
    rows = ["| field | type | default | allowed | searched | meaning |", "| --- | --- | --- | --- | --- | --- |"]
    for doc in docs:
        cells = [f"`{doc.path}`", doc.type, doc.default, doc.allowed, f"`{doc.searched}`" if doc.searched else "no",
                 doc.meaning]
        rows.append("| " + " | ".join(_cell(cell) for cell in cells) + " |")
    return rows


def reference_markdown() -> str:
    """docs/STUDY_REFERENCE.md: every field a study file accepts, one table per section."""
    docs = field_docs()
    sections = [doc for doc in docs if doc.section]
    lines = [
        "# Study file reference",
        "",
        "<!-- Generated by `python -m space reference > docs/STUDY_REFERENCE.md` from the docstrings in",
        "     space/_schema.py and the registries; edit those and regenerate. tests/space/test_reference.py",
        "     fails when this file is stale. -->",
        "",
        "Every field a study file accepts. The same facts, for editors: the JSON Schema",
        "`space/study.schema.json` (`python -m space schema`), which each file in `studies/` names on its",
        f"first line (`{SCHEMA_LINE}`). One field and its value in one study:",
        "`python -m search.run STUDY.yaml --explain space.shortcut`. A walk from a copy of the smoke",
        "study to an ablation and a search: [WRITING_STUDIES.md](WRITING_STUDIES.md).",
        "",
        "Paths are written as `--set` and `--explain` take them: `space.stages[i].depth` is the depth",
        "of stage i (from 0). Types are YAML's: text, integer, number (an integer also does), true or",
        "false, null, lists and mappings. An unknown field or a value of the wrong type is an error,",
        "never ignored. (JSON has one kind of number, so the JSON Schema, and an editor, take `64.0`",
        "where an integer is due; the loader does not.)",
        "",
        "## Searched values",
        "",
        "A field whose *searched* column names a form takes either a fixed value or that form. A",
        "grid visits every level of every choice and every step of every range (crossed with",
        "`search.seeds`); an optuna study samples them. Each searched field is a factor of the",
        "report, compared against its reference level.",
        "",
        *_forms_table(),
        "",
        "## Top level",
        "",
        *_table([doc for doc in docs if "." not in doc.path]),
    ]
    for section in sections:
        children = [doc for doc in docs if doc.path.startswith(section.path + ".") or
                    doc.path.startswith(section.path + "[i].")]
        direct = [doc for doc in children if "." not in doc.path[len(section.path) + 1:].removeprefix("i].")]
        depth = "##" if "." not in section.path else "###"
        lines += ["", f"{depth} `{section.path}`", "", section.meaning, "", *_table(direct)]
        if section.path == "data":
            lines += ["", *_dataset_kinds()]
    return "\n".join(lines) + "\n"


def _dataset_kinds() -> list[str]:
    """The kinds `data.dataset` names, from imagefeed's registry: what data.root must hold, and their defaults."""
    rows = []
    for kind in DATASET_KINDS.values():
        layout = kind.layout.replace("|", r"\|")  # a | in a layout would end the table cell
        classes = kind.num_classes if kind.num_classes is not None else "the class folders: set space.num_classes"
        stored = kind.image_sizes if kind.image_sizes and len(kind.image_sizes) > 1 else ()
        size = f"{kind.image_size}" + (f" (stored at {', '.join(map(str, stored))})" if stored else "")
        # The name without backticks: a `code` first cell marks a field row, which tests read as a field path.
        rows.append(f"| {kind.name} | {kind.title} | {layout} | {classes} | {size} | {kind.normalize} | "
                    f"{AUGMENTATIONS[kind.augment]} |")
    return [
        "### Dataset kinds",
        "",
        "What each `data.dataset` expects at `data.root` (a layout it does not find is refused before any trial",
        "starts, naming what it expected where), and what it gives `space.num_classes`, `data.image_size` and",
        "`data.normalize` when the study leaves them out. The held-out split that ships with the data (`val/`,",
        "`val_data`, `test_batch`) is the test set; trials are ranked on `data.val_fraction` of the training",
        "images. A streamed kind's `data.root` may also name a packed store (`python -m search.pack DATASET ROOT",
        "OUT`). How to point a study at ImageNet, its flat validation set, and the proxies to try first: the",
        "README's \"Pointing a study at ImageNet\" and the headers of `studies/imagenet_*.yaml`.",
        "",
        "| data.dataset | what | `data.root` holds | classes | image size | normalize | training augmentation |",
        "| --- | --- | --- | --- | --- | --- | --- |",
        *rows,
    ]


# ------------------------------------------------------------------ explain
_MISSING = object()


def _lookup(data: Any, path: FieldPath) -> Any:
    """The value at `path` in plain study data, or _MISSING."""
    for part in path:
        present = (isinstance(part, int) and isinstance(data, list) and 0 <= part < len(data)) or \
                  (isinstance(part, str) and isinstance(data, dict) and part in data)
        if not present:
            return _MISSING
        data = data[part]
    return data


def _closest(text: str, paths: list[str]) -> str | None:
    """The path meant by a mistyped one: same last name (`shortcut`), then close as a whole, then by last name."""
    def last(path: str) -> str:
        return path.rpartition(".")[2]
    same_name = [path for path in paths if last(path) == last(text)]
    whole = [path for path in difflib.get_close_matches(text, paths, n=3)
             if difflib.SequenceMatcher(None, last(path), last(text)).ratio() >= 0.6]
    names = difflib.get_close_matches(last(text), [last(path) for path in paths], n=1)
    by_name = [path for path in paths if names and last(path) == names[0]]
    return next(iter(same_name + whole + by_name), None)


def _unknown(text: str, paths: list[str]) -> StudyError:
    close = [path for path in [_closest(text, paths)] if path]
    hint = f" (did you mean {close[0]!r}?)" if close else ""
    return StudyError([Problem(f"--explain {text}", None, "", f"unknown field{hint}",
                               allowed=None if close else "a field path of docs/STUDY_REFERENCE.md, "
                                                          "e.g. space.shortcut or train.lr")])


def _value_in_study(study: Study, path: FieldPath, doc: FieldDoc) -> str:
    """The value at `path` as the study gives it (after --set), or where a value left out comes from."""
    given = _lookup(study.raw, path)
    parameter = next((p for p in study.search_space.parameters if p.path == path), None)
    if given is not _MISSING:
        note = ""
        if parameter is not None:
            levels = parameter.levels
            note = (f" (searched: {len(levels)} levels, reference {_yaml(levels[0])})" if levels
                    else " (searched: a range)")
        return _yaml(given) + note
    base = study.model.space.base
    if path[:1] == ("space",) and len(path) == 2 and path[1] in _ARCH_DEFAULTS:
        value = study.search_space.arch.get(path[1], _ARCH_DEFAULTS[path[1]])
        source = ("data.dataset" if path[1] == "num_classes" else
                  f"space.base {base}" if base and path[1] in study.search_space.arch else "ArchSpec's default")
        return f"not set; every trial gets {_yaml(value)} (from {source})"
    if path == ("space", "stages") and base:
        return f"not set; the {len(study.search_space.stages)} stages of space.base {base}"
    if path[:2] == ("space", "stages") and len(path) == 4 and path[2] < len(study.search_space.stages):
        if path[3] == "depth" and study.model.space.blocks_per_stage is not None:
            return "not set; space.blocks_per_stage gives every stage its depth"
        value = study.search_space.stages[path[2]].get(path[3])
        return f"not set; {_yaml(value)} (from space.base {base})" if value is not None else "not set"
    if doc.section and doc.default != "null":
        return "not set; every field at its default"
    return f"not set; the default: {doc.default}"


def explain(study: Study, path: str) -> str:
    """The reference entry of the field at `path` (e.g. `space.shortcut`) and its value in `study`.

    `space.stages[1].depth` names one stage and `space.stages[i].depth` every
    stage. An unknown path is a StudyError naming the closest field.
    """
    docs = {doc.path: doc for doc in field_docs()}
    every_stage = "[i]" in path
    parts = _parse_path(path.replace("[i]", "[0]").strip(), f"--explain {path}")
    key = dotted(parts)
    for index in {part for part in parts if isinstance(part, int)}:
        key = key.replace(f"[{index}]", "[i]")
    if key not in docs:
        raise _unknown(path, list(docs))
    where = study.path or "the study"
    if every_stage:
        count = len(study.search_space.stages)
        values = [f"stages[{index}]: " + _value_in_study(study, (*parts[:2], index, *parts[3:]), docs[key])
                  for index in range(count)]
        value = "; ".join(values)
    else:
        value = _value_in_study(study, parts, docs[key])
    return f"{docs[key].entry()}\nin {where} (after --set): {value}"
