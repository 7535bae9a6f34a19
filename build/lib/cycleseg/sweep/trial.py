"""The Tune trial: a driver function that builds one ``TorchTrainer`` for its config and fits it.

Ray 2.60 (shared notes): Train V2 cannot be handed to Tune directly, so each Tune trial builds and
fits the trainer itself and ``TuneReportCallback`` forwards each rank-0 report to Tune. The Train run
is named after the Tune trial, so a re-run trial resumes from its own Train checkpoints.
"""

from __future__ import annotations

from typing import Any

import ray.train
from ray import tune
from ray.train.torch import TorchConfig, TorchTrainer

from cycleseg.model.data import cache_key
from cycleseg.model.resolve import resolve_config
from cycleseg.sweep.cluster import Resources
from cycleseg.sweep.ray_compat import without_placement_group_cleaner
from cycleseg.sweep.worker import train_worker

TRAIN_MAX_FAILURES = 2  # worker-group restarts per trial, each from the trial's last checkpoint
DRIVER_RESOURCES = {"memory": 64 * 1024**2}  # the Tune driver trial: no CPU, so workers never wait on it


class SweepTrainer(TorchTrainer):
    """A TorchTrainer without Train's placement-group cleaner (``ReleaseTrainResources`` does its job)."""

    def _create_default_callbacks(self) -> list:
        return without_placement_group_cleaner(super()._create_default_callbacks())


def cycleseg_trial(config: dict[str, Any], *, settings: dict[str, Any], data_refs: dict[str, Any]) -> None:
    """Fit one ``TorchTrainer`` on this trial's config (driver-function pattern)."""
    import torch.distributed as dist
    from ray.tune.integration.ray_train import TuneReportCallback

    r: Resources = settings["resources"]
    cfg = resolve_config(config["trial"]["cfg"])
    trainer = SweepTrainer(
        train_worker,
        train_loop_config={
            "cfg": config["trial"]["cfg"],
            "data": data_refs[cache_key(cfg)],
            "gpus_per_worker": r.gpus_per_worker,
            "gpus_held": r.gpus,
        },
        scaling_config=ray.train.ScalingConfig(
            num_workers=r.workers, use_gpu=r.gpus_per_worker > 0, resources_per_worker=r.per_worker()
        ),
        # gloo for CPU tensors, NCCL for CUDA ones where torch has it (a CPU build with logical GPUs has not)
        torch_config=TorchConfig(backend="cpu:gloo,cuda:nccl" if dist.is_nccl_available() else "gloo"),
        run_config=ray.train.RunConfig(
            name=tune.get_context().get_trial_id(),  # stable: a re-run trial resumes from its checkpoints
            storage_path=settings["train_storage"],
            callbacks=[TuneReportCallback()],
            failure_config=ray.train.FailureConfig(max_failures=TRAIN_MAX_FAILURES),
            checkpoint_config=ray.train.CheckpointConfig(num_to_keep=1),
            logging_config=ray.train.LoggingConfig(log_level="WARNING"),  # not a line per report
        ),
    )
    trainer.fit()


def trial_dirname(trial: Any) -> str:
    return trial.trial_id
