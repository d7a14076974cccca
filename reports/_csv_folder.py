"""The folder of CSV files beside a page (report_tables/, <page>_tables/): rewritten whole, never through a link."""

from __future__ import annotations

import os
from pathlib import Path
from typing import Any, Mapping

import pandas as pd

import runfolder
from reports._load import ReportError

# A spreadsheet reads a cell that starts with one of these as a formula (OWASP "CSV injection"); \t and \r too.
FORMULA_STARTS = ("=", "+", "-", "@", "\t", "\r")


def spreadsheet_text(value: Any) -> Any:
    """A text cell a spreadsheet shows as text: a leading `'` where it would start a formula; numbers unchanged.

    These tables are for people, who open them in a spreadsheet; a level, label
    or error message of a run folder from elsewhere must not run there. Text
    that is a number ("-0.5") is left alone: a spreadsheet reads it as that number.
    """
    if not isinstance(value, str) or not value.startswith(FORMULA_STARTS):
        return value
    try:
        float(value)
        return value
    except ValueError:
        return "'" + value


def spreadsheet_frame(frame: pd.DataFrame) -> pd.DataFrame:
    """`frame` with every text cell and column name through `spreadsheet_text`."""
    safe = frame.rename(columns=spreadsheet_text)
    for index, column in enumerate(frame.columns):
        if frame[column].dtype == object or pd.api.types.is_string_dtype(frame[column]):
            safe.isetitem(index, frame[column].map(spreadsheet_text, na_action="ignore"))
    return safe


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
    that is a link is unlinked, never its target. Text cells that a spreadsheet
    would run as a formula are written as text (`spreadsheet_text`).
    """
    check_csv_folder(directory)
    directory.mkdir(exist_ok=True)
    for stale in directory.glob("*.csv"):
        stale.unlink()
    for name, frame in frames.items():
        runfolder.atomic_write_frame(spreadsheet_frame(frame), directory / f"{name}.csv")
