"""The registry: the models plugins register and those users imported, by name, and what
``emofeat models list`` shows for each."""

from __future__ import annotations

import os
from typing import Any

from emofeat.models.cache import ModelCache
from emofeat.models.errors import ModelError
from emofeat.models.spec import Model, plugin_models
from emofeat.models.user import user_models


def get_models(
    include_user: bool = True, cache_root: str | os.PathLike | None = None
) -> dict[str, Model]:
    """Every model registered by a plugin (``register_models`` hook), by name, and (unless
    ``include_user`` is false) those imported under users' own names into the cache at
    ``cache_root`` (default cache; :func:`register_user_model`)."""
    found = plugin_models()
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
