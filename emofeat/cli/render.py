"""``emofeat render VIDEO --store STORE [--run RUN_DIR] -o overlay.mp4``: the video with the
stored face box and emotion bars drawn on it (:func:`emofeat.render.render_video`)."""

from __future__ import annotations

import sys
from pathlib import Path

import click
from rich.markup import escape

from emofeat.cli.output import console
from emofeat.errors import EmofeatError


@click.command()
@click.argument("video", type=click.Path(dir_okay=False, exists=True))
@click.option(
    "--store",
    required=True,
    type=click.Path(dir_okay=False),
    help="Feature store holding the video's items (faces, face_expr, predict, pdem...).",
)
@click.option(
    "--run",
    "run_dir",
    type=click.Path(file_okay=False, exists=True),
    default=None,
    help="A finished abaw_va/abaw_expr run: its predictions are computed into the store "
    "first (as emofeat predict does) and drawn.",
)
@click.option("--model", default=None, help="With --run: which of its models (default: best).")
@click.option(
    "-o",
    "--out",
    required=True,
    type=click.Path(dir_okay=False),
    help="The output video (.mp4).",
)
@click.option("--codec", default=None, help="Video encoder (default libx264, else mpeg4).")
@click.option("-q", "--quiet", is_flag=True, help="No progress bars.")
def render(
    video: str,
    store: str,
    run_dir: str | None,
    model: str | None,
    out: str,
    codec: str | None,
    quiet: bool,
) -> None:
    """Draw the stored face box, expression probabilities and valence/arousal on VIDEO.

    \b
    emofeat render clip.mp4 --store feats.h5 -o overlay.mp4
    emofeat render clip.mp4 --store feats.h5 --run runs/abaw_va-20261205-170127 -o overlay.mp4
    """
    from emofeat.render import render_video

    if not Path(store).exists():
        console.print(f"[red bold]error[/] {escape(store)}: no such store", highlight=False)
        sys.exit(2)
    try:
        res = render_video(video, store, out, run=run_dir, model=model, codec=codec, quiet=quiet)
    except EmofeatError as exc:
        console.print(f"[red bold]error[/] {escape(str(exc))}", highlight=False)
        sys.exit(1)
    drawn = ", ".join(f"{k} from {v}" for k, v in res.sources.items()) or "nothing stored to draw"
    console.print(
        f"[green]done[/] {escape(str(res.path))}: {res.frames} frames"
        f"{' with audio' if res.audio else ''} ({escape(drawn)})",
        highlight=False,
    )
