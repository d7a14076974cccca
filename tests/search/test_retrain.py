"""python -m search.retrain: the top architectures trained again from scratch, as a retrain job through the runner.

The fast tests plan jobs and write their tables without Ray, on a run folder
written through `runfolder` with made-up metrics (nothing trains). One slow
test retrains a copy of the session's real smoke run (tests/conftest.py),
kills the driver with SIGKILL once a retrain run is durable, and resumes.
"""

from __future__ import annotations

import json
import sys
from pathlib import Path

import pandas as pd
import pytest
import torch

import models
import runfolder
from commands import CliResult, call_main
from models import ArchSpec, StageSpec
from search import retrain as retrain_module
from search._plans import FixedPlans
from search._resume import RunError
from space import TrainSettings, TrialPlan

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
search: {strategy: grid, seeds: [0], scheduler: asha, asha: {grace_period: 1}}
"""
# (width, val_acc_best, test_acc) of each searched trial: width 16 ranks first, then 12, then 8.
TRIALS = ((8, 0.30, 0.31), (12, 0.50, 0.52), (16, 0.70, 0.69))
SEARCH_TRAIN = TrainSettings(epochs=1, batch_size=32, lr=0.05, seed=0, max_threads=1)


def _spec(width: int) -> ArchSpec:
    return ArchSpec(stages=(StageSpec(1, width, 1), StageSpec(1, 2 * width, 2)), stem="cifar",
                    stem_width=8, shortcut="B", num_classes=10)


def make_run(run_dir: Path) -> Path:
    """A finished three-trial study, its rows written through runfolder as the runner writes them (nothing trained)."""
    run_dir.mkdir(parents=True)
    (run_dir / "study.yaml").write_text(STUDY)
    tables = runfolder.ResultsTables(run_dir)
    for number, (width, val, test) in enumerate(TRIALS):
        tables.add_trial(runfolder.trial_row(
            number=number, status="complete", seed=0, factors={"width": width}, spec=_spec(width),
            train=SEARCH_TRAIN.to_dict(), metrics={"val_acc_best": val, "test_acc": test, "params": 1, "macs": 1}))
    tables.close()
    return run_dir


@pytest.fixture
def run_dir(tmp_path: Path) -> Path:
    return make_run(tmp_path / "tiny")


def _finish_job(job: retrain_module.RetrainJob, test_accs: list[float], finished: bool = True) -> None:
    """Write a job's folder as the runner would after training its runs (the first len(test_accs) of them)."""
    plans = [plan.to_dict() for _, plan in job.runs]
    job.folder.mkdir(parents=True)
    runfolder.write_plans(job.folder, plans)
    runfolder.write_run_json(job.folder, {"study": job.study.name, "finished": "now" if finished else None})
    tables = runfolder.ResultsTables(job.folder)
    for number, ((_, plan), test_acc) in enumerate(zip(job.runs, test_accs)):
        tables.add_trial(runfolder.trial_row(
            number=number, status="complete", seed=plan.train.seed, factors=plan.factors, spec=plan.spec,
            train=plan.train.to_dict(), metrics={"test_acc": test_acc, "epochs_run": plan.train.epochs},
            checkpoint=runfolder.checkpoint_cell(runfolder.trial_id(number))))
    tables.close()


# ------------------------------------------------------------ the trials
def test_train_settings_round_trip_through_the_results_table(run_dir: Path) -> None:
    for reader in (pd.read_parquet, pd.read_csv):
        table = reader(run_dir / f"results.{'parquet' if reader is pd.read_parquet else 'csv'}")
        row = table.to_dict("records")[0]
        assert retrain_module.train_settings_from_row(row) == SEARCH_TRAIN


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


def test_same_architecture_twice_is_retrained_once(run_dir: Path) -> None:
    results = pd.read_parquet(run_dir / "results.parquet")
    duplicate = results.iloc[[0]].assign(trial_id="trial_0099", number=99, val_acc_best=1.0)
    chosen = retrain_module.top_trials(pd.concat([results, duplicate]), top=2)
    assert chosen[0]["trial_id"] == "trial_0099"
    assert chosen[1]["arch_key"] != chosen[0]["arch_key"]


# ------------------------------------------------------------ the job's plans
def test_a_job_plans_top_k_times_seeds_from_the_trials_settings(run_dir: Path) -> None:
    job = retrain_module.plan_job(run_dir, top=2, seeds=3, overrides=["train.epochs=4"])
    assert [(plan.factors["source_trial"], plan.train.seed) for _, plan in job.runs] == [
        ("trial_0002", 0), ("trial_0002", 1), ("trial_0002", 2), ("trial_0001", 0), ("trial_0001", 1),
        ("trial_0001", 2)]  # best validation accuracy first, never test accuracy
    for _, plan in job.runs:
        assert plan.train == SEARCH_TRAIN.replace(epochs=4, seed=plan.train.seed)  # the trial's settings, --set on top
        assert plan.spec == _spec(plan.factors["width"])
        # Plain data that survives the trip to a worker and to plans.json.
        assert TrialPlan.from_dict(json.loads(json.dumps(plan.to_dict()))) == plan
    assert job.runs[0][1].label == "width=16"
    assert len({key for key, _ in job.runs}) == 6
    assert job.name.startswith("top2-seeds3-") and job.folder == run_dir / "retrain" / job.name
    # The job runs its whole budget in its own storage, keeping every run's weights.
    search = job.study.search
    assert (search.scheduler, search.asha, search.storage, search.keep_checkpoints) == ("none", None, None, -1)
    assert retrain_module.plan_job(run_dir, 2, 3, ["train.epochs=4"], keep_weights=False).study.search.keep_checkpoints == 0
    # The same flags find the same job; another budget is another job.
    assert retrain_module.plan_job(run_dir, 2, 3, ["train.epochs=4"]).name == job.name
    assert retrain_module.plan_job(run_dir, 2, 3, ["train.epochs=5"]).name != job.name
    assert not (run_dir / "retrain").exists()  # planning writes nothing


def test_fixed_plans_are_a_grid_over_their_positions(run_dir: Path) -> None:
    job = retrain_module.plan_job(run_dir, top=1, seeds=2, overrides=[])
    plans = tuple(plan.to_dict() for _, plan in job.runs)
    fixed = FixedPlans(plans, train_on_val=True)
    assert fixed.grid() == {"plan": [0, 1]}
    assert fixed.screen({"plan": 1}) == (plans[1], None)
    assert fixed.objectives == [("test_acc", "max")]
    fixed.check_resume(job.folder, resume=False)  # a fresh run has nothing to agree with
    with pytest.raises(RunError, match="no plans.json"):
        fixed.check_resume(run_dir, resume=True)
    runfolder.write_plans(run_dir, plans[:1])
    with pytest.raises(RunError, match=r"holds other trials than this run's \(1 stored, 2 given\)"):
        fixed.check_resume(run_dir, resume=True)
    runfolder.write_plans(run_dir, plans)
    fixed.check_resume(run_dir, resume=True)


def test_a_jobs_rows_become_retrain_parquet_beside_older_rows(run_dir: Path) -> None:
    legacy = runfolder.RetrainRow(arch_key="0123456789abcdef", source_trial_id="trial_0000", seed=0,
                                  status="complete", test_acc=0.4, run_key="{}", device="cpu")
    runfolder.write_retrain(run_dir, [legacy])  # a row retrained in-process, before retrain jobs
    job = retrain_module.plan_job(run_dir, top=2, seeds=2, overrides=[])
    _finish_job(job, [0.81, 0.82, 0.83], finished=False)
    for _ in range(2):  # recording a job again replaces its rows
        table = retrain_module.record_job(run_dir, job)
        assert len(table) == 4
    rows = table[table["job"] == job.name]
    assert list(rows["run_key"]) == [key for key, _ in job.runs[:3]]
    assert list(rows["checkpoint"]) == [f"retrain/{job.name}/checkpoints/trial_{n:04d}" for n in range(3)]
    first = rows.iloc[0]
    assert (first["source_trial_id"], first["label"], first["source_val_acc_best"], first["source_test_acc"]) == (
        "trial_0002", "width=16", 0.70, 0.69)
    assert (first["epochs"], first["test_acc"], first["status"]) == (1, 0.81, "complete")
    assert table.iloc[0]["device"] == "cpu"
    # The summary: mean ± std over the seeds of each architecture.
    summary = retrain_module.summary(table[table["job"] == job.name]).set_index("source_trial_id")
    assert summary.loc["trial_0002", "n"] == 2 and summary.loc["trial_0002", "mean"] == pytest.approx(0.815)
    assert summary.loc["trial_0001", "n"] == 1
    assert list(pd.read_csv(run_dir / "retrain.csv")["test_acc"]) == pytest.approx(list(table["test_acc"]))


def _main(*args: str, capsys: pytest.CaptureFixture[str]) -> CliResult:
    """`python -m search.retrain ARGS` in this process; Ray must not start."""
    result = call_main(retrain_module.main, list(args), capsys)
    ray = sys.modules.get("ray")
    assert ray is None or not ray.is_initialized(), "this must be answered before Ray starts"
    return result


def test_runs_already_recorded_are_not_trained_again(run_dir: Path, capsys: pytest.CaptureFixture[str]) -> None:
    job = retrain_module.plan_job(run_dir, top=2, seeds=1, overrides=[])
    _finish_job(job, [0.8, 0.7])
    retrain_module.record_job(run_dir, job)
    # Another job that asks for them and more plans only the new ones.
    bigger = retrain_module.plan_job(run_dir, top=2, seeds=2, overrides=[])
    recorded = set(pd.read_parquet(run_dir / "retrain.parquet")["run_key"])
    assert [(p["factors"]["source_trial"], p["train"]["seed"]) for p in bigger.pending(recorded)] == [
        ("trial_0002", 1), ("trial_0001", 1)]
    # The same command again trains nothing, says so and prints the summary.
    result = _main(str(run_dir), "--top", "2", "--seeds", "1", "--no-report", capsys=capsys)
    assert result.returncode == 0, result.stdout + result.stderr
    assert "all 2 run(s) of 2 architecture(s) x 1 seed(s) are already in retrain.parquet: nothing to train" \
        in result.stdout
    assert " ± " in result.stdout and len(pd.read_parquet(run_dir / "retrain.parquet")) == 2


def test_resume_finds_the_job_of_the_same_flags(run_dir: Path, capsys: pytest.CaptureFixture[str]) -> None:
    flags = ["--top", "1", "--seeds", "2", "--no-report"]
    line = _main(str(run_dir), *flags, "--resume", capsys=capsys).bad_input_line()
    assert "nothing to resume (no retrain job with these flags started here); start it without --resume" in line
    job = retrain_module.plan_job(run_dir, top=1, seeds=2, overrides=[])
    _finish_job(job, [0.8], finished=False)  # a job killed after its first run
    line = _main(str(run_dir), *flags, capsys=capsys).bad_input_line()
    assert line == f"error: {job.folder}: a retrain job with these flags was interrupted; continue it with --resume"
    assert not runfolder.RunFolder(run_dir).lock.exists()


def test_a_diverged_run_is_status_1_and_an_interrupted_job_says_how_to_resume(
        run_dir: Path, capsys: pytest.CaptureFixture[str], monkeypatch: pytest.MonkeyPatch) -> None:
    job = retrain_module.plan_job(run_dir, top=1, seeds=2, overrides=["train.lr=10"])
    _finish_job(job, [0.8])
    table = retrain_module.record_job(run_dir, job)
    diverged = table.assign(status="failed", error="diverged: training loss became nan in epoch 1")
    outcomes = iter([retrain_module.RetrainOutcome(table, diverged, job, finished=True),
                     retrain_module.RetrainOutcome(table, table.iloc[0:0], job, finished=False)])
    monkeypatch.setattr(retrain_module, "retrain", lambda *args, **kwargs: next(outcomes))
    flags = [str(run_dir), "--top", "1", "--seeds", "2", "--set", "train.lr=10", "--no-report"]
    failed = _main(*flags, capsys=capsys)
    assert failed.returncode == 1
    assert failed.stderr.strip() == ("1 retrain run(s) failed: trial_0002 seed 0: diverged: training loss became nan "
                                     "in epoch 1")
    interrupted = _main(*flags, capsys=capsys)
    assert interrupted.returncode == 130
    assert (f"the retrain is not finished; continue with: python -m search.retrain {run_dir} --top 1 --seeds 2 "
            f"--set train.lr=10 --resume") in interrupted.stdout


@pytest.mark.parametrize("args, expected", [
    (["--top", "0", "--seeds", "1"], "--top: got 0; allowed: an integer >= 1"),
    (["--top", "1", "--seeds", "0"], "--seeds: got 0; allowed: an integer >= 1"),
    (["--top", "1", "--seeds", "1", "--set", "space.stem_width=16"],
     "allowed: train.* and data.* fields, search.resources.*, search.max_concurrent"),
    (["--top", "1", "--seeds", "1", "--set", "search.strategy=optuna"], "allowed: train.* and data.* fields"),
    (["--top", "1", "--seeds", "1", "--set", "train.epochs=0"], "train.epochs"),
    (["--top", "1", "--seeds", "1", "--set", "search.resources.gpus=-1"], "search.resources.gpus"),
    (["--top", "1", "--seeds", "1", "--set", "train.lr={choice: [0.01, 0.1]}"], "still searched"),
    (["--top", "x", "--seeds", "1"], "argument --top: invalid int value"),
    (["--top", "1", "--seeds", "1", "--max-concurrent", "0"], "--max-concurrent: got 0"),
    (["--top", "1", "--seeds", "1", "--connect-timeout", "0"], "--connect-timeout: got 0"),
    (["--top", "1", "--seeds", "1", "--log", "comet"], "argument --log: invalid choice: 'comet'"),
])
def test_bad_flags_are_one_line_and_status_2(run_dir: Path, args: list[str], expected: str,
                                             capsys: pytest.CaptureFixture[str]) -> None:
    assert expected in _main(str(run_dir), *args, capsys=capsys).bad_input_line()
    assert not (run_dir / "retrain.parquet").exists() and not (run_dir / "retrain").exists()


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


# ------------------------------------------------------------ the real runner
@pytest.fixture
def _restore_torch_threads() -> object:
    # measure_test_acc evaluates on one thread, as the trial did; later tests get theirs back.
    threads = torch.get_num_threads()
    yield
    torch.set_num_threads(threads)


@pytest.mark.slow
def test_real_runner_round_trip_load_rank_0(smoke_run: object, _restore_torch_threads: object) -> None:
    """The smoke study through Ray: load rank 0 and re-evaluate it to the recorded test accuracy."""
    run_dir = smoke_run.run_dir
    results = pd.read_parquet(run_dir / "results.parquet")
    best = runfolder.ranked_frame(results).iloc[0]
    assert best["checkpoint"], "the runner keeps the weights of the best trials"
    model = models.load(run_dir, rank=0)
    assert model.checkpoint_meta["trial"]["trial_id"] == best["trial_id"]
    torch.set_num_threads(1)  # the trial ran on one thread (cpus: 1)
    assert retrain_module.measure_test_acc(model) == best["test_acc"]


def _durable_runs(job_log: Path) -> list[dict]:
    """Rows of the runs a retrain job's log holds (whole lines only)."""
    if not job_log.is_file():
        return []
    return list(runfolder.replay_log(job_log)[0].values())
