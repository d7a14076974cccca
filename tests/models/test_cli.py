"""python -m models describe: the table a person reads, and one-line errors."""

from __future__ import annotations

import subprocess
import sys
from pathlib import Path

import pytest

from models import preset

ROOT = Path(__file__).resolve().parents[2]


def _run(*args: str) -> subprocess.CompletedProcess[str]:
    return subprocess.run([sys.executable, "-m", "models", *args], cwd=ROOT, text=True,
                          capture_output=True, timeout=120)


def test_describe_preset_prints_stages_and_totals() -> None:
    result = _run("describe", "resnet50")
    assert result.returncode == 0, result.stderr
    lines = result.stdout.splitlines()
    assert any(line.startswith("layer3") and " 6 " in line and "1024" in line and "14x14" in line
               for line in lines)
    assert "total: 25,557,032 params, 4,089,184,256 MACs" in result.stdout
    assert "FLOPs" in result.stdout


def test_describe_spec_file(tmp_path: Path) -> None:
    path = tmp_path / "net.yaml"
    path.write_text(preset("cifar_resnet56").to_yaml())
    result = _run("describe", str(path))
    assert result.returncode == 0, result.stderr
    assert "853,018 params" in result.stdout


@pytest.mark.parametrize("content, expected", [
    (None, "not a preset and not a file"),
    ("stages: [{depth: 0, width: 8}]\n", "stages[0].depth: got 0"),
    ("stages: [\n", "not a valid spec file"),
    ("!!python/object/apply:os.system ['echo pwned']\n", "not a valid spec file"),
])
def test_bad_input_is_one_line_and_status_2(tmp_path: Path, content: str | None, expected: str) -> None:
    target = "no_such_preset"
    if content is not None:
        target = str(tmp_path / "bad.yaml")
        Path(target).write_text(content)
    result = _run("describe", target)
    assert result.returncode == 2
    assert expected in result.stderr
    assert len(result.stderr.strip().splitlines()) == 1
    assert "Traceback" not in result.stderr and "pwned" not in result.stdout


def test_bad_flag_is_status_2() -> None:
    result = _run("describe", "resnet18", "--image-size", "big")
    assert result.returncode == 2 and "Traceback" not in result.stderr
