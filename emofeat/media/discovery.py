"""Input discovery: expand files, folders and glob patterns into the inputs to process."""

from __future__ import annotations

import os
import stat
from pathlib import Path

from emofeat.media.images import is_image_folder

VIDEO_SUFFIXES = frozenset(
    {
        ".mp4",
        ".avi",
        ".mov",
        ".mkv",
        ".webm",
        ".m4v",
        ".mpg",
        ".mpeg",
        ".wmv",
        ".flv",
        ".3gp",
        ".ts",
    }
)
AUDIO_SUFFIXES = frozenset(
    {".wav", ".flac", ".mp3", ".m4a", ".aac", ".ogg", ".opus", ".wma", ".aiff", ".aif"}
)
MEDIA_SUFFIXES = VIDEO_SUFFIXES | AUDIO_SUFFIXES


def find_inputs(
    specs: list[str], recursive: bool = True
) -> tuple[list[Path], list[tuple[str, str]]]:
    """Expand files, folders and glob patterns into a sorted list of inputs.

    A folder is an image-sequence input when it holds numbered frame images; otherwise it
    is searched (recursively by default) for media files and image-sequence folders.
    Folders are searched once each, by their real identity, so a link back into a folder
    already searched (a link loop) is not followed. Only regular files are inputs: a named
    pipe, socket or device with a media name is reported, never opened (opening a pipe would
    wait for a writer forever).

    Returns:
        ``(inputs, problems)`` where ``problems`` lists ``(spec, message)`` for arguments
        that matched nothing and for entries that cannot be inputs.
    """
    import glob

    found: list[Path] = []
    problems: list[tuple[str, str]] = []
    searched: set[tuple[int, int]] = set()
    for spec in specs:
        if any(ch in spec for ch in "*?["):
            matches = sorted(glob.glob(spec, recursive=True))
            if not matches:
                problems.append((spec, "the pattern matches nothing"))
            for m in matches:
                p = Path(m)
                if p.is_dir() and not is_image_folder(p):
                    found.extend(_walk(p, recursive, searched, problems))
                elif _regular_or_missing(p, problems):
                    found.append(p)
            continue
        p = Path(spec)
        if p.is_dir() and not is_image_folder(p):
            if not os.access(p, os.R_OK | os.X_OK):
                problems.append((spec, "permission denied (folder not readable)"))
                continue
            items = _walk(p, recursive, searched, problems)
            if not items and not any(s.startswith(spec) for s, _ in problems):
                problems.append((spec, "folder holds no media files or image sequences"))
            found.extend(items)
        elif _regular_or_missing(p, problems):
            found.append(p)  # missing or unreadable files are reported when processed
    seen: set[Path] = set()
    unique = []
    for p in found:
        try:
            key = p.resolve() if p.exists() else p
        except (OSError, RuntimeError):  # a link loop resolving the path
            key = p
        if key not in seen:
            seen.add(key)
            unique.append(p)
    return unique, problems


_SPECIAL = (
    (stat.S_ISFIFO, "a named pipe (FIFO)"),
    (stat.S_ISSOCK, "a socket"),
    (stat.S_ISCHR, "a character device"),
    (stat.S_ISBLK, "a block device"),
)


def _regular_or_missing(path: Path, problems: list[tuple[str, str]]) -> bool:
    """True for a regular file, a folder or a path that cannot be looked at (the run
    reports those per input); False, with a problem recorded, for special files."""
    try:
        mode = path.stat().st_mode
    except OSError:
        return True  # missing, dangling link, link loop: a clear per-input error later
    for check, what in _SPECIAL:
        if check(mode):
            problems.append((str(path), f"skipped: {what}, not a regular file"))
            return False
    return True


def _walk(
    folder: Path, recursive: bool, searched: set[tuple[int, int]], problems: list[tuple[str, str]]
) -> list[Path]:
    out: list[Path] = []
    try:
        info = folder.stat()
        if (info.st_dev, info.st_ino) in searched:
            return out  # searched already: a link loop or a second link to the same folder
        searched.add((info.st_dev, info.st_ino))
        entries = sorted(os.scandir(folder), key=lambda e: e.name)
    except OSError as exc:
        problems.append((str(folder), f"cannot list the folder: {exc.strerror or exc}"))
        return out
    for entry in entries:
        p = Path(entry.path)
        try:
            is_dir = entry.is_dir()
        except OSError:
            is_dir = False
        if is_dir:
            if is_image_folder(p):
                out.append(p)
            elif recursive:
                out.extend(_walk(p, recursive, searched, problems))
        elif p.suffix.lower() in MEDIA_SUFFIXES and _regular_or_missing(p, problems):
            out.append(p)
    return out
