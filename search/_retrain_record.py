"""Recording a retrain job: its finished runs as rows of the study's retrain.parquet, and their summary.

The rows are the runfolder's typed retrain rows (`runfolder.RetrainRow`); the
job's own results, read through runfolder, are the only source, so a job killed
mid-way is recorded as far as it got.
"""

from __future__ import annotations

from pathlib import Path

import pandas as pd

import runfolder
from runfolder import RANKING_COLUMN
from space import TrainSettings

from ._retrain_plan import SOURCE_TRIAL, RetrainError, RetrainJob, run_key


def _recorded(run_dir: Path) -> list[runfolder.RetrainRow] | None:
    try:
        return runfolder.read_retrain_rows(run_dir)
    except runfolder.RunFolderError as error:
        raise RetrainError(f"{error}; move it away to start the retrain table afresh") from None


def _job_rows(job: RetrainJob) -> list[runfolder.RetrainRow]:
    """The retrain.parquet rows of a job's finished runs (its own results, read through runfolder)."""
    if not runfolder.RunFolder(job.folder).has_results():
        return []
    try:
        results = runfolder.read_results(job.folder)
    except runfolder.RunFolderError as error:
        raise RetrainError(f"{error}; the retrain job's record is damaged: restore it, or move "
                           f"{job.folder} away to train its runs again") from None
    data = job.study.data_settings()
    source_column = runfolder.FACTOR_PREFIX + SOURCE_TRIAL
    rows = []
    for row in results.to_dict("records"):
        source_id = str(row.get(source_column))
        source = job.sources.get(source_id, {})
        train = TrainSettings.from_dict(runfolder.train_settings_of(row) or {})
        checkpoint = str(row.get("checkpoint") or "")
        record = {
            "arch_key": row["arch_key"], "source_trial_id": source_id, "seed": row["seed"],
            "status": row["status"], "test_acc": row["test_acc"], "epochs": train.epochs,
            "epochs_run": row["epochs_run"], "wall_s": row["wall_s"], "images_per_s": row["images_per_s"],
            "params": row["params"], "macs": row["macs"], "flops": row["flops"],
            "label": runfolder.factor_label({k: v for k, v in row.items() if k != source_column}),
            "source_val_acc_best": runfolder.float_or_nan(source.get(RANKING_COLUMN)),
            "source_test_acc": runfolder.float_or_nan(source.get("test_acc")),
            "node_id": row.get("node_id", ""), "error": row.get("error", ""),
            "checkpoint": runfolder.retrain_job_cell(job.name, checkpoint) if checkpoint else "",
            "job": job.name, "trial_id": row["trial_id"], "run_key": run_key(source_id, train.seed, train, data),
            "arch_yaml": row["arch_yaml"],
            **{column: value for column, value in row.items() if column.startswith(runfolder.TRAIN_PREFIX)},
            runfolder.TRAIN_JSON: row[runfolder.TRAIN_JSON],
        }
        try:
            rows.append(runfolder.RetrainRow.from_record(record, f"{job.folder}: {row['trial_id']}"))
        except runfolder.RunFolderError as error:
            raise RetrainError(f"{error}; the retrain job's record is damaged: restore it, or move "
                               f"{job.folder} away to train its runs again") from None
    return rows


def record_job(run_dir: Path, job: RetrainJob) -> pd.DataFrame:
    """Rewrite retrain.parquet/.csv with the job's rows as its folder holds them now; the whole table."""
    recorded = _recorded(run_dir)
    if recorded is None:
        recorded = []
    others = [row for row in recorded if row.job != job.name]
    rows = _job_rows(job)
    if not rows and len(others) == len(recorded):
        # nothing of this job yet: the table (or its absence) stays as it is
        return runfolder.retrain_frame(recorded) if recorded else pd.DataFrame()
    runfolder.write_retrain(run_dir, others + rows)
    return runfolder.retrain_frame(others + rows)


def summary(frame: pd.DataFrame) -> pd.DataFrame:
    """Complete retrain runs per architecture: n, mean and sample std of test_acc, and its search scores."""
    return runfolder.retrain_summary(frame)


def _percent(value: float) -> str:
    return "—" if runfolder.is_missing(value) else f"{100 * value:.2f}"


def format_summary(table: pd.DataFrame) -> str:
    """The printed table: test accuracy as mean ± std over n seeds per architecture."""
    rows = [("arch_key", "source trial", "search val %", "search test %", "n", "retrained test %", "label")]
    for row in table.to_dict("records"):
        spread = f"{_percent(row['mean'])} ± {_percent(row['std'])}"
        rows.append((row["arch_key"], row["source_trial_id"], _percent(row["search_val_acc"]),
                     _percent(row["search_test_acc"]), str(row["n"]), spread, row["label"] or "-"))
    widths = [max(len(r[i]) for r in rows) for i in range(len(rows[0]))]
    lines = ["  ".join(cell.ljust(w) for cell, w in zip(row, widths)).rstrip() for row in rows]
    lines.insert(1, "  ".join("-" * w for w in widths))
    return "\n".join(lines) + "\n(mean ± sample std over seeds; — with a single seed)"

