"""Synthetic run folders for the report tests: one per kind of study the report must handle.

Each folder is built once per session (tmp_path_factory) and treated as
read-only by the tests; a test that must change a folder copies it first.
"""

from __future__ import annotations

import shutil
from pathlib import Path

import numpy as np
import pytest

import runfolder
import synthetic_run as synthetic

SHORTCUT_LEVELS = ["A", "B", "C"]
DEPTH_LEVELS = [20, 56]
SEEDS = [0, 1, 2]
# Effects large against the 1-point noise, so B is clearly higher than A and
# depth 56 clearly above 20, while C equals A (a "within noise" comparison).
GRID_EFFECTS = {"shortcut": {"B": 0.04, "C": 0.0}, "depth": {56: 0.03}}


def _grid_factors(shortcut_levels=SHORTCUT_LEVELS, depth_levels=DEPTH_LEVELS) -> dict:
    factors = {"shortcut": {"levels": shortcut_levels, "reference": shortcut_levels[0]}}
    if depth_levels:
        factors["depth"] = {"levels": depth_levels, "reference": depth_levels[0]}
    return factors


@pytest.fixture(scope="session")
def runs_root(tmp_path_factory) -> Path:
    return tmp_path_factory.mktemp("report_runs") / "runs"


@pytest.fixture(scope="session")
def grid_run(runs_root) -> Path:
    """2 factors x 3 seeds (18 trials): one failed, one pruned, curves, run.json and retrain.parquet."""
    trials = synthetic.grid_trials({"shortcut": SHORTCUT_LEVELS, "depth": DEPTH_LEVELS}, SEEDS)
    trials[4]["status"] = "failed"
    trials[9]["status"] = "pruned"
    results, curves = synthetic.build_results(trials, epochs=4, effects=GRID_EFFECTS, seed=1)
    info = synthetic.run_info("shortcut_ablation", _grid_factors(), trials=len(trials), epochs=4, seeds=SEEDS)
    best = runfolder.ranked_rows(results.to_dict("records"))[:2]
    retrain = [runfolder.RetrainRow(arch_key=row["arch_key"], source_trial_id=row["trial_id"], seed=seed,
                                    test_acc=row["test_acc"] + 0.002 * (seed - 1),
                                    source_val_acc_best=row["val_acc_best"])
               for row in best for seed in (10, 11, 12)]
    return synthetic.write_run(runs_root / "shortcut_ablation", results, info, curves, retrain)


@pytest.fixture(scope="session")
def one_trial_run(runs_root) -> Path:
    trials = [{"shortcut": "A", "depth": 20, "seed": 0}]
    results, curves = synthetic.build_results(trials, epochs=3)
    info = synthetic.run_info("one_trial", _grid_factors(), trials=1, seeds=[0])
    return synthetic.write_run(runs_root / "one_trial", results, info, curves)


@pytest.fixture(scope="session")
def failed_only_run(runs_root) -> Path:
    trials = [{"shortcut": level, "depth": 20, "seed": 0, "status": "failed"} for level in SHORTCUT_LEVELS]
    trials[1]["error"] = "RuntimeError: shapes do not match\nTraceback (most recent call last):\n  File x.py"
    results, curves = synthetic.build_results(trials, epochs=3)
    info = synthetic.run_info("failed_only", _grid_factors(), trials=3, seeds=[0], finished=False)
    return synthetic.write_run(runs_root / "failed_only", results, info, curves)


@pytest.fixture(scope="session")
def single_level_run(runs_root) -> Path:
    trials = synthetic.grid_trials({"shortcut": ["B"]}, SEEDS)
    results, curves = synthetic.build_results(trials, epochs=3)
    info = synthetic.run_info("single_level", _grid_factors(["B"], None), trials=3, embedded_sample=False)
    return synthetic.write_run(runs_root / "single_level", results, info, curves)


def _optuna_run(root: Path, name: str, n_trials: int, with_storage: bool = True) -> Path:
    """A searched study: lr (numeric, log range) and block (categorical), stored in a real Optuna SQLite file."""
    import optuna

    optuna.logging.set_verbosity(optuna.logging.WARNING)
    rng = np.random.default_rng(7)
    lrs = 10 ** rng.uniform(-3, 0, n_trials)
    blocks = [["basic", "bottleneck"][i % 2] for i in range(n_trials)]
    trials = [{"lr": float(lr), "block": block, "seed": 0} for lr, block in zip(lrs, blocks)]
    # Accuracy peaks at lr = 0.03 and barely depends on the block: lr must dominate the importances.
    effects = {"lr": lambda lr: -0.08 * (np.log10(lr) + 1.5) ** 2, "block": {"bottleneck": 0.002}}
    results, curves = synthetic.build_results(trials, epochs=3, effects=effects, seed=3)
    if n_trials > 3:
        results.loc[3, ["status", "val_acc_best", "val_acc_final", "test_acc", "error"]] = ["pruned", 0.5, np.nan, np.nan, "pruned at epoch 1"]
    factors = {"lr": {"levels": None, "reference": None}, "block": {"levels": ["basic", "bottleneck"], "reference": "basic"}}
    info = synthetic.run_info(name, factors, strategy="optuna", trials=n_trials, seeds=[0],
                              question="Which learning rate and block type maximise validation accuracy?")
    run_dir = synthetic.write_run(root / name, results, info, curves)
    if with_storage:
        study = optuna.create_study(study_name=name, storage=f"sqlite:///{run_dir / 'study.db'}", direction="maximize")
        distributions = {"lr": optuna.distributions.FloatDistribution(1e-3, 1.0, log=True),
                         "block": optuna.distributions.CategoricalDistribution(["basic", "bottleneck"])}
        for row in results.to_dict("records"):
            complete = row["status"] == "complete"
            study.add_trial(optuna.trial.create_trial(
                params={"lr": float(row["factor.lr"]), "block": row["factor.block"]}, distributions=distributions,
                state=optuna.trial.TrialState.COMPLETE if complete else optuna.trial.TrialState.PRUNED,
                value=float(row["val_acc_best"]) if complete else None))
    return run_dir


@pytest.fixture(scope="session")
def optuna_run(runs_root) -> Path:
    return _optuna_run(runs_root, "lr_search", 40)


@pytest.fixture(scope="session")
def optuna_few_trials_run(runs_root) -> Path:
    return _optuna_run(runs_root, "lr_search_small", 5)


@pytest.fixture(scope="session")
def optuna_no_storage_run(runs_root) -> Path:
    return _optuna_run(runs_root, "lr_search_no_db", 40, with_storage=False)


@pytest.fixture
def copy_run(tmp_path):
    """Copy a session run folder into this test's tmp_path, so the test may change it."""
    def copy(run_dir: Path) -> Path:
        target = tmp_path / "runs" / run_dir.name
        shutil.copytree(run_dir, target, ignore=shutil.ignore_patterns("report*"))
        return target
    return copy
