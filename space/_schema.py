"""The study schema: pydantic models for every section of a study file.

Each field takes its rule and, where it may be searched, its searched forms
from `_forms`, so ``shortcut: {choice: [A, E]}`` fails on ``E`` before any
trial runs. Names chosen from a table (blocks, stems, optimizers, samplers,
...) are allowed exactly when they are keys of the table that implements them.

Models are strict (``epochs: "5"`` is text, not a number) and forbid unknown
keys; the loader turns pydantic's errors into one-line messages with the
file and line.
"""

from __future__ import annotations

import difflib
import re
from typing import Annotated, Any, Literal

from pydantic import AfterValidator, Field, ValidationInfo, field_validator

from models import BLOCKS, BOTTLENECK_STRIDES, SHORTCUTS, STEMS, presets

from ._forms import (NonNegativeFloat, NonNegativeInt, PositiveFloat, PositiveInt, StrictModel, categorical, integer,
                     interval, one_of, real, rule_error)
from ._matching import KNOBS, MATCH_METRICS
from ._optuna_samplers import SAMPLERS
from ._settings import (AMP_MODES, DATASET_NAMES, NORMALIZATIONS, OPTIMIZERS, SCHEDULES, DataSettings,
                        TrainSettings)

METRICS = ("val_acc", "macs", "params")
MODES = ("max", "min")
STRATEGIES = ("grid", "optuna")
SCHEDULERS = ("none", "asha")

# What the network must match for each dataset: its class count and input side.
DATASET_CLASSES = {"cifar10": 10, "cifar100": 100, "synthetic": 10}
DATASET_IMAGE_SIZE = {"cifar10": 32, "cifar100": 32, "synthetic": 32}

_TRAIN_DEFAULTS = TrainSettings()
_DATA_DEFAULTS = DataSettings()

Stride = one_of(int, 1, 2)


def _check_preset(name: str) -> str:
    if name not in presets():
        close = difflib.get_close_matches(name, presets(), n=3)
        hint = f" (did you mean {' or '.join(map(repr, close))}?)" if close else ""
        raise rule_error(f"unknown preset{hint}", ", ".join(presets()))
    return name


def _check_study_name(name: str) -> str:
    if not re.fullmatch(r"[a-z0-9_-]+", name):
        raise rule_error("not a usable name (it names the run folder)",
                         "lowercase letters, digits, '_' and '-'")
    return name


def _check_question(text: str) -> str:
    if not text.strip():
        raise rule_error("is empty", "the question the study answers, as text")
    return text


# ----------------------------------------------------------------- sections
class DataSection(StrictModel):
    """`data`: every field of DataSettings, fixed (a study compares models on one split)."""

    dataset: Literal[DATASET_NAMES] = _DATA_DEFAULTS.dataset  # type: ignore[valid-type]
    root: str | None = _DATA_DEFAULTS.root
    download: bool = _DATA_DEFAULTS.download
    val_fraction: interval(float, 0, 1, low_open=True, high_open=True) = _DATA_DEFAULTS.val_fraction  # type: ignore[valid-type]
    split_seed: NonNegativeInt = _DATA_DEFAULTS.split_seed  # type: ignore[valid-type]
    crop_padding: NonNegativeInt = _DATA_DEFAULTS.crop_padding  # type: ignore[valid-type]
    flip: bool = _DATA_DEFAULTS.flip
    normalize: Literal[tuple(NORMALIZATIONS)] = _DATA_DEFAULTS.normalize  # type: ignore[valid-type]
    train_limit: PositiveInt | None = _DATA_DEFAULTS.train_limit  # type: ignore[valid-type]
    synthetic_train: interval(int, 10) = _DATA_DEFAULTS.synthetic_train  # type: ignore[valid-type]
    synthetic_test: interval(int, 10) = _DATA_DEFAULTS.synthetic_test  # type: ignore[valid-type]


class Constraints(StrictModel):
    """Bounds on params and MACs; a sampled spec outside them is rejected before training."""

    max_params: PositiveFloat | None = None  # type: ignore[valid-type]
    max_macs: PositiveFloat | None = None  # type: ignore[valid-type]
    min_params: PositiveFloat | None = None  # type: ignore[valid-type]
    min_macs: PositiveFloat | None = None  # type: ignore[valid-type]

    @field_validator("min_params", "min_macs")
    @classmethod
    def _below_max(cls, value: float | None, info: ValidationInfo) -> float | None:
        upper_name = "max_" + info.field_name.removeprefix("min_")  # type: ignore[union-attr]
        upper = info.data.get(upper_name)
        if value is not None and upper is not None and value > upper:
            raise rule_error(f"`{info.field_name} <= {upper_name}` must hold, but got "
                             f"({info.field_name}={value:g}, {upper_name}={upper:g})", show_input=False)
        return value

    def bounds(self) -> dict[str, float]:
        """The constraints that are set, name -> value."""
        return {name: value for name, value in self.model_dump().items() if value is not None}


class MatchComplexity(StrictModel):
    """`space.match_complexity`: every point at its target's cost, by solving one knob (rules in `_matching`)."""

    by: Literal[MATCH_METRICS] = "macs"  # type: ignore[valid-type]  # "at equal FLOPs" is the usual question
    adjust: Literal[tuple(KNOBS)] = "width_multiplier"  # type: ignore[valid-type]  # works for every block
    # 1%: a ResNet-20's MACs move by about that much per channel of its last stage.
    tolerance: interval(float, 0, 1, low_open=True, high_open=True) = 0.01  # type: ignore[valid-type]
    to: PositiveFloat | None = None  # type: ignore[valid-type]  # a fixed target; None: each point's reference


class StageSection(StrictModel):
    """One entry of `space.stages`; a field left out comes from `space.base`."""

    depth: integer(PositiveInt) | None = None  # type: ignore[valid-type]
    width: integer(PositiveInt) | None = None  # type: ignore[valid-type]
    stride: categorical(Stride) | None = None  # type: ignore[valid-type]


# The ArchSpec fields a study may search, in the order trials suggest them:
# `block` comes before the fields that only bottleneck blocks have.
ARCH_FIELDS = ("stem", "stem_width", "block", "shortcut", "bottleneck_ratio", "groups",
               "bottleneck_stride", "zero_init_residual")
# Only bottleneck blocks have an inner width to scale, groups to split or a 1x1 to stride.
BOTTLENECK_ONLY = ("bottleneck_ratio", "groups", "bottleneck_stride")
CONVENIENCE_FIELDS = ("blocks_per_stage", "width_multiplier")


class SpaceSection(StrictModel):
    """`space`: the architecture space; each ArchSpec field fixed or searched."""

    base: Annotated[str, AfterValidator(_check_preset)] | None = None
    stem: categorical(Literal[STEMS]) | None = None  # type: ignore[valid-type]
    stem_width: integer(PositiveInt) | None = None  # type: ignore[valid-type]
    block: categorical(Literal[BLOCKS]) | None = None  # type: ignore[valid-type]
    shortcut: categorical(Literal[SHORTCUTS]) | None = None  # type: ignore[valid-type]
    bottleneck_ratio: real(interval(float, 0, 4, low_open=True)) | None = None  # type: ignore[valid-type]
    groups: integer(PositiveInt) | None = None  # type: ignore[valid-type]
    bottleneck_stride: categorical(Literal[BOTTLENECK_STRIDES]) | None = None  # type: ignore[valid-type]
    zero_init_residual: categorical(bool) | None = None  # type: ignore[valid-type]
    # Conveniences: one value for every stage (depth) or every width (a multiplier).
    blocks_per_stage: integer(PositiveInt) | None = None  # type: ignore[valid-type]
    width_multiplier: real(PositiveFloat) | None = None  # type: ignore[valid-type]
    stages: Annotated[list[StageSection], Field(min_length=1)] | None = None
    # Fixed: they follow the data, not the design (None = from the dataset / base).
    num_classes: PositiveInt | None = None  # type: ignore[valid-type]
    in_channels: PositiveInt | None = None  # type: ignore[valid-type]
    constraints: Constraints = Constraints()
    match_complexity: MatchComplexity | None = None


def _seed_comes_from_search(value: Any) -> Any:
    raise rule_error("the training seed is set by search.seeds (each point runs once per seed)",
                     "leave train.seed out; write search.seeds: [0, 1, 2] or search.repeats: 3")


class TrainSection(StrictModel):
    """`train`: every field of TrainSettings except the seed, each fixed or searched."""

    epochs: integer(PositiveInt) = _TRAIN_DEFAULTS.epochs  # type: ignore[valid-type]
    batch_size: integer(PositiveInt) = _TRAIN_DEFAULTS.batch_size  # type: ignore[valid-type]
    optimizer: categorical(Literal[tuple(OPTIMIZERS)]) = _TRAIN_DEFAULTS.optimizer  # type: ignore[valid-type]
    lr: real(PositiveFloat) = _TRAIN_DEFAULTS.lr  # type: ignore[valid-type]
    momentum: real(interval(float, 0, 1, high_open=True)) = _TRAIN_DEFAULTS.momentum  # type: ignore[valid-type]
    nesterov: categorical(bool) = _TRAIN_DEFAULTS.nesterov  # type: ignore[valid-type]
    weight_decay: real(NonNegativeFloat) = _TRAIN_DEFAULTS.weight_decay  # type: ignore[valid-type]
    schedule: categorical(Literal[tuple(SCHEDULES)]) = _TRAIN_DEFAULTS.schedule  # type: ignore[valid-type]
    milestones: list[interval(float, 0, 1, low_open=True, high_open=True)] = \
        list(_TRAIN_DEFAULTS.milestones)  # type: ignore[valid-type]
    gamma: real(interval(float, 0, 1, low_open=True)) = _TRAIN_DEFAULTS.gamma  # type: ignore[valid-type]
    warmup_epochs: real(NonNegativeFloat) = _TRAIN_DEFAULTS.warmup_epochs  # type: ignore[valid-type]
    label_smoothing: real(interval(float, 0, 1, high_open=True)) = \
        _TRAIN_DEFAULTS.label_smoothing  # type: ignore[valid-type]
    channels_last: categorical(bool) = _TRAIN_DEFAULTS.channels_last  # type: ignore[valid-type]
    amp: categorical(Literal[AMP_MODES]) = _TRAIN_DEFAULTS.amp  # type: ignore[valid-type]
    max_threads: PositiveInt | None = _TRAIN_DEFAULTS.max_threads  # type: ignore[valid-type]
    seed: Annotated[Any, AfterValidator(_seed_comes_from_search)] = None

    @field_validator("milestones")
    @classmethod
    def _increasing(cls, milestones: list[float]) -> list[float]:
        if milestones != sorted(milestones):
            raise rule_error("milestones must increase", "increasing fractions of the epochs, each in (0, 1)")
        return milestones


TRAIN_FIELDS = tuple(name for name in TrainSection.model_fields if name != "seed")


def _parse_objective(value: Any) -> tuple[str, str]:
    if not isinstance(value, str):
        raise rule_error("an objective is text 'metric:mode'", "e.g. val_acc:max or macs:min")
    metric, _, mode = value.partition(":")
    if metric not in METRICS:
        raise rule_error(f"unknown metric {metric!r}", ", ".join(f"{m}:max or {m}:min" for m in METRICS))
    if mode not in MODES:
        raise rule_error(f"unknown mode {mode!r} for {metric}", f"{metric}:max or {metric}:min")
    return (metric, mode)


class Asha(StrictModel):
    """ASHA early stopping on val_acc (Li et al. 2018, arXiv 1810.05934)."""

    grace_period: PositiveInt = 1  # type: ignore[valid-type]
    reduction_factor: interval(float, 1, low_open=True) = 3  # type: ignore[valid-type]


class Resources(StrictModel):
    """What one trial holds; gpus below 1 let several trials share one GPU."""

    cpus: PositiveFloat = 1.0  # type: ignore[valid-type]
    gpus: NonNegativeFloat = 0.0  # type: ignore[valid-type]

    @field_validator("gpus")
    @classmethod
    def _whole_above_one(cls, gpus: float) -> float:
        # Ray packs fractions of one GPU, never fractions spread over several.
        if gpus > 1 and gpus != int(gpus):
            raise rule_error("a trial can share one GPU or hold whole GPUs", "a fraction <= 1 or a whole number")
        return gpus


class SearchSection(StrictModel):
    """`search`: how points are chosen, what is optimised, and what each trial may use."""

    strategy: Literal[STRATEGIES] = "grid"  # type: ignore[valid-type]
    sampler: Literal[tuple(SAMPLERS)] = "tpe"  # type: ignore[valid-type]
    # Parsed from "metric:mode" text into (metric, mode) pairs.
    objectives: Annotated[list[Annotated[Any, AfterValidator(_parse_objective)]],
                          Field(min_length=1)] = [("val_acc", "max")]
    trials: PositiveInt | None = None  # type: ignore[valid-type]
    seeds: Annotated[list[NonNegativeInt], Field(min_length=1)] | None = None  # type: ignore[valid-type]
    repeats: PositiveInt | None = None  # type: ignore[valid-type]
    sampler_seed: NonNegativeInt = 0  # type: ignore[valid-type]
    scheduler: Literal[SCHEDULERS] = "none"  # type: ignore[valid-type]
    asha: Asha | None = None
    resources: Resources = Resources()
    max_concurrent: PositiveInt | None = None  # type: ignore[valid-type]
    keep_checkpoints: interval(int, -1) = 3  # type: ignore[valid-type]
    storage: str | None = None

    @field_validator("objectives", mode="before")
    @classmethod
    def _one_objective_may_be_text(cls, value: Any) -> Any:
        # `objectives: val_acc:max` is one objective; a list is the general form.
        return [value] if isinstance(value, str) else value

    @field_validator("objectives")
    @classmethod
    def _distinct_metrics(cls, objectives: list[tuple[str, str]]) -> list[tuple[str, str]]:
        metrics = [metric for metric, _ in objectives]
        for metric in metrics:
            if metrics.count(metric) > 1:
                raise rule_error(f"metric {metric!r} appears twice", "each metric at most once")
        return objectives

    @field_validator("sampler")
    @classmethod
    def _sampler_needs_optuna(cls, sampler: str, info: ValidationInfo) -> str:
        if info.data.get("strategy") != "optuna":
            raise rule_error("a sampler only applies to strategy optuna (a grid visits every point)",
                             "leave sampler out, or set strategy: optuna")
        return sampler

    @field_validator("seeds")
    @classmethod
    def _distinct_seeds(cls, seeds: list[int]) -> list[int]:
        if len(set(seeds)) != len(seeds):
            raise rule_error("seeds repeat", "distinct seeds")
        return seeds

    @field_validator("repeats")
    @classmethod
    def _seeds_or_repeats(cls, repeats: int, info: ValidationInfo) -> int:
        if info.data.get("seeds") is not None:
            raise rule_error("give search.seeds or search.repeats, not both",
                             "seeds: [0, 1, 2] or repeats: 3")
        return repeats

    @field_validator("asha")
    @classmethod
    def _asha_needs_scheduler(cls, asha: Asha, info: ValidationInfo) -> Asha:
        if info.data.get("scheduler") != "asha":
            raise rule_error("asha settings only apply with scheduler: asha",
                             "leave asha out, or set scheduler: asha")
        return asha


class ReportSection(StrictModel):
    """`report`: what the report is asked to resolve."""

    # The smallest accuracy difference worth resolving (a fraction: 0.01 = 1 pp); the power
    # analysis says how many seeds per level would detect it.
    target_effect: interval(float, 0, 1, low_open=True, high_open=True) = 0.01  # type: ignore[valid-type]


class StudyModel(StrictModel):
    """A whole study file: the question, the data, the space, the training and the search."""

    name: Annotated[str, AfterValidator(_check_study_name)]
    question: Annotated[str, AfterValidator(_check_question)]
    data: DataSection = DataSection()
    space: SpaceSection
    train: TrainSection = TrainSection()
    search: SearchSection = SearchSection()
    report: ReportSection = ReportSection()

