"""The light core and the optional extras.

Each test runs emofeat in a fresh interpreter where the heavy stacks cannot be imported
(``sys.modules[name] = None`` makes ``import name`` raise ImportError), which is what a user
who ran ``pip install emofeat`` without extras has.
"""

from __future__ import annotations

import json
import subprocess
import sys
import textwrap
from pathlib import Path

import pytest

from emofeat.extras import MissingExtraError, extras_providing, missing_extra
from emofeat.samples import write_audio, write_video

HEAVY = [
    "torch",
    "torchvision",
    "timm",
    "sklearn",
    "matplotlib",
    "transformers",
    "audonnx",
    "onnxruntime",
    "cv2",
    "silero_vad",
]


def run_light(args: list[str], cwd: Path) -> subprocess.CompletedProcess:
    code = textwrap.dedent(
        f"""
        import sys
        for name in {HEAVY!r}:
            sys.modules[name] = None
        sys.argv = ["emofeat", *{args!r}]
        from emofeat.cli import main
        main()
        """
    )
    return subprocess.run(
        [sys.executable, "-c", code], cwd=cwd, capture_output=True, text=True, timeout=300
    )


def test_extras_are_read_from_the_installed_metadata():
    assert extras_providing("torch") == ["faces", "audio", "recipes"]
    assert extras_providing("timm") == ["faces"]
    assert extras_providing("cv2") == ["faces"]  # import name differs from the distribution
    assert extras_providing("sklearn.metrics") == ["recipes"]
    assert extras_providing("dask_jobqueue") == ["dask"]
    assert extras_providing("distributed") == []  # core: -j N runs on a local Dask cluster
    assert extras_providing("numpy") == []  # core dependency, not an extra
    assert extras_providing("torch", distribution="no-such-distribution") == []


def test_missing_extra_names_the_preferred_extra_first():
    exc = ModuleNotFoundError("No module named 'torch'", name="torch")
    err = missing_extra(exc, what="recipe 'abaw_va'", prefer="recipes")
    assert isinstance(err, MissingExtraError)
    assert err.extras == ("recipes", "faces", "audio")
    assert "pip install 'emofeat[recipes]' or [faces] or [audio]" in str(err)
    assert missing_extra(ModuleNotFoundError("x", name="numpy"), what="x") is None
    assert missing_extra(ModuleNotFoundError("x"), what="x") is None


def test_light_core_lists_plugins_and_names_extras(tmp_path):
    res = run_light(["plugins", "--json"], tmp_path)
    assert res.returncode == 0, res.stderr
    rows = {r["name"]: r for r in json.loads(res.stdout)["extractors"]}
    assert rows["egemaps"]["error"] == ""
    assert rows["functionals"]["error"] == ""
    assert "pip install 'emofeat[faces]'" in rows["face_cnn"]["error"]
    assert "pip install 'emofeat[audio]'" in rows["vad"]["error"]


@pytest.mark.slow
def test_light_core_extracts_opensmile_and_functionals(tmp_path):
    write_audio(tmp_path / "a.wav", duration=2.0)
    write_video(tmp_path / "v.mp4", duration=1.0)
    res = run_light(
        ["extract", "-p", "egemaps", "-p", "functionals", str(tmp_path), "-o", "f.h5"], tmp_path
    )
    assert res.returncode == 0, res.stderr
    import emofeat

    with emofeat.open_store(tmp_path / "f.h5") as store:
        assert sorted(store.items()) == ["a", "v"]
        assert store.extractors("v") == ["egemaps", "functionals"]


def test_missing_extra_is_one_usage_error_before_any_input(tmp_path):
    write_video(tmp_path / "v.mp4", duration=1.0)
    res = run_light(["extract", "-p", "face_cnn", "v.mp4", "-o", "f.h5"], tmp_path)
    assert res.returncode == 2, res.stderr
    assert res.stderr.count("pip install 'emofeat[faces]'") == 1
    assert "Traceback" not in res.stderr
    assert not (tmp_path / "f.h5").exists()


def test_recipe_without_its_extra_names_it(tmp_path):
    res = run_light(["recipe", "run", "abaw_va", "--data", ".", "-o", "runs"], tmp_path)
    assert res.returncode == 2, res.stdout + res.stderr
    out = res.stdout + res.stderr
    assert "pip install 'emofeat[recipes]'" in out
    (run,) = (tmp_path / "runs").iterdir()
    assert json.loads((run / "run.json").read_text())["status"] == "failed"
