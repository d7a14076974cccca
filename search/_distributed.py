"""A data-parallel trial: `search.resources.workers` processes train one model through Ray Train's TorchTrainer.

The Tune trial (`_trial.run_trial`) stays the one place that talks to Tune:
here it launches a TorchTrainer whose N workers each run `train.fit` on their
share of every global batch, DDP averaging their gradients (NCCL on GPUs,
gloo on CPUs). Rank 0's per-epoch metrics travel back to the trial through a
Ray Train callback and a queue, and the trial reports them to Tune as a
one-worker trial does, so the recorder, the curves and ASHA see no
difference. Rank 0 alone writes the checkpoint.

Ray Train (v2) reserves the workers' resources in a placement group of its
own, one bundle per worker; the Tune trial that drives it holds none
(`trial_resources`), and the runner lets only as many trials run at once as
there are bundles for (`_runner._tune`).
"""

from __future__ import annotations

import os
import threading
from pathlib import Path
from typing import TYPE_CHECKING, Any, Callable

import torch

from ._data_parallel import DataParallel
from .train import BudgetRungs, fit

if TYPE_CHECKING:
    from models import ArchSpec
    from space import DataSettings, TrainSettings

_END = "end"  # the trial's last queue item: the workers have finished


def trial_resources(cpus: float, gpus: float, workers: int) -> dict[str, float]:
    """What the Tune trial itself holds: everything for one worker; next to nothing when Ray Train holds the workers'.

    Tune refuses an empty request, so a trial of N workers asks for one byte
    of memory: it holds back no CPU or GPU that its workers' bundles need.
    """
    return {"cpu": cpus, "gpu": gpus} if workers == 1 else {"cpu": 0, "gpu": 0, "memory": 1}


def _relay_callback(queue: Any) -> Any:
    """A Ray Train callback, run in its controller, that puts rank 0's report (and every rank's process) in `queue`."""
    from ray.train.v2.api.callback import UserCallback

    class RankZeroRelay(UserCallback):
        def after_report(self, run_context: Any, metrics: list[dict[str, Any]], checkpoint: Any) -> None:
            # Every rank holds the same all-reduced figures; rank 0's are the trial's.
            queue.put({**metrics[0], "processes": [m["process"] for m in metrics]})

    return RankZeroRelay()


def _worker_loop(config: dict[str, Any]) -> None:
    """One Ray Train worker: `train.fit` on this rank's share; every rank reports each epoch (a barrier)."""
    import ray
    import ray.train
    import ray.train.torch

    import space
    from models import ArchSpec

    context = ray.train.get_context()
    distributed = DataParallel(rank=context.get_world_rank(), world_size=context.get_world_size(),
                               sync_batchnorm=config["sync_batchnorm"])
    torch.set_num_threads(max(1, int(config["cpus_per_worker"])))
    # Ray Train's workers are processes of their own; the trial checks that there really are N of them.
    process = {"pid": os.getpid(), "node_id": ray.get_runtime_context().get_node_id()}

    def report(epoch_metrics: dict[str, Any]) -> None:
        ray.train.report({"kind": "epoch", "metrics": epoch_metrics, "process": process})

    save_to = config["save_to"] if distributed.rank == 0 else None
    result = fit(ArchSpec.from_dict(config["spec"]), space.TrainSettings.from_dict(config["train"]),
                 space.DataSettings.from_dict(config["data"]), report=report, splits=ray.get(config["splits"]),
                 device=ray.train.torch.get_device(), save_to=save_to,
                 final_eval_on_train_val=config["final_eval_on_train_val"], distributed=distributed,
                 cpus=config["cpus_per_worker"],
                 rungs=None if config["rungs"] is None else BudgetRungs.from_dict(config["rungs"]))
    ray.train.report({"kind": "final", "metrics": {k: v for k, v in result.items() if k != "dataset"},
                      "process": process})


def fit_data_parallel(spec: ArchSpec, train: TrainSettings, data: DataSettings,
                      report: Callable[[dict[str, Any]], None] | None = None, splits: Any = None,
                      save_to: str | Path | None = None, final_eval_on_train_val: bool = False, *,
                      workers: int, cpus: float, gpus: float, sync_batchnorm: bool = False,
                      storage_path: str | None = None, rungs: BudgetRungs | None = None) -> dict[str, Any]:
    """`train.fit` as `workers` data-parallel processes under Ray Train; called inside a Tune trial.

    The same arguments and result as `fit`; `report` is called here, in the
    Tune trial's thread, with rank 0's metrics of each epoch. The result adds
    `worker_pids`: the processes that trained.
    """
    import ray
    from ray.train import RunConfig, ScalingConfig
    from ray.train.torch import TorchConfig, TorchTrainer
    from ray.util.queue import Queue

    queue = Queue(actor_options={"num_cpus": 0})
    config = {
        "spec": spec.to_dict(), "train": train.to_dict(), "data": data.to_dict(),
        "splits": ray.put(splits),  # once into the object store; each worker reads it from there
        "save_to": str(save_to) if save_to is not None else None, "final_eval_on_train_val": final_eval_on_train_val,
        "sync_batchnorm": sync_batchnorm, "cpus_per_worker": cpus,
        "rungs": None if rungs is None else rungs.to_dict(),  # train.BudgetRungs, as plain data
    }
    # The global batch is train.batch_size whatever the worker count (each worker takes batch_size / workers),
    # so the study's learning rate applies unchanged. Goyal et al. 2017 (arXiv 1706.02677) scale the rate
    # linearly with the global batch; that rule would apply only if each worker kept the whole batch.
    trainer = TorchTrainer(
        _worker_loop, train_loop_config=config,
        torch_config=TorchConfig(backend="nccl" if gpus > 0 else "gloo"),
        scaling_config=ScalingConfig(num_workers=workers, use_gpu=gpus > 0,
                                     resources_per_worker={"CPU": cpus, **({"GPU": gpus} if gpus else {})}),
        run_config=RunConfig(storage_path=storage_path, callbacks=[_relay_callback(queue)]),
    )
    failure: list[BaseException] = []

    def train_all() -> None:
        try:
            trainer.fit()
        except BaseException as error:  # handed to the trial's thread, which reports it as a failed trial
            failure.append(error)
        finally:
            queue.put({"kind": _END})

    runner = threading.Thread(target=train_all, name="ray-train-trial", daemon=True)
    runner.start()
    final: dict[str, Any] = {}
    processes: dict[tuple[str, int], dict[str, Any]] = {}  # (node, pid): PIDs repeat across nodes
    try:
        while (item := queue.get())["kind"] != _END:
            processes.update(((p["node_id"], p["pid"]), p) for p in item["processes"])
            if item["kind"] == "final":
                final = item["metrics"]
            elif report is not None:
                report(item["metrics"])
        runner.join()
    finally:
        ray.kill(queue.actor)
    if failure:
        raise failure[0]
    return {**final, "worker_pids": sorted(pid for _, pid in processes)}
