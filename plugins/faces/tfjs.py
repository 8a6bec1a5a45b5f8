"""Read TensorFlow.js weight manifests (``*-weights_manifest.json`` + ``*.bin`` shards).

The format (TF.js "layers"/weights manifest, as written by ``tfjs-converter`` and used by
face-api.js): the manifest is a JSON list of *groups*; each group names its shard files
(``paths``, relative to the manifest) and its ``weights``, each with ``name``, ``shape``,
``dtype`` and an optional ``quantization``. The bytes of all shards, in manifest order, are
the weights' values concatenated in the same order, little-endian, with no padding.

Quantization (as decoded by ``tf.io.decodeWeights``):

* ``{"dtype": "uint8"|"uint16", "scale": s, "min": m}``: ``value = q * s + m`` (computed in
  double precision, then rounded to the weight's dtype, as JavaScript does);
* ``{"dtype": "float16"}``: IEEE half floats widened to float32.

:func:`load_weights` returns ``name -> numpy array`` (float32 for ``float32`` weights, int32
for ``int32``, bool for ``bool``) with the manifest's shapes (TF layout: conv filters are
``(kh, kw, in, out)``, depthwise filters ``(kh, kw, in, multiplier)``, dense ``(in, out)``).
"""

from __future__ import annotations

import json
import math
from pathlib import Path
from typing import Any

import numpy as np

from emofeat import EmofeatError

__all__ = ["TfjsWeightsError", "load_weights", "read_manifest"]

# Storage dtypes (of the weight itself, or of its quantized form) -> numpy little-endian dtype.
_DTYPES = {
    "float32": np.dtype("<f4"),
    "int32": np.dtype("<i4"),
    "bool": np.dtype("u1"),
    "uint8": np.dtype("u1"),
    "uint16": np.dtype("<u2"),
    "float16": np.dtype("<f2"),
}
_OUT_DTYPES = {"float32": np.float32, "int32": np.int32, "bool": np.bool_}


class TfjsWeightsError(EmofeatError, ValueError):
    """A TF.js weight manifest or one of its shard files is missing, malformed or short."""


def _manifest_path(path: str | Path, model_name: str | None) -> Path:
    p = Path(path)
    if p.is_dir():
        if model_name is not None:
            return p / f"{model_name}-weights_manifest.json"
        found = sorted(p.glob("*-weights_manifest.json")) or sorted(p.glob("*manifest*.json"))
        if len(found) != 1:
            names = ", ".join(f.name for f in found) or "none"
            raise TfjsWeightsError(
                f"{p}: expected exactly one *-weights_manifest.json, found {names}; "
                "pass the manifest file itself"
            )
        return found[0]
    return p


def read_manifest(path: str | Path, model_name: str | None = None) -> list[dict[str, Any]]:
    """Parse and validate a weights manifest; returns its list of groups.

    Args:
        path: the manifest file, or a folder holding it.
        model_name: with a folder, the manifest is ``<model_name>-weights_manifest.json``.
    """
    manifest = _manifest_path(path, model_name)
    try:
        text = manifest.read_text(encoding="utf-8")
    except OSError as exc:
        raise TfjsWeightsError(f"{manifest}: cannot read weights manifest: {exc}") from exc
    try:
        groups = json.loads(text)
    except ValueError as exc:
        raise TfjsWeightsError(f"{manifest}: not valid JSON: {exc}") from exc
    # A model.json (tfjs "layers-model") holds the manifest under "weightsManifest".
    if isinstance(groups, dict) and "weightsManifest" in groups:
        groups = groups["weightsManifest"]
    if not isinstance(groups, list) or not groups:
        raise TfjsWeightsError(f"{manifest}: expected a non-empty JSON list of weight groups")
    for gi, group in enumerate(groups):
        where = f"{manifest}: group {gi}"
        if not isinstance(group, dict):
            raise TfjsWeightsError(f"{where}: expected an object with 'paths' and 'weights'")
        paths, weights = group.get("paths"), group.get("weights")
        if not isinstance(paths, list) or not all(isinstance(x, str) for x in paths):
            raise TfjsWeightsError(f"{where}: 'paths' must be a list of file names")
        if not isinstance(weights, list):
            raise TfjsWeightsError(f"{where}: 'weights' must be a list")
        for wi, w in enumerate(weights):
            _check_entry(w, f"{where}, weight {wi}")
    return groups


def _check_entry(w: Any, where: str) -> None:
    if not isinstance(w, dict) or not isinstance(w.get("name"), str):
        raise TfjsWeightsError(f"{where}: expected an object with a string 'name'")
    where = f"{where} ({w['name']!r})"
    shape = w.get("shape")
    if not isinstance(shape, list) or not all(
        isinstance(d, int) and not isinstance(d, bool) and d >= 0 for d in shape
    ):
        raise TfjsWeightsError(f"{where}: 'shape' must be a list of non-negative integers")
    dtype = w.get("dtype", "float32")
    if dtype not in _OUT_DTYPES:
        raise TfjsWeightsError(
            f"{where}: unsupported dtype {dtype!r} (supported: {', '.join(_OUT_DTYPES)})"
        )
    q = w.get("quantization")
    if q is None:
        return
    if not isinstance(q, dict) or q.get("dtype") not in ("uint8", "uint16", "float16"):
        raise TfjsWeightsError(
            f"{where}: unsupported quantization {q!r} (supported: uint8, uint16, float16)"
        )
    if q["dtype"] == "float16":
        if dtype != "float32":
            raise TfjsWeightsError(f"{where}: float16 quantization of a {dtype} weight")
        return
    for key in ("scale", "min"):
        v = q.get(key)
        if isinstance(v, bool) or not isinstance(v, (int, float)) or not math.isfinite(v):
            raise TfjsWeightsError(f"{where}: quantization needs a finite number {key!r}")


def load_weights(path: str | Path, model_name: str | None = None) -> dict[str, np.ndarray]:
    """Load every weight of a TF.js manifest and its shards.

    Args:
        path: the manifest file, or a folder holding it (and the shards).
        model_name: with a folder, the manifest is ``<model_name>-weights_manifest.json``.

    Returns:
        ``name -> array`` in manifest order, dequantized, with the manifest's shapes.

    Raises:
        TfjsWeightsError: naming the file, when the manifest is malformed, a shard is
            missing, or the shards are shorter or longer than the manifest says.
    """
    manifest = _manifest_path(path, model_name)
    groups = read_manifest(manifest)
    out: dict[str, np.ndarray] = {}
    for gi, group in enumerate(groups):
        files = [manifest.parent / p for p in group["paths"]]
        chunks = []
        for f in files:
            try:
                chunks.append(f.read_bytes())
            except OSError as exc:
                raise TfjsWeightsError(
                    f"{f}: cannot read weights shard named by {manifest}: {exc}"
                ) from exc
        data = b"".join(chunks)
        shard_names = ", ".join(str(f) for f in files) or "(no shard files)"
        offset = 0
        for w in group["weights"]:
            name, shape = w["name"], tuple(w["shape"])
            dtype = w.get("dtype", "float32")
            q = w.get("quantization")
            stored = _DTYPES[q["dtype"]] if q else _DTYPES[dtype]
            count = math.prod(shape)
            nbytes = count * stored.itemsize
            if offset + nbytes > len(data):
                raise TfjsWeightsError(
                    f"{shard_names}: too short for {manifest.name}: weight {name!r} "
                    f"{list(shape)} needs bytes {offset}..{offset + nbytes} but the group's "
                    f"shards hold {len(data)} bytes (truncated or wrong file?)"
                )
            raw = np.frombuffer(data, dtype=stored, count=count, offset=offset)
            offset += nbytes
            if name in out:
                raise TfjsWeightsError(f"{manifest}: weight {name!r} listed twice")
            out[name] = _decode(raw, dtype, q).reshape(shape)
        if offset != len(data):
            raise TfjsWeightsError(
                f"{shard_names}: {len(data)} bytes but {manifest.name} group {gi} describes "
                f"{offset}: the shard does not belong to this manifest"
            )
    return out


def _decode(raw: np.ndarray, dtype: str, q: dict | None) -> np.ndarray:
    if q is None:
        if dtype == "bool":
            return raw != 0
        return raw.astype(_OUT_DTYPES[dtype])  # a writable, native-endian copy
    if q["dtype"] == "float16":
        return raw.astype(np.float32)
    # JavaScript: Float32Array.from(q, v => v * scale + min): double maths, rounded once.
    values = raw.astype(np.float64) * float(q["scale"]) + float(q["min"])
    if dtype == "int32":  # Math.round: halves go up
        return np.floor(values + 0.5).astype(np.int32)
    if dtype == "bool":
        return values != 0
    return values.astype(np.float32)
