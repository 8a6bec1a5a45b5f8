"""One item file (input x extractor): its writer, its reader for ``features`` extractors.

An item file is written under the store's ``.staging/`` folder by :class:`ItemWriter`
(native rows streamed to disk, then aligned onto the input's frame grid by
:meth:`ItemWriter.finalize`, fsynced), and only then renamed into the store by
:meth:`emofeat.store.FeatureStore.commit`. Layout: docs/store.md.
"""

from __future__ import annotations

import json
import os
from collections.abc import Iterator
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import h5py
import numpy as np

from emofeat.errors import StoreError
from emofeat.extractor import Rows, StreamSpec
from emofeat.media import FrameGrid
from emofeat.timeline import align_to_frames, gather_rows

FORMAT_VERSION = 1
ALIGNMENT_RULE = "nearest-centre-covering-v2"
"""Name of the alignment rule (:mod:`emofeat.timeline`) recorded in every item file as its
``alignment`` attribute; renamed whenever the rule changes the stored aligned views, so that
``emofeat extract`` redoes items aligned under an older rule. v1: ties went to the earlier
row even when it did not cover the frame; v2: a covering row wins the tie."""
_STR = h5py.string_dtype("utf-8")


def fsync_path(path: Path, directory: bool = False) -> None:
    """Flush a file (or a folder's entries, ``directory=True``) to disk."""
    fd = os.open(path, os.O_RDONLY | (os.O_DIRECTORY if directory else 0))
    try:
        os.fsync(fd)
    finally:
        os.close(fd)


@dataclass
class StreamData:
    """One stream of one item, read into memory.

    Attributes:
        data: float32 values, shape ``(n, dims)``.
        times: ``(n, 2)`` start and end of each row in seconds.
        mask: ``(n,)`` True where the row is valid.
        labels: the names of the dimensions.
        aligned: True when the rows are the input's frames.
        row: for aligned data, the native row each frame took its values from (-1: none).
    """

    data: np.ndarray
    times: np.ndarray
    mask: np.ndarray
    labels: list[str]
    aligned: bool
    row: np.ndarray | None = None


class ItemWriter:
    """Writes one item (input x extractor) to a staging file, streaming rows to disk."""

    def __init__(self, path: Path, key: str, extractor: str, streams: list[StreamSpec]) -> None:
        self.path = path
        self.key = key
        self.extractor = extractor
        self.specs = {s.name: s for s in streams}
        self.file = h5py.File(path, "w")
        self.file.attrs["complete"] = False
        self.rows: dict[str, int] = {}
        self._pending: dict[str, list[Rows]] = {}

    def _create(self, rows: Rows, labels: tuple[str, ...] | None) -> h5py.Group:
        d = rows.data.shape[1]
        g = self.file.create_group(rows.stream)
        chunk_rows = max(1, min(4096, 262144 // (4 * max(d, 1))))
        g.create_dataset(
            "data",
            shape=(0, d),
            maxshape=(None, d),
            dtype="f4",
            chunks=(chunk_rows, d),
            compression="gzip",
            compression_opts=4,
            shuffle=True,
        )
        g.create_dataset(
            "times",
            shape=(0, 2),
            maxshape=(None, 2),
            dtype="f8",
            chunks=(4096, 2),
            compression="gzip",
            compression_opts=4,
        )
        g.create_dataset(
            "mask",
            shape=(0,),
            maxshape=(None,),
            dtype=bool,
            chunks=(4096,),
            compression="gzip",
            compression_opts=4,
        )
        names = list(labels) if labels else [f"{rows.stream}_{i}" for i in range(d)]
        if len(names) != d:
            raise StoreError(
                f"{self.extractor}: stream {rows.stream!r} has {d} dims but {len(names)} labels"
            )
        g.create_dataset("labels", data=np.array(names, dtype=object), dtype=_STR)
        spec = self.specs.get(rows.stream)
        g.attrs["level"] = spec.level if spec else "frame"
        g.attrs["rate"] = spec.rate if spec else ""
        self.rows[rows.stream] = 0
        return g

    def append(self, rows: Rows, labels: tuple[str, ...] | None = None) -> None:
        """Append a block of native rows (labels are used when the stream is new)."""
        if rows.stream not in self.file:
            spec = self.specs.get(rows.stream)
            g = self._create(rows, rows.labels or labels or (spec.labels if spec else None))
        else:
            g = self.file[rows.stream]
        n = len(rows)
        if n == 0:
            return
        if rows.data.shape[1] != g["data"].shape[1]:
            raise StoreError(
                f"{self.extractor}: stream {rows.stream!r} changed width from "
                f"{g['data'].shape[1]} to {rows.data.shape[1]}"
            )
        # small blocks (one window at a time) are buffered: one HDF5 write per ~1 MB
        pending = self._pending.setdefault(rows.stream, [])
        pending.append(rows)
        size = sum(r.data.nbytes for r in pending)
        if size >= 1 << 20 or len(pending) >= 1024:
            self._flush(rows.stream)

    def _flush(self, stream: str) -> None:
        pending = self._pending.pop(stream, [])
        if not pending:
            return
        g = self.file[stream]
        data = np.concatenate([r.data for r in pending])
        times = np.concatenate([np.stack([r.start, r.end], axis=1) for r in pending])
        mask = np.concatenate(
            [np.ones(len(r), bool) if r.valid is None else r.valid for r in pending]
        )
        n0, n = self.rows[stream], len(data)
        for name, value in (("data", data), ("times", times), ("mask", mask)):
            ds = g[name]
            ds.resize(n0 + n, axis=0)
            ds[n0 : n0 + n] = value
        self.rows[stream] = n0 + n

    def ensure_stream(self, stream: str, labels: tuple[str, ...]) -> None:
        """Create an empty stream (an extractor that produced no rows still has its streams)."""
        if stream not in self.file and labels:
            self._create(Rows(stream, np.zeros((0, len(labels))), np.zeros(0), np.zeros(0)), labels)

    def finalize(self, grid: FrameGrid, attrs: dict[str, Any], block: int = 8192) -> None:
        """Align every stream onto ``grid``, write provenance, close and fsync."""
        f = self.file
        for stream in list(self._pending):
            self._flush(stream)
        f.create_dataset(
            "frames/times",
            data=np.stack([grid.starts, grid.ends], axis=1),
            compression="gzip",
            compression_opts=4,
        )
        f["frames"].attrs["rate"] = grid.rate
        f["frames"].attrs["source"] = grid.source
        for stream in self.rows:
            g = f[stream]
            times = g["times"][:]
            mask = g["mask"][:]
            index, valid = align_to_frames(times[:, 0], times[:, 1], grid.starts, grid.ends, mask)
            d = g["data"].shape[1]
            m = len(grid)
            chunk_rows = max(1, min(4096, 262144 // (4 * max(d, 1))))
            ad = g.create_dataset(
                "aligned/data",
                shape=(m, d),
                dtype="f4",
                chunks=(min(chunk_rows, max(m, 1)), d) if m else None,
                compression="gzip",
                compression_opts=4,
                shuffle=True,
            )
            src = g["data"]
            for a in range(0, m, block):
                idx = index[a : a + block]
                ok = idx >= 0
                if ok.any():
                    lo, hi = int(idx[ok].min()), int(idx[ok].max()) + 1
                    rows = src[lo:hi]
                    shifted = np.where(ok, idx - lo, -1)
                    ad[a : a + len(idx)] = gather_rows(rows, shifted)
                else:
                    ad[a : a + len(idx)] = np.full((len(idx), d), np.nan, np.float32)
            g.create_dataset("aligned/mask", data=valid, compression="gzip", compression_opts=4)
            g.create_dataset("aligned/row", data=index, compression="gzip", compression_opts=4)
            g.attrs["coverage"] = float(valid.mean()) if m else 0.0
        for k, v in attrs.items():
            f.attrs[k] = json.dumps(v) if isinstance(v, (dict, list)) else v
        # the extractor's declared stream order (HDF5 lists members sorted by name): the
        # default stream of a mask source is its first one-dimensional stream
        order = [n for n in self.specs if n in self.rows]
        f.attrs["streams"] = json.dumps(order + [n for n in self.rows if n not in order])
        f.attrs["alignment"] = ALIGNMENT_RULE
        f.attrs["format_version"] = FORMAT_VERSION
        f.attrs["complete"] = True
        f.flush()
        f.close()
        fsync_path(self.path)

    def abort(self) -> None:
        """Discard the staging file."""
        try:
            self.file.close()
        except Exception:
            pass
        self.path.unlink(missing_ok=True)


class StoredInput:
    """The streams stored for one input, read lazily (given to ``features`` extractors)."""

    def __init__(self, key: str, files: dict[str, Path]) -> None:
        self.key = key
        self.files = files

    def streams(self) -> list[tuple[str, str, str]]:
        """``(extractor, stream, level)`` for every stored stream."""
        out = []
        for ex, path in sorted(self.files.items()):
            try:
                with h5py.File(path, "r") as f:
                    for name in sorted(f.keys()):
                        if name != "frames":
                            out.append((ex, name, str(f[name].attrs.get("level", "frame"))))
            except OSError:
                continue
        return out

    def labels(self, extractor: str, stream: str) -> list[str]:
        """Dimension names of a stream."""
        with h5py.File(self.files[extractor], "r") as f:
            return list(f[stream]["labels"].asstr()[:])

    def aligned_blocks(
        self, extractor: str, stream: str, block: int = 4096
    ) -> Iterator[tuple[int, np.ndarray, np.ndarray]]:
        """Yield ``(first_frame, data, mask)`` blocks of the frame-aligned view."""
        if extractor not in self.files:
            raise KeyError(f"{self.key}: no stored extractor {extractor!r}")
        with h5py.File(self.files[extractor], "r") as f:
            g = f[stream]
            n = g["aligned/data"].shape[0]
            for a in range(0, n, block):
                yield a, g["aligned/data"][a : a + block], g["aligned/mask"][a : a + block]

    def read_aligned(
        self, extractor: str, stream: str, start: int, stop: int
    ) -> tuple[np.ndarray, np.ndarray]:
        """Frames ``start:stop`` of a stream's frame-aligned view: ``(data, mask)``."""
        if extractor not in self.files:
            raise KeyError(f"{self.key}: no stored extractor {extractor!r}")
        with h5py.File(self.files[extractor], "r") as f:
            g = f[stream]
            return g["aligned/data"][start:stop], g["aligned/mask"][start:stop]

    def provenance(self, extractor: str) -> dict[str, Any]:
        """The source item's attributes."""
        with h5py.File(self.files[extractor], "r") as f:
            return decode_attrs(f.attrs)


def decode_attrs(attrs: h5py.AttributeManager) -> dict[str, Any]:
    """HDF5 attributes as Python values: JSON strings decoded, numpy scalars unwrapped."""
    out: dict[str, Any] = {}
    for k, v in attrs.items():
        if isinstance(v, bytes):
            v = v.decode()
        if isinstance(v, str) and v[:1] in "{[":
            try:
                v = json.loads(v)
            except ValueError:
                pass
        elif isinstance(v, np.generic):
            v = v.item()
        out[k] = v
    return out


def read_attrs(path: Path) -> dict[str, Any]:
    """The root attributes of an item file (provenance), JSON values decoded."""
    with h5py.File(path, "r") as f:
        return decode_attrs(f.attrs)
