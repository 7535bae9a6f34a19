"""Sample grids like the paper's Fig. 2: image | ground truth | prediction(s) | G_SI's image from the truth."""

from __future__ import annotations

from pathlib import Path
from typing import TYPE_CHECKING

import numpy as np
import torch

from .io import atomic_write
from .masks import IGNORE, predicted_classes

if TYPE_CHECKING:
    from .data import PreparedData
    from .methods import Method

IGNORE_COLOR = (255, 255, 255)


def palette(num_classes: int) -> np.ndarray:
    """The PASCAL VOC colour map (bit-interleaved), so VOC masks look as people expect; 255 = white."""
    pal = np.zeros((256, 3), dtype=np.uint8)
    for i in range(256):
        c, r, g, b = i, 0, 0, 0
        for j in range(8):
            r |= ((c >> 0) & 1) << (7 - j)
            g |= ((c >> 1) & 1) << (7 - j)
            b |= ((c >> 2) & 1) << (7 - j)
            c >>= 3
        pal[i] = (r, g, b)
    pal[IGNORE] = IGNORE_COLOR
    return pal


def colorize(mask: np.ndarray, num_classes: int) -> np.ndarray:
    """(H, W) class indices → (H, W, 3) uint8."""
    return palette(num_classes)[mask.astype(np.int64).clip(0, 255)]


def to_display(image: np.ndarray) -> np.ndarray:
    """(C, H, W) image of any range → (H, W, 3) float in [0, 1] (min-max, as generated images have no fixed scale)."""
    x = image.astype(np.float32)
    lo, hi = float(x.min()), float(x.max())
    x = (x - lo) / (hi - lo) if hi > lo else np.zeros_like(x)
    x = np.transpose(x, (1, 2, 0))
    return np.repeat(x, 3, axis=2) if x.shape[2] == 1 else x


@torch.no_grad()
def sample_columns(
    methods: dict[str, Method], data: PreparedData, generator: Method | None = None, n: int = 4
) -> dict[str, list[np.ndarray]]:
    """The grid's columns for the first ``n`` test images, each a list of (H, W, 3) arrays."""
    from .data import normalize_images
    from .masks import one_hot

    n = min(n, len(data.test_images))
    c = data.info.num_classes
    images = torch.as_tensor(data.test_images[:n])
    masks = torch.as_tensor(data.test_masks[:n]).long()
    cols: dict[str, list[np.ndarray]] = {
        "image": [to_display(im) for im in images.numpy()],
        "ground truth": [colorize(m, c) for m in masks.numpy()],
    }
    for name, method in methods.items():
        with method.eval_mode():
            pred = predicted_classes(method.predict(normalize_images(images.to(method.device)))).cpu().numpy()
        cols[f"{name} prediction"] = [colorize(p, c) for p in pred]
    g_si = generator.raw_networks.get("G_SI") if generator is not None else None
    if g_si is not None:
        with generator.eval_mode():
            fake = g_si(one_hot(masks.to(generator.device), c).float()).float().cpu().numpy()
        cols["G_SI(ground truth)"] = [to_display(f) for f in fake]
    return cols


def legend_entries(class_names: tuple[str, ...] | list[str]) -> list[tuple[str, tuple[int, int, int]]]:
    """(label, colour) of every class as ``colorize`` draws it, then the ignore label's."""
    pal = palette(len(class_names))
    return [(str(n), tuple(int(x) for x in pal[i])) for i, n in enumerate(class_names)] + [
        (f"ignore ({IGNORE})", IGNORE_COLOR)]


def save_grid(path: Path, columns: dict[str, list[np.ndarray]],
              legend: list[tuple[str, tuple[int, int, int]]] | None = None) -> Path:
    """Write a titled image grid (rows = samples, columns = the dict's keys) as a PNG, atomically; ``legend``
    (label, RGB) pairs are drawn below it."""
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt
    from matplotlib.patches import Patch

    names = list(columns)
    rows = len(columns[names[0]])
    h, w = columns[names[0]][0].shape[:2]
    cell = 2.0
    fig, axes = plt.subplots(
        rows, len(names), figsize=(cell * len(names) * w / max(h, w) + 0.2, cell * rows * h / max(h, w) + 0.4),
        squeeze=False,
    )
    for j, name in enumerate(names):
        for i in range(rows):
            ax = axes[i][j]
            ax.imshow(columns[name][i], interpolation="nearest")
            ax.set_xticks([])
            ax.set_yticks([])
            if i == 0:
                ax.set_title(name, fontsize=9)
    fig.tight_layout()
    if legend:
        handles = [Patch(facecolor=np.array(rgb) / 255, edgecolor="0.5", label=label) for label, rgb in legend]
        ncol = max(1, min(len(handles), int(fig.get_figwidth() / 1.1)))
        fig.legend(handles=handles, loc="upper center", bbox_to_anchor=(0.5, 0.0), ncol=ncol, fontsize=7,
                   frameon=False, title="mask colours", title_fontsize=7)
    atomic_write(path, lambda p: fig.savefig(p, format="png", dpi=100, bbox_inches="tight"))
    plt.close(fig)
    return Path(path)


def save_sample_grid(
    path: Path, methods: dict[str, Method], data: PreparedData, generator: Method | None = None, n: int = 4
) -> Path:
    return save_grid(path, sample_columns(methods, data, generator, n), legend_entries(data.info.class_names))
