"""The search space of a validated study: fixed values, searched parameters, and concretisation.

`SearchSpace.concrete(values, seed)` is the one place where a trial's choices
become an `ArchSpec` and `TrainSettings`; Optuna sampling, grid enumeration,
validation and the dry run all go through it.
"""

from __future__ import annotations

import dataclasses
import math
import random
import re
from dataclasses import dataclass
from typing import Any, Callable, Iterator, Mapping

from models import BOTTLENECK_BLOCKS, ArchSpec, Complexity, SpecError, complexity, preset

from ._errors import FieldPath, FieldProblem
from ._forms import Choice, IntRange, Searched, float_grid, is_searched
from ._matching import KNOBS, Knob, Match, is_design_factor, reach, solve
from ._schema import (ARCH_FIELDS, BOTTLENECK_ONLY, CONVENIENCE_FIELDS, TRAIN_FIELDS, Constraints, MatchComplexity,
                      StudyModel)
from ._settings import DATASET_CLASSES, DATASET_IMAGE_SIZE, TrainSettings

_ARCH_DEFAULTS = {f.name: f.default for f in dataclasses.fields(ArchSpec)
                  if f.default is not dataclasses.MISSING}
# What bottleneck-only fields become when the searched block is not a bottleneck.
_NEUTRAL_FOR_OTHER_BLOCKS = {"groups": 1, "bottleneck_stride": "3x3"}


def format_value(value: Any) -> str:
    """A parameter value in labels: 4 significant digits for floats, plain text otherwise."""
    return f"{value:.4g}" if isinstance(value, float) else str(value)


@dataclass(frozen=True)
class Parameter:
    """One searched value: its Optuna name, its field path in the study, and its domain."""

    name: str                # "shortcut", "stages.1.depth", "train.lr"
    path: FieldPath          # ("space", "stages", 1, "depth")
    domain: Searched
    conditional: bool = False  # only sampled when the block is a bottleneck

    @property
    def levels(self) -> list[Any] | None:
        """The choice levels; None for a numeric range."""
        return list(self.domain.choice) if isinstance(self.domain, Choice) else None

    @property
    def numeric(self) -> bool:
        """True for an int or float range."""
        return not isinstance(self.domain, Choice)

    def grid_levels(self) -> list[Any] | None:
        """Every value a grid visits; None when the range has no step to enumerate."""
        domain = self.domain
        if isinstance(domain, Choice):
            return list(domain.choice)
        if domain.log:
            return None
        if isinstance(domain, IntRange):
            return list(range(domain.low, domain.high + 1, domain.step))
        return None if domain.step is None else float_grid(domain.low, domain.high, domain.step)

    def grid_size(self) -> int:
        """How many values a grid visits, counted without listing them (0 if it cannot)."""
        domain = self.domain
        if isinstance(domain, Choice):
            return len(domain.choice)
        if domain.log or domain.step is None:
            return 0
        return int(round((domain.high - domain.low) / domain.step)) + 1

    def suggest(self, trial: Any) -> Any:
        """Ask an Optuna trial for this parameter (define-by-run)."""
        domain = self.domain
        if isinstance(domain, Choice):
            return trial.suggest_categorical(self.name, list(domain.choice))
        if isinstance(domain, IntRange):
            return trial.suggest_int(self.name, domain.low, domain.high, step=domain.step, log=domain.log)
        return trial.suggest_float(self.name, float(domain.low), float(domain.high),
                                   step=domain.step, log=domain.log)

    def draw(self, rng: random.Random) -> Any:
        """A uniform random value from `rng` (log-uniform for log ranges)."""
        domain = self.domain
        if isinstance(domain, Choice):
            return rng.choice(domain.choice)
        low, high = domain.low, domain.high
        if domain.log:
            value = math.exp(rng.uniform(math.log(low), math.log(high)))
            return min(high, max(low, round(value))) if isinstance(domain, IntRange) else value
        if domain.step is not None:
            steps = int(round((high - low) / domain.step))
            value = low + domain.step * rng.randint(0, steps)
            return value if isinstance(domain, IntRange) else round(value, 12)
        return rng.uniform(low, high)

    def corner(self, high: bool) -> Any:
        """The low end (first level) or the high end (last level)."""
        domain = self.domain
        if isinstance(domain, Choice):
            return domain.choice[-1 if high else 0]
        return domain.high if high else domain.low


def _problem_from(section: str, error: SpecError) -> FieldProblem:
    """An ArchSpec or TrainSettings error as a FieldProblem under `section`, from its fields, not its text."""
    path = (section, *error.path)
    if error.what is not None:  # an unknown or missing field: there is no value to show
        return FieldProblem(path, error.what, allowed=error.allowed)
    what = "not a valid architecture" if section == "space" else "not valid training settings"
    return FieldProblem(path, what, got=repr(error.got), allowed=error.allowed)


def _scaled(width: int, multiplier: float) -> int:
    # Round to the nearest channel count; a layer never drops below one channel.
    return max(1, int(round(width * multiplier)))


@dataclass(frozen=True)
class SearchSpace:
    """Fixed values plus searched parameters, in the order a trial suggests them."""

    arch: Mapping[str, Any]                 # fixed ArchSpec fields, stages excluded
    stages: tuple[Mapping[str, Any], ...]   # fixed fields of each stage
    conveniences: Mapping[str, Any]         # fixed blocks_per_stage / width_multiplier
    train: Mapping[str, Any]                # fixed TrainSettings fields, seed excluded
    parameters: tuple[Parameter, ...]
    image_size: int
    constraints: Constraints
    match: MatchComplexity | None = None    # space.match_complexity

    # ------------------------------------------------------------ lookups
    def parameter(self, name: str) -> Parameter | None:
        """The parameter called `name`, or None."""
        return next((p for p in self.parameters if p.name == name), None)

    def is_active(self, parameter: Parameter, values: Mapping[str, Any]) -> bool:
        """Whether `parameter` is sampled, given the values chosen before it."""
        if not parameter.conditional:
            return True
        block = values.get("block", self.arch.get("block", _ARCH_DEFAULTS["block"]))
        return block in BOTTLENECK_BLOCKS

    def label(self, values: Mapping[str, Any]) -> str:
        """"shortcut=A, blocks_per_stage=3": the active parameters in suggestion order."""
        parts = [f"{p.name}={format_value(values[p.name])}" for p in self.parameters
                 if p.name in values and self.is_active(p, values)]
        return ", ".join(parts) if parts else "fixed"

    # ----------------------------------------------------------- sampling
    def _choose(self, pick: Callable[[Parameter], Any]) -> dict[str, Any]:
        # In suggestion order, so `block` is known before the bottleneck-only fields.
        values: dict[str, Any] = {}
        for parameter in self.parameters:
            if self.is_active(parameter, values):
                values[parameter.name] = pick(parameter)
        return values

    def suggest(self, trial: Any) -> dict[str, Any]:
        """Suggest every active parameter on an Optuna trial; returns the values."""
        return self._choose(lambda parameter: parameter.suggest(trial))

    def draw(self, rng: random.Random) -> dict[str, Any]:
        """Random values for every active parameter."""
        return self._choose(lambda parameter: parameter.draw(rng))

    def corner(self, high: bool) -> dict[str, Any]:
        """Every parameter at its low (first) or high (last) end."""
        return self._choose(lambda parameter: parameter.corner(high))

    def grid(self) -> Iterator[dict[str, Any]]:
        """Every combination of grid levels; bottleneck-only parameters only under bottleneck blocks."""
        values: dict[str, Any] = {}

        def expand(index: int) -> Iterator[dict[str, Any]]:
            if index == len(self.parameters):
                yield dict(values)
                return
            parameter = self.parameters[index]
            if not self.is_active(parameter, values):
                yield from expand(index + 1)
                return
            for level in parameter.grid_levels() or ():
                values[parameter.name] = level
                yield from expand(index + 1)
            values.pop(parameter.name, None)

        return expand(0)

    def grid_upper_bound(self) -> int:
        """The product of every parameter's grid level count (conditional ones counted fully)."""
        return math.prod(p.grid_size() for p in self.parameters)

    # ------------------------------------------------------ concretisation
    def concrete(self, values: Mapping[str, Any], seed: int,
                 knob: tuple[str, Any] | None = None) -> tuple[ArchSpec, TrainSettings]:
        """The ArchSpec and TrainSettings of one choice, unmatched; raises FieldProblem (a ValueError) if invalid.

        `knob` = (field, value) sets one study field as if the study wrote it
        (`matched` reads the study's widths at width_multiplier 1 this way).
        """
        arch = dict(self.arch)
        stages = [dict(stage) for stage in self.stages]
        conveniences = dict(self.conveniences)
        train = dict(self.train)
        for parameter in self.parameters:
            if not self.is_active(parameter, values):
                continue
            if parameter.name not in values:
                raise FieldProblem(parameter.path, f"no value for the searched parameter {parameter.name!r}")
            value = values[parameter.name]
            section, *rest = parameter.path
            if section == "train":
                train[rest[0]] = value
            elif rest[0] == "stages":
                stages[rest[1]][rest[2]] = value
            elif rest[0] in CONVENIENCE_FIELDS:
                conveniences[rest[0]] = value
            else:
                arch[rest[0]] = value
        if knob is not None:
            name, value = knob
            (conveniences if name in CONVENIENCE_FIELDS else arch)[name] = value
        if conveniences.get("blocks_per_stage") is not None:
            for stage in stages:
                stage["depth"] = conveniences["blocks_per_stage"]
        if conveniences.get("width_multiplier") is not None:
            multiplier = conveniences["width_multiplier"]
            arch["stem_width"] = _scaled(arch.get("stem_width", _ARCH_DEFAULTS["stem_width"]), multiplier)
            for stage in stages:
                stage["width"] = _scaled(stage["width"], multiplier)
        block_searched = any(p.name == "block" for p in self.parameters)
        if block_searched and arch.get("block") not in BOTTLENECK_BLOCKS:
            arch.update(_NEUTRAL_FOR_OTHER_BLOCKS)
        try:
            spec = ArchSpec.from_dict({**arch, "stages": stages})
        except SpecError as error:
            raise _problem_from("space", error) from None
        try:
            settings = TrainSettings.from_dict({**train, "seed": seed})
        except SpecError as error:
            raise _problem_from("train", error) from None
        return spec, settings

    # ------------------------------------------------------------ matching
    def reference_values(self, values: Mapping[str, Any]) -> dict[str, Any]:
        """`values` with every searched design factor at its reference level (see `_matching`)."""
        reference = dict(values)
        for parameter in self.parameters:
            if is_design_factor(parameter.path):
                reference[parameter.name] = parameter.corner(high=False)
        return {name: value for name, value in reference.items()
                if (parameter := self.parameter(name)) is None or self.is_active(parameter, reference)}

    def _match_target(self, settings: MatchComplexity, values: Mapping[str, Any], seed: int) -> float:
        """The cost `values` is matched to: `match_complexity.to`, or the cost of its reference point."""
        if settings.to is not None:
            return float(settings.to)
        reference = self.reference_values(values)
        try:
            spec, _ = self.concrete(reference, seed)
        except FieldProblem as problem:
            raise FieldProblem(("space", "match_complexity"),
                               f"the reference point '{self.label(reference)}' of '{self.label(values)}' is "
                               f"{problem.what}, so it sets no target", problem.got, problem.allowed) from None
        return float(getattr(self.measure(spec), settings.by))

    def _knob_base(self, settings: MatchComplexity, spec: ArchSpec, values: Mapping[str, Any],
                   seed: int) -> tuple[Knob, ArchSpec, float]:
        """(knob, the spec it edits, its value in the study) for the point `values` whose unmatched spec is `spec`."""
        knob = KNOBS[settings.adjust]
        # A spec field is edited on the unmatched spec; a multiplier scales the study's own widths
        # (the spec at multiplier 1), and its value is the study's (1 where it sets none).
        if knob.identity is None:
            return knob, spec, getattr(spec, knob.name)
        return knob, self.concrete(values, seed, (knob.name, knob.identity))[0], self.conveniences.get(knob.name, knob.identity)

    def match_reach(self, values: Mapping[str, Any], seed: int) -> tuple[float, float] | None:
        """(least, most) the point `values` can cost in `match.by` as its knob moves within its bounds."""
        settings = self.match
        if settings is None:
            return None
        knob, base, current = self._knob_base(settings, self.concrete(values, seed)[0], values, seed)
        return reach(knob, base, current, lambda s: float(getattr(self.measure(s), settings.by)))

    def matched(self, values: Mapping[str, Any], seed: int) -> tuple[ArchSpec, TrainSettings, Match | None]:
        """The spec and settings of one choice, its knob solved to the target; Match None for unmatched studies."""
        settings = self.match
        if settings is None:
            return (*self.concrete(values, seed), None)
        spec, train = self.concrete(values, seed)
        knob, base, current = self._knob_base(settings, spec, values, seed)
        target = self._match_target(settings, values, seed)
        value, matched_spec = solve(knob, base, spec, current, lambda s: float(getattr(self.measure(s), settings.by)),
                                    target, settings.tolerance)
        match = Match(by=settings.by, adjust=knob.name, value=value, target=target,
                      unmatched=self.measure(spec), matched=self.measure(matched_spec),
                      tolerance=settings.tolerance)
        return matched_spec, train, match

    # --------------------------------------------------------- constraints
    def measure(self, spec: ArchSpec) -> Complexity:
        """Params and MACs of `spec` at the dataset's image size."""
        return complexity(spec, self.image_size)

    def violation(self, measured: Complexity) -> str | None:
        """"macs 3.1e8 > max_macs 3e8" for the first constraint broken, else None."""
        for name, bound in self.constraints.bounds().items():
            kind, metric = name.split("_", 1)
            value = getattr(measured, metric)
            if (kind == "max" and value > bound) or (kind == "min" and value < bound):
                sign = ">" if kind == "max" else "<"
                return f"{metric} {short_number(value)} {sign} {name} {short_number(bound)}"
        return None


def short_number(value: float) -> str:
    """3.1e8 rather than 310000000 or 3.1e+08."""
    text = f"{value:.3g}"
    return re.sub(r"e\+?(-?)0*(\d)", r"e\1\2", text)


# ------------------------------------------------------------------- building
def build_search_space(model: StudyModel) -> SearchSpace:
    """Split a validated study into fixed values and parameters; raises FieldProblem."""
    space = model.space
    arch: dict[str, Any] = preset(space.base).to_dict() if space.base else {}
    base_stages: list[dict[str, Any]] = arch.pop("stages", [])
    parameters: list[Parameter] = []

    def add(name: str, path: FieldPath, value: Any, conditional: bool = False) -> bool:
        if is_searched(value):
            parameters.append(Parameter(name, path, value, conditional))
            return True
        return False

    for name in ARCH_FIELDS:
        value = getattr(space, name)
        if value is not None and not add(name, ("space", name), value, name in BOTTLENECK_ONLY):
            arch[name] = value
    conveniences: dict[str, Any] = {}
    for name in CONVENIENCE_FIELDS:
        value = getattr(space, name)
        if value is not None and not add(name, ("space", name), value):
            conveniences[name] = value
    depth_from_convenience = space.blocks_per_stage is not None

    if space.stages is None:
        if not space.base:
            raise FieldProblem(("space", "stages"), "missing: without space.base the stages must be given",
                               allowed="a list of {depth, width, stride}, or space.base: a preset name")
        stages = [dict(stage) for stage in base_stages]
    else:
        stages = []
        for index, stage in enumerate(space.stages):
            fixed = dict(base_stages[index]) if index < len(base_stages) else {"stride": 1}
            if depth_from_convenience and stage.depth is not None:
                raise FieldProblem(("space", "stages", index, "depth"),
                                   "space.blocks_per_stage already sets the depth of every stage",
                                   allowed="either space.blocks_per_stage or per-stage depths")
            for field in ("depth", "width", "stride"):
                value = getattr(stage, field)
                if value is not None and not add(f"stages.{index}.{field}", ("space", "stages", index, field), value):
                    fixed[field] = value
            for field in ("depth", "width"):
                given = field in fixed or any(p.path == ("space", "stages", index, field) for p in parameters)
                if not given and not (field == "depth" and depth_from_convenience):
                    source = (f"space.base {space.base} has {len(base_stages)} stages" if space.base
                              else "there is no space.base to take it from")
                    raise FieldProblem(("space", "stages", index, field), f"missing ({source})",
                                       allowed="an integer >= 1")
            stages.append(fixed)

    classes = DATASET_CLASSES[model.data.dataset]
    if classes is None and space.num_classes is None:  # imagefolder: as many classes as the folder has
        raise FieldProblem(("space", "num_classes"), f"missing (dataset {model.data.dataset} has as many classes "
                           "as data.root has class folders, which a study is checked without reading)",
                           allowed="an integer >= 1: the number of class folders in data.root/train")
    if space.num_classes is not None and classes is not None and space.num_classes != classes:
        raise FieldProblem(("space", "num_classes"), f"dataset {model.data.dataset} has {classes} classes",
                           got=repr(space.num_classes), allowed=f"{classes} or leave it out")
    arch["num_classes"] = classes if classes is not None else space.num_classes
    if space.in_channels is not None:
        arch["in_channels"] = space.in_channels

    train: dict[str, Any] = {}
    for name in TRAIN_FIELDS:
        value = getattr(model.train, name)
        if not add(f"train.{name}", ("train", name), value):
            train[name] = tuple(value) if isinstance(value, list) else value

    _check_bottleneck_only(arch, parameters)
    if space.match_complexity is not None:
        _check_match(space.match_complexity, arch, parameters, model.search.strategy)
    return SearchSpace(arch=arch, stages=tuple(stages), conveniences=conveniences, train=train,
                       parameters=tuple(parameters), image_size=model.data.image_size or DATASET_IMAGE_SIZE[model.data.dataset],
                       constraints=space.constraints, match=space.match_complexity)


def _check_match(settings: MatchComplexity, arch: Mapping[str, Any], parameters: list[Parameter],
                 strategy: str) -> None:
    """The knob must exist at every point and not be searched; an Optuna study needs a fixed target."""
    path = ("space", "match_complexity")
    others = ", ".join(name for name in KNOBS if name != settings.adjust)
    searched = next((p for p in parameters if p.path == ("space", settings.adjust)), None)
    if searched is not None:
        raise FieldProblem((*path, "adjust"), f"space.{settings.adjust} is searched, so it cannot also be solved for",
                           got=repr(settings.adjust), allowed=f"{others}, or fix space.{settings.adjust}")
    if KNOBS[settings.adjust].bottleneck_only:
        block = next((p for p in parameters if p.name == "block"), None)
        blocks = block.levels if block is not None and block.levels else [arch.get("block", _ARCH_DEFAULTS["block"])]
        other = next((b for b in blocks if b not in BOTTLENECK_BLOCKS), None)
        if other is not None:
            raise FieldProblem((*path, "adjust"),
                               f"{settings.adjust} exists only in bottleneck blocks, and the block is {other!r}",
                               got=repr(settings.adjust),
                               allowed=f"{others}, or only {' or '.join(BOTTLENECK_BLOCKS)} blocks")
    if strategy != "grid" and settings.to is None:
        raise FieldProblem(path, "a sampled point has no reference level to match, so an optuna study needs a "
                                 "fixed target", allowed="`to: <MACs or params>`, e.g. {by: macs, to: 4.0e7, "
                                                         "adjust: width_multiplier}")


def _check_bottleneck_only(arch: Mapping[str, Any], parameters: list[Parameter]) -> None:
    """A searched bottleneck-only field must meet a bottleneck block somewhere in the space."""
    block = next((p for p in parameters if p.name == "block"), None)
    blocks = block.levels if block is not None and block.levels else [arch.get("block", _ARCH_DEFAULTS["block"])]
    if any(b in BOTTLENECK_BLOCKS for b in blocks):
        return
    for parameter in parameters:
        if parameter.conditional:
            raise FieldProblem(parameter.path,
                               f"searched, but the block is never a bottleneck ({', '.join(map(repr, blocks))}), "
                               "so it never applies",
                               allowed=f"a fixed value, or a block choice with {' or '.join(BOTTLENECK_BLOCKS)}")
