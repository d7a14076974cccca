"""Fixtures every test package shares: one real run of the smoke study per session.

Starting Ray costs 15-20 s on 2 cores, so the runner trains studies/smoke.yaml
for real once, as a user runs it (`python -m search.run`, local Ray with its
dashboard, the report at the end), and every test that only reads a finished
run folder reads that one, or a copy where it changes the folder. Tests that
use it must be marked `slow`, so that `-m "not slow"` never starts Ray.
"""

from __future__ import annotations

import shutil
from pathlib import Path

import pytest

from commands import SMOKE, SmokeRun, run_module


@pytest.fixture(scope="session")
def _smoke_run_once(tmp_path_factory: pytest.TempPathFactory) -> SmokeRun:
    run_dir = tmp_path_factory.mktemp("smoke") / "smoke"
    result = run_module("search.run", str(SMOKE), "--out", str(run_dir))
    assert result.returncode == 0, result.stdout + result.stderr
    return SmokeRun(run_dir, result.stdout)


@pytest.fixture
def smoke_run(request: pytest.FixtureRequest) -> SmokeRun:
    """The session's real smoke run, to read only (smoke_copy gives a folder to change)."""
    if request.node.get_closest_marker("slow") is None:
        pytest.fail(f"{request.node.nodeid} reads the real smoke run, which starts Ray: mark it slow")
    return request.getfixturevalue("_smoke_run_once")


@pytest.fixture
def smoke_copy(smoke_run: SmokeRun, tmp_path: Path) -> Path:
    """A copy of the real smoke run's folder, which the test may change."""
    return Path(shutil.copytree(smoke_run.run_dir, tmp_path / "smoke"))
