"""The processes a test's subprocess started, from /proc: to clean up after a driver killed on purpose
(its Ray processes outlive it for a while), stopping only what that test started, never `ray stop`."""

import contextlib
import os
import signal
from pathlib import Path


def processes():
    """{pid: (parent pid, start time)} from /proc."""
    out = {}
    for d in Path("/proc").iterdir():
        if d.name.isdigit():
            try:
                fields = (d / "stat").read_text().rsplit(")", 1)[1].split()
            except OSError:
                continue
            out[int(d.name)] = (int(fields[1]), fields[19])
    return out


def descendants(pid):
    """{pid: start time} of every process below ``pid``: what the driver started, to clean up after it."""
    procs = processes()
    found, todo = {}, [pid]
    while todo:
        parent = todo.pop()
        for p, (ppid, start) in procs.items():
            if ppid == parent and p not in found:
                found[p] = start
                todo.append(p)
    return found


def kill_leftovers(started):
    """SIGKILL the processes in ``started`` that still run (same pid and start time: not a reused pid)."""
    procs = processes()
    for pid, start in started.items():
        if pid in procs and procs[pid][1] == start:
            with contextlib.suppress(ProcessLookupError):
                os.kill(pid, signal.SIGKILL)


def live_actor_classes():
    """Class names of the actors alive now, from GCS (Ray's public state API needs the dashboard, which sweeps
    do not start): to check that no per-trial helper actor outlives its trial. Ray-private; canary-tested in
    tests/sweep/execution/test_ray_compat.py."""
    from ray._private.state import actors

    return [a["ActorClassName"] for a in actors().values() if a["State"] == "ALIVE"]
