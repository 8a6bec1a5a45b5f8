"""Timeline: the one rule that puts every extractor's rows onto an input's frame grid.

**The alignment rule.** Frame ``k`` covers ``[start_k, end_k)`` seconds and is represented
by its centre ``c_k``. It takes the values of the native row whose centre
``(row_start + row_end) / 2`` is nearest to ``c_k`` (on a tie, the earlier row). The frame
is *valid* only if that row covers ``c_k`` (``row_start <= c_k < row_end``) and the row
itself is valid. A frame no row covers gets NaN values and is invalid.

Why this rule: it is exact for per-frame extractors (each frame finds itself), keeps
dense low-level descriptors at their own time resolution (no averaging across frames),
maps overlapping windows (4 s windows, 0.5 s hop) to the window centred on the frame, and
never invents a value outside the span an extractor actually saw.
"""

from __future__ import annotations

import numpy as np


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
    if len(row_starts) == 0:
        return np.full(m, -1, dtype=np.int64), np.zeros(m, dtype=bool)
    row_centres = (row_starts + row_ends) / 2
    order = None
    if np.any(np.diff(row_centres) < 0):
        order = np.argsort(row_centres, kind="stable")
        row_centres = row_centres[order]
    right = np.searchsorted(row_centres, centres, side="left")
    left = np.clip(right - 1, 0, len(row_centres) - 1)
    right = np.clip(right, 0, len(row_centres) - 1)
    # tie -> earlier row (left)
    pick = np.where(
        np.abs(centres - row_centres[left]) <= np.abs(row_centres[right] - centres), left, right
    )
    # rows sharing the picked centre are tied too: take the first of them (the earliest row)
    pick = np.searchsorted(row_centres, row_centres[pick], side="left")
    if order is not None:
        pick = order[pick]
    covered = (row_starts[pick] <= centres) & (centres < row_ends[pick])
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
