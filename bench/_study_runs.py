"""What the bench scripts that time whole studies share: one `python -m search.run`, timed from process start to exit."""

from __future__ import annotations

import subprocess
import sys
import time
from pathlib import Path

ROOT = Path(__file__).resolve().parents[1]


def timed_study_run(study: str | Path, out: Path, overrides: list[str], *options: str) -> tuple[float, str]:
    """(wall seconds, stdout) of `python -m search.run STUDY --out OUT --no-dashboard OPTIONS --set ...`, run in the
    repository; exits with the study's output if it fails."""
    command = [sys.executable, "-m", "search.run", str(study), "--out", str(out), "--no-dashboard", *options]
    for override in overrides:
        command += ["--set", override]
    start = time.perf_counter()
    finished = subprocess.run(command, cwd=ROOT, capture_output=True, text=True)
    seconds = time.perf_counter() - start
    if finished.returncode != 0:
        sys.exit(f"the study failed ({' '.join(command)}):\n{finished.stdout}\n{finished.stderr}")
    return seconds, finished.stdout
