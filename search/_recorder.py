"""The driver's bookkeeping: Tune's trial events become results rows, kept checkpoints and one progress line each.

Every finished trial reaches disk at once (`runfolder.ResultsTables`), so an
interrupted run loses at most the trials in flight. The recorder reads each
trial's plan from the config the driver sent; it never resolves a trial again.
"""

from __future__ import annotations

import math
import os
import shutil
import sys
import time
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import runfolder
from models import ArchSpec
from runfolder import RANKING_COLUMN, ResultsTables

from ._reuse import EarlierTrial, copy_checkpoint
from ._trial import PACK, SCREEN, objective_metric, pack_members, sampled_params, seed_key, seed_reports


@dataclass
class TrialCounts:
    """How many trials are in each state, for the progress line and run.json."""

    running: int = 0
    complete: int = 0
    failed: int = 0
    pruned: int = 0

    def add(self, status: str) -> None:
        setattr(self, status, getattr(self, status) + 1)

    @property
    def finished(self) -> int:
        return self.complete + self.failed + self.pruned


def format_duration(seconds: float) -> str:
    """"1h02m03s", or "2m03s" under an hour."""
    minutes, seconds = divmod(int(seconds), 60)
    hours, minutes = divmod(minutes, 60)
    return f"{hours}h{minutes:02d}m{seconds:02d}s" if hours else f"{minutes}m{seconds:02d}s"


def _percent(value: Any) -> str:
    return "-" if value is None or (isinstance(value, float) and math.isnan(value)) else f"{100 * value:.2f}%"


def _planned(plan: dict[str, Any] | None,
             params: dict[str, Any]) -> tuple[ArchSpec | None, dict | None, dict, Any, dict | None]:
    """(spec, train dict, factors, seed, match record) of a trial's plan; the raw parameters when there is none."""
    if plan is None:
        return None, None, dict(params), params.get("seed"), None
    return (ArchSpec.from_dict(plan["spec"]), dict(plan["train"]), dict(plan["factors"]), plan["train"]["seed"],
            plan.get("matched"))


class TrialListener:
    """Told by the recorder, in the driver, of each epoch and each recorded trial: the live report, TensorBoard."""

    def epoch(self, trial_id: str, metrics: dict[str, Any]) -> None:
        """One epoch's metrics of a trial still running (as the worker reported them)."""

    def trial(self, row: dict[str, Any], curve: list[dict[str, Any]]) -> None:
        """A finished trial, after its row and curve are on disk."""

    def close(self) -> None:
        """The attempt has ended; finish any work in flight."""


class Recorder:
    """Turns Tune's trial events into results rows, checkpoint pruning and one progress line each."""

    def __init__(self, tables: ResultsTables, total: int, started: float, keep_checkpoints: int,
                 out: Any = sys.stdout) -> None:
        self.tables = tables
        self.total = total
        self.started = started
        self.keep_checkpoints = keep_checkpoints
        self.out = out
        self.curves: dict[str, list[dict[str, Any]]] = {}
        self.recorded_here: list[str] = []  # trials trained in this attempt
        self.reused_here: list[str] = []    # trials taken from earlier runs in this attempt (search._reuse)
        self.counts = TrialCounts()
        self.listeners: list[TrialListener] = []
        for row in tables.rows.values():
            self.counts.add(row["status"])

    # Tune callback hooks (a ray.tune.Callback subclass forwards here).
    def trial_result(self, tune_trial_id: str, result: dict[str, Any]) -> None:
        # Tune puts the trial's config in each result: which trials (and, with PACK, which seeds) it trains.
        members = pack_members(result.get("config") or {}) if "config" in result else []
        for index, epoch in seed_reports(result):
            if "train_loss" not in epoch:
                continue  # not an epoch's metrics (the last epoch arrives with the final report, which has them)
            self.curves.setdefault(seed_key(tune_trial_id, index), []).append(epoch)
            if index < len(members):
                self.tell("epoch", runfolder.trial_id(members[index]["number"]), epoch)

    def trial_finished(self, tune_trial_id: str, config: dict[str, Any], result: dict[str, Any],
                       error: str = "", running: int = 0) -> None:
        """Record the trial Tune ended (each of its seeds, where it packs several: search.pack_seeds)."""
        self.counts.running = running
        members = pack_members(config)
        reports = result.get(PACK) if PACK in config else [result]
        for index, member in enumerate(members):
            report = reports[index] if isinstance(reports, list) and index < len(reports) else None
            # A packed seed without a report of its own: the worker died before the final report.
            self._record_trained(seed_key(tune_trial_id, index), member, report or {},
                                 error or ("" if report is not None else "the trial's worker ended without a report"),
                                 config.get(SCREEN) if index == 0 else None)

    def _record_trained(self, curve_key: str, member: dict[str, Any], result: dict[str, Any], error: str,
                        screen: dict[str, float] | None) -> None:
        spec, train, factors, seed, matched = _planned(member.get("plan"), member.get("params") or {})
        if error:
            status = "failed"
        elif not result.get("final"):
            status = "pruned"
            error = f"stopped early by the scheduler after epoch {result.get('epoch', '?')}"
            result = {**result, "val_acc_best": result.get(objective_metric("val_acc"), math.nan),
                      "val_acc_final": result.get("val_acc"),
                      # the epochs trained, which budget-true restarts make more than the budget epoch reached
                      "epochs_run": result.get("epochs_run", result.get("epoch"))}
        else:
            status = result.get("status", "failed")
        row = runfolder.trial_row(number=member["number"], status=status, seed=seed, factors=factors,
                                  spec=spec, train=train, metrics=result, error=error, matched=matched,
                                  screen=screen)
        self.tables.add_trial(row, self.curves.pop(curve_key, []))
        self.recorded_here.append(row["trial_id"])
        self.counts.add(status)
        if status == "complete":
            self._prune_checkpoints(row["trial_id"])
        self._print_line(row)
        self.tell("trial", row, self.tables.curves.get(row["trial_id"], []))

    def trial_reused(self, number: int, plan: dict[str, Any], earlier: EarlierTrial) -> dict[str, Any]:
        """Record trial `number` from a complete trial of an earlier run instead of training it; its row.

        Durable at once, like a trained trial: the checkpoint folder first (a
        folder without a row is pruned or replaced later), then the row and
        curve in the trial log.
        """
        spec, train, factors, seed, matched = _planned(plan, {})
        trial = runfolder.trial_id(number)
        checkpoint = earlier.checkpoint
        if checkpoint is not None and self.keep_checkpoints != 0:
            copy_checkpoint(checkpoint, self.tables.folder.checkpoint_of(trial))
        row = runfolder.trial_row(number=number, status="complete", seed=seed, factors=factors, spec=spec,
                                  train=train, metrics=earlier.row, matched=matched, reused_from=earlier.reused_from)
        self.tables.add_trial(row, earlier.curve)
        self.reused_here.append(trial)
        self.counts.add("complete")
        self._prune_checkpoints(trial)
        self._print_line(row)
        self.tell("trial", row, self.tables.curves.get(trial, []))
        return row

    def trial_rejected(self, number: int, params: dict[str, Any], reason: str,
                       plan: dict[str, Any] | None, screen: dict[str, float] | None = None) -> None:
        """Record a sample rejected before training (a constraint, or search.screen with its `screen` scores)."""
        spec, train, factors, seed, matched = _planned(plan, sampled_params(params))
        row = runfolder.trial_row(number=number, status="pruned", seed=seed, factors=factors, spec=spec,
                                  train=train, metrics={}, error=runfolder.REJECTED_PREFIX + reason, matched=matched,
                                  screen=screen)
        self.tables.add_trial(row)

    def tell(self, event: str, *args: Any) -> None:
        """Pass an event to every listener; a listener's failure is printed, and the study goes on."""
        for listener in self.listeners:
            try:
                getattr(listener, event)(*args)
            except Exception as error:  # a tracker or report bug must not lose a trial
                print(f"{type(listener).__name__}.{event} failed ({type(error).__name__}: {error}); "
                      "the study goes on", file=self.out, flush=True)

    def new_rows(self) -> list[dict[str, Any]]:
        """Rows of trials that trained in this attempt (not in an earlier one)."""
        return [self.tables.rows[t] for t in self.recorded_here if t in self.tables.rows]

    def reconcile_checkpoints(self) -> None:
        """Make the checkpoint cells agree with the folders, as a resumed run starts.

        A trial's row is durable before the note of its kept weights is: a
        driver killed between the two leaves a folder whose row says it has
        none. The cells are set from the folders on disk (and, with a top-k
        to keep, the folders outside it go), as after any finished trial.
        The folders of trials that never got a complete row go first
        (`_prune_orphans`).
        """
        folder = self.tables.folder
        self._prune_orphans()
        if self.keep_checkpoints >= 0:
            self._prune_checkpoints("")
            return
        for trial, row in self.tables.rows.items():
            if row.get("status") == "complete" and folder.checkpoint_of(trial).is_dir():
                self.tables.keep_checkpoint(trial, runfolder.checkpoint_cell(trial))

    def _prune_orphans(self) -> None:
        """Remove the checkpoints/ folders of trials without a complete row: what trials in flight left when killed.

        Only as a resumed run starts, before any trial runs: during a run a
        trial writes its folder before its row exists. Only real folders
        inside the run folder go; a link (checkpoints/ itself or an entry) is
        left, never followed, as is a file.
        """
        folder = self.tables.folder
        checkpoints = folder.checkpoints
        if (checkpoints.is_symlink() or not checkpoints.is_dir()
                or checkpoints.resolve().parent != folder.path.resolve()):
            return
        orphans = []
        for path in sorted(checkpoints.iterdir()):
            row = self.tables.rows.get(path.name)
            if (row is None or row.get("status") != "complete") and path.is_dir() and not path.is_symlink():
                shutil.rmtree(path)  # does not follow the links inside it
                orphans.append(path.name)
        if orphans:
            shown = ", ".join(orphans[:5]) + (f" and {len(orphans) - 5} more" if len(orphans) > 5 else "")
            print(f"resume: removed {len(orphans)} checkpoint folder(s) of trials without a complete row (interrupted "
                  f"or failed): {shown}", file=self.out, flush=True)

    def _prune_checkpoints(self, finished: str) -> None:
        """Keep the weights of the top-k trials in the run-folder ranking (`finished` just completed)."""
        folder = self.tables.folder
        if self.keep_checkpoints < 0:  # every checkpoint is kept: only the new one needs its cell, not a scan
            if folder.checkpoint_of(finished).is_dir():
                self.tables.keep_checkpoint(finished, runfolder.checkpoint_cell(finished))
            return
        kept = {r["trial_id"] for r in self.tables.top(self.keep_checkpoints)}
        # Never through a link: a checkpoints/ (or a trial's folder) that leads elsewhere is not ours to empty.
        if folder.checkpoints.is_dir() and not folder.checkpoints.is_symlink():
            for path in folder.checkpoints.iterdir():
                if (path.is_dir() and not path.is_symlink() and path.name not in kept
                        and path.name in self.tables.rows):
                    shutil.rmtree(path, ignore_errors=True)
        self.tables.set_checkpoints({t: runfolder.checkpoint_cell(t) for t in kept
                                     if folder.checkpoint_of(t).is_dir()})

    def _print_line(self, row: dict[str, Any]) -> None:
        best = self.tables.best
        best_text = f"best val {_percent(best[RANKING_COLUMN])} ({best['trial_id']})" if best else "best val -"
        what = ", ".join(f"{k.removeprefix(runfolder.FACTOR_PREFIX)}={v}" for k, v in row.items()
                         if k.startswith(runfolder.FACTOR_PREFIX))
        packed = row.get("packed_seeds")
        where = (f"reused from {row[runfolder.REUSED_FROM]}" if row.get(runfolder.REUSED_FROM)
                 else f"in {row['wall_s']:.0f}s" + (f" ({packed} seeds packed)" if packed and packed > 1 else ""))
        detail = (f"val {_percent(row['val_acc_best'])} test {_percent(row['test_acc'])} {where}"
                  if row["status"] == "complete" else row["error"][:120])
        print(f"[{self.counts.finished}/{self.total} done, {self.counts.running} running, {self.counts.failed} "
              f"failed, {best_text}, {format_duration(time.time() - self.started)}] "
              f"{row['trial_id']} {row['status']}: {what}: {detail}", file=self.out, flush=True)


def tune_callback(recorder: Recorder) -> Any:
    """A ray.tune.Callback that forwards Tune's events to `recorder`, in the driver process."""
    from ray.tune import Callback

    class RecorderCallback(Callback):
        def on_trial_result(self, iteration: int, trials: list, trial: Any, result: dict, **info: Any) -> None:
            recorder.trial_result(trial.trial_id, result)

        def on_trial_complete(self, iteration: int, trials: list, trial: Any, **info: Any) -> None:
            recorder.trial_finished(trial.trial_id, trial.config, trial.last_result or {},
                                    running=_running(trials, trial))

        def on_trial_error(self, iteration: int, trials: list, trial: Any, **info: Any) -> None:
            recorder.trial_finished(trial.trial_id, trial.config, trial.last_result or {},
                                    error=ray_error_message(trial), running=_running(trials, trial))

    return RecorderCallback()


def _running(trials: list, finished: Any) -> int:
    """Trials Tune still runs, besides the one that just finished."""
    return sum(1 for t in trials if t is not finished and t.status == "RUNNING")


def ray_error_message(trial: Any) -> str:
    """The last line of the error Ray stored for a trial whose worker failed."""
    text = ""
    error_file = getattr(trial, "error_file", None)
    if error_file and os.path.exists(error_file):
        text = Path(error_file).read_text()
    text = text or str(getattr(trial, "error_msg", "") or "the trial's worker failed")
    lines = [line for line in text.strip().splitlines() if line.strip()]
    return lines[-1][:500] if lines else "the trial's worker failed"
