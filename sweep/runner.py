"""Run a search space on Ray: each Tune trial is a driver function that fits one ``TorchTrainer``.

Layout under ``<storage>/<name>/``: ``sweep.json`` (the expanded plan, for ``--resume``), Tune's
experiment state and one folder per trial, ``train/<trial_id>/`` (Ray Train's checkpoints; the
run name is the trial id, so a re-run trial resumes from them), and the Parquet ``trials/`` and
``epochs/`` (sweep/results.py), written by ``ResultsCallback`` as each trial ends.

Ray 2.60 facts this follows (shared notes): Train V2 cannot be handed to Tune directly, so a Tune
trial builds and fits the trainer itself and ``TuneReportCallback`` forwards each report; the
driver trial must request some resource but never a CPU a worker needs (it asks for a little
memory); without the dashboard an early-stopped trial's Train placement group leaks, so
``ReleaseTrainResources`` removes it; concurrency is capped at what the workers can actually get.
"""

from __future__ import annotations

import json
import math
import os
import pickle
import shutil
import tempfile
import time
import warnings
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import ray
import ray.train
import ray.util
from ray import tune
from ray.train.torch import TorchTrainer
from ray.tune.search import Searcher

from model.config import FIELD_NAMES, TrialConfig, parse_set, resolve_config
from model.errors import UserError
from sweep import results as res
from sweep.space import Search, SearchSpace, load_space

TRAIN_MAX_FAILURES = 2  # worker-group restarts per trial, each from the trial's last checkpoint
DRIVER_RESOURCES = {"memory": 64 * 1024**2}  # the Tune driver trial: no CPU, so workers never wait on it
PLAN_FILE = "sweep.json"
TRAIN_DIR = "train"

# Set before ray.init (shared notes, "Overhead"): Train's controller polls its workers every 2 s by
# default; the preemption watcher and Train metrics start actors we do not use. Tune saves its
# experiment state every second, so a killed driver loses little; CLIReporter needs the old output.
RAY_ENV = {
    "RAY_TRAIN_HEALTH_CHECK_INTERVAL_S": "0.25",
    "RAY_TRAIN_ENABLE_PREEMPTION_WATCHER": "0",
    "RAY_TRAIN_METRICS_ENABLED": "0",
    "TUNE_GLOBAL_CHECKPOINT_S": "1",
    "RAY_AIR_NEW_OUTPUT": "0",
}
# What the trainer reports per epoch (ARCHITECTURE.md, Trainer) besides its loss_* terms.
EPOCH_KEYS = ("epoch", "val_miou", "val_pixel_acc", "val_class_iou", "lr", "epoch_seconds", "diverged")


@dataclass(frozen=True)
class Resources:
    """What one trial's Train workers hold."""

    workers: int
    cpus_per_worker: float
    gpus_per_worker: float

    @property
    def gpus(self) -> float:
        return self.workers * self.gpus_per_worker


# ----------------------------------------------------------------------------------------------
# Plan: the expanded trials (grid) or cells (search); stored, so --resume needs no space file


@dataclass
class Plan:
    space_path: str
    sets: dict[str, Any]
    num_trials: int
    trials: list[dict[str, Any]]  # grid: one TrialSpec.to_param() per trial; search: empty
    cells: list[dict[str, Any]]  # search: {"overrides", "variant"} per grid cell; grid: empty
    seeds: list[int]
    max_concurrent: int | None = None  # set when the sweep starts
    space: SearchSpace | None = field(default=None, compare=False)

    @classmethod
    def build(cls, space: SearchSpace, sets: dict[str, Any]) -> Plan:
        if space.search is None:
            trials, cells = [t.to_param() for t in space.expand(sets)], []
            num_trials = len(trials)
        else:
            trials, cells = [], [{"overrides": c.overrides, "variant": c.variant} for c in space.cells(sets)]
            num_trials = space.num_trials(sets)
        seeds = list(space.replicate_seeds(sets))
        return cls(str(space.path), sets, num_trials, trials, cells, seeds, space=space)

    def to_json(self) -> str:
        keys = ("space_path", "sets", "num_trials", "trials", "cells", "seeds", "max_concurrent")
        return json.dumps({k: getattr(self, k) for k in keys}, indent=1)

    @classmethod
    def from_json(cls, text: str) -> Plan:
        return cls(**json.loads(text))

    def load_space(self) -> SearchSpace:
        if self.space is None:
            self.space = load_space(self.space_path)
        return self.space

    def rows(self) -> list[dict[str, Any]]:
        """One resolved config dict per grid trial, or per search cell (before sampling and seeds)."""
        if self.trials:
            return [t["cfg"] for t in self.trials]
        return [resolve_config(c["overrides"]).to_dict() for c in self.cells]

    def variants(self) -> list[str | None]:
        return [t["variant"] for t in (self.trials or self.cells)]


def _plan_from_space(space_arg: str | Path | None, sets: dict[str, Any]) -> Plan:
    space = load_space(space_arg)
    for k in space.shadowed(sets):
        print(f"note: --set {k} is overridden in some trials by the space's grid, seeds, variants or search")
    return Plan.build(space, sets)


# ----------------------------------------------------------------------------------------------
# Inside Ray: the Train worker loop and the Tune driver function


class RayReporter:
    """The trainer's Reporter under Ray Train: every rank reports, rank 0 carries the checkpoint."""

    def __init__(self, rank: int, extra: dict[str, Any]) -> None:
        self.rank = rank
        self.extra = extra  # train_pg_id (for ReleaseTrainResources), gpus_held, resumed

    def report(self, metrics: dict[str, Any], checkpoint_dir: Path) -> None:
        checkpoint = ray.train.Checkpoint.from_directory(str(checkpoint_dir)) if self.rank == 0 else None
        ray.train.report({**metrics, **self.extra}, checkpoint=checkpoint)


def train_worker(config: dict[str, Any]) -> None:
    """One Ray Train worker (DDP rank): ``run_trial`` on the sweep's shared prepared data."""
    import dataclasses

    import torch

    from model.trainer import CHECKPOINT, run_trial

    cfg = resolve_config(config["cfg"])
    device = "cpu"
    if config["gpus_per_worker"] > 0 and torch.cuda.is_available() and cfg.device != "cpu":
        from ray.train.torch import get_device

        device = str(get_device())
    cfg = dataclasses.replace(cfg, device=device)
    data = ray.get(config["data"])  # zero-copy, read-only views of the object store; never written to
    warnings.filterwarnings("ignore", message="The given NumPy array is not writable")
    checkpoint = ray.train.get_checkpoint()
    pg = ray.util.get_current_placement_group()
    extra = {
        "train_pg_id": pg.id.hex() if pg is not None else None,
        "gpus_held": config["gpus_held"],
        "resumed": checkpoint is not None,
        "world_size": ray.train.get_context().get_world_size(),
    }
    with tempfile.TemporaryDirectory(prefix="cycleseg-") as tmp:
        workdir = Path(tmp)
        if checkpoint is not None:  # a copy: the trainer replaces its checkpoint folder every epoch
            with checkpoint.as_directory() as d:
                shutil.copytree(d, workdir / CHECKPOINT)
        reporter = RayReporter(ray.train.get_context().get_world_rank(), extra)
        run_trial(cfg, workdir=workdir, reporter=reporter, resume=checkpoint is not None, data=data)


class SweepTrainer(TorchTrainer):
    """A TorchTrainer without Train's PlacementGroupCleaner.

    Train starts that detached actor per run to remove the workers' group if the controller dies;
    it asks the state API (the dashboard) whether the controller lives, so without the dashboard it
    never finds out and lives on, a process per early-stopped trial, logging a warning a second.
    ``ReleaseTrainResources`` does its job here.
    """

    def _create_default_callbacks(self) -> list:
        return [c for c in super()._create_default_callbacks() if type(c).__name__ != "PlacementGroupCleanerCallback"]


def cycleseg_trial(config: dict[str, Any], *, settings: dict[str, Any], data_refs: dict[str, Any]) -> None:
    """The Tune trial: build a TorchTrainer for this trial's config and fit it (driver-function pattern)."""
    import torch.distributed as dist
    from ray.train.torch import TorchConfig
    from ray.tune.integration.ray_train import TuneReportCallback

    from model.datasets import cache_key

    r: Resources = settings["resources"]
    cfg = resolve_config(config["trial"]["cfg"])
    per_worker = {"CPU": r.cpus_per_worker, **({"GPU": r.gpus_per_worker} if r.gpus_per_worker else {})}
    trainer = SweepTrainer(
        train_worker,
        train_loop_config={
            "cfg": config["trial"]["cfg"],
            "data": data_refs[cache_key(cfg)],
            "gpus_per_worker": r.gpus_per_worker,
            "gpus_held": r.gpus,
        },
        scaling_config=ray.train.ScalingConfig(
            num_workers=r.workers, use_gpu=r.gpus_per_worker > 0, resources_per_worker=per_worker
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


# ----------------------------------------------------------------------------------------------
# Tune callbacks (run in the driver process)


def _error_text(trial: Any) -> str:
    """The last line of the trial's traceback (``SomeError: message``)."""
    local = Path(trial.error_file) if trial.error_file else None  # staged locally before storage sync
    text = local.read_text() if local is not None and local.is_file() else trial.get_error()
    lines = [ln.strip() for ln in str(text or "").splitlines() if ln.strip()]
    return lines[-1][:1000] if lines else "failed without an error message"


def history_from_checkpoint(path: str) -> list[dict[str, Any]]:
    """The per-epoch metrics the trainer keeps in its checkpoint (``state.pt`` → ``history``)."""
    import torch

    from model.trainer import STATE

    with ray.train.Checkpoint(path).as_directory() as d:
        state = torch.load(Path(d) / STATE, map_location="cpu", weights_only=False, mmap=True)
    return list(state["history"])


class ResultsCallback(tune.Callback):
    """Writes each trial's Parquet files when it ends (sweep/results.py).

    Per-epoch rows come from the Tune results seen by this driver; when some are missing (the
    driver was restarted mid-trial) the trial's checkpoint history supplies them.
    """

    def __init__(self, sweep: str, sweep_dir: str, default_gpus: float) -> None:
        self.sweep = sweep
        self.sweep_dir = sweep_dir
        self.default_gpus = default_gpus
        self._epochs: dict[str, dict[int, dict[str, Any]]] = {}
        self._start: dict[str, float] = {}

    def on_trial_start(self, iteration: int, trials: list, trial: Any, **info: Any) -> None:
        self._start.setdefault(trial.trial_id, time.time())

    def on_trial_result(self, iteration: int, trials: list, trial: Any, result: dict, **info: Any) -> None:
        if "epoch" in result:
            keep = {k: v for k, v in result.items() if k in EPOCH_KEYS or k.startswith("loss_")}
            self._epochs.setdefault(trial.trial_id, {})[int(result["epoch"])] = keep

    def on_trial_complete(self, iteration: int, trials: list, trial: Any, **info: Any) -> None:
        self.finish(trial, None)

    def on_trial_error(self, iteration: int, trials: list, trial: Any, **info: Any) -> None:
        self.finish(trial, _error_text(trial))

    def on_experiment_end(self, trials: list, **info: Any) -> None:
        """Trials that ended just before a driver was killed get their files at the resumed end."""
        done = res.trial_ids(self.sweep_dir)
        for t in trials:
            if t.status in ("TERMINATED", "ERROR") and t.trial_id not in done:
                self.finish(t, _error_text(t) if t.status == "ERROR" else None)

    def finish(self, trial: Any, error: str | None) -> None:
        tid = trial.trial_id
        cfg = resolve_config(trial.config["trial"]["cfg"])
        seen = self._epochs.pop(tid, {})
        last = trial.last_result or {}
        checkpoint = last.get("checkpoint_path")
        history = [seen[e] for e in sorted(seen)]
        recovered = 0.0
        if checkpoint and sorted(seen) != list(range(1, int(last.get("epoch", 0)) + 1)):
            history = history_from_checkpoint(checkpoint)
            recovered = sum(m["epoch_seconds"] for m in history if m["epoch"] not in seen)
        start = self._start.pop(tid, None)
        row = res.trial_row(
            sweep=self.sweep,
            trial_id=tid,
            cfg=cfg,
            variant=trial.config["trial"].get("variant"),
            history=history,
            error=error,
            wall_seconds=(time.time() - start if start is not None else 0.0) + recovered,
            gpus=float(last.get("gpus_held", self.default_gpus)),
            checkpoint_path=checkpoint,
            versions=res.software_versions(),
        )
        res.write_trial(self.sweep_dir, row, res.epoch_rows(self.sweep, tid, cfg, history))


def _placement_groups() -> list[Any]:
    """Every placement group as GCS keeps it (with its creator, which ``placement_group_table`` omits)."""
    from ray._private.state import state
    from ray.core.generated import gcs_pb2

    accessor = state._connect_and_get_accessor()
    return [gcs_pb2.PlacementGroupTableData.FromString(b) for b in accessor.get_placement_group_table()]


def _made_by_an_actor(group: Any) -> bool:
    """False for groups the driver process made (Tune's trial groups): their creator id is nil (all 0xff)."""
    return set(group.creator_actor_id) != {0xFF}


def _remove_groups(groups: list[Any]) -> None:
    from ray._raylet import PlacementGroupID
    from ray.core.generated import gcs_pb2
    from ray.util.placement_group import PlacementGroup

    for g in groups:
        if g.state != gcs_pb2.PlacementGroupTableData.REMOVED:
            ray.util.remove_placement_group(PlacementGroup(PlacementGroupID(g.placement_group_id)))


class ReleaseTrainResources(tune.Callback):
    """Free the Train placement groups of ended trials (shared notes: they leak without the dashboard).

    Workers report their placement group, which names the trial's Train controller (its creator).
    Once the trial has ended and that controller is dead, every group it created is removed.
    Not earlier: Tune kills a stopped trial's driver asynchronously, and a controller that sees its
    workers go restarts them in a new group, which would then leak.
    """

    def __init__(self) -> None:
        self._groups: dict[str, str] = {}  # trial id -> its workers' placement group (hex)
        self._controllers: set[bytes] = set()  # creators of ended trials' groups, not yet cleaned up
        self._last_check = 0.0

    def on_trial_result(self, iteration: int, trials: list, trial: Any, result: dict, **info: Any) -> None:
        if result.get("train_pg_id"):
            self._groups[trial.trial_id] = result["train_pg_id"]

    def on_trial_complete(self, iteration: int, trials: list, trial: Any, **info: Any) -> None:
        self._ended(trial.trial_id)

    def on_trial_error(self, iteration: int, trials: list, trial: Any, **info: Any) -> None:
        self._ended(trial.trial_id)

    def on_step_end(self, iteration: int, trials: list, **info: Any) -> None:
        if self._controllers and time.monotonic() - self._last_check > 1.0:
            self.release()

    def _ended(self, trial_id: str) -> None:
        pg = self._groups.pop(trial_id, None)
        if pg is not None:
            table = _placement_groups()
            self._controllers |= {g.creator_actor_id for g in table
                                  if g.placement_group_id.hex() == pg and _made_by_an_actor(g)}
            self.release(table)

    def release(self, table: list[Any] | None = None) -> None:
        self._last_check = time.monotonic()
        table = _placement_groups() if table is None else table
        dead = {g.creator_actor_id for g in table if g.creator_actor_id in self._controllers and g.creator_actor_dead}
        _remove_groups([g for g in table if g.creator_actor_id in dead])
        self._controllers -= dead


def release_leftover_groups(timeout_s: float = 20.0) -> None:
    """After the sweep: remove the groups this job's Train controllers left, once they are dead.

    The callback above misses a controller that dies after the last trial; this matters when the
    Ray instance outlives the sweep (a joined cluster frees a job's groups only when the job ends).
    """
    from ray.core.generated import gcs_pb2

    job = ray.get_runtime_context().get_job_id()
    deadline = time.monotonic() + timeout_s
    while True:
        left = [g for g in _placement_groups() if g.creator_job_id.hex() == job and _made_by_an_actor(g)
                and not g.is_detached and g.state != gcs_pb2.PlacementGroupTableData.REMOVED]
        _remove_groups([g for g in left if g.creator_actor_dead])
        if all(g.creator_actor_dead for g in left) or time.monotonic() > deadline:
            return
        time.sleep(0.5)


# ----------------------------------------------------------------------------------------------
# Search inside grid cells


class CellSearcher(Searcher):
    """One Optuna search (TPE or random) per grid cell; each suggestion runs once per seed.

    Tune takes one searcher and Optuna cannot take grid factors (shared notes), so this holds one
    ``OptunaSearch`` per cell. A suggestion's objective is the searched metric at each seed's best
    epoch, averaged over the seeds; Optuna is told once every seed has ended.
    """

    def __init__(self, cells: list[dict[str, Any]], search: Search, seeds: list[int]) -> None:
        from optuna.samplers import RandomSampler, TPESampler
        from ray.tune.search.optuna import OptunaSearch

        super().__init__(metric=search.metric, mode=search.mode)
        self.cells, self.search, self.seeds = cells, search, list(seeds)
        sampler = TPESampler if search.algorithm == "tpe" else RandomSampler
        self.inner = [
            OptunaSearch(
                space={p.name: p.tune_domain() for p in search.params},
                metric=search.metric,
                mode=search.mode,
                points_to_evaluate=[dict(p) for p in search.points_to_evaluate] or None,
                sampler=sampler(seed=search.seed + i),
            )
            for i in range(len(cells))
        ]
        self.drawn = [0] * len(cells)
        self.queue: list[tuple[int, str, dict[str, Any], int]] = []  # (cell, sample, params, seed)
        self.trials: dict[str, tuple[int, str, int]] = {}
        self.best: dict[str, float] = {}
        self.scores: dict[str, dict[int, float | None]] = {}
        self.turn = 0

    def suggest(self, trial_id: str) -> dict[str, Any] | str | None:
        if not self.queue:
            open_cells = [c for c in range(len(self.cells)) if self.drawn[c] < self.search.num_samples]
            if not open_cells:
                return Searcher.FINISHED
            cell = open_cells[self.turn % len(open_cells)]  # round robin: every cell's search advances
            self.turn += 1
            sample = f"cell{cell}-sample{self.drawn[cell]}"
            params = self.inner[cell].suggest(sample)
            if params is None:
                return None
            self.drawn[cell] += 1
            self.scores[sample] = {}
            self.queue = [(cell, sample, params, seed) for seed in self.seeds]
        cell, sample, params, seed = self.queue.pop(0)
        self.trials[trial_id] = (cell, sample, seed)
        c = self.cells[cell]
        cfg = resolve_config({**c["overrides"], **params, "seed": seed})
        return {"trial": {"cfg": cfg.to_dict(), "variant": c["variant"]}}

    def on_trial_result(self, trial_id: str, result: dict[str, Any]) -> None:
        v = result.get(self.search.metric)
        if isinstance(v, int | float) and math.isfinite(v):
            old = self.best.get(trial_id)
            if old is None or (v > old if self.search.mode == "max" else v < old):
                self.best[trial_id] = v

    def on_trial_complete(self, trial_id: str, result: dict[str, Any] | None = None, error: bool = False) -> None:
        if trial_id not in self.trials:
            return
        if result:
            self.on_trial_result(trial_id, result)
        cell, sample, seed = self.trials.pop(trial_id)
        score = self.best.pop(trial_id, None)
        self.scores[sample][seed] = None if error else score
        if len(self.scores[sample]) == len(self.seeds):
            vals = [v for v in self.scores.pop(sample).values() if v is not None]
            if vals:
                self.inner[cell].on_trial_complete(sample, {self.search.metric: sum(vals) / len(vals)})
            else:
                self.inner[cell].on_trial_complete(sample, None, error=True)

    def save(self, checkpoint_path: str) -> None:
        with open(checkpoint_path, "wb") as f:
            pickle.dump(self.__dict__.copy(), f)

    def restore(self, checkpoint_path: str) -> None:
        with open(checkpoint_path, "rb") as f:
            self.__dict__.update(pickle.load(f))


# ----------------------------------------------------------------------------------------------
# Cluster, resources, data


def start_ray(address: str | None = None, **init_kwargs: Any) -> bool:
    """Join ``address`` or start an embedded local Ray (``init_kwargs``: e.g. num_cpus), with
    ``RAY_ENV`` applied; False when Ray is already up in this process (then it is used as is)."""
    env = {k: os.environ.get(k, v) for k, v in RAY_ENV.items()}
    os.environ.update(env)
    if ray.is_initialized():
        return False
    try:
        ray.init(address=address or "local", include_dashboard=False, runtime_env={"env_vars": env}, **init_kwargs)
    except ConnectionError as e:
        raise UserError(f"cannot reach the Ray cluster at '{address}' ({e}); check --address / RAY_ADDRESS") from None
    return True


def trials_that_fit(nodes: list[dict[str, float]], r: Resources) -> int:
    """How many trials' workers the cluster holds at once (whole workers per node)."""
    slots = 0
    for node in nodes:
        fits = [math.floor(node.get("CPU", 0.0) / r.cpus_per_worker + 1e-9)]
        if r.gpus_per_worker > 0:
            fits.append(math.floor(node.get("GPU", 0.0) / r.gpus_per_worker + 1e-9))
        slots += min(fits)
    return slots // r.workers


def resolve_resources(
    workers: int, gpus_per_worker: float | None, cpus_per_worker: float, nodes: list[dict[str, float]]
) -> Resources:
    """Check the per-trial options; ``gpus_per_worker`` None = 1 if the cluster has GPUs, else 0."""
    if workers < 1:
        raise UserError(f"--workers-per-trial must be >= 1, got {workers}")
    if not cpus_per_worker > 0:
        raise UserError(f"--cpus-per-worker must be > 0, got {cpus_per_worker}")
    if gpus_per_worker is None:
        gpus_per_worker = 1.0 if sum(n.get("GPU", 0.0) for n in nodes) > 0 else 0.0
    if gpus_per_worker < 0:
        raise UserError(f"--gpus-per-worker must be >= 0, got {gpus_per_worker}")
    return Resources(workers, cpus_per_worker, gpus_per_worker)


def max_concurrent_trials(requested: int | None, r: Resources, nodes: list[dict[str, float]]) -> int:
    """What the cluster fits (more would wait forever for workers: shared notes, deadlock), at most ``requested``."""
    fit = trials_that_fit(nodes, r)
    if fit == 0:
        cpus = sum(n.get("CPU", 0.0) for n in nodes)
        gpus = sum(n.get("GPU", 0.0) for n in nodes)
        raise UserError(
            f"one trial needs {r.workers} worker(s) × ({r.cpus_per_worker:g} CPU, {r.gpus_per_worker:g} GPU) but the "
            f"cluster has {cpus:g} CPUs and {gpus:g} GPUs in {len(nodes)} node(s); lower --workers-per-trial, "
            "--cpus-per-worker or --gpus-per-worker (0 trains on CPU)"
        )
    if requested is not None and requested < 1:
        raise UserError(f"--max-concurrent must be >= 1, got {requested}")
    if requested is not None and requested > fit:
        print(f"note: --max-concurrent {requested} lowered to {fit}: the cluster fits {fit} trial(s) at once")
    return min(requested or fit, fit)


def _prepare_data(configs: list[TrialConfig]) -> dict[str, Any]:
    """Decode each distinct dataset once (cached on disk) and share it with trials via the object store."""
    from model.datasets import cache_key, prepare_dataset

    refs: dict[str, Any] = {}
    for cfg in configs:
        key = cache_key(cfg)
        if key not in refs:
            data = prepare_dataset(cfg, progress=True)
            print(f"data: {cfg.dataset} {data.info.height}x{data.info.width}, {len(data.train_images)} train / "
                  f"{len(data.val_images)} val images, decoded once for all trials")
            refs[key] = ray.put(data)
    return refs


# ----------------------------------------------------------------------------------------------
# Dry run


def varying_fields(configs: list[dict[str, Any]]) -> list[str]:
    """Config fields whose value differs between ``configs``."""
    return [k for k in FIELD_NAMES if len({json.dumps(c[k]) for c in configs}) > 1]


def gis_forward_flops(cfg: TrialConfig) -> int:
    """FLOPs of one G_IS forward pass on one image (counted on the meta device: nothing runs)."""
    import torch
    from torch.utils.flop_counter import FlopCounterMode

    from model.datasets import dataset_info
    from model.networks import create_network

    info = dataset_info(cfg)
    with torch.device("meta"):
        net = create_network("resnet_generator", in_channels=info.in_channels, out_channels=info.num_classes,
                             ngf=cfg.ngf, n_blocks=cfg.n_blocks, out="logits")
        x = torch.empty(1, info.in_channels, info.height, info.width)
    with FlopCounterMode(display=False) as counter:
        net(x)
    return counter.get_total_flops()


def _train_images(cfg: TrialConfig) -> int | None:
    """Training images per epoch without decoding: digits from the config, others from the cache."""
    import zipfile

    import numpy as np

    from model.datasets import cache_path

    if cfg.dataset == "digits":
        return cfg.digits_train
    try:
        with zipfile.ZipFile(cache_path(cfg)) as zf, zf.open("train_images.npy") as f:
            version = np.lib.format.read_magic(f)
            read = np.lib.format.read_array_header_1_0 if version == (1, 0) else np.lib.format.read_array_header_2_0
            return int(read(f)[0][0])
    except (OSError, KeyError, ValueError, UserError, zipfile.BadZipFile):
        return None


def _print_table(header: list[str], rows: list[list[str]]) -> None:
    widths = [max(len(r[j]) for r in [header, *rows]) for j in range(len(header))]
    for r in [header, *rows]:
        print("  " + "  ".join(v.ljust(w) for v, w in zip(r, widths, strict=True)).rstrip())


def print_dry_run(plan: Plan) -> None:
    """The expanded trials (or search cells) as a table, and an estimate of the compute."""
    space = plan.load_space()
    search = space.search
    rows, variants = plan.rows(), plan.variants()
    cols = [k for k in varying_fields(rows) if search is None or k != "seed"]
    if search is None:
        print(f"{space.path}: {plan.num_trials} trials ({len(plan.seeds)} seed(s) × "
              f"{plan.num_trials // len(plan.seeds)} configurations; identical resolved configs run once)")
    else:
        print(f"{space.path}: {plan.num_trials} trials = {len(rows)} grid cell(s) × {search.num_samples} "
              f"{search.algorithm} samples of {', '.join(p.name for p in search.params)} × seeds {plan.seeds}")
    if space.scheduler is not None:
        s = space.scheduler
        print(f"early stopping: ASHA on {s.metric} ({s.mode}), grace {s.grace_period} epoch(s), "
              f"reduction factor {s.reduction_factor}")
    show_variant = any(variants)
    header = ["#", *(["variant"] if show_variant else []), *cols, "epochs", "config_hash"]
    table = []
    for i, (cfg, variant) in enumerate(zip(rows, variants, strict=True)):
        h = resolve_config(cfg).hash(exclude=() if search is None else ("seed",))
        table.append([str(i), *([variant or ""] if show_variant else []), *(str(cfg[k]) for k in cols),
                      str(cfg["epochs"]), h])
    _print_table(header, table)
    # Compute: G_IS forward FLOPs × training images × epochs over all trials, a lower bound (a
    # training step runs several networks forward and backward).
    reps = 1 if search is None else search.num_samples * len(plan.seeds)
    total, epochs, unknown = 0.0, 0, 0
    flops: dict[tuple, int] = {}
    for cfg in map(resolve_config, rows):
        epochs += cfg.epochs * reps
        key = (cfg.dataset, cfg.image_height, cfg.image_width, cfg.ngf, cfg.n_blocks)
        if key not in flops:
            flops[key] = gis_forward_flops(cfg)
        n = _train_images(cfg)
        if n is None:
            unknown += 1
        else:
            total += flops[key] * n * cfg.epochs * reps
    per_image = ", ".join(f"{v / 1e9:.3g}" for v in sorted(set(flops.values())))
    print(f"compute: {epochs} trial-epochs; G_IS forward {per_image} GFLOP per image"
          + (f"; {total / 1e12:.3g} TFLOP of G_IS forwards over all training images and epochs" if total else "")
          + (f" ({unknown} config(s) with a not yet prepared on-disk dataset not counted)" if unknown else "")
          + "; plus ~10 s of Ray start-up per trial")


# ----------------------------------------------------------------------------------------------
# The sweep


def _locations(storage: str, name: str) -> tuple[str, str]:
    """(storage root, sweep folder) as Tune wants them: absolute local paths, or URIs as given."""
    root = storage.rstrip("/") if res.is_uri(storage) else str(res.local_path(storage).expanduser().resolve())
    return root, f"{root}/{name}"


def _read_plan(sweep_dir: str) -> Plan | None:
    data = res.read_bytes(f"{sweep_dir}/{PLAN_FILE}")
    return Plan.from_json(data.decode()) if data is not None else None


def run_sweep(
    space: str | Path | None,
    *,
    sets: list[str] | tuple[str, ...] = (),
    name: str | None = None,
    storage: str = "runs",
    address: str | None = None,
    workers_per_trial: int = 1,
    gpus_per_worker: float | None = None,
    cpus_per_worker: float = 1.0,
    max_concurrent: int | None = None,
    dry_run: bool = False,
    resume: bool = False,
) -> str | None:
    """Run a sweep, or with ``resume`` finish one; returns the sweep folder (None for a dry run).

    ``space`` None is the demo space, or with ``resume`` the plan the sweep was started with.
    """
    overrides = parse_set(list(sets))
    if resume:
        if not name:
            raise UserError("--resume needs --name: the sweep to finish (a folder under --storage)")
        root, sweep_dir = _locations(storage, name)
        plan = _read_plan(sweep_dir)
        if plan is None:
            raise UserError(f"--resume: no sweep '{name}' in {root} (no {PLAN_FILE}); check --name and --storage")
        if space is not None or overrides:
            given = _plan_from_space(space, overrides)
            if (given.trials, given.cells, given.seeds) != (plan.trials, plan.cells, plan.seeds):
                raise UserError(
                    f"--resume: these trials differ from the ones sweep '{name}' started with; "
                    "resume with only --name (the stored plan is used) or start a new --name"
                )
    else:
        plan = _plan_from_space(space, overrides)
        name = name or plan.load_space().name
        root, sweep_dir = _locations(storage, name)
    if dry_run:
        print_dry_run(plan)
        return None
    if not resume and _read_plan(sweep_dir) is not None:
        raise UserError(f"sweep '{name}' already exists in {root}; finish it with --resume --name {name} "
                        "or choose another --name")
    configs = [resolve_config(c) for c in plan.rows()]
    if gpus_per_worker == 0 and any(c.device.startswith("cuda") for c in configs):
        raise UserError("a trial sets device=cuda but --gpus-per-worker is 0; give workers GPUs or set device=auto")

    started = start_ray(address)
    try:
        nodes = [n["Resources"] for n in ray.nodes() if n.get("Alive")]
        r = resolve_resources(workers_per_trial, gpus_per_worker, cpus_per_worker, nodes)
        concurrent = max_concurrent_trials(max_concurrent, r, nodes)
        if resume and plan.max_concurrent and concurrent < plan.max_concurrent:
            # Tune restores the old cap (Tuner.restore takes no TuneConfig): more trials than fit would
            # wait for workers that never come
            raise UserError(f"--resume: sweep '{name}' runs {plan.max_concurrent} trials at once but this cluster "
                            f"fits {concurrent} with these options; resume on the cluster and options it started with")
        if len(nodes) > 1 and not res.is_uri(root):
            print(f"note: {len(nodes)} nodes: --storage {root} must be a shared filesystem mounted at the same "
                  "path on every node (or an s3:// / gs:// URI)")
        refs = _prepare_data(configs)
        settings = {"resources": r, "train_storage": f"{sweep_dir}/{TRAIN_DIR}"}
        trainable = tune.with_resources(
            tune.with_parameters(cycleseg_trial, settings=settings, data_refs=refs), DRIVER_RESOURCES
        )
        print(f"sweep '{name}': {plan.num_trials} trials, up to {concurrent} at once, each {r.workers} worker(s) × "
              f"({r.cpus_per_worker:g} CPU, {r.gpus_per_worker:g} GPU) -> {sweep_dir}")
        if resume and tune.Tuner.can_restore(sweep_dir):
            tuner = tune.Tuner.restore(sweep_dir, trainable=trainable, resume_unfinished=True, resume_errored=True)
        else:  # a new sweep, or one whose driver died before Tune saved any state
            plan.max_concurrent = concurrent
            res.write_bytes(f"{sweep_dir}/{PLAN_FILE}", plan.to_json().encode())
            tuner = _new_tuner(plan, trainable, name, root, sweep_dir, r, concurrent)
        tuner.fit()
        release_leftover_groups()
        print_summary(sweep_dir, name)
    finally:
        if started:
            ray.shutdown()
    return sweep_dir


def _new_tuner(plan: Plan, trainable: Any, name: str, root: str, sweep_dir: str, r: Resources,
               concurrent: int) -> tune.Tuner:
    from ray.tune.schedulers import ASHAScheduler

    space = plan.load_space()
    scheduler = None
    if space.scheduler is not None:
        s = space.scheduler
        max_t = s.max_t or max(c["epochs"] for c in plan.rows())
        scheduler = ASHAScheduler(time_attr="epoch", metric=s.metric, mode=s.mode, max_t=max_t,
                                  grace_period=s.grace_period, reduction_factor=s.reduction_factor)
    shown = [k for k in varying_fields(plan.rows()) if k != "seed"]
    if space.search is not None:
        shown += [p.name for p in space.search.params]
    params = {f"trial/cfg/{k}": k for k in [*shown, "seed"]}
    if any(plan.variants()):
        params["trial/variant"] = "variant"
    reporter = tune.CLIReporter(
        parameter_columns=params,
        metric_columns={"epoch": "epoch", "val_miou": "val mIoU", "val_pixel_acc": "pixel acc"},
        max_report_frequency=30,
    )
    if space.search is None:
        search_alg, param_space, num_samples = None, {"trial": tune.grid_search(plan.trials)}, 1
    else:
        search_alg, param_space, num_samples = CellSearcher(plan.cells, space.search, plan.seeds), {}, plan.num_trials
    return tune.Tuner(
        trainable,
        param_space=param_space,
        tune_config=tune.TuneConfig(
            num_samples=num_samples, max_concurrent_trials=concurrent, scheduler=scheduler, search_alg=search_alg,
            trial_dirname_creator=trial_dirname,
        ),
        run_config=tune.RunConfig(
            name=name, storage_path=root, progress_reporter=reporter, verbose=1,
            callbacks=[ResultsCallback(name, sweep_dir, r.gpus), ReleaseTrainResources()],
            failure_config=tune.FailureConfig(max_failures=0),  # Train retries workers itself
        ),
    )


# ----------------------------------------------------------------------------------------------
# End of sweep


def print_summary(sweep_dir: str, name: str) -> None:
    """Trials by status, the best configuration by mean best val mIoU over seeds, where the Parquet is."""
    from sweep.export import rank_configs

    df = res.read_table(sweep_dir).to_pandas()
    print()
    if df.empty:
        print(f"sweep '{name}': no trial finished")
        return
    counts = df["status"].value_counts()
    print(f"sweep '{name}': {len(df)} trials: " + ", ".join(f"{counts[s]} {s}" for s in res.STATUSES if s in counts))
    done = df[df["status"] == "completed"]
    if not done.empty:
        best = rank_configs(done, "best_val_miou", "max", per_seed=False).iloc[0]
        row = done[done["group_hash"] == best["group_hash"]].iloc[0]
        cfg = json.loads(row["config_json"])
        varying = [k for k in varying_fields([json.loads(c) for c in df["config_json"]]) if k != "seed"]
        desc = " ".join(f"{k}={cfg[k]}" for k in varying) or "(one configuration)"
        variant = f" [variant {row['variant']}]" if isinstance(row["variant"], str) else ""
        print(f"best configuration: {desc}{variant}, best val mIoU {best['mean']:.4f} ± {best['std']:.4f} "
              f"(mean ± sd over {int(best['n'])} seed(s))")
    print(f"results: {sweep_dir}/{res.TRIALS_DIR}/ (one row per trial), {sweep_dir}/{res.EPOCHS_DIR}/ "
          f"(one row per epoch); e.g. pandas.read_parquet('{sweep_dir}/{res.TRIALS_DIR}')")
    print(f"export the best config: cycleseg best-config {sweep_dir} -o best.yaml")
