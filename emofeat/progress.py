"""What an extraction run shows while it runs and when it ends (rich progress and tables).

Shared by ``emofeat extract``, :func:`emofeat.extract` and the recipes that extract what they
need, so that every path reports a run the same way.
"""

from __future__ import annotations

import os
from pathlib import Path
from typing import TYPE_CHECKING, Any

from rich.console import Console
from rich.markup import escape
from rich.progress import (
    BarColumn,
    Progress,
    TaskID,
    TextColumn,
    TimeElapsedColumn,
    TimeRemainingColumn,
)
from rich.table import Table

if TYPE_CHECKING:  # annotations only: the console alone (every command's) needs no engine
    from emofeat.engine import InputResult, RunSummary


def stderr_console(stderr: bool = True) -> Console:
    """A console; wide tables when writing to a file or pipe (logs), terminal width otherwise."""
    probe = Console(stderr=stderr)
    return (
        probe if probe.is_terminal or "COLUMNS" in os.environ else Console(stderr=stderr, width=160)
    )


class RunProgress:
    """Rich progress bars: one for all inputs, one per extractor of the running input(s)."""

    def __init__(self, total: int, enabled: bool, console: Console | None = None) -> None:
        console = console or stderr_console()
        self.enabled = enabled
        self.progress = Progress(
            TextColumn("{task.description}", style="bold"),
            BarColumn(),
            TextColumn("{task.percentage:>5.1f}%"),
            TimeElapsedColumn(),
            TextColumn("eta"),
            TimeRemainingColumn(),
            console=console,
            transient=False,
            disable=not enabled,
        )
        self.overall = self.progress.add_task("inputs", total=max(total, 1))
        self.tasks: dict[tuple[str, str], TaskID] = {}

    def __enter__(self) -> RunProgress:
        self.progress.__enter__()
        return self

    def __exit__(self, *exc: Any) -> None:
        self.progress.__exit__(*exc)

    def update(self, key: str, label: str, done: float, total: float) -> None:
        tid = self.tasks.get((key, label))
        if tid is None:
            tid = self.progress.add_task(escape(f"  {key}: {label}"), total=max(total, 1e-6))
            self.tasks[(key, label)] = tid
        self.progress.update(tid, completed=min(done, total), total=max(total, 1e-6))

    def finished(self, res: InputResult) -> None:
        for (key, label), tid in list(self.tasks.items()):
            if key == res.key:
                self.progress.remove_task(tid)
                del self.tasks[(key, label)]
        self.progress.advance(self.overall)
        style = {"done": "green", "unchanged": "dim", "skipped": "yellow", "failed": "red"}
        msg = f" - {res.message}" if res.message and res.status != "unchanged" else ""
        self.progress.console.print(
            f"[{style.get(res.status, 'white')}]{res.status:>9}[/] {escape(res.input + msg)}",
            highlight=False,
        )
        for w in res.warnings:
            self.progress.console.print(f"[yellow]  warning[/] {escape(w)}", highlight=False)
        for o in res.outcomes:
            if o.status in ("skipped", "failed") and res.status == "done":
                self.progress.console.print(
                    f"[yellow]  {o.status}[/] {escape(o.extractor + ': ' + o.message)}",
                    highlight=False,
                )


def _speed(media: float, seconds: float) -> str:
    return f"{media / seconds:,.1f}x" if seconds > 0 and media > 0 else "-"


def print_summary(summary: RunSummary, store_path: Path, console: Console | None = None) -> None:
    """The end-of-run summary: counts, time, throughput per extractor."""
    console = console or stderr_console()
    counts = Table(title="emofeat extract", show_header=True, header_style="bold")
    for col in ("done", "unchanged", "skipped", "failed", "time"):
        counts.add_column(col, justify="right")
    counts.add_row(
        str(summary.count("done")),
        str(summary.count("unchanged")),
        str(summary.count("skipped")),
        str(summary.count("failed")),
        f"{summary.seconds:.1f} s",
    )
    console.print(counts)
    per: dict[str, dict[str, float]] = {}
    decode = media_total = 0.0
    for res in summary.results:
        decode += res.decode_seconds
        if res.status == "done":
            media_total += res.media_seconds
        for o in res.outcomes:
            d = per.setdefault(
                o.extractor,
                {"done": 0, "seconds": 0.0, "media": 0.0, "frames": 0, "skipped": 0, "failed": 0},
            )
            if o.status == "done":
                d["done"] += 1
                d["seconds"] += o.seconds
                d["media"] += o.media_seconds
                d["frames"] += o.frames
            elif o.status in ("skipped", "failed"):
                d[o.status] += 1
    if per:
        t = Table(show_header=True, header_style="bold")
        for col in (
            "extractor",
            "items",
            "skipped",
            "failed",
            "time",
            "media",
            "speed (x real time)",
            "frames/s",
        ):
            t.add_column(col, justify="right" if col != "extractor" else "left")
        for name, d in per.items():
            t.add_row(
                name,
                str(int(d["done"])),
                str(int(d["skipped"])),
                str(int(d["failed"])),
                f"{d['seconds']:.2f} s",
                f"{d['media']:.1f} s",
                _speed(d["media"], d["seconds"]),
                f"{d['frames'] / d['seconds']:,.0f}" if d["seconds"] > 0 and d["frames"] else "-",
            )
        t.add_row(
            "(decoding)",
            "",
            "",
            "",
            f"{decode:.2f} s",
            f"{media_total:.1f} s",
            _speed(media_total, decode),
            "",
        )
        console.print(t)
    failures = [(r.input, r.message) for r in summary.results if r.status == "failed"]
    failures = list(summary.problems) + failures
    if failures:
        console.print(f"[red bold]{len(failures)} input(s) failed:[/]")
        for inp, msg in failures:
            console.print(f"  [red]{escape(inp)}[/]: {escape(msg)}", highlight=False)
    for note in summary.notes:
        console.print(f"[yellow]note[/]: {escape(note)}", highlight=False)
    if summary.compaction is not None and summary.compaction.items:
        c = summary.compaction
        console.print(
            f"compacted {c.items} small item files ({c.item_bytes / 1e6:.1f} MB) into "
            f"{c.shards} shard(s) ({c.shard_bytes / 1e6:.1f} MB) in {c.seconds:.1f} s",
            highlight=False,
        )
    if summary.stopped:
        console.print(
            f"[red bold]run stopped[/]: {escape(summary.stopped)}\n"
            f"  {summary.not_attempted} input(s) not attempted; everything committed before "
            "is kept. Make room and run the same command again to finish.",
            highlight=False,
        )
    console.print(
        f"features: [bold]{store_path}[/] (emofeat inspect {store_path})", highlight=False
    )
