"""`python -m reports.proxies RUN`: every proxy's Spearman rho with val_acc_best, on a run folder; bad input exits 2.

The run folders are a synthetic one (written by the runner's writers, tiny
networks on the synthetic dataset, so that scoring takes a second) and, in the
slow test, the session's real smoke run, only read. The params baseline is
checked against scipy.stats.spearmanr of the results table's own params
column, which the runner wrote from models.complexity, not from the proxy.
"""

from __future__ import annotations

import json
import os
from pathlib import Path

import pytest
import yaml
from scipy import stats

import runfolder
import space
import synthetic_run as synthetic
from commands import SMOKE, call_main
from reports.proxies import main
from screens import PROXY_NAMES


def _run(folder: Path, trials: int = 3) -> Path:
    """A finished run of tiny CIFAR ResNets (depth 8 or 14, a quarter or half the width) whose study is the smoke's."""
    levels = {"depth": [8, 14], "width": [0.25, 0.5]}
    results, curves = synthetic.build_results(synthetic.grid_trials(levels, [0])[:trials],
                                              effects={"depth": {14: 0.02}, "width": {0.5: 0.03}})
    run = synthetic.write_run(folder, results, synthetic.run_info("tiny", {}), curves)
    study = space.study_from_dict(yaml.safe_load(SMOKE.read_text()))  # synthetic images, 10 classes
    runfolder.atomic_write_text(runfolder.RunFolder(run).study_yaml, study.to_yaml())
    return run


@pytest.fixture(scope="module")
def tiny_run(tmp_path_factory) -> Path:
    return _run(tmp_path_factory.mktemp("proxies") / "run")


def _params_rho(run: Path) -> float:
    results = runfolder.read_results(run)
    complete = results[results["status"] == "complete"]
    return float(stats.spearmanr(complete["params"].astype(float), complete["val_acc_best"]).statistic)


def test_json_gives_every_proxy_its_rho_and_ci(tiny_run, capsys):
    result = call_main(main, [str(tiny_run), "--json"], capsys)
    assert result.returncode == 0, result.stderr
    table = json.loads(result.stdout)
    assert [row["proxy"] for row in table] == list(PROXY_NAMES)
    assert all(set(row) == {"proxy", "spearman", "ci"} and len(row["ci"]) == 2 for row in table)
    by_proxy = {row["proxy"]: row for row in table}
    assert by_proxy["params"]["spearman"] == pytest.approx(_params_rho(tiny_run), abs=1e-6)
    for row in table:
        low, high = row["ci"]
        assert -1 <= low <= high <= 1, row


def test_the_text_is_one_line_per_proxy(tiny_run, capsys):
    result = call_main(main, [str(tiny_run)], capsys)
    assert result.returncode == 0, result.stderr
    header, *lines = result.stdout.splitlines()
    assert "over the 3 complete trials" in header
    assert [line.split()[0] for line in lines] == list(PROXY_NAMES)
    assert all(" rho " in line and " CI [" in line for line in lines)


def _one_line_refusal(args: list[str], capsys, expected: str) -> None:
    result = call_main(main, args, capsys)
    assert expected in result.bad_input_line() and result.stdout == ""


def test_a_missing_or_hostile_folder_is_one_line(tmp_path, capsys):
    _one_line_refusal([str(tmp_path / "none")], capsys, "results.parquet: missing")
    run = _run(tmp_path / "run")
    study_yaml = runfolder.RunFolder(run).study_yaml
    study_yaml.unlink()
    _one_line_refusal([str(run)], capsys, "no study.yaml")
    os.mkfifo(study_yaml)  # would block a reader that opens it blindly
    _one_line_refusal([str(run)], capsys, "study.yaml: a FIFO")
    study_yaml.unlink()
    study_yaml.write_text("name: [unclosed\n")
    _one_line_refusal([str(run)], capsys, "study.yaml: not readable YAML")
    study_yaml.write_text("name: x\n")
    _one_line_refusal([str(run)], capsys, "study.yaml: question: missing")
    _one_line_refusal([str(_run(tmp_path / "short", trials=2))], capsys, "2 complete trial(s)")
    _one_line_refusal([str(tmp_path / "none"), "--batches", "0"], capsys, "--batches: got 0")


def test_missing_data_is_one_line(tmp_path, capsys):
    run = _run(tmp_path / "run")
    raw = yaml.safe_load(SMOKE.read_text())
    raw["data"] = {"dataset": "cifar10", "root": str(tmp_path / "no-images")}
    runfolder.atomic_write_text(runfolder.RunFolder(run).study_yaml, space.study_from_dict(raw).to_yaml())
    _one_line_refusal([str(run)], capsys, "no-images")


@pytest.mark.slow
def test_a_real_run_gets_every_proxy(smoke_run, capsys):
    result = call_main(main, [str(smoke_run.run_dir), "--json"], capsys)
    assert result.returncode == 0, result.stderr
    table = {row["proxy"]: row for row in json.loads(result.stdout)}
    assert list(table) == list(PROXY_NAMES)
    assert table["params"]["spearman"] == pytest.approx(_params_rho(smoke_run.run_dir), abs=1e-6, nan_ok=True)
