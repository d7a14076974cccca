"""The one rule for "the best trial": every ranking in resnas (models.load, retrain, the report,
checkpoint pruning, the progress line) calls this module.

Trials are ranked on validation accuracy only (`val_acc_best`), best first:
choosing by test accuracy would make the reported test accuracy of the choice
optimistic. Only complete trials with a finite score are ranked; ties go to the
lower trial id, i.e. the trial that finished being sampled first.
"""

from __future__ import annotations

import math
from typing import Any, Iterable, Sequence

from ._rows import float_or_nan

RANKING_COLUMN = "val_acc_best"
RANKING_RULE = (f"complete trials by {RANKING_COLUMN} (validation accuracy, best epoch), highest first; "
                "ties by trial id")


def rankable(status: Any, score: Any) -> bool:
    """True for a complete trial with a finite validation score."""
    return status == "complete" and math.isfinite(float_or_nan(score))


def sort_key(trial_id: Any, score: Any) -> tuple[float, str]:
    """The sort key of a rankable trial: best score first, then trial id."""
    return (-float_or_nan(score), str(trial_id))


def ranking_order(trial_ids: Sequence[Any], statuses: Sequence[Any], scores: Sequence[Any]) -> list[int]:
    """Positions of the rankable trials, best first (three equally long columns of a results table)."""
    chosen = [i for i, (status, score) in enumerate(zip(statuses, scores)) if rankable(status, score)]
    return sorted(chosen, key=lambda i: sort_key(trial_ids[i], scores[i]))


def ranked_rows(rows: Iterable[dict[str, Any]]) -> list[dict[str, Any]]:
    """Results rows (dicts) of the rankable trials, best first."""
    rows = list(rows)
    order = ranking_order([r.get("trial_id") for r in rows], [r.get("status") for r in rows],
                          [r.get(RANKING_COLUMN) for r in rows])
    return [rows[i] for i in order]


def ranked_frame(results: Any) -> Any:
    """The rankable rows of a results DataFrame, best first, with a 0-based `rank` column (0 = best)."""
    if not len(results) or RANKING_COLUMN not in results.columns:
        return results.iloc[0:0].assign(rank=[])
    order = ranking_order(results["trial_id"].tolist(), results["status"].tolist(),
                          results[RANKING_COLUMN].tolist())
    ranked = results.iloc[order].reset_index(drop=True)
    ranked.insert(0, "rank", range(len(ranked)))
    return ranked
