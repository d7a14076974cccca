"""reports.replay: search strategies replayed on recorded curves, checked exactly on a hand-made run.

The hand-made run has 8 trials of 4 epochs whose curves are written below, so
every strategy's epochs and choice can be worked out by hand (the comments do
it). The late bloomer trial_0002 is the full run's best and is cut at epoch 1
by every halving strategy: the replay must say what that costs.
"""

from __future__ import annotations

import json

import numpy as np
import pandas as pd
import pytest
from scipy import stats

import runfolder
import synthetic_run as synthetic
from reports import load_run
from reports import replay as replay_cli
from reports._load import report_columns
from reports._replay import (STRATEGIES, SpearmanBootstrap, Strategy, _percentile, replay, replay_columns,
                             replay_curves, replay_strategies, spearman_rho_ci)
from reports._replay_sections import replay_section
from reports._sections import SECTIONS
from reports._tables import summarize

EPOCHS = 4
# val_acc at epochs 1..4 of trial_0000..trial_0007, in the order the run sampled them.
CURVES = [
    [0.30, 0.40, 0.50, 0.60],
    [0.35, 0.45, 0.55, 0.65],
    [0.20, 0.30, 0.40, 0.90],  # the late bloomer: the full run's best
    [0.50, 0.60, 0.65, 0.70],
    [0.45, 0.55, 0.60, 0.75],
    [0.10, 0.15, 0.20, 0.25],
    [0.40, 0.52, 0.70, 0.80],
    [0.25, 0.35, 0.45, 0.50],
]
TEST_ACC = [0.58, 0.63, 0.86, 0.69, 0.72, 0.24, 0.79, 0.49]
# A zero-cost score that ranks trial_0002 and trial_0005 first.
PARAMS = [100, 200, 900, 300, 400, 800, 500, 50]
REPLICATES = 20


def _hand_made_tables() -> tuple[pd.DataFrame, pd.DataFrame]:
    """(results, curves) of the 8 trials, rows made by runfolder.trial_row as the runner makes them."""
    results = pd.DataFrame([runfolder.trial_row(
        number=number, status="complete", seed=number, factors={"shortcut": "B"}, spec=None, train=None,
        metrics={"val_acc_best": max(curve), "val_acc_final": curve[-1], "test_acc": test, "params": params,
                 "macs": params * 1000, "flops": params * 2000, "epochs_run": EPOCHS},
        screen={"synflow": -params})
        for number, (curve, test, params) in enumerate(zip(CURVES, TEST_ACC, PARAMS))])
    curves = pd.DataFrame([{"trial_id": runfolder.trial_id(number), "epoch": epoch, "train_loss": 1.0,
                            "val_acc": value, "epoch_s": 1.0, "images_per_s": 100.0, "lr": 0.1}
                           for number, curve in enumerate(CURVES) for epoch, value in enumerate(curve, start=1)])
    return results, curves


def _write_hand_made_run(run_dir, old_version: bool = False):
    """The 8 trials through runfolder's writers; `old_version`: rows and run.json as written before number, params,
    macs, screen.* and run.json's format_version existed, and no trial log."""
    results, curves = _hand_made_tables()
    if not old_version:
        info = synthetic.run_info("hand_made", {"shortcut": {"levels": ["B"], "reference": "B"}}, epochs=EPOCHS,
                                  trials=len(CURVES), seeds=range(len(CURVES)))
        return synthetic.write_run(run_dir, results, info, curves)
    old_columns = ["trial_id", "status", "seed", "factor.shortcut", "val_acc_best", "val_acc_final", "test_acc",
                   "epochs_run", "error", "checkpoint"]
    synthetic.write_run(run_dir, results[old_columns], None, curves[["trial_id", "epoch", "train_loss", "val_acc"]])
    (run_dir / runfolder.TRIALS_LOG).unlink()
    (run_dir / runfolder.RUN_JSON).write_text(json.dumps({"study": "hand_made", "strategy": "grid"}))
    return run_dir


@pytest.fixture(scope="module")
def hand_made(tmp_path_factory):
    return _write_hand_made_run(tmp_path_factory.mktemp("replay") / "hand_made")


@pytest.fixture(scope="module")
def curves(hand_made):
    return replay_curves(load_run(hand_made, columns=replay_columns))


def _replayed(curves, family: str, **settings) -> pd.Series:
    table = replay_strategies(curves, [Strategy(family, tuple(settings.items()))], replicates=REPLICATES)
    return table.iloc[0]


# ------------------------------------------------------------------ each strategy, by hand
def test_the_curves_are_read_in_the_order_the_run_sampled_them(curves):
    assert curves.trial_ids == tuple(runfolder.trial_id(number) for number in range(8))
    np.testing.assert_array_equal(curves.val_acc, np.array(CURVES))
    assert set(curves.proxies) == {"params", "macs", "screen.synflow"}


def test_successive_halving_spends_16_epochs_and_picks_trial_4(curves):
    # Epoch 1 (all 8): top 4 are trials 3, 4, 6, 1. Epoch 2: top 2 are 3 (0.60) and 4 (0.55), trained to 4.
    # Epochs: 8 x 1 + 4 x 1 + 2 x 2 = 16 of 32. Choice: trial 4 (0.75) against the full run's trial 2 (0.90).
    spent = STRATEGIES["sh"].spend(curves.val_acc, curves.proxies, None, reduction_factor=2, grace_period=1)
    assert spent.tolist() == [1, 2, 1, 4, 4, 1, 2, 1]
    row = _replayed(curves, "sh", reduction_factor=2, grace_period=1)
    assert (row["epochs"], row["epochs_fraction"], row["chosen_trial"]) == (16, 0.5, "trial_0004")
    assert row["regret_pp"] == pytest.approx(15.0)
    assert row["test_regret_pp"] == pytest.approx(14.0)


def test_asha_stops_a_trial_below_the_median_of_those_before_it(curves):
    # Ray's rule at eta = 2: stop when below the median of the values recorded at the rung before this trial.
    # Epoch 1: trial 0 first (goes on); 1: 0.35 >= 0.30; 2: 0.20 < 0.325 stops; 3, 4 go on; 5: 0.10 < 0.35 stops;
    # 6: 0.40 >= 0.325; 7: 0.25 < 0.35 stops. Epoch 2: 0, 1 (0.45 >= 0.40), 3 (0.60 >= 0.425), 4 (0.55 >= 0.45),
    # 6 (0.52 >= 0.50) all go on. Epochs 5 x 4 + 3 x 1 = 23; choice trial 6 (0.80).
    spent = STRATEGIES["asha"].spend(curves.val_acc, curves.proxies, None, reduction_factor=2, grace_period=1)
    assert spent.tolist() == [4, 4, 1, 4, 4, 1, 4, 1]
    row = _replayed(curves, "asha", reduction_factor=2, grace_period=1)
    assert (row["epochs"], row["chosen_trial"]) == (23, "trial_0006")
    assert row["regret_pp"] == pytest.approx(10.0)


def test_asha_cutoffs_are_the_percentiles_ray_computes():
    # Ray's _Bracket.cutoff: np.nanpercentile(recorded, (1 - 1 / rf) * 100), equal to the last bit.
    rng = np.random.default_rng(0)
    for count in range(1, 40):
        values = sorted(rng.uniform(size=count).tolist())
        for reduction_factor in (2, 3, 4, 2.5):
            percent = (1 - 1 / reduction_factor) * 100
            assert _percentile(values, percent) == np.nanpercentile(values, percent)


def test_hyperband_splits_the_trials_over_its_brackets(curves):
    # R = 4, eta = 2: brackets of 4, 3 and 3 trials starting at 1, 2 and 4 epochs; 8 trials split 3, 3, 2.
    # Bracket 1 (trials 0-2): trial 1 goes on to the end. Bracket 2 (3-5): at epoch 2 trial 3 goes on. Bracket 3
    # (6, 7): both trained fully. Choice: trial 6 (0.80).
    spent = STRATEGIES["hyperband"].spend(curves.val_acc, curves.proxies, None, reduction_factor=2)
    assert spent.tolist() == [1, 4, 1, 4, 2, 2, 4, 4]
    assert _replayed(curves, "hyperband", reduction_factor=2)["chosen_trial"] == "trial_0006"


def test_top_k_after_one_epoch(curves):
    # Epoch 1: trials 3 (0.50) and 4 (0.45) are the top 25%; 8 x 1 + 2 x 3 = 14 epochs; choice trial 4.
    row = _replayed(curves, "topk", epochs=1, fraction=0.25)
    assert (row["epochs"], row["chosen_trial"]) == (14, "trial_0004")


def test_a_zero_cost_screen_trains_only_the_best_by_its_score(curves):
    # params ranks trials 2 (900) and 5 (800) first: 2 x 4 epochs, and it keeps the late bloomer.
    row = _replayed(curves, "screen", proxy="params", keep=0.25)
    assert (row["epochs"], row["epochs_fraction"], row["chosen_trial"], row["regret_pp"]) == (8, 0.25, "trial_0002", 0)
    # screen.synflow (here -params) ranks trials 7 and 0 first: the choice is trial 0 (0.60).
    row = _replayed(curves, "screen", proxy="screen.synflow", keep=0.25)
    assert (row["chosen_trial"], row["regret_pp"]) == ("trial_0000", pytest.approx(30.0))


def test_a_random_subset_is_seeded(curves):
    strategy = [Strategy("random", (("fraction", 0.5),))]
    first, again = (replay_strategies(curves, strategy, seed=3, replicates=REPLICATES) for _ in range(2))
    pd.testing.assert_frame_equal(first, again)
    assert first.iloc[0]["epochs"] == 4 * EPOCHS


def test_the_full_search_is_the_reference_and_the_cheapest_is_within_tolerance(hand_made):
    result = replay(load_run(hand_made, columns=replay_columns), replicates=REPLICATES)
    full = result.table[result.table["strategy"] == "full"].iloc[0]
    assert (full["epochs_fraction"], full["regret_pp"], full["regret_ci_low_pp"], full["regret_ci_high_pp"],
            full["chosen_trial"]) == (1.0, 0.0, 0.0, 0.0, "trial_0002")
    cheapest = result.cheapest
    assert cheapest["regret_ci_high_pp"] <= 0.5
    within = result.table[result.table["within_tolerance"]]
    assert cheapest["epochs_fraction"] == within["epochs_fraction"].min()
    # Every cut at epoch 1 or 2 loses the late bloomer, so its draws show a regret and its CI leaves the tolerance.
    assert not result.table.set_index("label").loc["sh reduction_factor=2 grace_period=1", "within_tolerance"]


def test_an_old_version_run_folder_still_replays(tmp_path):
    run_dir = _write_hand_made_run(tmp_path / "old", old_version=True)
    with pytest.warns(runfolder.RunFolderNote, match="no format_version"):
        run = load_run(run_dir, columns=replay_columns)
    result = replay(run, replicates=REPLICATES)
    row = result.table.set_index("label").loc["sh reduction_factor=2 grace_period=1"]
    assert (row["epochs"], row["chosen_trial"]) == (16, "trial_0004")
    # Without params, macs or screen.* there is nothing to screen by.
    assert "screen" not in set(result.table["strategy"])


# ------------------------------------------------------------------ ranking fidelity against scipy
def test_fidelity_is_scipys_kendall_tau_and_spearman_rho(hand_made, curves):
    fidelity = replay(load_run(hand_made, columns=replay_columns), replicates=1).fidelity
    assert fidelity["epoch"].tolist() == [1, 2, 3, 4]
    for row in fidelity.to_dict("records"):
        values = np.array(CURVES)[:, row["epoch"] - 1]
        finals = curves.val_acc_best
        assert row["kendall_tau"] == pytest.approx(stats.kendalltau(values, finals).statistic)
        assert row["spearman_rho"] == pytest.approx(stats.spearmanr(values, finals).statistic)
        assert row["spearman_ci_low"] <= row["spearman_rho"] <= row["spearman_ci_high"]


def test_every_spearman_resample_is_scipys_rho_of_those_draws():
    rng = np.random.default_rng(5)
    x, y = rng.integers(0, 6, 15).astype(float), rng.normal(size=15)  # ties in x, and copies in every resample
    bootstrap = SpearmanBootstrap(y, seed=11, n_resamples=50)
    rhos = bootstrap.rhos(x)
    for indices, rho in zip(bootstrap.indices, rhos):
        expected = stats.spearmanr(x[indices], y[indices]).statistic
        assert rho == pytest.approx(expected) if np.isfinite(expected) else np.isnan(rho)
    result = spearman_rho_ci(x, y, seed=11, n_resamples=50)
    assert result.rho == pytest.approx(stats.spearmanr(x, y).statistic)
    assert (result.ci_low, result.ci_high) == pytest.approx(tuple(np.percentile(rhos[np.isfinite(rhos)], [2.5, 97.5])))


# ------------------------------------------------------------------ the command line
def test_json_prints_one_object_per_strategy_and_the_fidelity(hand_made, capsys):
    assert replay_cli.main([str(hand_made), "--json", "--replicates", "5", "--strategy", "sh", "topk"]) == 0
    printed = json.loads(capsys.readouterr().out)
    strategies, fidelity = printed[:-1], printed[-1]
    assert {row["strategy"] for row in strategies} == {"full", "sh", "topk"}
    for row in strategies:
        assert {"strategy", "epochs_fraction", "regret_pp", "regret_ci_pp", "settings"} <= set(row)
        assert len(row["regret_ci_pp"]) == 2
    sh = next(row for row in strategies if row["settings"] == {"reduction_factor": 2, "grace_period": 1})
    assert (sh["epochs_fraction"], sh["chosen_trial"]) == (0.5, "trial_0004")
    assert [point["epoch"] for point in fidelity["fidelity"]] == [1, 2, 3, 4]
    assert {"epoch", "kendall_tau", "spearman_rho"} <= set(fidelity["fidelity"][0])


def test_the_table_names_the_cheapest_strategy(hand_made, capsys):
    # At 0.5 pp no screen's CI stays within (a draw without trial 2 may keep the wrong two); at 50 pp every one does,
    # and the cheapest is the first of the two at a quarter of the epochs.
    assert replay_cli.main([str(hand_made), "--replicates", "5", "--strategy", "screen"]) == 0
    assert "No strategy cheaper than the full search stays within 0.50 pp" in capsys.readouterr().out
    assert replay_cli.main([str(hand_made), "--replicates", "5", "--strategy", "screen", "--tolerance", "0.5"]) == 0
    assert ("Cheapest within 50.00 pp (the regret CI's upper bound): screen proxy=params keep=0.25, at 0.250 of the "
            "epochs") in capsys.readouterr().out


@pytest.mark.parametrize("arguments, message", [
    (["{missing}"], "no such run folder"),
    (["{empty}"], "results.parquet"),
    (["{no_curves}"], "curves.parquet: missing"),
    (["{garbage}"], "not a readable parquet file"),
    (["{run}", "--strategy", "bogus"], "allowed: full, sh, asha"),
    (["{run}", "--tolerance", "2"], "--tolerance: got 2.0"),
    (["{run}", "--seed", "-1"], "--seed: got -1"),
    (["{hostile}"], "field epoch: got 1, 2, 3, 1e+09; allowed"),
])
def test_bad_input_is_one_line_and_exit_2(hand_made, tmp_path, capsys, arguments, message):
    (tmp_path / "empty").mkdir()
    results, _ = _hand_made_tables()
    synthetic.write_run(tmp_path / "no_curves", results)
    (tmp_path / "no_curves" / runfolder.TRIALS_LOG).unlink()  # its curves would be read back from the log
    garbage = synthetic.write_run(tmp_path / "garbage", results)
    (garbage / runfolder.CURVES_PARQUET).write_bytes(b"PAR1 not a table")
    # A curve whose last epoch would be a billion columns.
    results, curves = _hand_made_tables()
    curves.loc[curves["epoch"] == 4, "epoch"] = 10 ** 9
    hostile = synthetic.write_run(tmp_path / "hostile", results, curves=curves)
    paths = {"missing": tmp_path / "missing", "empty": tmp_path / "empty", "no_curves": tmp_path / "no_curves",
             "garbage": garbage, "hostile": hostile, "run": hand_made}
    assert replay_cli.main([argument.format(**paths) for argument in arguments]) == 2
    error = capsys.readouterr().err
    assert error.count("\n") == 1 and error.startswith("reports.replay: error: ") and message in error


# ------------------------------------------------------------------ the report
def test_the_report_section_shows_the_replay_table_and_the_fidelity_plot(hand_made):
    tables = summarize(load_run(hand_made, columns=report_columns))
    assert "replay" in [anchor for anchor, *_ in SECTIONS]
    assert {"replay", "replay_fidelity"} <= set(tables.csv_tables())
    html = replay_section(tables.run, tables)
    assert 'data-testid="replay"' in html and 'data-testid="replay-fidelity"' in html
    assert "data:image/png;base64," in html
    assert "Cheapest within" in html or "No strategy cheaper than the full search" in html


@pytest.mark.slow
@pytest.mark.parametrize("run_name", ["smoke_run", "cluster_run"])
def test_real_runs_replay_and_their_reports_show_it(run_name, request, capsys):
    """The two real runs of the session (a grid study of four trials; four seeds at longer trials on the cluster):
    every strategy is replayed within the run's epochs and the full search is its own reference. The smoke run
    writes its report at the end (the cluster run is made with --no-report): that report has the replay section."""
    from commands import call_main

    run_dir = request.getfixturevalue(run_name).run_dir
    result = call_main(replay_cli.main, [str(run_dir), "--json", "--replicates", "20"], capsys)
    assert result.returncode == 0, result.stderr
    printed = json.loads(result.stdout)
    strategies = [row for row in printed if "strategy" in row]
    full = next(row for row in strategies if row["strategy"] == "full")
    assert full["epochs_fraction"] == 1 and full["regret_pp"] == 0 and full["regret_ci_pp"] == [0, 0]
    assert all(0 < row["epochs_fraction"] <= 1 and row["regret_pp"] >= 0 for row in strategies)
    epochs = int(load_run(run_dir).curves["epoch"].max())
    assert [row["epoch"] for row in printed[-1]["fidelity"]] == list(range(1, epochs + 1))
    if run_name == "smoke_run":
        assert "Replaying search strategies on the recorded curves" in (run_dir / "report.html").read_text()
