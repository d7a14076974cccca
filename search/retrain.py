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

This module runs a job and is the command line; planning a job lives in
`search/_retrain_plan.py`, turning its results into retrain rows in
`search/_retrain_record.py` (both re-exported here).
"""

from __future__ import annotations

import argparse
import shlex
import sys
from dataclasses import dataclass
from pathlib import Path
from typing import Any, Mapping, TextIO

import pandas as pd
import torch

import imagefeed
import models
import runfolder
from runfolder import RETRAIN_COLUMNS
from space import DataSettings, TrainSettings
from models.cli import OneLineParser
from ._plans import FixedPlans
from ._ray import CONNECT_TIMEOUT_S, add_ray_flags
from ._retrain_plan import (OVERRIDABLE, SOURCE_TRIAL, RetrainError, RetrainJob, check_override_sections, job_study,
                            plan_job, read_results, run_key, top_trials, train_overrides, train_settings_from_row)
from ._retrain_record import format_summary, record_job, summary
from .train import evaluate

__all__ = ["RETRAIN_COLUMNS", "OVERRIDABLE", "SOURCE_TRIAL", "RetrainError", "RetrainJob", "RetrainOutcome",
           "check_override_sections", "format_summary", "job_study", "main", "measure_test_acc", "plan_job",
           "read_results", "record_job", "retrain", "run_key", "summary", "top_trials", "train_overrides",
           "train_settings_from_row"]

EXIT_FAILED_RUN = 1
EXIT_BAD_INPUT = 2
EXIT_INTERRUPTED = 130


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
    splits = imagefeed.load(data)
    target = torch.device(device) if device is not None else next(model.parameters()).device
    memory_format = torch.channels_last if train.channels_last else torch.contiguous_format
    model = model.to(device=target, memory_format=memory_format)
    augment = imagefeed.BatchAugment(crop_padding=data.crop_padding, flip=data.flip,
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
    except (RetrainError, RunError, space.StudyError, imagefeed.DatasetError, models.CheckpointError) as error:
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
