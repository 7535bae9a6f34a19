"""A whole sweep on a real S3 API on loopback (moto's server): results and checkpoints in the bucket, the
driver killed and the sweep resumed there, then best-config and report reading the URI. Paths stay URIs."""

import io
import json
import os
import signal
import subprocess
import sys
import textwrap
import time
from pathlib import Path

import pandas as pd
import pyarrow.parquet as pq
import pytest

from tests.loopback import free_port
from tests.processes import descendants, kill_leftovers

pytestmark = pytest.mark.slow
boto3 = pytest.importorskip("boto3", reason="the test needs boto3 and moto (the dev extra)")
pytest.importorskip("moto.server", reason="the test needs moto's server (the dev extra)")

BUCKET = "sweeps"
SPACE = """
base: {dataset: digits, preset: tiny, image_height: 32, image_width: 32, digits_train: 40, digits_val: 10,
       digits_test: 10, method: partial}
grid:
  epochs: [30, 2, 3]
"""


@pytest.fixture(scope="module")
def s3_env(tmp_path_factory):
    """moto's S3 server on loopback, a bucket, and the standard AWS variables pointing at it."""
    from moto.server import ThreadedMotoServer

    port = free_port()
    server = ThreadedMotoServer(ip_address="127.0.0.1", port=port)
    server.start()
    env = {"AWS_ENDPOINT_URL": f"http://127.0.0.1:{port}", "AWS_ACCESS_KEY_ID": "test",
           "AWS_SECRET_ACCESS_KEY": "test", "AWS_DEFAULT_REGION": "us-east-1", "AWS_REGION": "us-east-1"}
    boto3.client("s3", endpoint_url=env["AWS_ENDPOINT_URL"], aws_access_key_id="test", aws_secret_access_key="test",
                 region_name="us-east-1").create_bucket(Bucket=BUCKET)
    yield env
    server.stop()


def _keys(env, prefix):
    s3 = boto3.client("s3", endpoint_url=env["AWS_ENDPOINT_URL"], aws_access_key_id="test",
                      aws_secret_access_key="test", region_name="us-east-1")
    pages = s3.get_paginator("list_objects_v2").paginate(Bucket=BUCKET, Prefix=prefix)
    return [o["Key"] for page in pages for o in page.get("Contents", [])], s3


def _cli(*args, env, cwd, timeout=300):
    cmd = [str(Path(sys.executable).parent / "cycleseg"), *args]
    return subprocess.run(cmd, env=env, cwd=cwd, capture_output=True, text=True, timeout=timeout)


@pytest.mark.timeout(900)
def test_sweep_on_s3_survives_a_killed_driver_and_is_read_back_from_the_uri(s3_env, tmp_path, cache):
    (tmp_path / "space.yaml").write_text(textwrap.dedent(SPACE))
    env = {**{k: v for k, v in os.environ.items() if k != "RAY_ADDRESS"}, **s3_env, "CYCLESEG_CACHE": str(cache)}
    uri = f"s3://{BUCKET}/team/sweeps"
    sweep = "s3demo"
    prefix = f"team/sweeps/{sweep}/"
    cmd = [str(Path(sys.executable).parent / "cycleseg"), "sweep", "space.yaml", "--storage", uri, "--name", sweep,
           "--gpus-per-worker", "0", "--max-concurrent", "2"]
    driver = subprocess.Popen(cmd, env=env, cwd=tmp_path, stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL)
    spawned: dict[int, str] = {}
    try:
        deadline = time.time() + 300
        while time.time() < deadline:
            spawned.update(descendants(driver.pid))
            keys, _ = _keys(s3_env, prefix)
            done = [k for k in keys if k.startswith(prefix + "trials/") and k.endswith(".parquet")]
            checkpoints = {k.split("/")[4] for k in keys if k.startswith(prefix + "train/") and "/checkpoint_" in k}
            if len(done) == 1 and checkpoints - {Path(d).stem for d in done}:
                break
            assert driver.poll() is None, "the sweep ended before it could be interrupted"
            time.sleep(0.5)
        else:
            pytest.fail("no trial finished in the bucket while another had a checkpoint there")
        driver.send_signal(signal.SIGKILL)
    finally:
        driver.kill()
        driver.wait()
        time.sleep(3)
        kill_leftovers(spawned)
    first_key = done[0]

    r = _cli("sweep", "--resume", "--name", sweep, "--storage", uri, "--gpus-per-worker", "0", env=env, cwd=tmp_path,
             timeout=600)
    assert r.returncode == 0, r.stdout[-3000:] + r.stderr[-3000:]
    keys, s3 = _keys(s3_env, prefix)
    trials = sorted(k for k in keys if k.startswith(prefix + "trials/") and k.endswith(".parquet"))
    assert len(trials) == 3 and first_key in trials
    rows = pd.concat([pq.read_table(io.BytesIO(s3.get_object(Bucket=BUCKET, Key=k)["Body"].read())).to_pandas()
                      for k in trials])
    assert sorted(rows["epochs"]) == [2, 3, 30] and set(rows["status"]) == {"completed"}
    assert all(p.startswith(f"{uri}/{sweep}/train/{t}/checkpoint_")  # a URI, not s3:/...
               for p, t in zip(rows["checkpoint_path"], rows["trial_id"], strict=True))
    # each trial keeps one checkpoint in the bucket; the interrupted one went on from its own after the restart
    for t in rows["trial_id"]:
        assert len({k.split("/")[5] for k in keys if k.startswith(f"{prefix}train/{t}/checkpoint_")}) == 1, t
    long = rows.set_index("epochs").loc[30, "trial_id"]
    results = s3.get_object(Bucket=BUCKET, Key=f"{prefix}{long}/result.json")["Body"].read().decode().splitlines()
    after = [r["epoch"] for r in map(json.loads, results) if r["resumed"]]
    assert after and after[0] > 1 and after[-1] == 30
    assert any(k.startswith(prefix + "logs/") for k in keys) and any(k.endswith("sweep.json") for k in keys)
    epochs = [k for k in keys if k.startswith(prefix + "epochs/") and k.endswith(".parquet")]
    assert len(epochs) == 3

    r = _cli("best-config", f"{uri}/{sweep}", "-o", "best/", env=env, cwd=tmp_path)
    assert r.returncode == 0, r.stdout + r.stderr
    assert len(list((tmp_path / "best").glob("*.yaml"))) == 1  # one cell: digits at 20 %
    r = _cli("report", f"{uri}/{sweep}", "-o", "rep", env=env, cwd=tmp_path)
    assert r.returncode == 0, r.stdout + r.stderr
    md = (tmp_path / "rep" / "index.md").read_text()
    assert f"`{uri}/{sweep}`" in md and "![samples]" in md  # the sample grid from checkpoints in the bucket
    r = _cli("report", f"{uri}/{sweep}", env=env, cwd=tmp_path)
    assert r.returncode == 2 and "give the report a local folder with -o" in r.stderr
