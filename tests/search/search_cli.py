"""Run `python -m search.run` as a user would (shared by the runner tests)."""

from __future__ import annotations

import os
import subprocess
import sys
from pathlib import Path

ROOT = Path(__file__).resolve().parents[2]
SMOKE = ROOT / "studies" / "smoke.yaml"


def run_cli(*args: str, timeout: int = 600, env: dict[str, str] | None = None) -> subprocess.CompletedProcess[str]:
    """`python -m search.run ARGS` from the repository root; output captured as text."""
    environment = {**os.environ, "PYTHONUNBUFFERED": "1"}
    environment.pop("RAY_ADDRESS", None)  # a stray cluster address must not capture the test
    environment.update(env or {})
    return subprocess.run([sys.executable, "-m", "search.run", *args], cwd=ROOT, text=True,
                          capture_output=True, timeout=timeout, env=environment)
