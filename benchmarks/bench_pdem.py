#!/usr/bin/env python
"""Benchmark: the ``pdem`` extractor against the canonical audonnx + audinterface recipe.

Run from the repository root::

    .venv/bin/python benchmarks/bench_pdem.py             # full run (~13 min on 2 idle CPUs)
    .venv/bin/python benchmarks/bench_pdem.py --quick     # smoke run (~3 min)
    .venv/bin/python benchmarks/bench_pdem.py --device cuda   # part (d), needs a GPU
    .venv/bin/python benchmarks/bench_pdem.py --device cuda --precision bf16   # part (e)

The model is PDEM's real size: ``PdemNetwork(Wav2Vec2Config(**PDEM_CONFIG))`` (165 M
parameters) with random weights (``torch.manual_seed(--seed)``), exported once to ONNX
(input ``signal`` (1, time), outputs ``hidden_states`` and ``logits``, dynamic time axis)
with audonnx's ``model.yaml`` into ``benchmarks/out/pdem-real-size/`` (about 650 MB,
git-ignored, reused by later runs), plus the same weights as an emofeat checkpoint for the
torch backend. The speech is real: the 5 LibriVox clips of pocketsphinx-testdata and
espeak-ng speech, concatenated to ``--speech`` seconds at 16 kHz (a WAV, and an mp4 with the
speech as AAC audio for the engine's video path).

Parts (CPU, ``--threads`` for everyone: onnxruntime intra-op threads, torch threads):

a. Speed at the same thread count, win 4 s / hop 2 s: the canonical recipe
   ``audinterface.Feature(model.labels('hidden_states'), process_func=model,
   process_func_args={'outputs': 'hidden_states'}, sampling_rate=16000, resample=True,
   win_dur=4, hop_dur=2)`` (``process_signal`` on the samples, ``process_file`` on the WAV,
   and PyAV decoding + ``process_signal`` for the mp4, which audiofile cannot read without
   ffmpeg) against ours: the extractor fed 5 s chunks in-process, ``engine.run`` on the WAV
   and on the mp4 (in-process, model loaded: the steady state of ``emofeat extract``), and
   once each the ``emofeat extract`` CLI against a script running the canonical recipe, both
   as subprocesses (start-up and model loading included). Parity: max abs difference of
   ``hidden_states`` on every window both produce.
b. INT8 (``pdem.int8``, MatMul/Gemm): speed-up over fp32 and CCC between INT8 and fp32
   outputs per dimension of ``logits`` and ``hidden_states``; as a reference, INT8 of every
   supported operator (convolutions included, the former ``pdem.int8``).
c. Frame level: the torch backend's stream (``pdem.backend=torch``, ``pdem.level=frames``,
   one pass in overlapping chunks) against the canonical recipe at win 4 s / hop 0.5 s on
   the first ``--frames-seconds`` of the speech.
d. ``--device cuda``: the torch backend batching windows in half precision against the ONNX
   backend on onnxruntime's CUDAExecutionProvider (and the frame stream in half precision).
e. ``--precision fp32|fp16|bf16`` (instead of a-d; on ``--device cpu`` or ``cuda``): the torch
   backend alone, windows of 4 s every 2 s, ``--batch`` windows per call (default 16), in
   one precision: audio seconds per second, windows per second, load time and peak GPU
   memory (``torch.cuda.reset_peak_memory_stats`` before the model is loaded,
   ``max_memory_allocated`` after the last round). fp32: ``pdem.half=false``; fp16: the
   extractor's own ``half`` setting (float16 weights and inputs); bf16: ``pdem`` has no bf16
   setting, so the benchmark's calls run inside ``torch.autocast(device_type,
   dtype=torch.bfloat16)`` with fp32 weights. Only the torch checkpoint of the random model is
   made (no ONNX export). Without LibriVox / espeak-ng the audio is ``emofeat.samples``'
   speech-like signal (PDEM's cost does not depend on the content). ``--json PATH`` writes
   the result there, and the outputs (``logits``, ``hidden_states``) to an ``.npz`` beside it
   for ``gpu_table.py`` to compare with the fp32 run.

Method: every contender is warmed up on 8 s of speech (models loaded there, load times
reported), then the contenders run in interleaved rounds ``--repeat`` times; the minimum
over the rounds is reported (the machine is shared: the minimum is the least disturbed run).
Wall time is ``time.perf_counter``; CPU time ``time.process_time`` (all threads of this
process) or ``getrusage(RUSAGE_CHILDREN)`` for subprocesses. Results: a summary on stdout,
``benchmarks/out/pdem.json`` (every repetition) and ``benchmarks/out/pdem.md``.
"""

from __future__ import annotations

import argparse
import glob
import hashlib
import json
import os
import shutil
import subprocess
import sys
import tempfile
import time
from collections.abc import Callable
from fractions import Fraction
from pathlib import Path
from typing import Any

import _common
from _common import children_cpu, git, host, remove_store

HERE = Path(__file__).resolve().parent
LIBRIVOX = "/usr/share/pocketsphinx/test/data/librivox/*.wav"
SR = 16000  # Hz, PDEM's rate
WIN, HOP = 4.0, 2.0  # seconds: PDEM's paper windows
FRAME_HOP = 0.5  # seconds: the canonical recipe's hop for part (c)
LABELS = ["arousal", "dominance", "valence"]
CHUNK = 5.0  # seconds of audio per chunk fed to the extractor (engine's default audio_chunk)

# espeak-ng material (written for this benchmark), spoken with several voices and rates
TEXTS = [
    "The committee met again on Thursday morning, and after a long discussion about the "
    "budget, they agreed to postpone the decision until the next quarter.",
    "I honestly cannot believe you forgot the tickets! We have been planning this trip for "
    "months, and now the train leaves in twenty minutes.",
    "Please turn left at the second traffic light, then continue straight for about three "
    "hundred metres. The museum entrance is on your right, next to the bakery.",
    "When the storm finally passed, the village was quiet. Children came out to look at the "
    "fallen branches, and somebody started to sweep the square.",
    "That is wonderful news, congratulations! I always knew you would get the job, and I am "
    "so happy for you and your family.",
    "The measurements were repeated five times under the same conditions, and the average "
    "error stayed below two percent in every series.",
    "Nobody answered the phone, so I left a message and waited. An hour later there was "
    "still no reply, and I started to worry.",
    "Could you speak a little more slowly, please? The connection is bad, and I only "
    "understood half of what you said about the meeting.",
]
VOICES = [
    ("en-us", 160, 50),
    ("en-gb", 150, 40),
    ("en-us+f3", 170, 65),
    ("en-gb-scotland", 145, 35),
    ("en-029", 165, 55),
    ("en-gb-x-rp+f2", 155, 60),
]


def log(msg: str) -> None:
    print(f"[{time.strftime('%H:%M:%S')}] {msg}", file=sys.stderr, flush=True)


def timed(fn: Callable[[], Any]) -> tuple[float, float, Any]:
    """``(wall s, CPU s of this process, result)`` of ``fn()``."""
    t0, c0 = time.perf_counter(), time.process_time()
    res = fn()
    return time.perf_counter() - t0, time.process_time() - c0, res


class TimedSession:
    """An onnxruntime session that adds up the wall seconds spent in ``run``.

    Put in place of ``audonnx.Model.sess`` (which both the canonical recipe and our ONNX
    backend call), it splits each contender's time into inference and everything else:
    the split is far less sensitive to machine load than the totals.
    """

    def __init__(self, sess: Any) -> None:
        self.sess = sess
        self.seconds = 0.0
        self.calls = 0

    def run(self, *args: Any, **kwargs: Any) -> Any:
        t0 = time.perf_counter()
        try:
            return self.sess.run(*args, **kwargs)
        finally:
            self.seconds += time.perf_counter() - t0
            self.calls += 1

    def __getattr__(self, name: str) -> Any:
        return getattr(self.sess, name)


def instrument(model: Any) -> TimedSession:
    """Wrap an audonnx model's session (once); return the wrapper."""
    if not isinstance(model.sess, TimedSession):
        model.sess = TimedSession(model.sess)
    return model.sess


def sha256_of(path: Path) -> str:
    h = hashlib.sha256()
    with open(path, "rb") as f:
        for block in iter(lambda: f.read(1 << 22), b""):
            h.update(block)
    return h.hexdigest()


def code_hash() -> str:
    """Hash of the code under test (emofeat/*.py and plugins/audio/*.py)."""
    return _common.code_hash("emofeat/*.py", "plugins/audio/*.py")


# --------------------------------------------------------------------------------------
# the real-size model


def ensure_model(folder: Path, seed: int) -> dict:
    """The random-weight real-size PDEM as ONNX (audonnx folder) and as a torch checkpoint.

    Made once; a ``build.json`` records the seed and versions, and a later run reuses the
    folder when the seed matches and the files are there.
    """
    import audonnx
    import onnx
    import torch
    import transformers

    from emofeat_plugins.audio.pdem_torch import PDEM_CONFIG, PdemNetwork, save_checkpoint

    record_path = folder / "build.json"
    ckpt = folder / "torch"
    try:
        record = json.loads(record_path.read_text())
    except (OSError, ValueError):
        record = {}
    if (
        record.get("seed") == seed
        and (folder / "model.onnx").is_file()
        and (folder / "model.yaml").is_file()
        and (ckpt / "model.safetensors").is_file()
        and (folder / "model.onnx").stat().st_size == record.get("onnx_bytes")
    ):
        log(f"model: reusing {folder}")
        return record
    log(f"model: building PDEM-sized network (seed {seed}) and exporting to {folder}")
    shutil.rmtree(folder, ignore_errors=True)
    folder.mkdir(parents=True)
    t0 = time.perf_counter()
    torch.manual_seed(seed)
    net = PdemNetwork(transformers.Wav2Vec2Config(**PDEM_CONFIG)).eval()
    n_params = sum(p.numel() for p in net.parameters())
    save_checkpoint(net, ckpt, license="random weights (benchmark only)")
    # Fold weight normalisation (the positional convolution) into a plain weight, as in the
    # public PDEM export: exported as a parametrisation it becomes a computed tensor, not an
    # initializer, and onnxruntime's quantize_dynamic cannot quantise that Conv.
    from torch.nn.utils import parametrize

    for module in list(net.modules()):
        if parametrize.is_parametrized(module):
            for pname in list(module.parametrizations.keys()):
                parametrize.remove_parametrizations(module, pname, leave_parametrized=True)
    with torch.inference_mode():
        torch.onnx.export(
            net,
            torch.randn(1, 4 * SR),
            str(folder / "model.onnx"),
            input_names=["signal"],
            output_names=["hidden_states", "logits"],
            dynamic_axes={"signal": {1: "time"}},
            dynamo=False,
        )
    onnx.checker.check_model(str(folder / "model.onnx"))
    audonnx.Model(str(folder / "model.onnx"), labels={"logits": LABELS}).to_yaml(
        str(folder / "model.yaml")
    )
    record = {
        "seed": seed,
        "parameters": n_params,
        "onnx_bytes": (folder / "model.onnx").stat().st_size,
        "onnx_sha256": sha256_of(folder / "model.onnx"),
        "torch": torch.__version__,
        "transformers": transformers.__version__,
        "build_seconds": time.perf_counter() - t0,
    }
    record_path.write_text(json.dumps(record, indent=2))
    log(f"model: {n_params / 1e6:.1f} M parameters, {record['onnx_bytes'] / 1e6:.0f} MB ONNX")
    return record


def ensure_torch_model(folder: Path, seed: int) -> dict:
    """Only the torch checkpoint of the random-weight real-size PDEM (no ONNX export).

    Reuses the checkpoint of a full build (``ensure_model``) with the same seed, or of an
    earlier torch-only build (``torch-only.json``). A new torch-only build removes the full
    build's ``build.json`` so that ``ensure_model`` never pairs its ONNX with these weights.
    """
    import torch
    import transformers

    from emofeat_plugins.audio.pdem_torch import PDEM_CONFIG, PdemNetwork, save_checkpoint

    ckpt = folder / "torch"
    for name in ("build.json", "torch-only.json"):
        try:
            record = json.loads((folder / name).read_text())
        except (OSError, ValueError):
            continue
        if record.get("seed") == seed and (ckpt / "model.safetensors").is_file():
            log(f"model: reusing {ckpt} ({name})")
            return record
    log(f"model: building the PDEM-sized network (seed {seed}), torch checkpoint only")
    folder.mkdir(parents=True, exist_ok=True)
    (folder / "build.json").unlink(missing_ok=True)
    t0 = time.perf_counter()
    torch.manual_seed(seed)
    net = PdemNetwork(transformers.Wav2Vec2Config(**PDEM_CONFIG)).eval()
    save_checkpoint(net, ckpt, license="random weights (benchmark only)")
    record = {
        "seed": seed,
        "parameters": sum(p.numel() for p in net.parameters()),
        "onnx": False,
        "torch": torch.__version__,
        "transformers": transformers.__version__,
        "build_seconds": time.perf_counter() - t0,
    }
    (folder / "torch-only.json").write_text(json.dumps(record, indent=2))
    return record


# --------------------------------------------------------------------------------------
# real speech


def read_resampled(path: str | Path):
    """Mono float32 at 16 kHz, decoded and resampled with PyAV."""
    import av
    import numpy as np

    parts = []
    with av.open(str(path)) as container:
        stream = container.streams.audio[0]
        resampler = av.AudioResampler(format="flt", layout="mono", rate=SR)
        for frame in container.decode(stream):
            parts.extend(out.to_ndarray().reshape(-1) for out in resampler.resample(frame))
        parts.extend(out.to_ndarray().reshape(-1) for out in resampler.resample(None))
    return np.concatenate(parts).astype(np.float32, copy=False)


def make_speech(folder: Path, seconds: float) -> tuple[Path, Path, dict]:
    """A WAV of real speech (LibriVox + espeak-ng) and an mp4 with it as AAC audio."""
    import numpy as np

    from emofeat.samples import write_audio

    folder.mkdir(parents=True, exist_ok=True)
    wav = folder / f"speech_{seconds:g}s.wav"
    mp4 = folder / f"speech_{seconds:g}s.mp4"
    meta_path = folder / f"speech_{seconds:g}s.json"
    if wav.is_file() and mp4.is_file() and meta_path.is_file():
        return wav, mp4, json.loads(meta_path.read_text())
    librivox = sorted(glob.glob(LIBRIVOX))
    if not librivox:
        raise SystemExit(f"no LibriVox wavs at {LIBRIVOX} (apt-get install pocketsphinx-testdata)")
    if shutil.which("espeak-ng") is None:
        raise SystemExit("espeak-ng not found (apt-get install espeak-ng)")
    gap = np.zeros(int(0.3 * SR), np.float32)
    parts: list[np.ndarray] = []
    sources: list[str] = []
    for f in librivox:
        parts += [read_resampled(f), gap]
        sources.append(Path(f).name)
    total = sum(len(p) for p in parts)
    ref_rms = float(np.sqrt(np.mean(np.concatenate(parts) ** 2)))
    i = 0
    with tempfile.TemporaryDirectory() as tmp:
        while total < seconds * SR:
            text = TEXTS[i % len(TEXTS)]
            voice, rate, pitch = VOICES[i % len(VOICES)]
            txt, out = Path(tmp) / "t.txt", Path(tmp) / f"s{i}.wav"
            txt.write_text(text)
            cmd = ["espeak-ng", "-v", voice, "-s", str(rate), "-p", str(pitch)]
            subprocess.run([*cmd, "-w", str(out), "-f", str(txt)], check=True, capture_output=True)
            x = read_resampled(out)
            # same loudness as the LibriVox part (espeak-ng output is much louder)
            x = x * (ref_rms / max(1e-9, float(np.sqrt(np.mean(x**2)))))
            parts += [x.astype(np.float32), gap]
            sources.append(f"espeak-ng -v {voice} -s {rate} -p {pitch}: text {i % len(TEXTS)}")
            total += len(x) + len(gap)
            i += 1
    signal = np.clip(np.concatenate(parts)[: int(seconds * SR)], -1, 1)
    write_audio(wav, signal=signal, sampling_rate=SR)
    write_speech_video(mp4, signal)
    meta = {"seconds": len(signal) / SR, "sources": sources}
    meta_path.write_text(json.dumps(meta, indent=2))
    return wav, mp4, meta


def write_speech_video(path: Path, signal, fps: int = 25, size: tuple[int, int] = (160, 120)):
    """An H.264 mp4 of ``len(signal) / 16000`` seconds with ``signal`` muxed in as AAC."""
    import av
    import numpy as np

    w, h = size
    n_frames = int(np.ceil(len(signal) / SR * fps))
    with av.open(str(path), "w") as out:
        vs = out.add_stream("libx264", rate=fps)
        vs.width, vs.height, vs.pix_fmt = w, h, "yuv420p"
        aus = out.add_stream("aac", rate=SR)
        aus.layout = "mono"
        for k in range(n_frames):
            img = np.full((h, w, 3), 16 + (k * 7) % 224, np.uint8)  # frame number in the grey
            for packet in vs.encode(av.VideoFrame.from_ndarray(img, format="rgb24")):
                out.mux(packet)
        for packet in vs.encode():
            out.mux(packet)
        step = aus.codec_context.frame_size or 1024
        for a in range(0, len(signal), step):
            frame = av.AudioFrame.from_ndarray(
                np.ascontiguousarray(signal[a : a + step], np.float32)[None], "fltp", "mono"
            )
            frame.sample_rate, frame.pts, frame.time_base = SR, a, Fraction(1, SR)
            for packet in aus.encode(frame):
                out.mux(packet)
        for packet in aus.encode():
            out.mux(packet)
    return path


# --------------------------------------------------------------------------------------
# contenders


def canonical_interface(model, hop: float = HOP):
    """The recipe users run today (see the module docstring)."""
    import audinterface

    return audinterface.Feature(
        model.labels("hidden_states"),
        process_func=model,
        process_func_args={"outputs": "hidden_states"},
        sampling_rate=SR,
        resample=True,
        win_dur=WIN,
        hop_dur=hop,
    )


def feed_extractor(ex, signal) -> dict[str, tuple]:
    """Feed 16 kHz samples to an extractor in 5 s chunks, as the engine does.

    Returns ``{stream: (data, starts, valid)}``.
    """
    import numpy as np

    from emofeat.media import AudioChunk

    ex.begin(None)
    rows = []
    n = int(CHUNK * SR)
    for a in range(0, len(signal), n):
        rows += list(ex.process(AudioChunk(signal[a : a + n], SR, a / SR, a)))
    rows += list(ex.end())
    out = {}
    for name in dict.fromkeys(r.stream for r in rows):
        parts = [r for r in rows if r.stream == name]
        valid = [np.ones(len(r), bool) if r.valid is None else r.valid for r in parts]
        out[name] = (
            np.concatenate([r.data for r in parts]),
            np.concatenate([r.start for r in parts]),
            np.concatenate(valid),
        )
    return out


def engine_run(jobs, media: Path, store_path: Path, device: str = "cpu") -> dict:
    """``engine.run`` over one input into a fresh store (extractors stay cached: warm)."""
    from emofeat import engine
    from emofeat.store import FeatureStore

    remove_store(store_path)
    with FeatureStore(store_path, mode="a") as st:
        summary = engine.run(st, [media], jobs, engine.RunOptions(device=device))
    (res,) = summary.results
    if res.status != "done" or any(o.status != "done" for o in res.outcomes):
        raise RuntimeError(f"engine run on {media} failed: {res.message} {res.outcomes}")
    return {
        "key": res.key,
        "decode_wait": res.decode_seconds,
        "extractor": sum(o.seconds for o in res.outcomes),
        "input": res.seconds,
    }


def read_store(store_path: Path, key: str, stream: str):
    from emofeat.store import FeatureStore

    with FeatureStore(store_path, mode="r") as st:
        sd = st.read(key, "pdem", stream)
    return sd.data, sd.times[:, 0], sd.mask


def ccc(x, y):
    """Concordance correlation coefficient per column of ``x`` and ``y`` (rows = windows)."""
    import numpy as np

    x, y = np.asarray(x, np.float64), np.asarray(y, np.float64)
    mx, my = x.mean(0), y.mean(0)
    vx, vy = x.var(0), y.var(0)
    cov = ((x - mx) * (y - my)).mean(0)
    return 2 * cov / (vx + vy + (mx - my) ** 2)


def summarise(values) -> dict:
    import numpy as np

    v = np.asarray(values, np.float64)
    return {
        "min": float(v.min()),
        "median": float(np.median(v)),
        "p5": float(np.percentile(v, 5)),
        "max": float(v.max()),
    }


def best(reps: list[dict]) -> dict:
    """Minimum wall and minimum CPU over repetitions (each from its own repetition)."""
    return {"wall": min(r["wall"] for r in reps), "cpu": min(r["cpu"] for r in reps)}


class Rounds:
    """Interleaved repetitions of named contenders; keeps every repetition."""

    def __init__(self, progress: Path | None = None) -> None:
        self.reps: dict[str, list[dict]] = {}
        self.last: dict[str, Any] = {}
        self.progress = progress  # JSON lines, one per measurement (kept if a run is cut)

    def note(self, record: dict) -> None:
        if self.progress is not None:
            with open(self.progress, "a") as f:
                f.write(json.dumps({"time": time.strftime("%H:%M:%S"), **record}) + "\n")

    def run(
        self,
        name: str,
        fn: Callable[[], Any],
        extra: Callable[[Any], dict] | None = None,
        session: TimedSession | None = None,
    ):
        s0, n0 = (session.seconds, session.calls) if session else (0.0, 0)
        wall, cpu, res = timed(fn)
        rec = {"wall": wall, "cpu": cpu, **(extra(res) if extra else {})}
        if session is not None:  # wall seconds inside onnxruntime, and the rest
            rec["inference"] = session.seconds - s0
            rec["calls"] = session.calls - n0
            rec["outside_inference"] = wall - rec["inference"]
        self.reps.setdefault(name, []).append(rec)
        self.last[name] = res
        log(f"  {name}: wall {wall:.2f} s, CPU {cpu:.2f} s")
        self.note({"name": name, **rec})
        return res

    def summary(self) -> dict:
        out = {}
        for k, v in self.reps.items():
            out[k] = {**best(v), "reps": v}
            if "inference" in v[0]:
                out[k]["inference"] = min(r["inference"] for r in v)
                out[k]["outside_inference"] = min(r["outside_inference"] for r in v)
                out[k]["calls"] = v[0]["calls"]
        return out


# --------------------------------------------------------------------------------------
# CPU parts (a), (b), (c)


def part_a_b(args, model_dir: Path, wav: Path, mp4: Path, signal, work: Path) -> dict:
    import audonnx

    from emofeat import build_jobs
    from emofeat_plugins.audio.pdem import Pdem

    threads = args.threads
    warm = signal[: 8 * SR]
    warm_wav = work / "warm.wav"
    from emofeat.samples import write_audio

    write_audio(warm_wav, signal=warm, sampling_rate=SR)

    loads: dict[str, dict] = {}
    log("loading models (timed once) and warming up")
    w, c, model = timed(lambda: audonnx.load(str(model_dir), num_workers=threads))
    loads["canonical: audonnx.load"] = {"wall": w, "cpu": c}
    interface = canonical_interface(model)
    interface.process_signal(warm, SR)

    ours = Pdem({"model": str(model_dir), "threads": threads, "win": WIN, "hop": HOP})
    w, c, _ = timed(lambda: ours._load())
    loads["ours: extractor load (hashes the 650 MB model)"] = {"wall": w, "cpu": c}
    feed_extractor(ours, warm)

    w, c, _ = timed(
        lambda: Pdem({"model": str(model_dir), "int8": True, "threads": threads})._load()
    )
    loads["int8: quantise (first run only) + load"] = {"wall": w, "cpu": c}
    int8 = Pdem({"model": str(model_dir), "int8": True, "threads": threads})
    w, c, _ = timed(lambda: int8._load())
    loads["int8: load (quantised model cached)"] = {"wall": w, "cpu": c}
    feed_extractor(int8, warm)

    sets = (f"pdem.model={model_dir}", f"pdem.threads={threads}")
    jobs = build_jobs(["pdem"], sets, None)
    w, c, _ = timed(lambda: engine_run(jobs, warm_wav, work / "warm.h5"))
    loads["engine: first run on 8 s (load + hash + run)"] = {"wall": w, "cpu": c}

    # reference, not a setting of pdem: INT8 of every supported op, the front end's
    # convolutions included (pdem.int8's former method; pdem.int8 now quantises MatMul/Gemm)
    w, c, mm_dir = timed(lambda: quantize_all_ops(model_dir))
    loads["int8 all ops: quantise (first run only)"] = {"wall": w, "cpu": c}
    int8_mm = Pdem({"model": str(mm_dir), "threads": threads})
    int8_mm._load()
    feed_extractor(int8_mm, warm)

    from emofeat import engine

    (eng,) = [e for e in engine._EXTRACTORS.values() if isinstance(e, Pdem)]
    sessions = {
        "canonical process_signal": instrument(model),
        "canonical process_file wav": instrument(model),
        "ours extractor in-process": instrument(ours._onnx.model),
        "engine.run wav": instrument(eng._onnx.model),
        "engine.run mp4": instrument(eng._onnx.model),
        "ours int8 extractor in-process": instrument(int8._onnx.model),
        "int8 all ops (reference)": instrument(int8_mm._onnx.model),
    }
    rounds = Rounds(args.out / "pdem_progress.jsonl")
    analysis: dict[str, Any] = {}
    for r in range(args.repeat):
        log(f"part (a)/(b), round {r + 1} of {args.repeat}")
        order = [
            ("canonical process_signal", lambda: interface.process_signal(signal, SR), None),
            ("ours extractor in-process", lambda: feed_extractor(ours, signal), None),
            ("canonical process_file wav", lambda: interface.process_file(str(wav)), None),
            ("engine.run wav", lambda: engine_run(jobs, wav, work / "wav.h5"), lambda x: x),
            ("engine.run mp4", lambda: engine_run(jobs, mp4, work / "mp4.h5"), lambda x: x),
            ("ours int8 extractor in-process", lambda: feed_extractor(int8, signal), None),
            ("int8 all ops (reference)", lambda: feed_extractor(int8_mm, signal), None),
        ]
        if r % 2:  # alternate the order so that no contender always runs after the same one
            order = order[::-1]
        for name, fn, extra in order:
            rounds.run(name, fn, extra, sessions[name])
        if r == 0:  # outputs are deterministic: check them once, keep them if a round is cut
            analysis = analyse_a(rounds.last, interface, mp4, work)
            rounds.note({"analysis": analysis})

    # decoding alone (what the engine can hide behind inference)
    w, c, _ = timed(lambda: read_resampled(mp4))
    decode_alone = {"mp4 PyAV decode + resample": {"wall": w, "cpu": c}}
    w, c, _ = timed(lambda: read_resampled(wav))
    decode_alone["wav PyAV decode"] = {"wall": w, "cpu": c}
    return {
        "loads": loads,
        "rounds": rounds.summary(),
        "decode_alone": decode_alone,
        **analysis,
        "int8_bytes": {
            "fp32": (model_dir / "model.onnx").stat().st_size,
            "pdem.int8": (model_dir / "model.int8.onnx").stat().st_size,
            "all ops": (mm_dir / "model.onnx").stat().st_size,
        },
    }


def quantize_all_ops(model_dir: Path) -> Path:
    """INT8 copy quantising every supported op (Conv too), in a sibling folder (made once)."""
    import logging

    import audonnx
    from onnxruntime.quantization import QuantType, quantize_dynamic

    out = model_dir.with_name(model_dir.name + "-int8-allops")
    source = json.loads((model_dir / "build.json").read_text())["onnx_sha256"]
    stamp = out / "source.txt"
    if stamp.is_file() and stamp.read_text() == source and (out / "model.yaml").is_file():
        return out
    shutil.rmtree(out, ignore_errors=True)
    out.mkdir(parents=True)
    level = logging.getLogger().level
    logging.getLogger().setLevel(logging.ERROR)  # quantize_dynamic's advice goes to the root
    try:
        quantize_dynamic(
            str(model_dir / "model.onnx"),
            str(out / "model.onnx"),
            weight_type=QuantType.QInt8,
        )
    finally:
        logging.getLogger().setLevel(level)
    audonnx.Model(str(out / "model.onnx"), labels={"logits": LABELS}).to_yaml(
        str(out / "model.yaml")
    )
    stamp.write_text(source)
    return out


def analyse_a(last: dict, interface, mp4: Path, work: Path) -> dict:
    """Parity with the canonical recipe and INT8 fidelity, from one round's outputs."""
    import numpy as np

    ref = last["canonical process_signal"]
    ref_file = last["canonical process_file wav"]
    n = len(ref)
    ref_starts = ref.index.get_level_values("start").total_seconds().to_numpy()
    ours_out = last["ours extractor in-process"]
    hs, starts, valid = ours_out["hidden_states"]
    eng_hs, eng_starts, _ = read_store(
        work / "wav.h5", last["engine.run wav"]["key"], "hidden_states"
    )
    mp4_hs, _, _ = read_store(work / "mp4.h5", last["engine.run mp4"]["key"], "hidden_states")
    ref_mp4 = interface.process_signal(read_resampled(mp4), SR)
    parity = {
        "windows canonical": n,
        "windows ours (incl. final padded)": int(len(hs)),
        "ours valid windows": int(valid.sum()),
        "same window starts": bool(np.allclose(starts[:n], ref_starts, atol=1e-9)),
        "max abs diff hidden_states, extractor vs process_signal": float(
            np.abs(hs[:n] - ref.to_numpy()).max()
        ),
        "max abs diff hidden_states, engine wav (store) vs process_file": float(
            np.abs(eng_hs[: len(ref_file)] - ref_file.to_numpy()).max()
        ),
        "engine wav same window starts": bool(np.allclose(eng_starts[:n], ref_starts, atol=1e-9)),
        "max abs diff hidden_states, engine mp4 (store) vs PyAV decode + process_signal": float(
            np.abs(mp4_hs[: len(ref_mp4)] - ref_mp4.to_numpy()).max()
        ),
        "windows engine mp4 (incl. final padded) / canonical on the decoded mp4": [
            int(len(mp4_hs)),
            int(len(ref_mp4)),
        ],
        "hidden_states value range": [float(ref.to_numpy().min()), float(ref.to_numpy().max())],
    }
    # INT8 fidelity against fp32 (the same windows, valid ones)
    fidelity: dict[str, dict] = {}
    for variant in ("ours int8 extractor in-process", "int8 all ops (reference)"):
        q = last[variant]
        fid = {}
        for name in ("logits", "hidden_states"):
            a, b = ours_out[name][0][valid], q[name][0][valid]
            cc = ccc(a, b)
            fid[name] = {
                "ccc": summarise(cc),
                "ccc_per_dim": [float(v) for v in cc] if name == "logits" else None,
                "max_abs_diff": float(np.abs(a - b).max()),
                "fp32_std_over_windows": summarise(a.std(0)),
                "fp32_abs_mean": float(np.abs(a).mean()),
                "pearson": summarise(
                    [np.corrcoef(a[:, j], b[:, j])[0, 1] for j in range(a.shape[1])]
                ),
            }
        fidelity[variant] = fid
    return {"parity": parity, "int8": fidelity, "windows": n}


def part_c(args, model_dir: Path, signal) -> dict:
    import audonnx
    import numpy as np
    import torch

    from emofeat_plugins.audio.pdem import Pdem

    sig = signal[: int(args.frames_seconds * SR)]
    model = audonnx.load(str(model_dir), num_workers=args.threads)
    interface = canonical_interface(model, hop=FRAME_HOP)
    frames = Pdem(
        {
            "backend": "torch",
            "model": str(model_dir / "torch"),
            "level": "frames",
            "layers": [12],
        }
    )
    log("part (c): warming up")
    interface.process_signal(sig[: 8 * SR], SR)
    w, c, _ = timed(lambda: frames._load())
    load = {"wall": w, "cpu": c}
    feed_extractor(frames, sig[: 8 * SR])

    # one 4 s window through each runtime: how much of the ratio is the runtime itself
    net = frames._net
    x = sig[: int(WIN * SR)][None].astype(np.float32)
    per_window = {"onnx": [], "torch": []}
    with torch.inference_mode():
        for _ in range(3):
            per_window["onnx"].append(timed(lambda: model(x, SR, outputs="hidden_states"))[:2])
            per_window["torch"].append(timed(lambda: net(torch.from_numpy(x)))[:2])

    rounds = Rounds(args.out / "pdem_progress.jsonl")
    for r in range(args.repeat):
        log(f"part (c), round {r + 1} of {args.repeat}")
        order = [
            ("canonical win 4 s hop 0.5 s", lambda: interface.process_signal(sig, SR)),
            ("torch frames stream (layer 12)", lambda: feed_extractor(frames, sig)),
        ]
        for name, fn in order[:: -1 if r % 2 else 1]:
            rounds.run(name, fn)
    ref = rounds.last["canonical win 4 s hop 0.5 s"]
    fr = rounds.last["torch frames stream (layer 12)"]["layer12"]
    return {
        "seconds": len(sig) / SR,
        "canonical_windows": len(ref),
        "frames": int(len(fr[0])),
        "frame_settings": {k: frames.config[k] for k in ("chunk", "context", "layers")},
        "torch_load": load,
        "one_window_4s": {
            k: {"wall": min(v[0] for v in vals), "cpu": min(v[1] for v in vals)}
            for k, vals in per_window.items()
        },
        "rounds": rounds.summary(),
    }


def part_cli(args, model_dir: Path, wav: Path, mp4: Path, work: Path) -> dict:
    """``emofeat extract`` vs a canonical-recipe script, both as fresh processes, once each."""
    exe = Path(sys.executable).parent / "emofeat"
    base = [str(exe)] if exe.exists() else [sys.executable, "-m", "emofeat"]
    out: dict[str, dict] = {}
    script = (
        "import sys, audonnx, audinterface\n"
        "m = audonnx.load(sys.argv[1], num_workers=int(sys.argv[2]))\n"
        "f = audinterface.Feature(m.labels('hidden_states'), process_func=m,\n"
        "    process_func_args={'outputs': 'hidden_states'}, sampling_rate=16000,\n"
        "    resample=True, win_dur=4, hop_dur=2)\n"
        "f.process_file(sys.argv[3])\n"
    )
    cmds = {
        "canonical script, process_file wav": [
            sys.executable,
            "-c",
            script,
            str(model_dir),
            str(args.threads),
            str(wav),
        ],
    }
    for label, media in (("mp4", mp4),):
        store = work / f"cli_{label}.h5"
        cmds[f"emofeat extract {label}"] = [
            *base,
            "extract",
            "-q",
            "--threads",
            str(args.threads),
            "-o",
            str(store),
            "--plugin",
            "pdem",
            "--set",
            f"pdem.model={model_dir}",
            "--set",
            f"pdem.threads={args.threads}",
            str(media),
        ]
    for name, cmd in cmds.items():
        for p in work.glob("cli_*.h5*"):
            shutil.rmtree(p, ignore_errors=True) if p.is_dir() else p.unlink()
        t0, c0 = time.perf_counter(), children_cpu()
        proc = subprocess.run(cmd, capture_output=True, text=True, cwd=work)
        wall, cpu = time.perf_counter() - t0, children_cpu() - c0
        if proc.returncode != 0:
            raise RuntimeError(f"{' '.join(cmd[:3])} failed:\n{proc.stderr[-3000:]}")
        out[name] = {"wall": wall, "cpu": cpu, "stderr_tail": proc.stderr[-1500:]}
        log(f"  {name}: wall {wall:.2f} s, CPU {cpu:.2f} s")
    w, c = time.perf_counter(), children_cpu()
    subprocess.run([*base, "--version"], capture_output=True, check=True)
    out["emofeat --version (start-up)"] = {
        "wall": time.perf_counter() - w,
        "cpu": children_cpu() - c,
    }
    return out


# --------------------------------------------------------------------------------------
# GPU part (d)


def part_d(args, model_dir: Path, signal) -> dict:
    """Torch backend (fp16, batched windows) vs ONNX backend on CUDAExecutionProvider."""
    import numpy as np
    import onnxruntime
    import torch

    from emofeat_plugins.audio.pdem import Pdem

    if not torch.cuda.is_available():
        raise SystemExit("--device cuda: torch sees no CUDA device")
    if "CUDAExecutionProvider" not in onnxruntime.get_available_providers():
        log("onnxruntime has no CUDAExecutionProvider: the ONNX contender is skipped")
        onnx_gpu = None
    else:
        onnx_gpu = Pdem({"model": str(model_dir)}, device="cuda")
    dev = "cuda"
    contenders: dict[str, Any] = {}
    if onnx_gpu is not None:
        contenders["onnx CUDA, one window per call"] = onnx_gpu
    for batch in args.gpu_batches:
        contenders[f"torch fp16, batch {batch}"] = Pdem(
            {"backend": "torch", "model": str(model_dir / "torch"), "half": True, "batch": batch},
            device=dev,
        )
    contenders["torch fp32, batch 16"] = Pdem(
        {"backend": "torch", "model": str(model_dir / "torch"), "batch": 16}, device=dev
    )
    contenders["torch fp16 frames stream (layer 12)"] = Pdem(
        {
            "backend": "torch",
            "model": str(model_dir / "torch"),
            "half": True,
            "level": "frames",
            "layers": [12],
        },
        device=dev,
    )
    for ex in contenders.values():
        feed_extractor(ex, signal[: 8 * SR])
    torch.cuda.synchronize()

    def run(ex):
        res = feed_extractor(ex, signal)
        torch.cuda.synchronize()
        return res

    rounds = Rounds()
    for r in range(args.repeat):
        log(f"part (d), round {r + 1} of {args.repeat}")
        for name, ex in contenders.items():
            rounds.run(name, lambda ex=ex: run(ex))
    fid = {}
    ref_name = "torch fp32, batch 16"
    ref = rounds.last[ref_name]
    for name, res in rounds.last.items():
        if name == ref_name or "hidden_states" not in res:
            continue
        a, b = ref["hidden_states"][0], res["hidden_states"][0]
        fid[name] = {
            "max_abs_diff_hidden_states_vs_fp32": float(np.abs(a - b).max()),
            "ccc_logits_vs_fp32": [float(v) for v in ccc(ref["logits"][0], res["logits"][0])],
        }
    return {
        "gpu": torch.cuda.get_device_name(0),
        "rounds": rounds.summary(),
        "fidelity": fid,
    }


# --------------------------------------------------------------------------------------
# part (e): one precision of the torch backend on --device


def part_e(args, model_dir: Path, signal) -> tuple[dict, dict]:
    """Torch backend, batched windows, in ``args.precision`` on ``args.device``.

    Returns the measurements and the last round's outputs (``{stream: array}``).
    """
    import contextlib
    import gc

    import numpy as np
    import torch

    from emofeat_plugins.audio.pdem import Pdem

    dev = args.device
    cuda = dev.startswith("cuda")
    if cuda and not torch.cuda.is_available():
        raise SystemExit(f"--device {dev}: torch sees no CUDA device")

    def sync() -> None:
        if cuda:
            torch.cuda.synchronize()

    def precision():
        if args.precision != "bf16":
            return contextlib.nullcontext()
        return torch.autocast(device_type=dev.split(":")[0], dtype=torch.bfloat16)

    gc.collect()
    if cuda:
        torch.cuda.empty_cache()
        torch.cuda.reset_peak_memory_stats()
    config = {
        "backend": "torch",
        "model": str(model_dir / "torch"),
        "batch": args.batch,
        "half": args.precision == "fp16",
    }

    def load():
        ex = Pdem(config, device=dev)
        ex.prepare()  # the network is loaded here, once, as before a run's first input
        return ex

    load_wall, load_cpu, ex = timed(load)
    with precision():
        feed_extractor(ex, signal[: 8 * SR])  # warm-up
    sync()

    def run():
        with precision():
            res = feed_extractor(ex, signal)
        sync()
        return res

    rounds = Rounds()
    for r in range(args.repeat):
        log(f"part (e), {args.precision} on {dev}, round {r + 1} of {args.repeat}")
        rounds.run(args.precision, run)
    summary = rounds.summary()[args.precision]
    out = {k: v[0] for k, v in rounds.last[args.precision].items()}
    seconds = len(signal) / SR
    windows = int(len(out["logits"])) if "logits" in out else None
    res = {
        "device": dev,
        "gpu": torch.cuda.get_device_name(torch.device(dev)) if cuda else None,
        "precision": args.precision,
        "batch": args.batch,
        "how": {
            "fp32": "pdem.half=false",
            "fp16": "pdem.half=true (float16 weights and inputs)",
            "bf16": "torch.autocast(bfloat16) around the benchmark's calls, fp32 weights",
        }[args.precision],
        "load_wall": load_wall,
        "load_cpu": load_cpu,
        "audio_seconds": seconds,
        "windows": windows,
        "wall": summary["wall"],
        "cpu": summary["cpu"],
        "wall_runs": [x["wall"] for x in summary["reps"]],
        "x_realtime": seconds / summary["wall"],
        "windows_per_s": windows / summary["wall"] if windows else None,
        "finite": bool(all(np.isfinite(v).all() for v in out.values())),
        "peak_allocated_mib": torch.cuda.max_memory_allocated() / 2**20 if cuda else None,
        "peak_reserved_mib": torch.cuda.max_memory_reserved() / 2**20 if cuda else None,
    }
    return res, out


# --------------------------------------------------------------------------------------
# report


def machine() -> dict:
    import audinterface
    import audonnx
    import av
    import numpy
    import onnxruntime
    import torch
    import transformers

    import emofeat

    mem = os.sysconf("SC_PAGE_SIZE") * os.sysconf("SC_PHYS_PAGES") / 2**30
    return {
        **host(memory_gib=round(mem, 1)),
        "onnxruntime": onnxruntime.__version__,
        "audonnx": audonnx.__version__,
        "audinterface": audinterface.__version__,
        "torch": torch.__version__,
        "transformers": transformers.__version__,
        "av": av.__version__,
        "numpy": numpy.__version__,
        "emofeat": emofeat.__version__,
        "commit": git("rev-parse", "--short", "HEAD"),
        "dirty": git("status", "--porcelain", "--", "emofeat", "plugins/audio").splitlines(),
        "loadavg_start": os.getloadavg(),
    }


def ratio(a: dict, b: dict) -> dict:
    return {"wall": a["wall"] / b["wall"], "cpu": a["cpu"] / b["cpu"]}


def report(res: dict) -> str:
    """Markdown summary of a CPU run (also printed)."""
    lines = []
    m = res["machine"]
    lines.append(
        f"Machine: {m['nproc']} CPUs ({m['cpu']}), {m['platform']}, Python {m['python']}, "
        f"onnxruntime {m['onnxruntime']}, torch {m['torch']}; threads {res['args']['threads']}; "
        f"load average {m['loadavg_start'][0]:.1f} at start, {res['loadavg_end'][0]:.1f} at end; "
        f"code changed during run: {res['code_changed']}"
    )
    a = res.get("a")
    if a:
        audio = res["speech"]["seconds"]
        r = a["rounds"]
        lines += [
            "",
            f"(a)/(b) {audio:.1f} s of speech, win {WIN:g} s hop {HOP:g} s, {a['windows']} "
            f"windows, minimum of {res['args']['repeat']}",
            "",
            "| contender | wall s | CPU s | wall / canonical | CPU / canonical "
            "| in onnxruntime s | outside s | calls |",
            "|---|---:|---:|---:|---:|---:|---:|---:|",
        ]
        base = r["canonical process_signal"]
        for name, v in r.items():
            q = ratio(v, base)
            lines.append(
                f"| {name} | {v['wall']:.2f} | {v['cpu']:.2f} | {q['wall']:.3f} | {q['cpu']:.3f} "
                f"| {v.get('inference', float('nan')):.2f} "
                f"| {v.get('outside_inference', float('nan')):.3f} | {v.get('calls', '')} |"
            )
        dec = a["decode_alone"]["mp4 PyAV decode + resample"]
        canon_mp4 = {k: base[k] + dec[k] for k in ("wall", "cpu")}
        pairs = [
            ("ours extractor in-process", r["canonical process_signal"]),
            ("engine.run wav", r["canonical process_file wav"]),
            ("engine.run mp4", canon_mp4),
            ("ours int8 extractor in-process", r["ours extractor in-process"]),
            ("int8 all ops (reference)", r["ours extractor in-process"]),
        ]
        names = [
            "canonical process_signal",
            "canonical process_file wav",
            "canonical process_signal + PyAV decode of the mp4 alone",
            "fp32 extractor",
            "fp32 extractor",
        ]
        lines += ["", "| pair | wall ratio | CPU ratio |", "|---|---:|---:|"]
        for (x, y), yname in zip(pairs, names, strict=True):
            q = ratio(r[x], y)
            lines.append(f"| {x} / {yname} | {q['wall']:.3f} | {q['cpu']:.3f} |")
        lines += ["", "Parity: " + json.dumps(a.get("parity"))]
        for variant, fid in (a.get("int8") or {}).items():
            lines.append(f"INT8 fidelity, {variant} vs fp32:")
            for out, v in fid.items():
                lines.append(
                    f"- {out}: CCC min {v['ccc']['min']:.4f} median {v['ccc']['median']:.4f}; "
                    f"Pearson min {v['pearson']['min']:.4f} median {v['pearson']['median']:.4f}; "
                    f"max abs diff {v['max_abs_diff']:.4g}; fp32 std over windows median "
                    f"{v['fp32_std_over_windows']['median']:.4g}"
                    + (
                        f"; per dim {[round(x, 4) for x in v['ccc_per_dim']]}"
                        if v["ccc_per_dim"]
                        else ""
                    )
                )
        lines += ["Loads: " + json.dumps(a["loads"])]
        lines += ["Decode alone: " + json.dumps(a["decode_alone"])]
    c = res.get("c")
    if c:
        r = c["rounds"]
        q = ratio(r["canonical win 4 s hop 0.5 s"], r["torch frames stream (layer 12)"])
        lines += [
            "",
            f"(c) {c['seconds']:.1f} s: canonical hop 0.5 s ({c['canonical_windows']} windows) "
            f"wall {r['canonical win 4 s hop 0.5 s']['wall']:.2f} s CPU "
            f"{r['canonical win 4 s hop 0.5 s']['cpu']:.2f} s; frames stream ({c['frames']} "
            f"frames) wall {r['torch frames stream (layer 12)']['wall']:.2f} s CPU "
            f"{r['torch frames stream (layer 12)']['cpu']:.2f} s; speed-up wall "
            f"{q['wall']:.2f}x CPU {q['cpu']:.2f}x; one 4 s window: "
            + json.dumps(c["one_window_4s"]),
        ]
    cli = res.get("cli")
    if cli:
        lines += ["", "CLI (once each, fresh processes):"]
        for name, v in cli.items():
            lines.append(f"- {name}: wall {v['wall']:.2f} s, CPU {v['cpu']:.2f} s")
    e = res.get("e")
    if e:
        mem = (
            f"{e['peak_allocated_mib']:.0f} MiB allocated, {e['peak_reserved_mib']:.0f} MiB "
            "reserved"
            if e["peak_allocated_mib"] is not None
            else "n/a (CPU)"
        )
        lines += [
            "",
            f"(e) torch backend, {e['precision']} ({e['how']}) on {e['gpu'] or e['device']}, "
            f"batch {e['batch']}: {e['audio_seconds']:.1f} s of audio, {e['windows']} windows "
            f"in {e['wall']:.2f} s wall ({e['cpu']:.2f} s CPU): **{e['x_realtime']:.1f}x real "
            f"time**, {e['windows_per_s']:.1f} windows/s; model load {e['load_wall']:.1f} s; "
            f"peak GPU memory {mem}; outputs finite: {e['finite']}",
        ]
    d = res.get("d")
    if d:
        lines += ["", f"(d) GPU {d['gpu']}:"]
        for name, v in d["rounds"].items():
            lines.append(f"- {name}: wall {v['wall']:.3f} s, CPU {v['cpu']:.2f} s")
        lines.append("fidelity: " + json.dumps(d["fidelity"]))
    return "\n".join(lines)


def main(argv: list[str] | None = None) -> int:
    ap = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    ap.add_argument("--quick", action="store_true", help="30 s of speech, 1 round, no CLI")
    ap.add_argument("--repeat", type=int, default=None, help="rounds (default 2; quick: 1)")
    ap.add_argument("--threads", type=int, default=2, help="threads for every contender")
    ap.add_argument("--speech", type=float, default=None, help="seconds (default 120)")
    ap.add_argument("--frames-seconds", type=float, default=None, help="part (c) (default 60)")
    ap.add_argument("--device", default="cpu", help="cpu, cuda, cuda:N (default cpu)")
    ap.add_argument(
        "--precision",
        default=None,
        choices=("fp32", "fp16", "bf16"),
        help="run part (e) alone: the torch backend in this precision on --device",
    )
    ap.add_argument("--batch", type=int, default=16, help="part (e): windows per call")
    ap.add_argument("--json", type=Path, default=None, help="part (e): also write the JSON here")
    ap.add_argument("--gpu-batches", type=int, nargs="+", default=[8, 32])
    ap.add_argument("--no-cli", action="store_true", help="skip the subprocess measurements")
    ap.add_argument("--skip", default="", help="comma-separated parts to skip: a, c")
    ap.add_argument("--seed", type=int, default=0, help="weights of the random model")
    ap.add_argument("--out", type=Path, default=HERE / "out")
    args = ap.parse_args(argv)
    args.repeat = args.repeat or (1 if args.quick else 2)
    args.speech = args.speech or (30.0 if args.quick else 120.0)
    args.frames_seconds = args.frames_seconds or (20.0 if args.quick else 60.0)
    args.no_cli = args.no_cli or args.quick
    skip = {s.strip() for s in args.skip.split(",") if s.strip()}

    # the same thread count for everyone, set before torch / onnxruntime start their pools
    for var in ("OMP_NUM_THREADS", "MKL_NUM_THREADS", "OPENBLAS_NUM_THREADS"):
        os.environ[var] = str(args.threads)
    import numpy as np
    import torch

    torch.set_num_threads(args.threads)

    args.out.mkdir(parents=True, exist_ok=True)
    t_start = time.perf_counter()
    hash0 = code_hash()
    res: dict[str, Any] = {
        "args": {k: (str(v) if isinstance(v, Path) else v) for k, v in vars(args).items()},
        "machine": machine(),
        "started": time.strftime("%Y-%m-%dT%H:%M:%S%z"),
    }
    model_dir = args.out / "pdem-real-size"
    if args.precision:
        res["model"] = ensure_torch_model(model_dir, args.seed)
        try:
            wav, mp4, meta = make_speech(args.out / "media", args.speech)
            signal = read_resampled(wav)
            res["speech"] = {**meta, "wav": str(wav)}
        except SystemExit as exc:  # no LibriVox / espeak-ng: PDEM's cost ignores the content
            from emofeat.samples import speech_like

            log(f"{exc}: using emofeat.samples.speech_like instead")
            signal = np.asarray(speech_like(args.speech, SR), np.float32)
            res["speech"] = {"seconds": len(signal) / SR, "sources": ["speech_like"]}
        res["e"], outputs = part_e(args, model_dir, signal)
        res["loadavg_end"] = os.getloadavg()
        res["code_changed"] = code_hash() != hash0
        res["seconds_total"] = time.perf_counter() - t_start
        text = report(res)
        stamp = time.strftime("%Y%m%dT%H%M%S")
        name = f"pdem_{args.precision}_{args.device.replace(':', '')}_{stamp}"
        (args.out / f"{name}.json").write_text(json.dumps(res, indent=2, default=str))
        (args.out / f"{name}.md").write_text(text + "\n")
        if args.json:
            args.json.parent.mkdir(parents=True, exist_ok=True)
            args.json.write_text(json.dumps(res, indent=2, default=str))
            np.savez_compressed(args.json.with_suffix(".npz"), **outputs)
        print(text)
        log(f"done in {res['seconds_total']:.0f} s; wrote {args.out / name}.json")
        return 0
    if args.device not in ("cpu", "cuda"):
        ap.error("parts a-d run on --device cpu or cuda")
    res["model"] = ensure_model(model_dir, args.seed)
    wav, mp4, meta = make_speech(args.out / "media", args.speech)
    res["speech"] = {**meta, "wav": str(wav), "mp4": str(mp4)}
    log(f"speech: {meta['seconds']:.1f} s, {len(meta['sources'])} segments")
    signal = read_resampled(wav)  # the WAV's own (16-bit) samples: every contender sees these
    assert np.isfinite(signal).all()

    with tempfile.TemporaryDirectory(prefix="bench_pdem_") as tmp:
        work = Path(tmp)
        if args.device == "cuda":
            res["d"] = part_d(args, model_dir, signal)
        else:
            if "a" not in skip:
                res["a"] = part_a_b(args, model_dir, wav, mp4, signal, work)
            if "c" not in skip:
                res["c"] = part_c(args, model_dir, signal)
            if not args.no_cli:
                log("CLI subprocesses")
                res["cli"] = part_cli(args, model_dir, wav, mp4, work)
    res["loadavg_end"] = os.getloadavg()
    res["code_changed"] = code_hash() != hash0
    res["seconds_total"] = time.perf_counter() - t_start
    text = report(res)
    stamp = time.strftime("%Y%m%dT%H%M%S")
    name = "pdem" if args.device == "cpu" else "pdem_cuda"
    for target in (args.out / f"{name}.json", args.out / f"{name}_{stamp}.json"):
        target.write_text(json.dumps(res, indent=2, default=str))
    (args.out / f"{name}.md").write_text(text + "\n")
    print(text)
    log(f"done in {res['seconds_total']:.0f} s; wrote {args.out / (name + '.json')}")
    return 0


if __name__ == "__main__":
    sys.exit(main())
