"""The engine's coordinator: plan each input, hand it to :func:`process_input`, commit.

A run (:func:`run`) plans what each input needs (items complete and unchanged are skipped),
has the per-input work done (:func:`emofeat.runner.process_input`: in this process, or as
Dask tasks on a cluster, :mod:`emofeat.cluster`; ``-j N`` starts a local one), and commits
each input's staged items and run-log entries as soon as it is finished. Only the
coordinator writes the store's index (:meth:`FeatureStore.commit`), so the per-input work
can run anywhere.

The names of :mod:`emofeat.jobs` and :mod:`emofeat.runner` are importable from here too.
"""

from __future__ import annotations

import os
import time
import uuid
from collections.abc import Callable
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

from emofeat._version import __version__
from emofeat.config import split_mask
from emofeat.errors import EmofeatError, StoreWriteError
from emofeat.extractor import FEATURES
from emofeat.jobs import _EXTRACTORS as _EXTRACTORS  # benchmarks reset it
from emofeat.jobs import InputResult as InputResult
from emofeat.jobs import ItemOutcome as ItemOutcome
from emofeat.jobs import Job as Job
from emofeat.jobs import ProgressFn as ProgressFn
from emofeat.jobs import RunOptions as RunOptions
from emofeat.jobs import item_config, retain_extractors
from emofeat.jobs import open_extractors as open_extractors
from emofeat.jobs import order_jobs as order_jobs
from emofeat.jobs import release_extractors as release_extractors
from emofeat.media import is_image_folder
from emofeat.runner import prefetch as prefetch
from emofeat.runner import process_input as process_input
from emofeat.store import (
    ALIGNMENT_RULE,
    FeatureStore,
    config_hash,
    safe_name,
    same_source,
    source_identity,
)


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


def is_unchanged(
    store: FeatureStore,
    key: str,
    job: Job,
    ident: dict[str, Any],
    verify: bool = False,
    notes: list[str] | None = None,
) -> bool:
    """True when the store holds a complete item made from the same source and config, and
    aligned under the current alignment rule (an item aligned under an older rule is redone).

    The item's file must also check out (:meth:`FeatureStore.check_item`: size and the
    digest of its edges; the whole file with ``verify``); a damaged one is redone and why is
    added to ``notes``.
    """
    attrs = store.item_attrs(key, job.name)
    if not attrs:
        if job.name in store.extractors(key) and notes is not None:
            notes.append(f"{job.name}: the stored item's file is missing; redone")
        return False
    if attrs.get("alignment") != ALIGNMENT_RULE:
        return False
    if attrs.get("config_hash") != config_hash(item_config(job)):
        return False
    if not _same_content(attrs.get("source") or {}, ident):
        return False
    # the file is read only for an item that would be kept
    problem = store.check_item(key, job.name, full=verify)
    if problem is not None:
        if notes is not None:
            notes.append(f"{job.name}: the stored item was damaged ({problem}); redone")
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


def _same_content(stored: dict[str, Any], ident: dict[str, Any]) -> bool:
    """The skip decision's identity: the same size and modification time (no byte read),
    or, when only the time differs (a copied or touched file), the same content hash as the
    one recorded when the item was made. The hash is computed at most once per input:
    ``ident`` (shared by the input's jobs) keeps it."""
    if same_source(stored, ident):
        return True
    if not stored.get("hash") or stored.get("size") != ident.get("size") or "path" not in ident:
        return False
    if "hash" not in ident:
        try:
            ident["hash"] = source_identity(ident["path"]).get("hash", "")
        except OSError:
            ident["hash"] = ""
    return ident["hash"] == stored["hash"]


def _depends_on(store: FeatureStore, key: str, job: Job) -> set[str]:
    """Extractors whose stored items ``job``'s stored item of ``key`` was made from."""
    out = set()
    if job.config.get("mask"):
        out.add(split_mask(job.config["mask"])[0])
    if job.cls.modality == FEATURES:
        out |= set((store.item_attrs(key, job.name) or {}).get("source_items") or {})
    return out


def plan_jobs(
    store: FeatureStore,
    path: Path,
    key: str,
    jobs: list[Job],
    overwrite: bool = False,
    verify: bool = False,
    notes: list[str] | None = None,
) -> tuple[list[Job], list[ItemOutcome]]:
    """The jobs still to run on one input, and the outcomes of those left as they are.

    A job whose item is complete and unchanged (:func:`is_unchanged`) is left, unless an
    item it was made from (mask source, features source) is redone now: the stored
    source's id still looks unchanged then. ``overwrite`` redoes every job. ``verify``
    hashes the whole of each item that would be left; damaged items are redone, with a
    line in ``notes``.
    """
    if overwrite or not path.exists():
        return list(jobs), []
    try:
        ident = source_identity(path, content_hash=False)
    except OSError:
        return list(jobs), []
    todo: list[Job] = []
    unchanged: list[ItemOutcome] = []
    for job in jobs:
        if is_unchanged(store, key, job, ident, verify, notes):
            unchanged.append(
                ItemOutcome(
                    str(path), key, job.name, "unchanged", "complete and unchanged in the store"
                )
            )
        else:
            todo.append(job)
    moved = True
    while moved and todo and unchanged:
        moved = False
        redo = {j.name for j in todo}
        for job in [j for j in jobs if j not in todo]:
            if _depends_on(store, key, job) & redo:
                todo.append(job)
                unchanged = [o for o in unchanged if o.extractor != job.name]
                moved = True
    return [j for j in jobs if j in todo], unchanged  # keep the run's order


def _stored_items(store: FeatureStore, key: str, jobs: list[Job]) -> dict[str, Any]:
    """Where the committed items of ``key`` that jobs may read are (masks, features), as
    plain data (:data:`emofeat.itemfile.ItemRef`: a path, or a shard and group)."""
    if not any(j.cls.modality == FEATURES or j.config.get("mask") for j in jobs):
        return {}
    return {
        ex: ref if isinstance(ref, tuple) else str(ref)
        for ex, ref in store.stored_input(key).files.items()
    }


@dataclass
class RunSummary:
    """Everything a run did, for the CLI's summary table."""

    run_id: str
    results: list[InputResult] = field(default_factory=list)
    problems: list[tuple[str, str]] = field(default_factory=list)
    seconds: float = 0.0
    stopped: str = ""  # why the run stopped early (the store could not be written)
    compaction: Any = None  # emofeat.store.CompactionResult when the run compacted the store
    notes: list[str] = field(default_factory=list)  # for the user, not failures
    not_attempted: int = 0  # inputs left when it stopped

    def count(self, status: str) -> int:
        return sum(1 for r in self.results if r.status == status) + (
            len(self.problems) if status == "failed" else 0
        )

    @property
    def failed(self) -> bool:
        return self.count("failed") > 0 or bool(self.stopped)


class _Stop(Exception):
    """The store cannot be written: the run stops (see :class:`RunSummary`.stopped)."""


class _Coordinator:
    """The committing side of one run: run log entries, commits, the summary."""

    def __init__(
        self,
        store: FeatureStore,
        summary: RunSummary,
        on_result: Callable[[InputResult], None] | None,
    ) -> None:
        self.store = store
        self.summary = summary
        self.on_result = on_result
        self.unchanged: dict[tuple[str, str], list[ItemOutcome]] = {}
        self.notes: dict[tuple[str, str], list[str]] = {}  # damaged items found by planning

    def entry(self, **kw: Any) -> dict[str, Any]:
        """A run-log entry of this run."""
        return {"run": self.summary.run_id, "time": time.strftime("%Y-%m-%dT%H:%M:%S%z"), **kw}

    def finish(self, res: InputResult) -> None:
        """Commit one input's staged items and log entries (its unchanged ones first)."""
        res.outcomes = self.unchanged.pop((res.input, res.key), []) + res.outcomes
        res.warnings = self.notes.pop((res.input, res.key), []) + res.warnings
        if res.fatal:  # the store cannot be written: what was staged goes
            for _, _, staged in res.items:
                Path(staged).unlink(missing_ok=True)
        else:
            _commit_result(self.store, res, self.entry)
        self.summary.results.append(res)
        if self.on_result:
            self.on_result(res)
        if res.fatal:
            raise _Stop(res.fatal)


def run(
    store: FeatureStore,
    inputs: list[Path],
    jobs: list[Job],
    options: RunOptions,
    problems: list[tuple[str, str]] | None = None,
    progress: ProgressFn | None = None,
    on_result: Callable[[InputResult], None] | None = None,
    command: str = "",
    client: Any = None,
    shared_fs: bool | None = None,
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
        client: a :class:`distributed.Client`: every input runs as a task on its cluster
            (:mod:`emofeat.cluster`). None: in this process, or with ``options.workers > 1``
            on a local cluster started for the run.
        shared_fs: see :func:`emofeat.cluster.run_on_dask`.
    """
    retain_extractors(jobs, options.device)  # models of earlier runs go (see jobs.py)
    run_id = time.strftime("%Y%m%dT%H%M%S") + "-" + uuid.uuid4().hex[:6]
    summary = RunSummary(run_id, problems=list(problems or []))
    t0 = time.perf_counter()
    coord = _Coordinator(store, summary, on_result)
    start = coord.entry(
        event="run-start",
        command=command,
        emofeat_version=__version__,
        extractors=[j.name for j in jobs],
        inputs=len(inputs),
        pid=os.getpid(),
    )
    failures = [
        coord.entry(event="input", input=a, key="", extractor="", status="failed", message=m)
        for a, m in summary.problems
    ]
    try:
        store.commit([], [start, *failures])
        _run_inputs(store, inputs, jobs, options, coord, progress, client, shared_fs)
    except _Stop as stop:
        summary.stopped = str(stop)
        summary.not_attempted = max(0, len(inputs) - len(summary.results))
    if summary.stopped:  # the store cannot be written: no run-end entry either
        summary.seconds = time.perf_counter() - t0
        return summary
    _compact_if_due(store, options, summary)
    summary.seconds = time.perf_counter() - t0
    end = coord.entry(
        event="run-end",
        seconds=round(summary.seconds, 3),
        done=summary.count("done"),
        skipped=summary.count("skipped"),
        unchanged=summary.count("unchanged"),
        failed=summary.count("failed"),
        compacted=summary.compaction.items if summary.compaction else 0,
    )
    try:
        store.commit([], [end])
    except StoreWriteError as exc:
        summary.stopped = str(exc)
    return summary


def _compact_if_due(store: FeatureStore, options: RunOptions, summary: RunSummary) -> None:
    """Merge small item files into shards once the store holds ``options.compact_at``."""
    if options.compact_at <= 0 or store.loose_items() < options.compact_at:
        return
    try:
        summary.compaction = store.compact()
        for p in summary.compaction.left_out:
            summary.notes.append(
                f"not compacted: {p.key} x {p.extractor}: {p.problem} (rerun to redo it)"
            )
    except StoreWriteError as exc:  # nothing lost: the items stay files of their own
        summary.notes.append(f"compaction not done: {exc} (run emofeat compact later)")


def _run_inputs(
    store: FeatureStore,
    inputs: list[Path],
    jobs: list[Job],
    options: RunOptions,
    coord: _Coordinator,
    progress: ProgressFn | None,
    client: Any,
    shared_fs: bool | None,
) -> None:
    """Plan every input, commit the unchanged ones, run the others (raises :class:`_Stop`)."""
    keys = input_keys(inputs)
    pending: list[tuple[str, str, list[Job]]] = []
    for path in inputs:
        key = keys[path]
        notes: list[str] = []
        todo, unchanged = plan_jobs(
            store, path, key, jobs, options.overwrite, options.verify, notes
        )
        if todo:
            pending.append((str(path), key, todo))
            coord.unchanged[(str(path), key)] = unchanged
            coord.notes[(str(path), key)] = notes
            continue
        msg = "all items complete and unchanged"
        coord.finish(InputResult(str(path), key, "unchanged", msg, outcomes=unchanged))
    if client is None and (options.workers <= 1 or len(pending) <= 1):
        for src, key, todo in pending:
            stored = _stored_items(store, key, todo)
            staging = str(store.staging_dir)
            # this process commits: the store syncs the item files with its group sync
            res = process_input(src, key, todo, options, staging, stored, progress, sync=False)
            coord.finish(res)
    elif pending:
        _run_cluster(store, pending, options, progress, coord.finish, client, shared_fs)


def _run_cluster(
    store: FeatureStore,
    pending: list[tuple[str, str, list[Job]]],
    options: RunOptions,
    progress: ProgressFn | None,
    finish: Callable[[InputResult], None],
    client: Any,
    shared_fs: bool | None,
) -> None:
    """Run the pending inputs as Dask tasks (on ``client``, or a local cluster)."""
    from emofeat import cluster

    work = [(p, k, t, _stored_items(store, k, t)) for p, k, t in pending]
    if client is not None:
        cluster.run_on_dask(client, store, work, options, progress, finish, shared_fs)
        return
    gpu = options.device.startswith("cuda")  # the workers share this machine's device
    local, client = cluster.local_cluster(min(options.workers, len(pending)), gpu)
    try:
        cluster.run_on_dask(client, store, work, options, progress, finish, shared_fs)
    finally:
        client.close()
        local.close()


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
            **({"worker": res.worker} if res.worker else {}),
        )
    )
    items = [(k, e, Path(p)) for k, e, p in res.items]
    t0 = time.perf_counter()
    try:
        store.commit(items, log, res.meta)
        res.stages["commit"] = time.perf_counter() - t0
    except Exception as exc:
        for _, _, p in items:
            p.unlink(missing_ok=True)
        res.status = "failed"
        res.message = f"could not write to the store: {exc}"
        for o in res.outcomes:
            if o.status == "done":
                o.status, o.message = "failed", res.message
        if isinstance(exc, StoreWriteError):
            res.fatal = str(exc)
            return
        raise EmofeatError(f"{store.path}: {res.message}") from exc
