"""From a validated study to the choices of one trial, and from those choices to concrete settings.

Optuna studies are sampled define-by-run (`define_by_run`), so Ray Tune's
`OptunaSearch` can take the space as a callable. Grid studies are a list of
points crossed with the seeds through Optuna's GridSampler over
``{"point": labels, "seed": seeds}`` (`grid_search_space`). Either way,
`resolve(study, trial.params)` gives the ArchSpec and TrainSettings.
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import Any, Callable, Mapping

from models import ArchSpec

from ._settings import TrainSettings
from ._study import GridPoint, Study

# Parameter names that are not space parameters: the grid point and the training seed.
POINT, SEED = "point", "seed"


@dataclass(frozen=True)
class TrialPlan:
    """What one trial trains: a concrete spec, concrete settings (seed in), and the factor values."""

    spec: ArchSpec            # matched, where the study matches complexity
    train: TrainSettings
    factors: dict[str, Any]   # every searched parameter; None where it does not apply (a basic block's ratio)
    label: str                # "shortcut=A, blocks_per_stage=3"
    # `Match.record()`: {"by", "adjust", "value", "target", "gap"}; None without space.match_complexity.
    matched: dict[str, Any] | None = None

    def to_dict(self) -> dict[str, Any]:
        """Plain data (spec dict, train dict, factors, label, matched): what travels from the driver to a worker."""
        return {"spec": self.spec.to_dict(), "train": self.train.to_dict(), "factors": dict(self.factors),
                "label": self.label, "matched": None if self.matched is None else dict(self.matched)}

    @classmethod
    def from_dict(cls, data: Mapping[str, Any]) -> "TrialPlan":
        """Inverse of `to_dict`; the spec and settings validate themselves, the study is not needed."""
        matched = data.get("matched")  # absent from plans written before matching existed
        return cls(spec=ArchSpec.from_dict(data["spec"]), train=TrainSettings.from_dict(data["train"]),
                   factors=dict(data["factors"]), label=str(data["label"]),
                   matched=None if matched is None else dict(matched))


def _is_grid(study: Study) -> bool:
    return study.grid is not None


def grid_points(study: Study) -> list[GridPoint]:
    """Every point of a grid study, deduplicated and within the constraints (seeds not crossed in)."""
    if study.grid is None:
        raise ValueError(f"grid_points: study {study.name!r} uses strategy {study.search.strategy!r}, not grid")
    return list(study.grid.points)


def grid_search_space(study: Study) -> dict[str, list[Any]]:
    """The GridSampler search space of a grid study: every point label crossed with every seed."""
    return {POINT: [point.label for point in grid_points(study)], SEED: list(study.search.seeds)}


def define_by_run(study: Study) -> Callable[[Any], dict[str, Any] | None]:
    """A function that makes one trial's `suggest_*` calls; returns None (no constants for Ray Tune)."""
    seeds = list(study.search.seeds)
    if _is_grid(study):
        labels = [point.label for point in grid_points(study)]

        def suggest_grid_point(trial: Any) -> None:
            trial.suggest_categorical(POINT, labels)
            trial.suggest_categorical(SEED, seeds)
            return None

        return suggest_grid_point
    space = study.search_space

    def suggest(trial: Any) -> None:
        space.suggest(trial)
        # One seed is a constant; several make the seed a categorical parameter.
        if len(seeds) > 1:
            trial.suggest_categorical(SEED, seeds)
        return None

    return suggest


def _seed(value: Any) -> int:
    if isinstance(value, bool) or not isinstance(value, int) or value < 0:
        raise ValueError(f"seed: got {value!r}; allowed: an integer >= 0")
    return value


def resolve(study: Study, params: Mapping[str, Any]) -> TrialPlan:
    """The TrialPlan of one trial's parameters (`trial.params`, or {"point": label, "seed": s}); ValueError if invalid."""
    values = dict(params)
    seed = _seed(values.pop(SEED, study.search.seeds[0]))
    space = study.search_space
    point = None
    if POINT in values:
        label = values.pop(POINT)
        points = {point.label: point for point in grid_points(study)}
        if label not in points:
            raise ValueError(f"point: got {label!r}; allowed: one of the {len(points)} grid point labels")
        if values:
            raise ValueError(f"{sorted(values)[0]}: given with a grid point; allowed: only point and seed")
        point = points[label]
        values = dict(point.params)
    known = [parameter.name for parameter in space.parameters]
    unknown = sorted(set(values) - set(known))
    if unknown:
        raise ValueError(f"{unknown[0]}: not a parameter of study {study.name!r}; "
                         f"allowed: {', '.join(known + [SEED]) if known else SEED}")
    if point is not None:  # a grid point was matched once, when the study was loaded
        spec, (_, train), match = point.spec, space.concrete(values, seed), point.match
    else:
        spec, train, match = space.matched(values, seed)
    factors = {parameter.name: values.get(parameter.name) if space.is_active(parameter, values) else None
               for parameter in space.parameters}
    return TrialPlan(spec=spec, train=train, factors=factors, label=space.label(values),
                     matched=None if match is None else match.record())


def constraint_violation(study: Study, spec: ArchSpec, train: TrainSettings | None = None) -> str | None:
    """Why a sampled trial is rejected before training, else None.

    "macs 3.1e8 > max_macs 3e8" when `spec` breaks a constraint of the study;
    "needs about 57 GiB (...) to train, more than the 11.7 GiB (...) it may use"
    when training it with `train` would not fit one trial's memory. Without
    `train`, the study's largest training settings (searched ones at their
    high end) stand in.
    """
    space = study.search_space
    violation = space.violation(space.measure(spec))
    if violation is not None:
        return violation
    train = train if train is not None else _largest_training(study)
    return None if train is None else study.memory_refusal(spec, train)


def _largest_training(study: Study) -> TrainSettings | None:
    """The fixed training settings with every searched one at its high end (the largest batch); None if invalid."""
    space = study.search_space
    searched = {parameter.path[1]: parameter.corner(high=True) for parameter in space.parameters
                if parameter.path[0] == "train"}
    try:
        return TrainSettings.from_dict({**space.train, **searched, "seed": study.search.seeds[0]})
    except ValueError:  # a high end that breaks a rule with another (warm-up past the epochs)
        return None


def factors(study: Study) -> dict[str, dict[str, Any]]:
    """Every searched parameter -> {"levels": [...] or None for a numeric range, "reference": first level}."""
    result = {}
    for parameter in study.search_space.parameters:
        levels = parameter.grid_levels() if _is_grid(study) else parameter.levels
        result[parameter.name] = {"levels": levels, "reference": levels[0] if levels else None}
    return result
