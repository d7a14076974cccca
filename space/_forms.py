"""The searched-value forms every study field shares, and the value rules they check.

A value that may be searched is fixed or one of three forms,
``{choice: [..]}``, ``{int: [low, high], step, log}`` and ``{float: [low, high], step, log}``;
`categorical`, `integer` and `real` wrap a field's own rule (an `interval`,
a `one_of`, a Literal) so that each form checks its levels or endpoints with
it. The section models that use them live in `_schema`.
"""

from __future__ import annotations

import ast
import functools
import inspect
import math
import sys
from pathlib import Path
from typing import Annotated, Any, Generic, TypeVar, Union

from pydantic import (AfterValidator, BaseModel, ConfigDict, Discriminator, Field, Tag, field_validator,
                      model_validator)
from pydantic_core import PydanticCustomError

# The error type the loader formats as "<what>; got <value>; allowed: <allowed>".
RULE_ERROR = "study_rule"


def rule_error(what: str, allowed: str | None = None, show_input: bool = True) -> PydanticCustomError:
    """A validation error in the study message format (the loader adds path, file and line)."""
    return PydanticCustomError(RULE_ERROR, "{what}",
                               {"what": what, "allowed": allowed or "", "show_input": show_input})


# ---------------------------------------------------------------- value rules
def interval(kind: type, low: float | None = None, high: float | None = None, *,
             low_open: bool = False, high_open: bool = False) -> Any:
    """`kind` with an interval rule whose message states the whole interval, not one bound."""
    noun = "an integer" if kind is int else "a number"
    # Integers in full (a seed bound of 4294967295, not 4.29497e+09).
    shown = (lambda bound: str(bound)) if kind is int else (lambda bound: f"{bound:g}")
    if low is not None and high is not None:
        allowed = f"{noun} in {'(' if low_open else '['}{shown(low)}, {shown(high)}{')' if high_open else ']'}"
    elif low is not None:
        allowed = f"{noun} {'>' if low_open else '>='} {shown(low)}"
    else:
        allowed = noun

    def check(value: Any) -> Any:
        above = low is None or (value > low if low_open else value >= low)
        below = high is None or (value < high if high_open else value <= high)
        if not (above and below):
            raise rule_error("out of range", allowed)
        return value

    bounds: dict[str, float] = {}
    if low is not None:
        bounds["exclusiveMinimum" if low_open else "minimum"] = low
    if high is not None:
        bounds["exclusiveMaximum" if high_open else "maximum"] = high
    return Annotated[kind, AfterValidator(check), JsonSchemaKeywords(**bounds)]


def one_of(kind: type, *levels: Any) -> Any:
    """`kind` restricted to `levels`; for numbers, where a Literal would also take True or 2.0."""
    allowed = " or ".join(repr(level) for level in levels)

    def check(value: Any) -> Any:
        if value not in levels:
            raise rule_error("not an allowed value", allowed)
        return value

    return Annotated[kind, AfterValidator(check), JsonSchemaKeywords(enum=list(levels))]


class JsonSchemaKeywords:
    """JSON Schema keywords for a rule an AfterValidator checks, so the schema and the reference state it."""

    def __init__(self, **keywords: Any) -> None:
        self.keywords = keywords

    def __get_pydantic_json_schema__(self, core_schema: Any, handler: Any) -> dict[str, Any]:
        return {**handler(core_schema), **self.keywords}


PositiveInt = interval(int, 1)
NonNegativeInt = interval(int, 0)
PositiveFloat = interval(float, 0, low_open=True)
NonNegativeFloat = interval(float, 0)


# ---------------------------------------------------------------- bounds
# Every number a study gives that sizes something has a finite upper bound, so
# that no value, however large (1e300, 2**40), reaches a constructor, an
# allocation or a float conversion. The bounds are generous: what fits a given
# machine is decided later, by the training-memory estimate
# (`models.training_memory`), not here.
# Blocks per stage: ResNet-1202, the deepest in He et al. 2015 (Sec. 4.2), has 200.
MAX_DEPTH = 1_000
# Stages: ResNets and pycls' AnyNets have four or five.
MAX_STAGES = 16
# Channels (stem, stage width, groups): 8x ResNet-50's widest stage (2048).
MAX_WIDTH = 16_384
# WRN-28-10 widens ResNet by 10x (Zagoruyko & Komodakis 2016, arXiv 1605.07146).
MAX_WIDTH_MULTIPLIER = 64.0
# Input channels: RGB has 3; multispectral images a few dozen.
MAX_IN_CHANNELS = 64
# Seeds: NumPy's seed range (torch takes 64 bits; 32 are what every library shares).
MAX_SEED = 2**32 - 1
# 60x the paper's 164 epochs.
MAX_EPOCHS = 10_000
# Twice the 32k batches of LARS (You et al. 2017, arXiv 1708.03888).
MAX_BATCH_SIZE = 65_536
# Goyal et al. 2017 (arXiv 1706.02677) reach lr 3.2 at batch 8k by linear scaling.
MAX_LR = 10.0
# Decay of 1 (times the learning rate) removes the whole weight each step.
MAX_WEIGHT_DECAY = 1.0
# Threads of one trial, and CPUs of one trial: more than any single machine has.
MAX_THREADS = 4_096
# GPUs of one trial: Ray places a trial on one node, and nodes hold 8 or 16.
MAX_GPUS = 64.0
# Images: 20x CIFAR's 50,000 training images (uint8, 3 KB each: 3 GB).
MAX_IMAGES = 1_000_000
# Synthetic images are generated in memory by every trial: 2x CIFAR-10's training set.
MAX_SYNTHETIC_IMAGES = 100_000
# Crop padding: past the 32-pixel side, a crop can be all padding.
MAX_CROP_PADDING = 32
# Trials, repeats and concurrent trials: each is a row, a Ray actor or an Optuna trial.
MAX_TRIALS = 1_000_000
MAX_REPEATS = 1_000
MAX_CONCURRENT = 10_000

Seed = interval(int, 0, MAX_SEED)
Depth = interval(int, 1, MAX_DEPTH)
Width = interval(int, 1, MAX_WIDTH)
EpochCount = interval(int, 1, MAX_EPOCHS)


# -------------------------------------------------------------- searched forms
class StrictModel(BaseModel):
    """The base of every study model: strict types, no unknown keys, frozen, finite numbers."""

    # strict: `epochs: "5"` or `flip: "yes"` is a mistake to report, not to coerce;
    # frozen: a validated study never changes; no inf/nan in any number;
    # a field's docstring is its description in the JSON Schema and docs/STUDY_REFERENCE.md, read by
    # `attribute_docstrings` when the schema is made. pydantic's use_attribute_docstrings would read them at
    # import: on Python < 3.13 it walks the import's frames through inspect.getmodule, which scans every
    # loaded module per frame (1.5 s of each driver's and each Ray trial worker's start, with torch loaded).
    model_config = ConfigDict(strict=True, extra="forbid", frozen=True, allow_inf_nan=False)


@functools.cache
def _module_tree(path: str) -> ast.Module:
    return ast.parse(Path(path).read_text(encoding="utf-8"), filename=path)


def _class_node(cls: type) -> ast.ClassDef | None:
    """The `class` statement of `cls` in its module's source; None for a class made at run time (Choice[int])."""
    module = sys.modules.get(cls.__module__)
    if module is None or not getattr(module, "__file__", None) or "<" in cls.__qualname__:
        return None
    scope: Any = _module_tree(module.__file__)
    for name in cls.__qualname__.split("."):
        scope = next((node for node in scope.body if isinstance(node, ast.ClassDef) and node.name == name), None)
        if scope is None:
            return None
    return scope


def attribute_docstrings(cls: type) -> dict[str, str]:
    """Each field of `cls` -> its docstring: the string written on the line after `field: type = ...` in the
    class body, or in the nearest base class that declares the field."""
    docs: dict[str, str] = {}
    for klass in reversed(cls.__mro__):  # a subclass's docstring replaces its base's
        node = _class_node(klass) if issubclass(klass, StrictModel) else None
        for statement, following in zip(node.body, node.body[1:]) if node else ():
            if (isinstance(statement, ast.AnnAssign) and isinstance(statement.target, ast.Name)
                    and isinstance(following, ast.Expr) and isinstance(following.value, ast.Constant)
                    and isinstance(following.value.value, str)):
                docs[statement.target.id] = inspect.cleandoc(following.value.value)
    return docs


Level = TypeVar("Level")


class Choice(StrictModel, Generic[Level]):
    """A categorical search over the listed levels (the first is the reference level)."""

    choice: Annotated[list[Level], Field(min_length=1, description="The levels; the first is the reference level.")]

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
        # Past 1e15 steps a step is below a double's resolution of the range (and 5e-324 gives inf).
        if not steps <= 1e15:
            raise rule_error(f"`step` is too small for the range, but got (low={low}, high={high}, step={step})",
                             "at most 1e15 steps between low and high", show_input=False)
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


class IntRange(_Bounded, StrictModel, Generic[Level]):
    """An integer search over [low, high], by `step` or on a log scale."""

    bounds: Annotated[list[Level], Field(alias="int", min_length=2, max_length=2,
                                         description="[low, high], both included.")]
    step: PositiveInt = 1
    """The values low, low + step, ..., high."""
    log: bool = False
    """Sample on a log scale (strategy optuna: a grid needs a step)."""

    @model_validator(mode="after")
    def _rules(self) -> "IntRange[Level]":
        _range_checks(self.low, self.high, self.step, self.log, "step" in self.model_fields_set)
        return self


class FloatRange(_Bounded, StrictModel, Generic[Level]):
    """A real-valued search over [low, high], continuous, by `step`, or on a log scale."""

    bounds: Annotated[list[Level], Field(alias="float", min_length=2, max_length=2,
                                         description="[low, high], both included.")]
    step: PositiveFloat | None = None
    """The values low, low + step, ..., high; null: any value between (strategy optuna: a grid needs a step)."""
    log: bool = False
    """Sample on a log scale (strategy optuna: a grid needs a step)."""

    @model_validator(mode="after")
    def _rules(self) -> "FloatRange[Level]":
        _range_checks(self.low, self.high, self.step, self.log, self.step is not None)
        return self


class _UnknownForm(StrictModel):
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


def float_grid(low: float, high: float, step: float) -> list[float]:
    """low, low + step, ..., high without drift (0.1 + 0.2 stays 0.3)."""
    count = int(round((high - low) / step))
    digits = max(0, -math.floor(math.log10(step))) + 6
    return [round(low + k * step, digits) for k in range(count + 1)]
