"""Specs that cannot fit and settings that cannot matter: each is one located line at load, never a crash later.

Before: `width_multiplier=1e300` passed validation and crashed the dry run with
an OverflowError; `stages[0].depth=100000`, `width=2**40` and a 57 GB network on
a 24 GB machine were "ok"; `data.root` on the synthetic dataset was silently
ignored.
"""

from __future__ import annotations

from pathlib import Path

import pytest

import models
from commands import SMOKE, call_main
from models import _memory
from search import run
from space import StudyError, constraint_violation, dry_run_report, grid_points, load_study, resolve, study_from_dict

GiB = 2**30
MiB = 2**20


# A fixed machine (24 GiB, 2 cores, no GPU), so what fits does not depend on where the tests run.
pytestmark = pytest.mark.usefixtures("fixed_machine")


def _refusal(overrides: list[str], study: Path = SMOKE) -> str:
    with pytest.raises(StudyError) as caught:
        load_study(study, overrides)
    assert len(caught.value.problems) == 1
    return str(caught.value)


# ------------------------------------------------------------------ bounds
THE_ISSUE = [
    ("space.width_multiplier=1e300", "got 1e+300; allowed: a number in (0, 64]"),
    ("space.width_multiplier=1000", "got 1000; allowed: a number in (0, 64]"),
    ("space.stages[0].width=1099511627776", "got 1099511627776; allowed: an integer in [1, 16384]"),
    ("space.stages[0].depth=100000", "got 100000; allowed: an integer in [1, 1000]"),
]


@pytest.mark.parametrize("override, message", THE_ISSUE, ids=[o for o, _ in THE_ISSUE])
def test_the_issue_values_are_refused_at_load(override, message):
    assert _refusal([override]) == f"--set {override}: out of range; {message}"


@pytest.mark.parametrize("override, message", THE_ISSUE, ids=[o for o, _ in THE_ISSUE])
def test_the_issue_values_exit_2_in_the_dry_run(capsys, override, message):
    result = call_main(run.main, [str(SMOKE), "--dry-run", "--set", override], capsys)
    assert message in result.bad_input_line()


# Every bounded field, just past its bound (the file's value, or an override of it).
PAST_THE_BOUND = [
    ("space.stem_width=16385", "an integer in [1, 16384]"),
    ("space.groups=16385", "an integer in [1, 16384]"),
    ("space.blocks_per_stage=1001", "an integer in [1, 1000]"),
    ("space.blocks_per_stage={int: [1, 1001]}", "an integer in [1, 1000]"),
    ("space.width_multiplier={choice: [1.0, 65.0]}", "a number in (0, 64]"),
    ("space.stages[1].width={int: [8, 20000]}", "an integer in [1, 16384]"),
    ("space.in_channels=65", "an integer in [1, 64]"),
    ("space.stages=[" + ", ".join(["{depth: 1, width: 8}"] * 17) + "]", "at most 16 item(s)"),
    ("data.split_seed=4294967296", "an integer in [0, 4294967295]"),
    ("data.crop_padding=33", "an integer in [0, 32]"),
    ("data.train_limit=1000001", "an integer in [1, 1000000]"),
    ("data.synthetic_train=100001", "an integer in [10, 100000]"),
    ("data.synthetic_test=100001", "an integer in [10, 100000]"),
    ("train.epochs=10001", "an integer in [1, 10000]"),
    ("train.batch_size=65537", "an integer in [1, 65536]"),
    ("train.lr=11.0", "a number in (0, 10]"),
    ("train.weight_decay=2.0", "a number in [0, 1]"),
    ("train.warmup_epochs=10001.0", "a number in [0, 10000]"),
    ("train.max_threads=4097", "an integer in [1, 4096]"),
    ("search.trials=1000001", "an integer in [1, 1000000]"),
    ("search.seeds=[0, 4294967296]", "an integer in [0, 4294967295]"),
    ("search.repeats=1001", "an integer in [1, 1000]"),
    ("search.sampler_seed=4294967296", "an integer in [0, 4294967295]"),
    ("search.max_concurrent=10001", "an integer in [1, 10000]"),
    ("search.keep_checkpoints=1000001", "an integer in [-1, 1000000]"),
    ("search.resources.cpus=5000.0", "a number in (0, 4096]"),
    ("search.resources.gpus=65.0", "a number in [0, 64]"),
    ("search.asha.grace_period=10001", "an integer in [1, 10000]"),
]


@pytest.mark.parametrize("override, allowed", PAST_THE_BOUND, ids=[o.split("=")[0] for o, _ in PAST_THE_BOUND])
def test_every_bounded_field_refuses_a_value_past_its_bound(override, allowed):
    message = _refusal(["search.scheduler=asha", override])
    assert message.startswith(f"--set {override}") and f"allowed: {allowed}" in message


def test_a_step_too_small_for_its_range_is_refused():
    # 5e-324 made (high - low) / step infinite: an OverflowError in the dry run.
    message = _refusal(["train.lr={float: [0.01, 0.1], step: 5.0e-324}"])
    assert "`step` is too small for the range" in message and "allowed: at most 1e15 steps" in message


# ------------------------------------------------------------- memory
def test_a_grid_point_that_does_not_fit_is_refused_naming_point_estimate_and_budget():
    # 4 trials of smoke at once on 24 GiB: 12 GiB each; batch 65536 of a tiny net needs ~21 GiB.
    message = _refusal(["train.batch_size=65536"])
    assert message.startswith(f"{SMOKE}:")
    assert "space: the grid point 'shortcut=A' needs about" in message
    assert "activations" in message and "at batch 65536) to train" in message
    assert "more than the 12 GiB (this machine's 24 GiB / 2 trials at once) it may use" in message
    assert "(2 of the 2 points do not fit)" in message
    assert "allowed: a narrower or shallower network, a smaller train.batch_size" in message


def test_fewer_trials_at_once_give_each_more_memory():
    with pytest.raises(StudyError):
        load_study(SMOKE, ["train.batch_size=65536"])
    study = load_study(SMOKE, ["train.batch_size=65536", "search.max_concurrent=1"])
    assert study.memory_budget.bytes == 24 * GiB
    assert study.memory_budget.source == "this machine's 24 GiB / 1 trial at once"


def test_the_budget_of_a_gpu_trial_is_its_share_of_the_device(monkeypatch):
    monkeypatch.setattr(_memory, "gpu_memory", lambda index=0: (80 * GiB, "NVIDIA H100"))
    study = load_study(SMOKE, ["search.resources.gpus=0.25"])
    assert study.memory_budget.bytes == 20 * GiB
    assert study.memory_budget.describe() == "20 GiB (0.25 of the 80 GiB of one NVIDIA H100)"
    # bf16 autocast (amp auto on a GPU) halves the activations, so a batch that needs
    # ~21 GiB in fp32 on the CPU fits a quarter of this GPU.
    point = grid_points(study)[0]
    train = resolve(study, {"point": point.label, "seed": 0}).train.replace(batch_size=65536)
    on_gpu = study.training_memory(point.spec, train)
    assert on_gpu.activations < 11 * GiB and study.memory_refusal(point.spec, train) is None


def test_a_gpu_study_planned_on_a_machine_without_one_is_not_checked():
    study = load_study(SMOKE, ["search.resources.gpus=1", "train.batch_size=65536"])
    assert study.memory_budget.bytes is None
    assert "memory per trial: unknown: the trials hold GPUs and this machine has none; not checked" in \
        dry_run_report(study)


def test_the_dry_run_shows_each_estimate_and_the_budget():
    report = dry_run_report(load_study(SMOKE))
    assert "memory per trial: 12 GiB (this machine's 24 GiB / 2 trials at once)" in report
    assert "MiB to train   ok" in report


NAS = Path(__file__).resolve().parents[2] / "studies" / "nas_pareto.yaml"


def test_an_optuna_sample_that_does_not_fit_is_rejected_like_a_constraint():
    study = load_study(NAS, ["train.batch_size=4096"])
    report = dry_run_report(study, samples=5)
    assert "rejected: needs about" in report and "more than the 12 GiB" in report
    small = models.preset("cifar_resnet20")
    plan = resolve(study, {"block": "basic", "shortcut": "A", "width_multiplier": 0.5, "stages.0.depth": 1,
                           "stages.1.depth": 1, "stages.2.depth": 1})
    assert constraint_violation(study, plan.spec, plan.train) is None
    assert constraint_violation(study, plan.spec, plan.train.replace(batch_size=65536)).startswith(
        "needs about")
    # Without the trial's settings, the study's largest batch stands in.
    assert constraint_violation(study, small) is None
    wide = small.replace(stages=tuple(stage.__class__(stage.depth, 2048, stage.stride) for stage in small.stages))
    assert constraint_violation(study, wide) is not None


def test_an_optuna_space_where_nothing_fits_is_refused():
    message = _refusal(["train.batch_size=65536"], NAS)
    assert "space: no architecture in the space fits a trial's memory: the smallest of 258 sampled needs about" \
        in message


# ------------------------------------------------ settings that cannot matter
CANNOT_MATTER = [
    (["data.root=/data/cifar10"],
     "--set data.root=/data/cifar10: the synthetic dataset is generated in memory, so data.root would never be "
     "read; got '/data/cifar10'; allowed: leave data.root out (or null), or set data.dataset to one of cifar10, "
     "cifar100, imagenet_downsampled, imagefolder, tiny_imagenet, imagenet"),
    (["data.download=true"],
     "--set data.download=true: the synthetic dataset is generated in memory, so there is nothing to download; "
     "got True; allowed: leave data.download out (or false), or set data.dataset: cifar10 or cifar100"),
    (["search.asha={grace_period: 1}"],
     "--set search.asha={grace_period: 1}: asha settings only apply with scheduler: asha; got {'grace_period': 1}; "
     "allowed: leave asha out, or set scheduler: asha"),
    (["space.bottleneck_ratio={choice: [0.25, 0.5]}"],
     "--set space.bottleneck_ratio={choice: [0.25, 0.5]}: searched, but the block is never a bottleneck ('basic'), "
     "so it never applies; allowed: a fixed value, or a block choice with bottleneck or preact_bottleneck"),
    (["space.block={choice: [basic, preact_basic]}", "space.bottleneck_ratio={choice: [0.25, 0.5]}"],
     "searched, but the block is never a bottleneck ('basic', 'preact_basic'), so it never applies"),
]


@pytest.mark.parametrize("overrides, message", CANNOT_MATTER, ids=[o[-1].split("=")[0] for o, _ in CANNOT_MATTER])
def test_a_setting_that_cannot_matter_is_one_located_line(capsys, overrides, message):
    assert message in _refusal(overrides)
    flags = [part for override in overrides for part in ("--set", override)]
    assert message in call_main(run.main, [str(SMOKE), "--dry-run", *flags], capsys).bad_input_line()


def test_a_null_root_on_synthetic_data_is_fine():
    assert load_study(SMOKE, ["data.root=null", "data.download=false"]).data.root is None


def test_root_is_located_at_its_line_in_a_file(write_study):
    path = write_study("""\
        name: t
        question: q
        data:
          dataset: synthetic
          root: /data/cifar10
        space: {base: cifar_resnet20}
        """)
    with pytest.raises(StudyError, match=rf"^{path}:5: data\.root: the synthetic dataset is generated"):
        load_study(path)
    # The same root with CIFAR-10 is read, so it is allowed.
    assert study_from_dict({"name": "t", "question": "q", "data": {"dataset": "cifar10", "root": "/data"},
                            "space": {"base": "cifar_resnet20"}}).data.root == "/data"
