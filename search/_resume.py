"""Whether a run folder may be started or continued: one driver at a time, judged before anything is written.

The order is fixed: take the folder's lock (`take_run_lock`), then judge the
folder (`check_run_dir`), and only then write. Judging reads everything a
resume will rely on — run.json, study.yaml, the trial record (trials.jsonl,
else the results and curves tables) and the Optuna storage — and checks that
the record and the storage agree:

- every trial the record holds is in the storage (else the storage is not
  this run's);
- every trial the storage finished is in the record, or is being trained
  again. Where the record has none at all, the results are lost: refused,
  with the ways to recover. Where a few are missing (a driver killed between
  Optuna's write and the log's, or a log cut back), they train again
  (`requeue_lost`): rebuilding their rows from the storage would not be
  exact, since it keeps neither the rows' columns nor the curves.

Any disagreement or damaged file is one RunError naming the file, what is
wrong and how to recover, raised before a byte is written.
"""

from __future__ import annotations

from pathlib import Path
from typing import Any, Iterable, TextIO

import optuna
from optuna.trial import FrozenTrial, TrialState

import runfolder
import space

from ._ray import stop_ray_left_by

FINISHED = (TrialState.COMPLETE, TrialState.PRUNED, TrialState.FAIL)
# The Optuna user attribute of a trial added by `search.warm_start` (search._reuse.warm_start): the earlier trial it
# stands for. Such a trial is finished in the storage but never a row of this run.
WARM_START_ATTR = "warm_start_from"
# Trial ids shown in a message before "and N more".
SHOWN = 4


class RunError(ValueError):
    """A run cannot start or continue as asked (existing folder, changed study, ...)."""


def take_run_lock(run_dir: Path, out: TextIO) -> runfolder.RunFolderLock:
    """Lock the run folder for this driver's life (making it when new); stop the Ray a killed driver of it left."""
    lock = runfolder.RunFolderLock(run_dir, command="python -m search.run")
    try:
        lock.acquire()
    except runfolder.RunFolderError as error:
        raise RunError(str(error)) from None
    if lock.note:
        stopped = stop_ray_left_by(lock.previous, written_by=lock.previous_uid)
        left = f"; stopped {stopped} process(es) of the local Ray it left running" if stopped else ""
        print(f"note: {lock.note}{left}", file=out)
    return lock


# What a start writes before run.json (the runner: study.yaml, then a fixed run's plans.json, then the Optuna
# storage's tables, then run.json, the folder's birth marker), besides the lock. A driver stopped in between (a
# kill, a full disk) leaves only these, and nothing was computed: a new start may take the folder, and a --resume
# has nothing to continue.
_SQLITE_SIDE_FILES = tuple(runfolder.STUDY_DB + suffix for suffix in ("-journal", "-wal", "-shm"))
_WRITTEN_BEFORE_RUN_JSON = frozenset({runfolder.LOCK, runfolder.STUDY_YAML, runfolder.PLANS_JSON, runfolder.STUDY_DB,
                                      *_SQLITE_SIDE_FILES})


def clear_half_made_start(study: space.Study, folder: runfolder.RunFolder, out: TextIO) -> None:
    """Delete the study.db a start that stopped before run.json left (check_run_dir allowed the folder), so that
    this start makes it whole; one whose Optuna study holds trials is refused, never deleted."""
    if study.search.storage or not folder.study_db.exists():
        return
    try:
        trials = stored_trials(study, folder)
    except RunError:
        trials = None  # half-made (a full disk stopped SQLite), or not Optuna's: no run began with it
    if trials:
        raise RunError(f"{folder.study_db}: holds {len(trials)} trial(s) of {study.name!r} but the folder has no "
                       f"{runfolder.RUN_JSON}; restore {runfolder.RUN_JSON} and --resume, or move {folder.study_db} "
                       f"away to start afresh")
    for name in (runfolder.STUDY_DB, *_SQLITE_SIDE_FILES):
        (folder.path / name).unlink(missing_ok=True)
    print(f"note: {folder.path}: an earlier start stopped before {runfolder.RUN_JSON} (no trial ran); starting "
          f"it afresh", file=out)


def check_run_dir(study: space.Study, run_dir: Path, resume: bool) -> runfolder.RunInfo | None:
    """Refuse to overwrite a folder, or to resume another study or records that disagree; the saved run.json (None
    for a new run)."""
    folder = runfolder.RunFolder(run_dir)
    existing = run_dir.is_dir() and any(path.name not in _WRITTEN_BEFORE_RUN_JSON for path in run_dir.iterdir())
    if existing and not resume:
        raise RunError(f"{run_dir}: the run folder exists; continue it with --resume, or give "
                       f"a new one with --out")
    if not resume:
        return None
    try:
        saved_run = runfolder.read_run_info(run_dir)
    except runfolder.RunFolderError as error:
        raise RunError(f"{error}; restore it from a copy, or start the study again with --out") from None
    if saved_run is None:
        raise RunError(f"{run_dir}: nothing to resume (no {runfolder.RUN_JSON}: no run began there); start the "
                       f"study without --resume")
    if not folder.study_yaml.is_file():
        raise RunError(f"{folder.study_yaml}: missing, so the run cannot be checked against the study it "
                       f"ran; restore it from a copy, or start the study again with --out")
    saved = space.load_study(folder.study_yaml)
    if saved.raw != study.raw:
        changed = first_difference(saved.raw, study.raw) or "?"
        raise RunError(f"{run_dir}: the study differs from the one this run started with "
                       f"(at {changed}); resume with the same file and --set flags, or use --out")
    check_records(study, folder)
    return saved_run


# ------------------------------------------------------------ the record
def recorded_trials(folder: runfolder.RunFolder) -> set[str]:
    """The trial ids the run folder records: from its log when it has one (as the runner reads), else its tables."""
    try:
        if folder.trials_log.is_file():
            return set(runfolder.replay_log(folder.trials_log)[0])
        if not folder.has_results():
            return set()
        results = runfolder.read_results(folder.path)
        runfolder.read_curves(folder.path)
    except runfolder.RunFolderError as error:
        if folder.trials_log.is_file():
            raise RunError(f"{error}; fix or delete that line, then --resume (a trial whose line is gone "
                           f"trains again)") from None
        raise RunError(f"{error}; restore the file from a copy (or delete a damaged .parquet whose .csv "
                       f"is intact), then --resume") from None
    return {str(trial) for trial in results["trial_id"]}


def _record_name(folder: runfolder.RunFolder) -> str:
    if folder.trials_log.is_file():
        return runfolder.TRIALS_LOG
    return runfolder.RESULTS_PARQUET if folder.results.is_file() else runfolder.RESULTS_CSV


# ----------------------------------------------------------- the storage
def _check_sqlite(path: Path) -> None:
    """Refuse a study.db that is not an SQLite file holding Optuna's tables, reading it only."""
    import sqlite3

    from optuna.storages._rdb import models  # Optuna's own list of its tables

    recover = "restore it from a copy, or start the study again with --out"
    try:
        with path.open("rb") as handle:
            header = handle.read(16)
    except OSError as error:
        raise RunError(f"{path}: cannot be read ({error.strerror or error})") from None
    if header != b"SQLite format 3\x00":
        raise RunError(f"{path}: not an SQLite database, so not this run's Optuna storage; {recover}")
    try:
        connection = sqlite3.connect(f"{path.resolve().as_uri()}?mode=ro", uri=True)
        try:
            tables = {row[0] for row in connection.execute("SELECT name FROM sqlite_master WHERE type='table'")}
        finally:
            connection.close()
    except sqlite3.Error as error:
        raise RunError(f"{path}: a damaged SQLite database ({error}); {recover}") from None
    # Optuna would create missing tables: a write, and a sign of another program's file or Optuna version.
    optuna_tables = set(models.BaseModel.metadata.tables)
    missing = sorted(optuna_tables - tables)
    if missing == sorted(optuna_tables):
        raise RunError(f"{path}: an SQLite database without Optuna's tables, so not this run's Optuna "
                       f"storage; {recover}")
    if missing:
        raise RunError(f"{path}: lacks Optuna's table(s) {', '.join(missing)}, as a storage of another Optuna "
                       f"version does; upgrade it (optuna storage upgrade --storage sqlite:///{path}), or "
                       f"{recover}")


def stored_trials(study: space.Study, folder: runfolder.RunFolder) -> list[FrozenTrial] | None:
    """The trials of the run's Optuna study (None when the storage holds no such study), read only."""
    url = study.search.storage or folder.storage_url()
    if not study.search.storage:
        if not folder.study_db.is_file() or folder.study_db.stat().st_size == 0:
            return None
        _check_sqlite(folder.study_db)
    where = study.search.storage or str(folder.study_db)
    try:
        existing = optuna.load_study(study_name=study.name, storage=url)
    except KeyError:
        return None
    except Exception as error:  # sqlalchemy and the drivers raise many types for a bad database
        first = " ".join(str(error).split())[:300]
        raise RunError(f"{where}: cannot be read as this run's Optuna storage ({type(error).__name__}: "
                       f"{first}); restore it from a copy, or start the study again with --out") from None
    return existing.get_trials(deepcopy=False)


def _accounted_for(trials: Iterable[FrozenTrial]) -> set[int]:
    """Numbers of finished trials that need no row: interrupted ones, those queued to train again, and warm-start ones."""
    numbers = set()
    for trial in trials:
        if trial.user_attrs.get("interrupted") or WARM_START_ATTR in trial.user_attrs:
            numbers.add(trial.number)
        if isinstance(trial.user_attrs.get("rerun_of"), int):
            numbers.add(trial.user_attrs["rerun_of"])
    return numbers


def lost_trials(trials: list[FrozenTrial], recorded: set[str]) -> list[FrozenTrial]:
    """Trials the storage finished that the record lacks and nothing trains again."""
    accounted = _accounted_for(trials)
    return [t for t in trials if t.state in FINISHED and t.number not in accounted
            and runfolder.trial_id(t.number) not in recorded]


def _shown(ids: list[str]) -> str:
    return ", ".join(ids[:SHOWN]) + (f" and {len(ids) - SHOWN} more" if len(ids) > SHOWN else "")


def check_records(study: space.Study, folder: runfolder.RunFolder) -> None:
    """Refuse a run folder whose trial record and Optuna storage disagree beyond a few trials to train again."""
    recorded = recorded_trials(folder)
    trials = stored_trials(study, folder)
    storage = study.search.storage or str(folder.study_db)
    fresh_start = (f"delete {folder.study_db} to train every trial again here" if not study.search.storage
                   else f"delete the Optuna study {study.name!r} from {storage} to train every trial again")
    if trials is None:
        if recorded:
            raise RunError(f"{folder.path}: {_record_name(folder)} records {len(recorded)} trial(s) but "
                           f"{storage} holds no Optuna study {study.name!r}: the run's storage is missing "
                           f"or not this run's; restore it from a copy (the results are intact), or start "
                           f"the study again with --out")
        return
    unknown = sorted(recorded - {runfolder.trial_id(t.number) for t in trials})
    if unknown:
        raise RunError(f"{folder.path}: {_record_name(folder)} records trial(s) that {storage} does not hold "
                       f"({_shown(unknown)}): the storage is not this run's, or an older copy; restore this "
                       f"run's storage, or start the study again with --out")
    lost = [runfolder.trial_id(t.number) for t in lost_trials(trials, recorded)]
    if lost and not recorded:
        raise RunError(f"{folder.path}: {storage} holds {len(lost)} finished trial(s) ({_shown(lost)}) but "
                       f"the folder has no record of them (no {runfolder.TRIALS_LOG}, "
                       f"{runfolder.RESULTS_PARQUET} or {runfolder.RESULTS_CSV}), so their results are "
                       f"lost; restore {runfolder.TRIALS_LOG} or {runfolder.RESULTS_PARQUET} from a copy "
                       f"and --resume, or {fresh_start} and --resume")


def requeue_lost(existing: optuna.Study, recorded: Iterable[str], out: TextIO) -> list[int]:
    """Queue again the finished trials the record lacks (check_records has allowed them); their numbers."""
    trials = existing.get_trials(deepcopy=False)
    lost = lost_trials(trials, set(recorded))
    storage = existing._storage
    for trial in lost:
        existing.enqueue_trial(trial.params, user_attrs={"rerun_of": trial.number})
        if "grid_id" in trial.system_attrs:  # the grid point itself, as search._searcher.prepare_resume keeps it
            waiting = existing.get_trials(deepcopy=False, states=(TrialState.WAITING,))[-1]
            for key in ("grid_id", "search_space"):
                storage.set_trial_system_attr(waiting._trial_id, key, trial.system_attrs[key])
    if lost:
        ids = [runfolder.trial_id(t.number) for t in lost]
        print(f"note: the Optuna storage holds {len(lost)} finished trial(s) that the run folder does not "
              f"record ({_shown(ids)}: a driver stopped as they finished, or a log cut back); they train "
              f"again", file=out)
    return [t.number for t in lost]


def first_difference(a: Any, b: Any, path: str = "") -> str | None:
    """The dotted path of the first place two nested dicts differ, or None when equal."""
    if isinstance(a, dict) and isinstance(b, dict):
        for key in sorted(set(a) | set(b), key=str):
            found = first_difference(a.get(key), b.get(key), f"{path}.{key}" if path else str(key))
            if found:
                return found
        return None
    return None if a == b else (path or "<root>")
