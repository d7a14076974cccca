"""Optuna samplers by the name `search.sampler` gives them: the one table the schema and the runner share.

The schema allows exactly the keys of `SAMPLERS`; the runner builds the
sampler with `make_sampler(study.search.sampler, study.search.sampler_seed)`.
"""

from __future__ import annotations

from typing import Callable

import numpy as np
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


# Samplers that index their draws by the trial's number (a scrambled Sobol sequence): a resumed study goes on
# along the same sequence under the same seed. The others draw from their RNG's state, which a new process
# starts over from the seed.
_DRAWS_BY_NUMBER = frozenset({"qmc"})


def make_sampler(name: str, seed: int, trials_so_far: int = 0) -> optuna.samplers.BaseSampler:
    """The Optuna sampler `search.sampler: name` stands for, seeded with `seed`.

    `trials_so_far` is how many trials the study's storage holds already (a --resume): a sampler that draws from
    its RNG would otherwise draw the first run's samples again, and train architectures it has trained. It is
    then seeded with a seed derived from both (reproducible: the same resume draws the same samples).
    """
    if name not in SAMPLERS:
        raise ValueError(f"search.sampler: got {name!r}; allowed: {', '.join(SAMPLERS)}")
    if trials_so_far and name not in _DRAWS_BY_NUMBER:
        seed = int(np.random.SeedSequence([seed, trials_so_far]).generate_state(1)[0])
    return SAMPLERS[name](seed)
