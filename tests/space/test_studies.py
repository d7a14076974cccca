"""Every study file in studies/: it validates, dry-runs, has the size it claims, and its header's commands apply."""

from __future__ import annotations

import re
import shlex
from pathlib import Path

import optuna
import pytest

from models import complexity
from space import DATASET_CLASSES, define_by_run, dry_run_report, factors, grid_points, load_study, resolve

STUDIES = Path(__file__).resolve().parents[2] / "studies"
STUDY_FILES = sorted(STUDIES.glob("*.yaml"))

# Trials of each study's default budget; a new study file must be added here.
EXPECTED_TRIALS = {
    "shortcut_ablation": 30,    # 3 shortcuts x 2 depths x 5 seeds
    "depth_degradation": 8,     # plain/residual x 4 depths x 1 seed
    "bottleneck_ratio": 6,      # 3 ratios x 2 seeds
    "nas_pareto": 24,           # optuna budget
    "smoke": 4,                 # 2 shortcuts x 2 seeds
    "imagenet_shortcuts": 9,    # shortcuts A/B/C on ResNet-34 x 3 seeds
    "imagenet_degradation": 12,  # plain/residual x 18/34 layers x 3 seeds
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
        assert plan.spec.num_classes == DATASET_CLASSES[study.data.dataset]
        assert plan.train.seed in study.search.seeds


def _header_commands(path: Path) -> tuple[list[list[str]], list[list[str]]]:
    """The `--set` flags of the header comment: each `python -m search.run` command's (its continued lines
    included), and each line of `--set` flags on its own (an addition to the first command)."""
    commands: list[list[str]] = []
    additions: list[list[str]] = []
    words: list[str] | None = None
    for line in path.read_text().splitlines():
        if not line.startswith("#"):
            continue
        text = line.lstrip("#").strip()
        if words is None and text.startswith("python -m search.run "):
            words = []
        if words is not None:
            words += shlex.split(text.rstrip("\\"))
            if not text.endswith("\\"):
                commands.append([words[i + 1] for i, word in enumerate(words) if word == "--set"])
                words = None
        elif text.startswith("--set "):
            parts = shlex.split(text)
            additions.append([parts[i + 1] for i, word in enumerate(parts) if word == "--set"])
    return commands, additions


@pytest.mark.parametrize("path", STUDY_FILES, ids=[path.stem for path in STUDY_FILES])
def test_every_command_in_the_header_applies(path: Path):
    commands, additions = _header_commands(path)
    if path.stem == "smoke":
        assert commands == [] and additions == []
        return
    # Each command validates as written; one of them is the real run: the full data, on GPUs.
    studies = [load_study(path, flags) for flags in commands]
    assert any(study.data.root is not None and study.search.resources.gpus > 0 for study in studies)
    assert any(flag.startswith("data.root=") for flag in commands[0])
    for flags in additions:
        load_study(path, [*commands[0], *flags])


_DRY_RUN_ROW = re.compile(r"^  (?P<label>\S.*?)\s{3,}\d+ layers\s+[\d.]+ M params\s+(?P<macs>[\d.]+) M MACs", re.M)


def _dry_run_macs(report: str) -> dict[str, float]:
    """The MACs column of a dry run, by point label."""
    return {match["label"]: float(match["macs"]) * 1e6 for match in _DRY_RUN_ROW.finditer(report)}


def test_imagenet_shortcuts_dry_run_costs_what_the_paper_says_at_its_image_size():
    study = load_study(STUDIES / "imagenet_shortcuts.yaml")
    at_224 = _dry_run_macs(dry_run_report(study))
    assert sorted(at_224) == ["shortcut=A", "shortcut=B", "shortcut=C"]
    # He et al. 2015, Table 1: ResNet-34 is 3.6 x 10^9 FLOPs, which are multiply-accumulates.
    assert 3.55e9 <= at_224["shortcut=A"] <= 3.65e9
    assert at_224["shortcut=A"] < at_224["shortcut=B"] < at_224["shortcut=C"]
    # A proxy at 64 px costs (64 / 224)^2 as much (to within the stem's and pooling's rounding), and the
    # study's own numbers, constraints and memory check move with it: it is one image size everywhere.
    proxy = load_study(STUDIES / "imagenet_shortcuts.yaml", ["data.image_size=64"])
    at_64 = _dry_run_macs(dry_run_report(proxy))
    assert at_64["shortcut=A"] == pytest.approx(at_224["shortcut=A"] * (64 / 224) ** 2, rel=0.01)
    spec = grid_points(proxy)[0].spec
    assert proxy.search_space.measure(spec) == complexity(spec, 64)
    assert proxy.training_memory(spec, resolve(proxy, {"point": "shortcut=A", "seed": 0}).train).total < \
        study.training_memory(spec, resolve(study, {"point": "shortcut=A", "seed": 0}).train).total


def test_shortcut_ablation_is_the_papers_grid():
    study = load_study(STUDIES / "shortcut_ablation.yaml")
    assert factors(study) == {"shortcut": {"levels": ["A", "B", "none"], "reference": "A"},
                              "blocks_per_stage": {"levels": [3, 9], "reference": 3}}
    assert sorted({point.spec.num_layers for point in grid_points(study)}) == [20, 56]
    assert study.search.seeds == [0, 1, 2, 3, 4]
