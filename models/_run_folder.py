"""Finding one trial in a run folder's results table, without the search package.

`models.load` must stay importable without Ray, Optuna or pandas, so this reads
`results.csv` with the standard library (the runner writes it beside
`results.parquet` after every trial) and falls back to `results.parquet`
through pyarrow, imported only then.
"""

from __future__ import annotations

import csv
import math
from dataclasses import dataclass
from pathlib import Path
from typing import Any

from ._checkpoint import CheckpointError, shorten

RESULTS_CSV = "results.csv"
RESULTS_PARQUET = "results.parquet"
REQUIRED_COLUMNS = ("trial_id", "status", "val_acc_best", "arch_yaml", "checkpoint")
# Ranking is on validation accuracy only: choosing by test accuracy would make
# the reported test accuracy of the choice optimistic.
RANKING_COLUMN = "val_acc_best"
RETRAIN_HINT = ("retrain it from its spec with `python -m search.retrain RUN_DIR --top K`, or keep more "
                "weights next time with search.keep_checkpoints")


@dataclass(frozen=True)
class TrialRecord:
    """What `models.load` needs from one results row."""

    trial_id: str
    number: int | None
    status: str
    val_acc_best: float
    test_acc: float
    arch_yaml: str
    checkpoint: str  # relative to the run folder; "" when the weights were not kept
    error: str


def is_run_folder(folder: Path) -> bool:
    """True when `folder` holds a results table."""
    return (folder / RESULTS_CSV).is_file() or (folder / RESULTS_PARQUET).is_file()


def _number(value: Any) -> float:
    if value is None or value == "":
        return math.nan
    try:
        return float(value)
    except (TypeError, ValueError):
        return math.nan


def _text(value: Any) -> str:
    if value is None or (isinstance(value, float) and math.isnan(value)):
        return ""
    return str(value)


def _rows_from_csv(path: Path) -> tuple[list[str], list[dict[str, Any]]]:
    with path.open(newline="") as handle:
        reader = csv.DictReader(handle)
        rows = list(reader)
        return list(reader.fieldnames or []), rows


def _rows_from_parquet(path: Path) -> tuple[list[str], list[dict[str, Any]]]:
    try:
        import pyarrow.parquet as parquet
    except ImportError:
        raise CheckpointError(f"{path}: reading it needs pyarrow (pip install pyarrow), and the run "
                              f"folder has no {RESULTS_CSV} to read instead") from None
    table = parquet.read_table(path)
    return list(table.column_names), table.to_pylist()


def read_trials(run_dir: Path) -> list[TrialRecord]:
    """Every row of the run's results table, as TrialRecords."""
    path = run_dir / RESULTS_CSV
    reader = _rows_from_csv
    if not path.is_file():
        path, reader = run_dir / RESULTS_PARQUET, _rows_from_parquet
    try:
        columns, rows = reader(path)
    except CheckpointError:
        raise
    except Exception as error:  # csv.Error, OSError, ArrowInvalid, UnicodeDecodeError
        raise CheckpointError(f"{path}: cannot be read as a results table ({type(error).__name__}: "
                              f"{str(error).splitlines()[0] if str(error) else ''})") from None
    missing = [c for c in REQUIRED_COLUMNS if c not in columns]
    if missing and rows:
        raise CheckpointError(f"{path}: missing column(s) {', '.join(missing)}; a results table "
                              f"needs {', '.join(REQUIRED_COLUMNS)}")
    records = []
    for row in rows:
        number = _number(row.get("number"))
        records.append(TrialRecord(
            trial_id=_text(row.get("trial_id")), number=None if math.isnan(number) else int(number),
            status=_text(row.get("status")), val_acc_best=_number(row.get(RANKING_COLUMN)),
            test_acc=_number(row.get("test_acc")), arch_yaml=_text(row.get("arch_yaml")),
            checkpoint=_text(row.get("checkpoint")).strip(), error=_text(row.get("error")),
        ))
    return records


def ranked(records: list[TrialRecord], with_weights: bool) -> list[TrialRecord]:
    """Complete trials, best val_acc_best first (ties by trial id); only those with kept weights if asked."""
    chosen = [r for r in records if r.status == "complete" and r.arch_yaml
              and (r.checkpoint or not with_weights)]
    # A complete trial without a validation score cannot be ranked above any other.
    return sorted(chosen, key=lambda r: (-r.val_acc_best if not math.isnan(r.val_acc_best) else math.inf,
                                         r.trial_id))


def _check_rank(rank: Any) -> int:
    if isinstance(rank, bool) or not isinstance(rank, int) or rank < 0:
        raise CheckpointError(f"rank: got {rank!r}; allowed: an integer >= 0 (0 = the best by {RANKING_COLUMN})")
    return rank


def find_trial(run_dir: Path, rank: int | None, trial: str | int | None,
               with_weights: bool) -> tuple[TrialRecord, int | None]:
    """The trial at `rank` (0 = best by val_acc_best) or with id `trial`, and its rank if known."""
    if rank is None and trial is None:
        raise CheckpointError(f"{run_dir}: a run folder holds many trials: pass rank=K (0 = the best by "
                              f"{RANKING_COLUMN}) or trial='trial_0003'")
    if rank is not None and trial is not None:
        raise CheckpointError(f"{run_dir}: got rank={rank!r} and trial={trial!r}; pass one of them")
    records = read_trials(run_dir)
    order = ranked(records, with_weights)
    what = "trials with kept weights" if with_weights else "complete trials"
    if rank is not None:
        rank = _check_rank(rank)
        if rank >= len(order):
            have = f"ranks 0..{len(order) - 1}" if order else "none to rank"
            message = f"{run_dir}: rank {rank}: the run has {len(order)} {what} ({have})"
            all_complete = ranked(records, with_weights=False)
            if with_weights and rank < len(all_complete):
                unkept = all_complete[rank]
                message += (f"; the complete trial at rank {rank} by {RANKING_COLUMN} is "
                            f"{unkept.trial_id}, whose weights were not kept: {RETRAIN_HINT}")
            raise CheckpointError(message)
        return order[rank], rank
    matches = [r for r in records if r.trial_id == trial or (isinstance(trial, int) and not isinstance(trial, bool)
                                                            and r.number == trial)]
    if not matches:
        known = [r.trial_id for r in records]
        raise CheckpointError(f"{run_dir}: trial: got {trial!r}; allowed: a trial_id of the results table "
                              f"({shorten(known) if known else 'the table is empty'})")
    record = matches[0]
    if with_weights and record.status != "complete":
        reason = f" ({record.error.splitlines()[0]})" if record.error.strip() else ""
        raise CheckpointError(f"{run_dir}: trial {record.trial_id} is {record.status}{reason}; only a "
                              f"complete trial has trained weights (its spec loads with models.load_spec)")
    if with_weights and not record.checkpoint:
        raise CheckpointError(f"{run_dir}: trial {record.trial_id} ({RANKING_COLUMN} "
                              f"{record.val_acc_best:.4f}) has no kept weights: {RETRAIN_HINT}; its spec "
                              f"loads with models.load_spec")
    position = next((i for i, r in enumerate(order) if r.trial_id == record.trial_id), None)
    return record, position
