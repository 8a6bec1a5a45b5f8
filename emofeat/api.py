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
from typing import Any

from rich.markup import escape

from emofeat import config as config_mod
from emofeat.engine import InputResult, Job, RunOptions, RunSummary, order_jobs, run
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
    if "torch" in sys.modules:
        sys.modules["torch"].set_num_threads(n)


def build_jobs(
    names: list[str],
    sets: Iterable[str] = (),
    config_file: str | os.PathLike | None = None,
    settings: Mapping[str, Mapping[str, Any]] | None = None,
) -> list[Job]:
    """Resolve extractor names and settings into configured jobs, checked before any input.

    Args:
        names: extractor names; extractors they require (the face stage...) join the run.
        sets: ``NAME.KEY=VALUE`` strings, as ``emofeat extract --set``.
        config_file: a YAML file of ``{name: {key: value}}``.
        settings: ``{name: {key: value}}`` given in Python (applied after the file, before
            ``sets``).

    Raises:
        ConfigError: unknown setting, bad value, settings for an extractor not in the run.
        UnknownExtractorError: no extractor of that name is installed.
    """
    given = config_mod.merge(
        config_mod.load_config_file(config_file) if config_file else {},
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
        if name not in by_name and name not in entries:
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


def extract(
    inputs: Iterable[str | os.PathLike],
    extractors: Iterable[str],
    store: str | os.PathLike,
    settings: Mapping[str, Mapping[str, Any]] | None = None,
    *,
    sets: Iterable[str] = (),
    overwrite: bool = False,
    workers: int = 1,
    device: str = "cpu",
    grid_rate: float = 100.0,
    image_fps: float = 30.0,
    recursive: bool = True,
    threads: int | None = None,
    progress: bool = False,
    on_result: Callable[[InputResult], None] | None = None,
    command: str = "",
) -> RunSummary:
    """Extract features from files, folders or glob patterns into a store.

    Each input is decoded once and streamed to every extractor; items already complete and
    unchanged are skipped (``overwrite=True`` redoes them). Bad inputs do not stop the run:
    they are reported in the returned summary (``summary.failed``, ``summary.results``,
    ``summary.problems``) and in the store's run log.

    Args:
        inputs: files, folders (searched recursively unless ``recursive=False``), globs.
        extractors: extractor names (see ``emofeat plugins``).
        store: the store's index file (created if missing).
        settings: ``{extractor: {key: value}}``.
        sets: ``NAME.KEY=VALUE`` strings (after ``settings``).
        overwrite: redo complete, unchanged items.
        workers: worker processes.
        device: ``cpu``, ``cuda``, ``cuda:N``.
        grid_rate: frame-grid rate in Hz for audio-only inputs.
        image_fps: frame rate in Hz of image-sequence folders.
        recursive: search folders recursively.
        threads: compute threads (torch/OpenMP) per process during the run; None leaves the
            process's setting. The previous torch setting is restored afterwards.
        progress: show rich progress bars and the end-of-run tables on stderr.
        on_result: called after each input is committed.
        command: what to record as the command in the run log.

    Raises:
        ConfigError, UnknownExtractorError: bad extractor names or settings (nothing run).
        StoreError: the store cannot be opened for writing (another writer, not a store).
        EmofeatError: the store could not be written (the items committed so far stay).
    """
    jobs = build_jobs(list(extractors), sets, settings=settings)
    paths, problems = find_inputs([str(p) for p in inputs], recursive=recursive)
    options = RunOptions(
        overwrite=overwrite,
        workers=workers,
        device=device,
        grid_rate=grid_rate,
        image_fps=image_fps,
    )
    command = command or "emofeat.extract(" + ", ".join(j.name for j in jobs) + ")"
    before = None
    if threads:
        torch = sys.modules.get("torch")
        before = torch.get_num_threads() if torch is not None else None
        set_compute_threads(threads)
    try:
        summary = run_extraction(
            store,
            paths,
            jobs,
            options,
            problems,
            progress=progress,
            on_result=on_result,
            command=command,
        )
    finally:
        if before is not None:
            set_compute_threads(before)
    return summary


def run_extraction(
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
) -> RunSummary:
    """Run configured jobs over found inputs into ``store`` (what :func:`extract` and
    ``emofeat extract`` share).

    Args:
        progress: print each input's outcome and the end-of-run tables on stderr.
        bars: with ``progress``, also show progress bars when stderr is a terminal.

    Raises:
        StoreError: the store cannot be opened for writing.
        EmofeatError: the store could not be written (the items committed so far stay).
    """
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
            )
    if progress:
        print_summary(summary, Path(store), console=console)
    return summary
