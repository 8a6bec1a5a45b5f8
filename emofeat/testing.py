"""Test helpers for plugin authors: check that an extractor keeps emofeat's contract.

:func:`check_extractor` runs an extractor the way users run it (through
:func:`emofeat.extract` into a store and through :func:`emofeat.process_file`) on a short
input written by :mod:`emofeat.samples`, and checks what comes back::

    from emofeat.testing import check_extractor

    def test_contract():
        check_extractor("loudness", {"loudness": {"frame": 0.1}})

Every broken rule raises :class:`AssertionError` with a message naming the extractor, the
stream and the rule. The module imports nothing heavy (no pytest, no torch): the engine is
loaded when a check runs.
"""

from __future__ import annotations

import contextlib
import math
import os
import re
import tempfile
import time
from collections.abc import Iterable, Iterator, Mapping
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import numpy as np

from emofeat.extractor import AUDIO, FEATURES, MODALITIES, VIDEO, Extractor, Setting, StreamSpec

__all__ = ["ContractReport", "StreamReport", "check_extractor", "sample_input"]

_NAME = re.compile(r"^[a-z][a-z0-9_]*$")
_LEVELS = ("frame", "window")
_KINDS = ("audio", "video", "silent_video", "images")
#: provenance attributes every stored item carries (docs/store.md)
PROVENANCE = (
    "key",
    "extractor",
    "extractor_version",
    "plugin",
    "plugin_package",
    "plugin_version",
    "emofeat_version",
    "config",
    "config_hash",
    "license",
    "commercial_use",
    "model_id",
    "model_sha256",
    "model_source",
    "source",
    "media",
    "streams",
    "alignment",
    "created",
    "item_id",
)


@dataclass
class StreamReport:
    """What one stream of the checked item holds.

    Attributes:
        name: stream name.
        level: ``"frame"`` or ``"window"``.
        dims: number of dimensions.
        rows: native rows written.
        frames: rows of the frame-aligned view (frames of the input's grid).
        coverage: fraction of frames with a valid value (0-1).
    """

    name: str
    level: str
    dims: int
    rows: int
    frames: int
    coverage: float


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


def sample_input(
    kind: str,
    directory: str | os.PathLike,
    seconds: float = 1.5,
    *,
    fps: float = 10.0,
    size: tuple[int, int] = (160, 120),
    sampling_rate: int = 16000,
) -> Path:
    """Write a short input with known content (see :mod:`emofeat.samples`).

    Args:
        kind: ``"audio"`` (mono WAV of speech-like sound), ``"video"`` (MP4, H.264 frames
            of a moving disc plus speech-like AAC audio), ``"silent_video"`` (the same
            without audio) or ``"images"`` (a folder of numbered JPEG frames).
        directory: where to write it (created if missing).
        seconds: duration in seconds.
        fps: frame rate in Hz of videos and of the image count (``seconds * fps`` frames).
        size: frame size ``(width, height)`` in pixels (even numbers for H.264).
        sampling_rate: audio sampling rate in Hz.

    Returns:
        The file, or the folder for ``"images"``.
    """
    from emofeat.samples import write_audio, write_image_sequence, write_video

    if kind not in _KINDS:
        raise ValueError(f"sample_input: kind {kind!r} is not one of {', '.join(_KINDS)}")
    if seconds <= 0:
        raise ValueError(f"sample_input: seconds must be positive, got {seconds}")
    folder = Path(directory)
    folder.mkdir(parents=True, exist_ok=True)
    if kind == "audio":
        return write_audio(folder / "sample.wav", seconds, sampling_rate)
    if kind == "images":
        n = max(1, int(round(seconds * fps)))
        return write_image_sequence(folder / "sample_frames", n_frames=n, size=size)
    audio = kind == "video"
    name = "sample.mp4" if audio else "sample_silent.mp4"
    return write_video(folder / name, seconds, fps, size, audio=audio, sampling_rate=sampling_rate)


def _fail(name: str, message: str) -> AssertionError:
    return AssertionError(f"extractor {name!r}: {message}")


def check_class(cls: type[Extractor]) -> None:
    """Check an extractor class's declarations (no instance is made).

    Raises:
        AssertionError: a class attribute breaks the contract (docs/plugins.md).
    """
    if not (isinstance(cls, type) and issubclass(cls, Extractor)):
        raise AssertionError(f"{cls!r} is not a subclass of emofeat.Extractor")
    name = cls.name
    if not isinstance(name, str) or not _NAME.match(name):
        raise _fail(str(name), "name must be lowercase [a-z][a-z0-9_]*")
    if not isinstance(cls.version, str) or not cls.version:
        raise _fail(name, f"version must be a non-empty string, got {cls.version!r}")
    if cls.modality not in MODALITIES:
        raise _fail(name, f"modality {cls.modality!r} is not one of {', '.join(MODALITIES)}")
    for attr in ("license", "description"):
        value = getattr(cls, attr)
        if not isinstance(value, str) or not value.strip():
            raise _fail(name, f"{attr} is empty (it is shown by 'emofeat plugins')")
    if not isinstance(cls.commercial_use, bool):
        raise _fail(name, f"commercial_use must be a bool, got {cls.commercial_use!r}")
    if cls.modality == AUDIO and not (isinstance(cls.sampling_rate, int) and cls.sampling_rate > 0):
        raise _fail(name, f"sampling_rate must be a positive int (Hz), got {cls.sampling_rate!r}")
    if not isinstance(cls.requires, (tuple, list)) or not all(
        isinstance(r, str) for r in cls.requires
    ):
        raise _fail(
            name, f"requires must be a tuple of extractor names, got {cls.requires!r} "
            "(a one-name tuple needs a comma: ('faces',))"
        )  # fmt: skip
    if not isinstance(cls.settings, Mapping):
        raise _fail(name, "settings must be a dict of {key: emofeat.Setting}")
    for key, setting in cls.settings.items():
        if not isinstance(setting, Setting):
            raise _fail(name, f"setting {key!r} is {setting!r}, not an emofeat.Setting")
        if setting.choices is not None:
            defaults = setting.default if isinstance(setting.default, list) else [setting.default]
            bad = [d for d in defaults if d not in setting.choices]
            if bad:
                raise _fail(name, f"setting {key!r}: default {bad[0]!r} is not among its choices")
    if cls.modality == FEATURES:
        for method in ("sources", "process_stored"):
            if getattr(cls, method) is getattr(Extractor, method):
                raise _fail(name, f"a features extractor must implement {method}()")
    elif cls.process is Extractor.process and cls.end is Extractor.end:
        raise _fail(name, "an audio or video extractor must implement process() (and/or end())")


def _check_specs(name: str, specs: Any) -> dict[str, StreamSpec]:
    if not isinstance(specs, list) or not all(isinstance(s, StreamSpec) for s in specs):
        raise _fail(name, f"streams() must return a list of emofeat.StreamSpec, got {specs!r}")
    out: dict[str, StreamSpec] = {}
    for spec in specs:
        if spec.name in out:
            raise _fail(name, f"streams() declares {spec.name!r} twice")
        if not spec.name or "/" in spec.name:
            raise _fail(name, f"stream name {spec.name!r} must be non-empty, without '/'")
        if spec.level not in _LEVELS:
            raise _fail(name, f"stream {spec.name!r}: level {spec.level!r} not in {_LEVELS}")
        if not isinstance(spec.labels, tuple) or not all(isinstance(x, str) for x in spec.labels):
            raise _fail(name, f"stream {spec.name!r}: labels must be a tuple of str")
        if len(set(spec.labels)) != len(spec.labels):
            raise _fail(name, f"stream {spec.name!r}: labels are not unique")
        out[spec.name] = spec
    return out


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
            raise _fail(
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


def _split(settings: Any) -> tuple[dict[str, dict[str, Any]], list[str]]:
    """``settings`` as :func:`emofeat.build_jobs` takes them: (mapping, ``--set`` strings)."""
    if settings is None:
        return {}, []
    if isinstance(settings, Mapping):
        return {str(k): dict(v or {}) for k, v in settings.items()}, []
    if isinstance(settings, str):
        return {}, [settings]
    return {}, [str(s) for s in settings]


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
    given, sets = _split(settings)
    jobs = {j.name: j for j in emofeat.build_jobs(names, sets, settings=given)}
    if name not in jobs:
        raise _fail(name, "not among the configured jobs (an alias clash?)")
    job = jobs[name]
    # construction: streams() depends on the settings alone
    first = cls(dict(job.config), device=device)
    declared = _check_specs(name, first.streams())
    again = _check_specs(name, cls(dict(job.config), device=device).streams())
    if declared != again:
        raise _fail(name, "two instances with the same settings declare different streams")
    if not isinstance(first.model(), emofeat.ModelInfo):
        raise _fail(name, f"model() must return an emofeat.ModelInfo, got {first.model()!r}")

    # the input
    if media is None or str(media) in _KINDS:
        kind = str(media) if media is not None else None
        if kind is None:
            kind = _input_kind(cls.modality, (jobs[b].cls.modality for b in before if b in jobs))
        path = sample_input(kind, work / "input", seconds)
    else:
        path = Path(media)
    store_path = work / "contract.h5"
    if store_path.exists():
        raise _fail(name, f"{store_path} exists already: give an empty workdir")

    summary = emofeat.extract([path], names, store_path, settings, device=device, recursive=False)
    if summary.problems or len(summary.results) != 1:
        raise _fail(name, f"the run found no single input at {path}: {summary.problems}")
    result = summary.results[0]
    outcomes = {o.extractor: o for o in result.outcomes}
    for ran in names:
        o = outcomes.get(ran)
        if o is None:
            raise _fail(name, f"no outcome for {ran!r} ({result.status}: {result.message})")
        if o.status != "done":
            detail = f"\n{o.traceback}" if o.traceback else ""
            raise _fail(ran, f"{o.status} on {path.name}: {o.message}{detail}")

    store = emofeat.open_store(store_path)
    key = result.key
    attrs = store.item_attrs(key, name)
    if attrs is None:
        raise _fail(name, "reported done but the store holds no complete item")
    report = ContractReport(name, path, attrs=attrs)
    produced = list(attrs.get("streams") or [])
    if not produced:
        raise _fail(name, "wrote no stream (no rows, and no declared stream with labels)")
    if declared:
        extra = [s for s in produced if s not in declared]
        if extra:
            raise _fail(name, f"wrote undeclared stream(s) {extra} (declared: {list(declared)})")
        missing = [s for s, spec in declared.items() if spec.labels and s not in produced]
        if missing:
            raise _fail(name, f"declared stream(s) {missing} were not written")
    levels = {s: lev for ex, s, lev in store.stored_input(key).streams() if ex == name}
    n_frames = _check_grid(name, store, key, path, cls.modality, before, jobs)
    end_time = float(store.read(key, name, produced[0], aligned=True).times[-1, 1])
    for stream in produced:
        report.streams[stream] = _check_stream(
            name, store, key, stream, declared.get(stream), levels.get(stream), n_frames, end_time
        )
    _check_provenance(name, cls, job.config, attrs, key)

    # round trip: the reopened store, then a second pass through process_file
    reopened = emofeat.open_store(store_path)
    for stream in produced:
        a = store.read(key, name, stream)
        b = reopened.read(key, name, stream)
        for what in ("data", "times", "mask"):
            if not np.array_equal(getattr(a, what), getattr(b, what), equal_nan=True):
                raise _fail(name, f"stream {stream!r}: {what} differs when the store is reopened")
    if compare_process_file:
        frames = emofeat.process_file(path, names, settings, device=device)
        for stream in produced:
            label = f"{name}.{stream}"
            if label not in frames:
                raise _fail(name, f"process_file returned no {label!r} (got {sorted(frames)})")
            got = frames[label]
            stored = reopened.to_frame(name, stream, keys=[key])
            if list(got.columns) != list(stored.columns) or got.shape != stored.shape:
                raise _fail(
                    name,
                    f"stream {stream!r}: process_file gave shape {got.shape}, the store "
                    f"{stored.shape}",
                )
            if not got.index.equals(stored.index):
                raise _fail(name, f"stream {stream!r}: row times differ between two runs")
            x, y = got.to_numpy(np.float64), stored.to_numpy(np.float64)
            close = np.isclose(x, y, rtol=rtol, atol=rtol, equal_nan=True)
            if not close.all():
                r, c = np.argwhere(~close)[0]
                raise _fail(
                    name,
                    f"stream {stream!r}: two runs on the same input differ (row {r}, "
                    f"{got.columns[c]}: {x[r, c]!r} vs {y[r, c]!r}); outputs must depend on "
                    "the input and settings only",
                )
    report.seconds = time.perf_counter() - t0
    return report


def _check_grid(
    name: str,
    store: Any,
    key: str,
    path: Path,
    modality: str,
    before: list[str],
    jobs: dict[str, Any],
) -> int:
    """The number of frames of the input's grid, checked against the input itself."""
    import emofeat

    info = emofeat.probe(path)
    item = next(i for i in store.catalog() if i.key == key and i.extractor == name)
    n = item.n_frames
    if info.has_video:
        expected = emofeat.count_frames(info)
        if n != expected:
            raise _fail(name, f"aligned views have {n} rows, the video has {expected} frames")
    else:
        duration = float(info.duration or 0.0)
        expected = max(1, math.ceil(duration * 100.0 - 1e-9))
        if abs(n - expected) > 2:
            raise _fail(
                name, f"aligned views have {n} rows; {duration:.3f} s at 100 Hz is {expected}"
            )
    return n


def _check_stream(
    name: str,
    store: Any,
    key: str,
    stream: str,
    spec: StreamSpec | None,
    level: str | None,
    n_frames: int,
    end_time: float,
) -> StreamReport:
    where = f"stream {stream!r}"
    native = store.read(key, name, stream)
    aligned = store.read(key, name, stream, aligned=True)
    data = native.data
    if data.dtype != np.float32 or data.ndim != 2:
        raise _fail(name, f"{where}: data is {data.dtype} {data.shape}, not float32 (n, dims)")
    n, dims = data.shape
    if len(native.labels) != dims:
        raise _fail(name, f"{where}: {dims} dims but {len(native.labels)} labels")
    if spec is not None and spec.labels and tuple(native.labels) != spec.labels:
        raise _fail(name, f"{where}: labels differ from its StreamSpec's")
    if spec is not None and level is not None and level != spec.level:
        raise _fail(name, f"{where}: stored level {level!r}, declared {spec.level!r}")
    if native.mask.dtype != np.bool_ or native.mask.shape != (n,):
        raise _fail(name, f"{where}: mask is {native.mask.dtype} {native.mask.shape}, not bool")
    times = native.times
    if times.shape != (n, 2) or not np.isfinite(times).all():
        raise _fail(name, f"{where}: row times must be finite (start, end) pairs")
    if n and (times[:, 1] < times[:, 0]).any():
        raise _fail(name, f"{where}: a row ends before it starts")
    if n and (times[:, 0] < -1e-6).any():
        raise _fail(name, f"{where}: a row starts before t = 0 ({times[:, 0].min():.4f} s)")
    if n and times[:, 0].max() > end_time + 1e-6:
        raise _fail(
            name,
            f"{where}: a row starts at {times[:, 0].max():.3f} s, after the input's end "
            f"({end_time:.3f} s)",
        )
    if not np.isfinite(data[native.mask]).all():
        raise _fail(name, f"{where}: valid rows hold NaN or inf (flag them with valid=False)")
    a_data, a_mask, row = aligned.data, aligned.mask, aligned.row
    if a_data.dtype != np.float32 or a_data.shape != (n_frames, dims):
        raise _fail(name, f"{where}: aligned view is {a_data.shape}, expected ({n_frames}, {dims})")
    if a_mask.dtype != np.bool_ or a_mask.shape != (n_frames,):
        raise _fail(name, f"{where}: aligned mask is not a bool per frame")
    assert row is not None
    took = row >= 0
    if (row >= n).any():
        raise _fail(name, f"{where}: aligned view points past the native rows")
    if not np.array_equal(a_data[took], data[row[took]], equal_nan=True):
        raise _fail(name, f"{where}: a frame does not hold its source row's values")
    if (a_mask & ~took).any() or (a_mask[took] & ~native.mask[row[took]]).any():
        raise _fail(name, f"{where}: a valid frame comes from no row or from an invalid row")
    coverage = float(a_mask.mean()) if n_frames else 0.0
    return StreamReport(stream, level or (spec.level if spec else ""), dims, n, n_frames, coverage)


def _check_provenance(
    name: str, cls: type[Extractor], config: dict[str, Any], attrs: dict[str, Any], key: str
) -> None:
    missing = [a for a in PROVENANCE if a not in attrs]
    if missing:
        raise _fail(name, f"stored item lacks provenance attribute(s) {missing}")
    expect = {"key": key, "extractor": name, "extractor_version": cls.version}
    for attr, value in expect.items():
        if attrs[attr] != value:
            raise _fail(name, f"stored {attr} is {attrs[attr]!r}, expected {value!r}")
    if not str(attrs["license"]).strip():
        raise _fail(name, "stored item has no licence")
    if not attrs["plugin"]:
        raise _fail(name, "stored item names no plugin")
    if not isinstance(attrs["commercial_use"], bool):
        raise _fail(name, "stored commercial_use is not a bool")
    if not cls.commercial_use and attrs["commercial_use"]:
        raise _fail(name, "the class forbids commercial use but the item allows it")
    stored = (attrs["config"] or {}).get("settings", {})
    if set(stored) != set(config):
        raise _fail(name, f"stored settings {sorted(stored)} are not its settings {sorted(config)}")
    if attrs["model_sha256"] and not attrs["model_id"]:
        raise _fail(name, "stored model_sha256 without a model_id")
