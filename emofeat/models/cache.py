"""The verified model cache: obtains a model's files from its sources, checks them and keeps
them under one directory::

    <cache>/<name>/<version>/<file>            the verified files
    <cache>/<name>/<version>/.complete         JSON written last: marks a complete model
    <cache>/.tmp/                              downloads in progress (resumable)
    <cache>/licenses.json                      licences the user accepted, per model
"""

from __future__ import annotations

import json
import os
import shutil
import subprocess
import tarfile
import tempfile
import time
import zipfile
from pathlib import Path
from typing import Any

from emofeat.models import licences
from emofeat.models.archives import extract_members, find_members
from emofeat.models.errors import ModelError, ModelUnavailableError
from emofeat.models.files import combined_digest, sha256_file, write_atomic
from emofeat.models.sources import ProgressFactory, obtain
from emofeat.models.spec import Model, Source

CACHE_ENV = "EMOFEAT_CACHE_DIR"


def default_cache_dir() -> Path:
    """``$EMOFEAT_CACHE_DIR``, else ``$XDG_CACHE_HOME/emofeat/models``, else ``~/.cache/...``."""
    if os.environ.get(CACHE_ENV):
        return Path(os.environ[CACHE_ENV])
    base = os.environ.get("XDG_CACHE_HOME") or str(Path.home() / ".cache")
    return Path(base) / "emofeat" / "models"


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
        return combined_digest(digests) if all(digests.values()) else ""

    # -- licences (see emofeat.models.licences) -----------------------------------------
    def accepted(self, model: Model) -> bool:
        """True when the model is commercial-use or its licence was accepted here."""
        return licences.accepted(self.root, model)

    def accept(self, model: Model) -> None:
        """Record the user's acceptance of the model's licence."""
        licences.accept(self.root, model)

    def require_license(self, model: Model) -> None:
        """Raise :class:`LicenseNotAcceptedError` unless the model may be used here.

        Extractors that load a non-commercial model's weights from elsewhere (a hub id, a
        user's folder of the same model) call it too, so the opt-in applies to every path.
        """
        licences.require_license(self.root, model)

    # -- obtaining ------------------------------------------------------------------------
    def path(self, model: Model, fetch: bool = True) -> Path:
        """The model's folder, fetching it first if needed (and allowed).

        Raises:
            LicenseNotAcceptedError: non-commercial model not accepted.
            ModelUnavailableError: no source worked; the message says what to do.
        """
        self.require_license(model)
        if self.is_cached(model):
            return self.folder(model)
        if not fetch:
            raise ModelUnavailableError(self._how_to_provide(model, []))
        return self.fetch(model)

    def fetch(self, model: Model, accept_license: bool = False) -> Path:
        """Obtain and verify the model's files from the first source that works."""
        if accept_license:
            self.accept(model)
        self.require_license(model)
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
        return obtain(model, source, tmp, self._tmp_root(), self.progress)

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
            try:
                shutil.copyfile(staged[f.name], tmp_target)
                with open(tmp_target, "rb") as fh:
                    os.fsync(fh.fileno())
                os.replace(tmp_target, target)
            except OSError:
                tmp_target.unlink(missing_ok=True)  # a full disk leaves no partial copy
                raise
        write_atomic(
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
                members = find_members(p, model)
                staged = extract_members(p, members, Path(tmp))
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
