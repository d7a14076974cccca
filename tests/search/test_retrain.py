"""python -m search.retrain: the top architectures trained again from scratch, recorded beside the study.

The fast tests build the run folder without Ray (search.train.fit and the
results tables directly); one slow test retrains a copy of the session's
real smoke run (tests/conftest.py).
"""

from __future__ import annotations

import json
from pathlib import Path

import pandas as pd
import pytest
import torch

import models
from models import ArchSpec, StageSpec
from commands import CliResult, call_main, run_module
from search import retrain as retrain_module
from space import TrainSettings

STUDY = """\
name: tiny_retrain
question: Does retraining the best architectures keep their order?
data: {dataset: synthetic, synthetic_train: 128, synthetic_test: 64}
space:
  stem: cifar
  stem_width: 8
  shortcut: {choice: [A, B]}
  stages: [{depth: 1, width: 8, stride: 1}, {depth: 1, width: 16, stride: 2}]
train: {epochs: 1, batch_size: 32, lr: 0.05, schedule: step, milestones: [0.5, 0.75]}
search: {strategy: grid, seeds: [0]}
"""
WIDTHS = (8, 12, 16)
# One torch thread: on 2 shared cores, nets this small train 5x faster than on two.
ONE_THREAD = "train.max_threads=1"


def _spec(width: int) -> ArchSpec:
    return ArchSpec(stages=(StageSpec(1, width, 1), StageSpec(1, 2 * width, 2)), stem="cifar",
                    stem_width=8, shortcut="B", num_classes=10)


def make_run(run_dir: Path) -> Path:
    """A finished three-trial study on synthetic data, written as the runner writes it (weights of two kept)."""
    import space
    from runfolder import ResultsTables, trial_row
    from search.train import fit

    run_dir.mkdir(parents=True)
    (run_dir / "study.yaml").write_text(STUDY)
    study = space.load_study(run_dir / "study.yaml")
    tables = ResultsTables(run_dir)
    for number, width in enumerate(WIDTHS):
        train = TrainSettings(epochs=1, batch_size=32, lr=0.05, seed=0, max_threads=1)
        trial = f"trial_{number:04d}"
        metrics = fit(_spec(width), train, study.data_settings(), device="cpu",
                      save_to=run_dir / "checkpoints" / trial)
        tables.add_trial(trial_row(number=number, status="complete", seed=0, factors={"width": width},
                                   spec=_spec(width), train=train.to_dict(), metrics=metrics))
    best_two = sorted(tables.rows.values(), key=lambda r: (-r["val_acc_best"], r["trial_id"]))[:2]
    tables.set_checkpoints({r["trial_id"]: f"checkpoints/{r['trial_id']}" for r in best_two})
    tables.close()  # materialise the tables, as the runner does when a run ends
    return run_dir


@pytest.fixture(autouse=True)
def _restore_torch_threads() -> object:
    # fit() applies train.max_threads to the whole process; later tests get theirs back.
    threads = torch.get_num_threads()
    yield
    torch.set_num_threads(threads)


@pytest.fixture(scope="module")
def run_dir(tmp_path_factory: pytest.TempPathFactory) -> Path:
    return make_run(tmp_path_factory.mktemp("retrain") / "tiny")


@pytest.fixture
def run_copy(run_dir: Path, tmp_path: Path) -> Path:
    import shutil

    return Path(shutil.copytree(run_dir, tmp_path / "copy"))


def _top(run_dir: Path, k: int) -> list[str]:
    results = pd.read_parquet(run_dir / "results.parquet")
    ordered = results.sort_values(["val_acc_best", "trial_id"], ascending=[False, True])
    return list(ordered["trial_id"][:k])


def test_train_settings_round_trip_through_the_results_table(run_dir: Path) -> None:
    for reader in (pd.read_parquet, pd.read_csv):
        table = reader(run_dir / f"results.{'parquet' if reader is pd.read_parquet else 'csv'}")
        row = table.to_dict("records")[0]
        assert retrain_module.train_settings_from_row(row) == TrainSettings(
            epochs=1, batch_size=32, lr=0.05, seed=0, max_threads=1)


def test_train_settings_come_whole_from_train_json() -> None:
    settings = TrainSettings(epochs=3, milestones=(0.3, 0.6), nesterov=True, lr=0.2)
    row = {"trial_id": "trial_0000", "train_json": json.dumps(settings.to_dict()),
           "train.epochs": 99}  # the flattened cells are for people; train_json is the record
    assert retrain_module.train_settings_from_row(row) == settings
    with pytest.raises(retrain_module.RetrainError, match="settings of trial_0000 cannot be read.*epochs"):
        retrain_module.train_settings_from_row({**row, "train_json": json.dumps({**settings.to_dict(), "epochs": "three"})})


def test_train_settings_of_run_folders_older_than_train_json() -> None:
    # Typed parquet cells as an older runner wrote them: tuples as text, a nullable int as NaN.
    row = {"trial_id": "trial_0000", "train.epochs": 3, "train.milestones": "[0.3, 0.6]",
           "train.nesterov": True, "train.max_threads": float("nan"), "train.lr": 0.2}
    assert retrain_module.train_settings_from_row(row) == TrainSettings(
        epochs=3, milestones=(0.3, 0.6), nesterov=True, max_threads=None, lr=0.2)


def test_retrain_top_2_with_2_seeds(run_copy: Path) -> None:
    # `python -m search.retrain` as a user runs it; the other tests call main() here.
    result = run_module("search.retrain", str(run_copy), "--top", "2", "--seeds", "2", "--set", "train.epochs=2", "--set", ONE_THREAD,
                  "--device", "cpu", "--no-report")
    assert result.returncode == 0, result.stdout + result.stderr
    retrained = pd.read_parquet(run_copy / "retrain.parquet")
    assert len(retrained) == 4 and (retrained["status"] == "complete").all()
    top = _top(run_copy, 2)
    assert sorted(set(retrained["source_trial_id"])) == sorted(top)
    assert sorted(retrained["seed"]) == [0, 0, 1, 1]
    assert (retrained["epochs"] == 2).all() and (retrained["train.epochs"] == 2).all()
    assert retrained["test_acc"].between(0, 1).all()
    for column in ("arch_key", "label", "wall_s", "params", "macs", "checkpoint"):
        assert column in retrained.columns
    assert pd.read_csv(run_copy / "retrain.csv")["test_acc"].tolist() == pytest.approx(retrained["test_acc"].tolist())
    # The printed summary: one line per architecture, mean ± std over n=2.
    for trial in top:
        line = next(line for line in result.stdout.splitlines() if f" {trial} " in line and " ± " in line)
        assert line.split()[4] == "2"  # n seeds
    # Retrained weights load like any checkpoint and reproduce their recorded accuracy.
    first = retrained.iloc[0]
    model = models.load(run_copy / first["checkpoint"])
    assert model.spec.key() == first["arch_key"]
    assert retrain_module.measure_test_acc(model) == first["test_acc"]
    # Trained on train+val: the retrain saw more images than a search trial.
    assert model.checkpoint_meta["metrics"]["epochs_run"] == 2


def test_retrain_appends_and_skips_runs_already_recorded(run_copy: Path) -> None:
    lines: list[str] = []
    first, new = retrain_module.retrain(run_copy, top=1, seeds=1, overrides=[ONE_THREAD], device="cpu",
                                        keep_weights=False, log=lines.append)
    assert len(first) == len(new) == 1
    again, new = retrain_module.retrain(run_copy, top=1, seeds=2, overrides=[ONE_THREAD], device="cpu",
                                        keep_weights=False, log=lines.append)
    assert len(again) == 2 and len(new) == 1 and list(new["seed"]) == [1]
    assert "1 already in retrain.parquet" in lines[-2]
    assert not (run_copy / "retrained").exists()
    # Another epoch count is another run, not a repeat.
    more, new = retrain_module.retrain(run_copy, top=1, seeds=1, overrides=["train.epochs=2", ONE_THREAD],
                                       device="cpu", keep_weights=False, log=lines.append)
    assert len(more) == 3 and len(new) == 1


def test_same_architecture_twice_is_retrained_once(run_copy: Path) -> None:
    results = pd.read_parquet(run_copy / "results.parquet")
    duplicate = results.iloc[[0]].assign(trial_id="trial_0099", number=99, val_acc_best=1.0)
    pd.concat([results, duplicate]).to_parquet(run_copy / "results.parquet", index=False)
    chosen = retrain_module.top_trials(pd.read_parquet(run_copy / "results.parquet"), top=2)
    assert chosen[0]["trial_id"] == "trial_0099"
    assert chosen[1]["arch_key"] != chosen[0]["arch_key"]


def test_report_shows_the_retrained_section(run_copy: Path, capsys: pytest.CaptureFixture[str]) -> None:
    pytest.importorskip("reports")
    # The report reads run.json; the runner writes it, this hand-made run needs one.
    (run_copy / "run.json").write_text(json.dumps({"study": "tiny_retrain", "objectives": [["val_acc", "max"]]}))
    result = _main(str(run_copy), "--top", "1", "--seeds", "2", "--set", ONE_THREAD, "--device", "cpu", "--no-weights",
                   capsys=capsys)
    assert result.returncode == 0, result.stdout + result.stderr
    assert "report: " in result.stdout, result.stdout
    page = (run_copy / "report.html").read_text()
    assert "Retrained" in page and pd.read_parquet(run_copy / "retrain.parquet")["arch_key"][0] in page


def _main(*args: str, capsys: pytest.CaptureFixture[str]) -> CliResult:
    """`python -m search.retrain ARGS` in this process (no interpreter start-up)."""
    return call_main(retrain_module.main, list(args), capsys)


@pytest.mark.parametrize("args, expected", [
    (["--top", "0", "--seeds", "1"], "--top: got 0; allowed: an integer >= 1"),
    (["--top", "1", "--seeds", "0"], "--seeds: got 0; allowed: an integer >= 1"),
    (["--top", "1", "--seeds", "1", "--set", "space.stem_width=16"], "allowed: train.* and data.* fields"),
    (["--top", "1", "--seeds", "1", "--set", "train.epochs=0"], "train.epochs"),
    (["--top", "1", "--seeds", "1", "--set", "train.lr={choice: [0.01, 0.1]}"], "still searched"),
    (["--top", "x", "--seeds", "1"], "argument --top: invalid int value"),
])
def test_bad_flags_are_one_line_and_status_2(run_dir: Path, args: list[str], expected: str,
                                             capsys: pytest.CaptureFixture[str]) -> None:
    assert expected in _main(str(run_dir), *args, capsys=capsys).bad_input_line()
    assert not (run_dir / "retrain.parquet").exists()


def test_bad_run_folders_are_status_2(tmp_path: Path, capsys: pytest.CaptureFixture[str]) -> None:
    no_results = tmp_path / "no_results"
    no_results.mkdir()
    (no_results / "study.yaml").write_text(STUDY)
    (tmp_path / "empty").mkdir()
    for folder, expected in ((tmp_path / "nowhere", "no such run folder"), (tmp_path / "empty", "no study.yaml"),
                             (no_results, "no results.parquet or results.csv")):
        line = _main(str(folder), "--top", "1", "--seeds", "1", capsys=capsys).bad_input_line()
        assert expected in line
        if folder.name == "nowhere":
            assert line == f"error: {folder}: no such run folder"


@pytest.mark.slow
def test_real_runner_round_trip_load_rank_0_and_retrain(smoke_copy: Path, capsys: pytest.CaptureFixture[str]) -> None:
    """The smoke study through Ray (a copy of the session's run): load rank 0, re-evaluate it, retrain it."""
    results = pd.read_parquet(smoke_copy / "results.parquet")
    best = results.sort_values(["val_acc_best", "trial_id"], ascending=[False, True]).iloc[0]
    assert best["checkpoint"], "the runner keeps the weights of the best trials"
    model = models.load(smoke_copy, rank=0)
    assert model.checkpoint_meta["trial"]["trial_id"] == best["trial_id"]
    # The trial ran on one thread (cpus: 1); evaluate the same way (the autouse fixture restores the count).
    torch.set_num_threads(1)
    assert retrain_module.measure_test_acc(model) == best["test_acc"]
    retrained = _main(str(smoke_copy), "--top", "1", "--seeds", "2", "--set", ONE_THREAD, "--device", "cpu",
                      "--no-report", capsys=capsys)
    assert retrained.returncode == 0, retrained.stdout + retrained.stderr
    table = pd.read_parquet(smoke_copy / "retrain.parquet")
    assert list(table["source_trial_id"]) == [best["trial_id"]] * 2
