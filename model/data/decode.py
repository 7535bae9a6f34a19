"""Decoding helpers shared by the on-disk datasets: parallel decode, checked image and mask reads, resizing."""

from __future__ import annotations

import os
from collections.abc import Callable, Sequence
from concurrent.futures import ThreadPoolExecutor
from pathlib import Path
from typing import TypeVar

import numpy as np
from PIL import Image
from tqdm import tqdm

from ..config import TrialConfig
from ..errors import UserError
from ..masks import IGNORE
from .base import DatasetInfo

T = TypeVar("T")
R = TypeVar("R")


def parallel_map(fn: Callable[[T], R], items: Sequence[T], *, desc: str, progress: bool) -> list[R]:
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


def require(path: Path, what: str, fix: str) -> Path:
    if not path.exists():
        raise UserError(f"{what} {path} does not exist; {fix}")
    return path


def first_line(e: BaseException) -> str:
    text = str(e).strip()
    return text.splitlines()[0] if text else type(e).__name__


def open_image(path: Path) -> Image.Image:
    """Open and fully decode an image, so a broken file is reported by name."""
    if not path.is_file():
        raise UserError(f"missing file {path}; restore it or remove the image it belongs to from the split")
    try:
        with Image.open(path) as im:
            im.load()
            return im.copy()
    except (OSError, ValueError, SyntaxError) as e:  # PIL raises these for truncated/unknown files
        raise UserError(f"cannot read image {path} ({first_line(e)}); replace or delete that file") from None


def check_same_size(image: Image.Image, mask: Image.Image, image_path: Path, mask_path: Path) -> None:
    if image.size != mask.size:
        raise UserError(
            f"mask {mask_path} is {mask.size[0]}x{mask.size[1]} but its image {image_path.name} is "
            f"{image.size[0]}x{image.size[1]}; masks must match their images pixel for pixel"
        )


def check_labels(values: np.ndarray, num_classes: int, path: Path, allowed_note: str = "") -> None:
    # bincount is O(n) for unsigned masks (PNG); np.unique sorts
    present = np.flatnonzero(np.bincount(values.ravel())) if values.dtype.kind == "u" else np.unique(values)
    bad = present[((present >= num_classes) & (present != IGNORE)) | (present < 0)]
    if bad.size:
        shown = ", ".join(str(int(v)) for v in bad[:8]) + (", ..." if bad.size > 8 else "")
        raise UserError(
            f"mask {path} has values {shown} outside 0..{num_classes - 1} and {IGNORE}"
            f"{allowed_note}; store class indices (255 = ignore)"
        )


def resize_rgb(im: Image.Image, info: DatasetInfo) -> np.ndarray:
    """RGB image → uint8 (3, H, W), bilinear."""
    im = im.convert("RGB").resize((info.width, info.height), Image.Resampling.BILINEAR)
    return np.asarray(im).transpose(2, 0, 1)


def resize_mask(mask: np.ndarray, info: DatasetInfo) -> np.ndarray:
    """uint8 (h, w) class map → (H, W), nearest."""
    im = Image.fromarray(mask).resize((info.width, info.height), Image.Resampling.NEAREST)
    return np.asarray(im)


def stack(pairs: list[tuple[np.ndarray, np.ndarray]], info: DatasetInfo) -> tuple[np.ndarray, np.ndarray]:
    images = np.empty((len(pairs), info.in_channels, info.height, info.width), np.uint8)
    masks = np.empty((len(pairs), info.height, info.width), np.uint8)
    for i, (img, mask) in enumerate(pairs):
        images[i] = img
        masks[i] = mask
    return images, masks


def data_root(cfg: TrialConfig) -> Path:
    """``cfg.data_root`` as an absolute path; a ``UserError`` when an on-disk dataset has none."""
    if not cfg.data_root:
        raise UserError(
            f"dataset '{cfg.dataset}' is read from disk but data_root is not set; "
            f"set data_root: cycleseg sweep --set data_root=/path/to/{cfg.dataset}, cycleseg debug --data-root "
            f"/path/to/{cfg.dataset}"
        )
    return Path(cfg.data_root).expanduser().resolve()
