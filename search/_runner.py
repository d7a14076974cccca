"""Run a study: Ray Tune schedules the trials, Optuna (in persistent storage) chooses them.

`run_study` is the sequence: load the data, check the run folder, write
run.json, start Ray, tune, and write run.json and the report at the end. The
pieces live beside it: the worker (`_trial`), the driver's bookkeeping
(`_recorder`), Ray start-up (`_ray`), the run-folder checks (`_resume`) and
the Optuna searcher (`_searcher`).
"""

from __future__ import annotations

import dataclasses
import math
import os
import signal
import sys
import threading
import time
from dataclasses import dataclass
from datetime import datetime, timezone
from pathlib import Path
from typing import Any

import optuna

import imagefeed
import runfolder
import space
from screens import ProxyScreen

from ._environment import hardware, versions
from ._live_report import LiveReport
from ._plans import FixedPlans, PlanSource, SampledPlans
from ._ray import (CONNECT_TIMEOUT_S, check_fits_local_ray, dashboard_line, environment, init_ray, local_ray_record,
                   quiet_tune_failures, shutdown_ray)
from ._recorder import Recorder, tune_callback
from ._resume import RunError, check_run_dir, clear_half_made_start, requeue_lost, take_run_lock
from ._reuse import (ReuseIndex, WarmStart, add_warm_start, data_description, plan_warm_start, read_earlier_run,
                     read_reuse_index, read_warm_start)
from ._searcher import Reuse, Reused, ScreeningOptunaSearch, open_storage, prepare_resume
from ._trackers import check_trackers, make_trackers
from ._trial import TrialTrainable, objective_metric, trial_name

__all__ = ["RunError", "RunOptions", "run_study"]

# Seconds between saves of Ray Tune's experiment state (Tune's default adapts from 10 s up; it costs O(trials)).
TUNE_STATE_EVERY_S = 3600
# Tune's limit on trials waiting for their worker to start ("auto" is 1 with a searcher).
_PENDING_TRIALS_ENV = "TUNE_MAX_PENDING_TRIALS_PG"


@dataclass
class RunOptions:
    """How to run a study: where, whether to continue, which Ray cluster."""

    run_dir: Path
    resume: bool = False
    address: str | None = None
    max_concurrent: int | None = None
    dashboard: bool = True
    report: bool = True
    log: tuple[str, ...] = ()  # trackers fed per epoch and per trial (search._trackers.TRACKERS): --log tensorboard
    connect_timeout: float = CONNECT_TIMEOUT_S  # seconds to keep trying to reach `address`
    fixed: FixedPlans | None = None  # run these trials instead of sampling the study's (search.retrain)
    reuse: tuple[str, ...] = ()  # earlier run folders to take matching trials from (--reuse), with search.reuse


def _utc_now() -> str:
    return datetime.now(timezone.utc).isoformat(timespec="seconds")


def _plan_source(study: space.Study, options: RunOptions) -> PlanSource:
    """Where the run's trials come from: the fixed plans of `options` (search.retrain), else the study's samples."""
    return options.fixed if options.fixed is not None else SampledPlans(study)


def _run_document(study: space.Study, splits: imagefeed.DatasetSplits, previous: runfolder.RunInfo | None,
                  storage_url: str, target: int, plans: PlanSource) -> runfolder.RunInfo:
    """run.json at the start of an attempt: what, on which data, with which budget, where, with what."""
    resources = study.search.resources
    previous = previous or runfolder.RunInfo(attempts=0)
    return dataclasses.replace(
        previous,
        study=study.name, question=study.question, strategy=study.search.strategy,
        objectives=[list(o) for o in plans.objectives], factors=space.factors(study),
        match_complexity=study.match_complexity,  # the settings, defaults filled in; None if unmatched
        dataset=dict(splits.source),
        budget={"epochs": study.max_epochs, "trials": target, "seeds": list(study.search.seeds),
                "resources_per_trial": {"cpus": resources.cpus, "gpus": resources.gpus},
                **({"pack_seeds": plans.pack_seeds} if plans.pack_seeds > 1 else {})},
        hardware=hardware(), versions=versions(), storage=storage_url,
        started=previous.started or _utc_now(), finished=None,
        wall_s=previous.wall_s or 0.0, device_hours=previous.device_hours or 0.0,
        device_hours_unit=runfolder.device_hours_unit(resources.gpus), attempts=previous.attempts + 1,
    )


_HANDLED_SIGNALS = tuple(getattr(signal, name) for name in ("SIGTERM", "SIGINT", "SIGUSR1") if hasattr(signal, name))


def run_study(study: space.Study, options: RunOptions, out: Any = sys.stdout) -> dict[str, Any]:
    """Run (or resume) `study` into `options.run_dir`; return the final run.json document."""
    run_dir = options.run_dir.resolve()
    options.run_dir = run_dir
    check_trackers(options.log)  # a missing optional package is one line, before anything starts
    # Data first: a missing dataset must not leave a half-made run folder behind.
    splits = imagefeed.load(study.data_settings())
    # One driver per folder, from before the folder is judged to its last write; the lock makes a new
    # folder, and takes it away again if this run ends before writing anything.
    lock = take_run_lock(run_dir, out)
    # ray.init, Tune (SIGINT, SIGUSR1: they would stop a run that has ended) and the run (SIGTERM) install
    # signal handlers of their own; a program that runs studies in-process (a notebook, a test) gets its own
    # back afterwards.
    handlers = {signum: signal.getsignal(signum) for signum in _HANDLED_SIGNALS}
    try:
        return _run_locked(study, options, splits, lock, out)
    finally:
        lock.release()
        for signum, handler in handlers.items():
            if handler is not None:  # None: installed from C, which Python cannot put back
                signal.signal(signum, handler)


def _run_locked(study: space.Study, options: RunOptions, splits: imagefeed.DatasetSplits,
                lock: runfolder.RunFolderLock, out: Any) -> dict[str, Any]:
    run_dir = options.run_dir
    folder = runfolder.RunFolder(run_dir)
    # Every check of the folder (run.json, study, trial record, storage) before the first write.
    previous = check_run_dir(study, run_dir, options.resume)
    plans = _plan_source(study, options)
    plans.check_resume(run_dir, options.resume)
    _check_trial_fits(study, options)
    if splits.source.get("embedded_sample"):
        print("note: training on the embedded CIFAR-10 sample (a few thousand images), not the full "
              "dataset; set data.root for real results", file=out)
    storage_url = study.search.storage or folder.storage_url()
    target = plans.target_trials()
    started = time.time()
    document = _run_document(study, splits, previous, storage_url, target, plans)
    # Earlier runs to build on, each judged before anything is written or started.
    reuse, warm_from = _earlier_runs(study, options, splits, out) if plans.takes_earlier_runs else (None, None)
    if reuse is not None:
        document = dataclasses.replace(document, reuse=[str(run.path) for run in reuse.runs])
    # Ray next: a cluster that cannot be joined must not leave a run folder behind. Where earlier runs
    # may stand in for trials, Ray waits until one must train, which may be never.
    dashboard = None if reuse is not None else _start_ray(options, lock)
    # The folder's birth: study.yaml, plans.json and the Optuna storage, then run.json last. A start stopped
    # before run.json (a full disk, a kill) began no run: the next start takes the folder (clear_half_made_start).
    if not options.resume:
        clear_half_made_start(study, folder, out)
        run_dir.mkdir(parents=True, exist_ok=True)
        runfolder.atomic_write_text(folder.study_yaml, study.to_yaml())
        plans.write(run_dir)
        _create_storage(storage_url)
    runfolder.write_run_info(run_dir, document)

    tables = _tables_to_continue(study, storage_url, run_dir, target, options.resume, out)
    recorder = Recorder(tables, total=target, started=started,
                        keep_checkpoints=study.search.keep_checkpoints, out=out)
    if options.resume:
        recorder.reconcile_checkpoints()
    live = _start_listeners(study, options, recorder, out)
    # After ray.init, which installs its own fatal-signal handler, and right before the `try` whose `finally`
    # writes the tables: a `kill` or `timeout` then ends the run like Ctrl-C, tables and run.json written.
    _TERMINATED.clear()
    signal.signal(signal.SIGTERM, _terminate_as_interrupt)
    interrupted = False
    try:
        remaining = max(0, target - _finished(tables))
        if remaining > 0:
            searcher = _make_searcher(study, plans, storage_url, recorder,
                                      reuse=None if reuse is None else _reuse_and_record(reuse, recorder, study),
                                      budget=remaining, proxy_screen=_proxy_screen(study, options, splits))
            if warm_from is not None:
                print("\n".join(add_warm_start(searcher.optuna_study, warm_from)), file=out)
            if searcher.sample_until_training_needed():
                if reuse is not None:
                    dashboard = _start_ray(options, lock)
                    signal.signal(signal.SIGTERM, _terminate_as_interrupt)  # ray.init installed its own
                if dashboard:
                    print(dashboard_line(dashboard), file=out)
                _tune(study, options, plans, splits, searcher, recorder, remaining, document.attempts)
            else:
                print(f"nothing to train: earlier runs stood in for all {remaining} remaining trial(s), so Ray "
                      f"was not started", file=out)
    except KeyboardInterrupt:
        interrupted = True
    except Exception:
        # The KeyboardInterrupt a SIGTERM raises lands wherever the driver is, and the code there may turn it into
        # another error (it did: Ray, serializing the dataset, was importing a module, and raised a TypeError).
        if not _TERMINATED.is_set():
            raise
        interrupted = True
    finally:
        shutdown_ray()
        recorder.tell("close")  # waits for a live build in flight, so the final build below writes last
        tables.close()
        document = _close_document(document, study, recorder, started, target, interrupted)
        runfolder.write_run_info(run_dir, document)
    if options.report and tables.rows:
        _build_report(run_dir, out)
    elif options.report:
        print("no trial finished yet, so no report", file=out)
    if live is not None and live.builds:
        print(live.summary(), file=out)
    return document.to_dict()


def _check_trial_fits(study: space.Study, options: RunOptions) -> None:
    """RunError when a trial asks a local Ray for more CPUs or GPUs than this machine has."""
    try:
        resources = study.search.resources  # a trial of N workers holds N x cpus and N x gpus
        check_fits_local_ray(options.address, resources.cpus * resources.workers, resources.gpus * resources.workers)
    except ValueError as error:
        raise RunError(str(error)) from None


def check_before_a_dry_run(study: space.Study, options: RunOptions) -> list[str]:
    """What a real run checks before it writes anything, short of loading the data. An earlier run (--reuse,
    search.reuse, search.warm_start) that cannot be read is a RunError. A trial that a local Ray on this machine
    could not hold is a note, not an error: a dry run here may be planning a run on a GPU cluster."""
    for path in [*study.search.reuse, *options.reuse]:
        read_earlier_run(path, f"--reuse {path}", options.run_dir)
    earlier = read_warm_start(study, options.run_dir)
    if earlier is not None:
        plan_warm_start(study, earlier, study.search.warm_start.top)
    try:
        _check_trial_fits(study, options)
    except RunError as error:
        return [f"note: a run here without --address would be refused: {error}"]
    return []


def _earlier_runs(study: space.Study, options: RunOptions, splits: imagefeed.DatasetSplits,
                  out: Any) -> tuple[ReuseIndex | None, WarmStart | None]:
    """The reuse index of --reuse and search.reuse, and the trials search.warm_start takes from the run it names,
    judged before anything is written; RunError for a bad folder.

    Asked only where the plan source takes earlier runs: a run of fixed trials (search.retrain) takes neither.
    """
    paths = [*study.search.reuse, *options.reuse]
    reuse = None
    if paths:
        metrics = [metric for metric, _ in study.search.objectives]
        reuse, lines = read_reuse_index(paths, options.run_dir, data_description(splits.source, study.data),
                                        metrics)
        print("\n".join(lines), file=out)
    earlier = read_warm_start(study, options.run_dir)
    warm = None if earlier is None else plan_warm_start(study, earlier, study.search.warm_start.top)
    return reuse, warm


def _create_storage(storage_url: str) -> None:
    """Make the Optuna storage's tables (study.db, for the folder's own); a disk that refuses is a RunError line."""
    try:
        open_storage(storage_url)
    except Exception as error:  # sqlalchemy wraps SQLite's "database or disk is full" in its own types
        line = runfolder.disk_refusal(error, storage_url.removeprefix("sqlite:///"))
        if line is None:
            raise
        raise RunError(line) from None


def _reuse_and_record(index: ReuseIndex, recorder: Recorder, study: space.Study) -> Reuse:
    """The searcher's reuse hook: record a sample an earlier run trained, from there, and say what to tell Optuna."""
    metrics = [metric for metric, _ in study.search.objectives]

    def reuse(number: int, params: dict[str, Any], plan: dict[str, Any]) -> Reused | None:
        earlier = index.match(plan)
        if earlier is None:
            return None
        recorder.trial_reused(number, plan, earlier)
        return Reused(earlier.objective_values(metrics), earlier.result())

    return reuse


def _start_ray(options: RunOptions, lock: runfolder.RunFolderLock) -> str | None:
    """Start or join Ray (a RunError if it cannot be) and note it in the lock; the dashboard URL."""
    try:
        dashboard = init_ray(options.address, options.dashboard, options.connect_timeout)
    except ValueError as error:
        raise RunError(str(error)) from None
    # What a later driver of this folder stops if this one is killed (empty when joining a cluster).
    lock.record(ray=local_ray_record())
    return dashboard


def _start_listeners(study: space.Study, options: RunOptions, recorder: Recorder, out: Any) -> LiveReport | None:
    """Attach the trackers of --log and the live report to the recorder; print where to look at each."""
    for where, tracker in make_trackers(options.log, options.run_dir):
        recorder.listeners.append(tracker)
        print(where, file=out)
    if not options.report:
        return None
    live = LiveReport(options.run_dir, study.model.report.live_every_s, out=out)
    recorder.listeners.append(live)
    print(f"report: {runfolder.RunFolder(options.run_dir).report_html} (written when the first trial finishes, "
          f"then rebuilt at most every {live.every_s:g} s while the study runs; it reloads itself)", file=out)
    return live


def _finished(tables: runfolder.ResultsTables) -> int:
    """Trials that count against the budget: every recorded trial but those rejected before training."""
    return sum(1 for r in tables.rows.values() if not str(r.get("error", "")).startswith(runfolder.REJECTED_PREFIX))


def _tables_to_continue(study: space.Study, storage_url: str, run_dir: Path, target: int, resume: bool,
                        out: Any) -> runfolder.ResultsTables:
    """The tables so far, less the trials an interrupted run left in flight (they are queued again)."""
    existing = _load_optuna_study(study.name, storage_url)
    interrupted = prepare_resume(existing) if existing is not None else []
    tables = runfolder.ResultsTables.load(run_dir, materialize_every_s=study.search.results_every_s)
    for number in interrupted:
        tables.forget(runfolder.trial_id(number))
    if existing is not None:
        requeue_lost(existing, tables.rows, out)
    if resume:
        tables.materialize()  # the tables a user opens now show what the log holds
        finished = _finished(tables)
        print(f"resuming {study.name}: {finished} of {target} trials finished, "
              f"{len(interrupted)} interrupted will rerun, {max(0, target - finished)} to go", file=out)
    return tables


def _tune(study: space.Study, options: RunOptions, plans: PlanSource, splits: imagefeed.DatasetSplits,
          searcher: ScreeningOptunaSearch, recorder: Recorder, remaining: int, attempt: int) -> None:
    """Run the remaining trials through Ray Tune, as `searcher` hands them out, every finished one recorded by `recorder`."""
    from ray import tune
    from ray.tune.schedulers import ASHAScheduler, FIFOScheduler
    from ray.tune.search import ConcurrencyLimiter

    from ._distributed import trial_resources
    from .train import BudgetRungs

    max_concurrent = options.max_concurrent or study.search.max_concurrent
    resources = study.search.resources
    workers = resources.workers
    if workers > 1:
        # Ray Train reserves each trial's workers (one bundle of cpus and gpus per worker) once the trial has
        # started, outside Tune's view: start only as many trials as have their bundles, or the rest wait.
        fit_now = _trials_that_fit(resources.cpus * workers, resources.gpus * workers)
        max_concurrent = min(max_concurrent or fit_now, fit_now)
    search_alg = ConcurrencyLimiter(searcher, max_concurrent) if max_concurrent else searcher
    data_parallel = None if workers == 1 else {
        "workers": workers, "cpus": resources.cpus, "gpus": resources.gpus,
        "sync_batchnorm": resources.sync_batchnorm}
    scheduler, rungs = FIFOScheduler(), None
    if study.search.asha is not None:
        asha = study.search.asha
        # "epoch" stays the budget epoch whatever the schedule, so a trial reaches each rung where ASHA looks.
        scheduler = ASHAScheduler(time_attr="epoch", metric="val_acc", mode="max", max_t=study.max_epochs,
                                  grace_period=asha.grace_period, reduction_factor=asha.reduction_factor)
        if asha.schedule == "budget_true":
            rungs = BudgetRungs(runfolder.asha_rung_epochs(asha.grace_period, asha.reduction_factor,
                                                           study.max_epochs), asha.promotion).to_dict()
    trainable = tune.with_parameters(
        TrialTrainable, splits=splits, data=study.data_settings().to_dict(),
        objectives=[m for m, _ in plans.objectives], run_dir=str(options.run_dir),
        cpus_per_trial=resources.cpus, keep_weights=study.search.keep_checkpoints != 0,
        train_on_val=plans.train_on_val, data_parallel=data_parallel, rungs=rungs)
    # --resume reads the Optuna storage and the trial log, never Tune's experiment state, which Tune
    # rewrites whole (every trial's config and last result) each time: hourly, and at the end, is enough.
    os.environ.setdefault("TUNE_GLOBAL_CHECKPOINT_S", str(TUNE_STATE_EVERY_S))
    # With a searcher and no ConcurrencyLimiter, Tune keeps one trial pending at a time: on a cluster each next
    # trial then waits for a warm worker to free up rather than starting one on an idle node, and short trials
    # all run on one node. Let as many trials wait to start as the cluster holds at once.
    # Set for this run only (a second study in this process has its own cluster and limit); a user's value stays.
    at_once = max_concurrent or _trials_that_fit(resources.cpus, resources.gpus)
    pending = os.environ.get(_PENDING_TRIALS_ENV) or str(at_once)
    trainable = tune.with_resources(trainable, trial_resources(resources.cpus, resources.gpus, workers))
    # Ray names an actor's class by its __qualname__, and Tune's wrappers are local classes
    # ("with_resources.<locals>.ResourceTrainable"): the dashboard shows the trainable's own name instead.
    trainable.__qualname__ = TrialTrainable.__qualname__
    tuner = tune.Tuner(
        trainable,
        # Trials and their folders under ray_results are named by trial id (trial_0003), as the run folder names them.
        tune_config=tune.TuneConfig(search_alg=search_alg, scheduler=scheduler, num_samples=remaining,
                                    reuse_actors=True, trial_name_creator=trial_name,
                                    trial_dirname_creator=trial_name),
        run_config=tune.RunConfig(
            name=f"attempt-{attempt}", storage_path=str(runfolder.RunFolder(options.run_dir).ray_results),
            callbacks=[tune_callback(recorder)], verbose=0, failure_config=tune.FailureConfig(max_failures=0),
        ),
    )
    with environment({_PENDING_TRIALS_ENV: pending}), quiet_tune_failures():
        tuner.fit()


def _trials_that_fit(cpus: float, gpus: float) -> int:
    """How many trials of `cpus` CPUs and `gpus` GPUs the Ray cluster runs at once (at least 1)."""
    import ray

    available = ray.cluster_resources()
    fits = [available.get("CPU", 0.0) / cpus] if cpus else []
    fits += [available.get("GPU", 0.0) / gpus] if gpus else []
    return max(1, int(min(fits, default=1)))


def _close_document(document: runfolder.RunInfo, study: space.Study, recorder: Recorder, started: float,
                    target: int, interrupted: bool) -> runfolder.RunInfo:
    """run.json with this attempt's wall time, device-hours and trial counts; marked finished if the run is."""
    rows = recorder.tables.rows
    return dataclasses.replace(
        document.counted(rows.values()),
        wall_s=(document.wall_s or 0.0) + time.time() - started,
        device_hours=(document.device_hours or 0.0) + _device_hours(recorder, study),
        finished=_utc_now() if len(rows) >= target and not interrupted else document.finished)


# Set by a SIGTERM while a run is in its `try`; cleared when the next run installs the handler.
_TERMINATED = threading.Event()


def _terminate_as_interrupt(signum: int, frame: Any) -> None:
    _TERMINATED.set()
    raise KeyboardInterrupt(f"signal {signum}")


def _device_hours(recorder: Recorder, study: space.Study) -> float:
    resources = study.search.resources
    per_trial = resources.workers * runfolder.devices_per_trial(resources.cpus, resources.gpus)
    # A packed seed's row shares its trial's wall time with the seeds packed with it: the device counts it once.
    seconds = sum(runfolder.trial_device_seconds(r["wall_s"], r.get("packed_seeds")) for r in recorder.new_rows()
                  if isinstance(r.get("wall_s"), float) and not math.isnan(r["wall_s"]))
    return seconds * per_trial / 3600.0


def _load_optuna_study(name: str, storage_url: str) -> optuna.Study | None:
    try:
        return optuna.load_study(study_name=name, storage=storage_url)
    except KeyError:
        return None


def _proxy_screen(study: space.Study, options: RunOptions, splits: imagefeed.DatasetSplits) -> ProxyScreen | None:
    """search.screen, its scoring batches drawn once from the training split (seeded by search.sampler_seed);
    None where the study screens nothing, and for fixed trials (a retrain screens nothing: its trials are chosen)."""
    screen = study.search.screen
    if screen is None or options.fixed is not None:
        return None
    return ProxyScreen.of_data(screen.proxy, screen.keep, screen.batches, splits, study.search.sampler_seed)


def _make_searcher(study: space.Study, plans: PlanSource, storage_url: str, recorder: Recorder,
                   reuse: Reuse | None = None, budget: int | None = None,
                   proxy_screen: ProxyScreen | None = None) -> ScreeningOptunaSearch:
    # Optuna's INFO line about the study it creates is noise in the progress output (init_ray quiets it too,
    # but a run whose every trial is reused never starts Ray).
    optuna.logging.set_verbosity(optuna.logging.WARNING)
    objectives = plans.objectives
    metrics = [objective_metric(m) for m, _ in objectives]
    modes = [mode for _, mode in objectives]
    multi = len(objectives) > 1
    earlier = _load_optuna_study(study.name, storage_url)  # a resume: its sampler must not draw the same samples
    return ScreeningOptunaSearch(
        space=plans.define_by_run(), metric=metrics if multi else metrics[0],
        mode=modes if multi else modes[0],
        sampler=plans.sampler(study.search.sampler_seed,
                              0 if earlier is None else len(earlier.get_trials(deepcopy=False))),
        storage=open_storage(storage_url),
        study_name=study.name, screen=plans.screen, on_rejected=recorder.trial_rejected,
        objective_metrics=metrics, reuse=reuse, budget=budget, proxy_screen=proxy_screen,
        pack_seeds=plans.pack_seeds,
    )


def _build_report(run_dir: Path, out: Any) -> None:
    try:
        from reports import answer_lines, build_report
    except ImportError as error:
        print(f"report skipped: {error}", file=out)
        return
    try:
        path = build_report(run_dir)
        answer = answer_lines(run_dir)
    except Exception as error:  # the tables are safe on disk; a report bug must not hide them
        print(f"report failed ({type(error).__name__}: {error}); rebuild with "
              f"python -m reports.build {run_dir}", file=out)
        return
    print("\n".join(answer), file=out)
    print(f"report: {path}", file=out)
