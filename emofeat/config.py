"""Settings: one convention everywhere, ``--set NAME.KEY=VALUE`` or a YAML file.

A YAML config file maps extractor names to their settings::

    egemaps:
      win: 4.0
      hop: 2.0
    functionals:
      stats: [mean, std]

``--set`` values are parsed as YAML scalars (``2.0``, ``true``, ``a,b``) and override the
file. Every key is checked against the extractor's declared settings and converted to the
type of its default.
"""

from __future__ import annotations

import re
from pathlib import Path
from typing import Any

import yaml

from emofeat.errors import ConfigError, UnknownExtractorError
from emofeat.extractor import MASK_SETTINGS, Setting

_MASK = re.compile(r"^([a-z][a-z0-9_]*)(?:\.([A-Za-z0-9_.+\-]+))?$")


def parse_sets(items: list[str] | tuple[str, ...]) -> dict[str, dict[str, Any]]:
    """Parse ``NAME.KEY=VALUE`` strings into ``{name: {key: value}}``."""
    out: dict[str, dict[str, Any]] = {}
    for item in items:
        if "=" not in item or "." not in item.split("=", 1)[0]:
            raise ConfigError(f"--set {item!r}: expected NAME.KEY=VALUE, e.g. egemaps.win=4.0")
        lhs, value = item.split("=", 1)
        name, key = lhs.split(".", 1)
        try:
            parsed = yaml.safe_load(value) if value.strip() else ""
        except yaml.YAMLError:
            parsed = value
        out.setdefault(name.strip(), {})[key.strip()] = parsed
    return out


def load_config_file(path: str | Path) -> dict[str, dict[str, Any]]:
    """Read a YAML config file of ``{name: {key: value}}``."""
    p = Path(path)
    try:
        data = yaml.safe_load(p.read_text()) or {}
    except OSError as exc:
        raise ConfigError(f"{p}: cannot read config file ({exc.strerror})") from exc
    except yaml.YAMLError as exc:
        raise ConfigError(f"{p}: invalid YAML ({exc})") from exc
    if not isinstance(data, dict) or not all(isinstance(v, dict) for v in data.values()):
        raise ConfigError(f"{p}: expected a mapping of extractor names to settings")
    return data


def merge(*configs: dict[str, dict[str, Any]]) -> dict[str, dict[str, Any]]:
    """Later configs override earlier ones, key by key."""
    out: dict[str, dict[str, Any]] = {}
    for cfg in configs:
        for name, values in cfg.items():
            out.setdefault(name, {}).update(values)
    return out


def coerce(name: str, key: str, value: Any, setting: Setting) -> Any:
    """Convert ``value`` to the type of ``setting.default`` or raise :class:`ConfigError`."""
    default = setting.default
    where = f"{name}.{key}"
    try:
        if isinstance(default, bool):
            if isinstance(value, str) and value.lower() in ("1", "yes", "true", "on"):
                value = True
            elif isinstance(value, str) and value.lower() in ("0", "no", "false", "off"):
                value = False
            if not isinstance(value, bool):
                raise ValueError
        elif isinstance(default, (int, float)) and isinstance(value, bool):
            raise ValueError  # strict: true is not 1.0 (--set win=true was taken as 1.0)
        elif isinstance(default, int):
            if isinstance(value, float) and not value.is_integer():
                raise ValueError
            value = int(value)
        elif isinstance(default, float):
            value = float(value)
        elif isinstance(default, (list, tuple)):
            if isinstance(value, str):
                value = [v.strip() for v in value.split(",") if v.strip()]
            elif not isinstance(value, (list, tuple)):
                value = [value]
            value = list(value)
        elif isinstance(default, str):
            value = "" if value is None else str(value)
    except (TypeError, ValueError):
        raise ConfigError(
            f"setting {where}: {value!r} is not a valid {type(default).__name__}"
        ) from None
    if setting.choices is not None:
        values = value if isinstance(value, list) else [value]
        bad = [v for v in values if v not in setting.choices]
        if bad:
            raise ConfigError(
                f"setting {where}: {bad[0]!r} is not one of {', '.join(map(str, setting.choices))}"
            )
    return value


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
