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

import ctypes
import errno
import fcntl
import functools
import hashlib
import json
import os
import re
import shutil
import time
import uuid
import zlib
from collections.abc import Callable, Iterable, Iterator
from contextlib import contextmanager
from dataclasses import dataclass, field
from pathlib import Path
from typing import TYPE_CHECKING, Any

import h5py
import numpy as np

if TYPE_CHECKING:
    import pandas as pd

from emofeat import faults
from emofeat._version import __version__
from emofeat.errors import StoreError, StoreInUseError, StoreWriteError
from emofeat.extractor import Rows, StreamSpec
from emofeat.itemfile import ALIGNMENT_RULE as ALIGNMENT_RULE
from emofeat.itemfile import FORMAT_VERSION as FORMAT_VERSION
from emofeat.itemfile import (
    GuardedFile,
    ItemRef,
    aligned_view,
    describe_item,
    edge_digest,
    file_digests,
    fsync_path,
    item_attrs_of,
    open_h5,
    shard_item,
    valid_rows,
)
from emofeat.itemfile import ItemWriter as ItemWriter
from emofeat.itemfile import StoredInput as StoredInput
from emofeat.itemfile import StreamData as StreamData

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


STORE_VERSION = 2
"""Version of the store's layout (the index and its journal), recorded in the index as
``format_version``. 1: external links and the run log only. 2: adds the catalog (what is
known about each item: checksums, provenance, stream shapes) and the commit journal. Stores
of version 1 are read as they are and upgraded when next opened for writing."""

JOURNAL_LIMIT = 512
"""Commits kept in the journal before they are folded into the index (a checkpoint)."""

SYNC_INTERVAL = 1.0
"""Seconds between group syncs (:meth:`FeatureStore.sync`). A commit is complete (every
reader sees it, a killed writer keeps it) once its journal record is written; it is on disk
(it survives a power cut) once the next group sync is done. A power cut in between loses at
most the commits of the last interval: the next writer finds their items damaged or missing
and removes them (:meth:`FeatureStore._drop_lost`), so an item is complete or absent."""


def _syncfs(folder: Path) -> bool:
    """``syncfs(2)`` on the file system holding ``folder``: everything written to it reaches
    the disk in one call, instead of one fsync per file (each a journal commit). The
    standard library offers only ``os.sync`` (every file system of the machine), hence
    ctypes. False where the call is not available (then fsync each file).

    Raises:
        OSError: the call failed (a full or failing disk).
    """
    libc = _libc()
    if libc is None:
        return False
    fd = os.open(folder, os.O_RDONLY | os.O_DIRECTORY)
    try:
        if libc.syncfs(fd) != 0:
            err = ctypes.get_errno()
            raise OSError(err, os.strerror(err), str(folder))
    finally:
        os.close(fd)
    return True


@functools.cache
def _libc() -> Any:
    """The C library when it offers ``syncfs`` (else None)."""
    try:
        libc = ctypes.CDLL(None, use_errno=True)
    except OSError:
        return None
    return libc if hasattr(libc, "syncfs") else None


_F_STAGED = faults.declare("commit:staged", "before the first staged item is renamed in")
_F_RENAMED = faults.declare("commit:renamed", "items renamed in, no journal record yet")
_F_TORN = faults.declare("commit:journal-torn", "half of the journal record written")
_F_JOURNALED = faults.declare("commit:journaled", "journal record written")
_F_CK_WRITTEN = faults.declare("checkpoint:written", "new index and journal written, not in place")
_F_CK_REPLACED = faults.declare(
    "checkpoint:replaced", "new index in place, old journal not removed"
)
_F_CP_WRITTEN = faults.declare("compact:written", "shard written in staging, not in place")
_F_CP_RENAMED = faults.declare("compact:renamed", "shard in place, no journal record yet")
_F_CP_JOURNALED = faults.declare("compact:journaled", "record written, moved files not removed")
_F_CP_DROPPING = faults.declare("compact:dropping", "half of the moved item files removed")

COMPACT_MAX_ITEM = 1 << 20
"""Item files up to this many bytes are merged into shards by :meth:`FeatureStore.compact`;
larger ones stay files of their own (their HDF5 overhead is small next to their data)."""

COMPACT_SHARD_ITEMS = 20000
"""At most this many items per shard file."""


@dataclass
class _Entry:
    """What the index knows about one committed item."""

    key: str
    extractor: str
    file: str  # relative to the index's folder
    meta: dict[str, Any] | None = None  # emofeat.itemfile.describe_item; None: older store
    group: str = "/"  # "/": an item file of its own; "/<key>/<extractor>" in a shard

    def record(self, profiles: dict[str, dict[str, Any]]) -> dict[str, Any]:
        """The entry as a catalog line; the attributes it shares with other items (settings,
        plugin, licence...) go into ``profiles`` (profile id -> attributes), the line names
        the profile."""
        meta = self.meta
        if meta is not None:
            attrs = meta["attrs"]
            shared = {k: v for k, v in attrs.items() if k not in _OWN_ATTRS}
            pid = hashlib.sha256(json.dumps(shared, sort_keys=True).encode()).hexdigest()[:16]
            profiles[pid] = shared
            own = {k: v for k, v in attrs.items() if k in _OWN_ATTRS}
            meta = {**meta, "attrs": own, "profile": pid}
        rec = {"key": self.key, "extractor": self.extractor, "file": self.file, "meta": meta}
        if self.group != "/":
            rec["group"] = self.group
        return rec


_OWN_ATTRS = frozenset(
    {"key", "item_id", "created", "source", "media", "warnings", "mask", "source_items"}
)
"""Item attributes that differ from item to item; the others are kept once per profile."""


def _records(entries: list[_Entry]) -> dict[str, Any]:
    """Catalog lines of entries and the profiles they name (a journal record's body)."""
    profiles: dict[str, dict[str, Any]] = {}
    items = [e.record(profiles) for e in entries]
    return {"items": items, "profiles": profiles}


def _apply_item(
    entries: dict[str, dict[str, _Entry]], profiles: dict[str, Any], it: dict[str, Any]
) -> None:
    """One catalog line into the entries: a new or replaced item, or a moved one."""
    sk, sx = safe_name(it["key"]), safe_name(it["extractor"])
    if it.get("removed"):  # lost in a power cut (FeatureStore._drop_lost)
        by_ex = entries.get(sk, {})
        by_ex.pop(sx, None)
        if not by_ex:
            entries.pop(sk, None)
        return
    if it.get("moved"):  # compaction: same item, now in a shard
        e = entries.get(sk, {}).get(sx)
        if e is not None:
            e.file, e.group = it["file"], it.get("group", "/")
        return
    meta = it.get("meta")
    if meta is not None and "profile" in meta:
        meta = dict(meta)
        meta["attrs"] = {**profiles.get(meta.pop("profile"), {}), **meta["attrs"]}
    entries.setdefault(sk, {})[sx] = _Entry(
        it["key"], it["extractor"], it["file"], meta, it.get("group", "/")
    )


@dataclass
class _Snapshot:
    """A consistent view of the store: the index plus the journal records after it."""

    version: int
    entries: dict[str, dict[str, _Entry]]  # safe key -> safe extractor -> entry
    journal: str  # the journal file continuing this index ("" for a version-1 store)
    applied: int  # sequence number of the last commit folded into the index
    seq: int  # sequence number of the last commit seen (index or journal)
    journal_log: list[dict[str, Any]]
    journal_size: int  # bytes of valid records in the journal
    shards: dict[str, dict[str, Any]] = field(default_factory=dict)  # file -> size, digests
    profiles: dict[str, dict[str, Any]] = field(default_factory=dict)  # id -> shared attrs
    signature: tuple[int, ...] = ()


def _journal_line(record: dict[str, Any]) -> bytes:
    payload = json.dumps(record, sort_keys=True, separators=(",", ":")).encode()
    return payload + b"\t%08x\n" % zlib.crc32(payload)


def _parse_journal(raw: bytes) -> tuple[list[dict[str, Any]], int]:
    """The valid records of a journal and the bytes they take.

    Reading stops at the first line that is incomplete or fails its CRC: a record is appended
    (and synced) before its commit counts, so a torn last record is a commit that never
    happened.
    """
    records: list[dict[str, Any]] = []
    pos = 0
    while True:
        end = raw.find(b"\n", pos)
        if end < 0:
            break
        payload, _, crc = raw[pos:end].rpartition(b"\t")
        try:
            if int(crc, 16) != zlib.crc32(payload):
                break
            records.append(json.loads(payload))
        except ValueError:
            break
        pos = end + 1
    return records, pos


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
        self._snap: _Snapshot | None = None
        self._unapplied: list[dict[str, Any]] = []  # journal records not yet in the index
        self._hashed: dict[tuple[Any, ...], str] = {}  # (file, inode, mtime, size) -> sha256
        self._shards: dict[str, h5py.File] = {}  # shard files open for reading
        # group sync: what commits wrote since the last sync (item files, their folders,
        # the journal), flushed to disk together at most SYNC_INTERVAL seconds later
        self._unsynced: set[tuple[Path, bool]] = set()
        self._synced_at = time.monotonic()
        self._sync_error: StoreWriteError | None = None  # a failed group sync, not yet raised
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
        if ver is None or int(ver) > STORE_VERSION:
            raise StoreError(
                f"{path}: store format version {ver} is newer than this emofeat supports "
                f"({STORE_VERSION}); upgrade emofeat"
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
        self._lock_fd = fd
        try:
            os.ftruncate(fd, 0)
            os.pwrite(fd, f"pid {os.getpid()} since {time.strftime('%F %T')}".encode(), 0)
            # a killed run leaves staging files behind: they were never visible, drop them
            for leftover in self.staging_dir.iterdir():
                leftover.unlink(missing_ok=True)
            if not self.path.exists():
                self._create_index()
            self._recover()
        except OSError as exc:
            self.close()
            raise StoreWriteError(self.dir, exc) from exc
        except BaseException:
            self.close()
            raise

    def _create_index(self) -> None:
        journal = self._new_journal(0)
        tmp = self.staging_dir / f"index-{uuid.uuid4().hex}.h5"
        guard = GuardedFile(tmp, "w")
        try:
            with open_h5(guard, "w", libver=("v110", "latest")) as f:
                f.attrs["format"] = FORMAT_NAME
                f.attrs["format_version"] = STORE_VERSION
                f.attrs["created_by"] = f"emofeat {__version__}"
                f.attrs["created"] = time.strftime("%Y-%m-%dT%H:%M:%S%z")
                f.attrs["alignment"] = ALIGNMENT_RULE
                f.attrs["journal"] = journal
                f.attrs["applied"] = 0
                f.create_group("items")
                _bytes_dataset(f, "log")
                _bytes_dataset(f, "catalog")
            guard.sync_and_close()
            self._replace_index(tmp)
        finally:
            tmp.unlink(missing_ok=True)

    def _recover(self) -> None:
        """Writer start-up: cut a torn journal record, drop orphan journals, upgrade."""
        snap = self._load()
        jpath = self.dir / snap.journal if snap.journal else None
        if jpath is not None:
            if not jpath.exists():  # killed between creating the index and its journal
                jpath.touch()
                fsync_path(self.dir, directory=True)
            elif jpath.stat().st_size != snap.journal_size:
                with open(jpath, "r+b") as j:
                    j.truncate(snap.journal_size)
                    os.fsync(j.fileno())
        for old in self.dir.glob("journal-*"):
            if old.name != snap.journal:
                old.unlink(missing_ok=True)
        self._snap = snap
        self._unapplied = self._journal_records(snap)
        # a compaction killed before its record: its shard is not referenced, remove it;
        # killed after: the item files it moved may still be there
        self._drop_unreferenced([d for rec in self._unapplied for d in rec.get("drop", [])])
        if snap.version < STORE_VERSION:
            self._upgrade()
        self._drop_lost()

    def _drop_lost(self) -> None:
        """Remove the items of journal records that did not reach the disk whole.

        A commit's record may have been written while its item's data had not reached the
        disk yet (a power cut before the group sync): such an item is damaged or missing.
        Each item the journal names is checked cheaply (size and edge digest); a bad one is
        removed, so that it is absent (the next run makes it again), and a log entry says so.
        The journal is empty after a clean close, so this reads nothing then.
        """
        assert self._snap is not None
        lost: dict[tuple[str, str], str] = {}
        for rec in self._unapplied:
            for it in rec.get("items", []):
                if it.get("moved") or it.get("removed"):
                    continue
                e = self._snap.entries.get(safe_name(it["key"]), {}).get(safe_name(it["extractor"]))
                if e is None or e.file != it["file"] or e.group != "/" or e.meta is None:
                    continue  # replaced or moved by a later record
                problem = self._check_file(self.path.parent / e.file, e.meta, full=False)
                if problem is not None:
                    lost[(e.key, e.extractor)] = problem
        if not lost:
            return
        snap = self._snapshot()
        removed = []
        for (key, extractor), _ in sorted(lost.items()):
            e = snap.entries[safe_name(key)][safe_name(extractor)]
            (self.path.parent / e.file).unlink(missing_ok=True)
            removed.append({"key": key, "extractor": extractor, "file": e.file, "removed": True})
        now = time.strftime("%Y-%m-%dT%H:%M:%S%z")
        log = [
            {
                "run": "recovery",
                "event": "item",
                "time": now,
                "input": "",
                "key": key,
                "extractor": extractor,
                "status": "removed",
                "message": f"lost before it reached the disk ({problem}): make it again",
            }
            for (key, extractor), problem in sorted(lost.items())
        ]
        record = {"seq": snap.seq + 1, "items": removed, "log": log}
        self._append_journal(snap, _journal_line(record))
        self._apply(snap, record)
        self._unapplied.append(record)
        self.checkpoint()

    def _referenced(self) -> set[str]:
        assert self._snap is not None
        return {e.file for by in self._snap.entries.values() for e in by.values()}

    def _drop_unreferenced(self, files: list[str]) -> None:
        """Remove moved item files and shard files that no item refers to any more."""
        live = self._referenced()
        shard_dir = self.dir / "shards"
        if shard_dir.is_dir():
            for shard in shard_dir.iterdir():
                if os.path.relpath(shard, self.path.parent) not in live:
                    shard.unlink(missing_ok=True)
        for rel in files:
            if rel not in live:
                _remove_item_file(self.path.parent / rel)

    def _upgrade(self) -> None:
        """Fold a version-1 store into the current layout: describe every item once."""
        assert self._snap is not None
        for by_ex in self._snap.entries.values():
            for e in by_ex.values():
                if e.meta is None:
                    try:
                        e.meta = describe_item(self.path.parent / e.file)
                    except OSError:
                        e.meta = None  # missing or unreadable: verify reports it
        self.checkpoint(force=True)

    def close(self) -> None:
        """Fold the journal into the index and release the write lock.

        A checkpoint that fails here (disk full) loses nothing: the journal keeps every
        commit and the next writer or reader uses it.
        """
        for f in self._shards.values():
            f.close()
        self._shards.clear()
        if self._lock_fd is None:
            return
        try:
            if self._unapplied:
                self.checkpoint()
            else:
                self.sync()
        except (OSError, StoreError):
            pass
        finally:
            fcntl.flock(self._lock_fd, fcntl.LOCK_UN)
            os.close(self._lock_fd)
            self._lock_fd = None

    def __enter__(self) -> FeatureStore:
        return self

    def __exit__(self, *exc: object) -> None:
        self.close()

    # -- the snapshot -----------------------------------------------------------------
    def _signature(self, journal: str) -> tuple[int, ...]:
        st = os.stat(self.path)
        sig: tuple[int, ...] = (st.st_ino, st.st_mtime_ns, st.st_size)
        if journal:
            try:
                sig += (os.stat(self.dir / journal).st_size,)
            except FileNotFoundError:
                sig += (-1,)
        return sig

    def _snapshot(self) -> _Snapshot:
        """The current view (a writer keeps its own; a reader reloads when files changed:
        two ``stat`` calls per look, so a reader never sees less than it saw before)."""
        if self._lock_fd is not None and self._snap is not None:
            return self._snap
        if self._snap is not None:
            try:
                if self._signature(self._snap.journal) == self._snap.signature:
                    return self._snap
            except OSError:
                pass
        self._snap = self._load()
        return self._snap

    def _load(self) -> _Snapshot:
        """Read the index and the journal records after it: a consistent snapshot.

        A writer's checkpoint replaces the index and then removes the journal it replaced;
        a reader that finds its journal gone has read an index that is no longer current
        and reads again.
        """
        for _ in range(100):
            try:
                signature = self._signature("")
                snap = self._read_index()
                if not snap.journal:
                    snap.signature = signature
                    return snap
                raw = (self.dir / snap.journal).read_bytes()
            except FileNotFoundError:
                time.sleep(0.01)
                continue
            except OSError as exc:
                raise StoreError(f"{self.path}: unreadable ({exc})") from exc
            records, size = _parse_journal(raw)
            snap.journal_size = size
            for rec in records:
                if rec.get("seq", 0) > snap.applied:
                    self._apply(snap, rec)
            snap.signature = signature + (len(raw),)
            return snap
        raise StoreError(f"{self.path}: the index keeps changing while being read")

    def _read_index(self) -> _Snapshot:
        try:
            with h5py.File(self.path, "r") as f:
                version = int(f.attrs.get("format_version", 1))
                journal = str(f.attrs.get("journal", ""))
                applied = int(f.attrs.get("applied", 0))
                entries: dict[str, dict[str, _Entry]] = {}
                shards: dict[str, dict[str, Any]] = {}
                profiles: dict[str, dict[str, Any]] = {}
                if "catalog" in f:
                    if "profiles" in f:
                        for line in f["profiles"][:].tobytes().splitlines():
                            profiles.update(json.loads(line))
                    for it in _json_lines(f["catalog"][:].tobytes()):
                        _apply_item(entries, profiles, it)
                    if "shards" in f:
                        for line in f["shards"][:].tobytes().splitlines():
                            shards.update(json.loads(line))
                else:  # version 1: the external links are all there is
                    for key, g in f["items"].items():
                        name = g.attrs.get("key", key)
                        name = name.decode() if isinstance(name, bytes) else str(name)
                        for ex in g.keys():
                            link = g.get(ex, getlink=True)
                            entries.setdefault(key, {})[ex] = _Entry(name, ex, link.filename)
        except FileNotFoundError:
            raise
        except (OSError, KeyError, ValueError) as exc:
            raise StoreError(f"{self.path}: the index is damaged ({exc})") from exc
        return _Snapshot(version, entries, journal, applied, applied, [], 0, shards, profiles)

    @staticmethod
    def _apply(snap: _Snapshot, rec: dict[str, Any]) -> None:
        snap.shards.update(rec.get("shards", {}))
        snap.profiles.update(rec.get("profiles", {}))
        for it in rec.get("items", []):
            _apply_item(snap.entries, snap.profiles, it)
        snap.journal_log.extend(rec.get("log", []))
        snap.seq = max(snap.seq, int(rec.get("seq", 0)))

    def _journal_records(self, snap: _Snapshot) -> list[dict[str, Any]]:
        if not snap.journal:
            return []
        try:
            raw = (self.dir / snap.journal).read_bytes()
        except FileNotFoundError:
            return []
        return [r for r in _parse_journal(raw)[0] if r.get("seq", 0) > snap.applied]

    # -- writing ----------------------------------------------------------------------
    def _require_writer(self) -> None:
        if self._lock_fd is None:
            raise StoreError(f"{self.path}: opened read-only")

    def _replace_index(self, tmp: Path) -> None:
        os.replace(tmp, self.path)
        fsync_path(self.path.parent if str(self.path.parent) else Path("."), directory=True)

    def _new_journal(self, applied: int) -> str:
        name = f"journal-{applied}-{uuid.uuid4().hex[:8]}"
        with open(self.dir / name, "wb") as j:
            os.fsync(j.fileno())
        fsync_path(self.dir, directory=True)
        return name

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

    def commit(
        self,
        items: list[tuple[str, str, Path]],
        log: list[dict[str, Any]],
        meta: dict[str, dict[str, Any]] | None = None,
    ) -> None:
        """Make finished items visible and append run-log entries, atomically.

        The items are renamed into place, then one record naming them is appended to the
        journal and synced: the commit counts once that record is whole. Every
        :data:`JOURNAL_LIMIT` commits (and when the writer closes) the journal is folded
        into the index, so a commit costs the same however many items the store holds.

        Args:
            items: ``(key, extractor, staged_file)`` triples of finalized item files.
            log: run-log entries (JSON-serialisable dicts).
            meta: ``{str(staged_file): describe_item(staged_file)}`` where already known
                (the per-input work computes it); missing ones are computed here.

        Raises:
            StoreWriteError: the store could not be written (disk full...): the items of
                this commit are not committed, everything committed before is intact.
        """
        self._require_writer()
        try:
            self._commit(items, log, meta or {})
        except StoreWriteError:
            raise
        except OSError as exc:
            raise StoreWriteError(exc.filename or self.dir, exc) from exc

    def write_item(
        self,
        key: str,
        extractor: str,
        frames: np.ndarray,
        streams: dict[str, tuple[np.ndarray, np.ndarray, list[str] | tuple[str, ...]]],
        *,
        source: str | os.PathLike | None = None,
        settings: dict[str, Any] | None = None,
        version: str = "",
        attrs: dict[str, Any] | None = None,
        rate: float = 0.0,
        command: str = "",
    ) -> None:
        """Write one item of frame-level values computed outside an extractor (predictions
        of a trained model, for instance) and commit it, like the engine does.

        The item goes through the engine's own path: staged with :meth:`new_item`, aligned
        and finalized, renamed in by :meth:`commit` with its run-log entries (a
        ``run-start``, an ``item`` and a ``run-end``). An existing item of the same key and
        extractor is replaced, atomically. The store must be open for writing
        (``FeatureStore(path, "a")``).

        Args:
            key: the input's key (use the key of the input's other items, so that the new
                item sits beside them).
            extractor: the item's extractor name (need not be an installed extractor).
            frames: ``(m, 2)`` start and end of each video frame, seconds (the input's frame
                grid; every stream has one row per frame).
            streams: stream name -> ``(data (m, d), valid (m,), labels (d,))``.
            source: the input file or image folder the values belong to: recorded as the
                item's ``source`` identity (path, size, mtime, content hash) and ``media``
                kind, so that readers find the item by what it was made from.
            settings: recorded as the item's ``config.settings`` (JSON values).
            version: recorded as ``extractor_version``.
            attrs: further root attributes (JSON values), over the defaults.
            rate: the frame grid's nominal rate in Hz (0: from the frame times).
            command: what to record as the command in the run log.

        Raises:
            StoreError: shapes that do not fit, or the store is read-only.
            StoreWriteError: the store could not be written (nothing is committed).
        """
        from emofeat.media.grid import FrameGrid

        self._require_writer()
        times = np.asarray(frames, dtype=np.float64)
        if times.ndim != 2 or times.shape[1] != 2:
            raise StoreError(f"write_item: frames must be (m, 2) seconds, got {times.shape}")
        m = len(times)
        if not streams:
            raise StoreError("write_item: no stream to write")
        specs = []
        checked = {}
        for name, (data, valid, labels) in streams.items():
            data = np.asarray(data, dtype=np.float32)
            if data.ndim == 1:
                data = data[:, None]
            valid = np.asarray(valid, dtype=bool).reshape(-1)
            labels = tuple(str(v) for v in labels)
            if data.shape[0] != m or valid.shape[0] != m or data.shape[1] != len(labels):
                raise StoreError(
                    f"write_item: stream {name!r} has data {data.shape}, mask {valid.shape} "
                    f"and {len(labels)} labels for {m} frames"
                )
            specs.append(StreamSpec(name, labels, "frame", "video frames"))
            checked[name] = (data, valid, labels)
        if not rate:
            steps = np.diff(times[:, 0])
            rate = float(1.0 / np.median(steps)) if len(steps) and np.median(steps) > 0 else 0.0
        grid = FrameGrid(times[:, 0].copy(), times[:, 1].copy(), float(rate), "container")
        ident = source_identity(source) if source is not None else {}
        media = {"kind": "images" if source is not None and Path(source).is_dir() else "video"}
        config = {"extractor": extractor, "version": version, "settings": dict(settings or {})}
        provenance: dict[str, Any] = {
            "key": key,
            "extractor": extractor,
            "extractor_version": version,
            "plugin": "",
            "plugin_package": "",
            "plugin_version": "",
            "emofeat_version": __version__,
            "config": config,
            "config_hash": config_hash(config),
            "license": "",
            "commercial_use": True,
            "model_id": "",
            "model_sha256": "",
            "model_source": "",
            "source": ident,
            "media": media if source is not None else {},
            "warnings": [],
            "created": time.strftime("%Y-%m-%dT%H:%M:%S%z"),
            "item_id": uuid.uuid4().hex,
            **(attrs or {}),
        }
        t0 = time.perf_counter()
        writer = self.new_item(key, extractor, specs)
        try:
            for name, (data, valid, labels) in checked.items():
                writer.append(Rows(name, data, times[:, 0], times[:, 1], valid), labels)
            writer.finalize(grid, provenance)
        except BaseException:
            writer.abort()
            raise
        run = uuid.uuid4().hex[:12]
        stamp = time.strftime("%Y-%m-%dT%H:%M:%S%z")

        def entry(**kw: Any) -> dict[str, Any]:
            return {"run": run, "time": stamp, **kw}

        log = [
            entry(
                event="run-start",
                command=command or f"FeatureStore.write_item({key}, {extractor})",
                emofeat_version=__version__,
                extractors=[extractor],
                inputs=1,
                pid=os.getpid(),
            ),
            entry(
                event="item",
                input=str(source or key),
                key=key,
                extractor=extractor,
                status="done",
                message="",
                seconds=round(time.perf_counter() - t0, 3),
            ),
            entry(
                event="run-end",
                seconds=round(time.perf_counter() - t0, 3),
                done=1,
                skipped=0,
                unchanged=0,
                failed=0,
                compacted=0,
            ),
        ]
        try:
            self.commit([(key, extractor, writer.path)], log)
        except BaseException:
            Path(writer.path).unlink(missing_ok=True)
            raise

    def _commit(
        self,
        items: list[tuple[str, str, Path]],
        log: list[dict[str, Any]],
        meta: dict[str, dict[str, Any]],
    ) -> None:
        if self._sync_error is not None:
            exc, self._sync_error = self._sync_error, None
            raise exc
        snap = self._snapshot()
        entries = []
        for key, extractor, staged in items:
            m = meta.get(str(staged)) or describe_item(Path(staged))
            final = self.item_path(key, extractor)
            rel = os.path.relpath(final, self.path.parent)
            entries.append(_Entry(key, extractor, rel, m))
        faults.point(_F_STAGED)
        for (_, _, staged), e in zip(items, entries, strict=True):
            final = self.path.parent / e.file
            if not final.parent.is_dir():
                final.parent.mkdir(parents=True, exist_ok=True)
                # a new input folder: its entry in items/ must reach the disk too
                self._unsynced.add((self.dir / "items", True))
            os.replace(staged, final)
            self._unsynced.update(((final, False), (final.parent, True)))
        faults.point(_F_RENAMED)
        record = {"seq": snap.seq + 1, **_records(entries), "log": log}
        self._append_journal(snap, _journal_line(record))
        self._unsynced.add((self.dir / snap.journal, False))
        faults.point(_F_JOURNALED)
        self._apply(snap, record)
        self._unapplied.append(record)
        if len(self._unapplied) >= JOURNAL_LIMIT:
            self.checkpoint()
        elif time.monotonic() - self._synced_at >= SYNC_INTERVAL:
            try:
                self.sync()
            except StoreWriteError as exc:
                # this commit is recorded; the next one stops the run with the error
                self._sync_error = exc

    def sync(self) -> None:
        """Flush what the commits since the last sync wrote (item files, folders, the
        journal) to disk: one ``syncfs`` of the store's file system where Linux offers it,
        else an fsync of each. Commits call it at most :data:`SYNC_INTERVAL` seconds apart;
        checkpoints and closing the store call it first.

        Raises:
            StoreWriteError: the disk refused the data (full, failing).
        """
        self._require_writer()
        pending, self._unsynced = self._unsynced, set()
        self._synced_at = time.monotonic()
        if not pending:
            return
        try:
            if not _syncfs(self.dir):
                for path, directory in sorted(pending, key=lambda p: (p[1], str(p[0]))):
                    if directory or path.exists():
                        fsync_path(path, directory=directory)
        except OSError as exc:
            self._unsynced |= pending
            raise StoreWriteError(exc.filename or self.dir, exc) from exc

    def _append_journal(self, snap: _Snapshot, line: bytes) -> None:
        path = self.dir / snap.journal
        fd = os.open(path, os.O_WRONLY)
        try:
            try:
                if os.environ.get(faults.ENV) == _F_TORN:
                    os.pwrite(fd, line[: len(line) // 2], snap.journal_size)
                    os.fsync(fd)
                    faults.point(_F_TORN)
                written = 0
                while written < len(line):
                    written += os.pwrite(fd, line[written:], snap.journal_size + written)
            except OSError as exc:
                # a partial record must not stay in front of the next one
                try:
                    os.ftruncate(fd, snap.journal_size)
                except OSError:
                    pass
                raise StoreWriteError(path, exc) from exc
        finally:
            os.close(fd)
        snap.journal_size += len(line)

    def checkpoint(self, force: bool = False) -> None:
        """Fold the journal into the index (done automatically; see :meth:`commit`).

        The new index is written beside the old one with a new, empty journal, then
        renamed over it; the old journal is removed last. A kill at any step leaves either
        the old index with its journal or the new one with its own.
        """
        self._require_writer()
        snap = self._snapshot()
        if not self._unapplied and not force:
            return
        self.sync()  # the new index may only name items that are on disk
        tmp = self.staging_dir / f"index-{uuid.uuid4().hex}.h5"
        try:
            shutil.copyfile(self.path, tmp)
            journal = self._new_journal(snap.seq)
            guard = GuardedFile(tmp, "r+")
            with open_h5(guard, "r+", libver=("v110", "latest")) as f:
                self._fold(f, snap, self._unapplied)
                _write_summary(f, snap, self._unapplied)
                f.attrs["journal"] = journal
                f.attrs["applied"] = snap.seq
            guard.sync_and_close()
            faults.point(_F_CK_WRITTEN)
            self._replace_index(tmp)
        except OSError as exc:
            raise StoreWriteError(exc.filename or self.path, exc) from exc
        finally:
            tmp.unlink(missing_ok=True)
        faults.point(_F_CK_REPLACED)
        old = snap.journal
        snap.journal, snap.applied, snap.journal_size, snap.version = (
            journal,
            snap.seq,
            0,
            STORE_VERSION,
        )
        self._unapplied = []
        if old:
            (self.dir / old).unlink(missing_ok=True)

    def loose_items(self, max_bytes: int = COMPACT_MAX_ITEM) -> int:
        """Items in files of their own of at most ``max_bytes`` (what :meth:`compact` merges)."""
        return len(self._compactable(max_bytes))

    def _compactable(self, max_bytes: int) -> list[_Entry]:
        return [
            e
            for _, by in sorted(self._snapshot().entries.items())
            for _, e in sorted(by.items())
            if e.group == "/"
            and e.meta is not None
            and e.meta.get("size", max_bytes + 1) <= max_bytes
        ]

    def compact(
        self,
        max_item_bytes: int = COMPACT_MAX_ITEM,
        shard_items: int = COMPACT_SHARD_ITEMS,
        on_item: Callable[[str, str], None] | None = None,
    ) -> CompactionResult:
        """Merge committed items stored as small files of their own into shard files.

        Each shard (``feats.h5.d/shards/shard-<seq>-<id>.h5``) holds up to ``shard_items``
        items, one group ``/<key>/<extractor>`` each with the item file's layout and
        attributes, every dataset of up to 1 MiB one compressed chunk. The guarantee is a
        commit's: the shard is written in staging, synced and renamed into place; one
        journal record then moves the items to it (and records its checksums); only then
        are the item files removed. A kill at any step leaves every item readable from its
        file or its shard; the next writer removes a shard no record refers to, or the item
        files a record moved. Readers holding an older snapshot read again when a file they
        expect is gone. Needs the write lock.

        Args:
            max_item_bytes: item files larger than this stay as they are.
            shard_items: items per shard at most.
            on_item: called with ``(key, extractor)`` after each item is copied (progress).

        Raises:
            StoreWriteError: the store could not be written; nothing changed.
        """
        self._require_writer()
        t0 = time.perf_counter()
        todo, left = [], []
        for e in self._compactable(max_item_bytes):
            # a damaged or missing file is not copied into a shard: it stays where it is,
            # for verify to name and the next extract to redo
            why = self.check_item(e.key, e.extractor)
            if why is None:
                todo.append(e)
            else:
                left.append(ItemProblem(e.key, e.extractor, e.file, why))
        before = sum(int(e.meta["size"]) for e in todo if e.meta)
        result = CompactionResult(len(todo), 0, before, 0, 0.0, left)
        try:
            for a in range(0, len(todo), shard_items):
                result.shard_bytes += self._compact_batch(todo[a : a + shard_items], on_item)
                result.shards += 1
            if todo:
                self.checkpoint()
            self._drop_unreferenced([])  # shards whose every item was redone since
        except StoreWriteError:
            raise
        except OSError as exc:
            raise StoreWriteError(exc.filename or self.dir, exc) from exc
        result.seconds = time.perf_counter() - t0
        return result

    def _compact_batch(
        self, batch: list[_Entry], on_item: Callable[[str, str], None] | None
    ) -> int:
        snap = self._snapshot()
        name = f"shard-{snap.seq + 1}-{uuid.uuid4().hex[:8]}.h5"
        tmp = self.staging_dir / name
        final = self.dir / "shards" / name
        rel = os.path.relpath(final, self.path.parent)
        moved = []
        guard = GuardedFile(tmp, "w")
        try:
            with open_h5(guard, "w", libver=("v110", "latest")) as shard:
                shared = shard.create_group("_labels")
                for e in batch:
                    group = f"/{safe_name(e.key)}/{safe_name(e.extractor)}"
                    with h5py.File(self.path.parent / e.file, "r") as src:
                        shard_item(src, shard.create_group(group), shared)
                    guard.check()
                    moved.append(_Entry(e.key, e.extractor, rel, e.meta, group))
                    if on_item is not None:
                        on_item(e.key, e.extractor)
            guard.sync_and_close()
        except BaseException:
            guard.discard()
            raise
        size, sha, edges = file_digests(tmp)
        faults.point(_F_CP_WRITTEN)
        final.parent.mkdir(exist_ok=True)
        os.replace(tmp, final)
        fsync_path(final.parent, directory=True)
        fsync_path(self.dir, directory=True)
        faults.point(_F_CP_RENAMED)
        drop = [e.file for e in batch]  # before the record: it makes the entries name the shard
        record = {
            "seq": snap.seq + 1,
            "items": [
                {"key": e.key, "extractor": e.extractor, "file": rel, "group": e.group, "moved": 1}
                for e in moved
            ],
            "shards": {rel: {"size": size, "sha256": sha, "edges": edges}},
            "drop": drop,
            "log": [],
        }
        self._append_journal(snap, _journal_line(record))
        faults.point(_F_CP_JOURNALED)
        self._apply(snap, record)
        self._unapplied.append(record)
        for i, rel_file in enumerate(drop):
            if i == len(batch) // 2:
                faults.point(_F_CP_DROPPING)
            _remove_item_file(self.path.parent / rel_file)
        return size

    def _fold(self, f: h5py.File, snap: _Snapshot, records: list[dict[str, Any]]) -> None:
        """Write journal records (or, upgrading, every entry) into an open index copy."""
        if "catalog" not in f:  # upgrading a version-1 store: every entry goes in
            _bytes_dataset(f, "catalog")
            f.attrs["format_version"] = STORE_VERSION
            records = [_records([e for by in snap.entries.values() for e in by.values()])] + records
        items = [it for rec in records for it in rec.get("items", [])]
        for it in items:
            if it.get("removed"):
                path = f"items/{safe_name(it['key'])}"
                if path in f and safe_name(it["extractor"]) in f[path]:
                    del f[path][safe_name(it["extractor"])]
                    if not len(f[path]):
                        del f[path]
                continue
            g = f.require_group(f"items/{safe_name(it['key'])}")
            if "key" not in g.attrs:  # fixed-length bytes: no global-heap block per commit
                g.attrs["key"] = np.bytes_(it["key"].encode())
            name = safe_name(it["extractor"])
            if name in g:
                del g[name]
            g[name] = h5py.ExternalLink(it["file"], it.get("group", "/"))
        profiles = {k: v for rec in records for k, v in rec.get("profiles", {}).items()}
        if profiles:
            known = set()
            for line in _bytes_dataset(f, "profiles")[:].tobytes().splitlines():
                known.update(json.loads(line))
            new = {k: v for k, v in profiles.items() if k not in known}
            if new:
                _append_bytes(f, "profiles", (json.dumps(new, sort_keys=True) + "\n").encode())
        lines = "".join(json.dumps(it, sort_keys=True) + "\n" for it in items).encode()
        _append_bytes(f, "catalog", lines)
        shards = {k: v for rec in records for k, v in rec.get("shards", {}).items()}
        if shards:
            _append_bytes(f, "shards", (json.dumps(shards, sort_keys=True) + "\n").encode())
        log = [e for rec in records for e in rec.get("log", [])]
        if log:
            _append_bytes(
                f, "log", "".join(json.dumps(e, sort_keys=True) + "\n" for e in log).encode()
            )

    # -- reading ----------------------------------------------------------------------
    def _entry(self, key: str, extractor: str) -> _Entry:
        e = self._snapshot().entries.get(safe_name(key), {}).get(safe_name(extractor))
        if e is None:
            raise KeyError(f"{self.path}: no item {key!r} x {extractor!r}")
        return e

    def items(self) -> list[str]:
        """Input keys that hold at least one item."""
        return sorted(k for k, v in self._snapshot().entries.items() if v)

    def extractors(self, key: str) -> list[str]:
        """Extractors stored for an input."""
        return sorted(self._snapshot().entries.get(safe_name(key), {}))

    def _item_file(self, key: str, extractor: str) -> Path:
        return (self.path.parent / self._entry(key, extractor).file).resolve()

    def item_ref(self, key: str, extractor: str) -> ItemRef:
        """Where an item is: its own file, or ``(shard file, group)`` once compacted."""
        e = self._entry(key, extractor)
        path = (self.path.parent / e.file).resolve()
        return path if e.group == "/" else (str(path), e.group)

    @contextmanager
    def _open(self, key: str, extractor: str) -> Iterator[h5py.Group]:
        """An item's root group. Shards stay open between calls (reading many items of a
        shard opens it once); a file gone since the snapshot was taken (a compaction moved
        the item) makes the snapshot be read again, once."""
        group, owned = self._open_group(key, extractor)
        try:
            yield group
        finally:
            if owned is not None:
                owned.close()

    def _open_group(
        self, key: str, extractor: str, retry: bool = True
    ) -> tuple[h5py.Group, h5py.File | None]:
        ref = self.item_ref(key, extractor)
        try:
            if isinstance(ref, tuple):
                return self._shard(ref[0])[ref[1]], None
            f = h5py.File(ref, "r")
            return f, f
        except FileNotFoundError:
            if not retry or self._lock_fd is not None:
                raise
        self._snap = None  # moved by a compaction since this snapshot: read the index again
        return self._open_group(key, extractor, retry=False)

    def _shard(self, path: str) -> h5py.File:
        f = self._shards.get(path)
        if f is None or not f.id.valid:
            if len(self._shards) >= 8:  # a few at a time: the rest are closed
                for old in list(self._shards.values()):
                    old.close()
                self._shards.clear()
            f = self._shards[path] = h5py.File(path, "r")
        return f

    def item_meta(self, key: str, extractor: str) -> dict[str, Any] | None:
        """What the index keeps about an item (size, checksums, attributes, streams), or
        None for an item of an older store that was never described."""
        return self._entry(key, extractor).meta

    def item_attrs(self, key: str, extractor: str) -> dict[str, Any] | None:
        """Provenance attributes of an item (JSON values decoded); None if absent.

        Read from the index; the item file is opened only for stores written before the
        index kept them. An item whose file is gone is absent.
        """
        try:
            e = self._entry(key, extractor)
            path = self.path.parent / e.file
            if e.meta is not None:
                return dict(e.meta["attrs"]) if path.exists() else None
            with self._open(key, extractor) as g:
                attrs = item_attrs_of(g)
                return attrs if attrs.get("complete", False) else None
        except (KeyError, OSError):
            return None

    def check_item(self, key: str, extractor: str, full: bool = False) -> str | None:
        """Why an item's file is not what was committed, or None when it checks out.

        The cheap check (always made before a rerun skips an item) compares the file's
        size and the digest of its first and last 32 KiB with the index; ``full=True``
        hashes the whole file (``emofeat verify``, ``emofeat extract --verify``). An item in
        a shard is checked through its shard (hashed once per process however many of its
        items are asked about). Items of older stores without checksums are opened.
        """
        e = self._entry(key, extractor)
        path = self.path.parent / e.file
        if e.group != "/":
            digests = self._snapshot().shards.get(e.file)
            if digests is None:
                return f"shard {e.file} not recorded in the index"
            why = self._check_file(path, digests, full)
            return None if why is None else f"in shard {path.name}: {why}"
        if e.meta is None or "sha256" not in e.meta:
            try:
                with h5py.File(path, "r") as f:
                    return None if f.attrs.get("complete", False) else "incomplete"
            except FileNotFoundError:
                return f"file missing ({path})"
            except OSError as exc:
                return f"unreadable ({exc.strerror or exc})"
        return self._check_file(path, e.meta, full)

    def _check_file(self, path: Path, digests: dict[str, Any], full: bool) -> str | None:
        try:
            st = path.stat()
            if st.st_size != digests["size"]:
                return f"size {st.st_size} bytes, {digests['size']} committed"
            if full:
                memo = (str(path), st.st_ino, st.st_mtime_ns, st.st_size)
                if memo not in self._hashed:
                    self._hashed[memo] = file_digests(path)[1]
                ok = self._hashed[memo] == digests["sha256"]
            else:
                ok = edge_digest(path, st.st_size) == digests["edges"]
            return None if ok else "checksum mismatch (the file changed since it was committed)"
        except FileNotFoundError:
            return f"file missing ({path})"
        except OSError as exc:
            return f"unreadable ({exc.strerror or exc})"

    def verify(self, on_item: Callable[[str, str, int], None] | None = None) -> list[ItemProblem]:
        """Check every committed item against its checksum, reading each file once.

        Args:
            on_item: called after each item with ``(key, extractor, bytes read)`` (progress;
                a shard's bytes count with the first of its items).

        Returns:
            The damaged or missing items (empty when every item checks out).
        """
        problems = []
        counted: set[str] = set()
        snap = self._snapshot()
        for _, by_ex in sorted(snap.entries.items()):
            for _, e in sorted(by_ex.items()):
                why = self.check_item(e.key, e.extractor, full=True)
                if why is not None:
                    where = str(self.path.parent / e.file)
                    problems.append(ItemProblem(e.key, e.extractor, where, why))
                if on_item is not None:
                    size = 0
                    if e.group == "/":
                        size = int((e.meta or {}).get("size", 0))
                    elif e.file not in counted:
                        counted.add(e.file)
                        size = int(snap.shards.get(e.file, {}).get("size", 0))
                    on_item(e.key, e.extractor, size)
        return problems

    def stored_bytes(self) -> int:
        """Bytes of every file the store's items are in, each counted once (the index not
        included)."""
        snap = self._snapshot()
        total = sum(int(v.get("size", 0)) for v in snap.shards.values())
        for by_ex in snap.entries.values():
            for e in by_ex.values():
                if e.group == "/" and e.meta:
                    total += int(e.meta.get("size", 0))
        return total

    def catalog(self) -> list[ItemInfo]:
        """Every complete item with what identifies it, from the index alone.

        Items of older stores not yet described are opened; unreadable or incomplete ones
        are left out (``emofeat verify`` reports them).
        """
        out: list[ItemInfo] = []
        for by_ex in self._snapshot().entries.values():
            for e in by_ex.values():
                if e.meta is not None:
                    names = tuple(sorted(s["name"] for s in e.meta["streams"]))
                    n = e.meta["n_frames"]
                    out.append(ItemInfo(self, e.key, e.extractor, names, n, e.meta["attrs"]))
                    continue
                try:
                    with self._open(e.key, e.extractor) as item:
                        attrs = item_attrs_of(item)
                        if not attrs.get("complete", False):
                            continue
                        names = tuple(sorted(n for n in item.keys() if n != "frames"))
                        n = int(item["frames/times"].shape[0]) if "frames/times" in item else 0
                except OSError:
                    continue
                out.append(ItemInfo(self, e.key, e.extractor, names, n, attrs))
        out.sort(key=lambda i: (safe_name(i.key), safe_name(i.extractor)))
        return out

    def streams(self, key: str, extractor: str) -> list[str]:
        """Stream names of an item."""
        meta = self._entry(key, extractor).meta
        if meta is not None:
            return sorted(s["name"] for s in meta["streams"])
        with self._open(key, extractor) as g:
            return sorted(n for n in g.keys() if n != "frames")

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
        with self._open(key, extractor) as g:
            return _read_stream(g, key, extractor, stream, aligned)

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
        Invalid rows hold NaN when ``apply_mask`` is true. Items compacted into shards are
        read with each shard opened once.
        """
        snap = self._snapshot()
        wanted = keys if keys is not None else self.items()
        entries = [
            e
            for k in wanted
            if (e := snap.entries.get(safe_name(k), {}).get(safe_name(extractor))) is not None
        ]
        if not entries:
            raise KeyError(f"{self.path}: no items of extractor {extractor!r}")
        parts: list[StreamData] = []
        files: list[str] = []
        shards: dict[str, h5py.File] = {}
        try:
            for e in entries:
                path = str((self.path.parent / e.file).resolve())
                if e.group == "/":
                    with h5py.File(path, "r") as f:
                        sd = _read_stream(f, e.key, extractor, stream, aligned)
                else:
                    if path not in shards:
                        shards[path] = h5py.File(path, "r")
                    sd = _read_stream(shards[path][e.group], e.key, extractor, stream, aligned)
                attrs = e.meta["attrs"] if e.meta else (self.item_attrs(e.key, extractor) or {})
                parts.append(sd)
                files.append((attrs.get("source") or {}).get("path", e.key))
        finally:
            for f in shards.values():
                f.close()
        labels = parts[0].labels
        data = np.concatenate([p.data for p in parts]) if parts else np.zeros((0, len(labels)))
        if apply_mask:
            data = data.copy()
            data[~np.concatenate([p.mask for p in parts])] = np.nan
        times = np.concatenate([p.times for p in parts])
        import pandas as pd  # not at import time: listing a store needs no pandas

        index = pd.MultiIndex.from_arrays(
            [
                np.repeat(np.array(files, dtype=object), [len(p.data) for p in parts]),
                pd.to_timedelta(times[:, 0], unit="s"),
                pd.to_timedelta(times[:, 1], unit="s"),
            ],
            names=["file", "start", "end"],
        )
        return pd.DataFrame(data, index=index, columns=labels)

    def run_log(self) -> pd.DataFrame:
        """Every recorded outcome, oldest first, as a DataFrame."""
        import pandas as pd

        return pd.DataFrame(self.log_entries())

    def summary(self) -> dict[str, Any] | None:
        """What ``emofeat inspect`` shows of a large store, kept in the index at each
        checkpoint: counts, per extractor and stream the items, dims, native rows, frames and
        valid frames, items aligned under another rule, the latest problems, the number of
        runs. None when commits since the last checkpoint are not in it (a run is writing)
        or the store predates it; then read the catalog (:meth:`catalog`)."""
        try:
            with h5py.File(self.path, "r") as f:
                if "summary" not in f:
                    return None
                journal = str(f.attrs.get("journal", ""))
                applied = int(f.attrs.get("applied", 0))
                summ = json.loads(f["summary"][:].tobytes())
            if journal:
                raw = (self.dir / journal).read_bytes()
                if any(r.get("seq", 0) > applied for r in _parse_journal(raw)[0]):
                    return None
        except (OSError, ValueError):
            return None
        return dict(summ)

    def log_entries(self) -> list[dict[str, Any]]:
        """Every run-log entry, oldest first, as dicts (:meth:`run_log` without pandas)."""
        for _ in range(100):
            snap = self._snapshot()
            try:
                with h5py.File(self.path, "r") as f:
                    if int(f.attrs.get("applied", 0)) != snap.applied:
                        self._snap = None  # a checkpoint happened in between: read again
                        continue
                    raw = f["log"][:].tobytes()
            except FileNotFoundError:
                continue
            return _json_lines(raw) + snap.journal_log
        raise StoreError(f"{self.path}: the index keeps changing while being read")

    def stored_input(self, key: str, extra: dict[str, Path] | None = None) -> StoredInput:
        """Access to the streams of one input, for ``features`` extractors."""
        files: dict[str, ItemRef] = {}
        for ex in self.extractors(key):
            try:
                files[ex] = self.item_ref(key, ex)
            except KeyError:
                continue
        files.update(extra or {})
        return StoredInput(key, files)


def _read_stream(
    g: h5py.Group, key: str, extractor: str, stream: str | None, aligned: bool
) -> StreamData:
    """One stream of an item (its root group) into memory."""
    names = [n for n in g.keys() if n != "frames"]
    if stream is None:
        if len(names) != 1:
            raise KeyError(f"{key} x {extractor}: choose a stream among {sorted(names)}")
        stream = names[0]
    if stream not in g:
        raise KeyError(f"{key} x {extractor}: no stream {stream!r} (has {sorted(names)})")
    s = g[stream]
    labels = [x.decode() if isinstance(x, bytes) else x for x in s["labels"][:]]
    if aligned:
        data, mask = aligned_view(s)
        return StreamData(
            data, g["frames/times"][:], mask, labels, True, s["aligned/row"][:].astype(np.int64)
        )
    return StreamData(s["data"][:], s["times"][:], valid_rows(s, "mask"), labels, False)


def _remove_item_file(path: Path) -> None:
    """Delete an item file moved into a shard, and its input's folder once empty."""
    path.unlink(missing_ok=True)
    try:
        path.parent.rmdir()
    except OSError:
        pass


@dataclass
class CompactionResult:
    """What :meth:`FeatureStore.compact` did: ``items`` merged into ``shards`` files,
    ``item_bytes`` of item files replaced by ``shard_bytes``, in ``seconds``; ``left_out``:
    items whose file failed the check (left as they are)."""

    items: int
    shards: int
    item_bytes: int
    shard_bytes: int
    seconds: float
    left_out: list[ItemProblem] = field(default_factory=list)  # damaged or missing files


@dataclass(frozen=True)
class ItemProblem:
    """A committed item whose file is damaged or missing (:meth:`FeatureStore.verify`)."""

    key: str
    extractor: str
    file: str
    problem: str


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


def _write_summary(f: h5py.File, snap: _Snapshot, records: list[dict[str, Any]]) -> None:
    """Recompute the index's ``summary`` (see :meth:`FeatureStore.summary`) at a checkpoint:
    aggregates from the entries in memory, problems and runs carried on from the previous
    summary with the new log entries (from the whole log the first time)."""
    old = json.loads(f["summary"][:].tobytes()) if "summary" in f else None
    if old is None:
        problems: dict[str, Any] = {}
        runs = 0
        log = _json_lines(f["log"][:].tobytes())  # _fold has appended the new entries
    else:
        problems, runs = dict(old["problems"]), int(old["runs"])
        log = [e for rec in records for e in rec.get("log", [])]
    for e in log:
        if e.get("event") == "run-start":
            runs += 1
        elif e.get("event") == "item" or (e.get("event") == "input" and not e.get("key")):
            # input-level outcomes of inputs that have items are told by their items;
            # those without (a path that matches nothing) are problems of their own
            where = f"{e.get('input')}\t{e.get('extractor') or ''}"
            if e.get("status") in ("failed", "skipped"):
                problems[where] = {
                    k: e.get(k) for k in ("input", "extractor", "status", "message", "time")
                }
            else:
                problems.pop(where, None)
    stale = []
    first = None
    described = True
    n_items = 0
    for key in sorted(snap.entries):
        for ex in sorted(snap.entries[key]):
            e = snap.entries[key][ex]
            n_items += 1
            if e.meta is None:
                described = False
                continue
            attrs = e.meta["attrs"]
            if first is None:
                first = {
                    "key": e.key,
                    "extractor": e.extractor,
                    "emofeat_version": attrs.get("emofeat_version"),
                    "plugin": f"{attrs.get('plugin_package')} {attrs.get('plugin_version')}",
                    "created": attrs.get("created"),
                    "config": (attrs.get("config") or {}).get("settings"),
                }
            if attrs.get("alignment") != ALIGNMENT_RULE:
                stale.append([e.key, e.extractor, attrs.get("alignment")])
    streams = stream_totals(
        (e.extractor, e.meta["streams"])
        for by in snap.entries.values()
        for e in by.values()
        if e.meta is not None
    )
    summary = {
        "rule": ALIGNMENT_RULE,
        "inputs": sum(1 for by in snap.entries.values() if by),
        "items": n_items,
        "described": described,
        "streams": streams,
        "stale": stale,
        "first": first,
        "problems": problems,
        "runs": runs,
    }
    if "summary" in f:
        del f["summary"]
    f.create_dataset("summary", data=np.frombuffer(json.dumps(summary).encode(), np.uint8))


def stream_totals(items: Iterable[tuple[str, list[dict[str, Any]]]]) -> dict[str, list[float]]:
    """Per ``extractor<TAB>stream``: ``[items, dims, native rows, frames, valid frames]``,
    from ``(extractor, streams as the catalog describes them)`` pairs."""
    totals: dict[str, list[float]] = {}
    for extractor, streams in items:
        for st in streams:
            agg = totals.setdefault(f"{extractor}\t{st['name']}", [0, st["dims"], 0, 0, 0])
            agg[0] += 1
            agg[2] += st["rows"]
            agg[3] += st["frames"]
            agg[4] += st["coverage"] * st["frames"]
    return totals


def _json_lines(raw: bytes) -> list[Any]:
    """JSON lines parsed as one array (one parser call: a third faster than one per line)."""
    lines = raw.strip().replace(b"\n", b",")
    return list(json.loads(b"[" + lines + b"]")) if lines else []


def _bytes_dataset(f: h5py.File, name: str) -> h5py.Dataset:
    """One of the index's JSON-lines datasets (``log``, ``catalog``, ``profiles``,
    ``shards``), created if missing: growable, compressed ``u1``. Bytes, not strings:
    appending never grows a string heap (variable-length strings do on every reopen)."""
    if name not in f:
        f.create_dataset(
            name,
            shape=(0,),
            maxshape=(None,),
            dtype="u1",
            chunks=(65536,),
            compression="gzip",
            compression_opts=4,
        )
    return f[name]


def _append_bytes(f: h5py.File, name: str, data: bytes) -> None:
    """Append bytes to the index's dataset ``name`` (:func:`_bytes_dataset`)."""
    ds = _bytes_dataset(f, name)
    n0 = ds.shape[0]
    ds.resize(n0 + len(data), axis=0)
    ds[n0:] = np.frombuffer(data, np.uint8)


def open_store(path: str | os.PathLike) -> FeatureStore:
    """Open a feature store for reading.

    Example:
        >>> store = open_store("feats.h5")  # doctest: +SKIP
        >>> store.to_frame("egemaps", "lld")  # doctest: +SKIP
    """
    return FeatureStore(path, mode="r")
