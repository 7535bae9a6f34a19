"""Where a trial trains: ``run_trial`` on the sweep's shared data, reporting each epoch to Ray.

Two homes, one body (``_train``): a single-worker trial trains inside its Tune trial process
(``tune_worker``: Tune restarts it, and it resumes from ``TrialCheckpoints``), a DDP trial in each Ray
Train worker (``train_worker``: Train restarts the worker group from its own last checkpoint).
"""

from __future__ import annotations

import contextlib
import dataclasses
import os
import shutil
import tempfile
import warnings
from collections.abc import Callable, Iterator
from pathlib import Path
from typing import Any

import ray

from ..model import checkpoint
from ..model.data import PreparedData
from ..model.errors import UserError
from ..model.records import for_choices
from ..model.resolve import resolve_config
from ..model.trainer import run_trial
from . import storage
from .plan import PLAN_FILE

TRAIN_DIR = "train"  # <sweep>/train/<trial_id>/: each trial's checkpoints (a DDP trial's Train run)
Report = Callable[[dict[str, Any], Path], None]  # (an epoch's record for Tune, the local checkpoint folder)


class RayReporter:
    """The trainer's Reporter under Ray: each epoch's record goes to Tune (directly or through Train).

    Tune gets the record without its test metrics (``for_choices``): schedulers and searchers choose
    on val only. The full record, test metrics included, is in the checkpoint's history, which the
    driver reads when the trial ends.
    """

    def __init__(self, report: Report, extra: dict[str, Any]) -> None:
        self._report = report
        self.extra = extra  # train_pg_id (for ReleaseTrainResources), gpus_held, resumed, world_size

    def report(self, metrics: dict[str, Any], checkpoint_dir: Path) -> None:
        self._report(for_choices({**metrics, **self.extra}), checkpoint_dir)


class TrialCheckpoints:
    """A single-worker trial's checkpoints in one folder (local or URI): ``<root>/checkpoint_epochNNNN/``.

    Each epoch's checkpoint is uploaded whole, then the ``latest`` file is rewritten to name it (one atomic
    write), then the others are deleted: whenever the trial dies, ``latest`` names a complete checkpoint.
    Tune does not track them: its keep-the-last-N checkpoints can be deleted while its experiment state,
    saved about once a second, still names one, and a resumed sweep then cannot restore the trial.
    """

    LATEST = "latest"
    PREFIX = "checkpoint_epoch"

    def __init__(self, root: str) -> None:
        self.root = root

    def latest(self) -> str | None:
        name = storage.read_bytes(storage.join(self.root, self.LATEST))
        return storage.join(self.root, name.decode().strip()) if name else None

    def save(self, local_dir: Path, epoch: int) -> str:
        """Store ``local_dir`` as epoch ``epoch``'s checkpoint; returns where it is."""
        name = f"{self.PREFIX}{epoch:04d}"
        dest = storage.join(self.root, name)
        if self.latest() == dest:  # stored and complete already (a finished trial run again reports it once more)
            return dest
        storage.upload_dir(local_dir, dest)
        storage.write_bytes(storage.join(self.root, self.LATEST), name.encode())
        for old in storage.list_dirs(self.root):  # the one before, and any a killed process left
            if old.startswith(self.PREFIX) and old != name:
                storage.delete_dir(storage.join(self.root, old))
        return dest


@contextlib.contextmanager
def _workdir(name: str) -> Iterator[Path]:
    """The trial's local work folder, named after it: a restarted trial replaces what its killed process left
    on this node (a paper-preset checkpoint is hundreds of MB), and a finished one removes it."""
    folder = Path(tempfile.gettempdir()) / f"cycleseg-{name}"
    shutil.rmtree(folder, ignore_errors=True)
    folder.mkdir(mode=0o700, parents=True)
    try:
        yield folder
    finally:
        shutil.rmtree(folder, ignore_errors=True)


def _train(config: dict[str, Any], data: PreparedData, name: str,
           restore: contextlib.AbstractContextManager[Path] | None, device: str, report: Report,
           extra: dict[str, Any]) -> None:
    """``run_trial`` on the trial's config, resumed from the checkpoint folder ``restore`` gives, if any.

    ``data`` is the sweep's decoded dataset from the object store: zero-copy, read-only views, never written to.

    A trial restored after it had ended (its last epoch, or diverged: a driver killed before it recorded
    the end) trains no further and reports its last epoch once more, so Tune's last result is the true one.
    """
    cfg = dataclasses.replace(resolve_config(config["cfg"]), device=device)
    warnings.filterwarnings("ignore", message="The given NumPy array is not writable")
    extra = {**extra, "gpus_held": config["gpus_held"], "resumed": restore is not None}
    reporter = RayReporter(report, extra)
    with _workdir(name) as workdir:
        ckpt = workdir / checkpoint.FOLDER
        if restore is not None:  # a copy: the trainer replaces its checkpoint folder every epoch
            with restore as d:
                shutil.copytree(d, ckpt)
            history = checkpoint.read_history(ckpt)
            if history and (history[-1]["epoch"] >= cfg.epochs or history[-1].get("diverged")):
                reporter.report(history[-1], ckpt)
                return
        run_trial(cfg, workdir=workdir, reporter=reporter, resume=restore is not None, data=data)


def _trial_gpu() -> str:
    """This process's GPU: Ray shows it only the ones the trial holds, unless told not to set CUDA_VISIBLE_DEVICES."""
    ids = [str(i) for i in ray.get_gpu_ids()]
    visible = [v.strip() for v in os.environ.get("CUDA_VISIBLE_DEVICES", "").split(",") if v.strip()]
    if not ids:
        return "cuda:0"
    return f"cuda:{visible.index(ids[0]) if ids[0] in visible else int(ids[0])}"


def _wants_gpu(config: dict[str, Any]) -> bool:
    import torch

    return config["gpus_per_worker"] > 0 and torch.cuda.is_available() and resolve_config(config["cfg"]).device != "cpu"


def tune_worker(config: dict[str, Any], sweep_dir: str, trial_id: str) -> None:
    """A single-worker trial, in its Tune trial process: no Train controller or worker group to start."""
    from ray import tune

    if storage.read_bytes(storage.join(sweep_dir, PLAN_FILE)) is None:  # written by the driver before any trial
        raise UserError(f"this trial's node cannot see the sweep's storage {sweep_dir} (no {PLAN_FILE} there): give "
                        "--storage a filesystem shared by every node at the same path, or an s3:// / gs:// URI")
    checkpoints = TrialCheckpoints(storage.join(sweep_dir, TRAIN_DIR, trial_id))

    def report(metrics: dict[str, Any], checkpoint_dir: Path) -> None:
        tune.report({**metrics, "checkpoint_path": checkpoints.save(checkpoint_dir, int(metrics["epoch"]))})

    latest = checkpoints.latest()
    device = _trial_gpu() if _wants_gpu(config) else "cpu"
    try:
        _train(config, ray.get(config["data"]), trial_id, storage.local_copy(latest) if latest else None, device,
               report, {"world_size": 1})
    finally:
        if device != "cpu":  # Tune reuses this process: the next trial starts with only its own GPU memory held
            import gc

            import torch

            gc.collect()
            torch.cuda.empty_cache()


def train_worker(config: dict[str, Any]) -> None:
    """One Ray Train worker (a DDP rank); rank 0 carries the checkpoint."""
    import ray.train
    import ray.util

    device = "cpu"
    if _wants_gpu(config):
        from ray.train.torch import get_device

        device = str(get_device())
    context = ray.train.get_context()
    rank = context.get_world_rank()

    def report(metrics: dict[str, Any], checkpoint_dir: Path) -> None:
        ckpt = ray.train.Checkpoint.from_directory(str(checkpoint_dir)) if rank == 0 else None
        ray.train.report(metrics, checkpoint=ckpt)

    pg = ray.util.get_current_placement_group()
    extra = {"train_pg_id": pg.id.hex() if pg is not None else None, "world_size": context.get_world_size()}
    ckpt = ray.train.get_checkpoint()
    name = f"{context.get_experiment_name()}-rank{rank}"  # the Train run is named after the trial
    _train(config, ray.get(config["data"]), name, ckpt.as_directory() if ckpt is not None else None, device, report,
           extra)
