"""--mlflow against a real MLflow tracking server on loopback (SQLite store, artifacts served by it)."""

import subprocess
import sys
import time
import urllib.request
from pathlib import Path

import pandas as pd
import pytest
from click.testing import CliRunner

from cycleseg.cli import main
from tests.loopback import free_port
from tests.sweep.execution.test_runner import space

pytestmark = pytest.mark.slow
pytest.importorskip("mlflow", reason="the MLflow extra is not installed: pip install 'cycleseg[mlflow]'")


@pytest.fixture(scope="module")
def tracking_uri(tmp_path_factory):
    d = tmp_path_factory.mktemp("mlflow")
    port = free_port()
    log = open(d / "server.log", "w")  # noqa: SIM115  (closed below)
    proc = subprocess.Popen(
        [sys.executable, "-m", "mlflow", "server", "--backend-store-uri", f"sqlite:///{d}/mlflow.db",
         "--artifacts-destination", str(d / "artifacts"), "--host", "127.0.0.1", "--port", str(port),
         "--workers", "1"], stdout=log, stderr=subprocess.STDOUT, cwd=d)
    uri = f"http://127.0.0.1:{port}"
    try:
        deadline = time.time() + 120
        while True:
            try:
                with urllib.request.urlopen(f"{uri}/health", timeout=2) as r:
                    if r.status == 200:
                        break
            except OSError:
                pass
            assert proc.poll() is None, (d / "server.log").read_text()[-2000:]
            assert time.time() < deadline, "the MLflow server did not come up in 120 s"
            time.sleep(0.5)
        yield uri
    finally:
        proc.terminate()
        proc.wait(timeout=30)
        log.close()


def test_each_trial_is_an_mlflow_run_with_params_epochs_test_metrics_and_samples(cluster, tracking_uri, tmp_path):
    from mlflow.tracking import MlflowClient

    p = space(tmp_path, """
    grid:
      method: [partial]
    """)
    r = CliRunner().invoke(main, ["sweep", str(p), "--storage", str(tmp_path / "runs"), "--name", "tracked",
                                  "--mlflow", tracking_uri, "--gpus-per-worker", "0"], catch_exceptions=False)
    assert r.exit_code == 0, r.output
    row = pd.read_parquet(tmp_path / "runs" / "tracked" / "trials").iloc[0]
    client = MlflowClient(tracking_uri=tracking_uri)
    exp = client.get_experiment_by_name("tracked")
    (run,) = client.search_runs([exp.experiment_id])
    assert run.info.run_name == row["trial_id"] and run.info.status == "FINISHED"
    assert run.data.params["method"] == "partial" and run.data.params["epochs"] == "2"
    assert run.data.params["labeled_fraction"] == "0.2" and set(run.data.params) >= {"lambda_2", "seed", "select"}
    assert run.data.tags["cycleseg.status"] == "completed"
    history = client.get_metric_history(run.info.run_id, "val_miou")
    assert sorted(m.step for m in history) == [1, 2]
    assert not [k for k in run.data.metrics if k.startswith("test_")]  # per-epoch metrics are what Tune saw: val
    assert run.data.metrics["selected/test_miou"] == pytest.approx(row["test_miou"])
    assert run.data.metrics["selected/selected_epoch"] == row["selected_epoch"]
    assert run.data.metrics["selected/steps"] == row["steps"]
    artifacts = [a.path for a in client.list_artifacts(run.info.run_id)]
    assert "samples.png" in artifacts
    png = Path(client.download_artifacts(run.info.run_id, "samples.png", str(tmp_path)))
    assert png.read_bytes()[:8] == b"\x89PNG\r\n\x1a\n"


def test_mlflow_without_the_extra_is_refused_before_ray(tmp_path, monkeypatch):
    import builtins

    real_import = builtins.__import__

    def no_mlflow(name, *args, **kwargs):
        if name == "mlflow" or name.startswith("mlflow."):
            raise ImportError("no mlflow")
        return real_import(name, *args, **kwargs)

    monkeypatch.setattr(builtins, "__import__", no_mlflow)
    r = CliRunner().invoke(main, ["sweep", "demo", "--mlflow", "http://127.0.0.1:1", "--storage", str(tmp_path)])
    assert r.exit_code == 2 and "pip install 'cycleseg[mlflow]'" in r.output
    assert list(tmp_path.iterdir()) == []


@pytest.mark.parametrize(("uri", "says"), [("notauri", "is not a tracking URI"),
                                           ("http://127.0.0.1:1", "nothing answers at 'http://127.0.0.1:1'")])
def test_an_mlflow_uri_that_cannot_log_is_refused_before_ray(tmp_path, uri, says):
    r = CliRunner().invoke(main, ["sweep", "demo", "--dry-run", "--mlflow", uri, "--storage", str(tmp_path)])
    assert r.exit_code == 2 and says in r.output and len(r.output.strip().splitlines()) == 1, r.output
    assert not any(tmp_path.iterdir())
