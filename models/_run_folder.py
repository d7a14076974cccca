"""Finding one trial in a run folder for `models.load`, through the run-folder module.

`runfolder` owns the format and the ranking rule; this module adds what
`models.load` promises on top: CheckpointError messages that say how to get
the weights a trial lacks.
"""

from __future__ import annotations

from pathlib import Path
from typing import Any

import runfolder
from runfolder import RANKING_COLUMN, TrialRecord

from ._checkpoint import CheckpointError, shorten

RETRAIN_HINT = ("retrain it from its spec with `python -m search.retrain RUN_DIR --top K`, or keep more "
                "weights next time with search.keep_checkpoints")


def is_run_folder(folder: Path) -> bool:
    """True when `folder` holds a results table."""
    return runfolder.RunFolder(folder).has_results()


def read_trials(run_dir: Path) -> list[TrialRecord]:
    """Every row of the run's results table, as TrialRecords."""
    try:
        return runfolder.read_trials(run_dir)
    except runfolder.RunFolderError as error:
        raise CheckpointError(str(error)) from None


def checkpoint_folder(run_dir: Path, record: TrialRecord) -> Path:
    """The folder a trial's `checkpoint` cell names, refused (CheckpointError naming the cell) unless it lies inside
    the run folder: an absolute path, `..` or a link leading out is never loaded (runfolder._untrusted)."""
    try:
        return runfolder.stored_path(run_dir, record.checkpoint, f"{runfolder.TRIALS_LOG} / results table, trial "
                                                                 f"{record.trial_id}, column checkpoint")
    except runfolder.RunFolderError as error:
        raise CheckpointError(str(error)) from None


def ranked(records: list[TrialRecord], with_weights: bool) -> list[TrialRecord]:
    """Complete trials in the run-folder ranking; only those with kept weights if asked."""
    chosen = [r for r in records if r.arch_yaml and (r.checkpoint or not with_weights)]
    order = runfolder.ranking_order([r.trial_id for r in chosen], [r.status for r in chosen],
                                    [r.val_acc_best for r in chosen])
    return [chosen[i] for i in order]


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
