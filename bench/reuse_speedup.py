"""What `--reuse` saves: a study run twice, the second time with `--reuse` of the first, in the same session.

Both runs are `python -m search.run` in a fresh process, as a user runs them
(imports, data, the Optuna storage, the tables and the final report
included). The first trains every trial; the second finds every trial in the
first run's folder, so it trains nothing and never starts Ray. Prints both
wall times and the ratio second / first (the issue's goal: well under 0.5),
and checks that the second run trained nothing and gave the same numbers.

    .venv/bin/python bench/reuse_speedup.py                      # the smoke study (4 one-epoch trials)
    .venv/bin/python bench/reuse_speedup.py --set train.epochs=3 --set data.dataset=cifar10
"""

from __future__ import annotations

import argparse
import sys
import tempfile
from pathlib import Path

ROOT = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(ROOT))

import runfolder  # noqa: E402  (the repository on the path first, as for `python bench/...` from anywhere)
from _study_runs import timed_study_run  # noqa: E402

STUDY = ROOT / "studies" / "smoke.yaml"
COMPARED = ["val_acc_best", "val_acc_final", "test_acc"]


def run_study(out: Path, overrides: list[str], reuse: Path | None = None) -> float:
    """Wall seconds of `python -m search.run STUDY --out OUT` (with --reuse REUSE), from process start to exit."""
    return timed_study_run(STUDY, out, overrides, *([] if reuse is None else ["--reuse", str(reuse)]))[0]


def same_numbers(first: Path, second: Path) -> tuple[int, int, bool]:
    """(trials, trials reused, whether every reused trial has its source's accuracies)."""
    earlier = runfolder.read_results(first).set_index("trial_id")
    results = runfolder.read_results(second)
    reused, equal = 0, True
    for row in results.to_dict("records"):
        source = runfolder.reused_source(row)
        if source is None:
            continue
        reused += 1
        equal &= all(row[column] == earlier.loc[source[1], column] for column in COMPARED)
    return len(results), reused, equal


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--set", dest="overrides", action="append", default=[], metavar="PATH=VALUE",
                        help="a study override for both runs (repeatable)")
    args = parser.parse_args()
    with tempfile.TemporaryDirectory() as scratch:
        first, second = Path(scratch) / "first", Path(scratch) / "second"
        first_s = run_study(first, args.overrides)
        second_s = run_study(second, args.overrides, reuse=first)
        trials, reused, equal = same_numbers(first, second)
    print(f"study: {STUDY.name} {' '.join('--set ' + o for o in args.overrides)}".rstrip())
    print(f"{f'first run (trains {trials} trials):':<36}{first_s:7.1f} s")
    print(f"{'second run (--reuse of the first):':<36}{second_s:7.1f} s  ({reused} of {trials} trials reused, "
          f"accuracies {'equal' if equal else 'DIFFERENT'})")
    print(f"ratio second / first: {second_s / first_s:.2f} (goal: well under 0.5)")


if __name__ == "__main__":
    main()
