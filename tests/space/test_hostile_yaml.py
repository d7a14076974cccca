"""Hostile study files: each is refused at once, with one located line and exit status 2.

Before the caps in space/_yaml.py, a 500-byte file of nested aliases held the
loader for minutes and gigabytes, 5,000-deep nesting raised RecursionError, and
a NUL byte raised ReaderError from outside the `try`. The timeouts below are
far above what the refusals take (milliseconds) and far below what the old
behaviour took.
"""

from __future__ import annotations

import os

import pytest

from commands import call_main
from search import run
from space import StudyError, load_study
from space._yaml import MAX_YAML_CHARS, MAX_YAML_DEPTH, MAX_YAML_NODES, parse_yaml

HEADER = "name: hostile\nquestion: q\n"


def billion_laughs(levels: int = 8) -> str:
    """Nine aliases to the level below, `levels` deep: 9^levels strings once expanded."""
    lines = [HEADER.rstrip("\n"), 'l0: &l0 ["lol", "lol", "lol", "lol", "lol", "lol", "lol", "lol", "lol"]']
    for level in range(1, levels + 1):
        lines.append(f"l{level}: &l{level} [" + ", ".join([f"*l{level - 1}"] * 9) + "]")
    lines.append(f"space: {{base: cifar_resnet20, shortcut: *l{levels}}}")
    return "\n".join(lines) + "\n"


HOSTILE = {
    "billion laughs": (billion_laughs(), "too costly to read: more than 100,000 values once its aliases"),
    "alias chain deeper than the cap": (
        HEADER + "a0: &a0 [1]\n" + "".join(f"a{i}: &a{i} [*a{i - 1}]\n" for i in range(1, 2000))
        + "space: {base: cifar_resnet20}\n",
        f"nested more than {MAX_YAML_DEPTH} levels deep once its aliases (*name) are expanded"),
    "recursive alias": (HEADER + "space: &loop [*loop]\n", "an alias (*name) refers to a value that contains it"),
    "5,000-deep nesting": (HEADER + "space: " + "[" * 5000 + "]" * 5000 + "\n",
                           f"too costly to read: nested more than {MAX_YAML_DEPTH} levels deep"),
    # Indentation costs i spaces at depth i, so 400 levels is what fits below the size cap.
    "400-deep block nesting": (HEADER + "".join(" " * i + f"k{i}:\n" for i in range(400)),
                                 f"nested more than {MAX_YAML_DEPTH} levels deep"),
    "NUL byte": (HEADER + "space: {base: cifar\x00_resnet20}\n", "the control character U+0000 is not allowed"),
    "bell character": ("name: hos\x07tile\nquestion: q\n", "the control character U+0007 is not allowed"),
    "integer of 5,000 digits": (HEADER + "space: {base: cifar_resnet20, stem_width: " + "9" * 5000 + "}\n",
                                "not valid YAML: Exceeds the limit (4300 digits)"),
    "file past the size cap": (HEADER + "# " + "x" * MAX_YAML_CHARS + "\n",
                               f"too large to be a study ({MAX_YAML_CHARS + len(HEADER) + 3:,} characters)"),
}


def test_billion_laughs_is_small():
    # The file that took minutes before the caps: a few hundred bytes.
    assert len(billion_laughs().encode()) < 600


@pytest.mark.timeout(20)
@pytest.mark.parametrize("text, message", HOSTILE.values(), ids=HOSTILE.keys())
def test_hostile_file_is_one_located_message(write_study, text, message):
    path = write_study(text)
    with pytest.raises(StudyError) as caught:
        load_study(path)
    assert len(caught.value.problems) == 1
    line = str(caught.value)
    assert line.startswith(f"{path}"), line
    assert message in line
    assert "\n" not in line


@pytest.mark.timeout(20)
@pytest.mark.parametrize("text, message", HOSTILE.values(), ids=HOSTILE.keys())
def test_hostile_file_exits_2_with_one_line(write_study, capsys, text, message):
    result = call_main(run.main, [str(write_study(text)), "--dry-run"], capsys)
    line = result.bad_input_line()
    assert line.startswith("error: ") and message in line


@pytest.mark.timeout(20)
def test_hostile_override_is_refused_like_a_file(write_study, minimal_study):
    deep = "[" * 5000 + "]" * 5000
    with pytest.raises(StudyError, match=r"^--set space\.shortcut=\[\[\[.*: too costly to read: nested more than"):
        load_study(write_study(minimal_study), [f"space.shortcut={deep}"])


def test_caps_leave_room_for_real_files():
    # Anchors and aliases themselves are fine, and so is a list near the node cap.
    data, _ = parse_yaml("base: &b {depth: 3}\nstages: [*b, *b, *b]\n", "x")
    assert data["stages"] == [{"depth": 3}] * 3
    nested = "a: " + "[" * (MAX_YAML_DEPTH - 3) + "]" * (MAX_YAML_DEPTH - 3)
    assert parse_yaml(nested, "x")[0] is not None
    many = "seeds: [" + ", ".join("0" for _ in range(MAX_YAML_NODES // 20)) + "]"
    assert len(parse_yaml(many, "x")[0]["seeds"]) == MAX_YAML_NODES // 20


def test_every_study_is_far_below_the_caps():
    from pathlib import Path

    for path in sorted(Path(__file__).resolve().parents[2].glob("studies/*.yaml")):
        text = path.read_text(encoding="utf-8")
        assert len(text) < MAX_YAML_CHARS / 10, path


@pytest.mark.timeout(20)
@pytest.mark.skipif(not os.path.exists("/dev/zero"), reason="needs /dev/zero")
def test_an_endless_file_is_refused_after_a_bounded_read(capsys):
    """/dev/zero never ends: the loader reads at most what the largest study can take, then refuses."""
    line = call_main(run.main, ["/dev/zero", "--dry-run"], capsys).bad_input_line()
    assert line.startswith("error: /dev/zero: too large to be a study (over ") and "bytes" in line
