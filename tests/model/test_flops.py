"""The FLOP model against hand counts: the analytic generator count, the counted train step, meta vs real.

No timing here (speed goes to benchmarks/bench.py, run by hand).
"""

from __future__ import annotations

import dataclasses

import pytest
import torch
from torch import nn
from torch.utils.flop_counter import FlopCounterMode

from cycleseg.model.data import DATASETS
from cycleseg.model.flops import chain_forward_flops, conv_flops, count_step_flops, generator_forward_flops, step_flops
from cycleseg.model.methods import METHODS, Batch
from cycleseg.model.networks import ResnetGenerator
from cycleseg.model.resolve import resolve_config


def paper_step_flops(method: str, preset: str, dataset: str = "voc", size: tuple[int, int] = (200, 200)) -> int:
    h, w = size
    return step_flops(resolve_config({"dataset": dataset, "method": method, "preset": preset, "image_height": h,
                                      "image_width": w}))


def hand_generator_flops(c_in: int, c_out: int, ngf: int, n_blocks: int, h: int, w: int) -> int:
    """2·MACs of ResnetGenerator, layer by layer (transposed convs: MACs per *input* pixel)."""
    def conv(ci: int, co: int, k: int, pixels: int) -> int:
        return 2 * ci * co * k * k * pixels

    full, half, quarter = h * w, (h // 2) * (w // 2), (h // 4) * (w // 4)
    return (
        conv(c_in, ngf, 7, full)  # reflect-pad 3 + 7×7: output h×w
        + conv(ngf, 2 * ngf, 3, half)  # stride 2 → h/2
        + conv(2 * ngf, 4 * ngf, 3, quarter)  # stride 2 → h/4
        + n_blocks * 2 * conv(4 * ngf, 4 * ngf, 3, quarter)  # residual blocks at h/4
        + conv(4 * ngf, 2 * ngf, 3, quarter)  # transposed, input h/4 → h/2
        + conv(2 * ngf, ngf, 3, half)  # transposed, input h/2 → h
        + conv(ngf, c_out, 7, full)  # reflect-pad 3 + 7×7
    )


def first_conv(c_in: int, ngf: int, h: int, w: int) -> int:
    return 2 * c_in * ngf * 7 * 7 * h * w


def test_conv_flops_strided_conv_by_hand():
    layer = nn.Conv2d(3, 8, 3, stride=2, padding=1)
    # 8×8 outputs, each 3·8·9 MACs
    assert conv_flops(layer, 16, 16) == (2 * 3 * 8 * 9 * 64, 8, 8)
    # odd input: floor((15 + 2 - 3) / 2) + 1 = 8
    assert conv_flops(layer, 15, 15)[1:] == (8, 8)


def test_conv_flops_transposed_conv_counts_input_pixels():
    layer = nn.ConvTranspose2d(8, 4, 3, stride=2, padding=1, output_padding=1)
    # 8×8 inputs, each scattered through 8·4·9 MACs; output (8-1)·2 - 2 + 3 + 1 = 16
    assert conv_flops(layer, 8, 8) == (2 * 8 * 4 * 9 * 64, 16, 16)


def test_conv_flops_agrees_with_flop_counter_mode():
    for layer, h in ((nn.Conv2d(5, 7, 3, stride=2, padding=1), 12), (nn.ConvTranspose2d(6, 3, 3, 2, 1, 1), 6)):
        with FlopCounterMode(display=False) as fc:
            layer(torch.randn(1, layer.in_channels, h, h))
        assert conv_flops(layer, h, h)[0] == fc.get_total_flops()


def test_tiny_generator_forward_by_hand_and_by_counter():
    assert generator_forward_flops(3, 11, 8, 2, 16, 16) == hand_generator_flops(3, 11, 8, 2, 16, 16)
    g = ResnetGenerator(3, 11, ngf=8, n_blocks=2)
    with FlopCounterMode(display=False) as fc:
        g(torch.randn(2, 3, 16, 24))
    assert fc.get_total_flops() == 2 * generator_forward_flops(3, 11, 8, 2, 16, 24)


def test_paper_generator_matches_the_notes_65_gflop_per_200px_image():
    flops = generator_forward_flops(3, 21, 64, 9, 200, 200)
    assert flops == hand_generator_flops(3, 21, 64, 9, 200, 200) == 65_003_520_000
    assert abs(flops - 65e9) / 65e9 < 0.01


def test_chain_forward_flops_refuses_a_layer_it_cannot_follow():
    with pytest.raises(TypeError, match="MaxPool2d"):
        chain_forward_flops(nn.Sequential(nn.Conv2d(1, 1, 3), nn.MaxPool2d(2)), 8, 8)


def _method(name: str, **over):
    cfg = resolve_config({"method": name, "preset": "tiny", "device": "cpu", "image_height": 16,
                          "image_width": 16, **over})
    info = dataclasses.replace(DATASETS.get("digits").info, height=16, width=16)
    torch.manual_seed(0)
    return METHODS.get(name)(cfg, info, torch.device("cpu"), total_iters=10)


def _batch(b: int = 2) -> Batch:
    g = torch.Generator().manual_seed(0)
    return Batch(x=torch.rand(b, 3, 16, 16, generator=g) * 2 - 1, y=torch.randint(0, 11, (b, 16, 16), generator=g),
                 x_u=torch.rand(b, 3, 16, 16, generator=g) * 2 - 1)


def test_partial_step_is_forward_plus_backward_of_g_is():
    """Backward = 2× forward (input + weight grads), minus the first conv's input grad (x needs none)."""
    b, f = 2, hand_generator_flops(3, 11, 8, 2, 16, 16)
    assert count_step_flops(_method("partial"), _batch(b)) == b * (3 * f - first_conv(3, 8, 16, 16))


def test_cyclegan_step_without_discriminators_is_five_generator_passes():
    """λ4 = λ5 = 0: G_IS(x), G_SI(y), G_IS(G_SI(y)), G_IS(x'), G_SI(softmax G_IS(x')), each fwd + bwd.

    Only G_IS(x), G_SI(y) and G_IS(x') skip the first conv's input gradient (their inputs are data).
    """
    b = 2
    f_is, f_si = hand_generator_flops(3, 11, 8, 2, 16, 16), hand_generator_flops(11, 3, 8, 2, 16, 16)
    expected = b * (9 * f_is - 2 * first_conv(3, 8, 16, 16) + 6 * f_si - first_conv(11, 8, 16, 16))
    assert count_step_flops(_method("cyclegan", lambda_4=0.0, lambda_5=0.0), _batch(b)) == expected


def test_meta_device_count_equals_the_count_of_a_real_step():
    """paper_step_flops counts on shapes alone; a real CPU step of the same shapes must count the same."""
    b = resolve_config({}).batch_size
    real = count_step_flops(_method("cyclegan"), _batch(b))
    assert paper_step_flops("cyclegan", "tiny", dataset="digits", size=(16, 16)) == real


def test_paper_cyclegan_step_is_about_5_tflop_at_voc_shapes():
    """Notes: 5 generator passes (+ backward) per image ≈ 1 TFLOP, ≈ 5 TFLOP per batch of 5. Exact by hand here."""
    b, px = 5, 200 * 200
    f_is, f_si = hand_generator_flops(3, 21, 64, 9, 200, 200), hand_generator_flops(21, 3, 64, 9, 200, 200)
    generators = 9 * f_is - 2 * first_conv(3, 64, 200, 200) + 6 * f_si - first_conv(21, 64, 200, 200)

    def pixel_d(c_in: int) -> tuple[int, int]:  # (forward, its first 1×1 conv) per image
        return 2 * px * (c_in * 64 + 64 * 128 + 128 * 1), 2 * px * c_in * 64

    (f_ds, f1_ds), (f_di, f1_di) = pixel_d(21), pixel_d(3)
    # G phase: D_S(s_u), D_I(G_SI(y)) with frozen D: forward + input grads only (2F each).
    # D phase: D_S(y), D_S(s_u), D_I(x'), D_I(x_fake) on data/detached inputs: forward + weight grads +
    # input grads of all but the first conv (3F − F1 each).
    discriminators = 2 * f_ds + 2 * f_di + 2 * (3 * f_ds - f1_ds) + 2 * (3 * f_di - f1_di)
    flops = paper_step_flops("cyclegan", "paper")
    assert flops == b * (generators + discriminators) == 4_898_329_600_000
    assert abs(flops - 5e12) / 5e12 < 0.03


def test_generator_forward_flops_match_a_hand_count_for_a_minimal_generator():
    # ngf=1, no residual blocks, 8×8 RGB → 11 classes. Convs: 7×7 3→1 at 8×8; 3×3 1→2 at 4×4;
    # 3×3 2→4 at 2×2; transposed 3×3 4→2 at 4×4 and 2→1 at 8×8; 7×7 1→11 at 8×8. FLOPs = 2·MACs.
    macs = 64 * 49 * 3 + 16 * 9 * 1 * 2 + 4 * 9 * 2 * 4 + 4 * 9 * 4 * 2 + 16 * 9 * 2 * 1 + 64 * 49 * 1 * 11
    assert generator_forward_flops(3, 11, 1, 0, 8, 8) == 2 * macs
