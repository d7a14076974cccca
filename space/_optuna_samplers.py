"""Optuna samplers by the name `search.sampler` gives them: the one table the schema and the runner share.

The schema allows exactly the keys of `SAMPLERS`; the runner builds the
sampler with `make_sampler(study.search.sampler, study.search.sampler_seed)`.
"""

from __future__ import annotations

from typing import Callable

import optuna


def _tpe(seed: int) -> optuna.samplers.BaseSampler:
    return optuna.samplers.TPESampler(seed=seed, multivariate=True)


def _random(seed: int) -> optuna.samplers.BaseSampler:
    return optuna.samplers.RandomSampler(seed=seed)


def _nsga2(seed: int) -> optuna.samplers.BaseSampler:
    return optuna.samplers.NSGAIISampler(seed=seed)


def _qmc(seed: int) -> optuna.samplers.BaseSampler:
    return optuna.samplers.QMCSampler(seed=seed, warn_independent_sampling=False)


# search.sampler -> seed -> Optuna sampler (each sampler owns its seeded RNG).
SAMPLERS: dict[str, Callable[[int], optuna.samplers.BaseSampler]] = {
    "tpe": _tpe, "random": _random, "nsga2": _nsga2, "qmc": _qmc,
}


def make_sampler(name: str, seed: int) -> optuna.samplers.BaseSampler:
    """The Optuna sampler `search.sampler: name` stands for, seeded with `seed`."""
    if name not in SAMPLERS:
        raise ValueError(f"search.sampler: got {name!r}; allowed: {', '.join(SAMPLERS)}")
    return SAMPLERS[name](seed)
