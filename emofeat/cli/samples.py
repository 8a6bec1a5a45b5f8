"""``emofeat sample``: write sample inputs to try the other commands on."""

from __future__ import annotations

import time
from pathlib import Path

import click

from emofeat.cli.output import console


@click.command()
@click.argument("folder", type=click.Path(file_okay=False), default="demo/inputs")
@click.option("--duration", default=20.0, show_default=True, help="Seconds per file.")
def sample(folder: str, duration: float) -> None:
    """Write sample inputs (a video with speech-like audio, a WAV file, an image folder)."""
    from emofeat.samples import write_audio, write_image_sequence, write_video

    root = Path(folder)
    root.mkdir(parents=True, exist_ok=True)
    t0 = time.perf_counter()
    write_video(root / "talk.mp4", duration=duration)
    write_audio(root / "speech.wav", duration=duration)
    write_image_sequence(root / "crops_track", n_frames=90, missing=(40, 41, 42))
    console.print(
        f"wrote sample inputs to {root} in {time.perf_counter() - t0:.1f} s", highlight=False
    )
