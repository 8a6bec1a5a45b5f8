"""Start-up of the ``emofeat`` command: what each path imports (benchmarks/bench_startup.py
measures the times).

* ``emofeat --version`` imports click and the core's light modules: no command module, no
  plugin, no openSMILE, pandas or torch;
* ``emofeat --help`` lists the plugins' commands (it imports the plugin packages) without
  openSMILE, pandas or torch;
* ``emofeat plugins`` lists every extractor with its widths without torch, timm or
  transformers (the face nets' widths are declared, checked against timm below).
"""

from __future__ import annotations

import json
import os
import subprocess
import sys
import textwrap
from pathlib import Path

import pytest

#: the heavy stacks of the extras (PyTorch and what is built on it)
TORCH = {"torch", "torchvision", "timm", "transformers"}


def run_and_list_imports(args: list[str], work: Path) -> tuple[str, set[str]]:
    """Run ``emofeat ARGS`` in a fresh interpreter; its stdout and every module it imported."""
    found = work / "modules.json"
    code = textwrap.dedent(
        f"""
        import json, sys
        sys.argv = ["emofeat", *{args!r}]
        from emofeat.cli import main
        try:
            main()
        except SystemExit as exc:
            assert not exc.code, exc.code
        with open({str(found)!r}, "w") as f:
            json.dump(sorted(sys.modules), f)
        """
    )
    res = subprocess.run(
        [sys.executable, "-c", code],
        cwd=work,
        capture_output=True,
        text=True,
        timeout=300,
        env={**_env(), "COLUMNS": "200"},
    )
    assert res.returncode == 0, res.stderr
    return res.stdout, set(json.loads(found.read_text()))


def _env() -> dict[str, str]:
    return {k: v for k, v in os.environ.items() if k != "EMOFEAT_LOAD_PLUGINS"}


def _roots(modules: set[str]) -> set[str]:
    return {m.split(".")[0] for m in modules}


def test_version_imports_no_command_no_plugin_and_no_heavy_stack(tmp_path):
    out, modules = run_and_list_imports(["--version"], tmp_path)
    assert out.startswith("emofeat, version ")
    heavy = _roots(modules) & (TORCH | {"pandas", "opensmile", "onnxruntime", "rich"})
    assert not heavy, f"emofeat --version imported {sorted(heavy)}"
    late = {
        m
        for m in modules
        if m.startswith(("emofeat_plugins", "emofeat_recipes", "emofeat.cli."))
        or m in ("emofeat.api", "emofeat.engine", "emofeat.runner", "emofeat.models")
    }
    assert not late, f"emofeat --version imported {sorted(late)}"


def test_help_lists_builtin_and_plugin_commands_without_heavy_imports(tmp_path):
    out, modules = run_and_list_imports(["--help"], tmp_path)
    listed = {line.split()[0] for line in out.split("Commands:")[1].splitlines() if line.strip()}
    builtin = {"extract", "plugins", "inspect", "sample", "models", "recipe", "verify", "compact"}
    assert builtin | {"datasets"} <= listed  # datasets: the recipes plugin's command
    heavy = _roots(modules) & (TORCH | {"pandas", "opensmile", "onnxruntime"})
    assert not heavy, f"emofeat --help imported {sorted(heavy)}"
    assert "emofeat.engine" not in modules  # the engine comes with `extract` running


def test_plugins_lists_every_width_without_torch(tmp_path):
    out, modules = run_and_list_imports(["plugins", "--json"], tmp_path)
    heavy = _roots(modules) & TORCH
    assert not heavy, f"emofeat plugins --json imported {sorted(heavy)}"
    rows = {r["name"]: r for r in json.loads(out)["extractors"]}
    dims = {
        name: {s["name"]: s["dims"] for s in row["streams"]}
        for name, row in rows.items()
        if not row["error"]
    }
    assert dims["face_cnn"] == {"features": 1280}  # efficientnet_b1
    assert dims["vit"] == {"features": 768}  # vit_base_patch16_224
    assert dims["pdem"] == {"hidden_states": 1024, "logits": 3}
    assert dims["egemaps"] == {"lld": 25, "functionals": 88}
    assert dims["vad"] == {"speech": 1, "probability": 1}
    assert not [r["name"] for r in rows.values() if r["error"]]
    table, modules = run_and_list_imports(["plugins"], tmp_path)
    assert not _roots(modules) & TORCH and "features: 1280 @" in table


def test_the_cli_module_still_exports_its_names():
    import emofeat.api
    import emofeat.cli.plugins
    from emofeat.cli import build_jobs, cli, main, plugin_rows

    assert build_jobs is emofeat.api.build_jobs
    assert plugin_rows is emofeat.cli.plugins.plugin_rows
    assert callable(main) and cli.name == "cli"
    with pytest.raises(AttributeError):
        emofeat.cli.no_such_name  # noqa: B018


def test_declared_timm_widths_are_timm_s():
    """The widths ``face_cnn`` and ``vit`` declare without timm are what timm builds."""
    import timm
    import torch

    from emofeat_plugins.faces.extractors import TIMM_WIDTHS

    for arch, width in TIMM_WIDTHS.items():
        with torch.device("meta"):
            net = timm.create_model(arch, pretrained=False, num_classes=0)
        assert net.num_features == width, arch
