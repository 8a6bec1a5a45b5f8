"""``emofeat plugins``: the installed extractors (``plugin_rows``), the plugins and their
hooks, and what went wrong loading them or collecting what they register."""

from __future__ import annotations

import json
from typing import Any

import click
from rich.markup import escape
from rich.table import Table

from emofeat.cli.output import console, out
from emofeat.extras import missing_extra
from emofeat.plugins import get_extractors, load_errors, pm


def plugin_rows() -> list[dict[str, Any]]:
    """One dict per installed extractor (what ``emofeat plugins`` prints)."""
    rows = []
    for name, entry in sorted(get_extractors().items()):
        cls = entry.cls
        error = ""
        try:
            streams = cls().streams()
        except Exception as exc:  # shown, not hidden: a plugin author needs to see it
            streams = []
            error = f"{type(exc).__name__}: {exc}"
            if isinstance(exc, ImportError):
                extra = missing_extra(
                    exc,
                    what=f"extractor {name!r}",
                    distribution=entry.package or "emofeat",
                    prefer=entry.plugin,
                )
                error = str(extra) if extra else error
        rows.append(
            {
                "name": name,
                "plugin": entry.plugin,
                "package": entry.package,
                "version": entry.package_version,
                "extractor_version": cls.version,
                "modality": cls.modality,
                "streams": [
                    {"name": s.name, "dims": s.dims, "rate": s.rate, "level": s.level}
                    for s in streams
                ],
                "license": cls.license,
                "commercial_use": cls.commercial_use,
                "entry_point": entry.plugin,
                "error": error,
                "description": cls.description,
                "settings": {
                    k: {"default": s.default, "help": s.help} for k, s in cls.settings.items()
                },
            }
        )
    return rows


def collect_registrations() -> None:
    """Collect the models and recipes plugins register, as the extractors are, so that what
    went wrong there (a name registered twice, a hook that raises) is in ``load_errors()``.

    Cheap: the built-in plugins register descriptions only (no weights; torch is not
    imported). Users' own models (read from the model cache) are left out: no plugin
    registers them, and an unreadable cache must not stop this listing.
    """
    from emofeat.models import get_models
    from emofeat.recipes import get_recipes

    get_models(include_user=False)
    get_recipes()


@click.command(name="plugins")
@click.option("--json", "as_json", is_flag=True, help="Machine-readable output.")
def plugins_cmd(as_json: bool) -> None:
    """List installed extractors: name, version, modality, dims, rate, licence, package."""
    rows = plugin_rows()
    collect_registrations()  # their errors join load_errors(), shown below
    hooks = {
        pm.get_name(p): sorted(h.name for h in pm.get_hookcallers(p) or [])
        for p in pm.get_plugins()
    }
    if as_json:
        out.print_json(
            json.dumps(
                {
                    "extractors": rows,
                    "plugins": [{"name": n, "hooks": h} for n, h in sorted(hooks.items())],
                    "errors": [e.__dict__ for e in load_errors()],
                }
            )
        )
        return
    t = Table(
        show_header=True,
        header_style="bold",
        title="installed extractors",
        caption=escape("package [entry point]: EMOFEAT_LOAD_PLUGINS takes either name"),
    )
    for col in ("name", "version", "modality", "streams (dims @ rate)", "licence", "package"):
        t.add_column(col)
    for r in rows:
        streams = "\n".join(f"{s['name']}: {s['dims'] or '?'} @ {s['rate']}" for s in r["streams"])
        if r["error"]:
            streams = f"[red]cannot be created with its defaults:[/] {escape(r['error'])}"
        # escaped: rich would take "[audio]" for a style and print nothing
        pkg = escape(f"{r['package']} {r['version']}".strip() + f" [{r['entry_point']}]")
        t.add_row(
            r["name"], r["extractor_version"], r["modality"], streams or "-", r["license"], pkg
        )
    out.print(t)
    for e in load_errors():
        console.print(f"[red]plugin {e.name} ({e.package}) failed to load:[/] {escape(e.error)}")
