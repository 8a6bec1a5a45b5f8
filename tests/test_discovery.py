"""Input discovery on hostile trees: link loops, special files, unreadable folders.

Each case runs the real CLI in a subprocess with a timeout: a hang (opening a named pipe
waits for a writer forever) fails the test instead of the suite.
"""

from __future__ import annotations

import os
import socket
import subprocess
import sys
from pathlib import Path

import pytest

import emofeat
from emofeat.media import find_inputs
from emofeat.samples import write_audio


def run_extract(args: list[str], cwd: Path) -> subprocess.CompletedProcess:
    return subprocess.run(
        [sys.executable, "-m", "emofeat", "extract", "-p", "egemaps", "-q", *args],
        cwd=cwd,
        capture_output=True,
        text=True,
        timeout=120,
    )


@pytest.fixture()
def tree(tmp_path) -> Path:
    root = tmp_path / "corpus"
    (root / "a" / "b").mkdir(parents=True)
    write_audio(root / "a" / "one.wav", duration=1.0)
    write_audio(root / "a" / "b" / "two.wav", duration=1.0)
    return root


def test_link_loops_are_not_followed(tree, tmp_path):
    (tree / "a" / "b" / "up").symlink_to(tree / "a")  # a loop back to an ancestor
    (tree / "a" / "self").symlink_to(tree / "a" / "self")  # a link to itself
    (tree / "again").symlink_to(tree / "a")  # a second way to the same folder
    inputs, problems = find_inputs([str(tree)])
    assert sorted(p.name for p in inputs) == ["one.wav", "two.wav"]
    assert problems == []
    res = run_extract([str(tree), "-o", "f.h5"], tmp_path)
    assert res.returncode == 0, res.stderr
    assert "Traceback" not in res.stderr
    with emofeat.open_store(tmp_path / "f.h5") as store:
        assert sorted(store.items()) == ["one", "two"]


def test_special_files_with_media_names_are_skipped_with_a_reason(tree, tmp_path):
    fifo = tree / "a" / "pipe.wav"
    os.mkfifo(fifo)
    sock = socket.socket(socket.AF_UNIX)
    sock.bind(str(tree / "a" / "sock.mp4"))
    try:
        res = run_extract([str(tree), "-o", "f.h5"], tmp_path)  # would hang on the pipe
        direct = run_extract([str(fifo), str(tree / "a" / "one.wav"), "-o", "g.h5"], tmp_path)
    finally:
        sock.close()
    assert res.returncode == 1, res.stderr  # something could not be done: say so
    said = res.stderr.replace("\n", "")  # rich wraps long lines
    assert f"{fifo}: skipped: a named pipe (FIFO), not a regular file" in said
    assert "sock.mp4: skipped: a socket, not a regular file" in said
    assert "Traceback" not in said
    with emofeat.open_store(tmp_path / "f.h5") as store:
        assert sorted(store.items()) == ["one", "two"]  # the others are stored
    assert direct.returncode == 1 and "named pipe" in direct.stderr.replace("\n", "")
    with emofeat.open_store(tmp_path / "g.h5") as store:
        assert store.items() == ["one"]


def test_a_device_named_like_media_is_not_opened(tmp_path):
    dev = tmp_path / "null.wav"
    dev.symlink_to("/dev/null")
    inputs, problems = find_inputs([str(dev)])
    assert inputs == []
    assert problems == [(str(dev), "skipped: a character device, not a regular file")]


_FIND = """
import json, sys
from emofeat.media import find_inputs
inputs, problems = find_inputs([sys.argv[1]])
print(json.dumps([[p.name for p in inputs], problems]))
"""


def test_unreadable_subfolder_is_a_problem_not_a_crash(tree):
    """Run as a process without root's file access (root reads every folder)."""
    import json

    from conftest import _drop_dac_capabilities

    locked = tree / "a" / "b"
    locked.chmod(0)
    try:
        res = subprocess.run(
            [sys.executable, "-c", _FIND, str(tree)],
            preexec_fn=_drop_dac_capabilities if os.geteuid() == 0 else None,
            capture_output=True,
            text=True,
            timeout=120,
        )
    finally:
        locked.chmod(0o755)
    assert res.returncode == 0, res.stderr
    names, problems = json.loads(res.stdout)
    assert names == ["one.wav"]
    assert problems == [[str(locked), "cannot list the folder: Permission denied"]]
