"""Which stored items belong to which Aff-Wild2 track: the join by identity.

A store keys its items by input name, and the key depends on how the inputs were given
(``video1``, ``batch1__video1`` when two inputs share a stem, ``cropped_aligned__video1``...).
The join therefore never looks at keys. Every item records the file or image folder it was
made from (``source.path``) and what kind of input that was (``media.kind``), and a track
finds its items by what they are:

* a **crop-folder item** (an image-sequence folder) belongs to the track of the folder's
  name (``.../cropped_aligned/video5_left`` -> track ``video5_left``);
* a **raw-video item** belongs to every track of that video: the file stem is the track's
  name or its video's name (``video5.mp4`` -> ``video5``, ``video5_left``, ``video5_right``;
  the irregular pairs ``video2`` + ``video2_left`` share ``video2.mp4``).

Per stream and modality:

* **audio** streams come from the track's raw video (image folders have no sound);
* **video** (face) streams come from the track's crop folder when one is stored, else from
  the raw video's face stage for the track's subject: a ``_left`` / ``_right`` track (and the
  unsuffixed track of an irregular pair) takes only an item whose face stage ran with
  ``faces.subject`` set to that side.

Several items may claim a track (the same input extracted in several runs, into several
stores). Items made from the same source path are the same input: the newest wins. Items
from *different* sources are told apart by the path the Aff-Wild2 reader found for the
track; when that does not decide, the join raises :class:`JoinError` naming both.
"""

from __future__ import annotations

from collections import defaultdict
from collections.abc import Iterable
from dataclasses import dataclass
from pathlib import Path

from emofeat import FeatureStore, ItemInfo
from emofeat_recipes.datasets.affwild2 import IRREGULAR_PAIRS, DatasetError, Track, split_subject

#: the extractor holding the face stage's settings (the tracked subject) of a raw video
FACE_STAGE = "faces"


class JoinError(DatasetError):
    """Two stored items from different sources claim the same track and stream."""


def face_subject(track: Track) -> str:
    """The side whose face a track shows in a two-person video (``""``: a one-person video).

    ``video5_left`` -> ``"left"``; the unsuffixed track of an irregular pair is the other
    person (``video2`` pairs with ``video2_left``, so ``video2`` is ``"right"``).
    """
    if track.subject:
        return track.subject
    side = IRREGULAR_PAIRS.get(track.name)
    if side:
        return "left" if side == "right" else "right"
    return ""


@dataclass(frozen=True, eq=False)
class Candidate:
    """A stored item as the join sees it."""

    item: ItemInfo
    name: str  # folder name (crop items) or file stem (video/audio items)
    is_folder: bool
    subject: str  # faces.subject of the input's face stage in the same store ("" if none)

    @property
    def source(self) -> Path | None:
        return self.item.source

    def describe(self) -> str:
        return f"{self.source} (store {self.item.store.path}, key {self.item.key!r})"


class FeatureIndex:
    """Every item of one or more stores, indexed for the join.

    Args:
        stores: feature stores (opened for reading); earlier and later stores are equal
            partners (the newest item of a source wins).
    """

    def __init__(self, stores: Iterable[FeatureStore]) -> None:
        self.stores = list(stores)
        self._by_ex: dict[str, list[Candidate]] = defaultdict(list)
        for store in self.stores:
            items = store.catalog()
            subjects = {
                it.key: str(it.settings.get("subject", ""))
                for it in items
                if it.extractor == FACE_STAGE
            }
            for it in items:
                src = it.source
                is_folder = it.kind == "images"
                if src is not None:
                    name = src.name if is_folder else src.stem
                else:  # an item without a recorded source: its key is all there is
                    name = it.key
                self._by_ex[it.extractor].append(
                    Candidate(it, name, is_folder, subjects.get(it.key, ""))
                )

    @property
    def extractors(self) -> list[str]:
        """Extractors with at least one item in any store."""
        return sorted(self._by_ex)

    def items(self, extractor: str | None = None) -> list[ItemInfo]:
        """Every item (of one extractor)."""
        groups = [self._by_ex.get(extractor, [])] if extractor else list(self._by_ex.values())
        return [c.item for g in groups for c in g]

    def streams(self, extractor: str) -> list[str]:
        """Stream names of an extractor's items (the first item's)."""
        cands = self._by_ex.get(extractor) or []
        return list(cands[0].item.streams) if cands else []

    def lookup(
        self, track: Track, extractor: str, stream: str | None, modality: str
    ) -> ItemInfo | None:
        """The item holding ``extractor.stream`` for ``track`` (None when none is stored).

        Args:
            track: an Aff-Wild2 track (its crop folder and video as the reader found them).
            extractor: extractor name.
            stream: stream name (None: any stream of the extractor).
            modality: ``"video"`` (faces: crop folder first, else the raw video's face stage
                for the track's subject) or ``"audio"`` (the raw video).

        Raises:
            JoinError: items from two different sources claim the track.
        """
        cands = [
            c for c in self._by_ex.get(extractor, []) if stream is None or stream in c.item.streams
        ]
        if not cands:
            return None
        what = f"{extractor}.{stream}" if stream else extractor
        if modality == "video":
            folder = [c for c in cands if c.is_folder and c.name == track.name]
            found = _choose(folder, track.crops, track, what)
            if found is not None:
                return found
        stems = {track.name, track.video_name}
        if track.video is not None:
            stems.add(track.video.stem)
        files = [c for c in cands if not c.is_folder and c.name in stems]
        if modality == "video":
            side = face_subject(track)
            if side:
                files = [c for c in files if c.subject == side]
        return _choose(files, track.video, track, what)

    def video_items(self, name: str) -> list[ItemInfo]:
        """Items made from raw videos whose stem is ``name`` (any extractor)."""
        return [
            c.item for g in self._by_ex.values() for c in g if not c.is_folder and c.name == name
        ]

    def folder_items(self, name: str) -> list[ItemInfo]:
        """Items made from image folders named ``name`` (any extractor)."""
        return [c.item for g in self._by_ex.values() for c in g if c.is_folder and c.name == name]


def _resolved(path: Path | None) -> str:
    if path is None:
        return ""
    try:
        return str(Path(path).resolve())
    except OSError:
        return str(path)


def _choose(
    cands: list[Candidate], expected: Path | None, track: Track, what: str
) -> ItemInfo | None:
    if not cands:
        return None
    by_source: dict[str, list[Candidate]] = defaultdict(list)
    for c in cands:
        by_source[_resolved(c.source)].append(c)
    want = _resolved(expected)
    if want and want in by_source:
        group = by_source[want]
    elif len(by_source) == 1:
        group = next(iter(by_source.values()))
    else:
        a, b = (g[0] for g in list(by_source.values())[:2])
        more = f" and {len(by_source) - 2} more" if len(by_source) > 2 else ""
        raise JoinError(
            f"track {track.name!r}: two stored items claim {what}: {a.describe()} and "
            f"{b.describe()}{more}; the reader's own "
            f"{'crop folder' if a.is_folder else 'video'} for the track is "
            f"{expected or 'not found below the root'}. Remove one (a separate store per "
            "copy), or point --data at the copy they were extracted from"
        )
    # the same input extracted several times (several runs or stores): the newest item
    return max(group, key=lambda c: str(c.item.attrs.get("created", ""))).item


def track_video_stem(track: Track) -> str:
    """The stem a raw-video item of the track carries."""
    return track.video.stem if track.video is not None else split_subject(track.name)[0]
