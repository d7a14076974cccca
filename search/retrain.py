"""`python -m search.retrain runs/<study> --top K --seeds S`: retrain the best architectures from scratch.

A search ranks architectures on one short, noisy run each. Before a choice is
reported, the top K (by val_acc_best, never by test accuracy) are trained again
from scratch with S seeds on train+val and tested once each, as the RegNet paper
does with its best models (Radosavovic et al. 2020, arXiv 2003.13678). The runs
go into `retrain.parquet` / `retrain.csv` beside the study's results (appended;
a run already recorded is not repeated), the summary is printed as
mean ± std over seeds, and the report gains a "Retrained" section. Each
retrained model's weights are a checkpoint folder under
`retrained/<trial>_seed<s>_<hash>/`, loaded like any other with `models.load`.

Each architecture keeps the training settings of its trial (its `train_json`
cell); `--set train.epochs=30` and other `train.*` / `data.*` overrides
apply on top. Bad input gets one line on stderr and exit status 2; a retrain
that diverges is recorded as failed and the exit status is 1.
"""

from __future__ import annotations

import dataclasses
import hashlib
import json
import math
import sys
import time
from pathlib import Path
from typing import Any, Callable, Mapping

import pandas as pd
import torch
import yaml

import models
import runfolder
from models import ArchSpec
from runfolder import RANKING_COLUMN
from space import DataSettings, TrainSettings

from . import datasets
from models.cli import OneLineParser
from .train import evaluate, fit, pick_device

EXIT_FAILED_RUN = 1
EXIT_BAD_INPUT = 2
# Study sections an override may change here: the specs are fixed by the search.
OVERRIDABLE_SECTIONS = ("train", "data")


class RetrainError(ValueError):
    """The run folder or the flags do not allow a retrain; the message says why."""


# ------------------------------------------------------------ the trials
def read_results(run_dir: Path) -> pd.DataFrame:
    """The run's results table, with the columns a retrain needs."""
    if not runfolder.RunFolder(run_dir).has_results():
        raise RetrainError(f"{run_dir}: no {runfolder.RESULTS_PARQUET} or {runfolder.RESULTS_CSV}; give a run folder "
                           f"written by python -m search.run")
    try:
        return runfolder.read_results(run_dir, required=("trial_id", "status", RANKING_COLUMN, "arch_key",
                                                         "arch_yaml"))
    except runfolder.RunFolderError as error:
        raise RetrainError(f"{error}; give a run folder written by python -m search.run") from None


def top_trials(results: pd.DataFrame, top: int) -> list[dict[str, Any]]:
    """The best trial of each of the `top` best distinct architectures, in the run-folder ranking."""
    ranked = runfolder.ranked_frame(results)
    best_per_architecture = ranked.drop_duplicates("arch_key", keep="first")
    if best_per_architecture.empty:
        raise RetrainError("results table: no complete trial with a val_acc_best to rank; nothing to retrain")
    return best_per_architecture.head(top).drop(columns="rank").to_dict("records")


def _as_float(value: Any) -> float:
    try:
        return float(value)
    except (TypeError, ValueError):
        return math.nan


def _legacy_train_settings(row: Mapping[str, Any]) -> dict[str, Any]:
    """Settings of a row written before train_json existed, from its typed `train.*` parquet cells."""
    values: dict[str, Any] = {}
    for settings_field in dataclasses.fields(TrainSettings):
        value = row.get(runfolder.TRAIN_PREFIX + settings_field.name)
        if runfolder.is_missing(value):
            continue
        if hasattr(value, "item"):  # a numpy scalar from parquet
            value = value.item()
        default = settings_field.default
        if isinstance(value, str) and isinstance(default, tuple):
            value = yaml.safe_load(value)  # tuples were stored as their text, "[0.5, 0.75]"
        elif isinstance(value, float) and isinstance(default, int) and not isinstance(default, bool) \
                and value.is_integer():
            value = int(value)  # a nullable int column comes back as float
        values[settings_field.name] = value
    return values


def train_settings_from_row(row: Mapping[str, Any]) -> TrainSettings:
    """The TrainSettings a trial ran with: its train_json (or, in older run folders, its train.* cells)."""
    try:
        values = runfolder.train_settings_of(row)
        if values is None:
            values = _legacy_train_settings(row)
        return TrainSettings.from_dict(values)
    except (TypeError, ValueError) as error:
        raise RetrainError(f"results table: the training settings of {row.get('trial_id')} cannot be read "
                           f"({error})") from None


# ------------------------------------------------------------- overrides
def _section(override: str) -> tuple[str, str]:
    """("train", "epochs") for "train.epochs=3"."""
    section, _, name = override.split("=", 1)[0].strip().partition(".")
    return section, name


def check_override_sections(overrides: list[str]) -> None:
    """Refuse --set outside train.* and data.*: the specs and search settings are the study's."""
    for text in overrides:
        if _section(text)[0] not in OVERRIDABLE_SECTIONS:
            raise RetrainError(f"--set {text}: a retrain keeps the searched specs and search settings; "
                               f"allowed: train.* and data.* fields")


def train_overrides(study: Any, overrides: list[str]) -> dict[str, Any]:
    """The `train.*` values the --set flags gave, as the validated study holds them."""
    check_override_sections(overrides)
    changes: dict[str, Any] = {}
    for text in overrides:
        section, name = _section(text)
        if section != "train":
            continue  # data.* already shaped study.data_settings()
        field_name = name.split(".")[0].split("[")[0]
        if study.is_searched(f"train.{field_name}"):
            raise RetrainError(f"--set {text}: train.{field_name} is still searched in the study; "
                               f"allowed: one concrete value")
        value = study.search_space.train.get(field_name)
        changes[field_name] = tuple(value) if isinstance(value, list) else value
    return changes


# ---------------------------------------------------------------- output
def _recorded(run_dir: Path) -> pd.DataFrame:
    try:
        recorded = runfolder.read_retrain(run_dir)
    except runfolder.RunFolderError as error:
        raise RetrainError(f"{error}; move it away to start the retrain table afresh") from None
    return pd.DataFrame() if recorded is None else recorded


def _run_key(source_trial_id: str, seed: int, train: TrainSettings, data: DataSettings) -> str:
    """What makes two retrain runs the same run: trial, seed and every setting."""
    return json.dumps({"trial": source_trial_id, "seed": seed, "train": train.to_dict(),
                       "data": data.to_dict()}, sort_keys=True)


def summary(frame: pd.DataFrame) -> pd.DataFrame:
    """Complete retrain runs per architecture: n, mean and sample std of test_acc, and its search scores."""
    done = frame[frame["status"] == "complete"] if "status" in frame else frame.iloc[0:0]
    if done.empty:
        return pd.DataFrame(columns=["arch_key", "label", "source_trial_id", "search_val_acc",
                                     "search_test_acc", "n", "mean", "std", "params"])
    grouped = done.groupby("arch_key", sort=False)
    table = grouped.agg(label=("label", "first"), source_trial_id=("source_trial_id", "first"),
                        search_val_acc=("source_val_acc_best", "first"),
                        search_test_acc=("source_test_acc", "first"),
                        n=("test_acc", "count"), mean=("test_acc", "mean"),
                        std=("test_acc", "std"), params=("params", "first")).reset_index()
    return table.sort_values("mean", ascending=False, kind="stable").reset_index(drop=True)


def _percent(value: float) -> str:
    return "—" if runfolder.is_missing(value) else f"{100 * value:.2f}"


def format_summary(table: pd.DataFrame) -> str:
    """The printed table: test accuracy as mean ± std over n seeds per architecture."""
    rows = [("arch_key", "source trial", "search val %", "search test %", "n", "retrained test %", "label")]
    for row in table.to_dict("records"):
        spread = f"{_percent(row['mean'])} ± {_percent(row['std'])}"
        rows.append((row["arch_key"], row["source_trial_id"], _percent(row["search_val_acc"]),
                     _percent(row["search_test_acc"]), str(row["n"]), spread, row["label"] or "-"))
    widths = [max(len(r[i]) for r in rows) for i in range(len(rows[0]))]
    lines = ["  ".join(cell.ljust(w) for cell, w in zip(row, widths)).rstrip() for row in rows]
    lines.insert(1, "  ".join("-" * w for w in widths))
    return "\n".join(lines) + "\n(mean ± sample std over seeds; — with a single seed)"


# ------------------------------------------------------------- retraining
def retrain(run_dir: Path, top: int, seeds: int, overrides: list[str] | None = None,
            device: str | None = None, keep_weights: bool = True,
            log: Callable[[str], None] = print) -> tuple[pd.DataFrame, pd.DataFrame]:
    """Retrain the `top` best architectures of a run with seeds 0..`seeds`-1; return (all of retrain.parquet, this call's rows)."""
    if not Path(run_dir).is_dir():
        return _retrain(run_dir, top, seeds, overrides, device, keep_weights, log)  # says what is wrong
    # The run folder's one writer while it retrains: never beside a search.run driver or another retrain.
    lock = runfolder.RunFolderLock(run_dir, command="python -m search.retrain", create=False)
    try:
        lock.acquire()
    except runfolder.RunFolderError as error:
        raise RetrainError(str(error)) from None
    try:
        if lock.note:
            from ._ray import stop_ray_left_by

            stop_ray_left_by(lock.previous)  # the Ray a killed search.run driver of this folder left
            log(f"note: {lock.note}")
        return _retrain(run_dir, top, seeds, overrides, device, keep_weights, log)
    finally:
        lock.release()


def _retrain(run_dir: Path, top: int, seeds: int, overrides: list[str] | None, device: str | None,
             keep_weights: bool, log: Callable[[str], None]) -> tuple[pd.DataFrame, pd.DataFrame]:
    import space

    overrides = list(overrides or [])
    if isinstance(top, bool) or not isinstance(top, int) or top < 1:
        raise RetrainError(f"--top: got {top!r}; allowed: an integer >= 1")
    if isinstance(seeds, bool) or not isinstance(seeds, int) or seeds < 1:
        raise RetrainError(f"--seeds: got {seeds!r}; allowed: an integer >= 1")
    if not run_dir.is_dir():
        raise RetrainError(f"{run_dir}: no such run folder")
    folder = runfolder.RunFolder(run_dir)
    if not folder.study_yaml.is_file():
        raise RetrainError(f"{run_dir}: no {runfolder.STUDY_YAML}; give a run folder written by python -m search.run")
    check_override_sections(overrides)
    study = space.load_study(folder.study_yaml, overrides)
    changes = train_overrides(study, overrides)
    data = study.data_settings()
    chosen = top_trials(read_results(run_dir), top)
    splits = datasets.load(data)

    recorded = _recorded(run_dir)
    done_keys = set(recorded["run_key"]) if "run_key" in recorded else set()
    rows = recorded.to_dict("records")
    new_rows: list[dict[str, Any]] = []
    plan = []
    for trial in chosen:
        try:
            spec = ArchSpec.from_yaml(trial["arch_yaml"])
        except Exception as error:  # a ValueError from the spec, or a YAML error
            raise RetrainError(f"results table: arch_yaml of {trial['trial_id']} is not a valid spec "
                               f"({str(error).splitlines()[0]})") from None
        if spec.num_classes != splits.num_classes:
            raise RetrainError(f"{trial['trial_id']}: the spec has {spec.num_classes} outputs but "
                               f"{data.dataset} has {splits.num_classes} classes; retrain on the study's data")
        try:
            base = train_settings_from_row(trial).replace(**changes)
        except ValueError as error:
            raise RetrainError(f"--set: {error}") from None
        for seed in range(seeds):
            train = base.replace(seed=seed)
            key = _run_key(trial["trial_id"], seed, train, data)
            if key not in done_keys:
                plan.append((trial, spec, train, key))
    skipped = len(chosen) * seeds - len(plan)
    log(f"retraining {len(chosen)} architecture(s) x {seeds} seed(s) on train+val "
        f"({splits.source['n_train'] + splits.source['n_val']} images), testing on {splits.source['n_test']}: "
        f"{len(plan)} run(s)" + (f", {skipped} already in {runfolder.RETRAIN_PARQUET}" if skipped else ""))

    for index, (trial, spec, train, key) in enumerate(plan, start=1):
        # The settings' hash keeps a retrain with other epochs from overwriting this one's weights.
        folder_name = f"{trial['trial_id']}_seed{train.seed}_{hashlib.sha256(key.encode()).hexdigest()[:8]}"
        save_to = folder.retrained / folder_name if keep_weights else None
        result = fit(spec, train, data, splits=splits, device=device, save_to=save_to,
                     final_eval_on_train_val=True)
        row = {
            "arch_key": spec.key(), "source_trial_id": trial["trial_id"], "seed": train.seed,
            "status": result["status"], "test_acc": result["test_acc"], "epochs": train.epochs,
            "epochs_run": result["epochs_run"], "wall_s": result["wall_s"],
            "images_per_s": result["images_per_s"], "params": result["params"], "macs": result["macs"],
            "flops": result["flops"], "label": runfolder.factor_label(trial),
            "source_val_acc_best": float(trial[RANKING_COLUMN]),
            "source_test_acc": _as_float(trial.get("test_acc")),
            "device": result["device"], "error": result["error"],
            "checkpoint": (runfolder.retrained_cell(save_to.name)
                           if save_to is not None and result["status"] == "complete" else ""),
            "finished": time.strftime("%Y-%m-%dT%H:%M:%SZ", time.gmtime()),
            "run_key": key, "arch_yaml": spec.to_yaml(),
            **{f"train.{k}": (str(v) if isinstance(v, list) else v) for k, v in train.to_dict().items()},
            runfolder.TRAIN_JSON: json.dumps(train.to_dict(), sort_keys=True),
        }
        rows.append(row)
        new_rows.append(row)
        # Written after every run: an interrupted retrain keeps what finished.
        runfolder.write_retrain(run_dir, pd.DataFrame(rows))
        outcome = (f"test {_percent(row['test_acc'])}%" if row["status"] == "complete"
                   else f"failed: {row['error']}")
        log(f"[{index}/{len(plan)}] {trial['trial_id']} ({row['label'] or spec.key()}) seed {train.seed}: "
            f"{outcome} in {row['wall_s']:.0f}s")
    return pd.DataFrame(rows), pd.DataFrame(new_rows, columns=list(rows[0]) if rows else None)


def measure_test_acc(model: torch.nn.Module, device: str | None = None) -> float:
    """Test accuracy of a model from `models.load`, on the data and normalisation its checkpoint records.

    Evaluates as the trial did (same split, normalisation, memory format and
    autocast), so on the same device type it reproduces the recorded test_acc.
    """
    meta = getattr(model, "checkpoint_meta", None)
    if not isinstance(meta, Mapping) or "data_settings" not in meta or "train_settings" not in meta:
        raise ValueError("measure_test_acc: the model has no checkpoint_meta with data_settings and "
                         "train_settings; load it with models.load from a checkpoint written by search")
    data = DataSettings.from_dict(meta["data_settings"])
    train = TrainSettings.from_dict(meta["train_settings"])
    splits = datasets.load(data)
    target = torch.device(device) if device is not None else next(model.parameters()).device
    memory_format = torch.channels_last if train.channels_last else torch.contiguous_format
    model = model.to(device=target, memory_format=memory_format)
    augment = datasets.BatchAugment(crop_padding=data.crop_padding, flip=data.flip,
                                    mean=splits.mean, std=splits.std)
    # The trial's own batch shape: the same kernels, hence bit-identical logits.
    return evaluate(model, splits.test_x.to(target), splits.test_y.to(target), augment, train.amp,
                    memory_format, train.batch_size)


# -------------------------------------------------------------------- CLI
def _parse_args(argv: list[str] | None) -> Any:
    parser = OneLineParser(prog="python -m search.retrain", description=__doc__.splitlines()[0])
    parser.add_argument("run_dir", help="a run folder written by python -m search.run")
    parser.add_argument("--top", type=int, required=True,
                        help="how many of the best distinct architectures (by val_acc_best) to retrain")
    parser.add_argument("--seeds", type=int, required=True, help="retrain each with seeds 0..S-1")
    parser.add_argument("--set", dest="overrides", action="append", default=[], metavar="PATH=VALUE",
                        help="override a train.* or data.* field, e.g. --set train.epochs=30 (repeatable)")
    parser.add_argument("--device", default=None, help="cpu, cuda, cuda:1 (default: cuda if present)")
    parser.add_argument("--no-weights", action="store_true",
                        help=f"do not keep the retrained weights (default: {runfolder.RETRAINED}/<trial>_seed<s>_<hash>/)")
    parser.add_argument("--no-report", action="store_true", help="do not rebuild report.html")
    return parser.parse_args(argv)


def _rebuild_report(run_dir: Path) -> None:
    try:
        from reports import build_report
    except ImportError as error:
        print(f"report skipped: {error}")
        return
    try:
        print(f"report: {build_report(run_dir)}")
    except Exception as error:  # the retrain table is safe on disk; a report bug must not hide it
        print(f"report failed ({type(error).__name__}: {error}); rebuild with python -m reports.build {run_dir}")


def main(argv: list[str] | None = None) -> int:
    """Entry point; returns the exit status."""
    import space

    args = _parse_args(argv)
    run_dir = Path(args.run_dir)
    try:
        pick_device(args.device, "--device")  # before the run folder is locked or any data read
    except ValueError as error:
        print(f"error: {error}", file=sys.stderr)
        return EXIT_BAD_INPUT
    try:
        frame, new = retrain(run_dir, args.top, args.seeds, args.overrides, device=args.device,
                        keep_weights=not args.no_weights)
    except (RetrainError, space.StudyError, datasets.DatasetError, models.CheckpointError) as error:
        print(f"error: {error}", file=sys.stderr)
        return EXIT_BAD_INPUT
    print(format_summary(summary(frame)))
    print(f"runs: {runfolder.RunFolder(run_dir).retrain} (and .csv)")
    if not args.no_report:
        _rebuild_report(run_dir)
    failed = new[new["status"] != "complete"] if len(new) else new
    if len(failed):
        print(f"{len(failed)} retrain run(s) failed: " + "; ".join(
            f"{r['source_trial_id']} seed {r['seed']}: {r['error']}" for r in failed.to_dict("records")),
            file=sys.stderr)
        return EXIT_FAILED_RUN
    return 0


if __name__ == "__main__":
    sys.exit(main())
