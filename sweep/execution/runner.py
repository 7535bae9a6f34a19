"""Run a search space on Ray Tune: one trial per configuration (``cycleseg.sweep.execution.trial``).

Layout under ``<storage>/<name>/``: ``sweep.json`` (the plan, for ``--resume``), Tune's experiment
state and one folder per trial, ``train/<trial_id>/`` (the trial's checkpoints: ``TrialCheckpoints``, or
a DDP trial's Train run, named by the trial id; a re-run trial resumes from them), and the Parquet
``trials/`` and ``epochs/`` (``cycleseg.sweep.results.parquet``), written by ``ResultsCallback`` as each trial ends.
"""

from __future__ import annotations

import math
from dataclasses import dataclass
from pathlib import Path

from ...model.config import TrialConfig
from ...model.errors import Interrupted, UserError
from ...model.io import check_name
from ...model.resolve import parse_set, resolve_config
from .. import storage as store
from ..planning.dry_run import Where, print_dry_run
from ..planning.plan import PLAN_FILE, Plan, read_plan
from ..results import parquet as res
from .cluster import check_address_syntax, check_resource_options
from .console import ray_output_away


def locations(storage: str, name: str) -> tuple[str, str]:
    """(storage root, sweep folder) as Tune wants them: absolute local paths, or URIs as given."""
    root = storage.rstrip("/") if store.is_uri(storage) else str(store.local_path(storage).expanduser().resolve())
    return root, f"{root}/{name}"


def _read_plan(sweep_dir: str) -> Plan | None:
    return read_plan(sweep_dir, "the sweep cannot be resumed from it: start a new --name (finished trials stay "
                                "readable in their trials/ files)")


def _data_problems(configs: list[TrialConfig]) -> list[str]:
    """Why each distinct dataset of ``configs`` could not be loaded here (checked before Ray starts)."""
    from ...model.data import check_source

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
    assume_tflops: float | None = None,
    command: str = "sweep",
) -> SweepOutcome | None:
    """Run a sweep, or with ``resume`` finish one; returns its outcome (None for a dry run).

    ``space`` None is the demo space, or with ``resume`` the plan the sweep was started with.
    """
    store.check_storage_option(storage)  # first: everything after may read it
    overrides = parse_set(list(sets))
    check_resource_options(workers_per_trial, gpus_per_worker, cpus_per_worker, max_concurrent)
    if assume_tflops is not None and not (math.isfinite(assume_tflops) and assume_tflops > 0):
        raise UserError(f"--assume-tflops must be a number > 0 (a device's sustained TFLOP/s), got {assume_tflops}")
    if mlflow is not None:
        from .tracking import check_tracking  # MLflow's callback module imports Ray

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
        name = name or check_name(Path(plan.space_path).stem, "the space's file name (the default --name)")
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
        print_dry_run(plan, Where(workers_per_trial, gpus_per_worker, cpus_per_worker, max_concurrent, address,
                                  assume_tflops))
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
        from .execute import execute  # Ray and Tune: imported once every check has passed

        with ray_output_away(verbose) as log:
            failed = execute(plan, name, root, sweep_dir, configs, resume=resume, address=address, log=log,
                             mlflow=mlflow, workers_per_trial=workers_per_trial, gpus_per_worker=gpus_per_worker,
                             cpus_per_worker=cpus_per_worker, max_concurrent=max_concurrent)
    except KeyboardInterrupt:  # Ctrl-C (Tune's own SIGINT handler is off: ray_compat.TRAIN_ENV)
        raise Interrupted(_kept(sweep_dir, plan, go_on)) from None
    if failed is None:  # Tune stopped before every trial ended
        raise Interrupted(_kept(sweep_dir, plan, go_on))
    return SweepOutcome(sweep_dir, failed)


def _kept(sweep_dir: str, plan: Plan, go_on: str) -> str:
    """What an interrupted sweep kept, and the command that finishes it."""
    if store.read_bytes(store.join(sweep_dir, PLAN_FILE)) is None:
        return "before the sweep started: nothing kept; start it again with the same command"
    done = len(res.trial_ids(sweep_dir))
    return (f"{done} of {plan.num_trials} trials finished and are kept in {sweep_dir} (running ones resume from "
            f"their last checkpoint); finish with: {go_on}")
