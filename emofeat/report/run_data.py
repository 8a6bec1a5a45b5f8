"""What the run page shows, read from a recipe run directory's documented files.

The run directory's layout is in docs/recipes.md ("The run directory"): ``run.json``,
``metrics.json``, ``models/<name>/history.json``, ``predictions/validation/<model>/<track>.csv``,
``labels/validation/<track>.csv``, ``fusion.json``, ``coverage.json``, ``config.yaml``. Nothing
here imports the recipes: a file that is missing or does not parse is a problem listed on the
page.
"""

from __future__ import annotations

import json
from pathlib import Path
from typing import Any

import numpy as np

from emofeat.report.downsample import BucketStats, bucket_size, n_buckets, to_json_numbers

RUN_FILES = ("run.json", "metrics.json", "config.yaml")
"""A folder holding any of these is a run directory."""


def is_run_dir(path: Path) -> bool:
    """True when ``path`` is a folder with a run's ``run.json``, ``metrics.json`` or
    ``config.yaml``."""
    return path.is_dir() and any((path / name).is_file() for name in RUN_FILES)


def ccc(x: np.ndarray, y: np.ndarray) -> float | None:
    """Concordance correlation coefficient (population variances); None without frames or
    when both series are one constant."""
    if len(x) == 0:
        return None
    mx, my = float(x.mean()), float(y.mean())
    cov = float(((x - mx) * (y - my)).mean())
    den = float(x.var() + y.var() + (mx - my) ** 2)
    return 2 * cov / den if den > 0 else None


def f1_per_class(cm: np.ndarray) -> list[float]:
    """F1 of each class from a confusion matrix (rows: label, columns: prediction); 0 for a
    class absent from both."""
    tp = np.diag(cm).astype(np.float64)
    den = cm.sum(axis=0) + cm.sum(axis=1)
    return [float(2 * t / d) if d > 0 else 0.0 for t, d in zip(tp, den, strict=True)]


def _read_json(path: Path, problems: list[str]) -> Any:
    if not path.is_file():
        problems.append(f"{path.name}: missing")
        return None
    try:
        return json.loads(path.read_text())
    except (OSError, ValueError) as exc:
        problems.append(f"{path.name}: cannot be read ({exc})")
        return None


def _read_csv(path: Path) -> tuple[list[str], np.ndarray]:
    """A prediction or label CSV: its header's column names and its rows ``(n, columns)``."""
    with open(path) as fh:
        header = fh.readline().strip().split(",")
    rows = np.loadtxt(path, delimiter=",", skiprows=1, ndmin=2, dtype=np.float64)
    if rows.size and rows.shape[1] != len(header):
        raise ValueError(f"{len(header)} columns in the header, {rows.shape[1]} in the rows")
    return header, rows.reshape(-1, len(header))


def _mode_per_bucket(classes: np.ndarray, k: int) -> list[float | None]:
    """The most frequent class (>= 0) of each bucket of ``k`` frames (ties: the smaller
    class); None for a bucket without a valid class."""
    out: list[float | None] = []
    for b in range(n_buckets(len(classes), k)):
        c = classes[b * k : (b + 1) * k]
        c = c[c >= 0].astype(np.int64)
        out.append(float(np.bincount(c).argmax()) if len(c) else None)
    return out


def _va_trace(
    pred: np.ndarray, label: np.ndarray, names: list[str], k: int
) -> tuple[list[dict[str, Any]], dict[str, float | None]]:
    """Downsampled label and prediction per dimension, and CCC per dimension over the
    frames with a label (full rate)."""
    series: list[dict[str, Any]] = []
    scores: dict[str, float | None] = {}
    valid = np.isfinite(label).all(axis=1)
    for j, name in enumerate(names):
        scores[name] = ccc(pred[valid, j], label[valid, j])
        for what, values, mask in (
            ("label", label[:, j], np.isfinite(label[:, j])),
            ("prediction", pred[:, j], np.isfinite(pred[:, j])),
        ):
            st = BucketStats(k, 1)
            st.add(values[:, None], mask)
            series.append({"name": f"{name} {what}", "dim": name, "what": what,
                           "mean": to_json_numbers(st.mean()[:, 0])})  # fmt: skip
    return series, scores


def run_data(
    run_dir: str | Path, *, max_points: int = 1000, models: list[str] | None = None
) -> dict[str, Any]:
    """The run page's data (the JSON embedded in the page).

    Args:
        run_dir: a recipe run directory.
        max_points: points per validation track's trace at most (frames are bucketed).
        models: models whose validation traces are embedded (default: the best model);
            per-track scores and confusion matrices cover every model.
    """
    from emofeat._version import __version__

    root = Path(run_dir)
    problems: list[str] = []
    run = _read_json(root / "run.json", problems) or {}
    metrics = _read_json(root / "metrics.json", problems) or {}
    fusion = _read_json(root / "fusion.json", []) if (root / "fusion.json").exists() else None
    coverage = _read_json(root / "coverage.json", problems)
    config = (root / "config.yaml").read_text() if (root / "config.yaml").is_file() else None
    task = str(metrics.get("task") or ("VA" if "_va" in str(run.get("recipe", "")) else "EXPR"))
    best = metrics.get("best")
    model_metrics = metrics.get("models") or {}
    table = []
    columns: list[str] = []
    for name, m in model_metrics.items():
        row: dict[str, Any] = {"model": name, "best": name == best}
        for part in ("smoothed", "raw"):
            for key, v in (m.get(part) or {}).items():
                if isinstance(v, (int, float)):
                    row[f"{part}.{key}"] = v
                    if f"{part}.{key}" not in columns:
                        columns.append(f"{part}.{key}")
        row["smoothing_window"] = m.get("smoothing_window")
        row["per_class"] = (m.get("smoothed") or {}).get("per_class")
        table.append(row)

    # learning curves
    curves = []
    models_dir = root / "models"
    for folder in sorted(models_dir.iterdir()) if models_dir.is_dir() else []:
        hist_path = folder / "history.json"
        if not hist_path.is_file():
            continue
        hist = _read_json(hist_path, problems)
        epochs = hist.get("history") if isinstance(hist, dict) else hist
        if not isinstance(epochs, list) or not epochs:
            continue
        dev_keys = sorted(
            {
                k
                for e in epochs
                for k, v in (e.get("dev") or {}).items()
                if isinstance(v, (int, float))
            }
        )
        curves.append(
            {
                "model": folder.name,
                "epoch": [e.get("epoch", i + 1) for i, e in enumerate(epochs)],
                "train_loss": to_json_numbers(
                    np.array([e.get("train_loss", np.nan) for e in epochs], dtype=float)
                ),
                "lr": to_json_numbers(np.array([e.get("lr", np.nan) for e in epochs], float)),
                "dev": {
                    k: to_json_numbers(
                        np.array([(e.get("dev") or {}).get(k, np.nan) for e in epochs], float)
                    )
                    for k in dev_keys
                },
            }
        )

    # validation predictions against labels
    pred_root = root / "predictions" / "validation"
    label_root = root / "labels" / "validation"
    pred_models = sorted(p.name for p in pred_root.iterdir()) if pred_root.is_dir() else []
    if pred_root.is_dir() and not label_root.is_dir():
        problems.append("labels/validation: missing (runs before labels were written)")
    shown = models if models else ([best] if best in pred_models else pred_models[:1])
    for m in shown:
        if m not in pred_models:
            problems.append(f"predictions/validation/{m}: missing")
    labels: dict[str, tuple[list[str], np.ndarray]] = {}
    for path in sorted(label_root.glob("*.csv")) if label_root.is_dir() else []:
        try:
            labels[path.stem] = _read_csv(path)
        except (OSError, ValueError) as exc:
            problems.append(f"labels/validation/{path.name}: cannot be read ({exc})")
    tracks: list[dict[str, Any]] = []
    per_track: dict[str, dict[str, Any]] = {}
    confusions: dict[str, list[list[int]]] = {}
    classes: list[str] = []
    for m in pred_models:
        cm = np.zeros((0, 0), np.int64)
        for track, (_lab_cols, lab) in labels.items():
            path = pred_root / m / f"{track}.csv"
            if not path.is_file():
                problems.append(f"predictions/validation/{m}/{track}.csv: missing")
                continue
            try:
                cols, pred = _read_csv(path)
            except (OSError, ValueError) as exc:
                problems.append(f"predictions/validation/{m}/{path.name}: cannot be read ({exc})")
                continue
            if len(pred) != len(lab):
                problems.append(
                    f"predictions/validation/{m}/{track}.csv: {len(pred)} rows, labels {len(lab)}"
                )
                continue
            k = bucket_size(len(lab), max_points)
            entry = per_track.setdefault(track, {"track": track, "frames": len(lab)})
            if task == "VA":
                names = _lab_cols
                p = pred[:, [cols.index(c) for c in names]]
                series, scores = _va_trace(p, lab, names, k)
                entry[m] = scores
            else:
                classes = cols[1:]
                y = lab[:, 0].astype(np.int64)
                c = pred[:, 0].astype(np.int64)
                ok = y >= 0
                n_cls = len(classes)
                if cm.shape != (n_cls, n_cls):
                    cm = np.zeros((n_cls, n_cls), np.int64)
                t_cm = np.zeros((n_cls, n_cls), np.int64)
                np.add.at(t_cm, (y[ok], c[ok]), 1)
                cm += t_cm
                present = (t_cm.sum(axis=0) + t_cm.sum(axis=1)) > 0
                f1 = np.array(f1_per_class(t_cm))
                entry[m] = {
                    "accuracy": float((c[ok] == y[ok]).mean()) if ok.any() else None,
                    "f1": float(f1[present].mean()) if present.any() else None,
                }
                series = [
                    {"name": "label", "what": "label", "mean": _mode_per_bucket(y, k)},
                    {"name": "prediction", "what": "prediction", "mean": _mode_per_bucket(c, k)},
                ]
            if m in shown:
                tracks.append(
                    {
                        "model": m,
                        "track": track,
                        "frames": len(lab),
                        "k": k,
                        "x": [float(1 + b * k) for b in range(n_buckets(len(lab), k))],
                        "series": series,
                        "scores": entry[m],
                    }
                )
        if task != "VA" and cm.size:
            confusions[m] = cm.tolist()
    f1_by_model = {m: f1_per_class(np.array(cm)) for m, cm in confusions.items()}
    return {
        "kind": "run",
        "path": str(root),
        "emofeat_version": __version__,
        "max_points": max_points,
        "task": task,
        "recipe": run.get("recipe"),
        "status": run.get("status") or ("unknown" if not run else None),
        "started": run.get("started"),
        "seconds": run.get("seconds"),
        "argv": run.get("argv"),
        "best": best,
        "best_score": metrics.get("best_score"),
        "tracks_per_split": metrics.get("tracks"),
        "missing_features": metrics.get("missing_features"),
        "metrics": table,
        "metric_columns": sorted(columns, key=lambda c: not c.startswith("smoothed.")),
        "curves": curves,
        "traces": tracks,
        "traced_models": [m for m in shown if m in pred_models],
        "per_track": list(per_track.values()),
        "classes": classes,
        "confusion": confusions,
        "f1_from_predictions": f1_by_model,
        "coverage": coverage,
        "fusion": fusion,
        "config": config,
        "problems": problems,
    }
