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
"""

from __future__ import annotations

import errno
import fcntl
import json
import os
import socket
import sys
from dataclasses import dataclass, field
from datetime import datetime, timezone
from pathlib import Path
from typing import Any, Mapping

from ._layout import RunFolder
from ._untrusted import MAX_LOCK_BYTES, RunFolderError, open_regular, parse_json

# Tries before giving up on a lock file that keeps being replaced under us (a writer releasing as we open).
_ATTEMPTS = 20
# errno values with which flock says "not supported here" (some network and FUSE file systems).
_NO_FLOCK = {errno.ENOLCK, errno.EOPNOTSUPP, errno.ENOTSUP, errno.EINVAL}


class RunFolderBusy(RunFolderError):
    """Another writer that is still running holds the run folder."""


@dataclass(frozen=True)
class LockBody:
    """The lock file's body: who holds (or last held) the run folder, and what it started outside it."""

    pid: int | None = None       # None: the holder has not written its body yet, or wrote something else
    host: str = "?"
    started: str = "?"           # ISO 8601, UTC
    command: str = ""
    ray: dict[str, Any] = field(default_factory=dict)  # search._ray.local_ray_record(): session_dir, node_id, pids

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
