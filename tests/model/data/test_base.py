"""The dataset registry and the paper's normalisation."""

from __future__ import annotations

import pytest
import torch

from cycleseg.model.data import DATASETS, normalize_images
from tests.model.data import clear_memo
from tests.model.data.trees import raises_user_error


@pytest.fixture(autouse=True)
def _fresh_memo():
    clear_memo()
    yield
    clear_memo()


def test_registry_names_and_infos():
    assert DATASETS.names() == ["acdc", "cityscapes", "digits", "voc"]
    sizes = {n: (DATASETS.get(n).info.height, DATASETS.get(n).info.width) for n in DATASETS}
    assert sizes == {"digits": (64, 64), "voc": (200, 200), "cityscapes": (128, 256), "acdc": (128, 128)}
    for n in DATASETS:
        info = DATASETS.get(n).info
        assert len(info.class_names) == info.num_classes
    raises_user_error(lambda: DATASETS.get("vocc"), "did you mean 'voc'")


def test_normalize_images_hand_computed():
    x = torch.zeros(2, 2, 2, 2, dtype=torch.uint8)
    x[0, 0] = torch.tensor([[0, 10], [20, 30]])  # mean 15, max - min 30
    x[0, 1] = 7  # constant channel -> 0
    x[1, 0] = torch.tensor([[0, 0], [0, 255]])  # mean 63.75, max - min 255
    x[1, 1] = torch.tensor([[100, 100], [110, 120]])  # mean 107.5, max - min 20
    y = normalize_images(x)
    assert y.dtype == torch.float32 and y.shape == x.shape
    torch.testing.assert_close(y[0, 0], torch.tensor([[-0.5, -1 / 6], [1 / 6, 0.5]]))
    torch.testing.assert_close(y[0, 1], torch.zeros(2, 2))
    torch.testing.assert_close(y[1, 0], torch.tensor([[-0.25, -0.25], [-0.25, 0.75]]))
    torch.testing.assert_close(y[1, 1], torch.tensor([[-0.375, -0.375], [0.125, 0.625]]))


def test_normalize_images_range_per_image_and_channel():
    x = torch.randint(0, 256, (4, 3, 16, 16), dtype=torch.uint8)
    y = normalize_images(x)
    assert y.min() >= -1 and y.max() <= 1
    spread = y.amax(dim=(2, 3)) - y.amin(dim=(2, 3))
    torch.testing.assert_close(spread, torch.ones(4, 3))  # each (image, channel) spans width 1
    torch.testing.assert_close(y.mean(dim=(2, 3)), torch.zeros(4, 3), atol=1e-6, rtol=0)
