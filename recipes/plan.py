"""What a recipe run needs extracted, and extracting it: ``recipe run --data ROOT`` alone.

The plan looks, for every track of the task (train, validation and test), for each configured
input stream in the stores through the join by identity
(:class:`emofeat.datasets.join.FeatureIndex`). What is missing becomes work for the engine:

* video (face) inputs run ``extract.video`` on the track's crop folder, or on its raw video
  when the reader found no crop folder (the face stage picks the person);
* audio inputs run ``extract.audio`` on the track's raw video.

Each step is one :func:`emofeat.extract` call into the run's store (resumable: a killed run
keeps every committed item and the next run does the rest). The plan is printed first with a
rough time from measured speeds (``MEASURED_SPEED``).
"""

from __future__ import annotations

import hashlib
import json
import logging
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import emofeat
from emofeat.datasets.affwild2 import AffWild2, Track
from emofeat.datasets.join import FeatureIndex, face_subject

#: Single-thread CPU speeds measured on a 2-core x86-64 machine (docs/benchmarks.md): video
#: extractors in frames per second on face crops, audio and features extractors in multiples
#: of real time. ``faces`` is the face stage that runs on raw videos only.
MEASURED_SPEED: dict[str, tuple[str, float]] = {
    "face_expr": ("fps", 165.0),
    "face_cnn": ("fps", 15.0),
    "vit": ("fps", 2.3),
    "mouth": ("fps", 100.0),
    "faces": ("fps", 97.0),
    "egemaps": ("realtime", 57.0),
    "compare": ("realtime", 5.0),
    "functionals": ("realtime", 365.0),
    "pdem": ("realtime", 1.6),
    "vad": ("realtime", 60.0),
}


@dataclass
class PlanStep:
    """One engine run: extractors over inputs of one kind, for one modality."""

    modality: str
    extractors: list[str]
    settings: dict[str, dict[str, Any]]
    inputs: list[Path]
    tracks: list[str]
    crop_folders: int = 0
    videos: int = 0
    frames: int = 0
    video_frames: int = 0  # of which in raw videos (the face stage runs on those)
    seconds: float = 0.0  # media duration of the inputs, seconds

    def estimate(self) -> float | None:
        """Rough wall time in seconds (None when an extractor's speed is unknown)."""
        total = 0.0
        names = list(self.extractors)
        if self.modality == "video" and self.videos:
            names.append("faces")
        for name in names:
            speed = MEASURED_SPEED.get(name)
            if speed is None:
                return None
            unit, value = speed
            if name == "faces":
                total += self.video_frames / value
            elif unit == "fps":
                total += self.frames / value
            else:
                total += self.seconds / value
        return total


@dataclass
class Plan:
    """What is missing and how it will be extracted."""

    store: Path
    steps: list[PlanStep] = field(default_factory=list)
    unplannable: dict[str, str] = field(default_factory=dict)  # track -> why

    @property
    def empty(self) -> bool:
        return not any(s.inputs for s in self.steps)

    def describe(self) -> list[str]:
        """Lines for the console and the run log."""
        if self.empty and not self.unplannable:
            return ["extraction plan: every input is stored, nothing to extract"]
        lines = [f"extraction plan into {self.store}:"]
        for s in self.steps:
            if not s.inputs:
                continue
            kinds = []
            if s.crop_folders:
                kinds.append(f"{s.crop_folders} crop folders")
            if s.videos:
                kinds.append(f"{s.videos} videos")
            est = s.estimate()
            when = f", about {_duration(est)} on one CPU thread" if est is not None else ""
            lines.append(
                f"  {s.modality}: {' + '.join(s.extractors)} on {', '.join(kinds)} "
                f"({s.frames:,} frames, {s.seconds / 60:.1f} min of media) for "
                f"{len(s.tracks)} tracks{when}"
            )
        for name, why in list(self.unplannable.items())[:5]:
            lines.append(f"  cannot plan {name}: {why}")
        if len(self.unplannable) > 5:
            lines.append(
                f"  ... and {len(self.unplannable) - 5} more tracks that cannot be planned"
            )
        return lines


def _duration(seconds: float) -> str:
    if seconds < 90:
        return f"{seconds:.0f} s"
    if seconds < 5400:
        return f"{seconds / 60:.0f} min"
    return f"{seconds / 3600:.1f} h"


def default_store(out: Path, root: str | Path, extract_cfg: dict[str, Any]) -> Path:
    """``<out>/features/<root name>-<hash>.h5``: one store per corpus copy and extractor set.

    The hash covers the root's absolute path and the ``extract`` section's extractors and
    settings, so abaw_va and abaw_expr with the same defaults share a store, and changed
    extractor settings start a new one instead of mixing items made two ways.
    """
    root = Path(root).expanduser().resolve()
    what = {k: extract_cfg.get(k) for k in ("video", "audio", "settings")}
    digest = hashlib.sha256(
        json.dumps([str(root), what], sort_keys=True, default=str).encode()
    ).hexdigest()[:10]
    return Path(out) / "features" / f"{root.name or 'root'}-{digest}.h5"


def split_ref(name: str) -> tuple[str, str | None]:
    """``"functionals.egemaps.lld"`` -> ``("functionals", "egemaps.lld")``; bare -> stream None."""
    ex, _, stream = str(name).partition(".")
    return ex, stream or None


def _media(track: Track, source: Path, ds: AffWild2, is_folder: bool) -> tuple[int, float]:
    """Frames and seconds of one input (crop images counted; videos probed, not decoded)."""
    if is_folder:
        n = len(ds.crop_frames(track))
        return n, n / 30.0
    n = ds.frame_count(track) or 0
    fps = ds.fps(track, default=30.0)
    return n, n / fps if fps else 0.0


def build_plan(
    ds: AffWild2,
    index: FeatureIndex,
    tracks: list[Track],
    inputs: dict[str, list[str]],
    extract_cfg: dict[str, Any],
    store: Path,
) -> Plan:
    """What to extract so that every track has every configured input."""
    plan = Plan(store=Path(store))
    settings_all = {k: dict(v or {}) for k, v in (extract_cfg.get("settings") or {}).items()}
    for modality in ("video", "audio"):
        refs = [split_ref(n) for n in inputs.get(modality) or []]
        if not refs:
            continue
        extractors = list(extract_cfg.get(modality) or [])
        step = PlanStep(
            modality=modality,
            extractors=extractors,
            settings={k: v for k, v in settings_all.items() if k in extractors},
            inputs=[],
            tracks=[],
        )
        seen: set[Path] = set()
        for track in tracks:
            missing = [
                (ex, st)
                for ex, st in refs
                if index.lookup(track, ex, st, modality) is None  # type: ignore[arg-type]
            ]
            if not missing:
                continue
            unknown = [ex for ex, _ in missing if ex not in extractors]
            if unknown:
                plan.unplannable[track.name] = (
                    f"extract.{modality} does not list {', '.join(sorted(set(unknown)))}, "
                    "which the inputs name"
                )
                continue
            if modality == "video" and track.crops is not None:
                source, is_folder = track.crops, True
            elif track.video is None:
                plan.unplannable[track.name] = (
                    f"no raw video {'or crop folder ' if modality == 'video' else ''}found "
                    f"below {ds.root}"
                )
                continue
            elif modality == "video" and face_subject(track):
                plan.unplannable[track.name] = (
                    f"two-person video {track.video.name} without a crop folder: extract the "
                    f"{face_subject(track)} person into a store of its own (emofeat extract "
                    f"-p {' -p '.join(extractors)} --set faces.subject={face_subject(track)} "
                    f"{track.video}) and pass it with --features"
                )
                continue
            else:
                source, is_folder = track.video, False
            step.tracks.append(track.name)
            if source in seen:
                continue
            seen.add(source)
            step.inputs.append(source)
            frames, seconds = _media(track, source, ds, is_folder)
            step.frames += frames
            step.seconds += seconds
            if is_folder:
                step.crop_folders += 1
            else:
                step.videos += 1
                step.video_frames += frames
        plan.steps.append(step)
    return plan


def run_plan(
    plan: Plan,
    log: logging.Logger,
    device: str = "cpu",
    workers: int = 1,
    threads: int | None = 1,
    progress: bool = True,
) -> list[str]:
    """Extract every step of ``plan`` into its store; returns the failures (input: message).

    A failed input does not stop the others; what was committed stays in the store.
    """
    failures: list[str] = []
    plan.store.parent.mkdir(parents=True, exist_ok=True)
    for step in plan.steps:
        if not step.inputs:
            continue
        log.info(
            "extracting %s (%s) from %d inputs into %s",
            step.modality,
            ", ".join(step.extractors),
            len(step.inputs),
            plan.store,
        )
        summary = emofeat.extract(
            step.inputs,
            step.extractors,
            plan.store,
            settings=step.settings,
            workers=workers,
            device=device,
            recursive=False,
            threads=threads,
            progress=progress,
            command=f"emofeat recipe run (plan: {step.modality} {' '.join(step.extractors)})",
        )
        for res in summary.results:
            if res.status == "failed":
                failures.append(f"{res.input}: {res.message}")
            for o in res.outcomes:
                if o.status == "failed" and res.status != "failed":
                    failures.append(f"{res.input} ({o.extractor}): {o.message}")
        failures.extend(f"{a}: {m}" for a, m in summary.problems)
        log.info(
            "extraction (%s): %d done, %d unchanged, %d skipped, %d failed in %.1f s",
            step.modality,
            summary.count("done"),
            summary.count("unchanged"),
            summary.count("skipped"),
            summary.count("failed"),
            summary.seconds,
        )
    return failures
