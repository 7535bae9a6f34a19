"""`cycleseg debug`: one local trial, without Ray, with files a person can look at.

It calls the same ``run_trial`` a sweep worker calls, prints a line per epoch, keeps
``metrics.parquet`` current (the epoch records, ``cycleseg.model.records``) and draws the sample grid.
"""

from __future__ import annotations

from pathlib import Path
from typing import Any

import pyarrow.parquet as pq

from . import checkpoint
from .config import TrialConfig, config_to_yaml
from .data import prepare_dataset
from .device import resolve_device
from .errors import UserError
from .io import atomic_write, atomic_write_text, check_output_dir
from .metrics import LEARNED_IOU, predicts_one_class
from .records import epoch_table, selected_epoch
from .resolve import load_config_file, resolve_config
from .trainer import run_trial

METRICS_FILE = "metrics.parquet"
CONFIG_FILE = "config.yaml"
SAMPLES_FILE = "samples.png"
# A bare `cycleseg debug` on a CPU machine: a sanity check of the whole path in about a minute, not the paper's
# 400 epochs of 11-M-parameter networks (days on a CPU). Any option the user gives turns it off.
SANITY_RUN: dict[str, Any] = {"preset": "tiny", "epochs": 2, "image_height": 32, "image_width": 32,
                              "digits_train": 200, "digits_val": 50, "digits_test": 50}


def debug_config(config_file: str | Path | None, flags: dict[str, Any], sets: list[str], *, out: str | Path = "",
                 resume: bool = False) -> TrialConfig:
    """The run's config from ``--config`` (with ``--resume``: the run's own config), the command's flags and
    ``--set`` (later wins). With none of them: ``--resume`` continues the run in ``out`` with its own config, and
    a new run on a machine without a GPU is the quick ``SANITY_RUN``."""
    from .resolve import parse_set

    check_output_dir(out, "--out")
    overrides = parse_set(sets)
    nothing = config_file is None and not flags and not overrides
    saved = Path(out) / checkpoint.FOLDER / checkpoint.CONFIG if str(out).strip() else None
    if nothing and resume and saved is not None and saved.is_file():
        return resolve_config(load_config_file(saved))
    if nothing and not resume and resolve_device("auto").type == "cpu":
        print("no options on a CPU machine: a quick sanity run (tiny networks, 2 epochs, 200 digits scenes at 32×32); "
              "give --preset, --epochs or --config for a real one")
        return resolve_config(SANITY_RUN)
    if config_file:
        base = load_config_file(config_file)
    else:  # --resume with a few options: they change the run's own config, not the defaults
        base = load_config_file(saved) if resume and saved is not None and saved.is_file() else {}
    return resolve_config(base, flags, overrides)


def check_out(cfg: TrialConfig, out: str | Path, resume: bool) -> Path:
    """``--out`` as the run's folder, checked before anything is decoded or written (with ``resume``: that its
    checkpoint is readable and was made with these settings)."""
    out = check_output_dir(out, "--out")
    ckpt_cfg = out / checkpoint.FOLDER / checkpoint.CONFIG
    if not resume:
        if ckpt_cfg.exists():
            raise UserError(f"'{out}' already holds a run; pass --resume to continue it or choose another --out")
        return out
    if not ckpt_cfg.exists():
        raise UserError(f"--resume: no checkpoint in '{out / checkpoint.FOLDER}'; run once without --resume first")
    checkpoint.load_state(out / checkpoint.FOLDER)  # damaged: one line saying to start again without --resume
    old = resolve_config(load_config_file(ckpt_cfg))
    if old.hash() != cfg.hash():
        diff = [k for k, v in cfg.to_dict().items() if old.to_dict()[k] != v]
        raise UserError(
            f"--resume: the checkpoint in '{out}' was made with other settings ({', '.join(diff)}); "
            "repeat the original options or choose another --out"
        )
    return out


def interrupted_line(out: str | Path) -> str:
    """What a Ctrl-C kept of a debug run in ``out``, and how to go on."""
    ckpt = Path(out) / checkpoint.FOLDER
    if not (ckpt / checkpoint.CONFIG).is_file():
        return "before the first epoch finished: nothing kept; start again with the same options"
    epochs = len(checkpoint.read_history(ckpt))
    return (f"the {epochs} finished epoch(s) are kept in {ckpt}; continue with: cycleseg debug "
            f"--out {out} --resume")


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


def debug_run(cfg: TrialConfig, out: str | Path, *, resume: bool = False) -> list[dict[str, Any]]:
    """Run one trial locally; write config.yaml, metrics.parquet, checkpoint/ and samples.png to ``out``."""
    from .visualize import save_sample_grid

    out = check_out(cfg, out, resume)
    device = resolve_device(cfg.device)  # refused before anything is written
    data = prepare_dataset(cfg, progress=True)
    out.mkdir(parents=True, exist_ok=True)
    atomic_write_text(out / CONFIG_FILE, config_to_yaml(cfg, header=f"# cycleseg resolved config ({cfg.hash()})\n"))
    print(
        f"cycleseg debug: {cfg.method} on {cfg.dataset} ({len(data.train_images)} train / {len(data.val_images)} "
        f"val / {len(data.test_images)} test, {data.info.num_classes} classes), "
        f"labeled_fraction={cfg.labeled_fraction}, seed={cfg.seed}, "
        f"preset={cfg.preset}, {cfg.epochs} epochs, device={device} -> {out}"
    )
    ckpt = out / checkpoint.FOLDER
    reporter = LocalReporter(out, checkpoint.read_history(ckpt) if resume else [])
    history = run_trial(cfg, workdir=out, reporter=reporter, resume=resume, data=data, progress=True)
    _, method, _ = checkpoint.load_trial(ckpt)  # the epoch it reports
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
    if chosen and predicts_one_class(chosen["val_class_iou"]):
        print(f"note: it predicts essentially one class (every other class has val IoU below {LEARNED_IOU}), as "
              f"{last['steps']:,} steps usually leave it: the path works, learning needs a longer run (e.g. "
              "--preset tiny --epochs 20 --set lr=0.002, as search_spaces/digits-table1.yaml trains)")
    return history
