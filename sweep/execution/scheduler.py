"""Early stopping that compares like with like: ASHA per grid cell, a configuration's seeds stopped together.

Ray's ``ASHAScheduler`` ranks every trial of a sweep against every other, so a cell that scores lower
for reasons no search can change (10 % labels against 20 %) is starved, and one seed of a configuration
can be stopped while another goes on. ``CellASHA`` keeps the asynchronous successive halving rule (Li
et al. 2020: at each rung, continue only what is in the top 1/η of what that rung has seen) with
two changes:

- rungs belong to a grid cell (``cell_key``: the config without the seed and the searched fields), so a
  configuration is only ever ranked against configurations of its own cell;
- the decision at a rung is made once per configuration (``configuration_key``: the config without the
  seed), on what its seeds that reached the rung show, and applies to all its seeds: a stopped
  configuration's other seeds stop at their next report, so every configuration is either complete
  for all its seeds or early-stopped for all of them. The rung then records the mean of its seeds.

Time is the trial's own ``epoch`` (``training_iteration`` restarts after a retry).
"""

from __future__ import annotations

import math
import pickle
from typing import Any

import numpy as np
from ray.tune.schedulers import FIFOScheduler, TrialScheduler

from ..planning.space import SchedulerSpec
from ..planning.spec import TrialSpec, trial_spec


def milestones(grace_period: int, max_t: int, reduction_factor: int) -> list[int]:
    """Rung epochs grace·η^k below ``max_t`` (a trial at max_t has finished: nothing left to stop)."""
    out, m = [], grace_period
    while m < max_t:
        out.append(m)
        m *= reduction_factor
    return out


class CellASHA(FIFOScheduler):
    """ASHA with rungs per grid cell and one decision per configuration (module docstring)."""

    def __init__(self, spec: SchedulerSpec, max_t: int) -> None:
        super().__init__()
        self._metric, self._mode, self.rf = spec.metric, spec.mode, spec.reduction_factor  # Tune's attributes
        self.sign = 1.0 if spec.mode == "max" else -1.0
        self.milestones = milestones(spec.grace_period, max_t, spec.reduction_factor)
        self.rungs: dict[str, dict[int, dict[str, float]]] = {}  # cell -> rung -> configuration -> its seeds' mean
        self.reached: dict[tuple[str, int], dict[int, float]] = {}  # (configuration, rung) -> seed -> value
        self.decided: dict[tuple[str, int], str] = {}
        self.stopped: set[str] = set()

    def set_search_properties(self, metric: str | None, mode: str | None, **spec: Any) -> bool:
        return True  # metric and mode come from the space's scheduler section

    def on_trial_result(self, tune_controller: Any, trial: Any, result: dict[str, Any]) -> str:
        return self.decide(trial_spec(trial), result)

    def decide(self, spec: TrialSpec, result: dict[str, Any]) -> str:
        """CONTINUE or STOP for one report of the trial ``spec``."""
        epoch, value = result.get("epoch"), result.get(self._metric)
        conf = spec.configuration
        if conf in self.stopped:
            return TrialScheduler.STOP
        if epoch is None or not isinstance(value, int | float) or not math.isfinite(value):
            return TrialScheduler.CONTINUE
        passed = [m for m in self.milestones if m <= epoch]
        if not passed:
            return TrialScheduler.CONTINUE
        rung_at = passed[-1]
        rung = self.rungs.setdefault(spec.cell, {}).setdefault(rung_at, {})
        seeds = self.reached.setdefault((conf, rung_at), {})
        if spec.seed in seeds:  # a later epoch of a seed already recorded at this rung: nothing new
            return self.decided[conf, rung_at]
        seeds[spec.seed] = self.sign * float(value)  # the value when the seed first reached the rung
        mean = float(np.mean(list(seeds.values())))
        if (conf, rung_at) not in self.decided:
            others = [v for c, v in rung.items() if c != conf]
            cutoff = np.percentile(others, (1 - 1 / self.rf) * 100) if others else None
            stop = cutoff is not None and mean < cutoff
            self.decided[conf, rung_at] = TrialScheduler.STOP if stop else TrialScheduler.CONTINUE
            if stop:
                self.stopped.add(conf)
        rung[conf] = mean
        return self.decided[conf, rung_at]

    def debug_string(self) -> str:
        return f"CellASHA: {len(self.rungs)} cell(s), {len(self.stopped)} configuration(s) stopped"

    def save(self, checkpoint_path: str) -> None:
        with open(checkpoint_path, "wb") as f:
            pickle.dump(self.__dict__, f)

    def restore(self, checkpoint_path: str) -> None:
        with open(checkpoint_path, "rb") as f:
            self.__dict__.update(pickle.load(f))
