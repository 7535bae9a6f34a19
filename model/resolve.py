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

from .config import DEFAULTS, PRESETS, RECIPES, TrialConfig, build, check_value
from .data import DATASETS, dataset_info
from .errors import UserError
from .methods import METHODS
from .plugins import load_plugins


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


class _StrictLoader(yaml.SafeLoader):
    """PyYAML's safe loader, refusing a key given twice in one mapping (PyYAML keeps the last silently)."""

    def construct_mapping(self, node: yaml.MappingNode, deep: bool = False) -> dict[Any, Any]:
        seen: dict[Any, yaml.Mark] = {}
        for key_node, _ in node.value:
            key = self.construct_object(key_node, deep=True)
            if isinstance(key, list | dict):
                continue  # unhashable: construct_mapping below names it
            if key in seen:
                first = seen[key]
                raise yaml.constructor.ConstructorError(
                    None, None, f"key '{key}' is given twice (first on line {first.line + 1}); keep one of them",
                    key_node.start_mark)
            seen[key] = key_node.start_mark
        return super().construct_mapping(node, deep=deep)


def _yaml_fix(problem: str) -> str:
    """The usual fix for a PyYAML syntax problem, in a user's words."""
    if "\\t" in problem:
        return "indent with spaces, not tabs"
    if "flow mapping" in problem or "flow sequence" in problem or "expected ',' or" in problem:
        return "close the { or [ opened before this point, or quote a value that holds , { } [ or ]"
    if "quoted scalar" in problem:
        return "close the quote opened before this point"
    if "mapping values are not allowed" in problem:
        return "quote a value that holds ': ', or put the key on its own line"
    return "check the indentation and punctuation at and just before this point"


def read_yaml_mapping(path: Path, what: str) -> dict[str, Any]:
    """A non-empty YAML mapping with no key given twice; every way it can fail is one ``UserError``.

    Errors start ``file:line:column`` (1-based), as compilers write them, so an editor jumps there.
    """
    try:
        text = path.read_text(encoding="utf-8")
    except UnicodeDecodeError:
        raise UserError(f"{what} '{path}' is not a text file; pass a YAML file") from None
    except OSError as e:
        raise UserError(f"cannot read {what} '{path}' ({e.strerror or e}); check the path") from None
    try:
        data = yaml.load(text, Loader=_StrictLoader)  # a SafeLoader subclass
    except yaml.MarkedYAMLError as e:
        mark = e.problem_mark or e.context_mark
        where = f"{path}:{mark.line + 1}:{mark.column + 1}" if mark else str(path)
        problem = e.problem or str(e).splitlines()[0]
        fix = "keep one of them" if "given twice" in problem else _yaml_fix(f"{e.context or ''} {problem}")
        problem = problem.removesuffix("; keep one of them")
        if e.context and e.context_mark and e.context_mark is not mark:
            problem += f" {e.context} (begun at {e.context_mark.line + 1}:{e.context_mark.column + 1})"
        raise UserError(f"{where}: {what} is not valid YAML: {problem}; {fix}") from None
    except yaml.YAMLError as e:
        raise UserError(f"{path}: {what} is not valid YAML: {str(e).splitlines()[0]}") from None
    if data is None or data == {}:
        raise UserError(f"{path}:1:1: {what} holds no keys; write at least one; "
                        "the fields: docs/config.md")
    if not isinstance(data, dict):
        raise UserError(f"{path}:1:1: {what} must be a mapping of keys to values, got {type(data).__name__}")
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
