"""The plugin manager: discovery through the ``emofeat`` entry-point group.

Built-in plugins are declared in emofeat's own ``pyproject.toml`` under the same group a
third-party package uses, so they load through exactly the same path.

``EMOFEAT_LOAD_PLUGINS`` (read by :func:`load_plugins`, default: unset = load everything)
is a comma-separated allow-list of entry-point names or distribution names; an empty
string loads no plugin at all.
"""

from __future__ import annotations

import importlib.metadata
import os
import sys
from dataclasses import dataclass, field

import pluggy

from emofeat import hookspecs

ENTRY_POINT_GROUP = "emofeat"
LOAD_PLUGINS_ENV = "EMOFEAT_LOAD_PLUGINS"

pm = pluggy.PluginManager("emofeat")
pm.add_hookspecs(hookspecs)

_loaded = False


@dataclass
class PluginLoadError:
    """A plugin that could not be imported (the CLI reports it and carries on)."""

    name: str
    package: str
    error: str


@dataclass
class _LoadState:
    errors: list[PluginLoadError] = field(default_factory=list)


_state = _LoadState()


def _allowed(value: str | None) -> set[str] | None:
    if value is None:
        return None
    return {part.strip() for part in value.split(",") if part.strip()}


def load_plugins(load: str | None = None) -> None:
    """Import and register every plugin of the ``emofeat`` entry-point group (once).

    Args:
        load: allow-list overriding the ``EMOFEAT_LOAD_PLUGINS`` environment variable
            (comma-separated entry-point or distribution names; ``""`` loads none).
    """
    global _loaded
    if _loaded:
        return
    _loaded = True
    allowed = _allowed(load if load is not None else os.environ.get(LOAD_PLUGINS_ENV))
    eps = list(importlib.metadata.entry_points(group=ENTRY_POINT_GROUP))
    if allowed:
        known = {ep.name for ep in eps} | {ep.dist.name for ep in eps if ep.dist is not None}
        unknown = sorted(allowed - known)
        if unknown:
            print(
                f"emofeat: {LOAD_PLUGINS_ENV} names {', '.join(map(repr, unknown))}, which no "
                f"installed plugin is called; entry points: "
                f"{', '.join(sorted({ep.name for ep in eps})) or 'none'} (packages: "
                f"{', '.join(sorted({ep.dist.name for ep in eps if ep.dist})) or 'none'})",
                file=sys.stderr,
            )
    for ep in eps:
        dist_name = ep.dist.name if ep.dist is not None else ""
        if allowed is not None and ep.name not in allowed and dist_name not in allowed:
            continue
        if pm.get_plugin(ep.name) is not None or pm.is_blocked(ep.name):
            continue
        try:
            pm.load_setuptools_entrypoints(ENTRY_POINT_GROUP, name=ep.name)
        except Exception as exc:  # a broken plugin must not take the CLI down
            _state.errors.append(
                PluginLoadError(ep.name, dist_name, f"{type(exc).__name__}: {exc}")
            )
            print(
                f"emofeat: plugin {ep.name!r} ({dist_name}) failed to load: {exc}", file=sys.stderr
            )


def load_errors() -> list[PluginLoadError]:
    """Plugins that failed to import during :func:`load_plugins`."""
    return list(_state.errors)


def plugin_distributions() -> dict[str, tuple[str, str]]:
    """Map registered plugin name -> (distribution name, version)."""
    out: dict[str, tuple[str, str]] = {}
    for plugin, dist in pm.list_plugin_distinfo():
        name = pm.get_name(plugin)
        if name is not None:
            out[name] = (dist.project_name, dist.version)
    return out


def _reset_for_tests() -> None:
    """Unregister everything and allow :func:`load_plugins` to run again."""
    global _loaded
    for plugin in list(pm.get_plugins()):
        pm.unregister(plugin)
    _loaded = False
    _state.errors.clear()


_NAME = __import__("re").compile(r"^[a-z][a-z0-9_]*$")


def get_extractors() -> dict:
    """Every registered extractor by name, tagged with its plugin and package.

    Returns:
        ``{name: ExtractorEntry}``. A class whose name collides with one registered
        earlier is reported on stderr and ignored.
    """
    from emofeat.extractor import MODALITIES, Extractor, ExtractorEntry

    load_plugins()
    dists = plugin_distributions()
    found: dict[str, ExtractorEntry] = {}
    for impl in reversed(pm.hook.register_extractors.get_hookimpls()):
        plugin = impl.plugin_name
        package, version = dists.get(plugin, ("", ""))

        def register(cls, aliases=(), _plugin=plugin, _package=package, _version=version):
            if not (isinstance(cls, type) and issubclass(cls, Extractor)):
                raise TypeError(f"plugin {_plugin!r} registered {cls!r}, not an Extractor subclass")
            if not _NAME.match(cls.name or ""):
                raise ValueError(f"plugin {_plugin!r}: bad extractor name {cls.name!r} ([a-z0-9_])")
            if cls.modality not in MODALITIES:
                raise ValueError(f"extractor {cls.name!r}: modality must be one of {MODALITIES}")
            if cls.name in found:
                print(
                    f"emofeat: extractor {cls.name!r} from plugin {_plugin!r} ignored: "
                    f"already provided by {found[cls.name].plugin!r}",
                    file=sys.stderr,
                )
                return
            found[cls.name] = ExtractorEntry(cls, _plugin, _package, _version, tuple(aliases))

        try:
            impl.function(register=register)
        except Exception as exc:
            _state.errors.append(PluginLoadError(plugin, package, f"{type(exc).__name__}: {exc}"))
            print(f"emofeat: plugin {plugin!r} failed to register: {exc}", file=sys.stderr)
    return found


def get_extractor(name: str):
    """The :class:`ExtractorEntry` called ``name`` (also matched by alias)."""
    from emofeat.errors import UnknownExtractorError

    found = get_extractors()
    if name in found:
        return found[name]
    for entry in found.values():
        if name in entry.aliases:
            return entry
    known = ", ".join(sorted(found)) or "none"
    limit = os.environ.get(LOAD_PLUGINS_ENV)
    why = f"; {LOAD_PLUGINS_ENV}={limit!r} limits which plugins load" if limit is not None else ""
    raise UnknownExtractorError(
        f"no extractor named {name!r}; installed: {known} (see 'emofeat plugins'){why}"
    )
