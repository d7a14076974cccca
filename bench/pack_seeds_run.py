"""A study run with `search.pack_seeds` against the same study with every seed alone, through the whole runner.

`bench/packed_seeds.py` times the trainer alone; this times what a user
runs: `python -m search.run STUDY` twice per round, alternating (every seed
alone, then K seeds of a point per trial), each a fresh run folder and a fresh
local Ray, Ray's start included. Prints each side's wall time (median over
rounds), the ratio alone / packed (above 1: packing pays), and the largest
difference in any trial's validation and test accuracy between the two sides,
matched by grid point and seed. Packing changes only the order in which
floating-point sums are added (grouped convolutions), yet early training can
grow that into whole points of accuracy; so each round also runs the study
alone with the other memory layout (train.channels_last flipped), which
changes nothing but that order too, and prints its gap beside packing's: the
size of difference that rounding alone makes on this study.

    .venv/bin/python bench/pack_seeds_run.py [--study studies/smoke.yaml] [--pack 2] [--rounds 2] \\
        [--set search.seeds=[0,1,2,3] ...]
"""

from __future__ import annotations

import statistics
import sys
import tempfile
from pathlib import Path

import runfolder
import space
from models.cli import OneLineParser
from _study_runs import timed_study_run



def _accuracies(run_dir: Path) -> dict[tuple, tuple[float, float]]:
    rows = runfolder.read_results(run_dir)
    factors = sorted(column for column in rows.columns if column.startswith(runfolder.FACTOR_PREFIX))
    return {(*(row[f] for f in factors), row["seed"]): (row["val_acc_best"], row["test_acc"])
            for row in rows.to_dict("records")}


def main() -> None:
    parser = OneLineParser(description=__doc__.splitlines()[0])
    parser.add_argument("--study", default="studies/smoke.yaml")
    parser.add_argument("--pack", type=int, default=2, help="search.pack_seeds of the packed side")
    parser.add_argument("--rounds", type=int, default=2, help="alternating rounds; the median is reported")
    parser.add_argument("--set", dest="overrides", action="append", default=[],
                        help="a study override for both sides (as search.run's --set)")
    args = parser.parse_args()
    try:  # both sides' study, judged before anything runs
        study = space.load_study(args.study, args.overrides)
        space.load_study(args.study, [*args.overrides, f"search.pack_seeds={args.pack}"])
    except space.StudyError as error:
        parser.exit(2, f"pack_seeds_run: {error}\n")
    layout = not study.model.train.channels_last  # a fixed value: the flip is one --set
    sides = {"alone": [], "packed": [f"search.pack_seeds={args.pack}"],
             "alone, other layout": [f"train.channels_last={str(layout).lower()}"]}
    walls: dict[str, list[float]] = {side: [] for side in sides}
    gaps = {"packed": 0.0, "alone, other layout": 0.0}
    with tempfile.TemporaryDirectory(prefix="pack-seeds-run-") as folder:
        for round_ in range(args.rounds):
            runs = {}
            for number, (side, extra) in enumerate(sides.items()):
                runs[side] = Path(folder) / f"{number}-{round_}"
                walls[side].append(timed_study_run(args.study, runs[side], [*args.overrides, *extra], "--no-report")[0])
                print(f"round {round_ + 1} {side}: {walls[side][-1]:.1f} s", flush=True)
            alone = _accuracies(runs["alone"])
            for side in gaps:
                other = _accuracies(runs[side])
                if alone.keys() != other.keys():
                    sys.exit(f"pack_seeds_run: {side} ran other trials: {sorted(alone)} vs {sorted(other)}")
                gaps[side] = max(gaps[side], *(abs(a - b) for key in alone for a, b in zip(alone[key], other[key])))
    medians = {side: statistics.median(times) for side, times in walls.items()}
    for side, times in walls.items():
        print(f"{side}: {medians[side]:.1f} s ({', '.join(f'{w:.1f}' for w in times)})")
    print(f"largest accuracy difference from alone, any trial: packed {100 * gaps['packed']:.2f} pp; alone with "
          f"train.channels_last={str(layout).lower()} {100 * gaps['alone, other layout']:.2f} pp")
    print(f"speed-up alone / packed (search.pack_seeds={args.pack}): {medians['alone'] / medians['packed']:.2f}")


if __name__ == "__main__":
    main()
