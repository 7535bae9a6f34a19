"""The shipped search spaces (package data ``cycleseg.search_spaces``: ``*.yaml`` and ``schema.json``).

This package owns which spaces ship and lists them; reading one as a typed space is
``cycleseg.sweep.planning.space``.
Nothing here imports torch or Ray, so ``cycleseg sweep --list`` answers at once.
"""

from __future__ import annotations

import importlib.resources
from typing import Any

import yaml


def shipped_spaces() -> dict[str, Any]:
    """The spaces shipped inside the package: name -> resource (read through importlib.resources)."""
    root = importlib.resources.files(__name__)
    return {p.name[: -len(".yaml")]: p for p in root.iterdir() if p.name.endswith(".yaml")}


def describe_shipped() -> str:
    """One line per shipped space: its name and description (``cycleseg sweep --list``); the tests check that
    every shipped space is a valid one."""
    spaces = shipped_spaces()
    described = {name: (yaml.safe_load(spaces[name].read_text(encoding="utf-8")) or {}).get("description", "")
                 for name in sorted(spaces)}
    width = max(map(len, described))
    return "\n".join(f"{name:<{width}}  {text or ''}".rstrip() for name, text in described.items())
