"""Mask conventions: 255 is no label, one-hot maps with all-zero vectors there."""

import torch

from cycleseg.model.masks import one_hot


def test_one_hot_ignored_pixels_are_zero():
    mask = torch.tensor([[[0, 2], [255, 1]]])
    oh = one_hot(mask, 3)
    expected = torch.tensor([[[[1, 0], [0, 0]], [[0, 0], [0, 1]], [[0, 1], [0, 0]]]], dtype=torch.float32)
    assert oh.shape == (1, 3, 2, 2) and oh.dtype == torch.float32
    assert torch.equal(oh, expected)
