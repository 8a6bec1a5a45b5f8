"""Face crops as the paper makes them: enlarge the box, keep the aspect ratio, pad to a
square, resize to the model's input size (240 px EfficientNet-B1, 224 px ViT-B/16, 112 px
expression net).
"""

from __future__ import annotations

import numpy as np
import torch


def square_boxes(boxes: np.ndarray, margin: float | np.ndarray) -> np.ndarray:
    """Enlarge boxes by ``margin`` (fraction of their size) and make them square.

    The square's side is the longer side of the enlarged box, centred on the box, so the
    face keeps its aspect ratio; parts outside the frame are padded when cropping.
    """
    b = np.asarray(boxes, np.float64).reshape(-1, 4)
    cx, cy = (b[:, 0] + b[:, 2]) / 2, (b[:, 1] + b[:, 3]) / 2
    side = np.maximum(b[:, 2] - b[:, 0], b[:, 3] - b[:, 1]) * (1 + margin)
    return np.stack([cx - side / 2, cy - side / 2, cx + side / 2, cy + side / 2], 1)


def crop_faces(
    frames: np.ndarray,
    boxes: np.ndarray,
    size: int,
    margin: float | np.ndarray = 0.2,
    device: str = "cpu",
    eyes: np.ndarray | None = None,
    group: int = 4,
    as_float: bool = False,
) -> np.ndarray:
    """Cut, pad and resize face crops.

    Without ``eyes``: ``torchvision.ops.roi_align`` (bilinear samples averaged over each output
    pixel's footprint, which acts as area averaging when shrinking). With ``eyes``: the crop
    is also rotated about the box centre so that the eyes are level (alignment from the
    landmarks), sampled bilinearly with ``grid_sample``. Parts outside the frame are black.

    Args:
        frames: uint8 RGB frames, shape ``(n, H, W, 3)``.
        boxes: one box per frame ``(n, 4)``: x1, y1, x2, y2 in pixels.
        size: output side in pixels.
        margin: enlargement of the box before squaring (0.2 = 20 % larger); one value
            or one per frame.
        device: torch device for the resampling.
        eyes: optional ``(n, 2, 2)`` left and right eye centres in pixels.
        group: frames converted to float at a time (bounds memory on large frames).
        as_float: return float32 values in 0..255 without rounding (what the face extractors
            feed their nets: rounding to uint8 would turn sub-pixel box differences into
            whole grey levels).

    Returns:
        crops, shape ``(n, size, size, 3)``: uint8, or float32 with ``as_float``.
    """
    n = len(frames)
    if n == 0:
        return np.zeros((0, size, size, 3), np.uint8)
    sq = square_boxes(boxes, margin)
    h, w = frames.shape[1:3]
    exact = np.all(np.abs(sq - np.array([0, 0, w, h])) < 1e-6, axis=1) & (w == size) & (h == size)
    if eyes is None and exact.all():  # already a crop of the right size: nothing to resample
        return np.ascontiguousarray(frames, np.float32 if as_float else np.uint8)
    out = np.empty((n, size, size, 3), np.float32 if as_float else np.uint8)
    for a in range(0, n, group):
        b = min(n, a + group)
        x = torch.from_numpy(np.ascontiguousarray(frames[a:b])).to(device)
        # Planar float: roi_align on a channels-last view of the frames was up to twice as
        # slow on the CPU for the same (bit-identical) crops.
        x = x.permute(0, 3, 1, 2).to(torch.float32, memory_format=torch.contiguous_format)
        if eyes is None:
            res = _roi_crops(x, sq[a:b], size, device)
        else:
            res = _aligned_crops(x, sq[a:b], np.asarray(eyes[a:b], np.float64), size, device)
        res = res.clamp(0, 255) if as_float else res.round().clamp(0, 255).byte()
        out[a:b] = res.permute(0, 2, 3, 1).cpu().numpy()
    return out


def _roi_crops(x: torch.Tensor, sq: np.ndarray, size: int, device: str) -> torch.Tensor:
    from torchvision.ops import roi_align

    k = len(sq)
    rois = torch.cat(
        [torch.arange(k, dtype=torch.float32)[:, None], torch.from_numpy(sq.astype(np.float32))], 1
    ).to(device)
    # sampling_ratio=-1: ceil(side / size) samples per output pixel for each box on its own
    # (a ratio shared by the batch made a face's crop depend on the other faces cropped with it)
    return roi_align(
        x, rois, output_size=(size, size), spatial_scale=1.0, sampling_ratio=-1, aligned=True
    )


def _aligned_crops(
    x: torch.Tensor, sq: np.ndarray, eyes: np.ndarray, size: int, device: str
) -> torch.Tensor:
    import torch.nn.functional as F  # noqa: N812

    h, w = x.shape[2:]
    cx, cy = (sq[:, 0] + sq[:, 2]) / 2, (sq[:, 1] + sq[:, 3]) / 2
    side = sq[:, 2] - sq[:, 0]
    d = eyes[:, 1] - eyes[:, 0]
    angle = np.arctan2(d[:, 1], d[:, 0])  # rotate by the eye line's angle: eyes come out level
    cos, sin = np.cos(angle), np.sin(angle)
    # output (u, v) in [-1, 1] -> frame pixel c + R(angle) (u, v) side / 2 -> normalised input
    theta = np.zeros((len(sq), 2, 3))
    theta[:, 0] = np.stack([side / w * cos, -side / w * sin, 2 * cx / w - 1], 1)
    theta[:, 1] = np.stack([side / h * sin, side / h * cos, 2 * cy / h - 1], 1)
    grid = F.affine_grid(
        torch.from_numpy(theta).float().to(device), (len(sq), 3, size, size), align_corners=False
    )
    return F.grid_sample(x, grid, mode="bilinear", padding_mode="zeros", align_corners=False)
