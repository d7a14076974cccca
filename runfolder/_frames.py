"""The pandas readers of a run's tables: results and curves, each brought up to date from the trial log (retrain.parquet: _retrain_rows)."""

from __future__ import annotations

from pathlib import Path
from typing import Any, Callable, Iterable, Mapping

from ._layout import RunFolder
from ._log import _log_tail, _Replay, replay_log
from ._untrusted import MAX_TABLE_BYTES, RunFolderError, _first_line, open_bounded
from ._rows import CURVE_COLUMNS, STATUSES

# What each reader needs of results.parquet; the report reads with the least.
REPORT_COLUMNS = ("trial_id", "status")
# Read as categoricals when a reader picks its columns (read_results(columns=...)).
DICTIONARY_COLUMNS = ("arch_yaml",)


def _frame(records: list[dict[str, Any]], columns: Iterable[str] | None = None) -> Any:
    import pandas as pd

    return pd.DataFrame(records, columns=list(columns) if columns is not None else None)


def _sorted_rows(rows: Mapping[str, dict[str, Any]]) -> list[dict[str, Any]]:
    return [rows[trial] for trial in sorted(rows)]


# ------------------------------------------------------------ pandas readers
def _read_frame(path: Path, columns: Callable[[str], bool] | None = None) -> Any:
    import pandas as pd

    try:
        # One open file for the whole read: the writer replaces a table by renaming a new file over it, and
        # pyarrow given a path opens it twice (footer, then pages), so a rename between the two would pair one
        # file's footer with the other's pages. An open handle keeps reading the file it opened.
        with open_bounded(path, MAX_TABLE_BYTES) as handle:
            if path.suffix != ".parquet":
                return pd.read_csv(handle, usecols=columns)
            if columns is None:
                return pd.read_parquet(handle)
            import pyarrow.parquet as pq

            # Only the wanted columns are decoded: the footer names them all, each is read on its own.
            names = [name for name in pq.read_schema(handle).names if columns(name)]
            handle.seek(0)
            # Text that repeats across trials (a spec per architecture) as a categorical: its codes, not 10^6 copies.
            return pd.read_parquet(handle, columns=names, read_dictionary=[n for n in names if n in DICTIONARY_COLUMNS])
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


def _unique_trials(frame: Any, path: Path) -> Any:
    """One row per trial id: the last of each, as the trial log's replay keeps a trial's last line; a warning says so.

    Two rows of one trial (a table written by hand, or joined from two runs)
    would count that trial twice in the report, in compare's pairs and in
    --reuse. The log's rule decides which stands, so that every reader of the
    folder sees the same trial.
    """
    if "trial_id" not in frame.columns:
        return frame
    repeated = frame["trial_id"].duplicated(keep="last")
    if not repeated.any():
        return frame
    import warnings

    from ._run_info import RunFolderNote

    ids = sorted({str(trial) for trial in frame.loc[repeated, "trial_id"]})
    shown = ", ".join(ids[:5]) + (f" and {len(ids) - 5} more" if len(ids) > 5 else "")
    warnings.warn_explicit(f"{path}: {int(repeated.sum())} row(s) repeat the trial id of a later row ({shown}); "
                           f"the last row of each trial is read, as the trial log's replay keeps its last line",
                           RunFolderNote, filename=str(path), lineno=0, module="runfolder")
    return frame[~repeated].reset_index(drop=True)


def _only(frame: Any, columns: Callable[[str], bool] | None) -> Any:
    return frame if columns is None else frame[[name for name in frame.columns if columns(name)]]


def read_results(run_dir: str | Path, required: Iterable[str] = REPORT_COLUMNS,
                 columns: Callable[[str], bool] | None = None) -> Any:
    """Every finished trial's row as a DataFrame, by trial id; RunFolderError when missing, unreadable or incomplete.

    From results.parquet (else results.csv) and the trial log's lines after
    what that table holds; from the whole log where it has no marker. One row
    per trial id: where the table holds two, the last (`_unique_trials`).
    `columns`: read only the columns it accepts, and the `required` ones (a
    report of 10^6 trials has no use for every trial's spec and settings).
    """
    if columns is not None:
        wanted, required = columns, tuple(required)
        columns = lambda name: name in required or wanted(name)  # noqa: E731
    folder = RunFolder(run_dir).checked()
    path = folder.results if folder.results.is_file() else folder.results_csv
    tail = _log_tail(folder.trials_log) if folder.trials_log.is_file() and path.is_file() else None
    if folder.trials_log.is_file() and tail is None:
        path = folder.trials_log
        frame = _only(_frame(_sorted_rows(replay_log(path)[0])), columns)
    elif not path.is_file():
        raise RunFolderError(f"{folder.results}: missing; the runner writes it after the first finished "
                             f"trial, so {folder.path} holds no results yet")
    else:
        frame = _unique_trials(_read_frame(path, columns), path)
        _require(frame, path, tuple(required))
        _status_checked(frame, path)
        if tail is not None:
            path = folder.trials_log
            frame = _only(_with_tail(frame, tail, _sorted_rows(tail.rows)), columns)
    _require(frame, path, tuple(required))
    return _status_checked(frame, path)


def read_curves(run_dir: str | Path, columns: Callable[[str], bool] | None = None) -> Any | None:
    """Every epoch of every finished trial as a DataFrame (curves.parquet and the log after it); None when none.

    `columns`: read only the columns it accepts, and trial_id, epoch and val_acc.
    """
    if columns is not None:
        wanted = columns
        columns = lambda name: name in ("trial_id", "epoch", "val_acc") or wanted(name)  # noqa: E731
    folder = RunFolder(run_dir).checked()
    path = folder.curves
    tail = _log_tail(folder.trials_log) if folder.trials_log.is_file() and path.is_file() else None
    if folder.trials_log.is_file() and tail is None:
        curves = replay_log(folder.trials_log)[1]
        return _only(_frame([point for trial in sorted(curves) for point in curves[trial]], CURVE_COLUMNS), columns)
    if not path.is_file():
        return None
    frame = _read_frame(path, columns)
    _require(frame, path, ("trial_id", "epoch", "val_acc"))
    if tail is not None:
        frame = _only(_with_tail(frame, tail, [p for trial in sorted(tail.curves) for p in tail.curves[trial]],
                                 CURVE_COLUMNS), columns)
    return frame

