"""A generic, resumable training loop for the recipes (and for fine-tuning extractors).

:class:`Trainer` knows nothing about features or tasks: it is given a model, a loss
``loss_fn(outputs, batch)``, an ``evaluate(model) -> {"score": ..., ...}`` callback for the dev set
and optionally ``forward(model, batch)``. It runs AdamW or Adam with a linear warm-up followed by
cosine annealing (optionally with warm restarts), stops early on the dev ``score``, keeps the best
checkpoint (``best.pt``) and the last one (``last.pt``: weights, optimizer, schedule position, early
stopping state, random-number states and history), so ``fit(..., resume=True)`` continues an
interrupted run and, on CPU, ends exactly where an uninterrupted run would have.

Checkpoints hold only tensors, numbers, strings, lists and dicts: they load with
``torch.load(weights_only=True)`` (no unpickling of arbitrary objects).
"""

from __future__ import annotations

import contextlib
import dataclasses
import json
import logging
import math
import os
import random
import time
from collections.abc import Callable, Iterable, Mapping
from dataclasses import asdict, dataclass
from pathlib import Path
from typing import Any

import numpy as np
import torch
from rich.console import Console
from rich.progress import (
    BarColumn,
    MofNCompleteColumn,
    Progress,
    TextColumn,
    TimeElapsedColumn,
)
from torch import Tensor, nn

from emofeat import ConfigError
from emofeat_recipes.validate import OPTIMIZERS, SCHEDULES

__all__ = [
    "TrainConfig",
    "TrainConfigError",
    "Trainer",
    "default_forward",
    "load_checkpoint",
    "lr_at",
    "make_loader",
    "seed_worker",
    "set_seed",
]

log = logging.getLogger(__name__)

CHECKPOINT_FORMAT = 1


class TrainConfigError(ConfigError, ValueError):
    """A training setting is unknown or out of range."""


@dataclass
class TrainConfig:
    """Training settings (a recipe config's ``train`` section).

    Learning rates are per optimizer step (one step = ``grad_accum`` batches). Schedule: linear
    warm-up from ``warmup_start_lr`` to ``lr`` over ``warmup_steps`` steps, then ``"cosine"``
    (one half cosine from ``lr`` down to ``min_lr`` at the end of ``epochs``),
    ``"cosine_restarts"`` (the same over each period of ``restart_epochs`` epochs, then back to
    ``lr``) or ``"constant"``. ``min_lr`` ``None`` means ``lr * 0.01``.
    """

    epochs: int = 100
    lr: float = 1e-4
    optimizer: str = "adamw"
    weight_decay: float = 1e-4
    warmup_steps: int = 100
    warmup_start_lr: float = 1e-5
    schedule: str = "cosine"
    restart_epochs: int = 5
    min_lr: float | None = None
    patience: int = 10
    min_delta: float = 0.0  # an improvement must exceed this to reset the patience
    batch_size: int = 32
    grad_accum: int = 1
    clip: float | None = None  # max gradient norm; None = no clipping
    device: str = "cpu"
    amp: bool = True  # mixed precision, used only on cuda
    amp_dtype: str = "bfloat16"  # "bfloat16" | "float16" (float16 uses a gradient scaler)
    seed: int = 0
    deterministic: bool = True
    num_workers: int = 0
    maximize: bool = True  # direction of the dev "score"
    log_every: int = 50  # steps between progress-bar loss updates
    quiet: bool = False
    steps_per_epoch: int | None = None  # needed only for loaders without len()
    restore_best: bool = True  # load best.pt into the model when fit() ends

    def __post_init__(self) -> None:
        def need(ok: bool, key: str, what: str) -> None:
            if not ok:
                raise TrainConfigError(f"train.{key}: {what}, got {getattr(self, key)!r}")

        need(isinstance(self.epochs, int) and self.epochs >= 0, "epochs", "must be an integer >= 0")
        need(self.lr > 0, "lr", "must be > 0")
        need(self.optimizer in OPTIMIZERS, "optimizer", f"must be one of {OPTIMIZERS}")
        need(self.weight_decay >= 0, "weight_decay", "must be >= 0")
        need(self.warmup_steps >= 0, "warmup_steps", "must be >= 0")
        need(self.warmup_start_lr >= 0, "warmup_start_lr", "must be >= 0")
        need(self.schedule in SCHEDULES, "schedule", f"must be one of {SCHEDULES}")
        need(self.restart_epochs > 0, "restart_epochs", "must be > 0")
        need(self.min_lr is None or self.min_lr >= 0, "min_lr", "must be >= 0 or null")
        need(self.patience > 0, "patience", "must be > 0")
        need(self.batch_size > 0, "batch_size", "must be > 0")
        need(isinstance(self.grad_accum, int) and self.grad_accum > 0, "grad_accum", "must be > 0")
        need(self.clip is None or self.clip > 0, "clip", "must be > 0 or null")
        need(self.amp_dtype in ("bfloat16", "float16"), "amp_dtype", "must be bfloat16|float16")
        need(self.num_workers >= 0, "num_workers", "must be >= 0")
        need(self.log_every > 0, "log_every", "must be > 0")
        need(
            self.steps_per_epoch is None or self.steps_per_epoch > 0,
            "steps_per_epoch",
            "must be > 0 or null",
        )
        try:
            torch.device(self.device)
        except RuntimeError:
            need(False, "device", "is not a torch device (cpu, cuda, cuda:1, ...)")

    @property
    def floor_lr(self) -> float:
        """The cosine schedule's lowest learning rate (``min_lr`` or ``lr * 0.01``)."""
        return self.lr * 0.01 if self.min_lr is None else self.min_lr

    @classmethod
    def from_dict(cls, values: Mapping[str, Any]) -> TrainConfig:
        """Build from a config mapping; an unknown key is an error naming it."""
        known = {f.name for f in dataclasses.fields(cls)}
        for key in values:
            if key not in known:
                raise TrainConfigError(
                    f"unknown key train.{key} (known: {', '.join(sorted(known))})"
                )
        return cls(**dict(values))


def lr_at(step: int, config: TrainConfig, steps_per_epoch: int) -> float:
    """Learning rate used by optimizer update number ``step`` (0-based).

    Warm-up: ``warmup_start_lr`` at step 0 rising linearly to ``lr`` at ``warmup_steps``.
    Afterwards, with ``t = step - warmup_steps``: ``"constant"`` keeps ``lr``; ``"cosine"``
    follows ``min + (lr - min) (1 + cos(pi t / T)) / 2`` with ``T = epochs * steps_per_epoch -
    warmup_steps`` (then stays at ``min``); ``"cosine_restarts"`` uses ``t mod P`` with period
    ``P = restart_epochs * steps_per_epoch``.
    """
    w = config.warmup_steps
    if step < w:
        return config.warmup_start_lr + (config.lr - config.warmup_start_lr) * step / w
    if config.schedule == "constant":
        return config.lr
    t = step - w
    if config.schedule == "cosine":
        total = max(1, config.epochs * steps_per_epoch - w)
        frac = min(t / total, 1.0)
    else:
        period = max(1, config.restart_epochs * steps_per_epoch)
        frac = (t % period) / period
    lo = config.floor_lr
    return lo + (config.lr - lo) * 0.5 * (1.0 + math.cos(math.pi * frac))


def set_seed(seed: int, deterministic: bool = True) -> None:
    """Seed Python, NumPy and torch (CPU and CUDA); optionally ask for deterministic kernels.

    ``deterministic`` switches cuDNN to deterministic algorithms and turns on
    ``torch.use_deterministic_algorithms`` in warn-only mode (process-wide): on CPU the loop is
    then bit-for-bit repeatable; on CUDA some kernels have no deterministic variant.
    """
    random.seed(seed)
    np.random.seed(seed % 2**32)
    torch.manual_seed(seed)
    if torch.cuda.is_available():
        torch.cuda.manual_seed_all(seed)
    if deterministic:
        # cuBLAS needs a fixed workspace to be deterministic; only read when CUDA starts
        os.environ.setdefault("CUBLAS_WORKSPACE_CONFIG", ":4096:8")
        torch.backends.cudnn.deterministic = True
        torch.backends.cudnn.benchmark = False
        torch.use_deterministic_algorithms(True, warn_only=True)


def seed_worker(worker_id: int) -> None:
    """``worker_init_fn`` of every recipe DataLoader: one compute thread per worker (the
    workers are the parallelism), NumPy and Python seeded from the seed torch gave the worker
    (itself drawn from the loader's generator)."""
    torch.set_num_threads(1)
    seed = torch.initial_seed() % 2**32
    np.random.seed(seed)
    random.seed(seed)


def make_loader(
    dataset: Any,
    config: TrainConfig,
    shuffle: bool = True,
    collate_fn: Callable | None = None,
    drop_last: bool = False,
    batch_size: int | None = None,
    sample_weights: np.ndarray | None = None,
    persistent_workers: bool = True,
) -> torch.utils.data.DataLoader:
    """A DataLoader that fits the Trainer: one seeded generator (saved in checkpoints, so a
    resumed run shuffles as the uninterrupted one would) drives shuffling or weighted sampling
    and the workers' seeds; ``config.num_workers`` worker processes seeded by
    :func:`seed_worker`; pinned memory when training on CUDA.

    ``sample_weights``: draw ``len(dataset)`` items per epoch with replacement, with these
    weights (instead of shuffling). ``persistent_workers=False``: new workers each epoch,
    seeded from the generator, so that a resumed run's workers draw what the uninterrupted
    run's would (for random augmentation in the workers).
    """
    gen = torch.Generator()
    gen.manual_seed(config.seed)
    workers = config.num_workers
    sampler = None
    if sample_weights is not None:
        sampler = torch.utils.data.WeightedRandomSampler(
            torch.as_tensor(sample_weights, dtype=torch.double),
            num_samples=len(dataset),
            replacement=True,
            generator=gen,
        )
        shuffle = False
    return torch.utils.data.DataLoader(
        dataset,
        batch_size=batch_size or config.batch_size,
        shuffle=shuffle,
        sampler=sampler,
        collate_fn=collate_fn,
        drop_last=drop_last,
        num_workers=workers,
        generator=gen,
        worker_init_fn=seed_worker if workers else None,
        pin_memory=torch.device(config.device).type == "cuda",
        persistent_workers=persistent_workers and workers > 0,
    )


def default_forward(model: nn.Module, batch: Any) -> Any:
    """``model(batch["x"], batch.get("mask"))`` for dict batches."""
    if isinstance(batch, Mapping) and "x" in batch:
        return model(batch["x"], batch.get("mask"))
    raise TypeError(
        "the default forward expects dict batches with 'x' (and optionally 'mask'); "
        f"got {type(batch).__name__}: pass forward=callable(model, batch) to the Trainer"
    )


def _to_device(obj: Any, device: torch.device, non_blocking: bool) -> Any:
    if isinstance(obj, Tensor):
        return obj.to(device, non_blocking=non_blocking)
    if isinstance(obj, Mapping):
        return {k: _to_device(v, device, non_blocking) for k, v in obj.items()}
    if isinstance(obj, (list, tuple)):
        return type(obj)(_to_device(v, device, non_blocking) for v in obj)
    return obj


def load_checkpoint(path: str | Path, map_location: str | torch.device = "cpu") -> dict:
    """Load a Trainer checkpoint safely (``weights_only=True``); error names the file."""
    path = Path(path)
    if not path.is_file():
        raise FileNotFoundError(f"{path}: no such checkpoint")
    try:
        return torch.load(path, map_location=map_location, weights_only=True)
    except Exception as e:  # torch raises several types for corrupt or unsafe files
        raise ValueError(f"{path}: not a readable checkpoint ({e})") from e


def _rng_state(loader: Any) -> dict:
    keys, pos, has_gauss, gauss = np.random.get_state()[1:]
    py_version, py_state, py_gauss = random.getstate()
    state: dict[str, Any] = {
        "torch": torch.get_rng_state(),
        "numpy": {
            "keys": torch.from_numpy(np.asarray(keys, dtype=np.int64)),
            "pos": int(pos),
            "has_gauss": int(has_gauss),
            "gauss": float(gauss),
        },
        "python": {"version": py_version, "state": list(py_state), "gauss": py_gauss},
    }
    if torch.cuda.is_available() and torch.cuda.is_initialized():
        state["cuda"] = torch.cuda.get_rng_state_all()
    gen = getattr(loader, "generator", None)
    if isinstance(gen, torch.Generator):
        state["loader"] = gen.get_state()
    return state


def _set_rng_state(state: Mapping, loader: Any) -> None:
    torch.set_rng_state(state["torch"])
    n = state["numpy"]
    np.random.set_state(
        ("MT19937", n["keys"].numpy().astype(np.uint32), n["pos"], n["has_gauss"], n["gauss"])
    )
    p = state["python"]
    random.setstate((p["version"], tuple(p["state"]), p["gauss"]))
    if "cuda" in state and torch.cuda.is_available():
        torch.cuda.set_rng_state_all(state["cuda"])
    gen = getattr(loader, "generator", None)
    if "loader" in state and isinstance(gen, torch.Generator):
        gen.set_state(state["loader"])


def _plain_metrics(metrics: Any) -> dict[str, float]:
    if not isinstance(metrics, Mapping):
        raise TypeError(f"evaluate() must return a dict of numbers, got {type(metrics).__name__}")
    out = {}
    for k, v in metrics.items():
        try:
            out[str(k)] = float(v)
        except (TypeError, ValueError):
            raise TypeError(f"evaluate() metric {k!r} is not a number: {v!r}") from None
    return out


class Trainer:
    """Train ``model`` with ``loss_fn`` under ``config``, writing into ``run_dir``.

    Args:
        model: any ``nn.Module``; moved to ``config.device``. Only parameters with
            ``requires_grad`` are optimised (freeze parts of a backbone before).
        loss_fn: ``loss_fn(outputs, batch) -> scalar Tensor`` (batch already on the device).
        config: :class:`TrainConfig`.
        run_dir: where ``best.pt``, ``last.pt`` and ``history.json`` go (created).
        evaluate: ``evaluate(model) -> {"score": float, ...}`` on the dev set, called after
            each epoch with the model in eval mode under ``torch.no_grad()``; ``"score"`` drives
            early stopping and the best checkpoint (direction: ``config.maximize``). ``None``:
            the mean training loss is the score (lower is better).
        forward: ``forward(model, batch) -> outputs``; default :func:`default_forward`.
        meta: plain data (str/number/list/dict) stored in both checkpoints under ``"meta"``,
            e.g. what a loader needs to rebuild the model.
    """

    def __init__(
        self,
        model: nn.Module,
        loss_fn: Callable[[Any, Any], Tensor],
        config: TrainConfig,
        run_dir: str | Path,
        evaluate: Callable[[nn.Module], Mapping[str, float]] | None = None,
        forward: Callable[[nn.Module, Any], Any] | None = None,
        meta: Mapping[str, Any] | None = None,
    ) -> None:
        self.model = model
        self.loss_fn = loss_fn
        self.config = config
        self.run_dir = Path(run_dir)
        self.evaluate = evaluate
        self.forward = forward or default_forward
        self.meta = dict(meta or {})
        self.device = torch.device(config.device)
        if self.device.type == "cuda" and not torch.cuda.is_available():
            raise TrainConfigError(f"train.device is {config.device!r} but CUDA is not available")
        self.use_amp = bool(config.amp) and self.device.type == "cuda"
        self.amp_dtype = getattr(torch, config.amp_dtype)
        self.history: list[dict[str, Any]] = []
        self.step = 0  # optimizer updates so far (drives the schedule)
        self.epoch = 0  # completed epochs
        self.best_score: float | None = None
        self.best_epoch: int | None = None
        self.best_metrics: dict[str, float] = {}
        self.bad_epochs = 0
        self.optimizer: torch.optim.Optimizer | None = None
        self.scaler: torch.amp.GradScaler | None = None

    @property
    def best_path(self) -> Path:
        return self.run_dir / "best.pt"

    @property
    def last_path(self) -> Path:
        return self.run_dir / "last.pt"

    @property
    def history_path(self) -> Path:
        return self.run_dir / "history.json"

    # -- setup -------------------------------------------------------------------------------

    def _make_optimizer(self) -> torch.optim.Optimizer:
        params = [p for p in self.model.parameters() if p.requires_grad]
        if not params:
            raise ValueError("the model has no trainable parameters")
        cfg = self.config
        cls = torch.optim.AdamW if cfg.optimizer == "adamw" else torch.optim.Adam
        return cls(params, lr=cfg.warmup_start_lr if cfg.warmup_steps else cfg.lr,
                   weight_decay=cfg.weight_decay)  # fmt: skip

    def _steps_per_epoch(self, loader: Iterable) -> int:
        if self.config.steps_per_epoch is not None:
            return self.config.steps_per_epoch
        try:
            n = len(loader)  # type: ignore[arg-type]
        except TypeError:
            if self.config.schedule == "constant":
                return 1  # only warm-up, which counts steps, not epochs
            raise TrainConfigError(
                "the training loader has no len(): set train.steps_per_epoch for the "
                f"{self.config.schedule!r} schedule"
            ) from None
        if n == 0:
            raise ValueError("the training loader is empty")
        return math.ceil(n / self.config.grad_accum)

    # -- checkpoints --------------------------------------------------------------------------

    def _save(self, path: Path, payload: dict) -> None:
        # write then rename: an interruption while saving leaves the previous file intact
        tmp = path.with_name(path.name + ".tmp")
        torch.save(payload, tmp)
        os.replace(tmp, path)

    def _save_last(self, loader: Any) -> None:
        assert self.optimizer is not None
        self._save(
            self.last_path,
            {
                "format": CHECKPOINT_FORMAT,
                "model": self.model.state_dict(),
                "optimizer": self.optimizer.state_dict(),
                "scaler": self.scaler.state_dict() if self.scaler is not None else {},
                "step": self.step,
                "epoch": self.epoch,
                "best_score": self.best_score,
                "best_epoch": self.best_epoch,
                "best_metrics": self.best_metrics,
                "bad_epochs": self.bad_epochs,
                "history": self.history,
                "rng": _rng_state(loader),
                "config": asdict(self.config),
                "meta": self.meta,
            },
        )

    def _resume(self, loader: Any) -> bool:
        """Restore from last.pt; False when there is none."""
        if not self.last_path.exists():
            log.info("%s: no last checkpoint, starting from scratch", self.last_path)
            return False
        ck = load_checkpoint(self.last_path, map_location=self.device)
        if ck.get("format") != CHECKPOINT_FORMAT:
            raise ValueError(f"{self.last_path}: not a Trainer checkpoint (format)")
        self.model.load_state_dict(ck["model"])
        assert self.optimizer is not None
        self.optimizer.load_state_dict(ck["optimizer"])
        if self.scaler is not None and ck["scaler"]:
            self.scaler.load_state_dict(ck["scaler"])
        self.step = int(ck["step"])
        self.epoch = int(ck["epoch"])
        self.best_score = ck["best_score"]
        self.best_epoch = ck["best_epoch"]
        self.best_metrics = dict(ck["best_metrics"])
        self.bad_epochs = int(ck["bad_epochs"])
        self.history = list(ck["history"])
        # the rng lives on the CPU whatever map_location said
        rng = load_checkpoint(self.last_path, map_location="cpu")["rng"]
        _set_rng_state(rng, loader)
        log.info("resumed from %s after epoch %d", self.last_path, self.epoch)
        return True

    # -- the loop ------------------------------------------------------------------------------

    def _improved(self, score: float, maximize: bool) -> bool:
        if not math.isfinite(score):
            return False
        if self.best_score is None:
            return True
        delta = self.config.min_delta
        if maximize:
            return score > self.best_score + delta
        return score < self.best_score - delta

    def _optimizer_step(self, steps_per_epoch: int) -> None:
        assert self.optimizer is not None
        lr = lr_at(self.step, self.config, steps_per_epoch)
        for group in self.optimizer.param_groups:
            group["lr"] = lr
        if self.scaler is not None:
            self.scaler.unscale_(self.optimizer)
        if self.config.clip is not None:
            nn.utils.clip_grad_norm_(
                [p for g in self.optimizer.param_groups for p in g["params"]], self.config.clip
            )
        if self.scaler is not None:
            self.scaler.step(self.optimizer)
            self.scaler.update()
        else:
            self.optimizer.step()
        self.optimizer.zero_grad(set_to_none=True)
        self.step += 1

    def _progress(self) -> Progress:
        console = Console(stderr=True)
        enabled = not self.config.quiet and console.is_terminal
        return Progress(
            TextColumn("[bold]{task.description}"),
            BarColumn(),
            MofNCompleteColumn(),
            TimeElapsedColumn(),
            TextColumn("{task.fields[info]}"),
            console=console,
            disable=not enabled,
            transient=False,
        )

    def fit(self, train_loader: Iterable, resume: bool = False) -> dict[str, Any]:
        """Train up to ``config.epochs`` epochs (early stopping on the dev score).

        Args:
            train_loader: an iterable of batches, re-iterated every epoch (a DataLoader, a list).
            resume: continue from ``run_dir/last.pt`` if it exists.

        Returns:
            ``{"history", "best_score", "best_epoch", "best_metrics", "epochs_run",
            "stopped_early", "best_checkpoint", "last_checkpoint"}``; epochs are 1-based.
            The model is left in eval mode, holding the best epoch's weights when
            ``config.restore_best`` (else the last epoch's).
            ``history`` (also in ``history.json``) has one entry per epoch:
            ``{"epoch", "train_loss", "lr", "seconds", "dev": {metrics}}``.
        """
        cfg = self.config
        self.run_dir.mkdir(parents=True, exist_ok=True)
        self.model.to(self.device)
        self.optimizer = self._make_optimizer()
        self.scaler = (
            torch.amp.GradScaler("cuda")
            if self.use_amp and self.amp_dtype == torch.float16
            else None
        )
        steps_per_epoch = self._steps_per_epoch(train_loader)
        self.history, self.step, self.epoch = [], 0, 0
        self.best_score, self.best_epoch, self.best_metrics, self.bad_epochs = None, None, {}, 0
        if not (resume and self._resume(train_loader)):
            set_seed(cfg.seed, cfg.deterministic)
            gen = getattr(train_loader, "generator", None)
            if isinstance(gen, torch.Generator):
                gen.manual_seed(cfg.seed)
        stopped = self.bad_epochs >= cfg.patience
        non_blocking = self.device.type == "cuda"
        autocast = (
            torch.autocast(self.device.type, dtype=self.amp_dtype)
            if self.use_amp
            else contextlib.nullcontext()
        )
        total = None
        with contextlib.suppress(TypeError):
            total = len(train_loader)  # type: ignore[arg-type]
        with self._progress() as progress:
            while self.epoch < cfg.epochs and not stopped:
                t0 = time.perf_counter()
                task = progress.add_task(
                    f"epoch {self.epoch + 1}/{cfg.epochs}", total=total, info=""
                )
                self.model.train()
                assert self.optimizer is not None
                self.optimizer.zero_grad(set_to_none=True)
                loss_sum = torch.zeros((), dtype=torch.float64, device=self.device)
                n_batches = micro = 0
                for batch in train_loader:
                    batch = _to_device(batch, self.device, non_blocking)
                    with autocast:
                        outputs = self.forward(self.model, batch)
                        loss = self.loss_fn(outputs, batch)
                    if not torch.isfinite(loss):
                        raise FloatingPointError(
                            f"non-finite training loss ({loss.item()}) at epoch {self.epoch + 1}, "
                            f"batch {n_batches + 1}: lower train.lr or set train.clip"
                        )
                    scaled = loss / cfg.grad_accum
                    (self.scaler.scale(scaled) if self.scaler else scaled).backward()
                    loss_sum += loss.detach().double()
                    n_batches += 1
                    micro += 1
                    if micro == cfg.grad_accum:
                        self._optimizer_step(steps_per_epoch)
                        micro = 0
                    if n_batches % cfg.log_every == 0 or n_batches == total:
                        progress.update(
                            task,
                            completed=n_batches,
                            info=f"loss {loss_sum.item() / n_batches:.4f}",
                        )
                if n_batches == 0:
                    raise ValueError("the training loader gave no batches")
                if micro:  # an incomplete accumulation at the end of the epoch still counts
                    self._optimizer_step(steps_per_epoch)
                train_loss = loss_sum.item() / n_batches
                self.model.eval()
                if self.evaluate is not None:
                    with torch.no_grad():
                        metrics = _plain_metrics(self.evaluate(self.model))
                    if "score" not in metrics:
                        raise KeyError(
                            f"evaluate() must return a 'score' entry, got {sorted(metrics)}"
                        )
                    score = metrics["score"]
                    improved = self._improved(score, cfg.maximize)
                else:
                    metrics, score = {}, train_loss
                    improved = self._improved(score, maximize=False)
                self.model.train()
                self.epoch += 1
                if improved:
                    self.best_score, self.best_epoch = score, self.epoch
                    self.best_metrics, self.bad_epochs = metrics, 0
                    self._save(
                        self.best_path,
                        {
                            "format": CHECKPOINT_FORMAT,
                            "model": self.model.state_dict(),
                            "epoch": self.epoch,
                            "score": score,
                            "metrics": metrics,
                            "config": asdict(cfg),
                            "meta": self.meta,
                        },
                    )
                else:
                    self.bad_epochs += 1
                stopped = self.bad_epochs >= cfg.patience
                lr = lr_at(max(self.step - 1, 0), cfg, steps_per_epoch)
                entry = {
                    "epoch": self.epoch,
                    "train_loss": train_loss,
                    "lr": lr,
                    "seconds": time.perf_counter() - t0,
                    "dev": metrics,
                }
                self.history.append(entry)
                self._save_last(train_loader)
                self.history_path.write_text(json.dumps(self.history, indent=1) + "\n")
                info = f"loss {train_loss:.4f}" + (
                    f"  dev {score:.4f}  best {self.best_score:.4f} @ {self.best_epoch}"
                    if self.evaluate is not None and self.best_score is not None
                    else ""
                )
                progress.update(task, completed=n_batches, total=n_batches, info=info)
                log.info("epoch %d/%d %s lr %.2e %.1f s", self.epoch, cfg.epochs, info, lr,
                         entry["seconds"])  # fmt: skip
                if stopped:
                    log.info("early stop: no improvement for %d epochs", cfg.patience)
        if cfg.restore_best and self.best_path.exists() and self.best_epoch is not None:
            self.model.load_state_dict(load_checkpoint(self.best_path, self.device)["model"])
        self.model.eval()  # fit() hands back a model ready to predict
        return {
            "history": self.history,
            "best_score": self.best_score,
            "best_epoch": self.best_epoch,
            "best_metrics": self.best_metrics,
            "epochs_run": self.epoch,
            "stopped_early": stopped,
            "best_checkpoint": str(self.best_path),
            "last_checkpoint": str(self.last_path),
        }
