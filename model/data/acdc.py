"""ACDC (MICCAI 2017), public NIfTI layout: training/patientNNN/{Info.cfg, *_frameMM.nii.gz, *_frameMM_gt.nii.gz}."""

from __future__ import annotations

import re
from pathlib import Path

import numpy as np
from PIL import Image

from ..config import TrialConfig
from ..errors import UserError
from .base import DatasetInfo, PreparedData, register_dataset
from .decode import check_labels, data_root, first_line, parallel_map, require, resize_mask, stack
from .splits import split_patients

ACDC_INFO = DatasetInfo(
    name="acdc",
    num_classes=4,
    in_channels=1,
    class_names=("background", "RV cavity", "myocardium", "LV cavity"),
    height=128,
    width=128,
)


def _read_nifti(path: Path) -> np.ndarray:
    if not path.is_file():
        raise UserError(f"missing file {path}; each ED/ES frame in Info.cfg needs its image and _gt file")
    import nibabel as nib

    try:
        return np.asarray(nib.load(str(path)).dataobj)
    except Exception as e:  # nibabel/gzip/zlib raise many types for a broken file; name the file
        raise UserError(f"cannot read NIfTI file {path} ({first_line(e)}); replace or delete it") from None


def _acdc_frames(info_cfg: Path) -> list[int]:
    if not info_cfg.is_file():
        raise UserError(f"missing file {info_cfg}; every training/patientNNN/ folder needs its Info.cfg")
    text = info_cfg.read_text()
    frames = []
    for key in ("ED", "ES"):
        m = re.search(rf"^\s*{key}\s*:\s*(\d+)\s*$", text, re.MULTILINE)
        if m is None:
            raise UserError(f"{info_cfg} has no '{key}: <frame>' line; restore the original Info.cfg")
        frames.append(int(m.group(1)))
    return sorted(set(frames))


def _scale_volume(vol: np.ndarray) -> np.ndarray:
    """Per-volume intensity → uint8: clip to the 0.5/99.5 percentiles, stretch to 0..255."""
    vol = vol.astype(np.float32)
    lo, hi = np.percentile(vol, [0.5, 99.5])
    if hi <= lo:
        return np.zeros(vol.shape, np.uint8)
    return np.rint((np.clip(vol, lo, hi) - lo) / (hi - lo) * 255).astype(np.uint8)


def _acdc_patient(folder: Path, info: DatasetInfo) -> list[tuple[np.ndarray, np.ndarray]]:
    """2D slices (along the volume's last axis) of the ED and ES frames; rows = the first axis."""
    pairs = []
    for frame in _acdc_frames(folder / "Info.cfg"):
        image_path = folder / f"{folder.name}_frame{frame:02d}.nii.gz"
        mask_path = folder / f"{folder.name}_frame{frame:02d}_gt.nii.gz"
        vol, gt = _read_nifti(image_path), _read_nifti(mask_path)
        if vol.ndim != 3 or vol.shape != gt.shape:
            raise UserError(
                f"mask {mask_path} has shape {gt.shape} but its image {image_path.name} has {vol.shape}; "
                "both must be the same 3D volume"
            )
        labels = np.rint(gt).astype(np.int64)
        check_labels(labels, info.num_classes, mask_path)
        vol8, labels8 = _scale_volume(vol), labels.astype(np.uint8)
        for z in range(vol.shape[-1]):
            img = Image.fromarray(np.ascontiguousarray(vol8[:, :, z]))
            img = img.resize((info.width, info.height), Image.Resampling.BILINEAR)
            pairs.append((np.asarray(img)[None], resize_mask(np.ascontiguousarray(labels8[:, :, z]), info)))
    return pairs


@register_dataset(ACDC_INFO, on_disk=True, key_fields=("split_seed", "val_fraction"))
def build_acdc(cfg: TrialConfig, info: DatasetInfo, progress: bool) -> PreparedData:
    """Patients split train/val/test by ``split_seed`` (no patient on two sides); all ED/ES slices of each."""
    root = require(data_root(cfg), "ACDC data_root", "point data_root at the folder holding training/")
    training = require(root / "training", "ACDC folder", "expected training/patientNNN/ folders from the ACDC release")
    patients = sorted(p.name for p in training.iterdir() if p.is_dir() and p.name.startswith("patient"))
    if not patients:
        raise UserError(f"no patientNNN/ folders under {training}; expected the ACDC training release")
    out = {}
    splits = split_patients(patients, cfg.split_seed, cfg.val_fraction)
    for split, names in zip(("train", "val", "test"), splits, strict=True):
        per_patient = parallel_map(
            lambda n: _acdc_patient(training / n, info), names, desc=f"acdc {split}", progress=progress
        )
        out[split] = stack([pair for pairs in per_patient for pair in pairs], info)
    return PreparedData(info, *out["train"], *out["val"], *out["test"])
