"""run.json as a typed document: `RunInfo`, its one writer and its one reader.

run.json says what a run was (study, question, strategy, objectives, factors),
on which data, with which budget, where (hardware, versions, storage) and how
long (wall time, device-hours, attempts, trial counts). The runner writes it
through `write_run_info`; reports, `--reuse`, `--resume` and retrain read it
through `read_run_info`, the only code that parses the file.

The document carries `format_version`. A run.json without one was written
before it existed (format 1, implicit); it still reads, and whatever it lacks is
filled with the defaults below and said once (a `RunFolderNote` warning, once
per process and folder). A run.json from a newer format is refused with one
line naming both versions.
"""

from __future__ import annotations

import json
import math
import warnings
from dataclasses import MISSING, dataclass, field, fields, replace
from pathlib import Path
from typing import Any, Iterable, Mapping, TypedDict

from ._atomic import atomic_write_text
from ._layout import RUN_JSON, RunFolder
from ._mapping import _read_mapping
from ._rows import STATUSES, reused_source
from ._untrusted import RunFolderError

# 2: run.json gained format_version, and every field below is written. A run.json without the key is format 1.
RUN_INFO_FORMAT = 2
IMPLICIT_FORMAT = 1

# Device-hours: trial seconds x the devices one trial holds (its GPUs, or its CPU cores where it holds none).
GPU_HOURS = "GPU-hours"
CPU_CORE_HOURS = "CPU-core-hours"
# The unit where run.json records no resources per trial: one trial counts as one device.
TRIAL_HOURS = "trial-hours"


def devices_per_trial(cpus: float, gpus: float) -> float:
    """The devices one trial holds, as device-hours count them: its GPUs, else its CPU cores."""
    return float(gpus or cpus)


def trial_device_seconds(wall_s: Any, packed_seeds: Any = None) -> Any:
    """The seconds of its devices one trial (one row) used: its wall time, shared out among the seeds packed into one
    model with it (the `packed_seeds` column, search.pack_seeds; missing or NaN: trained alone). Takes numbers or
    arrays (a results column), and gives the same."""
    import numpy as np  # here: runfolder imports no numerics at import

    wall = np.asarray(wall_s, dtype=float)
    packed = np.asarray(np.nan if packed_seeds is None else packed_seeds, dtype=float)
    seconds = wall / np.where(np.isfinite(packed) & (packed >= 1), packed, 1.0)
    return float(seconds) if seconds.ndim == 0 else seconds


def device_hours_unit(gpus: float) -> str:
    """The unit of device-hours for trials that hold `gpus` GPUs each."""
    return GPU_HOURS if gpus else CPU_CORE_HOURS


# ------------------------------------------------------------------ the nested parts
class Resources(TypedDict):
    """What one trial holds (`search.resources`)."""

    cpus: float
    gpus: float


class Budget(TypedDict, total=False):
    """What the run set out to spend."""

    epochs: int
    trials: int
    seeds: list[int]
    resources_per_trial: Resources
    pack_seeds: int  # seeds of one grid point trained as one model in one trial (search.pack_seeds); absent: 1


class Dataset(TypedDict, total=False):
    """The data loader's `source` (imagefeed.load): which images, exactly; `--reuse` matches on it whole.

    Each kind records what identifies its images: CIFAR its `files`, the embedded sample its `sha256`, the
    synthetic images their `seed`, folders and the packed store a `fingerprint` (names, sizes and times of the
    files, or the store's own) and the images skipped as unreadable. `n_train_pool` is the training images before
    the validation split; the held-out split that ships with the data (`val/`, `val_data`) is `n_test`.
    """

    name: str
    root: str | None
    embedded_sample: bool
    fallback_reason: str | None
    n_train: int
    n_val: int
    n_test: int
    n_train_pool: int
    num_classes: int
    n_class_names: int
    files: list[str]
    sha256: str
    seed: int
    fingerprint: str
    skipped_images: int
    skipped_examples: list[str]


class Hardware(TypedDict, total=False):
    """The driver's machine (search._environment.hardware)."""

    cpu: str
    cpus: int
    gpus: list[str]
    hostname: str
    platform: str


class FactorLevels(TypedDict):
    """One searched parameter: its levels (None for a numeric range) and the reference level."""

    levels: list[Any] | None
    reference: Any


class MatchSettings(TypedDict, total=False):
    """`space.match_complexity` with its defaults filled in."""

    by: str
    adjust: str
    tolerance: float
    to: Any


NESTED_PARTS = (Resources, Budget, Dataset, Hardware, FactorLevels, MatchSettings)


# ------------------------------------------------------------------ the document
def _doc(text: str, **kwargs: Any) -> Any:
    return field(metadata={"doc": text}, **kwargs)


@dataclass(frozen=True)
class RunInfo:
    """run.json: one run's metadata, every field with its type and default (docs/DESIGN.md shows this table)."""

    format_version: int = _doc("the format of this run.json; absent (format 1) in folders written before it",
                               default=RUN_INFO_FORMAT)
    study: str = _doc("the study's name", default="")
    question: str = _doc("the question the study answers, in one sentence", default="")
    strategy: str | None = _doc("grid | optuna", default=None)
    objectives: list[list[str]] = _doc("[metric, max|min] pairs, in order",
                                       default_factory=lambda: [["val_acc", "max"]])
    factors: dict[str, FactorLevels] = _doc("each searched parameter: {levels, reference}", default_factory=dict)
    match_complexity: MatchSettings | None = _doc("the matched-complexity settings; null if unmatched", default=None)
    dataset: Dataset | None = _doc("the loader's source: name, root, counts (n_train_pool, n_train, n_val, "
                                   "n_test), num_classes, and what identifies the images (files, sha256, seed "
                                   "or fingerprint)", default=None)
    budget: Budget | None = _doc("epochs, trials, seeds, resources_per_trial {cpus, gpus}, pack_seeds",
                                        default=None)
    hardware: Hardware | None = _doc("the driver: cpu, cpus, gpus, hostname, platform", default=None)
    versions: dict[str, str] | None = _doc("python and the packages that decide results", default=None)
    storage: str | None = _doc("the Optuna storage URL", default=None)
    started: str | None = _doc("UTC ISO time of the first attempt's start", default=None)
    finished: str | None = _doc("UTC ISO time the last trial finished; null while unfinished", default=None)
    wall_s: float | None = _doc("driver seconds over all attempts", default=None)
    device_hours: float | None = _doc("trial seconds (a packed trial's once) x devices per trial / 3600, over all attempts", default=None)
    device_hours_unit: str = _doc("GPU-hours | CPU-core-hours | trial-hours (no resources recorded)", default="")
    attempts: int = _doc("starts of the run (1 + resumes)", default=1)
    trial_counts: dict[str, int] = _doc("rows by status: complete, failed, pruned", default_factory=dict)
    reused_trials: int = _doc("rows taken from earlier runs (counted from reused_from)", default=0)
    reuse: list[str] = _doc("earlier run folders --reuse / search.reuse named", default_factory=list)
    # Not written as fields: keys this version does not know (kept, and written back), and what the reader filled.
    extra: dict[str, Any] = field(default_factory=dict, compare=False, metadata={"document": False})
    filled: tuple[str, ...] = field(default=(), compare=False, metadata={"document": False})

    def to_dict(self) -> dict[str, Any]:
        """The document as written: every field, then the keys this version does not know."""
        document = {f.name: getattr(self, f.name) for f in document_fields(RunInfo)}
        return {**document, **{k: v for k, v in self.extra.items() if k not in document}}

    @classmethod
    def from_dict(cls, document: Mapping[str, Any], where: str = RUN_JSON) -> RunInfo:
        """The typed document of a parsed run.json; RunFolderError (naming `where`) for a wrong type or newer format."""
        version = document.get("format_version", IMPLICIT_FORMAT)
        if isinstance(version, bool) or not isinstance(version, int) or version < 1:
            raise RunFolderError(f"{where}: field format_version: got {version!r}; allowed: a whole number >= 1")
        if version > RUN_INFO_FORMAT:
            raise RunFolderError(f"{where}: format_version {version} is newer than this resnas reads "
                                 f"(format_version {RUN_INFO_FORMAT}); read it with the resnas that wrote it")
        values: dict[str, Any] = {}
        filled = []  # format_version first, where it is missing: the note leads with it
        for f in document_fields(cls):
            if f.name in document:
                values[f.name] = _checked(f.name, str(f.type), document[f.name], where)
            else:
                filled.append(f.name)
        values["format_version"] = version
        if "device_hours_unit" in filled:
            values["device_hours_unit"] = _unit_of(values.get("budget"))
        known = {f.name for f in fields(cls)}
        return cls(**values, extra={k: v for k, v in document.items() if k not in known}, filled=tuple(filled))

    # ---------------------------------------------------------- what readers ask of it
    @property
    def resources_per_trial(self) -> Resources | None:
        """What one trial held, when run.json records it."""
        resources = (self.budget or {}).get("resources_per_trial")
        return resources if isinstance(resources, dict) else None

    def trial_devices(self) -> tuple[float, str]:
        """(devices one trial holds, unit of device-hours), as the runner counts them; (1, trial-hours) if unknown."""
        resources = self.resources_per_trial
        if resources is None:
            return 1.0, TRIAL_HOURS
        gpus, cpus = resources.get("gpus") or 0, resources.get("cpus") or 1
        return devices_per_trial(cpus, gpus), self.device_hours_unit or device_hours_unit(gpus)

    def counted(self, rows: Iterable[Mapping[str, Any]]) -> RunInfo:
        """This document with the trial counts of `rows` (results rows): by status, and those reused."""
        rows = list(rows)
        return replace(self, trial_counts={s: sum(1 for r in rows if r.get("status") == s) for s in STATUSES},
                       reused_trials=sum(1 for r in rows if reused_source(r) is not None))


def document_fields(cls: type) -> list[Any]:
    """The dataclass fields a document writes (not its bookkeeping: `extra`, `filled`)."""
    return [f for f in fields(cls) if f.metadata.get("document", True)]


def field_default(f: Any) -> Any:
    """A dataclass field's default value (its factory called)."""
    return f.default_factory() if f.default_factory is not MISSING else f.default


def _unit_of(budget: Any) -> str:
    resources = budget.get("resources_per_trial") if isinstance(budget, dict) else None
    return device_hours_unit(resources.get("gpus") or 0) if isinstance(resources, dict) else TRIAL_HOURS


# A field's annotation -> (check, what is allowed). Nested parts are checked as JSON objects; their readers
# (reports, --reuse) judge their insides.
def _is_number(value: Any) -> bool:
    return isinstance(value, (int, float)) and not isinstance(value, bool) and math.isfinite(value)


def _is_int(value: Any) -> bool:
    return isinstance(value, int) and not isinstance(value, bool)


_OBJECT = (lambda value: isinstance(value, dict), "a JSON object")
_KINDS: dict[str, tuple[Any, str]] = {
    "int": (_is_int, "a whole number"),
    "str": (lambda value: isinstance(value, str), "a string"),
    "str | None": (lambda value: value is None or isinstance(value, str), "a string or null"),
    "float | None": (lambda value: value is None or _is_number(value), "a finite number or null"),
    "list[list[str]]": (lambda value: isinstance(value, list), "a JSON array of [metric, max|min]"),
    "list[str]": (lambda value: isinstance(value, list) and all(isinstance(v, str) for v in value),
                  "a JSON array of strings"),
    "dict[str, int]": (lambda value: isinstance(value, dict) and all(_is_int(v) for v in value.values()),
                       "a JSON object of whole numbers"),
    "dict[str, FactorLevels]": (lambda value: isinstance(value, dict), "an object name -> {levels, reference}"),
}


def _checked(name: str, annotation: str, value: Any, where: str) -> Any:
    if annotation.endswith(" | None") and annotation not in _KINDS:
        if value is None:
            return None
        check, allowed = _OBJECT
        allowed += " or null"
    else:
        check, allowed = _KINDS.get(annotation, _OBJECT)
    if not check(value):
        shown = repr(value) if len(repr(value)) <= 80 else repr(value)[:77] + "..."
        raise RunFolderError(f"{where}: field {name}: got {shown}; allowed: {allowed}")
    return value


# ------------------------------------------------------------------ the reader and the writer
class RunFolderNote(UserWarning):
    """A run folder read with defaults for what it lacks (written by an older resnas)."""


_NOTED: set[str] = set()


def _note_filled(info: RunInfo, path: Path) -> None:
    key = str(path.resolve())
    if not info.filled or key in _NOTED:
        return
    _NOTED.add(key)
    lacking = [name for name in info.filled if name != "format_version"]
    origin = (f"{path} has no format_version (written before run.json had one): read as format {IMPLICIT_FORMAT}"
              if "format_version" in info.filled else f"{path} is format {info.format_version}")
    filled = f"; filled with defaults: {', '.join(lacking)}" if lacking else ""
    # Shown as one line that names the file (line 0: no source line under it), not the reader's code line.
    warnings.warn_explicit(f"{origin}{filled}", RunFolderNote, filename=str(path), lineno=0, module="runfolder")


def read_run_info(run_dir: str | Path) -> RunInfo | None:
    """run.json as a `RunInfo` (what an older folder lacks filled in, said once); None when the folder has none."""
    path = RunFolder(run_dir).checked().run_json
    document = _read_mapping(path, "expected a JSON object at the top level")
    if document is None:
        return None
    info = RunInfo.from_dict(document, where=str(path))
    _note_filled(info, path)
    return info


def write_run_info(run_dir: str | Path, info: RunInfo) -> None:
    """Write run.json atomically, in the current format."""
    document = replace(info, format_version=RUN_INFO_FORMAT).to_dict()
    atomic_write_text(RunFolder(run_dir).run_json, json.dumps(document, indent=2, default=str) + "\n")


def read_run_json(run_dir: str | Path) -> dict[str, Any] | None:
    """run.json as plain data, read through `read_run_info` (defaults filled); None when the folder has none."""
    info = read_run_info(run_dir)
    return None if info is None else info.to_dict()


def write_run_json(run_dir: str | Path, document: Mapping[str, Any]) -> None:
    """Write run.json from plain data, through `RunInfo` (checked, defaults filled, the current format)."""
    write_run_info(run_dir, RunInfo.from_dict(document, where=f"{RUN_JSON} to write"))
