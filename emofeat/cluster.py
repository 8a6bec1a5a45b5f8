"""Extraction on Dask distributed: one task per input, the coordinator commits.

The coordinator (the process running ``emofeat extract``) plans every input, submits one
task per input to a Dask scheduler, and commits each input's items as its task completes,
so the store keeps its single writer and its crash safety. ``-j N`` on one machine runs
through the same path on a :class:`distributed.LocalCluster` of ``N`` single-threaded
worker processes.

Where item data goes:

* **shared filesystem** (the normal cluster case): the task writes its item files into the
  store's staging folder and the coordinator renames them in;
* **no shared filesystem** (``shared_fs=False``, or a worker that cannot see the staging
  folder): the task writes into a temporary folder on its machine and returns the item
  files as bytes; the coordinator writes them into staging and commits them, one input at a
  time (a task's bytes are fetched only when the coordinator takes its result).

Models load once per worker process: the task keeps the extractors of its run in the
worker's instance cache (:mod:`emofeat.jobs`), keyed by extractor, settings and device.
Jobs travel as names and settings and are resolved on the worker, so a worker that lacks a
plugin reports it per input instead of failing to unpickle a class.
"""

from __future__ import annotations

import ctypes
import logging
import os
import queue
import shutil
import socket
import sys
import tempfile
import time
import traceback
import uuid
from collections.abc import Callable
from dataclasses import dataclass, replace
from pathlib import Path
from typing import Any

from emofeat.errors import ConfigError, EmofeatError, StoreWriteError
from emofeat.itemfile import export_item
from emofeat.jobs import InputResult, Job, ProgressFn, RunOptions, retain_extractors
from emofeat.store import FeatureStore, staged_item_path

SCHEDULER_TIMEOUT = 10.0
"""Seconds to wait for a scheduler before giving up (exit 2)."""

PROGRESS_TOPIC = "emofeat-progress"


class SchedulerError(ConfigError):
    """The Dask scheduler cannot be reached or cannot run the tasks (a usage error)."""


@dataclass(frozen=True)
class JobSpec:
    """A job as it travels to a worker: the extractor by name, resolved there."""

    name: str
    config: dict[str, Any]
    package: str
    package_version: str


def _spec(job: Job) -> JobSpec:
    return JobSpec(job.name, job.config, job.package, job.package_version)


def _dask():
    try:
        import distributed
    except ImportError as exc:  # pragma: no cover - distributed is a core dependency
        raise SchedulerError(f"Dask distributed is not installed: {exc}") from exc
    return distributed


def connect(scheduler: str, timeout: float = SCHEDULER_TIMEOUT) -> Any:
    """A :class:`distributed.Client` for a running scheduler.

    Args:
        scheduler: the scheduler's address (``tcp://host:8786``) or the path of a scheduler
            file written by ``dask scheduler --scheduler-file``.
        timeout: seconds to wait for the scheduler.

    Raises:
        SchedulerError: not reachable within ``timeout`` (or a scheduler file that does not
            exist or cannot be read).
    """
    distributed = _dask()
    is_file = not scheduler.startswith(("tcp://", "tls://", "inproc://", "ucx://", "ws://"))
    if is_file and ":" in scheduler and not Path(scheduler).exists():
        is_file = False  # host:port without a protocol
    try:
        if is_file:
            if not Path(scheduler).is_file():
                raise SchedulerError(
                    f"scheduler file {scheduler} does not exist (give a scheduler address "
                    "such as tcp://host:8786, or the file `dask scheduler --scheduler-file` wrote)"
                )
            return distributed.Client(scheduler_file=scheduler, timeout=timeout)
        return distributed.Client(scheduler, timeout=timeout)
    except SchedulerError:
        raise
    except (OSError, TimeoutError, ValueError) as exc:
        raise SchedulerError(
            f"cannot reach the Dask scheduler at {scheduler} within {timeout:g} s: {exc}"
        ) from exc


def local_cluster(workers: int, gpu: bool = False) -> tuple[Any, Any]:
    """A local cluster of ``workers`` single-threaded worker processes and its client.

    ``gpu``: every worker offers a ``GPU`` resource (``-j N --device cuda`` on one machine:
    the N workers share the device the run names).
    """
    distributed = _dask()
    cluster = distributed.LocalCluster(
        n_workers=workers,
        threads_per_worker=1,
        processes=True,
        dashboard_address=None,
        silence_logs=logging.ERROR,
        resources={"GPU": 1} if gpu else None,
    )
    return cluster, distributed.Client(cluster)


_TUNED = False


def _tune_worker() -> None:
    """Undo the allocator setting Dask's nanny gives its workers (once per process).

    The nanny starts workers with ``MALLOC_TRIM_THRESHOLD_=65536`` (to hand memory back to
    the OS). Setting it also freezes glibc's mmap threshold at 128 KiB, so every large
    tensor is a fresh ``mmap`` with page faults: measured on the face pipeline (faces +
    face_expr, one thread) at 2.6x the time of the same code without it (benchmarks/
    bench_scale.py). Raising both thresholds with ``mallopt`` gives the speed back.
    """
    global _TUNED
    if _TUNED:
        return
    _TUNED = True
    if not os.environ.get("MALLOC_TRIM_THRESHOLD_") or not sys.platform.startswith("linux"):
        return
    try:
        libc = ctypes.CDLL("libc.so.6")
    except OSError:  # not glibc (musl): the setting does not apply
        return
    m_trim_threshold, m_mmap_threshold = -1, -3  # from glibc's malloc.h
    libc.mallopt(m_mmap_threshold, 32 * 1024 * 1024)  # glibc's largest dynamic value
    libc.mallopt(m_trim_threshold, 128 * 1024 * 1024)


def _worker_name() -> str:
    try:
        from distributed import get_worker

        worker = get_worker()
        return (
            f"{worker.name} ({worker.address})"
            if worker.name != worker.address
            else str(worker.address)
        )
    except ValueError:  # not on a worker (tests call the task directly)
        return f"{socket.gethostname()}:{os.getpid()}"


def _publish(topic: str, key: str, label: str, done: float, total: float) -> None:
    try:
        from distributed import get_worker

        get_worker().log_event(topic, (key, label, done, total))
    except Exception:  # progress is best effort: never fail an input for it
        pass


def run_task(
    path: str,
    key: str,
    specs: list[JobSpec],
    options: RunOptions,
    staging: str,
    stored: dict[str, str],
    stored_bytes: dict[str, bytes],
    ship: bool,
    topic: str,
) -> tuple[InputResult, dict[str, bytes]]:
    """The task one input runs on a worker (plain data in and out).

    Args:
        staging: the store's staging folder, used when the worker sees it and ``ship`` is
            False.
        stored: ``{extractor: committed item file}`` (read by ``features`` extractors and
            masks), valid when the worker sees the store.
        stored_bytes: the same items' contents, sent when the worker does not see the store.
        ship: return the item files as bytes instead of leaving them in ``staging``.
        topic: the Dask event topic progress is published on.

    Returns:
        The input's result (``result.worker`` names the worker) and, when shipping,
        ``{staged file name: bytes}`` for every staged item.
    """
    from emofeat.plugins import get_extractor
    from emofeat.runner import process_input

    _tune_worker()
    if options.threads:
        from emofeat.api import set_compute_threads

        set_compute_threads(options.threads)
    worker = _worker_name()
    t0 = time.perf_counter()
    jobs: list[Job] = []
    for spec in specs:
        try:
            entry = get_extractor(spec.name)
        except EmofeatError as exc:
            msg = f"worker {worker} cannot run it: {exc}"
            if spec.package:
                msg += f" (install {spec.package} {spec.package_version} on every worker)"
            return InputResult(path, key, "failed", msg, worker=worker), {}
        jobs.append(Job.from_entry(entry, spec.config))
    retain_extractors(jobs, options.device)  # models of other runs on this worker go
    local = ship or not Path(staging).is_dir()
    tmp = Path(tempfile.mkdtemp(prefix="emofeat-task-")) if local or stored_bytes else None
    try:
        where = str(tmp / "staging") if local and tmp else staging
        Path(where).mkdir(parents=True, exist_ok=True)
        files = dict(stored)
        if stored_bytes and tmp is not None:
            for extractor, data in stored_bytes.items():
                files[extractor] = str(tmp / f"stored-{extractor}.h5")
                Path(files[extractor]).write_bytes(data)

        def progress(k: str, label: str, done: float, total: float) -> None:
            _publish(topic, k, label, done, total)

        res = process_input(path, key, jobs, options, where, files, progress)
        res.worker = worker
        _name_worker(res, worker)
        payload: dict[str, bytes] = {}
        if local:
            for i, (k, ex, p) in enumerate(res.items):
                name = f"{i}:{ex}"
                payload[name] = Path(p).read_bytes()
                res.items[i] = (k, ex, name)
                if p in res.meta:
                    res.meta[name] = res.meta.pop(p)
        res.seconds = max(res.seconds, time.perf_counter() - t0)
        return res, payload
    finally:
        if tmp is not None:
            shutil.rmtree(tmp, ignore_errors=True)


def _name_worker(res: InputResult, worker: str) -> None:
    """Failures on a cluster say where they happened (a worker may lack a model)."""
    if res.status == "failed" and worker not in res.message:
        res.message = f"{res.message} (on worker {worker})"
    for o in res.outcomes:
        if o.status == "failed" and worker not in o.message:
            o.message = f"{o.message} (on worker {worker})"


def _check_resources(client: Any, options: RunOptions) -> dict[str, float] | None:
    if not options.device.startswith("cuda"):
        return None
    workers = client.scheduler_info().get("workers", {})
    if workers and not any(w.get("resources", {}).get("GPU") for w in workers.values()):
        raise SchedulerError(
            "--device cuda on a cluster needs workers that offer a GPU: start each worker "
            "with `dask worker ADDRESS --nthreads 1 --resources GPU=1` and one GPU visible "
            "(CUDA_VISIBLE_DEVICES), or use dask-cuda's dask-cuda-worker"
        )
    return {"GPU": 1}


def _killed_message(path: str, exc: BaseException) -> str:
    import dask

    tries = int(dask.config.get("distributed.scheduler.allowed-failures", 3)) + 1
    return (
        f"a worker died while processing {path}, {tries} times (killed, out of memory or "
        f"crashed); Dask gave up on it: {exc}"
    )


def run_on_dask(
    client: Any,
    store: FeatureStore,
    pending: list[tuple[str, str, list[Job], dict[str, str]]],
    options: RunOptions,
    progress: ProgressFn | None,
    finish: Callable[[InputResult], None],
    shared_fs: bool | None = None,
    retries: int = 1,
) -> None:
    """Run ``pending`` inputs as Dask tasks on ``client``; ``finish`` each as it completes.

    Args:
        pending: ``(path, key, jobs, stored item files)`` per input.
        shared_fs: True: workers write into the store's staging folder; False: items come
            back as bytes; None: each task decides (the staging folder visible or not).
        retries: extra attempts of a task whose function raised (an infrastructure error;
            a bad input never raises, it returns a failed result).
    """
    distributed = _dask()
    from distributed.scheduler import KilledWorker

    resources = _check_resources(client, options)
    topic = f"{PROGRESS_TOPIC}-{uuid.uuid4().hex[:8]}"
    events: queue.SimpleQueue = queue.SimpleQueue()
    if progress is not None:
        client.subscribe_topic(topic, lambda event: events.put(event[1]))
    staging = store.staging_dir
    ship = shared_fs is False
    futures = {}
    for path, key, jobs, stored in pending:
        stored_bytes: dict[str, bytes] = {}
        if ship:  # the workers cannot read committed items: send the ones this input needs
            stored_bytes = {ex: export_item(ref) for ex, ref in stored.items()}
        fut = client.submit(
            run_task,
            path,
            key,
            [_spec(j) for j in jobs],
            options,
            str(staging),
            {} if ship else stored,
            stored_bytes,
            ship,
            topic,
            key=f"emofeat-{key}-{uuid.uuid4().hex[:8]}",
            pure=False,
            retries=retries,
            resources=resources,
        )
        futures[fut] = (path, key)
    done_iter = distributed.as_completed(list(futures))
    try:
        while True:
            batch = _next_done(done_iter, events, progress)
            if batch is None:
                break
            fut = batch
            path, key = futures[fut]
            try:
                res, payload = fut.result()
            except KilledWorker as exc:
                res, payload = InputResult(path, key, "failed", _killed_message(path, exc)), {}
            except Exception as exc:
                tb = "".join(traceback.format_exception(type(exc), exc, exc.__traceback__))
                res = InputResult(path, key, "failed", f"internal error: {exc}\n{tb}")
                payload = {}
            fut.release()
            if payload:
                res = _unpack(res, payload, staging)
            finish(res)
    except BaseException:
        client.cancel(list(futures))  # the run stops (a full disk): drop the work not done
        raise
    finally:
        if progress is not None:
            client.unsubscribe_topic(topic)


def _next_done(done_iter: Any, events: queue.SimpleQueue, progress: ProgressFn | None) -> Any:
    """The next completed future (None when all are done), forwarding progress meanwhile."""
    while True:
        while progress is not None:
            try:
                progress(*events.get_nowait())
            except queue.Empty:
                break
        if done_iter.is_empty():
            return None
        if done_iter.has_ready():
            return next(done_iter)
        time.sleep(0.05)


def _unpack(res: InputResult, payload: dict[str, bytes], staging: Path) -> InputResult:
    """Write shipped item files into the store's staging folder, one input at a time."""
    items: list[tuple[str, str, str]] = []
    meta = {}
    for k, ex, name in res.items:
        target = staged_item_path(staging, k, ex)
        try:
            target.write_bytes(payload[name])
        except OSError as exc:  # disk full: the run stops (the engine sees ``fatal``)
            target.unlink(missing_ok=True)
            for _, _, done in items:
                Path(done).unlink(missing_ok=True)
            message = str(StoreWriteError(target, exc))
            return replace(res, status="failed", message=message, items=[], fatal=message)
        items.append((k, ex, str(target)))
        if name in res.meta:
            meta[str(target)] = res.meta[name]
    return replace(res, items=items, meta=meta)
