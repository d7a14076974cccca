"""The Ray Tune trainable: one trial, run in a worker from the plan the driver resolved.

The driver resolves each sampled trial once (spec and training settings, as
plain data) and sends that plan in the trial's config; the worker never sees
or validates the study. `TrialTrainable` is the actor Tune runs it in, named
after the trial it trains (`describe_trial`), and `trial_name` is what Tune
calls the trial and its folder.
"""

from __future__ import annotations

import contextlib
import functools
import math
import sys
from typing import Any

from ray.tune.result import RESULT_DUPLICATE
from ray.tune.trainable.function_trainable import FunctionTrainable

import imagefeed
import models
import runfolder
import space

# Keys the driver adds to a trial's config beside the sampled parameters.
TRIAL_NUMBER = "trial_number"
PLAN = "plan"
# The scores search.screen gave the trial's sample, {proxy: score}; absent where the study screens nothing.
SCREEN = "screen"
# The seeds a trial trains as one model (search.pack_seeds): in its config, [{number, params, plan}] of each, the
# first being the trial's own TRIAL_NUMBER and PLAN; in each result it reports, one report per seed, in that order.
# Absent where a trial trains one seed.
PACK = "pack"
# How often the epoch lines' memory monitor samples loader workers: seldom, as `fit` samples them for its result
# already; the trial process's own peak comes from the kernel whenever a line is written.
_LOG_PEAK_INTERVAL_S = 2.0


def objective_metric(metric: str) -> str:
    """The name under which a trial reports an objective to Ray Tune."""
    return f"objective.{metric}"


def sampled_params(config: dict[str, Any]) -> dict[str, Any]:
    """The parameters Optuna sampled, without the keys the driver added."""
    return {k: v for k, v in config.items() if k not in (TRIAL_NUMBER, PLAN, SCREEN, PACK)}


def trial_name(trial: Any) -> str:
    """Tune's name and folder name for a trial (`trial_0003`): its id as the run folder names it.

    Given to tune.TuneConfig as `trial_name_creator` and `trial_dirname_creator`; `trial` is Tune's Trial,
    whose config the searcher filled.
    """
    return runfolder.trial_id(trial.config[TRIAL_NUMBER])


def _short(value: Any) -> str:
    return f"{value:.4g}" if isinstance(value, float) else str(value)


def describe_trial(config: dict[str, Any]) -> str:
    """`trial_0003 shortcut=B blocks_per_stage=9 seed=1`: the trial id, its plan's factors (those that apply) and
    its seed; the name of the actor that trains it in the Ray dashboard. A trial of packed seeds names each:
    `trial_0003,trial_0004 shortcut=B blocks_per_stage=9 seeds=1,2`."""
    members = pack_members(config)
    plan = members[0]["plan"] or {}
    factors = [f"{name}={_short(value)}" for name, value in (plan.get("factors") or {}).items()
               if value is not None and name != "seed"]
    seeds = [((member["plan"] or {}).get("train") or {}).get("seed") for member in members]
    seeds = [str(seed) for seed in seeds if seed is not None]
    shown = [] if not seeds else [f"seed{'s' if len(members) > 1 else ''}={','.join(seeds)}"]
    return " ".join([",".join(runfolder.trial_id(member["number"]) for member in members), *factors, *shown])


def epoch_line(trial: str, epoch_metrics: dict[str, Any], epochs: int, peak_host_mib: float = math.nan,
               peak_device_mib: float = math.nan) -> str:
    """The line a trial writes to its actor's log after each epoch (the Ray dashboard's log view follows it):
    `trial_0003 epoch 2/10  loss 1.2345  val_acc 0.4512  1834 img/s  peak host 812 MiB`. A figure that was not
    measured (NaN: no validation split, no CUDA device, a data-parallel trial's host) is left out."""
    figures = [("loss {:.4f}", epoch_metrics.get("train_loss")), ("val_acc {:.4f}", epoch_metrics.get("val_acc")),
               ("{:.0f} img/s", epoch_metrics.get("images_per_s")), ("peak host {:.0f} MiB", peak_host_mib),
               ("peak device {:.0f} MiB", peak_device_mib)]
    parts = [f"{trial} epoch {epoch_metrics['epoch']}/{epochs}"]
    parts += [form.format(value) for form, value in figures
              if isinstance(value, (int, float)) and not math.isnan(value)]
    return "  ".join(parts)


def _first_line(error: BaseException) -> str:
    message = str(error).splitlines()[0] if str(error) else ""
    return f"{type(error).__name__}: {message}"


def pack_members(config: dict[str, Any]) -> list[dict[str, Any]]:
    """The trials a Tune trial trains: `{number, params, plan}` of each seed packed into it (search.pack_seeds), or
    of its one trial."""
    return config.get(PACK) or [{"number": config[TRIAL_NUMBER], "params": sampled_params(config),
                                 "plan": config.get(PLAN)}]


def seed_key(tune_trial_id: str, index: int) -> str:
    """The driver's key of seed `index` of a Tune trial, in the searcher's and the recorder's books: the trial's own
    id for its first seed, `<id>#<index>` for a seed packed with it."""
    return tune_trial_id if index == 0 else f"{tune_trial_id}#{index}"


def seed_reports(result: dict[str, Any]) -> list[tuple[int, dict[str, Any]]]:
    """(seed index, report) of each seed one of a Tune trial's results reports: PACK's reports (a seed that said
    nothing, a diverged one, left out), or the result itself where the trial trains one seed."""
    if PACK not in result:
        return [(0, result)]
    return [(index, report) for index, report in enumerate(result[PACK] or []) if report]


class _SeedRecord:
    """One trained seed's record in its worker: its best validation accuracy so far, its curve and last epoch, and
    the results it tells Tune (the objectives under `objective_metric`'s names)."""

    def __init__(self, number: int, objectives: list[str]) -> None:
        self.trial = runfolder.trial_id(number)
        self.objectives = objectives
        self.best = math.nan
        self.curve: list[float] = []
        self.last_epoch: dict[str, Any] = {}
        self.figures: dict[str, int] = {}  # params and macs, once the plan is read

    def objective_values(self, val_acc_best: float, test_acc: float = math.nan) -> dict[str, Any]:
        # test_acc is an objective only of runs that select nothing (search._plans); a study cannot name it.
        values = {"val_acc": val_acc_best, "test_acc": test_acc, **self.figures}
        return {objective_metric(m): values.get(m, math.nan) for m in self.objectives}

    def epoch(self, epoch_metrics: dict[str, Any], epochs: int) -> dict[str, Any] | None:
        """Note one epoch; what to tell Tune of it, or None for the last epoch, which travels in the final report
        (a scheduler that stops trials at max_t would otherwise stop it before its test accuracy)."""
        val = epoch_metrics["val_acc"]
        if math.isnan(self.best) or val > self.best:
            self.best = val
        self.curve.append(round(val, 5))
        if epoch_metrics["epoch"] == epochs:
            self.last_epoch = epoch_metrics
            return None
        return {**epoch_metrics, **self.objective_values(self.best), "final": False}

    def final(self, result: dict[str, Any], node_id: str) -> dict[str, Any]:
        """The trial's final report: its last epoch, its result (which Ray node trained it: a cluster run shows its
        spread in the table), its objectives and its curve."""
        final = {k: v for k, v in result.items() if k != "dataset"}
        final["node_id"] = node_id
        last_epoch = self.last_epoch or {"epoch": final.get("epochs_run", 0),
                                         "val_acc": final.get("val_acc_final", math.nan)}
        return {**last_epoch, **final,
                **self.objective_values(final.get("val_acc_best", math.nan), final.get("test_acc", math.nan)),
                "final": True, "curve": self.curve}


def pack_report(members: list[dict[str, Any] | None], **extra: Any) -> dict[str, Any]:
    """What a trial of packed seeds tells Tune: each seed's report under PACK (None for a seed that said nothing, a
    diverged one), and, for Tune's own view of the trial (it requires the searcher's metrics in every result), the
    mean over the seeds of each number every seed's report has. The searcher and the recorder read PACK only."""
    heard = [member for member in members if member]
    shared = set.intersection(*(set(member) for member in heard)) if heard else set()
    means = {}
    for key in sorted(shared):
        values = [member[key] for member in heard]
        if all(isinstance(v, (int, float)) and not isinstance(v, bool) for v in values):
            finite = [float(v) for v in values if math.isfinite(v)]
            means[key] = sum(finite) / len(finite) if finite else math.nan
    return {**means, **extra, PACK: members}


def run_trial(config: dict[str, Any], *, splits: imagefeed.DatasetSplits, data: dict[str, Any],
              objectives: list[str], run_dir: str, cpus_per_trial: float, keep_weights: bool,
              train_on_val: bool = False, data_parallel: dict[str, Any] | None = None,
              rungs: dict[str, Any] | None = None) -> None:
    """One trial's work, run by `TrialTrainable`: train the planned architecture, report and log every epoch.

    `train_on_val` fits on train+val and measures no validation accuracy (search.retrain's runs).
    `data_parallel` (workers, cpus and gpus per worker, sync_batchnorm) trains it as that many Ray Train
    workers (search._distributed); None trains it here, in this process.
    `rungs` (`train.BudgetRungs.to_dict()`) trains budget-true ASHA rungs; None, one full-length schedule.
    A config with PACK (search.pack_seeds) trains its seeds as one model (`fit_packed`) and reports them together
    (`pack_report`), each seed with its own curve, result and checkpoint.
    """
    import ray
    import torch
    from ray import tune

    from ._distributed import fit_data_parallel
    from ._packed_seeds import fit_packed
    from .train import BudgetRungs, fit, pick_device

    members = pack_members(config)
    packed = PACK in config
    seeds = [_SeedRecord(member["number"], objectives) for member in members]
    # Ray sets OMP threads from the trial's CPUs; torch needs telling as well.
    torch.set_num_threads(max(1, int(cpus_per_trial)))
    epochs = -1  # known once the plan is read
    # This process's peak (and its loader workers') for the epoch lines; a data-parallel trial trains elsewhere.
    host = imagefeed.PeakHostMemory(interval_s=_LOG_PEAK_INTERVAL_S) if data_parallel is None else None
    device = pick_device(None) if data_parallel is None else None  # where fit trains, given no device
    heard: dict[int, dict[str, Any] | None] = {}  # a packed trial's seeds' reports of the epoch in progress

    def reporter(index: int) -> Any:
        seed = seeds[index]

        def report(epoch_metrics: dict[str, Any]) -> None:
            if host is not None:
                host.sample()
            print(epoch_line(seed.trial, epoch_metrics, epochs, host.mib if host is not None else math.nan,
                             imagefeed.peak_device_mib(device) if device is not None else math.nan), flush=True)
            told = seed.epoch(epoch_metrics, epochs)
            if packed:
                heard[index] = told
            elif told is not None:
                tune.report(told)

        return report

    def after_epoch(epoch: int) -> None:
        # The K seeds' epoch as one report; none for the last epoch, which the final report carries.
        told = [heard.pop(index, None) for index in range(len(seeds))]
        if epoch < epochs:
            tune.report(pack_report(told, epoch=epoch, final=False))

    try:
        plans = [space.TrialPlan.from_dict(member["plan"]) for member in members]
        spec, train = plans[0].spec, plans[0].train  # a pack's plans differ in the seed alone
        epochs = train.epochs
        complexity = models.complexity(spec, splits.image_size)
        for seed in seeds:
            seed.figures.update(params=complexity.params, macs=complexity.macs)
        folder = runfolder.RunFolder(run_dir)
        save_to = [folder.checkpoint_of(seed.trial) if keep_weights else None for seed in seeds]
        settings = space.DataSettings.from_dict(data)
        with host if host is not None else contextlib.nullcontext():
            if packed:
                results = fit_packed(spec, [plan.train for plan in plans], settings,
                                     reports=[reporter(index) for index in range(len(seeds))], splits=splits,
                                     save_to=save_to, after_epoch=after_epoch)
            else:
                # A streamed dataset's loader workers follow the trial's CPUs (imagefeed.loader_workers).
                train_one = functools.partial(fit, cpus=cpus_per_trial) if data_parallel is None else \
                    functools.partial(fit_data_parallel, **data_parallel, storage_path=str(folder.ray_results))
                results = [train_one(spec, train, settings, report=reporter(0), splits=splits, save_to=save_to[0],
                                     final_eval_on_train_val=train_on_val,
                                     rungs=None if rungs is None else BudgetRungs.from_dict(rungs))]
    except Exception as error:  # recorded as a failed trial; the study goes on
        results = [{"status": "failed", "error": _first_line(error)} for _ in seeds]
    node_id = ray.get_runtime_context().get_node_id()
    finals = [seed.final(result, node_id) for seed, result in zip(seeds, results)]
    tune.report(pack_report(finals, final=True) if packed else finals[0])


def _announce_actor_name(name: str) -> None:
    """Tell Ray's log monitor this actor's new name, the way Ray itself does after an actor's __init__.

    Ray prefixes each line of an actor's stdout and stderr (as it forwards them to a driver that asks for them)
    with the name in the last `:actor_name:` line of that stream, one line of its own on each.
    """
    from ray._private.ray_constants import LOG_PREFIX_ACTOR_NAME

    for stream in (sys.stdout, sys.stderr):
        print(f"{LOG_PREFIX_ACTOR_NAME}{name}", file=stream, flush=True)


class TrialTrainable(FunctionTrainable):
    """Ray Tune's actor for one trial at a time: `run_trial`, under the name of the trial it trains.

    Its repr is `describe_trial`'s line, which the Ray dashboard shows for the actor. Ray reads an actor's repr
    once, right after its __init__ (the actor's creation task, which runs `setup`) and keeps it in the GCS; a
    function trainable's repr is its function's name, `run_trial`, whatever it trains. With Tune's
    reuse_actors, an actor trains trial after trial (`reset_config`): its repr, its log prefix and its epoch
    lines then name the trial it trains now, while the dashboard's Actors view keeps the first trial's name.

    It is Tune's FunctionTrainable, the base of the class Tune makes of a function (`wrap_function`): run_trial
    reports each epoch with `tune.report` as before, and ASHA's stop, failed trials, actor reuse and
    data-parallel trials run as they did for the function.
    """

    def setup(self, config: dict[str, Any], **worker_args: Any) -> None:
        # tune.with_parameters passes run_trial's keyword arguments here, fetched from Ray's object store.
        self._worker_args = worker_args
        super().setup(config)

    def reset_config(self, new_config: dict[str, Any]) -> bool:
        # Tune has set self.config to the new trial's: the repr names it from here on.
        if not super().reset_config(new_config):
            return False
        _announce_actor_name(repr(self))
        return True

    def _trainable_func(self, config: dict[str, Any]) -> None:
        from ray import tune

        run_trial(config, **self._worker_args)
        # How a function's end reaches Tune (as wrap_function's class reports it): the trial is done, and its
        # last result is not recorded twice.
        tune.report({RESULT_DUPLICATE: True})

    def __repr__(self) -> str:
        config = getattr(self, "config", None) or {}  # Trainable.__init__ sets it before setup
        return describe_trial(config) if TRIAL_NUMBER in config else type(self).__name__
