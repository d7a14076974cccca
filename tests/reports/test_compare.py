"""`python -m reports.compare`: what differs, paired trials, overlaid figures and verdicts side by side.

Two smoke-like run folders differ only in `train.lr` (synthetic rows written
through the runner's own writer, with a study.yaml as the runner writes it);
a third changes the answer of the ablation. The page is opened in headless
Chromium like the report (tests/reports/test_report_browser.py); one slow
test compares two real smoke runs.
"""

from __future__ import annotations

import json
import shutil
from pathlib import Path

import numpy as np
import pandas as pd
import pytest
import yaml
from scipy import stats
from statsmodels.stats.multitest import multipletests

from browser import render, require_chromium
from commands import SMOKE, call_main, run_module
import synthetic_run as synthetic
from reports._compare import (CHANGED, NOT_SET, SAME, CompareError, compare_runs, differences_table, flatten,
                              load_runs)
from reports.compare import main as compare_main

FACTORS = {"shortcut": {"levels": ["A", "B"], "reference": "A"}, "depth": {"levels": [20, 56], "reference": 20}}
SEEDS = [0, 1, 2]

def _lr_run(root: Path, name: str, lr: float, seed: int, shortcut_b: float, dataset: str = "cifar10") -> Path:
    """A 2x2 grid x 3 seeds on the smoke study's fields, trained (synthetically) at learning rate `lr`."""
    trials = synthetic.grid_trials({"shortcut": ["A", "B"], "depth": [20, 56]}, SEEDS)
    effects = {"shortcut": {"B": shortcut_b}, "depth": {56: 0.03}}
    results, curves = synthetic.build_results(trials, epochs=3, effects=effects, seed=seed)
    results["train.lr"] = lr
    results["train_json"] = [json.dumps({**json.loads(text), "lr": lr}, sort_keys=True)
                             for text in results["train_json"]]
    info = synthetic.run_info("smoke", FACTORS, trials=len(trials), seeds=SEEDS)
    info["dataset"]["name"] = dataset
    run_dir = synthetic.write_run(root / name, results, info, curves)
    study = yaml.safe_load(SMOKE.read_text())
    study["train"]["lr"] = lr
    (run_dir / "study.yaml").write_text(yaml.safe_dump(study, sort_keys=False))
    return run_dir


@pytest.fixture(scope="session")
def lr_runs(tmp_path_factory) -> tuple[Path, Path, Path]:
    """(lr 0.1, lr 0.05 with B's advantage gone, lr 0.1 on other data with other architectures)."""
    root = tmp_path_factory.mktemp("compare_runs")
    first = _lr_run(root, "smoke_lr1", 0.1, seed=1, shortcut_b=0.04)
    second = _lr_run(root, "smoke_lr05", 0.05, seed=2, shortcut_b=0.0)
    # Other data, other networks, other factors: nothing to compare with the first.
    trials = synthetic.grid_trials({"block": ["basic", "bottleneck"]}, [7, 8])
    results, curves = synthetic.build_results(trials, epochs=3, seed=3)
    info = synthetic.run_info("blocks", {"block": {"levels": ["basic", "bottleneck"], "reference": "basic"}},
                              trials=4, seeds=[7, 8])
    info["dataset"]["name"] = "synthetic"
    other = synthetic.write_run(root / "blocks", results.assign(arch_key="0" * 16), info, curves)
    return first, second, other


@pytest.fixture(scope="session")
def comparison(lr_runs):
    return compare_runs(lr_runs[:2])


@pytest.fixture
def compare_cli(capsys):
    return lambda *args: call_main(compare_main, list(args), capsys)


# ---------------------------------------------------------------- the tables


def test_flatten_gives_dotted_paths_and_indexes_lists_of_mappings():
    flat = flatten({"train": {"lr": 0.1}, "space": {"shortcut": {"choice": ["A", "B"]},
                                                    "stages": [{"depth": 1}, {"depth": 2}]}})
    assert flat == {"train.lr": 0.1, "space.shortcut.choice": ["A", "B"], "space.stages[0].depth": 1,
                    "space.stages[1].depth": 2}


def test_what_differs_names_train_lr_and_nothing_else(comparison):
    differences = comparison.differences
    differing = differences[differences["differs"]]
    assert set(differing["field"]) == {"train.lr"}
    assert set(differing["section"]) == {"study.yaml", "train (as trained)"}
    row = differing[differing["section"] == "study.yaml"].iloc[0]
    assert (row["smoke_lr1"], row["smoke_lr05"]) == ("0.1", "0.05")
    same = differences[~differences["differs"]]
    assert {"train.batch_size", "space.shortcut.choice", "versions.torch", "dataset.n_train"} <= set(same["field"])


def test_a_field_left_out_reads_as_its_default(lr_runs, tmp_path):
    edited = tmp_path / "edited"
    shutil.copytree(lr_runs[0], edited)
    study = yaml.safe_load((edited / "study.yaml").read_text())
    study["train"]["momentum"] = 0.8
    (edited / "study.yaml").write_text(yaml.safe_dump(study))
    table = differences_table(load_runs([lr_runs[0], edited], []))
    row = table[(table["field"] == "train.momentum")].iloc[0]
    assert row["differs"] and row[lr_runs[0].name] == NOT_SET and row["edited"] == "0.8"


def test_trials_join_on_architecture_factor_levels_and_seed(comparison, lr_runs):
    assert comparison.join_columns == ["arch_key", "factor.shortcut", "factor.depth", "seed"]
    pairs = comparison.pairs
    assert len(pairs) == 12 and pairs["trial_id_ref"].tolist() == pairs["trial_id_run"].tolist()


def test_paired_differences_match_scipy_and_holm_matches_statsmodels(comparison, lr_runs):
    first = pd.read_parquet(lr_runs[0] / "results.parquet").set_index("trial_id")
    second = pd.read_parquet(lr_runs[1] / "results.parquet").set_index("trial_id")
    diff = second["test_acc"] - first["test_acc"]
    pooled = comparison.pooled.iloc[0]
    result = stats.ttest_rel(second["test_acc"], first["test_acc"])
    interval = result.confidence_interval(0.95)
    assert pooled["n"] == 12 and pooled["cells"] == 4
    assert pooled["diff"] == pytest.approx(diff.mean())
    assert (pooled["diff_ci_low"], pooled["diff_ci_high"]) == pytest.approx((interval.low, interval.high))
    assert pooled["p_value"] == pytest.approx(result.pvalue)

    cells = comparison.paired_cells
    assert len(cells) == 4 and (cells["n"] == 3).all()
    p_values = []
    for row in cells.to_dict("records"):
        trials = first[(first["factor.shortcut"] == row["factor.shortcut"])
                       & (first["factor.depth"].astype(str) == row["factor.depth"])].index
        cell = stats.ttest_rel(second.loc[trials, "test_acc"], first.loc[trials, "test_acc"])
        assert row["diff"] == pytest.approx(diff[trials].mean())
        assert row["p_value"] == pytest.approx(cell.pvalue)
        p_values.append(cell.pvalue)
    assert cells["p_adjusted"].to_numpy() == pytest.approx(multipletests(p_values, method="holm")[1])


def test_a_verdict_that_changed_is_marked(comparison):
    ablation = comparison.ablation.set_index(["factor", "level"])
    # B is 4 points above A at lr 0.1 and level with it at 0.05; depth 56 helps in both.
    assert ablation.loc[("shortcut", "B"), "smoke_lr1: verdict"] == "higher"
    assert ablation.loc[("shortcut", "B"), "smoke_lr05: verdict"] != "higher"
    assert ablation.loc[("shortcut", "B"), "change"] == CHANGED
    assert ablation.loc[("depth", "56"), "change"] == SAME
    assert set(comparison.simple_effects["change"]) <= {CHANGED, SAME, "not in every run"}


def test_runs_that_share_nothing_are_refused(lr_runs):
    with pytest.raises(CompareError, match="share nothing comparable"):
        compare_runs([lr_runs[0], lr_runs[2]])


# ---------------------------------------------------------------- the command


def test_cli_writes_the_page_and_its_tables(lr_runs, tmp_path):
    out = tmp_path / "out" / "compare.html"
    result = run_module("reports.compare", str(lr_runs[0]), str(lr_runs[1]), "--out", str(out))
    assert result.returncode == 0, result.stderr
    assert result.stdout.splitlines()[0] == str(out)
    tables = out.parent / "compare_tables"
    assert {"differences.csv", "pairs.csv", "paired_cells.csv", "paired_all.csv", "ablation_verdicts.csv",
            "simple_effect_verdicts.csv", "runs.csv", "pareto_macs.csv"} <= {p.name for p in tables.iterdir()}
    page = out.read_text()
    assert "train.lr" in page and "http-equiv=\"refresh\"" not in page


@pytest.mark.parametrize("case, expected", [
    ("missing", "no such run folder"),
    ("twice", "given twice"),
    ("one", "at least two run folders"),
    ("unrelated", "share nothing comparable"),
    ("failed_only", "no complete trial"),
])
def test_cli_bad_input_is_one_line_and_status_2(case, expected, lr_runs, tmp_path, compare_cli):
    first, _, other = lr_runs
    if case == "failed_only":
        trials = [{"shortcut": "A", "depth": 20, "seed": 0, "status": "failed"}]
        results, curves = synthetic.build_results(trials, epochs=3)
        failed = synthetic.write_run(tmp_path / "failed", results, synthetic.run_info("smoke", FACTORS), curves)
    runs = {"missing": [first, tmp_path / "nope"], "twice": [first, first], "one": [first],
            "unrelated": [first, other], "failed_only": [first, tmp_path / "failed"]}[case]
    out = tmp_path / "compare.html"
    result = compare_cli(*map(str, runs), "--out", str(out))
    assert expected in result.bad_input_line()
    assert not out.exists()


# ---------------------------------------------------------------- in a browser


def _assert_renders(out: Path, seen: dict) -> None:
    assert seen["errors"] == []
    assert [url for url in seen["requests"] if url != out.as_uri() and not url.startswith("data:")] == []
    assert len(seen["images"]) >= 2
    assert all(complete and width > 0 and height > 0 for complete, width, height in seen["images"]), seen["images"]
    assert seen["scroll_width"] <= 1280


def test_the_page_renders_and_names_train_lr(lr_runs, tmp_path, compare_cli):
    require_chromium()
    out = tmp_path / "compare.html"
    assert compare_cli(str(lr_runs[0]), str(lr_runs[1]), "--out", str(out)).returncode == 0
    seen = render(out)
    _assert_renders(out, seen)
    keyed = seen["keyed"]
    assert keyed["differs.study.yaml.train.lr"] == "train.lr"
    assert keyed["value.smoke_lr1.train.lr"] == "0.1" and keyed["value.smoke_lr05.train.lr"] == "0.05"
    assert keyed["glance.differs.train.lr"] == "train.lr"
    pooled = pd.read_csv(out.parent / "compare_tables" / "paired_all.csv").iloc[0]
    assert keyed["pooled.smoke_lr05.diff"] == f"{pooled['diff'] * 100:+.2f}"
    assert keyed["pooled.smoke_lr05.n"] == "12"
    assert keyed["ablation.shortcut.B.change"] == "⚑ changed" and seen["changed"] >= 1
    assert "IN PROGRESS" not in seen["text"]


@pytest.mark.slow
def test_two_real_smoke_runs_that_differ_in_lr_compare_in_a_browser(smoke_run, cluster_run, tmp_path, capsys):
    require_chromium()
    # The session's two real runs of the smoke study: train.lr 0.1 and 0.05 (the second also trains longer, on
    # two more seeds, and on the two-node cluster). In this process: test_cli_writes_the_page_and_its_tables
    # runs `python -m reports.compare`.
    second = cluster_run.run_dir
    out = tmp_path / "compare.html"
    result = call_main(compare_main, [str(smoke_run.run_dir), str(second), "--out", str(out)], capsys)
    assert result.returncode == 0, result.stderr
    seen = render(out)
    _assert_renders(out, seen)
    assert seen["keyed"]["differs.study.yaml.train.lr"] == "train.lr"
    assert seen["keyed"]["pooled.smoke_lr05.n"] == "4"  # 2 shortcuts x seeds 0 and 1, trained in both
    assert np.isfinite(float(seen["keyed"]["pooled.smoke_lr05.diff"]))


def test_a_trial_id_twice_in_a_results_table_is_read_once_with_a_warning(lr_runs, tmp_path):
    import runfolder

    run_dir = tmp_path / "smoke_lr05"
    shutil.copytree(lr_runs[1], run_dir, ignore=shutil.ignore_patterns("report*", "trials.jsonl"))
    frame = pd.read_parquet(run_dir / "results.parquet")
    stale = frame.iloc[[0]].assign(val_acc_best=0.01, test_acc=0.01)  # an earlier row of trial_0000
    pd.concat([stale, frame], ignore_index=True).to_parquet(run_dir / "results.parquet")
    with pytest.warns(runfolder.RunFolderNote, match="1 row.s. repeat the trial id of a later row .trial_0000."):
        read = runfolder.read_results(run_dir)
    assert read["trial_id"].is_unique and len(read) == len(frame)
    assert read.set_index("trial_id").loc["trial_0000", "test_acc"] == frame.loc[0, "test_acc"]
    with pytest.warns(runfolder.RunFolderNote):
        joined = compare_runs([lr_runs[0], run_dir]).pairs
    assert len(joined) == len(frame) and 0.01 not in set(joined["test_acc_run"])
