"""The report as a person sees it: rendered by headless Chromium (Debian's, driven by Playwright).

No browser is downloaded: Playwright launches /usr/bin/chromium. Without it the
test skips with the reason, except under CI (env var CI set), where it fails.
The page must load with no console error and no network request, every image
must decode, and the numbers it shows must equal those recomputed here from
the parquet tables. A full-page screenshot is left in the temp folder to look at.
"""

from __future__ import annotations

import tempfile
from pathlib import Path

import pandas as pd
import pytest
from scipy import stats

from browser import VIEWPORT, render, require_chromium
import runfolder
from reports import build_report
from reports._load import level_label

SCREENSHOT = Path(tempfile.gettempdir()) / "resnas_report_browser.png"


@pytest.fixture(scope="module")
def rendered(grid_run):
    require_chromium()
    report = build_report(grid_run)
    return report, render(report, screenshot=SCREENSHOT)


def test_page_loads_without_console_errors(rendered):
    _, seen = rendered
    assert seen["errors"] == []


def test_page_makes_no_network_request(rendered):
    report, seen = rendered
    # The page itself is the only request; data: URIs are not fetched from anywhere.
    others = [url for url in seen["requests"] if url != report.as_uri() and not url.startswith("data:")]
    assert others == []


def test_every_image_has_loaded(rendered):
    _, seen = rendered
    assert len(seen["images"]) >= 6
    assert all(complete and width > 0 and height > 0 for complete, width, height in seen["images"]), seen["images"]


def test_page_fits_1280_pixels(rendered):
    _, seen = rendered
    assert seen["scroll_width"] <= VIEWPORT["width"]  # no horizontal scrolling at 1280 px


def _percent(fraction: float) -> str:
    return f"{fraction * 100:.2f}"


def test_key_numbers_equal_those_computed_from_the_parquet(rendered, grid_run):
    _, seen = rendered
    keyed = seen["keyed"]
    results = pd.read_parquet(grid_run / "results.parquet")

    counts = results["status"].value_counts()
    for status in ("complete", "failed", "pruned"):
        assert keyed[f"counts.{status}"] == str(counts.get(status, 0))
    assert keyed["counts.total"] == str(len(results))

    scored = results[results["status"] == "complete"]
    for factor, reference in (("shortcut", "A"), ("depth", "20")):
        for metric in ("test_acc", "val_acc_best"):
            values = scored[scored[metric].notna()]
            groups = {level_label(level): group[metric].to_numpy() for level, group in values.groupby(f"factor.{factor}")}
            for level, accuracies in groups.items():
                key = f"ablation.{factor}.{level}.{metric}"
                assert keyed[f"{key}.n"] == str(len(accuracies))
                assert keyed[f"{key}.mean"] == _percent(accuracies.mean())
                assert keyed[f"{key}.std"] == _percent(accuracies.std(ddof=1))
                assert float(keyed[f"{key}.ci_low"]) <= float(keyed[f"{key}.mean"]) <= float(keyed[f"{key}.ci_high"])
                if level == reference:
                    continue
                diff = accuracies.mean() - groups[reference].mean()
                p_value = stats.ttest_ind(accuracies, groups[reference], equal_var=False).pvalue
                assert keyed[f"{key}.diff"] == f"{diff * 100:+.2f}"
                assert keyed[f"{key}.p_value"] == f"{p_value:.3g}"
                low, high = float(keyed[f"{key}.diff_ci_low"]), float(keyed[f"{key}.diff_ci_high"])
                expected = "within noise" if low <= 0 <= high else "higher" if diff > 0 else "lower"
                # The page rounds the CI to 2 decimals; only check the verdict when rounding cannot flip it.
                if min(abs(low), abs(high)) > 0.01:
                    assert keyed[f"{key}.verdict"] == expected

    ranked = runfolder.ranked_frame(scored)
    for rank, row in enumerate(ranked.head(5).itertuples()):
        assert keyed[f"top.{rank}.trial_id"] == row.trial_id
        assert keyed[f"top.{rank}.val_acc_best"] == _percent(row.val_acc_best)
        assert keyed[f"top.{rank}.test_acc"] == _percent(row.test_acc)

    retrain = pd.read_parquet(grid_run / "retrain.parquet")
    for arch_key, group in retrain.groupby("arch_key"):
        assert keyed[f"retrained.{arch_key}.test_acc.mean"] == _percent(group["test_acc"].mean())
        assert keyed[f"retrained.{arch_key}.test_acc.n"] == str(len(group))

    complete = scored[scored["test_acc"].notna() & (scored["macs"] > 0)]
    front_size = sum(1 for _, row in complete.iterrows()
                     if not ((complete["macs"] <= row["macs"]) & (complete["test_acc"] >= row["test_acc"])
                             & ((complete["macs"] < row["macs"]) | (complete["test_acc"] > row["test_acc"]))).any())
    assert keyed["pareto.macs.n"] == str(front_size)


def test_screenshot_is_kept_out_of_the_repository(rendered):
    assert SCREENSHOT.exists() and SCREENSHOT.stat().st_size > 0
    assert Path(__file__).resolve().parents[2] not in SCREENSHOT.resolve().parents
