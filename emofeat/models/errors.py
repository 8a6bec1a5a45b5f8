"""The errors of the model registry and cache."""

from __future__ import annotations

from emofeat.errors import EmofeatError


class ModelError(EmofeatError):
    """A model cannot be obtained or verified."""


class ModelUnavailableError(ModelError):
    """No source could provide a model's files; the message says how to provide them."""


class LicenseNotAcceptedError(ModelError):
    """The model's licence needs an explicit opt-in that was not given."""
