"""Command line: `python -m reports.build runs/<study>` writes runs/<study>/report.html.

A run folder that cannot be reported on (no such folder, no results.parquet,
a corrupt table) prints one line on stderr and exits with status 2.
"""

from __future__ import annotations

import argparse
import sys

from reports._load import ReportError
from reports._budget import DEFAULT_SECTION_BUDGET_S
from reports._report import DEFAULT_TOP_K, build_report

EXIT_BAD_INPUT = 2


class _OneLineParser(argparse.ArgumentParser):
    """A bad flag is one line and exit status 2, like every resnas CLI.

    Not models.cli.OneLineParser: importing `models` imports torch, which
    this command never needs and which would double its start-up time.
    """

    def error(self, message: str) -> None:  # type: ignore[override]
        print(f"{self.prog}: error: {message} (see --help)", file=sys.stderr)
        raise SystemExit(EXIT_BAD_INPUT)


def main(argv: list[str] | None = None) -> int:
    """Build the report of one run folder; return the exit status."""
    parser = _OneLineParser(prog="python -m reports.build", description=__doc__.splitlines()[0])
    parser.add_argument("run_dir", help="the run folder, e.g. runs/shortcut_ablation")
    parser.add_argument("--top-k", type=int, default=DEFAULT_TOP_K, help="how many top trials to list (default %(default)s)")
    parser.add_argument("--section-budget-s", type=float, default=DEFAULT_SECTION_BUDGET_S,
                        help="seconds each long computation (power, ANOVA, bootstrap, importances) may take; one "
                             "past it is left out of the page, which says so (default %(default)s)")
    args = parser.parse_args(argv)
    try:
        report = build_report(args.run_dir, top_k=args.top_k, section_budget_s=args.section_budget_s)
    except ReportError as error:
        print(f"reports.build: error: {' '.join(str(error).split())}", file=sys.stderr)
        return EXIT_BAD_INPUT
    print(report)
    return 0


if __name__ == "__main__":
    sys.exit(main())
