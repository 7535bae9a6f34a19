"""digits: multi-digit scenes from scikit-learn's bundled 8×8 handwritten digits (real data, no download).

For demos and tests: 1–4 non-overlapping digits per scene on a smooth coloured background; train and
validation scenes are composed from disjoint sets of handwritten samples.
"""

from __future__ import annotations

from dataclasses import dataclass

import numpy as np
from PIL import Image

from ..config import TrialConfig
from ..masks import IGNORE
from .base import DatasetInfo, PreparedData, register_dataset

DIGITS_INFO = DatasetInfo(
    name="digits",
    num_classes=11,
    in_channels=3,
    class_names=("background", *(str(d) for d in range(10))),
    height=64,
    width=64,
)
_HELD_OUT_SHARE = 0.2  # of the 1797 sklearn samples, for validation scenes, and as many for test scenes
_SCALES = (3, 4)  # a digit is 8 px × one of these, relative to a 64-px scene side (8 px digits are unreadable)
_MAX_DIGITS = 4  # digits per scene: 1 to this many
_BLOB = 0.1  # amplitude of the low-frequency colour blobs over the background gradient
_INK = 0.5  # digit coverage at or above this is the digit's class
_EDGE = 0.3  # coverage in [_EDGE, _INK) is the anti-aliased rim: ignore (255), like VOC boundaries


def _digit_streams(split_seed: int) -> list[np.random.Generator]:
    """Independent RNG streams (sample split, train, val and test scenes) from one ``split_seed``."""
    return [np.random.default_rng(s) for s in np.random.SeedSequence(split_seed).spawn(4)]


def digit_pools(n_samples: int, rng: np.random.Generator) -> tuple[np.ndarray, np.ndarray, np.ndarray]:
    """Disjoint sample indices (train, val, test pools): no handwritten sample appears in two splits."""
    perm = rng.permutation(n_samples)
    k = round(n_samples * _HELD_OUT_SHARE)
    return np.sort(perm[2 * k :]), np.sort(perm[:k]), np.sort(perm[k : 2 * k])


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
    blobs = np.stack([_upsample(rng.uniform(-_BLOB, _BLOB, (4, 4)), h, w) for _ in range(3)])
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
    """``n`` scenes of 1–4 non-overlapping digits, each scaled 3× or 4× (relative to a 64 px side).

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
        for _ in range(int(rng.integers(1, _MAX_DIGITS + 1))):
            sample = int(rng.integers(len(pool_images)))
            size = int(np.clip(round(8 * int(rng.choice(_SCALES)) * side / 64), 4, side))
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
            m[alpha >= _EDGE] = IGNORE
            m[alpha >= _INK] = label + 1
            boxes.append(Placement(sample, label, top, left, size))
        images[i] = np.rint(np.clip(img, 0.0, 1.0) * 255)
        placements.append(boxes)
    return images, masks, placements


@register_dataset(DIGITS_INFO, on_disk=False, key_fields=("digits_train", "digits_val", "digits_test", "split_seed"))
def build_digits(cfg: TrialConfig, info: DatasetInfo, progress: bool) -> PreparedData:
    """Train, val and test scenes from disjoint sklearn samples, each split from its own RNG stream."""
    from sklearn.datasets import load_digits  # bundled with scikit-learn, no download

    digits = load_digits()
    split_rng, *scene_rngs = _digit_streams(cfg.split_seed)
    pools = digit_pools(len(digits.target), split_rng)
    arrays = []
    for n, pool, rng in zip((cfg.digits_train, cfg.digits_val, cfg.digits_test), pools, scene_rngs, strict=True):
        x, y, _ = compose_digit_scenes(n, digits.images[pool], digits.target[pool], rng, info.height, info.width)
        arrays += [x, y]
    return PreparedData(info, *arrays)
