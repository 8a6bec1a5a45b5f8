"""``emofeat render``: a video with its stored face box and emotion bars drawn on it.

The overlay reads everything from a feature store, through the store's public reader
(:func:`emofeat.open_store`), and never imports an extractor:

* the face box: the face stage's stream ``faces/face`` (columns ``x1, y1, x2, y2`` in
  pixels); frames without a face (masked rows) get no box;
* expression probabilities: ``predict/expr`` (the predictions of an ``abaw_expr`` run, see
  ``emofeat predict``), else ``face_expr/probs``, else an ``expr`` stream of a face model
  (``face_cnn``, ``vit``);
* valence and arousal: ``predict/va``, else a ``va`` stream of a face model, else PDEM's
  ``logits`` (``pdem``; its 0..1 scale drawn as -1..1).

Rows of the frame-aligned view are the video's frames, so frame ``k`` of the video shows row
``k`` of each stream. Decoded frames are matched to the grid by presentation time, so a
variable frame rate is kept. The output has the input's frames (same count, same
presentation times) encoded with H.264 (``libx264``, else MPEG-4 Part 2) and its audio
(copied when the output container takes the codec, else re-encoded to AAC), written with
PyAV. Drawing uses Pillow.
"""

from __future__ import annotations

import heapq
import itertools
import os
import tempfile
from collections.abc import Callable
from dataclasses import dataclass, field
from fractions import Fraction
from pathlib import Path
from typing import Any

import numpy as np

from emofeat.errors import EmofeatError

#: colours (RGB)
BOX_COLOUR = (0, 255, 0)
BAR_COLOUR = (255, 200, 0)
VALENCE_COLOUR = (80, 160, 255)
AROUSAL_COLOUR = (255, 90, 90)
PANEL_COLOUR = (0, 0, 0)
#: audio codecs an MP4/MOV file takes as they are (anything else is re-encoded to AAC)
MP4_AUDIO = frozenset({"aac", "mp3", "ac3", "eac3", "alac", "opus", "flac"})
#: seconds of valence/arousal history drawn as traces
TRACE_SECONDS = 5.0
#: decoded frames held back to restore presentation order (more than any B-frame delay)
REORDER_FRAMES = 16


class RenderError(EmofeatError):
    """The overlay cannot be made (no stored item for the video, unreadable video...)."""


@dataclass
class Overlay:
    """What is drawn, one row per video frame (``n`` frames).

    Attributes:
        times: ``(n,)`` frame start times in seconds (t = 0: the first frame).
        box: ``(n, 4)`` face box ``x1, y1, x2, y2`` in pixels; NaN where there is no face.
        expr: ``(n, k)`` expression probabilities (None: none stored); NaN where invalid.
        expr_labels: the ``k`` class names.
        va: ``(n, 2)`` valence and arousal in [-1, 1] (None: none stored); NaN where invalid.
        sources: what each part was read from (``"faces/face"``, ``"predict/va"``...).
    """

    times: np.ndarray
    box: np.ndarray
    expr: np.ndarray | None = None
    expr_labels: list[str] = field(default_factory=list)
    va: np.ndarray | None = None
    sources: dict[str, str] = field(default_factory=dict)


@dataclass
class RenderResult:
    """What :func:`render_video` wrote: the file, its frames, the parts drawn."""

    path: Path
    frames: int
    audio: bool
    sources: dict[str, str]


def _resolved(path: Path) -> str:
    try:
        return str(Path(path).resolve())
    except OSError:
        return str(path)


def _video_items(store: Any, video: Path) -> dict[str, Any]:
    """extractor -> the newest item of the store made from ``video``."""
    want = _resolved(video)
    found: dict[str, Any] = {}
    for it in store.catalog():
        if it.source is None or _resolved(it.source) != want:
            continue
        old = found.get(it.extractor)
        if old is None or str(it.attrs.get("created", "")) > str(old.attrs.get("created", "")):
            found[it.extractor] = it
    return found


def _aligned(item: Any, stream: str, n: int) -> tuple[np.ndarray, list[str]]:
    """The stream's frame-aligned values (NaN where invalid), ``n`` rows."""
    sd = item.store.read(item.key, item.extractor, stream, aligned=True)
    data = np.asarray(sd.data, dtype=np.float64)
    mask = np.asarray(sd.mask, dtype=bool)
    out = np.full((n, data.shape[1]), np.nan)
    k = min(n, len(data))
    out[:k] = np.where(mask[:k, None], data[:k], np.nan)
    return out, list(sd.labels)


def load_overlay(store_path: str | os.PathLike, video: str | os.PathLike) -> Overlay:
    """Read what :func:`render_video` draws for ``video`` from the store at ``store_path``.

    Raises:
        RenderError: the store holds no item made from ``video``.
    """
    from emofeat.media import demux_grid, probe
    from emofeat.store import open_store

    video = Path(video)
    store = open_store(store_path)
    items = _video_items(store, video)
    if not items:
        known = sorted({str(it.source) for it in store.catalog() if it.source is not None})
        shown = ", ".join(known[:5]) + (f" and {len(known) - 5} more" if len(known) > 5 else "")
        raise RenderError(
            f"{store_path} holds no item made from {video} (its inputs: {shown or 'none'}); "
            f"extract it first, e.g. emofeat extract -p face_expr {video} -o {store_path}"
        )
    try:
        grid = demux_grid(probe(video))
    except EmofeatError as exc:
        raise RenderError(f"{video}: {exc}") from None
    n = len(grid)
    ov = Overlay(times=np.asarray(grid.starts, dtype=np.float64), box=np.full((n, 4), np.nan))
    faces = items.get("faces")
    if faces is not None and "face" in faces.streams:
        values, labels = _aligned(faces, "face", n)
        cols = [labels.index(c) for c in ("x1", "y1", "x2", "y2")]
        ov.box = values[:, cols]
        ov.sources["box"] = "faces/face"
    for ex, stream in (("predict", "expr"), ("face_expr", "probs"), ("face_cnn", "expr"),
                       ("vit", "expr")):  # fmt: skip
        it = items.get(ex)
        if it is not None and stream in it.streams:
            ov.expr, ov.expr_labels = _aligned(it, stream, n)
            ov.sources["expr"] = f"{ex}/{stream}"
            break
    for ex, stream, scale in (("predict", "va", False), ("face_cnn", "va", False),
                              ("vit", "va", False), ("pdem", "logits", True)):  # fmt: skip
        it = items.get(ex)
        if it is None or stream not in it.streams:
            continue
        values, labels = _aligned(it, stream, n)
        if "valence" not in labels or "arousal" not in labels:
            continue
        va = values[:, [labels.index("valence"), labels.index("arousal")]]
        ov.va = np.clip(2.0 * va - 1.0 if scale else va, -1.0, 1.0)
        ov.sources["va"] = f"{ex}/{stream}"
        break
    return ov


# ----------------------------------------------------------------------------- drawing


def _font(size: int) -> Any:
    from PIL import ImageFont

    try:
        return ImageFont.load_default(size=size)
    except TypeError:  # Pillow < 10.1: one bitmap size
        return ImageFont.load_default()


def draw_frame(image: Any, ov: Overlay, k: int, fps: float) -> None:
    """Draw row ``k`` of ``ov`` on a PIL RGB ``image`` in place: the face box, the
    expression bars (top left) and valence/arousal bars with their last
    :data:`TRACE_SECONDS` seconds as traces (bottom)."""
    from PIL import ImageDraw

    w, h = image.size
    unit = max(1, min(w, h) // 120)  # line width and spacing scale with the frame, pixels
    draw = ImageDraw.Draw(image, "RGBA")
    box = ov.box[k]
    if np.isfinite(box).all():
        x1, y1, x2, y2 = (float(v) for v in box)
        draw.rectangle([x1, y1, x2, y2], outline=BOX_COLOUR, width=2 * unit)
    font = _font(max(8, 5 * unit))
    bar_h = max(4, 5 * unit)
    if ov.expr is not None and len(ov.expr_labels):
        probs = ov.expr[k]
        n_cls = len(ov.expr_labels)
        panel_w = max(40, w // 4)
        label_w = panel_w // 2
        top = unit
        draw.rectangle(
            [0, 0, panel_w + 2 * unit, top + n_cls * (bar_h + unit) + unit],
            fill=(*PANEL_COLOUR, 140),
        )
        best = int(np.nanargmax(probs)) if np.isfinite(probs).any() else -1
        for c, name in enumerate(ov.expr_labels):
            y = top + c * (bar_h + unit)
            colour = (255, 255, 255) if c == best else (200, 200, 200)
            draw.text((unit, y), name[:10], fill=colour, font=font)
            p = probs[c]
            if np.isfinite(p):
                x0 = unit + label_w
                draw.rectangle(
                    [x0, y, x0 + max(0.0, min(1.0, float(p))) * (panel_w - label_w), y + bar_h - 1],
                    fill=BAR_COLOUR,
                )
    if ov.va is not None:
        panel_h = max(20, h // 5)
        top = h - panel_h
        draw.rectangle([0, top, w, h], fill=(*PANEL_COLOUR, 140))
        label_w = max(20, w // 8)
        half = (w - label_w - 2 * unit) / 2
        centre = label_w + unit + half
        trace_top = top + 2 * (bar_h + unit) + unit
        for d, (name, colour) in enumerate(
            (("valence", VALENCE_COLOUR), ("arousal", AROUSAL_COLOUR))
        ):
            y = top + unit + d * (bar_h + unit)
            draw.text((unit, y), name, fill=colour, font=font)
            v = ov.va[k, d]
            if np.isfinite(v):
                a, b = sorted((centre, centre + float(v) * half))
                draw.rectangle([a, y, max(a + 1, b), y + bar_h - 1], fill=colour)
            draw.line([centre, y, centre, y + bar_h - 1], fill=(255, 255, 255), width=1)
        # traces: the last TRACE_SECONDS seconds, newest at the right edge
        span = max(1, int(round(TRACE_SECONDS * fps)))
        lo = max(0, k - span + 1)
        if h - trace_top > 4 and k > lo:
            xs = label_w + unit + (np.arange(lo, k + 1) - (k + 1 - span)) / span * (2 * half)
            mid = (trace_top + h - unit) / 2
            amp = (h - unit - trace_top) / 2
            for d, colour in enumerate((VALENCE_COLOUR, AROUSAL_COLOUR)):
                ys = mid - ov.va[lo : k + 1, d] * amp
                pts = [(float(x), float(y)) for x, y in zip(xs, ys, strict=True) if np.isfinite(y)]
                if len(pts) > 1:
                    draw.line(pts, fill=colour, width=unit)


# ----------------------------------------------------------------------------- encoding


def _video_codec(preferred: str | None) -> str:
    import av

    for name in ([preferred] if preferred else []) + ["libx264", "h264", "mpeg4"]:
        if name in av.codecs_available:
            try:
                av.codec.Codec(name, "w")
                return name
            except Exception:
                continue
    raise RenderError("no H.264 or MPEG-4 encoder in this FFmpeg build (PyAV)")


def render_video(
    video: str | os.PathLike,
    store: str | os.PathLike,
    out: str | os.PathLike,
    *,
    run: str | os.PathLike | None = None,
    model: str | None = None,
    codec: str | None = None,
    quiet: bool = True,
    on_frame: Callable[[int, int], None] | None = None,
) -> RenderResult:
    """Write ``out``: ``video`` with the stored face box, expression bars and valence /
    arousal bars and traces drawn on every frame, its audio kept.

    Args:
        video: the video the store's items were made from.
        store: the feature store.
        out: the output file (``.mp4``; its folder is created).
        run: a finished ``abaw_va`` / ``abaw_expr`` run: its predictions are computed first
            (``emofeat predict``, into ``store``, extracting what the run needs) and drawn.
        model: with ``run``: which of its models (default: its best).
        codec: video encoder (default ``libx264``, else ``mpeg4``).
        quiet: with ``run``: no progress bars.
        on_frame: called with ``(frames done, frames in all)`` after each frame.

    Returns:
        The written file, its frame count, whether it has audio, and what was drawn.

    Raises:
        RenderError: the store holds nothing for the video, the video cannot be read.
        RecipeError: ``run`` cannot be applied.
    """
    import av

    video, out = Path(video), Path(out)
    if run is not None:
        from emofeat.recipes import RecipeError, predict_run

        with tempfile.TemporaryDirectory(prefix="emofeat-render-") as tmp:
            res = predict_run(run, [video], tmp, store=store, model=model, quiet=quiet)
        if res.failed:
            raise RecipeError(f"{video}: the run's predictions failed: {res.failed[0].message}")
    ov = load_overlay(store, video)
    n = len(ov.times)
    out.parent.mkdir(parents=True, exist_ok=True)
    vcodec = _video_codec(codec)
    try:
        src: Any = av.open(str(video))
    except av.error.FFmpegError as exc:
        raise RenderError(f"{video}: cannot be read ({exc})") from None
    written = 0
    has_audio = False
    with src:
        vin = src.streams.video[0]
        ain = src.streams.audio[0] if src.streams.audio else None
        fps = float(vin.average_rate or vin.guessed_rate or 30)
        dst: Any = av.open(str(out), "w")
        try:
            vout = dst.add_stream(vcodec, rate=vin.average_rate or Fraction(30))
            vout.width = vin.codec_context.width
            vout.height = vin.codec_context.height
            vout.pix_fmt = "yuv420p"
            # the input's presentation times are kept as they are (variable frame rate), on a
            # 90 kHz clock: fine enough for the encoder's reordering delay at any frame rate
            tb = Fraction(1, 90000)
            vout.time_base = tb
            vout.codec_context.time_base = tb
            if vcodec in ("libx264", "h264"):
                vout.options = {"crf": "18", "preset": "veryfast"}
            else:
                vout.bit_rate = 4_000_000
            aout = None
            resampler = None
            copy_audio = False
            if ain is not None:
                has_audio = True
                copy_audio = ain.codec_context.name in MP4_AUDIO
                if copy_audio:
                    aout = dst.add_stream_from_template(ain)
                else:
                    rate = ain.codec_context.sample_rate or 48000
                    aout = dst.add_stream("aac", rate=rate)
                    resampler = av.AudioResampler(format="fltp", layout="stereo", rate=rate)
            # decoders may hand frames out of presentation order (B-frames in AVI): a
            # small heap puts them back in order; a repeated timestamp is one grid row
            heap: list[tuple[int, int, Any]] = []
            origin = float(vin.start_time * vin.time_base) if vin.start_time else 0.0
            order = itertools.count()
            state: dict[str, Any] = {"last": None, "written": 0}

            def emit(frame: Any) -> None:
                if frame.pts == state["last"]:
                    return
                state["last"] = frame.pts
                # the grid's clock: the stream's start time is t = 0 (as the store's grid)
                t = float(frame.pts * vin.time_base) - origin
                k = int(np.clip(np.searchsorted(ov.times, t + 1e-6) - 1, 0, n - 1))
                image = frame.to_image()
                draw_frame(image, ov, k, fps)
                new = av.VideoFrame.from_image(image).reformat(format="yuv420p")
                new.pts = int(round(frame.pts * vin.time_base / tb))
                new.time_base = tb
                dst.mux(vout.encode(new))
                state["written"] += 1
                if on_frame is not None:
                    on_frame(state["written"], n)

            streams = [s for s in (vin, ain) if s is not None]
            for packet in src.demux(*streams):
                if packet.stream is ain and aout is not None:
                    if copy_audio:
                        if packet.dts is None or packet.size == 0:
                            continue
                        packet.stream = aout
                        dst.mux(packet)
                    else:
                        assert resampler is not None
                        for frame in packet.decode():
                            for rf in resampler.resample(frame):
                                rf.pts = None
                                dst.mux(aout.encode(rf))
                    continue
                for frame in packet.decode():
                    if frame.pts is None:
                        continue
                    heapq.heappush(heap, (frame.pts, next(order), frame))
                    while len(heap) > REORDER_FRAMES:
                        emit(heapq.heappop(heap)[2])
            while heap:
                emit(heapq.heappop(heap)[2])
            written = int(state["written"] or 0)
            dst.mux(vout.encode(None))
            if aout is not None and not copy_audio:
                if resampler is not None:
                    for rf in resampler.resample(None):
                        rf.pts = None
                        dst.mux(aout.encode(rf))
                dst.mux(aout.encode(None))
        finally:
            dst.close()
    if written == 0:
        raise RenderError(f"{video}: no frame could be decoded")
    return RenderResult(out, written, has_audio, dict(ov.sources))
