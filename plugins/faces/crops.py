"""Face crops as the paper makes them: enlarge the box, keep the aspect ratio, pad to a
square, resize to the model's input size (240 px EfficientNet-B1, 224 px ViT-B/16, 112 px
expression net).
"""

from __future__ import annotations

import numpy as np
import torch
import torch.nn.functional as F  # noqa: N812


def square_boxes(boxes: np.ndarray, margin: float) -> np.ndarray:
    """Enlarge boxes by ``margin`` (fraction of their size) and make them square.

    The square's side is the longer side of the enlarged box, centred on the box, so the
    face keeps its aspect ratio; parts outside the frame are padded when cropping.
    """
    b = np.asarray(boxes, np.float64).reshape(-1, 4)
    cx, cy = (b[:, 0] + b[:, 2]) / 2, (b[:, 1] + b[:, 3]) / 2
    side = np.maximum(b[:, 2] - b[:, 0], b[:, 3] - b[:, 1]) * (1 + margin)
    return np.stack([cx - side / 2, cy - side / 2, cx + side / 2, cy + side / 2], 1)


def crop_faces(
    frames: np.ndarray, boxes: np.ndarray, size: int, margin: float = 0.2, pad_value: float = 0.0
) -> np.ndarray:
    """Cut, pad and resize face crops.

    Args:
        frames: uint8 RGB frames, shape ``(n, H, W, 3)``.
        boxes: one box per frame ``(n, 4)``: x1, y1, x2, y2 in pixels.
        size: output side in pixels.
        margin: enlargement of the box before squaring (0.2 = 20 % larger).
        pad_value: value of pixels outside the frame (0 = black).

    Returns:
        uint8 crops, shape ``(n, size, size, 3)``.
    """
    n = len(frames)
    out = np.empty((n, size, size, 3), np.uint8)
    sq = square_boxes(boxes, margin)
    H, W = frames.shape[1:3]  # noqa: N806
    for i in range(n):
        x1, y1, x2, y2 = (int(round(v)) for v in sq[i])
        side = max(1, x2 - x1)
        canvas = np.full((side, side, 3), pad_value, np.uint8)
        sx1, sy1 = max(0, x1), max(0, y1)
        sx2, sy2 = min(W, x1 + side), min(H, y1 + side)
        if sx2 > sx1 and sy2 > sy1:
            canvas[sy1 - y1 : sy2 - y1, sx1 - x1 : sx2 - x1] = frames[i, sy1:sy2, sx1:sx2]
        t = torch.from_numpy(canvas).permute(2, 0, 1)[None].float()
        mode = "area" if side > size else "bilinear"
        kwargs = {} if mode == "area" else {"align_corners": False}
        r = F.interpolate(t, size=(size, size), mode=mode, **kwargs)
        out[i] = r[0].permute(1, 2, 0).round().clamp(0, 255).byte().numpy()
    return out
