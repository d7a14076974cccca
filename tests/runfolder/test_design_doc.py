"""docs/DESIGN.md's "Run folder" section shows the documents as their types define them, and cannot drift.

The tables between the `<!-- BEGIN ... -->` and `<!-- END ... -->` markers are
generated here from the dataclasses and TypedDicts of runfolder; a field added,
removed, retyped or re-defaulted without the page following fails this test,
whose message holds the table to paste.
"""

from __future__ import annotations

import dataclasses
import json
import re
from pathlib import Path
from typing import Any

import pytest

import runfolder
from runfolder._run_info import NESTED_PARTS, document_fields, field_default
from runfolder._study_record import plain

DESIGN = Path(__file__).resolve().parents[2] / "docs" / "DESIGN.md"


def _cell(text: str) -> str:
    return text.replace("|", "\\|")


def _code(text: str) -> str:
    return _cell(f"`{text}`")


def _type(annotation: Any) -> str:
    """An annotation as written in the source (the modules use `from __future__ import annotations`)."""
    return str(getattr(annotation, "__forward_arg__", annotation))


def _default(value: Any) -> str:
    return _code(json.dumps(plain(value), default=str))


def fields_table(cls: type) -> str:
    """A document's fields (type, default, meaning), then its typed accessors (properties)."""
    lines = ["| field | type | default | meaning |", "| --- | --- | --- | --- |"]
    for f in document_fields(cls):
        cells = [_code(f.name), _code(str(f.type)), _default(field_default(f)), _cell(f.metadata["doc"])]
        lines.append(f"| {' | '.join(cells)} |")
    for name, member in vars(cls).items():
        if isinstance(member, property):
            summary = (member.__doc__ or "").strip().splitlines()[0]
            kind = member.fget.__annotations__.get("return", "")
            lines.append(f"| {_code(name)} (read) | {_code(_type(kind))} | | {_cell(summary)} |")
    return "\n".join(lines)


def parts_table() -> str:
    """run.json's nested parts: each TypedDict and its keys with their types."""
    lines = ["| part | keys |", "| --- | --- |"]
    for part in NESTED_PARTS:
        keys = ", ".join(_code(f"{key}: {_type(kind)}") for key, kind in part.__annotations__.items())
        lines.append(f"| {_code(part.__name__)} | {keys} |")
    return "\n".join(lines)


TABLES = {
    "RunInfo": lambda: fields_table(runfolder.RunInfo),
    "RunInfo parts": parts_table,
    "StudyRecord": lambda: fields_table(runfolder.StudyRecord),
}


def _block(text: str, name: str) -> str | None:
    match = re.search(rf"<!-- BEGIN {re.escape(name)} [^>]*-->\n(.*?)\n<!-- END {re.escape(name)} -->", text, re.S)
    return match.group(1) if match else None


@pytest.mark.parametrize("name", list(TABLES))
def test_design_shows_each_document_as_its_type_defines_it(name: str) -> None:
    shown = _block(DESIGN.read_text(encoding="utf-8"), name)
    assert shown is not None, f"docs/DESIGN.md has no <!-- BEGIN {name} ... --> ... <!-- END {name} --> block"
    expected = TABLES[name]()
    assert shown == expected, f"docs/DESIGN.md's {name} table differs from the type; paste this:\n{expected}"


def test_design_mentions_the_current_format_version() -> None:
    assert f"`format_version` {runfolder.RUN_INFO_FORMAT}" in DESIGN.read_text(encoding="utf-8")


def test_a_field_added_without_its_row_is_caught() -> None:
    """The check can fail: a RunInfo with one more field gives a table that the page does not hold."""

    @dataclasses.dataclass(frozen=True)
    class Grown(runfolder.RunInfo):
        energy_kwh: float | None = dataclasses.field(default=None, metadata={"doc": "energy used"})

    shown = _block(DESIGN.read_text(encoding="utf-8"), "RunInfo")
    grown = fields_table(Grown)
    assert "`energy_kwh`" in grown and shown != grown
