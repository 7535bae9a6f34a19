"""digits: real handwritten digits composed into scenes."""

from __future__ import annotations

import numpy as np
import pytest

from cycleseg.model.data import prepare_dataset
from cycleseg.model.data.digits import compose_digit_scenes, digit_pools
from tests.model.data import clear_memo
from tests.model.data.trees import cfg_for


@pytest.fixture(autouse=True)
def _fresh_memo():
    clear_memo()
    yield
    clear_memo()


def test_digits_shapes_and_classes(tmp_path):
    data = prepare_dataset(cfg_for(tmp_path, digits_train=12, digits_val=5, digits_test=7))
    assert data.info.num_classes == 11 and data.info.in_channels == 3
    assert data.info.class_names == ("background", "0", "1", "2", "3", "4", "5", "6", "7", "8", "9")
    assert data.train_images.shape == (12, 3, 64, 64) and data.train_images.dtype == np.uint8
    assert data.train_masks.shape == (12, 64, 64) and data.train_masks.dtype == np.uint8
    assert data.val_images.shape == (5, 3, 64, 64) and data.val_masks.shape == (5, 64, 64)
    assert data.test_images.shape == (7, 3, 64, 64) and data.test_masks.shape == (7, 64, 64)
    values = set(np.unique(np.concatenate([data.train_masks, data.val_masks, data.test_masks])).tolist())
    assert values <= set(range(11)) | {255}
    assert len(values - {0, 255}) >= 3  # several digit classes occur


def test_digits_size_override(tmp_path):
    data = prepare_dataset(cfg_for(tmp_path, digits_train=3, digits_val=2, image_height=32, image_width=48))
    assert data.train_images.shape == (3, 3, 32, 48) and data.val_masks.shape == (2, 32, 48)
    assert (data.info.height, data.info.width) == (32, 48)


def test_digits_are_deterministic_in_split_seed(tmp_path):
    a = prepare_dataset(cfg_for(tmp_path, digits_train=6, digits_val=3, cache_dir=str(tmp_path / "a")))
    clear_memo()
    b = prepare_dataset(cfg_for(tmp_path, digits_train=6, digits_val=3, cache_dir=str(tmp_path / "b")))
    for k in ("train_images", "train_masks", "val_images", "val_masks", "test_images", "test_masks"):
        assert np.array_equal(getattr(a, k), getattr(b, k))
    c = prepare_dataset(cfg_for(tmp_path, digits_train=6, digits_val=3, split_seed=1))
    assert not np.array_equal(a.train_images, c.train_images)
    # each split's scenes come from their own stream: more val scenes leave train and test unchanged
    d = prepare_dataset(cfg_for(tmp_path, digits_train=6, digits_val=7))
    assert np.array_equal(a.train_images, d.train_images) and np.array_equal(a.train_masks, d.train_masks)
    assert np.array_equal(a.val_images, d.val_images[:3]) and np.array_equal(a.test_images, d.test_images)


def test_digit_pools_are_disjoint_and_cover_all_samples():
    train, val, test = digit_pools(1797, np.random.default_rng(0))
    assert (len(train), len(val), len(test)) == (1079, 359, 359)  # 20 % of 1797 = 359.4 → 359 for val and test
    assert not set(train.tolist()) & set(val.tolist()) and not set(test.tolist()) & (set(train) | set(val))
    assert sorted([*train.tolist(), *val.tolist(), *test.tolist()]) == list(range(1797))


def test_digit_masks_match_the_placed_digits():
    from sklearn.datasets import load_digits

    digits = load_digits()
    images, masks, placements = compose_digit_scenes(30, digits.images, digits.target, np.random.default_rng(5), 64, 64)
    assert images.shape == (30, 3, 64, 64) and masks.shape == (30, 64, 64)
    assert sum(len(p) for p in placements) > 30  # scenes hold more than one digit on average
    for img, mask, boxes in zip(images, masks, placements, strict=True):
        assert 1 <= len(boxes) <= 4
        outside = np.ones(mask.shape, bool)
        for b in boxes:
            assert b.label == digits.target[b.sample]
            assert b.size in (24, 32)  # 8 px scaled 3x or 4x
            box = mask[b.top : b.top + b.size, b.left : b.left + b.size]
            assert set(np.unique(box).tolist()) <= {0, b.label + 1, 255}
            ink = box == b.label + 1
            assert ink.sum() >= 10  # the digit is drawn, labeled with its class
            assert outside[b.top : b.top + b.size, b.left : b.left + b.size].all()  # no overlap
            outside[b.top : b.top + b.size, b.left : b.left + b.size] = False
            # the ink stands out from the background around it
            pix = img[:, b.top : b.top + b.size, b.left : b.left + b.size].astype(float)
            contrast = np.linalg.norm(pix[:, ink].mean(axis=1) - pix[:, box == 0].mean(axis=1))
            assert contrast > 40
        assert (mask[outside] == 0).all()
