"""Sweeps on an embedded Ray (2 CPUs, 1 logical GPU for fractional scheduling): Parquet out, faults,
early stopping that frees its resources, a killed driver resumed, and what cannot fit refused."""

import json
import os
import signal
import subprocess
import sys
import tempfile
import textwrap
import time
from pathlib import Path

import duckdb
import pandas as pd
import pyarrow.parquet as pq
import pytest
import ray
from click.testing import CliRunner

from cycleseg.cli import main
from cycleseg.model.errors import UserError
from cycleseg.sweep.execution.runner import run_sweep
from cycleseg.sweep.results import parquet as res
from tests.processes import descendants, kill_leftovers, live_actor_classes

pytestmark = pytest.mark.slow

TINY = """
base:
  dataset: digits
  preset: tiny
  image_height: 32
  image_width: 32
  digits_train: 40
  digits_val: 10
  digits_test: 10
  epochs: 2
"""


def space(tmp_path, extra, name="space.yaml"):
    p = tmp_path / name
    p.write_text(TINY + textwrap.dedent(extra))
    return p


def by_method(df):
    return {m: r for m, r in zip(df["method"], df.itertuples(), strict=True)}


def _driver(space_file, storage, name, concurrent, cache, stderr):
    """``cycleseg sweep`` as a user's process, on its own embedded Ray (not the test cluster)."""
    cmd = [str(Path(sys.executable).parent / "cycleseg"), "sweep", str(space_file), "--storage", str(storage),
           "--name", name, "--max-concurrent", str(concurrent), "--gpus-per-worker", "0"]
    env = {**os.environ, "CYCLESEG_CACHE": str(cache)}
    env.pop("RAY_ADDRESS", None)
    return subprocess.Popen(cmd, env=env, stdout=subprocess.DEVNULL, stderr=stderr, text=True)


def results_json(sweep_dir, trial_id):
    """Every result Tune received for a trial, in order (its result.json)."""
    return [json.loads(line) for line in (Path(sweep_dir) / trial_id / "result.json").read_text().splitlines()]


# First in the module: it needs every CPU of the 2-CPU test cluster, which later tests' killed drivers
# may hold for a while.
@pytest.mark.timeout(240)
def test_two_workers_per_trial_train_one_trial_with_ddp_and_train_restarts_them(cluster, tmp_path):
    """A DDP trial runs under Ray Train: both ranks crash in epoch 2, Train restarts the worker group from
    the epoch-1 checkpoint in the Train run's folder (not Tune's: Tune itself does not retry DDP trials)."""
    p = space(tmp_path, """
    grid:
      method: [fault_crash_2]
    """)
    sweep_dir = run_sweep(
        p, storage=str(tmp_path / "runs"), name="ddp", workers_per_trial=2, cpus_per_worker=1, gpus_per_worker=0
    ).sweep_dir
    t = pd.read_parquet(Path(sweep_dir) / "trials")
    assert list(t["status"]) == ["completed"] and t["epochs_run"].iloc[0] == 2
    reports = results_json(sweep_dir, t["trial_id"].iloc[0])
    assert [(r["epoch"], r["resumed"]) for r in reports] == [(1, False), (2, True)]  # rank 0's only, once per epoch
    assert all(r["world_size"] == 2 for r in reports)
    assert t["checkpoint_path"].iloc[0].startswith(f"{sweep_dir}/train/{t['trial_id'].iloc[0]}/")


def test_sweep_writes_parquet_and_survives_nan_crash_and_failure(cluster, tmp_path):
    p = space(tmp_path, """
    grid:
      method: [cyclegan, fault_nan_1, fault_crash_2, fault_crash_1, fault_kill_2]
    """)
    r = CliRunner().invoke(main, ["sweep", str(p), "--storage", str(tmp_path / "runs"), "--name", "e2e",
                                  "--gpus-per-worker", "0.25", "--cpus-per-worker", "0.5"], catch_exceptions=False)
    assert r.exit_code == 1  # a trial failed after its retries: a job scheduler must see it
    sweep_dir = str(tmp_path / "runs" / "e2e")
    out = r.output
    assert "5 trials: 3 completed, 1 diverged, 1 failed" in out and f"{sweep_dir}/trials/" in out
    # the failed trial is named with what differs, its last error line and where its full log is
    failed_line = next(ln for ln in out.splitlines() if ln.startswith("failed: "))
    assert "method=fault_crash_1" in failed_line and "injected crash in epoch 1" in failed_line
    log = failed_line.split("full log: ")[1]
    assert Path(log).is_file() and "injected crash in epoch 1" in Path(log).read_text()

    files = sorted((Path(sweep_dir) / "trials").glob("*.parquet"))
    assert len(files) == 5 and all(pq.read_schema(f).equals(res.TRIALS_SCHEMA, check_metadata=False) for f in files)
    df = pd.read_parquet(Path(sweep_dir) / "trials")
    ep = pd.read_parquet(Path(sweep_dir) / "epochs")
    con = duckdb.connect()
    assert con.execute(f"select count(*) from read_parquet('{sweep_dir}/trials/*.parquet')").fetchone() == (5,)
    assert set(df.columns) == set(res.TRIALS_SCHEMA.names) and df["trial_id"].is_unique
    t = by_method(df)

    ok = t["cyclegan"]
    assert (ok.status, ok.epochs_run) == ("completed", 2) and pd.isna(ok.error)
    mine = ep[ep["trial_id"] == ok.trial_id].sort_values("epoch")
    assert list(mine["epoch"]) == [1, 2]
    assert ok.best_val_miou == mine["val_miou"].max() and ok.final_val_miou == mine["val_miou"].iloc[-1]
    # the reported epoch is chosen on val; its test metrics come from the epochs file (the checkpoint's history)
    chosen = mine.loc[mine["val_miou"].idxmax()]
    assert ok.selected_epoch == chosen["epoch"] and ok.test_miou == chosen["test_miou"]
    assert len(ok.test_class_iou) == len(ok.val_class_iou) == len(ok.class_names) == 11
    assert (ok.steps, ok.labeled_images_seen, ok.unlabeled_images_seen) == (14, 70, 70)  # 2 × ceil(max(8, 32) / 5)
    assert list(mine["steps"]) == [7, 14]
    # choose on val: nothing a scheduler or searcher sees (Tune's results) holds a test metric
    for tid in df["trial_id"]:
        seen = results_json(sweep_dir, tid) if (Path(sweep_dir) / tid / "result.json").is_file() else []
        assert not [k for r in seen for k in r if k.startswith("test_")], tid
    assert ok.gpu_seconds == pytest.approx(ok.wall_seconds * 0.25) and ok.wall_seconds > 0
    assert (Path(ok.checkpoint_path) / "state.pt").is_file() and ok.ray_version == ray.__version__
    assert mine[["loss_S_gen", "loss_I_cycle", "loss_D_total"]].notna().all().all()

    assert (t["fault_nan_1"].status, t["fault_nan_1"].epochs_run) == ("diverged", 1)

    # an error or a killed process in epoch 2: Tune restarts the trial from its epoch-1 checkpoint (the console
    # says so); epoch 1 is not run again, and the resumed run matches the run without a fault bit for bit (CPU)
    for name in ("fault_crash_2", "fault_kill_2"):
        crash = t[name]
        assert crash.status == "completed", name
        assert any(ln.startswith(f"retried   {crash.trial_id} (method={name} ") for ln in out.splitlines()), out
        reports = results_json(sweep_dir, crash.trial_id)
        assert [(r["epoch"], r["resumed"]) for r in reports] == [(1, False), (2, True)], name
        theirs = ep[ep["trial_id"] == crash.trial_id].sort_values("epoch")
        assert list(theirs["val_miou"]) == list(mine["val_miou"]) and list(theirs["loss_G_total"]) == list(
            mine["loss_G_total"]
        ), name

    # no trial's local work folder is left behind, not even by the killed process (its restart replaced it)
    assert not [d for tid in df["trial_id"] for d in Path(tempfile.gettempdir()).glob(f"cycleseg-{tid}*")]

    # crash in epoch 1 has no checkpoint to resume from: every retry crashes, the trial fails
    failed = t["fault_crash_1"]
    assert failed.status == "failed" and "injected crash in epoch 1" in failed.error
    assert failed.epochs_run == 0 and ep[ep["trial_id"] == failed.trial_id].empty

    # no worker placement group outlives the sweep
    assert {g["state"] for g in ray.util.placement_group_table().values()} <= {"REMOVED"}


@pytest.mark.timeout(400)  # a leaked placement group would make later trials wait forever
def test_early_stopping_per_cell_with_seeds_together_finds_each_cells_known_optimum(cluster, tmp_path):
    """The known-answer method (tests/known_answer.py): every 10 % score lies below every 20 % score.

    Per cell, in this order: λ2 = 0.01 (the 10 % optimum), 1.0, 0.1 (the 20 % optimum), 2 seeds each,
    2 trials at a time (each worker holds half the logical GPU: later trials start only if stopped trials
    freed theirs). At rung 1 of the 10 % cell 1.0 falls below 0.01 and stops, both seeds; one ASHA over
    the sweep would have stopped the whole 10 % cell behind the 20 % one.
    """
    p = space(tmp_path, """
    grid:
      method: [known_answer]
      epochs: [3]
      labeled_fraction: [0.1, 0.2]
    seeds: [0, 1]
    search:
      num_samples: 3
      params:
        lambda_2: {distribution: loguniform, low: 0.001, high: 1.0}
      points_to_evaluate: [{lambda_2: 0.01}, {lambda_2: 1.0}, {lambda_2: 0.1}]
    scheduler: {type: asha, grace_period: 1, reduction_factor: 2}
    """)
    r = CliRunner().invoke(main, ["sweep", str(p), "--storage", str(tmp_path / "runs"), "--name", "cells",
                                  "--gpus-per-worker", "0.5"], catch_exceptions=False)
    assert r.exit_code == 0, r.output
    df = pd.read_parquet(tmp_path / "runs" / "cells" / "trials")
    assert len(df) == 12
    status = df.groupby(["labeled_fraction", "lambda_2"])["status"].agg(lambda s: sorted(set(s)))
    # every configuration's seeds share one status (seeds together)
    assert all(len(v) == 1 for v in status), status
    status = status.map(lambda v: v[0])
    assert status[0.1, 1.0] == "early_stopped"
    # the weaker cell completes its best configuration, and each cell its optimum
    assert status[0.1, 0.01] == "completed" and status[0.2, 0.1] == "completed"
    stopped = df[df["status"] == "early_stopped"]
    assert (stopped["epochs_run"] < 3).all() and (df.loc[df["status"] == "completed", "epochs_run"] == 3).all()
    # the closing summary names one winner per cell, on val: the known optima
    lines = r.output.split("best configuration per grid cell")[1].splitlines()
    assert any(ln.strip().startswith("labeled_fraction=0.1: lambda_2=0.01,") for ln in lines), r.output
    assert any(ln.strip().startswith("labeled_fraction=0.2: lambda_2=0.1,") for ln in lines), r.output
    assert {g["state"] for g in ray.util.placement_group_table().values()} <= {"REMOVED"}
    # single-worker trials train in their Tune trial process, which later trials reuse (torch imported once)
    pids = {r["pid"] for tid in df["trial_id"] for r in results_json(tmp_path / "runs" / "cells", tid)}
    assert len(pids) < len(df)
    # Train's per-run cleaner actor (it needs the dashboard, and would outlive stopped trials) is not started
    assert "PlacementGroupCleaner" not in live_actor_classes()
    _studies_equal_the_parquet_and_open_in_optuna_dashboard(tmp_path / "runs" / "cells", df)


def _studies_equal_the_parquet_and_open_in_optuna_dashboard(sweep_dir, df):
    """Each cell's study in <sweep>/optuna.journal: one trial per configuration whose value is the mean over
    its seeds of the Parquet's val_miou (the reported epoch's); then optuna-dashboard serves it on loopback."""
    import urllib.request

    import optuna
    from optuna.storages import JournalStorage
    from optuna.storages.journal import JournalFileBackend

    from tests.loopback import free_port

    journal = sweep_dir / "optuna.journal"
    storage = JournalStorage(JournalFileBackend(str(journal)))
    expected = df.groupby(["labeled_fraction", "lambda_2"])["val_miou"].mean()
    names = sorted(st.study_name for st in optuna.study.get_all_study_summaries(storage=storage))
    assert names == ["labeled_fraction=0.1", "labeled_fraction=0.2"]
    for frac in (0.1, 0.2):
        study = optuna.load_study(study_name=f"labeled_fraction={frac}", storage=storage)
        got = {t.params["lambda_2"]: t.value for t in study.trials}
        assert got == pytest.approx(expected[frac].to_dict()), (frac, got)
    port = free_port()
    dashboard = subprocess.Popen([str(Path(sys.executable).parent / "optuna-dashboard"), str(journal), "--host",
                                  "127.0.0.1", "--port", str(port), "--quiet"],
                                 stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL)
    try:
        deadline = time.time() + 30
        while True:
            try:
                with urllib.request.urlopen(f"http://127.0.0.1:{port}/api/studies", timeout=2) as r:
                    studies = json.loads(r.read())["study_summaries"]
                break
            except OSError:
                assert time.time() < deadline and dashboard.poll() is None, "optuna-dashboard did not answer"
                time.sleep(0.3)
        by_name = {st["study_name"]: st for st in studies}
        assert set(by_name) == {"labeled_fraction=0.1", "labeled_fraction=0.2"}
        sid = by_name["labeled_fraction=0.2"]["study_id"]
        with urllib.request.urlopen(f"http://127.0.0.1:{port}/api/studies/{sid}?after=0", timeout=5) as r:
            detail = json.loads(r.read())
        values = sorted(v for t in detail["trials"] for v in (t.get("values") or []))
        assert values == pytest.approx(sorted(expected[0.2].to_list()))
    finally:
        dashboard.terminate()
        dashboard.wait(timeout=10)


@pytest.mark.timeout(400)
def test_driver_killed_mid_sweep_resumes_without_rerunning(cluster, cache, tmp_path):
    # three trials two at a time, the longest first (the plan's order): the 25-epoch trial is still
    # running when the 3-epoch one has finished, and the driver dies then
    p = space(tmp_path, """
    grid:
      epochs: [2, 25, 3]
    """)
    storage = tmp_path / "runs"
    sweep_dir = storage / "killed"
    driver = _driver(p, storage, "killed", 2, cache, stderr=subprocess.DEVNULL)
    spawned: dict[int, str] = {}
    try:
        deadline = time.time() + 240
        while time.time() < deadline:
            spawned.update(descendants(driver.pid))
            done = list((sweep_dir / "trials").glob("*.parquet")) if (sweep_dir / "trials").is_dir() else []
            running = {c.parent.name for c in sweep_dir.glob("train/*/checkpoint_*")} - {f.stem for f in done}
            if len(done) == 1 and running:
                break
            assert driver.poll() is None, "the sweep ended before it could be interrupted"
            time.sleep(0.2)
        else:
            pytest.fail("no trial finished while another had a checkpoint")
        first = done[0]
        first_bytes = first.read_bytes()
        driver.send_signal(signal.SIGKILL)
    finally:
        driver.kill()
        driver.wait()
        time.sleep(3)  # Ray's own processes follow the driver; a few helpers linger
        kill_leftovers(spawned)
    assert len(list((sweep_dir / "trials").glob("*.parquet"))) == 1
    # the space file is edited, then deleted: --resume runs the plan stored in sweep.json, never the file
    p.write_text(TINY + "grid:\n  epochs: [7]\n")
    p.unlink()

    run_sweep(None, name="killed", storage=str(storage), resume=True, gpus_per_worker=0)

    df = pd.read_parquet(sweep_dir / "trials")
    assert len(df) == 3 and df["trial_id"].is_unique and set(df["status"]) == {"completed"}
    assert sorted(df["epochs"]) == [2, 3, 25] and first.read_bytes() == first_bytes  # not re-run
    ep = pd.read_parquet(sweep_dir / "epochs")
    for r in df.itertuples():
        assert sorted(ep[ep["trial_id"] == r.trial_id]["epoch"]) == list(range(1, r.epochs + 1))
    # the long trial, interrupted, went on from its checkpoint: after the restart its first report is past epoch 1
    long = df.set_index("epochs").loc[25, "trial_id"]
    after = [x["epoch"] for x in results_json(sweep_dir, long) if x["resumed"]]
    assert after and after[0] > 1 and after[-1] == 25


@pytest.mark.timeout(300)
def test_ctrl_c_stops_a_sweep_in_seconds_saying_what_was_kept_and_how_to_finish(cluster, cache, tmp_path):
    """A real SIGINT to a real driver while a trial trains: one line says what is kept, and --resume trains the
    interrupted trial on from its checkpoint (Tune's own SIGINT handler would end it as finished, and lose it)."""
    p = space(tmp_path, """
    grid:
      epochs: [20, 2]
    """)
    storage = tmp_path / "runs"
    sweep_dir = storage / "ctrlc"
    driver = _driver(p, storage, "ctrlc", 1, cache, stderr=subprocess.PIPE)
    spawned: dict[int, str] = {}
    try:
        deadline = time.time() + 180
        while time.time() < deadline and not list(sweep_dir.glob("train/*/checkpoint_*")):
            spawned.update(descendants(driver.pid))
            assert driver.poll() is None, driver.communicate()
            time.sleep(0.2)
        sent = time.monotonic()
        driver.send_signal(signal.SIGINT)
        _, err = driver.communicate(timeout=60)
        took = time.monotonic() - sent
    finally:
        driver.kill()
        driver.wait()
        kill_leftovers(spawned)
    assert driver.returncode == 130, err
    assert err.strip().splitlines()[-1] == (
        f"interrupted: 0 of 2 trials finished and are kept in {sweep_dir} (running ones resume from their last "
        f"checkpoint); finish with: cycleseg sweep --resume --name ctrlc --storage {storage}")
    assert "Traceback" not in err and took < 20, (took, err)
    assert not (sweep_dir / "trials").exists()  # no trial ended, none is recorded as if it had

    run_sweep(None, name="ctrlc", storage=str(storage), resume=True, gpus_per_worker=0)
    df = pd.read_parquet(sweep_dir / "trials")
    assert sorted(zip(df["epochs"], df["status"], df["epochs_run"], strict=True)) == [(2, "completed", 2),
                                                                                       (20, "completed", 20)]
    long = df.set_index("epochs").loc[20, "trial_id"]
    assert next(x["epoch"] for x in results_json(sweep_dir, long) if x["resumed"]) > 1  # on from its checkpoint


def test_resume_keeps_the_workers_per_trial_the_sweep_started_with(cluster, tmp_path):
    """One worker trains in Tune's trial process, more in a Train run: checkpoints and retries differ."""
    from cycleseg.sweep.planning.plan import PLAN_FILE, Plan

    plan = Plan.from_space(space(tmp_path, ""), {})
    plan.max_concurrent, plan.workers_per_trial = 1, 2
    (tmp_path / "runs" / "ddp").mkdir(parents=True)
    (tmp_path / "runs" / "ddp" / PLAN_FILE).write_text(plan.to_json())
    with pytest.raises(UserError, match=r"runs 2 worker.* per trial; resume with --workers-per-trial 2"):
        run_sweep(None, name="ddp", storage=str(tmp_path / "runs"), resume=True, gpus_per_worker=0)


def test_a_sweep_whose_tune_state_an_earlier_cycleseg_saved_is_refused_saying_what_to_do(cluster, tmp_path):
    """Tune's tuner.pkl names the modules of the version that saved it, and the layout of sweep/ moved them: such a
    resume stops with one line instead of Tune's unpickling traceback (a sweep without Tune state resumes)."""
    from cycleseg.sweep.planning.plan import PLAN_FILE, PLAN_FORMAT, Plan

    plan = Plan.from_space(space(tmp_path, ""), {})
    plan.max_concurrent, plan.workers_per_trial = 1, 1
    assert Plan.from_json(plan.to_json()).format == PLAN_FORMAT
    stored = json.loads(plan.to_json())
    del stored["format"]  # as cycleseg wrote it before the layout
    assert Plan.from_json(json.dumps(stored)).format == 1
    old = tmp_path / "runs" / "old"
    old.mkdir(parents=True)
    (old / PLAN_FILE).write_text(json.dumps(stored))
    (old / "tuner.pkl").write_bytes(b"Tune's state, naming cycleseg.sweep.callbacks")  # refused before it is read
    with pytest.raises(UserError, match=r"started by an earlier cycleseg.*the version that started it.*new --name"):
        run_sweep(None, name="old", storage=str(tmp_path / "runs"), resume=True, gpus_per_worker=0)


def test_resume_needs_an_existing_sweep(cluster, tmp_path):
    with pytest.raises(UserError, match="no sweep 'nope'"):
        run_sweep(None, name="nope", storage=str(tmp_path), resume=True)


def test_workers_that_cannot_fit_are_refused_before_tune_starts(cluster, tmp_path):
    p = space(tmp_path, "")
    r = CliRunner().invoke(main, ["sweep", str(p), "--storage", str(tmp_path / "runs"), "--gpus-per-worker", "2"],
                           catch_exceptions=False)
    assert r.exit_code == 2 and "needs 1 worker(s) × (1 CPU, 2 GPU)" in r.output and "1 GPUs" in r.output
    r = CliRunner().invoke(main, ["sweep", str(p), "--storage", str(tmp_path / "runs"), "--workers-per-trial", "3"],
                           catch_exceptions=False)
    assert r.exit_code == 2 and "lower --workers-per-trial" in r.output
    assert not (tmp_path / "runs").exists()
