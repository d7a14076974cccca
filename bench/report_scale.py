"""How long does a 10,000-trial report take to build? Goal: under 20 s.

    python bench/report_scale.py [--trials 10000] [--epochs 10] [--repeat 1]

Generates a synthetic grid study (results.parquet + curves.parquet, 10 epochs
per trial) in a temporary folder, then times, in the same run:
  baseline  read the parquet files and compute every table (reports.summarize),
            no figures and no HTML;
  report    reports.build_report: the same plus the figures, the page and the CSVs.
The difference is the cost of the figures and the HTML. Printed as seconds and
as a fraction of the 20 s budget; not a pass/fail test (docs/STYLE: measure,
don't assert speed).
"""

from __future__ import annotations

import argparse
import os
import platform
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

BUDGET_S = 20.0
LEVELS = {"shortcut": ["A", "B", "C", "none"], "depth": [20, 32, 44, 56, 110], "width": [0.5, 1.0, 2.0, 4.0, 8.0]}
EFFECTS = {"shortcut": {"B": 0.01, "C": 0.012, "none": -0.02}, "depth": {32: 0.005, 44: 0.01, 56: 0.012, 110: 0.015},
           "width": {0.5: -0.03, 2.0: 0.01, 4.0: 0.015, 8.0: 0.016}}


def make_run(run_dir: Path, n_trials: int, epochs: int) -> None:
    """A grid study of n_trials trials (seeds repeat the 100-cell grid), 3% failed and 3% pruned."""
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


def timed(function, *args, **kwargs) -> float:
    start = time.perf_counter()
    function(*args, **kwargs)
    return time.perf_counter() - start


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--trials", type=int, default=10_000)
    parser.add_argument("--epochs", type=int, default=10)
    parser.add_argument("--repeat", type=int, default=1, help="time each step this many times and keep the best")
    parser.add_argument("--keep", type=Path, default=None, help="copy the generated run folder (with its report) here")
    args = parser.parse_args()

    with tempfile.TemporaryDirectory(prefix="report_scale_") as temporary:
        run_dir = Path(temporary) / "runs" / "scale_bench"
        generate_s = timed(make_run, run_dir, args.trials, args.epochs)
        # Warm-up: the first build pays one-off costs (font cache, lazy imports such as optuna's).
        warmup_s = timed(reports.build_report, run_dir)
        baseline_s = min(timed(lambda: reports.summarize(reports.load_run(run_dir))) for _ in range(args.repeat))
        report_s = min(timed(reports.build_report, run_dir) for _ in range(args.repeat))
        # What the runner pays: a fresh process, imports included.
        command = [sys.executable, "-m", "reports.build", str(run_dir)]
        cli_s = timed(subprocess.run, command, check=True, capture_output=True, cwd=REPOSITORY)
        size_mb = (run_dir / "report.html").stat().st_size / 1e6
        if args.keep:
            shutil.copytree(run_dir, args.keep, dirs_exist_ok=True)

    print(f"machine: {platform.processor() or platform.machine()}, {os.cpu_count()} CPUs, Python {platform.python_version()}")
    print(f"data: {args.trials} trials x {args.epochs} epochs (generated in {generate_s:.1f} s)")
    print(f"baseline (read parquet + all statistics, no figures/HTML): {baseline_s:6.2f} s")
    print(f"report   (build_report: + figures, HTML, CSVs):            {report_s:6.2f} s   "
          f"= {report_s / BUDGET_S:.2f} of the {BUDGET_S:.0f} s budget")
    print(f"first build in this process (warm-up):                     {warmup_s:6.2f} s   "
          f"= {warmup_s / BUDGET_S:.2f} of the budget")
    print(f"python -m reports.build in a fresh process (imports too):  {cli_s:6.2f} s   "
          f"= {cli_s / BUDGET_S:.2f} of the budget")
    print(f"figures + HTML cost: {report_s - baseline_s:.2f} s = {report_s / baseline_s:.1f}x the baseline; "
          f"report.html {size_mb:.2f} MB")


if __name__ == "__main__":
    main()
