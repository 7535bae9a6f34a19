"""Datasets: decoded once into uint8 arrays, cached, split. Importing this package registers every
built-in dataset (``digits``, ``voc``, ``cityscapes``, ``acdc``) in ``DATASETS``.

The paper (Mondal et al. 2019, §4.1) resizes VOC to 200×200, Cityscapes to 128×256 and uses 75/25
ACDC exams for train/val. Splits we follow: VOC's and Cityscapes' shipped train/val lists (the paper
re-split the 10,582 VOC-aug images 8,994/1,588 and Cityscapes' 3,475 images 2,953/522 without
publishing the lists); ACDC split by patient from ``split_seed``.
"""

from . import acdc, cityscapes, digits, voc  # noqa: F401  (registration)
from .base import DATASETS, DatasetInfo, PreparedData, dataset_info, normalize_images
from .cache import cache_key, check_source, planned_train_size, prepare_dataset, train_size
from .splits import labeled_count, labeled_indices

__all__ = [
    "DATASETS",
    "DatasetInfo",
    "PreparedData",
    "cache_key",
    "check_source",
    "dataset_info",
    "labeled_count",
    "labeled_indices",
    "normalize_images",
    "planned_train_size",
    "prepare_dataset",
    "train_size",
]
