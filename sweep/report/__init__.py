"""``cycleseg report``: load → derive → tables, plots, samples → index.md (``build``)."""

from .build import build_report

__all__ = ["build_report"]
