"""Write small media files with known content (demo inputs, tests, benchmarks).

The audio is a voiced, speech-like signal: a harmonic source whose pitch follows a slow
contour, shaped by syllable-rate (4 Hz) amplitude envelopes and two vowel-like formant
resonances, plus a little noise. The video shows a face-sized moving disc on a background
whose brightness encodes the frame number (``frame_code``), so decoding order and timing
can be checked from the pixels.
"""

from __future__ import annotations

from fractions import Fraction
from pathlib import Path
from typing import TYPE_CHECKING, cast

import av
import numpy as np

if TYPE_CHECKING:
    from av.audio.stream import AudioStream
    from av.video.stream import VideoStream


def speech_like(
    duration: float, sampling_rate: int = 16000, f0: float = 140.0, seed: int = 0
) -> np.ndarray:
    """A speech-like mono signal in [-1, 1].

    Args:
        duration: seconds.
        sampling_rate: Hz.
        f0: mean pitch in Hz (the contour moves +-25 % around it).
        seed: noise seed.
    """
    rng = np.random.default_rng(seed)
    n = int(round(duration * sampling_rate))
    t = np.arange(n) / sampling_rate
    contour = f0 * (1 + 0.25 * np.sin(2 * np.pi * 0.3 * t) + 0.1 * np.sin(2 * np.pi * 1.7 * t))
    phase = 2 * np.pi * np.cumsum(contour) / sampling_rate
    formants = (700.0, 1200.0)
    x = np.zeros(n)
    for h in range(1, 25):
        fh = contour * h
        gain = sum(1.0 / (1.0 + ((fh - f) / 150.0) ** 2) for f in formants) / h**0.5
        gain = np.where(fh < sampling_rate / 2, gain, 0.0)
        x += gain * np.sin(h * phase)
    envelope = np.clip(np.sin(2 * np.pi * 4.0 * t), 0, None) ** 0.7
    pauses = (np.sin(2 * np.pi * 0.25 * t + 1.0) > -0.7).astype(float)
    x = x * envelope * pauses + 0.01 * rng.standard_normal(n)
    return (0.5 * x / max(1e-9, np.abs(x).max())).astype(np.float32)


def frame_code(index: int) -> int:
    """Background grey level (0-255) of frame ``index`` (0-based) in sample videos."""
    return 16 + (index * 7) % 224


def _frame_image(index: int, width: int, height: int) -> np.ndarray:
    img = np.full((height, width, 3), frame_code(index), dtype=np.uint8)
    cx = int(width / 2 + width / 4 * np.sin(index / 15))
    cy = height // 2
    r = min(width, height) // 5
    yy, xx = np.ogrid[:height, :width]
    disc = (xx - cx) ** 2 + (yy - cy) ** 2 <= r * r
    img[disc] = (230, 180, 150)
    return img


def write_video(
    path: str | Path,
    duration: float = 5.0,
    fps: float | Fraction = 30,
    size: tuple[int, int] = (320, 240),
    audio: bool = True,
    sampling_rate: int = 16000,
    codec: str = "libx264",
    audio_codec: str = "aac",
    frame_times: list[float] | None = None,
    f0: float = 140.0,
    skipped_frame: bool = False,
) -> Path:
    """Write a video with known frames (and speech-like audio).

    Args:
        path: output file (its folder is created); the container follows the suffix
            (mp4, mkv, mov, avi).
        duration: seconds.
        fps: frame rate in Hz (a Fraction such as 30000/1001 for 29.97).
        size: (width, height) in pixels.
        audio: add an audio track.
        sampling_rate: audio rate in Hz.
        codec: video encoder (libx264, libx265, mpeg4, libvpx-vp9, ...).
        audio_codec: audio encoder.
        frame_times: explicit presentation times in seconds (variable frame rate);
            overrides ``fps`` and ``duration`` for the video stream.
        f0: mean pitch of the audio in Hz.
        skipped_frame: AVI only: end the video with an empty chunk, the AVI muxer's mark of
            a skipped frame, which the header counts (it then declares one frame more than
            the file holds, as some real AVIs do).
    """
    path = Path(path)
    if skipped_frame and path.suffix.lower() != ".avi":
        raise ValueError(f"{path}: skipped_frame needs an .avi file")
    path.parent.mkdir(parents=True, exist_ok=True)
    if path.suffix.lower() == ".avi" and audio_codec == "aac":
        # AVI cannot mark encoder priming: with AAC or MP3 audio FFmpeg's AVI muxer shifts
        # the video by padding frames, so sample AVIs carry PCM audio
        audio_codec = "pcm_s16le"
    width, height = size
    rate = Fraction(fps).limit_denominator(1001) if not isinstance(fps, Fraction) else fps
    with av.open(str(path), "w") as out:
        vs = cast("VideoStream", out.add_stream(codec, rate=rate if frame_times is None else 1000))
        vs.width, vs.height = width, height
        vs.pix_fmt = "yuv420p"
        if frame_times is not None:
            vs.codec_context.time_base = Fraction(1, 1000)
        if audio:
            ast = cast("AudioStream", out.add_stream(audio_codec, rate=sampling_rate))
            ast.layout = "mono"
        times = (
            list(frame_times)
            if frame_times is not None
            else [i / float(rate) for i in range(int(round(duration * float(rate))))]
        )
        for i, t in enumerate(times):
            frame = av.VideoFrame.from_ndarray(_frame_image(i, width, height), format="rgb24")
            if frame_times is not None:
                frame.pts = int(round(t * 1000))
                frame.time_base = Fraction(1, 1000)
            for packet in vs.encode(frame):
                out.mux(packet)
        for packet in vs.encode():
            out.mux(packet)
        if skipped_frame:
            empty = av.Packet(0)
            empty.stream = vs
            empty.time_base = 1 / rate
            empty.pts = empty.dts = len(times)
            out.mux(empty)
        if audio:
            total = times[-1] + 1.0 / float(rate) if times else duration
            _encode_audio(out, ast, speech_like(total, sampling_rate, f0=f0), sampling_rate)
    return path


def _encode_audio(
    out: av.container.OutputContainer, stream: AudioStream, signal: np.ndarray, sampling_rate: int
) -> None:
    fmt = stream.codec_context.format.name if stream.codec_context.format else "fltp"
    step = stream.codec_context.frame_size or 1024
    pts = 0
    for a in range(0, len(signal), step):
        block = signal[a : a + step]
        if fmt.startswith("s16"):
            arr = (np.clip(block, -1, 1) * 32767).astype(np.int16)[None, :]
            frame = av.AudioFrame.from_ndarray(arr, format="s16", layout="mono")
        else:
            frame = av.AudioFrame.from_ndarray(block[None, :], format="fltp", layout="mono")
        frame.sample_rate = sampling_rate
        frame.pts = pts
        frame.time_base = Fraction(1, sampling_rate)
        pts += len(block)
        for packet in stream.encode(frame):
            out.mux(packet)
    for packet in stream.encode():
        out.mux(packet)


def write_audio(
    path: str | Path,
    duration: float = 5.0,
    sampling_rate: int = 16000,
    codec: str | None = None,
    signal: np.ndarray | None = None,
    f0: float = 140.0,
) -> Path:
    """Write a mono audio file (wav, flac, mp3, m4a, ogg by suffix) of speech-like sound."""
    path = Path(path)
    codecs = {
        ".wav": "pcm_s16le",
        ".flac": "flac",
        ".mp3": "libmp3lame",
        ".m4a": "aac",
        ".ogg": "libopus",
        ".opus": "libopus",
    }
    codec = codec or codecs.get(path.suffix.lower(), "pcm_s16le")
    if signal is None:
        signal = speech_like(duration, sampling_rate, f0=f0)
    rate = (
        48000
        if codec == "libopus" and sampling_rate not in (8000, 12000, 16000, 24000, 48000)
        else sampling_rate
    )
    with av.open(str(path), "w") as out:
        stream = cast("AudioStream", out.add_stream(codec, rate=rate))
        stream.layout = "mono"
        _encode_audio(out, stream, signal, rate)
    return path


def write_image_sequence(
    folder: str | Path,
    n_frames: int = 30,
    size: tuple[int, int] = (112, 112),
    missing: tuple[int, ...] = (),
) -> Path:
    """Write ``00001.jpg ...`` frames (Aff-Wild2 crop layout), leaving out ``missing`` numbers."""
    from PIL import Image

    folder = Path(folder)
    folder.mkdir(parents=True, exist_ok=True)
    for i in range(n_frames):
        if i + 1 in missing:
            continue
        Image.fromarray(_frame_image(i, *size)).save(folder / f"{i + 1:05d}.jpg", quality=95)
    return folder
