"""What does ASHA cost in accuracy, and save in epochs? One optuna study run twice, with and without ASHA.

    .venv/bin/python bench/asha_efficiency.py [--trials 20] [--epochs 8] [--train-limit 2000]
                                              [--grace-period 1] [--reduction-factor 4]

Both runs are `python -m search.run` on the same study file (a small searched
CIFAR ResNet space: stage depths, width multiplier, shortcut and learning rate)
on the real mini CIFAR-10 set in ../shared/data/cifar10-mini, with the same
sampler seed, the same trials budget and the same data split; the only
difference is `search.scheduler: asha` (Li et al. 2018, arXiv 1810.05934) in one.

Prints, for each run, the best validation accuracy it found (the run folder's
ranking: complete trials by val_acc_best), the epochs it spent (the sum of
epochs_run over every trial, pruned ones included) and the wall time, and the
two ratios: best-accuracy difference in percentage points (ASHA - full) and
epochs ASHA / full. Goal: within 0.3 pp of the full search for at most 25% of
its epochs. A measurement, not a pass/fail test (docs/STYLE: measure, don't
assert speed).

A validation set of n images resolves 100 / n pp: read the accuracy
difference against that step.
"""

from __future__ import annotations

import argparse
import subprocess
import sys
import tempfile
import time
from pathlib import Path

import yaml

ROOT = Path(__file__).resolve().parents[1]
# Run from a checkout without installing: the repository root holds `runfolder`.
sys.path.insert(0, str(ROOT))

import runfolder  # noqa: E402

DATA_ROOT = ROOT.parent / "shared" / "data" / "cifar10-mini"
GOAL_PP = 0.3
GOAL_EPOCHS = 0.25


def study(args: argparse.Namespace, asha: bool) -> dict:
    """The study both runs share; `asha` adds the scheduler and nothing else."""
    search = {
        "strategy": "optuna", "sampler": "tpe", "objectives": ["val_acc:max"], "trials": args.trials,
        "seeds": [0], "sampler_seed": args.sampler_seed, "resources": {"cpus": 1, "gpus": 0},
        "keep_checkpoints": 0,
    }
    if asha:
        search.update(scheduler="asha",
                      asha={"grace_period": args.grace_period, "reduction_factor": args.reduction_factor})
    return {
        "name": "asha_bench_asha" if asha else "asha_bench_full",
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


def run(args: argparse.Namespace, folder: Path, asha: bool) -> dict:
    """Run one study through `python -m search.run`; return its best accuracy, epochs and wall time."""
    path = folder / ("asha.yaml" if asha else "full.yaml")
    path.write_text(yaml.safe_dump(study(args, asha), sort_keys=False))
    out = folder / ("asha" if asha else "full")
    command = [sys.executable, "-m", "search.run", str(path), "--out", str(out), "--no-dashboard", "--no-report"]
    start = time.perf_counter()
    finished = subprocess.run(command, cwd=ROOT, capture_output=True, text=True)
    wall_s = time.perf_counter() - start
    if finished.returncode != 0:
        sys.exit(f"{path.name}: search.run failed (exit {finished.returncode}):\n{finished.stdout[-3000:]}\n"
                 f"{finished.stderr[-3000:]}")
    results = runfolder.read_results(out, ("trial_id", "status", "epochs_run", runfolder.RANKING_COLUMN))
    ranked = runfolder.ranked_frame(results)
    best = ranked.iloc[0]
    counts = results["status"].value_counts()
    return {"best_val_acc": float(best[runfolder.RANKING_COLUMN]), "best_test_acc": float(best["test_acc"]),
            "best_trial": best["trial_id"], "epochs": int(results["epochs_run"].fillna(0).sum()),
            "trials": len(results), "complete": int(counts.get("complete", 0)),
            "pruned": int(counts.get("pruned", 0)), "failed": int(counts.get("failed", 0)), "wall_s": wall_s,
            "n_val": runfolder.read_run_json(out)["dataset"].get("n_val"), "folder": out}


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
    parser.add_argument("--keep", type=Path, default=None, help="keep both run folders here")
    args = parser.parse_args()
    if not (args.data_root / "cifar-10-batches-py").is_dir():
        sys.exit(f"--data-root {args.data_root}: no cifar-10-batches-py/ inside; give the folder that holds it")

    with tempfile.TemporaryDirectory(prefix="asha_bench_") as temporary:
        folder = args.keep or Path(temporary)
        folder.mkdir(parents=True, exist_ok=True)
        full = run(args, folder, asha=False)
        asha = run(args, folder, asha=True)

    print(f"study: {args.trials} optuna (TPE, sampler seed {args.sampler_seed}) trials x up to {args.epochs} epochs, "
          f"{args.train_limit} training images, {full['n_val']} validation images "
          f"(1 image = {100 / full['n_val']:.2f} pp); ASHA grace_period={args.grace_period}, "
          f"reduction_factor={args.reduction_factor:g}")
    print(f"{'run':<6} {'best val %':>10} {'its test %':>10} {'epochs':>7} {'complete':>8} {'pruned':>6} "
          f"{'failed':>6} {'wall s':>7}")
    for name, result in (("full", full), ("asha", asha)):
        print(f"{name:<6} {result['best_val_acc'] * 100:>10.2f} {result['best_test_acc'] * 100:>10.2f} "
              f"{result['epochs']:>7} {result['complete']:>8} {result['pruned']:>6} {result['failed']:>6} "
              f"{result['wall_s']:>7.0f}")
    difference = (asha["best_val_acc"] - full["best_val_acc"]) * 100
    ratio = asha["epochs"] / full["epochs"]
    print(f"best-accuracy difference (asha - full): {difference:+.2f} pp (goal: >= -{GOAL_PP} pp) -> "
          f"{'met' if difference >= -GOAL_PP else 'missed'}")
    print(f"epochs ratio (asha / full): {ratio:.3f} (goal: <= {GOAL_EPOCHS}) -> "
          f"{'met' if ratio <= GOAL_EPOCHS else 'missed'}")
    if args.keep:
        print(f"run folders: {full['folder']}, {asha['folder']}")


if __name__ == "__main__":
    main()
