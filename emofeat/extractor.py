"""The extractor contract every plugin implements.

An extractor is a class. The engine instantiates it once per run with its validated
settings, calls :meth:`Extractor.begin` for each input, feeds it chunks (audio, frames or
stored streams, depending on :attr:`Extractor.modality`) and collects the :class:`Rows` it
returns. Extractors hold no file handles and know nothing of HDF5; they must be
reconstructible from ``(settings, device)`` alone, so that work can move to worker
processes.
"""

from __future__ import annotations

import copy
from collections.abc import Iterable, Iterator
from dataclasses import dataclass, field
from typing import TYPE_CHECKING, Any, ClassVar

import numpy as np

if TYPE_CHECKING:
    from emofeat.media import AudioChunk, FrameGrid, MediaInfo, VideoChunk
    from emofeat.store import StoredInput

AUDIO = "audio"
VIDEO = "video"
FEATURES = "features"
MODALITIES = (AUDIO, VIDEO, FEATURES)


@dataclass(frozen=True)
class StreamSpec:
    """One named output of an extractor.

    Attributes:
        name: stream name, unique within the extractor (``"lld"``, ``"embedding"``).
        labels: one name per dimension; may be empty when only known at run time.
        level: ``"frame"`` for dense per-frame or low-level-descriptor streams,
            ``"window"`` for summaries over windows (functionals skip these by default).
        rate: human-readable native rate, e.g. ``"100 Hz"`` or ``"win 4 s, hop 2 s"``.
    """

    name: str
    labels: tuple[str, ...] = ()
    level: str = "frame"
    rate: str = ""

    @property
    def dims(self) -> int:
        """Number of dimensions (0 when only known at run time)."""
        return len(self.labels)


@dataclass
class Rows:
    """A block of native output rows of one stream.

    Attributes:
        stream: the :class:`StreamSpec` name.
        data: values, shape ``(n, dims)``.
        start: start of each row in seconds, shape ``(n,)``.
        end: end of each row in seconds, shape ``(n,)``.
        valid: per-row validity (``None``: all rows valid).
        labels: dimension names, when only known at run time.
    """

    stream: str
    data: np.ndarray
    start: np.ndarray
    end: np.ndarray
    valid: np.ndarray | None = None
    labels: tuple[str, ...] | None = None

    def __post_init__(self) -> None:
        self.data = np.asarray(self.data, dtype=np.float32)
        if self.data.ndim == 1:
            self.data = self.data[:, None]
        self.start = np.asarray(self.start, dtype=np.float64).reshape(-1)
        self.end = np.asarray(self.end, dtype=np.float64).reshape(-1)
        n = self.data.shape[0]
        if len(self.start) != n or len(self.end) != n:
            raise ValueError(
                f"stream {self.stream!r}: {n} rows but {len(self.start)} starts and "
                f"{len(self.end)} ends"
            )
        if self.valid is not None:
            self.valid = np.asarray(self.valid, dtype=bool).reshape(-1)
            if len(self.valid) != n:
                raise ValueError(f"stream {self.stream!r}: {n} rows but {len(self.valid)} flags")

    def __len__(self) -> int:
        return self.data.shape[0]


@dataclass(frozen=True)
class Setting:
    """A user-settable option of an extractor (``--set NAME.KEY=VALUE``).

    Attributes:
        default: default value; its type is the setting's type (bool, int, float, str,
            list) unless ``type`` says otherwise.
        help: one line, with units.
        choices: allowed values, if restricted.
    """

    default: Any
    help: str = ""
    choices: tuple[Any, ...] | None = None


MASK_SETTINGS: dict[str, Setting] = {
    "mask": Setting(
        "",
        "mask rows by another extractor's 0/1 stream: EXTRACTOR or EXTRACTOR.STREAM "
        "(e.g. vad, mouth_open); empty: no mask",
    ),
    "mask_min": Setting(
        0.5, "fraction (0-1] of a native row's span that must be active in the mask to stay valid"
    ),
}
"""Settings every ``audio`` and ``video`` extractor accepts (``--set NAME.mask=vad``).

They are merged into each such extractor's :attr:`Extractor.settings` when the class is
defined, so ``--set``, config files, ``emofeat plugins`` and stored configs treat them like
the extractor's own. The engine applies the mask (see :mod:`emofeat.engine`); extractors
never see it. A subclass that declares a setting of the same name keeps its own.
"""


@dataclass(frozen=True)
class ModelInfo:
    """Provenance of the model an extractor runs (stored in the item's attributes)."""

    id: str = ""
    sha256: str = ""
    license: str = ""
    source: str = ""


class Extractor:
    """Base class of all extractors. Subclass it and register it from a plugin.

    Class attributes to set:
        name: the extractor's name (``--plugin NAME``), lowercase, ``[a-z0-9_]``.
        version: bump it when outputs change (stored items of older versions are redone).
        modality: ``"audio"``, ``"video"`` or ``"features"`` (reads streams from the store).
        license: licence of the method and of any model it loads (shown by
            ``emofeat plugins`` and stored with every output).
        description: one line.
        settings: ``{key: Setting}`` accepted through ``--set NAME.KEY=VALUE``. For
            ``audio`` and ``video`` extractors the core adds ``mask`` and ``mask_min``
            (:data:`MASK_SETTINGS`) when the class is defined.
        sampling_rate: audio extractors: the rate in Hz they want their audio at.
        commercial_use: ``False`` when the model's licence forbids commercial use.
        requires: names of extractors (same modality) whose rows for each chunk this one
            needs; they join the run automatically and their rows arrive in
            ``chunk.upstream[name]``. A required extractor must return the rows of a chunk's
            frames from that chunk's ``process`` call (no look-ahead across chunks).
    """

    name: ClassVar[str] = ""
    version: ClassVar[str] = "0"
    modality: ClassVar[str] = AUDIO
    license: ClassVar[str] = ""
    description: ClassVar[str] = ""
    settings: ClassVar[dict[str, Setting]] = {}
    sampling_rate: ClassVar[int] = 16000
    commercial_use: ClassVar[bool] = True
    requires: ClassVar[tuple[str, ...]] = ()

    def __init_subclass__(cls, **kwargs: Any) -> None:
        super().__init_subclass__(**kwargs)
        own = {k: v for k, v in cls.settings.items() if MASK_SETTINGS.get(k) is not v}
        if cls.modality in (AUDIO, VIDEO):
            cls.settings = {**own, **{k: v for k, v in MASK_SETTINGS.items() if k not in own}}
        elif len(own) != len(cls.settings):  # a features subclass of a media base class
            cls.settings = own

    def __init__(self, config: dict[str, Any] | None = None, device: str = "cpu") -> None:
        # copies: a list default (thresholds...) must not be shared between instances
        self.config: dict[str, Any] = {
            k: copy.deepcopy(s.default) for k, s in self.settings.items()
        }
        self.config.update(config or {})
        self.check_config(self.config)
        self.device = device

    @classmethod
    def check_config(cls, config: dict[str, Any]) -> None:
        """Raise :class:`emofeat.ConfigError` for invalid settings (called before any work)."""

    def prepare(self) -> None:
        """Optional: load models and check what they need, once, before any input.

        The engine calls it right after creating the extractor (in the main process, then in
        each worker), so that a missing model or a licence not accepted stops the run once
        instead of failing every input. Loading models here rather than in ``__init__`` keeps
        ``emofeat plugins`` (which only creates extractors) fast. Default: nothing.
        """

    # -- description ------------------------------------------------------------------
    def streams(self) -> list[StreamSpec]:
        """The streams this extractor writes, given its settings."""
        raise NotImplementedError

    def model(self) -> ModelInfo:
        """The model it runs (empty for model-free extractors)."""
        return ModelInfo(license=self.license)

    # -- processing -------------------------------------------------------------------
    def begin(self, info: MediaInfo) -> None:
        """Reset per-input state; called before the first chunk of every input."""

    def process(self, chunk: AudioChunk | VideoChunk) -> Iterable[Rows]:
        """Consume one chunk; return the rows that are complete."""
        return ()

    def end(self) -> Iterable[Rows]:
        """The input is exhausted: return what is left."""
        return ()

    def sources(self, stored: StoredInput) -> list[tuple[str, str]]:
        """``features`` extractors: the ``(extractor, stream)`` pairs they will read.

        An empty list makes the engine record the input as skipped for this extractor.
        """
        return []

    def process_stored(self, source: StoredInput, grid: FrameGrid) -> Iterator[Rows]:
        """``features`` extractors: compute rows from streams already in the store."""
        raise NotImplementedError


@dataclass
class ExtractorEntry:
    """An extractor class as registered, tagged with the plugin that provided it."""

    cls: type[Extractor]
    plugin: str
    package: str = ""
    package_version: str = ""
    aliases: tuple[str, ...] = field(default_factory=tuple)


# --------------------------------------------------------------------------------------
# Audio helpers offered to plugins: the engine streams audio in chunks; these turn the
# stream into what an extractor needs without holding the whole signal.


class SlidingWindows:
    """Cut a streamed signal into windows ``[k * hop, k * hop + win)``.

    Windows are start-aligned like audinterface's. Unlike audinterface, a final partial
    window is kept: zero-padded to full length and flagged ``padded`` so its row can be
    masked. Memory holds one window plus one chunk.

    Args:
        win: window length in seconds.
        hop: hop in seconds.
        sampling_rate: Hz.
    """

    def __init__(self, win: float, hop: float, sampling_rate: int) -> None:
        if win <= 0 or hop <= 0:
            raise ValueError(f"window ({win} s) and hop ({hop} s) must be positive")
        self.sr = sampling_rate
        self.win = int(round(win * sampling_rate))
        self.hop = int(round(hop * sampling_rate))
        self.buf = np.zeros(0, dtype=np.float32)
        self.buf_offset = 0  # sample index of buf[0]
        self.next_start = 0  # sample index of the next window's start
        self.total = 0
        self.last_end = 0

    def push(self, samples: np.ndarray) -> Iterator[tuple[int, np.ndarray, bool]]:
        """Add samples; yield ``(start_sample, window, padded)`` for complete windows."""
        self.buf = np.concatenate([self.buf, np.asarray(samples, np.float32)])
        self.total += len(samples)
        while self.next_start + self.win <= self.total:
            a = self.next_start - self.buf_offset
            yield self.next_start, self.buf[a : a + self.win], False
            self.last_end = self.next_start + self.win
            self.next_start += self.hop
        drop = min(self.next_start, self.total) - self.buf_offset
        if drop > 0:
            self.buf = self.buf[drop:]
            self.buf_offset += drop

    def flush(self) -> Iterator[tuple[int, np.ndarray, bool]]:
        """Yield the zero-padded final window if samples remain uncovered."""
        if self.total > self.last_end and self.next_start < self.total:
            a = self.next_start - self.buf_offset
            part = self.buf[a:]
            window = np.zeros(self.win, dtype=np.float32)
            window[: len(part)] = part
            yield self.next_start, window, True
            self.last_end = self.total


class ContextChunks:
    """Cut a streamed signal into long blocks with context on both sides.

    For frame-level processing (low-level descriptors, network frames) of long audio with
    bounded memory: each block is processed with ``context`` seconds of neighbouring signal
    on each side, and the caller keeps only the output frames that start inside the
    block's own span ``[keep_start, keep_end)`` (sample indices).

    Args:
        block: own length of a block in seconds.
        context: context on each side in seconds.
        sampling_rate: Hz.
        align: block and context lengths are rounded to multiples of this many samples
            (the caller's hop), so frame grids agree across blocks.
    """

    def __init__(self, block: float, context: float, sampling_rate: int, align: int = 1) -> None:
        def rnd(x: float) -> int:
            return max(align, int(round(x * sampling_rate / align)) * align)

        self.block = rnd(block)
        self.context = rnd(context) if context > 0 else 0
        self.buf = np.zeros(0, dtype=np.float32)
        self.buf_offset = 0
        self.next_keep = 0  # sample where the next block's own span starts
        self.total = 0

    def push(self, samples: np.ndarray) -> Iterator[tuple[np.ndarray, int, int, int]]:
        """Add samples; yield ``(segment, segment_start, keep_start, keep_end)``."""
        self.buf = np.concatenate([self.buf, np.asarray(samples, np.float32)])
        self.total += len(samples)
        while self.next_keep + self.block + self.context <= self.total:
            yield self._segment(self.next_keep + self.block)

    def _segment(self, keep_end: int) -> tuple[np.ndarray, int, int, int]:
        seg_start = max(0, self.next_keep - self.context)
        seg_end = min(self.total, keep_end + self.context)
        segment = self.buf[seg_start - self.buf_offset : seg_end - self.buf_offset]
        out = (segment, seg_start, self.next_keep, keep_end)
        self.next_keep = keep_end
        drop = max(0, self.next_keep - self.context) - self.buf_offset
        if drop > 0:
            self.buf = self.buf[drop:]
            self.buf_offset += drop
        return out

    def flush(self) -> Iterator[tuple[np.ndarray, int, int, int]]:
        """Yield the last block (up to the end of the signal)."""
        if self.total > self.next_keep:
            # the final block keeps everything to the end, including frames that start
            # after the signal's last sample (the processor decides what it emits there)
            seg_start = max(0, self.next_keep - self.context)
            segment = self.buf[seg_start - self.buf_offset :]
            yield segment, seg_start, self.next_keep, np.iinfo(np.int64).max
            self.next_keep = self.total
