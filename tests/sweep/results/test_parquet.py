"""Parquet results: one schema for every file, rows computed from a trial's history, readable as datasets."""

import json

import duckdb
import pandas as pd
import pyarrow as pa
import pyarrow.parquet as pq
import pytest

from cycleseg.model.config import FIELD_NAMES
from cycleseg.model.data import dataset_info
from cycleseg.model.errors import UserError
from cycleseg.model.resolve import resolve_config
from cycleseg.sweep.results import parquet as res
from tests.records import epoch_record

CFG = resolve_config({"dataset": "digits", "preset": "tiny", "epochs": 3, "image_height": 32, "image_width": 32})
VERSIONS = {"cycleseg_version": "0.1.0", "torch_version": "2", "ray_version": "2.60.0", "git_commit": None}


def epoch(e, miou, *, diverged=False, losses=None):
    return epoch_record(e, miou, diverged=diverged, losses=losses, unlabeled=False)


def row(history, *, error=None, trial_id="t0", cfg=CFG, wall=10.0, gpus=0.5):
    return res.trial_row(sweep="s", trial_id=trial_id, cfg=cfg, variant=None, history=history, error=error,
                         wall_seconds=wall, gpus=gpus, checkpoint_path="/ckpt", versions=VERSIONS)


def test_every_config_field_is_a_typed_column():
    cols = {f.name: f.type for f in res.TRIALS_SCHEMA}
    assert set(FIELD_NAMES) <= set(cols)
    expected = {"dataset": pa.string(), "data_root": pa.string(), "labeled_fraction": pa.float64(),
                "seed": pa.int64(), "image_height": pa.int64(), "lambda_2": pa.float64(), "preset": pa.string(),
                "ngf": pa.int64(), "epochs": pa.int64(), "amp": pa.bool_(), "device": pa.string()}
    assert {k: cols[k] for k in expected} == expected
    for split in ("val", "test"):
        assert res.TRIALS_SCHEMA.field(f"{split}_class_iou").type == pa.list_(pa.float64())
    assert {k: cols[k] for k in ("selected_epoch", "steps", "labeled_images_seen")} == {
        "selected_epoch": pa.int64(), "steps": pa.int64(), "labeled_images_seen": pa.int64()}
    assert res.TRIALS_SCHEMA.field("class_names").type == pa.list_(pa.string())


def test_row_reports_the_epoch_chosen_on_val_with_its_test_metrics():
    # val 0.2, 0.6, 0.4; test = 1 − val (tests/records.py): 0.8, 0.4, 0.6
    hist = [epoch(1, 0.2), epoch(2, 0.6), epoch(3, 0.4)]
    r = row(hist)
    assert r["status"] == "completed" and r["epochs_run"] == 3
    # select=best_val (the default): epoch 2, the best val, whatever test says (test's best is epoch 1)
    assert (r["selected_epoch"], r["val_miou"], r["test_miou"]) == (2, 0.6, pytest.approx(0.4))
    assert r["test_class_iou"] == [pytest.approx(0.4)] * 11 and r["val_class_iou"] == [0.6] * 11
    assert r["test_pixel_acc"] == pytest.approx(0.42)
    assert (r["best_val_miou"], r["best_epoch"], r["final_val_miou"]) == (0.6, 2, 0.4)
    assert r["final_test_miou"] == pytest.approx(0.6)
    # the budget of the last epoch: 3 × 10 steps of 5 labeled images, no unlabeled ones
    assert (r["steps"], r["labeled_images_seen"], r["unlabeled_images_seen"]) == (30, 150, 0)
    final = row(hist, cfg=resolve_config({**CFG.to_dict(), "select": "final"}))
    assert (final["selected_epoch"], final["val_miou"], final["test_miou"]) == (3, 0.4, pytest.approx(0.6))
    assert r["gpu_seconds"] == 5.0  # 10 s × 0.5 GPU
    assert r["config_hash"] == CFG.hash() and r["group_hash"] == CFG.hash(exclude=("seed",))
    assert json.loads(r["config_json"]) == CFG.to_dict() and r["lambda_2"] == CFG.lambda_2
    assert r["class_names"] == list(dataset_info(CFG).class_names) and len(r["class_names"]) == 11


def test_status_of_each_ending():
    assert row([epoch(1, 0.2), epoch(2, 0.3)])["status"] == "early_stopped"  # 2 of 3 epochs
    diverged = row([epoch(1, 0.2), epoch(2, float("nan"), diverged=True)])
    assert diverged["status"] == "diverged" and diverged["best_val_miou"] == 0.2  # NaN never "best"
    assert diverged["selected_epoch"] == 1
    failed = row([epoch(1, 0.2)], error="RuntimeError: boom")
    assert failed["status"] == "failed" and failed["error"] == "RuntimeError: boom"
    empty = row([], error="OOM")
    assert empty["epochs_run"] == 0 and empty["best_val_miou"] is None and empty["status"] == "failed"
    assert empty["selected_epoch"] is None and empty["test_miou"] is None and empty["steps"] == 0


def test_files_read_as_datasets_with_pandas_and_duckdb(tmp_path):
    cyclegan = resolve_config({**CFG.to_dict(), "method": "cyclegan", "seed": 1})
    cyc_losses = {"S_gen": 1.0, "I_gen": 0.5, "S_cycle": 0.25, "I_cycle": 0.2, "S_adv_G": 0.9, "I_adv_G": 0.8,
                  "G_total": 3.0, "S_adv_D": 0.4, "I_adv_D": 0.3, "D_total": 0.7}
    trials = {
        "a": (CFG, [epoch(1, 0.2), epoch(2, 0.3), epoch(3, 0.5)]),
        "b": (cyclegan, [epoch(1, 0.1, losses=cyc_losses), epoch(2, 0.4, losses=cyc_losses)]),
    }
    for tid, (cfg, hist) in trials.items():
        res.write_trial(tmp_path, row(hist, trial_id=tid, cfg=cfg), hist)
    for which, schema in (("trials", res.TRIALS_SCHEMA), ("epochs", res.EPOCHS_SCHEMA)):
        for f in (tmp_path / which).iterdir():
            assert pq.read_schema(f).equals(schema, check_metadata=False)
    df = pd.read_parquet(tmp_path / "trials")
    assert sorted(df["trial_id"]) == ["a", "b"] and list(df.columns) == res.TRIALS_SCHEMA.names
    assert df.set_index("trial_id").loc["b", "status"] == "early_stopped"
    ep = pd.read_parquet(tmp_path / "epochs")
    assert len(ep) == 5
    a = ep[ep["trial_id"] == "a"].sort_values("epoch")
    assert list(a["loss_S_gen"]) == pytest.approx([1.0, 0.5, 1 / 3]) and a["loss_I_gen"].isna().all()
    assert list(ep[ep["trial_id"] == "b"]["loss_I_cycle"]) == [0.2, 0.2]
    con = duckdb.connect()
    n, best = con.execute(
        f"select count(*), max(best_val_miou) from read_parquet('{tmp_path}/trials/*.parquet')"
    ).fetchone()
    assert (n, best) == (2, 0.5)
    assert con.execute(f"select count(*) from read_parquet('{tmp_path}/epochs/*.parquet')").fetchone() == (5,)
    assert res.trial_ids(tmp_path) == {"a", "b"}
    assert len(res.read_sweeps([f"file://{tmp_path}"]).trials) == 2  # file:// URIs are local paths
    with pytest.raises(UserError, match="is not a sweep folder"):
        res.read_sweeps([tmp_path / "nothing_here"])


def test_a_damaged_results_file_is_named_with_what_to_do(tmp_path):
    res.write_trial(tmp_path, row([epoch(1, 0.2)], trial_id="a"), [epoch(1, 0.2)])
    (tmp_path / "trials" / "b.parquet").write_bytes(b"PAR1 not really")
    with pytest.raises(UserError, match=r"results file '.*b\.parquet' is damaged .*delete it"):
        res.read_sweeps([tmp_path])


def test_results_written_before_the_gan_levers_read_as_what_those_runs_ran(tmp_path):
    from cycleseg.model.config import DEFAULTS, GAN_FIELDS

    hist = [epoch(1, 0.2), epoch(2, 0.3)]
    res.write_trial(tmp_path, row(hist, trial_id="old"), hist)
    dropped = {"recipe", *GAN_FIELDS, "lambda_2_effective", "lambda_3_effective", "lambda_4_effective",
               "lambda_5_effective"}
    for which in ("trials", "epochs"):  # the files as an older cycleseg wrote them
        f = tmp_path / which / "old.parquet"
        t = pq.read_table(f).drop_columns([c for c in pq.read_schema(f).names if c in dropped])
        if which == "trials":
            cfg = json.loads(t["config_json"][0].as_py())
            old_json = json.dumps({k: v for k, v in cfg.items() if k not in dropped})
            t = t.set_column(t.schema.get_field_index("config_json"), "config_json", pa.array([old_json]))
        pq.write_table(t, f)
    sweeps = res.read_sweeps([tmp_path])
    trial = sweeps.trials.iloc[0]
    assert all(trial[k] == DEFAULTS[k] for k in ("recipe", *GAN_FIELDS))  # what those runs ran
    assert json.loads(trial["config_json"]) == CFG.to_dict()  # every reader of config_json sees every field
    assert sweeps.epochs["lambda_4_effective"].isna().all() and len(sweeps.epochs) == 2  # not recorded
    t = pq.read_table(tmp_path / "trials" / "old.parquet")
    pq.write_table(t.drop_columns(["lambda_1"]), tmp_path / "trials" / "old.parquet")  # not added later
    with pytest.raises(UserError, match="lacks the column"):
        res.read_sweeps([tmp_path])



def test_results_written_before_merge_passes_existed_read_with_its_default(tmp_path):
    """Every folder written before the execution field ``merge_passes`` (all sweeps until 2026-12-06) still reads:
    the column is added at its default, and the config hash, which leaves later fields out at their default,
    is the one those runs recorded."""
    from cycleseg.model.config import DEFAULTS, LATER_FIELDS

    assert "merge_passes" in LATER_FIELDS
    hist = [epoch(1, 0.2)]
    res.write_trial(tmp_path, row(hist, trial_id="old"), hist)
    f = tmp_path / "trials" / "old.parquet"
    t = pq.read_table(f).drop_columns(["merge_passes"])
    cfg = json.loads(t["config_json"][0].as_py())
    del cfg["merge_passes"]
    t = t.set_column(t.schema.get_field_index("config_json"), "config_json", pa.array([json.dumps(cfg)]))
    pq.write_table(t, f)
    trial = res.read_sweeps([tmp_path]).trials.iloc[0]
    assert trial["merge_passes"] is DEFAULTS["merge_passes"] or pd.isna(trial["merge_passes"])
    assert trial["config_hash"] == resolve_config(cfg).hash()
