"""The report while a study runs: when the runner rebuilds it, what the live page says, and that it reloads itself.

The schedule is tested with a fake clock and a build that blocks until the
test lets it go; the page with the report's own builder on a synthetic run
folder; its reload in headless Chromium; and the session's real smoke run
(tests/conftest.py), whose report.html was watched as it ran, said "in
progress" while the study ran and does not at the end.
"""

from __future__ import annotations

import io
import re
import threading
import time
from pathlib import Path

import pytest

from browser import CHROMIUM, LAUNCH_ARGS, require_chromium
from commands import SmokeRun
import synthetic_run as synthetic
from reports import build_report
from search._live_report import MIN_REFRESH_S, LiveReport, refresh_seconds

FACTORS = {"shortcut": {"levels": ["A", "B"], "reference": "A"}}


class FakeClock:
    def __init__(self) -> None:
        self.now = 1000.0

    def __call__(self) -> float:
        return self.now


class GatedBuild:
    """A build that counts its calls and, when gated, waits until the test opens the gate."""

    def __init__(self, gated: bool = False) -> None:
        self.calls = 0
        self.started = threading.Event()
        self.gate = threading.Event()
        if not gated:
            self.gate.set()

    def __call__(self) -> None:
        self.calls += 1
        self.started.set()
        assert self.gate.wait(10)


def _live(build, clock, every_s=30.0) -> LiveReport:
    return LiveReport(Path("unused"), every_s, out=io.StringIO(), build=build, clock=clock)


def _settle(live: LiveReport) -> None:
    """Wait for the background build (and any build queued behind it) to end."""
    for _ in range(200):
        thread = live._thread
        if thread is None or not thread.is_alive():
            return
        thread.join(0.05)


def test_the_first_trial_builds_then_at_most_once_per_interval():
    build, clock = GatedBuild(), FakeClock()
    live = _live(build, clock)
    live.trial({}, [])
    _settle(live)
    assert build.calls == 1  # the first finished trial always builds
    clock.now += 29.0
    live.trial({}, [])
    _settle(live)
    assert build.calls == 1  # not yet due
    clock.now += 1.0
    live.trial({}, [])
    _settle(live)
    assert build.calls == 2
    live.close()
    assert live.builds == 2


def test_trials_during_a_build_coalesce_into_one_more_build():
    build, clock = GatedBuild(gated=True), FakeClock()
    live = _live(build, clock, every_s=0.0)
    live.trial({}, [])
    assert build.started.wait(10)
    # Due, but a build runs and stays blocked until the gate opens: had a trial waited for it, this loop would
    # never end (pytest-timeout would fail the test), so no clock is needed to show that none waits.
    for _ in range(5):
        live.trial({}, [])
    assert not build.gate.is_set() and build.calls == 1
    build.gate.set()
    _settle(live)
    live.close()
    assert build.calls == 2


def test_close_waits_for_the_build_in_flight_and_stops_further_builds():
    build, clock = GatedBuild(gated=True), FakeClock()
    live = _live(build, clock, every_s=0.0)
    live.trial({}, [])
    assert build.started.wait(10)
    live.trial({}, [])  # flagged: dropped by close
    threading.Timer(0.3, build.gate.set).start()
    live.close()
    assert not live._thread.is_alive() and build.calls == 1
    live.trial({}, [])
    assert build.calls == 1


def test_a_failing_build_is_one_line_and_the_study_goes_on():
    out, clock = io.StringIO(), FakeClock()

    def broken() -> None:
        raise RuntimeError("disk full")

    live = LiveReport(Path("unused"), 0.0, out=out, build=broken, clock=clock)
    live.trial({}, [])
    _settle(live)
    live.trial({}, [])
    _settle(live)
    live.close()
    assert out.getvalue().count("live report failed (RuntimeError: disk full)") == 1
    assert live.failures == 2 and "2 failed" in live.summary()


def test_the_page_reloads_no_faster_than_a_person_reads():
    assert refresh_seconds(30) == 30 and refresh_seconds(0) == MIN_REFRESH_S


# ---------------------------------------------------------------- the live page


@pytest.fixture(scope="module")
def running_run(tmp_path_factory) -> Path:
    """A run folder as the runner leaves it mid-study: 3 of 8 trials recorded, run.json not finished."""
    trials = synthetic.grid_trials({"shortcut": ["A", "B"]}, [0, 1, 2, 3])[:3]
    results, curves = synthetic.build_results(trials, epochs=2)
    info = synthetic.run_info("smoke", FACTORS, trials=8, seeds=[0, 1, 2, 3], finished=False)
    return synthetic.write_run(tmp_path_factory.mktemp("live") / "smoke", results, info, curves)


def test_the_live_page_says_in_progress_and_reloads_itself(running_run):
    page = build_report(running_run, live_refresh_s=30).read_text()
    assert '<meta http-equiv="refresh" content="30">' in page
    assert 'data-key="live.finished" data-value="3"' in page and 'data-key="live.total" data-value="8"' in page
    assert "IN PROGRESS" in page
    assert "The study has not finished" not in page  # the live banner says it instead


def test_the_final_page_has_neither_banner_nor_refresh(running_run, tmp_path):
    page = build_report(running_run).read_text()
    assert "http-equiv=\"refresh\"" not in page and "IN PROGRESS" not in page
    assert "The study has not finished" in page  # an interrupted run still says so


def test_the_live_page_reloads_in_chromium_under_its_content_security_policy(running_run, tmp_path):
    require_chromium()
    from playwright.sync_api import sync_playwright

    page_path = tmp_path / "report.html"
    # The report's own page, at a one-second refresh so the test sees reloads.
    page_path.write_text(build_report(running_run, live_refresh_s=1).read_text())
    loads, errors = [], []
    with sync_playwright() as playwright:
        browser = playwright.chromium.launch(executable_path=str(CHROMIUM), args=LAUNCH_ARGS)
        try:
            page = browser.new_page()
            page.on("load", lambda: loads.append(time.monotonic()))
            page.on("console", lambda message: errors.append(message.text) if message.type == "error" else None)
            page.goto(page_path.as_uri(), wait_until="load")
            deadline = time.monotonic() + 15
            while len(loads) < 3 and time.monotonic() < deadline:
                page.wait_for_timeout(200)
            banner = page.inner_text("[data-testid=live-banner]")
        finally:
            browser.close()
    assert len(loads) >= 3, loads  # loaded, then reloaded by its meta refresh
    assert errors == []  # the Content-Security-Policy allows the reload and blocks nothing the page needs
    assert banner.startswith("IN PROGRESS: 3 of 8 trials finished")


# ---------------------------------------------------------------- a real study


@pytest.mark.slow
def test_a_real_study_shows_progress_live_and_a_final_page_at_the_end(smoke_run: SmokeRun):
    """The session's real run (tests/conftest.py) was watched as it ran: its report.html said "in progress"
    after the first trial finished, and says so no more at the end."""
    output, report = smoke_run.stdout, smoke_run.run_dir / "report.html"
    assert smoke_run.live_pages, output  # the page existed and said "in progress" while the study ran
    first = smoke_run.live_pages[0]
    assert '<meta http-equiv="refresh"' in first
    banner = re.sub(r"<[^>]+>", "", first.split('data-testid="live-banner">', 1)[1].split("</div>", 1)[0])
    assert re.match(r"IN PROGRESS: [1-3] of 4 trials finished", banner), banner
    final = report.read_text()
    assert "IN PROGRESS" not in final and 'http-equiv="refresh"' not in final
    lines = output.splitlines()
    first_trial = next(i for i, line in enumerate(lines) if "trial_0000" in line or "/4 done" in line)
    assert any(line.startswith(f"report: {report}") for line in lines[:first_trial]), output  # the path, at the start
    assert any(line.startswith("live report: ") for line in lines)
