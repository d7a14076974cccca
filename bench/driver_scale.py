"""The driver's cost per trial as a study grows, and what `search.run` costs against a bare Ray Tune run.

Four parts, each printing ratios measured in the same run:

1. ``bookkeeping`` (no Ray): 10,000 synthetic finished trials, each with a
   50-epoch curve, through the recorder exactly as Ray Tune's callback feeds
   it (`Recorder.trial_result` per epoch, then `Recorder.trial_finished` with a
   config holding the trial number and a real plan), checkpoints written and
   pruned as in a run. Trials arrive on a simulated clock, one every
   ``--arrival-s`` (1 s: 64 GPUs and one-minute trials), so the tables are
   materialised every ``--results-every-s`` of that clock, as in a run: the
   driver's part of each (a snapshot) is inside the per-trial figures, the
   background write is timed apart. A trial waits (untimed) for a write in
   flight to end, as a real study's next trial, a second later, finds it
   ended; ``--overlap`` lets writes run into the next trials instead, which
   the fast clock makes hundreds of times as frequent as in a study (a
   bound). Prints ms per trial around trials 100,
   1,000 and 10,000 (the mean over 50 trials either side), the writes of the
   tables, the driver's memory, what a reader pays between materialisations,
   and last ``per-trial bookkeeping: A ms at 100 trials, B ms at 10000 trials
   (ratio B/A = R)`` (goal R <= 2, B < 20 ms).
2. ``tune``: N one-epoch trials of a tiny net on synthetic data through
   ``python -m search.run --no-report`` (optuna, random sampler), against a
   bare Ray Tune + OptunaSearch run (in-memory Optuna storage, no tables, no
   recorder) of the same trainable, each in a fresh process; prints the
   trials/s of both between their first and last finished trial, and the
   ratio (goal >= 0.9). The baseline saves Tune's experiment state as rarely
   as search.run does, so the ratio is the bookkeeping's alone;
   ``--tune-defaults`` leaves Tune's default period to the baseline.
3. ``crash``: ``python -m search.run`` killed with SIGKILL after a random
   number of finished trials plus a random fraction of a second, then
   ``--resume``d; every trial the log held at the kill must be in the tables
   afterwards, with the same status and metrics, and readers must see it
   before the resume too.
4. ``storage``: the driver's Optuna calls per trial (a suggestion, then the
   finished trial told) through the searcher, in memory and in SQLite as
   before and as now (one user attribute; write-ahead log).

    .venv/bin/python bench/driver_scale.py bookkeeping [--trials 10000] [--tracemalloc]
    .venv/bin/python bench/driver_scale.py tune [--trials 1000] [--rounds 1] [--tune-defaults]
    .venv/bin/python bench/driver_scale.py crash [--trials 1000] [--kills 3]
    .venv/bin/python bench/driver_scale.py storage [--trials 200]
"""

from __future__ import annotations

import argparse
import gc
import math
import os
import random
import re
import resource
import signal
import statistics
import subprocess
import sys
import tempfile
import time
import tracemalloc
from dataclasses import dataclass
from pathlib import Path
from typing import Any

ROOT = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(ROOT))

EPOCHS = 50
WINDOW = 50  # trials on each side of a mark whose per-trial times are averaged


# ------------------------------------------------------------------ part 1: bookkeeping
class SimulatedClock:
    """time.monotonic for the tables: advanced by the bench, one arrival interval per trial."""

    def __init__(self) -> None:
        self.now = 0.0

    def __call__(self) -> float:
        return self.now


def _plan() -> dict[str, Any]:
    """A real plan, resolved once from the NAS study, as the driver sends it in a trial's config."""
    import space

    study = space.load_study(ROOT / "studies" / "nas_pareto.yaml")
    params = {"block": "bottleneck", "bottleneck_ratio": 0.5, "shortcut": "B", "width_multiplier": 1.0,
              "stages.0.depth": 2, "stages.1.depth": 3, "stages.2.depth": 2}
    try:
        return space.resolve(study, params).to_dict()
    except (KeyError, ValueError):  # the parameter names are the study's; take any sample it resolves
        import optuna

        trial = optuna.create_study().ask()
        return space.resolve(study, space.define_by_run(study)(trial) or trial.params).to_dict()


def _epoch_result(number: int, epoch: int, rng: random.Random, config: dict[str, Any]) -> dict[str, Any]:
    """One epoch's result as Ray Tune hands it to the driver's callback (its own keys included)."""
    val = min(0.99, 0.1 + 0.8 * epoch / EPOCHS + rng.uniform(-0.05, 0.05))
    return {"epoch": epoch, "train_loss": 2.3 * (1 - epoch / (EPOCHS + 1)), "val_acc": val, "epoch_s": 1.2,
            "images_per_s": 40000.0, "lr": 0.1, "objective.val_acc": val, "objective.macs": 4.1e7,
            "final": False, "training_iteration": epoch, "trial_id": f"{number:05d}", "done": False,
            "time_this_iter_s": 1.2, "time_total_s": 1.2 * epoch, "pid": 1234, "hostname": "node",
            "node_ip": "10.0.0.1", "config": config, "timestamp": 0, "date": "2026-11-24_16-00-00"}


def _final_result(last: dict[str, Any], rng: random.Random) -> dict[str, Any]:
    best = last["val_acc"] + rng.uniform(0, 0.02)
    return {**last, "status": "complete", "val_acc_best": best, "val_acc_final": last["val_acc"],
            "test_acc": best - 0.01, "epochs_run": EPOCHS, "wall_s": 60.0, "images_per_s": 40000.0,
            "params": 270000, "macs": 41000000, "flops": 82000000, "error": "", "node_id": "ab" * 28,
            "final": True, "curve": [round(last["val_acc"], 5)] * EPOCHS, "done": True}


def _mean_ms(seconds: list[float], at: int) -> float:
    """Mean ms per trial over the trials within WINDOW of trial `at` (1-based)."""
    window = seconds[max(0, at - WINDOW - 1):at + WINDOW]
    return 1000 * statistics.fmean(window)


def bookkeeping(args: argparse.Namespace) -> None:
    """Part 1: the recorder alone, trials on a simulated clock."""
    import runfolder
    from search._recorder import Recorder
    from search._trial import PLAN, TRIAL_NUMBER

    plan = _plan()
    rng = random.Random(0)
    clock = SimulatedClock()
    marks = [m for m in (100, 1000, 10000) if m <= args.trials] or [args.trials]
    with tempfile.TemporaryDirectory() as folder, open(os.devnull, "w") as progress:
        run_dir = Path(folder) / "run"
        tables = runfolder.ResultsTables(run_dir, materialize_every_s=args.results_every_s, clock=clock)
        recorder = Recorder(tables, total=args.trials, started=time.time(), keep_checkpoints=args.keep_checkpoints,
                            out=progress)
        writes = _time_table_writes()
        seconds: list[float] = []
        memory: dict[int, tuple[float, float]] = {}
        base_rss = 0.0
        for number in range(args.trials):
            if number == 1:  # after the first trial: every import done, the first tables written
                gc.collect()
                base_rss = _rss_mib()
                if args.tracemalloc:
                    tracemalloc.start()
            config = {"block": "bottleneck", TRIAL_NUMBER: number, PLAN: plan}
            tune_id = f"{number:05d}"
            # The worker's part, not timed: its weights reach the checkpoint folder before it reports.
            trial = runfolder.trial_id(number)
            checkpoint = tables.folder.checkpoint_of(trial)
            checkpoint.mkdir(parents=True)
            (checkpoint / "model.safetensors").write_bytes(b"\0" * 256)
            results = [_epoch_result(number, epoch, rng, config) for epoch in range(1, EPOCHS + 1)]
            final = _final_result(results[-1], rng)
            clock.now += args.arrival_s
            start = time.perf_counter()
            for result in results[:-1]:
                recorder.trial_result(tune_id, result)
            recorder.trial_result(tune_id, final)
            recorder.trial_finished(tune_id, config, final, running=64)
            seconds.append(time.perf_counter() - start)
            if not args.overlap:
                # A background write (under a second at 10,000 trials) ends within the second before the
                # next trial of a real study; here the next trial follows at once, so it waits, untimed.
                tables._wait_for_writer()
            if number + 1 in marks:
                gc.collect()
                traced = tracemalloc.get_traced_memory()[0] / 2**20 if args.tracemalloc else math.nan
                memory[number + 1] = (_rss_mib() - base_rss, traced)
        tables._wait_for_writer()
        readers = _time_readers(run_dir)
        start = time.perf_counter()
        tables.close()
        close_s = time.perf_counter() - start
        kept = sorted(p.name for p in tables.folder.checkpoints.iterdir())
        logged = len(runfolder.ResultsTables.load(run_dir).rows)
    if args.tracemalloc:
        tracemalloc.stop()

    print(f"bookkeeping: {args.trials} trials x {EPOCHS} epochs through search._recorder.Recorder, "
          f"keep_checkpoints={args.keep_checkpoints}, one trial every {args.arrival_s:g} s (simulated), "
          f"tables materialised every {args.results_every_s:g} s"
          f"{', writes overlapping the next trials' if args.overlap else ''}; {logged} trials in the log, "
          f"{len(kept)} checkpoint folders kept")
    print(f"{'trials':>8} {'ms/trial':>9} {'driver RSS growth since trial 1':>32} {'Python heap (tracemalloc)':>26}")
    for mark in marks:
        rss, traced = memory[mark]
        print(f"{mark:>8} {_mean_ms(seconds, mark):>9.2f} {rss:>28.1f} MiB {traced:>22.1f} MiB")
    shown = [f"{n} trials {s:.2f} s" + ("" if where == "MainThread" else " (background)")
             for n, s, where in writes]
    print(f"table writes: {len(writes)}: {'; '.join(shown[:2] + ['...'] + shown[-3:] if len(shown) > 5 else shown)}; "
          f"close() at the end: {close_s:.2f} s")
    background = [(n, s) for n, s, where in writes if where != "MainThread"]
    if background:
        n, s = background[-1]
        per_trial = 1000 * s * args.arrival_s / args.results_every_s
        print(f"the last background write: {s:.2f} s at {n} trials, every {args.results_every_s:g} s: "
              f"{per_trial:.1f} ms per trial at one trial every {args.arrival_s:g} s, in the writer thread "
              f"(pyarrow, outside the interpreter lock), not in the trials' path")
    print(f"a reader between materialisations ({readers['tail']} trials after the tables' marker): "
          f"read_results + read_curves + read_trials {readers['readers']:.2f} s; the same from the whole log "
          f"{readers['replay']:.2f} s (ratio {readers['readers'] / readers['replay']:.2f})")
    worst = max(seconds)
    print(f"total {sum(seconds):.1f} s of driver time; slowest trial {1000 * worst:.1f} ms "
          f"(trial {seconds.index(worst) + 1}); median {1000 * statistics.median(seconds):.2f} ms")
    first, last = marks[0], marks[-1]
    a, b = _mean_ms(seconds, first), _mean_ms(seconds, last)
    print(f"per-trial bookkeeping: {a:.2f} ms at {first} trials, {b:.2f} ms at {last} trials "
          f"(ratio B/A = {b / a:.2f})")


def _time_readers(run_dir: Path) -> dict[str, float]:
    """What a reader (the live report, models.load) pays mid-run: tables + the log after them, vs the whole log."""
    import runfolder
    from runfolder import _frames, _log, _records

    def read_all() -> tuple[float, tuple[int, int, int]]:
        start = time.perf_counter()
        results = runfolder.read_results(run_dir)
        curves = runfolder.read_curves(run_dir)
        records = runfolder.read_trials(run_dir)
        return time.perf_counter() - start, (len(results), len(curves), len(records))

    tail = _log._log_tail(runfolder.RunFolder(run_dir).trials_log)
    readers, counts = read_all()
    for reader in (_frames, _records):  # as a log without markers is read
        reader._log_tail = lambda log: None
    try:
        replay, replayed_counts = read_all()
    finally:
        for reader in (_frames, _records):
            reader._log_tail = _log._log_tail
    if counts != replayed_counts:
        sys.exit(f"the readers disagree: {counts} from the tables and the log's tail, {replayed_counts} from the log")
    return {"readers": readers, "replay": replay, "tail": len(tail.rows) if tail else -1}


def _time_table_writes() -> list[tuple[int, float, str]]:
    """Record (trials, seconds, thread) of every write of the tables, in the driver or in the background."""
    import threading

    from runfolder import _tables

    writes: list[tuple[int, float, str]] = []
    write = _tables._write_snapshot

    def timed(folder: Any, snapshot: Any) -> None:
        start = time.perf_counter()
        write(folder, snapshot)
        writes.append((len(snapshot.order), time.perf_counter() - start, threading.current_thread().name))

    _tables._write_snapshot = timed
    return writes


def _rss_mib() -> float:
    """The driver's resident memory now (Linux /proc), else its peak."""
    try:
        with open("/proc/self/statm") as statm:
            return int(statm.read().split()[1]) * os.sysconf("SC_PAGE_SIZE") / 2**20
    except OSError:
        return resource.getrusage(resource.RUSAGE_SELF).ru_maxrss / 1024


# ------------------------------------------------------------------ part 2: through Ray Tune
TUNE_STUDY = """\
name: driver_scale
question: "How many trials a second does the driver record, against bare Ray Tune?"
data: {{dataset: synthetic, synthetic_train: 64, synthetic_test: 32}}
space:
  stem: cifar
  stem_width: {{choice: [4, 8]}}
  block: basic
  shortcut: {{choice: [A, B]}}
  stages:
    - {{depth: 1, width: 8, stride: 1}}
train: {{epochs: 1, batch_size: 32, lr: 0.1, max_threads: 1}}
search:
  strategy: optuna
  sampler: random
  trials: {trials}
  seeds: [0]
  max_concurrent: {concurrent}
  resources: {{cpus: 1, gpus: 0}}
"""
PROGRESS = re.compile(r"^\[\d+/\d+ done.*\] (trial_\d+) (complete|failed|pruned):")


@dataclass
class Timed:
    """One process's run: its wall time and when each trial's line came out."""

    wall_s: float
    finished_at: list[float]
    lines: list[str]
    returncode: int

    def trials_per_s(self) -> float:
        """Steady state: trials finished between the first and the last, over the time between them."""
        if len(self.finished_at) < 2:
            return math.nan
        return (len(self.finished_at) - 1) / (self.finished_at[-1] - self.finished_at[0])


def _timed(command: list[str], is_trial: Any, kill_after: int | None = None, delay_s: float = 0.0) -> Timed:
    """Run `command`, timestamping the lines that mark a finished trial; SIGKILL it after `kill_after` of them."""
    start = time.perf_counter()
    process = subprocess.Popen(command, cwd=ROOT, stdout=subprocess.PIPE, stderr=subprocess.STDOUT, text=True,
                               bufsize=1)
    finished_at, lines = [], []
    assert process.stdout is not None
    for line in process.stdout:
        lines.append(line.rstrip("\n"))
        if is_trial(line):
            finished_at.append(time.perf_counter() - start)
            if kill_after is not None and len(finished_at) >= kill_after:
                time.sleep(delay_s)
                os.kill(process.pid, signal.SIGKILL)
                break
    process.wait()
    return Timed(time.perf_counter() - start, finished_at, lines, process.returncode)


def _write_study(folder: Path, trials: int, concurrent: int) -> Path:
    path = folder / "driver_scale.yaml"
    path.write_text(TUNE_STUDY.format(trials=trials, concurrent=concurrent))
    return path


def _search_run(study: Path, out: Path, *extra: str) -> list[str]:
    return [sys.executable, "-m", "search.run", str(study), "--out", str(out), "--no-dashboard", "--no-report", *extra]


def tune_part(args: argparse.Namespace) -> None:
    """Part 2: `python -m search.run` against bare Ray Tune + OptunaSearch, the same trainable and trials."""
    with tempfile.TemporaryDirectory() as folder:
        study = _write_study(Path(folder), args.trials, args.concurrent)
        runs: dict[str, list[Timed]] = {"bare": [], "bare + SQLite": [], "search.run": []}
        for round_ in range(args.rounds):
            for name in runs:
                out = Path(folder) / f"{name.split()[0].replace('.', '_')}{len(name)}_{round_}"
                if name == "search.run":
                    command = _search_run(study, out)
                else:
                    command = [sys.executable, __file__, "bare", str(study), str(out),
                               *(["--tune-defaults"] if args.tune_defaults else []),
                               *(["--sqlite"] if "SQLite" in name else [])]
                timed = _timed(command, lambda line: PROGRESS.match(line) or line.startswith("finished trial"))
                if timed.returncode != 0 or len(timed.finished_at) != args.trials:
                    sys.exit(f"{name} failed ({len(timed.finished_at)} of {args.trials} trials):\n"
                             + "\n".join(timed.lines[-30:]))
                runs[name].append(timed)
    period = "Tune's default (adaptive, from 10 s)" if args.tune_defaults else "search.run's"
    print(f"tune: {args.trials} one-epoch trials of a tiny net on synthetic data, {args.concurrent} at a time, "
          f"{args.rounds} round(s), bare Ray Tune first in each; the baseline saves Tune's experiment state "
          f"on {period} period")
    rate = {}
    for name, timed in runs.items():
        rates = ", ".join(f"{t.trials_per_s():.2f}" for t in timed)
        walls = ", ".join(f"{t.wall_s:.0f}" for t in timed)
        print(f"{name:>14}: {rates} trials/s between the first and the last trial; process wall {walls} s")
        rate[name] = statistics.median(t.trials_per_s() for t in timed)
    same_storage = rate["search.run"] / rate["bare + SQLite"]
    print(f"search.run / bare Ray Tune with the same SQLite Optuna storage: {same_storage:.3f} "
          f"(the tables, the recorder, screening)")
    print(f"search.run / bare Ray Tune: {rate['search.run']:.2f} / {rate['bare']:.2f} trials/s = "
          f"{rate['search.run'] / rate['bare']:.3f} (goal >= 0.9)")


def bare(args: argparse.Namespace) -> None:
    """The baseline, in its own process: the same trainable and sampler through Ray Tune, nothing recorded."""
    import optuna
    from ray import tune
    from ray.tune.search import ConcurrencyLimiter
    from ray.tune.search.optuna import OptunaSearch

    import space
    import imagefeed
    from search._ray import init_ray, shutdown_ray
    from search._searcher import open_storage
    from search._trial import PLAN, TRIAL_NUMBER, objective_metric, run_trial

    study = space.load_study(args.study)
    splits = imagefeed.load(study.data_settings())
    init_ray(None, dashboard=False)  # the same Ray start-up and output settings as search.run
    if not args.tune_defaults:  # Tune's experiment state saved as rarely as search.run saves it
        from search._runner import TUNE_STATE_EVERY_S

        os.environ.setdefault("TUNE_GLOBAL_CHECKPOINT_S", str(TUNE_STATE_EVERY_S))

    class PlannedOptunaSearch(OptunaSearch):
        """Plain OptunaSearch (in-memory storage) that sends the plan the trainable reads; no screening, no records."""

        def suggest(self, trial_id: str) -> Any:
            params = super().suggest(trial_id)
            if not isinstance(params, dict):
                return params
            plan = space.resolve(study, params).to_dict()
            return {**params, TRIAL_NUMBER: self._ot_trials[trial_id].number, PLAN: plan}

        def save(self, checkpoint_path: str) -> None:
            """Nothing: OptunaSearch would pickle its space, a closure (search.run's searcher saves a pointer)."""
            Path(checkpoint_path).write_text("{}")

    class Progress(tune.Callback):
        def on_trial_complete(self, iteration: int, trials: list, trial: Any, **info: Any) -> None:
            print(f"finished trial {trial.trial_id}", flush=True)

        on_trial_error = on_trial_complete

    # In memory, as OptunaSearch keeps a study by default; --sqlite: study.db as search.run keeps it.
    Path(args.out).mkdir(parents=True, exist_ok=True)
    storage = open_storage(f"sqlite:///{Path(args.out).resolve() / 'study.db'}") if args.sqlite else None
    searcher = PlannedOptunaSearch(space=space.define_by_run(study), metric=objective_metric("val_acc"), mode="max",
                                   sampler=optuna.samplers.RandomSampler(seed=study.search.sampler_seed),
                                   storage=storage, study_name=study.name if args.sqlite else None)
    trainable = tune.with_parameters(
        run_trial, splits=splits, data=study.data_settings().to_dict(), objectives=["val_acc"], run_dir=args.out,
        cpus_per_trial=1, keep_weights=study.search.keep_checkpoints != 0)
    tuner = tune.Tuner(
        tune.with_resources(trainable, {"cpu": 1, "gpu": 0}),
        tune_config=tune.TuneConfig(search_alg=ConcurrencyLimiter(searcher, study.search.max_concurrent),
                                    num_samples=study.search.trials, reuse_actors=True),
        run_config=tune.RunConfig(name="bare", storage_path=str(Path(args.out).resolve() / "ray_results"),
                                  callbacks=[Progress()], verbose=0, failure_config=tune.FailureConfig(max_failures=0)))
    tuner.fit()
    shutdown_ray()


# ------------------------------------------------------------------ part 4: the Optuna storage
def storage(args: argparse.Namespace) -> None:
    """Part 4: the driver's Optuna calls per trial (suggest, then the finished trial told), storage by storage."""
    import optuna

    import space
    from search._plans import SampledPlans
    from search._searcher import RESULT_ATTR, SUMMARY_KEYS, ScreeningOptunaSearch, open_storage
    from search._trial import objective_metric

    optuna.logging.set_verbosity(optuna.logging.WARNING)
    metric = objective_metric("val_acc")
    result = {"status": "complete", "final": True, metric: 0.5, "val_acc_best": 0.5, "test_acc": 0.4, "params": 1,
              "macs": 2, "epochs_run": 50, "error": "", "curve": [0.5] * 50}

    def per_trial(make_storage: Any, attributes: int) -> tuple[float, float]:
        with tempfile.TemporaryDirectory() as folder:
            study = space.load_study(_write_study(Path(folder), args.trials, 2))
            searcher = ScreeningOptunaSearch(
                space=space.define_by_run(study), metric=metric, mode="max", sampler=space.make_sampler("random", 0),
                storage=make_storage(Path(folder) / "study.db"), study_name=study.name, screen=SampledPlans(study).screen,
                on_rejected=lambda *_: None, objective_metrics=[metric])
            searcher.set_search_properties(None, None, {})
            asked = told = 0.0
            for number in range(args.trials):
                start = time.perf_counter()
                searcher.suggest(f"t{number}")
                middle = time.perf_counter()
                if attributes > 1:  # as the searcher did before: one storage write per attribute
                    trial = searcher._ot_trials[f"t{number}"]
                    for key in SUMMARY_KEYS:
                        trial.set_user_attr(key, result[key])
                    trial.set_user_attr("val_acc_per_epoch", str(result["curve"]))
                    trial.set_user_attr = lambda key, value: None  # type: ignore[method-assign]
                searcher.on_trial_complete(f"t{number}", result)
                asked, told = asked + middle - start, told + time.perf_counter() - middle
            assert attributes > 1 or RESULT_ATTR in searcher.optuna_study.trials[-1].user_attrs
            return 1000 * asked / args.trials, 1000 * told / args.trials

    arms = [("in memory (OptunaSearch's default)", lambda path: optuna.storages.InMemoryStorage(), 1),
            ("SQLite, Optuna's defaults, 8 attributes (before)",
             lambda path: optuna.storages.get_storage(f"sqlite:///{path}"), 8),
            ("SQLite, Optuna's defaults, 1 attribute",
             lambda path: optuna.storages.get_storage(f"sqlite:///{path}"), 1),
            ("SQLite, WAL + synchronous=NORMAL, 1 attribute (now)", lambda path: open_storage(f"sqlite:///{path}"), 1)]
    print(f"storage: {args.trials} trials through ScreeningOptunaSearch (random sampler), ms per trial")
    totals = {}
    for name, make_storage, attributes in arms:
        asked, told = per_trial(make_storage, attributes)
        totals[name] = asked + told
        print(f"  {name:<52} suggest {asked:6.1f}  tell {told:6.1f}  total {asked + told:6.1f}")
    before, now = totals[arms[1][0]], totals[arms[3][0]]
    print(f"Optuna storage per trial: {now:.1f} ms now, {before:.1f} ms before (ratio {now / before:.2f})")


# ------------------------------------------------------------------ part 3: kill -9
def _same(a: Any, b: Any) -> bool:
    both_nan = isinstance(a, float) and isinstance(b, float) and math.isnan(a) and math.isnan(b)
    return both_nan or a == b


def crash(args: argparse.Namespace) -> None:
    """Part 3: SIGKILL the driver at a random moment, --resume, and check every trial the log held survived."""
    import runfolder

    rng = random.Random(args.seed)
    print(f"crash: {args.kills} run(s) of {args.trials} trials ({args.concurrent} at a time), each killed with "
          f"SIGKILL after a random number of finished trials plus a random 0-1 s, then --resume")
    totals = {"logged": 0, "lost": 0, "changed": 0, "unread": 0}
    for kill in range(args.kills):
        with tempfile.TemporaryDirectory() as folder:
            study = _write_study(Path(folder), args.trials, args.concurrent)
            out = Path(folder) / "run"
            kill_after = rng.randint(max(1, args.trials // 10), max(1, 9 * args.trials // 10))
            killed = _timed(_search_run(study, out), PROGRESS.match, kill_after=kill_after,
                            delay_s=rng.uniform(0, 1))
            printed = {PROGRESS.match(line).group(1) for line in killed.lines if PROGRESS.match(line)}
            logged, _ = runfolder.replay_log(runfolder.RunFolder(out).trials_log)
            unread = set(logged) - set(runfolder.read_results(out)["trial_id"])  # readers, before the resume
            if not printed <= set(logged):
                sys.exit(f"trials printed as recorded but missing from the log: {sorted(printed - set(logged))}")
            resumed = _timed(_search_run(study, out, "--resume"), PROGRESS.match)
            if resumed.returncode != 0:
                sys.exit("the resume failed:\n" + "\n".join(resumed.lines[-30:]))
            after = {row["trial_id"]: row for row in runfolder.read_results(out).to_dict("records")}
            lost = [t for t in logged if t not in after]
            changed = [t for t in logged if t in after and not all(
                _same(logged[t].get(c), after[t].get(c)) for c in ("status", "val_acc_best", "test_acc", "wall_s"))]
            note = next((line for line in resumed.lines if line.startswith("resuming")), "")
            print(f"  kill {kill + 1}: after {len(killed.finished_at)} trial lines, at {killed.wall_s:.1f} s; "
                  f"the log held {len(logged)} trials; after --resume the tables hold {len(after)} of "
                  f"{args.trials}; lost {len(lost)}, changed {len(changed)}, unread before the resume {len(unread)}"
                  f" ({note})")
            for key, value in (("logged", len(logged)), ("lost", len(lost)), ("changed", len(changed)),
                               ("unread", len(unread))):
                totals[key] += value
    print(f"kill -9: {totals['lost']} of {totals['logged']} logged trials lost and {totals['changed']} changed after "
          f"--resume over {args.kills} kill(s); {totals['unread']} unseen by readers before the resume")


# ------------------------------------------------------------------ main
def main() -> None:
    """Run the part the command line names."""
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parts = parser.add_subparsers(dest="part", required=True)
    part = parts.add_parser("bookkeeping", help="the recorder alone, no Ray")
    part.add_argument("--trials", type=int, default=10000)
    part.add_argument("--keep-checkpoints", type=int, default=3)
    part.add_argument("--arrival-s", type=float, default=1.0, help="simulated seconds between finished trials")
    part.add_argument("--results-every-s", type=float, default=60.0)
    part.add_argument("--tracemalloc", action="store_true", help="also trace Python allocations (slower)")
    part.add_argument("--overlap", action="store_true",
                      help="let background writes overlap the next trials (the clock runs hundreds of times "
                           "faster than a study's, so they overlap that much more than in one: a bound)")
    part = parts.add_parser("tune", help="search.run against bare Ray Tune + OptunaSearch")
    part.add_argument("--trials", type=int, default=1000)
    part.add_argument("--concurrent", type=int, default=2, help="trials at once (one CPU each)")
    part.add_argument("--rounds", type=int, default=1)
    part.add_argument("--tune-defaults", action="store_true",
                      help="the baseline saves Tune's experiment state on Tune's default period, not search.run's")
    part = parts.add_parser("crash", help="kill -9 the driver at a random moment, then --resume")
    part.add_argument("--trials", type=int, default=1000)
    part.add_argument("--concurrent", type=int, default=2)
    part.add_argument("--kills", type=int, default=3)
    part.add_argument("--seed", type=int, default=0)
    part = parts.add_parser("storage", help="the driver's Optuna calls per trial, storage by storage")
    part.add_argument("--trials", type=int, default=200)
    part = parts.add_parser("bare", help=argparse.SUPPRESS)  # part 2's baseline, run in its own process
    part.add_argument("study")
    part.add_argument("out")
    part.add_argument("--tune-defaults", action="store_true")
    part.add_argument("--sqlite", action="store_true", help="keep the Optuna study in study.db, as search.run does")
    args = parser.parse_args()
    {"bookkeeping": bookkeeping, "tune": tune_part, "crash": crash, "storage": storage, "bare": bare}[args.part](args)


if __name__ == "__main__":
    main()
