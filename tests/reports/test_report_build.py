"""build_report on every kind of study: the page, its CSV tables, and what degenerate reports explain."""

from __future__ import annotations

import json
import re
import shutil
from html.parser import HTMLParser
from pathlib import Path

import pandas as pd
import pytest

import runfolder
import reports
from reports import ReportError, build_report, load_run


class _PageParser(HTMLParser):
    """Collects img sources, every src/href, and the text of each data-key element."""

    def __init__(self):
        super().__init__()
        self.images, self.links, self.keyed = [], [], {}
        self._open_key = None

    def handle_starttag(self, tag, attrs):
        attrs = dict(attrs)
        if tag == "img":
            self.images.append(attrs.get("src", ""))
        for name in ("src", "href"):
            if name in attrs:
                self.links.append(attrs[name])
        if "data-key" in attrs:
            self._open_key = attrs["data-key"]
            self.keyed[self._open_key] = ""

    def handle_data(self, data):
        if self._open_key is not None:
            self.keyed[self._open_key] += data

    def handle_endtag(self, tag):
        if tag in ("td", "span"):
            self._open_key = None


def _parse(html_text: str) -> _PageParser:
    parser = _PageParser()
    parser.feed(html_text)
    return parser


def _text(html_text: str) -> str:
    """The visible words of a page, tags removed and whitespace collapsed."""
    return " ".join(re.sub(r"<[^>]+>", " ", re.sub(r"<(style|script)[^>]*>.*?</\1>", "", html_text, flags=re.S)).split())


@pytest.fixture(scope="session")
def grid_page(grid_run) -> str:
    return build_report(grid_run).read_text(encoding="utf-8")


def test_public_api_is_declared():
    assert "build_report" in reports.__all__
    assert all(hasattr(reports, name) for name in reports.__all__)


def test_report_is_self_contained(grid_run, grid_page):
    page = _parse(grid_page)
    assert len(page.images) >= 6  # two scatters, two EDFs, two learning-curve figures
    assert all(src.startswith("data:image/png;base64,") for src in page.images)
    # Only in-page anchors: nothing to fetch, online or on disk.
    assert all(link.startswith(("#", "data:")) for link in page.links), [link for link in page.links if not link.startswith(("#", "data:"))]
    assert "<script" not in grid_page
    assert "http://" not in grid_page and "https://" not in grid_page


def test_header_answers_what_was_run(grid_run, grid_page):
    text = _text(grid_page)
    info = json.loads((grid_run / "run.json").read_text())
    for expected in (info["study"], info["question"], "EMBEDDED SAMPLE", "torch 2.13.0", "ray 2.60.0",
                     "optuna 5.0.0", "1 h 02 min 03 s", "2.070", "epochs: 4", "trials planned: 18", "seeds: 0, 1, 2",
                     "Synthetic CPU"):
        assert expected in text, expected
    assert 'class="banner danger"' in grid_page  # the embedded-sample banner is loud


def test_page_numbers_equal_the_tables(grid_run, grid_page):
    keyed = _parse(grid_page).keyed
    results = pd.read_parquet(grid_run / "results.parquet")
    assert keyed["counts.complete"] == str((results["status"] == "complete").sum())
    assert keyed["counts.total"] == str(len(results))
    ablation = pd.read_csv(grid_run / "report_tables" / "ablation.csv")
    for row in ablation.itertuples():
        key = f"ablation.{row.factor}.{row.level}.{row.metric}"
        assert keyed[f"{key}.n"] == str(row.n)
        assert keyed[f"{key}.mean"] == f"{row.mean * 100:.2f}"
        assert keyed[f"{key}.verdict"] == row.verdict
    best = runfolder.ranked_frame(results).iloc[0]
    assert keyed["top.0.trial_id"] == best["trial_id"]
    assert keyed["top.0.val_acc_best"] == f"{best['val_acc_best'] * 100:.2f}"


def test_tables_are_written_as_csv(grid_run, grid_page):
    tables = grid_run / "report_tables"
    names = {path.stem for path in tables.glob("*.csv")}
    assert {"ablation", "top_k", "failed", "failure_messages", "status_counts", "pareto_macs", "pareto_params",
            "retrained"} <= names
    top = pd.read_csv(tables / "top_k.csv")
    assert len(top) == 5 and "arch_yaml" in top.columns


def test_top_architectures_show_spec_and_load_lines(grid_page):
    # Trials with kept weights load by id or folder; the others offer their spec.
    assert "models.load(&quot;runs/shortcut_ablation&quot;, trial=&quot;trial_" in grid_page
    assert "models.load(&quot;runs/shortcut_ablation/checkpoints/trial_" in grid_page
    assert "models.build(models.load_spec(&quot;runs/shortcut_ablation&quot;, trial=&quot;trial_" in grid_page
    assert "<summary>arch.yaml</summary><pre>stages:" in grid_page


def test_failed_and_pruned_trials_show_their_messages(grid_page):
    text = _text(grid_page)
    assert "TrialDiverged: the loss became nan at epoch 2" in text or "CUDA out of memory" in text
    assert "stopped early by the scheduler after epoch 2" in text


def test_retrained_section_groups_by_architecture(grid_run, grid_page):
    keyed = _parse(grid_page).keyed
    retrain = pd.read_parquet(grid_run / "retrain.parquet")
    for arch_key, group in retrain.groupby("arch_key"):
        assert keyed[f"retrained.{arch_key}.test_acc.n"] == str(len(group))
        assert keyed[f"retrained.{arch_key}.test_acc.mean"] == f"{group['test_acc'].mean() * 100:.2f}"
        assert keyed[f"retrained.{arch_key}.test_acc.std"] == f"{group['test_acc'].std() * 100:.2f}"


def test_grid_study_says_importances_do_not_apply(grid_page):
    assert "This is a grid study, not a searched (optuna) one: importances apply only to searched studies" in _text(grid_page)


def test_report_is_reproducible(grid_run, grid_page, copy_run):
    again = build_report(copy_run(grid_run)).read_text(encoding="utf-8")
    # Same numbers and figures; only the folder named in the footer differs.
    strip = lambda page: re.sub(r"from [^<]*\. Every table", "", page)  # noqa: E731
    assert strip(again) == strip(grid_page)


def test_one_trial_report_explains_what_cannot_be_computed(one_trial_run):
    text = _text(build_report(one_trial_run).read_text(encoding="utf-8"))
    assert "Only one trial completed" in text
    assert "no trials" in text  # the other levels
    assert "Best trial by val_acc_best: trial_0000" in text


def test_failed_only_report_explains_and_lists_failures(failed_only_run):
    page = build_report(failed_only_run).read_text(encoding="utf-8")
    text = _text(page)
    assert "No trial completed with an accuracy" in text
    assert "no error distribution to draw" in text
    assert "nothing to rank" in text
    assert "has not finished" in text
    assert "RuntimeError: shapes do not match" in text
    assert "<img" not in page
    assert pd.read_csv(failed_only_run / "report_tables" / "failed.csv").shape[0] == 3


def test_single_level_report_says_there_is_nothing_to_compare(single_level_run):
    page = build_report(single_level_run).read_text(encoding="utf-8")
    text = _text(page)
    assert "has a single level (B)" in text
    assert "EMBEDDED SAMPLE" not in text and "full dataset" in text
    assert _parse(page).keyed["ablation.shortcut.B.test_acc.verdict"] == "reference"


def test_optuna_study_importances_from_storage(optuna_run):
    page = build_report(optuna_run).read_text(encoding="utf-8")
    text = _text(page)
    assert "PED-ANOVA (optuna.importance), on the trials stored in study.db" in text
    importances = pd.read_csv(optuna_run / "report_tables" / "importances.csv")
    assert importances["param"].iloc[0] == "lr"  # the synthetic accuracy depends on lr, barely on the block
    assert importances["share"].sum() == pytest.approx(1.0)
    # Numeric lr has no levels: no ablation rows for it, and the categorical block gets the colours.
    ablation = pd.read_csv(optuna_run / "report_tables" / "ablation.csv")
    assert set(ablation["factor"]) == {"block"}
    assert "colour = block" in text
    assert "lr are searched ranges without levels" in text


def test_optuna_study_with_few_trials_says_why_there_are_no_importances(optuna_few_trials_run):
    text = _text(build_report(optuna_few_trials_run).read_text(encoding="utf-8"))
    assert "Parameter importances cannot be computed: only 4 complete trial(s)" in text
    assert "needs at least 20" in text


def test_optuna_study_without_storage_uses_the_results_table(optuna_no_storage_run):
    text = _text(build_report(optuna_no_storage_run).read_text(encoding="utf-8"))
    assert "on the factor.* columns and val_acc_best of the complete trials in results.parquet, because study.db is missing" in text


def test_searched_study_with_only_numeric_factors_is_coloured_by_one(optuna_run, copy_run):
    run_dir = copy_run(optuna_run)
    info = json.loads((run_dir / "run.json").read_text())
    del info["factors"]["block"]
    (run_dir / "run.json").write_text(json.dumps(info))
    results = pd.read_parquet(run_dir / "results.parquet").drop(columns=["factor.block"])
    results.to_parquet(run_dir / "results.parquet")
    text = _text(build_report(run_dir).read_text(encoding="utf-8"))
    assert "colour = lr (numeric, see the colour bar)" in text
    assert "no categorical factor with declared levels" in text


def test_missing_run_json_and_curves_degrade_with_notes(grid_run, copy_run):
    run_dir = copy_run(grid_run)
    (run_dir / "run.json").unlink()
    (run_dir / "curves.parquet").unlink()
    (run_dir / "trials.jsonl").unlink()  # the trial log holds the curves too: a folder from before the log
    text = _text(build_report(run_dir).read_text(encoding="utf-8"))
    assert "run.json is missing" in text
    assert "curves.parquet is missing: no learning curves" in text
    assert "levels from results.parquet (inferred)" in text
    assert "(no study question recorded in run.json)" in text


def test_empty_results_table_still_gives_a_report(grid_run, copy_run):
    run_dir = copy_run(grid_run)
    pd.read_parquet(run_dir / "results.parquet").iloc[0:0].to_parquet(run_dir / "results.parquet")
    text = _text(build_report(run_dir).read_text(encoding="utf-8"))
    assert "results.parquet holds no trial" in text


def test_rebuild_removes_tables_of_an_earlier_build(grid_run, grid_page, tmp_path):
    # The earlier build is grid_page's (a build costs seconds): copied with its report and tables.
    run_dir = Path(shutil.copytree(grid_run, tmp_path / grid_run.name))
    assert (run_dir / "report_tables" / "retrained.csv").exists()
    (run_dir / "retrain.parquet").unlink()
    build_report(run_dir)
    assert not (run_dir / "report_tables" / "retrained.csv").exists()


def test_user_text_is_escaped(grid_run, copy_run):
    run_dir = copy_run(grid_run)
    info = json.loads((run_dir / "run.json").read_text())
    info["question"] = "<script>alert(1)</script> Is B > A?"
    (run_dir / "run.json").write_text(json.dumps(info))
    page = build_report(run_dir).read_text(encoding="utf-8")
    assert "<script>" not in page
    assert "&lt;script&gt;alert(1)&lt;/script&gt; Is B &gt; A?" in page


@pytest.mark.parametrize("change,message", [
    (lambda frame: frame.assign(status="running"), "field status: got 'running'; allowed: complete, failed, pruned"),
    (lambda frame: frame.drop(columns=["trial_id"]), "missing column(s) trial_id"),
])
def test_bad_results_table_raises_a_message_naming_file_and_field(grid_run, copy_run, change, message):
    run_dir = copy_run(grid_run)
    change(pd.read_parquet(run_dir / "results.parquet")).to_parquet(run_dir / "results.parquet")
    with pytest.raises(ReportError, match=re.escape(message)) as error:
        load_run(run_dir)
    assert str(run_dir / "results.parquet") in str(error.value)


def test_bad_top_k_is_rejected(grid_run):
    with pytest.raises(ReportError, match="top_k: got 0"):
        build_report(grid_run, top_k=0)


def test_corrupt_run_json_is_named(grid_run, copy_run):
    run_dir = copy_run(grid_run)
    (run_dir / "run.json").write_text("{not json")
    with pytest.raises(ReportError, match=re.escape(str(Path(run_dir) / "run.json")) + ": not readable JSON"):
        load_run(run_dir)


# A level that fails to parse as mathtext, one with an escaped dollar, one that parses (and would be drawn in italics).
MATHTEXT_LEVELS = ["$\\frac{a$", "a\\$b", "$x$"]


def test_dollar_signs_in_user_text_are_drawn_as_written(tmp_path, monkeypatch):
    import synthetic_run as synthetic
    from matplotlib.figure import Figure
    from matplotlib.text import Text

    drawn: list[tuple[str, bool]] = []
    save = Figure.savefig

    def record(figure, *args, **kwargs):
        result = save(figure, *args, **kwargs)  # texts as drawn, tick labels included
        drawn.extend((text.get_text(), text.get_parse_math()) for text in figure.findobj(Text))
        return result

    monkeypatch.setattr(Figure, "savefig", record)
    trials = synthetic.grid_trials({"$v$ariant": MATHTEXT_LEVELS}, [0, 1])
    results, curves = synthetic.build_results(trials, epochs=2)
    info = synthetic.run_info("$cost$ of $\\alpha", {"$v$ariant": {"levels": MATHTEXT_LEVELS, "reference": "$x$"}},
                              trials=len(trials), question="Is $x$ worth $5?", seeds=[0, 1])
    page = build_report(synthetic.write_run(tmp_path / "run", results, info, curves)).read_text(encoding="utf-8")
    assert "Is $x$ worth $5?" in page
    with_user_text = [(text, parse_math) for text, parse_math in drawn
                      if "$v$ariant" in text or any(level in text for level in MATHTEXT_LEVELS)]
    assert with_user_text and all(not parse_math for _, parse_math in with_user_text), with_user_text


@pytest.mark.parametrize("text", MATHTEXT_LEVELS + ["\\$", "$$", "50% of C:\\runs\\$HOME"])
def test_literal_text_draws_like_text_without_mathtext(text):
    import numpy as np
    from matplotlib.backends.backend_agg import FigureCanvasAgg
    from matplotlib.figure import Figure

    from reports._figures import literal

    def pixels(label: str, parse_math: bool) -> np.ndarray:
        figure = Figure(figsize=(3, 0.5), dpi=50)
        canvas = FigureCanvasAgg(figure)
        figure.text(0.01, 0.3, label, parse_math=parse_math)
        canvas.draw()
        return np.asarray(canvas.buffer_rgba()).copy()

    assert np.array_equal(pixels(literal(text), True), pixels(text, False))


def test_importance_tick_labels_with_dollar_signs_are_drawn():
    from reports._figures import importance_figure

    table = pd.DataFrame({"param": ["$\\frac{a$", "train.lr"], "share": [0.7, 0.3]})
    assert importance_figure(table).startswith("data:image/png;base64,")


def test_csv_text_that_a_spreadsheet_would_run_is_written_as_text(grid_run, copy_run):
    run_dir = copy_run(grid_run)
    frame = pd.read_parquet(run_dir / "results.parquet")
    frame.loc[frame["status"] == "failed", "error"] = '=HYPERLINK("http://x","click")'
    frame.to_parquet(run_dir / "results.parquet")
    build_report(run_dir)
    failures = (run_dir / "report_tables" / "failed.csv").read_text(encoding="utf-8")
    assert "'=HYPERLINK" in failures and ",=HYPERLINK" not in failures and '"=HYPERLINK' not in failures
    numbers = pd.read_csv(run_dir / "report_tables" / "ablation.csv")
    assert (numbers.select_dtypes("number") < 0).any().any()  # negative numbers stay numbers


def test_spreadsheet_text_leaves_numbers_and_plain_text():
    from reports._csv_folder import spreadsheet_frame

    frame = pd.DataFrame({"text": ["-0.5", "+1.2", "-", "@SUM(A1)", "plain", None], "number": [-1.0] * 6,
                          "=cmd": ["a"] * 6})
    safe = spreadsheet_frame(frame)
    assert list(safe["text"])[:5] == ["-0.5", "+1.2", "'-", "'@SUM(A1)", "plain"] and safe["text"].isna().iloc[5]
    assert list(safe.columns) == ["text", "number", "'=cmd"] and list(safe["number"]) == [-1.0] * 6
