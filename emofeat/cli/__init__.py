"""The ``emofeat`` command line (click + rich): the group ``cli`` and ``main``.

One module per command family: :mod:`~emofeat.cli.extract`, :mod:`~emofeat.cli.plugins`,
:mod:`~emofeat.cli.inspect`, :mod:`~emofeat.cli.samples`, :mod:`~emofeat.cli.models`,
:mod:`~emofeat.cli.recipe`, :mod:`~emofeat.cli.verify`,
:mod:`~emofeat.cli.compact`, :mod:`~emofeat.cli.report`; :mod:`~emofeat.cli.output` holds the
two consoles. Plugins add their commands last (:func:`emofeat.plugins.add_plugin_commands`).

Everything is imported when it is needed (:class:`LazyGroup`): a command's module when the
command runs or is listed, the plugins when their commands are (``--help``, a name that is
not built in, a built-in group a plugin may extend, ``emofeat plugins``), the heavy stacks
by the code that runs them. ``emofeat --version`` imports click and the core's light modules
only; ``emofeat --help`` adds the command modules and the plugin packages, none of which
imports openSMILE, pandas or torch; ``emofeat plugins`` adds openSMILE (its feature names)
and onnxruntime (the VAD), not torch, timm or transformers (the nets' widths are declared).
"""

from __future__ import annotations

import importlib
from typing import TYPE_CHECKING, Any

import click

from emofeat._version import __version__
from emofeat.plugins import add_plugin_commands

if TYPE_CHECKING:
    from emofeat.api import build_jobs
    from emofeat.cli.plugins import plugin_rows

__all__ = ["LazyGroup", "add_plugin_commands", "build_jobs", "cli", "main", "plugin_rows"]

#: the built-in commands: name -> (module of ``emofeat.cli``, its attribute), in the order
#: they were defined before they had modules of their own
BUILTIN: dict[str, tuple[str, str]] = {
    "extract": ("extract", "extract"),
    "plugins": ("plugins", "plugins_cmd"),
    "inspect": ("inspect", "inspect"),
    "sample": ("samples", "sample"),
    "models": ("models", "models"),
    "recipe": ("recipe", "recipe"),
    "verify": ("verify", "verify"),
    "compact": ("compact", "compact"),
    "report": ("report", "report"),
    "predict": ("predict", "predict"),
    "render": ("render", "render"),
}

#: built-in commands run with the plugins' commands collected: the groups (a plugin may add
#: a subcommand to one) and ``plugins`` (it reports what went wrong collecting them)
WITH_PLUGIN_COMMANDS = frozenset({"models", "recipe", "plugins"})


class LazyGroup(click.Group):
    """The ``emofeat`` group: imports a built-in command's module when the command is looked
    up, and collects the plugins' commands (which imports the plugins) only when they may be
    asked for: to list the commands, to resolve a name that is not built in, or to run one of
    :data:`WITH_PLUGIN_COMMANDS`. Eager options (``--version``) look up no command."""

    def __init__(self, *args: Any, **kwargs: Any) -> None:
        super().__init__(*args, **kwargs)
        self._plugin_commands = False

    def builtin(self, name: str) -> click.Command:
        """The built-in command ``name``, its module imported and the command added once."""
        command = self.commands.get(name)
        if command is None:
            module, attribute = BUILTIN[name]
            command = getattr(importlib.import_module(f"{__name__}.{module}"), attribute)
            self.add_command(command, name)
        return command

    def add_plugin_commands(self) -> None:
        """Add every built-in command, then the plugins' (once; see
        :func:`emofeat.plugins.add_plugin_commands`: a built-in name is taken)."""
        if self._plugin_commands:
            return
        self._plugin_commands = True
        for name in BUILTIN:
            self.builtin(name)
        add_plugin_commands(self)

    def get_command(self, ctx: click.Context, cmd_name: str) -> click.Command | None:
        if cmd_name in BUILTIN:
            if cmd_name in WITH_PLUGIN_COMMANDS:
                self.add_plugin_commands()
            return self.builtin(cmd_name)
        self.add_plugin_commands()
        return super().get_command(ctx, cmd_name)

    def list_commands(self, ctx: click.Context) -> list[str]:
        self.add_plugin_commands()
        return super().list_commands(ctx)


def __getattr__(name: str) -> Any:
    # scripts import these from here; imported on first use (the engine, the plugins' rows)
    if name == "build_jobs":
        from emofeat.api import build_jobs

        return build_jobs
    if name == "plugin_rows":
        from emofeat.cli.plugins import plugin_rows

        return plugin_rows
    raise AttributeError(f"module {__name__!r} has no attribute {name!r}")


@click.group(cls=LazyGroup, context_settings={"help_option_names": ["-h", "--help"]})
@click.version_option(__version__, "--version", "-V", prog_name="emofeat")
def cli() -> None:
    """emofeat: frame-aligned audio-visual emotion features.

    \b
    emofeat extract --plugin egemaps --plugin functionals videos/ -o feats.h5
    emofeat plugins
    emofeat inspect feats.h5
    emofeat verify feats.h5
    """


def main() -> None:
    """Entry point of the ``emofeat`` console script."""
    cli()
