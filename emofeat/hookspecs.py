"""Hook specifications: the whole contract between emofeat and its plugins.

Every hook is named ``register_*`` and receives a ``register`` callback (or the CLI group)
from the core; plugins never touch global state themselves.
"""

from __future__ import annotations

from collections.abc import Callable
from typing import TYPE_CHECKING

import pluggy

if TYPE_CHECKING:
    import click

hookspec = pluggy.HookspecMarker("emofeat")
hookimpl = pluggy.HookimplMarker("emofeat")


@hookspec
def register_extractors(register: Callable[..., None]) -> None:
    """Register extractor classes: call ``register(ExtractorClass)`` once per class."""


@hookspec
def register_commands(cli: click.Group) -> None:
    """Add click commands or groups to the ``emofeat`` command group ``cli``."""


@hookspec
def register_models(register: Callable[..., None]) -> None:
    """Register model weights: call ``register(emofeat.models.Model(...))`` once per model."""


@hookspec
def register_recipes(register: Callable[..., None]) -> None:
    """Register training recipes: call ``register(emofeat.recipes.Recipe(...))`` once each."""
