"""Post-processing of per-frame predictions: temporal smoothing and EXPR argmax.

The paper smooths the interpolated per-frame predictions with a normalised Hamming window of
about 0.5 s (``fps // 2`` frames) and takes the argmax for EXPR (as in arXiv 2403.12609); a
moving average over about +-50 frames is the other common choice. Here the window length is
searched on the dev set (:func:`search_smoothing`), per track so smoothing never crosses from
one video into the next.
"""

from __future__ import annotations

from collections.abc import Callable, Iterable, Mapping

import numpy as np

from emofeat_recipes.validate import SMOOTHING

__all__ = ["default_windows", "expr_argmax", "search_smoothing", "smooth"]

KINDS = SMOOTHING


def _kernel(window: int, kind: str) -> np.ndarray:
    if kind == "hamming":
        w = np.hamming(window)
    elif kind == "mean":
        w = np.ones(window)
    else:
        raise ValueError(f"unknown smoothing kind {kind!r}; choose from {', '.join(KINDS)}")
    return w / w.sum()


def smooth(pred: np.ndarray, window: int, kind: str = "hamming") -> np.ndarray:
    """Smooth ``(n, C)`` (or ``(n,)``) per-frame predictions along time, column by column.

    ``window`` is the kernel length in frames (``<= 1``: unchanged copy); ``kind`` is
    ``"hamming"`` (``np.hamming(window)``) or ``"mean"`` (moving average). The kernel is
    normalised to sum 1 and centred as ``np.convolve(..., mode="same")`` centres it. At the
    edges, and around NaN frames (which count as missing), the part of the kernel that falls
    on existing frames is renormalised to sum 1, so edges are not pulled towards 0 and NaN
    does not spread; a frame whose whole neighbourhood is missing stays NaN.
    """
    p = np.asarray(pred, dtype=np.float64)
    squeeze = p.ndim == 1
    if squeeze:
        p = p[:, None]
    if p.ndim != 2:
        raise ValueError(f"smooth: expected (frames, columns) predictions, got shape {p.shape}")
    window = int(window)
    if window <= 1 or len(p) == 0:
        out = p.copy()
        return out[:, 0] if squeeze else out
    k = _kernel(window, kind)
    out = np.empty_like(p)
    for c in range(p.shape[1]):
        have = np.isfinite(p[:, c])
        num = np.convolve(np.where(have, p[:, c], 0.0), k, mode="same")
        den = np.convolve(have.astype(np.float64), k, mode="same")
        with np.errstate(invalid="ignore", divide="ignore"):
            out[:, c] = np.where(den > 1e-12, num / den, np.nan)
    return out[:, 0] if squeeze else out


def default_windows(fps: float = 30.0) -> tuple[int, ...]:
    """Candidate smoothing windows (frames) for :func:`search_smoothing` at ``fps`` Hz.

    1 (no smoothing), then odd lengths growing roughly geometrically up to about 3 s, which
    spans the paper's 0.5 s Hamming window and the +-50-frame moving average.
    """
    top = max(3, int(round(3 * fps)))
    cand = [1, 3, 5, 7, 9, 11, 15, 21, 31, 45, 61, 91, 121, 181]
    return tuple(w for w in cand if w <= top)


def search_smoothing(
    dev_preds: Mapping[str, np.ndarray],
    dev_labels: Mapping[str, np.ndarray],
    metric: Callable[[np.ndarray, np.ndarray], float],
    windows: Iterable[int] | None = None,
    kind: str = "hamming",
    fps: float = 30.0,
) -> tuple[int, dict[int, float]]:
    """Pick the smoothing window that maximises ``metric`` on the dev set.

    ``dev_preds`` maps each track name to its ``(n, C)`` per-frame predictions and
    ``dev_labels`` to its labels (any shape with ``n`` rows, including invalid markers).
    Each track is smoothed on its own; then all tracks are pooled (concatenated in
    ``dev_preds`` order) and scored as ``metric(labels_pooled, smoothed_pooled)``, higher is
    better (the challenge metrics pool all frames). For EXPR pass a metric that takes class
    scores, e.g. ``lambda y, s: f1(y, s.argmax(1))``. ``windows`` default to
    :func:`default_windows` at ``fps``. Returns ``(best_window, {window: score})``; ties go to
    the shorter window.
    """
    missing = [t for t in dev_preds if t not in dev_labels]
    if missing:
        raise ValueError(f"search_smoothing: no dev labels for track(s) {', '.join(missing[:5])}")
    for t, p in dev_preds.items():
        if len(p) != len(dev_labels[t]):
            raise ValueError(
                f"search_smoothing: track {t} has {len(p)} predictions but "
                f"{len(dev_labels[t])} label frames"
            )
    if not dev_preds:
        raise ValueError("search_smoothing: no dev tracks")
    wins = sorted({int(w) for w in (windows if windows is not None else default_windows(fps))})
    labels = np.concatenate([np.asarray(dev_labels[t]) for t in dev_preds])
    scores: dict[int, float] = {}
    for w in wins:
        pooled = np.concatenate([smooth(p, w, kind) for p in dev_preds.values()])
        scores[w] = float(metric(labels, pooled))
    best = max(wins, key=lambda w: (scores[w], -w))
    return best, scores


def expr_argmax(scores: np.ndarray) -> np.ndarray:
    """Class index per frame from ``(n, 8)`` class scores (probabilities or logits).

    NaN scores are ignored; a frame whose scores are all NaN is an error (fill missing frames
    first, e.g. with :func:`emofeat_recipes.windows.to_label_frames`).
    """
    s = np.asarray(scores, dtype=np.float64)
    if s.ndim != 2:
        raise ValueError(f"expr_argmax: expected (frames, classes) scores, got shape {s.shape}")
    finite = np.isfinite(s)
    empty = ~finite.any(axis=1)
    if empty.any():
        raise ValueError(
            f"expr_argmax: {int(empty.sum())} frame(s) have no finite score "
            f"(first: row {int(np.flatnonzero(empty)[0])})"
        )
    return np.where(finite, s, -np.inf).argmax(axis=1)
