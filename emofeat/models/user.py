"""Models users register under their own names (a fine-tuned checkpoint, a folder).

They live in a cache like the plugins' models; ``<cache>/user-models.json`` describes them
(version = the first 12 hex digits of their files' combined sha256).
"""

from __future__ import annotations

import json
import os
import re
import time
from pathlib import Path
from typing import Any

from emofeat.models.cache import ModelCache, default_cache_dir
from emofeat.models.errors import ModelError
from emofeat.models.files import combined_digest, sha256_file, write_atomic
from emofeat.models.licences import non_commercial
from emofeat.models.spec import Model, ModelFile, plugin_models

#: file in a cache's root listing the models users imported under their own names
USER_MODELS = "user-models.json"


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
    if name in plugin_models():
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
    version = combined_digest({f.name: f.sha256 for f in entries})[:12]
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
    write_atomic(cache.root / USER_MODELS, json.dumps(data, indent=2).encode())
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
