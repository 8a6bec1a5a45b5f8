"""``emofeat predict RUN_DIR INPUTS -o OUT``: apply a finished recipe run to new media.

The command reads the run's ``run.json`` (which recipe, did it finish), then hands the
inputs to the recipe's ``predict`` hook (:func:`emofeat.recipes.predict_run`): it extracts
what the run was trained on with the run's settings into a store, applies the run's
normalisation, models, fusion and smoothing, and writes one CSV per input (one row per video
frame) and the predictions as the store's ``predict`` item. Exit status: 0 when every input
was predicted, 1 when any failed (the others are still predicted), 2 for usage errors (a run
that failed or did not finish, a recipe without ``predict``, a run that lacks what
prediction needs).
"""

from __future__ import annotations

import logging
import sys
from pathlib import Path

import click
from rich.markup import escape

from emofeat.cli.output import console
from emofeat.errors import ConfigError, EmofeatError


class _ConsoleHandler(logging.Handler):
    """Log records of the prediction on the stderr console (messages only)."""

    def emit(self, record: logging.LogRecord) -> None:
        colour = "yellow" if record.levelno >= logging.WARNING else "dim"
        console.print(f"[{colour}]{escape(record.getMessage())}[/]", highlight=False)


@click.command()
@click.argument("run_dir", type=click.Path(file_okay=False, exists=True))
@click.argument("inputs", nargs=-1, required=True)
@click.option(
    "-o",
    "--out",
    required=True,
    type=click.Path(file_okay=False),
    help="Output folder: OUT/<input>.csv per input, and the store OUT/features.h5 "
    "unless --store is given.",
)
@click.option(
    "--store",
    type=click.Path(dir_okay=False),
    default=None,
    help="Feature store to extract into and reuse (default OUT/features.h5); the "
    "predictions are written there too, as the 'predict' item.",
)
@click.option(
    "--model",
    default=None,
    help="Which of the run's models to apply (video, audio, fusion, decision_weights, ...; "
    "default: the run's best, metrics.json 'best').",
)
@click.option(
    "--crops",
    type=click.Path(file_okay=False, exists=True),
    default=None,
    help="Folder of face-crop folders named after the inputs' stems (CROPS/<stem>/00001.jpg): "
    "face features come from the crops instead of the video's face stage.",
)
@click.option("--device", default="cpu", show_default=True, help="cpu, cuda, cuda:N.")
@click.option(
    "--report",
    is_flag=True,
    help="Also write OUT/report.html: the store's report, predictions included.",
)
@click.option("-q", "--quiet", is_flag=True, help="No progress bars or progress messages.")
def predict(
    run_dir: str,
    inputs: tuple[str, ...],
    out: str,
    store: str | None,
    model: str | None,
    crops: str | None,
    device: str,
    report: bool,
    quiet: bool,
) -> None:
    """Apply the trained run RUN_DIR to INPUTS (video files, folders, globs).

    \b
    emofeat predict runs/abaw_va-20261205-170127 new_videos/ -o predictions
    emofeat predict runs/abaw_expr-... clip.mp4 -o out --model fusion --report
    """
    from emofeat.media.discovery import find_inputs
    from emofeat.recipes import predict_run

    paths, problems = find_inputs(list(inputs))
    for spec, msg in problems:
        console.print(f"[red]error[/] {escape(spec)}: {escape(msg)}", highlight=False)
    log = logging.getLogger("emofeat.predict.cli")
    log.setLevel(logging.INFO)
    log.propagate = False
    handler = _ConsoleHandler()
    if not quiet:
        log.addHandler(handler)
    out_dir = Path(out)
    try:
        if not paths:
            console.print("[red bold]error[/] no input to predict", highlight=False)
            sys.exit(1 if problems else 2)
        result = predict_run(
            run_dir,
            list(paths),
            out_dir,
            store=store,
            model=model,
            crops=crops,
            device=device,
            quiet=quiet,
            log=log,
        )
    except (ConfigError, EmofeatError) as exc:
        console.print(f"[red bold]error[/] {escape(str(exc))}", highlight=False)
        sys.exit(2)
    finally:
        log.removeHandler(handler)
    for o in result.outcomes:
        if o.status == "done":
            console.print(
                f"[green]     done[/] {escape(str(o.input))} -> {escape(str(o.csv))} "
                f"({o.frames} frames)",
                highlight=False,
            )
        else:
            console.print(
                f"[red]   failed[/] {escape(str(o.input))} - {escape(o.message)}", highlight=False
            )
    store_path = Path(store) if store else out_dir / "features.h5"
    if report:
        from emofeat.report import write_store_report  # the report module, imported on use

        html = out_dir / "report.html"
        write_store_report(store_path, html)
        console.print(f"report: {escape(str(html))}", highlight=False)
    failed = result.failed
    if failed:
        console.print(f"{len(failed)} input(s) failed:", highlight=False)
        for o in failed:
            console.print(f"  {escape(str(o.input))}: {escape(o.message)}", highlight=False)
    console.print(
        f"predictions of model {escape(result.model)}: {escape(str(out_dir))} "
        f"(store {escape(str(store_path))})",
        highlight=False,
    )
    if failed or problems:
        sys.exit(1)
