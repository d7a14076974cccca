"""models.load / load_spec / load_state_dict_by_shape: round trips, and a clear error for every broken input."""

from __future__ import annotations

import json
import os
import pickle
import shutil
import subprocess
import sys
from pathlib import Path

import pandas as pd
import pytest
import torch
from safetensors.torch import save_file

import models
import runfolder
from models import ArchSpec, CheckpointError, StageSpec

ROOT = Path(__file__).resolve().parents[2]
GOLDEN = Path(__file__).parent / "golden" / "torchvision_state_dicts.json"
WIDTHS = (8, 12, 16)  # one tiny architecture per trial


def _tiny_spec(width: int) -> ArchSpec:
    return ArchSpec(stages=(StageSpec(1, width, 1), StageSpec(1, 2 * width, 2)), stem="cifar",
                    stem_width=8, shortcut="B", num_classes=10)


def make_run(run_dir: Path) -> Path:
    """A run folder as the runner leaves it: three trained trials, weights kept, tables written."""
    from runfolder import ResultsTables, trial_row
    from search.train import fit
    from space import DataSettings, TrainSettings

    data = DataSettings(dataset="synthetic", synthetic_train=160, synthetic_test=100)
    tables = ResultsTables(run_dir)
    for number, width in enumerate(WIDTHS):
        spec = _tiny_spec(width)
        # One thread: on 2 shared cores, nets this small train several times faster.
        train = TrainSettings(epochs=1, batch_size=32, lr=0.05, schedule="cosine", seed=number, max_threads=1)
        trial = f"trial_{number:04d}"
        metrics = fit(spec, train, data, device="cpu", save_to=run_dir / "checkpoints" / trial)
        tables.add_trial(trial_row(number=number, status="complete", seed=number, factors={"width": width},
                                   spec=spec, train=train.to_dict(), metrics=metrics))
    tables.set_checkpoints({t: f"checkpoints/{t}" for t in tables.rows})
    tables.close()  # materialise the tables, as the runner does when a run ends
    return run_dir


@pytest.fixture(scope="module")
def run_dir(tmp_path_factory: pytest.TempPathFactory) -> Path:
    """A trained tiny run; tests that break it work on a copy."""
    threads = torch.get_num_threads()  # fit() applies max_threads to the whole process
    try:
        return make_run(tmp_path_factory.mktemp("run") / "tiny")
    finally:
        torch.set_num_threads(threads)


@pytest.fixture
def run_copy(run_dir: Path, tmp_path: Path) -> Path:
    return Path(shutil.copytree(run_dir, tmp_path / "copy"))


def _results(run_dir: Path) -> pd.DataFrame:
    return pd.read_parquet(run_dir / "results.parquet")


def _by_validation(run_dir: Path) -> list[str]:
    results = _results(run_dir)
    return list(runfolder.ranked_frame(results)["trial_id"])


def _rewrite_results(run_dir: Path, **changes_by_trial: dict) -> None:
    """Change cells of the results tables (both formats, as the runner keeps them in step)."""
    results = _results(run_dir)
    for trial, changes in changes_by_trial.items():
        for column, value in changes.items():
            results.loc[results["trial_id"] == trial, column] = value
    results.to_parquet(run_dir / "results.parquet", index=False)
    results.to_csv(run_dir / "results.csv", index=False)


# ------------------------------------------------------------ round trips
def test_rank_0_reevaluates_to_the_recorded_test_accuracy(run_dir: Path) -> None:
    from search.retrain import measure_test_acc

    model = models.load(run_dir, rank=0)
    best = _by_validation(run_dir)[0]
    recorded = _results(run_dir).set_index("trial_id").loc[best]
    assert isinstance(model, models.ResNet) and not model.training
    assert model.spec == ArchSpec.from_yaml(recorded["arch_yaml"])
    assert model.checkpoint_meta["trial"]["trial_id"] == best
    assert model.checkpoint_meta["trial"]["rank"] == 0
    assert 0 < recorded["test_acc"] < 1
    # Exactly the fraction the trial recorded: same weights, split, normalisation and kernels.
    assert measure_test_acc(model) == recorded["test_acc"]


def test_every_rank_follows_validation_accuracy_not_test(run_dir: Path) -> None:
    order = _by_validation(run_dir)
    assert [models.load(run_dir, rank=k).checkpoint_meta["trial"]["trial_id"] for k in range(3)] == order
    assert [models.load_spec(run_dir, rank=k).key() for k in range(3)] == \
        [_tiny_spec(WIDTHS[int(t[-4:])]).key() for t in order]


def test_trial_id_checkpoint_folder_and_weights_file_load_the_same_weights(run_dir: Path) -> None:
    by_trial = models.load(run_dir, trial="trial_0001")
    by_number = models.load(run_dir, trial=1)
    by_folder = models.load(run_dir / "checkpoints" / "trial_0001")
    by_file = models.load(run_dir / "checkpoints" / "trial_0001" / "model.safetensors")
    for other in (by_number, by_folder, by_file):
        assert all(torch.equal(a, b) for a, b in zip(by_trial.state_dict().values(), other.state_dict().values()))
    assert by_folder.checkpoint_meta["train_settings"]["seed"] == 1
    assert by_folder.checkpoint_meta["versions"]["torch"] == torch.__version__
    assert "trial" not in by_folder.checkpoint_meta


def test_load_spec_from_folder_file_and_run(run_dir: Path) -> None:
    spec = _tiny_spec(WIDTHS[2])
    assert models.load_spec(run_dir / "checkpoints" / "trial_0002") == spec
    assert models.load_spec(run_dir / "checkpoints" / "trial_0002" / "arch.yaml") == spec
    assert models.load_spec(run_dir, trial="trial_0002") == spec
    untrained = models.build(models.load_spec(run_dir, rank=0))
    assert untrained.spec == models.load(run_dir, rank=0).spec


def test_results_csv_is_enough_and_parquet_alone_works_too(run_copy: Path) -> None:
    expected = models.load(run_copy, rank=0).checkpoint_meta["trial"]
    (run_copy / "results.parquet").unlink()
    assert models.load(run_copy, rank=0).checkpoint_meta["trial"] == expected
    _results_from_csv = pd.read_csv(run_copy / "results.csv")
    _results_from_csv.to_parquet(run_copy / "results.parquet", index=False)
    (run_copy / "results.csv").unlink()
    assert models.load(run_copy, rank=0).checkpoint_meta["trial"] == expected


def test_pickled_state_dict_loads_with_weights_only(run_copy: Path) -> None:
    folder = run_copy / "checkpoints" / "trial_0000"
    reference = models.load(folder)
    torch.save({"state_dict": reference.state_dict()}, folder / "model.pt")
    (folder / "model.safetensors").unlink()
    loaded = models.load(folder)
    assert all(torch.equal(a, b) for a, b in zip(reference.state_dict().values(), loaded.state_dict().values()))


def test_import_models_pulls_in_no_search_machinery(run_dir: Path) -> None:
    code = ("import sys, models\n"
            f"models.load({str(run_dir)!r}, rank=0)\n"
            "print(sorted(m for m in ('ray', 'optuna', 'pandas', 'pyarrow', 'search', 'space', 'onnx') "
            "if m in sys.modules))")
    result = subprocess.run([sys.executable, "-c", code], cwd=ROOT, text=True, capture_output=True, timeout=120)
    assert result.returncode == 0, result.stderr
    assert result.stdout.strip() == "[]"


# -------------------------------------------------------------- errors
def _error(path: Path | str, **kwargs: object) -> str:
    with pytest.raises(CheckpointError) as caught:
        models.load(path, **kwargs)
    message = str(caught.value)
    assert "\n" not in message
    return message


def test_missing_folder(tmp_path: Path) -> None:
    message = _error(tmp_path / "nowhere")
    assert "nowhere: no such checkpoint folder or run folder" in message


def test_folder_that_is_neither_checkpoint_nor_run(tmp_path: Path) -> None:
    assert "neither a checkpoint folder (no arch.yaml) nor a run folder" in _error(tmp_path)


def test_missing_weights_file(run_copy: Path) -> None:
    folder = run_copy / "checkpoints" / "trial_0000"
    (folder / "model.safetensors").unlink()
    message = _error(folder)
    assert "no weights file (model.safetensors or model.pt or model.pth)" in message
    assert "load_spec" in message


def test_missing_spec_file(run_copy: Path) -> None:
    folder = run_copy / "checkpoints" / "trial_0000"
    (folder / "arch.yaml").unlink()
    assert "neither a checkpoint folder (no arch.yaml)" in _error(folder)


def test_truncated_safetensors(run_copy: Path) -> None:
    weights = run_copy / "checkpoints" / "trial_0000" / "model.safetensors"
    content = weights.read_bytes()
    weights.write_bytes(content[: len(content) // 2])
    message = _error(weights.parent)
    assert str(weights) in message and "corrupt or truncated" in message


def test_weights_of_another_spec(run_copy: Path) -> None:
    folder = run_copy / "checkpoints" / "trial_0000"
    shutil.copy(run_copy / "checkpoints" / "trial_0002" / "model.safetensors", folder / "model.safetensors")
    message = _error(folder)
    assert f"saved for spec {_tiny_spec(WIDTHS[2]).key()}" in message
    assert "different checkpoints" in message


def test_state_dict_keys_that_do_not_fit_are_named(run_copy: Path) -> None:
    folder = run_copy / "checkpoints" / "trial_0000"
    state = models.load(folder).state_dict()
    state["head.weight"] = state.pop("fc.weight")
    save_file({k: v.contiguous() for k, v in state.items()}, str(folder / "model.safetensors"))
    message = _error(folder)
    assert "missing 1: fc.weight" in message and "unexpected 1: head.weight" in message
    assert "load_state_dict_by_shape" in message


def test_state_dict_with_a_wrong_shape_is_named(run_copy: Path) -> None:
    folder = run_copy / "checkpoints" / "trial_0000"
    state = models.load(folder).state_dict()
    state["fc.bias"] = torch.zeros(3)
    save_file({k: v.contiguous() for k, v in state.items()}, str(folder / "model.safetensors"))
    assert "fc.bias (3,) (spec wants (10,))" in _error(folder)


class _NotAStateDict:
    """A class only this test module defines: weights_only must refuse to import it."""

    def __init__(self) -> None:
        self.weights = torch.ones(2)


class _RunsAShellCommand:
    def __init__(self, marker: Path) -> None:
        self.marker = marker

    def __reduce__(self) -> tuple:
        return (os.system, (f"touch {self.marker}",))


def test_pickled_object_is_refused(run_copy: Path) -> None:
    folder = run_copy / "checkpoints" / "trial_0000"
    (folder / "model.safetensors").unlink()
    torch.save(_NotAStateDict(), folder / "model.pt")
    message = _error(folder)
    assert "refused to load" in message and "_NotAStateDict" in message
    assert "nothing in the file was run" in message


def test_pickle_that_would_run_code_is_refused_without_running_it(run_copy: Path) -> None:
    folder = run_copy / "checkpoints" / "trial_0000"
    (folder / "model.safetensors").unlink()
    marker = run_copy / "pwned"
    (folder / "model.pth").write_bytes(pickle.dumps(_RunsAShellCommand(marker)))
    message = _error(folder)
    assert "refused to load" in message
    assert not marker.exists()


def test_corrupt_and_future_metadata(run_copy: Path) -> None:
    folder = run_copy / "checkpoints" / "trial_0000"
    meta = json.loads((folder / "meta.json").read_text())
    (folder / "meta.json").write_text(json.dumps({**meta, "format_version": 99}))
    assert "format_version 99 is newer" in _error(folder)
    (folder / "meta.json").write_text("{not json")
    assert "meta.json: not valid JSON" in _error(folder)


def test_spec_file_with_a_python_tag_is_refused(run_copy: Path) -> None:
    folder = run_copy / "checkpoints" / "trial_0000"
    (folder / "arch.yaml").write_text("!!python/object/apply:os.system ['echo pwned']\n")
    assert "arch.yaml: not a valid spec file" in _error(folder)


def test_rank_out_of_range(run_dir: Path) -> None:
    assert _error(run_dir, rank=7).endswith("rank 7: the run has 3 trials with kept weights (ranks 0..2)")


def test_rank_of_a_trial_whose_weights_were_dropped(run_copy: Path) -> None:
    dropped = _by_validation(run_copy)[2]
    _rewrite_results(run_copy, **{dropped: {"checkpoint": ""}})
    message = _error(run_copy, rank=2)
    assert "rank 2: the run has 2 trials with kept weights (ranks 0..1)" in message
    assert dropped in message and "python -m search.retrain" in message
    trial_message = _error(run_copy, trial=dropped)
    assert "has no kept weights" in trial_message and "keep_checkpoints" in trial_message
    # The spec is in the results table, weights or not.
    assert models.load_spec(run_copy, trial=dropped) == models.load_spec(run_copy, rank=2)


def test_checkpoint_folder_listed_but_deleted(run_copy: Path) -> None:
    shutil.rmtree(run_copy / "checkpoints" / "trial_0001")
    message = _error(run_copy, trial="trial_0001")
    assert "trial_0001: missing" in message and "moved or deleted" in message


def test_results_row_pointing_at_another_trials_checkpoint(run_copy: Path) -> None:
    _rewrite_results(run_copy, trial_0000={"checkpoint": "checkpoints/trial_0001"})
    message = _error(run_copy, trial="trial_0000")
    assert "arch.yaml differs from the arch_yaml" in message and "belongs to another trial" in message


def test_failed_trial_has_no_weights(run_copy: Path) -> None:
    _rewrite_results(run_copy, trial_0001={"status": "failed", "error": "diverged: loss became nan"})
    message = _error(run_copy, trial="trial_0001")
    assert "trial_0001 is failed (diverged: loss became nan)" in message


@pytest.mark.parametrize("kwargs, expected", [
    ({}, "pass rank=K (0 = the best by val_acc_best) or trial="),
    ({"rank": 0, "trial": "trial_0000"}, "pass one of them"),
    ({"rank": -1}, "rank: got -1; allowed: an integer >= 0"),
    ({"rank": True}, "rank: got True"),
    ({"trial": "trial_9999"}, "trial: got 'trial_9999'; allowed: a trial_id of the results table (trial_0000"),
])
def test_bad_rank_or_trial(run_dir: Path, kwargs: dict, expected: str) -> None:
    assert expected in _error(run_dir, **kwargs)


def test_rank_on_a_checkpoint_folder(run_dir: Path) -> None:
    assert "this is a checkpoint folder" in _error(run_dir / "checkpoints" / "trial_0000", rank=0)


# ------------------------------------------------------- foreign weights
def test_torchvision_names_load_into_the_preset_as_they_are() -> None:
    shapes = json.loads(GOLDEN.read_text())["models"]["resnet18"]
    # Random values in torchvision's names and shapes (BN counters are 0-d).
    state = {name: torch.randn(shape) if shape else torch.tensor(0) for name, shape in shapes.items()}
    model = models.build(models.preset("resnet18"))
    model.load_state_dict(state, strict=True)
    assert torch.equal(model.fc.weight, state["fc.weight"])


def _foreign_names(state: dict[str, torch.Tensor]) -> dict[str, torch.Tensor]:
    """Another code base's names for the same tensors, in the same order, without BN counters."""
    renamed = {}
    for name, tensor in state.items():
        if name.endswith("num_batches_tracked"):
            continue
        name = name.replace("downsample", "shortcut").replace("fc.", "linear.")
        renamed[f"module.{name}"] = tensor.clone()
    return renamed


@pytest.mark.parametrize("name", ["cifar_resnet20", "resnet18"])
def test_differently_named_state_dict_loads_by_shape(name: str) -> None:
    torch.manual_seed(0)
    source = models.build(models.preset(name)).eval()
    target = models.build(models.preset(name)).eval()
    foreign = _foreign_names(source.state_dict())
    with pytest.raises(RuntimeError):
        target.load_state_dict(foreign)
    assert models.load_state_dict_by_shape(target, foreign) is target
    x = torch.randn(2, 3, 32, 32)
    with torch.no_grad():
        assert torch.equal(source(x), target(x))


def test_shape_mismatch_names_the_first_pair() -> None:
    model = models.build(_tiny_spec(8))
    state = _foreign_names(models.build(_tiny_spec(12)).state_dict())
    with pytest.raises(CheckpointError) as caught:
        models.load_state_dict_by_shape(model, state, source="other.pt")
    # Tensors 0-4 (stem conv and BN) agree; the wider net's first block conv does not.
    assert str(caught.value).startswith(
        "other.pt: tensor 5 does not fit: module.layer1.0.conv1.weight has shape (12, 8, 3, 3), "
        "but the model's layer1.0.conv1.weight has shape (8, 8, 3, 3)")


def test_count_mismatch_is_named() -> None:
    model = models.build(_tiny_spec(8))
    state = _foreign_names(model.state_dict())
    state.pop(next(reversed(state)))  # drop the last tensor (the fc bias)
    with pytest.raises(CheckpointError) as caught:
        models.load_state_dict_by_shape(model, state)
    message = str(caught.value)
    assert "tensors, but the model has" in message and "extra on the model side: fc.bias" in message


def test_not_a_state_dict_is_refused() -> None:
    with pytest.raises(CheckpointError, match="not a state dict"):
        models.load_state_dict_by_shape(models.build(_tiny_spec(8)), {"weight": [1.0, 2.0]})
