"""Building a ``TrialConfig`` from layers, and the checks that need the dataset and method registries.

Precedence, lowest first: the dataclass defaults, the preset's network sizes and the recipe's training
choices for the method (both only where no layer sets the field), then each layer in order (a YAML
file, command-line flags, ``--set key=value``). A layer's values are
checked field by field as they are read, so an error names the layer it came from. The finished
config is then checked against the registries: the dataset and method exist, and the method can
train on the dataset at this size (``Method.check``). This module sits above ``config``, ``data``
and ``methods``; none of them imports it.
"""

from __future__ import annotations

import dataclasses
from pathlib import Path
from typing import Any

import yaml

from cycleseg.model.config import DEFAULTS, PRESETS, RECIPES, TrialConfig, build, check_value
from cycleseg.model.data import DATASETS, dataset_info
from cycleseg.model.errors import UserError
from cycleseg.model.methods import METHODS
from cycleseg.model.plugins import load_plugins


def parse_set(items: list[str] | tuple[str, ...]) -> dict[str, Any]:
    """Parse ``--set key=value`` items; values are read as YAML scalars then checked as their field."""
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
        out[key] = check_value(key, value, where="--set: ")
    return out


def read_yaml_mapping(path: Path, what: str) -> dict[str, Any]:
    """A YAML file that must hold a mapping; every way it can be unreadable is one ``UserError``."""
    try:
        text = path.read_text(encoding="utf-8")
    except UnicodeDecodeError:
        raise UserError(f"{what} '{path}' is not a text file; pass a YAML file") from None
    except OSError as e:
        raise UserError(f"cannot read {what} '{path}' ({e.strerror or e}); check the path") from None
    try:
        data = yaml.safe_load(text)
    except yaml.YAMLError as e:
        raise UserError(f"{what} '{path}' is not valid YAML: {str(e).splitlines()[0]}") from None
    if data is None:
        return {}
    if not isinstance(data, dict):
        raise UserError(f"{what} '{path}' must be a mapping of keys to values, got {type(data).__name__}")
    return data


def load_config_file(path: str | Path) -> dict[str, Any]:
    """Read a config YAML (e.g. from ``best-config``): a mapping of config keys, each checked.

    Keys starting with ``_`` (best-config's ``_source`` provenance) are ignored.
    """
    p = Path(path)
    if p.is_dir():
        inside = sorted(f.name for f in p.glob("*.yaml"))[:3]
        hint = f" (it holds {', '.join(inside)})" if inside else ""
        raise UserError(f"config file '{p}' is a folder{hint}; pass one YAML file in it, e.g. the config.yaml a "
                        "debug run writes or one that best-config writes per cell")
    if not p.is_file():
        raise UserError(f"config file '{p}' does not exist; pass a YAML file written by best-config or debug")
    data = read_yaml_mapping(p, "config file")
    return {str(k): check_value(str(k), v, where=f"{p}: ") for k, v in data.items() if not str(k).startswith("_")}


def resolve_config(*layers: dict[str, Any]) -> TrialConfig:
    """Merge override layers (later wins) over the defaults, apply the preset, check everything."""
    merged: dict[str, Any] = {}
    for layer in layers:
        for k, v in layer.items():
            merged[k] = check_value(k, v)
    preset = merged.get("preset", DEFAULTS["preset"])
    for k, v in PRESETS.get(preset, {}).items():
        if merged.get(k) is None:
            merged[k] = v
    load_plugins()
    method_name = merged.get("method", DEFAULTS["method"])
    for k, v in RECIPES[merged.get("recipe", DEFAULTS["recipe"])].get(method_name, {}).items():
        merged.setdefault(k, v)
    method = METHODS.get(method_name)
    if method.all_labeled:
        merged["labeled_fraction"] = 1.0  # `full` trains on every label; record what actually ran
    cfg = build(merged)
    check_compatible(cfg)
    return cfg


def check_compatible(cfg: TrialConfig) -> None:
    """The dataset and method exist and the method can train on the dataset at the config's size."""
    load_plugins()
    DATASETS.get(cfg.dataset)
    METHODS.get(cfg.method).check(cfg, dataset_info(cfg))


def replace(cfg: TrialConfig, **changes: Any) -> TrialConfig:
    """A checked copy of ``cfg`` with ``changes`` applied."""
    new = dataclasses.replace(cfg, **{k: check_value(k, v) for k, v in changes.items()})
    check_compatible(new)
    return new
