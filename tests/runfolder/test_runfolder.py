"""The run-folder format: rows, ranking, atomic tables and readers, checked without Ray."""

from __future__ import annotations

import json
import math
import subprocess
import sys
from pathlib import Path

import pandas as pd
import pytest

import runfolder
from spec_stand_in import SpecStandIn

ROOT = Path(__file__).resolve().parents[2]


def _row(number: int, status: str = "complete", val: float = 0.5, **metrics) -> dict:
    train = {"epochs": 3, "lr": 0.1, "milestones": [0.5, 0.75], "seed": number, "max_threads": None}
    return runfolder.trial_row(number=number, status=status, seed=number, factors={"shortcut": "A"},
                               spec=SpecStandIn(), train=train, metrics={"val_acc_best": val, **metrics})


def test_trial_row_keeps_the_settings_whole_and_flattened():
    row = _row(3)
    assert row["trial_id"] == "trial_0003" == runfolder.trial_id(3)
    assert row["factor.shortcut"] == "A" and row["arch.block"] == "basic" and row["arch_key"] == "0123456789abcdef"
    assert row["train.milestones"] == "[0.5, 0.75]"
    assert runfolder.train_settings_of(row) == {"epochs": 3, "lr": 0.1, "milestones": [0.5, 0.75], "seed": 3,
                                                "max_threads": None}
    assert math.isnan(row["test_acc"]) and row["params"] is None
    with pytest.raises(ValueError, match="status: got 'done'"):
        runfolder.trial_row(number=0, status="done", seed=0, factors={}, spec=None, train=None, metrics={})


def test_rows_without_train_json_say_so():
    assert runfolder.train_settings_of({"trial_id": "trial_0000"}) is None
    assert runfolder.train_settings_of({runfolder.TRAIN_JSON: float("nan")}) is None


def test_one_ranking_rule_for_dicts_frames_and_the_writer(tmp_path):
    rows = [_row(0, val=0.7), _row(1, val=0.9), _row(2, "failed", val=0.99), _row(3, val=float("nan")),
            _row(4, val=0.9), _row(5, "pruned", val=0.95)]
    expected = ["trial_0001", "trial_0004", "trial_0000"]  # ties by trial id; failed, pruned and NaN unranked
    assert [r["trial_id"] for r in runfolder.ranked_rows(rows)] == expected
    frame = runfolder.ranked_frame(pd.DataFrame(rows))
    assert frame["trial_id"].tolist() == expected and frame["rank"].tolist() == [0, 1, 2]
    tables = runfolder.ResultsTables(tmp_path)
    for row in reversed(rows):
        tables.add_trial(row, flush=False)
    assert [r["trial_id"] for r in tables.ranked()] == expected
    assert tables.best["trial_id"] == "trial_0001"
    tables.forget("trial_0001")
    assert tables.best["trial_id"] == "trial_0004"


def test_tables_round_trip_through_parquet_and_csv(tmp_path):
    tables = runfolder.ResultsTables(tmp_path)
    tables.add_trial(_row(0), [{"epoch": 1, "val_acc": 0.3, "train_loss": 2.0}, {"epoch": 2, "val_acc": 0.5}])
    tables.add_trial(_row(1, "failed"))
    folder = runfolder.RunFolder(tmp_path)
    for path in (folder.results, folder.results_csv, folder.curves, folder.curves_csv):
        assert path.is_file(), path
    assert not list(tmp_path.glob(".*.tmp"))  # every write renamed its temporary file
    again = runfolder.ResultsTables.load(tmp_path)
    assert set(again.rows) == {"trial_0000", "trial_0001"}
    assert [p["epoch"] for p in again.curves["trial_0000"]] == [1, 2]
    assert runfolder.read_results(tmp_path)["status"].tolist() == ["complete", "failed"]
    records = runfolder.read_trials(tmp_path)  # the standard-library reader reads results.csv
    assert [(r.trial_id, r.status) for r in records] == [("trial_0000", "complete"), ("trial_0001", "failed")]
    folder.results_csv.unlink()  # ... and falls back to parquet
    assert [r.trial_id for r in runfolder.read_trials(tmp_path)] == ["trial_0000", "trial_0001"]


def test_readers_name_the_file_and_the_problem(tmp_path):
    with pytest.raises(runfolder.RunFolderError, match=r"results\.parquet: missing"):
        runfolder.read_results(tmp_path)
    folder = runfolder.RunFolder(tmp_path)
    folder.results.write_bytes(b"PAR1 truncated")
    with pytest.raises(runfolder.RunFolderError, match=r"results\.parquet: not a readable parquet file"):
        runfolder.read_results(tmp_path)
    pd.DataFrame({"trial_id": ["trial_0000"]}).to_parquet(folder.results)
    with pytest.raises(runfolder.RunFolderError, match="missing column.*status"):
        runfolder.read_results(tmp_path)
    pd.DataFrame({"trial_id": ["trial_0000"], "status": ["done"]}).to_parquet(folder.results)
    with pytest.raises(runfolder.RunFolderError, match="field status: got 'done'"):
        runfolder.read_results(tmp_path)
    folder.run_json.write_text("[1, 2]")
    with pytest.raises(runfolder.RunFolderError, match="expected a JSON object"):
        runfolder.read_run_json(tmp_path)
    folder.run_json.write_text("{")
    with pytest.raises(runfolder.RunFolderError, match="not readable JSON"):
        runfolder.read_run_json(tmp_path)
    runfolder.write_run_json(tmp_path, {"study": "x"})
    written = json.loads(folder.run_json.read_text())  # through RunInfo: every field, the current format
    assert written == runfolder.RunInfo(study="x", device_hours_unit=runfolder.TRIAL_HOURS).to_dict()


def test_importing_the_format_needs_neither_torch_nor_pandas():
    code = "import sys, runfolder; print('torch' in sys.modules, 'pandas' in sys.modules)"
    out = subprocess.run([sys.executable, "-c", code], cwd=ROOT, capture_output=True, text=True, check=True)
    assert out.stdout.split() == ["False", "False"]


def test_file_names_are_spelled_only_in_the_format_module():
    names = [runfolder.RESULTS_PARQUET, runfolder.RESULTS_CSV, runfolder.CURVES_PARQUET, runfolder.RUN_JSON,
             runfolder.STUDY_YAML, runfolder.STUDY_DB, runfolder.RETRAIN_PARQUET, runfolder.REPORT_HTML,
             runfolder.REPORT_TABLES]
    offenders = []
    for package in ("models", "space", "search", "reports", "runfolder"):
        for path in (ROOT / package).rglob("*.py"):
            if path.name == "_layout.py" and path.parent.name == "runfolder":
                continue
            for number, line in enumerate(path.read_text().splitlines(), 1):
                code = line.split("#", 1)[0]
                if any(f'"{name}"' in code or f"'{name}'" in code for name in names):
                    offenders.append(f"{path.relative_to(ROOT)}:{number}: {line.strip()}")
    assert not offenders, "\n".join(offenders)


def test_trial_row_writes_the_match_columns_only_for_matched_trials():
    matched = {"by": "macs", "adjust": "width_multiplier", "value": 0.96, "target": 40551040.0, "gap": 0.0017}
    row = runfolder.trial_row(number=1, status="complete", seed=0, factors={"shortcut": "C"}, spec=SpecStandIn(),
                              train=None, metrics={}, matched=matched)
    assert {column: row[column] for column in row if column.startswith("match.")} == {
        "match.by": "macs", "match.adjust": "width_multiplier", "match.value": 0.96, "match.target": 40551040.0,
        "match.gap": 0.0017}
    assert not any(column.startswith("match.") for column in _row(2))


def test_the_log_is_the_record_and_the_tables_follow(tmp_path):
    tables = runfolder.ResultsTables(tmp_path, materialize_every_s=3600)
    folder = runfolder.RunFolder(tmp_path)
    tables.add_trial(_row(0, val=0.6), [{"epoch": 1, "val_acc": 0.6}])
    assert folder.results.is_file()  # the first trial materialises at once
    tables.add_trial(_row(1, val=0.8), [{"epoch": 1, "val_acc": 0.8}])
    tables.set_checkpoints({"trial_0001": "checkpoints/trial_0001"})
    # Not materialised yet (an hour between rewrites), yet every reader sees trial 1 and its checkpoint.
    assert pd.read_parquet(folder.results)["trial_id"].tolist() == ["trial_0000"]
    assert runfolder.read_results(tmp_path)["trial_id"].tolist() == ["trial_0000", "trial_0001"]
    assert runfolder.read_curves(tmp_path)["trial_id"].tolist() == ["trial_0000", "trial_0001"]
    records = {r.trial_id: r for r in runfolder.read_trials(tmp_path)}
    assert records["trial_0001"].checkpoint == "checkpoints/trial_0001"
    tables.close()
    assert pd.read_parquet(folder.results)["checkpoint"].tolist() == ["", "checkpoints/trial_0001"]


def test_a_torn_last_line_loses_only_that_trial(tmp_path):
    tables = runfolder.ResultsTables(tmp_path)
    tables.add_trial(_row(0), [{"epoch": 1, "val_acc": 0.5}])
    tables.add_trial(_row(1))
    log = runfolder.RunFolder(tmp_path).trials_log
    log.write_bytes(log.read_bytes()[:-10])  # a driver killed in the middle of writing trial 1
    again = runfolder.ResultsTables.load(tmp_path)
    assert set(again.rows) == {"trial_0000"} and len(again.curves["trial_0000"]) == 1
    again.add_trial(_row(2))  # the torn line was cut, so the next line starts clean
    assert set(runfolder.ResultsTables.load(tmp_path).rows) == {"trial_0000", "trial_0002"}
    log.write_bytes(b'{"event": "trial"}\n' + log.read_bytes())
    with pytest.raises(runfolder.RunFolderError, match=r"trials\.jsonl:1: not a trial-log line"):
        runfolder.read_results(tmp_path)


def test_folders_from_before_the_log_still_load_and_continue(tmp_path):
    tables = runfolder.ResultsTables(tmp_path)
    tables.add_trial(_row(0), [{"epoch": 1, "val_acc": 0.5}])
    runfolder.RunFolder(tmp_path).trials_log.unlink()  # as an older runner left it: tables only
    again = runfolder.ResultsTables.load(tmp_path)
    assert set(again.rows) == {"trial_0000"} and again.curves["trial_0000"][0]["epoch"] == 1
    again.add_trial(_row(1))
    assert set(runfolder.ResultsTables.load(tmp_path).rows) == {"trial_0000", "trial_0001"}


def test_forget_and_rerank(tmp_path):
    tables = runfolder.ResultsTables(tmp_path)
    for number, value in enumerate([0.5, 0.9, 0.7]):
        tables.add_trial(_row(number, val=value), flush=False)
    tables.add_trial(_row(2, val=0.95), flush=False)  # a trial recorded again replaces its row and rank
    assert [r["trial_id"] for r in tables.ranked()] == ["trial_0002", "trial_0001", "trial_0000"]
    tables.forget("trial_0002")
    assert [r["trial_id"] for r in tables.top(1)] == ["trial_0001"]
    assert set(runfolder.ResultsTables.load(tmp_path).rows) == {"trial_0000", "trial_0001"}


def test_a_first_failed_trial_keeps_its_metric_columns_float(tmp_path):
    # The table materialised after a failed first trial must read back with the dtypes of the final one.
    tables = runfolder.ResultsTables(tmp_path)
    tables.add_trial(_row(0, "failed", val=float("nan")))
    first = pd.read_parquet(runfolder.RunFolder(tmp_path).results)
    assert str(first["test_acc"].dtype) == "float64" and str(first["wall_s"].dtype) == "float64"
