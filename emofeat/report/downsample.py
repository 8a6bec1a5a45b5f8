"""Downsampling for the report page: fixed buckets of consecutive frames (docs/report.md).

A timeline of ``n`` frames is cut into buckets of ``k = ceil(n / max_points)`` consecutive
frames (the last bucket may be shorter). Each bucket becomes one point at the time of its
first frame, holding the mean, minimum and maximum of the bucket's *valid* values (mask True
and finite) and the share of its frames whose mask is True. A bucket without a valid value
holds no value (a gap in the line). ``k = 1`` keeps every frame as it is.

Everything here works block by block (blocks of whole buckets), so an hour of a 1280-wide
embedding is never held in memory at once.
"""

from __future__ import annotations

import math
from dataclasses import dataclass, field

import numpy as np

__all__ = ["BucketStats", "HeatmapStats", "bucket_size", "quantise_heatmap", "to_json_numbers"]


def bucket_size(n: int, max_points: int) -> int:
    """Frames per bucket so that ``n`` frames give at most ``max_points`` points (>= 1)."""
    if max_points < 1:
        raise ValueError(f"max_points must be at least 1, got {max_points}")
    return max(1, math.ceil(n / max_points))


def n_buckets(n: int, k: int) -> int:
    """Buckets of ``k`` frames covering ``n`` frames."""
    return math.ceil(n / k) if n else 0


def _reduce(values: np.ndarray, mask: np.ndarray, k: int) -> tuple[np.ndarray, ...]:
    """``(count, sum, min, max, mask_count, frames)`` per bucket of ``k`` rows of ``values``
    (``(n, d)``), over the rows where ``mask`` is True and the value is finite."""
    n, d = values.shape
    nb = n_buckets(n, k)
    pad = nb * k - n
    v = values.astype(np.float64, copy=False)
    m = mask.astype(bool, copy=False)
    if pad:
        v = np.concatenate([v, np.full((pad, d), np.nan)])
        m = np.concatenate([m, np.zeros(pad, bool)])
    v = v.reshape(nb, k, d)
    m = m.reshape(nb, k)
    ok = m[:, :, None] & np.isfinite(v)
    count = ok.sum(axis=1)
    total = np.where(ok, v, 0.0).sum(axis=1)
    lo = np.where(ok, v, np.inf).min(axis=1)
    hi = np.where(ok, v, -np.inf).max(axis=1)
    frames = np.full(nb, k)
    if pad:
        frames[-1] = k - pad
    return count, total, lo, hi, m.sum(axis=1), frames


@dataclass
class BucketStats:
    """Mean, minimum, maximum per bucket of selected columns, fed block by block.

    Feed blocks whose first frame is a multiple of ``k`` (:meth:`add`), then read
    :meth:`mean`, :meth:`min`, :meth:`max` (``(buckets, columns)``, NaN for a bucket without
    a valid value) and :meth:`valid` (share of each bucket's frames whose mask is True).
    """

    k: int
    columns: int
    _parts: list[tuple[np.ndarray, ...]] = field(default_factory=list)

    def add(self, values: np.ndarray, mask: np.ndarray) -> None:
        """One block: ``values`` ``(rows, columns)``, ``mask`` ``(rows,)``."""
        if len(values):
            self._parts.append(_reduce(values.reshape(len(values), -1), mask, self.k))

    def _cat(self, i: int) -> np.ndarray:
        if not self._parts:
            return np.zeros((0, self.columns)) if i < 4 else np.zeros(0)
        return np.concatenate([p[i] for p in self._parts])

    def count(self) -> np.ndarray:
        """Valid values per bucket and column."""
        return self._cat(0)

    def mean(self) -> np.ndarray:
        count = self._cat(0)
        with np.errstate(invalid="ignore", divide="ignore"):
            return np.where(count > 0, self._cat(1) / np.maximum(count, 1), np.nan)

    def min(self) -> np.ndarray:
        return np.where(self._cat(0) > 0, self._cat(2), np.nan)

    def max(self) -> np.ndarray:
        return np.where(self._cat(0) > 0, self._cat(3), np.nan)

    def valid(self) -> np.ndarray:
        """Share of each bucket's frames whose mask is True, in [0, 1]."""
        if not self._parts:
            return np.zeros(0)
        return self._cat(4) / self._cat(5)


class HeatmapStats:
    """A wide stream reduced for a heatmap: bucket means of every column plus each column's
    mean and standard deviation over all valid frames (one pass, block by block).

    :meth:`image` keeps the ``rows`` columns of highest variance (in their stored order) and
    gives each bucket mean as a z-score of its column: ``(mean - column mean) / column std``.
    """

    def __init__(self, k: int, columns: int) -> None:
        self.k = k
        self.columns = columns
        self._buckets = BucketStats(k, columns)
        self._n = np.zeros(columns)
        self._sum = np.zeros(columns)
        self._sq = np.zeros(columns)

    def add(self, values: np.ndarray, mask: np.ndarray) -> None:
        """One block (first frame a multiple of ``k``)."""
        self._buckets.add(values, mask)
        v = values.astype(np.float64, copy=False)
        ok = mask[:, None] & np.isfinite(v)
        self._n += ok.sum(axis=0)
        self._sum += np.where(ok, v, 0.0).sum(axis=0)
        self._sq += np.where(ok, v * v, 0.0).sum(axis=0)

    def image(self, rows: int) -> tuple[np.ndarray, np.ndarray]:
        """``(columns kept (indices, ascending), z-scores (len(kept), buckets))``; NaN where a
        bucket has no valid value. A column without variance has z-score 0."""
        n = np.maximum(self._n, 1)
        mean = self._sum / n
        var = np.maximum(self._sq / n - mean**2, 0.0)
        var = np.where(self._n > 0, var, -1.0)
        order = np.argsort(-var, kind="stable")[: min(rows, self.columns)]
        keep = np.sort(order)
        sd = np.sqrt(np.maximum(var[keep], 0.0))
        bucket_mean = self._buckets.mean()[:, keep]
        with np.errstate(invalid="ignore", divide="ignore"):
            z = np.where(sd > 0, (bucket_mean - mean[keep]) / np.where(sd > 0, sd, 1.0), 0.0)
        z = np.where(np.isfinite(bucket_mean), z, np.nan)
        return keep, z.T


HEAT_CLIP = 3.0
"""Heatmap z-scores are clipped to [-3, 3] before quantising."""


def quantise_heatmap(z: np.ndarray) -> np.ndarray:
    """z-scores to bytes: ``round((clip(z, -3, 3) + 3) / 6 * 254)`` (0..254); 255 where NaN."""
    q = np.round((np.clip(z, -HEAT_CLIP, HEAT_CLIP) + HEAT_CLIP) / (2 * HEAT_CLIP) * 254)
    return np.where(np.isfinite(z), q, 255).astype(np.uint8)


def to_json_numbers(values: np.ndarray, digits: int = 5) -> list[float | None]:
    """Values as JSON numbers with ``digits`` significant digits; NaN and infinity as null."""
    out: list[float | None] = []
    fmt = f"%.{digits}g"
    for v in np.asarray(values, dtype=np.float64).ravel().tolist():
        out.append(float(fmt % v) if math.isfinite(v) else None)
    return out
