"""Face tracks between detections, and the choice of the target subject.

Detection runs on every ``k``-th frame of a chunk (and on its last frame); faces are linked
into tracks by box overlap (IoU) from one detection frame to the next; the target subject's
box on the frames in between is interpolated linearly between the two detections that
enclose them. Nothing here looks beyond the current chunk, so the face stage returns every
frame's box from the chunk's own ``process`` call.

Subject selection (``subject`` setting):

* ``largest``: the track with the largest total box area so far (size x persistence: the
  main, most stable face);
* ``left`` / ``right``: the track whose box centre is furthest left / right (Aff-Wild2's
  two-person videos, ``<video>_left`` / ``<video>_right``);
* ``centre``: the track closest to the image centre.
"""

from __future__ import annotations

from dataclasses import dataclass, field

import numpy as np


def iou(a: np.ndarray, b: np.ndarray) -> np.ndarray:
    """Pairwise IoU of boxes ``a`` (n, 4) and ``b`` (m, 4) given as x1, y1, x2, y2."""
    a = np.asarray(a, np.float64).reshape(-1, 4)
    b = np.asarray(b, np.float64).reshape(-1, 4)
    x1 = np.maximum(a[:, None, 0], b[None, :, 0])
    y1 = np.maximum(a[:, None, 1], b[None, :, 1])
    x2 = np.minimum(a[:, None, 2], b[None, :, 2])
    y2 = np.minimum(a[:, None, 3], b[None, :, 3])
    inter = np.clip(x2 - x1, 0, None) * np.clip(y2 - y1, 0, None)
    area_a = (a[:, 2] - a[:, 0]) * (a[:, 3] - a[:, 1])
    area_b = (b[:, 2] - b[:, 0]) * (b[:, 3] - b[:, 1])
    union = area_a[:, None] + area_b[None, :] - inter
    return np.where(union > 0, inter / np.maximum(union, 1e-9), 0.0)


@dataclass
class Detection:
    """Faces found on one frame: boxes (k, 4) px, scores (k,), landmarks (k, 5, 2) px."""

    boxes: np.ndarray
    scores: np.ndarray
    landmarks: np.ndarray

    @classmethod
    def empty(cls) -> Detection:
        return cls(
            np.zeros((0, 4), np.float32), np.zeros(0, np.float32), np.zeros((0, 5, 2), np.float32)
        )


@dataclass
class Tracker:
    """Links detections into tracks and selects the target subject.

    Args:
        subject: ``largest``, ``left``, ``right`` or ``centre``.
        width: frame width in pixels (for ``left``/``right``/``centre``).
        height: frame height in pixels.
        min_iou: overlap needed to continue a track.
        max_gap: detection frames a track may miss before it ends.
    """

    subject: str = "largest"
    width: int = 0
    height: int = 0
    min_iou: float = 0.3
    max_gap: int = 3
    next_id: int = 0
    tracks: dict[int, dict] = field(default_factory=dict)

    def update(self, det: Detection) -> np.ndarray:
        """Assign a track id to each face of a detection frame (returns ids, shape (k,))."""
        ids = np.full(len(det.boxes), -1, np.int64)
        live = [t for t in self.tracks if self.tracks[t]["gap"] <= self.max_gap]
        if live and len(det.boxes):
            last = np.stack([self.tracks[t]["box"] for t in live])
            overlap = iou(det.boxes, last)
            # greedy matching by decreasing overlap
            order = np.dstack(np.unravel_index(np.argsort(-overlap, axis=None), overlap.shape))[0]
            used_d, used_t = set(), set()
            for d, t in order:
                if overlap[d, t] < self.min_iou:
                    break
                if d in used_d or t in used_t:
                    continue
                used_d.add(d)
                used_t.add(t)
                ids[d] = live[t]
        for t in self.tracks.values():
            t["gap"] += 1
        # ended tracks are forgotten, so long videos do not accumulate them
        for t in [t for t, v in self.tracks.items() if v["gap"] > self.max_gap + 1]:
            del self.tracks[t]
        for d in range(len(det.boxes)):
            if ids[d] < 0:
                ids[d] = self.next_id
                self.tracks[self.next_id] = {"area": 0.0, "gap": 0, "box": det.boxes[d]}
                self.next_id += 1
            t = self.tracks[int(ids[d])]
            b = det.boxes[d]
            t["box"] = b
            t["gap"] = 0
            t["area"] += float((b[2] - b[0]) * (b[3] - b[1]))
        return ids

    def select(self, det: Detection, ids: np.ndarray) -> int:
        """Index of the target subject's face in ``det`` (-1: none)."""
        if len(det.boxes) == 0:
            return -1
        cx = (det.boxes[:, 0] + det.boxes[:, 2]) / 2
        cy = (det.boxes[:, 1] + det.boxes[:, 3]) / 2
        if self.subject == "left":
            return int(np.argmin(cx))
        if self.subject == "right":
            return int(np.argmax(cx))
        if self.subject == "centre":
            return int(np.argmin((cx - self.width / 2) ** 2 + (cy - self.height / 2) ** 2))
        areas = np.array([self.tracks[int(i)]["area"] for i in ids])
        return int(np.argmax(areas))


def detection_frames(n: int, every: int) -> list[int]:
    """Positions in a chunk of ``n`` frames where detection runs: every k-th and the last."""
    if n == 0:
        return []
    pos = list(range(0, n, max(1, every)))
    if pos[-1] != n - 1:
        pos.append(n - 1)
    return pos


def interpolate(
    boxes: dict[int, np.ndarray], n: int, max_gap: int
) -> tuple[np.ndarray, np.ndarray]:
    """Fill the frames between detections of the subject by linear interpolation.

    Args:
        boxes: chunk position -> the subject's row (box, score, landmarks flattened) at that
            detection frame; positions without a face are absent.
        n: frames in the chunk.
        max_gap: longest run of frames (between two detections with a face) that is
            interpolated; a longer gap stays empty (a cut or a face leaving and returning).

    Returns:
        ``(values (n, d), valid (n,))``.
    """
    if not boxes:
        return np.zeros((n, 0)), np.zeros(n, bool)
    d = len(next(iter(boxes.values())))
    out = np.zeros((n, d), np.float32)
    valid = np.zeros(n, bool)
    known = sorted(boxes)
    for p in known:
        out[p] = boxes[p]
        valid[p] = True
    for a, b in zip(known[:-1], known[1:], strict=True):
        if b - a <= 1 or b - a > max_gap:
            continue
        w = (np.arange(a + 1, b) - a) / (b - a)
        out[a + 1 : b] = (1 - w)[:, None] * boxes[a] + w[:, None] * boxes[b]
        valid[a + 1 : b] = True
    return out, valid
