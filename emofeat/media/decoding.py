"""Decoding: one pass over an input, streaming bounded chunks of frames and mono audio.

Audio is delivered as mono float32 at every rate an extractor asks for (the channels are
averaged after resampling), sample ``n`` lying at ``n / rate`` seconds: audio before t = 0 is
dropped and a late audio start is filled with silence, so extractors never deal with offsets.
"""

from __future__ import annotations

import bisect
from collections.abc import Iterator
from dataclasses import dataclass, field

import av
import numpy as np

from emofeat.errors import MediaError
from emofeat.media.grid import (
    FrameGrid,
    container_grid,
    fixed_grid,
    frame_packet_pts,
    images_grid,
    stream_origin,
    time_base,
)
from emofeat.media.images import image_paths, missing_frame_numbers
from emofeat.media.probing import MediaInfo, open_container


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


#: integer sample formats and the factor FFmpeg's resampler scales them by to float
_INT_SCALE = {"s16": 1 / 2**15, "s16p": 1 / 2**15, "s32": 1 / 2**31, "s32p": 1 / 2**31}


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
        self.nonfinite = 0  # NaN/infinite samples (float files) replaced by silence
        self.used_resampler = False  # once it has a frame, every frame goes through it

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
        # checked per chunk, not per decoded frame (a WAV file's frames are 1,024 samples)
        bad = ~np.isfinite(out)
        if bad.any():  # float files may hold NaN/inf: silence, counted and reported
            out = np.where(bad, np.float32(0.0), out)
            self.nonfinite += int(bad.sum())
        chunk = AudioChunk(
            np.ascontiguousarray(out, dtype=np.float32),
            self.rate,
            self.emitted / self.rate,
            self.emitted,
        )
        self.emitted += out.size
        return chunk

    def _converted(self, frame: av.AudioFrame | None) -> list[tuple[np.ndarray, float | None]]:
        """``(planes (channels, n) float32, time in seconds)`` of the frame at this rate.

        A frame already at this rate in 16/32-bit integer or float samples is converted
        here (the same arithmetic as FFmpeg's resampler, so the samples are identical): the
        resampler costs about 30 microseconds per call, and a WAV file arrives in frames of
        1,024 samples, so a short clip would spend more time there than in its extractor.
        """
        if frame is not None and not self.used_resampler and frame.sample_rate == self.rate:
            scale = _INT_SCALE.get(frame.format.name)
            if scale is not None or frame.format.name in ("flt", "fltp"):
                planes = frame.to_ndarray()
                if not frame.format.is_planar and len(frame.layout.channels) > 1:
                    planes = planes.reshape(-1, len(frame.layout.channels)).T
                planes = planes.astype(np.float32, copy=False)
                if scale is not None:
                    planes = planes * np.float32(scale)
                return [(planes, frame.time)]
        if frame is not None:
            self.used_resampler = True
        return [(out.to_ndarray(), out.time) for out in self.resampler.resample(frame)]

    def feed(self, frame: av.AudioFrame | None, origin: float) -> Iterator[AudioChunk]:
        for planes, time in self._converted(frame):
            samples = (planes[0] if planes.shape[0] == 1 else planes.mean(axis=0)).astype(
                np.float32, copy=False
            )
            if not self.started:
                self.started = True
                t = float(time) - origin if time is not None else 0.0
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


MAX_CHUNK_BYTES = 512 * 2**20
"""A :class:`VideoChunk` holds fewer than ``video_batch`` frames when they would take more
memory than this (huge frames): memory stays bounded whatever the frame size."""

FRAME_RATES = (0.01, 10_000.0)
"""Frame rates (fps) outside this range are reported: the timestamps are likely wrong."""


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
        self.warnings: list[str] = list(info.warnings)  # the probe's first
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
        self.grid = images_grid(info)
        starts = self.grid.starts
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
        other_size: list[str] = []  # frames whose size differs from the first readable one
        first_shape: tuple[int, ...] | None = None

        def emit() -> VideoChunk:
            ii = np.asarray(idx, dtype=np.int64)
            chunk = VideoChunk(np.stack(batch), starts[ii], ii)
            batch.clear()
            idx.clear()
            return chunk

        for number, path in zip(
            info.frame_numbers, image_paths(info.path, info.frame_numbers), strict=True
        ):
            try:
                with Image.open(path) as im:
                    arr = np.asarray(im.convert("RGB"))
            except Exception as exc:
                self.warnings.append(f"{path}: cannot read image ({exc}); frame masked")
                continue
            first_shape = first_shape or arr.shape
            if arr.shape != first_shape:
                other_size.append(f"{path.name} ({arr.shape[1]}x{arr.shape[0]})")
            if batch and arr.shape != batch[0].shape:
                yield emit()
            batch.append(arr)
            idx.append(number - 1)
            self.decoded_seconds = number / fps
            if len(batch) >= self.video_batch:
                yield emit()
        if batch:
            yield emit()
        if other_size and first_shape is not None:
            self.warnings.append(
                f"{info.path}: {len(other_size)} frame images differ in size from the first "
                f"({first_shape[1]}x{first_shape[0]}), e.g. {other_size[0]}"
            )

    # -- containers ----------------------------------------------------------------
    def _iter_container(self) -> Iterator[AudioChunk | VideoChunk]:
        info = self.info
        container = open_container(info.path)
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
            tb = float(time_base(vstream))
            origin = stream_origin(vstream)
        else:
            tb = 0.0
            origin = stream_origin(container.streams.audio[0])
        sinks = [_AudioSink(rate, self.audio_chunk) for rate in self.audio_rates]
        pts_list: list[int] = []
        frames: list[np.ndarray] = []
        frame_pts: list[int] = []
        bad_packets = 0
        n_decoded = 0  # video frames decoded
        batch_bytes = 0
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
                    pts = frame_packet_pts(packet)
                    if pts is not None:
                        if pts_list and pts < pts_list[-1]:
                            bisect.insort(pts_list, pts)
                        else:
                            pts_list.append(pts)
                    if not self.video:
                        continue
                    decoded = _decode_packet(packet)
                    bad_packets += decoded is None
                    for frame in decoded or ():
                        if frame.pts is None:
                            continue
                        frames.append(frame.to_ndarray(format="rgb24"))
                        frame_pts.append(frame.pts)
                        n_decoded += 1
                        batch_bytes += frames[-1].nbytes
                        self.decoded_seconds = frame.pts * tb - origin
                        if len(frames) >= self.video_batch or batch_bytes >= MAX_CHUNK_BYTES:
                            batch_bytes = 0
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
        if self.video and pts_list and not n_decoded:
            raise MediaError(
                info.path,
                f"no video frame could be decoded ({bad_packets} of {len(pts_list)} frame "
                "packets failed): the video data is corrupt or does not match its header",
            )
        for sink in sinks:
            yield from sink.flush(origin)
            self.audio_samples[sink.rate] = sink.emitted
        if sinks and not info.has_video and not sinks[0].emitted:
            raise MediaError(
                info.path,
                f"no audio could be decoded ({bad_packets} packets failed): the audio data is "
                "corrupt or does not match its header"
                if bad_packets
                else "the audio track holds no samples",
            )
        if bad_packets:
            self.warnings.append(f"{info.path}: {bad_packets} packets could not be decoded")
        if sinks and sinks[0].nonfinite:
            n, rate = sinks[0].nonfinite, sinks[0].rate
            self.warnings.append(
                f"{info.path}: {n} audio samples ({n / rate:.3f} s at {rate} Hz) were not "
                "finite (NaN or infinity); they were replaced by silence"
            )
        self._finish_grid(pts_list, tb, origin, sinks)

    def _finish_grid(
        self, pts_list: list[int], tb: float, origin: float, sinks: list[_AudioSink]
    ) -> None:
        info = self.info
        if info.has_video:
            self.grid = container_grid(pts_list, tb, origin, info.fps)
            decoded = float(self.grid.ends[-1]) if len(self.grid) else 0.0
        else:
            if sinks:
                decoded = sinks[0].emitted / sinks[0].rate
            else:
                decoded = info.duration or 0.0
            self.grid = fixed_grid(decoded, self.grid_rate)
        if info.has_video and len(self.grid) == 0:
            raise MediaError(info.path, "the video stream holds no frames")
        lo, hi = FRAME_RATES
        if info.has_video and not lo <= self.grid.rate <= hi:
            self.warnings.append(
                f"{info.path}: implausible frame rate {self.grid.rate:.3g} fps (expected "
                f"{lo:g} to {hi:g}): the file's timestamps are likely wrong, so features "
                "may be misaligned"
            )
        declared = info.duration
        if declared and decoded < declared - max(1.0, 0.05 * declared):
            self.warnings.append(
                f"{info.path}: truncated? the header declares {declared:.2f} s but only "
                f"{decoded:.2f} s could be decoded"
            )
        self.decoded_seconds = decoded
