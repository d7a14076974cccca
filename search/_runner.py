"""Run a study: Ray Tune schedules the trials, Optuna (in persistent storage) chooses them.

Everything a trial produces reaches disk in the driver as soon as the trial
finishes (`_Recorder`), so an interrupted run loses at most the trials in
flight, and `--resume` picks up from the Optuna storage and the tables.
"""

from __future__ import annotations

import json
import logging
import math
import os
import shutil
import signal
import sys
import time
from dataclasses import dataclass
from datetime import datetime, timezone
from pathlib import Path
from typing import Any, Callable

import optuna

import models
import space
from models import ArchSpec

from . import datasets
from ._environment import hardware, versions
from ._results import ResultsTables, atomic_write_text, trial_id, trial_row
from ._searcher import TRIAL_NUMBER, AskTellGridSampler, ScreeningOptunaSearch, prepare_resume

RUN_JSON = "run.json"
STUDY_YAML = "study.yaml"
CHECKPOINTS = "checkpoints"


class RunError(ValueError):
    """A run cannot start or continue as asked (existing folder, changed study, ...)."""


# ------------------------------------------------------------------ samplers
def _tpe(seed: int) -> optuna.samplers.BaseSampler:
    return optuna.samplers.TPESampler(seed=seed, multivariate=True)


def _random(seed: int) -> optuna.samplers.BaseSampler:
    return optuna.samplers.RandomSampler(seed=seed)


def _nsga2(seed: int) -> optuna.samplers.BaseSampler:
    return optuna.samplers.NSGAIISampler(seed=seed)


def _qmc(seed: int) -> optuna.samplers.BaseSampler:
    return optuna.samplers.QMCSampler(seed=seed, warn_independent_sampling=False)


SAMPLERS: dict[str, Callable[[int], optuna.samplers.BaseSampler]] = {
    "tpe": _tpe, "random": _random, "nsga2": _nsga2, "qmc": _qmc,
}


def objective_metric(metric: str) -> str:
    """The name under which a trial reports an objective to Ray Tune."""
    return f"objective.{metric}"


# -------------------------------------------------------------- the trial
def run_trial(config: dict[str, Any], *, splits: datasets.DatasetSplits, study_raw: dict[str, Any],
              run_dir: str, cpus_per_trial: float, keep_weights: bool) -> None:
    """Ray Tune function trainable: train one sampled architecture and report every epoch."""
    import ray
    import torch
    from ray import tune

    from .train import fit

    study = space.study_from_dict(study_raw)
    params = dict(config)
    number = params.pop(TRIAL_NUMBER)
    # Ray sets OMP threads from the trial's CPUs; torch needs telling as well.
    torch.set_num_threads(max(1, int(cpus_per_trial)))
    objectives = [m for m, _ in study.search.objectives]
    state: dict[str, Any] = {"best": math.nan, "curve": [], "last_epoch": {}}
    figures: dict[str, int] = {}
    epochs = -1  # known once the plan resolves

    def objective_values(val_acc_best: float) -> dict[str, Any]:
        values = {"val_acc": val_acc_best, **figures}
        return {objective_metric(m): values.get(m, math.nan) for m in objectives}

    def report(epoch_metrics: dict[str, Any]) -> None:
        val = epoch_metrics["val_acc"]
        if math.isnan(state["best"]) or val > state["best"]:
            state["best"] = val
        state["curve"].append(round(val, 5))
        if epoch_metrics["epoch"] == epochs:
            # The last epoch travels in the final report: a scheduler that stops
            # trials at max_t would otherwise stop it before its test accuracy.
            state["last_epoch"] = epoch_metrics
            return
        tune.report({**epoch_metrics, **objective_values(state["best"]), "final": False})

    try:
        plan = space.resolve(study, params)
        epochs = plan.train.epochs
        complexity = models.complexity(plan.spec, splits.image_size)
        figures.update(params=complexity.params, macs=complexity.macs)
        save_to = Path(run_dir) / CHECKPOINTS / trial_id(number) if keep_weights else None
        result = fit(plan.spec, plan.train, study.data_settings(), report=report, splits=splits,
                     save_to=save_to)
    except Exception as error:  # recorded as a failed trial; the study goes on
        message = str(error).splitlines()[0] if str(error) else ""
        result = {"status": "failed", "error": f"{type(error).__name__}: {message}"}
    final = {k: v for k, v in result.items() if k != "dataset"}
    # Which Ray node trained it: a cluster run shows its spread in the table.
    final["node_id"] = ray.get_runtime_context().get_node_id()
    last_epoch = state["last_epoch"] or {"epoch": final.get("epochs_run", 0),
                                         "val_acc": final.get("val_acc_final", math.nan)}
    tune.report({**last_epoch, **final, **objective_values(final.get("val_acc_best", math.nan)),
                 "final": True, "curve": state["curve"]})


# ----------------------------------------------------------- bookkeeping
@dataclass
class _Counts:
    running: int = 0
    complete: int = 0
    failed: int = 0
    pruned: int = 0


def _format_duration(seconds: float) -> str:
    minutes, seconds = divmod(int(seconds), 60)
    hours, minutes = divmod(minutes, 60)
    return f"{hours}h{minutes:02d}m{seconds:02d}s" if hours else f"{minutes}m{seconds:02d}s"


def _percent(value: Any) -> str:
    return "-" if value is None or (isinstance(value, float) and math.isnan(value)) else f"{100 * value:.2f}%"


class _Recorder:
    """Turns Tune's trial events into results rows, checkpoint pruning and one progress line each."""

    def __init__(self, study: space.Study, tables: ResultsTables, total: int, started: float,
                 keep_checkpoints: int, out: Any = sys.stdout) -> None:
        self.study = study
        self.tables = tables
        self.total = total
        self.started = started
        self.keep_checkpoints = keep_checkpoints
        self.out = out
        self.curves: dict[str, list[dict[str, Any]]] = {}
        self.recorded_here: list[str] = []
        self.counts = _Counts()
        for row in tables.rows.values():
            setattr(self.counts, row["status"], getattr(self.counts, row["status"]) + 1)

    # Tune callback hooks (a ray.tune.Callback subclass forwards here).
    def trial_result(self, tune_trial_id: str, result: dict[str, Any]) -> None:
        if "train_loss" in result:  # an epoch's metrics (the last one arrives with the final report)
            self.curves.setdefault(tune_trial_id, []).append(result)

    def trial_finished(self, tune_trial_id: str, config: dict[str, Any], result: dict[str, Any],
                       error: str = "", running: int = 0) -> None:
        self.counts.running = running
        params = {k: v for k, v in config.items() if k != TRIAL_NUMBER}
        number = config[TRIAL_NUMBER]
        spec, train, factors, seed = self._plan(params)
        if error:
            status = "failed"
        elif not result.get("final"):
            status = "pruned"
            error = f"stopped early by the scheduler after epoch {result.get('epoch', '?')}"
            result = {**result, "val_acc_best": result.get(objective_metric("val_acc"), math.nan),
                      "val_acc_final": result.get("val_acc"), "epochs_run": result.get("epoch")}
        else:
            status = result.get("status", "failed")
        row = trial_row(number=number, status=status, seed=seed, factors=factors, spec=spec,
                        train=train, metrics=result, error=error)
        self.tables.add_trial(row, self.curves.pop(tune_trial_id, []))
        self.recorded_here.append(row["trial_id"])
        setattr(self.counts, status, getattr(self.counts, status) + 1)
        if status == "complete":
            self._prune_checkpoints()
        self._print_line(row)

    def trial_rejected(self, number: int, params: dict[str, Any], reason: str) -> None:
        spec, train, factors, seed = self._plan({k: v for k, v in params.items() if k != TRIAL_NUMBER})
        row = trial_row(number=number, status="pruned", seed=seed, factors=factors, spec=spec,
                        train=train, metrics={}, error=f"rejected before training: {reason}")
        self.tables.add_trial(row)

    def new_rows(self) -> list[dict[str, Any]]:
        """Rows of trials that trained in this attempt (not in an earlier one)."""
        return [self.tables.rows[t] for t in self.recorded_here if t in self.tables.rows]

    def _plan(self, params: dict[str, Any]) -> tuple[ArchSpec | None, dict | None, dict, int | None]:
        try:
            plan = space.resolve(self.study, params)
        except ValueError:
            return None, None, dict(params), params.get("seed")
        return plan.spec, plan.train.to_dict(), dict(plan.factors), plan.train.seed

    def _prune_checkpoints(self) -> None:
        """Keep the weights of the top-k complete trials by best validation accuracy."""
        folder = self.tables.run_dir / CHECKPOINTS
        complete = [r for r in self.tables.rows.values()
                    if r["status"] == "complete" and not math.isnan(r["val_acc_best"])]
        complete.sort(key=lambda r: (-r["val_acc_best"], r["trial_id"]))
        keep = complete if self.keep_checkpoints < 0 else complete[: self.keep_checkpoints]
        kept = {r["trial_id"] for r in keep}
        if folder.exists():
            for path in folder.iterdir():
                if path.is_dir() and path.name not in kept and path.name in self.tables.rows:
                    shutil.rmtree(path, ignore_errors=True)
        self.tables.set_checkpoints({t: f"{CHECKPOINTS}/{t}" for t in kept
                                     if (folder / t / "model.safetensors").exists()})

    def _print_line(self, row: dict[str, Any]) -> None:
        finished = self.counts.complete + self.counts.failed + self.counts.pruned
        best = max((r for r in self.tables.rows.values()
                    if r["status"] == "complete" and not math.isnan(r["val_acc_best"])),
                   key=lambda r: r["val_acc_best"], default=None)
        best_text = f"best val {_percent(best['val_acc_best'])} ({best['trial_id']})" if best else "best val -"
        what = ", ".join(f"{k}={v}" for k, v in row.items() if k.startswith("factor."))
        what = what.replace("factor.", "")
        detail = (f"val {_percent(row['val_acc_best'])} test {_percent(row['test_acc'])} "
                  f"in {row['wall_s']:.0f}s" if row["status"] == "complete" else row["error"][:120])
        print(f"[{finished}/{self.total} done, {self.counts.running} running, {self.counts.failed} failed, "
              f"{best_text}, {_format_duration(time.time() - self.started)}] "
              f"{row['trial_id']} {row['status']}: {what}: {detail}", file=self.out, flush=True)


def _tune_callback(recorder: _Recorder) -> Any:
    from ray.tune import Callback

    class RecorderCallback(Callback):
        """Forwards Tune's events to the recorder, in the driver process."""

        def on_trial_result(self, iteration: int, trials: list, trial: Any, result: dict, **info: Any) -> None:
            recorder.trial_result(trial.trial_id, result)

        def on_trial_complete(self, iteration: int, trials: list, trial: Any, **info: Any) -> None:
            recorder.trial_finished(trial.trial_id, trial.config, trial.last_result or {},
                                    running=_running(trials, trial))

        def on_trial_error(self, iteration: int, trials: list, trial: Any, **info: Any) -> None:
            recorder.trial_finished(trial.trial_id, trial.config, trial.last_result or {},
                                    error=_ray_error_message(trial), running=_running(trials, trial))

    return RecorderCallback()


def _running(trials: list, finished: Any) -> int:
    """Trials Tune still runs, besides the one that just finished."""
    return sum(1 for t in trials if t is not finished and t.status == "RUNNING")


def _ray_error_message(trial: Any) -> str:
    """The last line of the error Ray stored for a trial whose worker failed."""
    text = ""
    error_file = getattr(trial, "error_file", None)
    if error_file and os.path.exists(error_file):
        text = Path(error_file).read_text()
    text = text or str(getattr(trial, "error_msg", "") or "the trial's worker failed")
    lines = [line for line in text.strip().splitlines() if line.strip()]
    return lines[-1][:500] if lines else "the trial's worker failed"


# ---------------------------------------------------------------- the run
@dataclass
class RunOptions:
    """How to run a study: where, whether to continue, which Ray cluster."""

    run_dir: Path
    resume: bool = False
    address: str | None = None
    max_concurrent: int | None = None
    dashboard: bool = True
    report: bool = True


def _utc_now() -> str:
    return datetime.now(timezone.utc).isoformat(timespec="seconds")


def check_run_dir(study: space.Study, options: RunOptions) -> dict[str, Any]:
    """Refuse to overwrite a run folder or to resume a different study; return the saved run.json."""
    run_dir = options.run_dir
    existing = run_dir.exists() and any(run_dir.iterdir())
    if existing and not options.resume:
        raise RunError(f"{run_dir}: the run folder exists; continue it with --resume, or give "
                       f"a new one with --out")
    if options.resume:
        if not (run_dir / RUN_JSON).exists():
            raise RunError(f"{run_dir}: nothing to resume (no {RUN_JSON}); start the study without --resume")
        saved = space.load_study(run_dir / STUDY_YAML)
        if saved.raw != study.raw:
            changed = _first_difference(saved.raw, study.raw) or "?"
            raise RunError(f"{run_dir}: the study differs from the one this run started with "
                           f"(at {changed}); resume with the same file and --set flags, or use --out")
        return json.loads((run_dir / RUN_JSON).read_text())
    return {}


def _first_difference(a: Any, b: Any, path: str = "") -> str | None:
    if isinstance(a, dict) and isinstance(b, dict):
        for key in sorted(set(a) | set(b), key=str):
            found = _first_difference(a.get(key), b.get(key), f"{path}.{key}" if path else str(key))
            if found:
                return found
        return None
    return None if a == b else (path or "<root>")


def _write_run_json(run_dir: Path, document: dict[str, Any]) -> None:
    atomic_write_text(run_dir / RUN_JSON, json.dumps(document, indent=2, default=str) + "\n")


def _target_trials(study: space.Study) -> int:
    if study.search.strategy == "grid":
        return len(space.grid_points(study)) * len(study.search.seeds)
    return int(study.search.trials)


def _init_ray(options: RunOptions) -> str | None:
    """Start a local Ray (dashboard on 127.0.0.1) or join the cluster at --address / RAY_ADDRESS."""
    import ray

    optuna.logging.set_verbosity(optuna.logging.WARNING)
    os.environ.setdefault("RAY_AIR_NEW_OUTPUT", "0")
    os.environ.setdefault("TUNE_DISABLE_AUTO_CALLBACK_LOGGERS", "1")
    address = options.address or os.environ.get("RAY_ADDRESS") or None
    kwargs: dict[str, Any] = {"logging_level": logging.ERROR, "log_to_driver": False,
                              "configure_logging": True}
    if address:
        try:
            context = ray.init(address=address, **kwargs)
        except (ConnectionError, RuntimeError) as error:
            hint = ("; a cluster started with token authentication needs RAY_AUTH_MODE=token and its "
                    "token (~/.ray/auth_token or RAY_AUTH_TOKEN) on this machine"
                    if "auth" in str(error).lower() else "")
            raise RunError(f"--address {address}: cannot join the Ray cluster "
                           f"({str(error).splitlines()[0]}){hint}") from None
    else:
        context = ray.init(include_dashboard=options.dashboard, dashboard_host="127.0.0.1", **kwargs)
    url = getattr(context, "dashboard_url", None)
    return f"http://{url}" if url else None


def run_study(study: space.Study, options: RunOptions, out: Any = sys.stdout) -> dict[str, Any]:
    """Run (or resume) `study` into `options.run_dir`; return the final run.json document."""
    import ray
    from ray import tune
    from ray.tune.schedulers import ASHAScheduler, FIFOScheduler
    from ray.tune.search import ConcurrencyLimiter

    run_dir = options.run_dir.resolve()
    options.run_dir = run_dir
    # Data first: a missing dataset must not leave a half-made run folder behind.
    splits = datasets.load(study.data_settings())
    previous = check_run_dir(study, options)
    if splits.source.get("embedded_sample"):
        print("note: training on the embedded CIFAR-10 sample (a few thousand images), not the full "
              "dataset; set data.root for real results", file=out)

    storage_url = study.search.storage or f"sqlite:///{run_dir / 'study.db'}"
    objectives = list(study.search.objectives)
    multi = len(objectives) > 1
    target = _target_trials(study)
    started = time.time()
    document: dict[str, Any] = {
        **previous,
        "study": study.name, "question": study.question, "strategy": study.search.strategy,
        "objectives": [list(o) for o in objectives], "factors": space.factors(study),
        "dataset": {k: v for k, v in splits.source.items()},
        "budget": {"epochs": _max_epochs(study), "trials": target, "seeds": list(study.search.seeds),
                   "resources_per_trial": {"cpus": study.search.resources.cpus,
                                           "gpus": study.search.resources.gpus}},
        "hardware": hardware(), "versions": versions(), "storage": storage_url,
        "started": previous.get("started", _utc_now()), "finished": None,
        "wall_s": previous.get("wall_s", 0.0), "device_hours": previous.get("device_hours", 0.0),
        # Trial seconds x GPUs per trial, or x CPU cores where trials hold no GPU.
        "device_hours_unit": "GPU-hours" if study.search.resources.gpus else "CPU-core-hours",
        "attempts": previous.get("attempts", 0) + 1,
    }
    # Ray next: a cluster that cannot be joined must not leave a run folder behind.
    dashboard = _init_ray(options)
    # After ray.init, which installs its own fatal-signal handler: a `kill` or
    # `timeout` then ends the run like Ctrl-C, tables and run.json written.
    signal.signal(signal.SIGTERM, _terminate_as_interrupt)
    if not options.resume:
        run_dir.mkdir(parents=True, exist_ok=True)
        atomic_write_text(run_dir / STUDY_YAML, study.to_yaml())
    _write_run_json(run_dir, document)

    # Trials an interrupted run left behind: failed in the storage, queued again.
    existing = _load_optuna_study(study.name, storage_url)
    interrupted = prepare_resume(existing) if existing is not None else []
    tables = ResultsTables.load(run_dir)
    for number in interrupted:
        tables.rows.pop(trial_id(number), None)
    finished = sum(1 for r in tables.rows.values() if not str(r.get("error", "")).startswith("rejected"))
    remaining = max(0, target - finished)
    if options.resume:
        print(f"resuming {study.name}: {finished} of {target} trials finished, "
              f"{len(interrupted)} interrupted will rerun, {remaining} to go", file=out)

    recorder = _Recorder(study, tables, total=target, started=started,
                         keep_checkpoints=study.search.keep_checkpoints, out=out)
    interrupted_now = False
    try:
        if remaining > 0:
            if dashboard:
                token = Path.home() / ".ray" / "auth_token"
                print(f"Ray dashboard: {dashboard} (API token in {token})", file=out)
            searcher = _make_searcher(study, storage_url, recorder, multi)
            max_concurrent = options.max_concurrent or study.search.max_concurrent
            search_alg = ConcurrencyLimiter(searcher, max_concurrent) if max_concurrent else searcher
            trainable = tune.with_parameters(
                run_trial, splits=splits, study_raw=study.raw, run_dir=str(run_dir),
                cpus_per_trial=study.search.resources.cpus,
                keep_weights=study.search.keep_checkpoints != 0)
            resources = {"cpu": study.search.resources.cpus, "gpu": study.search.resources.gpus}
            scheduler = FIFOScheduler()
            if study.search.scheduler == "asha":
                asha = study.search.asha
                scheduler = ASHAScheduler(time_attr="epoch", metric="val_acc", mode="max",
                                          max_t=_max_epochs(study), grace_period=asha.grace_period,
                                          reduction_factor=asha.reduction_factor)
            tuner = tune.Tuner(
                tune.with_resources(trainable, resources),
                tune_config=tune.TuneConfig(search_alg=search_alg, scheduler=scheduler,
                                            num_samples=remaining, reuse_actors=True),
                run_config=tune.RunConfig(
                    name=f"attempt-{document['attempts']}", storage_path=str(run_dir / "ray_results"),
                    callbacks=[_tune_callback(recorder)], verbose=0,
                    failure_config=tune.FailureConfig(max_failures=0),
                ),
            )
            tuner.fit()
    except KeyboardInterrupt:
        interrupted_now = True
    finally:
        if ray.is_initialized():
            ray.shutdown()
        elapsed = time.time() - started
        document["wall_s"] = document["wall_s"] + elapsed
        document["device_hours"] = document["device_hours"] + _device_hours(recorder, study)
        complete = len(tables.rows)
        if complete >= target and not interrupted_now:
            document["finished"] = _utc_now()
        document["trial_counts"] = {s: sum(1 for r in tables.rows.values() if r["status"] == s)
                                    for s in ("complete", "failed", "pruned")}
        _write_run_json(run_dir, document)
    if options.report and tables.rows:
        _build_report(run_dir, out)
    elif options.report:
        print("no trial finished yet, so no report", file=out)
    return document


def _terminate_as_interrupt(signum: int, frame: Any) -> None:
    raise KeyboardInterrupt(f"signal {signum}")


def _max_epochs(study: space.Study) -> int:
    epochs = study.raw.get("train", {}).get("epochs", space.TrainSettings.epochs)
    if isinstance(epochs, dict):
        bounds = epochs.get("int") or epochs.get("choice") or [space.TrainSettings.epochs]
        return int(max(bounds))
    return int(epochs)


def _device_hours(recorder: _Recorder, study: space.Study) -> float:
    # Accelerator-hours when trials hold GPUs, else CPU-core-hours.
    per_trial = study.search.resources.gpus or study.search.resources.cpus
    seconds = sum(r["wall_s"] for r in recorder.new_rows()
                  if isinstance(r.get("wall_s"), float) and not math.isnan(r["wall_s"]))
    return seconds * per_trial / 3600.0


def _load_optuna_study(name: str, storage_url: str) -> optuna.Study | None:
    try:
        return optuna.load_study(study_name=name, storage=storage_url)
    except KeyError:
        return None


def _make_searcher(study: space.Study, storage_url: str, recorder: _Recorder,
                   multi: bool) -> ScreeningOptunaSearch:
    objectives = list(study.search.objectives)
    metrics = [objective_metric(m) for m, _ in objectives]
    modes = [mode for _, mode in objectives]
    if study.search.strategy == "grid":
        sampler: optuna.samplers.BaseSampler = AskTellGridSampler(
            space.grid_search_space(study), seed=study.search.sampler_seed)
    else:
        sampler = SAMPLERS[study.search.sampler](study.search.sampler_seed)

    def screen(params: dict[str, Any]) -> str | None:
        try:
            plan = space.resolve(study, params)
        except ValueError as error:
            return f"invalid architecture: {error}"
        return space.constraint_violation(study, plan.spec)

    return ScreeningOptunaSearch(
        space=space.define_by_run(study), metric=metrics if multi else metrics[0],
        mode=modes if multi else modes[0], sampler=sampler, storage=optuna.storages.get_storage(storage_url),
        study_name=study.name, screen=screen, on_rejected=recorder.trial_rejected,
        objective_metrics=metrics,
    )


def _build_report(run_dir: Path, out: Any) -> None:
    try:
        from reports import build_report
    except ImportError as error:
        print(f"report skipped: {error}", file=out)
        return
    try:
        path = build_report(run_dir)
    except Exception as error:  # the tables are safe on disk; a report bug must not hide them
        print(f"report failed ({type(error).__name__}: {error}); rebuild with "
              f"python -m reports.build {run_dir}", file=out)
        return
    print(f"report: {path}", file=out)
