"""What a recipe run needs extracted, and extracting it: ``recipe run --data ROOT`` alone.

The plan looks, for every track of the task (train, validation and test), for each configured
input stream in the stores through the join by identity
(:class:`emofeat_recipes.datasets.join.FeatureIndex`). What is missing becomes work for the engine:

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
from emofeat import ALIGNMENT_RULE
from emofeat_recipes.datasets.affwild2 import AffWild2, Track
from emofeat_recipes.datasets.join import FeatureIndex, face_subject

#: Single-thread CPU speeds measured on a 2-core x86-64 machine (docs/benchmarks.md): video
#: extractors in frames per second on face crops, audio and features extractors in multiples
#: of real time. ``faces`` is the face stage that runs on raw videos only.
MEASURED_SPEED: dict[str, tuple[str, float]] = {
    "face_expr": ("fps", 165.0),
    "face_cnn": ("fps", 15.0),
    "vit": ("fps", 2.3),
    "mouth": ("fps", 100.0),
    "faces": ("fps", 22.0),  # MTCNN on 640x360 raw video, detect_every 3
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
    stale: dict[str, list[str]] = field(default_factory=dict)  # track -> extractors redone

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
                kinds.append(_count(s.crop_folders, "crop folder"))
            if s.videos:
                kinds.append(_count(s.videos, "video"))
            est = s.estimate()
            when = f", about {_duration(est)} on one CPU thread" if est is not None else ""
            lines.append(
                f"  {s.modality}: {' + '.join(s.extractors)} on {', '.join(kinds)} "
                f"({s.frames:,} frames, {s.seconds / 60:.1f} min of media) for "
                f"{_count(len(s.tracks), 'track')}{when}"
            )
        if self.stale:
            lines.append(
                f"  ({_count(len(self.stale), 'track')} with items made under an older "
                f"alignment rule than {ALIGNMENT_RULE} or with other settings: redone, "
                "unless extraction is off)"
            )
        for name, why in list(self.unplannable.items())[:5]:
            lines.append(f"  cannot plan {name}: {why}")
        if len(self.unplannable) > 5:
            lines.append(
                f"  ... and {len(self.unplannable) - 5} more tracks that cannot be planned"
            )
        return lines


def _count(n: int, what: str) -> str:
    return f"{n} {what}{'' if n == 1 else 's'}"


def _duration(seconds: float) -> str:
    if seconds < 90:
        return f"{seconds:.0f} s"
    if seconds < 5400:
        return f"{seconds / 60:.0f} min"
    return f"{seconds / 3600:.1f} h"


def default_store(out: Path, root: str | Path) -> Path:
    """``<out>/features/<root name>-<hash>.h5``: one store per corpus copy.

    The hash is of the root's absolute path. abaw_va and abaw_expr, and their named configs,
    share the store: items of other extractors sit side by side, and an item made with other
    settings than a config asks for is redone (see :func:`build_plan`).
    """
    root = Path(root).expanduser().resolve()
    digest = hashlib.sha256(str(root).encode()).hexdigest()[:10]
    return Path(out) / "features" / f"{root.name or 'root'}-{digest}.h5"


def split_ref(name: str) -> tuple[str, str | None]:
    """``"functionals.egemaps.lld"`` -> ``("functionals", "egemaps.lld")``; bare -> stream None."""
    ex, _, stream = str(name).partition(".")
    return ex, stream or None


def _media(track: Track, source: Path, ds: AffWild2, is_folder: bool) -> tuple[int, float]:
    """Frames and seconds of one input (crop images counted; videos probed, not decoded).

    A video that cannot be read counts as empty here: the extraction reports it, with
    the others carrying on, and the coverage gate counts the track as missing.
    """
    if is_folder:
        n = len(ds.crop_frames(track))
        return n, n / 30.0
    try:
        n = ds.frame_count(track) or 0
    except emofeat.EmofeatError:
        return 0, 0.0
    fps = ds.fps(track, default=30.0)
    return n, n / fps if fps else 0.0


def _cli_value(value: Any) -> str:
    """A setting as ``--set`` takes it (``false``, ``mean,std``)."""
    if isinstance(value, bool):
        return "true" if value else "false"
    if isinstance(value, (list, tuple)):
        return ",".join(_cli_value(v) for v in value)
    return str(value)


def extract_command(
    extractors: list[str], settings: dict[str, dict[str, Any]], inputs: list[Path], store: Path
) -> str:
    """The ``emofeat extract`` command line that runs one step by hand."""
    parts = ["emofeat extract", *(f"-p {ex}" for ex in extractors)]
    parts += [
        f"--set {ex}.{k}={_cli_value(v)}" for ex, kv in settings.items() for k, v in kv.items()
    ]
    shown = [str(p) for p in inputs[:2]]
    if len(inputs) > 2:
        shown.append(f"... ({len(inputs)} inputs)")
    return " ".join([*parts, *shown, f"-o {store}"])


def _step_jobs(extractors: list[str], settings: dict[str, dict[str, Any]]) -> dict[str, Any]:
    """The step's configured jobs (settings checked now, before anything runs).

    ``settings`` may name any extractor: those of the step and of the extractors they bring
    along (the face stage) are used, the others are left for the other modality's step.
    """
    if not extractors:
        return {}
    jobs = emofeat.build_jobs(extractors, settings=settings, unused_settings="ignore")
    return {j.name: j for j in jobs}


def _same_settings(item_settings: dict[str, Any], job_config: dict[str, Any]) -> bool:
    # both sides as JSON values: tuples and lists, ints and floats compare as stored
    a = json.loads(json.dumps(item_settings, sort_keys=True, default=str))
    b = json.loads(json.dumps(job_config, sort_keys=True, default=str))
    return a == b


def build_plan(
    ds: AffWild2,
    index: FeatureIndex,
    tracks: list[Track],
    inputs: dict[str, list[str]],
    extract_cfg: dict[str, Any],
    store: Path,
) -> Plan:
    """What to extract so that every track has every configured input.

    A stored item counts as missing when it was aligned under an older alignment rule, or
    made with other settings than ``extract.settings`` give (or another extractor version):
    extracting it again into ``store`` gives the item the config asks for, which the join
    prefers (the newest item of a source).

    Raises:
        ConfigError, UnknownExtractorError: bad extractor names or settings in ``extract``.
    """
    plan = Plan(store=Path(store))
    settings_all = {k: dict(v or {}) for k, v in (extract_cfg.get("settings") or {}).items()}
    for modality in ("video", "audio"):
        refs = [split_ref(n) for n in inputs.get(modality) or []]
        if not refs:
            continue
        extractors = list(extract_cfg.get(modality) or [])
        jobs = _step_jobs(extractors, settings_all)
        settings = {k: v for k, v in settings_all.items() if k in jobs}
        step = PlanStep(
            modality=modality, extractors=extractors, settings=settings, inputs=[], tracks=[]
        )
        seen: set[Path] = set()
        for track in tracks:
            missing = []
            for ex, st in refs:
                item = index.lookup(track, ex, st, modality)
                if item is not None and item.attrs.get("alignment") != ALIGNMENT_RULE:
                    plan.stale.setdefault(track.name, []).append(f"{ex} (alignment rule)")
                    item = None
                job = jobs.get(ex)
                if item is not None and job is not None:
                    version = (item.attrs.get("config") or {}).get("version")
                    if str(version) != str(job.cls.version) or not _same_settings(
                        item.settings, job.config
                    ):
                        plan.stale.setdefault(track.name, []).append(f"{ex} (settings)")
                        item = None
                if item is None:
                    missing.append((ex, st))
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
                side = face_subject(track)
                own = Path(store).with_name(f"{Path(store).stem}-{side}.h5")
                side_settings = {
                    **settings,
                    "faces": {**settings.get("faces", {}), "subject": side},
                }
                plan.unplannable[track.name] = (
                    f"two-person video {track.video.name} without a crop folder: a store holds "
                    f"one face per video, so extract the {side} person into a store of its "
                    f"own ({extract_command(extractors, side_settings, [track.video], own)}) "
                    f"and give both stores: --features {store} --features {own}"
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
