"""``emofeat extract``: run extractors over inputs into a store; its end-of-run failure
summary (``--debug``: every traceback)."""

from __future__ import annotations

import os
import shlex
import sys

import click
from rich.markup import escape

from emofeat.cli.output import console
from emofeat.errors import (
    ConfigError,
    EmofeatError,
    StoreError,
    StoreWriteError,
    UnknownExtractorError,
)
from emofeat.models import LicenseNotAcceptedError


def _split_names(values: tuple[str, ...]) -> list[str]:
    names: list[str] = []
    for v in values:
        names.extend(n.strip() for n in v.split(",") if n.strip())
    return list(dict.fromkeys(names))


@click.command()
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
@click.option(
    "--verify",
    is_flag=True,
    help="Hash every stored item in full before skipping it as unchanged (redo damaged ones).",
)
@click.option(
    "--compact-at",
    default=1000,
    show_default=True,
    type=click.IntRange(min=0),
    metavar="N",
    help="At the end, merge small item files into shards when the store holds N (0: never).",
)
@click.option(
    "--stall-timeout",
    default=60.0,
    show_default=True,
    type=click.FloatRange(min=0),
    metavar="SECONDS",
    help="Fail an input when its decoding makes no progress for this long (0: never).",
)
@click.option(
    "--scheduler",
    metavar="ADDRESS",
    help="Run on a Dask cluster: the scheduler's address (tcp://host:8786) or scheduler file.",
)
@click.option(
    "--scheduler-timeout",
    default=10.0,
    show_default=True,
    type=click.FloatRange(min=0.1),
    help="Seconds to wait for the scheduler.",
)
@click.option(
    "--no-shared-fs",
    is_flag=True,
    help="With --scheduler: workers do not see the store's folder; items come back as bytes.",
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
    verify,
    compact_at,
    stall_timeout,
    scheduler,
    scheduler_timeout,
    no_shared_fs,
    no_recursive,
    quiet,
    debug,
) -> None:
    """Extract features from INPUTS (files, folders, glob patterns) into a store.

    Each input is decoded once and streamed to every chosen extractor. Items already
    complete and unchanged in the store are skipped (use --overwrite to redo them).
    Exit status: 0 when every input succeeded or was skipped, 1 when any failed.
    """
    # the engine is imported when a run starts: listing the commands (--help) stays light
    from emofeat.api import extract as extract_features
    from emofeat.api import set_compute_threads

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
            stall_timeout=stall_timeout,
            verify=verify,
            compact_at=compact_at,
            scheduler=scheduler,
            shared_fs=False if no_shared_fs else None,
            scheduler_timeout=scheduler_timeout,
            progress=True,
            bars=not quiet,
            command=command,
        )
    except (ConfigError, UnknownExtractorError, LicenseNotAcceptedError) as exc:
        raise click.UsageError(str(exc)) from None  # nothing was run
    except StoreWriteError as exc:  # a full disk before anything ran
        console.print(f"[red bold]error[/] {escape(str(exc))}", highlight=False)
        sys.exit(1)
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
