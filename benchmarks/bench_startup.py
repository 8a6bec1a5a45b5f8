#!/usr/bin/env python
"""Benchmark: start-up of the ``emofeat`` command against a bare ``import opensmile, av``.

Run from the repository root::

    .venv/bin/python benchmarks/bench_startup.py                # this tree, 5 rounds
    .venv/bin/python benchmarks/bench_startup.py --repeat 9
    # side by side with another checkout of the code (e.g. the last commit):
    git worktree add --detach /tmp/startup-before HEAD
    .venv/bin/python benchmarks/bench_startup.py --tree before=/tmp/startup-before --tree after=.

What it measures, in one run on one machine, every command a fresh process (wall time of
the whole process, interpreter start-up included, output piped and discarded):

* ``python -c "import opensmile, av"``: the reference (the light core's two heavy imports);
* ``python -c pass``: the interpreter alone (for scale, no goal);
* ``emofeat --version``, ``emofeat --help``, ``emofeat plugins``, ``emofeat plugins --json``
  (the console script of this interpreter's environment).

Goals (performance issue, "start-up"): ``--version`` <= 1.1x and ``plugins`` <= 2x the
reference. Every round runs every command of every tree once, in turn (interleaved, so
that drift in machine load hits all of them alike), after one warm-up round; the median of
``--repeat`` rounds is reported, and each command's ratio to the reference's median (over
every tree's runs of it: it runs no emofeat code).

A tree (``--tree LABEL=PATH``: a checkout of this repository) is measured through a folder
of links (``emofeat``, ``emofeat_plugins``, ``emofeat_recipes`` -> its packages) put first
on ``PYTHONPATH``, ahead of the editable install; the entry points (which plugins load)
come from the installed metadata, the same for every tree. ``PYTHONDONTWRITEBYTECODE`` is
dropped: the warm-up round writes the trees' ``__pycache__`` (an installed package has its
bytecode compiled; without it every run compiles emofeat's modules). Each command is also run once
with ``-X importtime``: the table names the heavy packages it imported.

Results: a markdown table on stdout, JSON under benchmarks/out/startup.json.
"""

from __future__ import annotations

import argparse
import json
import os
import statistics
import subprocess
import sys
import tempfile
import time
from pathlib import Path

HERE = Path(__file__).resolve().parent
sys.path.insert(0, str(HERE))

from _common import ROOT, emofeat_exe, git, host, mem_total  # noqa: E402

REFERENCE = "import opensmile, av"
#: packages whose import the table reports (top-level names)
WATCHED = (
    "torch",
    "timm",
    "transformers",
    "torchvision",
    "onnxruntime",
    "opensmile",
    "pandas",
    "av",
    "h5py",
    "numpy",
    "rich",
    "yaml",
)
#: what a goal bounds: command -> largest ratio to the reference
GOALS = {"emofeat --version": 1.1, "emofeat plugins": 2.0}


def log(*a: object) -> None:
    print(*a, file=sys.stderr, flush=True)


def commands() -> dict[str, list[str]]:
    exe = emofeat_exe()
    return {
        f'python -c "{REFERENCE}"': [sys.executable, "-c", REFERENCE],
        "python -c pass": [sys.executable, "-c", "pass"],
        "emofeat --version": [exe, "--version"],
        "emofeat --help": [exe, "--help"],
        "emofeat plugins": [exe, "plugins"],
        "emofeat plugins --json": [exe, "plugins", "--json"],
    }


def tree_env(path: Path, links: Path) -> dict[str, str]:
    """The environment that runs the code of the checkout ``path`` (links under ``links``)."""
    links.mkdir(parents=True, exist_ok=True)
    for name, folder in (
        ("emofeat", "emofeat"),
        ("emofeat_plugins", "plugins"),
        ("emofeat_recipes", "recipes"),
    ):
        (links / name).symlink_to(path.resolve() / folder, target_is_directory=True)
    env = {
        **os.environ,
        "PYTHONPATH": os.pathsep.join(filter(None, [str(links), os.environ.get("PYTHONPATH", "")])),
    }
    # compiled bytecode is kept (written by the warm-up round), as an installed package has it
    env.pop("PYTHONDONTWRITEBYTECODE", None)
    found = subprocess.run(
        [
            sys.executable,
            "-c",
            "import emofeat, emofeat_plugins; "
            "print(emofeat.__file__); print(emofeat_plugins.__file__)",
        ],
        env=env,
        capture_output=True,
        text=True,
        check=True,
        cwd=links,
    ).stdout.split()
    for f in found:  # the links resolve to the tree, not to the editable install
        assert Path(f).resolve().is_relative_to(path.resolve()), (path, found)
    return env


def _cwd(env: dict[str, str]) -> str:
    """Where a tree's commands run: its links folder, outside the repository (``python -c``
    puts the working folder first on ``sys.path``)."""
    return env["PYTHONPATH"].split(os.pathsep)[0]


def run_once(argv: list[str], env: dict[str, str]) -> float:
    t0 = time.perf_counter()
    res = subprocess.run(
        argv, env=env, stdout=subprocess.DEVNULL, stderr=subprocess.PIPE, cwd=_cwd(env)
    )
    seconds = time.perf_counter() - t0
    if res.returncode != 0:
        raise RuntimeError(f"{argv} failed: {res.stderr.decode(errors='replace')[-2000:]}")
    return seconds


def imports_of(argv: list[str], env: dict[str, str]) -> dict:
    """The modules one run imports (``-X importtime``): count, watched packages, and the
    cumulative import time of the slowest top-level imports."""
    if argv[0] != sys.executable:  # the console script, run by its interpreter
        argv = [sys.executable, *argv]
    argv = [argv[0], "-X", "importtime", *argv[1:]]
    res = subprocess.run(
        argv, env=env, cwd=_cwd(env), stdout=subprocess.DEVNULL, stderr=subprocess.PIPE, text=True
    )
    names, top = [], []
    for line in res.stderr.splitlines():
        if not line.startswith("import time:") or "|" not in line:
            continue
        _, cumulative, name = line.split("|", 2)
        if not cumulative.strip().isdigit():
            continue  # the header
        names.append(name.strip())
        if not name.startswith("  "):  # imported at top level (not by another import)
            top.append((int(cumulative) / 1e6, name.strip()))
    roots = {n.split(".")[0] for n in names}
    return {
        "modules": len(names),
        "watched": [w for w in WATCHED if w in roots],
        "slowest": [(n, round(s, 3)) for s, n in sorted(top, reverse=True)[:6]],
    }


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    ap.add_argument("--repeat", type=int, default=5, help="rounds (median reported)")
    ap.add_argument(
        "--tree",
        action="append",
        default=[],
        metavar="LABEL=PATH",
        help="a checkout to measure (repeatable; default: this repository)",
    )
    ap.add_argument("--out", default=str(HERE / "out"), help="results folder")
    args = ap.parse_args()
    trees = [t.split("=", 1) for t in args.tree] or [["this tree", str(ROOT)]]
    cmds = commands()
    with tempfile.TemporaryDirectory(prefix="emofeat-bench-startup-") as tmp:
        envs = {label: tree_env(Path(p), Path(tmp) / str(k)) for k, (label, p) in enumerate(trees)}
        runs = [(label, name) for label in envs for name in cmds]
        times: dict[tuple[str, str], list[float]] = {key: [] for key in runs}
        for label, name in runs:  # warm-up: page cache, .pyc files
            run_once(cmds[name], envs[label])
        for r in range(args.repeat):
            for label, name in runs:
                times[label, name].append(run_once(cmds[name], envs[label]))
            log(
                f"round {r + 1}/{args.repeat}: "
                + ", ".join(
                    f"{label}: {name} {times[label, name][-1]:.2f} s"
                    for label, name in runs
                    if name.startswith("emofeat plugins") and "json" not in name
                )
            )
        imports = {key: imports_of(cmds[key[1]], envs[key[0]]) for key in runs}
    reference = f'python -c "{REFERENCE}"'
    result: dict = {
        "host": host(memory=mem_total()),
        "git": {
            "commit": git("rev-parse", "--short", "HEAD"),
            "uncommitted": git(
                "status", "--porcelain", "--", "emofeat", "plugins", "recipes"
            ).splitlines(),
        },
        "repeat": args.repeat,
        "trees": {label: str(Path(p).resolve()) for label, p in trees},
        "goals": GOALS,
        "results": {},
    }
    # the reference runs the same code whatever the tree: its median over every tree's runs
    ref = statistics.median(t for label in envs for t in times[label, reference])
    result["reference_s"] = ref
    for label in envs:
        result["results"][label] = {
            name: {
                "median_s": statistics.median(times[label, name]),
                "ratio": statistics.median(times[label, name]) / ref,
                "all_s": times[label, name],
                "imports": imports[label, name],
            }
            for name in cmds
        }
    out_dir = Path(args.out)
    out_dir.mkdir(parents=True, exist_ok=True)
    (out_dir / "startup.json").write_text(json.dumps(result, indent=2))
    report(result)


def report(result: dict) -> None:
    """The markdown table: one row per command, per tree its median, ratio and imports."""
    labels = list(result["results"])
    h = result["host"]
    print(
        f"{h['cpu']}, {h['nproc']} CPUs, Python {h['python']}; median of "
        f"{result['repeat']} fresh processes per command, interleaved; reference "
        f"{result['reference_s']:.2f} s\n"
    )
    head = "| command | goal |" + "".join(f" {lb}: median | {lb}: ratio |" for lb in labels)
    print(head + "".join(f" {lb}: heavy imports |" for lb in labels))
    print("|---|---|" + "---|---|" * len(labels) + "---|" * len(labels))
    first = result["results"][labels[0]]
    for name in first:
        goal = GOALS.get(name)
        cells = [f"<= {goal:g}x" if goal else ""]
        for lb in labels:
            r = result["results"][lb][name]
            ok = "" if goal is None else (" ok" if r["ratio"] <= goal else " **over**")
            cells += [f"{r['median_s']:.2f} s", f"{r['ratio']:.2f}x{ok}"]
        for lb in labels:
            watched = result["results"][lb][name]["imports"]["watched"]
            cells.append(", ".join(watched) or "-")
        print(f"| `{name}` | " + " | ".join(cells) + " |")


if __name__ == "__main__":
    main()
