"""The folder of CSV files beside a page (report_tables/, <page>_tables/): rewritten whole, never through a link."""

from __future__ import annotations

import os
from pathlib import Path
from typing import Any, Mapping

import runfolder
from reports._load import ReportError


def check_csv_folder(directory: Path) -> None:
    """Refuse (ReportError) a tables folder that is a link or not a folder, before anything is written.

    A page's build deletes the CSV files of the build before it, so a tables
    folder that is a link (to a colleague's folder, say) would have that
    folder's CSV files deleted. It is refused rather than replaced, because the
    link is not ours to delete either: the one line says to remove it.
    """
    if directory.is_symlink():
        raise ReportError(f"{directory}: a link (to {directory.resolve()}), not a folder; tables are written "
                          f"only into a real folder, never deleted or written through a link: remove the link, "
                          f"then build the page again")
    if os.path.lexists(directory) and not directory.is_dir():
        raise ReportError(f"{directory}: not a folder; the page's tables are written there: move it away")


def write_csv_folder(directory: Path, frames: Mapping[str, Any]) -> None:
    """Write each frame as <name>.csv into `directory`, removing the CSVs of an earlier build.

    Each CSV is written to a temporary file and renamed over its name, so a
    link left in the folder is replaced, never written through; a stale CSV
    that is a link is unlinked, never its target.
    """
    check_csv_folder(directory)
    directory.mkdir(exist_ok=True)
    for stale in directory.glob("*.csv"):
        stale.unlink()
    for name, frame in frames.items():
        runfolder.atomic_write_frame(frame, directory / f"{name}.csv")
