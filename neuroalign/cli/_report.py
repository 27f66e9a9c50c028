"""A single-file HTML report: sections of text, tables, figures and truth-vs-recovered checks.

Figures are embedded as base64 PNGs and the page has no scripts, so it opens anywhere
(and loads without console errors in a headless browser).
"""

from __future__ import annotations

import base64
import html
import io
import os
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

__all__ = ["Check", "Report"]

_CSS = """
body{font-family:system-ui,-apple-system,Segoe UI,Roboto,sans-serif;max-width:1100px;margin:2em auto;
padding:0 1em;color:#222}
h1{border-bottom:2px solid #446;padding-bottom:.2em}h2{margin-top:1.6em;color:#335}
table{border-collapse:collapse;margin:.6em 0}td,th{border:1px solid #ccc;padding:.25em .6em;text-align:right}
th{background:#eef}td:first-child,th:first-child{text-align:left}
.pass{color:#080;font-weight:bold}.fail{color:#b00;font-weight:bold}
figure{margin:1em 0}figcaption{font-size:.9em;color:#555}img{max-width:100%}
pre{background:#f6f6f8;padding:.6em;overflow-x:auto}
"""


@dataclass
class Check:
    """One truth-vs-recovered comparison."""

    name: str
    truth: Any
    recovered: Any
    passed: bool


@dataclass
class Report:
    """Collects sections and writes one self-contained HTML file."""

    title: str
    blocks: list[str] = field(default_factory=list)
    checks: list[Check] = field(default_factory=list)

    def section(self, title: str, text: str | None = None) -> Report:
        self.blocks.append(f"<h2>{html.escape(title)}</h2>")
        if text:
            self.text(text)
        return self

    def text(self, text: str) -> Report:
        for para in text.strip().split("\n\n"):
            self.blocks.append(f"<p>{html.escape(para)}</p>")
        return self

    def code(self, text: str) -> Report:
        self.blocks.append(f"<pre>{html.escape(text)}</pre>")
        return self

    def table(self, rows: list[dict[str, Any]] | Any, *, caption: str | None = None) -> Report:
        """A table from a list of dicts or a pandas DataFrame."""
        if hasattr(rows, "to_dict"):
            rows = rows.reset_index().to_dict("records") if rows.index.name else rows.to_dict("records")
        rows = list(rows)
        if not rows:
            return self
        cols = list(rows[0])
        head = "".join(f"<th>{html.escape(str(c))}</th>" for c in cols)
        body = "".join(
            "<tr>" + "".join(f"<td>{html.escape(_fmt(r.get(c)))}</td>" for c in cols) + "</tr>" for r in rows
        )
        cap = f"<caption>{html.escape(caption)}</caption>" if caption else ""
        self.blocks.append(f"<table>{cap}<tr>{head}</tr>{body}</table>")
        return self

    def figure(self, fig, *, caption: str | None = None, dpi: int = 90) -> Report:
        """Embed a matplotlib figure as a PNG (the figure is closed afterwards)."""
        import matplotlib.pyplot as plt

        buf = io.BytesIO()
        fig.savefig(buf, format="png", dpi=dpi, bbox_inches="tight")
        plt.close(fig)
        data = base64.b64encode(buf.getvalue()).decode("ascii")
        cap = f"<figcaption>{html.escape(caption)}</figcaption>" if caption else ""
        self.blocks.append(f'<figure><img alt="{html.escape(caption or "figure")}" '
                           f'src="data:image/png;base64,{data}">{cap}</figure>')
        return self

    def check(self, name: str, truth: Any, recovered: Any, passed: bool) -> Check:
        c = Check(name, truth, recovered, bool(passed))
        self.checks.append(c)
        return c

    @property
    def all_passed(self) -> bool:
        return all(c.passed for c in self.checks)

    def to_html(self) -> str:
        rows = "".join(
            f"<tr><td>{html.escape(c.name)}</td><td>{html.escape(_fmt(c.truth))}</td>"
            f"<td>{html.escape(_fmt(c.recovered))}</td>"
            f"<td class=\"{'pass' if c.passed else 'fail'}\">{'PASS' if c.passed else 'FAIL'}</td></tr>"
            for c in self.checks
        )
        summary = (
            "<h2>Truth vs recovered</h2><table id=\"truth-vs-recovered\"><tr><th>check</th><th>truth</th>"
            f"<th>recovered</th><th>result</th></tr>{rows}</table>" if self.checks else ""
        )
        return (
            "<!DOCTYPE html><html lang=\"en\"><head><meta charset=\"utf-8\">"
            f"<title>{html.escape(self.title)}</title><style>{_CSS}</style></head><body>"
            f"<h1>{html.escape(self.title)}</h1>{summary}{''.join(self.blocks)}</body></html>"
        )

    def save(self, path: str | os.PathLike) -> Path:
        """Write the report atomically (temporary file, then rename)."""
        path = Path(path)
        path.parent.mkdir(parents=True, exist_ok=True)
        tmp = path.with_name(f".{path.name}.tmp")
        tmp.write_text(self.to_html(), encoding="utf-8")
        os.replace(tmp, path)
        return path


def _fmt(value: Any) -> str:
    if isinstance(value, float):
        return f"{value:.4g}"
    return "" if value is None else str(value)
