"""Where each file of a run folder lives: the one place that spells their names.

    runs/<study>/
      study.yaml            the study as run (after --set overrides)
      run.json              dataset, budget, hardware, versions, wall time, device-hours
      study.db              the Optuna storage (SQLite)
      trials.jsonl          the append-only log of finished trials: the durable record during a run
      results.parquet/.csv  one row per trial (materialised from the log)
      curves.parquet/.csv   one row per trial and epoch
      retrain.parquet/.csv  retrained top-k (python -m search.retrain), if any: materialised from retrain/*/
      retrain/<job>/        one run folder per retrain job (python -m search.retrain), written by the runner
                            like any run, with plans.json; its checkpoints/ hold the retrained weights
      checkpoints/<trial>/  weights of the top-k trials
      retrained/<name>/     weights of models retrained before retrain jobs ran through the runner
      plans.json            the trials of a run that samples none (a retrain job): each one's plan, in order
      report.html           the report; report_tables/*.csv beside it
      ray_results/          Ray Tune's own experiment state
      tensorboard/<trial>/  TensorBoard event files of each trial (python -m search.run --log tensorboard)
      mlruns/               the MLflow store of --log mlflow (mlflow.db, artifacts/), unless MLFLOW_TRACKING_URI is set
      wandb/                W&B's offline runs of --log wandb (wandb sync uploads them)
      run.lock              held by the one writer at work here (`runfolder.RunFolderLock`); gone when it ends
"""

from __future__ import annotations

from dataclasses import dataclass
from pathlib import Path

from ._untrusted import check_entries

STUDY_YAML = "study.yaml"
RUN_JSON = "run.json"
STUDY_DB = "study.db"
TRIALS_LOG = "trials.jsonl"
RESULTS_PARQUET = "results.parquet"
RESULTS_CSV = "results.csv"
CURVES_PARQUET = "curves.parquet"
CURVES_CSV = "curves.csv"
RETRAIN_PARQUET = "retrain.parquet"
RETRAIN_CSV = "retrain.csv"
CHECKPOINTS = "checkpoints"
RETRAINED = "retrained"
RETRAIN_JOBS = "retrain"
PLANS_JSON = "plans.json"
REPORT_HTML = "report.html"
REPORT_TABLES = "report_tables"
RAY_RESULTS = "ray_results"
TENSORBOARD = "tensorboard"
MLRUNS = "mlruns"
WANDB = "wandb"
LOCK = "run.lock"

# The folder's own entries by kind, for `RunFolder.checked` (run.lock is opened without following links instead).
FILES = (STUDY_YAML, RUN_JSON, STUDY_DB, TRIALS_LOG, RESULTS_PARQUET, RESULTS_CSV, CURVES_PARQUET, CURVES_CSV,
         RETRAIN_PARQUET, RETRAIN_CSV, PLANS_JSON, REPORT_HTML)
FOLDERS = (CHECKPOINTS, RETRAINED, RETRAIN_JOBS, REPORT_TABLES, RAY_RESULTS, TENSORBOARD, MLRUNS, WANDB)


@dataclass(frozen=True)
class RunFolder:
    """The paths of one run folder; `RunFolder("runs/smoke").results` is its results.parquet."""

    path: Path

    def __init__(self, path: str | Path) -> None:
        object.__setattr__(self, "path", Path(path))

    def __fspath__(self) -> str:
        return str(self.path)

    @property
    def study_yaml(self) -> Path:
        return self.path / STUDY_YAML

    @property
    def run_json(self) -> Path:
        return self.path / RUN_JSON

    @property
    def study_db(self) -> Path:
        return self.path / STUDY_DB

    @property
    def trials_log(self) -> Path:
        return self.path / TRIALS_LOG

    @property
    def results(self) -> Path:
        return self.path / RESULTS_PARQUET

    @property
    def results_csv(self) -> Path:
        return self.path / RESULTS_CSV

    @property
    def curves(self) -> Path:
        return self.path / CURVES_PARQUET

    @property
    def curves_csv(self) -> Path:
        return self.path / CURVES_CSV

    @property
    def retrain(self) -> Path:
        return self.path / RETRAIN_PARQUET

    @property
    def retrain_csv(self) -> Path:
        return self.path / RETRAIN_CSV

    @property
    def retrain_jobs(self) -> Path:
        return self.path / RETRAIN_JOBS

    @property
    def plans(self) -> Path:
        return self.path / PLANS_JSON

    @property
    def checkpoints(self) -> Path:
        return self.path / CHECKPOINTS

    @property
    def retrained(self) -> Path:
        return self.path / RETRAINED

    @property
    def report_html(self) -> Path:
        return self.path / REPORT_HTML

    @property
    def report_tables(self) -> Path:
        return self.path / REPORT_TABLES

    @property
    def ray_results(self) -> Path:
        return self.path / RAY_RESULTS

    @property
    def tensorboard(self) -> Path:
        return self.path / TENSORBOARD

    @property
    def mlruns(self) -> Path:
        return self.path / MLRUNS

    @property
    def wandb(self) -> Path:
        return self.path / WANDB

    @property
    def lock(self) -> Path:
        return self.path / LOCK

    def checked(self) -> "RunFolder":
        """This folder, once none of its own entries is a link leading out of it or of the wrong kind (RunFolderError)."""
        if self.path.is_dir():
            check_entries(self.path, FILES, FOLDERS)
        return self

    def storage_url(self) -> str:
        """The default Optuna storage: study.db in the folder."""
        return f"sqlite:///{self.study_db}"

    def checkpoint_of(self, trial: str) -> Path:
        """Where the weights of trial `trial` are kept."""
        return self.checkpoints / trial

    def has_results(self) -> bool:
        """True when the folder holds results (the trial log, or a table as parquet or CSV)."""
        return self.trials_log.is_file() or self.results.is_file() or self.results_csv.is_file()


def checkpoint_cell(trial: str) -> str:
    """The `checkpoint` cell of a trial whose weights are kept: a path relative to the run folder."""
    return f"{CHECKPOINTS}/{trial}"


def retrain_job_cell(job: str, cell: str) -> str:
    """A path that a retrain job's row holds relative to its own folder (`cell`), made relative to the study's run folder."""
    return f"{RETRAIN_JOBS}/{job}/{cell}"


def retrained_cell(name: str) -> str:
    """The `checkpoint` cell of a retrained model: a path relative to the run folder."""
    return f"{RETRAINED}/{name}"
