"""The Ray cluster a sweep runs on: joining or starting it, and what one trial's workers need from it."""

from __future__ import annotations

import math
import os
import socket
from dataclasses import dataclass
from typing import Any

from ...model.errors import UserError
from ...model.plugins import ENV as PLUGINS_ENV


@dataclass(frozen=True)
class Resources:
    """What one trial's workers hold."""

    workers: int
    cpus_per_worker: float
    gpus_per_worker: float

    @property
    def in_trial_process(self) -> bool:
        """One worker trains in the Tune trial's own process; several (DDP) are a Ray Train run."""
        return self.workers == 1

    @property
    def gpus(self) -> float:
        return self.workers * self.gpus_per_worker

    def per_worker(self) -> dict[str, float]:
        return {"CPU": self.cpus_per_worker, **({"GPU": self.gpus_per_worker} if self.gpus_per_worker else {})}


def worker_env() -> dict[str, str]:
    """Environment every Ray process gets: Train's knobs (ours unless the user set them) and the plugins."""
    from .ray_compat import TRAIN_ENV  # Ray is imported where it is used: the checks need none

    env = {k: os.environ.get(k, v) for k, v in TRAIN_ENV.items()}
    if os.environ.get(PLUGINS_ENV):
        env[PLUGINS_ENV] = os.environ[PLUGINS_ENV]
    return env


def start_ray(address: str | None = None, **init_kwargs: Any) -> bool:
    """Join ``address`` or start an embedded local Ray (``init_kwargs``: e.g. num_cpus), with
    ``worker_env`` applied; False when Ray is already up in this process (then it is used as is)."""
    import ray

    env = worker_env()
    os.environ.update(env)
    if ray.is_initialized():
        return False
    if address:
        check_reachable(address)
    try:
        ray.init(address=address or "local", include_dashboard=False, runtime_env={"env_vars": env}, **init_kwargs)
    except ConnectionError as e:
        raise UserError(f"cannot reach the Ray cluster at '{address}' ({e}); check --address / RAY_ADDRESS") from None
    return True


CONNECT_TIMEOUT_S = 5.0


def check_address_syntax(address: str) -> None:
    """``address`` is ``auto``, ``host:port`` or ``ray://host:port`` (what a dry run can check without a network)."""
    plain = address.split("://", 1)[1] if address.startswith("ray://") else address
    host, sep, port = plain.rpartition(":")
    if plain != "auto" and not (sep and host.strip("[]") and port.isdigit() and 0 < int(port) < 65536
                                and not any(c.isspace() for c in host)):
        raise UserError(f"--address '{address}' is not host:port (e.g. 10.0.0.5:6379), ray://host:port or auto")


def check_reachable(address: str, timeout_s: float = CONNECT_TIMEOUT_S) -> None:
    """Fail within ``timeout_s`` when nothing answers at ``address`` (``ray.init`` would retry for minutes)."""
    from . import ray_compat

    plain = address.split("://", 1)[1] if "://" in address else address
    fix = ("check that `ray start --head` runs there, the port (6379 by default, 10001 for ray://) and any "
           "firewall between; or drop --address / RAY_ADDRESS to start a local Ray")
    try:
        target = ray_compat.bootstrap_address(plain)
    except ValueError:
        raise UserError(f"--address '{address}' is not host:port (e.g. 10.0.0.5:6379) or auto") from None
    if target is None:
        raise UserError(f"--address {address}: no running Ray cluster found on this machine; {fix}")
    host, _, port = target.rpartition(":")
    try:
        socket.create_connection((host.strip("[]"), int(port)), timeout=timeout_s).close()
    except (OSError, ValueError) as e:
        why = e.strerror or type(e).__name__ if isinstance(e, OSError) else str(e)
        raise UserError(f"cannot reach the Ray cluster at '{address}' ({why}); {fix}") from None


def alive_nodes() -> list[dict[str, float]]:
    import ray

    return [n["Resources"] for n in ray.nodes() if n.get("Alive")]


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
    check_resource_options(workers, gpus_per_worker, cpus_per_worker, None)
    if gpus_per_worker is None:
        gpus_per_worker = 1.0 if sum(n.get("GPU", 0.0) for n in nodes) > 0 else 0.0
    return Resources(workers, cpus_per_worker, gpus_per_worker)


def check_resource_options(
    workers: int, gpus_per_worker: float | None, cpus_per_worker: float, max_concurrent: int | None
) -> None:
    """The resource options on their own, before any cluster is asked (``--dry-run`` checks them too)."""
    if workers < 1:
        raise UserError(f"--workers-per-trial must be >= 1, got {workers}")
    if not (math.isfinite(cpus_per_worker) and cpus_per_worker > 0):
        raise UserError(f"--cpus-per-worker must be a number > 0, got {cpus_per_worker}")
    if gpus_per_worker is not None and not (math.isfinite(gpus_per_worker) and gpus_per_worker >= 0):
        raise UserError(f"--gpus-per-worker must be a number >= 0, got {gpus_per_worker}")
    if max_concurrent is not None and max_concurrent < 1:
        raise UserError(f"--max-concurrent must be >= 1, got {max_concurrent}")


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
    if requested is not None and requested > fit:
        print(f"note: --max-concurrent {requested} lowered to {fit}: the cluster fits {fit} trial(s) at once")
    return min(requested or fit, fit)
