"""One self-contained HTML page for any results folders (``neuroalign report``).

A results folder is what a recipe wrote (fit, rsa, shape, map, decode, generate: it holds
``run.json``) or a demo folder. The page starts with a summary table (one row per folder:
its kind, study and headline result), then one section per folder with its tables and
figures, the exact recipe that produced it and the package versions. Everything goes
through the autoescaped template of :mod:`neuroalign.recipes._html` (no script runs, images
only as ``data:`` URLs).
"""

from __future__ import annotations

import csv
import json
import os
from pathlib import Path
from typing import Any

from neuroalign.exceptions import DataFormatError

__all__ = ["write_report", "REPORT_KINDS"]

#: The folders a report reads: recipe outputs (by their run.json) and demo folders.
REPORT_KINDS = ("fit", "rsa", "shape", "map", "decode", "generate", "demo")

_MAX_FIGURES = 24  # per folder

#: What a page written on its own (not into a recipe's output folder) is, in messages.
REPORT_FILE_KIND = "report"


def _kind(folder: Path) -> tuple[str, dict]:
    from neuroalign._files import read_marker
    from neuroalign.recipes._registry import OUTPUT_KINDS, RUN_FILE

    run = folder / RUN_FILE
    if run.is_file():
        try:
            record = json.loads(run.read_text(encoding="utf-8"))
        except ValueError as err:
            raise DataFormatError(f"{str(run)!r}: not valid JSON ({err}).") from None
        kind = record.get("kind")
        if kind in OUTPUT_KINDS:
            return kind, record
    marker = read_marker(folder) or {}
    if marker.get("kind") == "demo folder":
        return "demo", {}
    by_marker = {v: k for k, v in OUTPUT_KINDS.items()}
    if marker.get("kind") in by_marker:
        return by_marker[marker["kind"]], {}
    raise DataFormatError(
        f"{str(folder)!r}: not a results folder neuroalign wrote (no {RUN_FILE} and no output "
        f"marker of a recipe or the demo). Expected the output folder of one of "
        f"{', '.join(REPORT_KINDS)}.")


def _read_csv(path: Path, limit: int = 50) -> list[dict[str, str]]:
    with open(path, newline="", encoding="utf-8") as fh:
        return [row for _, row in zip(range(limit), csv.DictReader(fh), strict=False)]


def _json(path: Path) -> Any:
    return json.loads(path.read_text(encoding="utf-8")) if path.is_file() else None


#: The fit table's columns that are not the score (the bars show the score).
_CEILING_COLUMNS = ("% of noise ceiling", "95% CI of % of noise ceiling")


def _percent(x) -> float | None:
    """A fraction (summary.json's ``ceiling_normalised``) in percent, for a "%" column."""
    return None if x is None else 100.0 * float(x)


def _fit(folder: Path, report, record: dict) -> str:
    summary = _json(folder / "summary.json") or record.get("result") or {}
    rows = []
    for roi, entry in (summary.get("rois") or {}).items():
        score = entry.get("score") or {}
        ceil = entry.get("ceiling_normalised") or {}
        # summary.json holds the ceiling-normalised score as a fraction of the ceiling
        ceil_ci = [_percent(v) for v in ceil.get("ci95") or ()] or None
        rows.append({"ROI": roi, "neuroids": entry.get("n_neuroids"),
                     f"{score.get('aggregate', '')} {score.get('metric', 'score')}".strip(): score.get("value"),
                     "95% CI": _ci(score.get("ci95")),
                     _CEILING_COLUMNS[0]: _percent(ceil.get("value")), _CEILING_COLUMNS[1]: _ci(ceil_ci)})
        if summary.get("best_layer_by_roi"):
            rows[-1]["best layer"] = summary["best_layer_by_roi"].get(roi, "")
    report.table(rows, caption=f"per-ROI {summary.get('score_kind', '')} scores "
                               f"({summary.get('encoder', '')})")
    if rows:
        report.figure(_roi_bars(rows), caption="per-ROI score with its 95% bootstrap interval")
    median = summary.get("median_score")
    return (f"{summary.get('encoder', 'encoder')}: median {summary.get('metric', 'score')} "
            f"{_num(median)} over neuroids, {len(rows)} ROI(s)")


def _roi_bars(rows: list[dict]):
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt
    import numpy as np

    key = next(k for k in rows[0] if k not in ("ROI", "neuroids", "95% CI", *_CEILING_COLUMNS,
                                               "best layer"))
    vals = np.array([np.nan if r[key] is None else float(r[key]) for r in rows])
    fig, ax = plt.subplots(figsize=(1 + 0.8 * len(rows), 3))
    ax.bar(range(len(rows)), vals, color="#557")
    ax.set_xticks(range(len(rows)), [str(r["ROI"]) for r in rows], rotation=45, ha="right")
    ax.set_ylabel(key)
    fig.tight_layout()
    return fig


def _ci(ci) -> str:
    if not ci or ci[0] is None or ci[1] is None:
        return ""
    return f"[{ci[0]:.3g}, {ci[1]:.3g}]"


def _num(x) -> str:
    return "n/a" if x is None else f"{float(x):.3g}"


def _rsa(folder: Path, report, record: dict) -> str:
    result = record.get("result") or {}
    rows, best = [], []
    for roi, entry in (result.get("rois") or {}).items():
        lo, hi = entry.get("noise_ceiling", [None, None])
        models = entry.get("models", {})
        for name, m in models.items():
            rows.append({"ROI": roi, "model": name, "score": m.get("score"), "95% CI": _ci(m.get("ci95")),
                         "p (score = 0)": m.get("p_zero"), "noise ceiling": _ci([lo, hi])})
        if models:
            top = max(models, key=lambda k: models[k].get("score") or float("-inf"))
            best.append(f"{roi}: {top}")
    report.table(rows, caption="RSA scores per ROI and model")
    for csv_file in sorted(folder.glob("rsa_*.csv")) if not rows else ():
        report.table(_read_csv(csv_file), caption=csv_file.name)
    return "best model " + ", ".join(best) if best else "RSA"


def _shape(folder: Path, report, record: dict) -> str:
    if (folder / "distances.csv").is_file():
        report.table(_read_csv(folder / "distances.csv"), caption="shape distances")
    systems = (record.get("result") or {}).get("systems") or []
    return f"distances among {len(systems)} systems" if systems else "shape distances"


def _map(folder: Path, report, record: dict) -> str:
    if (folder / "roi_summary.csv").is_file():
        report.table(_read_csv(folder / "roi_summary.csv"), caption="preferred layer per ROI")
    best = (record.get("result") or {}).get("best_layer_by_roi") or {}
    return ", ".join(f"{r}: {layer}" for r, layer in best.items()) or "layer maps"


def _decode(folder: Path, report, record: dict) -> str:
    metrics = _json(folder / "metrics.json") or record.get("result") or {}
    report.table([{"metric": k, "value": v} for k, v in metrics.items() if k != "verdict"],
                 caption="reconstruction metrics")
    return str(metrics.get("verdict", "decoding"))


def _generate(folder: Path, report, record: dict) -> str:
    import numpy as np

    act = _json(folder / "activations.json") or record.get("result") or {}
    rows = [{"images": k.replace("_", " "), "mean": float(np.mean(v))} for k, v in act.items()
            if isinstance(v, list) and v]
    report.table(rows, caption=f"ROI {act.get('roi', '')} responses")
    guided, plain = act.get("true_guided") or act.get("predicted_guided"), \
        act.get("true_unguided") or act.get("predicted_unguided")
    if guided and plain:
        return (f"ROI {act.get('roi', '')}: guided {np.mean(guided):.3g} vs unguided "
                f"{np.mean(plain):.3g}")
    return f"ROI {act.get('roi', '')}"


def _demo(folder: Path, report, record: dict) -> str:
    checks = _json(folder / "checks.json") or []
    report.table(checks, caption="truth vs recovered")
    passed = sum(c.get("result") == "PASS" for c in checks)
    failed = sum(c.get("result") == "FAIL" for c in checks)
    return f"{passed} of {len(checks)} checks pass, {failed} fail" if checks else \
        "demo folder (no checks.json: rerun the demo)"


_SECTIONS = {"fit": _fit, "rsa": _rsa, "shape": _shape, "map": _map, "decode": _decode,
             "generate": _generate, "demo": _demo}


def _figures(folder: Path, report) -> int:
    files = sorted(p for p in folder.rglob("*.png") if p.is_file() and not p.is_symlink()
                   and not any(part.startswith(".") for part in p.relative_to(folder).parts))
    for p in files[:_MAX_FIGURES]:
        data = p.read_bytes()
        if data[:8] == b"\x89PNG\r\n\x1a\n":
            report.image(data, caption=str(p.relative_to(folder)))
    return len(files)


def write_report(results, out: str | os.PathLike | None = None, *, title: str | None = None,
                 overwrite: bool = False) -> Path:
    """Write one self-contained HTML page for one or more results folders.

    Parameters
    ----------
    results : path-like or sequence of path-like
        Output folders of recipes (fit, rsa, shape, map, decode, generate; each holds
        ``run.json``) or of ``neuroalign demo``.
    out : path-like, optional
        The HTML file; default ``report.html`` inside the only folder given, else
        ``report.html`` in the current directory. Written into a recipe's output folder, it
        is recorded there as neuroalign's (that folder's ``--overwrite`` replaces it).
    title : str, optional
        Page title (default: "neuroalign report").
    overwrite : bool
        Replace an existing report that neuroalign wrote at ``out`` (unchanged since). A
        file neuroalign did not write is never replaced.

    Returns
    -------
    Path
        The page written.

    Raises
    ------
    FileNotFoundError
        A folder does not exist.
    DataFormatError
        A folder is not a results folder neuroalign wrote.
    OutputExistsError
        ``out`` exists and is not a report neuroalign wrote, or it is one and ``overwrite``
        is false.

    Examples
    --------
    >>> from neuroalign.recipes import write_report
    >>> write_report(["fit-results", "rsa-results"], "study.html")  # doctest: +SKIP
    """
    from neuroalign.recipes._html import Report

    folders = [Path(results)] if isinstance(results, str | os.PathLike) else [Path(r) for r in results]
    if not folders:
        raise ValueError("write_report(): no results folder given.")
    for f in folders:
        if not f.is_dir():
            raise FileNotFoundError(f"{str(f)!r}: no such results folder.")
    found = [(f, *_kind(f)) for f in folders]
    out = Path(out) if out is not None else (folders[0] / "report.html" if len(folders) == 1
                                             else Path("report.html"))
    body = Report(title or "neuroalign report")
    summary = []
    for folder, kind, record in found:
        study = ((record.get("config") or {}).get("study") or {}).get("name") or folder.name
        section = Report("")
        headline = _SECTIONS[kind](folder, section, record)
        n_fig = _figures(folder, section)
        summary.append({"analysis": study, "kind": kind, "folder": str(folder), "result": headline,
                        "figures": n_fig})
        body.section(f"{kind}: {study}", f"Folder {folder}. {headline}.")
        body.blocks.extend(section.blocks)
        if record:
            body.text("Recipe" + (f" ({record['recipe_file']})" if record.get("recipe_file") else "")
                      + (", with --set " + " ".join(record["set"]) if record.get("set") else "") + ":")
            body.code(record.get("recipe_text") or json.dumps(record.get("config"), indent=2))
            versions = record.get("versions") or {}
            body.table([{"package": k, "version": v} for k, v in versions.items()],
                       caption="versions")
    page = Report(title or "neuroalign report")
    page.section("Summary").table(summary, caption="one row per results folder")
    page.blocks.extend(body.blocks)
    _write(out, page.page(), overwrite)
    return out


def _output_kind(folder: Path) -> str | None:
    """The marker kind of ``folder`` when it is a recipe's output folder (written in one go,
    its entries listed), else None."""
    from neuroalign._files import read_marker
    from neuroalign.recipes._registry import OUTPUT_KINDS

    info = read_marker(folder) or {}
    if info.get("kind") in OUTPUT_KINDS.values() and isinstance(info.get("entries"), list):
        return str(info["kind"])
    return None


def _write(out: Path, html: str, overwrite: bool) -> Path:
    """Write the page: into a recipe's output folder as one of its files (recorded in its
    marker, so that the folder's ``--overwrite`` replaces it), anywhere else as a file of
    its own; either way an existing file only when neuroalign wrote it and ``overwrite``."""
    from neuroalign._files import add_file, write_file
    from neuroalign.recipes._html import is_report

    kind = _output_kind(out.parent)
    if kind is not None:
        return add_file(out.parent, out.name, html, kind=kind, overwrite=overwrite)
    return write_file(out, html, owned=is_report, overwrite=overwrite, kind=REPORT_FILE_KIND)
