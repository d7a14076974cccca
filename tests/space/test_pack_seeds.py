"""`search.pack_seeds` in a study file: its default, its rules (one line each, exit status 2), and its memory."""

from __future__ import annotations

import pytest

from commands import SMOKE, call_main
from search import run
from space import StudyError, dry_run_report, grid_points, load_study, resolve

GiB = 2**30


# A fixed machine (24 GiB, 2 cores, no GPU), so what fits does not depend on where the tests run.
pytestmark = pytest.mark.usefixtures("fixed_machine")


def _refusal(overrides: list[str]) -> str:
    with pytest.raises(StudyError) as caught:
        load_study(SMOKE, overrides)
    assert len(caught.value.problems) == 1
    return str(caught.value)


def test_seeds_train_alone_unless_a_grid_packs_them():
    assert load_study(SMOKE).search.pack_seeds == 1
    assert load_study(SMOKE, ["search.pack_seeds=2"]).search.pack_seeds == 2


@pytest.mark.parametrize("overrides, reason, allowed", [
    (["search.strategy=optuna", "search.trials=4"],
     "packs the seeds of one grid point, and an optuna study samples each trial's architecture",
     "1, or strategy: grid"),
    (["search.scheduler=asha"], "ASHA would stop or promote all packed seeds on one verdict", "1, or scheduler: none"),
    (["search.resources.workers=2"], "a packed model trains on one device, and search.resources.workers is 2",
     "1, or workers: 1"),
    (["data.dataset=tiny_imagenet"], "packed seeds train on a whole-tensor dataset, and data.dataset "
                                     "'tiny_imagenet' is streamed",
     "1, or a whole-tensor dataset (cifar10, cifar100, synthetic, imagenet_downsampled)"),
    (["search.seeds=[0]"], "more than the 1 seed(s) each point trains", "an integer in [1, 1]"),
], ids=["optuna", "asha", "workers", "streamed", "more-than-seeds"])
def test_what_packed_seeds_cannot_do_is_refused_in_one_line(overrides, reason, allowed):
    message = _refusal([*overrides, "search.pack_seeds=2"])
    assert message == f"--set search.pack_seeds=2: {reason}; got 2; allowed: {allowed}"


def test_a_pack_past_the_bound_is_refused():
    assert _refusal(["search.pack_seeds=65"]) == ("--set search.pack_seeds=65: out of range; got 65; "
                                                  "allowed: an integer in [1, 64]")


def test_the_command_line_gives_the_line_and_exit_status_2(tmp_path, capsys):
    result = call_main(run.main, [str(SMOKE), "--out", str(tmp_path / "run"), "--set", "search.pack_seeds=3"],
                       capsys)
    assert "search.pack_seeds=3: more than the 2 seed(s) each point trains" in result.bad_input_line()
    assert not (tmp_path / "run").exists()


def test_a_packed_trial_holds_the_memory_of_its_seeds_and_the_grid_check_counts_it():
    alone = load_study(SMOKE, ["search.seeds=[0, 1, 2, 3]", "train.batch_size=16384"])
    point = grid_points(alone)[0]
    train = resolve(alone, {"point": point.label, "seed": 0}).train
    one = alone.training_memory(point.spec, train)
    assert one.total < 12 * GiB  # a trial alone fits its 12 GiB (24 GiB over 2 trials at once)
    message = _refusal(["search.seeds=[0, 1, 2, 3]", "train.batch_size=16384", "search.pack_seeds=4"])
    assert "space: the grid point 'shortcut=A', 4 seeds packed (search.pack_seeds), needs about" in message
    assert "allowed: fewer packed seeds (search.pack_seeds), a narrower" in message
    packed = load_study(SMOKE, ["search.seeds=[0, 1, 2, 3]", "train.batch_size=1024", "search.pack_seeds=4"])
    four = packed.training_memory(point.spec, train)
    assert (four.weights, four.gradients, four.optimizer_state, four.activations) == (
        4 * one.weights, 4 * one.gradients, 4 * one.optimizer_state, 4 * one.activations)


def test_the_dry_run_says_how_the_trials_are_packed():
    study = load_study(SMOKE, ["search.seeds=[0, 1, 2]", "search.pack_seeds=2"])
    assert ("packed seeds: up to 2 seeds of a point trained as one model per trial (search.pack_seeds): 6 trials in "
            "4 Ray trials, each seed its own row; memory per trial counts 2 seeds") in dry_run_report(study)
    assert "packed seeds" not in dry_run_report(load_study(SMOKE))
