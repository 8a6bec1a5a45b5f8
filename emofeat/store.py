"""The feature store: crash-safe, frame-aligned HDF5 (layout in docs/store.md).

A store named ``feats.h5`` is two things side by side:

* ``feats.h5`` - the *index*: a small HDF5 file with one external link per item
  (``/items/<input>/<extractor>``) and the run log (``/log``). It is only ever replaced
  atomically (copy, change, fsync, rename), so a reader or a crash sees either the old or
  the new index, never a half-written one.
* ``feats.h5.d/`` - one HDF5 file per item (input x extractor). An item file is written
  under ``.staging/``, fsynced, and renamed into place when complete; it is never changed
  afterwards (``--overwrite`` writes a new file and renames it over the old one).

Why not one big HDF5 file: a SIGKILL while HDF5 appends to a file can leave the whole file
unreadable (measured: docs/architecture.md), so no write may touch a file that already
holds completed items unless it is atomic. Plain h5py follows the external links, so
``h5py.File("feats.h5")["items/video1/egemaps/lld/data"]`` just works.

The store holds no pickled objects: configs and provenance are JSON strings.
"""

from __future__ import annotations

import errno
import fcntl
import hashlib
import json
import os
import re
import shutil
import time
import uuid
from collections.abc import Iterator
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import h5py
import numpy as np
import pandas as pd

from emofeat._version import __version__
from emofeat.errors import StoreError, StoreInUseError
from emofeat.extractor import Rows, StreamSpec
from emofeat.media import FrameGrid
from emofeat.timeline import align_to_frames, gather_rows

FORMAT_NAME = "emofeat-store"
FORMAT_VERSION = 1
ALIGNMENT_RULE = "nearest-centre-covering-v2"
"""Name of the alignment rule (:mod:`emofeat.timeline`) recorded in every item file as its
``alignment`` attribute; renamed whenever the rule changes the stored aligned views, so that
``emofeat extract`` redoes items aligned under an older rule. v1: ties went to the earlier
row even when it did not cover the frame; v2: a covering row wins the tie."""
_STR = h5py.string_dtype("utf-8")
_UNSAFE = re.compile(r"[^A-Za-z0-9._+\-]")


def safe_name(name: str) -> str:
    """A name usable both as an HDF5 group name and as a file name."""
    safe = _UNSAFE.sub("_", name).strip(".") or "_"
    return safe


def source_identity(path: str | os.PathLike, content_hash: bool = True) -> dict[str, Any]:
    """Identity of an input file or image folder: size, mtime and a content hash.

    Files are hashed in full (sha256). Image folders are hashed over the sorted list of
    (file name, size, mtime) - hashing every frame image of a corpus would cost more than
    extracting from it.
    """
    p = Path(path)
    st = p.stat()
    ident: dict[str, Any] = {
        "path": str(p.resolve()),
        "size": st.st_size,
        "mtime_ns": st.st_mtime_ns,
    }
    h = hashlib.sha256()
    if p.is_dir():
        entries = sorted(os.scandir(p), key=lambda e: e.name)
        total = 0
        for e in entries:
            if e.is_file():
                est = e.stat()
                total += est.st_size
                h.update(f"{e.name}\0{est.st_size}\0{est.st_mtime_ns}\n".encode())
        ident.update(size=total, hash="sha256-listing:" + h.hexdigest())
    elif content_hash:
        with open(p, "rb") as f:
            for block in iter(lambda: f.read(1 << 20), b""):
                h.update(block)
        ident["hash"] = "sha256:" + h.hexdigest()
    return ident


def same_source(a: dict[str, Any], b: dict[str, Any]) -> bool:
    """True when two identities describe unchanged content (size + mtime, or hash)."""
    if a.get("size") != b.get("size"):
        return False
    if a.get("mtime_ns") == b.get("mtime_ns"):
        return True
    return bool(a.get("hash")) and a.get("hash") == b.get("hash")


def config_hash(config: dict[str, Any]) -> str:
    """Stable short hash of a JSON-serialisable config."""
    return hashlib.sha256(json.dumps(config, sort_keys=True).encode()).hexdigest()[:16]


def _fsync_path(path: Path, directory: bool = False) -> None:
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
            self._create(Rows(stream, np.zeros((0, len(labels))), [], []), labels)

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
        _fsync_path(self.path)

    def abort(self) -> None:
        """Discard the staging file."""
        try:
            self.file.close()
        except Exception:
            pass
        self.path.unlink(missing_ok=True)


# --------------------------------------------------------------------------------------
# Masking: an item's rows made invalid where another item's 0/1 stream is off (the common
# ``mask`` setting). Applied by the engine to a staged, not yet committed item file.


def mask_streams(path: Path) -> list[tuple[str, int]]:
    """``(stream, dims)`` of an item file in the extractor's declared order."""
    with h5py.File(path, "r") as f:
        names = [n for n in f.keys() if n != "frames"]
        order = f.attrs.get("streams")
        declared = json.loads(order) if order is not None else []
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
    path: Path, source: Path, stream: str, mask_min: float, record: dict[str, Any] | None = None
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
    with h5py.File(source, "r") as f:
        g = f[stream]
        times = g["times"][:]
        on = g["mask"][:] & (g["data"][:, 0] >= 0.5)  # NaN compares False: inactive
    masked: dict[str, int] = {}
    with h5py.File(path, "r+") as f:
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
        f.flush()
    _fsync_path(path)
    return masked


class FeatureStore:
    """A feature store on disk (see the module docstring and docs/store.md).

    Open one for reading with :func:`open_store`; the engine opens it for writing with
    ``FeatureStore(path, mode="a")``, which takes an exclusive lock.

    Args:
        path: the index file, e.g. ``feats.h5``; items live in ``feats.h5.d/``.
        mode: ``"r"`` (read only) or ``"a"`` (create if missing, write; exclusive).
    """

    def __init__(self, path: str | os.PathLike, mode: str = "r") -> None:
        self.path = Path(path)
        self.dir = self.path.with_name(self.path.name + ".d")
        self.mode = mode
        self._lock_fd: int | None = None
        if mode == "r":
            if not self.path.exists():
                raise StoreError(f"{self.path}: no such store")
            self._check_index(self.path)
        elif mode == "a":
            self._open_for_writing()
        else:
            raise ValueError(f"mode must be 'r' or 'a', not {mode!r}")

    # -- opening ----------------------------------------------------------------------
    def _check_index(self, path: Path) -> None:
        try:
            with h5py.File(path, "r") as f:
                fmt = f.attrs.get("format")
                ver = f.attrs.get("format_version")
        except OSError as exc:
            raise StoreError(f"{path}: not an HDF5 file or unreadable ({exc})") from exc
        if fmt != FORMAT_NAME:
            raise StoreError(f"{path}: an HDF5 file, but not an emofeat store")
        if ver is None or int(ver) > FORMAT_VERSION:
            raise StoreError(
                f"{path}: store format version {ver} is newer than this emofeat supports "
                f"({FORMAT_VERSION}); upgrade emofeat"
            )

    def _open_for_writing(self) -> None:
        parent = self.path.parent if str(self.path.parent) else Path(".")
        if self.path.exists():
            self._check_index(self.path)
        if parent.exists() and not parent.is_dir():
            raise StoreError(f"{self.path}: cannot write here: {parent} is a file, not a folder")
        if not parent.is_dir():
            raise StoreError(f"{self.path}: cannot write here: folder {parent} does not exist")
        if not os.access(parent, os.W_OK | os.X_OK):
            raise StoreError(
                f"{self.path}: cannot write here: folder {parent} is not writable "
                "(permission denied)"
            )
        try:
            (self.dir / ".staging").mkdir(parents=True, exist_ok=True)
            fd = os.open(self.dir / ".lock", os.O_RDWR | os.O_CREAT, 0o644)
        except OSError as exc:
            raise StoreError(
                f"{self.path}: cannot write here: cannot create {self.dir} ({exc.strerror})"
            ) from exc
        try:
            fcntl.flock(fd, fcntl.LOCK_EX | fcntl.LOCK_NB)
        except OSError as exc:
            holder = os.pread(fd, 200, 0).decode(errors="replace").strip()
            os.close(fd)
            if exc.errno in (errno.EWOULDBLOCK, errno.EACCES):
                raise StoreInUseError(
                    f"{self.path}: in use: another emofeat process is writing this store "
                    f"({holder or 'unknown process'}); wait for it to finish"
                ) from exc
            raise
        os.ftruncate(fd, 0)
        os.pwrite(fd, f"pid {os.getpid()} since {time.strftime('%Y-%m-%d %H:%M:%S')}".encode(), 0)
        self._lock_fd = fd
        # a killed run leaves staging files behind: they were never visible, drop them
        for leftover in (self.dir / ".staging").iterdir():
            leftover.unlink(missing_ok=True)
        if not self.path.exists():
            tmp = self.dir / ".staging" / f"index-{uuid.uuid4().hex}.h5"
            with h5py.File(tmp, "w", libver=("v110", "latest")) as f:
                f.attrs["format"] = FORMAT_NAME
                f.attrs["format_version"] = FORMAT_VERSION
                f.attrs["created_by"] = f"emofeat {__version__}"
                f.attrs["created"] = time.strftime("%Y-%m-%dT%H:%M:%S%z")
                f.attrs["alignment"] = ALIGNMENT_RULE
                f.create_group("items")
                # JSON lines as bytes: appending never grows a string heap (which variable-
                # length strings do on every reopen), so the index stays small
                f.create_dataset("log", shape=(0,), maxshape=(None,), dtype="u1", chunks=(65536,))
            self._replace_index(tmp)

    def close(self) -> None:
        """Release the write lock (reading stores hold nothing open)."""
        if self._lock_fd is not None:
            fcntl.flock(self._lock_fd, fcntl.LOCK_UN)
            os.close(self._lock_fd)
            self._lock_fd = None

    def __enter__(self) -> FeatureStore:
        return self

    def __exit__(self, *exc: object) -> None:
        self.close()

    # -- writing ----------------------------------------------------------------------
    def _require_writer(self) -> None:
        if self._lock_fd is None:
            raise StoreError(f"{self.path}: opened read-only")

    def _replace_index(self, tmp: Path) -> None:
        _fsync_path(tmp)
        os.replace(tmp, self.path)
        _fsync_path(self.path.parent if str(self.path.parent) else Path("."), directory=True)

    def item_path(self, key: str, extractor: str) -> Path:
        """Where the item file of ``key`` x ``extractor`` lives once committed."""
        return self.dir / "items" / safe_name(key) / f"{safe_name(extractor)}.h5"

    def new_item(self, key: str, extractor: str, streams: list[StreamSpec]) -> ItemWriter:
        """Start writing an item in the staging area."""
        self._require_writer()
        tmp = (
            self.dir / ".staging" / f"{safe_name(key)}.{safe_name(extractor)}.{uuid.uuid4().hex}.h5"
        )
        return ItemWriter(tmp, key, extractor, streams)

    def commit(self, items: list[tuple[str, str, Path]], log: list[dict[str, Any]]) -> None:
        """Make finished items visible and append run-log entries, atomically.

        Args:
            items: ``(key, extractor, staged_file)`` triples of finalized item files.
            log: run-log entries (JSON-serialisable dicts).
        """
        self._require_writer()
        try:
            self._commit(items, log)
        except OSError as exc:
            raise StoreError(f"{self.path}: cannot write the store ({exc})") from exc

    def _commit(self, items: list[tuple[str, str, Path]], log: list[dict[str, Any]]) -> None:
        for key, extractor, staged in items:
            final = self.item_path(key, extractor)
            final.parent.mkdir(parents=True, exist_ok=True)
            os.replace(staged, final)
            _fsync_path(final.parent, directory=True)
        tmp = self.dir / ".staging" / f"index-{uuid.uuid4().hex}.h5"
        try:
            self._write_index(tmp, items, log)
        finally:
            tmp.unlink(missing_ok=True)

    def _write_index(
        self, tmp: Path, items: list[tuple[str, str, Path]], log: list[dict[str, Any]]
    ) -> None:
        shutil.copyfile(self.path, tmp)
        # the live index is never modified in place (copy, change, rename), so the newer
        # compact file format is safe here and keeps per-item overhead small
        with h5py.File(tmp, "a", libver=("v110", "latest")) as f:
            for key, extractor, _ in items:
                g = f.require_group(f"items/{safe_name(key)}")
                if "key" not in g.attrs:  # fixed-length bytes: no global-heap block per commit
                    g.attrs["key"] = np.bytes_(key.encode())
                name = safe_name(extractor)
                if name in g:
                    del g[name]
                rel = os.path.relpath(self.item_path(key, extractor), self.path.parent)
                g[name] = h5py.ExternalLink(rel, "/")
            if log:
                ds = f["log"]
                data = "".join(json.dumps(e, sort_keys=True) + "\n" for e in log).encode()
                n0 = ds.shape[0]
                ds.resize(n0 + len(data), axis=0)
                ds[n0:] = np.frombuffer(data, np.uint8)
        self._replace_index(tmp)

    # -- reading ----------------------------------------------------------------------
    def _index(self) -> h5py.File:
        return h5py.File(self.path, "r")

    def items(self) -> list[str]:
        """Input keys that hold at least one item."""
        with self._index() as f:
            return sorted(f["items"].keys())

    def extractors(self, key: str) -> list[str]:
        """Extractors stored for an input."""
        with self._index() as f:
            g = f["items"].get(safe_name(key))
            return sorted(g.keys()) if g is not None else []

    def _item_file(self, key: str, extractor: str) -> Path:
        with self._index() as f:
            g = f["items"].get(safe_name(key))
            if g is None or safe_name(extractor) not in g:
                raise KeyError(f"{self.path}: no item {key!r} x {extractor!r}")
            link = g.get(safe_name(extractor), getlink=True)
        return self._linked(link)

    def _linked(self, link: h5py.ExternalLink) -> Path:
        """The item file an index link points at (links are relative to the index)."""
        return (self.path.parent / link.filename).resolve()

    def item_attrs(self, key: str, extractor: str) -> dict[str, Any] | None:
        """Provenance attributes of an item (JSON values decoded); None if absent."""
        try:
            path = self._item_file(key, extractor)
            with h5py.File(path, "r") as f:
                if not f.attrs.get("complete", False):
                    return None
                return _decode_attrs(f.attrs)
        except (KeyError, OSError):
            return None

    def catalog(self) -> list[ItemInfo]:
        """Every complete item with what identifies it, opening the index and each item once.

        Unreadable or incomplete items are left out (``emofeat inspect`` reports them).
        """
        out: list[ItemInfo] = []
        with self._index() as f:
            links = [
                (key, ex, f["items"][key].get(ex, getlink=True))
                for key in f["items"].keys()
                for ex in f["items"][key].keys()
            ]
        for key, ex, link in links:
            try:
                with h5py.File(self._linked(link), "r") as item:
                    if not item.attrs.get("complete", False):
                        continue
                    attrs = _decode_attrs(item.attrs)
                    names = tuple(sorted(n for n in item.keys() if n != "frames"))
                    n = int(item["frames/times"].shape[0]) if "frames/times" in item else 0
            except OSError:
                continue
            out.append(ItemInfo(self, key, ex, names, n, attrs))
        return out

    def streams(self, key: str, extractor: str) -> list[str]:
        """Stream names of an item."""
        with h5py.File(self._item_file(key, extractor), "r") as f:
            return sorted(n for n in f.keys() if n != "frames")

    def read(
        self, key: str, extractor: str, stream: str | None = None, aligned: bool = False
    ) -> StreamData:
        """Read one stream into memory.

        Args:
            key: the input's key (see :meth:`items`).
            extractor: extractor name.
            stream: stream name; may be omitted when the extractor has a single stream.
            aligned: return the frame-aligned view (one row per frame of the input).
        """
        path = self._item_file(key, extractor)
        with h5py.File(path, "r") as f:
            names = [n for n in f.keys() if n != "frames"]
            if stream is None:
                if len(names) != 1:
                    raise KeyError(f"{key} x {extractor}: choose a stream among {sorted(names)}")
                stream = names[0]
            if stream not in f:
                raise KeyError(f"{key} x {extractor}: no stream {stream!r} (has {sorted(names)})")
            g = f[stream]
            labels = [s.decode() if isinstance(s, bytes) else s for s in g["labels"][:]]
            if aligned:
                return StreamData(
                    g["aligned/data"][:],
                    f["frames/times"][:],
                    g["aligned/mask"][:],
                    labels,
                    True,
                    g["aligned/row"][:],
                )
            return StreamData(g["data"][:], g["times"][:], g["mask"][:], labels, False)

    def to_frame(
        self,
        extractor: str,
        stream: str | None = None,
        keys: list[str] | None = None,
        aligned: bool = False,
        apply_mask: bool = True,
    ) -> pd.DataFrame:
        """Features as a DataFrame indexed by ``(file, start, end)`` like opensmile.

        ``file`` is the input's source path, ``start``/``end`` are ``pd.Timedelta``.
        Invalid rows hold NaN when ``apply_mask`` is true.
        """
        frames = []
        for key in keys if keys is not None else self.items():
            if extractor not in self.extractors(key):
                continue
            sd = self.read(key, extractor, stream, aligned=aligned)
            attrs = self.item_attrs(key, extractor) or {}
            file = (attrs.get("source") or {}).get("path", key)
            data = sd.data.copy()
            if apply_mask:
                data[~sd.mask] = np.nan
            index = pd.MultiIndex.from_arrays(
                [
                    [file] * len(data),
                    pd.to_timedelta(sd.times[:, 0], unit="s"),
                    pd.to_timedelta(sd.times[:, 1], unit="s"),
                ],
                names=["file", "start", "end"],
            )
            frames.append(pd.DataFrame(data, index=index, columns=sd.labels))
        if not frames:
            raise KeyError(f"{self.path}: no items of extractor {extractor!r}")
        return pd.concat(frames)

    def run_log(self) -> pd.DataFrame:
        """Every recorded outcome, oldest first, as a DataFrame."""
        with self._index() as f:
            raw = f["log"][:].tobytes().decode()
        entries = [json.loads(line) for line in raw.splitlines() if line]
        return pd.DataFrame(entries)

    def stored_input(self, key: str, extra: dict[str, Path] | None = None) -> StoredInput:
        """Access to the streams of one input, for ``features`` extractors."""
        files: dict[str, Path] = {}
        for ex in self.extractors(key):
            try:
                files[ex] = self._item_file(key, ex)
            except KeyError:
                continue
        files.update(extra or {})
        return StoredInput(key, files)


@dataclass(frozen=True, eq=False)
class ItemInfo:
    """One stored item as listed by :meth:`FeatureStore.catalog`.

    Attributes:
        store: the store holding it.
        key: the input's key.
        extractor: extractor name.
        streams: stream names.
        n_frames: frames of the input's frame grid (rows of every aligned view).
        attrs: provenance attributes (``source``, ``media``, ``config``, ``created``, ...).
    """

    store: FeatureStore
    key: str
    extractor: str
    streams: tuple[str, ...]
    n_frames: int
    attrs: dict[str, Any]

    @property
    def source(self) -> Path | None:
        """The input file or image folder the item was made from, as recorded."""
        path = (self.attrs.get("source") or {}).get("path")
        return Path(path) if path else None

    @property
    def kind(self) -> str:
        """``"video"``, ``"audio"`` or ``"images"`` (an image-sequence folder)."""
        return str((self.attrs.get("media") or {}).get("kind") or "")

    @property
    def settings(self) -> dict[str, Any]:
        """The extractor settings the item was made with."""
        return dict((self.attrs.get("config") or {}).get("settings") or {})


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
            return _decode_attrs(f.attrs)


def _decode_attrs(attrs: h5py.AttributeManager) -> dict[str, Any]:
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


def open_store(path: str | os.PathLike) -> FeatureStore:
    """Open a feature store for reading.

    Example:
        >>> store = open_store("feats.h5")  # doctest: +SKIP
        >>> store.to_frame("egemaps", "lld")  # doctest: +SKIP
    """
    return FeatureStore(path, mode="r")
