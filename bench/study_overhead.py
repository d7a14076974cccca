"""Orchestration cost of `search.run`: an N-trial study against the same N trainings in a plain loop.

The study runs as a user runs it (`python -m search.run`, a fresh process that
starts Ray, the Optuna storage, the result tables and the report). The
baseline trains the same specs with the same settings one after another with
`search.train.fit` in one process. Both give each training the same number
of threads, and the study runs one trial at a time, so the difference is the
orchestration alone. Prints the ratio study / loop (goal: < 1.10 for trials of
30 s or more).

The live report (report.html rebuilt in a background thread of the driver as
trials finish, at most every `report.live_every_s`) is part of the study's
wall time; the study prints how many builds it made and their seconds, and
this prints their share. `--live-every-s` (repeatable) runs the study once per
value: 0 rebuilds after every trial (the most it can cost), 1e9 only after the
first (about none).

    .venv/bin/python bench/study_overhead.py [--epochs 12] [--seeds 2] [--width-multiplier 4]
    .venv/bin/python bench/study_overhead.py --live-every-s 0 --live-every-s 1e9
"""

from __future__ import annotations

import argparse
import re
import tempfile
import time
from pathlib import Path

import pandas as pd
import torch
from _study_runs import timed_study_run

ROOT = Path(__file__).resolve().parents[1]
STUDY = ROOT / "studies" / "smoke.yaml"


def _overrides(args: argparse.Namespace) -> list[str]:
    # The smoke study's space (shortcut A/B on a tiny net) on the real embedded
    # sample, long enough per trial to matter.
    return ["data.dataset=cifar10", f"train.epochs={args.epochs}", f"search.seeds={list(range(args.seeds))}",
            "search.max_concurrent=1", f"search.resources={{cpus: {args.threads}, gpus: 0}}",
            "train.batch_size=64", f"space.width_multiplier={args.width_multiplier}"]


# What the runner prints at the end about the live report (search._live_report.LiveReport.summary).
LIVE_LINE = re.compile(r"live report: (\d+) build\(s\) in the background, ([0-9.]+) s in all")


def run_study(args: argparse.Namespace, out: Path, live_every_s: float | None = None) -> tuple[float, int, float]:
    """(wall seconds, live builds, their seconds in the background) of `python -m search.run`."""
    live = [] if live_every_s is None else [f"report.live_every_s={live_every_s}"]
    seconds, stdout = timed_study_run(STUDY, out, _overrides(args) + live)
    match = LIVE_LINE.search(stdout)
    return seconds, int(match.group(1)) if match else 0, float(match.group(2)) if match else 0.0


def run_loop(args: argparse.Namespace, out: Path) -> tuple[float, list[float]]:
    import space
    import imagefeed
    from search.train import fit

    start = time.perf_counter()
    torch.set_num_threads(args.threads)
    study = space.load_study(STUDY, _overrides(args))
    splits = imagefeed.load(study.data_settings())
    trial_seconds = []
    for point in space.grid_points(study):
        for seed in study.search.seeds:
            plan = space.resolve(study, {"point": point.label, "seed": seed})
            result = fit(plan.spec, plan.train, study.data_settings(), splits=splits)
            trial_seconds.append(result["wall_s"])
    return time.perf_counter() - start, trial_seconds


def main() -> None:
    """Run both and print the ratio."""
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--epochs", type=int, default=12)
    parser.add_argument("--seeds", type=int, default=2)
    parser.add_argument("--threads", type=int, default=2)
    parser.add_argument("--width-multiplier", type=float, default=4.0)
    parser.add_argument("--live-every-s", type=float, action="append", default=None,
                        help="report.live_every_s of the study (default: the study's); repeat to run one study per value")
    args = parser.parse_args()
    with tempfile.TemporaryDirectory() as folder:
        loop_s, trial_s = run_loop(args, Path(folder) / "loop")
        studies = []
        for index, live_every_s in enumerate(args.live_every_s or [None]):
            studies.append((live_every_s, *run_study(args, Path(folder) / f"study{index}", live_every_s)))
        _, study_s, builds, live_s = studies[-1]
        results = pd.read_parquet(Path(folder) / f"study{len(studies) - 1}" / "results.parquet")
        # The report is part of the study's wall time; time it alone to show its share.
        from reports import build_report

        start = time.perf_counter()
        build_report(Path(folder) / f"study{len(studies) - 1}")
        report_s = time.perf_counter() - start
    n = len(trial_s)
    inside = results["wall_s"].sum()
    print(f"{n} trials, {args.epochs} epochs each on the embedded sample, {args.threads} threads per training, "
          f"one at a time; mean trial {sum(trial_s) / n:.1f} s in the loop, "
          f"{inside / n:.1f} s inside the study")
    print(f"plain loop:           {loop_s:7.1f} s")
    print(f"python -m search.run: {study_s:7.1f} s  (Ray start, workers, storage, tables, report included)")
    print(f"  of which the report about {report_s:.1f} s; trials inside workers {inside:.1f} s; "
          f"the rest (Ray start, scheduling, recording) {study_s - report_s - inside:.1f} s")
    print(f"ratio study / loop:  {study_s / loop_s:.3f}  (goal < 1.10)")
    print(f"ratio without the report: {(study_s - report_s) / loop_s:.3f}")
    for live_every_s, seconds, builds, live_s in studies:
        every = "the study's" if live_every_s is None else f"{live_every_s:g}"
        print(f"live report, report.live_every_s={every}: study {seconds:7.1f} s, ratio {seconds / loop_s:.3f}; "
              f"{builds} live build(s), {live_s:.1f} s in the driver's background thread "
              f"({live_s / seconds:.1%} of the study's wall time)")


if __name__ == "__main__":
    main()
