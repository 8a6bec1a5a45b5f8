"""Face extractors: the shared face stage (``faces``) and the expression net (``face_expr``).

``faces`` runs once per input and chunk; every face extractor requires it and receives its
per-frame boxes in ``chunk.upstream["faces"]``. Its output (box, score, 5 landmarks, track
id, number of faces) is stored like any other stream, so crops are reproducible.
"""

from __future__ import annotations

import numpy as np

import emofeat
from emofeat import Extractor, ModelInfo, Rows, Setting, StreamSpec
from emofeat.models import ModelCache, get_model

from .tracking import Detection, Tracker, detection_frames, interpolate

FACE_LABELS = (
    "x1", "y1", "x2", "y2", "score",
    *[f"lm{i}_{a}" for i in range(5) for a in ("x", "y")],
    "track_id", "n_faces",
)  # fmt: skip
EXPRESSION_LABELS = ("neutral", "happy", "sad", "angry", "fearful", "disgusted", "surprised")
_ROW = 15  # box (4) + score (1) + landmarks (10): what is interpolated between detections


def _cache(config: dict) -> ModelCache:
    return ModelCache(config.get("cache_dir") or None)


def _model_info(name: str, config: dict) -> ModelInfo:
    m = get_model(name)
    return ModelInfo(m.id, m.sha256, m.license, str(_cache(config).folder(m)))


def _torch_device(device: str):
    import torch

    if device.startswith("cuda") and not torch.cuda.is_available():
        raise emofeat.ConfigError(f"device {device!r} requested but CUDA is not available")
    return torch.device(device)


class FaceStage(Extractor):
    """Face detection (MTCNN), tracking between detections and target-subject selection."""

    name = "faces"
    version = "1"
    modality = "video"
    license = "MIT (MTCNN weights from facenet-pytorch)"
    description = "face boxes, 5 landmarks, scores and track ids per frame (MTCNN + tracking)"
    settings = {
        "detector": Setting(
            "auto",
            "mtcnn, none (frames are face crops) or auto (none for "
            "image folders, mtcnn for videos)",
            ("auto", "mtcnn", "none"),
        ),
        "detect_every": Setting(
            5,
            "run the detector on every k-th frame (1: every frame); "
            "boxes in between are interpolated",
        ),
        "subject": Setting(
            "largest", "which face to follow", ("largest", "left", "right", "centre")
        ),
        "min_face": Setting(20, "smallest face searched, pixels"),
        "thresholds": Setting([0.6, 0.7, 0.7], "MTCNN P/R/O-Net score thresholds"),
        "max_gap": Setting(10, "longest run of frames interpolated between detections"),
        "cache_dir": Setting("", "model cache (default: emofeat's cache)"),
    }

    @classmethod
    def check_config(cls, config):
        if config["detect_every"] < 1:
            raise emofeat.ConfigError("faces.detect_every must be >= 1")
        if len(config["thresholds"]) != 3:
            raise emofeat.ConfigError("faces.thresholds needs three values (P, R, O-Net)")

    def __init__(self, config=None, device="cpu"):
        super().__init__(config, device)
        self._mtcnn = None

    def streams(self):
        return [StreamSpec("face", FACE_LABELS, "frame", "video frames")]

    def model(self):
        if self.config["detector"] == "none":
            return ModelInfo(license=self.license)
        return _model_info("mtcnn", self.config)

    def _detector(self):
        if self._mtcnn is None:
            from .mtcnn import MTCNN

            folder = _cache(self.config).path(get_model("mtcnn"))
            self._mtcnn = MTCNN.from_folder(
                folder,
                device=str(_torch_device(self.device)),
                min_face_size=self.config["min_face"],
                thresholds=tuple(float(t) for t in self.config["thresholds"]),
            )
        return self._mtcnn

    def begin(self, info):
        det = self.config["detector"]
        self.detect = det == "mtcnn" or (det == "auto" and info.kind != "images")
        self.period = 1.0 / float(info.fps or 30.0)
        self.tracker = Tracker(self.config["subject"], info.width, info.height)
        if self.detect:
            self._detector()

    def process(self, chunk):
        n = len(chunk.frames)
        ends = chunk.times + self.period
        if not self.detect:  # the frames are face crops already: the whole frame is the face
            h, w = chunk.frames.shape[1:3]
            rows = np.zeros((n, len(FACE_LABELS)), np.float32)
            rows[:, 2], rows[:, 3], rows[:, 4] = w, h, 1.0
            rows[:, -1] = 1
            yield Rows("face", rows, chunk.times, ends)
            return
        positions = detection_frames(n, self.config["detect_every"])
        results = self._detector().detect(chunk.frames[positions])
        subject: dict[int, np.ndarray] = {}
        extra = np.zeros((n, 2), np.float32)  # track id, number of faces
        extra[:, 0] = -1
        for pos, (boxes, scores, landmarks) in zip(positions, results, strict=True):
            det = Detection(
                np.asarray(boxes, np.float32),
                np.asarray(scores, np.float32),
                np.asarray(landmarks, np.float32).reshape(-1, 5, 2),
            )
            ids = self.tracker.update(det)
            extra[pos, 1] = len(det.boxes)
            k = self.tracker.select(det, ids)
            if k >= 0:
                subject[pos] = np.concatenate(
                    [det.boxes[k], det.scores[k : k + 1], det.landmarks[k].reshape(-1)]
                )
                extra[pos, 0] = ids[k]
        values, valid = interpolate(subject, n, self.config["max_gap"])
        rows = np.zeros((n, len(FACE_LABELS)), np.float32)
        if values.shape[1]:
            rows[:, :_ROW] = values
        # frames between detections carry the track id of the detection before them
        last_id, last_n = -1.0, 0.0
        for i in range(n):
            if i in subject or extra[i, 0] >= 0:
                last_id = extra[i, 0]
            if i in positions:
                last_n = extra[i, 1]
            rows[i, -2] = last_id if valid[i] else -1
            rows[i, -1] = last_n
        yield Rows("face", rows, chunk.times, ends, valid=valid)


class FaceExpression(Extractor):
    """face-api.js FaceExpressionNet (PyTorch port): 256-d embedding + 7 expression classes."""

    name = "face_expr"
    version = "1"
    modality = "video"
    requires = ("faces",)
    license = "MIT (face-api.js FaceExpressionNet weights)"
    description = "expression net on 112 px face crops: 256-d embedding + 7 class probabilities"
    settings = {
        "margin": Setting(0.1, "box enlargement before squaring (fraction of the box side)"),
        "batch_size": Setting(64, "crops per forward pass"),
        "cache_dir": Setting("", "model cache (default: emofeat's cache)"),
    }

    def __init__(self, config=None, device="cpu"):
        super().__init__(config, device)
        self.net = None  # loaded on first use: listing plugins must not load models

    def _load(self):
        if self.net is None:
            from .expression_net import FaceExpressionNet

            folder = _cache(self.config).path(get_model("face-expression"))
            self.torch_device = _torch_device(self.device)
            self.net = FaceExpressionNet.from_folder(folder).to(self.torch_device).eval()
        return self.net

    def streams(self):
        return [
            StreamSpec("embedding", tuple(f"emb{i}" for i in range(256)), "frame", "video frames"),
            StreamSpec("probs", EXPRESSION_LABELS, "frame", "video frames"),
        ]

    def model(self):
        return _model_info("face-expression", self.config)

    def begin(self, info):
        self._load()
        self.last_box: np.ndarray | None = None

    def process(self, chunk):
        import torch

        from .crops import crop_faces
        from .expression_net import preprocess

        (faces,) = chunk.upstream["faces"]
        n = len(chunk.frames)
        boxes = faces.data[:, :4].copy()
        valid = faces.valid.copy() if faces.valid is not None else np.ones(n, bool)
        # frames without a face reuse the previous crop (as the paper does) but are masked
        for i in range(n):
            if valid[i]:
                self.last_box = boxes[i]
            elif self.last_box is not None:
                boxes[i] = self.last_box
        usable = valid | (self.last_box is not None)
        if not usable.any():
            yield Rows("embedding", np.zeros((n, 256)), chunk.times, faces.end, valid=valid)
            yield Rows("probs", np.zeros((n, 7)), chunk.times, faces.end, valid=valid)
            return
        h, w = chunk.frames.shape[1:3]
        full = np.all(boxes == np.array([0, 0, w, h], np.float32), axis=1)
        idx = np.nonzero(usable)[0]
        emb = np.zeros((n, 256), np.float32)
        probs = np.zeros((n, 7), np.float32)
        bs = self.config["batch_size"]
        for a in range(0, len(idx), bs):
            sel = idx[a : a + bs]
            margins = np.where(full[sel], 0.0, self.config["margin"])
            crops = crop_faces(chunk.frames[sel], boxes[sel], 112, margins)
            with torch.inference_mode():
                e, p = self.net(preprocess(crops).to(self.torch_device))
            emb[sel], probs[sel] = e.float().cpu().numpy(), p.float().cpu().numpy()
        yield Rows("embedding", emb, chunk.times, faces.end, valid=valid)
        yield Rows("probs", probs, chunk.times, faces.end, valid=valid)
