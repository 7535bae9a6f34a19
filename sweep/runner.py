"""Run a search space on Ray Tune: one trial per configuration (``cycleseg.sweep.trial``).

Layout under ``<storage>/<name>/``: ``sweep.json`` (the plan, for ``--resume``), Tune's experiment
state and one folder per trial, ``train/<trial_id>/`` (the trial's checkpoints: ``TrialCheckpoints``, or
a DDP trial's Train run, named by the trial id; a re-run trial resumes from them), and the Parquet
``trials/`` and ``epochs/`` (``cycleseg.sweep.results``), written by ``ResultsCallback`` as each trial ends.
"""

from __future__ import annotations

from dataclasses import dataclass
from pathlib import Path
from typing import Any

import ray
from ray import tune

from cycleseg.model.config import TrialConfig
from cycleseg.model.errors import Interrupted, UserError
from cycleseg.model.io import check_name
from cycleseg.model.resolve import parse_set, resolve_config
from cycleseg.sweep import results as res
from cycleseg.sweep import storage as store
from cycleseg.sweep.callbacks import ReleaseTrainResources, ResultsCallback, release_leftover_groups
from cycleseg.sweep.cluster import (
    Resources,
    alive_nodes,
    check_address_syntax,
    check_resource_options,
    max_concurrent_trials,
    resolve_resources,
    start_ray,
)
from cycleseg.sweep.console import CONSOLE, ConsoleCallback, RayLog, ray_output_away
from cycleseg.sweep.dry_run import print_dry_run, varying_fields
from cycleseg.sweep.plan import PLAN_FILE, Plan, read_plan
from cycleseg.sweep.scheduler import CellASHA
from cycleseg.sweep.search import CellSearcher
from cycleseg.sweep.summary import print_summary
from cycleseg.sweep.tracking import MlflowCallback, check_tracking
from cycleseg.sweep.trial import cycleseg_trial, retries, trial_dirname, trial_resources


def locations(storage: str, name: str) -> tuple[str, str]:
    """(storage root, sweep folder) as Tune wants them: absolute local paths, or URIs as given."""
    root = storage.rstrip("/") if store.is_uri(storage) else str(store.local_path(storage).expanduser().resolve())
    return root, f"{root}/{name}"


def _read_plan(sweep_dir: str) -> Plan | None:
    return read_plan(sweep_dir, "the sweep cannot be resumed from it: start a new --name (finished trials stay "
                                "readable in their trials/ files)")


def _prepare_data(configs: list[TrialConfig]) -> dict[str, Any]:
    """Decode each distinct dataset once (cached on disk) and share it with trials via the object store."""
    from cycleseg.model.data import cache_key, prepare_dataset

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


def _data_problems(configs: list[TrialConfig]) -> list[str]:
    """Why each distinct dataset of ``configs`` could not be loaded here (checked before Ray starts)."""
    from cycleseg.model.data import check_source

    problems: list[str] = []
    for cfg in configs:
        try:
            check_source(cfg)
        except UserError as e:
            if str(e) not in problems:
                problems.append(str(e))
    return problems


@dataclass(frozen=True)
class SweepOutcome:
    """Where a finished sweep's files are, and how many of its trials failed after their retries."""

    sweep_dir: str
    failed: int


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
    verbose: bool = False,
    mlflow: str | None = None,
    command: str = "sweep",
) -> SweepOutcome | None:
    """Run a sweep, or with ``resume`` finish one; returns its outcome (None for a dry run).

    ``space`` None is the demo space, or with ``resume`` the plan the sweep was started with.
    """
    store.check_storage_option(storage)  # first: everything after may read it
    overrides = parse_set(list(sets))
    check_resource_options(workers_per_trial, gpus_per_worker, cpus_per_worker, max_concurrent)
    check_tracking(mlflow)
    if name is not None:
        check_name(name, "--name")
    if resume:
        if not name:
            raise UserError("--resume needs --name: the sweep to finish (a folder under --storage)")
        root, sweep_dir = locations(storage, name)
        plan = _read_plan(sweep_dir)
        if plan is None:
            raise UserError(f"--resume: no sweep '{name}' in {root} (no {PLAN_FILE}); check --name and --storage")
        if space is not None or overrides:
            given = Plan.from_space(space, overrides)
            if not given.same_trials(plan):
                raise UserError(
                    f"--resume: these trials differ from the ones sweep '{name}' started with; "
                    "resume with only --name (the stored plan is used) or start a new --name"
                )
            plan.space = given.space  # read now: the stored space_path may be gone (e.g. a temporary copy)
    else:
        plan = Plan.from_space(space, overrides)
        name = name or check_name(plan.load_space().name, "the space's file name (the default --name)")
        root, sweep_dir = locations(storage, name)
    configs = [resolve_config(c) for c in plan.rows()]
    if gpus_per_worker == 0 and any(c.device.startswith("cuda") for c in configs):
        raise UserError("a trial sets device=cuda but --gpus-per-worker is 0; give workers GPUs or set device=auto")
    # what only this machine decides (the folder there, the data here): a dry run, often made elsewhere, notes it
    stoppers = _data_problems(configs)
    if not resume and _read_plan(sweep_dir) is not None:
        stoppers.insert(0, f"sweep '{name}' already exists in {root}; finish it with --resume --name {name} "
                           "or choose another --name")
    if address:
        check_address_syntax(address)
    if dry_run:
        print_dry_run(plan)
        if address:
            print(f"note: a dry run does not contact --address {address}; a real run stops at once if no Ray "
                  "cluster answers there")
        for why in stoppers:
            print(f"note: a real run here would stop: {why}")
        return None
    if stoppers:
        raise UserError(stoppers[0])

    go_on = f"cycleseg {command} --resume --name {name}" + (f" --storage {storage}" if storage != "runs" else "")
    try:
        with ray_output_away(verbose) as log:
            failed = _run(plan, name, root, sweep_dir, configs, resume=resume, address=address, log=log,
                          mlflow=mlflow, workers_per_trial=workers_per_trial, gpus_per_worker=gpus_per_worker,
                          cpus_per_worker=cpus_per_worker, max_concurrent=max_concurrent)
    except KeyboardInterrupt:  # a second Ctrl-C, or one before Tune took over SIGINT
        raise Interrupted(_kept(sweep_dir, plan, go_on)) from None
    if failed is None:  # Tune stopped (its SIGINT handler: a first Ctrl-C) before every trial ended
        raise Interrupted(_kept(sweep_dir, plan, go_on))
    return SweepOutcome(sweep_dir, failed)


def _kept(sweep_dir: str, plan: Plan, go_on: str) -> str:
    """What an interrupted sweep kept, and the command that finishes it."""
    if store.read_bytes(store.join(sweep_dir, PLAN_FILE)) is None:
        return "before the sweep started: nothing kept; start it again with the same command"
    done = len(res.trial_ids(sweep_dir))
    return (f"{done} of {plan.num_trials} trials finished and are kept in {sweep_dir} (running ones resume from "
            f"their last checkpoint); finish with: {go_on}")


def _run(plan: Plan, name: str, root: str, sweep_dir: str, configs: list[TrialConfig], *, resume: bool,
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
            tuner = tune.Tuner.restore(sweep_dir, trainable=trainable, resume_unfinished=True, resume_errored=True)
        else:  # a new sweep, or one whose driver died before Tune saved any state
            plan.max_concurrent, plan.workers_per_trial = concurrent, r.workers
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
    space = plan.load_space()
    scheduler = None
    if space.scheduler is not None:
        max_t = space.scheduler.max_t or max(c["epochs"] for c in plan.rows())
        scheduler = CellASHA(space.scheduler, max_t, tuple(plan.searched))
    shown = [k for k in varying_fields(plan.rows()) if k != "seed"]
    if space.search is not None:
        shown += list(space.search.params)
    if space.search is None:
        search_alg, param_space, num_samples = None, {"trial": tune.grid_search(plan.trials)}, 1
    else:
        search_alg, param_space, num_samples = CellSearcher(plan.cells, space.search, plan.seeds,
                                                                 sweep_dir), {}, plan.num_trials
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
            # ResultsCallback first: the others read the trial's row when it ends
            callbacks=[ResultsCallback(name, sweep_dir, r.gpus), ReleaseTrainResources(),
                       ConsoleCallback(plan.num_trials, concurrent, [*shown, "seed"], sweep_dir),
                       *([MlflowCallback(mlflow, name, sweep_dir)] if mlflow else [])],
            failure_config=tune.FailureConfig(max_failures=retries(r)[0]),
        ),
    )
