"""Per-video array plumbing for the temporal recipes: resampling, normalisation, windows.

Everything here works on one video's arrays at a time (``x`` of shape ``(n, D)``: ``n`` frames,
``D`` feature dimensions, with a boolean validity mask of shape ``(n,)``), in plain numpy, so
that the data pipeline, the Kernel ELM and the neural models share one definition of what a
window is. The paper's settings (SUN team, ABAW6, arXiv 2403.12609): features taken at 5 fps
(every ``round(fps / 5)``-th video frame), min-max normalised per video, windows of 30 frames
with hop 15 (VA) or 20 with hop 10 (EXPR) at that rate, window predictions spread back over
their span, overlaps averaged, interpolated to every label frame.

All positions are 0-based frame indices; ``stop`` values are exclusive.
"""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import dataclass, field

import numpy as np

from emofeat_recipes.validate import NORMALISERS

__all__ = [
    "NORMALISERS",
    "Normaliser",
    "fit_normaliser",
    "make_windows",
    "resample_indices",
    "seconds_to_frames",
    "spread_back",
    "stack_windows",
    "to_label_frames",
]


def resample_indices(n_frames: int, fps: float, target_fps: float) -> np.ndarray:
    """Indices of the video frames kept when resampling from ``fps`` to ``target_fps`` (Hz).

    As in the paper, every ``round(fps / target_fps)``-th frame is kept, starting at frame 0,
    so a 30 fps video at target 5 fps keeps frames 0, 6, 12, ... and a 29.97 fps video the
    same. A video whose frame rate is at or below the target (Aff-Wild2 has videos down to
    6 fps; ``round(6 / 5) == 1``) keeps every frame: frames are never invented, and the
    resulting effective rate is simply lower than the target.

    Returns an ``int64`` array of increasing frame indices (empty when ``n_frames == 0``).
    """
    if n_frames < 0:
        raise ValueError(f"resample_indices: n_frames must be >= 0, got {n_frames}")
    if not (fps > 0 and np.isfinite(fps)) or not (target_fps > 0 and np.isfinite(target_fps)):
        raise ValueError(
            f"resample_indices: frame rates must be positive, got fps={fps}, "
            f"target_fps={target_fps}"
        )
    step = max(1, int(round(fps / target_fps)))
    return np.arange(0, int(n_frames), step, dtype=np.int64)


def seconds_to_frames(seconds: float, rate: float) -> int:
    """A duration in seconds as a whole number of frames at ``rate`` Hz (at least 1).

    Window lengths and hops may be configured in seconds or frames; this is the conversion
    (for example 6 s at 5 fps = 30 frames).
    """
    if seconds <= 0 or rate <= 0:
        raise ValueError(
            f"seconds_to_frames: need positive seconds and rate, got {seconds}, {rate}"
        )
    return max(1, int(round(seconds * rate)))


# --------------------------------------------------------------------------- normalisation


# the short names of the spec; per-video is the paper's choice
_ALIASES = {"minmax": "per_video_minmax", "zscore": "per_video_zscore"}


def _valid_rows(x: np.ndarray, mask: np.ndarray | None) -> np.ndarray:
    """Frames usable for statistics: marked valid and free of NaN/inf."""
    ok = np.isfinite(x).all(axis=1)
    if mask is not None:
        mask = np.asarray(mask, dtype=bool)
        if mask.shape != (len(x),):
            raise ValueError(f"mask has shape {mask.shape}, expected ({len(x)},) for x {x.shape}")
        ok &= mask
    return ok


def _check_2d(x: np.ndarray, what: str) -> np.ndarray:
    x = np.asarray(x)
    if x.ndim != 2:
        raise ValueError(f"{what}: expected a (frames, dims) array, got shape {x.shape}")
    return x


@dataclass
class Normaliser:
    """Feature normalisation, per video or with statistics fitted on the training set.

    ``kind`` is one of :data:`NORMALISERS`:

    * ``per_video_minmax`` (the paper): each video is scaled to [0, 1] per dimension using its
      own valid frames; ``per_video_zscore``: each video to mean 0, std 1. Nothing is fitted.
    * ``global_minmax`` / ``global_zscore``: the statistics come from the training videos
      pooled (:func:`fit_normaliser`) and are applied unchanged to every video.
    * ``none``: values pass through (invalid frames still zeroed).

    A dimension that is constant (zero range or zero std) maps to 0 rather than dividing by
    zero. Invalid frames (mask False, or any NaN/inf) are set to 0 in the output so they
    cannot leak NaN into a model; their mask stays False.
    """

    kind: str = "per_video_minmax"
    offset: np.ndarray | None = field(default=None, repr=False)  # (D,) for global kinds
    scale: np.ndarray | None = field(default=None, repr=False)  # (D,) for global kinds

    def __post_init__(self) -> None:
        self.kind = _ALIASES.get(self.kind, self.kind)
        if self.kind not in NORMALISERS:
            raise ValueError(
                f"unknown normalisation {self.kind!r}; choose from {', '.join(NORMALISERS)}"
            )

    @staticmethod
    def _stats(x: np.ndarray, ok: np.ndarray, minmax: bool) -> tuple[np.ndarray, np.ndarray]:
        v = x[ok].astype(np.float64)
        if len(v) == 0:
            d = x.shape[1]
            return np.zeros(d), np.zeros(d)
        if minmax:
            lo = v.min(axis=0)
            return lo, v.max(axis=0) - lo
        return v.mean(axis=0), v.std(axis=0)

    def apply(self, x: np.ndarray, mask: np.ndarray | None = None) -> np.ndarray:
        """Normalise one video's ``(n, D)`` features; returns ``float32`` of the same shape."""
        x = _check_2d(x, "Normaliser.apply")
        ok = _valid_rows(x, mask)
        if self.kind == "none":
            out = x.astype(np.float32, copy=True)
        else:
            if self.kind.startswith("per_video"):
                offset, scale = self._stats(x, ok, self.kind.endswith("minmax"))
            else:
                if self.offset is None or self.scale is None:
                    raise ValueError(
                        f"Normaliser({self.kind}) has no fitted statistics: use fit_normaliser()"
                    )
                offset, scale = self.offset, self.scale
                if len(offset) != x.shape[1]:
                    raise ValueError(
                        f"Normaliser was fitted on {len(offset)}-d features, got {x.shape[1]}-d"
                    )
            safe = np.where(scale > 0, scale, 1.0)
            with np.errstate(invalid="ignore", over="ignore"):
                out = ((x - offset) / safe).astype(np.float32)
            out[:, scale <= 0] = 0.0
        out[~ok] = 0.0
        return out


def fit_normaliser(
    arrays: Sequence[np.ndarray],
    masks: Sequence[np.ndarray | None] | None = None,
    kind: str = "per_video_minmax",
) -> Normaliser:
    """A :class:`Normaliser` of ``kind``; global kinds are fitted on ``arrays`` pooled.

    ``arrays`` are the training videos' ``(n_i, D)`` features and ``masks`` their ``(n_i,)``
    validity masks (``None`` = all valid). Per-video kinds need no fitting; the arrays are
    only checked for a consistent dimension.
    """
    norm = Normaliser(kind)
    arrays = [_check_2d(a, "fit_normaliser") for a in arrays]
    if masks is None:
        masks = [None] * len(arrays)
    if len(masks) != len(arrays):
        raise ValueError(f"fit_normaliser: {len(arrays)} arrays but {len(masks)} masks")
    dims = {a.shape[1] for a in arrays}
    if len(dims) > 1:
        raise ValueError(f"fit_normaliser: arrays differ in dimension: {sorted(dims)}")
    if norm.kind.startswith("global"):
        if not arrays:
            raise ValueError("fit_normaliser: global normalisation needs training arrays")
        rows = [a[_valid_rows(a, m)] for a, m in zip(arrays, masks, strict=True)]
        pooled = np.concatenate(rows).astype(np.float64)
        if len(pooled) == 0:
            raise ValueError("fit_normaliser: no valid frame in the training arrays")
        if norm.kind == "global_minmax":
            norm.offset = pooled.min(axis=0)
            norm.scale = pooled.max(axis=0) - norm.offset
        else:
            norm.offset = pooled.mean(axis=0)
            norm.scale = pooled.std(axis=0)
    return norm


# --------------------------------------------------------------------------- windows


def make_windows(n: int, length: int, hop: int) -> np.ndarray:
    """Window spans over ``n`` frames: an ``(W, 2)`` ``int64`` array of ``[start, stop)``.

    Every window is ``length`` frames long. Starts are ``0, hop, 2 * hop, ...``; when the last
    regular window stops before ``n``, one more window is added that ends exactly at ``n``
    (shifted back, so it overlaps its neighbour more than ``hop`` does), so every frame is
    covered; for the same reason ``hop`` may not exceed ``length``. A sequence shorter than
    ``length`` gets a single window ``[0, length)`` that runs past ``n``: :func:`stack_windows`
    pads it and marks the padding invalid. ``n == 0`` gives no windows.
    """
    if length < 1 or hop < 1:
        raise ValueError(f"make_windows: length and hop must be >= 1 frame, got {length}, {hop}")
    if hop > length:
        raise ValueError(
            f"make_windows: hop {hop} > length {length} would leave frames between windows "
            "uncovered"
        )
    if n < 0:
        raise ValueError(f"make_windows: n must be >= 0, got {n}")
    if n == 0:
        return np.zeros((0, 2), dtype=np.int64)
    if n <= length:
        return np.array([[0, length]], dtype=np.int64)
    starts = np.arange(0, n - length + 1, hop, dtype=np.int64)
    if starts[-1] + length < n:
        starts = np.append(starts, n - length)
    return np.stack([starts, starts + length], axis=1)


def stack_windows(
    x: np.ndarray, mask: np.ndarray | None, windows: np.ndarray, length: int
) -> tuple[np.ndarray, np.ndarray]:
    """Cut ``x`` ``(n, D)`` into windows: returns ``(W, length, D)`` data and ``(W, length)`` valid.

    Positions past the end of the sequence (padding) hold 0 and are invalid; so are frames
    whose ``mask`` is False. ``windows`` come from :func:`make_windows`.
    """
    x = _check_2d(x, "stack_windows")
    n, d = x.shape
    m = np.ones(n, dtype=bool) if mask is None else np.asarray(mask, dtype=bool)
    if m.shape != (n,):
        raise ValueError(f"stack_windows: mask has shape {m.shape}, expected ({n},)")
    windows = np.asarray(windows, dtype=np.int64).reshape(-1, 2)
    out = np.zeros((len(windows), length, d), dtype=x.dtype)
    valid = np.zeros((len(windows), length), dtype=bool)
    for w, (start, stop) in enumerate(windows):
        if stop - start != length:
            raise ValueError(f"stack_windows: window {w} is [{start}, {stop}), not {length} long")
        end = min(int(stop), n)
        k = end - int(start)
        if k > 0:
            out[w, :k] = x[start:end]
            valid[w, :k] = m[start:end]
    return out, valid


def spread_back(
    window_preds: np.ndarray,
    windows: np.ndarray,
    n: int,
    valid: np.ndarray | None = None,
) -> np.ndarray:
    """Spread window predictions back onto ``n`` frames, averaging where windows overlap.

    ``window_preds`` is ``(W, length, C)`` (one prediction per frame of each window, as the
    Transformer/GRU heads give) or ``(W, C)`` (one prediction per window, as the Kernel ELM on
    functionals gives; it then covers the whole span). ``valid`` ``(W, length)`` optionally
    excludes positions (for example padding or invalid frames); padding past ``n`` is always
    ignored. Returns ``(n, C)`` ``float64``; frames no window covers are NaN.
    """
    p = np.asarray(window_preds, dtype=np.float64)
    windows = np.asarray(windows, dtype=np.int64).reshape(-1, 2)
    if p.ndim == 2:
        if len(windows) == 0:
            return np.full((n, p.shape[1]), np.nan)
        length = int((windows[:, 1] - windows[:, 0]).max())
        p = np.repeat(p[:, None, :], length, axis=1)
    if p.ndim != 3 or len(p) != len(windows):
        raise ValueError(
            f"spread_back: predictions of shape {np.shape(window_preds)} do not match "
            f"{len(windows)} windows"
        )
    w_count, length, c = p.shape
    total = np.zeros((n, c))
    count = np.zeros(n)
    for w, (start, stop) in enumerate(windows):
        if stop - start > length:
            raise ValueError(f"spread_back: window {w} is longer than the predictions ({length})")
        end = min(int(stop), n)
        k = end - int(start)
        if k <= 0:
            continue
        use = np.isfinite(p[w, :k]).all(axis=1)
        if valid is not None:
            use &= np.asarray(valid[w, :k], dtype=bool)
        idx = np.arange(start, end)[use]
        total[idx] += p[w, :k][use]
        count[idx] += 1
    with np.errstate(invalid="ignore", divide="ignore"):
        out = total / count[:, None]
    out[count == 0] = np.nan
    return out


def to_label_frames(pred: np.ndarray, idx: np.ndarray, n_label_frames: int) -> np.ndarray:
    """Predictions at sampled frames ``idx`` ``(m,)`` -> predictions for every label frame.

    ``pred`` is ``(m, C)`` (or ``(m,)``) at the 0-based, strictly increasing video frame
    indices ``idx`` (from :func:`resample_indices`). Rows (or single values) that are NaN are
    first filled from the nearest sample that has a value (ties go to the earlier one). Then
    each column is linearly interpolated at frames ``0 .. n_label_frames - 1``; frames before
    the first sample take its value and frames past the last sample repeat the last one (the
    label file can be a frame or two longer than the video). Raises ``ValueError`` when a
    column has no value at all.
    """
    p = np.asarray(pred, dtype=np.float64)
    squeeze = p.ndim == 1
    if squeeze:
        p = p[:, None]
    idx = np.asarray(idx)
    if p.ndim != 2 or idx.shape != (len(p),):
        raise ValueError(
            f"to_label_frames: pred {np.shape(pred)} and idx {idx.shape} "
            "must have one row per index"
        )
    if len(idx) > 1 and not (np.diff(idx) > 0).all():
        raise ValueError("to_label_frames: idx must be strictly increasing frame indices")
    frames = np.arange(int(n_label_frames), dtype=np.float64)
    out = np.empty((len(frames), p.shape[1]))
    for c in range(p.shape[1]):
        have = np.isfinite(p[:, c])
        if not have.any():
            raise ValueError(f"to_label_frames: column {c} has no finite prediction to spread")
        col = p[:, c].copy()
        if not have.all():
            known = np.flatnonzero(have)
            # nearest known sample, measured in frame index (not row) distance
            pos = np.searchsorted(idx[known], idx)
            left = known[np.clip(pos - 1, 0, len(known) - 1)]
            right = known[np.clip(pos, 0, len(known) - 1)]
            take_left = np.abs(idx - idx[left]) <= np.abs(idx[right] - idx)
            nearest = np.where(take_left, left, right)
            col[~have] = col[nearest[~have]]
        out[:, c] = np.interp(frames, idx.astype(np.float64), col)
    return out[:, 0] if squeeze else out
