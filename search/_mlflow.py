"""MLflow runs of each trial: `python -m search.run --log mlflow`.

One MLflow run per trial, named by its trial id, in an experiment named after
the study: per-epoch metrics as they are reported (step = epoch), and when
the trial is recorded its settings as params (factors, train.*, arch.*,
match.*), its final metrics under `final.*`, and its status. Written in the
driver from the recorder's events, through `MlflowClient` (the `mlflow-skinny`
package: `pip install 'resnas[mlflow]'`; the full `mlflow` package pins an
older pyarrow than resnas, and only its `mlflow ui` is missing here).

Where: `MLFLOW_TRACKING_URI` when set (a tracking server, or any store MLflow
accepts), else an SQLite store in the run folder, `mlruns/mlflow.db`, with
artifacts under `mlruns/artifacts` (MLflow's plain-file store is deprecated).
Each run is tagged with the run folder, so runs of several folders can share a
server. Runs that a killed driver left RUNNING are marked KILLED when the next
attempt starts: their trials train again as new trials.
"""

from __future__ import annotations

import logging
import os
import time
from pathlib import Path
from typing import Any

import runfolder

from ._tensorboard import PerTrialTracker, trial_settings

TRACKING_URI_ENV = "MLFLOW_TRACKING_URI"
STORE_DB = "mlflow.db"
ARTIFACTS = "artifacts"
# Tags that tie an MLflow run to its trial.
RUN_DIR_TAG = "resnas.run_dir"
TRIAL_TAG = "resnas.trial_id"
STATUS_TAG = "resnas.status"
# MLflow's limit of params per log_batch call.
PARAMS_PER_BATCH = 100
# A trial's status as an MLflow run status (an ASHA-stopped trial did finish, early).
RUN_STATUS = {"complete": "FINISHED", "pruned": "FINISHED", "failed": "FAILED"}


def default_tracking_uri(run_dir: Path) -> str:
    """The SQLite store in the run folder."""
    return f"sqlite:///{runfolder.RunFolder(run_dir).mlruns.resolve() / STORE_DB}"


def tracking_uri(run_dir: Path) -> str:
    """MLFLOW_TRACKING_URI when set, else the store in the run folder."""
    return os.environ.get(TRACKING_URI_ENV) or default_tracking_uri(run_dir)


def experiment_name(run_dir: Path) -> str:
    """The study's name (from the folder's study.yaml), else the folder's name."""
    try:
        study = runfolder.read_study_record(run_dir)
    except runfolder.RunFolderError:
        study = None
    return (study.name if study is not None else "") or Path(run_dir).name


class MlflowTracker(PerTrialTracker):
    """Writes each trial's epochs, settings and final metrics to an MLflow run of its own."""

    def __init__(self, run_dir: Path) -> None:
        super().__init__()
        self.run_dir = Path(run_dir).resolve()
        self.uri = tracking_uri(self.run_dir)
        self.experiment = experiment_name(self.run_dir)
        self._client: Any = None
        self._experiment_id = ""
        self._runs: dict[str, str] = {}  # trial id -> MLflow run id, for trials in flight
        self._open()  # at start, before any trial: a new SQLite store takes seconds to create

    def __getstate__(self) -> dict[str, Any]:
        # Tune pickles its callbacks (the recorder and its listeners): the client stays with this driver.
        return {**self.__dict__, "_client": None}

    def _open(self) -> None:
        from mlflow.tracking import MlflowClient

        if self.uri == default_tracking_uri(self.run_dir):
            runfolder.RunFolder(self.run_dir).mlruns.mkdir(parents=True, exist_ok=True)
        # MLflow and alembic log each step of creating the store at INFO: noise among the progress lines.
        for name in ("mlflow", "alembic"):
            logging.getLogger(name).setLevel(logging.WARNING)
        self._client = MlflowClient(tracking_uri=self.uri)
        experiment = self._client.get_experiment_by_name(self.experiment)
        if experiment is not None:
            self._experiment_id = experiment.experiment_id
        else:
            artifacts = None
            if self.uri == default_tracking_uri(self.run_dir):  # else the server's own artifact store
                artifacts = (runfolder.RunFolder(self.run_dir).mlruns.resolve() / ARTIFACTS).as_uri()
            self._experiment_id = self._client.create_experiment(self.experiment, artifact_location=artifacts)
        self._kill_left_running()

    def _kill_left_running(self) -> None:
        """Mark KILLED the runs of this folder that a killed driver left RUNNING (their trials train again)."""
        if "'" in str(self.run_dir):
            return  # MLflow's filter language cannot quote the path; such runs stay RUNNING
        left = self._client.search_runs(
            [self._experiment_id],
            filter_string=f"attributes.status = 'RUNNING' and tags.`{RUN_DIR_TAG}` = '{self.run_dir}'")
        for run in left:
            self._client.set_terminated(run.info.run_id, status="KILLED")

    def _run(self, trial_id: str) -> str:
        if self._client is None:  # unpickled elsewhere: reconnect
            self._open()
        if trial_id not in self._runs:
            run = self._client.create_run(self._experiment_id, run_name=trial_id,
                                          tags={TRIAL_TAG: trial_id, RUN_DIR_TAG: str(self.run_dir)})
            self._runs[trial_id] = run.info.run_id
        return self._runs[trial_id]

    def _metrics(self, values: dict[str, float], step: int) -> list[Any]:
        from mlflow.entities import Metric

        now = int(time.time() * 1000)
        return [Metric(key, value, now, step) for key, value in values.items()]

    def log_epoch(self, trial_id: str, epoch: int, values: dict[str, float]) -> None:
        """Log one epoch's metrics at step = epoch."""
        run_id = self._run(trial_id)
        if values:
            self._client.log_batch(run_id, metrics=self._metrics(values, epoch))

    def log_trial(self, row: dict[str, Any], finals: dict[str, float]) -> None:
        """Log the settings as params and the final metrics; end the run."""
        from mlflow.entities import Param, RunTag

        trial_id = row["trial_id"]
        run_id = self._run(trial_id)
        params = [Param(name, str(value)) for name, value in trial_settings(row).items()]
        finals = {f"final.{name}": value for name, value in finals.items()}
        tags = [RunTag(STATUS_TAG, str(row.get("status", "")))]
        if row.get("error"):
            tags.append(RunTag("resnas.error", str(row["error"])[:5000]))
        for start in range(0, max(len(params), 1), PARAMS_PER_BATCH):
            self._client.log_batch(run_id, metrics=self._metrics(finals, 0) if start == 0 else [],
                                   params=params[start:start + PARAMS_PER_BATCH], tags=tags if start == 0 else [])
        self._client.set_terminated(run_id, status=RUN_STATUS.get(str(row.get("status")), "FINISHED"))
        self._runs.pop(trial_id, None)

    def close(self) -> None:
        """End the runs of trials still in flight (an interrupted attempt) as KILLED."""
        for trial_id in list(self._runs):
            self._client.set_terminated(self._runs.pop(trial_id), status="KILLED")
