"""`search.results_every_s`: how often the tables are rewritten while a study runs."""

from __future__ import annotations

import math

import pytest

from space import StudyError, load_study, study_from_dict


def _search(minimal_study_dict, **search):
    return study_from_dict({**minimal_study_dict, "search": search}).search


def test_the_tables_are_rewritten_every_minute_unless_the_study_says_otherwise(minimal_study_dict):
    assert _search(minimal_study_dict).results_every_s == 60.0
    assert _search(minimal_study_dict, results_every_s=5).results_every_s == 5
    assert _search(minimal_study_dict, results_every_s=0.5).results_every_s == 0.5


@pytest.mark.parametrize("given", [0, 0.0, -1, math.nan, "60", True])
def test_a_period_must_be_a_positive_number(minimal_study_dict, given):
    with pytest.raises(StudyError) as caught:
        _search(minimal_study_dict, results_every_s=given)
    message = str(caught.value)
    assert "search.results_every_s" in message
    if isinstance(given, (int, float)) and not isinstance(given, bool) and not math.isnan(given):
        assert "a number > 0" in message


def test_the_error_names_the_file_and_line(write_study, minimal_study):
    path = write_study(minimal_study + "search:\n  results_every_s: -5\n")
    with pytest.raises(StudyError, match=r"study\.yaml:\d+: search\.results_every_s: .*got -5.*allowed: a number > 0"):
        load_study(path)


def test_a_command_line_override_sets_it(write_study, minimal_study):
    path = write_study(minimal_study)
    assert load_study(path, ["search.results_every_s=10"]).search.results_every_s == 10
