"""The validated Study, and the checks that need the whole study rather than one field.

Type and range checks are pydantic's (in `_schema`). Here the space is
expanded: a grid is enumerated and every point built; an Optuna space is
probed at its corners and at random points. A spec that cannot exist, a
constraint nothing can meet, or a grid point whose training would not fit a
trial's memory (`models.training_memory` against `models.trial_memory_budget`)
rejects the study before any training.
"""

from __future__ import annotations

import json
import random
from dataclasses import dataclass, field
from typing import Any, Callable

import yaml

import imagefeed
from models import ArchSpec, Complexity, MemoryBudget, MemoryEstimate, training_memory, trial_memory_budget

from ._errors import FieldProblem, Problem, StudyError, dotted, show
from ._forms import Choice, IntRange
from ._matching import Match
from ._schema import StudyModel, same_level
from ._search_section import Asha, Resources, Screen, WarmStart
from ._settings import DataSettings, TrainSettings
from ._space import SearchSpace, build_search_space

# Beyond this many combinations a grid is a mistake (use optuna); each point costs
# one spec build and one complexity count (~0.1 ms) at load time.
GRID_LIMIT = 20_000
# Random points an Optuna space is probed at, besides its two corners.
PROBE_SAMPLES = 256
# Fewer where each point is also matched (a solve measures tens of networks, ~5 ms).
MATCHED_PROBE_SAMPLES = 32

Locate = Callable[[FieldProblem], Problem]


@dataclass(frozen=True)
class SearchSettings:
    """The `search` section with defaults filled in and the grid's trial count derived."""

    strategy: str
    sampler: str | None                 # None for grid
    objectives: list[tuple[str, str]]   # [("val_acc", "max"), ("macs", "min")]
    trials: int                         # grid: points x seeds
    seeds: list[int]
    sampler_seed: int
    scheduler: str
    asha: Asha | None                   # set exactly when scheduler is asha
    resources: Resources
    max_concurrent: int | None
    keep_checkpoints: int
    storage: str | None
    results_every_s: float              # seconds between rewrites of the tables during a run
    reuse: list[str]                    # earlier run folders whose matching trials are not trained again
    warm_start: WarmStart | None        # optuna only: an earlier run's best trials told to the sampler first
    screen: Screen | None = None        # optuna only: samples scored by a zero-cost proxy, the best fraction trained
    pack_seeds: int = 1                 # grid only: seeds of one point trained as one model in one trial


@dataclass(frozen=True)
class GridPoint:
    """One point of a grid study: a unique readable label and the parameter values for `resolve`."""

    label: str
    params: dict[str, Any]
    spec: ArchSpec              # matched, where the study matches complexity
    complexity: Complexity      # of `spec`
    match: Match | None = None  # how it was matched; None without space.match_complexity


@dataclass(frozen=True)
class GridInfo:
    """The points a grid runs, and how many combinations were dropped on the way."""

    points: tuple[GridPoint, ...]
    dropped_by_constraints: int
    merged_duplicates: int


@dataclass(frozen=True)
class Study:
    """A validated study: nothing in it can fail before training starts."""

    name: str
    question: str
    path: str | None
    raw: dict[str, Any] = field(repr=False)   # as loaded, after --set overrides
    data: DataSettings
    search: SearchSettings
    model: StudyModel = field(repr=False)     # every section as validated
    search_space: SearchSpace = field(repr=False)
    grid: GridInfo | None = field(repr=False)  # None for optuna studies
    # What one trial may use on this machine (`models.trial_memory_budget`); None: not checked.
    memory_budget: MemoryBudget | None = field(default=None, repr=False)

    def data_settings(self) -> DataSettings:
        """The concrete data settings every trial of the study shares."""
        return self.data

    def to_yaml(self) -> str:
        """The study as run (overrides applied), for `study.yaml` in the run folder."""
        return yaml.safe_dump(self.raw, sort_keys=False, default_flow_style=None, allow_unicode=True)

    @property
    def max_epochs(self) -> int:
        """The longest training any trial gets (the top of a searched `train.epochs`)."""
        return max_epochs(self.model)

    @property
    def match_complexity(self) -> dict[str, Any] | None:
        """`space.match_complexity` with its defaults filled in, as plain data (for run.json); None if unset."""
        settings = self.model.space.match_complexity
        return None if settings is None else settings.model_dump()

    def training_memory(self, spec: ArchSpec, train: TrainSettings) -> MemoryEstimate:
        """The estimated peak memory of training `spec` with `train` in one trial of this study."""
        return trial_training_memory(spec, train, self.search_space.image_size, self.search.resources.gpus > 0,
                                     self.search.pack_seeds)

    def memory_refusal(self, spec: ArchSpec, train: TrainSettings) -> str | None:
        """Why training `spec` with `train` would not fit one trial's memory ("needs about ..."); None if it fits."""
        if self.memory_budget is None:
            return None
        return self.memory_budget.refusal(self.training_memory(spec, train))

    def is_searched(self, path: str) -> bool:
        """True when the dotted field path (`train.lr`, `space.shortcut`) is searched in this study."""
        return any(".".join(str(part) for part in parameter.path) == path
                   for parameter in self.search_space.parameters)


def max_epochs(model: StudyModel) -> int:
    """The largest `train.epochs` a validated study can give a trial."""
    epochs = model.train.epochs
    if isinstance(epochs, Choice):
        return max(epochs.choice)
    return epochs.high if isinstance(epochs, IntRange) else epochs


def trial_training_memory(spec: ArchSpec, train: TrainSettings, image_size: int, on_gpu: bool,
                          packed_seeds: int = 1) -> MemoryEstimate:
    """`models.training_memory` of one trial, with the activation precision search.train will use; a trial of
    `packed_seeds` seeds (search.pack_seeds) holds that many copies of every part."""
    # search.train autocasts to bf16 where train.amp is bf16, or auto on a GPU.
    bf16 = train.amp == "bf16" or (train.amp == "auto" and on_gpu)
    one = training_memory(spec, image_size, train.batch_size, train.optimizer, activation_bytes=2 if bf16 else 4)
    return one if packed_seeds == 1 else one.times(packed_seeds)


# ---------------------------------------------------------------- checks
_UNITS = {"macs": "MACs", "params": "params"}
_MEMORY_REMEDY = ("a narrower or shallower network, a smaller train.batch_size, fewer trials at once "
                  "(search.max_concurrent), or more memory per trial (search.resources.gpus or cpus)")


def _check_satisfiable(space: SearchSpace, measured: list[Complexity], sampled: bool) -> None:
    """Raise when no measured architecture meets the constraints, naming the one that cannot be met."""
    bounds = space.constraints.bounds()
    if not bounds or any(space.violation(each) is None for each in measured):
        return
    scope = f" of {len(measured)} sampled" if sampled else ""
    for name, bound in bounds.items():
        kind, metric = name.split("_", 1)
        values = [getattr(each, metric) for each in measured]
        extreme = min(values) if kind == "max" else max(values)
        if (kind == "max" and extreme > bound) or (kind == "min" and extreme < bound):
            which = "smallest" if kind == "max" else "largest"
            raise FieldProblem(("space", "constraints", name),
                               f"no architecture in the space satisfies it (the {which}{scope} has "
                               f"{extreme:,} {_UNITS[metric]})",
                               got=f"{bound:g}", allowed=f"{'>=' if kind == 'max' else '<='} {extreme:,}")
    raise FieldProblem(("space", "constraints"),
                       "no architecture in the space satisfies all constraints at once (each alone can be met)",
                       got=str(bounds))


def _check_match_target(space: SearchSpace, points: list[dict[str, Any]], seed: int, sampled: bool) -> None:
    """A fixed match_complexity.to must be within some point's reach (within tolerance); else the nearest is named."""
    settings = space.match
    if settings is None or settings.to is None or not points:
        return
    reaches = [each for values in points if (each := space.match_reach(values, seed)) is not None]
    if not reaches:
        return
    least, most = min(low for low, _ in reaches), max(high for _, high in reaches)
    target = float(settings.to)
    # A point within tolerance of its target counts as matched, so a target that close to the reach is reachable.
    if least / (1 + settings.tolerance) <= target <= most / (1 - settings.tolerance):
        return
    scope = f"the {len(points)} probed points" if sampled else f"the {len(points)} grid points"
    unit = _UNITS[settings.by]
    nearest = least if target < least else most
    raise FieldProblem(("space", "match_complexity", "to"),
                       f"no point of the space can reach it: with {settings.adjust} anywhere in its range, {scope} "
                       f"cost {least:.4g} to {most:.4g} {unit}", got=f"{target:g}",
                       allowed=f"a target in [{least:.4g}, {most:.4g}] {unit}; the nearest reachable is {nearest:.4g}")


def _built(space: SearchSpace, values: dict[str, Any], seed: int,
           what: str) -> tuple[ArchSpec, TrainSettings, Match | None]:
    try:
        return space.matched(values, seed)
    except FieldProblem as problem:
        if problem.path[:2] == ("space", "match_complexity"):  # already names the point
            raise
        raise FieldProblem(problem.path, f"{what} '{space.label(values)}' is {problem.what}",
                           problem.got, problem.allowed) from None


def _enumerate_grid(space: SearchSpace, seed: int) -> GridInfo:
    for parameter in space.parameters:
        if parameter.grid_size() == 0:  # counted, not listed: a tiny step must not fill memory
            reason = "a log range has no grid steps" if parameter.domain.log else "a float range without a step"
            raise FieldProblem(parameter.path, f"grid needs a step or a choice ({reason})",
                               allowed="{choice: [...]}, {int: [low, high]} or {float: [low, high], step: s}")
    bound = space.grid_upper_bound()
    if bound > GRID_LIMIT:
        raise FieldProblem(("space",), f"the grid has up to {bound:,} points",
                           allowed=f"at most {GRID_LIMIT:,}; search large spaces with strategy: optuna")
    seen: set[tuple[str, str]] = set()
    candidates: list[tuple[dict[str, Any], ArchSpec, Complexity, Match | None]] = []
    duplicates = 0
    for values in space.grid():
        # Matched once here: resolve() takes the point's spec, it does not solve again.
        spec, train, match = _built(space, values, seed, "the grid point")
        # Two combinations that build the same network with the same training are one point
        # (the ratio of a basic block, a width multiplier that rounds to the same widths).
        identity = (spec.key(), json.dumps(train.to_dict(), sort_keys=True))
        if identity in seen:
            duplicates += 1
            continue
        seen.add(identity)
        candidates.append((values, spec, space.measure(spec), match))
    _check_match_target(space, [values for values, _, _, _ in candidates], seed, sampled=False)
    _check_satisfiable(space, [measured for _, _, measured, _ in candidates], sampled=False)
    points = []
    labels: set[str] = set()
    for values, spec, measured, match in candidates:
        if space.violation(measured) is not None:
            continue
        label = space.label(values)
        while label in labels:  # only if two levels print alike (0.30001 and 0.3)
            label += "'"
        labels.add(label)
        points.append(GridPoint(label, values, spec, measured, match))
    return GridInfo(tuple(points), len(candidates) - len(points), duplicates)


def _probe(space: SearchSpace, sampler_seed: int, seed: int) -> list[tuple[ArchSpec, TrainSettings]]:
    """Build (and match) the corners and PROBE_SAMPLES random points of an Optuna space; returns them."""
    rng = random.Random(sampler_seed)
    candidates = [("the low corner", space.corner(high=False)), ("the high corner", space.corner(high=True))]
    samples = PROBE_SAMPLES if space.match is None else MATCHED_PROBE_SAMPLES
    candidates += [("the sampled point", space.draw(rng)) for _ in range(samples)]
    built = [_built(space, values, seed, what)[:2] for what, values in candidates]
    _check_match_target(space, [values for _, values in candidates], seed, sampled=True)
    _check_satisfiable(space, [space.measure(spec) for spec, _ in built], sampled=True)
    return built


def _check_grid_memory(space: SearchSpace, grid: GridInfo, budget: MemoryBudget, on_gpu: bool, seed: int,
                       packed_seeds: int = 1) -> None:
    """Every grid point (`packed_seeds` of its seeds at once) must fit one trial's memory: the first that does not
    rejects the study."""
    if budget.bytes is None:
        return
    train_names = [p.name for p in space.parameters if p.path[0] == "train"]
    trains: dict[tuple[Any, ...], TrainSettings] = {}  # few distinct training settings, many points
    misfits = []
    for point in grid.points:
        key = tuple(point.params.get(name) for name in train_names)
        if key not in trains:
            trains[key] = space.concrete(point.params, seed)[1]
        refusal = budget.refusal(trial_training_memory(point.spec, trains[key], space.image_size, on_gpu,
                                                       packed_seeds))
        if refusal is not None:
            misfits.append((point.label, refusal))
    if misfits:
        label, refusal = misfits[0]
        more = f" ({len(misfits)} of the {len(grid.points)} points do not fit)" if len(misfits) > 1 else ""
        packed = f", {packed_seeds} seeds packed (search.pack_seeds)," if packed_seeds > 1 else ""
        remedy = f"fewer packed seeds (search.pack_seeds), {_MEMORY_REMEDY}" if packed_seeds > 1 else _MEMORY_REMEDY
        raise FieldProblem(("space",), f"the grid point '{label}'{packed} {refusal}{more}", allowed=remedy)


def _check_probe_memory(space: SearchSpace, probed: list[tuple[ArchSpec, TrainSettings]], budget: MemoryBudget,
                        on_gpu: bool) -> None:
    """Some probed point of an Optuna space must fit one trial's memory (the rest are rejected when sampled)."""
    if budget.bytes is None or not probed:
        return
    estimates = [trial_training_memory(spec, train, space.image_size, on_gpu) for spec, train in probed]
    smallest = min(estimates, key=lambda estimate: estimate.total)
    refusal = budget.refusal(smallest)
    if refusal is not None:
        raise FieldProblem(("space",), f"no architecture in the space fits a trial's memory: the smallest of "
                                       f"{len(probed)} sampled {refusal}", allowed=_MEMORY_REMEDY)


def _search_settings(model: StudyModel, points: int | None) -> SearchSettings:
    section = model.search
    if section.seeds is not None:
        seeds = list(section.seeds)
    else:
        seeds = list(range(section.repeats)) if section.repeats is not None else [0]
    if section.strategy == "grid":
        derived = points * len(seeds)  # type: ignore[operator]
        if section.trials is not None and section.trials != derived:
            raise FieldProblem(("search", "trials"),
                               f"a grid runs every point with every seed ({points} points x {len(seeds)} seeds "
                               f"= {derived} trials)", got=repr(section.trials),
                               allowed=f"{derived}, or leave trials out")
        trials = derived
    else:
        if section.trials is None:
            raise FieldProblem(("search", "trials"), "missing: strategy optuna needs a trial budget",
                               allowed="an integer >= 1")
        trials = section.trials
    asha = None
    if section.scheduler == "asha":
        asha = section.asha or Asha()
        if "val_acc" not in [metric for metric, _ in section.objectives]:
            raise FieldProblem(("search", "scheduler"), "asha stops trials on val_acc, which is not an objective",
                               got=repr(section.scheduler), allowed="none, or add val_acc:max to objectives")
    return SearchSettings(
        strategy=section.strategy, sampler=section.sampler if section.strategy == "optuna" else None,
        objectives=list(section.objectives), trials=trials, seeds=seeds, sampler_seed=section.sampler_seed,
        scheduler=section.scheduler, asha=asha, resources=section.resources,
        max_concurrent=section.max_concurrent, keep_checkpoints=section.keep_checkpoints, storage=section.storage,
        results_every_s=section.results_every_s, reuse=list(section.reuse), warm_start=section.warm_start,
        screen=section.screen, pack_seeds=section.pack_seeds)


def _check_pack_seeds(model: StudyModel, search: SearchSettings) -> None:
    """search.pack_seeds packs seeds of one grid point into one model: a grid's, trained whole, on one device."""
    pack = search.pack_seeds
    if pack == 1:
        return
    problem = None
    if search.strategy != "grid":
        problem = ("packs the seeds of one grid point, and an optuna study samples each trial's architecture",
                   "1, or strategy: grid")
    elif search.asha is not None:
        problem = ("ASHA would stop or promote all packed seeds on one verdict",
                   "1, or scheduler: none")
    elif search.resources.workers > 1:
        problem = (f"a packed model trains on one device, and search.resources.workers is {search.resources.workers}",
                   "1, or workers: 1")
    elif imagefeed.dataset_kind(model.data.dataset).streamed:
        problem = (f"packed seeds train on a whole-tensor dataset, and data.dataset {model.data.dataset!r} is "
                   f"streamed", f"1, or a whole-tensor dataset ({', '.join(imagefeed.whole_tensor_kinds())})")
    elif pack > len(search.seeds):
        problem = (f"more than the {len(search.seeds)} seed(s) each point trains", f"an integer in [1, {len(search.seeds)}]")
    if problem is not None:
        reason, allowed = problem
        raise FieldProblem(("search", "pack_seeds"), reason, got=repr(pack), allowed=allowed)


def _check_asha_budget(model: StudyModel, search: SearchSettings) -> None:
    if search.asha is None:
        return
    most = max_epochs(model)
    if search.asha.grace_period > most:
        raise FieldProblem(("search", "asha", "grace_period"),
                           f"longer than the longest training ({most} epochs), so ASHA never stops a trial",
                           got=repr(search.asha.grace_period), allowed=f"an integer in [1, {most}]")


def _check_batch_splits(model: StudyModel, search: SearchSettings) -> None:
    """Every batch size the study can give a trial splits evenly over its data-parallel workers."""
    workers = search.resources.workers
    batch = model.train.batch_size
    if workers == 1:
        return
    if isinstance(batch, IntRange):
        # low, low + step, ..., high are all multiples of `workers` exactly when low and step are.
        uneven = [value for value in (batch.low, batch.step) if value % workers]
        shown = f"int: [{batch.low}, {batch.high}], step {batch.step}"
        remedy = f"a range whose low and step are multiples of {workers}"
    else:
        uneven = [value for value in (batch.choice if isinstance(batch, Choice) else [batch]) if value % workers]
        shown, remedy = ", ".join(map(str, uneven)), f"multiples of {workers}"
    if uneven:
        raise FieldProblem(("train", "batch_size"),
                           f"the global batch is split evenly over search.resources.workers ({workers}), "
                           f"and {', '.join(map(str, uneven))} is not a multiple of {workers}",
                           got=shown, allowed=f"{remedy}, or fewer workers")


def _check_primary(model: StudyModel, space: SearchSpace) -> None:
    """Each comparison of report.primary names a searched factor, one of its levels and its reference level.

    The report answers a primary comparison with the test it already runs, each level against the factor's
    reference (its first level), so a comparison of two other levels has no test to answer it.
    """
    for index, comparison in enumerate(model.report.primary or ()):
        path = ("report", "primary", index)
        parameter = space.parameter(comparison.factor)
        if parameter is None:
            searched = ", ".join(p.name for p in space.parameters) or "none: the study searches no field"
            raise FieldProblem((*path, "factor"), "not a factor of this study (a field it searches)",
                               got=show(comparison.factor), allowed=searched)
        levels = parameter.grid_levels() if model.search.strategy == "grid" else parameter.levels
        if levels is None:
            raise FieldProblem((*path, "factor"), f"{parameter.name} is a numeric range that the "
                               f"{model.search.strategy} search samples, so the report compares no levels of it",
                               got=show(comparison.factor), allowed="a factor searched by a choice (or a grid)")
        shown = ", ".join(map(show, levels))
        for key in ("level", "reference"):
            value = getattr(comparison, key)
            if any(same_level(value, level) for level in levels):
                continue
            # The report shows a trial without the field under "(none)", which is no level: nothing is set to test.
            absent = (f" ({parameter.name} exists only for bottleneck blocks: the trials without it, the report's "
                      "'(none)', belong to none of its levels)" if parameter.conditional else "")
            raise FieldProblem((*path, key), f"not a level of {parameter.name}{absent}", got=show(value),
                               allowed=shown)
        if not same_level(comparison.reference, levels[0]):
            raise FieldProblem((*path, "reference"),
                               f"the report tests each level of {parameter.name} against its reference level, the "
                               f"first of {dotted(parameter.path)}", got=show(comparison.reference),
                               allowed=f"{show(levels[0])} (or list {show(comparison.reference)} first)")


def _data_settings(model: StudyModel) -> DataSettings:
    try:
        return DataSettings.from_dict(model.data.model_dump())
    except ValueError as error:  # the schema mirrors DataSettings' checks; this is a backstop
        raise FieldProblem(("data",), str(error)) from None


def build_study(model: StudyModel, raw: dict[str, Any], path: str | None, locate: Locate) -> Study:
    """Run the whole-study checks and assemble the Study; StudyError (located) if any fails."""
    try:
        space = build_search_space(model)
        first_seed = (model.search.seeds or [0])[0]
        grid = _enumerate_grid(space, first_seed) if model.search.strategy == "grid" else None
        probed = _probe(space, model.search.sampler_seed, first_seed) if grid is None else []
        search = _search_settings(model, len(grid.points) if grid is not None else None)
        _check_asha_budget(model, search)
        _check_batch_splits(model, search)
        _check_pack_seeds(model, search)
        _check_primary(model, space)
        budget = trial_memory_budget(search.resources.gpus, search.resources.cpus, search.max_concurrent)
        on_gpu = search.resources.gpus > 0
        if grid is not None:
            _check_grid_memory(space, grid, budget, on_gpu, first_seed, search.pack_seeds)
        else:
            _check_probe_memory(space, probed, budget, on_gpu)
        data = _data_settings(model)
    except FieldProblem as problem:
        raise StudyError([locate(problem)], path) from None
    return Study(name=model.name, question=model.question, path=path, raw=raw, data=data, search=search,
                 model=model, search_space=space, grid=grid, memory_budget=budget)
