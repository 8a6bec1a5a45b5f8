"""``emofeat report``: one self-contained HTML page of a feature store or a recipe run."""

from __future__ import annotations

import sys
import time

import click
from rich.markup import escape

from emofeat.cli.output import console


@click.command()
@click.argument("path", type=click.Path())
@click.option(
    "-o",
    "--output",
    type=click.Path(dir_okay=False),
    default=None,
    help="The HTML file to write (default: STORE with .html, or RUN_DIR/report.html).",
)
@click.option(
    "--input",
    "inputs",
    multiple=True,
    metavar="KEY",
    help="Store: show only this input (repeatable; default: every input).",
)
@click.option(
    "--max-points",
    type=click.IntRange(min=10),
    default=None,
    help="Points per timeline at most; longer inputs are shown in buckets of frames "
    "(mean, min, max). Default 2000 (store), 1000 (run's validation traces).",
)
@click.option(
    "--model",
    "models",
    multiple=True,
    metavar="NAME",
    help="Run: embed the validation traces of this model (repeatable; default: the best).",
)
def report(
    path: str,
    output: str | None,
    inputs: tuple[str, ...],
    max_points: int | None,
    models: tuple[str, ...],
) -> None:
    """Write one HTML page (works offline) of a feature store or a recipe run directory.

    \b
    emofeat report feats.h5 -o feats.html
    emofeat report runs/abaw_va-20261125-184212 -o run.html

    Store: per input, timelines of expression, valence/arousal, face presence, voice
    activity, loudness and pitch, coverage and masks, heatmaps of wide streams, provenance.
    Run: metrics per model, learning curves, predictions against labels per validation
    track, confusion matrix and per-class F1. Exit status 2 when PATH is neither.
    """
    from pathlib import Path

    from emofeat.errors import StoreError
    from emofeat.report import ReportError, is_run_dir, page_data, write_report

    t0 = time.perf_counter()
    p = Path(path)
    run = is_run_dir(p)
    options: dict = {}
    if max_points is not None:
        options["max_points"] = max_points
    if run:
        if inputs:
            _usage(f"{path}: --input applies to a store; this is a run directory")
        if models:
            options["models"] = list(models)
    else:
        if models:
            _usage(f"{path}: --model applies to a run directory")
        if inputs:
            options["inputs"] = list(inputs)
    try:
        written = write_report(p, output, **options)
    except (ReportError, StoreError) as exc:
        _usage(str(exc))
    except OSError as exc:
        console.print(f"[red bold]error[/] {escape(str(exc))}", highlight=False)
        sys.exit(1)
    text = written.read_text(encoding="utf-8")
    data = page_data(text)
    problems = list(data.get("problems") or [])
    for inp in data.get("inputs") or []:
        problems += [f"{inp['key']}: {p.get('message')}" for p in inp.get("problems") or []]
    what = f"{len(data.get('inputs') or [])} input(s)" if data["kind"] == "store" else "run"
    console.print(
        f"report: {escape(str(written))} ({what}, {len(text) / 1e6:.2f} MB, "
        f"{time.perf_counter() - t0:.1f} s)"
        + (f"; {len(problems)} problem(s) listed on the page" if problems else ""),
        highlight=False,
    )


def _usage(message: str) -> None:
    console.print(f"[red bold]error[/] {escape(message)}", highlight=False)
    sys.exit(2)
