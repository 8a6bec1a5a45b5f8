"""A synthetic, Aff-Wild2-shaped data set whose labels are a known function of the media.

``generate(root, videos=24, seed=0)`` writes the tree that Aff-Wild2 users have (see
``docs/affwild2.md`` and ``docs/synth.md``)::

    root/6th_ABAW_Annotations/VA_Estimation_Challenge/{Train_Set,Validation_Set}/<track>.txt
    root/6th_ABAW_Annotations/EXPR_Recognition_Challenge/{Train_Set,Validation_Set}/<track>.txt
    root/cropped_aligned/<track>/<k:05d>.jpg     112 x 112 face crops, k = 1-based frame number
    root/videos/batch1/<video>.mp4|.avi           raw videos with an audio track
    root/videos/batch2/<video>.mp4|.avi
    root/test/                                    test track lists and submission templates
    root/synth.json                               seed, planted functions, per-track facts

With ``crops_layout="nested"`` the crops sit as the ABAW6 release unpacks them:
``cropped_aligned/cropped_aligned/<track>`` and, for the last ~15 % of the annotated
videos, ``cropped_aligned/cropped_aligned_new_50_vids/<track>``.

What is planted (frame ``k`` of a track lies at ``t = (k - 1) / fps`` seconds):

* valence and arousal are smooth random curves in [-1, 1] (sums of sinusoids of 0.06-0.4 Hz);
* the **face** (drawn identically on the crop and in the raw video) shows valence as mouth
  curvature and cheek colour, and the expression class as a distinct configuration of brows,
  eyes and mouth;
* the **voice** (the video's audio track) is a harmonic, syllable-modulated signal whose
  pitch (+-8 semitones) and loudness (+-12 dB) follow arousal.

With ``split_modalities=True`` neither modality alone carries a whole label: valence is
0.7 x a face curve (mouth, skin) + 0.3 x a voice curve (spectral tilt), arousal is 0.3 x a
face curve (eye opening, brow height) + 0.7 x a voice curve (pitch, loudness), as in real data
where the face tells more about valence and the voice about arousal; the expression class
``c`` is the pair (face shape ``c % 4``, vowel ``c // 4``) so only both together name it.
The exact functions are written to ``synth.json``.
"""

from __future__ import annotations

import json
import math
import multiprocessing
import os
from collections.abc import Callable
from concurrent.futures import ProcessPoolExecutor
from dataclasses import dataclass, field
from fractions import Fraction
from pathlib import Path
from typing import Any

import av
import numpy as np
from PIL import Image, ImageDraw

EXPR_CLASSES = ("Neutral", "Anger", "Disgust", "Fear", "Happiness", "Sadness", "Surprise", "Other")
ANNOTATIONS = "6th_ABAW_Annotations"
VA_TASK = "VA_Estimation_Challenge"
EXPR_TASK = "EXPR_Recognition_Challenge"
VA_HEADER = "valence,arousal"
EXPR_HEADER = ",".join(EXPR_CLASSES)
CROP = 112  # side of the cropped_aligned images, pixels
PATCH = 144  # side of the drawn face patch (crop plus 16 px of context each side), pixels
SAMPLING_RATE = 16000  # audio, Hz
FPS_29_97 = Fraction(30000, 1001)
CROPS_LAYOUTS = ("flat", "nested")
# crop folders (relative to the root) per layout: (most tracks, the extra ~15 %)
_CROP_FOLDERS = {
    "flat": ("cropped_aligned", "cropped_aligned"),
    "nested": ("cropped_aligned/cropped_aligned", "cropped_aligned/cropped_aligned_new_50_vids"),
}
# vowel formants (F1, F2) in Hz: /a/ and /i/, the voice's cue for the class in split mode
VOWELS = ((730.0, 1090.0), (300.0, 2250.0))
# face configurations of split mode: Neutral, Anger, Happiness, Surprise
SPLIT_SHAPES = (0, 1, 4, 6)
SKIN_TONES = ((224, 172, 140), (198, 140, 104), (240, 200, 170), (150, 100, 72), (210, 160, 120))

PLANTED = {
    "time": "frame k (1-based) of a track lies at t = (k - 1) / fps seconds",
    "curves": "c(t) = clip(o + s * sum_i a_i sin(2 pi f_i t + p_i) / max|sum|, -1, 1), "
    "f_i in [0.06, 0.4] Hz (parameters per track under tracks.*.curves)",
    "invalid": "VA -5,-5 and EXPR -1 on the stretches listed per track; the media there still "
    "follow the underlying curves and classes",
    "joint": {
        "valence": "curves.valence",
        "arousal": "curves.arousal",
        "face": "mouth curvature = 1.2 * valence + 0.3 * class shape; cheeks blend towards rose "
        "(valence > 0) or grey-blue (valence < 0) by 0.8 * |valence|; expression class = one of 8 "
        "face configurations (brows, eyes, mouth)",
        "voice": "f0 = base_f0 * 2^(8 * arousal / 12) (+- 8 semitones); gain = 10^(12 * arousal "
        "/ 20) (+- 12 dB); vowel /a/; class shifts f0 by (class - 3.5) * 0.15 semitones",
    },
    "split": {
        "valence": "0.7 * curves.valence_face + 0.3 * curves.valence_voice",
        "arousal": "0.3 * curves.arousal_face + 0.7 * curves.arousal_voice",
        "face": "mouth curvature and cheeks follow valence_face; eye opening (+-50 %) and "
        "brow height follow arousal_face; one of 4 configurations (Neutral, Anger, Happiness, "
        "Surprise) = class % 4",
        "voice": "f0 and gain follow arousal_voice as in joint mode; spectral tilt follows "
        "valence_voice (harmonic h weighted h^-(1.1 - 0.6 * valence_voice)); vowel /a/ for "
        "class < 4, /i/ for class >= 4",
        "expr": "class = face shape index + 4 * vowel index",
    },
}


# ---------------------------------------------------------------------------------- curves


def _curve_params(rng: np.random.Generator) -> dict[str, Any]:
    k = 4
    return {
        "freqs": rng.uniform(0.06, 0.4, k).round(4).tolist(),
        "amps": rng.uniform(0.4, 1.0, k).round(4).tolist(),
        "phases": rng.uniform(0, 2 * np.pi, k).round(4).tolist(),
        "offset": float(round(rng.uniform(-0.3, 0.3), 4)),
        "scale": float(round(rng.uniform(0.55, 0.7), 4)),
    }


def curve(params: dict[str, Any], t: np.ndarray) -> np.ndarray:
    """A planted label curve at times ``t`` (seconds), values in [-1, 1]."""
    t = np.asarray(t, dtype=np.float64)
    f, a, p = (np.asarray(params[k]) for k in ("freqs", "amps", "phases"))
    raw = (a[:, None] * np.sin(2 * np.pi * f[:, None] * t[None, :] + p[:, None])).sum(0)
    return np.clip(params["offset"] + params["scale"] * raw / a.sum() * 1.6, -1.0, 1.0)


def _segments(
    rng: np.random.Generator, duration: float, lo: float, hi: float, deck: list[int]
) -> list[tuple[float, float, int]]:
    """Class segments ``(start s, end s, class)`` covering ``[0, duration]``; classes are
    taken from the front of ``deck`` (shared by the whole set so that every class occurs)."""
    out, t, prev = [], 0.0, -1
    while t < duration:
        d = float(rng.uniform(lo, hi))
        j = next((i for i, c in enumerate(deck) if c != prev), 0)
        c = deck.pop(j)
        out.append((round(t, 3), round(min(duration, t + d), 3), c))
        t += d
        prev = c
    return out


def _deck(rng: np.random.Generator, n: int) -> list[int]:
    """``n`` classes in shuffled blocks, each block holding every class at least once and
    Neutral, Happiness and Other (the commonest in Aff-Wild2) twice."""
    out: list[int] = []
    while len(out) < n:
        out += [int(c) for c in rng.permutation([0, 1, 2, 3, 4, 5, 6, 7, 0, 4, 7])]
    return out


def _class_at(segments: list[tuple[float, float, int]], t: np.ndarray) -> np.ndarray:
    starts = np.array([s[0] for s in segments])
    classes = np.array([s[2] for s in segments])
    return classes[np.clip(np.searchsorted(starts, t, side="right") - 1, 0, len(classes) - 1)]


def _stretches(
    rng: np.random.Generator, n: int, count: int, lo: int, hi: int
) -> list[tuple[int, int]]:
    """``count`` random 1-based inclusive frame ranges of ``lo``-``hi`` frames inside 1..n."""
    out = []
    for _ in range(count):
        length = int(rng.integers(lo, hi + 1))
        if n <= length + 2:
            break
        start = int(rng.integers(2, n - length + 1))
        out.append((start, start + length - 1))
    return sorted(out)


def _in_ranges(k: np.ndarray, ranges: list[tuple[int, int]]) -> np.ndarray:
    hit = np.zeros(len(k), dtype=bool)
    for a, b in ranges:
        hit |= (k >= a) & (k <= b)
    return hit


# ---------------------------------------------------------------------------------- tracks


@dataclass
class Track:
    """One annotated subject: a whole video, or the left/right person of a two-person video."""

    name: str
    video: str
    side: str  # "single", "left" or "right"
    split: str  # "train", "validation" or "test"
    tasks: tuple[str, ...]  # subset of ("VA", "EXPR")
    curves: dict[str, dict[str, Any]]
    segments: list[tuple[float, float, int]]
    look: dict[str, Any]
    voice: dict[str, Any]
    missing_crops: list[tuple[int, int]] = field(default_factory=list)
    invalid_va: list[tuple[int, int]] = field(default_factory=list)
    invalid_expr: list[tuple[int, int]] = field(default_factory=list)
    label_delta: int = 0  # label lines minus video frames

    def state(self, t: np.ndarray, split: bool) -> dict[str, np.ndarray]:
        """Everything the media show at times ``t`` (seconds): labels and drawing controls."""
        c = {k: curve(p, t) for k, p in self.curves.items()}
        cls = _class_at(self.segments, t)
        if split:
            valence = 0.7 * c["valence_face"] + 0.3 * c["valence_voice"]
            arousal = 0.3 * c["arousal_face"] + 0.7 * c["arousal_voice"]
            return {
                "valence": valence,
                "arousal": arousal,
                "expr": cls,
                "face_valence": c["valence_face"],
                "face_arousal": c["arousal_face"],
                "face_shape": np.array(SPLIT_SHAPES)[cls % 4],
                "voice_arousal": c["arousal_voice"],
                "voice_valence": c["valence_voice"],
                "vowel": cls // 4,
                "pitch_shift": np.zeros(len(t)),
            }
        return {
            "valence": c["valence"],
            "arousal": c["arousal"],
            "expr": cls,
            "face_valence": c["valence"],
            "face_arousal": np.zeros(len(t)),
            "face_shape": cls,
            "voice_arousal": c["arousal"],
            "voice_valence": np.zeros(len(t)),
            "vowel": np.zeros(len(t), dtype=int),
            "pitch_shift": (cls - 3.5) * 0.15,
        }


# ---------------------------------------------------------------------------------- faces

# per configuration: eye opening, brow height, brow tilt (inner end down > 0), mouth width,
# mouth opening, base mouth curvature, teeth shown, round mouth
_SHAPES = {
    0: dict(eye=1.0, brow=0.0, tilt=0.0, mw=1.0, mo=0.0, curv=0.0, teeth=False, round=False),
    1: dict(eye=0.55, brow=-0.6, tilt=1.0, mw=0.8, mo=0.0, curv=-0.2, teeth=False, round=False),
    2: dict(eye=0.45, brow=-0.3, tilt=0.4, mw=0.9, mo=0.25, curv=-0.4, teeth=True, round=False),
    3: dict(eye=1.6, brow=0.7, tilt=-0.8, mw=1.25, mo=0.35, curv=-0.1, teeth=True, round=False),
    4: dict(eye=0.7, brow=0.2, tilt=0.0, mw=1.3, mo=0.45, curv=0.9, teeth=True, round=False),
    5: dict(eye=0.75, brow=0.2, tilt=-1.0, mw=0.9, mo=0.0, curv=-0.9, teeth=False, round=False),
    6: dict(eye=1.7, brow=1.0, tilt=0.0, mw=0.6, mo=1.0, curv=0.0, teeth=False, round=True),
    7: dict(eye=1.0, brow=0.3, tilt=0.0, mw=0.5, mo=0.3, curv=0.0, teeth=False, round=True),
}


def draw_face(
    look: dict[str, Any],
    shape: int,
    valence: float,
    arousal: float,
    rng: np.random.Generator,
) -> np.ndarray:
    """One face patch, uint8 RGB ``(PATCH, PATCH, 3)``; its central 112 px are the crop.

    Args:
        look: the subject's fixed appearance (skin, hair, background, eye colour).
        shape: face configuration 0-7 (``EXPR_CLASSES`` order).
        valence: drives mouth curvature and cheek colour, in [-1, 1].
        arousal: drives eye opening and brow height (split mode only; 0 otherwise).
        rng: per-frame jitter (position +-3 px, scale +-4 %, lighting +-8 %, noise).
    """
    ss = 2  # supersampling factor: drawn at twice the size, then averaged down
    n = PATCH * ss
    sh = _SHAPES[int(shape)]
    img = Image.new("RGB", (n, n), tuple(look["background"]))
    d = ImageDraw.Draw(img)
    dx, dy = rng.uniform(-3, 3, 2) * ss
    sc = ss * (1 + rng.uniform(-0.04, 0.04))
    cx, cy = n / 2 + dx, n / 2 + 4 * ss + dy

    def p(x: float, y: float) -> tuple[float, float]:  # face coordinates (px at 1x) -> canvas
        return (cx + x * sc, cy + y * sc)

    def box(x0: float, y0: float, x1: float, y1: float) -> list[float]:
        a, b = p(x0, y0), p(x1, y1)
        return [min(a[0], b[0]), min(a[1], b[1]), max(a[0], b[0]), max(a[1], b[1])]

    skin = np.array(look["skin"], dtype=float)
    skin = tuple(int(v) for v in np.clip(skin, 0, 255))
    hair = tuple(look["hair"])
    d.ellipse(box(-48, -66, 48, 40), fill=hair)  # hair behind the head
    d.ellipse(box(-40, -52, 40, 56), fill=skin)  # face oval
    d.ellipse(box(-47, -8, -37, 14), fill=skin)  # ears
    d.ellipse(box(37, -8, 47, 14), fill=skin)
    d.chord(box(-42, -60, 42, -14), 180, 360, fill=hair)  # fringe
    dark = tuple(int(v * 0.55) for v in skin)
    # cheeks: rosy with positive valence, grey-blue with negative (relative to any skin tone)
    w = abs(valence)
    tint = np.array((235, 70, 80) if valence > 0 else (90, 100, 130), dtype=float)
    cheek = tuple(int(v) for v in np.array(skin) * (1 - 0.8 * w) + tint * 0.8 * w)
    for side in (-1, 1):
        d.ellipse(box(side * 24 - 9, 8, side * 24 + 9, 22), fill=cheek)
    # eyes: whites, iris, pupil; opening scales the height
    eye_open = sh["eye"] * (1 + 0.5 * arousal)
    eh = max(1.0, 5.5 * eye_open)
    for side in (-1, 1):
        ex, ey = side * 16, -8
        d.ellipse(box(ex - 9, ey - eh, ex + 9, ey + eh), fill=(245, 245, 240), outline=dark)
        look_x = 3 * side if shape == 7 else 0  # "Other": eyes turned to one side
        r = min(4.5, eh)
        d.ellipse(box(ex + look_x - r, ey - r, ex + look_x + r, ey + r), fill=tuple(look["eyes"]))
        r2 = min(2.0, eh * 0.5)
        d.ellipse(box(ex + look_x - r2, ey - r2, ex + look_x + r2, ey + r2), fill=(10, 10, 10))
        # brows: inner end at x = 6, outer at x = 26; tilt lowers the inner end
        by = ey - 11 - 7 * sh["brow"] - 6 * arousal
        inner, outer = by + 4 * sh["tilt"], by - 2 * sh["tilt"]
        d.line([p(side * 6, inner), p(side * 27, outer)], fill=hair, width=int(4 * sc))
    # nose, and disgust's wrinkles
    d.line([p(0, -4), p(-4, 14), p(3, 15)], fill=dark, width=int(2 * sc))
    if shape == 2:
        for s in (-1, 1):
            d.line([p(s * 5, 2), p(s * 11, 8)], fill=dark, width=int(2 * sc))
    # mouth: corners at +-mw*14, curvature lifts the corners (smile) or lowers them (frown)
    my = 30
    mw = 17 * sh["mw"]
    # valence dominates the mouth; the class shape only nudges it (classes are also told
    # apart by eyes, brows and mouth opening), so valence stays readable from the face
    curv = 0.3 * sh["curv"] + 1.2 * valence
    lip = (170, 60, 60)
    if sh["round"]:
        mx = 6 if shape == 7 else 0
        ho = 4 + 9 * sh["mo"]
        d.ellipse(
            box(mx - mw * 0.6, my - ho, mx + mw * 0.6, my + ho), fill=(60, 15, 20), outline=lip
        )
    else:
        lift = -8 * curv  # corner height relative to the mouth centre (negative: up)
        xs = np.linspace(-mw, mw, 13)
        upper = my + lift * (xs / mw) ** 2 - lift  # parabola through the corners
        if shape == 2:
            upper = upper - 3 * np.clip(xs / mw, 0, 1)  # one side of the upper lip raised
        opening = 12 * sh["mo"]
        lower = upper + opening * (1 - (xs / mw) ** 2)
        if opening > 0.5:
            poly = [p(x, y) for x, y in zip(xs, upper, strict=True)] + [
                p(x, y) for x, y in zip(xs[::-1], lower[::-1], strict=True)
            ]
            d.polygon(poly, fill=(60, 15, 20))
            if sh["teeth"]:
                teeth = [p(x, y) for x, y in zip(xs, upper, strict=True)] + [
                    p(x, y + min(4.0, opening * 0.4))
                    for x, y in zip(xs[::-1], upper[::-1], strict=True)
                ]
                d.polygon(teeth, fill=(250, 250, 245))
            d.line([p(x, y) for x, y in zip(xs, lower, strict=True)], fill=lip, width=int(2 * sc))
        d.line([p(x, y) for x, y in zip(xs, upper, strict=True)], fill=lip, width=int(4 * sc))
    small = img.resize((PATCH, PATCH), Image.BOX)
    arr = np.asarray(small, dtype=np.float32) * rng.uniform(0.92, 1.08)
    arr += 3.0 * rng.standard_normal(arr.shape, dtype=np.float32)
    return np.clip(arr, 0, 255).astype(np.uint8)


def _look(rng: np.random.Generator) -> dict[str, Any]:
    skin = SKIN_TONES[int(rng.integers(len(SKIN_TONES)))]
    return {
        "skin": [int(v) for v in skin],
        "hair": [int(v) for v in rng.integers(10, 110, 3)],
        "eyes": [int(v) for v in rng.integers(30, 140, 3)],
        "background": [int(v) for v in rng.integers(60, 200, 3)],
    }


# ---------------------------------------------------------------------------------- voice


def voice(track: Track, duration: float, split: bool, seed: int) -> np.ndarray:
    """The subject's voice, float64 mono at :data:`SAMPLING_RATE`, ``duration`` seconds.

    A harmonic source (f0 from arousal) through two vowel formants, with syllable-rate
    (3.5-5 Hz) amplitude modulation, pauses, and gain from arousal.
    """
    rng = np.random.default_rng(seed)
    sr = SAMPLING_RATE
    n = int(round(duration * sr))
    # controls at 100 Hz, interpolated to samples (cheap, and smooth enough)
    tc = np.arange(int(duration * 100) + 2) / 100.0
    st = track.state(tc, split)
    t = np.arange(n) / sr
    semis = 8 * st["voice_arousal"] + st["pitch_shift"]
    f0 = np.interp(t, tc, track.voice["f0"] * 2 ** (semis / 12))
    f0 *= 1 + 0.01 * np.sin(2 * np.pi * 5.5 * t)  # a little vibrato
    gain_db = np.interp(t, tc, 12 * st["voice_arousal"])
    tilt = np.interp(t, tc, 1.1 - 0.6 * st["voice_valence"])
    vowel = np.interp(t, tc, st["vowel"].astype(float))  # 0 = /a/, 1 = /i/ (ramps at changes)
    f1 = VOWELS[0][0] + (VOWELS[1][0] - VOWELS[0][0]) * vowel
    f2 = VOWELS[0][1] + (VOWELS[1][1] - VOWELS[0][1]) * vowel
    phase = 2 * np.pi * np.cumsum(f0) / sr
    base = np.exp(1j * phase)
    zh = np.ones(n, dtype=complex)
    x = np.zeros(n)
    for h in range(1, 31):
        zh *= base  # exp(i h phase) by recurrence: cheaper than a sine per harmonic
        fh = f0 * h
        res = 1.0 / (1.0 + ((fh - f1) / 110.0) ** 2) + 0.7 / (1.0 + ((fh - f2) / 140.0) ** 2)
        g = (0.15 + res) * np.exp(-tilt * math.log(h))
        x += np.where(fh < sr / 2 - 500, g, 0.0) * zh.imag
    # unit RMS source, so loudness is set by the arousal gain alone (not by the spectrum)
    x /= np.sqrt(np.mean(x**2)) + 1e-9
    # syllables: a half-wave envelope whose rate wanders between 3.5 and 5 Hz
    rate = 4.2 + 0.7 * np.sin(2 * np.pi * rng.uniform(0.05, 0.15) * t + rng.uniform(0, 6))
    syl = np.clip(np.sin(2 * np.pi * np.cumsum(rate) / sr), 0, None) ** 0.6
    speaking = np.ones(n)
    pos = rng.uniform(0.8, 2.0)
    while pos < duration:  # pauses of 0.25-0.6 s every 1.5-3 s
        a = int(pos * sr)
        speaking[a : a + int(rng.uniform(0.25, 0.6) * sr)] = 0.0
        pos += rng.uniform(1.5, 3.0)
    speaking = np.convolve(speaking, np.ones(160) / 160, mode="same")  # 10 ms ramps
    x = x * syl * speaking * 10 ** (gain_db / 20)
    return x + 0.002 * rng.standard_normal(n)


# ---------------------------------------------------------------------------------- media


def _write_video(
    path: Path,
    fps: Fraction,
    n_frames: int,
    frames: Callable[[int], np.ndarray],
    audio: np.ndarray,
    size: tuple[int, int],
    skipped_frame: bool = False,
) -> None:
    """Encode frames and audio; ``skipped_frame`` (AVI only) appends an empty video chunk,
    which the AVI header counts as a frame (header: ``n_frames + 1``) but which holds none."""
    avi = path.suffix == ".avi"
    with av.open(str(path), "w") as out:
        vs = out.add_stream("mpeg4" if avi else "libx264", rate=fps)
        vs.width, vs.height = size
        vs.pix_fmt = "yuv420p"
        if avi:
            vs.bit_rate = 1_500_000
        else:
            # one thread per encoder: generate() runs videos in parallel processes instead
            vs.options = {"crf": "20", "preset": "ultrafast", "threads": "1"}
        # AVI cannot mark AAC encoder priming (FFmpeg would shift the video): PCM there
        ast = out.add_stream("pcm_s16le" if avi else "aac", rate=SAMPLING_RATE)
        ast.layout = "mono"
        for i in range(n_frames):
            frame = av.VideoFrame.from_ndarray(frames(i), format="rgb24")
            for packet in vs.encode(frame):
                out.mux(packet)
        for packet in vs.encode():
            out.mux(packet)
        if skipped_frame and avi:
            empty = av.Packet(0)
            empty.stream = vs
            empty.time_base = 1 / Fraction(fps)
            empty.pts = empty.dts = n_frames
            out.mux(empty)
        fmt = ast.codec_context.format.name if ast.codec_context.format else "fltp"
        step = ast.codec_context.frame_size or 1024
        sig = np.clip(audio, -1, 1).astype(np.float32)
        for a in range(0, len(sig), step):
            block = sig[a : a + step]
            if fmt.startswith("s16"):
                af = av.AudioFrame.from_ndarray(
                    (block * 32767).astype(np.int16)[None], format="s16", layout="mono"
                )
            else:
                af = av.AudioFrame.from_ndarray(block[None], format="fltp", layout="mono")
            af.sample_rate = SAMPLING_RATE
            af.pts = a
            af.time_base = Fraction(1, SAMPLING_RATE)
            for packet in ast.encode(af):
                out.mux(packet)
        for packet in ast.encode():
            out.mux(packet)


# ---------------------------------------------------------------------------------- plan


def _plan(videos: int, seed: int, duration: float) -> list[dict[str, Any]]:
    """Decide names, containers, frame rates, subjects, splits and quirks of every video."""
    if videos < 4:
        raise ValueError(
            f"videos must be at least 4 (train, validation, test, quirks), got {videos}"
        )
    if duration < 3.0:
        raise ValueError(f"duration must be at least 3 seconds, got {duration}")
    rng = np.random.default_rng([seed, 1])
    n_test = 2 if videos < 16 else 3
    plan = []
    for i in range(videos):
        if i % 3 == 1:
            w, h = ((640, 360), (1280, 720), (480, 360))[(i // 3) % 3]
            name = f"{i + 1}-{int(rng.choice([24, 30, 60]))}-{w}x{h}"  # not the frame rate
        else:
            name = f"video{i + 1}"
        fps = FPS_29_97 if rng.random() < 0.5 else Fraction(30)
        plan.append(
            {
                "video": name,
                "batch": "batch1" if i < videos // 2 else "batch2",
                "ext": ".mp4",
                "fps": fps,
                "duration": float(round(duration * rng.uniform(0.85, 1.15), 2)),
                "people": "single",
                "split": "train",
            }
        )
    # quirks on fixed positions so every set has them
    plan[1]["fps"] = Fraction(10)  # low frame rate
    # ... in an AVI whose header declares one frame more than it holds: the AVI muxer's
    # empty chunk for a skipped frame counts in the header, but is no frame
    plan[1]["ext"] = ".avi"
    plan[1]["skipped_frame"] = True
    if videos >= 12:
        plan[5]["fps"] = Fraction(15, 2)  # 7.5 fps
    plan[2]["people"] = "pair"  # two persons: <video>_left + <video>_right
    if videos >= 10:
        plan[7]["people"] = "irregular"  # an unsuffixed track plus <video>_right
    batch2 = [p for p in plan if p["batch"] == "batch2"]
    for p in batch2[::2]:
        p["ext"] = ".avi"
    # splits: the last n_test videos are test; of the rest about 30 % validation, chosen
    # among one-person videos (the two-person videos share one voice track between two
    # label sets: in a small validation split they would swamp the audio scores)
    order = [i for i in range(videos - n_test) if plan[i]["people"] == "single"]
    n_val = max(1, round(0.3 * (videos - n_test)))
    for j in rng.permutation(order)[:n_val]:
        plan[int(j)]["split"] = "validation"
    for p in plan[-n_test:]:
        p["split"] = "test"
    # expression segments of every subject, drawn from one deck per split so that small
    # sets hold every class in both splits
    decks = {
        split: _deck(rng, int(4 * videos * duration)) for split in ("train", "validation", "test")
    }
    for p in plan:
        deck = decks[p["split"]]
        n_frames = int(round(p["duration"] * p["fps"]))
        dur = n_frames / float(p["fps"])
        people = 1 if p["people"] == "single" else 2
        p["segments"] = [_segments(rng, dur, 1.5, 3.5, deck) for _ in range(people)]
    return plan


def generate(
    root: str | Path,
    videos: int = 24,
    seed: int = 0,
    duration: float = 12.0,
    split_modalities: bool = False,
    progress: Callable[[int, int, str], None] | None = None,
    workers: int = 0,
    crops_layout: str = "flat",
) -> dict[str, Any]:
    """Write a synthetic Aff-Wild2-shaped set under ``root`` (see the module docstring).

    Args:
        root: output folder (created; must be empty or absent).
        videos: number of raw videos (>= 4); one of them shows two persons, so there is one
            more track than videos (two more from 10 videos on).
        seed: everything (labels, faces, voices, splits) follows from it: the same seed
            gives byte-identical annotation files.
        duration: mean video length in seconds (each video varies +-15 %).
        split_modalities: split each label between face and voice (see module docstring).
        progress: called as ``progress(done_videos, total_videos, video_name)``.
        workers: processes drawing and encoding videos in parallel (0: one per CPU).
        crops_layout: ``"flat"``: ``cropped_aligned/<track>``; ``"nested"``: as the ABAW6
            release unpacks, ``cropped_aligned/cropped_aligned/<track>`` and, for the last
            ~15 % of the annotated videos (at least one),
            ``cropped_aligned/cropped_aligned_new_50_vids/<track>``. Only the folders differ.

    Returns:
        A summary: root, seed, counts of videos/tracks/frames per split and task, the
        quirks present, and the generation time in seconds.

    Raises:
        ValueError: bad arguments, or ``root`` exists and is not empty.
    """
    import time

    t_start = time.perf_counter()
    root = Path(root)
    if crops_layout not in CROPS_LAYOUTS:
        raise ValueError(
            f"crops_layout must be one of {', '.join(CROPS_LAYOUTS)}, got {crops_layout!r}"
        )
    if root.exists() and (not root.is_dir() or any(root.iterdir())):
        raise ValueError(f"{root}: output folder exists and is not empty")
    plan = _plan(videos, seed, duration)
    # the extra crop folder: the last ~15 % of the videos before the test videos
    n_test = sum(p["split"] == "test" for p in plan)
    n_extra = max(1, round(0.15 * videos))
    for vi, p in enumerate(plan):
        extra = videos - n_test - n_extra <= vi < videos - n_test
        p["crops_dir"] = _CROP_FOLDERS[crops_layout][int(extra)]
    tracks_meta: dict[str, Any] = {}
    videos_meta: dict[str, Any] = {}
    jobs = [(root, p, vi, seed, split_modalities) for vi, p in enumerate(plan)]
    workers = min(workers or (os.cpu_count() or 1), len(jobs))
    if workers > 1:
        # videos are independent and seeded by their index: the same bytes in any order
        ctx = multiprocessing.get_context("spawn")
        with ProcessPoolExecutor(workers, mp_context=ctx) as pool:
            results = pool.map(_make_video, jobs)
            for vi, (vmeta, tmeta) in enumerate(results):
                videos_meta[plan[vi]["video"]] = vmeta
                tracks_meta.update(tmeta)
                if progress is not None:
                    progress(vi + 1, len(plan), plan[vi]["video"])
    else:
        for vi, job in enumerate(jobs):
            vmeta, tmeta = _make_video(job)
            videos_meta[plan[vi]["video"]] = vmeta
            tracks_meta.update(tmeta)
            if progress is not None:
                progress(vi + 1, len(plan), plan[vi]["video"])
    _write_test_files(root, tracks_meta)
    summary = _summary(root, seed, split_modalities, videos_meta, tracks_meta)
    summary["crops_layout"] = crops_layout
    summary["seconds"] = round(time.perf_counter() - t_start, 2)
    meta = {
        "generator": "emofeat_recipes.datasets.synth",
        "format_version": 1,
        "seed": seed,
        "videos_requested": videos,
        "duration": duration,
        "split_modalities": split_modalities,
        "crops_layout": crops_layout,
        "expr_classes": list(EXPR_CLASSES),
        "planted": PLANTED,
        "mode": "split" if split_modalities else "joint",
        "videos": videos_meta,
        "tracks": tracks_meta,
        "summary": {k: v for k, v in summary.items() if k != "seconds"},
    }
    (root / "synth.json").write_text(json.dumps(meta, indent=1) + "\n")
    return summary


def _make_video(job: tuple[Path, dict[str, Any], int, int, bool]) -> tuple[dict, dict]:
    """Draw, voice, encode and annotate one video; returns its and its tracks' metadata."""
    root, p, vi, seed, split_modalities = job
    vrng = np.random.default_rng([seed, 2, vi])
    fps = p["fps"]
    n_frames = int(round(p["duration"] * fps))
    dur = n_frames / float(fps)
    sides = {"single": ["single"], "pair": ["left", "right"], "irregular": ["left", "right"]}[
        p["people"]
    ]
    tracks = []
    for j, side in enumerate(sides):
        name = p["video"] if side == "single" else f"{p['video']}_{side}"
        if p["people"] == "irregular" and side == "left":
            name = p["video"]
        names = (
            ["valence_face", "valence_voice", "arousal_face", "arousal_voice"]
            if split_modalities
            else ["valence", "arousal"]
        )
        tr = Track(
            name=name,
            video=p["video"],
            side=side,
            split=p["split"],
            tasks=("VA", "EXPR"),
            curves={k: _curve_params(vrng) for k in names},
            segments=p["segments"][j],
            look=_look(vrng),
            voice={"f0": float(round(vrng.choice([120.0, 130.0, 140.0, 150.0]), 1))},
        )
        if vrng.random() < 0.7 or vi == 0:
            tr.missing_crops = _stretches(vrng, n_frames, int(vrng.integers(1, 3)), 2, 8)
        if vrng.random() < 0.5 or vi == 0:
            tr.invalid_va = _stretches(vrng, n_frames, 1, 5, int(0.1 * n_frames) + 5)
        if vrng.random() < 0.5 or vi == 0:
            tr.invalid_expr = _stretches(vrng, n_frames, 1, 5, int(0.1 * n_frames) + 5)
        if p["split"] == "test":
            tr.invalid_va, tr.invalid_expr = [], []
        tracks.append(tr)
    # label files a frame or two longer or shorter than the video
    for tr in tracks:
        if vi in (0, 3) or (vi > 8 and vrng.random() < 0.25):
            tr.label_delta = int(vrng.choice([-2, -1, 1, 2]))
    if vi == 3:
        tracks[0].tasks = ("VA",)
    if vi == 4:
        tracks[0].tasks = ("EXPR",)
    _render_video(root, p, tracks, n_frames, split_modalities, seed, vi)
    _write_labels(root, tracks, n_frames, fps, split_modalities)
    vmeta = {
        "file": f"videos/{p['batch']}/{p['video']}{p['ext']}",
        "fps": str(fps),
        "fps_hz": float(fps),
        "frames": n_frames,
        # what the container header declares (an empty chunk counts there)
        "header_frames": n_frames + int(p.get("skipped_frame", False)),
        "duration_s": dur,
        "tracks": [tr.name for tr in tracks],
    }
    tmeta = {}
    for tr in tracks:
        tmeta[tr.name] = {
            "video": tr.video,
            "side": tr.side,
            "split": tr.split,
            "tasks": list(tr.tasks) if tr.split != "test" else [],
            "fps": str(fps),
            "fps_hz": float(fps),
            "frames": n_frames,
            "crops": f"{p['crops_dir']}/{tr.name}",
            "label_lines": n_frames + tr.label_delta if tr.split != "test" else 0,
            "missing_crops": [list(r) for r in tr.missing_crops],
            "invalid_va": [list(r) for r in tr.invalid_va],
            "invalid_expr": [list(r) for r in tr.invalid_expr],
            "curves": tr.curves,
            "expr_segments": [list(s) for s in tr.segments],
            "look": tr.look,
            "voice_f0_hz": tr.voice["f0"],
        }
    return vmeta, tmeta


def _render_video(
    root: Path,
    p: dict[str, Any],
    tracks: list[Track],
    n_frames: int,
    split: bool,
    seed: int,
    vi: int,
) -> None:
    fps = float(p["fps"])
    t = np.arange(n_frames) / fps
    states = [tr.state(t, split) for tr in tracks]
    k = np.arange(1, n_frames + 1)
    missing = [_in_ranges(k, tr.missing_crops) for tr in tracks]
    crop_dirs = []
    for tr in tracks:
        d = root / p["crops_dir"] / tr.name
        d.mkdir(parents=True, exist_ok=True)
        crop_dirs.append(d)
    width = 320 if len(tracks) == 1 else 480
    height = 240
    frng = np.random.default_rng([seed, 3, vi])
    background = np.array(tracks[0].look["background"], dtype=np.float32) * 0.8
    # faces drift slowly around their spot in the frame
    drift = frng.uniform(0, 2 * np.pi, (len(tracks), 2))

    def frame(i: int) -> np.ndarray:
        img = np.empty((height, width, 3), dtype=np.uint8)
        img[:] = background.astype(np.uint8)
        for j, tr in enumerate(tracks):
            st = states[j]
            patch = draw_face(
                tr.look,
                int(st["face_shape"][i]),
                float(st["face_valence"][i]),
                float(st["face_arousal"][i]),
                frng,
            )
            if not missing[j][i]:
                m = (PATCH - CROP) // 2
                Image.fromarray(patch[m : m + CROP, m : m + CROP]).save(
                    crop_dirs[j] / f"{i + 1:05d}.jpg", quality=90
                )
            else:
                # the detector found no face here: the face is covered (a hand, a turn)
                patch = patch.copy()
                patch[20:130, 10:134] = (110, 100, 95)
            cx = (width // len(tracks)) * j + width // (2 * len(tracks))
            x0 = int(cx - PATCH / 2 + 12 * math.sin(0.4 * t[i] + drift[j, 0]))
            y0 = int(height / 2 - PATCH / 2 + 8 * math.sin(0.3 * t[i] + drift[j, 1]))
            img[y0 : y0 + PATCH, x0 : x0 + PATCH] = patch
        return img

    dur = n_frames / fps
    if len(tracks) == 1:
        audio = voice(tracks[0], dur, split, seed * 1000 + vi)
    else:
        # two speakers take turns of 2-4 s; each voice is heard only in its own turns
        sr = SAMPLING_RATE
        n = int(round(dur * sr))
        turn = np.zeros(n)
        pos, who = 0.0, 0
        while pos < dur:
            d = frng.uniform(2.0, 4.0)
            turn[int(pos * sr) : int((pos + d) * sr)] = who
            pos, who = pos + d, 1 - who
        turn = np.convolve(turn, np.ones(320) / 320, mode="same")
        audio = (1 - turn) * voice(tracks[0], dur, split, seed * 1000 + vi) + turn * voice(
            tracks[1], dur, split, seed * 1000 + vi + 500
        )
    # a fixed scale for every video (no per-video normalisation): absolute loudness follows
    # arousal across videos too
    audio = np.clip(0.1 * audio, -1.0, 1.0)
    path = root / "videos" / p["batch"] / f"{p['video']}{p['ext']}"
    path.parent.mkdir(parents=True, exist_ok=True)
    _write_video(
        path, p["fps"], n_frames, frame, audio, (width, height), p.get("skipped_frame", False)
    )


def _write_labels(
    root: Path, tracks: list[Track], n_frames: int, fps: Fraction, split: bool
) -> None:
    for tr in tracks:
        if tr.split == "test":
            continue
        n = n_frames + tr.label_delta
        k = np.arange(1, n + 1)
        # label lines past the video's end continue the same functions of time
        st = tr.state((k - 1) / float(fps), split)
        folder = {"train": "Train_Set", "validation": "Validation_Set"}[tr.split]
        if "VA" in tr.tasks:
            bad = _in_ranges(k, tr.invalid_va)
            lines = [VA_HEADER] + [
                "-5,-5" if b else f"{v:.3f},{a:.3f}"
                for v, a, b in zip(st["valence"], st["arousal"], bad, strict=True)
            ]
            _write_text(root / ANNOTATIONS / VA_TASK / folder / f"{tr.name}.txt", lines)
        if "EXPR" in tr.tasks:
            bad = _in_ranges(k, tr.invalid_expr)
            lines = [EXPR_HEADER] + [
                "-1" if b else str(int(c)) for c, b in zip(st["expr"], bad, strict=True)
            ]
            _write_text(root / ANNOTATIONS / EXPR_TASK / folder / f"{tr.name}.txt", lines)


def _write_text(path: Path, lines: list[str]) -> None:
    path.parent.mkdir(parents=True, exist_ok=True)
    path.write_text("\n".join(lines) + "\n")


def _write_test_files(root: Path, tracks: dict[str, Any]) -> None:
    test = sorted(name for name, tr in tracks.items() if tr["split"] == "test")
    folder = root / "test"
    for task, header in (
        ("VA", "image_location,valence,arousal"),
        ("EXPR", "image_location," + EXPR_HEADER),
    ):
        long = {
            "VA": "Valence_Arousal_Estimation_Challenge",
            "EXPR": "Expression_Recognition_Challenge",
        }[task]
        _write_text(folder / f"{long}_test_set_release.txt", test)
        rows = [header]
        for name in test:
            rows += [f"{name}/{k:05d}.jpg" for k in range(1, tracks[name]["frames"] + 1)]
        _write_text(folder / f"CVPR_6th_ABAW_{task}_test_set_sample.txt", rows)


def _summary(
    root: Path,
    seed: int,
    split: bool,
    videos: dict[str, Any],
    tracks: dict[str, Any],
) -> dict[str, Any]:
    per_split: dict[str, dict[str, int]] = {}
    for tr in tracks.values():
        s = per_split.setdefault(tr["split"], {"tracks": 0, "frames": 0, "VA": 0, "EXPR": 0})
        s["tracks"] += 1
        s["frames"] += tr["frames"]
        for task in tr["tasks"]:
            s[task] += 1
    missing = sum(b - a + 1 for tr in tracks.values() for a, b in tr["missing_crops"])
    return {
        "root": str(root),
        "seed": seed,
        "mode": "split" if split else "joint",
        "videos": len(videos),
        "tracks": len(tracks),
        "frames": sum(v["frames"] for v in videos.values()),
        "splits": per_split,
        "quirks": {
            "low_fps": sorted(n for n, v in videos.items() if v["fps_hz"] < 20),
            "two_person": sorted(n for n, v in videos.items() if len(v["tracks"]) > 1),
            "avi": sorted(n for n, v in videos.items() if v["file"].endswith(".avi")),
            "header_frames_off": sorted(
                n for n, v in videos.items() if v["header_frames"] != v["frames"]
            ),
            "label_length_off": sorted(
                n for n, t in tracks.items() if t["label_lines"] and t["label_lines"] != t["frames"]
            ),
            "va_only": sorted(n for n, t in tracks.items() if t["tasks"] == ["VA"]),
            "expr_only": sorted(n for n, t in tracks.items() if t["tasks"] == ["EXPR"]),
            "missing_crop_frames": missing,
        },
    }
