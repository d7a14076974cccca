"""How many seeds a question needs: the power of each comparison, and the seeds to resolve a target effect.

"Within noise" says only that the trials run so far cannot tell the levels
apart. For each comparison of the report (a simple effect, or a level against
its reference in a one-factor study) this module gives the smallest difference
the current n detects, and the seeds per level that would detect the study's
target effect, with the device-hours they would cost at the measured trial
times. The power comes from the same t-test that decides the verdict:
statsmodels `TTestPower` for a paired comparison (the sd of the per-seed
differences) and `TTestIndPower` for an unpaired one (the pooled sd; it
assumes equal variances, as the textbook formula does).
"""

from __future__ import annotations

import functools
import itertools
import math
import numbers
import shlex
import warnings
from dataclasses import dataclass
from pathlib import Path

import numpy as np
import pandas as pd

import runfolder
from reports._factorial import SimpleComparison, tested_comparisons, within_text
from reports import _budget as budgets
from reports._budget import SectionBudget
from reports._load import ReportError, RunData
from reports._stats import ALPHA, Comparison

# A difference of 1 percentage point, unless the study sets report.target_effect (its one home: runfolder's
# StudyRecord, which the study schema reads too).
DEFAULT_TARGET_EFFECT = runfolder.DEFAULT_TARGET_EFFECT
DEFAULT_POWER = 0.8
# A t-test needs 2 values per group; no answer is smaller.
MIN_SEEDS = 2
# Beyond this many seeds per level the answer is "more than 10,000 seeds" rather than a number to plan with: at
# 10 s a trial that is more than a device-day per level, and the search for it stays a few power evaluations.
MAX_SEEDS = 10_000

_SURE_EFFECT_SIZE = 1e3
# The most seeds per point that `more_seeds` writes a command for: a study's search.repeats stops there too, and the
# command lists every seed (search.seeds), which beyond this is pages of numbers for a run no one would start.
MAX_COMMAND_SEEDS = 1_000

POWER_COLUMNS = ["factor", "level", "reference", "within", "metric", "n", "paired", "sd_diff", "mde", "target_effect",
                 "seeds_needed", "n_ref", "trial_s", "device_hours"]


def _power_analysis(paired: bool):
    from statsmodels.stats.power import TTestIndPower, TTestPower  # imported here: seconds of start-up

    return TTestPower() if paired else TTestIndPower()


def _power(effect_size: float, n: float, paired: bool, alpha: float) -> float:
    """Two-sided power of the t-test with n seeds (pairs, or per group of equal size)."""
    # Two seeds detect an effect of 1000 sd with power 1 to double precision, and scipy's noncentral t returns
    # nan far beyond it (sd ~ 0 against a real effect): a larger effect size has that power too.
    effect_size = min(effect_size, _SURE_EFFECT_SIZE)
    analysis = _power_analysis(paired)
    with warnings.catch_warnings():
        warnings.simplefilter("ignore")
        if paired:
            power = float(analysis.power(effect_size=effect_size, nobs=n, alpha=alpha))
        else:
            power = float(analysis.power(effect_size=effect_size, nobs1=n, ratio=1.0, alpha=alpha))
    if np.isfinite(power):
        return power
    # statsmodels adds both tails of the noncentral t, and scipy returns nan for
    # the far one at a large noncentrality and few degrees of freedom; that tail
    # is then below 1e-9, so the power is the near tail alone.
    from scipy import stats

    df, noncentrality = (n - 1, effect_size * math.sqrt(n)) if paired else (2 * n - 2, effect_size * math.sqrt(n / 2))
    return float(stats.nct.sf(stats.t.ppf(1 - alpha / 2, df), df, noncentrality))


@functools.lru_cache(maxsize=4096)  # a few distinct n serve the hundreds of comparisons of a large study
def _detectable_effect_size(n: int, n_ref: int, paired: bool, alpha: float, power: float) -> float:
    return _solve_power(paired, effect_size=None, nobs=n, ratio=n_ref / n, alpha=alpha, power=power)


def _solve_power(paired: bool, effect_size: float | None, nobs: float | None, ratio: float, alpha: float,
                 power: float) -> float:
    """statsmodels' solve_power for the one unknown left as None (paired: one-sample t on the differences)."""
    analysis = _power_analysis(paired)
    size = {"nobs": nobs} if paired else {"nobs1": nobs, "ratio": ratio}
    with warnings.catch_warnings():
        warnings.simplefilter("ignore")
        solved = analysis.solve_power(effect_size=effect_size, alpha=alpha, power=power, **size)
    return float(np.squeeze(solved))


def minimum_detectable_effect(n: int, sd: float, paired: bool, n_ref: int | None = None,
                              alpha: float = ALPHA, power: float = DEFAULT_POWER) -> float:
    """The smallest difference (in the units of `sd`) that n seeds (pairs, or per group) detect with `power`."""
    n_ref = n if n_ref is None or paired else n_ref
    if n < MIN_SEEDS or n_ref < MIN_SEEDS or not np.isfinite(sd):
        return float("nan")
    if sd == 0.0:
        return 0.0
    return _detectable_effect_size(int(n), int(n_ref), bool(paired), float(alpha), float(power)) * sd


def normal_seeds(effect_size: float, paired: bool, alpha: float = ALPHA, power: float = DEFAULT_POWER) -> float:
    """Seeds by the normal approximation: ((z_{1-a/2} + z_power) / d)^2 pairs, twice that per group unpaired."""
    from scipy import stats

    pairs = ((stats.norm.ppf(1 - alpha / 2) + stats.norm.ppf(power)) / effect_size) ** 2
    return pairs if paired else 2 * pairs


def seeds_needed(effect: float, sd: float, paired: bool, alpha: float = ALPHA, power: float = DEFAULT_POWER) -> float:
    """Seeds per level (pairs when paired, else per group of equal size) to detect `effect` with `power`.

    The smallest integer n whose power, by the noncentral t, reaches `power`;
    nan when the sd is unknown or more than MAX_SEEDS would be needed.
    """
    if not (np.isfinite(sd) and np.isfinite(effect)) or effect <= 0:
        return float("nan")
    if sd == 0.0:
        return float(MIN_SEEDS)
    effect_size = effect / sd

    def enough(n: int) -> bool:
        return _power(effect_size, n, paired, alpha) >= power

    if enough(MIN_SEEDS):
        return float(MIN_SEEDS)
    # The bracket in closed form: a t-test needs at least the normal approximation's n (it does not know the sd),
    # and Guenther's correction (+ z^2/2 pairs, + z^2/4 per group) puts the answer within a seed or two above it.
    # So no search steps through n one at a time, and none goes past MAX_SEEDS: "more than 10,000" is the answer.
    estimate = normal_seeds(effect_size, paired, alpha, power)
    if not estimate <= MAX_SEEDS:  # also nan, where the effect size underflows
        return float("nan")
    low = max(MIN_SEEDS, math.floor(estimate) - 1)
    if enough(low):
        low = MIN_SEEDS
    high = min(MAX_SEEDS, math.ceil(estimate) + 4)
    while not enough(high):  # the correction is under 2 seeds; doubling the gap is the guard, not the rule
        if high == MAX_SEEDS:
            return float("nan")
        low, high = high, min(MAX_SEEDS, high + 2 * (high - low))
    # Power grows with n: bisect on whole seeds (power(low) < target <= power(high)), a dozen steps at most.
    while high - low > 1:
        middle = (low + high) // 2
        low, high = (low, middle) if enough(middle) else (middle, high)
    return float(high)


def target_effect(run: RunData) -> tuple[float, str]:
    """The study's report.target_effect from the run folder's study.yaml, else the default; and where it came from."""
    try:
        study = runfolder.read_study_record(run.run_dir)
        effect = None if study is None else study.target_effect
    except runfolder.RunFolderError as error:
        raise ReportError(str(error)) from None
    if study is None:
        return DEFAULT_TARGET_EFFECT, f"the default ({runfolder.STUDY_YAML} is missing)"
    if not study.sets_target_effect:
        return DEFAULT_TARGET_EFFECT, f"the default ({runfolder.STUDY_YAML} sets no report.target_effect)"
    return effect, f"report.target_effect in {runfolder.STUDY_YAML}"


def check_fraction(value, where: str) -> None:
    """Raise ReportError unless `value` is a number strictly between 0 and 1."""
    if isinstance(value, bool) or not isinstance(value, numbers.Real) or not 0.0 < float(value) < 1.0:
        raise ReportError(f"{where}: got {value!r}; allowed: a fraction strictly between 0 and 1 (0.01 = 1 pp)")


def check_target_effect(value, where: str) -> None:
    """Raise ReportError unless `value` may be a target effect (runfolder.TARGET_EFFECT_RULE, as in study.yaml)."""
    if not runfolder.is_target_effect(value):
        raise ReportError(f"{where}: got {value!r}; allowed: {runfolder.TARGET_EFFECT_RULE}")


def trial_resources(run: RunData) -> tuple[float, str]:
    """(devices held by one trial, unit of device-hours), as the runner counts them in run.json."""
    if run.run_info is None:
        return 1.0, runfolder.TRIAL_HOURS
    return run.run_info.trial_devices()


@dataclass
class SeedPlan:
    """power.csv, and what it assumed: the target effect and its source, the power, and the device-hour unit."""

    table: pd.DataFrame
    target_effect: float
    target_source: str
    power: float
    devices_per_trial: float
    device_unit: str


def _mean_device_s(trials: pd.DataFrame) -> float:
    """The mean device seconds of `trials` (a packed seed's share of its trial's wall time: search.pack_seeds)."""
    if "wall_s" not in trials.columns:
        return float("nan")
    packed = pd.to_numeric(trials["packed_seeds"], errors="coerce") if "packed_seeds" in trials.columns else None
    wall = pd.Series(runfolder.trial_device_seconds(pd.to_numeric(trials["wall_s"], errors="coerce"), packed)).dropna()
    return float(wall.mean()) if len(wall) else float("nan")


def seed_plan(run: RunData, effect: float | None = None, power: float = DEFAULT_POWER,
              tested: list[tuple[SimpleComparison, Comparison]] | None = None,
              budget: SectionBudget | None = None) -> SeedPlan:
    """For every testable comparison: the detectable difference now, and the seeds (and device-hours) for `effect`.

    `effect` defaults to the study's report.target_effect (reports._power.target_effect);
    `tested` are the comparisons already run for the simple effects (reports._factorial), if any;
    `budget` is checked before each comparison (each costs a few power evaluations, see `seeds_needed`).
    """
    budgets.check(budget)
    if effect is None:
        effect, source = target_effect(run)
    else:
        check_target_effect(effect, "effect")
        source = "given on the command line"
    check_fraction(power, "power")
    devices, unit = trial_resources(run)
    rows = []
    for comparison, result in (tested_comparisons(run) if tested is None else tested):
        budgets.check(budget)
        needed = seeds_needed(effect, result.sd, result.paired, power=power)
        # Both cells compared, each run with `needed` seeds, at the mean wall time of their trials so far.
        trial_s = _mean_device_s(comparison.trials) + _mean_device_s(comparison.reference_trials)
        rows.append({
            "factor": comparison.factor.name, "level": comparison.level, "reference": comparison.reference,
            "within": within_text(comparison.within), "metric": comparison.metric, "n": result.n,
            "paired": result.paired, "sd_diff": result.sd,
            "mde": minimum_detectable_effect(result.n, result.sd, result.paired, result.n_ref, power=power),
            "target_effect": float(effect), "seeds_needed": needed, "n_ref": result.n_ref,
            "trial_s": trial_s, "device_hours": needed * trial_s * devices / 3600.0,
        })
    return SeedPlan(table=pd.DataFrame(rows, columns=POWER_COLUMNS), target_effect=float(effect),
                    target_source=source, power=float(power), devices_per_trial=devices, device_unit=unit)


@dataclass(frozen=True)
class MoreSeeds:
    """What running a study again with more seeds costs, and the command that does it (None where none can)."""

    seeds: int            # seeds per point after the run (those run now included)
    seeds_run: int        # seeds per point now
    points: int           # grid points, each run once per seed
    new_trials: int       # points x (seeds - seeds_run): the trials already run are reused, not trained again
    trial_s: float        # this run's mean wall time of a complete trial
    device_hours: float   # new_trials x trial_s x devices per trial
    device_unit: str
    command: str | None
    why_no_command: str = ""


def more_seeds(run: RunData, seeds: int) -> MoreSeeds:
    """The command that runs `run`'s study again with `seeds` seeds per point, and its cost at this run's trial times.

    The command is the tested way to add seeds (tests/search/test_cluster.py): the study as run (study.yaml) into a
    new folder, the trials of this folder taken as they are (`--reuse`, matched on architecture, training settings,
    seed and data), and only the new seeds trained. `--resume` is no way to add them: it refuses a changed study.
    """
    devices, unit = trial_resources(run)
    budget = run.info.get("budget") if isinstance(run.info.get("budget"), dict) else {}
    run_seeds = sorted({int(seed) for seed in budget.get("seeds") or []})
    planned = budget.get("trials")
    points = planned // len(run_seeds) if isinstance(planned, int) and run_seeds else 0
    trial_s = _mean_device_s(run.complete)
    new_trials = points * max(0, seeds - len(run_seeds))
    result = dict(seeds=int(seeds), seeds_run=len(run_seeds), points=points, new_trials=new_trials, trial_s=trial_s,
                  device_hours=new_trials * trial_s * devices / 3600.0, device_unit=unit)
    try:
        study = runfolder.read_study_record(run.run_dir)
    except runfolder.RunFolderError as error:
        raise ReportError(str(error)) from None
    if run.info.get("strategy") != "grid" or not points:
        return MoreSeeds(**result, command=None, why_no_command="only a grid study runs every point once per seed")
    if study is None:
        return MoreSeeds(**result, command=None, why_no_command=f"the run folder has no {runfolder.STUDY_YAML}")
    if seeds > MAX_COMMAND_SEEDS:
        return MoreSeeds(**result, command=None, why_no_command=(
            f"more than {MAX_COMMAND_SEEDS:,} seeds per point; plan for a larger target effect (python -m reports.plan "
            f"{run.run_dir} --effect ...) or for less noise (more data, more epochs)"))
    if run_seeds == list(range(len(run_seeds))):
        # Seeds 0..n-1, as repeats give them: so does this (a study that listed them drops its list first).
        drop_list = [] if study.section("search").get("seeds") is None else ["--set", "search.seeds=null"]
        seed_args = [*drop_list, "--set", f"search.repeats={seeds}"]
    else:
        # The seeds run first, so that every trial of this run is reused; then the smallest seeds not run yet.
        added = itertools.islice((seed for seed in itertools.count() if seed not in run_seeds), seeds - len(run_seeds))
        seed_args = ["--set", f"search.seeds=[{', '.join(map(str, [*run_seeds, *added]))}]"]
    run_dir = Path(run.run_dir)
    command = ["python", "-m", "search.run", str(run_dir / runfolder.STUDY_YAML),
               "--out", str(run_dir.with_name(f"{run_dir.name}_{seeds}_seeds")), "--reuse", str(run_dir), *seed_args]
    return MoreSeeds(**result, command=shlex.join(command))


def _points(fraction: float) -> str:
    return f"{fraction * 100:.2g} pp" if abs(fraction) < 0.1 else f"{fraction * 100:.1f} pp"


def _comparison_name(row) -> str:
    within = f" at {row.within.replace('; ', ', ')}" if row.within else ""
    return f"{row.factor}={row.level} vs {row.reference}{within}"


def plan_sentence(row, verdict: str | None, plan: SeedPlan) -> str:
    """One comparison's power in words, e.g. 'shortcut=B vs A at depth=56 is within noise; resolving 1 pp needs ...'."""
    unit = "pairs" if row.paired else "trials per level"
    now = f"{row.n} {unit}"
    name = _comparison_name(row)
    stated = f"{name} is {verdict}" if verdict else name
    if not np.isfinite(row.seeds_needed):
        return (f"{stated} ({now}); resolving {_points(plan.target_effect)} is out of reach at this noise "
                f"(sd {_points(row.sd_diff)}): more than {MAX_SEEDS:,} seeds per level.")
    if row.seeds_needed <= row.n:
        return (f"{stated} ({now}); these already resolve {_points(plan.target_effect)} with "
                f"{plan.power:.0%} power (smallest detectable difference: {_points(row.mde)}).")
    hours = (f" (about {row.device_hours:.2g} {plan.device_unit} at this budget)"
             if np.isfinite(row.device_hours) else "")
    detectable = f"; now it detects {_points(row.mde)} or more" if np.isfinite(row.mde) else ""
    return (f"{stated} ({now}{detectable}); resolving {_points(plan.target_effect)} needs about "
            f"{int(row.seeds_needed)} seeds per level{hours}.")
