"""``cycleseg report``: load → derive → tables, plots, samples → index.md (``build``)."""

from cycleseg.sweep.report.build import build_report

__all__ = ["build_report"]
