"""Zero-cost proxies on a network at initialisation: each a function of the module and a batch or two.

Each follows Abdelfattah et al., "Zero-Cost Proxies for Lightweight NAS"
(ICLR 2021, arXiv 2101.08134) and its reference implementation
(github.com/SamsungLabs/zero-cost-nas, `foresight/pruners`), whose choices are
kept and stated here:

- The per-weight proxies (synflow, grad_norm, snip) are summed over the
  weights of every Conv2d and Linear layer, biases and norms left out, as the
  reference's `get_layer_metric_array` and `sum_arr` do.
- The network is in training mode: BatchNorm normalises with the batch's own
  statistics (the reference's `model.train()`), except in synflow, whose
  copy has every BatchNorm replaced by the identity (the reference's
  `copynet(bn=False)`): a batch of one constant image has no variance to
  normalise by.
- The loss is cross-entropy; with several batches, the gradients of their
  losses are summed, as the reference sums those of the parts of its batch
  (`split_data`).

Higher is better for every proxy here, as the paper ranks them.
"""

from __future__ import annotations

import copy
import math
from typing import Sequence

import numpy as np
import torch
import torch.nn.functional as F
from torch import nn

# (normalised images, labels) of one scoring batch
Batch = tuple[torch.Tensor, torch.Tensor]

# Mellor et al.'s k: keeps log and 1/x finite at the eigenvalues of a singular correlation matrix.
JACOB_COV_K = 1e-5


def weighted_layers(net: nn.Module) -> list[nn.Module]:
    """The layers a per-weight proxy sums over: every Conv2d and Linear (the reference's prunable layers)."""
    return [module for module in net.modules() if isinstance(module, (nn.Conv2d, nn.Linear))]


def _loss_gradients(net: nn.Module, batches: Sequence[Batch]) -> list[nn.Module]:
    """Backpropagate the cross-entropy of each batch into the weights (summed); the layers that hold them."""
    net.train()
    net.zero_grad(set_to_none=True)
    for images, labels in batches:
        F.cross_entropy(net(images), labels).backward()
    return weighted_layers(net)


def grad_norm(net: nn.Module, batches: Sequence[Batch]) -> float:
    """sum over layers of ||dL/dW||_2 (Frobenius norm per layer): Abdelfattah et al.'s grad_norm."""
    return float(sum(float(layer.weight.grad.norm()) for layer in _loss_gradients(net, batches)
                     if layer.weight.grad is not None))


def snip(net: nn.Module, batches: Sequence[Batch]) -> float:
    """sum |W * dL/dW|: SNIP's connection sensitivity (Lee et al., ICLR 2019, arXiv 1810.02340), summed over weights.

    SNIP differentiates the loss by a mask c on each weight at c = 1, which is
    dL/dW * W; the reference computes it through such a mask, this directly.
    """
    return float(sum(float((layer.weight.detach() * layer.weight.grad).abs().sum())
                     for layer in _loss_gradients(net, batches) if layer.weight.grad is not None))


def _identity(inputs: torch.Tensor) -> torch.Tensor:
    return inputs


def synflow(net: nn.Module, image_shape: Sequence[int]) -> float:
    """SynFlow (Tanaka et al., NeurIPS 2020, arXiv 2006.05467), as Abdelfattah et al. score it.

    On a copy in double precision (the reference's `net.double()`: the flow
    through |W| of a deep network overflows float32) with every parameter and
    buffer made positive and every BatchNorm the identity, R = sum of the
    outputs for one all-ones image; the score is sum |W * dR/dW| over the
    weights. Needs no data: the image's shape only.
    """
    positive = copy.deepcopy(net).double()
    for module in positive.modules():
        if isinstance(module, nn.modules.batchnorm._BatchNorm):
            module.forward = _identity  # the reference's copynet(bn=False)
    with torch.no_grad():
        for tensor in positive.state_dict().values():
            tensor.abs_()
    positive.zero_grad(set_to_none=True)
    positive(torch.ones((1, *image_shape), dtype=torch.float64)).sum().backward()
    return float(sum(float((layer.weight.detach() * layer.weight.grad).abs().sum())
                     for layer in weighted_layers(positive) if layer.weight.grad is not None))


def jacob_cov(net: nn.Module, batches: Sequence[Batch]) -> float:
    """Mellor et al.'s score ("Neural Architecture Search without Training", arXiv 2006.04647 v1), as Abdelfattah et al.

    J holds one row per image: the gradient of the sum of the network's
    outputs with respect to that image (each batch forwarded as a whole). With
    lambda_i the eigenvalues of J's correlation matrix and k = 1e-5, the score is
    -sum_i (log(lambda_i + k) + 1 / (lambda_i + k)): highest when the images'
    gradients are uncorrelated. The matrix is symmetric, so its eigenvalues
    come from `eigvalsh` (the reference's general `eig` gives the same, up to
    rounding, with complex parts of zero). NaN where a row of J is constant (a
    network that passes no gradient to its input), as the reference's
    exception gives.
    """
    net.train()
    net.zero_grad(set_to_none=True)
    rows = []
    for images, _ in batches:
        images = images.detach().clone().requires_grad_(True)
        outputs = net(images)
        outputs.backward(torch.ones_like(outputs))
        rows.append(images.grad.reshape(len(images), -1))
    jacobian = torch.cat(rows).double().cpu().numpy()
    with np.errstate(divide="ignore", invalid="ignore"):
        correlation = np.corrcoef(jacobian)
    if not np.all(np.isfinite(correlation)):
        return math.nan
    eigenvalues = np.linalg.eigvalsh(correlation)
    with np.errstate(divide="ignore", invalid="ignore"):
        score = -np.sum(np.log(eigenvalues + JACOB_COV_K) + 1.0 / (eigenvalues + JACOB_COV_K))
    return float(score) if np.isfinite(score) else math.nan


def vote_wins(scores: Sequence[Sequence[float]]) -> list[int]:
    """For each candidate, how many others it beats by pairwise majority of the voters (a Copeland score).

    `scores[v][i]` is voter v's score of candidate i (higher better). Candidate
    i beats j when more than half of the voters score i strictly above j: the
    rule of Abdelfattah et al.'s "vote" (synflow, jacob_cov and snip; their
    notebook nasbench201_correlations.ipynb compares every pair of networks
    this way). A NaN score is below every number. The paper reports the vote
    as the fraction of pairs it orders like the accuracy; a screen needs a
    ranking of its candidates, so each is scored by the pairs it wins.
    """
    voters = [np.where(np.isnan(np.asarray(row, dtype=float)), -np.inf, np.asarray(row, dtype=float))
              for row in scores]
    count = len(voters[0]) if voters else 0
    wins = []
    for i in range(count):
        beaten = 0
        for j in range(count):
            if i != j and sum(1 for row in voters if row[i] > row[j]) > len(voters) / 2:
                beaten += 1
        wins.append(beaten)
    return wins
