"""Plugins: modules that register their own methods or datasets (``CYCLESEG_PLUGINS=pkg.mod,other``).

A plugin module registers into ``METHODS`` / ``DATASETS`` when imported, like the built-in ones.
``load_plugins`` imports every module named in ``$CYCLESEG_PLUGINS`` once per process; resolving a
config calls it, so a name a plugin registers is valid wherever configs are resolved, and the sweep
forwards the variable to its Ray workers so they see the same registries.
"""

from __future__ import annotations

import importlib
import os

from .errors import UserError

ENV = "CYCLESEG_PLUGINS"
_loaded: set[str] = set()


def plugin_modules() -> list[str]:
    return [m.strip() for m in os.environ.get(ENV, "").split(",") if m.strip()]


def load_plugins() -> None:
    """Import each module of ``$CYCLESEG_PLUGINS`` not imported yet."""
    for name in plugin_modules():
        if name in _loaded:
            continue
        try:
            importlib.import_module(name)
        except ImportError as e:
            raise UserError(f"{ENV}: cannot import plugin module '{name}' ({e}); fix the name or unset {ENV}") from None
        _loaded.add(name)
