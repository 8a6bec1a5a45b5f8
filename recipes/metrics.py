"""The ABAW challenge metrics, exactly as the organisers compute them.

* CCC (Lin's concordance correlation coefficient) with population (biased) variances, over all
  frames of a set pooled together; VA score = mean of the valence and arousal CCCs.
* EXPR score = unweighted macro-F1 over all 8 classes (Other included).

Invalid frames (-5 / -1 labels) are removed by passing a ``mask`` (True = keep); callers pool
tracks by concatenating their frames first. Values left after masking must be finite.
"""

from __future__ import annotations

import numpy as np
from numpy.typing import ArrayLike

N_EXPR_CLASSES = 8


def ccc(x: ArrayLike, y: ArrayLike, mask: ArrayLike | None = None) -> float:
    """Concordance correlation coefficient of two 1-d series (population variances).

    ``2 cov(x, y) / (var(x) + var(y) + (mean(x) - mean(y))**2)``.

    Args:
        x: predictions, shape ``(n,)``.
        y: labels, shape ``(n,)``.
        mask: ``(n,)`` bool, True for frames to keep (drop invalid labels this way).

    Returns:
        CCC in [-1, 1]; NaN when both series are the same constant (0 / 0).

    Raises:
        ValueError: shapes differ, no frame left, or a kept value is not finite.
    """
    xa = np.asarray(x, dtype=np.float64).reshape(-1)
    ya = np.asarray(y, dtype=np.float64).reshape(-1)
    if xa.shape != ya.shape:
        raise ValueError(f"ccc: predictions {xa.shape} and labels {ya.shape} differ in length")
    if mask is not None:
        m = np.asarray(mask, dtype=bool).reshape(-1)
        if m.shape != xa.shape:
            raise ValueError(f"ccc: mask {m.shape} does not match values {xa.shape}")
        xa, ya = xa[m], ya[m]
    if xa.size == 0:
        raise ValueError("ccc: no frames left (empty input or everything masked)")
    if not (np.isfinite(xa).all() and np.isfinite(ya).all()):
        raise ValueError("ccc: non-finite values among the kept frames (mask them out)")
    mx, my = xa.mean(), ya.mean()
    vx, vy = xa.var(), ya.var()  # ddof=0: population variances, as ABAW computes them
    cov = ((xa - mx) * (ya - my)).mean()
    denom = vx + vy + (mx - my) ** 2
    if denom == 0:
        return float("nan")
    return float(2 * cov / denom)


def va_score(pred: ArrayLike, true: ArrayLike, mask: ArrayLike | None = None) -> dict[str, float]:
    """CCC of valence and arousal and their mean (the ABAW VA score).

    Args:
        pred: ``(n, 2)`` predictions (valence, arousal).
        true: ``(n, 2)`` labels.
        mask: ``(n,)`` bool (frames to keep) or ``(n, 2)`` bool (per dimension).

    Returns:
        ``{"valence": ..., "arousal": ..., "mean": ...}``.
    """
    p = np.asarray(pred, dtype=np.float64)
    t = np.asarray(true, dtype=np.float64)
    if p.ndim != 2 or p.shape[1] != 2 or p.shape != t.shape:
        raise ValueError(
            f"va_score: expected (n, 2) predictions and labels, got {p.shape}, {t.shape}"
        )
    m = None if mask is None else np.asarray(mask, dtype=bool)
    if m is not None and m.ndim == 1:
        m = np.repeat(m[:, None], 2, axis=1)
    if m is not None and m.shape != p.shape:
        raise ValueError(f"va_score: mask {m.shape} does not match {p.shape}")
    v = ccc(p[:, 0], t[:, 0], None if m is None else m[:, 0])
    a = ccc(p[:, 1], t[:, 1], None if m is None else m[:, 1])
    return {"valence": v, "arousal": a, "mean": (v + a) / 2}


def _classes(pred: ArrayLike, true: ArrayLike, mask: ArrayLike | None) -> tuple:
    p = np.asarray(pred)
    if p.ndim == 2:  # class scores or probabilities: the decision is the argmax
        p = p.argmax(axis=1)
    t = np.asarray(true)
    if p.shape != t.shape or t.ndim != 1:
        raise ValueError(f"expected (n,) predictions and labels, got {p.shape}, {t.shape}")
    if mask is not None:
        m = np.asarray(mask, dtype=bool)
        if m.shape != t.shape:
            raise ValueError(f"mask {m.shape} does not match labels {t.shape}")
        p, t = p[m], t[m]
    if t.size == 0:
        raise ValueError("no frames left (empty input or everything masked)")
    p, t = p.astype(np.int64), t.astype(np.int64)
    for name, a in (("labels", t), ("predictions", p)):
        bad = (a < 0) | (a >= N_EXPR_CLASSES)
        if bad.any():
            raise ValueError(
                f"{name} outside 0..7 at {int(bad.sum())} frames (e.g. {int(a[bad][0])}); "
                "mask invalid (-1) frames out"
            )
    return p, t


def expr_f1(pred: ArrayLike, true: ArrayLike, mask: ArrayLike | None = None) -> dict:
    """Macro-F1 over the 8 expression classes (the ABAW EXPR score), per-class F1, accuracy.

    A class absent from both labels and predictions counts with F1 = 0 (as scikit-learn's
    ``f1_score(labels=range(8), average="macro", zero_division=0)``).

    Args:
        pred: ``(n,)`` class indices 0-7, or ``(n, 8)`` scores (argmax taken).
        true: ``(n,)`` labels 0-7.
        mask: ``(n,)`` bool, True for frames to keep (drop -1 labels this way).

    Returns:
        ``{"f1": float, "per_class": [8 floats], "accuracy": float}``.
    """
    from sklearn.metrics import f1_score

    p, t = _classes(pred, true, mask)
    labels = list(range(N_EXPR_CLASSES))
    per = f1_score(t, p, labels=labels, average=None, zero_division=0)
    return {
        "f1": float(np.mean(per)),
        "per_class": [float(v) for v in per],
        "accuracy": float((p == t).mean()),
    }


def confusion(pred: ArrayLike, true: ArrayLike, mask: ArrayLike | None = None) -> np.ndarray:
    """8 x 8 confusion counts (int64): rows = true class, columns = predicted class."""
    p, t = _classes(pred, true, mask)
    out = np.zeros((N_EXPR_CLASSES, N_EXPR_CLASSES), dtype=np.int64)
    np.add.at(out, (t, p), 1)
    return out
