"""``emofeat report``: one self-contained HTML page of a feature store or a recipe run.

The page works offline from ``file://``: the plotting library (uPlot, MIT, vendored in
``assets/`` with its licence), the page's script and styles are inlined, and a
Content-Security-Policy of ``default-src 'none'`` keeps the browser from fetching anything.
The data shown is embedded as JSON in ``<script type="application/json" id="emofeat-data">``
(values as plotted, after downsampling: :mod:`emofeat.report.downsample`). docs/report.md
describes the page, the selection rules and the downsampling.

Public API: :func:`write_store_report`, :func:`write_run_report`, :func:`write_report`
(either, detected from the path), :func:`store_data` / :func:`run_data` (the embedded data).
"""

from __future__ import annotations

import json
import math
import os
import re
from importlib import resources
from pathlib import Path
from typing import Any

from emofeat.errors import EmofeatError
from emofeat.report.run_data import is_run_dir, run_data
from emofeat.report.store_data import store_data

__all__ = [
    "DATA_ID",
    "ReportError",
    "is_run_dir",
    "page_data",
    "render_page",
    "run_data",
    "store_data",
    "write_report",
    "write_run_report",
    "write_store_report",
]

DATA_ID = "emofeat-data"
"""The id of the ``<script type="application/json">`` element holding the page's data."""

_CSP = (
    "default-src 'none'; script-src 'unsafe-inline'; style-src 'unsafe-inline'; "
    "img-src data:; font-src data:"
)


class ReportError(EmofeatError):
    """The path is neither a feature store nor a run directory, or an option is wrong."""


def _asset(name: str) -> str:
    return resources.files("emofeat.report").joinpath("assets").joinpath(name).read_text("utf-8")


def _clean(value: Any) -> Any:
    """JSON-safe: NaN and infinity become null (``JSON.parse`` rejects them)."""
    if isinstance(value, float):
        return value if math.isfinite(value) else None
    if isinstance(value, dict):
        return {str(k): _clean(v) for k, v in value.items()}
    if isinstance(value, (list, tuple)):
        return [_clean(v) for v in value]
    return value


def _json_for_script(data: dict[str, Any]) -> str:
    """JSON text that cannot end the ``<script>`` element it sits in."""
    text = json.dumps(_clean(data), separators=(",", ":"), allow_nan=False, default=str)
    return text.replace("<", "\\u003c").replace(">", "\\u003e").replace("&", "\\u0026")


def render_page(data: dict[str, Any], title: str) -> str:
    """The whole HTML page for ``data`` (from :func:`store_data` or :func:`run_data`)."""
    from html import escape

    parts = {
        "title": escape(title),
        "csp": _CSP,
        "uplot_css": _asset("uPlot.min.css"),
        "report_css": _asset("report.css"),
        "data_id": DATA_ID,
        "uplot_js": _asset("uPlot.iife.min.js").replace("</script", "<\\/script"),
        "report_js": _asset("report.js"),
        "data": _json_for_script(data),
    }
    # one pass: a placeholder-like text inside a part is left alone
    return re.sub(r"\{\{(\w+)\}\}", lambda m: parts[m.group(1)], _asset("page.html"))


def _write(text: str, out: str | os.PathLike[str]) -> Path:
    path = Path(out)
    if path.parent and not path.parent.is_dir():
        path.parent.mkdir(parents=True, exist_ok=True)
    tmp = path.with_name(f".{path.name}.tmp")
    tmp.write_text(text, encoding="utf-8")
    os.replace(tmp, path)
    return path


def write_store_report(
    store: str | os.PathLike[str],
    out: str | os.PathLike[str],
    *,
    inputs: list[str] | None = None,
    max_points: int = 2000,
    heat_columns: int = 600,
    heat_rows: int = 64,
) -> Path:
    """Write the page of a feature store.

    Args:
        store: the store's index file (``feats.h5``).
        out: the HTML file to write (replaced atomically).
        inputs: input keys to show (default: every input).
        max_points: points per timeline at most: an input of ``n`` frames is shown in
            buckets of ``ceil(n / max_points)`` frames (mean, min and max per bucket).
        heat_columns: time buckets per heatmap at most.
        heat_rows: columns of a wide stream (>= 32 columns) shown in its heatmap: those of
            highest variance.

    Returns:
        The path written.

    Raises:
        StoreError: ``store`` is not a feature store.
        ReportError: an input in ``inputs`` is not in the store.
    """
    try:
        data = store_data(
            Path(store),
            inputs,
            max_points=max_points,
            heat_columns=heat_columns,
            heat_rows=heat_rows,
        )
    except KeyError as exc:
        raise ReportError(str(exc.args[0]) if exc.args else str(exc)) from None
    return _write(render_page(data, f"emofeat report: {Path(store).name}"), out)


def write_run_report(
    run_dir: str | os.PathLike[str],
    out: str | os.PathLike[str],
    *,
    max_points: int = 1000,
    models: list[str] | None = None,
) -> Path:
    """Write the page of a recipe run directory.

    Args:
        run_dir: the run directory (``runs/abaw_va-YYYYmmdd-HHMMSS``).
        out: the HTML file to write (replaced atomically).
        max_points: points per validation track's trace at most (frames bucketed beyond).
        models: models whose validation traces are embedded (default: the best model).

    Returns:
        The path written.

    Raises:
        ReportError: ``run_dir`` is not a run directory.
    """
    root = Path(run_dir)
    if not is_run_dir(root):
        raise ReportError(f"{root}: not a run directory (no run.json, metrics.json or config.yaml)")
    data = run_data(root, max_points=max_points, models=models)
    return _write(render_page(data, f"emofeat report: {root.name}"), out)


def page_data(html: str) -> dict[str, Any]:
    """The data embedded in a page written here (what its charts plot)."""
    start = html.index(f'id="{DATA_ID}">') + len(f'id="{DATA_ID}">')
    end = html.index("</script>", start)
    return dict(json.loads(html[start:end]))


def write_report(
    path: str | os.PathLike[str], out: str | os.PathLike[str] | None = None, **options: Any
) -> Path:
    """Write the page of ``path``: a feature store (:func:`write_store_report`) or a run
    directory (:func:`write_run_report`). ``out`` defaults to ``STORE`` with ``.html`` for
    a store and ``RUN_DIR/report.html`` for a run.

    Raises:
        ReportError: ``path`` is neither (the message names it).
    """
    p = Path(path)
    if p.is_dir():
        if not is_run_dir(p):
            raise ReportError(
                f"{p}: neither a feature store nor a run directory "
                "(a folder without run.json, metrics.json or config.yaml)"
            )
        return write_run_report(p, out if out is not None else p / "report.html", **options)
    if not p.exists():
        raise ReportError(f"{p}: no such file or folder")
    from emofeat.errors import StoreError

    try:
        return write_store_report(p, out if out is not None else p.with_suffix(".html"), **options)
    except StoreError as exc:
        raise ReportError(f"{p}: neither a feature store nor a run directory ({exc})") from None
