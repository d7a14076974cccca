"""study.yaml, the study as run, as a typed, read-only document: `StudyRecord` and its one reader.

The runner writes study.yaml (`space.Study.to_yaml()`: the validated study,
`--set` overrides applied). Readers that need the study whole (`--resume`,
retrain) validate it again with `space.load_study`; the rest (reports, the
dashboard, the MLflow tracker, `--reuse`, compare) read it through this record,
which parses nothing by hand elsewhere. `DEFAULT_TARGET_EFFECT` lives here, so
that the study schema (space) and the report read one value.
"""

from __future__ import annotations

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
# search.scheduler when the study names none.
NO_SCHEDULER = "none"
# search.asha when the study leaves a setting out (the study schema's defaults, and the report's for such a
# study.yaml): a trial trains 1 epoch before ASHA may stop it, and about 1 in 3 goes on from each rung.
DEFAULT_ASHA_GRACE_PERIOD = 1
DEFAULT_ASHA_REDUCTION_FACTOR = 3


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
