"""Synthetic run folders for the report tests and bench/report_scale.py, written as the runner writes them.

A test fake, so it lives in tests/ (the report reads runfolder only). Every
document reaches disk through the real writers: rows from `runfolder.trial_row`
with real ArchSpecs and their analytic complexity through
`runfolder.ResultsTables`, run.json as a `runfolder.RunInfo` through
`runfolder.write_run_info`, and retrain rows as `runfolder.RetrainRow`s through
`runfolder.write_retrain`, so the fake folder cannot drift from the real format.
The accuracies follow a simple additive model (a base, an effect per factor level,
Gaussian noise per seed) so tests know the direction of every difference.
"""

from __future__ import annotations

import functools
import itertools
import math
from pathlib import Path
from typing import Any, Iterable, Mapping

import numpy as np
import pandas as pd

import runfolder

BASE_ACCURACY = 0.80
NOISE_STD = 0.01
CIFAR_STAGE_WIDTHS = (16, 32, 64)
# Messages as the runner writes them: a failed trial's first error line, a pruned trial's scheduler note.
FAILURE_MESSAGES = ("RuntimeError: CUDA out of memory. Tried to allocate 2.00 GiB",
                    "TrialDiverged: the loss became nan at epoch 2")
PRUNED_MESSAGE = "stopped early by the scheduler after epoch {epoch}"


class _Architecture:
    """A CIFAR ResNet of the synthetic study: the ArchSpec's row cells and complexity, computed once."""

    def __init__(self, depth: int, width_multiplier: float, shortcut: str, block: str) -> None:
        import models  # imported here: the report itself never needs torch

        blocks = max(1, (int(depth) - 2) // 6)
        stages = [models.StageSpec(depth=blocks, width=max(1, int(w * width_multiplier)), stride=1 if i == 0 else 2)
                  for i, w in enumerate(CIFAR_STAGE_WIDTHS)]
        spec = models.ArchSpec(stages=tuple(stages), block=block, shortcut=shortcut, stem="cifar",
                               stem_width=stages[0].width,
                               num_classes=10)
        self._flat, self._key, self._yaml = spec.flat(), spec.key(), spec.to_yaml()
        measured = models.complexity(spec, 32)
        self.params, self.macs, self.flops = measured.params, measured.macs, measured.flops

    def flat(self) -> dict[str, Any]:
        return self._flat

    def key(self) -> str:
        return self._key

    def to_yaml(self) -> str:
        return self._yaml


@functools.lru_cache(maxsize=None)  # 10k trials share a few dozen architectures
def _architecture(depth: int, width_multiplier: float, shortcut: str, block: str) -> _Architecture:
    return _Architecture(depth, width_multiplier, shortcut, block)


@functools.lru_cache(maxsize=None)
def _train_settings(epochs: int, lr: float, seed: int) -> dict[str, Any]:
    from space import TrainSettings

    return TrainSettings(epochs=epochs, lr=lr, seed=seed).to_dict()


def build_results(trials: Iterable[Mapping[str, Any]], epochs: int = 3,
                  effects: Mapping[str, Any] | None = None, seed: int = 0) -> tuple[pd.DataFrame, pd.DataFrame]:
    """(results, curves) frames for trials given as dicts of factor values plus optional seed/status/error.

    Rows are made by `runfolder.trial_row`, as the runner makes them. `effects`
    maps a factor name to {level: accuracy offset} or to a function value -> offset.
    """
    effects = effects or {}
    rng = np.random.default_rng(seed)
    rows = []
    for number, trial in enumerate(trials):
        factors = {key: value for key, value in trial.items() if key not in ("seed", "status", "error")}
        status = trial.get("status", "complete")
        architecture = _architecture(int(factors.get("depth", 20)), float(factors.get("width", 1.0)),
                                     str(factors.get("shortcut", "B")), str(factors.get("block", "basic")))
        offset = 0.0
        for name, value in factors.items():
            effect = effects.get(name, {})
            offset += effect(value) if callable(effect) else effect.get(value, 0.0)
        val_best = float(np.clip(BASE_ACCURACY + offset + rng.normal(0.0, NOISE_STD), 0.0, 1.0))
        test = float(np.clip(val_best - 0.004 + rng.normal(0.0, NOISE_STD / 2), 0.0, 1.0))
        epochs_run = {"complete": epochs, "pruned": max(1, epochs // 2), "failed": 0}[status]
        error = trial.get("error", "")
        if status == "failed" and not error:
            error = FAILURE_MESSAGES[number % len(FAILURE_MESSAGES)]
        if status == "pruned" and not error:
            error = PRUNED_MESSAGE.format(epoch=epochs_run)
        trial_seed = int(trial.get("seed", 0))
        metrics = {
            "params": architecture.params, "macs": architecture.macs, "flops": architecture.flops,
            "val_acc_best": val_best if status == "complete" else (val_best - 0.05 if status == "pruned" else math.nan),
            "val_acc_final": val_best - 0.002 if status == "complete" else math.nan,
            "test_acc": test if status == "complete" else math.nan,
            "epochs_run": epochs_run, "wall_s": 10.0 * max(epochs_run, 1), "images_per_s": 1500.0,
        }
        trial_id = runfolder.trial_id(number)
        checkpoint = (runfolder.checkpoint_cell(trial_id)
                      if status == "complete" and number % 2 == 0 else "")
        rows.append(runfolder.trial_row(
            number=number, status=status, seed=trial_seed, factors=factors, spec=architecture,
            train=_train_settings(epochs, float(factors.get("lr", 0.1)), trial_seed), metrics=metrics,
            error=error, checkpoint=checkpoint))
    results = pd.DataFrame(rows)
    return results, _curves(results, epochs, rng)


def _curves(results: pd.DataFrame, epochs: int, rng: np.random.Generator) -> pd.DataFrame:
    """One row per trial and epoch run: a saturating curve reaching the trial's best val accuracy at the last epoch."""
    if results.empty:
        return pd.DataFrame(columns=list(runfolder.CURVE_COLUMNS))
    epochs_run = results["epochs_run"].to_numpy(dtype=int)
    trial_ids = np.repeat(results["trial_id"].to_numpy(), epochs_run)
    best = np.repeat(results["val_acc_best"].fillna(0.1).to_numpy(dtype=float), epochs_run)
    # 1..epochs_run for each trial, built without a Python loop (10k trials in the bench).
    starts = np.repeat(np.cumsum(epochs_run) - epochs_run, epochs_run)
    epoch = np.arange(epochs_run.sum()) - starts + 1
    rise = (1.0 - np.exp(-3.0 * epoch / epochs)) / (1.0 - math.exp(-3.0))
    return pd.DataFrame({
        "trial_id": trial_ids, "epoch": epoch, "train_loss": 2.3 * (1.0 - 0.6 * rise),
        "val_acc": np.clip(0.1 + (best - 0.1) * rise + rng.normal(0.0, 0.003, epoch.size), 0.0, 1.0),
        "epoch_s": 10.0, "images_per_s": 1500.0, "lr": 0.1,
    })


def grid_trials(levels: Mapping[str, list], seeds: Iterable[int]) -> list[dict]:
    """Every combination of factor levels, once per seed, in grid order."""
    names = list(levels)
    return [{**dict(zip(names, combination)), "seed": seed}
            for combination in itertools.product(*levels.values()) for seed in seeds]


def run_info(study: str, factors: Mapping[str, Mapping[str, Any]], *, strategy: str = "grid",
             question: str = "Does projection shortcut B beat zero-padding A at equal FLOPs?",
             epochs: int = 3, trials: int = 0, seeds: Iterable[int] = (0, 1, 2), embedded_sample: bool = True,
             finished: bool = True) -> dict[str, Any]:
    """A run.json dict with every field DESIGN.md lists."""
    return {
        "study": study, "question": question, "strategy": strategy, "objectives": [["val_acc", "max"]],
        "factors": {name: dict(spec) for name, spec in factors.items()},
        "dataset": {"name": "cifar10", "root": None if embedded_sample else "/data/cifar10",
                    "embedded_sample": embedded_sample, "n_train": 1350 if embedded_sample else 45000,
                    "n_val": 150 if embedded_sample else 5000, "n_test": 500 if embedded_sample else 10000},
        "budget": {"epochs": epochs, "trials": trials, "seeds": list(seeds)},
        "hardware": {"cpu": "Synthetic CPU @ 2.0GHz", "cpus": 2, "gpus": [], "hostname": "testhost"},
        "versions": {"python": "3.11.7", "torch": "2.13.0", "ray": "2.60.0", "optuna": "5.0.0", "resnas": "0.1.0"},
        "started": "2026-11-24T16:00:00Z", "finished": "2026-11-24T17:02:03Z" if finished else None,
        "wall_s": 3723.0, "device_hours": 2.07,
    }


def write_run(run_dir: str | Path, results: pd.DataFrame, info: Mapping[str, Any] | None = None,
              curves: pd.DataFrame | None = None, retrain: Iterable[runfolder.RetrainRow] | None = None) -> Path:
    """Write a run folder through the runner's own writers: the tables, run.json (a RunInfo) and retrain rows."""
    run_dir = Path(run_dir)
    run_dir.mkdir(parents=True, exist_ok=True)
    tables = runfolder.ResultsTables(run_dir)
    points = {} if curves is None else {
        trial: frame.to_dict("records") for trial, frame in curves.groupby("trial_id", sort=False)}
    for row in results.to_dict("records"):
        tables.add_trial(row, points.get(row["trial_id"], ()), flush=False)
    tables.materialize()
    if curves is None:  # a folder without curves, as a runner that never recorded an epoch leaves it
        for path in (tables.folder.curves, tables.folder.curves_csv):
            path.unlink()
    if info is not None:
        runfolder.write_run_info(run_dir, runfolder.RunInfo.from_dict(info, where="synthetic run.json"))
    if retrain is not None:
        runfolder.write_retrain(run_dir, retrain)
    return run_dir
