"""Materialising the tables from the trial log: on a clock, in the background, and what readers see meanwhile."""

from __future__ import annotations

import math
import threading

import pandas as pd
import pytest

import runfolder
from spec_stand_in import SpecStandIn
from runfolder import _tables


class _Clock:
    def __init__(self) -> None:
        self.now = 0.0

    def __call__(self) -> float:
        return self.now


def _row(number: int, val: float = 0.5) -> dict:
    return runfolder.trial_row(number=number, status="complete", seed=0, factors={"shortcut": "A"}, spec=SpecStandIn(),
                               train={"epochs": 2, "seed": 0}, metrics={"val_acc_best": val, "test_acc": math.nan})


def _curve(val: float) -> list[dict]:
    return [{"epoch": 1, "val_acc": val / 2, "train_loss": 2.0, "lr": 0.1}, {"epoch": 2, "val_acc": val}]


def _ids(frame: pd.DataFrame) -> list[str]:
    return frame["trial_id"].tolist()


def test_the_clock_writes_the_tables_in_the_background(tmp_path):
    clock = _Clock()
    tables = runfolder.ResultsTables(tmp_path, materialize_every_s=60, clock=clock)
    folder = runfolder.RunFolder(tmp_path)
    tables.add_trial(_row(0), _curve(0.4))  # the first trial: written at once
    tables.add_trial(_row(1), _curve(0.6))  # not due yet
    assert _ids(pd.read_parquet(folder.results)) == ["trial_0000"]
    clock.now = 60
    tables.add_trial(_row(2), _curve(0.8))  # due: written by a thread
    tables._wait_for_writer()
    assert _ids(pd.read_parquet(folder.results)) == ["trial_0000", "trial_0001", "trial_0002"]
    assert pd.read_parquet(folder.curves)["epoch"].tolist() == [1, 2] * 3
    assert _ids(pd.read_csv(folder.curves_csv)) == ["trial_0000"] * 2 + ["trial_0001"] * 2 + ["trial_0002"] * 2
    tables.close()
    assert not list(tmp_path.glob(".*.tmp"))


def test_readers_take_the_tables_and_the_log_after_their_marker(tmp_path):
    tables = runfolder.ResultsTables(tmp_path, materialize_every_s=3600)
    folder = runfolder.RunFolder(tmp_path)
    for number in range(3):
        tables.add_trial(_row(number), _curve(0.4))
    tables.close()
    # The log ends with the marker: readers take the tables alone (here made to say so).
    fake = pd.read_parquet(folder.results)
    fake.loc[0, "error"] = "from the table"
    fake.to_parquet(folder.results)
    assert runfolder.read_results(tmp_path)["error"].tolist() == ["from the table", "", ""]
    # What comes after the marker is applied on top: a new trial, a forgotten one, a checkpoint cell.
    tables.add_trial(_row(3), _curve(0.6))
    tables.forget("trial_0001")
    tables.set_checkpoints({"trial_0000": "checkpoints/trial_0000"})
    results = runfolder.read_results(tmp_path)
    assert _ids(results) == ["trial_0000", "trial_0002", "trial_0003"]
    assert results["error"].tolist() == ["from the table", "", ""]
    assert results["checkpoint"].fillna("").tolist() == ["checkpoints/trial_0000", "", ""]
    assert _ids(runfolder.read_curves(tmp_path)) == ["trial_0000"] * 2 + ["trial_0002"] * 2 + ["trial_0003"] * 2
    records = runfolder.read_trials(tmp_path)
    assert [(r.trial_id, r.checkpoint) for r in records] == [
        ("trial_0000", "checkpoints/trial_0000"), ("trial_0002", ""), ("trial_0003", "")]
    # A log without markers (as the first logs were written) is read whole.
    log = folder.trials_log
    log.write_bytes(b"".join(line for line in log.read_bytes().splitlines(keepends=True)
                             if b'"materialized"' not in line))
    results = runfolder.read_results(tmp_path)
    assert _ids(results) == ["trial_0000", "trial_0002", "trial_0003"] and results["error"].tolist() == ["", "", ""]


def test_a_trial_recorded_during_a_background_write_is_not_lost(tmp_path, monkeypatch):
    clock = _Clock()
    tables = runfolder.ResultsTables(tmp_path, materialize_every_s=60, clock=clock)
    tables.add_trial(_row(0), _curve(0.4))
    started, release = threading.Event(), threading.Event()
    write = _tables._write_snapshot

    def slow_write(folder, snapshot):
        started.set()
        release.wait(10)
        write(folder, snapshot)

    monkeypatch.setattr(_tables, "_write_snapshot", slow_write)
    clock.now = 60
    tables.add_trial(_row(1), _curve(0.6))  # starts a background write of trials 0 and 1
    assert started.wait(10)
    tables.add_trial(_row(2), _curve(0.8))  # arrives while it writes
    release.set()
    tables._wait_for_writer()
    folder = runfolder.RunFolder(tmp_path)
    assert _ids(pd.read_parquet(folder.results)) == ["trial_0000", "trial_0001"]
    # The marker that write left does not end the log where the write began: readers replay.
    assert _ids(runfolder.read_results(tmp_path)) == ["trial_0000", "trial_0001", "trial_0002"]
    assert set(runfolder.ResultsTables.load(tmp_path).rows) == {"trial_0000", "trial_0001", "trial_0002"}
    tables.close()  # ... and the end of the run writes the rest
    assert _ids(pd.read_parquet(folder.results)) == ["trial_0000", "trial_0001", "trial_0002"]


def test_a_failed_background_write_is_raised_at_the_next_trial(tmp_path, monkeypatch):
    clock = _Clock()
    tables = runfolder.ResultsTables(tmp_path, materialize_every_s=60, clock=clock)
    tables.add_trial(_row(0))

    def full_disk(folder, snapshot):
        raise OSError(28, "No space left on device")

    monkeypatch.setattr(_tables, "_write_snapshot", full_disk)
    clock.now = 60
    tables.add_trial(_row(1))
    tables._wait_for_writer()
    with pytest.raises(runfolder.RunFolderError, match=r"writing the tables failed .*No space left.*trials\.jsonl"):
        tables.add_trial(_row(2))
    assert set(runfolder.ResultsTables.load(tmp_path).rows) == {"trial_0000", "trial_0001", "trial_0002"}


def test_missing_values_are_empty_cells_and_curves_read_back_as_rows(tmp_path):
    tables = runfolder.ResultsTables(tmp_path)
    tables.add_trial(_row(0), _curve(0.4))
    tables.close()
    folder = runfolder.RunFolder(tmp_path)
    text = folder.results_csv.read_text()
    assert "nan" not in text.lower()  # NaN and None are empty cells, as pandas wrote them
    assert math.isnan(pd.read_csv(folder.results_csv)["test_acc"][0])
    assert math.isnan(runfolder.read_trials(tmp_path)[0].test_acc)
    curves = pd.read_parquet(folder.curves)
    assert curves["epoch"].dtype == "int64" and math.isnan(curves["train_loss"][1])
    assert tables.curves["trial_0000"] == [
        {"trial_id": "trial_0000", "epoch": 1, "train_loss": 2.0, "val_acc": 0.2, "epoch_s": None,
         "images_per_s": None, "lr": 0.1},
        {"trial_id": "trial_0000", "epoch": 2, "train_loss": None, "val_acc": 0.4, "epoch_s": None,
         "images_per_s": None, "lr": None}]


def test_keeping_one_checkpoint_leaves_the_other_cells_alone(tmp_path):
    tables = runfolder.ResultsTables(tmp_path, materialize_every_s=3600)
    for number in range(3):
        tables.add_trial(_row(number))
    tables.set_checkpoints({"trial_0000": "checkpoints/trial_0000"})
    tables.keep_checkpoint("trial_0002", "checkpoints/trial_0002")
    tables.close()
    assert runfolder.read_results(tmp_path)["checkpoint"].fillna("").tolist() == [
        "checkpoints/trial_0000", "", "checkpoints/trial_0002"]
    assert runfolder.ResultsTables.load(tmp_path).rows["trial_0002"]["checkpoint"] == "checkpoints/trial_0002"


def test_the_tables_pickle_as_ray_tune_pickles_its_callbacks(tmp_path):
    import pickle

    tables = runfolder.ResultsTables(tmp_path)
    tables.add_trial(_row(0), _curve(0.4))
    again = pickle.loads(pickle.dumps(tables))
    again.add_trial(_row(1), _curve(0.6))
    again.close()
    assert _ids(runfolder.read_results(tmp_path)) == ["trial_0000", "trial_0001"]


def test_a_table_replaced_while_it_is_read_is_read_whole(tmp_path):
    """The writer renames a new table over the old one; a reader in the middle gets one of them, never a mix.

    (pyarrow given a path opens the file twice, footer then pages: a rename between the two once broke a
    live report build of the main study.)"""
    folder = runfolder.RunFolder(tmp_path)
    tables = [pd.DataFrame([_row(n, val=0.1 * (n % 7)) for n in range(size)]) for size in (3, 40)]
    runfolder.atomic_write_frame(tables[0], folder.results)
    stop, errors = threading.Event(), []

    def rewrite() -> None:
        turn = 0
        while not stop.is_set():
            turn += 1
            runfolder.atomic_write_frame(tables[turn % 2], folder.results)

    writer = threading.Thread(target=rewrite)
    writer.start()
    try:
        for _ in range(300):
            try:
                assert len(runfolder.read_results(tmp_path)) in (3, 40)
            except runfolder.RunFolderError as error:
                errors.append(str(error))
    finally:
        stop.set()
        writer.join()
    assert errors == []
