"""``emofeat recipe``: list the training recipes, show their resolved config, run them."""

from __future__ import annotations

import json
import sys
from pathlib import Path
from typing import Any

import click
from rich.markup import escape
from rich.table import Table

from emofeat.cli.output import console, out
from emofeat.errors import ConfigError, EmofeatError
from emofeat.progress import stderr_console


@click.group()
def recipe() -> None:
    """Training recipes: list them, show their config, run them."""


@recipe.command(name="list")
@click.option("--json", "as_json", is_flag=True, help="Machine-readable output.")
def recipe_list(as_json: bool) -> None:
    """Every installed recipe with its named configs."""
    from emofeat.recipes import get_recipes

    rows: list[dict[str, Any]] = [
        {
            "name": r.name,
            "description": r.description,
            "configs": sorted(r.configs),
            "plugin": r.plugin,
            "version": r.version,
        }
        for _, r in sorted(get_recipes().items())
    ]
    if as_json:
        out.print_json(json.dumps(rows))
        return
    t = Table(show_header=True, header_style="bold", title="recipes")
    for col in ("name", "description", "configs", "plugin"):
        t.add_column(col)
    for r in rows:
        t.add_row(r["name"], r["description"], ", ".join(r["configs"]), r["plugin"])
    out.print(t)


def _recipe_config(name: str, config: str | None, sets: tuple[str, ...], overrides: dict):
    from emofeat.recipes import RecipeError, get_recipe, resolve_config

    try:
        rec = get_recipe(name)
        return rec, resolve_config(rec, config, sets, overrides)
    except (RecipeError, ConfigError) as exc:
        console.print(f"[red bold]error[/] {escape(str(exc))}", highlight=False)
        sys.exit(2)


@recipe.command(name="show")
@click.argument("name")
@click.option("--config", "config", default=None, help="Named config or YAML file.")
@click.option("--set", "sets", multiple=True, metavar="KEY=VALUE", help="Override a key.")
def recipe_show(name: str, config: str | None, sets: tuple[str, ...]) -> None:
    """Print the resolved configuration of recipe NAME (YAML)."""
    import yaml

    _, resolved = _recipe_config(name, config, sets, {})
    click.echo(yaml.safe_dump(resolved, sort_keys=False), nl=False)


@recipe.command(name="run")
@click.argument("name")
@click.option(
    "--data", type=click.Path(file_okay=False), default=None, help="Aff-Wild2 (-shaped) root."
)
@click.option(
    "--features",
    type=click.Path(dir_okay=False),
    multiple=True,
    help="Feature store (feats.h5; repeatable). Missing features are extracted into the "
    "first; default: <out>/features/<root>-<hash>.h5.",
)
@click.option(
    "--no-extract",
    is_flag=True,
    help="Never extract: stop at the coverage gate when the stores lack inputs.",
)
@click.option("--config", "config", default=None, help="Named config (e.g. sun2024) or YAML file.")
@click.option(
    "--set", "sets", multiple=True, metavar="KEY=VALUE", help="Override a config key (dotted)."
)
@click.option(
    "-o",
    "--out",
    type=click.Path(file_okay=False),
    default="runs",
    show_default=True,
    help="Parent folder of the run directory.",
)
@click.option("--device", default=None, help="cpu, cuda, cuda:N (default: the config's).")
@click.option("--seed", type=int, default=None, help="Random seed (default: the config's).")
@click.option(
    "--resume",
    type=click.Path(file_okay=False, exists=True),
    default=None,
    help="Continue an interrupted run in this run directory (its config.yaml is used).",
)
@click.option("-q", "--quiet", is_flag=True, help="No progress bars.")
def recipe_run(
    name: str,
    data: str | None,
    features: tuple[str, ...],
    no_extract: bool,
    config: str | None,
    sets: tuple[str, ...],
    out: str,
    device: str | None,
    seed: int | None,
    resume: str | None,
    quiet: bool,
) -> None:
    """Train and evaluate recipe NAME; write a self-contained run directory.

    \b
    emofeat recipe run abaw_va --data /data/aff-wild2     # extracts what it needs, then trains
    emofeat recipe run abaw_expr --data /data/aff-wild2   # reuses the same feature store
    """
    from emofeat.recipes import run_recipe

    overrides: dict[str, Any] = {}
    stores = list(features) or None  # a list: a path with a comma stays one path
    for key, value in (("data", data), ("features", stores), ("device", device), ("seed", seed)):
        if value is not None:
            overrides[key] = value
    if no_extract:
        overrides["extract"] = {"enabled": False}
    run_dir = None
    if resume is not None:
        run_dir = Path(resume)
        prior = run_dir / "config.yaml"
        if not prior.is_file():
            console.print(f"[red bold]error[/] {run_dir}: no config.yaml to resume from")
            sys.exit(2)
        config = str(prior)
        overrides["resume"] = True
    rec, resolved = _recipe_config(name, config, sets, overrides)
    try:
        run_dir, summary = run_recipe(
            rec, resolved, Path(out), run_dir=run_dir, quiet=quiet, argv=sys.argv
        )
    except EmofeatError as exc:  # a usage error (an extra not installed) exits 2
        console.print(f"[red bold]error[/] {escape(str(exc))}", highlight=False)
        sys.exit(2 if isinstance(exc, ConfigError) else 1)
    except Exception as exc:
        console.print(
            f"[red bold]recipe {name} failed[/] {type(exc).__name__}: {escape(str(exc))} "
            "(traceback in the run directory's run.log)",
            highlight=False,
        )
        sys.exit(1)
    console.print(f"[green]done[/] {run_dir}", highlight=False)
    if summary:
        # "out" is the -o option here: the stdout console by its own name
        stderr_console(stderr=False).print_json(json.dumps(summary, default=str))
