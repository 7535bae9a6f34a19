"""Sample grids: the colours a mask is drawn in are the ones the legend names."""

import numpy as np
from PIL import Image

from cycleseg.model.visualize import colorize, legend_entries, save_grid


def test_the_legend_names_each_class_in_the_colour_masks_are_drawn_in(tmp_path):
    # the VOC colour map: class 1 = (128, 0, 0), class 2 = (0, 128, 0), class 3 = (128, 128, 0); ignore white
    entries = legend_entries(("background", "one", "two", "three"))
    assert entries == [("background", (0, 0, 0)), ("one", (128, 0, 0)), ("two", (0, 128, 0)),
                       ("three", (128, 128, 0)), ("ignore (255)", (255, 255, 255))]
    mask = np.array([[0, 1], [2, 255]])
    assert [tuple(c) for c in colorize(mask, 4).reshape(-1, 3)] == [(0, 0, 0), (128, 0, 0), (0, 128, 0),
                                                                     (255, 255, 255)]
    # drawn: the legend sits below the grid, so the PNG grows and its lower part holds the swatches' colours
    cols = {"ground truth": [colorize(np.zeros((8, 8)), 4)]}
    plain = np.asarray(Image.open(save_grid(tmp_path / "plain.png", cols)).convert("RGB"))
    with_legend = np.asarray(Image.open(save_grid(tmp_path / "legend.png", cols, entries)).convert("RGB"))
    assert with_legend.shape[0] > plain.shape[0]
    below = with_legend[plain.shape[0] - 10:].reshape(-1, 3)
    for _, rgb in entries[1:4]:
        assert (np.abs(below.astype(int) - rgb).sum(1) <= 3).any(), rgb
