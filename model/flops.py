"""The FLOP model, one for the sweep's ``--dry-run`` estimate and for the benchmark.

Two counts that agree (a test checks it): ``generator_forward_flops``, analytic from the layer shapes
(2 FLOPs per multiply-accumulate of each convolution), and ``count_step_flops`` / ``step_flops``,
what ``torch.utils.flop_counter.FlopCounterMode`` counts in one whole ``optimize_parameters`` (forward
and backward of every network). Norms, activations, losses and the Adam update are not counted
(memory-bound, few FLOPs). ``trial_flops`` is a whole trial: a step's FLOPs × its optimizer steps (the
equal budget of ``cycleseg.model.trainer.epoch_steps``), what ``--dry-run`` sums and grid sweeps order
their trials by (longest first). For the paper preset at VOC's 200×200 one G forward is 65.0 GFLOP and a
cyclegan step 4.90 TFLOP (the shared notes estimate ≈65 GFLOP and ≈5 TFLOP).
"""

from __future__ import annotations

import dataclasses
import functools
from typing import TYPE_CHECKING, Any

import torch
from torch import nn

if TYPE_CHECKING:
    from .config import TrialConfig


def conv_flops(layer: nn.Conv2d | nn.ConvTranspose2d, h: int, w: int) -> tuple[int, int, int]:
    """FLOPs (2 per multiply-accumulate, bias not counted) of one conv on an (h, w) input; (flops, h', w').

    A convolution does C_in/groups · C_out · k_h · k_w MACs per *output* pixel; a transposed one the
    same per *input* pixel (it scatters each input pixel through the kernel). ``FlopCounterMode``
    counts the same way.
    """
    kh, kw = layer.kernel_size
    (sh, sw), (ph, pw), (dh, dw) = layer.stride, layer.padding, layer.dilation
    macs_per_pixel = layer.in_channels // layer.groups * layer.out_channels * kh * kw
    if isinstance(layer, nn.ConvTranspose2d):
        oph, opw = layer.output_padding
        oh = (h - 1) * sh - 2 * ph + dh * (kh - 1) + oph + 1
        ow = (w - 1) * sw - 2 * pw + dw * (kw - 1) + opw + 1
        return 2 * macs_per_pixel * h * w, oh, ow
    oh = (h + 2 * ph - dh * (kh - 1) - 1) // sh + 1
    ow = (w + 2 * pw - dw * (kw - 1) - 1) // sw + 1
    return 2 * macs_per_pixel * oh * ow, oh, ow


_SHAPE_PRESERVING = (nn.InstanceNorm2d, nn.BatchNorm2d, nn.ReLU, nn.LeakyReLU, nn.Tanh, nn.Identity)


def chain_forward_flops(net: nn.Module, h: int, w: int) -> int:
    """Analytic conv FLOPs of one forward on one (h, w) image, for nets whose leaves run in order.

    True for ``ResnetGenerator``: its only branch is the residual skip, which keeps the shape.
    Raises on a leaf it cannot follow rather than guess.
    """
    total = 0
    for m in net.modules():
        if next(m.children(), None) is not None:
            continue  # containers: their leaves come next, in definition (= execution) order
        if isinstance(m, nn.Conv2d | nn.ConvTranspose2d):
            f, h, w = conv_flops(m, h, w)
            total += f
        elif isinstance(m, nn.ReflectionPad2d):
            left, right, top, bottom = m.padding
            h, w = h + top + bottom, w + left + right
        elif not isinstance(m, _SHAPE_PRESERVING):
            raise TypeError(f"chain_forward_flops cannot follow a {type(m).__name__}")
    return total


def generator_forward_flops(in_channels: int, out_channels: int, ngf: int, n_blocks: int, h: int, w: int) -> int:
    """Analytic FLOPs of one ``ResnetGenerator`` forward on one h×w image (built on the meta device)."""
    from .networks import ResnetGenerator

    with torch.device("meta"):
        g = ResnetGenerator(in_channels, out_channels, ngf=ngf, n_blocks=n_blocks)
    return chain_forward_flops(g, h, w)


def count_step_flops(method: Any, batch: Any) -> int:
    """FLOPs ``FlopCounterMode`` counts in one ``optimize_parameters`` (it also takes the step)."""
    from torch.utils.flop_counter import FlopCounterMode

    with FlopCounterMode(display=False) as counter:
        method.optimize_parameters(batch)
    return int(counter.get_total_flops())


def step_flops(cfg: TrialConfig) -> int:
    """Counted FLOPs of one train step of ``cfg`` at its dataset's shapes, on the meta device (no compute, no data).

    Shapes only: ``batch_size`` labeled (+ as many unlabeled) images. Hung's self-training term is
    counted as on (it is for the last 1 − hung_semi_start of a run; it adds no convolution FLOPs).
    Memoized: the seed, labeled fraction and epochs do not change a step.
    """
    return _step_flops(dataclasses.replace(cfg, seed=0, labeled_fraction=1.0, epochs=1))


@functools.lru_cache(maxsize=256)
def _step_flops(cfg: TrialConfig) -> int:
    from .data import dataset_info
    from .methods import METHODS, Batch

    info = dataset_info(cfg)
    h, w = info.height, info.width
    meta = torch.device("meta")
    m = METHODS.get(cfg.method)(dataclasses.replace(cfg, hung_semi_start=0.0), info, meta, total_iters=1)
    b = cfg.batch_size
    batch = Batch(x=torch.empty(b, info.in_channels, h, w, device=meta),
                  y=torch.zeros(b, h, w, dtype=torch.long, device=meta),
                  x_u=torch.empty(b, info.in_channels, h, w, device=meta) if m.uses_unlabeled else None)
    return count_step_flops(m, batch)


def trial_flops(cfg: TrialConfig, planned: bool = False) -> tuple[int, int] | None:
    """(optimizer steps, FLOPs) of a whole trial; None when its training-set size is not known without decoding
    (``planned``: the dataset's standard train list stands in for one not decoded yet, ``planned_train_size``)."""
    from .data import planned_train_size, train_size
    from .trainer import epoch_steps

    n = planned_train_size(cfg) if planned else train_size(cfg)
    if n is None:
        return None
    steps = epoch_steps(cfg, n) * cfg.epochs
    return steps, steps * step_flops(cfg)
