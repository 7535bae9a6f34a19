"""One trial of training: the single entry point for `cycleseg debug` and for Ray Train workers.

``run_trial`` knows nothing about Ray: it reports each epoch through a ``Reporter`` and keeps its
checkpoint in ``workdir/checkpoint``. Batch order is a pure function of (seed, epoch), and every
RNG is saved with the checkpoint, so a resumed run is bit-exact on CPU.
"""

from __future__ import annotations

import math
import random
import shutil
import time
from collections.abc import Iterator
from dataclasses import asdict
from pathlib import Path
from typing import Any, Protocol

import numpy as np
import torch
import torch.distributed as dist

from model.config import TrialConfig, config_to_yaml, load_config_file, resolve_config
from model.datasets import DatasetInfo, PreparedData, labeled_indices, normalize_images, prepare_dataset
from model.errors import UserError
from model.io import atomic_write, atomic_write_text
from model.methods import METHODS, Batch, Method
from model.metrics import ConfusionMatrix

CHECKPOINT = "checkpoint"
STATE = "state.pt"


class Reporter(Protocol):
    """Receives each epoch's metrics after the checkpoint for that epoch is on disk."""

    def report(self, metrics: dict[str, Any], checkpoint_dir: Path) -> None: ...


def resolve_device(name: str) -> torch.device:
    if name == "auto":
        return torch.device("cuda" if torch.cuda.is_available() else "cpu")
    if name.startswith("cuda") and not torch.cuda.is_available():
        raise UserError("device 'cuda' asked for but torch sees no GPU; use --device cpu or auto")
    return torch.device(name)


def _rank_world() -> tuple[int, int]:
    if dist.is_available() and dist.is_initialized():
        return dist.get_rank(), dist.get_world_size()
    return 0, 1


class EpochBatches:
    """Batches drawn by index from uint8 arrays resident on the device (the step never waits).

    An epoch is set by the larger of the sets a method uses; the smaller one repeats (as the
    authors' zipped loaders do). Under DDP each rank takes its slice of every batch.
    """

    def __init__(self, data: PreparedData, cfg: TrialConfig, uses_unlabeled: bool, device: torch.device) -> None:
        n = len(data.train_images)
        self.labeled = torch.as_tensor(labeled_indices(n, cfg.labeled_fraction, cfg.seed))
        rest = np.setdiff1d(np.arange(n), self.labeled.numpy())
        # At 100 % labels there is no unlabeled set: the unsupervised terms then use every image.
        self.unlabeled = torch.as_tensor(rest if len(rest) else np.arange(n)) if uses_unlabeled else None
        self.images = torch.as_tensor(data.train_images).to(device)
        self.masks = torch.as_tensor(data.train_masks).to(device)
        self.cfg, self.device = cfg, device
        longest = max(len(self.labeled), len(self.unlabeled) if self.unlabeled is not None else 0)
        self.iters_per_epoch = math.ceil(longest / cfg.batch_size)
        self.rank, self.world = _rank_world()

    def _order(self, pool: torch.Tensor, gen: torch.Generator) -> torch.Tensor:
        need = self.iters_per_epoch * self.cfg.batch_size
        reps = math.ceil(need / len(pool))
        return torch.cat([pool[torch.randperm(len(pool), generator=gen)] for _ in range(reps)])[:need]

    def epoch(self, epoch: int) -> Iterator[Batch]:
        gen = torch.Generator().manual_seed(self.cfg.seed * 1_000_003 + epoch)
        # the whole epoch's order goes to the device once: slicing it there never blocks the host
        order_l = self._order(self.labeled, gen).to(self.device)
        order_u = self._order(self.unlabeled, gen).to(self.device) if self.unlabeled is not None else None
        b = self.cfg.batch_size
        for i in range(self.iters_per_epoch):
            il = order_l[i * b : (i + 1) * b][self.rank :: self.world]
            x = normalize_images(self.images[il])
            y = self.masks[il].long()
            x_u = None
            if order_u is not None:
                iu = order_u[i * b : (i + 1) * b][self.rank :: self.world]
                x_u = normalize_images(self.images[iu])
            yield Batch(x=x, y=y, x_u=x_u)


def lr_factor(epoch: int, cfg: TrialConfig) -> float:
    """Paper: constant lr, then linear decay to 0 (400 epochs, decay from 100 → factor 1 - (e-100)/300)."""
    start = round(cfg.lr_decay_start * cfg.epochs)
    if cfg.epochs <= start:
        return 1.0
    return 1.0 - max(0, epoch - start) / (cfg.epochs - start)


@torch.no_grad()
def evaluate(method: Method, data: PreparedData, cfg: TrialConfig, device: torch.device) -> ConfusionMatrix:
    """One confusion matrix over the whole validation set (summed over DDP ranks)."""
    rank, world = _rank_world()
    cm = ConfusionMatrix(data.info.num_classes, device=device)
    images = torch.as_tensor(data.val_images)
    masks = torch.as_tensor(data.val_masks)
    idx = torch.arange(len(images))[rank::world]
    for s in range(0, len(idx), cfg.eval_batch_size):
        j = idx[s : s + cfg.eval_batch_size]
        x = normalize_images(images[j].to(device))
        pred = method.predict(x).argmax(1)
        cm.update(pred, masks[j].to(device).long())
    if world > 1:
        dist.all_reduce(cm.mat)
    return cm


def _sync_gradients(method: Method) -> None:
    """DDP without wrapping: average every gradient across ranks as soon as it is accumulated."""
    world = dist.get_world_size()

    def hook(p: torch.Tensor) -> None:
        dist.all_reduce(p.grad)
        p.grad.div_(world)

    for net in method.networks.values():
        for p in net.parameters():
            dist.broadcast(p.data, src=0)
            p.register_post_accumulate_grad_hook(hook)


def _rng_state() -> dict[str, Any]:
    state = {"torch": torch.get_rng_state(), "numpy": np.random.get_state(), "python": random.getstate()}
    if torch.cuda.is_available():
        state["cuda"] = torch.cuda.get_rng_state_all()
    return state


def _set_rng_state(state: dict[str, Any]) -> None:
    torch.set_rng_state(state["torch"])
    np.random.set_state(state["numpy"])
    random.setstate(state["python"])
    if "cuda" in state and torch.cuda.is_available():
        torch.cuda.set_rng_state_all(state["cuda"])


def seed_everything(seed: int) -> None:
    random.seed(seed)
    np.random.seed(seed % 2**32)
    torch.manual_seed(seed)


def build_method(cfg: TrialConfig, info: DatasetInfo, device: torch.device, total_iters: int) -> Method:
    seed_everything(cfg.seed)  # fixes network init
    return METHODS.get(cfg.method)(cfg, info, device, total_iters)


def save_checkpoint(
    path: Path, cfg: TrialConfig, info: DatasetInfo, method: Method, schedulers: dict, epoch: int, history: list
) -> None:
    """Write ``path`` (a folder) atomically: a temp folder renamed over the old one."""
    tmp = path.with_name(f".{path.name}.tmp")
    shutil.rmtree(tmp, ignore_errors=True)
    tmp.mkdir(parents=True)
    state = {
        "epoch": epoch,
        "method": method.state_dict(),
        "schedulers": {k: s.state_dict() for k, s in schedulers.items()},
        "rng": _rng_state(),
        "history": history,
        "info": asdict(info),
        "config": cfg.to_dict(),
    }
    torch.save(state, tmp / STATE)
    (tmp / "config.yaml").write_text(config_to_yaml(cfg))
    old = path.with_name(f".{path.name}.old")
    shutil.rmtree(old, ignore_errors=True)
    if path.exists():
        path.rename(old)
    tmp.rename(path)
    shutil.rmtree(old, ignore_errors=True)


def _load_state(checkpoint_dir: Path) -> dict[str, Any]:
    f = Path(checkpoint_dir) / STATE
    if not f.is_file():
        raise UserError(f"no checkpoint at '{f}'; run without --resume first")
    return torch.load(f, map_location="cpu", weights_only=False)


def load_trial(checkpoint_dir: str | Path, device: str = "cpu") -> tuple[TrialConfig, Method]:
    """Rebuild a trained method from a checkpoint folder (for reports and sample grids)."""
    state = _load_state(Path(checkpoint_dir))
    cfg = resolve_config({**state["config"], "device": device})
    info = DatasetInfo(**{k: tuple(v) if isinstance(v, list) else v for k, v in state["info"].items()})
    method = build_method(cfg, info, resolve_device(device), total_iters=1)
    method.load_state_dict(state["method"])
    return cfg, method


def _fault(cfg: TrialConfig) -> tuple[str, int] | None:
    if cfg.inject_fault is None:
        return None
    kind, epoch = cfg.inject_fault.split(":")
    return kind, int(epoch)


def run_trial(
    cfg: TrialConfig,
    *,
    workdir: Path,
    reporter: Reporter | None = None,
    resume: bool = False,
    data: PreparedData | None = None,
    progress: bool = False,
) -> list[dict[str, Any]]:
    """Train ``cfg`` for its epochs; return the per-epoch metrics (also in the checkpoint's history)."""
    workdir = Path(workdir)
    rank, world = _rank_world()
    device = resolve_device(cfg.device)
    if device.type == "cuda":
        torch.backends.cudnn.benchmark = True
    data = data if data is not None else prepare_dataset(cfg)
    method_cls = METHODS.get(cfg.method)
    batches = EpochBatches(data, cfg, method_cls.uses_unlabeled, device)
    method = build_method(cfg, data.info, device, total_iters=cfg.epochs * batches.iters_per_epoch)
    schedulers = {
        k: torch.optim.lr_scheduler.LambdaLR(opt, lambda e: lr_factor(e, cfg)) for k, opt in method.optimizers.items()
    }
    ckpt = workdir / CHECKPOINT
    history: list[dict[str, Any]] = []
    start = 0
    if resume:
        state = _load_state(ckpt)
        method.load_state_dict(state["method"])
        for k, s in schedulers.items():
            s.load_state_dict(state["schedulers"][k])
        _set_rng_state(state["rng"])
        history, start = state["history"], state["epoch"]
    if world > 1:
        _sync_gradients(method)

    fault = _fault(cfg)
    for epoch in range(start + 1, cfg.epochs + 1):
        if fault == ("crash", epoch) and not resume:
            raise RuntimeError(f"injected crash in epoch {epoch} (inject_fault={cfg.inject_fault})")
        t0 = time.perf_counter()
        lr = method.optimizers["G"].param_groups[0]["lr"]
        sums: dict[str, torch.Tensor] = {}
        counts: dict[str, int] = {}  # a term can start mid-run (Hung's self-training): mean over its steps
        steps = batches.epoch(epoch)
        if progress and rank == 0:
            from tqdm import tqdm

            steps = tqdm(steps, total=batches.iters_per_epoch, desc=f"epoch {epoch}/{cfg.epochs}", leave=False)
        for i, batch in enumerate(steps):
            if fault == ("nan", epoch) and i == 0:
                batch.x = batch.x * float("nan")
            for k, v in method.optimize_parameters(batch).items():
                sums[k] = sums[k] + v if k in sums else v.clone()
                counts[k] = counts.get(k, 0) + 1
        for s in schedulers.values():
            s.step()
        losses = {f"loss_{k}": v.item() / counts[k] for k, v in sums.items()}  # one device sync per epoch
        diverged = not all(math.isfinite(v) for v in losses.values())
        cm = evaluate(method, data, cfg, device)
        metrics: dict[str, Any] = {
            "epoch": epoch,
            "val_miou": cm.miou(),
            "val_pixel_acc": cm.pixel_accuracy(),
            "val_class_iou": cm.class_iou(),
            "lr": lr,
            "epoch_seconds": time.perf_counter() - t0,
            "diverged": diverged,
            **losses,
        }
        history.append(metrics)
        if rank == 0:
            save_checkpoint(ckpt, cfg, data.info, method, schedulers, epoch, history)
        if reporter is not None:
            reporter.report(metrics, ckpt)
        if diverged:
            break
    return history


# --------------------------------------------------------------------------------------------
# `cycleseg debug`: one local trial with files a person can look at.


def _check_resume(cfg: TrialConfig, out: Path, resume: bool) -> None:
    ckpt_cfg = out / CHECKPOINT / "config.yaml"
    if not resume:
        if ckpt_cfg.exists():
            raise UserError(f"'{out}' already holds a run; pass --resume to continue it or choose another --out")
        return
    if not ckpt_cfg.exists():
        raise UserError(f"--resume: no checkpoint in '{out / CHECKPOINT}'; run once without --resume first")
    old = resolve_config(load_config_file(ckpt_cfg))
    if old.hash() != cfg.hash():
        diff = [k for k, v in cfg.to_dict().items() if old.to_dict()[k] != v]
        raise UserError(
            f"--resume: the checkpoint in '{out}' was made with other settings ({', '.join(diff)}); "
            "repeat the original options or choose another --out"
        )


def write_metrics_parquet(path: Path, history: list[dict[str, Any]]) -> None:
    import pandas as pd

    atomic_write(path, lambda p: pd.DataFrame(history).to_parquet(p, index=False))


class _LocalReporter:
    """`debug`: print a line per epoch and keep metrics.parquet current."""

    def __init__(self, out: Path, history: list[dict[str, Any]]) -> None:
        self.out = out
        self.history = list(history)  # epochs before a resume, then one per report

    def report(self, metrics: dict[str, Any], checkpoint_dir: Path) -> None:
        from tqdm import tqdm

        self.history.append(metrics)
        write_metrics_parquet(self.out / "metrics.parquet", self.history)
        losses = "  ".join(f"{k[5:]}={v:.4f}" for k, v in metrics.items() if k.startswith("loss_"))
        tqdm.write(
            f"epoch {metrics['epoch']:>3}  val mIoU {metrics['val_miou']:.4f}  pixel acc "
            f"{metrics['val_pixel_acc']:.4f}  lr {metrics['lr']:.2e}  {metrics['epoch_seconds']:.1f}s  {losses}"
        )


def debug_run(cfg: TrialConfig, out: Path, *, resume: bool = False) -> list[dict[str, Any]]:
    """Run one trial locally; write config.yaml, metrics.parquet, checkpoint/ and samples.png to ``out``."""
    from model.visualize import save_sample_grid

    out = Path(out)
    _check_resume(cfg, out, resume)
    data = prepare_dataset(cfg, progress=True)
    out.mkdir(parents=True, exist_ok=True)
    atomic_write_text(out / "config.yaml", config_to_yaml(cfg, header=f"# cycleseg resolved config ({cfg.hash()})\n"))
    print(
        f"cycleseg debug: {cfg.method} on {cfg.dataset} ({len(data.train_images)} train / {len(data.val_images)} "
        f"val, {data.info.num_classes} classes), labeled_fraction={cfg.labeled_fraction}, seed={cfg.seed}, "
        f"preset={cfg.preset}, {cfg.epochs} epochs, device={resolve_device(cfg.device)} -> {out}"
    )
    earlier = _load_state(out / CHECKPOINT)["history"] if resume else []
    reporter = _LocalReporter(out, earlier)
    history = run_trial(cfg, workdir=out, reporter=reporter, resume=resume, data=data, progress=True)
    _, method = load_trial(out / CHECKPOINT)
    save_sample_grid(out / "samples.png", {cfg.method: method}, data, generator=method)
    last = history[-1]
    best = max(history, key=lambda m: m["val_miou"] if math.isfinite(m["val_miou"]) else -1)
    if last["diverged"]:
        print(f"diverged in epoch {last['epoch']}: a loss became NaN/inf; lower lr or the λ weights")
    print(
        f"done: best val mIoU {best['val_miou']:.4f} (epoch {best['epoch']}), final {last['val_miou']:.4f}\n"
        f"  {out / 'config.yaml'}\n  {out / 'metrics.parquet'}\n  {out / CHECKPOINT}\n  {out / 'samples.png'}"
    )
    return history
