"""Probing: what an input holds (streams, rate, size, codecs), read without decoding."""

from __future__ import annotations

import errno
import os
import stat
import struct
import threading
from collections import Counter
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
        warnings: what probing found suspicious (a truncated or lying header...), each
            naming the input; the decoder reports them with its own.
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
    warnings: list[str] = field(default_factory=list, repr=False)

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
        raise MediaError(path, _why_missing(path))
    if not os.access(path, os.R_OK):
        raise MediaError(path, "permission denied (not readable)")
    if path.is_file() and path.stat().st_size == 0:
        raise MediaError(path, "empty file (0 bytes)")


def _why_missing(path: Path) -> str:
    """Why a path that does not exist cannot be read (``exists()`` follows links)."""
    if not path.is_symlink():
        return "no such file or directory"
    try:
        path.resolve(strict=True)
    except RuntimeError:  # Python < 3.13 reports a loop so
        return "a symbolic link loop (the link leads back to itself)"
    except OSError as exc:
        if exc.errno == errno.ELOOP:
            return "a symbolic link loop (the link leads back to itself)"
    return f"a dangling symbolic link (its target {os.readlink(path)} does not exist)"


#: FFmpeg options for opening a RIFF/WAVE file: its header says all there is to know, so
#: FFmpeg need not read ahead to learn the streams (its default reads up to 5 MB and takes
#: about 2 ms per file, which a corpus of short clips pays per input). ``max_size``: the WAV
#: demuxer's packets of 8 KiB instead of its default 2 KiB, so a third of the packets and
#: frames go through PyAV (the same samples; measured fastest: larger packets cost more)
_WAV_OPTIONS = {"probesize": "32", "analyzeduration": "0", "max_size": "8192"}


def _is_wav(path: Path) -> bool:
    """True for a regular file that starts as a RIFF/WAVE file (a pipe is not read: what
    is read from it is gone)."""
    try:
        if not stat.S_ISREG(os.stat(path).st_mode):
            return False
        with open(path, "rb") as f:
            head = f.read(12)
    except OSError:
        return False
    return _riff_wave(head)


def _riff_wave(head: bytes) -> bool:
    """True when a file's first 12 bytes are a RIFF/WAVE header's."""
    return len(head) == 12 and head[:4] == b"RIFF" and head[8:12] == b"WAVE"


def _complete(container: av.container.InputContainer) -> bool:
    """True when every audio stream's rate and channels are known."""
    return all(
        s.codec_context is not None and s.codec_context.sample_rate and s.codec_context.channels
        for s in container.streams.audio
    )


def open_container(path: Path) -> av.container.InputContainer:
    """Open a media file with PyAV for reading (the container :func:`probe` just opened,
    when it was this file's).

    Raises:
        MediaError: the file is unreadable, or FFmpeg cannot open it.
    """
    probed = _take_probed(path)
    if probed is not None:
        return probed
    try:
        if _is_wav(path):
            container = av.open(str(path), mode="r", options=_WAV_OPTIONS)
            if container.streams.audio and _complete(container):
                return container
            container.close()  # an unusual header: let FFmpeg read ahead after all
        return av.open(str(path), mode="r")
    except PermissionError as exc:
        raise MediaError(path, "permission denied") from exc
    except av.error.FFmpegError as exc:
        raise MediaError(
            path,
            "not a media file FFmpeg can read, or the file is truncated/corrupt "
            f"(FFmpeg: {getattr(exc, 'strerror', None) or exc})",
        ) from exc


# The container probe() opened, handed over to the decoding of the same file that follows
# (one slot: the per-input work probes, then decodes, one input after the other).
_probed: dict[str, tuple[tuple[int, int], av.container.InputContainer]] = {}
_probed_lock = threading.Lock()


def _file_state(path: Path) -> tuple[int, int]:
    st = os.stat(path)
    return st.st_size, st.st_mtime_ns


def _keep_probed(path: Path, container: av.container.InputContainer) -> None:
    """Keep ``container`` for the next :func:`open_container` of ``path`` (closing any
    container kept before)."""
    try:
        state = _file_state(path)
    except OSError:
        container.close()
        return
    with _probed_lock:
        old = list(_probed.values())
        _probed.clear()
        _probed[str(path)] = (state, container)
    for _, c in old:
        c.close()


def _take_probed(path: Path) -> av.container.InputContainer | None:
    """The container kept for ``path`` if the file is unchanged since (else None)."""
    with _probed_lock:
        kept = _probed.pop(str(path), None)
    if kept is None:
        return None
    state, container = kept
    try:
        same = _file_state(path) == state
    except OSError:
        same = False
    if not same:
        container.close()
        return None
    return container


def release_probed() -> None:
    """Close the container :func:`probe` kept, if any (an input that is not decoded)."""
    with _probed_lock:
        old = list(_probed.values())
        _probed.clear()
    for _, c in old:
        c.close()


def probe(path: str | os.PathLike, image_fps: float = 30.0, keep: bool = False) -> MediaInfo:
    """Describe an input without decoding it.

    Args:
        path: a video or audio file, or an image-sequence folder.
        image_fps: frame rate in Hz given to image-sequence folders (they carry none).
        keep: keep the opened container for the decoding that follows: the next
            :func:`open_container` of this file (unchanged since) takes it instead of
            opening the file again.

    Raises:
        MediaError: the input is missing, unreadable, empty or not decodable.
    """
    path = Path(path)
    _check_readable(path)
    if path.is_dir():
        return _probe_images(path, image_fps)
    container = open_container(path)
    kept = False
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
        for st in vstreams[:1] + astreams[:1]:
            if st.codec_context is None:  # FFmpeg has no decoder for it
                raise MediaError(
                    path,
                    f"the {st.type} stream's codec is unknown or unsupported "
                    "(the file is corrupt, or needs a codec this FFmpeg lacks)",
                )
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
        _check_plausible(info)
        if info.kind == "audio" and info.audio_codec.startswith("pcm_") and path.is_file():
            info.warnings.extend(_wav_size_warnings(path))
        if keep:
            _keep_probed(path, container)
            kept = True
        return info
    finally:
        if not kept:
            container.close()


AUDIO_RATES = (1_000, 1_000_000)
"""Audio sampling rates (Hz) an input may declare: outside, the header is taken to lie."""


def _check_plausible(info: MediaInfo) -> None:
    """Refuse a header whose values cannot be true (they would make decoding run for hours
    or allocate without bound): a frame size FFmpeg itself refuses, an absurd audio rate."""
    w, h = info.width, info.height
    if info.has_video and (w + 128) * (h + 128) >= 2**31 // 8:  # FFmpeg's av_image_check_size
        raise MediaError(info.path, f"implausible frame size {w}x{h} pixels in the header")
    lo, hi = AUDIO_RATES
    if info.has_audio and info.audio_rate and not lo <= info.audio_rate <= hi:
        raise MediaError(
            info.path,
            f"implausible audio sampling rate {info.audio_rate} Hz in the header "
            f"(expected {lo} to {hi} Hz)",
        )


def _wav_size_warnings(path: Path) -> list[str]:
    """What a RIFF/WAVE header declares about its data that the file contradicts.

    FFmpeg reads what is there and says nothing: a data chunk longer than the file (cut
    off, or a lying size) is read to the end of the file, and one shorter than the audio
    that follows it is read only as far as it declares.
    """
    try:
        with open(path, "rb") as f:
            head = f.read(12)
            if not _riff_wave(head):
                return []
            size = os.fstat(f.fileno()).st_size
            byte_rate = 0
            while True:
                chunk = f.read(8)
                if len(chunk) < 8:
                    return []
                cid, clen = chunk[:4], struct.unpack("<I", chunk[4:])[0]
                if cid == b"fmt " and clen >= 16:
                    byte_rate = struct.unpack("<I", f.read(16)[8:12])[0]
                    f.seek(clen - 16 + (clen & 1), os.SEEK_CUR)
                elif cid == b"data":
                    start = f.tell()
                    break
                else:
                    f.seek(clen + (clen & 1), os.SEEK_CUR)
            after = start + clen
            f.seek(after + (clen & 1))
            following = f.read(4)
    except OSError:
        return []
    if not byte_rate or clen in (0, 0xFFFFFFFF):  # unknown size (written to a pipe)
        return []
    declared, held = clen / byte_rate, (size - start) / byte_rate
    if after > size:
        return [
            f"{path}: truncated? the WAV header declares {declared:.3f} s of audio "
            f"({clen} bytes) but the file holds {held:.3f} s ({size - start} bytes)"
        ]
    if len(following) == 4 and not _chunk_id(following):
        # more bytes follow the data, and they are no chunk: the audio goes on
        return [
            f"{path}: the WAV header declares {declared:.3f} s of audio but "
            f"{(size - after) / byte_rate:.3f} s more follow it (a wrong size in the header?); "
            "only the declared part is read"
        ]
    return []


def _chunk_id(four: bytes) -> bool:
    """True for what can be a RIFF chunk id: a letter or digit, then printable ASCII."""
    return chr(four[0]).isalnum() and all(32 <= b < 127 for b in four)


MAX_FRAME_NUMBER = 1_000_000
"""Frame numbers above this are refused when the folder holds far fewer images (under 1 in
100): a stray or misnamed file would otherwise make a grid of millions of empty frames."""


def _probe_images(path: Path, image_fps: float) -> MediaInfo:
    found = frame_numbers(path)
    numbers = sorted({n for n in found if n > 0})
    if not numbers:
        if found:
            raise MediaError(
                path, "its only numbered image is frame 0, but frame numbers start at 1 (00001.jpg)"
            )
        raise MediaError(path, "folder holds no numbered frame images (expected 00001.jpg, ...)")
    if image_fps <= 0:
        raise MediaError(path, f"image_fps must be positive, got {image_fps}")
    high = numbers[-1]
    if high > MAX_FRAME_NUMBER and high > 100 * len(numbers):
        (last,) = image_paths(path, [high])
        raise MediaError(
            path,
            f"implausible frame numbers: the highest is {high} ({last.name}) but the folder "
            f"holds {len(numbers)} images (a stray or misnamed file?)",
        )
    warnings = []
    if 0 in found:
        warnings.append(
            f"{path}: an image numbered 0 is not used (frame numbers start at 1: 00001.jpg "
            "is the first frame)"
        )
    counts = Counter(found)
    doubled = sorted(n for n, k in counts.items() if n > 0 and k > 1)
    if doubled:
        warnings.append(
            f"{path}: {len(doubled)} frame numbers have more than one image (first: "
            f"{doubled[0]:05d}); the first name in sorted order is used"
        )
    from PIL import Image

    size, first_error = None, None
    for image in image_paths(path, numbers):  # the first frame that opens gives the size
        try:
            with Image.open(image) as im:
                size = im.size
            break
        except Exception as exc:
            first_error = first_error or f"{image.name}: {exc}"
    if size is None:
        raise MediaError(path, f"none of its {len(numbers)} images can be read ({first_error})")
    width, height = size
    return MediaInfo(
        path=path,
        kind="images",
        has_video=True,
        has_audio=False,
        duration=high / image_fps,
        fps=image_fps,
        n_frames=high,
        width=width,
        height=height,
        video_codec="images",
        frame_numbers=numbers,
        warnings=warnings,
    )
