"""Inputs with known content for contract checks (written by :mod:`emofeat.samples`)."""

from __future__ import annotations

import os
from pathlib import Path

#: the kinds of input :func:`sample_input` writes
KINDS = ("audio", "video", "silent_video", "images")


def sample_input(
    kind: str,
    directory: str | os.PathLike,
    seconds: float = 1.5,
    *,
    fps: float = 10.0,
    size: tuple[int, int] = (160, 120),
    sampling_rate: int = 16000,
) -> Path:
    """Write a short input with known content (see :mod:`emofeat.samples`).

    Args:
        kind: ``"audio"`` (mono WAV of speech-like sound), ``"video"`` (MP4, H.264 frames
            of a moving disc plus speech-like AAC audio), ``"silent_video"`` (the same
            without audio) or ``"images"`` (a folder of numbered JPEG frames).
        directory: where to write it (created if missing).
        seconds: duration in seconds.
        fps: frame rate in Hz of videos and of the image count (``seconds * fps`` frames).
        size: frame size ``(width, height)`` in pixels (even numbers for H.264).
        sampling_rate: audio sampling rate in Hz.

    Returns:
        The file, or the folder for ``"images"``.
    """
    from emofeat.samples import write_audio, write_image_sequence, write_video

    if kind not in KINDS:
        raise ValueError(f"sample_input: kind {kind!r} is not one of {', '.join(KINDS)}")
    if seconds <= 0:
        raise ValueError(f"sample_input: seconds must be positive, got {seconds}")
    folder = Path(directory)
    folder.mkdir(parents=True, exist_ok=True)
    if kind == "audio":
        return write_audio(folder / "sample.wav", seconds, sampling_rate)
    if kind == "images":
        n = max(1, int(round(seconds * fps)))
        return write_image_sequence(folder / "sample_frames", n_frames=n, size=size)
    audio = kind == "video"
    name = "sample.mp4" if audio else "sample_silent.mp4"
    return write_video(folder / name, seconds, fps, size, audio=audio, sampling_rate=sampling_rate)
