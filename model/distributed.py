"""Data parallelism inside one trial (several Ray Train workers = DDP ranks): plain torch.distributed.

Each rank takes its slice of every batch (``EpochBatches``), every trained network is wrapped in
``DistributedDataParallel`` (gradients averaged across ranks during backward, parameters broadcast
from rank 0 at wrap time), the validation confusion matrix is summed across ranks, and only rank 0
writes files. Nothing here knows about Ray: Ray Train only sets up the process group.
"""

from __future__ import annotations

import torch
import torch.distributed as dist
from torch import nn
from torch.nn.parallel import DistributedDataParallel

from .methods import Method


def rank_world() -> tuple[int, int]:
    """(rank, world size); (0, 1) outside a process group."""
    if dist.is_available() and dist.is_initialized():
        return dist.get_rank(), dist.get_world_size()
    return 0, 1


def distribute(method: Method) -> None:
    """Wrap the method's networks in DDP when running under a process group of more than one rank."""
    if rank_world()[1] == 1:
        return
    device = method.device

    def wrap(net: nn.Module) -> nn.Module:
        return DistributedDataParallel(net, device_ids=[device] if device.type == "cuda" else None)

    method.distribute(wrap)


def sum_across_ranks(t: torch.Tensor) -> torch.Tensor:
    """``t`` summed over every rank, in place (a no-op for one rank)."""
    if rank_world()[1] > 1:
        dist.all_reduce(t)
    return t
