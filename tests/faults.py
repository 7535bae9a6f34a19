"""Methods that fail on purpose, for tests only: a plugin (``CYCLESEG_PLUGINS=tests.faults``) that registers

- ``fault_nan_E``: cyclegan whose loss turns NaN in the first step of epoch E (the run must end as diverged);
- ``fault_crash_E``: cyclegan that raises in the first step of epoch E, unless it resumed from a checkpoint
  (a worker failure that a restart from the last checkpoint gets past);
- ``fault_kill_E``: the same, but its process dies by SIGKILL (a lost worker: no exception, no clean-up).

They train exactly like cyclegan otherwise (same networks, init and batches), so their numbers can be
compared with a clean cyclegan run.
"""

from __future__ import annotations

import dataclasses
import os
import signal
from typing import Any

from torch import Tensor

from cycleseg.model.methods import METHODS, Batch, CycleGAN


class _Fault(CycleGAN):
    KIND = ""
    EPOCH = 0

    def __init__(self, *args: Any, **kwargs: Any) -> None:
        super().__init__(*args, **kwargs)
        self.resumed = False

    def load_state_dict(self, state: dict[str, Any]) -> None:
        super().load_state_dict(state)
        self.resumed = True

    def optimize_parameters(self, batch: Batch) -> dict[str, Tensor]:
        per_epoch = self.total_iters // self.cfg.epochs
        if self.iteration % per_epoch == 0 and self.iteration // per_epoch + 1 == self.EPOCH:
            if self.KIND == "crash" and not self.resumed:
                raise RuntimeError(f"injected crash in epoch {self.EPOCH}")
            if self.KIND == "kill" and not self.resumed:
                os.kill(os.getpid(), signal.SIGKILL)
            if self.KIND == "nan":
                batch = dataclasses.replace(batch, x=batch.x * float("nan"))
        return super().optimize_parameters(batch)


for _kind, _epoch in (("nan", 1), ("crash", 1), ("crash", 2), ("kill", 2)):
    _name = f"fault_{_kind}_{_epoch}"
    METHODS.register(_name)(type(_name, (_Fault,), {"KIND": _kind, "EPOCH": _epoch}))
