"""face-api.js FaceLandmark68Net in PyTorch (weights: TF.js manifest, MIT, see docs/models.md).

The same ``FaceFeatureExtractor`` as the expression net (:mod:`.expression_net`) with a fully
connected layer to 136 values: 68 points, interleaved x, y. For a square 112x112 input,
face-api.js's post-processing (``FaceLandmark68NetBase.postProcess``: times the input size,
minus the padding to a square, divided by the width or height) leaves these values as they
are: x and y relative to the crop's width and height, about 0..1 (points may fall a little
outside the crop). Checked against the JavaScript by tests/test_face_landmark_net.py.

The point order is dlib's/iBUG 300-W's: 0-16 jaw, 17-21 and 22-26 brows, 27-35 nose,
36-41 and 42-47 eyes, 48-67 lips.
"""

from __future__ import annotations

from pathlib import Path

import numpy as np
import torch
from torch import nn

from emofeat_plugins.faces.expression_net import (
    FaceFeatureExtractor,
    copy_weight,
    load_tfjs_module,
    preprocess,
)

__all__ = ["N_POINTS", "FaceLandmark68Net", "preprocess"]

N_POINTS = 68
MODEL_NAME = "face_landmark_68_model"


class FaceLandmark68Net(nn.Module):
    """face-api.js FaceLandmark68Net: a face crop -> 68 (x, y) points relative to the crop.

    ``forward(x)`` takes a float tensor (N, 3, 112, 112) of RGB values in 0..255 (see
    :func:`preprocess`) and returns points (N, 68, 2), x then y, in [0, 1] of the crop's width
    and height (a point may lie slightly outside).
    """

    def __init__(self) -> None:
        super().__init__()
        self.features = FaceFeatureExtractor()
        self.fc = nn.Linear(256, 2 * N_POINTS)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return self.fc(self.features(x)).view(-1, N_POINTS, 2)

    def load_tfjs(self, w) -> None:
        self.features.load_tfjs(w)
        copy_weight(self.fc.weight, w["fc/weights"].T)  # (in, out) -> (out, in)
        copy_weight(self.fc.bias, w["fc/bias"])

    @classmethod
    def from_folder(cls, folder: str | Path) -> FaceLandmark68Net:
        """The net with the weights in ``folder`` (``face_landmark_68_model-weights_manifest.json``
        and ``face_landmark_68_model.bin``, as the ``face-landmarks-68`` model provides), in
        eval mode."""
        return load_tfjs_module(cls(), folder, MODEL_NAME)

    @torch.inference_mode()
    def predict(self, images: np.ndarray) -> np.ndarray:
        """uint8 (N, 112, 112, 3) RGB face crops -> numpy points (N, 68, 2) relative."""
        return self(preprocess(images).to(self.fc.weight.device)).cpu().numpy()
