"""One writer per run folder: an exclusive lock, held for the writer's life.

The lock is `fcntl.flock` on the folder's lock file (`run.lock`). The kernel
drops it when its holder exits, however it exits (kill -9 included), so a
lock file that nobody holds is stale by definition and the next writer takes
it over. Taking the lock creates the folder, so two drivers started at once
on a new folder cannot both find it empty: the second one finds it locked.

The file's body is JSON naming the holder (pid, host, command, since when),
for the message a second writer gets, plus what the holder started outside
the folder (its local Ray session), so that whoever takes over after a
kill -9 can stop what the killed writer left running. The body is rewritten
in place: renaming a new file over the lock file would swap the locked inode.
A writer that ends normally deletes the file.

The lock file sits in a folder that may come from anywhere, so its record of
a Ray (`RayRecord`) names processes by what cannot be forged onto another
process: each PID with its start time and the boot it started in. Whoever
takes over stops only those still matching (search._ray.stop_ray_left_by).
"""

from __future__ import annotations

import errno
import fcntl
import json
import os
import re
import socket
import sys
from dataclasses import dataclass, field
from datetime import datetime, timezone
from pathlib import Path
from typing import Any, Mapping, Sequence

from ._layout import RunFolder
from ._untrusted import MAX_LOCK_BYTES, RunFolderError, open_regular, parse_json

# Tries before giving up on a lock file that keeps being replaced under us (a writer releasing as we open).
_ATTEMPTS = 20
# errno values with which flock says "not supported here" (some network and FUSE file systems).
_NO_FLOCK = {errno.ENOLCK, errno.EOPNOTSUPP, errno.ENOTSUP, errno.EINVAL}


class RunFolderBusy(RunFolderError):
    """Another writer that is still running holds the run folder."""


# Ray names a session's folder session_<date>_<time>_<microseconds>_<PID of the process that started it>
# (ray/_private/node.py); a record whose folder has another shape, or another PID than its driver's, is not one
# a driver of ours wrote.
_SESSION_NAME = re.compile(r"session_\d{4}-\d{2}-\d{2}_\d{2}-\d{2}-\d{2}_\d{1,6}_([1-9]\d{0,9})")
_NODE_ID = re.compile(r"[0-9a-f]{56}")  # Ray's NodeID.hex(): 28 bytes
_BOOT_ID = re.compile(r"[0-9a-f]{8}-[0-9a-f]{4}-[0-9a-f]{4}-[0-9a-f]{4}-[0-9a-f]{12}")  # /proc/sys/kernel/random/boot_id
# A local Ray starts about ten programs at ray.init; more is not a record of ours.
MAX_RECORDED_PROCESSES = 256


def session_pid(session_dir: str) -> int | None:
    """The PID that started the Ray session of `session_dir` (an absolute, normalised path of Ray's shape); None if
    it is not one."""
    if not isinstance(session_dir, str) or not os.path.isabs(session_dir) \
            or os.path.normpath(session_dir) != session_dir:
        return None
    match = _SESSION_NAME.fullmatch(os.path.basename(session_dir))
    return int(match.group(1)) if match else None


@dataclass(frozen=True)
class RecordedProcess:
    """A process as the kernel tells it apart from a later one with its PID: the PID and its start time."""

    pid: int
    start: int  # field 22 of /proc/PID/stat: clock ticks from boot to the process's start

    @classmethod
    def from_value(cls, value: Any) -> "RecordedProcess":
        if not (isinstance(value, Sequence) and len(value) == 2
                and all(isinstance(v, int) and not isinstance(v, bool) and v > 0 for v in value)):
            raise ValueError(f"expected [pid, start], two positive integers; got {value!r}"[:200])
        return cls(pid=value[0], start=value[1])


@dataclass(frozen=True)
class RayRecord:
    """The lock body's `ray`: the local Ray a driver started, as search._ray.local_ray_record writes it."""

    session_dir: str            # Ray's session folder; its name ends with the driver's PID
    node_id: str                # the node's id (hex), which Ray puts in its workers' environment
    boot_id: str                # the boot the PIDs' start times count from: after a reboot they name no one
    uid: int                    # the user the driver ran as
    driver: RecordedProcess     # the driver that started that Ray (and wrote this lock)
    processes: tuple[RecordedProcess, ...] = ()  # the programs ray.init started (gcs_server, raylet, ...)

    @classmethod
    def from_dict(cls, document: Any) -> "RayRecord":
        """The record from the lock's JSON; ValueError naming what is not of the shape a driver writes."""
        if not isinstance(document, Mapping):
            raise ValueError("not a JSON object")
        session_dir, node_id, boot_id, uid = (document.get(k) for k in ("session_dir", "node_id", "boot_id", "uid"))
        if session_pid(session_dir) is None:
            raise ValueError(f"session_dir {session_dir!r} is not an absolute path to a Ray session folder "
                             f"(.../session_YYYY-MM-DD_HH-MM-SS_<microseconds>_<PID>)"[:300])
        if not (isinstance(node_id, str) and _NODE_ID.fullmatch(node_id)):
            raise ValueError(f"node_id {node_id!r} is not a Ray node id (56 hex digits)"[:200])
        if not (isinstance(boot_id, str) and _BOOT_ID.fullmatch(boot_id)):
            raise ValueError(f"boot_id {boot_id!r} is not a boot id"[:200])
        if not (isinstance(uid, int) and not isinstance(uid, bool) and uid >= 0):
            raise ValueError(f"uid {uid!r} is not a user id"[:200])
        processes = document.get("processes")
        if not (isinstance(processes, list) and len(processes) <= MAX_RECORDED_PROCESSES):
            raise ValueError(f"processes: expected a list of at most {MAX_RECORDED_PROCESSES} [pid, start] pairs")
        record = cls(session_dir=session_dir, node_id=node_id, boot_id=boot_id, uid=uid,
                     driver=RecordedProcess.from_value(document.get("driver")),
                     processes=tuple(RecordedProcess.from_value(p) for p in processes))
        if record.driver.pid != session_pid(session_dir):
            raise ValueError(f"session_dir {session_dir!r} was started by PID {session_pid(session_dir)}, not by "
                             f"the driver PID {record.driver.pid}"[:300])
        return record

    def to_dict(self) -> dict[str, Any]:
        """The JSON object the lock body holds under `ray`."""
        return {"session_dir": self.session_dir, "node_id": self.node_id, "boot_id": self.boot_id, "uid": self.uid,
                "driver": [self.driver.pid, self.driver.start],
                "processes": [[p.pid, p.start] for p in self.processes]}


@dataclass(frozen=True)
class LockBody:
    """The lock file's body: who holds (or last held) the run folder, and what it started outside it."""

    pid: int | None = None       # None: the holder has not written its body yet, or wrote something else
    host: str = "?"
    started: str = "?"           # ISO 8601, UTC
    command: str = ""
    ray: dict[str, Any] = field(default_factory=dict)  # RayRecord.to_dict(), read through RayRecord.from_dict

    @classmethod
    def from_dict(cls, document: Mapping[str, Any]) -> "LockBody":
        """The body from its JSON object; a field of the wrong type is left at its default (a stranger wrote it)."""
        pid = document.get("pid")
        text = {name: document[name] for name in ("host", "started", "command") if isinstance(document.get(name), str)}
        ray = document.get("ray")
        return cls(pid=pid if isinstance(pid, int) and not isinstance(pid, bool) else None,
                   ray=dict(ray) if isinstance(ray, dict) else {}, **text)

    def to_dict(self) -> dict[str, Any]:
        """The JSON object: the fields that are known (a holder that has not started Ray writes no `ray`)."""
        document: dict[str, Any] = {"pid": self.pid, "host": self.host, "started": self.started,
                                    "command": self.command, "ray": self.ray}
        return {name: value for name, value in document.items() if value not in (None, "?", "", {})}


def _utc_now() -> str:
    return datetime.now(timezone.utc).isoformat(timespec="seconds")


def _is_alive(pid: Any) -> bool:
    """True when process `pid` exists on this host (a process of another user counts)."""
    if not isinstance(pid, int) or pid <= 0:
        return False
    try:
        os.kill(pid, 0)
    except ProcessLookupError:
        return False
    except PermissionError:
        return True
    return True


def holder_text(body: dict[str, Any] | None) -> str:
    """'PID 123 on host-a since 2026-11-24T16:00:00+00:00', from a lock body; what is known of it."""
    if not body or "pid" not in body:
        return "another process (it has not written who it is yet)"
    return f"PID {body.get('pid')} on {body.get('host', '?')} since {body.get('started', '?')}"


class RunFolderLock:
    """The exclusive lock of one run folder: `with RunFolderLock("runs/x"): ...` writes there alone.

    `acquire` raises RunFolderBusy when a live writer holds it, and
    RunFolderError when the folder cannot be made or written. After it,
    `previous` is the body a dead holder left (None after a clean release),
    and `note` says that its lock was taken over.
    """

    def __init__(self, run_dir: str | Path, command: str = "", create: bool = True) -> None:
        self.folder = RunFolder(run_dir)
        self.command = command or Path(sys.argv[0]).name  # for the message a second writer gets
        self.create = create
        self.created_folder = False
        self.previous: dict[str, Any] | None = None
        self.previous_uid: int | None = None  # who owns the lock file a dead holder left (its body is theirs)
        self.note: str | None = None
        self.body: dict[str, Any] = {}
        self._fd: int | None = None

    @property
    def path(self) -> Path:
        return self.folder.lock

    @property
    def held(self) -> bool:
        return self._fd is not None

    def __enter__(self) -> "RunFolderLock":
        return self.acquire()

    def __exit__(self, *exc: Any) -> None:
        self.release()

    # ------------------------------------------------------------ acquire
    def acquire(self) -> "RunFolderLock":
        """Take the lock (creating the folder when `create`), or raise why not."""
        if self._fd is not None:
            return self
        for _ in range(_ATTEMPTS):
            self._make_folder()
            try:
                # Never through a link (O_NOFOLLOW) and only a regular file: a run.lock linked to a file
                # elsewhere would have that file truncated, and /dev/null or a FIFO locks nothing.
                fd = open_regular(self.path, os.O_RDWR | os.O_CREAT, follow_links=False)  # 0o666 less the umask
            except RunFolderError as error:
                raise RunFolderError(f"{error}; the run folder's lock is a plain file that only the runner "
                                     f"makes") from None
            except FileNotFoundError:
                continue  # a writer that created the folder removed it as it released; make it again
            except OSError as error:
                raise RunFolderError(f"{self.folder.path}: cannot write the run folder "
                                     f"({error.strerror or error}); give a folder you can write") from None
            if not self._lock(fd):
                continue
            self._fd = fd
            self._take_over(self._read())
            self.body = LockBody(pid=os.getpid(), host=socket.gethostname(), started=_utc_now(),
                                 command=self.command).to_dict()
            self._write()
            return self
        raise RunFolderError(f"{self.path}: the lock file kept changing while taking it; try again")

    def _make_folder(self) -> None:
        path = self.folder.path
        if path.is_dir():
            return
        if not self.create:
            raise RunFolderError(f"{path}: no such run folder")
        try:
            path.parent.mkdir(parents=True, exist_ok=True)
            path.mkdir()
            self.created_folder = True
        except (FileExistsError, NotADirectoryError):
            if path.is_dir():
                return  # another writer made it just now; the lock decides between us
            above = next((p for p in (path, *path.parents) if p.exists()), path)
            raise RunFolderError(f"{path}: cannot be made a run folder: {above} is a file, not a "
                                 f"folder") from None
        except OSError as error:
            raise RunFolderError(f"{path}: cannot create the run folder ({error.strerror or error}); "
                                 f"give a folder you can write") from None

    def _lock(self, fd: int) -> bool:
        """flock `fd`; False when the file at the path is no longer the one locked (try again)."""
        try:
            fcntl.flock(fd, fcntl.LOCK_EX | fcntl.LOCK_NB)
        except BlockingIOError:
            body = _read_body(fd)
            os.close(fd)
            raise RunFolderBusy(f"{self.folder.path} is in use by {holder_text(body)}; wait for it to "
                                f"finish or stop it (kill {body.get('pid', 'PID') if body else 'PID'})") from None
        except OSError as error:
            if error.errno not in _NO_FLOCK:
                os.close(fd)
                raise RunFolderError(f"{self.path}: cannot be locked ({error.strerror or error})") from None
            self._refuse_if_holder_alive(fd)  # no flock here: judge the holder by its pid
        # A writer that releases deletes the file while it holds the lock: a lock on a deleted file locks nothing.
        try:
            same = os.path.samestat(os.stat(self.path), os.fstat(fd))
        except FileNotFoundError:
            same = False
        if not same:
            os.close(fd)
        return same

    def _refuse_if_holder_alive(self, fd: int) -> None:
        body = _read_body(fd)
        if body and "pid" in body and (body.get("host") != socket.gethostname() or _is_alive(body["pid"])):
            os.close(fd)
            raise RunFolderBusy(f"{self.folder.path} is in use by {holder_text(body)} (this file system "
                                f"cannot lock files; if that process is gone, delete {self.path})")

    def _take_over(self, body: dict[str, Any] | None) -> None:
        if not body:
            return
        self.previous = body
        self.previous_uid = os.fstat(self._fd).st_uid
        where = "" if body.get("host") == socket.gethostname() else " (another host; its lock is no longer held)"
        self.note = (f"{self.folder.path} was left locked by {holder_text(body)}{where}, which is no "
                     f"longer running; taking the lock over")

    # ------------------------------------------------------------- record
    def record(self, **fields: Any) -> None:
        """Add `fields` to the lock's body (what this writer started outside the folder, say)."""
        self.body.update(fields)
        if self._fd is not None:
            self._write()

    def _write(self) -> None:
        data = (json.dumps(self.body, default=str) + "\n").encode("utf-8")
        os.ftruncate(self._fd, 0)
        os.pwrite(self._fd, data, 0)

    def _read(self) -> dict[str, Any] | None:
        return _read_body(self._fd) if self._fd is not None else None

    # ------------------------------------------------------------ release
    def release(self) -> None:
        """Delete the lock file and let go; remove the folder again when this lock made it and it stayed empty."""
        if self._fd is None:
            return
        try:
            os.unlink(self.path)  # while still locked, so a waiter sees that its file is gone
        except OSError:
            pass
        os.close(self._fd)
        self._fd = None
        if self.created_folder:
            try:
                self.folder.path.rmdir()  # only if nothing else was written there
            except OSError:
                pass


def _read_body(fd: int) -> dict[str, Any] | None:
    """The body in an open lock file as a dict (`LockBody.to_dict()`); None when it holds none of ours."""
    try:
        size = os.fstat(fd).st_size
        if not 0 < size <= MAX_LOCK_BYTES:
            return None
        document = parse_json(os.pread(fd, size, 0).decode("utf-8"), Path("run.lock"))
    except (OSError, UnicodeDecodeError, RunFolderError):
        return None  # being written, or not ours: the message says what little is known
    return LockBody.from_dict(document).to_dict() if isinstance(document, dict) else None


def read_lock_body(run_dir: str | Path) -> LockBody | None:
    """The typed body of a run folder's lock file, or None when it has none (or not a plain file of ours)."""
    body = read_lock(run_dir)
    return None if body is None else LockBody.from_dict(body)


def read_lock(run_dir: str | Path) -> dict[str, Any] | None:
    """The body of a run folder's lock file (who holds it, or held it last) as a dict, or None when it has none."""
    path = RunFolder(run_dir).lock
    try:
        fd = open_regular(path, follow_links=False)
    except (OSError, RunFolderError):
        return None
    try:
        return _read_body(fd)
    finally:
        os.close(fd)
