"""Where a run's trials come from: a `PlanSource`, sampled from the study or given whole.

The runner asks its plan source, never the study or `RunOptions` directly,
how many trials the run has, what each tells Optuna, which sampler and
suggest calls choose them, how a sample becomes a plan, and what the run
folder must hold to resume. Two sources:

- `SampledPlans(study)`: the study's own trials, a grid or an Optuna sampler
  over its space, each sample resolved once in the driver (`space.resolve`).
- `FixedPlans`: trials given whole, run as a grid over their positions.
  `python -m search.retrain` hands the runner its top-k x seeds this way
  (`RunOptions.fixed`). Each plan is `space.TrialPlan.to_dict()`, resolved
  once by the caller; the searcher's only parameter is the plan's position,
  so Optuna's GridSampler runs each exactly once and `--resume` reruns only
  the ones an interrupted attempt left unfinished, as for a grid study. The
  list is written to the run folder's plans.json when the run starts, and a
  resume with any other list is refused: the same position must name the
  same trial.
"""

from __future__ import annotations

import json
from dataclasses import dataclass
from pathlib import Path
from typing import Any, Callable, Protocol

import optuna

import runfolder
import space

from ._resume import RunError
from ._searcher import AskTellGridSampler
from ._seed_packs import PackingGridSampler

# The one parameter Optuna samples for fixed plans: the position of the plan in the list.
PLAN_INDEX = "plan"

# A sample's plan (TrialPlan.to_dict()), or None, and why it is rejected, or None.
Screened = tuple[dict[str, Any] | None, str | None]


class PlanSource(Protocol):
    """What the runner asks about the trials it runs; `SampledPlans` and `FixedPlans` answer."""

    # Fit on train+val and tell Optuna the test accuracy (a retrain), rather than fit on train alone.
    train_on_val: bool
    # Whether --reuse, search.reuse and search.warm_start apply (trials trained on the study's terms).
    takes_earlier_runs: bool

    @property
    def objectives(self) -> list[tuple[str, str]]:
        """(metric, "max"|"min") of each value a trial tells Optuna."""

    def target_trials(self) -> int:
        """The trials the run has in all."""

    @property
    def pack_seeds(self) -> int:
        """At most this many trials of one grid point, other seeds, train as one model in one Tune trial."""

    def sampler(self, seed: int, trials_so_far: int = 0) -> optuna.samplers.BaseSampler:
        """The Optuna sampler that chooses the trials, seeded with `seed`, for a storage holding `trials_so_far`."""

    def define_by_run(self) -> Callable[[Any], dict[str, Any] | None]:
        """The suggest calls of each trial."""

    def screen(self, params: dict[str, Any]) -> Screened:
        """The plan of a sample, and why it is rejected, if it is."""

    def check_resume(self, run_dir: Path, resume: bool) -> None:
        """A RunError when `run_dir` cannot be resumed with these trials (before anything is written)."""

    def write(self, run_dir: Path) -> None:
        """Record in a fresh run folder what a resume must find there."""


@dataclass(frozen=True)
class SampledPlans:
    """The study's own trials: every grid point x seed, or `search.trials` samples of its space."""

    study: space.Study
    train_on_val: bool = False  # a search selects on validation, so it never trains on it
    takes_earlier_runs: bool = True

    @property
    def objectives(self) -> list[tuple[str, str]]:
        """The study's `search.objectives`."""
        return list(self.study.search.objectives)

    def target_trials(self) -> int:
        """Grid points x seeds for a grid study, else `search.trials`."""
        if self.study.search.strategy == "grid":
            return len(space.grid_points(self.study)) * len(self.study.search.seeds)
        return int(self.study.search.trials)

    @property
    def pack_seeds(self) -> int:
        """The study's search.pack_seeds (a grid's; 1 elsewhere)."""
        return self.study.search.pack_seeds

    def sampler(self, seed: int, trials_so_far: int = 0) -> optuna.samplers.BaseSampler:
        """A GridSampler over the grid's points x seeds (it skips the points run; with search.pack_seeds, one that
        gives each point's seeds in a row), or the study's `search.sampler` (`space.make_sampler`: a resumed study
        draws new samples)."""
        if self.study.search.strategy == "grid" and self.pack_seeds > 1:
            return PackingGridSampler(space.grid_search_space(self.study), seed=seed, pack_by=space.POINT)
        if self.study.search.strategy == "grid":
            return AskTellGridSampler(space.grid_search_space(self.study), seed=seed)
        return space.make_sampler(self.study.search.sampler, seed, trials_so_far)

    def define_by_run(self) -> Callable[[Any], dict[str, Any] | None]:
        """The study's suggest calls (`space.define_by_run`)."""
        return space.define_by_run(self.study)

    def screen(self, params: dict[str, Any]) -> Screened:
        """Resolve a sample once into its plan, and say why it is rejected, if it is."""
        try:
            plan = space.resolve(self.study, params)
        except ValueError as error:
            return None, f"invalid architecture: {error}"
        return plan.to_dict(), space.constraint_violation(self.study, plan.spec, plan.train)

    def check_resume(self, run_dir: Path, resume: bool) -> None:
        """Nothing beyond the run folder's own checks (`search._resume.check_run_dir`)."""

    def write(self, run_dir: Path) -> None:
        """Nothing: the study.yaml the runner writes is the whole record."""


@dataclass(frozen=True)
class FixedPlans:
    """The trials of a run that samples none: their plans in order, and how they train and are scored."""

    plans: tuple[dict[str, Any], ...]  # TrialPlan.to_dict() of each trial
    # Fit on train+val and test once: a retrain selects nothing, so validation images are better spent on
    # training (the RegNet paper's final runs, arXiv 2003.13678). Its Optuna value is then test accuracy,
    # the only score it measures; the choice of architectures was made on validation before.
    train_on_val: bool = False
    # A retrain trains on other terms than the study's, so no earlier run's trial stands in for one.
    takes_earlier_runs: bool = False

    @property
    def objectives(self) -> list[tuple[str, str]]:
        """What each trial tells Optuna as its value."""
        return [("test_acc", "max")] if self.train_on_val else [("val_acc", "max")]

    def target_trials(self) -> int:
        """One trial per plan."""
        return len(self.plans)

    @property
    def pack_seeds(self) -> int:
        """1: fixed trials train one seed each (a retrain fits on train+val, which packed seeds do not)."""
        return 1

    def grid(self) -> dict[str, list[int]]:
        """The GridSampler space: one point per plan."""
        return {PLAN_INDEX: list(range(len(self.plans)))}

    def sampler(self, seed: int, trials_so_far: int = 0) -> optuna.samplers.BaseSampler:
        """A GridSampler over the plans' positions (it skips the positions run)."""
        return AskTellGridSampler(self.grid(), seed=seed)

    def define_by_run(self) -> Callable[[Any], dict[str, Any] | None]:
        """The suggest call of each trial: the position of its plan."""
        positions = list(range(len(self.plans)))

        def suggest(trial: optuna.Trial) -> None:
            trial.suggest_categorical(PLAN_INDEX, positions)
            return None

        return suggest

    def screen(self, params: dict[str, Any]) -> Screened:
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
