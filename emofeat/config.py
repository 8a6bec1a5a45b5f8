"""Extractor settings: ``--set NAME.KEY=VALUE`` or a YAML file, one grammar with the recipes.

A YAML config file maps extractor names to their settings::

    egemaps:
      win: 4.0
      hop: 2.0
    functionals:
      stats: [mean, std]

``--set`` values override the file. Values are read and checked by :mod:`emofeat.settings`
(the grammar every setting and recipe key shares): each key against the extractor's declared
:class:`~emofeat.extractor.Setting` (its default's type, its choices).
"""

from __future__ import annotations

import re
from dataclasses import replace
from pathlib import Path
from typing import Any

from emofeat.errors import ConfigError, UnknownExtractorError
from emofeat.extractor import MASK_SETTINGS, Setting
from emofeat.settings import Key, SetText, load_yaml
from emofeat.settings import coerce as settings_coerce

_MASK = re.compile(r"^([a-z][a-z0-9_]*)(?:\.([A-Za-z0-9_.+\-]+))?$")


def parse_sets(items: list[str] | tuple[str, ...]) -> dict[str, dict[str, Any]]:
    """Parse ``NAME.KEY=VALUE`` strings into ``{name: {key: text}}``.

    The values stay :class:`~emofeat.settings.SetText`: :func:`resolve` reads each one as the
    type of the setting it sets (``--set pdem.layers=1,3,5`` is ``[1, 3, 5]``).
    """
    out: dict[str, dict[str, Any]] = {}
    for item in items:
        if "=" not in item or "." not in item.split("=", 1)[0]:
            raise ConfigError(f"--set {item!r}: expected NAME.KEY=VALUE, e.g. egemaps.win=4.0")
        lhs, value = item.split("=", 1)
        name, key = lhs.split(".", 1)
        out.setdefault(name.strip(), {})[key.strip()] = SetText(value)
    return out


def load_config_file(path: str | Path) -> dict[str, dict[str, Any]]:
    """Read a YAML config file of ``{name: {key: value}}``."""
    data = load_yaml(path, "extractor config file")
    if not all(isinstance(v, dict) or v is None for v in data.values()):
        raise ConfigError(f"{path}: expected a mapping of extractor names to settings")
    return {str(k): dict(v or {}) for k, v in data.items()}


def merge(*configs: dict[str, dict[str, Any]]) -> dict[str, dict[str, Any]]:
    """Later configs override earlier ones, key by key."""
    out: dict[str, dict[str, Any]] = {}
    for cfg in configs:
        for name, values in cfg.items():
            out.setdefault(name, {}).update(values)
    return out


def setting_key(setting: Setting) -> Key:
    """The :class:`~emofeat.settings.Key` of an extractor setting (its default's type)."""
    key = Key.of(setting.default, help=setting.help)
    if setting.choices is not None:
        key = replace(key, choices=tuple(setting.choices))
    if key.type is list and key.item is None:
        key = replace(key, item=str)  # an empty default list holds names
    return key


def coerce(name: str, key: str, value: Any, setting: Setting) -> Any:
    """Convert ``value`` for ``setting`` (see :func:`emofeat.settings.coerce`) or raise
    :class:`ConfigError` naming ``NAME.KEY``."""
    return settings_coerce(value, setting_key(setting), f"setting {name}.{key}")


def resolve(name: str, settings: dict[str, Setting], given: dict[str, Any]) -> dict[str, Any]:
    """Defaults of an extractor overlaid with validated user values."""
    unknown = sorted(set(given) - set(settings))
    if unknown:
        known = ", ".join(sorted(settings)) or "none"
        raise ConfigError(f"unknown setting {name}.{unknown[0]} (settings of {name}: {known})")
    out = {
        k: (list(s.default) if isinstance(s.default, (list, tuple)) else s.default)
        for k, s in settings.items()
    }
    for key, value in given.items():
        out[key] = coerce(name, key, value, settings[key])
    if settings.get("mask") is MASK_SETTINGS["mask"]:
        check_mask(name, out)
    return out


def split_mask(value: str) -> tuple[str, str]:
    """``"vad"`` -> ``("vad", "")``; ``"mouth_open.open"`` -> ``("mouth_open", "open")``.

    An empty stream means the source extractor's first one-dimensional stream.
    """
    m = _MASK.match(value)
    if m is None:
        raise ValueError(value)
    return m.group(1), m.group(2) or ""


def check_mask(name: str, config: dict[str, Any]) -> None:
    """Validate the common ``mask``/``mask_min`` settings of extractor ``name`` (in place).

    The mask source must be an installed extractor other than ``name`` itself; an alias
    is replaced by the extractor's name (items are stored under it).

    Raises:
        ConfigError: naming the setting and what is wrong.
    """
    mask = config.get("mask", "")
    mask_min = config.get("mask_min", 0.5)
    if not 0.0 < mask_min <= 1.0:
        raise ConfigError(
            f"setting {name}.mask_min: {mask_min} is not a fraction in (0, 1] "
            "(the share of a row's span that must be active in the mask)"
        )
    if not mask:
        return
    try:
        source, stream = split_mask(mask)
    except ValueError:
        raise ConfigError(
            f"setting {name}.mask: {mask!r} is not EXTRACTOR or EXTRACTOR.STREAM "
            "(e.g. vad, vad.speech, mouth_open)"
        ) from None
    from emofeat.plugins import get_extractor  # the registry loads plugins: only when used

    try:
        entry = get_extractor(source)
    except UnknownExtractorError as exc:
        raise ConfigError(f"setting {name}.mask={mask}: {exc}") from None
    if entry.cls.name == name:
        raise ConfigError(f"setting {name}.mask={mask}: an extractor cannot mask itself")
    config["mask"] = f"{entry.cls.name}.{stream}" if stream else entry.cls.name
