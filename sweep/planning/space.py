"""Search spaces: ``search_spaces/*.yaml`` parsed by a typed model, then expanded into trials (Optuna style).

A space is a ``base`` config, ``grid`` factors expanded exhaustively, named ablation ``variants``,
``seeds`` (replicates: every configuration runs with the same seeds), an optional ``search`` over
fields run inside each grid cell (Optuna's typed distributions), and an optional ASHA ``scheduler``::

    description: what the sweep is for
    base: {dataset: digits, preset: tiny, epochs: 3}   # or a path to a config YAML (best-config)
    grid: {method: [partial, cyclegan], labeled_fraction: [0.1, 0.2]}
    seeds: [0, 1]
    variants: {proposed: {}, no_label_cycle: {lambda_2: 0}}
    search: {algorithm: tpe, num_samples: 20, params: {lambda_2: {distribution: loguniform, low: 0.005, high: 0.5}}}
    scheduler: {type: asha, grace_period: 1, reduction_factor: 2}

``SpaceFile`` is the file's pydantic model: every config value in ``base``, ``grid`` and ``variants``
is checked with the type and range its ``TrialConfig`` field declares, and ``schema_json()`` is the
JSON Schema shipped as ``search_spaces/schema.json`` (editors validate a space as it is typed).

Precedence per trial, lowest first: TrialConfig defaults, ``base``, ``--set``, grid factors,
the variant's overrides, the seed. Every expanded trial is resolved (``resolve_config``) so a bad
combination fails here, before Ray starts; errors name the file, the field and the fix.
"""

from __future__ import annotations

import importlib.resources
import itertools
import json
from dataclasses import dataclass, field
from pathlib import Path
from typing import Annotated, Any, Literal

from pydantic import BaseModel, ConfigDict, Field, ValidationError, create_model, field_validator, model_validator

from ...model.config import FIELD_NAMES, TrialConfig, describe, error_line
from ...model.errors import UserError
from ...model.records import TEST_PREFIX, choice_metrics
from ...model.registry import suggest
from ...model.resolve import load_config_file, read_yaml_mapping, resolve_config
from ...search_spaces import shipped_spaces
from .spec import TrialSpec, configuration_key

SHIPPED_PACKAGE = "cycleseg.search_spaces"
DEFAULT_SPACE = "demo"
SCHEMA_FILE = "schema.json"
MODES = ("max", "min")


# ----------------------------------------------------------------------------------------------
# The file's typed model


def _field_type(name: str) -> Any:
    """Config field ``name``'s type with its declared range (what ``TrialConfig`` checks)."""
    fi = TrialConfig.__pydantic_fields__[name]
    return Annotated[(fi.annotation, *fi.metadata)] if fi.metadata else fi.annotation


_STRICT = ConfigDict(extra="forbid", coerce_numbers_to_str=True)
# Config keys, each optional; an explicit null is checked against the field's type (defaults are not).
ConfigLayer = create_model(
    "ConfigLayer", __config__=_STRICT,
    **{n: (_field_type(n), Field(None, description=describe(n))) for n in FIELD_NAMES},
)
# Grid factors: any config key, with a non-empty list of values of its type.
Grid = create_model(
    "Grid", __config__=_STRICT,
    **{n: (list[_field_type(n)], Field(None, min_length=1, description=describe(n))) for n in FIELD_NAMES},
)
FieldName = Literal[FIELD_NAMES]  # type: ignore[valid-type]


def _choice_metric(metric: str) -> str:
    """A metric a search or scheduler ranks on: reported every epoch, and never a test metric."""
    if metric.startswith(TEST_PREFIX):
        raise ValueError(f"'{metric}' is a test metric: reported, never used for a choice (choose on val, "
                         "report on test); use val_miou")
    if metric not in choice_metrics():
        raise ValueError(f"unknown metric '{metric}'{suggest(metric, choice_metrics())}; choose one of: "
                         f"{', '.join(choice_metrics())}")
    return metric


class ParamSpec(BaseModel):
    """One searched config field: ``uniform``/``loguniform``/``int`` over [low, high], or ``choice`` of values."""

    model_config = ConfigDict(extra="forbid")
    distribution: Literal["uniform", "loguniform", "int", "choice"]
    low: float | None = None
    high: float | None = None
    values: list[Any] | None = Field(None, min_length=1)

    @model_validator(mode="after")
    def _consistent(self) -> ParamSpec:
        if self.distribution == "choice":
            if self.values is None:
                raise ValueError("distribution: choice needs values: [...]")
        else:
            if self.values is not None:
                raise ValueError("values is for distribution: choice; give low and high")
            if self.low is None or self.high is None:
                raise ValueError(f"distribution: {self.distribution} needs low and high")
            self.to_optuna()  # Optuna checks low < high, log > 0 and integer bounds
        return self

    def to_optuna(self) -> Any:
        """The Optuna distribution (``FloatDistribution``, ``IntDistribution``, ``CategoricalDistribution``)."""
        from optuna.distributions import CategoricalDistribution, FloatDistribution, IntDistribution

        if self.distribution == "choice":
            return CategoricalDistribution(self.values)
        if self.distribution == "int":
            if not (float(self.low).is_integer() and float(self.high).is_integer()):
                raise ValueError("distribution: int needs whole-number low and high")
            return IntDistribution(int(self.low), int(self.high))
        if self.distribution == "loguniform" and self.low <= 0:
            raise ValueError(f"loguniform needs low > 0, got {self.low}; use uniform to include 0")
        if not self.low < self.high:
            raise ValueError(f"low ({self.low}) must be below high ({self.high})")
        return FloatDistribution(self.low, self.high, log=self.distribution == "loguniform")

    def bounds(self) -> tuple[Any, ...]:
        """The extreme values, resolved as configs before anything runs."""
        return tuple(self.values) if self.distribution == "choice" else (self.low, self.high)


class SearchSpec(BaseModel):
    """Optuna TPE (or random) sampling of ``params`` inside each grid cell, ``num_samples`` per cell.

    The objective of one sampled configuration is ``metric`` at its best epoch, averaged over the
    seeds; ``points_to_evaluate`` (e.g. the paper's values) are tried first.
    """

    model_config = ConfigDict(extra="forbid")
    algorithm: Literal["tpe", "random"] = "tpe"
    num_samples: Annotated[int, Field(ge=1)] = 10
    metric: str = "val_miou"
    mode: Literal[MODES] = "max"  # type: ignore[valid-type]
    seed: Annotated[int, Field(ge=0)] = 0
    startup_trials: Annotated[int, Field(ge=1)] = Field(
        10, description="tpe: random samples per cell before TPE models the results (Optuna's n_startup_trials)")
    params: dict[FieldName, ParamSpec] = Field(min_length=1)
    points_to_evaluate: list[dict[FieldName, Any]] = []

    _metric = field_validator("metric")(_choice_metric)

    @model_validator(mode="after")
    def _points_give_every_param(self) -> SearchSpec:
        names = set(self.params)
        for i, pt in enumerate(self.points_to_evaluate):
            if set(pt) != names:
                raise ValueError(f"points_to_evaluate[{i}] must give exactly the searched fields "
                                 f"({', '.join(self.params)}), got {', '.join(pt)}")
        return self


class SchedulerSpec(BaseModel):
    """ASHA early stopping on ``metric`` per epoch; ``max_t`` None = the trials' epochs."""

    model_config = ConfigDict(extra="forbid")
    type: Literal["asha"] = "asha"
    metric: str = "val_miou"
    mode: Literal[MODES] = "max"  # type: ignore[valid-type]
    grace_period: Annotated[int, Field(ge=1)] = 1
    reduction_factor: Annotated[int, Field(ge=2)] = 2
    max_t: Annotated[int, Field(ge=1)] | None = None

    _metric = field_validator("metric")(_choice_metric)


class SpaceFile(BaseModel):
    """A search-space YAML file (``base`` already read when the file gives a path)."""

    model_config = ConfigDict(extra="forbid", title="cycleseg search space")
    description: str = ""
    base: ConfigLayer = Field(default_factory=ConfigLayer, description="config every trial starts from")  # type: ignore[valid-type]
    grid: Grid | None = Field(None, description="factors expanded exhaustively (non-empty lists)")  # type: ignore[valid-type]
    seeds: list[_field_type("seed")] | None = Field(  # type: ignore[valid-type]
        None, min_length=1, description="replicates: every configuration runs with each seed"
    )
    variants: dict[str, ConfigLayer] | None = Field(  # type: ignore[valid-type]
        None, min_length=1, description="named ablation overrides, e.g. no_label_cycle: {lambda_2: 0}"
    )
    search: SearchSpec | None = None
    scheduler: SchedulerSpec | None = None

    @model_validator(mode="after")
    def _scheduler_needs_a_search(self) -> SpaceFile:
        if self.scheduler is not None and self.search is None:
            raise ValueError("early stopping compares configurations within a grid cell, and without a search: "
                             "section every cell holds one configuration, so it would never stop a trial; add a "
                             "search: (e.g. distribution: choice over the values you grid) or remove scheduler:")
        return self


class _SpaceFileSchema(SpaceFile):
    base: ConfigLayer | str = Field(  # type: ignore[valid-type]
        default_factory=ConfigLayer, description="config every trial starts from, or a config YAML's path"
    )


def schema_json() -> str:
    """The JSON Schema of a search-space file (shipped as ``search_spaces/schema.json``)."""
    return json.dumps(_SpaceFileSchema.model_json_schema(), indent=1, sort_keys=True) + "\n"


_KEYS_AT = {
    (): tuple(SpaceFile.model_fields),
    ("search",): tuple(SearchSpec.model_fields),
    ("scheduler",): tuple(SchedulerSpec.model_fields),
}


def _space_error(e: ValidationError, where: str) -> str:
    errors = e.errors(include_url=False)
    err = next((x for x in errors if x["type"] == "extra_forbidden"), errors[0])  # a typo explains the rest
    loc = tuple(err["loc"])
    parent, key = loc[:-1], str(loc[-1]) if loc else ""
    if err["type"] == "extra_forbidden":
        config_level = parent[:1] in (("base",), ("grid",)) or parent[:1] == ("variants",)
        allowed = FIELD_NAMES if config_level else _KEYS_AT.get(parent, tuple(ParamSpec.model_fields))
        what = ".".join(map(str, parent)) or "the top level"
        kind = "config key" if config_level else "key"
        return f"{where}unknown {kind} '{key}' in {what}{suggest(key, allowed)}; allowed: {', '.join(allowed)}"
    if err["type"] == "literal_error" and loc[:2] == ("search", "params"):
        return f"{where}search.params: unknown config key '{err['input']}'{suggest(str(err['input']), FIELD_NAMES)}"
    name = ".".join(f"[{p}]" if isinstance(p, int) else str(p) for p in loc).replace(".[", "[")
    if err["type"] in ("dict_type", "model_type", "model_attributes_type"):
        return f"{where}{name} must be a mapping (key: value lines), got {type(err['input']).__name__}"
    if err["type"] == "list_type":
        return f"{where}{name} must be a list, e.g. [0.1, 0.2], got {err['input']!r}"
    if err["type"] == "too_short":
        return f"{where}{name} is empty; list at least one value or remove it"
    if err["type"] == "missing":
        return f"{where}{name} is required"
    if err["type"] == "value_error":
        return f"{where}{name + ': ' if name else ''}{err['msg'].removeprefix('Value error, ')}"
    field_name = next((str(p) for p in reversed(loc) if str(p) in FIELD_NAMES), None)
    line = error_line(ValidationError.from_exception_data("x", [{**err, "loc": (field_name or name,)}]))
    return f"{where}{line.replace(field_name or name, name, 1)}"


# ----------------------------------------------------------------------------------------------
# The expanded space


@dataclass(frozen=True)
class Cell:
    """One configuration before seeds: the overrides over the defaults, and its variant name."""

    overrides: dict[str, Any]
    variant: str | None


@dataclass(frozen=True)
class SearchSpace:
    path: Path
    base: dict[str, Any]
    grid: dict[str, tuple[Any, ...]] = field(default_factory=dict)
    seeds: tuple[int, ...] | None = None  # None: the base's seed
    variants: dict[str, dict[str, Any]] = field(default_factory=dict)
    search: SearchSpec | None = None
    scheduler: SchedulerSpec | None = None
    description: str = ""

    @property
    def name(self) -> str:
        return self.path.stem

    def cells(self, sets: dict[str, Any] | None = None) -> list[Cell]:
        """Grid × variants (no seeds), each resolved once to validate it; identical configs once."""
        base = {**self.base, **(sets or {})}
        variants: list[tuple[str | None, dict[str, Any]]] = list(self.variants.items()) or [(None, {})]
        out: list[Cell] = []
        seen: set[str] = set()
        keys = list(self.grid)
        for name, overrides in variants:
            for combo in itertools.product(*(self.grid[k] for k in keys)):
                factors = dict(zip(keys, combo, strict=True))
                layer = {**base, **factors, **overrides}
                cfg = self._resolve(layer, name, factors)
                if self.search is not None:  # both ends of every range, and each given point, must be valid
                    points = [{p: v} for p, spec in self.search.params.items() for v in spec.bounds()]
                    for point in points + list(self.search.points_to_evaluate):
                        self._resolve({**layer, **point}, name, point)
                key = configuration_key(cfg)
                if key not in seen:
                    seen.add(key)
                    out.append(Cell(layer, name))
        return out

    def shadowed(self, sets: dict[str, Any]) -> tuple[list[str], list[str]]:
        """``--set`` keys the space overrides: (in every trial: grid factors, seeds, the search's parameters;
        in some trials only: a variant's fields)."""
        every = set(self.grid) | (set(self.search.params) if self.search is not None else set())
        if self.seeds is not None:
            every.add("seed")
        if self.variants:  # a field every variant sets is set in every trial
            every |= set.intersection(*(set(v) for v in self.variants.values()))
        some = {k for v in self.variants.values() for k in v} - every
        return sorted(k for k in sets if k in every), sorted(k for k in sets if k in some)

    def replicate_seeds(self, sets: dict[str, Any] | None = None) -> tuple[int, ...]:
        if self.seeds is not None:
            return self.seeds
        return (int({**self.base, **(sets or {})}.get("seed", TrialConfig().seed)),)

    def expand(self, sets: dict[str, Any] | None = None) -> list[TrialSpec]:
        """Every grid trial: cells × seeds (seeds outermost: one full pass per seed), deduplicated
        by config hash (e.g. ``full`` forces labeled_fraction=1.0, so its fractions collapse)."""
        if self.search is not None:
            raise ValueError("a space with `search` samples its trials while it runs; use cells()")
        specs: list[TrialSpec] = []
        seen: set[str] = set()
        cells = self.cells(sets)
        for seed in self.replicate_seeds(sets):
            for cell in cells:
                cfg = self._resolve({**cell.overrides, "seed": seed}, cell.variant, {"seed": seed})
                if cfg.hash() not in seen:
                    seen.add(cfg.hash())
                    specs.append(TrialSpec.build(cfg, cell.variant))
        return specs

    def num_trials(self, sets: dict[str, Any] | None = None) -> int:
        if self.search is None:
            return len(self.expand(sets))
        return len(self.cells(sets)) * self.search.num_samples * len(self.replicate_seeds(sets))

    def _resolve(self, layer: dict[str, Any], variant: str | None, where: dict[str, Any]) -> TrialConfig:
        try:
            return resolve_config(layer)
        except UserError as e:
            ctx = ", ".join(f"{k}={v}" for k, v in where.items())
            ctx = (f"variant '{variant}'" + (f", {ctx}" if ctx else "")) if variant else ctx
            raise UserError(f"{self.path}: {e}" + (f" (in the trial with {ctx})" if ctx else "")) from None


# ----------------------------------------------------------------------------------------------
# Reading


def resolve_space_path(path: str | Path | None) -> Path:
    """``path`` as given, else a shipped space of that name (``table1``, ``demo.yaml``)."""
    shipped = shipped_spaces()
    if path is None:
        path = DEFAULT_SPACE
    p = Path(path)
    if p.is_file():
        return p
    name = p.name[: -len(".yaml")] if p.name.endswith(".yaml") else p.name
    if name in shipped and p.name in (name, f"{name}.yaml"):
        with importlib.resources.as_file(shipped[name]) as f:
            return Path(f)
    raise UserError(f"search space '{path}' does not exist; pass a YAML file or one of the shipped spaces: "
                    f"{', '.join(sorted(shipped))}")


def _read_base(raw: Any, path: Path) -> Any:
    """A ``base:`` that names a config YAML (e.g. from best-config) is read here; relative to the space file."""
    if not isinstance(raw, str):
        return raw
    f = Path(raw).expanduser()
    if not f.is_absolute() and (path.parent / f).is_file():
        f = path.parent / f
    if not f.is_file():
        raise UserError(f"{path}: base: config file '{raw}' not found (relative paths start at {path.parent})")
    return load_config_file(f)


def load_space(path: str | Path | None) -> SearchSpace:
    """Read and check a space file; every problem is a ``UserError`` naming the file and the field."""
    p = resolve_space_path(path)
    where = f"{p}: "
    data = read_yaml_mapping(p, "search space")
    if "base" in data:
        data["base"] = _read_base(data["base"], p)
    grid_raw = data.get("grid")
    if isinstance(grid_raw, dict) and not grid_raw:
        raise UserError(f"{where}grid is empty; list a factor (e.g. method: [partial, cyclegan]) or remove it")
    try:
        f = SpaceFile.model_validate(data)
    except ValidationError as e:
        raise UserError(_space_error(e, where)) from None
    grid = {k: tuple(v) for k, v in (f.grid.model_dump(exclude_unset=True) if f.grid else {}).items()}
    for k, vals in grid.items():
        if len(set(map(json.dumps, vals))) != len(vals):
            raise UserError(f"{where}grid.{k} lists a value twice; list each value once")
    seeds = tuple(f.seeds) if f.seeds is not None else None
    if "seed" in grid:
        if seeds is not None:
            raise UserError(f"{where}seeds given twice (seeds and grid.seed); keep one")
        seeds = grid.pop("seed")
    if seeds is not None and len(set(seeds)) != len(seeds):
        raise UserError(f"{where}seeds lists a seed twice; list each seed once")
    if f.search is not None:
        both = sorted(set(f.search.params) & (set(grid) | {"seed"}))
        if both:
            raise UserError(f"{where}search.params.{both[0]}: '{both[0]}' is a grid factor or the seed; "
                            "search it or grid it, not both")
    variants = {name: v.model_dump(exclude_unset=True) for name, v in (f.variants or {}).items()}
    space = SearchSpace(p, f.base.model_dump(exclude_unset=True), grid, seeds, variants, f.search, f.scheduler,
                        f.description)
    space.cells()  # resolves every configuration now, before any --set
    return space

