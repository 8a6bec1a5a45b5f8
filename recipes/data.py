"""From feature stores and an Aff-Wild2 tree to per-track arrays and training windows.

The join: a track finds its items by identity, not by store key
(:class:`emofeat_recipes.datasets.join.FeatureIndex`: the crop folder's name, the raw video's stem,
the source path every item records; faces of two-person videos by subject). Row ``j`` of an
item's frame-aligned view is video frame ``j`` (0-based), which is label line ``j + 1``;
image folders are aligned the same way (image ``00001.jpg`` is row 0, missing images are
masked rows).

Everything is resampled to the target rate (paper: 5 fps) as soon as it is read, so memory
holds only the frames a model sees.
"""

from __future__ import annotations

import logging
from collections.abc import Iterator
from dataclasses import dataclass, field
from typing import Any

import numpy as np
import torch

from emofeat import get_extractors
from emofeat_recipes.datasets.affwild2 import AffWild2, Labels, Track
from emofeat_recipes.datasets.join import FeatureIndex
from emofeat_recipes.windows import fit_normaliser, make_windows, resample_indices

# the stream a bare extractor name stands for, by preference
DEFAULT_STREAMS = ("embedding", "features", "hidden_states", "lld")
# stored extractors that are not emotion features (boxes, landmarks, speech flags)
NOT_FEATURES = {"faces", "mouth", "vad", "mouth_open"}


@dataclass(frozen=True)
class StreamRef:
    """One stored stream used as a model input."""

    extractor: str
    stream: str
    modality: str  # "video" | "audio"

    @property
    def id(self) -> str:
        return f"{self.extractor}.{self.stream}"


def _pick_stream(index: FeatureIndex, extractor: str) -> str | None:
    names = index.streams(extractor)
    for pref in DEFAULT_STREAMS:
        if pref in names:
            return pref
    return names[0] if names else None


def _declared_stream(cls: type) -> str | None:
    """The stream a bare extractor name stands for, from what the extractor declares."""
    try:
        names = [s.name for s in cls().streams()]
    except Exception:  # an extractor that cannot describe itself without its model
        return None
    for pref in DEFAULT_STREAMS:
        if pref in names:
            return pref
    return names[0] if names else None


def resolve_inputs(index: FeatureIndex, inputs: dict[str, list[str]]) -> dict[str, list[StreamRef]]:
    """Which stored streams feed which modality.

    Args:
        index: the stores' items.
        inputs: ``{"video": [...], "audio": [...]}``; each entry ``EXTRACTOR`` or
            ``EXTRACTOR.STREAM``. An empty list means: every stored extractor of that
            modality (video: face embeddings; audio: PDEM or openSMILE LLDs); a modality
            left out of the mapping is not used.

    Raises:
        RecipeError: a stream is not in the stores' items of its extractor, or an extractor
            named without a stream is in no store (an ``EXTRACTOR.STREAM`` that no store
            holds is kept: the coverage gate reports the tracks that lack it).
    """
    from emofeat.recipes import RecipeError

    stored = index.extractors
    where = ", ".join(str(s.path) for s in index.stores) or "the stores (none exists yet)"
    registered = get_extractors()
    out: dict[str, list[StreamRef]] = {}
    for modality in ("video", "audio"):
        if modality not in inputs:  # a modality no model uses
            continue
        names = list(inputs.get(modality) or [])
        if not names:
            names = [
                ex
                for ex in stored
                if ex not in NOT_FEATURES
                and ex in registered
                and registered[ex].cls.modality == modality
            ]
        refs = []
        for name in names:
            ex, _, stream = str(name).partition(".")
            if ex not in stored and not stream and ex in registered:
                stream = _declared_stream(registered[ex].cls) or ""
            if ex not in stored and stream:
                # no store holds it: every track lacks it, which the coverage gate reports
                refs.append(StreamRef(ex, stream, modality))
                continue
            if ex not in stored:
                raise RecipeError(
                    f"inputs.{modality}: no {ex!r} items in {where} "
                    f"(stored extractors: {', '.join(stored) or 'none'})"
                )
            stream = stream or _pick_stream(index, ex) or ""
            if stream not in index.streams(ex):
                raise RecipeError(
                    f"inputs.{modality}: {ex!r} items in {where} have no stream {stream!r} "
                    f"(they have: {', '.join(index.streams(ex))})"
                )
            refs.append(StreamRef(ex, stream, modality))
        if refs:
            out[modality] = refs
    if not out:
        raise RecipeError(
            f"{where}: no usable feature streams (stored: {', '.join(stored) or 'none'}); "
            "set inputs.video / inputs.audio"
        )
    return out


@dataclass
class TrackData:
    """One track's inputs and labels at the target rate.

    Attributes:
        track: the Aff-Wild2 track.
        n_frames: label frames of the track (predictions are needed for all of them).
        index: 0-based label frames kept by resampling, shape ``(m,)``.
        x: modality -> features ``(m, D)`` (invalid rows hold 0).
        mask: modality -> ``(m,)`` True where the features are valid.
        y: labels at ``index``: VA ``(m, 2)`` float, EXPR ``(m,)`` int (``None`` for test).
        y_valid: ``(m,)`` label validity.
        labels: the full-rate labels (``None`` for test tracks).
        missing: stream ids with no stored item for this track.
    """

    track: Track
    n_frames: int
    fps: float
    index: np.ndarray
    x: dict[str, np.ndarray]
    mask: dict[str, np.ndarray]
    y: np.ndarray | None = None
    y_valid: np.ndarray | None = None
    labels: Labels | None = None
    missing: list[str] = field(default_factory=list)


def load_track(
    ds: AffWild2,
    index: FeatureIndex,
    track: Track,
    refs: dict[str, list[StreamRef]],
    target_fps: float,
    n_frames: int | None = None,
) -> TrackData:
    """Read one track's streams and labels, resampled to ``target_fps``."""
    labels = None
    if track.annotation is not None:
        labels = ds.labels(track)
        n = len(labels.values)
    else:
        n = int(n_frames or ds.frame_count(track) or 0)
    fps = float(ds.fps(track, default=30.0))
    idx = resample_indices(n, fps, target_fps)
    x: dict[str, np.ndarray] = {}
    mask: dict[str, np.ndarray] = {}
    missing: list[str] = []
    for modality, rs in refs.items():
        parts = []
        valid = np.ones(len(idx), dtype=bool)
        for ref in rs:
            item = index.lookup(track, ref.extractor, ref.stream, ref.modality)
            if item is None:
                missing.append(ref.id)
                parts.append(None)
                valid[:] = False
                continue
            sd = item.store.read(item.key, ref.extractor, ref.stream, aligned=True)
            data = np.asarray(sd.data, dtype=np.float32)
            m = np.asarray(sd.mask, dtype=bool)
            # label length and video length may differ by a frame or two: frames past the
            # item's end are invalid (the post-processing fills their predictions)
            inside = idx < len(data)
            take = np.where(inside, idx, 0)
            d = data[take] if len(data) else np.zeros((len(idx), data.shape[1]), np.float32)
            ok = inside & (m[take] if len(m) else False) & np.isfinite(d).all(axis=1)
            d = np.where(ok[:, None], d, 0.0).astype(np.float32)
            parts.append(d)
            valid &= ok
        dims = [p.shape[1] for p in parts if p is not None]
        if len(dims) < len(parts):
            # a stream is missing for this track: its columns are zeros and the rows invalid
            widths = [_stream_width(index, r) for r in rs]
            parts = [
                p if p is not None else np.zeros((len(idx), w), np.float32)
                for p, w in zip(parts, widths, strict=True)
            ]
        x[modality] = np.concatenate(parts, axis=1) if parts else np.zeros((len(idx), 0))
        mask[modality] = valid
    td = TrackData(track, n, fps, idx, x, mask, labels=labels, missing=missing)
    if labels is not None:
        td.y = labels.values[idx]
        td.y_valid = labels.valid[idx]
    return td


def _stream_width(index: FeatureIndex, ref: StreamRef) -> int:
    for item in index.items(ref.extractor):
        if ref.stream in item.streams:
            return len(item.store.read(item.key, ref.extractor, ref.stream).labels)
    return 0


def load_split(
    ds: AffWild2,
    index: FeatureIndex,
    tracks: list[Track],
    refs: dict[str, list[StreamRef]],
    target_fps: float,
    log: logging.Logger | None = None,
    n_frames: dict[str, int] | None = None,
) -> list[TrackData]:
    """:func:`load_track` for every track; tracks lacking a stream are reported in ``log``."""
    out = []
    for t in tracks:
        td = load_track(ds, index, t, refs, target_fps, (n_frames or {}).get(t.name))
        if td.missing and log is not None:
            log.warning("track %s: no stored features for %s", t.name, ", ".join(td.missing))
        out.append(td)
    return out


def coverage(
    index: FeatureIndex,
    splits: dict[str, list[Track]],
    refs: dict[str, list[StreamRef]],
    frames: dict[str, int],
) -> dict[str, dict[str, Any]]:
    """Per split: tracks and labelled frames, and how many have every configured input.

    Args:
        index: the stores' items.
        splits: split name -> tracks.
        refs: the resolved inputs.
        frames: track name -> its labelled frames (valid label lines; test: template rows).

    Returns:
        split -> ``{"tracks", "frames", "tracks_covered", "frames_covered", "coverage",
        "missing": {track: [stream ids]}}``; ``coverage`` is the fraction of labelled frames
        whose track has every input (1.0 for a split without frames).
    """
    out: dict[str, dict[str, Any]] = {}
    for split, tracks in splits.items():
        missing: dict[str, list[str]] = {}
        total = covered = 0
        for t in tracks:
            n = int(frames.get(t.name, 0))
            total += n
            lack = [
                r.id
                for rs in refs.values()
                for r in rs
                if index.lookup(t, r.extractor, r.stream, r.modality) is None
            ]
            if lack:
                missing[t.name] = lack
            else:
                covered += n
        out[split] = {
            "tracks": len(tracks),
            "frames": total,
            "tracks_covered": len(tracks) - len(missing),
            "frames_covered": covered,
            "coverage": covered / total if total else 1.0,
            "missing": missing,
        }
    return out


def normalise(train: list[TrackData], others: list[list[TrackData]], kind: str) -> dict[str, Any]:
    """Fit the normaliser on the train tracks and apply it in place to every track."""
    fitted: dict[str, Any] = {}
    modalities = {m for td in train for m in td.x}
    for modality in sorted(modalities):
        norm = fit_normaliser(
            [td.x[modality] for td in train], [td.mask[modality] for td in train], kind=kind
        )
        fitted[modality] = norm
        for group in [train, *others]:
            for td in group:
                if modality in td.x:
                    td.x[modality] = np.where(
                        td.mask[modality][:, None], norm.apply(td.x[modality], td.mask[modality]), 0
                    ).astype(np.float32)
    return fitted


class WindowSet:
    """Training windows over many tracks without copying the frames into windows.

    All tracks' frames are concatenated once per modality; a batch gathers its windows with
    one fancy index, so an epoch costs one gather per batch (see benchmarks/bench_recipes.py).

    Args:
        tracks: the tracks (their ``x``, ``mask``, ``y``, ``y_valid``).
        length: window length in frames (at the target rate).
        hop: hop in frames.
        task: ``"VA"`` or ``"EXPR"``.
    """

    def __init__(self, tracks: list[TrackData], length: int, hop: int, task: str) -> None:
        self.length = length
        self.task = task
        self.modalities = sorted({m for td in tracks for m in td.x})
        offsets = np.cumsum([0] + [len(td.index) for td in tracks])
        self.x = {m: np.concatenate([td.x[m] for td in tracks]) for m in self.modalities}
        self.mask = {m: np.concatenate([td.mask[m] for td in tracks]) for m in self.modalities}
        has_y = all(td.y is not None for td in tracks)
        if has_y:
            self.y = np.concatenate([td.y for td in tracks])
            self.y_valid = np.concatenate([td.y_valid for td in tracks])
        else:
            self.y = None
            self.y_valid = None
        starts, lengths, owner = [], [], []
        for k, td in enumerate(tracks):
            m = len(td.index)
            for a, b in make_windows(m, length, hop):
                starts.append(offsets[k] + a)
                lengths.append(min(b, m) - a)
                owner.append(k)
        self.starts = np.asarray(starts, dtype=np.int64)
        self.lengths = np.asarray(lengths, dtype=np.int64)
        self.owner = np.asarray(owner, dtype=np.int64)

    def __len__(self) -> int:
        return len(self.starts)

    def gather(self, which: np.ndarray) -> dict[str, torch.Tensor]:
        """Windows ``which`` as a batch: ``x_<modality>`` (B, L, D), ``mask`` (B, L), ``y``..."""
        steps = np.arange(self.length)
        inside = steps[None, :] < self.lengths[which][:, None]
        idx = self.starts[which][:, None] + np.minimum(
            steps[None, :], self.lengths[which][:, None] - 1
        )
        batch: dict[str, torch.Tensor] = {"frame_valid": torch.from_numpy(inside)}
        for m in self.modalities:
            batch[f"x_{m}"] = torch.from_numpy(self.x[m][idx])
            batch[f"mask_{m}"] = torch.from_numpy(self.mask[m][idx] & inside)
        if self.y is not None:
            batch["y"] = torch.from_numpy(self.y[idx])
            batch["y_valid"] = torch.from_numpy(self.y_valid[idx] & inside)
        return batch

    def batches(
        self, batch_size: int, shuffle: bool, generator: np.random.Generator | None = None
    ) -> Iterator[dict[str, torch.Tensor]]:
        """Batches over every window once (shuffled with ``generator`` if asked)."""
        order = np.arange(len(self))
        if shuffle:
            (generator or np.random.default_rng(0)).shuffle(order)
        for a in range(0, len(order), batch_size):
            yield self.gather(order[a : a + batch_size])


class EpochLoader:
    """Shuffled batches of a :class:`WindowSet`, drawn with a seeded ``torch.Generator``.

    The Trainer saves and restores ``generator`` in its checkpoints, so a resumed run sees
    the same batches as an uninterrupted one.
    """

    def __init__(self, windows: WindowSet, batch_size: int, seed: int) -> None:
        self.windows = windows
        self.batch_size = batch_size
        self.generator = torch.Generator().manual_seed(seed)

    def __iter__(self) -> Iterator[dict[str, torch.Tensor]]:
        order = torch.randperm(len(self.windows), generator=self.generator).numpy()
        for a in range(0, len(order), self.batch_size):
            yield self.windows.gather(order[a : a + self.batch_size])

    def __len__(self) -> int:
        return (len(self.windows) + self.batch_size - 1) // self.batch_size
