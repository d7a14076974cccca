"""Writes that a crash cannot leave half-done: a temporary file, then one rename."""

from __future__ import annotations

import os
import tempfile
from pathlib import Path
from typing import Any, Callable


def atomic_write_with(path: Path, write: Callable[[str], None]) -> None:
    """Call `write(temporary_path)`, then rename the result over `path` in one step."""
    path.parent.mkdir(parents=True, exist_ok=True)
    handle, temporary = tempfile.mkstemp(dir=path.parent, prefix=f".{path.name}.", suffix=".tmp")
    os.close(handle)
    try:
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
