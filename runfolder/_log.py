"""The trial log (trials.jsonl): its lines, their replay, and the materialisation markers.

During a run, `ResultsTables` appends each finished trial (row and curve) to
the log, one JSON line each: the cost of recording a trial does not grow with
the study, and a crash loses at most a trial whose line was being written (a
torn last line is ignored on reading). Each materialisation of the tables
then appends a marker line naming how much of the log the tables hold, so a
reader applies only the lines after the last marker.
"""

from __future__ import annotations

import json
import os
from dataclasses import dataclass
from pathlib import Path
from typing import Any, Mapping

from ._untrusted import MAX_TRIAL_LOG_BYTES, RunFolderError, _first_line, open_regular, read_bytes


# ------------------------------------------------------------------ the trial log
# The line a materialisation appends once the tables are written: {"event":"materialized","log_bytes":N}
# says that every table on disk holds at least the log's first N bytes.
MATERIALIZED_EVENT = "materialized"
_MARKER_START = b'{"event":"' + MATERIALIZED_EVENT.encode() + b'"'
_SCAN_BYTES = 1 << 20  # the log is searched backwards for the last marker this many bytes at a time


def _plain(value: Any) -> Any:
    """JSON for numpy scalars and other values a row may hold."""
    if hasattr(value, "item"):
        return value.item()
    return str(value)


def _log_line(event: Mapping[str, Any]) -> bytes:
    # NaN stays NaN (Python's json writes and reads it), so a row survives the round trip exactly.
    return (json.dumps(event, default=_plain, separators=(",", ":")) + "\n").encode("utf-8")


_SCALARS = frozenset({str, int, float, bool, type(None)})


def _check_cells(cells: Any) -> None:
    """TypeError unless `cells` (a row, a curve point, checkpoint cells) maps names to plain values: every table
    cell is a scalar, and a nested value would reach the tables and the report as an object."""
    if type(cells) is not dict:
        raise TypeError(f"expected an object, got {type(cells).__name__}")
    if not _SCALARS.issuperset(map(type, cells.values())):  # one C-level pass; the loop only names the culprit
        name, value = next((n, v) for n, v in cells.items() if type(v) not in _SCALARS)
        raise TypeError(f"{name}: a {type(value).__name__}, not a plain value")


class _Replay:
    """Log events applied in order: rows and curves by trial id, and, for a replay of the log's tail only,
    what the tail does to trials it does not hold (`gone`: forgotten; `cells`: new checkpoint cells)."""

    def __init__(self) -> None:
        self.rows: dict[str, dict[str, Any]] = {}
        self.curves: dict[str, list[dict[str, Any]]] = {}
        self.gone: set[str] = set()
        self.cells: dict[str, str] = {}

    def apply(self, event: Mapping[str, Any]) -> None:
        kind = event["event"]
        if kind == "trial":
            row, curve = event["row"], event.get("curve") or []
            _check_cells(row)
            if type(curve) is not list or not all(type(point) is dict for point in curve):
                raise TypeError("curve: expected a list of objects (one per epoch)")
            trial = row["trial_id"]
            self.rows[trial] = row
            self.curves[trial] = curve
            self.gone.discard(trial)
            self.cells.pop(trial, None)
        elif kind == "checkpoints":
            _check_cells(event["cells"])
            for trial, cell in event["cells"].items():
                if trial in self.rows:
                    self.rows[trial]["checkpoint"] = cell
                elif trial not in self.gone:
                    self.cells[trial] = cell
        elif kind == "forget":
            self.rows.pop(event["trial"], None)
            self.curves.pop(event["trial"], None)
            self.gone.add(event["trial"])
            self.cells.pop(event["trial"], None)
        elif kind != MATERIALIZED_EVENT:
            raise ValueError(f"unknown event {kind!r}")

    @property
    def changes_anything(self) -> bool:
        return bool(self.rows or self.gone or self.cells)

    def replaced(self) -> set[str]:
        """Trials whose rows in a table written before this tail are out of date."""
        return set(self.rows) | self.gone


def _replay_bytes(data: bytes, path: Path, replay: _Replay) -> None:
    # Everything after the last newline was never finished: the line that a crash cut.
    for number, line in enumerate(data.split(b"\n")[:-1], start=1):
        if not line.strip():
            continue
        try:
            replay.apply(json.loads(line))
        except (ValueError, KeyError, TypeError, AttributeError) as error:
            raise RunFolderError(f"{path}:{number}: not a trial-log line ({_first_line(error)}); the lines "
                                 f"before it are intact") from None
        except RecursionError:  # C json gives up past Python's recursion limit: cheaper than a depth scan per line
            raise RunFolderError(f"{path}:{number}: not a trial-log line (JSON nested too deep to read); the "
                                 f"lines before it are intact") from None


def replay_log(path: Path) -> tuple[dict[str, dict[str, Any]], dict[str, list[dict[str, Any]]]]:
    """(rows by trial id, curves by trial id) from a trial log; a torn last line (a crash mid-write) is ignored."""
    data = read_bytes(path, MAX_TRIAL_LOG_BYTES)
    replay = _Replay()
    _replay_bytes(data, path, replay)
    return replay.rows, replay.curves


@dataclass(frozen=True)
class _Marker:
    log_bytes: int  # the tables hold at least the log up to here
    start: int      # where the marker's line starts
    end: int        # where it ends (after its newline)


def _last_marker(log: Path) -> _Marker | None:
    """The log's last materialisation marker, searched from the end; None where it has none."""
    try:
        with os.fdopen(open_regular(log), "rb") as handle:
            size = position = handle.seek(0, os.SEEK_END)
            following = b""  # the first bytes after the chunk in hand: a marker may straddle two chunks
            while position > 0:
                start = max(0, position - _SCAN_BYTES)
                handle.seek(start)
                chunk = handle.read(position - start) + following
                at = chunk.rfind(b"\n" + _MARKER_START) + 1
                if at == 0 and start == 0 and chunk.startswith(_MARKER_START):
                    at = 0
                elif at == 0:
                    following, position = chunk[:len(_MARKER_START) + 1], start
                    continue
                handle.seek(start + at)
                line = handle.readline()
                if not line.endswith(b"\n"):
                    return None
                event = json.loads(line)
                log_bytes = event.get("log_bytes") if isinstance(event, dict) else None
                if not isinstance(log_bytes, int) or not 0 <= log_bytes <= start + at:
                    return None
                return _Marker(log_bytes, start + at, min(size, start + at + len(line)))
    except (OSError, ValueError, RecursionError):  # RunFolderError is a ValueError; the whole log is read instead
        return None
    return None


def _log_tail(log: Path) -> _Replay | None:
    """The log's events after what the tables hold (by its last marker), replayed; None where it cannot tell.

    A reader takes the tables and applies these on top. Events that the
    tables already hold (a later write may have renamed its tables before
    appending its marker) come again and set what they set before, so the
    result is the whole log's. None (read the whole log instead) for a log
    without markers, or one whose marker does not point at a line's start.
    """
    marker = _last_marker(log)
    if marker is None:
        return None
    try:
        with os.fdopen(open_regular(log), "rb") as handle:
            if marker.log_bytes:
                handle.seek(marker.log_bytes - 1)
                if handle.read(1) != b"\n":
                    return None
            data = handle.read()
        replay = _Replay()
        _replay_bytes(data, log, replay)
    except (OSError, RunFolderError):  # the whole log is read instead, and names the line at fault
        return None
    return replay


def _tables_hold_the_log(log: Path) -> bool:
    """True when the log's last line is a marker that a materialisation appended right after the lines it wrote."""
    marker = _last_marker(log)
    return marker is not None and marker.log_bytes == marker.start and marker.end == log.stat().st_size
