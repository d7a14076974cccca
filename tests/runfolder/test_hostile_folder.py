"""A run folder read as untrusted input: each damage of issue 21's table ends in one clear error, in bounded time
and memory, and nothing outside the folder is read in, changed or deleted.

Every test damages a copy of one small folder written by the real writers (ResultsTables, write_run_json,
save_checkpoint), next to an `outside` folder of sentinel files (a CSV, a lock victim, a checkpoint with other
weights) whose bytes and mtimes are compared before and after.
"""

from __future__ import annotations

import json
import os
import shutil
import signal
from contextlib import contextmanager
from pathlib import Path
from typing import Iterator

import pytest
import torch

import models
import runfolder
import space
from models import ArchSpec, CheckpointError, StageSpec
from reports._load import ReportError
from commands import call_main
from reports._report import build_report
from search import run as search_run
from search._resume import RunError
from search._reuse import copy_checkpoint, read_earlier_run

ROOT = Path(__file__).resolve().parents[2]
SMOKE = ROOT / "studies" / "smoke.yaml"
DEEP = 200_000  # the depth: far past Python's recursion limit
BOMB = "a: &a [x, x, x, x, x, x, x, x, x]\n" + "".join(
    f"{name}: &{name} [*{prev}, *{prev}, *{prev}, *{prev}, *{prev}, *{prev}, *{prev}, *{prev}, *{prev}]\n"
    for prev, name in zip("abcdefgh", "bcdefghi"))  # 9^9 values once expanded


def _spec(width: int) -> ArchSpec:
    return ArchSpec(stages=(StageSpec(1, width, 1),), stem="cifar", stem_width=8, num_classes=10)


def _make_run(run_dir: Path) -> Path:
    """Two complete trials with kept (untrained) weights, through the writers the runner uses."""
    study = space.load_study(SMOKE)
    tables = runfolder.ResultsTables(run_dir)
    for number, width in enumerate((8, 12)):
        spec = _spec(width)
        torch.manual_seed(number)
        models.save_checkpoint(run_dir / runfolder.checkpoint_cell(runfolder.trial_id(number)), models.build(spec))
        tables.add_trial(runfolder.trial_row(
            number=number, status="complete", seed=number, factors={"width": width}, spec=spec,
            train=space.TrainSettings(epochs=1, seed=number).to_dict(),
            metrics={"val_acc_best": 0.5 + number / 10, "test_acc": 0.5, "epochs_run": 1}),
            [{"epoch": 1, "val_acc": 0.5}])
    tables.set_checkpoints({trial: runfolder.checkpoint_cell(trial) for trial in tables.rows})
    tables.close()
    runfolder.write_run_json(run_dir, {"study": "smoke", "dataset": {"name": "synthetic"}})
    runfolder.atomic_write_text(run_dir / runfolder.STUDY_YAML, study.to_yaml())
    return run_dir


@pytest.fixture(scope="module")
def base(tmp_path_factory: pytest.TempPathFactory) -> Path:
    return _make_run(tmp_path_factory.mktemp("base") / "run")


@pytest.fixture
def outside(tmp_path: Path) -> Path:
    """Files outside the run folder that no reader may read in, change or delete."""
    folder = tmp_path / "outside"
    (folder / "tables").mkdir(parents=True)
    (folder / "tables" / "mine.csv").write_text("a,b\n1,2\n")
    (folder / "victim.txt").write_text("precious\n")
    model = models.build(_spec(8))
    with torch.no_grad():
        model.fc.weight.fill_(7.0)  # weights a test would notice if they were loaded
    models.save_checkpoint(folder / "weights", model)
    return folder


@pytest.fixture
def run(base: Path, tmp_path: Path) -> Path:
    return Path(shutil.copytree(base, tmp_path / "run", symlinks=True))


def _snapshot(folder: Path) -> dict[str, tuple[bytes, int]]:
    return {str(p.relative_to(folder)): (p.read_bytes(), p.stat().st_mtime_ns)
            for p in sorted(folder.rglob("*")) if p.is_file()}


@contextmanager
def untouched(folder: Path) -> Iterator[None]:
    """Assert that nothing under `folder` is changed or deleted, and that no file there is opened (atime aside)."""
    before = _snapshot(folder)
    yield
    assert _snapshot(folder) == before


@contextmanager
def within(seconds: int) -> Iterator[None]:
    """Fail instead of hanging (a FIFO read would block forever) or eating memory for minutes."""
    def expired(*_: object) -> None:
        raise TimeoutError(f"took more than {seconds} s")

    previous = signal.signal(signal.SIGALRM, expired)
    signal.alarm(seconds)
    try:
        yield
    finally:
        signal.alarm(0)
        signal.signal(signal.SIGALRM, previous)


def _one_line(error: BaseException) -> str:
    text = str(error)
    assert "\n" not in text and "Traceback" not in text, text
    return text


def _set_cell(run_dir: Path, trial: str, cell: str) -> None:
    """Set a trial's checkpoint cell through the writer: the log's checkpoints event and the tables."""
    tables = runfolder.ResultsTables.load(run_dir)
    tables.keep_checkpoint(trial, cell)
    tables.close()


# ------------------------------------------------------------------ checkpoint cells that leave the folder
def test_an_absolute_checkpoint_cell_is_refused_by_models_load(run: Path, outside: Path) -> None:
    _set_cell(run, "trial_0000", str(outside / "weights"))
    assert runfolder.read_trials(run)[0].checkpoint == str(outside / "weights")  # the cell is in the tables
    with untouched(outside), pytest.raises(CheckpointError) as refused:
        models.load(run, trial="trial_0000")
    message = _one_line(refused.value)
    assert "trial_0000" in message and "column checkpoint" in message and "absolute path" in message
    assert str(outside / "weights") in message


def test_a_checkpoint_cell_climbing_out_with_dotdot_is_refused(run: Path, outside: Path) -> None:
    _set_cell(run, "trial_0001", "checkpoints/../../outside/weights")
    with untouched(outside), pytest.raises(CheckpointError, match=r"trial_0001.*climbs out with '\.\.'"):
        models.load(run, trial="trial_0001")


def test_a_checkpoint_folder_linked_outside_is_refused(run: Path, outside: Path) -> None:
    shutil.rmtree(run / "checkpoints" / "trial_0000")
    (run / "checkpoints" / "trial_0000").symlink_to(outside / "weights", target_is_directory=True)
    with untouched(outside), pytest.raises(CheckpointError, match="leads outside the folder through a link"):
        models.load(run, trial="trial_0000")


def test_a_weights_file_linked_outside_is_not_loaded(run: Path, outside: Path) -> None:
    weights = run / "checkpoints" / "trial_0000" / "model.safetensors"
    weights.unlink()
    weights.symlink_to(outside / "weights" / "model.safetensors")
    with untouched(outside), pytest.raises(CheckpointError, match="leading outside the checkpoint folder"):
        models.load(run, trial="trial_0000")


def test_reuse_refuses_an_earlier_run_whose_cell_leaves_it_before_anything_is_written(
        run: Path, outside: Path, tmp_path: Path) -> None:
    _set_cell(run, "trial_0000", str(outside / "weights"))
    new_run = tmp_path / "new"
    with untouched(outside), pytest.raises(RunError) as refused:
        read_earlier_run(run, f"--reuse {run}", new_run)
    message = _one_line(refused.value)
    assert message.startswith(f"--reuse {run}: ") and "trial_0000" in message and "column checkpoint" in message
    assert not new_run.exists()


def test_reuse_never_links_a_file_from_outside_its_source(run: Path, outside: Path, tmp_path: Path) -> None:
    meta = run / "checkpoints" / "trial_0000" / "meta.json"
    meta.unlink()
    meta.symlink_to(outside / "victim.txt")
    destination = tmp_path / "new" / "checkpoints" / "trial_0000"
    with untouched(outside):
        with pytest.raises(RunError, match="meta.json: the checkpoint of trial_0000: a link leading outside"):
            read_earlier_run(run, f"--reuse {run}", tmp_path / "new")
        with pytest.raises(runfolder.RunFolderError, match="a link leading outside"):
            copy_checkpoint(run / "checkpoints" / "trial_0000", destination)
    assert not destination.parent.exists()
    assert (outside / "victim.txt").stat().st_nlink == 1  # never hard-linked into the new run


def test_a_well_formed_checkpoint_is_still_reused(run: Path, tmp_path: Path) -> None:
    earlier = read_earlier_run(run, f"--reuse {run}", tmp_path / "new")
    source = earlier.trial(earlier.rows[0]).checkpoint
    copy_checkpoint(source, tmp_path / "new" / "checkpoints" / "trial_0000")
    assert sorted(p.name for p in (tmp_path / "new" / "checkpoints" / "trial_0000").iterdir()) == \
        sorted(p.name for p in source.iterdir())


# ------------------------------------------------------------------ devices, FIFOs, deep JSON
@pytest.mark.parametrize("kind", ["/dev/zero", "fifo"])
def test_meta_json_that_is_a_device_or_fifo_is_refused(run: Path, kind: str) -> None:
    meta = run / "checkpoints" / "trial_0000" / "meta.json"
    meta.unlink()
    if kind == "fifo":
        os.mkfifo(meta)
    else:
        meta.symlink_to(kind)
    with within(10), pytest.raises(CheckpointError) as refused:
        models.load(run, trial="trial_0000")
    expected = "a FIFO, not a plain file" if kind == "fifo" else "a link leading outside the checkpoint folder"
    assert f"{meta}: {expected}" in _one_line(refused.value)


def test_a_deep_trial_log_line_is_one_error_from_the_report(run: Path) -> None:
    with (run / runfolder.TRIALS_LOG).open("a") as log:
        lines = sum(1 for _ in (run / runfolder.TRIALS_LOG).open())
        log.write('{"event":"trial","row":' + "[" * DEEP + "]" * DEEP + "}\n")
    with pytest.raises(ReportError) as refused:
        build_report(run)
    assert f"{runfolder.TRIALS_LOG}:{lines + 1}: not a trial-log line (JSON nested too deep" in _one_line(refused.value)
    assert not (run / runfolder.REPORT_HTML).exists()


def test_a_nested_value_in_a_trial_log_row_is_refused(run: Path) -> None:
    with (run / runfolder.TRIALS_LOG).open("a") as log:
        log.write(json.dumps({"event": "trial", "row": {"trial_id": "trial_0009", "val_acc_best": [1, 2]}}) + "\n")
    with pytest.raises(runfolder.RunFolderError, match="val_acc_best: a list, not a plain value"):
        runfolder.read_results(run)


def test_a_deep_run_json_is_one_error_from_the_report(run: Path) -> None:
    (run / runfolder.RUN_JSON).write_text('{"study": ' + "[" * DEEP + "]" * DEEP + "}")
    with pytest.raises(ReportError, match="run.json: JSON nested more than"):
        build_report(run)
    # Under Python's limit but past the cap: refused by the cap, not by luck.
    (run / runfolder.RUN_JSON).write_text('{"study": ' + "[" * 100 + "]" * 100 + "}")
    with pytest.raises(runfolder.RunFolderError, match="JSON nested more than"):
        runfolder.read_run_json(run)


def test_a_deep_meta_json_is_one_error_from_models_load(run: Path) -> None:
    (run / "checkpoints" / "trial_0000" / "meta.json").write_text('{"m": ' + "[" * DEEP + "]" * DEEP + "}")
    with pytest.raises(CheckpointError, match="meta.json: JSON nested more than"):
        models.load(run, trial="trial_0000")


# ------------------------------------------------------------------ links the writers must not follow
def test_report_tables_linked_to_another_folder_is_refused_and_that_folder_kept(run: Path, outside: Path,
                                                                                capsys: pytest.CaptureFixture) -> None:
    from reports.build import main

    (run / runfolder.REPORT_TABLES).symlink_to(outside / "tables", target_is_directory=True)
    with untouched(outside):
        assert main([str(run)]) == 2
    err = capsys.readouterr().err
    assert err.count("\n") == 1 and "report_tables: a link" in err and "never deleted or written through" in err
    assert not (run / runfolder.REPORT_HTML).exists()


def test_a_csv_left_as_a_link_in_report_tables_is_replaced_not_written_through(run: Path, outside: Path) -> None:
    (run / runfolder.REPORT_TABLES).mkdir()
    (run / runfolder.REPORT_TABLES / "top_k.csv").symlink_to(outside / "victim.txt")
    with untouched(outside):
        build_report(run)
    assert not (run / runfolder.REPORT_TABLES / "top_k.csv").is_symlink()


def test_resume_with_run_lock_linked_outside_is_one_line_and_the_file_kept(run: Path, outside: Path,
                                                                          capsys: pytest.CaptureFixture[str]) -> None:
    (run / runfolder.LOCK).symlink_to(outside / "victim.txt")
    # search.run's main in this process (tests/commands.py: bad input is tested in-process; `python -m
    # search.run` itself is tested by the real runs).
    with untouched(outside):
        line = call_main(search_run.main, [str(SMOKE), "--out", str(run), "--resume"], capsys).bad_input_line()
    assert "run.lock: a link, refused" in line, line
    assert (run / runfolder.LOCK).is_symlink()


@pytest.mark.parametrize("target", ["/dev/null", "fifo"])
def test_run_lock_that_is_a_device_or_fifo_is_refused(run: Path, target: str) -> None:
    lock = run / runfolder.LOCK
    if target == "fifo":
        os.mkfifo(lock)
    else:
        lock.symlink_to(target)
    with within(10), pytest.raises(runfolder.RunFolderError) as refused:
        runfolder.RunFolderLock(run).acquire()
    assert ("a link, refused" if target != "fifo" else "a FIFO, not a plain file") in _one_line(refused.value)
    assert runfolder.read_lock(run) is None


# ------------------------------------------------------------------ held before, kept held
def test_an_alias_bomb_in_study_yaml_is_refused(run: Path) -> None:
    (run / runfolder.STUDY_YAML).write_text(BOMB)
    with within(10), pytest.raises(runfolder.RunFolderError, match="too costly to read"):
        runfolder.read_study_yaml(run)


def test_an_alias_bomb_in_arch_yaml_is_refused(run: Path) -> None:
    (run / "checkpoints" / "trial_0000" / "arch.yaml").write_text(BOMB)
    with within(10), pytest.raises(CheckpointError, match="arch.yaml: not a valid spec file .*too costly"):
        models.load(run, trial="trial_0000")


@pytest.mark.parametrize("value", [float("inf"), "fast", [1, 2]], ids=["inf", "text", "list"])
def test_odd_values_in_table_cells_end_in_a_report_or_one_error(run: Path, value: object) -> None:
    import pandas as pd

    (run / runfolder.TRIALS_LOG).unlink()  # the tables alone: the values below are in them
    frame = pd.read_parquet(run / runfolder.RESULTS_PARQUET)
    frame["val_acc_best"] = pd.Series([value, 0.5], dtype=object)
    (run / runfolder.RESULTS_CSV).unlink()
    try:
        frame.to_parquet(run / runfolder.RESULTS_PARQUET)
    except Exception:  # pyarrow cannot store mixed types: the CSV holds them as text
        (run / runfolder.RESULTS_PARQUET).unlink()
        frame.to_csv(run / runfolder.RESULTS_CSV, index=False)
    for attempt in (lambda: build_report(run), lambda: models.load(run, rank=0)):
        try:
            attempt()
        except (ReportError, CheckpointError) as error:
            _one_line(error)


def test_the_well_formed_folder_still_loads_and_reports(run: Path) -> None:
    assert models.load(run, trial="trial_0001").spec == _spec(12)
    assert build_report(run).is_file()
    assert sorted(p.name for p in (run / runfolder.REPORT_TABLES).iterdir())
