"""Neural temporal predictors and feature-level fusion for the ABAW recipes.

Every model maps per-frame feature sequences to per-frame outputs:

- :class:`TemporalTransformer`: the paper's best temporal video model (input BatchNorm over the
  features, projection to ``d_model``, sinusoidal positions, post-norm Transformer encoder,
  per-frame head).
- :class:`TemporalGRU`: the recurrent variant.
- :class:`CrossAttentionFusion`: feature-level fusion of one audio stream with one or more video
  streams by rounds of cross-attention, pooled per frame across the streams.

Shapes: ``B`` windows, ``T`` frames per window, ``D`` features per frame. Masks are ``(B, T)``
booleans, ``True`` = valid frame. Frames marked invalid never influence the outputs of valid
frames (they are excluded from batch statistics, attention keys and recurrences), so padding a
window does not change its predictions.

:func:`build_model` builds any of them from a recipe's YAML ``model`` section; the module it returns
is always called as ``model(xs, mask)`` with ``xs`` a dict ``stream name -> (B, T, D_s)``.
"""

from __future__ import annotations

from collections.abc import Mapping
from typing import Any

import torch
from torch import Tensor, nn

from emofeat import ConfigError
from emofeat_recipes.validate import POOLS

__all__ = [
    "MODEL_KEYS",
    "ConcatStreams",
    "CrossAttentionFusion",
    "ModelSpecError",
    "SinusoidalPositions",
    "TemporalGRU",
    "TemporalTransformer",
    "build_model",
]

OUTPUTS = ("linear", "tanh")


class ModelSpecError(ConfigError, ValueError):
    """A model specification (recipe config ``model`` section) is malformed."""


def _check_output(output: str) -> None:
    if output not in OUTPUTS:
        raise ModelSpecError(f"model output must be one of {OUTPUTS}, got {output!r}")


def _check_mask(x: Tensor, mask: Tensor | None) -> Tensor:
    """Return a boolean ``(B, T)`` validity mask for ``x`` of shape ``(B, T, D)``."""
    if x.dim() != 3:
        raise ValueError(f"expected input of shape (batch, frames, features), got {tuple(x.shape)}")
    if mask is None:
        return torch.ones(x.shape[:2], dtype=torch.bool, device=x.device)
    if mask.shape != x.shape[:2]:
        raise ValueError(
            f"mask shape {tuple(mask.shape)} does not match input (batch, frames) "
            f"{tuple(x.shape[:2])}"
        )
    return mask.to(device=x.device, dtype=torch.bool)


def _key_padding(mask: Tensor) -> Tensor:
    """``key_padding_mask`` for attention (``True`` = ignore) from a validity mask.

    A window with no valid frame at all would make every attention row a softmax over nothing
    (NaN, which then poisons the gradients even where the loss masks those frames out); such
    windows attend to all their frames instead. Their outputs are meaningless either way.
    """
    pad = ~mask
    empty = pad.all(dim=1)
    if empty.any():
        pad = pad.clone()
        pad[empty] = False
    return pad


class MaskedBatchNorm(nn.Module):
    """BatchNorm over the feature axis of ``(B, T, D)`` using valid frames only.

    Statistics are pooled over every valid frame of the batch, so padding never shifts them.
    Invalid frames are set to zero (their input may be NaN: the store marks missing features so).
    """

    def __init__(self, dim: int) -> None:
        super().__init__()
        self.bn = nn.BatchNorm1d(dim)

    def forward(self, x: Tensor, mask: Tensor) -> Tensor:
        out = torch.zeros_like(x)
        valid = x[mask]
        if valid.shape[0] == 0:
            return out
        if valid.shape[0] > 1 or not self.training:
            out[mask] = self.bn(valid)
        else:
            # a single valid frame has no batch variance: normalise with the running statistics
            out[mask] = nn.functional.batch_norm(
                valid,
                self.bn.running_mean,
                self.bn.running_var,
                self.bn.weight,
                self.bn.bias,
                False,
                0.0,
                self.bn.eps,
            )
        return out


class SinusoidalPositions(nn.Module):
    """Adds fixed sinusoidal position encodings (Vaswani et al. 2017) to ``(B, T, d)``.

    Position ``p`` (frame index within the window, 0-based), channel pair ``(2i, 2i + 1)``:
    ``sin(p / base^(2i/d))``, ``cos(p / base^(2i/d))``. Any window length works; encodings are
    computed for the length at hand and cached.
    """

    def __init__(self, d_model: int, dropout: float = 0.0, base: float = 10000.0) -> None:
        super().__init__()
        self.d_model = d_model
        self.base = base
        self.dropout = nn.Dropout(dropout)
        self.register_buffer("_table", torch.zeros(0, d_model), persistent=False)

    def table(self, length: int, device: torch.device | None = None) -> Tensor:
        """The ``(length, d_model)`` encodings."""
        if self._table.shape[0] < length:
            pos = torch.arange(length, dtype=torch.float64)[:, None]
            i = torch.arange(0, self.d_model, 2, dtype=torch.float64)
            angle = pos / self.base ** (i / self.d_model)
            table = torch.zeros(length, self.d_model, dtype=torch.float64)
            table[:, 0::2] = torch.sin(angle)
            table[:, 1::2] = torch.cos(angle[:, : self.d_model // 2])
            self._table = table.to(dtype=torch.float32, device=self._table.device)
        return self._table[:length].to(device) if device is not None else self._table[:length]

    def forward(self, x: Tensor) -> Tensor:
        return self.dropout(x + self.table(x.shape[1], x.device).to(x.dtype))


def _head(in_dim: int, out_dim: int, output: str) -> nn.Module:
    _check_output(output)
    layers: list[nn.Module] = [nn.Linear(in_dim, out_dim)]
    if output == "tanh":
        layers.append(nn.Tanh())
    return nn.Sequential(*layers)


class TemporalTransformer(nn.Module):
    """Per-frame Transformer encoder: the paper's temporal video model.

    Input BatchNorm over the ``in_dim`` features (valid frames only), linear projection to
    ``d_model``, sinusoidal positions, ``layers`` post-norm encoder layers (``heads`` heads,
    feed-forward width ``ff``, ``dropout``), then a per-frame linear head with ``out_dim``
    outputs: logits (``output="linear"``) or values in [-1, 1] (``output="tanh"``).
    Paper defaults: 3 layers, d 256, 8 heads, feed-forward 256, dropout 0.1.
    """

    def __init__(
        self,
        in_dim: int,
        out_dim: int,
        d_model: int = 256,
        layers: int = 3,
        heads: int = 8,
        ff: int = 256,
        dropout: float = 0.1,
        input_bn: bool = True,
        output: str = "linear",
    ) -> None:
        super().__init__()
        if d_model % heads:
            raise ModelSpecError(f"d_model ({d_model}) must be divisible by heads ({heads})")
        self.input_bn = MaskedBatchNorm(in_dim) if input_bn else None
        self.proj = nn.Linear(in_dim, d_model)
        self.positions = SinusoidalPositions(d_model, dropout)
        layer = nn.TransformerEncoderLayer(
            d_model, heads, ff, dropout, batch_first=True, norm_first=False
        )
        # nested tensors would change results with the padding pattern; keep the plain path
        self.encoder = nn.TransformerEncoder(layer, layers, enable_nested_tensor=False)
        self.head = _head(d_model, out_dim, output)

    def forward(self, x: Tensor, mask: Tensor | None = None) -> Tensor:
        """``x`` (B, T, in_dim), ``mask`` (B, T) valid -> (B, T, out_dim)."""
        mask = _check_mask(x, mask)
        x = x.masked_fill(~mask[..., None], 0.0)
        if self.input_bn is not None:
            x = self.input_bn(x, mask)
        h = self.positions(self.proj(x))
        h = self.encoder(h, src_key_padding_mask=_key_padding(mask))
        return self.head(h)


class TemporalGRU(nn.Module):
    """Per-frame GRU: input BatchNorm, ``layers`` GRU layers of width ``hidden``, linear head.

    Frames after the last valid frame of a window are packed away, so trailing padding never
    reaches the recurrence (in either direction when ``bidirectional``). Invalid frames inside a
    window are zeroed, not skipped: the recurrence runs at the frame rate.
    """

    def __init__(
        self,
        in_dim: int,
        out_dim: int,
        hidden: int = 256,
        layers: int = 2,
        bidirectional: bool = False,
        dropout: float = 0.1,
        input_bn: bool = True,
        output: str = "linear",
    ) -> None:
        super().__init__()
        self.input_bn = MaskedBatchNorm(in_dim) if input_bn else None
        self.gru = nn.GRU(
            in_dim,
            hidden,
            num_layers=layers,
            batch_first=True,
            bidirectional=bidirectional,
            dropout=dropout if layers > 1 else 0.0,
        )
        self.dropout = nn.Dropout(dropout)
        self.head = _head(hidden * (2 if bidirectional else 1), out_dim, output)

    def forward(self, x: Tensor, mask: Tensor | None = None) -> Tensor:
        """``x`` (B, T, in_dim), ``mask`` (B, T) valid -> (B, T, out_dim)."""
        mask = _check_mask(x, mask)
        x = x.masked_fill(~mask[..., None], 0.0)
        if self.input_bn is not None:
            x = self.input_bn(x, mask)
        steps = torch.arange(1, x.shape[1] + 1, device=x.device)
        lengths = (mask * steps).amax(dim=1).clamp(min=1)  # last valid frame + 1
        packed = nn.utils.rnn.pack_padded_sequence(
            x, lengths.cpu(), batch_first=True, enforce_sorted=False
        )
        out, _ = self.gru(packed)
        h, _ = nn.utils.rnn.pad_packed_sequence(out, batch_first=True, total_length=x.shape[1])
        return self.head(self.dropout(h))


class _Block(nn.Module):
    """Post-norm attention block: ``q`` attends to ``kv``, then a feed-forward layer."""

    def __init__(self, d: int, heads: int, dropout: float) -> None:
        super().__init__()
        self.attn = nn.MultiheadAttention(d, heads, dropout=dropout, batch_first=True)
        self.norm1 = nn.LayerNorm(d)
        self.ff = nn.Sequential(nn.Linear(d, d), nn.GELU(), nn.Dropout(dropout), nn.Linear(d, d))
        self.norm2 = nn.LayerNorm(d)
        self.drop = nn.Dropout(dropout)

    def forward(self, q: Tensor, kv: Tensor, key_padding: Tensor) -> Tensor:
        a, _ = self.attn(q, kv, kv, key_padding_mask=key_padding, need_weights=False)
        h = self.norm1(q + self.drop(a))
        return self.norm2(h + self.drop(self.ff(h)))


class CrossAttentionFusion(nn.Module):
    """Feature-level fusion of an audio stream with one or more video streams.

    Each stream is BatchNorm-ed (optional), projected to width ``d`` and given sinusoidal
    positions. Each of ``rounds`` rounds updates every stream at once: the audio stream attends to
    all video frames of all video streams (keys concatenated along time), and each video stream
    attends to the audio stream. Per frame, the attended streams are pooled across streams:
    ``"mean+std"`` (2d), ``"mean"`` (d) or ``"concat"`` (d x number of streams); a per-frame
    head (Linear-GELU-Dropout-Linear) gives ``out_dim`` outputs.

    Masks may be one ``(B, T)`` tensor for all streams or a dict with one per stream (a video
    stream can be missing where no face was found while the audio is valid). The mean/std pooling
    uses, per frame, only the streams valid at that frame.
    """

    def __init__(
        self,
        dims: Mapping[str, int],
        audio: str,
        d: int = 256,
        heads: int = 8,
        rounds: int = 2,
        pool: str = "mean+std",
        out_dim: int = 2,
        dropout: float = 0.1,
        output: str = "linear",
        input_bn: bool = True,
    ) -> None:
        super().__init__()
        if audio not in dims:
            raise ModelSpecError(
                f"fusion audio stream {audio!r} is not among the inputs {sorted(dims)}"
            )
        if len(dims) < 2:
            raise ModelSpecError(
                f"fusion needs the audio stream and at least one video stream, got {sorted(dims)}"
            )
        if pool not in POOLS:
            raise ModelSpecError(f"fusion pool must be one of {POOLS}, got {pool!r}")
        if d % heads:
            raise ModelSpecError(f"fusion width d ({d}) must be divisible by heads ({heads})")
        self.audio = audio
        self.videos = [name for name in dims if name != audio]
        self.streams = [audio, *self.videos]
        self.pool = pool
        self.bns = nn.ModuleDict(
            {_key(s): MaskedBatchNorm(dims[s]) for s in self.streams} if input_bn else {}
        )
        self.proj = nn.ModuleDict({_key(s): nn.Linear(dims[s], d) for s in self.streams})
        self.positions = SinusoidalPositions(d, dropout)
        self.rounds = nn.ModuleList(
            nn.ModuleDict({_key(s): _Block(d, heads, dropout) for s in self.streams})
            for _ in range(rounds)
        )
        pooled = {"mean+std": 2 * d, "mean": d, "concat": d * len(self.streams)}[pool]
        _check_output(output)
        self.head = nn.Sequential(
            nn.Linear(pooled, d), nn.GELU(), nn.Dropout(dropout), _head(d, out_dim, output)
        )

    def forward(
        self, xs: Mapping[str, Tensor], mask: Tensor | Mapping[str, Tensor] | None = None
    ) -> Tensor:
        """``xs`` stream -> (B, T, D_s) (same B, T), ``mask`` (B, T) -> (B, T, out_dim)."""
        missing = [s for s in self.streams if s not in xs]
        if missing:
            raise ValueError(f"fusion input lacks streams {missing} (has {sorted(xs)})")
        shape = xs[self.audio].shape[:2]
        masks: dict[str, Tensor] = {}
        h: dict[str, Tensor] = {}
        for s in self.streams:
            x = xs[s]
            if x.shape[:2] != shape:
                raise ValueError(
                    f"stream {s!r} has (batch, frames) {tuple(x.shape[:2])}, "
                    f"audio {self.audio!r} has {tuple(shape)}"
                )
            m = mask.get(s) if isinstance(mask, Mapping) else mask
            m = _check_mask(x, m)
            x = x.masked_fill(~m[..., None], 0.0)
            if len(self.bns):
                x = self.bns[_key(s)](x, m)
            masks[s] = m
            h[s] = self.positions(self.proj[_key(s)](x))
        pads = {s: _key_padding(m) for s, m in masks.items()}
        video_pad = torch.cat([pads[v] for v in self.videos], dim=1)
        for blocks in self.rounds:
            video_kv = torch.cat([h[v] for v in self.videos], dim=1)
            new = {self.audio: blocks[_key(self.audio)](h[self.audio], video_kv, video_pad)}
            for v in self.videos:
                new[v] = blocks[_key(v)](h[v], h[self.audio], pads[self.audio])
            h = new
        stack = torch.stack([h[s] for s in self.streams], dim=2)  # (B, T, S, d)
        if self.pool == "concat":
            valid = torch.stack([masks[s] for s in self.streams], dim=2)
            pooled = (stack * valid[..., None]).flatten(2)
        else:
            w = torch.stack([masks[s] for s in self.streams], dim=2).to(stack.dtype)[..., None]
            n = w.sum(dim=2).clamp(min=1.0)
            mean = (stack * w).sum(dim=2) / n
            pooled = mean
            if self.pool == "mean+std":
                var = (((stack - mean[:, :, None]) ** 2) * w).sum(dim=2) / n
                # eps inside the root keeps the gradient finite where all streams agree
                pooled = torch.cat([mean, torch.sqrt(var + 1e-6)], dim=-1)
        return self.head(pooled)


def _key(stream: str) -> str:
    """ModuleDict keys may not contain dots; stream names such as ``pdem.layer12`` do."""
    return stream.replace(".", "__")


class ConcatStreams(nn.Module):
    """Calls a single-input temporal model on its streams concatenated along the features.

    ``streams`` fixes the order (and so the meaning of the model's input columns).
    """

    def __init__(self, model: nn.Module, streams: list[str]) -> None:
        super().__init__()
        self.model = model
        self.streams = list(streams)

    def forward(
        self, xs: Mapping[str, Tensor] | Tensor, mask: Tensor | Mapping[str, Tensor] | None = None
    ) -> Tensor:
        """``xs`` stream -> (B, T, D_s) (or one tensor), ``mask`` (B, T) -> (B, T, out)."""
        if isinstance(xs, Tensor):
            x = xs
        else:
            missing = [s for s in self.streams if s not in xs]
            if missing:
                raise ValueError(f"model input lacks streams {missing} (has {sorted(xs)})")
            x = torch.cat([xs[s] for s in self.streams], dim=-1)
        if isinstance(mask, Mapping):
            # a frame is valid when every stream that feeds it is
            mask = torch.stack([mask[s] for s in self.streams]).all(dim=0)
        return self.model(x, mask)


_SPEC_KEYS: dict[str, dict[str, type | tuple[type, ...]]] = {
    "transformer": {
        "d_model": int, "layers": int, "heads": int, "ff": int, "dropout": (int, float),
        "input_bn": bool,
    },
    "gru": {
        "hidden": int, "layers": int, "bidirectional": bool, "dropout": (int, float),
        "input_bn": bool,
    },
    "fusion": {
        "audio": str, "d": int, "heads": int, "rounds": int, "pool": str,
        "dropout": (int, float), "input_bn": bool,
    },
}  # fmt: skip

#: the keys each model ``type`` accepts (beside ``type``), with their Python types
MODEL_KEYS = _SPEC_KEYS


def build_model(
    spec: Mapping[str, Any], dims: Mapping[str, int], out_dim: int, output: str = "linear"
) -> nn.Module:
    """Build a temporal model from a recipe config's ``model`` section.

    Args:
        spec: ``{"type": "transformer" | "gru" | "fusion", **hyperparameters}``; hyperparameters
            are the keyword arguments of :class:`TemporalTransformer`, :class:`TemporalGRU` or
            :class:`CrossAttentionFusion` (``audio`` names the fusion's audio stream).
        dims: input stream name -> feature width, in the order the streams are concatenated for
            the single-input models.
        out_dim: outputs per frame (2 for VA, 8 for EXPR).
        output: ``"linear"`` (logits) or ``"tanh"`` (values in [-1, 1]).

    Returns:
        A module called as ``model(xs, mask)``, ``xs`` a dict stream -> (B, T, D_s), returning
        (B, T, out_dim).

    Raises:
        ModelSpecError (a ValueError): unknown type, unknown key (named), wrong value type.
    """
    if not isinstance(spec, Mapping):
        raise ModelSpecError(f"model spec must be a mapping, got {type(spec).__name__}")
    kind = spec.get("type")
    if kind not in _SPEC_KEYS:
        raise ModelSpecError(f"model type must be one of {sorted(_SPEC_KEYS)}, got {kind!r}")
    allowed = _SPEC_KEYS[kind]
    kwargs = {k: v for k, v in spec.items() if k != "type"}
    for key, value in kwargs.items():
        if key not in allowed:
            raise ModelSpecError(
                f"unknown key {key!r} for model type {kind!r} (known: {', '.join(sorted(allowed))})"
            )
        # bool is an int subclass: a YAML ``layers: true`` is a mistake, not 1 layer
        wrong_bool = isinstance(value, bool) and allowed[key] is not bool
        if wrong_bool or not isinstance(value, allowed[key]):
            raise ModelSpecError(
                f"model key {key!r} must be {_type_name(allowed[key])}, got {value!r}"
            )
    if not dims:
        raise ModelSpecError("model has no input streams")
    _check_output(output)
    if kind == "fusion":
        if "audio" not in kwargs:
            raise ModelSpecError("fusion model needs 'audio': the name of its audio stream")
        return CrossAttentionFusion(dict(dims), out_dim=out_dim, output=output, **kwargs)
    cls = TemporalTransformer if kind == "transformer" else TemporalGRU
    model = cls(sum(dims.values()), out_dim, output=output, **kwargs)
    return ConcatStreams(model, list(dims))


def _type_name(t: type | tuple[type, ...]) -> str:
    if isinstance(t, tuple):
        return "a number"
    return {int: "an integer", bool: "true or false", str: "a string"}.get(t, t.__name__)
