"""The engine: decode each input once, fan chunks out to every extractor, store the results.

Work on one input (:func:`process_input`) is a plain function of picklable arguments that
returns staged item files and outcomes, so it can run in a worker process; only the main
process writes the store's index (:meth:`FeatureStore.commit`).
"""

from __future__ import annotations

import os
import queue
import threading
import time
import traceback
import uuid
from collections.abc import Callable, Iterator
from concurrent.futures import ProcessPoolExecutor
from dataclasses import dataclass, field, replace
from multiprocessing import get_context
from pathlib import Path
from typing import Any

from emofeat._version import __version__
from emofeat.config import split_mask
from emofeat.errors import ConfigError, EmofeatError, MediaError, SkipExtractor
from emofeat.extractor import AUDIO, FEATURES, VIDEO, Extractor, ExtractorEntry
from emofeat.media import AudioChunk, Decoder, MediaInfo, VideoChunk, is_image_folder, probe
from emofeat.models import non_commercial
from emofeat.store import (
    ALIGNMENT_RULE,
    FeatureStore,
    ItemWriter,
    StoredInput,
    config_hash,
    mask_item,
    mask_streams,
    safe_name,
    same_source,
    source_identity,
)

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
    """

    overwrite: bool = False
    workers: int = 1
    device: str = "cpu"
    grid_rate: float = 100.0
    image_fps: float = 30.0
    video_batch: int = 32
    audio_chunk: float = 5.0
    prefetch: int = 2


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
    """The outcome of processing one input in a worker."""

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


_DONE = object()


def prefetch(iterable, depth: int) -> Iterator:
    """Iterate over ``iterable`` in a background thread, ``depth`` items ahead.

    Decoding (PyAV) and inference (torch, openSMILE) release the GIL, so decoding the next
    chunks overlaps extraction of the current one; memory stays bounded by ``depth`` chunks.
    Exceptions raised by the producer are re-raised here. ``depth < 1`` disables the thread.
    """
    if depth < 1:
        yield from iterable
        return
    q: queue.Queue = queue.Queue(maxsize=depth)
    stop = threading.Event()

    def produce() -> None:
        try:
            for item in iterable:
                while not stop.is_set():
                    try:
                        q.put(("item", item), timeout=0.1)
                        break
                    except queue.Full:
                        continue
                if stop.is_set():
                    return
            q.put(("done", _DONE))
        except BaseException as exc:  # handed to the consumer
            q.put(("error", exc))

    thread = threading.Thread(target=produce, name="emofeat-decode", daemon=True)
    thread.start()
    try:
        while True:
            kind, value = q.get()
            if kind == "item":
                yield value
            elif kind == "error":
                raise value
            else:
                break
    finally:
        stop.set()
        while thread.is_alive():
            try:
                q.get_nowait()
            except queue.Empty:
                thread.join(timeout=0.05)


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


def input_keys(paths: list[Path]) -> dict[Path, str]:
    """Stable store keys for inputs: the file stem (folder name for image sequences).

    Inputs sharing a stem are told apart by their parent folder (``batch2__video1``), then
    by their suffix.
    """

    def base(p: Path) -> str:
        return safe_name(p.name if p.is_dir() or is_image_folder(p) else p.stem)

    keys = {p: base(p) for p in paths}
    for level in ("parent", "suffix"):
        counts: dict[str, int] = {}
        for k in keys.values():
            counts[k] = counts.get(k, 0) + 1
        for p, k in list(keys.items()):
            if counts[k] > 1:
                if level == "parent":
                    keys[p] = safe_name(f"{p.parent.name}__{base(p)}")
                else:
                    keys[p] = safe_name(f"{keys[p]}_{p.suffix.lstrip('.')}")
    return keys


def _item_config(job: Job) -> dict[str, Any]:
    return {"extractor": job.name, "version": job.cls.version, "settings": job.config}


def is_unchanged(store: FeatureStore, key: str, job: Job, ident: dict[str, Any]) -> bool:
    """True when the store holds a complete item made from the same source and config, and
    aligned under the current alignment rule (an item aligned under an older rule is redone).
    """
    attrs = store.item_attrs(key, job.name)
    if not attrs:
        return False
    if attrs.get("alignment") != ALIGNMENT_RULE:
        return False
    if attrs.get("config_hash") != config_hash(_item_config(job)):
        return False
    if not same_source(attrs.get("source") or {}, ident):
        return False
    if job.cls.modality == FEATURES:
        current = {
            ex: (store.item_attrs(key, ex) or {}).get("item_id")
            for ex in (attrs.get("source_items") or {})
        }
        return current == attrs.get("source_items")
    if job.config.get("mask"):
        # a masked item is redone when its mask source was redone or removed since
        mask = attrs.get("mask") or {}
        source = (store.item_attrs(key, mask.get("extractor", "")) or {}).get("item_id")
        return bool(source) and source == mask.get("item_id")
    return True


def _depends_on(store: FeatureStore, key: str, job: Job) -> set[str]:
    """Extractors whose stored items ``job``'s stored item of ``key`` was made from."""
    out = set()
    if job.config.get("mask"):
        out.add(split_mask(job.config["mask"])[0])
    if job.cls.modality == FEATURES:
        out |= set((store.item_attrs(key, job.name) or {}).get("source_items") or {})
    return out


_EXTRACTORS: dict[tuple[str, str, str], Extractor] = {}


def open_extractors(jobs: list[Job], device: str = "cpu", keep: bool = True) -> None:
    """Create and prepare every job's extractor once, before any input is touched.

    A usage error an extractor's constructor finds (:class:`ConfigError`: a bad combination
    of settings, a model name that does not resolve), or its ``prepare()`` (a model that
    cannot be had, a licence not accepted), is reported once for the whole run instead of
    once per input.

    Args:
        keep: keep the instances for this process's run (its models stay loaded); False
            when workers do the extraction (they create their own).

    Raises:
        ConfigError: raised by a constructor or ``prepare()``.
        EmofeatError: anything else they raised, named with the extractor.
    """
    for job in jobs:
        try:
            _instance(job, device).prepare()
        except EmofeatError:
            raise
        except Exception as exc:
            raise EmofeatError(
                f"extractor {job.name!r} ({job.package or job.plugin}) cannot be prepared: "
                f"{type(exc).__name__}: {exc}"
            ) from exc
        finally:
            if not keep:
                _EXTRACTORS.pop((job.name, config_hash(job.config), device), None)


def _instance(job: Job, device: str) -> Extractor:
    # one instance per process and configuration: models load once per run
    ck = (job.name, config_hash(job.config), device)
    if ck not in _EXTRACTORS:
        _EXTRACTORS[ck] = job.cls(dict(job.config), device=device)
    return _EXTRACTORS[ck]


def _provenance(
    job: Job,
    ex: Extractor,
    key: str,
    ident: dict[str, Any],
    info: MediaInfo | None,
    warnings: list[str],
) -> dict[str, Any]:
    model = ex.model()
    return {
        "key": key,
        "extractor": job.name,
        "extractor_version": job.cls.version,
        "plugin": job.plugin,
        "plugin_package": job.package,
        "plugin_version": job.package_version,
        "emofeat_version": __version__,
        "config": _item_config(job),
        "config_hash": config_hash(_item_config(job)),
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


def _raised(
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


def process_input(
    path: str,
    key: str,
    jobs: list[Job],
    store_path: str,
    options: RunOptions,
    progress: ProgressFn | None = None,
) -> InputResult:
    """Decode one input once and run every job on it; stage the items it produces.

    Never raises for a bad input: the problem is returned in the result.
    """
    t0 = time.perf_counter()
    result = InputResult(input=path, key=key, status="done")
    store = FeatureStore.__new__(FeatureStore)  # path arithmetic only; no lock, no I/O
    store.path = Path(store_path)
    store.dir = store.path.with_name(store.path.name + ".d")
    staging = store.dir / ".staging"
    writers: dict[str, ItemWriter] = {}

    def new_writer(job: Job, ex: Extractor) -> ItemWriter:
        tmp = staging / f"{safe_name(key)}.{safe_name(job.name)}.{uuid.uuid4().hex}.h5"
        w = ItemWriter(tmp, key, job.name, ex.streams())
        writers[job.name] = w
        return w

    def fail_all(message: str) -> InputResult:
        for w in writers.values():
            w.abort()
        result.status = "failed"
        result.message = message
        result.items.clear()
        result.outcomes = [ItemOutcome(path, key, j.name, "failed", message) for j in jobs]
        result.seconds = time.perf_counter() - t0
        return result

    try:
        info = probe(path, image_fps=options.image_fps)
        ident = source_identity(path)
    except MediaError as exc:
        return fail_all(exc.problem)
    except OSError as exc:
        return fail_all(f"cannot read ({exc.strerror or exc})")

    media_jobs = [j for j in jobs if j.cls.modality in (AUDIO, VIDEO)]
    feature_jobs = [j for j in jobs if j.cls.modality == FEATURES]
    active: list[tuple[Job, Extractor, ItemWriter]] = []
    for job in media_jobs:
        if job.cls.modality == AUDIO and not info.has_audio:
            result.outcomes.append(
                ItemOutcome(path, key, job.name, "skipped", "no audio track in this input")
            )
            continue
        if job.cls.modality == VIDEO and not info.has_video:
            result.outcomes.append(
                ItemOutcome(
                    path, key, job.name, "skipped", "no video stream in this input (audio only)"
                )
            )
            continue
        missing = [r for r in job.cls.requires if r not in {j.name for j, _, _ in active}]
        if missing:
            why = next((o for o in result.outcomes if o.extractor == missing[0]), None)
            status = why.status if why is not None else "failed"
            reason = f": {why.message}" if why is not None else ""
            result.outcomes.append(
                ItemOutcome(path, key, job.name, status, f"requires {missing[0]}{reason}")
            )
            continue
        try:
            ex = _instance(job, options.device)
            ex.begin(info)
        except SkipExtractor as exc:
            result.outcomes.append(ItemOutcome(path, key, job.name, "skipped", str(exc)))
            continue
        except Exception as exc:
            result.outcomes.append(_raised(path, key, job.name, exc))
            continue
        active.append((job, ex, new_writer(job, ex)))

    decoder = Decoder(
        info,
        video=any(j.cls.modality == VIDEO for j, _, _ in active),
        audio_rates=sorted({ex.sampling_rate for j, ex, _ in active if j.cls.modality == AUDIO}),
        video_batch=options.video_batch,
        audio_chunk=options.audio_chunk,
        grid_rate=options.grid_rate,
    )
    spent = {j.name: 0.0 for j, _, _ in active}
    broken: dict[str, ItemOutcome] = {}  # extractor -> how it failed (timings added below)
    total = float(info.duration or 0.0)
    t_loop = time.perf_counter()
    last_report = 0.0
    fed = {j.name: 0.0 for j, _, _ in active}  # seconds of the input each extractor has seen
    try:
        for chunk in prefetch(decoder, options.prefetch):
            if isinstance(chunk, VideoChunk):
                chunk.upstream = {}
            for job, ex, writer in active:
                if job.name in broken:
                    continue
                failed_req = [r for r in job.cls.requires if r in broken]
                if failed_req:
                    why = f"requires {failed_req[0]}, which failed"
                    broken[job.name] = ItemOutcome(path, key, job.name, "failed", why)
                    continue
                if isinstance(chunk, AudioChunk):
                    if job.cls.modality != AUDIO or chunk.sampling_rate != ex.sampling_rate:
                        continue
                elif not isinstance(chunk, VideoChunk) or job.cls.modality != VIDEO:
                    continue
                ts = time.perf_counter()
                try:
                    produced = list(ex.process(chunk))
                    for rows in produced:
                        writer.append(rows)
                    if isinstance(chunk, VideoChunk):
                        # dependents of this extractor see its rows for the same frames
                        chunk.upstream[job.name] = produced
                except Exception as exc:  # one broken extractor does not stop the others
                    broken[job.name] = _raised(path, key, job.name, exc)
                spent[job.name] += time.perf_counter() - ts
                if isinstance(chunk, AudioChunk):
                    fed[job.name] = chunk.start + len(chunk.samples) / chunk.sampling_rate
                elif len(chunk.times):
                    fed[job.name] = float(chunk.times[-1])
            if progress is not None and time.perf_counter() - last_report > 0.2:
                last_report = time.perf_counter()
                for name, seconds in fed.items():
                    progress(key, name, seconds, total)
        for job, ex, writer in active:
            if job.name in broken:
                continue
            ts = time.perf_counter()
            try:
                for rows in ex.end():
                    writer.append(rows)
                for spec in ex.streams():
                    writer.ensure_stream(spec.name, spec.labels)
            except Exception as exc:
                broken[job.name] = _raised(path, key, job.name, exc)
            spent[job.name] += time.perf_counter() - ts
    except MediaError as exc:
        return fail_all(exc.problem)
    except Exception as exc:  # unexpected decoder failure: report, never crash the run
        return fail_all(f"decoding failed ({type(exc).__name__}: {exc})")
    result.decode_seconds = max(0.0, time.perf_counter() - t_loop - sum(spent.values()))
    result.warnings.extend(decoder.warnings)
    grid = decoder.grid
    assert grid is not None
    media_seconds = float(grid.ends[-1]) if len(grid) else 0.0
    result.media_seconds = media_seconds
    if progress is not None:
        for name in fed:
            progress(key, name, media_seconds, media_seconds)

    staged: dict[str, Path] = {}
    for job, ex, writer in active:
        if job.name in broken:
            writer.abort()
            result.outcomes.append(
                replace(broken[job.name], seconds=spent[job.name], media_seconds=media_seconds)
            )
            continue
        try:
            writer.finalize(grid, _provenance(job, ex, key, ident, info, decoder.warnings))
        except Exception as exc:
            writer.abort()
            result.outcomes.append(
                ItemOutcome(
                    path, key, job.name, "failed", f"writing failed: {exc}", spent[job.name]
                )
            )
            continue
        staged[job.name] = writer.path
        result.items.append((key, job.name, str(writer.path)))
        result.outcomes.append(
            ItemOutcome(path, key, job.name, "done", "", spent[job.name], media_seconds, len(grid))
        )

    # masks (the common ``mask`` setting) are applied to staged items once their source
    # exists: a media item of this run or a stored item now, a features item after it ran
    committed_input: list[StoredInput] = []

    def committed() -> StoredInput:
        if not committed_input:
            committed_input.append(
                FeatureStore(store_path, mode="r").stored_input(key)
                if store.path.exists()
                else StoredInput(key, {})
            )
        return committed_input[0]

    def fail_item(name: str, message: str) -> None:
        path_ = staged.pop(name, None)
        if path_ is not None:
            path_.unlink(missing_ok=True)
        result.items[:] = [it for it in result.items if it[1] != name]
        for o in result.outcomes:
            if o.extractor == name and o.status == "done":
                o.status, o.message = "failed", message

    def apply_mask(job: Job, target: Path, source: Path, origin: str) -> None:
        setting = f"{job.name}.mask={job.config['mask']}"
        extractor, stream = split_mask(job.config["mask"])
        try:
            streams = mask_streams(source)
            dims = dict(streams)
            if not stream:
                stream = next((n for n, d in streams if d == 1), "")
                if not stream:
                    raise EmofeatError(
                        f"{setting}: the {extractor!r} item has no one-dimensional stream to "
                        f"mask with (streams: {', '.join(n for n, _ in streams) or 'none'})"
                    )
            elif stream not in dims:
                raise EmofeatError(
                    f"{setting}: the {extractor!r} item has no stream {stream!r} "
                    f"(streams: {', '.join(n for n, _ in streams) or 'none'})"
                )
            elif dims[stream] != 1:
                raise EmofeatError(
                    f"{setting}: stream {extractor}.{stream} has {dims[stream]} dimensions; "
                    "a mask needs one (0/1 values)"
                )
            record = {
                "extractor": extractor,
                "stream": stream,
                "item_id": StoredInput(key, {extractor: source})
                .provenance(extractor)
                .get("item_id", ""),
                "mask_min": float(job.config.get("mask_min", 0.5)),
                "source": origin,
            }
            mask_item(target, source, stream, record["mask_min"], record)
        except EmofeatError as exc:
            fail_item(job.name, str(exc))
        except Exception as exc:
            fail_item(job.name, f"{setting}: masking failed ({type(exc).__name__}: {exc})")

    def not_made(job: Job, extractor: str) -> str:
        why = next((o for o in result.outcomes if o.extractor == extractor), None)
        reason = f" ({why.status}: {why.message})" if why is not None and why.message else ""
        return (
            f"{job.name}.mask={job.config['mask']}: the {extractor!r} item for {path} was not "
            f"made in this run{reason}"
        )

    run_names = {j.name for j in jobs}
    feature_names = {j.name for j in feature_jobs}
    pending_masks: dict[str, list[Job]] = {}  # features source -> media jobs it masks
    for job, _, _ in active:
        if job.name not in staged or not job.config.get("mask"):
            continue
        extractor = split_mask(job.config["mask"])[0]
        if extractor in staged:
            apply_mask(job, staged[job.name], staged[extractor], "this run")
        elif extractor in feature_names:
            pending_masks.setdefault(extractor, []).append(job)
        elif extractor in run_names:
            fail_item(job.name, not_made(job, extractor))
        elif extractor in committed().files:
            apply_mask(job, staged[job.name], committed().files[extractor], "store")
        else:
            fail_item(
                job.name,
                f"{job.name}.mask={job.config['mask']}: no {extractor!r} item for {path}; "
                f"add --plugin {extractor} or extract {extractor} first",
            )

    # features extractors read what is stored for this input, including what was just made
    if feature_jobs:
        source = StoredInput(key, {**committed().files, **staged})
        # mask sources first: the items they mask are complete before others read them
        for job in sorted(feature_jobs, key=lambda j: j.name not in pending_masks):
            ts = time.perf_counter()
            writer = None
            try:
                ex = _instance(job, options.device)
                ex.begin(info)
                used = ex.sources(source)
                if not used:
                    raise SkipExtractor("no stored stream to read for this input")
                writer = new_writer(job, ex)
                for rows in ex.process_stored(source, grid):
                    writer.append(rows)
                prov = _provenance(job, ex, key, ident, info, decoder.warnings)
                prov["source_items"] = {
                    e: source.provenance(e).get("item_id") for e in sorted({e for e, _ in used})
                }
                writer.finalize(grid, prov)
            except SkipExtractor as exc:
                if writer is not None:
                    writer.abort()
                result.outcomes.append(ItemOutcome(path, key, job.name, "skipped", str(exc)))
                for masked in pending_masks.pop(job.name, []):
                    fail_item(masked.name, not_made(masked, job.name))
                continue
            except Exception as exc:
                if writer is not None:
                    writer.abort()
                result.outcomes.append(_raised(path, key, job.name, exc, time.perf_counter() - ts))
                for masked in pending_masks.pop(job.name, []):
                    fail_item(masked.name, not_made(masked, job.name))
                continue
            result.items.append((key, job.name, str(writer.path)))
            result.outcomes.append(
                ItemOutcome(
                    path,
                    key,
                    job.name,
                    "done",
                    "",
                    time.perf_counter() - ts,
                    media_seconds,
                    len(grid),
                )
            )
            for masked in pending_masks.pop(job.name, []):
                if masked.name in staged:
                    apply_mask(masked, staged[masked.name], writer.path, "this run")

    statuses = {o.status for o in result.outcomes}
    if "failed" in statuses:
        result.status = "failed"
        result.message = "; ".join(
            f"{o.extractor}: {o.message}" for o in result.outcomes if o.status == "failed"
        )
    elif statuses == {"skipped"}:
        result.status = "skipped"
        result.message = "; ".join(f"{o.extractor}: {o.message}" for o in result.outcomes)
    result.seconds = time.perf_counter() - t0
    return result


def _worker_process_input(args: tuple, queue: Any) -> InputResult:
    path, key, jobs, store_path, options = args

    def progress(k: str, label: str, done: float, total: float) -> None:
        queue.put((k, label, done, total))

    try:
        return process_input(path, key, jobs, store_path, options, progress)
    except Exception as exc:  # a worker must always hand a result back
        return InputResult(path, key, "failed", f"internal error: {exc}\n{traceback.format_exc()}")


@dataclass
class RunSummary:
    """Everything a run did, for the CLI's summary table."""

    run_id: str
    results: list[InputResult] = field(default_factory=list)
    problems: list[tuple[str, str]] = field(default_factory=list)
    seconds: float = 0.0

    def count(self, status: str) -> int:
        return sum(1 for r in self.results if r.status == status) + (
            len(self.problems) if status == "failed" else 0
        )

    @property
    def failed(self) -> bool:
        return self.count("failed") > 0


def run(
    store: FeatureStore,
    inputs: list[Path],
    jobs: list[Job],
    options: RunOptions,
    problems: list[tuple[str, str]] | None = None,
    progress: ProgressFn | None = None,
    on_result: Callable[[InputResult], None] | None = None,
    command: str = "",
) -> RunSummary:
    """Process every input, committing each input's items as soon as it is finished.

    Args:
        store: a store opened for writing.
        inputs: files and image folders.
        jobs: the configured extractors.
        options: see :class:`RunOptions`.
        problems: ``(argument, message)`` pairs found while collecting inputs; they are
            logged as failures.
        progress: called with ``(key, label, done_seconds, total_seconds)``.
        on_result: called after each input is committed.
        command: the command line, for the run log.
    """
    run_id = time.strftime("%Y%m%dT%H%M%S") + "-" + uuid.uuid4().hex[:6]
    summary = RunSummary(run_id, problems=list(problems or []))
    t0 = time.perf_counter()

    def entry(**kw: Any) -> dict[str, Any]:
        return {"run": run_id, "time": time.strftime("%Y-%m-%dT%H:%M:%S%z"), **kw}

    store.commit(
        [],
        [
            entry(
                event="run-start",
                command=command,
                emofeat_version=__version__,
                extractors=[j.name for j in jobs],
                inputs=len(inputs),
                pid=os.getpid(),
            )
        ]
        + [
            entry(event="input", input=a, key="", extractor="", status="failed", message=m)
            for a, m in summary.problems
        ],
    )
    keys = input_keys(inputs)
    unchanged_by: dict[tuple[str, str], list[ItemOutcome]] = {}
    pending: list[tuple[str, str, list[Job]]] = []
    for path in inputs:
        key = keys[path]
        todo = jobs
        unchanged: list[ItemOutcome] = []
        if not options.overwrite and path.exists():
            try:
                ident = source_identity(path, content_hash=False)
            except OSError:
                ident = None
            if ident is not None:
                todo = []
                for job in jobs:
                    if is_unchanged(store, key, job, ident):
                        unchanged.append(
                            ItemOutcome(
                                str(path),
                                key,
                                job.name,
                                "unchanged",
                                "complete and unchanged in the store",
                            )
                        )
                    else:
                        todo.append(job)
                # an item made from one that is redone now (mask source, features source)
                # is redone too, after it: the stored source's id still looks unchanged
                moved = True
                while moved and todo and unchanged:
                    moved = False
                    redo = {j.name for j in todo}
                    for job in [j for j in jobs if j not in todo]:
                        if _depends_on(store, key, job) & redo:
                            todo.append(job)
                            unchanged = [o for o in unchanged if o.extractor != job.name]
                            moved = True
                todo = [j for j in jobs if j in todo]  # keep the run's order
        if not todo:
            res = InputResult(
                str(path), key, "unchanged", "all items complete and unchanged", outcomes=unchanged
            )
            _commit_result(store, res, entry)
            summary.results.append(res)
            if on_result:
                on_result(res)
            continue
        pending.append((str(path), key, todo))
        unchanged_by[(str(path), key)] = unchanged

    def finish(res: InputResult) -> None:
        res.outcomes = unchanged_by.pop((res.input, res.key), []) + res.outcomes
        _commit_result(store, res, entry)
        summary.results.append(res)
        if on_result:
            on_result(res)

    if options.workers <= 1 or len(pending) <= 1:
        for path, key, todo in pending:
            finish(process_input(path, key, todo, str(store.path), options, progress))
    else:
        ctx = get_context("spawn")
        with ctx.Manager() as manager:
            queue = manager.Queue()
            with ProcessPoolExecutor(max_workers=options.workers, mp_context=ctx) as pool:
                futures = {
                    pool.submit(_worker_process_input, (p, k, t, str(store.path), options), queue)
                    for p, k, t in pending
                }
                remaining = set(futures)
                while remaining:
                    while not queue.empty() and progress is not None:
                        progress(*queue.get_nowait())
                    done = [f for f in remaining if f.done()]
                    for fut in done:
                        remaining.discard(fut)
                        finish(fut.result())
                    if not done:
                        time.sleep(0.05)
    summary.seconds = time.perf_counter() - t0
    store.commit(
        [],
        [
            entry(
                event="run-end",
                seconds=round(summary.seconds, 3),
                done=summary.count("done"),
                skipped=summary.count("skipped"),
                unchanged=summary.count("unchanged"),
                failed=summary.count("failed"),
            )
        ],
    )
    return summary


def _commit_result(store: FeatureStore, res: InputResult, entry: Callable[..., dict]) -> None:
    log = [
        entry(
            event="item",
            input=o.input,
            key=o.key,
            extractor=o.extractor,
            status=o.status,
            message=o.message,
            seconds=round(o.seconds, 4),
            **({"traceback": o.traceback} if o.traceback else {}),
        )
        for o in res.outcomes
    ]
    log.append(
        entry(
            event="input",
            input=res.input,
            key=res.key,
            extractor="",
            status=res.status,
            message=res.message,
            warnings=res.warnings,
            seconds=round(res.seconds, 4),
        )
    )
    items = [(k, e, Path(p)) for k, e, p in res.items]
    try:
        store.commit(items, log)
    except Exception as exc:
        for _, _, p in items:
            p.unlink(missing_ok=True)
        res.status = "failed"
        res.message = f"could not write to the store: {exc}"
        for o in res.outcomes:
            if o.status == "done":
                o.status, o.message = "failed", res.message
        raise EmofeatError(f"{store.path}: {res.message}") from exc
