"""Timeline: the one rule that puts every extractor's rows onto an input's frame grid.

**The alignment rule** (``nearest-centre-covering-v2``, recorded in every item file as its
``alignment`` attribute). Frame ``k`` covers ``[start_k, end_k)`` seconds and is represented
by its centre ``c_k``. It takes the values of the native row whose centre
``(row_start + row_end) / 2`` is nearest to ``c_k``. The frame is *valid* only if that row
covers ``c_k`` (``row_start <= c_k < row_end``) and the row itself is valid. A frame no
row covers gets NaN values and is invalid.

**Ties.** Rows whose centres are equally near ``c_k`` are tied. *A row that covers the
frame's centre wins the tie*; among several covering rows, or when none of them covers,
the earlier row wins (the earlier centre, then the row listed first). The typical tie is a
frame centred exactly on the boundary between two contiguous windows (0.25 s windows on a
30 fps video: frame 7 is centred at 0.25 s): it takes the window that starts there. Only
ties are decided by coverage: a nearer row wins even when it does not cover the frame and a
farther one does (the frame is then invalid).

**Rounding.** Times are float seconds, so "equal" means within :data:`TIE_TOLERANCE`
(1 ns): distances that differ by less are a tie, and a centre that close to a row's start or
end counts as on it (``row_start - tol <= c_k < row_end - tol``). A boundary frame thus
takes the window starting there even when rounding put its centre 1e-17 s early, or left
the windows (``end = start + win``) an ulp apart or overlapping.

The previous rule, ``nearest-centre-covering-v1``, sent every tie to the earlier row even
when that row did not cover the frame: contiguous windows lost each frame centred on a
boundary (40 of 600 frames for 0.25 s windows at 30 fps).

Why this rule: it is exact for per-frame extractors (each frame finds itself), keeps
dense low-level descriptors at their own time resolution (no averaging across frames),
maps overlapping windows (4 s windows, 0.5 s hop) to the window centred on the frame,
leaves no frame of contiguous windows uncovered, and never invents a value outside the
span an extractor actually saw.
"""

from __future__ import annotations

import numpy as np

TIE_TOLERANCE = 1e-9
"""Seconds: distances to a frame centre that differ by at most this are a tie, and a frame
centre this close to a row's start or end counts as on it."""


def align_to_frames(
    row_starts: np.ndarray,
    row_ends: np.ndarray,
    frame_starts: np.ndarray,
    frame_ends: np.ndarray,
    row_valid: np.ndarray | None = None,
) -> tuple[np.ndarray, np.ndarray]:
    """Pick, for every frame, the native row it takes its values from.

    Args:
        row_starts: start of each native row in seconds, shape ``(n,)``, non-decreasing
            centres expected (rows are sorted by the engine).
        row_ends: end of each native row in seconds, shape ``(n,)``.
        frame_starts: start of each frame in seconds, shape ``(m,)``.
        frame_ends: end of each frame in seconds, shape ``(m,)``.
        row_valid: validity of each native row (``None``: all valid).

    Returns:
        ``(index, valid)``: for each frame the row index (``-1`` where no row covers the
        frame) and whether the frame's value is valid.
    """
    row_starts = np.asarray(row_starts, dtype=np.float64)
    row_ends = np.asarray(row_ends, dtype=np.float64)
    centres = (np.asarray(frame_starts, np.float64) + np.asarray(frame_ends, np.float64)) / 2
    m = len(centres)
    n = len(row_starts)
    if n == 0:
        return np.full(m, -1, dtype=np.int64), np.zeros(m, dtype=bool)
    row_centres = (row_starts + row_ends) / 2
    order = None
    starts, ends = row_starts, row_ends
    if np.any(np.diff(row_centres) < 0):
        order = np.argsort(row_centres, kind="stable")
        row_centres, starts, ends = row_centres[order], starts[order], ends[order]
    right = np.searchsorted(row_centres, centres, side="left")
    left = np.clip(right - 1, 0, n - 1)
    right = np.clip(right, 0, n - 1)
    nearest = np.minimum(np.abs(centres - row_centres[left]), np.abs(row_centres[right] - centres))
    # the tied candidates: every row whose centre is (within the tolerance) as near as the
    # nearest one, a contiguous range [lo, hi) of the rows sorted by centre
    reach = nearest + TIE_TOLERANCE
    lo = np.searchsorted(row_centres, centres - reach, side="left")
    hi = np.searchsorted(row_centres, centres + reach, side="right")
    # the first candidate that covers the frame's centre wins, else the first candidate;
    # one pass per candidate position, over the frames still undecided (usually one or two
    # passes: ties are between two rows). Runs of identical rows are checked once.
    first = np.flatnonzero(np.r_[True, (starts[1:] != starts[:-1]) | (ends[1:] != ends[:-1])])
    following = np.append(first[1:], n)
    next_distinct = np.repeat(following, following - first)  # row -> first row of the next run
    # coverage at the tolerance's resolution: a centre that is within rounding of a row's
    # start or end counts as on it (so it belongs to the row starting there), so that rows
    # meant to be contiguous but 1 ulp apart (end = start + win) still leave no gap
    starts = starts - TIE_TOLERANCE
    ends = ends - TIE_TOLERANCE
    pick = lo
    covered = (starts[pick] <= centres) & (centres < ends[pick])
    todo = np.flatnonzero(~covered & (next_distinct[pick] < hi))
    pos = next_distinct[pick[todo]]
    while todo.size:
        c = centres[todo]
        hit = (starts[pos] <= c) & (c < ends[pos])
        pick[todo[hit]] = pos[hit]
        covered[todo[hit]] = True
        pos = next_distinct[pos]
        more = ~hit & (pos < hi[todo])
        todo, pos = todo[more], pos[more]
    if order is not None:
        pick = order[pick]
    index = np.where(covered, pick, -1).astype(np.int64)
    valid = covered.copy()
    if row_valid is not None:
        rv = np.asarray(row_valid, dtype=bool)
        valid &= rv[pick]
    return index, valid


def gather_rows(data: np.ndarray, index: np.ndarray, fill: float = np.nan) -> np.ndarray:
    """Rows of ``data`` picked by ``index`` (``-1`` gives a row of ``fill``)."""
    out = np.full((len(index),) + data.shape[1:], fill, dtype=np.float32)
    ok = index >= 0
    if ok.any():
        out[ok] = data[index[ok]]
    return out
