"""The Ray Tune trainable: one trial, run in a worker from the plan the driver resolved.

The driver resolves each sampled trial once (spec and training settings, as
plain data) and sends that plan in the trial's config; the worker never sees
or validates the study.
"""

from __future__ import annotations

import functools
import math
from typing import Any

import imagefeed
import models
import runfolder
import space

# Keys the driver adds to a trial's config beside the sampled parameters.
TRIAL_NUMBER = "trial_number"
PLAN = "plan"


def objective_metric(metric: str) -> str:
    """The name under which a trial reports an objective to Ray Tune."""
    return f"objective.{metric}"


def sampled_params(config: dict[str, Any]) -> dict[str, Any]:
    """The parameters Optuna sampled, without the keys the driver added."""
    return {k: v for k, v in config.items() if k not in (TRIAL_NUMBER, PLAN)}


def _first_line(error: BaseException) -> str:
    message = str(error).splitlines()[0] if str(error) else ""
    return f"{type(error).__name__}: {message}"


def run_trial(config: dict[str, Any], *, splits: imagefeed.DatasetSplits, data: dict[str, Any],
              objectives: list[str], run_dir: str, cpus_per_trial: float, keep_weights: bool,
              train_on_val: bool = False, data_parallel: dict[str, Any] | None = None) -> None:
    """Ray Tune function trainable: train the trial's planned architecture and report every epoch.

    `train_on_val` fits on train+val and measures no validation accuracy (search.retrain's runs).
    `data_parallel` (workers, cpus and gpus per worker, sync_batchnorm) trains it as that many Ray Train
    workers (search._distributed); None trains it here, in this process.
    """
    import ray
    import torch
    from ray import tune

    from ._distributed import fit_data_parallel
    from .train import fit

    number = config[TRIAL_NUMBER]
    # Ray sets OMP threads from the trial's CPUs; torch needs telling as well.
    torch.set_num_threads(max(1, int(cpus_per_trial)))
    state: dict[str, Any] = {"best": math.nan, "curve": [], "last_epoch": {}}
    figures: dict[str, int] = {}
    epochs = -1  # known once the plan is read

    def objective_values(val_acc_best: float, test_acc: float = math.nan) -> dict[str, Any]:
        # test_acc is an objective only of runs that select nothing (search._plans); a study cannot name it.
        values = {"val_acc": val_acc_best, "test_acc": test_acc, **figures}
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
        plan = space.TrialPlan.from_dict(config[PLAN])
        epochs = plan.train.epochs
        complexity = models.complexity(plan.spec, splits.image_size)
        figures.update(params=complexity.params, macs=complexity.macs)
        trial = runfolder.trial_id(number)
        save_to = runfolder.RunFolder(run_dir).checkpoint_of(trial) if keep_weights else None
        # A streamed dataset's loader workers follow the trial's CPUs (imagefeed.loader_workers).
        train_one = functools.partial(fit, cpus=cpus_per_trial) if data_parallel is None else functools.partial(
            fit_data_parallel, **data_parallel, storage_path=str(runfolder.RunFolder(run_dir).ray_results))
        result = train_one(plan.spec, plan.train, space.DataSettings.from_dict(data), report=report, splits=splits,
                           save_to=save_to, final_eval_on_train_val=train_on_val)
    except Exception as error:  # recorded as a failed trial; the study goes on
        result = {"status": "failed", "error": _first_line(error)}
    final = {k: v for k, v in result.items() if k != "dataset"}
    # Which Ray node trained it: a cluster run shows its spread in the table.
    final["node_id"] = ray.get_runtime_context().get_node_id()
    last_epoch = state["last_epoch"] or {"epoch": final.get("epochs_run", 0),
                                         "val_acc": final.get("val_acc_final", math.nan)}
    tune.report({**last_epoch, **final,
                 **objective_values(final.get("val_acc_best", math.nan), final.get("test_acc", math.nan)),
                 "final": True, "curve": state["curve"]})
