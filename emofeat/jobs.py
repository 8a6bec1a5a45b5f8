"""What a run is made of: configured extractors (jobs), run options, outcomes, instances.

Everything here is plain, picklable data (a :class:`Job` names its extractor class, which
pickles by reference), so that per-input work can run in a worker process or on another
machine (:func:`emofeat.runner.process_input`). The live extractor instances are not: each
process creates its own, once per run (:func:`extractor_instance`).
"""

from __future__ import annotations

import time
import traceback
import uuid
from collections.abc import Callable
from dataclasses import dataclass, field
from typing import Any

from emofeat._version import __version__
from emofeat.errors import ConfigError, EmofeatError
from emofeat.extractor import FEATURES, Extractor, ExtractorEntry
from emofeat.extras import missing_extra
from emofeat.media import MediaInfo
from emofeat.models import non_commercial
from emofeat.store import config_hash

ProgressFn = Callable[[str, str, float, float], None]
"""``progress(key, label, done_seconds, total_seconds)``."""


@dataclass
class RunOptions:
    """Options of one extraction run.

    Attributes:
        overwrite: redo items even when complete and unchanged.
        workers: number of worker processes (1: everything in this process).
        device: ``"cpu"``, ``"cuda"``, ``"cuda:1"``... handed to every extractor.
        grid_rate: frame-grid rate in Hz for audio-only inputs.
        image_fps: frame rate in Hz assumed for image-sequence folders.
        video_batch: frames per batch given to video extractors.
        audio_chunk: seconds of audio per chunk given to audio extractors.
        prefetch: chunks decoded ahead in a background thread (0: decode in line).
        stall_timeout: seconds without decoding progress (or a header/hash read that does
            not return) after which the input fails as stalled; 0 disables the guard.
        compact_at: at the end of the run, merge the store's small item files into shards
            when it holds at least this many (:meth:`FeatureStore.compact`; 0: never).
        verify: hash the whole of every stored item before leaving it as unchanged
            (always: its size and the digest of its first and last 32 KiB).
        threads: compute threads (torch/OpenMP) a Dask worker sets for its tasks (0: leave
            the worker's setting); the coordinator's own are set by the caller.
    """

    overwrite: bool = False
    workers: int = 1
    device: str = "cpu"
    grid_rate: float = 100.0
    image_fps: float = 30.0
    video_batch: int = 32
    audio_chunk: float = 5.0
    prefetch: int = 2
    threads: int = 0
    verify: bool = False
    compact_at: int = 1000
    stall_timeout: float = 60.0


@dataclass
class Job:
    """One extractor configured for a run."""

    name: str
    cls: type[Extractor]
    config: dict[str, Any]
    plugin: str = ""
    package: str = ""
    package_version: str = ""

    @classmethod
    def from_entry(cls, entry: ExtractorEntry, config: dict[str, Any]) -> Job:
        return cls(
            entry.cls.name, entry.cls, config, entry.plugin, entry.package, entry.package_version
        )


@dataclass
class ItemOutcome:
    """What happened to one input x extractor pair."""

    input: str
    key: str
    extractor: str
    status: str  # done | unchanged | skipped | failed
    message: str = ""
    seconds: float = 0.0  # processing time spent in the extractor
    media_seconds: float = 0.0  # duration of the input it covered
    frames: int = 0  # frames on the input's grid (video inputs) or rows written
    traceback: str = ""  # of the exception that failed it (plugin bugs), else ""


@dataclass
class InputResult:
    """The outcome of processing one input (in this process, a worker or another machine).

    ``items`` are staged item files, not yet visible: only the coordinator commits them
    (:meth:`emofeat.store.FeatureStore.commit`). Times are in seconds.
    """

    input: str
    key: str
    status: str  # done | unchanged | skipped | failed
    message: str = ""
    items: list[tuple[str, str, str]] = field(default_factory=list)  # key, extractor, staged path
    outcomes: list[ItemOutcome] = field(default_factory=list)
    warnings: list[str] = field(default_factory=list)
    seconds: float = 0.0
    decode_seconds: float = 0.0
    media_seconds: float = 0.0
    worker: str = ""  # the Dask worker that processed it ("" in the coordinator's process)
    meta: dict[str, dict[str, Any]] = field(default_factory=dict)  # staged path -> describe_item
    fatal: str = ""  # the store could not be written (disk full...): the run stops
    #: seconds per step of the work on this input: probe, identity, open, decode, extract,
    #: finalize, masks, describe (the worker's), commit (the coordinator's)
    stages: dict[str, float] = field(default_factory=dict)


def item_config(job: Job) -> dict[str, Any]:
    """What identifies the configuration of the items a job makes (hashed into each item)."""
    return {"extractor": job.name, "version": job.cls.version, "settings": job.config}


def order_jobs(jobs: list[Job]) -> list[Job]:
    """Order jobs so that every extractor comes after those it requires; features last.

    Raises:
        ConfigError: a requirement is missing from the run or requirements form a cycle.
    """
    by_name = {j.name: j for j in jobs}
    ordered: list[Job] = []
    state: dict[str, str] = {}

    def visit(job: Job, chain: tuple[str, ...]) -> None:
        if state.get(job.name) == "done":
            return
        if state.get(job.name) == "visiting":
            raise ConfigError(f"extractors require each other: {' -> '.join(chain)}")
        state[job.name] = "visiting"
        for req in job.cls.requires:
            if req not in by_name:
                raise ConfigError(
                    f"extractor {job.name!r} requires {req!r}, which is not in the run"
                )
            if by_name[req].cls.modality != job.cls.modality:
                raise ConfigError(
                    f"extractor {job.name!r} ({job.cls.modality}) cannot require {req!r} "
                    f"({by_name[req].cls.modality}): requirements share the same chunks"
                )
            visit(by_name[req], (*chain, req))
        state[job.name] = "done"
        ordered.append(job)

    for job in sorted(jobs, key=lambda j: j.cls.modality == FEATURES):
        visit(job, (job.name,))
    return sorted(ordered, key=lambda j: j.cls.modality == FEATURES)


def item_provenance(
    job: Job,
    ex: Extractor,
    key: str,
    ident: dict[str, Any],
    info: MediaInfo | None,
    warnings: list[str],
) -> dict[str, Any]:
    """The root attributes of an item file: what made it, from what, with which model."""
    model = ex.model()
    return {
        "key": key,
        "extractor": job.name,
        "extractor_version": job.cls.version,
        "plugin": job.plugin,
        "plugin_package": job.package,
        "plugin_version": job.package_version,
        "emofeat_version": __version__,
        "config": item_config(job),
        "config_hash": config_hash(item_config(job)),
        "license": model.license or job.cls.license,
        # the extractor's own terms, and those of the model it ran (a fine-tuned NC model
        # loaded by an otherwise commercial-use extractor is NC)
        "commercial_use": bool(job.cls.commercial_use) and not non_commercial(model.license),
        "model_id": model.id,
        "model_sha256": model.sha256,
        "model_source": model.source,
        "source": ident,
        "media": info.describe() if info is not None else {},
        "warnings": list(warnings),
        "created": time.strftime("%Y-%m-%dT%H:%M:%S%z"),
        "item_id": uuid.uuid4().hex,
    }


def raised_outcome(
    path: str, key: str, extractor: str, exc: Exception, seconds: float = 0.0
) -> ItemOutcome:
    """The failed outcome of an exception an extractor raised (call inside ``except``)."""
    return ItemOutcome(
        path,
        key,
        extractor,
        "failed",
        f"{type(exc).__name__}: {exc}",
        seconds,
        traceback=traceback.format_exc(),
    )


# Live extractor instances of this process, one per (name, settings, device): models load
# once per run, not once per input. Their lifetime is bounded to one run: a run (and
# open_extractors) drops every instance its own jobs do not use before it starts, so a
# process running several extractions in turn (the recipes' plan steps, a notebook) holds
# the models of one run at most, while repeating the same extraction (process_file in a
# loop, a benchmark's warm runs) reuses them. release_extractors() drops them all. Worker
# processes keep their own, for the life of the run's process pool.
_EXTRACTORS: dict[tuple[str, str, str], Extractor] = {}


def _cache_key(job: Job, device: str) -> tuple[str, str, str]:
    return (job.name, config_hash(job.config), device)


def extractor_instance(job: Job, device: str) -> Extractor:
    """This process's instance of a job's extractor, created and prepared on first use.

    ``prepare()`` runs right after construction in every process (the main one and each
    worker); an instance whose ``prepare()`` raised is not kept.
    """
    ck = _cache_key(job, device)
    if ck not in _EXTRACTORS:
        ex = job.cls(dict(job.config), device=device)
        ex.prepare()
        _EXTRACTORS[ck] = ex
    return _EXTRACTORS[ck]


def retain_extractors(jobs: list[Job], device: str) -> None:
    """Drop every cached instance but those of ``jobs`` on ``device`` (a run starts)."""
    keep = {_cache_key(job, device) for job in jobs}
    for ck in [ck for ck in _EXTRACTORS if ck not in keep]:
        del _EXTRACTORS[ck]


def release_extractors() -> None:
    """Drop every cached extractor instance (and the models only they hold)."""
    _EXTRACTORS.clear()


def open_extractors(jobs: list[Job], device: str = "cpu", keep: bool = True) -> None:
    """Create and prepare every job's extractor once, before any input is touched.

    A usage error an extractor's constructor finds (:class:`ConfigError`: a bad combination
    of settings, a model name that does not resolve), or its ``prepare()`` (a model that
    cannot be had, a licence not accepted), is reported once for the whole run instead of
    once per input. Instances of other jobs are dropped (see ``_EXTRACTORS``).

    Args:
        keep: keep the instances for this process's run (its models stay loaded); False
            when workers do the extraction (they create their own).

    Raises:
        ConfigError: raised by a constructor or ``prepare()``.
        EmofeatError: anything else they raised, named with the extractor.
    """
    retain_extractors(jobs if keep else [], device)
    for job in jobs:
        try:
            extractor_instance(job, device)  # created and prepared
        except EmofeatError:
            raise
        except ImportError as exc:  # an optional dependency not installed: name the extra
            extra = missing_extra(
                exc,
                what=f"extractor {job.name!r}",
                distribution=job.package or "emofeat",
                prefer=job.plugin,
            )
            if extra is None:
                raise EmofeatError(
                    f"extractor {job.name!r} ({job.package or job.plugin}) cannot be prepared: "
                    f"{type(exc).__name__}: {exc}"
                ) from exc
            raise extra from exc
        except Exception as exc:
            raise EmofeatError(
                f"extractor {job.name!r} ({job.package or job.plugin}) cannot be prepared: "
                f"{type(exc).__name__}: {exc}"
            ) from exc
        finally:
            if not keep:
                _EXTRACTORS.pop(_cache_key(job, device), None)
