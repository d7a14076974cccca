"""search.pack_seeds end to end: a real run through Ray Tune, each packed seed checked against the same trial alone.

One local run of the smoke study, two shortcut levels x three seeds, two
seeds to a trial: each point trains seeds 0 and 1 as one packed model and
seed 2 alone. Every seed's row, curve, Optuna trial and checkpoint is then
checked against `search.train.fit` of that trial's own plan, in this process.
"""

from __future__ import annotations

import json
from pathlib import Path

import optuna
import pandas as pd
import pytest
import torch

import imagefeed
import models
import runfolder
import space
from commands import SMOKE, CliResult, run_module
from search.train import fit

SEEDS = 3
# The packed model's convolutions are grouped ones, which add in another order than K separate ones: the losses
# agree to float rounding compounded over the steps (search/_packed_seeds.py; tests/search/test_packed_seeds.py).
LOSS_TOLERANCE = 1e-3
RUN_ARGS = ("--set", f"search.seeds={list(range(SEEDS))}", "--set", "search.pack_seeds=2", "--set", "train.epochs=2",
            "--set", "search.keep_checkpoints=-1", "--no-dashboard")

pytestmark = pytest.mark.slow


@pytest.fixture(scope="module")
def packed_run(tmp_path_factory: pytest.TempPathFactory) -> tuple[Path, CliResult]:
    run_dir = tmp_path_factory.mktemp("packed") / "run"
    done = run_module("search.run", str(SMOKE), "--out", str(run_dir), *RUN_ARGS)
    assert done.returncode == 0, done.stdout + done.stderr
    return run_dir, done


@pytest.fixture(scope="module")
def alone(packed_run: tuple[Path, CliResult], tmp_path_factory: pytest.TempPathFactory) -> dict[str, dict]:
    """Each trial of the run trained by itself with `fit`, from its row's spec and settings: result, curve, weights."""
    run_dir, _ = packed_run
    rows = runfolder.read_results(run_dir)
    study = space.load_study(run_dir / "study.yaml")
    splits = imagefeed.load(study.data_settings())
    torch.set_num_threads(1)  # as the trial did (search.resources.cpus = 1)
    trained = {}
    for row in rows.to_dict("records"):
        spec = models.ArchSpec.from_yaml(row["arch_yaml"])
        train = space.TrainSettings.from_dict(json.loads(row["train_json"]))
        folder = tmp_path_factory.mktemp(row["trial_id"])
        curve: list[dict] = []
        result = fit(spec, train, study.data_settings(), report=curve.append, splits=splits, save_to=folder)
        trained[row["trial_id"]] = {"result": result, "curve": curve, "weights": models.load(folder).state_dict()}
    return trained


def test_every_seed_is_its_own_complete_row_and_two_share_each_trial(packed_run):
    run_dir, done = packed_run
    rows = runfolder.read_results(run_dir).set_index("trial_id")
    assert (rows["status"] == "complete").all() and len(rows) == 2 * SEEDS
    for level, trials in rows.groupby("factor.shortcut"):
        assert sorted(trials["seed"]) == list(range(SEEDS)), level
        packed = trials[trials["packed_seeds"] == 2]
        assert sorted(packed["seed"]) == [0, 1], level  # the first two seeds of each point, as one model
        # The two seeds of one packed model trained for the same wall time: the trial's.
        assert packed["wall_s"].nunique() == 1
        assert trials.loc[trials["seed"] == 2, "packed_seeds"].isna().all()
    # The progress line of each packed seed says so; a seed alone's does not.
    packed_lines = [line for line in done.stdout.splitlines() if "(2 seeds packed)" in line]
    assert len(packed_lines) == 4, done.stdout


def test_each_packed_seed_matches_the_same_trial_trained_alone(packed_run, alone):
    run_dir, _ = packed_run
    rows = runfolder.read_results(run_dir).set_index("trial_id")
    curves = runfolder.read_curves(run_dir)
    study = space.load_study(run_dir / "study.yaml")
    splits = imagefeed.load(study.data_settings())
    one_image = {"val_acc_best": 1 / len(splits.val_y), "test_acc": 1 / len(splits.test_y)}
    for trial, row in rows.iterrows():
        own = alone[trial]
        for metric, image in one_image.items():
            # Accuracy counts images: float rounding may move one across the decision boundary, no more.
            assert abs(row[metric] - own["result"][metric]) <= image + 1e-9, (trial, metric)
        recorded = curves[curves["trial_id"] == trial].sort_values("epoch")
        assert list(recorded["epoch"]) == [point["epoch"] for point in own["curve"]]
        for got, expected in zip(recorded["train_loss"], [point["train_loss"] for point in own["curve"]]):
            assert got == pytest.approx(expected, rel=LOSS_TOLERANCE), trial
        # Its checkpoint is a network of its own, with the weights the trial alone ends with.
        kept = models.load(run_dir / "checkpoints" / trial).state_dict()
        assert kept.keys() == own["weights"].keys()
        for name, tensor in kept.items():
            if tensor.is_floating_point():
                assert torch.allclose(tensor, own["weights"][name], atol=LOSS_TOLERANCE), (trial, name)
            else:
                assert torch.equal(tensor, own["weights"][name]), (trial, name)


def test_optuna_holds_every_seed_as_its_own_trial_with_its_curve(packed_run):
    run_dir, _ = packed_run
    rows = runfolder.read_results(run_dir).set_index("number")
    curves = runfolder.read_curves(run_dir)
    study = optuna.load_study(study_name="smoke", storage=f"sqlite:///{run_dir / 'study.db'}")
    trials = study.get_trials(deepcopy=False)
    assert sorted(t.number for t in trials) == sorted(rows.index)
    for trial in trials:
        row = rows.loc[trial.number]
        assert trial.state == optuna.trial.TrialState.COMPLETE
        assert (trial.params["point"], trial.params["seed"]) == (f"shortcut={row['factor.shortcut']}", row["seed"])
        assert trial.value == pytest.approx(row["val_acc_best"])
        recorded = curves[curves["trial_id"] == row["trial_id"]].sort_values("epoch")
        assert trial.intermediate_values == pytest.approx(dict(zip(recorded["epoch"], recorded["val_acc"])))


def test_device_hours_count_a_packed_trial_once(packed_run):
    run_dir, _ = packed_run
    rows = runfolder.read_results(run_dir)
    info = runfolder.read_run_info(run_dir)
    assert info.budget["pack_seeds"] == 2
    packed = rows["packed_seeds"] == 2
    # Each packed trial's wall time once (its two rows share it), and each lone seed's own.
    expected = rows.loc[packed, "wall_s"].sum() / 2 + rows.loc[~packed, "wall_s"].sum()
    shares = runfolder.trial_device_seconds(rows["wall_s"].to_numpy(), rows["packed_seeds"].to_numpy())
    assert shares.sum() == pytest.approx(expected)
    assert info.device_hours == pytest.approx(expected / 3600.0)  # search.resources.cpus = 1 per trial


def test_the_report_says_the_seeds_were_packed(packed_run):
    run_dir, done = packed_run
    page = (run_dir / "report.html").read_text(encoding="utf-8")
    assert "seeds: 0, 1, 2; up to 2 seeds of a point trained as one model per trial (search.pack_seeds" in page
    assert "report failed" not in done.stdout
