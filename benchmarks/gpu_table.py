#!/usr/bin/env python
"""The table of the GPU ready check: results folder -> markdown, put into docs/benchmarks.md.

``benchmarks/gpu_check.sh`` runs it last::

    .venv/bin/python benchmarks/gpu_table.py --results benchmarks/out/gpu_check/<stamp>
    .venv/bin/python benchmarks/gpu_table.py --results DIR --doc /tmp/copy.md   # elsewhere
    .venv/bin/python benchmarks/gpu_table.py --results DIR --print               # stdout only

What it reads from the results folder (every file optional; a missing one is a "-" or the
step's status in the table):

- ``steps.tsv``: one line per step of gpu_check.sh: name, exit status, seconds, time limit
  (``skipped`` as status when the time budget was spent);
- ``gpu.txt``: ``nvidia-smi --query-gpu=name,driver_version,memory.total --format=csv,noheader``;
- ``cuda_tests.xml``: pytest's JUnit XML of the CUDA tests;
- ``faces_<precision>.json`` / ``.npz``: ``bench_faces.py --fps-only --json``;
- ``pdem_<precision>.json`` / ``.npz``: ``bench_pdem.py --precision P --json``;
- ``stages.json``: ``bench_stages.py --device cuda --hwaccel --json``.

The table goes between ``<!-- gpu-check:begin -->`` and ``<!-- gpu-check:end -->`` in the
document (everything between them is replaced; the rest of the file is left as it is). If the
markers are missing, a short section with them is appended at the end. The file is replaced
atomically (written beside it, then renamed).
"""

from __future__ import annotations

import argparse
import json
import math
import os
import sys
import xml.etree.ElementTree as ET
from pathlib import Path

import numpy as np

HERE = Path(__file__).resolve().parent
BEGIN = "<!-- gpu-check:begin -->"
END = "<!-- gpu-check:end -->"
PRECISIONS = ("fp32", "fp16", "bf16")
FACE_ROWS = (
    ("faces (stage alone)", "faces: MTCNN (every 3rd frame) + tracking"),
    ("faces + face_expr", "faces + face_expr"),
    ("faces + face_cnn (EfficientNet-B1, 240 px)", "faces + face_cnn (EfficientNet-B1)"),
    ("faces + vit (ViT-B/16, 224 px)", "faces + vit (ViT-B/16)"),
)
EMPTY = (
    "*Not run yet: no GPU has been lent to a session since this section was written. "
    "`bash benchmarks/gpu_check.sh` on a machine with CUDA fills this table.*"
)


def load_json(path: Path) -> dict | None:
    try:
        return json.loads(path.read_text())
    except (OSError, ValueError):
        return None


def read_steps(folder: Path) -> dict[str, dict]:
    steps: dict[str, dict] = {}
    try:
        lines = (folder / "steps.tsv").read_text().splitlines()
    except OSError:
        return steps
    for line in lines:
        parts = line.split("\t")
        if len(parts) < 3 or not parts[0]:
            continue
        steps[parts[0]] = {
            "status": parts[1],
            "seconds": parts[2],
            "limit": parts[3] if len(parts) > 3 else "",
        }
    return steps


def step_note(steps: dict[str, dict], name: str) -> str | None:
    """Why a step has no result: timed out, failed, skipped (None if it passed or is unknown)."""
    s = steps.get(name)
    if s is None or s["status"] == "0":
        return None
    if s["status"] == "skipped":
        return "skipped (time budget spent)"
    if s["status"] in ("124", "137"):
        return f"timed out ({s['limit']} s)"
    if s["status"] == "2" and name.startswith(("faces", "pdem")):
        return "no CUDA"
    return f"failed (exit {s['status']}, see {name}.log)"


def max_abs_diff(a: np.ndarray, b: np.ndarray) -> float | None:
    """Max abs difference where both are finite (None if shapes differ or nothing overlaps)."""
    if a.shape != b.shape:
        return None
    ok = np.isfinite(a) & np.isfinite(b)
    if not ok.any():
        return None
    return float(np.abs(a[ok].astype(np.float64) - b[ok].astype(np.float64)).max())


def npz(path: Path) -> dict[str, np.ndarray]:
    try:
        with np.load(path) as z:
            return {k: z[k] for k in z.files}
    except (OSError, ValueError):
        return {}


def fmt(x: float | None, nd: int = 1) -> str:
    if x is None or (isinstance(x, float) and not math.isfinite(x)):
        return "-"
    return f"{x:.{nd}f}"


def nd(x: float | None) -> int:
    """Decimals: one below 10, none above."""
    return 1 if x is not None and abs(x) < 10 else 0


def sci(x: float | None) -> str:
    return "-" if x is None else f"{x:.1e}"


def cuda_tests_line(folder: Path, steps: dict[str, dict]) -> str:
    s = steps.get("cuda_tests")
    timing = f" ({s['seconds']} s)" if s else ""
    try:
        root = ET.parse(folder / "cuda_tests.xml").getroot()
    except (OSError, ET.ParseError):
        note = step_note(steps, "cuda_tests") or "not run"
        return f"CUDA tests: {note}{timing}."
    suites = [root] if root.tag == "testsuite" else list(root.iter("testsuite"))
    tests = sum(int(x.get("tests", 0)) for x in suites)
    failed = sum(int(x.get("failures", 0)) + int(x.get("errors", 0)) for x in suites)
    skipped = sum(int(x.get("skipped", 0)) for x in suites)
    names = [f"`{c.get('name')}`" for c in root.iter("testcase")]
    verdict = "**passed**" if failed == 0 and tests > skipped else "**not passed**"
    return (
        f'CUDA tests (`pytest -k "cuda or gpu"`: {", ".join(names) or "none collected"}): '
        f"{verdict}, {tests - failed - skipped} passed, {failed} failed, {skipped} skipped"
        f"{timing}."
    )


def faces_rows(folder: Path, steps: dict[str, dict]) -> list[str]:
    runs = {p: load_json(folder / f"faces_{p}.json") for p in PRECISIONS}
    outs = {p: npz(folder / f"faces_{p}.npz") for p in PRECISIONS}
    rows = []
    for key, label in FACE_ROWS:
        fps, mem, diffs = [], [], []
        for p in PRECISIONS:
            r = runs[p]
            e = (r or {}).get("fps", {}).get(key)
            if e is None or "error" in e:
                note = step_note(steps, f"faces_{p}")
                err = (e or {}).get("error")
                fps.append(note or (f"failed: {err[:60]}" if err else "-"))
                mem.append("-")
                continue
            fps.append(fmt(e["fps"]) + ("" if e.get("finite", True) else " (**non-finite**)"))
            mem.append(fmt(e.get("peak_allocated_mib"), 0))
        for p in ("fp16", "bf16"):
            ref, got = outs["fp32"], outs[p]
            if key.startswith("faces (stage") and "boxes" in ref and "boxes" in got:
                diffs.append(f"boxes {sci(max_abs_diff(ref['boxes'], got['boxes']))} px")
            elif key == "faces + face_expr" and "probs" in ref and "probs" in got:
                diffs.append(f"probs {sci(max_abs_diff(ref['probs'], got['probs']))}")
            elif "face_cnn" in key or "vit" in key:
                diffs.append("n/a (random weights)")
            else:
                diffs.append("-")
        rows.append(
            f"| {label} | frames/s | {' | '.join(fps)} | {' / '.join(mem)} | {' / '.join(diffs)} |"
        )
    return rows


def pdem_row(folder: Path, steps: dict[str, dict]) -> str:
    runs = {p: load_json(folder / f"pdem_{p}.json") for p in PRECISIONS}
    outs = {p: npz(folder / f"pdem_{p}.npz") for p in PRECISIONS}
    cells, mem, diffs = [], [], []
    batch = audio = None
    for p in PRECISIONS:
        e = (runs[p] or {}).get("e")
        if e is None:
            cells.append(step_note(steps, f"pdem_{p}") or "-")
            mem.append("-")
            continue
        batch, audio = e["batch"], e["audio_seconds"]
        cells.append(
            f"{fmt(e['x_realtime'], nd(e['x_realtime']))}x "
            f"({fmt(e['windows_per_s'], nd(e['windows_per_s']))} win/s)"
            + ("" if e.get("finite", True) else " (**non-finite**)")
        )
        mem.append(fmt(e.get("peak_allocated_mib"), 0))
    for p in ("fp16", "bf16"):
        ref, got = outs["fp32"], outs[p]
        if "logits" in ref and "logits" in got:
            diffs.append(f"logits {sci(max_abs_diff(ref['logits'], got['logits']))}")
        else:
            diffs.append("-")
    what = "pdem (torch, 4 s windows, hop 2 s"
    what += f", batch {batch}" if batch else ""
    what += f", {audio:.0f} s of audio)" if audio else ")"
    return (
        f"| {what} | x real time | {' | '.join(cells)} | {' / '.join(mem)} | {' / '.join(diffs)} |"
    )


def stages_lines(folder: Path, steps: dict[str, dict]) -> list[str]:
    st = load_json(folder / "stages.json")
    if st is None:
        note = step_note(steps, "stages")
        return [f"Per-stage costs on the GPU (`bench_stages.py`): {note}."] if note else []
    sizes = list(st["sizes"])
    lines = [
        f"Per stage on this machine (`bench_stages.py --device {st['args']['device']}"
        + (" --hwaccel" if st["args"].get("hwaccel") else "")
        + f"`, {st['args']['precision']}, ms per frame or per crop, wall):",
        "",
        "| stage | " + " | ".join(sizes) + " |",
        "|---|" + "---:|" * len(sizes),
    ]

    def cell(v):
        if v is None:
            return "-"
        if "error" in v:
            return "n/a: " + v["error"][:50]
        return fmt(v["wall_ms"], 2)

    labels = {
        "decode_rgb": "PyAV software decode + rgb24",
        "hw_decode_rgb_host": "NVDEC (PyAV HWAccel) + rgb24 on the host",
        "hw_decode_rgb_gpu": "NVDEC, frames kept on the GPU (DLPack), RGB on the GPU",
        "mtcnn": "MTCNN, "
        + str(next(iter(st["sizes"].values()))["mtcnn"].get("frames_per_call", "?"))
        + " frame(s) per call",
    }
    for k, label in labels.items():
        lines.append(
            f"| {label} | " + " | ".join(cell(st["sizes"][s].get(k)) for s in sizes) + " |"
        )
    for k in st["sizes"][sizes[0]].get("crops", {}):
        lines.append(
            f"| crop_faces {k} | "
            + " | ".join(cell(st["sizes"][s]["crops"].get(k)) for s in sizes)
            + " |"
        )
    nets = "; ".join(
        f"{name} "
        + ", ".join(f"batch {b}: {fmt(x['wall_ms'], 3)} ms/crop" for b, x in v["batches"].items())
        for name, v in st.get("nets", {}).items()
    )
    if nets:
        lines += ["", f"Nets alone: {nets}."]
    return lines


def build_table(folder: Path) -> str:
    steps = read_steps(folder)
    gpu = ""
    try:
        gpu = (folder / "gpu.txt").read_text().strip().splitlines()[0]
    except (OSError, IndexError):
        pass
    meta = None
    for p in PRECISIONS:
        meta = meta or load_json(folder / f"faces_{p}.json")
    m = (meta or {}).get("machine", {})
    dev = (meta or {}).get("device", "cuda")
    repeat = (meta or {}).get("repeat", "?")
    v = (meta or {}).get("video")
    video = f"`{v['name']}` ({v['width']}x{v['height']}, {v['frames']} frames)" if v else "-"
    total = sum(int(s["seconds"]) for s in steps.values() if s["seconds"].isdigit())
    head = (
        f"Run `{folder.name}`: GPU {gpu or m.get('gpu', 'unknown')}"
        + (f", {m['nproc']} CPUs ({m['cpu']})" if m else "")
        + (f", torch {m['torch']}" if m else "")
        + (f", emofeat at {m['git']['commit']}" if m.get("git") else "")
        + f"; steps took {total} s in all."
    )
    lines = [
        head,
        "",
        cuda_tests_line(folder, steps),
        "",
        "| what | unit | fp32 | fp16 | bf16 | peak GPU MiB (fp32 / fp16 / bf16) "
        "| max abs diff vs fp32 (fp16 / bf16) |",
        "|---|---|---:|---:|---:|---:|---|",
        *faces_rows(folder, steps),
        pdem_row(folder, steps),
        "",
        f"Faces: `bench_faces.py --fps-only --device {dev}` on {video}, warm extractors, "
        f"median of {repeat}, decoding included; fp16 = the extractors' `half` setting, bf16 = "
        "autocast around the crop nets (MTCNN stays fp32 in both). PDEM: `bench_pdem.py "
        f"--precision P --device {dev}`, torch backend; fp16 = `pdem.half`, bf16 = autocast. "
        "Peak memory: `torch.cuda.max_memory_allocated` per contender, models included.",
    ]
    extra = stages_lines(folder, steps)
    if extra:
        lines += ["", *extra]
    bad = {k: v for k, v in steps.items() if v["status"] != "0"}
    if bad:
        lines += [
            "",
            "Steps that did not pass: "
            + ", ".join(f"{k} ({step_note(steps, k)})" for k in bad)
            + ".",
        ]
    return "\n".join(lines)


def put_into_doc(doc: Path, table: str) -> str:
    """Replace what is between the markers (append a section with them if missing)."""
    text = doc.read_text()
    block = f"{BEGIN}\n{table.strip()}\n{END}"
    a, b = text.find(BEGIN), text.find(END)
    if a >= 0 and b > a:
        new = text[:a] + block + text[b + len(END) :]
        how = "replaced the table between the markers"
    elif a >= 0 or b >= 0:
        raise SystemExit(f"{doc}: only one of the markers {BEGIN} / {END} is there (or in reverse)")
    else:
        new = text.rstrip("\n") + "\n\n### GPU ready check: latest results\n\n" + block + "\n"
        how = "no markers found: appended a section with them"
    tmp = doc.with_name(f".{doc.name}.gpu_table.tmp")
    tmp.write_text(new)
    os.replace(tmp, doc)
    return how


def main(argv: list[str] | None = None) -> int:
    ap = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    ap.add_argument("--results", type=Path, help="the results folder of gpu_check.sh")
    ap.add_argument("--doc", type=Path, default=HERE.parent / "docs" / "benchmarks.md")
    ap.add_argument("--print", action="store_true", help="print the table, leave the doc alone")
    ap.add_argument(
        "--empty", action="store_true", help="the placeholder (no results) instead of a table"
    )
    args = ap.parse_args(argv)
    if args.empty:
        table = EMPTY
    elif args.results is None or not args.results.is_dir():
        ap.error("--results DIR (an existing folder) is needed unless --empty")
    else:
        table = build_table(args.results)
    if args.print:
        print(table)
        return 0
    how = put_into_doc(args.doc, table)
    print(f"{args.doc}: {how}", file=sys.stderr)
    return 0


if __name__ == "__main__":
    sys.exit(main())
