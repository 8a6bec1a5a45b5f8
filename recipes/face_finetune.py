"""The ``face_finetune`` recipe: stage-1 fine-tuning of a timm face backbone on Aff-Wild2 frames.

The network is :class:`emofeat_plugins.faces.FaceModel` (backbone, the paper's
``dropout 0.1 -> Linear(feat, 256) -> BatchNorm -> Tanh`` embedding, an 8-way expression head
and/or a valence-arousal head). It trains on every ``frame_step``-th label frame of the training
tracks that has a crop image and a valid label, scores the official metric (macro-F1 over the 8
classes / mean CCC) on validation frames after each epoch, and writes, besides the Trainer's
``best.pt`` / ``last.pt`` / ``history.json``, ``face_model.pt``: the best weights in the
``emofeat-face-checkpoint`` format that the ``face_cnn`` and ``vit`` extractors load with
``--set face_cnn.model=RUN/face_model.pt``.

Preprocessing is the extractors' own, so what the model sees in training is what it sees at
extraction time: the whole crop image (PIL decoding, RGB) resized to ``input_size`` with
:func:`emofeat_plugins.faces.crop_faces` (``roi_align``, float values, not rounded), scaled
to 0..1 and normalised with the checkpoint's mean and std. Augmentation (training only) acts on
the 0..1 image before the normalisation.
"""

from __future__ import annotations

import json
import time
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import numpy as np
import torch
from torch import nn

from emofeat.recipes import RecipeError, RecipeRun
from emofeat_plugins.faces import FaceModel, load_checkpoint, save_checkpoint
from emofeat_recipes.datasets.affwild2 import EXPR_LABELS, VA_LABELS, AffWild2
from emofeat_recipes.losses import build_loss
from emofeat_recipes.metrics import expr_f1, va_score
from emofeat_recipes.train import TrainConfig, Trainer, make_loader, set_seed

__all__ = [
    "FaceFrames",
    "FrameSet",
    "build_face_model",
    "collect_frames",
    "load_crop",
    "predict_frames",
    "preprocess",
    "run_face_finetune",
]

# the paper's input sizes; other backbones take timm's pretrained_cfg input size
PAPER_SIZES = {"efficientnet_b1": 240, "vit_base_patch16_224": 224}
IMAGENET_MEAN, IMAGENET_STD = (0.485, 0.456, 0.406), (0.229, 0.224, 0.225)


# ----------------------------------------------------------------------------- frames


@dataclass
class FrameSet:
    """Training or validation frames: one crop image per row and its labels.

    Attributes:
        paths: crop image files (numpy array of ``str``: workers share it without copying
            Python objects page by page).
        va: ``(n, 2)`` float32 valence, arousal (-5 where absent or invalid).
        va_valid: ``(n,)`` bool.
        expr: ``(n,)`` int64 class 0-7, -1 where absent or invalid.
        track: ``(n,)`` track name of each frame; ``frame``: 1-based frame number.
    """

    paths: np.ndarray
    va: np.ndarray
    va_valid: np.ndarray
    expr: np.ndarray
    track: np.ndarray
    frame: np.ndarray

    def __len__(self) -> int:
        return len(self.paths)


def _crop_folders(data: AffWild2, crops: str) -> dict[str, Path]:
    """Crop folder of each track: the tree's ``cropped_aligned`` or a user folder of tracks."""
    if crops in ("", "cropped_aligned"):
        found = data.crop_dirs
        if not found:
            raise RecipeError(f"{data.root}: no cropped_aligned/<track>/ folders found")
        return found
    root = Path(crops)
    if not root.is_absolute():
        root = data.root / root
    if not root.is_dir():
        raise RecipeError(f"crops={crops}: {root} is not a folder of <track>/ crop folders")
    return {p.name: p for p in sorted(root.iterdir()) if p.is_dir()}


def collect_frames(
    data: AffWild2,
    split: str,
    tasks: tuple[str, ...],
    frame_step: int,
    crops: str = "cropped_aligned",
) -> FrameSet:
    """Every ``frame_step``-th label frame (1, 1 + k, ...) with a crop and a valid label.

    Label line ``k`` of a track is video frame ``k`` and crop ``<track>/<k:05d>.jpg``. With
    both tasks, a track annotated for one task only contributes its frames with the other
    label marked invalid. Tracks without crops are skipped.
    """
    if frame_step < 1:
        raise RecipeError(f"frame_step must be >= 1, got {frame_step}")
    folders = _crop_folders(data, crops)
    per_track: dict[str, dict[str, Any]] = {}
    for task in tasks:
        for tr in data.tracks(task, split):
            lab = data.labels(tr)
            per_track.setdefault(tr.name, {})[task] = lab
    rows: dict[str, list] = {k: [] for k in ("paths", "va", "va_valid", "expr", "track", "frame")}
    for name in sorted(per_track):
        folder = folders.get(name)
        if folder is None:
            continue
        labels = per_track[name]
        n = max(len(lab) for lab in labels.values())
        have = data.crop_frames(name) if crops in ("", "cropped_aligned") else None
        if have is None:
            have = np.array(
                sorted(int(p.stem) for p in folder.iterdir() if p.stem.isdigit()), np.int64
            )
        k = have[(have <= n) & ((have - 1) % frame_step == 0)]
        if not len(k):
            continue
        va = np.full((len(k), 2), -5.0, np.float32)
        va_ok = np.zeros(len(k), bool)
        ex = np.full(len(k), -1, np.int64)
        if "VA" in labels:
            lab = labels["VA"]
            inside = k <= len(lab)
            va[inside] = lab.values[k[inside] - 1]
            va_ok[inside] = lab.valid[k[inside] - 1]
        if "EXPR" in labels:
            lab = labels["EXPR"]
            inside = k <= len(lab)
            ok = np.zeros(len(k), bool)
            ok[inside] = lab.valid[k[inside] - 1]
            ex[ok] = lab.values[k[ok] - 1]
        keep = va_ok | (ex >= 0)
        names = {int(p.stem): p.name for p in folder.iterdir() if p.stem.isdigit()}
        rows["paths"] += [str(folder / names[int(f)]) for f in k[keep]]
        rows["va"].append(va[keep])
        rows["va_valid"].append(va_ok[keep])
        rows["expr"].append(ex[keep])
        rows["track"] += [name] * int(keep.sum())
        rows["frame"].append(k[keep])
    if not rows["paths"]:
        raise RecipeError(
            f"{data.root}: no {split} frames with a crop and a valid {'/'.join(tasks)} label"
        )
    return FrameSet(
        paths=np.array(rows["paths"]),
        va=np.concatenate(rows["va"]),
        va_valid=np.concatenate(rows["va_valid"]),
        expr=np.concatenate(rows["expr"]),
        track=np.array(rows["track"]),
        frame=np.concatenate(rows["frame"]),
    )


# ----------------------------------------------------------------------------- images


def load_crop(path: str | Path) -> np.ndarray:
    """A crop image as uint8 RGB ``(H, W, 3)``, decoded as the extractors decode it (PIL)."""
    from PIL import Image

    try:
        with Image.open(path) as im:
            # a writable copy: torch warns on read-only arrays (the pixels are the same)
            return np.array(im.convert("RGB"))
    except Exception as exc:  # PIL raises several types for unreadable files
        raise RecipeError(f"{path}: cannot read crop image ({exc})") from exc


def resize_crops(images: np.ndarray, input_size: int) -> torch.Tensor:
    """Whole images ``(n, H, W, 3)`` uint8 -> float ``(n, 3, S, S)`` in 0..1, as the extractors.

    The face extractors treat a crop image as a face box covering the whole frame with no
    margin, and resample it with ``crop_faces(..., as_float=True)``; the same call is made
    here so training and extraction see identical pixels.
    """
    from emofeat_plugins.faces import crop_faces

    h, w = images.shape[1:3]
    boxes = np.tile(np.array([0, 0, w, h], np.float32), (len(images), 1))
    crops = crop_faces(images, boxes, int(input_size), 0.0, as_float=True)
    return torch.from_numpy(crops).permute(0, 3, 1, 2).float() / 255.0


def preprocess(
    images: np.ndarray, input_size: int, mean: tuple[float, ...], std: tuple[float, ...]
) -> torch.Tensor:
    """uint8 RGB crops ``(n, H, W, 3)`` -> normalised network input ``(n, 3, S, S)``."""
    x = resize_crops(images, input_size)
    return (x - torch.tensor(mean).view(1, 3, 1, 1)) / torch.tensor(std).view(1, 3, 1, 1)


def _augmenter(cfg: dict[str, Any]):
    """torchvision v2 transforms on a 0..1 float image, or None when everything is off."""
    from torchvision.transforms import v2

    steps: list[Any] = []
    if cfg.get("flip"):
        steps.append(v2.RandomHorizontalFlip(0.5))
    deg, shift, scale = (float(cfg.get(k) or 0) for k in ("degrees", "translate", "scale"))
    if deg or shift or scale:
        steps.append(
            v2.RandomAffine(
                degrees=deg,
                translate=(shift, shift) if shift else None,
                scale=(1 - scale, 1 + scale) if scale else None,
            )
        )
    c = float(cfg.get("colour") or 0)
    if c:
        steps.append(v2.ColorJitter(brightness=c, contrast=c, saturation=c))
    return v2.Compose(steps) if steps else None


class FaceFrames(torch.utils.data.Dataset):
    """Crop images read lazily (one JPEG per item, in worker processes when there are any).

    Memory stays bounded whatever the corpus size: the dataset holds file names and labels
    only. Items are dicts: ``x`` (3, S, S) normalised float, ``va`` (2,), ``va_valid``,
    ``expr`` (class or -1).
    """

    def __init__(
        self,
        frames: FrameSet,
        input_size: int,
        mean: tuple[float, ...],
        std: tuple[float, ...],
        augment: dict[str, Any] | None = None,
    ) -> None:
        self.frames = frames
        self.input_size = int(input_size)
        self.mean = torch.tensor(mean, dtype=torch.float32).view(3, 1, 1)
        self.std = torch.tensor(std, dtype=torch.float32).view(3, 1, 1)
        self.augment = _augmenter(augment) if augment else None

    def __len__(self) -> int:
        return len(self.frames)

    def __getitem__(self, i: int) -> dict[str, torch.Tensor]:
        f = self.frames
        x = resize_crops(load_crop(str(f.paths[i]))[None], self.input_size)[0]
        if self.augment is not None:
            x = self.augment(x).clamp(0.0, 1.0)
        return {
            "x": (x - self.mean) / self.std,
            "va": torch.from_numpy(f.va[i].copy()),
            "va_valid": torch.tensor(bool(f.va_valid[i])),
            "expr": torch.tensor(int(f.expr[i])),
        }


def balanced_weights(expr: np.ndarray) -> np.ndarray:
    """Per-frame sampling weights that draw every present class equally often.

    Frames without a valid class (VA-only frames of ``task=both``) get the mean weight.
    """
    ok = expr >= 0
    counts = np.bincount(expr[ok], minlength=len(EXPR_LABELS)).astype(np.float64)
    w = np.zeros(len(expr))
    w[ok] = 1.0 / counts[expr[ok]]
    if (~ok).any():
        w[~ok] = w[ok].mean() if ok.any() else 1.0
    return w


# ----------------------------------------------------------------------------- model


def _heads(task: str) -> dict[str, int]:
    return {
        "va": {"va": 2},
        "expr": {"expr": len(EXPR_LABELS)},
        "both": {"expr": len(EXPR_LABELS), "va": 2},
    }[task]


def build_face_model(cfg: dict[str, Any]) -> tuple[FaceModel, int, tuple, tuple]:
    """The network and its preprocessing: ``(model, input_size px, mean, std)``.

    ``weights``: ``timm`` (timm's pretrained tag, downloaded by timm), ``lite0-imagenet``
    (the registry's offline ImageNet EfficientNet-Lite0; backbone must be
    ``efficientnet_lite0``), ``none`` (random initialisation) or the path of an emofeat face
    checkpoint (its backbone, input size and normalisation; embedding and heads are reused
    where their shapes fit).
    """
    arch, weights = str(cfg["backbone"]), str(cfg["weights"])
    emb, heads = int(cfg["embedding_dim"]), _heads(cfg["task"])
    size = int(cfg.get("input_size") or 0)
    if weights == "timm":
        try:
            model = FaceModel(arch, emb, heads, pretrained=True)
        except Exception as exc:  # timm raises hub/network errors of many kinds
            raise RecipeError(
                f"backbone={arch}: cannot load timm's pretrained weights ({exc}); offline, use "
                "weights=lite0-imagenet (backbone=efficientnet_lite0), a face checkpoint "
                "path, or weights=none"
            ) from exc
        pc = model.backbone.pretrained_cfg
        mean, std = tuple(pc.get("mean", IMAGENET_MEAN)), tuple(pc.get("std", IMAGENET_STD))
    elif weights == "lite0-imagenet":
        if arch != "efficientnet_lite0":
            raise RecipeError(
                f"weights=lite0-imagenet holds efficientnet_lite0 weights, not {arch}: "
                "set backbone=efficientnet_lite0"
            )
        from emofeat.models import ModelCache, get_model
        from emofeat_plugins.faces import load_lite0_imagenet

        model = FaceModel(arch, emb, heads)
        folder = ModelCache().path(get_model("efficientnet-lite0-imagenet"))
        load_lite0_imagenet(model, next(folder.glob("*.pth")))
        mean = std = (0.5, 0.5, 0.5)  # how the package's weights were trained
    elif weights == "none":
        model = FaceModel(arch, emb, heads)
        pc = model.backbone.pretrained_cfg
        mean, std = tuple(pc.get("mean", IMAGENET_MEAN)), tuple(pc.get("std", IMAGENET_STD))
    else:
        path = Path(weights)
        if not path.is_file():
            raise RecipeError(
                f"weights={weights}: not timm, lite0-imagenet, none, or an existing checkpoint"
            )
        try:
            src, meta = load_checkpoint(path)
        except Exception as exc:
            raise RecipeError(f"weights={weights}: {exc}") from exc
        arch = meta["arch"]  # the checkpoint decides the backbone
        model = FaceModel(arch, emb, heads)
        model.backbone.load_state_dict(src.backbone.state_dict())
        if model.embed is not None and src.embed is not None and src.embedding_dim == emb:
            model.embed.load_state_dict(src.embed.state_dict())
            for name, head in model.heads.items():
                if name in src.heads and src.heads[name].weight.shape == head.weight.shape:
                    head.load_state_dict(src.heads[name].state_dict())
        size = size or int(meta["input_size"])
        mean, std = tuple(meta["mean"]), tuple(meta["std"])
    if not size:
        size = PAPER_SIZES.get(arch) or int(model.backbone.pretrained_cfg["input_size"][-1])
    # fixed-size backbones (ViTs) fail here with a clear message rather than mid-training
    model.eval()
    try:
        with torch.no_grad():
            model(torch.zeros(2, 3, size, size))
    except Exception as exc:
        raise RecipeError(f"backbone={arch} does not accept {size} px inputs ({exc})") from exc
    return model, size, tuple(float(v) for v in mean), tuple(float(v) for v in std)


# ----------------------------------------------------------------------------- training


def _loss(cfg: dict[str, Any], task: str, train: FrameSet):
    lc = cfg["loss"]
    parts: dict[str, nn.Module] = {}
    if task in ("va", "both"):  # the loss names: checked by the recipe's schema
        parts["va"] = build_loss(lc["va"])
    if task in ("expr", "both"):
        kw: dict[str, Any] = {}
        if lc["weight"] not in ("none", None, ""):
            kw.update(weight=lc["weight"], labels=train.expr[train.expr >= 0])
        if lc["expr"] == "focal":
            kw["gamma"] = float(lc["gamma"])
        else:
            kw["label_smoothing"] = float(lc["label_smoothing"])
        try:
            parts["expr"] = build_loss(lc["expr"], **kw)
        except ValueError as exc:
            raise RecipeError(f"loss: {exc}") from exc

    def fn(out: dict[str, torch.Tensor], batch: dict[str, torch.Tensor]) -> torch.Tensor:
        total = 0.0
        if "va" in parts:
            total = total + parts["va"](out["va"].float(), batch["va"], batch["va_valid"])
        if "expr" in parts:
            total = total + parts["expr"](out["expr"].float(), batch["expr"])
        return total

    return fn


@torch.no_grad()
def predict_frames(
    model: FaceModel, loader: torch.utils.data.DataLoader, device: str | torch.device
) -> dict[str, np.ndarray]:
    """Run ``model`` over a loader of :class:`FaceFrames`: ``va`` (n, 2), ``expr`` (n, 8) probs."""
    model.eval()
    out: dict[str, list[np.ndarray]] = {}
    for batch in loader:
        res = model(batch["x"].to(device))
        for name in model.heads:
            y = res[name].float()
            y = torch.softmax(y, dim=1) if name == "expr" else y
            out.setdefault(name, []).append(y.cpu().numpy())
    return {k: np.concatenate(v) for k, v in out.items()}


def score_frames(task: str, preds: dict[str, np.ndarray], frames: FrameSet) -> dict[str, float]:
    """The official metrics on ``frames``: ``f1`` (+ ``accuracy``), ``valence``, ``arousal``,
    ``ccc`` (their mean); ``score`` = F1, mean CCC, or their mean for both tasks."""
    m: dict[str, float] = {}
    if "expr" in preds:
        ok = frames.expr >= 0
        if ok.any():
            s = expr_f1(preds["expr"], frames.expr, mask=ok)
            m.update(f1=s["f1"], accuracy=s["accuracy"])
        else:
            m.update(f1=0.0, accuracy=0.0)
    if "va" in preds:
        ok = frames.va_valid
        if ok.sum() > 1:
            s = va_score(preds["va"], frames.va, mask=ok)
            m.update(valence=s["valence"], arousal=s["arousal"], ccc=s["mean"])
        else:
            m.update(valence=0.0, arousal=0.0, ccc=0.0)
    # a constant prediction makes CCC NaN: count it as 0 (no agreement) for early stopping
    m = {k: (0.0 if not np.isfinite(v) else float(v)) for k, v in m.items()}
    keys = {"va": ["ccc"], "expr": ["f1"], "both": ["f1", "ccc"]}[task]
    m["score"] = float(np.mean([m[k] for k in keys]))
    return m


def _plot(history: list[dict[str, Any]], path: Path, task: str) -> None:
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    epochs = [h["epoch"] for h in history]
    fig, ax = plt.subplots(figsize=(6, 3.5))
    ax.plot(epochs, [h["train_loss"] for h in history], "o-", label="training loss")
    ax.set_xlabel("epoch")
    ax.set_ylabel("training loss")
    ax2 = ax.twinx()
    ax2.plot(
        epochs, [h["dev"].get("score", np.nan) for h in history], "s-", color="C1", label="dev"
    )
    ax2.set_ylabel({"va": "dev mean CCC", "expr": "dev macro-F1", "both": "dev (F1+CCC)/2"}[task])
    fig.legend(loc="upper center", ncol=2, fontsize=8)
    fig.tight_layout()
    fig.savefig(path, dpi=100)
    plt.close(fig)


def run_face_finetune(ctx: RecipeRun) -> dict[str, Any]:
    """Fine-tune the face model on the ``data`` tree; write the run directory (module doc)."""
    cfg = ctx.config
    t0 = time.perf_counter()
    task = cfg["task"]  # va, expr or both (the schema's)
    if not cfg.get("data"):
        raise RecipeError("no data: pass --data AFF_WILD2_ROOT (or --set data=PATH)")
    data = AffWild2(cfg["data"])
    tasks = {"va": ("VA",), "expr": ("EXPR",), "both": ("VA", "EXPR")}[task]
    missing = [t for t in tasks if t not in data.tasks]
    if missing:
        raise RecipeError(f"{data.root}: no {'/'.join(missing)} annotations found")
    step = int(cfg["frame_step"])
    dev_step = int(cfg.get("dev_frame_step") or 0) or step
    train = collect_frames(data, "train", tasks, step, cfg["crops"])
    dev = collect_frames(data, "validation", tasks, dev_step, cfg["crops"])
    ctx.log.info(
        "face_finetune %s: %d training frames (every %d-th), %d validation frames",
        task, len(train), step, len(dev),
    )  # fmt: skip

    tc = TrainConfig.from_dict(
        {**cfg["train"], "device": cfg["device"], "seed": int(cfg["seed"]), "quiet": ctx.quiet}
    )
    set_seed(tc.seed, tc.deterministic)  # the heads' initialisation depends on it
    model, size, mean, std = build_face_model(cfg)
    ctx.log.info("backbone %s (%s weights), %d px, mean %s std %s",
                 model.arch, cfg["weights"], size, mean, std)  # fmt: skip

    weights = None
    if cfg["sampling"] == "balanced":  # needs expression labels: task expr or both (validated)
        weights = balanced_weights(train.expr)
    # workers are not persistent: each epoch's are seeded from the loader's generator, which
    # the Trainer saves in last.pt, so a resumed run augments as the uninterrupted run would
    train_loader = make_loader(
        FaceFrames(train, size, mean, std, cfg["augment"]),
        tc,
        shuffle=True,
        sample_weights=weights,
        persistent_workers=False,
    )
    dev_loader = make_loader(
        FaceFrames(dev, size, mean, std),
        tc,
        shuffle=False,
        batch_size=tc.batch_size * 2,
        persistent_workers=False,
    )

    def evaluate(m: nn.Module) -> dict[str, float]:
        return score_frames(task, predict_frames(m, dev_loader, tc.device), dev)

    trainer = Trainer(
        model,
        _loss(cfg, task, train),
        tc,
        ctx.run_dir,
        evaluate,
        forward=lambda m, b: m(b["x"]),
        meta={"arch": model.arch, "input_size": size, "mean": list(mean), "std": list(std),
              "task": task, "embedding_dim": model.embedding_dim},
    )  # fmt: skip
    result = trainer.fit(train_loader, resume=bool(cfg.get("resume")))
    # fit() leaves the best epoch's weights in the model
    model = model.cpu().eval()
    labels = {"expr": list(EXPR_LABELS), "va": list(VA_LABELS)}
    labels = {k: v for k, v in labels.items() if k in model.heads}
    best = dict(result["best_metrics"])
    metrics = {
        "task": task,
        "metric": {"va": "mean CCC", "expr": "macro-F1 (8 classes)", "both": "(F1 + CCC) / 2"}[
            task
        ],
        "best_epoch": result["best_epoch"],
        "best_score": result["best_score"],
        "dev": best,
        "epochs_run": result["epochs_run"],
        "stopped_early": result["stopped_early"],
        "train_frames": len(train),
        "dev_frames": len(dev),
        "final_train_loss": result["history"][-1]["train_loss"] if result["history"] else None,
        "seconds": round(time.perf_counter() - t0, 2),
    }
    ckpt_config = {**cfg, "license": "weights: per the starting weights and the training data"}
    save_checkpoint(
        ctx.run_dir / "face_model.pt",
        model,
        size,
        mean,
        std,
        labels=labels,
        config=ckpt_config,
        metrics={k: v for k, v in metrics.items() if k != "seconds"},
    )
    (ctx.run_dir / "metrics.json").write_text(json.dumps(metrics, indent=2) + "\n")
    if result["history"]:
        _plot(result["history"], ctx.run_dir / "training_curve.png", task)
    ctx.log.info("best dev %s %.4f at epoch %s; face checkpoint %s",
                 metrics["metric"], result["best_score"] or float("nan"), result["best_epoch"],
                 ctx.run_dir / "face_model.pt")  # fmt: skip
    return {
        "task": task,
        "best_score": result["best_score"],
        "best_epoch": result["best_epoch"],
        "dev": best,
        "face_model": str(ctx.run_dir / "face_model.pt"),
    }
