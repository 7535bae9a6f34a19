"""The prepared-array cache: decoded once, keyed by what changes the arrays."""

from __future__ import annotations

import numpy as np
import pytest

import cycleseg.model.data.cache as ds
from cycleseg.model.config import TrialConfig
from cycleseg.model.data import prepare_dataset
from tests.model.data import clear_memo
from tests.model.data.trees import VOC_H, VOC_W, cfg_for, raises_user_error, write_voc


@pytest.fixture(autouse=True)
def _fresh_memo():
    clear_memo()
    yield
    clear_memo()


def _no_decode(*_args, **_kwargs):
    raise AssertionError("decoded again instead of using the cache")


def test_cache_is_written_once_and_reloaded_without_decoding(tmp_path, monkeypatch):
    cfg = cfg_for(tmp_path, digits_train=4, digits_val=2)
    first = prepare_dataset(cfg)
    files = list((tmp_path / "cache").glob("*.npz"))
    assert len(files) == 1 and files[0] == ds.cache_path(cfg)
    monkeypatch.setattr(ds, "_decode", _no_decode)
    assert prepare_dataset(cfg) is first  # in-process memo
    clear_memo()
    again = prepare_dataset(cfg)  # from the .npz
    assert again is not first and again.info == first.info
    for k in ("train_images", "train_masks", "val_images", "val_masks"):
        assert np.array_equal(getattr(again, k), getattr(first, k)) and getattr(again, k).dtype == np.uint8


def test_on_disk_dataset_is_served_from_cache_after_the_data_is_gone(tmp_path, monkeypatch):
    root = tmp_path / "voc"
    write_voc(root, ["a1", "a2"], ["b1"])
    cfg = cfg_for(tmp_path, dataset="voc", data_root=str(root), image_height=VOC_H, image_width=VOC_W)
    first = prepare_dataset(cfg)
    for f in (root / "JPEGImages").iterdir():
        f.unlink()
    clear_memo()
    monkeypatch.setattr(ds, "_decode", _no_decode)
    assert np.array_equal(prepare_dataset(cfg).train_images, first.train_images)


def test_cache_key_depends_only_on_data_fields(tmp_path, monkeypatch):
    base = cfg_for(tmp_path)
    key = ds.cache_key(base)
    same = [
        cfg_for(tmp_path, seed=5),
        cfg_for(tmp_path, labeled_fraction=0.5, method="partial", epochs=3, lambda_2=0.0),
        cfg_for(tmp_path, image_height=64, image_width=64),  # the default size, spelled out
        cfg_for(tmp_path, data_root="/somewhere"),  # digits are not read from disk
        cfg_for(tmp_path, cache_dir=str(tmp_path / "other")),
    ]
    assert all(ds.cache_key(c) == key for c in same)
    different = [
        cfg_for(tmp_path, split_seed=1),
        cfg_for(tmp_path, digits_train=401),
        cfg_for(tmp_path, digits_val=99),
        cfg_for(tmp_path, image_height=32),
        cfg_for(tmp_path, image_width=32),
        cfg_for(tmp_path, dataset="voc", data_root=str(tmp_path)),
    ]
    keys = [ds.cache_key(c) for c in different]
    assert key not in keys and len(set(keys)) == len(keys)
    monkeypatch.setattr(ds, "FORMAT_VERSION", ds.FORMAT_VERSION + 1)
    assert ds.cache_key(base) != key


def test_cache_key_of_on_disk_datasets(tmp_path, monkeypatch):
    monkeypatch.chdir(tmp_path)
    (tmp_path / "voc").mkdir()
    absolute = cfg_for(tmp_path, dataset="voc", data_root=str(tmp_path / "voc"))
    key = ds.cache_key(absolute)
    assert ds.cache_key(cfg_for(tmp_path, dataset="voc", data_root="voc")) == key  # resolved path
    assert ds.cache_key(cfg_for(tmp_path, dataset="voc", data_root=str(tmp_path / "voc"), seed=3)) == key
    assert ds.cache_key(cfg_for(tmp_path, dataset="voc", data_root=str(tmp_path / "voc2"))) != key
    # the held-out val split changes the arrays
    assert ds.cache_key(cfg_for(tmp_path, dataset="voc", data_root=str(tmp_path / "voc"), split_seed=3)) != key
    assert ds.cache_key(cfg_for(tmp_path, dataset="voc", data_root=str(tmp_path / "voc"), val_fraction=0.2)) != key
    acdc = cfg_for(tmp_path, dataset="acdc", data_root="voc")
    assert ds.cache_key(acdc) != ds.cache_key(cfg_for(tmp_path, dataset="acdc", data_root="voc", split_seed=1))


def test_cache_dir_from_environment(tmp_path, monkeypatch):
    monkeypatch.setenv("CYCLESEG_CACHE", str(tmp_path / "env"))
    cfg = TrialConfig(digits_train=2, digits_val=1)
    assert ds.cache_path(cfg).parent == tmp_path / "env"
    prepare_dataset(cfg)
    assert len(list((tmp_path / "env").glob("digits-64x64-*.npz"))) == 1


def test_corrupt_cache_file_is_rebuilt(tmp_path):
    cfg = cfg_for(tmp_path, digits_train=3, digits_val=1)
    good = prepare_dataset(cfg)
    ds.cache_path(cfg).write_bytes(b"not a zip")
    clear_memo()
    rebuilt = prepare_dataset(cfg)
    assert np.array_equal(rebuilt.train_masks, good.train_masks)
    clear_memo()
    assert np.array_equal(prepare_dataset(cfg).train_masks, good.train_masks)  # rewritten, readable


def test_unwritable_cache_dir_is_a_user_error(tmp_path):
    blocker = tmp_path / "file"
    blocker.write_text("x")
    cfg = cfg_for(tmp_path, digits_train=2, digits_val=1, cache_dir=str(blocker / "sub"))
    raises_user_error(lambda: prepare_dataset(cfg), str(blocker / "sub"), "cache_dir")


@pytest.mark.parametrize("name", ["voc", "cityscapes", "acdc"])
def test_missing_data_root(tmp_path, name):
    raises_user_error(lambda: prepare_dataset(cfg_for(tmp_path, dataset=name)), "data_root", name)
    missing = tmp_path / "nowhere"
    raises_user_error(lambda: prepare_dataset(cfg_for(tmp_path, dataset=name, data_root=str(missing))), str(missing))
