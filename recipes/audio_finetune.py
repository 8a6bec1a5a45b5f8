"""The ``audio_finetune`` recipe: fine-tune PDEM's top encoder blocks plus a sequence head.

The paper's audio models (SUN team, ABAW6, arXiv 2403.12609): PDEM (wav2vec 2.0, 12 blocks) on
4 s windows with a 2 s hop, the top ``k`` encoder blocks unfrozen, and a head on the last
layer's 50 Hz frames whose outputs are pooled to fixed steps:

* ``v1``: 2-layer GRU (256 units), k = 2;
* ``v2``: two Transformer encoder layers on the hidden states, k = 2;
* ``v3``: as v2 with k = 4 (the paper's best audio model on both tracks).

VA: 20 steps per 4 s window (5 Hz), valence and arousal through tanh, CCC loss. EXPR: 4 steps
(1 Hz, label = the majority of the second's valid label frames), weighted cross-entropy
(``max_count / count`` weights) with label smoothing 0.2.

Data: each track's raw video is decoded once to 16 kHz mono (:class:`emofeat.Decoder`) and cached
on disk as a ``.npy`` file (float16 by default, 32 kB per second of audio) that is memory
mapped, so memory stays bounded whatever the corpus size and worker processes share the
pages. Labels of frame ``k`` (1-based) lie at ``(k - 1) / fps`` seconds of the video.

Output: the Trainer's ``best.pt`` / ``last.pt`` / ``history.json`` and ``RUN/best/``, an
emofeat PDEM checkpoint folder (:func:`emofeat_plugins.audio.save_checkpoint`)
holding the fine-tuned encoder, the head as extra head ``<task>`` with the spec
:func:`build_head` rebuilds it from, the labels, the training config and the dev metrics.
"""

from __future__ import annotations

import json
import logging
import math
import time
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import numpy as np
import torch
from torch import Tensor, nn

from emofeat import Decoder, probe
from emofeat.recipes import RecipeError, RecipeRun
from emofeat_plugins.audio import (
    HEAD_CLASS,
    SAMPLING_RATE,
    PdemNetwork,
    SequenceHead,
    build_head,
    load_network,
    save_checkpoint,
)
from emofeat_recipes.datasets.affwild2 import EXPR_LABELS, VA_LABELS, AffWild2, Track
from emofeat_recipes.losses import WeightedCE, ccc_loss, max_count_weights
from emofeat_recipes.metrics import expr_f1, va_score
from emofeat_recipes.train import TrainConfig, Trainer, make_loader, set_seed
from emofeat_recipes.validate import STEP_SECONDS

__all__ = [
    "VARIANTS",
    "AudioFinetuneModel",
    "SequenceHead",
    "TrackAudio",
    "WindowDataset",
    "active_fraction",
    "augment",
    "build_head",
    "build_model",
    "decode_audio",
    "head_spec",
    "load_tracks",
    "predict_steps",
    "run_audio_finetune",
    "score_steps",
    "step_labels",
    "window_starts",
]

log = logging.getLogger(__name__)

#: variant -> (head kind, top encoder blocks unfrozen); the schema's variant choices
#: (:data:`emofeat_recipes.validate.AUDIO_VARIANTS`) list the same names
VARIANTS: dict[str, tuple[str, int]] = {
    "v1": ("gru", 2),
    "v2": ("transformer", 2),
    "v3": (
        "transformer",
        4,
    ),
}


# ----------------------------------------------------------------------------- the network


class AudioFinetuneModel(nn.Module):
    """PDEM with its top ``unfreeze`` encoder blocks trainable, and a :class:`SequenceHead`.

    ``forward(signal (B, samples) at 16 kHz) -> (B, steps, out_dim)``. The head reads the
    encoder's last layer (layer N of :meth:`PdemNetwork.frames`: block N's output after the
    final LayerNorm, whose time-mean is the ``pdem`` extractor's ``hidden_states``).
    Trainable: encoder blocks ``N - unfreeze + 1 .. N``, the encoder's final LayerNorm (it
    belongs to the top block's output) and the head; everything else is frozen and kept in
    eval mode (no dropout) while training, so the frozen part is a fixed feature extractor.
    PDEM's own regression head (``net.classifier``) is frozen and unused.
    """

    def __init__(self, net: PdemNetwork, head: SequenceHead, unfreeze: int) -> None:
        super().__init__()
        if not 0 <= unfreeze <= net.num_layers:
            raise ValueError(
                f"unfreeze={unfreeze}: choose 0..{net.num_layers} (the encoder's blocks)"
            )
        self.net = net
        self.head = head
        self.unfreeze = int(unfreeze)
        self._trainable: list[nn.Module] = [head]
        if unfreeze:
            enc = net.wav2vec2.encoder
            self._trainable += [*enc.layers[net.num_layers - unfreeze :], enc.layer_norm]
        for p in net.parameters():
            p.requires_grad_(False)
        # transformers' feature encoder otherwise marks its input as requiring grad in
        # training mode, which makes autograd record the whole (frozen) CNN front end
        net.wav2vec2.freeze_feature_encoder()
        for m in self._trainable:
            for p in m.parameters():
                p.requires_grad_(True)

    def train(self, mode: bool = True) -> AudioFinetuneModel:
        super().train(mode)
        if mode:
            # frozen modules are feature extractors: no dropout in them. Only the trainable
            # ones go back to training mode; PdemNetwork's own flag (read by frames() for
            # layerdrop) stays as super() set it.
            self.net.wav2vec2.eval()
            for m in self._trainable:
                m.train(True)
        return self

    def states(self, signal: Tensor) -> Tensor:
        """Last-layer frames ``(B, F, H)`` of the (fine-tuned) encoder."""
        n = self.net.num_layers
        return self.net.frames(signal, [n])[n]

    def forward(self, signal: Tensor) -> Tensor:
        # frozen blocks see no tensor that requires grad: autograd records nothing for them
        return self.head(self.states(signal))


# ----------------------------------------------------------------------------- data


def decode_audio(video: Path, cache_dir: Path, dtype: str = "float16") -> np.ndarray:
    """A video's audio at 16 kHz mono, decoded once and memory-mapped from ``cache_dir``.

    The cache file is ``<cache_dir>/<stem>.<dtype>.npy`` (written atomically); later calls
    map it read-only. Returns a 1-D array (``float16`` or ``float32``).
    """
    cache_dir.mkdir(parents=True, exist_ok=True)
    path = cache_dir / f"{video.stem}.{dtype}.npy"
    if not path.is_file():
        info = probe(video)
        if not info.has_audio:
            raise RecipeError(f"{video}: no audio track (the audio recipe needs one)")
        parts = [
            c.samples.astype(dtype)
            for c in Decoder(info, audio_rates=(SAMPLING_RATE,))
            if not hasattr(c, "frames")
        ]
        signal = np.concatenate(parts) if parts else np.zeros(0, dtype)
        tmp = path.with_suffix(".tmp.npy")
        np.save(tmp, signal)
        tmp.replace(path)
    return np.load(path, mmap_mode="r")


def step_labels(
    values: np.ndarray, valid: np.ndarray, fps: float, n_steps: int, step: float, task: str
) -> tuple[np.ndarray, np.ndarray]:
    """Frame labels resampled to steps of ``step`` seconds starting at 0.

    Frame ``k`` (1-based) lies at ``(k - 1) / fps`` s and belongs to the step containing
    that time. VA: a step's value is the mean of its valid frames (``(n_steps, 2)``
    float32); EXPR: the majority class of its valid frames (ties: lowest class index),
    ``(n_steps,)`` int64, -1 where invalid. A step without valid frames is invalid.
    """
    t = np.arange(len(values)) / float(fps)
    idx = np.floor(t / step + 1e-9).astype(np.int64)
    keep = valid & (idx < n_steps)
    idx, vals = idx[keep], values[keep]
    counts = np.bincount(idx, minlength=n_steps)
    ok = counts > 0
    if task == "VA":
        sums = np.zeros((n_steps, 2))
        np.add.at(sums, idx, vals)
        y = (sums / np.maximum(counts, 1)[:, None]).astype(np.float32)
        y[~ok] = 0.0
        return y, ok
    votes = np.zeros((n_steps, len(EXPR_LABELS)), np.int64)
    np.add.at(votes, (idx, vals.astype(np.int64)), 1)
    y = np.where(ok, votes.argmax(axis=1), -1).astype(np.int64)
    return y, ok


@dataclass
class TrackAudio:
    """One track: its (memory-mapped) audio, its step labels and its windows.

    Attributes:
        track: the Aff-Wild2 track.
        audio: 16 kHz mono signal of the track's video (memory-mapped from ``audio_path``;
            pickled as the path, so worker processes map the file instead of copying it).
        y: step labels over the whole track (VA ``(n, 2)``, EXPR ``(n,)``).
        y_valid: ``(n,)`` validity of the step labels (and of the gate, when masking).
        starts: window starts in seconds.
        keep: ``(windows,)`` False for windows the gate dropped.
    """

    track: Track
    audio: np.ndarray
    y: np.ndarray
    y_valid: np.ndarray
    starts: np.ndarray
    keep: np.ndarray
    audio_path: Path | None = None

    def __getstate__(self) -> dict[str, Any]:
        state = dict(self.__dict__)
        if self.audio_path is not None:
            state["audio"] = None
        return state

    def __setstate__(self, state: dict[str, Any]) -> None:
        self.__dict__.update(state)
        if self.audio is None and self.audio_path is not None:
            self.audio = np.load(self.audio_path, mmap_mode="r")


def window_starts(duration: float, win: float, hop: float) -> np.ndarray:
    """Starts (s) of ``[s, s + win)`` windows every ``hop`` s covering ``duration`` seconds;
    the last one may run past the end (its signal is zero-padded), as in the ``pdem``
    extractor."""
    if duration <= 0:
        return np.zeros(0)
    n = max(1, math.ceil((duration - win) / hop - 1e-9) + 1)
    return np.arange(n) * hop


def active_fraction(times: np.ndarray, active: np.ndarray, a: float, b: float) -> float:
    """Fraction of ``[a, b)`` covered by the rows (``times`` ``(n, 2)`` s) that are active."""
    t = times[active]
    cover = np.clip(np.minimum(t[:, 1], b) - np.maximum(t[:, 0], a), 0, None).sum()
    return float(min(1.0, cover / max(b - a, 1e-9)))


def augment(x: np.ndarray, rng: np.random.Generator, cfg: dict[str, Any]) -> np.ndarray:
    """With probability ``cfg["p"]`` apply one of ``cfg["kinds"]``, chosen uniformly.

    ``polarity``: ``-x``; ``noise``: white Gaussian noise at an SNR drawn uniformly from
    ``cfg["snr_db"]`` (dB, relative to the window's power); ``gain``: a gain drawn uniformly
    from ``cfg["gain_db"]`` (dB). PDEM z-normalises every window, so a gain alone changes
    the network input only through clipping and the normalisation's epsilon; it matters
    together with the fixed-level parts of a window (zero padding).
    """
    if not cfg["kinds"] or rng.random() >= float(cfg["p"]):
        return x
    kind = cfg["kinds"][int(rng.integers(len(cfg["kinds"])))]
    if kind == "polarity":
        return -x
    if kind == "gain":
        lo, hi = cfg["gain_db"]
        return x * np.float32(10 ** (rng.uniform(lo, hi) / 20))
    if kind == "noise":
        lo, hi = cfg["snr_db"]
        power = float(np.mean(x.astype(np.float64) ** 2)) or 1e-8
        sigma = math.sqrt(power / 10 ** (rng.uniform(lo, hi) / 10))
        return (x + rng.normal(0.0, sigma, x.shape)).astype(np.float32)
    raise RecipeError(f"augment.kinds: unknown augmentation {kind!r} (polarity, noise, gain)")


class WindowDataset(torch.utils.data.Dataset):
    """Windows of tracks as training items ``{"x", "y", "y_valid"}``.

    ``x``: ``(win * 16000,)`` float32 signal (zero-padded past the track's audio); ``y``,
    ``y_valid``: the window's steps. Only windows the gate kept are listed.
    """

    def __init__(
        self,
        tracks: list[TrackAudio],
        win: float,
        step: float,
        augment_cfg: dict[str, Any] | None = None,
    ) -> None:
        self.tracks = tracks
        self.samples = round(win * SAMPLING_RATE)
        self.steps = round(win / step)
        self.step = step
        self.augment_cfg = augment_cfg
        self.items = [
            (i, float(s))
            for i, ta in enumerate(tracks)
            for s, k in zip(ta.starts, ta.keep, strict=True)
            if k
        ]

    def __len__(self) -> int:
        return len(self.items)

    def signal(self, i: int, start: float) -> np.ndarray:
        audio = self.tracks[i].audio
        a = round(start * SAMPLING_RATE)
        x = np.zeros(self.samples, np.float32)
        part = np.asarray(audio[a : a + self.samples], dtype=np.float32)
        x[: len(part)] = part
        return x

    def labels(self, i: int, start: float) -> tuple[np.ndarray, np.ndarray]:
        # a track's step labels extend to the end of its last window (load_tracks)
        ta = self.tracks[i]
        j = round(start / self.step)
        return ta.y[j : j + self.steps], ta.y_valid[j : j + self.steps]

    def __getitem__(self, n: int) -> dict[str, Any]:
        i, start = self.items[n]
        x = self.signal(i, start)
        if self.augment_cfg is not None:
            # NumPy's global RNG: seeded by set_seed in the main process and per worker by
            # the loader's worker_init_fn, so augmentation is reproducible
            x = augment(x, np.random.default_rng(np.random.randint(2**31)), self.augment_cfg)
        y, ok = self.labels(i, start)
        return {"x": torch.from_numpy(x), "y": torch.from_numpy(y), "y_valid": torch.from_numpy(ok)}


# ----------------------------------------------------------------------------- the run


def _gate_source(cfg: dict[str, Any]) -> tuple[str, str] | None:
    g = cfg["gate"]
    kind = g["kind"]  # none, vad or mouth_open; mode drop or mask (the schema's)
    if kind == "none":
        return None
    # a gate without features is refused when the config is resolved (validate.py)
    defaults = {"vad": ("vad", "speech"), "mouth_open": ("mouth_open", "open")}
    ex, _, stream = (g["stream"] or "").partition(".")
    return (ex or defaults[kind][0], stream or defaults[kind][1])


def _gate_rows(index: Any, track: Track, source: tuple[str, str]) -> tuple[np.ndarray, np.ndarray]:
    """The gate stream's rows for a track, found by identity (emofeat_recipes.datasets.join)."""
    ex, stream = source
    # the mouth is seen on the face (crop folder first), speech is heard in the raw video
    modality = "video" if ex.startswith("mouth") else "audio"
    item = index.lookup(track, ex, stream, modality)
    if item is None:
        where = ", ".join(str(s.path) for s in index.stores)
        raise RecipeError(
            f"gate: no {ex}.{stream} item for track {track.name} in {where}; run "
            f"'emofeat extract --plugin {ex}' on the track's "
            f"{'crop folder or video' if modality == 'video' else 'video'} first"
        )
    sd = item.store.read(item.key, ex, stream)
    active = np.asarray(sd.mask, bool) & (np.asarray(sd.data)[:, 0] >= 0.5)
    return np.asarray(sd.times, np.float64), active


def load_tracks(
    ds: AffWild2,
    tracks: list[Track],
    task: str,
    cfg: dict[str, Any],
    cache_dir: Path,
    store: Any = None,
) -> list[TrackAudio]:
    """Decode (or map) each track's audio, resample its labels to steps, list its windows."""
    win, hop, step = float(cfg["win"]), float(cfg["hop"]), STEP_SECONDS[task]
    source = _gate_source(cfg)
    out = []
    for track in tracks:
        if track.video is None:
            raise RecipeError(
                f"track {track.name}: no raw video found below {ds.root} (the audio recipe "
                "decodes the audio of the track's video)"
            )
        audio = decode_audio(track.video, cache_dir, cfg["audio"]["dtype"])
        labels = ds.labels(track)
        fps = ds.fps(track)
        duration = len(labels.values) / fps
        starts = window_starts(duration, win, hop)
        n_steps = round((starts[-1] + win) / step) if len(starts) else 0
        y, ok = step_labels(labels.values, labels.valid, fps, n_steps, step, task)
        keep = np.ones(len(starts), bool)
        if source is not None:
            times, active = _gate_rows(store, track, source)
            g = cfg["gate"]
            if g["mode"] == "drop":
                keep = np.array(
                    [active_fraction(times, active, s, s + win) >= g["min_active"] for s in starts]
                )
            else:
                on = np.array(
                    [
                        active_fraction(times, active, j * step, (j + 1) * step) >= g["min_active"]
                        for j in range(n_steps)
                    ],
                    bool,
                )
                ok = ok & on
        path = Path(audio.filename) if isinstance(audio, np.memmap) else None
        out.append(TrackAudio(track, audio, y, ok, starts, keep, path))
    return out


@torch.no_grad()
def predict_steps(
    model: AudioFinetuneModel,
    tracks: list[TrackAudio],
    win: float,
    step: float,
    device: str,
    batch_size: int = 16,
) -> dict[str, np.ndarray]:
    """Step predictions over each track (overlapping windows averaged; EXPR: probabilities).

    Returns ``{track: (n_steps, out_dim)}``; steps no kept window covers are NaN.
    """
    model.eval()
    ds = WindowDataset(tracks, win, step)
    param = next(model.head.parameters())
    dims = model.head.out.out_features
    sums = {ta.track.name: np.zeros((len(ta.y_valid), dims)) for ta in tracks}
    counts = {ta.track.name: np.zeros(len(ta.y_valid)) for ta in tracks}
    for a in range(0, len(ds), batch_size):
        items = ds.items[a : a + batch_size]
        x = torch.stack([torch.from_numpy(ds.signal(i, s)) for i, s in items])
        out = model(x.to(device=param.device, dtype=param.dtype)).float()
        if model.head.activation != "tanh":
            out = torch.softmax(out, dim=-1)
        out = out.cpu().numpy()
        for (i, s), o in zip(items, out, strict=True):
            name = tracks[i].track.name
            j = round(s / step)
            n = min(ds.steps, len(counts[name]) - j)
            sums[name][j : j + n] += o[:n]
            counts[name][j : j + n] += 1
    return {
        k: np.where(counts[k][:, None] > 0, sums[k] / np.maximum(counts[k], 1)[:, None], np.nan)
        for k in sums
    }


def score_steps(task: str, preds: dict[str, np.ndarray], tracks: list[TrackAudio]) -> dict:
    """The official metric pooled over every valid, predicted step of ``tracks``
    (VA: CCC of valence and arousal and their mean; EXPR: macro F1 of 8 classes)."""
    p, y = [], []
    for ta in tracks:
        pr = preds.get(ta.track.name)
        if pr is None or pr.shape[1] == 0:
            continue
        ok = ta.y_valid & np.isfinite(pr).all(axis=1)
        p.append(pr[ok])
        y.append(ta.y[ok])
    if not p or not sum(len(v) for v in p):
        return {"score": 0.0, "steps": 0}
    pred, true = np.concatenate(p), np.concatenate(y)
    if task == "VA":
        s = va_score(pred, true)
        return {
            "score": s["mean"],
            "valence": s["valence"],
            "arousal": s["arousal"],
            "steps": len(pred),
        }
    s = expr_f1(pred.argmax(axis=1), true)
    return {"score": s["f1"], "f1": s["f1"], "steps": len(pred)}


def _task(cfg: dict[str, Any]) -> str:
    return str(cfg["task"]).upper()  # va or expr (the schema's)


def _network(cfg: dict[str, Any], log_: logging.Logger) -> tuple[PdemNetwork, dict[str, Any]]:
    source = str(cfg["model"])
    if source == "pdem":
        # the registry's PDEM: its Hugging Face weights, under the same licence opt-in
        from emofeat.models import ModelCache, get_model
        from emofeat_plugins.audio import HUB_ID

        ModelCache(None).require_license(get_model("pdem"))
        source = HUB_ID
    net, info = load_network(source, device="cpu")
    log_.info(
        "model %s: %d blocks, hidden %d (%s)",
        source,
        net.num_layers,
        net.hidden_size,
        info.get("sha256", "")[:12],
    )
    return net, info


def build_model(cfg: dict[str, Any], net: PdemNetwork, task: str) -> AudioFinetuneModel:
    """The variant's head on ``net`` with its top blocks unfrozen (``unfreeze`` overrides k)."""
    kind, k = VARIANTS[str(cfg["variant"])]  # one of VARIANTS (the schema's)
    if cfg.get("unfreeze") is not None:
        k = int(cfg["unfreeze"])
    if not 0 <= k <= net.num_layers:
        raise RecipeError(f"unfreeze={k}: the encoder has {net.num_layers} blocks")
    step = STEP_SECONDS[task]
    steps = round(float(cfg["win"]) / step)
    if abs(steps * step - float(cfg["win"])) > 1e-6:
        raise RecipeError(f"win={cfg['win']} s is not a whole number of {step} s output steps")
    h = cfg["head"]
    head = SequenceHead(
        kind,
        net.hidden_size,
        2 if task == "VA" else len(EXPR_LABELS),
        steps,
        step,
        gru_hidden=int(h["gru_hidden"]),
        gru_layers=int(h["gru_layers"]),
        bidirectional=bool(h["bidirectional"]),
        layers=int(h["layers"]),
        heads=int(h["heads"]),
        ff=int(h["ff"]),
        dropout=float(h["dropout"]),
        activation="tanh" if task == "VA" else "none",
    )
    return AudioFinetuneModel(net, head, k)


def head_spec(model: AudioFinetuneModel, task: str, cfg: dict[str, Any]) -> dict[str, Any]:
    """The JSON spec stored with the head in the checkpoint (what :func:`build_head` needs)."""
    head = model.head
    h = cfg["head"]
    return {
        "class": HEAD_CLASS,
        "kind": head.kind,
        "hidden_size": model.net.hidden_size,
        "out_dim": head.out.out_features,
        "steps": head.steps,
        "step_seconds": head.step_seconds,
        "gru_hidden": int(h["gru_hidden"]),
        "gru_layers": int(h["gru_layers"]),
        "bidirectional": bool(h["bidirectional"]),
        "layers": int(h["layers"]),
        "heads": int(h["heads"]),
        "ff": int(h["ff"]),
        "dropout": float(h["dropout"]),
        "activation": head.activation,
        "input_layer": model.net.num_layers,
        "task": task,
        "labels": list(VA_LABELS if task == "VA" else EXPR_LABELS),
        "win": float(cfg["win"]),
        "hop": float(cfg["hop"]),
        "variant": str(cfg["variant"]),
        "unfrozen_blocks": model.unfreeze,
    }


def run_audio_finetune(ctx: RecipeRun) -> dict[str, Any]:
    """Fine-tune, score on validation windows and write ``RUN/best/`` (see the module doc).

    This package's loggers write to ``run.log`` too (``run_recipe`` attaches them).
    """
    return _run(ctx)


def _run(ctx: RecipeRun) -> dict[str, Any]:
    cfg = ctx.config
    if not cfg.get("data"):
        raise RecipeError("--data is required (or set 'data' in the config)")
    task = _task(cfg)  # win and hop are whole numbers of its output steps (validated)
    seed = int(cfg["seed"])
    set_seed(seed, deterministic=True)
    t0 = time.perf_counter()
    ds = AffWild2(cfg["data"])
    train_t, dev_t = ds.tracks(task, "train"), ds.tracks(task, "validation")
    if not train_t or not dev_t:
        raise RecipeError(
            f"{cfg['data']}: {task} needs train and validation tracks "
            f"(found {len(train_t)} and {len(dev_t)})"
        )
    store = None
    if _gate_source(cfg) is not None:
        from emofeat import open_store
        from emofeat_recipes.datasets.join import FeatureIndex

        store = FeatureIndex([open_store(p) for p in cfg.features])  # a list (the schema's)
    cache_dir = Path(cfg["audio"]["cache_dir"] or ctx.run_dir / "audio_cache").expanduser()
    train = load_tracks(ds, train_t, task, cfg, cache_dir, store)
    dev = load_tracks(ds, dev_t, task, cfg, cache_dir, store)
    step, win = STEP_SECONDS[task], float(cfg["win"])
    aug = dict(cfg["augment"]) if float(cfg["augment"]["p"]) > 0 else None
    train_ds = WindowDataset(train, win, step, aug)
    if not len(train_ds):
        raise RecipeError("no training windows (all dropped by the gate?)")
    ctx.log.info(
        "%s: %d train tracks (%d windows), %d validation tracks; audio cache %s (%.1f s)",
        task,
        len(train),
        len(train_ds),
        len(dev),
        cache_dir,
        time.perf_counter() - t0,
    )

    net, info = _network(cfg, ctx.log)
    model = build_model(cfg, net, task)
    trainable = sum(p.numel() for p in model.parameters() if p.requires_grad)
    ctx.log.info(
        "variant %s: head %s, top %d blocks unfrozen, %d trainable parameters",
        cfg["variant"],
        model.head.kind,
        model.unfreeze,
        trainable,
    )
    tc = TrainConfig.from_dict(
        {**cfg["train"], "device": cfg["device"], "seed": seed, "quiet": ctx.quiet}
    )

    if task == "VA":

        def loss_fn(out: Tensor, batch: dict[str, Tensor]) -> Tensor:
            return ccc_loss(out.float(), batch["y"].float(), batch["y_valid"])
    else:
        lab = np.concatenate([ta.y[ta.y_valid] for ta in train])
        lc = cfg["loss"]
        weight = max_count_weights(lab) if lc["weight"] == "max_count" else None
        if lc["weight"] not in ("max_count", "none", None):
            raise RecipeError(f"loss.weight={lc['weight']!r}: use max_count or none")
        ce = WeightedCE(weight, float(lc["label_smoothing"])).to(tc.device)

        def loss_fn(out: Tensor, batch: dict[str, Tensor]) -> Tensor:
            return ce(out.float(), batch["y"].long(), batch["y_valid"])

    def evaluate(m: nn.Module) -> dict[str, float]:
        preds = predict_steps(m, dev, win, step, tc.device, tc.batch_size)
        return {k: float(v) for k, v in score_steps(task, preds, dev).items()}

    loader = make_loader(train_ds, tc, shuffle=True)
    trainer = Trainer(
        model,
        loss_fn,
        tc,
        ctx.run_dir,
        evaluate,
        forward=lambda m, b: m(b["x"]),
        meta={"recipe": "audio_finetune", "task": task, "variant": str(cfg["variant"])},
    )
    result = trainer.fit(loader, resume=bool(cfg.get("resume")))
    metrics = {
        "task": task,
        "validation": result.get("best_metrics") or {},
        "best_epoch": result.get("best_epoch"),
        "epochs_run": result.get("epochs_run"),
        "stopped_early": result.get("stopped_early"),
        "train_windows": len(train_ds),
        "trainable_parameters": trainable,
    }
    training = {
        "recipe": "audio_finetune",
        "config": json.loads(json.dumps(cfg, default=str)),
        "base_model": {k: info.get(k) for k in ("id", "sha256", "source", "license")},
    }
    out = save_checkpoint(
        model.net,
        ctx.run_dir / "best",
        training=training,
        metrics=metrics,
        extra_heads={
            task.lower(): {"state_dict": model.head.state_dict(), **head_spec(model, task, cfg)}
        },
        license=str(info.get("license") or "unknown"),
    )
    (ctx.run_dir / "metrics.json").write_text(json.dumps(metrics, indent=2, default=float))
    ctx.log.info("checkpoint folder %s (dev score %.4f)", out, result.get("best_score") or 0.0)
    return {"score": result.get("best_score"), "checkpoint": str(out), **metrics["validation"]}
