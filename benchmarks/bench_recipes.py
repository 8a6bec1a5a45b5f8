"""Does the recipes' data pipeline keep up with the model? (issue 5 acceptance)

Aff-Wild2-scale synthetic features: about 1.1M video frames at 30 fps in tracks of a few
thousand frames, a 256-d video stream and a 1024-d audio stream, resampled to 5 fps as the
recipes do. One training epoch (AdamW steps of the paper's models) is timed twice in the
same process:

* ``pipeline``: batches drawn by the recipes' :class:`emofeat_recipes.data.EpochLoader`
  (seeded shuffle, :class:`~emofeat_recipes.data.WindowSet` gathering windows from the
  per-track arrays), which is what ``emofeat recipe run`` does every epoch;
* ``in memory``: exactly the same batches, materialised beforehand, so the epoch is model
  compute only.

Contenders alternate, ``--repeat`` epochs each; the ratio of the minima in-memory / pipeline
is the share of the epoch spent in the model (target >= 0.9). A third figure times the
loader alone over one epoch.

    python benchmarks/bench_recipes.py [--frames 1100000] [--threads 2] [--model fusion]
                                       [--repeat 3]

Results go to benchmarks/out/recipes.json and docs/benchmarks.md quotes them.
"""

from __future__ import annotations

import argparse
import json
import platform
import time
from pathlib import Path

import numpy as np
import torch

from emofeat_recipes.data import EpochLoader, TrackData, WindowSet
from emofeat_recipes.datasets.affwild2 import Track
from emofeat_recipes.losses import ccc_loss
from emofeat_recipes.models import build_model
from emofeat_recipes.windows import resample_indices


def make_tracks(frames: int, fps: float, target: float, seed: int) -> list[TrackData]:
    rng = np.random.default_rng(seed)
    tracks, left = [], frames
    k = 0
    while left > 0:
        n = int(min(left, rng.integers(1500, 9000)))  # Aff-Wild2 tracks: 1-5 minutes
        left -= n
        idx = resample_indices(n, fps, target)
        m = len(idx)
        x = {
            "video": rng.standard_normal((m, 256), dtype=np.float32),
            "audio": rng.standard_normal((m, 1024), dtype=np.float32),
        }
        mask = {"video": rng.random(m) > 0.05, "audio": np.ones(m, bool)}
        y = np.tanh(rng.standard_normal((m, 2))).astype(np.float32)
        td = TrackData(
            Track(f"t{k}", "VA", "train", None, None, None, ""), n, fps, idx, x, mask, y=y
        )
        td.y_valid = rng.random(m) > 0.02
        tracks.append(td)
        k += 1
    return tracks


def epoch(model, opt, batches, streams) -> float:
    t0 = time.perf_counter()
    model.train()
    for b in batches:
        xs = {m: b[f"x_{m}"] for m in streams}
        mask = b["frame_valid"]
        out = model(xs, mask)
        ok = b["y_valid"].reshape(-1)
        loss = ccc_loss(out.reshape(-1, 2)[ok], b["y"].reshape(-1, 2)[ok])
        opt.zero_grad(set_to_none=True)
        loss.backward()
        opt.step()
    return time.perf_counter() - t0


def main() -> None:
    ap = argparse.ArgumentParser()
    ap.add_argument("--frames", type=int, default=1_100_000)
    ap.add_argument("--threads", type=int, default=2)
    ap.add_argument("--model", choices=("transformer", "fusion"), default="fusion")
    ap.add_argument("--batch", type=int, default=32)
    ap.add_argument("--repeat", type=int, default=3, help="epochs per contender (min taken)")
    ap.add_argument("--out", default="benchmarks/out/recipes.json")
    args = ap.parse_args()
    torch.set_num_threads(args.threads)
    torch.manual_seed(0)

    t0 = time.perf_counter()
    tracks = make_tracks(args.frames, 30.0, 5.0, 0)
    t_make = time.perf_counter() - t0
    t0 = time.perf_counter()
    ws = WindowSet(tracks, 30, 15, "VA")
    t_index = time.perf_counter() - t0
    streams = ["video", "audio"]
    if args.model == "fusion":
        spec = {"type": "fusion", "audio": "audio", "d": 256, "heads": 8, "rounds": 2}
    else:
        spec = {"type": "transformer", "layers": 3, "d_model": 256, "heads": 8, "ff": 256}
    model = build_model(spec, {"video": 256, "audio": 1024}, 2, "tanh")
    opt = torch.optim.AdamW(model.parameters(), lr=1e-4, weight_decay=1e-4)

    def pipeline():
        # the recipes' own loader: a fresh one per epoch with the same seed gives the same
        # batches as the materialised list below
        return iter(EpochLoader(ws, args.batch, seed=1))

    t0 = time.perf_counter()
    in_memory = list(pipeline())
    t_materialise = time.perf_counter() - t0

    # warm-up (allocator, kernels), then alternate to spread machine noise over both
    epoch(model, opt, in_memory[:5], streams)
    times = {"pipeline": [], "in_memory": []}
    cpu = {"pipeline": [], "in_memory": []}
    for _ in range(args.repeat):
        for name in ("pipeline", "in_memory"):
            c0 = time.process_time()
            w = epoch(model, opt, pipeline() if name == "pipeline" else in_memory, streams)
            times[name].append(w)
            cpu[name].append(time.process_time() - c0)
    gather_only = time.perf_counter()
    for _ in pipeline():
        pass
    gather_only = time.perf_counter() - gather_only
    res = {
        "machine": f"{platform.processor() or platform.machine()}, torch threads {args.threads}",
        "frames_30fps": args.frames,
        "tracks": len(tracks),
        "frames_5fps": int(sum(len(t.index) for t in tracks)),
        "windows": len(ws),
        "steps_per_epoch": len(in_memory),
        "repeats": args.repeat,
        "model": args.model,
        "make_features_s": round(t_make, 2),
        "window_index_s": round(t_index, 3),
        "materialise_all_batches_s": round(t_materialise, 2),
        "epoch_pipeline_s": [round(t, 2) for t in times["pipeline"]],
        "epoch_in_memory_s": [round(t, 2) for t in times["in_memory"]],
        "epoch_pipeline_cpu_s": [round(t, 2) for t in cpu["pipeline"]],
        "epoch_in_memory_cpu_s": [round(t, 2) for t in cpu["in_memory"]],
        "gather_only_epoch_s": round(gather_only, 2),
        "model_share_wall": round(min(times["in_memory"]) / min(times["pipeline"]), 3),
        "model_share_cpu": round(min(cpu["in_memory"]) / min(cpu["pipeline"]), 3),
        "model_share_from_gather": round(1 - gather_only / min(times["pipeline"]), 3),
    }
    Path(args.out).parent.mkdir(parents=True, exist_ok=True)
    Path(args.out).write_text(json.dumps(res, indent=2))
    print(json.dumps(res, indent=2))


if __name__ == "__main__":
    main()
