"""The plan of a sweep: its expanded trials (grid) or grid cells (search) with the search and early-stopping
sections, stored as ``sweep.json`` so that ``--resume`` needs neither the space file (which may since have
been edited, moved or deleted) nor the ``--set`` options again."""

from __future__ import annotations

import json
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

from ...model.config import TrialConfig, complete
from ...model.errors import UserError
from ...model.flops import step_flops, trial_flops
from ...model.resolve import resolve_config
from .. import storage
from .space import SchedulerSpec, SearchSpace, SearchSpec, load_space
from .spec import TrialSpec

PLAN_FILE = "sweep.json"
# 2: Tune's saved state names the modules of sweep/planning, sweep/execution and sweep/results. A sweep whose
# Tune state an older cycleseg saved resumes with that version (execute.py says so); 1: everything before
PLAN_FORMAT = 2


def longest_first(trials: list[TrialSpec]) -> list[TrialSpec]:
    """Grid trials in the order Tune starts them: the costliest first (FLOPs × steps; stable on ties, so seeds
    keep their order). Long trials that start last would leave the other workers idle at the end of a sweep."""
    costs = [_cost(t.cfg) for t in trials]
    if any(c is None for c in costs):  # a method that cannot be counted on the meta device: keep the space's order
        return trials
    return [t for _, t in sorted(zip(costs, trials, strict=True), key=lambda ct: ct[0], reverse=True)]


def _cost(cfg: TrialConfig) -> float | None:
    """A trial's FLOPs; before its training set is decoded, proportional to them (steps ∝ the larger share)."""
    try:
        known = trial_flops(cfg)
        if known is not None:
            return float(known[1])
        f = cfg.labeled_fraction
        return step_flops(cfg) * cfg.epochs * max(f, 1 - f)
    except Exception:  # a plugin method may not run on the meta device; the order is only a heuristic
        return None


@dataclass
class Plan:
    space_path: str
    sets: dict[str, Any]
    num_trials: int
    trials: list[dict[str, Any]]  # grid: one TrialSpec.to_param() per trial; search: empty
    cells: list[dict[str, Any]]  # search: {"overrides", "variant"} per grid cell; grid: empty
    seeds: list[int]
    max_concurrent: int | None = None  # set when the sweep starts
    workers_per_trial: int | None = None  # set when the sweep starts: 1 trains in Tune's process, more with Train
    searched: list[str] = field(default_factory=list)  # the search's fields: they vary within a grid cell
    search: dict[str, Any] | None = None  # the space's search: section, as JSON (None: a grid)
    scheduler: dict[str, Any] | None = None  # its scheduler: section (None: no early stopping)
    space: SearchSpace | None = field(default=None, compare=False)  # the file as read; never read on --resume
    legacy: bool = field(default=False, compare=False)  # stored before the sections were: read them from the file
    format: int = PLAN_FORMAT  # the cycleseg layout that wrote it (stored plans without one: 1)

    @classmethod
    def build(cls, space: SearchSpace, sets: dict[str, Any]) -> Plan:
        if space.search is None:
            trials, cells = [t.to_param() for t in longest_first(space.expand(sets))], []
            num_trials = len(trials)
        else:
            trials, cells = [], [{"overrides": c.overrides, "variant": c.variant} for c in space.cells(sets)]
            num_trials = space.num_trials(sets)
        seeds = list(space.replicate_seeds(sets))
        searched = list(space.search.params) if space.search is not None else []
        return cls(str(space.path), sets, num_trials, trials, cells, seeds, searched=searched,
                   search=space.search.model_dump(mode="json") if space.search is not None else None,
                   scheduler=space.scheduler.model_dump(mode="json") if space.scheduler is not None else None,
                   space=space)

    @classmethod
    def from_space(cls, space_arg: Any, sets: dict[str, Any]) -> Plan:
        space = load_space(space_arg)
        every, some = space.shadowed(sets)
        if every:
            raise UserError(f"--set {', '.join(every)}: the space sets {'it' if len(every) == 1 else 'them'} in every "
                            "trial (grid, seeds or search), so --set would change nothing; edit a copy of the space")
        for k in some:
            print(f"note: --set {k} is overridden in the trials of the variants that set {k}")
        return cls.build(space, sets)

    def to_json(self) -> str:
        keys = ("space_path", "sets", "num_trials", "trials", "cells", "seeds", "max_concurrent", "workers_per_trial",
                "searched", "search", "scheduler", "format")
        return json.dumps({k: getattr(self, k) for k in keys}, indent=1)

    @classmethod
    def from_json(cls, text: str) -> Plan:
        data = json.loads(text)
        plan = cls(**{"format": 1, **data}, legacy="search" not in data)
        for t in plan.trials:  # a plan stored before fields were added: they ran at their defaults
            t["cfg"] = complete(t["cfg"])
        return plan

    def search_spec(self) -> SearchSpec | None:
        """The search section the sweep started with."""
        if self.legacy:
            return self._file().search
        return SearchSpec.model_validate(self.search) if self.search is not None else None

    def scheduler_spec(self) -> SchedulerSpec | None:
        """The early-stopping section the sweep started with."""
        if self.legacy:
            return self._file().scheduler
        return SchedulerSpec.model_validate(self.scheduler) if self.scheduler is not None else None

    def _file(self) -> SearchSpace:
        """The space file, for a plan stored before ``sweep.json`` kept its sections (or one just built)."""
        if self.space is None:
            self.space = load_space(self.space_path)
        return self.space

    def rows(self) -> list[dict[str, Any]]:
        """One resolved config dict per grid trial, or per search cell (before sampling and seeds)."""
        if self.trials:
            return [t["cfg"] for t in self.trials]
        return [resolve_config(c["overrides"]).to_dict() for c in self.cells]

    def variants(self) -> list[str | None]:
        return [t["variant"] for t in (self.trials or self.cells)]

    def same_trials(self, other: Plan) -> bool:
        """Whether ``other`` runs what this plan runs: the trials or cells, the seeds, the search and scheduler."""
        sections = self.legacy or other.legacy or (self.search, self.scheduler) == (other.search, other.scheduler)
        trials = [(t["cfg"], t["variant"]) for t in self.trials] == [(t["cfg"], t["variant"]) for t in other.trials]
        return sections and trials and (self.cells, self.seeds) == (other.cells, other.seeds)


def read_plan(sweep_dir: str | Path, fix: str) -> Plan | None:
    """The plan stored in ``sweep_dir`` (None without one); a damaged one is a ``UserError`` ending in ``fix``."""
    path = storage.join(str(sweep_dir), PLAN_FILE)
    data = storage.read_bytes(path)
    if data is None:
        return None
    try:
        return Plan.from_json(data.decode())
    except (ValueError, TypeError, UnicodeDecodeError) as e:
        raise UserError(f"'{path}' is damaged ({type(e).__name__}, not the JSON a sweep writes); {fix}") from None
