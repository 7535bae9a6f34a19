"""Loss functions of Mondal et al. 2019 (§3.2, Eq. 1–7) and the Hung et al. 2018 baseline.

Pure functions on tensors. Every loss is computed in fp32 (inputs are cast with ``.float()``, a
no-op for fp32) so bf16 autocast never reaches a reduction. Mask value ``IGNORE`` (255) marks
pixels without a label (VOC object boundaries, Cityscapes void): they count in no loss.

The paper writes its losses as sums (Eq. 2) or squared norms (Eq. 3); we take means over pixels
(and batch), as the authors' code does, so the λ weights of Eq. 8 keep the meaning they have there
and do not depend on the image size.
"""

from __future__ import annotations

import torch
import torch.nn.functional as F
from torch import Tensor

from .masks import IGNORE


def cross_entropy(logits: Tensor, target: Tensor) -> Tensor:
    """Pixelwise cross-entropy H(y, softmax(logits)) (Eq. 2), as used by L^S_gen (Eq. 1) and
    L^S_cycle (Eq. 7): mean over pixels whose ``target`` is not 255.

    ``logits`` (B, C, H, W), ``target`` int64 (B, H, W). A batch with every pixel ignored gives 0,
    still attached to the graph (so ``backward`` works and adds zero gradient) — plain
    ``F.cross_entropy(reduction="mean")`` would give NaN there.
    """
    total = F.cross_entropy(logits.float(), target, ignore_index=IGNORE, reduction="sum")
    return total / (target != IGNORE).sum().clamp_min(1)


def l2(pred: Tensor, target: Tensor) -> Tensor:
    """L^I_gen (Eq. 3): mean squared error between G_SI(y) and the real image x."""
    return (pred.float() - target.float()).pow(2).mean()


def l1(pred: Tensor, target: Tensor) -> Tensor:
    """L^I_cycle (Eq. 6): mean absolute error between G_SI(G_IS(x')) and x'."""
    return (pred.float() - target.float()).abs().mean()


def _masked_mean(loss: Tensor, mask: Tensor | None) -> Tensor:
    """Mean over the pixels where ``mask`` (B, H, W) is True; all masked gives 0 with the graph intact."""
    if mask is None:
        return loss.mean()
    m = mask.reshape(loss.shape).to(loss.dtype)
    return (loss * m).sum() / m.sum().clamp_min(1)


def lsgan_real(d: Tensor, mask: Tensor | None = None, target: float = 1.0) -> Tensor:
    """Least-squares GAN term for "real" (Eq. 4/5 first terms): mean((D − target)²) over pixels in ``mask``.

    Also the generators' adversarial loss: they want D to call their output real. D_S's real input is
    the one-hot ground truth, whose ignored (255) pixels are all-zero vectors, not real masks: they are
    left out through ``mask``. ``target`` below 1 is one-sided label smoothing (discriminators only).
    """
    return _masked_mean((d.float() - target).pow(2), mask)


def lsgan_fake(d: Tensor) -> Tensor:
    """Least-squares GAN term for "generated" (Eq. 4/5 second terms): mean(D²)."""
    return d.float().pow(2).mean()


def bce_logits(d: Tensor, target_value: float, mask: Tensor | None = None) -> Tensor:
    """Binary cross-entropy of discriminator logits ``d`` (B, 1, H, W) against a constant target
    (1 real, 0 generated) — the Hung et al. 2018 adversarial loss.

    ``mask`` (B, H, W) or (B, 1, H, W), True where a pixel counts (Hung masks ignored gt pixels);
    the mean runs over counted pixels, and an all-masked batch gives 0 with the graph intact.
    """
    d = d.float()
    loss = F.binary_cross_entropy_with_logits(d, torch.full_like(d, float(target_value)), reduction="none")
    return _masked_mean(loss, mask)
