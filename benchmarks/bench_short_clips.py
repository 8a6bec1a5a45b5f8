#!/usr/bin/env python
"""Benchmark: the fixed cost per input on short clips (eGeMAPS LLDs on 40 speech files).

Run from the repository root::

    .venv/bin/python benchmarks/bench_short_clips.py              # ~2 min
    .venv/bin/python benchmarks/bench_short_clips.py --repeat 7   # steadier medians
    git worktree add /tmp/before COMMIT      # then, before and after side by side:
    .venv/bin/python benchmarks/bench_short_clips.py --before /tmp/before --repeat 5

The inputs: the five LibriVox clips Debian's ``pocketsphinx-testdata`` ships (16 kHz mono
WAV, 3.0-7.1 s of read speech), each copied eight times under its own name into
``benchmarks/out/short_clips/`` (40 files, as a corpus of short utterances would be).

1. **In process** (no interpreter start-up): raw openSMILE (``Smile(eGeMAPSv02,
   LowLevelDescriptors).process_file`` per file, timed per file) against ``engine.run``
   into a fresh store with ``egemaps.functionals=false``. Per input: the wall time from one
   input's commit to the next (everything the run does for it), the extractor's own time,
   and the steps the engine records (``InputResult.stages``: probe, identity, open,
   decode, finalize, masks, describe in the worker; commit in the coordinator). The fixed
   cost per input is that wall time less the extractor's time.
2. **Fresh processes**: ``emofeat extract -q --plugin egemaps --set
   egemaps.functionals=false DIR -o STORE`` against a Python script doing the raw work on
   the same files, both paying the interpreter's start-up. Goal: at most 1.15x.

Contenders are interleaved within each repetition; medians are reported. Results: markdown
on stdout and ``benchmarks/out/bench_short_clips_latest.{json,md}``.
"""

from __future__ import annotations

import argparse
import glob
import json
import os
import shutil
import statistics
import subprocess
import sys
import time
from pathlib import Path

from _common import children_cpu, emofeat_exe, git, host, mem_total, remove_store

HERE = Path(__file__).resolve().parent
LIBRIVOX = "/usr/share/pocketsphinx/test/data/librivox/*.wav"
COPIES = 8
SETS = ("egemaps.functionals=false",)


def make_clips(folder: Path) -> list[str]:
    """The 40 clips (made once)."""
    sources = sorted(glob.glob(LIBRIVOX))
    if not sources:
        sys.exit(f"no clips at {LIBRIVOX}: apt-get install pocketsphinx-testdata")
    folder.mkdir(parents=True, exist_ok=True)
    files = []
    for copy in range(COPIES):
        for src in sources:
            dst = folder / f"c{copy}_{Path(src).stem[-4:]}.wav"
            if not dst.exists():
                shutil.copyfile(src, dst)
            files.append(str(dst))
    return files


def raw_work(files: list[str]) -> dict[str, float]:
    """The raw openSMILE work: seconds per file."""
    import opensmile

    smile = opensmile.Smile(
        feature_set=opensmile.FeatureSet.eGeMAPSv02,
        feature_level=opensmile.FeatureLevel.LowLevelDescriptors,
    )
    out = {}
    for f in files:
        t0 = time.perf_counter()
        smile.process_file(f)
        out[f] = time.perf_counter() - t0
    return out


def emofeat_work(files: list[str], store: Path) -> dict:
    """``engine.run`` into a fresh store: per input wall, extractor time and stages."""
    from emofeat import build_jobs, engine
    from emofeat.store import FeatureStore

    remove_store(store)
    engine._EXTRACTORS.clear()  # each run builds its extractor, like a fresh CLI process
    marks: dict[str, float] = {}
    last = [0.0]

    def on_result(res) -> None:
        now = time.perf_counter()
        marks[res.input] = now - last[0]
        last[0] = now

    t0 = time.perf_counter()
    jobs = build_jobs(["egemaps"], SETS, None)
    with FeatureStore(store, mode="a") as st:
        last[0] = time.perf_counter()
        summary = engine.run(
            st, [Path(f) for f in files], jobs, engine.RunOptions(), on_result=on_result
        )
    wall = time.perf_counter() - t0
    bad = [r for r in summary.results if r.status != "done"]
    if bad:
        raise RuntimeError(f"emofeat run failed: {[(r.input, r.message) for r in bad]}")
    return {
        "wall": wall,
        "marks": marks,
        "extract": {r.input: sum(o.seconds for o in r.outcomes) for r in summary.results},
        # steps the engine records (code before they were recorded has none)
        "stages": {r.input: dict(getattr(r, "stages", {})) for r in summary.results},
    }


def timed(cmd: list[str]) -> dict[str, float]:
    t0, c0 = time.perf_counter(), children_cpu()
    proc = subprocess.run(cmd, capture_output=True, text=True)
    if proc.returncode != 0:
        raise RuntimeError(f"{' '.join(cmd)} failed:\n{proc.stderr[-3000:]}")
    return {"wall": time.perf_counter() - t0, "cpu": children_cpu() - c0}


def med(xs) -> float:
    return statistics.median(list(xs))


def compare(before: Path, repeat: int, out: Path) -> None:
    """Before and after side by side: this script run with the code of the worktree
    ``before`` (on ``PYTHONPATH``) and with this checkout's, alternately, ``repeat`` times."""
    runs: dict[str, list[dict]] = {"before": [], "after": []}
    for rep in range(repeat):
        for side in ("before", "after"):
            env = dict(os.environ)
            if side == "before":
                env["PYTHONPATH"] = str(before.resolve())
            target = out / f"bench_short_clips_{side}.json"
            cmd = [sys.executable, __file__, "--repeat", "1", "--json-out", str(target)]
            proc = subprocess.run(cmd, env=env, capture_output=True, text=True)
            if proc.returncode != 0:
                raise RuntimeError(f"{side} run failed:\n{proc.stderr[-3000:]}")
            runs[side].append(json.loads(target.read_text()))
        print(f"repetition {rep + 1}/{repeat} done", file=sys.stderr)
    keys = [
        ("raw_per_file_ms", "raw openSMILE per file (ms, in process)"),
        ("emofeat_per_input_ms", "emofeat per input, commit to commit (ms)"),
        ("fixed_per_input_ms", "**emofeat fixed cost per input (ms)**"),
        ("raw_script_wall", "raw openSMILE script, 40 clips, fresh process (s)"),
        ("cli_wall", "`emofeat extract`, 40 clips, fresh process (s)"),
        ("ratio_wall", "**ratio CLI / raw script (wall)**"),
        ("ratio_cpu", "ratio CLI / raw script (CPU)"),
    ]
    first = runs["after"][0]
    before_commit = git("-C", str(before.resolve()), "rev-parse", "--short", "HEAD")
    for r in runs["before"]:
        r["commit"], r["dirty"] = before_commit, False
    lines = [
        f"Machine: {first['machine']['nproc']} CPUs, {first['machine']['cpu']}; before: "
        f"{runs['before'][0]['commit']}, after: {first['commit']}"
        f"{' (dirty)' if first['dirty'] else ''}; {first['inputs']} clips; medians of "
        f"{repeat} alternating runs of each.",
        "",
        "| measure | before | after |",
        "|---|---:|---:|",
    ]
    for key, label in keys:
        b = med(r[key] for r in runs["before"])
        a = med(r[key] for r in runs["after"])
        lines.append(f"| {label} | {b:.2f} | {a:.2f} |")
    steps = sorted({s for r in runs["after"] for s in r["stages_ms"]}, key=ORDER.index)
    for step in steps:
        a = med(r["stages_ms"].get(step, 0.0) for r in runs["after"])
        lines.append(f"| step: {step} (ms) | | {a:.2f} |")
    text = "\n".join(lines)
    print(text)
    (out / "bench_short_clips_compare.json").write_text(json.dumps(runs, indent=2))
    (out / "bench_short_clips_compare.md").write_text(text + "\n")


ORDER = ["probe", "identity", "open", "decode", "extract", "finalize", "masks", "describe"]
ORDER += ["commit"]


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    ap.add_argument("--repeat", type=int, default=5, help="repetitions (default 5)")
    ap.add_argument("--out", default=str(HERE / "out"), help="results folder")
    ap.add_argument(
        "--before",
        type=Path,
        help="a worktree of the code to compare with (git worktree add DIR COMMIT)",
    )
    ap.add_argument("--json-out", type=Path, help=argparse.SUPPRESS)
    ap.add_argument("--raw-worker", nargs="+", help=argparse.SUPPRESS)
    args = ap.parse_args()
    if args.raw_worker:
        raw_work(args.raw_worker)
        return
    if args.before:
        compare(args.before, args.repeat, Path(args.out))
        return
    out = Path(args.out)
    clip_dir = out / "short_clips"
    files = make_clips(clip_dir)
    store = out / "short_clips_store" / "feats.h5"
    store.parent.mkdir(parents=True, exist_ok=True)

    # warm-up: caches, imports, the openSMILE library
    raw_work(files[:5])
    emofeat_work(files[:5], store)

    raw_runs, emo_runs, cli, script = [], [], [], []
    cli_cmd = [emofeat_exe(), "extract", "-q", "--plugin", "egemaps"]
    cli_cmd += [x for s in SETS for x in ("--set", s)] + [str(clip_dir), "-o", str(store)]
    raw_cmd = [sys.executable, str(Path(__file__).resolve()), "--raw-worker", *files]
    for rep in range(args.repeat):
        raw_runs.append(raw_work(files))
        emo_runs.append(emofeat_work(files, store))
        remove_store(store)
        cli.append(timed(cli_cmd))
        script.append(timed(raw_cmd))
        print(f"repetition {rep + 1}/{args.repeat} done", file=sys.stderr)

    first = files[0]  # its wall time includes the run's set-up: left out of the medians
    raw_file = med(t for run in raw_runs for f, t in run.items() if f != first)
    per_input = med(t for run in emo_runs for f, t in run["marks"].items() if f != first)
    fixed = med(
        run["marks"][f] - run["extract"][f] for run in emo_runs for f in files if f != first
    )
    stage_names = sorted({s for run in emo_runs for st in run["stages"].values() for s in st})
    stages = {
        s: med(run["stages"][f].get(s, 0.0) for run in emo_runs for f in files if f != first)
        for s in stage_names
    }
    stages = {s: stages[s] for s in ORDER if s in stages}
    cli_wall, raw_wall = med(r["wall"] for r in cli), med(r["wall"] for r in script)
    cli_cpu, raw_cpu = med(r["cpu"] for r in cli), med(r["cpu"] for r in script)
    result = {
        "machine": host(memory=mem_total()),
        "commit": git("rev-parse", "--short", "HEAD"),
        "dirty": bool(git("status", "--porcelain", "--untracked-files=no")),
        "inputs": len(files),
        "repeat": args.repeat,
        "raw_per_file_ms": raw_file * 1e3,
        "emofeat_per_input_ms": per_input * 1e3,
        "fixed_per_input_ms": fixed * 1e3,
        "stages_ms": {s: v * 1e3 for s, v in stages.items()},
        "cli_wall": cli_wall,
        "raw_script_wall": raw_wall,
        "cli_cpu": cli_cpu,
        "raw_script_cpu": raw_cpu,
        "ratio_wall": cli_wall / raw_wall,
        "ratio_cpu": cli_cpu / raw_cpu,
        "runs": {"cli": cli, "raw_script": script},
    }
    md = [
        f"Machine: {result['machine']['nproc']} CPUs, {result['machine']['cpu']}; "
        f"commit {result['commit']}{' (dirty)' if result['dirty'] else ''}; "
        f"{len(files)} clips, median of {args.repeat} repetitions.",
        "",
        "| per input (in process, median) | ms |",
        "|---|---:|",
        f"| raw openSMILE `process_file` | {raw_file * 1e3:.1f} |",
        f"| emofeat, commit to commit | {per_input * 1e3:.1f} |",
        f"| emofeat fixed cost (commit to commit less the extractor) | {fixed * 1e3:.1f} |",
        *[f"| step: {s} | {v * 1e3:.2f} |" for s, v in stages.items()],
        "",
        "| 40 clips, fresh process | wall s | CPU s |",
        "|---|---:|---:|",
        f"| raw openSMILE script | {raw_wall:.2f} | {raw_cpu:.2f} |",
        f"| `emofeat extract` | {cli_wall:.2f} | {cli_cpu:.2f} |",
        f"| ratio (goal <= 1.15) | **{cli_wall / raw_wall:.2f}x** | {cli_cpu / raw_cpu:.2f}x |",
    ]
    text = "\n".join(md)
    print(text)
    out.mkdir(parents=True, exist_ok=True)
    if args.json_out:
        args.json_out.write_text(json.dumps(result))
        return
    (out / "bench_short_clips_latest.json").write_text(json.dumps(result, indent=2))
    (out / "bench_short_clips_latest.md").write_text(text + "\n")


if __name__ == "__main__":
    main()
