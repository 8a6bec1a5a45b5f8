"""The two consoles every command writes to: ``console`` (stderr: messages, errors) and
``out`` (stdout: tables and ``--json`` results)."""

from __future__ import annotations

from emofeat.progress import stderr_console

console = stderr_console(stderr=True)
out = stderr_console(stderr=False)
