"""The trial runner: per-epoch metrics, checkpoints, bit-exact resume, divergence, lr schedule."""

import math

import pandas as pd
import pytest
import torch

from model.config import resolve_config
from model.trainer import CHECKPOINT, EpochBatches, load_trial, lr_factor, run_trial

TINY = {
    "dataset": "digits", "preset": "tiny", "digits_train": 24, "digits_val": 8,
    "image_height": 32, "image_width": 32, "epochs": 2, "labeled_fraction": 0.25, "device": "cpu",
}


@pytest.fixture(autouse=True)
def _cache(tmp_path, monkeypatch):
    monkeypatch.setenv("CYCLESEG_CACHE", str(tmp_path / "cache"))


def test_lr_schedule_matches_the_papers_400_epoch_rule():
    cfg = resolve_config({"epochs": 400})
    # constant for 100 epochs, then 1 - (e - 100) / 300 (authors' LambdaLR)
    assert lr_factor(0, cfg) == 1.0 and lr_factor(100, cfg) == 1.0
    assert lr_factor(250, cfg) == pytest.approx(0.5)
    assert lr_factor(399, cfg) == pytest.approx(1 / 300)


def test_epoch_covers_the_larger_set_and_batches_are_full():
    from model.datasets import prepare_dataset

    cfg = resolve_config(TINY)
    data = prepare_dataset(cfg)
    b = EpochBatches(data, cfg, uses_unlabeled=True, device=torch.device("cpu"))
    assert len(b.labeled) == 6 and len(b.unlabeled) == 18  # 25 % of 24, the rest unlabeled
    assert set(b.labeled.tolist()).isdisjoint(b.unlabeled.tolist())
    batches = list(b.epoch(1))
    assert len(batches) == math.ceil(18 / 5) == b.iters_per_epoch
    assert all(x.x.shape[0] == 5 and x.x_u.shape[0] == 5 for x in batches)
    assert torch.equal(batches[0].x, next(iter(b.epoch(1))).x)  # order is a function of (seed, epoch)
    assert not torch.equal(batches[0].x, next(iter(b.epoch(2))).x)
    partial = EpochBatches(data, cfg, uses_unlabeled=False, device=torch.device("cpu"))
    assert partial.unlabeled is None and partial.iters_per_epoch == 2  # ceil(6 / 5)


def test_run_reports_every_epoch_with_all_terms(tmp_path):
    seen = []

    class Rec:
        def report(self, metrics, checkpoint_dir):
            assert (checkpoint_dir / "state.pt").is_file()
            seen.append(metrics)

    hist = run_trial(resolve_config(TINY), workdir=tmp_path, reporter=Rec())
    assert [m["epoch"] for m in hist] == [1, 2] and seen == hist
    keys = {"loss_S_gen", "loss_I_gen", "loss_S_cycle", "loss_I_cycle", "loss_S_adv_G", "loss_I_adv_G",
            "loss_G_total", "loss_S_adv_D", "loss_I_adv_D"}
    assert keys <= set(hist[0])
    assert 0.0 <= hist[-1]["val_miou"] <= 1.0 and len(hist[-1]["val_class_iou"]) == 11
    assert hist[0]["lr"] == pytest.approx(2e-4) and not hist[-1]["diverged"]


def test_resume_is_bit_exact_on_cpu(tmp_path):
    straight = tmp_path / "a"
    run_trial(resolve_config(TINY), workdir=straight)
    broken = tmp_path / "b"
    with pytest.raises(RuntimeError, match="injected crash"):
        run_trial(resolve_config({**TINY, "inject_fault": "crash:2"}), workdir=broken)
    assert torch.load(broken / CHECKPOINT / "state.pt", weights_only=False)["epoch"] == 1
    hist = run_trial(resolve_config({**TINY, "inject_fault": "crash:2"}), workdir=broken, resume=True)
    assert [m["epoch"] for m in hist] == [1, 2]
    _, a = load_trial(straight / CHECKPOINT)
    _, b = load_trial(broken / CHECKPOINT)
    for name, net in a.networks.items():
        for (k, p), q in zip(net.state_dict().items(), b.networks[name].state_dict().values(), strict=True):
            assert torch.equal(p, q), f"{name}.{k} differs after resume"
    sa = torch.load(straight / CHECKPOINT / "state.pt", weights_only=False)["history"]
    sb = torch.load(broken / CHECKPOINT / "state.pt", weights_only=False)["history"]
    assert [m["loss_G_total"] for m in sa] == [m["loss_G_total"] for m in sb]


def test_nan_stops_the_run_as_diverged(tmp_path):
    hist = run_trial(resolve_config({**TINY, "epochs": 3, "inject_fault": "nan:1"}), workdir=tmp_path)
    assert len(hist) == 1 and hist[0]["diverged"]
    assert not math.isfinite(hist[0]["loss_G_total"])


def test_every_method_trains(tmp_path):
    for method in ("partial", "full", "hung"):
        hist = run_trial(resolve_config({**TINY, "method": method, "epochs": 1}), workdir=tmp_path / method)
        assert hist[0]["loss_S_gen"] > 0 and math.isfinite(hist[0]["val_miou"])


def test_metrics_parquet_from_debug_history(tmp_path):
    from model.trainer import write_metrics_parquet

    write_metrics_parquet(tmp_path / "m.parquet", [{"epoch": 1, "val_miou": 0.5, "val_class_iou": [0.1, 0.9]}])
    df = pd.read_parquet(tmp_path / "m.parquet")
    assert df.loc[0, "val_miou"] == 0.5 and list(df.loc[0, "val_class_iou"]) == [0.1, 0.9]
