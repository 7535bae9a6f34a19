"""The networks: plain ``nn.Module``s built by name through ``NETWORKS`` / ``create_network``.

Paper §3.3 (Mondal et al. 2019): both generators are the Johnson et al. ResNet generator used by
CycleGAN (two stride-2 convolutions, 9 residual blocks, two stride-1/2 convolutions, instance
norm, no dropout); G_IS ends in logits (softmax is applied by the losses), G_SI in tanh. The
discriminators D_S and D_I are pixel-wise (one score per input pixel, the paper's); config
``discriminator`` offers a ``PatchDiscriminator`` (Isola et al. 2017) that judges shapes, and
``HungDiscriminator``, the fully convolutional discriminator of the Hung et al. 2018 baseline. Every
discriminator returns one score per input pixel, so the per-pixel masks of the losses apply to all.

No network here keeps running statistics, so ``train()`` / ``eval()`` change nothing: instance norm
is affine-free without running stats, and the discriminators' batch norm always uses batch
statistics (see ``PixelDiscriminator``).
"""

from __future__ import annotations

from typing import Any, Literal

import torch
import torch.nn.functional as F
from torch import Tensor, nn

from .config import SIDE_MULTIPLE
from .registry import Registry

NETWORKS: Registry[type[nn.Module]] = Registry("network")


def create_network(name: str, **kwargs: Any) -> nn.Module:
    """Build the network registered as ``name`` (e.g. ``resnet_generator``) with ``kwargs``."""
    return NETWORKS.get(name)(**kwargs)


def _conv_norm_relu(conv: nn.Module, channels: int) -> list[nn.Module]:
    return [conv, nn.InstanceNorm2d(channels, affine=False), nn.ReLU(inplace=True)]


class ResidualBlock(nn.Module):
    """x + F(x), F = reflectpad1-conv3-IN-ReLU-reflectpad1-conv3-IN (no dropout, paper §3.3)."""

    def __init__(self, channels: int) -> None:
        super().__init__()
        self.body = nn.Sequential(
            nn.ReflectionPad2d(1),
            *_conv_norm_relu(nn.Conv2d(channels, channels, 3, bias=False), channels),
            nn.ReflectionPad2d(1),
            nn.Conv2d(channels, channels, 3, bias=False),
            nn.InstanceNorm2d(channels, affine=False),
        )

    def forward(self, x: Tensor) -> Tensor:
        return x + self.body(x)


@NETWORKS.register("resnet_generator")
class ResnetGenerator(nn.Module):
    """CycleGAN's ResNet generator; G_IS with ``out="logits"``, G_SI with ``out="tanh"``.

    Convolutions followed by an affine-free InstanceNorm have no bias: the norm subtracts the
    per-channel mean, so such a bias never changes the output, and its gradient is pure rounding
    noise that Adam would blow up to lr-sized random steps. Without those biases the paper preset
    (ngf=64, 9 blocks, 3→21 channels) has 11,429,397 parameters (the authors' code: 11,434,645).
    H and W must be multiples of ``SIDE_MULTIPLE`` (4: two stride-2 convolutions, undone by two transposed ones).
    """

    def __init__(
        self, in_channels: int, out_channels: int, ngf: int = 64, n_blocks: int = 9,
        out: Literal["logits", "tanh"] = "logits",
    ) -> None:
        super().__init__()
        if out not in ("logits", "tanh"):
            raise ValueError(f"out must be 'logits' or 'tanh', got {out!r}")
        layers: list[nn.Module] = [
            nn.ReflectionPad2d(3),
            *_conv_norm_relu(nn.Conv2d(in_channels, ngf, 7, bias=False), ngf),
        ]
        for mult in (1, 2):  # downsampling: ngf → 2ngf → 4ngf
            layers += _conv_norm_relu(
                nn.Conv2d(ngf * mult, ngf * mult * 2, 3, stride=2, padding=1, bias=False), ngf * mult * 2
            )
        layers += [ResidualBlock(ngf * 4) for _ in range(n_blocks)]
        for mult in (4, 2):  # upsampling: 4ngf → 2ngf → ngf
            layers += _conv_norm_relu(
                nn.ConvTranspose2d(
                    ngf * mult, ngf * mult // 2, 3, stride=2, padding=1, output_padding=1, bias=False
                ),
                ngf * mult // 2,
            )
        layers += [nn.ReflectionPad2d(3), nn.Conv2d(ngf, out_channels, 7)]
        if out == "tanh":
            layers.append(nn.Tanh())
        self.model = nn.Sequential(*layers)

    def forward(self, x: Tensor) -> Tensor:
        if x.shape[-2] % SIDE_MULTIPLE or x.shape[-1] % SIDE_MULTIPLE:
            raise ValueError(f"ResnetGenerator needs H and W divisible by {SIDE_MULTIPLE}, got {tuple(x.shape[-2:])}")
        return self.model(x)


def discriminator_norm(kind: Literal["batch", "instance"], channels: int) -> nn.Module:
    """A discriminator's norm: batch (paper §3.3) or instance (the authors' code), neither with running stats:
    D is only ever used in training, where it normalises with the batch's (or sample's) statistics anyway;
    running averages would be dead state that the generator step's forward through the frozen D would modify."""
    if kind == "batch":
        return nn.BatchNorm2d(channels, track_running_stats=False)
    if kind == "instance":
        return nn.InstanceNorm2d(channels, affine=False, track_running_stats=False)
    raise ValueError(f"norm must be 'batch' or 'instance', got {kind!r}")


@NETWORKS.register("pixel_discriminator")
class PixelDiscriminator(nn.Module):
    """Pixel-wise discriminator (D_S, D_I): one real/fake score per input pixel, no sigmoid (LSGAN).

    Paper §3.3: three convolutional blocks, LeakyReLU(0.2), batch norm after the second block. The
    paper gives no kernel size; we use 1×1 convolutions like the authors' code (each pixel is judged
    from its own channel vector), so it cannot see a shape: only how one pixel's vector looks.
    """

    def __init__(self, in_channels: int, ndf: int = 64, norm: Literal["batch", "instance"] = "batch") -> None:
        super().__init__()
        self.model = nn.Sequential(
            nn.Conv2d(in_channels, ndf, 1),
            nn.LeakyReLU(0.2, inplace=True),
            nn.Conv2d(ndf, ndf * 2, 1, bias=False),  # bias is cancelled by the norm
            discriminator_norm(norm, ndf * 2),
            nn.LeakyReLU(0.2, inplace=True),
            nn.Conv2d(ndf * 2, 1, 1),
        )

    def forward(self, x: Tensor) -> Tensor:
        return self.model(x)


def patch_receptive_field(depth: int) -> int:
    """Side in pixels of the input square one PatchGAN score sees: 9·2^depth − 2 (16, 34, 70 for depth 1, 2, 3).

    ``depth`` stride-2 k4 convolutions then two stride-1 k4 ones: RF = 1 + Σ 3·(product of earlier strides).
    """
    return 9 * 2**depth - 2


def patch_min_side(depth: int) -> int:
    """The smallest image side a PatchGAN of ``depth`` scores: 3·2^depth (its last map is then 1×1)."""
    return 3 * 2**depth


@NETWORKS.register("patch_discriminator")
class PatchDiscriminator(nn.Module):
    """PatchGAN (Isola et al. 2017, pix2pix's N-layer D) for D_S and D_I: judges shapes, not single pixels.

    ``depth`` k4 s2 p1 convolutions (widths ndf, 2ndf, … capped at 8ndf; a norm after all but the first),
    a k4 s1 p1 convolution and norm, then a k4 s1 p1 convolution to one channel; LeakyReLU(0.2), no
    sigmoid (LSGAN). Each score sees a ``patch_receptive_field(depth)`` square: 16, 34, 70 px for depth 1,
    2, 3 (a digit of the built-in data spans about 10–20 px at 32×32). The score map is bilinearly
    upsampled to the input size (as Hung et al. do), so every pixel has a score and the losses' per-pixel
    masks apply. Needs H, W ≥ ``patch_min_side(depth)`` = 3·2^depth.
    """

    def __init__(self, in_channels: int, ndf: int = 64, depth: int = 2,
                 norm: Literal["batch", "instance"] = "batch") -> None:
        super().__init__()
        self.depth = depth
        layers: list[nn.Module] = [nn.Conv2d(in_channels, ndf, 4, stride=2, padding=1), nn.LeakyReLU(0.2, True)]
        ch = ndf
        for n in range(1, depth + 1):
            out = ndf * min(2**n, 8)
            stride = 2 if n < depth else 1
            layers += [nn.Conv2d(ch, out, 4, stride=stride, padding=1, bias=False), discriminator_norm(norm, out),
                       nn.LeakyReLU(0.2, True)]
            ch = out
        layers.append(nn.Conv2d(ch, 1, 4, stride=1, padding=1))
        self.model = nn.Sequential(*layers)

    def forward(self, x: Tensor) -> Tensor:
        h, w = x.shape[-2:]
        if min(h, w) < patch_min_side(self.depth):
            raise ValueError(f"PatchDiscriminator of depth {self.depth} needs H, W >= {patch_min_side(self.depth)}, "
                             f"got {(h, w)}")
        return F.interpolate(self.model(x), size=(h, w), mode="bilinear", align_corners=False)


@NETWORKS.register("hung_discriminator")
class HungDiscriminator(nn.Module):
    """Hung et al. 2018 fully convolutional discriminator → per-pixel confidence logits (B, 1, H, W).

    Four k4 s2 p1 convolutions (ndf, 2ndf, 4ndf, 8ndf) with LeakyReLU(0.2), a k4 s2 p1 conv to one
    channel, no normalization, no sigmoid; the 1/32-resolution map is bilinearly upsampled to the
    input size. Five stride-2 convolutions need H, W >= 32.
    """

    def __init__(self, in_channels: int, ndf: int = 64) -> None:
        super().__init__()
        layers: list[nn.Module] = []
        ch = in_channels
        for width in (ndf, ndf * 2, ndf * 4, ndf * 8):
            layers += [nn.Conv2d(ch, width, 4, stride=2, padding=1), nn.LeakyReLU(0.2, inplace=True)]
            ch = width
        layers.append(nn.Conv2d(ch, 1, 4, stride=2, padding=1))
        self.model = nn.Sequential(*layers)

    def forward(self, x: Tensor) -> Tensor:
        h, w = x.shape[-2:]
        if h < 32 or w < 32:
            raise ValueError(f"HungDiscriminator needs H, W >= 32 (five stride-2 convs), got {(h, w)}")
        return F.interpolate(self.model(x), size=(h, w), mode="bilinear", align_corners=False)


@torch.no_grad()
def init_weights(net: nn.Module, std: float = 0.02) -> nn.Module:
    """CycleGAN init: conv weights N(0, std), norm weights N(1, std), all biases 0.

    Draws from torch's global RNG, so the caller's ``torch.manual_seed`` fixes the result.
    """
    for m in net.modules():
        if isinstance(m, nn.modules.conv._ConvNd):
            nn.init.normal_(m.weight, 0.0, std)
        elif isinstance(m, nn.modules.batchnorm._NormBase | nn.GroupNorm | nn.LayerNorm):
            if m.weight is not None:
                nn.init.normal_(m.weight, 1.0, std)
        else:
            continue
        if m.bias is not None:
            nn.init.zeros_(m.bias)
    return net
