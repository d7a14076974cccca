"""Matched-complexity ablations: solve one knob so that a point costs what its target costs.

    space:
      match_complexity: {by: macs, tolerance: 0.01, adjust: width_multiplier}

**The target.** A grid point's target is the same point with every searched
*design* factor at its reference level (its first level), and every *size*
factor as the point has it. Size factors (`blocks_per_stage`,
`width_multiplier`, `stem_width`, a stage's `depth` or `width`) change the
cost on purpose: depth 56 is meant to cost more than depth 20. Design factors
(`shortcut`, `block`, `stem`, `bottleneck_ratio`, `groups`, a stage's
`stride`, ...) are what the study compares at equal cost. So shortcut B at
blocks_per_stage=9 matches shortcut A at blocks_per_stage=9, and a point whose
design factors are all at their reference is its own target. Training
settings cost nothing and are left as they are. With ``to: 4.0e7`` every
point's target is that number instead; Optuna studies must give one, since a
sampled point has no reference level.

**The solve.** `adjust` names the knob (`KNOBS`). Cost grows with each knob,
so a bisection finds the value where the cost crosses the target, and every
network the knob can make near that value is measured with the analytic
`models.complexity` (about 0.1 ms each); the closest to the target wins (ties:
the value nearest the study's own). Widths stay whole channels, and the ones
a spec needs (an even deep stem, a grouped bottleneck's inner width divisible
by `groups`). A point already within `tolerance` of its target is left as it
is, so a level that costs what its reference costs (shortcut none vs A) keeps
the reference's widths. Where nothing reaches the tolerance, the closest is
kept and its gap recorded; the dry run flags it. A fixed `to` that no point can
reach with its knob anywhere in its range (`reach`) is refused at load, naming
the nearest cost that can be matched.

`width_multiplier` scales the stem and every stage width by m. Rounding each
width to its nearest integer moves a narrow stage by a large step (16 -> 15
channels is 6% of a ResNet-20's first stage), so no single m may land within
1%. The solve therefore rounds each width down or up on its own: every width
stays within one channel of w * m, so one stage may take 15.2 -> 16 while
another takes 61.9 -> 61. Equal widths round alike, so a stem as wide as the
first stage stays as wide (and keeps that stage's identity shortcut).

The recorded value (`Match.value`, the `match.value` column) is the multiplier
of the study's widths (1 = as the study writes them), or the matched spec's
`stem_width` or `bottleneck_ratio`; the widths themselves are in the spec.
"""

from __future__ import annotations

import itertools
import math
from dataclasses import dataclass
from typing import Any, Callable, Iterator, Mapping

from models import BOTTLENECK_BLOCKS, ArchSpec, Complexity, SpecError

# What a point can be matched by: attributes of models.Complexity (FLOPs are 2 x MACs, so macs covers them).
MATCH_METRICS = ("macs", "params")
# Fields whose levels change the cost on purpose; every other searched space field is matched.
SIZE_FIELDS = ("blocks_per_stage", "width_multiplier", "stem_width", "depth", "width")
# The solve searches a knob within this factor of its value in the study, either way.
KNOB_RANGE = 8.0
# Bisection steps over a real-valued knob: [m / 8, 8 m] halved 30 times is far finer than a channel.
BISECTION_STEPS = 30
# Knob values a reach is measured at, from the bottom of the knob's range to the top: only where the end
# itself makes no valid network (a width past the largest a spec allows) is the next one tried.
REACH_STEPS = 8
# Stem widths measured on each side of the crossing (a projection shortcut appears or
# vanishes where the stem width equals the first stage's, so cost is not quite monotone there).
STEM_WINDOW = 4

Rule = Callable[[int], bool]
Edit = Mapping[str, Any]  # ArchSpec fields to replace


def is_size_factor(path: tuple[Any, ...]) -> bool:
    """True for a searched field whose levels change the cost on purpose (a depth or a width)."""
    return path[0] == "space" and path[-1] in SIZE_FIELDS


def is_design_factor(path: tuple[Any, ...]) -> bool:
    """True for a searched architecture field that a matched study compares at equal cost."""
    return path[0] == "space" and not is_size_factor(path)


# ----------------------------------------------------------- allowed widths
def _any_width(width: int) -> bool:
    return width >= 1


def stem_rule(stem: str) -> Rule:
    """Stem widths a spec accepts: the deep stem halves its width in its first two convs, so even ones."""
    return (lambda width: width >= 2 and width % 2 == 0) if stem == "deep" else _any_width


def stage_rule(block: str, groups: int, ratio: float) -> Rule:
    """Stage widths a spec accepts: a grouped bottleneck's inner width round(width * ratio) splits into groups."""
    if block not in BOTTLENECK_BLOCKS or groups == 1:
        return _any_width
    return lambda width: round(width * ratio) >= 1 and round(width * ratio) % groups == 0


def _below(value: float, rule: Rule) -> int | None:
    """The largest width <= value that `rule` allows, or None."""
    width = math.floor(value + 1e-9)
    while width >= 1 and not rule(width):
        width -= 1
    return width if width >= 1 else None


def _above(value: float, rule: Rule) -> int:
    """The smallest width >= value that `rule` allows (some width always is: any multiple of a group width)."""
    width = max(1, math.ceil(value - 1e-9))
    while not rule(width):
        width += 1
    return width


def nearest_width(value: float, rule: Rule) -> int:
    """round(value) if allowed, else the allowed width nearest `value` (the wider on a tie); never below 1."""
    rounded = max(1, round(value))
    if rule(rounded):
        return rounded
    below, above = _below(value, rule), _above(value, rule)
    return above if below is None or above - value <= value - below else below


def _short_value_between(low: float, high: float) -> float:
    """The value in (low, high) with the fewest significant digits, so rows read 0.96, not 0.95972."""
    middle = (low + high) / 2
    for digits in range(1, 16):
        value = float(f"{middle:.{digits}g}")
        if low < value < high:
            return value
    return middle


def _intervals(steps: set[float], low: float, high: float) -> list[float]:
    """One short value inside each interval between consecutive `steps` in [low, high]."""
    ordered = sorted({low, high, *(s for s in steps if low < s < high)})
    return [_short_value_between(a, b) for a, b in zip(ordered, ordered[1:]) if b > a]


# -------------------------------------------------------------------- knobs
class Knob:
    """A study field the solve may change: its range, the network at a value, and the networks near one."""

    name: str
    bottleneck_only = False
    # A multiplier's neutral value, at which the base spec shows the widths it scales;
    # None for an ArchSpec field, whose base spec is the unmatched one.
    identity: float | None = None
    integer = False

    def bounds(self, base: ArchSpec, current: float) -> tuple[float, float]:
        """Where the solve looks: within KNOB_RANGE of the study's value."""
        return current / KNOB_RANGE, current * KNOB_RANGE

    def at(self, base: ArchSpec, value: float) -> Edit:
        """The spec fields of the network at `value` (what bisection measures)."""
        raise NotImplementedError

    def near(self, base: ArchSpec, value: float) -> Iterator[tuple[float, Edit]]:
        """Every network the knob makes near `value`, with the knob value it is recorded under."""
        raise NotImplementedError


class WidthMultiplier(Knob):
    """Every width (stem and stages) times m, each rounded to a whole channel the spec allows."""

    name = "width_multiplier"
    identity = 1.0

    @staticmethod
    def _widths(base: ArchSpec) -> tuple[list[int], list[Rule]]:
        rule = stage_rule(base.block, base.groups, base.bottleneck_ratio)
        return ([base.stem_width, *(stage.width for stage in base.stages)],
                [stem_rule(base.stem), *(rule for _ in base.stages)])

    @staticmethod
    def _edit(base: ArchSpec, widths: list[int]) -> Edit:
        return {"stem_width": widths[0],
                "stages": [{"depth": s.depth, "width": w, "stride": s.stride} for s, w in zip(base.stages, widths[1:])]}

    def at(self, base: ArchSpec, value: float) -> Edit:
        widths, rules = self._widths(base)
        return self._edit(base, [nearest_width(w * value, rule) for w, rule in zip(widths, rules)])

    def near(self, base: ArchSpec, value: float) -> Iterator[tuple[float, Edit]]:
        widths, rules = self._widths(base)
        # Equal widths are rounded alike, so a stem as wide as the first stage stays so (and
        # keeps that stage's identity shortcut); every other width rounds down or up on its own.
        distinct = list(dict.fromkeys(zip(widths, rules)))
        # Within one channel of the narrowest width either way; between two steps (where some
        # w * m is an allowed width) the widths below and above each w * m are fixed.
        spread = value / min(widths)
        low, high = value - spread, value + spread
        steps = {a / w for w, rule in distinct
                 for a in range(max(1, math.floor(w * low)), math.ceil(w * high) + 1) if rule(a)}
        seen: set[tuple[int, ...]] = set()
        # Nearest the crossing first: a network several m make is recorded under the nearest.
        for m in sorted(_intervals(steps, low, high), key=lambda m: abs(m - value)):
            below = [_below(w * m, rule) for w, rule in distinct]
            above = [_above(w * m, rule) for w, rule in distinct]
            if None in below:
                continue
            for ups in itertools.product((False, True), repeat=len(distinct)):
                rounded = tuple(a if up else b for up, b, a in zip(ups, below, above))
                if rounded not in seen:
                    seen.add(rounded)
                    chosen = dict(zip(distinct, rounded))
                    yield m, self._edit(base, [chosen[key] for key in zip(widths, rules)])  # type: ignore[misc]


class StemWidth(Knob):
    """The stem's output channels (and so the first stage's input)."""

    name = "stem_width"
    integer = True

    def bounds(self, base: ArchSpec, current: float) -> tuple[float, float]:
        return 1, current * KNOB_RANGE

    def at(self, base: ArchSpec, value: float) -> Edit:
        return {"stem_width": nearest_width(value, stem_rule(base.stem))}

    def near(self, base: ArchSpec, value: float) -> Iterator[tuple[float, Edit]]:
        rule = stem_rule(base.stem)
        for width in range(max(1, round(value) - STEM_WINDOW), round(value) + STEM_WINDOW + 1):
            if rule(width):
                yield width, {"stem_width": width}


class BottleneckRatio(Knob):
    """The inner width of every bottleneck over its output width: round(width * ratio) channels."""

    name = "bottleneck_ratio"
    bottleneck_only = True

    def bounds(self, base: ArchSpec, current: float) -> tuple[float, float]:
        # ArchSpec allows (0, 4]; below half a channel of the narrowest stage nothing is left.
        return max(current / KNOB_RANGE, 0.5 / min(s.width for s in base.stages)), min(current * KNOB_RANGE, 4.0)

    @staticmethod
    def _splits(base: ArchSpec, ratio: float) -> bool:
        return all(round(s.width * ratio) >= 1 and round(s.width * ratio) % base.groups == 0 for s in base.stages)

    def at(self, base: ArchSpec, value: float) -> Edit:
        if base.groups == 1:
            return {"bottleneck_ratio": value}
        # The ratio whose narrowest stage's inner width is the nearest multiple of groups
        # (wider stages, whole multiples of it in every preset, then split too).
        narrowest = min(s.width for s in base.stages)
        inner = max(1, round(narrowest * value / base.groups)) * base.groups
        return {"bottleneck_ratio": min(4.0, inner / narrowest)}

    def near(self, base: ArchSpec, value: float) -> Iterator[tuple[float, Edit]]:
        # One ratio per interval where every inner width is fixed, over two group widths of the
        # narrowest stage either way; only those whose inner widths split into the groups.
        widths = [s.width for s in base.stages]
        lowest, highest = self.bounds(base, value)
        spread = 2 * base.groups / min(widths)
        low, high = max(lowest, value - spread), min(highest, value + spread)
        steps = {(k + 0.5) / w for w in widths for k in range(math.floor(w * low), math.ceil(w * high) + 1)}
        for ratio in _intervals(steps, low, high):
            if self._splits(base, ratio):
                yield ratio, {"bottleneck_ratio": ratio}


KNOBS: dict[str, Knob] = {knob.name: knob for knob in (WidthMultiplier(), StemWidth(), BottleneckRatio())}


# ------------------------------------------------------------------- solve
@dataclass(frozen=True)
class Match:
    """How one point was matched: the knob's value, the target, and the cost before and after."""

    by: str                  # macs | params
    adjust: str              # the knob
    value: float             # the knob's value in the matched point
    target: float
    unmatched: Complexity    # the point before the knob moved
    matched: Complexity      # the point as it trains
    tolerance: float

    @property
    def cost(self) -> float:
        """The matched point's cost in `by`."""
        return float(getattr(self.matched, self.by))

    @property
    def gap(self) -> float:
        """(cost - target) / target: the signed relative distance left."""
        return (self.cost - self.target) / self.target

    @property
    def unmatched_gap(self) -> float:
        """The relative distance before matching."""
        return (float(getattr(self.unmatched, self.by)) - self.target) / self.target

    @property
    def within(self) -> bool:
        """True when the gap is within the tolerance."""
        return abs(self.gap) <= self.tolerance

    def record(self) -> dict[str, Any]:
        """Plain data for the trial plan and the results row: by, adjust, value, target, gap."""
        return {"by": self.by, "adjust": self.adjust, "value": self.value, "target": self.target,
                "gap": self.gap}


def _edited(base: Mapping[str, Any], edit: Edit) -> ArchSpec | None:
    """The spec `base` (a spec dict) with `edit` applied, or None where that is no valid network."""
    try:
        return ArchSpec.from_dict({**base, **edit})
    except SpecError:
        return None


def reach(knob: Knob, base: ArchSpec, current: float, cost: Callable[[ArchSpec], float]) -> tuple[float, float] | None:
    """(least, most) that the networks the knob makes of `base` within its bounds cost; None if it makes none.

    Cost grows with the knob, so the least is at the lowest value that makes a valid
    network and the most at the highest: a fixed `to` outside every point's reach
    can be refused before any trial, with the nearest cost that can be matched.
    """
    fields = base.to_dict()
    low, high = knob.bounds(base, current)
    ladder = [low * (high / low) ** (step / REACH_STEPS) for step in range(REACH_STEPS + 1)]

    def first_cost(values: list[float]) -> float | None:
        for value in values:
            spec = _edited(fields, knob.at(base, value))
            if spec is not None:
                return cost(spec)
        return None

    least, most = first_cost(ladder), first_cost(ladder[::-1])
    return None if least is None or most is None else (least, most)


def solve(knob: Knob, base: ArchSpec, unmatched: ArchSpec, current: float, cost: Callable[[ArchSpec], float],
          target: float, tolerance: float) -> tuple[float, ArchSpec]:
    """(knob value, spec): `unmatched` if within tolerance of `target`, else the network closest to it.

    `base` is the spec the knob edits (the unmatched one, or for a multiplier the
    one at multiplier 1); `cost` measures a spec in the matched metric.
    """
    unmatched_cost = cost(unmatched)
    if abs(unmatched_cost - target) <= tolerance * target:
        return current, unmatched
    fields = base.to_dict()
    low, high = knob.bounds(base, current)
    if knob.integer:
        low, high = int(low), int(high)
    for _ in range(BISECTION_STEPS):  # the smallest value whose network costs at least the target
        if (high - low <= 1) if knob.integer else (high - low <= 1e-9 * high):
            break
        middle = (low + high) // 2 if knob.integer else (low + high) / 2
        spec = _edited(fields, knob.at(base, middle))
        if spec is None or cost(spec) >= target:  # an invalid network counts as too costly
            high = middle
        else:
            low = middle
    # The unmatched network wins a tie: a knob value that rebuilds it changes nothing.
    best = (abs(unmatched_cost - target), 0.0, current, unmatched)
    for value, edit in knob.near(base, high):
        spec = _edited(fields, edit)
        if spec is not None:
            candidate = (abs(cost(spec) - target), abs(value - current), value, spec)
            if candidate[:3] < best[:3]:
                best = candidate
    return best[2], best[3]
