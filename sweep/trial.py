"""The Tune trial: one configuration, trained in the trial's own process or by a ``TorchTrainer``.

A single-worker trial trains inside its Tune trial process (``tune_worker``): a Train run would add a
controller and a worker process, each importing torch, to every trial (BENCHMARKS.md, "Sweep overhead
per trial"), and Tune reuses the process for the next trial. A failed trial is restarted by Tune, up to
``MAX_RETRIES`` times, and goes on from its last checkpoint in ``train/<trial_id>/`` (``TrialCheckpoints``).

A DDP trial (several workers) builds and fits a ``TorchTrainer`` (the driver-function pattern of Ray
2.60, shared notes): ``TuneReportCallback`` forwards each rank-0 report to Tune, Train restarts the
worker group from its last checkpoint, and the Train run is named after the Tune trial, so a re-run
trial resumes from its own Train checkpoints.
"""

from __future__ import annotations

from typing import Any

from ray import tune

from ..model.data import cache_key
from ..model.resolve import resolve_config
from . import storage as store
from .cluster import Resources
from .worker import TRAIN_DIR, train_worker, tune_worker

MAX_RETRIES = 2  # restarts per trial (Tune's, or Train's worker-group ones), each from the trial's last checkpoint
DRIVER_RESOURCES = {"memory": 64 * 1024**2}  # a DDP trial's driver: no CPU, so its workers never wait on it


def trial_resources(r: Resources) -> dict[str, float]:
    """What one Tune trial reserves: the worker itself, or for DDP only its driver (Train reserves the workers)."""
    return r.per_worker() if r.in_trial_process else DRIVER_RESOURCES


def retries(r: Resources) -> tuple[int, int]:
    """(Tune's, Train's) restarts per trial: whoever runs the training restarts it."""
    return (MAX_RETRIES, 0) if r.in_trial_process else (0, MAX_RETRIES)


def cycleseg_trial(config: dict[str, Any], *, settings: dict[str, Any], data_refs: dict[str, Any]) -> None:
    """Train this trial's config: in this process (one worker) or with a ``TorchTrainer`` (DDP)."""
    r: Resources = settings["resources"]
    worker_config = {
        "cfg": config["trial"]["cfg"],
        "data": data_refs[cache_key(resolve_config(config["trial"]["cfg"]))],
        "gpus_per_worker": r.gpus_per_worker,
        "gpus_held": r.gpus,
    }
    if r.in_trial_process:
        tune_worker(worker_config, settings["sweep_dir"], tune.get_context().get_trial_id())
    else:
        _fit_trainer(worker_config, r, store.join(settings["sweep_dir"], TRAIN_DIR))


def _fit_trainer(worker_config: dict[str, Any], r: Resources, train_storage: str) -> None:
    import ray.train
    import torch.distributed as dist
    from ray.train.torch import TorchConfig, TorchTrainer
    from ray.tune.integration.ray_train import TuneReportCallback

    from .ray_compat import without_placement_group_cleaner

    class SweepTrainer(TorchTrainer):
        """A TorchTrainer without Train's placement-group cleaner (``ReleaseTrainResources`` does its job)."""

        def _create_default_callbacks(self) -> list:
            return without_placement_group_cleaner(super()._create_default_callbacks())

    trainer = SweepTrainer(
        train_worker,
        train_loop_config=worker_config,
        scaling_config=ray.train.ScalingConfig(
            num_workers=r.workers, use_gpu=r.gpus_per_worker > 0, resources_per_worker=r.per_worker()
        ),
        # gloo for CPU tensors, NCCL for CUDA ones where torch has it (a CPU build with logical GPUs has not)
        torch_config=TorchConfig(backend="cpu:gloo,cuda:nccl" if dist.is_nccl_available() else "gloo"),
        run_config=ray.train.RunConfig(
            name=tune.get_context().get_trial_id(),  # stable: a re-run trial resumes from its checkpoints
            storage_path=train_storage,
            callbacks=[TuneReportCallback()],
            failure_config=ray.train.FailureConfig(max_failures=retries(r)[1]),
            checkpoint_config=ray.train.CheckpointConfig(num_to_keep=1),
            logging_config=ray.train.LoggingConfig(log_level="WARNING"),  # not a line per report
        ),
    )
    trainer.fit()


def trial_dirname(trial: Any) -> str:
    return trial.trial_id
