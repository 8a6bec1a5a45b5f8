"""The ``emofeat`` command line (click + rich)."""

from __future__ import annotations

import json
import os
import shlex
import sys
import time
from pathlib import Path
from typing import Any

import click
from rich.markup import escape
from rich.table import Table

from emofeat._version import __version__
from emofeat.api import (
    build_jobs,  # noqa: F401  (scripts import it from here)
    set_compute_threads,
)
from emofeat.api import extract as extract_features
from emofeat.errors import ConfigError, EmofeatError, StoreError, UnknownExtractorError
from emofeat.extras import missing_extra
from emofeat.models import LicenseNotAcceptedError
from emofeat.plugins import add_plugin_commands, get_extractors, load_errors, pm
from emofeat.progress import stderr_console
from emofeat.store import ALIGNMENT_RULE, open_store

console = stderr_console(stderr=True)
out = stderr_console(stderr=False)


@click.group(context_settings={"help_option_names": ["-h", "--help"]})
@click.version_option(__version__, "--version", "-V", prog_name="emofeat")
def cli() -> None:
    """emofeat: frame-aligned audio-visual emotion features.

    \b
    emofeat extract --plugin egemaps --plugin functionals videos/ -o feats.h5
    emofeat plugins
    emofeat inspect feats.h5
    """


def _split_names(values: tuple[str, ...]) -> list[str]:
    names: list[str] = []
    for v in values:
        names.extend(n.strip() for n in v.split(",") if n.strip())
    return list(dict.fromkeys(names))


@cli.command()
@click.argument("inputs", nargs=-1, required=True)
@click.option(
    "-p",
    "--plugin",
    "plugins",
    multiple=True,
    required=True,
    help="Extractor to run (repeatable, or comma-separated). See 'emofeat plugins'.",
)
@click.option(
    "-o",
    "--output",
    default="features.h5",
    show_default=True,
    type=click.Path(dir_okay=False),
    help="Feature store (HDF5 index file).",
)
@click.option(
    "-s",
    "--set",
    "sets",
    multiple=True,
    metavar="NAME.KEY=VALUE",
    help="Extractor setting, e.g. --set egemaps.win=2.0 (repeatable).",
)
@click.option(
    "-c",
    "--config",
    "config_file",
    type=click.Path(exists=True, dir_okay=False),
    help="YAML file of {extractor: {key: value}} settings (--set overrides it).",
)
@click.option(
    "--overwrite/--resume",
    default=False,
    help="Redo items that are complete and unchanged, or skip them (--resume, the default).",
)
@click.option(
    "-j",
    "--workers",
    default=1,
    show_default=True,
    type=click.IntRange(1, 256),
    help="Worker processes (inputs processed in parallel).",
)
@click.option("--device", default="cpu", show_default=True, help="cpu, cuda, cuda:N.")
@click.option(
    "--grid-rate",
    default=100.0,
    show_default=True,
    type=click.FloatRange(min=0.1),
    help="Frame-grid rate in Hz for audio-only inputs.",
)
@click.option(
    "--image-fps",
    default=30.0,
    show_default=True,
    type=click.FloatRange(min=0.1),
    help="Frame rate in Hz of image-sequence folders.",
)
@click.option(
    "--threads",
    default=0,
    show_default=True,
    type=click.IntRange(0, 1024),
    help="Compute threads per process for torch/OpenMP (0: CPUs / workers).",
)
@click.option(
    "--prefetch",
    default=2,
    show_default=True,
    type=click.IntRange(0, 64),
    help="Chunks decoded ahead in a background thread (0: no overlap).",
)
@click.option("--no-recursive", is_flag=True, help="Do not search folders recursively.")
@click.option("-q", "--quiet", is_flag=True, help="No progress bars.")
@click.option(
    "--debug",
    is_flag=True,
    help="Print the full traceback of every failure (the run log keeps them: inspect --log).",
)
def extract(
    inputs,
    plugins,
    output,
    sets,
    config_file,
    overwrite,
    workers,
    device,
    grid_rate,
    image_fps,
    threads,
    prefetch,
    no_recursive,
    quiet,
    debug,
) -> None:
    """Extract features from INPUTS (files, folders, glob patterns) into a store.

    Each input is decoded once and streamed to every chosen extractor. Items already
    complete and unchanged in the store are skipped (use --overwrite to redo them).
    Exit status: 0 when every input succeeded or was skipped, 1 when any failed.
    """
    set_compute_threads(threads or max(1, (os.cpu_count() or 1) // workers))
    command = " ".join(shlex.quote(a) for a in ["emofeat", *sys.argv[1:]])
    try:
        summary = extract_features(
            list(inputs),
            _split_names(plugins),
            output,
            list(sets),
            config_file=config_file,
            overwrite=overwrite,
            workers=workers,
            device=device,
            grid_rate=grid_rate,
            image_fps=image_fps,
            recursive=not no_recursive,
            prefetch=prefetch,
            progress=True,
            bars=not quiet,
            command=command,
        )
    except (ConfigError, UnknownExtractorError, LicenseNotAcceptedError) as exc:
        raise click.UsageError(str(exc)) from None  # nothing was run
    except StoreError as exc:  # the store cannot be opened: nothing was run
        console.print(f"[red bold]error[/] {escape(str(exc))}", highlight=False)
        sys.exit(2)
    except EmofeatError as exc:
        console.print(f"[red bold]error[/] {escape(str(exc))}", highlight=False)
        if debug:
            console.print_exception()
        sys.exit(1)
    traced = [o for r in summary.results for o in r.outcomes if o.traceback]
    if debug:
        for o in traced:
            console.print(f"[red]{escape(o.input)} ({escape(o.extractor)})[/]:", highlight=False)
            console.print(escape(o.traceback.rstrip()), highlight=False)
    elif traced:
        console.print(
            f"{len(traced)} failure(s) raised inside an extractor: --debug prints their "
            f"tracebacks (kept in the run log: emofeat inspect {escape(str(output))} --log)",
            highlight=False,
        )
    sys.exit(1 if summary.failed else 0)


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


@cli.command(name="plugins")
@click.option("--json", "as_json", is_flag=True, help="Machine-readable output.")
def plugins_cmd(as_json: bool) -> None:
    """List installed extractors: name, version, modality, dims, rate, licence, package."""
    rows = plugin_rows()
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


@cli.command()
@click.argument("store_path", type=click.Path(dir_okay=False))
@click.option("--json", "as_json", is_flag=True, help="Machine-readable output.")
@click.option("--log", "show_log", is_flag=True, help="Print the whole run log.")
def inspect(store_path: str, as_json: bool, show_log: bool) -> None:
    """Show a store: items, extractors, shapes, coverage, provenance, failures."""
    try:
        store = open_store(store_path)
    except StoreError as exc:
        console.print(f"[red bold]error[/] {escape(str(exc))}", highlight=False)
        sys.exit(2)
    items = []
    for key in store.items():
        for ex in store.extractors(key):
            attrs = store.item_attrs(key, ex)
            if attrs is None:
                items.append({"key": key, "extractor": ex, "status": "missing or incomplete"})
                continue
            streams = []
            for st in store.streams(key, ex):
                native = store.read(key, ex, st)
                al = store.read(key, ex, st, aligned=True)
                streams.append(
                    {
                        "name": st,
                        "rows": int(native.data.shape[0]),
                        "dims": int(native.data.shape[1]),
                        "frames": int(al.data.shape[0]),
                        "coverage": float(al.mask.mean()) if len(al.mask) else 0.0,
                    }
                )
            items.append(
                {
                    "key": key,
                    "extractor": ex,
                    "status": "complete",
                    "streams": streams,
                    "source": (attrs.get("source") or {}).get("path"),
                    "plugin": f"{attrs.get('plugin_package')} {attrs.get('plugin_version')}",
                    "extractor_version": attrs.get("extractor_version"),
                    "emofeat_version": attrs.get("emofeat_version"),
                    "license": attrs.get("license"),
                    "model_id": attrs.get("model_id"),
                    "config": (attrs.get("config") or {}).get("settings"),
                    "created": attrs.get("created"),
                    "warnings": attrs.get("warnings") or [],
                    "alignment": attrs.get("alignment"),
                }
            )
    # items aligned under an older alignment rule: the next extract run redoes them
    stale = [
        {"key": it["key"], "extractor": it["extractor"], "alignment": it["alignment"]}
        for it in items
        if it["status"] == "complete" and it["alignment"] != ALIGNMENT_RULE
    ]
    log = store.run_log()
    latest: dict[tuple[str, str], dict] = {}
    if len(log):
        for rec in log[log["event"].isin(["item", "input"])].to_dict("records"):
            latest[(rec.get("input"), rec.get("extractor") or "")] = rec
    # per-item outcomes, plus input-level ones that have none (e.g. a path matching nothing)
    with_items = {inp for inp, ex in latest if ex}
    failures = [
        r
        for (inp, ex), r in latest.items()
        if r.get("status") in ("failed", "skipped") and (ex or inp not in with_items)
    ]
    runs = log[log["event"] == "run-start"].to_dict("records") if len(log) else []
    if as_json:
        out.print_json(
            json.dumps(
                {
                    "store": str(store_path),
                    "items": items,
                    "problems": failures,
                    "runs": runs,
                    "alignment_rule": ALIGNMENT_RULE,
                    "stale_alignment": stale,
                },
                default=str,
            )
        )
        return
    out.print(
        f"[bold]{store_path}[/]: {len(store.items())} inputs, {len(items)} items, {len(runs)} runs",
        highlight=False,
    )
    t = Table(show_header=True, header_style="bold")
    for col in (
        "input",
        "extractor",
        "stream",
        "rows x dims",
        "frames",
        "coverage",
        "version",
        "licence",
    ):
        t.add_column(col)
    for it in items:
        if it["status"] != "complete":
            t.add_row(it["key"], it["extractor"], "-", it["status"], "", "", "", "")
            continue
        for i, s in enumerate(it["streams"]):
            t.add_row(
                it["key"] if i == 0 else "",
                it["extractor"] if i == 0 else "",
                s["name"],
                f"{s['rows']} x {s['dims']}",
                str(s["frames"]),
                f"{100 * s['coverage']:.1f}%",
                str(it["extractor_version"]) if i == 0 else "",
                (it["license"] or "") if i == 0 else "",
            )
    out.print(t)
    if items:
        first = next(i for i in items if i["status"] == "complete")
        out.print(
            escape(
                f"provenance (e.g. {first['key']} x {first['extractor']}): emofeat "
                f"{first['emofeat_version']}, plugin {first['plugin']}, created "
                f"{first['created']}, config {json.dumps(first['config'])}"
            ),
            highlight=False,
        )
    if failures:
        out.print(f"[bold red]{len(failures)} problem(s) in the latest outcomes:[/]")
        for r in failures:
            ex = f" ({r['extractor']})" if r.get("extractor") else ""
            out.print(escape(f"  {r['status']}: {r['input']}{ex}: {r['message']}"), highlight=False)
    if stale:
        rules = ", ".join(sorted({str(s["alignment"] or "not recorded") for s in stale}))
        out.print(
            f"[bold yellow]{len(stale)} item(s) aligned under an older rule[/] "
            + escape(f"({rules}): rerun the extract command to redo them"),
            highlight=False,
        )
        for s in stale:
            out.print(escape(f"  {s['key']} x {s['extractor']}"), highlight=False)
    if show_log and len(log):
        for rec in log.to_dict("records"):
            tb = rec.pop("traceback", None)
            out.print(
                json.dumps({k: v for k, v in rec.items() if v == v}, default=str), highlight=False
            )
            if isinstance(tb, str) and tb:  # a plugin's failure: where it happened
                out.print(escape("    " + tb.rstrip().replace("\n", "\n    ")), highlight=False)


@cli.command()
@click.argument("folder", type=click.Path(file_okay=False), default="demo/inputs")
@click.option("--duration", default=20.0, show_default=True, help="Seconds per file.")
def sample(folder: str, duration: float) -> None:
    """Write sample inputs (a video with speech-like audio, a WAV file, an image folder)."""
    from emofeat.samples import write_audio, write_image_sequence, write_video

    root = Path(folder)
    root.mkdir(parents=True, exist_ok=True)
    t0 = time.perf_counter()
    write_video(root / "talk.mp4", duration=duration)
    write_audio(root / "speech.wav", duration=duration)
    write_image_sequence(root / "crops_track", n_frames=90, missing=(40, 41, 42))
    console.print(
        f"wrote sample inputs to {root} in {time.perf_counter() - t0:.1f} s", highlight=False
    )


@cli.group()
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


@cli.group()
def recipe() -> None:
    """Training recipes: list them, show their config, run them."""


@recipe.command(name="list")
@click.option("--json", "as_json", is_flag=True, help="Machine-readable output.")
def recipe_list(as_json: bool) -> None:
    """Every installed recipe with its named configs."""
    from emofeat.recipes import get_recipes

    rows = [
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


def main() -> None:
    """Entry point of the ``emofeat`` console script."""
    cli()


# plugins may add commands (after the built-in ones: a plugin command under a built-in
# command's name, or under another plugin's, is ignored and reported)
add_plugin_commands(cli)
