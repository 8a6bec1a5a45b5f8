"""Model files out of archives (zip, wheel, tar, tgz): member lookup and safe extraction."""

from __future__ import annotations

import shutil
import tarfile
import zipfile
from pathlib import Path

from emofeat.models.errors import ModelError
from emofeat.models.spec import Model


def resolve_member(names: list[str], member: str, archive: Path) -> str:
    """``member`` itself, else the one member with the same file name (in any folder)."""
    if member in names:
        return member
    base = member.rsplit("/", 1)[-1]
    hits = [n for n in names if n.rsplit("/", 1)[-1] == base and not n.endswith("/")]
    if len(hits) == 1:
        return hits[0]
    if hits:
        raise ModelError(f"{archive.name} has several members called {base}: {sorted(hits)}")
    raise ModelError(f"{archive.name} has no member {member}")


def _safe_extract_path(base: Path, member: str) -> Path:
    target = (base / member).resolve()
    if not str(target).startswith(str(base.resolve())):
        raise ModelError(f"archive member {member!r} escapes the extraction folder")
    return target


def extract_members(archive: Path, members: dict[str, str], dest: Path) -> dict[str, Path]:
    """Extract the named members (zip, wheel, tar, tgz) and map model file -> extracted path."""
    dest.mkdir(parents=True, exist_ok=True)
    out: dict[str, Path] = {}
    if zipfile.is_zipfile(archive):
        with zipfile.ZipFile(archive) as z:
            names = z.namelist()
            for fname, wanted in members.items():
                member = resolve_member(names, wanted, archive)
                target = _safe_extract_path(dest, member)
                target.parent.mkdir(parents=True, exist_ok=True)
                with z.open(member) as src, open(target, "wb") as dst:
                    shutil.copyfileobj(src, dst)
                out[fname] = target
        return out
    with tarfile.open(archive) as t:
        names = t.getnames()
        for fname, wanted in members.items():
            member = resolve_member(names, wanted, archive)
            try:
                info = t.getmember(member)
            except KeyError:
                raise ModelError(f"{archive.name} has no member {member}") from None
            if not info.isfile():
                raise ModelError(f"{archive.name}: {member} is not a regular file")
            target = _safe_extract_path(dest, member)
            target.parent.mkdir(parents=True, exist_ok=True)
            extracted = t.extractfile(info)
            assert extracted is not None  # a regular file (checked above) always has one
            with extracted, open(target, "wb") as dst:
                shutil.copyfileobj(extracted, dst)
            out[fname] = target
    return out


def find_members(archive: Path, model: Model) -> dict[str, str]:
    """Match a model's files to archive members by trailing path (for user imports)."""
    if zipfile.is_zipfile(archive):
        with zipfile.ZipFile(archive) as z:
            names = z.namelist()
    else:
        with tarfile.open(archive) as t:
            names = t.getnames()
    found = {}
    for f in model.files:
        hits = [n for n in names if n == f.name or n.endswith("/" + f.name)]
        if hits:
            found[f.name] = sorted(hits, key=len)[0]
    return found
