"""``emofeat compact``: merge a store's small item files into shard files."""

from __future__ import annotations

import sys

import click
from rich.markup import escape
from rich.progress import BarColumn, MofNCompleteColumn, Progress, TextColumn

from emofeat.cli.output import console, out
from emofeat.errors import StoreError, StoreWriteError
from emofeat.store import COMPACT_MAX_ITEM, FeatureStore


@click.command()
@click.argument("store_path", type=click.Path(dir_okay=False, exists=True))
@click.option(
    "--max-item-bytes",
    default=COMPACT_MAX_ITEM,
    show_default=True,
    type=click.IntRange(min=1),
    help="Item files larger than this stay files of their own.",
)
def compact(store_path: str, max_item_bytes: int) -> None:
    """Merge the small item files of a store into shard files (fewer files, fewer bytes,
    faster bulk reads). Crash-safe like a commit; `emofeat extract` does it by itself at the
    end of a run once the store holds --compact-at small items. Exit 1 when the store
    cannot be written (nothing is lost), 2 when it cannot be opened."""
    try:
        store = FeatureStore(store_path, mode="a")
    except StoreError as exc:
        console.print(f"[red bold]error[/] {escape(str(exc))}", highlight=False)
        sys.exit(2)
    bar = Progress(
        TextColumn("compact", style="bold"),
        BarColumn(),
        MofNCompleteColumn(),
        console=console,
        transient=True,
        disable=not console.is_terminal,
    )
    try:
        with bar:
            task = bar.add_task("compact", total=store.loose_items(max_item_bytes))
            res = store.compact(max_item_bytes, on_item=lambda _k, _e: bar.advance(task))
    except StoreWriteError as exc:
        console.print(f"[red bold]error[/] {escape(str(exc))}: nothing lost", highlight=False)
        sys.exit(1)
    finally:
        store.close()
    for p in res.left_out:
        console.print(
            escape(f"left out: {p.key} x {p.extractor}: {p.problem}"),
            highlight=False,
            style="yellow",
        )
    if res.left_out:
        console.print(
            f"{len(res.left_out)} damaged or missing item file(s) left as they are: the same "
            "`emofeat extract` command redoes them",
            highlight=False,
        )
    if not res.items:
        out.print(f"{escape(store_path)}: no small item files to compact", highlight=False)
        return
    out.print(
        f"{escape(store_path)}: {res.items} item files ({res.item_bytes / 1e6:.1f} MB) merged "
        f"into {res.shards} shard(s) ({res.shard_bytes / 1e6:.1f} MB) in {res.seconds:.1f} s",
        highlight=False,
    )
