"""The ABAW recipes: ``abaw_va`` (valence-arousal) and ``abaw_expr`` (8 expression classes).

One run: read the Aff-Wild2 (-shaped) tree and the feature store, resample the features to
the target rate, normalise, cut windows, train one temporal model per modality (and a
feature-level fusion model when both modalities are there, and optionally the functionals +
Kernel ELM family), fuse their frame-level predictions at decision level, smooth, score on
the validation split, and write predictions, plots and the challenge submission files.
See docs/recipes.md for the configuration keys and the run directory.
"""

from __future__ import annotations

import json
import time
from pathlib import Path
from typing import Any

import numpy as np
import torch

from emofeat import open_store
from emofeat.recipes import RecipeConfig, RecipeError, RecipeRun
from emofeat_recipes import fusion as fusion_mod
from emofeat_recipes.data import (
    EpochLoader,
    StreamRef,
    TrackData,
    WindowSet,
    coverage,
    load_split,
    normalise,
    resolve_inputs,
)
from emofeat_recipes.datasets.affwild2 import EXPR_LABELS, VA_LABELS, AffWild2, Track
from emofeat_recipes.datasets.join import FeatureIndex
from emofeat_recipes.kelm import search_c, window_functionals, window_predictions
from emofeat_recipes.losses import build_loss
from emofeat_recipes.metrics import ccc, expr_f1, va_score
from emofeat_recipes.models import MODEL_KEYS, build_model
from emofeat_recipes.plan import Plan, build_plan, default_store, extract_command, run_plan
from emofeat_recipes.postprocess import search_smoothing, smooth
from emofeat_recipes.predict import kelm_file, save_decision_data, save_kelm, write_predict_spec
from emofeat_recipes.submission import write_submission
from emofeat_recipes.train import TrainConfig, Trainer, set_seed
from emofeat_recipes.windows import seconds_to_frames, spread_back, to_label_frames

# ----------------------------------------------------------------------------- scoring


def _pool(preds: dict[str, np.ndarray], tracks: list[TrackData]) -> tuple[np.ndarray, np.ndarray]:
    """Concatenate per-track frame predictions and labels over all valid label frames."""
    p, y = [], []
    for td in tracks:
        if td.labels is None or td.track.name not in preds:
            continue
        ok = td.labels.valid
        p.append(preds[td.track.name][ok])
        y.append(td.labels.values[ok])
    if not p:
        return np.zeros((0,)), np.zeros((0,))
    return np.concatenate(p), np.concatenate(y)


def score(task: str, preds: dict[str, np.ndarray], tracks: list[TrackData]) -> dict[str, Any]:
    """The official metric pooled over every valid frame of ``tracks``.

    VA predictions are ``(n, 2)`` values; EXPR predictions are ``(n, 8)`` class scores.
    """
    p, y = _pool(preds, tracks)
    if task == "VA":
        return va_score(p, y) if len(p) else {"valence": 0.0, "arousal": 0.0, "mean": 0.0}
    if not len(p):
        return {"f1": 0.0}
    return expr_f1(np.argmax(p, axis=1), y)


def main_score(task: str, s: dict[str, Any]) -> float:
    return float(s["mean"] if task == "VA" else s["f1"])


def _pooled_metric(task: str):
    """``metric(labels, predictions)`` on pooled frames; invalid label markers are skipped."""
    if task == "VA":

        def va(y: np.ndarray, p: np.ndarray) -> float:
            return va_score(p, y, mask=(y > -2).all(axis=1))["mean"]

        return va

    def expr(y: np.ndarray, p: np.ndarray) -> float:
        return expr_f1(np.argmax(p, axis=1), y, mask=y >= 0)["f1"]

    return expr


# ----------------------------------------------------------------------------- models


def _forward(model: torch.nn.Module, batch: dict[str, torch.Tensor], streams: list[str]):
    xs = {m: batch[f"x_{m}"] for m in streams}
    valid = batch["frame_valid"]
    feat_ok = torch.stack([batch[f"mask_{m}"] for m in streams]).any(dim=0)
    # frames with no valid feature still get a prediction: they attend to their neighbours
    mask = valid & feat_ok
    mask = torch.where(mask.any(dim=1, keepdim=True), mask, valid)
    return model(xs, mask)


def _loss_fn(task: str, cfg: dict[str, Any], train: list[TrackData]):
    """The configured loss (``loss`` section, its names checked by the recipe's schema),
    pooled over the valid label frames of a batch."""
    name = cfg["name"]
    kw: dict[str, Any] = {}
    if task == "EXPR":
        if cfg["weight"] not in ("none", None):
            kw["weight"] = cfg["weight"]
            kw["labels"] = np.concatenate([td.y[td.y_valid] for td in train])
        if name == "focal":
            kw["gamma"] = float(cfg["gamma"])
        else:
            kw["label_smoothing"] = float(cfg["label_smoothing"])
    loss = build_loss(name, **kw)
    dims = 2 if task == "VA" else len(EXPR_LABELS)

    def fn(out: torch.Tensor, batch: dict[str, torch.Tensor]) -> torch.Tensor:
        ok = batch["y_valid"].reshape(-1)
        if task == "VA":
            return loss(out.reshape(-1, dims), batch["y"].reshape(-1, 2).float(), ok)
        return loss(out.reshape(-1, dims).float(), batch["y"].reshape(-1).long(), ok)

    return fn


@torch.no_grad()
def predict(
    model: torch.nn.Module,
    tracks: list[TrackData],
    streams: list[str],
    length: int,
    hop: int,
    task: str,
    device: str,
    batch_size: int = 64,
) -> dict[str, np.ndarray]:
    """Frame-level predictions (every label frame) for each track.

    Window predictions are spread back over their span and averaged where windows overlap
    (EXPR: class probabilities), then interpolated from the sampled frames to every label
    frame.
    """
    model.eval()
    out: dict[str, np.ndarray] = {}
    for td in tracks:
        if len(td.index) == 0:
            continue
        ws = WindowSet([td], length, hop, task)
        chunks = []
        for a in range(0, len(ws), batch_size):
            batch = ws.gather(np.arange(a, min(len(ws), a + batch_size)))
            batch = {k: v.to(device) for k, v in batch.items()}
            o = _forward(model, batch, streams).float()
            if task == "EXPR":
                o = torch.softmax(o, dim=-1)
            chunks.append(o.cpu().numpy())
        wp = np.concatenate(chunks)
        local = np.stack([ws.starts, ws.starts + length], axis=1)
        frame = spread_back(wp, local, len(td.index))
        out[td.track.name] = to_label_frames(frame, td.index, td.n_frames)
    return out


def train_neural(
    ctx: RecipeRun,
    name: str,
    spec: dict[str, Any],
    streams: list[str],
    train: list[TrackData],
    dev: list[TrackData],
    task: str,
    length: int,
    hop: int,
) -> tuple[torch.nn.Module, dict[str, Any]]:
    """Train one temporal (or feature-fusion) model; return it with its best weights."""
    cfg = ctx.config
    dims = {m: int(train[0].x[m].shape[1]) for m in streams}
    out_dim = 2 if task == "VA" else len(EXPR_LABELS)
    # the config holds the keys of every model type: keep those of the chosen type
    kind = spec.get("type", "transformer")
    allowed = MODEL_KEYS.get(kind, {})
    spec = {k: v for k, v in spec.items() if k == "type" or k in allowed}
    model = build_model(spec, dims, out_dim, "tanh" if task == "VA" else "linear")
    tc = TrainConfig.from_dict(
        {**cfg["train"], "device": cfg["device"], "seed": cfg["seed"], "quiet": ctx.quiet}
    )
    windows = WindowSet(train, length, hop, task)
    loader = EpochLoader(windows, tc.batch_size, cfg["seed"])

    def evaluate(m: torch.nn.Module) -> dict[str, float]:
        preds = predict(m, dev, streams, length, hop, task, tc.device)
        s = score(task, preds, dev)
        return {"score": main_score(task, s), **{k: v for k, v in s.items() if k != "per_class"}}

    run_dir = ctx.run_dir / "models" / name
    trainer = Trainer(
        model,
        _loss_fn(task, cfg["loss"], train),
        tc,
        run_dir,
        evaluate,
        forward=lambda m, b: _forward(m, b, streams),
        meta={"streams": streams, "dims": dims, "task": task, "spec": spec},
    )
    result = trainer.fit(loader, resume=bool(cfg.get("resume")))
    # fit() leaves the best epoch's weights in the model (TrainConfig.restore_best)
    ctx.log.info("%s: best dev score %.4f", name, result.get("best_score", float("nan")))
    return model, result


def train_kelm(
    ctx: RecipeRun,
    modality: str,
    train: list[TrackData],
    dev: list[TrackData],
    tracks: list[list[TrackData]],
    task: str,
    length: int,
    hop: int,
) -> list[dict[str, np.ndarray]]:
    """The functionals family: window statistics -> Kernel ELM, C searched on dev windows."""
    fc = ctx.config["functionals"]
    stats = tuple(fc["stats"])

    def windows_of(group: list[TrackData]):
        ws = WindowSet(group, length, hop, task)
        b = ws.gather(np.arange(len(ws)))
        x = b[f"x_{modality}"].numpy()
        valid = b[f"mask_{modality}"].numpy()
        feats = window_functionals(x, valid, stats)
        y = b["y"].numpy() if "y" in b else None
        yv = b["y_valid"].numpy() if "y_valid" in b else None
        return ws, feats, y, yv

    def targets(y: np.ndarray, yv: np.ndarray) -> tuple[np.ndarray, np.ndarray]:
        keep = yv.any(axis=1)
        if task == "VA":
            w = yv[..., None].astype(np.float64)
            t = (y * w).sum(axis=1) / np.maximum(w.sum(axis=1), 1)
        else:
            t = np.array(
                [
                    np.bincount(yy[v], minlength=8).argmax() if v.any() else 0
                    for yy, v in zip(y, yv, strict=True)
                ]
            )
        return t, keep

    _, xtr, ytr, yvtr = windows_of(train)
    _, xdv, ydv, yvdv = windows_of(dev)
    ttr, ktr = targets(ytr, yvtr)
    tdv, kdv = targets(ydv, yvdv)
    xtr, ttr = xtr[ktr], ttr[ktr]
    limit = int(fc["max_train_windows"])
    if len(xtr) > limit:  # the kernel matrix is N x N: subsample for memory
        keep = np.random.default_rng(ctx.config["seed"]).choice(len(xtr), limit, replace=False)
        xtr, ttr = xtr[np.sort(keep)], ttr[np.sort(keep)]
    if task == "VA":

        def metric(true: np.ndarray, pred: np.ndarray) -> float:
            return va_score(pred, true)["mean"]
    else:

        def metric(true: np.ndarray, pred: np.ndarray) -> float:
            p = pred if pred.ndim == 1 else np.argmax(pred, axis=1)
            return expr_f1(p, true)["f1"]

    model, scores = search_c(
        xtr,
        ttr,
        xdv[kdv],
        tdv[kdv],
        metric,
        Cs=tuple(float(c) for c in fc["C"]),
        kernel=fc["kernel"],
        task="regression" if task == "VA" else "classification",
    )
    ctx.log.info("kelm %s: C scores %s", modality, scores)
    save_kelm(ctx.run_dir / kelm_file(modality), model, stats)
    outs = []
    for group in tracks:
        preds: dict[str, np.ndarray] = {}
        for td in group:
            if len(td.index) == 0:
                continue
            ws, feats, _, _ = windows_of([td])
            wp = window_predictions(model, feats, task, len(EXPR_LABELS))
            local = np.stack([ws.starts, ws.starts + length], axis=1)
            frame = spread_back(wp, local, len(td.index))
            preds[td.track.name] = to_label_frames(frame, td.index, td.n_frames)
        outs.append(preds)
    return outs


# ----------------------------------------------------------------------------- outputs


def _write_predictions(folder: Path, preds: dict[str, np.ndarray], task: str) -> None:
    folder.mkdir(parents=True, exist_ok=True)
    for track, p in preds.items():
        if task == "VA":
            header = ",".join(VA_LABELS)
            rows = np.clip(p, -1, 1)
            np.savetxt(folder / f"{track}.csv", rows, delimiter=",", header=header, comments="")
        else:
            header = ",".join(["class", *EXPR_LABELS])
            rows = np.column_stack([np.argmax(p, axis=1), p])
            fmt = ["%d"] + ["%.5f"] * p.shape[1]
            np.savetxt(
                folder / f"{track}.csv", rows, delimiter=",", header=header, comments="", fmt=fmt
            )


def _write_labels(folder: Path, dev: list[TrackData], task: str) -> list[str]:
    """The validation tracks' labels at full rate, one CSV per track with the prediction
    files' columns: VA ``valence,arousal`` (NaN where the frame is invalid), EXPR ``class``
    (-1 where invalid). Plots and reports read them next to the predictions."""
    folder.mkdir(parents=True, exist_ok=True)
    written = []
    for td in dev:
        if td.labels is None:
            continue
        lab = td.labels
        path = folder / f"{td.track.name}.csv"
        if task == "VA":
            rows = np.where(lab.valid[:, None], lab.values, np.nan)
            np.savetxt(path, rows, delimiter=",", header=",".join(VA_LABELS), comments="")
        else:
            rows = np.where(lab.valid, lab.values, -1).astype(np.int64)
            np.savetxt(path, rows, delimiter=",", header="class", comments="", fmt="%d")
        written.append(path.name)
    return written


def _plots(
    run_dir: Path,
    task: str,
    best: str,
    preds: dict[str, np.ndarray],
    dev: list[TrackData],
    histories: dict[str, dict[str, Any]],
) -> list[str]:
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    folder = run_dir / "plots"
    folder.mkdir(exist_ok=True)
    written = []
    if task == "VA":
        for td in dev[:4]:
            if td.track.name not in preds or td.labels is None:
                continue
            p = preds[td.track.name]
            t = np.arange(len(p)) / td.fps
            fig, axes = plt.subplots(2, 1, figsize=(10, 5), sharex=True)
            for k, (ax, lab) in enumerate(zip(axes, VA_LABELS, strict=True)):
                y = np.where(td.labels.valid, td.labels.values[:, k], np.nan)
                ax.plot(t, y, label="label", color="black", lw=1)
                ax.plot(t, p[:, k], label=best, color="tab:red", lw=1)
                ax.set_ylabel(lab)
                ax.set_ylim(-1.05, 1.05)
            axes[0].legend(loc="upper right")
            axes[1].set_xlabel("time (s)")
            fig.suptitle(f"{td.track.name}: {best}")
            path = folder / f"traces_{td.track.name}.png"
            fig.savefig(path, dpi=80)
            plt.close(fig)
            written.append(path.name)
    else:
        from emofeat_recipes.metrics import confusion

        p, y = _pool(preds, dev)
        cm = confusion(np.argmax(p, axis=1), y)
        fig, ax = plt.subplots(figsize=(6, 5))
        norm = cm / np.maximum(cm.sum(axis=1, keepdims=True), 1)
        ax.imshow(norm, cmap="Blues", vmin=0, vmax=1)
        ax.set_xticks(range(8), EXPR_LABELS, rotation=45, ha="right")
        ax.set_yticks(range(8), EXPR_LABELS)
        for i in range(8):
            for j in range(8):
                ax.text(j, i, str(int(cm[i, j])), ha="center", va="center", fontsize=7)
        ax.set_xlabel("predicted")
        ax.set_ylabel("label")
        ax.set_title(f"confusion (validation): {best}")
        fig.tight_layout()
        path = folder / "confusion.png"
        fig.savefig(path, dpi=80)
        plt.close(fig)
        written.append(path.name)
    for name, hist in histories.items():
        epochs = hist.get("history") or []
        if not epochs:
            continue
        fig, ax = plt.subplots(figsize=(6, 3.5))
        ax.plot([e.get("train_loss") for e in epochs], label="train loss")
        ax2 = ax.twinx()
        ax2.plot([(e.get("dev") or {}).get("score") for e in epochs], color="tab:green")
        ax.set_xlabel("epoch")
        ax.set_ylabel("train loss")
        ax2.set_ylabel("dev score", color="tab:green")
        ax.set_title(f"training: {name}")
        fig.tight_layout()
        path = folder / f"training_{name}.png"
        fig.savefig(path, dpi=80)
        plt.close(fig)
        written.append(path.name)
    return written


# ----------------------------------------------------------------------------- the run


def _window_frames(cfg: RecipeConfig) -> tuple[int, int]:
    w = cfg.window  # unit: frames or seconds (the schema's)
    if w.unit == "seconds":
        return seconds_to_frames(w.length, cfg.fps), seconds_to_frames(w.hop, cfg.fps)
    return int(w.length), int(w.hop)


def run_abaw(ctx: RecipeRun, task: str) -> dict[str, Any]:
    """Train, fuse, score and write everything for one ABAW track (``"VA"`` or ``"EXPR"``).

    The training loop logs through this package's loggers: ``run_recipe`` sends them to
    ``run.log`` too.
    """
    return _run_abaw(ctx, task)


def _store_paths(ctx: RecipeRun) -> tuple[list[Path], Path]:
    """The configured stores, and the one that missing features are extracted into."""
    cfg = ctx.config
    paths = [Path(p).expanduser() for p in cfg.features or []]  # a list (the schema's)
    target = paths[0] if paths else default_store(ctx.run_dir.parent, cfg["data"])
    return paths or [target], target


def _open_index(paths: list[Path]) -> FeatureIndex:
    return FeatureIndex([open_store(p) for p in paths if p.exists()])


def _labelled_frames(ds: AffWild2, tracks: list[Track], n_test: dict[str, int]) -> dict[str, int]:
    out: dict[str, int] = {}
    for t in tracks:
        if t.annotation is not None:
            out[t.name] = int(ds.labels(t).valid.sum())
        else:
            out[t.name] = int(n_test.get(t.name, 0))
    return out


def _coverage_table(cov: dict[str, dict[str, Any]], refs: dict[str, list[StreamRef]]) -> list[str]:
    ids = ", ".join(r.id for rs in refs.values() for r in rs)
    lines = [f"coverage of the inputs ({ids}):"]
    lines.append(
        f"  {'split':<11}{'tracks':>8}{'with all':>10}{'frames':>11}{'with all':>11}{'':>9}"
    )
    for split, c in cov.items():
        lines.append(
            f"  {split:<11}{c['tracks']:>8}{c['tracks_covered']:>10}{c['frames']:>11,}"
            f"{c['frames_covered']:>11,}{c['coverage']:>9.1%}"
        )
    return lines


def _fill_command(ctx: RecipeRun, target: Path, plan: Plan) -> str:
    """How the missing inputs get filled: the recipe again, the extract commands by hand,
    and why the tracks the plan cannot fill are out of its reach."""
    cfg = ctx.config
    name = ctx.recipe.name
    if not cfg["extract"]["enabled"]:
        return (
            f"Fill them with: emofeat recipe run {name} --data {cfg['data']} --features "
            f"{target} (without --no-extract: it extracts what is missing)"
        )
    parts = []
    cmds = [
        extract_command(step.extractors, step.settings, step.inputs, target)
        for step in plan.steps
        if step.inputs
    ]
    if cmds:
        parts.append("Fill them with: " + "; ".join(cmds))
    if plan.unplannable:
        reasons = [f"{track}: {why}" for track, why in list(plan.unplannable.items())[:3]]
        more = len(plan.unplannable) - len(reasons)
        parts.append(
            f"Cannot be planned ({len(plan.unplannable)}): "
            + "; ".join(reasons)
            + (f"; and {more} more" if more > 0 else "")
        )
    return ". ".join(parts) or f"Fill them with: emofeat recipe run {name} --data {cfg['data']}"


def _used_inputs(cfg: dict[str, Any]) -> dict[str, list[str]]:
    """The configured inputs of the modalities some model uses."""
    models = cfg["models"]
    shared = bool(models.get("fusion")) or bool(cfg["functionals"]["enabled"])
    return {
        m: list(names or [])
        for m, names in cfg["inputs"].items()
        if m not in ("video", "audio") or models.get(m, True) or shared
    }


def _run_abaw(ctx: RecipeRun, task: str) -> dict[str, Any]:
    cfg = ctx.config
    log = ctx.log
    if not cfg.get("data"):
        raise RecipeError("--data is required (or set 'data' in the config): the Aff-Wild2 root")
    set_seed(int(cfg["seed"]), deterministic=True)
    t0 = time.perf_counter()
    ds = AffWild2(cfg["data"])
    for w in ds.warnings:
        log.warning("dataset: %s", w)
    train_t = ds.tracks(task, "train")
    dev_t = ds.tracks(task, "validation")
    if not train_t or not dev_t:
        raise RecipeError(
            f"{cfg['data']}: {task} needs train and validation tracks "
            f"(found {len(train_t)} and {len(dev_t)})"
        )
    test_t = ds.test_tracks(task)
    # test tracks have no labels: their length is the number of template rows
    n_test: dict[str, int] = {}
    for name, frame in ds.test_rows(task) if test_t else []:
        n_test[name] = max(n_test.get(name, 0), int(frame))

    # ---- the stores, and what they lack (extracted now unless --no-extract)
    paths, target = _store_paths(ctx)
    ec = cfg["extract"]
    for p in paths:
        if not p.exists() and not (ec["enabled"] and p == target):
            if cfg.get("features"):
                raise RecipeError(f"--features {p}: no such store")
            raise RecipeError(
                f"no features yet for {cfg['data']} (the default store {p} does not exist) "
                "and extraction is off (--no-extract): run without --no-extract, or give "
                "--features STORE"
            )
    index = _open_index(paths)
    inputs = _used_inputs(cfg)
    everything = [*train_t, *dev_t, *test_t]
    plan = build_plan(ds, index, everything, inputs, ec, target)
    failures: list[str] = []
    for line in plan.describe():
        log.info("%s", line)
    if not plan.empty and ec["enabled"]:
        failures = run_plan(
            plan,
            log,
            device=ec.get("device") or cfg["device"],
            workers=int(ec.get("workers") or 1),
            threads=int(ec.get("threads") or 0) or None,
            progress=not ctx.quiet,
        )
        for f in failures[:20]:
            log.warning("extraction failed: %s", f)
        if len(failures) > 20:
            log.warning("... and %d more extraction failures", len(failures) - 20)
        index = _open_index(paths)
        plan = build_plan(ds, index, everything, inputs, ec, target)  # what is still missing
    elif not plan.empty:
        log.warning("extraction disabled (--no-extract): the missing inputs stay missing")
    refs = resolve_inputs(index, inputs)
    log.info(
        "inputs: %s from %s",
        {m: [r.id for r in rs] for m, rs in refs.items()},
        ", ".join(map(str, paths)),
    )

    # ---- the coverage gate: never train on a sliver of the data
    splits = {"train": train_t, "validation": dev_t, "test": test_t}
    frames = _labelled_frames(ds, everything, n_test)
    cov = coverage(index, splits, refs, frames)
    for line in _coverage_table(cov, refs):
        log.info("%s", line)
    (ctx.run_dir / "coverage.json").write_text(json.dumps(cov, indent=2))
    need = float(cfg["min_coverage"])
    low = {s: c for s, c in cov.items() if c["tracks"] and c["coverage"] < need}
    missing_all = {t: m for c in cov.values() for t, m in c["missing"].items()}
    if low:
        names = list(dict.fromkeys(t for c in low.values() for t in c["missing"]))
        shown = ", ".join(names[:5]) + (f" and {len(names) - 5} more" if len(names) > 5 else "")
        raise RecipeError(
            "coverage below min_coverage="
            + f"{need:.2f}: "
            + ", ".join(f"{s} {c['coverage']:.1%}" for s, c in low.items())
            + f" of the labelled frames have every input. {len(names)} "
            + f"{'track lacks' if len(names) == 1 else 'tracks lack'} inputs "
            + f"({shown}). "
            + (f"Extraction failed: {'; '.join(failures[:3])}. " if failures else "")
            + f"{_fill_command(ctx, target, plan)} "
            + "(or lower min_coverage with --set min_coverage=...)"
        )
    if missing_all:
        log.warning(
            "%d tracks lack some inputs (their frames are masked): %s",
            len(missing_all),
            ", ".join(list(missing_all)[:10]),
        )

    fps = float(cfg["fps"])
    train = load_split(ds, index, train_t, refs, fps, log)
    dev = load_split(ds, index, dev_t, refs, fps, log)
    test = load_split(ds, index, test_t, refs, fps, log, n_frames=n_test) if test_t else []
    missing = {
        td.track.name: td.missing for group in (train, dev, test) for td in group if td.missing
    }
    normalisers = normalise(train, [dev, test], cfg["normalise"])
    length, hop = _window_frames(cfg)
    log.info(
        "%d train, %d validation, %d test tracks; windows %d/%d frames at %.1f fps (%.1f s)",
        len(train),
        len(dev),
        len(test),
        length,
        hop,
        fps,
        time.perf_counter() - t0,
    )

    # ---- base models: one per modality, feature fusion, functionals + KELM
    modalities = [m for m in ("video", "audio") if m in refs]
    dev_preds: dict[str, dict[str, np.ndarray]] = {}
    test_preds: dict[str, dict[str, np.ndarray]] = {}
    histories: dict[str, dict[str, Any]] = {}
    wanted = cfg["models"]
    for m in modalities:
        if not wanted.get(m, True):
            continue
        model, hist = train_neural(ctx, m, cfg["model"], [m], train, dev, task, length, hop)
        histories[m] = hist
        dev_preds[m] = predict(model, dev, [m], length, hop, task, cfg["device"])
        if test:
            test_preds[m] = predict(model, test, [m], length, hop, task, cfg["device"])
    if wanted.get("fusion") and len(modalities) == 2:
        spec = {**cfg["fusion_model"], "type": "fusion", "audio": "audio"}
        model, hist = train_neural(
            ctx, "fusion", spec, ["video", "audio"], train, dev, task, length, hop
        )
        histories["fusion"] = hist
        dev_preds["fusion"] = predict(
            model, dev, ["video", "audio"], length, hop, task, cfg["device"]
        )
        if test:
            test_preds["fusion"] = predict(
                model, test, ["video", "audio"], length, hop, task, cfg["device"]
            )
    if cfg["functionals"]["enabled"]:
        for m in modalities:
            d, t = train_kelm(ctx, m, train, dev, [dev, test], task, length, hop)
            dev_preds[f"{m}_kelm"] = d
            if test:
                test_preds[f"{m}_kelm"] = t
    if not dev_preds:
        raise RecipeError("no model was trained: check the 'models' section and the inputs")

    # ---- decision-level fusion over the base models (weights found on dev)
    base = sorted(dev_preds)
    fused_base: list[str] = []
    dc = cfg["decision"]
    if len(base) > 1 and dc["methods"]:
        fused_dev, fused_test = decision_fusion(ctx, task, base, dev_preds, test_preds, dev, test)
        fused_base = base
        dev_preds.update(fused_dev)
        test_preds.update(fused_test)

    # ---- smoothing searched on dev, metrics before and after
    metrics: dict[str, Any] = {"task": task, "models": {}}
    smooth_kind = cfg["smoothing"]["kind"]
    for name, preds in dev_preds.items():
        raw = score(task, preds, dev)
        labels = {td.track.name: td.labels.values for td in dev if td.labels is not None}
        window, scores = search_smoothing(
            {k: v for k, v in preds.items() if k in labels},
            labels,
            _pooled_metric(task),
            windows=tuple(cfg["smoothing"]["windows"]),
            kind=smooth_kind,
        )
        sm = {k: smooth(v, window, smooth_kind) for k, v in preds.items()}
        dev_preds[name] = sm
        if name in test_preds:
            test_preds[name] = {
                k: smooth(v, window, smooth_kind) for k, v in test_preds[name].items()
            }
        metrics["models"][name] = {
            "raw": raw,
            "smoothed": score(task, sm, dev),
            "smoothing_window": int(window),
            "smoothing_scores": {str(k): float(v) for k, v in scores.items()},
        }
    best = max(metrics["models"], key=lambda n: main_score(task, metrics["models"][n]["smoothed"]))
    metrics["best"] = best
    metrics["best_score"] = main_score(task, metrics["models"][best]["smoothed"])
    metrics["missing_features"] = missing
    metrics["coverage"] = cov
    metrics["stores"] = [str(p) for p in paths]
    metrics["inputs"] = {m: [r.id for r in rs] for m, rs in refs.items()}
    metrics["tracks"] = {"train": len(train), "validation": len(dev), "test": len(test)}
    log.info("best on validation: %s = %.4f", best, metrics["best_score"])

    # ---- outputs
    for name, preds in dev_preds.items():
        _write_predictions(ctx.run_dir / "predictions" / "validation" / name, preds, task)
    for name, preds in test_preds.items():
        _write_predictions(ctx.run_dir / "predictions" / "test" / name, preds, task)
    _write_labels(ctx.run_dir / "labels" / "validation", dev, task)
    metrics["plots"] = _plots(ctx.run_dir, task, best, dev_preds[best], dev, histories)
    template = ds.template(task) or (ds.test_rows(task) if test else None)
    if test and template is not None and best in test_preds:
        sub = ctx.run_dir / "submission"
        sub.mkdir(exist_ok=True)
        out = write_submission(
            template,
            test_preds[best],
            sub / ("VA_predictions.txt" if task == "VA" else "EXPR_predictions.txt"),
            task,
        )
        metrics["submission"] = str(out.relative_to(ctx.run_dir))
        log.info("submission written: %s", out)
    elif test_t:
        log.warning("test tracks listed but no submission template found: no submission written")
    # what 'emofeat predict' needs to apply the run to new media
    write_predict_spec(
        ctx, task, refs, index, train_t, normalisers, metrics, fused_base, length, hop
    )
    (ctx.run_dir / "metrics.json").write_text(json.dumps(metrics, indent=2, default=float))
    return {
        "best": best,
        "score": metrics["best_score"],
        **{n: main_score(task, m["smoothed"]) for n, m in metrics["models"].items()},
        # shown with "done" even under -q: how much of each split had every input
        "coverage": {s: round(c["coverage"], 4) for s, c in cov.items() if c["tracks"]},
    }


def decision_fusion(
    ctx: RecipeRun,
    task: str,
    base: list[str],
    dev_preds: dict[str, dict[str, np.ndarray]],
    test_preds: dict[str, dict[str, np.ndarray]],
    dev: list[TrackData],
    test: list[TrackData],
) -> tuple[dict[str, dict[str, np.ndarray]], dict[str, dict[str, np.ndarray]]]:
    """Dirichlet-searched weights, random-forest stacking and (EXPR) entropy gating.

    Each method is fitted on the validation set (the paper's way) and applied to the test
    tracks. Its validation predictions, however, come from cross-validation over validation
    *tracks* (``decision.folds`` folds: fitted on the other tracks, predicted on the held-out
    ones), so that a stacker cannot score itself on the frames it was fitted to: a random
    forest would otherwise memorise the validation labels.
    """
    dc = ctx.config["decision"]
    seed = int(ctx.config["seed"])
    dev_l = [td for td in dev if td.labels is not None]
    names = [td.track.name for td in dev_l]
    lens = [len(dev_preds[base[0]][n]) for n in names]
    owner = np.repeat(np.arange(len(names)), lens)
    stacked = [np.concatenate([dev_preds[b][n] for n in names]) for b in base]
    true = np.concatenate([td.labels.values for td in dev_l])
    valid = np.concatenate([td.labels.valid for td in dev_l])
    folds = max(2, min(int(dc["folds"]), len(names)))
    fold_of = np.random.default_rng(seed).permutation(len(names)) % folds
    if "rf" in dc["methods"]:  # 'emofeat predict' refits the forest from these rows
        save_decision_data(ctx.run_dir, stacked, true, valid)
    test_names = [td.track.name for td in test]
    have_test = bool(test) and all(b in test_preds for b in base)

    def metric(true_: np.ndarray, pred: np.ndarray) -> float:
        # VA weights are searched per dimension: the metric sees one column at a time
        if task == "VA":
            return ccc(pred, true_)
        return expr_f1(np.argmax(pred, axis=1), true_)["f1"]

    def split(arr: np.ndarray) -> dict[str, np.ndarray]:
        return {n: arr[owner == k] for k, n in enumerate(names)}

    def dirichlet(rows: np.ndarray):
        weights, _ = fusion_mod.dirichlet_search(
            [p[rows] for p in stacked],
            true[rows],
            metric,
            draws=int(dc["draws"]),
            seed=seed,
            per="dimension" if task == "VA" else "class",
        )
        return lambda preds: fusion_mod.apply_weights(preds, weights), weights

    def forest(rows: np.ndarray):
        stacker = fusion_mod.rf_stacking(
            [p[rows] for p in stacked], true[rows], task="va" if task == "VA" else "expr", seed=seed
        )
        out = stacker.predict if task == "VA" else stacker.predict_proba
        return out, stacker.config

    def gate(rows: np.ndarray):
        a = base.index("audio")
        others = [k for k in range(len(base)) if k != a]

        def parts(preds: list[np.ndarray]) -> tuple[np.ndarray, np.ndarray]:
            return preds[a], np.mean([preds[k] for k in others], axis=0)

        audio, other = parts([p[rows] for p in stacked])
        threshold, _ = fusion_mod.search_entropy_threshold(audio, other, true[rows], metric)
        return lambda preds: fusion_mod.entropy_gate(*parts(preds), threshold), threshold

    methods = {}
    if "dirichlet" in dc["methods"]:
        methods["decision_weights"] = dirichlet
    if "rf" in dc["methods"]:
        methods["decision_rf"] = forest
    if task == "EXPR" and dc.get("entropy_gate") and "audio" in base:
        methods["decision_gated"] = gate

    fused_dev: dict[str, dict[str, np.ndarray]] = {}
    fused_test: dict[str, dict[str, np.ndarray]] = {}
    chosen: dict[str, Any] = {"models": base, "folds": folds}
    for name, fit in methods.items():
        cv = np.zeros_like(stacked[0], dtype=np.float64)
        if cv.ndim == 1:
            cv = cv[:, None]
        for k in range(folds):
            held = fold_of[owner] == k
            apply, _ = fit(valid & ~held)
            cv[held] = np.asarray(apply([p[held] for p in stacked])).reshape(int(held.sum()), -1)
        fused_dev[name] = split(cv)
        apply, params = fit(valid)
        chosen[name] = np.asarray(params).tolist() if not isinstance(params, dict) else params
        if have_test:
            fused_test[name] = {
                n: np.asarray(apply([test_preds[b][n] for b in base])) for n in test_names
            }
        ctx.log.info("decision fusion %s over %s (validation by %d-fold CV)", name, base, folds)
    (ctx.run_dir / "fusion.json").write_text(json.dumps(chosen, indent=2, default=str))
    return fused_dev, fused_test
