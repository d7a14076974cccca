"""Command line: `python -m reports.compare RUN_A RUN_B [RUN_C ...] --out compare.html` compares runs on one page.

The page shows what differs between the runs field by field, the trials they
share (same architecture, factor levels and seed) with paired differences,
their error EDFs and Pareto fronts overlaid, and their ablation verdicts side
by side with the changed ones marked. Its tables are written as CSV beside it
(compare_tables/ for compare.html). The first run is the reference.

A folder that cannot be read, or runs that share nothing comparable, print one
line on stderr and exit with status 2.
"""

from __future__ import annotations

import sys

from reports._compare import compare_runs
from reports._compare_page import tables_dir, write_comparison
from reports._load import ReportError
from reports.build import EXIT_BAD_INPUT, _OneLineParser


def main(argv: list[str] | None = None) -> int:
    """Compare run folders into one page; return the exit status."""
    parser = _OneLineParser(prog="python -m reports.compare", description=__doc__.splitlines()[0])
    parser.add_argument("runs", nargs="+", metavar="RUN_DIR",
                        help="run folders, e.g. runs/smoke runs/smoke_lr05 (the first is the reference)")
    parser.add_argument("--out", default="compare.html",
                        help="the page to write (default %(default)s); its tables go to <name>_tables/ beside it")
    args = parser.parse_args(argv)
    try:
        page = write_comparison(compare_runs(args.runs), args.out)
    except ReportError as error:
        print(f"reports.compare: error: {' '.join(str(error).split())}", file=sys.stderr)
        return EXIT_BAD_INPUT
    print(page)
    print(f"tables: {tables_dir(page)}")
    return 0


if __name__ == "__main__":
    sys.exit(main())
