"""Every study file in studies/: it validates, dry-runs, has the size it claims, and its GPU flags apply."""

from __future__ import annotations

import shlex
from pathlib import Path

import optuna
import pytest

from space import define_by_run, dry_run_report, factors, grid_points, load_study, resolve

STUDIES = Path(__file__).resolve().parents[2] / "studies"
STUDY_FILES = sorted(STUDIES.glob("*.yaml"))

# Trials of each study's default budget; a new study file must be added here.
EXPECTED_TRIALS = {
    "shortcut_ablation": 30,    # 3 shortcuts x 2 depths x 5 seeds
    "depth_degradation": 8,     # plain/residual x 4 depths x 1 seed
    "bottleneck_ratio": 6,      # 3 ratios x 2 seeds
    "nas_pareto": 24,           # optuna budget
    "smoke": 4,                 # 2 shortcuts x 2 seeds
}

optuna.logging.set_verbosity(optuna.logging.WARNING)


def test_every_study_is_listed():
    assert sorted(path.stem for path in STUDY_FILES) == sorted(EXPECTED_TRIALS)


@pytest.mark.parametrize("path", STUDY_FILES, ids=[path.stem for path in STUDY_FILES])
def test_study_validates_and_dry_runs(path: Path):
    study = load_study(path)
    assert study.name == path.stem  # the run folder is named after the file
    assert study.search.trials == EXPECTED_TRIALS[path.stem]
    if study.search.strategy == "grid":
        assert len(grid_points(study)) * len(study.search.seeds) == EXPECTED_TRIALS[path.stem]
        assert study.grid.dropped_by_constraints == 0  # a study file should not waste grid points
    report = dry_run_report(study, samples=3)
    shown = min(3, len(grid_points(study))) if study.search.strategy == "grid" else 3
    assert report.startswith(f"study: {study.name}") and report.count(" M MACs") == shown
    assert all(info["levels"] is None or info["reference"] == info["levels"][0]
               for info in factors(study).values())


@pytest.mark.parametrize("path", STUDY_FILES, ids=[path.stem for path in STUDY_FILES])
def test_study_samples_resolve_to_valid_specs(path: Path):
    study = load_study(path)
    sampler_study = optuna.create_study(sampler=optuna.samplers.RandomSampler(seed=0))
    suggest = define_by_run(study)
    for _ in range(10):
        trial = sampler_study.ask()
        suggest(trial)
        plan = resolve(study, trial.params)
        assert plan.spec.num_classes == 10 and plan.train.seed in study.search.seeds


def _gpu_flags(path: Path) -> list[str]:
    """Every `--set X` written in the file's header comment."""
    words = [word for line in path.read_text().splitlines() if line.startswith("#") and "--set " in line
             for word in shlex.split(line.lstrip("#").rstrip("\\"))]
    return [words[i + 1] for i, word in enumerate(words) if word == "--set"]


@pytest.mark.parametrize("path", STUDY_FILES, ids=[path.stem for path in STUDY_FILES])
def test_gpu_budget_flags_in_the_header_apply(path: Path):
    flags = _gpu_flags(path)
    if path.stem == "smoke":
        assert flags == []
        return
    assert any(flag.startswith("data.root=") for flag in flags)
    study = load_study(path, flags)
    assert study.data.root is not None and study.search.resources.gpus > 0


def test_shortcut_ablation_is_the_papers_grid():
    study = load_study(STUDIES / "shortcut_ablation.yaml")
    assert factors(study) == {"shortcut": {"levels": ["A", "B", "none"], "reference": "A"},
                              "blocks_per_stage": {"levels": [3, 9], "reference": 3}}
    assert sorted({point.spec.num_layers for point in grid_points(study)}) == [20, 56]
    assert study.search.seeds == [0, 1, 2, 3, 4]
