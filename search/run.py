"""`python -m search.run STUDY.yaml`: run a study through Ray Tune and Optuna, or dry-run it.

Bad input (a study that does not validate, a bad flag or --set, an existing
run folder, one in use by another driver, one whose files are damaged or
disagree, missing data, a cluster that does not answer, an earlier run folder
named by --reuse or search.warm_start that is missing or damaged) gets one line on
stderr and exit status 2, before Ray starts. A disk that is full or read-only, at
any point of a run, is one line naming the path (and the space needed), status 2. Ctrl-C keeps every finished trial
on disk; `--resume` continues.
"""

from __future__ import annotations

import shlex
import sys
from pathlib import Path
from typing import Any

from models.cli import OneLineParser

EXIT_BAD_INPUT = 2
# Specs a dry run shows: each is sampled, resolved and matched (milliseconds each).
MAX_SAMPLES = 1_000
EXIT_INTERRUPTED = 130


def _parse_args(argv: list[str] | None) -> Any:
    parser = OneLineParser(prog="python -m search.run", description=__doc__.splitlines()[0])
    parser.add_argument("study", help="the study YAML file")
    parser.add_argument("--out", default=None, help="run folder (default: runs/<study name>/)")
    parser.add_argument("--set", dest="overrides", action="append", default=[], metavar="PATH=VALUE",
                        help="override a study field, e.g. --set train.epochs=3 (repeatable)")
    parser.add_argument("--resume", action="store_true",
                        help="continue an interrupted run in the existing run folder")
    parser.add_argument("--reuse", action="append", default=[], metavar="RUN_DIR",
                        help="take trials that an earlier run trained with the same architecture, training settings, "
                             "seed and data from its folder instead of training them again (repeatable; adds to "
                             "the study's search.reuse)")
    parser.add_argument("--dry-run", action="store_true",
                        help="validate, print the space size and a few sampled specs; train nothing")
    parser.add_argument("--samples", type=int, default=5, help="specs to show in a dry run")
    parser.add_argument("--explain", default=None, metavar="FIELD",
                        help="print the reference entry of a study field (e.g. space.shortcut) and its value "
                             "in this study after --set; train nothing")
    from ._ray import add_ray_flags

    add_ray_flags(parser, "trials")
    parser.add_argument("--no-report", action="store_true", help="skip report.html at the end")
    from ._trackers import TRACKERS

    parser.add_argument("--log", action="append", default=[], choices=sorted(TRACKERS), metavar="TRACKER",
                        help="also feed each trial's per-epoch metrics and settings to this tracker "
                             f"({', '.join(sorted(TRACKERS))}; repeatable)")
    return parser.parse_args(argv)


def main(argv: list[str] | None = None) -> int:
    """Entry point; returns the exit status."""
    args = _parse_args(argv)
    import runfolder
    import space

    import imagefeed
    from ._runner import RunError, RunOptions, check_before_a_dry_run, run_study

    # Flags first, dry run or not: a bad one is refused before the study is read.
    if not 0 <= args.samples <= MAX_SAMPLES:
        print(f"error: --samples: got {args.samples}; allowed: an integer in [0, {MAX_SAMPLES}]", file=sys.stderr)
        return EXIT_BAD_INPUT
    if args.max_concurrent is not None and args.max_concurrent < 1:
        print(f"error: --max-concurrent: got {args.max_concurrent}; allowed: an integer >= 1", file=sys.stderr)
        return EXIT_BAD_INPUT
    try:
        study = space.load_study(args.study, args.overrides)
    except space.StudyError as error:
        print(f"error: {error}", file=sys.stderr)
        return EXIT_BAD_INPUT
    if args.explain is not None:
        try:
            print(space.explain(study, args.explain))
        except space.StudyError as error:
            print(f"error: {error}", file=sys.stderr)
            return EXIT_BAD_INPUT
        return 0
    run_dir = Path(args.out) if args.out else Path("runs") / study.name
    options = RunOptions(run_dir=run_dir, resume=args.resume, address=args.address,
                         max_concurrent=args.max_concurrent, dashboard=not args.no_dashboard,
                         report=not args.no_report, connect_timeout=args.connect_timeout,
                         log=tuple(args.log), reuse=tuple(args.reuse))
    if args.dry_run:
        print(space.dry_run_report(study, samples=args.samples))
        root = study.data.root
        if root is not None and not Path(root).expanduser().exists():
            # A dry run reads no images: it may be planning a run on a cluster whose nodes hold the data.
            print(f"note: data.root {root} is not on this machine; a run here would be refused, "
                  "one on nodes that hold it would not")
        try:
            for note in check_before_a_dry_run(study, options):
                print(note)
        except RunError as error:
            print(f"error: {error}", file=sys.stderr)
            return EXIT_BAD_INPUT
        return 0
    if not args.connect_timeout > 0 or args.connect_timeout == float("inf"):
        print(f"error: --connect-timeout: got {args.connect_timeout:g}; allowed: a number of seconds > 0",
              file=sys.stderr)
        return EXIT_BAD_INPUT
    try:
        document = run_study(study, options, out=sys.stdout)  # the stdout of now, which a test may have replaced
    except (RunError, runfolder.RunFolderError, space.StudyError, imagefeed.DatasetError) as error:
        print(f"error: {error}", file=sys.stderr)
        return EXIT_BAD_INPUT
    except Exception as error:
        # A full or read-only disk, at any point of the run (a library's write, SQLite's): one line, not a traceback.
        line = runfolder.disk_refusal(error, run_dir)
        if line is None:
            raise
        print(f"error: {line}", file=sys.stderr)
        return EXIT_BAD_INPUT
    counts = document.get("trial_counts", {})
    folder = runfolder.RunFolder(run_dir)
    print(f"results: {folder.results} (and .csv), curves: {folder.curves}, "
          f"optuna: {document['storage']}, run info: {folder.run_json}")
    reused = document.get("reused_trials", 0)
    print(f"trials: {counts.get('complete', 0)} complete{f' ({reused} reused from earlier runs)' if reused else ''}, "
          f"{counts.get('failed', 0)} failed, {counts.get('pruned', 0)} pruned; wall {document['wall_s']:.0f}s")
    if not document.get("finished"):
        again = ["python", "-m", "search.run", args.study, *(["--out", args.out] if args.out else []),
                 *[part for o in args.overrides for part in ("--set", o)],
                 *[part for r in args.reuse for part in ("--reuse", r)], "--resume"]
        print(f"the study is not finished; continue with: {shlex.join(again)}")
        return EXIT_INTERRUPTED
    return 0


if __name__ == "__main__":
    sys.exit(main())
