"""Weights & Biases runs of each trial: `python -m search.run --log wandb`.

One W&B run per trial (name: its trial id; project: the study's name; group:
the run folder's name): per-epoch metrics as they are reported (step =
epoch), and when the trial is recorded its settings as the run's config and
its final metrics as the run's summary. Written in the driver from the
recorder's events (the `wandb` package: `pip install 'resnas[wandb]'`).

Offline unless the user says otherwise: the machines a study runs on often
have no network, and a tracker must never stall or fail a study. So runs go
to `wandb/` in the run folder with mode `offline` unless WANDB_MODE is set;
`wandb sync RUN_DIR/wandb/offline-run-*` uploads them later.
"""

from __future__ import annotations

import os
from pathlib import Path
from typing import Any

import runfolder

from ._mlflow import experiment_name
from ._tensorboard import PerTrialTracker, trial_settings

MODE_ENV = "WANDB_MODE"
DEFAULT_MODE = "offline"


def wandb_mode() -> str:
    """WANDB_MODE when the user set it, else offline."""
    return os.environ.get(MODE_ENV) or DEFAULT_MODE


class WandbTracker(PerTrialTracker):
    """Writes each trial's epochs, settings and final metrics to a W&B run of its own."""

    def __init__(self, run_dir: Path) -> None:
        super().__init__()
        self.run_dir = Path(run_dir).resolve()
        self.project = experiment_name(self.run_dir)
        self.mode = wandb_mode()
        self._runs: dict[str, Any] = {}  # trial id -> wandb Run, for trials in flight

    def __getstate__(self) -> dict[str, Any]:
        # Tune pickles its callbacks (the recorder and its listeners): open runs stay with this driver.
        return {**self.__dict__, "_runs": {}}

    def _run(self, trial_id: str) -> Any:
        if trial_id not in self._runs:
            import wandb

            folder = runfolder.RunFolder(self.run_dir)
            folder.wandb.mkdir(parents=True, exist_ok=True)
            # Several trials run at once, so several runs are open in this process: "create_new" keeps them apart.
            self._runs[trial_id] = wandb.init(
                project=self.project, name=trial_id, group=self.run_dir.name, dir=str(self.run_dir),
                mode=self.mode, reinit="create_new", job_type="trial",
                settings=wandb.Settings(silent=True, console="off"))
        return self._runs[trial_id]

    def log_epoch(self, trial_id: str, epoch: int, values: dict[str, float]) -> None:
        """Log one epoch's metrics at step = epoch."""
        self._run(trial_id).log(values, step=epoch)

    def log_trial(self, row: dict[str, Any], finals: dict[str, float]) -> None:
        """Log the settings as config and the final metrics as summary; finish the run."""
        trial_id = row["trial_id"]
        run = self._run(trial_id)
        run.config.update(trial_settings(row), allow_val_change=True)
        run.summary.update({f"final.{name}": value for name, value in finals.items()})
        run.summary.update({"status": str(row.get("status", "")), "error": str(row.get("error") or "")})
        run.finish(exit_code=0 if row.get("status") != "failed" else 1)
        self._runs.pop(trial_id, None)

    def close(self) -> None:
        """Finish the runs of trials still in flight (an interrupted attempt) as failed."""
        for trial_id in list(self._runs):
            self._runs.pop(trial_id).finish(exit_code=1)
