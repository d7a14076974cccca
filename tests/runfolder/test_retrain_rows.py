"""retrain.parquet as a typed document: rows written and read only through `runfolder.RetrainRow`."""

from __future__ import annotations

import math

import pandas as pd
import pytest

import runfolder


def test_a_row_retrained_before_retrain_jobs_still_reads_with_defaults(tmp_path):
    # As the in-process retrain wrote it: no job, trial_id or node_id; a device and a finish time.
    old = pd.DataFrame([{"arch_key": "0123456789abcdef", "source_trial_id": "trial_0000", "seed": 0,
                         "status": "complete", "test_acc": 0.4, "device": "cpu", "finished": "2025-01-01T00:00:00Z",
                         "train.epochs": 3, "train_json": "{}"}])
    runfolder.atomic_write_frame(old, runfolder.RunFolder(tmp_path).retrain)
    (row,) = runfolder.read_retrain_rows(tmp_path)
    assert (row.job, row.trial_id, row.node_id, row.device) == (None, None, "", "cpu")
    assert math.isnan(row.source_val_acc_best) and row.train_cells == {"train.epochs": 3}
    frame = runfolder.read_retrain(tmp_path)
    assert list(frame.columns[:len(runfolder.RETRAIN_COLUMNS)]) == list(runfolder.RETRAIN_COLUMNS)
    assert frame.loc[0, "device"] == "cpu"


def test_rows_round_trip_through_the_writer(tmp_path):
    rows = [runfolder.RetrainRow(arch_key="a", source_trial_id="trial_0001", seed=seed, test_acc=0.8 + seed / 100,
                                 source_val_acc_best=0.7, job="top1-seeds2-x", trial_id=runfolder.trial_id(seed))
            for seed in range(2)]
    runfolder.write_retrain(tmp_path, rows)
    assert runfolder.read_retrain_rows(tmp_path) == rows
    summary = runfolder.retrain_summary(runfolder.read_retrain(tmp_path))
    assert summary.loc[0, "n"] == 2 and summary.loc[0, "mean"] == pytest.approx(0.805)


def test_a_cell_of_the_wrong_type_is_refused_with_the_file_row_and_column(tmp_path):
    bad = pd.DataFrame([{"arch_key": "a", "test_acc": "high"}])
    runfolder.atomic_write_frame(bad, runfolder.RunFolder(tmp_path).retrain)
    with pytest.raises(runfolder.RunFolderError, match=r"retrain.parquet: row 0: field test_acc: got 'high'"):
        runfolder.read_retrain(tmp_path)


def test_the_writer_takes_typed_rows_only(tmp_path):
    with pytest.raises(TypeError, match="allowed: runfolder.RetrainRow"):
        runfolder.write_retrain(tmp_path, [{"arch_key": "a", "val_acc_best": 0.5}])
