"""The architecture spec: one frozen, typed description of a residual network.

Every other part of resnas passes an `ArchSpec` around; only `models.build`
turns it into modules. A spec is validated on construction, so a network that
exists as a spec can always be built.
"""

from __future__ import annotations

import dataclasses
import hashlib
import json
from dataclasses import dataclass
from typing import Any, Mapping

import yaml

from ._blocks import BLOCK_TYPES, SHORTCUT_MODULES, STRIDE_PLACEMENTS
from ._stems import STEM_TYPES

# The names a spec may use: the keys of the tables that implement them (which
# `_validate` reads, so a table row is all it takes to add a name).
BLOCKS = tuple(BLOCK_TYPES)
SHORTCUTS = tuple(SHORTCUT_MODULES)
STEMS = tuple(STEM_TYPES)
BOTTLENECK_STRIDES = tuple(STRIDE_PLACEMENTS)
# The blocks that have an inner width, groups and a 1x1 conv to stride.
BOTTLENECK_BLOCKS = tuple(name for name, block in BLOCK_TYPES.items() if block.is_bottleneck)

FieldPath = tuple[str | int, ...]


def _dotted(path: FieldPath) -> str:
    """`("stages", 1, "depth")` -> `"stages[1].depth"`."""
    text = ""
    for part in path:
        text += f"[{part}]" if isinstance(part, int) else (f".{part}" if text else part)
    return text


class SpecError(ValueError):
    """A spec or settings field outside its rule, as "field: got X; allowed: Y".

    `path` (`("stages", 1, "depth")`) and `field` (`"stages[1].depth"`) say
    where, `got` is the value given and `allowed` what would be accepted, so a
    caller (the study loader) can place the problem without reading the text.
    `what` describes a problem that is not one bad value (an unknown or missing
    field); then the text reads "field: what; allowed: Y".
    """

    def __init__(self, path: FieldPath | str, got: Any, allowed: str, *, what: str | None = None) -> None:
        self.path = (path,) if isinstance(path, str) else tuple(path)
        self.field = _dotted(self.path)
        self.got = got
        self.allowed = allowed
        self.what = what
        super().__init__(f"{self.field}: {f'got {got!r}' if what is None else what}; allowed: {allowed}")


def _require(ok: bool, path: FieldPath, given: Any, allowed: str) -> None:
    """Raise the one SpecError format every spec check uses."""
    if not ok:
        raise SpecError(path, given, allowed)


def _is_int(value: Any) -> bool:
    # bool is an int subclass, but `depth: true` is a mistake, not a depth.
    return isinstance(value, int) and not isinstance(value, bool)


@dataclass(frozen=True)
class StageSpec:
    """One stage: `depth` blocks whose output has `width` channels; the first block has `stride`."""

    depth: int
    width: int
    stride: int = 1

    def _validate(self, path: FieldPath) -> None:
        _require(_is_int(self.depth) and self.depth >= 1, (*path, "depth"), self.depth, "an integer >= 1")
        _require(_is_int(self.width) and self.width >= 1, (*path, "width"), self.width, "an integer >= 1")
        _require(self.stride in (1, 2), (*path, "stride"), self.stride, "1 or 2")


@dataclass(frozen=True)
class ArchSpec:
    """A complete residual-network architecture; the single input of `models.build`."""

    stages: tuple[StageSpec, ...]
    block: str = "basic"
    shortcut: str = "B"
    stem: str = "imagenet"
    stem_width: int = 64
    # Inner width over output width; ResNet-50 uses 0.25 (He et al. 2015, Table 1).
    bottleneck_ratio: float = 0.25
    groups: int = 1
    # torchvision ("ResNet v1.5") strides the 3x3 conv; the paper strides the first 1x1.
    bottleneck_stride: str = "3x3"
    # Goyal et al. 2017 (arXiv 1706.02677): each block starts as the identity.
    zero_init_residual: bool = False
    num_classes: int = 1000
    in_channels: int = 3

    def __post_init__(self) -> None:
        stages = self.stages
        if isinstance(stages, (list, tuple)):
            stages = tuple(
                StageSpec(**s) if isinstance(s, Mapping) else s for s in stages
            )
            object.__setattr__(self, "stages", stages)
        self._validate()

    # ----------------------------------------------------------------- checks
    def _validate(self) -> None:
        _require(
            isinstance(self.stages, tuple) and len(self.stages) >= 1,
            ("stages",), self.stages, "a non-empty list of stages",
        )
        for i, stage in enumerate(self.stages):
            _require(isinstance(stage, StageSpec), ("stages", i), stage,
                     "a mapping with depth, width, stride")
            stage._validate(("stages", i))
        _require(self.block in BLOCK_TYPES, ("block",), self.block, ", ".join(BLOCK_TYPES))
        _require(self.shortcut in SHORTCUT_MODULES, ("shortcut",), self.shortcut, ", ".join(SHORTCUT_MODULES))
        _require(self.stem in STEM_TYPES, ("stem",), self.stem, ", ".join(STEM_TYPES))
        _require(_is_int(self.stem_width) and self.stem_width >= 1, ("stem_width",),
                 self.stem_width, "an integer >= 1")
        if self.stem == "deep":
            _require(self.stem_width % 2 == 0, ("stem_width",), self.stem_width,
                     "an even integer for the deep stem (its first two convs use half the width)")
        _require(_is_int(self.groups) and self.groups >= 1, ("groups",), self.groups, "an integer >= 1")
        _require(self.bottleneck_stride in STRIDE_PLACEMENTS, ("bottleneck_stride",),
                 self.bottleneck_stride, ", ".join(STRIDE_PLACEMENTS))
        _require(isinstance(self.zero_init_residual, bool), ("zero_init_residual",),
                 self.zero_init_residual, "true or false")
        _require(_is_int(self.num_classes) and self.num_classes >= 1, ("num_classes",),
                 self.num_classes, "an integer >= 1")
        _require(_is_int(self.in_channels) and self.in_channels >= 1, ("in_channels",),
                 self.in_channels, "an integer >= 1")
        ratio = self.bottleneck_ratio
        _require(isinstance(ratio, (int, float)) and not isinstance(ratio, bool) and 0 < ratio <= 4,
                 ("bottleneck_ratio",), ratio, "a number in (0, 4]")
        if self.is_bottleneck:
            for i, stage in enumerate(self.stages):
                inner = self.inner_width(stage)
                _require(inner >= 1, ("bottleneck_ratio",), ratio,
                         f"a ratio that leaves stages[{i}] (width {stage.width}) at least one inner channel")
                _require(inner % self.groups == 0, ("groups",), self.groups,
                         f"a divisor of the inner width {inner} of stages[{i}] "
                         f"(width {stage.width} x bottleneck_ratio {ratio})")
        else:
            _require(self.groups == 1, ("groups",), self.groups,
                     f"1 for {self.block} blocks (grouped convs need a bottleneck block)")
            _require(self.bottleneck_stride == "3x3", ("bottleneck_stride",), self.bottleneck_stride,
                     f"'3x3' for {self.block} blocks (only bottlenecks have a 1x1 conv to stride)")
        if self.zero_init_residual:
            _require(not self.is_preact, ("zero_init_residual",), True,
                     "false for pre-activation blocks (their branch ends in a conv, not a BN)")
            _require(self.shortcut != "none", ("zero_init_residual",), True,
                     "false with shortcut 'none' (a plain net with zeroed branches outputs zeros)")
        if self.shortcut == "A":
            # Option A pads with zeros: it can add channels but never remove them.
            channels = self.stem_width
            others = [name for name in SHORTCUT_MODULES if name != "A"]
            for i, stage in enumerate(self.stages):
                _require(stage.width >= channels, ("shortcut",), "A",
                         f"{', '.join(others[:-1])} or {others[-1]}: stages[{i}] shrinks channels "
                         f"{channels} -> {stage.width}, which zero-padding cannot do")
                channels = stage.width

    # ------------------------------------------------------------- derived
    @property
    def is_bottleneck(self) -> bool:
        """True for the 1x1-3x3-1x1 block families."""
        return BLOCK_TYPES[self.block].is_bottleneck

    @property
    def is_preact(self) -> bool:
        """True for pre-activation blocks (He et al. 2016, arXiv 1603.05027)."""
        return BLOCK_TYPES[self.block].is_preact

    def inner_width(self, stage: StageSpec) -> int:
        """Channels of the 3x3 conv inside a bottleneck block of `stage`."""
        return int(round(stage.width * self.bottleneck_ratio))

    @property
    def num_layers(self) -> int:
        """Weighted layers as the paper counts them: convs on the main path plus the fc."""
        convs_per_block = 3 if self.is_bottleneck else 2
        stem_convs = 3 if self.stem == "deep" else 1
        return stem_convs + convs_per_block * sum(s.depth for s in self.stages) + 1

    # -------------------------------------------------------- serialisation
    def to_dict(self) -> dict[str, Any]:
        """Plain types only: stages become a list of dicts."""
        out = dataclasses.asdict(self)
        out["stages"] = [dataclasses.asdict(s) for s in self.stages]
        return out

    @classmethod
    def from_dict(cls, data: Mapping[str, Any]) -> "ArchSpec":
        """Build from `to_dict()` output; unknown keys are an error, not ignored."""
        if not isinstance(data, Mapping):
            raise SpecError(("spec",), data, "a mapping of ArchSpec fields", what=f"got {type(data).__name__}")
        known = {f.name for f in dataclasses.fields(cls)}
        unknown = sorted(set(data) - known)
        if unknown:
            raise SpecError((unknown[0],), data[unknown[0]], ", ".join(sorted(known)),
                            what="unknown ArchSpec field")
        if "stages" not in data:
            raise SpecError(("stages",), None, "a non-empty list of {depth, width, stride}", what="missing")
        stages = data["stages"]
        _require(isinstance(stages, (list, tuple)), ("stages",), stages, "a non-empty list of stages")
        stage_fields = {f.name for f in dataclasses.fields(StageSpec)}
        for i, stage in enumerate(stages):
            _require(isinstance(stage, Mapping), ("stages", i), stage, "a mapping with depth, width, stride")
            extra = sorted(set(stage) - stage_fields)
            if extra:
                raise SpecError(("stages", i, extra[0]), stage[extra[0]], "depth, width, stride",
                                what="unknown stage field")
            missing = sorted({"depth", "width"} - set(stage))
            if missing:
                raise SpecError(("stages", i, missing[0]), None, "an integer >= 1", what="missing")
        return cls(**{**data, "stages": tuple(StageSpec(**s) for s in stages)})

    def to_json(self) -> str:
        """Canonical JSON: sorted keys, so equal specs give equal text."""
        return json.dumps(self.to_dict(), sort_keys=True, separators=(",", ":"))

    @classmethod
    def from_json(cls, text: str) -> "ArchSpec":
        """Inverse of `to_json`."""
        return cls.from_dict(json.loads(text))

    def to_yaml(self) -> str:
        """Readable YAML with the fields in declaration order."""
        return yaml.safe_dump(self.to_dict(), sort_keys=False, default_flow_style=None)

    @classmethod
    def from_yaml(cls, text: str) -> "ArchSpec":
        """Inverse of `to_yaml`; reads with `yaml.safe_load` only."""
        return cls.from_dict(yaml.safe_load(text))

    def key(self) -> str:
        """A stable 16-hex-digit content key: equal architectures, equal keys."""
        canonical = self.to_dict()
        # 0.25 and 0.250000001 are different specs, but 1 and 1.0 are not.
        canonical["bottleneck_ratio"] = float(canonical["bottleneck_ratio"])
        if not self.is_bottleneck:
            # The ratio and stride placement do nothing in basic blocks.
            canonical["bottleneck_ratio"] = None
            canonical["bottleneck_stride"] = None
        text = json.dumps(canonical, sort_keys=True, separators=(",", ":"))
        return hashlib.sha256(text.encode()).hexdigest()[:16]

    def flat(self) -> dict[str, Any]:
        """One scalar per column, for results tables (`arch.` prefix added by the caller)."""
        out = {k: v for k, v in self.to_dict().items() if k != "stages"}
        for i, stage in enumerate(self.stages, start=1):
            out[f"stage{i}.depth"] = stage.depth
            out[f"stage{i}.width"] = stage.width
            out[f"stage{i}.stride"] = stage.stride
        out["num_stages"] = len(self.stages)
        out["depths"] = "-".join(str(s.depth) for s in self.stages)
        out["widths"] = "-".join(str(s.width) for s in self.stages)
        out["num_layers"] = self.num_layers
        return out

    def replace(self, **changes: Any) -> "ArchSpec":
        """A copy with some fields changed, validated again."""
        return dataclasses.replace(self, **changes)
