"""ACDC: ED/ES slices from NIfTI, split by patient, errors."""

from __future__ import annotations

import numpy as np
import pytest

from cycleseg.model.data import prepare_dataset
from tests.model.data import clear_memo
from tests.model.data.trees import (
    AC_X,
    AC_Y,
    AC_Z,
    ED,
    ES,
    acdc_gt,
    cfg_for,
    raises_user_error,
    write_acdc,
    write_nifti,
)


@pytest.fixture(autouse=True)
def _fresh_memo():
    clear_memo()
    yield
    clear_memo()


def patient_of(mask: np.ndarray) -> int:
    return int(np.flatnonzero(mask[2] == 3)[0])


def _acdc(tmp_path):
    root = tmp_path / "acdc"
    write_acdc(root, 3)
    return root, lambda: prepare_dataset(
        cfg_for(tmp_path, dataset="acdc", data_root=str(root), image_height=AC_X, image_width=AC_Y)
    )


def test_acdc_loads_ed_es_slices_split_by_patient(tmp_path):
    root = tmp_path / "acdc"
    volumes = write_acdc(root, 8)
    cfg = cfg_for(tmp_path, dataset="acdc", data_root=str(root), image_height=AC_X, image_width=AC_Y)
    data = prepare_dataset(cfg)
    assert data.info.num_classes == 4 and data.info.in_channels == 1
    assert data.info.class_names == ("background", "RV cavity", "myocardium", "LV cavity")
    # 8 patients: 2 test (25 %), 1 val (10 % of the other 6, at least 1), 5 train;
    # 2 frames (ED, ES; not the 4d file) x 3 slices each
    assert data.train_images.shape == (30, 1, AC_X, AC_Y) and data.val_masks.shape == (6, AC_X, AC_Y)
    assert data.test_masks.shape == (12, AC_X, AC_Y)
    train_p, val_p, test_p = ([patient_of(m) for m in masks] for masks in
                              (data.train_masks, data.val_masks, data.test_masks))
    assert not set(train_p) & set(val_p) and not set(train_p) & set(test_p) and not set(val_p) & set(test_p)
    assert sorted(set(train_p) | set(val_p) | set(test_p)) == list(range(8))
    assert (len(set(train_p)), len(set(val_p)), len(set(test_p))) == (5, 1, 2)
    assert all(train_p.count(p) == 6 for p in set(train_p))
    # slice order inside a patient: ED slices 0..2 then ES; rows = the volume's first axis
    first = train_p[0]
    assert np.array_equal(data.train_masks[0], acdc_gt(first, ED)[:, :, 0])
    assert np.array_equal(data.train_masks[5], acdc_gt(first, ES)[:, :, 2])
    # per-volume intensity scaling: monotone in the raw values, stretched to 0..255
    raw = volumes[f"patient{first + 1:03d}"]
    scaled = np.stack([data.train_images[z, 0] for z in range(3)], axis=-1)
    order = np.argsort(raw, axis=None, kind="stable")
    assert (np.diff(scaled.ravel()[order].astype(int)) >= 0).all()
    assert scaled.min() == 0 and scaled.max() == 255


def test_acdc_default_size(tmp_path):
    root = tmp_path / "acdc"
    write_acdc(root, 3)
    data = prepare_dataset(cfg_for(tmp_path, dataset="acdc", data_root=str(root)))
    assert data.train_images.shape == (6, 1, 128, 128) and data.val_masks.shape == (6, 128, 128)
    assert data.test_images.shape == (6, 1, 128, 128)
    assert set(np.unique(data.train_masks).tolist()) == {0, 1, 2, 3}


def test_acdc_layout_errors(tmp_path):
    root, load = _acdc(tmp_path)
    p1 = root / "training/patient001"
    (p1 / "patient001_frame07_gt.nii.gz").unlink()
    raises_user_error(load, "patient001_frame07_gt.nii.gz", "missing")
    (p1 / "Info.cfg").write_text("ED: 1\nGroup: NOR\n")
    raises_user_error(load, "Info.cfg", "ES")
    (p1 / "Info.cfg").unlink()
    raises_user_error(load, "patient001/Info.cfg")
    (root / "training").rename(root / "train")
    raises_user_error(load, "training")


def test_acdc_bad_labels_shape_and_unreadable(tmp_path):
    root, load = _acdc(tmp_path)
    gt_path = root / "training/patient002/patient002_frame01_gt.nii.gz"
    gt = acdc_gt(1, ED)
    gt[0, 0, 0] = 5
    write_nifti(gt_path, gt)
    raises_user_error(load, gt_path.name, "5", "0..3")
    write_nifti(gt_path, np.zeros((AC_X, AC_Y, AC_Z + 1), np.uint8))
    raises_user_error(load, gt_path.name, "(20, 16, 4)", "(20, 16, 3)")
    gt_path.write_bytes(b"\x1f\x8b\x08\x00 broken gzip")
    raises_user_error(load, gt_path.name, "cannot read")
