"""The feature store: crash-safe, frame-aligned HDF5 (layout in docs/store.md).

A store named ``feats.h5`` is two things side by side:

* ``feats.h5`` - the *index*: a small HDF5 file with one external link per item
  (``/items/<input>/<extractor>``) and the run log (``/log``). It is only ever replaced
  atomically (copy, change, fsync, rename), so a reader or a crash sees either the old or
  the new index, never a half-written one.
* ``feats.h5.d/`` - one HDF5 file per item (input x extractor). An item file is written
  under ``.staging/`` (:func:`staged_item_path`; the writer is :mod:`emofeat.itemfile`),
  fsynced, and renamed into place when complete; it is never changed afterwards
  (``--overwrite`` writes a new file and renames it over the old one).

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
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import h5py
import numpy as np
import pandas as pd

from emofeat._version import __version__
from emofeat.errors import StoreError, StoreInUseError
from emofeat.extractor import StreamSpec
from emofeat.itemfile import ALIGNMENT_RULE as ALIGNMENT_RULE
from emofeat.itemfile import FORMAT_VERSION as FORMAT_VERSION
from emofeat.itemfile import ItemWriter as ItemWriter
from emofeat.itemfile import StoredInput as StoredInput
from emofeat.itemfile import StreamData as StreamData
from emofeat.itemfile import decode_attrs, fsync_path

FORMAT_NAME = "emofeat-store"
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


def staged_item_path(staging_dir: str | os.PathLike, key: str, extractor: str) -> Path:
    """A new, unique staging file for the item ``key`` x ``extractor``.

    The one place that names staged item files (``<key>.<extractor>.<uuid>.h5``): the store
    (:meth:`FeatureStore.new_item`) and the engine's per-input work, which may run in another
    process or on another machine that sees the same folder, both use it.
    """
    return Path(staging_dir) / f"{safe_name(key)}.{safe_name(extractor)}.{uuid.uuid4().hex}.h5"


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
            self.staging_dir.mkdir(parents=True, exist_ok=True)
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
        for leftover in self.staging_dir.iterdir():
            leftover.unlink(missing_ok=True)
        if not self.path.exists():
            tmp = self.staging_dir / f"index-{uuid.uuid4().hex}.h5"
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
        fsync_path(tmp)
        os.replace(tmp, self.path)
        fsync_path(self.path.parent if str(self.path.parent) else Path("."), directory=True)

    @property
    def staging_dir(self) -> Path:
        """Where files are written before they are committed (``feats.h5.d/.staging``).

        Never visible to readers; what a killed writer leaves there is removed by the next
        writer. Per-input work elsewhere (worker processes) stages its item files here too.
        """
        return self.dir / ".staging"

    def item_path(self, key: str, extractor: str) -> Path:
        """Where the item file of ``key`` x ``extractor`` lives once committed."""
        return self.dir / "items" / safe_name(key) / f"{safe_name(extractor)}.h5"

    def new_item(self, key: str, extractor: str, streams: list[StreamSpec]) -> ItemWriter:
        """Start writing an item in the staging area."""
        self._require_writer()
        return ItemWriter(
            staged_item_path(self.staging_dir, key, extractor), key, extractor, streams
        )

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
            fsync_path(final.parent, directory=True)
        tmp = self.staging_dir / f"index-{uuid.uuid4().hex}.h5"
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
                return decode_attrs(f.attrs)
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
                    attrs = decode_attrs(item.attrs)
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


def open_store(path: str | os.PathLike) -> FeatureStore:
    """Open a feature store for reading.

    Example:
        >>> store = open_store("feats.h5")  # doctest: +SKIP
        >>> store.to_frame("egemaps", "lld")  # doctest: +SKIP
    """
    return FeatureStore(path, mode="r")
