"""Optional dependencies: which extra to install when an import fails.

``pip install emofeat`` is the light core (openSMILE and functionals). The face nets, the
audio models, the recipes and Dask come as extras (``emofeat[faces]``, ``[audio]``,
``[recipes]``, ``[dask]``, ``[all]``). When a plugin or a recipe imports a package that is
not installed, :func:`missing_extra` turns the ``ImportError`` into a usage error that names
the extra to install. The extras are read from the installed distribution's metadata, so
a third-party plugin's own extras are named the same way.
"""

from __future__ import annotations

import importlib.metadata
import re

from emofeat.errors import ConfigError

# import name -> distribution name, where they differ (pip installs distributions)
_IMPORT_TO_DIST = {
    "cv2": "opencv-python-headless",
    "sklearn": "scikit-learn",
    "silero_vad": "silero-vad",
    "yaml": "pyyaml",
    "PIL": "pillow",
    "skimage": "scikit-image",
}

_EXTRA = re.compile(r"""extra\s*==\s*['"]([^'"]+)['"]""")
_NAME = re.compile(r"^\s*([A-Za-z0-9][A-Za-z0-9._-]*)")


class MissingExtraError(ConfigError):
    """An optional dependency is not installed; the message names the extra to install."""

    def __init__(self, message: str, module: str, extras: tuple[str, ...]) -> None:
        super().__init__(message)
        self.module = module
        self.extras = extras


def _normalise(name: str) -> str:
    return re.sub(r"[-_.]+", "-", name).lower()


def extras_providing(module: str, distribution: str = "emofeat") -> list[str]:
    """The extras of ``distribution`` whose requirements install ``module``.

    Args:
        module: an import name (``torch``, ``cv2``, ``timm.models``: the top level counts).
        distribution: the installed distribution whose extras are searched.

    Returns:
        Extra names in the order the distribution declares them, without the aggregate
        ``all`` and ``dev`` (empty when none, or the distribution is not installed).
    """
    top = module.split(".")[0]
    wanted = _normalise(_IMPORT_TO_DIST.get(top, top))
    try:
        requires = importlib.metadata.requires(distribution) or []
    except importlib.metadata.PackageNotFoundError:
        return []
    found: list[str] = []
    for line in requires:
        extra, name = _EXTRA.search(line), _NAME.match(line)
        if extra is None or name is None or _normalise(name.group(1)) != wanted:
            continue
        if extra.group(1) not in ("all", "dev") and extra.group(1) not in found:
            found.append(extra.group(1))
    return found


def missing_extra(
    exc: ImportError, *, what: str, distribution: str = "emofeat", prefer: str | None = None
) -> MissingExtraError | None:
    """A usage error naming the extra that provides the module ``exc`` failed to import.

    Args:
        exc: the ``ImportError`` (``ModuleNotFoundError``) raised by an import.
        what: what needed it, for the message (``"extractor 'face_cnn'"``).
        distribution: the distribution whose extras are searched (a plugin's own package).
        prefer: the extra to name first when several provide the module (emofeat's
            plugin entry points are named after their extras: ``faces``, ``audio``).

    Returns:
        The error to raise, or None when the module is not part of any extra (a real bug
        or a broken installation: the original error should surface).
    """
    module = exc.name or ""
    if not module:
        return None
    extras = extras_providing(module, distribution)
    if not extras:
        return None
    if prefer in extras:
        extras.remove(prefer)
        extras.insert(0, prefer)
    install = f"pip install '{distribution}[{extras[0]}]'"
    others = "".join(f" or [{e}]" for e in extras[1:])
    return MissingExtraError(
        f"{what} needs the optional dependency {module.split('.')[0]!r}, which is not "
        f"installed: {install}{others}",
        module,
        tuple(extras),
    )
