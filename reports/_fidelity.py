"""Does the cheap budget predict the expensive one? Rank stability within a run, and search against retrain.

Studies are screened at short budgets, and ASHA cuts trials earlier still.
Both are safe only if the ranking of architectures at the short budget is the
ranking at the long one. Two measures, each a Kendall rank correlation (tau-b,
scipy.stats.kendalltau) with a seeded percentile bootstrap CI over
architectures or trials:

- **Within a run** (`rank_stability`): each epoch's validation accuracy against
  the final epoch's, across the complete trials (curves.parquet). The first
  epoch from which the CI's lower bound stays above `STABLE_TAU` is where the
  ranking is stable, and ASHA's grace period is safe when it is no earlier.
- **Across budgets** (`budget_fidelity`): after `python -m search.retrain RUN
  --top K --set train.epochs=E`, the search-budget score of each retrained
  architecture against its mean retrained test accuracy; and, for each ablation
  verdict, whether the retrained architectures still show it (Welch's t and
  Holm, the report's decision rule, on architecture means or on runs).

Kendall's tau-b and its bootstrap CI: reports._kendall.
"""

from __future__ import annotations

from dataclasses import dataclass, field

import numpy as np
import pandas as pd

import runfolder
from reports._kendall import MIN_TAU_N, kendall_tau_ci
from reports._load import ReportError, RunData, level_labels
from reports._stats import ALPHA, BOOTSTRAP_SEED, NULL_LEVEL, compare, holm, verdict

# The ranking counts as stable where the CI's lower bound of tau exceeds this:
# without ties, tau = 0.7 means (1 + 0.7) / 2 = 85% of the pairs of trials are
# already ordered as they end.
STABLE_TAU = 0.7
# Below 5 architectures even a perfect agreement is not significant (exact
# two-sided p = 2 / 4! = 0.083 at n = 4), so a ranking over fewer cannot be told.
MIN_ARCHITECTURES = 5
# The bootstrap's cost grows with n^2; beyond this many complete trials tau and its CI come
# from a seeded random subset of this size (the CI is then wider than all trials would give).
MAX_STABILITY_TRIALS = 300
# Likewise at most this many epochs get a tau: beyond it (the paper's 164 epochs) they are spaced
# geometrically, densest early, where ASHA cuts, with the grace period and the final epoch always among them.
MAX_STABILITY_EPOCHS = 50
# search.asha defaults, for a study.yaml that names the scheduler but not its settings (one home, in runfolder,
# which the study schema reads too).
ASHA_DEFAULT_GRACE_PERIOD = runfolder.DEFAULT_ASHA_GRACE_PERIOD
ASHA_DEFAULT_REDUCTION_FACTOR = runfolder.DEFAULT_ASHA_REDUCTION_FACTOR

RANK_STABILITY_COLUMNS = ["epoch", "n", "kendall_tau", "ci_low", "ci_high"]
BUDGET_FIDELITY_COLUMNS = ["retrain_epochs", "search_epochs", "search_metric", "retrain_metric", "n",
                           "kendall_tau", "ci_low", "ci_high", "p_value", "reading"]
BUDGET_VERDICT_COLUMNS = ["factor", "level", "reference", "retrain_epochs", "search_epochs", "metric",
                          "search_diff", "search_verdict", "n_architectures", "n_architectures_ref",
                          "search_diff_retrained", "unit", "n", "n_ref", "retrain_diff", "retrain_ci_low",
                          "retrain_ci_high", "p_value", "p_adjusted", "retrain_verdict", "direction_agrees",
                          "fidelity"]
# What the `fidelity` column of budget_verdicts.csv says, and what each means; the page prints this legend.
FIDELITY_READINGS = {
    "holds": f"the retrained comparison gives the search budget's verdict (same direction, Holm p < {ALPHA:g})",
    "same direction, within noise": "the retrained difference has the search verdict's sign but is not significant",
    "reversed": f"the retrained comparison gives the opposite verdict (Holm p < {ALPHA:g})",
    "opposite direction, within noise": "the retrained difference has the opposite sign, not significantly",
    "still within noise": "within noise at both budgets",
    "appears": "within noise at the search budget, significant after retraining",
    "same direction, too few to test": "the retrained means differ in the search verdict's direction, but a "
                                       "side has a single run: no test",
    "opposite direction, too few to test": "the retrained means differ against the search verdict, but a side has "
                                           "a single run: no test",
    "too few to test": "within noise at the search budget; a side of the retrained comparison has a single run",
    "too few retrained architectures": "the level or the reference has no retrained architecture: nothing to "
                                       "compare",
    "no search verdict": "the search budget had no verdict to check (too few trials there)",
}
RETRAIN_METRIC = "test_acc"
# The unit a retrained comparison counts: an architecture's mean over its seeds where both sides hold 2 or more
# architectures (the level's effect must hold across the architectures that carry it), else each run (seed) of
# the few architectures there are, which compares those architectures rather than the levels in general.
ARCHITECTURE_UNIT = "architecture means"
RUN_UNIT = "runs"
RETRAIN_TEST = "Welch t"


# ------------------------------------------------------------------ within a run
@dataclass(frozen=True)
class AshaSettings:
    """The study's early stopping, from the run folder's study.yaml: scheduler, grace period, reduction factor."""

    scheduler: str
    grace_period: int | None
    reduction_factor: float | None
    source: str


def asha_settings(run: RunData) -> AshaSettings:
    """search.scheduler and search.asha of the study as run; `scheduler` is 'unknown' without a study.yaml."""
    try:
        study = runfolder.read_study_record(run.run_dir)
    except runfolder.RunFolderError as error:
        raise ReportError(str(error)) from None
    if study is None:
        return AshaSettings("unknown", None, None, f"{runfolder.STUDY_YAML} is missing")
    if study.scheduler != "asha":
        return AshaSettings(study.scheduler, None, None, runfolder.STUDY_YAML)
    asha = study.asha
    return AshaSettings("asha", int(asha.get("grace_period", ASHA_DEFAULT_GRACE_PERIOD)),
                        float(asha.get("reduction_factor", ASHA_DEFAULT_REDUCTION_FACTOR)), runfolder.STUDY_YAML)


@dataclass
class RankStability:
    """rank_stability.csv and what it says: the epoch from which the ranking holds, and ASHA's grace period."""

    table: pd.DataFrame
    threshold: float
    # The first epoch from which every later epoch (the final one aside) has ci_low > threshold; None if none.
    stable_epoch: int | None
    final_epoch: int | None
    n_complete: int
    n_used: int
    asha: AshaSettings
    notes: list[str] = field(default_factory=list)

    def at(self, epoch: int) -> pd.Series | None:
        """The table's row of `epoch`, None when it has none."""
        rows = self.table[self.table["epoch"] == epoch]
        return rows.iloc[0] if len(rows) else None

    @property
    def grace_period_safe(self) -> bool | None:
        """True/False when the study ran ASHA and the ranking is (not) stable by its grace period; None otherwise."""
        if self.asha.scheduler != "asha" or self.asha.grace_period is None or self.final_epoch is None:
            return None
        return self.stable_epoch is not None and self.asha.grace_period >= self.stable_epoch


def _rows_of(trial_ids: pd.Series, wanted: set[str]) -> np.ndarray:
    """Which rows of `trial_ids` hold one of the `wanted` ids; a categorical column looks up each distinct id once.

    The lookup is the set's own: pandas' isin took 4 s for 10^6 string categories against 10^6 ids, the set 0.2 s.
    """
    if isinstance(trial_ids.dtype, pd.CategoricalDtype):
        categories = trial_ids.cat.categories.to_numpy(dtype=object)  # iterating pyarrow strings costs 10x
        found = np.fromiter((name in wanted for name in categories), dtype=bool, count=len(categories))
        codes = trial_ids.cat.codes.to_numpy()
        return found[codes] & (codes >= 0)
    return trial_ids.isin(wanted).to_numpy()


def _last_epochs(curves: pd.DataFrame) -> pd.Series:
    """Each trial's last recorded epoch, by trial id in the column's order (a categorical's is its categories')."""
    trial_ids = curves["trial_id"]
    if isinstance(trial_ids.dtype, pd.CategoricalDtype):  # grouped by code: no remapping of the categories
        last = curves["epoch"].groupby(trial_ids.cat.codes.to_numpy(), sort=True).max()
        return pd.Series(last.to_numpy(), index=trial_ids.cat.categories[last.index.to_numpy()].astype(str))
    return curves.groupby("trial_id", sort=True)["epoch"].max()


def _complete_curves(run: RunData) -> pd.DataFrame:
    """trial_id, epoch (an int) and val_acc of every recorded epoch of the complete trials."""
    complete_ids = set(run.complete["trial_id"])
    curves = run.curves[["trial_id", "epoch", "val_acc"]]
    curves = curves[_rows_of(curves["trial_id"], complete_ids)]
    curves = curves.assign(val_acc=pd.to_numeric(curves["val_acc"], errors="coerce"),
                           epoch=pd.to_numeric(curves["epoch"], errors="coerce")).dropna()
    return curves.assign(epoch=curves["epoch"].astype(int))


def _val_acc_by_epoch(curves: pd.DataFrame, trials: pd.Index, epochs: list[int]) -> tuple[pd.DataFrame, pd.Series]:
    """(`trials` x `epochs` of val_acc, each trial's final val_acc) from `_complete_curves`.

    Only the rows of `trials` are sorted and pivoted: at 10^6 trials the pivot of every epoch of every trial
    took most of the report's statistics, for the MAX_STABILITY_TRIALS that are ranked.
    """
    curves = curves[_rows_of(curves["trial_id"], set(trials))]
    curves = curves.assign(trial_id=curves["trial_id"].astype(str)).sort_values(["trial_id", "epoch"], kind="stable")
    # Each trial's final accuracy is that of its last recorded epoch.
    final = curves.groupby("trial_id", sort=True)["val_acc"].last()
    by_epoch = curves.pivot_table(index="trial_id", columns="epoch", values="val_acc", aggfunc="last")
    return by_epoch.reindex(index=trials, columns=epochs), final.reindex(trials)


def _epochs_to_rank(epochs: list[int], grace_period: int | None) -> list[int]:
    """Every epoch, or MAX_STABILITY_EPOCHS of them spaced geometrically when there are more."""
    if len(epochs) <= MAX_STABILITY_EPOCHS:
        return epochs
    positions = np.unique(np.round(np.geomspace(1, len(epochs), MAX_STABILITY_EPOCHS)).astype(int) - 1)
    chosen = {epochs[i] for i in positions} | {epochs[-1]}
    if grace_period in epochs:
        chosen.add(grace_period)
    return sorted(chosen)


def _stable_epoch(table: pd.DataFrame, final_epoch: int, threshold: float) -> int | None:
    """The first epoch before the final one from which ci_low stays above `threshold`."""
    before = table[table["epoch"] < final_epoch].sort_values("epoch")
    stable = None
    for row in before[::-1].itertuples():
        if not (np.isfinite(row.ci_low) and row.ci_low > threshold):
            break
        stable = int(row.epoch)
    return stable


def rank_stability(run: RunData, threshold: float = STABLE_TAU) -> RankStability:
    """Kendall's tau between each epoch's val_acc and the final epoch's, across complete trials, with bootstrap CIs."""
    asha = asha_settings(run)
    empty = pd.DataFrame(columns=RANK_STABILITY_COLUMNS)
    if run.curves is None:
        return RankStability(empty, threshold, None, None, 0, 0, asha,
                             [f"{runfolder.CURVES_PARQUET} is missing: no per-epoch accuracies to rank."])
    curves = _complete_curves(run)
    # The epoch each trial ends at (its last recorded one), in trial id order: the trials one can rank.
    last_epoch = _last_epochs(curves)
    trials = pd.Index(last_epoch.index.astype(str))
    notes: list[str] = []
    n_complete = len(trials)
    if n_complete < MIN_TAU_N:
        return RankStability(empty, threshold, None, None, n_complete, n_complete, asha,
                             [f"{n_complete} complete trial(s) with a learning curve: a rank correlation needs at "
                              f"least {MIN_TAU_N}."])
    final_epoch = int(last_epoch.max())
    if last_epoch.nunique() > 1:
        notes.append(f"Trials end at different epochs ({int(last_epoch.min())} to {final_epoch}, a searched "
                     "train.epochs): each trial's final accuracy is that of its own last epoch.")
    used = trials
    if n_complete > MAX_STABILITY_TRIALS:
        rng = np.random.default_rng(BOOTSTRAP_SEED)
        used = pd.Index(sorted(rng.choice(trials.to_numpy(), MAX_STABILITY_TRIALS, replace=False)))
        notes.append(f"{n_complete:,} complete trials: tau and its CI are computed on a seeded random "
                     f"{MAX_STABILITY_TRIALS} of them (the bootstrap grows with n squared), so the CI is wider "
                     "than all of them would give.")
    recorded = [int(epoch) for epoch in np.unique(curves["epoch"].to_numpy())]
    epochs = _epochs_to_rank(recorded, asha.grace_period)
    if len(epochs) < len(recorded):
        notes.append(f"{len(recorded)} epochs: tau is computed at {len(epochs)} of them, spaced geometrically "
                     "(every early epoch, fewer later), with the grace period and the final epoch among them.")
    ranked, ends = _val_acc_by_epoch(curves, used, epochs)
    ends = ends.to_numpy(dtype=float)
    rows = []
    for epoch in epochs:
        values = ranked[epoch].to_numpy(dtype=float)
        keep = np.isfinite(values) & np.isfinite(ends)
        # One stream per epoch: the CI of an epoch does not depend on which other epochs exist.
        result = kendall_tau_ci(values[keep], ends[keep], seed=[BOOTSTRAP_SEED, int(epoch)])
        rows.append({"epoch": int(epoch), "n": int(keep.sum()), "kendall_tau": result.tau,
                     "ci_low": result.ci_low, "ci_high": result.ci_high})
    table = pd.DataFrame(rows, columns=RANK_STABILITY_COLUMNS)
    if asha.scheduler == "asha":
        notes.append("This run used ASHA: only the trials that ran to the end are complete, and they are the ones "
                     "the early cuts kept, so tau is measured among survivors. To measure whether the cuts were "
                     "safe, run the study once without ASHA (bench/asha_efficiency.py does both).")
    return RankStability(table, threshold, _stable_epoch(table, final_epoch, threshold), final_epoch, n_complete,
                         len(used), asha, notes)


# ------------------------------------------------------------------ across budgets
@dataclass
class BudgetFidelity:
    """budget_fidelity.csv (search ranking vs retrained ranking) and budget_verdicts.csv (each verdict retrained)."""

    ranking: pd.DataFrame
    verdicts: pd.DataFrame
    notes: list[str] = field(default_factory=list)


def _search_epochs(run: RunData) -> float:
    budget = (run.run_info.budget if run.run_info is not None else None) or {}
    epochs = budget.get("epochs")
    return float(epochs) if isinstance(epochs, (int, float)) and not isinstance(epochs, bool) else float("nan")


def _source_score(retrain: pd.DataFrame, results: pd.DataFrame, column: str, metric: str) -> pd.Series:
    """Each retrain run's search-budget `metric`: its `column` where recorded, else its source trial's row."""
    by_trial = (pd.to_numeric(results[metric], errors="coerce").groupby(results["trial_id"]).first()
                if metric in results.columns else pd.Series(dtype=float))
    looked_up = retrain["source_trial_id"].astype(str).map(by_trial) if "source_trial_id" in retrain.columns \
        else pd.Series(np.nan, index=retrain.index)
    recorded = pd.to_numeric(retrain[column], errors="coerce") if column in retrain.columns \
        else pd.Series(np.nan, index=retrain.index)
    return recorded.fillna(looked_up).astype(float)


def retrained_runs(run: RunData) -> pd.DataFrame:
    """Complete retrain runs with a test accuracy, each with its budget, its source trial's scores and factor labels."""
    retrain = run.retrain
    if "status" in retrain.columns:
        retrain = retrain[retrain["status"].astype(str) == "complete"]
    retrain = retrain.assign(test_acc=pd.to_numeric(retrain["test_acc"], errors="coerce"))
    retrain = retrain[retrain["test_acc"].notna()].copy()
    results = run.results
    retrain["retrain_epochs"] = (pd.to_numeric(retrain["epochs"], errors="coerce") if "epochs" in retrain.columns
                                 else np.nan)
    retrain["search_val_acc_best"] = _source_score(retrain, results, "source_val_acc_best", "val_acc_best")
    retrain["search_test_acc"] = _source_score(retrain, results, "source_test_acc", "test_acc")
    source = retrain["source_trial_id"].astype(str) if "source_trial_id" in retrain.columns else None
    for factor in run.categorical_factors:
        labels = pd.Series(level_labels(results[factor.column]).to_numpy(), index=results["trial_id"].to_numpy())
        labels = labels[~labels.index.duplicated()]
        retrain[factor.column] = source.map(labels) if source is not None else np.nan
    return retrain


def _budget_groups(runs: pd.DataFrame):
    """(retrain epochs, runs) per retrain budget; one group labelled nan when retrain.parquet records no epochs."""
    if runs["retrain_epochs"].notna().any():
        for epochs, group in runs.groupby("retrain_epochs", sort=True):
            yield float(epochs), group
    else:
        yield float("nan"), runs


def _ranking_rows(per_architecture: pd.DataFrame, retrain_epochs: float, search_epochs: float,
                  notes: list[str]) -> list[dict]:
    rows = []
    for metric in ("val_acc_best", "test_acc"):
        scores = per_architecture[[f"search_{metric}", "mean"]].dropna()
        seed = [BOOTSTRAP_SEED, int(retrain_epochs) if np.isfinite(retrain_epochs) else 0, len(metric)]
        result = kendall_tau_ci(scores[f"search_{metric}"].to_numpy(), scores["mean"].to_numpy(), seed=seed)
        if result.n < MIN_ARCHITECTURES:
            reading = "too few architectures"
        elif np.isfinite(result.ci_low) and result.ci_low > STABLE_TAU:
            reading = "ranking holds"
        elif np.isfinite(result.ci_high) and result.ci_high < STABLE_TAU:
            reading = "ranking changes"
        else:
            reading = "cannot tell at this n"
        rows.append({"retrain_epochs": retrain_epochs, "search_epochs": search_epochs, "search_metric": metric,
                     "retrain_metric": f"{RETRAIN_METRIC} (mean over seeds)", "n": result.n,
                     "kendall_tau": result.tau, "ci_low": result.ci_low, "ci_high": result.ci_high,
                     "p_value": result.p_value, "reading": reading})
    n = len(per_architecture)
    budget = f"{retrain_epochs:g} epochs" if np.isfinite(retrain_epochs) else "the retrain budget"
    if n < MIN_ARCHITECTURES:
        notes.append(f"Only {n} architecture(s) retrained at {budget}: too few to tell whether the search ranking "
                     f"holds (Kendall's tau needs {MIN_ARCHITECTURES} or more for even a perfect agreement to be "
                     f"significant). Retrain more: python -m search.retrain RUN --top {MIN_ARCHITECTURES * 2} ...")
    return rows


def _fidelity(search_verdict: str, retrain_verdict: str, direction_agrees: bool) -> str:
    """The FIDELITY_READINGS key of one level: the search verdict against the retrained comparison."""
    if search_verdict not in ("higher", "lower", "within noise"):
        return "no search verdict"
    tested = retrain_verdict in ("higher", "lower", "within noise")
    if search_verdict == "within noise":
        if not tested:
            return "too few to test"
        return "appears" if retrain_verdict in ("higher", "lower") else "still within noise"
    if retrain_verdict == search_verdict:
        return "holds"
    if retrain_verdict in ("higher", "lower"):
        return "reversed"
    direction = "same direction" if direction_agrees else "opposite direction"
    return f"{direction}, within noise" if tested else f"{direction}, too few to test"


def _retrained_comparison(trials: pd.DataFrame, reference: pd.DataFrame) -> tuple[str, np.ndarray, np.ndarray]:
    """(unit, level values, reference values): architecture means when both sides have 2 or more architectures,
    else the runs (seeds) of the architectures there are."""
    means, reference_means = (group.groupby("arch_key")["test_acc"].mean().to_numpy(dtype=float)
                              for group in (trials, reference))
    if len(means) >= 2 and len(reference_means) >= 2:
        return ARCHITECTURE_UNIT, means, reference_means
    return RUN_UNIT, trials["test_acc"].to_numpy(dtype=float), reference["test_acc"].to_numpy(dtype=float)


def _verdict_rows(run: RunData, ablation: pd.DataFrame, group: pd.DataFrame, retrain_epochs: float,
                  search_epochs: float) -> list[dict]:
    metric = RETRAIN_METRIC if RETRAIN_METRIC in set(ablation["metric"]) else run.headline_metric
    rows = []
    for factor in run.categorical_factors:
        labels = group[factor.column]
        reference = group[labels == factor.reference]
        family = []
        for level in factor.levels:
            if level in (factor.reference, NULL_LEVEL):
                continue
            searched = ablation[(ablation["factor"] == factor.name) & (ablation["level"] == level)
                                & (ablation["metric"] == metric)]
            if searched.empty:
                continue
            searched = searched.iloc[0]
            trials = group[labels == level]
            row = {"factor": factor.name, "level": level, "reference": factor.reference,
                   "retrain_epochs": retrain_epochs, "search_epochs": search_epochs, "metric": metric,
                   "search_diff": float(searched["diff"]), "search_verdict": searched["verdict"],
                   "n_architectures": int(trials["arch_key"].nunique()),
                   "n_architectures_ref": int(reference["arch_key"].nunique()),
                   "search_diff_retrained": np.nan, "unit": "", "n": 0, "n_ref": 0,
                   "retrain_diff": np.nan, "retrain_ci_low": np.nan, "retrain_ci_high": np.nan, "p_value": np.nan,
                   "p_adjusted": np.nan, "retrain_verdict": "n too small", "direction_agrees": None,
                   "fidelity": "too few retrained architectures"}
            family.append(row)
            if trials.empty or reference.empty:
                continue
            unit, values, reference_values = _retrained_comparison(trials, reference)
            # The same architectures at the search budget: does selecting the top K alone move the difference?
            search_scores = (side.groupby("arch_key")["search_test_acc"].first().mean() for side in (trials, reference))
            row.update(search_diff_retrained=float(next(search_scores) - next(search_scores)), unit=unit,
                       n=len(values), n_ref=len(reference_values),
                       retrain_diff=float(values.mean() - reference_values.mean()))
            if np.isfinite(row["search_diff"]) and row["search_diff"] != 0:
                row["direction_agrees"] = bool(np.sign(row["retrain_diff"]) == np.sign(row["search_diff"]))
            if len(values) >= 2 and len(reference_values) >= 2:
                result = compare(values, reference_values)
                row.update(retrain_ci_low=result.ci_low, retrain_ci_high=result.ci_high, p_value=result.p_value)
        tested = [row for row in family if np.isfinite(row["p_value"])]
        for row, p_adjusted in zip(tested, holm([row["p_value"] for row in tested])):
            row["p_adjusted"] = p_adjusted
            row["retrain_verdict"] = verdict(row["retrain_diff"], p_adjusted)
        for row in family:
            if row["unit"]:
                row["fidelity"] = _fidelity(row["search_verdict"], row["retrain_verdict"], row["direction_agrees"])
        rows += family
    return rows


def budget_fidelity(run: RunData, ablation: pd.DataFrame) -> BudgetFidelity | None:
    """The search ranking against the retrained one, and each ablation verdict retrained; None without a retrain."""
    if run.retrain is None:
        return None
    runs = retrained_runs(run)
    search_epochs = _search_epochs(run)
    ranking, verdicts, notes = [], [], []
    if runs.empty:
        notes.append(f"{runfolder.RETRAIN_PARQUET} holds no complete retrain run with a test accuracy.")
    for retrain_epochs, group in _budget_groups(runs):
        per_architecture = group.groupby("arch_key", sort=False).agg(
            mean=("test_acc", "mean"), search_val_acc_best=("search_val_acc_best", "first"),
            search_test_acc=("search_test_acc", "first"))
        ranking += _ranking_rows(per_architecture, retrain_epochs, search_epochs, notes)
        verdicts += _verdict_rows(run, ablation, group, retrain_epochs, search_epochs)
    if not np.isfinite(search_epochs):
        notes.append(f"{runfolder.RUN_JSON} gives no budget.epochs: the search budget is not stated.")
    if runs["retrain_epochs"].isna().all() and not runs.empty:
        notes.append(f"{runfolder.RETRAIN_PARQUET} has no epochs column: the retrain budget is not stated.")
    return BudgetFidelity(pd.DataFrame(ranking, columns=BUDGET_FIDELITY_COLUMNS),
                          pd.DataFrame(verdicts, columns=BUDGET_VERDICT_COLUMNS), notes)


@dataclass
class Fidelity:
    """Both measures of whether the cheap budget predicts the expensive one."""

    stability: RankStability
    budget: BudgetFidelity | None

    def csv_tables(self) -> dict[str, pd.DataFrame]:
        """rank_stability.csv always; budget_fidelity.csv and budget_verdicts.csv when the run was retrained."""
        tables = {"rank_stability": self.stability.table}
        if self.budget is not None:
            tables.update(budget_fidelity=self.budget.ranking, budget_verdicts=self.budget.verdicts)
        return tables


def fidelity_tables(run: RunData, ablation: pd.DataFrame) -> Fidelity:
    """Rank stability over epochs and, where retrain.parquet exists, search against retrain."""
    return Fidelity(stability=rank_stability(run), budget=budget_fidelity(run, ablation))

