"""What one materialisation writes: the results and curves held as columns, and their arrow tables."""

from __future__ import annotations

import math
from array import array
from dataclasses import dataclass
from functools import partial
from typing import Any, Iterable, Iterator, Mapping

from ._atomic import atomic_write_with
from ._layout import RunFolder
from ._rows import CURVE_COLUMNS, float_or_nan


_CURVE_VALUES = CURVE_COLUMNS[1:]  # what a curve stores per epoch besides the trial id


class _Curves(Mapping[str, list[dict[str, Any]]]):
    """Every trial's curve, packed as six floats per epoch; reads back as curve rows (missing values as None).

    A 50-epoch curve packed takes 2.4 kB, as dicts about 25 kB: at 10,000
    trials that is 24 MB of the driver's memory instead of 250 MB.
    """

    def __init__(self) -> None:
        self._packed: dict[str, array] = {}

    def put(self, trial: str, points: Iterable[Mapping[str, Any]]) -> None:
        values = [point.get(name) for point in points for name in _CURVE_VALUES]
        try:  # numbers and None, as the trainer reports them
            self._packed[trial] = array("d", [math.nan if value is None else value for value in values])
        except TypeError:
            self._packed[trial] = array("d", [float_or_nan(value) for value in values])

    def discard(self, trial: str) -> None:
        self._packed.pop(trial, None)

    def packed(self, trial: str) -> array:
        return self._packed[trial]

    def __getitem__(self, trial: str) -> list[dict[str, Any]]:
        values, width = self._packed[trial], len(_CURVE_VALUES)
        points = []
        for start in range(0, len(values), width):
            point: dict[str, Any] = {"trial_id": trial}
            for name, value in zip(_CURVE_VALUES, values[start:start + width]):
                point[name] = None if math.isnan(value) else value
            if point["epoch"] is not None:
                point["epoch"] = int(point["epoch"])
            points.append(point)
        return points

    def __iter__(self) -> Iterator[str]:
        return iter(self._packed)

    def __len__(self) -> int:
        return len(self._packed)


class _ResultColumns:
    """The results rows held again as columns, in order of arrival: a materialisation copies lists, not cells."""

    def __init__(self) -> None:
        self.columns: dict[str, list[Any]] = {}
        self.position: dict[str, int] = {}

    def put(self, row: Mapping[str, Any]) -> None:
        position = self.position.get(row["trial_id"])
        if position is None:
            position = self.position[row["trial_id"]] = len(self.position)
            for values in self.columns.values():
                values.append(None)
        else:  # a trial recorded again: its new row may lack a column the old one had
            for values in self.columns.values():
                values[position] = None
        for name, value in row.items():
            self.set_cell(position, name, value)

    def set_cell(self, position: int, name: str, value: Any) -> None:
        values = self.columns.get(name)
        if values is None:
            values = self.columns[name] = [None] * len(self.position)
        values[position] = value


@dataclass(frozen=True)
class _Snapshot:
    """What one materialisation writes: copies that the driver no longer changes, and the log length they hold."""

    columns: dict[str, list[Any]]  # results, in order of arrival
    order: list[int]               # positions of the rows sorted by trial id
    curve_trials: list[str]        # sorted
    curves: list[array]            # their packed curves
    log_bytes: int

    def results_table(self) -> Any:
        import pyarrow as pa

        table = pa.table({name: _arrow_column(values) for name, values in self.columns.items()})
        return table.take(pa.array(self.order, pa.int64())) if table.num_columns else table

    def curves_table(self) -> Any:
        import numpy as np
        import pyarrow as pa

        packed = array("d")
        counts = []
        for values in self.curves:
            packed.extend(values)
            counts.append(len(values) // len(_CURVE_VALUES))
        matrix = np.frombuffer(packed, dtype=np.float64).reshape(-1, len(_CURVE_VALUES)) if packed \
            else np.empty((0, len(_CURVE_VALUES)))
        indices = np.repeat(np.arange(len(self.curve_trials), dtype=np.int32), counts)
        columns = {"trial_id": pa.DictionaryArray.from_arrays(
            indices, pa.array(self.curve_trials, pa.string())).dictionary_decode()}
        for index, name in enumerate(_CURVE_VALUES):
            values = matrix[:, index]
            missing = np.isnan(values)
            if name == "epoch":
                columns[name] = pa.array(np.where(missing, 0, values).astype(np.int64), mask=missing)
            else:
                columns[name] = pa.array(values, mask=missing)
        return pa.table(columns)


def _arrow_column(values: list[Any]) -> Any:
    import pyarrow as pa

    try:
        column = pa.array(values, from_pandas=True)  # NaN as null, as pandas wrote the tables before
        if pa.types.is_null(column.type) and any(isinstance(v, float) for v in values):
            # Only NaN so far (the first trial failed): still a float column, as it is once a trial completes.
            return pa.array(values, pa.float64(), from_pandas=True)
        return column
    except (pa.ArrowInvalid, pa.ArrowTypeError):  # values of unlike types in one column: written as text
        return pa.array([None if v is None else str(v) for v in values], pa.string())


def _write_snapshot(folder: RunFolder, snapshot: _Snapshot) -> None:
    """Write results and curves, parquet and CSV, each through a temporary file and a rename."""
    import pyarrow as pa
    import pyarrow.csv as arrow_csv
    import pyarrow.parquet as parquet

    for table, binary, text in ((snapshot.results_table(), folder.results, folder.results_csv),
                                (snapshot.curves_table(), folder.curves, folder.curves_csv)):
        atomic_write_with(binary, partial(parquet.write_table, table))
        atomic_write_with(text, partial(arrow_csv.write_csv, table))
    del table
    # Give the tables' buffers back to the system: the driver would otherwise keep the largest write's worth.
    pa.default_memory_pool().release_unused()
