"""What a sweep prints: our own lines, not Ray's.

During a sweep the driver's standard output and error, where Ray, Tune, Train and (forwarded) every
worker write, go to ``<sweep>/logs/ray.log``; the terminal gets ``CONSOLE``'s lines: one per trial
event (started, each epoch's val mIoU, finished, retried, diverged, early-stopped, failed with the path
of its log) and a status line (done / running / pending, best so far, elapsed, ETA) every
``STATUS_EVERY_S`` (``callbacks.ConsoleCallback`` writes them). ``--verbose`` leaves Ray's output on the
terminal too. Nothing here imports Ray: the dry run and the checks before Ray starts print through it.
"""

from __future__ import annotations

import contextlib
import io
import os
import sys
import tempfile
from collections.abc import Iterator
from pathlib import Path
from typing import Any, TextIO

from .. import storage

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


def duration(seconds: float) -> str:
    s = round(seconds)
    return f"{s // 3600}h{s // 60 % 60:02d}m" if s >= 3600 else f"{s // 60}m{s % 60:02d}s" if s >= 60 else f"{s}s"


def trial_outcome(row: dict[str, Any]) -> str:
    """What a trial reports (its epoch chosen on val and that epoch's val mIoU) and its wall time."""
    wall = row.get("wall_seconds")
    took = f"; {duration(wall)} wall" if isinstance(wall, float) and wall == wall else ""
    if row.get("selected_epoch") is None:
        return f"; no epoch to report{took}"
    value = row.get("val_miou")
    shown = f"{value:.4f}" if isinstance(value, float) and value == value else "n/a"
    rule = str(row.get("select", "")).replace("_", " ")
    return f"; reports epoch {row['selected_epoch']} ({rule}): val_miou {shown}{took}"
