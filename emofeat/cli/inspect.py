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
from emofeat.store import ALIGNMENT_RULE, open_store, stream_totals

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
        _inspect(store_path, as_json, show_log, show_all)
    except StoreError as exc:  # not a store, or a damaged index
        console.print(f"[red bold]error[/] {escape(str(exc))}", highlight=False)
        sys.exit(2)


def _inspect(store_path: str, as_json: bool, show_log: bool, show_all: bool) -> None:
    store = open_store(store_path)
    if not (as_json or show_all or show_log):
        summ = store.summary()  # kept in the index: no catalog to read for a large store
        if summ and summ["described"] and summ["rule"] == ALIGNMENT_RULE:
            if summ["items"] > MAX_ROWS:
                _print_summary(store_path, summ)
                return
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
    out.print(
        _summary_table(stream_totals((it["extractor"], it.get("streams") or []) for it in items))
    )
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
    first = next((i for i in items if i["status"] == "complete"), None)
    _print_outcomes(
        first,
        failures,
        [[x["key"], x["extractor"], x["alignment"]] for x in stale],
    )
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


def _summary_table(per: dict[str, list[float]]) -> Table:
    """Per extractor and stream: items, dims, native rows, frames, mean coverage."""
    t = Table(title="per extractor", show_header=True, header_style="bold")
    for col in ("extractor", "stream", "items", "dims", "rows", "frames", "coverage"):
        t.add_column(col, justify="left" if col in ("extractor", "stream") else "right")
    for name, (n, dims, rows, frames, valid) in sorted(per.items()):
        ex, stream = name.split("\t")
        cov = valid / frames if frames else 0.0
        t.add_row(
            ex,
            stream,
            str(int(n)),
            str(int(dims)),
            str(int(rows)),
            str(int(frames)),
            f"{100 * cov:.1f}%",
        )
    return t


def _print_summary(store_path: str, summ: dict[str, Any]) -> None:
    """``inspect`` of a large store from the summary its index keeps (no catalog read)."""
    out.print(
        f"[bold]{store_path}[/]: {summ['inputs']} inputs, {summ['items']} items, "
        f"{summ['runs']} runs",
        highlight=False,
    )
    out.print(_summary_table(summ["streams"]))
    out.print(f"{summ['items']} items: --all lists each one", highlight=False)
    _print_outcomes(summ.get("first"), list(summ["problems"].values()), summ["stale"])


def _print_outcomes(
    first: dict[str, Any] | None, problems: list[dict[str, Any]], stale: list[list[Any]]
) -> None:
    """The provenance of one item, the latest problems, the items aligned under an older
    rule (``[key, extractor, rule]``): what ``inspect`` prints after its tables."""
    if first:
        out.print(
            escape(
                f"provenance (e.g. {first['key']} x {first['extractor']}): emofeat "
                f"{first['emofeat_version']}, plugin {first['plugin']}, created "
                f"{first['created']}, config {json.dumps(first['config'])}"
            ),
            highlight=False,
        )
    if problems:
        out.print(f"[bold red]{len(problems)} problem(s) in the latest outcomes:[/]")
        for r in problems:
            ex = f" ({r['extractor']})" if r.get("extractor") else ""
            out.print(escape(f"  {r['status']}: {r['input']}{ex}: {r['message']}"), highlight=False)
    if stale:
        rules = ", ".join(sorted({str(a or "not recorded") for _, _, a in stale}))
        out.print(
            f"[bold yellow]{len(stale)} item(s) aligned under an older rule[/] "
            + escape(f"({rules}): rerun the extract command to redo them"),
            highlight=False,
        )
        for key, ex, _ in stale:
            out.print(escape(f"  {key} x {ex}"), highlight=False)
