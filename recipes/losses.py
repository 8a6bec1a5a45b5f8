"""Training losses of the ABAW recipes.

Every loss built by :func:`build_loss` is a module called as ``loss(pred, target, mask=None)``:

- regression (``"ccc"``, ``"rmse"``, ``"mse"``): ``pred`` and ``target`` ``(..., K)`` (K = 2 for
  valence, arousal), ``mask`` ``(...)`` boolean, ``True`` = valid frame;
- classification (``"focal"``, ``"ce"``): ``pred`` logits ``(..., C)``, ``target`` class indices
  ``(...)`` with ``ignore_index`` (default -1, Aff-Wild2's invalid marker) for invalid frames, and
  an optional ``mask`` as well.

Leading dimensions (windows, frames) are flattened: every loss is pooled over all valid frames of
the batch, as the challenge metrics are pooled over all frames of the set.
"""

from __future__ import annotations

from collections.abc import Sequence
from typing import Any

import numpy as np
import torch
import torch.nn.functional as F  # noqa: N812 - the usual name
from torch import Tensor, nn

__all__ = [
    "CCCLoss",
    "FocalLoss",
    "MSELoss",
    "RMSELoss",
    "WeightedCE",
    "build_loss",
    "ccc_loss",
    "inverse_frequency_weights",
    "max_count_weights",
    "weighted_ce",
]


def _wide(x: Tensor) -> Tensor:
    """At least float32: half-precision sums over many frames lose the statistics."""
    return x.float() if x.dtype in (torch.float16, torch.bfloat16) else x


def _flatten_regression(pred: Tensor, target: Tensor, mask: Tensor | None) -> tuple[Tensor, Tensor]:
    if pred.shape != target.shape:
        raise ValueError(f"prediction shape {tuple(pred.shape)} != target {tuple(target.shape)}")
    k = pred.shape[-1]
    pred = pred.reshape(-1, k)
    target = target.reshape(-1, k).to(pred.dtype)
    if mask is not None:
        mask = mask.reshape(-1).to(torch.bool)
        if mask.shape[0] != pred.shape[0]:
            raise ValueError(f"mask has {mask.shape[0]} frames, predictions {pred.shape[0]}")
        pred, target = pred[mask], target[mask]
    return pred, target


def ccc_loss(pred: Tensor, target: Tensor, mask: Tensor | None = None, eps: float = 1e-8) -> Tensor:
    """Sum over output dimensions of ``1 - CCC_d``, pooled over all valid frames.

    ``CCC = 2 cov(x, y) / (var(x) + var(y) + (mean(x) - mean(y))^2)`` with population
    (biased) statistics. Range [0, 2K]; 0 when predictions equal targets. ``eps`` keeps the
    ratio finite when both sequences are constant. Differentiable.

    Args:
        pred, target: ``(N, K)`` or ``(B, T, K)``.
        mask: ``(N,)`` or ``(B, T)`` booleans, ``True`` = valid; ``None`` = all valid.
    """
    p, t = _flatten_regression(pred, target, mask)
    if p.shape[0] == 0:
        # nothing valid: a zero that still belongs to the graph
        return pred.sum() * 0.0
    p, t = _wide(p), _wide(t)
    pm, tm = p.mean(dim=0), t.mean(dim=0)
    cov = ((p - pm) * (t - tm)).mean(dim=0)
    var_p = p.var(dim=0, unbiased=False)
    var_t = t.var(dim=0, unbiased=False)
    ccc = 2 * cov / (var_p + var_t + (pm - tm) ** 2 + eps)
    return (1.0 - ccc).sum()


class CCCLoss(nn.Module):
    """Module form of :func:`ccc_loss`."""

    def forward(self, pred: Tensor, target: Tensor, mask: Tensor | None = None) -> Tensor:
        return ccc_loss(pred, target, mask)


class MSELoss(nn.Module):
    """Mean squared error over all valid frames and output dimensions."""

    def forward(self, pred: Tensor, target: Tensor, mask: Tensor | None = None) -> Tensor:
        p, t = _flatten_regression(pred, target, mask)
        if p.shape[0] == 0:
            return pred.sum() * 0.0
        return F.mse_loss(_wide(p), _wide(t))


class RMSELoss(nn.Module):
    """Root mean squared error over all valid frames and output dimensions (paper's face VA)."""

    def __init__(self, eps: float = 1e-8) -> None:
        super().__init__()
        self.eps = eps  # the root's gradient is infinite at exactly zero error

    def forward(self, pred: Tensor, target: Tensor, mask: Tensor | None = None) -> Tensor:
        p, t = _flatten_regression(pred, target, mask)
        if p.shape[0] == 0:
            return pred.sum() * 0.0
        return torch.sqrt(F.mse_loss(_wide(p), _wide(t)) + self.eps)


def _flatten_classes(
    logits: Tensor, target: Tensor, mask: Tensor | None, ignore_index: int
) -> tuple[Tensor, Tensor]:
    c = logits.shape[-1]
    if logits.shape[:-1] != target.shape:
        raise ValueError(
            f"logits shape {tuple(logits.shape)} does not match targets {tuple(target.shape)} "
            "(expected logits (..., classes), targets (...))"
        )
    logits = logits.reshape(-1, c)
    target = target.reshape(-1).long()
    if mask is not None:
        target = target.masked_fill(~mask.reshape(-1).to(torch.bool), ignore_index)
    valid = target != ignore_index
    bad = valid & ((target < 0) | (target >= c))
    if bad.any():
        raise ValueError(
            f"class labels must be in 0..{c - 1} or {ignore_index} (invalid), "
            f"got {target[bad][0].item()}"
        )
    return logits[valid], target[valid]


def _as_weight(weight: Sequence[float] | np.ndarray | Tensor | None) -> Tensor | None:
    if weight is None:
        return None
    return torch.as_tensor(np.asarray(weight, dtype=np.float32))


class _ClassLoss(nn.Module):
    """A loss over class logits ``(..., classes)`` and targets ``(...)``, with optional class
    weights (the ``weight`` buffer, empty when none). Frames whose target is ``ignore_index``
    (or masked out) are left out; without any valid frame the loss is 0 (still on the graph).
    """

    def __init__(
        self, weight: Sequence[float] | np.ndarray | Tensor | None, ignore_index: int
    ) -> None:
        super().__init__()
        self.ignore_index = ignore_index
        w = _as_weight(weight)
        self.register_buffer("weight", w if w is not None else torch.zeros(0))

    def forward(self, logits: Tensor, target: Tensor, mask: Tensor | None = None) -> Tensor:
        x, y = _flatten_classes(logits, target, mask, self.ignore_index)
        if y.numel() == 0:
            return logits.sum() * 0.0
        return self._loss(_wide(x), y)

    def _loss(self, x: Tensor, y: Tensor) -> Tensor:
        """The loss of the valid frames' logits ``x`` (n, classes) and classes ``y`` (n,)."""
        raise NotImplementedError


class FocalLoss(_ClassLoss):
    """Focal loss (Lin et al. 2017) with optional class weights.

    Per frame ``-w_y (1 - p_y)^gamma log p_y``; the batch value is the sum divided by the sum of
    ``w_y`` over valid frames (the weighted mean ``F.cross_entropy`` uses), so ``gamma = 0``
    is exactly weighted cross-entropy. Frames whose target is ``ignore_index`` (or masked out)
    are left out.
    """

    def __init__(
        self,
        gamma: float = 2.0,
        weight: Sequence[float] | np.ndarray | Tensor | None = None,
        ignore_index: int = -1,
    ) -> None:
        super().__init__(weight, ignore_index)
        self.gamma = float(gamma)

    def _loss(self, x: Tensor, y: Tensor) -> Tensor:
        logp = F.log_softmax(x, dim=-1).gather(1, y[:, None])[:, 0]
        loss = -((1.0 - logp.exp()) ** self.gamma) * logp
        if self.weight.numel():
            w = self.weight.to(loss.device)[y]
            return (loss * w).sum() / w.sum().clamp(min=torch.finfo(loss.dtype).tiny)
        return loss.mean()


class WeightedCE(_ClassLoss):
    """Cross-entropy with class weights and label smoothing (the paper's audio EXPR loss).

    Same reduction as ``torch.nn.functional.cross_entropy`` (weighted mean over valid frames).
    """

    def __init__(
        self,
        weight: Sequence[float] | np.ndarray | Tensor | None = None,
        label_smoothing: float = 0.2,
        ignore_index: int = -1,
    ) -> None:
        super().__init__(weight, ignore_index)
        self.label_smoothing = float(label_smoothing)

    def _loss(self, x: Tensor, y: Tensor) -> Tensor:
        w = self.weight.to(x.device, x.dtype) if self.weight.numel() else None
        return F.cross_entropy(x, y, weight=w, label_smoothing=self.label_smoothing)


def weighted_ce(
    weight: Sequence[float] | np.ndarray | Tensor | None = None,
    label_smoothing: float = 0.2,
    ignore_index: int = -1,
) -> WeightedCE:
    """Weighted cross-entropy with label smoothing (defaults: the paper's audio EXPR loss)."""
    return WeightedCE(weight, label_smoothing, ignore_index)


def _counts(labels: np.ndarray, classes: int) -> np.ndarray:
    labels = np.asarray(labels).reshape(-1)
    if labels.size and not np.issubdtype(labels.dtype, np.integer):
        if not np.all(np.isfinite(labels)) or np.any(labels != np.round(labels)):
            raise ValueError("class labels must be integers (invalid frames as -1)")
        labels = labels.astype(np.int64)
    valid = labels[(labels >= 0) & (labels < classes)]
    if valid.size != np.count_nonzero(labels >= 0):
        raise ValueError(f"class labels must be below {classes}, got {labels.max()}")
    return np.bincount(valid, minlength=classes).astype(np.float64)


def inverse_frequency_weights(labels: np.ndarray, classes: int = 8) -> np.ndarray:
    """Class weights proportional to 1 / count, normalised so the mean weight per frame is 1.

    ``w_c = N / (K * n_c)`` with N valid frames (labels 0..classes-1; negatives are invalid and
    ignored) and K classes present: a balanced set gets all ones, and the average of ``w_y`` over
    the training frames is 1, so the loss scale stays that of the unweighted loss. Classes absent
    from ``labels`` get weight 0 (they cannot contribute to training anyway); no labels at all
    gives all ones. Returns float32 ``(classes,)``.
    """
    counts = _counts(labels, classes)
    present = counts > 0
    if not present.any():
        return np.ones(classes, dtype=np.float32)
    w = np.zeros(classes)
    w[present] = counts.sum() / (present.sum() * counts[present])
    return w.astype(np.float32)


def max_count_weights(labels: np.ndarray, classes: int = 8) -> np.ndarray:
    """Class weights ``max_count / count`` (the paper's audio EXPR weights).

    The most frequent class gets 1. Absent classes get 0; no labels at all gives all ones.
    Returns float32 ``(classes,)``.
    """
    counts = _counts(labels, classes)
    present = counts > 0
    if not present.any():
        return np.ones(classes, dtype=np.float32)
    w = np.zeros(classes)
    w[present] = counts.max() / counts[present]
    return w.astype(np.float32)


_LOSSES: dict[str, type[nn.Module]] = {
    "ccc": CCCLoss,
    "rmse": RMSELoss,
    "mse": MSELoss,
    "focal": FocalLoss,
    "ce": WeightedCE,
}


def build_loss(name: str, **kw: Any) -> nn.Module:
    """A loss module by name: ``"ccc" | "rmse" | "mse" | "focal" | "ce"``.

    Keyword arguments go to the class (``focal``: ``gamma``, ``weight``, ``ignore_index``;
    ``ce``: ``weight``, ``label_smoothing``, ``ignore_index``). ``weight`` may also be the
    string ``"inverse_frequency"`` or ``"max_count"`` together with ``labels=`` (training
    labels) and optionally ``classes=``.
    """
    if name not in _LOSSES:
        raise ValueError(f"unknown loss {name!r} (known: {', '.join(_LOSSES)})")
    weight = kw.get("weight")
    if isinstance(weight, str):
        rules = {"inverse_frequency": inverse_frequency_weights, "max_count": max_count_weights}
        if weight not in rules:
            raise ValueError(f"unknown class weighting {weight!r} (known: {', '.join(rules)})")
        if "labels" not in kw:
            raise ValueError(f"class weighting {weight!r} needs the training labels (labels=...)")
        kw["weight"] = rules[weight](kw.pop("labels"), kw.pop("classes", 8))
    try:
        return _LOSSES[name](**kw)
    except TypeError as e:
        raise ValueError(f"loss {name!r}: {e}") from None
