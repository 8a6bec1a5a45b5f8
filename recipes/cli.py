"""The ``emofeat datasets`` commands (synth, info, check), registered through the command hook.

They belong to the recipes: the Aff-Wild2 reader, the synthetic generator and the checks live
in :mod:`emofeat_recipes.datasets`; the core only offers the hook.
"""

from __future__ import annotations

import json
import sys
import time

import click
from rich.markup import escape
from rich.progress import BarColumn, Progress, TextColumn, TimeElapsedColumn
from rich.table import Table

from emofeat import EmofeatError, open_store, stderr_console


def register(cli: click.Group) -> None:
    """Add the ``datasets`` group to the ``emofeat`` command."""
    console = stderr_console(stderr=True)
    out = stderr_console(stderr=False)

    @cli.group()
    def datasets() -> None:
        """Datasets: generate a synthetic Aff-Wild2-shaped set, describe a real one."""

    @datasets.command(name="synth")
    @click.argument("root", type=click.Path(file_okay=False))
    @click.option("--videos", default=24, show_default=True, help="Number of raw videos.")
    @click.option("--seed", default=0, show_default=True, help="Random seed (same seed, same set).")
    @click.option("--duration", default=12.0, show_default=True, help="Seconds per video.")
    @click.option(
        "--split-modalities",
        is_flag=True,
        help="Plant the labels partly in the face, partly in the voice (fusion must combine them).",
    )
    @click.option(
        "--workers",
        default=0,
        show_default=True,
        help="Processes rendering videos (0 = one per CPU).",
    )
    @click.option(
        "--crops-layout",
        type=click.Choice(["flat", "nested"]),
        default="flat",
        show_default=True,
        help="flat: cropped_aligned/<track>; nested: as ABAW6 unpacks, "
        "cropped_aligned/cropped_aligned/<track> and cropped_aligned/cropped_aligned_new_50_vids/.",
    )
    @click.option("-q", "--quiet", is_flag=True, help="No progress bar.")
    def datasets_synth(
        root: str,
        videos: int,
        seed: int,
        duration: float,
        split_modalities: bool,
        workers: int,
        crops_layout: str,
        quiet: bool,
    ) -> None:
        """Write an Aff-Wild2-shaped set with labels planted in faces and voices (docs/synth.md)."""
        from emofeat_recipes.datasets.synth import generate

        t0 = time.perf_counter()
        with Progress(
            TextColumn("{task.description}"),
            BarColumn(),
            TextColumn("{task.completed:.0f}/{task.total:.0f}"),
            TimeElapsedColumn(),
            console=console,
            disable=quiet or not console.is_terminal,
        ) as bar:
            task = bar.add_task("rendering videos", total=videos)

            def progress(done: int, total: int, name: str) -> None:
                bar.update(task, completed=done, total=total, description=f"rendered {name}")

            try:
                summary = generate(
                    root,
                    videos=videos,
                    seed=seed,
                    duration=duration,
                    split_modalities=split_modalities,
                    progress=progress,
                    workers=workers,
                    crops_layout=crops_layout,
                )
            except ValueError as exc:
                raise click.UsageError(str(exc)) from exc
            except (EmofeatError, OSError) as exc:
                console.print(f"[red bold]error[/] {escape(str(exc))}", highlight=False)
                sys.exit(1)
        console.print(
            f"wrote a synthetic Aff-Wild2-shaped set to {root} in "
            f"{time.perf_counter() - t0:.1f} s: {summary.get('tracks')} tracks, "
            f"{summary.get('frames')} frames ({summary.get('mode')})",
            highlight=False,
        )

    @datasets.command(name="info")
    @click.argument("root", type=click.Path(file_okay=False, exists=True))
    @click.option("--json", "as_json", is_flag=True, help="Machine-readable output.")
    def datasets_info(root: str, as_json: bool) -> None:
        """Describe an Aff-Wild2 (-shaped) tree: tracks per task and split, videos, crops."""
        from emofeat_recipes.datasets.affwild2 import AffWild2

        try:
            summary = AffWild2(root).summary()
        except EmofeatError as exc:
            console.print(f"[red bold]error[/] {escape(str(exc))}", highlight=False)
            sys.exit(1)
        if as_json:
            out.print_json(json.dumps(summary, default=str))
        else:
            out.print(summary)

    @datasets.command(name="check")
    @click.argument("root", type=click.Path(file_okay=False, exists=True))
    @click.option(
        "--features",
        "features",
        multiple=True,
        type=click.Path(dir_okay=False, exists=True),
        help="Feature store(s) whose items are joined to the tracks (repeatable).",
    )
    @click.option(
        "--all", "show_all", is_flag=True, help="List every track, not only those with problems."
    )
    @click.option("--json", "as_json", is_flag=True, help="Machine-readable output (every track).")
    def datasets_check(root: str, features: tuple[str, ...], show_all: bool, as_json: bool) -> None:
        """Check an Aff-Wild2 tree (and stores) track by track before extracting or training.

        Per track: label lines, frames on the engine's frame grid (probed, not decoded), crop
        images and gaps, stored items and their frame counts, and every mismatch. Exit status 1
        when any error was found.
        """
        from emofeat_recipes.datasets.affwild2 import AffWild2
        from emofeat_recipes.datasets.check import check_dataset
        from emofeat_recipes.datasets.join import FeatureIndex

        t0 = time.perf_counter()
        try:
            ds = AffWild2(root)
            index = FeatureIndex([open_store(f) for f in features]) if features else None
            report = check_dataset(ds, index)
        except EmofeatError as exc:
            console.print(f"[red bold]error[/] {escape(str(exc))}", highlight=False)
            sys.exit(1)
        if as_json:
            out.print_json(json.dumps(report.as_dict(), default=str))
            sys.exit(0 if report.ok else 1)
        rows = [t for t in report.tracks if show_all or t.errors or t.warnings]
        if rows:
            t = Table(show_header=True, header_style="bold", title="tracks")
            cols = ("track", "task", "split", "labels", "video frames", "crops (gaps)", "items")
            for col in cols:
                t.add_column(
                    col, justify="left" if col in ("track", "task", "split", "items") else "right"
                )
            t.add_column("problems")
            for tc in rows:
                items = ", ".join(f"{d['extractor']} {d['frames']}" for d in tc.items) or "-"
                problems = [f"[red]error[/] {escape(e)}" for e in tc.errors]
                problems += [f"[yellow]warning[/] {escape(w)}" for w in tc.warnings]
                t.add_row(
                    escape(tc.name),
                    tc.task,
                    tc.split,
                    str(tc.label_lines if tc.label_lines is not None else "-"),
                    str(tc.video_frames if tc.video_frames is not None else "-"),
                    f"{tc.crop_images} ({tc.crop_gaps})" if tc.crops else "-",
                    escape(items),
                    "\n".join(problems) or "ok",
                )
            out.print(t)
        summary = report.summary()
        s = Table(
            show_header=True, header_style="bold", title=f"{root}: {len(report.tracks)} tracks"
        )
        for col in ("task/split", "tracks", "label frames", "with errors", "with warnings"):
            s.add_column(col, justify="left" if col == "task/split" else "right")
        for key, d in summary["splits"].items():
            s.add_row(
                key,
                str(d["tracks"]),
                f"{d['label_frames']:,}",
                str(d["with_errors"]),
                str(d["with_warnings"]),
            )
        out.print(s)
        for w in report.warnings:
            console.print(f"[yellow]warning[/] {escape(w)}", highlight=False)
        verdict = "[green]no errors[/]" if report.ok else f"[red bold]{report.errors} error(s)[/]"
        console.print(
            f"{verdict}, {summary['warnings']} warning(s) in {time.perf_counter() - t0:.1f} s",
            highlight=False,
        )
        sys.exit(0 if report.ok else 1)
