"""Media layer: probe and decode inputs once, streaming bounded chunks (PyAV).

Three kinds of input are understood:

* video containers (mp4, avi, mov, mkv, webm, ...: whatever FFmpeg decodes), with
  constant or variable frame rate; frame times come from the container's timestamps;
* audio files (wav, flac, mp3, m4a, ogg, ...);
* image-sequence folders as Aff-Wild2 ships them (``<track>/00001.jpg``, gaps allowed).

Time origin: t = 0 s is the first video frame's timestamp (audio-only inputs: the first
audio sample). Audio is delivered as mono float32 at every rate an extractor asks for,
sample ``n`` lying at ``n / rate`` seconds: audio before t = 0 is dropped and a late audio
start is filled with silence, so extractors never deal with offsets.

Memory: only the current batch of frames and audio chunk live in memory; what grows with
the input's length is the list of frame timestamps (8 bytes per frame).
"""

from __future__ import annotations

import bisect
import math
import os
import re
from collections.abc import Iterator
from dataclasses import dataclass, field
from pathlib import Path

import av
import numpy as np

from emofeat.errors import MediaError

VIDEO_SUFFIXES = frozenset(
    {
        ".mp4",
        ".avi",
        ".mov",
        ".mkv",
        ".webm",
        ".m4v",
        ".mpg",
        ".mpeg",
        ".wmv",
        ".flv",
        ".3gp",
        ".ts",
    }
)
AUDIO_SUFFIXES = frozenset(
    {".wav", ".flac", ".mp3", ".m4a", ".aac", ".ogg", ".opus", ".wma", ".aiff", ".aif"}
)
IMAGE_SUFFIXES = frozenset({".jpg", ".jpeg", ".png", ".bmp"})
MEDIA_SUFFIXES = VIDEO_SUFFIXES | AUDIO_SUFFIXES

_FRAME_NAME = re.compile(r"^(\d+)\.(jpg|jpeg|png|bmp)$", re.IGNORECASE)


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


@dataclass
class AudioChunk:
    """Consecutive mono samples of an input's audio.

    Attributes:
        samples: float32 array, shape ``(n,)``, nominally in [-1, 1].
        sampling_rate: Hz.
        start: time of ``samples[0]`` in seconds (always ``offset / sampling_rate``).
        offset: index of ``samples[0]`` from the start of the audio, in samples.
    """

    samples: np.ndarray
    sampling_rate: int
    start: float
    offset: int


@dataclass
class VideoChunk:
    """A batch of decoded frames.

    Attributes:
        frames: uint8 RGB array, shape ``(n, height, width, 3)``.
        times: presentation time of each frame in seconds, shape ``(n,)``.
        indices: 0-based position of each frame on the input's frame grid, shape ``(n,)``.
        upstream: rows that required extractors produced for these frames
            (``{extractor name: [Rows, ...]}``), filled by the engine before a dependent
            extractor sees the chunk.
    """

    frames: np.ndarray
    times: np.ndarray
    indices: np.ndarray
    upstream: dict = field(default_factory=dict)


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


def is_image_folder(path: Path) -> bool:
    """True when ``path`` is a folder holding numbered frame images."""
    if not path.is_dir():
        return False
    try:
        return any(_FRAME_NAME.match(entry.name) for entry in os.scandir(path))
    except PermissionError:
        return False


def _check_readable(path: Path) -> None:
    if not path.exists():
        raise MediaError(path, "no such file or directory")
    if not os.access(path, os.R_OK):
        raise MediaError(path, "permission denied (not readable)")
    if path.is_file() and path.stat().st_size == 0:
        raise MediaError(path, "empty file (0 bytes)")


def _open_container(path: Path) -> av.container.InputContainer:
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
    container = _open_container(path)
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
    numbers = sorted(
        int(m.group(1)) for entry in os.scandir(path) if (m := _FRAME_NAME.match(entry.name))
    )
    if not numbers:
        raise MediaError(path, "folder holds no numbered frame images (expected 00001.jpg, ...)")
    if image_fps <= 0:
        raise MediaError(path, f"image_fps must be positive, got {image_fps}")
    from PIL import Image

    first = next(p for p in _image_paths(path, numbers[:1]))
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


def _image_paths(folder: Path, numbers: list[int]) -> Iterator[Path]:
    by_number: dict[int, Path] = {}
    for entry in os.scandir(folder):
        m = _FRAME_NAME.match(entry.name)
        if m:
            by_number.setdefault(int(m.group(1)), Path(entry.path))
    for n in numbers:
        yield by_number[n]


def missing_frame_numbers(info: MediaInfo) -> list[int]:
    """Frame numbers absent from an image folder between 1 and its highest number."""
    present = set(info.frame_numbers)
    return [n for n in range(1, info.n_frames + 1) if n not in present]


class _AudioSink:
    """Resamples decoded audio to one rate and cuts it into chunks of ``chunk`` samples."""

    def __init__(self, rate: int, chunk_seconds: float) -> None:
        self.rate = rate
        # Keep the input's channels and average them below: FFmpeg's own mono downmix
        # weights stereo channels by 1/sqrt(2) each, which leaves [-1, 1] for correlated
        # channels (a dual-mono file would come out 3 dB louder than its mono original).
        self.resampler = av.AudioResampler(format="fltp", layout=None, rate=rate)
        self.chunk = max(1, int(round(chunk_seconds * rate)))
        self.pending: list[np.ndarray] = []
        self.pending_len = 0
        self.emitted = 0
        self.started = False
        self.to_drop = 0  # samples still to drop that lie before t = 0

    def _push(self, samples: np.ndarray) -> Iterator[AudioChunk]:
        if samples.size == 0:
            return
        self.pending.append(samples)
        self.pending_len += samples.size
        while self.pending_len >= self.chunk:
            yield self._take(self.chunk)

    def _take(self, n: int) -> AudioChunk:
        buf = np.concatenate(self.pending) if len(self.pending) > 1 else self.pending[0]
        out, rest = buf[:n], buf[n:]
        self.pending = [rest] if rest.size else []
        self.pending_len = rest.size
        chunk = AudioChunk(
            np.ascontiguousarray(out, dtype=np.float32),
            self.rate,
            self.emitted / self.rate,
            self.emitted,
        )
        self.emitted += out.size
        return chunk

    def feed(self, frame: av.AudioFrame | None, origin: float) -> Iterator[AudioChunk]:
        for out in self.resampler.resample(frame):
            planes = out.to_ndarray()  # (channels, n)
            samples = (planes[0] if planes.shape[0] == 1 else planes.mean(axis=0)).astype(
                np.float32, copy=False
            )
            if not self.started:
                self.started = True
                t = float(out.time) - origin if out.time is not None else 0.0
                lead = int(round(t * self.rate))
                if lead > 0:  # audio starts after the first frame: silence until then
                    samples = np.concatenate([np.zeros(lead, np.float32), samples])
                elif lead < 0:  # audio before t = 0 is dropped (it may span many frames)
                    self.to_drop = -lead
            if self.to_drop:
                n = min(self.to_drop, samples.size)
                samples = samples[n:]
                self.to_drop -= n
            yield from self._push(samples)

    def flush(self, origin: float) -> Iterator[AudioChunk]:
        yield from self.feed(None, origin)
        if self.pending_len:
            yield self._take(self.pending_len)


def _is_frame_packet(packet: av.Packet) -> bool:
    """True for a demuxed video packet that is a row of the frame grid: it has a timestamp
    and data, and the container does not mark it discarded (before the start of playback).

    Empty packets (e.g. the zero-size chunks an AVI muxer writes for skipped frames, which
    the AVI header still counts) are not frames.
    """
    return packet.pts is not None and bool(packet.size) and not packet.is_discard


def _video_origin(vstream: av.video.stream.VideoStream) -> float:
    """t = 0 of a container input: the video stream's start time in seconds."""
    return float(vstream.start_time * vstream.time_base) if vstream.start_time else 0.0


def _container_grid(pts: list[int], tb: float, origin: float, fps: float | None) -> FrameGrid:
    """The frame grid of a video container from its frame packets' pts (any order).

    One row per distinct pts; the nominal rate is the container's average rate, else the
    measured one (30 Hz for a single frame).
    """
    starts = np.unique(np.asarray(pts, dtype=np.float64)) * tb - origin
    rate = fps or (len(starts) / max(starts[-1], 1e-9) if len(starts) > 1 else 30.0)
    return grid_from_starts(starts, float(rate), "container")


def demux_grid(source: str | os.PathLike | MediaInfo, image_fps: float = 30.0) -> FrameGrid:
    """The frame grid :class:`Decoder` builds for an input, without decoding anything.

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
        fps = float(info.fps or 30.0)
        return grid_from_starts(np.arange(info.n_frames, dtype=np.float64) / fps, fps, "images")
    if not info.has_video:
        raise MediaError(info.path, "no video stream (an audio file has no frame grid to count)")
    container = _open_container(info.path)
    try:
        vstream = container.streams.video[0]
        pts = [p.pts for p in container.demux(vstream) if _is_frame_packet(p)]
        return _container_grid(pts, float(vstream.time_base), _video_origin(vstream), info.fps)
    except av.error.FFmpegError as exc:
        raise MediaError(info.path, f"demuxing failed: the file is corrupt ({exc})") from exc
    finally:
        container.close()


def count_frames(source: str | os.PathLike | MediaInfo, image_fps: float = 30.0) -> int:
    """Number of frames of an input as ``emofeat extract`` sees them, without decoding.

    Equals ``len(grid)`` of the :class:`Decoder` (the rows features are aligned to): the
    video packets that carry a timestamp and data, each distinct timestamp once. This is
    not the container header's frame count, which may differ: an AVI counts the empty
    chunks written for skipped frames (a 6 fps AVI may declare 13 frames and hold 12),
    and Matroska declares none. Demux only: fast enough for hundreds of videos.

    0 when the video stream holds no frame packets (the decoder refuses such a file).
    Image folders: the highest frame number. Raises :class:`MediaError` as
    :func:`demux_grid` does.
    """
    return len(demux_grid(source, image_fps=image_fps))


def _decode_packet(packet: av.Packet) -> list | None:
    """Frames of one packet, or None when FFmpeg cannot decode it (counted, then skipped)."""
    try:
        return packet.decode()
    except av.error.FFmpegError:
        return None


class Decoder:
    """Decode one input once, streaming chunks for every consumer.

    Iterate over the decoder to get :class:`VideoChunk` (when ``video`` is true) and
    :class:`AudioChunk` objects (one series per rate in ``audio_rates``), interleaved in
    decoding order. After the iteration, :attr:`grid` holds the input's frame grid and
    :attr:`warnings` anything suspicious (truncation, undecodable packets).

    Args:
        info: from :func:`probe`.
        video: decode frames to RGB arrays (otherwise only their timestamps are read).
        audio_rates: sampling rates in Hz at which mono audio is wanted.
        video_batch: frames per :class:`VideoChunk`.
        audio_chunk: seconds of audio per :class:`AudioChunk`.
        grid_rate: rate in Hz of the fixed frame grid for audio-only inputs.
    """

    def __init__(
        self,
        info: MediaInfo,
        *,
        video: bool = False,
        audio_rates: tuple[int, ...] | list[int] = (),
        video_batch: int = 32,
        audio_chunk: float = 5.0,
        grid_rate: float = 100.0,
    ) -> None:
        if video and not info.has_video:
            raise MediaError(info.path, "no video stream")
        if audio_rates and not info.has_audio:
            raise MediaError(info.path, "no audio track")
        self.info = info
        self.video = video
        self.audio_rates = sorted(set(int(r) for r in audio_rates))
        self.video_batch = video_batch
        self.audio_chunk = audio_chunk
        self.grid_rate = grid_rate
        self.grid: FrameGrid | None = None
        self.warnings: list[str] = []
        self.decoded_seconds = 0.0
        self.audio_samples: dict[int, int] = {}

    def __iter__(self) -> Iterator[AudioChunk | VideoChunk]:
        if self.info.kind == "images":
            yield from self._iter_images()
        else:
            yield from self._iter_container()

    # -- image folders -------------------------------------------------------------
    def _iter_images(self) -> Iterator[VideoChunk]:
        from PIL import Image

        info = self.info
        fps = float(info.fps or 30.0)
        starts = np.arange(info.n_frames, dtype=np.float64) / fps
        self.grid = grid_from_starts(starts, fps, "images")
        missing = missing_frame_numbers(info)
        if missing:
            self.warnings.append(
                f"{info.path}: {len(missing)} of {info.n_frames} frame numbers are missing "
                f"(first: {missing[0]:05d}); those frames are masked"
            )
        if not self.video:
            return
        batch: list[np.ndarray] = []
        idx: list[int] = []

        def emit() -> VideoChunk:
            ii = np.asarray(idx, dtype=np.int64)
            chunk = VideoChunk(np.stack(batch), starts[ii], ii)
            batch.clear()
            idx.clear()
            return chunk

        for number, path in zip(
            info.frame_numbers, _image_paths(info.path, info.frame_numbers), strict=True
        ):
            try:
                with Image.open(path) as im:
                    arr = np.asarray(im.convert("RGB"))
            except Exception as exc:
                self.warnings.append(f"{path}: cannot read image ({exc}); frame masked")
                continue
            if batch and arr.shape != batch[0].shape:
                yield emit()
            batch.append(arr)
            idx.append(number - 1)
            self.decoded_seconds = number / fps
            if len(batch) >= self.video_batch:
                yield emit()
        if batch:
            yield emit()

    # -- containers ----------------------------------------------------------------
    def _iter_container(self) -> Iterator[AudioChunk | VideoChunk]:
        info = self.info
        container = _open_container(info.path)
        try:
            yield from self._demux(container)
        finally:
            container.close()

    def _demux(self, container: av.container.InputContainer) -> Iterator[AudioChunk | VideoChunk]:
        info = self.info
        vstream = container.streams.video[0] if info.has_video else None
        astream = container.streams.audio[0] if self.audio_rates else None
        if vstream is not None:
            vstream.thread_type = "AUTO"
            tb = float(vstream.time_base)
            origin = _video_origin(vstream)
        else:
            tb = 0.0
            st = container.streams.audio[0]
            origin = float(st.start_time * st.time_base) if st.start_time else 0.0
        sinks = [_AudioSink(rate, self.audio_chunk) for rate in self.audio_rates]
        pts_list: list[int] = []
        frames: list[np.ndarray] = []
        frame_pts: list[int] = []
        bad_packets = 0
        streams = [s for s in (vstream, astream) if s is not None]

        def emit_video() -> VideoChunk:
            # A frame is output only after every packet presented before it has been read,
            # so its rank among the pts seen so far is its final position on the grid.
            chunk = VideoChunk(
                np.stack(frames),
                np.asarray(frame_pts, dtype=np.float64) * tb - origin,
                np.asarray([bisect.bisect_left(pts_list, p) for p in frame_pts], dtype=np.int64),
            )
            frames.clear()
            frame_pts.clear()
            return chunk

        try:
            for packet in container.demux(*streams):
                if packet.stream is vstream:
                    if _is_frame_packet(packet):
                        if pts_list and packet.pts < pts_list[-1]:
                            bisect.insort(pts_list, packet.pts)
                        else:
                            pts_list.append(packet.pts)
                    if not self.video:
                        continue
                    decoded = _decode_packet(packet)
                    bad_packets += decoded is None
                    for frame in decoded or ():
                        if frame.pts is None:
                            continue
                        frames.append(frame.to_ndarray(format="rgb24"))
                        frame_pts.append(frame.pts)
                        self.decoded_seconds = frame.pts * tb - origin
                        if len(frames) >= self.video_batch:
                            yield emit_video()
                else:
                    decoded = _decode_packet(packet)
                    bad_packets += decoded is None
                    for frame in decoded or ():
                        if frame.time is not None and vstream is None:
                            self.decoded_seconds = frame.time - origin
                        for sink in sinks:
                            yield from sink.feed(frame, origin)
        except av.error.FFmpegError as exc:
            raise MediaError(info.path, f"decoding failed: the file is corrupt ({exc})") from exc
        if frames:
            yield emit_video()
        for sink in sinks:
            yield from sink.flush(origin)
            self.audio_samples[sink.rate] = sink.emitted
        if bad_packets:
            self.warnings.append(f"{info.path}: {bad_packets} packets could not be decoded")
        self._finish_grid(pts_list, tb, origin, sinks)

    def _finish_grid(self, pts_list, tb, origin, sinks) -> None:
        info = self.info
        if info.has_video:
            self.grid = _container_grid(pts_list, tb, origin, info.fps)
            decoded = float(self.grid.ends[-1]) if len(self.grid) else 0.0
        else:
            if sinks:
                decoded = sinks[0].emitted / sinks[0].rate
            else:
                decoded = info.duration or 0.0
            self.grid = fixed_grid(decoded, self.grid_rate)
        if info.has_video and len(self.grid) == 0:
            raise MediaError(info.path, "the video stream holds no frames")
        declared = info.duration
        if declared and decoded < declared - max(1.0, 0.05 * declared):
            self.warnings.append(
                f"{info.path}: truncated? the header declares {declared:.2f} s but only "
                f"{decoded:.2f} s could be decoded"
            )
        self.decoded_seconds = decoded


def find_inputs(
    specs: list[str], recursive: bool = True
) -> tuple[list[Path], list[tuple[str, str]]]:
    """Expand files, folders and glob patterns into a sorted list of inputs.

    A folder is an image-sequence input when it holds numbered frame images; otherwise it
    is searched (recursively by default) for media files and image-sequence folders.

    Returns:
        ``(inputs, problems)`` where ``problems`` lists ``(spec, message)`` for arguments
        that matched nothing.
    """
    import glob

    found: list[Path] = []
    problems: list[tuple[str, str]] = []
    for spec in specs:
        if any(ch in spec for ch in "*?["):
            matches = sorted(glob.glob(spec, recursive=True))
            if not matches:
                problems.append((spec, "the pattern matches nothing"))
            for m in matches:
                p = Path(m)
                if p.is_dir() and not is_image_folder(p):
                    found.extend(_walk(p, recursive))
                else:
                    found.append(p)
            continue
        p = Path(spec)
        if p.is_dir() and not is_image_folder(p):
            if not os.access(p, os.R_OK | os.X_OK):
                problems.append((spec, "permission denied (folder not readable)"))
                continue
            items = _walk(p, recursive)
            if not items:
                problems.append((spec, "folder holds no media files or image sequences"))
            found.extend(items)
        else:
            found.append(p)  # missing or unreadable files are reported when processed
    seen: set[Path] = set()
    unique = []
    for p in found:
        key = p.resolve() if p.exists() else p
        if key not in seen:
            seen.add(key)
            unique.append(p)
    return unique, problems


def _walk(folder: Path, recursive: bool) -> list[Path]:
    out: list[Path] = []
    try:
        entries = sorted(os.scandir(folder), key=lambda e: e.name)
    except PermissionError:
        return out
    for entry in entries:
        p = Path(entry.path)
        if entry.is_dir():
            if is_image_folder(p):
                out.append(p)
            elif recursive:
                out.extend(_walk(p, recursive))
        elif p.suffix.lower() in MEDIA_SUFFIXES:
            out.append(p)
    return out
