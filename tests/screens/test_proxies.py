"""The zero-cost proxies: each against a value computed by hand on a two-layer net, their determinism, and the vote.

The hand computations use numpy only (a forward and backward pass written
out), never torch's autograd, so a proxy that differentiates the wrong thing,
sums the wrong weights or lets BatchNorm in fails here.
"""

from __future__ import annotations

import math

import numpy as np
import pytest
import torch
from torch import nn

import imagefeed
import models
import screens
from space import DataSettings

K = screens._measures.JACOB_COV_K


def _two_layer(w1: np.ndarray, w2: np.ndarray, batchnorm: bool = False) -> nn.Sequential:
    """x -> W1 x -> ReLU -> W2 h, without biases (a BatchNorm1d after W1 when asked)."""
    first = nn.Linear(w1.shape[1], w1.shape[0], bias=False)
    second = nn.Linear(w2.shape[1], w2.shape[0], bias=False)
    with torch.no_grad():
        first.weight.copy_(torch.as_tensor(w1, dtype=torch.float32))
        second.weight.copy_(torch.as_tensor(w2, dtype=torch.float32))
    middle = [nn.BatchNorm1d(w1.shape[0])] if batchnorm else []
    return nn.Sequential(first, *middle, nn.ReLU(), second)


@pytest.fixture
def weights() -> tuple[np.ndarray, np.ndarray]:
    rng = np.random.default_rng(3)
    return rng.normal(size=(3, 4)), rng.normal(size=(2, 3))


def test_synflow_is_the_layer_count_times_the_flow_through_the_absolute_weights(weights):
    # Tanaka et al.'s conservation: with R = 1' |W2| |W1| 1 (all-ones input, every unit active), each layer's
    # sum of |theta * dR/dtheta| equals R, so two layers score 2R. BatchNorm is off, so adding it changes nothing.
    w1, w2 = weights
    flow = np.ones(2) @ np.abs(w2) @ np.abs(w1) @ np.ones(4)
    net = _two_layer(w1, w2, batchnorm=True)
    before = [p.detach().clone() for p in net.parameters()]
    assert screens.synflow(net, (4,)) == pytest.approx(2 * flow, rel=1e-6)
    assert screens.synflow(_two_layer(w1, w2), (4,)) == pytest.approx(2 * flow, rel=1e-6)
    # Scored on a copy: the signs and values of the network are what they were.
    assert all(torch.equal(a, b) for a, b in zip(before, net.parameters()))


def _hand_gradients(w1, w2, x, y):
    """dL/dW1 and dL/dW2 of the mean cross-entropy, by the chain rule written out."""
    pre = x @ w1.T
    hidden = np.maximum(pre, 0.0)
    logits = hidden @ w2.T
    probabilities = np.exp(logits - logits.max(axis=1, keepdims=True))
    probabilities /= probabilities.sum(axis=1, keepdims=True)
    d_logits = (probabilities - np.eye(w2.shape[0])[y]) / len(x)
    d_w2 = d_logits.T @ hidden
    d_hidden = (d_logits @ w2) * (pre > 0)
    return d_hidden.T @ x, d_w2


def test_grad_norm_and_snip_match_the_gradients_by_hand(weights):
    w1, w2 = weights
    x = np.random.default_rng(4).normal(size=(5, 4))
    y = np.array([0, 1, 1, 0, 1])
    d_w1, d_w2 = _hand_gradients(w1, w2, x, y)
    batch = [(torch.as_tensor(x, dtype=torch.float32), torch.as_tensor(y))]
    # grad_norm: each layer's Frobenius norm, summed (Abdelfattah et al.); snip: sum |W * dL/dW| (Lee et al.).
    assert screens.grad_norm(_two_layer(w1, w2), batch) == pytest.approx(
        np.linalg.norm(d_w1) + np.linalg.norm(d_w2), rel=1e-5)
    assert screens.snip(_two_layer(w1, w2), batch) == pytest.approx(
        np.abs(w1 * d_w1).sum() + np.abs(w2 * d_w2).sum(), rel=1e-5)
    # Two batches: their losses' gradients add up, as the reference's split batch does.
    twice = screens.grad_norm(_two_layer(w1, w2), batch * 2)
    assert twice == pytest.approx(2 * (np.linalg.norm(d_w1) + np.linalg.norm(d_w2)), rel=1e-5)


def test_jacob_cov_is_mellors_score_of_the_input_gradients_by_hand(weights):
    w1, w2 = weights
    x = np.random.default_rng(5).normal(size=(2, 4))
    # d(sum of outputs)/dx of each image: (1' W2 * active units) W1.
    rows = ((np.ones(2) @ w2) * (x @ w1.T > 0)) @ w1
    r = np.corrcoef(rows)[0, 1]
    # Two images: the correlation matrix [[1, r], [r, 1]] has eigenvalues 1 - r and 1 + r.
    expected = -sum(math.log(value + K) + 1 / (value + K) for value in (1 - r, 1 + r))
    batch = [(torch.as_tensor(x, dtype=torch.float32), torch.zeros(2, dtype=torch.int64))]
    assert screens.jacob_cov(_two_layer(w1, w2), batch) == pytest.approx(expected, rel=1e-6)


def test_jacob_cov_is_highest_for_uncorrelated_gradients():
    # A linear map's input gradient is the same for every image: correlation 1 everywhere, eigenvalues n and 0,
    # the worst score; Mellor et al.'s ideal, uncorrelated gradients (eigenvalues all 1), scores -n (log(1+k) + 1/(1+k)).
    net = nn.Linear(6, 1, bias=False)
    images = torch.randn(3, 6, generator=torch.Generator().manual_seed(0))
    same = screens.jacob_cov(net, [(images, torch.zeros(3, dtype=torch.int64))])
    assert same == pytest.approx(-(math.log(3 + K) + 1 / (3 + K) + 2 * (math.log(K) + 1 / K)), rel=1e-6)
    ideal = -3 * (math.log(1 + K) + 1 / (1 + K))
    assert same < ideal


def test_the_vote_is_a_pairwise_majority_of_its_voters():
    # Three candidates scored by three voters. a beats b (voters 1, 2), a beats c (1, 2), c beats b (1, 3).
    scores = [[3.0, 1.0, 2.0],   # voter 1: a > c > b
              [3.0, 2.0, 1.0],   # voter 2: a > b > c
              [1.0, 2.0, 3.0]]   # voter 3: c > b > a
    assert screens.vote_wins(scores) == [2, 0, 1]
    # A tie is no vote for either side; NaN is below every number.
    assert screens.vote_wins([[1.0, 1.0], [2.0, 1.0], [float("nan"), 0.0]]) == [0, 0]
    assert screens.vote_wins([[1.0, 1.0], [2.0, 1.0], [1.0, float("nan")]]) == [1, 0]


def test_the_vote_ranks_by_synflow_jacob_cov_and_snip():
    assert screens.VOTERS == ("synflow", "jacob_cov", "snip")
    assert screens.computed_by("vote") == screens.VOTERS and screens.computed_by("snip") == ("snip",)
    with pytest.raises(ValueError, match="allowed: synflow, jacob_cov, grad_norm, snip, params, macs, vote"):
        screens.computed_by("fisher")


TINY = models.ArchSpec(stages=(models.StageSpec(depth=1, width=8, stride=1), models.StageSpec(depth=1, width=16,
                                                                                               stride=2)),
                       stem="cifar", stem_width=8, num_classes=10)
WIDER = TINY.replace(stages=(models.StageSpec(depth=1, width=16, stride=1), models.StageSpec(depth=2, width=16,
                                                                                              stride=2)))


@pytest.fixture(scope="module")
def batches() -> list[screens.Batch]:
    splits = imagefeed.load(DataSettings(dataset="synthetic", synthetic_train=160, synthetic_test=16))
    return screens.scoring_batches(splits, 2, seed=0, batch_size=32)


def test_every_proxy_is_deterministic_under_its_seed(batches):
    names = list(screens.PROXIES)
    first = screens.architecture_scores(TINY, 0, names, batches, 32)
    assert screens.architecture_scores(TINY, 0, names, batches, 32) == first
    other = screens.architecture_scores(TINY, 1, names, batches, 32)
    for name in ("synflow", "jacob_cov", "grad_norm", "snip"):  # another initialisation, another score
        assert other[name] != first[name], name
    assert (other["params"], other["macs"]) == (first["params"], first["macs"])
    # The screen leaves the global RNG as it found it.
    torch.manual_seed(7)
    expected = torch.rand(1)
    torch.manual_seed(7)
    screens.architecture_scores(TINY, 0, names, batches, 32)
    assert torch.equal(torch.rand(1), expected)


def test_the_scored_network_is_the_one_its_trial_starts_from():
    # search.train.fit seeds torch with the trial's seed, then builds: the screen scores those very weights.
    torch.manual_seed(5)
    trained_from = models.build(TINY)
    screened = screens.initialised(TINY, 5)
    assert all(torch.equal(a, b) for a, b in zip(trained_from.state_dict().values(), screened.state_dict().values()))


def test_params_and_macs_are_the_complexity_counters(batches):
    scores = screens.architecture_scores(WIDER, 0, ["params", "macs"], batches, 32)
    assert scores["params"] == sum(p.numel() for p in models.build(WIDER).parameters())
    assert scores["macs"] == models.complexity(WIDER, 32).macs


def test_scoring_batches_are_a_seeded_draw_of_normalised_training_images():
    splits = imagefeed.load(DataSettings(dataset="synthetic", synthetic_train=100, synthetic_test=16))
    drawn = screens.scoring_batches(splits, 2, seed=3, batch_size=32)
    assert [tuple(images.shape) for images, _ in drawn] == [(32, 3, 32, 32)] * 2
    again = screens.scoring_batches(splits, 2, seed=3, batch_size=32)
    assert all(torch.equal(a[0], b[0]) and torch.equal(a[1], b[1]) for a, b in zip(drawn, again))
    assert not torch.equal(screens.scoring_batches(splits, 1, seed=4, batch_size=32)[0][0], drawn[0][0])
    # The training split only, normalised as training normalises it (no crop, no flip).
    order = torch.randperm(len(splits.train_x), generator=torch.Generator().manual_seed(3))[:32]
    normalize = imagefeed.BatchAugment(crop_padding=0, flip=False, mean=splits.mean, std=splits.std)
    assert torch.equal(drawn[0][0], normalize.normalize_only(splits.train_x[order]))
    assert torch.equal(drawn[0][1], splits.train_y[order])
    with pytest.raises(ValueError, match="batches: got 0"):
        screens.scoring_batches(splits, 0, seed=3)


@pytest.mark.parametrize("keep, drawn", [(1, 1), (0.5, 2), (0.3, 4), (0.25, 4), (0.1, 10)])
def test_a_screen_draws_ceil_one_over_keep_candidates(keep, drawn):
    assert screens.candidates_per_trial(keep) == drawn


def test_the_screen_keeps_the_best_candidate(batches):
    screen = screens.ProxyScreen("params", 0.5, tuple(batches), 32)
    plans = [{"spec": spec.to_dict(), "train": {"seed": 0}} for spec in (TINY, WIDER, TINY)]
    best, scores = screen.choose(plans)
    assert best == 1 and [s["params"] for s in scores] == [models.complexity(s, 32).params for s in (TINY, WIDER, TINY)]
    assert "screened out by params" in screen.rejection(scores[0], scores[1], 3)
    vote = screens.ProxyScreen("vote", 0.5, tuple(batches), 32)
    best, scores = vote.choose(plans)
    assert set(scores[0]) == {"synflow", "jacob_cov", "snip", "vote"}
    assert [s["vote"] for s in scores] == screens.vote_wins([[s[n] for s in scores] for n in screens.VOTERS])
    assert scores[best]["vote"] == max(s["vote"] for s in scores)
    # A NaN score ranks last; a tie goes to the candidate drawn first.
    assert screens.best_candidate("snip", [{"snip": math.nan}, {"snip": 1.0}, {"snip": 1.0}]) == 1
