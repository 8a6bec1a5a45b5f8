"""The checks of a stored item: the input's grid, each stream, the provenance."""

from __future__ import annotations

import math
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import numpy as np

from emofeat.extractor import Extractor, StreamSpec
from emofeat.testing.declarations import fail

#: provenance attributes every stored item carries (docs/store.md)
PROVENANCE = (
    "key",
    "extractor",
    "extractor_version",
    "plugin",
    "plugin_package",
    "plugin_version",
    "emofeat_version",
    "config",
    "config_hash",
    "license",
    "commercial_use",
    "model_id",
    "model_sha256",
    "model_source",
    "source",
    "media",
    "streams",
    "alignment",
    "created",
    "item_id",
)


@dataclass
class StreamReport:
    """What one stream of the checked item holds.

    Attributes:
        name: stream name.
        level: ``"frame"`` or ``"window"``.
        dims: number of dimensions.
        rows: native rows written.
        frames: rows of the frame-aligned view (frames of the input's grid).
        coverage: fraction of frames with a valid value (0-1).
    """

    name: str
    level: str
    dims: int
    rows: int
    frames: int
    coverage: float


def check_grid(
    name: str,
    store: Any,
    key: str,
    path: Path,
    modality: str,
    before: list[str],
    jobs: dict[str, Any],
) -> int:
    """The number of frames of the input's grid, checked against the input itself."""
    import emofeat

    info = emofeat.probe(path)
    item = next(i for i in store.catalog() if i.key == key and i.extractor == name)
    n = item.n_frames
    if info.has_video:
        expected = emofeat.count_frames(info)
        if n != expected:
            raise fail(name, f"aligned views have {n} rows, the video has {expected} frames")
    else:
        duration = float(info.duration or 0.0)
        expected = max(1, math.ceil(duration * 100.0 - 1e-9))
        if abs(n - expected) > 2:
            raise fail(
                name, f"aligned views have {n} rows; {duration:.3f} s at 100 Hz is {expected}"
            )
    return n


def check_stream(
    name: str,
    store: Any,
    key: str,
    stream: str,
    spec: StreamSpec | None,
    level: str | None,
    n_frames: int,
    end_time: float,
) -> StreamReport:
    """One stream of the item, native and aligned: dtypes, shapes, labels, level, row times on
    the input's timeline, finite valid values, each frame from its source row."""
    where = f"stream {stream!r}"
    native = store.read(key, name, stream)
    aligned = store.read(key, name, stream, aligned=True)
    data = native.data
    if data.dtype != np.float32 or data.ndim != 2:
        raise fail(name, f"{where}: data is {data.dtype} {data.shape}, not float32 (n, dims)")
    n, dims = data.shape
    if len(native.labels) != dims:
        raise fail(name, f"{where}: {dims} dims but {len(native.labels)} labels")
    if spec is not None and spec.labels and tuple(native.labels) != spec.labels:
        raise fail(name, f"{where}: labels differ from its StreamSpec's")
    if spec is not None and level is not None and level != spec.level:
        raise fail(name, f"{where}: stored level {level!r}, declared {spec.level!r}")
    if native.mask.dtype != np.bool_ or native.mask.shape != (n,):
        raise fail(name, f"{where}: mask is {native.mask.dtype} {native.mask.shape}, not bool")
    times = native.times
    if times.shape != (n, 2) or not np.isfinite(times).all():
        raise fail(name, f"{where}: row times must be finite (start, end) pairs")
    if n and (times[:, 1] < times[:, 0]).any():
        raise fail(name, f"{where}: a row ends before it starts")
    if n and (times[:, 0] < -1e-6).any():
        raise fail(name, f"{where}: a row starts before t = 0 ({times[:, 0].min():.4f} s)")
    if n and times[:, 0].max() > end_time + 1e-6:
        raise fail(
            name,
            f"{where}: a row starts at {times[:, 0].max():.3f} s, after the input's end "
            f"({end_time:.3f} s)",
        )
    if not np.isfinite(data[native.mask]).all():
        raise fail(name, f"{where}: valid rows hold NaN or inf (flag them with valid=False)")
    a_data, a_mask, row = aligned.data, aligned.mask, aligned.row
    if a_data.dtype != np.float32 or a_data.shape != (n_frames, dims):
        raise fail(name, f"{where}: aligned view is {a_data.shape}, expected ({n_frames}, {dims})")
    if a_mask.dtype != np.bool_ or a_mask.shape != (n_frames,):
        raise fail(name, f"{where}: aligned mask is not a bool per frame")
    assert row is not None
    took = row >= 0
    if (row >= n).any():
        raise fail(name, f"{where}: aligned view points past the native rows")
    if not np.array_equal(a_data[took], data[row[took]], equal_nan=True):
        raise fail(name, f"{where}: a frame does not hold its source row's values")
    if (a_mask & ~took).any() or (a_mask[took] & ~native.mask[row[took]]).any():
        raise fail(name, f"{where}: a valid frame comes from no row or from an invalid row")
    coverage = float(a_mask.mean()) if n_frames else 0.0
    return StreamReport(stream, level or (spec.level if spec else ""), dims, n, n_frames, coverage)


def check_provenance(
    name: str, cls: type[Extractor], config: dict[str, Any], attrs: dict[str, Any], key: str
) -> None:
    """The item's provenance attributes: all there, and agreeing with the class and settings."""
    missing = [a for a in PROVENANCE if a not in attrs]
    if missing:
        raise fail(name, f"stored item lacks provenance attribute(s) {missing}")
    expect = {"key": key, "extractor": name, "extractor_version": cls.version}
    for attr, value in expect.items():
        if attrs[attr] != value:
            raise fail(name, f"stored {attr} is {attrs[attr]!r}, expected {value!r}")
    if not str(attrs["license"]).strip():
        raise fail(name, "stored item has no licence")
    if not attrs["plugin"]:
        raise fail(name, "stored item names no plugin")
    if not isinstance(attrs["commercial_use"], bool):
        raise fail(name, "stored commercial_use is not a bool")
    if not cls.commercial_use and attrs["commercial_use"]:
        raise fail(name, "the class forbids commercial use but the item allows it")
    stored = (attrs["config"] or {}).get("settings", {})
    if set(stored) != set(config):
        raise fail(name, f"stored settings {sorted(stored)} are not its settings {sorted(config)}")
    if attrs["model_sha256"] and not attrs["model_id"]:
        raise fail(name, "stored model_sha256 without a model_id")
