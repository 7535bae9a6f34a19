"""Search inside grid cells: one Optuna search per cell, each suggestion run once per seed."""

from __future__ import annotations

import pickle
from typing import Any

from ray.tune.search import Searcher

from ...model.errors import UserError
from ...model.records import for_choices, is_finite, selected_epoch
from ...model.resolve import resolve_config
from ..planning.space import SearchSpec
from ..planning.spec import PARAM, TrialSpec
from .studies import StudyJournal, cell_names
from .trial import checkpoint_location, history_from_checkpoint


class CellSearcher(Searcher):
    """One Optuna search (TPE or random) per grid cell; each suggestion runs once per seed.

    Tune takes one searcher and Optuna cannot take grid factors (shared notes), so this holds one
    ``OptunaSearch`` per cell. A suggestion's objective is the searched metric at each seed's reported
    epoch (the config's ``select``: best val or final), averaged over the seeds; Optuna is told once
    every seed has ended. It only ever sees val metrics: test metrics never reach Tune.
    """

    def __init__(self, cells: list[dict[str, Any]], search: SearchSpec, seeds: list[int], sweep_dir: str = "") -> None:
        from optuna.samplers import RandomSampler, TPESampler
        from ray.tune.search.optuna import OptunaSearch

        super().__init__(metric=search.metric, mode=search.mode)
        self.cells, self.search, self.seeds, self.sweep_dir = cells, search, list(seeds), sweep_dir
        def sampler(seed: int) -> Any:
            if search.algorithm == "tpe":
                return TPESampler(seed=seed, n_startup_trials=search.startup_trials)
            return RandomSampler(seed=seed)

        self.inner = [
            OptunaSearch(
                space={name: p.to_optuna() for name, p in search.params.items()},
                metric=search.metric,
                mode=search.mode,
                points_to_evaluate=[dict(p) for p in search.points_to_evaluate] or None,
                sampler=sampler(seed=search.seed + i),
            )
            for i in range(len(cells))
        ]
        rows = [resolve_config(c["overrides"]).to_dict() for c in cells]
        self.journal = StudyJournal(sweep_dir, cell_names(rows), search.mode) if sweep_dir else None
        self.params: dict[str, dict[str, Any]] = {}  # sample -> its parameters, until every seed has ended
        self.drawn = [0] * len(cells)
        self.queue: list[tuple[int, str, dict[str, Any], int]] = []  # (cell, sample, params, seed)
        self.trials: dict[str, tuple[int, str, int, str]] = {}  # trial -> (cell, sample, seed, select rule)
        self.history: dict[str, dict[int, dict[str, Any]]] = {}  # trial -> epoch -> result
        self.scores: dict[str, dict[int, float | None]] = {}
        self.turn = 0

    def suggest(self, trial_id: str) -> dict[str, Any] | str | None:
        if not self.queue:
            open_cells = [c for c in range(len(self.cells)) if self.drawn[c] < self.search.num_samples]
            if not open_cells:
                return Searcher.FINISHED
            cell = open_cells[self.turn % len(open_cells)]  # round robin: every cell's search advances
            self.turn += 1
            sample = f"cell{cell}-sample{self.drawn[cell]}"
            params = self.inner[cell].suggest(sample)
            if params is None:
                return None
            self.drawn[cell] += 1
            self.scores[sample] = {}
            self.params[sample] = params
            self.queue = [(cell, sample, params, seed) for seed in self.seeds]
        cell, sample, params, seed = self.queue.pop(0)
        c = self.cells[cell]
        cfg = resolve_config({**c["overrides"], **params, "seed": seed})
        self.trials[trial_id] = (cell, sample, seed, cfg.select)
        return {PARAM: TrialSpec.build(cfg, c["variant"], self.search.params).to_param()}

    def on_trial_result(self, trial_id: str, result: dict[str, Any]) -> None:
        if "epoch" in result:
            self.history.setdefault(trial_id, {})[int(result["epoch"])] = result

    def on_trial_complete(self, trial_id: str, result: dict[str, Any] | None = None, error: bool = False) -> None:
        if trial_id not in self.trials:
            return
        if result:
            self.on_trial_result(trial_id, result)
        cell, sample, seed, select = self.trials.pop(trial_id)
        # the epochs a driver killed mid-trial never re-delivers are in the trial's last checkpoint
        seen = {**self._stored_history(result), **self.history.pop(trial_id, {})}
        chosen = selected_epoch([seen[e] for e in sorted(seen)], select)
        score = chosen.get(self.search.metric) if chosen is not None else None
        self.scores[sample][seed] = score if not error and is_finite(score) else None
        if len(self.scores[sample]) == len(self.seeds):
            vals = [v for v in self.scores.pop(sample).values() if v is not None]
            objective = sum(vals) / len(vals) if vals else None
            if objective is not None:
                self.inner[cell].on_trial_complete(sample, {self.search.metric: objective})
            else:
                self.inner[cell].on_trial_complete(sample, None, error=True)
            params = self.params.pop(sample)
            if self.journal is not None:
                self.journal.record(cell, sample, params, {k: p.to_optuna() for k, p in self.search.params.items()},
                                    objective, len(vals))

    def _stored_history(self, result: dict[str, Any] | None) -> dict[int, dict[str, Any]]:
        """epoch -> record (test metrics stripped) from the checkpoint ``result`` names; {} without one."""
        path = checkpoint_location((result or {}).get("checkpoint_path"), self.sweep_dir)
        if not path:
            return {}
        try:
            return {int(m["epoch"]): for_choices(m) for m in history_from_checkpoint(path)}
        except UserError:  # a damaged copy: the delivered results still count
            return {}

    def save(self, checkpoint_path: str) -> None:
        with open(checkpoint_path, "wb") as f:
            pickle.dump(self.__dict__.copy(), f)

    def restore(self, checkpoint_path: str) -> None:
        with open(checkpoint_path, "rb") as f:
            self.__dict__.update(pickle.load(f))
