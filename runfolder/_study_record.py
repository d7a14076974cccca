"""study.yaml, the study as run, as a typed, read-only document: `StudyRecord` and its one reader.

The runner writes study.yaml (`space.Study.to_yaml()`: the validated study,
`--set` overrides applied). Readers that need the study whole (`--resume`,
retrain) validate it again with `space.load_study`; the rest (reports, the
dashboard, the MLflow tracker, `--reuse`, compare) read it through this record,
which parses nothing by hand elsewhere. `DEFAULT_TARGET_EFFECT` lives here, so
that the study schema (space) and the report read one value.
"""

from __future__ import annotations

import math
import numbers
from dataclasses import dataclass, field
from pathlib import Path
from types import MappingProxyType
from typing import Any, Mapping

from ._layout import STUDY_YAML, RunFolder
from ._mapping import _read_mapping
from ._untrusted import RunFolderError

# The smallest accuracy difference worth resolving (a fraction: 0.01 = 1 percentage point), unless the study sets
# report.target_effect; the report's power analysis plans seeds for it.
DEFAULT_TARGET_EFFECT = 0.01
# The smallest target effect a study may set: 0.0001 = 0.01 pp, one image of a 10,000-image test set (CIFAR's) and 5
# of ImageNet's 50,000. A smaller difference is below what a test set measures; asked for, it only makes the power
# analysis look for a seed count no study would run.
MIN_TARGET_EFFECT = 1e-4
TARGET_EFFECT_RULE = (f"a fraction strictly between 0 and 1, at least {MIN_TARGET_EFFECT:g} (0.01 = 1 pp; "
                      f"{MIN_TARGET_EFFECT:g} = 0.01 pp, one image of a 10,000-image test set, is the smallest "
                      "difference a test set measures)")
# report.primary: the comparisons the study's question asks. A question names one or two; the bound keeps a
# hand-edited study.yaml from asking the report for thousands (the study schema allows no more either).
MAX_PRIMARY_COMPARISONS = 8
# A factor name or a level label longer than this is no name a study produced (the schema caps them alike).
MAX_PRIMARY_TEXT = 200
PRIMARY_KEYS = ("factor", "level", "reference")
PRIMARY_LEVEL_RULE = (f"a level as the study's choice writes it: a name of 1 to {MAX_PRIMARY_TEXT} characters, a "
                      "finite number or a boolean")
# search.scheduler when the study names none.
NO_SCHEDULER = "none"
# search.asha when the study leaves a setting out (the study schema's defaults, and the report's for such a
# study.yaml): a trial trains 1 epoch before ASHA may stop it, and about 1 in 3 goes on from each rung.
DEFAULT_ASHA_GRACE_PERIOD = 1
DEFAULT_ASHA_REDUCTION_FACTOR = 3
# search.asha.schedule and .promotion when the study leaves them out. truncated: a trial cut at a rung ran the first
# epochs of the full-length schedule; budget_true: each rung's training anneals fully by the rung's last epoch (Li,
# Yumer & Ramanan, "Budgeted Training", ICLR 2020, arXiv 1905.04753). The defaults are what measured better in
# bench/RESULTS.md ("Budget-true rungs"): budget_true ranked no better at the first rung, and restart spent 1.6 times
# the epochs of continue.
ASHA_SCHEDULES = ("truncated", "budget_true")
ASHA_PROMOTIONS = ("continue", "restart")
DEFAULT_ASHA_SCHEDULE = "truncated"
DEFAULT_ASHA_PROMOTION = "continue"


def asha_rung_epochs(grace_period: int, reduction_factor: float, max_epochs: int) -> tuple[int, ...]:
    """The epochs that close ASHA's rungs, ending with `max_epochs`: grace_period x eta^k, rounded up, below it.

    Ray Tune's ASHAScheduler (one bracket) compares a trial at the first epoch it reports at or past each
    milestone grace_period * eta**k, and stops every trial at max_t; so with whole epochs a rung closes at the
    milestone rounded up, and the last stretch of training ends at `max_epochs`. The one home of this rule: the
    budget-true trainer (search.train), the study checks and the reports read it here.
    """
    rungs: list[int] = []
    k = 0
    while (epoch := math.ceil(grace_period * reduction_factor ** k)) < max_epochs:
        if not rungs or epoch > rungs[-1]:  # an eta near 1 rounds two milestones to one epoch
            rungs.append(epoch)
        k += 1
    return (*rungs, max_epochs)


def _frozen(value: Any) -> Any:
    """`value` read-only all the way down: mappings as MappingProxyType, lists as tuples."""
    if isinstance(value, Mapping):
        return MappingProxyType({key: _frozen(inner) for key, inner in value.items()})
    if isinstance(value, (list, tuple)):
        return tuple(_frozen(inner) for inner in value)
    return value


def plain(value: Any) -> Any:
    """A read-only value of a record as plain data again (dicts and lists), e.g. for a validator or JSON."""
    if isinstance(value, Mapping):
        return {key: plain(inner) for key, inner in value.items()}
    if isinstance(value, tuple):
        return [plain(inner) for inner in value]
    return value


_EMPTY: Mapping[str, Any] = MappingProxyType({})


@dataclass(frozen=True)
class PrimaryComparison:
    """One comparison the study's question asks (`report.primary`): `factor` at `level` against `reference`.

    The levels are as study.yaml writes them (a name, a number or a boolean); the report labels them as it
    labels every level.
    """

    factor: str
    level: str | int | float | bool
    reference: str | int | float | bool


def is_primary_level(value: Any) -> bool:
    """Whether `value` may be a level of report.primary (PRIMARY_LEVEL_RULE: the study schema checks the same)."""
    if isinstance(value, str):
        return 0 < len(value) <= MAX_PRIMARY_TEXT
    return isinstance(value, (bool, numbers.Integral)) or (isinstance(value, numbers.Real)
                                                            and math.isfinite(float(value)))


@dataclass(frozen=True)
class StudyRecord:
    """study.yaml as run: its name, question and sections (read-only), with typed accessors for its readers."""

    name: str = field(default="", metadata={"doc": "`name`; empty if the file has none"})
    question: str = field(default="", metadata={"doc": "`question`; empty if the file has none"})
    sections: Mapping[str, Any] = field(default_factory=lambda: _EMPTY,
                                        metadata={"doc": "every top-level section, read-only"})
    path: str = field(default=STUDY_YAML, metadata={"doc": "the file it was read from (named in errors)"})

    @classmethod
    def from_dict(cls, document: Mapping[str, Any], path: str | Path = STUDY_YAML) -> StudyRecord:
        """The record of a parsed study.yaml."""
        name, question = document.get("name"), document.get("question")
        return cls(name=name if isinstance(name, str) else "", question=question if isinstance(question, str) else "",
                   sections=_frozen(document), path=str(path))

    def section(self, name: str) -> Mapping[str, Any]:
        """A top-level section (`search`, `data`, `report`, ...); empty when absent or not a mapping."""
        value = self.sections.get(name)
        return value if isinstance(value, Mapping) else _EMPTY

    def as_dict(self) -> dict[str, Any]:
        """The whole study as plain, writable data (a copy)."""
        return plain(self.sections)

    @property
    def storage(self) -> str | None:
        """`search.storage`: the Optuna storage the study names; None for the run folder's own study.db."""
        storage = self.section("search").get("storage")
        return str(storage) if storage else None

    @property
    def scheduler(self) -> str:
        """`search.scheduler` (`none` when unset)."""
        return str(self.section("search").get("scheduler") or NO_SCHEDULER)

    @property
    def asha(self) -> Mapping[str, Any]:
        """`search.asha` as written (empty where the study leaves the defaults)."""
        asha = self.section("search").get("asha")
        return asha if isinstance(asha, Mapping) else _EMPTY

    @property
    def sets_target_effect(self) -> bool:
        """Whether the study sets `report.target_effect` (else the default applies)."""
        return self.section("report").get("target_effect") is not None

    @property
    def target_effect(self) -> float:
        """`report.target_effect`, else `DEFAULT_TARGET_EFFECT`; RunFolderError for a value that is not a fraction."""
        value = self.section("report").get("target_effect")
        if value is None:
            return DEFAULT_TARGET_EFFECT
        if not is_target_effect(value):
            raise RunFolderError(f"{self.path}: report.target_effect: got {value!r}; allowed: {TARGET_EFFECT_RULE}")
        return float(value)

    @property
    def primary(self) -> tuple[PrimaryComparison, ...]:
        """`report.primary`; empty where the study names none (and in run folders written before it existed).

        RunFolderError, naming the field, for anything but a list of at most MAX_PRIMARY_COMPARISONS mappings of
        `factor` (a name), `level` and `reference` (each a name, number or boolean).
        """
        value = self.section("report").get("primary")
        if value is None:
            return ()
        where = f"{self.path}: report.primary"
        if not isinstance(value, tuple) or not 1 <= len(value) <= MAX_PRIMARY_COMPARISONS:
            shown = f"a list of {len(value)}" if isinstance(value, tuple) else type(value).__name__
            raise RunFolderError(f"{where}: got {shown}; allowed: a list of 1 to {MAX_PRIMARY_COMPARISONS} "
                                 "comparisons {factor, level, reference}")
        comparisons = []
        for index, item in enumerate(value):
            if not isinstance(item, Mapping) or set(item) != set(PRIMARY_KEYS):
                shown = sorted(map(str, item))[:5] if isinstance(item, Mapping) else type(item).__name__
                raise RunFolderError(f"{where}[{index}]: got {shown}; allowed: a mapping of exactly "
                                     f"{', '.join(PRIMARY_KEYS)}")
            factor = item["factor"]
            if not isinstance(factor, str) or not 0 < len(factor) <= MAX_PRIMARY_TEXT:
                raise RunFolderError(f"{where}[{index}].factor: got {_shown(factor)}; allowed: a factor name of 1 "
                                     f"to {MAX_PRIMARY_TEXT} characters")
            for key in ("level", "reference"):
                if not is_primary_level(item[key]):
                    raise RunFolderError(f"{where}[{index}].{key}: got {_shown(item[key])}; allowed: "
                                         f"{PRIMARY_LEVEL_RULE}")
            comparisons.append(PrimaryComparison(factor, item["level"], item["reference"]))
        return tuple(comparisons)


def _shown(value: Any) -> str:
    text = repr(value)
    return text if len(text) <= 80 else text[:77] + "..."


def is_target_effect(value: Any) -> bool:
    """Whether `value` may be a target effect: a number in [MIN_TARGET_EFFECT, 1) (see TARGET_EFFECT_RULE)."""
    return (not isinstance(value, bool) and isinstance(value, numbers.Real)
            and MIN_TARGET_EFFECT <= float(value) < 1.0)


def read_study_record(run_dir: str | Path) -> StudyRecord | None:
    """study.yaml (the study as run) as a `StudyRecord`; None when the folder has none."""
    path = RunFolder(run_dir).checked().study_yaml
    document = _read_mapping(path, "expected a mapping of study sections", kind="YAML")
    return None if document is None else StudyRecord.from_dict(document, path)


def read_study_yaml(run_dir: str | Path) -> dict[str, Any] | None:
    """study.yaml as plain data, read through `read_study_record`; None when the folder has none."""
    record = read_study_record(run_dir)
    return None if record is None else record.as_dict()
