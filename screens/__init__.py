"""Zero-cost screens: score an architecture at initialisation, before a single training step.

    screen = ProxyScreen.of_data("synflow", keep=0.25, batches=1, splits=splits, seed=0)
    best, scores = screen.choose(plans)          # train plans[best]; scores[i]["synflow"] for each
    score_candidates("vote", specs, seeds, batches, image_size)

`PROXY_NAMES` is the one registry of proxy names (the study schema's
`search.screen.proxy` and `python -m reports.proxies` derive from it). Each
proxy follows its paper, cited beside its definition (`_measures`, `_proxies`).
Layer: imports models and imagefeed; space (the schema), search (the driver)
and the one computing command of reports (`python -m reports.proxies`) import it.
"""

from ._data import scoring_batches
from ._measures import Batch, grad_norm, jacob_cov, snip, synflow, vote_wins, weighted_layers
from ._proxies import (PROXIES, PROXY_NAMES, SCORING_BATCH_SIZE, VOTE, VOTERS, Proxy, architecture_scores,
                       best_candidate, check_proxy, computed_by, initialised, score_candidates)
from ._screen import ProxyScreen, candidates_per_trial

__all__ = [
    "PROXIES", "PROXY_NAMES", "VOTE", "VOTERS", "SCORING_BATCH_SIZE", "Proxy", "Batch",
    "synflow", "jacob_cov", "grad_norm", "snip", "vote_wins", "weighted_layers",
    "architecture_scores", "score_candidates", "best_candidate", "check_proxy", "computed_by", "initialised",
    "scoring_batches", "ProxyScreen", "candidates_per_trial",
]
