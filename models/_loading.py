"""`models.load`: a trained architecture from a checkpoint folder or a run folder, in one line.

    model = models.load("runs/shortcut_ablation", rank=0)   # the best trial by val_acc
    spec = models.load_spec("runs/shortcut_ablation", rank=0)

Nothing here imports Ray, Optuna or pandas, and nothing read from disk is
executed: specs are safe YAML, metadata is JSON, weights are safetensors (or a
`torch.load(weights_only=True)` state dict).
"""

from __future__ import annotations

from pathlib import Path
from typing import Any, Mapping

import torch
from torch import nn

from runfolder import RESULTS_CSV, RESULTS_PARQUET

from ._checkpoint import (CheckpointError, WEIGHT_READERS, as_state_dict, check_state_dict,
                          is_checkpoint_folder, read_meta, read_spec, read_weights)
from ._describe import read_spec_text
from ._network import ResNet, build
from ._run_folder import TrialRecord, checkpoint_folder, find_trial, is_run_folder
from ._spec import ArchSpec

SPEC_SUFFIXES = (".yaml", ".yml", ".json")
# BatchNorm's step counter: not a weight, absent from checkpoints older than
# PyTorch 0.4.1, and unused by a model in eval mode.
BN_COUNTER_SUFFIX = "num_batches_tracked"


def _resolve(path: str | Path, rank: int | None, trial: str | int | None,
             with_weights: bool) -> tuple[Path | None, TrialRecord | None, int | None, Path]:
    """(checkpoint folder or None, results row or None, rank or None, the folder named) for a path."""
    given = Path(path)
    if not given.exists():
        raise CheckpointError(f"{given}: no such checkpoint folder or run folder")
    folder = given.parent if given.is_file() and given.name in WEIGHT_READERS else given
    if not folder.is_dir():
        raise CheckpointError(f"{given}: not a checkpoint folder or run folder (a file); pass the "
                              f"folder that holds arch.yaml, or a run folder with rank=/trial=")
    if is_run_folder(folder):
        record, position = find_trial(folder, rank, trial, with_weights)
        checkpoint = checkpoint_folder(folder, record) if record.checkpoint else None
        if with_weights and checkpoint is not None and not checkpoint.is_dir():
            raise CheckpointError(f"{checkpoint}: missing, though {folder.name}/results lists it as the "
                                  f"checkpoint of {record.trial_id}; the folder was moved or deleted")
        return checkpoint, record, position, folder
    if rank is not None or trial is not None:
        what = "a checkpoint folder" if is_checkpoint_folder(folder) else "not a run folder"
        raise CheckpointError(f"{folder}: rank= and trial= pick a trial of a run folder (one with "
                              f"{RESULTS_CSV}), but this is {what}")
    if not is_checkpoint_folder(folder):
        raise CheckpointError(f"{folder}: neither a checkpoint folder (no arch.yaml) nor a run folder "
                              f"(no {RESULTS_CSV} or {RESULTS_PARQUET})")
    return folder, None, None, folder


def _recorded_spec(record: TrialRecord, run_dir: Path) -> ArchSpec:
    """The spec in a results row's arch_yaml column."""
    try:
        return ArchSpec.from_yaml(record.arch_yaml)
    except Exception as error:  # ValueError from the spec, or a YAML error
        first_line = str(error).splitlines()[0] if str(error) else type(error).__name__
        raise CheckpointError(f"{run_dir}: the arch_yaml of trial {record.trial_id} is not a valid spec "
                              f"({first_line})") from None


def _trial_info(record: TrialRecord, position: int | None, run_dir: Path) -> dict[str, Any]:
    return {"run_dir": str(run_dir), "trial_id": record.trial_id, "rank": position,
            "val_acc_best": record.val_acc_best, "test_acc": record.test_acc}


def load(path: str | Path, rank: int | None = None, trial: str | int | None = None,
         map_location: str | torch.device = "cpu") -> ResNet:
    """A trained network in eval mode, with `.spec` and `.checkpoint_meta`, from a checkpoint or run folder.

    `path` is a checkpoint folder (arch.yaml + model.safetensors + meta.json),
    or a run folder with `rank=k` (the k-th best complete trial with kept
    weights by val_acc_best, 0 = best; ties by trial id) or `trial="trial_0003"`.
    Raises CheckpointError, naming the file and what is wrong, for anything
    missing, corrupt or inconsistent.
    """
    folder, record, position, named = _resolve(path, rank, trial, with_weights=True)
    if folder is None:  # find_trial already refuses trials without weights; this keeps it so
        raise CheckpointError(f"{named}: the chosen trial has no kept weights")
    spec = read_spec(folder)
    meta = read_meta(folder)
    if meta.get("spec_key", spec.key()) != spec.key():
        raise CheckpointError(f"{folder}: meta.json was written for spec {meta['spec_key']}, but arch.yaml "
                              f"holds spec {spec.key()}; the files come from different checkpoints")
    if record is not None and record.arch_yaml and _recorded_spec(record, named) != spec:
        raise CheckpointError(f"{folder}: arch.yaml differs from the arch_yaml that {named.name}/results "
                              f"records for {record.trial_id}; the checkpoint folder belongs to another trial")
    state = read_weights(folder, spec)
    with torch.device("meta"):
        # Built without memory or initialisation: every tensor comes from the file.
        model = build(spec)
    check_state_dict(model, state, folder)
    expected = model.state_dict()
    state = {name: tensor.to(dtype=expected[name].dtype) for name, tensor in state.items()}
    model.load_state_dict(state, strict=True, assign=True)
    model = model.to(map_location).eval()
    meta = {**meta, "path": str(folder)}
    if record is not None:
        meta["trial"] = _trial_info(record, position, named)
    model.checkpoint_meta = meta
    return model


def _spec_from_file(path: Path) -> ArchSpec:
    text = read_spec_text(path, CheckpointError)
    try:
        return ArchSpec.from_json(text) if path.suffix == ".json" else ArchSpec.from_yaml(text)
    except ValueError as error:
        raise CheckpointError(f"{path}: not a valid ArchSpec: {error}") from None
    except Exception as error:  # yaml syntax errors and unsafe tags
        first_line = str(error).splitlines()[0] if str(error) else ""
        raise CheckpointError(f"{path}: not a valid spec file ({type(error).__name__}: {first_line})") from None


def load_spec(path: str | Path, rank: int | None = None, trial: str | int | None = None) -> ArchSpec:
    """Just the ArchSpec (build an untrained copy with `models.build`); needs no weights.

    `path` is a checkpoint folder, a spec YAML/JSON file, or a run folder with
    `rank=k` (the k-th best complete trial by val_acc_best, weights kept or
    not) or `trial=`.
    """
    given = Path(path)
    if given.is_file() and given.suffix in SPEC_SUFFIXES:
        return _spec_from_file(given)
    folder, record, _, named = _resolve(given, rank, trial, with_weights=False)
    if record is None and folder is not None:
        return read_spec(folder)
    if record is None or not record.arch_yaml:
        trial_id = record.trial_id if record is not None else trial
        raise CheckpointError(f"{named}: trial {trial_id} has no arch_yaml in the results table "
                              f"(it was rejected before a spec was made)")
    return _recorded_spec(record, named)


def _without_bn_counters(names: list[str]) -> list[str]:
    return [name for name in names if not name.endswith(BN_COUNTER_SUFFIX)]


def load_state_dict_by_shape(model: nn.Module, state_dict: Mapping[str, torch.Tensor],
                             source: str = "state_dict") -> nn.Module:
    """Load weights whose names differ from `model`'s by pairing tensors in order and checking shapes.

    For checkpoints of other code bases that store the same network under other
    names (`linear` for `fc`, `shortcut` for `downsample`, a `module.` prefix):
    the i-th source tensor goes into the i-th entry of `model.state_dict()`.
    Both sides must have the same number of tensors and equal shapes pair by
    pair, else CheckpointError names the first pair that differs (index, both
    names, both shapes). BatchNorm `num_batches_tracked` counters are ignored
    on both sides (old checkpoints lack them; eval mode does not use them), so
    the model keeps its own. Returns `model`, loaded in place. Torchvision
    ResNet state dicts need none of this: their names match the presets, so
    `models.build(models.preset("resnet50")).load_state_dict(sd)` works as is.
    """
    state = as_state_dict(state_dict, source)
    target_state = model.state_dict()
    targets = _without_bn_counters(list(target_state))
    sources = _without_bn_counters(list(state))
    for index, (target, name) in enumerate(zip(targets, sources)):
        want, got = tuple(target_state[target].shape), tuple(state[name].shape)
        if want != got:
            raise CheckpointError(f"{source}: tensor {index} does not fit: {name} has shape {got}, but the "
                                  f"model's {target} has shape {want}; the two networks differ or store "
                                  f"their tensors in another order")
    if len(targets) != len(sources):
        longer, extra = ("source", sources[len(targets):]) if len(sources) > len(targets) else (
            "model", targets[len(sources):])
        raise CheckpointError(f"{source}: {len(sources)} tensors, but the model has {len(targets)} "
                              f"(not counting BN num_batches_tracked); the first {len(extra)} extra on the "
                              f"{longer} side: {', '.join(extra[:3])}")
    renamed = {target: state[name] for target, name in zip(targets, sources)}
    # strict=False only for the BN counters left out above: every other entry was paired.
    model.load_state_dict(renamed, strict=False)
    return model
