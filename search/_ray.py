"""Starting or joining Ray for a study: a local Ray bound to this machine, or the cluster the user names.

- **Local** (no `--address`, no RAY_ADDRESS): every Ray service listens on
  127.0.0.1 only. Ray's switch for that is its setting for nodes that never
  join a cluster (its default on macOS and Windows,
  RAY_ENABLE_WINDOWS_OR_OSX_CLUSTER=0): the node's address becomes 127.0.0.1,
  and gcs_server, raylet, workers, the dashboard and its agents, and the
  runtime-env agent bind to it. Passing `_node_ip_address="127.0.0.1"` does
  not do this: `ray.init` replaces a loopback address with the external one.
- **A cluster** (`--address HOST:PORT`): the services listen where that
  cluster's nodes were started. Joining is bounded: the port must accept a
  connection within `--connect-timeout` (Ray itself retries for minutes),
  then `ray.init` gets one try at the GCS instead of 20. Something other than
  a Ray head on that port costs that one try, about 40 s (Ray's GCS client
  timeouts, fixed when Ray is imported), and Ray logs its own lines then.
- **After a kill -9** of a driver, the local Ray it started outlives it for a
  while. `local_ray_record` notes that Ray in the run folder's lock (session
  folder, node id, and each process by PID and start time, with the boot);
  `stop_ray_left_by` stops those still matching, and nothing for a lock of
  another host, boot or user, or one not of a driver's shape.
"""

from __future__ import annotations

import contextlib
import logging
import os
import signal
import socket
import time
from pathlib import Path
from typing import Any, Iterator

# How long to try to reach a cluster (--connect-timeout's default).
CONNECT_TIMEOUT_S = 60.0
# Ray's "this node never joins a cluster" switch (see the module docstring).
_LOOPBACK_ONLY_ENV = "RAY_ENABLE_WINDOWS_OR_OSX_CLUSTER"
# Ray's number of tries at the GCS when joining (one per second, or per GCS client timeout); read per call.
_GCS_TRIES_ENV = "RAY_gcs_server_port_wait_time_s"
# Seconds a left-behind Ray process gets to exit after SIGTERM before SIGKILL.
_STOP_GRACE_S = 5.0


def add_ray_flags(parser: Any, what: str) -> None:
    """The flags of search.run and search.retrain that say where `what` (trials, runs) run: the cluster to join,
    how long to try, how many at once, and the local Ray's dashboard."""
    parser.add_argument("--address", default=None,
                        help="join the Ray cluster at this address (default: RAY_ADDRESS, else a local Ray "
                             "on 127.0.0.1)")
    parser.add_argument("--connect-timeout", type=float, default=CONNECT_TIMEOUT_S, metavar="SECONDS",
                        help=f"give up joining --address after this long (default: {CONNECT_TIMEOUT_S:g})")
    parser.add_argument("--max-concurrent", type=int, default=None,
                        help=f"at most this many {what} at once (default: the study's, else what resources allow)")
    parser.add_argument("--no-dashboard", action="store_true", help="start the local Ray without its dashboard")


class RayStartError(ValueError):
    """Ray could not be started or joined; the message says why and what to do."""


def init_ray(address: str | None, dashboard: bool, connect_timeout: float = CONNECT_TIMEOUT_S) -> str | None:
    """Start a local Ray on 127.0.0.1 or join the cluster at `address` / RAY_ADDRESS; the dashboard URL."""
    import optuna
    import ray

    optuna.logging.set_verbosity(optuna.logging.WARNING)
    os.environ.setdefault("RAY_AIR_NEW_OUTPUT", "0")
    os.environ.setdefault("TUNE_DISABLE_AUTO_CALLBACK_LOGGERS", "1")
    address = address or os.environ.get("RAY_ADDRESS") or None
    kwargs: dict[str, Any] = {"logging_level": logging.ERROR, "log_to_driver": False,
                              "configure_logging": True}
    if address:
        wait_for_cluster(address, connect_timeout)
        try:
            # The port answered: one try at the GCS, not Ray's 20 (each up to its client timeout).
            with environment({_GCS_TRIES_ENV: "1"}):
                context = ray.init(address=address, **kwargs)
        except (ConnectionError, RuntimeError) as error:
            hint = ("; a cluster started with token authentication needs RAY_AUTH_MODE=token and its "
                    "token (~/.ray/auth_token or RAY_AUTH_TOKEN) on this machine"
                    if "auth" in str(error).lower() else "")
            raise RayStartError(f"--address {address}: cannot join the Ray cluster "
                                f"({str(error).splitlines()[0]}){hint}") from None
    else:
        with _loopback_only():
            context = ray.init(include_dashboard=dashboard, dashboard_host="127.0.0.1", **kwargs)
    url = getattr(context, "dashboard_url", None)
    return f"http://{url}" if url else None


def check_fits_local_ray(address: str | None, cpus: float, gpus: float) -> None:
    """RayStartError when a local Ray could never start one trial: it has this machine's CPUs and GPUs, no more.

    Tune would otherwise wait for the resources forever, printing warnings. A
    cluster (`address`, RAY_ADDRESS) is not judged here: an autoscaler may add
    the nodes its trials need.
    """
    if address or os.environ.get("RAY_ADDRESS"):
        return
    from ray._private.utils import get_num_cpus  # what a local Ray counts (it honours cgroup limits)
    import torch

    have = {"cpus": float(get_num_cpus()), "gpus": float(torch.cuda.device_count())}
    for field, need in (("cpus", cpus), ("gpus", gpus)):
        if need > have[field]:
            unit = "CPU cores" if field == "cpus" else "CUDA GPUs"
            raise RayStartError(f"search.resources.{field}: got {need:g} per trial, but this machine has "
                                f"{have[field]:g} {unit} and a local Ray gets no more; allowed: at most "
                                f"{have[field]:g}, or --address of a Ray cluster whose nodes have them")


# Ray Tune's loggers that report a failed trial a second time: its traceback, and the list of trials that did not
# complete. The recorder has given each failed trial its one line ("trial_0003 failed: ...") and recorded the error
# in the results; the traceback stays in Tune's trial folder (ray_results/attempt-N/trial_0003/error.txt).
TUNE_FAILURE_LOGGERS = ("ray.tune.execution.tune_controller", "ray.tune.tune")


@contextlib.contextmanager
def quiet_tune_failures() -> Iterator[None]:
    """Silence Tune's own report of failed trials (`TUNE_FAILURE_LOGGERS`) for a `with` block: a trial whose worker
    died (the kernel's OOM killer, a kill -9) printed a 30-line traceback between the progress lines."""
    import logging

    loggers = [logging.getLogger(name) for name in TUNE_FAILURE_LOGGERS]
    saved = [logger.level for logger in loggers]
    for logger in loggers:
        logger.setLevel(logging.CRITICAL)
    try:
        yield
    finally:
        for logger, level in zip(loggers, saved):
            logger.setLevel(level)


@contextlib.contextmanager
def environment(values: dict[str, str]) -> Iterator[None]:
    """Set environment variables for the duration of a `with` block, then put back what was there."""
    saved = {name: os.environ.get(name) for name in values}
    os.environ.update(values)
    try:
        yield
    finally:
        for name, value in saved.items():
            if value is None:
                os.environ.pop(name, None)
            else:
                os.environ[name] = value


@contextlib.contextmanager
def _loopback_only() -> Iterator[None]:
    """Ray started inside binds every service to 127.0.0.1 (its children read the variable; this process,
    which may have imported Ray before, reads the constant Ray derived from it)."""
    from ray._private import ray_constants

    saved = getattr(ray_constants, "ENABLE_RAY_CLUSTER", None)  # Ray 2.60's name; tests/search checks the sockets
    if saved is not None:
        ray_constants.ENABLE_RAY_CLUSTER = False
    try:
        with environment({_LOOPBACK_ONLY_ENV: "0"}):
            yield
    finally:
        if saved is not None:
            ray_constants.ENABLE_RAY_CLUSTER = saved


def _host_and_port(address: str) -> tuple[str, int]:
    """('10.0.0.5', 6379) from '10.0.0.5:6379', 'ray://10.0.0.5:10001' or '[::1]:6379'."""
    text = address.split("://", 1)[1] if "://" in address else address
    host, _, port = text.rpartition(":")
    host = host.strip("[]")
    if not host or not port.isdigit() or not 0 < int(port) < 65536:
        raise RayStartError(f"--address {address}: expected HOST:PORT (the address `ray start --head` "
                            f"printed, e.g. 10.0.0.5:6379)")
    return host, int(port)


def wait_for_cluster(address: str, timeout: float) -> None:
    """Return once `address` accepts a connection; RayStartError after `timeout` seconds of trying."""
    if address == "auto":
        from ray._private import services

        try:
            address = services.canonicalize_bootstrap_address("auto") or ""
        except ConnectionError:
            address = ""
        if not address:
            raise RayStartError("--address auto: no Ray cluster runs on this machine; start one with "
                                "`ray start --head`, or leave --address out for a private local Ray")
    host, port = _host_and_port(address)
    deadline = time.monotonic() + timeout
    while True:
        try:
            with socket.create_connection((host, port), timeout=max(0.1, min(5.0, deadline - time.monotonic()))):
                return
        except socket.gaierror as error:
            raise RayStartError(f"--address {address}: cannot resolve {host} ({error.strerror})") from None
        except OSError as error:
            reason = error.strerror or str(error) or type(error).__name__
        if time.monotonic() >= deadline:
            raise RayStartError(f"--address {address}: no Ray cluster answered within {timeout:g} s ({reason}); "
                                f"check the address `ray start --head` printed and that its port is open "
                                f"from this machine, or wait longer with --connect-timeout")
        time.sleep(max(0.0, min(1.0, deadline - time.monotonic())))


def dashboard_line(url: str) -> str:
    """The line that tells the user where the dashboard is and where Ray keeps its API token."""
    return f"Ray dashboard: {url} (API token in {Path.home() / '.ray' / 'auth_token'})"


def shutdown_ray() -> None:
    """Stop the Ray this driver started or joined (never a cluster's other processes)."""
    import ray

    if ray.is_initialized():
        ray.shutdown()


# ------------------------------------------------------- after a kill -9
def local_ray_record() -> dict[str, Any]:
    """What the local Ray this driver started is made of, as `runfolder.RayRecord`: its session folder and node id,
    and this driver and each process ray.init started by PID and start time (empty when joining a cluster)."""
    import ray

    import runfolder

    node = getattr(ray._private.worker, "_global_node", None)
    if node is None or not getattr(node, "head", False):  # joined a cluster: none of it is this driver's
        return {}
    pids = sorted({info.process.pid for infos in getattr(node, "all_processes", {}).values()
                   for info in infos if getattr(info, "process", None) is not None})
    started = {pid: _start_time(pid) for pid in [os.getpid(), *pids]}
    boot_id = _boot_id()
    if boot_id is None or None in started.values():  # no /proc: nothing a later driver could check
        return {}
    processes = tuple(runfolder.RecordedProcess(pid, started[pid]) for pid in pids)
    return runfolder.RayRecord(session_dir=str(node.get_session_dir_path()), node_id=str(node.node_id),
                               boot_id=boot_id, uid=os.getuid(),
                               driver=runfolder.RecordedProcess(os.getpid(), started[os.getpid()]),
                               processes=processes[:runfolder.MAX_RECORDED_PROCESSES]).to_dict()


def ray_left_by(holder: dict[str, Any] | None, written_by: int | None = None) -> Any:
    """The `runfolder.RayRecord` of the local Ray a dead driver left, as its lock records it; None when that lock
    may not stop anything here.

    The lock is a file in a folder that may come from anywhere. Its record
    counts only when it is of this host, this boot and this user (the lock
    file's owner `written_by` and the recorded uid), of the shape a driver
    writes (Ray's session folder, ending with the driver's PID), and its
    driver is not running.
    """
    import runfolder

    record = (holder or {}).get("ray")
    if not record or holder.get("host") != socket.gethostname() or not Path("/proc").is_dir():
        return None
    if written_by is not None and written_by != os.getuid():
        return None
    try:
        ray = runfolder.RayRecord.from_dict(record)
    except ValueError:
        return None
    if ray.uid != os.getuid() or ray.boot_id != _boot_id() or holder.get("pid") != ray.driver.pid:
        return None
    if _start_time(ray.driver.pid) == ray.driver.start:  # the driver runs: its Ray is not left behind
        return None
    return ray


def stop_ray_left_by(holder: dict[str, Any] | None, written_by: int | None = None) -> int:
    """Stop what remains of the local Ray that a dead driver recorded in its lock; the number of processes stopped.

    A process is stopped only when the record counts (`ray_left_by`) and the
    process is one it names, by PID and start time, that is still a Ray
    program of that session (its command line holds Ray's package folder and
    the session folder, or its environment the node id), or a descendant of
    one started after it. PIDs are reused: a PID alone names no one.
    """
    ray_record = ray_left_by(holder, written_by)
    if ray_record is None:
        return 0
    import ray

    ray_dir = str(Path(ray.__file__).parent)
    # Found again while they stop: a raylet in its last moments may still start a worker.
    left = _parts_of(ray_record, ray_dir)
    stopped: set[int] = set()
    deadline = time.monotonic() + _STOP_GRACE_S
    while left and time.monotonic() < deadline:
        for pid in left - stopped:
            _signal(pid, signal.SIGTERM)
        stopped |= left
        time.sleep(0.2)
        left = _parts_of(ray_record, ray_dir)
    for pid in left:
        _signal(pid, signal.SIGKILL)
    stopped |= left
    # SIGKILL is delivered, not waited for: wait until they are gone, so the caller finds none of them.
    deadline = time.monotonic() + _STOP_GRACE_S
    while left and time.monotonic() < deadline:
        time.sleep(0.1)
        left = {pid for pid in left if _exists(pid)}
    return len(stopped)


def _parts_of(record: Any, ray_dir: str) -> set[int]:
    """The live processes of that Ray (see stop_ray_left_by), not this one or its own."""
    mine = _processes_of_this_user()
    found = {p.pid for p in record.processes
             if p.pid in mine and mine[p.pid][1] == p.start and _is_part_of(p.pid, record, ray_dir)}
    # Ray's agents start after the record is written, as children of the raylet; once it has died they are
    # orphans that no recorded process leads to (a kill -9 test found both agents left so). Their environment
    # names the raylet's PID (and, for agents, the node): an orphan that names a recorded raylet, started after
    # it, and is of this node or titled as a Ray worker, is this Ray's. A lock that names only a node id stops no one.
    raylets = {p.pid: p.start for p in record.processes}
    found |= {pid for pid, (parent, start) in mine.items()
              if _orphan_of(pid, start, record, raylets, orphaned=parent not in mine or not _is_raylet(parent))}
    children: dict[int, list[int]] = {}
    for pid, (parent, _) in mine.items():
        children.setdefault(parent, []).append(pid)
    stack = list(found)
    while stack:
        parent = stack.pop()
        for child in children.get(parent, []):
            if child not in found and mine[child][1] >= mine[parent][1]:  # an older one is not its child
                found.add(child)
                stack.append(child)
    return {pid for pid in found - _this_process_and_ancestors() if _exists(pid)}


def _stat_fields(pid: int) -> list[str]:
    """The fields of /proc/PID/stat after the command name (field 3, the state, first)."""
    return Path(f"/proc/{pid}/stat").read_text().rsplit(")", 1)[1].split()


def _start_time(pid: int) -> int | None:
    """When `pid` started, in clock ticks since boot (field 22 of /proc/PID/stat); None when it does not run."""
    try:
        return int(_stat_fields(pid)[19])
    except (OSError, ValueError, IndexError):
        return None


def _boot_id() -> str | None:
    try:
        return Path("/proc/sys/kernel/random/boot_id").read_text().strip()
    except OSError:
        return None


def _processes_of_this_user() -> dict[int, tuple[int, int]]:
    """pid -> (parent pid, start time) of every process of this user (Linux /proc)."""
    found = {}
    uid = os.getuid()
    for entry in os.scandir("/proc"):
        if not entry.name.isdigit():
            continue
        try:
            if entry.stat().st_uid != uid:
                continue
            fields = _stat_fields(int(entry.name))
            found[int(entry.name)] = (int(fields[1]), int(fields[19]))
        except (OSError, ValueError, IndexError):
            continue
    return found


def _is_part_of(pid: int, record: Any, ray_dir: str) -> bool:
    """True for a Ray program run for that session (not, say, a `tail -f` of its logs), or a process of that node."""
    try:
        command = Path(f"/proc/{pid}/cmdline").read_bytes()
        if record.session_dir.encode() in command and ray_dir.encode() in command:
            return True
    except OSError:
        return False
    return _has_node_id(pid, record.node_id)


def _orphan_of(pid: int, start: int, record: Any, recorded: dict[int, int], orphaned: bool) -> bool:
    """True when `pid`, started after the recorded driver, is a process of that Ray that its raylet left: it names a
    recorded process as its raylet (RAY_RAYLET_PID, started before it) and is of that node (RAY_NODE_ID) or a Ray
    worker (its title "ray::..."); or it is a Ray program of that node by its title and no raylet is its parent.

    The second rule is for agents whose environment lost RAY_RAYLET_PID: setproctitle may write a long title over
    the start of the environment block (CI found both agents left so, with only the node id readable). A lock that
    names the node of a Ray that still runs stops none of its processes: their parent is that Ray's raylet.
    """
    if start < record.driver.start:
        return False
    try:
        environment = Path(f"/proc/{pid}/environ").read_bytes().split(b"\0")
        titled = Path(f"/proc/{pid}/cmdline").read_bytes().startswith(b"ray::")  # "ray::IDLE", "ray::DashboardAgent"
    except OSError:
        return False
    of_node = f"RAY_NODE_ID={record.node_id}".encode() in environment
    if not (of_node or titled):  # workers carry the raylet's PID but not the node id: a Ray program by its title
        return False
    raylet = next((value for value in environment if value.startswith(b"RAY_RAYLET_PID=")), b"")
    try:
        raylet_pid = int(raylet.split(b"=", 1)[1])
    except (IndexError, ValueError):
        return of_node and titled and orphaned
    return raylet_pid in recorded and start >= recorded[raylet_pid]


def _is_raylet(pid: int) -> bool:
    """True when `pid` runs Ray's raylet program."""
    try:
        return Path(f"/proc/{pid}/cmdline").read_bytes().split(b"\0", 1)[0].endswith(b"/raylet")
    except OSError:
        return False


def _has_node_id(pid: int, node_id: str) -> bool:
    """True when `pid`'s environment holds RAY_NODE_ID=node_id (Ray sets it in every process of the node)."""
    try:
        return f"RAY_NODE_ID={node_id}".encode() in Path(f"/proc/{pid}/environ").read_bytes().split(b"\0")
    except OSError:
        return False


def _this_process_and_ancestors() -> set[int]:
    pids, pid = set(), os.getpid()
    while pid > 1 and pid not in pids:
        pids.add(pid)
        try:
            pid = int(_stat_fields(pid)[1])
        except (OSError, ValueError, IndexError):
            break
    return pids


def _exists(pid: int) -> bool:
    """True while `pid` runs (a zombie, dead but not yet reaped, does not count)."""
    try:
        return _stat_fields(pid)[0] != "Z"
    except (OSError, IndexError):
        return False


def _signal(pid: int, signum: int) -> None:
    with contextlib.suppress(ProcessLookupError, PermissionError):
        os.kill(pid, signum)
