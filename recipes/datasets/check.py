"""``emofeat datasets check``: what a user runs before days of extraction.

Per track: label lines, frames on the engine's frame grid (containers are probed by
demuxing, never decoded), crop images found and the frames without one, the stored items
that the join by identity gives the track (with their frame counts), and every mismatch
between them. Problems come in two levels:

* **errors** (exit status 1): an unreadable or malformed annotation file; a track with
  neither raw video nor crop folder; label lines and video frames that differ by more than
  :data:`~emofeat_recipes.datasets.affwild2.LENGTH_TOLERANCE` frames; crop images numbered past the
  last label line (more than the tolerance); a stored raw-video item whose frame count
  differs from the video's grid (made from another copy or an older file); a stored
  crop-folder item whose frame count differs from the label lines by more than the
  tolerance; two stored items claiming one track
  (:class:`~emofeat_recipes.datasets.join.JoinError`);
* **warnings**: label lines and video frames differing by one or two frames (the recipes
  repair that), the reader's own notes (a video found twice, a crop folder found twice).
"""

from __future__ import annotations

from dataclasses import dataclass, field
from typing import Any

from emofeat_recipes.datasets.affwild2 import (
    LENGTH_TOLERANCE,
    SPLITS,
    AffWild2,
    AnnotationError,
    DatasetError,
    Track,
)
from emofeat_recipes.datasets.join import FeatureIndex, JoinError


@dataclass
class TrackCheck:
    """What was found for one track, and what is wrong with it."""

    name: str
    task: str
    split: str
    label_lines: int | None = None
    valid_labels: int | None = None
    video: str | None = None
    video_frames: int | None = None
    fps: float | None = None
    crops: str | None = None
    crop_images: int = 0
    crop_gaps: int = 0  # label frames without a crop image (no face found there)
    items: list[dict[str, Any]] = field(default_factory=list)
    errors: list[str] = field(default_factory=list)
    warnings: list[str] = field(default_factory=list)

    def as_dict(self) -> dict[str, Any]:
        return dict(self.__dict__)


@dataclass
class CheckReport:
    """Every track's check and a summary (``ok`` is False when any error was found)."""

    root: str
    tracks: list[TrackCheck]
    warnings: list[str]

    @property
    def errors(self) -> int:
        return sum(len(t.errors) for t in self.tracks)

    @property
    def ok(self) -> bool:
        return self.errors == 0

    def summary(self) -> dict[str, Any]:
        per: dict[str, dict[str, int]] = {}
        for t in self.tracks:
            key = f"{t.task}/{t.split}"
            d = per.setdefault(
                key,
                {"tracks": 0, "label_frames": 0, "with_errors": 0, "with_warnings": 0},
            )
            d["tracks"] += 1
            d["label_frames"] += t.valid_labels or 0
            d["with_errors"] += bool(t.errors)
            d["with_warnings"] += bool(t.warnings)
        return {
            "root": self.root,
            "splits": per,
            "errors": self.errors,
            "warnings": sum(len(t.warnings) for t in self.tracks) + len(self.warnings),
            "dataset_warnings": list(self.warnings),
        }

    def as_dict(self) -> dict[str, Any]:
        return {"summary": self.summary(), "tracks": [t.as_dict() for t in self.tracks]}


def _check_track(ds: AffWild2, track: Track, index: FeatureIndex | None, rows: int) -> TrackCheck:
    tc = TrackCheck(track.name, track.task, track.split)
    if track.annotation is not None:
        try:
            labels = ds.labels(track)
            tc.label_lines = len(labels)
            tc.valid_labels = int(labels.valid.sum())
        except AnnotationError as exc:
            tc.errors.append(str(exc))
    elif rows:
        tc.label_lines = tc.valid_labels = rows  # test track: the template's rows
    if track.video is not None:
        tc.video = str(track.video)
        try:
            tc.video_frames = ds.frame_count(track)
            tc.fps = ds.fps(track, default=0.0) or None
        except (DatasetError, OSError, ValueError) as exc:
            tc.errors.append(f"{track.video}: cannot be probed ({exc})")
        except Exception as exc:  # FFmpeg errors (av.error.*) name the file themselves
            tc.errors.append(f"{track.video}: cannot be probed ({type(exc).__name__}: {exc})")
    if track.crops is not None:
        tc.crops = str(track.crops)
        numbers = ds.crop_frames(track)
        tc.crop_images = len(numbers)
        if tc.label_lines:
            inside = numbers[numbers <= tc.label_lines]
            tc.crop_gaps = tc.label_lines - len(set(inside.tolist()))
            past = int((numbers > tc.label_lines + LENGTH_TOLERANCE).sum())
            if past:
                tc.errors.append(
                    f"{track.crops}: {past} crop images numbered past the last label line "
                    f"({tc.label_lines}; highest image {int(numbers[-1]):05d})"
                )
    if track.video is None and track.crops is None:
        tc.errors.append(f"no raw video and no crop folder found below {ds.root}")
    if tc.label_lines and tc.video_frames:
        diff = tc.label_lines - tc.video_frames
        if abs(diff) > LENGTH_TOLERANCE:
            tc.errors.append(
                f"{tc.label_lines} label lines for {tc.video_frames} video frames "
                f"({track.annotation or 'template'} vs {track.video})"
            )
        elif diff:
            tc.warnings.append(
                f"{tc.label_lines} label lines for {tc.video_frames} video frames "
                "(repaired: truncated or last label repeated)"
            )
    if index is not None:
        _check_items(tc, track, index)
    return tc


def _check_items(tc: TrackCheck, track: Track, index: FeatureIndex) -> None:
    for ex in index.extractors:
        # the track's face item (crop folder first) or, failing that, its video's item
        try:
            item = index.lookup(track, ex, None, "video") or index.lookup(track, ex, None, "audio")
        except JoinError as exc:
            tc.errors.append(str(exc))
            continue
        if item is None:
            continue
        kind = "crops" if item.kind == "images" else "video"
        tc.items.append(
            {
                "extractor": ex,
                "from": kind,
                "frames": item.n_frames,
                "store": str(item.store.path),
                "key": item.key,
                "source": str(item.source),
            }
        )
        if kind == "video" and tc.video_frames and item.n_frames != tc.video_frames:
            tc.errors.append(
                f"stored {ex} item ({item.store.path}, key {item.key!r}) has "
                f"{item.n_frames} frames, the video {track.video} has {tc.video_frames}: made "
                "from another copy or an older file (redo it with emofeat extract --overwrite)"
            )
        if kind == "crops" and tc.label_lines:
            if abs(item.n_frames - tc.label_lines) > LENGTH_TOLERANCE:
                tc.errors.append(
                    f"stored {ex} item from {item.source} has {item.n_frames} frames for "
                    f"{tc.label_lines} label lines"
                )


def check_dataset(ds: AffWild2, index: FeatureIndex | None = None) -> CheckReport:
    """Check every track of every task and split of ``ds`` (and its stored items)."""
    tracks: list[TrackCheck] = []
    for task in ds.tasks:
        rows: dict[str, int] = {}
        for split in SPLITS:
            try:
                found = ds.tracks(task, split)
            except DatasetError as exc:
                ds.warnings.append(f"{task} {split}: {exc}")
                continue
            if split == "test" and found:
                try:
                    for name, frame in ds.test_rows(task):
                        rows[name] = max(rows.get(name, 0), frame)
                except DatasetError as exc:
                    ds.warnings.append(f"{task} test: {exc}")
            for t in found:
                tracks.append(_check_track(ds, t, index, rows.get(t.name, 0)))
    return CheckReport(str(ds.root), tracks, list(ds.warnings))
