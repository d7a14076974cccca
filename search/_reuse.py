"""Studies that build on earlier runs: trials reused instead of trained again, and a sampler warm-started.

**Reuse** (`python -m search.run STUDY --reuse RUN_DIR`, or `search.reuse`).
A trial of this run is the same experiment as a complete trial of an earlier
run when all of these match:

- the architecture (`arch_key`, the spec's content hash),
- the training settings, whole (`train_json`; the seed is one of them),
- the data (`data_fingerprint`: which images, and how they are split,
  augmented and normalised).

Such a trial is not trained: its row, curve and checkpoint are taken from
the earlier run, and `runfolder.REUSED_FROM` names where from. Anything else
(library versions, hardware, the earlier study's other trials) is not part of
the match. Rows without `train_json` (older run folders) never match: their
settings cannot be checked whole.

**Warm start** (`search.warm_start: {from: RUN_DIR, top: K}`, optuna studies
only). The earlier run's best K complete trials, by the one ranking rule
(`runfolder.ranked_rows`), are added to this run's Optuna study as finished
trials before anything is sampled. A trial whose parameters do not all fit
this study's space is not added, and the line printed for it says why.

Every earlier folder is read, and judged, before Ray starts
(`read_earlier_run`): a bad path is one `RunError` line.
"""

from __future__ import annotations

import hashlib
import json
import math
import os
import shutil
from dataclasses import dataclass
from pathlib import Path
from typing import Any, Iterable, Mapping, Sequence

import optuna
from optuna.distributions import BaseDistribution, CategoricalDistribution, FloatDistribution, IntDistribution
from optuna.trial import TrialState

import runfolder
import space
from runfolder import untrusted
from models import ArchSpec

from ._resume import WARM_START_ATTR, RunError, first_difference

# What a trial reports as each objective (search._trial.run_trial): the column of a results row holding it.
OBJECTIVE_COLUMNS = {"val_acc": runfolder.RANKING_COLUMN, "params": "params", "macs": "macs"}
# Data settings that do not change the images a trial sees once the source is known: the source names the
# folder it read (resolved), and `download` only says whether it may be fetched.
_NOT_IN_FINGERPRINT = ("root", "download")
# Source keys that describe the images rather than pick them (counts of classes and names, the bad images
# skipped, which follow from the files the other keys name). Left out, so a folder written before they were
# recorded still matches one written after.
_DESCRIPTIVE_SOURCE_KEYS = ("num_classes", "n_class_names", "skipped_images", "skipped_examples")


# ------------------------------------------------------------------ the data a run trained on
def data_description(source: Mapping[str, Any], data: space.DataSettings) -> dict[str, Any]:
    """What decides the images of every trial: the loader's `source` (run.json "dataset") and the data settings."""
    settings = {name: value for name, value in data.to_dict().items() if name not in _NOT_IN_FINGERPRINT}
    # Through JSON, so a description read back from run.json and one made in memory compare alike.
    source = {name: value for name, value in source.items() if name not in _DESCRIPTIVE_SOURCE_KEYS}
    return json.loads(json.dumps({"source": source, "settings": settings}, sort_keys=True, default=str))


def data_fingerprint(description: Mapping[str, Any]) -> str:
    """A 16-hex-digit hash of a `data_description`: equal exactly when the descriptions are."""
    text = json.dumps(description, sort_keys=True, default=str)
    return hashlib.sha256(text.encode("utf-8")).hexdigest()[:16]


def describe_difference(earlier: Mapping[str, Any], this: Mapping[str, Any]) -> str:
    """Where two data descriptions first differ, with both values: "settings.split_seed: 0 there, 1 here"."""
    path = first_difference(dict(earlier), dict(this))
    if path is None:
        return "no difference"
    values = []
    for description in (earlier, this):
        value: Any = description
        for key in path.split("."):
            value = value.get(key) if isinstance(value, dict) else None
        values.append(value)
    return f"{path}: {values[0]!r} there, {values[1]!r} here"


# ------------------------------------------------------------------ an earlier run, read and judged
@dataclass(frozen=True)
class EarlierRun:
    """A finished or interrupted run folder that this run takes trials from: its rows, curves and data."""

    path: Path                                   # resolved
    rows: list[dict[str, Any]]                   # every finished trial, NaN where a value was not reached
    curves: dict[str, list[dict[str, Any]]]      # by trial id
    data: dict[str, Any]                         # its `data_description`

    def trial(self, row: Mapping[str, Any]) -> "EarlierTrial":
        """One of its rows as an EarlierTrial."""
        trial = str(row["trial_id"])
        return EarlierTrial(run_dir=self.path, row=dict(row), curve=list(self.curves.get(trial, [])))


def _plain(value: Any) -> Any:
    return value.item() if hasattr(value, "item") else value


def read_earlier_run(path: str | Path, given_as: str, this_run: Path) -> EarlierRun:
    """The run folder at `path` (named by `given_as`, e.g. "--reuse runs/a"), or a one-line RunError why it cannot be used."""
    folder_path = Path(path).expanduser()
    if not folder_path.is_dir():
        raise RunError(f"{given_as}: no such folder")
    resolved = folder_path.resolve()
    if resolved == Path(this_run).resolve():
        raise RunError(f"{given_as}: that is this run's own folder; name an earlier run")
    folder = runfolder.RunFolder(resolved)
    try:
        info = runfolder.read_run_info(resolved)
        if info is None:
            raise RunError(f"{given_as}: not a run folder (no {runfolder.RUN_JSON}); name a folder that "
                           f"python -m search.run wrote")
        if not folder.has_results():
            raise RunError(f"{given_as}: holds no finished trial yet ({runfolder.TRIALS_LOG} and "
                           f"{runfolder.RESULTS_PARQUET} are missing), so there is nothing to take from it")
        study = runfolder.read_study_record(resolved)
        if study is None:
            raise RunError(f"{given_as}: no {runfolder.STUDY_YAML}, so the data settings its trials trained with "
                           f"are unknown; restore it, or leave this run folder out")
        results = runfolder.read_results(resolved, ("trial_id", "status", runfolder.RANKING_COLUMN))
        curves_frame = runfolder.read_curves(resolved)
    except runfolder.RunFolderError as error:
        raise RunError(f"{given_as}: {error}; restore that file, or leave this run folder out") from None
    source = info.dataset
    if source is None:
        raise RunError(f"{given_as}: {runfolder.RUN_JSON} records no dataset, so its trials cannot be matched "
                       f"on their data; leave this run folder out")
    try:
        data = space.DataSettings.from_dict(study.as_dict().get("data") or {})
    except (ValueError, TypeError) as error:
        raise RunError(f"{given_as}: {runfolder.STUDY_YAML}: its data section does not load ({error}); "
                       f"leave this run folder out") from None
    rows = [{name: _plain(value) for name, value in row.items()} for row in results.to_dict("records")]
    curves: dict[str, list[dict[str, Any]]] = {}
    for point in ([] if curves_frame is None else curves_frame.to_dict("records")):
        curves.setdefault(str(point["trial_id"]), []).append({k: _plain(v) for k, v in point.items()})
    run = EarlierRun(path=resolved, rows=rows, curves=curves, data=data_description(source, data))
    check_checkpoint_cells(run, given_as)
    return run


# ------------------------------------------------------------------ reuse
def _finite(value: Any) -> bool:
    try:
        return math.isfinite(float(value))
    except (TypeError, ValueError):
        return False


def _canonical_train(train: Mapping[str, Any]) -> str:
    return json.dumps(dict(train), sort_keys=True)


@dataclass(frozen=True)
class EarlierTrial:
    """A complete trial of an earlier run that can stand in for a trial of this one."""

    run_dir: Path
    row: dict[str, Any]
    curve: list[dict[str, Any]]

    @property
    def trial_id(self) -> str:
        return str(self.row["trial_id"])

    @property
    def reused_from(self) -> str:
        """The `reused_from` cell of a trial taken from this one."""
        return runfolder.reused_from_cell(self.run_dir, self.trial_id)

    @property
    def checkpoint(self) -> Path | None:
        """Its kept weights folder; None where the earlier run did not keep them."""
        cell = self.row.get("checkpoint")
        if runfolder.is_missing(cell):
            return None
        # Inside the earlier run folder only (read_earlier_run refused any other cell before the run began).
        folder = runfolder.stored_path(self.run_dir, str(cell), _cell_where(self.trial_id))
        return folder if folder.is_dir() else None

    def objective_values(self, metrics: Sequence[str]) -> list[float]:
        """Its value of each objective metric (val_acc, params, macs), as its own trial reported them."""
        return [float(self.row[OBJECTIVE_COLUMNS[metric]]) for metric in metrics]

    def result(self) -> dict[str, Any]:
        """Its final metrics and per-epoch validation accuracy, as a trial reports them (`search._searcher.trial_summary`)."""
        return {**self.row, "curve": [point.get("val_acc") for point in self.curve],
                runfolder.REUSED_FROM: self.reused_from}


def _cell_where(trial: str) -> str:
    return f"{runfolder.TRIALS_LOG} / results table, trial {trial}, column checkpoint"


def check_checkpoint_cells(run: EarlierRun, given_as: str) -> None:
    """Refuse (one RunError naming the file and the cell) an earlier run whose checkpoint cells or checkpoint
    folders lead outside it: `--reuse` never links or copies a file from elsewhere (runfolder._untrusted)."""
    for row in run.rows:
        cell = row.get("checkpoint")
        if runfolder.is_missing(cell):
            continue
        trial = str(row.get("trial_id"))
        try:
            folder = runfolder.stored_path(run.path, str(cell), _cell_where(trial))
            if folder.is_dir():
                untrusted.check_tree_inside(folder, run.path, f"the checkpoint of {trial}")
        except runfolder.RunFolderError as error:
            raise RunError(f"{given_as}: {error}; leave this run folder out") from None


def copy_checkpoint(source: Path, destination: Path) -> None:
    """Give `destination` the weights folder `source`, atomically: hard links where the file system allows, else copies.

    Links are safe because a checkpoint is never changed in place: it is
    written whole into a new folder and renamed (`runfolder.atomic_write_folder`).
    Only the plain files inside `source` are taken: a link leading out of it,
    a FIFO or a device is refused (RunFolderError) before anything is written.
    """
    files = untrusted.check_tree_inside(source, source, "a checkpoint to reuse")

    def write(staging: Path) -> None:
        for path, name in files:
            target = staging / name
            target.parent.mkdir(parents=True, exist_ok=True)
            real = path.resolve()  # a link inside the folder is followed to its plain file, checked above
            try:
                os.link(real, target, follow_symlinks=False)
            except OSError:  # another file system, or one without hard links
                shutil.copy2(real, target, follow_symlinks=False)

    runfolder.atomic_write_folder(destination, write)


class ReuseIndex:
    """Complete trials of earlier runs, by what makes two trials the same experiment; `match` looks a plan up."""

    def __init__(self, data: dict[str, Any], objectives: list[str]) -> None:
        self.data = data              # this run's `data_description`
        self.objectives = objectives  # this study's objective metrics: a reused trial must have a value of each
        self.runs: list[EarlierRun] = []
        self._fingerprint = data_fingerprint(data)
        # (arch_key, train_json made canonical) -> the trial; train_json holds the seed, the run's data matched
        self._trials: dict[tuple[str, str], EarlierTrial] = {}

    def add(self, run: EarlierRun) -> str:
        """Index the complete trials of `run` (the first run and trial named wins a tie); a line saying what it offers."""
        self.runs.append(run)
        if data_fingerprint(run.data) != self._fingerprint:
            return (f"reuse: {run.path}: trained on other data ({describe_difference(run.data, self.data)}), so none of its trials can stand "
                    f"in for this run's")
        usable = 0
        for row in sorted(run.rows, key=lambda r: str(r["trial_id"])):
            key = self._row_key(row)
            if key is None:
                continue
            usable += 1
            self._trials.setdefault(key, run.trial(row))
        complete = sum(1 for row in run.rows if row.get("status") == "complete")
        without = complete - usable
        note = (f" ({without} complete trial(s) lack train_json or an objective value, so cannot be matched)"
                if without else "")
        return (f"reuse: {run.path}: {usable} complete trial(s) can stand in for trials of this run that match "
                f"their architecture, training settings (seed included) and data{note}")

    def _row_key(self, row: Mapping[str, Any]) -> tuple[str, str] | None:
        if row.get("status") != "complete" or runfolder.is_missing(row.get("arch_key")):
            return None
        if not all(_finite(row.get(OBJECTIVE_COLUMNS[metric])) for metric in self.objectives):
            return None
        try:
            train = runfolder.train_settings_of(row)
        except ValueError:  # a damaged cell: that trial is trained again
            return None
        return None if train is None else (str(row["arch_key"]), _canonical_train(train))

    def __len__(self) -> int:
        return len(self._trials)

    def match(self, plan: Mapping[str, Any]) -> EarlierTrial | None:
        """The earlier trial that ran exactly this plan (`TrialPlan.to_dict()`) on this run's data; None to train it."""
        if not self._trials:
            return None
        key = (ArchSpec.from_dict(plan["spec"]).key(), _canonical_train(plan["train"]))
        return self._trials.get(key)


def read_reuse_index(paths: Iterable[str | Path], this_run: Path, data: dict[str, Any],
                     objectives: list[str]) -> tuple[ReuseIndex, list[str]]:
    """The ReuseIndex of the earlier runs at `paths` (each named once) and a line per run; RunError for a bad path."""
    index = ReuseIndex(data=data, objectives=objectives)
    lines, seen = [], set()
    for path in paths:
        run = read_earlier_run(path, f"--reuse {path}", this_run)
        if run.path in seen:
            continue
        seen.add(run.path)
        lines.append(index.add(run))
    return index, lines


# ------------------------------------------------------------------ warm start
class _Replay:
    """An Optuna-like trial that answers each `suggest_*` of the space from an earlier trial's values.

    It notes the distribution of every parameter asked, the ones it had no
    value for, and the values outside their distribution, so a whole trial is
    judged at once.
    """

    def __init__(self, values: Mapping[str, Any]) -> None:
        self.values = dict(values)
        self.distributions: dict[str, BaseDistribution] = {}
        self.params: dict[str, Any] = {}
        self.problems: list[str] = []

    def _ask(self, name: str, distribution: BaseDistribution, fallback: Any) -> Any:
        self.distributions[name] = distribution
        if name not in self.values:
            self.problems.append(f"no value for {name}, which this space searches")
            return fallback
        value = self.values[name]
        try:
            internal = distribution.to_internal_repr(value)
            inside = distribution._contains(internal)  # optuna's own membership rule (steps and log included)
        except (ValueError, TypeError):
            inside = False
        if not inside:
            self.problems.append(f"{name}={value!r} is outside this space ({_describe(distribution)})")
            return fallback
        self.params[name] = distribution.to_external_repr(internal)
        return self.params[name]

    def suggest_categorical(self, name: str, choices: Sequence[Any]) -> Any:
        return self._ask(name, CategoricalDistribution(list(choices)), choices[0])

    def suggest_int(self, name: str, low: int, high: int, *, step: int = 1, log: bool = False) -> int:
        return self._ask(name, IntDistribution(low, high, log=log, step=step), low)

    def suggest_float(self, name: str, low: float, high: float, *, step: float | None = None,
                      log: bool = False) -> float:
        return self._ask(name, FloatDistribution(low, high, log=log, step=step), low)


def _describe(distribution: BaseDistribution) -> str:
    if isinstance(distribution, CategoricalDistribution):
        return "one of " + ", ".join(map(str, distribution.choices))
    low, high = distribution.low, distribution.high  # type: ignore[attr-defined]
    step = getattr(distribution, "step", None)
    scale = " on a log scale" if getattr(distribution, "log", False) else ""
    return f"[{low}, {high}]{f' by {step}' if step else ''}{scale}"


def earlier_params(row: Mapping[str, Any], study: space.Study) -> dict[str, Any]:
    """The parameters an earlier trial was sampled with: its factor.* cells (a factor is a space parameter), and its
    seed where this study searches seeds."""
    values = {column[len(runfolder.FACTOR_PREFIX):]: _plain(value) for column, value in row.items()
              if column.startswith(runfolder.FACTOR_PREFIX) and not runfolder.is_missing(value)}
    seed = row.get("seed")
    if len(study.search.seeds) > 1 and not runfolder.is_missing(seed):
        # A seed that is not a whole number stays as it is: the replay names it as outside this space.
        whole = isinstance(seed, (int, float)) and not isinstance(seed, bool) and float(seed).is_integer()
        values[space.SEED] = int(seed) if whole else seed
    return values


@dataclass(frozen=True)
class WarmStart:
    """The trials a warm start tells the sampler, judged before the run writes anything, and what to print."""

    earlier: EarlierRun
    trials: tuple[optuna.trial.FrozenTrial, ...]
    lines: tuple[str, ...]


def plan_warm_start(study: space.Study, earlier: EarlierRun, top: int) -> WarmStart:
    """The `top` best complete trials of `earlier` as finished trials of this space, each left out naming why."""
    metrics = [metric for metric, _ in study.search.objectives]
    define = space.define_by_run(study)
    best = runfolder.ranked_rows(earlier.rows)[:top]
    lines, trials = [], []
    for row in best:
        trial = earlier.trial(row)
        replay = _Replay(earlier_params(row, study))
        define(replay)
        problems = list(replay.problems)
        problems += [f"{name} is not a parameter of this space" for name in sorted(set(replay.values) - set(replay.distributions))]
        values = [row.get(OBJECTIVE_COLUMNS[metric]) for metric in metrics]
        problems += [f"no {metric} recorded" for metric, value in zip(metrics, values) if not _finite(value)]
        if problems:
            lines.append(f"warm start: {trial.reused_from} not added: {'; '.join(problems)}")
            continue
        floats = [float(value) for value in values]
        trials.append(optuna.trial.create_trial(
            state=TrialState.COMPLETE, params=replay.params, distributions=replay.distributions,
            values=floats, user_attrs={WARM_START_ATTR: trial.reused_from}))
    lines.insert(0, f"warm start: told the sampler {len(trials)} of the {len(best)} best trial(s) of {earlier.path} "
                    f"(asked for {top}; ranked by {runfolder.RANKING_RULE}) as finished trials. They live in the "
                    f"Optuna storage only: they are not rows of this run's results and do not count against its "
                    f"{study.search.trials} trials")
    return WarmStart(earlier=earlier, trials=tuple(trials), lines=tuple(lines))


def add_warm_start(optuna_study: optuna.Study, planned: WarmStart) -> list[str]:
    """Add the planned trials to `optuna_study`; the lines to print.

    Once per Optuna study: on --resume the trials added before are found by
    their `WARM_START_ATTR` and nothing is added again.
    """
    added_before = [t for t in optuna_study.get_trials(deepcopy=False) if WARM_START_ATTR in t.user_attrs]
    if added_before:
        return [f"warm start: the Optuna study already holds the {len(added_before)} trial(s) added from "
                f"{planned.earlier.path} when this run started; none added again"]
    for trial in planned.trials:
        optuna_study.add_trial(trial)
    return list(planned.lines)


def warm_start(optuna_study: optuna.Study, study: space.Study, earlier: EarlierRun, top: int) -> list[str]:
    """Add the `top` best complete trials of `earlier` to `optuna_study` as finished trials; the lines to print."""
    return add_warm_start(optuna_study, plan_warm_start(study, earlier, top))


def read_warm_start(study: space.Study, this_run: Path) -> EarlierRun | None:
    """The earlier run `search.warm_start.from` names, judged before Ray starts; None when the study has none."""
    settings = study.search.warm_start
    if settings is None:
        return None
    return read_earlier_run(settings.run, f"search.warm_start.from {settings.run}", this_run)
