"""Trials given whole instead of sampled: a fixed list of plans, run as a grid over their positions.

`python -m search.retrain` hands the runner its top-k x seeds this way
(`RunOptions.fixed`). Each plan is `space.TrialPlan.to_dict()`, resolved once
by the caller; the searcher's only parameter is the plan's position, so
Optuna's GridSampler runs each exactly once and `--resume` reruns only the
ones an interrupted attempt left unfinished, as for a grid study. The list is
written to the run folder's plans.json when the run starts, and a resume
with any other list is refused: the same position must name the same trial.
"""

from __future__ import annotations

import json
from dataclasses import dataclass
from pathlib import Path
from typing import Any, Callable

import optuna

import runfolder

from ._resume import RunError

# The one parameter Optuna samples: the position of the plan in the list.
PLAN_INDEX = "plan"


@dataclass(frozen=True)
class FixedPlans:
    """The trials of a run that samples none: their plans in order, and how they train and are scored."""

    plans: tuple[dict[str, Any], ...]  # TrialPlan.to_dict() of each trial
    # Fit on train+val and test once: a retrain selects nothing, so validation images are better spent on
    # training (the RegNet paper's final runs, arXiv 2003.13678). Its Optuna value is then test accuracy,
    # the only score it measures; the choice of architectures was made on validation before.
    train_on_val: bool = False

    @property
    def objectives(self) -> list[tuple[str, str]]:
        """What each trial tells Optuna as its value."""
        return [("test_acc", "max")] if self.train_on_val else [("val_acc", "max")]

    def grid(self) -> dict[str, list[int]]:
        """The GridSampler space: one point per plan."""
        return {PLAN_INDEX: list(range(len(self.plans)))}

    def define_by_run(self) -> Callable[[Any], None]:
        """The suggest call of each trial: the position of its plan."""
        positions = list(range(len(self.plans)))

        def suggest(trial: optuna.Trial) -> None:
            trial.suggest_categorical(PLAN_INDEX, positions)
            return None

        return suggest

    def screen(self, params: dict[str, Any]) -> tuple[dict[str, Any] | None, str | None]:
        """The plan at the sampled position; none is rejected (the caller chose them)."""
        return self.plans[int(params[PLAN_INDEX])], None

    def check_resume(self, run_dir: Path, resume: bool) -> None:
        """On --resume, refuse a folder whose plans.json is missing or holds other plans (before anything is written)."""
        if not resume:
            return
        try:
            stored = runfolder.read_plans(run_dir)
        except runfolder.RunFolderError as error:
            raise RunError(f"{error}; restore it from a copy, or start again in a new folder") from None
        if stored is None:
            raise RunError(f"{run_dir}: no {runfolder.PLANS_JSON}, so it is not a run of fixed trials to resume")
        if stored != json.loads(json.dumps(list(self.plans))):  # as plans.json holds them: tuples as lists
            raise RunError(f"{runfolder.RunFolder(run_dir).plans}: holds other trials than this run's "
                           f"({len(stored)} stored, {len(self.plans)} given); resume with the same ones")

    def write(self, run_dir: Path) -> None:
        """Record the plans in the run folder (a fresh run)."""
        runfolder.write_plans(run_dir, self.plans)
