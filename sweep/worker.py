"""Inside Ray Train: one worker (a DDP rank) runs ``run_trial`` and reports each epoch to Train."""

from __future__ import annotations

import dataclasses
import shutil
import tempfile
import warnings
from pathlib import Path
from typing import Any

import ray
import ray.train
import ray.util

from cycleseg.model import checkpoint
from cycleseg.model.records import for_choices
from cycleseg.model.resolve import resolve_config
from cycleseg.model.trainer import run_trial


class RayReporter:
    """The trainer's Reporter under Ray Train: every rank reports, rank 0 carries the checkpoint.

    Tune gets each epoch's record without its test metrics (``for_choices``): schedulers and
    searchers choose on val only. The full record, test metrics included, is in the checkpoint's
    history, which the driver reads when the trial ends.
    """

    def __init__(self, rank: int, extra: dict[str, Any]) -> None:
        self.rank = rank
        self.extra = extra  # train_pg_id (for ReleaseTrainResources), gpus_held, resumed, world_size

    def report(self, metrics: dict[str, Any], checkpoint_dir: Path) -> None:
        ckpt = ray.train.Checkpoint.from_directory(str(checkpoint_dir)) if self.rank == 0 else None
        ray.train.report(for_choices({**metrics, **self.extra}), checkpoint=ckpt)


def train_worker(config: dict[str, Any]) -> None:
    """One Ray Train worker: ``run_trial`` on the sweep's shared prepared data, resumed from Train's checkpoint."""
    import torch

    cfg = resolve_config(config["cfg"])
    device = "cpu"
    if config["gpus_per_worker"] > 0 and torch.cuda.is_available() and cfg.device != "cpu":
        from ray.train.torch import get_device

        device = str(get_device())
    cfg = dataclasses.replace(cfg, device=device)
    data = ray.get(config["data"])  # zero-copy, read-only views of the object store; never written to
    warnings.filterwarnings("ignore", message="The given NumPy array is not writable")
    ckpt = ray.train.get_checkpoint()
    pg = ray.util.get_current_placement_group()
    context = ray.train.get_context()
    extra = {
        "train_pg_id": pg.id.hex() if pg is not None else None,
        "gpus_held": config["gpus_held"],
        "resumed": ckpt is not None,
        "world_size": context.get_world_size(),
    }
    with tempfile.TemporaryDirectory(prefix="cycleseg-") as tmp:
        workdir = Path(tmp)
        if ckpt is not None:  # a copy: the trainer replaces its checkpoint folder every epoch
            with ckpt.as_directory() as d:
                shutil.copytree(d, workdir / checkpoint.FOLDER)
        reporter = RayReporter(context.get_world_rank(), extra)
        run_trial(cfg, workdir=workdir, reporter=reporter, resume=ckpt is not None, data=data)
