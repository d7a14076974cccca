"""`search.screen` in the driver: score each trial's sampled candidates at initialisation and train only the best."""

from __future__ import annotations

import math
from dataclasses import dataclass
from typing import Any, Mapping, Sequence

import imagefeed
from models import ArchSpec

from ._data import scoring_batches
from ._measures import Batch
from ._proxies import best_candidate, check_proxy, score_candidates


def candidates_per_trial(keep: float) -> int:
    """Samples drawn for each trial that trains: ceil(1 / keep), so that the kept fraction is at most `keep`."""
    if not (isinstance(keep, (int, float)) and 0 < keep <= 1):
        raise ValueError(f"keep: got {keep!r}; allowed: a number in (0, 1]")
    return math.ceil(round(1.0 / keep, 9))  # 1 / 0.1 is 10.000000000000002 in floats, not 11 candidates


@dataclass(frozen=True)
class ProxyScreen:
    """The screen of one run: its proxy, the fraction kept and the scoring batches, drawn once."""

    proxy: str
    keep: float
    batches: tuple[Batch, ...]
    image_size: int

    def __post_init__(self) -> None:
        check_proxy(self.proxy)
        candidates_per_trial(self.keep)

    @classmethod
    def of_data(cls, proxy: str, keep: float, batches: int, splits: imagefeed.DatasetSplits | imagefeed.StreamedSplits,
                seed: int) -> ProxyScreen:
        """The screen on `batches` scoring batches of the run's training split, drawn with `seed`."""
        return cls(proxy, keep, tuple(scoring_batches(splits, batches, seed)), splits.image_size)

    @property
    def candidates(self) -> int:
        """Samples drawn for each trial that trains."""
        return candidates_per_trial(self.keep)

    def choose(self, plans: Sequence[Mapping[str, Any]]) -> tuple[int, list[dict[str, float]]]:
        """The position of the plan to train and each plan's scores (`TrialPlan.to_dict()` each: spec and seed)."""
        specs = [ArchSpec.from_dict(plan["spec"]) for plan in plans]
        seeds = [int(plan["train"]["seed"]) for plan in plans]
        scores = score_candidates(self.proxy, specs, seeds, self.batches, self.image_size)
        return best_candidate(self.proxy, scores), scores

    def rejection(self, scores: Mapping[str, float], kept: Mapping[str, float], drawn: int) -> str:
        """Why a candidate is not trained: its score beside the kept one's."""
        return (f"screened out by {self.proxy}: {scores[self.proxy]:.4g} against {kept[self.proxy]:.4g} of the "
                f"candidate trained ({drawn} drawn, keep {self.keep:g})")
