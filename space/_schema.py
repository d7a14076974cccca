"""The study schema: pydantic models for every section of a study file.

Every value that may be searched has the same three searched forms,
``{choice: [..]}``, ``{int: [low, high], step, log}`` and ``{float: [low, high], step, log}``,
and each form checks its levels or endpoints with the field's own rule, so
``shortcut: {choice: [A, E]}`` fails on ``E`` before any trial runs.

Models are strict (``epochs: "5"`` is text, not a number) and forbid unknown
keys; the loader turns pydantic's errors into one-line messages with the
file and line.
"""

from __future__ import annotations

import difflib
import math
import re
from typing import Annotated, Any, Generic, Literal, TypeVar, Union

from pydantic import (AfterValidator, BaseModel, ConfigDict, Discriminator, Field, Tag,
                      ValidationInfo, field_validator, model_validator)
from pydantic_core import PydanticCustomError

from models import BLOCKS, BOTTLENECK_STRIDES, SHORTCUTS, STEMS, presets

from ._settings import (AMP_MODES, DATASET_NAMES, NORMALIZATIONS, OPTIMIZERS, SCHEDULES, DataSettings,
                        TrainSettings)

METRICS = ("val_acc", "macs", "params")
MODES = ("max", "min")
STRATEGIES = ("grid", "optuna")
SAMPLERS = ("tpe", "random", "nsga2", "qmc")
SCHEDULERS = ("none", "asha")

# What the network must match for each dataset: its class count and input side.
DATASET_CLASSES = {"cifar10": 10, "cifar100": 100, "synthetic": 10}
DATASET_IMAGE_SIZE = {"cifar10": 32, "cifar100": 32, "synthetic": 32}

_TRAIN_DEFAULTS = TrainSettings()
_DATA_DEFAULTS = DataSettings()

# The error type the loader formats as "<what>; got <value>; allowed: <allowed>".
RULE_ERROR = "study_rule"


def rule_error(what: str, allowed: str | None = None, show_input: bool = True) -> PydanticCustomError:
    """A validation error in the study message format (the loader adds path, file and line)."""
    return PydanticCustomError(RULE_ERROR, "{what}",
                               {"what": what, "allowed": allowed or "", "show_input": show_input})


# ---------------------------------------------------------------- value rules
def _number(kind: type, low: float | None = None, high: float | None = None, *,
            low_open: bool = False, high_open: bool = False) -> Any:
    """`kind` with an interval rule whose message states the whole interval, not one bound."""
    noun = "an integer" if kind is int else "a number"
    if low is not None and high is not None:
        allowed = f"{noun} in {'(' if low_open else '['}{low:g}, {high:g}{')' if high_open else ']'}"
    elif low is not None:
        allowed = f"{noun} {'>' if low_open else '>='} {low:g}"
    else:
        allowed = noun

    def check(value: Any) -> Any:
        above = low is None or (value > low if low_open else value >= low)
        below = high is None or (value < high if high_open else value <= high)
        if not (above and below):
            raise rule_error("out of range", allowed)
        return value

    return Annotated[kind, AfterValidator(check)]


def _one_of(kind: type, *levels: Any) -> Any:
    """`kind` restricted to `levels`; for numbers, where a Literal would also take True or 2.0."""
    allowed = " or ".join(repr(level) for level in levels)

    def check(value: Any) -> Any:
        if value not in levels:
            raise rule_error("not an allowed value", allowed)
        return value

    return Annotated[kind, AfterValidator(check)]


PositiveInt = _number(int, 1)
NonNegativeInt = _number(int, 0)
PositiveFloat = _number(float, 0, low_open=True)
NonNegativeFloat = _number(float, 0)
Stride = _one_of(int, 1, 2)


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


# -------------------------------------------------------------- searched forms
class _Section(BaseModel):
    # strict: `epochs: "5"` or `flip: "yes"` is a mistake to report, not to coerce;
    # frozen: a validated study never changes; no inf/nan in any number.
    model_config = ConfigDict(strict=True, extra="forbid", frozen=True, allow_inf_nan=False)


Level = TypeVar("Level")


class Choice(_Section, Generic[Level]):
    """A categorical search over the listed levels (the first is the reference level)."""

    choice: Annotated[list[Level], Field(min_length=1)]

    @field_validator("choice")
    @classmethod
    def _distinct(cls, levels: list[Any]) -> list[Any]:
        # A level listed twice would be drawn twice as often and repeat grid points.
        for index, level in enumerate(levels):
            if level in levels[:index]:
                raise rule_error(f"level {level!r} appears twice", "distinct levels")
        return levels


def _range_checks(low: float, high: float, step: float | None, log: bool, step_given: bool) -> None:
    """Optuna's rules for a numeric distribution, checked before any trial."""
    if not low <= high:
        raise rule_error(f"`low <= high` must hold, but got (low={low}, high={high})", show_input=False)
    if log and step_given:
        raise rule_error("`step` and `log` cannot be used together", "either a step or log: true",
                         show_input=False)
    if log and low <= 0:
        raise rule_error(f"`low > 0` must hold for a log range, but got (low={low})", show_input=False)
    if step is not None:
        steps = (high - low) / step
        if abs(steps - round(steps)) > 1e-9 * max(1.0, abs(steps)):
            raise rule_error(f"`high - low` must be a multiple of step, but got (low={low}, high={high}, "
                             f"step={step})", show_input=False)


class _Bounded:
    """`low` and `high` of the two-element `bounds` list that each range form declares."""

    @property
    def low(self) -> Any:
        """The lower end, included."""
        return self.bounds[0]

    @property
    def high(self) -> Any:
        """The upper end, included."""
        return self.bounds[1]


class IntRange(_Bounded, _Section, Generic[Level]):
    """An integer search over [low, high], by `step` or on a log scale."""

    bounds: Annotated[list[Level], Field(alias="int", min_length=2, max_length=2)]
    step: PositiveInt = 1
    log: bool = False

    @model_validator(mode="after")
    def _rules(self) -> "IntRange[Level]":
        _range_checks(self.low, self.high, self.step, self.log, "step" in self.model_fields_set)
        return self


class FloatRange(_Bounded, _Section, Generic[Level]):
    """A real-valued search over [low, high], continuous, by `step`, or on a log scale."""

    bounds: Annotated[list[Level], Field(alias="float", min_length=2, max_length=2)]
    step: PositiveFloat | None = None
    log: bool = False

    @model_validator(mode="after")
    def _rules(self) -> "FloatRange[Level]":
        _range_checks(self.low, self.high, self.step, self.log, self.step is not None)
        return self


class _UnknownForm(_Section):
    """A mapping that names no searched form, or several: kept to explain, never valid."""

    choice: Any = None
    int_: Any = Field(None, alias="int")
    float_: Any = Field(None, alias="float")
    step: Any = None
    log: Any = None

    @model_validator(mode="after")
    def _exactly_one(self) -> "_UnknownForm":
        raise rule_error("a searched value names exactly one of choice, int, float",
                         "{choice: [...]}, {int: [low, high]} or {float: [low, high]}")


# Any searched value, as the schema validated it.
Searched = Union[Choice[Any], IntRange[Any], FloatRange[Any]]

# Discriminator tags; the loader drops them from error locations.
FIXED, CHOICE, INT_RANGE, FLOAT_RANGE, UNKNOWN_FORM = "fixed value", "{choice}", "{int}", "{float}", "{form?}"
FORM_TAGS = (FIXED, CHOICE, INT_RANGE, FLOAT_RANGE, UNKNOWN_FORM)
FORM_SYNTAX = {FIXED: "a fixed value", CHOICE: "{choice: [...]}", INT_RANGE: "{int: [low, high]}",
               FLOAT_RANGE: "{float: [low, high]}"}


_FORM_KEYS = {"choice": CHOICE, "int": INT_RANGE, "float": FLOAT_RANGE}


def _form_of(value: Any) -> str:
    # No fixed value of any field is a mapping, so a mapping is always a searched form.
    if isinstance(value, dict):
        named = [tag for key, tag in _FORM_KEYS.items() if key in value]
        return named[0] if len(named) == 1 else UNKNOWN_FORM
    return FIXED


def _searchable(value: Any, *ranges: tuple[str, type]) -> Any:
    members = [Annotated[value, Tag(FIXED)], Annotated[Choice[value], Tag(CHOICE)],
               *(Annotated[form[value], Tag(tag)] for tag, form in ranges),
               Annotated[_UnknownForm, Tag(UNKNOWN_FORM)]]
    return Annotated[Union[tuple(members)], Discriminator(_form_of)]


def categorical(value: Any) -> Any:
    """A field that is fixed or a choice (block names, booleans, strides)."""
    return _searchable(value)


def integer(value: Any) -> Any:
    """An integer field: fixed, a choice, or an `int` range."""
    return _searchable(value, (INT_RANGE, IntRange))


def real(value: Any) -> Any:
    """A real-valued field: fixed, a choice, or a `float` range."""
    return _searchable(value, (FLOAT_RANGE, FloatRange))


def is_searched(value: Any) -> bool:
    """True for a Choice, IntRange or FloatRange; False for a fixed value."""
    return isinstance(value, (Choice, IntRange, FloatRange))


# ----------------------------------------------------------------- sections
class DataSection(_Section):
    """`data`: every field of DataSettings, fixed (a study compares models on one split)."""

    dataset: Literal[DATASET_NAMES] = _DATA_DEFAULTS.dataset  # type: ignore[valid-type]
    root: str | None = _DATA_DEFAULTS.root
    download: bool = _DATA_DEFAULTS.download
    val_fraction: _number(float, 0, 1, low_open=True, high_open=True) = _DATA_DEFAULTS.val_fraction  # type: ignore[valid-type]
    split_seed: NonNegativeInt = _DATA_DEFAULTS.split_seed  # type: ignore[valid-type]
    crop_padding: NonNegativeInt = _DATA_DEFAULTS.crop_padding  # type: ignore[valid-type]
    flip: bool = _DATA_DEFAULTS.flip
    normalize: Literal[NORMALIZATIONS] = _DATA_DEFAULTS.normalize  # type: ignore[valid-type]
    train_limit: PositiveInt | None = _DATA_DEFAULTS.train_limit  # type: ignore[valid-type]
    synthetic_train: _number(int, 10) = _DATA_DEFAULTS.synthetic_train  # type: ignore[valid-type]
    synthetic_test: _number(int, 10) = _DATA_DEFAULTS.synthetic_test  # type: ignore[valid-type]


class Constraints(_Section):
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


class StageSection(_Section):
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


class SpaceSection(_Section):
    """`space`: the architecture space; each ArchSpec field fixed or searched."""

    base: Annotated[str, AfterValidator(_check_preset)] | None = None
    stem: categorical(Literal[STEMS]) | None = None  # type: ignore[valid-type]
    stem_width: integer(PositiveInt) | None = None  # type: ignore[valid-type]
    block: categorical(Literal[BLOCKS]) | None = None  # type: ignore[valid-type]
    shortcut: categorical(Literal[SHORTCUTS]) | None = None  # type: ignore[valid-type]
    bottleneck_ratio: real(_number(float, 0, 4, low_open=True)) | None = None  # type: ignore[valid-type]
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


def _seed_comes_from_search(value: Any) -> Any:
    raise rule_error("the training seed is set by search.seeds (each point runs once per seed)",
                     "leave train.seed out; write search.seeds: [0, 1, 2] or search.repeats: 3")


class TrainSection(_Section):
    """`train`: every field of TrainSettings except the seed, each fixed or searched."""

    epochs: integer(PositiveInt) = _TRAIN_DEFAULTS.epochs  # type: ignore[valid-type]
    batch_size: integer(PositiveInt) = _TRAIN_DEFAULTS.batch_size  # type: ignore[valid-type]
    optimizer: categorical(Literal[OPTIMIZERS]) = _TRAIN_DEFAULTS.optimizer  # type: ignore[valid-type]
    lr: real(PositiveFloat) = _TRAIN_DEFAULTS.lr  # type: ignore[valid-type]
    momentum: real(_number(float, 0, 1, high_open=True)) = _TRAIN_DEFAULTS.momentum  # type: ignore[valid-type]
    nesterov: categorical(bool) = _TRAIN_DEFAULTS.nesterov  # type: ignore[valid-type]
    weight_decay: real(NonNegativeFloat) = _TRAIN_DEFAULTS.weight_decay  # type: ignore[valid-type]
    schedule: categorical(Literal[SCHEDULES]) = _TRAIN_DEFAULTS.schedule  # type: ignore[valid-type]
    milestones: list[_number(float, 0, 1, low_open=True, high_open=True)] = \
        list(_TRAIN_DEFAULTS.milestones)  # type: ignore[valid-type]
    gamma: real(_number(float, 0, 1, low_open=True)) = _TRAIN_DEFAULTS.gamma  # type: ignore[valid-type]
    warmup_epochs: real(NonNegativeFloat) = _TRAIN_DEFAULTS.warmup_epochs  # type: ignore[valid-type]
    label_smoothing: real(_number(float, 0, 1, high_open=True)) = \
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


class Asha(_Section):
    """ASHA early stopping on val_acc (Li et al. 2018, arXiv 1810.05934)."""

    grace_period: PositiveInt = 1  # type: ignore[valid-type]
    reduction_factor: _number(float, 1, low_open=True) = 3  # type: ignore[valid-type]


class Resources(_Section):
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


class SearchSection(_Section):
    """`search`: how points are chosen, what is optimised, and what each trial may use."""

    strategy: Literal[STRATEGIES] = "grid"  # type: ignore[valid-type]
    sampler: Literal[SAMPLERS] = "tpe"  # type: ignore[valid-type]
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
    keep_checkpoints: _number(int, -1) = 3  # type: ignore[valid-type]
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


class StudyModel(_Section):
    """A whole study file: the question, the data, the space, the training and the search."""

    name: Annotated[str, AfterValidator(_check_study_name)]
    question: Annotated[str, AfterValidator(_check_question)]
    data: DataSection = DataSection()
    space: SpaceSection
    train: TrainSection = TrainSection()
    search: SearchSection = SearchSection()


def float_grid(low: float, high: float, step: float) -> list[float]:
    """low, low + step, ..., high without drift (0.1 + 0.2 stays 0.3)."""
    count = int(round((high - low) / step))
    digits = max(0, -math.floor(math.log10(step))) + 6
    return [round(low + k * step, digits) for k in range(count + 1)]
