"""--storage and sweep URIs are checked first, in bounded time, against real endpoints on loopback: a port that
refuses, and a server that accepts and never answers. Every case is one line, exit 2, naming what to set."""

from __future__ import annotations

import os
import signal
import socket
import subprocess
import sys
import threading
import time
from pathlib import Path

import pytest
from click.testing import CliRunner

from cycleseg.cli import main
from cycleseg.sweep import storage
from tests.loopback import free_port

AWS_VARS = ("AWS_ACCESS_KEY_ID", "AWS_SECRET_ACCESS_KEY", "AWS_SESSION_TOKEN", "AWS_PROFILE", "AWS_ENDPOINT_URL",
            "AWS_SHARED_CREDENTIALS_FILE", "AWS_CONFIG_FILE", "GOOGLE_APPLICATION_CREDENTIALS")


@pytest.fixture
def bare_env(tmp_path, monkeypatch):
    """No cloud credentials anywhere (a fresh HOME, no AWS_* / GOOGLE_* variables), no instance metadata, and
    probes that give up after 4 s rather than 20."""
    for var in AWS_VARS:
        monkeypatch.delenv(var, raising=False)
    monkeypatch.setenv("HOME", str(tmp_path / "home"))
    monkeypatch.setenv("AWS_EC2_METADATA_DISABLED", "true")
    monkeypatch.setenv("AWS_DEFAULT_REGION", "us-east-1")
    monkeypatch.setattr(storage, "PROBE_SECONDS", 4.0)
    monkeypatch.chdir(tmp_path)
    return tmp_path


@pytest.fixture
def silent_server():
    """A TCP server on loopback that accepts every connection and never answers."""
    sock = socket.socket()
    sock.bind(("127.0.0.1", 0))
    sock.listen(16)
    held: list[socket.socket] = []
    stop = threading.Event()

    def accept() -> None:
        sock.settimeout(0.2)
        while not stop.is_set():
            try:
                held.append(sock.accept()[0])
            except OSError:
                continue

    t = threading.Thread(target=accept, daemon=True)
    t.start()
    yield f"127.0.0.1:{sock.getsockname()[1]}"
    stop.set()
    t.join()
    for c in held:
        c.close()
    sock.close()


def refused(*args: str) -> tuple[str, float]:
    start = time.monotonic()
    r = CliRunner().invoke(main, list(args))
    took = time.monotonic() - start
    assert r.exit_code == 2, (r.exit_code, r.output)
    assert len(r.output.strip().splitlines()) == 1 and r.output.startswith("error: "), r.output
    return r.output, took


@pytest.mark.parametrize("uri", ["ftp://x/y", "http://host/sweeps", "hdfs://nn/sweeps"])
def test_a_scheme_cycleseg_cannot_use_is_refused_at_once(bare_env, uri):
    out, took = refused("sweep", "demo", "--dry-run", "--storage", uri)
    scheme = uri.split("://")[0]
    assert took < 10  # no network: decided from the URI (most of this is importing the sweep's modules)
    assert f"--storage '{uri}': {scheme}:// is not a storage cycleseg can use" in out and "s3://bucket/path" in out
    assert not (bare_env / "runs").exists()


def test_a_uri_without_a_bucket_is_refused(bare_env):
    out, _ = refused("sweep", "demo", "--dry-run", "--storage", "s3:///sweeps")
    assert "names no bucket; write s3://bucket/path" in out


def test_s3_without_credentials_at_a_refusing_endpoint_names_the_aws_variables(bare_env, monkeypatch):
    monkeypatch.setenv("AWS_ENDPOINT_URL", f"http://127.0.0.1:{free_port()}")
    out, took = refused("sweep", "demo", "--dry-run", "--storage", "s3://bucket/sweeps")
    # the AWS SDK retries a refused connection with back-off: its error, or the probe's bound, comes first
    assert "--storage 's3://bucket/sweeps' cannot be reached (" in out or "no answer within 4 s" in out
    assert "no AWS credentials are set: set AWS_ACCESS_KEY_ID and AWS_SECRET_ACCESS_KEY" in out
    assert "check AWS_ENDPOINT_URL (http://127.0.0.1:" in out and took < 30


def test_s3_at_an_endpoint_that_never_answers_is_refused_in_bounded_time(bare_env, monkeypatch, silent_server):
    monkeypatch.setenv("AWS_ENDPOINT_URL", f"http://{silent_server}")
    monkeypatch.setenv("AWS_ACCESS_KEY_ID", "key")
    monkeypatch.setenv("AWS_SECRET_ACCESS_KEY", "secret")
    out, took = refused("report", "s3://bucket/sweeps/demo", "-o", "rep")
    # the SDK's own timeouts and retries may answer first; either way it is one line within the bound
    assert "RESULTS 's3://bucket/sweeps/demo'" in out and ("no answer within 4 s" in out or "cannot be reached" in out)
    assert "check that these AWS credentials may read the bucket" in out and took < 4 + 10
    assert not (bare_env / "rep").exists()


def test_gs_without_credentials_is_refused_in_bounded_time_naming_the_variable(bare_env):
    """Off Google Cloud the GCS client waits for a metadata server that is not there (the hang a tester saw for
    11 minutes, deaf to Ctrl-C)."""
    out, took = refused("best-config", "gs://bucket/sweeps/demo")
    assert "RESULTS 'gs://bucket/sweeps/demo'" in out and "set GOOGLE_APPLICATION_CREDENTIALS" in out
    assert took < 4 + 10 and not (bare_env / "best.yaml").exists()


@pytest.mark.slow
def test_ctrl_c_stops_a_command_waiting_on_storage_at_once_in_one_line(bare_env, silent_server):
    """A real process and a real SIGINT while the storage probe waits on a server that never answers."""
    env = {k: v for k, v in os.environ.items() if k not in AWS_VARS}
    env |= {"AWS_ENDPOINT_URL": f"http://{silent_server}", "AWS_ACCESS_KEY_ID": "k", "AWS_SECRET_ACCESS_KEY": "s"}
    cmd = [str(Path(sys.executable).parent / "cycleseg"), "sweep", "demo", "--dry-run", "--storage", "s3://b/x"]
    p = subprocess.Popen(cmd, env=env, cwd=bare_env, stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True)
    time.sleep(8)  # imports done, the probe waiting (it would wait 20 s)
    assert p.poll() is None, p.communicate()
    sent = time.monotonic()
    p.send_signal(signal.SIGINT)
    out, err = p.communicate(timeout=30)
    assert time.monotonic() - sent < 5, "Ctrl-C took too long"
    assert p.returncode == 130, (out, err)
    assert err.strip().splitlines() == [
        "interrupted: no file was left half-written (each is written whole, or not at all); run the command again"]
    assert not (bare_env / "runs").exists()
