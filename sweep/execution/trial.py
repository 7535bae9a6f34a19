"""A trial's life, start to end: where it trains, where its checkpoints live, how it resumes and retries, and
its row in the results when it ends.

Where it trains. A single-worker trial trains inside its Tune trial process (``tune_worker``): a Train run
would add a controller and a worker process, each importing torch, to every trial (BENCHMARKS.md, "Sweep
overhead per trial"), and Tune reuses the process for the next trial. A DDP trial (several workers) builds
and fits a ``TorchTrainer`` (the driver-function pattern of Ray 2.60, shared notes) whose ranks run
``train_worker``: ``TuneReportCallback`` forwards each rank-0 report to Tune, and the Train run is named
after the Tune trial, so a re-run trial resumes from its own Train checkpoints. Both homes run one body,
``_train``: ``run_trial`` on the trial's ``TrialSpec`` and the sweep's shared data.

Checkpoints. One format: the model's checkpoint folder (``model.checkpoint``), which both homes store
under ``<sweep>/train/<trial_id>/`` (``TrialCheckpoints`` for one worker, Train's own for DDP) and every
reader (a resumed trial, ``TrialEnds``, the searcher, reports) reads through ``history_from_checkpoint``.

Retries. Whoever runs the training restarts it (``retries``): Tune restarts a failed single-worker trial,
Train a DDP trial's worker group, up to ``MAX_RETRIES`` times, each from the trial's last checkpoint.

The end. ``TrialEnds`` writes a trial's Parquet row once, when the first callback asks, and hands the same
row to every callback that asks after it, so no callback depends on the order of Tune's callback list.
"""

from __future__ import annotations

import contextlib
import os
import shutil
import tempfile
import time
import warnings
from collections.abc import Callable, Iterator
from pathlib import Path
from typing import Any

import ray
from ray import tune

from ...model import checkpoint
from ...model.data import PreparedData, cache_key
from ...model.errors import UserError
from ...model.records import for_choices
from ...model.trainer import run_trial
from .. import storage
from ..planning.plan import PLAN_FILE
from ..planning.spec import PARAM, TrialFacts, TrialSpec, trial_spec
from ..results import parquet as res
from .cluster import Resources

MAX_RETRIES = 2  # restarts per trial (Tune's, or Train's worker-group ones), each from the trial's last checkpoint
DRIVER_RESOURCES = {"memory": 64 * 1024**2}  # a DDP trial's driver: no CPU, so its workers never wait on it
TRAIN_DIR = "train"  # <sweep>/train/<trial_id>/: each trial's checkpoints (a DDP trial's Train run)
Report = Callable[[dict[str, Any], Path], None]  # (an epoch's record for Tune, the local checkpoint folder)


def trial_resources(r: Resources) -> dict[str, float]:
    """What one Tune trial reserves: the worker itself, or for DDP only its driver (Train reserves the workers)."""
    return r.per_worker() if r.in_trial_process else DRIVER_RESOURCES


def retries(r: Resources) -> tuple[int, int]:
    """(Tune's, Train's) restarts per trial: whoever runs the training restarts it."""
    return (MAX_RETRIES, 0) if r.in_trial_process else (0, MAX_RETRIES)


def trial_dirname(trial: Any) -> str:
    return trial.trial_id


# --- the start --------------------------------------------------------------------------------


def cycleseg_trial(config: dict[str, Any], *, settings: dict[str, Any], data_refs: dict[str, Any]) -> None:
    """Tune's trainable: train this trial (its config resolved once, here) in this process or with a Train run."""
    r: Resources = settings["resources"]
    spec = trial_spec(config)
    run = {"data": data_refs[cache_key(spec.cfg)], "gpus_per_worker": r.gpus_per_worker, "gpus_held": r.gpus}
    if r.in_trial_process:
        tune_worker(spec, run, settings["sweep_dir"], tune.get_context().get_trial_id())
    else:
        _fit_trainer({PARAM: spec.to_param(), **run}, r, storage.join(settings["sweep_dir"], TRAIN_DIR))


# --- checkpoints ------------------------------------------------------------------------------


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


def checkpoint_location(path: str | None, sweep_dir: str) -> str | None:
    """The checkpoint Tune reports as a location we can read: Train gives the path inside its filesystem, so
    ``bucket/prefix/...`` for a sweep on object storage; it gets the sweep's scheme back."""
    if not path or storage.is_uri(path) or not storage.is_uri(sweep_dir):
        return path
    return f"{str(sweep_dir).split('://', 1)[0]}://{path}"


def history_from_checkpoint(path: str) -> list[dict[str, Any]]:
    """The per-epoch records kept in a stored checkpoint (local folder or URI): its ``history.json``."""
    data = storage.read_bytes(storage.join(path, checkpoint.HISTORY))
    return checkpoint.parse_history(data.decode(), storage.join(path, checkpoint.HISTORY)) if data else []


# --- training ---------------------------------------------------------------------------------


class RayReporter:
    """The trainer's Reporter under Ray: each epoch's record goes to Tune (directly or through Train).

    Tune gets the record without its test metrics (``for_choices``), with the trial's ``TrialFacts``:
    schedulers and searchers choose on val only. The full record, test metrics included, is in the
    checkpoint's history, which the driver reads when the trial ends.
    """

    def __init__(self, report: Report, facts: TrialFacts) -> None:
        self._report = report
        self.facts = facts

    def report(self, metrics: dict[str, Any], checkpoint_dir: Path) -> None:
        self._report(for_choices({**metrics, **self.facts.to_result()}), checkpoint_dir)


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


def _train(spec: TrialSpec, data: PreparedData, name: str, restore: contextlib.AbstractContextManager[Path] | None,
           device: str, report: Report, gpus_held: float, world_size: int = 1, train_pg_id: str | None = None) -> None:
    """``run_trial`` on the trial's config, resumed from the checkpoint folder ``restore`` gives, if any.

    ``data`` is the sweep's decoded dataset from the object store: zero-copy, read-only views, never written to.

    A trial restored after it had ended (its last epoch, or diverged: a driver killed before it recorded
    the end) trains no further and reports its last epoch once more, so Tune's last result is the true one.
    """
    cfg = spec.with_device(device).cfg
    warnings.filterwarnings("ignore", message="The given NumPy array is not writable")
    reporter = RayReporter(report, TrialFacts(gpus_held=gpus_held, resumed=restore is not None,
                                              world_size=world_size, train_pg_id=train_pg_id))
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


def _wants_gpu(spec: TrialSpec, run: dict[str, Any]) -> bool:
    import torch

    return run["gpus_per_worker"] > 0 and torch.cuda.is_available() and spec.cfg.device != "cpu"


def tune_worker(spec: TrialSpec, run: dict[str, Any], sweep_dir: str, trial_id: str) -> None:
    """A single-worker trial, in its Tune trial process: no Train controller or worker group to start."""
    if storage.read_bytes(storage.join(sweep_dir, PLAN_FILE)) is None:  # written by the driver before any trial
        raise UserError(f"this trial's node cannot see the sweep's storage {sweep_dir} (no {PLAN_FILE} there): give "
                        "--storage a filesystem shared by every node at the same path, or an s3:// / gs:// URI")
    checkpoints = TrialCheckpoints(storage.join(sweep_dir, TRAIN_DIR, trial_id))

    def report(metrics: dict[str, Any], checkpoint_dir: Path) -> None:
        tune.report({**metrics, "checkpoint_path": checkpoints.save(checkpoint_dir, int(metrics["epoch"]))})

    latest = checkpoints.latest()
    device = _trial_gpu() if _wants_gpu(spec, run) else "cpu"
    try:
        _train(spec, ray.get(run["data"]), trial_id, storage.local_copy(latest) if latest else None, device,
               report, run["gpus_held"])
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

    spec = trial_spec(config)
    device = "cpu"
    if _wants_gpu(spec, config):
        from ray.train.torch import get_device

        device = str(get_device())
    context = ray.train.get_context()
    rank = context.get_world_rank()

    def report(metrics: dict[str, Any], checkpoint_dir: Path) -> None:
        ckpt = ray.train.Checkpoint.from_directory(str(checkpoint_dir)) if rank == 0 else None
        ray.train.report(metrics, checkpoint=ckpt)

    pg = ray.util.get_current_placement_group()
    ckpt = ray.train.get_checkpoint()
    name = f"{context.get_experiment_name()}-rank{rank}"  # the Train run is named after the trial
    _train(spec, ray.get(config["data"]), name, ckpt.as_directory() if ckpt is not None else None, device, report,
           config["gpus_held"], context.get_world_size(), pg.id.hex() if pg is not None else None)


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


# --- the end ----------------------------------------------------------------------------------


def error_text(trial: Any) -> str:
    """The last line of the trial's traceback (``SomeError: message``)."""
    local = Path(trial.error_file) if trial.error_file else None  # staged locally before storage sync
    text = local.read_text() if local is not None and local.is_file() else trial.get_error()
    lines = [ln.strip() for ln in str(text or "").splitlines() if ln.strip()]
    return lines[-1][:1000] if lines else "failed without an error message"


class TrialEnds:
    """Each ended trial's row in the results (``cycleseg.sweep.results.parquet``), written once and shared.

    The first callback to ask when a trial ends (``finish``) writes its Parquet files; every later ask gets
    the same row, so callbacks that show or log the row need not run after the one that writes it. The
    per-epoch records come from the trial's last stored checkpoint (its ``history.json``): Tune's results
    hold no test metrics (choose on val, report on test), and a driver restarted mid-trial has seen only
    some of them. A trial that failed before its first checkpoint has no records.
    """

    def __init__(self, sweep: str, sweep_dir: str, default_gpus: float) -> None:
        self.sweep = sweep
        self.sweep_dir = sweep_dir
        self.default_gpus = default_gpus
        self._start: dict[str, float] = {}
        self._seen: dict[str, set[int]] = {}  # epochs this driver saw, to add the time of the others
        self._rows: dict[str, dict[str, Any]] = {}  # trials this driver has ended: their rows

    def __getstate__(self) -> dict[str, Any]:
        """Rows are this driver's: a resumed driver reads them again (a failed trial may since have run again)."""
        return {**self.__dict__, "_rows": {}}

    def started(self, trial: Any) -> None:
        self._start.setdefault(trial.trial_id, time.time())

    def reported(self, trial: Any, result: dict[str, Any]) -> None:
        if "epoch" in result:
            self._seen.setdefault(trial.trial_id, set()).add(int(result["epoch"]))

    def finish(self, trial: Any, error: str | None) -> dict[str, Any] | None:
        """The trial's row, written now if this is the first ask (None if it could not be read back)."""
        tid = trial.trial_id
        if tid in self._rows:
            return self._rows[tid]
        row = res.read_trial(self.sweep_dir, tid)
        if row is None or row["status"] == "failed":
            # a trial file is final: a trial that ended just before its driver was killed is finished once more
            # by the resumed sweep (Tune had not saved its end), with nothing new to add. A failed one is not: a
            # resumed sweep runs it again (resume_errored), and that run's outcome replaces it
            self._write(trial, error)
            row = res.read_trial(self.sweep_dir, tid)
        self._seen.pop(tid, None)
        self._start.pop(tid, None)
        if row is not None:
            self._rows[tid] = row
        return row

    def _write(self, trial: Any, error: str | None) -> None:
        tid = trial.trial_id
        spec = trial_spec(trial)
        seen = self._seen.get(tid, set())
        last = trial.last_result or {}
        ckpt = checkpoint_location(last.get("checkpoint_path"), self.sweep_dir)
        history = history_from_checkpoint(ckpt) if ckpt else []
        recovered = sum(m["epoch_seconds"] for m in history if m["epoch"] not in seen)
        start = self._start.get(tid)
        row = res.trial_row(
            sweep=self.sweep,
            trial_id=tid,
            cfg=spec.cfg,
            variant=spec.variant,
            history=history,
            error=error,
            wall_seconds=(time.time() - start if start is not None else 0.0) + recovered,
            gpus=TrialFacts.of(last, self.default_gpus).gpus_held,
            checkpoint_path=ckpt,
            versions=res.software_versions(),
        )
        res.write_trial(self.sweep_dir, row, history)
