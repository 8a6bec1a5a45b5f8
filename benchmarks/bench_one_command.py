"""From an Aff-Wild2 root to a submission in one command: time and scores (issue 10).

On a synthetic Aff-Wild2-shaped set (``emofeat datasets synth``, 16 videos of the default
length unless told otherwise), each step runs as a fresh process, as a user would type it:

1. ``emofeat datasets check ROOT`` (probing only: what a user runs before extracting);
2. ``emofeat recipe run abaw_va --data ROOT`` (plan, extraction into the named store, training);
3. ``emofeat recipe run abaw_expr --data ROOT`` (reuses that store: extracts only the
   EXPR tracks the VA run did not need);
4. ``emofeat datasets check ROOT --features STORE`` (the tracks joined to the stored items).

Wall time of each step, the extraction share (from run.log), the best validation score and
the machine go to benchmarks/out/one_command.json and a Markdown summary on stdout, which
docs/benchmarks.md quotes.

    python benchmarks/bench_one_command.py [--videos 16] [--duration 12] [--out DIR]
"""

from __future__ import annotations

import argparse
import json
import os
import platform
import re
import shutil
import subprocess
import sys
import time
from datetime import datetime
from pathlib import Path

HERE = Path(__file__).resolve().parent


def emofeat(*args: str) -> tuple[float, subprocess.CompletedProcess]:
    exe = Path(sys.executable).with_name("emofeat")
    cmd = [str(exe) if exe.exists() else "emofeat", *args]
    t0 = time.perf_counter()
    res = subprocess.run(cmd, capture_output=True, text=True, env={**os.environ, "COLUMNS": "200"})
    return time.perf_counter() - t0, res


def _extraction_seconds(log: str) -> float:
    return sum(float(s) for s in re.findall(r"failed in ([0-9.]+) s", log))


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawTextHelpFormatter)
    ap.add_argument("--videos", type=int, default=16)
    ap.add_argument("--duration", type=float, default=12.0)
    ap.add_argument("--out", type=Path, default=HERE / "out" / "one_command")
    args = ap.parse_args()
    if args.out.exists():
        shutil.rmtree(args.out)
    args.out.mkdir(parents=True)
    data, runs = args.out / "aw2", args.out / "runs"
    synth = ["datasets", "synth", str(data), "--videos", str(args.videos)]
    seconds, res = emofeat(*synth, "--duration", str(args.duration), "-q")
    assert res.returncode == 0, res.stderr
    steps: dict[str, dict] = {"synth": {"seconds": seconds}}
    seconds, res = emofeat("datasets", "check", str(data))
    steps["check"] = {"seconds": seconds, "exit": res.returncode}
    for recipe in ("abaw_va", "abaw_expr"):
        seconds, res = emofeat("recipe", "run", recipe, "--data", str(data), "-o", str(runs), "-q")
        assert res.returncode == 0, res.stderr[-3000:]
        (run_dir,) = [p for p in runs.iterdir() if p.name.startswith(recipe)]
        metrics = json.loads((run_dir / "metrics.json").read_text())
        log = (run_dir / "run.log").read_text()
        steps[recipe] = {
            "seconds": seconds,
            "extraction_seconds": _extraction_seconds(log),
            "best": metrics["best"],
            "best_score": metrics["best_score"],
            "plan": [
                line.split(" INFO ", 1)[1]
                for line in log.splitlines()
                if "  video:" in line or "  audio:" in line or "nothing to extract" in line
            ],  # fmt: skip
            "store": metrics["stores"][0],
        }
    seconds, res = emofeat("datasets", "check", str(data), "--features", steps["abaw_va"]["store"])
    steps["check_with_store"] = {"seconds": seconds, "exit": res.returncode}
    result = {
        "stamp": datetime.now().strftime("%Y%m%dT%H%M%S"),
        "videos": args.videos,
        "duration": args.duration,
        "machine": {
            "cpus": os.cpu_count(),
            "processor": platform.processor() or platform.machine(),
            "python": platform.python_version(),
            "load": os.getloadavg(),
        },
        "steps": steps,
    }
    (HERE / "out").mkdir(exist_ok=True)
    (HERE / "out" / "one_command.json").write_text(json.dumps(result, indent=2))
    va, ex = steps["abaw_va"], steps["abaw_expr"]
    print(f"# One command on the synthetic set ({result['stamp']})\n")
    print(f"{args.videos} videos of about {args.duration:g} s; {os.cpu_count()} CPUs; "
          f"load average {result['machine']['load'][0]:.1f}\n")  # fmt: skip
    print("| step | wall s | extraction s | best (validation) |")
    print("|---|---:|---:|---|")
    print(f"| `datasets check ROOT` | {steps['check']['seconds']:.1f} | - | - |")
    for name, s in (("abaw_va", va), ("abaw_expr", ex)):
        score = f"{s['best']} {s['best_score']:.3f}"
        print(
            f"| `recipe run {name} --data ROOT` | {s['seconds']:.1f} | "
            f"{s['extraction_seconds']:.1f} | {score} |"
        )
    print(f"| `datasets check ROOT --features STORE` | {steps['check_with_store']['seconds']:.1f}"
          " | - | - |")  # fmt: skip
    print(f"\nVA then EXPR: {va['seconds'] + ex['seconds']:.0f} s in all.")
    for name, s in (("abaw_va", va), ("abaw_expr", ex)):
        print(f"\nplan of {name}:")
        for line in s["plan"]:
            print(f"    {line}")


if __name__ == "__main__":
    main()
