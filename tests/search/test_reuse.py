"""Studies that build on earlier runs: --reuse / search.reuse, and search.warm_start.

Matching and warm start are tested on run folders written here through
runfolder, without Ray. The end-to-end tests take the session's real smoke run
(tests/conftest.py) as the earlier run: a second run whose every trial is
reused never starts Ray, so it runs in this process. A study where some trials
match and the others train through Ray Tune runs on the two-node cluster of
tests/search/test_cluster.py.
"""

from __future__ import annotations

import json
import signal
import sys
from pathlib import Path
from typing import Any, Iterator

import optuna
import pandas as pd
import pytest
import yaml

import imagefeed
import runfolder
import space
from commands import SMOKE, SmokeRun, call_main
from models import ArchSpec
from search import run as search_run
from search._recorder import Recorder
from search._resume import WARM_START_ATTR, RunError, lost_trials
from search._reuse import data_description, read_earlier_run, read_reuse_index, warm_start

SMOKE_TRIALS = 4  # shortcut {A, B} x seeds {0, 1}
OPTUNA_STUDY = """\
name: warm
question: Does a warm-started sampler start from the earlier run's best trials?
data: {dataset: synthetic, synthetic_train: 256, synthetic_test: 64}
space:
  stem: cifar
  stem_width: 8
  shortcut: {choice: [A, B]}
  stages: [{depth: 1, width: 8, stride: 1}, {depth: 1, width: 16, stride: 2}]
train: {epochs: 1, batch_size: 64, lr: {float: [0.01, 0.2], log: true}}
search: {strategy: optuna, trials: 4, seeds: [0]}
"""


@pytest.fixture(autouse=True)
def _keep_sigterm() -> Iterator[None]:
    # A run in this process turns SIGTERM into Ctrl-C (search._runner); pytest gets its own handler back.
    handler = signal.getsignal(signal.SIGTERM)
    yield
    signal.signal(signal.SIGTERM, handler)


def _ray_started() -> bool:
    ray = sys.modules.get("ray")
    return ray is not None and ray.is_initialized()


def _smoke(*overrides: str) -> space.Study:
    return space.load_study(SMOKE, list(overrides))


def _plan(study: space.Study, shortcut: str, seed: int) -> dict[str, Any]:
    point = next(p for p in space.grid_points(study) if p.params["shortcut"] == shortcut)
    return space.resolve(study, {"point": point.label, "seed": seed}).to_dict()


def _data(study: space.Study) -> dict[str, Any]:
    return data_description(imagefeed.load(study.data_settings()).source, study.data)


def _row(number: int, plan: dict[str, Any] | None, status: str = "complete", val: float = 0.5,
         factors: dict[str, Any] | None = None, seed: int = 0) -> dict[str, Any]:
    spec = ArchSpec.from_dict(plan["spec"]) if plan else None
    metrics = {"val_acc_best": val, "val_acc_final": val, "test_acc": val - 0.1, "params": 5000, "macs": 2_000_000,
               "epochs_run": 1, "wall_s": 2.0} if status == "complete" else {}
    return runfolder.trial_row(number=number, status=status, seed=plan["train"]["seed"] if plan else seed,
                               factors=factors if factors is not None else plan["factors"], spec=spec,
                               train=plan["train"] if plan else None, metrics=metrics,
                               error="" if status == "complete" else "RuntimeError: diverged")


def _earlier_folder(run_dir: Path, study: space.Study, rows: list[dict[str, Any]]) -> Path:
    """A run folder as the runner leaves one: study.yaml, run.json with its dataset, the trial log and tables."""
    run_dir.mkdir(parents=True)
    runfolder.atomic_write_text(runfolder.RunFolder(run_dir).study_yaml, study.to_yaml())
    runfolder.write_run_json(run_dir, {"study": study.name, "dataset": imagefeed.load(study.data_settings()).source})
    tables = runfolder.ResultsTables(run_dir)
    for row in rows:
        tables.add_trial(row, [{"epoch": 1, "train_loss": 2.0, "val_acc": row["val_acc_best"]}], flush=False)
    tables.close()
    return run_dir


# ------------------------------------------------------------------ matching, without Ray
def test_a_trial_matches_on_architecture_training_settings_seed_and_data_only(tmp_path: Path) -> None:
    study = _smoke()
    complete_a0 = _row(0, _plan(study, "A", 0), val=0.6)
    without_train_json = {k: v for k, v in _row(1, _plan(study, "B", 0)).items() if k != runfolder.TRAIN_JSON}
    failed_a1 = _row(2, _plan(study, "A", 1), status="failed")
    earlier = _earlier_folder(tmp_path / "earlier", study, [complete_a0, without_train_json, failed_a1])
    index, lines = read_reuse_index([earlier, str(earlier)], tmp_path / "new", _data(study), ["val_acc"])

    assert len(index) == 1 and len(index.runs) == 1  # the folder named twice is read once
    assert "1 complete trial(s) can stand in" in lines[0] and "1 complete trial(s) lack train_json" in lines[0]
    match = index.match(_plan(study, "A", 0))
    assert match is not None and match.row[runfolder.RANKING_COLUMN] == 0.6
    assert match.reused_from == f"{earlier.resolve()}#trial_0000"
    assert runfolder.reused_source({runfolder.REUSED_FROM: match.reused_from}) == (str(earlier.resolve()), "trial_0000")
    assert index.match(_plan(study, "B", 0)) is None   # no train_json: its settings cannot be checked whole
    assert index.match(_plan(study, "A", 1)) is None   # failed there: trained here
    # A mismatch in any part means training: the training settings, the seed.
    assert index.match(_plan(_smoke("train.lr=0.05"), "A", 0)) is None
    assert index.match(_plan(_smoke("search.seeds=[2]"), "A", 2)) is None
    # ... or the data: nothing of a run on other images stands in, and the line says what differs.
    other = _smoke("data.split_seed=1")
    index, lines = read_reuse_index([earlier], tmp_path / "new", _data(other), ["val_acc"])
    assert index.match(_plan(other, "A", 0)) is None
    assert "trained on other data (settings.split_seed: 0 there, 1 here)" in lines[0]


def test_rows_of_folders_written_before_reused_from_existed_still_load(tmp_path: Path) -> None:
    study = _smoke()
    old_row = {k: v for k, v in _row(0, _plan(study, "A", 0)).items() if k != runfolder.REUSED_FROM}
    earlier = _earlier_folder(tmp_path / "old", study, [old_row])
    results = runfolder.read_results(earlier)
    assert runfolder.REUSED_FROM not in results.columns
    assert runfolder.reused_source(results.to_dict("records")[0]) is None
    index, _ = read_reuse_index([earlier], tmp_path / "new", _data(study), ["val_acc"])
    assert index.match(_plan(study, "A", 0)) is not None


def _reuse_refusal(tmp_path: Path, capsys: pytest.CaptureFixture[str], *args: str) -> str:
    new = tmp_path / "new"
    result = call_main(search_run.main, [str(SMOKE), "--out", str(new), *args], capsys)
    assert not _ray_started(), "a bad earlier run must be refused before Ray starts"
    assert not new.exists(), "and before the run folder is written"
    return result.bad_input_line()


def test_bad_reuse_folders_are_one_line_and_status_2(tmp_path: Path, capsys: pytest.CaptureFixture[str]) -> None:
    missing = tmp_path / "missing"
    assert _reuse_refusal(tmp_path, capsys, "--reuse", str(missing)) == f"error: --reuse {missing}: no such folder"
    plain = tmp_path / "plain"
    plain.mkdir()
    assert "not a run folder (no run.json)" in _reuse_refusal(tmp_path, capsys, "--reuse", str(plain))
    damaged = _earlier_folder(tmp_path / "damaged", _smoke(), [_row(0, _plan(_smoke(), "A", 0))])
    with runfolder.RunFolder(damaged).trials_log.open("a") as log:
        log.write("this is not a trial\n")
    line = _reuse_refusal(tmp_path, capsys, "--reuse", str(damaged))
    assert f"--reuse {damaged}: " in line and "trials.jsonl:3: not a trial-log line" in line
    with pytest.raises(RunError, match="this run's own folder"):
        read_earlier_run(damaged, "--reuse x", this_run=damaged)


def test_a_dry_run_refuses_a_bad_reuse_folder_as_the_run_would(tmp_path: Path,
                                                               capsys: pytest.CaptureFixture[str]) -> None:
    missing = tmp_path / "missing"
    line = call_main(search_run.main, [str(SMOKE), "--dry-run", "--reuse", str(missing)], capsys).bad_input_line()
    assert line == f"error: --reuse {missing}: no such folder"


def test_warm_start_refusals_are_one_line(tmp_path: Path, capsys: pytest.CaptureFixture[str]) -> None:
    gone = tmp_path / "gone"
    study_files = {}
    for kind, text in (("grid", SMOKE.read_text()), ("optuna", OPTUNA_STUDY)):
        raw = yaml.safe_load(text)
        raw["search"]["warm_start"] = {"from": str(gone), "top": 2}
        study_files[kind] = yaml.safe_dump(raw)
    expected = {"grid": "search.warm_start: warm_start informs an Optuna sampler; a grid visits every point anyway",
                "optuna": f"error: search.warm_start.from {gone}: no such folder"}
    for kind, text in study_files.items():
        study_file, new = tmp_path / f"{kind}.yaml", tmp_path / f"new_{kind}"
        study_file.write_text(text)
        result = call_main(search_run.main, [str(study_file), "--out", str(new)], capsys)
        assert expected[kind] in result.bad_input_line()
        assert not new.exists() and not _ray_started()


# ------------------------------------------------------------------ warm start, without Ray
def test_warm_start_tells_the_sampler_the_best_trials_and_names_what_does_not_fit(tmp_path: Path) -> None:
    study_file = tmp_path / "warm.yaml"
    study_file.write_text(OPTUNA_STUDY)
    study = space.load_study(study_file)
    rows = [  # best first by val_acc_best: the ranking rule picks the top 4 of the complete ones
        _row(0, None, val=0.9, factors={"shortcut": "B", "train.lr": 0.1}),
        _row(1, None, val=0.8, factors={"shortcut": "A", "train.lr": 0.5}),                        # lr outside
        _row(2, None, val=0.7, factors={"shortcut": "A", "train.lr": 0.05, "width_multiplier": 2}),  # not here
        _row(3, None, val=0.6, factors={"shortcut": "B"}),                                          # no lr
        _row(4, None, val=0.5, factors={"shortcut": "A", "train.lr": 0.02}),                        # not top 4
        _row(5, None, status="failed", factors={"shortcut": "A", "train.lr": 0.03}),
    ]
    earlier = read_earlier_run(_earlier_folder(tmp_path / "earlier", study, rows), "warm", tmp_path / "new")
    storage = f"sqlite:///{tmp_path / 'study.db'}"
    optuna.logging.set_verbosity(optuna.logging.WARNING)
    sampler = optuna.samplers.TPESampler(seed=0)
    ot_study = optuna.create_study(study_name="warm", storage=storage, direction="maximize", sampler=sampler)

    lines = warm_start(ot_study, study, earlier, top=4)
    assert lines[0].startswith(f"warm start: told the sampler 1 of the 4 best trial(s) of {earlier.path}")
    assert "not rows of this run's results and do not count against its 4 trials" in lines[0]
    skipped = "\n".join(lines[1:])
    assert len(lines) == 4, lines  # one line per trial left out, each saying why
    assert "#trial_0001 not added: train.lr=0.5 is outside this space ([0.01, 0.2] on a log scale)" in skipped
    assert "#trial_0002 not added: width_multiplier is not a parameter of this space" in skipped
    assert "#trial_0003 not added: no value for train.lr, which this space searches" in skipped
    (added,) = ot_study.get_trials()
    assert added.state == optuna.trial.TrialState.COMPLETE and added.value == 0.9
    assert added.params == {"shortcut": "B", "train.lr": 0.1}
    assert added.user_attrs[WARM_START_ATTR] == f"{earlier.path}#trial_0000"
    # The distributions are the searcher's own, so the sampler uses the trial: a TPE sample works on top.
    trial = ot_study.ask()
    space.define_by_run(study)(trial)
    assert trial.distributions == added.distributions
    # Never a row of this run: a resume does not see it as a trial whose row was lost ...
    assert lost_trials(ot_study.get_trials(), recorded=set()) == []
    # ... and a second start (--resume) adds nothing again.
    again = warm_start(optuna.load_study(study_name="warm", storage=storage), study, earlier, top=4)
    assert again == [f"warm start: the Optuna study already holds the 1 trial(s) added from {earlier.path} when "
                     "this run started; none added again"]
    assert sum(WARM_START_ATTR in t.user_attrs for t in ot_study.get_trials()) == 1


# ------------------------------------------------------------------ end to end
def _by_trial_key(results: pd.DataFrame) -> pd.DataFrame:
    return results.set_index(["factor.shortcut", "seed"]).sort_index()


@pytest.mark.slow
def test_a_second_run_with_reuse_trains_nothing_and_gives_the_same_numbers(
        smoke_run: SmokeRun, tmp_path: Path, capsys: pytest.CaptureFixture[str]) -> None:
    earlier, second = smoke_run.run_dir.resolve(), tmp_path / "second"
    result = call_main(search_run.main, [str(SMOKE), "--out", str(second), "--reuse", str(earlier)], capsys)
    assert result.returncode == 0, result.stdout + result.stderr
    # No training happened: Ray never started, and every row names the trial it was taken from.
    assert not _ray_started()
    assert f"nothing to train: earlier runs stood in for all {SMOKE_TRIALS} remaining trial(s)" in result.stdout
    assert f"trials: {SMOKE_TRIALS} complete ({SMOKE_TRIALS} reused from earlier runs)" in result.stdout
    before = runfolder.read_results(earlier)
    after = runfolder.read_results(second)
    assert len(after) == SMOKE_TRIALS
    source = dict(zip(before["trial_id"], zip(before["factor.shortcut"], before["seed"])))
    for row in after.to_dict("records"):
        folder, trial = runfolder.reused_source(row)
        assert folder == str(earlier) and source[trial] == (row["factor.shortcut"], row["seed"])
    # The same numbers, row for row.
    columns = ["val_acc_best", "val_acc_final", "test_acc", "params", "macs", "epochs_run", "arch_key", "train_json"]
    pd.testing.assert_frame_equal(_by_trial_key(after)[columns], _by_trial_key(before)[columns])
    curves_before = runfolder.read_curves(earlier).merge(before[["trial_id", "factor.shortcut", "seed"]])
    curves_after = runfolder.read_curves(second).merge(after[["trial_id", "factor.shortcut", "seed"]])
    assert sorted(curves_after["val_acc"]) == sorted(curves_before["val_acc"])
    # The kept checkpoints are the earlier weights; the Optuna storage holds the earlier values.
    kept = after[after["checkpoint"] != ""]
    assert len(kept) == 3
    for row in kept.to_dict("records"):
        trial = runfolder.reused_source(row)[1]
        assert (second / row["checkpoint"] / "model.safetensors").read_bytes() == \
            (earlier / "checkpoints" / trial / "model.safetensors").read_bytes()
    stored = optuna.load_study(study_name="smoke", storage=f"sqlite:///{second / 'study.db'}").get_trials()
    assert sorted(t.value for t in stored) == sorted(before["val_acc_best"])
    run = json.loads((second / "run.json").read_text())
    assert run["finished"] and run["reused_trials"] == SMOKE_TRIALS and run["device_hours"] == 0.0
    assert run["reuse"] == [str(earlier)]
    # The report counts them.
    page = (second / "report.html").read_text()
    assert f"{SMOKE_TRIALS} of {SMOKE_TRIALS} trials were not trained in this run" in page


@pytest.mark.slow
def test_reuse_and_warm_start_compose_with_resume(smoke_run: SmokeRun, tmp_path: Path,
                                                  capsys: pytest.CaptureFixture[str],
                                                  monkeypatch: pytest.MonkeyPatch) -> None:
    # An optuna study over the smoke study's trials, warm-started from the smoke run and reusing it: every sample
    # is one the smoke run trained, so nothing trains. Ctrl-C after two trials, then --resume.
    earlier = smoke_run.run_dir.resolve()
    raw = yaml.safe_load(SMOKE.read_text())
    raw["name"] = "smoke_optuna"
    raw["search"] = {**raw["search"], "strategy": "optuna", "trials": 4, "reuse": [str(earlier)],
                     "warm_start": {"from": str(earlier), "top": 2}}
    study_file = tmp_path / "smoke_optuna.yaml"
    study_file.write_text(yaml.safe_dump(raw))
    run_dir = tmp_path / "run"
    recorded = Recorder.trial_reused
    calls = []

    def interrupted_on_the_third(self: Recorder, *args: Any) -> dict[str, Any]:
        calls.append(args[0])
        if len(calls) == 3:
            raise KeyboardInterrupt
        return recorded(self, *args)

    monkeypatch.setattr(Recorder, "trial_reused", interrupted_on_the_third)
    first = call_main(search_run.main, [str(study_file), "--out", str(run_dir), "--no-report"], capsys)
    assert first.returncode == search_run.EXIT_INTERRUPTED, first.stdout + first.stderr
    assert "warm start: told the sampler 2 of the 2 best trial(s)" in first.stdout
    assert len(runfolder.read_results(run_dir)) == 2
    monkeypatch.setattr(Recorder, "trial_reused", recorded)

    second = call_main(search_run.main, [str(study_file), "--out", str(run_dir), "--no-report", "--resume"], capsys)
    assert second.returncode == 0, second.stdout + second.stderr
    assert not _ray_started()
    assert "warm start: the Optuna study already holds the 2 trial(s)" in second.stdout
    results = runfolder.read_results(run_dir)
    assert len(results) == 4 and all(runfolder.reused_source(row) for row in results.to_dict("records"))
    before = _by_trial_key(runfolder.read_results(earlier))
    for row in results.to_dict("records"):
        assert row["val_acc_best"] == before.loc[(row["factor.shortcut"], row["seed"]), "val_acc_best"]
    # The warm-start trials are the storage's first two, once; they are no rows and did not count against the 4.
    stored = optuna.load_study(study_name="smoke_optuna", storage=f"sqlite:///{run_dir / 'study.db'}").get_trials()
    warm = [t.number for t in stored if WARM_START_ATTR in t.user_attrs]
    assert warm == [0, 1]
    assert not set(results["trial_id"]) & {runfolder.trial_id(n) for n in warm}
