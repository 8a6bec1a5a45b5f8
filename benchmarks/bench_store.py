#!/usr/bin/env python
"""Benchmark: the feature store at corpus scale (thousands of short inputs).

Run from the repository root::

    .venv/bin/python benchmarks/bench_store.py                      # 1,000 inputs
    .venv/bin/python benchmarks/bench_store.py --sizes 1000,20000   # both corpus sizes
    .venv/bin/python benchmarks/bench_store.py --quick              # 200 inputs, smoke run

What it measures, for each corpus size N, in one process on one machine (one compute
thread):

1. **Commit cost per input as the store grows.** N generated WAV files of ``--seconds``
   (0.5 s; ``emofeat.samples.write_audio`` of a speech-like signal whose pitch and noise
   seed vary per file, made once and cached under benchmarks/out/store/inputs-N-Ss/) are
   extracted with ``emofeat.extract`` (in process) in slices of ``--slice`` inputs (default
   N/20, at least 100: 100 at 1,000 inputs, 1,000 at 20,000), each call adding its slice
   to the same growing store. Per slice, from the ``on_result``
   callback (called right after each input's commit) and ``InputResult.seconds`` (the
   input's own decode + extract time):

   - ``ms/input`` wall time of the call per input (planning, run-log entries, commits),
     and this process's CPU time per input (less sensitive to a busy machine);
   - ``outside`` the median per-input time between two consecutive commits that is not the
     input's own processing: the commit plus the engine's bookkeeping around it. This is
     the commit cost per input the issue asks to stay flat; nothing inside emofeat/ is
     timed directly;
   - ``setup`` seconds from the call to the first input's start (planning every input of
     the slice against the store; the extractor's model is loaded before the first slice);
   - ``tail`` seconds from the last input's commit to the call's return (the run's end
     entry and, once the store holds ``compact_at`` small items, compaction into shards).

2. **Size.** The index file (``feats.h5``) bytes per input, and the store's bytes on disk
   (``feats.h5`` plus everything under ``feats.h5.d/``, folders included, as ``du``:
   ``st_blocks * 512``; and apparent size, ``st_size``) per byte of float32 feature data
   it holds (the ``data`` arrays of every stream of every item, read back with
   ``FeatureStore.read``; times and masks are reported apart, frame-aligned views are not
   counted). Goal: at most 2x.

3. **Reading.** ``open_store`` + ``.items()`` (first call and median of 5);
   ``emofeat inspect STORE`` (a subprocess, output piped and discarded) against
   ``emofeat --version`` (start-up alone), medians of ``--repeat`` interleaved rounds
   (goals: under 1 s; inspect at most 2x ``--version``); reading everything back
   (``to_frame(extractor, stream)`` for every stream) against the extraction's wall time
   (goal: at most 2 %).

The extractor is ``vad`` by default (Silero VAD, 2 streams of 1 dim at 31.25 Hz): the
cheapest real extractor installed, measured on 0.5 s inputs at one thread: about 11 ms per
input of processing against 21 ms for ``egemaps`` with ``egemaps.functionals=false`` (25
LLDs at 100 Hz), the next cheapest; the face, PDEM and ComParE extractors cost far more.
Its items are tiny (128 bytes of data per 0.5 s input), so the size ratio measures the
store's per-item overhead; ``--extractor egemaps`` gives 4.6 kB of data per input.

Results go to benchmarks/out/store-N.json and are printed as markdown tables; the store is
left in benchmarks/out/store/run-N/ (``--clean`` removes it).
"""

from __future__ import annotations

import argparse
import json
import os
import statistics
import subprocess
import sys
import time
from pathlib import Path
from typing import Any

HERE = Path(__file__).resolve().parent
sys.path.insert(0, str(HERE))

from _common import code_hash, emofeat_exe, git, host, mem_total, remove_store  # noqa: E402

STORE_CODE = ("emofeat/store.py", "emofeat/itemfile.py", "emofeat/engine.py")


def log(*a: object) -> None:
    print(*a, file=sys.stderr, flush=True)


def median(xs: list[float]) -> float:
    return float(statistics.median(xs)) if xs else float("nan")


def make_inputs(folder: Path, n: int, seconds: float) -> list[Path]:
    """``n`` distinct WAV files of ``seconds`` (made once; reused while complete)."""
    files = [folder / f"utt{k:06d}.wav" for k in range(n)]
    done = folder / ".complete"
    if done.exists() and all(f.exists() for f in files):
        return files
    from emofeat.samples import speech_like, write_audio

    folder.mkdir(parents=True, exist_ok=True)
    t0 = time.perf_counter()
    for k, f in enumerate(files):
        if not f.exists():
            signal = speech_like(seconds, 16000, f0=90.0 + (k * 7) % 160, seed=k)
            write_audio(f, duration=seconds, signal=signal)
    done.write_text(f"{n} x {seconds} s\n")
    log(f"  made {n} inputs in {time.perf_counter() - t0:.1f} s")
    return files


def extract_slices(
    files: list[Path], store: Path, extractor: str, sets: list[str], per_slice: int
) -> tuple[list[dict[str, Any]], float]:
    """Extract ``files`` into ``store`` one slice per ``emofeat.extract`` call."""
    import emofeat

    rows = []
    total = 0.0
    for start in range(0, len(files), per_slice):
        chunk = files[start : start + per_slice]
        marks: list[tuple[float, float, str]] = []

        def on_result(res: Any, marks: list = marks) -> None:
            marks.append((time.perf_counter(), res.seconds, res.status))

        t0, c0 = time.perf_counter(), time.process_time()
        summary = emofeat.extract(
            [str(f) for f in chunk], extractor, store, sets, threads=1, on_result=on_result
        )
        wall, cpu = time.perf_counter() - t0, time.process_time() - c0
        total += wall
        bad = [r.message for r in summary.results if r.status != "done"]
        if bad or summary.problems:
            raise SystemExit(f"extraction failed: {bad[:3]} {summary.problems[:3]}")
        outside = [1000 * (b[0] - a[0] - b[1]) for a, b in zip(marks, marks[1:], strict=False)]
        row = {
            "inputs_before": start,
            "inputs_after": start + len(chunk),
            "wall_s": wall,
            "ms_per_input": 1000 * wall / len(chunk),
            "cpu_ms_per_input": 1000 * cpu / len(chunk),
            "ms_outside_median": median(outside),
            "ms_outside_mean": sum(outside) / len(outside) if outside else float("nan"),
            "ms_processing_median": 1000 * median([m[1] for m in marks]),
            "setup_s": marks[0][0] - t0 - marks[0][1] if marks else float("nan"),
            "tail_s": t0 + wall - marks[-1][0] if marks else float("nan"),
        }
        rows.append(row)
        log(
            f"  {row['inputs_after']:6d} in store: {row['ms_per_input']:6.1f} ms/input, "
            f"outside processing {row['ms_outside_median']:5.1f} ms (median), "
            f"setup {row['setup_s']:.2f} s"
        )
    return rows, total


def disk_usage(store: Path) -> dict[str, int]:
    """``du``-like: blocks and apparent bytes of the index and its folder (folders too)."""
    blocks = apparent = files = dirs = 0
    paths = [store]
    folder = store.with_name(store.name + ".d")
    if folder.exists():
        paths.append(folder)
        for root, dnames, fnames in os.walk(folder):
            paths += [Path(root) / d for d in dnames] + [Path(root) / f for f in fnames]
    for p in paths:
        st = p.lstat()
        blocks += st.st_blocks * 512
        apparent += st.st_size
        if p.is_dir():
            dirs += 1
        else:
            files += 1
    return {"disk_bytes": blocks, "apparent_bytes": apparent, "files": files, "dirs": dirs}


def data_bytes(store: Path) -> dict[str, Any]:
    """Bytes of the float32 data arrays held (and of times + masks), read item by item."""
    import emofeat

    t0 = time.perf_counter()
    s = emofeat.open_store(store)
    data = other = items = 0
    streams: set[tuple[str, str]] = set()
    for key in s.items():
        for ex in s.extractors(key):
            items += 1
            for name in s.streams(key, ex):
                sd = s.read(key, ex, name)
                data += sd.data.nbytes
                other += sd.times.nbytes + sd.mask.nbytes
                streams.add((ex, name))
    return {
        "data_bytes": data,
        "times_mask_bytes": other,
        "items": items,
        "streams": sorted(streams),
        "read_each_item_s": time.perf_counter() - t0,
    }


def read_back(store: Path, streams: list[tuple[str, str]]) -> float:
    """Seconds to read everything back as DataFrames, one ``to_frame`` per stream."""
    import emofeat

    t0 = time.perf_counter()
    s = emofeat.open_store(store)
    for ex, name in streams:
        s.to_frame(ex, name)
    return time.perf_counter() - t0


def open_items(store: Path, rounds: int = 5) -> list[float]:
    import emofeat

    out = []
    for _ in range(rounds):
        t0 = time.perf_counter()
        emofeat.open_store(store).items()
        out.append(time.perf_counter() - t0)
    return out


def cli_seconds(*args: str) -> float:
    t0 = time.perf_counter()
    proc = subprocess.run([emofeat_exe(), *args], capture_output=True, text=True)
    seconds = time.perf_counter() - t0
    if proc.returncode != 0:
        raise SystemExit(f"emofeat {' '.join(args)} failed: {proc.stderr[-2000:]}")
    return seconds


def bench_size(n: int, args: argparse.Namespace, sets: list[str]) -> dict[str, Any]:
    import emofeat

    out_dir = Path(args.out)
    files = make_inputs(out_dir / "store" / f"inputs-{n}-{args.seconds:g}s", n, args.seconds)
    work = out_dir / "store" / f"run-{n}"
    work.mkdir(parents=True, exist_ok=True)
    store = work / "feats.h5"
    remove_store(store)
    # the extractor's model and the imports, outside the timed calls
    warm = work / "warm.h5"
    remove_store(warm)
    emofeat.extract([str(files[0])], args.extractor, warm, sets, threads=1)
    remove_store(warm)

    per_slice = args.slice or max(100, n // 20)
    log(f"{n} inputs, {args.extractor}, slices of {per_slice} ...")
    rows, extraction_s = extract_slices(files, store, args.extractor, sets, per_slice)

    log("size, reading ...")
    disk = disk_usage(store)
    index_bytes = store.stat().st_size
    held = data_bytes(store)
    streams = [tuple(x) for x in held["streams"]]
    read_s = read_back(store, streams)
    opens = open_items(store)
    inspect, version = [], []
    for _ in range(args.repeat):  # interleaved rounds
        version.append(cli_seconds("--version"))
        inspect.append(cli_seconds("inspect", str(store)))
    first, last = rows[0], rows[-1]
    result = {
        "inputs": n,
        "seconds_per_input": args.seconds,
        "extractor": args.extractor,
        "settings": sets,
        "slice": per_slice,
        "curve": rows,
        "extraction_s": extraction_s,
        "outside_ms_first_slice": first["ms_outside_median"],
        "outside_ms_last_slice": last["ms_outside_median"],
        "outside_growth": last["ms_outside_median"] / first["ms_outside_median"],
        "index_bytes": index_bytes,
        "index_bytes_per_input": index_bytes / n,
        **disk,
        **{k: v for k, v in held.items() if k != "streams"},
        "streams": [list(s) for s in streams],
        "disk_per_data_byte": disk["disk_bytes"] / held["data_bytes"],
        "apparent_per_data_byte": disk["apparent_bytes"] / held["data_bytes"],
        "disk_per_data_times_mask_byte": disk["disk_bytes"]
        / (held["data_bytes"] + held["times_mask_bytes"]),
        "read_back_s": read_s,
        "read_back_share": read_s / extraction_s,
        "open_items_first_s": opens[0],
        "open_items_median_s": median(opens),
        "inspect_s": median(inspect),
        "version_s": median(version),
        "inspect_per_version": median(inspect) / median(version),
        "all_inspect_s": inspect,
        "all_version_s": version,
        "all_open_items_s": opens,
    }
    if args.clean:
        remove_store(store)
    return result


def report(r: dict[str, Any]) -> str:
    """Markdown tables of one size's results."""
    n = r["inputs"]
    lines = [
        f"#### {n:,} inputs of {r['seconds_per_input']:g} s, `{r['extractor']}` "
        f"{' '.join('--set ' + s for s in r['settings'])}".rstrip(),
        "",
        "| inputs in store (after slice) | ms per input (call) | CPU ms per input (call) "
        "| ms outside processing (median) | processing ms (median) | setup s | tail s |",
        "|---:|---:|---:|---:|---:|---:|---:|",
    ]
    lines += [
        f"| {c['inputs_after']:,} | {c['ms_per_input']:.1f} | {c['cpu_ms_per_input']:.1f} | "
        f"{c['ms_outside_median']:.1f} | "
        f"{c['ms_processing_median']:.1f} | {c['setup_s']:.2f} | {c['tail_s']:.2f} |"
        for c in r["curve"]
    ]
    flat = r["outside_growth"]
    lines += [
        "",
        "| measure | value | goal |",
        "|---|---:|---|",
        f"| extraction, all slices | {r['extraction_s']:.1f} s | - |",
        f"| commit cost per input (outside processing), first / last slice | "
        f"{r['outside_ms_first_slice']:.1f} / {r['outside_ms_last_slice']:.1f} ms "
        f"({flat:.2f}x) | flat |",
        f"| index `feats.h5` | {r['index_bytes'] / 1024:,.0f} KiB, "
        f"{r['index_bytes_per_input']:,.0f} B per input | reported |",
        f"| store on disk (du) / apparent | {r['disk_bytes'] / 2**20:,.1f} / "
        f"{r['apparent_bytes'] / 2**20:,.1f} MiB, {r['files']:,} files, {r['dirs']:,} "
        "folders | - |",
        f"| float32 data held ({r['items']:,} items; times + masks) | "
        f"{r['data_bytes'] / 1024:,.1f} KiB ({r['times_mask_bytes'] / 1024:,.1f} KiB) | - |",
        f"| bytes on disk per byte of data (du / apparent) | {r['disk_per_data_byte']:,.1f}x "
        f"/ {r['apparent_per_data_byte']:,.1f}x | <= 2x |",
        f"| `open_store` + `.items()`, first / median of 5 | {r['open_items_first_s']:.3f} / "
        f"{r['open_items_median_s']:.3f} s | < 1 s |",
        f"| `emofeat inspect` / `emofeat --version` (medians of "
        f"{len(r['all_inspect_s'])}) | {r['inspect_s']:.2f} / {r['version_s']:.2f} s "
        f"({r['inspect_per_version']:.2f}x) | < 1 s; <= 2x |",
        f"| read everything back (`to_frame` per stream) / extraction | "
        f"{r['read_back_s']:.2f} s / {r['extraction_s']:.1f} s "
        f"({100 * r['read_back_share']:.1f} %) | <= 2 % |",
        f"| `read()` of every item, one by one | {r['read_each_item_s']:.2f} s | - |",
    ]
    return "\n".join(lines) + "\n"


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    ap.add_argument("--quick", action="store_true", help="200 inputs (smoke run)")
    ap.add_argument("--inputs", type=int, default=1000, help="corpus size (default 1000)")
    ap.add_argument("--sizes", default="", help="several corpus sizes, e.g. 1000,20000")
    ap.add_argument("--seconds", type=float, default=0.5, help="seconds per input")
    ap.add_argument("--extractor", default="vad", help="extractor to run (default vad)")
    ap.add_argument(
        "--set", dest="sets", action="append", default=None, metavar="NAME.KEY=VALUE",
        help="extractor setting (default for egemaps: egemaps.functionals=false)",
    )  # fmt: skip
    ap.add_argument("--slice", type=int, default=0, help="inputs per extract call")
    ap.add_argument("--repeat", type=int, default=3, help="rounds of inspect / --version")
    ap.add_argument("--clean", action="store_true", help="remove the store afterwards")
    ap.add_argument("--out", default=str(HERE / "out"), help="results folder")
    args = ap.parse_args()
    if args.sets is None:
        args.sets = ["egemaps.functionals=false"] if args.extractor == "egemaps" else []
    if args.quick:
        sizes = [200]
    elif args.sizes:
        sizes = [int(x) for x in args.sizes.split(",") if x.strip()]
    else:
        sizes = [args.inputs]
    os.environ.setdefault("OMP_NUM_THREADS", "1")
    out_dir = Path(args.out)
    out_dir.mkdir(parents=True, exist_ok=True)
    machine = host(memory=mem_total(), load_before=os.getloadavg())
    code = {
        "commit": git("rev-parse", "--short", "HEAD"),
        "store_code_hash": code_hash(*STORE_CODE),
        "store_code_dirty": git("status", "--porcelain", "--", *STORE_CODE),
        "emofeat_code_hash": code_hash("emofeat/**/*.py"),
        "emofeat_dirty": git("status", "--porcelain", "--", "emofeat"),
    }
    for n in sizes:
        result = {
            "host": machine,
            "code": code,
            "quick": args.quick,
            **bench_size(n, args, args.sets),
        }
        result["host"] = {**machine, "load_after": os.getloadavg()}
        result["markdown"] = report(result)
        suffix = f"{n}" if args.extractor == "vad" else f"{n}-{args.extractor}"
        (out_dir / f"store-{suffix}.json").write_text(json.dumps(result, indent=1))
        print(result["markdown"])
    print(
        f"Machine: {machine['nproc']} CPUs ({machine['cpu']}), {machine['memory']}, "
        f"{machine['platform']}, Python {machine['python']}; load average before "
        f"{', '.join(f'{x:.2f}' for x in machine['load_before'])}; code {code['commit']} "
        f"(store code {code['store_code_hash']}{', modified' if code['store_code_dirty'] else ''}; "
        f"emofeat/ {code['emofeat_code_hash']}{', modified' if code['emofeat_dirty'] else ''})"
    )


if __name__ == "__main__":
    main()
