"""Networks: shapes, exact parameter counts from layer shapes, init, registry."""

from __future__ import annotations

import itertools

import pytest
import torch
from torch import nn

from cycleseg.model.errors import UserError
from cycleseg.model.networks import (
    NETWORKS,
    HungDiscriminator,
    PatchDiscriminator,
    PixelDiscriminator,
    ResnetGenerator,
    create_network,
    init_weights,
    patch_min_side,
    patch_receptive_field,
)


def n_params(net: nn.Module) -> int:
    return sum(p.numel() for p in net.parameters())


def generator_params(c_in: int, c_out: int, ngf: int, n_blocks: int) -> int:
    """By hand from the layer shapes. Convs followed by affine-free InstanceNorm carry no bias."""
    conv7_in = c_in * ngf * 7 * 7
    down = ngf * (2 * ngf) * 3 * 3 + (2 * ngf) * (4 * ngf) * 3 * 3
    blocks = n_blocks * 2 * (4 * ngf) * (4 * ngf) * 3 * 3
    up = (4 * ngf) * (2 * ngf) * 3 * 3 + (2 * ngf) * ngf * 3 * 3
    conv7_out = ngf * c_out * 7 * 7 + c_out  # the last conv keeps its bias
    return conv7_in + down + blocks + up + conv7_out


def test_paper_generator_has_about_11_4_million_parameters():
    g = ResnetGenerator(3, 21, ngf=64, n_blocks=9, out="logits")
    assert n_params(g) == generator_params(3, 21, 64, 9) == 11_429_397
    assert abs(n_params(g) - 11.4e6) / 11.4e6 < 0.02  # paper §3.3 / authors' code: ≈11.4 M


def test_generator_structure_matches_paper():
    g = ResnetGenerator(3, 5, ngf=4, n_blocks=2, out="tanh")
    mods = list(g.modules())
    assert not any(isinstance(m, nn.Dropout) for m in mods)  # "no drop-out was adopted"
    norms = [m for m in mods if isinstance(m, nn.InstanceNorm2d)]
    assert len(norms) == 1 + 2 + 2 * 2 + 2 and all(not m.affine for m in norms)
    strided = [m for m in mods if isinstance(m, nn.Conv2d) and m.stride == (2, 2)]
    assert [m.out_channels for m in strided] == [8, 16]
    convt = [m for m in mods if isinstance(m, nn.ConvTranspose2d)]
    assert [(m.out_channels, m.output_padding) for m in convt] == [(8, (1, 1)), (4, (1, 1))]
    assert isinstance(mods[-1], nn.Tanh)


@pytest.mark.parametrize("out", ["logits", "tanh"])
def test_generator_output_shape_and_range(out):
    torch.manual_seed(0)
    g = init_weights(ResnetGenerator(3, 5, ngf=4, n_blocks=1, out=out))
    y = g(torch.randn(2, 3, 16, 20) * 3)
    assert y.shape == (2, 5, 16, 20)
    if out == "tanh":
        assert y.abs().max() < 1
    else:
        # logits are unbounded: a scaled-up last layer must push them past ±1
        with torch.no_grad():
            g.model[-1].weight.mul_(1e3)
        assert g(torch.randn(2, 3, 16, 20)).abs().max() > 1


def test_generator_rejects_sizes_not_divisible_by_4():
    g = ResnetGenerator(3, 5, ngf=4, n_blocks=1)
    with pytest.raises(ValueError, match="divisible by 4"):
        g(torch.randn(1, 3, 18, 16))
    with pytest.raises(ValueError):
        ResnetGenerator(3, 5, out="softmax")  # type: ignore[arg-type]


def test_residual_block_adds_its_input():
    g = ResnetGenerator(3, 5, ngf=4, n_blocks=1)
    block = g.model[10]
    with torch.no_grad():
        for p in block.parameters():
            p.zero_()  # F(x) = IN(0) = 0 → block is the identity
    x = torch.randn(1, 16, 4, 4)
    assert torch.equal(block(x), x)


def test_pixel_discriminator_shape_params_and_no_running_stats():
    d = PixelDiscriminator(5, ndf=8)
    convs = [m for m in d.modules() if isinstance(m, nn.Conv2d)]
    assert [m.kernel_size for m in convs] == [(1, 1)] * 3
    # conv1 (w+b) + conv2 (w, no bias: batch norm follows) + BN (w+b) + conv3 (w+b)
    assert n_params(d) == (5 * 8 + 8) + 8 * 16 + 2 * 16 + (16 + 1)
    assert not any(isinstance(m, nn.Sigmoid) for m in d.modules())  # LSGAN: raw scores
    assert [type(m) for m in d.modules() if isinstance(m, nn.BatchNorm2d)] == [nn.BatchNorm2d]
    assert list(d.buffers()) == []
    x = torch.randn(3, 5, 12, 8)
    out = d(x)
    assert out.shape == (3, 1, 12, 8)
    assert torch.equal(d.eval()(x), out)  # batch statistics in eval too: mode changes nothing


def test_pixel_discriminator_scores_each_pixel_from_its_own_vector():
    torch.manual_seed(0)
    d = PixelDiscriminator(4, ndf=8)
    x = torch.randn(2, 4, 6, 6)
    out = d(x)
    # swapping two pixels of every image (same per-batch statistics) swaps exactly their scores
    x2 = x.clone()
    x2[:, :, 0, 0], x2[:, :, 5, 5] = x[:, :, 5, 5], x[:, :, 0, 0]
    out2 = d(x2)
    assert torch.allclose(out2[:, :, 0, 0], out[:, :, 5, 5], atol=1e-6)
    assert torch.allclose(out2[:, :, 1:5], out[:, :, 1:5], atol=1e-6)


def test_hung_discriminator_shape_params_and_limits():
    d = HungDiscriminator(3, ndf=4)
    convs = [m for m in d.modules() if isinstance(m, nn.Conv2d)]
    assert [(m.kernel_size, m.stride, m.padding) for m in convs] == [((4, 4), (2, 2), (1, 1))] * 5
    widths = [3, 4, 8, 16, 32, 1]
    assert n_params(d) == sum(a * b * 16 + b for a, b in itertools.pairwise(widths))
    assert d(torch.randn(2, 3, 32, 32)).shape == (2, 1, 32, 32)
    assert d(torch.randn(1, 3, 48, 40)).shape == (1, 1, 48, 40)
    with pytest.raises(ValueError, match="32"):
        d(torch.randn(1, 3, 16, 64))


def test_init_weights_cyclegan_convention_and_seeded():
    torch.manual_seed(0)
    g = init_weights(ResnetGenerator(3, 5, ngf=16, n_blocks=2))
    w = g.model[10].body[1].weight  # a 64x64x3x3 conv: 36 864 draws
    assert abs(w.mean().item()) < 1e-3 and abs(w.std().item() - 0.02) < 1e-3
    assert torch.equal(g.model[-1].bias, torch.zeros(5))
    d = init_weights(PixelDiscriminator(5, ndf=512))
    bn = d.model[3]
    assert abs(bn.weight.mean().item() - 1) < 5e-3 and abs(bn.weight.std().item() - 0.02) < 5e-3
    assert torch.equal(bn.bias, torch.zeros(1024)) and torch.equal(d.model[0].bias, torch.zeros(512))
    torch.manual_seed(0)
    g2 = init_weights(ResnetGenerator(3, 5, ngf=16, n_blocks=2))
    assert all(torch.equal(a, b) for a, b in zip(g.state_dict().values(), g2.state_dict().values(), strict=True))


def test_registry_and_factory():
    assert NETWORKS.names() == ["hung_discriminator", "patch_discriminator", "pixel_discriminator", "resnet_generator"]
    g = create_network("resnet_generator", in_channels=3, out_channels=4, ngf=4, n_blocks=1, out="tanh")
    assert isinstance(g, ResnetGenerator)
    assert isinstance(create_network("pixel_discriminator", in_channels=3, ndf=4), PixelDiscriminator)
    with pytest.raises(UserError, match="did you mean 'pixel_discriminator'"):
        create_network("pixel_discriminatr", in_channels=3)


@pytest.mark.parametrize(("depth", "rf"), [(1, 16), (2, 34), (3, 70)])
def test_patch_receptive_field_is_what_its_docstring_says(depth, rf):
    """The input square one score's gradient reaches, measured with the norms (which mix the whole image)
    taken out; it must equal the docstring's 9·2^depth − 2."""
    net = init_weights(PatchDiscriminator(2, ndf=4, depth=depth))
    for i, m in enumerate(net.model):
        if isinstance(m, nn.BatchNorm2d | nn.InstanceNorm2d):
            net.model[i] = nn.Identity()
    x = torch.randn(1, 2, 160, 160, requires_grad=True)
    scores = net.model(x)
    c = scores.shape[-1] // 2
    scores[0, 0, c, c].backward()
    rows, cols = (x.grad.abs().sum((0, 1)) > 0).nonzero(as_tuple=True)
    assert int(rows.max() - rows.min() + 1) == int(cols.max() - cols.min() + 1) == rf == patch_receptive_field(depth)
    assert str(rf) in PatchDiscriminator.__doc__ and str(rf) in patch_receptive_field.__doc__


@pytest.mark.parametrize("norm", ["batch", "instance"])
def test_patch_discriminator_scores_every_pixel_down_to_its_smallest_image(norm):
    for depth in (1, 2, 3):
        side = patch_min_side(depth)
        d = PatchDiscriminator(3, ndf=4, depth=depth, norm=norm)
        assert d(torch.randn(2, 3, side, side)).shape == (2, 1, side, side)
        with pytest.raises(ValueError, match=f"needs H, W >= {side}"):
            d(torch.randn(2, 3, side - 4, side - 4))
    assert not any(getattr(m, "track_running_stats", False) for m in d.modules())
