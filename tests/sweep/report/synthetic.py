"""Synthetic sweeps written with the results schema (``cycleseg.sweep.results.parquet``), for the report tests.

Every number the tests check is computed by hand in their comments (std with ddof=1, t_{0.975,2} = 4.302653).
"""

from __future__ import annotations

import math
from pathlib import Path

import pyarrow.parquet as pq

from cycleseg.model.config import TrialConfig
from cycleseg.model.data import dataset_info
from cycleseg.model.records import epoch_table
from cycleseg.sweep.results import parquet as res
from tests.records import STEPS_PER_EPOCH, epoch_record

T975_DF2 = 4.302653
VAL_OFFSET = 0.1  # val mIoU = test mIoU + this at every trial's chosen epoch
VERSIONS = {"cycleseg_version": "0.1.0", "torch_version": "2.13.0", "ray_version": "2.60.0", "git_commit": "abc"}
VOC_NAMES = [
    "background", "aeroplane", "bicycle", "bird", "boat", "bottle", "bus", "car", "cat", "chair", "cow",
    "diningtable", "dog", "horse", "motorbike", "person", "pottedplant", "sheep", "sofa", "train", "tvmonitor",
]
LOSSES = {
    "partial": ["S_gen", "G_total"], "full": ["S_gen", "G_total"],
    "hung": ["S_gen", "adv_G", "semi_adv_G", "semi_G", "G_total", "D_total"],
    "cyclegan": ["S_gen", "I_gen", "S_cycle", "I_cycle", "S_adv_G", "I_adv_G", "G_total", "S_adv_D", "I_adv_D",
                 "D_total"],
}
def write_trial(sweep_dir: Path, trial_id: str, *, method: str, fraction: float, seed: int, value: float | None,
                status: str = "completed", variant: str | None = None, class_iou: list | None = None,
                checkpoint_path: str | None = None, error: str | None = None, epochs: int = 2,
                steps_per_epoch: int = STEPS_PER_EPOCH, **cfg_fields) -> None:
    """One trial as sweep/results/parquet.py writes it: ``value`` is its test mIoU at the epoch chosen on val (the
    last), where its val mIoU is ``value + VAL_OFFSET``; ``status`` shortens or ends the history to match."""
    cfg = TrialConfig(dataset=cfg_fields.pop("dataset", "voc"), method=method, labeled_fraction=fraction, seed=seed,
                      epochs=epochs, preset="tiny", ngf=8, ndf=8, n_blocks=2, **cfg_fields)
    n_classes = len(dataset_info(cfg).class_names)
    hist = history(method, value if value is not None else 0.1, epochs, class_iou, steps_per_epoch, n_classes)
    if status == "early_stopped":
        hist = hist[:-1]
    elif status == "diverged":
        hist[-1]["diverged"] = True
    row = res.trial_row(sweep=sweep_dir.name, trial_id=trial_id, cfg=cfg, variant=variant, history=hist,
                        error=error, wall_seconds=1.0, gpus=0.0, checkpoint_path=checkpoint_path, versions=VERSIONS)
    assert row["status"] == status, (row["status"], status)
    res.write_trial(sweep_dir, row, hist)


def history(method: str, value: float, epochs: int, class_iou: list | None = None,
            steps_per_epoch: int = STEPS_PER_EPOCH, n_classes: int = len(VOC_NAMES)) -> list[dict]:
    """Val and test mIoU rising linearly to ``value + VAL_OFFSET`` and ``value`` (so the last epoch is chosen);
    every loss term of the method at 1/epoch; ``class_iou`` the last epoch's test class IoU."""
    hist = [epoch_record(e, (value + VAL_OFFSET) * e / epochs, test_miou=value * e / epochs,
                         n_classes=n_classes, losses={k: 1.0 / e for k in LOSSES[method]},
                         unlabeled=method in ("cyclegan", "hung"), steps_per_epoch=steps_per_epoch)
            for e in range(1, epochs + 1)]
    if class_iou is not None:
        hist[-1]["test_class_iou"] = class_iou
    return hist


def write_epochs(sweep_dir: Path, trial_id: str, method: str, config_hash: str, value: float, epochs: int) -> None:
    """Only an epochs file: a trial that is still running (no trials/ file yet)."""
    ids = {"sweep": sweep_dir.name, "trial_id": trial_id, "config_hash": config_hash}
    (sweep_dir / "epochs").mkdir(parents=True, exist_ok=True)
    pq.write_table(epoch_table(history(method, value, epochs), ids, res.ID_FIELDS),
                   sweep_dir / "epochs" / f"{trial_id}.parquet")


def class_iou(value: float, nan_at: tuple[int, ...] = ()) -> list[float]:
    """IoU of class k = value + 0.001·k, NaN where the class was absent and never predicted."""
    return [math.nan if k in nan_at else value + 0.001 * k for k in range(len(VOC_NAMES))]


# test mIoU per (method, fraction) for seeds 0, 1, 2 (hung: seeds 0, 1 only)
MAIN = {
    ("partial", 0.1): [0.20, 0.22, 0.24],
    ("cyclegan", 0.1): [0.25, 0.26, 0.30],
    ("partial", 0.2): [0.26, 0.27, 0.28],
    ("cyclegan", 0.2): [0.29, 0.27, 0.31],
    ("hung", 0.2): [0.27, 0.29],
    ("full", 1.0): [0.50, 0.52, 0.54],
}
def make_table1_sweep(root: Path, name: str = "table1") -> Path:
    d = root / name
    for (method, frac), values in MAIN.items():
        for seed, v in enumerate(values):
            nan_at = (5,) if (method == "partial" and seed == 0) else (6,) if method == "cyclegan" else ()
            write_trial(d, f"{method}_{frac}_{seed}", method=method, fraction=frac, seed=seed, value=v,
                        variant="proposed" if method == "cyclegan" else None, class_iou=class_iou(v, nan_at))
    # trials that must be listed, never averaged: their values would move every mean they touched
    write_trial(d, "cyclegan_0.1_3", method="cyclegan", fraction=0.1, seed=3, value=0.99, status="diverged")
    write_trial(d, "partial_0.2_3", method="partial", fraction=0.2, seed=3, value=None, status="failed",
                error="RuntimeError: injected crash in epoch 1\nTraceback ...")
    write_trial(d, "cyclegan_0.2_4", method="cyclegan", fraction=0.2, seed=4, value=0.95, status="early_stopped")
    # a sweep still running: a writer's temp file and epochs of a trial without a result yet
    (d / "trials" / ".running_0.parquet.tmp.parquet").write_bytes(b"not parquet yet")
    write_epochs(d, "running_0", "partial", "h", 0.1, 1)
    return d


ABLATION = {
    "no_label_cycle": ({"lambda_2": 0.0}, [0.26, 0.25, 0.30]),
    "no_image_disc": ({"lambda_5": 0.0}, [0.25, 0.22, 0.25]),
}
def make_ablation_sweep(root: Path) -> Path:
    d = root / "ablation"
    for variant, (lambdas, values) in ABLATION.items():
        for seed, v in enumerate(values):
            write_trial(d, f"{variant}_{seed}", method="cyclegan", fraction=0.2, seed=seed, value=v, variant=variant,
                        **lambdas)
    return d


