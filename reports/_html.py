"""Small HTML building blocks; every piece of user text passes through `escape`.

No template engine: the page is a handful of tables and figures, and plain
functions keep the escaping visible. No external CSS, JS or fonts, so the
page opens offline and makes no request.
"""

from __future__ import annotations

import html
import math
from dataclasses import dataclass
from typing import Any, Iterable

# The system font stacks: nothing is downloaded.
CSS = """
:root { --ink:#1d2430; --muted:#5b6472; --line:#d9dee5; --band:#f5f7fa; --accent:#1f5fa8; }
* { box-sizing: border-box; }
body { margin:0; font: 15px/1.5 system-ui, -apple-system, "Segoe UI", Roboto, "DejaVu Sans", sans-serif;
       color:var(--ink); background:#fff; }
main { max-width: 1200px; margin: 0 auto; padding: 16px 24px 64px; }
h1 { font-size: 26px; margin: 8px 0 4px; }
h2 { font-size: 20px; margin: 36px 0 8px; padding-top: 8px; border-top: 2px solid var(--line); }
h3 { font-size: 16px; margin: 20px 0 6px; }
p.question { font-size: 18px; margin: 4px 0 12px; color: var(--accent); }
.muted, figcaption { color: var(--muted); font-size: 13px; }
code, pre { font: 13px/1.4 ui-monospace, "DejaVu Sans Mono", Menlo, Consolas, monospace; }
pre { background: var(--band); padding: 8px 10px; border-radius: 4px; overflow-x: auto; margin: 4px 0; }
.banner { padding: 12px 16px; border-radius: 6px; margin: 12px 0; font-weight: 600; }
.banner.warn { background:#fff1c2; border: 2px solid #e0a800; }
.banner.danger { background:#ffe0e0; border: 2px solid #c62828; color:#7a1010; }
.note { background: var(--band); border-left: 4px solid #8a94a3; padding: 8px 12px; margin: 8px 0; }
.findings { background:#eef5ff; border: 1px solid #bcd3f2; border-radius: 6px; padding: 10px 16px; margin: 12px 0; }
.findings li { margin: 4px 0; }
nav { font-size: 13px; margin: 8px 0 0; }
nav a { margin-right: 12px; color: var(--accent); text-decoration: none; }
.table-wrap { max-height: 560px; overflow: auto; border: 1px solid var(--line); border-radius: 4px; margin: 6px 0 4px; }
table { border-collapse: collapse; width: 100%; font-size: 13.5px; }
th, td { padding: 4px 8px; border-bottom: 1px solid var(--line); text-align: left; vertical-align: top; }
th { position: sticky; top: 0; background: #e9edf2; z-index: 1; }
th.num { text-align: right; }
td.num { text-align: right; font-variant-numeric: tabular-nums; white-space: nowrap; }
tbody tr:nth-child(even) td { background: #fafbfc; }
tr.group-start td { border-top: 2px solid #b8c0cc; }
dl.meta { display: grid; grid-template-columns: 180px 1fr; gap: 2px 16px; margin: 8px 0; }
dl.meta dt { color: var(--muted); }
dl.meta dd { margin: 0; }
.grid { display: grid; grid-template-columns: 1fr 1fr; gap: 16px; }
figure { margin: 8px 0; }
figure img { display: block; max-width: 100%; height: auto; border: 1px solid var(--line); border-radius: 4px; }
.verdict { font-weight: 600; white-space: nowrap; }
.verdict-higher { color: #1b7a2e; } .verdict-lower { color: #b3261e; }
.verdict-within-noise { color: #5b6472; } .verdict-n-too-small, .verdict-no-trials { color: #a15c00; }
.verdict-reference { color: var(--accent); }
.status-failed { color: #b3261e; font-weight: 600; } .status-pruned { color: #a15c00; font-weight: 600; }
details > summary { cursor: pointer; color: var(--accent); }
tbody tr.changed td { background: #fff4d6; } .changed-mark { color: #a15c00; font-weight: 700; }
"""


def escape(value: Any) -> str:
    """HTML-escaped text of any value (quotes included, so it is safe in attributes too)."""
    return html.escape(str(value), quote=True)


@dataclass(frozen=True)
class Cell:
    """A table cell: shown text, plus an optional stable `data-key` and exact `data-value` for tests."""

    text: str
    key: str | None = None
    value: Any = None
    numeric: bool = False
    css: str | None = None
    # True when `text` is HTML built in this package (already escaped).
    trusted_html: bool = False

    def render(self) -> str:
        attributes = []
        classes = " ".join(part for part in ("num" if self.numeric else "", self.css or "") if part)
        if classes:
            attributes.append(f'class="{escape(classes)}"')
        if self.key is not None:
            attributes.append(f'data-key="{escape(self.key)}"')
        if self.value is not None:
            attributes.append(f'data-value="{escape(_exact(self.value))}"')
        body = self.text if self.trusted_html else escape(self.text)
        return f"<td {' '.join(attributes)}>{body}</td>" if attributes else f"<td>{body}</td>"


def keyed_span(text: str, key: str, value: Any) -> str:
    """An inline number with a stable data-key (and its exact data-value) for tests that read the page."""
    return f'<span data-key="{escape(key)}" data-value="{escape(_exact(value))}">{escape(text)}</span>'


def _exact(value: Any) -> str:
    if isinstance(value, float):
        return "nan" if math.isnan(value) else repr(value)
    return str(value)


def _is_missing(value: Any) -> bool:
    try:
        return value is None or math.isnan(float(value))
    except (TypeError, ValueError):
        return False


def percent(fraction: Any) -> str:
    """A fraction in [0, 1] as a percentage with 2 decimals, '—' when missing."""
    return "—" if _is_missing(fraction) else f"{float(fraction) * 100:.2f}"


def signed_points(fraction: Any) -> str:
    """A difference of fractions in percentage points with a sign, '—' when missing."""
    return "—" if _is_missing(fraction) else f"{float(fraction) * 100:+.2f}"


def p_value_text(p: Any) -> str:
    """A p-value with 3 significant digits, '—' when undefined."""
    if _is_missing(p):
        return "—"
    # scipy returns exactly 0 once the p-value underflows double precision.
    return "< 1e-300" if float(p) == 0.0 else f"{float(p):.3g}"


def count(value: Any) -> str:
    """An integer with thousands separators, '—' when missing."""
    return "—" if _is_missing(value) else f"{int(value):,}"


def engineering(value: Any) -> str:
    """A large count in engineering notation, e.g. 40.6M; '—' when missing."""
    if _is_missing(value):
        return "—"
    value = float(value)
    for factor, suffix in ((1e12, "T"), (1e9, "G"), (1e6, "M"), (1e3, "k")):
        if abs(value) >= factor:
            return f"{value / factor:.3g}{suffix}"
    return f"{value:g}"


def value_text(value: Any) -> str:
    """A table value as text: floats to 4 significant digits, missing as '—'."""
    if isinstance(value, float):
        return "—" if math.isnan(value) else f"{value:.4g}"
    return "—" if value is None else str(value)


def table(headers: Iterable[str], rows: Iterable[Iterable[Any]], row_classes: Iterable[str] | None = None,
          testid: str | None = None) -> str:
    """A scrollable table with a sticky header; cells are `Cell`s or plain values (escaped)."""
    rows = [list(row) for row in rows]
    # A column of numbers gets a right-aligned header, like its cells.
    numeric = [isinstance(cell, Cell) and cell.numeric for cell in rows[0]] if rows else []
    head = "".join(f'<th class="num">{escape(header)}</th>' if index < len(numeric) and numeric[index]
                   else f"<th>{escape(header)}</th>" for index, header in enumerate(headers))
    row_classes = list(row_classes) if row_classes is not None else None
    body = []
    for index, row in enumerate(rows):
        cells = "".join(cell.render() if isinstance(cell, Cell) else f"<td>{escape(cell)}</td>" for cell in row)
        css = row_classes[index] if row_classes else ""
        body.append(f'<tr class="{escape(css)}">{cells}</tr>' if css else f"<tr>{cells}</tr>")
    test_attribute = f' data-testid="{escape(testid)}"' if testid else ""
    return (f'<div class="table-wrap"><table{test_attribute}><thead><tr>{head}</tr></thead>'
            f"<tbody>{''.join(body)}</tbody></table></div>")


def verdict_class(verdict: str) -> str:
    """The CSS class of a verdict, e.g. verdict-within-noise."""
    return "verdict-" + verdict.replace(" ", "-")


def verdict_html(verdict: str) -> str:
    """A verdict as coloured bold text."""
    return f'<span class="verdict {verdict_class(verdict)}">{escape(verdict)}</span>'


def note(text: str) -> str:
    """A grey box with an explanation (escaped)."""
    return f'<div class="note">{escape(text)}</div>'


def banner(text: str, level: str = "warn") -> str:
    """A loud coloured box for things that change how the page must be read."""
    return f'<div class="banner {escape(level)}" role="alert">{escape(text)}</div>'


def figure(data_uri: str, alt: str, caption: str | None = None) -> str:
    """An embedded PNG with alt text and an optional caption."""
    caption_html = f"<figcaption>{escape(caption)}</figcaption>" if caption else ""
    return f'<figure><img src="{escape(data_uri)}" alt="{escape(alt)}">{caption_html}</figure>'


def section(anchor: str, title: str, body: str) -> str:
    """An <h2> section with an id for the navigation bar."""
    return f'<section id="{escape(anchor)}"><h2>{escape(title)}</h2>{body}</section>'


def page(title: str, body: str, refresh_s: int | None = None) -> str:
    """The whole self-contained document; `refresh_s` makes it reload itself (the live report while a study runs)."""
    # A meta refresh reloads the same file: it fetches nothing else, and CSP's default-src does not govern it.
    refresh = f'<meta http-equiv="refresh" content="{int(refresh_s)}">' if refresh_s else ""
    return ("<!DOCTYPE html>\n<html lang=\"en\"><head><meta charset=\"utf-8\">"
            "<meta name=\"viewport\" content=\"width=device-width, initial-scale=1\">" + refresh +
            # Forbid every network fetch: a stray external URL then fails loudly in the browser test.
            "<meta http-equiv=\"Content-Security-Policy\" content=\"default-src 'none'; img-src data:; style-src 'unsafe-inline'\">"
            f"<title>{escape(title)}</title><style>{CSS}</style></head>"
            f"<body><main>{body}</main></body></html>\n")
