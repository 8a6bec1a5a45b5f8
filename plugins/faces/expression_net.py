"""face-api.js FaceExpressionNet in PyTorch (weights: TF.js manifest, MIT, see docs/models.md).

A port of face-api.js 0.22.2 (``FaceFeatureExtractor`` + ``FaceProcessor`` +
``FaceExpressionNet``), checked against the JavaScript itself (tests/fixtures, made by
``tests/fixtures/make_face_expression_reference.js``):

* input: 112x112 RGB in 0..255; ``(x - mean_rgb) / 255`` with mean RGB
  (122.782, 117.001, 104.298);
* four dense blocks of four 3x3 convolutions (``denseBlock4``): block 0 starts with a plain
  convolution of stride 2, blocks 1-3 with a depthwise-separable one of stride 2, then three
  depthwise-separable convolutions of stride 1. With ``out1 = relu(conv0(x))`` each later
  convolution reads the ReLU of the sum of the block's previous outputs, and the block
  returns ``relu(out1 + out2 + out3 + out4)``;
* TensorFlow "same" padding (for stride 2 on an even size: 0 before, 1 after);
* 7x7 average pool (stride 2, "valid") of the 7x7x256 map: the 256-d embedding;
* fully connected layer to 7 classes, softmax.

The same feature extractor (with another fully connected head) makes face-api.js's
68-point landmark net (``landmark_net.py``).
"""

from __future__ import annotations

import math
from collections.abc import Mapping
from pathlib import Path

import numpy as np
import torch
from torch import nn
from torch.nn.functional import avg_pool2d, pad, relu

from emofeat_plugins.faces.tfjs import TfjsWeightsError, load_weights

__all__ = [
    "INPUT_SIZE",
    "LABELS",
    "MEAN_RGB",
    "copy_weight",
    "load_tfjs_module",
    "FaceExpressionNet",
    "FaceFeatureExtractor",
    "preprocess",
    "same_padding",
]

LABELS = ("neutral", "happy", "sad", "angry", "fearful", "disgusted", "surprised")
INPUT_SIZE = 112
MEAN_RGB = (122.782, 117.001, 104.298)
MODEL_NAME = "face_expression_model"


def same_padding(size: int, kernel: int, stride: int) -> tuple[int, int]:
    """TensorFlow's "same" padding of one axis: (before, after); the extra pixel goes after."""
    out = math.ceil(size / stride)
    total = max((out - 1) * stride + kernel - size, 0)
    return total // 2, total - total // 2


class SameConv2d(nn.Conv2d):
    """``nn.Conv2d`` with TensorFlow "same" padding (asymmetric where TF pads unevenly)."""

    def __init__(self, *args, **kwargs) -> None:
        kwargs["padding"] = 0
        super().__init__(*args, **kwargs)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        (kh, kw), (sh, sw) = self.kernel_size, self.stride
        top, bottom = same_padding(x.shape[-2], kh, sh)
        left, right = same_padding(x.shape[-1], kw, sw)
        if top or bottom or left or right:
            x = pad(x, (left, right, top, bottom))
        return super().forward(x)


class SeparableConv(nn.Module):
    """``tf.separableConv2d`` (3x3 depthwise, then 1x1 pointwise) plus a bias."""

    def __init__(self, c_in: int, c_out: int, stride: int) -> None:
        super().__init__()
        self.depthwise = SameConv2d(c_in, c_in, 3, stride=stride, groups=c_in, bias=False)
        self.pointwise = nn.Conv2d(c_in, c_out, 1, bias=True)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return self.pointwise(self.depthwise(x))

    def load_tfjs(self, w: Mapping[str, np.ndarray], prefix: str) -> None:
        # depthwise (kh, kw, in, 1) -> (in, 1, kh, kw); pointwise (1, 1, in, out) -> (out, in, 1, 1)
        copy_weight(self.depthwise.weight, w[f"{prefix}/depthwise_filter"].transpose(2, 3, 0, 1))
        copy_weight(self.pointwise.weight, w[f"{prefix}/pointwise_filter"].transpose(3, 2, 0, 1))
        copy_weight(self.pointwise.bias, w[f"{prefix}/bias"])


class DenseBlock4(nn.Module):
    """face-api.js ``denseBlock4`` (scale-down variant: the first convolution has stride 2)."""

    def __init__(self, c_in: int, c_out: int, first: bool = False) -> None:
        super().__init__()
        self.first = first
        self.conv0 = (
            SameConv2d(c_in, c_out, 3, stride=2, bias=True)
            if first
            else SeparableConv(c_in, c_out, stride=2)
        )
        self.conv1 = SeparableConv(c_out, c_out, 1)
        self.conv2 = SeparableConv(c_out, c_out, 1)
        self.conv3 = SeparableConv(c_out, c_out, 1)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        # Sums in the JavaScript's order: add(out1, add(out2, add(out3, out4))).
        out1 = relu(self.conv0(x))
        out2 = self.conv1(out1)
        out3 = self.conv2(relu(out1 + out2))
        out4 = self.conv3(relu(out1 + (out2 + out3)))
        return relu(out1 + (out2 + (out3 + out4)))

    def load_tfjs(self, w: Mapping[str, np.ndarray], prefix: str) -> None:
        if self.first:
            # filters (kh, kw, in, out) -> (out, in, kh, kw)
            copy_weight(self.conv0.weight, w[f"{prefix}/conv0/filters"].transpose(3, 2, 0, 1))
            copy_weight(self.conv0.bias, w[f"{prefix}/conv0/bias"])
        else:
            self.conv0.load_tfjs(w, f"{prefix}/conv0")
        for i in (1, 2, 3):
            getattr(self, f"conv{i}").load_tfjs(w, f"{prefix}/conv{i}")


class FaceFeatureExtractor(nn.Module):
    """face-api.js ``FaceFeatureExtractor``: (N, 3, 112, 112) RGB 0..255 -> (N, 256)."""

    def __init__(self) -> None:
        super().__init__()
        self.register_buffer(
            "mean_rgb", torch.tensor(MEAN_RGB, dtype=torch.float32).view(1, 3, 1, 1), False
        )
        self.dense0 = DenseBlock4(3, 32, first=True)
        self.dense1 = DenseBlock4(32, 64)
        self.dense2 = DenseBlock4(64, 128)
        self.dense3 = DenseBlock4(128, 256)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        _check_input(x)
        x = (x.to(self.mean_rgb.dtype) - self.mean_rgb) / 255.0
        for block in (self.dense0, self.dense1, self.dense2, self.dense3):
            x = block(x)
        # tf.avgPool(out, [7, 7], [2, 2], 'valid') on the 7x7 map: one 1x1 cell.
        return avg_pool2d(x, 7, stride=2).flatten(1)

    def load_tfjs(self, w: Mapping[str, np.ndarray]) -> None:
        for i in range(4):
            getattr(self, f"dense{i}").load_tfjs(w, f"dense{i}")


def _check_input(x: torch.Tensor) -> None:
    if not isinstance(x, torch.Tensor) or x.ndim != 4 or tuple(x.shape[1:]) != (3, 112, 112):
        shape = tuple(x.shape) if isinstance(x, torch.Tensor) else type(x).__name__
        raise ValueError(
            f"expected a float tensor (N, 3, {INPUT_SIZE}, {INPUT_SIZE}) of RGB in 0..255, "
            f"got {shape} (use preprocess() on uint8 (N, 112, 112, 3) images)"
        )


def copy_weight(param: torch.Tensor, value: np.ndarray) -> None:
    """Copy a (converted) TF.js weight into a parameter of the same shape."""
    value = np.ascontiguousarray(value, dtype=np.float32)
    if tuple(param.shape) != value.shape:
        raise TfjsWeightsError(
            f"a weight of shape {value.shape} (converted from TF layout) does not fit a "
            f"parameter of shape {tuple(param.shape)}"
        )
    with torch.no_grad():
        param.copy_(torch.from_numpy(value))


def load_tfjs_module(module: nn.Module, folder: str | Path, model_name: str) -> nn.Module:
    """Fill ``module`` (which has a ``load_tfjs(weights)`` method) from
    ``<folder>/<model_name>-weights_manifest.json`` and its shards; returns it in eval mode.

    Raises:
        TfjsWeightsError: naming the manifest, when a file is malformed or short, or when the
            manifest's weights are not exactly the module's parameters.
    """
    manifest = Path(folder) / f"{model_name}-weights_manifest.json"
    weights = load_weights(manifest)
    expected = sum(1 for _ in module.parameters())
    if len(weights) != expected:
        raise TfjsWeightsError(
            f"{manifest}: {len(weights)} weights, but {type(module).__name__} has {expected}"
        )
    try:
        module.load_tfjs(weights)
    except KeyError as exc:
        raise TfjsWeightsError(f"{manifest}: weight {exc.args[0]!r} is missing") from exc
    except TfjsWeightsError as exc:
        raise TfjsWeightsError(f"{manifest}: {exc}") from exc
    return module.eval()


class FaceExpressionNet(nn.Module):
    """face-api.js FaceExpressionNet: a face crop -> (256-d embedding, 7 probabilities).

    ``forward(x)`` takes a float tensor (N, 3, 112, 112) of RGB values in 0..255 (see
    :func:`preprocess`) and returns ``(embedding (N, 256), probabilities (N, 7))`` with the
    classes in :data:`LABELS` order.
    """

    labels = LABELS

    def __init__(self) -> None:
        super().__init__()
        self.features = FaceFeatureExtractor()
        self.fc = nn.Linear(256, len(LABELS))

    def forward(self, x: torch.Tensor) -> tuple[torch.Tensor, torch.Tensor]:
        embedding = self.features(x)
        return embedding, torch.softmax(self.fc(embedding), dim=1)

    def load_tfjs(self, w: Mapping[str, np.ndarray]) -> None:
        self.features.load_tfjs(w)
        copy_weight(self.fc.weight, w["fc/weights"].T)  # (in, out) -> (out, in)
        copy_weight(self.fc.bias, w["fc/bias"])

    @classmethod
    def from_folder(cls, folder: str | Path) -> FaceExpressionNet:
        """The net with the weights in ``folder`` (``face_expression_model-weights_manifest.json``
        and ``face_expression_model.bin``, as the ``face-expression`` model provides), in eval
        mode."""
        return load_tfjs_module(cls(), folder, MODEL_NAME)

    @torch.inference_mode()
    def predict(self, images: np.ndarray) -> tuple[np.ndarray, np.ndarray]:
        """uint8 (N, 112, 112, 3) RGB face crops -> numpy (embeddings, probabilities)."""
        embedding, probs = self(preprocess(images).to(self.fc.weight.device))
        return embedding.cpu().numpy(), probs.cpu().numpy()


def preprocess(images: np.ndarray) -> torch.Tensor:
    """uint8 RGB face crops (N, 112, 112, 3) (or one (112, 112, 3)) -> float32 (N, 3, 112, 112)
    in 0..255, the input of :class:`FaceExpressionNet`. Crops of another size must be
    resized first (face-api.js pads to a square, then resizes bilinearly to 112x112)."""
    arr = np.asarray(images)
    if arr.ndim == 3:
        arr = arr[None]
    if arr.ndim != 4 or arr.shape[1:] != (INPUT_SIZE, INPUT_SIZE, 3):
        raise ValueError(
            f"expected RGB images (N, {INPUT_SIZE}, {INPUT_SIZE}, 3), got shape {arr.shape}"
        )
    if arr.dtype != np.uint8 and arr.dtype != np.float32:
        raise ValueError(f"expected uint8 (or float32 0..255) images, got {arr.dtype}")
    return torch.from_numpy(np.ascontiguousarray(arr.transpose(0, 3, 1, 2))).float()
