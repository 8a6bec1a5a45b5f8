"""Licences: which ones forbid commercial use, and the per-model opt-in a user gives.

The opt-in is remembered in ``<cache>/licenses.json`` (model name -> the licence accepted
and when); a model whose licence text changes needs a new opt-in.
"""

from __future__ import annotations

import json
import re
import time
from pathlib import Path

from emofeat.models.errors import LicenseNotAcceptedError
from emofeat.models.files import write_atomic
from emofeat.models.spec import Model

#: file in a cache's root recording the licences the user accepted, per model
LICENSES = "licenses.json"


def non_commercial(license_: str) -> bool:
    """True for licences that forbid commercial use (Creative Commons NC variants)."""
    return bool(re.search(r"(^|[-_ ])NC($|[-_ ])", license_.upper())) or (
        "NON-COMMERCIAL" in license_.upper() or "NONCOMMERCIAL" in license_.upper()
    )


def accepted(root: Path, model: Model) -> bool:
    """True when the model is commercial-use or its licence was accepted in cache ``root``."""
    if model.commercial_use:
        return True
    try:
        data = json.loads((root / LICENSES).read_text())
    except (OSError, ValueError):
        return False
    entry = data.get(model.name)
    return bool(entry) and entry.get("license") == model.license


def accept(root: Path, model: Model) -> None:
    """Record the user's acceptance of the model's licence in cache ``root``."""
    path = root / LICENSES
    try:
        data = json.loads(path.read_text())
    except (OSError, ValueError):
        data = {}
    data[model.name] = {
        "license": model.license,
        "accepted": time.strftime("%Y-%m-%dT%H:%M:%S%z"),
    }
    write_atomic(path, json.dumps(data, indent=2).encode())


def require_license(root: Path, model: Model) -> None:
    """Raise :class:`LicenseNotAcceptedError` unless the model may be used with cache ``root``."""
    if not accepted(root, model):
        raise LicenseNotAcceptedError(
            f"model {model.name!r} is licensed {model.license}, which does not allow "
            "commercial use. To use it, accept the licence once: "
            f"'emofeat models fetch {model.name} --accept-license' "
            f"(or 'emofeat models accept {model.name}')"
        )
