"""TensorBoard event files of each trial: `runs/<study>/tensorboard/<trial_id>/`.

One TensorBoard run per trial, so its Scalars tab overlays the learning
curves and its HParams tab tables every trial's settings against its final
accuracies. Per-epoch scalars are written as the worker reports each epoch
(step = epoch); the settings and final metrics when the trial is recorded,
and then the trial's file is closed. Written in the driver from the
recorder's events, through `torch.utils.tensorboard` (the `tensorboard`
package: `pip install 'resnas[tensorboard]'`).
"""

from __future__ import annotations

import math
import shutil
from pathlib import Path
from typing import Any

import runfolder

from ._recorder import TrialListener

# Per-epoch metrics (the curves.parquet columns), shown under curve/<name>.
CURVE_SCALARS = tuple(c for c in runfolder.CURVE_COLUMNS if c not in ("trial_id", "epoch"))
# Final metrics of a results row, shown under final/<name> and as the HParams tab's metrics.
FINAL_SCALARS = ("val_acc_best", "val_acc_final", "test_acc", "wall_s", "images_per_s", "epochs_run")
# Row cells that describe a trial's settings: the HParams tab's columns.
SETTING_PREFIXES = (runfolder.FACTOR_PREFIX, runfolder.TRAIN_PREFIX, runfolder.ARCH_PREFIX, "match.")
SETTING_COLUMNS = ("seed", "status", "arch_key", "params", "macs")
# Event files reach disk at least this often while a trial runs, so TensorBoard shows it live.
FLUSH_SECS = 10


def tracked_number(value: Any) -> float | None:
    """A metric as every tracker takes it: a float, or None for a missing, non-numeric, boolean or NaN one."""
    if isinstance(value, bool) or value is None:
        return None
    try:
        number = float(value)
    except (TypeError, ValueError):
        return None
    return None if math.isnan(number) else number


def _setting(value: Any) -> bool | int | float | str | None:
    """A value TensorBoard's HParams accepts (bool, number, text); None for a missing one."""
    if hasattr(value, "item"):  # numpy scalars
        value = value.item()
    if runfolder.is_missing(value):
        return None
    return value if isinstance(value, (bool, int, float, str)) else str(value)


def trial_settings(row: dict[str, Any]) -> dict[str, bool | int | float | str]:
    """A results row's settings as HParams: seed, status, factors, train.*, arch.*, match.*, params, MACs."""
    chosen = {column: row[column] for column in row
              if column in SETTING_COLUMNS or column.startswith(SETTING_PREFIXES)}
    settings = {column: _setting(value) for column, value in chosen.items()}
    return {column: value for column, value in settings.items() if value is not None}


def final_values(row: dict[str, Any]) -> dict[str, float]:
    """The final metrics of a results row that a tracker records (FINAL_SCALARS present as numbers)."""
    return {name: value for name in FINAL_SCALARS if (value := tracked_number(row.get(name))) is not None}


class PerTrialTracker(TrialListener):
    """A tracker with one run per trial (TensorBoard, MLflow, W&B): what they share.

    Each epoch is logged once, however often it is reported, at step = epoch;
    when the trial is recorded, the epochs not yet logged (a trial reused or
    resumed reports none live), then its settings and final metrics. A
    subclass says how to write: `log_epoch` and `log_trial`.
    """

    def __init__(self) -> None:
        self._epochs: dict[str, set[int]] = {}  # epochs logged, per trial in flight

    def log_epoch(self, trial_id: str, epoch: int, values: dict[str, float]) -> None:
        raise NotImplementedError

    def log_trial(self, row: dict[str, Any], finals: dict[str, float]) -> None:
        raise NotImplementedError

    def epoch(self, trial_id: str, metrics: dict[str, Any]) -> None:
        epoch = tracked_number(metrics.get("epoch"))
        if epoch is None:
            return
        logged = self._epochs.setdefault(trial_id, set())
        if int(epoch) in logged:
            return
        values = {name: value for name in CURVE_SCALARS if (value := tracked_number(metrics.get(name))) is not None}
        self.log_epoch(trial_id, int(epoch), values)
        logged.add(int(epoch))

    def trial(self, row: dict[str, Any], curve: list[dict[str, Any]]) -> None:
        for point in curve:
            self.epoch(row["trial_id"], point)
        self.log_trial(row, final_values(row))
        self._epochs.pop(row["trial_id"], None)


class TensorBoardTracker(PerTrialTracker):
    """Writes each trial's epochs, settings and final metrics to `tensorboard/<trial_id>/` of the run folder."""

    def __init__(self, run_dir: Path) -> None:
        super().__init__()
        self.root = runfolder.RunFolder(run_dir).tensorboard
        self._writers: dict[str, Any] = {}
        self._started: set[str] = set()  # trials this attempt has written

    def __getstate__(self) -> dict[str, Any]:
        # Tune pickles its callbacks (the recorder and its listeners): open writers stay with this driver.
        return {**self.__dict__, "_writers": {}}

    def log_epoch(self, trial_id: str, epoch: int, values: dict[str, float]) -> None:
        """Write one epoch's scalars under curve/<name>."""
        writer = self._writer(trial_id)
        for name, value in values.items():
            writer.add_scalar(f"curve/{name}", value, epoch)

    def log_trial(self, row: dict[str, Any], finals: dict[str, float]) -> None:
        """Write the settings and the final metrics; close the trial's file."""
        from torch.utils.tensorboard.summary import hparams

        trial_id = row["trial_id"]
        writer = self._writer(trial_id)
        finals = {f"final/{name}": value for name, value in finals.items()}
        for tag, value in finals.items():
            writer.add_scalar(tag, value, 0)
        writer.add_text("settings/train_json", f"`{row.get(runfolder.TRAIN_JSON, '')}`", 0)
        if row.get("arch_yaml"):
            writer.add_text("settings/arch_yaml", "    " + str(row["arch_yaml"]).replace("\n", "\n    "), 0)
        if row.get("error"):
            writer.add_text("error", str(row["error"]), 0)
        # The HParams summary, as SummaryWriter.add_hparams writes it, but into the trial's own run
        # (add_hparams would start another run folder per call).
        experiment, session_start, session_end = hparams(trial_settings(row), finals)
        for summary in (experiment, session_start, session_end):
            writer.file_writer.add_summary(summary)
        self._close(trial_id)

    def close(self) -> None:
        """Close the files of trials still in flight (an interrupted attempt)."""
        for trial_id in list(self._writers):
            self._close(trial_id)

    def _writer(self, trial_id: str) -> Any:
        if trial_id not in self._writers:
            from torch.utils.tensorboard import SummaryWriter

            folder = self.root / trial_id
            if trial_id not in self._started:
                # A trial trained again (an interrupted attempt's, queued again on --resume): its old events go.
                shutil.rmtree(folder, ignore_errors=True)
                self._started.add(trial_id)
            self._writers[trial_id] = SummaryWriter(log_dir=str(folder), flush_secs=FLUSH_SECS)
        return self._writers[trial_id]

    def _close(self, trial_id: str) -> None:
        writer = self._writers.pop(trial_id, None)
        self._epochs.pop(trial_id, None)
        if writer is not None:
            writer.close()
