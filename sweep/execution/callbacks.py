"""Tune callbacks, run in the driver process: Parquet results as trials end, freeing what ended trials held,
and our console lines for trial events."""

from __future__ import annotations

import time
from typing import Any

import ray
from ray import tune

from ..planning.spec import TrialFacts, trial_spec
from ..results import parquet as res
from . import ray_compat
from .console import CONSOLE, STATUS_EVERY_S, duration, trial_outcome
from .trial import TrialEnds, error_text


class ResultsCallback(tune.Callback):
    """Each trial's Parquet files when it ends (``TrialEnds``, which also hands the row to the console)."""

    def __init__(self, ends: TrialEnds) -> None:
        self.ends = ends

    def on_trial_start(self, iteration: int, trials: list, trial: Any, **info: Any) -> None:
        self.ends.started(trial)

    def on_trial_result(self, iteration: int, trials: list, trial: Any, result: dict, **info: Any) -> None:
        self.ends.reported(trial, result)

    def on_trial_complete(self, iteration: int, trials: list, trial: Any, **info: Any) -> None:
        self.ends.finish(trial, None)

    def on_trial_error(self, iteration: int, trials: list, trial: Any, **info: Any) -> None:
        self.ends.finish(trial, error_text(trial))

    def on_experiment_end(self, trials: list, **info: Any) -> None:
        """Trials that ended just before a driver was killed get their files at the resumed end."""
        done = res.trial_ids(self.ends.sweep_dir)
        for t in trials:
            if t.status in ("TERMINATED", "ERROR") and t.trial_id not in done:
                self.ends.finish(t, error_text(t) if t.status == "ERROR" else None)


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
        pg = TrialFacts.of(result).train_pg_id
        if pg:
            self._groups[trial.trial_id] = pg

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
            table = ray_compat.placement_groups()
            self._controllers |= {g.creator_actor_id for g in table
                                  if g.placement_group_id.hex() == pg and ray_compat.made_by_an_actor(g)}
            self.release(table)

    def release(self, table: list[Any] | None = None) -> None:
        self._last_check = time.monotonic()
        table = ray_compat.placement_groups() if table is None else table
        dead = {g.creator_actor_id for g in table if g.creator_actor_id in self._controllers and g.creator_actor_dead}
        ray_compat.remove_placement_groups([g for g in table if g.creator_actor_id in dead])
        self._controllers -= dead


def release_leftover_groups(timeout_s: float = 20.0) -> None:
    """After the sweep: remove the groups this job's Train controllers left, once they are dead.

    The callback above misses a controller that dies after the last trial; this matters when the
    Ray instance outlives the sweep (a joined cluster frees a job's groups only when the job ends).
    """
    job = ray.get_runtime_context().get_job_id()
    deadline = time.monotonic() + timeout_s
    while True:
        left = [g for g in ray_compat.placement_groups() if g.creator_job_id.hex() == job
                and ray_compat.made_by_an_actor(g) and not g.is_detached and not ray_compat.is_removed(g)]
        ray_compat.remove_placement_groups([g for g in left if g.creator_actor_dead])
        if all(g.creator_actor_dead for g in left) or time.monotonic() > deadline:
            return
        time.sleep(0.5)


class ConsoleCallback(tune.Callback):
    """Our lines for trial events and the sweep's status (module docstring). ``describe`` names a trial by
    what sets it apart (e.g. ``method=partial seed=1``); epoch times per method give the ETA."""

    def __init__(self, total: int, concurrent: int, shown: list[str], ends: TrialEnds,
                 metric: str = "val_miou") -> None:
        self.total, self.concurrent, self.shown, self.metric = total, concurrent, shown, metric
        self.ends = ends  # each ended trial's row, whichever callback asked first
        self.start = time.monotonic()
        self.last_status = self.start
        self.best: tuple[float, str] | None = None
        self.epoch_seconds: dict[str, list[float]] = {}  # method -> measured epoch times
        self.progress: dict[str, tuple[int, int, str]] = {}  # running trial -> (epoch, epochs, method)
        self.ended: set[str] = set()

    def setup(self, **info: Any) -> None:
        """At every start, a resumed sweep's too (this object is restored from the experiment state)."""
        self.start = self.last_status = time.monotonic()
        self.progress.clear()

    def describe(self, trial: Any) -> str:
        spec = trial_spec(trial)
        values = {k: getattr(spec.cfg, k) for k in self.shown}
        parts = [f"{k}={v:.4g}" if isinstance(v, float) else f"{k}={v}" for k, v in values.items()]
        return f"{trial.trial_id} ({' '.join(parts + ([f'variant={spec.variant}'] if spec.variant else []))})"

    def on_trial_start(self, iteration: int, trials: list, trial: Any, **info: Any) -> None:
        cfg = trial_spec(trial).cfg
        self.progress[trial.trial_id] = (0, cfg.epochs, cfg.method)
        CONSOLE.line(f"started   {self.describe(trial)}")

    def on_trial_recover(self, iteration: int, trials: list, trial: Any, **info: Any) -> None:
        CONSOLE.line(f"retried   {self.describe(trial)}: it failed and runs again (from its last checkpoint, if any)")

    def on_trial_result(self, iteration: int, trials: list, trial: Any, result: dict, **info: Any) -> None:
        if "epoch" not in result:
            return
        cfg = trial_spec(trial).cfg
        epoch, value = int(result["epoch"]), result.get(self.metric)
        self.progress[trial.trial_id] = (epoch, cfg.epochs, cfg.method)
        if isinstance(result.get("epoch_seconds"), float):
            self.epoch_seconds.setdefault(cfg.method, []).append(result["epoch_seconds"])
        shown = f"{value:.4f}" if isinstance(value, float) else "n/a"
        if isinstance(value, float) and value == value and (self.best is None or value > self.best[0]):
            self.best = (value, trial.trial_id)
        note = "  diverged: a loss became NaN/inf" if result.get("diverged") else ""
        CONSOLE.line(f"epoch     {self.describe(trial)} {epoch}/{cfg.epochs}: {self.metric} {shown}{note}")

    def on_trial_complete(self, iteration: int, trials: list, trial: Any, **info: Any) -> None:
        self._ended(trial, None, None)

    def on_trial_error(self, iteration: int, trials: list, trial: Any, **info: Any) -> None:
        self._ended(trial, "failed", error_text(trial))

    def _ended(self, trial: Any, how: str | None, error: str | None) -> None:
        if trial.trial_id in self.ended:
            return
        self.ended.add(trial.trial_id)
        epoch, epochs, _ = self.progress.pop(trial.trial_id, (0, 0, ""))
        row = self.ends.finish(trial, error)
        outcome = ""
        if row is not None:  # the recorded outcome, also for a trial that ended before a driver restart
            epoch = row["epochs_run"]
            how = how or {"completed": "finished", "early_stopped": "stopped"}.get(row["status"], row["status"])
            outcome = trial_outcome(row)
        elif how is None:
            last = trial.last_result or {}
            how = "diverged" if last.get("diverged") else "stopped" if epoch < epochs else "finished"
        label = {"stopped": "early-stopped by the scheduler", "finished": "finished", "diverged": "diverged",
                 "failed": "failed"}[how]
        where = f"; full log: {trial.error_file}" if how == "failed" and trial.error_file else ""
        CONSOLE.line(f"{how:<9} {self.describe(trial)}: {label} after {epoch} epoch(s){outcome}{where}")

    def on_step_end(self, iteration: int, trials: list, **info: Any) -> None:
        now = time.monotonic()
        if now - self.last_status >= STATUS_EVERY_S:
            self.last_status = now
            CONSOLE.line(self.status(trials, now))

    def on_experiment_end(self, trials: list, **info: Any) -> None:
        CONSOLE.line(self.status(trials, time.monotonic()))

    def status(self, trials: list, now: float) -> str:
        done = sum(t.status in ("TERMINATED", "ERROR") for t in trials)
        running = sum(t.status == "RUNNING" for t in trials)
        pending = self.total - done - running
        best = f"best {self.metric} so far {self.best[0]:.4f} ({self.best[1]})" if self.best else "no result yet"
        eta = self.eta(pending, trials)
        return (f"status    {done}/{self.total} done, {running} running, {pending} pending; {best}; "
                f"elapsed {duration(now - self.start)}" + (f", ETA {duration(eta)}" if eta is not None else ""))

    def eta(self, pending: int, trials: list) -> float | None:
        """Remaining epochs × measured seconds per epoch (per method), spread over the concurrent trials."""
        if not self.epoch_seconds:
            return None
        overall = [s for v in self.epoch_seconds.values() for s in v]
        mean = {m: sum(v) / len(v) for m, v in self.epoch_seconds.items()}
        default = sum(overall) / len(overall)
        left = sum((epochs - epoch) * mean.get(method, default) for epoch, epochs, method in self.progress.values())
        queued = [trial_spec(t).cfg for t in trials if t.status == "PENDING"]
        per_pending = [c.epochs * mean.get(c.method, default) for c in queued]
        unseen = max(0, pending - len(per_pending))  # not created yet (a searcher suggests as it goes)
        typical = (sum(per_pending) / len(per_pending) if per_pending
                   else default * max((e for _, e, _ in self.progress.values()), default=1))
        return (left + sum(per_pending) + unseen * typical) / max(1, self.concurrent)
