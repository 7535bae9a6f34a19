"""What a sweep runs on Ray, once ``runner.run_sweep`` has checked everything: start or join Ray, decode each
dataset once into the object store, build (or restore) the Tuner with our searcher, scheduler and callbacks,
fit it, and print the summary. The only sweep module on the path of ``cycleseg sweep`` that imports Ray at
the top: the checks and the dry run answer without it.
"""

from __future__ import annotations

from typing import Any

import ray
from ray import tune

from ...model.config import TrialConfig
from ...model.errors import UserError
from .. import storage as store
from ..planning.dry_run import varying_fields
from ..planning.plan import PLAN_FILE, PLAN_FORMAT, Plan
from ..planning.spec import PARAM
from ..results import parquet as res
from ..results.summary import print_summary
from .callbacks import ConsoleCallback, ReleaseTrainResources, ResultsCallback, release_leftover_groups
from .cluster import Resources, alive_nodes, max_concurrent_trials, resolve_resources, start_ray
from .console import CONSOLE, RayLog
from .scheduler import CellASHA
from .search import CellSearcher
from .tracking import MlflowCallback
from .trial import TrialEnds, cycleseg_trial, retries, trial_dirname, trial_resources


def _prepare_data(configs: list[TrialConfig]) -> dict[str, Any]:
    """Decode each distinct dataset once (cached on disk) and share it with trials via the object store."""
    from ...model.data import cache_key, prepare_dataset

    refs: dict[str, Any] = {}
    for cfg in configs:
        key = cache_key(cfg)
        if key not in refs:
            data = prepare_dataset(cfg, progress=True)
            CONSOLE.line(f"data: {cfg.dataset} {data.info.height}x{data.info.width}, {len(data.train_images)} train / "
                         f"{len(data.val_images)} val / {len(data.test_images)} test images, decoded once for all "
                         "trials")
            refs[key] = ray.put(data)
    return refs


def execute(plan: Plan, name: str, root: str, sweep_dir: str, configs: list[TrialConfig], *, resume: bool,
            address: str | None, log: RayLog | None, mlflow: str | None, workers_per_trial: int,
            gpus_per_worker: float | None, cpus_per_worker: float, max_concurrent: int | None) -> int | None:
    """Start or join Ray, run the Tuner, print the summary; returns how many trials failed, None when the
    Tuner stopped before every trial ended (Ctrl-C)."""
    started = start_ray(address)
    try:
        nodes = alive_nodes()
        r = resolve_resources(workers_per_trial, gpus_per_worker, cpus_per_worker, nodes)
        concurrent = max_concurrent_trials(max_concurrent, r, nodes)
        if resume and plan.workers_per_trial and plan.workers_per_trial != r.workers:
            # one worker trains in Tune's trial process, more in a Train run: their checkpoints and retries differ
            raise UserError(f"--resume: sweep '{name}' runs {plan.workers_per_trial} worker(s) per trial; resume with "
                            f"--workers-per-trial {plan.workers_per_trial}")
        if resume and plan.max_concurrent and concurrent < plan.max_concurrent:
            # Tune restores the old cap (Tuner.restore takes no TuneConfig): more trials than fit would
            # wait for workers that never come
            raise UserError(f"--resume: sweep '{name}' runs {plan.max_concurrent} trials at once but this cluster "
                            f"fits {concurrent} with these options; resume on the cluster and options it started with")
        if len(nodes) > 1 and not store.is_uri(root):
            CONSOLE.line(f"note: {len(nodes)} nodes: --storage {root} must be a shared filesystem mounted at the same "
                         "path on every node (or an s3:// / gs:// URI)")
        if log is not None:  # the checks are done: the sweep starts, and its folder with it
            CONSOLE.line(f"Ray's own output: {log.place(sweep_dir)} (--verbose shows it here)")
        refs = _prepare_data(configs)
        settings = {"resources": r, "sweep_dir": sweep_dir}
        trainable = tune.with_resources(
            tune.with_parameters(cycleseg_trial, settings=settings, data_refs=refs), trial_resources(r)
        )
        CONSOLE.line(f"sweep '{name}': {plan.num_trials} trials, up to {concurrent} at once, each {r.workers} "
                     f"worker(s) × ({r.cpus_per_worker:g} CPU, {r.gpus_per_worker:g} GPU) -> {sweep_dir}")
        if resume and tune.Tuner.can_restore(sweep_dir):
            if plan.format != PLAN_FORMAT:  # Tune's pickled state names modules this version has moved
                raise UserError(f"--resume: sweep '{name}' was started by an earlier cycleseg, and the state Tune "
                                "saved names that version's modules; finish it with the version that started it (its "
                                "finished trials record their git commit), or start a new --name")
            tuner = tune.Tuner.restore(sweep_dir, trainable=trainable, resume_unfinished=True, resume_errored=True)
        else:  # a new sweep, or one whose driver died before Tune saved any state
            plan.max_concurrent, plan.workers_per_trial, plan.format = concurrent, r.workers, PLAN_FORMAT
            store.write_bytes(store.join(sweep_dir, PLAN_FILE), plan.to_json().encode())
            tuner = _new_tuner(plan, trainable, name, root, sweep_dir, r, concurrent, log is None, mlflow)
        tuner.fit()
        release_leftover_groups()
        if len(res.trial_ids(sweep_dir)) < plan.num_trials:
            return None
        return print_summary(sweep_dir, name)
    finally:
        if started:
            ray.shutdown()


def _new_tuner(plan: Plan, trainable: Any, name: str, root: str, sweep_dir: str, r: Resources,
               concurrent: int, verbose: bool, mlflow: str | None) -> tune.Tuner:
    search, early = plan.search_spec(), plan.scheduler_spec()
    scheduler = None
    if early is not None:
        max_t = early.max_t or max(c["epochs"] for c in plan.rows())
        scheduler = CellASHA(early, max_t)
    shown = [k for k in varying_fields(plan.rows()) if k != "seed"]
    if search is None:
        search_alg, param_space, num_samples = None, {PARAM: tune.grid_search(plan.trials)}, 1
    else:
        shown += list(search.params)
        search_alg, param_space = CellSearcher(plan.cells, search, plan.seeds, sweep_dir), {}
        num_samples = plan.num_trials
    ends = TrialEnds(name, sweep_dir, r.gpus)
    return tune.Tuner(
        trainable,
        param_space=param_space,
        tune_config=tune.TuneConfig(
            num_samples=num_samples, max_concurrent_trials=concurrent, scheduler=scheduler, search_alg=search_alg,
            trial_dirname_creator=trial_dirname,
            # the next single-worker trial starts in a process that has imported torch and cycleseg. Not for DDP:
            # a stopped DDP trial's process must die, or its Train run would go on training
            reuse_actors=r.in_trial_process,
        ),
        run_config=tune.RunConfig(
            name=name, storage_path=root, verbose=1 if verbose else 0,
            # one TrialEnds: whichever callback asks first when a trial ends writes its row, the other reads it
            callbacks=[ResultsCallback(ends), ReleaseTrainResources(),
                       ConsoleCallback(plan.num_trials, concurrent, [*shown, "seed"], ends),
                       *([MlflowCallback(mlflow, name, ends)] if mlflow else [])],
            failure_config=tune.FailureConfig(max_failures=retries(r)[0]),
        ),
    )
