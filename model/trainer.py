"""One trial of training: the single entry point for `cycleseg debug` and for Ray Train workers.

``run_trial`` knows nothing about Ray: it reports each epoch through a ``Reporter`` and keeps its
checkpoint in ``workdir/checkpoint`` (``cycleseg.model.checkpoint``). Batch order is a pure function
of (seed, epoch), and every RNG is saved with the checkpoint, so a resumed run is bit-exact on CPU.
"""

from __future__ import annotations

import math
import time
from collections.abc import Iterator
from pathlib import Path
from typing import Any, Protocol

import numpy as np
import torch

from . import checkpoint
from .config import TrialConfig
from .data import PreparedData, labeled_count, labeled_indices, normalize_images, prepare_dataset
from .device import resolve_device
from .distributed import distribute, rank_world, sum_across_ranks
from .methods import METHODS, Batch, Method, create_method
from .metrics import ConfusionMatrix
from .records import SPLITS, effective_column


class Reporter(Protocol):
    """Receives each epoch's metrics after the checkpoint for that epoch is on disk."""

    def report(self, metrics: dict[str, Any], checkpoint_dir: Path) -> None: ...


def epoch_steps(cfg: TrialConfig, n_train: int) -> int:
    """Optimizer steps per epoch, the same for every method (equal budgets): ceil(max(labeled, unlabeled) / batch).

    ``full`` counts every image as labeled (``resolve`` sets its labeled_fraction to 1), so its epoch is
    ceil(n_train / batch): it trains on more labels *and* more steps than the methods it bounds.
    """
    n_labeled = labeled_count(n_train, cfg.labeled_fraction)
    return math.ceil(max(n_labeled, n_train - n_labeled) / cfg.batch_size)


class EpochBatches:
    """Batches drawn by index from uint8 arrays resident on the device (the step never waits).

    Equal budgets: an epoch is ceil(max(n_labeled, n_train − n_labeled) / batch_size) steps whatever
    the method uses, so every method runs the same optimizer steps at the same dataset, labeled
    fraction, seed, epochs and batch size. The labeled batches cycle through the labeled set, as the
    authors' Dataset repeats its labeled list up to the unlabeled length (for their supervised
    baseline too). ``full`` has no unlabeled set. Under DDP each rank takes its slice of every batch.
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
        self.iters_per_epoch = epoch_steps(cfg, n)
        self.unlabeled_per_step = cfg.batch_size if uses_unlabeled else 0
        self.rank, self.world = rank_world()

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


ESTIMATE_AFTER = 10  # steps timed before a local run announces how long it will take


def _announce_duration(per_step: float, steps: int, timed: int) -> None:
    from tqdm import tqdm

    total = per_step * steps
    when = f"{total / 3600:.1f} h" if total >= 3600 else f"{total / 60:.1f} min" if total >= 60 else f"{total:.0f} s"
    tqdm.write(f"expected: about {when} of training for {steps:,} steps ({per_step * 1000:.0f} ms per step over the "
               f"first {timed}; evaluation not included)")


def lr_factor(epoch: int, cfg: TrialConfig) -> float:
    """Paper: constant lr, then linear decay to 0 (400 epochs, decay from 100 → factor 1 - (e-100)/300)."""
    start = round(cfg.lr_decay_start * cfg.epochs)
    if cfg.epochs <= start:
        return 1.0
    return 1.0 - max(0, epoch - start) / (cfg.epochs - start)


def evaluate(method: Method, images: np.ndarray, masks: np.ndarray, batch_size: int) -> ConfusionMatrix:
    """One confusion matrix over a whole split: each DDP rank scores its share, the counts are summed."""
    rank, world = rank_world()
    cm = method.confusion_matrix(images[rank::world], masks[rank::world], batch_size)
    sum_across_ranks(cm.mat)
    return cm


def run_trial(
    cfg: TrialConfig,
    *,
    workdir: Path,
    reporter: Reporter | None = None,
    resume: bool = False,
    data: PreparedData | None = None,
    progress: bool = False,
) -> list[dict[str, Any]]:
    """Train ``cfg`` for its epochs; return the per-epoch records (also in the checkpoint's history)."""
    workdir = Path(workdir)
    rank, _ = rank_world()
    device = resolve_device(cfg.device)
    if device.type == "cuda":
        torch.backends.cudnn.benchmark = True
    data = data if data is not None else prepare_dataset(cfg)
    batches = EpochBatches(data, cfg, METHODS.get(cfg.method).uses_unlabeled, device)
    b = cfg.batch_size
    method = create_method(cfg, data.info, device, total_iters=cfg.epochs * batches.iters_per_epoch)
    schedulers = {
        k: torch.optim.lr_scheduler.LambdaLR(opt, lambda e: lr_factor(e, cfg)) for k, opt in method.optimizers.items()
    }
    ckpt = workdir / checkpoint.FOLDER
    history: list[dict[str, Any]] = []
    start = 0
    if resume:
        state = checkpoint.load_state(ckpt)
        method.load_state_dict(state["method"])
        for k, s in schedulers.items():
            s.load_state_dict(state["schedulers"][k])
        checkpoint.set_rng_state(state["rng"])
        history, start = checkpoint.read_history(ckpt), state["epoch"]
    distribute(method)

    for epoch in range(start + 1, cfg.epochs + 1):
        t0 = time.perf_counter()
        method.set_epoch(epoch)
        lr = method.optimizers["G"].param_groups[0]["lr"]
        sums: dict[str, torch.Tensor] = {}
        counts: dict[str, int] = {}  # a term can start mid-run (Hung's self-training): mean over its steps
        steps = batches.epoch(epoch)
        if progress and rank == 0:
            from tqdm import tqdm

            steps = tqdm(steps, total=batches.iters_per_epoch, desc=f"epoch {epoch}/{cfg.epochs}", leave=False)
        for i, batch in enumerate(steps, 1):
            for k, v in method.optimize_parameters(batch).items():
                sums[k] = sums[k] + v if k in sums else v.clone()
                counts[k] = counts.get(k, 0) + 1
            if progress and rank == 0 and epoch == start + 1 and i == min(ESTIMATE_AFTER, batches.iters_per_epoch):
                _announce_duration((time.perf_counter() - t0) / i, (cfg.epochs - start) * batches.iters_per_epoch, i)
        for s in schedulers.values():
            s.step()
        losses = {f"loss_{k}": v.item() / counts[k] for k, v in sums.items()}  # one device sync per epoch
        diverged = not all(math.isfinite(v) for v in losses.values())
        metrics: dict[str, Any] = {"epoch": epoch}
        for split in SPLITS:
            cm = evaluate(method, *data.split(split), cfg.eval_batch_size)
            metrics |= {f"{split}_miou": cm.miou(), f"{split}_pixel_acc": cm.pixel_accuracy(),
                        f"{split}_class_iou": cm.class_iou()}
        metrics |= {
            "lr": lr,
            "epoch_seconds": time.perf_counter() - t0,
            "diverged": diverged,
            "steps": method.iteration,
            "labeled_images_seen": method.iteration * b,
            "unlabeled_images_seen": method.unlabeled_steps * batches.unlabeled_per_step,
            **{effective_column(k): v for k, v in method.effective_weights().items()},
            **losses,
        }
        history.append(metrics)
        if rank == 0:
            checkpoint.save(ckpt, cfg, data.info, method, schedulers, epoch, history)
        if reporter is not None:
            reporter.report(metrics, ckpt)
        if diverged:
            break
    return history
