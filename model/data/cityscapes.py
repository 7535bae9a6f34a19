"""Cityscapes (gtFine): leftImg8bit/{train,val}/<city>/, gtFine/{train,val}/<city>/*_labelIds.png."""

from __future__ import annotations

from pathlib import Path

import numpy as np

from ..config import TrialConfig
from ..errors import UserError
from ..masks import IGNORE
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

CITYSCAPES_INFO = DatasetInfo(
    name="cityscapes",
    num_classes=19,
    in_channels=3,
    class_names=(
        "road", "sidewalk", "building", "wall", "fence", "pole", "traffic light", "traffic sign",
        "vegetation", "terrain", "sky", "person", "rider", "car", "truck", "bus", "train", "motorcycle",
        "bicycle",
    ),
    height=128,
    width=256,
)
# labelIds of the 19 evaluated classes, in train-id order; every other labelId (void) → 255.
CITYSCAPES_LABEL_IDS = (7, 8, 11, 12, 13, 17, 19, 20, 21, 22, 23, 24, 25, 26, 27, 28, 31, 32, 33)
CITYSCAPES_LUT = np.full(256, IGNORE, np.uint8)
CITYSCAPES_LUT[list(CITYSCAPES_LABEL_IDS)] = np.arange(len(CITYSCAPES_LABEL_IDS), dtype=np.uint8)


def _cityscapes_pair(root: Path, info: DatasetInfo, image_path: Path) -> tuple[np.ndarray, np.ndarray]:
    rel = image_path.relative_to(root / "leftImg8bit")
    mask_path = root / "gtFine" / rel.parent / rel.name.replace("_leftImg8bit.png", "_gtFine_labelIds.png")
    image = open_image(image_path)
    mask = open_image(mask_path)
    check_same_size(image, mask, image_path, mask_path)
    label_ids = np.asarray(mask)
    check_labels(label_ids, 34, mask_path, " (Cityscapes labelIds)")
    return resize_rgb(image, info), CITYSCAPES_LUT[resize_mask(label_ids.astype(np.uint8), info)]


@register_dataset(CITYSCAPES_INFO, on_disk=True, key_fields=("split_seed", "val_fraction"), listed_train=2_975)
def build_cityscapes(cfg: TrialConfig, info: DatasetInfo, progress: bool) -> PreparedData:
    """Test: the shipped val split. Train: the shipped train split, of which ``val_fraction`` is held out
    as our val split (drawn with ``split_seed``). labelIds mapped to the 19 train ids."""
    root = require(data_root(cfg), "Cityscapes data_root", "point data_root at the folder holding leftImg8bit/")
    fix = (
        "expected leftImg8bit/{train,val}/<city>/*_leftImg8bit.png and "
        "gtFine/{train,val}/<city>/*_gtFine_labelIds.png"
    )
    found = {}
    for split in ("train", "val"):  # check the whole layout before decoding anything
        require(root / "gtFine" / split, "Cityscapes folder", fix)
        images = sorted(require(root / "leftImg8bit" / split, "Cityscapes folder", fix).glob("*/*_leftImg8bit.png"))
        if not images:
            raise UserError(f"no *_leftImg8bit.png under {root / 'leftImg8bit' / split}/<city>/; {fix}")
        found[split] = images
    out = {}
    for split, images in found.items():
        pairs = parallel_map(
            lambda p: _cityscapes_pair(root, info, p), images, desc=f"cityscapes {split}", progress=progress
        )
        out[split] = stack(pairs, info)
    return held_out(info, out["train"], out["val"], cfg.val_fraction, cfg.split_seed)
