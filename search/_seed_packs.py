"""Which trials of a grid travel together when seeds are packed into one model (search.pack_seeds).

Every trial stays one Optuna trial of one grid point and one seed, with its
own number, row, curve and checkpoint; a pack is up to K of them, of one grid
point, that one Tune trial trains as one model (`search._packed_seeds`).
The searcher forms a pack from consecutive asks: the first sample comes as
it would unpacked, then it asks for partners while the next ask is sure to
give one (`PackingGridSampler.partner_next`):

- while Optuna's queue holds trials (those an interrupted attempt left, queued
  again by `prepare_resume`, and lost rows `requeue_lost` queued), the next
  ask pops the oldest of them, so that one must be of the pack's point;
- otherwise the sampler must still have an unvisited seed of that point,
  which it then gives (`partners_of`).

An interrupted pack's trials were asked one after another and are queued again
in that order, so a resume packs them as before.
"""

from __future__ import annotations

import contextlib
from typing import Any, Iterator, Mapping, Sequence

import optuna
from optuna.trial import FrozenTrial, TrialState

from ._searcher import AskTellGridSampler


class PackingGridSampler(AskTellGridSampler):
    """A GridSampler whose asks come in packs: each new grid point's seeds one after another, lowest seed first.

    `pack_by` is the grid parameter (the point's label) that the trials of a pack share; the others (the seed)
    differ. Grid points are drawn at random as GridSampler draws them (seeded); a pack then takes that point's
    unvisited trials in the order the grid lists their values.
    """

    def __init__(self, search_space: Mapping[str, Sequence[Any]], seed: int | None = None, *,
                 pack_by: str) -> None:
        super().__init__(search_space, seed=seed)
        self.pack_by = pack_by
        self._pack_position = self._param_names.index(pack_by)
        self._partner_of: Any = None  # the point whose seeds the next asks give (`partners_of`)

    @contextlib.contextmanager
    def partners_of(self, point: Any) -> Iterator[None]:
        """Within it, asks give unvisited trials of grid point `point` (check `partner_next` first)."""
        self._partner_of = point
        try:
            yield
        finally:
            self._partner_of = None

    def partner_next(self, study: optuna.Study, point: Any) -> bool:
        """Whether the next ask gives a trial of grid point `point`: the oldest queued trial if any is queued (Optuna
        pops those first), else an unvisited grid id of that point."""
        waiting = study._storage.get_all_trials(study._study_id, deepcopy=False, states=(TrialState.WAITING,))
        if waiting:
            fixed = waiting[0].system_attrs.get("fixed_params") or {}
            return fixed.get(self.pack_by) == point
        return bool(self._open_ids(study, point))

    def before_trial(self, study: optuna.Study, trial: FrozenTrial) -> None:
        # A queued trial keeps its grid point, as in GridSampler.
        if "grid_id" in trial.system_attrs or "fixed_params" in trial.system_attrs:
            return
        if self._partner_of is not None:
            candidates = self._open_ids(study, self._partner_of)
        else:
            open_ids = self._open_ids(study)
            # A random point among those with open trials (GridSampler's rule), then its first open trial.
            point = self._all_grids[int(self._rng.rng.choice(open_ids))][self._pack_position] if open_ids else None
            candidates = self._open_ids(study, point) if open_ids else []
        if not candidates:  # every trial of the grid started: GridSampler's own fallback
            super().before_trial(study, trial)
            return
        study._storage.set_trial_system_attr(trial._trial_id, "search_space", self._search_space)
        study._storage.set_trial_system_attr(trial._trial_id, "grid_id", candidates[0])

    def _open_ids(self, study: optuna.Study, point: Any = None) -> list[int]:
        """Grid ids no trial has finished or is running (of `point` alone, where given), in the grid's value order."""
        taken = {t.system_attrs["grid_id"]
                 for t in study._storage.get_all_trials(study._study_id, deepcopy=False)
                 if "grid_id" in t.system_attrs and self._same_search_space(t.system_attrs["search_space"])
                 and (t.state.is_finished() or t.state == TrialState.RUNNING)}
        open_ids = [grid_id for grid_id, values in enumerate(self._all_grids) if grid_id not in taken
                    and (point is None or values[self._pack_position] == point)]
        return sorted(open_ids, key=self._value_order)

    def _value_order(self, grid_id: int) -> tuple[int, ...]:
        values = self._all_grids[grid_id]
        return tuple(self._search_space[name].index(value) for name, value in zip(self._param_names, values))
