"""Plain-text summaries of a study: its size, and the dry run the CLI prints before any training."""

from __future__ import annotations

import math
from typing import Any

import optuna

from imagefeed import DATASET_KINDS, eval_resize
from screens import SCORING_BATCH_SIZE, candidates_per_trial

from ._forms import Choice, FloatRange, IntRange, is_searched
from ._matching import Match, is_design_factor
from ._sampling import SEED, constraint_violation, define_by_run, grid_points, resolve
from ._space import Parameter, format_value, short_number
from ._study import Study


def _plural(count: int, noun: str) -> str:
    return f"{count:,} {noun}{'' if count == 1 else 's'}"


def _distinct_values(parameter: Parameter) -> int:
    domain = parameter.domain
    if isinstance(domain, IntRange):  # a log int range still takes every integer
        return (domain.high - domain.low) // domain.step + 1
    return parameter.grid_size()


def space_size(study: Study) -> str:
    """"8 architectures x 3 seeds = 24 trials", or for Optuna what is searched and the trial budget."""
    seeds = _plural(len(study.search.seeds), "seed")
    if study.grid is not None:
        points = grid_points(study)
        architectures = len({point.spec.key() for point in points})
        if architectures == len(points):
            what = _plural(len(points), "architecture")
        else:
            what = f"{_plural(len(points), 'point')} ({_plural(architectures, 'architecture')})"
        text = f"{what} × {seeds} = {_plural(study.search.trials, 'trial')}"
        if study.grid.dropped_by_constraints:
            text += f" ({study.grid.dropped_by_constraints:,} dropped by constraints)"
        return text
    parameters = study.search_space.parameters
    numeric = sum(parameter.numeric for parameter in parameters)
    continuous = any(isinstance(p.domain, FloatRange) and (p.domain.step is None or p.domain.log)
                     for p in parameters)
    if not parameters:
        kind = "nothing searched"
    elif continuous:
        kind = "continuous"
    else:
        kind = f"discrete, up to {math.prod(_distinct_values(p) for p in parameters):,} combinations"
    seeded = f" over {seeds}" if len(study.search.seeds) > 1 else ""
    return (f"{kind}: {_plural(len(parameters), 'searched parameter')} ({numeric} numeric); "
            f"{_plural(study.search.trials, 'trial')}{seeded}")


def _show_setting(value: Any) -> str:
    if isinstance(value, Choice):
        return "{" + ", ".join(map(str, value.choice)) + "}"
    if is_searched(value):
        step = f" step {value.step}" if value.step not in (None, 1) else ""
        return f"[{value.low}, {value.high}]{' log' if value.log else ''}{step}"
    return str(value)


def _data_line(study: Study) -> str:
    data = study.data
    kind = DATASET_KINDS[data.dataset]
    if not kind.reads_files:
        source = f"synthetic ({data.synthetic_train} train / {data.synthetic_test} test images)"
    elif data.root is not None:
        source = f"{data.dataset} ({data.root})"
    elif data.dataset == "cifar10":
        source = "cifar10 (embedded sample)"
    else:  # the dry run reads no data; a run refuses this before any trial starts
        source = f"{data.dataset} (data.root not set: a run needs it)"
    limit = f", first {data.train_limit} training images" if data.train_limit else ""
    if kind.augment == "pad_crop_flip":
        augment = f"{data.image_size} px, " + (f"crop pad {data.crop_padding}" if data.crop_padding else "no crop")
    else:  # random resized crop to image_size; evaluation resizes, then takes the centre crop (imagefeed)
        augment = (f"{data.image_size} px random resized crop, test: resize {eval_resize(data.image_size)} "
                   f"and centre crop")
    return (f"data: {source}{limit}, val_fraction {data.val_fraction:g}, {augment}, "
            f"{'flip' if data.flip else 'no flip'}, normalize {data.normalize}")


def _train_line(study: Study) -> str:
    train = study.model.train
    fields = ("epochs", "batch_size", "optimizer", "lr", "schedule", "warmup_epochs", "weight_decay",
              "label_smoothing")
    return "train: " + ", ".join(f"{name} {_show_setting(getattr(train, name))}" for name in fields)


def _row(label: str, plan_or_error: Any, violation: str | None) -> tuple[str, str, str, str, str, str]:
    if isinstance(plan_or_error, str):
        return label, "-", "-", "-", "-", f"invalid: {plan_or_error}"
    spec, measured, memory = plan_or_error
    return (label, f"{spec.num_layers} layers", f"{measured.params / 1e6:.2f} M params",
            f"{measured.macs / 1e6:.2f} M MACs", memory.short(), f"rejected: {violation}" if violation else "ok")


def _memory_line(study: Study) -> str:
    budget = study.memory_budget
    if budget is None or budget.bytes is None:
        reason = budget.source if budget is not None else "unknown"
        return f"memory per trial: {reason}; not checked"
    return f"memory per trial: {budget.describe()}; estimated from the shapes (models.training_memory)"


def _sampled_rows(study: Study, samples: int, seed: int,
                  matches: list[tuple[str, Match]]) -> list[tuple[str, str, str, str, str]]:
    """Ask a seeded random Optuna sampler for `samples` trials through `define_by_run`; appends to `matches`."""
    verbosity = optuna.logging.get_verbosity()
    optuna.logging.set_verbosity(optuna.logging.WARNING)  # no "A new study created" line in a report
    try:
        sampler_study = optuna.create_study(sampler=optuna.samplers.RandomSampler(seed=seed))
    finally:
        optuna.logging.set_verbosity(verbosity)
    suggest = define_by_run(study)
    space = study.search_space
    rows = []
    for _ in range(samples):
        trial = sampler_study.ask()
        suggest(trial)
        try:
            plan = resolve(study, trial.params)
        except ValueError as error:
            rows.append(_row(", ".join(f"{k}={v}" for k, v in trial.params.items()), str(error), None))
            continue
        measured = space.measure(plan.spec)
        seed_text = f", seed={plan.train.seed}" if "seed" in trial.params else ""
        rows.append(_row(plan.label + seed_text, (plan.spec, measured, study.training_memory(plan.spec, plan.train)),
                         constraint_violation(study, plan.spec, plan.train)))
        if plan.matched is not None:  # solved again here only to show the cost before matching
            values = {name: value for name, value in trial.params.items() if name != SEED}
            match = space.matched(values, plan.train.seed)[2]
            matches.append((plan.label + seed_text, match))  # type: ignore[arg-type]
    return rows


def _millions(value: float) -> str:
    return f"{value / 1e6:.2f}M"


def _percent(fraction: float) -> str:
    return f"{100 * fraction:g}%"


def _match_lines(study: Study, matches: list[tuple[str, Match]]) -> list[str]:
    """The matched and unmatched cost of every point, flagging those left outside the tolerance."""
    settings = study.search_space.match
    if settings is None:
        return []
    if settings.to is not None:
        target = f"{short_number(settings.to)} {settings.by} for every point"
    else:
        design = [f"{p.name}={format_value(p.corner(high=False))}" for p in study.search_space.parameters
                  if is_design_factor(p.path)]
        target = ("the same point with " + ", ".join(design) if design
                  else "each point itself (no design factor is searched)")
    tolerance = _percent(settings.tolerance)
    lines = [f"matched complexity: {settings.by} within {tolerance} by solving {settings.adjust}; target: {target}"]
    rows = [(label, _millions(float(getattr(m.unmatched, m.by))), _millions(m.cost), _millions(m.target),
             format_value(m.value), f"{m.unmatched_gap:+.2%}", f"{m.gap:+.2%}",
             "ok" if m.within else f"OVER TOLERANCE: no {settings.adjust} reaches {tolerance}; the closest is kept")
            for label, m in matches]
    header = ("point", f"{settings.by} unmatched", "matched", "target", settings.adjust, "gap before", "gap after", "")
    widths = [max(len(str(row[c])) for row in [header, *rows]) for c in range(len(header))]
    for row in [header, *rows]:
        cells = [row[0].ljust(widths[0]), *(cell.rjust(width) for cell, width in zip(row[1:7], widths[1:7])), row[7]]
        lines.append(("  " + "   ".join(cells)).rstrip())
    over = sum(not m.within for _, m in matches)
    if over:
        lines.append(f"{over} of {len(matches)} points are over the {tolerance} tolerance: "
                     "the closest was kept and its gap is recorded (match.gap in results)")
    return lines


def _screen_line(study: Study) -> str:
    """What search.screen costs and keeps: the samples scored per trained trial, and on which images."""
    screen = study.search.screen
    drawn = candidates_per_trial(screen.keep)
    batches = f"{screen.batches} batch{'es' if screen.batches > 1 else ''}"
    return (f"screen: {screen.proxy} at initialisation on {batches} of {SCORING_BATCH_SIZE} training images; "
            f"the best of {drawn} samples trains (keep {screen.keep:g}): "
            f"{_plural(drawn * study.search.trials, 'sample')} scored for {_plural(study.search.trials, 'trial')}")


def _packing_line(study: Study) -> str:
    """How search.pack_seeds groups a grid's trials: "packed seeds: up to 2 seeds of a point trained as one model per
    trial (search.pack_seeds): 6 trials in 4 Ray trials, each seed its own row; memory per trial counts 2 seeds"."""
    pack, seeds = study.search.pack_seeds, len(study.search.seeds)
    points = study.search.trials // seeds
    trials = points * -(-seeds // pack)  # each point's seeds in as few packs as K allows
    return (f"packed seeds: up to {pack} seeds of a point trained as one model per trial (search.pack_seeds): "
            f"{_plural(study.search.trials, 'trial')} in {_plural(trials, 'Ray trial')}, each seed its own row; "
            f"memory per trial counts {pack} seeds")


def dry_run_report(study: Study, samples: int = 5, seed: int = 0) -> str:
    """Name, strategy, size, settings, and `samples` specs (first grid points or random samples)."""
    search = study.search
    objectives = ", ".join(f"{metric}:{mode}" for metric, mode in search.objectives)
    strategy = search.strategy if search.sampler is None else f"optuna ({search.sampler}, seed {search.sampler_seed})"
    bounds = study.search_space.constraints.bounds()
    lines = [
        f"study: {study.name}" + (f"  ({study.path})" if study.path else ""),
        f"question: {study.question}",
        f"strategy: {strategy}; objectives: {objectives}; scheduler: {search.scheduler}",
        f"space: {space_size(study)}",
        _data_line(study),
        _train_line(study),
        "constraints: " + (", ".join(f"{name} {short_number(value)}" for name, value in bounds.items()) or "none"),
        f"resources per trial: {search.resources.cpus:g} cpus, {search.resources.gpus:g} gpus",
        _memory_line(study),
    ]
    if search.pack_seeds > 1:
        lines.insert(len(lines) - 1, _packing_line(study))
    if search.screen is not None:
        lines.insert(3, _screen_line(study))
    matches: list[tuple[str, Match]] = []
    if study.grid is not None:
        points = grid_points(study)
        shown = points[:samples]
        lines.append(f"first {len(shown)} of {len(points)} grid points:")
        trains = [resolve(study, {"point": point.label, "seed": search.seeds[0]}).train for point in shown]
        rows = [_row(point.label, (point.spec, point.complexity, study.training_memory(point.spec, train)), None)
                for point, train in zip(shown, trains)]
        matches = [(point.label, point.match) for point in points if point.match is not None]  # every point
    else:
        lines.append(f"{samples} random samples (seed {seed}):")
        rows = _sampled_rows(study, samples, seed, matches)
    widths = [max((len(row[column]) for row in rows), default=0) for column in range(5)]
    for row in rows:
        cells = [row[0].ljust(widths[0]), *(cell.rjust(width) for cell, width in zip(row[1:5], widths[1:])), row[5]]
        lines.append("  " + "   ".join(cells))
    lines += _match_lines(study, matches)
    return "\n".join(lines)
