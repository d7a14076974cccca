"""search.pack_seeds in the driver, without Ray: how the searcher forms packs, tells Optuna, and resumes them.

The searcher is built as the runner builds it (`SampledPlans` of a real study,
`ScreeningOptunaSearch`), and asked for trials as Ray Tune asks: `suggest`,
then `on_trial_result` per epoch and `on_trial_complete` with the reports a
packed trial sends (`search._trial.pack_report`).
"""

from __future__ import annotations

import math
from collections import Counter

import optuna
import pytest
from optuna.trial import TrialState

import space
from commands import SMOKE
from search._plans import SampledPlans
from search._searcher import ScreeningOptunaSearch, prepare_resume
from search._seed_packs import PackingGridSampler
from search._trial import PACK, PLAN, TRIAL_NUMBER, describe_trial, objective_metric, pack_members, pack_report

METRIC = objective_metric("val_acc")


def _study(seeds: int, pack: int) -> space.Study:
    return space.load_study(SMOKE, [f"search.seeds={list(range(seeds))}", f"search.pack_seeds={pack}"])


def _searcher(study: space.Study, storage: optuna.storages.BaseStorage, budget: int,
              reuse=None) -> ScreeningOptunaSearch:
    optuna.logging.set_verbosity(optuna.logging.WARNING)
    plans = SampledPlans(study)
    return ScreeningOptunaSearch(space=plans.define_by_run(), metric=METRIC, mode="max", sampler=plans.sampler(0),
                                 storage=storage, study_name=study.name, screen=plans.screen,
                                 on_rejected=lambda *args: None, objective_metrics=[METRIC], budget=budget,
                                 reuse=reuse, pack_seeds=plans.pack_seeds)


def _suggest_all(searcher: ScreeningOptunaSearch, prefix: str = "tune") -> dict[str, dict]:
    configs = {}
    while True:
        config = searcher.suggest(f"{prefix}{len(configs)}")
        if not isinstance(config, dict):
            return configs
        configs[f"{prefix}{len(configs)}"] = config


def _point_seed(member: dict) -> tuple[str, int]:
    return member["params"]["point"], member["plan"]["train"]["seed"]


def _final(member: dict, epochs: int = 2) -> dict:
    """A seed's final report as run_trial makes it, with made-up accuracy that names the seed."""
    val = 0.1 + member["plan"]["train"]["seed"] / 100
    return {"epoch": epochs, "train_loss": 1.0, "val_acc": val, "final": True, "status": "complete",
            "val_acc_best": val, "curve": [round(val - 0.05, 5), round(val, 5)], METRIC: val}


@pytest.mark.parametrize("seeds, pack", [(5, 2), (5, 3), (4, 4)])
def test_each_pack_is_one_grid_point_and_the_packs_cover_the_grid_once(seeds, pack):
    study = _study(seeds, pack)
    searcher = _searcher(study, optuna.storages.InMemoryStorage(), budget=study.search.trials)
    assert isinstance(searcher._sampler, PackingGridSampler)
    configs = _suggest_all(searcher)
    packs = [pack_members(config) for config in configs.values()]
    trained = [_point_seed(member) for members in packs for member in members]
    assert sorted(trained) == sorted((point.label, seed) for point in space.grid_points(study)
                                     for seed in range(seeds))
    for members in packs:
        assert len({member["params"]["point"] for member in members}) == 1
        assert 1 <= len(members) <= pack
    # Each point's seeds go in as few packs as K allows: full packs, then the rest.
    sizes = Counter(members[0]["params"]["point"] for members in packs)
    assert set(sizes.values()) == {math.ceil(seeds / pack)}
    # The trial's own number and plan are its first member's; a lone seed travels without PACK.
    for config in configs.values():
        members = pack_members(config)
        assert (members[0]["number"], members[0]["plan"]) == (config[TRIAL_NUMBER], config[PLAN])
        assert (PACK in config) == (len(members) > 1)


def test_unpacked_study_samples_as_before():
    study = _study(3, 1)
    searcher = _searcher(study, optuna.storages.InMemoryStorage(), budget=study.search.trials)
    assert not isinstance(searcher._sampler, PackingGridSampler)
    assert not any(PACK in config for config in _suggest_all(searcher).values())


def test_each_packed_seed_is_told_to_optuna_from_its_own_report():
    study = _study(3, 3)
    storage = optuna.storages.InMemoryStorage()
    searcher = _searcher(study, storage, budget=study.search.trials)
    configs = _suggest_all(searcher)
    tune_id, config = next((tune_id, config) for tune_id, config in configs.items() if PACK in config)
    members = pack_members(config)
    assert len(members) == 3
    # An epoch of the pack (the first seed diverged: no report), then the final reports; the third fails.
    searcher.on_trial_result(tune_id, pack_report([None, {"epoch": 1, "val_acc": 0.33}, {"epoch": 1, "val_acc": 0.2}],
                                                  epoch=1, final=False))
    finals = [_final(member) for member in members]
    finals[2] = {**finals[2], "status": "failed", "error": "diverged"}
    searcher.on_trial_complete(tune_id, pack_report(finals, final=True))
    trials = {t.number: t for t in optuna.load_study(study_name=study.name, storage=storage).get_trials()}
    first, second, third = (trials[member["number"]] for member in members)
    assert (first.state, first.value) == (TrialState.COMPLETE, finals[0]["val_acc_best"])
    assert first.intermediate_values == {1: finals[0]["curve"][0], 2: finals[0]["val_acc"]}
    assert (second.state, second.value) == (TrialState.COMPLETE, finals[1]["val_acc_best"])
    assert second.intermediate_values == {1: 0.33, 2: finals[1]["val_acc"]}  # the epoch as reported, exact
    assert third.state == TrialState.FAIL
    # A packed trial whose worker died: each of its seeds failed.
    other_id = next(other for other in configs if other != tune_id)
    searcher.on_trial_complete(other_id, None, error=True)
    numbers = {member["number"] for member in pack_members(configs[other_id])}
    states = [t.state for t in optuna.load_study(study_name=study.name, storage=storage).get_trials()
              if t.number in numbers]
    assert states == [TrialState.FAIL] * 3


def test_a_resume_packs_an_interrupted_pack_again_and_runs_every_trial_once():
    study = _study(4, 2)
    storage = optuna.storages.InMemoryStorage()
    searcher = _searcher(study, storage, budget=study.search.trials)
    first, second = searcher.suggest("tune0"), searcher.suggest("tune1")
    searcher.on_trial_complete("tune0", pack_report([_final(m) for m in pack_members(first)], final=True))
    # The driver is killed while the second pack trains: its trials stay RUNNING in the storage.
    optuna_study = optuna.load_study(study_name=study.name, storage=storage)
    interrupted = prepare_resume(optuna_study)
    assert sorted(interrupted) == sorted(m["number"] for m in pack_members(second))

    resumed = _searcher(study, storage, budget=study.search.trials - 2)
    configs = _suggest_all(resumed, prefix="again")
    packs = [pack_members(config) for config in configs.values()]
    # The interrupted pack comes first, whole: the same point and seeds, new trial numbers.
    assert sorted(_point_seed(m) for m in packs[0]) == sorted(_point_seed(m) for m in pack_members(second))
    for tune_id, config in configs.items():
        resumed.on_trial_complete(tune_id, pack_report([_final(m) for m in pack_members(config)], final=True))
    complete = optuna_study.get_trials(states=(TrialState.COMPLETE,))
    points = [(t.params["point"], t.params["seed"]) for t in complete]
    assert len(points) == len(set(points)) == study.search.trials


def test_a_partner_that_an_earlier_run_trained_is_recorded_from_there_and_leaves_the_pack():
    study = _study(3, 3)
    storage = optuna.storages.InMemoryStorage()
    taken = []

    def reuse(number, params, plan):  # seed 1 of every point was trained before
        if plan["train"]["seed"] != 1:
            return None
        taken.append((params["point"], number))
        from search._searcher import Reused
        return Reused([0.5], {"status": "complete", "val_acc_best": 0.5, "curve": [0.5]})

    configs = _suggest_all(_searcher(study, storage, budget=study.search.trials, reuse=reuse))
    packs = [pack_members(config) for config in configs.values()]
    assert sorted(seed for members in packs for _, seed in map(_point_seed, members)) == [0, 0, 2, 2]
    assert all(len(members) == 2 for members in packs) and len(taken) == 2
    reused = [t for t in optuna.load_study(study_name=study.name, storage=storage).get_trials()
              if t.state == TrialState.COMPLETE]
    assert sorted(t.params["seed"] for t in reused) == [1, 1]


def test_a_packed_trial_names_every_seed_it_trains():
    study = _study(3, 2)
    configs = _suggest_all(_searcher(study, optuna.storages.InMemoryStorage(), budget=study.search.trials))
    config = next(config for config in configs.values() if PACK in config)
    members = pack_members(config)
    point = members[0]["params"]["point"]
    seeds = ",".join(str(m["plan"]["train"]["seed"]) for m in members)
    ids = ",".join(f"trial_{m['number']:04d}" for m in members)
    assert describe_trial(config) == f"{ids} {point} seeds={seeds}"
    lone = next(config for config in configs.values() if PACK not in config)
    assert describe_trial(lone).endswith(f"seed={lone[PLAN]['train']['seed']}")


def test_a_pack_report_averages_what_every_seed_reports_for_tune_and_keeps_each():
    report = pack_report([{"val_acc": 0.5, "epoch": 2, "status": "complete"}, None,
                          {"val_acc": 0.25, "epoch": 2, "status": "failed", "error": "x"}], final=True)
    assert report["val_acc"] == pytest.approx(0.375) and report["epoch"] == 2 and report["final"] is True
    assert "status" not in report and "error" not in report  # text is each seed's own
    assert report[PACK][1] is None and report[PACK][2]["error"] == "x"
