"""The paper's numbers (Mondal et al. 2019, Tables 1–4), shipped as CSVs in ``cycleseg/sweep/data/``."""

from __future__ import annotations

import importlib.resources
import math
from dataclasses import dataclass

import pandas as pd

from .derive import ABLATION_REFERENCE, paper_pct

PAPER_DATASETS = ("voc", "cityscapes", "acdc")


def _read_paper(name: str) -> pd.DataFrame:
    with (importlib.resources.files("cycleseg.sweep") / "data" / name).open() as f:
        return pd.read_csv(f, comment="#")


@dataclass
class Paper:
    """The paper's numbers (sweep/data/, copied from Mondal et al. 2019, Tables 1–4)."""

    table1: dict[tuple[str, str, int], float]  # (dataset, method, pct) -> mIoU
    table2: dict[str, float]  # voc, 20 %: variant -> mIoU
    classes: dict[tuple[str, str, int], dict[str, float]]  # (dataset, method, pct) -> class name -> IoU

    @classmethod
    def load(cls) -> Paper:
        t1 = _read_paper("paper_table1.csv")
        table1 = {
            (d, str(r["method"]), int(r["labeled_pct"])): float(r[d]) for _, r in t1.iterrows() for d in PAPER_DATASETS
        }
        t2 = _read_paper("paper_table2.csv")
        table2 = {str(r["variant"]): float(r["voc_miou_20pct"]) for _, r in t2.iterrows()}
        classes: dict[tuple[str, str, int], dict[str, float]] = {}
        for dataset, name in (
            ("voc", "paper_table3_voc_classes.csv"),
            ("cityscapes", "paper_table4_cityscapes_classes.csv"),
        ):
            for _, r in _read_paper(name).iterrows():
                classes.setdefault((dataset, str(r["method"]), int(r["labeled_pct"])), {})[str(r["class_name"])] = (
                    float(r["iou"])
                )
        return cls(table1, table2, classes)

    def t1(self, dataset: str, row: str, fraction: float) -> float:
        pct = paper_pct(fraction)
        return self.table1.get((dataset, row, pct), math.nan) if pct is not None else math.nan

    def t2(self, dataset: str, variant: str, fraction: float) -> float:
        if dataset != "voc" or paper_pct(fraction) != 20:
            return math.nan
        return self.table2.get("proposed" if variant == ABLATION_REFERENCE else variant, math.nan)
