"""Frame grids: the rows features are aligned to, and counting them by demuxing only.

A video container's grid has one row per frame packet (each distinct timestamp once), an
image folder's one row per frame number up to the highest, an audio-only input's a fixed
rate over the decoded audio.
"""

from __future__ import annotations

import math
import os
from dataclasses import dataclass
from fractions import Fraction

import av
import numpy as np

from emofeat.errors import MediaError
from emofeat.media.probing import MediaInfo, open_container, probe


@dataclass
class FrameGrid:
    """The input's frame grid: one row per video frame (or per grid step for audio).

    Frame ``k`` covers ``[starts[k], ends[k])`` seconds; ``ends[k]`` is the next frame's start
    (the last frame lasts one nominal frame period).
    """

    starts: np.ndarray
    ends: np.ndarray
    rate: float
    source: str  # "container", "images" or "fixed"

    def __len__(self) -> int:
        return len(self.starts)

    @property
    def centres(self) -> np.ndarray:
        """Frame centres in seconds."""
        return (self.starts + self.ends) / 2.0


def grid_from_starts(starts: np.ndarray, nominal_rate: float, source: str) -> FrameGrid:
    """Build a frame grid from frame start times (seconds) and a nominal rate (Hz)."""
    starts = np.asarray(starts, dtype=np.float64)
    if len(starts) == 0:
        return FrameGrid(starts, starts.copy(), nominal_rate, source)
    ends = np.empty_like(starts)
    ends[:-1] = starts[1:]
    ends[-1] = starts[-1] + 1.0 / nominal_rate
    return FrameGrid(starts, ends, nominal_rate, source)


def fixed_grid(duration: float, rate: float) -> FrameGrid:
    """A regular grid at ``rate`` Hz covering ``duration`` seconds (audio-only inputs)."""
    n = max(1, math.ceil(duration * rate - 1e-9))
    starts = np.arange(n, dtype=np.float64) / rate
    return FrameGrid(starts, starts + 1.0 / rate, rate, "fixed")


def images_grid(info: MediaInfo) -> FrameGrid:
    """The grid of an image folder: frame numbers 1 to the highest at the folder's rate."""
    fps = float(info.fps or 30.0)
    return grid_from_starts(np.arange(info.n_frames, dtype=np.float64) / fps, fps, "images")


def frame_packet_pts(packet: av.Packet) -> int | None:
    """The pts of a demuxed video packet that is a row of the frame grid, else None: a frame
    packet has a timestamp and data, and the container does not mark it discarded (before
    the start of playback).

    Empty packets (e.g. the zero-size chunks an AVI muxer writes for skipped frames, which
    the AVI header still counts) are not frames.
    """
    if packet.pts is None or not packet.size or packet.is_discard:
        return None
    return packet.pts


def time_base(stream: av.stream.Stream) -> Fraction:
    """A demuxed stream's time base (PyAV types it optional; FFmpeg sets it on every stream
    of an input it opens)."""
    if stream.time_base is None:
        raise ValueError(f"stream #{stream.index} has no time base")
    return stream.time_base


def stream_origin(stream: av.stream.Stream) -> float:
    """A stream's start time in seconds (0 when unset); the video stream's is t = 0 of a
    container input."""
    return float(stream.start_time * time_base(stream)) if stream.start_time else 0.0


def container_grid(pts: list[int], tb: float, origin: float, fps: float | None) -> FrameGrid:
    """The frame grid of a video container from its frame packets' pts (any order).

    One row per distinct pts; the nominal rate is the container's average rate, else the
    measured one (30 Hz for a single frame).
    """
    starts = np.unique(np.asarray(pts, dtype=np.float64)) * tb - origin
    rate = fps or (len(starts) / max(starts[-1], 1e-9) if len(starts) > 1 else 30.0)
    return grid_from_starts(starts, float(rate), "container")


def demux_grid(source: str | os.PathLike | MediaInfo, image_fps: float = 30.0) -> FrameGrid:
    """The frame grid :class:`~emofeat.Decoder` builds for an input, without decoding anything.

    For a video container the packets of the video stream are demuxed (read, not decoded)
    and every packet with a timestamp and data that the container does not discard is one
    frame, exactly as the decoder builds its grid; the result equals ``Decoder(info).grid``
    after iteration, starts, ends and rate included. For an image folder the grid runs to
    the highest frame number at ``image_fps`` (gaps are rows too).

    Args:
        source: a path, or a :class:`MediaInfo` from :func:`probe` (saves opening twice).
        image_fps: frame rate of an image folder when ``source`` is a path.

    Raises:
        MediaError: the input is unreadable or corrupt, or has no video (an audio file's
            grid depends on how much audio decodes).
    """
    info = source if isinstance(source, MediaInfo) else probe(source, image_fps=image_fps)
    if info.kind == "images":
        return images_grid(info)
    if not info.has_video:
        raise MediaError(info.path, "no video stream (an audio file has no frame grid to count)")
    container = open_container(info.path)
    try:
        vstream = container.streams.video[0]
        pts = [t for t in map(frame_packet_pts, container.demux(vstream)) if t is not None]
        return container_grid(pts, float(time_base(vstream)), stream_origin(vstream), info.fps)
    except av.error.FFmpegError as exc:
        raise MediaError(info.path, f"demuxing failed: the file is corrupt ({exc})") from exc
    finally:
        container.close()


def count_frames(source: str | os.PathLike | MediaInfo, image_fps: float = 30.0) -> int:
    """Number of frames of an input as ``emofeat extract`` sees them, without decoding.

    Equals ``len(grid)`` of the :class:`~emofeat.Decoder` (the rows features are aligned
    to): the video packets that carry a timestamp and data, each distinct timestamp once.
    This is not the container header's frame count, which may differ: an AVI counts the
    empty chunks written for skipped frames (a 6 fps AVI may declare 13 frames and hold
    12), and Matroska declares none. Demux only: fast enough for hundreds of videos.

    0 when the video stream holds no frame packets (the decoder refuses such a file).
    Image folders: the highest frame number. Raises :class:`MediaError` as
    :func:`demux_grid` does.
    """
    return len(demux_grid(source, image_fps=image_fps))
