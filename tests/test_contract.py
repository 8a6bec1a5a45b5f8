"""The extractor contract, checked over every registered extractor (emofeat.testing).

One parametrized test per extractor: built-in ones and those of the example third-party
plugin (tests/plugins/emofeat-loudness, registered in this process for the module). Each
constructs, lists its streams, runs on a short sample input through ``emofeat.extract``
and ``emofeat.process_file``, aligns and round-trips (:func:`emofeat.testing.check_extractor`).
One sample per modality is shared by every case. Model weights: the face nets from the
model cache (fetched through the registry on first use, as tests/test_face_extractors.py
does), a tiny PDEM-shaped ONNX model built here (as tests/test_pdem.py does), random timm
weights for the timm backbones; the example plugin's non-commercial model has its licence
accepted explicitly in a cache of its own.
"""

from __future__ import annotations

import importlib.util
import sys
from pathlib import Path
from types import ModuleType
from typing import Any

import pytest
from conftest import REPO

import emofeat
from emofeat.models import ModelCache, get_model
from emofeat.plugins import pm
from emofeat.testing import check_extractor, sample_input

PLUGIN_FILE = REPO / "tests" / "plugins" / "emofeat-loudness" / "emofeat_loudness.py"
PLUGIN_NAME = "loudness"  # its entry-point name


def _third_party_module() -> ModuleType:
    """The example plugin's module, imported from its source file (not installed)."""
    if "emofeat_loudness" in sys.modules:
        return sys.modules["emofeat_loudness"]
    spec = importlib.util.spec_from_file_location("emofeat_loudness", PLUGIN_FILE)
    assert spec is not None and spec.loader is not None
    module = importlib.util.module_from_spec(spec)
    sys.modules["emofeat_loudness"] = module
    spec.loader.exec_module(module)
    return module


def _third_party_names() -> list[str]:
    names: list[str] = []
    _third_party_module().register_extractors(register=lambda cls: names.append(cls.name))
    return names


#: every registered extractor (collected when this module is imported) and the plugin's
EXTRACTORS = sorted(set(emofeat.get_extractors()) | set(_third_party_names()))

FACE_CROPS = {"faces": {"detector": "none"}}  # the sample frames are taken as face crops

#: per extractor: settings, the extractors run before it, the sample kind. Settings choose
#: small models and short windows so that the whole module stays well under two minutes.
CASES: dict[str, dict[str, Any]] = {
    "egemaps": {},
    "compare": {"settings": {"compare": {"win": 1.0, "hop": 1.0}}},
    "functionals": {
        "settings": {
            "egemaps": {"functionals": False},
            "functionals": {"win": 1.0, "hop": 0.5},
        },
        "before": ["egemaps"],
    },
    "vad": {},
    "pdem": {"settings": lambda ctx: {"pdem": {"model": str(ctx["pdem"]), "threads": 1}}},
    "faces": {"settings": {"faces": {"detector": "mtcnn", "detect_every": 2}}},
    "face_expr": {"settings": FACE_CROPS},
    "mouth": {"settings": FACE_CROPS},
    "mouth_open": {
        "settings": {**FACE_CROPS, "mouth_open": {"frames": 5}},
        "before": ["mouth"],
    },
    "face_cnn": {
        "settings": {**FACE_CROPS, "face_cnn": {"weights": "random", "input_size": 112}},
    },
    "vit": {
        "settings": {
            **FACE_CROPS,
            "vit": {"weights": "random", "arch": "vit_tiny_patch16_224", "batch_size": 16},
        },
    },
    "loudness": {"settings": {"loudness": {"frame": 0.1}}},
    "arousal": {
        "settings": lambda ctx: {"arousal": {"cache_dir": str(ctx["accepted_cache"])}},
        "before": ["loudness"],
    },
}


@pytest.fixture(scope="module", autouse=True)
def third_party_plugin():
    """The example plugin registered in this process for this module only."""
    module = _third_party_module()
    added = pm.get_plugin(PLUGIN_NAME) is None
    if added:
        pm.register(module, name=PLUGIN_NAME)
    yield module
    if added:
        pm.unregister(name=PLUGIN_NAME)


@pytest.fixture(scope="module")
def samples(tmp_path_factory) -> dict[str, Path]:
    """One short input per kind, shared by every case (1.5 s; video at 10 fps)."""
    d = tmp_path_factory.mktemp("contract-inputs")
    return {kind: sample_input(kind, d, seconds=1.5) for kind in ("audio", "video")}


@pytest.fixture(scope="module")
def context(tmp_path_factory, third_party_plugin) -> dict[str, Path]:
    """Weights the cases need, made or accepted once."""
    from test_pdem import build_tiny_pdem

    root = tmp_path_factory.mktemp("contract-models")
    cache = ModelCache(root / "accepted")
    cache.accept(get_model("loudness-arousal"))  # the explicit opt-in to its NC licence
    return {"pdem": build_tiny_pdem(root / "tiny-pdem"), "accepted_cache": cache.root}


def _case(name: str, ctx: dict[str, Path]) -> tuple[Any, list[str]]:
    case = CASES.get(name, {})
    settings = case.get("settings")
    if callable(settings):
        settings = settings(ctx)
    return settings, list(case.get("before", []))


@pytest.mark.parametrize("name", EXTRACTORS)
def test_extractor_keeps_the_contract(name, samples, context):
    entry = emofeat.get_extractor(name)
    settings, before = _case(name, context)
    if entry.cls.modality == "features" and not before:
        pytest.fail(f"{name}: a features extractor needs a case in CASES naming its sources")
    kinds = {emofeat.get_extractor(b).cls.modality for b in [name, *before]}
    media = samples["audio"] if kinds <= {"audio", "features"} else samples["video"]
    report = check_extractor(name, settings, media=media, before=before)
    assert report.streams, name
    attrs = report.attrs
    assert attrs["plugin"] == entry.plugin
    assert attrs["license"] and isinstance(attrs["commercial_use"], bool)
    if not entry.cls.commercial_use:
        assert attrs["commercial_use"] is False


def test_every_registered_extractor_is_covered():
    """A new extractor gets a case here or runs with its defaults; none is left out."""
    assert set(emofeat.get_extractors()) <= set(EXTRACTORS)
    assert {"loudness", "arousal"} <= set(EXTRACTORS)


def test_a_broken_extractor_is_named_with_the_rule(samples):
    class Undeclared(emofeat.Extractor):
        name = "undeclared_stream"
        version = "1"
        license = "MIT (no model)"
        description = "writes a stream it does not declare"

        def streams(self):
            return [emofeat.StreamSpec("a", ("x",))]

        def process(self, chunk):
            t = chunk.start
            yield emofeat.Rows("a", [[1.0]], [t], [t + 0.1])
            yield emofeat.Rows("b", [[1.0]], [t], [t + 0.1])

    with pytest.raises(
        AssertionError, match=r"'undeclared_stream'.*undeclared stream\(s\) \['b'\]"
    ):
        check_extractor(Undeclared, media=samples["audio"])
    assert "undeclared_stream" not in emofeat.get_extractors()  # registered for the check only

    class Crashes(Undeclared):
        name = "crashes"

        def process(self, chunk):
            raise RuntimeError("boom")

    with pytest.raises(
        AssertionError, match=r"(?s)'crashes': failed.*RuntimeError: boom.*in process"
    ):
        check_extractor(Crashes, media=samples["audio"])

    class NoComma(Undeclared):
        name = "no_comma"
        requires = "undeclared_stream"

    with pytest.raises(AssertionError, match="a one-name tuple needs a comma"):
        check_extractor(NoComma, media=samples["audio"])
