"""Forty broken or hostile study files, each refused by `search.run --dry-run` with one line and exit status 2.

The line names the file, and no traceback escapes. The cases start from
studies/smoke.yaml: broken YAML, hostile YAML, wrong shapes, unknown fields,
wrong types, values out of bounds, and settings that cannot matter.
"""

from __future__ import annotations

from pathlib import Path

import pytest
import yaml

from commands import SMOKE, call_main
from search import run as search_run

SMOKE_TEXT = SMOKE.read_text(encoding="utf-8")
# The raw bytes of each file that is broken as text.
TEXT_CASES: dict[str, bytes] = {
    "empty file": b"",
    "only a comment": b"# nothing here\n",
    "a list at the top": b"- name: smoke\n",
    "a scalar at the top": b"smoke\n",
    "an unclosed bracket": SMOKE_TEXT.encode() + b"\nextra: [1, 2\n",
    "a tab for indentation": b"name: smoke\nspace:\n\tshortcut: A\n",
    "a NUL byte": SMOKE_TEXT.encode().replace(b"smoke", b"sm\x00oke", 1),
    "a control character": SMOKE_TEXT.encode().replace(b"smoke", b"sm\x07oke", 1),
    "a python object tag": b"name: !!python/object/apply:os.system ['true']\n" + SMOKE_TEXT.encode(),
    "an alias bomb": b"a: &a [x, x, x, x, x, x, x, x, x]\n" + b"".join(
        f"{chr(98 + i)}: &{chr(98 + i)} [*{chr(97 + i)}, *{chr(97 + i)}, *{chr(97 + i)}, *{chr(97 + i)}, "
        f"*{chr(97 + i)}, *{chr(97 + i)}, *{chr(97 + i)}, *{chr(97 + i)}, *{chr(97 + i)}]\n".encode()
        for i in range(8)),
    "5,000 levels of nesting": b"name: " + b"[" * 5000 + b"]" * 5000 + b"\n",
    "a file past the size cap": SMOKE_TEXT.encode() + b"\n" + b"# padding padding padding\n" * 8000,
    "bytes that are not UTF-8": SMOKE_TEXT.encode().replace(b"smoke", b"sm\xff\xfeoke", 1),
}


def _set(path: str, value):
    """A change to the parsed smoke study: `path` (dotted; [i] indexes a list) set to `value`."""

    def change(study: dict) -> None:
        *parents, last = path.split(".")
        node = study
        for part in parents:
            name, _, index = part.partition("[")
            node = node.setdefault(name, {})
            if index:
                node = node[int(index.rstrip("]"))]
        name, _, index = last.partition("[")
        if index:
            node[name][int(index.rstrip("]"))] = value
        else:
            node[name] = value

    return change


def _drop(path: str):
    def change(study: dict) -> None:
        *parents, last = path.split(".")
        node = study
        for part in parents:
            node = node[part]
        del node[last]

    return change


# Changes to a well-formed study that make it wrong.
FIELD_CASES = {
    "an unknown top-level field": _set("extras", 1),
    "a misspelt field": _set("space.shortcutt", "A"),
    "no name": _drop("name"),
    "a name that is a list": _set("name", ["a", "b"]),
    "an unknown dataset": _set("data.dataset", "mnist"),
    "a negative training set size": _set("data.synthetic_train", -5),
    "a training set of a trillion images": _set("data.synthetic_train", 10 ** 12),
    "data.root with the synthetic dataset": _set("data.root", "/tmp"),
    "zero epochs": _set("train.epochs", 0),
    "epochs as words": _set("train.epochs", "three"),
    "a negative learning rate": _set("train.lr", -0.1),
    "a learning rate of NaN": _set("train.lr", float("nan")),
    "a batch size of zero": _set("train.batch_size", 0),
    "an unknown optimizer": _set("train.optimizer", "adamax9"),
    "an unknown schedule": _set("train.schedule", "sawtooth"),
    "an unknown shortcut": _set("space.shortcut", "E"),
    "no stages": _set("space.stages", []),
    "a stage 100,000 blocks deep": _set("space.stages[0].depth", 100_000),
    "a stage 2**40 channels wide": _set("space.stages[0].width", 2 ** 40),
    "a stem of width zero": _set("space.stem_width", 0),
    "an unknown strategy": _set("search.strategy", "exhaustive"),
    "no seeds": _set("search.seeds", []),
    "a seed that is a word": _set("search.seeds", ["a"]),
    "an objective with no direction": _set("search.objectives", ["val_acc:up"]),
    "ASHA settings without the ASHA scheduler": _set("search.asha", {"grace_period": 1}),
    "a storage that is not a URL": _set("search.storage", "notaurl"),
    "bottleneck_ratio searched with basic blocks only": _set("space.bottleneck_ratio", {"choice": [0.25, 0.5]}),
}
CASES = [pytest.param(text, id=name) for name, text in TEXT_CASES.items()]
CASES += [pytest.param(change, id=name) for name, change in FIELD_CASES.items()]


def test_there_are_forty_cases():
    assert len(CASES) == 40


@pytest.mark.parametrize("case", CASES)
def test_a_broken_study_is_one_line_naming_the_file_and_status_2(case, tmp_path: Path, capsys) -> None:
    path = tmp_path / "broken.yaml"
    if isinstance(case, bytes):
        path.write_bytes(case)
    else:
        study = yaml.safe_load(SMOKE_TEXT)
        case(study)
        path.write_text(yaml.safe_dump(study, sort_keys=False), encoding="utf-8")
    line = call_main(search_run.main, [str(path), "--dry-run"], capsys).bad_input_line()
    assert str(path) in line or path.name in line, line
