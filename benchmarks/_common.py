"""Helpers the benchmark scripts share: the machine, the code under test, child processes.

Imported as ``_common`` by the scripts in this folder (run as ``python benchmarks/bench_*.py``,
which puts this folder first on ``sys.path``).
"""

from __future__ import annotations

import hashlib
import os
import platform
import resource
import shutil
import subprocess
import sys
from pathlib import Path
from typing import Any

ROOT = Path(__file__).resolve().parent.parent


def remove_store(store: Path) -> None:
    """Delete a feature store: its index ``store`` and its folder ``store.d``."""
    shutil.rmtree(store.with_name(store.name + ".d"), ignore_errors=True)
    store.unlink(missing_ok=True)


def children_cpu() -> float:
    """CPU seconds (user + system) of waited-for child processes so far."""
    ru = resource.getrusage(resource.RUSAGE_CHILDREN)
    return ru.ru_utime + ru.ru_stime


def emofeat_exe() -> str:
    """The ``emofeat`` command of this interpreter's environment (else the one on PATH)."""
    exe = Path(sys.executable).parent / "emofeat"
    return str(exe) if exe.exists() else (shutil.which("emofeat") or "emofeat")


def _proc_line(path: str, prefix: str) -> str | None:
    """The value of the first ``prefix: value`` line of ``/proc/<path>`` (None if none)."""
    try:
        for line in Path(path).read_text().splitlines():
            if line.startswith(prefix):
                return line.split(":", 1)[1].strip()
    except OSError:
        pass
    return None


def host(**more: Any) -> dict[str, Any]:
    """CPU count and model, ``more`` (e.g. memory), platform and Python version."""
    try:
        nproc = len(os.sched_getaffinity(0))
    except AttributeError:
        nproc = os.cpu_count()
    return {
        "nproc": nproc,
        "cpu": _proc_line("/proc/cpuinfo", "model name") or "unknown",
        **more,
        "platform": platform.platform(),
        "python": platform.python_version(),
    }


def mem_total() -> str:
    """``MemTotal`` of /proc/meminfo (e.g. ``"8000000 kB"``; empty if unknown)."""
    return _proc_line("/proc/meminfo", "MemTotal") or ""


def git(*args: str) -> str:
    """Output of a read-only git command in the repository ('' when git fails)."""
    try:
        return subprocess.run(
            ["git", "--no-optional-locks", "-C", str(ROOT), *args],
            capture_output=True,
            text=True,
            timeout=20,
        ).stdout.strip()
    except (OSError, subprocess.SubprocessError):
        return ""


def code_hash(*patterns: str) -> str:
    """Short sha256 of the files matching ``patterns`` (globs below the repository root, each
    sorted), names included: tells whether the code under test changed."""
    h = hashlib.sha256()
    for pattern in patterns:
        for f in sorted(ROOT.glob(pattern)):
            h.update(f.name.encode() + b"\0" + f.read_bytes())
    return h.hexdigest()[:16]
