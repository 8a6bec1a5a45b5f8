"""Face extractors: the shared face stage (``faces``) and the expression net (``face_expr``).

``faces`` runs once per input and chunk; every face extractor requires it and receives its
per-frame boxes in ``chunk.upstream["faces"]``. Its output (box, score, 5 landmarks, track
id, number of faces) is stored like any other stream, so crops are reproducible.
"""

from __future__ import annotations

import importlib.util
import sys
from pathlib import Path

import numpy as np

import emofeat
from emofeat import Extractor, ModelInfo, Rows, Setting, StreamSpec
from emofeat.models import ModelCache, ModelError, find_user_model, get_model

from .tracking import Detection, Tracker, detection_frames, interpolate

FACE_LABELS = (
    "x1", "y1", "x2", "y2", "score",
    *[f"lm{i}_{a}" for i in range(5) for a in ("x", "y")],
    "track_id", "n_faces",
)  # fmt: skip
EXPRESSION_LABELS = ("neutral", "happy", "sad", "angry", "fearful", "disgusted", "surprised")
BACKENDS = ("torch", "onnx")
_ROW = 15  # box (4) + score (1) + landmarks (10): what is interpolated between detections

#: the pooled feature width (timm's ``num_features``) of the architectures the timm extractors
#: run by default or commonly, declared so that describing them (``streams()``, what
#: ``emofeat plugins`` lists) imports neither torch nor timm; another architecture's width is
#: computed by timm (on the meta device: no weights). Checked against timm by
#: tests/test_face_extractors.py and, for the extractors' defaults, by tests/test_contract.py.
TIMM_WIDTHS = {
    "efficientnet_b0": 1280,
    "efficientnet_b1": 1280,
    "efficientnet_lite0": 1280,
    "vit_base_patch16_224": 768,
    "vit_tiny_patch16_224": 192,
}


def _cache(config: dict) -> ModelCache:
    return ModelCache(config.get("cache_dir") or None)


def _model_info(name: str, config: dict) -> ModelInfo:
    m = get_model(name)
    return ModelInfo(m.id, m.sha256, m.license, str(_cache(config).folder(m)))


def _require(*modules: str) -> None:
    """Raise the ``ModuleNotFoundError`` importing ``modules`` would raise when one is not
    installed, without importing any (``find_spec`` of a top-level name imports nothing)."""
    for module in modules:
        if importlib.util.find_spec(module) is None:
            raise ModuleNotFoundError(f"No module named {module!r}", name=module)


def _torch_device(device: str):
    import torch

    if device.startswith("cuda") and not torch.cuda.is_available():
        raise emofeat.ConfigError(f"device {device!r} requested but CUDA is not available")
    return torch.device(device)


class HaarDetector:
    """OpenCV's frontal-face Haar cascade behind MTCNN's ``detect`` interface.

    It gives boxes only: scores are 1 and the 5 landmarks are left at 0. It misses profiles;
    it is the fallback when the MTCNN weights cannot be obtained.
    """

    def __init__(self, min_face: int = 20) -> None:
        import cv2

        path = Path(cv2.data.haarcascades) / "haarcascade_frontalface_default.xml"
        self.cascade = cv2.CascadeClassifier(str(path))
        if self.cascade.empty():
            raise RuntimeError(f"OpenCV cannot read its Haar cascade {path}")
        self.min_face = int(min_face)
        self.cv2 = cv2

    def detect(self, images: np.ndarray):
        out = []
        for img in images:
            gray = self.cv2.cvtColor(np.ascontiguousarray(img), self.cv2.COLOR_RGB2GRAY)
            found = self.cascade.detectMultiScale(
                gray, scaleFactor=1.1, minNeighbors=5, minSize=(self.min_face, self.min_face)
            )
            boxes = np.array([[x, y, x + w, y + h] for x, y, w, h in found], np.float32)
            boxes = boxes.reshape(-1, 4)
            out.append(
                (boxes, np.ones(len(boxes), np.float32), np.zeros((len(boxes), 5, 2), np.float32))
            )
        return out


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
            "mtcnn; haar (OpenCV Haar cascade: no landmarks, misses profiles); none (frames "
            "are face crops); auto = none for image folders, else mtcnn, falling back to "
            "haar when the MTCNN weights cannot be obtained",
            ("auto", "mtcnn", "haar", "none"),
        ),
        "detect_every": Setting(
            3,
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
        self._haar = None

    def streams(self):
        return [StreamSpec("face", FACE_LABELS, "frame", "video frames")]

    def model(self):
        used = getattr(self, "used", self.config["detector"])
        if used == "haar":
            return ModelInfo(
                "opencv-haarcascade_frontalface_default",
                "",
                "BSD-3-Clause",
                "opencv-python-headless",
            )
        if used in ("none", "auto") and self.config["detector"] != "mtcnn":
            return ModelInfo(license=self.license)
        return _model_info("mtcnn", self.config)

    def _detector(self):
        if self.used == "haar":
            if self._haar is None:
                self._haar = HaarDetector(self.config["min_face"])
            return self._haar
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
        self.used = "none" if det == "auto" and info.kind == "images" else det
        if self.used == "auto":
            try:
                self.used = "mtcnn"
                self._detector()
            except ModelError as exc:  # offline without the weights: the weaker fallback
                print(
                    f"emofeat faces: MTCNN unavailable ({str(exc).splitlines()[0]}); "
                    "using OpenCV's Haar cascade",
                    file=sys.stderr,
                )
                self.used = "haar"
        self.detect = self.used != "none"
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
        # On CPU, one frame per call: a frame's boxes then never depend on which frames share
        # its batch (batched convolutions sum in another order and move boxes by ~1e-4 px),
        # and batching buys nothing there (measured: 1 frame 37 ms, 4 frames 33 ms/frame,
        # 32 frames 48 ms/frame). On a GPU, one call per chunk.
        step = len(positions) if self.used == "mtcnn" and self.device != "cpu" else 1
        results = []
        for a in range(0, len(positions), step):
            results.extend(self._detector().detect(chunk.frames[positions[a : a + step]]))
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


def _crop_settings(batch_size: int) -> dict[str, Setting]:
    """Settings every face-crop extractor has."""
    return {
        "margin": Setting(0.1, "box enlargement before squaring (fraction of the box side)"),
        "align": Setting(False, "rotate each crop so the eyes are level (MTCNN landmarks)"),
        "batch_size": Setting(
            batch_size,
            "crops per forward pass (crops of a chunk's frames are batched together; "
            "outputs do not depend on it beyond float rounding, 1e-5)",
        ),
        "half": Setting(False, "half precision (CUDA only, backend=torch)"),
        "backend": Setting(
            "torch",
            "torch, or onnx: the net exported once to ONNX (cached in the model cache, "
            "checked equal to torch within 1e-4) and run by ONNX Runtime",
            BACKENDS,
        ),
        "int8": Setting(
            False,
            "backend=onnx: dynamic INT8 quantisation of the net's MatMul/Gemm weights "
            "(made once, cached; agreement with fp32 in docs/benchmarks.md)",
        ),
        "cache_dir": Setting("", "model cache (default: emofeat's cache)"),
    }


class _FaceCropExtractor(Extractor):
    """Shared by face extractors: crops from the face stage's boxes, batched inference.

    Frames without a face reuse the previous face's box (as the paper does) so they still
    get values, but they are masked. Frames before the first face get zeros, masked.
    Subclasses set ``input_size`` and implement ``_load()`` (sets ``self.net``, float32),
    ``_inputs(crops)`` (float crops -> the net's input tensor) and ``_outputs(raw)`` (the
    net's outputs by name -> the streams' values). The net runs on torch
    (``backend=torch``) or, exported once to ONNX, on ONNX Runtime (``backend=onnx``).
    """

    modality = "video"
    requires = ("faces",)
    input_size = 112

    @classmethod
    def check_config(cls, config):
        if int(config["batch_size"]) < 1:
            raise emofeat.ConfigError(f"{cls.name}.batch_size must be >= 1")
        if config["int8"] and config["backend"] != "onnx":
            raise emofeat.ConfigError(
                f"{cls.name}.int8 applies to backend=onnx only (--set {cls.name}.backend=onnx)"
            )
        if config["half"] and config["backend"] != "torch":
            raise emofeat.ConfigError(f"{cls.name}.half applies to backend=torch only")

    def __init__(self, config=None, device="cpu"):
        super().__init__(config, device)
        self.net = None  # loaded on first use: listing plugins must not load models
        self._onnx = None
        self._tuned = False

    def prepare(self):
        """Load the net once, before any input (a missing download fails the run once)."""
        import torch

        self.torch_device = _torch_device(self.device)
        onnx = self.config["backend"] == "onnx"
        if onnx:  # the torch net is only exported: keep it on the CPU in float32
            self.torch_device = torch.device("cpu")
        half = bool(self.config.get("half")) and self.torch_device.type == "cuda"
        self.dtype = torch.float16 if half else torch.float32
        self._load()
        if onnx:
            self._load_onnx()
        elif not self._tuned:
            self._tuned = True
            if self.torch_device.type == "cpu" and self.dtype == torch.float32:
                from .speed import tune_for_cpu

                tune_for_cpu(self.net, self.channels_last, self.onednn_linear)

    #: CPU float32 inference with channels-last tensors (measured faster: timm CNNs)
    channels_last = False
    #: CPU float32 inference with oneDNN linear layers (measured faster: ViT)
    onednn_linear = False

    def begin(self, info):
        self.prepare()
        self.last_box: np.ndarray | None = None

    def _load(self):
        raise NotImplementedError

    def _load_tfjs(self, net_class, model_name: str) -> None:
        """Load a face-api.js net from the registry model ``model_name`` (once)."""
        if self.net is None:
            folder = _cache(self.config).path(get_model(model_name))
            self.net = net_class.from_folder(folder).to(self.torch_device, self.dtype).eval()

    def _load_onnx(self) -> None:
        """Export the net to ONNX (once per weights, cached) and open an ORT session."""
        if self._onnx is not None:
            return
        from .onnx_backend import OnnxExportError, OnnxNet

        rng = np.random.default_rng(0)  # the check batch: 2 crops of noise in 0..255
        crops = rng.uniform(0, 255, (2, self.input_size, self.input_size, 3)).astype(np.float32)
        folder = self._export_folder()
        try:
            self._onnx = OnnxNet(
                self.net,
                self._inputs(crops),
                folder,
                int8=bool(self.config["int8"]),
                device=self.device,
            )
        except OnnxExportError as exc:
            raise emofeat.ConfigError(f"{self.name}.backend=onnx: {exc}") from None

    def _export_folder(self) -> Path:
        """Where ``backend=onnx`` keeps its exports: ``<cache>/onnx-exports/<name>``."""
        return _cache(self.config).root / "onnx-exports" / self.name

    def _backend_info(self, info: ModelInfo) -> ModelInfo:
        """The model's provenance, naming the ONNX file run when ``backend=onnx``."""
        if self.config["backend"] != "onnx":
            return info
        tag = "+onnx-int8" if self.config["int8"] else "+onnx"
        source = str(self._onnx.path) if self._onnx is not None else info.source
        return ModelInfo(info.id + tag, info.sha256, info.license, source)

    def _inputs(self, crops: np.ndarray):
        """float32 crops ``(n, S, S, 3)`` in 0..255 -> the net's float32 input tensor."""
        raise NotImplementedError

    def _outputs(self, raw: dict[str, np.ndarray]) -> dict[str, np.ndarray]:
        """The net's outputs (by name, float32 numpy) -> the streams' values."""
        raise NotImplementedError

    def _forward(self, x) -> dict[str, np.ndarray]:
        """Run the net (torch or ONNX Runtime) on one batch; outputs by name, float32."""
        import torch

        if self._onnx is not None:
            return self._onnx(x.numpy())
        from .onnx_backend import named_outputs

        with torch.inference_mode():
            x = x.to(self.torch_device, self.dtype)
            if self.channels_last and self.torch_device.type == "cpu":
                x = x.contiguous(memory_format=torch.channels_last)
            out = named_outputs(self.net(x))
        return {k: v.float().cpu().numpy() for k, v in out.items()}

    def _infer(self, crops: np.ndarray) -> dict[str, np.ndarray]:
        """float32 crops ``(n, S, S, 3)`` in 0..255 -> the streams' values for them."""
        return self._outputs(self._forward(self._inputs(crops)))

    def process(self, chunk):
        from .crops import crop_faces

        (faces,) = chunk.upstream["faces"]
        n = len(chunk.frames)
        boxes = faces.data[:, :4].copy()
        eyes = faces.data[:, 5:9].reshape(n, 2, 2).copy()  # lm0 (left eye), lm1 (right eye)
        valid = faces.valid.copy() if faces.valid is not None else np.ones(n, bool)
        has_box = np.zeros(n, bool)
        for i in range(n):
            if valid[i]:
                self.last_box, self.last_eyes = boxes[i], eyes[i]
            elif self.last_box is not None:
                boxes[i], eyes[i] = self.last_box, self.last_eyes
            has_box[i] = self.last_box is not None
        h, w = chunk.frames.shape[1:3]
        full = np.all(boxes == np.array([0, 0, w, h], np.float32), axis=1)
        out = {s.name: np.zeros((n, s.dims), np.float32) for s in self.streams()}
        idx = np.nonzero(has_box)[0]
        bs = self.config["batch_size"]
        for a in range(0, len(idx), bs):
            sel = idx[a : a + bs]
            margins = np.where(full[sel], 0.0, self.config["margin"])
            crops = crop_faces(
                chunk.frames[sel],
                boxes[sel],
                self.input_size,
                margins,
                eyes=eyes[sel] if self.config["align"] else None,
                as_float=True,
            )
            for name, values in self._infer(crops).items():
                out[name][sel] = values
        for name, values in out.items():
            yield Rows(name, values, chunk.times, faces.end, valid=valid)


class FaceExpression(_FaceCropExtractor):
    """face-api.js FaceExpressionNet (PyTorch port): 256-d embedding + 7 expression classes."""

    name = "face_expr"
    version = "1"
    license = "MIT (face-api.js FaceExpressionNet weights)"
    description = "expression net on 112 px face crops: 256-d embedding + 7 class probabilities"
    settings = _crop_settings(batch_size=64)

    def _load(self):
        from .expression_net import FaceExpressionNet

        self._load_tfjs(FaceExpressionNet, "face-expression")

    def _inputs(self, crops):
        from .expression_net import preprocess

        return preprocess(crops)

    def _outputs(self, raw):
        return {"embedding": raw["out0"], "probs": raw["out1"]}

    def streams(self):
        return [
            StreamSpec("embedding", tuple(f"emb{i}" for i in range(256)), "frame", "video frames"),
            StreamSpec("probs", EXPRESSION_LABELS, "frame", "video frames"),
        ]

    def model(self):
        return self._backend_info(_model_info("face-expression", self.config))


class _TimmFace(_FaceCropExtractor):
    """A timm backbone on face crops: pretrained tags, a fine-tuned checkpoint, or lite0."""

    arch = ""
    version = "1"

    @classmethod
    def _settings(cls, arch: str, size: int, batch_size: int) -> dict[str, Setting]:
        return {
            "arch": Setting(arch, "timm architecture (ignored for checkpoints)"),
            "weights": Setting(
                "timm",
                "timm (timm's pretrained tag, downloaded by timm), lite0-imagenet (offline "
                "ImageNet EfficientNet-Lite0 from the registry), random (untrained, for "
                "tests), or the path of a checkpoint written by emofeat's fine-tuning recipe",
            ),
            "model": Setting(
                "",
                "a fine-tuned checkpoint: its path, or the name given to it with "
                "'emofeat models import' (alias of weights=PATH)",
            ),
            "input_size": Setting(size, "crop side in pixels (checkpoints carry their own)"),
            **_crop_settings(batch_size),
        }

    def _weights(self) -> str:
        return self.config["model"] or self.config["weights"]

    def __init__(self, config=None, device="cpu"):
        super().__init__(config, device)
        self.meta: dict = {}
        self._registered = None  # the registry entry of a checkpoint imported under a name
        w = self._weights()
        self._ckpt = w
        if w not in ("timm", "lite0-imagenet", "random"):
            from .backbones import FORMAT

            try:
                found = find_user_model(w, self.config.get("cache_dir") or None)
            except ModelError as exc:
                raise emofeat.ConfigError(f"{self.name}: {exc}") from None
            if found is not None:  # 'emofeat models import NAME checkpoint.pt'
                self._registered, resolved = found
                if resolved.is_dir():
                    found = sorted(resolved.glob("*.pt"))
                    if len(found) != 1:
                        raise emofeat.ConfigError(
                            f"{self.name}: model {w!r} ({resolved}) holds {len(found)} .pt "
                            "files; import the checkpoint file itself"
                        )
                    resolved = found[0]
                self._ckpt = str(resolved)
            path = Path(self._ckpt)
            if not path.is_file():
                raise emofeat.ConfigError(
                    f"{self.name}: checkpoint {w} does not exist (a .pt file written by "
                    "face_finetune, or a name given to one with 'emofeat models import')"
                )
            import torch

            ckpt = torch.load(path, map_location="cpu", weights_only=True)
            if not isinstance(ckpt, dict) or ckpt.get("format") != FORMAT:
                raise emofeat.ConfigError(f"{self.name}: {w} is not an emofeat face checkpoint")
            self.meta = {k: v for k, v in ckpt.items() if k != "state_dict"}
        self.input_size = int(self.meta.get("input_size", self.config["input_size"]))

    def _export_folder(self) -> Path:
        if self._weights() != "random":
            return super()._export_folder()
        # untrained weights differ in every process: their exports are not worth keeping
        import tempfile

        self._random_exports = tempfile.TemporaryDirectory(prefix="emofeat-onnx-")
        return Path(self._random_exports.name)

    def _arch(self) -> str:
        if self.meta:
            return self.meta["arch"]
        return "efficientnet_lite0" if self._weights() == "lite0-imagenet" else self.config["arch"]

    def _load(self):
        if self.net is not None:
            return
        import torch

        from .backbones import FaceModel, load_checkpoint, load_lite0_imagenet

        w = self._weights()
        if self.meta:
            model, _ = load_checkpoint(self._ckpt)
            mean, std = self.meta["mean"], self.meta["std"]
        elif w == "lite0-imagenet":
            model = FaceModel("efficientnet_lite0")
            folder = _cache(self.config).path(get_model("efficientnet-lite0-imagenet"))
            load_lite0_imagenet(model, next(folder.glob("*.pth")))
            mean = std = (0.5, 0.5, 0.5)
        else:
            try:
                model = FaceModel(self._arch(), pretrained=(w == "timm"))
            except Exception as exc:
                raise RuntimeError(
                    f"{self.name}: cannot load timm's pretrained {self._arch()} weights ({exc}); "
                    "offline, use --set "
                    f"{self.name}.weights=lite0-imagenet or a fine-tuned checkpoint"
                ) from exc
            cfg = model.backbone.pretrained_cfg
            mean, std = (
                cfg.get("mean", (0.485, 0.456, 0.406)),
                cfg.get("std", (0.229, 0.224, 0.225)),
            )
        self.mean = torch.tensor(mean, dtype=torch.float32).view(1, 3, 1, 1)
        self.std = torch.tensor(std, dtype=torch.float32).view(1, 3, 1, 1)
        self.net = model.eval().to(self.torch_device, self.dtype)
        self.mean, self.std = self.mean.to(self.torch_device), self.std.to(self.torch_device)

    def _inputs(self, crops):
        import torch

        # crops are float32 in 0..255 (not rounded); normalised on the net's device (the CPU
        # with backend=onnx)
        x = torch.from_numpy(crops).to(self.torch_device).permute(0, 3, 1, 2).float() / 255.0
        return (x - self.mean) / self.std

    def _outputs(self, raw):
        res = {}
        if "embedding" in raw:
            res["embedding"] = raw["embedding"]
        else:
            res["features"] = raw["features"]
        if "expr" in raw:
            import torch

            res["expr"] = torch.softmax(torch.from_numpy(raw["expr"]), dim=1).numpy()
        if "va" in raw:
            res["va"] = raw["va"]
        return res

    def streams(self):
        if self.meta:
            emb = int(self.meta.get("embedding_dim", 0))
            heads = self.meta.get("heads") or {}
            labels = self.meta.get("labels") or {}
            out = []
            if emb:
                out.append(
                    StreamSpec(
                        "embedding", tuple(f"emb{i}" for i in range(emb)), "frame", "video frames"
                    )
                )
            else:
                n = int(self.meta.get("num_features", 0))
                out.append(
                    StreamSpec(
                        "features", tuple(f"f{i}" for i in range(n)), "frame", "video frames"
                    )
                )
            for head, k in heads.items():
                names = tuple(labels.get(head) or [f"{head}{i}" for i in range(k)])
                out.append(StreamSpec(head, names, "frame", "video frames"))
            return out
        if self.net is not None:
            feat = self.net.backbone.num_features
        elif self._arch() in TIMM_WIDTHS:
            _require("torch", "timm")  # what running it needs: still named when missing
            feat = TIMM_WIDTHS[self._arch()]
        else:
            import timm
            import torch

            with torch.device("meta"):  # only the width is needed: allocate no weights
                feat = timm.create_model(self._arch(), pretrained=False, num_classes=0).num_features
        return [
            StreamSpec("features", tuple(f"f{i}" for i in range(feat)), "frame", "video frames")
        ]

    def model(self):
        return self._backend_info(self._model())

    def _model(self) -> ModelInfo:
        w = self._weights()
        if self._registered is not None:
            m = self._registered
            return ModelInfo(m.id, m.sha256, m.license, self._ckpt)
        if self.meta:
            from emofeat.models import sha256_file

            return ModelInfo(
                f"checkpoint:{Path(w).name}",
                sha256_file(Path(w)),
                str(self.meta.get("config", {}).get("license", self.license)),
                w,
            )
        if w == "lite0-imagenet":
            return _model_info("efficientnet-lite0-imagenet", self.config)
        return ModelInfo(
            f"timm:{self._arch()}" + (".random" if w == "random" else ""), "", self.license, "timm"
        )


class FaceCNN(_TimmFace):
    """A timm CNN on face crops (default EfficientNet-B1 at 240 px)."""

    name = "face_cnn"
    license = "Apache-2.0 (timm); weights: per their source"
    description = "timm CNN on face crops (efficientnet_b1, 240 px): embedding or pooled features"
    settings = _TimmFace._settings("efficientnet_b1", 240, batch_size=4)
    channels_last = True
    onednn_linear = True


class FaceViT(_TimmFace):
    """A timm ViT on face crops (default ViT-B/16 at 224 px)."""

    name = "vit"
    license = "Apache-2.0 (timm); weights: per their source"
    description = "timm ViT on face crops (vit_base_patch16_224): embedding or pooled features"
    settings = _TimmFace._settings("vit_base_patch16_224", 224, batch_size=4)
    onednn_linear = True


def _shoelace(points: np.ndarray) -> np.ndarray:
    """Polygon area of (n, k, 2) point sets."""
    x, y = points[..., 0], points[..., 1]
    return 0.5 * np.abs((x * np.roll(y, -1, -1) - np.roll(x, -1, -1) * y).sum(-1))


class Mouth(_FaceCropExtractor):
    """68-point landmarks (face-api.js) and mouth openness: a visual voice-activity cue."""

    name = "mouth"
    version = "1"
    input_size = 112
    license = "MIT (face-api.js FaceLandmark68Net weights)"
    description = "68 face landmarks (crop-relative) + inner-lip area and mouth-open ratio"
    settings = _crop_settings(batch_size=64)

    def _load(self):
        from .landmark_net import FaceLandmark68Net

        self._load_tfjs(FaceLandmark68Net, "face-landmarks-68")

    def _inputs(self, crops):
        from .expression_net import preprocess

        return preprocess(crops)

    def _outputs(self, raw):
        pts = raw["out0"]
        inner = pts[:, 60:68]  # inner lip contour
        width = np.linalg.norm(pts[:, 54] - pts[:, 48], axis=1)
        gap = np.mean(
            [
                np.linalg.norm(pts[:, a] - pts[:, b], axis=1)
                for a, b in ((61, 67), (62, 66), (63, 65))
            ],
            axis=0,
        )
        mouth = np.stack([_shoelace(inner), gap / np.maximum(width, 1e-6)], axis=1)
        return {"landmarks": pts.reshape(len(pts), -1), "mouth": mouth}

    def streams(self):
        lm = tuple(f"p{i}_{a}" for i in range(68) for a in ("x", "y"))
        return [
            StreamSpec("landmarks", lm, "frame", "video frames"),
            StreamSpec("mouth", ("inner_lip_area", "open_ratio"), "frame", "video frames"),
        ]

    def model(self):
        return self._backend_info(_model_info("face-landmarks-68", self.config))


class MouthOpen(Extractor):
    """The paper's mouth-open flag: rolling mean of the mouth-open ratio above the video mean."""

    name = "mouth_open"
    version = "1"
    modality = "features"
    license = "MIT (no model)"
    description = "1 where the 30-frame rolling mean of mouth.open_ratio exceeds its video mean"
    settings = {"frames": Setting(30, "rolling-mean length in frames")}

    def streams(self):
        return [StreamSpec("open", ("mouth_open",), "frame", "video frames")]

    def sources(self, stored):
        if ("mouth", "mouth", "frame") in stored.streams():
            return [("mouth", "mouth")]
        raise emofeat.SkipExtractor("needs the mouth extractor's output (--plugin mouth)")

    def process_stored(self, source, grid):
        # the flag compares with the whole video's mean: one pass over a 2-value stream
        data, mask = source.read_aligned("mouth", "mouth", 0, len(grid))
        ratio = np.where(mask, data[:, 1], np.nan)
        k = max(1, int(self.config["frames"]))
        valid = np.isfinite(ratio)
        filled = np.where(valid, ratio, 0.0)
        # centred window [i - k//2, i - k//2 + k), clipped at the ends
        lo = np.clip(np.arange(len(ratio)) - k // 2, 0, len(ratio))
        hi = np.clip(lo + k, 0, len(ratio))
        csum = np.concatenate([[0.0], np.cumsum(filled)])
        ccount = np.concatenate([[0.0], np.cumsum(valid)])
        sums, counts = csum[hi] - csum[lo], ccount[hi] - ccount[lo]
        rolling = sums / np.maximum(counts, 1)
        mean = float(np.nanmean(ratio)) if valid.any() else 0.0
        flag = (rolling > mean).astype(np.float32)
        yield Rows("open", flag, grid.starts, grid.ends, valid=counts > 0)
