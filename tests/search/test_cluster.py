"""The runner on a real two-node Ray cluster: `ray start --head` plus a second node, then --address."""

from __future__ import annotations

import os
import shutil
import socket
import subprocess
import sys
import tempfile
from pathlib import Path

import pandas as pd
import pytest

from search_cli import SMOKE, run_cli

pytestmark = pytest.mark.slow

RAY = str(Path(sys.executable).parent / "ray")


def _free_port() -> int:
    with socket.socket() as probe:
        probe.bind(("127.0.0.1", 0))
        return probe.getsockname()[1]


def test_study_runs_across_two_nodes(tmp_path: Path) -> None:
    # Ray 2.60 authenticates cluster RPCs with a token; every process must agree.
    environment = {**os.environ, "RAY_AUTH_MODE": "token"}
    environment.pop("RAY_ADDRESS", None)
    port = _free_port()
    # Short temp dirs: Ray's unix socket paths must stay under 108 bytes.
    short = Path(tempfile.mkdtemp(prefix="rn", dir="/tmp"))
    head = [RAY, "start", "--head", f"--port={port}", "--node-ip-address=127.0.0.1", "--num-cpus=1",
            f"--temp-dir={short / 'head'}", "--include-dashboard=false", "--disable-usage-stats"]
    worker = [RAY, "start", f"--address=127.0.0.1:{port}", "--node-ip-address=127.0.0.1", "--num-cpus=1",
              f"--temp-dir={short / 'worker'}", "--disable-usage-stats"]
    try:
        for command in (head, worker):
            started = subprocess.run(command, env=environment, capture_output=True, text=True, timeout=180)
            assert started.returncode == 0, started.stdout + started.stderr
        run_dir = tmp_path / "run"
        # Trials of a few seconds, so that two are in flight at once.
        result = run_cli(str(SMOKE), "--out", str(run_dir), "--address", f"127.0.0.1:{port}", "--no-report",
                         "--set", "train.epochs=3", "--set", "data.synthetic_train=2048",
                         env={"RAY_AUTH_MODE": "token"})
        assert result.returncode == 0, result.stdout + result.stderr
        results = pd.read_parquet(run_dir / "results.parquet")
        assert len(results) == 4 and set(results["status"]) == {"complete"}
        # One CPU per node and one per trial: the two trials in flight run on different nodes.
        assert results["node_id"].nunique() == 2
    finally:
        subprocess.run([RAY, "stop", "--force"], env=environment, capture_output=True, timeout=120)
        shutil.rmtree(short, ignore_errors=True)
