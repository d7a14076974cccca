"""The proxies by name: the one registry of what `search.screen.proxy` and `python -m reports.proxies` may name.

Every proxy scores an architecture at its initialisation (the weights its
trial's seed gives, before any step) on the scoring batches of the study's
own training images; higher is better. `vote` is not a score of one
architecture but of a set: it ranks candidates against each other by the
majority of its voters (`screens._measures.vote_wins`).
"""

from __future__ import annotations

import math
from dataclasses import dataclass
from typing import Callable, Sequence

import torch
from torch import nn

import models
from models import ArchSpec

from . import _measures
from ._measures import Batch


@dataclass(frozen=True)
class Proxy:
    """One zero-cost proxy: its name, the paper that defines it, and its score of a built network."""

    name: str
    paper: str
    # score(network at initialisation, its spec, the scoring batches, the image size) -> float, higher better
    score: Callable[[nn.Module, ArchSpec, Sequence[Batch], int], float]
    needs_network: bool = True  # params and macs are counted from the spec alone


def _image_shape(spec: ArchSpec, image_size: int) -> tuple[int, int, int]:
    return (spec.in_channels, image_size, image_size)


PROXIES: dict[str, Proxy] = {proxy.name: proxy for proxy in (
    Proxy("synflow", "Tanaka et al., NeurIPS 2020 (arXiv 2006.05467), as scored by Abdelfattah et al., ICLR 2021",
          lambda net, spec, batches, size: _measures.synflow(net, _image_shape(spec, size))),
    Proxy("jacob_cov", "Mellor et al. 2020 (arXiv 2006.04647 v1), as scored by Abdelfattah et al., ICLR 2021",
          lambda net, spec, batches, size: _measures.jacob_cov(net, batches)),
    Proxy("grad_norm", "Abdelfattah et al., ICLR 2021 (arXiv 2101.08134)",
          lambda net, spec, batches, size: _measures.grad_norm(net, batches)),
    Proxy("snip", "Lee et al., ICLR 2019 (arXiv 1810.02340), as scored by Abdelfattah et al., ICLR 2021",
          lambda net, spec, batches, size: _measures.snip(net, batches)),
    # Baselines: the paper finds them strong (Spearman 0.72 and 0.73 on NAS-Bench-201 CIFAR-10); one home for the
    # counts, models.complexity, at the study's image size.
    Proxy("params", "parameter count (models.complexity), a baseline in Abdelfattah et al., ICLR 2021",
          lambda net, spec, batches, size: float(models.complexity(spec, size).params), needs_network=False),
    Proxy("macs", "multiply-accumulates (models.complexity), a baseline in Abdelfattah et al., ICLR 2021",
          lambda net, spec, batches, size: float(models.complexity(spec, size).macs), needs_network=False),
)}
VOTE = "vote"
# Abdelfattah et al.'s voters: the three proxies that ranked best on NAS-Bench-201.
VOTERS = ("synflow", "jacob_cov", "snip")
PROXY_NAMES = (*PROXIES, VOTE)
# A screen of one scoring batch of this many images, as Abdelfattah et al. score NAS-Bench-201 (batch 64).
SCORING_BATCH_SIZE = 64


def check_proxy(name: str) -> str:
    """`name` when it is a proxy of the registry; ValueError naming the allowed ones otherwise."""
    if name not in PROXY_NAMES:
        raise ValueError(f"proxy: got {name!r}; allowed: {', '.join(PROXY_NAMES)}")
    return name


def computed_by(proxy: str) -> tuple[str, ...]:
    """The per-architecture proxies that `proxy` needs: its voters for the vote, else itself."""
    return VOTERS if check_proxy(proxy) == VOTE else (proxy,)


def initialised(spec: ArchSpec, seed: int) -> nn.Module:
    """The network of `spec` as its trial starts: built right after torch.manual_seed(seed), as search.train.fit does.

    The global RNG is left as it was (a screen in the driver must not shift
    what anything else draws).
    """
    with torch.random.fork_rng(devices=[]):
        torch.manual_seed(seed)
        return models.build(spec)


def architecture_scores(spec: ArchSpec, seed: int, names: Sequence[str], batches: Sequence[Batch],
                        image_size: int) -> dict[str, float]:
    """Each named per-architecture proxy of `spec` at the initialisation seed `seed`, on `batches`."""
    unknown = [name for name in names if name not in PROXIES]
    if unknown:
        raise ValueError(f"proxy: got {unknown[0]!r}; allowed: {', '.join(PROXIES)} (the vote scores a set)")
    network = initialised(spec, seed) if any(PROXIES[name].needs_network for name in names) else None
    return {name: PROXIES[name].score(network, spec, batches, image_size) for name in names}


def score_candidates(proxy: str, specs: Sequence[ArchSpec], seeds: Sequence[int], batches: Sequence[Batch],
                     image_size: int) -> list[dict[str, float]]:
    """Each candidate's scores under `proxy` (for the vote: its voters' scores and its wins, `vote`)."""
    names = computed_by(proxy)
    scores = [architecture_scores(spec, seed, names, batches, image_size) for spec, seed in zip(specs, seeds)]
    if proxy == VOTE:
        for candidate, wins in zip(scores, _measures.vote_wins([[s[name] for s in scores] for name in VOTERS])):
            candidate[VOTE] = float(wins)
    return scores


def best_candidate(proxy: str, scores: Sequence[dict[str, float]]) -> int:
    """The position of the highest `proxy` score; NaN ranks last, a tie goes to the one drawn first."""
    def rank(position: int) -> tuple[bool, float, int]:
        value = scores[position][proxy]
        return (not math.isnan(value), value if not math.isnan(value) else 0.0, -position)

    return max(range(len(scores)), key=rank)
