"""One item file (input x extractor): its writer, its reader for ``features`` extractors.

An item file is written under the store's ``.staging/`` folder by :class:`ItemWriter`
(native rows streamed to disk, then aligned onto the input's frame grid by
:meth:`ItemWriter.finalize`, fsynced), and only then renamed into the store by
:meth:`emofeat.store.FeatureStore.commit`. Layout: docs/store.md.
"""

from __future__ import annotations

import hashlib
import io
import json
import os
import uuid
from collections.abc import Iterator
from contextlib import contextmanager
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import h5py
import numpy as np

from emofeat.errors import StoreError, StoreWriteError
from emofeat.extractor import Rows, StreamSpec
from emofeat.media import FrameGrid
from emofeat.timeline import align_to_frames, gather_rows

FORMAT_VERSION = 2
"""Layout of an item file, recorded in its provenance as ``format_version``. 1: every
provenance value a root attribute of its own; 2: one root ``provenance`` attribute (a JSON
object) plus ``complete``, because HDF5 objects, not bytes, are what a short clip's item
costs to write. Both are read (:func:`item_attrs_of`)."""
ALIGNMENT_RULE = "nearest-centre-covering-v2"
"""Name of the alignment rule (:mod:`emofeat.timeline`) recorded in every item file as its
``alignment`` attribute; renamed whenever the rule changes the stored aligned views, so that
``emofeat extract`` redoes items aligned under an older rule. v1: ties went to the earlier
row even when it did not cover the frame; v2: a covering row wins the tie."""
_STR = h5py.string_dtype("utf-8")

# What h5py's create_dataset and attrs[...] = give a plain dataset or a scalar attribute,
# made through its low-level calls: for a short clip's item, h5py's high-level set-up of
# each object cost more than HDF5's own work (measured: 8 datasets and 7 attributes
# 0.94 ms high-level, 0.62 ms low-level). Tested equal in layout (tests/test_overhead.py).
_LCPL = h5py.h5p.create(h5py.h5p.LINK_CREATE)
_LCPL.set_create_intermediate_group(True)  # "aligned/data" makes "aligned" as h5py would
_DCPL = h5py.h5p.create(h5py.h5p.DATASET_CREATE)
_DCPL.set_obj_track_times(False)  # h5py's default: no timestamps, reproducible files
_SCALAR = h5py.h5s.create(h5py.h5s.SCALAR)


def plain_dataset(parent: h5py.Group, name: str, value: np.ndarray) -> None:
    """``parent.create_dataset(name, data=value)`` (contiguous, uncompressed) for a numeric
    or bool array, through h5py's low-level API."""
    arr = np.ascontiguousarray(value)
    tid = h5py.h5t.py_create(arr.dtype, logical=True)
    space = h5py.h5s.create_simple(arr.shape)
    ds = h5py.h5d.create(parent.id, name.encode(), tid, space, dcpl=_DCPL, lcpl=_LCPL)
    if arr.size:
        ds.write(h5py.h5s.ALL, h5py.h5s.ALL, arr)


def scalar_attr(obj: h5py.HLObject, name: str, value: str | float | bool) -> None:
    """``obj.attrs[name] = value`` for a new attribute holding a str (variable-length
    UTF-8), float or bool, through h5py's low-level API."""
    arr = np.array(value, dtype=_STR) if isinstance(value, str) else np.asarray(value)
    tid = h5py.h5t.py_create(arr.dtype, logical=True)
    h5py.h5a.create(obj.id, name.encode(), tid, _SCALAR).write(arr)


def fsync_path(path: Path, directory: bool = False) -> None:
    """Flush a file (or a folder's entries, ``directory=True``) to disk."""
    fd = os.open(path, os.O_RDONLY | (os.O_DIRECTORY if directory else 0))
    try:
        os.fsync(fd)
    finally:
        os.close(fd)


class GuardedFile(io.RawIOBase):
    """A file for h5py's file-object driver that never lets HDF5 see a failed write.

    Why not let h5py write the path itself: when a write fails inside HDF5 (a full disk),
    HDF5 is left in a state where a later call, even on another file, can crash the
    interpreter (measured: segmentation faults on a full tmpfs). Here the first failed write
    is remembered, and from then on writes go to memory and reads see them, so HDF5 finds a
    consistent file, carries on and closes cleanly; the owner then discards the file and
    raises :class:`~emofeat.errors.StoreWriteError` (:meth:`check`), which it does at its next
    step, so little is held in memory. Unbuffered (``pread``/``pwrite``): no data waits in a
    Python buffer.

    Args:
        path: the file.
        mode: ``"w"`` (create or truncate) or ``"r+"`` (an existing file).
    """

    def __init__(self, path: str | os.PathLike, mode: str = "w") -> None:
        super().__init__()
        self.path = Path(path)
        flags = os.O_RDWR | (os.O_CREAT | os.O_TRUNC if mode == "w" else 0)
        try:
            self._fd = os.open(path, flags, 0o644)
        except OSError as exc:
            raise StoreWriteError(path, exc) from exc
        self._pos = 0
        self.error: OSError | None = None
        self._size = 0  # the file's size as HDF5 sees it, once writes go to memory
        self._kept: list[tuple[int, bytes]] = []  # writes after the failure, in order

    def readable(self) -> bool:
        return True

    def writable(self) -> bool:
        return True

    def seekable(self) -> bool:
        return True

    def _eof(self) -> int:
        return self._size if self.error is not None else os.fstat(self._fd).st_size

    def seek(self, offset: int, whence: int = 0) -> int:
        base = {0: 0, 1: self._pos, 2: self._eof()}[whence]
        self._pos = base + offset
        return self._pos

    def tell(self) -> int:
        return self._pos

    def readinto(self, buffer: Any) -> int:
        view = memoryview(buffer).cast("B")
        data = os.pread(self._fd, len(view), self._pos)
        got = len(data)
        view[:got] = data
        if self.error is not None:  # what HDF5 wrote since is in memory
            want = max(got, min(self._pos + len(view), self._size) - self._pos)
            view[got:want] = bytes(want - got)
            got = want
            for off, blob in self._kept:
                lo, hi = max(off, self._pos), min(off + len(blob), self._pos + got)
                if lo < hi:
                    view[lo - self._pos : hi - self._pos] = blob[lo - off : hi - off]
        self._pos += got
        return got

    def write(self, data: Any) -> int:
        view = memoryview(data).cast("B")
        if self.error is None:
            try:
                done = 0
                while done < len(view):  # a write may be partial
                    done += os.pwrite(self._fd, view[done:], self._pos + done)
            except OSError as exc:
                self.error = exc
                self._size = os.fstat(self._fd).st_size
        if self.error is not None:
            self._kept.append((self._pos, bytes(view)))
            self._size = max(self._size, self._pos + len(view))
        self._pos += len(view)
        return len(view)

    def truncate(self, size: int | None = None) -> int:
        size = self._pos if size is None else size
        if self.error is None:
            try:
                os.ftruncate(self._fd, size)
                return size
            except OSError as exc:
                self.error = exc
        self._size = size
        return size

    def flush(self) -> None:
        pass  # unbuffered

    def check(self) -> None:
        """Raise :class:`StoreWriteError` naming the file if any write failed."""
        if self.error is not None:
            raise StoreWriteError(self.path, self.error)

    def _close_fd(self) -> None:
        if self._fd >= 0:
            os.close(self._fd)
            self._fd = -1
        self._kept = []
        self.close()

    def sync_and_close(self, sync: bool = True) -> None:
        """fsync (unless ``sync`` is false) and close; raises :class:`StoreWriteError` if any
        write (or the fsync) failed."""
        try:
            if self.error is None and sync:
                try:
                    os.fsync(self._fd)
                except OSError as exc:
                    self.error = exc
        finally:
            self._close_fd()
        self.check()

    def discard(self) -> None:
        """Close without syncing and delete the file."""
        try:
            self._close_fd()
        finally:
            self.path.unlink(missing_ok=True)


def open_h5(guard: GuardedFile, mode: str, **kw: Any) -> h5py.File:
    """An h5py file written through ``guard`` (see :class:`GuardedFile`)."""
    return h5py.File(guard, mode, **kw)


_EDGE = 32768

COMPRESS_FROM = 512 * 1024
"""Bytes of native values from which an item's datasets are gzip-compressed. A smaller
item (a short clip's) is written plain: compressing it would take longer than the rest of
its writing, and compaction (:meth:`emofeat.store.FeatureStore.compact`) rewrites small
items compressed into shard files anyway."""


def file_digests(path: Path) -> tuple[int, str, str]:
    """``(size in bytes, sha256 of the whole file, sha256 of its edges)``, reading it once.

    The edge digest covers the first and the last 32 KiB (the whole of a small file): HDF5
    keeps its superblock at the start and writes its metadata last, so it is the cheap check
    that a rerun makes on every item it would skip (:meth:`FeatureStore.check_item`).
    """
    full = hashlib.sha256()
    head = b""
    tail = b""
    size = 0
    with open(path, "rb") as f:
        while block := f.read(1 << 20):
            if size < _EDGE:
                head += block[: _EDGE - size]
            full.update(block)
            size += len(block)
            tail = (tail + block)[-_EDGE:]
    return size, full.hexdigest(), hashlib.sha256(head + tail).hexdigest()


def image_digests(image: bytes) -> tuple[int, str, str]:
    """:func:`file_digests` of a file whose bytes are ``image``."""
    edges = hashlib.sha256(image[:_EDGE] + image[-_EDGE:]).hexdigest()
    return len(image), hashlib.sha256(image).hexdigest(), edges


def edge_digest(path: Path, size: int) -> str:
    """The edge digest of :func:`file_digests`, reading only the first and last 32 KiB."""
    with open(path, "rb") as f:
        head = f.read(_EDGE)
        f.seek(max(0, size - _EDGE))
        tail = f.read(_EDGE)
    return hashlib.sha256(head + tail).hexdigest()


def _json_value(value: Any) -> Any:
    """numpy values in provenance as JSON (``json.dumps``' ``default``)."""
    if isinstance(value, np.generic):
        return value.item()
    if isinstance(value, np.ndarray):
        return value.tolist()
    if isinstance(value, Path):
        return str(value)
    raise TypeError(f"provenance value of type {type(value).__name__} is not JSON: {value!r}")


def describe_item(path: Path, known: dict[str, Any] | None = None) -> dict[str, Any]:
    """What the store's index keeps about a finished item file, so that listing, ``inspect``
    and the skip decision of a rerun never open the file: its size and checksums, its
    provenance attributes, and per stream the native rows, dims, frames and coverage.

    ``known``: the writer's :attr:`ItemWriter.description` of the file (then only its
    bytes are read, for the checksums, unless the writer knew them too).
    """
    if known is not None and "sha256" in known:
        return dict(known)
    size, sha, edges = file_digests(path)
    if known is not None:
        return {"size": size, "sha256": sha, "edges": edges, **known}
    streams = []
    with h5py.File(path, "r") as f:
        attrs = item_attrs_of(f)
        n_frames = int(f["frames/times"].shape[0]) if "frames/times" in f else 0
        for name in sorted(n for n in f.keys() if n != "frames"):
            g = f[name]
            frames = int(g["aligned/mask"].shape[0]) if "aligned/mask" in g else 0
            streams.append(
                {
                    "name": name,
                    "rows": int(g["data"].shape[0]),
                    "dims": int(g["data"].shape[1]),
                    "frames": frames,
                    # kept by finalize and by masking: the share of valid aligned frames
                    "coverage": float(g.attrs.get("coverage", 0.0)) if frames else 0.0,
                    "level": str(g.attrs.get("level", "frame")),
                }
            )
    return {
        "size": size,
        "sha256": sha,
        "edges": edges,
        "attrs": attrs,
        "streams": streams,
        "n_frames": n_frames,
    }


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

    def __init__(
        self,
        path: Path,
        key: str,
        extractor: str,
        streams: list[StreamSpec],
        sync: bool = True,
    ) -> None:
        self.path = path
        self.key = key
        self.extractor = extractor
        self.specs = {s.name: s for s in streams}
        self.guard = GuardedFile(path, "w")
        # The HDF5 file is opened at the first write of rows (on disk, through ``guard``) or
        # at finalize: a small item is then built in memory and written with one write.
        # No ``complete`` attribute until finalize: readers take its absence for False.
        self._file: h5py.File | None = None
        self._unmade: dict[str, list[str]] = {}  # labels of streams whose group is not made yet
        self.rows: dict[str, int] = {}
        self.dims: dict[str, int] = {}
        self.native: dict[str, tuple[list[np.ndarray], list[np.ndarray]]] = {}
        self._pending: dict[str, list[Rows]] = {}
        self._small = False  # decided when finalizing (COMPRESS_FROM): built in memory
        self._data: dict[str, np.ndarray] = {}  # a small item's native rows
        self.levels: dict[str, str] = {}
        #: fsync the file when it is finalized (False: the store's commit syncs it)
        self.sync = sync
        #: what :func:`describe_item` gives for the finished file (its checksums included
        #: when the file was written from memory)
        self.description: dict[str, Any] | None = None

    @property
    def file(self) -> h5py.File:
        """The HDF5 file (opened on disk if nothing opened it yet)."""
        if self._file is None:
            self._file = open_h5(self.guard, "w")
        return self._file

    def _open_in_memory(self) -> None:
        """Build the file in memory (HDF5's core driver); finalize writes its image."""
        # a name of its own: HDF5 refuses a second open file of the same name
        name = f"emofeat-item-{uuid.uuid4().hex}"
        self._file = h5py.File(name, "w", driver="core", backing_store=False)

    def _create(self, rows: Rows, labels: tuple[str, ...] | None) -> None:
        d = rows.data.shape[1]
        names = list(labels) if labels else [f"{rows.stream}_{i}" for i in range(d)]
        if len(names) != d:
            raise StoreError(
                f"{self.extractor}: stream {rows.stream!r} has {d} dims but {len(names)} labels"
            )
        self._unmade[rows.stream] = names
        spec = self.specs.get(rows.stream)
        self.levels[rows.stream] = spec.level if spec else "frame"
        self.rows[rows.stream] = 0
        self.dims[rows.stream] = d
        self.native[rows.stream] = ([], [])

    def _group(self, stream: str) -> h5py.Group:
        """The stream's group, made with its labels and attributes on first use."""
        names = self._unmade.pop(stream, None)
        if names is None:
            return self.file[stream]
        g = self.file.create_group(stream)
        g.create_dataset("labels", data=np.array(names, dtype=object), dtype=_STR)
        spec = self.specs.get(stream)
        scalar_attr(g, "level", self.levels[stream])
        scalar_attr(g, "rate", spec.rate if spec else "")
        return g

    def _native_datasets(
        self, g: h5py.Group, data: np.ndarray, times: np.ndarray, mask: np.ndarray
    ) -> None:
        """Create a stream's native datasets holding its first rows (extendable, gzip;
        a small item's: plain, see :data:`COMPRESS_FROM`)."""
        if self._small:
            for name, value in (("data", data), ("times", times), ("mask", mask)):
                plain_dataset(g, name, value)
            return
        d = data.shape[1]
        chunk_rows = max(1, min(4096, 262144 // (4 * max(d, 1))))
        gz = {"compression": "gzip", "compression_opts": 4}
        g.create_dataset(
            "data", data=data, maxshape=(None, d), chunks=(chunk_rows, d), shuffle=True, **gz
        )
        g.create_dataset("times", data=times, maxshape=(None, 2), chunks=(4096, 2), **gz)
        g.create_dataset("mask", data=mask, maxshape=(None,), chunks=(4096,), **gz)

    def _put(self, parent: h5py.Group, name: str, value: np.ndarray) -> None:
        """A dataset written at the end: plain for a small item, else gzip-compressed."""
        if self._small:
            plain_dataset(parent, name, value)
        else:
            parent.create_dataset(name, data=value, compression="gzip", compression_opts=4)

    def append(self, rows: Rows, labels: tuple[str, ...] | None = None) -> None:
        """Append a block of native rows (labels are used when the stream is new).

        Raises:
            StoreWriteError: an earlier write to this item's file failed (disk full...).
        """
        self.guard.check()
        try:
            self._append(rows, labels)
        except Exception:
            self.guard.check()  # a failed write explains what went wrong after it
            raise

    def _append(self, rows: Rows, labels: tuple[str, ...] | None) -> None:
        if rows.stream not in self.dims:
            spec = self.specs.get(rows.stream)
            self._create(rows, rows.labels or labels or (spec.labels if spec else None))
        n = len(rows)
        if n == 0:
            return
        if rows.data.shape[1] != self.dims[rows.stream]:
            raise StoreError(
                f"{self.extractor}: stream {rows.stream!r} changed width from "
                f"{self.dims[rows.stream]} to {rows.data.shape[1]}"
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
        g = self._group(stream)
        data = np.concatenate([r.data for r in pending]).astype(np.float32, copy=False)
        times = np.concatenate([np.stack([r.start, r.end], axis=1) for r in pending])
        times = times.astype(np.float64, copy=False)
        mask = np.concatenate(
            [np.ones(len(r), bool) if r.valid is None else r.valid for r in pending]
        ).astype(bool, copy=False)
        n0, n = self.rows[stream], len(data)
        if self._small:
            self._data[stream] = data  # gathered from memory into the aligned view
        if "data" not in g:
            self._native_datasets(g, data, times, mask)
        else:
            for name, value in (("data", data), ("times", times), ("mask", mask)):
                ds = g[name]
                ds.resize(n0 + n, axis=0)
                ds[n0 : n0 + n] = value
        # kept for the alignment at the end (a few bytes per row), not read back
        self.native[stream][0].append(times)
        self.native[stream][1].append(mask)
        self.rows[stream] = n0 + n

    def ensure_stream(self, stream: str, labels: tuple[str, ...]) -> None:
        """Create an empty stream (an extractor that produced no rows still has its streams)."""
        if stream not in self.dims and labels:
            self._create(Rows(stream, np.zeros((0, len(labels))), np.zeros(0), np.zeros(0)), labels)

    def _aligned_data(self, g: h5py.Group, index: np.ndarray, m: int, d: int, block: int) -> None:
        """The aligned view of a large item, gathered from the file block by block."""
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

    def finalize(self, grid: FrameGrid, attrs: dict[str, Any], block: int = 8192) -> None:
        """Align every stream onto ``grid``, write provenance, close and fsync.

        Raises:
            StoreWriteError: writing the file failed (the caller aborts the item).
        """
        try:
            self._finalize(grid, attrs, block)
        except StoreWriteError:
            raise
        except Exception:
            self.guard.check()  # a failed write explains what went wrong after it
            raise

    def _finalize(self, grid: FrameGrid, attrs: dict[str, Any], block: int) -> None:
        pending = sum(r.data.nbytes for rs in self._pending.values() for r in rs)
        # nothing written yet and little to write: a small item (plain datasets, in memory)
        self._small = self._file is None and pending < COMPRESS_FROM
        if self._small:
            self._open_in_memory()
        f = self.file
        for stream in list(self._pending):
            self._flush(stream)
        self.guard.check()
        self._put(f, "frames/times", np.stack([grid.starts, grid.ends], axis=1))
        frames = f["frames"]
        scalar_attr(frames, "rate", float(grid.rate))
        scalar_attr(frames, "source", str(grid.source))
        streams = []
        for stream in self.rows:
            g = self._group(stream)
            d = self.dims[stream]
            if "data" not in g:  # no rows
                empty = np.zeros((0, d), np.float32)
                self._native_datasets(g, empty, np.zeros((0, 2)), np.zeros(0, bool))
            kept_times, kept_mask = self.native[stream]
            times = np.concatenate(kept_times) if kept_times else np.zeros((0, 2))
            mask = np.concatenate(kept_mask) if kept_mask else np.zeros(0, bool)
            index, valid = align_to_frames(times[:, 0], times[:, 1], grid.starts, grid.ends, mask)
            m = len(grid)
            if self._small:
                native = self._data.get(stream, np.zeros((0, d), np.float32))
                plain_dataset(g, "aligned/data", gather_rows(native, index))
            else:
                self._aligned_data(g, index, m, d, block)
            self._put(g, "aligned/mask", valid)
            self._put(g, "aligned/row", index)
            coverage = float(valid.mean()) if m else 0.0
            scalar_attr(g, "coverage", coverage)
            streams.append(
                {
                    "name": stream,
                    "rows": len(times),
                    "dims": d,
                    "frames": m,
                    "coverage": coverage if m else 0.0,
                    "level": self.levels[stream],
                }
            )
            self.guard.check()
        prov = {k: v for k, v in attrs.items() if k != "complete"}
        # the extractor's declared stream order (HDF5 lists members sorted by name): the
        # default stream of a mask source is its first one-dimensional stream
        order = [n for n in self.specs if n in self.rows]
        prov["streams"] = order + [n for n in self.rows if n not in order]
        prov["alignment"] = ALIGNMENT_RULE
        prov["format_version"] = FORMAT_VERSION
        text = json.dumps(prov, sort_keys=True, default=_json_value)
        scalar_attr(f, "provenance", text)
        scalar_attr(f, "complete", True)  # last: the item is whole
        digests: dict[str, Any] = {}
        if self._small:
            f.flush()
            image = f.id.get_file_image()
            f.close()
            self.guard.write(image)  # one write; a failure is raised by sync_and_close
            size, sha, edges = image_digests(image)
            digests = {"size": size, "sha256": sha, "edges": edges}
        else:
            f.close()
        self.guard.sync_and_close(sync=self.sync)
        # what describe_item would read back from the file (it need not reopen it)
        self.description = {
            **digests,
            "attrs": {**json.loads(text), "complete": True},
            "streams": sorted(streams, key=lambda st: st["name"]),
            "n_frames": len(grid),
        }

    def abort(self) -> None:
        """Discard the staging file."""
        try:
            if self._file is not None:
                self._file.close()
        except Exception:
            pass
        self.guard.discard()


ItemRef = str | Path | tuple[str, str]
"""Where a committed item lives: an item file of its own (a path), or a group of a shard
file, ``(shard path, "/<key>/<extractor>")`` (see :meth:`emofeat.store.FeatureStore.compact`).
Plain data, so it travels to worker processes."""


@contextmanager
def open_item(ref: ItemRef) -> Iterator[h5py.Group]:
    """The item's root group (the file's ``/``, or its group in a shard), for reading."""
    path, group = ref if isinstance(ref, tuple) else (str(ref), "/")
    with h5py.File(path, "r") as f:
        yield f[group]


def export_item(ref: ItemRef) -> bytes:
    """An item as the bytes of an item file of its own (to send it to another machine);
    an item in a shard gets its aligned view and root attributes back."""
    if not isinstance(ref, tuple):
        return Path(ref).read_bytes()
    buf = io.BytesIO()
    with open_item(ref) as src, h5py.File(buf, "w") as dst:
        for name in src:
            src.copy(src[name], dst, name=name)
            if name != "frames":
                data, mask = aligned_view(src[name])
                dst[name].create_dataset("aligned/data", data=data)
                if "aligned/mask" not in dst[name]:
                    dst[name].create_dataset("aligned/mask", data=mask)
                if "mask" not in dst[name]:
                    dst[name].create_dataset("mask", data=valid_rows(src[name], "mask"))
                dst[name].attrs.pop("all_valid", None)
        root = attrs = item_attrs_of(src)
        if int(attrs.get("format_version", 1)) >= 2:  # the layout its provenance names
            root = {"mask": attrs.pop("mask")} if "mask" in attrs else {}
            root["complete"] = attrs.pop("complete", True)
            dst.attrs["provenance"] = json.dumps(attrs, sort_keys=True)
        for k, v in root.items():
            dst.attrs[k] = json.dumps(v) if isinstance(v, (dict, list)) else v
    return buf.getvalue()


class StoredInput:
    """The streams stored for one input, read lazily (given to ``features`` extractors).

    ``files`` maps extractor names to where their items are (:data:`ItemRef`).
    """

    def __init__(self, key: str, files: dict[str, Any]) -> None:
        self.key = key
        self.files = files

    def streams(self) -> list[tuple[str, str, str]]:
        """``(extractor, stream, level)`` for every stored stream."""
        out = []
        for ex, ref in sorted(self.files.items()):
            try:
                with open_item(ref) as f:
                    for name in sorted(f.keys()):
                        if name != "frames":
                            out.append((ex, name, str(f[name].attrs.get("level", "frame"))))
            except OSError:
                continue
        return out

    def labels(self, extractor: str, stream: str) -> list[str]:
        """Dimension names of a stream."""
        with open_item(self.files[extractor]) as f:
            return list(f[stream]["labels"].asstr()[:])

    def aligned_blocks(
        self, extractor: str, stream: str, block: int = 4096
    ) -> Iterator[tuple[int, np.ndarray, np.ndarray]]:
        """Yield ``(first_frame, data, mask)`` blocks of the frame-aligned view."""
        if extractor not in self.files:
            raise KeyError(f"{self.key}: no stored extractor {extractor!r}")
        with open_item(self.files[extractor]) as f:
            g = f[stream]
            n = g["aligned/row"].shape[0]
            for a in range(0, n, block):
                yield (a, *aligned_view(g, a, a + block))

    def read_aligned(
        self, extractor: str, stream: str, start: int, stop: int
    ) -> tuple[np.ndarray, np.ndarray]:
        """Frames ``start:stop`` of a stream's frame-aligned view: ``(data, mask)``."""
        if extractor not in self.files:
            raise KeyError(f"{self.key}: no stored extractor {extractor!r}")
        with open_item(self.files[extractor]) as f:
            return aligned_view(f[stream], start, stop)

    def provenance(self, extractor: str) -> dict[str, Any]:
        """The source item's attributes."""
        return read_attrs(self.files[extractor])


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


def read_attrs(ref: ItemRef) -> dict[str, Any]:
    """The root attributes of an item (provenance), JSON values decoded."""
    with open_item(ref) as f:
        return item_attrs_of(f)


def item_attrs_of(g: h5py.Group) -> dict[str, Any]:
    """An item's provenance: the ``provenance`` JSON attribute of an item file (format 2)
    or of its group in a shard, with the other root attributes (``complete``, ``mask``)
    over it; an item file of format 1 has every value as a root attribute."""
    out = decode_attrs(g.attrs)
    prov = out.pop("provenance", None)  # decode_attrs turned the JSON object into a dict
    if isinstance(prov, str):  # not a JSON object: left as text by decode_attrs
        prov = json.loads(prov)
    return {**prov, **out} if isinstance(prov, dict) else out


def aligned_view(
    s: h5py.Group, start: int = 0, stop: int | None = None
) -> tuple[np.ndarray, np.ndarray]:
    """Frames ``start:stop`` of a stream's frame-aligned view: ``(data, mask)``.

    An item file stores the view (``aligned/data``); a shard stores only which native row
    each frame takes (``aligned/row``, -1: none) and the view is gathered from the native
    rows here (NaN where no row).
    """
    mask = valid_rows(s, "aligned/mask", start, stop)
    if "aligned/data" in s:
        return s["aligned/data"][start:stop], mask
    row = s["aligned/row"][start:stop]
    ok = row >= 0
    if not ok.any():
        return np.full((len(row), s["data"].shape[1]), np.nan, np.float32), mask
    lo, hi = int(row[ok].min()), int(row[ok].max()) + 1
    return gather_rows(s["data"][lo:hi], np.where(ok, row - lo, -1)), mask


def shard_item(src: h5py.Group, dst: h5py.Group, shared: h5py.Group) -> None:
    """Write an item (its file's root group ``src``) into its group ``dst`` of a shard.

    A shard keeps what cannot be derived, in as few HDF5 objects as possible, because for
    short inputs the objects cost more than the data: every dataset is one compressed
    chunk; the frame-aligned view is not stored (``aligned/row`` gives it, see
    :func:`aligned_view`); dimension names are stored once per shard and hard-linked
    (``shared``); the provenance attributes are one JSON attribute, ``provenance``.
    """
    dst.attrs["provenance"] = np.bytes_(json.dumps(item_attrs_of(src), sort_keys=True))
    for name, obj in src.items():
        if name == "frames":
            g = dst.create_group("frames")
            _compressed(g, "times", obj["times"][()])
            for k, v in obj.attrs.items():
                g.attrs[k] = v
            continue
        g = dst.create_group(name)
        for k, v in obj.attrs.items():
            g.attrs[k] = v
        for part in ("data", "times"):
            _compressed(g, part, obj[part][()])
        _valid(g, "mask", obj["mask"][()])
        labels = obj["labels"][()]
        tag = hashlib.sha256(
            b"\0".join(x if isinstance(x, bytes) else x.encode() for x in labels)
        ).hexdigest()[:16]
        if tag not in shared:
            shared.create_dataset(tag, data=labels, dtype=obj["labels"].dtype)
        g["labels"] = shared[tag]  # a hard link: no copy
        _compressed(g, "aligned/row", obj["aligned/row"][()].astype(np.int32))
        _valid(g, "aligned/mask", obj["aligned/mask"][()])


def valid_rows(s: h5py.Group, name: str, start: int = 0, stop: int | None = None) -> np.ndarray:
    """A stream's ``mask`` or ``aligned/mask`` (rows ``start:stop``). In a shard a mask
    that is all valid is not stored (attribute ``all_valid`` lists it)."""
    if name in s:
        return np.asarray(s[name][start:stop], dtype=bool)
    n = (s["data"] if name == "mask" else s["aligned/row"]).shape[0]
    return np.ones(len(range(n)[start:stop]), dtype=bool)


def _valid(g: h5py.Group, name: str, mask: np.ndarray) -> None:
    if len(mask) and mask.all():
        g.attrs["all_valid"] = " ".join([*str(g.attrs.get("all_valid", "")).split(), name])
        return
    _compressed(g, name, mask)


def _compressed(g: h5py.Group, name: str, data: np.ndarray) -> None:
    """One dataset, one gzip chunk (up to 4 MiB; larger data in chunks of about 1 MiB)."""
    if data.size == 0:
        g.create_dataset(name, data=data)
        return
    row = max(1, data.nbytes // max(1, data.shape[0]))
    rows = data.shape[0] if data.nbytes <= 4 << 20 else max(1, (1 << 20) // row)
    g.create_dataset(
        name,
        data=data,
        chunks=(rows, *data.shape[1:]),
        compression="gzip",
        compression_opts=4,
        shuffle=data.dtype.itemsize > 1,
    )
