"""Trackers that `--log NAME` (search.run, search.retrain) feeds: each trial's per-epoch metrics and its settings.

A tracker is a `TrialListener` of the driver's recorder (search._recorder):
it hears each epoch as the worker reports it and each trial once its row is
on disk, so it writes from the driver and never slows a worker. The table
`TRACKERS` names each one with the optional extra that installs its package
(`pip install 'resnas[tensorboard]'`); a missing package is found before Ray
starts, and the flag says which extra to install.

Ray Tune's own logger callbacks (MLflowLoggerCallback, WandbLoggerCallback)
would name runs by Tune's trial ids and log Tune's raw config (the plan as a
nested dict); a listener logs what the run folder records instead: the trial
id, the row's flattened settings and its final metrics, as TensorBoard gets them.
"""

from __future__ import annotations

import importlib.util
import os
from dataclasses import dataclass
from pathlib import Path
from typing import Callable

import runfolder

from ._recorder import TrialListener
from ._resume import RunError


@dataclass(frozen=True)
class Tracker:
    """One `--log` choice: the package it needs, the optional extra that installs it, and its listener."""

    module: str                                  # must be importable
    extra: str                                   # pip install 'resnas[<extra>]'
    make: Callable[[Path], TrialListener]        # the listener, given the run folder
    where: Callable[[Path], str]                 # one line: where to look


def _tensorboard(run_dir: Path) -> TrialListener:
    from ._tensorboard import TensorBoardTracker

    return TensorBoardTracker(run_dir)


def _tensorboard_where(run_dir: Path) -> str:
    logdir = runfolder.RunFolder(run_dir).tensorboard
    return f"tensorboard: event files in {logdir}/<trial>/; view with: tensorboard --logdir {logdir} --host 127.0.0.1"


def _mlflow(run_dir: Path) -> TrialListener:
    from ._mlflow import MlflowTracker

    return MlflowTracker(run_dir)


def _mlflow_where(run_dir: Path) -> str:
    from ._mlflow import TRACKING_URI_ENV, experiment_name, tracking_uri

    uri = tracking_uri(run_dir)
    source = f"{TRACKING_URI_ENV}" if os.environ.get(TRACKING_URI_ENV) else "the run folder"
    return (f"mlflow: one run per trial in experiment {experiment_name(run_dir)!r} at {uri} ({source}); view with: "
            f"mlflow ui --backend-store-uri {uri} --host 127.0.0.1 (mlflow ui needs the full mlflow package)")


def _wandb(run_dir: Path) -> TrialListener:
    from ._wandb import WandbTracker

    return WandbTracker(run_dir)


def _wandb_where(run_dir: Path) -> str:
    from ._wandb import MODE_ENV, wandb_mode

    folder = runfolder.RunFolder(run_dir).wandb
    if wandb_mode() == "offline":
        return (f"wandb: one offline run per trial in {folder}/ (set {MODE_ENV}=online to send them as they run); "
                f"upload with: wandb sync {folder}/offline-run-*")
    return f"wandb: one run per trial ({MODE_ENV}={wandb_mode()}), local files in {folder}/"


TRACKERS: dict[str, Tracker] = {
    "tensorboard": Tracker(module="tensorboard", extra="tensorboard", make=_tensorboard, where=_tensorboard_where),
    # mlflow-skinny installs the `mlflow` module (the client and stores, without the UI server).
    "mlflow": Tracker(module="mlflow", extra="mlflow", make=_mlflow, where=_mlflow_where),
    "wandb": Tracker(module="wandb", extra="wandb", make=_wandb, where=_wandb_where),
}


def check_trackers(names: tuple[str, ...] | list[str]) -> None:
    """Raise RunError naming the flag and the extra to install when a tracker is unknown or its package is missing."""
    for name in dict.fromkeys(names):
        tracker = TRACKERS.get(name)
        if tracker is None:
            raise RunError(f"--log: got {name!r}; allowed: {', '.join(sorted(TRACKERS))}")
        if importlib.util.find_spec(tracker.module) is None:
            raise RunError(f"--log {name} needs the {tracker.module} package, which is not installed: "
                           f"pip install 'resnas[{tracker.extra}]' (in a checkout: .venv/bin/python -m pip install "
                           f"-c constraints.txt -e '.[{tracker.extra}]')")


def make_trackers(names: tuple[str, ...] | list[str], run_dir: Path) -> list[tuple[str, TrialListener]]:
    """(where-to-look line, listener) of each named tracker, once each, checked first."""
    check_trackers(names)
    return [(TRACKERS[name].where(run_dir), TRACKERS[name].make(run_dir)) for name in dict.fromkeys(names)]
