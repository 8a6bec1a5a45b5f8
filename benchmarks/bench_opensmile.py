#!/usr/bin/env python
"""Benchmark: emofeat's openSMILE extractors against raw openSMILE on the same work.

Run from the repository root::

    .venv/bin/python benchmarks/bench_opensmile.py            # full run (~5-8 min)
    .venv/bin/python benchmarks/bench_opensmile.py --quick    # short smoke run (~1 min)
    .venv/bin/python benchmarks/bench_opensmile.py --profile  # add a cProfile of emofeat

What it measures, on one set of 16 kHz files (the 5 LibriVox wavs shipped with pocketsphinx,
3 x 60 s speech-like wavs and 2 x 60 s mp4 videos with 16 kHz AAC audio, made once and
cached under benchmarks/out/media/):

1. LLDs only. Raw openSMILE (``Smile(eGeMAPSv02, LowLevelDescriptors)``; ``process_file``
   on the wavs, PyAV decode + ``process_signal`` on the mp4s, since openSMILE cannot read
   mp4) versus ``emofeat extract --plugin egemaps --set egemaps.functionals=false``,
   in-process (``engine.run`` into a fresh FeatureStore: no interpreter start-up) and as the
   CLI subprocess (wall time, start-up included). The raw work is also run as a subprocess
   script, so the CLI has a like-for-like partner (both pay the interpreter start-up).
2. LLDs + functionals. Raw openSMILE LLDs over the whole signal plus eGeMAPS Functionals
   per 4 s window every 2 s (``process_signal`` per window, the final partial window
   zero-padded exactly as emofeat's SlidingWindows does) versus emofeat egemaps defaults.
3. Decode once for two extractors (the mp4s): egemaps LLDs alone, ComParE LLDs alone, and
   both in one run (in-process); ratio (both) / (sum of separate) and the decoding share
   (``InputResult.decode_seconds``, the number the CLI prints in its '(decoding)' row).

Every measurement is warmed up once, then repeated ``--repeat`` times (default 3; the
different contenders are interleaved within each repetition so that drift in machine load
hits all of them alike) and the median is reported. Results: a markdown table on stdout,
JSON (and the same markdown) under benchmarks/out/.
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

from _common import children_cpu, code_hash, emofeat_exe, git, host, remove_store

HERE = Path(__file__).resolve().parent
LIBRIVOX = "/usr/share/pocketsphinx/test/data/librivox/*.wav"
SR = 16000
WIN, HOP = 4.0, 2.0  # emofeat's egemaps defaults for the functionals

LLD_SETS = ("egemaps.functionals=false",)


# --------------------------------------------------------------------------------------
# raw openSMILE (imports only opensmile, av, numpy: also used by the --raw-worker process)


def decode_audio(path: str):
    """Mono float32 samples at 16 kHz decoded with PyAV (what a raw user would write)."""
    import av
    import numpy as np

    parts = []
    with av.open(path) as container:
        stream = container.streams.audio[0]
        resampler = av.AudioResampler(format="flt", layout="mono", rate=SR)
        for frame in container.decode(stream):
            for out in resampler.resample(frame):
                parts.append(out.to_ndarray().reshape(-1))
        for out in resampler.resample(None):
            parts.append(out.to_ndarray().reshape(-1))
    return np.concatenate(parts).astype(np.float32, copy=False)


def read_wav(path: str):
    import audiofile  # opensmile's own reader (a dependency of opensmile)
    import numpy as np

    signal, sr = audiofile.read(path, always_2d=False)
    assert sr == SR, f"{path}: {sr} Hz, expected {SR}"
    return np.asarray(signal, np.float32)


def windows(n: int, win: int, hop: int):
    """Window starts exactly like emofeat.SlidingWindows: full windows, then a padded one."""
    out, start, last_end = [], 0, 0
    while start + win <= n:
        out.append((start, False))
        last_end = start + win
        start += hop
    if n > last_end and start < n:
        out.append((start, True))
    return out


def raw_run(mode: str, files: list[str], timings: dict | None = None) -> None:
    """The raw openSMILE work on ``files``; ``mode`` is ``lld`` or ``lld+func``.

    Smile objects are built inside (as emofeat builds its extractor inside a run).
    Per-file (wall, CPU) seconds go to ``timings`` when given.
    """
    import numpy as np
    import opensmile

    fs = opensmile.FeatureSet.eGeMAPSv02
    lld = opensmile.Smile(feature_set=fs, feature_level=opensmile.FeatureLevel.LowLevelDescriptors)
    func = (
        opensmile.Smile(feature_set=fs, feature_level=opensmile.FeatureLevel.Functionals)
        if mode == "lld+func"
        else None
    )
    win, hop = int(WIN * SR), int(HOP * SR)
    for f in files:
        t0, c0 = time.perf_counter(), time.process_time()
        is_wav = f.lower().endswith(".wav")
        if func is None and is_wav:
            lld.process_file(f)
        else:
            signal = read_wav(f) if is_wav else decode_audio(f)
            lld.process_signal(signal, SR)
            if func is not None:
                for start, padded in windows(len(signal), win, hop):
                    w = signal[start : start + win]
                    if padded:
                        w = np.concatenate([w, np.zeros(win - len(w), np.float32)])
                    func.process_signal(w, SR)
        if timings is not None:
            timings[f] = (time.perf_counter() - t0, time.process_time() - c0)


# --------------------------------------------------------------------------------------
# emofeat


def emofeat_run(names: list[str], sets: tuple[str, ...], files: list[str], store: Path) -> dict:
    """engine.run over ``files`` into a fresh store; wall time and the engine's own numbers."""
    from emofeat import build_jobs, engine
    from emofeat.store import FeatureStore

    remove_store(store)
    engine._EXTRACTORS.clear()  # each run builds its extractors, like a fresh CLI process
    marks: dict[str, tuple[float, float]] = {}
    last = [0.0, 0.0]

    def on_result(res) -> None:  # wall and CPU from the previous input's commit to this one's
        w, c = time.perf_counter(), time.process_time()
        marks[res.input] = (w - last[0], c - last[1])
        last[:] = [w, c]

    t0, c0 = time.perf_counter(), time.process_time()
    jobs = build_jobs(names, sets, None)
    with FeatureStore(store, mode="a") as st:
        last[:] = [time.perf_counter(), time.process_time()]
        summary = engine.run(
            st, [Path(f) for f in files], jobs, engine.RunOptions(), on_result=on_result
        )
    wall, cpu = time.perf_counter() - t0, time.process_time() - c0
    bad = [r for r in summary.results if r.status != "done"]
    if bad:
        raise RuntimeError(f"emofeat run failed: {[(r.input, r.message) for r in bad]}")
    per_input = {r.input: r.seconds for r in summary.results}
    extractor: dict[str, float] = {}
    for r in summary.results:
        for o in r.outcomes:
            extractor[o.extractor] = extractor.get(o.extractor, 0.0) + o.seconds
    # per input: what is neither the extractors nor decoding (probe, sha256, HDF5 finalize)
    per_input_other = {
        r.input: r.seconds - r.decode_seconds - sum(o.seconds for o in r.outcomes)
        for r in summary.results
    }
    return {
        "wall": wall,
        "cpu": cpu,
        "per_input": per_input,
        "per_input_marks": marks,
        "per_input_other": per_input_other,
        "inputs_total": sum(per_input.values()),
        "decode": sum(r.decode_seconds for r in summary.results),
        "extractor": extractor,
        "keys": {r.input: r.key for r in summary.results},
    }


def cli_run(names: list[str], sets: tuple[str, ...], files: list[str], store: Path) -> dict:
    remove_store(store)
    cmd = [emofeat_exe(), "extract", "-q", "-o", str(store)]
    for n in names:
        cmd += ["--plugin", n]
    for s in sets:
        cmd += ["--set", s]
    cmd += files
    t0, c0 = time.perf_counter(), children_cpu()
    proc = subprocess.run(cmd, capture_output=True, text=True)
    wall, cpu = time.perf_counter() - t0, children_cpu() - c0
    if proc.returncode != 0:
        raise RuntimeError(f"{' '.join(cmd)} failed:\n{proc.stderr[-3000:]}")
    decoding = None
    for line in proc.stderr.splitlines():
        if "(decoding)" in line:
            cells = [c.strip() for c in line.replace("│", "|").split("|") if c.strip()]
            for c in cells:
                if c.endswith(" s") and decoding is None:
                    try:
                        decoding = float(c[:-2])
                    except ValueError:
                        pass
    return {"wall": wall, "cpu": cpu, "decode": decoding, "stderr_tail": proc.stderr[-2500:]}


def raw_subprocess_run(mode: str, files: list[str]) -> dict:
    cmd = [sys.executable, str(Path(__file__).resolve()), "--raw-worker", mode, *files]
    t0, c0 = time.perf_counter(), children_cpu()
    proc = subprocess.run(cmd, capture_output=True, text=True)
    wall, cpu = time.perf_counter() - t0, children_cpu() - c0
    if proc.returncode != 0:
        raise RuntimeError(f"raw worker failed:\n{proc.stderr[-3000:]}")
    return {"wall": wall, "cpu": cpu}


def startup_run(cmd: list[str]) -> dict:
    t0, c0 = time.perf_counter(), children_cpu()
    subprocess.run(cmd, capture_output=True, check=True)
    return {"wall": time.perf_counter() - t0, "cpu": children_cpu() - c0}


# --------------------------------------------------------------------------------------
# inputs and machine


def make_media(folder: Path, quick: bool) -> dict[str, list[str]]:
    from emofeat.samples import write_audio, write_video

    folder.mkdir(parents=True, exist_ok=True)
    librivox = sorted(glob.glob(LIBRIVOX))
    if not librivox:
        raise SystemExit(f"no LibriVox wavs at {LIBRIVOX} (install pocketsphinx test data)")
    if quick:
        librivox = librivox[:2]
        dur, n_wav, n_mp4, tag = 10.0, 1, 1, "q"
    else:
        dur, n_wav, n_mp4, tag = 60.0, 3, 2, "f"
    pitches = (110.0, 160.0, 220.0)
    wavs, mp4s = [], []
    for i in range(n_wav):
        p = folder / f"speech{tag}{i}_{dur:g}s.wav"
        if not p.exists():
            write_audio(p, duration=dur, sampling_rate=SR, f0=pitches[i % 3])
        wavs.append(str(p))
    for i in range(n_mp4):
        p = folder / f"talk{tag}{i}_{dur:g}s.mp4"
        if not p.exists():
            write_video(p, duration=dur, size=(160, 120), sampling_rate=SR, f0=pitches[(i + 1) % 3])
        mp4s.append(str(p))
    return {"librivox wav": librivox, "synthetic wav": wavs, "mp4 (PyAV decode)": mp4s}


def media_seconds(path: str) -> float:
    import av

    with av.open(path) as c:
        s = c.streams.audio[0]
        if s.duration is not None:
            return float(s.duration * s.time_base)
        return float(c.duration or 0) / 1e6


def machine() -> dict:
    import av
    import h5py
    import numpy
    import opensmile

    import emofeat

    return {
        **host(),
        "opensmile": opensmile.__version__,
        "av": av.__version__,
        "ffmpeg": ".".join(map(str, av.library_versions.get("libavcodec", ()))),
        "h5py": h5py.__version__,
        "numpy": numpy.__version__,
        "emofeat": emofeat.__version__,
        "loadavg_start": os.getloadavg(),
        "git": git_state(),
    }


def git_state() -> dict:
    """The project's commit and uncommitted changes (read-only git commands)."""
    changed = [
        line for line in git("status", "--porcelain").splitlines() if "benchmarks/" not in line
    ]
    return {
        "commit": git("rev-parse", "--short", "HEAD"),
        "uncommitted": changed,
        # the code this benchmark runs: emofeat's core and the openSMILE plugin
        "code_sha256": code_hash("emofeat/*.py", "plugins/opensmile.py"),
    }


# --------------------------------------------------------------------------------------
# measuring


def median(xs):
    return statistics.median(xs) if xs else float("nan")


def measure(contenders: dict, repeat: int, log) -> dict[str, list[dict]]:
    """Warm each contender up once, then run ``repeat`` rounds, interleaved."""
    results: dict[str, list[dict]] = {name: [] for name in contenders}
    for name, fn in contenders.items():
        t0 = time.perf_counter()
        fn()
        log(f"  warm-up {name}: {time.perf_counter() - t0:.2f} s")
    for r in range(repeat):
        for name, fn in contenders.items():
            res = fn()
            results[name].append(res)
            log(f"  rep {r + 1}/{repeat} {name}: {res['wall']:.2f} s (CPU {res['cpu']:.2f} s)")
    return results


def check_equivalence(files: list[str], store: Path) -> list[dict]:
    """LLD rows and values of emofeat's store against raw openSMILE, per wav file."""
    import numpy as np
    import opensmile

    from emofeat import engine, open_store

    smile = opensmile.Smile(
        feature_set=opensmile.FeatureSet.eGeMAPSv02,
        feature_level=opensmile.FeatureLevel.LowLevelDescriptors,
    )
    st = open_store(store)
    keys = engine.input_keys([Path(f) for f in files])
    out = []
    for f in files:
        raw = (
            smile.process_file(f).to_numpy(np.float32)
            if f.endswith(".wav")
            else (smile.process_signal(decode_audio(f), SR).to_numpy(np.float32))
        )
        ours = st.read(keys[Path(f)], "egemaps", "lld").data
        n = min(len(raw), len(ours))
        diff = float(np.nanmax(np.abs(raw[:n] - ours[:n]))) if n else float("nan")
        scale = float(np.nanmax(np.abs(raw[:n]))) if n else float("nan")
        out.append(
            {
                "file": Path(f).name,
                "raw_rows": len(raw),
                "emofeat_rows": len(ours),
                "max_abs_diff": diff,
                "max_abs_value": scale,
            }
        )
    return out


def profile_emofeat(files: list[str], store: Path, out_dir: Path, stamp: str) -> dict:
    import cProfile
    import io
    import pstats

    prof = cProfile.Profile(time.process_time)  # CPU clock: robust to competing load
    prof.enable()
    emofeat_run(["egemaps"], LLD_SETS, files, store)
    prof.disable()
    text = {}
    for key in ("tottime", "cumulative"):
        buf = io.StringIO()
        pstats.Stats(prof, stream=buf).sort_stats(key).print_stats(30)
        text[key] = buf.getvalue()
    path = out_dir / f"profile_emofeat_lld_{stamp}.txt"
    path.write_text(
        "cProfile of one in-process emofeat run (egemaps, LLDs only) over all files\n\n"
        + "=== sorted by tottime ===\n"
        + text["tottime"]
        + "\n=== sorted by cumulative ===\n"
        + text["cumulative"]
    )
    stats = pstats.Stats(prof)
    total = stats.total_tt
    # cumulative time of a few functions of interest, by (file suffix, function name)
    interest = {
        "Smile.process_signal (audinterface Feature)": ("feature.py", "process_signal"),
        "audinterface Process._process_signal": ("process.py", "_process_signal"),
        "emofeat _lld_rows (incl. openSMILE)": ("opensmile.py", "_lld_rows"),
        "ItemWriter.append (HDF5 write, gzip)": ("store.py", "append"),
        "ItemWriter.finalize (align + HDF5 write + fsync)": ("store.py", "finalize"),
        "source_identity (sha256 of input)": ("store.py", "source_identity"),
        "FeatureStore.commit (index rewrite + fsync)": ("store.py", "commit"),
        "build_jobs (plugin lookup, settings)": ("api.py", "build_jobs"),
        "Decoder._demux": ("media/decoding.py", "_demux"),
        "probe": ("media/probing.py", "probe"),
        "ContextChunks.push": ("extractor.py", "push"),
        "pandas DataFrame.to_numpy": ("frame.py", "to_numpy"),
    }
    found = {}
    for (fname, _line, func), (_cc, _nc, _tt, ct, _callers) in stats.stats.items():
        for label, (suffix, fn) in interest.items():
            if func == fn and fname.endswith(suffix):
                found[label] = found.get(label, 0.0) + ct
    return {"file": str(path), "total_seconds": total, "cumulative": found}


# --------------------------------------------------------------------------------------
# reporting


def fmt(x, nd=2):
    return "-" if x is None or x != x else f"{x:.{nd}f}"


def ratio(a, b):
    return a / b if a and b else float("nan")


def pct(r):
    return "-" if r != r else f"{r:.3f} ({100 * (r - 1):+.1f}%)"


def build_report(res: dict) -> str:
    m = res["machine"]
    groups = "; ".join(
        f"{g}: {len(v['files'])} files, {v['media_seconds']:.1f} s"
        for g, v in res["groups"].items()
    )
    lines = [
        "## emofeat vs raw openSMILE (eGeMAPSv02)",
        "",
        f"Machine: {m['nproc']} CPUs ({m['cpu']}), {m['platform']}; Python {m['python']}, "
        f"opensmile {m['opensmile']}, av {m['av']} (libavcodec {m['ffmpeg']}), "
        f"h5py {m['h5py']}, numpy {m['numpy']}, emofeat {m['emofeat']}. "
        f"Load average at start / end: {', '.join(f'{x:.2f}' for x in m['loadavg_start'])} / "
        f"{', '.join(f'{x:.2f}' for x in m.get('loadavg_end', ()))}. "
        f"Mode: {res['mode']}, median of {res['repeat']} after 1 warm-up. Project commit "
        f"{m['git']['commit'] or '?'} (emofeat/*.py + plugins/opensmile.py sha256 "
        f"{m['git']['code_sha256']})"
        + (
            f" with uncommitted changes in {len(m['git']['uncommitted'])} file(s)"
            if m["git"]["uncommitted"]
            else ""
        )
        + "."
        + (
            " **emofeat/*.py or plugins/opensmile.py changed during the run**: rerun."
            if m.get("git_end") and m["git_end"]["code_sha256"] != m["git"]["code_sha256"]
            else ""
        ),
        "",
        f"Files: {groups} (total {res['media_seconds_total']:.1f} s of 16 kHz audio).",
        "",
        "Wall: time.perf_counter; CPU: time.process_time of this process (in-process runs) or "
        "getrusage(RUSAGE_CHILDREN) (subprocess runs). CPU time is what to trust when other "
        "processes compete for the CPUs.",
        "",
    ]
    for part, title in (("lld", "1. LLDs only"), ("lld+func", "2. LLDs + functionals (4 s / 2 s)")):
        p = res["parts"][part]
        med, cpu = p["median"], p["median_cpu"]
        lines += [
            f"### {title}",
            "",
            "| contender | wall s | CPU s | x real time (wall) | wall / raw | CPU / raw |",
            "|---|---:|---:|---:|---:|---:|",
        ]
        for name, label in (
            ("raw", "raw openSMILE, in-process"),
            ("emofeat", "emofeat engine.run, in-process"),
            ("raw_subprocess", "raw openSMILE script, subprocess"),
            ("cli", "emofeat CLI, subprocess"),
        ):
            if name not in med:
                continue
            lines.append(
                f"| {label} | {fmt(med[name])} | {fmt(cpu[name])} | "
                f"{fmt(res['media_seconds_total'] / med[name], 0)} | "
                f"{pct(ratio(med[name], med['raw']))} | {pct(ratio(cpu[name], cpu['raw']))} |"
            )
        if "raw_subprocess" in med and "cli" in med:
            lines += [
                "",
                "CLI vs raw script, both paying interpreter start-up: wall "
                f"{pct(ratio(med['cli'], med['raw_subprocess']))}, CPU "
                f"{pct(ratio(cpu['cli'], cpu['raw_subprocess']))}.",
            ]
        lines += [
            "",
            "Per file group (raw: per file; emofeat: per input, from one input's commit to the "
            "next, so the per-input index commit is included; run-level work is not):",
            "",
            "| group | media s | raw CPU s | emofeat CPU s | CPU ratio | raw wall s "
            "| emofeat wall s | wall ratio |",
            "|---|---:|---:|---:|---:|---:|---:|---:|",
        ]
        for g, gv in p["groups"].items():
            lines.append(
                f"| {g} | {res['groups'][g]['media_seconds']:.1f} | {fmt(gv['raw_cpu'])} | "
                f"{fmt(gv['emofeat_cpu'])} | {pct(ratio(gv['emofeat_cpu'], gv['raw_cpu']))} | "
                f"{fmt(gv['raw_wall'])} | {fmt(gv['emofeat_wall'])} | "
                f"{pct(ratio(gv['emofeat_wall'], gv['raw_wall']))} |"
            )
        b = p["breakdown"]
        lines += [
            "",
            f"emofeat in-process breakdown (wall, engine's own numbers, medians): extractor "
            f"(openSMILE + row writes) {fmt(b['extractor'])} s, decoding {fmt(b['decode'])} s, "
            f"other per-input work (probe, sha256, align + HDF5 finalize) "
            f"{fmt(b['input_other'])} s, run-level (build_jobs, store, index commits) "
            f"{fmt(b['run_level'])} s; non-extractor, non-decoding work per input: "
            f"{b['per_input_other_ms']:.0f} ms (median input).",
            "",
        ]
    p = res["parts"]["decode_once"]
    med, cpu = p["median"], p["median_cpu"]
    lines += [
        "### 3. Decode once for two extractors (mp4 files, LLDs only, in-process)",
        "",
        "| run | wall s | CPU s | decoding s | decoding share |",
        "|---|---:|---:|---:|---:|",
    ]
    for name, label in (
        ("egemaps", "egemaps alone"),
        ("compare", "compare alone"),
        ("both", "egemaps + compare, one run"),
    ):
        lines.append(
            f"| {label} | {fmt(med[name])} | {fmt(cpu[name])} | {fmt(p['decode'][name])} | "
            f"{100 * ratio(p['decode'][name], med[name]):.1f}% |"
        )
    lines += [
        f"| sum of the two separate runs | {fmt(med['egemaps'] + med['compare'])} | "
        f"{fmt(cpu['egemaps'] + cpu['compare'])} | "
        f"{fmt(p['decode']['egemaps'] + p['decode']['compare'])} | |",
        "",
        f"(both together) / (sum of separate): wall {fmt(p['ratio_both_vs_sum'], 3)}, "
        f"CPU {fmt(p['ratio_both_vs_sum_cpu'], 3)}.",
        "",
    ]
    su = res.get("startup")
    if su:
        lines += [
            "Start-up alone (median): "
            + ", ".join(
                f"`{k}` {fmt(v['wall'])} s wall / {fmt(v['cpu'])} s CPU" for k, v in su.items()
            )
            + ".",
            "",
        ]
    eq = res.get("equivalence")
    if eq:
        lines += [
            "Same work check (LLD rows and values, emofeat store vs raw openSMILE):",
            "",
            "| file | raw rows | emofeat rows | max abs diff | max abs value |",
            "|---|---:|---:|---:|---:|",
        ]
        for e in eq:
            lines.append(
                f"| {e['file']} | {e['raw_rows']} | {e['emofeat_rows']} | "
                f"{e['max_abs_diff']:.3g} | {e['max_abs_value']:.3g} |"
            )
        if any(e["raw_rows"] != e["emofeat_rows"] or not e["max_abs_diff"] <= 1e-3 for e in eq):
            lines += ["", "**WARNING: emofeat did not store the same LLDs as raw openSMILE.**"]
        lines.append("")
    prof = res.get("profile")
    if prof:
        lines += [
            f"cProfile (CPU-time clock) of one emofeat LLD run ({fmt(prof['total_seconds'])} s "
            f"under the profiler; {prof['file']}), cumulative seconds:",
            "",
        ]
        for k, v in sorted(prof["cumulative"].items(), key=lambda kv: -kv[1]):
            lines.append(f"- {k}: {v:.3f} s")
        lines.append("")
    return "\n".join(lines)


# --------------------------------------------------------------------------------------


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    ap.add_argument("--quick", action="store_true", help="short run: small files, 1 repeat")
    ap.add_argument("--repeat", type=int, default=None, help="repetitions (default 3; quick 1)")
    ap.add_argument("--out", default=str(HERE / "out"), help="results folder")
    ap.add_argument("--profile", action="store_true", help="cProfile one emofeat LLD run")
    ap.add_argument("--no-cli", action="store_true", help="skip the subprocess measurements")
    ap.add_argument("--raw-worker", nargs="+", help=argparse.SUPPRESS)
    args = ap.parse_args()

    if args.raw_worker:  # child process of the 'raw openSMILE script' measurement
        raw_run(args.raw_worker[0], args.raw_worker[1:])
        return

    repeat = args.repeat or (1 if args.quick else 3)
    out_dir = Path(args.out)
    out_dir.mkdir(parents=True, exist_ok=True)
    tmp = out_dir / "tmp"
    shutil.rmtree(tmp, ignore_errors=True)
    tmp.mkdir()
    stamp = time.strftime("%Y%m%dT%H%M%S")
    t_start = time.perf_counter()

    def log(msg: str) -> None:
        print(f"[{time.perf_counter() - t_start:7.1f} s] {msg}", file=sys.stderr, flush=True)

    log("making / finding the input files")
    groups = make_media(out_dir / "media", args.quick)
    files = [f for fs in groups.values() for f in fs]
    mp4s = groups["mp4 (PyAV decode)"]
    res: dict = {
        "benchmark": "bench_opensmile",
        "created": time.strftime("%Y-%m-%dT%H:%M:%S%z"),
        "mode": "quick" if args.quick else "full",
        "repeat": repeat,
        "machine": machine(),
        "groups": {
            g: {"files": fs, "media_seconds": sum(media_seconds(f) for f in fs)}
            for g, fs in groups.items()
        },
        "parts": {},
    }
    res["media_seconds_total"] = sum(g["media_seconds"] for g in res["groups"].values())
    log(f"{len(files)} files, {res['media_seconds_total']:.1f} s of audio")

    store = tmp / "feats.h5"
    cli_store = tmp / "cli.h5"

    for part, names, sets in (
        ("lld", ["egemaps"], LLD_SETS),
        ("lld+func", ["egemaps"], ()),
    ):
        log(f"part {part}")

        def raw_fn(part=part):
            timings: dict = {}
            t0, c0 = time.perf_counter(), time.process_time()
            raw_run(part, files, timings)
            wall, cpu = time.perf_counter() - t0, time.process_time() - c0
            return {"wall": wall, "cpu": cpu, "per_file": timings}

        contenders = {
            "raw": raw_fn,
            "emofeat": lambda names=names, sets=sets: emofeat_run(names, sets, files, store),
        }
        if not args.no_cli:
            if part == "lld":
                contenders["raw_subprocess"] = lambda part=part: raw_subprocess_run(part, files)
            contenders["cli"] = lambda names=names, sets=sets: cli_run(
                names, sets, files, cli_store
            )
        runs = measure(contenders, repeat, log)
        med = {k: median([r["wall"] for r in v]) for k, v in runs.items()}
        med_cpu = {k: median([r["cpu"] for r in v]) for k, v in runs.items()}
        group_times = {}
        for g, fs in groups.items():
            group_times[g] = {
                f"{who}_{what}": median([sum(r[field][f][i] for f in fs) for r in runs[who]])
                for who, field in (("raw", "per_file"), ("emofeat", "per_input_marks"))
                for i, what in enumerate(("wall", "cpu"))
            }
        em = runs["emofeat"]
        breakdown = {
            "extractor": median([sum(r["extractor"].values()) for r in em]),
            "decode": median([r["decode"] for r in em]),
            "input_other": median(
                [r["inputs_total"] - r["decode"] - sum(r["extractor"].values()) for r in em]
            ),
            "run_level": median([r["wall"] - r["inputs_total"] for r in em]),
            "per_input_other_ms": 1000
            * median([median(list(r["per_input_other"].values())) for r in em]),
        }
        res["parts"][part] = {
            "runs": {
                k: [{kk: vv for kk, vv in r.items() if kk not in ("keys",)} for r in v]
                for k, v in runs.items()
            },
            "median": med,
            "median_cpu": med_cpu,
            "ratio_emofeat_vs_raw": ratio(med["emofeat"], med["raw"]),
            "ratio_emofeat_vs_raw_cpu": ratio(med_cpu["emofeat"], med_cpu["raw"]),
            "ratio_cli_vs_raw": ratio(med.get("cli"), med["raw"]),
            "ratio_cli_vs_raw_subprocess": ratio(med.get("cli"), med.get("raw_subprocess")),
            "groups": group_times,
            "breakdown": breakdown,
        }
        if part == "lld":
            log("checking that emofeat computed the same LLDs as raw openSMILE")
            emofeat_run(["egemaps"], LLD_SETS, files, store)
            res["equivalence"] = check_equivalence(files, store)

    log("part decode once (mp4 files)")
    both_sets = ("egemaps.functionals=false", "compare.functionals=false")
    runs = measure(
        {
            "egemaps": lambda: emofeat_run(["egemaps"], both_sets[:1], mp4s, store),
            "compare": lambda: emofeat_run(["compare"], both_sets[1:], mp4s, store),
            "both": lambda: emofeat_run(["egemaps", "compare"], both_sets, mp4s, store),
        },
        repeat,
        log,
    )
    med = {k: median([r["wall"] for r in v]) for k, v in runs.items()}
    med_cpu = {k: median([r["cpu"] for r in v]) for k, v in runs.items()}
    res["parts"]["decode_once"] = {
        "files": mp4s,
        "runs": {
            k: [{kk: vv for kk, vv in r.items() if kk != "keys"} for r in v]
            for k, v in runs.items()
        },
        "median": med,
        "median_cpu": med_cpu,
        "decode": {k: median([r["decode"] for r in v]) for k, v in runs.items()},
        "extractor": {
            k: {e: median([r["extractor"][e] for r in v]) for e in v[0]["extractor"]}
            for k, v in runs.items()
        },
        "ratio_both_vs_sum": ratio(med["both"], med["egemaps"] + med["compare"]),
        "ratio_both_vs_sum_cpu": ratio(med_cpu["both"], med_cpu["egemaps"] + med_cpu["compare"]),
    }

    if not args.no_cli:
        log("start-up times")
        su = {
            "emofeat --version": [emofeat_exe(), "--version"],
            "python -c 'import opensmile, av'": [sys.executable, "-c", "import opensmile, av"],
        }
        res["startup"] = {}
        for k, c in su.items():
            rr = [startup_run(c) for _ in range(max(3, repeat))]
            res["startup"][k] = {
                "wall": median([r["wall"] for r in rr]),
                "cpu": median([r["cpu"] for r in rr]),
            }

    if args.profile:
        log("profiling one emofeat LLD run")
        res["profile"] = profile_emofeat(files, store, out_dir, stamp)

    shutil.rmtree(tmp, ignore_errors=True)
    res["machine"]["loadavg_end"] = os.getloadavg()
    res["machine"]["git_end"] = git_state()
    res["total_seconds"] = time.perf_counter() - t_start
    report = build_report(res)
    res["markdown"] = report
    for name in (f"bench_opensmile_{stamp}", "bench_opensmile_latest"):
        (out_dir / f"{name}.json").write_text(json.dumps(res, indent=1, default=str))
        (out_dir / f"{name}.md").write_text(report + "\n")
    print(report)
    log(f"done in {res['total_seconds']:.0f} s; results in {out_dir}/bench_opensmile_{stamp}.json")


if __name__ == "__main__":
    main()
