"""``pdem``: audEERING's dimensional speech emotion model (wav2vec 2.0, 12 layers).

Two backends (``--set pdem.backend=...``):

* ``onnx`` (default): the public ONNX export through audonnx and one onnxruntime session per
  extractor. Window level only: per window the pooled last-layer states (``hidden_states``,
  1024 values for PDEM) and ``logits`` labelled ``arousal, dominance, valence``.
* ``torch``: the same network in PyTorch (:mod:`.pdem_torch`): pooled windows like ONNX, or
  per-frame (20 ms) hidden states of any layers (``level=frames``).

Windows are start-aligned ``[k * hop, k * hop + win)`` seconds, like audinterface's; unlike
audinterface, a final partial window is kept, zero-padded to ``win`` and flagged invalid.
The core aligns window and frame rows to the video frames (docs/audio.md).

For benchmarks and scripts, :class:`OnnxPdem` runs the ONNX backend on arrays without the
engine, and :func:`window_outputs` cuts a whole signal into the same windows as the extractor.
"""

from __future__ import annotations

import hashlib
import json
import logging
import os
import tempfile
from collections.abc import Iterable, Iterator, Sequence
from pathlib import Path
from typing import Any

import numpy as np

import emofeat
from emofeat import Extractor, ModelInfo, Rows, Setting, SlidingWindows, StreamSpec
from emofeat.models import (
    ModelCache,
    ModelError,
    find_user_model,
    get_model,
    sha256_file,
)

from .models import PDEM_HIDDEN, PDEM_LABELS, PDEM_LICENSE, yaml_model_path

SAMPLING_RATE = 16000
HOP_SAMPLES = 320  # stride of the wav2vec 2.0 CNN front end: one frame per 20 ms
OUTPUTS = ("hidden_states", "logits")
HUB_ID = "audeering/wav2vec2-large-robust-12-ft-emotion-msp-dim"
INT8_SUFFIX = ".int8"


def onnx_providers(device: str) -> list[Any]:
    """onnxruntime execution providers for an emofeat device (``cpu``, ``cuda``, ``cuda:N``).

    Raises :class:`emofeat.ConfigError` when CUDA is asked for but this onnxruntime has no
    CUDA provider (the ``onnxruntime-gpu`` package provides it).
    """
    import onnxruntime

    if device == "cpu":
        return ["CPUExecutionProvider"]
    if device.startswith("cuda"):
        if "CUDAExecutionProvider" not in onnxruntime.get_available_providers():
            raise emofeat.ConfigError(
                f"device {device!r}: this onnxruntime has no CUDA provider "
                f"({', '.join(onnxruntime.get_available_providers())}); install onnxruntime-gpu "
                "or use --set pdem.backend=torch"
            )
        index = int(device.split(":", 1)[1]) if ":" in device else 0
        return [("CUDAExecutionProvider", {"device_id": index}), "CPUExecutionProvider"]
    raise emofeat.ConfigError(f"pdem: unknown device {device!r} (cpu, cuda, cuda:N)")


def _yaml_body(yaml_path: Path) -> dict[str, Any]:
    import yaml

    data = yaml.safe_load(yaml_path.read_text())
    return next(iter(data.values()))


#: operator types quantised by ``pdem.int8``; quantised convolutions (the CNN front end) run
#: slower in onnxruntime than fp32 ones and cost fidelity (measured: docs/benchmarks.md)
INT8_OP_TYPES = ["MatMul", "Gemm"]


def quantize_int8(folder: Path, model_file: str = "model.yaml", source_sha256: str = "") -> str:
    """An INT8 copy of an audonnx model (onnxruntime dynamic quantisation), made once.

    The quantised model is written beside the fp32 one (``model.int8.onnx`` and
    ``model.int8.yaml``, plus ``model.int8.json`` naming the fp32 digest it was made from
    and the onnxruntime version) and reused while that digest and :data:`INT8_OP_TYPES` match.

    Args:
        folder: the audonnx model folder (writable).
        model_file: the fp32 model's YAML file in ``folder``.
        source_sha256: digest of the fp32 ``.onnx`` (computed when empty).

    Returns:
        the YAML file name of the INT8 model, for ``audonnx.load(folder, model_file=...)``.
    """
    import onnxruntime
    import yaml
    from onnxruntime.quantization import QuantType, quantize_dynamic

    yaml_path = folder / model_file
    body = _yaml_body(yaml_path)
    fp32 = folder / body["path"]
    stem = Path(model_file).stem + INT8_SUFFIX
    out_onnx, out_yaml, out_json = (folder / f"{stem}{ext}" for ext in (".onnx", ".yaml", ".json"))
    source_sha256 = source_sha256 or sha256_file(fp32)
    try:
        record = json.loads(out_json.read_text())
    except (OSError, ValueError):
        record = {}
    if (
        record.get("source_sha256") == source_sha256
        and record.get("op_types") == INT8_OP_TYPES
        and out_onnx.is_file()
        and out_yaml.is_file()
        and sha256_file(out_onnx) == record.get("sha256")
    ):
        return out_yaml.name
    # quantise to a temporary name, then rename: an interrupted run leaves no half model
    fd, tmp = tempfile.mkstemp(dir=folder, prefix=".int8-", suffix=".onnx")
    os.close(fd)
    root = logging.getLogger()
    level = root.level
    root.setLevel(logging.ERROR)  # onnxruntime logs advice about pre-processing to the root
    try:
        quantize_dynamic(
            str(fp32), tmp, weight_type=QuantType.QInt8, op_types_to_quantize=INT8_OP_TYPES
        )
        os.replace(tmp, out_onnx)
    finally:
        root.setLevel(level)
        Path(tmp).unlink(missing_ok=True)
    (key,) = yaml.safe_load(yaml_path.read_text()).keys()
    int8_body = dict(body, path=out_onnx.name)
    out_yaml.write_text(yaml.safe_dump({key: int8_body}, sort_keys=False))
    out_json.write_text(
        json.dumps(
            {
                "source": fp32.name,
                "source_sha256": source_sha256,
                "op_types": INT8_OP_TYPES,
                "sha256": sha256_file(out_onnx),
                "onnxruntime": onnxruntime.__version__,
                "method": "onnxruntime quantize_dynamic, QInt8 weights, MatMul/Gemm only",
            },
            indent=2,
        )
    )
    return out_yaml.name


class OnnxPdem:
    """A PDEM-shaped audonnx model with one onnxruntime session.

    Args:
        folder: folder with ``model.yaml`` (and the ``.onnx`` it names).
        device: ``cpu``, ``cuda`` or ``cuda:N``.
        threads: onnxruntime intra-op threads (0: onnxruntime's default).
        model_file: the YAML file in ``folder`` to load.

    Attributes:
        model: the :class:`audonnx.Model`.
        labels: output name -> dimension labels (``logits``: arousal, dominance, valence).
        max_batch: windows per call the model accepts (1 when its batch axis is fixed).
    """

    def __init__(
        self, folder: str | Path, device: str = "cpu", threads: int = 0, model_file="model.yaml"
    ) -> None:
        import audonnx
        import onnxruntime

        self.folder = Path(folder)
        options = onnxruntime.SessionOptions()
        if threads:
            options.intra_op_num_threads = int(threads)
            options.inter_op_num_threads = 1
        self.model = audonnx.load(
            str(self.folder),
            model_file=model_file,
            device=onnx_providers(device),
            session_options=options,
        )
        missing = [o for o in OUTPUTS if o not in self.model.outputs]
        if "signal" not in self.model.inputs or missing:
            raise emofeat.ConfigError(
                f"{self.folder / model_file}: not PDEM-shaped (inputs {list(self.model.inputs)}, "
                f"outputs {list(self.model.outputs)}; expected input 'signal' and outputs "
                "'hidden_states', 'logits')"
            )
        node = self.model.inputs["signal"]
        self._direct = node.transform is None and len(self.model.inputs) == 1
        self.max_batch = 0 if node.shape and node.shape[0] == -1 else 1  # 0: unlimited
        self.labels = {name: tuple(self.model.outputs[name].labels) for name in OUTPUTS}
        if len(self.labels["logits"]) == len(PDEM_LABELS) and all(
            lab.startswith("logits-") for lab in self.labels["logits"]
        ):
            self.labels["logits"] = PDEM_LABELS  # unlabelled PDEM export: PDEM's order

    def run(self, windows: np.ndarray, outputs: Sequence[str] = OUTPUTS) -> dict[str, np.ndarray]:
        """Outputs for windows of equal length, shape ``(n, samples)`` at 16 kHz.

        Returns ``{output: (n, dims)}``. Windows go to the session ``max_batch`` at a time
        (one by one for models with a fixed batch of 1, such as the public PDEM export).
        """
        windows = np.ascontiguousarray(np.atleast_2d(windows), dtype=np.float32)
        step = self.max_batch or len(windows)
        parts: dict[str, list[np.ndarray]] = {o: [] for o in outputs}
        for a in range(0, len(windows), max(1, step)):
            x = windows[a : a + step]
            if self._direct:  # the session itself: what audonnx.Model.__call__ runs
                values = self.model.sess.run(list(outputs), {"signal": x})
            else:
                res = self.model(x, SAMPLING_RATE, outputs=list(outputs))
                values = [res[o] for o in outputs]
            for o, v in zip(outputs, values, strict=True):
                parts[o].append(np.asarray(v, np.float32).reshape(len(x), -1))
        return {o: np.concatenate(v) for o, v in parts.items()}


def window_outputs(
    run: Any, signal: np.ndarray, win: float = 4.0, hop: float = 2.0, batch: int = 1
) -> tuple[np.ndarray, np.ndarray, np.ndarray, dict[str, np.ndarray]]:
    """Cut a 16 kHz signal into the extractor's windows and run ``run(windows) -> {name: rows}``.

    Returns ``(starts, ends, valid, outputs)`` with times in seconds; the final partial
    window is zero-padded and has ``valid=False``.
    """
    sw = SlidingWindows(win, hop, SAMPLING_RATE)
    items = list(sw.push(np.asarray(signal, np.float32))) + list(sw.flush())
    starts = np.array([s / SAMPLING_RATE for s, _, _ in items])
    valid = np.array([not p for _, _, p in items], bool)
    ends = starts + sw.win / SAMPLING_RATE
    outs: dict[str, list[np.ndarray]] = {}
    for a in range(0, len(items), batch):
        res = run(np.stack([w for _, w, _ in items[a : a + batch]]))
        for k, v in res.items():
            outs.setdefault(k, []).append(v)
    return starts, ends, valid, {k: np.concatenate(v) for k, v in outs.items()}


def _digest_of(paths: Iterable[Path]) -> str:
    h = hashlib.sha256()
    for p in paths:
        h.update(f"{p.name}\0{sha256_file(p)}\n".encode())
    return h.hexdigest()


class Pdem(Extractor):
    """audEERING's PDEM: pooled wav2vec 2.0 states and arousal/dominance/valence per window."""

    name = "pdem"
    version = "1"
    modality = "audio"
    sampling_rate = SAMPLING_RATE
    license = PDEM_LICENSE
    commercial_use = False
    description = (
        "audEERING PDEM (wav2vec 2.0): hidden states + arousal/dominance/valence per window "
        "(ONNX or torch), or per-frame layer states (torch)"
    )
    settings = {
        "backend": Setting("onnx", "onnx (audonnx/onnxruntime) or torch", ("onnx", "torch")),
        "model": Setting(
            "pdem",
            "'pdem' (the registry model; torch: its Hugging Face weights) or a path: "
            "onnx: a folder with model.yaml; torch: a Hugging Face folder, hub id or "
            "emofeat checkpoint folder; or the name of a model imported with "
            "'emofeat models import'",
        ),
        "cache_dir": Setting("", "model cache (default: emofeat's cache)"),
        "win": Setting(4.0, "window length in seconds"),
        "hop": Setting(2.0, "hop between window starts in seconds"),
        "outputs": Setting(list(OUTPUTS), "window streams to write", OUTPUTS),
        "level": Setting(
            "windows", "windows (pooled), or frames (20 ms, torch only)", ("windows", "frames")
        ),
        "layers": Setting([12], "level=frames: transformer layers to write (0: CNN features)"),
        "chunk": Setting(30.0, "level=frames: seconds of audio per network pass"),
        "context": Setting(2.0, "level=frames: seconds of context on each side of a chunk"),
        "threads": Setting(0, "onnx: onnxruntime intra-op threads (0: onnxruntime's default)"),
        "int8": Setting(
            False, "onnx: dynamic INT8 quantisation (made once, cached beside the model)"
        ),
        "batch": Setting(
            1,
            "windows per network call (onnx: only models with a free batch axis; the "
            "public PDEM export takes one window at a time)",
        ),
        "half": Setting(False, "torch on a GPU: float16 weights and inputs"),
        "heads": Setting(
            True,
            "torch, level=windows: also write a fine-tuned checkpoint's heads (stream "
            "head_<name>, one row per output step; needs the head's training window)",
        ),
    }

    @classmethod
    def check_config(cls, config: dict[str, Any]) -> None:
        def fail(msg: str) -> None:
            raise emofeat.ConfigError(f"pdem: {msg}")

        if config["win"] <= 0 or config["hop"] <= 0:
            fail(f"win ({config['win']}) and hop ({config['hop']}) must be positive seconds")
        if not config["outputs"]:
            fail("outputs is empty (hidden_states, logits)")
        if config["level"] == "frames" and config["backend"] != "torch":
            fail("level=frames needs the torch backend (--set pdem.backend=torch)")
        if config["int8"] and config["backend"] != "onnx":
            fail("int8 applies to the onnx backend only")
        if config["half"] and config["backend"] != "torch":
            fail("half applies to the torch backend only")
        try:
            config["layers"] = [int(v) for v in config["layers"]]
        except (TypeError, ValueError):
            fail(f"layers must be integers, got {config['layers']!r}")
        if not config["layers"] or min(config["layers"]) < 0:
            fail(f"layers must be non-negative layer numbers, got {config['layers']}")
        if config["chunk"] <= 0 or config["context"] < 0:
            fail("chunk must be positive and context non-negative (seconds)")
        if config["batch"] < 1 or config["threads"] < 0:
            fail("batch must be >= 1 and threads >= 0")

    def __init__(self, config: dict[str, Any] | None = None, device: str = "cpu") -> None:
        super().__init__(config, device)
        self._onnx: OnnxPdem | None = None
        self._net: Any = None
        self._info: ModelInfo | None = None
        self._labels: dict[str, tuple[str, ...]] = {}
        self._heads: dict[str, tuple[Any, dict[str, Any]]] = {}
        self._user_model: Any = None

    # -- model -----------------------------------------------------------------------------
    def _cache(self) -> ModelCache:
        return ModelCache(self.config["cache_dir"] or None)

    def _registry(self) -> bool:
        return self.config["model"] == "pdem"

    def _registered_path(self) -> Path | None:
        """The cached folder of a model imported under a name (``emofeat models import``);
        its registry entry goes to ``_user_model``."""
        try:
            found = find_user_model(self.config["model"], self.config["cache_dir"] or None)
        except ModelError as exc:
            raise emofeat.ConfigError(f"pdem: {exc}") from None
        if found is None:
            return None
        self._user_model, path = found
        return path

    def _load(self) -> None:
        if self._onnx is not None or self._net is not None:
            return
        if self.config["backend"] == "onnx":
            self._load_onnx()
        else:
            self._load_torch()

    def _load_onnx(self) -> None:
        if self._registry():
            cache = self._cache()
            model = get_model("pdem")
            folder = cache.path(model)  # licence opt-in and offline errors surface here
            digest = cache.model_sha256(model)
            onnx_digest = cache.recorded(model).get("model.onnx", "")
            ident, lic = model.id, model.license
        else:
            folder = self._registered_path() or Path(self.config["model"]).expanduser()
            if not (folder / "model.yaml").is_file():
                raise emofeat.ConfigError(
                    f"pdem.model={self.config['model']}: no model.yaml there (an audonnx model "
                    "folder, e.g. the unpacked PDEM zip, or 'pdem' for the registry model)"
                )
            try:
                onnx_file = folder / yaml_model_path(folder / "model.yaml")
            except ModelError as exc:
                raise emofeat.ConfigError(f"{folder / 'model.yaml'}: {exc}") from None
            digest = _digest_of([folder / "model.yaml", onnx_file])
            onnx_digest = ""
            ident = f"audonnx:{folder.resolve()}"
            lic = "user-supplied model (licence as given by its provider)"
            if self._user_model is not None:
                ident, lic = self._user_model.id, self._user_model.license
        model_file = "model.yaml"
        if self.config["int8"]:
            try:
                model_file = quantize_int8(folder, "model.yaml", onnx_digest)
            except OSError as exc:
                raise emofeat.ConfigError(
                    f"pdem.int8: cannot write the quantised model beside {folder / 'model.yaml'} "
                    f"({exc}); copy the model folder somewhere writable and pass it as "
                    "--set pdem.model=FOLDER"
                ) from None
            record = json.loads((folder / model_file).with_suffix(".json").read_text())
            ident, digest = f"{ident}+int8-dynamic", record["sha256"]
        self._onnx = OnnxPdem(folder, self.device, self.config["threads"], model_file)
        self._labels = self._onnx.labels
        self._info = ModelInfo(ident, digest, lic, str(folder / model_file))
        self._batch = self.config["batch"]
        if self._onnx.max_batch == 1:
            self._batch = 1  # a fixed batch axis of 1: windows go one at a time

    def _load_torch(self) -> None:
        from .pdem_torch import load_network

        source = self.config["model"]
        if self._registry():
            # the Hugging Face weights carry the same CC BY-NC-SA licence: same opt-in
            self._cache().require_license(get_model("pdem"))
            source = HUB_ID
        else:
            source = str(self._registered_path() or source)
        device = self.device
        if device.startswith("cuda"):
            import torch

            if not torch.cuda.is_available():
                raise emofeat.ConfigError(f"device {device!r} requested but CUDA is not available")
        net, info = load_network(source, device=device)
        if self.config["half"]:
            net = net.half()
        self._net = net.eval()
        hidden = int(net.hidden_size)
        self._labels = {
            "hidden_states": tuple(f"hidden_states-{i}" for i in range(hidden)),
            "logits": tuple(net.labels),
        }
        for layer in self.config["layers"]:
            self._labels[f"layer{layer}"] = tuple(f"layer{layer}-{i}" for i in range(hidden))
        if self.config["heads"] and self.config["level"] == "windows":
            self._load_heads(info.get("extra_heads") or {}, net)
        self._info = ModelInfo(
            str(info.get("id", source)),
            str(info.get("sha256", "")),
            str(info.get("license", PDEM_LICENSE if self._registry() else "")),
            str(info.get("source", source)),
        )
        if self._user_model is not None:  # imported under a name: the registry's identity
            m = self._user_model
            self._info = ModelInfo(m.id, m.sha256, m.license, source)
        self._batch = self.config["batch"]

    def _load_heads(self, extra: dict[str, Any], net: Any) -> None:
        """Rebuild the checkpoint's fine-tuned heads (audio_finetune's SequenceHead)."""
        from .pdem_torch import build_head

        param = next(net.parameters())
        for name, entry in extra.items():
            spec = entry["spec"]
            try:
                head = build_head(spec, entry["state_dict"])
            except (KeyError, ValueError, RuntimeError) as exc:
                raise emofeat.ConfigError(
                    f"pdem.model={self.config['model']}: head {name!r} cannot be rebuilt "
                    f"({exc}); --set pdem.heads=false writes the other outputs"
                ) from None
            win = float(spec.get("win", self.config["win"]))
            if abs(win - self.config["win"]) > 1e-9:
                raise emofeat.ConfigError(
                    f"pdem: head {name!r} of {self.config['model']} was trained on {win:g} s "
                    f"windows, pdem.win is {self.config['win']:g} s: --set pdem.win={win:g} "
                    "(or --set pdem.heads=false)"
                )
            labels = spec.get("labels") or [f"{name}-{i}" for i in range(head.out.out_features)]
            self._heads[name] = (head.to(device=param.device, dtype=param.dtype), spec)
            self._labels[f"head_{name}"] = tuple(str(v) for v in labels)

    def model(self) -> ModelInfo:
        if self._info is not None:
            return self._info
        if self._registry() and self.config["backend"] == "onnx":
            m = get_model("pdem")
            cache = self._cache()
            return ModelInfo(m.id, cache.model_sha256(m), m.license, str(cache.folder(m)))
        return ModelInfo(license=self.license, source=str(self.config["model"]))

    # -- description -----------------------------------------------------------------------
    def streams(self) -> list[StreamSpec]:
        if self.config["level"] == "frames":
            return [
                StreamSpec(f"layer{n}", self._labels.get(f"layer{n}", ()), "frame", "50 Hz")
                for n in self.config["layers"]
            ]
        rate = f"win {self.config['win']:g} s, hop {self.config['hop']:g} s"
        defaults: dict[str, tuple[str, ...]] = {"logits": PDEM_LABELS}
        if self._registry():  # PDEM's width is known before its weights are loaded
            defaults["hidden_states"] = tuple(f"hidden_states-{i}" for i in range(PDEM_HIDDEN))
        specs = [
            StreamSpec(o, self._labels.get(o, defaults.get(o, ())), "window", rate)
            for o in OUTPUTS
            if o in self.config["outputs"]
        ]
        for name, (_, spec) in self._heads.items():
            step = f"{float(spec['step_seconds']):g} s steps of each window"
            specs.append(StreamSpec(f"head_{name}", self._labels[f"head_{name}"], "window", step))
        return specs

    # -- processing ------------------------------------------------------------------------
    def prepare(self) -> None:
        """Load the model once, before any input: a licence not accepted or a model not
        available stops the run once instead of failing every input."""
        self._load()

    def begin(self, info: Any) -> None:
        self._load()
        self._queue: list[tuple[int, np.ndarray, bool]] = []
        if self.config["level"] == "frames":
            from .pdem_torch import FrameStitcher

            self._stitcher = FrameStitcher(
                self._net,
                self.config["layers"],
                chunk=self.config["chunk"],
                context=self.config["context"],
                sampling_rate=SAMPLING_RATE,
                device=self.device,
                dtype=next(self._net.parameters()).dtype,
            )
            self._windows = None
        else:
            self._stitcher = None
            self._windows = SlidingWindows(self.config["win"], self.config["hop"], SAMPLING_RATE)

    def _run_windows(self, windows: np.ndarray) -> dict[str, np.ndarray]:
        outputs = [o for o in OUTPUTS if o in self.config["outputs"]]
        if self._onnx is not None:
            return self._onnx.run(windows, outputs)
        import torch

        param = next(self._net.parameters())
        x = torch.from_numpy(windows).to(device=param.device, dtype=param.dtype)
        with torch.inference_mode():
            if not self._heads:
                hidden, logits = self._net(x)
                res = {"hidden_states": hidden, "logits": logits}
                return {o: res[o].float().cpu().numpy() for o in outputs}
            # one pass gives the last layer's frames: pooled and PDEM logits as forward()
            # computes them, and every fine-tuned head's steps (B, steps, out)
            n = self._net.num_layers
            states = self._net.frames(x, [n])[n]
            hidden = states.mean(dim=1)
            res = {"hidden_states": hidden, "logits": self._net.classifier(hidden)}
            out = {o: res[o].float().cpu().numpy() for o in outputs}
            for name, (head, _) in self._heads.items():
                out[f"head_{name}"] = head(states).float().cpu().numpy()
            return out

    def _drain(self, final: bool) -> Iterator[Rows]:
        # run complete batches; at the end of the input also the last, smaller one
        while self._queue and (len(self._queue) >= self._batch or final):
            batch, self._queue = self._queue[: self._batch], self._queue[self._batch :]
            res = self._run_windows(np.stack([w for _, w, _ in batch]))
            starts = np.array([s / SAMPLING_RATE for s, _, _ in batch])
            ends = starts + len(batch[0][1]) / SAMPLING_RATE
            valid = np.array([not p for _, _, p in batch])
            for name, values in res.items():
                if values.ndim == 3:  # a fine-tuned head: one row per output step
                    yield self._head_rows(name, values, batch)
                    continue
                yield Rows(name, values, starts, ends, valid=valid, labels=self._labels[name])

    def _head_rows(self, name: str, values: np.ndarray, batch: list) -> Rows:
        """Rows of a head's steps: step j of a window starting at s covers
        ``[s + j * step, s + (j + 1) * step)`` seconds. Steps of overlapping windows each get
        their own row (the store's alignment picks per frame). In the zero-padded final
        window, steps that start after the signal's end are invalid."""
        step = float(self._heads[name.removeprefix("head_")][1]["step_seconds"])
        n, steps, _ = values.shape
        offs = np.arange(steps) * step
        starts = np.array([s / SAMPLING_RATE for s, _, _ in batch])
        row_starts = (starts[:, None] + offs[None, :]).reshape(-1)
        valid = np.ones((n, steps), bool)
        for i, (start, _, padded) in enumerate(batch):
            if padded:  # the signal ends inside this window
                valid[i] = offs < (self._windows.total - start) / SAMPLING_RATE
        return Rows(
            name,
            values.reshape(n * steps, -1),
            row_starts,
            row_starts + step,
            valid=valid.reshape(-1),
            labels=self._labels[name],
        )

    def _frame_rows(self, blocks: Iterable[tuple[Any, Any, dict[int, np.ndarray]]]):
        for starts, ends, layers in blocks:
            for n, values in layers.items():
                if len(values):
                    name = f"layer{n}"
                    yield Rows(name, values, starts, ends, labels=self._labels[name])

    def process(self, chunk: Any) -> Iterator[Rows]:
        if self._stitcher is not None:
            yield from self._frame_rows(self._stitcher.push(chunk.samples))
            return
        # windows run as soon as they are complete: the engine decodes the next chunk in its
        # prefetch thread meanwhile (onnxruntime and torch release the GIL while computing)
        self._queue.extend((s, w.copy(), p) for s, w, p in self._windows.push(chunk.samples))
        yield from self._drain(final=False)

    def end(self) -> Iterator[Rows]:
        if self._stitcher is not None:
            yield from self._frame_rows(self._stitcher.flush())
            return
        self._queue.extend(self._windows.flush())
        yield from self._drain(final=True)
