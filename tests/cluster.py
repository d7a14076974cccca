"""A real two-node Ray cluster on this machine, one per test session, that every worker may join.

`ray start --head` plus a second node, each with one CPU. A run joins it with
--address, which costs a few seconds where starting a local Ray costs 15-20 on
2 cores. The cluster has the session's own authentication token (`make_token`), in a
temporary folder, so it needs nothing in ~/.ray and leaves nothing there, and only the
processes started here are stopped (never `ray stop`, which stops every Ray of
the user).

One driver at a time: a test holds `exclusive(cluster)` while its drivers run,
so that where two trials run at once, they run on the two nodes, whatever the
other pytest-xdist workers are doing.
"""

from __future__ import annotations

import contextlib
import fcntl
import os
import secrets
import shutil
import signal
import socket
import subprocess
import sys
import tempfile
from pathlib import Path
from typing import Any, Iterator, NamedTuple

from commands import module_env

RAY = str(Path(sys.executable).parent / "ray")


class Cluster(NamedTuple):
    address: str
    env: dict[str, str]  # what a driver needs to join: token mode and the path of the token
    folder: str  # the token, the nodes' temporary folders, and the lock of `exclusive`
    groups: dict[str, list[int]]  # the process group of each `ray start` -> its members just after the start

    def to_json(self) -> dict[str, Any]:
        return self._asdict()

    @classmethod
    def from_json(cls, saved: dict[str, Any]) -> "Cluster":
        return cls(**saved)


def _free_port() -> int:
    with socket.socket() as probe:
        probe.bind(("127.0.0.1", 0))
        return probe.getsockname()[1]


def _group_members(pgid: int) -> set[int]:
    """PIDs of the live processes in process group `pgid` (Linux /proc)."""
    members = set()
    for entry in Path("/proc").iterdir():
        if entry.name.isdigit():
            try:
                state, _, group = (entry / "stat").read_text().rsplit(")", 1)[1].split()[:3]
            except (OSError, ValueError):  # gone meanwhile
                continue
            if int(group) == pgid and state != "Z":
                members.add(int(entry.name))
    return members


def _mentions(pid: int, text: str) -> bool:
    try:
        return text.encode() in Path(f"/proc/{pid}/cmdline").read_bytes()
    except OSError:
        return False


# Ray Train's controller takes in a data-parallel trial's reports, and sees its workers finish, only when it
# polls them: every 2 s by default, seconds of waiting per trial. The nodes' processes have this setting, and the
# trials they run pass it on to the controllers they start (Ray Train propagates it).
TRAIN_POLLING = {"RAY_TRAIN_HEALTH_CHECK_INTERVAL_S": "0.5"}

# What makes Ray use a token, and where it finds it.
TOKEN_ENV = ("RAY_AUTH_MODE", "RAY_AUTH_TOKEN_PATH")


def make_token(folder: Path) -> dict[str, str]:
    """A new token in `folder`, as the environment that makes Ray use it (for the nodes and every driver).

    Ray 2.60 authenticates cluster traffic. A process reads its token
    settings once, when it first imports Ray: a test process that drives runs
    in-process (commands.drive_here) must have them before it imports Ray, so
    the session makes the token before its workers start (tests/conftest.py).
    """
    token = folder / "auth_token"
    token.write_text(secrets.token_hex(32))  # as `ray get-auth-token --generate` makes one
    token.chmod(0o600)
    mode, path = TOKEN_ENV
    return {mode: "token", path: str(token)}


def start(auth: dict[str, str]) -> Cluster:
    """A head and a worker node of one CPU each on this machine, joined by the token `auth` names."""
    # Short paths: Ray's unix socket paths must stay under 108 bytes.
    folder = Path(tempfile.mkdtemp(prefix="rn", dir="/tmp"))
    environment = module_env(**auth, **TRAIN_POLLING)
    port = _free_port()
    head = [RAY, "start", "--head", f"--port={port}", "--node-ip-address=127.0.0.1", "--num-cpus=1",
            f"--temp-dir={folder / 'head'}", "--include-dashboard=false", f"--dashboard-port={_free_port()}",
            f"--ray-client-server-port={_free_port()}", "--disable-usage-stats"]
    worker = [RAY, "start", f"--address=127.0.0.1:{port}", "--node-ip-address=127.0.0.1", "--num-cpus=1",
              f"--temp-dir={folder / 'worker'}", "--disable-usage-stats"]
    cluster = Cluster(f"127.0.0.1:{port}", auth, str(folder), {})
    try:
        for command in (head, worker):
            # A session of its own: the node's processes keep its process group after `ray start` returns.
            started = subprocess.Popen(command, env=environment, text=True, stdout=subprocess.PIPE,
                                       stderr=subprocess.STDOUT, start_new_session=True)
            cluster.groups[str(started.pid)] = []
            output = started.communicate(timeout=180)[0]
            assert started.returncode == 0, output
            cluster.groups[str(started.pid)] = sorted(_group_members(started.pid))
    except BaseException:
        stop(cluster)
        raise
    return cluster


def stop(cluster: Cluster) -> None:
    """SIGKILL the processes of the nodes `start` started, and remove the cluster's folder.

    Each `ray start` ran in a process group of its own, which its node's
    processes keep (Ray's agents rewrite their command lines, so the group is
    what finds them). A group counts only while one of the members recorded
    just after the start is still in it or one of its processes names the
    cluster's temporary folder, so a recycled group id cannot point at anything
    else; no other Ray of the user is touched. No SIGTERM first: the cluster
    and everything it wrote (its folder) are this session's alone and go
    anyway, and gcs_server and the raylets were still up 5 s after one.
    """
    if not Path(cluster.folder).exists():  # stopped already (its folder goes last)
        return
    for pgid, first in cluster.groups.items():
        members = _group_members(int(pgid))
        if members & set(first) or any(_mentions(pid, cluster.folder) for pid in members):
            for pid in members:
                try:
                    os.kill(pid, signal.SIGKILL)
                except ProcessLookupError:
                    pass
    shutil.rmtree(cluster.folder, ignore_errors=True)


@contextlib.contextmanager
def exclusive(cluster: Cluster) -> Iterator[None]:
    """The cluster for this process's drivers alone while the block runs (other workers' drivers wait)."""
    with open(Path(cluster.folder) / "drivers.lock", "w") as lock:
        fcntl.flock(lock, fcntl.LOCK_EX)
        yield
