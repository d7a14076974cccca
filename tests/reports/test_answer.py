"""The plain-text answer that search.run prints agrees with the report's tables."""

from __future__ import annotations

import numpy as np

import reports
import synthetic_run as synthetic


def _crossed_run(root, match=None):
    trials = synthetic.grid_trials({"shortcut": ["A", "none"], "depth": [20, 56]}, range(5))
    results, curves = synthetic.build_results(trials, epochs=2, seed=4)
    # A planted degradation: no shortcut loses 10 points at depth 56 only.
    planted = (results["factor.shortcut"] == "none") & (results["factor.depth"] == 56)
    results.loc[planted, "test_acc"] -= 0.10
    if match is not None:
        results["match.gap"] = np.where(results["factor.shortcut"] == "none", match, 0.0)
    factors = {"shortcut": {"levels": ["A", "none"], "reference": "A"}, "depth": {"levels": [20, 56], "reference": 20}}
    info = synthetic.run_info("answer", factors, trials=len(trials), seeds=list(range(5)))
    if match is not None:
        info["match_complexity"] = {"by": "macs", "adjust": "width_multiplier", "tolerance": 0.01, "to": None}
    return synthetic.write_run(root / "answer", results, info, curves)


def test_answer_lines_repeat_the_simple_effects(tmp_path):
    run_dir = _crossed_run(tmp_path)
    lines = reports.answer_lines(run_dir)
    simple = reports.factorial_tables(reports.load_run(run_dir)).simple_effects
    simple = simple[simple["metric"] == "test_acc"]
    assert lines[0].startswith("simple effects on test accuracy")
    for row in simple.itertuples():
        line = next(text for text in lines if f"{row.factor}={row.level} vs {row.reference} at {row.within}" in text)
        assert line.endswith(f": {row.verdict}")
    degraded = next(text for text in lines if "shortcut=none vs A at depth=56" in text)
    assert degraded.endswith(": lower")
    assert next(text for text in lines if "shortcut=none vs A at depth=20" in text).endswith(": within noise")


def test_answer_says_what_was_matched_and_how_closely(tmp_path):
    lines = reports.answer_lines(_crossed_run(tmp_path, match=0.0065))
    assert lines[0].startswith("Matched complexity: macs within 1.00% of the same point")
    assert "largest gap +0.65% (shortcut=none" in lines[0] and "miss the tolerance" not in lines[0]
    lines = reports.answer_lines(_crossed_run(tmp_path / "over", match=0.02))
    assert "trial(s) miss the tolerance" in lines[0]


def test_a_comparison_too_small_to_test_names_no_test():
    """Too few trials: no test ran, and the line says so without an empty ", ," where the test's name goes."""
    from types import SimpleNamespace

    from reports._answer import _line

    row = SimpleNamespace(factor="shortcut", level="B", diff=0.0, diff_ci_low=float("nan"),
                          diff_ci_high=float("nan"), test="", p_adjusted=float("nan"), verdict="n too small")
    assert _line(row, "A", "") == "  shortcut=B vs A: +0.0 pp [n/a, n/a], Holm p = n/a: n too small"
    tested = SimpleNamespace(**{**vars(row), "test": "paired t", "p_adjusted": 0.5, "verdict": "within noise"})
    assert _line(tested, "A", "").endswith("[n/a, n/a], paired t, Holm p = 0.5: within noise")
