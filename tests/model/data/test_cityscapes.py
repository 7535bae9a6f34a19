"""Cityscapes: labelIds to train ids, layout errors."""

from __future__ import annotations

import numpy as np
import pytest
from PIL import Image

from cycleseg.model.data import prepare_dataset
from cycleseg.model.data.splits import hold_out
from tests.model.data import clear_memo
from tests.model.data.trees import CS_H, CS_W, cfg_for, cs_label_ids, raises_user_error, write_cityscapes


@pytest.fixture(autouse=True)
def _fresh_memo():
    clear_memo()
    yield
    clear_memo()


def _cs(tmp_path):
    root = tmp_path / "cs"
    write_cityscapes(root)
    return root, lambda: prepare_dataset(
        cfg_for(tmp_path, dataset="cityscapes", data_root=str(root), image_height=CS_H, image_width=CS_W)
    )


# labelId -> trainId for labelIds 0..33, written out by hand from the Cityscapes label table
EXPECTED_TRAIN_IDS = [
    255, 255, 255, 255, 255, 255, 255,  # 0-6: unlabeled, ego vehicle, ..., ground
    0, 1,  # 7 road, 8 sidewalk
    255, 255,  # 9 parking, 10 rail track
    2, 3, 4,  # 11 building, 12 wall, 13 fence
    255, 255, 255,  # 14 guard rail, 15 bridge, 16 tunnel
    5,  # 17 pole
    255,  # 18 polegroup
    6, 7, 8, 9, 10, 11, 12, 13, 14, 15,  # 19 traffic light ... 28 bus
    255, 255,  # 29 caravan, 30 trailer
    16, 17, 18,  # 31 train, 32 motorcycle, 33 bicycle
]  # fmt: skip


def test_cityscapes_label_ids_map_to_train_ids(tmp_path):
    root = tmp_path / "cs"
    write_cityscapes(root)
    cfg = cfg_for(tmp_path, dataset="cityscapes", data_root=str(root), image_height=CS_H, image_width=CS_W)
    data = prepare_dataset(cfg)
    assert data.info.num_classes == 19 and data.info.class_names[13] == "car"
    # test: the shipped val split; the shipped train split (2 files) gives train 1 and val 1
    assert data.train_images.shape == (1, 3, CS_H, CS_W) and data.val_masks.shape == (1, CS_H, CS_W)
    assert data.test_masks.shape == (1, CS_H, CS_W)
    m = data.train_masks[0]
    assert m[0, :34].tolist() == EXPECTED_TRAIN_IDS
    assert m[0, 34] == 255  # raw 255 stays ignore
    assert m[16, 30] == 13  # car
    assert m[5, 5] == 255  # labelId 0 (unlabeled) -> ignore
    # files are read sorted (aachen k=0, bochum k=1) and each mask belongs to its image
    tr, va = hold_out(2, 0.1, 0)
    assert data.train_masks[0][30, tr[0]] == 11 and data.val_masks[0][30, va[0]] == 11
    assert data.test_masks[0][30, 2] == 11
    png = np.asarray(Image.open(root / "leftImg8bit/val/frankfurt/frankfurt_000000_000294_leftImg8bit.png"))
    assert np.array_equal(data.test_images[0], png.transpose(2, 0, 1))


def test_cityscapes_default_size(tmp_path):
    root = tmp_path / "cs"
    write_cityscapes(root)
    data = prepare_dataset(cfg_for(tmp_path, dataset="cityscapes", data_root=str(root)))
    assert data.train_images.shape == (1, 3, 128, 256) and data.test_masks.shape == (1, 128, 256)
    assert data.test_masks[0][64, 128] == 13  # the car block (rows 8..24, cols 16..48) scaled 4x
    assert set(np.unique(data.train_masks).tolist()) <= set(range(19)) | {255}


def test_cityscapes_errors(tmp_path):
    root, load = _cs(tmp_path)
    gt = root / "gtFine/train/bochum/bochum_000000_000313_gtFine_labelIds.png"
    bad = cs_label_ids(1)
    bad[3, 3] = 40
    Image.fromarray(bad).save(gt)
    raises_user_error(load, gt.name, "40")
    gt.unlink()
    raises_user_error(load, gt.name, "missing")
    Image.fromarray(cs_label_ids(1)).save(gt)
    img = root / "leftImg8bit/val/frankfurt/frankfurt_000000_000294_leftImg8bit.png"
    img.unlink()
    raises_user_error(load, "leftImg8bit/val", "no *_leftImg8bit.png")
    for f in sorted((root / "gtFine/val").rglob("*"), reverse=True):
        f.unlink() if f.is_file() else f.rmdir()
    (root / "gtFine/val").rmdir()
    raises_user_error(load, "gtFine/val")


def test_cityscapes_size_mismatch(tmp_path):
    root, load = _cs(tmp_path)
    gt = root / "gtFine/train/aachen/aachen_000000_000019_gtFine_labelIds.png"
    Image.fromarray(np.zeros((CS_H // 2, CS_W // 2), np.uint8)).save(gt)
    raises_user_error(load, gt.name, "32x16")
