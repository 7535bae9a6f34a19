"""Search spaces: ``search_spaces/*.yaml`` parsed and validated into typed objects (Optuna style).

A space is a ``base`` config, ``grid`` factors expanded exhaustively, named ablation ``variants``,
``seeds`` (replicates: every configuration runs with the same seeds), an optional ``search`` over
continuous fields run inside each grid cell, and an optional ASHA ``scheduler``::

    description: what the sweep is for
    base: {dataset: digits, preset: tiny, epochs: 3}   # or a path to a config YAML (best-config)
    grid: {method: [partial, cyclegan], labeled_fraction: [0.1, 0.2]}
    seeds: [0, 1]
    variants: {proposed: {}, no_label_cycle: {lambda_2: 0}}
    search: {algorithm: tpe, num_samples: 20, params: {lambda_2: {distribution: loguniform, low: 0.005, high: 0.5}}}
    scheduler: {type: asha, grace_period: 1, reduction_factor: 2}

Precedence per trial, lowest first: TrialConfig defaults, ``base``, ``--set``, grid factors,
the variant's overrides, the seed. Every expanded trial is checked with ``resolve_config`` so bad
values fail here, before Ray starts; errors name the file, the field and the fix.
"""

from __future__ import annotations

import itertools
import math
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import yaml

from model.config import FIELD_NAMES, TrialConfig, coerce_value, load_config_file, resolve_config
from model.errors import UserError
from model.registry import suggest

SHIPPED_DIR = Path(__file__).resolve().parents[1] / "search_spaces"
DEFAULT_SPACE = SHIPPED_DIR / "demo.yaml"

TOP_KEYS = ("description", "base", "grid", "seeds", "variants", "search", "scheduler")
SEARCH_KEYS = ("algorithm", "num_samples", "metric", "mode", "seed", "params", "points_to_evaluate")
PARAM_KEYS = ("distribution", "low", "high", "values")
SCHEDULER_KEYS = ("type", "metric", "mode", "grace_period", "reduction_factor", "max_t")
ALGORITHMS = ("tpe", "random")
DISTRIBUTIONS = ("uniform", "loguniform", "int", "choice")
MODES = ("max", "min")


@dataclass(frozen=True)
class SearchParam:
    """One searched config field: ``uniform``/``loguniform``/``int`` over [low, high], or ``choice``."""

    name: str
    distribution: str
    low: float | None = None
    high: float | None = None
    values: tuple[Any, ...] = ()

    def bounds(self) -> tuple[Any, ...]:
        """The extreme values, checked through ``resolve_config`` before anything runs."""
        return self.values if self.distribution == "choice" else (self.low, self.high)

    def tune_domain(self) -> Any:
        from ray import tune

        if self.distribution == "uniform":
            return tune.uniform(self.low, self.high)
        if self.distribution == "loguniform":
            return tune.loguniform(self.low, self.high)
        if self.distribution == "int":
            return tune.randint(int(self.low), int(self.high) + 1)  # randint excludes its upper end
        return tune.choice(list(self.values))


@dataclass(frozen=True)
class Search:
    """Optuna TPE (or random) sampling of ``params`` inside each grid cell, ``num_samples`` per cell.

    The objective of one sampled configuration is ``metric`` at its best epoch, averaged over the
    seeds; ``points_to_evaluate`` (e.g. the paper's values) are tried first.
    """

    params: tuple[SearchParam, ...]
    algorithm: str = "tpe"
    num_samples: int = 10
    metric: str = "val_miou"
    mode: str = "max"
    seed: int = 0
    points_to_evaluate: tuple[dict[str, Any], ...] = ()


@dataclass(frozen=True)
class Scheduler:
    """ASHA early stopping on ``metric`` per epoch; ``max_t`` None = the trials' epochs."""

    type: str = "asha"
    metric: str = "val_miou"
    mode: str = "max"
    grace_period: int = 1
    reduction_factor: int = 2
    max_t: int | None = None


@dataclass(frozen=True)
class Cell:
    """One configuration before seeds: the overrides over the defaults, and its variant name."""

    overrides: dict[str, Any]
    variant: str | None


@dataclass(frozen=True)
class TrialSpec:
    """One expanded trial: the resolved config and the ablation variant it came from."""

    cfg: TrialConfig
    variant: str | None

    def to_param(self) -> dict[str, Any]:
        """What a Tune trial carries in its config (plain data, so it survives a restore)."""
        return {"cfg": self.cfg.to_dict(), "variant": self.variant}


@dataclass(frozen=True)
class SearchSpace:
    path: Path
    base: dict[str, Any]
    grid: dict[str, tuple[Any, ...]] = field(default_factory=dict)
    seeds: tuple[int, ...] | None = None  # None: the base's seed
    variants: dict[str, dict[str, Any]] = field(default_factory=dict)
    search: Search | None = None
    scheduler: Scheduler | None = None
    description: str = ""

    @property
    def name(self) -> str:
        return self.path.stem

    def _where(self) -> str:
        return f"{self.path}: "

    def cells(self, sets: dict[str, Any] | None = None) -> list[Cell]:
        """Grid × variants (no seeds), each resolved once to validate it; identical configs once."""
        base = {**self.base, **(sets or {})}
        variants: list[tuple[str | None, dict[str, Any]]] = list(self.variants.items()) or [(None, {})]
        out: list[Cell] = []
        seen: set[str] = set()
        keys = list(self.grid)
        for name, overrides in variants:
            for combo in itertools.product(*(self.grid[k] for k in keys)):
                layer = {**base, **dict(zip(keys, combo, strict=True)), **overrides}
                cfg = self._resolve(layer, name, dict(zip(keys, combo, strict=True)))
                if self.search is not None:  # both ends of every range, and each given point, must be valid
                    points = [{p.name: v} for p in self.search.params for v in p.bounds()]
                    for point in points + list(self.search.points_to_evaluate):
                        self._resolve({**layer, **point}, name, point)
                key = cfg.hash(exclude=("seed",))
                if key not in seen:
                    seen.add(key)
                    out.append(Cell(layer, name))
        return out

    def shadowed(self, sets: dict[str, Any]) -> list[str]:
        """``--set`` keys that grid factors, seeds or variants override in some trial."""
        keys = set(self.grid) | {k for v in self.variants.values() for k in v}
        if self.seeds is not None:
            keys.add("seed")
        if self.search is not None:
            keys |= {p.name for p in self.search.params}
        return sorted(k for k in sets if k in keys)

    def replicate_seeds(self, sets: dict[str, Any] | None = None) -> tuple[int, ...]:
        if self.seeds is not None:
            return self.seeds
        return (int({**self.base, **(sets or {})}.get("seed", TrialConfig.seed)),)

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
                    specs.append(TrialSpec(cfg, cell.variant))
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
            raise UserError(f"{self._where()}{e}" + (f" (in the trial with {ctx})" if ctx else "")) from None


# ----------------------------------------------------------------------------------------------
# Parsing


def resolve_space_path(path: str | Path | None) -> Path:
    """``path`` as given, else a shipped space of that name (``table1``, ``demo.yaml``)."""
    if path is None:
        return DEFAULT_SPACE
    p = Path(path)
    if p.is_file():
        return p
    for candidate in (SHIPPED_DIR / p.name, SHIPPED_DIR / f"{p.name}.yaml"):
        if candidate.is_file():
            return candidate
    shipped = ", ".join(sorted(q.stem for q in SHIPPED_DIR.glob("*.yaml")))
    raise UserError(f"search space '{path}' does not exist; pass a YAML file or one of the shipped spaces: {shipped}")


def load_space(path: str | Path | None) -> SearchSpace:
    """Read and validate a space file; every problem is a ``UserError`` naming file and field."""
    p = resolve_space_path(path)
    where = f"{p}: "
    try:
        data = yaml.safe_load(p.read_text())
    except yaml.YAMLError as e:
        raise UserError(f"{where}not valid YAML: {str(e).splitlines()[0]}") from None
    if not isinstance(data, dict):
        raise UserError(f"{where}a search space is a mapping with keys {', '.join(TOP_KEYS)}")
    _check_keys(data, TOP_KEYS, where, "top level")

    base = _parse_base(data.get("base"), p, where)
    grid = _parse_grid(data, where)
    seeds = _parse_seeds(data, grid, where)
    variants = _parse_variants(data.get("variants"), where)
    search = _parse_search(data["search"], where, grid) if "search" in data else None
    scheduler = _parse_scheduler(data["scheduler"], where) if "scheduler" in data else None
    description = data.get("description") or ""
    if not isinstance(description, str):
        raise UserError(f"{where}description must be text")
    space = SearchSpace(p, base, grid, seeds, variants, search, scheduler, description)
    space.cells()  # validates every configuration now, before any --set
    return space


def _check_keys(d: dict, allowed: tuple[str, ...], where: str, what: str) -> None:
    for k in d:
        if k not in allowed:
            raise UserError(
                f"{where}unknown key '{k}' in {what}{suggest(str(k), allowed)}; allowed: {', '.join(allowed)}"
            )


def _mapping(value: Any, where: str, what: str) -> dict:
    if value is None:
        return {}
    if not isinstance(value, dict):
        raise UserError(f"{where}{what} must be a mapping (key: value lines), got {type(value).__name__}")
    return value


def _coerce_fields(d: dict, where: str, what: str) -> dict[str, Any]:
    return {k: coerce_value(str(k), v, where=f"{where}{what}: ") for k, v in d.items() if not str(k).startswith("_")}


def _parse_base(raw: Any, path: Path, where: str) -> dict[str, Any]:
    if isinstance(raw, str):  # a config YAML, e.g. from best-config; relative to the space file
        f = Path(raw).expanduser()
        if not f.is_absolute() and (path.parent / f).is_file():
            f = path.parent / f
        if not f.is_file():
            raise UserError(f"{where}base: config file '{raw}' not found (relative paths start at {path.parent})")
        return load_config_file(f)
    return _coerce_fields(_mapping(raw, where, "base"), where, "base")


def _values(raw: Any, where: str, what: str) -> list[Any]:
    if not isinstance(raw, list):
        raise UserError(f"{where}{what} must be a list, e.g. [0.1, 0.2], got {raw!r}")
    if not raw:
        raise UserError(f"{where}{what} is empty; list at least one value or remove it")
    return raw


def _parse_grid(data: dict, where: str) -> dict[str, tuple[Any, ...]]:
    if "grid" not in data:
        return {}
    raw = data["grid"]
    if not raw:
        raise UserError(
            f"{where}grid is empty; list at least one factor (e.g. method: [partial, cyclegan]) or remove it"
        )
    raw = _mapping(raw, where, "grid")
    grid: dict[str, tuple[Any, ...]] = {}
    for k, v in raw.items():
        vals = _values(v, where, f"grid.{k}")
        grid[str(k)] = tuple(coerce_value(str(k), x, where=f"{where}grid.{k}: ") for x in vals)
        if len(set(grid[str(k)])) != len(grid[str(k)]):
            raise UserError(f"{where}grid.{k} lists a value twice; list each value once")
    return grid


def _parse_seeds(data: dict, grid: dict[str, tuple[Any, ...]], where: str) -> tuple[int, ...] | None:
    if "seed" in grid:
        if "seeds" in data:
            raise UserError(f"{where}seeds given twice (seeds and grid.seed); keep one")
        return tuple(grid.pop("seed"))
    if "seeds" not in data:
        return None
    seeds = tuple(coerce_value("seed", s, where=f"{where}seeds: ") for s in _values(data["seeds"], where, "seeds"))
    if len(set(seeds)) != len(seeds):
        raise UserError(f"{where}seeds lists a seed twice; list each seed once")
    return seeds


def _parse_variants(raw: Any, where: str) -> dict[str, dict[str, Any]]:
    if raw is not None and not raw:
        raise UserError(f"{where}variants is empty; name at least one (e.g. proposed: {{}}) or remove it")
    out: dict[str, dict[str, Any]] = {}
    for name, overrides in _mapping(raw, where, "variants").items():
        out[str(name)] = _coerce_fields(_mapping(overrides, where, f"variants.{name}"), where, f"variants.{name}")
    return out


def _number(raw: Any, where: str, what: str, *, kind: type = float, minimum: float | None = None) -> Any:
    ok = isinstance(raw, int | float) and not isinstance(raw, bool)
    if ok and kind is int and isinstance(raw, float) and not raw.is_integer():
        ok = False
    if not ok or not math.isfinite(raw):
        raise UserError(f"{where}{what} needs a {kind.__name__}, got {raw!r}")
    if minimum is not None and raw < minimum:
        raise UserError(f"{where}{what} must be >= {minimum}, got {raw}")
    return kind(raw)


def _choice(raw: Any, choices: tuple[str, ...], where: str, what: str) -> str:
    if raw not in choices:
        raise UserError(f"{where}{what} '{raw}' is not one of: {', '.join(choices)}{suggest(str(raw), choices)}")
    return str(raw)


def _parse_search(raw: Any, where: str, grid: dict[str, tuple[Any, ...]]) -> Search:
    d = _mapping(raw, where, "search")
    _check_keys(d, SEARCH_KEYS, where, "search")
    params_raw = _mapping(d.get("params"), where, "search.params")
    if not params_raw:
        raise UserError(
            f"{where}search.params is empty; name the fields to search, "
            "e.g. lambda_2: {distribution: loguniform, low: 0.005, high: 0.5}"
        )
    params = tuple(_parse_param(str(k), v, where, grid) for k, v in params_raw.items())
    names = [p.name for p in params]
    points: list[dict[str, Any]] = []
    for i, pt in enumerate(d.get("points_to_evaluate") or []):
        what = f"search.points_to_evaluate[{i}]"
        pt = _mapping(pt, where, what)
        if set(pt) != set(names):
            raise UserError(
                f"{where}{what} must give exactly the searched fields ({', '.join(names)}), "
                f"got {', '.join(map(str, pt))}"
            )
        points.append(_coerce_fields(pt, where, what))
    return Search(
        params=params,
        algorithm=_choice(d.get("algorithm", "tpe"), ALGORITHMS, where, "search.algorithm"),
        num_samples=_number(d.get("num_samples", 10), where, "search.num_samples", kind=int, minimum=1),
        metric=_metric(d.get("metric", "val_miou"), where, "search.metric"),
        mode=_choice(d.get("mode", "max"), MODES, where, "search.mode"),
        seed=_number(d.get("seed", 0), where, "search.seed", kind=int, minimum=0),
        points_to_evaluate=tuple(points),
    )


def _metric(raw: Any, where: str, what: str) -> str:
    if not isinstance(raw, str) or not raw:
        raise UserError(f"{where}{what} must name a reported metric, e.g. val_miou")
    return raw


def _parse_param(name: str, raw: Any, where: str, grid: dict[str, tuple[Any, ...]]) -> SearchParam:
    what = f"search.params.{name}"
    if name not in FIELD_NAMES:
        raise UserError(f"{where}{what}: unknown config key '{name}'{suggest(name, FIELD_NAMES)}")
    if name in grid or name == "seed":
        raise UserError(f"{where}{what}: '{name}' is a grid factor or the seed; search it or grid it, not both")
    d = _mapping(raw, where, what)
    _check_keys(d, PARAM_KEYS, where, what)
    dist = _choice(d.get("distribution"), DISTRIBUTIONS, where, f"{what}.distribution")
    if dist == "choice":
        vals = _values(d.get("values"), where, f"{what}.values")
        return SearchParam(name, dist, values=tuple(coerce_value(name, v, where=f"{where}{what}: ") for v in vals))
    if "values" in d:
        raise UserError(f"{where}{what}: values is for distribution: choice; give low and high")
    kind = int if dist == "int" else float
    low = _number(d.get("low"), where, f"{what}.low", kind=kind)
    high = _number(d.get("high"), where, f"{what}.high", kind=kind)
    if not low < high:
        raise UserError(f"{where}{what}: low ({low}) must be below high ({high})")
    if dist == "loguniform" and low <= 0:
        raise UserError(f"{where}{what}: loguniform needs low > 0, got {low}; use uniform to include 0")
    coerce_value(name, low, where=f"{where}{what}: ")
    return SearchParam(name, dist, low, high)


def _parse_scheduler(raw: Any, where: str) -> Scheduler:
    d = _mapping(raw, where, "scheduler")
    _check_keys(d, SCHEDULER_KEYS, where, "scheduler")
    max_t = d.get("max_t")
    return Scheduler(
        type=_choice(d.get("type", "asha"), ("asha",), where, "scheduler.type"),
        metric=_metric(d.get("metric", "val_miou"), where, "scheduler.metric"),
        mode=_choice(d.get("mode", "max"), MODES, where, "scheduler.mode"),
        grace_period=_number(d.get("grace_period", 1), where, "scheduler.grace_period", kind=int, minimum=1),
        reduction_factor=_number(
            d.get("reduction_factor", 2), where, "scheduler.reduction_factor", kind=int, minimum=2
        ),
        max_t=None if max_t is None else _number(max_t, where, "scheduler.max_t", kind=int, minimum=1),
    )
