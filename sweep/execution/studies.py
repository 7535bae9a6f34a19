"""Each grid cell's search as an Optuna study, in one journal file in the sweep folder, for optuna-dashboard.

The searcher (``search.CellSearcher``) keeps its own studies in memory, pickled with Tune's state. This
module mirrors them for the tools Optuna users already open: each configuration, once all its seeds have
ended, is added to its cell's study (named after the cell, e.g. ``labeled_fraction=0.1``) with its
parameters and the objective the searcher was told (the val metric at each seed's reported epoch, averaged),
or as failed when no seed gave one. Open it with ``optuna-dashboard <sweep>/optuna.journal``.

Optuna's journal needs a local file (and a file lock): on object storage it is written to a local copy and
uploaded whole after every addition, so ``<sweep URI>/optuna.journal`` is complete; download it to open it.
"""

from __future__ import annotations

import os
import tempfile
from typing import Any

from .. import storage
from ..planning.dry_run import varying_fields

JOURNAL = "optuna.journal"
SAMPLE_ATTR = "cycleseg_sample"  # the searcher's name of the configuration: each is added once


def cell_names(rows: list[dict[str, Any]]) -> list[str]:
    """A study name per cell (``rows``: each cell's resolved config): the fields that tell the cells apart, as
    the closing summary and ``export.cell_winners`` name a cell (``labeled_fraction=0.1``)."""
    differing = [k for k in varying_fields(rows) if k != "seed"]
    return [" ".join(f"{k}={r[k]}" for k in differing) or "search" for r in rows]


class StudyJournal:
    """The sweep's ``optuna.journal``: picklable (it holds only names and paths), opened for each write."""

    def __init__(self, sweep_dir: str, names: list[str], direction: str) -> None:
        self.sweep_dir, self.names, self.direction = sweep_dir, names, direction
        self.local = ""  # object storage: the local copy (a restarted driver makes a new one)

    def record(self, cell: int, sample: str, params: dict[str, Any], distributions: dict[str, Any],
               value: float | None, seeds: int) -> None:
        """Add one finished configuration to its cell's study (once: a restarted driver may report it again)."""
        import optuna
        from optuna.storages import JournalStorage
        from optuna.storages.journal import JournalFileBackend

        path = self._local_path()
        optuna.logging.set_verbosity(optuna.logging.WARNING)
        study = optuna.create_study(study_name=self.names[cell], storage=JournalStorage(JournalFileBackend(path)),
                                    direction="maximize" if self.direction == "max" else "minimize",
                                    load_if_exists=True)
        if any(t.user_attrs.get(SAMPLE_ATTR) == sample for t in study.get_trials(deepcopy=False)):
            return
        study.add_trial(optuna.trial.create_trial(
            params=params, distributions=distributions, value=value,
            state=optuna.trial.TrialState.COMPLETE if value is not None else optuna.trial.TrialState.FAIL,
            user_attrs={SAMPLE_ATTR: sample, "seeds": seeds}))
        if storage.is_uri(self.sweep_dir):
            with open(path, "rb") as f:
                storage.write_bytes(storage.join(self.sweep_dir, JOURNAL), f.read())

    def _local_path(self) -> str:
        """The journal's file here: the sweep's own, or for object storage a local copy of the uploaded one."""
        if not storage.is_uri(self.sweep_dir):
            path = storage.join(self.sweep_dir, JOURNAL)
            os.makedirs(os.path.dirname(path), exist_ok=True)
            return path
        if self.local and os.path.isfile(self.local):
            return self.local
        self.local = os.path.join(tempfile.mkdtemp(prefix="cycleseg-journal-"), JOURNAL)
        stored = storage.read_bytes(storage.join(self.sweep_dir, JOURNAL))
        if stored is not None:  # a restarted driver goes on from what was uploaded
            with open(self.local, "wb") as f:
                f.write(stored)
        return self.local
