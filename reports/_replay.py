"""Replay search strategies on a finished run's recorded curves: what each would have chosen, for how many epochs.

A run that trained every trial to the end keeps every trial's validation
accuracy at every epoch (curves.parquet). A strategy that cuts trials early
(successive halving, ASHA, Hyperband, top-k after e epochs) or trains only some
of them (a random subset, a zero-cost screen) needs nothing else to be
simulated: it may read a trial's curve only up to the epochs it spends on it,
and it chooses its winner among the trials it trains to the end, by the run
folder's ranking rule (runfolder.RANKING_RULE: `val_acc_best`, ties by trial
id). Its answer is then compared with the full run's:

- `regret_pp`: the full run's best `val_acc_best` minus that of the
  strategy's choice, in percentage points (0 when it finds the same trial);
- `test_regret_pp`: the test accuracy of the full run's choice minus that of
  the strategy's choice (reported, never used to choose);
- `epochs_fraction`: the epochs the strategy spends over the full run's
  (every replayed trial at the full budget).

The point estimates replay the run as it happened: its trials in the order the
run sampled them (`number`), random choices from `--seed`. Each bootstrap
replicate draws the run's trials with replacement, in a random arrival order,
with fresh random choices, and replays every strategy and the full search on
that same draw (so the strategies are compared on common draws); the 95%
percentile interval over the replicates is `regret_ci_pp`. It answers "had the
search drawn other trials from this space, in another order, how much would
this strategy have lost?".

Ranking fidelity per epoch: Kendall's tau-b (reports._kendall) and Spearman's
rho (scipy.stats.spearmanr) between each epoch's `val_acc` and the final
ranking by `val_acc_best`, each with a percentile bootstrap CI over trials on
the same resamples.

References: successive halving (Jamieson & Talwalkar 2016, arXiv 1502.07943);
Hyperband (Li et al. 2017, JMLR 18(185), arXiv 1603.06560); ASHA (Li et al.
2018, "A System for Massively Parallel Hyperparameter Tuning", arXiv
1810.05934), simulated as Ray Tune's AsyncHyperBandScheduler decides (search._runner
runs it with one bracket); top-k after one epoch (Egele et al. 2023, "Is One
Epoch All You Need For Multi-Fidelity Hyperparameter Optimization?", ESANN,
arXiv 2307.15422); zero-cost screens (Abdelfattah et al. 2021, "Zero-Cost Proxies
for Lightweight NAS", ICLR, arXiv 2101.08134: params and FLOPs are strong
baselines, larger scoring higher).
"""

from __future__ import annotations

import bisect
import json
import math
import zlib
from dataclasses import dataclass, field
from typing import Any, Callable, Iterable

import numpy as np
import pandas as pd

import runfolder
from reports import _budget as budgets
from reports._budget import SectionBudget
from reports._fidelity import _epochs_to_rank, asha_settings
from reports._kendall import MIN_TAU_N, _row_sums_by_value, kendall_tau_ci, resample_counts, resample_indices
from reports._load import ReportError, RunData
from reports._stats import BOOTSTRAP_RESAMPLES, BOOTSTRAP_SEED, CONFIDENCE, percentile_interval

# Bootstrap replicates of the whole replay (every strategy on each): the 95% interval's ends then lie about 5 draws
# in from either end of 200; each replicate replays every strategy, so the cost is linear in this.
REPLICATES = 200
# At most this many trials are replayed, a seeded random subset of them (in their arrival order) beyond it, as
# the rank-stability section caps its bootstrap: the replay's cost grows with trials x replicates x strategies
# (ASHA's decisions are sequential, a Python loop), about 2 s at 200 trials of 8 epochs on one core.
MAX_REPLAY_TRIALS = 200
# A strategy needs two trials to choose between.
MIN_REPLAY_TRIALS = 2
# The regret a cheaper strategy may lose, CI included: 0.5 pp, the goal of issue 22.
DEFAULT_TOLERANCE = 0.005
# The settings replayed. Reduction factors: 2 (halving), 3 (Hyperband's and search.asha's default) and 4 (Ray
# Tune's ASHA default, and bench/asha_efficiency.py's).
REDUCTION_FACTORS = (2, 3, 4)
# Grace periods: powers of 2 below the run's epochs, at most this many.
MAX_GRACE_PERIODS = 4
RANDOM_FRACTIONS = (0.1, 0.25, 0.5)
TOP_K_FRACTIONS = (0.1, 0.2, 0.25)
SCREEN_KEEP = (0.25, 0.5)
# The zero-cost scores a results table may hold: the complexity columns every run has, and the proxies a
# screened search (search.screen) records as `screen.<proxy>`.
COMPLEXITY_PROXIES = ("params", "macs")
SCREEN_PREFIX = runfolder.SCREEN_PREFIX

REPLAY_COLUMNS = ["strategy", "label", "settings", "epochs", "epochs_fraction", "regret_pp", "regret_ci_low_pp",
                  "regret_ci_high_pp", "test_regret_pp", "test_regret_ci_low_pp", "test_regret_ci_high_pp",
                  "chosen_trial", "within_tolerance"]
REPLAY_FIDELITY_COLUMNS = ["epoch", "n", "kendall_tau", "kendall_ci_low", "kendall_ci_high", "spearman_rho",
                           "spearman_ci_low", "spearman_ci_high"]


class ReplayUnavailable(ReportError):
    """A run folder whose curves cannot be replayed (none, or fewer than two trials trained to the end)."""


# ------------------------------------------------------------------ the curves
@dataclass(frozen=True)
class ReplayCurves:
    """The trials a replay reads, in the order the run sampled them: every epoch's val_acc and the final scores."""

    trial_ids: tuple[str, ...]
    # trials x epochs (epoch e in column e - 1), every cell finite.
    val_acc: np.ndarray
    val_acc_best: np.ndarray
    test_acc: np.ndarray
    # Zero-cost scores by name (higher is better), each a value per trial (NaN where missing).
    proxies: dict[str, np.ndarray]
    # Each trial's place when sorted by trial id: the ranking rule's tie-break.
    id_order: np.ndarray
    n_complete: int
    notes: tuple[str, ...] = ()

    @property
    def epochs(self) -> int:
        return int(self.val_acc.shape[1])

    def __len__(self) -> int:
        return len(self.trial_ids)


def replay_columns(name: str) -> bool:
    """The results columns a replay reads (`load_run(..., columns=replay_columns)`)."""
    return (name in ("trial_id", "status", "number", runfolder.RANKING_COLUMN, "test_acc", *COMPLEXITY_PROXIES)
            or name.startswith(SCREEN_PREFIX))


def _arrival_order(trials: pd.DataFrame) -> pd.DataFrame:
    """Trials in the order the run sampled them: by `number` where every row has one, else by trial id."""
    number = pd.to_numeric(trials["number"], errors="coerce") if "number" in trials.columns else None
    if number is not None and number.notna().all():
        return trials.iloc[np.lexsort((trials["trial_id"].astype(str).to_numpy(), number.to_numpy()))]
    return trials.iloc[np.argsort(trials["trial_id"].astype(str).to_numpy(), kind="stable")]


def _proxy_scores(trials: pd.DataFrame) -> dict[str, np.ndarray]:
    proxies = {}
    for column in trials.columns:
        if column in COMPLEXITY_PROXIES or column.startswith(SCREEN_PREFIX):
            values = pd.to_numeric(trials[column], errors="coerce").to_numpy(dtype=float)
            if np.isfinite(values).sum() >= MIN_REPLAY_TRIALS:
                proxies[column] = values
    return proxies


def replay_curves(run: RunData) -> ReplayCurves:
    """The complete trials with a curve at every epoch up to the run's last, in arrival order; ReplayUnavailable if
    fewer than two."""
    if run.curves is None:
        raise ReplayUnavailable(f"{run.run_dir / runfolder.CURVES_PARQUET}: missing; a replay needs every trial's "
                                "validation accuracy per epoch")
    if runfolder.RANKING_COLUMN not in run.results.columns:
        raise ReplayUnavailable(f"{run.run_dir / runfolder.RESULTS_PARQUET}: no {runfolder.RANKING_COLUMN} column; "
                                "a replay ranks trials by it")
    complete = run.complete
    # Only the columns a replay reads: a report's frame of 10^6 rows holds many more, and each is copied below.
    complete = complete[[column for column in complete.columns if replay_columns(column)]]
    complete = complete[np.isfinite(pd.to_numeric(complete[runfolder.RANKING_COLUMN], errors="coerce"))]
    notes = []
    n_complete = len(complete)
    if n_complete > MAX_REPLAY_TRIALS:
        # Drawn from the trials in the order the reader gives them, then put in arrival order: 200 rows to sort.
        rng = np.random.default_rng(BOOTSTRAP_SEED)
        complete = complete.iloc[np.sort(rng.choice(n_complete, MAX_REPLAY_TRIALS, replace=False))]
        notes.append(f"{n_complete:,} complete trials: the replay uses a seeded random {MAX_REPLAY_TRIALS} of them, "
                     "in their order (its cost grows with the trials), so its CIs are wider than all would give.")
    complete = _arrival_order(complete)
    ids = complete["trial_id"].astype(str).to_numpy()
    curves = run.curves[["trial_id", "epoch", "val_acc"]]
    curves = curves[curves["trial_id"].isin(set(ids))]
    curves = curves.assign(trial_id=curves["trial_id"].astype(str),
                           epoch=pd.to_numeric(curves["epoch"], errors="coerce"),
                           val_acc=pd.to_numeric(curves["val_acc"], errors="coerce")).dropna()
    curves = curves[curves["epoch"] >= 1]
    if curves.empty:
        raise ReplayUnavailable(f"{run.run_dir / runfolder.CURVES_PARQUET}: no epoch of a complete trial; nothing "
                                "to replay")
    by_epoch = curves.pivot_table(index="trial_id", columns="epoch", values="val_acc", aggfunc="last")
    epochs = int(by_epoch.columns.max())
    # Compared with the epochs recorded, never made from the largest: an epoch of 10^9 in a hostile table would
    # otherwise ask for 10^9 columns.
    if by_epoch.shape[1] != epochs or list(by_epoch.columns) != list(range(1, epochs + 1)):
        raise ReplayUnavailable(f"{run.run_dir / runfolder.CURVES_PARQUET}: field epoch: got "
                                f"{', '.join(f'{e:g}' for e in list(by_epoch.columns)[:5])}"
                                f"{' ...' if by_epoch.shape[1] > 5 else ''}; allowed: every epoch 1, 2, ... up to "
                                "the last, as the runner records them")
    by_epoch = by_epoch.reindex(index=ids)
    full = np.isfinite(by_epoch.to_numpy(dtype=float)).all(axis=1)
    if not full.all():
        notes.append(f"{int((~full).sum())} of {len(ids)} complete trials lack a validation accuracy at some epoch up "
                     f"to {epochs} (a shorter train.epochs, or a curve cut short): they are left out, since a "
                     "strategy could not read them.")
    if asha_settings(run).scheduler == "asha":
        notes.append("This run used ASHA: only the trials that ran to the end have whole curves, so the replay is "
                     "among the survivors of its cuts. Replay a run without a scheduler to measure the strategies.")
    trials = complete[full]
    if len(trials) < MIN_REPLAY_TRIALS:
        raise ReplayUnavailable(f"{run.run_dir}: {len(trials)} complete trial(s) with a validation accuracy at every "
                                f"epoch up to {epochs}; a replay needs at least {MIN_REPLAY_TRIALS}")
    trial_ids = trials["trial_id"].astype(str).to_numpy()
    test = (pd.to_numeric(trials["test_acc"], errors="coerce").to_numpy(dtype=float) if "test_acc" in trials.columns
            else np.full(len(trials), np.nan))
    return ReplayCurves(
        trial_ids=tuple(trial_ids), val_acc=by_epoch.to_numpy(dtype=float)[full],
        val_acc_best=pd.to_numeric(trials[runfolder.RANKING_COLUMN]).to_numpy(dtype=float), test_acc=test,
        proxies=_proxy_scores(trials), id_order=np.argsort(np.argsort(trial_ids, kind="stable"), kind="stable"),
        n_complete=n_complete, notes=tuple(notes))


# ------------------------------------------------------------------ the strategies
# Each takes the sampled trials' curves (trials x epochs, in arrival order), their zero-cost scores, a seeded
# generator and its settings, and returns the epochs it trains each trial. A trial given every epoch is a
# candidate for the winner; one given fewer was read only up to them.
def _rungs(grace_period: int, reduction_factor: int, epochs: int) -> tuple[int, ...]:
    """The epochs at which trials are compared, below the full budget: ASHA's rungs (runfolder.asha_rung_epochs,
    the rule the runner's scheduler follows), whose last, the full budget, decides nothing."""
    return runfolder.asha_rung_epochs(grace_period, reduction_factor, epochs)[:-1]


def _top(values: np.ndarray, k: int) -> np.ndarray:
    """Positions of the k highest values (NaN lowest), ties to the earlier position."""
    return np.argsort(-np.where(np.isnan(values), -np.inf, values), kind="stable")[:k]


def full_search(val_acc: np.ndarray, proxies: dict, rng: np.random.Generator | None) -> np.ndarray:
    """Every trial at the full budget: the run as it was."""
    return np.full(len(val_acc), val_acc.shape[1])


def _halve(val_acc: np.ndarray, rungs: Iterable[int], reduction_factor: int) -> np.ndarray:
    """Successive halving at the given rungs: all trials to the first, the top 1/eta (at least one) on to the next,
    and the last survivors to the end."""
    n, epochs = val_acc.shape
    spent = np.zeros(n, dtype=int)
    survivors = np.arange(n)
    for rung in rungs:
        spent[survivors] = rung
        survivors = survivors[_top(val_acc[survivors, rung - 1], max(1, len(survivors) // reduction_factor))]
    spent[survivors] = epochs
    return spent


def successive_halving(val_acc: np.ndarray, proxies: dict, rng: np.random.Generator | None, reduction_factor: int,
                       grace_period: int) -> np.ndarray:
    """Synchronous successive halving (Jamieson & Talwalkar 2016) at ASHA's rungs: every trial to the grace period,
    the top 1/eta of them on to the next rung, and so on to the end."""
    return _halve(val_acc, _rungs(grace_period, reduction_factor, val_acc.shape[1]), reduction_factor)


def _percentile(ordered: list[float], percent: float) -> float:
    """np.nanpercentile(ordered, percent) of a sorted list without NaN, operation for operation (numpy's linear
    method and its lerp), so that a cut-off equals the one Ray's ASHA computes to the last bit."""
    last = len(ordered) - 1
    position = last * (percent / 100)
    low = int(position)  # floor: the position is never negative
    below, above = ordered[low], ordered[low + 1 if low < last else last]
    t = position - low
    return above - (above - below) * (1 - t) if t >= 0.5 else below + (above - below) * t


def asha(val_acc: np.ndarray, proxies: dict, rng: np.random.Generator | None, reduction_factor: int,
         grace_period: int) -> np.ndarray:
    """Asynchronous successive halving (Li et al. 2018) as Ray Tune's ASHA decides: trials arrive one after another;
    at each rung a trial stops when its val_acc there is below the (1 - 1/eta) percentile of the trials that reached
    the rung before it (the first to reach a rung goes on), and is recorded there either way."""
    n, epochs = val_acc.shape
    rungs = _rungs(grace_period, reduction_factor, epochs)
    recorded: list[list[float]] = [[] for _ in rungs]
    percent = (1 - 1 / reduction_factor) * 100  # as Ray's _Bracket.cutoff writes it
    spent = np.full(n, epochs)
    rows = val_acc[:, [rung - 1 for rung in rungs]].tolist()
    insort = bisect.insort
    for trial, values in enumerate(rows):
        for at_rung, value in enumerate(values):
            earlier = recorded[at_rung]
            stop = bool(earlier) and value < _percentile(earlier, percent)
            insort(earlier, value)
            if stop:
                spent[trial] = rungs[at_rung]
                break
    return spent


def _hyperband_brackets(epochs: int, reduction_factor: int) -> list[tuple[int, tuple[int, ...]]]:
    """(trials, rungs) of each bracket, most aggressive first (Li et al. 2017, Algorithm 1, with R = the run's
    epochs and 1 epoch the least): bracket s has n_s = ceil((s_max + 1) / (s + 1) * eta^s) trials and s rungs, at
    R * eta^(i - s) epochs (rounded down, at least 1) for i = 0 .. s - 1, before the full budget."""
    s_max = int(math.floor(math.log(epochs) / math.log(reduction_factor) + 1e-9))
    brackets = []
    for s in range(s_max, -1, -1):
        rungs = sorted({max(1, epochs * reduction_factor ** i // reduction_factor ** s) for i in range(s)})
        brackets.append((math.ceil((s_max + 1) / (s + 1) * reduction_factor ** s),
                         tuple(rung for rung in rungs if rung < epochs)))
    return brackets


def _split(n: int, weights: list[int]) -> list[int]:
    """n items in parts proportional to `weights`, by largest remainder (earlier parts first on ties)."""
    shares = np.asarray(weights, dtype=float) / sum(weights) * n
    parts = np.floor(shares).astype(int)
    for index in np.argsort(-(shares - parts), kind="stable")[: n - parts.sum()]:
        parts[index] += 1
    return parts.tolist()


def hyperband(val_acc: np.ndarray, proxies: dict, rng: np.random.Generator | None, reduction_factor: int) -> np.ndarray:
    """Hyperband (Li et al. 2017): brackets of successive halving from aggressive to none. The run's trials are its
    budget: they go to the brackets in arrival order, in proportion to each bracket's n_s."""
    n, epochs = val_acc.shape
    brackets = _hyperband_brackets(epochs, reduction_factor)
    spent = np.zeros(n, dtype=int)
    start = 0
    for (_, rungs), size in zip(brackets, _split(n, [trials for trials, _ in brackets])):
        part = slice(start, start + size)
        if size:
            spent[part] = _halve(val_acc[part], rungs, reduction_factor)
        start += size
    return spent


def random_subset(val_acc: np.ndarray, proxies: dict, rng: np.random.Generator, fraction: float) -> np.ndarray:
    """A random `fraction` of the trials (at least one) at the full budget, the rest not trained."""
    n, epochs = val_acc.shape
    spent = np.zeros(n, dtype=int)
    spent[rng.choice(n, max(1, round(fraction * n)), replace=False)] = epochs
    return spent


def top_k_after(val_acc: np.ndarray, proxies: dict, rng: np.random.Generator | None, epochs: int,
                fraction: float) -> np.ndarray:
    """Every trial for `epochs` epochs, then the top `fraction` (at least one) by val_acc there to the end
    (Egele et al. 2023)."""
    n, full = val_acc.shape
    spent = np.full(n, epochs)
    spent[_top(val_acc[:, epochs - 1], max(1, math.ceil(fraction * n)))] = full
    return spent


def zero_cost_screen(val_acc: np.ndarray, proxies: dict, rng: np.random.Generator | None, proxy: str,
                     keep: float) -> np.ndarray:
    """The top `keep` fraction (at least one) by a zero-cost score, higher better, trained to the end; the rest
    not trained (Abdelfattah et al. 2021)."""
    n, epochs = val_acc.shape
    spent = np.zeros(n, dtype=int)
    spent[_top(proxies[proxy], max(1, math.ceil(keep * n)))] = epochs
    return spent


def _grace_periods(epochs: int) -> list[int]:
    return [2 ** k for k in range(MAX_GRACE_PERIODS) if 2 ** k < epochs]


def _halving_settings(epochs: int, proxies: Iterable[str]) -> list[dict[str, Any]]:
    return [{"reduction_factor": eta, "grace_period": grace} for eta in REDUCTION_FACTORS
            for grace in _grace_periods(epochs)]


def _hyperband_settings(epochs: int, proxies: Iterable[str]) -> list[dict[str, Any]]:
    # At least two brackets: with one, Hyperband is the full search.
    return [{"reduction_factor": eta} for eta in REDUCTION_FACTORS if eta <= epochs]


def _top_k_settings(epochs: int, proxies: Iterable[str]) -> list[dict[str, Any]]:
    after = sorted({e for e in (1, 2, epochs // 4, epochs // 2) if 1 <= e < epochs})
    return [{"epochs": e, "fraction": k} for e in after for k in TOP_K_FRACTIONS]


@dataclass(frozen=True)
class StrategyFamily:
    """A strategy by name: how it spends epochs, and the settings it is replayed at for a run of `epochs`."""

    spend: Callable[..., np.ndarray]
    settings: Callable[[int, Iterable[str]], list[dict[str, Any]]]
    description: str
    # Whether it draws random numbers (it is then given a seeded generator, else None).
    random: bool = False


# The strategies by the name --strategy takes, in the order the table shows them.
STRATEGIES: dict[str, StrategyFamily] = {
    "full": StrategyFamily(full_search, lambda epochs, proxies: [{}], "every trial at the full budget (the run)"),
    "sh": StrategyFamily(successive_halving, _halving_settings, "synchronous successive halving"),
    "asha": StrategyFamily(asha, _halving_settings, "asynchronous successive halving, as Ray Tune's ASHA"),
    "hyperband": StrategyFamily(hyperband, _hyperband_settings, "Hyperband: brackets of successive halving"),
    "random": StrategyFamily(random_subset, lambda epochs, proxies: [{"fraction": f} for f in RANDOM_FRACTIONS],
                             "a random fraction of the trials at the full budget", random=True),
    "topk": StrategyFamily(top_k_after, _top_k_settings, "every trial for e epochs, then the top k to the end"),
    "screen": StrategyFamily(zero_cost_screen, lambda epochs, proxies: [{"proxy": p, "keep": k} for p in proxies
                                                                         for k in SCREEN_KEEP],
                             "the best fraction by a zero-cost score (params, macs, screen.*), trained fully"),
}
# The reference every regret is measured against.
REFERENCE = "full"


@dataclass(frozen=True)
class Strategy:
    """One strategy at one setting."""

    family: str
    settings: tuple[tuple[str, Any], ...] = ()

    @property
    def label(self) -> str:
        return " ".join([self.family, *(f"{name}={value:g}" if isinstance(value, float) else f"{name}={value}"
                                        for name, value in self.settings)])

    def spend(self, val_acc: np.ndarray, proxies: dict, rng: np.random.Generator | None) -> np.ndarray:
        """The epochs this strategy trains each trial."""
        return STRATEGIES[self.family].spend(val_acc, proxies, rng, **dict(self.settings))


def check_strategy_names(names: Iterable[str]) -> list[str]:
    """The names, each a key of STRATEGIES; ReportError naming the allowed ones otherwise."""
    names = list(names)
    for name in names:
        if name not in STRATEGIES:
            raise ReportError(f"--strategy: got {name!r}; allowed: {', '.join(STRATEGIES)}")
    return names


def strategies_for(epochs: int, proxies: Iterable[str], families: Iterable[str] | None = None) -> list[Strategy]:
    """Every setting of the named families (all when None) that fits a run of `epochs`; the full search always."""
    wanted = set(check_strategy_names(families)) | {REFERENCE} if families else set(STRATEGIES)
    proxies = list(proxies)
    return [Strategy(name, tuple(settings.items())) for name, family in STRATEGIES.items() if name in wanted
            for settings in family.settings(epochs, proxies)]


# ------------------------------------------------------------------ replaying
def _winner(spent: np.ndarray, epochs: int, score: np.ndarray, id_order: np.ndarray) -> int:
    """The position of the chosen trial: among those trained to the end, the best score, ties by trial id."""
    candidates = np.flatnonzero(spent == epochs)
    return int(candidates[np.lexsort((id_order[candidates], -score[candidates]))[0]])


@dataclass(frozen=True)
class _Outcome:
    epochs: int
    regret: float
    test_regret: float
    chosen: int


class _Draw:
    """One draw of trials (positions into the curves, in the order they arrive), with the full search's choice."""

    def __init__(self, curves: ReplayCurves, sample: np.ndarray) -> None:
        self.curves, self.sample = curves, sample
        self.val_acc = curves.val_acc[sample]
        self.proxies = {name: values[sample] for name, values in curves.proxies.items()}
        self.score, self.id_order = curves.val_acc_best[sample], curves.id_order[sample]
        self.best = sample[_winner(np.full(len(sample), curves.epochs), curves.epochs, self.score, self.id_order)]

    def replay(self, strategy: Strategy, rng: np.random.Generator | None) -> _Outcome:
        """The strategy on this draw: its epochs, its choice, and the regrets of that choice."""
        curves = self.curves
        spent = strategy.spend(self.val_acc, self.proxies, rng)
        chosen = self.sample[_winner(spent, curves.epochs, self.score, self.id_order)]
        return _Outcome(int(spent.sum()), float(curves.val_acc_best[self.best] - curves.val_acc_best[chosen]),
                        float(curves.test_acc[self.best] - curves.test_acc[chosen]), int(chosen))


def _strategy_rng(seed: int, strategy: Strategy, replicate: int | None) -> np.random.Generator | None:
    """The generator of a random strategy's choices: its own stream per seed, strategy and replicate; None for the
    others."""
    if not STRATEGIES[strategy.family].random:
        return None
    key = [seed, zlib.crc32(strategy.label.encode("utf-8"))]
    return np.random.default_rng(key if replicate is None else key + [replicate + 1])


def _interval(values: list[float]) -> tuple[float, float]:
    finite = np.asarray(values, dtype=float)
    finite = finite[np.isfinite(finite)]
    return percentile_interval(finite, CONFIDENCE) if finite.size else (float("nan"), float("nan"))


@dataclass
class Replay:
    """The replay table (one row per strategy), the ranking fidelity per epoch, and what they rest on."""

    table: pd.DataFrame
    fidelity: pd.DataFrame
    tolerance: float
    n_trials: int
    n_complete: int
    epochs: int
    replicates: int
    seed: int
    notes: list[str] = field(default_factory=list)

    @property
    def cheapest(self) -> pd.Series | None:
        """The row of the cheapest strategy whose regret CI stays within the tolerance (the full search at worst)."""
        within = self.table[self.table["within_tolerance"]]
        if within.empty:
            return None
        return within.sort_values(["epochs_fraction", "regret_pp"], kind="stable").iloc[0]

    def cheapest_text(self) -> str:
        """One sentence: the cheapest strategy within the tolerance, or that none is cheaper than the full run."""
        tolerance = f"within {self.tolerance * 100:.2f} pp (the regret CI's upper bound)"
        cheapest = self.cheapest
        if cheapest is None or cheapest["strategy"] == REFERENCE:
            return f"No strategy cheaper than the full search stays {tolerance} on this run's {self.n_trials} trials."
        return (f"Cheapest {tolerance}: {cheapest['label']}, at {cheapest['epochs_fraction']:.3f} of the epochs; "
                f"regret {cheapest['regret_pp']:+.2f} pp [{cheapest['regret_ci_low_pp']:+.2f}, "
                f"{cheapest['regret_ci_high_pp']:+.2f}].")

    def csv_tables(self) -> dict[str, pd.DataFrame]:
        """replay.csv and replay_fidelity.csv."""
        return {"replay": self.table, "replay_fidelity": self.fidelity}

    def to_json(self) -> list[dict[str, Any]]:
        """One object per strategy, then {"fidelity": [...]}: what `python -m reports.replay --json` prints."""
        cheapest = self.cheapest
        objects: list[dict[str, Any]] = []
        for row in self.table.to_dict("records"):
            objects.append({
                "strategy": row["strategy"], "label": row["label"], "settings": json.loads(row["settings"]),
                "epochs": int(row["epochs"]), "epochs_fraction": _plain(row["epochs_fraction"]),
                "regret_pp": _plain(row["regret_pp"]),
                "regret_ci_pp": [_plain(row["regret_ci_low_pp"]), _plain(row["regret_ci_high_pp"])],
                "test_regret_pp": _plain(row["test_regret_pp"]),
                "test_regret_ci_pp": [_plain(row["test_regret_ci_low_pp"]), _plain(row["test_regret_ci_high_pp"])],
                "chosen_trial": row["chosen_trial"], "within_tolerance": bool(row["within_tolerance"]),
                "cheapest_within_tolerance": cheapest is not None and row["label"] == cheapest["label"]})
        objects.append({"fidelity": [{name: (_plain(value) if name != "epoch" and name != "n" else int(value))
                                      for name, value in row.items()} for row in self.fidelity.to_dict("records")]})
        return objects


def _plain(value: Any) -> float | None:
    """A float for JSON: None where it is NaN (JSON has no NaN)."""
    value = float(value)
    return value if math.isfinite(value) else None


def replay_strategies(curves: ReplayCurves, strategies: list[Strategy], tolerance: float = DEFAULT_TOLERANCE,
                      seed: int = BOOTSTRAP_SEED, replicates: int = REPLICATES,
                      budget: SectionBudget | None = None) -> pd.DataFrame:
    """The replay table: each strategy on the run as recorded, and its bootstrap CIs over draws and orders."""
    n = len(curves)
    as_recorded = _Draw(curves, np.arange(n))
    points = {s: as_recorded.replay(s, _strategy_rng(seed, s, None)) for s in strategies}
    draws: dict[Strategy, list[_Outcome]] = {s: [] for s in strategies}
    draw_rng = np.random.default_rng([seed, n])
    for replicate in range(replicates):
        budgets.check(budget)
        # A draw with replacement is also a random arrival order.
        draw = _Draw(curves, draw_rng.integers(0, n, n))
        for strategy in strategies:
            draws[strategy].append(draw.replay(strategy, _strategy_rng(seed, strategy, replicate)))
    full_epochs = n * curves.epochs
    rows = []
    for strategy in strategies:
        point = points[strategy]
        low, high = (value * 100 for value in _interval([o.regret for o in draws[strategy]]))
        test_low, test_high = (value * 100 for value in _interval([o.test_regret for o in draws[strategy]]))
        rows.append({"strategy": strategy.family, "label": strategy.label,
                     "settings": json.dumps(dict(strategy.settings)), "epochs": point.epochs,
                     "epochs_fraction": point.epochs / full_epochs, "regret_pp": point.regret * 100,
                     "regret_ci_low_pp": low, "regret_ci_high_pp": high, "test_regret_pp": point.test_regret * 100,
                     "test_regret_ci_low_pp": test_low, "test_regret_ci_high_pp": test_high,
                     "chosen_trial": curves.trial_ids[point.chosen],
                     # Rounded to the nano-point: 0.5 pp is not 0.5000000000000004 pp.
                     "within_tolerance": bool(np.isfinite(high) and round(high, 9) <= tolerance * 100)})
    return pd.DataFrame(rows, columns=REPLAY_COLUMNS)


# ------------------------------------------------------------------ ranking fidelity
@dataclass(frozen=True)
class SpearmanCorrelation:
    """Spearman's rho between two scores of the same items, its p and its bootstrap CI."""

    n: int
    rho: float
    p_value: float
    ci_low: float
    ci_high: float


def _resample_ranks(values: np.ndarray, counts: np.ndarray) -> np.ndarray:
    """Each item's average rank within each resample (a row of `counts`: how often each item was drawn), ties and
    copies included, as scipy.stats.rankdata gives it over the drawn values: the draws at or below its value, less
    half the other draws tied with it."""
    codes = np.unique(values, return_inverse=True)[1].ravel()
    per_value = _row_sums_by_value(values, counts)  # draws of each distinct value, in increasing order
    return (np.cumsum(per_value, axis=1) - (per_value - 1) / 2)[:, codes]


def _weighted_pearson(x: np.ndarray, y: np.ndarray, weights: np.ndarray) -> np.ndarray:
    """Pearson's r of each row of x with the same row of y, each item counted `weights` times; NaN where constant."""
    total = weights.sum(axis=1, keepdims=True)
    x = x - (weights * x).sum(axis=1, keepdims=True) / total
    y = y - (weights * y).sum(axis=1, keepdims=True) / total
    denominator = np.sqrt((weights * x * x).sum(axis=1) * (weights * y * y).sum(axis=1))
    with np.errstate(invalid="ignore", divide="ignore"):
        return np.where(denominator > 0, (weights * x * y).sum(axis=1) / np.where(denominator > 0, denominator, 1.0),
                        np.nan)


class SpearmanBootstrap:
    """Spearman's rho of many scores against one (`y`), each with its bootstrap CI on the same resamples of the items
    (reports._kendall's draws for `seed`). A resample is a vector of counts, as in reports._kendall, and its rho is
    Pearson's r of the ranks within it, each item weighted by its count: no resample is sorted."""

    def __init__(self, y: np.ndarray, seed: Any = BOOTSTRAP_SEED, n_resamples: int = BOOTSTRAP_RESAMPLES,
                 confidence: float = CONFIDENCE) -> None:
        self.y = np.asarray(y, dtype=float)
        self.confidence = confidence
        self.indices = resample_indices(self.y.size, seed, n_resamples)
        self.counts = resample_counts(self.indices, self.y.size).astype(float)
        self.y_ranks = _resample_ranks(self.y, self.counts) if self.y.size else None

    def rhos(self, x: np.ndarray) -> np.ndarray:
        """Spearman's rho of each resample: scipy.stats.spearmanr's rho of those draws, ties included; NaN where a
        resample is constant."""
        x_ranks = _resample_ranks(np.asarray(x, dtype=float), self.counts)
        return np.clip(_weighted_pearson(x_ranks, self.y_ranks, self.counts), -1.0, 1.0)

    def of(self, x: np.ndarray) -> SpearmanCorrelation:
        """rho of x against y (scipy.stats.spearmanr) with its percentile bootstrap CI; NaN below MIN_TAU_N items."""
        import warnings

        from scipy import stats

        x = np.asarray(x, dtype=float)
        if x.size < MIN_TAU_N:
            return SpearmanCorrelation(int(x.size), float("nan"), float("nan"), float("nan"), float("nan"))
        with warnings.catch_warnings():
            # A constant column has no ranking; scipy warns and returns nan, which we keep.
            warnings.simplefilter("ignore", RuntimeWarning)
            result = stats.spearmanr(x, self.y)
        rhos = self.rhos(x)
        rhos = rhos[np.isfinite(rhos)]
        low, high = percentile_interval(rhos, self.confidence) if rhos.size else (float("nan"), float("nan"))
        return SpearmanCorrelation(int(x.size), float(result.statistic), float(result.pvalue), low, high)


def spearman_rho_ci(x: np.ndarray, y: np.ndarray, seed: Any = BOOTSTRAP_SEED,
                    n_resamples: int = BOOTSTRAP_RESAMPLES, confidence: float = CONFIDENCE) -> SpearmanCorrelation:
    """Spearman's rho (scipy.stats.spearmanr) with its percentile bootstrap CI over items, seeded."""
    return SpearmanBootstrap(y, seed, n_resamples, confidence).of(x)


def ranking_fidelity(curves: ReplayCurves, seed: int = BOOTSTRAP_SEED,
                     budget: SectionBudget | None = None) -> pd.DataFrame:
    """Kendall's tau-b and Spearman's rho of each epoch's val_acc against the final ranking by val_acc_best."""
    rows = []
    final = curves.val_acc_best
    # The same resamples of the trials at every epoch and for both correlations, so that two epochs' CIs differ by
    # the epochs, not by the draws (and the final ranking's ranks within each resample are computed once).
    resamples = [seed, len(final)]
    spearman = SpearmanBootstrap(final, resamples)
    for epoch in _epochs_to_rank(list(range(1, curves.epochs + 1)), None):
        budgets.check(budget)
        values = curves.val_acc[:, epoch - 1]
        tau = kendall_tau_ci(values, final, seed=resamples)
        rho = spearman.of(values)
        rows.append({"epoch": int(epoch), "n": len(values), "kendall_tau": tau.tau, "kendall_ci_low": tau.ci_low,
                     "kendall_ci_high": tau.ci_high, "spearman_rho": rho.rho, "spearman_ci_low": rho.ci_low,
                     "spearman_ci_high": rho.ci_high})
    return pd.DataFrame(rows, columns=REPLAY_FIDELITY_COLUMNS)


def replay(run: RunData, families: Iterable[str] | None = None, tolerance: float = DEFAULT_TOLERANCE,
           seed: int = BOOTSTRAP_SEED, replicates: int = REPLICATES,
           budget: SectionBudget | None = None) -> Replay:
    """Replay the strategies (the named families, all when None) on a run's curves; ReplayUnavailable without them."""
    if isinstance(tolerance, bool) or not isinstance(tolerance, (int, float)) or not 0 <= tolerance < 1:
        raise ReportError(f"--tolerance: got {tolerance!r}; allowed: a fraction in [0, 1), e.g. 0.005 for 0.5 pp")
    if isinstance(replicates, bool) or not isinstance(replicates, int) or replicates < 1:
        raise ReportError(f"--replicates: got {replicates!r}; allowed: an integer >= 1")
    if isinstance(seed, bool) or not isinstance(seed, int) or seed < 0:
        raise ReportError(f"--seed: got {seed!r}; allowed: an integer >= 0")
    curves = replay_curves(run)
    strategies = strategies_for(curves.epochs, curves.proxies, families)
    table = replay_strategies(curves, strategies, tolerance, seed, replicates, budget)
    notes = list(curves.notes)
    if families and "screen" in families and not curves.proxies:
        notes.append(f"No zero-cost score to screen by: {runfolder.RESULTS_PARQUET} has neither params, macs nor "
                     f"{SCREEN_PREFIX}* columns.")
    return Replay(table=table, fidelity=ranking_fidelity(curves, seed, budget), tolerance=float(tolerance),
                  n_trials=len(curves), n_complete=curves.n_complete, epochs=curves.epochs, replicates=replicates,
                  seed=seed, notes=notes)


def replay_or_note(run: RunData, budget: SectionBudget | None = None) -> Replay | str:
    """The report's replay with its defaults, or the one line saying why the run cannot be replayed."""
    try:
        return replay(run, budget=budget)
    except ReplayUnavailable as reason:
        return str(reason)
