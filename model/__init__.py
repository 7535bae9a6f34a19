"""The model layer: one trial of training, no Ray.

``PUBLIC`` is what the layers above (``sweep/``, ``cli.py``) may import from this package, by module: the
boundary between them, visible in one place and kept small (``tests/test_imports.py`` checks every import
of the layers above against it). ``checkpoint`` is public as a module: its folder format is the contract.
The names also resolve here (``from cycleseg.model import TrialConfig``), lazily, so importing a config
module never imports torch.
"""

from __future__ import annotations

import importlib
from typing import Any

PUBLIC: dict[str, tuple[str, ...]] = {
    "checkpoint": ("FOLDER", "HISTORY", "STATE", "load_trial", "parse_history", "read_history"),
    "config": ("BUILTIN_METHODS", "DEFAULTS", "EXECUTION_FIELDS", "FIELD_NAMES", "GAN_FIELDS", "LAMBDAS",
               "RAMPED_LAMBDAS", "TrialConfig", "check_value", "complete", "config_to_yaml", "describe", "error_line"),
    "data": ("PreparedData", "cache_key", "check_source", "dataset_info", "normalize_images", "planned_train_size",
             "prepare_dataset"),
    "debug": ("debug_config", "debug_run", "interrupted_line"),
    "device": ("resolve_device",),
    "errors": ("Interrupted", "UserError"),
    "flops": ("step_flops", "trial_flops"),
    "io": ("atomic_write", "atomic_write_bytes", "atomic_write_text", "check_name", "check_output_dir"),
    "methods": ("Batch", "METHODS", "create_method"),
    "metrics": ("LEARNED_IOU", "predicts_one_class"),
    "plugins": ("ENV", "load_plugins"),
    "records": ("TEST_PREFIX", "choice_metrics", "effective_column", "epoch_schema", "epoch_table", "for_choices",
                "is_finite", "selected_epoch"),
    "registry": ("suggest",),
    "resolve": ("load_config_file", "parse_set", "read_yaml_mapping", "resolve_config"),
    "trainer": ("run_trial",),
    "visualize": ("save_sample_grid",),
}
PUBLIC_MODULES = ("checkpoint",)  # imported whole by the layers above
_HOME = {name: module for module, names in PUBLIC.items() for name in names if name not in ("ENV",)}
__all__ = sorted(_HOME)


def __getattr__(name: str) -> Any:
    if name in _HOME:
        return getattr(importlib.import_module(f".{_HOME[name]}", __name__), name)
    raise AttributeError(f"module {__name__!r} has no attribute {name!r}")
