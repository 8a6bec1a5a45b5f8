"""File digests (sha256 and archive checksums) and atomic writes for the model cache."""

from __future__ import annotations

import hashlib
import os
import tempfile
from pathlib import Path

from emofeat.models.errors import ModelError


def combined_digest(digests: dict[str, str]) -> str:
    """One sha256 over ``{file name: digest}``, in order (a model's or an import's id)."""
    h = hashlib.sha256()
    for name, digest in digests.items():
        h.update(f"{name}\0{digest}\n".encode())
    return h.hexdigest()


def sha256_file(path: Path, algorithm: str = "sha256") -> str:
    """Hex digest (sha256 by default, or any :mod:`hashlib` algorithm) of a file's content."""
    h = hashlib.new(algorithm)
    with open(path, "rb") as f:
        for block in iter(lambda: f.read(1 << 20), b""):
            h.update(block)
    return h.hexdigest()


def verify_checksum(path: Path, checksum: str) -> None:
    """Raise :class:`ModelError` unless ``path`` matches ``"algorithm:hex"`` (no-op if empty)."""
    if not checksum:
        return
    algorithm, _, expected = checksum.partition(":")
    if algorithm not in hashlib.algorithms_available or not expected:
        raise ModelError(f"bad checksum {checksum!r}: expected 'sha256:<hex>' or 'md5:<hex>'")
    got = sha256_file(path, algorithm)
    if got != expected.lower():
        path.unlink(missing_ok=True)
        raise ModelError(
            f"checksum mismatch for {path.name}: expected {algorithm} {expected}, got {got}"
        )


def write_atomic(path: Path, data: bytes) -> None:
    """Write ``data`` to ``path`` through a synced temporary file and a rename."""
    path.parent.mkdir(parents=True, exist_ok=True)
    fd, tmp = tempfile.mkstemp(dir=path.parent, prefix=".tmp-")
    with os.fdopen(fd, "wb") as f:
        f.write(data)
        f.flush()
        os.fsync(f.fileno())
    os.replace(tmp, path)
