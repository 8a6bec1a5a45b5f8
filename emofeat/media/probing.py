"""Probing: what an input holds (streams, rate, size, codecs), read without decoding."""

from __future__ import annotations

import os
from dataclasses import dataclass, field
from pathlib import Path

import av

from emofeat.errors import MediaError
from emofeat.media.images import frame_numbers, image_paths


@dataclass
class MediaInfo:
    """What an input holds, as far as it is known before decoding.

    Attributes:
        path: the file or folder.
        kind: ``"video"`` (a container with a video stream), ``"audio"`` or ``"images"``.
        has_video: frames can be decoded.
        has_audio: an audio track exists.
        duration: declared duration in seconds (``None`` when the container does not say).
        fps: average frame rate in frames per second (``None`` for audio).
        n_frames: declared number of frames (0 when unknown).
        width: frame width in pixels (0 for audio).
        height: frame height in pixels (0 for audio).
        video_codec: FFmpeg codec name of the video stream.
        audio_codec: FFmpeg codec name of the audio stream.
        audio_rate: native audio sampling rate in Hz (0 without audio).
        audio_channels: native number of audio channels.
        frame_numbers: for image folders, the 1-based frame numbers present.
    """

    path: Path
    kind: str
    has_video: bool
    has_audio: bool
    duration: float | None = None
    fps: float | None = None
    n_frames: int = 0
    width: int = 0
    height: int = 0
    video_codec: str = ""
    audio_codec: str = ""
    audio_rate: int = 0
    audio_channels: int = 0
    frame_numbers: list[int] = field(default_factory=list, repr=False)

    def describe(self) -> dict:
        """JSON-serialisable summary (stored with every item)."""
        return {
            "kind": self.kind,
            "has_video": self.has_video,
            "has_audio": self.has_audio,
            "duration": self.duration,
            "fps": self.fps,
            "n_frames": self.n_frames,
            "width": self.width,
            "height": self.height,
            "video_codec": self.video_codec,
            "audio_codec": self.audio_codec,
            "audio_rate": self.audio_rate,
            "audio_channels": self.audio_channels,
        }


def _check_readable(path: Path) -> None:
    if not path.exists():
        raise MediaError(path, "no such file or directory")
    if not os.access(path, os.R_OK):
        raise MediaError(path, "permission denied (not readable)")
    if path.is_file() and path.stat().st_size == 0:
        raise MediaError(path, "empty file (0 bytes)")


def open_container(path: Path) -> av.container.InputContainer:
    """Open a media file with PyAV for reading.

    Raises:
        MediaError: the file is unreadable, or FFmpeg cannot open it.
    """
    try:
        return av.open(str(path), mode="r")
    except PermissionError as exc:
        raise MediaError(path, "permission denied") from exc
    except av.error.FFmpegError as exc:
        raise MediaError(
            path,
            "not a media file FFmpeg can read, or the file is truncated/corrupt "
            f"(FFmpeg: {getattr(exc, 'strerror', None) or exc})",
        ) from exc


def probe(path: str | os.PathLike, image_fps: float = 30.0) -> MediaInfo:
    """Describe an input without decoding it.

    Args:
        path: a video or audio file, or an image-sequence folder.
        image_fps: frame rate in Hz given to image-sequence folders (they carry none).

    Raises:
        MediaError: the input is missing, unreadable, empty or not decodable.
    """
    path = Path(path)
    _check_readable(path)
    if path.is_dir():
        return _probe_images(path, image_fps)
    container = open_container(path)
    try:
        vstreams = list(container.streams.video)
        astreams = list(container.streams.audio)
        if not vstreams and not astreams:
            raise MediaError(path, "no video or audio stream in the file")
        info = MediaInfo(
            path=path,
            kind="video" if vstreams else "audio",
            has_video=bool(vstreams),
            has_audio=bool(astreams),
        )
        if container.duration is not None:
            info.duration = container.duration / 1_000_000
        if vstreams:
            vs = vstreams[0]
            rate = vs.average_rate or vs.guessed_rate or vs.base_rate
            info.fps = float(rate) if rate else None
            info.n_frames = int(vs.frames or 0)
            info.width = int(vs.codec_context.width or 0)
            info.height = int(vs.codec_context.height or 0)
            info.video_codec = vs.codec_context.name
            if info.duration is None and vs.duration is not None and vs.time_base is not None:
                info.duration = float(vs.duration * vs.time_base)
        if astreams:
            st = astreams[0]
            info.audio_codec = st.codec_context.name
            info.audio_rate = int(st.codec_context.sample_rate or 0)
            info.audio_channels = int(st.codec_context.channels or 0)
        return info
    finally:
        container.close()


def _probe_images(path: Path, image_fps: float) -> MediaInfo:
    numbers = frame_numbers(path)
    if not numbers:
        raise MediaError(path, "folder holds no numbered frame images (expected 00001.jpg, ...)")
    if image_fps <= 0:
        raise MediaError(path, f"image_fps must be positive, got {image_fps}")
    from PIL import Image

    first = next(p for p in image_paths(path, numbers[:1]))
    try:
        with Image.open(first) as im:
            width, height = im.size
    except Exception as exc:
        raise MediaError(first, f"cannot read image ({exc})") from exc
    return MediaInfo(
        path=path,
        kind="images",
        has_video=True,
        has_audio=False,
        duration=numbers[-1] / image_fps,
        fps=image_fps,
        n_frames=numbers[-1],
        width=width,
        height=height,
        video_codec="images",
        frame_numbers=numbers,
    )
