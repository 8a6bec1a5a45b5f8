"""What the store page shows, read through the public store API (``open_store``).

Streams are picked by their metadata, not by extractor name (docs/report.md has the rules):
column names decide whether a stream is an expression timeline, a valence/arousal timeline,
a face box (face presence), voice activity, loudness or pitch; a stream of at most
:data:`NARROW` columns gets a plain timeline, a stream of at least :data:`WIDE` columns a
heatmap. Every stream's mask goes into the input's coverage chart.
"""

from __future__ import annotations

import base64
import math
import re
from collections.abc import Iterable
from pathlib import Path
from typing import Any

import numpy as np

from emofeat.report.downsample import (
    BucketStats,
    HeatmapStats,
    bucket_size,
    quantise_heatmap,
    to_json_numbers,
)

NARROW = 8
"""A stream of at most this many columns that no other rule picks gets a plain timeline."""

WIDE = 32
"""A stream of at least this many columns (an embedding, functionals) gets a heatmap."""

EXPRESSION_NAMES = frozenset(
    {
        "neutral", "anger", "angry", "disgust", "disgusted", "fear", "fearful", "happiness",
        "happy", "sadness", "sad", "surprise", "surprised", "contempt", "other",
    }
)  # fmt: skip
"""Column names of expression classes (Aff-Wild2's 8, face-api.js's 7, lower-cased)."""

DIMENSIONS = ("valence", "arousal", "dominance")
"""Column names of a dimensional (valence/arousal) stream."""

_LOUDNESS = re.compile(r"loudness", re.IGNORECASE)
_PITCH = re.compile(r"^f0(?=[a-z_])|pitch", re.IGNORECASE)
_SPEECH = re.compile(r"speech|^vad$", re.IGNORECASE)
_BOX = ("x1", "y1", "x2", "y2")

_BLOCK_VALUES = 1 << 21
"""Values (floats) read per block: 8 MB of float32."""


def charts_for(labels: list[str], level: str) -> list[dict[str, Any]]:
    """The timelines a stream with these column names gets: ``{kind, columns, title}`` with
    ``columns`` indices into ``labels``. ``presence`` (a face box) plots the share of frames
    with a valid row, then the columns named."""
    lower = [str(x).lower() for x in labels]
    d = len(labels)
    out: list[dict[str, Any]] = []
    if d >= 5 and set(lower) <= EXPRESSION_NAMES:
        return [{"kind": "expression", "columns": list(range(d)), "title": "expression"}]
    dims = [i for i, x in enumerate(lower) if x in DIMENSIONS]
    if dims and len(dims) <= d and {"valence", "arousal"} & {lower[i] for i in dims}:
        out.append({"kind": "va", "columns": dims, "title": "valence / arousal"})
    if all(b in lower for b in _BOX):
        cols = [lower.index("score")] if "score" in lower else []
        out.append({"kind": "face", "columns": cols, "title": "face presence"})
    if d <= 4:
        speech = [i for i, x in enumerate(lower) if _SPEECH.search(x)]
        if speech:
            out.append({"kind": "vad", "columns": speech, "title": "voice activity"})
    if level == "frame":
        loud = [i for i, x in enumerate(labels) if _LOUDNESS.search(x)]
        if loud:
            out.append({"kind": "loudness", "columns": loud, "title": "loudness"})
        pitch = [i for i, x in enumerate(labels) if _PITCH.search(x)]
        if pitch:
            out.append({"kind": "pitch", "columns": pitch, "title": "pitch (F0)"})
    if not out and 1 <= d <= NARROW:
        out.append({"kind": "timeline", "columns": list(range(d)), "title": "timeline"})
    return out


def _provenance(attrs: dict[str, Any]) -> dict[str, Any]:
    source = attrs.get("source") or {}
    config = attrs.get("config") or {}
    return {
        "extractor_version": attrs.get("extractor_version"),
        "plugin": " ".join(
            str(x) for x in (attrs.get("plugin_package"), attrs.get("plugin_version")) if x
        ),
        "emofeat_version": attrs.get("emofeat_version"),
        "license": attrs.get("license"),
        "commercial_use": attrs.get("commercial_use"),
        "model_id": attrs.get("model_id") or "",
        "model_sha256": str(attrs.get("model_sha256") or "")[:16],
        "created": attrs.get("created"),
        "source": source.get("path"),
        "source_hash": str(source.get("hash") or "")[:24],
        "settings": config.get("settings") or {},
        "media": attrs.get("media") or {},
        "mask": attrs.get("mask") or None,
        "warnings": attrs.get("warnings") or [],
        "alignment": attrs.get("alignment"),
    }


def latest_problems(log: Iterable[dict[str, Any]]) -> list[dict[str, Any]]:
    """The latest ``skipped``/``failed`` outcome per input and extractor in a run log (an
    input-level outcome only where the input has no item outcome), oldest first."""
    latest: dict[tuple[str, str], dict[str, Any]] = {}
    for rec in log:
        if rec.get("event") in ("item", "input"):
            latest[(str(rec.get("input")), str(rec.get("extractor") or ""))] = rec
    with_items = {inp for inp, ex in latest if ex}
    return [
        {
            "input": inp,
            "key": r.get("key"),
            "extractor": ex,
            "status": r.get("status"),
            "message": r.get("message") or "",
            "time": r.get("time"),
        }
        for (inp, ex), r in latest.items()
        if r.get("status") in ("failed", "skipped") and (ex or inp not in with_items)
    ]


def _stream_table(store: Any, key: str, ex: str) -> list[dict[str, Any]]:
    """Per stream: name, rows, dims, frames, coverage, level (the index's description, or
    the item's streams when the index keeps none)."""
    meta = store.item_meta(key, ex)
    if meta is not None:
        return [dict(s) for s in meta["streams"]]
    out = []
    for name in store.streams(key, ex):
        sd = store.read(key, ex, name, aligned=True)
        out.append(
            {
                "name": name,
                "rows": None,
                "dims": len(sd.labels),
                "frames": len(sd.data),
                "coverage": float(sd.mask.mean()) if len(sd.mask) else 0.0,
                "level": "frame",
            }
        )
    return out


def input_data(
    store: Any,
    key: str,
    *,
    max_points: int,
    heat_columns: int,
    heat_rows: int,
    problems: list[dict[str, Any]],
) -> dict[str, Any]:
    """Everything the page shows of one input (see docs/report.md for the fields)."""
    items: list[dict[str, Any]] = []
    found: list[tuple[str, dict[str, Any], list[dict[str, Any]]]] = []
    issues = [p for p in problems if p.get("key") == key]
    for ex in store.extractors(key):
        why = store.check_item(key, ex)
        attrs = store.item_attrs(key, ex) if why is None else None
        if why is not None or attrs is None:
            why = why or "missing or incomplete"
            issues.append({"extractor": ex, "status": "damaged", "message": why})
            items.append({"extractor": ex, "status": "damaged", "problem": why, "streams": []})
            continue
        try:
            streams = _stream_table(store, key, ex)
        except (OSError, KeyError) as exc:
            issues.append({"extractor": ex, "status": "unreadable", "message": str(exc)})
            items.append({"extractor": ex, "status": "unreadable", "problem": str(exc)})
            continue
        order = attrs.get("streams") if isinstance(attrs.get("streams"), list) else []
        rank = {n: i for i, n in enumerate(order)}
        streams.sort(key=lambda s: (rank.get(s["name"], len(rank)), s["name"]))
        items.append(
            {"extractor": ex, "status": "complete", "streams": streams, **_provenance(attrs)}
        )
        found.append((ex, attrs, streams))
    out: dict[str, Any] = {
        "key": key,
        "items": items,
        "problems": issues,
        "grids": [],
        "charts": [],
        "heatmaps": [],
        "coverage": [],
    }
    # the frame grid of each item (items of one input made from different sources, e.g. a
    # crop folder and the video, may have different frame counts): read once per count,
    # from the item's narrowest stream
    grids: dict[int, int] = {}
    stored = store.stored_input(key)
    for ex, attrs, streams in found:
        n_item = (store.item_meta(key, ex) or {}).get("n_frames")
        if n_item is None or n_item not in grids:
            narrow = min(streams, key=lambda s: (int(s.get("dims") or 0), s["name"]))
            try:
                times = store.read(key, ex, narrow["name"], aligned=True).times
            except (OSError, KeyError) as exc:
                issues.append({"extractor": ex, "status": "unreadable", "message": str(exc)})
                continue
            n_item = len(times)
            if n_item not in grids:
                grids[n_item] = len(out["grids"])
                out["grids"].append(_grid(times, attrs, max_points, heat_columns))
                out["coverage"].append({"grid": grids[n_item], "series": []})
        g = grids[n_item]
        for s in streams:
            try:
                _stream(stored, ex, s, out["grids"][g], g, heat_rows, out)
            except (OSError, KeyError, ValueError) as exc:
                issues.append(
                    {"extractor": ex, "status": "unreadable", "message": f"{s['name']}: {exc}"}
                )
    main = out["grids"][0] if out["grids"] else {"frames": 0, "duration": 0.0, "k": 1}
    out.update(frames=main["frames"], duration=main["duration"], k=main["k"])
    out["fps"], out["media_kind"] = main.get("fps"), main.get("media_kind")
    return out


def _grid(
    times: np.ndarray, attrs: dict[str, Any], max_points: int, heat_columns: int
) -> dict[str, Any]:
    """A frame grid's buckets: ``k`` frames per timeline point, ``heat_k`` (a multiple of
    ``k``) per heatmap column, and the time (seconds) of each bucket's first frame."""
    n = len(times)
    k = bucket_size(n, max_points)
    kh = k * bucket_size(math.ceil(n / k) if n else 0, heat_columns)
    media = attrs.get("media") or {}
    return {
        "frames": n,
        "duration": float(times[-1, 1]) if n else 0.0,
        "fps": media.get("fps"),
        "media_kind": media.get("kind"),
        "k": k,
        "x": to_json_numbers(times[::k, 0], 7),
        "heat_k": kh,
        "heat_x": to_json_numbers(times[::kh, 0], 7),
    }


def _stream(
    stored: Any,
    ex: str,
    s: dict[str, Any],
    grid: dict[str, Any],
    g: int,
    heat_rows: int,
    out: dict[str, Any],
) -> None:
    """Charts, heatmap and coverage of one stream on grid number ``g``."""
    n, k, kh = grid["frames"], grid["k"], grid["heat_k"]
    name = s["name"]
    labels = stored.labels(ex, name)
    d = len(labels)
    charts = charts_for(labels, str(s.get("level") or "frame"))
    cols = sorted({c for ch in charts for c in ch["columns"]})
    picked = BucketStats(k, len(cols))
    mask_stats = BucketStats(k, 1)
    heat = HeatmapStats(kh, d) if d >= WIDE else None
    step = kh if heat is not None else k
    block = step * max(1, _BLOCK_VALUES // max(d, 1) // step)
    rows = 0
    for _, data, mask in stored.aligned_blocks(ex, name, block=block):
        mask = np.asarray(mask, bool)
        rows += len(mask)
        mask_stats.add(np.zeros((len(mask), 1)), mask)
        if cols:
            picked.add(np.asarray(data)[:, cols], mask)
        if heat is not None:
            heat.add(np.asarray(data), mask)
    if rows != n:
        raise ValueError(f"{rows} aligned rows, the input's grid has {n} frames")
    stream_id = f"{ex}.{name}"
    valid = mask_stats.valid()
    out["coverage"][g]["series"].append(
        {"stream": stream_id, "coverage": s.get("coverage"), "valid": to_json_numbers(valid, 4)}
    )
    index = {c: i for i, c in enumerate(cols)}
    mean, lo, hi = picked.mean(), picked.min(), picked.max()
    for ch in charts:
        series = []
        if ch["kind"] == "face":
            series.append({"name": "face (share of frames)", "mean": to_json_numbers(valid, 4)})
        for c in ch["columns"]:
            j = index[c]
            entry: dict[str, Any] = {"name": labels[c], "column": c}
            entry["mean"] = to_json_numbers(mean[:, j])
            if k > 1:
                entry["min"] = to_json_numbers(lo[:, j])
                entry["max"] = to_json_numbers(hi[:, j])
            series.append(entry)
        out["charts"].append(
            {
                "id": f"{stream_id}:{ch['kind']}",
                "kind": ch["kind"],
                "title": f"{ch['title']}: {stream_id}",
                "extractor": ex,
                "stream": name,
                "grid": g,
                "series": series,
            }
        )
    if heat is not None:
        keep, z = heat.image(heat_rows)
        out["heatmaps"].append(
            {
                "id": f"{stream_id}:heatmap",
                "title": f"{stream_id} ({d} columns)",
                "extractor": ex,
                "stream": name,
                "grid": g,
                "dims": d,
                "columns": [int(c) for c in keep],
                "labels": [labels[c] for c in keep],
                "buckets": int(z.shape[1]),
                "clip": 3.0,
                "data": base64.b64encode(quantise_heatmap(z).tobytes()).decode(),
            }
        )


def store_data(
    path: str | Path,
    inputs: list[str] | None = None,
    *,
    max_points: int = 2000,
    heat_columns: int = 600,
    heat_rows: int = 64,
) -> dict[str, Any]:
    """The store page's data (the JSON embedded in the page).

    Args:
        path: the store's index file (``feats.h5``).
        inputs: input keys to show (default: all).
        max_points: points per timeline at most (frames are bucketed beyond).
        heat_columns: time buckets per heatmap at most.
        heat_rows: columns of a wide stream shown in its heatmap (those of highest variance).

    Raises:
        StoreError: not a store, or its index is damaged.
        KeyError: an input in ``inputs`` is not in the store (the message lists them).
    """
    from emofeat._version import __version__
    from emofeat.store import open_store

    store = open_store(path)
    keys = store.items()
    if inputs:
        unknown = [k for k in inputs if k not in keys]
        if unknown:
            shown = ", ".join(keys[:20]) + (" ..." if len(keys) > 20 else "")
            raise KeyError(f"{path}: no input {', '.join(unknown)} (stored: {shown or 'none'})")
        keys = [k for k in keys if k in inputs]
    log = store.log_entries()
    problems = latest_problems(log)
    runs = [r for r in log if r.get("event") == "run-start"]
    data = {
        "kind": "store",
        "path": str(path),
        "emofeat_version": __version__,
        "max_points": max_points,
        "inputs_total": len(store.items()),
        "runs": [
            {"run": r.get("run"), "time": r.get("time"), "command": r.get("command")} for r in runs
        ],
        "problems": problems,
        "inputs": [
            input_data(
                store,
                key,
                max_points=max_points,
                heat_columns=heat_columns,
                heat_rows=heat_rows,
                problems=problems,
            )
            for key in keys
        ],
    }
    store.close()
    return data
