"""What integrity checking costs: ``emofeat verify`` per GB, and the skip decision of a rerun
with the cheap check (always) against ``--verify`` (whole files hashed).

Builds a store of real openSMILE ComParE items (large: ~0.45 MB per second of audio) from
generated speech-like WAVs, then measures, side by side in one run:

* ``verify``: the store's items hashed in full (``FeatureStore.verify``), with the page cache
  warm and, as root, cold (``/proc/sys/vm/drop_caches``): seconds per GB;
* a rerun where every item is unchanged, ``emofeat extract`` as a user runs it, plain and with
  ``--verify`` (fresh processes, median of 3): the added seconds per item and per GB.

Run: ``python benchmarks/bench_integrity.py [--inputs 24] [--seconds 10]``. Results: a table
and ``benchmarks/out/integrity.json``.
"""

from __future__ import annotations

import argparse
import json
import os
import statistics
import subprocess
import time
from pathlib import Path

from _common import ROOT, emofeat_exe, host, mem_total

import emofeat
from emofeat.samples import write_audio

OUT = ROOT / "benchmarks" / "out"


def _drop_caches() -> bool:
    try:
        os.sync()
        Path("/proc/sys/vm/drop_caches").write_text("3\n")
        return True
    except OSError:
        return False


def _timed(cmd: list[str]) -> float:
    t = time.perf_counter()
    subprocess.run(cmd, check=True, capture_output=True)
    return time.perf_counter() - t


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    ap.add_argument("--inputs", type=int, default=24)
    ap.add_argument("--seconds", type=float, default=10.0, help="audio per input")
    ap.add_argument("--repeat", type=int, default=3)
    args = ap.parse_args()
    work = OUT / "integrity"
    work.mkdir(parents=True, exist_ok=True)
    wavs = []
    for i in range(args.inputs):
        p = work / f"in{i:03d}.wav"
        if not p.exists():
            write_audio(p, duration=args.seconds, f0=100 + 5 * i)
        wavs.append(str(p))
    store_path = work / "feats.h5"
    cmd = [emofeat_exe(), "extract", "-q", "-p", "compare", "-o", str(store_path), *wavs]
    subprocess.run(cmd, check=True, capture_output=True)
    store = emofeat.open_store(store_path)
    keys = store.items()
    n_items = sum(len(store.extractors(k)) for k in keys)
    total = store.stored_bytes()
    gb = total / 1e9

    def verify_seconds() -> float:
        t = time.perf_counter()
        problems = emofeat.open_store(store_path).verify()
        assert not problems, problems
        return time.perf_counter() - t

    warm = statistics.median(verify_seconds() for _ in range(args.repeat))
    cold = None
    if _drop_caches():
        cold = verify_seconds()
    plain = [_timed(cmd) for _ in range(args.repeat)]
    full = [_timed([*cmd, "--verify"]) for _ in range(args.repeat)]
    res = {
        "host": host(memory=mem_total()),
        "items": n_items,
        "bytes": total,
        "verify_warm_s": warm,
        "verify_warm_s_per_gb": warm / gb,
        "verify_cold_s": cold,
        "verify_cold_s_per_gb": cold / gb if cold else None,
        "rerun_plain_s": statistics.median(plain),
        "rerun_verify_s": statistics.median(full),
    }
    extra = res["rerun_verify_s"] - res["rerun_plain_s"]
    res["rerun_verify_extra_ms_per_item"] = 1000 * extra / n_items
    res["rerun_verify_extra_s_per_gb"] = extra / gb
    (OUT / "integrity.json").write_text(json.dumps(res, indent=2))
    print(
        f"{n_items} items, {total / 1e6:.0f} MB ({res['host']['cpu']}, {res['host']['nproc']} CPUs)"
    )
    print(f"verify, page cache warm: {warm:.2f} s = {warm / gb:.1f} s/GB")
    if cold:
        print(f"verify, page cache cold: {cold:.2f} s = {cold / gb:.1f} s/GB")
    print(
        f"rerun, all unchanged: plain {res['rerun_plain_s']:.2f} s, --verify "
        f"{res['rerun_verify_s']:.2f} s (+{res['rerun_verify_extra_ms_per_item']:.1f} ms/item, "
        f"+{res['rerun_verify_extra_s_per_gb']:.1f} s/GB)"
    )


if __name__ == "__main__":
    main()
