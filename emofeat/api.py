"""The library entry point for extraction: what ``emofeat extract`` does, callable from Python.

Like ``opensmile.Smile(...).process_files(files)``, but into a store::

    import emofeat
    summary = emofeat.extract(["videos/"], ["egemaps", "functionals"], "feats.h5",
                              settings={"egemaps": {"functionals": False}})
    summary.failed        # True when any input failed (each failure is in summary.results)

The command line and the recipes that extract what they need go through these functions.
"""

from __future__ import annotations

import os
import sys
from collections.abc import Callable, Iterable, Mapping
from pathlib import Path
from typing import TYPE_CHECKING, Any

from rich.markup import escape

if TYPE_CHECKING:
    import pandas as pd

from emofeat import config as config_mod
from emofeat.engine import (
    InputResult,
    Job,
    RunOptions,
    RunSummary,
    open_extractors,
    order_jobs,
    run,
)
from emofeat.errors import ConfigError
from emofeat.media import find_inputs
from emofeat.plugins import get_extractor
from emofeat.store import FeatureStore


def set_compute_threads(n: int) -> None:
    """Limit OpenMP/MKL/torch threads of this process and of the workers it starts.

    Oversubscribed OpenMP threads (workers x threads > CPUs, or a busy machine) slow small
    operators down by orders of magnitude (measured: docs/benchmarks.md, face pipeline).
    """
    for var in ("OMP_NUM_THREADS", "MKL_NUM_THREADS", "OPENBLAS_NUM_THREADS"):
        os.environ[var] = str(n)
    if sys.modules.get("torch") is not None:  # None: blocked (an extra not installed)
        sys.modules["torch"].set_num_threads(n)


def build_jobs(
    names: list[str],
    sets: Iterable[str] = (),
    config_file: str | os.PathLike | None = None,
    settings: Mapping[str, Mapping[str, Any]] | None = None,
    unused_settings: str = "error",
) -> list[Job]:
    """Resolve extractor names and settings into configured jobs, checked before any input.

    Args:
        names: extractor names; extractors they require (the face stage...) join the run.
        sets: ``NAME.KEY=VALUE`` strings, as ``emofeat extract --set``.
        config_file: a YAML file of ``{name: {key: value}}``.
        settings: ``{name: {key: value}}`` given in Python (applied after the file, before
            ``sets``).
        unused_settings: ``"error"``: settings for an extractor not in the run are an
            error; ``"ignore"``: they are left out (settings shared by several runs).

    Raises:
        ConfigError: unknown setting, bad value, settings for an extractor not in the run.
        UnknownExtractorError: no extractor of that name is installed.
    """
    given = config_mod.merge(
        config_mod.load_config_file(Path(config_file)) if config_file else {},
        {str(k): dict(v or {}) for k, v in (settings or {}).items()},
    )
    given = config_mod.merge(given, config_mod.parse_sets(tuple(sets)))
    entries = {name: get_extractor(name) for name in names}
    # extractors that others require (e.g. the shared face stage) join the run
    pending = list(entries.values())
    while pending:
        for req in pending.pop().cls.requires:
            if req not in entries and req not in {e.cls.name for e in entries.values()}:
                entries[req] = get_extractor(req)
                pending.append(entries[req])
    by_name = {e.cls.name: e for e in entries.values()}
    for name in given:
        if name not in by_name and name not in entries and unused_settings != "ignore":
            raise ConfigError(
                f"settings given for {name!r}, which is not among the chosen extractors "
                f"({', '.join(names)})"
            )
    jobs = []
    for name, entry in entries.items():
        values = {**given.get(entry.cls.name, {}), **given.get(name, {})}
        resolved = config_mod.resolve(entry.cls.name, entry.cls.settings, values)
        entry.cls.check_config(resolved)  # before any input is touched
        jobs.append(Job.from_entry(entry, resolved))
    # features extractors run after the media extractors of the same input
    return order_jobs(jobs)


Settings = Mapping[str, Mapping[str, Any]] | Iterable[str] | None
"""``{extractor: {key: value}}``, or ``NAME.KEY=VALUE`` strings as ``emofeat extract --set``
takes them (the same grammar and checks either way)."""


def split_settings(settings: Settings) -> tuple[dict[str, dict[str, Any]], list[str]]:
    """``settings`` as :func:`build_jobs` takes them: (mapping, ``--set`` strings)."""
    if settings is None:
        return {}, []
    if isinstance(settings, Mapping):
        return {str(k): dict(v or {}) for k, v in settings.items()}, []
    if isinstance(settings, str):
        return {}, [settings]
    return {}, [str(s) for s in settings]


def extract(
    inputs: str | os.PathLike | Iterable[str | os.PathLike],
    plugins: str | Iterable[str],
    output: str | os.PathLike = "features.h5",
    settings: Settings = None,
    *,
    config_file: str | os.PathLike | None = None,
    overwrite: bool = False,
    verify: bool = False,
    compact_at: int = 1000,
    workers: int = 1,
    device: str = "cpu",
    grid_rate: float = 100.0,
    image_fps: float = 30.0,
    recursive: bool = True,
    prefetch: int = 2,
    stall_timeout: float = 60.0,
    threads: int | None = None,
    progress: bool = False,
    bars: bool = True,
    on_result: Callable[[InputResult], None] | None = None,
    command: str = "",
    scheduler: str | None = None,
    shared_fs: bool | None = None,
    scheduler_timeout: float = 10.0,
) -> RunSummary:
    """Extract features from files, folders or glob patterns into a store.

    Each input is decoded once and streamed to every extractor; items already complete and
    unchanged are skipped (``overwrite=True`` redoes them). Bad inputs do not stop the run:
    they are reported in the returned summary (``summary.failed``, ``summary.results``,
    ``summary.problems``) and in the store's run log.

    Example:
        >>> summary = emofeat.extract("videos/", ["egemaps", "functionals"], "feats.h5",
        ...                           ["egemaps.win=2.0"])  # doctest: +SKIP
        >>> summary.count("done"), summary.failed  # doctest: +SKIP

    Args:
        inputs: a file, folder or glob, or several (folders are searched recursively unless
            ``recursive=False``).
        plugins: extractor names (see ``emofeat plugins``).
        output: the store's index file (created if missing).
        settings: ``{extractor: {key: value}}`` or ``["NAME.KEY=VALUE", ...]``.
        config_file: a YAML file of ``{extractor: {key: value}}`` (``settings`` override it).
        overwrite: redo complete, unchanged items.
        workers: worker processes on this machine (a local Dask cluster for the run).
        device: ``cpu``, ``cuda``, ``cuda:N``.
        verify: before leaving an item as unchanged, hash its whole file and compare with
            the checksum recorded at commit (without it: the file's size and the digest of
            its first and last 32 KiB). Damaged items are redone.
        compact_at: at the end of the run, merge the store's item files smaller than 1 MiB
            into shard files when there are at least this many (0: never; see
            docs/store.md, compaction).
        grid_rate: frame-grid rate in Hz for audio-only inputs.
        image_fps: frame rate in Hz of image-sequence folders.
        recursive: search folders recursively.
        prefetch: chunks decoded ahead in a background thread (0: no overlap).
        stall_timeout: seconds without decoding progress after which an input fails as
            stalled (a file that stops delivering data: a hung network mount, a pipe); the
            run goes on with the other inputs. 0 disables the guard.
        threads: compute threads (torch/OpenMP) per process during the run; None leaves the
            process's setting. The previous torch setting is restored afterwards.
        progress: print each input's outcome and the end-of-run tables on stderr.
        bars: with ``progress``, also show progress bars when stderr is a terminal.
        on_result: called after each input is committed.
        command: what to record as the command in the run log.
        scheduler: a Dask scheduler (``tcp://host:8786``, or a scheduler file): every input
            runs as a task on its workers (docs/scale-out.md); ``workers`` is then unused.
        shared_fs: with a scheduler: True (default None: decided per task) when workers see
            the store's folder; False sends items back as bytes.
        scheduler_timeout: seconds to wait for the scheduler.

    Returns:
        The run's summary: ``results`` (one :class:`emofeat.engine.InputResult` per input,
        with per-extractor outcomes and timings), ``count(status)``, ``failed``, ``seconds``.

    Raises:
        ConfigError, UnknownExtractorError: bad extractor names or settings, or an
            extractor's constructor refused its settings (nothing run).
        LicenseNotAcceptedError: a model's licence needs the opt-in (nothing run).
        SchedulerError: the scheduler cannot be reached (nothing run, no store written).
        StoreError: the store cannot be opened for writing (another writer, not a store).
        EmofeatError: an extractor could not be prepared (nothing run).

    A store that cannot be written (disk full, over quota, read-only) stops the run: the
    summary's ``stopped`` says why (naming the file and the cause) and ``failed`` is true;
    everything committed before stays, and the same call completes the work once there is
    room again.
    """
    names = [plugins] if isinstance(plugins, str) else list(plugins)
    given, sets = split_settings(settings)
    jobs = build_jobs(names, sets, config_file, settings=given)
    # a constructor's usage error, a model that cannot be had: once, before any input
    # on a cluster the coordinator (a login node) may have no GPU: it checks on the CPU
    check_device = "cpu" if scheduler is not None else device
    open_extractors(jobs, check_device, keep=workers <= 1 and scheduler is None)
    if isinstance(inputs, (str, os.PathLike)):
        inputs = [inputs]
    paths, problems = find_inputs([str(p) for p in inputs], recursive=recursive)
    options = RunOptions(
        overwrite=overwrite,
        verify=verify,
        compact_at=compact_at,
        workers=workers,
        device=device,
        grid_rate=grid_rate,
        image_fps=image_fps,
        prefetch=prefetch,
        stall_timeout=stall_timeout,
        threads=threads or 0,
    )
    command = command or "emofeat.extract(" + ", ".join(j.name for j in jobs) + ")"
    before = None
    if threads:
        torch = sys.modules.get("torch")
        before = torch.get_num_threads() if torch is not None else None
        set_compute_threads(threads)
    client = None
    if scheduler is not None:  # before the store is touched: an unreachable one is exit 2
        from emofeat.cluster import connect

        client = connect(scheduler, scheduler_timeout)
    try:
        summary = _run_extraction(
            output,
            paths,
            jobs,
            options,
            problems,
            progress=progress,
            bars=bars,
            on_result=on_result,
            command=command,
            client=client,
            shared_fs=shared_fs,
        )
    finally:
        if before is not None:
            set_compute_threads(before)
        if client is not None:
            client.close()
    return summary


def _run_extraction(
    store: str | os.PathLike,
    paths: list[Path],
    jobs: list[Job],
    options: RunOptions,
    problems: list[tuple[str, str]],
    *,
    progress: bool,
    bars: bool = True,
    on_result: Callable[[InputResult], None] | None = None,
    command: str = "",
    client: Any = None,
    shared_fs: bool | None = None,
) -> RunSummary:
    """Run configured jobs over found inputs into ``store``, with the run's display."""
    from emofeat.progress import RunProgress, print_summary, stderr_console

    console = stderr_console()
    bars = progress and bars and console.is_terminal

    def report(res: InputResult) -> None:
        if on_result is not None:
            on_result(res)

    if progress:
        for spec, msg in problems:
            console.print(f"[red]error[/] {escape(spec)}: {escape(msg)}", highlight=False)
    with FeatureStore(store, mode="a") as fs:
        with RunProgress(len(paths), enabled=bars, console=console) as prog:

            def finished(res: InputResult) -> None:
                prog.finished(res)
                report(res)

            summary = run(
                fs,
                paths,
                jobs,
                options,
                problems,
                progress=prog.update if bars else None,
                on_result=finished if progress else report,
                command=command or " ".join(sys.argv),
                client=client,
                shared_fs=shared_fs,
            )
    if progress:
        print_summary(summary, Path(store), console=console)
    return summary


def process_file(
    path: str | os.PathLike,
    plugins: str | Iterable[str],
    settings: Settings = None,
    *,
    aligned: bool = False,
    apply_mask: bool = True,
    device: str = "cpu",
    grid_rate: float = 100.0,
    image_fps: float = 30.0,
) -> dict[str, pd.DataFrame]:
    """Features of one file (or image folder) as DataFrames, without a store to manage.

    The quick path for a notebook, like ``opensmile.Smile.process_file``: the input goes
    through the same engine as :func:`extract` (into a temporary store that is removed
    afterwards), and every stream comes back.

    Example:
        >>> frames = emofeat.process_file("talk.mp4", "egemaps")  # doctest: +SKIP
        >>> frames["egemaps.lld"].head()  # doctest: +SKIP

    Args:
        path: a media file or an image-sequence folder.
        plugins: extractor names.
        settings: as for :func:`extract`.
        aligned: one row per video frame (the frame-aligned view) instead of the native rows.
        apply_mask: invalid rows hold NaN.
        device, grid_rate, image_fps: as for :func:`extract`.

    Returns:
        ``"EXTRACTOR.STREAM"`` -> DataFrame indexed by ``(file, start, end)`` (timedeltas),
        one column per dimension.

    Raises:
        ConfigError, UnknownExtractorError: bad extractor names or settings.
        MediaError: the input failed (the message says why); an extractor that skips the
            input (no audio track...) just gives no streams.
    """
    import tempfile

    from emofeat.errors import MediaError
    from emofeat.store import open_store

    src = Path(path)
    with tempfile.TemporaryDirectory(prefix="emofeat-") as tmp:
        out = Path(tmp) / "features.h5"
        summary = extract(
            [src],
            plugins,
            out,
            settings,
            device=device,
            grid_rate=grid_rate,
            image_fps=image_fps,
            recursive=False,
            command=f"emofeat.process_file({src})",
        )
        problems = [m for _, m in summary.problems]
        for res in summary.results:
            problems += [
                f"{o.extractor}: {o.message}" for o in res.outcomes if o.status == "failed"
            ]
            if res.status == "failed" and not res.outcomes:
                problems.append(res.message)
        if problems:
            raise MediaError(src, "; ".join(dict.fromkeys(problems)))
        if not out.exists():
            return {}
        store = open_store(out)
        frames: dict[str, pd.DataFrame] = {}
        for item in store.catalog():
            for stream in item.streams:
                frames[f"{item.extractor}.{stream}"] = store.to_frame(
                    item.extractor, stream, aligned=aligned, apply_mask=apply_mask
                )
        return dict(sorted(frames.items()))
