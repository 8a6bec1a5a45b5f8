"""MTCNN face detector (Zhang et al. 2016) with the facenet-pytorch 2.6.0 weights.

The weights (``pnet.pt``, ``rnet.pt``, ``onet.pt``, plain state dicts) come from the model
registry (model ``"mtcnn"``). The pipeline follows facenet-pytorch's ``detect_face`` so the
weights see what they were converted for:

* input images are RGB, laid out ``(N, 3, H, W)`` without a spatial transpose, normalised as
  ``(x - 127.5) / 128``; the dense layers of R-Net and O-Net flatten their feature maps in
  ``(W, H, C)`` order (the order of the converted Caffe/TensorFlow weights);
* image pyramid with scales ``12 / min_face_size * factor**i`` while the shorter side stays at
  least 12 pixels, area (adaptive average pooling) resampling;
* P-Net proposals on a stride-2 grid of 12x12 cells, NMS (IoU 0.5) per scale and image, then
  NMS (IoU 0.7) per image, box regression, boxes made square;
* R-Net on 24x24 crops, O-Net on 48x48 crops (crops clipped to the image and resized by area
  averaging, as facenet-pytorch does), box regression with the ``+1`` pixel-width convention,
  five landmarks from O-Net, a final greedy NMS with the "Min" overlap criterion (IoU 0.7).

Everything runs batched: all images of one call go through each pyramid level together, and
the crops of every box of every image go through R-Net/O-Net together (in chunks of 512). The
crops are cut and area-resized in one vectorised step from an integral image (exact integer
sums), which gives the same pixels as ``interpolate(crop, size, mode="area")`` box by box,
without a Python loop.

Boxes follow facenet-pytorch's (MATLAB-derived) convention: ``x1, y1, x2, y2`` in pixels of the
input image. Landmarks are ``(x, y)`` for left eye, right eye, nose, left and right mouth corner
(left/right as seen in the image).
"""

from __future__ import annotations

import os
from collections.abc import Sequence
from pathlib import Path

import numpy as np
import torch
import torch.nn.functional as F  # noqa: N812
from torch import nn
from torchvision.ops import batched_nms

__all__ = ["MTCNN", "PNet", "RNet", "ONet", "Detections"]

# (boxes (k, 4) float32, scores (k,) float32, landmarks (k, 5, 2) float32) for one image.
Detections = tuple[np.ndarray, np.ndarray, np.ndarray]

_MEAN = 127.5
_SCALE = 0.0078125  # 1 / 128
_STRIDE = 2
_CELL = 12
_CHUNK = 512  # crops per R-/O-Net batch


# Layers are named as in the converted state dicts: conv{i}, prelu{i}, pool{i}, dense{i}, ...


def _add_convs(net: nn.Module, convs: Sequence[tuple[int, int, int, int]]) -> int:
    """Give ``net`` ``conv{i}``, ``prelu{i}`` and (pool size > 0, stride 2) ``pool{i}`` for
    each ``(in channels, out channels, kernel, pool size)`` of ``convs``; returns how many."""
    for i, (c_in, c_out, kernel, pool) in enumerate(convs, 1):
        setattr(net, f"conv{i}", nn.Conv2d(c_in, c_out, kernel))
        setattr(net, f"prelu{i}", nn.PReLU(c_out))
        if pool:
            setattr(net, f"pool{i}", nn.MaxPool2d(pool, 2, ceil_mode=True))
    return len(convs)


def _run_convs(net: nn.Module, count: int, x: torch.Tensor) -> torch.Tensor:
    """``x`` through the ``count`` conv -> PReLU (-> max-pool) blocks of :func:`_add_convs`."""
    for i in range(1, count + 1):
        x = getattr(net, f"prelu{i}")(getattr(net, f"conv{i}")(x))
        pool = getattr(net, f"pool{i}", None)
        if pool is not None:
            x = pool(x)
    return x


class PNet(nn.Module):
    """Proposal network: fully convolutional, one 12x12 window per output cell (stride 2)."""

    def __init__(self) -> None:
        super().__init__()
        self.blocks = _add_convs(self, ((3, 10, 3, 2), (10, 16, 3, 0), (16, 32, 3, 0)))
        self.conv4_1 = nn.Conv2d(32, 2, 1)  # face / not face
        self.conv4_2 = nn.Conv2d(32, 4, 1)  # box regression

    def forward(self, x: torch.Tensor) -> tuple[torch.Tensor, torch.Tensor]:
        """``x`` (N, 3, H, W) -> (regression (N, 4, h, w), face probability (N, h, w))."""
        x = _run_convs(self, self.blocks, x)
        prob = torch.softmax(self.conv4_1(x), dim=1)[:, 1]
        return self.conv4_2(x), prob


class _CropNet(nn.Module):
    """R-/O-Net: conv blocks (``convs``, see :func:`_add_convs`), then ``dense{n}`` (the
    flattened feature map -> ``width``) + ``prelu{n}``, then one linear head per ``heads``
    size, ``dense{n+1}_1``, ``dense{n+1}_2``, ...; the first head is face / not face.

    ``forward`` returns the other heads' outputs, then the face probability.
    """

    def __init__(
        self,
        convs: Sequence[tuple[int, int, int, int]],
        flat: int,
        width: int,
        heads: Sequence[int],
    ) -> None:
        super().__init__()
        self.blocks = _add_convs(self, convs)
        n = self.blocks + 1
        setattr(self, f"dense{n}", nn.Linear(flat, width))
        setattr(self, f"prelu{n}", nn.PReLU(width))
        self.heads = [f"dense{n + 1}_{k}" for k in range(1, len(heads) + 1)]
        for name, size in zip(self.heads, heads, strict=True):
            setattr(self, name, nn.Linear(width, size))

    def forward(self, x: torch.Tensor) -> tuple[torch.Tensor, ...]:
        x = _run_convs(self, self.blocks, x)
        # The converted weights expect the feature map flattened in (W, H, C) order.
        x = x.permute(0, 3, 2, 1).flatten(1)
        n = self.blocks + 1
        x = getattr(self, f"prelu{n}")(getattr(self, f"dense{n}")(x))
        prob = torch.softmax(getattr(self, self.heads[0])(x), dim=1)[:, 1]
        return (*(getattr(self, name)(x) for name in self.heads[1:]), prob)


class RNet(_CropNet):
    """Refinement network on 24x24 crops.

    ``forward``: ``x`` (K, 3, 24, 24) -> (regression (K, 4), face probability (K,)).
    """

    def __init__(self) -> None:
        super().__init__(((3, 28, 3, 3), (28, 48, 3, 3), (48, 64, 2, 0)), 576, 128, (2, 4))


class ONet(_CropNet):
    """Output network on 48x48 crops: box regression, five landmarks, face probability.

    ``forward``: ``x`` (K, 3, 48, 48) -> (regression (K, 4), landmarks (K, 10), probability
    (K,)); landmarks are relative to the crop: five x values, then five y values.
    """

    def __init__(self) -> None:
        convs = ((3, 32, 3, 3), (32, 64, 3, 3), (64, 64, 3, 2), (64, 128, 2, 0))
        super().__init__(convs, 1152, 256, (2, 4, 10))


def _load(net: nn.Module, path: Path, device: torch.device) -> nn.Module:
    state = torch.load(path, map_location="cpu", weights_only=True)
    net.load_state_dict(state)
    return net.to(device=device, dtype=torch.float32).eval().requires_grad_(False)


class MTCNN:
    """Batched MTCNN face detector.

    >>> det = MTCNN.from_folder(ModelCache().path(get_model("mtcnn")))
    >>> [(boxes, scores, landmarks)] = det.detect(rgb_frame[None])
    """

    def __init__(
        self,
        pnet: PNet,
        rnet: RNet,
        onet: ONet,
        device: str | torch.device = "cpu",
        min_face_size: float = 20,
        thresholds: Sequence[float] = (0.6, 0.7, 0.7),
        factor: float = 0.709,
    ) -> None:
        if min_face_size <= 0:
            raise ValueError(f"min_face_size must be positive, got {min_face_size}")
        if not 0 < factor < 1:
            raise ValueError(f"factor must be between 0 and 1, got {factor}")
        if len(thresholds) != 3:
            raise ValueError(f"thresholds needs 3 values (P-, R-, O-Net), got {thresholds!r}")
        self.device = torch.device(device)
        self.pnet, self.rnet, self.onet = pnet, rnet, onet
        self.min_face_size = float(min_face_size)
        self.thresholds = tuple(float(t) for t in thresholds)
        self.factor = float(factor)

    @classmethod
    def from_folder(
        cls,
        folder: str | os.PathLike,
        device: str | torch.device = "cpu",
        min_face_size: float = 20,
        thresholds: Sequence[float] = (0.6, 0.7, 0.7),
        factor: float = 0.709,
    ) -> MTCNN:
        """Load ``pnet.pt``, ``rnet.pt`` and ``onet.pt`` (state dicts) from ``folder``."""
        folder = Path(folder)
        dev = torch.device(device)
        nets = [
            _load(net, folder / f"{name}.pt", dev)
            for net, name in ((PNet(), "pnet"), (RNet(), "rnet"), (ONet(), "onet"))
        ]
        return cls(
            *nets, device=dev, min_face_size=min_face_size, thresholds=thresholds, factor=factor
        )

    # -- public API ---------------------------------------------------------------------------

    def scales(self, height: int, width: int) -> list[float]:
        """Pyramid scales for an image of this size (empty if it is smaller than a face)."""
        scale = 12.0 / self.min_face_size
        minl = min(height, width) * scale
        out = []
        while minl >= 12:
            out.append(scale)
            scale *= self.factor
            minl *= self.factor
        return out

    def detect(self, images: np.ndarray) -> list[Detections]:
        """Detect faces in ``images`` (N, H, W, 3) uint8 RGB (a single (H, W, 3) image is allowed).

        Returns one ``(boxes, scores, landmarks)`` per image: boxes (k, 4) float32 as
        ``x1, y1, x2, y2`` in pixels, scores (k,) float32 (O-Net face probability) and landmarks
        (k, 5, 2) float32 ``(x, y)``; faces are in order of decreasing score.
        """
        images = np.asarray(images)
        if images.ndim == 3:
            images = images[None]
        if images.ndim != 4 or images.shape[-1] != 3:
            raise ValueError(f"expected images shaped (N, H, W, 3), got {images.shape}")
        if images.dtype != np.uint8:
            raise ValueError(f"expected uint8 images, got {images.dtype}")
        n, h, w, _ = images.shape
        if n == 0:
            return []
        if not (images.flags.c_contiguous and images.flags.writeable):
            images = np.array(images, order="C")  # torch.from_numpy wants a writable array
        with torch.inference_mode():
            pixels = torch.from_numpy(images).to(self.device)
            boxes, scores, landmarks, inds = self._detect(pixels)
        boxes, scores = boxes.cpu().numpy(), scores.cpu().numpy()
        landmarks, inds = landmarks.cpu().numpy(), inds.cpu().numpy()
        return [(boxes[inds == i], scores[inds == i], landmarks[inds == i]) for i in range(n)]

    # -- pipeline -----------------------------------------------------------------------------

    def _detect(
        self, pixels: torch.Tensor
    ) -> tuple[torch.Tensor, torch.Tensor, torch.Tensor, torch.Tensor]:
        dev = self.device
        empty = (
            torch.zeros((0, 4), device=dev),
            torch.zeros((0,), device=dev),
            torch.zeros((0, 5, 2), device=dev),
            torch.zeros((0,), dtype=torch.long, device=dev),
        )
        # One summed-area table per image serves the pyramid and the R-/O-Net crops.
        integral = _integral_image(pixels)
        boxes, inds = self._propose(integral)
        if len(boxes) == 0:
            return empty

        # Stage 2: R-Net refines the proposals.
        boxes, inds, (reg, prob) = self._run_on_crops(self.rnet, 24, integral, boxes, inds)
        if len(boxes) == 0:
            return empty
        keep = prob > self.thresholds[1]
        boxes, scores, reg, inds = boxes[keep], prob[keep], reg[keep], inds[keep]
        pick = batched_nms(boxes, scores, inds, 0.7)
        boxes, scores, reg, inds = boxes[pick], scores[pick], reg[pick], inds[pick]
        boxes = _square(_regress(boxes, reg))
        if len(boxes) == 0:
            return empty

        # Stage 3: O-Net gives the final boxes and the landmarks.
        boxes, inds, (reg, marks, prob) = self._run_on_crops(self.onet, 48, integral, boxes, inds)
        if len(boxes) == 0:
            return empty
        keep = prob > self.thresholds[2]
        boxes, scores, reg, marks, inds = (t[keep] for t in (boxes, prob, reg, marks, inds))
        size = boxes[:, 2:4] - boxes[:, 0:2] + 1  # (k, 2): width, height
        landmarks = torch.stack(
            (
                size[:, 0:1] * marks[:, 0:5] + boxes[:, 0:1] - 1,
                size[:, 1:2] * marks[:, 5:10] + boxes[:, 1:2] - 1,
            ),
            dim=2,
        )
        boxes = _regress(boxes, reg)
        pick = _nms_min(boxes, scores, inds, 0.7)
        return boxes[pick], scores[pick], landmarks[pick], inds[pick]

    def _propose(self, integral: torch.Tensor) -> tuple[torch.Tensor, torch.Tensor]:
        """P-Net over the image pyramid -> square candidate boxes (k, 4) and image indices.

        ``integral`` holds the images' summed-area tables (``_integral_image``).
        """
        n, h, w = integral.shape[0], integral.shape[1] - 1, integral.shape[2] - 1
        threshold = self.thresholds[0]
        found: list[tuple[torch.Tensor, ...]] = []
        for level, scale in enumerate(self.scales(h, w)):
            # Channels-last, as P-Net runs fastest; the same values as
            # interpolate(images, size, mode="area") at a fraction of its cost.
            x = _area_resize(integral, int(h * scale + 1), int(w * scale + 1))
            x = ((x - _MEAN) * _SCALE).contiguous(memory_format=torch.channels_last)
            reg, prob = self.pnet(x)
            mask = prob >= threshold
            where = mask.nonzero()  # (k, 3): image, row, column
            if len(where) == 0:
                continue
            cell = where[:, [2, 1]].float()  # (x, y) of each output cell
            corners = torch.cat(
                (
                    torch.floor((_STRIDE * cell + 1) / scale),
                    torch.floor((_STRIDE * cell + _CELL) / scale),
                ),
                dim=1,
            )
            found.append(
                (
                    corners,
                    prob[mask],
                    reg.permute(0, 2, 3, 1)[mask],
                    where[:, 0],
                    where[:, 0] + level * n,
                )
            )
        if not found:
            empty = torch.zeros((0,), dtype=torch.long, device=integral.device)
            return torch.zeros((0, 4), device=integral.device), empty
        boxes, scores, reg, inds, groups = (torch.cat(parts) for parts in zip(*found, strict=True))
        pick = batched_nms(boxes, scores, groups, 0.5)  # per scale and image
        boxes, scores, reg, inds = boxes[pick], scores[pick], reg[pick], inds[pick]
        pick = batched_nms(boxes, scores, inds, 0.7)  # per image
        boxes, reg, inds = boxes[pick], reg[pick], inds[pick]
        wh = (boxes[:, 2:4] - boxes[:, 0:2]).repeat(1, 2)
        return _square(boxes + reg * wh), inds

    def _run_on_crops(
        self,
        net: nn.Module,
        size: int,
        integral: torch.Tensor,
        boxes: torch.Tensor,
        inds: torch.Tensor,
    ) -> tuple[torch.Tensor, torch.Tensor, tuple[torch.Tensor, ...]]:
        """Run ``net`` on the (size x size) crops of ``boxes``; returns (boxes, inds, outputs).

        A box is cut out as facenet-pytorch does: its corners truncated to integers, clipped to
        the image (no zero padding), area-resized. Boxes with an empty clipped region are
        dropped. ``integral[i]`` is image ``i``'s summed-area table. Crops go through the
        net in chunks to bound memory.
        """
        h, w = integral.shape[1] - 1, integral.shape[2] - 1
        corners = torch.trunc(boxes).long()
        x0 = corners[:, 0].clamp(min=1) - 1
        y0 = corners[:, 1].clamp(min=1) - 1
        x1 = corners[:, 2].clamp(max=w)
        y1 = corners[:, 3].clamp(max=h)
        ok = (x1 > x0) & (y1 > y0)
        if not bool(ok.all()):
            boxes, inds, x0, y0, x1, y1 = boxes[ok], inds[ok], x0[ok], y0[ok], x1[ok], y1[ok]
        outputs = []
        for i in range(0, max(len(boxes), 1), _CHUNK):  # one (possibly empty) batch at least
            at = slice(i, i + _CHUNK)
            crops = _area_crops(integral, inds[at], y0[at], y1[at], x0[at], x1[at], size)
            outputs.append(net((crops - _MEAN) * _SCALE))
        return boxes, inds, tuple(torch.cat(parts) for parts in zip(*outputs, strict=True))


def _integral_image(pixels: torch.Tensor) -> torch.Tensor:
    """(N, H, W, 3) uint8 -> (N, H + 1, W + 1, 3) summed-area table with a zero first row/col.

    Integer sums are exact; int32 holds them for images up to about 8.4 megapixels (4K UHD).
    """
    h, w = pixels.shape[1:3]
    dtype = torch.int32 if 255 * h * w < 2**31 else torch.int64
    table = pixels.cumsum(1, dtype=dtype).cumsum(2, dtype=dtype)
    return F.pad(table, (0, 0, 1, 0, 1, 0))


def _area_resize(integral: torch.Tensor, height: int, width: int) -> torch.Tensor:
    """Whole images area-resized to (height, width) from their summed-area tables.

    Returns (N, 3, height, width) float32 laid out channels-last, bit-identical on the CPU to
    ``interpolate(images, size, mode="area")`` (adaptive average pooling): the cells' sums are
    exact integers and are divided as PyTorch's CPU kernel divides them, by the cell's height,
    then its width. Cost grows with the output, not the input, so a pyramid costs about one
    image.
    """
    h, w = integral.shape[1] - 1, integral.shape[2] - 1
    zero = torch.zeros(1, dtype=torch.long, device=integral.device)
    top, bottom = (e[0] for e in _cell_edges(zero, zero + h, height))
    left, right = (e[0] for e in _cell_edges(zero, zero + w, width))
    rows = integral.index_select(1, bottom) - integral.index_select(1, top)
    sums = rows.index_select(2, right) - rows.index_select(2, left)  # (N, height, width, 3)
    cell_h = (bottom - top).float()[:, None, None]
    cell_w = (right - left).float()[None, :, None]
    return (sums.float() / cell_h / cell_w).permute(0, 3, 1, 2)


def _cell_edges(start: torch.Tensor, stop: torch.Tensor, size: int) -> tuple[torch.Tensor, ...]:
    """Adaptive-average-pooling cell edges, as ``interpolate(mode="area")`` computes them.

    Cell ``i`` of ``size`` over ``[start, stop)`` covers ``start + floor(i * L / size)`` up to
    ``start + ceil((i + 1) * L / size)`` where ``L = stop - start``.
    """
    length = (stop - start)[:, None]
    i = torch.arange(size, device=start.device)[None]
    lo = start[:, None] + torch.div(i * length, size, rounding_mode="floor")
    hi = start[:, None] + torch.div((i + 1) * length + size - 1, size, rounding_mode="floor")
    return lo, hi


def _area_crops(
    integral: torch.Tensor,
    inds: torch.Tensor,
    y0: torch.Tensor,
    y1: torch.Tensor,
    x0: torch.Tensor,
    x1: torch.Tensor,
    size: int,
) -> torch.Tensor:
    """Area-resize ``image[inds, y0:y1, x0:x1]`` to (size, size) for every box at once.

    Returns (k, 3, size, size) float32, equal to ``interpolate(crop, size, mode="area")``.
    """
    top, bottom = _cell_edges(y0, y1, size)  # (k, size)
    left, right = _cell_edges(x0, x1, size)
    b = inds[:, None, None]
    t, bo = top[:, :, None], bottom[:, :, None]
    le, ri = left[:, None, :], right[:, None, :]
    sums = integral[b, bo, ri] - integral[b, t, ri] - integral[b, bo, le] + integral[b, t, le]
    area = ((bo - t) * (ri - le)).float()
    return (sums.float() / area[..., None]).permute(0, 3, 1, 2)


def _regress(boxes: torch.Tensor, reg: torch.Tensor) -> torch.Tensor:
    """Apply R-/O-Net box regression (offsets relative to the ``+1`` width and height)."""
    wh = (boxes[:, 2:4] - boxes[:, 0:2] + 1).repeat(1, 2)
    return boxes + reg * wh


def _square(boxes: torch.Tensor) -> torch.Tensor:
    """Grow each box to a square of its longer side around the same centre."""
    wh = boxes[:, 2:4] - boxes[:, 0:2]
    side = wh.max(dim=1, keepdim=True).values
    start = boxes[:, 0:2] + wh * 0.5 - side * 0.5
    return torch.cat((start, start + side), dim=1)


def _nms_min(
    boxes: torch.Tensor, scores: torch.Tensor, inds: torch.Tensor, threshold: float
) -> torch.Tensor:
    """Greedy NMS per image where overlap = intersection / smaller area (``+1`` pixel sizes).

    Returns the kept indices in order of decreasing score.
    """
    k = len(boxes)
    if k == 0:
        return torch.zeros((0,), dtype=torch.long, device=boxes.device)
    b = boxes.cpu().numpy()
    s = scores.cpu().numpy()
    same = (inds[:, None] == inds[None, :]).cpu().numpy()
    area = (b[:, 2] - b[:, 0] + 1) * (b[:, 3] - b[:, 1] + 1)
    iw = np.minimum(b[:, None, 2], b[None, :, 2]) - np.maximum(b[:, None, 0], b[None, :, 0]) + 1
    ih = np.minimum(b[:, None, 3], b[None, :, 3]) - np.maximum(b[:, None, 1], b[None, :, 1]) + 1
    inter = np.maximum(iw, 0) * np.maximum(ih, 0)
    overlap = inter / np.minimum(area[:, None], area[None, :])
    suppresses = same & (overlap > threshold)
    removed = np.zeros(k, dtype=bool)
    keep = []
    for i in np.argsort(-s, kind="stable"):  # one pass over the few O-Net survivors
        if removed[i]:
            continue
        keep.append(i)
        removed |= suppresses[i]
    return torch.as_tensor(np.array(keep, dtype=np.int64), device=boxes.device)
