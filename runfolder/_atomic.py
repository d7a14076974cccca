"""Writes that a crash cannot leave half-done: a temporary file (or folder), then one rename.

Temporary files are made by `tempfile`, which creates them private (0600 and
0700); each is given the user's umask before the rename, as `open` would have,
so a run on shared storage stays readable by whom the user's umask allows.
"""

from __future__ import annotations

import errno
import os
import shutil
import tempfile
from pathlib import Path
from typing import Any, Callable

from ._untrusted import RunFolderError

# errno values with which the disk, not the data, refuses a write; each with what the user is told.
_DISK_REFUSALS = {errno.ENOSPC: "no space left on the device", errno.EDQUOT: "over the disk quota",
                  errno.EROFS: "a read-only file system"}
# What SQLite says (through sqlalchemy's OperationalError) for the same two causes.
_SQLITE_REFUSALS = {"database or disk is full": errno.ENOSPC, "attempt to write a readonly database": errno.EROFS}


def current_umask() -> int:
    """This process's umask, read without changing it where Linux reports it (os.umask sets as it reads)."""
    try:
        with open("/proc/self/status", encoding="ascii") as status:
            for line in status:
                if line.startswith("Umask:"):
                    return int(line.split()[1], 8)
    except (OSError, ValueError):
        pass
    mask = os.umask(0o022)  # elsewhere: read by setting, then put it back at once
    os.umask(mask)
    return mask


def new_file_mode() -> int:
    """The mode `open` gives a new file: 0666 less the umask."""
    return 0o666 & ~current_umask()


def new_folder_mode() -> int:
    """The mode `mkdir` gives a new folder: 0777 less the umask."""
    return 0o777 & ~current_umask()


def unwritable_reason(path: Path) -> str | None:
    """Why a file or folder cannot be written at `path` (checked before any work, without writing); None if it can."""
    path = Path(path)
    if path.is_dir():
        return None if os.access(path, os.W_OK | os.X_OK) else "a folder you cannot write"
    existing = path.parent
    while not existing.exists() and existing != existing.parent:
        existing = existing.parent
    if not existing.is_dir():
        return f"{existing} is a file, not a folder"
    if not os.access(existing, os.W_OK | os.X_OK):
        return f"{existing} is a folder you cannot write"
    return None


class DiskRefusedWrite(RunFolderError):
    """The disk refused a write (full, over quota, read-only); the message names the path and the space needed."""


def _free_bytes(path: Path) -> int | None:
    existing = Path(path)
    while not existing.exists() and existing != existing.parent:
        existing = existing.parent
    try:
        return shutil.disk_usage(existing).free
    except OSError:
        return None


def _size(count: int) -> str:
    for unit in ("bytes", "KiB", "MiB", "GiB"):
        if count < 1024 or unit == "GiB":
            return f"{count:.0f} {unit}" if unit == "bytes" else f"{count:.1f} {unit}"
        count /= 1024
    return ""


def disk_refusal(error: BaseException, path: str | Path | None = None, needed: int | None = None) -> str | None:
    """One line for a write the disk refused (full, over quota, read-only), naming the path and the space needed;
    None when `error` (or what it was raised from) is not one. `path` stands in where the error names no file."""
    seen: set[int] = set()
    cause: BaseException | None = error
    while cause is not None and id(cause) not in seen:
        seen.add(id(cause))
        code = cause.errno if isinstance(cause, OSError) else None
        if code is None:  # SQLite's refusals, wrapped by sqlalchemy as `orig`
            text = str(getattr(cause, "orig", None) or (cause if type(cause).__module__ == "sqlite3" else ""))
            code = next((c for words, c in _SQLITE_REFUSALS.items() if words in text), None)
        if code in _DISK_REFUSALS:
            where = Path(getattr(cause, "filename", None) or path or ".")
            if code == errno.EROFS:
                return (f"{where}: cannot write there: {_DISK_REFUSALS[code]}; give --out on a disk you can "
                        f"write, or remount it writable, then --resume")
            free = _free_bytes(where)
            need = f"{_size(needed)} needed" if needed else "more than that needed"
            have = f"{_size(free)} free, {need}" if free is not None else need
            return (f"{where}: cannot write there: {_DISK_REFUSALS[code]} ({have}); free space on that disk "
                    f"(or give --out on another), then --resume")
        cause = cause.__cause__ or cause.__context__ or getattr(cause, "orig", None)
    return None


def atomic_write_with(path: Path, write: Callable[[str], None], needed: int | None = None) -> None:
    """Call `write(temporary_path)`, then rename the result over `path` in one step. A write the disk refuses is
    DiskRefusedWrite naming `path` and the `needed` bytes (when known), and leaves `path` as it was."""
    try:
        path.parent.mkdir(parents=True, exist_ok=True)
        handle, temporary = tempfile.mkstemp(dir=path.parent, prefix=f".{path.name}.", suffix=".tmp")
    except OSError as error:
        line = disk_refusal(error, path, needed)
        if line is None:
            raise
        raise DiskRefusedWrite(line) from None
    os.close(handle)
    try:
        os.chmod(temporary, new_file_mode())
        write(temporary)
        os.replace(temporary, path)
    except OSError as error:
        line = disk_refusal(OSError(error.errno, error.strerror), path, needed)  # the file's name, not the temporary's
        if line is None:
            raise
        raise DiskRefusedWrite(line) from None
    finally:
        if os.path.exists(temporary):
            os.unlink(temporary)


def _write_bytes(temporary: str, data: bytes) -> None:
    """Write `data` to the file at `temporary` with os.write (a short write is continued, a refusal raised)."""
    fd = os.open(temporary, os.O_WRONLY | os.O_TRUNC)
    try:
        view = memoryview(data)
        while view:
            view = view[os.write(fd, view):]
    finally:
        os.close(fd)


def atomic_write_text(path: Path, text: str) -> None:
    """Write a text file through a temporary file and a rename."""
    data = text.encode("utf-8")
    atomic_write_with(path, lambda temporary: _write_bytes(temporary, data), needed=len(data))


def atomic_write_frame(frame: Any, path: Path) -> None:
    """Write a pandas DataFrame to `path` (.parquet or .csv) through a temporary file and a rename."""
    if path.suffix == ".parquet":
        atomic_write_with(path, lambda temporary: frame.to_parquet(temporary, index=False))
    else:
        atomic_write_with(path, lambda temporary: frame.to_csv(temporary, index=False))


def atomic_write_folder(path: Path, write: Callable[[Path], None]) -> None:
    """Call `write(temporary_folder)`, then rename it to `path`: readers see the whole folder or none of it.

    An existing `path` is replaced: moved aside, the new folder renamed in, the
    old one deleted. A crash leaves at worst a hidden `.<name>.*` sibling.
    """
    path = Path(path)
    path.parent.mkdir(parents=True, exist_ok=True)
    temporary = Path(tempfile.mkdtemp(dir=path.parent, prefix=f".{path.name}.", suffix=".tmp"))
    old: Path | None = None
    try:
        os.chmod(temporary, new_folder_mode())
        write(temporary)
        if path.is_dir() and not path.is_symlink():
            old = Path(tempfile.mkdtemp(dir=path.parent, prefix=f".{path.name}.", suffix=".old"))
            os.replace(path, old / path.name)
            try:
                os.replace(temporary, path)
            except OSError:
                os.replace(old / path.name, path)  # put the old folder back rather than lose both
                raise
        else:
            os.replace(temporary, path)
    finally:
        shutil.rmtree(temporary, ignore_errors=True)
        if old is not None:
            shutil.rmtree(old, ignore_errors=True)
