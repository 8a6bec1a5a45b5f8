"""A fuzz corpus of bad media: every kind gets a clear per-input outcome, the run goes on.

One table (:data:`CASES`) lists each bad input: its kind, how it is made from real media
(PyAV via :mod:`emofeat.samples`, then byte-level edits) and its expected outcome in the
run log: *failed* with a message, *done* with a warning, *skipped* with the reason, a
*problem* found while collecting inputs, or *same*: a lie in the header that FFmpeg does
not believe, so the features equal those of the untouched file.

The corpus is run the way a user runs it: one ``emofeat extract`` (audio extractor
``egemaps``) over a folder holding every bad input and two good ones, plus an empty folder
and a missing path as arguments, as a process without root's file access (the unreadable
cases). Video frames are decoded only for a video extractor: the cases where that matters
(image folders, frame data that does not match its header, odd frame rates) also run
in-process with ``MeanGrey``, the small real video extractor of tests/test_bad_input.py.

For every case the suite asserts the expected outcome, that the output names the input,
that no traceback is printed or logged, that a failed input leaves no item, and that the
good inputs are stored in full.
"""

from __future__ import annotations

import os
import re
import socket
import struct
import time
from collections.abc import Callable, Iterator
from dataclasses import dataclass
from fractions import Fraction
from pathlib import Path

import av
import numpy as np
import pandas as pd
import pytest
from conftest import world_writable_dir
from test_bad_input import _faststart, extract_unprivileged, norm, run_mean_grey

from emofeat import open_store
from emofeat.samples import write_audio, write_video

SECONDS = 3.0  # of the source files
FPS = 25
GOOD_AUDIO, GOOD_VIDEO = "good_voice", "good_clip"  # the good inputs (keys) of the run


# --------------------------------------------------------------------------------------
# expected outcomes


@dataclass(frozen=True)
class Expect:
    """``status`` of the input in the run log and a regex its message (failed, skipped,
    problem) or one of its warnings (done) must match; ``same``: done, no warning, the
    features equal those of the good input of that key."""

    status: str  # failed | done | skipped | problem | same | unseen
    pattern: str = ""


def failed(pattern: str) -> Expect:
    return Expect("failed", pattern)


def warned(pattern: str) -> Expect:
    return Expect("done", pattern)


def skipped(pattern: str) -> Expect:
    return Expect("skipped", pattern)


def problem(pattern: str) -> Expect:
    """Reported while collecting inputs (never opened): logged as a failed input."""
    return Expect("problem", pattern)


def same(key: str) -> Expect:
    return Expect("same", key)


DONE = Expect("done")  # stored, nothing to detect (PCM carries no checksum)
UNSEEN = Expect("unseen")  # not an input at all (a link back into a folder searched)

NOT_MEDIA = r"not a media file FFmpeg can read, or the file is truncated/corrupt"
NO_STREAM = r"no video or audio stream in the file"
NO_FRAMES = r"the video stream holds no frames"
NO_AUDIO = r"no audio track in this input"
NO_VIDEO = r"no video stream in this input"
WAV_CUT = r"truncated\? the WAV header declares 3\.000 s of audio \(96000 bytes\) but the file"
CUT = r"truncated\? the header declares 3\.00 s but only"
BAD_PACKETS = r"packets could not be decoded"
BAD_FRAMES = r"no video frame could be decoded \(\d+ of \d+ frame packets failed\)"
ODD_RATE = r"implausible frame rate .* fps .*timestamps are likely wrong"


# --------------------------------------------------------------------------------------
# byte-level edits of real media


@dataclass
class Sources:
    """Untouched media the bad inputs are made from."""

    wav: bytes  # 3 s, 16 kHz mono PCM (a LIST chunk before the data chunk)
    mp4: bytes  # 3 s, 25 fps, 160x120 H.264 + AAC, index (moov) at the end
    faststart: bytes  # the same with its index first

    @property
    def data_at(self) -> int:
        """Offset of the first audio byte of the WAV (after the data chunk's header)."""
        return self.wav.index(b"data") + 8


def cut(data: bytes, offset: int) -> bytes:
    return data[:offset]


def flip(data: bytes, offsets: list[int], n: int = 16) -> bytes:
    """``n`` bytes inverted at each offset."""
    b = bytearray(data)
    for o in offsets:
        for i in range(o, min(o + n, len(b))):
            b[i] ^= 0xFF
    return bytes(b)


def pack(data: bytes, offset: int, fmt: str, *values: int) -> bytes:
    b = bytearray(data)
    struct.pack_into(fmt, b, offset, *values)
    return bytes(b)


def atom(data: bytes, name: bytes, nth: int = 0) -> int:
    """Offset of the ``nth`` MP4 atom ``name`` (its size field)."""
    at = -1
    for _ in range(nth + 1):
        at = data.index(name, at + 1)
    return at - 4


def wav_field(s: Sources, what: str, value: int) -> bytes:
    """The WAV with one header field set: riff/data sizes, rate, channels, bits."""
    fmt = s.wav.index(b"fmt ") + 8
    at = {
        "riff": (4, "<I"),
        "data": (s.data_at - 4, "<I"),
        "channels": (fmt + 2, "<H"),
        "rate": (fmt + 4, "<I"),
        "bits": (fmt + 14, "<H"),
    }
    offset, form = at[what]
    return pack(s.wav, offset, form, value)


def avc1_size(data: bytes, w: int, h: int) -> bytes:
    """The frame size in the sample description (the H.264 stream's own says otherwise)."""
    return pack(data, data.index(b"avc1") + 4 + 6 + 2 + 16, ">HH", w, h)


def tkhd_size(data: bytes, w: int, h: int) -> bytes:
    """The display size in the (first) track header, 16.16 fixed point."""
    at = data.index(b"tkhd") + 4
    body = at + 4 + (32 if data[at] == 1 else 20) + 8 + 8 + 36
    return pack(data, body, ">II", w << 16, h << 16)


def mdhd_timescale(data: bytes, timescale: int) -> bytes:
    """The video track's time scale (its frames then last 512 / timescale s each)."""
    at = data.index(b"mdhd") + 4
    return pack(data, at + 4 + (16 if data[at] == 1 else 8), ">I", timescale)


def stts_delta(data: bytes, delta: int) -> bytes:
    """Every frame duration of the video track set to ``delta`` ticks."""
    at = data.index(b"stts") + 4
    b = data
    for i in range(struct.unpack_from(">I", data, at + 4)[0]):
        b = pack(b, at + 8 + 8 * i + 4, ">I", delta)
    return b


def mvhd_duration(data: bytes, duration: int) -> bytes:
    at = data.index(b"mvhd") + 4
    return pack(data, at + 4 + (16 if data[at] == 1 else 8) + 4, ">I", duration)


def raw_avi(path: Path, size: tuple[int, int] | None = None) -> None:
    """A rawvideo AVI of 10 grey 16x16 frames; ``size``: the header claims this size."""
    with av.open(str(path), "w") as out:
        vs = out.add_stream("rawvideo", rate=FPS)
        vs.width = vs.height = 16
        vs.pix_fmt = "gray"
        for i in range(10):
            frame = av.VideoFrame.from_ndarray(np.full((16, 16), 20 * i, np.uint8), "gray")
            out.mux(vs.encode(frame))
        out.mux(vs.encode())
    if size is not None:
        data = path.read_bytes()
        data = pack(data, data.index(b"strf") + 12, "<ii", *size)  # BITMAPINFOHEADER
        data = pack(data, data.index(b"avih") + 8 + 32, "<II", *size)  # main header
        path.write_bytes(data)


def ffv1(path: Path, rate: Fraction | int, frames: int = 4, size: tuple[int, int] = (32, 32)):
    """A lossless video of ``frames`` frames at ``rate`` fps (no audio)."""
    w, h = size
    with av.open(str(path), "w") as out:
        vs = out.add_stream("ffv1", rate=rate)
        vs.width, vs.height, vs.pix_fmt = w, h, "yuv444p"
        for i in range(frames):
            img = np.full((h, w, 3), 40 * i, np.uint8)
            out.mux(vs.encode(av.VideoFrame.from_ndarray(img, format="rgb24")))
        out.mux(vs.encode())


def no_packets(path: Path, video: bool = True) -> None:
    """A container with streams but not a single packet."""
    with av.open(str(path), "w") as out:
        if video:
            vs = out.add_stream("libx264", rate=FPS)
            vs.width, vs.height, vs.pix_fmt = 64, 48, "yuv420p"
        codec = "pcm_s16le" if path.suffix == ".wav" else "aac"
        out.add_stream(codec, rate=16000).layout = "mono"
        out.start_encoding()


def float_wav(path: Path, bad: str) -> None:
    """A float WAV holding NaN/inf (``bad="some"``) or nothing else (``"all"``)."""
    import soundfile

    x = np.random.default_rng(0).normal(0, 0.1, 32000).astype(np.float32)
    if bad == "all":
        x[:] = np.nan
    else:
        x[8000:8100] = np.nan
        x[20000:20010] = np.inf
    soundfile.write(path, x, 16000, subtype="FLOAT")


def frames(path: Path, n: int = 8, size=(48, 32), numbers=None, ext: str = "jpg") -> Path:
    """An image-sequence folder: numbered frames (``numbers``, default 1..n)."""
    from PIL import Image

    path.mkdir(parents=True, exist_ok=True)
    for i, k in enumerate(numbers or range(1, n + 1)):
        Image.fromarray(np.full((size[1], size[0], 3), 30 * i % 256, np.uint8)).save(
            path / f"{k:05d}.{ext}"
        )
    return path


def with_file(folder: Path, name: str, data: bytes | None = None, size=None) -> None:
    """Put one odd frame in an image folder: raw bytes, or a valid image of ``size``."""
    from PIL import Image

    if data is not None:
        (folder / name).write_bytes(data)
    else:
        Image.new("RGB", size, (200, 10, 10)).save(folder / name)


# --------------------------------------------------------------------------------------
# the table: kind, file name, builder, outcome of the audio CLI run, of the video run


Builder = Callable[[Path, Sources], object]


@dataclass(frozen=True)
class Case:
    kind: str
    name: str
    build: Builder
    audio: Expect
    video: Expect | None = None  # None: not in the in-process video run


def _write(fn: Callable[[Sources], bytes]) -> Builder:
    return lambda p, s: p.write_bytes(fn(s))


def _wav_cuts() -> list[Case]:
    offsets: list[tuple[str, Callable[[Sources], int], Expect]] = [
        ("riff", lambda s: 1, failed(NOT_MEDIA)),
        ("wave", lambda s: 12, failed(NOT_MEDIA)),
        ("fmt", lambda s: 30, failed(NOT_MEDIA)),
        ("data_id", lambda s: s.data_at - 6, failed(NOT_MEDIA)),
        ("header_end", lambda s: s.data_at, failed(r"the audio track holds no samples")),
        ("samples_11", lambda s: s.data_at + 22, warned(WAV_CUT + r" holds 0\.001 s")),
        ("quarter", lambda s: s.data_at + 24000, warned(WAV_CUT + r" holds 0\.750 s")),
        ("half", lambda s: s.data_at + 48000, warned(WAV_CUT + r" holds 1\.500 s")),
        ("three_quarters", lambda s: s.data_at + 72000, warned(WAV_CUT + r" holds 2\.250 s")),
        ("last_byte", lambda s: len(s.wav) - 1, warned(WAV_CUT + r" holds 3\.000 s \(95999")),
    ]
    return [
        Case("truncated wav", f"cut_wav_{tag}.wav", _write(lambda s, f=f: cut(s.wav, f(s))), e)
        for tag, f, e in offsets
    ]


def _mp4_cuts() -> list[Case]:
    """Index at the end: a cut anywhere before its end loses the index."""
    offsets: list[tuple[str, Callable[[Sources], int], Expect]] = [
        ("ftyp", lambda s: 8, failed(NOT_MEDIA)),
        ("mdat_start", lambda s: atom(s.mp4, b"mdat") + 100, failed(NOT_MEDIA)),
        ("half", lambda s: len(s.mp4) // 2, failed(NOT_MEDIA)),
        ("before_moov", lambda s: atom(s.mp4, b"moov"), failed(NOT_MEDIA)),
        ("in_moov", lambda s: atom(s.mp4, b"moov") + 50, failed(NO_STREAM)),
        # the last atom is the encoder's name (udta): cutting it loses nothing else
        ("in_udta", lambda s: atom(s.mp4, b"udta") + 20, same(GOOD_VIDEO)),
    ]
    return [
        Case("truncated mp4", f"cut_mp4_{tag}.mp4", _write(lambda s, f=f: cut(s.mp4, f(s))), e)
        for tag, f, e in offsets
    ]


def _faststart_cuts() -> list[Case]:
    """Index first: the frames that are there are read, the cut is reported."""
    fs = lambda s: s.faststart  # noqa: E731
    offsets: list[tuple[str, Callable[[Sources], int], Expect, Expect]] = [
        ("in_moov", lambda s: atom(fs(s), b"moov") + 20, failed(NO_STREAM), failed(NO_STREAM)),
        ("before_mdat", lambda s: atom(fs(s), b"mdat"), failed(NO_FRAMES), failed(NO_FRAMES)),
        (
            "first_frame",
            lambda s: atom(fs(s), b"mdat") + 108,
            warned(CUT + r" 0\.04 s"),
            failed(BAD_FRAMES),
        ),
        (
            "quarter",
            lambda s: len(fs(s)) // 4,
            warned(CUT + r" 0\.\d\d s"),
            warned(CUT + r" 0\.\d\d s"),
        ),
        ("half", lambda s: len(fs(s)) // 2, warned(CUT + r" 1\.\d\d s"), warned(CUT)),
        # losing under max(1 s, 5 %) of the declared duration is within the tolerance of
        # container durations: not reported
        ("end", lambda s: len(fs(s)) - 2000, DONE, DONE),
    ]
    return [
        Case(
            "truncated mp4, index first",
            f"cut_fast_{tag}.mp4",
            _write(lambda s, f=f: cut(s.faststart, f(s))),
            a,
            v,
        )
        for tag, f, a, v in offsets
    ]


def _link_loop(p: Path, s: Sources) -> None:
    p.mkdir()
    (p / "up").symlink_to(p.parent)  # back to the corpus, searched already
    (p / "self").symlink_to(p / "self")


def _socket(p: Path, s: Sources) -> None:
    sock = socket.socket(socket.AF_UNIX)
    sock.bind(str(p))
    sock.close()  # the socket file stays


def _locked_file(p: Path, s: Sources) -> None:
    p.write_bytes(s.wav)
    p.chmod(0)


def _locked_folder(p: Path, s: Sources) -> None:
    p.mkdir()
    (p / "inside.wav").write_bytes(s.wav)
    p.chmod(0)


def _truncated_png(p: Path) -> None:
    frames(p, 5, ext="png")
    png = p / "00003.png"
    png.write_bytes(png.read_bytes()[:60])


def _mixed_modes(p: Path) -> None:
    """Colour, grey and RGBA frames of one size: all become RGB, nothing to report."""
    from PIL import Image

    p.mkdir()
    for k, mode in enumerate(("RGB", "L", "RGBA", "P"), start=1):
        Image.new(mode, (48, 32)).save(p / f"{k:05d}.png")


def _all_broken(p: Path, s: Sources) -> None:
    p.mkdir()
    for k in (1, 2, 3):
        (p / f"{k:05d}.jpg").write_bytes(b"\xff\xd8 not a jpeg")


CASES: list[Case] = [
    *_wav_cuts(),
    *_mp4_cuts(),
    *_faststart_cuts(),
    # flipped bytes
    Case(
        "flipped bytes",
        "flip_wav_magic.wav",
        _write(lambda s: flip(s.wav, [0], 4)),
        failed(NOT_MEDIA),
    ),
    Case(
        "flipped bytes",
        "flip_wav_format.wav",
        _write(lambda s: flip(s.wav, [20], 2)),
        failed(r"the audio stream's codec is unknown or unsupported"),
    ),
    Case(
        "flipped bytes",
        "flip_wav_samples.wav",
        _write(lambda s: flip(s.wav, [s.data_at + 100, 20000, 60000])),
        DONE,
    ),
    Case(
        "flipped bytes",
        "flip_mp4_mdat.mp4",
        _write(lambda s: flip(s.mp4, [atom(s.mp4, b"mdat") + 3000, len(s.mp4) // 2], 64)),
        warned(BAD_PACKETS),
        DONE,
    ),
    Case(
        "flipped bytes",
        "flip_mp4_moov.mp4",
        _write(lambda s: flip(s.mp4, [atom(s.mp4, b"moov") + 204, atom(s.mp4, b"moov") + 604])),
        failed(NO_FRAMES),
        failed(NO_FRAMES),
    ),
    Case(
        "flipped bytes",
        "flip_mp4_many.mp4",
        # 12 places spread over the frame data (mdat .. moov): where the encoder put the
        # index must not decide the outcome
        _write(
            lambda s: flip(
                s.mp4,
                list(
                    range(
                        atom(s.mp4, b"mdat") + 200,
                        atom(s.mp4, b"moov") - 100,
                        max(1, (atom(s.mp4, b"moov") - atom(s.mp4, b"mdat") - 300) // 12),
                    )
                )[:12],
                8,
            )
        ),
        # stored, finite; decoders conceal some flips and report others (which, is not
        # stable across encoder runs); flip_mp4_mdat checks the report
        DONE,
        DONE,
    ),
    # lying sizes
    Case(
        "lying wav sizes",
        "riff_size_huge.wav",
        _write(lambda s: wav_field(s, "riff", 0xFFFFFFFF)),
        same(GOOD_AUDIO),
    ),
    Case(
        "lying wav sizes",
        "riff_size_small.wav",
        _write(lambda s: wav_field(s, "riff", 10)),
        same(GOOD_AUDIO),
    ),
    Case(
        "lying wav sizes",
        "data_size_huge.wav",
        _write(lambda s: wav_field(s, "data", 0xFFFFFFF0)),
        warned(r"truncated\? the WAV header declares 134217\.728 s of audio .* holds 3\.000 s"),
    ),
    Case(
        "lying wav sizes",
        "data_size_small.wav",
        _write(lambda s: wav_field(s, "data", 1000)),
        warned(r"declares 0\.031 s of audio but 2\.969 s more follow it"),
    ),
    Case(
        "lying wav sizes",
        "data_size_zero.wav",
        _write(lambda s: wav_field(s, "data", 0)),
        same(GOOD_AUDIO),
    ),
    Case(
        "lying mp4 atom sizes",
        "moov_size_huge.mp4",
        _write(lambda s: pack(s.mp4, atom(s.mp4, b"moov"), ">I", 0x7FFFFFFF)),
        same(GOOD_VIDEO),
    ),
    Case(
        "lying mp4 atom sizes",
        "moov_size_tiny.mp4",
        _write(lambda s: pack(s.mp4, atom(s.mp4, b"moov"), ">I", 9)),
        failed(NO_STREAM),
    ),
    Case(
        "lying mp4 atom sizes",
        "mdat_size_huge.mp4",
        _write(lambda s: pack(s.mp4, atom(s.mp4, b"mdat"), ">I", 0xFFFFFFF0)),
        failed(NOT_MEDIA),
    ),
    Case(
        "lying mp4 atom sizes",
        "stsz_size_huge.mp4",
        _write(lambda s: pack(s.mp4, atom(s.mp4, b"stsz"), ">I", 0xFFFFFF)),
        failed(NO_FRAMES),
    ),
    Case(
        "lying mp4 atom sizes",
        "stco_size_tiny.mp4",
        _write(lambda s: pack(s.faststart, atom(s.faststart, b"stco"), ">I", 3)),
        failed(NO_FRAMES),
    ),
    # absurd audio header values
    Case(
        "absurd wav header",
        "rate_zero.wav",
        _write(lambda s: wav_field(s, "rate", 0)),
        failed(NOT_MEDIA),
    ),
    Case(
        "absurd wav header",
        "rate_one.wav",
        _write(lambda s: wav_field(s, "rate", 1)),
        failed(r"implausible audio sampling rate 1 Hz in the header"),
    ),
    Case(
        "absurd wav header",
        "rate_giga.wav",
        _write(lambda s: wav_field(s, "rate", 10**9)),
        failed(r"implausible audio sampling rate 1000000000 Hz"),
    ),
    Case(
        "absurd wav header",
        "rate_max.wav",
        _write(lambda s: wav_field(s, "rate", 0xFFFFFFFF)),
        failed(NOT_MEDIA),
    ),
    Case(
        "absurd wav header",
        "channels_zero.wav",
        _write(lambda s: wav_field(s, "channels", 0)),
        failed(r"no audio could be decoded \(\d+ packets failed\)"),
    ),
    Case(
        "absurd wav header",
        "channels_max.wav",
        _write(lambda s: wav_field(s, "channels", 65535)),
        failed(r"no audio could be decoded \(\d+ packets failed\)"),
    ),
    Case(
        "absurd wav header",
        "bits_999.wav",
        _write(lambda s: wav_field(s, "bits", 999)),
        failed(r"the audio stream's codec is unknown or unsupported"),
    ),
    # absurd frame sizes
    Case(
        "absurd frame size",
        "avc1_size_max.mp4",
        _write(lambda s: avc1_size(s.mp4, 65535, 65535)),
        same(GOOD_VIDEO),
        same(GOOD_VIDEO),
    ),
    Case(
        "absurd frame size",
        "avc1_size_zero.mp4",
        _write(lambda s: avc1_size(s.mp4, 0, 0)),
        same(GOOD_VIDEO),
        same(GOOD_VIDEO),
    ),
    Case(
        "absurd frame size",
        "tkhd_size_max.mp4",
        _write(lambda s: tkhd_size(s.mp4, 65535, 65535)),
        same(GOOD_VIDEO),
        same(GOOD_VIDEO),
    ),
    Case(
        "absurd frame size",
        "raw_size_huge.avi",
        lambda p, s: raw_avi(p, (100000, 100000)),
        skipped(NO_AUDIO),
        failed(BAD_FRAMES),
    ),
    Case(
        "absurd frame size",
        "raw_size_4000.avi",
        lambda p, s: raw_avi(p, (4000, 4000)),
        skipped(NO_AUDIO),
        failed(BAD_FRAMES),
    ),
    Case(
        "absurd frame size",
        "one_pixel.mkv",
        lambda p, s: ffv1(p, FPS, size=(1, 1)),
        skipped(NO_AUDIO),
        DONE,
    ),
    # absurd frame rates
    Case(
        "absurd frame rate",
        "timescale_one.mp4",
        _write(lambda s: mdhd_timescale(s.mp4, 1)),
        warned(ODD_RATE),
        warned(ODD_RATE),
    ),
    Case(
        "absurd frame rate",
        "timescale_zero.mp4",
        _write(lambda s: mdhd_timescale(s.mp4, 0)),
        warned(ODD_RATE),
        warned(ODD_RATE),
    ),
    Case(
        "absurd frame rate",
        "frame_ticks_huge.mp4",
        _write(lambda s: stts_delta(s.mp4, 0x7FFFFFFF)),
        warned(ODD_RATE),
        warned(ODD_RATE),
    ),
    Case(
        "absurd frame rate",
        "frame_ticks_zero.mp4",
        _write(lambda s: stts_delta(s.mp4, 0)),
        warned(CUT + r" 0\.16 s"),
        warned(CUT),
    ),
    Case(
        "absurd frame rate",
        "millihertz.mkv",
        lambda p, s: ffv1(p, Fraction(1, 1000), 3),
        skipped(NO_AUDIO),
        warned(ODD_RATE),
    ),
    # absurd durations
    Case(
        "absurd duration",
        "duration_max.mp4",
        _write(lambda s: mvhd_duration(s.mp4, 0xFFFFFFFF)),
        same(GOOD_VIDEO),
        same(GOOD_VIDEO),
    ),
    Case(
        "absurd duration",
        "duration_zero.mp4",
        _write(lambda s: mvhd_duration(s.mp4, 0)),
        same(GOOD_VIDEO),
        same(GOOD_VIDEO),
    ),
    # zero-frame containers
    Case(
        "zero-frame container",
        "no_packets.mp4",
        lambda p, s: no_packets(p),
        failed(NO_STREAM),
        failed(NO_STREAM),
    ),
    Case(
        "zero-frame container",
        "no_packets_mkv.mkv",
        lambda p, s: no_packets(p),
        failed(NOT_MEDIA),
        failed(NOT_MEDIA),
    ),
    Case(
        "zero-frame container",
        "no_samples.wav",
        lambda p, s: no_packets(p, video=False),
        failed(r"the audio track holds no samples"),
    ),
    # not media at all
    Case(
        "non-media with a media name",
        "notes.mp4",
        lambda p, s: p.write_text("meeting notes\n" * 50),
        failed(NOT_MEDIA),
    ),
    Case(
        "non-media with a media name",
        "page.wav",
        lambda p, s: p.write_text("<!DOCTYPE html><html><body>404</body></html>\n" * 20),
        failed(NOT_MEDIA),
    ),
    Case(
        "non-media with a media name",
        "noise.mkv",
        lambda p, s: p.write_bytes(np.random.default_rng(1).bytes(50000)),
        failed(NOT_MEDIA),
    ),
    Case(
        "non-media with a media name",
        "noise_mp3.mp3",
        lambda p, s: p.write_bytes(np.random.default_rng(2).bytes(50000)),
        failed(NOT_MEDIA),
    ),
    Case(
        "non-media with a media name",
        "zeros.wav",
        lambda p, s: p.write_bytes(bytes(50000)),
        failed(NOT_MEDIA),
    ),
    Case("empty file", "empty.mp4", lambda p, s: p.touch(), failed(r"empty file \(0 bytes\)")),
    # special files and links
    Case(
        "special file",
        "pipe.wav",
        lambda p, s: os.mkfifo(p),
        problem(r"skipped: a named pipe \(FIFO\), not a regular file"),
    ),
    Case("special file", "socket.mp4", _socket, problem(r"skipped: a socket, not a regular file")),
    Case("link loop", "loop_folder", _link_loop, UNSEEN),
    Case("link loop", "loop.mp4", lambda p, s: p.symlink_to(p), failed(r"a symbolic link loop")),
    Case(
        "dangling link",
        "dangling.wav",
        lambda p, s: p.symlink_to(p.with_name("gone.wav")),
        failed(r"a dangling symbolic link \(its target .*gone\.wav does not exist\)"),
    ),
    # unreadable
    Case("unreadable file", "locked.wav", _locked_file, failed(r"permission denied")),
    Case(
        "unreadable folder",
        "locked_folder",
        _locked_folder,
        problem(r"cannot list the folder: Permission denied"),
    ),
    # image folders
    Case(
        "image folder, broken image",
        "img_broken_jpeg",
        lambda p, s: with_file(frames(p), "00004.jpg", b"\xff\xd8 garbage"),
        skipped(NO_AUDIO),
        warned(r"00004\.jpg: cannot read image .*; frame masked"),
    ),
    Case(
        "image folder, broken image",
        "img_broken_first",
        lambda p, s: with_file(frames(p), "00001.jpg", b"\x89PNG\r\n\x1a\n"),
        skipped(NO_AUDIO),
        warned(r"00001\.jpg: cannot read image .*; frame masked"),
    ),
    Case(
        "image folder, broken image",
        "img_truncated_png",
        lambda p, s: _truncated_png(p),
        skipped(NO_AUDIO),
        warned(r"00003\.png: cannot read image \(image file is truncated\)"),
    ),
    Case(
        "image folder, broken image",
        "img_all_broken",
        _all_broken,
        failed(r"none of its 3 images can be read \(00001\.jpg: "),
        failed(r"none of its 3 images can be read"),
    ),
    Case(
        "image folder, mixed sizes",
        "img_mixed_sizes",
        lambda p, s: with_file(frames(p), "00005.jpg", size=(100, 30)),
        skipped(NO_AUDIO),
        warned(
            r"1 frame images differ in size from the first \(48x32\), e\.g\. 00005\.jpg \(100x30\)"
        ),
    ),
    Case(
        "image folder, mixed sizes",
        "img_mixed_modes",
        lambda p, s: _mixed_modes(p),
        skipped(NO_AUDIO),
        DONE,
    ),
    Case(
        "image folder, odd numbers",
        "img_frame_zero",
        lambda p, s: frames(p, numbers=[0]),
        failed(r"its only numbered image is frame 0"),
        failed(r"frame 0"),
    ),
    Case(
        "image folder, odd numbers",
        "img_zero_based",
        lambda p, s: frames(p, numbers=range(0, 6)),
        skipped(NO_AUDIO),
        warned(r"an image numbered 0 is not used"),
    ),
    Case(
        "image folder, odd numbers",
        "img_absurd_number",
        lambda p, s: frames(p, numbers=[1, 2, 99_999_999]),
        failed(r"implausible frame numbers: the highest is 99999999"),
        failed(r"implausible frame numbers"),
    ),
    Case(
        "image folder, odd numbers",
        "img_doubled",
        lambda p, s: (frames(p), frames(p, numbers=[3], ext="png")),
        skipped(NO_AUDIO),
        warned(r"1 frame numbers have more than one image \(first: 00003\)"),
    ),
    # non-finite audio: silence and a warning
    Case(
        "non-finite audio",
        "nan_inf.wav",
        lambda p, s: float_wav(p, "some"),
        warned(r"110 audio samples \(0\.007 s at 16000 Hz\) were not finite"),
    ),
    Case(
        "non-finite audio",
        "all_nan.wav",
        lambda p, s: float_wav(p, "all"),
        warned(r"32000 audio samples \(2\.000 s at 16000 Hz\) were not finite"),
    ),
]

# given on the command line rather than found in the corpus folder
EMPTY_FOLDER = Case(
    "empty folder",
    "empty_folder",
    lambda p, s: p.mkdir(),
    problem(r"folder holds no media files or image sequences"),
)
MISSING = Case(
    "missing path", "absent.mp4", lambda p, s: None, failed(r"no such file or directory")
)
ARGUMENTS = [EMPTY_FOLDER, MISSING]
ALL = CASES + ARGUMENTS


def test_the_corpus_covers_at_least_20_kinds():
    kinds = {c.kind for c in ALL}
    assert len(kinds) >= 20, sorted(kinds)
    names = [c.name for c in ALL]
    assert len(names) == len(set(names))
    stems = [Path(n).stem for n in names]
    assert len(stems) == len(set(stems)), "keys must differ: one stem per input"


# --------------------------------------------------------------------------------------
# the runs


@dataclass
class Run:
    corpus: Path
    paths: dict[str, Path]  # case name -> the bad input as the run names it
    store: Path
    stdout: str
    stderr: str
    returncode: int


@pytest.fixture(scope="module")
def sources(tmp_path_factory) -> Sources:
    d = tmp_path_factory.mktemp("fuzz_sources")
    write_audio(d / "src.wav", duration=SECONDS)
    write_video(d / "src.mp4", duration=SECONDS, fps=FPS, size=(160, 120))
    _faststart(d / "src.mp4", d / "fast.mp4")
    return Sources(
        (d / "src.wav").read_bytes(), (d / "src.mp4").read_bytes(), (d / "fast.mp4").read_bytes()
    )


@pytest.fixture(scope="module")
def cli_run(sources, unprivileged) -> Iterator[Run]:
    """One ``emofeat extract`` over the corpus (as a user without root's file access)."""
    with world_writable_dir() as top:
        corpus = top / "corpus"
        corpus.mkdir()
        (corpus / f"{GOOD_AUDIO}.wav").write_bytes(sources.wav)  # the good inputs
        (corpus / f"{GOOD_VIDEO}.mp4").write_bytes(sources.mp4)
        paths = {c.name: corpus / c.name for c in CASES}
        paths.update({c.name: top / c.name for c in ARGUMENTS})
        for case in ALL:
            case.build(paths[case.name], sources)
        out = top / "feats.h5"
        t0 = time.monotonic()
        proc = extract_unprivileged(
            unprivileged,
            *("--set", "egemaps.functionals=false", "-q", "--stall-timeout", "30"),
            corpus,
            *(paths[c.name] for c in ARGUMENTS),
            output=out,
            cwd=top,
        )
        print(f"emofeat extract over {len(ALL) + 2} inputs: {time.monotonic() - t0:.1f} s")
        yield Run(corpus, paths, out, proc.stdout, proc.stderr, proc.returncode)


@pytest.fixture(scope="module")
def cli_log(cli_run) -> pd.DataFrame:
    return open_store(cli_run.store).run_log()


def input_entry(log: pd.DataFrame, path: Path) -> list[dict]:
    return log[(log["event"] == "input") & (log["input"] == str(path))].to_dict("records")


def check_outcome(
    expect: Expect,
    path: Path,
    status: str,
    message: str,
    warnings: list[str],
    stored: Callable[[], object],
    output: str = "",
) -> None:
    """One input's outcome as expected; ``stored()``: its item's data (None: no item);
    ``output``: the CLI's (whitespace normalised), which must name the input."""
    said = f"{status}: {message} {warnings}"
    if expect.status == "problem":
        assert status == "failed", said
        assert re.search(expect.pattern, message), said
        assert stored() is None
    elif expect.status == "failed":
        assert status == "failed", said
        assert re.search(expect.pattern, message), said
        assert stored() is None, "a failed input left an item"
    elif expect.status == "skipped":
        assert status == "skipped", said
        assert re.search(expect.pattern, message), said
        assert stored() is None
    else:
        assert status == "done", said
        data = stored()
        assert data is not None, "done but no item stored"
        assert np.isfinite(data).all(), "non-finite values stored"
        if expect.status == "done" and expect.pattern:
            assert any(re.search(expect.pattern, w) for w in warnings), said
        assert all(w.startswith(str(path)) for w in warnings), warnings  # it, or its frame
    if output:
        for text in [message, *warnings]:
            assert norm(text) in output, (text, output[-3000:])
        if status != "done":
            assert str(path) in output, output[-3000:]


def test_cli_run_reports_failures_without_traceback(cli_run, cli_log):
    assert cli_run.returncode == 1, cli_run.stderr[-3000:]
    assert "Traceback" not in cli_run.stderr and "Traceback" not in cli_run.stdout
    items = cli_log[cli_log["event"] == "item"]
    if "traceback" in items:
        assert items["traceback"].isna().all(), items[items["traceback"].notna()]
    expected_failures = sum(c.audio.status in ("failed", "problem") for c in ALL)
    end = cli_log[cli_log["event"] == "run-end"].iloc[-1]
    assert end["failed"] == expected_failures
    assert f"{expected_failures} input(s) failed" in norm(cli_run.stderr)


def test_cli_run_stores_the_good_inputs(cli_run, cli_log):
    store = open_store(cli_run.store)
    for key, path in ((GOOD_AUDIO, ".wav"), (GOOD_VIDEO, ".mp4")):
        (entry,) = input_entry(cli_log, cli_run.corpus / f"{key}{path}")
        assert entry["status"] == "done" and entry["warnings"] == [], entry
        lld = store.read(key, "egemaps", "lld")
        assert lld.data.shape[1] == 25 and abs(len(lld.data) - SECONDS * 100) <= 5
        assert np.isfinite(lld.data[lld.mask]).all()
    aligned = store.read(GOOD_VIDEO, "egemaps", "lld", aligned=True)
    assert len(aligned.mask) == SECONDS * FPS


@pytest.mark.parametrize("case", ALL, ids=lambda c: c.name)
def test_cli_outcome(case, cli_run, cli_log):
    path = cli_run.paths[case.name]
    entries = input_entry(cli_log, path)
    if case.audio.status == "unseen":  # nothing under it is an input a second time
        inputs = cli_log.loc[cli_log["event"] == "input", "input"].dropna()
        assert not any(i.startswith(str(path)) for i in inputs), entries
        return
    (entry,) = entries
    store = open_store(cli_run.store)
    key = entry["key"]

    def stored():
        if not key or key not in store.items():
            return None
        return store.read(key, "egemaps", "lld").data

    warnings = entry["warnings"] if isinstance(entry["warnings"], list) else []  # NaN: none
    check_outcome(
        case.audio, path, entry["status"], entry["message"], warnings, stored, norm(cli_run.stderr)
    )
    if case.audio.status == "same":
        assert entry["warnings"] == []
        want = store.read(case.audio.pattern, "egemaps", "lld")
        got = store.read(key, "egemaps", "lld")
        np.testing.assert_array_equal(got.data, want.data)
        np.testing.assert_array_equal(got.times, want.times)


# --------------------------------------------------------------------------------------
# the video run: frames decoded (in-process, with the MeanGrey video extractor)

VIDEO_CASES = [c for c in ALL if c.video is not None]


@pytest.fixture(scope="module")
def video_run(sources, tmp_path_factory):
    d = tmp_path_factory.mktemp("fuzz_video")
    good = d / f"{GOOD_VIDEO}.mp4"
    good.write_bytes(sources.mp4)
    paths = {c.name: d / c.name for c in VIDEO_CASES}
    for case in VIDEO_CASES:
        case.build(paths[case.name], sources)
    out = d / "grey.h5"
    summary = run_mean_grey(out, [good, *paths.values()])
    results = {r.input: r for r in summary.results}
    return paths, results, out, good


def test_video_run_stores_the_good_input(video_run):
    paths, results, out, good = video_run
    assert results[str(good)].status == "done"
    grey = open_store(out).read(GOOD_VIDEO, "mean_grey", "grey", aligned=True)
    assert grey.data.shape == (SECONDS * FPS, 1) and grey.mask.all()


@pytest.mark.parametrize("case", VIDEO_CASES, ids=lambda c: c.name)
def test_video_outcome(case, video_run):
    paths, results, out, good = video_run
    path = paths[case.name]
    res = results[str(path)]
    assert not [o.traceback for o in res.outcomes if o.traceback]
    store = open_store(out)

    def stored():
        if res.key not in store.items():
            return None
        return store.read(res.key, "mean_grey", "grey").data

    check_outcome(case.video, path, res.status, res.message, res.warnings, stored)
    if case.video.status == "same":
        assert res.warnings == []
        want = store.read(case.video.pattern, "mean_grey", "grey", aligned=True)
        got = store.read(res.key, "mean_grey", "grey", aligned=True)
        np.testing.assert_array_equal(got.data, want.data)
