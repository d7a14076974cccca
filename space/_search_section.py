"""The `search` section of a study file: strategy, objectives, seeds, the scheduler, resources and storage.

Split from `_schema` (the other sections and the whole study), whose rules it
shares: strict models, unknown keys forbidden, one-line messages from
`rule_error`.
"""

from __future__ import annotations

from typing import Annotated, Any, Literal

from pydantic import AfterValidator, Field, ValidationInfo, field_validator
from pydantic.json_schema import WithJsonSchema

from runfolder import (ASHA_PROMOTIONS, ASHA_SCHEDULES,  # one home: the report reads them too
                       DEFAULT_ASHA_GRACE_PERIOD, DEFAULT_ASHA_PROMOTION, DEFAULT_ASHA_REDUCTION_FACTOR,
                       DEFAULT_ASHA_SCHEDULE)
from screens import PROXY_NAMES  # one registry of proxy names: the screen's, and python -m reports.proxies'

from ._forms import (MAX_CONCURRENT, MAX_GPUS, MAX_REPEATS, MAX_THREADS, MAX_TRIALS, EpochCount, PositiveFloat, Seed,
                     StrictModel, interval, rule_error)
from ._optuna_samplers import SAMPLERS

METRICS = ("val_acc", "macs", "params")
MODES = ("max", "min")
STRATEGIES = ("grid", "optuna")
SCHEDULERS = ("none", "asha")
MAX_WORKERS = 1_024  # data-parallel workers per trial: far beyond any cluster a study of this size gets
# Seeds trained as one model (search.pack_seeds): HFTA fuses up to a few dozen models per GPU; beyond that the
# packed model's memory, K times one seed's, is the limit, and the grid's memory check says so.
MAX_PACK_SEEDS = 64


def _parse_objective(value: Any) -> tuple[str, str]:
    if not isinstance(value, str):
        raise rule_error("an objective is text 'metric:mode'", "e.g. val_acc:max or macs:min")
    metric, _, mode = value.partition(":")
    if metric not in METRICS:
        raise rule_error(f"unknown metric {metric!r}", ", ".join(f"{m}:max or {m}:min" for m in METRICS))
    if mode not in MODES:
        raise rule_error(f"unknown mode {mode!r} for {metric}", f"{metric}:max or {metric}:min")
    return (metric, mode)


# `search.objectives` in the JSON Schema: one "metric:mode" text, or a list of them.
_OBJECTIVE_TEXT = {"type": "string", "enum": [f"{metric}:{mode}" for metric in METRICS for mode in MODES]}
OBJECTIVES_JSON_SCHEMA = {"anyOf": [_OBJECTIVE_TEXT, {"type": "array", "items": _OBJECTIVE_TEXT, "minItems": 1}]}


class Asha(StrictModel):
    """ASHA early stopping on val_acc (Li et al. 2018, arXiv 1810.05934)."""

    grace_period: EpochCount = DEFAULT_ASHA_GRACE_PERIOD  # type: ignore[valid-type]
    """Epochs every trial trains before ASHA may stop it."""
    reduction_factor: interval(float, 1, low_open=True) = DEFAULT_ASHA_REDUCTION_FACTOR  # type: ignore[valid-type]
    """ASHA's reduction factor eta: about one trial in eta goes on from each rung to the next."""
    schedule: Literal[ASHA_SCHEDULES] = DEFAULT_ASHA_SCHEDULE  # type: ignore[valid-type]
    """truncated: a trial stopped at a rung ran the first epochs of the full-length learning-rate schedule;
    budget_true: the schedule is compressed into each rung's budget, so the rate has decayed fully at the epoch
    where ASHA compares (Li, Yumer & Ramanan, "Budgeted Training", ICLR 2020, arXiv 1905.04753). The rungs close at
    grace_period x reduction_factor^k epochs, rounded up, and the last at the longest training. truncated is the
    default because it measured no worse: on bench/asha_efficiency.py (16 trials x 8 epochs, rungs 1, 4, 8;
    bench/RESULTS.md) budget_true ranked the architectures at the first rung no better (Kendall tau 0.50 against
    0.59) and found a best no closer to the full search's (continue -4.8 pp, restart -3.8 pp, truncated -4.0 pp)."""
    promotion: Literal[ASHA_PROMOTIONS] = DEFAULT_ASHA_PROMOTION  # type: ignore[valid-type]
    """budget_true only: how a trial goes on past a rung. continue keeps its weights and runs the next stretch on
    a schedule of its own, a warm restart of the rate (SGDR, Loshchilov & Hutter 2017, arXiv 1608.03983); restart
    trains it again from scratch on a schedule compressed into the next rung's budget, spending those epochs too,
    so a trial that reaches the end is exactly the full search's trial. Measured (bench/RESULTS.md): restart came
    closer to the full search's best (-3.8 pp against -4.8 pp, 10 validation images) but spent 1.6 times the epochs
    (0.75 of the full search's against 0.48); continue is the default, as the goal caps the epochs."""

    @field_validator("promotion")
    @classmethod
    def _restart_needs_budget_true(cls, promotion: str, info: ValidationInfo) -> str:
        # A truncated trial runs one long schedule: going on is all it can do.
        if promotion == "restart" and info.data.get("schedule") != "budget_true":
            raise rule_error("restart trains each rung on a schedule of its own, which only schedule budget_true has",
                             "promotion: continue, or schedule: budget_true")
        return promotion


class Resources(StrictModel):
    """What one trial holds; gpus below 1 let several trials share one GPU."""

    cpus: interval(float, 0, MAX_THREADS, low_open=True) = 1.0  # type: ignore[valid-type]
    """The CPUs one trial holds (Ray resources)."""
    gpus: interval(float, 0, MAX_GPUS) = 0.0  # type: ignore[valid-type]
    """The GPUs one trial holds; below 1, several trials share one GPU."""
    workers: interval(int, 1, MAX_WORKERS) = 1  # type: ignore[valid-type]
    """Data-parallel workers per trial (Ray Train's TorchTrainer, DDP: NCCL on GPUs, gloo on CPUs); each worker
    holds cpus and gpus, so a trial holds workers x cpus and workers x gpus. The global batch stays
    train.batch_size, split evenly over the workers, and the learning rate stays train.lr."""
    sync_batchnorm: bool = False
    """With workers >= 2 on GPUs: SyncBatchNorm, whose statistics span the global batch, instead of BatchNorm2d,
    whose statistics span each worker's share of it."""

    @field_validator("gpus")
    @classmethod
    def _whole_above_one(cls, gpus: float) -> float:
        # Ray packs fractions of one GPU, never fractions spread over several.
        if gpus > 1 and gpus != int(gpus):
            raise rule_error("a trial can share one GPU or hold whole GPUs", "a fraction <= 1 or a whole number")
        return gpus

    @field_validator("workers")
    @classmethod
    def _whole_gpus_per_worker(cls, workers: int, info: ValidationInfo) -> int:
        # NCCL gives each rank a device of its own: two workers on one GPU cannot form a process group.
        # A worker drives one device; a second GPU in its bundle would sit idle.
        gpus = info.data.get("gpus", 0.0)
        if workers > 1 and gpus not in (0, 1):
            raise rule_error(f"each of {workers} workers drives one GPU of its own (NCCL), but gpus is {gpus:g}",
                             "gpus: 1 (one GPU per worker), gpus: 0 (gloo on CPUs), or workers: 1")
        return workers

    @field_validator("sync_batchnorm")
    @classmethod
    def _sync_needs_workers_on_gpus(cls, sync: bool, info: ValidationInfo) -> bool:
        if not sync:
            return sync
        if info.data.get("workers", 1) < 2:
            raise rule_error("SyncBatchNorm synchronises the statistics of two or more workers",
                             "sync_batchnorm: false, or workers: 2 or more")
        if info.data.get("gpus", 0.0) == 0:
            # torch's SyncBatchNorm refuses CPU tensors in training.
            raise rule_error("SyncBatchNorm runs on GPUs only (torch refuses CPU tensors)",
                             "sync_batchnorm: false on CPUs, or gpus: 1 per worker")
        return sync


def checked_storage_url(url: str) -> str:
    """`url` when Optuna can open it: an SQLAlchemy URL whose dialect and driver import; a file for SQLite."""
    from sqlalchemy.engine import make_url
    from sqlalchemy.exc import ArgumentError, NoSuchModuleError

    allowed = "an SQLAlchemy database URL, e.g. sqlite:///runs/study.db or postgresql+psycopg2://user@host/db"
    try:
        parsed = make_url(url)
    except ArgumentError:
        raise rule_error("not a database URL", allowed) from None
    shown = parsed.render_as_string(hide_password=True)  # the message never repeats a password
    try:
        dialect = parsed.get_dialect()
    except NoSuchModuleError:
        raise rule_error(f"{shown}: SQLAlchemy has no database type {parsed.drivername!r}", allowed,
                         show_input=False) from None
    try:
        getattr(dialect, "import_dbapi", getattr(dialect, "dbapi", None))()
    except ImportError as error:
        raise rule_error(f"{shown}: its database driver is not installed ({error}); install it on every "
                         f"machine of the run", allowed, show_input=False) from None
    if parsed.get_backend_name() == "sqlite" and parsed.database in (None, "", ":memory:"):
        raise rule_error(f"{shown}: an in-memory database keeps nothing for --resume or the report",
                         "sqlite:///PATH/study.db (a file)", show_input=False)
    return url


# Scoring batches a screen may take: each costs a forward and backward pass per candidate, in the driver.
MAX_SCREEN_BATCHES = 64


class Screen(StrictModel):
    """Zero-cost screening (Abdelfattah et al., "Zero-Cost Proxies for Lightweight NAS", ICLR 2021, arXiv 2101.08134):
    only the best of several samples, scored at initialisation, is trained."""

    proxy: Literal[PROXY_NAMES]  # type: ignore[valid-type]
    """What ranks the samples, each network scored as its trial's seed initialises it, higher better: synflow (Tanaka
    et al., NeurIPS 2020, arXiv 2006.05467: the synaptic flow through |W| of one all-ones image, in double precision
    with BatchNorm off, as Abdelfattah et al.); jacob_cov (Mellor et al. 2020, arXiv 2006.04647 v1: how uncorrelated
    the input gradients of the batch's images are); grad_norm (Abdelfattah et al.: the summed norms of each layer's
    loss gradient); snip (Lee et al., ICLR 2019, arXiv 1810.02340: the sum of |W dL/dW|); params and macs (the
    counts, strong baselines in Abdelfattah et al.); vote (Abdelfattah et al.: a sample beats another when at least
    2 of synflow, jacob_cov and snip score it higher; the one that beats the most others is trained)."""
    keep: interval(float, 0, 1, low_open=True) = 0.25  # type: ignore[valid-type]
    """The fraction of the samples that is trained: ceil(1 / keep) are drawn per trained trial (0.25: 4)."""
    batches: interval(int, 1, MAX_SCREEN_BATCHES) = 1  # type: ignore[valid-type]
    """Scoring batches of 64 images of the training split (a seeded draw, no augmentation), the same for every
    candidate; Abdelfattah et al. score on one."""


def _check_run_folder_path(path: str) -> str:
    if not path.strip():
        raise rule_error("is empty", "the path of an earlier run folder, e.g. runs/smoke")
    return path


class WarmStart(StrictModel):
    """`search.warm_start`: an optuna search that starts from what an earlier run learned."""

    run: Annotated[str, AfterValidator(_check_run_folder_path)] = Field(alias="from", description=(
        "The earlier run folder (as search.run wrote it); its complete trials, best first by the run-folder "
        "ranking, are told to the Optuna sampler as finished trials before this study samples."))
    top: interval(int, 1, MAX_TRIALS) = 10  # type: ignore[valid-type]
    """How many of the earlier run's best trials the sampler is told; they are not rows of this run's results and do
    not count against its search.trials."""


class SearchSection(StrictModel):
    """`search`: how points are chosen, what is optimised, and what each trial may use."""

    strategy: Literal[STRATEGIES] = "grid"  # type: ignore[valid-type]
    """grid trains every point of the space (choices and stepped ranges) with every seed; optuna samples
    search.trials points with search.sampler."""
    sampler: Literal[tuple(SAMPLERS)] = "tpe"  # type: ignore[valid-type]
    """The Optuna sampler (strategy optuna only): tpe (multivariate TPE), random, nsga2 (NSGA-II, Deb et al.
    2002) or qmc (quasi-Monte Carlo)."""
    # Parsed from "metric:mode" text into (metric, mode) pairs.
    objectives: Annotated[list[Annotated[Any, AfterValidator(_parse_objective)]], Field(
        min_length=1, json_schema_extra={"default": ["val_acc:max"]},
        description="What is optimised, as metric:mode (val_acc, macs or params; max or min); two or more "
                    "objectives make a multi-objective search for the Pareto front."),
        WithJsonSchema(OBJECTIVES_JSON_SCHEMA)] = [("val_acc", "max")]
    trials: interval(int, 1, MAX_TRIALS) | None = None  # type: ignore[valid-type]
    """The trial budget of an optuna study (required there); a grid derives it (points x seeds), and a value
    given must equal that."""
    seeds: Annotated[list[Seed], Field(min_length=1)] | None = None  # type: ignore[valid-type]
    """The training seeds: every point trains once per seed, and trials that share a seed are compared in pairs;
    distinct."""
    repeats: interval(int, 1, MAX_REPEATS) | None = None  # type: ignore[valid-type]
    """Instead of seeds: seeds 0 to repeats - 1."""
    sampler_seed: Seed = 0  # type: ignore[valid-type]
    """The seed of the Optuna sampler, and of the random points an optuna space is checked at when it loads."""
    scheduler: Literal[SCHEDULERS] = "none"  # type: ignore[valid-type]
    """none trains every trial to the end; asha stops weak trials early on val_acc (Li et al. 2018, arXiv
    1810.05934)."""
    asha: Asha | None = None
    """ASHA's settings (scheduler asha only)."""
    resources: Resources = Resources()
    """What one trial holds."""
    max_concurrent: interval(int, 1, MAX_CONCURRENT) | None = None  # type: ignore[valid-type]
    """At most this many trials at once; null: as many as the resources allow."""
    keep_checkpoints: interval(int, -1, MAX_TRIALS) = 3  # type: ignore[valid-type]
    """Keep the weights of the best N trials in the run folder; 0 keeps none, -1 all."""
    storage: str | None = None
    """The Optuna storage URL (e.g. postgresql://user@host/db); null: study.db (SQLite) in the run folder."""
    # Each finished trial is in the trial log at once; rewriting the tables costs the more, the more trials
    # there are (seconds at 10,000 trials), so it is done on a clock, not per trial.
    results_every_s: PositiveFloat = 60.0  # type: ignore[valid-type]
    """How often, in seconds, results and curves (parquet and CSV) are rewritten from the trial log while the study
    runs; they are also written after the first trial, at the end and on --resume, and readers see every finished
    trial at any time."""
    reuse: list[Annotated[str, AfterValidator(_check_run_folder_path)]] = []
    """Earlier run folders to take finished trials from instead of training them again (also --reuse RUN_DIR): a
    trial whose architecture, training settings (seed included) and data match a complete trial of one of them is
    recorded from it, row, curve and checkpoint, with its source in the reused_from column. Relative paths are
    read from the working directory."""
    warm_start: WarmStart | None = None
    """Strategy optuna only: tell the sampler the best trials of an earlier run as finished trials before this study
    samples, so it starts informed."""
    pack_seeds: interval(int, 1, MAX_PACK_SEEDS) = 1  # type: ignore[valid-type]
    """Strategy grid only: train up to this many seeds of one grid point as one model in one trial (stacked
    weights through torch.vmap; HFTA, Wang et al., MLSys 2021), so that small networks fill a GPU. Each seed keeps
    its own initialisation, batch order, augmentation and BatchNorm statistics, and still gets its own results row,
    curve and checkpoint. It computes what separate trials do, but grouped convolutions add in another order, and early
    training can grow that rounding as a switch of train.channels_last does (bench/RESULTS.md). A trial then holds the
    resources of one (search.resources) and the memory of K; its rows carry packed_seeds, and device-hours count
    its wall time once. Not with scheduler asha (a rung would stop all K seeds on one verdict), data-parallel
    workers or a streamed dataset. It pays on a GPU; on a CPU the packed model trains slower than K separate ones
    (bench/RESULTS.md). 1 trains every seed alone."""
    screen: Screen | None = None
    """Strategy optuna only: zero-cost screening (Abdelfattah et al., "Zero-Cost Proxies for Lightweight NAS", ICLR
    2021, arXiv 2101.08134). For each trial that trains, ceil(1 / keep) samples within the constraints are drawn and
    scored by the proxy at initialisation, on scoring batches of the study's own training images; the best is
    trained, and the others are recorded as pruned with the reason and do not count against search.trials. The
    scores are the results columns screen.<proxy> (the vote's also its voters'). How well each proxy ranks a
    finished run's architectures: python -m reports.proxies RUN. null trains every sample."""

    @field_validator("objectives", mode="before")
    @classmethod
    def _one_objective_may_be_text(cls, value: Any) -> Any:
        # `objectives: val_acc:max` is one objective; a list is the general form.
        return [value] if isinstance(value, str) else value

    @field_validator("objectives")
    @classmethod
    def _distinct_metrics(cls, objectives: list[tuple[str, str]]) -> list[tuple[str, str]]:
        metrics = [metric for metric, _ in objectives]
        for metric in metrics:
            if metrics.count(metric) > 1:
                raise rule_error(f"metric {metric!r} appears twice", "each metric at most once")
        return objectives

    @field_validator("sampler")
    @classmethod
    def _sampler_needs_optuna(cls, sampler: str, info: ValidationInfo) -> str:
        if info.data.get("strategy") != "optuna":
            raise rule_error("a sampler only applies to strategy optuna (a grid visits every point)",
                             "leave sampler out, or set strategy: optuna")
        return sampler

    @field_validator("seeds")
    @classmethod
    def _distinct_seeds(cls, seeds: list[int] | None) -> list[int] | None:
        if seeds is not None and len(set(seeds)) != len(seeds):  # null: `repeats` names them instead
            raise rule_error("seeds repeat", "distinct seeds")
        return seeds

    @field_validator("storage")
    @classmethod
    def _storage_optuna_can_open(cls, storage: str | None) -> str | None:
        # Checked at load (the dry run, and before Ray starts), not when the searcher first opens it.
        return None if storage is None else checked_storage_url(storage)

    @field_validator("repeats")
    @classmethod
    def _seeds_or_repeats(cls, repeats: int, info: ValidationInfo) -> int:
        if info.data.get("seeds") is not None:
            raise rule_error("give search.seeds or search.repeats, not both",
                             "seeds: [0, 1, 2] or repeats: 3")
        return repeats

    @field_validator("warm_start")
    @classmethod
    def _warm_start_needs_optuna(cls, warm_start: WarmStart | None, info: ValidationInfo) -> WarmStart | None:
        # A grid visits every point whatever was learned before; only a sampler can start informed.
        if warm_start is not None and info.data.get("strategy") != "optuna":
            raise rule_error("warm_start informs an Optuna sampler; a grid visits every point anyway",
                             "leave warm_start out, or set strategy: optuna (or --reuse the earlier run to "
                             "skip the grid points it trained)")
        return warm_start

    @field_validator("screen")
    @classmethod
    def _screen_needs_optuna(cls, screen: Screen | None, info: ValidationInfo) -> Screen | None:
        if screen is not None and info.data.get("strategy") != "optuna":
            raise rule_error("a screen chooses among samples, and a grid samples none (it trains every point)",
                             "leave screen out, or set strategy: optuna (sampler tpe, random, ...)")
        return screen

    @field_validator("asha")
    @classmethod
    def _asha_needs_scheduler(cls, asha: Asha, info: ValidationInfo) -> Asha:
        if info.data.get("scheduler") != "asha":
            raise rule_error("asha settings only apply with scheduler: asha",
                             "leave asha out, or set scheduler: asha")
        return asha
