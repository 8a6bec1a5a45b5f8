"""emofeat's built-in extractor plugins.

They are registered through the ``emofeat`` entry-point group declared in emofeat's
``pyproject.toml`` - the same path a third-party plugin takes - and use only the public
``emofeat`` API.
"""

from __future__ import annotations

import importlib
from collections.abc import Callable, Mapping
from typing import Any


def lazy_getattr(package: str, lazy: Mapping[str, str]) -> Callable[[str], Any]:
    """A module ``__getattr__`` for ``package``: the public names in ``lazy`` (name -> private
    submodule that defines it) are imported when first read, then kept in the package.

    A package that uses it defines no ``__dir__``, on purpose: the plugin manager reads every
    name ``dir()`` lists, which would import the heavy submodules (PyTorch) at registration.
    """

    def lazy_attribute(name: str) -> Any:
        module = lazy.get(name)
        if module is None:
            raise AttributeError(f"module {package!r} has no attribute {name!r}")
        value = getattr(importlib.import_module(f".{module}", package), name)
        setattr(importlib.import_module(package), name, value)
        return value

    return lazy_attribute
