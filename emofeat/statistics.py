"""Statistics over windows of frames: the one implementation behind every "functionals".

The ``functionals`` extractor (sliding windows over a stored stream) and the recipes'
functionals + Kernel ELM family (windows of a track's features) compute the same statistics
with the same definitions, here:

* ``mean``, ``std`` (population), ``min``, ``max``, ``range`` (max - min);
* ``median``, ``p10``, ``p25``, ``p75``, ``p90`` (numpy's linear percentiles), ``iqr``
  (p75 - p25); ``p50`` is accepted for ``median``;
* ``slope``: the least-squares slope per second against the frames' times (0 with fewer than
  two valid frames);
* ``first``, ``last``: the first and last valid frame.

Output order is stat-major: all dimensions of the first statistic, then the second, ...
A window without any valid frame gives a row of NaN.
"""

from __future__ import annotations

import warnings
from collections.abc import Callable, Sequence
from typing import Any

import numpy as np

STATS: tuple[str, ...] = (
    "mean",
    "std",
    "min",
    "max",
    "range",
    "median",
    "p10",
    "p25",
    "p75",
    "p90",
    "iqr",
    "slope",
    "first",
    "last",
)


def check_stats(stats: Sequence[str]) -> list[str]:
    """The statistics' canonical names (``p50`` -> ``median``).

    Raises:
        ValueError: an unknown statistic, or none at all (the message lists the choices).
    """
    names = ["median" if s == "p50" else str(s) for s in stats]
    bad = [s for s in names if s not in STATS]
    if bad or not names:
        raise ValueError(
            f"unknown statistic {bad[0] if bad else '(none given)'}; choose from "
            f"{', '.join(STATS)} (or p50)"
        )
    return names


def window_statistics(
    windows: np.ndarray,
    valid: np.ndarray | None = None,
    stats: Sequence[str] = ("mean", "std", "min", "max"),
    times: np.ndarray | None = None,
) -> np.ndarray:
    """Statistics over the valid frames of each window: ``(W, L, D)`` -> ``(W, D * len(stats))``.

    Args:
        windows: ``W`` windows of ``L`` frames of ``D`` dimensions.
        valid: ``(W, L)`` frames to use (None: all); frames holding NaN or inf are left out
            too.
        stats: names from :data:`STATS` (``p50`` for ``median``).
        times: frame times in seconds for ``slope``: ``(W, L)`` or ``(L,)``; None: frame
            ``k`` is at ``k`` seconds (slope per frame).

    Returns:
        float64 array, stat-major; NaN rows for windows without a valid frame.
    """
    x = np.asarray(windows, dtype=np.float64)
    if x.ndim != 3:
        raise ValueError(f"window_statistics: expected (W, L, D) windows, got shape {x.shape}")
    w_count, length, d = x.shape
    names = check_stats(stats)
    finite = np.isfinite(x).all(axis=2)
    v = finite if valid is None else np.asarray(valid, dtype=bool) & finite
    if v.shape != (w_count, length):
        raise ValueError(f"window_statistics: valid has shape {v.shape}, expected {x.shape[:2]}")
    if times is None:
        t = np.broadcast_to(np.arange(length, dtype=np.float64), (w_count, length))
    else:
        t = np.broadcast_to(np.asarray(times, dtype=np.float64), (w_count, length))
    if length == 0:
        return np.full((w_count, d * len(names)), np.nan)
    dense = bool(v.all())
    if dense:
        xm, tm, ops = x, t, _PLAIN
    else:
        xm, tm, ops = np.where(v[:, :, None], x, np.nan), np.where(v, t, np.nan), _NAN_AWARE
    empty = ~v.any(axis=1)
    pct: dict[float, np.ndarray] = {}

    def percentile(q: float) -> np.ndarray:
        if q not in pct:
            pct[q] = ops["percentile"](xm, q, axis=1)
        return pct[q]

    if dense:
        out = [_one(s, xm, tm, v, x, ops, percentile) for s in names]
        return np.concatenate(out, axis=1)
    out = []
    # all-NaN windows give NaN rows by design; silence numpy's "empty slice" warnings
    with warnings.catch_warnings(), np.errstate(invalid="ignore", divide="ignore"):
        warnings.simplefilter("ignore", RuntimeWarning)
        for s in names:
            val = np.array(_one(s, xm, tm, v, x, ops, percentile), dtype=np.float64)
            val[empty] = np.nan
            out.append(val)
    return np.concatenate(out, axis=1)


# numpy's plain reductions when every frame is valid (faster, same values), else NaN-aware
_PLAIN: dict[str, Any] = {
    "mean": np.mean,
    "std": np.std,
    "min": np.min,
    "max": np.max,
    "sum": np.sum,
    "percentile": np.percentile,
}
_NAN_AWARE: dict[str, Any] = {
    "mean": np.nanmean,
    "std": np.nanstd,
    "min": np.nanmin,
    "max": np.nanmax,
    "sum": np.nansum,
    "percentile": np.nanpercentile,
}


def _one(
    s: str,
    xm: np.ndarray,
    tm: np.ndarray,
    v: np.ndarray,
    x: np.ndarray,
    ops: dict[str, Any],
    percentile: Callable[[float], np.ndarray],
) -> np.ndarray:
    """One statistic over axis 1 of ``xm`` (``(W, L, D)``) with the reductions ``ops``."""
    if s in ("mean", "std", "min", "max"):
        return ops[s](xm, axis=1)
    if s == "range":
        return ops["max"](xm, axis=1) - ops["min"](xm, axis=1)
    if s == "median":
        return percentile(50.0)
    if s in ("p10", "p25", "p75", "p90"):
        return percentile(float(s[1:]))
    if s == "iqr":
        return percentile(75.0) - percentile(25.0)
    if s == "slope":
        tc = tm - ops["mean"](tm, axis=1, keepdims=True)
        xc = xm - ops["mean"](xm, axis=1, keepdims=True)
        denom = ops["sum"](tc**2, axis=1)
        num = ops["sum"](tc[:, :, None] * xc, axis=1)
        safe = np.where(denom > 0, denom, 1.0)[:, None]
        return np.where(denom[:, None] > 0, num / safe, 0.0)
    length = v.shape[1]
    pos = v.argmax(axis=1) if s == "first" else length - 1 - v[:, ::-1].argmax(axis=1)
    return x[np.arange(x.shape[0]), pos]
