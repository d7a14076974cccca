"""What one row of the results and curves tables holds (columns in docs/DESIGN.md).

A row carries the architecture whole (`arch_yaml`) and the training settings
whole (`train_json`), so anything that retrains or reloads a trial reads them
back as they were; the flattened `arch.*` and `train.*` columns are for people,
spreadsheets and the report.
"""

from __future__ import annotations

import json
import math
from typing import Any, Iterable, Mapping, Protocol

STATUSES = ("complete", "failed", "pruned")
CURVE_COLUMNS = ("trial_id", "epoch", "train_loss", "val_acc", "epoch_s", "images_per_s", "lr")
FACTOR_PREFIX = "factor."
ARCH_PREFIX = "arch."
TRAIN_PREFIX = "train."
TRAIN_JSON = "train_json"
# A matched-complexity trial (space.match_complexity): the metric, the knob, its value, the
# target cost and the relative gap left, (cost - target) / target. Absent where nothing is matched.
MATCH_PREFIX = "match."
MATCH_FIELDS = ("by", "adjust", "value", "target", "gap")
# A trial chosen by a zero-cost screen (search.screen): its score at initialisation under the screen's proxy (and,
# for the vote, under each voter), one column per proxy. Absent where nothing is screened.
SCREEN_PREFIX = "screen."
# workers, global_batch, base_lr and batchnorm: how a trial was parallelised (search.resources.workers); rows
# written before they existed lack them. packed_seeds: how many seeds (this one included) trained as one model
# with it (search.pack_seeds), whose wall_s they share (runfolder.trial_device_seconds); empty for a seed alone.
INTEGER_METRICS = ("params", "macs", "flops", "epochs_run", "workers", "global_batch", "packed_seeds")
# peak_host_mib: the trial process and its loader workers (PSS); peak_device_mib: torch on CUDA, NaN elsewhere.
FLOAT_METRICS = ("val_acc_best", "val_acc_final", "test_acc", "wall_s", "images_per_s", "base_lr",
                 "peak_host_mib", "peak_device_mib")
# Written by the runner when the screen rejects a sample before any worker starts.
REJECTED_PREFIX = "rejected before training: "
# Where a trial's row, curve and checkpoint were taken from instead of training it (search.run --reuse):
# "<earlier run folder>#<its trial id>"; empty for a trial trained in this run. Rows of run folders
# written before the column existed lack it, which reads as empty (`reused_source`).
REUSED_FROM = "reused_from"
_REUSED_SEPARATOR = "#"


class SpecLike(Protocol):
    """What a row needs of an architecture spec (models.ArchSpec); duck-typed so no torch import is needed."""

    def flat(self) -> dict[str, Any]: ...

    def key(self) -> str: ...

    def to_yaml(self) -> str: ...


def trial_id(number: int) -> str:
    """The run-wide trial id: the Optuna trial number, zero-padded so ids sort."""
    return f"trial_{number:04d}"


def screen_column(proxy: str) -> str:
    """The results column of a proxy's score: `screen.synflow`."""
    return SCREEN_PREFIX + proxy


def float_or_nan(value: Any) -> float:
    """`float(value)`, else NaN (None, "", text, a list): how every reader takes a cell that should be a number."""
    try:
        return float(value)
    except (TypeError, ValueError):
        return math.nan


def is_missing(value: Any) -> bool:
    """None, NaN, or an empty cell."""
    return value is None or (isinstance(value, float) and math.isnan(value)) or value == ""


def trial_row(*, number: int, status: str, seed: int | None, factors: Mapping[str, Any],
              spec: SpecLike | None, train: Mapping[str, Any] | None, metrics: Mapping[str, Any],
              error: str = "", checkpoint: str = "", matched: Mapping[str, Any] | None = None,
              reused_from: str = "", screen: Mapping[str, float] | None = None) -> dict[str, Any]:
    """One results row; `train` is `TrainSettings.to_dict()`, `metrics` what `search.train.fit` returned (maybe partial).

    `matched` is the plan's match record (`space.TrialPlan.matched`), written as the `match.*` columns;
    `reused_from` a `reused_from_cell` where the metrics were taken from an earlier run's trial;
    `screen` the proxy scores a zero-cost screen gave the trial, written as the `screen.*` columns.
    """
    if status not in STATUSES:
        raise ValueError(f"status: got {status!r}; allowed: {', '.join(STATUSES)}")
    row: dict[str, Any] = {"trial_id": trial_id(number), "number": number, "status": status, "seed": seed}
    for name, value in factors.items():
        row[FACTOR_PREFIX + name] = value
    if spec is not None:
        row.update({ARCH_PREFIX + k: v for k, v in spec.flat().items()})
        row["arch_key"] = spec.key()
        row["arch_yaml"] = spec.to_yaml()
    if train is not None:
        row.update({TRAIN_PREFIX + k: (str(v) if isinstance(v, (list, tuple)) else v) for k, v in train.items()})
        row[TRAIN_JSON] = json.dumps(dict(train), sort_keys=True)
    if matched is not None:
        row.update({MATCH_PREFIX + name: matched.get(name) for name in MATCH_FIELDS})
    if screen is not None:
        row.update({screen_column(proxy): float_or_nan(score) for proxy, score in screen.items()})
    for column in INTEGER_METRICS:
        value = metrics.get(column)
        row[column] = int(value) if value is not None and not is_missing(value) else None
    for column in FLOAT_METRICS:
        row[column] = float_or_nan(metrics.get(column))
    row["node_id"] = str(metrics.get("node_id") or "")
    row["batchnorm"] = str(metrics.get("batchnorm") or "")
    row["error"] = error or str(metrics.get("error") or "")
    row["checkpoint"] = checkpoint
    row[REUSED_FROM] = reused_from
    return row


def reused_from_cell(run_dir: Any, trial: str) -> str:
    """The `reused_from` cell of a trial taken from trial `trial` of the run folder `run_dir`."""
    return f"{run_dir}{_REUSED_SEPARATOR}{trial}"


def reused_source(row: Mapping[str, Any]) -> tuple[str, str] | None:
    """(earlier run folder, its trial id) that a row was reused from; None for a trained trial or an older row."""
    cell = row.get(REUSED_FROM)
    if is_missing(cell):
        return None
    folder, _, trial = str(cell).rpartition(_REUSED_SEPARATOR)
    return (folder, trial) if folder and trial else None


def curve_rows(trial: str, points: Iterable[Mapping[str, Any]]) -> list[dict[str, Any]]:
    """The curves rows of one trial from its per-epoch metrics."""
    return [{"trial_id": trial, **{c: point.get(c) for c in CURVE_COLUMNS[1:]}} for point in points]


def train_settings_of(row: Mapping[str, Any]) -> dict[str, Any] | None:
    """The training settings a trial ran with, as `TrainSettings.to_dict()` gave them; None for rows without train_json.

    Run folders written before the column existed have only the flattened
    `train.*` cells; callers decide how to treat those (see search.retrain).
    """
    text = row.get(TRAIN_JSON)
    if is_missing(text):
        return None
    settings = json.loads(str(text))
    if not isinstance(settings, dict):
        raise ValueError(f"{TRAIN_JSON}: got {text!r}; allowed: a JSON object of training settings")
    return settings


def factor_label(row: Mapping[str, Any]) -> str:
    """The trial's factor values as text: `shortcut=A; blocks_per_stage=3` (a grid point shows its label alone)."""
    parts = []
    for column, value in row.items():
        if column.startswith(FACTOR_PREFIX) and not is_missing(value):
            name = column.removeprefix(FACTOR_PREFIX)
            parts.append(str(value) if name == "point" else f"{name}={value}")
    return "; ".join(parts)
