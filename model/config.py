"""The trial configuration: one typed dataclass, defaults declared once, dumped beside every run.

A ``TrialConfig`` is everything one training run needs. ``resolve_config`` builds it from (in
order of precedence, lowest first): the dataclass defaults, a preset, a YAML file, and
``key=value`` overrides; then it validates the whole thing. The resolved config is what gets
written to ``config.yaml`` and hashed, so two runs with equal hashes ran the same experiment.

Paper symbols (Mondal et al. 2019, Eq. 8): ``lambda_1`` weights L^I_gen (G_SI supervised L2),
``lambda_2`` L^S_cycle (label cycle CE), ``lambda_3`` L^I_cycle (image cycle L1), ``lambda_4``
L^S_disc (label adversarial), ``lambda_5`` L^I_disc (image adversarial). L^S_gen has weight 1.
"""

from __future__ import annotations

import dataclasses
import hashlib
import json
import math
import re
import types
import typing
from dataclasses import asdict, dataclass, fields
from pathlib import Path
from typing import Any

import yaml

from model.errors import UserError
from model.registry import suggest

# Network sizes per preset. ``paper`` is §3.3 of the paper (≈11.4 M parameters per generator).
PRESETS: dict[str, dict[str, int]] = {
    "paper": {"ngf": 64, "ndf": 64, "n_blocks": 9},
    "small": {"ngf": 32, "ndf": 32, "n_blocks": 6},
    "tiny": {"ngf": 8, "ndf": 8, "n_blocks": 2},
}


@dataclass(frozen=True)
class TrialConfig:
    """One trial, fully resolved. Field names follow the paper where it names them."""

    # --- data -------------------------------------------------------------------------------
    dataset: str = "digits"
    data_root: str | None = None  # folder holding the dataset's on-disk layout (not for digits)
    labeled_fraction: float = 0.2  # share of training images whose masks are used, in (0, 1]
    seed: int = 0  # fixes the labeled subset, network init and batch order
    split_seed: int = 0  # fixes train/val splits a dataset does not ship (ACDC patients)
    image_height: int | None = None  # None = the dataset's own size (VOC 200, Cityscapes 128, …)
    image_width: int | None = None
    digits_train: int = 400  # `digits` only: scenes in the training set
    digits_val: int = 100  # `digits` only: scenes in the validation set
    cache_dir: str | None = None  # prepared-array cache; None = $CYCLESEG_CACHE or ~/.cache/cycleseg

    # --- method -------------------------------------------------------------------------------
    method: str = "cyclegan"
    lambda_1: float = 1.0  # L^I_gen   (G_SI supervised, L2)
    lambda_2: float = 0.05  # L^S_cycle (label cycle, CE)
    lambda_3: float = 1.0  # L^I_cycle (image cycle, L1)
    lambda_4: float = 1.0  # L^S_disc  (label adversarial, LSGAN)
    lambda_5: float = 1.0  # L^I_disc  (image adversarial, LSGAN)
    # Hung et al. 2018 baseline (values from the authors' README, see shared notes)
    hung_lambda_adv: float = 0.01
    hung_lambda_semi_adv: float = 0.001
    hung_lambda_semi: float = 0.1
    hung_t_semi: float = 0.2
    hung_semi_start: float = 0.25  # share of the run's iterations before self-training starts
    hung_d_lr: float = 1e-4
    hung_d_beta1: float = 0.9
    hung_d_beta2: float = 0.99

    # --- networks -----------------------------------------------------------------------------
    preset: str = "paper"
    ngf: int | None = None  # None = the preset's value
    ndf: int | None = None
    n_blocks: int | None = None

    # --- optimisation -------------------------------------------------------------------------
    epochs: int = 400
    batch_size: int = 5
    lr: float = 2e-4
    beta1: float = 0.5
    beta2: float = 0.999
    lr_decay_start: float = 0.25  # share of epochs at constant lr before linear decay to 0 (100/400)

    # --- execution ----------------------------------------------------------------------------
    device: str = "auto"  # auto | cpu | cuda
    amp: bool = True  # bf16 autocast on CUDA; always fp32 on CPU
    channels_last: bool = True
    compile: bool = False  # torch.compile the networks
    eval_batch_size: int = 20
    inject_fault: str | None = None  # tests only: "nan:E" (NaN loss in epoch E) or "crash:E" (raise once)

    def to_dict(self) -> dict[str, Any]:
        return asdict(self)

    def hash(self, exclude: tuple[str, ...] = ()) -> str:
        """Stable short hash of the resolved config (``exclude=("seed",)`` groups replicates)."""
        d = {k: v for k, v in self.to_dict().items() if k not in exclude and k not in _UNHASHED}
        blob = json.dumps(d, sort_keys=True, default=str).encode()
        return hashlib.sha256(blob).hexdigest()[:12]


# Fields that say where/how a run executes, not what it computes: excluded from the hash.
_UNHASHED = frozenset({"data_root", "cache_dir", "device", "eval_batch_size"})

FIELD_NAMES: tuple[str, ...] = tuple(f.name for f in fields(TrialConfig))
LAMBDAS: tuple[str, ...] = ("lambda_1", "lambda_2", "lambda_3", "lambda_4", "lambda_5")


def _field_type(name: str) -> Any:
    return typing.get_type_hints(TrialConfig)[name]


def coerce_value(key: str, value: Any, *, where: str = "") -> Any:
    """Convert ``value`` to the type of config field ``key``; raise a ``UserError`` naming both."""
    if key not in FIELD_NAMES:
        raise UserError(
            f"{where}unknown config key '{key}'{suggest(key, FIELD_NAMES)}; "
            f"valid keys: {', '.join(FIELD_NAMES)}"
        )
    tp = _field_type(key)
    optional = isinstance(tp, types.UnionType) and type(None) in tp.__args__
    base = next(a for a in tp.__args__ if a is not type(None)) if optional else tp
    if value is None or (isinstance(value, str) and value.lower() in ("none", "null", "~")):
        if optional:
            return None
        raise UserError(f"{where}config key '{key}' needs a {base.__name__} value, got nothing")
    try:
        if base is bool:
            if isinstance(value, bool):
                return value
            if isinstance(value, str) and value.lower() in ("true", "yes", "1", "on"):
                return True
            if isinstance(value, str) and value.lower() in ("false", "no", "0", "off"):
                return False
            if isinstance(value, int) and value in (0, 1):
                return bool(value)
            raise ValueError
        if base is int:
            if isinstance(value, bool):
                raise ValueError
            if isinstance(value, float) and not value.is_integer():
                raise ValueError
            return int(value)
        if base is float:
            if isinstance(value, bool):
                raise ValueError
            return float(value)
        if base is str:
            if not isinstance(value, str | int | float) or isinstance(value, bool):
                raise ValueError
            return str(value)
    except (TypeError, ValueError):
        pass
    raise UserError(
        f"{where}config key '{key}' needs a {base.__name__}, got {value!r} ({type(value).__name__})"
    )


def parse_set(items: list[str] | tuple[str, ...]) -> dict[str, Any]:
    """Parse ``--set key=value`` items; values are read as YAML scalars then coerced."""
    out: dict[str, Any] = {}
    for item in items:
        if "=" not in item:
            raise UserError(f"--set '{item}' is not key=value; write e.g. --set lambda_2=0")
        key, raw = item.split("=", 1)
        key = key.strip()
        try:
            value = yaml.safe_load(raw) if raw.strip() else None
        except yaml.YAMLError:
            value = raw
        out[key] = coerce_value(key, value, where="--set: ")
    return out


def load_config_file(path: str | Path) -> dict[str, Any]:
    """Read a config YAML (e.g. from ``best-config``): a mapping of config keys, coerced."""
    p = Path(path)
    if not p.is_file():
        raise UserError(f"config file '{p}' does not exist; pass a YAML file written by best-config")
    try:
        data = yaml.safe_load(p.read_text())
    except yaml.YAMLError as e:
        raise UserError(f"config file '{p}' is not valid YAML: {str(e).splitlines()[0]}") from None
    if data is None:
        data = {}
    if not isinstance(data, dict):
        raise UserError(f"config file '{p}' must be a mapping of config keys, got {type(data).__name__}")
    # best-config files may carry provenance under a `_source` key: ignore keys starting with '_'
    return {k: coerce_value(k, v, where=f"{p}: ") for k, v in data.items() if not str(k).startswith("_")}


def resolve_config(*layers: dict[str, Any]) -> TrialConfig:
    """Merge override layers (later wins) over the defaults, apply the preset, validate."""
    merged: dict[str, Any] = {}
    for layer in layers:
        for k, v in layer.items():
            merged[k] = coerce_value(k, v)
    preset = merged.get("preset", TrialConfig.preset)
    if preset not in PRESETS:
        raise UserError(
            f"unknown preset '{preset}'{suggest(preset, list(PRESETS))}; choose one of: {', '.join(PRESETS)}"
        )
    for k, v in PRESETS[preset].items():
        if merged.get(k) is None:
            merged[k] = v
    from model.methods import METHODS

    if merged.get("method") in METHODS and METHODS.get(merged["method"]).all_labeled:
        merged["labeled_fraction"] = 1.0  # `full` trains on every label; record what actually ran
    cfg = TrialConfig(**merged)
    validate(cfg)
    return cfg


def validate(cfg: TrialConfig) -> None:
    """Check ranges and names; raise ``UserError`` naming the field and the fix."""
    # Imported here: the registries import torch-heavy modules we don't need for parsing.
    from model.datasets import DATASETS
    from model.methods import METHODS

    DATASETS.get(cfg.dataset)
    METHODS.get(cfg.method)
    if not (0.0 < cfg.labeled_fraction <= 1.0) or math.isnan(cfg.labeled_fraction):
        raise UserError(f"labeled_fraction must be in (0, 1], got {cfg.labeled_fraction}; e.g. 0.1 for 10 %")
    for name in (*LAMBDAS, "hung_lambda_adv", "hung_lambda_semi_adv", "hung_lambda_semi"):
        v = getattr(cfg, name)
        if not v >= 0 or math.isinf(v):
            raise UserError(f"{name} must be a finite number >= 0, got {v}; use 0 to drop the term")
    if cfg.epochs < 1:
        raise UserError(f"epochs must be >= 1, got {cfg.epochs}")
    if cfg.batch_size < 1 or cfg.eval_batch_size < 1:
        raise UserError("batch_size and eval_batch_size must be >= 1")
    if not cfg.lr > 0:
        raise UserError(f"lr must be > 0, got {cfg.lr}")
    if not (0.0 <= cfg.lr_decay_start <= 1.0):
        raise UserError(f"lr_decay_start is a share of epochs in [0, 1], got {cfg.lr_decay_start}")
    for name in ("ngf", "ndf", "n_blocks"):
        v = getattr(cfg, name)
        if v is None or v < (0 if name == "n_blocks" else 1):
            raise UserError(f"{name} must be a positive integer, got {v}")
    if cfg.device not in ("auto", "cpu", "cuda") and not cfg.device.startswith("cuda:"):
        raise UserError(f"device must be auto, cpu or cuda, got '{cfg.device}'")
    for name in ("image_height", "image_width"):
        v = getattr(cfg, name)
        if v is not None and (v < 8 or v % 4):
            raise UserError(f"{name} must be a multiple of 4 and >= 8 (two stride-2 convs), got {v}")
    if cfg.digits_train < 1 or cfg.digits_val < 1:
        raise UserError("digits_train and digits_val must be >= 1")
    if cfg.inject_fault is not None and not re.fullmatch(r"(nan|crash):\d+", cfg.inject_fault):
        raise UserError(f"inject_fault must look like 'nan:3' or 'crash:2', got '{cfg.inject_fault}'")


def config_to_yaml(cfg: TrialConfig, header: str = "") -> str:
    text = yaml.safe_dump(cfg.to_dict(), sort_keys=False)
    return (header + text) if header else text


def replace(cfg: TrialConfig, **changes: Any) -> TrialConfig:
    """A validated copy of ``cfg`` with ``changes`` applied."""
    new = dataclasses.replace(cfg, **{k: coerce_value(k, v) for k, v in changes.items()})
    validate(new)
    return new
