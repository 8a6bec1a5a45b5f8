"""Input discovery: expand files, folders and glob patterns into the inputs to process."""

from __future__ import annotations

import os
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

    Returns:
        ``(inputs, problems)`` where ``problems`` lists ``(spec, message)`` for arguments
        that matched nothing.
    """
    import glob

    found: list[Path] = []
    problems: list[tuple[str, str]] = []
    for spec in specs:
        if any(ch in spec for ch in "*?["):
            matches = sorted(glob.glob(spec, recursive=True))
            if not matches:
                problems.append((spec, "the pattern matches nothing"))
            for m in matches:
                p = Path(m)
                if p.is_dir() and not is_image_folder(p):
                    found.extend(_walk(p, recursive))
                else:
                    found.append(p)
            continue
        p = Path(spec)
        if p.is_dir() and not is_image_folder(p):
            if not os.access(p, os.R_OK | os.X_OK):
                problems.append((spec, "permission denied (folder not readable)"))
                continue
            items = _walk(p, recursive)
            if not items:
                problems.append((spec, "folder holds no media files or image sequences"))
            found.extend(items)
        else:
            found.append(p)  # missing or unreadable files are reported when processed
    seen: set[Path] = set()
    unique = []
    for p in found:
        key = p.resolve() if p.exists() else p
        if key not in seen:
            seen.add(key)
            unique.append(p)
    return unique, problems


def _walk(folder: Path, recursive: bool) -> list[Path]:
    out: list[Path] = []
    try:
        entries = sorted(os.scandir(folder), key=lambda e: e.name)
    except PermissionError:
        return out
    for entry in entries:
        p = Path(entry.path)
        if entry.is_dir():
            if is_image_folder(p):
                out.append(p)
            elif recursive:
                out.extend(_walk(p, recursive))
        elif p.suffix.lower() in MEDIA_SUFFIXES:
            out.append(p)
    return out
