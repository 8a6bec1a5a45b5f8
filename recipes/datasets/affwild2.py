"""Aff-Wild2 as users have it (ABAW 5/6/8 releases): annotations, raw videos, crops, test sets.

The corpus is licensed and never shipped; :class:`AffWild2` reads a user's copy in whatever
layout it was unpacked (docs/affwild2.md lists every variant):

* annotation root ``<prefix>_ABAW_Annotations`` (any prefix, spaces or underscores, or just
  ``annotations``) holding task folders ``VA_Estimation_Challenge``,
  ``EXPR_Recognition_Challenge`` / ``EXPR_Classification_Challenge`` (or the older ``VA_Set``,
  ``EXPR_Set``), each with ``Train_Set`` / ``Validation_Set`` (and optionally ``Test_Set``);
* one label file per *track* ``<track>.txt``: line k after the header is video frame k
  (1-based) and crop image ``cropped_aligned/<track>/<k:05d>.jpg``;
* raw videos (``.mp4``, ``.avi``, ...) anywhere below the root, e.g. ``batch1/``, ``batch2/``;
  two-person videos have tracks ``<video>_left`` / ``<video>_right`` sharing one file, and three
  irregular videos pair an unsuffixed track with one suffixed track;
* ``cropped_aligned*`` folders at any depth (``cropped_aligned/<track>``, the ABAW6 nesting
  ``cropped_aligned/cropped_aligned/<track>`` and ``cropped_aligned/cropped_aligned_new_50_vids/
  <track>``, ``batch1/cropped_aligned``, ...) with one folder per track and gaps where no face
  was found (unaligned ``cropped/`` folders are not used);
* test-set track lists (one name per line) and submission templates (header
  ``image_location,...`` then ``<track>/<NNNNN>.jpg`` rows).

Invalid frames (-5 in VA, -1 in EXPR) are kept in place and reported through a mask.
"""

from __future__ import annotations

import os
import re
import warnings
from collections.abc import Iterator
from dataclasses import dataclass
from pathlib import Path

import numpy as np

from emofeat import VIDEO_SUFFIXES, EmofeatError, MediaError, MediaInfo, demux_grid, probe

VA_LABELS: tuple[str, ...] = ("valence", "arousal")
EXPR_LABELS: tuple[str, ...] = (
    "Neutral",
    "Anger",
    "Disgust",
    "Fear",
    "Happiness",
    "Sadness",
    "Surprise",
    "Other",
)
TASKS: tuple[str, ...] = ("VA", "EXPR")
SPLITS: tuple[str, ...] = ("train", "validation", "test")
VA_INVALID = -5.0
EXPR_INVALID = -1
#: the three irregular two-person videos: one unsuffixed track plus one suffixed track
IRREGULAR_PAIRS: dict[str, str] = {
    "10-60-1280x720": "right",
    "video59": "right",
    "video2": "left",
}
#: label length may differ from the video's frame count by this many frames without a warning
LENGTH_TOLERANCE = 2

_SUBJECT = re.compile(r"^(?P<video>.+)_(?P<subject>left|right)$")
_FRAME_IMAGE = re.compile(r"^(\d+)\.(jpg|jpeg|png|bmp)$", re.IGNORECASE)
_TASK_FOLDERS: dict[str, str] = {
    "va_estimation_challenge": "VA",
    "va_set": "VA",
    "expr_recognition_challenge": "EXPR",
    "expr_classification_challenge": "EXPR",
    "expr_set": "EXPR",
}
_SPLIT_FOLDERS: dict[str, str] = {
    "train_set": "train",
    "training_set": "train",
    "train": "train",
    "validation_set": "validation",
    "val_set": "validation",
    "valid_set": "validation",
    "validation": "validation",
    "test_set": "test",
    "test": "test",
}
# the walk never descends into crop folders (hundreds of thousands of images) or these
_SKIP_DIRS = re.compile(r"^(cropped.*|\..*|__pycache__|.*\.h5\.d)$", re.IGNORECASE)
_MAX_DEPTH = 5
#: entries of a crop sub-folder looked at to decide whether it is a track folder
_PEEK = 32
#: duplicate crop tracks between two crop roots reported one by one up to this many
_DUP_DETAIL = 10


def _norm(name: str) -> str:
    """Folder name normalised for matching: lower case, runs of spaces/hyphens -> ``_``."""
    return re.sub(r"[\s\-_]+", "_", name.strip().lower())


class DatasetError(EmofeatError):
    """A dataset folder cannot be used (no annotations, unknown task or split, missing file)."""


class AnnotationError(DatasetError, ValueError):
    """An annotation, test-list or template file is malformed.

    The message reads ``<file>, line N: <problem>``; ``path``, ``line`` and ``problem`` are also
    attributes (``line`` is 1-based, 0 when the problem concerns the whole file).
    """

    def __init__(self, path: str | os.PathLike, line: int, problem: str) -> None:
        where = f"{path}, line {line}" if line else str(path)
        super().__init__(f"{where}: {problem}")
        self.path = Path(path)
        self.line = line
        self.problem = problem


class DatasetWarning(UserWarning):
    """Something in the dataset was repaired or guessed (length mismatch, duplicate video)."""


@dataclass
class Labels:
    """Per-frame labels of one track.

    Attributes:
        values: VA: ``(n, 2)`` float32 (valence, arousal) in [-1, 1]; EXPR: ``(n,)`` int64 class
            indices into :data:`EXPR_LABELS`. Invalid frames keep their marker (-5 / -1).
        valid: ``(n,)`` bool; False where the frame is marked invalid (-5 in either VA value,
            -1 in EXPR).
        path: the annotation file.
    """

    values: np.ndarray
    valid: np.ndarray
    path: Path

    def __len__(self) -> int:
        return len(self.values)


@dataclass
class Track:
    """One annotated (or test) sequence: a video, or one subject of a two-person video.

    Attributes:
        name: the track name, as used by annotation files, crop folders and submissions.
        task: ``"VA"`` or ``"EXPR"``.
        split: ``"train"``, ``"validation"`` or ``"test"``.
        annotation: the label file (None for test tracks without one).
        video: the raw video file (None when not found below the root).
        crops: the track's crop folder, e.g. ``cropped_aligned/<name>`` or
            ``cropped_aligned/cropped_aligned/<name>`` (None when absent).
        subject: ``"left"`` or ``"right"`` for two-person videos, else ``""``.
    """

    name: str
    task: str
    split: str
    annotation: Path | None = None
    video: Path | None = None
    crops: Path | None = None
    subject: str = ""

    @property
    def video_name(self) -> str:
        """Stem of the raw video, shared by ``<video>_left`` and ``<video>_right`` tracks."""
        return split_subject(self.name)[0]


def split_subject(name: str) -> tuple[str, str]:
    """``"video5_left"`` -> ``("video5", "left")``; a name without suffix -> ``(name, "")``."""
    m = _SUBJECT.match(name)
    return (m.group("video"), m.group("subject")) if m else (name, "")


def normalize_task(task: str) -> str:
    """``"va"``/``"VA"`` -> ``"VA"``; ``"expr"``/``"EXPR"``/``"expression"`` -> ``"EXPR"``."""
    t = str(task).strip().upper()
    if t in ("VA", "VALENCE_AROUSAL"):
        return "VA"
    if t in ("EXPR", "EXPRESSION", "EX"):
        return "EXPR"
    raise DatasetError(f"unknown task {task!r}: use 'VA' or 'EXPR'")


def normalize_split(split: str) -> str:
    """Accepts ``train``, ``validation`` (``val``, ``valid``, ``dev``) and ``test``."""
    s = str(split).strip().lower()
    aliases = {"val": "validation", "valid": "validation", "dev": "validation"}
    s = aliases.get(s, s)
    if s not in SPLITS:
        raise DatasetError(f"unknown split {split!r}: use one of {', '.join(SPLITS)}")
    return s


# ---------------------------------------------------------------------------------------------
# annotation files


def _read_lines(path: Path) -> list[str]:
    path = Path(path)
    if not path.is_file():
        raise AnnotationError(path, 0, "file not found")
    try:
        # utf-8-sig: files edited on Windows may start with a byte-order mark
        text = path.read_text(encoding="utf-8-sig")
    except UnicodeDecodeError as exc:
        raise AnnotationError(path, 0, f"not a UTF-8 text file ({exc})") from exc
    lines = text.splitlines()
    while lines and not lines[-1].strip():  # trailing blank lines are harmless
        lines.pop()
    if not lines:
        raise AnnotationError(path, 1, "empty file (expected a header line)")
    return lines


def _check_header(path: Path, header: str, expected: tuple[str, ...]) -> None:
    got = [c.strip().lower() for c in header.split(",")]
    if got != [e.lower() for e in expected]:
        raise AnnotationError(
            path, 1, f"wrong header {header.strip()!r} (expected {','.join(expected)!r})"
        )


def _label_lines(path: Path, header: tuple[str, ...]) -> list[str]:
    """The label lines (line 2 on) of the annotation file at ``path`` with this ``header``."""
    lines = _read_lines(path)
    _check_header(path, lines[0], header)
    if len(lines) == 1:
        raise AnnotationError(path, 2, "no label lines after the header")
    return lines[1:]


def _label_cells(path: Path, rows: list[str], count: int, what: str) -> Iterator[list[str]]:
    """Each label line's ``count`` comma-separated cells (``what`` says what they are)."""
    for i, line in enumerate(rows):
        cells = line.split(",")
        if len(cells) != count:
            raise AnnotationError(path, i + 2, f"expected {what}, got {len(cells)}: {line!r}")
        yield cells


def read_va(path: str | os.PathLike) -> Labels:
    """Read a VA annotation file (header ``valence,arousal``, one ``v,a`` line per frame).

    Values must lie in [-1, 1]; -5 marks an invalid frame (either value makes the frame
    invalid).

    Raises:
        AnnotationError: empty file, wrong header, no label lines, wrong column count,
            non-numeric or out-of-range value (message ``<file>, line N: ...``).
    """
    path = Path(path)
    rows = _label_lines(path, VA_LABELS)
    try:
        # fast path: a well-formed file parses in one go; any problem -> the checking loop
        values = np.array([line.split(",") for line in rows], dtype=np.float32)
        ok = values.ndim == 2 and values.shape[1] == 2
        ok = ok and bool((((values >= -1) & (values <= 1)) | (values == VA_INVALID)).all())
    except ValueError:
        ok = False
    if not ok:
        values = _parse_va_lines(path, rows)
    valid = ~(values == VA_INVALID).any(axis=1)
    return Labels(values=values, valid=valid, path=path)


def _parse_va_lines(path: Path, rows: list[str]) -> np.ndarray:
    values = np.empty((len(rows), 2), dtype=np.float32)
    for i, cells in enumerate(_label_cells(path, rows, 2, "2 values (valence,arousal)")):
        lineno = i + 2
        for j, cell in enumerate(cells):
            try:
                v = float(cell)
            except ValueError:
                raise AnnotationError(
                    path, lineno, f"{VA_LABELS[j]} is not a number: {cell.strip()!r}"
                ) from None
            if not (-1.0 <= v <= 1.0 or v == VA_INVALID):
                raise AnnotationError(
                    path,
                    lineno,
                    f"{VA_LABELS[j]} {cell.strip()} outside [-1, 1] "
                    "(and not the invalid marker -5)",
                )
            values[i, j] = v
    return values


def read_expr(path: str | os.PathLike) -> Labels:
    """Read an EXPR annotation file (header of the 8 class names, one class index 0-7 per line).

    -1 marks an invalid frame.

    Raises:
        AnnotationError: empty file, wrong header, no label lines, more than one value on a
            line, non-integer or out-of-range value (message ``<file>, line N: ...``).
    """
    path = Path(path)
    rows = _label_lines(path, EXPR_LABELS)
    values = np.empty(len(rows), dtype=np.int64)
    for i, cells in enumerate(_label_cells(path, rows, 1, "1 value (class index 0-7)")):
        lineno = i + 2
        cell = cells[0].strip()
        try:
            f = float(cell)
        except ValueError:
            raise AnnotationError(path, lineno, f"class is not a number: {cell!r}") from None
        if not f.is_integer():
            raise AnnotationError(path, lineno, f"class must be an integer, got {cell!r}")
        k = int(f)
        if not (0 <= k < len(EXPR_LABELS) or k == EXPR_INVALID):
            raise AnnotationError(
                path, lineno, f"class {cell} outside 0..7 (and not the invalid marker -1)"
            )
        values[i] = k
    return Labels(values=values, valid=values != EXPR_INVALID, path=path)


def read_labels(path: str | os.PathLike, task: str) -> Labels:
    """:func:`read_va` or :func:`read_expr` by task (``"VA"`` / ``"EXPR"``)."""
    return read_va(path) if normalize_task(task) == "VA" else read_expr(path)


def align_labels(labels: Labels, n_frames: int, warn: bool = True) -> Labels:
    """Fit labels to ``n_frames`` video frames: truncate, or repeat the last line.

    Aff-Wild2 label files and videos may differ by a frame or two. A difference larger than
    :data:`LENGTH_TOLERANCE` frames is repaired the same way but reported as a
    :class:`DatasetWarning` (when ``warn``).
    """
    n_frames = int(n_frames)
    if n_frames <= 0:
        raise DatasetError(f"{labels.path}: cannot align labels to {n_frames} frames")
    n = len(labels.values)
    if warn and abs(n - n_frames) > LENGTH_TOLERANCE:
        warnings.warn(
            f"{labels.path}: {n} label lines for {n_frames} video frames "
            f"({'truncated' if n > n_frames else 'last label repeated'})",
            DatasetWarning,
            stacklevel=3,
        )
    if n >= n_frames:
        return Labels(labels.values[:n_frames].copy(), labels.valid[:n_frames].copy(), labels.path)
    pad = n_frames - n
    values = np.concatenate([labels.values, np.repeat(labels.values[-1:], pad, axis=0)])
    valid = np.concatenate([labels.valid, np.repeat(labels.valid[-1:], pad)])
    return Labels(values, valid, labels.path)


# ---------------------------------------------------------------------------------------------
# test-set lists and templates


def sniff_task(header: str) -> str | None:
    """Task of a template from its header (``image_location,valence,arousal`` -> ``"VA"``)."""
    cols = [c.strip().lower() for c in header.split(",")]
    if "valence" in cols or "arousal" in cols:
        return "VA"
    if any(c in cols for c in (e.lower() for e in EXPR_LABELS)) or "expression" in cols:
        return "EXPR"
    return None


def _task_from_name(name: str) -> str | None:
    n = _norm(name)
    if re.search(r"(^|_)(va|valence|arousal)(_|$)", n) or "valence" in n:
        return "VA"
    if re.search(r"(^|_)(expr|ex|expression)(_|$)", n) or "expr" in n:
        return "EXPR"
    return None


def is_template(path: str | os.PathLike) -> bool:
    """True when the file's first line starts with ``image_location`` (a submission template)."""
    try:
        with open(path, encoding="utf-8-sig") as f:
            first = f.readline()
    except (OSError, UnicodeDecodeError):
        return False
    return first.strip().lower().startswith("image_location")


def read_test_list(path: str | os.PathLike) -> list[str]:
    """Track names of a test-set list (one per line; blank lines ignored; order kept).

    Raises:
        AnnotationError: a line holds more than a name (commas, a path) or a name repeats.
    """
    path = Path(path)
    lines = _read_lines(path)
    names: list[str] = []
    seen: dict[str, int] = {}
    for i, line in enumerate(lines):
        name = line.strip()
        if not name:
            continue
        if "," in name or "/" in name or "\\" in name:
            raise AnnotationError(
                path, i + 1, f"expected one track name per line, got {line.strip()!r}"
            )
        if name in seen:
            raise AnnotationError(path, i + 1, f"track {name!r} repeats line {seen[name]}")
        seen[name] = i + 1
        names.append(name)
    return names


def template_tracks(path: str | os.PathLike) -> list[str]:
    """Track names of a submission template in order of first appearance (reads column 1 only)."""
    path = Path(path)
    out: dict[str, None] = {}
    with open(path, encoding="utf-8-sig") as f:
        next(f, None)
        for lineno, line in enumerate(f, start=2):
            loc = line.split(",", 1)[0].strip()
            if not loc:
                continue
            track, sep, _ = loc.rpartition("/")
            if not sep:
                raise AnnotationError(
                    path, lineno, f"image_location {loc!r} is not '<track>/<NNNNN>.jpg'"
                )
            out.setdefault(track, None)
    return list(out)


# ---------------------------------------------------------------------------------------------
# the dataset


@dataclass
class _TestSource:
    path: Path
    kind: str  # "template" | "list"


class AffWild2:
    """A user's Aff-Wild2 copy: tracks per task and split, labels, videos, crops, test sets.

    Args:
        root: the folder the corpus was unpacked into (annotations, videos and crops may sit
            in any sub-folders up to a few levels deep), or the annotation root itself.

    Raises:
        DatasetError: ``root`` is missing or holds no annotation task folder.
    """

    def __init__(self, root: str | os.PathLike) -> None:
        self.root = Path(root).expanduser()
        if not self.root.is_dir():
            raise DatasetError(f"{self.root}: Aff-Wild2 root is not a folder")
        self.warnings: list[str] = []
        self._task_dirs: dict[str, Path] = {}
        self._videos: dict[str, Path] = {}
        self._crop_dirs: dict[str, Path] = {}
        self._crop_roots: list[Path] = []  # folders holding track folders, in precedence order
        self._crop_root_tracks: dict[Path, int] = {}
        self._tests: dict[str, list[_TestSource]] = {"VA": [], "EXPR": []}
        self._tracks: dict[tuple[str, str], dict[str, Path]] = {}
        self._infos: dict[Path, MediaInfo] = {}
        self._fps: dict[Path, float] = {}
        self._counts: dict[Path, int | None] = {}
        self._labels: dict[tuple[Path, str], Labels] = {}
        self._scan()
        if not self._task_dirs:
            raise DatasetError(
                f"{self.root}: no Aff-Wild2 annotations found (expected a folder such as "
                "'6th_ABAW_Annotations/VA_Estimation_Challenge/Train_Set' with <track>.txt "
                f"files, within {_MAX_DEPTH} levels)"
            )
        self._index_annotations()

    # -- discovery -------------------------------------------------------------------------

    def _scan(self) -> None:
        task_candidates: dict[str, list[Path]] = {"VA": [], "EXPR": []}
        text_files: list[Path] = []
        videos: dict[str, list[Path]] = {}
        crop_tops: list[Path] = []
        for dirpath, dirnames, filenames in os.walk(self.root):
            here = Path(dirpath)
            depth = len(here.relative_to(self.root).parts)
            keep = []
            for d in sorted(dirnames):
                nd = _norm(d)
                if nd in _TASK_FOLDERS:
                    task_candidates[_TASK_FOLDERS[nd]].append(here / d)
                    continue  # label files are listed per split, not walked
                if nd.startswith("cropped_aligned"):
                    crop_tops.append(here / d)
                if _SKIP_DIRS.match(d) or depth >= _MAX_DEPTH:
                    continue
                keep.append(d)
            dirnames[:] = keep
            for f in filenames:
                p = here / f
                suffix = p.suffix.lower()
                if suffix in VIDEO_SUFFIXES:
                    videos.setdefault(p.stem, []).append(p)
                elif suffix in (".txt", ".csv") and "test" in f.lower():
                    text_files.append(p)
        for task, cands in task_candidates.items():
            if not cands:
                continue
            # several releases unpacked side by side: take the newest (highest ABAW number)
            cands.sort(key=lambda p: (_release_number(p), str(p)))
            chosen = cands[-1]
            if len(cands) > 1:
                self.warnings.append(
                    f"{task}: several annotation folders, using {chosen} "
                    f"(ignored: {', '.join(str(c) for c in cands[:-1])})"
                )
            self._task_dirs[task] = chosen
        for stem, paths in videos.items():
            # prefer .mp4, then the shortest path, so a re-encoded copy elsewhere loses
            paths.sort(key=lambda p: (p.suffix.lower() != ".mp4", len(p.parts), str(p)))
            self._videos[stem] = paths[0]
            if len(paths) > 1:
                self.warnings.append(f"video {stem!r} found {len(paths)} times, using {paths[0]}")
        self._index_crops(crop_tops)
        for p in sorted(text_files):
            self._classify_test_file(p)

    def _index_crops(self, tops: list[Path]) -> None:
        """Track crop folders below the ``cropped_aligned*`` folders the walk met.

        A crop root's sub-folder is another crop root when it is named ``cropped_aligned*``
        or holds sub-folders and no frame image, else a track folder. Tracks are taken from
        the roots in precedence order (``cropped_aligned`` proper before the extra
        ``cropped_aligned_*`` folders, judged by the root's nearest ``cropped_aligned*``
        folder, then shallower before deeper, then path order); the
        first root holding a track wins and duplicates are reported in :attr:`warnings`.
        """
        found: dict[Path, list[tuple[str, Path]]] = {}
        pending = [(top, 0) for top in tops]
        seen: set[Path] = set()
        while pending:
            croot, level = pending.pop()
            if croot in seen:
                continue
            seen.add(croot)
            try:
                entries = sorted((e for e in os.scandir(croot) if e.is_dir()), key=lambda e: e.name)
            except OSError:
                continue
            tracks = []
            for e in entries:
                kind = _crop_child_kind(e)
                if kind == "root":
                    if level < _MAX_DEPTH:
                        pending.append((Path(e.path), level + 1))
                elif kind == "track":
                    tracks.append((e.name, Path(e.path)))
            if tracks:
                found[croot] = tracks
        self._crop_roots = sorted(found, key=self._crop_root_order)
        duplicates: dict[tuple[Path, Path], list[str]] = {}
        for croot in self._crop_roots:
            self._crop_root_tracks[croot] = len(found[croot])
            for name, folder in found[croot]:
                kept = self._crop_dirs.get(name)
                if kept is None:
                    self._crop_dirs[name] = folder
                else:
                    duplicates.setdefault((kept.parent, croot), []).append(name)
        for (first, other), names in duplicates.items():
            if len(names) <= _DUP_DETAIL:
                for name in names:
                    self.warnings.append(
                        f"crops of track {name!r} found twice: using {first / name}, "
                        f"ignoring {other / name}"
                    )
            else:
                shown = ", ".join(names[:5])
                self.warnings.append(
                    f"{len(names)} tracks have crops in both {first} and {other}: using "
                    f"{first} ({shown}, ...)"
                )

    def _crop_root_order(self, croot: Path) -> tuple:
        try:
            rel = croot.relative_to(self.root).parts
        except ValueError:
            rel = croot.parts
        # proper or extra: the nearest cropped_aligned* folder decides (croot or an ancestor)
        named = next(
            (_norm(p) for p in reversed(rel) if _norm(p).startswith("cropped_aligned")), ""
        )
        return (named != "cropped_aligned", len(rel), [p.lower() for p in rel], rel)

    def _classify_test_file(self, path: Path) -> None:
        ann_dirs = list(self._task_dirs.values())
        if any(d in path.parents for d in ann_dirs):
            return  # a label file of a track whose name contains "test"
        if is_template(path):
            with open(path, encoding="utf-8-sig") as f:
                task = sniff_task(f.readline())
            task = task or _task_from_name(path.name)
            kind = "template"
        else:
            task = _task_from_name(path.name)
            kind = "list"
        if task is None:
            self.warnings.append(f"{path}: looks like a test-set file but names no task, ignored")
            return
        self._tests[task].append(_TestSource(path, kind))

    def _index_annotations(self) -> None:
        for task, tdir in self._task_dirs.items():
            for entry in sorted(tdir.iterdir()):
                if not entry.is_dir():
                    continue
                split = _SPLIT_FOLDERS.get(_norm(entry.name))
                if split is None:
                    self.warnings.append(f"{entry}: unknown split folder, ignored")
                    continue
                files = {
                    p.stem: p
                    for p in entry.iterdir()
                    if p.is_file() and p.suffix.lower() == ".txt" and not p.name.startswith(".")
                }
                self._tracks.setdefault((task, split), {}).update(files)

    # -- tracks ----------------------------------------------------------------------------

    def _track(self, name: str, task: str, split: str, annotation: Path | None) -> Track:
        return Track(
            name=name,
            task=task,
            split=split,
            annotation=annotation,
            video=self.video_for(name),
            crops=self._crop_dirs.get(name),
            subject=split_subject(name)[1],
        )

    @property
    def tasks(self) -> list[str]:
        """Tasks with an annotation folder (``"VA"``, ``"EXPR"``)."""
        return [t for t in TASKS if t in self._task_dirs]

    def annotation_dir(self, task: str) -> Path | None:
        """The task folder in use (e.g. ``.../6th_ABAW_Annotations/VA_Estimation_Challenge``)."""
        return self._task_dirs.get(normalize_task(task))

    def tracks(self, task: str, split: str) -> list[Track]:
        """Tracks of one task and split, sorted by name.

        ``split="test"`` gives the annotation folder's ``Test_Set`` when there is one, else
        :meth:`test_tracks`.
        """
        task, split = normalize_task(task), normalize_split(split)
        files = self._tracks.get((task, split), {})
        if split == "test" and not files:
            return self.test_tracks(task)
        return [self._track(n, task, split, files[n]) for n in sorted(files)]

    def track(self, task: str, name: str) -> Track:
        """The track ``name`` of a task in whichever split holds it (test tracks included)."""
        task = normalize_task(task)
        for split in SPLITS:
            files = self._tracks.get((task, split), {})
            if name in files:
                return self._track(name, task, split, files[name])
        for t in self.test_tracks(task):
            if t.name == name:
                return t
        raise DatasetError(f"{self.root}: no {task} track named {name!r}")

    @property
    def splits(self) -> dict[str, dict[str, int]]:
        """Number of tracks per task and split, e.g. ``{"VA": {"train": 356, ...}}``."""
        out: dict[str, dict[str, int]] = {}
        for task in self.tasks:
            out[task] = {s: len(self._tracks.get((task, s), {})) for s in SPLITS[:2]}
            out[task]["test"] = len(self.tracks(task, "test"))
        return out

    def labels(self, track: Track) -> Labels:
        """The track's labels as stored (not fitted to the video; see :meth:`aligned_labels`).

        Each file is parsed once per reader (the coverage gate and the data loading both
        need them); treat the arrays as read-only.
        """
        if track.annotation is None:
            raise DatasetError(f"track {track.name!r} ({track.task} {track.split}) has no labels")
        k = (track.annotation, track.task)
        if k not in self._labels:
            self._labels[k] = read_labels(track.annotation, track.task)
        return self._labels[k]

    def aligned_labels(self, track: Track, n_frames: int) -> Labels:
        """Labels fitted to ``n_frames`` frames (truncated, or the last line repeated).

        A difference above :data:`LENGTH_TOLERANCE` frames emits a :class:`DatasetWarning`.
        """
        return align_labels(self.labels(track), n_frames)

    # -- videos and crops --------------------------------------------------------------------

    def video_for(self, name: str) -> Path | None:
        """The raw video of a track: its own stem, else the stem without ``_left``/``_right``.

        This also resolves the irregular pairs (``video2`` + ``video2_left`` share
        ``video2.mp4``).
        """
        if name in self._videos:
            return self._videos[name]
        video, subject = split_subject(name)
        return self._videos.get(video) if subject else None

    @property
    def videos(self) -> dict[str, Path]:
        """Every video found below the root, by stem."""
        return dict(self._videos)

    def fps(self, track: Track | str, default: float | None = None) -> float:
        """Frame rate of the track's video in frames per second: the nominal rate of the
        frame grid ``emofeat extract`` uses (the container's average rate; when it declares
        none, measured from the frame timestamps).

        Args:
            track: a track or a track name.
            default: returned when the track has no video or its video cannot be read;
                without it that is an error.

        Raises:
            DatasetError: no video (and no ``default``).
            MediaError: the video cannot be read (and no ``default``).
        """
        video = self._video_of(track)
        if video is None:
            if default is not None:
                return float(default)
            raise DatasetError(f"track {_name(track)!r}: no video found below {self.root}")
        if video not in self._fps and video not in self._counts:
            try:
                info = self._info(video)
                if info.fps:
                    self._fps[video] = float(info.fps)
                else:  # no declared rate: the grid measures it from the timestamps
                    self._grid(video)
            except MediaError:
                if default is not None:
                    return float(default)
                raise
        fps = self._fps.get(video)
        if fps is None:
            if default is not None:
                return float(default)
            raise DatasetError(f"{video}: no video stream in the file")
        return fps

    def frame_count(self, track: Track | str) -> int | None:
        """Number of frames of the track's video: the rows of the frame grid that
        ``emofeat extract`` aligns features to (:func:`emofeat.count_frames`: video
        packets with a timestamp, demuxed but not decoded), not the container header's
        count, which can differ (an AVI counts empty chunks of skipped frames).

        None when the track has no video (or its video stream holds no frames).

        Raises:
            MediaError: the video cannot be read.
        """
        video = self._video_of(track)
        if video is None:
            return None
        if video not in self._counts:
            self._grid(video)
        return self._counts[video]

    def _video_of(self, track: Track | str) -> Path | None:
        if isinstance(track, Track):
            return track.video or self.video_for(track.name)
        return self.video_for(track)

    def _info(self, video: Path) -> MediaInfo:
        if video not in self._infos:
            self._infos[video] = probe(video)
        return self._infos[video]

    def _grid(self, video: Path) -> None:
        info = self._info(video)
        if not info.has_video:  # an audio-only file with a video suffix
            self._counts[video] = None
            return
        grid = demux_grid(info)
        self._fps[video] = float(grid.rate)
        self._counts[video] = len(grid) or None

    def crop_frames(self, track: Track | str) -> np.ndarray:
        """1-based frame numbers that have a crop image (int64, sorted; empty without crops)."""
        name = _name(track)
        folder = track.crops if isinstance(track, Track) and track.crops else None
        folder = folder or self._crop_dirs.get(name)
        if folder is None:
            return np.zeros(0, dtype=np.int64)
        nums = [int(m.group(1)) for e in os.scandir(folder) if (m := _FRAME_IMAGE.match(e.name))]
        return np.array(sorted(nums), dtype=np.int64)

    @property
    def crop_dirs(self) -> dict[str, Path]:
        """Crop folders by track name."""
        return dict(self._crop_dirs)

    @property
    def crop_roots(self) -> list[Path]:
        """Folders that hold track crop folders, in precedence order (first wins)."""
        return list(self._crop_roots)

    # -- test set ----------------------------------------------------------------------------

    def template(self, task: str) -> Path | None:
        """The submission template of a task (header ``image_location,...``), if present."""
        srcs = [s for s in self._tests[normalize_task(task)] if s.kind == "template"]
        return srcs[0].path if srcs else None

    def test_list(self, task: str) -> Path | None:
        """The plain test-set track list of a task, if present."""
        srcs = [s for s in self._tests[normalize_task(task)] if s.kind == "list"]
        return srcs[0].path if srcs else None

    def test_names(self, task: str) -> list[str]:
        """Test track names in the order of the template (else the list, else ``Test_Set``)."""
        task = normalize_task(task)
        tmpl = self.template(task)
        if tmpl is not None:
            return template_tracks(tmpl)
        lst = self.test_list(task)
        if lst is not None:
            return read_test_list(lst)
        return sorted(self._tracks.get((task, "test"), {}))

    def test_tracks(self, task: str) -> list[Track]:
        """Test tracks (from the template, the test-set list or a ``Test_Set`` folder), by name."""
        task = normalize_task(task)
        files = self._tracks.get((task, "test"), {})
        return [self._track(n, task, "test", files.get(n)) for n in sorted(self.test_names(task))]

    def test_rows(self, task: str) -> list[tuple[str, int]]:
        """Submission rows ``(track, frame)`` (frame 1-based) in the official order.

        From the template when there is one. From a plain list, each track gets frames
        1..N where N is the video's frame count, else the highest crop frame number.

        Raises:
            DatasetError: no test-set source, or a listed track has neither video nor crops.
        """
        task = normalize_task(task)
        tmpl = self.template(task)
        if tmpl is not None:
            return read_template(tmpl)[1]
        names = self.test_names(task)
        if not names:
            raise DatasetError(f"{self.root}: no {task} test-set list or template found")
        rows = []
        missing = []
        for name in names:
            n = self.frame_count(name)
            if n is None:
                crops = self.crop_frames(name)
                n = int(crops[-1]) if len(crops) else None
            if n is None:
                missing.append(name)
                continue
            rows.extend((name, k) for k in range(1, n + 1))
        if missing:
            raise DatasetError(
                f"{self.root}: no video or crops to count the frames of test track(s) "
                f"{', '.join(missing)}"
            )
        return rows

    # -- reporting ---------------------------------------------------------------------------

    def summary(self) -> dict:
        """What was found, for printing: folders, track counts, missing videos and crops."""
        out: dict = {
            "root": str(self.root),
            "annotations": {t: str(p) for t, p in self._task_dirs.items()},
            "splits": self.splits,
            "videos": len(self._videos),
            "crop_folders": [str(p) for p in self._crop_roots],
            "crop_folder_tracks": {str(p): n for p, n in self._crop_root_tracks.items()},
            "crop_tracks": len(self._crop_dirs),
            "test_sources": {
                t: [{"path": str(s.path), "kind": s.kind} for s in srcs]
                for t, srcs in self._tests.items()
                if srcs
            },
        }
        no_video: dict[str, list[str]] = {}
        no_crops: dict[str, list[str]] = {}
        for task in self.tasks:
            for split in SPLITS:
                for t in self.tracks(task, split):
                    if t.video is None:
                        no_video.setdefault(f"{task}/{split}", []).append(t.name)
                    if t.crops is None:
                        no_crops.setdefault(f"{task}/{split}", []).append(t.name)
        out["tracks_without_video"] = no_video
        out["tracks_without_crops"] = no_crops
        out["warnings"] = list(self.warnings)
        return out

    def __repr__(self) -> str:
        return f"AffWild2({str(self.root)!r}, tasks={self.tasks})"


def _name(track: Track | str) -> str:
    return track.name if isinstance(track, Track) else str(track)


def _release_number(path: Path) -> int:
    m = re.match(r"\s*(\d+)", path.parent.name)
    return int(m.group(1)) if m else -1


def _crop_child_kind(entry: os.DirEntry) -> str:
    """``"root"``, ``"track"`` or ``""`` (ignored) for a sub-folder of a crop root.

    ``cropped_aligned*`` folders are crop roots; other ``cropped*`` folders (unaligned
    crops), hidden folders and ``__MACOSX`` are ignored. Otherwise a folder with a frame
    image among its first entries (``00001.jpg`` is looked up first) is a track, one with
    sub-folders and no frame image a crop root, and any other folder (empty, or no image
    among its first entries) a track without crops. No track folder is listed in full.
    """
    nd = _norm(entry.name)
    if nd.startswith("cropped_aligned"):
        return "root"
    if _SKIP_DIRS.match(entry.name) or entry.name.lower() == "__macosx":
        return ""
    if os.path.isfile(os.path.join(entry.path, "00001.jpg")):
        return "track"
    has_dir = False
    try:
        with os.scandir(entry.path) as it:
            for i, e in enumerate(it):
                if _FRAME_IMAGE.match(e.name) and not e.is_dir():
                    return "track"
                if e.is_dir() and not _SKIP_DIRS.match(e.name):
                    has_dir = True
                elif i >= _PEEK and not has_dir:
                    break
    except OSError:
        return ""
    return "root" if has_dir else "track"


def read_template(path: str | os.PathLike) -> tuple[list[str], list[tuple[str, int]]]:
    """A submission template's header columns and its ``(track, frame)`` rows, in file order.

    Frames are 1-based (``video1/00001.jpg`` -> ``("video1", 1)``); columns after the first
    are ignored.

    Raises:
        AnnotationError: the header does not start with ``image_location``, or a row's first
            column is not ``<track>/<NNNNN>.jpg`` (message names file and line).
    """
    path = Path(path)
    lines = _read_lines(path)
    header = [c.strip() for c in lines[0].split(",")]
    if not header[0].lower() == "image_location":
        raise AnnotationError(
            path,
            1,
            f"not a submission template: header {lines[0].strip()!r} does not start with "
            "'image_location' (a plain list of test tracks needs AffWild2.test_rows)",
        )
    rows: list[tuple[str, int]] = []
    for lineno, line in enumerate(lines[1:], start=2):
        loc = line.split(",", 1)[0].strip()
        if not loc:
            raise AnnotationError(path, lineno, "empty row")
        track, sep, image = loc.rpartition("/")
        stem = image.rsplit(".", 1)[0]
        if not sep or not track or not stem.isdigit():
            raise AnnotationError(
                path, lineno, f"image_location {loc!r} is not '<track>/<NNNNN>.jpg'"
            )
        frame = int(stem)
        if frame < 1:
            raise AnnotationError(path, lineno, f"frame number {frame} < 1 in {loc!r}")
        rows.append((track, frame))
    return header, rows


def official_header(task: str) -> list[str]:
    """``image_location`` plus the task's label names (VA: valence, arousal; EXPR: 8 classes)."""
    labels = VA_LABELS if normalize_task(task) == "VA" else EXPR_LABELS
    return ["image_location", *labels]
