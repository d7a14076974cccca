"""Shared fixtures for the space tests: write a study file, and a small valid study to vary."""

from __future__ import annotations

import textwrap
from pathlib import Path
from typing import Any, Callable

import pytest

# The smallest useful study: ResNet-20 with two shortcut options.
MINIMAL_STUDY = """\
name: tiny
question: "Does B beat A?"
space:
  base: cifar_resnet20
  shortcut: {choice: [A, B]}
train:
  epochs: 3
"""


@pytest.fixture
def minimal_study() -> str:
    """YAML text of a valid two-point grid study."""
    return MINIMAL_STUDY


@pytest.fixture
def minimal_study_dict() -> dict[str, Any]:
    """The minimal study as the dict yaml.safe_load gives."""
    return {"name": "tiny", "question": "Does B beat A?",
            "space": {"base": "cifar_resnet20", "shortcut": {"choice": ["A", "B"]}},
            "train": {"epochs": 3}}


@pytest.fixture
def write_study(tmp_path: Path) -> Callable[..., Path]:
    """Write dedented YAML text to tmp_path/<name> and return the path."""
    def write(text: str, name: str = "study.yaml") -> Path:
        path = tmp_path / name
        path.write_text(textwrap.dedent(text), encoding="utf-8")
        return path
    return write


@pytest.fixture
def fixed_machine(monkeypatch: pytest.MonkeyPatch) -> None:
    """A fixed machine (24 GiB, 2 cores, no GPU), so what fits does not depend on where the tests run."""
    from models import _memory

    monkeypatch.setattr(_memory, "host_memory", lambda: 24 * 2**30)
    monkeypatch.setattr(_memory, "host_cpus", lambda: 2)
    monkeypatch.setattr(_memory, "gpu_memory", lambda index=0: None)
