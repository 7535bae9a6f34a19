"""One trial as the sweep sees it (``TrialSpec``), and the facts a trial reports beside its metrics (``TrialFacts``).

``TrialSpec`` is the sweep's counterpart of ``TrialConfig``: the config resolved once, the ablation variant,
the grid cell and configuration it belongs to, and its seed. It is built in one place (``TrialSpec.build``:
the grid's expansion and the searcher's suggestions call it), Tune's ``param_space`` holds only its
serialisation (``to_param`` under ``PARAM``), and every sweep module reads a Tune trial's value through one
accessor, ``trial_spec``. Ray-free, so the plan and the dry run use it without importing Ray.
"""

from __future__ import annotations

import dataclasses
from collections.abc import Iterable, Mapping
from dataclasses import dataclass
from typing import Any

from ...model.config import TrialConfig, complete
from ...model.resolve import resolve_config

PARAM = "trial"  # the one key of a Tune trial's config: {PARAM: TrialSpec.to_param()}


def _config(cfg: TrialConfig | Mapping[str, Any]) -> TrialConfig:
    return cfg if isinstance(cfg, TrialConfig) else resolve_config(dict(cfg))


def configuration_key(cfg: TrialConfig | Mapping[str, Any]) -> str:
    """What a configuration's seeds share: the config hash without the seed (results' ``group_hash``)."""
    return _config(cfg).hash(exclude=("seed",))


def cell_key(cfg: TrialConfig | Mapping[str, Any], searched: Iterable[str]) -> str:
    """The grid cell of a trial: its config hash without the seed and the searched fields. Searches,
    early stopping and winners compare configurations within a cell only (a config's dict: a results row's)."""
    return _config(cfg).hash(exclude=("seed", *searched))


@dataclass(frozen=True)
class TrialSpec:
    """One trial: its resolved config, variant, cell and configuration keys (module docstring)."""

    cfg: TrialConfig
    variant: str | None
    cell: str  # cell_key: the config without the seed and the searched fields
    configuration: str  # configuration_key: the config without the seed

    @classmethod
    def build(cls, cfg: TrialConfig, variant: str | None, searched: Iterable[str] = ()) -> TrialSpec:
        """The one constructor: ``cfg`` is already resolved (``resolve_config``), the keys are derived here."""
        return cls(cfg, variant, cell_key(cfg, searched), configuration_key(cfg))

    @property
    def seed(self) -> int:
        return self.cfg.seed

    def to_param(self) -> dict[str, Any]:
        """Plain data for Tune's trial config and ``sweep.json`` (so it survives a restore)."""
        return {"cfg": self.cfg.to_dict(), "variant": self.variant, "cell": self.cell,
                "configuration": self.configuration}

    @classmethod
    def from_param(cls, param: Mapping[str, Any]) -> TrialSpec:
        """Back from ``to_param``: the config is resolved (and checked on this node, plugins loaded) once. A grid
        trial of a plan stored before the keys were (its driver died before Tune saved state; a search's trials
        come from this version's searcher) gets them derived: a grid searches no field."""
        cfg = resolve_config(complete(dict(param["cfg"])))
        if "cell" not in param:
            return cls.build(cfg, param.get("variant"))
        return cls(cfg, param.get("variant"), param["cell"], param["configuration"])

    def with_device(self, device: str) -> TrialSpec:
        """The same trial on ``device`` (an execution field: neither key changes)."""
        return dataclasses.replace(self, cfg=dataclasses.replace(self.cfg, device=device))


_SPECS: dict[str, tuple[Mapping[str, Any], TrialSpec]] = {}  # trial id -> (its param, the value built from it)


def trial_spec(trial: Any) -> TrialSpec:
    """The one accessor: the ``TrialSpec`` a Tune trial (or a trial's config dict) carries. Built once per
    trial in this process: the driver's callbacks, searcher and scheduler ask on every result."""
    config = trial if isinstance(trial, Mapping) else trial.config
    param = config[PARAM]
    tid = None if isinstance(trial, Mapping) else trial.trial_id
    cached = _SPECS.get(tid) if tid is not None else None
    if cached is not None and cached[0] is param:
        return cached[1]
    spec = TrialSpec.from_param(param)
    if tid is not None:
        _SPECS[tid] = (param, spec)
    return spec


@dataclass(frozen=True)
class TrialFacts:
    """What a trial reports beside each epoch's metrics, about where and how it ran (keys of Tune's results).

    ``gpus_held``: the GPUs the trial reserved (the trials table's ``gpus``); ``resumed``: this run went on from
    a checkpoint; ``world_size``: its DDP ranks; ``train_pg_id``: the Train run's placement group (hex), which
    ``ReleaseTrainResources`` frees once the trial has ended (None in Tune's own process).
    """

    gpus_held: float
    resumed: bool
    world_size: int
    train_pg_id: str | None = None

    @classmethod
    def names(cls) -> tuple[str, ...]:
        return tuple(f.name for f in dataclasses.fields(cls))

    def to_result(self) -> dict[str, Any]:
        return dataclasses.asdict(self)

    @classmethod
    def of(cls, result: Mapping[str, Any], default_gpus: float = 0.0) -> TrialFacts:
        """The facts in a Tune result (a trial that never reported: none held beyond ``default_gpus``)."""
        return cls(gpus_held=float(result.get("gpus_held", default_gpus)), resumed=bool(result.get("resumed", False)),
                   world_size=int(result.get("world_size", 1)), train_pg_id=result.get("train_pg_id"))
