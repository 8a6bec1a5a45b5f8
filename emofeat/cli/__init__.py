"""The ``emofeat`` command line (click + rich): the group ``cli`` and ``main``.

One module per command family: :mod:`~emofeat.cli.extract`, :mod:`~emofeat.cli.plugins`,
:mod:`~emofeat.cli.inspect`, :mod:`~emofeat.cli.samples`, :mod:`~emofeat.cli.models`,
:mod:`~emofeat.cli.recipe`, :mod:`~emofeat.cli.verify`,
:mod:`~emofeat.cli.compact`; :mod:`~emofeat.cli.output` holds the
two consoles. Plugins add their commands last (:func:`emofeat.plugins.add_plugin_commands`).

The heavy stacks are imported only by the commands that need them: ``emofeat --version``
and ``emofeat --help`` import no torch.
"""

from __future__ import annotations

import click

from emofeat._version import __version__
from emofeat.api import build_jobs  # scripts import it from here
from emofeat.cli import compact, extract, inspect, models, plugins, recipe, samples, verify
from emofeat.cli.plugins import plugin_rows
from emofeat.plugins import add_plugin_commands

__all__ = ["add_plugin_commands", "build_jobs", "cli", "main", "plugin_rows"]


@click.group(context_settings={"help_option_names": ["-h", "--help"]})
@click.version_option(__version__, "--version", "-V", prog_name="emofeat")
def cli() -> None:
    """emofeat: frame-aligned audio-visual emotion features.

    \b
    emofeat extract --plugin egemaps --plugin functionals videos/ -o feats.h5
    emofeat plugins
    emofeat inspect feats.h5
    emofeat verify feats.h5
    """


# the built-in commands, in the order they were defined before they had modules of their own
cli.add_command(extract.extract)
cli.add_command(plugins.plugins_cmd)
cli.add_command(inspect.inspect)
cli.add_command(samples.sample)
cli.add_command(models.models)
cli.add_command(recipe.recipe)
cli.add_command(verify.verify)
cli.add_command(compact.compact)


def main() -> None:
    """Entry point of the ``emofeat`` console script."""
    cli()


# plugins may add commands (after the built-in ones: a plugin command under a built-in
# command's name, or under another plugin's, is ignored and reported)
add_plugin_commands(cli)
