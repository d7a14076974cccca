"""How long does a report of a large run take, and how much memory? Goal: 10^6 trials in under 60 s and 4 GiB.

    python bench/report_scale.py [--trials 10000] [--epochs 10] [--repeat 1] [--cli-only]

Generates a synthetic grid study (results.parquet + curves.parquet, 10 epochs
per trial) in a temporary folder (through the runner's writer up to 20,000
trials, column by column with pyarrow above), then times, in the same run:
  cli       python -m reports.build in a fresh process, imports included, with
            its peak resident memory (what a user pays; issue 25);
  baseline  read the parquet files and compute every table (reports.summarize),
            no figures and no HTML;
  report    reports.build_report: the same plus the figures, the page and the CSVs.
The difference is the cost of the figures and the HTML. Printed as seconds and
as a fraction of the budget; not a pass/fail test (docs/STYLE: measure,
don't assert speed).
"""

from __future__ import annotations

import argparse
import json
import math
import os
import platform
import resource
import shutil
import subprocess
import sys
import tempfile
import time
from pathlib import Path

# Run from a checkout without installing: the repository root holds `reports`, tests/ the synthetic run writer.
REPOSITORY = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(REPOSITORY))
sys.path.insert(1, str(REPOSITORY / "tests"))

import numpy as np  # noqa: E402

import reports  # noqa: E402
import synthetic_run as synthetic  # noqa: E402
from reports._load import report_columns  # noqa: E402

BUDGET_S = 60.0
BUDGET_GIB = 4.0
# Above this many trials the run folder is written column by column (make_run_direct), not trial by trial.
DIRECT_ABOVE = 20_000
LEVELS = {"shortcut": ["A", "B", "C", "none"], "depth": [20, 32, 44, 56, 110], "width": [0.5, 1.0, 2.0, 4.0, 8.0]}
EFFECTS = {"shortcut": {"B": 0.01, "C": 0.012, "none": -0.02}, "depth": {32: 0.005, 44: 0.01, 56: 0.012, 110: 0.015},
           "width": {0.5: -0.03, 2.0: 0.01, 4.0: 0.015, 8.0: 0.016}}


def make_run(run_dir: Path, n_trials: int, epochs: int) -> None:
    """A grid study of n_trials trials (seeds repeat the 100-cell grid), 3% failed and 3% pruned, through the runner's writer.

    Every row goes through `runfolder.ResultsTables` (the trial log, then the
    tables): faithful, but about a millisecond a trial, so `make_run_direct`
    writes the large runs.
    """
    cells = int(np.prod([len(levels) for levels in LEVELS.values()]))
    seeds = range(-(-n_trials // cells))
    trials = synthetic.grid_trials(LEVELS, seeds)[:n_trials]
    rng = np.random.default_rng(0)
    for trial, draw in zip(trials, rng.random(len(trials))):
        trial["status"] = "failed" if draw < 0.03 else "pruned" if draw < 0.06 else "complete"
    results, curves = synthetic.build_results(trials, epochs=epochs, effects=EFFECTS, seed=0)
    factors = {name: {"levels": levels, "reference": levels[0]} for name, levels in LEVELS.items()}
    info = synthetic.run_info("scale_bench", factors, trials=n_trials, epochs=epochs, seeds=list(seeds))
    synthetic.write_run(run_dir, results, info, curves)


def make_run_direct(run_dir: Path, n_trials: int, epochs: int) -> None:
    """The same study as `make_run`, its two tables written column by column with pyarrow (seconds at 10^6 trials).

    One row per grid cell comes from `synthetic.build_results` (so through
    `runfolder.trial_row`: the columns and their types are the runner's); the
    rows of the study are those cells repeated, with each trial's own cells
    (id, seed, status, accuracies, error, checkpoint, train settings) computed
    as whole columns, and the accuracies drawn from the same additive model.
    The folder has no trial log, as one written before the log existed.
    """
    import pyarrow as pa
    import pyarrow.parquet as pq

    import runfolder

    cells = int(np.prod([len(levels) for levels in LEVELS.values()]))
    n_seeds = -(-n_trials // cells)
    template, _ = synthetic.build_results(synthetic.grid_trials(LEVELS, [0]), epochs=epochs, effects=EFFECTS, seed=0)
    rng = np.random.default_rng(0)
    number = np.arange(n_trials)
    cell, seed = number // n_seeds, number % n_seeds  # grid order: every seed of a cell, then the next cell
    draw = rng.random(n_trials)
    status = np.where(draw < 0.03, "failed", np.where(draw < 0.06, "pruned", "complete"))
    complete, pruned, failed = status == "complete", status == "pruned", status == "failed"
    offset = np.zeros(cells)
    for position, trial in enumerate(synthetic.grid_trials(LEVELS, [0])):
        offset[position] = sum(EFFECTS[name].get(trial[name], 0.0) for name in LEVELS)
    val_best = np.clip(synthetic.BASE_ACCURACY + offset[cell] + rng.normal(0.0, synthetic.NOISE_STD, n_trials), 0, 1)
    test = np.clip(val_best - 0.004 + rng.normal(0.0, synthetic.NOISE_STD / 2, n_trials), 0.0, 1.0)
    epochs_run = np.where(complete, epochs, np.where(pruned, max(1, epochs // 2), 0))
    ids = np.array([runfolder.trial_id(i) for i in range(n_trials)], dtype=object)
    error = np.full(n_trials, "", dtype=object)
    error[failed] = np.array(synthetic.FAILURE_MESSAGES, dtype=object)[number[failed] % len(synthetic.FAILURE_MESSAGES)]
    error[pruned] = synthetic.PRUNED_MESSAGE.format(epoch=max(1, epochs // 2))
    checkpoint = np.full(n_trials, "", dtype=object)
    kept = complete & (number % 2 == 0)
    checkpoint[kept] = [runfolder.checkpoint_cell(trial) for trial in ids[kept]]
    train_json = pa.array([json.dumps(synthetic._train_settings(epochs, 0.1, s), sort_keys=True)
                           for s in range(n_seeds)], pa.string())
    own = {
        "trial_id": pa.array(ids, pa.string()), "number": pa.array(number, pa.int64()),
        "status": pa.array(status, pa.string()), "seed": pa.array(seed, pa.int64()),
        "train.seed": pa.array(seed, pa.int64()), "train_json": train_json.take(pa.array(seed)),
        "val_acc_best": pa.array(np.where(complete, val_best, np.where(pruned, val_best - 0.05, np.nan)), from_pandas=True),
        "val_acc_final": pa.array(np.where(complete, val_best - 0.002, np.nan), from_pandas=True),
        "test_acc": pa.array(np.where(complete, test, np.nan), from_pandas=True),
        "epochs_run": pa.array(epochs_run, pa.int64()), "wall_s": pa.array(10.0 * np.maximum(epochs_run, 1)),
        "error": pa.array(error, pa.string()), "checkpoint": pa.array(checkpoint, pa.string()),
    }
    template = pa.Table.from_pandas(template, preserve_index=False).replace_schema_metadata(None)
    # pandas gives large_string; the runner's writer gives string.
    template = template.cast(pa.schema([(field.name, pa.string() if pa.types.is_large_string(field.type) else field.type)
                                        for field in template.schema]))
    table = template.take(pa.array(cell))
    for name, column in own.items():
        table = table.set_column(table.schema.get_field_index(name), name, column.cast(table.schema.field(name).type))
    folder = runfolder.RunFolder(run_dir)
    run_dir.mkdir(parents=True, exist_ok=True)
    pq.write_table(table, folder.results)
    del table, own

    # Curves as synthetic._curves draws them: a saturating rise to each trial's best val accuracy.
    best = np.repeat(np.where(np.isnan(val_best) | failed, 0.1, np.where(pruned, val_best - 0.05, val_best)), epochs_run)
    starts = np.repeat(np.cumsum(epochs_run) - epochs_run, epochs_run)
    epoch = np.arange(epochs_run.sum()) - starts + 1
    rise = (1.0 - np.exp(-3.0 * epoch / epochs)) / (1.0 - math.exp(-3.0))
    trial_of_point = np.repeat(number, epochs_run)
    curves = pa.table({
        "trial_id": pa.DictionaryArray.from_arrays(pa.array(trial_of_point, pa.int32()),
                                                   pa.array(ids, pa.string())).dictionary_decode(),
        "epoch": pa.array(epoch, pa.int64()), "train_loss": pa.array(2.3 * (1.0 - 0.6 * rise)),
        "val_acc": pa.array(np.clip(0.1 + (best - 0.1) * rise + rng.normal(0.0, 0.003, epoch.size), 0.0, 1.0)),
        "epoch_s": pa.array(np.full(epoch.size, 10.0)), "images_per_s": pa.array(np.full(epoch.size, 1500.0)),
        "lr": pa.array(np.full(epoch.size, 0.1)),
    })
    pq.write_table(curves, folder.curves)
    factors = {name: {"levels": levels, "reference": levels[0]} for name, levels in LEVELS.items()}
    info = synthetic.run_info("scale_bench", factors, trials=n_trials, epochs=epochs, seeds=list(range(n_seeds)))
    runfolder.write_run_info(run_dir, runfolder.RunInfo.from_dict(info, where="synthetic run.json"))


def timed(function, *args, **kwargs) -> float:
    start = time.perf_counter()
    function(*args, **kwargs)
    return time.perf_counter() - start


def peak_gib(who: int) -> float:
    """The peak resident memory of this process (RUSAGE_SELF) or its waited-for children, in GiB (Linux: KiB)."""
    return resource.getrusage(who).ru_maxrss / 2**20


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--trials", type=int, default=10_000)
    parser.add_argument("--epochs", type=int, default=10)
    parser.add_argument("--repeat", type=int, default=1, help="time each step this many times and keep the best")
    parser.add_argument("--keep", type=Path, default=None, help="copy the generated run folder (with its report) here")
    parser.add_argument("--cli-only", action="store_true",
                        help="time only `python -m reports.build` in a fresh process (the 10^6-trial figure)")
    args = parser.parse_args()

    with tempfile.TemporaryDirectory(prefix="report_scale_") as temporary:
        run_dir = Path(temporary) / "runs" / "scale_bench"
        writer = make_run if args.trials <= DIRECT_ABOVE else make_run_direct
        generate_s = timed(writer, run_dir, args.trials, args.epochs)
        # What the runner pays: a fresh process, imports included; first, so that RUSAGE_CHILDREN is its peak alone.
        command = [sys.executable, "-m", "reports.build", str(run_dir)]
        cli_s = timed(subprocess.run, command, check=True, capture_output=True, cwd=REPOSITORY)
        cli_gib = peak_gib(resource.RUSAGE_CHILDREN)
        if not args.cli_only:
            # Warm-up: the first build pays one-off costs (font cache, lazy imports such as optuna's).
            warmup_s = timed(reports.build_report, run_dir)
            baseline_s = min(timed(lambda: reports.summarize(reports.load_run(run_dir, columns=report_columns)))
                             for _ in range(args.repeat))
            report_s = min(timed(reports.build_report, run_dir) for _ in range(args.repeat))
        size_mb = (run_dir / "report.html").stat().st_size / 1e6
        if args.keep:
            shutil.copytree(run_dir, args.keep, dirs_exist_ok=True)

    print(f"machine: {platform.processor() or platform.machine()}, {os.cpu_count()} CPUs, Python {platform.python_version()}")
    print(f"data: {args.trials} trials x {args.epochs} epochs (generated in {generate_s:.1f} s by {writer.__name__})")
    print(f"python -m reports.build in a fresh process (imports too):  {cli_s:6.2f} s   "
          f"= {cli_s / BUDGET_S:.2f} of the {BUDGET_S:.0f} s budget; peak RSS {cli_gib:.2f} GiB "
          f"= {cli_gib / BUDGET_GIB:.2f} of {BUDGET_GIB:.0f} GiB")
    if not args.cli_only:
        print(f"baseline (read parquet + all statistics, no figures/HTML): {baseline_s:6.2f} s")
        print(f"report   (build_report: + figures, HTML, CSVs):            {report_s:6.2f} s   "
              f"= {report_s / BUDGET_S:.2f} of the budget")
        print(f"first build in this process (warm-up):                     {warmup_s:6.2f} s")
        print(f"figures + HTML cost: {report_s - baseline_s:.2f} s = {report_s / baseline_s:.1f}x the baseline; "
              f"peak RSS of this process {peak_gib(resource.RUSAGE_SELF):.2f} GiB")
    print(f"report.html {size_mb:.2f} MB")


if __name__ == "__main__":
    main()
