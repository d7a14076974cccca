"""Command line: `python -m reports.plan RUN_DIR [--effect 0.005] [--power 0.8]` prints how many seeds each comparison needs.

The same seed plan as the report's "Seeds needed" section and power.csv, for a
finished run: per comparison, the test, n, the noise, the smallest difference
the current n detects, and the seeds per level (and device-hours at the
measured trial times) to resolve the target effect. Run it on a CPU pilot to
size the GPU run. Bad input prints one line on stderr and exits with status 2.
"""

from __future__ import annotations

import sys

import numpy as np
import pandas as pd

from reports._factorial import simple_effects_table, tested_comparisons
from reports._load import ReportError, RunData, load_run
from reports._power import (DEFAULT_POWER, SeedPlan, check_fraction, check_target_effect, more_seeds, plan_sentence,
                            seed_plan)
from reports._primary import command_lines
from reports._stats import ALPHA, metric_name
from reports.build import EXIT_BAD_INPUT, _OneLineParser


def _number(value: float, digits: int = 2) -> str:
    return "-" if not np.isfinite(value) else f"{value:.{digits}f}"


def plan_table(run: RunData, plan: SeedPlan, simple_effects: pd.DataFrame) -> tuple[pd.DataFrame, pd.DataFrame]:
    """(printed table, plan rows with verdicts) on the headline metric: percentage points, seeds, device-hours."""
    keys = ["factor", "level", "reference", "within", "metric"]
    rows = plan.table[plan.table["metric"] == run.headline_metric]
    rows = rows.merge(simple_effects[keys + ["verdict"]], on=keys, how="left")
    return pd.DataFrame({
        "comparison": [f"{row.factor}={row.level} vs {row.reference}" for row in rows.itertuples()],
        "within": [row.within or "-" for row in rows.itertuples()],
        "test": ["paired t" if paired else "Welch t" for paired in rows["paired"]],
        "n": rows["n"].astype(int).to_numpy(),
        "sd (pp)": [_number(value * 100) for value in rows["sd_diff"]],
        "MDE (pp)": [_number(value * 100) for value in rows["mde"]],
        "seeds needed": ["-" if not np.isfinite(value) else str(int(value)) for value in rows["seeds_needed"]],
        plan.device_unit: [_number(value, 3) for value in rows["device_hours"]],
        "verdict": rows["verdict"].fillna("-").to_numpy(),
    }), rows


def format_plan(run: RunData, plan: SeedPlan, simple_effects: pd.DataFrame) -> str:
    """The printed plan: what it assumes, the table, and one sentence per comparison."""
    table, rows = plan_table(run, plan, simple_effects)
    head = (f"Seed plan for {run.name} ({run.run_dir}) on {metric_name(run.headline_metric)}: target effect "
            f"{plan.target_effect * 100:.3g} pp ({plan.target_source}), power {plan.power:.0%}, alpha {ALPHA:g} "
            f"two-sided; seeds per level, pairs when paired; {plan.device_unit} for both compared cells.")
    if table.empty:
        return head + "\nNo comparison has 2 or more complete trials in both groups: nothing to plan yet."
    sentences = [plan_sentence(row, row.verdict if isinstance(row.verdict, str) else None, plan)
                 for row in rows.itertuples()]
    return "\n".join([head, "", table.to_string(index=False), "", *sentences, *_command(run, plan, rows)])


def _command(run: RunData, plan: SeedPlan, rows: pd.DataFrame) -> list[str]:
    """The command that runs the most seeds any comparison needs, with its cost, as the driver's answer prints it
    for report.primary (one home: reports._power.more_seeds); none when every comparison is resolved."""
    needed = [int(row.seeds_needed) for row in rows.itertuples()
              if np.isfinite(row.seeds_needed) and row.seeds_needed > row.n]
    if not needed:
        return []
    try:
        return ["", *command_lines(more_seeds(run, max(needed)), plan.target_effect)]
    except ReportError as error:  # a study.yaml that cannot be read: the plan stands, without the command
        return ["", f"no command to run more seeds: {' '.join(str(error).split())}"]


def main(argv: list[str] | None = None) -> int:
    """Print the seed plan of one run folder; return the exit status."""
    parser = _OneLineParser(prog="python -m reports.plan", description=__doc__.splitlines()[0])
    parser.add_argument("run_dir", help="a finished run folder, e.g. runs/shortcut_ablation")
    parser.add_argument("--effect", type=float, default=None,
                        help="the difference to resolve, as a fraction (0.005 = 0.5 pp; at least 0.0001); default: "
                             "the study's report.target_effect, else 0.01")
    parser.add_argument("--power", type=float, default=DEFAULT_POWER, help="the power to reach (default %(default)s)")
    args = parser.parse_args(argv)
    try:
        if args.effect is not None:
            check_target_effect(args.effect, "--effect")
        check_fraction(args.power, "--power")
        run = load_run(args.run_dir)
        tested = tested_comparisons(run)
        plan = seed_plan(run, args.effect, args.power, tested)
        simple_effects, _ = simple_effects_table(run, tested=tested)
    except ReportError as error:
        print(f"reports.plan: error: {' '.join(str(error).split())}", file=sys.stderr)
        return EXIT_BAD_INPUT
    if not run.categorical_factors:
        print(f"{run.name}: the study has no categorical factor with two or more levels, so no comparison to plan.")
        return 0
    print(format_plan(run, plan, simple_effects))
    return 0


if __name__ == "__main__":
    sys.exit(main())
