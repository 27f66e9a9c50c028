"""The HTML report without a browser: every string escaped, a restrictive policy, statuses."""

from __future__ import annotations

from html.parser import HTMLParser

from neuroalign.recipes._html import Report, content_security_policy
from neuroalign.testing import HOSTILE_NAMES


class _Page(HTMLParser):
    def __init__(self):
        super().__init__()
        self.tags, self.attrs, self.text, self.meta = [], [], [], {}

    def handle_starttag(self, tag, attrs):
        self.tags.append(tag)
        self.attrs.extend(k for k, _ in attrs)
        a = dict(attrs)
        if tag == "meta" and "http-equiv" in a:
            self.meta[a["http-equiv"]] = a["content"]

    def handle_data(self, data):
        self.text.append(data)


def _parse(html: str) -> _Page:
    p = _Page()
    p.feed(html)
    return p


def test_every_string_is_escaped():
    rep = Report(HOSTILE_NAMES[2])
    for n in HOSTILE_NAMES:
        rep.section(n, n).code(n).check(n, n, n, True)
    rep.table([{"ROI": n, n: n} for n in HOSTILE_NAMES], caption=HOSTILE_NAMES[1])
    page = _parse(rep.to_html())
    # only the template's own elements and attributes exist
    assert set(page.tags) <= {"html", "head", "meta", "title", "style", "body", "h1", "h2", "p",
                              "pre", "table", "tr", "th", "td", "caption"}
    assert set(page.attrs) <= {"lang", "charset", "http-equiv", "content", "name", "id", "class"}
    text = "".join(page.text)
    for n in HOSTILE_NAMES:
        assert n in text  # displayed as text, character for character


def test_content_security_policy():
    page = _parse(Report("t").to_html())
    csp = page.meta["Content-Security-Policy"]
    assert csp == content_security_policy()
    parts = dict(p.strip().split(" ", 1) for p in csp.split(";"))
    assert parts["default-src"] == "'none'" and parts["script-src"] == "'none'"
    assert parts["img-src"] == "data:" and parts["style-src"].startswith("'sha256-")
    assert "unsafe" not in csp


def test_check_statuses():
    rep = Report("t")
    rep.check("a", 1, 1, True)
    rep.check("b", 1, 2, None)
    assert rep.all_passed
    text = "".join(_parse(rep.to_html()).text)
    assert "PASS" in text and "NOT SHOWN" in text and "FAIL" not in text
    rep.check("c", 1, 3, False)
    assert not rep.all_passed and "FAIL" in "".join(_parse(rep.to_html()).text)
