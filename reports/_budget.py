"""Time budgets of the report's long computations: a deadline on the monotonic clock, checked between units of work.

The power analysis, the ANOVA and simple effects, the bootstrap CIs and the
importances each get `DEFAULT_SECTION_BUDGET_S` (`reports.build
--section-budget-s`). Each unit of their work is bounded by construction (a
seed count is a closed-form bracket and a bisection; a bootstrap is chunks of
resamples), so checking the deadline between units bounds the whole: a
computation past its budget stops at the next check, its section says so in
the page, and the report goes on. No worker thread: Python cannot stop one, so
a timed-out thread would keep the CPU (and the driver's run.lock) while the
page claimed the work had stopped.
"""

from __future__ import annotations

import time
from dataclasses import dataclass, field
from typing import Callable

# Seconds each budgeted computation of a report may take: far above what a study of thousands of trials needs
# (a second or two), and short enough that a live report never holds the driver for minutes.
DEFAULT_SECTION_BUDGET_S = 20.0


class OverBudget(Exception):
    """A computation ran past its time budget."""


@dataclass
class SectionBudget:
    """A deadline `seconds` after creation on a monotonic clock; `check()` raises OverBudget once it has passed."""

    name: str
    seconds: float
    clock: Callable[[], float] = time.monotonic
    started: float = field(init=False)

    def __post_init__(self) -> None:
        self.started = self.clock()

    def elapsed(self) -> float:
        """Seconds since the budget started."""
        return self.clock() - self.started

    def check(self) -> None:
        """Raise OverBudget when the budget is spent (a budget of 0 is spent at the first check)."""
        if self.elapsed() >= self.seconds:
            raise OverBudget(self.message())

    def message(self) -> str:
        """What the page says in place of the computation."""
        return (f"The {self.name} ran past its time budget of {self.seconds:g} s and was stopped, so it is left out "
                f"of this page and of its CSV; the rest of the report is complete. Build the report again with a "
                f"larger budget (python -m reports.build RUN --section-budget-s SECONDS) to see it.")


def check(budget: SectionBudget | None) -> None:
    """`budget.check()`, for code that runs with or without a budget."""
    if budget is not None:
        budget.check()
