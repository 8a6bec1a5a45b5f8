#!/usr/bin/env python
"""Benchmark: cost of FeatureStore.commit as the store grows (one commit per input).

The engine commits each finished input at once: ``FeatureStore.commit`` moves the item
file into place and rewrites the index atomically (copy the whole index, add the links and
log entries, fsync, rename). This script commits ``--inputs`` synthetic inputs (one empty
staged item and the two run-log entries the engine writes per input x extractor) into a
fresh store and reports, every ``--every`` commits, the index size and the wall / CPU time
per commit. No feature extraction: only the store's bookkeeping is measured.

    .venv/bin/python benchmarks/bench_store_commit.py            # 4000 inputs (~3 min)
    .venv/bin/python benchmarks/bench_store_commit.py --quick    # 1000 inputs
"""

from __future__ import annotations

import argparse
import json
import os
import shutil
import sys
import time
from pathlib import Path

HERE = Path(__file__).resolve().parent


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    ap.add_argument("--quick", action="store_true", help="1000 inputs")
    ap.add_argument("--inputs", type=int, default=None, help="inputs to commit (default 4000)")
    ap.add_argument("--every", type=int, default=500, help="report every N commits")
    ap.add_argument("--out", default=str(HERE / "out"), help="results folder")
    args = ap.parse_args()
    n = args.inputs or (1000 if args.quick else 4000)

    from emofeat.store import FeatureStore

    out_dir = Path(args.out)
    tmp = out_dir / "tmp_commit"
    shutil.rmtree(tmp, ignore_errors=True)
    tmp.mkdir(parents=True)
    store = FeatureStore(tmp / "feats.h5", mode="a")
    staging = store.dir / ".staging"
    rows = []
    t_w, t_c = time.perf_counter(), time.process_time()
    for i in range(1, n + 1):
        key = f"clip_{i:06d}"
        staged = staging / f"{key}.egemaps.h5"
        staged.write_bytes(b"")
        base = {"run": "r", "time": "2026-01-01T00:00:00+0000", "key": key}
        path = f"/data/corpus/speaker_{i % 97:03d}/{key}.wav"
        log = [
            {**base, "event": "item", "input": path, "extractor": "egemaps", "status": "done",
             "message": "", "seconds": 0.1234},
            {**base, "event": "input", "input": path, "extractor": "", "status": "done",
             "message": "", "warnings": [], "seconds": 0.1301},
        ]  # fmt: skip
        store.commit([(key, "egemaps", staged)], log)
        if i % args.every == 0 or i == n:
            w, c = time.perf_counter(), time.process_time()
            k = args.every if i % args.every == 0 else i % args.every
            rows.append(
                {
                    "inputs": i,
                    "index_kib": store.path.stat().st_size / 1024,
                    "ms_per_commit_wall": 1000 * (w - t_w) / k,
                    "ms_per_commit_cpu": 1000 * (c - t_c) / k,
                }
            )
            r = rows[-1]
            print(
                f"{i:6d} inputs: index {r['index_kib']:8.0f} KiB, "
                f"{r['ms_per_commit_wall']:6.1f} ms/commit wall, "
                f"{r['ms_per_commit_cpu']:5.1f} ms CPU",
                file=sys.stderr,
                flush=True,
            )
            t_w, t_c = time.perf_counter(), time.process_time()
    store.close()
    shutil.rmtree(tmp, ignore_errors=True)
    per_input_kib = rows[-1]["index_kib"] / rows[-1]["inputs"]
    lines = [
        "## FeatureStore.commit cost vs store size",
        "",
        f"Machine: {os.cpu_count()} CPUs; load average at end "
        f"{', '.join(f'{x:.2f}' for x in os.getloadavg())}. One commit per input "
        f"(1 item + 2 log entries); the index grows by {per_input_kib:.1f} KiB per input.",
        "",
        "| inputs in store | index KiB | ms per commit (wall) | ms per commit (CPU) |",
        "|---:|---:|---:|---:|",
    ]
    lines += [
        f"| {r['inputs']} | {r['index_kib']:.0f} | {r['ms_per_commit_wall']:.1f} | "
        f"{r['ms_per_commit_cpu']:.1f} |"
        for r in rows
    ]
    report = "\n".join(lines)
    stamp = time.strftime("%Y%m%dT%H%M%S")
    res = {"benchmark": "bench_store_commit", "inputs": n, "rows": rows, "markdown": report}
    for name in (f"bench_store_commit_{stamp}", "bench_store_commit_latest"):
        (out_dir / f"{name}.json").write_text(json.dumps(res, indent=1))
        (out_dir / f"{name}.md").write_text(report + "\n")
    print(report)


if __name__ == "__main__":
    main()
