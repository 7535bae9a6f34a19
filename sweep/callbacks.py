"""Tune callbacks, run in the driver process: Parquet results as trials end, and freeing what ended trials held."""

from __future__ import annotations

import time
from pathlib import Path
from typing import Any

import ray
from ray import tune

from cycleseg.model import checkpoint
from cycleseg.model.resolve import resolve_config
from cycleseg.sweep import ray_compat, storage
from cycleseg.sweep import results as res


def _error_text(trial: Any) -> str:
    """The last line of the trial's traceback (``SomeError: message``)."""
    local = Path(trial.error_file) if trial.error_file else None  # staged locally before storage sync
    text = local.read_text() if local is not None and local.is_file() else trial.get_error()
    lines = [ln.strip() for ln in str(text or "").splitlines() if ln.strip()]
    return lines[-1][:1000] if lines else "failed without an error message"


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


class ResultsCallback(tune.Callback):
    """Writes each trial's Parquet files when it ends (``cycleseg.sweep.results``).

    The per-epoch records come from the trial's last stored checkpoint (its ``history.json``): Tune's
    results hold no test metrics (choose on val, report on test), and a driver restarted mid-trial has
    seen only some of them. A trial that failed before its first checkpoint has no records.
    """

    def __init__(self, sweep: str, sweep_dir: str, default_gpus: float) -> None:
        self.sweep = sweep
        self.sweep_dir = sweep_dir
        self.default_gpus = default_gpus
        self._start: dict[str, float] = {}
        self._seen: dict[str, set[int]] = {}  # epochs this driver saw, to add the time of the others

    def on_trial_start(self, iteration: int, trials: list, trial: Any, **info: Any) -> None:
        self._start.setdefault(trial.trial_id, time.time())

    def on_trial_result(self, iteration: int, trials: list, trial: Any, result: dict, **info: Any) -> None:
        if "epoch" in result:
            self._seen.setdefault(trial.trial_id, set()).add(int(result["epoch"]))

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
        before = res.read_trial(self.sweep_dir, tid)
        if before is not None and before["status"] != "failed":
            # a trial file is final: a trial that ended just before its driver was killed is finished once more
            # by the resumed sweep (Tune had not saved its end), with nothing new to add. A failed one is not: a
            # resumed sweep runs it again (resume_errored), and that run's outcome replaces it
            self._seen.pop(tid, None)
            self._start.pop(tid, None)
            return
        cfg = resolve_config(trial.config["trial"]["cfg"])
        seen = self._seen.pop(tid, set())
        last = trial.last_result or {}
        ckpt = checkpoint_location(last.get("checkpoint_path"), self.sweep_dir)
        history = history_from_checkpoint(ckpt) if ckpt else []
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
            checkpoint_path=ckpt,
            versions=res.software_versions(),
        )
        res.write_trial(self.sweep_dir, row, history)


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
