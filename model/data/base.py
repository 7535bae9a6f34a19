"""The dataset contract: what every dataset decodes to, and the registry of datasets.

Every dataset is a builder in the ``DATASETS`` registry (timm style) that turns its source into a
``PreparedData``: images ``(N, C_in, H, W)`` resized bilinearly and masks ``(N, H, W)`` resized
nearest, with 255 = ignore (``cycleseg.model.masks.IGNORE``). ``normalize_images`` is the paper's
pre-processing, applied to every batch on the device.
"""

from __future__ import annotations

import dataclasses
from collections.abc import Callable
from dataclasses import dataclass

import numpy as np
import torch

from ..config import TrialConfig
from ..registry import Registry


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
    val_images: np.ndarray  # for every choice: best epoch, early stopping, searches, best-config
    val_masks: np.ndarray
    test_images: np.ndarray  # reported, never used for a choice
    test_masks: np.ndarray

    def split(self, name: str) -> tuple[np.ndarray, np.ndarray]:
        """(images, masks) of split ``name`` (train, val or test)."""
        return getattr(self, f"{name}_images"), getattr(self, f"{name}_masks")


def held_out(info: DatasetInfo, train: tuple[np.ndarray, np.ndarray], test: tuple[np.ndarray, np.ndarray],
             val_fraction: float, seed: int) -> PreparedData:
    """A dataset that ships train and test: ``val`` is ``val_fraction`` of the shipped train, drawn with ``seed``."""
    from .splits import hold_out

    tr, va = hold_out(len(train[0]), val_fraction, seed)
    return PreparedData(info, train[0][tr], train[1][tr], train[0][va], train[1][va], *test)


Builder = Callable[[TrialConfig, DatasetInfo, bool], PreparedData]


@dataclass(frozen=True)
class DatasetSpec:
    """A registered dataset: its default-size info and the builder that decodes it."""

    info: DatasetInfo  # at the dataset's default size
    build: Builder  # (cfg, info at the resolved size, progress) -> PreparedData
    on_disk: bool  # needs cfg.data_root
    key_fields: tuple[str, ...]  # config fields besides size (and data_root) that change the arrays
    listed_train: int | None = None  # images in the standard layout's train list: what a dry run plans with


DATASETS: Registry[DatasetSpec] = Registry("dataset")


def register_dataset(
    info: DatasetInfo, *, on_disk: bool, key_fields: tuple[str, ...] = (), listed_train: int | None = None
) -> Callable[[Builder], Builder]:
    def deco(build: Builder) -> Builder:
        DATASETS.register(info.name)(DatasetSpec(info, build, on_disk, key_fields, listed_train))
        return build

    return deco


def dataset_info(cfg: TrialConfig) -> DatasetInfo:
    """The dataset's info at the size ``cfg`` asks for, without decoding anything.

    ``image_height`` and ``image_width`` override the default size independently.
    """
    base = DATASETS.get(cfg.dataset).info
    return dataclasses.replace(base, height=cfg.image_height or base.height, width=cfg.image_width or base.width)


def normalize_images(x: torch.Tensor) -> torch.Tensor:
    """Paper §3.3: per image and channel, (x − mean) / (max − min), in float32 on x's device.

    The paper's formula is kept as written: each (image, channel) then spans a width of exactly 1
    (not 2), e.g. [−0.5, 0.5] for a symmetric histogram or [−0.25, 0.75] for a dark image with one
    bright pixel. It always lies inside [−1, 1] (|x − mean| ≤ max − min), so G_SI's tanh can reach
    every target of the image losses. A constant channel becomes 0. Works on a uint8 batch (B, C, H, W).
    """
    x = x.float()
    mean = x.mean(dim=(-2, -1), keepdim=True)
    spread = x.amax(dim=(-2, -1), keepdim=True) - x.amin(dim=(-2, -1), keepdim=True)
    return (x - mean) / torch.where(spread > 0, spread, torch.ones_like(spread))
