"""PASCAL VOC 2012 + SBD (the "augmented" set): JPEGImages/, SegmentationClassAug/, ImageSets/Segmentation/."""

from __future__ import annotations

from pathlib import Path

import numpy as np

from ..config import TrialConfig
from ..errors import UserError
from .base import DatasetInfo, PreparedData, held_out, register_dataset
from .decode import (
    check_labels,
    check_same_size,
    data_root,
    open_image,
    parallel_map,
    require,
    resize_mask,
    resize_rgb,
    stack,
)

VOC_INFO = DatasetInfo(
    name="voc",
    num_classes=21,
    in_channels=3,
    class_names=(
        "background", "aeroplane", "bicycle", "bird", "boat", "bottle", "bus", "car", "cat", "chair",
        "cow", "diningtable", "dog", "horse", "motorbike", "person", "pottedplant", "sheep", "sofa",
        "train", "tvmonitor",
    ),
    height=200,
    width=200,
)


def _read_ids(path: Path) -> list[str]:
    """Ids from a split list; also accepts DeepLab-style lines ``/JPEGImages/<id>.jpg /Seg.../<id>.png``."""
    ids = [Path(line.split()[0]).stem for line in path.read_text().splitlines() if line.strip()]
    if not ids:
        raise UserError(f"split list {path} lists no images; put one image id per line")
    return ids


def _voc_pair(root: Path, info: DatasetInfo, image_id: str) -> tuple[np.ndarray, np.ndarray]:
    image_path = root / "JPEGImages" / f"{image_id}.jpg"
    mask_path = root / "SegmentationClassAug" / f"{image_id}.png"
    image = open_image(image_path)
    mask = open_image(mask_path)
    if mask.mode not in ("P", "L", "I", "I;16"):
        raise UserError(
            f"mask {mask_path} is a {mask.mode} image; SegmentationClassAug needs palette or grayscale "
            "PNGs of class indices (255 = boundary)"
        )
    check_same_size(image, mask, image_path, mask_path)
    labels = np.asarray(mask)  # palette PNG: the palette indices are the classes
    check_labels(labels, info.num_classes, mask_path)
    return resize_rgb(image, info), resize_mask(labels.astype(np.uint8), info)


@register_dataset(VOC_INFO, on_disk=True, key_fields=("split_seed", "val_fraction"), listed_train=10_582)  # train_aug
def build_voc(cfg: TrialConfig, info: DatasetInfo, progress: bool) -> PreparedData:
    """Test: the official val.txt. Train: train_aug.txt (else train.txt) minus any id in val.txt, of which
    ``val_fraction`` is held out as our val split (drawn with ``split_seed``)."""
    root = require(data_root(cfg), "VOC data_root", "point data_root at the folder holding JPEGImages/")
    fix = "expected the VOC2012 + SBD layout: JPEGImages/, SegmentationClassAug/, ImageSets/Segmentation/"
    for sub in ("JPEGImages", "SegmentationClassAug", "ImageSets/Segmentation"):
        require(root / sub, "VOC folder", fix)
    lists = root / "ImageSets" / "Segmentation"
    train_list = lists / "train_aug.txt"
    if not train_list.is_file():
        train_list = lists / "train.txt"
    if not train_list.is_file():
        raise UserError(f"VOC split list {lists / 'train_aug.txt'} (or train.txt) does not exist; {fix}")
    val_ids = _read_ids(require(lists / "val.txt", "VOC split list", fix))
    val_set = set(val_ids)
    train_ids = [i for i in _read_ids(train_list) if i not in val_set]  # SBD's train list may hold val ids
    out = {}
    for split, ids in (("train", train_ids), ("test", val_ids)):
        pairs = parallel_map(lambda i: _voc_pair(root, info, i), ids, desc=f"voc {split}", progress=progress)
        out[split] = stack(pairs, info)
    return held_out(info, out["train"], out["test"], cfg.val_fraction, cfg.split_seed)
