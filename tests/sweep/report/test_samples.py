"""The sample grid drawn from real checkpoints."""


import numpy as np
import pytest
from PIL import Image

from cycleseg.sweep.report import build_report
from tests.sweep.report.synthetic import (
    write_trial,
)


@pytest.mark.slow
def test_sample_grid_from_real_checkpoints(tmp_path, monkeypatch):
    """Two real tiny trials (partial, cyclegan) → their checkpoints → the report's sample grid."""
    from cycleseg.model.checkpoint import FOLDER as CHECKPOINT
    from cycleseg.model.resolve import resolve_config
    from cycleseg.model.trainer import run_trial

    monkeypatch.setenv("CYCLESEG_CACHE", str(tmp_path / "cache"))
    sweep_dir = tmp_path / "demo"
    tiny = {"dataset": "digits", "preset": "tiny", "epochs": 1, "digits_train": 20, "digits_val": 8, "digits_test": 8,
            "image_height": 32, "image_width": 32, "labeled_fraction": 0.2, "device": "cpu"}
    for method in ("partial", "cyclegan"):
        cfg = resolve_config(tiny, {"method": method})
        work = tmp_path / "work" / method
        hist = run_trial(cfg, workdir=work)
        write_trial(sweep_dir, method, method=method, fraction=0.2, seed=0, value=hist[-1]["test_miou"], epochs=1,
                    dataset="digits", digits_train=20, digits_val=8, digits_test=8, image_height=32, image_width=32,
                    class_iou=list(np.nan_to_num(hist[-1]["test_class_iou"])), checkpoint_path=str(work / CHECKPOINT))
    out = tmp_path / "rep"
    build_report([sweep_dir], out)
    md = (out / "index.md").read_text()
    assert "![samples](samples_digits_20.png)" in md and "no checkpoint" not in md and "not drawn" not in md
    with Image.open(out / "samples_digits_20.png") as im:
        # 5 columns (image | truth | partial | cyclegan | G_SI(truth)) × 4 rows of square cells
        w, h = im.size
        assert 1.1 < w / h < 1.4 and h > 300
