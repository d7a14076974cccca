"""search._ray.quiet_tune_failures: a failed trial is the recorder's one line, not Tune's traceback as well.

A trial whose worker died (kill -9, the kernel's OOM killer) printed a 30-line
traceback from Tune's controller and a "Trials did not complete" line between
the progress lines; the recorder already reports it in one line, and Tune keeps
the traceback in the trial's folder (error.txt).
"""

from __future__ import annotations

import logging

import pytest

from search._ray import TUNE_FAILURE_LOGGERS, quiet_tune_failures


@pytest.mark.parametrize("name", TUNE_FAILURE_LOGGERS)
def test_tunes_failure_reports_are_silent_inside_and_restored_after(name: str, caplog) -> None:
    logger = logging.getLogger(name)
    before = logger.level
    caplog.set_level(logging.DEBUG)
    with quiet_tune_failures():
        logger.error("Trial task failed for trial trial_0000")
    assert caplog.records == []
    assert logger.level == before
    logger.error("after the block")
    assert [record.getMessage() for record in caplog.records] == ["after the block"]


def test_the_loggers_are_tunes_own() -> None:
    """The names are those of the modules that log the failure (a rename in Ray would silently un-quiet them)."""
    from ray.tune import tune
    from ray.tune.execution import tune_controller

    assert {tune_controller.logger.name, tune.logger.name} == set(TUNE_FAILURE_LOGGERS)
