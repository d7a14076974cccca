"""bench/gpu_check.sh, the one command a GPU machine runs first: it parses, and without a GPU it says so and stops.

Its GPU path measures (bench/RESULTS.md); here only what every machine can
check: the script is valid bash (and shellcheck-clean where shellcheck is
installed), with no CUDA device visible to torch it prints one line, writes
nothing and exits 0, and an interpreter without torch is one line and status 2.
"""

from __future__ import annotations

import os
import shutil
import subprocess
from pathlib import Path

import pytest

ROOT = Path(__file__).resolve().parents[2]
SCRIPT = ROOT / "bench" / "gpu_check.sh"


def test_gpu_check_is_valid_bash() -> None:
    run = subprocess.run(["bash", "-n", str(SCRIPT)], capture_output=True, text=True, timeout=30)
    assert run.returncode == 0, run.stderr


def test_gpu_check_is_shellcheck_clean() -> None:
    if shutil.which("shellcheck") is None:
        pytest.skip("shellcheck is not installed here")
    run = subprocess.run(["shellcheck", str(SCRIPT)], capture_output=True, text=True, timeout=60)
    assert run.returncode == 0, run.stdout


def test_without_a_gpu_it_says_so_in_one_line_and_exits_0(tmp_path: Path) -> None:
    out = tmp_path / "out"
    # An empty CUDA_VISIBLE_DEVICES hides any GPU from torch, so this is the CPU path on every machine. PYTHON is
    # what make and .ci/run set to the interpreter that builds the venv (no torch there): the script ignores it.
    env = {**os.environ, "CUDA_VISIBLE_DEVICES": "", "OUT": str(tmp_path / "from-env"),
           "PYTHON": shutil.which("false") or "/bin/false"}
    run = subprocess.run(["bash", str(SCRIPT), str(out)], capture_output=True, text=True, env=env, timeout=120,
                         cwd=tmp_path)
    assert run.returncode == 0, run.stderr
    lines = run.stdout.splitlines()
    assert len(lines) == 1, lines
    assert lines[0].startswith("gpu_check: no GPU here (torch ") and "sees no CUDA device" in lines[0]
    assert lines[0].endswith("; nothing measured")
    assert not out.exists() and not (tmp_path / "from-env").exists()


def test_an_interpreter_without_torch_is_one_line_and_status_2(tmp_path: Path) -> None:
    env = {**os.environ, "GPU_CHECK_PYTHON": shutil.which("false") or "/bin/false"}
    run = subprocess.run(["bash", str(SCRIPT), str(tmp_path / "out")], capture_output=True, text=True, env=env,
                         timeout=60)
    assert run.returncode == 2 and run.stdout == ""
    assert run.stderr.splitlines() == [f"gpu_check: {env['GPU_CHECK_PYTHON']} cannot import torch; run make setup, "
                                       "or set GPU_CHECK_PYTHON to an interpreter that has it"]
