"""Command line: `python -m reports.replay RUN` replays search strategies on a finished run's curves, training nothing.

For each strategy (successive halving, ASHA, Hyperband, random subsets, top-k
after e epochs, zero-cost screens) it prints the fraction of the run's epochs
it would have spent, how much worse its choice is than the full run's (best
validation accuracy and, reported apart, test accuracy, in percentage points,
with 95% bootstrap CIs over draws of the trials and their order), and the
cheapest strategy whose regret CI stays within --tolerance. Then the ranking
fidelity per epoch: Kendall's tau and Spearman's rho against the final ranking.
How each number is made: reports/_replay.py.

A folder that is not a run, has no curves, or cannot be read prints one line
on stderr and exits with status 2.
"""

from __future__ import annotations

import json
import sys

from reports._load import ReportError, load_run
from reports._replay import (DEFAULT_TOLERANCE, REPLICATES, STRATEGIES, Replay, check_strategy_names, replay,
                             replay_columns)
from reports._stats import BOOTSTRAP_SEED
from reports.build import EXIT_BAD_INPUT, _OneLineParser


def _points(value: float) -> str:
    return "—" if value != value else f"{value:+.2f}"


def _interval(low: float, high: float) -> str:
    return "—" if low != low else f"[{low:+.2f}, {high:+.2f}]"


def format_text(result: Replay) -> str:
    """The replay table, the cheapest-within-tolerance line and the fidelity table, as plain text."""
    lines = [f"{result.n_trials} trials x {result.epochs} epochs replayed ({result.n_complete} complete); "
             f"CIs: 95% percentile bootstrap over {result.replicates} draws of the trials in random order "
             f"(seed {result.seed}); regret = the full run's best minus the choice's, in pp"]
    lines += [f"note: {note}" for note in result.notes]
    label_width = max(len("strategy"), *(len(label) for label in result.table["label"]))
    lines.append(f"{'strategy':<{label_width}} {'epochs':>7} {'val regret pp':>14} {'95% CI':>16} "
                 f"{'test regret pp':>15} {'95% CI':>16}  chosen")
    for row in result.table.to_dict("records"):
        lines.append(f"{row['label']:<{label_width}} {row['epochs_fraction']:>7.3f} {_points(row['regret_pp']):>14} "
                     f"{_interval(row['regret_ci_low_pp'], row['regret_ci_high_pp']):>16} "
                     f"{_points(row['test_regret_pp']):>15} "
                     f"{_interval(row['test_regret_ci_low_pp'], row['test_regret_ci_high_pp']):>16}  "
                     f"{row['chosen_trial']}")
    lines.append(result.cheapest_text())
    lines.append("ranking fidelity: each epoch's val_acc against the final ranking by val_acc_best")
    lines.append(f"{'epoch':>5} {'n':>5} {'Kendall tau':>11} {'95% CI':>16} {'Spearman rho':>12} {'95% CI':>16}")
    for row in result.fidelity.to_dict("records"):
        lines.append(f"{row['epoch']:>5} {row['n']:>5} {row['kendall_tau']:>11.3f} "
                     f"{_interval(row['kendall_ci_low'], row['kendall_ci_high']):>16} {row['spearman_rho']:>12.3f} "
                     f"{_interval(row['spearman_ci_low'], row['spearman_ci_high']):>16}")
    return "\n".join(lines)


def main(argv: list[str] | None = None) -> int:
    """Replay the strategies on one run folder and print the table (or --json); return the exit status."""
    parser = _OneLineParser(prog="python -m reports.replay", description=__doc__.splitlines()[0])
    parser.add_argument("run_dir", metavar="RUN", help="a finished run folder, e.g. runs/asha_bench_full")
    parser.add_argument("--strategy", action="extend", nargs="+", metavar="NAME",
                        help=f"replay only these (the full search is always shown): {', '.join(STRATEGIES)}")
    parser.add_argument("--tolerance", type=float, default=DEFAULT_TOLERANCE,
                        help="the regret a cheaper strategy may lose, CI upper bound included, as a fraction "
                             "(default %(default)s = 0.5 pp)")
    parser.add_argument("--json", action="store_true", help="print a JSON array instead of the tables")
    parser.add_argument("--seed", type=int, default=BOOTSTRAP_SEED,
                        help="seed of the random strategies and of the bootstrap (default %(default)s)")
    parser.add_argument("--replicates", type=int, default=REPLICATES,
                        help="bootstrap draws of the whole replay (default %(default)s)")
    args = parser.parse_args(argv)
    try:
        families = check_strategy_names(args.strategy) if args.strategy else None
        result = replay(load_run(args.run_dir, columns=replay_columns), families, tolerance=args.tolerance,
                        seed=args.seed, replicates=args.replicates)
    except ReportError as error:
        print(f"reports.replay: error: {' '.join(str(error).split())}", file=sys.stderr)
        return EXIT_BAD_INPUT
    print(json.dumps(result.to_json(), indent=1) if args.json else format_text(result))
    return 0


if __name__ == "__main__":
    sys.exit(main())
