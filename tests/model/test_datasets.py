"""Datasets against tiny trees in the real on-disk formats (JPEG/palette PNG, Cityscapes PNGs, NIfTI)."""

from __future__ import annotations

from pathlib import Path

import nibabel as nib
import numpy as np
import pytest
import torch
from PIL import Image

import model.datasets as ds
from model.config import TrialConfig
from model.datasets import (
    DATASETS,
    clear_memo,
    compose_digit_scenes,
    digit_pools,
    labeled_indices,
    normalize_images,
    prepare_dataset,
    split_patients,
)
from model.errors import UserError


@pytest.fixture(autouse=True)
def _fresh_memo():
    clear_memo()
    yield
    clear_memo()


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


# ------------------------------------------------------------------------------------------------
# Fixture trees
# ------------------------------------------------------------------------------------------------

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


# ------------------------------------------------------------------------------------------------
# Registry
# ------------------------------------------------------------------------------------------------


def test_registry_names_and_infos():
    assert DATASETS.names() == ["acdc", "cityscapes", "digits", "voc"]
    sizes = {n: (DATASETS.get(n).info.height, DATASETS.get(n).info.width) for n in DATASETS}
    assert sizes == {"digits": (64, 64), "voc": (200, 200), "cityscapes": (128, 256), "acdc": (128, 128)}
    for n in DATASETS:
        info = DATASETS.get(n).info
        assert len(info.class_names) == info.num_classes
    raises_user_error(lambda: DATASETS.get("vocc"), "did you mean 'voc'")


# ------------------------------------------------------------------------------------------------
# digits
# ------------------------------------------------------------------------------------------------


def test_digits_shapes_and_classes(tmp_path):
    data = prepare_dataset(cfg_for(tmp_path, digits_train=12, digits_val=5))
    assert data.info.num_classes == 11 and data.info.in_channels == 3
    assert data.info.class_names == ("background", "0", "1", "2", "3", "4", "5", "6", "7", "8", "9")
    assert data.train_images.shape == (12, 3, 64, 64) and data.train_images.dtype == np.uint8
    assert data.train_masks.shape == (12, 64, 64) and data.train_masks.dtype == np.uint8
    assert data.val_images.shape == (5, 3, 64, 64) and data.val_masks.shape == (5, 64, 64)
    values = set(np.unique(np.concatenate([data.train_masks, data.val_masks])).tolist())
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
    for k in ("train_images", "train_masks", "val_images", "val_masks"):
        assert np.array_equal(getattr(a, k), getattr(b, k))
    c = prepare_dataset(cfg_for(tmp_path, digits_train=6, digits_val=3, split_seed=1))
    assert not np.array_equal(a.train_images, c.train_images)
    # train and val scenes come from separate streams: more val scenes leave train unchanged
    d = prepare_dataset(cfg_for(tmp_path, digits_train=6, digits_val=7))
    assert np.array_equal(a.train_images, d.train_images) and np.array_equal(a.train_masks, d.train_masks)
    assert np.array_equal(a.val_images, d.val_images[:3])


def test_digit_pools_are_disjoint_and_cover_all_samples():
    train, val = digit_pools(1797, np.random.default_rng(0))
    assert len(val) == 449 and len(train) == 1348
    assert not set(train.tolist()) & set(val.tolist())
    assert sorted([*train.tolist(), *val.tolist()]) == list(range(1797))


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
            assert 16 <= b.size <= 32  # scaled 2-4x from 8 px
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


# ------------------------------------------------------------------------------------------------
# VOC
# ------------------------------------------------------------------------------------------------


def test_voc_loads_palette_masks(tmp_path):
    root = tmp_path / "voc"
    classes = write_voc(root, ["2007_000032", "2007_000039", "2008_000001"], ["2007_000121", "2009_000002"])
    assert Image.open(root / "SegmentationClassAug/2007_000032.png").mode == "P"  # the real format
    data = prepare_dataset(cfg_for(tmp_path, dataset="voc", data_root=str(root), image_height=VOC_H, image_width=VOC_W))
    assert data.info.num_classes == 21 and data.info.class_names[15] == "person"
    assert data.train_images.shape == (3, 3, VOC_H, VOC_W) and data.val_masks.shape == (2, VOC_H, VOC_W)
    for i, image_id in enumerate(["2007_000032", "2007_000039", "2008_000001"]):  # list order
        assert np.array_equal(data.train_masks[i], voc_mask(classes[image_id]))
        jpeg = np.asarray(Image.open(root / "JPEGImages" / f"{image_id}.jpg").convert("RGB"))
        assert np.array_equal(data.train_images[i], jpeg.transpose(2, 0, 1))  # channels first, RGB
    assert np.array_equal(data.val_masks[1], voc_mask(classes["2009_000002"]))


def test_voc_default_size_and_nearest_masks(tmp_path):
    root = tmp_path / "voc"
    classes = write_voc(root, ["a1", "a2"], ["b1"])
    data = prepare_dataset(cfg_for(tmp_path, dataset="voc", data_root=str(root)), progress=True)
    assert data.train_images.shape == (2, 3, 200, 200) and data.train_masks.shape == (2, 200, 200)
    m = data.train_masks[0]
    assert set(np.unique(m).tolist()) == {0, classes["a1"], 255}  # nearest: no blended labels
    assert m[100, 10] == classes["a1"] and m[100, 190] == 0
    assert (m[:, 100:104] == 255).all()  # the 1-px boundary column scaled 5x (x = 100..104)


def test_voc_train_list_fallback_dedup_and_deeplab_lines(tmp_path):
    root = tmp_path / "voc"
    write_voc(root, ["a1", "a2", "b1"], ["b1"], train_list="train.txt")  # val id also in train list
    (root / "ImageSets/Segmentation/val.txt").write_text("/JPEGImages/b1.jpg /SegmentationClassAug/b1.png\n\n")
    data = prepare_dataset(cfg_for(tmp_path, dataset="voc", data_root=str(root), image_height=VOC_H, image_width=VOC_W))
    assert len(data.train_images) == 2 and len(data.val_images) == 1


# ------------------------------------------------------------------------------------------------
# Cityscapes
# ------------------------------------------------------------------------------------------------

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
    assert data.train_images.shape == (2, 3, CS_H, CS_W) and data.val_masks.shape == (1, CS_H, CS_W)
    m = data.train_masks[0]
    assert m[0, :34].tolist() == EXPECTED_TRAIN_IDS
    assert m[0, 34] == 255  # raw 255 stays ignore
    assert m[16, 30] == 13  # car
    assert m[5, 5] == 255  # labelId 0 (unlabeled) -> ignore
    # files are read sorted (aachen, bochum) and each mask belongs to its image
    assert data.train_masks[0][30, 0] == 11 and data.train_masks[1][30, 1] == 11 and data.val_masks[0][30, 2] == 11
    png = np.asarray(Image.open(root / "leftImg8bit/val/frankfurt/frankfurt_000000_000294_leftImg8bit.png"))
    assert np.array_equal(data.val_images[0], png.transpose(2, 0, 1))


def test_cityscapes_default_size(tmp_path):
    root = tmp_path / "cs"
    write_cityscapes(root)
    data = prepare_dataset(cfg_for(tmp_path, dataset="cityscapes", data_root=str(root)))
    assert data.train_images.shape == (2, 3, 128, 256) and data.train_masks.shape == (2, 128, 256)
    assert data.train_masks[0][64, 128] == 13  # the car block (rows 8..24, cols 16..48) scaled 4x
    assert set(np.unique(data.train_masks).tolist()) <= set(range(19)) | {255}


# ------------------------------------------------------------------------------------------------
# ACDC
# ------------------------------------------------------------------------------------------------


def patient_of(mask: np.ndarray) -> int:
    return int(np.flatnonzero(mask[2] == 3)[0])


def test_acdc_loads_ed_es_slices_split_by_patient(tmp_path):
    root = tmp_path / "acdc"
    volumes = write_acdc(root, 8)
    cfg = cfg_for(tmp_path, dataset="acdc", data_root=str(root), image_height=AC_X, image_width=AC_Y)
    data = prepare_dataset(cfg)
    assert data.info.num_classes == 4 and data.info.in_channels == 1
    assert data.info.class_names == ("background", "RV cavity", "myocardium", "LV cavity")
    # 6 train / 2 val patients, 2 frames (ED, ES; not the 4d file) x 3 slices each
    assert data.train_images.shape == (36, 1, AC_X, AC_Y) and data.val_masks.shape == (12, AC_X, AC_Y)
    train_p = [patient_of(m) for m in data.train_masks]
    val_p = [patient_of(m) for m in data.val_masks]
    assert not set(train_p) & set(val_p)
    assert sorted(set(train_p) | set(val_p)) == list(range(8))
    assert len(set(train_p)) == 6 and len(set(val_p)) == 2
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
    write_acdc(root, 2)
    data = prepare_dataset(cfg_for(tmp_path, dataset="acdc", data_root=str(root)))
    assert data.train_images.shape == (6, 1, 128, 128) and data.val_masks.shape == (6, 128, 128)
    assert set(np.unique(data.train_masks).tolist()) == {0, 1, 2, 3}


@pytest.mark.parametrize(("n", "n_train", "n_val"), [(100, 75, 25), (8, 6, 2), (5, 4, 1), (3, 2, 1), (2, 1, 1)])
def test_split_patients_ratio(n, n_train, n_val):
    names = [f"patient{i:03d}" for i in range(n)]
    train, val = split_patients(names, seed=0)
    assert (len(train), len(val)) == (n_train, n_val)
    assert not set(train) & set(val) and sorted(train + val) == names


def test_split_patients_depends_on_seed_only():
    names = [f"patient{i:03d}" for i in range(100)]
    assert split_patients(names, 0) == split_patients(list(reversed(names)), 0)  # not on listing order
    assert split_patients(names, 0)[1] != split_patients(names, 1)[1]
    raises_user_error(lambda: split_patients(names[:1], 0), "at least 2 patients")


# ------------------------------------------------------------------------------------------------
# Splits and normalisation
# ------------------------------------------------------------------------------------------------


def test_labeled_indices_are_nested_with_exact_counts():
    subsets = {f: labeled_indices(200, f, seed=3) for f in (0.1, 0.2, 0.5, 1.0)}
    assert {f: len(s) for f, s in subsets.items()} == {0.1: 20, 0.2: 40, 0.5: 100, 1.0: 200}
    assert set(subsets[0.1]) < set(subsets[0.2]) < set(subsets[0.5]) < set(subsets[1.0])
    assert subsets[1.0].tolist() == list(range(200))
    for s in subsets.values():
        assert s.dtype == np.int64 and (np.diff(s) > 0).all()  # sorted, unique
    assert not np.array_equal(labeled_indices(200, 0.1, seed=4), subsets[0.1])
    assert np.array_equal(labeled_indices(200, 0.1, seed=3), subsets[0.1])


def test_labeled_indices_rounding_and_minimum():
    assert len(labeled_indices(5, 0.5, 0)) == 3  # 2.5 rounds half up
    assert len(labeled_indices(8994, 0.1, 0)) == 899  # 899.4
    assert len(labeled_indices(200, 0.001, 0)) == 1  # at least one labeled image
    raises_user_error(lambda: labeled_indices(10, 0.0, 0), "labeled_fraction")
    raises_user_error(lambda: labeled_indices(0, 0.5, 0), "no training images")


def test_normalize_images_hand_computed():
    x = torch.zeros(2, 2, 2, 2, dtype=torch.uint8)
    x[0, 0] = torch.tensor([[0, 10], [20, 30]])  # mean 15, max - min 30
    x[0, 1] = 7  # constant channel -> 0
    x[1, 0] = torch.tensor([[0, 0], [0, 255]])  # mean 63.75, max - min 255
    x[1, 1] = torch.tensor([[100, 100], [110, 120]])  # mean 107.5, max - min 20
    y = normalize_images(x)
    assert y.dtype == torch.float32 and y.shape == x.shape
    torch.testing.assert_close(y[0, 0], torch.tensor([[-0.5, -1 / 6], [1 / 6, 0.5]]))
    torch.testing.assert_close(y[0, 1], torch.zeros(2, 2))
    torch.testing.assert_close(y[1, 0], torch.tensor([[-0.25, -0.25], [-0.25, 0.75]]))
    torch.testing.assert_close(y[1, 1], torch.tensor([[-0.375, -0.375], [0.125, 0.625]]))


def test_normalize_images_range_per_image_and_channel():
    x = torch.randint(0, 256, (4, 3, 16, 16), dtype=torch.uint8)
    y = normalize_images(x)
    assert y.min() >= -1 and y.max() <= 1
    spread = y.amax(dim=(2, 3)) - y.amin(dim=(2, 3))
    torch.testing.assert_close(spread, torch.ones(4, 3))  # each (image, channel) spans width 1
    torch.testing.assert_close(y.mean(dim=(2, 3)), torch.zeros(4, 3), atol=1e-6, rtol=0)


# ------------------------------------------------------------------------------------------------
# Cache
# ------------------------------------------------------------------------------------------------


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
    assert ds.cache_key(cfg_for(tmp_path, dataset="voc", data_root=str(tmp_path / "voc"), split_seed=3)) == key
    assert ds.cache_key(cfg_for(tmp_path, dataset="voc", data_root=str(tmp_path / "voc2"))) != key
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


# ------------------------------------------------------------------------------------------------
# Errors name the missing or broken thing
# ------------------------------------------------------------------------------------------------


@pytest.mark.parametrize("name", ["voc", "cityscapes", "acdc"])
def test_missing_data_root(tmp_path, name):
    raises_user_error(lambda: prepare_dataset(cfg_for(tmp_path, dataset=name)), "data_root", name)
    missing = tmp_path / "nowhere"
    raises_user_error(lambda: prepare_dataset(cfg_for(tmp_path, dataset=name, data_root=str(missing))), str(missing))


def _voc(tmp_path):
    root = tmp_path / "voc"
    write_voc(root, ["a1", "a2"], ["b1"])
    cfg = cfg_for(tmp_path, dataset="voc", data_root=str(root), image_height=VOC_H, image_width=VOC_W)
    return root, lambda: prepare_dataset(cfg)


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


def _cs(tmp_path):
    root = tmp_path / "cs"
    write_cityscapes(root)
    return root, lambda: prepare_dataset(
        cfg_for(tmp_path, dataset="cityscapes", data_root=str(root), image_height=CS_H, image_width=CS_W)
    )


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


def _acdc(tmp_path):
    root = tmp_path / "acdc"
    write_acdc(root, 2)
    return root, lambda: prepare_dataset(
        cfg_for(tmp_path, dataset="acdc", data_root=str(root), image_height=AC_X, image_width=AC_Y)
    )


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
