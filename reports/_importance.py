"""Hyperparameter importances of a searched (Optuna) study.

The study's own storage (study.db) is preferred: it holds exactly what the
sampler saw. When it cannot be read, the same evaluator runs on an in-memory
Optuna study rebuilt from the `factor.*` columns of results.parquet, and the
page says which source was used. Optuna is imported here only, lazily, so a
grid study's report never pays for it.
"""

from __future__ import annotations

import math
import warnings
from dataclasses import dataclass
from pathlib import Path

import numpy as np
import pandas as pd

import runfolder

from reports import _budget as budgets
from reports._budget import SectionBudget
from reports._load import RunData
from reports._stats import accuracy_values

# PED-ANOVA (Watanabe et al. 2023, arXiv 2304.10255) contrasts the top 10% of
# trials with all of them; below 20 complete trials that top set holds fewer
# than 2 trials and the densities it compares are meaningless.
MIN_TRIALS = 20
TARGET_QUANTILE = 0.1
SQLITE_PREFIX = "sqlite:///"


@dataclass
class Importances:
    """Importances (param, importance, share) or, when impossible, the reason why."""

    table: pd.DataFrame | None
    method: str
    reason: str | None = None


def _evaluators():
    """Evaluators to try, in order: (name, constructor)."""
    from optuna.importance import FanovaImportanceEvaluator, PedAnovaImportanceEvaluator

    return [
        ("PED-ANOVA", lambda: PedAnovaImportanceEvaluator(target_quantile=TARGET_QUANTILE)),
        # fANOVA needs scikit-learn, which resnas does not install; tried second
        # so that an environment that has it still gets a result when PED-ANOVA fails.
        ("fANOVA", lambda: FanovaImportanceEvaluator(seed=0)),
    ]


def _study_from_storage(run: RunData):
    """The Optuna study in run_dir/study.db, or (None, why not)."""
    import optuna

    path = _storage_file(run)
    if path is None:
        return None, f"{runfolder.STUDY_DB} is missing"
    name = run.info.get("study")
    if not name:
        return None, f"{runfolder.RUN_JSON} names no study to look up in {runfolder.STUDY_DB}"
    try:
        with warnings.catch_warnings():
            warnings.simplefilter("ignore")
            study = optuna.load_study(study_name=str(name), storage=f"sqlite:///{path.resolve()}")
    except Exception as error:  # a bad file raises sqlalchemy, KeyError or ValueError alike
        return None, f"{path.name} could not be read as study {name!r} ({type(error).__name__}: {' '.join(str(error).split())[:200]})"
    return study, None


def _storage_file(run: RunData) -> Path | None:
    """run_dir/study.db, else the SQLite file run.json's `storage` names; never a server (no network)."""
    local = runfolder.RunFolder(run.run_dir).study_db
    if local.is_file():
        return local
    storage = str(run.info.get("storage") or "")
    if storage.startswith(SQLITE_PREFIX) and Path(storage[len(SQLITE_PREFIX):]).is_file():
        return Path(storage[len(SQLITE_PREFIX):])
    return None


def _study_from_results(run: RunData):
    """An in-memory study whose trials are the complete rows of results.parquet and their factor values."""
    import optuna
    from optuna.distributions import CategoricalDistribution, FloatDistribution, IntDistribution

    metric = run.ranking_metric
    scored = accuracy_values(run, metric)
    distributions = {}
    for factor in run.factors:
        column = scored[factor.column]
        present = column.dropna()
        if present.empty:
            continue
        if factor.categorical:
            distributions[factor.name] = CategoricalDistribution(
                sorted({_plain(value) for value in present}, key=lambda v: (str(type(v)), v)))
        elif pd.api.types.is_integer_dtype(present):
            distributions[factor.name] = IntDistribution(int(present.min()), int(present.max()))
        else:
            distributions[factor.name] = FloatDistribution(float(present.min()), float(present.max()))
    direction = "maximize" if run.ranking_maximize else "minimize"
    study = optuna.create_study(direction=direction)
    columns = {factor.name: factor.column for factor in run.factors if factor.name in distributions}
    factor_values = scored[list(columns.values())].itertuples(index=False, name=None)
    trials = []
    for values, objective in zip(factor_values, scored[metric].to_numpy(dtype=float)):
        # A conditional parameter that a trial did not use is absent, not NaN.
        params = {name: _plain(value) for name, value in zip(columns, values) if not _missing(value)}
        trials.append(optuna.trial.create_trial(
            params=params, distributions={name: distributions[name] for name in params}, value=float(objective)))
    study.add_trials(trials)
    return study


def _plain(value):
    return value.item() if isinstance(value, np.generic) else value


def _missing(value) -> bool:
    return value is None or (isinstance(value, float) and math.isnan(value))


def _evaluate(study, budget: SectionBudget | None = None) -> tuple[pd.DataFrame | None, str | None, str | None]:
    """(table, evaluator name, None) or (None, None, why every evaluator failed)."""
    import optuna

    n_complete = _complete_count(study)
    if n_complete < MIN_TRIALS:
        return None, None, (f"only {n_complete} complete trial(s); PED-ANOVA contrasts the top "
                            f"{TARGET_QUANTILE:.0%} of trials with all of them and needs at least {MIN_TRIALS}")
    target = None
    if len(study.directions) > 1:
        # PED-ANOVA treats a given target as lower-is-better; the first objective leads.
        sign = -1.0 if study.directions[0] == optuna.study.StudyDirection.MAXIMIZE else 1.0
        target = lambda trial: sign * trial.values[0]  # noqa: E731
    failures = []
    for name, make in _evaluators():
        # Checked between evaluators only: optuna's evaluator cannot be stopped once it runs (it is linear in
        # the trials; a thread could not stop it either).
        budgets.check(budget)
        try:
            with warnings.catch_warnings(record=True) as caught:
                warnings.simplefilter("always")
                raw = optuna.importance.get_param_importances(
                    study, evaluator=make(), target=target, normalize=False)
        except Exception as error:  # ImportError (no sklearn), ValueError (no params), ...
            failures.append(f"{name}: {type(error).__name__}: {' '.join(str(error).split())[:200]}")
            continue
        equal = [str(w.message) for w in caught if "will be equal" in str(w.message)]
        total = sum(raw.values())
        if equal or not raw or not total > 0:
            failures.append(f"{name}: " + (equal[0] if equal else "every importance is 0: no parameter separates the best trials from the rest"))
            continue
        table = pd.DataFrame({"param": list(raw), "importance": list(raw.values())})
        table["share"] = table["importance"] / total
        return table.sort_values("importance", ascending=False, kind="stable").reset_index(drop=True), name, None
    return None, None, "; ".join(failures)


def param_importances(run: RunData, budget: SectionBudget | None = None) -> Importances:
    """Importances from study.db if possible, else from results.parquet; the method names the source."""
    import optuna

    # Optuna logs "A new study created in memory" at INFO; restore the caller's level after.
    verbosity = optuna.logging.get_verbosity()
    optuna.logging.set_verbosity(optuna.logging.WARNING)
    try:
        return _param_importances(run, budget)
    finally:
        optuna.logging.set_verbosity(verbosity)


def _param_importances(run: RunData, budget: SectionBudget | None) -> Importances:
    study, storage_problem = _study_from_storage(run)
    if study is not None:
        table, evaluator, reason = _evaluate(study, budget)
        if table is not None:
            return Importances(table, f"{evaluator} (optuna.importance), on the trials stored in {_storage_file(run).name}")
        stored = _complete_count(study)
        # The results table only helps when it holds trials the storage lacks
        # (e.g. a runner that did not write to study.db); otherwise say why once.
        if len(accuracy_values(run, run.ranking_metric)) <= stored:
            return Importances(None, f"PED-ANOVA (optuna.importance), on the trials stored in {runfolder.STUDY_DB}", reason)
        storage_problem = f"{runfolder.STUDY_DB}: {reason}"
    if not run.factors:
        return Importances(None, "none", f"{storage_problem}; and {runfolder.RESULTS_PARQUET} has no factor.* columns to fall back on")
    table, evaluator, reason = _evaluate(_study_from_results(run), budget)
    source = (f"on the factor.* columns and {run.ranking_metric} of the complete trials in {runfolder.RESULTS_PARQUET}, "
              f"because {storage_problem}")
    if table is None:
        return Importances(None, f"PED-ANOVA {source}", reason)
    return Importances(table, f"{evaluator} (optuna.importance), {source}")


def _complete_count(study) -> int:
    import optuna

    return len(study.get_trials(deepcopy=False, states=(optuna.trial.TrialState.COMPLETE,)))
