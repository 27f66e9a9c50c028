"""A single-file HTML report: sections of text, tables, figures and truth-vs-recovered checks.

Every string that reaches the page (titles, stimulus ids, ROI names, recipe values,
captions, table cells) goes through one autoescaping jinja2 template, and the page carries a
Content-Security-Policy that allows no script at all, images only from ``data:`` URLs and
only the report's own style sheet (by its hash). Figures are embedded as base64 PNGs, so the
page opens anywhere, offline.
"""

from __future__ import annotations

import base64
import hashlib
import io
import os
import re
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

__all__ = ["Check", "Report", "CHECK_STATUSES", "stamped", "is_report"]

_CSS = """
body{font-family:system-ui,-apple-system,Segoe UI,Roboto,sans-serif;max-width:1100px;margin:2em auto;
padding:0 1em;color:#222}
h1{border-bottom:2px solid #446;padding-bottom:.2em}h2{margin-top:1.6em;color:#335}
table{border-collapse:collapse;margin:.6em 0}td,th{border:1px solid #ccc;padding:.25em .6em;text-align:right}
th{background:#eef}td:first-child,th:first-child{text-align:left}
.pass{color:#080;font-weight:bold}.fail{color:#b00;font-weight:bold}.note{color:#a60;font-weight:bold}
figure{margin:1em 0}figcaption{font-size:.9em;color:#555}img{max-width:100%}
pre{background:#f6f6f8;padding:.6em;overflow-x:auto;white-space:pre-wrap}
"""

#: status of a check -> (label, CSS class). ``passed=None``: the run does not show the claim
#: either way (e.g. an offline stand-in model that demonstrates the plumbing only).
CHECK_STATUSES = {True: ("PASS", "pass"), False: ("FAIL", "fail"), None: ("NOT SHOWN", "note")}

_TEMPLATE = """<!DOCTYPE html>
<html lang="en"><head><meta charset="utf-8">
<meta http-equiv="Content-Security-Policy" content="{{ csp }}">
<meta name="referrer" content="no-referrer">
<title>{{ title }}</title><style>{{ css|safe }}</style></head><body>
<h1>{{ title }}</h1>
{%- if checks %}
<h2>Truth vs recovered</h2><table id="truth-vs-recovered"><tr><th>check</th><th>truth</th><th>recovered</th><th>result</th></tr>
{%- for c in checks %}
<tr><td>{{ c.name }}</td><td>{{ c.truth }}</td><td>{{ c.recovered }}</td><td class="{{ c.css }}">{{ c.label }}</td></tr>
{%- endfor %}</table>
{%- endif %}
{%- for b in blocks %}
{%- if b.kind == "section" %}
<h2>{{ b.title }}</h2>
{%- elif b.kind == "text" %}
<p>{{ b.text }}</p>
{%- elif b.kind == "code" %}
<pre>{{ b.text }}</pre>
{%- elif b.kind == "table" %}
<table>{% if b.caption %}<caption>{{ b.caption }}</caption>{% endif %}<tr>
{%- for c in b.columns %}<th>{{ c }}</th>{% endfor %}</tr>
{%- for row in b.rows %}<tr>{% for v in row %}<td>{{ v }}</td>{% endfor %}</tr>{% endfor %}</table>
{%- elif b.kind == "figure" %}
<figure><img alt="{{ b.alt }}" src="data:image/png;base64,{{ b.png }}">
{%- if b.caption %}<figcaption>{{ b.caption }}</figcaption>{% endif %}</figure>
{%- endif %}
{%- endfor %}
</body></html>
"""


#: The last line of every page neuroalign writes: how :func:`is_report` tells its own pages
#: (a hash of everything above it, so a page changed since is no longer neuroalign's).
_STAMP = "<!-- written by neuroalign {version}; sha256 {digest} -->\n"
_STAMP_RE = re.compile(rb"<!-- written by neuroalign [^;\n]*; sha256 ([0-9a-f]{64}) -->\n\Z")


def stamped(html: str) -> str:
    """``html`` with neuroalign's stamp appended (see :func:`is_report`)."""
    from neuroalign._version import __version__

    digest = hashlib.sha256(html.encode("utf-8")).hexdigest()
    return html + _STAMP.format(version=__version__, digest=digest)


def is_report(path: str | os.PathLike) -> bool:
    """True when ``path`` is a page neuroalign wrote, unchanged since: its last line is the
    stamp and the stamp's hash is that of everything above it."""
    try:
        data = Path(path).read_bytes()
    except OSError:
        return False
    nl = data.rfind(b"\n", 0, len(data) - 1) + 1  # start of the last line
    m = _STAMP_RE.match(data, nl)
    return m is not None and hashlib.sha256(data[:nl]).hexdigest() == m.group(1).decode()


def _environment():
    """The one template environment: autoescaping on, for every string of the page (the
    style sheet is the module's own constant, inserted as is so that its hash matches)."""
    import jinja2

    return jinja2.Environment(autoescape=True, undefined=jinja2.StrictUndefined,
                              keep_trailing_newline=True)


def content_security_policy(css: str = _CSS) -> str:
    """The page's policy: nothing loads or runs but ``data:`` images and the style sheet
    whose SHA-256 is given (no script, no frame, no form, no base URL, no connection)."""
    digest = base64.b64encode(hashlib.sha256(css.encode("utf-8")).digest()).decode("ascii")
    return ("default-src 'none'; img-src data:; style-src 'sha256-" + digest + "'; "
            "script-src 'none'; object-src 'none'; frame-src 'none'; base-uri 'none'; "
            "form-action 'none'")


@dataclass
class Check:
    """One truth-vs-recovered comparison; ``passed`` is True, False or None (not shown)."""

    name: str
    truth: Any
    recovered: Any
    passed: bool | None

    @property
    def label(self) -> str:
        return CHECK_STATUSES[self.passed][0]


@dataclass
class Report:
    """Collects sections and writes one self-contained HTML file (see the module docstring)."""

    title: str
    blocks: list[dict[str, Any]] = field(default_factory=list)
    checks: list[Check] = field(default_factory=list)
    #: when set, every :meth:`figure` is also saved there as ``NN-<caption>.png``, so the
    #: folder's figures stand on their own (``neuroalign report`` picks them up)
    figure_dir: Path | None = None

    def section(self, title: str, text: str | None = None) -> Report:
        self.blocks.append({"kind": "section", "title": str(title)})
        if text:
            self.text(text)
        return self

    def text(self, text: str) -> Report:
        for para in str(text).strip().split("\n\n"):
            self.blocks.append({"kind": "text", "text": para})
        return self

    def code(self, text: str) -> Report:
        self.blocks.append({"kind": "code", "text": str(text)})
        return self

    def table(self, rows: list[dict[str, Any]] | Any, *, caption: str | None = None) -> Report:
        """A table from a list of dicts or a pandas DataFrame."""
        if hasattr(rows, "to_dict"):
            rows = rows.reset_index().to_dict("records") if rows.index.name else rows.to_dict("records")
        rows = list(rows)
        if not rows:
            return self
        cols = list(rows[0])
        self.blocks.append({"kind": "table", "caption": None if caption is None else str(caption),
                            "columns": [str(c) for c in cols],
                            "rows": [[_fmt(r.get(c)) for c in cols] for r in rows]})
        return self

    def figure(self, fig, *, caption: str | None = None, dpi: int = 90) -> Report:
        """Embed a matplotlib figure as a PNG (the figure is closed afterwards)."""
        import matplotlib.pyplot as plt

        buf = io.BytesIO()
        fig.savefig(buf, format="png", dpi=dpi, bbox_inches="tight")
        plt.close(fig)
        if self.figure_dir is not None:
            n = sum(b["kind"] == "figure" for b in self.blocks) + 1
            slug = re.sub(r"[^A-Za-z0-9]+", "-", caption or "figure").strip("-")[:60] or "figure"
            self.figure_dir.mkdir(parents=True, exist_ok=True)
            dest = self.figure_dir / f"{n:02d}-{slug}.png"
            tmp = dest.with_name(f".{dest.name}.tmp")
            tmp.write_bytes(buf.getvalue())
            os.replace(tmp, dest)  # written beside, then renamed: never a half-written PNG
        self.blocks.append({"kind": "figure", "png": base64.b64encode(buf.getvalue()).decode("ascii"),
                            "caption": None if caption is None else str(caption),
                            "alt": str(caption or "figure")})
        return self

    def image(self, png: bytes, *, caption: str | None = None) -> Report:
        """Embed a PNG file's bytes (checked to be a PNG: nothing else reaches the page)."""
        if not bytes(png[:8]) == b"\x89PNG\r\n\x1a\n":
            raise ValueError(f"Report.image(): not a PNG ({caption or 'image'!r}).")
        self.blocks.append({"kind": "figure", "png": base64.b64encode(bytes(png)).decode("ascii"),
                            "caption": None if caption is None else str(caption),
                            "alt": str(caption or "figure")})
        return self

    def check(self, name: str, truth: Any, recovered: Any, passed: bool | None) -> Check:
        """Record a check; ``passed=None`` records a claim the run does not show either way
        (reported as NOT SHOWN, never as PASS)."""
        c = Check(name, truth, recovered, None if passed is None else bool(passed))
        self.checks.append(c)
        return c

    @property
    def all_passed(self) -> bool:
        """No check failed (checks that are NOT SHOWN do not count as passed or failed)."""
        return all(c.passed is not False for c in self.checks)

    def to_html(self) -> str:
        checks = [{"name": c.name, "truth": _fmt(c.truth), "recovered": _fmt(c.recovered),
                   "label": CHECK_STATUSES[c.passed][0], "css": CHECK_STATUSES[c.passed][1]}
                  for c in self.checks]
        return _environment().from_string(_TEMPLATE).render(
            title=str(self.title), css=_CSS, csp=content_security_policy(_CSS), checks=checks,
            blocks=self.blocks)

    def save(self, path: str | os.PathLike) -> Path:
        """Write the report atomically (temporary file, then rename), stamped as
        neuroalign's (:func:`stamped`). It replaces what is at ``path``: for a working folder
        of neuroalign's own (the demo's); ``neuroalign.recipes.write_report`` is the writer
        that refuses files it did not write."""
        path = Path(path)
        path.parent.mkdir(parents=True, exist_ok=True)
        tmp = path.with_name(f".{path.name}.tmp")
        tmp.write_text(self.page(), encoding="utf-8")
        os.replace(tmp, path)
        return path

    def page(self) -> str:
        """The whole page, stamped (:func:`stamped`), as :meth:`save` writes it."""
        return stamped(self.to_html())


def _fmt(value: Any) -> str:
    if isinstance(value, float):
        return f"{value:.4g}"
    return "" if value is None else str(value)
