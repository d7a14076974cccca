"""python -m models describe: the table a person reads, and one-line errors.

main() runs in this process; test_export.py runs `python -m models` itself.
"""

from __future__ import annotations

from pathlib import Path

import pytest

from commands import CliResult, call_main
from models import preset
from models.__main__ import main as models_cli


@pytest.fixture
def describe(capfd: pytest.CaptureFixture[str]):
    """`python -m models describe ARGS`, in this process; output caught at the file descriptors, so a
    command a spec file smuggled in would show too."""
    def run(*args: str) -> CliResult:
        return call_main(models_cli, ["describe", *args], capfd)
    return run


def test_describe_preset_prints_stages_and_totals(describe) -> None:
    result = describe("resnet50")
    assert result.returncode == 0, result.stderr
    lines = result.stdout.splitlines()
    assert any(line.startswith("layer3") and " 6 " in line and "1024" in line and "14x14" in line
               for line in lines)
    assert "total: 25,557,032 params, 4,089,184,256 MACs" in result.stdout
    assert "FLOPs" in result.stdout


def test_describe_spec_file(tmp_path: Path, describe) -> None:
    path = tmp_path / "net.yaml"
    path.write_text(preset("cifar_resnet56").to_yaml())
    result = describe(str(path))
    assert result.returncode == 0, result.stderr
    assert "853,018 params" in result.stdout


@pytest.mark.parametrize("content, expected", [
    (None, "not a preset and not a file"),
    ("stages: [{depth: 0, width: 8}]\n", "stages[0].depth: got 0"),
    ("stages: [\n", "not a valid spec file"),
    ("!!python/object/apply:os.system ['echo pwned']\n", "not a valid spec file"),
])
def test_bad_input_is_one_line_and_status_2(tmp_path: Path, content: str | None, expected: str, describe) -> None:
    target = "no_such_preset"
    if content is not None:
        target = str(tmp_path / "bad.yaml")
        Path(target).write_text(content)
    result = describe(target)
    assert expected in result.bad_input_line()
    assert "pwned" not in result.stdout


def test_bad_flag_is_status_2(describe) -> None:
    assert "--image-size" in describe("resnet18", "--image-size", "big").bad_input_line()
