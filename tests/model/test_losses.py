"""Losses on hand-written tensors vs hand-computed numbers, incl. the 255 ignore label."""

from __future__ import annotations

import math

import pytest
import torch

from cycleseg.model import losses

LN2, LN4 = math.log(2), math.log(4)


def two_pixel_logits() -> torch.Tensor:
    # pixel 0: logits (0, 0) → p = (½, ½);  pixel 1: (ln 3, 0) → p = (¾, ¼)
    return torch.tensor([[[[0.0, math.log(3)]], [[0.0, 0.0]]]], requires_grad=True)  # (1, 2, 1, 2)


def test_cross_entropy_hand_values():
    logits = two_pixel_logits()
    # targets (0, 1): −ln ½ = ln 2, −ln ¼ = ln 4
    ce = losses.cross_entropy(logits, torch.tensor([[[0, 1]]]))
    assert ce.item() == pytest.approx((LN2 + LN4) / 2, rel=1e-6)
    # pixel 1 ignored → mean over pixel 0 only
    assert losses.cross_entropy(logits, torch.tensor([[[0, 255]]])).item() == pytest.approx(LN2, rel=1e-6)
    # pixel 0 ignored, target 0 at pixel 1: −ln ¾
    assert losses.cross_entropy(logits, torch.tensor([[[255, 0]]])).item() == pytest.approx(-math.log(0.75), rel=1e-6)


def test_cross_entropy_all_ignored_is_zero_with_graph():
    logits = two_pixel_logits()
    ce = losses.cross_entropy(logits, torch.full((1, 1, 2), 255))
    assert ce.item() == 0.0 and ce.requires_grad
    ce.backward()
    assert torch.equal(logits.grad, torch.zeros_like(logits))


def test_cross_entropy_grad_ignores_255_pixels():
    logits = two_pixel_logits()
    losses.cross_entropy(logits, torch.tensor([[[255, 1]]])).backward()
    assert torch.equal(logits.grad[..., 0], torch.zeros(1, 2, 1))
    # d(−ln softmax_1)/dlogits = p − onehot = (¾, ¼ − 1) at pixel 1
    assert torch.allclose(logits.grad[0, :, 0, 1], torch.tensor([0.75, -0.75]))


def test_cross_entropy_is_fp32_for_bf16_logits():
    ce = losses.cross_entropy(two_pixel_logits().detach().bfloat16(), torch.tensor([[[0, 1]]]))
    assert ce.dtype == torch.float32


def test_l2_l1_hand_values():
    pred = torch.tensor([[1.0, -2.0]])
    target = torch.tensor([[0.0, 0.0]])
    assert losses.l2(pred, target).item() == pytest.approx((1 + 4) / 2)
    assert losses.l1(pred, target).item() == pytest.approx((1 + 2) / 2)
    assert losses.l2(pred.bfloat16(), target).dtype == torch.float32


def test_lsgan_hand_values():
    d = torch.tensor([0.0, 2.0, 0.5])
    assert losses.lsgan_real(d).item() == pytest.approx((1 + 1 + 0.25) / 3)
    assert losses.lsgan_fake(d).item() == pytest.approx((0 + 4 + 0.25) / 3)


def test_bce_logits_hand_values_and_mask():
    d = torch.tensor([0.0, 2.0]).reshape(1, 1, 1, 2)
    real = [LN2, math.log1p(math.exp(-2))]  # −ln σ(d)
    fake = [LN2, math.log1p(math.exp(2))]  # −ln(1 − σ(d))
    assert losses.bce_logits(d, 1.0).item() == pytest.approx(sum(real) / 2, rel=1e-6)
    assert losses.bce_logits(d, 0.0).item() == pytest.approx(sum(fake) / 2, rel=1e-6)
    assert losses.bce_logits(d, 0.0, torch.tensor([[[False, True]]])).item() == pytest.approx(fake[1], rel=1e-6)
    d.requires_grad_(True)
    none = losses.bce_logits(d, 1.0, torch.zeros(1, 1, 1, 2, dtype=torch.bool))
    assert none.item() == 0.0
    none.backward()
    assert torch.equal(d.grad, torch.zeros_like(d))
