"""ONNX Runtime backend of the face nets (``--set NAME.backend=onnx``), and its INT8 mode.

A face net (its torch module, with the weights the extractor loaded) is exported once to
ONNX and kept in emofeat's model cache::

    <cache>/onnx-exports/<extractor>/<key>/model.onnx        the fp32 export
    <cache>/onnx-exports/<extractor>/<key>/model.int8.onnx   its INT8 copy (int8=true only)
    <cache>/onnx-exports/<extractor>/<key>/export.json       what it was made from, checks

``key`` is a digest of the weights (every tensor of the module's state dict), the input
shape, the output names, the torch version and :data:`EXPORT_VERSION`: a changed model,
input size or torch release exports again. Files are written under a temporary name and
renamed, so a run killed during an export leaves no half file. Every export is checked
before it is kept: ONNX Runtime's outputs on a sample batch must equal torch's within
:data:`TOLERANCE` (absolute), else :class:`OnnxExportError`. INT8 copies are made with
``onnxruntime.quantization.quantize_dynamic`` (weights int8 per tensor, activations
quantised at run time) and their agreement with fp32 on the same batch is recorded.
"""

from __future__ import annotations

import hashlib
import json
import logging
import os
import tempfile
import warnings
from collections.abc import Sequence
from pathlib import Path
from typing import Any

import numpy as np
import torch

#: bump when the export itself changes (opset, wrapper): cached exports are then redone
EXPORT_VERSION = 1
OPSET = 17
#: largest absolute difference allowed between ONNX Runtime and torch on the check batch
TOLERANCE = 1e-4
#: operator types quantised by ``int8=true``. Convolutions stay fp32: onnxruntime's dynamic
#: ConvInteger is slower than its fp32 convolutions on the CPUs measured (docs/benchmarks.md)
INT8_OP_TYPES = ("MatMul", "Gemm")


class OnnxExportError(RuntimeError):
    """An export failed its equality check, or could not be written."""


class _Outputs(torch.nn.Module):
    """A net whose ``forward`` returns a dict or tuple, as a module returning a tuple."""

    def __init__(self, net: torch.nn.Module, names: Sequence[str]) -> None:
        super().__init__()
        self.net = net
        self.names = tuple(names)

    def forward(self, x: torch.Tensor) -> tuple[torch.Tensor, ...]:
        out = self.net(x)
        if isinstance(out, dict):
            return tuple(out[n] for n in self.names)
        if isinstance(out, torch.Tensor):
            return (out,)
        return tuple(out)


def named_outputs(out: Any) -> dict[str, torch.Tensor]:
    """A net's outputs by name: its dict as it is, else ``out0``, ``out1``... in order."""
    if isinstance(out, dict):
        return dict(out)
    if isinstance(out, torch.Tensor):
        return {"out0": out}
    return {f"out{i}": t for i, t in enumerate(out)}


def output_names(net: torch.nn.Module, sample: torch.Tensor) -> tuple[str, ...]:
    """Names of the net's outputs (:func:`named_outputs`) on ``sample``."""
    with torch.inference_mode():
        return tuple(named_outputs(net(sample)))


def weights_digest(net: torch.nn.Module) -> str:
    """sha256 over the names, shapes, dtypes and bytes of every tensor of the state dict."""
    h = hashlib.sha256()
    for name, value in net.state_dict().items():
        t = value.detach().cpu().contiguous()
        h.update(f"{name}:{tuple(t.shape)}:{t.dtype};".encode())
        h.update(t.reshape(-1).view(torch.uint8).numpy().tobytes())
    return h.hexdigest()


def session_threads() -> int:
    """ONNX Runtime intra-op threads: torch's setting (``emofeat extract --threads``)."""
    return max(1, torch.get_num_threads())


def providers(device: str) -> list[Any]:
    """onnxruntime execution providers for an emofeat device (``cpu``, ``cuda``, ``cuda:N``)."""
    import onnxruntime

    if device == "cpu":
        return ["CPUExecutionProvider"]
    if device.startswith("cuda"):
        if "CUDAExecutionProvider" not in onnxruntime.get_available_providers():
            raise OnnxExportError(
                f"device {device!r}: this onnxruntime has no CUDA provider "
                f"({', '.join(onnxruntime.get_available_providers())}); install "
                "onnxruntime-gpu or use backend=torch"
            )
        index = int(device.split(":", 1)[1]) if ":" in device else 0
        return [("CUDAExecutionProvider", {"device_id": index}), "CPUExecutionProvider"]
    raise OnnxExportError(f"unknown device {device!r} (cpu, cuda, cuda:N)")


def make_session(path: Path, device: str = "cpu", threads: int | None = None):
    """An ``onnxruntime.InferenceSession`` of ``path`` with ``threads`` intra-op threads
    (default :func:`session_threads`) and one inter-op thread."""
    import onnxruntime

    options = onnxruntime.SessionOptions()
    options.intra_op_num_threads = int(threads or session_threads())
    options.inter_op_num_threads = 1
    return onnxruntime.InferenceSession(
        str(path), sess_options=options, providers=providers(device)
    )


def _run(session, x: np.ndarray, names: Sequence[str]) -> dict[str, np.ndarray]:
    return dict(zip(names, session.run(list(names), {"input": x}), strict=True))


def agreement(ref: dict[str, np.ndarray], other: dict[str, np.ndarray]) -> dict[str, Any]:
    """Per output: max and mean absolute difference, min cosine similarity of the rows."""
    out: dict[str, Any] = {}
    for name, a in ref.items():
        b = other[name]
        a2, b2 = a.reshape(len(a), -1).astype(np.float64), b.reshape(len(b), -1)
        cos = (a2 * b2).sum(1) / np.maximum(
            np.linalg.norm(a2, axis=1) * np.linalg.norm(b2, axis=1), 1e-30
        )
        out[name] = {
            "max_abs": float(np.abs(a2 - b2).max()) if a2.size else 0.0,
            "mean_abs": float(np.abs(a2 - b2).mean()) if a2.size else 0.0,
            "min_cosine": float(cos.min()) if len(cos) else 1.0,
        }
    return out


def _tmp_name(folder: Path, suffix: str) -> Path:
    fd, tmp = tempfile.mkstemp(dir=folder, prefix=".tmp-", suffix=suffix)
    os.close(fd)
    return Path(tmp)


def _write_json(path: Path, data: dict[str, Any]) -> None:
    tmp = _tmp_name(path.parent, ".json")
    tmp.write_text(json.dumps(data, indent=2, sort_keys=True))
    os.replace(tmp, path)


class OnnxNet:
    """A face net exported to ONNX (cached) and run by ONNX Runtime.

    Args:
        net: the torch module, in eval mode on the CPU, float32, with its final weights. Its
            ``forward`` takes one float32 tensor ``(N, 3, S, S)`` and returns a tensor, a
            tuple or a dict of tensors.
        sample: the check batch, float32 ``(N, 3, S, S)``, N >= 2 (the batch axis is free).
        folder: the cache root of the extractor's exports (``<cache>/onnx-exports/<name>``).
        int8: also make (once) and run the INT8 copy.
        device: ``cpu``, ``cuda`` or ``cuda:N`` (ONNX Runtime providers).
        threads: intra-op threads (default: torch's setting).

    Attributes:
        names: output names, in the order of the net's outputs.
        path: the ``.onnx`` file run (fp32 or INT8).
        record: ``export.json``: digests, versions, the fp32 check and the INT8 agreement.

    Raises:
        OnnxExportError: ONNX Runtime disagrees with torch by more than :data:`TOLERANCE`,
            or the cache folder cannot be written.
    """

    def __init__(
        self,
        net: torch.nn.Module,
        sample: torch.Tensor,
        folder: Path,
        int8: bool = False,
        device: str = "cpu",
        threads: int | None = None,
    ) -> None:
        import onnxruntime

        self.names = output_names(net, sample)
        key_data = {
            "weights": weights_digest(net),
            "class": f"{type(net).__module__}.{type(net).__qualname__}",
            "input": list(sample.shape[1:]),
            "outputs": list(self.names),
            "torch": torch.__version__,
            "opset": OPSET,
            "export_version": EXPORT_VERSION,
        }
        key = hashlib.sha256(json.dumps(key_data, sort_keys=True).encode()).hexdigest()[:20]
        self.folder = Path(folder) / key
        fp32, meta = self.folder / "model.onnx", self.folder / "export.json"
        try:
            self.folder.mkdir(parents=True, exist_ok=True)
            record = self._read(meta)
            if not (fp32.is_file() and record.get("key") == key_data):
                record = self._export(net, sample, fp32, key_data)
                _write_json(meta, record)
            if int8:
                q = self.folder / "model.int8.onnx"
                rec8 = record.get("int8") or {}
                if not (
                    q.is_file()
                    and rec8.get("op_types") == list(INT8_OP_TYPES)
                    and rec8.get("onnxruntime") == onnxruntime.__version__
                ):
                    record["int8"] = self._quantize(fp32, q, sample)
                    _write_json(meta, record)
        except OSError as exc:
            raise OnnxExportError(f"cannot write the ONNX export in {self.folder}: {exc}") from exc
        self.record = record
        self.path = self.folder / ("model.int8.onnx" if int8 else "model.onnx")
        self.session = make_session(self.path, device, threads)

    @staticmethod
    def _read(path: Path) -> dict[str, Any]:
        try:
            return json.loads(path.read_text())
        except (OSError, ValueError):
            return {}

    def _export(
        self, net: torch.nn.Module, sample: torch.Tensor, dst: Path, key_data: dict[str, Any]
    ) -> dict[str, Any]:
        import onnxruntime

        wrapped = _Outputs(net, self.names).eval()
        tmp = _tmp_name(dst.parent, ".onnx")
        try:
            with torch.inference_mode(False), torch.no_grad(), warnings.catch_warnings():
                # tracing warns about Python values taken as constants (the fixed input
                # size's padding): the equality check below is what guards the export
                warnings.simplefilter("ignore")
                torch.onnx.export(
                    wrapped,
                    (sample,),
                    str(tmp),
                    input_names=["input"],
                    output_names=list(self.names),
                    dynamic_axes={"input": {0: "batch"}, **{n: {0: "batch"} for n in self.names}},
                    opset_version=OPSET,
                    dynamo=False,
                )
                ref = {n: t.numpy() for n, t in zip(self.names, wrapped(sample), strict=True)}
            got = _run(make_session(tmp, "cpu", 1), sample.numpy(), self.names)
            check = agreement(ref, got)
            worst = max(v["max_abs"] for v in check.values())
            if not worst <= TOLERANCE:
                raise OnnxExportError(
                    f"the ONNX export of {type(net).__name__} differs from torch by {worst:.3g} "
                    f"(> {TOLERANCE:g}) on the check batch ({check}); not used: run with "
                    "backend=torch"
                )
            os.replace(tmp, dst)
        finally:
            tmp.unlink(missing_ok=True)
        return {
            "key": key_data,
            "onnxruntime": onnxruntime.__version__,
            "check_batch": list(sample.shape),
            "check_vs_torch": check,
            "tolerance": TOLERANCE,
        }

    def _quantize(self, fp32: Path, dst: Path, sample: torch.Tensor) -> dict[str, Any]:
        import onnxruntime
        from onnxruntime.quantization import QuantType, quantize_dynamic

        tmp = _tmp_name(dst.parent, ".onnx")
        root = logging.getLogger()
        level = root.level
        root.setLevel(logging.ERROR)  # onnxruntime logs pre-processing advice to the root
        try:
            quantize_dynamic(
                str(fp32),
                str(tmp),
                weight_type=QuantType.QInt8,
                op_types_to_quantize=list(INT8_OP_TYPES),
            )
            x = sample.numpy()
            ref = _run(make_session(fp32, "cpu", 1), x, self.names)
            got = _run(make_session(tmp, "cpu", 1), x, self.names)
            os.replace(tmp, dst)
        finally:
            root.setLevel(level)
            tmp.unlink(missing_ok=True)
        return {
            "onnxruntime": onnxruntime.__version__,
            "op_types": list(INT8_OP_TYPES),
            "method": "onnxruntime quantize_dynamic, QInt8 weights",
            "agreement_vs_fp32": agreement(ref, got),
        }

    @property
    def digest(self) -> str:
        """sha256 of the ``.onnx`` file run."""
        from emofeat.models import sha256_file

        return sha256_file(self.path)

    def __call__(self, x: np.ndarray) -> dict[str, np.ndarray]:
        """Outputs (float32 numpy arrays, by name) for a float32 ``(N, 3, S, S)`` batch."""
        return _run(self.session, np.ascontiguousarray(x, np.float32), self.names)
