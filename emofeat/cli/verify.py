"""``emofeat verify``: check every committed item of a store against its checksum."""

from __future__ import annotations

import json
import sys
import time

import click
from rich.markup import escape
from rich.progress import BarColumn, DownloadColumn, Progress, TextColumn, TimeRemainingColumn
from rich.table import Table

from emofeat.cli.output import console, out
from emofeat.errors import StoreError
from emofeat.store import open_store


@click.command()
@click.argument("store_path", type=click.Path(dir_okay=False))
@click.option("--json", "as_json", is_flag=True, help="Machine-readable output.")
def verify(store_path: str, as_json: bool) -> None:
    """Check every item of a store against the checksum recorded when it was committed.

    Reads each item file once. Names every damaged or missing item by input and
    extractor; `emofeat extract` with the same inputs redoes them. Exit status 1 when any
    item is damaged or missing, 2 when the store cannot be opened.
    """
    try:
        store = open_store(store_path)
        keys = store.items()
        total = store.stored_bytes()  # a shard counted once
        n_items = sum(len(store.extractors(k)) for k in keys)
    except StoreError as exc:
        console.print(f"[red bold]error[/] {escape(str(exc))}", highlight=False)
        sys.exit(2)
    t0 = time.perf_counter()
    bar = Progress(
        TextColumn("verify", style="bold"),
        BarColumn(),
        DownloadColumn(),
        TimeRemainingColumn(),
        console=console,
        transient=True,
        disable=as_json or not console.is_terminal,
    )
    with bar:
        task = bar.add_task("verify", total=total or None)
        problems = store.verify(lambda _k, _e, n: bar.advance(task, n))
    seconds = time.perf_counter() - t0
    if as_json:
        out.print_json(
            json.dumps(
                {
                    "store": store_path,
                    "items": n_items,
                    "bytes": total,
                    "seconds": round(seconds, 3),
                    "problems": [p.__dict__ for p in problems],
                }
            )
        )
    else:
        if problems:
            table = Table(title="damaged or missing items", header_style="bold")
            for col in ("input", "extractor", "problem"):
                table.add_column(col)
            for p in problems:
                table.add_row(escape(p.key), escape(p.extractor), escape(p.problem))
            out.print(table)
        status = f"[red]{len(problems)} damaged or missing[/]" if problems else "all intact"
        out.print(
            f"{escape(store_path)}: {n_items} items, {total / 1e6:.1f} MB checked in "
            f"{seconds:.1f} s: {status}",
            highlight=False,
        )
        if problems:
            out.print("run the same `emofeat extract` command again to redo them", highlight=False)
    sys.exit(1 if problems else 0)
