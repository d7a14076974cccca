"""Ray Tune's OptunaSearch, with the study in persistent storage and every trial screened and recorded.

What this adds to `ray.tune.search.optuna.OptunaSearch`:

- **Screening.** Each sample is resolved once, here in the driver, into its
  plan (spec and training settings as plain data), which travels to the
  worker in the trial's config. A sampled spec that breaks the study's
  params/MACs constraints is told to Optuna as pruned (with the reason as a
  user attribute) and sampled again, before Ray starts any worker for it.
- **One record.** The trial's Optuna number travels in its config, so the
  results table, the Optuna storage and the dashboard name trials alike; the
  per-epoch values and the final metrics land in one user attribute,
  `result` (one storage write).
- **Learning curves, batched.** Each trial's validation accuracy per epoch
  becomes its intermediate values (step = epoch), so optuna-dashboard draws
  its learning curve: written in one transaction when the trial finishes, not
  one per epoch as Ray's OptunaSearch reports them, so the driver's cost per
  trial stays flat (issue 14). Single-objective studies only, as Optuna's
  `Trial.report`: its samplers score a pruned trial by its last intermediate
  value in the study's one direction. A multi-objective study keeps the curve
  in `result` alone.
- **Honest states.** A trial our trainer reports as failed is told FAIL, one
  stopped early by ASHA is told PRUNED, not COMPLETE with a partial value.
- **Zero-cost screens.** With `search.screen`, each trial that trains is
  the best of several samples within the constraints, scored at
  initialisation by a zero-cost proxy (`screens.ProxyScreen`, here in the
  driver); the others are told to Optuna as pruned, with the reason and
  their scores as user attributes, recorded as rejected rows, and not
  counted against the budget. The kept sample's scores travel in its
  config (`SCREEN`) to its results row.
- **Packed seeds.** With `pack_seeds` K > 1 (search.pack_seeds, grid
  studies, the sampler a `search._seed_packs.PackingGridSampler`), a trial
  that trains takes up to K - 1 partners: trials of the same grid point and
  other seeds, asked right after it, each an Optuna trial of its own. Tune
  sees one trial, whose config lists them all under PACK; each is told to
  Optuna from its own report in the trial's results.
- **Reuse.** A sample that an earlier run already trained (`reuse` finds
  and records it: search._reuse) is told COMPLETE with that trial's values
  and never reaches Tune; the searcher samples on. It counts against the
  budget, so the searcher says FINISHED once the budget is spent.
  `sample_until_training_needed` does this before Tune starts, so a run whose
  every trial is reused needs neither Tune nor Ray.
"""

from __future__ import annotations

import json
import logging
import math
from typing import Any, Callable, NamedTuple, Protocol, Sequence

import optuna
from optuna.trial import TrialState
from ray.tune.search import Searcher
from ray.tune.search.optuna import OptunaSearch

from ._trial import PACK, PLAN, SCREEN, TRIAL_NUMBER, seed_key, seed_reports

logger = logging.getLogger(__name__)

# screen(params) -> (the trial's plan as plain data or None, why it is rejected or None)
Screen = Callable[[dict[str, Any]], tuple[dict[str, Any] | None, str | None]]
# The trial's user attribute holding its final metrics and per-epoch validation accuracy (`trial_summary`).
RESULT_ATTR = "result"
# Why a sample was not trained (a constraint, or a screen), and a screened sample's proxy scores.
REJECTED_ATTR = "rejected"
SCREEN_ATTR = "screen"
SUMMARY_KEYS = ("status", "test_acc", "val_acc_best", "params", "macs", "epochs_run", "error", "reused_from")
MAX_REJECTIONS_IN_A_ROW = 2000
# The key under which a sample drawn before Tune starts waits for Tune's first trial id.
_BEFORE_TUNE = "sampled-before-tune"


class Reused(NamedTuple):
    """A sample an earlier run trained, already recorded: what Optuna is told instead of training it."""

    values: list[float]      # one per objective
    result: dict[str, Any]   # final metrics and "curve", as a trained trial reports them; "reused_from" its source


# reuse(trial number, sampled params, plan) -> Reused once recorded from an earlier run, else None (train it)
Reuse = Callable[[int, dict[str, Any], dict[str, Any]], Reused | None]


class ProxyRanking(Protocol):
    """search.screen as the searcher uses it (`screens.ProxyScreen`): samples per trial, and which one trains."""

    @property
    def candidates(self) -> int:
        """Samples drawn for each trial that trains."""

    def choose(self, plans: Sequence[dict[str, Any]]) -> tuple[int, list[dict[str, float]]]:
        """The position of the plan to train, and each plan's scores by proxy."""

    def rejection(self, scores: dict[str, float], kept: dict[str, float], drawn: int) -> str:
        """Why a candidate with `scores` is not trained."""


class ScreeningOptunaSearch(OptunaSearch):
    """OptunaSearch that rejects constraint-breaking samples and records trials in full."""

    def __init__(self, *args: Any, screen: Screen,
                 on_rejected: Callable[..., None],
                 objective_metrics: list[str], reuse: Reuse | None = None, budget: int | None = None,
                 proxy_screen: ProxyRanking | None = None, pack_seeds: int = 1, **kwargs: Any) -> None:
        super().__init__(*args, **kwargs)
        self._screen = screen
        # on_rejected(number, params, reason, plan[, screen scores]): the recorder writes the rejected row
        self._on_rejected = on_rejected
        self._objective_metrics = objective_metrics
        self._curves: dict[str, dict[int, float]] = {}  # validation accuracy by epoch, of trials in flight
        self._reuse = reuse
        self._budget = budget  # trials still to hand to Tune or take from earlier runs; None: Tune counts alone
        self._held: dict[str, Any] | None = None  # drawn by sample_until_training_needed, for Tune's first trial
        self._proxy_screen = proxy_screen  # search.screen; None trains every sample
        self._pack_seeds = pack_seeds  # search.pack_seeds: seeds of one grid point per Tune trial, at most
        self._partners: dict[str, list[optuna.Trial]] = {}  # the packed seeds beside each Tune trial's own

    @property
    def optuna_study(self) -> optuna.Study:
        """The underlying Optuna study (created by `set_search_properties`)."""
        return self._ot_study

    def sample_until_training_needed(self) -> bool:
        """Sample before Tune starts: reused trials are recorded, up to the first sample that must train.

        True when one must: Tune's first trial gets it. False when the budget
        was spent on reused trials alone: nothing needs Tune, or Ray.
        """
        config = self.suggest(_BEFORE_TUNE)
        if not isinstance(config, dict):
            return False
        self._held = config
        return True

    def suggest(self, trial_id: str) -> dict[str, Any] | str | None:
        if self._held is not None:
            config, self._held = self._held, None
            self._ot_trials[trial_id] = self._ot_trials.pop(_BEFORE_TUNE)
            if _BEFORE_TUNE in self._partners:
                self._partners[trial_id] = self._partners.pop(_BEFORE_TUNE)
            return config
        while self._budget is None or self._budget > 0:
            sample = self._draw(trial_id)
            if not isinstance(sample, tuple):
                return sample
            params, plan, screen = sample
            ot_trial = self._ot_trials[trial_id]
            self._spend()
            reused = self._reuse(ot_trial.number, params, plan) if self._reuse is not None else None
            if reused is None:
                config = {**params, TRIAL_NUMBER: ot_trial.number, PLAN: plan}
                partners = self._take_partners(trial_id, params, plan) if self._pack_seeds > 1 else []
                if partners:
                    config[PACK] = [{"number": ot_trial.number, "params": params, "plan": plan}, *partners]
                return config if screen is None else {**config, SCREEN: screen}
            del self._ot_trials[trial_id]
            self._tell_reused(ot_trial, reused)
        return Searcher.FINISHED

    def _tell_reused(self, ot_trial: optuna.Trial, reused: Reused) -> None:
        """Tell Optuna the values of a sample an earlier run trained (the run folder has its row already, as for a
        trained trial)."""
        ot_trial.set_user_attr(RESULT_ATTR, trial_summary(reused.result))
        report_intermediate_values(self._ot_study, ot_trial,
                                   dict(enumerate(reused.result.get("curve") or [], start=1)))
        values = reused.values
        self._ot_study.tell(ot_trial, values if len(values) > 1 else values[0], state=TrialState.COMPLETE)

    def _take_partners(self, trial_id: str, params: dict[str, Any], plan: dict[str, Any]) -> list[dict[str, Any]]:
        """`{number, params, plan}` of up to pack_seeds - 1 trials of the grid point of `params`, other seeds, asked
        now to train with it (search._seed_packs); each spends the budget, and one an earlier run trained is
        recorded from there instead, as any sample."""
        sampler = self._sampler
        point = params[sampler.pack_by]
        partners: list[dict[str, Any]] = []
        while (len(partners) + 1 < self._pack_seeds and (self._budget is None or self._budget > 0)
               and sampler.partner_next(self._ot_study, point)):
            key = seed_key(trial_id, len(partners) + 1)
            with sampler.partners_of(point):
                sample = self._sample(key)
            if not isinstance(sample, tuple):
                break
            partner_params, partner_plan = sample
            ot_trial = self._ot_trials.pop(key)
            if partner_params[sampler.pack_by] != point:  # partner_next said it would be; a bug if not
                raise RuntimeError(f"search.pack_seeds: asked a partner of grid point {point!r} for trial "
                                   f"{ot_trial.number}, and Optuna gave {partner_params!r}")
            self._spend()
            reused = self._reuse(ot_trial.number, partner_params, partner_plan) if self._reuse is not None else None
            if reused is not None:
                self._tell_reused(ot_trial, reused)
                continue
            self._partners.setdefault(trial_id, []).append(ot_trial)
            partners.append({"number": ot_trial.number, "params": partner_params, "plan": partner_plan})
        return partners

    def _sample(self, trial_id: str) -> tuple[dict[str, Any], dict[str, Any]] | Any:
        """(params, plan) of the next sample within the constraints, its Optuna trial at `trial_id`; else what Optuna's
        searcher said (None, FINISHED). A sample that breaks a constraint is told pruned, recorded, and drawn again."""
        rejected = 0
        while True:
            params = super().suggest(trial_id)
            if not isinstance(params, dict):
                return params
            ot_trial = self._ot_trials[trial_id]
            plan, reason = self._screen(params)
            if reason is None:
                return params, plan
            ot_trial.set_user_attr(REJECTED_ATTR, reason)
            self._ot_study.tell(ot_trial, state=TrialState.PRUNED)
            del self._ot_trials[trial_id]
            self._on_rejected(ot_trial.number, params, reason, plan)
            rejected += 1
            if rejected >= MAX_REJECTIONS_IN_A_ROW:
                raise RuntimeError(
                    f"search: {MAX_REJECTIONS_IN_A_ROW} samples in a row broke the space constraints; "
                    "loosen space.constraints or narrow the searched ranges")

    def _draw(self, trial_id: str) -> tuple[dict[str, Any], dict[str, Any], dict[str, float] | None] | Any:
        """(params, plan, screen scores or None) of the sample to train, its Optuna trial at `trial_id`.

        Without a screen, the next sample within the constraints. With one, the
        best of `candidates` such samples by its proxy; the others are told
        pruned (reason and scores as user attributes) and recorded as rejected.
        Fewer candidates are screened where Optuna's searcher stops giving them.
        """
        if self._proxy_screen is None:
            sample = self._sample(trial_id)
            return (*sample, None) if isinstance(sample, tuple) else sample
        drawn: list[tuple[dict[str, Any], dict[str, Any], optuna.Trial]] = []
        for _ in range(self._proxy_screen.candidates):
            sample = self._sample(trial_id)
            if not isinstance(sample, tuple):
                if not drawn:
                    return sample
                break
            drawn.append((*sample, self._ot_trials.pop(trial_id)))
        best, scores = self._proxy_screen.choose([plan for _, plan, _ in drawn])
        for position, (params, plan, ot_trial) in enumerate(drawn):
            ot_trial.set_user_attr(SCREEN_ATTR, {k: v for k, v in scores[position].items() if _json_safe(v)})
            if position == best:
                continue
            reason = self._proxy_screen.rejection(scores[position], scores[best], len(drawn))
            ot_trial.set_user_attr(REJECTED_ATTR, reason)
            self._ot_study.tell(ot_trial, state=TrialState.PRUNED)
            self._on_rejected(ot_trial.number, params, reason, plan, scores[position])
        params, plan, ot_trial = drawn[best]
        self._ot_trials[trial_id] = ot_trial
        return params, plan, scores[best]

    def _spend(self) -> None:
        if self._budget is not None:
            self._budget -= 1

    def save(self, checkpoint_path: str) -> None:
        """Ray's experiment checkpoint: a pointer only, since the state lives in the Optuna storage.

        OptunaSearch would pickle itself, closures and storage engine included;
        `--resume` rebuilds the searcher from the storage instead.
        """
        with open(checkpoint_path, "w") as marker:
            json.dump({"optuna_study": self._study_name}, marker)

    def restore(self, checkpoint_path: str) -> None:
        """Nothing to restore from Ray: `search.run --resume` reloads the Optuna storage."""

    def on_trial_result(self, trial_id: str, result: dict[str, Any]) -> None:
        """Keep the epoch's validation accuracy in memory (Ray's OptunaSearch would write it to the storage now)."""
        for index, seed_result in seed_reports(result):
            _add_epoch(self._curves.setdefault(seed_key(trial_id, index), {}), seed_result)

    def on_trial_complete(self, trial_id: str, result: dict[str, Any] | None = None,
                          error: bool = False) -> None:
        ot_trial = self._ot_trials.get(trial_id)
        if ot_trial is None or trial_id in self._completed_trials:
            return
        self._completed_trials.add(trial_id)
        trials = [ot_trial, *self._partners.pop(trial_id, [])]
        reports = dict(seed_reports(result or {}))
        for index, trial in enumerate(trials):
            # A packed trial whose report lacks a seed (its worker died) fails that seed, as its worker failed.
            self._tell_finished(trial, reports.get(index, {}), error or index not in reports,
                                self._curves.pop(seed_key(trial_id, index), {}))

    def _tell_finished(self, ot_trial: optuna.Trial, result: dict[str, Any], error: bool,
                       reported: dict[int, Any]) -> None:
        """Tell Optuna how one trained trial ended: its curve, its summary, its state and values."""
        # The epochs as reported (exact), the last one with the final report; a complete or failed trial's
        # final report also carries its whole curve (rounded), which fills any epoch not heard of.
        curve = {epoch: value for epoch, value in enumerate(result.get("curve") or [], start=1)}
        curve.update(reported)
        _add_epoch(curve, result)
        report_intermediate_values(self._ot_study, ot_trial, curve)
        # One user attribute, one storage write: Optuna has no call that sets several at once, and each
        # set_user_attr is a transaction of its own (8 of them took ~170 ms per trial on SQLite).
        ot_trial.set_user_attr(RESULT_ATTR, trial_summary(result))
        if error or result.get("status") == "failed":
            state, values = TrialState.FAIL, None
        elif not result.get("final"):
            state, values = TrialState.PRUNED, None  # stopped early by the scheduler
        else:
            values = [result.get(m) for m in self._objective_metrics]
            state = TrialState.COMPLETE
            if any(v is None or (isinstance(v, float) and math.isnan(v)) for v in values):
                state, values = TrialState.FAIL, None
        try:
            self._ot_study.tell(ot_trial, values if values is None or len(values) > 1 else values[0],
                                state=state)
        except ValueError as error:  # e.g. told already; the table keeps the truth either way
            logger.warning("optuna could not record trial %s: %s", ot_trial.number, error)


def _add_epoch(curve: dict[int, Any], result: dict[str, Any]) -> None:
    """Note one reported epoch's validation accuracy in `curve`."""
    if isinstance(result.get("epoch"), int) and "val_acc" in result:
        curve[result["epoch"]] = result["val_acc"]


def report_intermediate_values(study: optuna.Study, trial: optuna.Trial, curve: dict[int, Any]) -> None:
    """Store a trial's validation accuracy by epoch as its intermediate values, in one storage transaction.

    Single-objective studies only (see the module docstring). A value that is
    not a finite number (a retrain measures no validation accuracy) is left
    out. On an RDB storage (SQLite, PostgreSQL, ...), one session looks the
    trial up once and adds every epoch's row through Optuna's own table model:
    4.6 ms for 100 epochs on SQLite, where Optuna's per-step write (two
    queries a step) took 48 ms in one session and `Trial.report` 64 ms
    (2-core machine). Other storages get one call per epoch.
    """
    if len(study.directions) > 1:
        return
    values = {int(epoch): float(value) for epoch, value in sorted(curve.items())
              if isinstance(value, (int, float)) and not isinstance(value, bool) and math.isfinite(value)}
    if not values:
        return
    storage = study._storage
    backend = getattr(storage, "_backend", storage)  # Optuna wraps an RDBStorage in its cache
    if not isinstance(backend, optuna.storages.RDBStorage):
        for step, value in values.items():
            storage.set_trial_intermediate_value(trial._trial_id, step, value)
        return
    from optuna.storages._rdb import models  # Optuna's tables, as search._resume reads them
    from optuna.storages._rdb.storage import _create_scoped_session

    with _create_scoped_session(backend.scoped_session, True) as session:
        stored_trial = models.TrialModel.find_or_raise_by_id(trial._trial_id, session)
        backend.check_trial_is_updatable(trial._trial_id, stored_trial.state)
        existing = {row.step: row for row in stored_trial.intermediate_values}
        for step, value in values.items():
            stored, kind = models.TrialIntermediateValueModel.intermediate_value_to_stored_repr(value)
            row = existing.get(step)
            if row is None:
                session.add(models.TrialIntermediateValueModel(trial_id=trial._trial_id, step=step,
                                                               intermediate_value=stored,
                                                               intermediate_value_type=kind))
            else:
                row.intermediate_value, row.intermediate_value_type = stored, kind


class AskTellGridSampler(optuna.samplers.GridSampler):
    """GridSampler for ask-and-tell use, as Ray Tune drives it.

    GridSampler calls `study.stop()` once the grid is exhausted, which raises
    outside `study.optimize`; Ray's `num_samples` already bounds the trials.
    """

    def after_trial(self, study: optuna.Study, trial: optuna.trial.FrozenTrial,
                    state: TrialState, values: Any) -> None:
        return None


def _json_safe(value: Any) -> bool:
    return isinstance(value, (str, int, bool)) or (isinstance(value, float) and math.isfinite(value))


def trial_summary(result: dict[str, Any]) -> dict[str, Any]:
    """What the Optuna storage keeps of a finished trial beside its values: the `result` user attribute.

    Plain JSON (no NaN, which the dashboard's JSON parser refuses): the final
    metrics a person looks for in optuna-dashboard, and the validation accuracy
    per epoch, since Optuna stores intermediate values only for single-objective
    studies.
    """
    summary = {key: result[key] for key in SUMMARY_KEYS if key in result and _json_safe(result[key])}
    if "curve" in result:
        summary["val_acc_per_epoch"] = [value if _json_safe(value) else None for value in result["curve"]]
    return summary


def open_storage(url: str) -> optuna.storages.BaseStorage:
    """The Optuna storage at `url`; an SQLite file in write-ahead-log mode, committed without an fsync each.

    Every ask, parameter, attribute and tell is a transaction of its own, and
    SQLite's default (a rollback journal, synchronous=FULL) fsyncs each: about
    300 ms of storage per trial on the 2-core machine, against about 65 ms with
    WAL and synchronous=NORMAL (bench/RESULTS.md). The trade is SQLite's own:
    a killed driver loses nothing, a power cut may lose the last commits (the
    trial log in the run folder is not fsynced either). WAL needs a local file
    system (SQLite's rule), as SQLite on a network share always has.
    """
    if not url.startswith("sqlite:"):
        return optuna.storages.get_storage(url)
    import sqlalchemy

    storage = optuna.storages.RDBStorage(url)

    def write_ahead(connection: Any, record: Any) -> None:
        cursor = connection.cursor()
        cursor.execute("PRAGMA journal_mode=WAL")
        cursor.execute("PRAGMA synchronous=NORMAL")
        cursor.close()

    sqlalchemy.event.listen(storage.engine, "connect", write_ahead)
    storage.engine.dispose()  # the connection that created the tables goes; new ones get the pragmas
    return optuna.storages.get_storage(storage)


def prepare_resume(study: optuna.Study) -> list[int]:
    """Mark trials an interrupted run left RUNNING as failed and queue their parameters again.

    Returns the numbers of the interrupted trials. A queued trial keeps its grid
    point: GridSampler would otherwise count the failed copy as visited and
    never run that point again. A trial killed while Optuna was still creating
    it, before its parameters were suggested, has nothing to queue: its grid
    point, if it had one, is handed back (GridSampler counts a finished trial's
    point only while the trial names this grid's search space), and the sampler
    draws it again.
    """
    interrupted = []
    storage = study._storage
    for trial in study.get_trials(deepcopy=False, states=(TrialState.RUNNING,)):
        storage.set_trial_user_attr(trial._trial_id, "interrupted", True)
        if not trial.params and "grid_id" in trial.system_attrs:
            storage.set_trial_system_attr(trial._trial_id, "search_space", {})
        study.tell(trial.number, state=TrialState.FAIL)
        interrupted.append(trial.number)
        if not trial.params:
            continue
        study.enqueue_trial(trial.params, user_attrs={"rerun_of": trial.number})
        if "grid_id" in trial.system_attrs:
            waiting = study.get_trials(deepcopy=False, states=(TrialState.WAITING,))[-1]
            for key in ("grid_id", "search_space"):
                storage.set_trial_system_attr(waiting._trial_id, key, trial.system_attrs[key])
    return interrupted
