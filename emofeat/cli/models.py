"""``emofeat models``: list, fetch (verified), import local files, accept licences."""

from __future__ import annotations

import json
import sys
from pathlib import Path

import click
from rich.markup import escape
from rich.table import Table

from emofeat.cli.output import console, out


@click.group()
@click.option(
    "--cache-dir",
    type=click.Path(file_okay=False),
    default=None,
    help="Model cache (default: $EMOFEAT_CACHE_DIR or ~/.cache/emofeat/models).",
)
@click.pass_context
def models(ctx: click.Context, cache_dir: str | None) -> None:
    """Model weights: list, fetch (verified), import local files, accept licences."""
    from emofeat.models import ModelCache

    ctx.obj = ModelCache(cache_dir)


def _model_or_exit(name: str, cache=None):
    from emofeat.models import ModelError, get_model

    try:
        return get_model(name, cache.root if cache is not None else None)
    except ModelError as exc:
        console.print(f"[red bold]error[/] {escape(str(exc))}", highlight=False)
        sys.exit(2)


@models.command(name="list")
@click.option("--json", "as_json", is_flag=True, help="Machine-readable output.")
@click.pass_obj
def models_list(cache, as_json: bool) -> None:
    """Every known model: files, size, licence, cached or not, sources."""
    from emofeat.models import get_models, model_summary

    rows = [model_summary(m, cache) for _, m in sorted(get_models(cache_root=cache.root).items())]
    if as_json:
        out.print_json(json.dumps({"cache": str(cache.root), "models": rows}))
        return
    t = Table(show_header=True, header_style="bold", title=f"models (cache: {cache.root})")
    for col in ("name", "version", "files", "size", "licence", "cached", "sources"):
        t.add_column(col)
    for r in rows:
        lic = r["license"] + (
            ""
            if r["commercial_use"]
            else (" (accepted)" if r["license_accepted"] else " (opt-in needed)")
        )
        t.add_row(
            r["name"],
            r["version"],
            "\n".join(f["name"] for f in r["files"]),
            f"{r['size'] / 1e6:.1f} MB" if r["size"] else "not published",
            lic,
            "yes" if r["cached"] else "no",
            "\n".join(r["sources"]),
        )
    out.print(t)


@models.command(name="fetch")
@click.argument("names", nargs=-1, required=True)
@click.option(
    "--accept-license",
    is_flag=True,
    help="Accept the licence of non-commercial models (remembered per model).",
)
@click.pass_obj
def models_fetch(cache, names: tuple[str, ...], accept_license: bool) -> None:
    """Obtain and verify the weights of NAMES (sources tried in order)."""
    from emofeat.models import ModelError

    failed = 0
    for name in names:
        model = _model_or_exit(name, cache)
        try:
            path = cache.fetch(model, accept_license=accept_license)
        except ModelError as exc:
            failed += 1
            console.print(f"[red bold]{name}[/]: {escape(str(exc))}", highlight=False)
            continue
        console.print(
            f"[green]{name}[/] {model.version} ({model.license}): {path}", highlight=False
        )
    sys.exit(1 if failed else 0)


@models.command(name="import")
@click.argument("name")
@click.argument("path", type=click.Path(exists=True))
@click.option(
    "--license",
    "license_",
    default="",
    help="Your model's licence (new names only; default: the 'license' recorded in the "
    "folder's emofeat.json).",
)
@click.option(
    "--non-commercial",
    is_flag=True,
    help="Require the licence opt-in before use (automatic for CC NC licences).",
)
@click.option("--description", default="", help="One line shown by 'emofeat models list'.")
@click.pass_obj
def models_import(
    cache, name: str, path: str, license_: str, non_commercial: bool, description: str
) -> None:
    """Install model NAME from a local file, folder or archive (checksums verified).

    NAME a registered model: its own files, verified. Any other NAME: your model (such as a
    checkpoint of the fine-tuning recipes) is copied into the cache and registered under
    NAME, so that '--set face_cnn.model=NAME' or '--set pdem.model=NAME' finds it.
    """
    from emofeat.models import ModelError, get_models, register_user_model

    registered = get_models(include_user=False)
    try:
        if name in registered:
            folder = cache.import_files(registered[name], path)
            console.print(f"[green]{name}[/] imported: {folder}", highlight=False)
            return
        license_ = license_ or _recorded_license(Path(path))
        model, folder = register_user_model(
            name,
            path,
            license_,
            cache=cache,
            description=description,
            commercial_use=False if non_commercial else None,
        )
    except ModelError as exc:
        console.print(f"[red bold]error[/] {escape(str(exc))}", highlight=False)
        sys.exit(1)
    note = "" if model.commercial_use else " - non-commercial: 'emofeat models accept' first"
    console.print(f"[green]{name}[/] registered ({model.license}{note}): {folder}", highlight=False)


def _recorded_license(path: Path) -> str:
    """The licence a checkpoint folder records in its emofeat.json ('' when none)."""
    meta = path / "emofeat.json"
    try:
        value = json.loads(meta.read_text()).get("license", "")
    except (OSError, ValueError, AttributeError):
        return ""
    return value if isinstance(value, str) else ""


@models.command(name="accept")
@click.argument("name")
@click.pass_obj
def models_accept(cache, name: str) -> None:
    """Accept the licence of a non-commercial model (remembered in the cache)."""
    model = _model_or_exit(name, cache)
    cache.accept(model)
    console.print(f"accepted {model.license} for {name}", highlight=False)
