"""Concrete (nothing searched) training and data settings of one trial, and the tables their names choose from.

A study file may search any of these fields; sampling resolves them into these
frozen dataclasses, which travel with the ArchSpec to the trainer and into
every results row.

`OPTIMIZERS` and `SCHEDULES` are the one place those names are written: the
settings and the study schema allow exactly their keys, and `search.train`
looks the implementations up here. Adding an optimizer touches its function
and one table row. Dataset names, their class counts, natural image sizes and
normalisations come from imagefeed's `DATASET_KINDS` and `NORMALIZATIONS`.
"""

from __future__ import annotations

import dataclasses
import math
from dataclasses import dataclass
from typing import Any, Callable, Mapping, TypeVar

import torch
from torch import nn

from imagefeed import DATASET_KINDS, NORMALIZATIONS
from models import SpecError


# ---------------------------------------------------------------- optimizers
def _sgd(params: list[nn.Parameter], train: TrainSettings) -> torch.optim.Optimizer:
    return torch.optim.SGD(params, lr=train.lr, momentum=train.momentum,
                           nesterov=train.nesterov, weight_decay=train.weight_decay)


def _adamw(params: list[nn.Parameter], train: TrainSettings) -> torch.optim.Optimizer:
    return torch.optim.AdamW(params, lr=train.lr, weight_decay=train.weight_decay)


# TrainSettings.optimizer -> (parameters, settings) -> optimizer.
OPTIMIZERS: dict[str, Callable[[list[nn.Parameter], TrainSettings], torch.optim.Optimizer]] = {
    "sgd": _sgd,
    "adamw": _adamw,
}


# ------------------------------------------------------------- LR schedules
def _step_factor(progress: float, train: TrainSettings) -> float:
    # The paper divides the rate by 10 at 32k and 48k of 64k iterations.
    return train.gamma ** sum(progress >= m for m in train.milestones)


def _cosine_factor(progress: float, train: TrainSettings) -> float:
    # Loshchilov & Hutter 2017 (SGDR, arXiv 1608.03983), without restarts.
    return 0.5 * (1.0 + math.cos(math.pi * progress))


def _constant_factor(progress: float, train: TrainSettings) -> float:
    return 1.0


# TrainSettings.schedule -> (progress in [0, 1] after warm-up, settings) -> multiplier of train.lr.
SCHEDULES: dict[str, Callable[[float, TrainSettings], float]] = {
    "step": _step_factor,
    "cosine": _cosine_factor,
    "constant": _constant_factor,
}


# ------------------------------------------------------------------ settings
AMP_MODES = ("auto", "bf16", "off")
# DataSettings.dataset -> what the network must match: its class count (None: as many as the data has, so
# space.num_classes must say it) and natural input side. Derived from imagefeed's registry, their one home.
DATASET_CLASSES: dict[str, int | None] = {name: kind.num_classes for name, kind in DATASET_KINDS.items()}
DATASET_IMAGE_SIZE = {name: kind.image_size for name, kind in DATASET_KINDS.items()}
DATASET_NAMES = tuple(DATASET_KINDS)
MAX_IMAGE_SIZE = 1024  # a training crop larger than any ImageNet-class recipe uses

_Settings = TypeVar("_Settings", bound="_Serialisable")


class _Serialisable:
    """to_dict/from_dict for flat frozen dataclasses whose tuples become lists."""

    def to_dict(self) -> dict[str, Any]:
        """Plain types only (tuples become lists)."""
        return {k: list(v) if isinstance(v, tuple) else v
                for k, v in dataclasses.asdict(self).items()}  # type: ignore[call-overload]

    @classmethod
    def from_dict(cls: type[_Settings], data: Mapping[str, Any]) -> _Settings:
        """Inverse of `to_dict`; unknown keys are an error."""
        known = {f.name for f in dataclasses.fields(cls)}  # type: ignore[arg-type]
        unknown = sorted(set(data) - known)
        if unknown:
            raise SpecError((unknown[0],), data[unknown[0]], ", ".join(sorted(known)),
                            what=f"unknown {cls.__name__} field")
        values = {k: tuple(v) if isinstance(v, list) else v for k, v in data.items()}
        return cls(**values)

    def replace(self: _Settings, **changes: Any) -> _Settings:
        """A copy with some fields changed."""
        return dataclasses.replace(self, **changes)  # type: ignore[type-var]


def _check(ok: bool, name: str, given: Any, allowed: str) -> None:
    """Raise the SpecError ("name: got X; allowed: Y") that ArchSpec's checks raise too."""
    if not ok:
        raise SpecError((name,), given, allowed)


@dataclass(frozen=True)
class TrainSettings(_Serialisable):
    """How one architecture is trained. Defaults are the paper's CIFAR recipe (Sec. 4.2)."""

    epochs: int = 164                      # 64k iterations at batch 128 on 45k images
    batch_size: int = 128
    optimizer: str = "sgd"
    lr: float = 0.1
    momentum: float = 0.9
    nesterov: bool = False
    weight_decay: float = 1e-4
    schedule: str = "step"
    milestones: tuple[float, ...] = (0.5, 0.75)   # lr /10 at 32k and 48k of 64k iterations
    gamma: float = 0.1
    warmup_epochs: float = 0.0             # the paper warms ResNet-110 up at lr 0.01; linear here
    label_smoothing: float = 0.0
    seed: int = 0
    channels_last: bool = True             # faster convs on CPU (oneDNN) and GPU tensor cores
    amp: str = "auto"                      # auto = bf16 autocast on CUDA, fp32 on CPU
    max_threads: int | None = None         # torch intra-op threads; None = what the runner gives

    def __post_init__(self) -> None:
        _check(isinstance(self.epochs, int) and self.epochs >= 1, "epochs", self.epochs, "an integer >= 1")
        _check(isinstance(self.batch_size, int) and self.batch_size >= 1, "batch_size",
               self.batch_size, "an integer >= 1")
        _check(self.optimizer in OPTIMIZERS, "optimizer", self.optimizer, ", ".join(OPTIMIZERS))
        _check(self.lr > 0, "lr", self.lr, "a number > 0")
        _check(0 <= self.momentum < 1, "momentum", self.momentum, "a number in [0, 1)")
        _check(self.weight_decay >= 0, "weight_decay", self.weight_decay, "a number >= 0")
        _check(self.schedule in SCHEDULES, "schedule", self.schedule, ", ".join(SCHEDULES))
        _check(all(0 < m < 1 for m in self.milestones) and list(self.milestones) == sorted(self.milestones),
               "milestones", self.milestones, "increasing fractions of the epochs, each in (0, 1)")
        _check(0 < self.gamma <= 1, "gamma", self.gamma, "a number in (0, 1]")
        _check(0 <= self.warmup_epochs < self.epochs, "warmup_epochs", self.warmup_epochs,
               f"a number in [0, epochs={self.epochs})")
        _check(0 <= self.label_smoothing < 1, "label_smoothing", self.label_smoothing, "a number in [0, 1)")
        _check(self.amp in AMP_MODES, "amp", self.amp, ", ".join(AMP_MODES))
        _check(self.max_threads is None or (isinstance(self.max_threads, int) and self.max_threads >= 1),
               "max_threads", self.max_threads, "null or an integer >= 1")
        _check(not (self.nesterov and self.optimizer != "sgd"), "nesterov", self.nesterov,
               "false unless optimizer is sgd")


@dataclass(frozen=True)
class DataSettings(_Serialisable):
    """Which images a trial sees and how they are split, augmented and normalised."""

    dataset: str = "cifar10"
    root: str | None = None                # None: the small CIFAR-10 sample shipped in the package
    download: bool = False
    val_fraction: float = 0.1              # held out of the training set; selection never sees test
    split_seed: int = 0                    # fixed: every trial of a study sees the same split
    crop_padding: int = 4                  # the paper's 4-pixel-padded random crop (whole-tensor kinds); 0 = off
    flip: bool = True
    normalize: str | None = None           # None: the kind's (cifar for CIFAR, imagenet for ImageNet kinds)
    image_size: int | None = None          # training crop side; None: the kind's natural size (32, 64, 224)
    train_limit: int | None = None         # first N training images only, for CPU budgets
    synthetic_train: int = 512
    synthetic_test: int = 128

    def __post_init__(self) -> None:
        _check(self.dataset in DATASET_NAMES, "dataset", self.dataset, ", ".join(DATASET_NAMES))
        kind = DATASET_KINDS[self.dataset]
        # Resolved here, so every reader of the settings (run.json, checkpoints, the trainer) sees one value.
        if self.normalize is None:
            object.__setattr__(self, "normalize", kind.normalize)
        if self.image_size is None:
            object.__setattr__(self, "image_size", kind.image_size)
        sizes = kind.image_sizes
        _check(isinstance(self.image_size, int) and 8 <= self.image_size <= MAX_IMAGE_SIZE
               and (sizes is None or self.image_size in sizes), "image_size", self.image_size,
               f"one of {', '.join(map(str, sizes))} ({kind.title} is stored at that size)" if sizes
               else f"an integer in [8, {MAX_IMAGE_SIZE}]")
        _check(0 < self.val_fraction < 1, "val_fraction", self.val_fraction, "a number in (0, 1)")
        _check(isinstance(self.crop_padding, int) and self.crop_padding >= 0, "crop_padding",
               self.crop_padding, "an integer >= 0")
        _check(self.normalize in NORMALIZATIONS, "normalize", self.normalize, ", ".join(NORMALIZATIONS))
        _check(self.train_limit is None or (isinstance(self.train_limit, int) and self.train_limit >= 1),
               "train_limit", self.train_limit, "null or an integer >= 1")
        _check(isinstance(self.synthetic_train, int) and self.synthetic_train >= 10, "synthetic_train",
               self.synthetic_train, "an integer >= 10")
        _check(isinstance(self.synthetic_test, int) and self.synthetic_test >= 10, "synthetic_test",
               self.synthetic_test, "an integer >= 10")
