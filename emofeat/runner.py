"""Per-input work: decode one input once, fan its chunks out to every extractor, stage items.

:func:`process_input` is a top-level function of plain, picklable data returning an
:class:`~emofeat.jobs.InputResult` (staged item files and outcomes). It never writes the
store's index, so it runs alike in this process, in a worker process (``-j N``) or on another
machine that sees the store's staging folder; only the coordinator commits
(:mod:`emofeat.engine`). The steps, in order, are the methods of :class:`InputRun`:

1. open extractors: the media (audio, video) jobs that apply to this input;
2. feed chunks: decode once, each chunk to every extractor in dependency order;
3. finalize items: align each media item onto the frame grid, stage it;
4. apply masks (:mod:`emofeat.masking`) whose source is already made or stored;
5. stored-feature jobs: extractors reading what is stored, then the masks they are the
   source of.
"""

from __future__ import annotations

import os
import queue
import stat
import threading
import time
from collections.abc import Callable, Iterable, Iterator, Mapping
from dataclasses import dataclass, replace
from pathlib import Path
from typing import Any, TypeVar

from emofeat.config import split_mask
from emofeat.errors import EmofeatError, MediaError, SkipExtractor, StoreWriteError
from emofeat.extractor import AUDIO, FEATURES, VIDEO, Extractor
from emofeat.itemfile import ItemRef, ItemWriter, StoredInput, describe_item
from emofeat.jobs import (
    InputResult,
    ItemOutcome,
    Job,
    ProgressFn,
    RunOptions,
    item_provenance,
    raised_outcome,
)
from emofeat.jobs import extractor_instance as _instance
from emofeat.masking import apply_mask
from emofeat.media import AudioChunk, Decoder, MediaInfo, VideoChunk, probe
from emofeat.media.probing import release_probed
from emofeat.store import source_identity, staged_item_path

_DONE = object()
T = TypeVar("T")


class _Threads:
    """Daemon threads kept for reuse by :func:`guarded` and :func:`prefetch`.

    Each input runs three short tasks in threads (probe, hash, decode); starting a thread
    costs about 0.1-1 ms, which short clips pay per input. A finished task returns its
    thread to the idle list; a stalled one keeps its thread (abandoned, as before) and the
    next task gets another. ``concurrent.futures`` is no fit: its pool threads are joined
    when the interpreter exits, so one stalled read would hang the exit.
    """

    def __init__(self) -> None:
        self._idle: list[queue.SimpleQueue] = []
        self._lock = threading.Lock()
        self.busy: dict[str, int] = {}  # tasks at work (stalled ones included), by name

    def run(self, fn: Callable[[], None], name: str) -> None:
        """Run ``fn`` in an idle thread (or a new one); return at once."""
        with self._lock:
            inbox = self._idle.pop() if self._idle else None
            self.busy[name] = self.busy.get(name, 0) + 1
        if inbox is None:
            inbox = queue.SimpleQueue()
            threading.Thread(target=self._serve, args=(inbox,), name="emofeat", daemon=True).start()
        inbox.put((fn, name))

    def _serve(self, inbox: queue.SimpleQueue) -> None:
        while True:
            fn, name = inbox.get()
            try:
                fn()
            except BaseException:  # the tasks hand their errors over themselves
                pass
            with self._lock:
                self.busy[name] -= 1
                self._idle.append(inbox)

    def at_work(self, prefix: str = "") -> int:
        """Tasks whose name starts with ``prefix`` still at work."""
        with self._lock:
            return sum(n for name, n in self.busy.items() if name.startswith(prefix))


_THREADS = _Threads()


def prefetch(
    iterable: Iterable, depth: int, stall_timeout: float = 0.0, source: object = ""
) -> Iterator:
    """Iterate over ``iterable`` in a background thread, ``depth`` items ahead.

    Decoding (PyAV) and inference (torch, openSMILE) release the GIL, so decoding the next
    chunks overlaps extraction of the current one; memory stays bounded by ``depth`` chunks.
    Exceptions raised by the producer are re-raised here. ``depth < 1``: no overlap (each
    item is made only when asked for), in line unless ``stall_timeout`` needs the thread.

    Stall guard: with ``stall_timeout > 0``, waiting more than that many seconds for the
    next item while the producer is still at work raises :class:`MediaError` (``source``
    names the input); the stuck producer thread is abandoned (a daemon), never waited for.
    """
    if depth < 1 and stall_timeout <= 0:
        yield from iterable
        return
    q: queue.Queue = queue.Queue(maxsize=max(1, depth))
    stop = threading.Event()
    demand = threading.Semaphore(0) if depth < 1 else None  # no overlap: one item per ask
    finished = threading.Event()

    def producer() -> None:
        try:
            _produce(iterable, q, stop, demand)
        finally:
            finished.set()

    _THREADS.run(producer, "emofeat-decode")
    stalled = False
    try:
        while True:
            if demand is not None:
                demand.release()
            try:
                kind, value = q.get(timeout=stall_timeout if stall_timeout > 0 else None)
            except queue.Empty:
                if finished.is_set() and not q.empty():
                    kind, value = q.get_nowait()  # it ended right at the deadline
                elif not finished.is_set():
                    stalled = True
                    raise MediaError(
                        source, f"decoding stalled: no progress for {_secs(stall_timeout)} s"
                    ) from None
                else:
                    raise MediaError(source, "decoding ended without a result") from None
            if kind == "item":
                yield value
            elif kind == "error":
                raise value
            else:
                break
    finally:
        stop.set()
        # A producer at work stops after its current item; a stalled one is left behind.
        deadline = time.monotonic() + stall_timeout if stall_timeout > 0 else None
        while not finished.is_set() and not stalled:
            if deadline is not None and time.monotonic() > deadline:
                break
            try:
                q.get_nowait()
            except queue.Empty:
                finished.wait(timeout=0.05)


def _put(q: queue.Queue, stop: threading.Event, message: tuple) -> bool:
    """Hand ``message`` to the consumer unless it has stopped listening (then False)."""
    while not stop.is_set():
        try:
            q.put(message, timeout=0.1)
            return True
        except queue.Full:
            continue
    return False


def _produce(
    iterable: Iterable,
    q: queue.Queue,
    stop: threading.Event,
    demand: threading.Semaphore | None = None,
) -> None:
    """The producer thread of :func:`prefetch`: items, then a done marker (or the error).

    With ``demand``, each item is made only once the consumer has asked for it."""
    try:
        for item in _on_demand(iterable, stop, demand):
            if not _put(q, stop, ("item", item)):
                return
        _put(q, stop, ("done", _DONE))
    except BaseException as exc:  # handed to the consumer
        _put(q, stop, ("error", exc))


def _on_demand(
    iterable: Iterable, stop: threading.Event, demand: threading.Semaphore | None
) -> Iterator:
    it = iter(iterable)
    while True:
        if demand is not None:
            while not demand.acquire(timeout=0.1):
                if stop.is_set():
                    return
        if stop.is_set():
            return
        try:
            item = next(it)
        except StopIteration:
            return
        yield item


def guarded(fn: Callable[[], T], timeout: float, source: object, doing: str = "reading") -> T:
    """``fn()``, run in a daemon thread and given up on after ``timeout`` seconds.

    The stall guard of work that reads an input (probing, hashing): a call still at work
    after ``timeout`` seconds raises :class:`MediaError` ("... stalled") naming ``source``,
    and its thread is abandoned. ``timeout <= 0`` calls ``fn`` here, unguarded. What ``fn``
    raises is raised here.
    """
    if timeout <= 0:
        return fn()
    box: dict[str, Any] = {}
    done = threading.Event()

    def target() -> None:
        try:
            box["value"] = fn()
        except BaseException as exc:  # handed to the caller
            box["error"] = exc
        finally:
            done.set()

    _THREADS.run(target, "emofeat-read")
    if not done.wait(timeout):
        raise MediaError(source, f"{doing} stalled: no progress for {_secs(timeout)} s")
    if "error" in box:
        raise box["error"]
    return box["value"]


def _secs(seconds: float) -> str:
    return f"{seconds:.1f}".removesuffix(".0")


_MIN_READ_RATE = 8 * 2**20  # bytes/s: hashing slower than this on top of the timeout stalls


def _size(path: str) -> int:
    """Bytes of a regular file (0 for anything else)."""
    st = os.stat(path)
    return st.st_size if stat.S_ISREG(st.st_mode) else 0


def _hash_allowance(size: int, stall_timeout: float) -> float:
    """Seconds allowed for hashing a whole file of ``size`` bytes: the stall timeout plus
    its size read at 8 MiB/s, so a big file on a slow disk is not taken for a stall (0: no
    guard)."""
    return stall_timeout + size / _MIN_READ_RATE if stall_timeout > 0 else 0.0


def _wants(job: Job, ex: Extractor, chunk: object) -> bool:
    """True when a decoded chunk is for this extractor (modality, audio sampling rate)."""
    if isinstance(chunk, AudioChunk):
        return job.cls.modality == AUDIO and chunk.sampling_rate == ex.sampling_rate
    return isinstance(chunk, VideoChunk) and job.cls.modality == VIDEO


def _chunk_end(chunk: AudioChunk | VideoChunk, before: float) -> float:
    """Seconds of the input seen once ``chunk`` is processed (``before`` if it has none)."""
    if isinstance(chunk, AudioChunk):
        return chunk.start + len(chunk.samples) / chunk.sampling_rate
    return float(chunk.times[-1]) if len(chunk.times) else before


@dataclass
class _Active:
    """A media extractor fed with this input's chunks, and its staged item."""

    job: Job
    ex: Extractor
    writer: ItemWriter
    spent: float = 0.0  # seconds spent in the extractor
    fed: float = 0.0  # seconds of the input it has seen


class InputRun:
    """The work on one input: its state across the steps (see the module docstring)."""

    def __init__(
        self,
        path: str,
        key: str,
        jobs: list[Job],
        options: RunOptions,
        staging: Path,
        stored: Mapping[str, ItemRef],
        progress: ProgressFn | None = None,
        sync: bool = True,
    ) -> None:
        self.path, self.key, self.jobs, self.options = path, key, jobs, options
        self.sync = sync  # fsync each item file (False: the committing store syncs them)
        self.staging = staging
        self.stored = dict(stored)  # committed items of this input: extractor -> ItemRef
        self.progress = progress
        self.t0 = self._mark = time.perf_counter()
        self.result = InputResult(input=path, key=key, status="done")
        self.writers: list[ItemWriter] = []
        self.staged: dict[str, Path] = {}  # media items staged in this run
        self.masked: set[Path] = set()  # staged items a mask changed after they were written
        self.broken: dict[str, ItemOutcome] = {}  # extractor -> how it failed while fed
        self.info: MediaInfo | None = None
        self.ident: dict[str, Any] = {}
        self.warnings: list[str] = []  # the decoder's, recorded in every item
        self.grid: Any = None  # the input's FrameGrid, once decoded

    # -- the steps --------------------------------------------------------------------
    def execute(self) -> InputResult:
        """Run every step; a bad input is reported in the result, never raised."""
        stall = self.options.stall_timeout
        try:
            self.info, size = guarded(
                lambda: (
                    probe(self.path, image_fps=self.options.image_fps, keep=True),
                    _size(self.path),
                ),
                stall,
                self.path,
                "reading the file's header",
            )
            self._lap("probe")
            self.ident = guarded(
                lambda: source_identity(self.path), _hash_allowance(size, stall), self.path
            )
            self._lap("identity")
        except MediaError as exc:
            return self.fail_all(exc.problem)
        except OSError as exc:
            return self.fail_all(f"cannot read ({exc.strerror or exc})")
        except Exception as exc:  # unexpected probe failure: report, never crash the run
            return self.fail_all(f"probing failed ({type(exc).__name__}: {exc})")
        try:
            return self._execute()
        except StoreWriteError as exc:
            return self.fail_all(str(exc), fatal=True)

    def _execute(self) -> InputResult:
        assert self.info is not None
        active = self.open_extractors()
        decoder = Decoder(
            self.info,
            video=any(a.job.cls.modality == VIDEO for a in active),
            audio_rates=sorted({a.ex.sampling_rate for a in active if a.job.cls.modality == AUDIO}),
            video_batch=self.options.video_batch,
            audio_chunk=self.options.audio_chunk,
            grid_rate=self.options.grid_rate,
        )
        self._lap("open")
        try:
            self.feed_chunks(decoder, active)
        except StoreWriteError:
            raise
        except MediaError as exc:
            return self.fail_all(exc.problem)
        except Exception as exc:  # unexpected decoder failure: report, never crash the run
            return self.fail_all(f"decoding failed ({type(exc).__name__}: {exc})")
        spent = sum(a.spent for a in active)
        self.result.stages["extract"] = spent
        self._lap("decode", minus=spent)
        self.finalize_items(active)
        self._lap("finalize")
        self.run_stored_jobs(self.apply_masks(active))
        self._lap("masks")
        return self.finish()

    def _lap(self, stage: str, minus: float = 0.0) -> None:
        """Record the seconds since the previous step ended (less ``minus``) as ``stage``."""
        now = time.perf_counter()
        self.result.stages[stage] = max(0.0, now - self._mark - minus)
        self._mark = now

    def open_extractors(self) -> list[_Active]:
        """Step 1: the media jobs that apply to this input, begun, each with a staged item."""
        assert self.info is not None  # probed by the first step
        active: list[_Active] = []
        for job in (j for j in self.jobs if j.cls.modality in (AUDIO, VIDEO)):
            outcome = self._cannot_run(job, {a.job.name for a in active})
            if outcome is None:
                try:
                    ex = _instance(job, self.options.device)
                    ex.begin(self.info)
                except SkipExtractor as exc:
                    outcome = self._outcome(job.name, "skipped", str(exc))
                except Exception as exc:
                    outcome = raised_outcome(self.path, self.key, job.name, exc)
            if outcome is not None:
                self.result.outcomes.append(outcome)
                continue
            active.append(_Active(job, ex, self._new_writer(job, ex)))
        return active

    def feed_chunks(self, decoder: Decoder, active: list[_Active]) -> None:
        """Step 2: decode once; each chunk to every extractor, required ones first.

        Raises:
            MediaError, Exception: the decoder failed (an extractor's failure is recorded).
        """
        total = float(self.info.duration or 0.0) if self.info is not None else 0.0
        t_loop = time.perf_counter()
        last_report = 0.0
        stall = self.options.stall_timeout
        for chunk in prefetch(decoder, self.options.prefetch, stall, self.path):
            if isinstance(chunk, VideoChunk):
                chunk.upstream = {}
            for a in active:
                self._feed(a, chunk)
            if self.progress is not None and time.perf_counter() - last_report > 0.2:
                last_report = time.perf_counter()
                for a in active:
                    self.progress(self.key, a.job.name, a.fed, total)
        for a in active:
            self._end(a)
        spent = sum(a.spent for a in active)
        self.result.decode_seconds = max(0.0, time.perf_counter() - t_loop - spent)
        self.warnings = decoder.warnings
        self.result.warnings.extend(decoder.warnings)
        self.grid = decoder.grid
        assert self.grid is not None
        self.result.media_seconds = float(self.grid.ends[-1]) if len(self.grid) else 0.0
        if self.progress is not None:
            for a in active:
                self.progress(
                    self.key, a.job.name, self.result.media_seconds, self.result.media_seconds
                )

    def finalize_items(self, active: list[_Active]) -> None:
        """Step 3: align each media item onto the frame grid and stage it (or record why not)."""
        media_seconds = self.result.media_seconds
        for a in active:
            name = a.job.name
            if name in self.broken:
                a.writer.abort()
                self.result.outcomes.append(
                    replace(self.broken[name], seconds=a.spent, media_seconds=media_seconds)
                )
                continue
            try:
                a.writer.finalize(self.grid, self._provenance(a.job, a.ex))
            except StoreWriteError:
                raise
            except Exception as exc:
                a.writer.abort()
                self.result.outcomes.append(
                    self._outcome(name, "failed", f"writing failed: {exc}", a.spent)
                )
                continue
            self.staged[name] = a.writer.path
            self.result.items.append((self.key, name, str(a.writer.path)))
            self.result.outcomes.append(
                ItemOutcome(
                    self.path, self.key, name, "done", "", a.spent, media_seconds, len(self.grid)
                )
            )

    def apply_masks(self, active: list[_Active]) -> dict[str, list[Job]]:
        """Step 4: apply the ``mask`` setting of staged media items whose source exists.

        The source is a media item of this run or a stored item; a features item is made
        later (step 5), so the items it masks are returned: ``{features source: [jobs]}``.
        """
        run_names = {j.name for j in self.jobs}
        feature_names = {j.name for j in self.jobs if j.cls.modality == FEATURES}
        pending: dict[str, list[Job]] = {}
        for job in (a.job for a in active):
            if job.name not in self.staged or not job.config.get("mask"):
                continue
            extractor = split_mask(job.config["mask"])[0]
            if extractor in self.staged:
                self._mask(job, self.staged[extractor], "this run")
            elif extractor in feature_names:
                pending.setdefault(extractor, []).append(job)
            elif extractor in run_names:
                self.fail_item(job.name, self._not_made(job, extractor))
            elif extractor in self.stored:
                self._mask(job, self.stored[extractor], "store")
            else:
                self.fail_item(
                    job.name,
                    f"{job.name}.mask={job.config['mask']}: no {extractor!r} item for "
                    f"{self.path}; add --plugin {extractor} or extract {extractor} first",
                )
        return pending

    def run_stored_jobs(self, pending_masks: dict[str, list[Job]]) -> None:
        """Step 5: features extractors read what is stored for this input, including what
        was just made; mask sources first, so the items they mask are complete before
        the others read them."""
        feature_jobs = [j for j in self.jobs if j.cls.modality == FEATURES]
        if not feature_jobs:
            return
        source = StoredInput(self.key, {**self.stored, **self.staged})
        for job in sorted(feature_jobs, key=lambda j: j.name not in pending_masks):
            made = self._run_stored_job(job, source)
            for masked in pending_masks.pop(job.name, []):
                if made is None:
                    self.fail_item(masked.name, self._not_made(masked, job.name))
                elif masked.name in self.staged:
                    self._mask(masked, made, "this run")

    def finish(self) -> InputResult:
        """The input's status from its outcomes: failed if any failed, skipped if all were."""
        result = self.result
        statuses = {o.status for o in result.outcomes}
        if "failed" in statuses:
            result.status = "failed"
            result.message = "; ".join(
                f"{o.extractor}: {o.message}" for o in result.outcomes if o.status == "failed"
            )
        elif statuses == {"skipped"}:
            result.status = "skipped"
            result.message = "; ".join(f"{o.extractor}: {o.message}" for o in result.outcomes)
        # what the store's index keeps about each item (listing and reruns read no file)
        # the writers know what they wrote; an item a mask changed since is read again
        known = {
            str(w.path): w.description
            for w in self.writers
            if w.description is not None and w.path not in self.masked
        }
        result.meta = {p: describe_item(Path(p), known.get(p)) for _, _, p in result.items}
        self._lap("describe")
        result.seconds = time.perf_counter() - self.t0
        return result

    def fail_all(self, message: str, fatal: bool = False) -> InputResult:
        """The input failed as a whole (unreadable, undecodable): nothing of it is kept.

        ``fatal``: the store cannot be written (disk full...), the run stops.
        """
        release_probed()  # the probe's container, when the input is not decoded
        for w in self.writers:
            w.abort()
        for staged in self.staged.values():
            staged.unlink(missing_ok=True)
        result = self.result
        result.status = "failed"
        result.message = message
        result.fatal = message if fatal else ""
        result.items.clear()
        result.outcomes = [self._outcome(j.name, "failed", message) for j in self.jobs]
        result.seconds = time.perf_counter() - self.t0
        return result

    def fail_item(self, name: str, message: str) -> None:
        """A staged item is not kept after all (its mask could not be applied)."""
        staged = self.staged.pop(name, None)
        if staged is not None:
            staged.unlink(missing_ok=True)
        self.result.items[:] = [it for it in self.result.items if it[1] != name]
        for o in self.result.outcomes:
            if o.extractor == name and o.status == "done":
                o.status, o.message = "failed", message

    # -- helpers of the steps -----------------------------------------------------------
    def _outcome(self, name: str, status: str, message: str, seconds: float = 0.0) -> ItemOutcome:
        return ItemOutcome(self.path, self.key, name, status, message, seconds)

    def _new_writer(self, job: Job, ex: Extractor) -> ItemWriter:
        writer = ItemWriter(
            staged_item_path(self.staging, self.key, job.name),
            self.key,
            job.name,
            ex.streams(),
            sync=self.sync,
        )
        self.writers.append(writer)
        return writer

    def _provenance(self, job: Job, ex: Extractor) -> dict[str, Any]:
        return item_provenance(job, ex, self.key, self.ident, self.info, self.warnings)

    def _cannot_run(self, job: Job, opened: set[str]) -> ItemOutcome | None:
        """Why a media job does not run on this input (no such track, a requirement did
        not open), or None."""
        assert self.info is not None
        if job.cls.modality == AUDIO and not self.info.has_audio:
            return self._outcome(job.name, "skipped", "no audio track in this input")
        if job.cls.modality == VIDEO and not self.info.has_video:
            return self._outcome(job.name, "skipped", "no video stream in this input (audio only)")
        missing = [r for r in job.cls.requires if r not in opened]
        if not missing:
            return None
        why = next((o for o in self.result.outcomes if o.extractor == missing[0]), None)
        status = why.status if why is not None else "failed"
        reason = f": {why.message}" if why is not None else ""
        return self._outcome(job.name, status, f"requires {missing[0]}{reason}")

    def _feed(self, a: _Active, chunk: AudioChunk | VideoChunk) -> None:
        """One chunk to one extractor; its failure is recorded, the others carry on."""
        name = a.job.name
        if name in self.broken:
            return
        failed_req = [r for r in a.job.cls.requires if r in self.broken]
        if failed_req:
            self.broken[name] = self._outcome(
                name, "failed", f"requires {failed_req[0]}, which failed"
            )
            return
        if not _wants(a.job, a.ex, chunk):
            return
        ts = time.perf_counter()
        try:
            produced = list(a.ex.process(chunk))
            for rows in produced:
                a.writer.append(rows)
            if isinstance(chunk, VideoChunk):
                # dependents of this extractor see its rows for the same frames
                chunk.upstream[name] = produced
        except StoreWriteError:
            raise
        except Exception as exc:  # one broken extractor does not stop the others
            self.broken[name] = raised_outcome(self.path, self.key, name, exc)
        a.spent += time.perf_counter() - ts
        a.fed = _chunk_end(chunk, a.fed)

    def _end(self, a: _Active) -> None:
        """The input is over for one extractor: its last rows, its empty streams."""
        if a.job.name in self.broken:
            return
        ts = time.perf_counter()
        try:
            for rows in a.ex.end():
                a.writer.append(rows)
            for spec in a.ex.streams():
                a.writer.ensure_stream(spec.name, spec.labels)
        except StoreWriteError:
            raise
        except Exception as exc:
            self.broken[a.job.name] = raised_outcome(self.path, self.key, a.job.name, exc)
        a.spent += time.perf_counter() - ts

    def _mask(self, job: Job, source: ItemRef, origin: str) -> None:
        try:
            self.masked.add(self.staged[job.name])
            apply_mask(job.name, job.config, self.staged[job.name], source, origin)
        except StoreWriteError:
            raise
        except EmofeatError as exc:
            self.fail_item(job.name, str(exc))

    def _not_made(self, job: Job, extractor: str) -> str:
        why = next((o for o in self.result.outcomes if o.extractor == extractor), None)
        reason = f" ({why.status}: {why.message})" if why is not None and why.message else ""
        return (
            f"{job.name}.mask={job.config['mask']}: the {extractor!r} item for {self.path} "
            f"was not made in this run{reason}"
        )

    def _run_stored_job(self, job: Job, source: StoredInput) -> Path | None:
        """One features extractor over the stored streams: its staged item, or None."""
        assert self.info is not None  # probed by the first step
        ts = time.perf_counter()
        writer = None
        try:
            ex = _instance(job, self.options.device)
            ex.begin(self.info)
            used = ex.sources(source)
            if not used:
                raise SkipExtractor("no stored stream to read for this input")
            writer = self._new_writer(job, ex)
            for rows in ex.process_stored(source, self.grid):
                writer.append(rows)
            prov = self._provenance(job, ex)
            prov["source_items"] = {
                e: source.provenance(e).get("item_id") for e in sorted({e for e, _ in used})
            }
            writer.finalize(self.grid, prov)
        except SkipExtractor as exc:
            if writer is not None:
                writer.abort()
            self.result.outcomes.append(self._outcome(job.name, "skipped", str(exc)))
            return None
        except StoreWriteError:
            if writer is not None:
                writer.abort()
            raise
        except Exception as exc:
            if writer is not None:
                writer.abort()
            self.result.outcomes.append(
                raised_outcome(self.path, self.key, job.name, exc, time.perf_counter() - ts)
            )
            return None
        self.result.items.append((self.key, job.name, str(writer.path)))
        self.result.outcomes.append(
            ItemOutcome(
                self.path,
                self.key,
                job.name,
                "done",
                "",
                time.perf_counter() - ts,
                self.result.media_seconds,
                len(self.grid),
            )
        )
        return writer.path


def process_input(
    path: str,
    key: str,
    jobs: list[Job],
    options: RunOptions,
    staging: str,
    stored: Mapping[str, ItemRef] | None = None,
    progress: ProgressFn | None = None,
    sync: bool = True,
) -> InputResult:
    """Decode one input once and run every job on it; stage the items it produces.

    Plain data in, plain data out (picklable): what a worker process or a Dask task runs.
    Nothing is committed: the caller hands ``result.items`` to
    :meth:`emofeat.store.FeatureStore.commit` (or deletes them). Never raises for a bad
    input: the problem is returned in the result.

    Args:
        path: the input file or image folder.
        key: its key in the store (:func:`emofeat.engine.input_keys`).
        jobs: the jobs to run on it, in run order (:func:`emofeat.jobs.order_jobs`).
        options: the run's options.
        staging: the store's staging folder (:attr:`FeatureStore.staging_dir`), where
            the item files are written.
        stored: ``{extractor: ItemRef}`` of this input's committed items (what
            ``FeatureStore.stored_input(key).files`` gives); read by ``features``
            extractors and by masks whose source is not made in this run.
        progress: called with ``(key, extractor, done_seconds, total_seconds)``.
        sync: fsync each item file once written. False when the store that commits the
            items is this process's (:meth:`FeatureStore.sync` flushes them together).
    """
    stored_files: dict[str, ItemRef] = {
        ex: tuple(ref) if isinstance(ref, (tuple, list)) else Path(ref)  # type: ignore[misc]
        for ex, ref in (stored or {}).items()
    }
    work = InputRun(path, key, jobs, options, Path(staging), stored_files, progress, sync)
    return work.execute()
