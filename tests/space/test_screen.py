"""`search.screen` in a study file: its defaults, its rules (one line each), the schema and the dry run."""

from __future__ import annotations

import copy

import pytest
import yaml

import space
from commands import SMOKE
from screens import PROXY_NAMES

SMOKE_RAW = yaml.safe_load(SMOKE.read_text())


def _with_screen(screen: object, strategy: str = "optuna") -> dict:
    raw = copy.deepcopy(SMOKE_RAW)
    raw["search"] = {**raw["search"], "strategy": strategy, "screen": screen}
    if strategy == "optuna":
        raw["search"]["trials"] = 4
    return raw


def test_a_screen_names_its_proxy_and_keeps_a_quarter_of_one_batch_by_default():
    study = space.study_from_dict(_with_screen({"proxy": "synflow"}))
    assert (study.search.screen.proxy, study.search.screen.keep, study.search.screen.batches) == ("synflow", 0.25, 1)
    assert space.study_from_dict(copy.deepcopy(SMOKE_RAW)).search.screen is None


@pytest.mark.parametrize("screen, message", [
    ({"proxy": "fisher"}, "search.screen.proxy: not an allowed value; got 'fisher'; allowed: 'synflow', 'jacob_cov', "
                          "'grad_norm', 'snip', 'params', 'macs' or 'vote'"),
    ({"proxy": "snip", "keep": 0}, "search.screen.keep: out of range; got 0; allowed: a number in (0, 1]"),
    ({"proxy": "snip", "keep": 1.5}, "search.screen.keep: out of range; got 1.5; allowed: a number in (0, 1]"),
    ({"proxy": "snip", "batches": 0}, "search.screen.batches: out of range; got 0; allowed: an integer in [1, 64]"),
    ({"keep": 0.5}, "search.screen.proxy: missing"),
    ({"proxy": "snip", "top": 3}, "search.screen.top"),
])
def test_a_bad_screen_is_one_line_naming_the_field(screen, message):
    with pytest.raises(space.StudyError) as caught:
        space.study_from_dict(_with_screen(screen))
    assert message in str(caught.value) and len(str(caught.value).splitlines()) == 1


def test_keep_one_trains_every_sample():
    assert space.study_from_dict(_with_screen({"proxy": "vote", "keep": 1})).search.screen.keep == 1


def test_a_grid_has_no_samples_to_screen():
    with pytest.raises(space.StudyError) as caught:
        space.study_from_dict(_with_screen({"proxy": "synflow"}, strategy="grid"))
    assert str(caught.value) == (
        "<dict>: search.screen: a screen chooses among samples, and a grid samples none (it trains every point); "
        "got {'proxy': 'synflow'}; allowed: leave screen out, or set strategy: optuna (sampler tpe, random, ...)")


def test_the_schema_allows_the_proxies_of_the_registry():
    schema = space.study_json_schema()
    assert schema["$defs"]["Screen"]["properties"]["proxy"]["enum"] == list(PROXY_NAMES)
    assert schema["$defs"]["Screen"]["required"] == ["proxy"]


def test_the_dry_run_says_what_the_screen_scores_and_keeps():
    report = space.dry_run_report(space.study_from_dict(_with_screen({"proxy": "vote", "keep": 0.3, "batches": 2})))
    assert ("screen: vote at initialisation on 2 batches of 64 training images; the best of 4 samples trains "
            "(keep 0.3): 16 samples scored for 4 trials") in report.splitlines()
