"""PDEM as a PyTorch network (transformers' Wav2Vec2): the torch backend of ``pdem``.

:class:`PdemNetwork` is the network of the public Hugging Face model
``audeering/wav2vec2-large-robust-12-ft-emotion-msp-dim`` (licence CC BY-NC-SA 4.0): a
12-layer Wav2Vec2 encoder, the mean over time of its last hidden state, and a regression
head ``dropout -> Linear(H, H) -> tanh -> dropout -> Linear(H, 3)`` giving arousal,
dominance and valence. Its state-dict keys are those of the Hugging Face checkpoint
(``wav2vec2.*``, ``classifier.dense.*``, ``classifier.out_proj.*``), so the public weights
load one to one. Unlike the ONNX export it gives per-frame states of any layer.

Frames and layers (see docs/audio.md, "Torch backend: frames and layers"):

* The convolutional front end has a receptive field of 400 samples and a stride of 320
  samples at 16 kHz: frame ``k`` covers samples ``[320 k, 320 k + 400)``, i.e. seconds
  ``[0.02 k, 0.02 k + 0.025)``; a signal of ``T >= 400`` samples has
  ``(T - 400) // 320 + 1`` frames.
* Layer ``0`` is the encoder's input: the feature projection's output plus the
  convolutional positional embedding (what transformers returns as ``hidden_states[0]``).
* Layer ``k`` for ``1 <= k < N`` (N = number of encoder layers, 12 for PDEM) is the output
  of encoder block ``k``: the raw residual stream, without the final LayerNorm (with
  ``do_stable_layer_norm`` each block normalises its own input), which is transformers'
  ``hidden_states[k]``.
* Layer ``N`` is the encoder's ``last_hidden_state``: the output of block ``N`` *after* the
  encoder's final LayerNorm - the states whose mean is the pooled ``hidden_states`` output
  of PDEM (ONNX and :meth:`PdemNetwork.forward`). transformers 4.x returned these as
  ``hidden_states[N]``; transformers 5.x returns block N's raw output there instead.

Checkpoints written by :func:`save_checkpoint` (the audio fine-tuning recipe) are folders::

    config.json        transformers.Wav2Vec2Config (+ id2label = the labels)
    model.safetensors  the network's state dict (+ ``extra_heads.<name>.*`` tensors)
    emofeat.json       {"format": "emofeat-pdem-checkpoint", "version": 1, "labels",
                        "license", "training", "metrics", "extra_heads"}

Loading never unpickles objects: safetensors, or ``torch.load(weights_only=True)`` for a
Hugging Face ``pytorch_model.bin``.
"""

from __future__ import annotations

import json
import math
import re
from collections.abc import Mapping, Sequence
from pathlib import Path
from typing import Any

import numpy as np
import torch
import transformers
from torch import Tensor, nn

from emofeat import ContextChunks
from emofeat.models import ModelError, ModelUnavailableError, sha256_file

HUB_ID = "audeering/wav2vec2-large-robust-12-ft-emotion-msp-dim"
PDEM_LABELS: tuple[str, ...] = ("arousal", "dominance", "valence")
PDEM_LICENSE = "CC-BY-NC-SA-4.0"
CHECKPOINT_FORMAT = "emofeat-pdem-checkpoint"
CHECKPOINT_VERSION = 1
SAMPLING_RATE = 16000  # Hz, the only rate the network was trained at
HOP = 320  # samples between frames (product of the conv strides): 20 ms
FRAME = 400  # samples seen by one frame (receptive field of the conv stack): 25 ms
NORM_EPS = 1e-7  # as Wav2Vec2FeatureExtractor(do_normalize=True)

# Architecture of PDEM (wav2vec2-large-robust pruned to 12 layers), as Wav2Vec2Config kwargs.
PDEM_CONFIG: dict[str, Any] = {
    "hidden_size": 1024,
    "num_hidden_layers": 12,
    "num_attention_heads": 16,
    "intermediate_size": 4096,
    "hidden_act": "gelu",
    "do_stable_layer_norm": True,
    "feat_extract_norm": "layer",
    "feat_extract_activation": "gelu",
    "conv_dim": (512, 512, 512, 512, 512, 512, 512),
    "conv_stride": (5, 2, 2, 2, 2, 2, 2),
    "conv_kernel": (10, 3, 3, 3, 3, 2, 2),
    "conv_bias": True,
    "num_conv_pos_embeddings": 128,
    "num_conv_pos_embedding_groups": 16,
    "layer_norm_eps": 1e-5,
    "hidden_dropout": 0.1,
    "attention_dropout": 0.1,
    "activation_dropout": 0.1,
    "feat_proj_dropout": 0.1,
    "final_dropout": 0.1,
    "layerdrop": 0.1,
    "mask_time_prob": 0.05,
    "num_labels": 3,
    "id2label": {0: "arousal", 1: "dominance", 2: "valence"},
    "label2id": {"arousal": 0, "dominance": 1, "valence": 2},
}


class PdemLoadError(ModelError):
    """A PDEM model folder or checkpoint cannot be read; the message names the file."""


def tiny_config(**overrides: Any) -> transformers.Wav2Vec2Config:
    """A small config of PDEM's architecture family, for tests and benchmarks.

    Same conv kernels and strides (400-sample frames every 320 samples), stable layer norm
    and layer-normed feature extractor as PDEM; hidden 32, 2 layers, 2 heads, conv width 32.
    Dropout is off so a freshly built network is deterministic even in training mode.
    """
    kwargs = dict(PDEM_CONFIG)
    kwargs.update(
        hidden_size=32,
        num_hidden_layers=2,
        num_attention_heads=2,
        intermediate_size=64,
        conv_dim=(32,) * 7,
        hidden_dropout=0.0,
        attention_dropout=0.0,
        activation_dropout=0.0,
        feat_proj_dropout=0.0,
        final_dropout=0.0,
        layerdrop=0.0,
    )
    kwargs.update(overrides)
    return transformers.Wav2Vec2Config(**kwargs)


def num_frames(num_samples: int) -> int:
    """Number of ~50 Hz frames the network yields for ``num_samples`` samples at 16 kHz."""
    return 0 if num_samples < FRAME else (num_samples - FRAME) // HOP + 1


def frame_times(first: int, n: int, sampling_rate: int = SAMPLING_RATE) -> tuple[np.ndarray, ...]:
    """Start and end (seconds) of frames ``first .. first + n - 1``."""
    k = np.arange(first, first + n, dtype=np.float64)
    starts = k * HOP / sampling_rate
    return starts, starts + FRAME / sampling_rate


class RegressionHead(nn.Module):
    """PDEM's head: ``dropout -> dense -> tanh -> dropout -> out_proj`` (keys as on the hub)."""

    def __init__(self, hidden_size: int, num_labels: int, dropout: float) -> None:
        super().__init__()
        self.dense = nn.Linear(hidden_size, hidden_size)
        self.dropout = nn.Dropout(dropout)
        self.out_proj = nn.Linear(hidden_size, num_labels)

    def forward(self, x: Tensor) -> Tensor:
        x = self.dropout(x)
        x = torch.tanh(self.dense(x))
        x = self.dropout(x)
        return self.out_proj(x)


class PdemNetwork(nn.Module):
    """Wav2Vec2 encoder + mean pooling + PDEM's regression head.

    Input everywhere is raw signal at 16 kHz, float, shape ``(batch, samples)``; it is
    z-normalised per row inside (zero mean, unit variance, eps 1e-7, like
    ``Wav2Vec2FeatureExtractor(do_normalize=True)``), so an ONNX export of this module
    takes raw signal as the public ONNX model does. No padding masks: all rows of a batch
    are real signal of the same length.

    Args:
        config: the Wav2Vec2 config (``PDEM_CONFIG`` or :func:`tiny_config`).
        labels: names of the head's outputs, in order.
    """

    def __init__(
        self, config: transformers.Wav2Vec2Config, labels: Sequence[str] = PDEM_LABELS
    ) -> None:
        super().__init__()
        if not config.do_stable_layer_norm:
            # the layer semantics documented above assume the pre-LN encoder of PDEM
            raise ValueError("PdemNetwork needs a Wav2Vec2Config with do_stable_layer_norm=True")
        self.config = config
        self.labels: tuple[str, ...] = tuple(labels)
        self.hidden_size: int = int(config.hidden_size)
        self.num_layers: int = int(config.num_hidden_layers)
        self.wav2vec2 = transformers.Wav2Vec2Model(config)
        self.classifier = RegressionHead(self.hidden_size, len(self.labels), config.final_dropout)

    @staticmethod
    def normalize(signal: Tensor) -> Tensor:
        """Z-normalise each row (statistics in float32 even for half-precision input)."""
        x = signal.float()
        mean = x.mean(dim=-1, keepdim=True)
        var = x.var(dim=-1, keepdim=True, unbiased=False)
        return ((x - mean) / torch.sqrt(var + NORM_EPS)).to(signal.dtype)

    def _check(self, signal: Tensor) -> None:
        if signal.dim() != 2:
            raise ValueError(f"signal must have shape (batch, samples), got {tuple(signal.shape)}")
        if signal.shape[1] < FRAME:
            raise ValueError(
                f"signal of {signal.shape[1]} samples is shorter than one frame "
                f"({FRAME} samples = {FRAME / SAMPLING_RATE * 1000:.0f} ms at 16 kHz)"
            )

    def forward(self, signal: Tensor) -> tuple[Tensor, Tensor]:
        """Pooled embedding ``(B, H)`` (mean of the last layer over time) and logits ``(B, L)``."""
        if not torch.jit.is_tracing() and not torch.onnx.is_in_onnx_export():
            self._check(signal)
        states = self.wav2vec2(self.normalize(signal)).last_hidden_state
        pooled = states.mean(dim=1)
        return pooled, self.classifier(pooled)

    def frames(self, signal: Tensor, layers: Sequence[int]) -> dict[int, Tensor]:
        """Per-frame states ``{layer: (B, F, H)}`` of the requested layers (0..N).

        ``F = (samples - 400) // 320 + 1``; frame ``k`` covers samples ``[320 k, 320 k + 400)``.
        Layer meanings are in the module docstring. Computation stops at the highest layer
        asked for. In training mode layerdrop and dropout apply as in transformers; the
        SpecAugment time masking of ``Wav2Vec2Model`` does not.
        """
        self._check(signal)
        wanted = sorted({int(k) for k in layers})
        if not wanted:
            raise ValueError("frames: no layers requested")
        bad = [k for k in wanted if not 0 <= k <= self.num_layers]
        if bad:
            raise ValueError(
                f"layers {bad} out of range: this network has layers 0..{self.num_layers}"
            )
        w2v = self.wav2vec2
        enc = w2v.encoder
        feats = w2v.feature_extractor(self.normalize(signal)).transpose(1, 2)
        h, _ = w2v.feature_projection(feats)
        h = enc.dropout(h + enc.pos_conv_embed(h))
        out: dict[int, Tensor] = {}
        if wanted[0] == 0:
            out[0] = h
        for i in range(1, wanted[-1] + 1):
            skip = (
                self.training
                and self.config.layerdrop > 0
                and bool(torch.rand([]) < self.config.layerdrop)
            )
            if not skip:
                h = enc.layers[i - 1](h, attention_mask=None)
            if i == self.num_layers:
                h = enc.layer_norm(h)
            if i in wanted:
                out[i] = h
        return out


# --------------------------------------------------------------------------------------
# Fine-tuned sequence heads (written by the audio fine-tuning recipe, run by ``pdem``)

#: class name recorded in a checkpoint's ``extra_heads.<name>.class``
HEAD_CLASS = "SequenceHead"


class SequenceHead(nn.Module):
    """A GRU or Transformer over 50 Hz encoder frames, pooled to output steps, then linear.

    Input ``(B, F, H)`` frames of one window; frame ``k`` covers ``[0.02 k, 0.02 k + 0.025)``
    s of the window. Frame ``k`` belongs to step ``floor((0.02 k + 0.0125) / step_seconds)``
    (its centre), clipped to ``steps - 1``; a step's value is the mean of its frames' head
    states. Output ``(B, steps, out_dim)``, through tanh when ``activation="tanh"`` (VA).

    Args:
        kind: ``"gru"`` (``gru_layers`` layers of ``gru_hidden`` units) or ``"transformer"``
            (``layers`` encoder layers of width ``hidden_size``, ``heads`` heads, feed-forward
            ``ff``).
        hidden_size: width of the encoder frames (1024 for PDEM).
        out_dim: outputs per step (2 for VA, 8 for EXPR).
        steps: output steps per window (20 for 4 s at 5 Hz).
        step_seconds: length of one step in seconds.
    """

    def __init__(
        self,
        kind: str,
        hidden_size: int,
        out_dim: int,
        steps: int,
        step_seconds: float,
        gru_hidden: int = 256,
        gru_layers: int = 2,
        bidirectional: bool = False,
        layers: int = 2,
        heads: int = 8,
        ff: int = 1024,
        dropout: float = 0.1,
        activation: str = "none",
    ) -> None:
        super().__init__()
        if kind not in ("gru", "transformer"):
            raise ValueError(f"head kind must be 'gru' or 'transformer', got {kind!r}")
        if activation not in ("none", "tanh"):
            raise ValueError(f"head activation must be 'none' or 'tanh', got {activation!r}")
        if steps < 1 or step_seconds <= 0:
            raise ValueError(f"steps ({steps}) and step_seconds ({step_seconds}) must be > 0")
        self.kind = kind
        self.steps = int(steps)
        self.step_seconds = float(step_seconds)
        self.activation = activation
        if kind == "gru":
            self.rnn = nn.GRU(
                hidden_size,
                gru_hidden,
                num_layers=gru_layers,
                batch_first=True,
                bidirectional=bidirectional,
                dropout=dropout if gru_layers > 1 else 0.0,
            )
            width = gru_hidden * (2 if bidirectional else 1)
        else:
            if hidden_size % heads:
                raise ValueError(f"heads ({heads}) must divide the hidden size ({hidden_size})")
            layer = nn.TransformerEncoderLayer(
                hidden_size, heads, ff, dropout, batch_first=True, norm_first=True
            )
            self.encoder = nn.TransformerEncoder(
                layer, layers, norm=nn.LayerNorm(hidden_size), enable_nested_tensor=False
            )
            width = hidden_size
        self.dropout = nn.Dropout(dropout)
        self.out = nn.Linear(width, out_dim)
        # start near 0: tanh (VA) in its linear range, EXPR logits near uniform. With the
        # default init the transformer head's outputs can start (and drift) into tanh's
        # saturation, where the CCC loss has no gradient left and the outputs collapse
        nn.init.normal_(self.out.weight, std=0.01)
        nn.init.zeros_(self.out.bias)

    def pool_matrix(self, n_frames: int, device: torch.device, dtype: torch.dtype) -> Tensor:
        """``(steps, n_frames)`` averaging weights: row j is the mean over step j's frames."""
        centres = (torch.arange(n_frames, dtype=torch.float64) * HOP + FRAME / 2) / SAMPLING_RATE
        step = torch.clamp((centres / self.step_seconds).floor().long(), max=self.steps - 1)
        w = torch.zeros(self.steps, n_frames, dtype=torch.float64)
        w[step, torch.arange(n_frames)] = 1.0
        # a step with no frame (window shorter than steps * step_seconds) averages nothing: 0
        w = w / w.sum(dim=1, keepdim=True).clamp(min=1.0)
        return w.to(device=device, dtype=dtype)

    def forward(self, frames: Tensor) -> Tensor:
        if self.kind == "gru":
            h, _ = self.rnn(frames)
        else:
            h = self.encoder(frames)
        pooled = torch.einsum("sf,bfh->bsh", self.pool_matrix(h.shape[1], h.device, h.dtype), h)
        y = self.out(self.dropout(pooled))
        return torch.tanh(y) if self.activation == "tanh" else y


_HEAD_ARGS = (
    "kind",
    "hidden_size",
    "out_dim",
    "steps",
    "step_seconds",
    "gru_hidden",
    "gru_layers",
    "bidirectional",
    "layers",
    "heads",
    "ff",
    "dropout",
    "activation",
)


def build_head(spec: dict[str, Any], state_dict: dict[str, Tensor] | None = None) -> SequenceHead:
    """Rebuild a :class:`SequenceHead` from its checkpoint spec (and load its weights)."""
    if spec.get("class") != HEAD_CLASS:
        raise ValueError(f"extra head class {spec.get('class')!r} is not {HEAD_CLASS!r}")
    head = SequenceHead(**{k: spec[k] for k in _HEAD_ARGS if k in spec})
    if state_dict is not None:
        head.load_state_dict(state_dict)
    return head.eval()


# --------------------------------------------------------------------------------------
# Loading and saving


def _is_hub_id(source: str) -> bool:
    return bool(re.fullmatch(r"[A-Za-z0-9][\w.-]*/[\w.-]+", source)) and not Path(source).exists()


def _hub_folder(repo_id: str) -> Path:
    """Download (or find in the Hugging Face cache) config.json, README.md and the weights."""
    try:
        from huggingface_hub import hf_hub_download
        from huggingface_hub.errors import EntryNotFoundError
    except ImportError as exc:  # pragma: no cover - huggingface_hub comes with transformers
        raise ModelUnavailableError(
            f"{repo_id}: huggingface_hub is not installed; download the model folder and "
            "pass its path instead"
        ) from exc
    try:
        config = Path(hf_hub_download(repo_id, "config.json"))
        for name in ("model.safetensors", "pytorch_model.bin"):
            try:
                hf_hub_download(repo_id, name)
                break
            except EntryNotFoundError:
                continue
        try:
            hf_hub_download(repo_id, "README.md")  # carries the licence field
        except EntryNotFoundError:
            pass
    except Exception as exc:  # offline, no such repo, network errors, ...
        from huggingface_hub import constants

        offline = bool(constants.HF_HUB_OFFLINE)
        raise ModelUnavailableError(
            f"no local folder {repo_id!r}, and cannot get it from the Hugging Face hub "
            f"({'HF_HUB_OFFLINE is set' if offline else 'offline or unreachable?'}: "
            f"{type(exc).__name__}: {str(exc).splitlines()[0] if str(exc) else ''}). "
            f"On a machine with internet run `huggingface-cli download {repo_id} --local-dir "
            f"DIR` (or `git clone https://huggingface.co/{repo_id} DIR`), copy DIR here and "
            "pass the folder instead of the hub id (e.g. --set pdem.model=DIR); it needs "
            "config.json and model.safetensors or pytorch_model.bin"
        ) from exc
    return config.parent


def _readme_license(folder: Path) -> str:
    """The ``license:`` field of a Hugging Face model card's YAML front matter, if any."""
    readme = folder / "README.md"
    if not readme.is_file():
        return ""
    text = readme.read_text(encoding="utf-8", errors="replace")
    m = re.match(r"---\s*\n(.*?)\n---", text, flags=re.S)
    if not m:
        return ""
    import yaml

    try:
        meta = yaml.safe_load(m.group(1)) or {}
    except yaml.YAMLError:
        return ""
    lic = meta.get("license", "") if isinstance(meta, dict) else ""
    return str(lic).upper() if lic else ""


def _read_config(folder: Path) -> transformers.Wav2Vec2Config:
    path = folder / "config.json"
    if not path.is_file():
        raise PdemLoadError(
            f"{folder}: no config.json (a PDEM model folder holds config.json and "
            "model.safetensors or pytorch_model.bin)"
        )
    try:
        data = json.loads(path.read_text(encoding="utf-8"))
    except json.JSONDecodeError as exc:
        raise PdemLoadError(f"{path}: line {exc.lineno}: not valid JSON: {exc.msg}") from exc
    if not isinstance(data, dict) or data.get("model_type", "wav2vec2") != "wav2vec2":
        kind = data.get("model_type") if isinstance(data, dict) else type(data).__name__
        raise PdemLoadError(f"{path}: model_type {kind!r} is not a Wav2Vec2 model")
    data.pop("model_type", None)
    try:
        return transformers.Wav2Vec2Config(**data)
    except (TypeError, ValueError) as exc:
        raise PdemLoadError(f"{path}: not a valid Wav2Vec2 config: {exc}") from exc


def _read_weights(folder: Path) -> tuple[dict[str, Tensor], Path]:
    st = folder / "model.safetensors"
    pt = folder / "pytorch_model.bin"
    if st.is_file():
        from safetensors import SafetensorError
        from safetensors.torch import load_file

        try:
            return load_file(str(st)), st
        except (SafetensorError, OSError) as exc:
            raise PdemLoadError(f"{st}: cannot read safetensors weights: {exc}") from exc
    if pt.is_file():
        try:
            sd = torch.load(pt, map_location="cpu", weights_only=True)
        except Exception as exc:  # pickle errors of all kinds; never falls back to unsafe load
            raise PdemLoadError(
                f"{pt}: cannot read as a plain state dict (torch.load weights_only=True): {exc}"
            ) from exc
        if not isinstance(sd, Mapping):
            raise PdemLoadError(f"{pt}: holds a {type(sd).__name__}, not a state dict")
        return dict(sd), pt
    if (folder / "model.safetensors.index.json").is_file():
        raise PdemLoadError(f"{folder}: sharded checkpoints are not supported; merge the shards")
    raise PdemLoadError(f"{folder}: no model.safetensors or pytorch_model.bin")


def _labels_from_config(config: transformers.Wav2Vec2Config, n: int) -> tuple[str, ...]:
    id2label = {int(k): str(v) for k, v in (getattr(config, "id2label", None) or {}).items()}
    names = tuple(id2label.get(i, "") for i in range(n))
    if all(names) and not all(re.fullmatch(r"LABEL_\d+", s) for s in names):
        return names
    return PDEM_LABELS if n == len(PDEM_LABELS) else tuple(f"output_{i}" for i in range(n))


def _fit_state_dict(net: PdemNetwork, sd: dict[str, Tensor], path: Path) -> dict[str, Tensor]:
    """Map old weight-norm key names and check that keys and shapes fit ``net`` exactly."""
    own = net.state_dict()
    fitted: dict[str, Tensor] = {}
    # checkpoints from before torch's parametrized weight_norm use weight_g / weight_v
    renames = {
        ".weight_g": ".parametrizations.weight.original0",
        ".weight_v": ".parametrizations.weight.original1",
    }
    for key, value in sd.items():
        if key not in own:
            for old, new in renames.items():
                if key.endswith(old) and key[: -len(old)] + new in own:
                    key = key[: -len(old)] + new
                    break
                if key.endswith(new) and key[: -len(new)] + old in own:
                    key = key[: -len(new)] + old
                    break
        fitted[key] = value
    # masked_spec_embed is only used for SpecAugment in training; checkpoints may lack it
    optional = {"wav2vec2.masked_spec_embed"}
    missing = sorted(set(own) - set(fitted) - optional)
    unexpected = sorted(set(fitted) - set(own))
    if missing or unexpected:
        raise PdemLoadError(
            f"{path}: weights do not fit the network of config.json: "
            f"missing {missing[:5]}{' ...' if len(missing) > 5 else ''}, "
            f"unexpected {unexpected[:5]}{' ...' if len(unexpected) > 5 else ''}"
        )
    for key, value in fitted.items():
        if tuple(value.shape) != tuple(own[key].shape):
            raise PdemLoadError(
                f"{path}: {key} has shape {tuple(value.shape)}, config.json implies "
                f"{tuple(own[key].shape)}"
            )
    return fitted


def load_network(source: str | Path, device: str = "cpu") -> tuple[PdemNetwork, dict[str, Any]]:
    """Load PDEM (or a fine-tuned PDEM) in eval mode on ``device``.

    Args:
        source: (a) a local Hugging Face model folder (config.json + model.safetensors or
            pytorch_model.bin), (b) an emofeat checkpoint folder (:func:`save_checkpoint`),
            or (c) a hub id such as ``audeering/wav2vec2-large-robust-12-ft-emotion-msp-dim``
            (downloaded through huggingface_hub's cache; needs internet once).
        device: torch device string.

    Returns:
        ``(network, info)``; info has ``id``, ``sha256`` (of the weights file), ``license``,
        ``source``, ``labels``, ``format`` (``"huggingface"`` or ``"emofeat"``) and, for
        emofeat checkpoints, ``training``, ``metrics`` and ``extra_heads``
        (``{name: {"spec": dict, "state_dict": {key: tensor}}}``).

    Raises:
        ModelUnavailableError: a hub id could not be downloaded (the message says how to
            provide a local folder).
        PdemLoadError: the folder is not a readable PDEM model.
    """
    src = str(source)
    if _is_hub_id(src):
        folder, model_id = _hub_folder(src), src
    else:
        folder = Path(source).expanduser()
        if not folder.is_dir():
            raise PdemLoadError(
                f"{folder}: no such model folder (expected a folder with config.json and "
                f"model.safetensors, or a Hugging Face hub id like {HUB_ID})"
            )
        model_id = folder.resolve().name
    config = _read_config(folder)
    sd, weights = _read_weights(folder)

    meta: dict[str, Any] = {}
    meta_path = folder / "emofeat.json"
    if meta_path.is_file():
        try:
            meta = json.loads(meta_path.read_text(encoding="utf-8"))
        except json.JSONDecodeError as exc:
            raise PdemLoadError(
                f"{meta_path}: line {exc.lineno}: not valid JSON: {exc.msg}"
            ) from exc
        if not isinstance(meta, dict) or meta.get("format") != CHECKPOINT_FORMAT:
            raise PdemLoadError(f"{meta_path}: format {CHECKPOINT_FORMAT!r} expected")
        if int(meta.get("version", 0)) > CHECKPOINT_VERSION:
            raise PdemLoadError(
                f"{meta_path}: checkpoint version {meta['version']} is newer than this "
                f"emofeat reads ({CHECKPOINT_VERSION})"
            )

    extra: dict[str, dict[str, Any]] = {}
    for name, spec in (meta.get("extra_heads") or {}).items():
        prefix = f"extra_heads.{name}."
        extra[name] = {
            "spec": spec,
            "state_dict": {k[len(prefix) :]: v for k, v in sd.items() if k.startswith(prefix)},
        }
    sd = {k: v for k, v in sd.items() if not k.startswith("extra_heads.")}

    head = sd.get("classifier.out_proj.weight")
    if head is None:
        raise PdemLoadError(f"{weights}: no classifier.out_proj.weight (not a PDEM-style model)")
    n_labels = int(head.shape[0])
    labels = tuple(meta["labels"]) if meta.get("labels") else _labels_from_config(config, n_labels)
    if len(labels) != n_labels:
        raise PdemLoadError(
            f"{meta_path}: {len(labels)} labels {list(labels)} for a head of {n_labels} outputs"
        )
    net = PdemNetwork(config, labels)
    net.load_state_dict(_fit_state_dict(net, sd, weights), strict=False)
    net.to(device).eval()

    # no licence recorded: PDEM's own for its hub id, otherwise say it is unknown
    license_ = (
        meta.get("license")
        or _readme_license(folder)
        or (PDEM_LICENSE if src == HUB_ID else "unknown")
    )
    info: dict[str, Any] = {
        "id": model_id,
        "sha256": sha256_file(weights),
        "license": license_,
        "source": src,
        "labels": list(labels),
        "format": "emofeat" if meta else "huggingface",
    }
    if meta:
        info.update(
            training=meta.get("training") or {},
            metrics=meta.get("metrics") or {},
            extra_heads=extra,
        )
    return net, info


def save_checkpoint(
    net: PdemNetwork,
    folder: str | Path,
    *,
    training: dict | None = None,
    metrics: dict | None = None,
    extra_heads: dict | None = None,
    license: str = PDEM_LICENSE,
) -> Path:
    """Write an emofeat PDEM checkpoint folder (config.json, model.safetensors, emofeat.json).

    Args:
        net: the network (any device/dtype; saved as float32 on CPU).
        folder: created if missing; existing files of the same names are overwritten.
        training: JSON-able training settings (recorded as given).
        metrics: JSON-able dev/test metrics.
        extra_heads: further heads trained on top of the network, ``{name: module}`` or
            ``{name: {"state_dict": {...}, **json_spec}}``; their tensors are stored as
            ``extra_heads.<name>.*`` and their spec (class name and JSON fields) in
            emofeat.json, so the recipe that made them can rebuild them.
        license: licence of the weights; PDEM's derivatives stay CC BY-NC-SA 4.0.

    Returns:
        The folder.
    """
    from safetensors.torch import save_file

    folder = Path(folder)
    folder.mkdir(parents=True, exist_ok=True)
    tensors = {
        k: v.detach().to("cpu", torch.float32).contiguous() for k, v in net.state_dict().items()
    }
    specs: dict[str, dict[str, Any]] = {}
    for name, head in (extra_heads or {}).items():
        if isinstance(head, nn.Module):
            state, spec = head.state_dict(), {"class": type(head).__name__}
        elif isinstance(head, Mapping) and "state_dict" in head:
            state = head["state_dict"]
            spec = {k: v for k, v in head.items() if k != "state_dict"}
        else:
            raise TypeError(
                f"extra_heads[{name!r}] must be an nn.Module or a dict with a 'state_dict'"
            )
        for k, v in state.items():
            tensors[f"extra_heads.{name}.{k}"] = v.detach().to("cpu").contiguous()
        specs[str(name)] = spec

    meta = {
        "format": CHECKPOINT_FORMAT,
        "version": CHECKPOINT_VERSION,
        "labels": list(net.labels),
        "license": license,
        "training": training or {},
        "metrics": metrics or {},
        "extra_heads": specs,
    }
    try:
        meta_text = json.dumps(meta, indent=2)
    except TypeError as exc:
        raise TypeError(
            f"save_checkpoint: training/metrics/extra_heads not JSON-able: {exc}"
        ) from exc

    config = transformers.Wav2Vec2Config.from_dict(net.config.to_dict())
    config.id2label = dict(enumerate(net.labels))
    config.label2id = {v: i for i, v in enumerate(net.labels)}
    config.to_json_file(str(folder / "config.json"))
    save_file(tensors, str(folder / "model.safetensors"), metadata={"format": "pt"})
    (folder / "emofeat.json").write_text(meta_text + "\n", encoding="utf-8")
    return folder


# --------------------------------------------------------------------------------------
# Streaming frame extraction


FrameBlock = tuple[np.ndarray, np.ndarray, dict[int, np.ndarray]]


class FrameStitcher:
    """Frame-level states of long audio in overlapping chunks, with bounded memory.

    The signal is cut into blocks of ``chunk`` seconds, each run through the network with
    ``context`` seconds of neighbouring signal on both sides (:class:`emofeat.ContextChunks`
    aligned to the 320-sample hop); a block contributes the frames that *start* inside its
    own span. The frames are exactly those of one pass over the whole signal (same count,
    ``(T - 400) // 320 + 1``, and times: frame ``k`` spans ``[0.02 k, 0.02 k + 0.025)`` s);
    their values are close to it, not equal: self-attention and the positional convolution
    see only the chunk, and each chunk segment is z-normalised on its own (a whole pass
    normalises with the statistics of the whole signal), so loud or silent stretches
    affect only nearby chunks.

    At most ``chunk + 2 * context`` seconds of signal are held (:attr:`buffered`).

    Args:
        net: the network; moved to ``device`` and ``dtype`` (in place) and set to eval mode.
        layers: layers to return (0..N, see :meth:`PdemNetwork.frames`).
        chunk: own length of a block in seconds (rounded to 20 ms).
        context: context on each side in seconds (rounded to 20 ms; at least 20 ms so
            the last frames of a block, which reach 5 ms past it, are complete).
        sampling_rate: Hz of the pushed samples; must be 16000.
        device: torch device.
        dtype: network dtype (``torch.float16`` on GPUs); outputs are float32.
    """

    def __init__(
        self,
        net: PdemNetwork,
        layers: Sequence[int],
        chunk: float = 30.0,
        context: float = 5.0,
        sampling_rate: int = SAMPLING_RATE,
        device: str = "cpu",
        dtype: torch.dtype = torch.float32,
    ) -> None:
        if sampling_rate != SAMPLING_RATE:
            raise ValueError(f"PDEM needs 16000 Hz audio, got {sampling_rate} Hz (resample first)")
        if chunk <= 0 or context < 0:
            raise ValueError(f"chunk ({chunk} s) must be > 0 and context ({context} s) >= 0")
        self.layers = sorted({int(k) for k in layers})
        bad = [k for k in self.layers if not 0 <= k <= net.num_layers]
        if not self.layers or bad:
            raise ValueError(f"layers {list(layers)}: choose from 0..{net.num_layers}")
        self.net = net.to(device=device, dtype=dtype).eval()
        self.device = device
        self.dtype = dtype
        # a frame reaches FRAME - HOP = 80 samples past its start's block: keep >= one hop
        context = max(context, HOP / sampling_rate)
        self._chunks = ContextChunks(chunk, context, sampling_rate, align=HOP)
        self.capacity = self._chunks.block + 2 * self._chunks.context  # samples
        self.max_buffered = 0  # most samples ever held (for tests and diagnostics)

    @property
    def buffered(self) -> int:
        """Samples of signal held now."""
        return len(self._chunks.buf)

    def push(self, samples: np.ndarray) -> list[FrameBlock]:
        """Add samples (mono float at 16 kHz); return frames that are now final.

        Returns:
            ``[(starts, ends, {layer: (n, H) float32})]``, times in seconds.
        """
        samples = np.asarray(samples, dtype=np.float32).reshape(-1)
        out: list[FrameBlock] = []
        i = 0
        while i < len(samples):
            # feed no more than fits, so the buffer never exceeds chunk + 2 * context
            room = max(1, self.capacity - self.buffered)
            piece = samples[i : i + room]
            self.max_buffered = max(self.max_buffered, self.buffered + len(piece))
            for seg in self._chunks.push(piece):
                out.extend(self._run(*seg))
            i += room
        return out

    def flush(self) -> list[FrameBlock]:
        """The input ended: return the remaining frames."""
        out: list[FrameBlock] = []
        for seg in self._chunks.flush():
            out.extend(self._run(*seg))
        return out

    @torch.inference_mode()
    def _run(self, segment: np.ndarray, seg_start: int, keep_start: int, keep_end: int) -> list:
        n = num_frames(len(segment))
        if n == 0:
            return []
        # seg_start is a multiple of HOP (ContextChunks aligns block and context), so
        # segment frame j is global frame seg_start // HOP + j
        first = seg_start // HOP
        lo = max(0, -(-(keep_start - seg_start) // HOP))
        hi = min(n, math.ceil((keep_end - seg_start) / HOP)) if keep_end < 2**62 else n
        if hi <= lo:
            return []
        x = torch.from_numpy(np.ascontiguousarray(segment)).to(self.device, self.dtype)[None]
        states = self.net.frames(x, self.layers)
        data = {k: v[0, lo:hi].float().cpu().numpy() for k, v in states.items()}
        starts, ends = frame_times(first + lo, hi - lo)
        return [(starts, ends, data)]
