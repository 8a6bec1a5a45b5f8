"""Fault-injection points for the crash tests (never active in normal use).

The store's commit, checkpoint and compaction paths call :func:`point` at each step. When the
environment variable ``EMOFEAT_FAULT`` names that point, the process kills itself with
SIGKILL there, as a power cut or the kernel's out-of-memory killer would; the tests then check
that the store opens with every item wholly present or absent and that a rerun completes.
Nothing happens when the variable is unset (one dictionary look-up per call).
"""

from __future__ import annotations

import os
import signal

ENV = "EMOFEAT_FAULT"

POINTS: dict[str, str] = {}
"""Every fault point: name -> where it is (filled by :func:`declare`)."""


def declare(name: str, where: str) -> str:
    """Register a fault point (at import time) and return its name."""
    POINTS[name] = where
    return name


def point(name: str) -> None:
    """SIGKILL this process if ``EMOFEAT_FAULT`` names this point."""
    if os.environ.get(ENV) == name:
        os.kill(os.getpid(), signal.SIGKILL)
