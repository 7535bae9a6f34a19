"""VOC: palette masks, split lists, and errors that name the broken file."""

from __future__ import annotations

import numpy as np
import pytest
from PIL import Image

from cycleseg.model.data import prepare_dataset
from cycleseg.model.data.splits import hold_out
from tests.model.data import clear_memo
from tests.model.data.trees import VOC_H, VOC_W, cfg_for, raises_user_error, voc_mask, write_palette_png, write_voc


@pytest.fixture(autouse=True)
def _fresh_memo():
    clear_memo()
    yield
    clear_memo()


def _voc(tmp_path):
    root = tmp_path / "voc"
    write_voc(root, ["a1", "a2"], ["b1"])
    cfg = cfg_for(tmp_path, dataset="voc", data_root=str(root), image_height=VOC_H, image_width=VOC_W)
    return root, lambda: prepare_dataset(cfg)


def test_voc_loads_palette_masks(tmp_path):
    root = tmp_path / "voc"
    classes = write_voc(root, ["2007_000032", "2007_000039", "2008_000001"], ["2007_000121", "2009_000002"])
    assert Image.open(root / "SegmentationClassAug/2007_000032.png").mode == "P"  # the real format
    data = prepare_dataset(cfg_for(tmp_path, dataset="voc", data_root=str(root), image_height=VOC_H, image_width=VOC_W))
    assert data.info.num_classes == 21 and data.info.class_names[15] == "person"
    # test: the official val list; val: 10 % (at least 1) of the train list, held out with split_seed 0
    assert data.test_masks.shape == (2, VOC_H, VOC_W)
    assert np.array_equal(data.test_masks[1], voc_mask(classes["2009_000002"]))
    listed = ["2007_000032", "2007_000039", "2008_000001"]
    tr, va = hold_out(3, 0.1, 0)
    assert data.train_images.shape == (2, 3, VOC_H, VOC_W) and data.val_masks.shape == (1, VOC_H, VOC_W)
    for images, masks, idx in ((data.train_images, data.train_masks, tr), (data.val_images, data.val_masks, va)):
        for i, image_id in enumerate(listed[j] for j in idx):  # list order
            assert np.array_equal(masks[i], voc_mask(classes[image_id]))
            jpeg = np.asarray(Image.open(root / "JPEGImages" / f"{image_id}.jpg").convert("RGB"))
            assert np.array_equal(images[i], jpeg.transpose(2, 0, 1))  # channels first, RGB


def test_voc_default_size_and_nearest_masks(tmp_path):
    root = tmp_path / "voc"
    classes = write_voc(root, ["a1", "a2"], ["b1"])
    data = prepare_dataset(cfg_for(tmp_path, dataset="voc", data_root=str(root)), progress=True)
    assert data.test_images.shape == (1, 3, 200, 200) and data.test_masks.shape == (1, 200, 200)
    m = data.test_masks[0]
    assert set(np.unique(m).tolist()) == {0, classes["b1"], 255}  # nearest: no blended labels
    assert m[100, 10] == classes["b1"] and m[100, 190] == 0
    assert (m[:, 100:104] == 255).all()  # the 1-px boundary column scaled 5x (x = 100..104)


def test_voc_train_list_fallback_dedup_and_deeplab_lines(tmp_path):
    root = tmp_path / "voc"
    write_voc(root, ["a1", "a2", "b1"], ["b1"], train_list="train.txt")  # val id also in train list
    (root / "ImageSets/Segmentation/val.txt").write_text("/JPEGImages/b1.jpg /SegmentationClassAug/b1.png\n\n")
    data = prepare_dataset(cfg_for(tmp_path, dataset="voc", data_root=str(root), image_height=VOC_H, image_width=VOC_W))
    assert len(data.train_images) + len(data.val_images) == 2 and len(data.test_images) == 1


def test_voc_missing_layout(tmp_path):
    root, load = _voc(tmp_path)
    (root / "ImageSets/Segmentation/val.txt").unlink()
    raises_user_error(load, "val.txt")
    (root / "ImageSets/Segmentation/val.txt").write_text("b1\n")
    (root / "ImageSets/Segmentation/train_aug.txt").unlink()
    raises_user_error(load, "train_aug.txt", "train.txt")
    for f in (root / "SegmentationClassAug").iterdir():
        f.unlink()
    (root / "SegmentationClassAug").rmdir()
    raises_user_error(load, "SegmentationClassAug")


def test_voc_missing_listed_file(tmp_path):
    root, load = _voc(tmp_path)
    (root / "SegmentationClassAug/a2.png").unlink()
    raises_user_error(load, "a2.png", "missing")


def test_voc_size_mismatch(tmp_path):
    root, load = _voc(tmp_path)
    write_palette_png(root / "SegmentationClassAug/a2.png", np.zeros((VOC_H, VOC_W + 4), np.uint8))
    raises_user_error(load, "a2.png", "44x32", "40x32")


def test_voc_bad_mask_values(tmp_path):
    root, load = _voc(tmp_path)
    bad = voc_mask(3)
    bad[0, 0], bad[1, 1] = 30, 21
    write_palette_png(root / "SegmentationClassAug/b1.png", bad)
    raises_user_error(load, "b1.png", "21, 30", "0..20")


def test_voc_rgb_mask(tmp_path):
    root, load = _voc(tmp_path)
    Image.fromarray(np.zeros((VOC_H, VOC_W, 3), np.uint8)).save(root / "SegmentationClassAug/a1.png")
    raises_user_error(load, "a1.png", "RGB")


def test_voc_unreadable_image(tmp_path):
    root, load = _voc(tmp_path)
    (root / "JPEGImages/a2.jpg").write_bytes(b"\xff\xd8\xff\xe0 this is not a jpeg")
    raises_user_error(load, "a2.jpg", "cannot read")
    (root / "ImageSets/Segmentation/val.txt").write_text("\n")
    raises_user_error(load, "val.txt", "no images")
