"""Datasets: decode once into uint8 arrays, cache them, split them.

Every dataset is a builder in the ``DATASETS`` registry (timm style) that turns its source into a
``PreparedData``: images ``(N, C_in, H, W)`` resized bilinearly and masks ``(N, H, W)`` resized
nearest, with 255 = ignore (VOC object boundaries, Cityscapes void). ``prepare_dataset`` decodes a
dataset once, stores the arrays as an ``.npz`` keyed by the fields that change them, and keeps them
in memory for the rest of the process, so a sweep decodes each dataset once, not once per trial.

The paper (Mondal et al. 2019, §4.1) resizes VOC to 200×200, Cityscapes to 128×256 and uses 75/25
ACDC exams for train/val. Splits we follow: VOC's and Cityscapes' shipped train/val lists (the paper
re-split the 10,582 VOC-aug images 8,994/1,588 and Cityscapes' 3,475 images 2,953/522 without
publishing the lists); ACDC split by patient from ``split_seed``. ``digits`` is a small real-data
dataset built from scikit-learn's bundled handwritten digits, for demos and tests without downloads.
"""

from __future__ import annotations

import dataclasses
import hashlib
import json
import math
import os
import re
from collections.abc import Callable, Sequence
from concurrent.futures import ThreadPoolExecutor
from dataclasses import asdict, dataclass
from pathlib import Path
from typing import TypeVar

import numpy as np
import torch
from PIL import Image
from tqdm import tqdm

from model.config import TrialConfig
from model.errors import UserError
from model.io import atomic_write
from model.registry import Registry

FORMAT_VERSION = 1  # bump when a builder's output changes: old cache files are then never read
IGNORE_INDEX = 255


@dataclass(frozen=True)
class DatasetInfo:
    name: str
    num_classes: int  # C, background included; mask values in [0, C) ∪ {255}
    in_channels: int  # 3 for RGB, 1 for MR
    class_names: tuple[str, ...]
    height: int
    width: int


@dataclass
class PreparedData:
    """Everything decoded once, kept as arrays. Shared between callers: treat as read-only."""

    info: DatasetInfo
    train_images: np.ndarray  # uint8 (N, C_in, H, W)
    train_masks: np.ndarray  # uint8 (N, H, W), 255 = ignore
    val_images: np.ndarray
    val_masks: np.ndarray


Builder = Callable[[TrialConfig, DatasetInfo, bool], PreparedData]


@dataclass(frozen=True)
class DatasetSpec:
    """A registered dataset: its default-size info and the builder that decodes it."""

    info: DatasetInfo  # at the dataset's default size
    build: Builder  # (cfg, info at the resolved size, progress) -> PreparedData
    on_disk: bool  # needs cfg.data_root
    key_fields: tuple[str, ...]  # config fields besides size (and data_root) that change the arrays


DATASETS: Registry[DatasetSpec] = Registry("dataset")


def register_dataset(
    info: DatasetInfo, *, on_disk: bool, key_fields: tuple[str, ...] = ()
) -> Callable[[Builder], Builder]:
    def deco(build: Builder) -> Builder:
        DATASETS.register(info.name)(DatasetSpec(info, build, on_disk, key_fields))
        return build

    return deco


def dataset_info(cfg: TrialConfig) -> DatasetInfo:
    """The dataset's info at the size ``cfg`` asks for, without decoding anything.

    ``image_height`` and ``image_width`` override the default size independently.
    """
    base = DATASETS.get(cfg.dataset).info
    return dataclasses.replace(base, height=cfg.image_height or base.height, width=cfg.image_width or base.width)


# ------------------------------------------------------------------------------------------------
# Cache: one .npz per (data fields) key, plus an in-process memo
# ------------------------------------------------------------------------------------------------

_MEMO: dict[Path, PreparedData] = {}


def cache_dir(cfg: TrialConfig) -> Path:
    """``cfg.cache_dir``, else ``$CYCLESEG_CACHE``, else ``~/.cache/cycleseg``."""
    raw = cfg.cache_dir or os.environ.get("CYCLESEG_CACHE") or "~/.cache/cycleseg"
    return Path(raw).expanduser()


def _data_root(cfg: TrialConfig) -> Path:
    if not cfg.data_root:
        raise UserError(
            f"dataset '{cfg.dataset}' is read from disk but data_root is not set; "
            f"pass --data-root /path/to/{cfg.dataset} (or --set data_root=...)"
        )
    return Path(cfg.data_root).expanduser().resolve()


def cache_key(cfg: TrialConfig) -> str:
    """Hash of only the fields that change the decoded arrays (plus ``FORMAT_VERSION``).

    Size is the resolved size, so ``image_height=None`` and the default size share a key; only
    datasets read from disk include ``data_root`` (absolute), only ``digits`` its counts, and
    ``split_seed`` only where it makes a split (digits, acdc).
    """
    spec = DATASETS.get(cfg.dataset)
    info = dataset_info(cfg)
    fields: dict[str, object] = {
        "format": FORMAT_VERSION,
        "dataset": cfg.dataset,
        "height": info.height,
        "width": info.width,
    }
    if spec.on_disk:
        fields["data_root"] = str(_data_root(cfg))
    for name in spec.key_fields:
        fields[name] = getattr(cfg, name)
    return hashlib.sha256(json.dumps(fields, sort_keys=True).encode()).hexdigest()[:16]


def cache_path(cfg: TrialConfig) -> Path:
    info = dataset_info(cfg)
    return cache_dir(cfg) / f"{cfg.dataset}-{info.height}x{info.width}-{cache_key(cfg)}.npz"


def clear_memo() -> None:
    """Forget the in-process copies (the .npz cache stays)."""
    _MEMO.clear()


def prepare_dataset(cfg: TrialConfig, *, progress: bool = False) -> PreparedData:
    """The decoded dataset for ``cfg``: from memory, else the .npz cache, else decoded and cached.

    ``progress`` shows a tqdm bar while an on-disk dataset is decoded (the slow, one-off step).
    """
    path = cache_path(cfg)
    if path in _MEMO:
        return _MEMO[path]
    data = _load_cache(path)
    if data is None:
        data = _decode(cfg, dataset_info(cfg), progress)
        _save_cache(path, data)
    _MEMO[path] = data
    return data


def _decode(cfg: TrialConfig, info: DatasetInfo, progress: bool) -> PreparedData:
    return DATASETS.get(cfg.dataset).build(cfg, info, progress)


_ARRAYS = ("train_images", "train_masks", "val_images", "val_masks")


def _load_cache(path: Path) -> PreparedData | None:
    """The cached arrays, or None when absent or unreadable (then they are rebuilt)."""
    if not path.is_file():
        return None
    try:
        with np.load(path, allow_pickle=False) as z:
            if int(z["format_version"]) != FORMAT_VERSION:
                return None
            meta = json.loads(str(z["info_json"]))
            info = DatasetInfo(**{**meta, "class_names": tuple(meta["class_names"])})
            arrays = {k: z[k] for k in _ARRAYS}
    except (OSError, ValueError, KeyError, TypeError):
        return None
    return PreparedData(info=info, **arrays)


def _save_cache(path: Path, data: PreparedData) -> None:
    def write(tmp: Path) -> None:
        with open(tmp, "wb") as f:  # a file object: np.savez would append ".npz" to a path
            np.savez(
                f,
                format_version=np.array(FORMAT_VERSION),
                info_json=np.array(json.dumps(asdict(data.info))),
                **{k: getattr(data, k) for k in _ARRAYS},
            )

    try:
        atomic_write(path, write)
    except OSError as e:
        raise UserError(
            f"cannot write the dataset cache {path} ({e.strerror or e}); "
            "set cache_dir (or $CYCLESEG_CACHE) to a writable folder"
        ) from None


# ------------------------------------------------------------------------------------------------
# Splits and normalisation
# ------------------------------------------------------------------------------------------------


def labeled_indices(n_train: int, labeled_fraction: float, seed: int) -> np.ndarray:
    """Indices of the labeled training images: the first round(fraction·n) (≥ 1) of one permutation.

    One permutation per seed makes the subsets nested: for the same seed the 10 % subset lies
    inside the 20 % one, so a fraction sweep adds labels rather than drawing new ones.
    Rounding is half up. Returns sorted int64.
    """
    if n_train < 1:
        raise UserError("the dataset has no training images; check data_root and the split lists")
    if not (0.0 < labeled_fraction <= 1.0):
        raise UserError(f"labeled_fraction must be in (0, 1], got {labeled_fraction}")
    k = min(n_train, max(1, math.floor(labeled_fraction * n_train + 0.5)))
    perm = np.random.default_rng(seed).permutation(n_train)
    return np.sort(perm[:k]).astype(np.int64)


def normalize_images(x: torch.Tensor) -> torch.Tensor:
    """Paper §3.3: per image and channel, (x − mean) / (max − min), in float32 on x's device.

    The result lies in [−1, 1] (it spans at most a width of 2 around 0); a constant channel
    becomes 0. Works on a uint8 batch (B, C, H, W).
    """
    x = x.float()
    mean = x.mean(dim=(-2, -1), keepdim=True)
    spread = x.amax(dim=(-2, -1), keepdim=True) - x.amin(dim=(-2, -1), keepdim=True)
    return (x - mean) / torch.where(spread > 0, spread, torch.ones_like(spread))


# ------------------------------------------------------------------------------------------------
# Decoding helpers shared by the on-disk builders
# ------------------------------------------------------------------------------------------------

T = TypeVar("T")
R = TypeVar("R")


def _parallel_map(fn: Callable[[T], R], items: Sequence[T], *, desc: str, progress: bool) -> list[R]:
    """``[fn(i) for i in items]`` on a thread pool (PIL and zlib release the GIL), in order.

    The first error cancels what has not started and propagates.
    """
    ex = ThreadPoolExecutor(max_workers=min(8, os.cpu_count() or 1))
    try:
        out = list(tqdm(ex.map(fn, items), total=len(items), desc=desc, unit="file", disable=not progress))
    except BaseException:
        ex.shutdown(wait=False, cancel_futures=True)
        raise
    ex.shutdown()
    return out


def _require(path: Path, what: str, fix: str) -> Path:
    if not path.exists():
        raise UserError(f"{what} {path} does not exist; {fix}")
    return path


def _first_line(e: BaseException) -> str:
    text = str(e).strip()
    return text.splitlines()[0] if text else type(e).__name__


def _open_image(path: Path) -> Image.Image:
    """Open and fully decode an image, so a broken file is reported by name."""
    if not path.is_file():
        raise UserError(f"missing file {path}; restore it or remove the image it belongs to from the split")
    try:
        with Image.open(path) as im:
            im.load()
            return im.copy()
    except (OSError, ValueError, SyntaxError) as e:  # PIL raises these for truncated/unknown files
        raise UserError(f"cannot read image {path} ({_first_line(e)}); replace or delete that file") from None


def _check_same_size(image: Image.Image, mask: Image.Image, image_path: Path, mask_path: Path) -> None:
    if image.size != mask.size:
        raise UserError(
            f"mask {mask_path} is {mask.size[0]}x{mask.size[1]} but its image {image_path.name} is "
            f"{image.size[0]}x{image.size[1]}; masks must match their images pixel for pixel"
        )


def _check_labels(values: np.ndarray, num_classes: int, path: Path, allowed_note: str = "") -> None:
    # bincount is O(n) for unsigned masks (PNG); np.unique sorts
    present = np.flatnonzero(np.bincount(values.ravel())) if values.dtype.kind == "u" else np.unique(values)
    bad = present[((present >= num_classes) & (present != IGNORE_INDEX)) | (present < 0)]
    if bad.size:
        shown = ", ".join(str(int(v)) for v in bad[:8]) + (", ..." if bad.size > 8 else "")
        raise UserError(
            f"mask {path} has values {shown} outside 0..{num_classes - 1} and {IGNORE_INDEX}"
            f"{allowed_note}; store class indices (255 = ignore)"
        )


def _resize_rgb(im: Image.Image, info: DatasetInfo) -> np.ndarray:
    """RGB image → uint8 (3, H, W), bilinear."""
    im = im.convert("RGB").resize((info.width, info.height), Image.Resampling.BILINEAR)
    return np.asarray(im).transpose(2, 0, 1)


def _resize_mask(mask: np.ndarray, info: DatasetInfo) -> np.ndarray:
    """uint8 (h, w) class map → (H, W), nearest."""
    im = Image.fromarray(mask).resize((info.width, info.height), Image.Resampling.NEAREST)
    return np.asarray(im)


def _stack(pairs: list[tuple[np.ndarray, np.ndarray]], info: DatasetInfo) -> tuple[np.ndarray, np.ndarray]:
    images = np.empty((len(pairs), info.in_channels, info.height, info.width), np.uint8)
    masks = np.empty((len(pairs), info.height, info.width), np.uint8)
    for i, (img, mask) in enumerate(pairs):
        images[i] = img
        masks[i] = mask
    return images, masks


# ------------------------------------------------------------------------------------------------
# digits: multi-digit scenes from scikit-learn's bundled 8×8 handwritten digits
# ------------------------------------------------------------------------------------------------

DIGITS_INFO = DatasetInfo(
    name="digits",
    num_classes=11,
    in_channels=3,
    class_names=("background", *(str(d) for d in range(10))),
    height=64,
    width=64,
)
_DIGIT_VAL_SHARE = 0.25  # of the 1797 sklearn samples, reserved for validation scenes
_INK = 0.5  # digit coverage at or above this is the digit's class
_EDGE = 0.3  # coverage in [_EDGE, _INK) is the anti-aliased rim: ignore (255), like VOC boundaries


def _digit_streams(split_seed: int) -> tuple[np.random.Generator, np.random.Generator, np.random.Generator]:
    """Independent RNG streams (sample split, train scenes, val scenes) from one ``split_seed``."""
    split, train, val = np.random.SeedSequence(split_seed).spawn(3)
    return np.random.default_rng(split), np.random.default_rng(train), np.random.default_rng(val)


def digit_pools(n_samples: int, rng: np.random.Generator) -> tuple[np.ndarray, np.ndarray]:
    """Disjoint sample indices (train pool, val pool): no handwritten sample appears in both."""
    perm = rng.permutation(n_samples)
    n_val = round(n_samples * _DIGIT_VAL_SHARE)
    return np.sort(perm[n_val:]), np.sort(perm[:n_val])


@dataclass(frozen=True)
class Placement:
    """One digit drawn in a scene (for tests and inspection)."""

    sample: int  # index into the pool arrays given to ``compose_digit_scenes``
    label: int  # the digit 0..9; its mask class is label + 1
    top: int
    left: int
    size: int


def _upsample(a: np.ndarray, h: int, w: int) -> np.ndarray:
    return np.asarray(Image.fromarray(a.astype(np.float32)).resize((w, h), Image.Resampling.BILINEAR))


def _background(rng: np.random.Generator, h: int, w: int) -> np.ndarray:
    """A smooth colour gradient plus low-frequency colour blobs and pixel noise, (3, h, w) in [0, 1]."""
    c0, c1 = rng.uniform(0.0, 1.0, (2, 3, 1, 1))
    theta = rng.uniform(0.0, 2 * np.pi)
    yy, xx = np.mgrid[0:h, 0:w] / max(h - 1, w - 1, 1)
    t = np.cos(theta) * xx + np.sin(theta) * yy
    t = (t - t.min()) / max(float(t.max() - t.min()), 1e-6)
    bg = c0 * (1 - t) + c1 * t
    blobs = np.stack([_upsample(rng.uniform(-0.2, 0.2, (4, 4)), h, w) for _ in range(3)])
    return bg + blobs + rng.normal(0.0, 0.03, (3, h, w))


def _digit_colour(rng: np.random.Generator, local_bg: np.ndarray) -> np.ndarray:
    """A random colour that stands out from the background under the digit."""
    for _ in range(10):
        c = rng.uniform(0.0, 1.0, 3)
        if np.linalg.norm(c - local_bg) >= 0.6:
            return c
    return (local_bg < 0.5).astype(np.float64)  # opposite corner of the colour cube


def compose_digit_scenes(
    n: int,
    pool_images: np.ndarray,
    pool_labels: np.ndarray,
    rng: np.random.Generator,
    height: int,
    width: int,
) -> tuple[np.ndarray, np.ndarray, list[list[Placement]]]:
    """``n`` scenes of 1–4 non-overlapping digits, each scaled 2–4× (relative to a 64 px side).

    ``pool_images`` are sklearn's 8×8 digits (values 0..16). Mask: class label + 1 where the
    upsampled digit covers ≥ 50 % of a pixel, 255 on its thin anti-aliased rim, 0 elsewhere.
    """
    images = np.empty((n, 3, height, width), np.uint8)
    masks = np.zeros((n, height, width), np.uint8)
    placements: list[list[Placement]] = []
    side = min(height, width)
    for i in range(n):
        img = _background(rng, height, width)
        boxes: list[Placement] = []
        for _ in range(int(rng.integers(1, 5))):
            sample = int(rng.integers(len(pool_images)))
            size = int(np.clip(round(8 * int(rng.integers(2, 5)) * side / 64), 4, side))
            for _try in range(30):
                top = int(rng.integers(0, height - size + 1))
                left = int(rng.integers(0, width - size + 1))
                if all(
                    top + size <= b.top or b.top + b.size <= top or left + size <= b.left or b.left + b.size <= left
                    for b in boxes
                ):
                    break
            else:
                continue  # no free spot for this digit: the scene has fewer digits
            label = int(pool_labels[sample])
            alpha = np.clip(_upsample(pool_images[sample] / 16.0, size, size), 0.0, 1.0)
            region = img[:, top : top + size, left : left + size]
            colour = _digit_colour(rng, region.mean(axis=(1, 2)))
            img[:, top : top + size, left : left + size] = region * (1 - alpha) + colour[:, None, None] * alpha
            m = masks[i, top : top + size, left : left + size]
            m[alpha >= _EDGE] = IGNORE_INDEX
            m[alpha >= _INK] = label + 1
            boxes.append(Placement(sample, label, top, left, size))
        images[i] = np.rint(np.clip(img, 0.0, 1.0) * 255)
        placements.append(boxes)
    return images, masks, placements


@register_dataset(DIGITS_INFO, on_disk=False, key_fields=("digits_train", "digits_val", "split_seed"))
def build_digits(cfg: TrialConfig, info: DatasetInfo, progress: bool) -> PreparedData:
    """Train and val scenes from disjoint sklearn samples, each from its own RNG stream."""
    from sklearn.datasets import load_digits  # bundled with scikit-learn, no download

    digits = load_digits()
    split_rng, train_rng, val_rng = _digit_streams(cfg.split_seed)
    train_pool, val_pool = digit_pools(len(digits.target), split_rng)
    tr_x, tr_y, _ = compose_digit_scenes(
        cfg.digits_train, digits.images[train_pool], digits.target[train_pool], train_rng, info.height, info.width
    )
    va_x, va_y, _ = compose_digit_scenes(
        cfg.digits_val, digits.images[val_pool], digits.target[val_pool], val_rng, info.height, info.width
    )
    return PreparedData(info, tr_x, tr_y, va_x, va_y)


# ------------------------------------------------------------------------------------------------
# PASCAL VOC 2012 + SBD (the "augmented" set)
# ------------------------------------------------------------------------------------------------

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
    image = _open_image(image_path)
    mask = _open_image(mask_path)
    if mask.mode not in ("P", "L", "I", "I;16"):
        raise UserError(
            f"mask {mask_path} is a {mask.mode} image; SegmentationClassAug needs palette or grayscale "
            "PNGs of class indices (255 = boundary)"
        )
    _check_same_size(image, mask, image_path, mask_path)
    labels = np.asarray(mask)  # palette PNG: the palette indices are the classes
    _check_labels(labels, info.num_classes, mask_path)
    return _resize_rgb(image, info), _resize_mask(labels.astype(np.uint8), info)


@register_dataset(VOC_INFO, on_disk=True)
def build_voc(cfg: TrialConfig, info: DatasetInfo, progress: bool) -> PreparedData:
    """Train ids from train_aug.txt (else train.txt), minus any also in val.txt; val ids from val.txt."""
    root = _require(_data_root(cfg), "VOC data_root", "point data_root at the folder holding JPEGImages/")
    fix = "expected the VOC2012 + SBD layout: JPEGImages/, SegmentationClassAug/, ImageSets/Segmentation/"
    for sub in ("JPEGImages", "SegmentationClassAug", "ImageSets/Segmentation"):
        _require(root / sub, "VOC folder", fix)
    lists = root / "ImageSets" / "Segmentation"
    train_list = lists / "train_aug.txt"
    if not train_list.is_file():
        train_list = lists / "train.txt"
    if not train_list.is_file():
        raise UserError(f"VOC split list {lists / 'train_aug.txt'} (or train.txt) does not exist; {fix}")
    val_ids = _read_ids(_require(lists / "val.txt", "VOC split list", fix))
    val_set = set(val_ids)
    train_ids = [i for i in _read_ids(train_list) if i not in val_set]  # SBD's train list may hold val ids
    out = {}
    for split, ids in (("train", train_ids), ("val", val_ids)):
        pairs = _parallel_map(lambda i: _voc_pair(root, info, i), ids, desc=f"voc {split}", progress=progress)
        out[split] = _stack(pairs, info)
    return PreparedData(info, *out["train"], *out["val"])


# ------------------------------------------------------------------------------------------------
# Cityscapes (gtFine)
# ------------------------------------------------------------------------------------------------

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
CITYSCAPES_LUT = np.full(256, IGNORE_INDEX, np.uint8)
CITYSCAPES_LUT[list(CITYSCAPES_LABEL_IDS)] = np.arange(len(CITYSCAPES_LABEL_IDS), dtype=np.uint8)


def _cityscapes_pair(root: Path, info: DatasetInfo, image_path: Path) -> tuple[np.ndarray, np.ndarray]:
    rel = image_path.relative_to(root / "leftImg8bit")
    mask_path = root / "gtFine" / rel.parent / rel.name.replace("_leftImg8bit.png", "_gtFine_labelIds.png")
    image = _open_image(image_path)
    mask = _open_image(mask_path)
    _check_same_size(image, mask, image_path, mask_path)
    label_ids = np.asarray(mask)
    _check_labels(label_ids, 34, mask_path, " (Cityscapes labelIds)")
    return _resize_rgb(image, info), CITYSCAPES_LUT[_resize_mask(label_ids.astype(np.uint8), info)]


@register_dataset(CITYSCAPES_INFO, on_disk=True)
def build_cityscapes(cfg: TrialConfig, info: DatasetInfo, progress: bool) -> PreparedData:
    """The shipped train and val splits; labelIds mapped to the 19 train ids."""
    root = _require(_data_root(cfg), "Cityscapes data_root", "point data_root at the folder holding leftImg8bit/")
    fix = (
        "expected leftImg8bit/{train,val}/<city>/*_leftImg8bit.png and "
        "gtFine/{train,val}/<city>/*_gtFine_labelIds.png"
    )
    found = {}
    for split in ("train", "val"):  # check the whole layout before decoding anything
        _require(root / "gtFine" / split, "Cityscapes folder", fix)
        images = sorted(_require(root / "leftImg8bit" / split, "Cityscapes folder", fix).glob("*/*_leftImg8bit.png"))
        if not images:
            raise UserError(f"no *_leftImg8bit.png under {root / 'leftImg8bit' / split}/<city>/; {fix}")
        found[split] = images
    out = {}
    for split, images in found.items():
        pairs = _parallel_map(
            lambda p: _cityscapes_pair(root, info, p), images, desc=f"cityscapes {split}", progress=progress
        )
        out[split] = _stack(pairs, info)
    return PreparedData(info, *out["train"], *out["val"])


# ------------------------------------------------------------------------------------------------
# ACDC (MICCAI 2017), public NIfTI layout
# ------------------------------------------------------------------------------------------------

ACDC_INFO = DatasetInfo(
    name="acdc",
    num_classes=4,
    in_channels=1,
    class_names=("background", "RV cavity", "myocardium", "LV cavity"),
    height=128,
    width=128,
)
_ACDC_VAL_SHARE = 0.25  # the paper: 75 exams train, 25 val


def split_patients(patients: Sequence[str], seed: int) -> tuple[list[str], list[str]]:
    """(train, val) patients, 3:1 by a permutation from ``seed``; at least one on each side."""
    if len(patients) < 2:
        raise UserError(f"ACDC needs at least 2 patients to split train/val by patient, found {len(patients)}")
    order = sorted(patients)
    perm = np.random.default_rng(seed).permutation(len(order))
    n_val = min(len(order) - 1, max(1, math.floor(len(order) * _ACDC_VAL_SHARE + 0.5)))
    val = sorted(order[i] for i in perm[:n_val])
    train = sorted(order[i] for i in perm[n_val:])
    return train, val


def _read_nifti(path: Path) -> np.ndarray:
    if not path.is_file():
        raise UserError(f"missing file {path}; each ED/ES frame in Info.cfg needs its image and _gt file")
    import nibabel as nib

    try:
        return np.asarray(nib.load(str(path)).dataobj)
    except Exception as e:  # nibabel/gzip/zlib raise many types for a broken file; name the file
        raise UserError(f"cannot read NIfTI file {path} ({_first_line(e)}); replace or delete it") from None


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
        _check_labels(labels, info.num_classes, mask_path)
        vol8, labels8 = _scale_volume(vol), labels.astype(np.uint8)
        for z in range(vol.shape[-1]):
            img = Image.fromarray(np.ascontiguousarray(vol8[:, :, z]))
            img = img.resize((info.width, info.height), Image.Resampling.BILINEAR)
            pairs.append((np.asarray(img)[None], _resize_mask(np.ascontiguousarray(labels8[:, :, z]), info)))
    return pairs


@register_dataset(ACDC_INFO, on_disk=True, key_fields=("split_seed",))
def build_acdc(cfg: TrialConfig, info: DatasetInfo, progress: bool) -> PreparedData:
    """Patients split 3:1 by ``split_seed`` (no patient on both sides); all ED/ES slices of each."""
    root = _require(_data_root(cfg), "ACDC data_root", "point data_root at the folder holding training/")
    training = _require(root / "training", "ACDC folder", "expected training/patientNNN/ folders from the ACDC release")
    patients = sorted(p.name for p in training.iterdir() if p.is_dir() and p.name.startswith("patient"))
    if not patients:
        raise UserError(f"no patientNNN/ folders under {training}; expected the ACDC training release")
    out = {}
    for split, names in zip(("train", "val"), split_patients(patients, cfg.split_seed), strict=True):
        per_patient = _parallel_map(
            lambda n: _acdc_patient(training / n, info), names, desc=f"acdc {split}", progress=progress
        )
        out[split] = _stack([pair for pairs in per_patient for pair in pairs], info)
    return PreparedData(info, *out["train"], *out["val"])
