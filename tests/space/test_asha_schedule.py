"""`search.asha.schedule` and `search.asha.promotion`: their defaults, the JSON Schema, and their refusals."""

from __future__ import annotations

import jsonschema
import pytest

import runfolder
import space
from commands import SMOKE, call_main
from search import run
from space import StudyError, load_study

ASHA = ["search.scheduler=asha", "train.epochs=4"]


def test_the_defaults_are_runfolders_and_a_budget_true_restart_loads():
    asha = load_study(SMOKE, ASHA).search.asha
    assert (asha.schedule, asha.promotion) == (runfolder.DEFAULT_ASHA_SCHEDULE, runfolder.DEFAULT_ASHA_PROMOTION)
    asha = load_study(SMOKE, [*ASHA, "search.asha={schedule: budget_true, promotion: restart}"]).search.asha
    assert (asha.schedule, asha.promotion) == ("budget_true", "restart")


def test_the_json_schema_allows_exactly_the_named_schedules_and_promotions():
    validator = jsonschema.Draft202012Validator(space.study_json_schema())
    study = {"name": "t", "question": "q", "space": {"base": "cifar_resnet20"}, "train": {"epochs": 4},
             "search": {"scheduler": "asha", "asha": {"schedule": "budget_true", "promotion": "restart"}}}
    assert validator.is_valid(study)
    for field in ("schedule", "promotion"):
        assert not validator.is_valid({**study, "search": {"scheduler": "asha", "asha": {field: "sometimes"}}})
    asha = space.study_json_schema()["$defs"]["Asha"]["properties"]
    assert asha["schedule"]["enum"] == list(runfolder.ASHA_SCHEDULES)
    assert asha["promotion"]["enum"] == list(runfolder.ASHA_PROMOTIONS)


@pytest.mark.parametrize("override, message", [
    ("search.asha={schedule: budget}",
     "search.asha.schedule: not an allowed value; got 'budget'; allowed: 'truncated' or 'budget_true'"),
    ("search.asha={promotion: again}",
     "search.asha.promotion: not an allowed value; got 'again'; allowed: 'continue' or 'restart'"),
    ("search.asha={promotion: restart}",
     "search.asha.promotion: restart trains each rung on a schedule of its own, which only schedule budget_true "
     "has; got 'restart'; allowed: promotion: continue, or schedule: budget_true"),
], ids=["schedule", "promotion", "restart-truncated"])
def test_a_bad_schedule_or_promotion_is_one_located_line_and_exit_2(capsys, override, message):
    with pytest.raises(StudyError) as caught:
        load_study(SMOKE, [*ASHA, override])
    assert len(caught.value.problems) == 1 and message in str(caught.value)
    flags = [part for setting in [*ASHA, override] for part in ("--set", setting)]
    line = call_main(run.main, [str(SMOKE), "--dry-run", *flags], capsys).bad_input_line()
    assert line.startswith(f"error: --set {override}: ") and message in line
