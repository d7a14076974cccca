"""report.primary: the study's own question answered first, in the driver's last lines and the report's first block.

The run folders are synthetic (tests/synthetic_run.py) with planted, fixed differences, so the estimate, the seeds
that would resolve the target effect and what they cost can be checked against statsmodels and reports._power's
closed form.
"""

from __future__ import annotations

import math
import shlex
import shutil
from pathlib import Path

import numpy as np
import pytest
import yaml

import reports
import runfolder
import synthetic_run as synthetic
from reports import _power
from reports._header import header
from reports._primary import command_lines, primary_answers
from space import load_study

QUESTION = "Does projection shortcut B beat zero-padding A at equal FLOPs?"
SEEDS = list(range(5))
B_VS_A = {"factor": "shortcut", "level": "B", "reference": "A"}
# B minus A, seed by seed, at each depth: within noise (means +0.2 and +0.1 pp), with sds of 2.2 and 1.5 pp.
PLANTED = {20: np.array([0.020, -0.025, 0.030, -0.010, -0.005]), 56: np.array([0.012, -0.008, 0.015, -0.020, 0.006])}
WALL_S = {"A": 20.0, "B": 40.0, "none": 20.0}
GPUS_PER_TRIAL = 0.25
STUDIES = Path(__file__).resolve().parents[2] / "studies"


def _write_study_yaml(run_dir: Path, primary: list[dict] | None, target_effect: float = 0.01) -> None:
    report = {"target_effect": target_effect, **({"primary": primary} if primary is not None else {})}
    document = {"name": run_dir.name, "question": QUESTION, "search": {"strategy": "grid", "seeds": SEEDS},
                "report": report}
    (run_dir / runfolder.STUDY_YAML).write_text(yaml.safe_dump(document, sort_keys=False))


def _crossed_run(root: Path, primary: list[dict] | None = None) -> Path:
    """shortcut A/B/none x depth 20/56 x 5 seeds: none loses 10 pp at 56 only; B - A is PLANTED exactly."""
    trials = synthetic.grid_trials({"shortcut": ["A", "B", "none"], "depth": [20, 56]}, SEEDS)
    results, curves = synthetic.build_results(trials, epochs=2, seed=4)
    shortcut, depth = results["factor.shortcut"], results["factor.depth"]
    results.loc[(shortcut == "none") & (depth == 56), "test_acc"] -= 0.10
    for level, wall in WALL_S.items():
        results.loc[shortcut == level, "wall_s"] = wall
    for at, differences in PLANTED.items():
        reference = results[(shortcut == "A") & (depth == at)].sort_values("seed")["test_acc"].to_numpy()
        index = results[(shortcut == "B") & (depth == at)].sort_values("seed").index
        results.loc[index, "test_acc"] = reference + differences
    factors = {"shortcut": {"levels": ["A", "B", "none"], "reference": "A"},
               "depth": {"levels": [20, 56], "reference": 20}}
    info = synthetic.run_info("primary", factors, trials=len(trials), seeds=SEEDS, question=QUESTION)
    info["budget"]["resources_per_trial"] = {"cpus": 1, "gpus": GPUS_PER_TRIAL}
    run_dir = synthetic.write_run(root / "primary", results, info, curves)
    _write_study_yaml(run_dir, primary)
    return run_dir


def _one_factor_run(root: Path, seeds: list[int], primary: list[dict] | None = None) -> Path:
    trials = synthetic.grid_trials({"shortcut": ["A", "B"]}, seeds)
    results, curves = synthetic.build_results(trials, epochs=2, effects={"shortcut": {"B": 0.03}}, seed=2)
    info = synthetic.run_info("one_factor", {"shortcut": {"levels": ["A", "B"], "reference": "A"}},
                              trials=len(trials), seeds=seeds)
    run_dir = synthetic.write_run(root / "one_factor", results, info, curves)
    _write_study_yaml(run_dir, primary)
    return run_dir


@pytest.fixture(scope="module")
def crossed(tmp_path_factory) -> Path:
    return _crossed_run(tmp_path_factory.mktemp("primary"), [B_VS_A])


# ------------------------------------------------------------------ study.yaml
def test_the_record_reads_primary_and_a_folder_from_before_it_reads_none(crossed, tmp_path):
    assert runfolder.read_study_record(crossed).primary == (runfolder.PrimaryComparison("shortcut", "B", "A"),)
    old = tmp_path / "old"
    old.mkdir()
    (old / runfolder.STUDY_YAML).write_text("name: old\nreport:\n  target_effect: 0.005\n")
    assert runfolder.read_study_record(old).primary == ()


@pytest.mark.parametrize(("primary", "expected"), [
    ("B", "report.primary: got str; allowed: a list of 1 to 8 comparisons"),
    ([B_VS_A] * 9, "report.primary: got a list of 9; allowed: a list of 1 to 8"),
    ([{"factor": "shortcut", "level": "B"}], "report.primary[0]: got ['factor', 'level']; allowed: a mapping of "
                                             "exactly factor, level, reference"),
    ([{**B_VS_A, "level": [1, 2]}], "report.primary[0].level: got (1, 2); allowed: a level"),
    ([{**B_VS_A, "reference": "x" * 201}], "report.primary[0].reference: got 'xxx"),
    ([{**B_VS_A, "factor": 3}], "report.primary[0].factor: got 3; allowed: a factor name"),
    ([{**B_VS_A, 1: "x"}], "report.primary[0]: got ['1', 'factor', 'level', 'reference']; allowed: a mapping"),
])
def test_a_damaged_primary_is_one_line_naming_the_file_and_field(tmp_path, primary, expected):
    (tmp_path / runfolder.STUDY_YAML).write_text(yaml.safe_dump({"name": "x", "report": {"primary": primary}}))
    with pytest.raises(runfolder.RunFolderError) as caught:
        runfolder.read_study_record(tmp_path).primary
    assert str(caught.value).startswith(f"{tmp_path / runfolder.STUDY_YAML}: ") and expected in str(caught.value)
    assert "\n" not in str(caught.value)


# ------------------------------------------------------------------ the driver's lines
def test_the_answer_starts_with_the_question_and_the_rest_follows_unchanged(crossed, tmp_path):
    lines = reports.answer_lines(crossed)
    simple = reports.factorial_tables(reports.load_run(crossed)).simple_effects
    rows = simple[(simple["metric"] == "test_acc") & (simple["factor"] == "shortcut") & (simple["level"] == "B")]
    assert lines[0] == f"the study's question: {QUESTION}"
    for line, row in zip(lines[1:3], rows.itertuples()):
        # The same test as the simple effects table: estimate, CI, Holm p and the verdict from it.
        assert line.startswith(f"  shortcut=B vs A at {row.within}: {row.diff * 100:+.1f} pp "
                               f"[{row.diff_ci_low * 100:+.1f}, {row.diff_ci_high * 100:+.1f}], paired t, "
                               f"Holm p = {row.p_adjusted:.3g}: within noise; resolving 1 pp needs about ")
    assert lines[3].startswith("  (read per depth, as every simple effect: shortcut interacts (shortcut x depth: "
                               "two-way ANOVA p = ")
    assert lines[4].startswith("  to resolve 1 pp: ") and lines[5].startswith("    python -m search.run ")
    # Everything else follows, exactly as a study without report.primary prints it.
    without = _crossed_run(tmp_path)
    assert lines[6:] == reports.answer_lines(without)
    assert reports.answer_lines(without)[0].startswith("simple effects on test accuracy")


def test_one_factor_is_answered_by_its_pooled_comparison(tmp_path):
    lines = reports.answer_lines(_one_factor_run(tmp_path, SEEDS, [B_VS_A]))
    assert lines[1].startswith("  shortcut=B vs A: +") and lines[1].endswith(": higher")
    # The same line as the comparison of every level below it: one test.
    assert lines[2] == "each level vs its reference on test accuracy:" and lines[3] == lines[1]


def test_a_comparison_without_a_test_says_why(tmp_path):
    lines = reports.answer_lines(_one_factor_run(tmp_path, [0], [B_VS_A]))
    assert lines[1] == "  shortcut=B vs A: no test: the level or its reference has fewer than 2 complete trials"


# ------------------------------------------------------------------ the report's first block
def test_the_report_opens_with_the_answer_and_keeps_the_rest(crossed, tmp_path):
    run = reports.load_run(crossed)
    page = header(run, reports.summarize(run), [])
    block = page[page.index('<div class="findings" data-testid="primary-answer">'):page.index("<b>At a glance</b>")]
    assert block.endswith('<div class="findings">')
    assert "<b>shortcut = B</b> vs A at depth=20: " in block and "<b>shortcut = B</b> vs A at depth=56: " in block
    assert "within noise" in block and "<code>python -m search.run " in block
    # A study without report.primary: the same page without the block.
    without = reports.load_run(_crossed_run(tmp_path))
    assert header(without, reports.summarize(without), []).replace(str(without.run_dir), str(run.run_dir)) == \
        page.replace(block.removesuffix('<div class="findings">'), "")


def test_tests_stopped_by_their_budget_are_named_not_taken_for_missing_trials(crossed):
    run = reports.load_run(crossed)
    page = header(run, reports.summarize(run, section_budget_s=0), [])
    block = page[page.index('data-testid="primary-answer"'):page.index("<b>At a glance</b>")]
    assert "<b>shortcut = B</b> vs A: The t-tests of the simple effects and the two-way ANOVAs ran past its time " \
           "budget of 0 s" in block
    assert "fewer than 2" not in block


# ------------------------------------------------------------------ seeds, device-hours and the command
def test_seeds_and_device_hours_match_the_power_analysis_on_fixed_data(crossed):
    from scipy import stats
    from statsmodels.stats.power import TTestPower

    run = reports.load_run(crossed)
    factorial = reports.factorial_tables(run)
    plan = reports.seed_plan(run, tested=factorial.tested)
    answer = primary_answers(run, reports.ablation_table(run), factorial, lambda: plan)
    rows = answer.answers[0].rows.set_index("within")
    z = stats.norm.ppf(0.975) + stats.norm.ppf(0.8)
    needed = {}
    for depth, differences in PLANTED.items():
        row = rows.loc[f"depth={depth}"]
        sd = differences.std(ddof=1)
        assert row["sd_diff"] == pytest.approx(sd, rel=1e-9)
        exact = TTestPower().solve_power(effect_size=0.01 / sd, alpha=0.05, power=0.8)
        assert row["seeds_needed"] == math.ceil(exact)
        # The closed form brackets it: at least the normal approximation, within Guenther's z^2 / 2 above it.
        closed = _power.normal_seeds(0.01 / sd, paired=True)
        assert closed <= row["seeds_needed"] <= closed + z ** 2 / 2 + 1
        # Both compared cells at that many seeds, at their measured wall times, in GPUs held.
        assert row["device_hours"] == pytest.approx(
            row["seeds_needed"] * (WALL_S["A"] + WALL_S["B"]) * GPUS_PER_TRIAL / 3600)
        needed[depth] = int(row["seeds_needed"])
    more = answer.more
    # One command for both depths: the larger count; every point runs the new seeds, the 5 run are reused.
    assert more.seeds == max(needed.values()) > len(SEEDS)
    assert more.new_trials == 6 * (more.seeds - len(SEEDS))
    mean_wall = np.mean([WALL_S[level] for level in ("A", "B", "none") for _ in range(10)])
    assert more.device_hours == pytest.approx(more.new_trials * mean_wall * GPUS_PER_TRIAL / 3600)
    assert more.device_unit == runfolder.GPU_HOURS
    line = next(text for text in reports.answer_lines(crossed) if text.startswith("  to resolve 1 pp"))
    assert (f"{more.seeds} seeds per point, about {more.device_hours:.3g} {runfolder.GPU_HOURS} at this run's "
            f"{mean_wall:.0f} s per trial ({more.new_trials} new trials") in line


def test_the_command_runs_the_study_as_run_with_the_seeds_and_reuses_this_run(crossed):
    run = reports.load_run(crossed)
    more = _power.more_seeds(run, 43)
    words = shlex.split(more.command)
    assert words[:4] == ["python", "-m", "search.run", str(crossed / runfolder.STUDY_YAML)]
    assert words[words.index("--reuse") + 1] == str(crossed)
    assert words[words.index("--out") + 1] == str(crossed.with_name("primary_43_seeds"))
    # Its overrides give the shipped study 43 seeds, the 5 it ran first.
    overrides = [words[at + 1] for at, word in enumerate(words) if word == "--set"]
    study = load_study(STUDIES / "shortcut_ablation.yaml", overrides)
    assert study.search.seeds == list(range(43)) and study.search.trials == 6 * 43


def test_a_study_that_gave_repeats_gets_repeats(crossed, tmp_path):
    copy = Path(shutil.copytree(crossed, tmp_path / "primary"))
    (copy / runfolder.STUDY_YAML).write_text(yaml.safe_dump({"name": "primary", "search": {"repeats": 5}}))
    assert shlex.split(_power.more_seeds(reports.load_run(copy), 8).command)[-2:] == ["--set", "search.repeats=8"]


def test_no_command_for_more_seeds_than_a_study_runs(crossed):
    more = _power.more_seeds(reports.load_run(crossed), _power.MAX_COMMAND_SEEDS + 1)
    assert more.command is None and more.why_no_command.startswith("more than 1,000 seeds per point")
    assert more.new_trials == 6 * (_power.MAX_COMMAND_SEEDS + 1 - len(SEEDS))  # the cost is still said
    lines = command_lines(more, 0.01)
    assert len(lines) == 1 and lines[0].startswith(f"to resolve 1 pp: 1001 seeds per point, about "
                                                   f"{more.device_hours:.3g} {runfolder.GPU_HOURS}")
    assert lines[0].endswith(f"; no command: {more.why_no_command}")


def test_seeds_that_are_not_0_to_n_are_kept_and_extended(tmp_path):
    run = reports.load_run(_one_factor_run(tmp_path, [3, 7]))
    words = shlex.split(_power.more_seeds(run, 5).command)
    assert words[-2:] == ["--set", "search.seeds=[3, 7, 0, 1, 2]"]


def test_reports_plan_prints_the_same_command(crossed, capsys):
    """python -m reports.plan ends with the command for the most seeds any comparison needs: the one the answer
    to report.primary prints, from the same home (reports._power.more_seeds)."""
    from reports import plan

    run = reports.load_run(crossed)
    assert plan.main([str(crossed)]) == 0
    printed = capsys.readouterr().out.splitlines()
    needed = max(int(n) for n in _power.seed_plan(run).table.query("metric == @run.headline_metric")["seeds_needed"]
                 if np.isfinite(n))
    assert printed[-1] == _power.more_seeds(run, needed).command
    assert printed[-2].startswith(f"to resolve 1 pp: {needed} seeds per point")
