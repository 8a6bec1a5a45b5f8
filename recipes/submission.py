"""ABAW challenge submission files: every template row filled, in the template's order.

A submission is one text file per challenge track (VA or EXPR): a header line, then one row
per test frame, first column ``image_location`` = ``<track>/<NNNNN>.jpg`` (frame numbers are
1-based, matching ``cropped_aligned`` image names):

* VA: ``image_location,valence,arousal`` then ``video1/00001.jpg,0.125000,-0.300000``;
* EXPR: ``image_location,Neutral,Anger,...,Other`` then ``video1/00001.jpg,4`` (one class index
  per row although the header lists 8 names).

The rows come from the organisers' template (or from a plain test-track list through
:meth:`emofeat_recipes.datasets.affwild2.AffWild2.test_rows`).
"""

from __future__ import annotations

import os
import warnings
from collections.abc import Mapping, Sequence
from pathlib import Path

import numpy as np

from emofeat import EmofeatError
from emofeat_recipes.datasets.affwild2 import (
    LENGTH_TOLERANCE,
    DatasetWarning,
    normalize_task,
    official_header,
    read_template,
    sniff_task,
)

__all__ = ["SubmissionError", "fill_nearest", "read_template", "write_submission"]

N_CLASSES = 8


class SubmissionError(EmofeatError, ValueError):
    """A submission cannot be written as asked (nothing is written)."""


def fill_nearest(values: np.ndarray, valid: np.ndarray, n: int) -> np.ndarray:
    """Values for positions ``0..n-1``: each position takes the nearest valid value.

    Positions past the end of ``values`` count as missing. On a tie the earlier frame wins.

    Args:
        values: ``(m, ...)`` per-frame values.
        valid: ``(m,)`` bool, True where the value may be used.
        n: number of positions wanted.

    Raises:
        SubmissionError: no valid value at all.
    """
    good = np.flatnonzero(valid)
    if good.size == 0:
        raise SubmissionError("no valid prediction to fill from")
    idx = np.arange(n)
    right = np.clip(np.searchsorted(good, idx), 0, good.size - 1)
    left = np.clip(right - 1, 0, good.size - 1)
    take_left = np.abs(idx - good[left]) <= np.abs(good[right] - idx)
    return values[np.where(take_left, good[left], good[right])]


def _prepare(track: str, pred: object, task: str) -> tuple[np.ndarray, np.ndarray]:
    """Per-frame values (VA: (n, 2) float; EXPR: (n,) int) and which frames are usable."""
    a = np.asarray(pred)
    if task == "VA":
        if a.ndim != 2 or a.shape[1] != 2:
            raise SubmissionError(f"track {track!r}: VA predictions must be (n, 2), got {a.shape}")
        a = a.astype(np.float64)
        valid = np.isfinite(a).all(axis=1)
        return np.clip(np.nan_to_num(a), -1.0, 1.0), valid
    if a.ndim == 2:  # class scores: one decision per frame
        if a.shape[1] != N_CLASSES:
            raise SubmissionError(
                f"track {track!r}: EXPR scores must be (n, {N_CLASSES}), got {a.shape}"
            )
        a = a.astype(np.float64)
        valid = np.isfinite(a).all(axis=1)
        return np.nan_to_num(a, nan=-np.inf).argmax(axis=1).astype(np.int64), valid
    if a.ndim != 1:
        raise SubmissionError(
            f"track {track!r}: EXPR predictions must be (n,) or (n, {N_CLASSES}), got {a.shape}"
        )
    af = a.astype(np.float64)
    finite = np.isfinite(af)
    valid = finite & (af != -1)  # -1 (as in the labels) = no prediction for that frame
    bad = finite & (af != -1) & ((af < 0) | (af >= N_CLASSES) | (af != np.round(af)))
    if bad.any():
        k = int(np.flatnonzero(bad)[0])
        raise SubmissionError(
            f"track {track!r}: EXPR prediction {a[k].item()!r} at frame {k + 1} is not a class 0..7"
        )
    return np.where(valid, af, 0).astype(np.int64), valid


def write_submission(
    template: str | os.PathLike | Sequence[tuple[str, int]],
    predictions: Mapping[str, np.ndarray],
    out: str | os.PathLike,
    task: str,
) -> Path:
    """Write a challenge submission that fills every template row in order.

    Args:
        template: the organisers' template file, or ``(track, frame)`` rows (1-based frames,
            e.g. from ``AffWild2.test_rows``; the official header is written then).
        predictions: track name -> per-frame predictions, row ``k - 1`` = frame ``k``.
            VA: ``(n, 2)`` (valence, arousal), NaN rows = missing. EXPR: ``(n,)`` class
            indices (-1 = missing) or ``(n, 8)`` scores (argmax taken; NaN rows = missing).
        out: the file to write (its folder is created).
        task: ``"VA"`` or ``"EXPR"``.

    A frame past the end of a track's predictions, or a missing one, gets the nearest
    available prediction of that track. VA values are clipped to [-1, 1].

    Returns:
        ``out`` as a Path.

    Raises:
        SubmissionError: the template is for the other task, template tracks have no
            predictions (all are named), or the rows written would not match the template's
            count. Nothing is written then.
        AnnotationError: the template file is malformed (file and line named).
    """
    task = normalize_task(task)
    out = Path(out)
    if isinstance(template, (str, os.PathLike)):
        header, rows = read_template(template)
        got = sniff_task(",".join(header))
        if got is not None and got != task:
            raise SubmissionError(f"{template}: a {got} template, but task is {task}")
        if len(header) < 2:  # a bare 'image_location' line: write the official one
            header = official_header(task)
        source = str(template)
    else:
        rows = [(str(t), int(f)) for t, f in template]
        header = official_header(task)
        source = "the given rows"
    if not rows:
        raise SubmissionError(f"{source}: no rows to fill")

    need: dict[str, int] = {}
    for track, frame in rows:
        need[track] = max(need.get(track, 0), frame)
    absent = [t for t in need if t not in predictions]
    empty: list[str] = []
    filled: dict[str, np.ndarray] = {}
    short: list[str] = []
    for track, n in need.items():
        if track in absent:
            continue
        values, valid = _prepare(track, predictions[track], task)
        if not valid.any():
            empty.append(track)
            continue
        if n - len(values) > LENGTH_TOLERANCE:
            short.append(f"{track} ({len(values)} predicted, {n} in template)")
        filled[track] = fill_nearest(values, valid, n)
    if absent or empty:
        parts = []
        if absent:
            parts.append(f"no predictions for {len(absent)} track(s): {_names(absent)}")
        if empty:
            parts.append(f"only missing values for {len(empty)} track(s): {_names(empty)}")
        raise SubmissionError(f"{source}: {'; '.join(parts)}; nothing written to {out}")
    if short:
        warnings.warn(
            f"{out}: predictions shorter than the template, last frames filled: {_names(short)}",
            DatasetWarning,
            stacklevel=2,
        )
    extra = [t for t in predictions if t not in need]
    if extra:
        warnings.warn(
            f"{out}: {len(extra)} predicted track(s) not in {source}, ignored: {_names(extra)}",
            DatasetWarning,
            stacklevel=2,
        )

    # format each track's values once (Python floats via tolist: ~3x faster than numpy scalars)
    if task == "VA":
        text = {t: [f"{v:.6f},{a:.6f}" for v, a in f.tolist()] for t, f in filled.items()}
    else:
        text = {t: [str(k) for k in f.tolist()] for t, f in filled.items()}
    lines = [",".join(header)]
    lines.extend(f"{track}/{frame:05d}.jpg,{text[track][frame - 1]}" for track, frame in rows)
    if len(lines) - 1 != len(rows):  # defensive: the contract is one line per template row
        raise SubmissionError(f"{out}: {len(lines) - 1} rows built for {len(rows)} template rows")

    out.parent.mkdir(parents=True, exist_ok=True)
    tmp = out.with_name(f".{out.name}.tmp{os.getpid()}")
    try:
        with open(tmp, "w", encoding="utf-8", newline="\n") as f:
            f.write("\n".join(lines))
            f.write("\n")
        os.replace(tmp, out)  # atomic: a reader sees the old file or the complete new one
    finally:
        if tmp.exists():
            tmp.unlink()
    return out


def _names(names: list[str], limit: int = 20) -> str:
    shown = ", ".join(names[:limit])
    return shown + (f" and {len(names) - limit} more" if len(names) > limit else "")
