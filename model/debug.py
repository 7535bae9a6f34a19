"""`cycleseg debug`: one local trial, without Ray, with files a person can look at.

It calls the same ``run_trial`` a sweep worker calls, prints a line per epoch, keeps
``metrics.parquet`` current (the epoch records, ``cycleseg.model.records``) and draws the sample grid.
"""

from __future__ import annotations

from pathlib import Path
from typing import Any

import pyarrow.parquet as pq

from cycleseg.model import checkpoint
from cycleseg.model.config import TrialConfig, config_to_yaml
from cycleseg.model.data import prepare_dataset
from cycleseg.model.errors import UserError
from cycleseg.model.io import atomic_write, atomic_write_text
from cycleseg.model.records import epoch_table, selected_epoch
from cycleseg.model.resolve import load_config_file, resolve_config
from cycleseg.model.trainer import resolve_device, run_trial

METRICS_FILE = "metrics.parquet"
CONFIG_FILE = "config.yaml"
SAMPLES_FILE = "samples.png"


def _check_resume(cfg: TrialConfig, out: Path, resume: bool) -> None:
    ckpt_cfg = out / checkpoint.FOLDER / checkpoint.CONFIG
    if not resume:
        if ckpt_cfg.exists():
            raise UserError(f"'{out}' already holds a run; pass --resume to continue it or choose another --out")
        return
    if not ckpt_cfg.exists():
        raise UserError(f"--resume: no checkpoint in '{out / checkpoint.FOLDER}'; run once without --resume first")
    old = resolve_config(load_config_file(ckpt_cfg))
    if old.hash() != cfg.hash():
        diff = [k for k, v in cfg.to_dict().items() if old.to_dict()[k] != v]
        raise UserError(
            f"--resume: the checkpoint in '{out}' was made with other settings ({', '.join(diff)}); "
            "repeat the original options or choose another --out"
        )


def write_metrics(path: Path, history: list[dict[str, Any]]) -> None:
    table = epoch_table(history)
    atomic_write(path, lambda p: pq.write_table(table, p))


class LocalReporter:
    """Print a line per epoch and keep metrics.parquet current."""

    def __init__(self, out: Path, history: list[dict[str, Any]]) -> None:
        self.out = out
        self.history = list(history)  # epochs before a resume, then one per report

    def report(self, metrics: dict[str, Any], checkpoint_dir: Path) -> None:
        from tqdm import tqdm

        self.history.append(metrics)
        write_metrics(self.out / METRICS_FILE, self.history)
        losses = "  ".join(f"{k[5:]}={v:.4f}" for k, v in metrics.items() if k.startswith("loss_"))
        tqdm.write(
            f"epoch {metrics['epoch']:>3}  val mIoU {metrics['val_miou']:.4f}  test mIoU {metrics['test_miou']:.4f}  "
            f"lr {metrics['lr']:.2e}  {metrics['epoch_seconds']:.1f}s  {losses}"
        )


def debug_run(cfg: TrialConfig, out: Path, *, resume: bool = False) -> list[dict[str, Any]]:
    """Run one trial locally; write config.yaml, metrics.parquet, checkpoint/ and samples.png to ``out``."""
    from cycleseg.model.visualize import save_sample_grid

    out = Path(out)
    _check_resume(cfg, out, resume)
    data = prepare_dataset(cfg, progress=True)
    out.mkdir(parents=True, exist_ok=True)
    atomic_write_text(out / CONFIG_FILE, config_to_yaml(cfg, header=f"# cycleseg resolved config ({cfg.hash()})\n"))
    print(
        f"cycleseg debug: {cfg.method} on {cfg.dataset} ({len(data.train_images)} train / {len(data.val_images)} "
        f"val / {len(data.test_images)} test, {data.info.num_classes} classes), "
        f"labeled_fraction={cfg.labeled_fraction}, seed={cfg.seed}, "
        f"preset={cfg.preset}, {cfg.epochs} epochs, device={resolve_device(cfg.device)} -> {out}"
    )
    ckpt = out / checkpoint.FOLDER
    reporter = LocalReporter(out, checkpoint.read_history(ckpt) if resume else [])
    history = run_trial(cfg, workdir=out, reporter=reporter, resume=resume, data=data, progress=True)
    _, method = checkpoint.load_trial(ckpt)
    save_sample_grid(out / SAMPLES_FILE, {cfg.method: method}, data, generator=method)
    last = history[-1]
    if last["diverged"]:
        print(f"diverged in epoch {last['epoch']}: a loss became NaN/inf; lower lr or the λ weights")
    chosen = selected_epoch(history, cfg.select)
    picked = (f"epoch {chosen['epoch']} (select={cfg.select}, chosen on val): val mIoU {chosen['val_miou']:.4f}, "
              f"test mIoU {chosen['test_miou']:.4f}" if chosen else "no epoch with a finite val mIoU")
    print(
        f"done: {picked}; {last['steps']:,} steps\n"
        f"  {out / CONFIG_FILE}\n  {out / METRICS_FILE}\n  {ckpt}\n  {out / SAMPLES_FILE}"
    )
    return history
