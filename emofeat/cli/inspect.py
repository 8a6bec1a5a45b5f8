"""``emofeat inspect``: a store's items, shapes, coverage, provenance, problems, run log."""

from __future__ import annotations

import json
import sys
from typing import Any

import click
from rich.markup import escape
from rich.table import Table

from emofeat.cli.output import console, out
from emofeat.errors import StoreError
from emofeat.store import ALIGNMENT_RULE, open_store

MAX_ROWS = 40
"""Items listed one by one without --all; a larger store is summarised per extractor."""


@click.command()
@click.argument("store_path", type=click.Path(dir_okay=False))
@click.option("--json", "as_json", is_flag=True, help="Machine-readable output.")
@click.option("--log", "show_log", is_flag=True, help="Print the whole run log.")
@click.option(
    "--all", "show_all", is_flag=True, help=f"List every item (default: up to {MAX_ROWS})."
)
def inspect(store_path: str, as_json: bool, show_log: bool, show_all: bool) -> None:
    """Show a store: items, extractors, shapes, coverage, provenance, failures."""
    try:
        store = open_store(store_path)
    except StoreError as exc:
        console.print(f"[red bold]error[/] {escape(str(exc))}", highlight=False)
        sys.exit(2)
    items: list[dict[str, Any]] = []
    for key in store.items():
        for ex in store.extractors(key):
            # the index keeps what is shown here: no item file is opened (emofeat verify
            # checks the files); items of older stores not yet described are read
            meta = store.item_meta(key, ex)
            attrs = meta["attrs"] if meta is not None else store.item_attrs(key, ex)
            if attrs is None:
                items.append({"key": key, "extractor": ex, "status": "missing or incomplete"})
                continue
            streams = (
                [
                    {k: s[k] for k in ("name", "rows", "dims", "frames", "coverage")}
                    for s in meta["streams"]
                ]
                if meta is not None
                else _read_streams(store, key, ex)
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
    log = store.log_entries()
    latest: dict[tuple[str, str], dict] = {}
    for rec in log:
        if rec.get("event") in ("item", "input"):
            latest[(str(rec.get("input")), str(rec.get("extractor") or ""))] = rec
    # per-item outcomes, plus input-level ones that have none (e.g. a path matching nothing)
    with_items = {inp for inp, ex in latest if ex}
    failures = [
        r
        for (inp, ex), r in latest.items()
        if r.get("status") in ("failed", "skipped") and (ex or inp not in with_items)
    ]
    runs = [rec for rec in log if rec.get("event") == "run-start"]
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
    out.print(_summary(items))
    listed = items if show_all or len(items) <= MAX_ROWS else []
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
    for it in listed:
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
    if listed:
        out.print(t)
    else:
        out.print(f"{len(items)} items: --all lists each one", highlight=False)
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
    if show_log:
        for rec in log:
            rec = dict(rec)
            tb = rec.pop("traceback", None)
            out.print(
                json.dumps({k: v for k, v in rec.items() if v == v}, default=str), highlight=False
            )
            if isinstance(tb, str) and tb:  # a plugin's failure: where it happened
                out.print(escape("    " + tb.rstrip().replace("\n", "\n    ")), highlight=False)


def _read_streams(store: Any, key: str, ex: str) -> list[dict[str, Any]]:
    """Stream shapes read from an item file (stores written before the index kept them)."""
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
    return streams


def _summary(items: list[dict[str, Any]]) -> Table:
    """Per extractor and stream: items, dims, native rows, frames, mean coverage."""
    per: dict[tuple[str, str], dict[str, Any]] = {}
    for it in items:
        for st in it.get("streams") or []:
            d = per.setdefault(
                (it["extractor"], st["name"]),
                {"items": 0, "dims": st["dims"], "rows": 0, "frames": 0, "coverage": 0.0},
            )
            d["items"] += 1
            d["rows"] += st["rows"]
            d["frames"] += st["frames"]
            d["coverage"] += st["coverage"] * st["frames"]
    t = Table(title="per extractor", show_header=True, header_style="bold")
    for col in ("extractor", "stream", "items", "dims", "rows", "frames", "coverage"):
        t.add_column(col, justify="left" if col in ("extractor", "stream") else "right")
    for (ex, name), d in sorted(per.items()):
        cov = d["coverage"] / d["frames"] if d["frames"] else 0.0
        t.add_row(
            ex,
            name,
            str(d["items"]),
            str(d["dims"]),
            str(d["rows"]),
            str(d["frames"]),
            f"{100 * cov:.1f}%",
        )
    return t
