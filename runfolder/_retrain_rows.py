"""retrain.parquet (and retrain.csv) as a typed document: one `RetrainRow` per retrain run, one reader, one writer.

`search.retrain` records each retrain job's finished runs as these rows; the
report reads them back. Rows retrained before retrain jobs existed (in-process,
weights under `retrained/`) lack `job`, `trial_id` and `node_id`, and have
`device` and `finished`: the reader fills what they lack with the defaults
below, and keeps the two old columns. The file is read as untrusted input: a
cell of the wrong type is refused with the file, the row and the column.
"""

from __future__ import annotations

import dataclasses
import math
from dataclasses import dataclass
from pathlib import Path
from typing import Any, Iterable, Mapping

from ._atomic import atomic_write_frame
from ._layout import RunFolder
from ._rows import TRAIN_JSON, TRAIN_PREFIX, is_missing
from ._untrusted import RunFolderError

NAN = math.nan


@dataclass(frozen=True)
class RetrainRow:
    """One retrain run of a searched architecture: trained on train+val with one seed, tested once."""

    arch_key: str
    test_acc: float = NAN                 # NaN when the run failed
    source_trial_id: str = ""             # the searched trial it retrains
    seed: int | None = None
    status: str = "complete"              # a row without one predates the column; the report counted it as run
    epochs: int | None = None             # the budget it was given (train.epochs)
    epochs_run: int | None = None
    wall_s: float = NAN
    images_per_s: float = NAN
    params: int | None = None
    macs: int | None = None
    flops: int | None = None
    label: str = ""                       # the source's factor levels, "width=16"
    source_val_acc_best: float = NAN      # the source's search score, copied so the row reads alone
    source_test_acc: float = NAN
    node_id: str = ""
    error: str = ""
    checkpoint: str = ""                  # relative to the study's folder: retrain/<job>/checkpoints/<trial>
    job: str | None = None                # None: retrained in-process, before retrain jobs
    trial_id: str | None = None           # the run's id in its job; None as for `job`
    run_key: str = ""                     # trial, seed, train and data settings as JSON: an equal key is not rerun
    arch_yaml: str = ""
    train_json: str = ""                  # TrainSettings.to_dict() as JSON
    train_cells: Mapping[str, Any] = dataclasses.field(default_factory=dict)  # the `train.*` cells, for people
    device: str | None = None             # only rows retrained before retrain jobs: where it ran
    finished: str | None = None           # only rows retrained before retrain jobs: when it ended (UTC, ISO 8601)

    def to_record(self) -> dict[str, Any]:
        """The row as retrain.parquet holds it: RETRAIN_COLUMNS, then `train.*` and train_json, then old columns."""
        record = {name: getattr(self, name) for name in RETRAIN_COLUMNS}
        record.update(self.train_cells)
        record[TRAIN_JSON] = self.train_json
        record.update({name: getattr(self, name) for name in LEGACY_RETRAIN_COLUMNS
                       if getattr(self, name) is not None})
        return record

    @classmethod
    def from_record(cls, record: Mapping[str, Any], where: str = "retrain row") -> "RetrainRow":
        """A row from a table's record: missing cells take the defaults, a cell of the wrong type is refused."""
        values: dict[str, Any] = {}
        for name, kind in _FIELD_KINDS.items():
            if name not in record:
                continue
            value = record[name]
            value = value.item() if hasattr(value, "item") else value  # a numpy scalar from parquet
            if is_missing(value) and not (kind is str and value == ""):
                continue
            if not _is_kind(value, kind):
                raise RunFolderError(f"{where}: field {name}: got {value!r}; allowed: "
                                     f"{'text' if kind is str else 'a number'}")
            values[name] = value
        if "arch_key" not in values:
            raise RunFolderError(f"{where}: field arch_key: missing; allowed: the architecture's key (text)")
        cells = {column: (value.item() if hasattr(value, "item") else value) for column, value in record.items()
                 if isinstance(column, str) and column.startswith(TRAIN_PREFIX)}
        return cls(**values, train_cells=cells)


_NUMBER = (int, float)
# Each cell's kind; `train_cells` is every `train.*` column instead.
_FIELD_KINDS: dict[str, Any] = {field.name: (str if str(field.type).startswith("str") else _NUMBER)
                                for field in dataclasses.fields(RetrainRow) if field.name != "train_cells"}
# The old rows' columns: written only where a row has them.
LEGACY_RETRAIN_COLUMNS = ("device", "finished")
# The columns of retrain.parquet, in order; `train.*` and train_json follow (docs/DESIGN.md).
RETRAIN_COLUMNS = ("arch_key", "source_trial_id", "seed", "status", "test_acc", "epochs", "epochs_run", "wall_s",
                   "images_per_s", "params", "macs", "flops", "label", "source_val_acc_best", "source_test_acc",
                   "node_id", "error", "checkpoint", "job", "trial_id", "run_key", "arch_yaml")
# Every field is a column (and every column but train.* a field): checked on import, so they cannot drift.
if set(RETRAIN_COLUMNS) | set(LEGACY_RETRAIN_COLUMNS) | {TRAIN_JSON} != set(_FIELD_KINDS):
    raise RuntimeError("RETRAIN_COLUMNS and the fields of RetrainRow disagree")


def _is_kind(value: Any, kind: Any) -> bool:
    if kind is str:
        return isinstance(value, str)
    return isinstance(value, _NUMBER) and not isinstance(value, bool)


def retrain_frame(rows: Iterable[RetrainRow]) -> Any:
    """The rows as a DataFrame, columns in the document's order (an empty table still has RETRAIN_COLUMNS)."""
    import pandas as pd

    records = []
    for row in rows:
        if not isinstance(row, RetrainRow):
            raise TypeError(f"retrain rows: got {type(row).__name__}; allowed: runfolder.RetrainRow")
        records.append(row.to_record())
    columns = list(RETRAIN_COLUMNS)
    for record in records:
        columns += [column for column in record if column not in columns]
    return pd.DataFrame(records, columns=columns)


def read_retrain_rows(run_dir: str | Path) -> list[RetrainRow] | None:
    """retrain.parquet's rows, each checked and filled; None when the folder has none."""
    from ._frames import _read_frame, _require

    path = RunFolder(run_dir).checked().retrain
    if not path.is_file():
        return None
    frame = _read_frame(path)
    _require(frame, path, ("arch_key", "test_acc"))
    return [RetrainRow.from_record(record, f"{path}: row {index}")
            for index, record in enumerate(frame.to_dict("records"))]


def read_retrain(run_dir: str | Path) -> Any | None:
    """retrain.parquet as a DataFrame of checked, filled rows (`retrain_frame`); None when the folder has none."""
    rows = read_retrain_rows(run_dir)
    return None if rows is None else retrain_frame(rows)


def write_retrain(run_dir: str | Path, rows: Iterable[RetrainRow]) -> None:
    """Rewrite retrain.parquet and retrain.csv atomically with these rows."""
    frame = retrain_frame(rows)
    folder = RunFolder(run_dir)
    atomic_write_frame(frame, folder.retrain)
    atomic_write_frame(frame, folder.retrain_csv)


def retrain_summary(frame: Any) -> Any:
    """Complete retrain runs per architecture, best mean first: n, mean and sample std of test_acc, its search scores.

    The one summary of retrain.parquet: `python -m search.retrain` prints it and the report's "Retrained"
    section shows it.
    """
    import pandas as pd

    columns = ["arch_key", "label", "source_trial_id", "search_val_acc", "search_test_acc", "n", "mean", "std",
               "params"]
    done = frame[frame["status"].astype(str) == "complete"] if "status" in frame else frame
    if done.empty:
        return pd.DataFrame(columns=columns)
    done = done.assign(test_acc=pd.to_numeric(done["test_acc"], errors="coerce"))
    for column in columns[1:5] + ["params", "source_val_acc_best", "source_test_acc"]:
        if column not in done:
            done = done.assign(**{column: NAN})
    grouped = done.groupby("arch_key", sort=False)
    table = grouped.agg(label=("label", "first"), search_val_acc=("source_val_acc_best", "first"),
                        search_test_acc=("source_test_acc", "first"),
                        n=("test_acc", "count"), mean=("test_acc", "mean"),
                        std=("test_acc", "std"), params=("params", "first")).reset_index()
    # An architecture retrained from more than one searched trial names them all.
    sources = grouped["source_trial_id"].agg(lambda ids: ", ".join(sorted({str(i) for i in ids if not is_missing(i)})))
    table.insert(2, "source_trial_id", table["arch_key"].map(sources))
    return table[columns].sort_values("mean", ascending=False, kind="stable").reset_index(drop=True)
