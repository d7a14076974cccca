"""The comparison page: its header, its sections, and the writer that puts the page and its CSVs on disk.

The page is built from the report's HTML pieces (reports._html): the same
style, the same escaping, the same Content-Security-Policy that forbids every
network fetch. Every table it shows is written beside it as CSV.
"""

from __future__ import annotations

from pathlib import Path

import pandas as pd

import runfolder
from reports import _html as h
from reports._compare import (ALL_PAIRS, CHANGED, NOT_IN_EVERY_RUN, STUDY_SECTION, TRAINED_SECTION, Comparison,
                              CompareError, runs_table)
from reports._csv_folder import write_csv_folder
from reports._html import Cell, verdict_html
from reports._stats import ALPHA, metric_name

# The page lists at most this many rows of a long table; the CSV has all of them.
MAX_ROWS = 300
# The answer at a glance names at most this many differing fields.
MAX_GLANCE_FIELDS = 8


def tables_dir(out: Path) -> Path:
    """The folder beside the page that holds its tables: compare_tables/ for compare.html."""
    return out.parent / f"{out.stem}_tables"


def _pp(value) -> str:
    return h.signed_points(value)


def _ci(low, high) -> str:
    return "—" if pd.isna(low) or pd.isna(high) else f"{h.signed_points(low)} to {h.signed_points(high)}"


def _verdict_cell(verdict, key: str) -> Cell:
    if pd.isna(verdict):
        return Cell("—", key=key, value="")
    return Cell(verdict_html(str(verdict)), key=key, value=str(verdict), trusted_html=True)


def _limited(frame: pd.DataFrame, what: str, csv: str) -> tuple[pd.DataFrame, str]:
    if len(frame) <= MAX_ROWS:
        return frame, ""
    return frame.head(MAX_ROWS), h.note(f"The first {MAX_ROWS} of {len(frame)} {what}; all of them are in {csv}.")


# ---------------------------------------------------------------- header


def _differing_fields(comparison: Comparison) -> pd.DataFrame:
    differences = comparison.differences
    return differences[differences["differs"].astype(bool)]


def _glance_fields(differing: pd.DataFrame) -> pd.DataFrame:
    """Each differing field once (train.lr differs in study.yaml and as trained: one mention)."""
    return differing.drop_duplicates("field", keep="first")


def _short(text: str, limit: int = 40) -> str:
    """A value cut for the answer at a glance (a searched setting lists every value it took)."""
    return text if len(text) <= limit else text[:limit - 1] + "…"


def _glance(comparison: Comparison) -> str:
    lines = []
    differing = _glance_fields(_differing_fields(comparison))
    labels = [compared.label for compared in comparison.runs]
    if differing.empty:
        lines.append("The runs differ in no field of study.yaml, the trained settings, data, budget, versions or "
                     "hardware.")
    else:
        shown = []
        for row in differing.head(MAX_GLANCE_FIELDS).to_dict("records"):
            values = " → ".join(h.escape(_short(row[label])) for label in labels)
            shown.append(f'<code data-key="glance.differs.{h.escape(row["field"])}">{h.escape(row["field"])}</code> '
                         f"({values})")
        more = f", and {len(differing) - MAX_GLANCE_FIELDS} more" if len(differing) > MAX_GLANCE_FIELDS else ""
        lines.append(f"The runs differ in {len(differing)} field(s): {'; '.join(shown)}{more}.")
    metric = metric_name(comparison.metric)
    for row in comparison.pooled.to_dict("records"):
        name = f"<b>{h.escape(row['run'])}</b> vs {h.escape(row['reference'])}"
        if row["n"] == 0:
            lines.append(f"{name}: no complete trial with the same architecture, factor levels and seed in both; "
                         "compare the distributions below.")
        elif row["n"] < 2:
            lines.append(f"{name}: one shared trial ({_pp(row['diff'])} pp {h.escape(metric)}); a paired test needs two.")
        else:
            lines.append(f"{name} on the same {row['n']} trials ({row['cells']} cell(s) × seeds): "
                         f"{h.keyed_span(_pp(row['diff']), 'glance.' + row['run'] + '.diff', row['diff'])} pp "
                         f"{h.escape(metric)} (paired t 95% CI {_ci(row['diff_ci_low'], row['diff_ci_high'])}, "
                         f"p = {h.p_value_text(row['p_value'])}) — {verdict_html(row['verdict'])}.")
    verdicts = pd.concat([comparison.ablation, comparison.simple_effects])
    if len(verdicts):
        changed = int((verdicts["change"] == CHANGED).sum())
        lines.append(f"Ablation verdicts: {changed} of {len(verdicts)} comparisons changed between runs"
                     + (" (marked below)." if changed else "."))
    return '<div class="findings"><b>At a glance</b><ul>' + "".join(f"<li>{line}</li>" for line in lines) + "</ul></div>"


def _banners(comparison: Comparison) -> str:
    sample, synthetic, unfinished = [], [], []
    for compared in comparison.runs:
        dataset = compared.run.info.get("dataset") if isinstance(compared.run.info.get("dataset"), dict) else {}
        if dataset.get("embedded_sample"):
            sample.append(compared.label)
        elif dataset.get("name") == "synthetic":
            synthetic.append(compared.label)
        if compared.run.info and not compared.run.info.get("finished"):
            unfinished.append(compared.label)
    banners = []
    if sample:
        banners.append(h.banner(f"EMBEDDED SAMPLE, NOT THE FULL DATASET: {', '.join(sample)}. Accuracies are far below "
                                "full-data results; compare the runs with each other, not with published numbers.",
                                "danger"))
    if synthetic:
        banners.append(h.banner(f"SYNTHETIC DATA: {', '.join(synthetic)}. These accuracies say nothing about real "
                                "images.", "danger"))
    if unfinished:
        banners.append(h.banner(f"Not finished (run.json has no finish time): {', '.join(unfinished)}; compared on the "
                                "trials recorded so far."))
    return "".join(banners)


def _runs_section(comparison: Comparison) -> str:
    table = runs_table(comparison.runs)
    rows = []
    for index, row in enumerate(table.to_dict("records")):
        role = "reference" if index == 0 else f"against {table['run'].iloc[0]}"
        rows.append([Cell(row["run"], key=f"runs.{index}.label"), role, Cell(row["folder"]), row["study"],
                     Cell(h.count(row["complete"]), numeric=True), Cell(h.count(row["trials"]), numeric=True),
                     "—" if pd.isna(row["planned"]) or row["planned"] is None else h.count(row["planned"]),
                     row["finished"] or "not finished"])
    return h.table(["run", "role", "folder", "study", "complete", "recorded", "planned", "finished"], rows,
                   testid="runs")


def header(comparison: Comparison, sections: list[tuple[str, str]]) -> str:
    """Title, the runs, navigation, banners, the answer at a glance and notes."""
    labels = [compared.label for compared in comparison.runs]
    questions = list(dict.fromkeys(str(c.run.info.get("question")) for c in comparison.runs if c.run.info.get("question")))
    question = (f'<p class="question">{h.escape(questions[0])}</p>' if len(questions) == 1 else
                "".join(f'<p class="question">{h.escape(c.label)}: {h.escape(c.run.info.get("question", ""))}</p>'
                        for c in comparison.runs))
    nav = "".join(f'<a href="#{h.escape(anchor)}">{h.escape(title)}</a>' for anchor, title in sections)
    notes = "".join(h.note(text) for text in comparison.notes)
    return (f"<header><h1>Compare: {h.escape(' vs '.join(labels))}</h1>{question}<nav>{nav}</nav></header>"
            + _banners(comparison) + _glance(comparison) + _runs_section(comparison) + notes)


# ---------------------------------------------------------------- sections


def _differences_section(comparison: Comparison) -> str:
    labels = [compared.label for compared in comparison.runs]
    differing = _differing_fields(comparison)
    same = comparison.differences[~comparison.differences["differs"].astype(bool)]
    intro = (f'<p class="muted">Field by field: {h.escape(STUDY_SECTION)} as run (after --set overrides; a field it '
             f"leaves out keeps its default), {h.escape(TRAINED_SECTION)} (the settings the trials trained with, "
             "defaults included), and run.json's data, budget, versions and hardware.</p>")

    def rows(frame: pd.DataFrame) -> list[list]:
        return [[row["section"], Cell(row["field"], key=f"differs.{row['section']}.{row['field']}", value=row["field"]),
                 *[Cell(row[label], key=f"value.{label}.{row['field']}") for label in labels]]
                for row in frame.to_dict("records")]

    if differing.empty:
        body = h.note("No field differs between the runs.")
    else:
        body = h.table(["section", "field", *labels], rows(differing), testid="differences")
    equal = (f"<details><summary>{len(same)} field(s) equal in every run</summary>"
             f"{h.table(['section', 'field', *labels], rows(same))}</details>") if len(same) else ""
    return intro + body + equal


def _pairs_section(comparison: Comparison) -> str:
    metric = metric_name(comparison.metric)
    keys = ", ".join(comparison.join_columns)
    reference = comparison.reference.label
    intro = (f'<p class="muted">Trials are joined on {h.escape(keys)}: the same network in the same cell of the design '
             f"on the same seed, trained in both runs. Each run is compared with {h.escape(reference)} on "
             f"{h.escape(metric)}: per cell a paired t-test over its seeds, Holm-adjusted over the cells of that pair "
             f"of runs; higher or lower exactly when the Holm p < {ALPHA:g}. The first table pools every shared pair "
             "into one paired t-test (one test per run, no adjustment). Differences are in percentage points, run "
             f"minus {h.escape(reference)}.</p>")
    pooled_rows = []
    for row in comparison.pooled.to_dict("records"):
        key = f"pooled.{row['run']}"
        pooled_rows.append([
            row["run"], Cell(h.count(row["joined"]), numeric=True),
            Cell(h.count(row["n"]), key=f"{key}.n", value=int(row["n"]), numeric=True),
            Cell(h.count(row["cells"]), numeric=True),
            Cell(h.percent(row["mean_ref"]), numeric=True), Cell(h.percent(row["mean_run"]), numeric=True),
            Cell(_pp(row["diff"]), key=f"{key}.diff", value=row["diff"], numeric=True),
            Cell(_ci(row["diff_ci_low"], row["diff_ci_high"]), numeric=True),
            Cell(h.p_value_text(row["p_value"]), key=f"{key}.p_value", value=row["p_value"], numeric=True),
            _verdict_cell(row["verdict"], f"{key}.verdict")])
    pooled = h.table(["run", "joined", "pairs (both complete)", "cells", f"{reference} (%)", "run (%)", "diff (pp)",
                      "95% CI (pp)", "paired t p", "verdict"], pooled_rows, testid="paired-all")
    cells, more = _limited(comparison.paired_cells, "cells", "the CSV folder's paired_cells.csv")
    cell_rows = []
    for index, row in enumerate(cells.to_dict("records")):
        label = runfolder.factor_label(row) or "(no factor)"
        key = f"cells.{row['run']}.{index}"
        cell_rows.append([
            row["run"], Cell(label, key=f"{key}.cell"), Cell(str(row.get("arch_key", ""))[:8]), row["seeds"],
            Cell(h.count(row["n"]), numeric=True),
            Cell(h.percent(row["mean_ref"]), numeric=True), Cell(h.percent(row["mean_run"]), numeric=True),
            Cell(_pp(row["diff"]), key=f"{key}.diff", value=row["diff"], numeric=True),
            Cell(_ci(row["diff_ci_low"], row["diff_ci_high"]), numeric=True),
            Cell(h.p_value_text(row["p_value"]), numeric=True), Cell(h.p_value_text(row["p_adjusted"]), numeric=True),
            _verdict_cell(row["verdict"], f"{key}.verdict")])
    cell_table = (h.table(["run", "cell", "arch", "seeds", "n", f"{reference} (%)", "run (%)", "diff (pp)",
                           "95% CI (pp)", "p", "Holm p", "verdict"], cell_rows, testid="paired-cells")
                  if cell_rows else h.note("No cell has a complete trial in both runs."))
    unpaired = []
    for compared in comparison.runs[1:]:
        joined = int((comparison.pairs["run"] == compared.label).sum())
        unpaired.append(f"{compared.label}: {len(compared.run.results) - joined} of {len(compared.run.results)} "
                        f"trial(s) without a partner in {reference}")
    return (intro + f"<h3>{h.escape(ALL_PAIRS.capitalize())}</h3>" + pooled + "<h3>Per shared cell</h3>" + cell_table
            + more + f'<p class="muted">{h.escape("; ".join(unpaired))}. Every joined pair is in '
            "pairs.csv in the CSV folder beside this page.</p>")


def _figures_section(comparison: Comparison) -> str:
    from reports import _compare_figures as figures  # seaborn and matplotlib: seconds, only when drawing

    metric = comparison.metric
    parts = [h.figure(figures.overlaid_error_edf(comparison.runs, metric),
                      f"Error EDF of each run ({metric_name(metric)})",
                      "Fraction of each run's complete trials below each error (Radosavovic et al. 2020, Sec. 3.1): "
                      "a curve further left and higher is a better population of models.")]
    for cost in comparison.pareto:
        parts.append(h.figure(figures.overlaid_pareto(comparison.runs, metric, cost),
                              f"Pareto fronts of {metric_name(metric)} against {cost}",
                              f"Each run's trials (faint) and its Pareto front (steps): no trial of that run is both "
                              f"cheaper in {cost} and more accurate than a point on its front."))
    if not comparison.pareto:
        parts.append(h.note("Not every run has a macs or params column: no Pareto fronts."))
    return f'<div class="grid">{"".join(parts)}</div>'


def _verdict_rows(frame: pd.DataFrame, comparison: Comparison, keys: list[str], prefix: str) -> tuple[list, list]:
    labels = [compared.label for compared in comparison.runs]
    rows, classes = [], []
    for index, row in enumerate(frame.to_dict("records")):
        name = ".".join(str(row[key]) for key in keys if row.get(key))
        cells = [row[key] or "—" for key in keys]
        for label in labels:
            diff = row.get(f"{label}: diff")
            text = "—" if pd.isna(row.get(f"{label}: verdict")) else f"{_pp(diff)} pp"
            cells += [Cell(text, numeric=True), _verdict_cell(row.get(f"{label}: verdict"), f"{prefix}.{name}.{label}")]
        mark = {CHANGED: '<span class="changed-mark">⚑ changed</span>', NOT_IN_EVERY_RUN: "not in every run"}
        cells.append(Cell(mark.get(row["change"], row["change"]), key=f"{prefix}.{name}.change", value=row["change"],
                          trusted_html=True))
        rows.append(cells)
        classes.append("changed" if row["change"] == CHANGED else "")
    return rows, classes


def _verdicts_section(comparison: Comparison) -> str:
    labels = [compared.label for compared in comparison.runs]
    intro = (f'<p class="muted">Each run\'s own verdicts on {h.escape(metric_name(comparison.metric))}, as its report '
             "gives them: each level against its reference (paired t or Welch, Holm over the factor's levels; "
             f"higher or lower when the Holm p < {ALPHA:g}). A row marked ⚑ changed has a different verdict in some "
             "run. Differences in pp against the level's reference, within each run.</p>")
    parts = [intro]
    for title, frame, keys, prefix, csv in (
            ("Pooled over the other factors", comparison.ablation, ["factor", "level"], "ablation", "ablation_verdicts"),
            ("Simple effects: within each combination of the other factors", comparison.simple_effects,
             ["factor", "level", "within"], "simple", "simple_effect_verdicts")):
        parts.append(f"<h3>{h.escape(title)}</h3>")
        if frame.empty:
            parts.append(h.note("No run has a comparison of this kind."))
            continue
        shown, more = _limited(frame, "comparisons", f"the CSV folder's {csv}.csv")
        rows, classes = _verdict_rows(shown, comparison, keys, prefix)
        headers = [*keys] + [part for label in labels for part in (f"{label} diff", f"{label} verdict")] + ["change"]
        parts.append(h.table(headers, rows, row_classes=classes, testid=csv.replace("_", "-")) + more)
    return "".join(parts)


SECTIONS = (
    ("differences", "What differs", _differences_section),
    ("paired", "Paired trials", _pairs_section),
    ("distributions", "Error EDFs and Pareto fronts", _figures_section),
    ("verdicts", "Ablation verdicts side by side", _verdicts_section),
)


def render_comparison(comparison: Comparison) -> str:
    """The whole comparison page."""
    body = [header(comparison, [(anchor, title) for anchor, title, _ in SECTIONS])]
    body += [h.section(anchor, title, render(comparison)) for anchor, title, render in SECTIONS]
    folders = ", ".join(str(compared.path.resolve()) for compared in comparison.runs)
    body.append(f'<footer class="muted"><p>Built by <code>python -m reports.compare</code> from {h.escape(folders)}. '
                "Every table is also in the CSV folder beside this file (accuracies there are fractions, not "
                "percentages).</p></footer>")
    labels = " vs ".join(compared.label for compared in comparison.runs)
    return h.page(f"resnas comparison — {labels}", "".join(body))


def write_comparison(comparison: Comparison, out: str | Path) -> Path:
    """Write the page to `out` (atomically) and its tables to <out stem>_tables/*.csv; return the page's path."""
    out = Path(out)
    if out.is_dir():
        raise CompareError(f"--out {out}: is a folder; give the page's file name, e.g. {out / 'compare.html'}")
    page = render_comparison(comparison)
    directory = tables_dir(out)
    try:
        out.parent.mkdir(parents=True, exist_ok=True)
        write_csv_folder(directory, comparison.csv_tables())
        runfolder.atomic_write_text(out, page)
    except OSError as error:
        raise CompareError(f"{error.filename or out}: cannot write the comparison ({error.strerror or error})") from None
    return out
