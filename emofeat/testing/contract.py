"""The contract check: an extractor run through :func:`emofeat.extract` and
:func:`emofeat.process_file` on a short input, what it stored checked and round-tripped."""

from __future__ import annotations

import contextlib
import os
import tempfile
import time
from collections.abc import Iterable, Iterator, Mapping
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import numpy as np

from emofeat.api import split_settings
from emofeat.extractor import AUDIO, FEATURES, VIDEO, Extractor
from emofeat.testing.declarations import check_class, check_specs, fail
from emofeat.testing.inputs import KINDS, sample_input
from emofeat.testing.outputs import StreamReport, check_grid, check_provenance, check_stream


@dataclass
class ContractReport:
    """The outcome of :func:`check_extractor` (returned when every check passed).

    Attributes:
        extractor: the extractor's name.
        input: the input file or folder it ran on.
        streams: one :class:`StreamReport` per stream written.
        attrs: the stored item's provenance attributes.
        seconds: wall-clock time of the whole check, in seconds.
    """

    extractor: str
    input: Path
    streams: dict[str, StreamReport] = field(default_factory=dict)
    attrs: dict[str, Any] = field(default_factory=dict)
    seconds: float = 0.0


@contextlib.contextmanager
def _registered(classes: list[type[Extractor]]) -> Iterator[None]:
    """Make ``classes`` available by name during a check (those no plugin provides yet)."""
    from emofeat import hookimpl
    from emofeat.plugins import get_extractors, pm

    found = get_extractors()
    new = []
    for cls in classes:
        check_class(cls)
        entry = found.get(cls.name)
        if entry is None:
            new.append(cls)
        elif entry.cls is not cls:
            raise fail(
                cls.name,
                f"another class of that name is registered by plugin {entry.plugin!r} "
                f"({entry.cls.__module__}.{entry.cls.__qualname__})",
            )
    if not new:
        yield
        return

    class _Plugin:
        @hookimpl
        def register_extractors(self, register: Any) -> None:
            for cls in new:
                register(cls)

    plugin_name = "emofeat.testing:" + ",".join(c.name for c in new)
    pm.register(_Plugin(), name=plugin_name)
    try:
        yield
    finally:
        pm.unregister(name=plugin_name)


def _input_kind(modality: str, before_modalities: Iterable[str]) -> str:
    if modality == AUDIO:
        return "audio"
    if modality == VIDEO:
        return "video"
    return "video" if VIDEO in set(before_modalities) else "audio"


def check_extractor(
    extractor: str | type[Extractor],
    settings: Mapping[str, Mapping[str, Any]] | Iterable[str] | None = None,
    media: str | os.PathLike | None = None,
    *,
    before: Iterable[str | type[Extractor]] = (),
    seconds: float = 1.5,
    device: str = "cpu",
    workdir: str | os.PathLike | None = None,
    compare_process_file: bool = True,
    rtol: float = 1e-5,
) -> ContractReport:
    """Run an extractor on a short input and check that it keeps emofeat's contract.

    Checked, in order:

    1. the class's declarations (:func:`check_class`): name, version, modality, licence,
       description, settings (``emofeat.Setting``, defaults among their choices), requires;
    2. construction from its resolved settings (twice: ``streams()`` must depend on the
       settings only) and the declared :class:`~emofeat.StreamSpec` list: unique names,
       ``level`` ``"frame"`` or ``"window"``, unique string labels;
    3. a run through :func:`emofeat.extract` into a temporary store (``prepare()``, then
       every chunk): the item is *done* (a failure is re-raised with its traceback);
    4. every stream written was declared, and every declared stream with labels was
       written (extractors that declare no streams before the run, such as ``functionals``,
       are exempt); labels match the declaration; native rows are float32 with finite
       values where valid, boolean masks, ``start <= end`` on the input's timeline;
    5. alignment: the aligned view has one row per frame of the input's grid (one per
       video frame; audio inputs: ``grid_rate`` = 100 Hz), each frame holds its source
       row's values, and a valid frame comes from a valid row; stream ``level``
       attributes match the declaration;
    6. provenance: every attribute of docs/store.md (licence, model, plugin, settings...);
       ``commercial_use`` is False when the class says so;
    7. round trip: the store reopened returns the same values, and
       :func:`emofeat.process_file` on the same input returns them too (within ``rtol``).

    Args:
        extractor: a registered extractor's name, or an :class:`emofeat.Extractor`
            subclass (registered for the duration of the check when no plugin provides it).
        settings: ``{extractor: {key: value}}`` or ``["NAME.KEY=VALUE", ...]``, as
            :func:`emofeat.extract` takes them (settings of ``before`` extractors too).
        media: an input to run on, or a kind for :func:`sample_input` (``"audio"``,
            ``"video"``, ``"silent_video"``, ``"images"``). Default: an audio file for
            audio extractors, a video (with audio) otherwise.
        before: extractors (names, or classes: registered for the check) run on the same
            input in the same run: what a ``features`` extractor reads (required for
            those), or what the extractor ``requires`` when no plugin provides it.
        seconds: duration of a generated input, in seconds.
        device: ``cpu``, ``cuda``, ``cuda:N``.
        workdir: keep the store and the generated input there (default: a temporary
            folder, removed afterwards).
        compare_process_file: also run :func:`emofeat.process_file` and compare (a second
            pass over the input).
        rtol: relative tolerance of that comparison.

    Returns:
        A :class:`ContractReport` (streams, rows, coverage, provenance, time taken).

    Raises:
        AssertionError: a broken rule, with the extractor, stream and rule named.
        emofeat.ConfigError, emofeat.UnknownExtractorError: bad names or settings (a usage
            error of the check itself, raised as :func:`emofeat.extract` raises it).
    """
    t0 = time.perf_counter()
    from emofeat.plugins import get_extractor

    before = list(before)
    classes = [x for x in (extractor, *before) if not isinstance(x, str)]
    cls = get_extractor(extractor).cls if isinstance(extractor, str) else extractor
    check_class(cls)
    names = [b if isinstance(b, str) else b.name for b in before]
    names = [b for b in names if b != cls.name]
    if cls.modality == FEATURES and not names:
        raise ValueError(
            f"check_extractor({cls.name!r}): a features extractor reads stored streams; name "
            "the extractors that make them with before=[...]"
        )
    scope = _registered(classes)
    with scope, contextlib.ExitStack() as stack:
        if workdir is None:
            work = Path(stack.enter_context(tempfile.TemporaryDirectory(prefix="emofeat-check-")))
        else:
            work = Path(workdir)
            work.mkdir(parents=True, exist_ok=True)
        return _check(
            cls, settings, media, names, seconds, device, work, compare_process_file, rtol, t0
        )


def _check(
    cls: type[Extractor],
    settings: Any,
    media: str | os.PathLike | None,
    before: list[str],
    seconds: float,
    device: str,
    work: Path,
    compare_process_file: bool,
    rtol: float,
    t0: float,
) -> ContractReport:
    import emofeat

    name = cls.name
    names = [*before, name]
    given, sets = split_settings(settings)
    jobs = {j.name: j for j in emofeat.build_jobs(names, sets, settings=given)}
    if name not in jobs:
        raise fail(name, "not among the configured jobs (an alias clash?)")
    job = jobs[name]
    # construction: streams() depends on the settings alone
    first = cls(dict(job.config), device=device)
    declared = check_specs(name, first.streams())
    again = check_specs(name, cls(dict(job.config), device=device).streams())
    if declared != again:
        raise fail(name, "two instances with the same settings declare different streams")
    if not isinstance(first.model(), emofeat.ModelInfo):
        raise fail(name, f"model() must return an emofeat.ModelInfo, got {first.model()!r}")

    # the input
    if media is None or str(media) in KINDS:
        kind = str(media) if media is not None else None
        if kind is None:
            kind = _input_kind(cls.modality, (jobs[b].cls.modality for b in before if b in jobs))
        path = sample_input(kind, work / "input", seconds)
    else:
        path = Path(media)
    store_path = work / "contract.h5"
    if store_path.exists():
        raise fail(name, f"{store_path} exists already: give an empty workdir")

    summary = emofeat.extract([path], names, store_path, settings, device=device, recursive=False)
    if summary.problems or len(summary.results) != 1:
        raise fail(name, f"the run found no single input at {path}: {summary.problems}")
    result = summary.results[0]
    outcomes = {o.extractor: o for o in result.outcomes}
    for ran in names:
        o = outcomes.get(ran)
        if o is None:
            raise fail(name, f"no outcome for {ran!r} ({result.status}: {result.message})")
        if o.status != "done":
            detail = f"\n{o.traceback}" if o.traceback else ""
            raise fail(ran, f"{o.status} on {path.name}: {o.message}{detail}")

    store = emofeat.open_store(store_path)
    key = result.key
    attrs = store.item_attrs(key, name)
    if attrs is None:
        raise fail(name, "reported done but the store holds no complete item")
    report = ContractReport(name, path, attrs=attrs)
    produced = list(attrs.get("streams") or [])
    if not produced:
        raise fail(name, "wrote no stream (no rows, and no declared stream with labels)")
    if declared:
        extra = [s for s in produced if s not in declared]
        if extra:
            raise fail(name, f"wrote undeclared stream(s) {extra} (declared: {list(declared)})")
        missing = [s for s, spec in declared.items() if spec.labels and s not in produced]
        if missing:
            raise fail(name, f"declared stream(s) {missing} were not written")
    levels = {s: lev for ex, s, lev in store.stored_input(key).streams() if ex == name}
    n_frames = check_grid(name, store, key, path, cls.modality, before, jobs)
    end_time = float(store.read(key, name, produced[0], aligned=True).times[-1, 1])
    for stream in produced:
        report.streams[stream] = check_stream(
            name, store, key, stream, declared.get(stream), levels.get(stream), n_frames, end_time
        )
    check_provenance(name, cls, job.config, attrs, key)

    # round trip: the reopened store, then a second pass through process_file
    reopened = emofeat.open_store(store_path)
    for stream in produced:
        a = store.read(key, name, stream)
        b = reopened.read(key, name, stream)
        for what in ("data", "times", "mask"):
            if not np.array_equal(getattr(a, what), getattr(b, what), equal_nan=True):
                raise fail(name, f"stream {stream!r}: {what} differs when the store is reopened")
    if compare_process_file:
        frames = emofeat.process_file(path, names, settings, device=device)
        for stream in produced:
            label = f"{name}.{stream}"
            if label not in frames:
                raise fail(name, f"process_file returned no {label!r} (got {sorted(frames)})")
            got = frames[label]
            stored = reopened.to_frame(name, stream, keys=[key])
            if list(got.columns) != list(stored.columns) or got.shape != stored.shape:
                raise fail(
                    name,
                    f"stream {stream!r}: process_file gave shape {got.shape}, the store "
                    f"{stored.shape}",
                )
            if not got.index.equals(stored.index):
                raise fail(name, f"stream {stream!r}: row times differ between two runs")
            x, y = got.to_numpy(np.float64), stored.to_numpy(np.float64)
            close = np.isclose(x, y, rtol=rtol, atol=rtol, equal_nan=True)
            if not close.all():
                r, c = np.argwhere(~close)[0]
                raise fail(
                    name,
                    f"stream {stream!r}: two runs on the same input differ (row {r}, "
                    f"{got.columns[c]}: {x[r, c]!r} vs {y[r, c]!r}); outputs must depend on "
                    "the input and settings only",
                )
    report.seconds = time.perf_counter() - t0
    return report
