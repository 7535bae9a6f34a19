"""On-disk fixture trees in each dataset's real layout, and an error-message check, for the data tests."""

from __future__ import annotations

from pathlib import Path

import nibabel as nib
import numpy as np
import pytest
from PIL import Image

from cycleseg.model.config import TrialConfig
from cycleseg.model.errors import UserError


def cfg_for(tmp_path: Path, **kw) -> TrialConfig:
    kw.setdefault("cache_dir", str(tmp_path / "cache"))
    return TrialConfig(**kw)


def raises_user_error(fn, *fragments: str) -> str:
    """Run ``fn``; it must raise a one-line UserError containing every fragment."""
    with pytest.raises(UserError) as info:
        fn()
    msg = str(info.value)
    assert "\n" not in msg
    for f in fragments:
        assert f in msg, f"{f!r} not in {msg!r}"
    return msg


VOC_W, VOC_H = 40, 32
PALETTE = [v for i in range(256) for v in ((i * 37) % 256, (i * 91) % 256, (i * 53) % 256)]
def voc_mask(cls: int) -> np.ndarray:
    """Left half ``cls``, a 255 boundary column, background on the right."""
    m = np.zeros((VOC_H, VOC_W), np.uint8)
    m[:, :20] = cls
    m[:, 20] = 255
    return m


def write_palette_png(path: Path, mask: np.ndarray) -> None:
    im = Image.fromarray(mask)
    im.putpalette(PALETTE)  # "L" + palette -> a "P" image whose indices are the classes
    im.save(path)


def write_voc(root: Path, train: list[str], val: list[str], *, train_list: str = "train_aug.txt") -> dict:
    rng = np.random.default_rng(0)
    for sub in ("JPEGImages", "SegmentationClassAug", "ImageSets/Segmentation"):
        (root / sub).mkdir(parents=True, exist_ok=True)
    classes = {}
    for k, image_id in enumerate(sorted(set(train) | set(val))):
        Image.fromarray(rng.integers(0, 256, (VOC_H, VOC_W, 3), dtype=np.uint8)).save(
            root / "JPEGImages" / f"{image_id}.jpg", quality=95
        )
        classes[image_id] = k % 20 + 1
        write_palette_png(root / "SegmentationClassAug" / f"{image_id}.png", voc_mask(classes[image_id]))
    (root / "ImageSets/Segmentation" / train_list).write_text("\n".join(train) + "\n")
    (root / "ImageSets/Segmentation/val.txt").write_text("\n".join(val) + "\n")
    return classes


CS_H, CS_W = 32, 64
def cs_label_ids(k: int) -> np.ndarray:
    m = np.zeros((CS_H, CS_W), np.uint8)
    m[0, :34] = np.arange(34)  # every labelId once
    m[0, 34] = 255
    m[8:24, 16:48] = 26  # a car
    m[30, k] = 24  # a person marks the file
    return m


CS_FILES = {
    "train": ["aachen/aachen_000000_000019", "bochum/bochum_000000_000313"],
    "val": ["frankfurt/frankfurt_000000_000294"],
}
def write_cityscapes(root: Path) -> None:
    rng = np.random.default_rng(1)
    k = 0
    for split, stems in CS_FILES.items():
        for stem in stems:
            img = root / "leftImg8bit" / split / f"{stem}_leftImg8bit.png"
            gt = root / "gtFine" / split / f"{stem}_gtFine_labelIds.png"
            img.parent.mkdir(parents=True, exist_ok=True)
            gt.parent.mkdir(parents=True, exist_ok=True)
            Image.fromarray(rng.integers(0, 256, (CS_H, CS_W, 3), dtype=np.uint8)).save(img)
            Image.fromarray(cs_label_ids(k)).save(gt)
            # Cityscapes ships other label files beside labelIds: they must not be picked up
            Image.fromarray(np.zeros((CS_H, CS_W), np.uint8)).save(str(gt).replace("labelIds", "instanceIds"))
            k += 1


AC_X, AC_Y, AC_Z = 20, 16, 3
ED, ES = 1, 7
def acdc_gt(patient: int, frame: int) -> np.ndarray:
    """Labels 0..3; the LV block's column says the patient, the RV row says the frame."""
    gt = np.zeros((AC_X, AC_Y, AC_Z), np.uint8)
    gt[2:5, patient : patient + 3, :] = 3
    gt[10 if frame == ED else 12, 0:4, :] = 1
    gt[15, 5:9, :] = 2
    return gt


def write_nifti(path: Path, arr: np.ndarray) -> None:
    nib.save(nib.Nifti1Image(arr, np.eye(4)), str(path))


def write_acdc(root: Path, n_patients: int) -> dict[str, np.ndarray]:
    """The public layout; returns each ED image volume by patient name."""
    rng = np.random.default_rng(2)
    volumes = {}
    for p in range(n_patients):
        name = f"patient{p + 1:03d}"
        folder = root / "training" / name
        folder.mkdir(parents=True)
        (folder / "Info.cfg").write_text(f"ED: {ED}\nES: {ES}\nGroup: DCM\nHeight: 184.0\nNbFrame: 30\nWeight: 95.0\n")
        for frame in (ED, ES):
            vol = rng.integers(0, 1200, (AC_X, AC_Y, AC_Z)).astype(np.int16)
            write_nifti(folder / f"{name}_frame{frame:02d}.nii.gz", vol)
            write_nifti(folder / f"{name}_frame{frame:02d}_gt.nii.gz", acdc_gt(p, frame))
            if frame == ED:
                volumes[name] = vol
        write_nifti(folder / f"{name}_4d.nii.gz", rng.integers(0, 9, (AC_X, AC_Y, AC_Z, 2)).astype(np.int16))
    return volumes
