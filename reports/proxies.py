"""Command line: `python -m reports.proxies RUN [--json] [--batches N]`: how well each zero-cost proxy ranks a run.

Every complete trial's architecture is rebuilt from its recorded spec
(`arch_yaml`) at the initialisation its seed gives, as its trial started, and
scored by every proxy of `screens.PROXY_NAMES` on the scoring batches of the
run's own training images (the data its study.yaml names, drawn with its
`search.sampler_seed`, as `search.screen` draws them). Each proxy's Spearman
rho with `val_acc_best` is printed with its 95% percentile bootstrap CI over
the trials, one line per proxy; params and macs are the baselines (Abdelfattah
et al., ICLR 2021, find them hard to beat). `--json` prints the same as an
array of {"proxy", "spearman", "ci"} objects.

The vote is scored over the run's trials at once (each trial: how many others
it beats by the majority of synflow, jacob_cov and snip), so its rho is that
of the ranking it gives the whole run. A folder that cannot be read, a study
or data that cannot be loaded, or a spec that cannot be built is one line on
stderr and exit status 2.
"""

from __future__ import annotations

import json
import math
import sys
from pathlib import Path
from typing import Any

import numpy as np

import runfolder
from reports.build import EXIT_BAD_INPUT, _OneLineParser

# A rank correlation of fewer trials says nothing (reports._kendall.MIN_TAU_N).
MIN_TRIALS = 3
_COLUMNS = ("trial_id", "status", "seed", runfolder.RANKING_COLUMN, "arch_yaml")


class ProxiesError(ValueError):
    """A run whose architectures cannot be scored: one line for the command line."""


def _complete_trials(run_dir: Path) -> list[dict[str, Any]]:
    """Complete trials with a val_acc_best and a spec, in trial-id order, read through runfolder's readers."""
    results = runfolder.read_results(run_dir, required=("trial_id", "status"), columns=lambda name: name in _COLUMNS)
    missing = [column for column in _COLUMNS if column not in results.columns]
    if missing:
        raise ProxiesError(f"{run_dir}: the results table has no {', '.join(missing)} column; give a run folder "
                           "written by python -m search.run")
    rows = []
    for row in results.sort_values("trial_id").to_dict("records"):
        accuracy = runfolder.float_or_nan(row[runfolder.RANKING_COLUMN])
        if row["status"] == "complete" and math.isfinite(accuracy) and not runfolder.is_missing(row["arch_yaml"]):
            rows.append(row)
    if len(rows) < MIN_TRIALS:
        raise ProxiesError(f"{run_dir}: {len(rows)} complete trial(s) with a {runfolder.RANKING_COLUMN}; a rank "
                           f"correlation needs at least {MIN_TRIALS}")
    return rows


def proxy_scores(run_dir: Path, batches: int) -> tuple[list[dict[str, Any]], dict[str, np.ndarray]]:
    """The run's complete trials and each proxy's score of each of them, in the same order."""
    # Imported here, not at the top: reports reads run folders without torch (DESIGN.md), and this is the one
    # command of reports that computes: it builds networks (screens) on the data the run's study names (space).
    import imagefeed
    import models
    import screens
    import space

    trials = _complete_trials(run_dir)
    document = runfolder.read_study_yaml(run_dir)
    if document is None:
        raise ProxiesError(f"{run_dir}: no {runfolder.STUDY_YAML}, so the run's data is unknown; give a run folder "
                           "written by python -m search.run")
    study = space.study_from_dict(document, source=str(runfolder.RunFolder(run_dir).study_yaml))
    splits = imagefeed.load(study.data_settings())
    scoring = screens.scoring_batches(splits, batches, study.search.sampler_seed)
    names = list(screens.PROXIES)
    scored: dict[tuple[str, int], dict[str, float]] = {}  # by (spec, seed): a seed's repeats score alike
    rows = []
    for trial in trials:
        try:
            spec = models.ArchSpec.from_yaml(str(trial["arch_yaml"]))
            seed = int(trial["seed"])
        except Exception as error:  # a ValueError from the spec, a YAML error, a seed that is no number
            raise ProxiesError(f"{run_dir}: results table, trial {trial['trial_id']}: arch_yaml or seed cannot be "
                               f"read ({str(error).splitlines()[0] if str(error) else type(error).__name__})") from None
        if spec.num_classes != splits.num_classes:
            raise ProxiesError(f"{run_dir}: trial {trial['trial_id']}: the spec has {spec.num_classes} outputs but "
                               f"the study's data has {splits.num_classes} classes")
        key = (spec.to_yaml(), seed)
        if key not in scored:
            scored[key] = screens.architecture_scores(spec, seed, names, scoring, splits.image_size)
        rows.append(scored[key])
    scores = {name: np.array([row[name] for row in rows], dtype=float) for name in names}
    scores[screens.VOTE] = np.array(screens.vote_wins([scores[name] for name in screens.VOTERS]), dtype=float)
    return trials, {name: scores[name] for name in screens.PROXY_NAMES}


def proxy_correlations(run_dir: Path, batches: int = 1) -> tuple[int, list[dict[str, Any]]]:
    """(trials, one {"proxy", "spearman", "ci"} per proxy): Spearman rho with val_acc_best and its bootstrap CI."""
    from reports._replay import spearman_rho_ci  # the one home of Spearman's rho and its CI in reports

    trials, scores = proxy_scores(run_dir, batches)
    accuracy = np.array([runfolder.float_or_nan(trial[runfolder.RANKING_COLUMN]) for trial in trials])
    table = []
    for proxy, values in scores.items():
        usable = np.isfinite(values)
        rho = spearman_rho_ci(values[usable], accuracy[usable])
        table.append({"proxy": proxy, "spearman": rho.rho, "ci": [rho.ci_low, rho.ci_high], "n": int(usable.sum())})
    return len(trials), table


def _signed(value: float) -> str:
    return "nan" if math.isnan(value) else f"{value:+.3f}"


def _plain(value: float) -> float | None:
    return None if math.isnan(value) else round(float(value), 6)


def main(argv: list[str] | None = None) -> int:
    """Score a run's architectures with every proxy and print each proxy's rank correlation; the exit status."""
    parser = _OneLineParser(prog="python -m reports.proxies", description=__doc__.splitlines()[0])
    parser.add_argument("run_dir", help="a finished run folder, e.g. runs/nas_pareto")
    parser.add_argument("--json", action="store_true", help='print a JSON array of {"proxy", "spearman", "ci"}')
    parser.add_argument("--batches", type=int, default=1,
                        help="scoring batches of 64 training images (default %(default)s, as the paper)")
    args = parser.parse_args(argv)
    run_dir = Path(args.run_dir)
    import imagefeed
    import space

    try:
        if args.batches < 1:
            raise ProxiesError(f"--batches: got {args.batches}; allowed: an integer >= 1")
        trials, table = proxy_correlations(run_dir, args.batches)
    except (ProxiesError, runfolder.RunFolderError, space.StudyError, imagefeed.DatasetError) as error:
        print(f"reports.proxies: error: {' '.join(str(error).split())}", file=sys.stderr)
        return EXIT_BAD_INPUT
    if args.json:
        print(json.dumps([{"proxy": row["proxy"], "spearman": _plain(row["spearman"]),
                           "ci": [_plain(bound) for bound in row["ci"]]} for row in table]))
        return 0
    print(f"Spearman rho of each proxy with {runfolder.RANKING_COLUMN} over the {trials} complete trials of "
          f"{run_dir} (95% percentile bootstrap CI; each scored at initialisation on {args.batches} batch(es) of 64 "
          f"training images):")
    width = max(len(row["proxy"]) for row in table)
    for row in table:
        low, high = row["ci"]
        print(f"{row['proxy']:<{width}}  rho {_signed(row['spearman'])}  CI [{_signed(low)}, {_signed(high)}]"
              f"  n {row['n']}")
    return 0


if __name__ == "__main__":
    sys.exit(main())
