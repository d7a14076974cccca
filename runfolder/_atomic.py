"""Writes that a crash cannot leave half-done: a temporary file (or folder), then one rename.

Temporary files are made by `tempfile`, which creates them private (0600 and
0700); each is given the user's umask before the rename, as `open` would have,
so a run on shared storage stays readable by whom the user's umask allows.
"""

from __future__ import annotations

import os
import shutil
import tempfile
from pathlib import Path
from typing import Any, Callable


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


def atomic_write_with(path: Path, write: Callable[[str], None]) -> None:
    """Call `write(temporary_path)`, then rename the result over `path` in one step."""
    path.parent.mkdir(parents=True, exist_ok=True)
    handle, temporary = tempfile.mkstemp(dir=path.parent, prefix=f".{path.name}.", suffix=".tmp")
    os.close(handle)
    try:
        os.chmod(temporary, new_file_mode())
        write(temporary)
        os.replace(temporary, path)
    finally:
        if os.path.exists(temporary):
            os.unlink(temporary)


def atomic_write_text(path: Path, text: str) -> None:
    """Write a text file through a temporary file and a rename."""
    atomic_write_with(path, lambda temporary: Path(temporary).write_text(text, encoding="utf-8"))


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
