"""What a sweep prints: our own lines, not Ray's.

During a sweep the driver's standard output and error, where Ray, Tune, Train and (forwarded) every
worker write, go to ``<sweep>/logs/ray.log``; the terminal gets ``CONSOLE``'s lines: one per trial
event (started, each epoch's val mIoU, finished, retried, diverged, early-stopped, failed with the path
of its log) and a status line (done / running / pending, best so far, elapsed, ETA) every
``STATUS_EVERY_S``. ``--verbose`` leaves Ray's output on the terminal too.
"""

from __future__ import annotations

import contextlib
import io
import os
import sys
import tempfile
import time
from collections.abc import Iterator
from pathlib import Path
from typing import Any, TextIO

from ray import tune

from cycleseg.sweep import results, storage

LOG_DIR = "logs"
LOG_FILE = "ray.log"
STATUS_EVERY_S = 30.0


class Console:
    """Where our lines go: the terminal, also while the process's own output is sent to the log."""

    def __init__(self) -> None:
        self.stream: TextIO | None = None

    def line(self, text: str = "") -> None:
        stream = self.stream or sys.stdout
        stream.write(text + "\n")
        stream.flush()


CONSOLE = Console()


class RayLog:
    """The process's standard output and error, redirected away from the terminal (``CONSOLE`` keeps it).

    Until the sweep has really started they go to a temporary file, removed at the end, so a sweep refused
    before it starts leaves nothing behind; ``place`` then moves them to ``<sweep>/logs/ray.log`` (appended
    to on ``--resume``; a sweep on object storage gets its log uploaded at the end).
    """

    def __init__(self) -> None:
        fd, self.tmp = tempfile.mkstemp(prefix="cycleseg-ray-", suffix=".log")
        os.close(fd)
        self.dest: str | None = None
        self.file = open(self.tmp, "a", buffering=1)  # noqa: SIM115  (closed in close())
        for s in (sys.stdout, sys.stderr):
            s.flush()
        self.terminal = _terminal(sys.stdout)
        self.saved = (os.dup(1), os.dup(2))
        self.streams, self.console = (sys.stdout, sys.stderr), CONSOLE.stream
        self._point_at(self.file)
        CONSOLE.stream = self.terminal

    def _point_at(self, f: TextIO) -> None:
        for s in (sys.stdout, sys.stderr):
            s.flush()
        os.dup2(f.fileno(), 1)
        os.dup2(f.fileno(), 2)
        sys.stdout = sys.stderr = f

    def place(self, sweep_dir: str) -> str:
        """The sweep has started: its log is ``<sweep_dir>/logs/ray.log`` from now on; returns that location."""
        self.dest = storage.join(sweep_dir, LOG_DIR, LOG_FILE)
        if not storage.is_uri(sweep_dir):
            final = storage.local_path(self.dest)
            final.parent.mkdir(parents=True, exist_ok=True)
            self.file.flush()
            log = open(final, "a", buffering=1)  # noqa: SIM115  (closed in close())
            log.write(Path(self.tmp).read_text())
            self._point_at(log)
            self.file.close()
            os.unlink(self.tmp)
            self.file, self.tmp = log, ""
        return self.dest

    def close(self) -> None:
        self.file.flush()
        sys.stdout, sys.stderr = self.streams
        for fd, saved in zip((1, 2), self.saved, strict=True):
            os.dup2(saved, fd)
            os.close(saved)
        CONSOLE.stream = self.console
        if self.terminal is not self.streams[0]:
            self.terminal.close()
        self.file.close()
        if self.tmp:
            if self.dest is not None:  # on object storage: what an earlier run logged, then this run's
                before = storage.read_bytes(self.dest) or b""
                storage.write_bytes(self.dest, before + Path(self.tmp).read_bytes())
            os.unlink(self.tmp)


@contextlib.contextmanager
def ray_output_away(verbose: bool) -> Iterator[RayLog | None]:
    """Ray's output off the terminal for the block (a ``RayLog``); None with ``verbose``: nothing moves."""
    if verbose:
        yield None
        return
    log = RayLog()
    try:
        yield log
    finally:
        log.close()


def _terminal(stdout: TextIO) -> TextIO:
    """A stream to the terminal that survives fd 1 being redirected (``stdout`` itself when it has no fd,
    e.g. a test runner's buffer)."""
    try:
        fd = stdout.fileno()
    except (io.UnsupportedOperation, AttributeError, ValueError):
        return stdout
    return os.fdopen(os.dup(fd), "w", buffering=1, encoding=getattr(stdout, "encoding", None) or "utf-8")


def _duration(seconds: float) -> str:
    s = round(seconds)
    return f"{s // 3600}h{s // 60 % 60:02d}m" if s >= 3600 else f"{s // 60}m{s % 60:02d}s" if s >= 60 else f"{s}s"


def _outcome(row: dict[str, Any]) -> str:
    """What a trial reports (its epoch chosen on val and that epoch's val mIoU) and its wall time."""
    wall = row.get("wall_seconds")
    took = f"; {_duration(wall)} wall" if isinstance(wall, float) and wall == wall else ""
    if row.get("selected_epoch") is None:
        return f"; no epoch to report{took}"
    value = row.get("val_miou")
    shown = f"{value:.4f}" if isinstance(value, float) and value == value else "n/a"
    rule = str(row.get("select", "")).replace("_", " ")
    return f"; reports epoch {row['selected_epoch']} ({rule}): val_miou {shown}{took}"


class ConsoleCallback(tune.Callback):
    """Our lines for trial events and the sweep's status (module docstring). ``describe`` names a trial by
    what sets it apart (e.g. ``method=partial seed=1``); epoch times per method give the ETA."""

    def __init__(self, total: int, concurrent: int, shown: list[str], sweep_dir: str, metric: str = "val_miou") -> None:
        self.total, self.concurrent, self.shown, self.metric = total, concurrent, shown, metric
        self.sweep_dir = sweep_dir  # where ResultsCallback (before this one) has just written each ended trial
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
        cfg = trial.config["trial"]["cfg"]
        variant = trial.config["trial"].get("variant")
        parts = [f"{k}={cfg[k]:.4g}" if isinstance(cfg[k], float) else f"{k}={cfg[k]}" for k in self.shown]
        return f"{trial.trial_id} ({' '.join(parts + ([f'variant={variant}'] if variant else []))})"

    def on_trial_start(self, iteration: int, trials: list, trial: Any, **info: Any) -> None:
        cfg = trial.config["trial"]["cfg"]
        self.progress[trial.trial_id] = (0, cfg["epochs"], cfg["method"])
        CONSOLE.line(f"started   {self.describe(trial)}")

    def on_trial_recover(self, iteration: int, trials: list, trial: Any, **info: Any) -> None:
        CONSOLE.line(f"retried   {self.describe(trial)}: it failed and runs again (from its last checkpoint, if any)")

    def on_trial_result(self, iteration: int, trials: list, trial: Any, result: dict, **info: Any) -> None:
        if "epoch" not in result:
            return
        cfg = trial.config["trial"]["cfg"]
        epoch, value = int(result["epoch"]), result.get(self.metric)
        self.progress[trial.trial_id] = (epoch, cfg["epochs"], cfg["method"])
        if isinstance(result.get("epoch_seconds"), float):
            self.epoch_seconds.setdefault(cfg["method"], []).append(result["epoch_seconds"])
        shown = f"{value:.4f}" if isinstance(value, float) else "n/a"
        if isinstance(value, float) and value == value and (self.best is None or value > self.best[0]):
            self.best = (value, trial.trial_id)
        note = "  diverged: a loss became NaN/inf" if result.get("diverged") else ""
        CONSOLE.line(f"epoch     {self.describe(trial)} {epoch}/{cfg['epochs']}: {self.metric} {shown}{note}")

    def on_trial_complete(self, iteration: int, trials: list, trial: Any, **info: Any) -> None:
        self._ended(trial, None)

    def on_trial_error(self, iteration: int, trials: list, trial: Any, **info: Any) -> None:
        self._ended(trial, "failed")

    def _ended(self, trial: Any, how: str | None) -> None:
        if trial.trial_id in self.ended:
            return
        self.ended.add(trial.trial_id)
        epoch, epochs, _ = self.progress.pop(trial.trial_id, (0, 0, ""))
        row = results.read_trial(self.sweep_dir, trial.trial_id)
        outcome = ""
        if row is not None:  # the recorded outcome, also for a trial that ended before a driver restart
            epoch = row["epochs_run"]
            how = how or {"completed": "finished", "early_stopped": "stopped"}.get(row["status"], row["status"])
            outcome = _outcome(row)
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
                f"elapsed {_duration(now - self.start)}" + (f", ETA {_duration(eta)}" if eta is not None else ""))

    def eta(self, pending: int, trials: list) -> float | None:
        """Remaining epochs × measured seconds per epoch (per method), spread over the concurrent trials."""
        if not self.epoch_seconds:
            return None
        overall = [s for v in self.epoch_seconds.values() for s in v]
        mean = {m: sum(v) / len(v) for m, v in self.epoch_seconds.items()}
        default = sum(overall) / len(overall)
        left = sum((epochs - epoch) * mean.get(method, default) for epoch, epochs, method in self.progress.values())
        known = {t.trial_id for t in trials}
        queued = [t.config["trial"]["cfg"] for t in trials if t.status == "PENDING" and t.trial_id in known]
        per_pending = [c["epochs"] * mean.get(c["method"], default) for c in queued]
        unseen = max(0, pending - len(per_pending))  # not created yet (a searcher suggests as it goes)
        typical = (sum(per_pending) / len(per_pending) if per_pending
                   else default * max((e for _, e, _ in self.progress.values()), default=1))
        return (left + sum(per_pending) + unseen * typical) / max(1, self.concurrent)
