"""The HTML report in a real browser (headless Chromium over the DevTools pipe).

Without Chromium these tests skip (install: ``apt-get install chromium`` or
``scripts/install-chromium.sh``); with ``NEUROALIGN_REQUIRE_BROWSER=1`` they fail instead.
"""

from __future__ import annotations

import os

import numpy as np
import pytest

from neuroalign.testing import check_html, find_chromium

pytestmark = pytest.mark.slow


@pytest.fixture(scope="module")
def chromium():
    binary = find_chromium()
    if binary is None:
        msg = ("no Chromium found (NEUROALIGN_CHROMIUM or chromium on PATH); install it with "
               "`apt-get install chromium` or scripts/install-chromium.sh")
        if os.environ.get("NEUROALIGN_REQUIRE_BROWSER") == "1":
            pytest.fail(f"NEUROALIGN_REQUIRE_BROWSER=1 but {msg}")
        pytest.skip(msg)
    return binary


def test_report_renders_without_errors(chromium, tmp_path):
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt
    from PIL import Image

    from neuroalign.recipes._html import Report

    rep = Report("Browser check")
    rep.section("Numbers", "A table and a figure, rendered by Chromium.")
    rep.table([{"roi": "V1v", "r": 0.61, "n": 120}, {"roi": "FFA-1", "r": 0.44, "n": 80}], caption="scores")
    fig, ax = plt.subplots(figsize=(4, 3))
    ax.plot(np.arange(10), np.arange(10) ** 2, color="tab:red")
    rep.figure(fig, caption="a red parabola")
    plt.close(fig)
    rep.check("best layer of FFA-1", "layer4", "layer4", True)
    page = rep.save(tmp_path / "report.html")

    res = check_html(page, screenshot=tmp_path / "report.png", chromium=chromium)
    assert res.console_errors == [], res.problems()
    assert len(res.images) == 1 and res.broken_images == [], res.images
    assert res.images[0]["width"] > 100 and res.images[0]["height"] > 100
    assert res.ok
    # the screenshot is a real rendering: a PNG of the page, not blank
    with Image.open(res.screenshot) as im:
        assert im.format == "PNG" and im.width >= 1000 and im.height >= 600
        arr = np.asarray(im.convert("RGB"), dtype=int)
    assert arr.std() > 10  # text, table borders and the figure
    red = (arr[..., 0] > 150) & (arr[..., 1] < 110) & (arr[..., 2] < 110)
    assert red.sum() > 50  # the figure's line was drawn


def test_console_errors_and_exceptions_are_caught(chromium, tmp_path):
    page = tmp_path / "bad.html"
    page.write_text("<!doctype html><html><body><p>x</p><script>"
                    "console.error('deliberate console error');"
                    "setTimeout(() => { throw new TypeError('late failure'); }, 10);"
                    "undefinedFunction();</script></body></html>")
    res = check_html(page, chromium=chromium)
    assert not res.ok
    text = "\n".join(res.console_errors)
    assert "console.error: deliberate console error" in text
    assert "undefinedFunction is not defined" in text
    assert "TypeError: late failure" in text


def test_broken_image_is_caught(chromium, tmp_path):
    # a deep folder: the report must name the missing file whole, not its first 80 characters
    page = tmp_path / ("a-long-folder-name-" * 5) / "img.html"
    page.parent.mkdir()
    ok_png = ("data:image/png;base64,iVBORw0KGgoAAAANSUhEUgAAAAEAAAABCAYAAAAfFcSJAAAADUlEQVR42mP8"
              "z8BQDwAEhQGAhKmMIQAAAABJRU5ErkJggg==")
    page.write_text(f'<html><body><img src="{ok_png}"><img src="missing.png">'
                    '<img src="data:image/png;base64,bm90IGEgcG5n"></body></html>')
    res = check_html(page, screenshot=tmp_path / "img.png", chromium=chromium)
    assert len(res.images) == 3
    assert res.broken_images[0] == (page.parent / "missing.png").as_uri()
    assert len(res.broken_images) == 2
    assert len(res.images[0]["src"]) == 80  # an inline image's data URL is cut
    assert res.images[0]["width"] == 1
    assert any("missing.png" in e for e in res.console_errors)  # the failed load is logged
    assert "image did not load" in res.problems()


def test_missing_file_and_browser_errors(tmp_path, monkeypatch):
    with pytest.raises(FileNotFoundError, match="nope.html"):
        check_html(tmp_path / "nope.html")
    page = tmp_path / "p.html"
    page.write_text("<p>x</p>")
    monkeypatch.setenv("NEUROALIGN_CHROMIUM", str(tmp_path / "no-browser"))
    monkeypatch.setenv("PATH", str(tmp_path))
    assert find_chromium() is None
    with pytest.raises(FileNotFoundError, match="apt-get install chromium"):
        check_html(page)


def test_demo_report_in_the_browser(chromium, quick_demo, tmp_path):
    """The report the README's main command writes: no console errors, every figure loads."""
    from PIL import Image

    out, res = quick_demo
    assert res.exit_code == 0, res.output
    page = check_html(out / "report.html", screenshot=tmp_path / "demo.png", chromium=chromium)
    assert page.console_errors == [] and page.broken_images == [], page.problems()
    assert len(page.images) >= 10, page.images  # one or more figures per stage
    assert all(img["width"] > 50 for img in page.images)
    with Image.open(page.screenshot) as im:
        assert im.height > 3000  # the whole page, all stages


# -- hostile names: escaped, shown literally, never run --------------------------------------
_PROBES = {
    "title": "document.title",
    "pwned": "document.getElementById('pwned') !== null",
    "scripts": "document.scripts.length",
    "active": "document.querySelectorAll('iframe,svg,object,embed,script,img[onerror]').length",
    "images": "document.images.length",
    "text": "document.body.innerText",
}


def _hostile_report():
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    from neuroalign.recipes._html import Report
    from neuroalign.testing import HOSTILE_NAMES

    rep = Report(HOSTILE_NAMES[2])  # '</title><script>...' as the title
    for name in HOSTILE_NAMES:
        rep.section(name, f"ROI {name} of stimulus {name}")
        rep.check(f"layer of {name}", name, name, True)
    recipe = {"data": {"store": HOSTILE_NAMES[3]}, "roi": HOSTILE_NAMES[0], "out": HOSTILE_NAMES[5]}
    rep.code(str(recipe))
    rep.table([{"ROI": n, "stimulus_id": n, HOSTILE_NAMES[4]: 0.5} for n in HOSTILE_NAMES],
              caption=HOSTILE_NAMES[1])
    fig, ax = plt.subplots(figsize=(2, 2))
    ax.plot([0, 1], [0, 1])
    rep.figure(fig, caption=HOSTILE_NAMES[6])
    return rep


def test_hostile_names_are_shown_literally_and_never_run(chromium, tmp_path):
    from neuroalign.testing import HOSTILE_NAMES

    page = _hostile_report().save(tmp_path / "hostile.html")
    res = check_html(page, chromium=chromium, evaluate=_PROBES)
    assert res.console_errors == [], res.problems()
    v = res.values
    assert v["title"] == HOSTILE_NAMES[2]  # the title is the literal text
    assert v["pwned"] is False and v["scripts"] == 0 and v["active"] == 0
    assert v["images"] == 1 and res.broken_images == []  # the figure, nothing else
    for name in HOSTILE_NAMES:
        assert name in v["text"], name


def test_the_browser_probe_sees_scripts_run(chromium, tmp_path):
    """Controls: the same names inserted raw DO run (so the test above can fail), and the
    page's Content-Security-Policy alone stops them (a second line of defence)."""
    from neuroalign.recipes._html import content_security_policy
    from neuroalign.testing import HOSTILE_NAMES

    body = "".join(f"<p>{n}</p>" for n in HOSTILE_NAMES)
    raw = tmp_path / "raw.html"
    raw.write_text(f"<!doctype html><html><head><title>{HOSTILE_NAMES[2]}</title></head><body>{body}</body></html>")
    res = check_html(raw, chromium=chromium, evaluate=_PROBES)
    assert res.values["title"] == "pwned" and res.values["pwned"] is True
    csp = tmp_path / "csp.html"
    csp.write_text(f'<!doctype html><html><head><meta http-equiv="Content-Security-Policy" '
                   f'content="{content_security_policy()}"><title>t</title></head><body>{body}</body></html>')
    res = check_html(csp, chromium=chromium, evaluate=_PROBES)
    assert res.values["title"] == "t" and res.values["pwned"] is False
    assert any("Content Security Policy" in e for e in res.console_errors), res.console_errors


def test_report_of_a_fit_folder_with_hostile_names(chromium, tmp_path):
    """`neuroalign report` on a real fit output whose study, description, --set values and
    recipe text carry hostile names: shown literally, nothing runs, every figure loads."""
    import json

    import xarray as xr

    from neuroalign.recipes import run_recipe, write_report
    from neuroalign.store import save_store
    from neuroalign.testing import HOSTILE_NAMES, make_store

    ds, sig = make_store(n_stimuli=30, n_neuroids=12, n_repetitions=2, n_test=8, seed=0, ncsnr=2.0,
                         rois={"A": np.arange(12) < 6, "B": np.arange(12) >= 6}, return_signal=True)
    save_store(ds, tmp_path / "store.zarr")
    xr.Dataset({"layer": (("stimulus", "unit"), sig.values)},
               coords={"stimulus_id": ("stimulus", sig["stimulus_id"].values)}).to_zarr(
        tmp_path / "features.zarr", zarr_format=2, consolidated=True)
    comments = "".join(f"# {n}\n" for n in HOSTILE_NAMES)
    recipe = tmp_path / "fit.toml"
    recipe.write_text(comments + 'kind = "fit"\n[study]\nname = ' + json.dumps(HOSTILE_NAMES[2])
                      + '\n[store]\npath = "store.zarr"\n[features]\npath = "features.zarr"\n'
                      '[encoder]\nkind = "ridge"\ncv = 3\n[outputs]\nn_boot = 20\n')
    res = run_recipe(recipe, sets=["study.description=" + json.dumps(HOSTILE_NAMES[5])])
    page = write_report(res["out"], tmp_path / "report.html", title=HOSTILE_NAMES[0])
    check = check_html(page, chromium=chromium, evaluate=_PROBES)
    assert check.console_errors == [], check.problems()
    v = check.values
    assert v["title"] == HOSTILE_NAMES[0]
    assert v["pwned"] is False and v["scripts"] == 0 and v["active"] == 0
    assert v["images"] >= 1 and check.broken_images == []  # the per-ROI figure
    for name in HOSTILE_NAMES:
        assert name in v["text"], name
    assert "Summary" in v["text"] and "fit: " + HOSTILE_NAMES[2] in v["text"]
