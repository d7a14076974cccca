"""The pandas readers of a run's tables: results and curves, each brought up to date from the trial log (retrain.parquet: _retrain_rows)."""

from __future__ import annotations

from pathlib import Path
from typing import Any, Iterable, Mapping

from ._layout import RunFolder
from ._log import _log_tail, _Replay, replay_log
from ._untrusted import MAX_TABLE_BYTES, RunFolderError, _first_line, open_bounded
from ._rows import CURVE_COLUMNS, STATUSES

# What each reader needs of results.parquet; the report reads with the least.
REPORT_COLUMNS = ("trial_id", "status")


def _frame(records: list[dict[str, Any]], columns: Iterable[str] | None = None) -> Any:
    import pandas as pd

    return pd.DataFrame(records, columns=list(columns) if columns is not None else None)


def _sorted_rows(rows: Mapping[str, dict[str, Any]]) -> list[dict[str, Any]]:
    return [rows[trial] for trial in sorted(rows)]


# ------------------------------------------------------------ pandas readers
def _read_frame(path: Path) -> Any:
    import pandas as pd

    try:
        # One open file for the whole read: the writer replaces a table by renaming a new file over it, and
        # pyarrow given a path opens it twice (footer, then pages), so a rename between the two would pair one
        # file's footer with the other's pages. An open handle keeps reading the file it opened.
        with open_bounded(path, MAX_TABLE_BYTES) as handle:
            return pd.read_parquet(handle) if path.suffix == ".parquet" else pd.read_csv(handle)
    except RunFolderError:
        raise
    except Exception as error:  # pyarrow and pandas raise several unrelated types for a bad file
        kind = "parquet" if path.suffix == ".parquet" else "CSV"
        raise RunFolderError(f"{path}: not a readable {kind} file: {_first_line(error)}") from None


def _require(frame: Any, path: Path, required: Iterable[str]) -> None:
    missing = [column for column in required if column not in frame.columns]
    if missing and len(frame.columns):
        raise RunFolderError(f"{path}: missing column(s) {', '.join(missing)}; the run-folder format "
                             f"(docs/DESIGN.md) needs {', '.join(required)} here")


def _status_checked(frame: Any, path: Path) -> Any:
    if "status" in frame.columns:
        unknown = sorted({str(status) for status in frame["status"].dropna().unique()} - set(STATUSES))
        if unknown or frame["status"].isna().any():
            given = unknown[0] if unknown else "null"
            raise RunFolderError(f"{path}: field status: got {given!r}; allowed: {', '.join(STATUSES)}")
    return frame


def _with_tail(frame: Any, tail: _Replay, records: list[dict[str, Any]], columns: Iterable[str] | None = None) -> Any:
    """A table read from disk, brought up to date: rows the log's tail replaced or forgot swapped for `records`."""
    import pandas as pd

    if not tail.changes_anything:
        return frame
    if "trial_id" in frame.columns:
        frame = frame[~frame["trial_id"].isin(tail.replaced())]
        if tail.cells and "checkpoint" in frame.columns:
            cells = frame["trial_id"].map(tail.cells)
            frame = frame.assign(checkpoint=cells.where(cells.notna(), frame["checkpoint"].astype(object)))
    else:  # the tables of a run that had no trial yet
        frame = frame.iloc[0:0]
    added = _frame(records, columns)
    frame = pd.concat([frame, added], ignore_index=True) if len(frame) and len(added) else \
        (frame if len(frame) else added)
    return frame.sort_values("trial_id", kind="stable", ignore_index=True) if len(frame) else frame


def read_results(run_dir: str | Path, required: Iterable[str] = REPORT_COLUMNS) -> Any:
    """Every finished trial's row as a DataFrame, by trial id; RunFolderError when missing, unreadable or incomplete.

    From results.parquet (else results.csv) and the trial log's lines after
    what that table holds; from the whole log where it has no marker.
    """
    folder = RunFolder(run_dir).checked()
    path = folder.results if folder.results.is_file() else folder.results_csv
    tail = _log_tail(folder.trials_log) if folder.trials_log.is_file() and path.is_file() else None
    if folder.trials_log.is_file() and tail is None:
        path = folder.trials_log
        frame = _frame(_sorted_rows(replay_log(path)[0]))
    elif not path.is_file():
        raise RunFolderError(f"{folder.results}: missing; the runner writes it after the first finished "
                             f"trial, so {folder.path} holds no results yet")
    else:
        frame = _read_frame(path)
        _require(frame, path, tuple(required))
        _status_checked(frame, path)
        if tail is not None:
            path = folder.trials_log
            frame = _with_tail(frame, tail, _sorted_rows(tail.rows))
    _require(frame, path, tuple(required))
    return _status_checked(frame, path)


def read_curves(run_dir: str | Path) -> Any | None:
    """Every epoch of every finished trial as a DataFrame (curves.parquet and the log after it); None when none."""
    folder = RunFolder(run_dir).checked()
    path = folder.curves
    tail = _log_tail(folder.trials_log) if folder.trials_log.is_file() and path.is_file() else None
    if folder.trials_log.is_file() and tail is None:
        curves = replay_log(folder.trials_log)[1]
        return _frame([point for trial in sorted(curves) for point in curves[trial]], CURVE_COLUMNS)
    if not path.is_file():
        return None
    frame = _read_frame(path)
    _require(frame, path, ("trial_id", "epoch", "val_acc"))
    if tail is not None:
        frame = _with_tail(frame, tail, [p for trial in sorted(tail.curves) for p in tail.curves[trial]],
                           CURVE_COLUMNS)
    return frame

