"""What does ASHA cost in accuracy, and save in epochs? One optuna study run with and without ASHA's variants.

    .venv/bin/python bench/asha_efficiency.py [--trials 20] [--epochs 8] [--train-limit 2000]
                                              [--grace-period 1] [--reduction-factor 4]
                                              [--runs full,asha,budget_continue,budget_restart] [--keep DIR]

Every run is `python -m search.run` on the same study file (a small searched
CIFAR ResNet space: stage depths, width multiplier, shortcut and learning rate)
on the real mini CIFAR-10 set in ../shared/data/cifar10-mini, with the same
sampler seed, the same trials budget and the same data split; they differ only
in `search.scheduler` and `search.asha` (Li et al. 2018, arXiv 1810.05934):
- full: no scheduler, every trial trains every epoch;
- asha: ASHA on the first epochs of the full-length schedule (schedule: truncated);
- budget_continue, budget_restart: ASHA with budget-true rungs (schedule:
  budget_true; Li, Yumer & Ramanan, "Budgeted Training", ICLR 2020): each
  rung's schedule decays fully by its last epoch, and a promoted trial goes on
  from its weights or restarts from scratch.
The runs go one after another, never at once, so they do not share the cores.

Prints, for each run, the best validation accuracy it found (the run folder's
ranking: complete trials by val_acc_best) and that trial's test accuracy, the
epochs it spent (the sum of epochs_run over every trial, pruned ones included:
a restarted trial counts every epoch it trained) and the wall time; then, for
each ASHA run against the full search, the accuracy differences in percentage
points with a 95% CI (Newcombe's score interval for two independent
proportions, statsmodels; the same images score both runs, so it is
conservative) and the epochs ratio. Goal (issue 22): within 0.5 pp of the full
search's best, CI included, at no more than 30% of its epochs. A measurement,
not a pass/fail test (docs/STYLE: measure, don't assert speed).

A validation set of n images resolves 100 / n pp: read the accuracy
difference against that step.
"""

from __future__ import annotations

import argparse
import math
import subprocess
import sys
import tempfile
from pathlib import Path

import pandas as pd
import yaml

ROOT = Path(__file__).resolve().parents[1]
# Run from a checkout without installing: the repository root holds `runfolder`.
sys.path.insert(0, str(ROOT))

import runfolder  # noqa: E402

DATA_ROOT = ROOT.parent / "shared" / "data" / "cifar10-mini"
GOAL_PP = 0.5
GOAL_EPOCHS = 0.30
# run name -> its search.asha beyond grace period and reduction factor (None: no scheduler). Each names its
# schedule, so a change of the study defaults does not change what a run measures.
RUNS: dict[str, dict | None] = {
    "full": None,
    "asha": {"schedule": "truncated"},
    "budget_continue": {"schedule": "budget_true", "promotion": "continue"},
    "budget_restart": {"schedule": "budget_true", "promotion": "restart"},
}


def study(args: argparse.Namespace, name: str) -> dict:
    """The study every run shares; run `name` adds its scheduler settings and nothing else."""
    search = {
        "strategy": "optuna", "sampler": "tpe", "objectives": ["val_acc:max"], "trials": args.trials,
        "seeds": [0], "sampler_seed": args.sampler_seed, "resources": {"cpus": 1, "gpus": 0},
        "keep_checkpoints": 0,
    }
    if RUNS[name] is not None:
        search.update(scheduler="asha", asha={"grace_period": args.grace_period,
                                              "reduction_factor": args.reduction_factor, **RUNS[name]})
    return {
        "name": f"asha_bench_{name}",
        "question": "How much accuracy does ASHA give up, for how many fewer epochs?",
        # val_fraction 0.2: ~1,000 validation images, so one image is 0.1 pp against the 0.3 pp goal.
        "data": {"dataset": "cifar10", "root": str(args.data_root), "val_fraction": 0.2,
                 "train_limit": args.train_limit},
        "space": {
            "base": "cifar_resnet20",
            "width_multiplier": {"float": [0.25, 0.75], "step": 0.25},
            "shortcut": {"choice": ["A", "B"]},
            "stages": [{"depth": {"int": [1, 3]}}, {"depth": {"int": [1, 3]}}, {"depth": {"int": [1, 3]}}],
        },
        # The learning rate spreads the trials most: the ranking ASHA must read early.
        "train": {"epochs": args.epochs, "batch_size": 64, "lr": {"float": [0.01, 0.4], "log": True},
                  "schedule": "cosine", "warmup_epochs": 0, "max_threads": 1},
        "search": search,
    }


def run(args: argparse.Namespace, folder: Path, name: str) -> dict:
    """Run one study through `python -m search.run`; return its best accuracy, epochs and wall time.

    A run folder already in `folder` (an earlier --keep) is resumed: search.run checks that it holds this very
    study and trains only what is missing. A finished one is only read, so its wall time stays its own.
    """
    path = folder / f"{name}.yaml"
    path.write_text(yaml.safe_dump(study(args, name), sort_keys=False))
    out = folder / name
    earlier = runfolder.read_run_json(out) if (out / runfolder.RUN_JSON).exists() else None
    command = [sys.executable, "-m", "search.run", str(path), "--out", str(out), "--no-dashboard", "--no-report",
               *(["--resume"] if earlier is not None else [])]
    if earlier is not None and earlier.get("finished"):
        if runfolder.read_study_yaml(out) != study(args, name):
            sys.exit(f"{out}: a finished run of another study; give --keep a new folder")
        print(f"{name}: read {out}, finished {earlier['finished']}", file=sys.stderr, flush=True)
    else:
        print(f"{name}: {' '.join(command[1:])}", file=sys.stderr, flush=True)
        finished = subprocess.run(command, cwd=ROOT, capture_output=True, text=True)
        if finished.returncode != 0:
            sys.exit(f"{path.name}: search.run failed (exit {finished.returncode}):\n{finished.stdout[-3000:]}\n"
                     f"{finished.stderr[-3000:]}")
    results = runfolder.read_results(out, ("trial_id", "status", "epochs_run", runfolder.RANKING_COLUMN))
    ranked = runfolder.ranked_frame(results)
    best = ranked.iloc[0]
    counts = results["status"].value_counts()
    run_json = runfolder.read_run_json(out)
    return {"best_val_acc": float(best[runfolder.RANKING_COLUMN]), "best_test_acc": float(best["test_acc"]),
            "best_trial": best["trial_id"], "epochs": int(results["epochs_run"].fillna(0).sum()),
            "trials": len(results), "complete": int(counts.get("complete", 0)),
            "pruned": int(counts.get("pruned", 0)), "failed": int(counts.get("failed", 0)),
            "wall_s": float(run_json.get("wall_s") or math.nan),  # every attempt's, a resumed run's included
            "n_val": run_json["dataset"].get("n_val"), "n_test": run_json["dataset"].get("n_test"), "folder": out}


def rung_fidelity(full: Path, run: Path, epoch: int) -> tuple[float, float, int]:
    """Kendall's tau-b between val_acc at `epoch` and the full search's val_acc_best, over the architectures both runs
    trained (same sampled factors): as `run` measured them at `epoch`, and as the full run did at its own `epoch`
    (what truncated rungs see); and how many architectures that is."""
    from scipy.stats import kendalltau

    def by_factors(folder: Path, values: pd.Series) -> pd.Series:
        results = runfolder.read_results(folder, ("trial_id",))
        factors = [c for c in results.columns if c.startswith(runfolder.FACTOR_PREFIX)]
        keys = results.set_index("trial_id")[factors].round(6).astype(str).agg("|".join, axis=1)
        frame = pd.DataFrame({"key": keys, "value": values}).dropna()
        return frame.drop_duplicates("key").set_index("key")["value"]  # a resumed run may redraw a sample

    def at_epoch(folder: Path) -> pd.Series:
        curves = runfolder.read_curves(folder)
        return curves[curves["epoch"] == epoch].set_index("trial_id")["val_acc"]

    final = by_factors(full, runfolder.read_results(full, ("trial_id",)).set_index("trial_id")[
        runfolder.RANKING_COLUMN])
    early, own = by_factors(run, at_epoch(run)), by_factors(full, at_epoch(full))
    shared = final.index.intersection(early.index)
    return (float(kendalltau(early[shared], final[shared]).statistic),
            float(kendalltau(own[shared], final[shared]).statistic), len(shared))


def difference_pp(run: float, full: float, n: int) -> tuple[float, float, float]:
    """run - full in percentage points, with Newcombe's 95% score CI for two independent proportions of n each."""
    from statsmodels.stats.proportion import confint_proportions_2indep

    low, high = confint_proportions_2indep(round(run * n), n, round(full * n), n, method="newcomb")
    return (run - full) * 100, float(low) * 100, float(high) * 100


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--trials", type=int, default=20)
    parser.add_argument("--epochs", type=int, default=8)
    parser.add_argument("--train-limit", type=int, default=2000, help="training images per epoch")
    parser.add_argument("--grace-period", type=int, default=1)
    parser.add_argument("--reduction-factor", type=float, default=4)
    parser.add_argument("--sampler-seed", type=int, default=0)
    parser.add_argument("--data-root", type=Path, default=DATA_ROOT,
                        help="the folder that holds cifar-10-batches-py/ (data.root)")
    parser.add_argument("--runs", default=",".join(RUNS),
                        help=f"the runs, in order, comma-separated; full is always among them (of {', '.join(RUNS)})")
    parser.add_argument("--keep", type=Path, default=None,
                        help="keep the run folders (and their study files) here, e.g. /work/bench-runs/NAME; a run "
                             "folder already there is resumed, so a finished run is read, not trained again")
    args = parser.parse_args()
    if not (args.data_root / "cifar-10-batches-py").is_dir():
        sys.exit(f"--data-root {args.data_root}: no cifar-10-batches-py/ inside; give the folder that holds it")
    names = ["full", *(name for name in args.runs.split(",") if name != "full")]
    unknown = [name for name in names if name not in RUNS]
    if unknown:
        sys.exit(f"--runs {args.runs}: unknown run {unknown[0]!r}; allowed: {', '.join(RUNS)}")

    with tempfile.TemporaryDirectory(prefix="asha_bench_") as temporary:
        folder = args.keep or Path(temporary)
        folder.mkdir(parents=True, exist_ok=True)
        results = {name: run(args, folder, name) for name in names}  # one after another: they never share cores

    full = results["full"]
    rungs = runfolder.asha_rung_epochs(args.grace_period, args.reduction_factor, args.epochs)
    print(f"study: {args.trials} optuna (TPE, sampler seed {args.sampler_seed}) trials x up to {args.epochs} epochs, "
          f"{args.train_limit} training images, {full['n_val']} validation and {full['n_test']} test images "
          f"(1 image = {100 / full['n_val']:.2f} pp); ASHA grace_period={args.grace_period}, "
          f"reduction_factor={args.reduction_factor:g}, rungs closing at epochs {', '.join(map(str, rungs))}")
    print(f"{'run':<16} {'best val %':>10} {'its test %':>10} {'epochs':>7} {'complete':>8} {'pruned':>6} "
          f"{'failed':>6} {'wall s':>7}  best trial")
    for name, result in results.items():
        print(f"{name:<16} {result['best_val_acc'] * 100:>10.2f} {result['best_test_acc'] * 100:>10.2f} "
              f"{result['epochs']:>7} {result['complete']:>8} {result['pruned']:>6} {result['failed']:>6} "
              f"{result['wall_s']:>7.0f}  {result['best_trial']}")
    print(f"against the full search (goal: within {GOAL_PP} pp, CI included, at <= {GOAL_EPOCHS:.0%} of its epochs):")
    for name, result in results.items():
        if name == "full":
            continue
        val, val_low, val_high = difference_pp(result["best_val_acc"], full["best_val_acc"], full["n_val"])
        test, test_low, test_high = difference_pp(result["best_test_acc"], full["best_test_acc"], full["n_test"])
        ratio = result["epochs"] / full["epochs"]
        point = val >= -GOAL_PP and ratio <= GOAL_EPOCHS
        with_ci = val_low >= -GOAL_PP and ratio <= GOAL_EPOCHS
        print(f"{name:<16} val {val:+.2f} pp [{val_low:+.2f}, {val_high:+.2f}], test {test:+.2f} pp "
              f"[{test_low:+.2f}, {test_high:+.2f}], epochs {ratio:.3f} -> goal "
              f"{'met' if with_ci else 'met by the point estimate only' if point else 'missed'}")
    print(f"ranking at the first rung (epoch {args.grace_period}) against the full search's final one, Kendall tau-b "
          f"over the architectures both runs trained:")
    for name, result in results.items():
        if name != "full":
            tau, truncated_tau, n = rung_fidelity(full["folder"], result["folder"], args.grace_period)
            print(f"{name:<16} tau {tau:+.2f} (the full schedule's own epoch {args.grace_period}: "
                  f"{truncated_tau:+.2f}), n = {n}")
    if args.keep:
        print(f"run folders: {', '.join(str(result['folder']) for result in results.values())}")


if __name__ == "__main__":
    main()
