"""Masking: an item's rows made invalid where another item's 0/1 stream is off.

This is the common ``mask`` setting (``--set NAME.mask=SOURCE[.STREAM]``, ``NAME.mask_min``):
the engine applies it to a staged, not yet committed item file once the mask source's item
exists (made in the same run, or already in the store). Committed items never change.
The rule is described in docs/audio.md (voice activity and masking) and docs/store.md.
"""

from __future__ import annotations

import json
from pathlib import Path
from typing import Any

import numpy as np

from emofeat.config import split_mask
from emofeat.errors import EmofeatError
from emofeat.itemfile import (
    GuardedFile,
    ItemRef,
    item_attrs_of,
    open_h5,
    open_item,
    read_attrs,
    valid_rows,
)
from emofeat.timeline import align_to_frames


def mask_streams(ref: ItemRef) -> list[tuple[str, int]]:
    """``(stream, dims)`` of an item in the extractor's declared order."""
    with open_item(ref) as f:
        names = [n for n in f.keys() if n != "frames"]
        declared = item_attrs_of(f).get("streams") or []
        ordered = [n for n in declared if n in names] + sorted(set(names) - set(declared))
        return [(n, int(f[n]["data"].shape[1])) for n in ordered]


def _active_spans(starts: np.ndarray, ends: np.ndarray) -> tuple[np.ndarray, np.ndarray]:
    """Union of spans as sorted, disjoint ``[a, b)`` (touching spans merged)."""
    keep = ends > starts
    starts, ends = starts[keep], ends[keep]
    if not len(starts):
        return np.zeros(0), np.zeros(0)
    order = np.argsort(starts, kind="stable")
    starts, ends = starts[order], ends[order]
    reach = np.maximum.accumulate(ends)
    # a new span begins where a start lies beyond everything reached before it
    new = np.concatenate([[True], starts[1:] > reach[:-1]])
    first = np.flatnonzero(new)
    last = np.concatenate([first[1:] - 1, [len(starts) - 1]])
    return starts[first], reach[last]


def active_fraction(
    row_starts: np.ndarray, row_ends: np.ndarray, act_starts: np.ndarray, act_ends: np.ndarray
) -> np.ndarray:
    """Fraction of each row span ``[start, end)`` (seconds) covered by the active spans.

    Zero-length rows get 1.0 when their instant lies inside an active span, else 0.0.
    """
    a, b = _active_spans(np.asarray(act_starts, np.float64), np.asarray(act_ends, np.float64))
    s = np.asarray(row_starts, np.float64)
    e = np.asarray(row_ends, np.float64)
    if not len(a):
        return np.zeros(len(s))
    before = np.concatenate([[0.0], np.cumsum(b - a)])  # active length before span i

    def measure(t: np.ndarray) -> np.ndarray:  # active length in (-inf, t)
        i = np.searchsorted(a, t, side="right")  # spans starting at or before t
        j = np.maximum(i - 1, 0)
        inside = np.clip(t - a[j], 0.0, b[j] - a[j])
        return before[j] + np.where(i > 0, inside, 0.0)

    length = e - s
    frac = (measure(e) - measure(s)) / np.where(length > 0, length, 1.0)
    i = np.maximum(np.searchsorted(a, s, side="right") - 1, 0)
    point = (a[i] <= s) & (s < b[i])
    return np.where(length > 0, np.clip(frac, 0.0, 1.0), point.astype(np.float64))


def mask_item(
    path: Path, source: ItemRef, stream: str, mask_min: float, record: dict[str, Any] | None = None
) -> dict[str, int]:
    """Invalidate the rows of a staged item where a mask source's stream is not active.

    The source stream (one dimension) is *active* over the spans of its valid native rows
    whose value is >= 0.5. Each native row of every stream of the item at ``path`` stays
    valid only if at least ``mask_min`` of its ``[start, end)`` span is active; each frame
    of the aligned view stays valid only if its native row does and the source's value on
    that frame (the source's rows aligned onto this item's frames by the timeline rule) is
    >= 0.5 and valid. Native times are used throughout, so sources of another modality
    (video-frame streams masking audio rows, or the reverse) work.

    The file is rewritten in place (masks only; data are kept, so ``apply_mask=False``
    still shows them), then fsynced. Only for staging files: committed items never change.

    Args:
        path: the staged item file to mask.
        source: the mask source's item file (staged or committed).
        stream: the source's one-dimensional stream.
        mask_min: fraction (0-1] of a native row's span that must be active.
        record: provenance of the mask, stored as the JSON root attribute ``mask`` together
            with ``rows_masked``.

    Returns:
        ``{stream: rows newly made invalid}``.
    """
    with open_item(source) as f:
        g = f[stream]
        times = g["times"][:]
        on = valid_rows(g, "mask") & (g["data"][:, 0] >= 0.5)  # NaN compares False: inactive
    masked: dict[str, int] = {}
    guard = GuardedFile(path, "r+")
    with open_h5(guard, "r+") as f:
        frames = f["frames/times"][:]
        index, valid = align_to_frames(times[:, 0], times[:, 1], frames[:, 0], frames[:, 1])
        frame_on = valid & np.where(index >= 0, on[np.maximum(index, 0)], False)
        for name in [n for n in f.keys() if n != "frames"]:
            g = f[name]
            rt = g["times"][:]
            old = g["mask"][:]
            new = old & (
                active_fraction(rt[:, 0], rt[:, 1], times[on, 0], times[on, 1]) >= mask_min - 1e-9
            )
            row = g["aligned/row"][:]
            aligned = g["aligned/mask"][:] & frame_on
            aligned &= np.where(row >= 0, new[np.maximum(row, 0)], False)
            if len(new):
                g["mask"][:] = new
            if len(aligned):
                g["aligned/mask"][:] = aligned
            g.attrs["coverage"] = float(aligned.mean()) if len(aligned) else 0.0
            masked[name] = int(old.sum() - new.sum())
        if record is not None:
            f.attrs["mask"] = json.dumps({**record, "rows_masked": masked})
    guard.sync_and_close()  # StoreWriteError if the disk filled up meanwhile
    return masked


def _mask_stream(setting: str, extractor: str, stream: str, streams: list[tuple[str, int]]) -> str:
    """The source stream a mask setting names, or the source's first one-dimensional stream.

    Raises:
        EmofeatError: no such stream, or it is not one-dimensional.
    """
    dims = dict(streams)
    listed = ", ".join(n for n, _ in streams) or "none"
    if not stream:
        stream = next((n for n, d in streams if d == 1), "")
        if not stream:
            raise EmofeatError(
                f"{setting}: the {extractor!r} item has no one-dimensional stream to "
                f"mask with (streams: {listed})"
            )
    elif stream not in dims:
        raise EmofeatError(
            f"{setting}: the {extractor!r} item has no stream {stream!r} (streams: {listed})"
        )
    elif dims[stream] != 1:
        raise EmofeatError(
            f"{setting}: stream {extractor}.{stream} has {dims[stream]} dimensions; "
            "a mask needs one (0/1 values)"
        )
    return stream


def apply_mask(
    name: str, config: dict[str, Any], target: Path, source: ItemRef, origin: str
) -> dict[str, int]:
    """Apply extractor ``name``'s ``mask`` setting to its staged item file ``target``.

    Args:
        name: the masked extractor.
        config: its settings (``mask``, optional ``mask_min``: a fraction in (0, 1]).
        target: its staged item file (rewritten in place).
        source: the mask source's item file (staged in this run, or committed).
        origin: where the source came from, recorded in the ``mask`` attribute
            (``"this run"`` or ``"store"``).

    Returns:
        ``{stream: rows newly made invalid}`` (see :func:`mask_item`).

    Raises:
        EmofeatError: the message says what is wrong, starting with ``NAME.mask=VALUE``.
    """
    setting = f"{name}.mask={config['mask']}"
    extractor, stream = split_mask(config["mask"])
    try:
        stream = _mask_stream(setting, extractor, stream, mask_streams(source))
        record = {
            "extractor": extractor,
            "stream": stream,
            "item_id": read_attrs(source).get("item_id", ""),
            "mask_min": float(config.get("mask_min", 0.5)),
            "source": origin,
        }
        return mask_item(target, source, stream, record["mask_min"], record)
    except EmofeatError:
        raise
    except Exception as exc:
        raise EmofeatError(f"{setting}: masking failed ({type(exc).__name__}: {exc})") from exc
