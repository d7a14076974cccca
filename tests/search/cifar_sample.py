"""What the trainer's CPU stand-in tests share: a slice of real CIFAR-10 and fp32 that stays fp32 on CUDA.

A test module imports `exact_fp32` and `splits` (pytest finds fixtures a module imports) and trains on
`DATA` with `splits`.
"""

from __future__ import annotations

import dataclasses

import pytest
import torch

import imagefeed
from space import DataSettings

DATA = DataSettings(train_limit=128)  # real CIFAR-10: the embedded sample, 128 training images, crops and flips
EVAL_IMAGES = 64  # of its validation and test images: one evaluation batch each, to keep the tests to seconds


@pytest.fixture(autouse=True)
def exact_fp32():
    """fp32 convolutions in fp32 on CUDA too: cuDNN's default TF32 rounds their inputs to 10 bits, which would
    blur the comparison (nothing changes on the CPU)."""
    allowed = torch.backends.cudnn.allow_tf32
    torch.backends.cudnn.allow_tf32 = False
    yield
    torch.backends.cudnn.allow_tf32 = allowed


@pytest.fixture(scope="module")
def splits() -> imagefeed.DatasetSplits:
    whole = imagefeed.load(DATA)
    return dataclasses.replace(whole, val_x=whole.val_x[:EVAL_IMAGES], val_y=whole.val_y[:EVAL_IMAGES],
                               test_x=whole.test_x[:EVAL_IMAGES], test_y=whole.test_y[:EVAL_IMAGES])
