"""run.json (`RunInfo`) and study.yaml (`StudyRecord`): one typed reader each, versioned, filling old folders."""

from __future__ import annotations

import json
import types
import warnings
from pathlib import Path

import pytest

import runfolder

ROOT = Path(__file__).resolve().parents[2]
SMOKE = ROOT / "studies" / "smoke.yaml"

# run.json as the runner wrote it before format_version existed (search/_runner.py `_run_document` and
# `_close_document` of that time): every key but format_version, and no `reuse` (written only with --reuse).
TODAYS_RUN_JSON = {
    "study": "smoke", "question": "Does B beat A?", "strategy": "grid", "objectives": [["val_acc", "max"]],
    "factors": {"shortcut": {"levels": ["A", "B"], "reference": "A"}}, "match_complexity": None,
    "dataset": {"name": "cifar10", "root": None, "embedded_sample": True, "fallback_reason": None,
                "n_train": 1350, "n_val": 150, "n_test": 500, "sha256": "ab12"},
    "budget": {"epochs": 2, "trials": 4, "seeds": [0, 1], "resources_per_trial": {"cpus": 1, "gpus": 0}},
    "hardware": {"cpu": "x86", "cpus": 2, "gpus": [], "hostname": "h", "platform": "Linux"},
    "versions": {"python": "3.11.7", "torch": "2.5.0"}, "storage": "sqlite:////runs/smoke/study.db",
    "started": "2026-01-01T00:00:00+00:00", "finished": "2026-01-01T00:01:00+00:00", "wall_s": 60.0,
    "device_hours": 0.01, "device_hours_unit": "CPU-core-hours", "attempts": 1,
    "trial_counts": {"complete": 4, "failed": 0, "pruned": 0}, "reused_trials": 0,
}


def _write(folder: Path, document: dict) -> Path:
    folder.mkdir(parents=True, exist_ok=True)
    (folder / runfolder.RUN_JSON).write_text(json.dumps(document))
    return folder


def _notes(record: list[warnings.WarningMessage]) -> list[str]:
    return [str(w.message) for w in record if issubclass(w.category, runfolder.RunFolderNote)]


# ------------------------------------------------------------------ RunInfo
def test_a_folder_without_format_version_reads_as_format_1_and_says_so_once(tmp_path: Path) -> None:
    folder = _write(tmp_path / "old", TODAYS_RUN_JSON)
    with warnings.catch_warnings(record=True) as record:
        warnings.simplefilter("always")
        info = runfolder.read_run_info(folder)
        again = runfolder.read_run_info(folder)
    notes = _notes(record)
    assert len(notes) == 1, notes  # once per process and folder, however often it is read
    assert "has no format_version" in notes[0] and "read as format 1" in notes[0] and "reuse" in notes[0]
    assert str(folder / runfolder.RUN_JSON) in notes[0]
    assert info == again and info.format_version == 1 and set(info.filled) == {"format_version", "reuse"}
    # Nothing it held is lost or changed: the typed document gives back every key, plus the filled ones.
    assert {k: v for k, v in info.to_dict().items() if k in TODAYS_RUN_JSON} == TODAYS_RUN_JSON
    assert info.reuse == [] and info.trial_devices() == (1.0, runfolder.CPU_CORE_HOURS)


def test_what_an_old_folder_lacks_is_filled_with_the_documented_defaults(tmp_path: Path) -> None:
    folder = _write(tmp_path / "sparse", {"study": "s", "budget": {"epochs": 3}})
    with pytest.warns(runfolder.RunFolderNote, match="filled with defaults: question, strategy, objectives"):
        info = runfolder.read_run_info(folder)
    assert info.objectives == [["val_acc", "max"]] and info.factors == {} and info.attempts == 1
    assert info.finished is None and info.device_hours is None
    # No resources recorded: a trial counts as one device, and the unit says so.
    assert info.device_hours_unit == runfolder.TRIAL_HOURS and info.trial_devices() == (1.0, runfolder.TRIAL_HOURS)
    # A second folder is a second note: once per folder, not once per process.
    other = _write(tmp_path / "other", {"study": "s"})
    with pytest.warns(runfolder.RunFolderNote, match=str(other)):
        runfolder.read_run_info(other)


def test_a_newer_format_is_refused_in_one_line_naming_both_versions(tmp_path: Path) -> None:
    newer = runfolder.RUN_INFO_FORMAT + 1
    folder = _write(tmp_path, {**TODAYS_RUN_JSON, "format_version": newer})
    with pytest.raises(runfolder.RunFolderError) as error:
        runfolder.read_run_info(folder)
    message = str(error.value)
    assert "\n" not in message and str(folder / runfolder.RUN_JSON) in message
    assert f"format_version {newer}" in message and f"format_version {runfolder.RUN_INFO_FORMAT}" in message


@pytest.mark.parametrize("field,value,allowed", [
    ("format_version", "2", "a whole number >= 1"),
    ("format_version", True, "a whole number >= 1"),
    ("budget", [3], "a JSON object or null"),
    ("factors", ["shortcut"], "an object name -> {levels, reference}"),
    ("wall_s", "60", "a finite number or null"),
    ("trial_counts", {"complete": "4"}, "a JSON object of whole numbers"),
    ("reuse", "runs/a", "a JSON array of strings"),
])
def test_a_field_of_the_wrong_type_is_named_with_what_is_allowed(tmp_path: Path, field, value, allowed) -> None:
    folder = _write(tmp_path, {**TODAYS_RUN_JSON, "format_version": runfolder.RUN_INFO_FORMAT, field: value})
    with pytest.raises(runfolder.RunFolderError, match=f"run.json: field {field}: got .*; allowed: ") as error:
        runfolder.read_run_info(folder)
    assert str(error.value).endswith(allowed)


def test_the_runners_document_round_trips_through_the_type(tmp_path: Path) -> None:
    """A real `_run_document` (first attempt, then a resume) written by the one writer reads back equal."""
    import space
    from search._runner import RunOptions, _plan_source, _run_document

    study = space.load_study(SMOKE)
    splits = types.SimpleNamespace(source=dict(TODAYS_RUN_JSON["dataset"]))
    plans = _plan_source(study, RunOptions(run_dir=tmp_path))
    first = _run_document(study, splits, None, "sqlite:///study.db", 4, plans)
    assert isinstance(first, runfolder.RunInfo) and first.attempts == 1 and first.finished is None
    runfolder.write_run_info(tmp_path, first)
    written = json.loads((tmp_path / runfolder.RUN_JSON).read_text())
    assert written["format_version"] == runfolder.RUN_INFO_FORMAT
    assert set(written) == {f.name for f in runfolder.RunInfo.__dataclass_fields__.values()
                            if f.metadata.get("document", True)}
    with warnings.catch_warnings():
        warnings.simplefilter("error", runfolder.RunFolderNote)  # the current format fills nothing, so says nothing
        read = runfolder.read_run_info(tmp_path)
    assert read == first and read.filled == ()
    assert read.device_hours_unit == runfolder.device_hours_unit(study.search.resources.gpus)
    resumed = _run_document(study, splits, read, "sqlite:///study.db", 4, plans)
    assert resumed.attempts == 2 and resumed.started == first.started


def test_counts_are_named_by_status_and_reuse(tmp_path: Path) -> None:
    rows = [{"status": "complete", runfolder.REUSED_FROM: "/runs/a#trial_0001"}, {"status": "complete"},
            {"status": "pruned", runfolder.REUSED_FROM: ""}]
    counted = runfolder.RunInfo().counted(rows)
    assert counted.trial_counts == {"complete": 2, "failed": 0, "pruned": 1} and counted.reused_trials == 1


def test_keys_this_version_does_not_know_are_kept(tmp_path: Path) -> None:
    folder = _write(tmp_path, {**TODAYS_RUN_JSON, "format_version": 2, "reuse": [], "comment": "kept"})
    info = runfolder.read_run_info(folder)
    runfolder.write_run_info(tmp_path, info)
    assert json.loads((tmp_path / runfolder.RUN_JSON).read_text())["comment"] == "kept"


# ------------------------------------------------------------------ StudyRecord
def _study(tmp_path: Path, text: str) -> runfolder.StudyRecord:
    (tmp_path / runfolder.STUDY_YAML).write_text(text)
    return runfolder.read_study_record(tmp_path)


def test_study_record_reads_name_question_and_sections_read_only(tmp_path: Path) -> None:
    record = _study(tmp_path, "name: s\nquestion: Why?\nsearch: {storage: 'postgresql://db/x', scheduler: asha,"
                              " asha: {grace_period: 2}}\ndata: {dataset: cifar10}\n")
    assert (record.name, record.question, record.storage, record.scheduler) == ("s", "Why?", "postgresql://db/x",
                                                                                "asha")
    assert record.asha["grace_period"] == 2 and record.section("report") == {} and record.section("data")
    with pytest.raises(TypeError):
        record.section("search")["storage"] = "sqlite:///elsewhere.db"  # type: ignore[index]
    plain = record.as_dict()
    plain["search"]["storage"] = None
    assert record.storage == "postgresql://db/x"
    assert runfolder.read_study_record(tmp_path / "none") is None


def test_target_effect_has_one_default_that_the_schema_reads_too(tmp_path: Path) -> None:
    import space

    record = _study(tmp_path, "name: s\n")
    assert record.target_effect == runfolder.DEFAULT_TARGET_EFFECT and not record.sets_target_effect
    assert space.load_study(SMOKE).model.report.target_effect == runfolder.DEFAULT_TARGET_EFFECT
    assert _study(tmp_path, "report: {target_effect: 0.005}\n").target_effect == 0.005


@pytest.mark.parametrize("value", ["1.5", "0", "'half'", "true"])
def test_a_bad_target_effect_names_file_field_and_rule(tmp_path: Path, value: str) -> None:
    record = _study(tmp_path, f"report:\n  target_effect: {value}\n")
    with pytest.raises(runfolder.RunFolderError, match="report.target_effect: got .*; allowed: a fraction strictly "
                                                        "between 0 and 1") as error:
        _ = record.target_effect
    assert str(tmp_path / runfolder.STUDY_YAML) in str(error.value)


def test_the_runners_closing_document_adds_time_counts_and_finish() -> None:
    """`_close_document` (the run.json written when an attempt ends) goes through the type, counts named once."""
    import space
    from search._runner import _close_document

    study = space.load_study(SMOKE)
    rows = {"t0": {"status": "complete", "wall_s": 3600.0}, "t1": {"status": "failed", "wall_s": float("nan")}}
    recorder = types.SimpleNamespace(tables=types.SimpleNamespace(rows=rows), new_rows=lambda: list(rows.values()))
    opened = runfolder.RunInfo(wall_s=10.0, device_hours=1.0, attempts=1)
    closed = _close_document(opened, study, recorder, started=0.0, target=2, interrupted=False)
    per_trial = runfolder.devices_per_trial(study.search.resources.cpus, study.search.resources.gpus)
    assert closed.device_hours == pytest.approx(1.0 + per_trial) and closed.wall_s > 10.0
    assert closed.trial_counts == {"complete": 1, "failed": 1, "pruned": 0} and closed.finished is not None
    assert _close_document(opened, study, recorder, 0.0, target=3, interrupted=False).finished is None
