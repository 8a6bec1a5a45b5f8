"""Face tracking between detections, subject selection, and crops (known geometry)."""

from __future__ import annotations

import numpy as np

from emofeat_plugins.faces.crops import crop_faces, square_boxes
from emofeat_plugins.faces.tracking import (
    Detection,
    Tracker,
    detection_frames,
    interpolate,
    iou,
)


def test_iou_known_values():
    a = np.array([[0, 0, 10, 10]])
    b = np.array([[0, 0, 10, 10], [5, 0, 15, 10], [20, 20, 30, 30]])
    np.testing.assert_allclose(iou(a, b)[0], [1.0, 50 / 150, 0.0])


def test_detection_frames_include_the_last():
    assert detection_frames(32, 5) == [0, 5, 10, 15, 20, 25, 30, 31]
    assert detection_frames(3, 1) == [0, 1, 2]
    assert detection_frames(1, 5) == [0]
    assert detection_frames(0, 5) == []


def test_interpolation_between_detections():
    rows = {0: np.array([0, 0, 10, 10.0]), 4: np.array([4, 8, 14, 18.0])}
    values, valid = interpolate(rows, 6, max_gap=10)
    assert valid.tolist() == [True] * 5 + [False]
    np.testing.assert_allclose(values[2], [2, 4, 12, 14])
    np.testing.assert_allclose(values[1], [1, 2, 11, 12])
    # a gap longer than max_gap is not bridged
    values, valid = interpolate(rows, 6, max_gap=3)
    assert valid.tolist() == [True, False, False, False, True, False]


def _det(*boxes):
    b = np.array(boxes, np.float32).reshape(-1, 4)
    return Detection(b, np.ones(len(b), np.float32), np.zeros((len(b), 5, 2), np.float32))


def test_tracks_keep_ids_and_subjects():
    tr = Tracker("largest", 200, 100)
    left, right = [10, 10, 50, 60], [120, 10, 190, 90]  # the right face is larger
    ids1 = tr.update(_det(left, right))
    ids2 = tr.update(_det([122, 12, 192, 92], [12, 10, 52, 60]))  # order swapped, moved
    assert ids2.tolist() == ids1[::-1].tolist()
    det = _det([122, 12, 192, 92], [12, 10, 52, 60])
    assert tr.select(det, ids2) == 0  # the largest track
    assert Tracker("left", 200, 100).select(det, ids2) == 1
    assert Tracker("right", 200, 100).select(det, ids2) == 0
    # a face appearing far away starts a new track
    ids3 = tr.update(_det([60, 60, 80, 80]))
    assert ids3[0] not in ids1


def test_square_crop_keeps_aspect_and_pads():
    frame = np.zeros((1, 100, 100, 3), np.uint8)
    frame[0, 20:60, 40:60] = 255  # a 20 x 40 (w x h) white face
    box = np.array([[40, 20, 60, 60]], np.float32)
    sq = square_boxes(box, 0.0)
    np.testing.assert_allclose(sq[0], [30, 20, 70, 60])  # 40 x 40 around the centre
    crop = crop_faces(frame, box, 40, margin=0.0)[0]
    # the face keeps its 1:2 aspect ratio: white columns 10..29 of 40, all rows
    assert crop[:, 10:30].min() == 255 and crop[:, :9].max() == 0 and crop[:, 31:].max() == 0
    # a box hanging over the frame's edge is padded with black
    edge = crop_faces(frame, np.array([[-20, -20, 20, 20]], np.float32), 20, margin=0.0)[0]
    assert edge[:10, :].max() == 0 and edge[:, :10].max() == 0
    assert crop_faces(frame, box, 112).shape == (1, 112, 112, 3)


def test_aligned_crop_levels_the_eyes():
    frame = np.zeros((1, 200, 200, 3), np.uint8)
    # two bright "eyes" on a line tilted by 30 degrees around (100, 100)
    angle = np.deg2rad(30)
    eyes = np.array(
        [
            [100 - 30 * np.cos(angle), 100 - 30 * np.sin(angle)],
            [100 + 30 * np.cos(angle), 100 + 30 * np.sin(angle)],
        ]
    )
    yy, xx = np.mgrid[:200, :200]
    for ex, ey in eyes:
        frame[0][(xx - ex) ** 2 + (yy - ey) ** 2 <= 36] = 255
    box = np.array([[50, 50, 150, 150]], np.float32)
    plain = crop_faces(frame, box, 100, margin=0.0)[0, :, :, 0]
    aligned = crop_faces(frame, box, 100, margin=0.0, eyes=eyes[None])[0, :, :, 0]

    def blob_rows(img):
        ys, xs = np.nonzero(img > 128)
        left, right = ys[xs < 50], ys[xs >= 50]
        return left.mean(), right.mean()

    lt, rt = blob_rows(plain)
    assert rt - lt > 20  # tilted in the plain crop
    la, ra = blob_rows(aligned)
    assert abs(ra - la) < 1.0  # level after alignment
    assert abs((la + ra) / 2 - 50) < 1.5  # still centred
