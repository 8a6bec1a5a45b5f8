"""The plugin manager: discovery through the ``emofeat`` entry-point group.

Built-in plugins are declared in emofeat's own ``pyproject.toml`` under the same group a
third-party package uses, so they load through exactly the same path.

``EMOFEAT_LOAD_PLUGINS`` (read by :func:`load_plugins`, default: unset = load everything)
is a comma-separated allow-list of entry-point names or distribution names; an empty
string loads no plugin at all.

What plugins register through the ``register_*`` hooks (extractors, models, recipes,
commands) is gathered by :func:`collect`, with one set of rules for names registered twice
and for hooks that raise.
"""

from __future__ import annotations

import copy
import importlib.metadata
import os
import re
import sys
from collections.abc import Callable, Mapping
from dataclasses import dataclass, field
from typing import TYPE_CHECKING, Any, Generic, TypeVar

import pluggy

from emofeat import hookspecs

if TYPE_CHECKING:
    import click

    from emofeat.extractor import ExtractorEntry

ENTRY_POINT_GROUP = "emofeat"
LOAD_PLUGINS_ENV = "EMOFEAT_LOAD_PLUGINS"

pm = pluggy.PluginManager("emofeat")
pm.add_hookspecs(hookspecs)

_loaded = False


@dataclass
class PluginLoadError:
    """A plugin that could not be imported, whose hook raised, or whose registration was
    refused (a name another plugin had taken); the CLI reports it and carries on.

    Attributes:
        name: the plugin's entry-point name.
        package: its distribution name (``""`` when unknown).
        error: what went wrong.
    """

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


T = TypeVar("T")

#: owner named for what emofeat itself provides (built-in commands) in collision reports
CORE = "emofeat"


@dataclass(frozen=True)
class PluginRef:
    """The plugin a hook implementation belongs to.

    Attributes:
        name: entry-point name (the name the plugin manager knows it by).
        package: distribution name (``""`` when not installed from one).
        version: distribution version (``""`` when unknown).
    """

    name: str
    package: str = ""
    version: str = ""


@dataclass
class Collected(Generic[T]):
    """What :func:`collect` gathered from one hook.

    Attributes:
        kind: what was collected (``"extractor"``, ``"model"``...), for messages.
        items: name -> item, in registration order.
        plugins: name -> entry-point name of the plugin that provided it.
        errors: this collection's errors (hooks that raised, names registered twice).
    """

    kind: str
    items: dict[str, T] = field(default_factory=dict)
    plugins: dict[str, str] = field(default_factory=dict)
    errors: list[PluginLoadError] = field(default_factory=list)


def _report(error: PluginLoadError, message: str, collected: Collected[Any]) -> None:
    collected.errors.append(error)
    if error not in _state.errors:  # once per process: collections are repeated
        _state.errors.append(error)
        print(f"emofeat: {message}", file=sys.stderr)


def _keep(_plugin: PluginRef, item: Any) -> Any:
    return item


def _register_call(hook: Callable[..., object], register: Callable[..., None]) -> None:
    hook(register=register)


def collect(
    hook_name: str,
    *,
    kind: str,
    key: Callable[[T], str] = lambda item: item.name,  # type: ignore[attr-defined]
    make: Callable[..., T] = _keep,
    call: Callable[[Callable[..., object], Callable[..., None]], None] = _register_call,
    taken: Mapping[str, str] | None = None,
) -> Collected[T]:
    """Call every implementation of the hook ``hook_name`` and gather what they register.

    The same rules hold for every hook (extractors, models, recipes, commands):

    * implementations run in the plugin manager's call order (the last plugin registered
      first); plugins are loaded first (:func:`load_plugins`);
    * the first registration of a name wins; a later one (from another plugin, the same
      plugin, or a name in ``taken``) is ignored and reported as an error naming both
      plugins;
    * an implementation that raises (a :exc:`TypeError` from ``make`` included) is
      reported as an error naming its plugin; what it registered before is kept and the
      other plugins still run.

    Errors are returned in :attr:`Collected.errors`, added to :func:`load_errors` (which
    ``emofeat plugins`` shows) and printed on stderr, the last two once per process.

    Args:
        hook_name: a hook of :mod:`emofeat.hookspecs`.
        kind: what is collected, for messages (``"extractor"``).
        key: the name an item is registered under (default: its ``name``).
        make: ``make(plugin, *args, **kwargs) -> item``: checks and converts what a plugin
            passes to ``register(*args, **kwargs)``; raises to refuse it.
        call: ``call(hook, register)`` runs one implementation; ``hook`` takes the hook's
            keyword arguments (default: ``hook(register=register)``).
        taken: names provided already, with their owner (a plugin name or :data:`CORE`).
    """
    load_plugins()
    dists = plugin_distributions()
    found: Collected[T] = Collected(kind)
    owners = dict(taken or {})
    for impl in reversed(getattr(pm.hook, hook_name).get_hookimpls()):
        if impl.hookwrapper or getattr(impl, "wrapper", False):
            continue
        plugin = PluginRef(impl.plugin_name, *dists.get(impl.plugin_name, ("", "")))

        def register(*args: Any, _plugin: PluginRef = plugin, **kwargs: Any) -> None:
            item = make(_plugin, *args, **kwargs)
            name = key(item)
            if name in owners:
                _report(
                    PluginLoadError(
                        _plugin.name,
                        _plugin.package,
                        f"{kind} {name!r} ignored: already provided by {owners[name]!r}",
                    ),
                    f"{kind} {name!r} from plugin {_plugin.name!r} ignored: "
                    f"already provided by {owners[name]!r}",
                    found,
                )
                return
            owners[name] = found.plugins[name] = _plugin.name
            found.items[name] = item

        def hook(_impl: Any = impl, **kwargs: Any) -> object:
            return _impl.function(**{a: kwargs[a] for a in _impl.argnames if a in kwargs})

        try:
            call(hook, register)
        except Exception as exc:  # a broken plugin must not hide the others
            _report(
                PluginLoadError(plugin.name, plugin.package, f"{type(exc).__name__}: {exc}"),
                f"plugin {plugin.name!r} failed to register {kind}s: {exc}",
                found,
            )
    return found


_NAME = re.compile(r"^[a-z][a-z0-9_]*$")


def get_extractors() -> dict[str, ExtractorEntry]:
    """Every registered extractor by name, tagged with its plugin and package.

    Returns:
        ``{name: ExtractorEntry}``. A class whose name collides with one registered
        earlier is ignored and reported (:func:`collect`).
    """
    from emofeat.extractor import MODALITIES, Extractor, ExtractorEntry

    def make(plugin: PluginRef, cls: Any, aliases: tuple[str, ...] = ()) -> ExtractorEntry:
        if not (isinstance(cls, type) and issubclass(cls, Extractor)):
            raise TypeError(f"plugin {plugin.name!r} registered {cls!r}, not an Extractor subclass")
        if not _NAME.match(cls.name or ""):
            raise ValueError(f"plugin {plugin.name!r}: bad extractor name {cls.name!r} ([a-z0-9_])")
        if cls.modality not in MODALITIES:
            raise ValueError(f"extractor {cls.name!r}: modality must be one of {MODALITIES}")
        return ExtractorEntry(cls, plugin.name, plugin.package, plugin.version, tuple(aliases))

    return collect(
        "register_extractors", kind="extractor", key=lambda e: e.cls.name, make=make
    ).items


def add_plugin_commands(cli: click.Group) -> Collected[click.Command]:
    """Add the commands plugins register (``register_commands``) to the group ``cli``.

    Each implementation is given a copy of ``cli`` holding the built-in commands (so it may
    extend a built-in group); the commands it adds there are collected by :func:`collect`'s
    rules, a built-in command's name counting as taken by :data:`CORE`.
    """
    import click

    builtin = dict(cli.commands)

    def stage(hook: Callable[..., object], register: Callable[..., None]) -> None:
        staging = click.Group(cli.name, commands=dict(builtin))
        try:
            hook(cli=staging)
        finally:  # what was added before a failure is kept, as with the other hooks
            for name, command in staging.commands.items():
                if builtin.get(name) is command:
                    continue
                if command.name != name:  # added under another name: keep that name
                    command = copy.copy(command)
                    command.name = name
                register(command)

    found: Collected[click.Command] = collect(
        "register_commands",
        kind="command",
        key=lambda c: str(c.name),
        call=stage,
        taken=dict.fromkeys(builtin, CORE),
    )
    for command in found.items.values():
        cli.add_command(command)
    return found


def get_extractor(name: str) -> ExtractorEntry:
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
