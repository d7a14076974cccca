"""Every study in studies/ trains for real: one sampled architecture per file, one short epoch.

The full runner path is covered by the smoke study (test_run.py); this checks
that each example's specs, data and settings make a trainable trial.
"""

from __future__ import annotations

from pathlib import Path

import optuna
import pytest

import imagefeed
import space
from search.train import fit
from tests.imagefeed import layouts

STUDIES = sorted((Path(__file__).resolve().parents[2] / "studies").glob("*.yaml"))
SHORT = ["train.epochs=1", "train.warmup_epochs=0", "data.train_limit=128", "train.batch_size=32"]


def _first_plan(study: space.Study) -> space.TrialPlan:
    if study.search.strategy == "grid":
        point = space.grid_points(study)[0]
        return space.resolve(study, {"point": point.label, "seed": study.search.seeds[0]})
    sampler_study = optuna.create_study(sampler=optuna.samplers.RandomSampler(seed=0))
    trial = sampler_study.ask()
    space.define_by_run(study)(trial)
    return space.resolve(study, trial.params)


@pytest.fixture(scope="module")
def small_folder(tmp_path_factory: pytest.TempPathFactory) -> Path:
    """A 3-class image folder of small JPEGs: what a study on streamed data (ImageNet) trains on here."""
    return layouts.imagefolder(tmp_path_factory.mktemp("imagefolder"), classes=3, per_class=8, size=(48, 40))


def _stand_in(path: Path, folder: Path) -> list[str]:
    """--set flags that put a streamed-data study on the small folder at 32 px: its data is not on this machine."""
    dataset = space.load_study(path, SHORT).data_settings().dataset
    if not imagefeed.DATASET_KINDS[dataset].streamed:
        return []
    return ["data.dataset=imagefolder", f"data.root={folder}", "data.image_size=32", "space.num_classes=3"]


@pytest.mark.parametrize("path", STUDIES, ids=[p.stem for p in STUDIES])
def test_each_study_trains_one_sampled_architecture(path: Path, small_folder: Path) -> None:
    study = space.load_study(path, [*SHORT, *_stand_in(path, small_folder)])
    plan = _first_plan(study)
    assert space.constraint_violation(study, plan.spec) is None
    result = fit(plan.spec, plan.train, study.data_settings())
    assert result["status"] == "complete", result["error"]
    assert 0.0 <= result["test_acc"] <= 1.0 and result["epochs_run"] == 1
