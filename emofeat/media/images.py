"""Image-sequence folders as Aff-Wild2 ships them: ``<track>/00001.jpg``, gaps allowed.

A folder is an image-sequence input when it holds at least one file named by a frame number
(1-based) with an image suffix; frame ``n`` lies at ``(n - 1) / image_fps`` seconds.
"""

from __future__ import annotations

import os
import re
from collections.abc import Iterator
from pathlib import Path
from typing import TYPE_CHECKING

if TYPE_CHECKING:
    from emofeat.media.probing import MediaInfo

IMAGE_SUFFIXES = frozenset({".jpg", ".jpeg", ".png", ".bmp"})

FRAME_NAME = re.compile(r"^(\d+)\.(jpg|jpeg|png|bmp)$", re.IGNORECASE)


def is_image_folder(path: Path) -> bool:
    """True when ``path`` is a folder holding numbered frame images."""
    if not path.is_dir():
        return False
    try:
        return any(FRAME_NAME.match(entry.name) for entry in os.scandir(path))
    except PermissionError:
        return False


def frame_numbers(folder: Path) -> list[int]:
    """The frame numbers of the numbered images in ``folder``, sorted (duplicates kept)."""
    return sorted(
        int(m.group(1)) for entry in os.scandir(folder) if (m := FRAME_NAME.match(entry.name))
    )


def image_paths(folder: Path, numbers: list[int]) -> Iterator[Path]:
    """The image file of each frame number in ``numbers`` (the first name, sorted, per number)."""
    by_number: dict[int, Path] = {}
    for entry in sorted(os.scandir(folder), key=lambda e: e.name):
        m = FRAME_NAME.match(entry.name)
        if m:
            by_number.setdefault(int(m.group(1)), Path(entry.path))
    for n in numbers:
        yield by_number[n]


def missing_frame_numbers(info: MediaInfo) -> list[int]:
    """Frame numbers absent from an image folder between 1 and its highest number."""
    present = set(info.frame_numbers)
    return [n for n in range(1, info.n_frames + 1) if n not in present]
