"""Applying a finished ABAW run to new media: the ``predict`` hook of ``abaw_va``/``abaw_expr``.

A run records what prediction needs in ``predict.json`` (:func:`write_predict_spec`): the
extractors and their settings, the input streams with the extractor versions and settings
of the items the models were trained on, the normalisation statistics fitted on train, the
target rate and windows, every model (checkpoint, Kernel ELM file, decision-fusion method)
and its smoothing window. ``emofeat predict`` (:func:`predict_abaw`) then, for new videos:

1. extracts the inputs with the run's extractors and settings into a store (what is stored
   already, complete and unchanged, is skipped by the engine);
2. reads each input's streams exactly as the run read a test track (the same
   :func:`emofeat_recipes.data.load_track`), normalises them with the run's statistics;
3. applies the base models the chosen model needs (the same
   :func:`emofeat_recipes.abaw.predict`), the decision fusion fitted on validation, the
   model's smoothing window;
4. writes one CSV per input (one row per video frame) and the predictions as the store's
   ``predict`` item (stream ``va`` or ``expr``).

Frames whose inputs are invalid (no face found, no speech features, past the end of a
stream) still get predictions, as in the run: the models fill them from the neighbouring
frames; the CSV's ``valid`` column and the stream's mask mark them.
"""

from __future__ import annotations

import json
import logging
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import numpy as np

import emofeat
from emofeat.recipes import PredictOutcome, PredictRequest, PredictResult, RecipeError

SPEC_FILE = "predict.json"
FORMAT = "emofeat-abaw-predict"
FORMAT_VERSION = 1
#: the extractor name of the predictions' item in a store, and its stream per task
PREDICT_EXTRACTOR = "predict"
STREAM = {"VA": "va", "EXPR": "expr"}
#: the rows of the validation set the random-forest stacker was fitted on
DECISION_DATA = "models/decision/validation.npz"


# ----------------------------------------------------------------------------- recording


def kelm_file(modality: str) -> str:
    """The Kernel ELM of a modality, relative to the run directory."""
    return f"models/{modality}_kelm/kelm.npz"


def save_kelm(path: Path, model: Any, stats: tuple[str, ...]) -> None:
    """A fitted :class:`~emofeat_recipes.kelm.KernelELM` as plain arrays (no pickle)."""
    path.parent.mkdir(parents=True, exist_ok=True)
    arrays: dict[str, Any] = {
        "X_fit": np.asarray(model.X_fit_),
        "beta": np.asarray(model.beta_),
        "C": np.asarray(float(model.C)),
        "gamma": np.asarray(np.nan if model.gamma_ is None else float(model.gamma_)),
        "kernel": np.asarray(str(model.kernel)),
        "task": np.asarray(str(model.task_)),
        "stats": np.asarray(list(stats)),
        "y_1d": np.asarray(bool(getattr(model, "_y_1d", False))),
    }
    if model.task_ == "classification":
        arrays["classes"] = np.asarray(model.classes_)
    with open(path, "wb") as fh:
        np.savez(fh, **arrays)


def load_kelm(path: Path) -> tuple[Any, tuple[str, ...]]:
    """The Kernel ELM written by :func:`save_kelm` and its window statistics."""
    from emofeat_recipes.kelm import KernelELM

    with np.load(path, allow_pickle=False) as z:
        gamma = float(z["gamma"])
        model = KernelELM(C=float(z["C"]), kernel=str(z["kernel"]), task=str(z["task"]))
        model.task_ = str(z["task"])
        model.gamma_ = None if np.isnan(gamma) else gamma
        model.X_fit_ = z["X_fit"]
        model.beta_ = z["beta"]
        model._y_1d = bool(z["y_1d"])
        if "classes" in z.files:
            model.classes_ = z["classes"]
        stats = tuple(str(s) for s in z["stats"])
    return model, stats


def save_decision_data(run_dir: Path, stacked: list[np.ndarray], true: np.ndarray, valid) -> None:
    """The validation rows decision fusion was fitted on (the forest is refitted from them,
    deterministically, instead of being pickled)."""
    path = run_dir / DECISION_DATA
    path.parent.mkdir(parents=True, exist_ok=True)
    with open(path, "wb") as fh:
        np.savez(fh, preds=np.stack(stacked), true=np.asarray(true), valid=np.asarray(valid))


def _model_streams(name: str) -> list[str]:
    if name == "fusion":
        return ["video", "audio"]
    if name.endswith("_kelm"):
        return [name[: -len("_kelm")]]
    return [name]


def write_predict_spec(
    ctx: Any,
    task: str,
    refs: dict[str, list[Any]],
    index: Any,
    tracks: list[Any],
    normalisers: dict[str, Any],
    metrics: dict[str, Any],
    base: list[str],
    length: int,
    hop: int,
) -> Path:
    """Write ``predict.json``: everything ``emofeat predict`` needs to apply the run.

    Args:
        ctx: the recipe run.
        task: ``"VA"`` or ``"EXPR"``.
        refs: the resolved input streams per modality.
        index: the stores' items (the join).
        tracks: the training tracks (their items give the settings the models saw).
        normalisers: modality -> the fitted :class:`~emofeat_recipes.windows.Normaliser`.
        metrics: the run's metrics (models, smoothing windows, best).
        base: the base models decision fusion combined.
        length, hop: window length and hop in frames at the target rate.
    """
    cfg = ctx.config
    ec = cfg["extract"]
    inputs: dict[str, list[dict[str, Any]]] = {}
    for modality, rs in refs.items():
        rows = []
        for r in rs:
            item = None
            for t in tracks:
                item = index.lookup(t, r.extractor, r.stream, r.modality)
                if item is not None:
                    break
            conf = (item.attrs.get("config") or {}) if item is not None else {}
            rows.append(
                {
                    "id": r.id,
                    "extractor": r.extractor,
                    "stream": r.stream,
                    "modality": r.modality,
                    "version": str(conf.get("version", "")),
                    "settings": conf.get("settings", {}),
                }
            )
        inputs[modality] = rows
    resolved: dict[str, Any] = {}
    settings_all = {k: dict(v or {}) for k, v in (ec.get("settings") or {}).items()}
    for modality in ("video", "audio"):
        names = list(ec.get(modality) or [])
        if not names or modality not in refs:
            continue
        try:
            jobs = emofeat.build_jobs(names, settings=settings_all, unused_settings="ignore")
        except emofeat.EmofeatError as exc:  # recorded, not fatal: the items' settings are
            ctx.log.warning("predict.json: extractors of %s not resolved: %s", modality, exc)
            continue
        for j in jobs:
            resolved[j.name] = {"version": str(j.cls.version), "settings": j.config}
    norm: dict[str, Any] = {"kind": str(cfg["normalise"]), "stats": {}}
    for modality, n in normalisers.items():
        if n.offset is not None and n.scale is not None:
            norm["stats"][modality] = {
                "offset": [float(v) for v in n.offset],
                "scale": [float(v) for v in n.scale],
            }
    models: dict[str, Any] = {}
    for name, m in metrics["models"].items():
        entry: dict[str, Any] = {"smoothing_window": int(m["smoothing_window"])}
        if name.startswith("decision_"):
            entry.update(kind="decision", base=list(base))
        elif name.endswith("_kelm"):
            entry.update(kind="kelm", streams=_model_streams(name), file=kelm_file(name[:-5]))
        else:
            entry.update(
                kind="neural",
                streams=_model_streams(name),
                checkpoint=f"models/{name}/best.pt",
            )
        models[name] = entry
    spec = {
        "format": FORMAT,
        "format_version": FORMAT_VERSION,
        "recipe": ctx.recipe.name,
        "task": task,
        "fps": float(cfg["fps"]),
        "window": {"length": int(length), "hop": int(hop)},
        "normalise": norm,
        "inputs": inputs,
        "extract": {
            "video": list(ec.get("video") or []),
            "audio": list(ec.get("audio") or []),
            "settings": settings_all,
            "resolved": resolved,
        },
        "models": models,
        "decision": {"base": list(base), "seed": int(cfg["seed"]), "file": DECISION_DATA},
        "smoothing": {"kind": str(cfg["smoothing"]["kind"])},
        "best": metrics["best"],
        "labels": _labels(task),
    }
    path = ctx.run_dir / SPEC_FILE
    path.write_text(json.dumps(spec, indent=2, default=str))
    return path


def _labels(task: str) -> list[str]:
    from emofeat_recipes.datasets.affwild2 import EXPR_LABELS, VA_LABELS

    return list(VA_LABELS if task == "VA" else EXPR_LABELS)


# ----------------------------------------------------------------------------- predicting


def _old_run(run_dir: Path, what: str) -> RecipeError:
    return RecipeError(
        f"{run_dir}: {what}; the run was made before runs recorded what 'emofeat predict' "
        "needs: run the recipe again (emofeat recipe run ... --config "
        f"{run_dir / 'config.yaml'})"
    )


def load_spec(run_dir: Path) -> dict[str, Any]:
    """The run's ``predict.json`` (a clear error for runs made before it existed)."""
    path = run_dir / SPEC_FILE
    if not path.is_file():
        raise _old_run(run_dir, f"no {SPEC_FILE}")
    spec = json.loads(path.read_text())
    if spec.get("format") != FORMAT or int(spec.get("format_version", 0)) > FORMAT_VERSION:
        raise RecipeError(
            f"{path}: not a prediction record this emofeat can read "
            f"(format {spec.get('format')!r} version {spec.get('format_version')!r})"
        )
    return spec


@dataclass
class _Models:
    """The base models of the chosen model, loaded once for every input."""

    neural: dict[str, tuple[Any, list[str]]]
    kelm: dict[str, tuple[Any, tuple[str, ...]]]


def _load_models(run_dir: Path, spec: dict[str, Any], names: list[str], device: str) -> _Models:
    import torch

    from emofeat_recipes.models import build_model
    from emofeat_recipes.train import load_checkpoint

    task = spec["task"]
    out_dim = 2 if task == "VA" else len(spec["labels"])
    neural: dict[str, tuple[Any, list[str]]] = {}
    kelm: dict[str, tuple[Any, tuple[str, ...]]] = {}
    for name in names:
        entry = spec["models"][name]
        if entry["kind"] == "neural":
            path = run_dir / entry["checkpoint"]
            if not path.is_file():
                raise _old_run(run_dir, f"no checkpoint {entry['checkpoint']}")
            ckpt = load_checkpoint(path, map_location="cpu")
            meta = ckpt.get("meta") or {}
            model = build_model(
                meta["spec"],
                {k: int(v) for k, v in meta["dims"].items()},
                out_dim,
                "tanh" if task == "VA" else "linear",
            )
            model.load_state_dict(ckpt["model"])
            model.to(torch.device(device))
            model.eval()
            neural[name] = (model, list(meta.get("streams") or entry["streams"]))
        elif entry["kind"] == "kelm":
            path = run_dir / entry["file"]
            if not path.is_file():
                raise _old_run(run_dir, f"no Kernel ELM file {entry['file']}")
            kelm[name] = load_kelm(path)
        else:
            raise RecipeError(f"{run_dir}: model {name!r} is not a base model")
    return _Models(neural, kelm)


class _Decision:
    """The decision-level fusion of the run, fitted on validation as the run fitted it."""

    def __init__(self, run_dir: Path, spec: dict[str, Any], name: str) -> None:
        fusion_path = run_dir / "fusion.json"
        if not fusion_path.is_file():
            raise _old_run(run_dir, "no fusion.json")
        fitted = json.loads(fusion_path.read_text())
        self.task = spec["task"]
        self.base = list(fitted.get("models") or spec["decision"]["base"])
        self.name = name
        if name not in fitted:
            raise _old_run(run_dir, f"fusion.json has no {name}")
        self.params = fitted[name]
        self.forest = None
        if name == "decision_rf":
            from emofeat_recipes import fusion as fusion_mod

            path = run_dir / spec["decision"]["file"]
            if not path.is_file():
                raise _old_run(run_dir, f"no {spec['decision']['file']}")
            with np.load(path, allow_pickle=False) as z:
                preds, true, valid = z["preds"], z["true"], z["valid"]
            self.forest = fusion_mod.rf_stacking(
                list(preds),
                true,
                task="va" if self.task == "VA" else "expr",
                configs=[dict(self.params)],
                seed=int(spec["decision"]["seed"]),
                mask=valid,
            )

    def apply(self, preds: list[np.ndarray]) -> np.ndarray:
        from emofeat_recipes import fusion as fusion_mod

        if self.name == "decision_weights":
            return np.asarray(fusion_mod.apply_weights(preds, np.asarray(self.params)))
        if self.name == "decision_rf":
            assert self.forest is not None
            f = self.forest
            return np.asarray(f.predict(preds) if self.task == "VA" else f.predict_proba(preds))
        if self.name == "decision_gated":
            a = self.base.index("audio")
            others = [k for k in range(len(self.base)) if k != a]
            other = np.mean([preds[k] for k in others], axis=0)
            return np.asarray(fusion_mod.entropy_gate(preds[a], other, float(self.params)))
        raise RecipeError(f"unknown decision-fusion method {self.name!r}")


class _Source:
    """What :func:`emofeat_recipes.data.load_track` asks of a dataset, for one new input."""

    def __init__(self, fps: float) -> None:
        self._fps = fps

    def fps(self, track: Any, default: float | None = None) -> float:
        return self._fps


class _Items:
    """What :func:`emofeat_recipes.data.load_track` asks of the join, for one new input:
    the items made from its video (audio) or its crop folder / video (faces)."""

    def __init__(self, items: dict[tuple[str, str], Any]) -> None:
        self._items = items  # (modality, extractor) -> ItemInfo

    def lookup(self, track: Any, extractor: str, stream: str | None, modality: str) -> Any:
        item = self._items.get((modality, extractor))
        if item is None or (stream is not None and stream not in item.streams):
            return None
        return item

    def items(self, extractor: str | None = None) -> list[Any]:
        return [it for (_, ex), it in self._items.items() if extractor in (None, ex)]


def _resolved(path: Path) -> str:
    try:
        return str(Path(path).resolve())
    except OSError:
        return str(path)


def _extract(
    req: PredictRequest,
    spec: dict[str, Any],
    modalities: list[str],
    sources: dict[str, dict[Path, Path]],
) -> dict[str, str]:
    """Extract every needed modality into the store; returns input path -> failure message."""
    failures: dict[str, str] = {}
    settings = spec["extract"]["settings"]
    req.store.parent.mkdir(parents=True, exist_ok=True)
    for modality in modalities:
        extractors = list(spec["extract"][modality])
        inputs = sorted(set(sources[modality].values()))
        if not extractors or not inputs:
            continue
        # the step's own settings (and those of the stages it brings along), as the plan does
        jobs = emofeat.build_jobs(extractors, settings=settings, unused_settings="ignore")
        names = {j.name for j in jobs}
        step_settings = {k: v for k, v in settings.items() if k in names}
        req.log.info(
            "extracting %s (%s) from %d input(s) into %s",
            modality,
            ", ".join(extractors),
            len(inputs),
            req.store,
        )
        summary = emofeat.extract(
            inputs,
            extractors,
            req.store,
            settings=step_settings,
            device=req.device,
            recursive=False,
            progress=not req.quiet,
            command=f"emofeat predict {req.run_dir} ({modality}: {' '.join(extractors)})",
        )
        back = {_resolved(src): video for video, src in sources[modality].items()}
        for res in summary.results:
            video = back.get(_resolved(Path(res.input)))
            if video is None:
                continue
            msgs = [res.message] if res.status == "failed" and res.message else []
            msgs += [f"{o.extractor}: {o.message}" for o in res.outcomes if o.status == "failed"]
            if msgs:
                failures[str(video)] = "; ".join(dict.fromkeys(msgs))
        for spec_, msg in summary.problems:
            failures.setdefault(str(spec_), msg)
    return failures


def _frame_valid(items: _Items, refs: list[dict[str, Any]], n: int) -> np.ndarray:
    """Per video frame: True where every input stream the model reads is valid."""
    ok = np.ones(n, dtype=bool)
    for r in refs:
        item = items.lookup(None, r["extractor"], r["stream"], r["modality"])
        if item is None:
            return np.zeros(n, dtype=bool)
        sd = item.store.read(item.key, r["extractor"], r["stream"], aligned=True)
        m = np.asarray(sd.mask, dtype=bool) & np.isfinite(np.asarray(sd.data)).all(axis=1)
        full = np.zeros(n, dtype=bool)
        k = min(n, len(m))
        full[:k] = m[:k]
        ok &= full
    return ok


def _write_csv(
    path: Path, task: str, labels: list[str], times: np.ndarray, pred: np.ndarray, valid
) -> None:
    n = len(pred)
    frame = np.arange(n)
    if task == "VA":
        header = ["frame", "time", *labels, "valid"]
        cols = [frame, times, *np.clip(pred, -1, 1).T, valid.astype(int)]
        fmt = ["%d", "%.6f", "%.9g", "%.9g", "%d"]
    else:
        header = ["frame", "time", "class", *labels, "valid"]
        cols = [frame, times, np.argmax(pred, axis=1), *pred.T, valid.astype(int)]
        fmt = ["%d", "%.6f", "%d", *["%.9g"] * pred.shape[1], "%d"]
    np.savetxt(
        path,
        np.column_stack(cols),
        delimiter=",",
        header=",".join(header),
        comments="",
        fmt=fmt,
    )


def _csv_name(video: Path, taken: set[str]) -> str:
    name = video.stem
    if name in taken:
        name = f"{video.parent.name}__{video.stem}"
    k = 2
    base = name
    while name in taken:
        name = f"{base}-{k}"
        k += 1
    taken.add(name)
    return name


def predict_abaw(req: PredictRequest, task: str) -> PredictResult:
    """The ``predict`` hook of ``abaw_va`` / ``abaw_expr`` (see the module's docstring)."""
    from emofeat_recipes.abaw import predict as predict_frames
    from emofeat_recipes.data import StreamRef, TrackData, load_track
    from emofeat_recipes.datasets.affwild2 import Track
    from emofeat_recipes.kelm import window_functionals
    from emofeat_recipes.postprocess import smooth
    from emofeat_recipes.windows import Normaliser, spread_back, to_label_frames

    log = req.log
    spec = load_spec(req.run_dir)
    metrics_path = req.run_dir / "metrics.json"
    if not metrics_path.is_file():
        raise _old_run(req.run_dir, "no metrics.json")
    name = req.model or str(spec["best"])
    if name not in spec["models"]:
        raise RecipeError(
            f"{req.run_dir}: no model {name!r}; the run's models: "
            f"{', '.join(spec['models'])} (best: {spec['best']})"
        )
    entry = spec["models"][name]
    base = list(entry["base"]) if entry["kind"] == "decision" else [name]
    decision = _Decision(req.run_dir, spec, name) if entry["kind"] == "decision" else None
    if decision is not None:
        base = decision.base
    streams_needed = sorted({s for b in base for s in spec["models"][b]["streams"]})
    refs = {
        m: [StreamRef(r["extractor"], r["stream"], r["modality"]) for r in spec["inputs"][m]]
        for m in streams_needed
    }
    ref_rows = [r for m in streams_needed for r in spec["inputs"][m]]
    # the installed extractors must be the versions the models were trained on
    for r in ref_rows:
        if not r.get("version"):
            continue
        try:
            installed = str(emofeat.get_extractor(r["extractor"]).cls.version)
        except emofeat.EmofeatError as exc:
            raise RecipeError(f"the run's input {r['id']} cannot be extracted: {exc}") from None
        if installed != r["version"]:
            raise RecipeError(
                f"the run's input {r['id']} was made by {r['extractor']} version "
                f"{r['version']}, the installed one is version {installed}: its features "
                "would not be what the models were trained on"
            )
    models = _load_models(req.run_dir, spec, base, req.device)
    fps_target = float(spec["fps"])
    length, hop = int(spec["window"]["length"]), int(spec["window"]["hop"])
    norm_kind = spec["normalise"]["kind"]
    normalisers = {}
    for m in streams_needed:
        st = spec["normalise"]["stats"].get(m)
        n_ = Normaliser(norm_kind)
        if n_.kind.startswith("global"):
            if st is None:
                raise _old_run(req.run_dir, f"no normalisation statistics for {m}")
            n_.offset = np.asarray(st["offset"], dtype=np.float64)
            n_.scale = np.asarray(st["scale"], dtype=np.float64)
        normalisers[m] = n_
    labels = list(spec["labels"])
    window = int(entry["smoothing_window"])
    smooth_kind = spec["smoothing"]["kind"]
    log.info("applying %s of %s (%s) to %d input(s)", name, req.run_dir, task, len(req.inputs))

    # ---- extraction: faces from the crop folder when given, else the video; audio: video
    sources: dict[str, dict[Path, Path]] = {"video": {}, "audio": {}}
    for video in req.inputs:
        if "video" in refs:
            crop = req.crops / video.stem if req.crops is not None else None
            sources["video"][video] = crop if crop is not None and crop.is_dir() else video
        if "audio" in refs:
            sources["audio"][video] = video
    failures = _extract(req, spec, [m for m in ("video", "audio") if m in refs], sources)

    store = emofeat.open_store(req.store) if req.store.exists() else None
    newest: dict[tuple[str, str], Any] = {}
    for it in store.catalog() if store is not None else []:
        src = it.source
        if src is None:
            continue
        k = (_resolved(src), it.extractor)
        if k not in newest or str(it.attrs.get("created", "")) > str(
            newest[k].attrs.get("created", "")
        ):
            newest[k] = it

    outcomes: list[PredictOutcome] = []
    taken: set[str] = set()
    writes: list[tuple[str, Path, np.ndarray, np.ndarray, np.ndarray]] = []
    for video in req.inputs:
        try:
            info = emofeat.probe(video)
            if not info.has_video:
                raise RecipeError("no video stream: predictions are per video frame")
            grid = emofeat.demux_grid(info)
            n = len(grid)
            if n == 0:
                raise RecipeError("the video stream holds no frames")
            fps = float(info.fps) if info.fps else float(grid.rate)
            found: dict[tuple[str, str], Any] = {}
            for m, rs in refs.items():
                src = _resolved(sources[m][video])
                for r in rs:
                    it = newest.get((src, r.extractor))
                    if it is not None and r.stream in it.streams:
                        found[(m, r.extractor)] = it
            items = _Items(found)
            lacking = [r.id for rs in refs.values() for r in rs if (r.modality, r.extractor)
                       not in found]  # fmt: skip
            if len(lacking) == sum(len(rs) for rs in refs.values()):
                why = failures.get(str(video)) or failures.get(str(sources["video"].get(video)))
                raise RecipeError(
                    f"no features could be extracted ({why or 'no stored ' + ', '.join(lacking)})"
                )
            if lacking:
                log.warning(
                    "%s: no %s (%s): those frames are masked, as in the run",
                    video,
                    ", ".join(lacking),
                    failures.get(str(video), "not extracted"),
                )
            track = Track(name=video.stem, task=task, split="test", video=video)
            td: TrackData = load_track(_Source(fps), items, track, refs, fps_target, n_frames=n)
            for m, norm in normalisers.items():
                td.x[m] = np.where(td.mask[m][:, None], norm.apply(td.x[m], td.mask[m]), 0).astype(
                    np.float32
                )
            base_preds = []
            for b in base:
                if b in models.neural:
                    model, streams = models.neural[b]
                    p = predict_frames(model, [td], streams, length, hop, task, req.device)
                    base_preds.append(p[track.name])
                else:
                    kmodel, stats = models.kelm[b]
                    modality = spec["models"][b]["streams"][0]
                    base_preds.append(
                        _kelm_frames(
                            kmodel,
                            stats,
                            td,
                            modality,
                            length,
                            hop,
                            task,
                            window_functionals,
                            spread_back,
                            to_label_frames,
                        )  # fmt: skip
                    )
            pred = decision.apply(base_preds) if decision is not None else base_preds[0]
            pred = smooth(np.asarray(pred, dtype=np.float64), window, smooth_kind)
            valid = _frame_valid(items, ref_rows, n)
            csv = req.out_dir / f"{_csv_name(video, taken)}.csv"
            times = np.asarray(grid.starts, dtype=np.float64)
            _write_csv(csv, task, labels, times, pred, valid)
            key = _store_key(found, video)
            frames = np.stack([grid.starts, grid.ends], axis=1)
            writes.append((key, video, frames, pred, valid))
            outcomes.append(PredictOutcome(video, "done", "", csv, n, key))
        except (emofeat.EmofeatError, OSError, ValueError) as exc:
            msg = str(exc) if isinstance(exc, RecipeError) else f"{type(exc).__name__}: {exc}"
            first = failures.get(str(video))
            if first and first not in msg:
                msg = f"{first} ({msg})"
            log.warning("%s: %s", video, msg)
            outcomes.append(PredictOutcome(video, "failed", msg))
    if writes:
        _write_store(req, spec, task, name, labels, writes, log)
    return PredictResult(name, outcomes)


def _kelm_frames(
    model, stats, td, modality, length, hop, task, window_functionals, spread_back, to_frames
) -> np.ndarray:
    """A Kernel ELM's per-frame predictions for one input, as the run made them."""
    from emofeat_recipes.data import WindowSet
    from emofeat_recipes.datasets.affwild2 import EXPR_LABELS
    from emofeat_recipes.kelm import window_predictions

    ws = WindowSet([td], length, hop, task)
    b = ws.gather(np.arange(len(ws)))
    feats = window_functionals(b[f"x_{modality}"].numpy(), b[f"mask_{modality}"].numpy(), stats)
    wp = window_predictions(model, feats, task, len(EXPR_LABELS))
    local = np.stack([ws.starts, ws.starts + length], axis=1)
    return to_frames(spread_back(wp, local, len(td.index)), td.index, td.n_frames)


def _store_key(found: dict[tuple[str, str], Any], video: Path) -> str:
    """The key of the input's own items (audio first: those are made from the video)."""
    for (modality, _), it in sorted(found.items()):
        if modality == "audio":
            return str(it.key)
    for it in found.values():
        return str(it.key)
    return video.stem


def _write_store(
    req: PredictRequest,
    spec: dict[str, Any],
    task: str,
    name: str,
    labels: list[str],
    writes: list[tuple[str, Path, np.ndarray, np.ndarray, np.ndarray]],
    log: logging.Logger,
) -> None:
    """The predictions as the store's ``predict`` items: stream ``va`` or ``expr`` (other
    streams of an existing ``predict`` item of the input, the other task's, are kept)."""
    stream = STREAM[task]
    with emofeat.FeatureStore(req.store, "a") as fs:
        for key, video, frames, pred, valid in writes:
            streams: dict[str, tuple[np.ndarray, np.ndarray, list[str]]] = {}
            runs: dict[str, Any] = {}
            if key in fs.items() and PREDICT_EXTRACTOR in fs.extractors(key):
                old = fs.item_attrs(key, PREDICT_EXTRACTOR) or {}
                runs = dict((old.get("config") or {}).get("settings", {}).get("runs") or {})
                for s in fs.streams(key, PREDICT_EXTRACTOR):
                    if s == stream:
                        continue
                    sd = fs.read(key, PREDICT_EXTRACTOR, s)
                    if len(sd.data) == len(frames):
                        streams[s] = (sd.data, sd.mask, list(sd.labels))
                    else:
                        runs.pop(s, None)
            values = np.clip(pred, -1, 1) if task == "VA" else pred
            streams[stream] = (values, valid, labels)
            runs[stream] = {
                "run": str(req.run_dir.resolve()),
                "recipe": spec["recipe"],
                "model": name,
                "task": task,
            }
            fs.write_item(
                key,
                PREDICT_EXTRACTOR,
                frames,
                streams,
                source=video,
                settings={"runs": runs},
                version=str(FORMAT_VERSION),
                command=f"emofeat predict {req.run_dir}",
            )
            log.info("%s: predictions written to %s (%s/%s)", video, req.store, key, stream)
