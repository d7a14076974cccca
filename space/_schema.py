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
from pydantic.json_schema import SkipJsonSchema

from models import BLOCKS, BOTTLENECK_STRIDES, SHORTCUTS, STEMS, presets
# One home: the report reads the same default and rule from study.yaml.
from runfolder import DEFAULT_TARGET_EFFECT, MIN_TARGET_EFFECT, TARGET_EFFECT_RULE, is_target_effect
# ... and report.primary's bounds and level rule, which the report reads back through the same record.
from runfolder import MAX_PRIMARY_COMPARISONS, MAX_PRIMARY_TEXT, PRIMARY_LEVEL_RULE, is_primary_level

from ._forms import PositiveFloat, PositiveInt, StrictModel, categorical, integer, interval, one_of, real, rule_error
from ._forms import (MAX_BATCH_SIZE, MAX_CROP_PADDING, MAX_EPOCHS, MAX_IMAGES, MAX_IN_CHANNELS, MAX_LR, MAX_STAGES,
                     MAX_SYNTHETIC_IMAGES, MAX_THREADS, MAX_WEIGHT_DECAY, MAX_WIDTH_MULTIPLIER, Depth, EpochCount,
                     Seed, Width)
from ._forms import JsonSchemaKeywords
from ._matching import KNOBS, MATCH_METRICS
from ._search_section import SearchSection
from imagefeed import DATASET_KINDS

from ._settings import (AMP_MODES, DATASET_NAMES, MAX_IMAGE_SIZE, NORMALIZATIONS, OPTIMIZERS, SCHEDULES,
                        DataSettings, TrainSettings)

_TRAIN_DEFAULTS = TrainSettings()
_DATA_DEFAULTS = DataSettings()
_FILE_KINDS = ", ".join(name for name, kind in DATASET_KINDS.items() if kind.reads_files)
_DOWNLOAD_KINDS = ", ".join(name for name, kind in DATASET_KINDS.items() if kind.downloads)

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
    """The images: CIFAR-10 or CIFAR-100 (Krizhevsky 2009); downsampled ImageNet (Chrabaszcz et al. 2017);
    imagefolder (root/train/<class>/, root/val/<class>/), imagenet (the same with ILSVRC2012's 1,000 wnid
    classes) or tiny_imagenet (Tiny-ImageNet-200 as distributed); or synthetic images made in memory, which
    only check that the pipeline runs. The held-out split the data ships with (test_batch, val/, val_data) is
    the test set."""
    root: str | None = _DATA_DEFAULTS.root
    """The folder holding the dataset in its official layout (for cifar10: the folder holding
    cifar-10-batches-py), or a packed store made by python -m search.pack; null trains on the 1,500/500-image
    CIFAR-10 sample in the package. Not for the synthetic dataset."""
    download: bool = _DATA_DEFAULTS.download
    """Fetch the official archive into data.root when it is missing, and check its published md5 (needs a
    network). CIFAR only."""
    val_fraction: interval(float, 0, 1, low_open=True, high_open=True) = _DATA_DEFAULTS.val_fraction  # type: ignore[valid-type]
    """The fraction of the training images held out for validation: trials are ranked on it, and the test set is
    only reported."""
    split_seed: Seed = _DATA_DEFAULTS.split_seed  # type: ignore[valid-type]
    """The seed of the train/validation split, the same for every trial of the study."""
    crop_padding: interval(int, 0, MAX_CROP_PADDING) = _DATA_DEFAULTS.crop_padding  # type: ignore[valid-type]
    """Zero-padding in pixels before the random crop back to full size (4 in He et al. 2015, Sec. 4.2); 0 turns
    cropping off."""
    flip: bool = _DATA_DEFAULTS.flip
    """Random horizontal flips of the training images (He et al. 2015, Sec. 4.2)."""
    normalize: Literal[tuple(NORMALIZATIONS)] | None = None  # type: ignore[valid-type]
    """The per-channel mean and std images are normalised with: the CIFAR-10 training set's, ImageNet's (what
    many released checkpoints expect), or none; null: the dataset's (cifar for CIFAR and synthetic, imagenet
    for the ImageNet kinds)."""
    image_size: interval(int, 8, MAX_IMAGE_SIZE) | None = None  # type: ignore[valid-type]
    """The side of the training crop in pixels; null: the dataset's natural size (32 for CIFAR, synthetic and
    downsampled ImageNet, 64 for tiny_imagenet, 224 for imagefolder and imagenet). Evaluation resizes the
    shorter side to 1.14x (256 for 224) and takes the centre crop. Whole-tensor datasets train at the size they
    are stored at (downsampled ImageNet: 8, 16, 32 or 64)."""
    train_limit: interval(int, 1, MAX_IMAGES) | None = _DATA_DEFAULTS.train_limit  # type: ignore[valid-type]
    """Train on the first N shuffled training images only, for small CPU budgets; null uses them all."""
    synthetic_train: interval(int, 10, MAX_SYNTHETIC_IMAGES) = _DATA_DEFAULTS.synthetic_train  # type: ignore[valid-type]
    """How many synthetic training images each trial generates (synthetic dataset only)."""
    synthetic_test: interval(int, 10, MAX_SYNTHETIC_IMAGES) = _DATA_DEFAULTS.synthetic_test  # type: ignore[valid-type]
    """How many synthetic test images each trial generates (synthetic dataset only)."""

    # Validators run only on fields the file gives, in field order (dataset first).
    @field_validator("root")
    @classmethod
    def _root_needs_files(cls, root: str | None, info: ValidationInfo) -> str | None:
        if root is not None and info.data.get("dataset") == "synthetic":
            raise rule_error("the synthetic dataset is generated in memory, so data.root would never be read",
                             f"leave data.root out (or null), or set data.dataset to one of {_FILE_KINDS}")
        return root

    @field_validator("download")
    @classmethod
    def _download_needs_files(cls, download: bool, info: ValidationInfo) -> bool:
        if download and info.data.get("dataset") == "synthetic":
            raise rule_error("the synthetic dataset is generated in memory, so there is nothing to download",
                             "leave data.download out (or false), or set data.dataset: cifar10 or cifar100")
        kind = DATASET_KINDS.get(info.data.get("dataset", _DATA_DEFAULTS.dataset))
        if download and kind is not None and not kind.downloads:
            raise rule_error(f"{kind.title} cannot be downloaded here (its licence needs a sign-up)",
                             f"leave data.download out (or false) and set data.root; downloads: {_DOWNLOAD_KINDS}")
        return download

    @field_validator("image_size")
    @classmethod
    def _image_size_fits_the_kind(cls, image_size: int | None, info: ValidationInfo) -> int | None:
        kind = DATASET_KINDS.get(info.data.get("dataset", _DATA_DEFAULTS.dataset))
        if image_size is not None and kind is not None and kind.image_sizes and image_size not in kind.image_sizes:
            raise rule_error(f"{kind.title} is held whole at the size it is stored at",
                             " or ".join(map(str, kind.image_sizes)))
        return image_size


class Constraints(StrictModel):
    """Bounds on params and MACs; a sampled spec outside them is rejected before training."""

    max_params: PositiveFloat | None = None  # type: ignore[valid-type]
    """The most parameters an architecture may have; a point above it is dropped before training."""
    max_macs: PositiveFloat | None = None  # type: ignore[valid-type]
    """The most multiply-accumulates per image (at the dataset's image size) an architecture may have; a point
    above it is dropped before training."""
    min_params: PositiveFloat | None = None  # type: ignore[valid-type]
    """The fewest parameters an architecture may have; a point below it is dropped before training."""
    min_macs: PositiveFloat | None = None  # type: ignore[valid-type]
    """The fewest multiply-accumulates per image an architecture may have; a point below it is dropped before
    training."""

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
    """The cost every point is matched on: macs (multiply-accumulates; FLOPs are twice as many) or params."""
    adjust: Literal[tuple(KNOBS)] = "width_multiplier"  # type: ignore[valid-type]  # works for every block
    """The knob solved to reach the target: width_multiplier (every width, any block), stem_width, or
    bottleneck_ratio (bottleneck blocks only)."""
    # 1%: a ResNet-20's MACs move by about that much per channel of its last stage.
    tolerance: interval(float, 0, 1, low_open=True, high_open=True) = 0.01  # type: ignore[valid-type]
    """How far a point's cost may stay from its target, as a fraction of the target; a point already that close
    keeps its widths."""
    to: PositiveFloat | None = None  # type: ignore[valid-type]  # a fixed target; None: each point's reference
    """One target cost for every point (required by strategy optuna); null: a grid point's target is the same
    point with every design factor at its reference level."""


class StageSection(StrictModel):
    """One entry of `space.stages`; a field left out comes from `space.base`."""

    depth: integer(Depth) | None = None  # type: ignore[valid-type]
    """How many blocks the stage has; left out: the stage of space.base with the same index."""
    width: integer(Width) | None = None  # type: ignore[valid-type]
    """The output channels of the stage's blocks; left out: the stage of space.base with the same index."""
    stride: categorical(Stride) | None = None  # type: ignore[valid-type]
    """The stride of the stage's first block: 1 keeps the image size, 2 halves it; left out: space.base's stage,
    else 1."""


# The ArchSpec fields a study may search, in the order trials suggest them:
# `block` comes before the fields that only bottleneck blocks have.
ARCH_FIELDS = ("stem", "stem_width", "block", "shortcut", "bottleneck_ratio", "groups",
               "bottleneck_stride", "zero_init_residual")
# Only bottleneck blocks have an inner width to scale, groups to split or a 1x1 to stride.
BOTTLENECK_ONLY = ("bottleneck_ratio", "groups", "bottleneck_stride")
CONVENIENCE_FIELDS = ("blocks_per_stage", "width_multiplier")


class SpaceSection(StrictModel):
    """`space`: the architecture space; each ArchSpec field fixed or searched."""

    base: Annotated[str, AfterValidator(_check_preset), JsonSchemaKeywords(enum=presets())] | None = None
    """A models preset to start from (see python -m models describe NAME); each field given in space replaces the
    preset's."""
    stem: categorical(Literal[STEMS]) | None = None  # type: ignore[valid-type]
    """The layers before the first stage: cifar (one 3x3 conv, He et al. 2015 Sec. 4.2), imagenet (7x7 conv and
    max pool, Table 1) or deep (three 3x3 convs, ResNet-C of He et al. 2019, arXiv 1812.01187)."""
    stem_width: integer(Width) | None = None  # type: ignore[valid-type]
    """The output channels of the stem."""
    block: categorical(Literal[BLOCKS]) | None = None  # type: ignore[valid-type]
    """The residual block: basic (two 3x3 convs) or bottleneck (1x1, 3x3, 1x1), He et al. 2015 Fig. 5; the
    preact_ variants put BN and ReLU before each conv (He et al. 2016, arXiv 1603.05027)."""
    shortcut: categorical(Literal[SHORTCUTS]) | None = None  # type: ignore[valid-type]
    """The shortcut of a block that changes shape: A pads with zeros, B projects with a 1x1 conv, C projects in
    every block (He et al. 2015, Sec. 3.3); D average-pools before projecting (ResNet-D, He et al. 2019); none
    gives a plain net."""
    bottleneck_ratio: real(interval(float, 0, 4, low_open=True)) | None = None  # type: ignore[valid-type]
    """The inner (3x3) width of a bottleneck block over its output width: 0.25 in ResNet-50 (He et al. 2015,
    Table 1)."""
    groups: integer(Width) | None = None  # type: ignore[valid-type]
    """The groups of a bottleneck's 3x3 conv (ResNeXt, Xie et al. 2017, arXiv 1611.05431); the inner width must
    divide by it."""
    bottleneck_stride: categorical(Literal[BOTTLENECK_STRIDES]) | None = None  # type: ignore[valid-type]
    """Which conv of a downsampling bottleneck strides: 3x3 (torchvision's 'ResNet v1.5') or 1x1 (He et al.
    2015)."""
    zero_init_residual: categorical(bool) | None = None  # type: ignore[valid-type]
    """Start the last BN of every residual branch at zero, so each block starts as the identity (Goyal et al.
    2017, arXiv 1706.02677)."""
    # Conveniences: one value for every stage (depth) or every width (a multiplier).
    blocks_per_stage: integer(Depth) | None = None  # type: ignore[valid-type]
    """One depth for every stage: 3, 5, 7, 9 give ResNet-20, 32, 44, 56 on CIFAR (6n+2 layers, He et al. 2015
    Sec. 4.2); stages then give no depth of their own."""
    width_multiplier: real(interval(float, 0, MAX_WIDTH_MULTIPLIER, low_open=True)) | None = None  # type: ignore[valid-type]
    """Scales the stem and every stage width, each rounded to whole channels (as wide ResNets widen, Zagoruyko &
    Komodakis 2016)."""
    stages: Annotated[list[StageSection], Field(min_length=1, max_length=MAX_STAGES)] | None = None
    """The stages in order, each {depth, width, stride}; a field left out comes from the stage of space.base with
    the same index."""
    # Fixed: they follow the data, not the design (None = from the dataset / base).
    num_classes: PositiveInt | None = None  # type: ignore[valid-type]
    """The classes of the final layer: always the dataset's, so leave it out (another value is an error)."""
    in_channels: interval(int, 1, MAX_IN_CHANNELS) | None = None  # type: ignore[valid-type]
    """The input channels of the stem (3 for RGB images)."""
    constraints: Constraints = Constraints()
    """Bounds on each architecture's cost; points outside them are dropped before training."""
    match_complexity: MatchComplexity | None = None
    """Compare the levels at equal cost: each point's knob is solved so that it costs what its target costs
    (rules in space/_matching.py)."""


def _seed_comes_from_search(value: Any) -> Any:
    raise rule_error("the training seed is set by search.seeds (each point runs once per seed)",
                     "leave train.seed out; write search.seeds: [0, 1, 2] or search.repeats: 3")


class TrainSection(StrictModel):
    """`train`: every field of TrainSettings except the seed, each fixed or searched."""

    epochs: integer(EpochCount) = _TRAIN_DEFAULTS.epochs  # type: ignore[valid-type]
    """Epochs each trial trains for (164 in the paper's CIFAR recipe: 64k iterations at batch 128, He et al. 2015
    Sec. 4.2)."""
    batch_size: integer(interval(int, 1, MAX_BATCH_SIZE)) = _TRAIN_DEFAULTS.batch_size  # type: ignore[valid-type]
    """Images per optimizer step."""
    optimizer: categorical(Literal[tuple(OPTIMIZERS)]) = _TRAIN_DEFAULTS.optimizer  # type: ignore[valid-type]
    """sgd (with momentum) or adamw (Loshchilov & Hutter 2019, arXiv 1711.05101)."""
    lr: real(interval(float, 0, MAX_LR, low_open=True)) = _TRAIN_DEFAULTS.lr  # type: ignore[valid-type]
    """The peak learning rate, reached at the end of the warm-up."""
    momentum: real(interval(float, 0, 1, high_open=True)) = _TRAIN_DEFAULTS.momentum  # type: ignore[valid-type]
    """SGD's momentum (adamw does not use it)."""
    nesterov: categorical(bool) = _TRAIN_DEFAULTS.nesterov  # type: ignore[valid-type]
    """Nesterov momentum (sgd only)."""
    weight_decay: real(interval(float, 0, MAX_WEIGHT_DECAY)) = _TRAIN_DEFAULTS.weight_decay  # type: ignore[valid-type]
    """Weight decay: L2 for sgd, decoupled for adamw."""
    schedule: categorical(Literal[tuple(SCHEDULES)]) = _TRAIN_DEFAULTS.schedule  # type: ignore[valid-type]
    """The learning rate after the warm-up: step (times gamma at each milestone), cosine (Loshchilov & Hutter
    2017, arXiv 1608.03983, no restarts) or constant."""
    milestones: list[interval(float, 0, 1, low_open=True, high_open=True)] = \
        list(_TRAIN_DEFAULTS.milestones)  # type: ignore[valid-type]
    """Where the step schedule multiplies the rate by gamma, as fractions of training (0.5, 0.75: the paper's 32k
    and 48k of 64k iterations)."""
    gamma: real(interval(float, 0, 1, low_open=True)) = _TRAIN_DEFAULTS.gamma  # type: ignore[valid-type]
    """The step schedule's factor at each milestone (0.1 divides the rate by 10)."""
    warmup_epochs: real(interval(float, 0, MAX_EPOCHS)) = _TRAIN_DEFAULTS.warmup_epochs  # type: ignore[valid-type]
    """Epochs of linear learning-rate warm-up (fractions allowed), fewer than epochs; He et al. 2015 warm
    ResNet-110 up for about one epoch (Sec. 4.2)."""
    label_smoothing: real(interval(float, 0, 1, high_open=True)) = \
        _TRAIN_DEFAULTS.label_smoothing  # type: ignore[valid-type]
    """Label smoothing of the cross-entropy loss (Szegedy et al. 2016, arXiv 1512.00567)."""
    channels_last: categorical(bool) = _TRAIN_DEFAULTS.channels_last  # type: ignore[valid-type]
    """Train in the channels_last memory format: faster convs on CPUs (oneDNN) and GPU tensor cores, the same
    results."""
    amp: categorical(Literal[AMP_MODES]) = _TRAIN_DEFAULTS.amp  # type: ignore[valid-type]
    """Mixed precision: auto (bf16 autocast on CUDA, float32 on CPU), bf16, or off."""
    max_threads: interval(int, 1, MAX_THREADS) | None = _TRAIN_DEFAULTS.max_threads  # type: ignore[valid-type]
    """Torch threads of one trial on a CPU; null: what the runner gives it (search.resources.cpus)."""
    # Only here to explain itself; the JSON Schema leaves it out, so editors flag it as unknown.
    seed: SkipJsonSchema[Annotated[Any, AfterValidator(_seed_comes_from_search)]] = None

    @field_validator("milestones")
    @classmethod
    def _increasing(cls, milestones: list[float]) -> list[float]:
        if milestones != sorted(milestones):
            raise rule_error("milestones must increase", "increasing fractions of the epochs, each in (0, 1)")
        return milestones


TRAIN_FIELDS = tuple(name for name in TrainSection.model_fields if name != "seed")


def _check_target_effect(value: float) -> float:
    if not is_target_effect(value):
        raise rule_error("out of range", TARGET_EFFECT_RULE)
    return value


# The rule has one home (runfolder, whose StudyRecord reads the field back from a run folder's study.yaml).
TargetEffect = Annotated[float, AfterValidator(_check_target_effect),
                         JsonSchemaKeywords(minimum=MIN_TARGET_EFFECT, exclusiveMaximum=1)]


def _check_primary_level(value: Any) -> Any:
    # One rule, one message: a union of types would answer null with one error per member.
    if not is_primary_level(value):
        raise rule_error("not a level", PRIMARY_LEVEL_RULE)
    return value


# A level as a study file writes it in a choice: a name, a finite number or a boolean.
PrimaryLevel = Annotated[Any, AfterValidator(_check_primary_level),
                         JsonSchemaKeywords(anyOf=[{"type": "string", "minLength": 1, "maxLength": MAX_PRIMARY_TEXT},
                                                   {"type": "number"}, {"type": "boolean"}])]


class PrimaryComparison(StrictModel):
    """One comparison the study's question asks: a level of a searched factor against its reference level."""

    factor: Annotated[str, Field(min_length=1, max_length=MAX_PRIMARY_TEXT)]
    """The searched field, by its factor name: shortcut, blocks_per_stage, stages.1.depth, train.lr."""
    level: PrimaryLevel
    """The level the question asks about, as the study's choice writes it (B, 9, 0.25, true)."""
    reference: PrimaryLevel
    """The level it is compared with: the factor's reference level, the first of its choice (the report tests
    every level against it, so the verdict is that test's)."""

    @field_validator("reference")
    @classmethod
    def _not_the_level(cls, reference: Any, info: ValidationInfo) -> Any:
        if "level" in info.data and same_level(info.data["level"], reference):
            raise rule_error("the level compared with itself", "a level of the factor other than report.primary's level")
        return reference


def same_level(a: Any, b: Any) -> bool:
    """Whether two levels as a study writes them are one level: 9 and 9.0 are, true and 1 are not (as the report
    labels them)."""
    if isinstance(a, bool) or isinstance(b, bool):
        return type(a) is type(b) and a == b
    return a == b


class ReportSection(StrictModel):
    """`report`: what the report is asked to resolve."""

    # Which comparison the study exists to answer: the driver's last lines and the report's first block answer it
    # first, with what it would take to resolve it; without it both keep the order of every comparison.
    primary: Annotated[list[PrimaryComparison], Field(min_length=1, max_length=MAX_PRIMARY_COMPARISONS)] | None = None
    """The comparison(s) the study's question asks, e.g. [{factor: shortcut, level: B, reference: A}]: the driver's
    last lines and the report's first block answer them first (the estimate and its CI, the verdict at Holm, and,
    when within noise, the seeds and device-hours that would resolve report.target_effect, as a command to run).
    Each names a searched factor, one of its levels, and its reference level (the first of its choice), against
    which the report tests every level; where the study crosses factors, it is answered within each level of the
    others."""

    # The smallest accuracy difference worth resolving (a fraction: 0.01 = 1 pp); the power
    # analysis says how many seeds per level would detect it. At least MIN_TARGET_EFFECT: a smaller
    # difference is below one test image, and asked for it only sends the power analysis searching.
    target_effect: TargetEffect = DEFAULT_TARGET_EFFECT  # type: ignore[valid-type]
    """The smallest accuracy difference worth resolving (0.01 = 1 percentage point), at least 0.0001 (0.01 pp, one
    image of a 10,000-image test set); the report's power analysis says how many seeds per level would detect
    it."""
    # While the study runs, report.html is rebuilt after a trial finishes, at most once per this many
    # seconds (0: after every trial): a build costs seconds of CPU, so a study of short trials keeps it rare.
    live_every_s: interval(float, 0) = 30.0  # type: ignore[valid-type]
    """While the study runs, rebuild report.html after a trial finishes, at most once per this many seconds
    (0: after every trial)."""


class StudyModel(StrictModel):
    """A whole study file: the question, the data, the space, the training and the search."""

    name: Annotated[str, AfterValidator(_check_study_name)]
    """The study's name, of lowercase letters, digits, _ and -: it names the run folder (runs/<name>/) and the
    Optuna study."""
    question: Annotated[str, AfterValidator(_check_question)]
    """The question the study answers, in one sentence; run.json and the report repeat it."""
    data: DataSection = DataSection()
    """The images every trial trains and is measured on, split and augmented alike for all trials."""
    space: SpaceSection
    """The architecture space: each field fixed or searched, on top of an optional base preset."""
    train: TrainSection = TrainSection()
    """How each architecture is trained; a searched training field is a factor like an architecture field."""
    search: SearchSection = SearchSection()
    """How points are chosen (grid or optuna), what is optimised, the seeds, and what each trial may use."""
    report: ReportSection = ReportSection()
    """What the report is asked to resolve."""

