"""Synthetic run folders that follow docs/DESIGN.md, for the report tests and bench/report_scale.py.

One generator for both keeps the fake run-folder contract in one place. The
accuracies follow a simple additive model (a base, an effect per factor level,
Gaussian noise per seed) so tests know the direction of every difference.
"""

from __future__ import annotations

import functools
import hashlib
import itertools
import json
import math
from pathlib import Path
from typing import Any, Iterable, Mapping

import numpy as np
import pandas as pd
import yaml

BASE_ACCURACY = 0.80
NOISE_STD = 0.01
CIFAR_STAGE_WIDTHS = (16, 32, 64)
CIFAR_STAGE_SIDES = (32, 16, 8)
# Messages the runner could plausibly write, so the failed table has variety.
FAILURE_MESSAGES = ("RuntimeError: CUDA out of memory. Tried to allocate 2.00 GiB\nTraceback (most recent call last): ...",
                    "ValueError: loss is NaN at epoch 2")
PRUNED_MESSAGE = "pruned by MedianPruner at epoch {epoch}"


def _complexity(depth: int, width_multiplier: float) -> tuple[int, int]:
    """(params, MACs) of a CIFAR ResNet-depth: (depth - 2) / 6 basic blocks per stage, 3x3 convs."""
    blocks = max(1, (int(depth) - 2) // 6)
    params = macs = 0
    for width, side in zip(CIFAR_STAGE_WIDTHS, CIFAR_STAGE_SIDES):
        width = int(width * width_multiplier)
        stage_params = blocks * 2 * 9 * width * width
        params += stage_params
        macs += stage_params * side * side
    return params + 650, macs + 460_000  # stem and classifier


@functools.lru_cache(maxsize=None)  # 10k trials share a few dozen architectures
def _arch_yaml(depth: int, width_multiplier: float, shortcut: str, block: str) -> str:
    blocks = max(1, (int(depth) - 2) // 6)
    stages = [{"depth": blocks, "width": int(w * width_multiplier), "stride": 1 if i == 0 else 2}
              for i, w in enumerate(CIFAR_STAGE_WIDTHS)]
    spec = {"stages": stages, "block": block, "shortcut": shortcut, "stem": "cifar", "stem_width": 16,
            "bottleneck_ratio": 0.25, "groups": 1, "bottleneck_stride": "3x3", "zero_init_residual": False,
            "num_classes": 10, "in_channels": 3}
    return yaml.safe_dump(spec, sort_keys=False, default_flow_style=None)


def build_results(trials: Iterable[Mapping[str, Any]], epochs: int = 3,
                  effects: Mapping[str, Any] | None = None, seed: int = 0) -> tuple[pd.DataFrame, pd.DataFrame]:
    """(results, curves) frames for trials given as dicts of factor values plus optional seed/status/error.

    `effects` maps a factor name to {level: accuracy offset} or to a function value -> offset.
    """
    effects = effects or {}
    rng = np.random.default_rng(seed)
    rows = []
    for number, trial in enumerate(trials):
        factors = {key: value for key, value in trial.items() if key not in ("seed", "status", "error")}
        status = trial.get("status", "complete")
        depth = int(factors.get("depth", 20))
        width_multiplier = float(factors.get("width", 1.0))
        shortcut = str(factors.get("shortcut", "B"))
        block = str(factors.get("block", "basic"))
        params, macs = _complexity(depth, width_multiplier)
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
        trial_id = f"trial_{number:05d}"
        row = {
            "trial_id": trial_id, "number": number, "status": status, "seed": int(trial.get("seed", 0)),
            **{f"factor.{name}": value for name, value in factors.items()},
            "arch.block": block, "arch.shortcut": shortcut, "arch.stem": "cifar",
            "arch.depths": "-".join([str(max(1, (depth - 2) // 6))] * 3), "arch.num_layers": depth,
            "arch_key": hashlib.sha256(f"{depth}|{width_multiplier}|{shortcut}|{block}".encode()).hexdigest()[:16],
            "arch_yaml": _arch_yaml(depth, width_multiplier, shortcut, block),
            "train.epochs": epochs, "train.lr": float(factors.get("lr", 0.1)),
            "params": params, "macs": macs, "flops": 2 * macs,
            "val_acc_best": val_best if status == "complete" else (val_best - 0.05 if status == "pruned" else math.nan),
            "val_acc_final": val_best - 0.002 if status == "complete" else math.nan,
            "test_acc": test if status == "complete" else math.nan,
            "epochs_run": epochs_run, "wall_s": 10.0 * max(epochs_run, 1), "images_per_s": 1500.0,
            "error": error, "checkpoint": f"checkpoints/{trial_id}" if status == "complete" and number % 2 == 0 else "",
        }
        rows.append(row)
    results = pd.DataFrame(rows)
    return results, _curves(results, epochs, rng)


def _curves(results: pd.DataFrame, epochs: int, rng: np.random.Generator) -> pd.DataFrame:
    """One row per trial and epoch run: a saturating curve reaching the trial's best val accuracy at the last epoch."""
    if results.empty:
        return pd.DataFrame(columns=["trial_id", "epoch", "train_loss", "val_acc", "epoch_s", "images_per_s", "lr"])
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
              curves: pd.DataFrame | None = None, retrain: pd.DataFrame | None = None) -> Path:
    """Write a run folder: results.parquet, and run.json / curves.parquet / retrain.parquet when given."""
    run_dir = Path(run_dir)
    run_dir.mkdir(parents=True, exist_ok=True)
    results.to_parquet(run_dir / "results.parquet", index=False)
    if info is not None:
        (run_dir / "run.json").write_text(json.dumps(info, indent=2), encoding="utf-8")
    if curves is not None:
        curves.to_parquet(run_dir / "curves.parquet", index=False)
    if retrain is not None:
        retrain.to_parquet(run_dir / "retrain.parquet", index=False)
    return run_dir
