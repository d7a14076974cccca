"""`python -m search.retrain runs/<study> --top K --seeds S`: retrain the best architectures from scratch.

A search ranks architectures on one short, noisy run each. Before a choice is
reported, the top K (by val_acc_best, never by test accuracy) are trained again
from scratch with S seeds on train+val and tested once each, as the RegNet paper
does with its best models (Radosavovic et al. 2020, arXiv 2003.13678).

The K x S runs go through the same runner as `python -m search.run` (Ray Tune
resources and fractional GPUs, `--address` of a cluster, a durable record of
each finished run, progress lines, `--resume` after a kill): they are one
*retrain job*, a run folder of its own under `retrain/<job>/` whose trials are
the fixed list of plans built here (`search._plans.FixedPlans`). The job's
name says its flags and hashes what its runs are, so the same command with
`--resume` continues it. Its rows become `retrain.parquet` / `retrain.csv`
beside the study's results (one row per run, from every job; a run already
recorded is not repeated), the summary is printed as mean ± std over seeds,
and the report gains a "Retrained" section. Each retrained model's weights are
a checkpoint folder under `retrain/<job>/checkpoints/<trial>/`, loaded like
any other with `models.load` (the row's `checkpoint` cell).

Each architecture keeps the training settings of its trial (its `train_json`
cell); `--set train.epochs=30` and other `train.*` / `data.*` overrides apply
on top, and `search.resources.*` / `search.max_concurrent` say what each run
may use. Bad input gets one line on stderr and exit status 2; a retrain that
diverges is recorded as failed and the exit status is 1.
"""

from __future__ import annotations

import copy
import argparse
import dataclasses
import hashlib
import json
import math
import shlex
import sys
from dataclasses import dataclass
from pathlib import Path
from typing import Any, Mapping, TextIO

import pandas as pd
import torch
import yaml

import models
import runfolder
from models import ArchSpec
from runfolder import RANKING_COLUMN
from space import DataSettings, TrainSettings, TrialPlan

from . import datasets
from models.cli import OneLineParser
from ._plans import FixedPlans
from ._ray import CONNECT_TIMEOUT_S, add_ray_flags
from .train import evaluate

EXIT_FAILED_RUN = 1
EXIT_BAD_INPUT = 2
EXIT_INTERRUPTED = 130
# What --set may change here: the specs are fixed by the search, how they train and what each run may use are not.
OVERRIDABLE = ("train.", "data.", "search.resources.", "search.max_concurrent")
# The factor naming the searched trial a retrain run retrains (a `factor.` column of the job's own results).
SOURCE_TRIAL = "source_trial"
# The columns of retrain.parquet, in order; `train.*` and train_json follow (docs/DESIGN.md).
RETRAIN_COLUMNS = ("arch_key", "source_trial_id", "seed", "status", "test_acc", "epochs", "epochs_run", "wall_s",
                   "images_per_s", "params", "macs", "flops", "label", "source_val_acc_best", "source_test_acc",
                   "node_id", "error", "checkpoint", "job", "trial_id", "run_key", "arch_yaml")


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


# ---------------------------------------------------------- retrain.parquet
def _recorded(run_dir: Path) -> pd.DataFrame:
    try:
        recorded = runfolder.read_retrain(run_dir)
    except runfolder.RunFolderError as error:
        raise RetrainError(f"{error}; move it away to start the retrain table afresh") from None
    return pd.DataFrame() if recorded is None else recorded


def _job_rows(job: RetrainJob) -> list[dict[str, Any]]:
    """The retrain.parquet rows of a job's finished runs (its own results, read through runfolder)."""
    if not runfolder.RunFolder(job.folder).has_results():
        return []
    try:
        results = runfolder.read_results(job.folder)
    except runfolder.RunFolderError as error:
        raise RetrainError(f"{error}; the retrain job's record is damaged: restore it, or move "
                           f"{job.folder} away to train its runs again") from None
    data = job.study.data_settings()
    source_column = runfolder.FACTOR_PREFIX + SOURCE_TRIAL
    rows = []
    for row in results.to_dict("records"):
        source_id = str(row.get(source_column))
        source = job.sources.get(source_id, {})
        train = TrainSettings.from_dict(runfolder.train_settings_of(row) or {})
        checkpoint = str(row.get("checkpoint") or "")
        rows.append({
            "arch_key": row["arch_key"], "source_trial_id": source_id, "seed": row["seed"],
            "status": row["status"], "test_acc": row["test_acc"], "epochs": train.epochs,
            "epochs_run": row["epochs_run"], "wall_s": row["wall_s"], "images_per_s": row["images_per_s"],
            "params": row["params"], "macs": row["macs"], "flops": row["flops"],
            "label": runfolder.factor_label({k: v for k, v in row.items() if k != source_column}),
            "source_val_acc_best": _as_float(source.get(RANKING_COLUMN)),
            "source_test_acc": _as_float(source.get("test_acc")),
            "node_id": row.get("node_id", ""), "error": row.get("error", ""),
            "checkpoint": runfolder.retrain_job_cell(job.name, checkpoint) if checkpoint else "",
            "job": job.name, "trial_id": row["trial_id"], "run_key": run_key(source_id, train.seed, train, data),
            "arch_yaml": row["arch_yaml"],
            **{column: value for column, value in row.items() if column.startswith(runfolder.TRAIN_PREFIX)},
            runfolder.TRAIN_JSON: row[runfolder.TRAIN_JSON],
        })
    return rows


def record_job(run_dir: Path, job: RetrainJob) -> pd.DataFrame:
    """Rewrite retrain.parquet/.csv with the job's rows as its folder holds them now; the whole table."""
    recorded = _recorded(run_dir)
    others = recorded[recorded["job"].astype(str) != job.name] if "job" in recorded else recorded
    rows = _job_rows(job)
    if not rows and len(others) == len(recorded):
        return recorded  # nothing of this job yet: the table (or its absence) stays as it is
    added = pd.DataFrame(rows, columns=list(RETRAIN_COLUMNS) + [c for c in (rows[0] if rows else {})
                                                                  if c not in RETRAIN_COLUMNS])
    frame = pd.concat([others, added], ignore_index=True) if len(others) else added
    runfolder.write_retrain(run_dir, frame)
    return frame


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
@dataclass
class RetrainOutcome:
    """What one `retrain` call did: the whole retrain table, this call's rows, and whether the job finished."""

    table: pd.DataFrame     # all of retrain.parquet
    new: pd.DataFrame       # rows of the runs that trained in this call
    job: RetrainJob
    finished: bool          # False when interrupted (Ctrl-C, SIGTERM): --resume continues


def retrain(run_dir: Path, top: int, seeds: int, overrides: list[str] | None = None, *, resume: bool = False,
            keep_weights: bool = True, address: str | None = None, connect_timeout: float = CONNECT_TIMEOUT_S,
            max_concurrent: int | None = None, dashboard: bool = True, log: tuple[str, ...] = (),
            out: TextIO | None = None) -> RetrainOutcome:
    """Retrain the `top` best architectures of a run with seeds 0..`seeds`-1, as one retrain job through the runner."""
    from ._trackers import check_trackers

    out = out or sys.stdout  # looked up per call: a test's captured stdout, not the one at import

    run_dir = Path(run_dir)
    job = plan_job(run_dir, top, seeds, list(overrides or []), keep_weights)
    try:
        check_trackers(log)
    except ValueError as error:
        raise RetrainError(str(error)) from None
    # The run folder's one writer while it retrains: never beside a search.run driver or another retrain.
    lock = runfolder.RunFolderLock(run_dir, command="python -m search.retrain", create=False)
    try:
        lock.acquire()
    except runfolder.RunFolderError as error:
        raise RetrainError(str(error)) from None
    try:
        if lock.note:
            print(f"note: {lock.note}", file=out)
        return _run_job(run_dir, job, resume, out, address=address, connect_timeout=connect_timeout,
                        max_concurrent=max_concurrent, dashboard=dashboard, log=log)
    finally:
        lock.release()


def _job_state(job: RetrainJob, resume: bool, recorded: set[str]) -> list[dict[str, Any]]:
    """The plans to hand the runner: the job's own on --resume, else the runs not yet recorded (maybe none)."""
    try:
        stored = runfolder.read_plans(job.folder)
        document = runfolder.read_run_json(job.folder)
    except runfolder.RunFolderError as error:
        raise RetrainError(f"{error}; restore it, or move {job.folder} away to train its runs again") from None
    if resume:
        if stored is None:
            raise RetrainError(f"{job.folder}: nothing to resume (no retrain job with these flags started here); "
                               f"start it without --resume")
        return stored
    pending = job.pending(recorded)
    if document is not None and not document.get("finished"):
        raise RetrainError(f"{job.folder}: a retrain job with these flags was interrupted; continue it with "
                           f"--resume")
    if document is not None and pending:
        raise RetrainError(f"{job.folder}: finished, yet {len(pending)} of its runs are in no retrain job's "
                           f"record; move the folder away to train them again")
    return pending


def _run_job(run_dir: Path, job: RetrainJob, resume: bool, out: TextIO, **runner: Any) -> RetrainOutcome:
    from ._runner import RunOptions, run_study

    # A job killed before (kill -9) left runs finished in its folder: they count as recorded from here on.
    table = record_job(run_dir, job)
    recorded = set(table["run_key"].astype(str)) if "run_key" in table else set()
    plans = _job_state(job, resume, recorded)
    already = table[table["job"].astype(str) == job.name] if "job" in table else table.iloc[0:0]
    if not plans:
        print(f"all {len(job.runs)} run(s) of {job.architectures} architecture(s) x {job.seeds} seed(s) are "
              f"already in {runfolder.RETRAIN_PARQUET}: nothing to train", file=out)
        return RetrainOutcome(table, table.iloc[0:0], job, finished=True)
    if resume:
        done = f", {len(already)} finished before it was interrupted"
    else:
        skipped = len(job.runs) - len(plans)
        done = f", {skipped} already in {runfolder.RETRAIN_PARQUET}" if skipped else ""
    print(f"retraining {job.architectures} architecture(s) x {job.seeds} seed(s) on train+val, each tested once: "
          f"{len(plans)} run(s) in {job.folder}{done}", file=out)
    options = RunOptions(run_dir=job.folder, resume=resume, report=False,
                         fixed=FixedPlans(tuple(plans), train_on_val=True), **runner)
    document: dict[str, Any] = {}
    try:
        document = run_study(job.study, options, out=out)
    finally:
        # Every run that finished is in retrain.parquet, whatever ended the job.
        table = record_job(run_dir, job)
    before = set(already["trial_id"].astype(str)) if "trial_id" in already else set()
    new = table[(table["job"].astype(str) == job.name) & ~table["trial_id"].astype(str).isin(before)] \
        if "job" in table else table.iloc[0:0]
    return RetrainOutcome(table, new.reset_index(drop=True), job, finished=bool(document.get("finished")))


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
    from ._trackers import TRACKERS

    parser = OneLineParser(prog="python -m search.retrain", description=__doc__.splitlines()[0])
    parser.add_argument("run_dir", help="a run folder written by python -m search.run")
    parser.add_argument("--top", type=int, required=True,
                        help="how many of the best distinct architectures (by val_acc_best) to retrain")
    parser.add_argument("--seeds", type=int, required=True, help="retrain each with seeds 0..S-1")
    parser.add_argument("--set", dest="overrides", action="append", default=[], metavar="PATH=VALUE",
                        help="override a train.* or data.* field, e.g. --set train.epochs=30, or what each run may "
                             "use: --set search.resources.gpus=0.5 (repeatable)")
    parser.add_argument("--resume", action="store_true",
                        help="continue the interrupted retrain job of the same flags")
    add_ray_flags(parser, "runs")
    # Gone since retrain runs through Ray: kept only to say what replaced it.
    parser.add_argument("--device", default=None, help=argparse.SUPPRESS)
    parser.add_argument("--log", action="append", default=[], choices=sorted(TRACKERS), metavar="TRACKER",
                        help="also feed each run's per-epoch metrics and settings to this tracker "
                             f"({', '.join(sorted(TRACKERS))}; repeatable)")
    parser.add_argument("--no-weights", action="store_true",
                        help="do not keep the retrained weights (default: kept in the job's checkpoints/<trial>/)")
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


def _resume_command(args: Any) -> str:
    again = ["python", "-m", "search.retrain", args.run_dir, "--top", str(args.top), "--seeds", str(args.seeds),
             *[part for o in args.overrides for part in ("--set", o)],
             *(["--no-weights"] if args.no_weights else []), *(["--address", args.address] if args.address else []),
             "--resume"]
    return shlex.join(again)


def main(argv: list[str] | None = None) -> int:
    """Entry point; returns the exit status."""
    import space

    from ._resume import RunError

    args = _parse_args(argv)
    run_dir = Path(args.run_dir)
    if args.device is not None:
        print(f"error: --device: got {args.device!r}; retrain runs through Ray, which places each run; allowed: "
              "leave it out, and give each run a GPU share with --set search.resources.gpus=1 (or 0.5)",
              file=sys.stderr)
        return EXIT_BAD_INPUT
    if args.max_concurrent is not None and args.max_concurrent < 1:
        print(f"error: --max-concurrent: got {args.max_concurrent}; allowed: an integer >= 1", file=sys.stderr)
        return EXIT_BAD_INPUT
    if not args.connect_timeout > 0 or args.connect_timeout == float("inf"):
        print(f"error: --connect-timeout: got {args.connect_timeout:g}; allowed: a number of seconds > 0",
              file=sys.stderr)
        return EXIT_BAD_INPUT
    try:
        outcome = retrain(run_dir, args.top, args.seeds, args.overrides, resume=args.resume,
                          keep_weights=not args.no_weights, address=args.address,
                          connect_timeout=args.connect_timeout, max_concurrent=args.max_concurrent,
                          dashboard=not args.no_dashboard, log=tuple(args.log))
    except (RetrainError, RunError, space.StudyError, datasets.DatasetError, models.CheckpointError) as error:
        print(f"error: {error}", file=sys.stderr)
        return EXIT_BAD_INPUT
    print(format_summary(summary(outcome.table)))
    print(f"runs: {runfolder.RunFolder(run_dir).retrain} (and .csv); this job: {outcome.job.folder}")
    if not args.no_report and len(outcome.table):
        _rebuild_report(run_dir)
    if not outcome.finished:
        print(f"the retrain is not finished; continue with: {_resume_command(args)}")
        return EXIT_INTERRUPTED
    new = outcome.new
    failed = new[new["status"] != "complete"] if len(new) else new
    if len(failed):
        print(f"{len(failed)} retrain run(s) failed: " + "; ".join(
            f"{r['source_trial_id']} seed {r['seed']}: {r['error']}" for r in failed.to_dict("records")),
            file=sys.stderr)
        return EXIT_FAILED_RUN
    return 0


if __name__ == "__main__":
    sys.exit(main())
