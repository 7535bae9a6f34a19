"""The prepared-array cache: a dataset is decoded once, stored as an ``.npz`` keyed by the fields that
change it, and kept in memory for the rest of the process, so a sweep decodes each dataset once, not
once per trial.
"""

from __future__ import annotations

import hashlib
import json
import os
import zipfile
from dataclasses import asdict
from pathlib import Path

import numpy as np

from ..config import TrialConfig
from ..errors import UserError
from ..io import atomic_write
from .base import DATASETS, DatasetInfo, PreparedData, dataset_info
from .decode import data_root

FORMAT_VERSION = 2  # bump when a builder's output changes: old cache files are then never read
_ARRAYS = ("train_images", "train_masks", "val_images", "val_masks", "test_images", "test_masks")
_MEMO: dict[Path, PreparedData] = {}


def cache_dir(cfg: TrialConfig) -> Path:
    """``cfg.cache_dir``, else ``$CYCLESEG_CACHE``, else ``~/.cache/cycleseg``."""
    raw = cfg.cache_dir or os.environ.get("CYCLESEG_CACHE") or "~/.cache/cycleseg"
    return Path(raw).expanduser()


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
        fields["data_root"] = str(data_root(cfg))
    for name in spec.key_fields:
        fields[name] = getattr(cfg, name)
    return hashlib.sha256(json.dumps(fields, sort_keys=True).encode()).hexdigest()[:16]


def cache_path(cfg: TrialConfig) -> Path:
    info = dataset_info(cfg)
    return cache_dir(cfg) / f"{cfg.dataset}-{info.height}x{info.width}-{cache_key(cfg)}.npz"


def check_source(cfg: TrialConfig) -> None:
    """Refuse, before any work, a config whose data can be neither loaded from the cache nor decoded: an
    on-disk dataset without ``data_root``, or whose ``data_root`` is not a folder."""
    if DATASETS.get(cfg.dataset).on_disk and not cache_path(cfg).is_file():
        root = data_root(cfg)
        if not root.is_dir():
            raise UserError(f"data_root '{cfg.data_root}' of dataset '{cfg.dataset}' is not a folder on this machine "
                            f"(and {cfg.dataset} at this size is not cached); point data_root at the dataset's folder")


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
    except UserError as e:
        raise UserError(f"the dataset cache: {e}, or set cache_dir (or $CYCLESEG_CACHE) to a writable folder") from None


def planned_train_size(cfg: TrialConfig) -> int | None:
    """``train_size``, else for an on-disk dataset not decoded yet its standard train list minus the val share
    held out (``DatasetSpec.listed_train``); None when neither is known."""
    from .base import DATASETS
    from .splits import hold_out_count

    known = train_size(cfg)
    listed = DATASETS.get(cfg.dataset).listed_train
    if known is not None or listed is None:
        return known
    return listed - hold_out_count(listed, cfg.val_fraction)


def train_size(cfg: TrialConfig) -> int | None:
    """Training images without decoding: digits from the config, others from a cached file; None if not cached."""
    if cfg.dataset == "digits":
        return cfg.digits_train
    try:
        with zipfile.ZipFile(cache_path(cfg)) as zf, zf.open("train_images.npy") as f:
            version = np.lib.format.read_magic(f)
            read = np.lib.format.read_array_header_1_0 if version == (1, 0) else np.lib.format.read_array_header_2_0
            return int(read(f)[0][0])
    except (OSError, KeyError, ValueError, UserError, zipfile.BadZipFile):
        return None
