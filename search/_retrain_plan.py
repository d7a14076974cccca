"""Planning a retrain job: the best trials of a search, their settings, the --set overrides, and the job's runs.

`plan_job` validates the flags against the run folder and returns a `RetrainJob`
(its folder, the study it runs under and every run's plan); it writes nothing
and starts no Ray, so `python -m search.retrain` refuses bad input before it
locks the folder.
"""

from __future__ import annotations

import copy
import dataclasses
import hashlib
import json
from dataclasses import dataclass
from pathlib import Path
from typing import Any, Mapping

import pandas as pd
import yaml

import runfolder
from models import ArchSpec
from runfolder import RANKING_COLUMN
from space import DataSettings, TrainSettings, TrialPlan

# What --set may change here: the specs are fixed by the search, how they train and what each run may use are not.
OVERRIDABLE = ("train.", "data.", "search.resources.", "search.max_concurrent")
# The factor naming the searched trial a retrain run retrains (a `factor.` column of the job's own results).
SOURCE_TRIAL = "source_trial"


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
def _override_path(override: str) -> str:
    """"train.epochs" for "train.epochs=3"."""
    return override.split("=", 1)[0].strip()


def check_override_sections(overrides: list[str]) -> None:
    """Refuse --set outside train.*, data.*, search.resources.* and search.max_concurrent."""
    for text in overrides:
        path = _override_path(text)
        if not any(path.startswith(allowed) or path == allowed.rstrip(".") for allowed in OVERRIDABLE):
            raise RetrainError(f"--set {text}: a retrain keeps the searched specs and search settings; "
                               f"allowed: train.* and data.* fields, search.resources.*, search.max_concurrent")


def train_overrides(study: Any, overrides: list[str]) -> dict[str, Any]:
    """The `train.*` values the --set flags gave, as the validated study holds them."""
    check_override_sections(overrides)
    changes: dict[str, Any] = {}
    for text in overrides:
        section, _, name = _override_path(text).partition(".")
        if section != "train":
            continue  # data.* already shaped study.data_settings(); search.* the job's resources
        field_name = name.split(".")[0].split("[")[0]
        if study.is_searched(f"train.{field_name}"):
            raise RetrainError(f"--set {text}: train.{field_name} is still searched in the study; "
                               f"allowed: one concrete value")
        value = study.search_space.train.get(field_name)
        changes[field_name] = tuple(value) if isinstance(value, list) else value
    return changes


# ------------------------------------------------------------------ the job
def run_key(source_trial_id: str, seed: int, train: TrainSettings, data: DataSettings) -> str:
    """What makes two retrain runs the same run: trial, seed and every setting."""
    return json.dumps({"trial": source_trial_id, "seed": seed, "train": train.to_dict(),
                       "data": data.to_dict()}, sort_keys=True)


def job_study(study: Any, keep_weights: bool) -> Any:
    """The study a retrain job runs under: the searched one, less what would stop, share or drop its runs.

    No ASHA (a retrain runs its full budget), no external Optuna storage (the
    job keeps its own study.db instead of writing into the search's), and every
    run's weights kept (or none, with --no-weights): nothing is ranked on
    validation here, so there is no top-k to prune to.
    """
    import space

    raw = copy.deepcopy(study.raw)
    search = raw.setdefault("search", {})
    search["scheduler"] = "none"
    search.pop("asha", None)
    search.pop("storage", None)
    search["keep_checkpoints"] = -1 if keep_weights else 0
    return space.study_from_dict(raw, source=study.path or "<study>")


def _plain(value: Any) -> Any:
    """A parquet cell as JSON: numpy scalars as Python values, NaN as None."""
    value = value.item() if hasattr(value, "item") else value
    return None if runfolder.is_missing(value) else value


@dataclass(frozen=True)
class RetrainJob:
    """One retrain job: its folder and study, and its runs (plan and run key each), in order."""

    name: str
    folder: Path
    study: Any                              # space.Study the job runs under (job_study)
    runs: tuple[tuple[str, TrialPlan], ...]  # (run key, plan) of every run the flags ask for
    architectures: int
    seeds: int
    sources: Mapping[str, Mapping[str, Any]] = dataclasses.field(repr=False, default_factory=dict)  # rows by trial id

    def pending(self, recorded: set[str]) -> list[dict[str, Any]]:
        """Plans (as plain data) of the runs not yet recorded."""
        return [plan.to_dict() for key, plan in self.runs if key not in recorded]


def plan_job(run_dir: Path, top: int, seeds: int, overrides: list[str], keep_weights: bool = True) -> RetrainJob:
    """The retrain job the flags ask for: validated, its runs planned from the results; nothing written, no Ray."""
    import space

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
    searched = space.load_study(folder.study_yaml, overrides)
    changes = train_overrides(searched, overrides)
    study = job_study(searched, keep_weights)
    data = study.data_settings()
    classes = study.search_space.arch["num_classes"]
    runs: list[tuple[str, TrialPlan]] = []
    chosen = top_trials(read_results(run_dir), top)
    for trial in chosen:
        try:
            spec = ArchSpec.from_yaml(trial["arch_yaml"])
        except Exception as error:  # a ValueError from the spec, or a YAML error
            raise RetrainError(f"results table: arch_yaml of {trial['trial_id']} is not a valid spec "
                               f"({str(error).splitlines()[0]})") from None
        if spec.num_classes != classes:
            raise RetrainError(f"{trial['trial_id']}: the spec has {spec.num_classes} outputs but "
                               f"{data.dataset} has {classes} classes; retrain on the study's data")
        try:
            base = train_settings_from_row(trial).replace(**changes)
        except ValueError as error:
            raise RetrainError(f"--set: {error}") from None
        factors = {SOURCE_TRIAL: str(trial["trial_id"]),
                   **{column.removeprefix(runfolder.FACTOR_PREFIX): _plain(value) for column, value in trial.items()
                      if column.startswith(runfolder.FACTOR_PREFIX)}}
        label = runfolder.factor_label(trial) or spec.key()
        for seed in range(seeds):
            train = base.replace(seed=seed)
            runs.append((run_key(str(trial["trial_id"]), seed, train, data),
                         TrialPlan(spec=spec, train=train, factors=factors, label=label)))
    # The name says the flags; the hash, what the runs are (trials, seeds, every setting), so that the
    # same command finds the same job again, and another budget gets a job of its own.
    digest = hashlib.sha256("\n".join(sorted(key for key, _ in runs)).encode()).hexdigest()[:8]
    name = f"top{top}-seeds{seeds}-{digest}"
    return RetrainJob(name=name, folder=folder.retrain_jobs / name, study=study, runs=tuple(runs),
                      architectures=len(chosen), seeds=seeds, sources={str(t["trial_id"]): t for t in chosen})

